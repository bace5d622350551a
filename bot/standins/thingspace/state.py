"""The sandbox's state in SQLite, so a rehearsal survives a restart of the process.

In-process (`fota-bot serve` in sandbox mode, `fota-bot demo`) the sandbox keeps its tables in
the bot's database file; `fota-bot sandbox` keeps them in a file of its own. Either way the
tables are the sandbox's own, all named ``sandbox_…``, created here through sqlite-utils on a
connection of the sandbox's own; the bot's code never reads them.

What is kept: campaigns (with their status history and plan generation), each campaign's
devices, callback listeners, licences, the firmware devices were upgraded to, the devices an
account has used, the firmware faults (`Sandbox.fail_firmware`), and the sandbox clock's last
reading (so a sped-up clock never goes back
after a restart). What is not: OAuth tokens and M2M sessions (clients log in again, as they do
after any restart), fault knobs and request logs, and status changes not yet announced: a
callback due when the process stopped is not sent, as ThingSpace does not promise delivery
either; the bot's re-reads of the report find the change.

Writes are batched: the simulator marks what changed, `save` writes it in one transaction after
each HTTP request and each tick.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from bot.standins.thingspace.devices import FirmwareEntry
from bot.standins.thingspace.simulator import UTC, Campaign, DeviceState, FirmwareFault, Simulator

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


def open_state(path: Path | str) -> Database:
    """The sandbox's own connection to `path` (created with mode 0600: a listener URL carries
    the bot's secret callback token), WAL, its tables created."""
    if str(path) != ":memory:" and not Path(path).exists():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    db = Database(sqlite3.connect(str(path), check_same_thread=False))
    if str(path) != ":memory:":
        db.enable_wal()
    db.execute("PRAGMA busy_timeout=5000")
    with db.conn:
        for name, (columns, pk) in _TABLES.items():
            db[name].create(columns, pk=pk, if_not_exists=True)  # type: ignore[union-attr]
        db["sandbox_meta"].insert({"key": "schema", "value": SCHEMA_VERSION}, ignore=True)  # type: ignore[union-attr]
    return db


def forget(path: Path | str) -> None:
    """Reset: drop the sandbox's tables from `path`; the next sandbox on it starts empty."""
    db = Database(sqlite3.connect(str(path)))
    try:
        with db.conn:
            for name in _TABLES:
                db.execute(f"DROP TABLE IF EXISTS {name}")
    finally:
        db.close()


def _entry(entry: FirmwareEntry) -> str:
    return json.dumps(
        [entry.firmware_name, entry.firmware_from, entry.firmware_to, entry.make, entry.model,
         entry.protocol, entry.launch_date, entry.release_note]
    )


def has_state(db: Database) -> bool:
    """Whether a sandbox saved here before (every save notes the clock)."""
    return db.execute("SELECT 1 FROM sandbox_meta WHERE key = 'clock'").fetchone() is not None


def load(db: Database, model: Simulator) -> dt.datetime | None:
    """Fill `model` from the tables; the clock's last reading, if one was saved."""
    model.reset()
    for row in db["sandbox_campaigns"].rows:
        fields = json.loads(row["entry"])
        campaign = Campaign(
            id=row["id"],
            account=row["account"],
            name=row["name"],
            entry=FirmwareEntry(*fields),
            start_date=row["start_date"],
            end_date=row["end_date"],
            windows=json.loads(row["windows"]),
            auto_assign_license=bool(row["auto_assign_license"]),
            auto_add_devices=bool(row["auto_add_devices"]),
            created=dt.datetime.fromisoformat(row["created"]),
            devices={},
            order=[],
            status=row["status"],
            history=[(s, dt.datetime.fromisoformat(t)) for s, t in json.loads(row["history"])],
            generation=row["generation"],
        )
        model.campaigns[campaign.id] = campaign
    for row in db.query("SELECT * FROM sandbox_devices ORDER BY campaign_id, imei"):
        owner = model.campaigns.get(row["campaign_id"])
        if owner is not None:
            owner.devices[row["imei"]] = DeviceState(
                row["imei"], row["status"], row["reason"], row["updated"],
                row["recent_attempt"], row["next_attempt"],
            )
    for campaign in model.campaigns.values():
        campaign.order = sorted(campaign.devices)
    for row in db["sandbox_callbacks"].rows:
        model._callbacks[row["account"]] = row["url"]
    for row in db["sandbox_licences"].rows:
        model._licences.setdefault(row["account"], {})[row["imei"]] = row["assigned"]
    for row in db["sandbox_licences_removed"].rows:
        model._licence_removed.setdefault(row["account"], set()).add(row["imei"])
    for row in db["sandbox_firmware"].rows:
        model._upgraded[(row["account"], row["imei"])] = row["firmware"]
    for row in db["sandbox_seen"].rows:
        model._seen.setdefault(row["account"], set()).add(row["imei"])
    for row in db["sandbox_licence_updates"].rows:
        model._licence_updated[row["account"]] = dt.datetime.fromisoformat(row["at"])
    faults = db.execute("SELECT value FROM sandbox_meta WHERE key = 'firmware_faults'").fetchone()
    model.firmware_faults = [FirmwareFault(**f) for f in json.loads(faults[0])] if faults else []
    model.replan_all()
    model.clean()
    clock = db.execute("SELECT value FROM sandbox_meta WHERE key = 'clock'").fetchone()
    return dt.datetime.fromisoformat(clock[0]).astimezone(UTC) if clock else None


