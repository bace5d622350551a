"""What a test counts on a SQLite connection: rows changed per committed transaction."""

from __future__ import annotations

import sqlite3


class Transactions:
    """Rows changed per committed transaction on one connection, from SQLite's own counter
    (a row written by a trigger counts too)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.sizes: list[int] = []
        self._at_begin = 0
        conn.set_trace_callback(self._statement)

    def _statement(self, sql: str) -> None:
        word = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if word == "BEGIN":
            self._at_begin = self.conn.total_changes
        elif word == "COMMIT":
            self.sizes.append(self.conn.total_changes - self._at_begin)

    def stop(self) -> None:
        self.conn.set_trace_callback(None)
