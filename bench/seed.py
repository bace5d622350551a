"""A database with history: N finished campaigns and their rows, built once and copied per run.

`python -m bench.seed --campaigns 100000 --devices 100` prints the path of the cached file.

What a team's database holds after a year: campaigns ended (most), cancelled, failed, rejected
or expired, spread over the past year; `devices` device rows each (their final status, one in
ten failed with a reason), drawn from a fleet of sandbox IMEIs so that one device appears in
many campaigns (as it does when a fleet is upgraded again and again: pre-flight's conflict check
meets that history); per campaign an approval, five audit rows, five delivered Slack updates
and three callbacks. Pre-flight's per-device findings are not seeded (they are read only for a
campaign waiting for approval).

Built through the bot's own migrations, then filled with executemany in large transactions
with the journal off and the secondary device indexes built after the rows (bulk loading is
several times faster that way), then put back in WAL mode. The file is cached under
the temporary directory (fota-bench-seed/), copied for each run and migrated there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.common import CHANNEL, FIRMWARE, FIRMWARE_FROM, FIRMWARE_TO
from bot.settings import SANDBOX_ACCOUNT
from bot.standins.thingspace import sandbox_imeis
from storage.store import open_database

CACHE = Path(tempfile.gettempdir()) / "fota-bench-seed"
SEED_VERSION = 1
# One IMEI in about twenty of the 100,000 campaigns: a fleet upgraded every few weeks.
FLEET = 500_000
FLEET_START = 10_000  # the ack benchmark's requests draw their devices from the same serials
BATCH = 5_000  # campaigns per transaction

_ENDINGS = (
    ("CampaignEnded", 85),
    ("CampaignCancelled", 4),
    ("CampaignFailed", 2),
    ("rejected", 4),
    ("expired", 3),
    ("withdrawn", 2),
)


def _ending(i: int) -> str:
    slot = (i * 7919) % 100
    for state, share in _ENDINGS:
        if slot < share:
            return state
        slot -= share
    return "CampaignEnded"


def cached(campaigns: int, devices: int) -> Path:
    """The seed file for this size, built if it is not cached yet."""
    CACHE.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = CACHE / f"v{SEED_VERSION}-{campaigns}x{devices}.db"
    if not path.exists():
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        build(partial, campaigns, devices)
        partial.rename(path)
    return path


def copy_to(target: Path, campaigns: int, devices: int) -> float:
    """Put a seeded database at `target` (nothing when campaigns is 0); seconds it took.

    The copy is brought up to the current schema here, before any timing starts: a migration
    added since the cache was built runs once per run, not in the bot's measured start-up.
    """
    started = time.perf_counter()
    if campaigns:
        source = cached(campaigns, devices)
        shutil.copyfile(source, target)
        target.chmod(0o600)
        open_database(target).close()
    return time.perf_counter() - started


def build(path: Path, campaigns: int, devices: int) -> None:
    started = time.perf_counter()
    db = open_database(path)  # the bot's schema, every migration applied
    db.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")  # 256 MiB
    deferred = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'devices' AND sql IS NOT NULL"
    ).fetchall()
    for name, _ in deferred:
        conn.execute(f"DROP INDEX {name}")
    fleet = sandbox_imeis(min(FLEET, max(1, campaigns * devices)), start=FLEET_START)
    year_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=365)
    step = dt.timedelta(days=365) / max(1, campaigns)
    for first in range(1, campaigns + 1, BATCH):
        last = min(campaigns, first + BATCH - 1)
        conn.execute("BEGIN")
        _insert(conn, range(first, last + 1), devices, fleet, year_ago, step)
        conn.execute("COMMIT")
    for name, sql in deferred:
        conn.execute(sql)
        print(f"  index {name} built ({time.perf_counter() - started:.0f} s)", flush=True)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    print(f"seeded {campaigns:,} campaigns × {devices} devices in {time.perf_counter() - started:.0f} s: {path}")


def _insert(
    conn: sqlite3.Connection,
    ids: range,
    devices: int,
    fleet: list[str],
    year_ago: dt.datetime,
    step: dt.timedelta,
) -> None:
    campaigns, audit, decisions, outbox, callbacks = [], [], [], [], []
    for i in ids:
        created = year_ago + step * i
        at = created.isoformat(timespec="microseconds")
        done = (created + dt.timedelta(days=3)).isoformat(timespec="microseconds")
        state = _ending(i)
        sent = state.startswith("Campaign")
        thingspace_id = f"seed-{i:08x}-0000-4000-8000-000000000000" if sent else None
        campaigns.append(
            (
                i, state, f"U0SEED{i % 40:02d}", SANDBOX_ACCOUNT, FIRMWARE, FIRMWARE_FROM, FIRMWARE_TO,
                "LWM2M", created.date().isoformat(), (created + dt.timedelta(days=3)).date().isoformat(),
                "[[18, 22]]", f"Seeded {i}", devices, hashlib.sha256(str(i).encode()).hexdigest(), 1,
                at, done, (created + dt.timedelta(days=1)).isoformat(timespec="microseconds"), CHANNEL,
                f"{created.timestamp():.6f}", thingspace_id, state if sent else None, "SEQUANS", "GM01Q",
                done if sent else None, "[]",
            )
        )
        audit.extend(
            (i, before, after, actor, why, at)
            for before, after, actor, why in (
                (None, "pending_approval", f"U0SEED{i % 40:02d}", "requested"),
                ("pending_approval", "approved" if sent else state, "U0SEEDAPPR", "approved"),
                ("approved", "submitting", "fota-bot", "submitting (1 approvals)"),
                ("submitting", "submitted", "fota-bot", "ThingSpace accepted"),
                ("submitted", state, "callback", f"ThingSpace status {state}"),
            )[: 5 if sent else 2]
        )
        decisions.append((i, "U0SEEDAPPR", "approve" if sent or state != "rejected" else "reject", at))
        outbox.extend(
            (i, kind, f"root:{i}" if kind == "root_update" else None, "{}", at, 1, done)
            for kind in ("root", "confirm", "root_update", "reply", "summary")
        )
        if sent:
            callbacks.extend(
                (done, "127.0.0.1", json.dumps({"campaignId": thingspace_id, "status": s}), 1, 1, thingspace_id)
                for s in ("CampaignRequestQueued", "CampaignScheduled", state)
            )
    conn.executemany(
        """INSERT INTO campaigns(id, state, requester, account, firmware_name, firmware_from, firmware_to,
           protocol, start_date, end_date, windows, name, device_count, content_hash, sandbox, created_at,
           updated_at, expires_at, approval_channel, thread_ts, thingspace_id, thingspace_status, make, model,
           last_callback_at, notes) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        campaigns,
    )
    conn.executemany(
        "INSERT INTO audit(campaign_id, from_state, to_state, actor, reason, at) VALUES(?, ?, ?, ?, ?, ?)", audit
    )
    conn.executemany(
        """INSERT INTO decisions(campaign_id, user, decision, content_hash, at)
           SELECT ?, ?, ?, content_hash, ? FROM campaigns WHERE id = ?""",
        [(c, u, d, a, c) for c, u, d, a in decisions],
    )
    conn.executemany(
        """INSERT INTO outbox(campaign_id, kind, coalesce_key, payload, created_at, attempts, sent_at)
           VALUES(?, ?, ?, ?, ?, ?, ?)""",
        outbox,
    )
    conn.executemany(
        """INSERT INTO callbacks(received_at, remote_addr, body, parsed, applied, thingspace_id)
           VALUES(?, ?, ?, ?, ?, ?)""",
        callbacks,
    )
    conn.executemany(
        "INSERT OR IGNORE INTO devices(campaign_id, imei, status, reason, updated_at) VALUES(?, ?, ?, ?, ?)",
        _device_rows(ids, devices, fleet, year_ago, step),
    )


def _device_rows(
    ids: range, devices: int, fleet: list[str], year_ago: dt.datetime, step: dt.timedelta
) -> Iterator[tuple[int, str, str | None, str | None, str | None]]:
    for i in ids:
        state = _ending(i)
        at = (year_ago + step * i + dt.timedelta(days=2)).isoformat(timespec="microseconds")
        base = (i * devices) % len(fleet)
        for k in range(devices):
            imei = fleet[(base + k) % len(fleet)]
            if not state.startswith("Campaign"):
                yield i, imei, None, None, None
            elif (i + k) % 10 == 0:
                yield i, imei, "UpgradeFailed", "Device did not download the firmware", at
            else:
                yield i, imei, "UpgradeSuccess", None, at


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.seed", description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=100_000)
    parser.add_argument("--devices", type=int, default=100)
    args = parser.parse_args()
    print(cached(args.campaigns, args.devices))


if __name__ == "__main__":
    main()
