"""An empty database with every migration applied, made once per test session and copied for
each test that starts from one.

Migrating a fresh SQLite file runs every migration in turn (tens of milliseconds, more with
each migration added), while copying the migrated file costs about one; opening the copy runs
the migrations' check as `fota-bot serve` does on an existing file. The migrations themselves
are tested on fresh files (tests/storage/test_store.py, `test_migrations_*`).
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

from storage.store import Store


@functools.cache
def _migrated() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fota.db"
        Store.open(path).close()
        # The last connection's close moved the WAL into the file: the file is the whole database.
        leftovers = sorted(p.name for p in Path(tmp).iterdir() if p != path)
        assert not leftovers, f"the migrated database left {leftovers} beside it"
        return path.read_bytes()


def migrated_database(path: Path | str) -> Path:
    """Create `path` (it must not exist) holding an empty, migrated database: mode 0600, as
    `open_database` creates one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(_migrated())
    return path
