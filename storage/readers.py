"""Large reads and WAL checkpoints off the event loop: a second connection in a thread of its own.

The bot's own connection lives on the event loop and does every write: writes on a request
path are a few indexed rows in one short transaction, and one writer keeps the guard
(`Store.claim_for_submission`) a plain transaction with no SQLITE_BUSY to handle. What can be
large is reading (a 100,000-device CSV, the counts behind /metrics) and checkpointing the WAL
into the database file; those run here, on a second connection that only this one thread
uses, so they never hold the loop. In WAL mode a reader sees the last committed state and
neither blocks the writer nor is blocked by it; a PASSIVE checkpoint does not block it either.

An in-memory database has no second connection: the work then runs inline on the bot's own
connection (tests of pure logic only; `fota-bot serve` always has a file).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def database_file(conn: sqlite3.Connection) -> str:
    """The main database's file name ('' for an in-memory database)."""
    row = conn.execute("PRAGMA database_list").fetchone()
    return str(row[2] or "")


class Readers:
    def __init__(self, conn: sqlite3.Connection):
        self._main = conn
        self._path = database_file(conn)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @property
    def off_loop(self) -> bool:
        return bool(self._path)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = sqlite3.connect(self._path, check_same_thread=True)
            self._conn.execute("PRAGMA busy_timeout=5000")
        return self._conn

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._connection()
        try:
            return work(conn)
        finally:
            if conn.in_transaction:  # a reader must never keep an old snapshot open
                conn.rollback()

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` on the reader thread; its result. Read only (and checkpoints)."""
        if not self.off_loop:
            return work(self._main)
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")
            executor = self._executor
        return await asyncio.get_running_loop().run_in_executor(executor, self._call, work)

    async def checkpoint(self) -> tuple[int, int, int]:
        """Copy the WAL into the database file without blocking the writer (PASSIVE):
        (busy, frames in the WAL, frames checkpointed)."""

        def work(conn: sqlite3.Connection) -> tuple[int, int, int]:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return int(row[0]), int(row[1]), int(row[2])

        return await self.run(work)

    def close(self) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is None:
            return

        def close_connection() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        executor.submit(close_connection).result()
        executor.shutdown(wait=True)
