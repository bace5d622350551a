"""The ThingSpace sandbox's own tables (``sandbox_…``), and every SQL statement on them.

The sandbox (`bot/standins/thingspace/`) keeps its state in SQLite so a rehearsal survives a
restart: in-process (`fota-bot serve` in sandbox mode, `fota-bot demo`) in the bot's database
file, for `fota-bot sandbox` in a file of its own. Either way it talks to SQLite only through
`SandboxTables`, on a connection of its own; the bot's code never reads these tables. Rows go in
and out as plain values: turning them into the sandbox's campaigns and devices is the sandbox's
business (`bot/standins/thingspace/state.py`).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlite_utils import Database

SCHEMA_VERSION = "1"

_TABLES: dict[str, tuple[dict[str, Any], str | tuple[str, ...]]] = {
    "sandbox_meta": ({"key": str, "value": str}, "key"),
    "sandbox_campaigns": (
        {"id": str, "account": str, "name": str, "entry": str, "start_date": str, "end_date": str,
         "windows": str, "auto_assign_license": int, "auto_add_devices": int, "created": str,
         "status": str, "history": str, "generation": int},
        "id",
    ),
    "sandbox_devices": (
        {"campaign_id": str, "imei": str, "status": str, "reason": str, "updated": float,
         "recent_attempt": float, "next_attempt": float},
        ("campaign_id", "imei"),
    ),
    "sandbox_callbacks": ({"account": str, "url": str}, "account"),
    "sandbox_licences": ({"account": str, "imei": str, "assigned": float}, ("account", "imei")),
    "sandbox_licences_removed": ({"account": str, "imei": str}, ("account", "imei")),
    "sandbox_firmware": ({"account": str, "imei": str, "firmware": str}, ("account", "imei")),
    "sandbox_seen": ({"account": str, "imei": str}, ("account", "imei")),
    "sandbox_licence_updates": ({"account": str, "at": str}, "account"),
}

#: The per-(account, IMEI) facts, by the name the sandbox knows them by: each a table keyed
#: by account and IMEI, with the columns after those two.
PAIR_TABLES: dict[str, str] = {
    "licences": "sandbox_licences",  # + assigned (epoch seconds)
    "licences_removed": "sandbox_licences_removed",
    "firmware": "sandbox_firmware",  # + firmware
    "seen": "sandbox_seen",
}

Row = dict[str, Any]


class SandboxTables:
    """The sandbox's connection and its tables. Writes belong in `batch()`: one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    def open(cls, path: Path | str, *, checkpoints: bool = True) -> SandboxTables:
        """The sandbox's own connection to `path` (created with mode 0600: a listener URL carries
        the bot's secret callback token), WAL, its tables created.

        `checkpoints=False` when `path` is the bot's own database: the bot copies the WAL into
        the file on its reader thread, and a sandbox commit crossing SQLite's 1,000-page mark
        would otherwise copy all of it (the bot's writes too) on the event loop.
        """
        if str(path) != ":memory:" and not Path(path).exists():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = Database(sqlite3.connect(str(path), check_same_thread=False))
        if str(path) != ":memory:":
            db.enable_wal()
        db.execute("PRAGMA busy_timeout=5000")
        # As the bot's own connection: durable across a crash of the process (only an OS crash
        # can lose the last commits), without an fsync per commit. The sandbox commits on every
        # tick of its clock.
        db.execute("PRAGMA synchronous=NORMAL")
        if not checkpoints:
            db.execute("PRAGMA wal_autocheckpoint=0")
        with db.conn:
            for name, (columns, pk) in _TABLES.items():
                db[name].create(columns, pk=pk, if_not_exists=True)  # type: ignore[union-attr]
            db["sandbox_meta"].insert({"key": "schema", "value": SCHEMA_VERSION}, ignore=True)  # type: ignore[union-attr]
        return cls(db)

    def close(self) -> None:
        self._db.close()

    def autocheckpoint_pages(self) -> int:
        """SQLite's automatic checkpoint threshold on this connection (0: never)."""
        return int(self._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])

    # -- reading -----------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM sandbox_meta WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    def has_state(self) -> bool:
        """Whether a sandbox saved here before (every save notes the clock)."""
        return self.meta("clock") is not None

    def campaigns(self) -> Iterator[Row]:
        return self._db["sandbox_campaigns"].rows

    def devices(self) -> Iterator[Row]:
        """Every campaign's devices, by campaign and IMEI."""
        return self._db.query("SELECT * FROM sandbox_devices ORDER BY campaign_id, imei")

    def callbacks(self) -> Iterator[Row]:
        return self._db["sandbox_callbacks"].rows

    def pairs(self, kind: str) -> Iterator[Row]:
        """The rows of one of `PAIR_TABLES`."""
        return self._db[PAIR_TABLES[kind]].rows

    def licence_updates(self) -> Iterator[Row]:
        return self._db["sandbox_licence_updates"].rows

    # -- writing -----------------------------------------------------------------------------

    @contextmanager
    def batch(self) -> Iterator[None]:
        """One transaction for everything written inside."""
        with self._db.conn:
            yield

    def put_meta(self, key: str, value: str) -> None:
        # Plain SQL rather than sqlite-utils' upsert, which reads the table's shape on every call
        # (a third of a millisecond), and this runs on every save.
        self._db.execute(
            "INSERT INTO sandbox_meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [key, value],
        )

    def put_campaign(self, row: Row) -> None:
        self._db["sandbox_campaigns"].upsert(row, pk="id")  # type: ignore[union-attr]

    def put_devices(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """(campaign_id, imei, status, reason, updated, recent_attempt, next_attempt) rows."""
        # Plain executemany rather than sqlite-utils' upsert_all: a 100,000-device campaign is
        # saved in well under a second this way, where upsert_all takes many seconds (it runs an
        # INSERT and an UPDATE per row) and the event loop would stall meanwhile.
        self._db.conn.executemany(
            "INSERT OR REPLACE INTO sandbox_devices VALUES (?, ?, ?, ?, ?, ?, ?)", rows
        )

    def delete_devices(self, keys: Sequence[tuple[str, str]]) -> None:
        """(campaign_id, imei) keys."""
        self._delete("sandbox_devices", ("campaign_id", "imei"), keys)

    def put_callback(self, account: str, url: str) -> None:
        self._db["sandbox_callbacks"].upsert({"account": account, "url": url}, pk="account")  # type: ignore[union-attr]

    def delete_callback(self, account: str) -> None:
        self._delete("sandbox_callbacks", ("account",), [(account,)])

    def put_pairs(self, kind: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """(account, imei, *columns) rows into one of `PAIR_TABLES`."""
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            self._db.conn.executemany(
                f"INSERT OR REPLACE INTO {PAIR_TABLES[kind]} VALUES ({marks})", rows
            )

    def delete_pairs(self, kind: str, keys: Sequence[tuple[str, str]]) -> None:
        """(account, imei) keys from one of `PAIR_TABLES`."""
        self._delete(PAIR_TABLES[kind], ("account", "imei"), keys)

    def put_licence_update(self, account: str, at: str) -> None:
        self._db["sandbox_licence_updates"].upsert({"account": account, "at": at}, pk="account")  # type: ignore[union-attr]

    def _delete(self, table: str, columns: tuple[str, ...], keys: Sequence[tuple[str, ...]]) -> None:
        if keys:
            where = " AND ".join(f"{c} = ?" for c in columns)
            self._db.conn.executemany(f"DELETE FROM {table} WHERE {where}", keys)


def forget(path: Path | str) -> None:
    """Reset: drop the sandbox's tables from `path`; the next sandbox on it starts empty."""
    db = Database(sqlite3.connect(str(path)))
    try:
        with db.conn:
            for name in _TABLES:
                db.execute(f"DROP TABLE IF EXISTS {name}")
    finally:
        db.close()