def save(db: Database, model: Simulator, now: dt.datetime, *, everything: bool = False) -> None:
    """Write what changed since the last save (all of it with `everything`), in one transaction."""
    changes = model.everything() if everything else model.take_changes()
    with db.conn:
        for campaign_id in changes.campaigns:
            campaign = model.campaigns[campaign_id]
            db["sandbox_campaigns"].upsert(  # type: ignore[union-attr]
                {
                    "id": campaign.id,
                    "account": campaign.account,
                    "name": campaign.name,
                    "entry": _entry(campaign.entry),
                    "start_date": campaign.start_date,
                    "end_date": campaign.end_date,
                    "windows": json.dumps(campaign.windows),
                    "auto_assign_license": int(campaign.auto_assign_license),
                    "auto_add_devices": int(campaign.auto_add_devices),
                    "created": campaign.created.isoformat(),
                    "status": campaign.status,
                    "history": json.dumps([(s, t.isoformat()) for s, t in campaign.history]),
                    "generation": campaign.generation,
                },
                pk="id",
            )
        rows: list[tuple[Any, ...]] = []
        gone: list[tuple[str, str]] = []
        for campaign_id, imei in changes.devices:
            device = model.campaigns[campaign_id].devices.get(imei)
            if device is None:
                gone.append((campaign_id, imei))
                continue
            rows.append((campaign_id, imei, device.status, device.reason, device.updated,
                         device.recent_attempt, device.next_attempt))
        # Plain executemany rather than sqlite-utils' upsert_all: a 100,000-device campaign is
        # saved in well under a second this way, where upsert_all takes many seconds (it runs an
        # INSERT and an UPDATE per row) and the event loop would stall meanwhile.
        db.conn.executemany("INSERT OR REPLACE INTO sandbox_devices VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        _delete(db, "sandbox_devices", ("campaign_id", "imei"), gone)
        for account in changes.callbacks:
            url = model._callbacks.get(account)
            if url is None:
                _delete(db, "sandbox_callbacks", ("account",), [(account,)])
            else:
                db["sandbox_callbacks"].upsert({"account": account, "url": url}, pk="account")  # type: ignore[union-attr]
        _pairs(db, "sandbox_licences", changes.licences,
               lambda a, i: {"assigned": model._licences[a][i]} if i in model._licences.get(a, {}) else None)
        _pairs(db, "sandbox_licences_removed", changes.licences,
               lambda a, i: {} if i in model._licence_removed.get(a, ()) else None)
        _pairs(db, "sandbox_firmware", changes.firmware,
               lambda a, i: {"firmware": model._upgraded[(a, i)]} if (a, i) in model._upgraded else None)
        _pairs(db, "sandbox_seen", changes.seen, lambda a, i: {})
        for account, at in model._licence_updated.items():
            if account in changes.licence_accounts:
                db["sandbox_licence_updates"].upsert({"account": account, "at": at.isoformat()}, pk="account")  # type: ignore[union-attr]
        if changes.faults:
            faults = [dataclasses.asdict(f) for f in model.firmware_faults]
            db["sandbox_meta"].upsert({"key": "firmware_faults", "value": json.dumps(faults)}, pk="key")  # type: ignore[union-attr]
        db["sandbox_meta"].upsert({"key": "clock", "value": now.isoformat()}, pk="key")  # type: ignore[union-attr]


def _pairs(db: Database, table: str, keys: Iterable[tuple[str, str]], value: Any) -> None:
    rows: list[tuple[Any, ...]] = []
    gone: list[tuple[str, str]] = []
    for account, imei in keys:
        fields = value(account, imei)
        if fields is None:
            gone.append((account, imei))
        else:
            rows.append((account, imei, *fields.values()))
    if rows:
        marks = ", ".join("?" * len(rows[0]))
        db.conn.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({marks})", rows)
    _delete(db, table, ("account", "imei"), gone)


def _delete(db: Database, table: str, columns: tuple[str, ...], keys: Sequence[tuple[str, ...]]) -> None:
    if keys:
        where = " AND ".join(f"{c} = ?" for c in columns)
        db.conn.executemany(f"DELETE FROM {table} WHERE {where}", keys)
