"""The CSV files: every device of a campaign, its failed devices by reason, and the devices
pre-flight excluded. Written on the reader thread where a request or the sender waits on
them: 100,000 devices take a few hundred ms, which on the event loop would hold every ack and
callback behind them."""

from __future__ import annotations

import csv
import io
import sqlite3

from storage import preflight, waves
from storage.findings import FINDING_WORDS
from storage.model import Campaign, Device
from storage.store import Store, device_rows


def devices_csv(
    store: Store, campaign: Campaign, *, failed_only: bool = False, reasons: set[str] | None = None
) -> str:
    """The per-device report: IMEI, status, reason, updated time (`reasons`: only devices
    with one of those reasons, '' for none given)."""
    return _devices_csv(store.device_rows(campaign.id, failed_only=failed_only), reasons)


async def devices_csv_off_loop(
    store: Store,
    campaign: Campaign,
    *,
    failed_only: bool = False,
    reasons: set[str] | None = None,
    waves_too: bool = False,
) -> str:
    """`devices_csv`, read and written on the reader thread. `waves_too`: a staged request's
    devices are those of its waves' campaigns, wave after wave (its own are never sent)."""

    def read(conn: sqlite3.Connection) -> str:
        ids = (waves.wave_campaign_ids(conn, campaign.id) if waves_too else []) or [campaign.id]
        return _devices_csv([d for cid in ids for d in device_rows(conn, cid, failed_only=failed_only)], reasons)

    return await store.readers.run(read)


def _devices_csv(devices: list[Device], reasons: set[str] | None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["imei", "status", "reason", "updated_at"])
    for device in devices:
        if reasons is not None and (device.reason or "") not in reasons:
            continue
        writer.writerow([device.imei, device.status or "", device.reason or "", device.updated_at or ""])
    return buffer.getvalue()


async def excluded_csv_off_loop(store: Store, campaign: Campaign) -> tuple[str, int]:
    """Every device pre-flight excluded, with its reasons and what became of it: the CSV
    behind the card's "Excluded devices (CSV)", which anyone may click."""
    return await store.readers.run(lambda conn: _excluded_csv(preflight.excluded_rows(conn, campaign.id)))


def _excluded_csv(rows: list[tuple[str, tuple[str, ...], bool]]) -> tuple[str, int]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["imei", "findings", "reasons", "in_request"])
    for imei, found, kept in rows:
        words = "; ".join(FINDING_WORDS.get(f, f) for f in found)
        writer.writerow([imei, ";".join(found), words, "yes" if kept else "no"])
    return buffer.getvalue(), len(rows)
