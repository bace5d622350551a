"""`fota-bot backup PATH`: a consistent copy of FOTA_DB, safe while `serve` runs.

SQLite's online backup API (Python's `sqlite3.Connection.backup`) copies the database as one
read transaction: in WAL mode that is a snapshot, taken without blocking the bot's writers,
so the copy holds every transaction committed before it began and none of the later ones.
Copying the file itself could catch a half-written page or miss the WAL. The copy is checked
(`PRAGMA integrity_check`), written beside the target and renamed into place, so PATH is a
whole backup or absent, never a partial one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path


class BackupError(Exception):
    """The backup was not made; the message says why in one sentence."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    campaigns: int
    size: int


def target_path(path: Path, now: dt.datetime) -> Path:
    """PATH itself, or a dated file inside it when PATH is a folder."""
    if path.is_dir():
        return path / f"fota-{now:%Y%m%d-%H%M%S}.db"
    return path


def backup(source: Path, path: Path, *, now: dt.datetime | None = None) -> BackupResult:
    target = target_path(path, now or dt.datetime.now(dt.UTC))
    if target.resolve() == source.resolve():
        raise BackupError(f"{target} is FOTA_DB itself; choose another PATH")
    if target.exists():
        raise BackupError(f"{target} exists already; a backup never overwrites a file: choose another PATH")
    if not target.parent.is_dir():
        raise BackupError(f"the folder {target.parent} does not exist; create it first")
    partial = target.with_name(f".{target.name}.partial")
    # The copy holds the callback token and every request: readable by its owner only.
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    try:
        src = sqlite3.connect(f"{source.resolve().as_uri()}?mode=ro", uri=True)
        try:
            dst = sqlite3.connect(partial)
            try:
                # pages=-1: all in one step, one snapshot. Copied in several steps, a write by
                # the serving bot between two of them would start the copy over, again and again.
                src.backup(dst, pages=-1)
                verdict = dst.execute("PRAGMA integrity_check").fetchone()[0]
                if verdict != "ok":
                    raise BackupError(f"the copy failed SQLite's integrity check ({verdict}); FOTA_DB may be damaged")
                campaigns = dst.execute("SELECT count(*) FROM campaigns").fetchone()[0]
                # A single file to restore: no WAL beside it.
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        finally:
            src.close()
        with open(partial, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(partial, target)
    except sqlite3.Error as exc:
        raise BackupError(f"FOTA_DB={source} could not be copied: {exc}") from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return BackupResult(target, campaigns, target.stat().st_size)
