"""`fota-bot backup PATH`: SQLite's online backup of FOTA_DB, taken while another connection
keeps writing, restores to a consistent copy."""

from __future__ import annotations

import os
import re
import sqlite3
import stat
import threading
from pathlib import Path

import pytest

from bot.cli import main
from storage.backup import BackupError, backup
from storage.store import Store


def writer(db: Path, stop: threading.Event, written: list[int], under_way: threading.Event) -> None:
    """The serving bot, as far as the file can tell: transactions, each a counter and a row that
    must agree, committed as fast as SQLite takes them."""
    store = Store.open(db)
    i = 0
    try:
        while not stop.is_set():
            i += 1
            with store.db.atomic():
                store.db.execute("INSERT INTO kv(key, value) VALUES(?, ?)", [f"row:{i}", "x" * 500])
                store.db.execute(
                    "INSERT INTO kv(key, value) VALUES('rows', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [str(i)],
                )
            written.append(i)
            if i == 50:
                under_way.set()
    finally:
        store.close()


def test_a_backup_of_a_database_being_written_is_a_consistent_copy(tmp_path: Path) -> None:
    db = tmp_path / "fota.db"
    seed = Store.open(db)
    with seed.db.atomic():
        for i in range(3000):  # a few MB, so that a copy takes a while
            seed.db.execute("INSERT INTO kv(key, value) VALUES(?, ?)", [f"seed:{i}", "y" * 1000])
    seed.close()
    stop, under_way, written = threading.Event(), threading.Event(), []
    thread = threading.Thread(target=writer, args=(db, stop, written, under_way))
    thread.start()
    copies = []
    try:
        assert under_way.wait(timeout=30)  # the writer is committing before the first copy
        for n in range(5):
            before = len(written)
            result = backup(db, tmp_path / f"copy{n}.db")
            copies.append((result.path, before, len(written)))
    finally:
        stop.set()
        thread.join()
    assert len(written) > copies[0][1]  # the writer kept committing while copies were taken
    for path, before, after in copies:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert not path.with_name(f".{path.name}.partial").exists()
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = int(conn.execute("SELECT value FROM kv WHERE key = 'rows'").fetchone()[0])
        count = conn.execute("SELECT count(*) FROM kv WHERE key LIKE 'row:%'").fetchone()[0]
        assert rows == count  # never half a transaction
        assert before <= rows <= after  # a snapshot taken during the call
        assert conn.execute("SELECT count(*) FROM kv WHERE key LIKE 'seed:%'").fetchone()[0] == 3000
        conn.close()
        # The copy is a fota-bot database: it opens, migrated, as FOTA_DB.
        Store.open(path).close()


def test_fota_bot_backup_in_plain_words(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FOTA_DB", "fota.db")
    assert main(["backup", "copy.db"]) == 1
    assert capsys.readouterr().err == "fota-bot: FOTA_DB=fota.db: no database there yet; `fota-bot serve` creates it\n"
    Store.open(tmp_path / "fota.db").close()
    assert main(["backup", "copy.db"]) == 0
    assert re.fullmatch(r"backed up FOTA_DB=fota.db to copy.db: 0 campaigns, \d+\.\d MB, integrity ok\n",
                        capsys.readouterr().out)
    assert main(["backup", "copy.db"]) == 1
    assert capsys.readouterr().err == "fota-bot: copy.db exists already; a backup never overwrites a file: choose another PATH\n"
    assert main(["backup", "fota.db"]) == 1
    assert "is FOTA_DB itself" in capsys.readouterr().err
    assert main(["backup", "missing/copy.db"]) == 1
    assert capsys.readouterr().err == "fota-bot: the folder missing does not exist; create it first\n"
    (tmp_path / "backups").mkdir()
    assert main(["backup", "backups"]) == 0
    [dated] = os.listdir(tmp_path / "backups")
    assert dated.startswith("fota-") and dated.endswith(".db")


def test_a_damaged_source_makes_no_backup(tmp_path: Path) -> None:
    Store.open(tmp_path / "fota.db").close()
    data = (tmp_path / "fota.db").read_bytes()
    (tmp_path / "fota.db").write_bytes(data[:100] + b"\xff" * (len(data) - 100))
    with pytest.raises(BackupError):
        backup(tmp_path / "fota.db", tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()
    assert [p.name for p in tmp_path.iterdir() if "copy" in p.name] == []
