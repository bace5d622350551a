"""Shared fixtures: a migrated store on a real SQLite file under tmp_path."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.store import Store


class ManualClock:
    """A clock tests move by hand; nothing waits on real time."""

    def __init__(self, start: dt.datetime | None = None):
        self.moment = start or dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.moment

    def advance(self, **delta: float) -> None:
        self.moment += dt.timedelta(**delta)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "fota.db"


@pytest.fixture
def store(db_path: Path, clock: ManualClock) -> Iterator[Store]:
    s = Store.open(db_path, clock=clock)
    yield s
    s.close()
