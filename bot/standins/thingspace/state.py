"""The sandbox's state in SQLite, so a rehearsal survives a restart of the process.

In-process (`fota-bot serve` in sandbox mode, `fota-bot demo`) the sandbox keeps its tables in
the bot's database file; `fota-bot sandbox` keeps them in a file of its own. Either way the
tables are the sandbox's own, all named ``sandbox_…``, behind `storage.sandbox_state`
(the only door to SQLite); this module turns the simulator's records into their rows and back.

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
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from bot.standins.thingspace.devices import FirmwareEntry
from bot.standins.thingspace.simulator import UTC, Campaign, DeviceState, FirmwareFault, Simulator
from storage.sandbox_state import SandboxTables
from storage.sandbox_state import forget as _forget


def open_state(path: Path | str, *, checkpoints: bool = True) -> SandboxTables:
    """The sandbox's tables in the SQLite file at `path` (see `SandboxTables.open`)."""
    return SandboxTables.open(path, checkpoints=checkpoints)


def forget(path: Path | str) -> None:
    """Reset: drop the sandbox's tables from `path`; the next sandbox on it starts empty."""
    _forget(path)


def _entry(entry: FirmwareEntry) -> str:
    return json.dumps(
        [entry.firmware_name, entry.firmware_from, entry.firmware_to, entry.make, entry.model,
         entry.protocol, entry.launch_date, entry.release_note]
    )


def has_state(tables: SandboxTables) -> bool:
    """Whether a sandbox saved here before (every save notes the clock)."""
    return tables.has_state()


def load(tables: SandboxTables, model: Simulator) -> dt.datetime | None:
    """Fill `model` from the tables; the clock's last reading, if one was saved."""
    model.reset()
    for row in tables.campaigns():
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
    for row in tables.devices():
        owner = model.campaigns.get(row["campaign_id"])
        if owner is not None:
            owner.devices[row["imei"]] = DeviceState(
                row["imei"], row["status"], row["reason"], row["updated"],
                row["recent_attempt"], row["next_attempt"],
            )
    for campaign in model.campaigns.values():
        campaign.order = sorted(campaign.devices)
    for row in tables.callbacks():
        model._callbacks[row["account"]] = row["url"]
    for row in tables.pairs("licences"):
        model._licences.setdefault(row["account"], {})[row["imei"]] = row["assigned"]
    for row in tables.pairs("licences_removed"):
        model._licence_removed.setdefault(row["account"], set()).add(row["imei"])
    for row in tables.pairs("firmware"):
        model._upgraded[(row["account"], row["imei"])] = row["firmware"]
    for row in tables.pairs("seen"):
        model._seen.setdefault(row["account"], set()).add(row["imei"])
    for row in tables.licence_updates():
        model._licence_updated[row["account"]] = dt.datetime.fromisoformat(row["at"])
    faults = tables.meta("firmware_faults")
    model.firmware_faults = [FirmwareFault(**f) for f in json.loads(faults)] if faults else []
    model.replan_all()
    model.clean()
    clock = tables.meta("clock")
    return dt.datetime.fromisoformat(clock).astimezone(UTC) if clock else None


def save(tables: SandboxTables, model: Simulator, now: dt.datetime, *, everything: bool = False) -> None:
    """Write what changed since the last save (all of it with `everything`), in one transaction."""
    changes = model.everything() if everything else model.take_changes()
    with tables.batch():
        for campaign_id in changes.campaigns:
            campaign = model.campaigns[campaign_id]
            tables.put_campaign(
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
                }
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
        tables.put_devices(rows)
        tables.delete_devices(gone)
        for account in changes.callbacks:
            url = model._callbacks.get(account)
            if url is None:
                tables.delete_callback(account)
            else:
                tables.put_callback(account, url)
        _pairs(tables, "licences", changes.licences,
               lambda a, i: (model._licences[a][i],) if i in model._licences.get(a, {}) else None)
        _pairs(tables, "licences_removed", changes.licences,
               lambda a, i: () if i in model._licence_removed.get(a, ()) else None)
        _pairs(tables, "firmware", changes.firmware,
               lambda a, i: (model._upgraded[(a, i)],) if (a, i) in model._upgraded else None)
        _pairs(tables, "seen", changes.seen, lambda a, i: ())
        for account, at in model._licence_updated.items():
            if account in changes.licence_accounts:
                tables.put_licence_update(account, at.isoformat())
        if changes.faults:
            faults = [dataclasses.asdict(f) for f in model.firmware_faults]
            tables.put_meta("firmware_faults", json.dumps(faults))
        tables.put_meta("clock", now.isoformat())


def _pairs(
    tables: SandboxTables,
    kind: str,
    keys: Iterable[tuple[str, str]],
    columns: Callable[[str, str], tuple[Any, ...] | None],
) -> None:
    """Write each (account, IMEI) fact of `kind`: its columns, or None when it is gone."""
    rows: list[tuple[Any, ...]] = []
    gone: list[tuple[str, str]] = []
    for account, imei in keys:
        values = columns(account, imei)
        if values is None:
            gone.append((account, imei))
        else:
            rows.append((account, imei, *values))
    tables.put_pairs(kind, rows)
    tables.delete_pairs(kind, gone)
