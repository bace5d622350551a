"""Shared fixtures: a migrated store on a real SQLite file under tmp_path."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.store import Store
from tests.support.database import migrated_database


class ManualClock:
    """A clock tests move by hand; nothing waits on real time."""

    def __init__(self, start: dt.datetime | None = None):
        self.moment = start or dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += dt.timedelta(**delta)


@pytest.fixture(autouse=True)
def _logging_put_back() -> Iterator[None]:
    """`fota-bot …` run in-process (cli.main) sets up the root logger for a process: its
    handler writes to that test's captured stderr, closed once the test ends. Put the root
    logger and the levels it set back after every test."""
    from bot.logs import LIBRARIES

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    names = ("httpx", "httpcore", *LIBRARIES)
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, saved in levels.items():
        logging.getLogger(name).setLevel(saved)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "fota.db"


@pytest.fixture
def store(db_path: Path, clock: ManualClock) -> Iterator[Store]:
    s = Store.open(migrated_database(db_path), clock=clock)
    yield s
    s.close()
