"""What is wrong with FOTA_DB, in one sentence, before anything opens it.

SQLite's own words for these cases ("file is not a database", "unable to open database file")
name neither the setting nor the fix, and some only surface at the first query.
"""

from __future__ import annotations

import os
from pathlib import Path

# The first 16 bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"


def database_problem(path: Path, *, must_exist: bool = False) -> str | None:
    """Why FOTA_DB=`path` cannot be used, or None. Reads at most 16 bytes; writes nothing."""
    setting = f"FOTA_DB={path}"
    folder = path.parent
    if path.is_dir():
        return f"{setting} is a folder; FOTA_DB names the database file, e.g. {path / 'fota.db'}"
    if not folder.is_dir():
        return f"{setting}: the folder {folder} does not exist; create it (or mount the volume) first"
    if not path.exists():
        if must_exist:
            return f"{setting}: no database there yet; `fota-bot serve` creates it"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{setting}: the folder {folder} is not writable by this user, so the database cannot be created"
        return None
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        return f"{setting} cannot be read: {exc.strerror or exc}"
    if header and header != SQLITE_HEADER:
        return (
            f"{setting} is not a SQLite database; point FOTA_DB at fota-bot's database file, "
            "or restore it from a backup"
        )
    return None
