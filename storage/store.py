"""All SQL lives here (and in `storage/outbox.py`, the outbox's own). Every change is one
transaction; nothing is ever deleted (but Slack updates delivered long ago, see
`Outbox.prune_sent`).

`Store.transition` is the only writer of `campaigns.state`: it checks the
transition table and writes the audit row in the same transaction.
`Store.claim_for_submission` is the one guard between a campaign and
ThingSpace's schedule endpoint: it refuses unless the recorded approvals are
there, for the content hash the campaign has now.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import math
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from storage import migrations
from storage.model import (
    ApprovalOutcome,
    ApprovalResult,
    ApprovalsLapsed,
    Campaign,
    CampaignNotFound,
    Decision,
    Device,
    NotApproved,
    TimeWindow,
    device_list_json,
    joined_device_lists,
    ref_for,
    reminder_time,
    request_hash,
    request_hash_of_list,
)
from storage.plan import RolloutPlan
from storage.readers import Readers
from storage.refusals import plan_refusal, preflight_refusal, wave_refusal
from storage.states import (
    ACTIVE_AT_THINGSPACE,
    DEVICE_BUCKETS,
    DEVICE_FINAL,
    FAILED_DEVICE_STATUSES,
    CampaignState,
    check_transition,
    device_bucket,
)

Clock = Callable[[], dt.datetime]
# One INFO line per state change, with who and why: the operator's view of the audit table.
log = logging.getLogger("storage.store")


# How far ahead of our clock a reported time may be before it is not believed: wide enough
# for a skewed clock or a local time labelled UTC (up to 14 hours), never a year ahead.
FUTURE_SKEW = dt.timedelta(days=1)
# A new request's devices per transaction when it has more (Store.store_request): 7-13 ms of the
# loop each on a 2-core machine, where 100,000 devices in one transaction held it 1.5-2.8 s.
DEVICE_CHUNK = 1_000
# How often Store.first_sighting drops the signatures it no longer needs (seconds); at most
# this much longer than asked, a signature stays on record.
SIGNATURES_PRUNED_EVERY = 1.0
# Due reminders or expiries read at a time (each is a transaction and an outbox row).
TIMER_BATCH = 50


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _moment(value: object) -> dt.datetime | None:
    """A report's time as UTC: ISO 8601 (with Z, an offset, a space, or naive = UTC) or epoch
    seconds or milliseconds; None when it cannot be read (then it orders nothing)."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        if text.isdigit():
            number = int(text)
            return dt.datetime.fromtimestamp(number / 1000 if number > 10**11 else number, dt.UTC)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except (ValueError, OverflowError, OSError):
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def open_database(path: Path | str) -> Database:
    """Open (creating with mode 0600) the SQLite file, in WAL mode, migrated."""
    path = Path(path)
    if str(path) != ":memory:" and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Create the file ourselves so it is never world-readable, even for an instant.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(str(path), check_same_thread=False)
    db = Database(conn)
    if str(path) != ":memory:":
        db.enable_wal()
    db.execute("PRAGMA foreign_keys=ON")
    # WAL + NORMAL is durable across process crashes (only an OS crash can lose the last commits).
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    # An older version on a newer schema would write rows the newer code cannot read back.
    if newer := migrations.unknown_to_this_version(db):
        db.close()
        raise migrations.NewerDatabase(
            f"{path} was upgraded by a newer fota-bot (schema {', '.join(newer)}); run that version, "
            "or restore the backup taken before the upgrade"
        )
    migrations.apply(db)
    return db


@dataclass(frozen=True)
class DatabaseSummary:
    """What `fota-bot check` reports of FOTA_DB, read without changing it."""

    callback_token: str | None
    campaigns: int
    newer_migrations: list[str]  # applied by a newer fota-bot; this version must not write it


def read_only_summary(path: Path) -> DatabaseSummary:
    """FOTA_DB opened read only: never created, migrated or written. Raises sqlite3.Error when
    it cannot be read."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT value FROM kv WHERE key = 'callback_token'").fetchone()
        campaigns = int(conn.execute("SELECT count(*) FROM campaigns").fetchone()[0])
        newer = migrations.unknown_to_this_version(Database(conn))
    finally:
        conn.close()
    return DatabaseSummary(str(row[0]) if row else None, campaigns, newer)


def device_rows(
    conn: sqlite3.Connection, campaign_id: int, *, failed_only: bool = False, limit: int | None = None
) -> list[Device]:
    """A campaign's devices in request order (failed ones only, the first `limit`), filtered and
    limited by SQLite: the first 20 of 100,000 devices cost 20 rows, not 100,000. On the bot's
    connection or, for a whole large campaign, the reader thread's."""
    where = "campaign_id = ? AND dropped_at IS NULL"
    params: list[Any] = [campaign_id]
    if failed_only:
        where += f" AND status IN ({','.join('?' * len(FAILED_DEVICE_STATUSES))})"
        params.extend(FAILED_DEVICE_STATUSES)
    rows = conn.execute(
        f"SELECT imei, status, reason, updated_at FROM devices WHERE {where} ORDER BY rowid LIMIT ?",
        [*params, -1 if limit is None else limit],
    ).fetchall()
    return [Device(*r) for r in rows]


@dataclass(frozen=True)
class RowCounts:
    """Whole-table counts behind /metrics."""

    campaigns: list[tuple[str, int]]  # (state, campaigns)
    callbacks: list[tuple[int, int]]  # (applied, callbacks)
    outbox: tuple[int, int, int]  # Slack updates pending, sent, refused


def _row_counts(conn: sqlite3.Connection) -> RowCounts:
    campaigns = conn.execute("SELECT state, count(*) FROM campaigns GROUP BY state").fetchall()
    callbacks = conn.execute("SELECT applied, count(*) FROM callbacks GROUP BY applied").fetchall()
    row = conn.execute(
        """SELECT sum(sent_at IS NULL), sum(sent_at IS NOT NULL AND last_error IS NULL),
                  sum(sent_at IS NOT NULL AND last_error IS NOT NULL) FROM outbox"""
    ).fetchone()
    return RowCounts(campaigns, callbacks, (row[0] or 0, row[1] or 0, row[2] or 0))


@dataclass(frozen=True)
class SubmissionFacts:
    """What the submission path keeps per campaign, across restarts."""

    approvals_required: int | None  # required when the campaign was claimed (None: not claimed)
    posts: int  # schedule POSTs sent (counted before each leaves)
    last_post_at: dt.datetime | None
    unanswered_post: bool  # a POST went out whose answer never came: it may have created the campaign
    unanswered_post_before_last: bool  # as above, for the POSTs before the last one
    retries: int  # failed tries (ThingSpace unreachable or unclear)
    report_waits: int  # waits for ThingSpace's reports to show a campaign (not failures)
    membership_waits: int  # waits for Slack to list an approver group (not failures)


@dataclass(frozen=True)
class NotFoundSpell:
    """ThingSpace's 404s for one campaign, counted in a row."""

    first: dt.datetime
    last: dt.datetime
    reads: int


_NO_SUBMISSION_FACTS = SubmissionFacts(None, 0, None, False, False, 0, 0, 0)


class Store:
    def __init__(self, db: Database, *, clock: Clock = utcnow):
        self.db = db
        self.clock = clock
        self.readers = Readers(db.conn)
        self._signatures_pruned_at = -math.inf  # first_sighting's last delete of old rows

    @classmethod
    def open(cls, path: Path | str, *, clock: Clock = utcnow) -> Store:
        return cls(open_database(path), clock=clock)

    def close(self) -> None:
        self.readers.close()
        self.db.close()

    def atomic(self) -> AbstractContextManager[Database]:
        """One transaction around several Store (and Outbox) calls: a state and the thread's
        news of it commit together or not at all. Nested, it joins the outer transaction."""
        return self.db.atomic()

    def checkpoint_off_loop(self) -> None:
        """From now on the WAL is copied into the database file only by `readers.checkpoint()`
        (a periodic job on the reader thread), not by whichever commit on the event loop
        happens to cross SQLite's 1,000-page mark, which then copies and syncs it all."""
        self.db.execute("PRAGMA wal_autocheckpoint=0")

    def healthy(self) -> bool:
        try:
            self.db.execute("SELECT 1 FROM campaigns LIMIT 1").fetchall()
            return True
        except sqlite3.Error:
            return False

    def health(self, *, min_free_bytes: int) -> str | None:
        """None when the database takes a write and has room; else the reason, in plain words.

        A read alone says nothing about a full disk or a read-only file, so this writes (one
        row, one transaction) and looks at the free space beside the file.
        """
        try:
            with self.db.atomic():
                self.db.execute(
                    "INSERT INTO kv(key, value) VALUES('health_check', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [self.now()],
                )
        except sqlite3.Error as exc:
            return f"cannot be written ({exc})"
        path = next((row[2] for row in self.db.execute("PRAGMA database_list") if row[1] == "main"), "")
        if path:
            stat = os.statvfs(os.path.dirname(path) or ".")
            free = stat.f_bavail * stat.f_frsize
            if free < min_free_bytes:
                mib = 1024 * 1024
                return f"only {free // mib} MiB free beside the database (at least {min_free_bytes // mib} MiB needed)"
        return None

    def now(self) -> str:
        return iso(self.clock())

    # --- key-value -------------------------------------------------------------------------

    def get_kv(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM kv WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_kv(self, key: str, value: str) -> None:
        with self.db.atomic():
            self.db.execute(
                "INSERT INTO kv(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )

    def first_sighting(self, signature: str, now: float, *, keep_seconds: float = 600.0) -> bool:
        """Remember a signed Slack request; False when it was seen before."""
        return self.first_sightings([(signature, now)], keep_seconds=keep_seconds)[0]

    def first_sightings(self, seen: Sequence[tuple[str, float]], *, keep_seconds: float = 600.0) -> list[bool]:
        """Remember signed Slack requests (signature, when), in order, in one transaction; for
        each, False when it was seen before (earlier in `seen` too).

        Kept on disk, so a replay right after a restart is still recognised; rows older
        than `keep_seconds` (twice Slack's five-minute window) are dropped as new ones come,
        at most once every SIGNATURES_PRUNED_EVERY: a delete with each insert made every
        request's commit rewrite the oldest pages of the table and of both its indexes too.
        """
        if not seen:
            return []
        now = max(t for _, t in seen)
        prune = not now - SIGNATURES_PRUNED_EVERY < self._signatures_pruned_at <= now
        with self.db.atomic():
            if prune:
                self.db.execute("DELETE FROM slack_requests WHERE seen_at < ?", [now - keep_seconds])
            fresh = [
                self.db.execute(
                    "INSERT OR IGNORE INTO slack_requests(signature, seen_at) VALUES(?, ?)", [signature, at]
                ).rowcount
                == 1
                for signature, at in seen
            ]
        if prune:
            self._signatures_pruned_at = now
        return fresh

    def installation_id(self) -> str:
        """Four hex digits, generated once per database, that tell this installation's
        campaign names from another's on the same ThingSpace account (FB-1 of a fresh
        database is not FB-1 of the old one)."""
        known: str | None = getattr(self, "_installation", None)
        if known is not None:
            return known
        with self.db.atomic():
            value = self.get_kv("installation_id")
            if value is None:
                value = secrets.token_hex(2)
                self.db.execute("INSERT INTO kv(key, value) VALUES('installation_id', ?)", [value])
            else:
                # Read back from the database, so committed: it never changes, and every new
                # campaign carries it. (One generated just now may yet be rolled back with
                # the transaction around it, so it is not kept until it is read back.)
                self._installation = value
        return value

    def callback_token(self) -> str:
        """The secret callback path segment, generated once and kept."""
        with self.db.atomic():
            token = self.get_kv("callback_token")
            if token is None:
                token = secrets.token_urlsafe(32)
                self.db.execute("INSERT INTO kv(key, value) VALUES('callback_token', ?)", [token])
        return token

    # --- campaigns -------------------------------------------------------------------------

    def count_campaigns_beyond(self, *, channel: str) -> int:
        """Campaigns not requested in `channel` with the sandbox (a real bot's, for the demo's
        refusal to write into its database)."""
        row = self.db.execute(
            "SELECT count(*) FROM campaigns WHERE approval_channel IS NOT ? OR sandbox = 0", [channel]
        ).fetchone()
        return int(row[0])

    def create_campaign(
        self,
        *,
        requester: str,
        account: str,
        firmware_name: str,
        firmware_from: str,
        firmware_to: str,
        protocol: str,
        start_date: dt.date,
        end_date: dt.date,
        windows: Sequence[TimeWindow],
        name: str | None,
        devices: Sequence[str],
        sandbox: bool,
        expires_at: dt.datetime,
        notes: Sequence[str] = (),
        response_url: str | None = None,
        licence_auto: bool = False,
        plan: RolloutPlan | None = None,
        reserved_id: int | None = None,
        device_list: bytes | None = None,
    ) -> Campaign:
        """Store a new request (state pending_approval) with its devices, in one transaction.

        With a `plan` (a staged rollout) its waves are assigned once pre-flight knows which
        devices are eligible; until then the request cannot be approved, and it is never sent
        whole (storage.waves). With `reserved_id` (`store_request`) the devices are already
        written under that id: this transaction checks they are all there and makes the
        request exist. `device_list`: the devices already serialised for the hash
        (`device_list_json`), so that this transaction only hashes them.
        """
        moment = self.clock()
        now = iso(moment)
        with self.db.atomic():
            if reserved_id is not None:
                self._release_reservation(reserved_id, devices)
            values: dict[str, Any] = {
                # A request of a chunk takes its own reserved id; any other steps past every
                # reserved one (the next rowid may be the id of a request being stored).
                "id": reserved_id if reserved_id is not None else self.next_campaign_id(),
                "state": CampaignState.PENDING_APPROVAL.value,
                "requester": requester,
                "account": account,
                "firmware_name": firmware_name,
                "firmware_from": firmware_from,
                "firmware_to": firmware_to,
                "protocol": protocol,
                "start_date": start_date.isoformat(),
                "end_date": end_date.isoformat(),
                "windows": json.dumps([[w.start_hour, w.end_hour] for w in windows]),
                "name": name,
                "device_count": len(devices),
                "content_hash": "",
                "sandbox": int(sandbox),
                "created_at": now,
                "updated_at": now,
                "expires_at": iso(expires_at),
                "notes": json.dumps(list(notes)),
                "response_url": response_url,
                "licence_auto": int(licence_auto),
                "installation": self.installation_id(),
                "remind_at": iso(reminder_time(moment, expires_at)),
            }
            # The campaign as its row will read (every other column empty), so that the row is
            # written once, with its hash, and not read back.
            campaign = Campaign.from_row(dict.fromkeys(self._campaign_columns()) | values)
            # The hash covers exactly what will be sent, including the name with its ref.
            digest = (
                request_hash(campaign, devices)
                if device_list is None
                else request_hash_of_list(campaign, device_list)
            )
            campaign = replace(campaign, content_hash=digest)
            values["content_hash"] = digest
            self.db.execute(
                f"INSERT INTO campaigns({', '.join(values)}) VALUES({', '.join('?' * len(values))})",
                list(values.values()),
            )
            campaign_id = campaign.id
            if reserved_id is None:
                self.db.conn.executemany(
                    "INSERT INTO devices(campaign_id, imei) VALUES(?, ?)",
                    ((campaign_id, imei) for imei in devices),
                )
            if plan is not None:
                self.db.execute(
                    """INSERT INTO rollout_plans(campaign_id, plan, base_hash, bound_hash, created_at)
                       VALUES(?, ?, ?, '', ?)""",
                    [campaign_id, json.dumps(plan.to_json()), digest, now],
                )
            self._audit(campaign_id, None, CampaignState.PENDING_APPROVAL, requester, "requested", now)
        return campaign

    def create_wave_campaign(
        self,
        parent: Campaign,
        *,
        number: int,
        waves_total: int,
        devices: Sequence[str],
        start_date: dt.date,
        end_date: dt.date,
        by: str,
        reason: str,
    ) -> Campaign:
        """Wave `number`'s own campaign, created approved: on its request's approvals of the plan,
        which the guard recounts when it is sent. The request's firmware, windows, thread and
        installation id; the wave's devices and dates; a content hash of its own. The audit row
        says who started it and why. Called in the transaction that starts the wave."""
        now = self.now()
        with self.db.atomic():
            cursor = self.db.execute(
                """INSERT INTO campaigns(id, state, requester, account, firmware_name, firmware_from,
                   firmware_to, protocol, start_date, end_date, windows, name, device_count,
                   content_hash, sandbox, created_at, updated_at, expires_at, notes, licence_auto,
                   approval_channel, thread_ts, parent_id, wave, waves_total, installation)
                   VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '', ?, ?, ?, ?, '[]', ?, ?, ?, ?, ?, ?, ?)""",
                [
                    self.next_campaign_id(),  # past any id reserved by a request being stored
                    CampaignState.APPROVED.value,
                    parent.requester,
                    parent.account,
                    parent.firmware_name,
                    parent.firmware_from,
                    parent.firmware_to,
                    parent.protocol,
                    start_date.isoformat(),
                    end_date.isoformat(),
                    json.dumps([[w.start_hour, w.end_hour] for w in parent.windows]),
                    parent.name,
                    len(devices),
                    int(parent.sandbox),
                    now,
                    now,
                    iso(parent.expires_at),
                    int(parent.licence_auto),
                    parent.approval_channel,
                    parent.thread_ts,
                    parent.id,
                    number,
                    waves_total,
                    # A wave's name carries the request's installation id, as the request's would.
                    parent.installation or None,
                ],
            )
            wave_id = cursor.lastrowid
            assert wave_id is not None
            self.db.conn.executemany(
                "INSERT INTO devices(campaign_id, imei) VALUES(?, ?)", ((wave_id, imei) for imei in devices)
            )
            digest = request_hash(self.campaign(wave_id), devices)
            self.db.execute("UPDATE campaigns SET content_hash = ? WHERE id = ?", [digest, wave_id])
            self._audit(wave_id, None, CampaignState.APPROVED, by, reason, now)
        return self.campaign(wave_id)

    # --- a large request, stored a chunk at a time ------------------------------------------

    async def store_request(self, **request: Any) -> Campaign:
        """`create_campaign`, without holding the event loop for the whole device list.

        Up to DEVICE_CHUNK devices go in create_campaign's one transaction. More are written
        DEVICE_CHUNK to a transaction under a reserved campaign id, yielding to the loop
        between chunks (every write stays on this one connection: no second writer to wait
        on), and then create_campaign's short transaction inserts the campaign row. Until that
        commits no campaign carries the id: every reader reaches devices through a campaign,
        and the guard through the campaign's state, so a half-written request is neither
        seen nor sendable. On an error the rows written so far are deleted; after a crash
        `discard_unfinished_requests` deletes them at start-up.
        """
        devices: Sequence[str] = request["devices"]
        if len(devices) <= DEVICE_CHUNK:
            return self.create_campaign(**request)
        campaign_id = self.reserve_campaign_id()
        try:
            # The list is serialised for the request's hash a chunk at a time too: at 100,000
            # devices that is ~30 ms, which the last transaction would otherwise spend.
            serialised: list[bytes] = []
            for start in range(0, len(devices), DEVICE_CHUNK):
                chunk = devices[start : start + DEVICE_CHUNK]
                self.store_device_chunk(campaign_id, chunk)
                serialised.append(device_list_json(chunk))
                await asyncio.sleep(0)
            return self.create_campaign(
                **request, reserved_id=campaign_id, device_list=joined_device_lists(serialised)
            )
        except BaseException:
            try:
                self.discard_request(campaign_id)
            except sqlite3.Error:
                log.exception("a request being stored was not cleaned up; start-up will")
            raise

    def next_campaign_id(self) -> int:
        """The id a new campaign takes: past every campaign and every reserved id (a wave's
        campaign must not land on the id of a request whose devices are being written)."""
        row = self.db.execute(
            """SELECT max(coalesce((SELECT max(id) FROM campaigns), 0),
                          coalesce((SELECT max(campaign_id) FROM requests_being_stored), 0)) + 1"""
        ).fetchone()
        return int(row[0])

    def reserve_campaign_id(self) -> int:
        with self.db.atomic():
            campaign_id = self.next_campaign_id()
            self.db.execute(
                "INSERT INTO requests_being_stored(campaign_id, started_at) VALUES(?, ?)",
                [campaign_id, self.now()],
            )
        return campaign_id

    def store_device_chunk(self, campaign_id: int, imeis: Sequence[str]) -> None:
        """One transaction of a reserved request's devices.

        The campaign row they point at does not exist yet, so the foreign key is switched off
        for this transaction alone (SQLite ignores the pragma inside one: it is set between
        transactions, and this connection is used by one thread, so nothing else runs in it).
        """
        conn = self.db.conn
        if conn.in_transaction:
            raise RuntimeError("a device chunk must be a transaction of its own")
        conn.execute("PRAGMA foreign_keys=OFF")
        try:
            with self.db.atomic():
                if not self.db.execute(
                    "SELECT 1 FROM requests_being_stored WHERE campaign_id = ?", [campaign_id]
                ).fetchone():
                    raise RuntimeError(f"campaign id {campaign_id} is not reserved")
                conn.executemany(
                    "INSERT INTO devices(campaign_id, imei) VALUES(?, ?)", ((campaign_id, imei) for imei in imeis)
                )
        finally:
            conn.execute("PRAGMA foreign_keys=ON")

    def _release_reservation(self, campaign_id: int, devices: Sequence[str]) -> None:
        """Inside create_campaign's transaction: every device written, the id no longer reserved."""
        released = self.db.execute("DELETE FROM requests_being_stored WHERE campaign_id = ?", [campaign_id])
        if released.rowcount != 1:
            raise RuntimeError(f"campaign id {campaign_id} is not reserved")
        # From the kept counts (a few rows), not a count of up to 100,000 device rows.
        written = self.db.execute(
            "SELECT coalesce(sum(devices), 0) FROM device_status_counts WHERE campaign_id = ?", [campaign_id]
        ).fetchone()[0]
        if written != len(devices):
            raise RuntimeError(f"{written} of {len(devices)} devices written for campaign id {campaign_id}")

    def discard_request(self, campaign_id: int) -> None:
        """Delete a reserved request's devices (DEVICE_CHUNK to a transaction), then its reservation."""
        while True:
            with self.db.atomic():
                if not self.db.execute(
                    "SELECT 1 FROM requests_being_stored WHERE campaign_id = ?", [campaign_id]
                ).fetchone():
                    return  # never reserved, or already a campaign: its devices are its own
                gone = self.db.execute(
                    """DELETE FROM devices WHERE rowid IN
                       (SELECT rowid FROM devices WHERE campaign_id = ? LIMIT ?)""",
                    [campaign_id, DEVICE_CHUNK],
                ).rowcount
                if gone == 0:
                    self.db.execute("DELETE FROM requests_being_stored WHERE campaign_id = ?", [campaign_id])
                    return

    def discard_unfinished_requests(self) -> int:
        """Start-up: what requests interrupted mid-store left behind goes. Only `serve` calls it
        (a CLI command run beside a serving bot must not delete a request being stored)."""
        ids = [r[0] for r in self.db.execute("SELECT campaign_id FROM requests_being_stored").fetchall()]
        for campaign_id in ids:
            log.warning("deleting the devices of a request interrupted while being stored (id %d)", campaign_id)
            self.discard_request(campaign_id)
        return len(ids)

    def campaign(self, campaign_id: int) -> Campaign:
        row = self.db.execute("SELECT * FROM campaigns WHERE id = ?", [campaign_id]).fetchone()
        if row is None:
            raise CampaignNotFound(ref_for(campaign_id))
        return self._campaign(row)

    def _campaign(self, row: tuple[Any, ...]) -> Campaign:
        columns = self._campaign_columns()
        return Campaign.from_row(dict(zip(columns, row, strict=True)))

    def _campaign_columns(self) -> list[str]:
        cached = getattr(self, "_columns", None)
        if cached is None:
            cached = [c.name for c in self.db["campaigns"].columns]
            self._columns = cached
        return cached

    def find_campaign(self, ident: str) -> Campaign:
        """A campaign by the bot's reference (FB-12, fb-12, 12) or ThingSpace's campaign id."""
        text = ident.strip()
        number = text[3:] if text.upper().startswith("FB-") else text
        if number.isdigit():
            return self.campaign(int(number))
        found = self.by_thingspace_id(text)
        if found is None:
            raise CampaignNotFound(text)
        return found

    def by_thingspace_id(self, thingspace_id: str) -> Campaign | None:
        row = self.db.execute(
            "SELECT * FROM campaigns WHERE thingspace_id = ?", [thingspace_id]
        ).fetchone()
        return self._campaign(row) if row else None

    # --- approval timers ---------------------------------------------------------------------
    # A request waiting for approval is reminded of at its `remind_at` (cleared once the
    # reminder is queued) and expires at its `expires_at`. Partial indexes hold the waiting
    # requests alone, by those moments: what is due is read by index, never by history.

    def reminders_due(
        self, until: dt.datetime, *, after: tuple[str, int] | None = None, limit: int = TIMER_BATCH
    ) -> list[tuple[str, int]]:
        """Waiting requests whose reminder is due by `until`, in time order, as (moment, id)
        pairs; `after` is the last pair of the batch before."""
        return self._timers_due("remind_at", "idx_campaigns_waiting_remind", until, after, limit)

    def expiries_due(
        self, until: dt.datetime, *, after: tuple[str, int] | None = None, limit: int = TIMER_BATCH
    ) -> list[tuple[str, int]]:
        """Waiting requests past their expiry by `until`, like `reminders_due`."""
        return self._timers_due("expires_at", "idx_campaigns_waiting_expiry", until, after, limit)

    def _timers_due(
        self, column: str, index: str, until: dt.datetime, after: tuple[str, int] | None, limit: int
    ) -> list[tuple[str, int]]:
        moment, campaign_id = after if after is not None else ("", 0)
        rows = self.db.execute(
            f"""SELECT {column}, id FROM campaigns INDEXED BY {index}
               WHERE state = 'pending_approval' AND {column} <= ? AND ({column}, id) > (?, ?)
               ORDER BY {column}, id LIMIT ?""",
            [iso(until), moment, campaign_id, limit],
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def next_approval_timer(self, after: dt.datetime | None = None) -> dt.datetime | None:
        """The first reminder or expiry of a waiting request (later than `after`), or None."""
        bound = iso(after) if after is not None else ""
        moments = [
            self.db.execute(
                f"""SELECT {column} FROM campaigns INDEXED BY {index}
                   WHERE state = 'pending_approval' AND {column} > ? ORDER BY {column} LIMIT 1""",
                [bound],
            ).fetchone()
            for column, index in (
                ("remind_at", "idx_campaigns_waiting_remind"),
                ("expires_at", "idx_campaigns_waiting_expiry"),
            )
        ]
        found = [row[0] for row in moments if row is not None]
        return dt.datetime.fromisoformat(min(found)) if found else None

    def take_reminder(self, campaign_id: int) -> bool:
        """Mark a waiting request's reminder as given; False if it was given already (or the
        request is no longer waiting). Call in the transaction that queues the reminder."""
        taken = self.db.execute(
            """UPDATE campaigns SET remind_at = NULL
               WHERE id = ? AND state = 'pending_approval' AND remind_at IS NOT NULL""",
            [campaign_id],
        )
        return taken.rowcount == 1

    def campaigns_in(self, states: Iterable[CampaignState]) -> list[Campaign]:
        values = [s.value for s in states]
        marks = ",".join("?" * len(values))
        rows = self.db.execute(
            f"SELECT * FROM campaigns WHERE state IN ({marks}) ORDER BY id", values
        ).fetchall()
        return [self._campaign(r) for r in rows]

    def active_at_thingspace(self) -> list[Campaign]:
        return self.campaigns_in(ACTIVE_AT_THINGSPACE)

    def list_campaigns(
        self,
        *,
        scope: str,
        user: str | None = None,
        limit: int = 10,
        before_id: int | None = None,
        requests_only: bool = False,
    ) -> list[Campaign]:
        """Newest first. scope: active (not terminal), all, mine (requested by `user`).
        `requests_only`: without the campaigns of staged rollouts' waves (their request stands
        for them)."""
        where: list[str] = ["parent_id IS NULL"] if requests_only else []
        params: list[Any] = []
        if scope == "active":
            # IN over the few live states, by the state index: NOT IN the finished ones would walk
            # every campaign ever stored, newest first, to find ten live ones.
            live = [s.value for s in CampaignState if not s.is_terminal]
            where.append(f"state IN ({','.join('?' * len(live))})")
            params.extend(live)
        elif scope == "mine":
            where.append("requester = ?")
            params.append(user)
        if before_id is not None:
            where.append("id < ?")
            params.append(before_id)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.execute(
            f"SELECT * FROM campaigns {clause} ORDER BY id DESC LIMIT ?", [*params, limit]
        ).fetchall()
        return [self._campaign(r) for r in rows]

    _UPDATABLE = frozenset(
        {
            "approval_channel",
            "thread_ts",
            "thingspace_id",
            "thingspace_status",
            "make",
            "model",
            "error_code",
            "error_message",
            "last_callback_at",
            "response_url",
            "status_from_callback",
        }
    )

    def update_fields(self, campaign_id: int, **fields: Any) -> Campaign:
        """Change non-state columns (thread ts, ThingSpace id, …)."""
        with self.db.atomic():
            self._set(campaign_id, fields)
        return self.campaign(campaign_id)

    def _set(self, campaign_id: int, fields: dict[str, Any]) -> None:
        unknown = set(fields) - self._UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        fields = {k: iso(v) if isinstance(v, dt.datetime) else v for k, v in fields.items()}
        fields["updated_at"] = self.now()
        assignments = ", ".join(f"{k} = ?" for k in fields)
        self.db.execute(
            f"UPDATE campaigns SET {assignments} WHERE id = ?", [*fields.values(), campaign_id]
        )

    def transition(
        self,
        campaign_id: int,
        to: CampaignState,
        *,
        actor: str,
        reason: str,
        correction: bool = False,
        **fields: Any,
    ) -> Campaign:
        """Move a campaign to `to`; raises IllegalTransition. Audit row in the same transaction.

        `correction`: along `CORRECTIONS` instead (ThingSpace's answer putting back a status
        callbacks alone had moved forward), never along the forward table."""
        with self.db.atomic():
            current = self.campaign(campaign_id)
            check_transition(current.ref, current.state, to, correction=correction)
            self.db.execute(
                "UPDATE campaigns SET state = ?, updated_at = ? WHERE id = ?",
                [to.value, self.now(), campaign_id],
            )
            if fields:
                self._set(campaign_id, fields)
            self._audit(campaign_id, current.state, to, actor, reason, self.now())
        log.info("%s %s -> %s by %s: %s", current.ref, current.state.value, to.value, actor, reason)
        return self.campaign(campaign_id)

    def bind_content(self, campaign_id: int, content_hash: str, *, device_count: int | None = None) -> None:
        """What approvals of the campaign count for from now on: its content hash (and its device
        count, when the list to send changed). Called in the transaction that changed the content
        (pre-flight's findings, narrowing, an override), so approvals of the old hash stop counting
        at once; the state does not change."""
        fields: dict[str, Any] = {"content_hash": content_hash, "updated_at": self.now()}
        if device_count is not None:
            fields["device_count"] = device_count
        assignments = ", ".join(f"{k} = ?" for k in fields)
        with self.db.atomic():
            self.db.execute(f"UPDATE campaigns SET {assignments} WHERE id = ?", [*fields.values(), campaign_id])

    def note_in_audit(self, campaign_id: int, *, actor: str, reason: str) -> None:
        """An audit row for a change that is not a change of state (the request narrowed to its
        eligible devices, or widened by an override): from and to the state it is in."""
        with self.db.atomic():
            state = self.campaign(campaign_id).state
            self._audit(campaign_id, state, state, actor, reason, self.now())

    def _audit(
        self,
        campaign_id: int,
        before: CampaignState | None,
        after: CampaignState,
        actor: str,
        reason: str,
        at: str,
    ) -> None:
        self.db.execute(
            "INSERT INTO audit(campaign_id, from_state, to_state, actor, reason, at) VALUES(?, ?, ?, ?, ?, ?)",
            [campaign_id, before.value if before else None, after.value, actor, reason, at],
        )

    def audit(self, campaign_id: int) -> list[dict[str, Any]]:
        return list(self.db["audit"].rows_where("campaign_id = ?", [campaign_id], order_by="id"))

    # --- approvals -------------------------------------------------------------------------

    def decisions(self, campaign_id: int) -> list[Decision]:
        rows = self.db["decisions"].rows_where("campaign_id = ?", [campaign_id], order_by="id")
        return [
            Decision(
                campaign_id=r["campaign_id"],
                user=r["user"],
                decision=r["decision"],
                content_hash=r["content_hash"],
                reason=r["reason"],
                at=dt.datetime.fromisoformat(r["at"]),
                lapsed=bool(r.get("lapsed")),
            )
            for r in rows
        ]

    def approval_authors(self, campaign_id: int) -> list[str]:
        """Who approved `campaign_id` (lapsed or not): the users of its 'approve' decisions."""
        rows = self.db.execute(
            "SELECT user FROM decisions WHERE campaign_id = ? AND decision = 'approve' ORDER BY id", [campaign_id]
        ).fetchall()
        return [r[0] for r in rows]

    def _mark_lapsed(self, campaign_id: int, current: frozenset[str]) -> None:
        """Approvals by anyone not in `current` (the approvers now) stop counting; those by
        someone who is one again count again."""
        marks = ",".join("?" * len(current))
        self.db.execute(
            f"""UPDATE decisions SET lapsed = CASE WHEN user IN ({marks}) THEN NULL ELSE 1 END
                WHERE campaign_id = ? AND decision = 'approve'""",
            [*sorted(current), campaign_id],
        )

    def _valid_approvals(self, campaign: Campaign) -> int:
        row = self.db.execute(
            """SELECT count(DISTINCT user) FROM decisions WHERE campaign_id = ? AND decision = 'approve'
               AND content_hash = ? AND user != ? AND lapsed IS NULL""",
            [campaign.id, campaign.content_hash, campaign.requester],
        ).fetchone()
        return int(row[0])

    def record_approval(
        self,
        campaign_id: int,
        *,
        user: str,
        shown_hash: str,
        required: int,
        current_approvers: frozenset[str] | None = None,
    ) -> ApprovalResult:
        """Count one person's approval; approve the campaign when it completes the set.

        The caller has already checked that `user` may approve. All of it is one
        transaction, so two clicks at the same moment cannot both complete the set.
        """
        with self.db.atomic():
            campaign = self.campaign(campaign_id)
            # Past FOTA_APPROVAL_TTL the request is over even if the expiry job has not run yet.
            if campaign.state is not CampaignState.PENDING_APPROVAL or self.clock() >= campaign.expires_at:
                return ApprovalResult(ApprovalOutcome.CLOSED, campaign, self._valid_approvals(campaign))
            if shown_hash != campaign.content_hash:
                return ApprovalResult(ApprovalOutcome.STALE, campaign, self._valid_approvals(campaign))
            if user == campaign.requester:
                raise NotApproved("the requester cannot approve their own request")
            blocked = preflight_refusal(self.db, campaign_id) or plan_refusal(self.db, campaign)
            if blocked:
                raise NotApproved(blocked)
            # An approval of earlier content (before "Approve eligible only" narrowed the
            # request) does not count; the same person approving the new content replaces it.
            inserted = self.db.execute(
                """INSERT INTO decisions(campaign_id, user, decision, content_hash, reason, at)
                   VALUES(?, ?, 'approve', ?, NULL, ?) ON CONFLICT(campaign_id, user) DO UPDATE
                   SET content_hash = excluded.content_hash, at = excluded.at
                   WHERE decisions.decision = 'approve' AND decisions.content_hash != excluded.content_hash""",
                [campaign_id, user, shown_hash, self.now()],
            ).rowcount
            if current_approvers is not None:
                self._mark_lapsed(campaign_id, current_approvers | {user})
            count = self._valid_approvals(campaign)
            # Checked before "already approved": a repeat click can complete the set too, when
            # the clicker's own approval had stopped counting (they had left the approvers)
            # and counts again now that they are back.
            if count >= required:
                campaign = self.transition(
                    campaign_id,
                    CampaignState.APPROVED,
                    actor=user,
                    reason=f"{count} of {required} approvals",
                )
                return ApprovalResult(ApprovalOutcome.APPROVED, campaign, count)
            if not inserted:
                return ApprovalResult(ApprovalOutcome.DUPLICATE, campaign, count)
            return ApprovalResult(ApprovalOutcome.RECORDED, campaign, count)

    def record_rejection(
        self, campaign_id: int, *, user: str, shown_hash: str, reason: str
    ) -> ApprovalResult:
        with self.db.atomic():
            campaign = self.campaign(campaign_id)
            if campaign.state is not CampaignState.PENDING_APPROVAL:
                return ApprovalResult(ApprovalOutcome.CLOSED, campaign, self._valid_approvals(campaign))
            if shown_hash != campaign.content_hash:
                return ApprovalResult(ApprovalOutcome.STALE, campaign, self._valid_approvals(campaign))
            self.db.execute(
                """INSERT INTO decisions(campaign_id, user, decision, content_hash, reason, at)
                   VALUES(?, ?, 'reject', ?, ?, ?)
                   ON CONFLICT(campaign_id, user) DO UPDATE SET decision = 'reject',
                   reason = excluded.reason, at = excluded.at""",
                [campaign_id, user, shown_hash, reason, self.now()],
            )
            campaign = self.transition(campaign_id, CampaignState.REJECTED, actor=user, reason=reason)
            return ApprovalResult(ApprovalOutcome.REJECTED, campaign, 0)

    def preflight_refusal(self, campaign_id: int) -> str | None:
        """Pre-flight's say on approving the campaign now (checks unfinished, failed or blocking;
        excluded devices still in it), or None: what its views show in place of Approve."""
        return preflight_refusal(self.db, campaign_id)

    def claim_for_submission(
        self, campaign_id: int, *, required: int, current_approvers: frozenset[str] | None = None
    ) -> Campaign:
        """THE guard before ThingSpace's schedule endpoint.

        Returns the campaign in state `submitting` only if it carries at least
        `required` distinct recorded approvals for its current content hash, none
        by the requester. A wave of a staged rollout counts its request's approvals of
        the request's plan (storage.waves). A campaign already `submitting` (resumed after a crash)
        is re-checked against the number that was required when it was claimed: a
        request may already be at ThingSpace, so a later change of
        FOTA_REQUIRED_APPROVALS must not strand it, while changed content still fails.
        """
        with self.db.atomic():
            campaign = self.campaign(campaign_id)
            if campaign.state not in (CampaignState.APPROVED, CampaignState.SUBMITTING):
                raise NotApproved(f"{campaign.ref} is {campaign.state}, not approved")
            # A wave of a staged rollout is sent on the approvals of its request's plan.
            approved = self.campaign(campaign.parent_id) if campaign.parent_id is not None else campaign
            blocked = preflight_refusal(self.db, approved.id)
            if blocked:
                raise NotApproved(blocked)
            needed = required
            if campaign.state is CampaignState.SUBMITTING:
                needed = self.submission_facts(campaign_id).approvals_required or required
            before = self._valid_approvals(approved)
            if current_approvers is not None and campaign.state is CampaignState.APPROVED:
                # Only approvals by people who are approvers now count (a request already
                # `submitting` may be at ThingSpace: it is never stranded by this).
                self._mark_lapsed(approved.id, current_approvers)
            approvals = self._valid_approvals(approved)
            if approvals < needed <= before:
                lapsed = [d.user for d in self.decisions(approved.id) if d.lapsed and d.decision == "approve"]
                raise ApprovalsLapsed(
                    f"{campaign.ref} has {approvals} approvals of {needed} required by people who are "
                    f"approvers now; no longer counted: {', '.join(lapsed)}"
                )
            blocked = wave_refusal(self.db, campaign, approvals)
            if blocked:
                raise NotApproved(blocked)
            if approvals < needed:
                raise NotApproved(
                    f"{campaign.ref} has {approvals} recorded approvals of {needed} required"
                )
            if campaign.state is CampaignState.APPROVED:
                campaign = self.transition(
                    campaign_id, CampaignState.SUBMITTING, actor="fota-bot", reason=f"submitting ({needed} approvals)"
                )
                self._submission_fact(campaign_id, "approvals_required = ?", [needed])
            return campaign

    # --- campaigns ThingSpace does not know -------------------------------------------------

    def not_found_spell(self, campaign_id: int) -> NotFoundSpell | None:
        row = self.db.execute(
            "SELECT first_at, last_at, reads FROM not_found_spells WHERE campaign_id = ?", [campaign_id]
        ).fetchone()
        if row is None:
            return None
        return NotFoundSpell(dt.datetime.fromisoformat(row[0]), dt.datetime.fromisoformat(row[1]), int(row[2]))

    def record_not_found(self, campaign_id: int, spell: NotFoundSpell) -> None:
        with self.db.atomic():
            self.db.execute(
                """INSERT INTO not_found_spells(campaign_id, first_at, last_at, reads) VALUES(?, ?, ?, ?)
                   ON CONFLICT(campaign_id) DO UPDATE SET first_at = excluded.first_at,
                   last_at = excluded.last_at, reads = excluded.reads""",
                [campaign_id, spell.first.isoformat(), spell.last.isoformat(), spell.reads],
            )

    def end_not_found_spell(self, campaign_id: int) -> None:
        """ThingSpace answered (or the campaign was marked lost): the count starts again."""
        with self.db.atomic():
            self.db.execute("DELETE FROM not_found_spells WHERE campaign_id = ?", [campaign_id])

    # --- a halted rollout's waves ThingSpace would not cancel ------------------------------

    def cancel_refusal(self, campaign_id: int) -> str | None:
        """ThingSpace's words when it refused to cancel this wave after a halt, if it did."""
        row = self.db.execute(
            "SELECT refusal FROM cancel_refusals WHERE campaign_id = ?", [campaign_id]
        ).fetchone()
        return row[0] if row else None

    def record_cancel_refusal(self, campaign_id: int, refusal: str) -> None:
        with self.db.atomic():
            self.db.execute(
                """INSERT INTO cancel_refusals(campaign_id, refusal) VALUES(?, ?)
                   ON CONFLICT(campaign_id) DO UPDATE SET refusal = excluded.refusal""",
                [campaign_id, refusal],
            )

    # --- submission facts ------------------------------------------------------------------

    def submission_facts(self, campaign_id: int) -> SubmissionFacts:
        row = self.db.execute(
            """SELECT approvals_required, posts, last_post_at, unanswered_post, unanswered_post_before_last,
                      retries, report_waits, membership_waits FROM submission_facts WHERE campaign_id = ?""",
            [campaign_id],
        ).fetchone()
        if row is None:
            return _NO_SUBMISSION_FACTS
        return SubmissionFacts(
            row[0],
            row[1],
            dt.datetime.fromisoformat(row[2]) if row[2] else None,
            bool(row[3]),
            bool(row[4]),
            row[5],
            row[6],
            row[7],
        )

    def _submission_fact(self, campaign_id: int, assignments: str, params: Sequence[Any]) -> SubmissionFacts:
        with self.db.atomic():
            self.db.execute(
                "INSERT INTO submission_facts(campaign_id) VALUES(?) ON CONFLICT(campaign_id) DO NOTHING", [campaign_id]
            )
            self.db.execute(f"UPDATE submission_facts SET {assignments} WHERE campaign_id = ?", [*params, campaign_id])
        return self.submission_facts(campaign_id)

    def record_post(self, campaign_id: int, at: dt.datetime) -> SubmissionFacts:
        """A schedule POST is about to leave: counted, and unanswered until said otherwise.
        Committed before it leaves, so after a crash the bot knows a request may be out there;
        whether earlier POSTs were unanswered is kept too (a refusal of this one must still look
        for a campaign an earlier one may have created)."""
        return self._submission_fact(
            campaign_id,
            """unanswered_post_before_last = unanswered_post, unanswered_post = 1, posts = posts + 1,
               last_post_at = ?""",
            [iso(at)],
        )

    def record_post_not_processed(self, campaign_id: int) -> SubmissionFacts:
        """ThingSpace answered the last POST with an error that processed nothing (unavailable,
        refused credentials): it created no campaign."""
        return self._submission_fact(campaign_id, "unanswered_post = 0", [])

    def count_submission_retry(self, campaign_id: int) -> SubmissionFacts:
        return self._submission_fact(campaign_id, "retries = retries + 1", [])

    def count_report_wait(self, campaign_id: int) -> SubmissionFacts:
        return self._submission_fact(campaign_id, "report_waits = report_waits + 1", [])

    def count_membership_wait(self, campaign_id: int) -> SubmissionFacts:
        return self._submission_fact(campaign_id, "membership_waits = membership_waits + 1", [])

    # --- devices ---------------------------------------------------------------------------

    def device_ids(self, campaign_id: int) -> list[str]:
        rows = self.db.execute(
            "SELECT imei FROM devices WHERE campaign_id = ? AND dropped_at IS NULL ORDER BY rowid", [campaign_id]
        ).fetchall()
        return [r[0] for r in rows]

    def devices(
        self, campaign_id: int, *, failed_only: bool = False, limit: int | None = None
    ) -> list[Device]:
        return device_rows(self.db.conn, campaign_id, failed_only=failed_only, limit=limit)

    def unfinished_devices(self, campaign_id: int) -> int:
        """Devices of the campaign whose last report is not a final status (or none yet)."""
        final = sorted(DEVICE_FINAL)
        row = self.db.execute(
            f"""SELECT count(*) FROM devices WHERE campaign_id = ? AND dropped_at IS NULL
                AND (status IS NULL OR status NOT IN ({",".join("?" * len(final))}))""",
            [campaign_id, *final],
        ).fetchone()
        return int(row[0])

    def device_rows(self, campaign_id: int, *, failed_only: bool = False) -> list[Device]:
        """Every device of a campaign (`device_rows` on the bot's connection)."""
        return device_rows(self.db.conn, campaign_id, failed_only=failed_only)

    def device_counts(self, campaign_id: int) -> dict[str, int]:
        """Devices per progress bucket, from the counts the devices' triggers keep (a few rows,
        however many devices the campaign has)."""
        counts = dict.fromkeys(DEVICE_BUCKETS, 0)
        rows = self.db.execute(
            "SELECT known, status, devices FROM device_status_counts WHERE campaign_id = ?", [campaign_id]
        ).fetchall()
        for known, status, count in rows:
            counts[device_bucket(status if known else None)] += count
        return counts

    def failure_reasons(self, campaign_id: int) -> list[tuple[str, int]]:
        """Failed devices per reason (empty when ThingSpace gave none), most first."""
        failed = FAILED_DEVICE_STATUSES
        rows = self.db.execute(
            f"""SELECT coalesce(reason, ''), count(*) FROM devices WHERE campaign_id = ?
                AND dropped_at IS NULL AND status IN ({",".join("?" * len(failed))})
                GROUP BY 1 ORDER BY 2 DESC, 1""",
            [campaign_id, *failed],
        ).fetchall()
        return [(str(r[0]), int(r[1])) for r in rows]

    def apply_device_updates(
        self,
        campaign_id: int,
        updates: Iterable[tuple[str, str, str | None, str | None]],
        *,
        from_report: bool = False,
    ) -> list[tuple[str, str | None, str]]:
        """Apply (imei, status, reason, updated_time) reports; return the real changes.

        Idempotent: a repeat changes nothing. Callbacks (unsigned hints): a device in a
        final status is not moved back, an older report (by ThingSpace's updatedTime) loses
        to a newer one, and a final status ThingSpace's report confirmed never changes.
        `from_report` (a re-read, the authority): what it says replaces whatever callbacks
        alone produced, and a final status it gives is confirmed. A time in the future is
        not believed (it would make every true report after it look older). Devices not in
        the campaign are ignored.
        """
        changes: list[tuple[str, str | None, str]] = []
        now = self.clock()
        latest = now + FUTURE_SKEW
        updates = list(updates)
        if not updates:
            return changes
        writes: list[tuple[str, str | None, str, int | None, int, str]] = []
        with self.db.atomic():
            # Each device's row as it stands, read once for the batch; a device named twice
            # meets its first update's outcome, as if they came one after the other.
            rows = self._device_rows(campaign_id, {imei for imei, _, _, _ in updates})
            for imei, status, reason, updated in updates:
                row = rows.get(imei)
                if row is None:
                    continue
                old_status, old_reason, old_updated, confirmed = row
                new_at = _moment(updated)
                if new_at is not None and new_at > latest:
                    updated, new_at = None, None
                if confirmed and old_status in DEVICE_FINAL:
                    continue  # ThingSpace's report said so: final
                if from_report:
                    confirm = 1 if status in DEVICE_FINAL else None
                    if old_status == status and (reason is None or reason == old_reason) and confirmed == confirm:
                        continue
                else:
                    if old_status == status and (reason is None or reason == old_reason):
                        continue
                    if old_status in DEVICE_FINAL and status not in DEVICE_FINAL:
                        continue
                    # A move into a final status always wins; otherwise an older report (by
                    # time, when both times can be read) loses to a newer one.
                    if not (status in DEVICE_FINAL and old_status not in DEVICE_FINAL):
                        old_at = _moment(old_updated)
                        if new_at and old_at and new_at < old_at and old_status is not None:
                            continue
                    confirm = None
                at = updated or iso(now)
                writes.append((status, reason, at, confirm, campaign_id, imei))
                rows[imei] = (status, reason, at, confirm)
                if old_status != status or (reason is not None and reason != old_reason):
                    changes.append((imei, old_status, status))
            # In the order decided: the status-count triggers see each change as it happens.
            self.db.conn.executemany(
                "UPDATE devices SET status = ?, reason = ?, updated_at = ?, confirmed = ? "
                "WHERE campaign_id = ? AND imei = ?",
                writes,
            )
        return changes

    def _device_rows(
        self, campaign_id: int, imeis: set[str]
    ) -> dict[str, tuple[str | None, str | None, str | None, int | None]]:
        """(status, reason, updated_at, confirmed) of these devices of the campaign, not dropped."""
        found: dict[str, tuple[str | None, str | None, str | None, int | None]] = {}
        wanted = list(imeis)
        for start in range(0, len(wanted), DEVICE_CHUNK):
            chunk = wanted[start : start + DEVICE_CHUNK]
            marks = ",".join("?" * len(chunk))
            for imei, *row in self.db.execute(
                "SELECT imei, status, reason, updated_at, confirmed FROM devices "
                f"WHERE campaign_id = ? AND imei IN ({marks}) AND dropped_at IS NULL",
                [campaign_id, *chunk],
            ):
                found[imei] = (row[0], row[1], row[2], row[3])
        return found

    def unreported_failures(self, campaign_id: int, limit: int) -> tuple[list[tuple[str, str | None]], int]:
        """Failed devices not yet told in the thread (up to `limit`), and how many more there are."""
        failed = FAILED_DEVICE_STATUSES
        marks = ",".join("?" * len(failed))
        rows = self.db.execute(
            f"""SELECT imei, reason FROM devices WHERE campaign_id = ? AND dropped_at IS NULL AND status IN ({marks})
                AND failure_reported IS NULL ORDER BY rowid""",
            [campaign_id, *failed],
        ).fetchall()
        return [(r[0], r[1]) for r in rows[:limit]], max(0, len(rows) - limit)

    def mark_failures_reported(self, campaign_id: int) -> None:
        failed = FAILED_DEVICE_STATUSES
        marks = ",".join("?" * len(failed))
        with self.db.atomic():
            self.db.execute(
                f"""UPDATE devices SET failure_reported = 1 WHERE campaign_id = ?
                    AND status IN ({marks}) AND failure_reported IS NULL""",
                [campaign_id, *failed],
            )

    # --- callbacks -------------------------------------------------------------------------

    def store_callbacks(self, bodies: Sequence[tuple[str, str | None]]) -> list[int]:
        """Keep raw callback payloads (body, remote address) before anything else happens."""
        now = self.now()
        ids: list[int] = []
        with self.db.atomic():
            for body, remote in bodies:
                cursor = self.db.execute(
                    "INSERT INTO callbacks(received_at, remote_addr, body, parsed, applied) VALUES(?, ?, ?, 0, 0)",
                    [now, remote, body],
                )
                assert cursor.lastrowid is not None
                ids.append(cursor.lastrowid)
        return ids

    def unapplied_callbacks(self, limit: int = 1000, *, after_id: int = 0) -> list[tuple[int, str]]:
        """(id, body) of callbacks not applied yet, oldest first, past `after_id`."""
        rows = self.db.execute(
            # SQLite's planner prefers the (applied, thingspace_id) index, then sorts every
            # unapplied row; this one walks them in id order and stops at `limit`.
            "SELECT id, body FROM callbacks INDEXED BY idx_callbacks_unapplied "
            "WHERE applied = 0 AND id > ? ORDER BY id LIMIT ?",
            [after_id, limit],
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def callbacks_waiting_for(self, campaign: Campaign) -> list[tuple[int, str]]:
        """(id, body) of callbacks kept until ThingSpace's answer named this campaign: those naming
        its ThingSpace id, received since it was claimed for sending (nothing older can be about it,
        whatever id it names)."""
        claimed = self.db.execute(
            "SELECT min(at) FROM audit WHERE campaign_id = ? AND to_state = ?",
            [campaign.id, CampaignState.SUBMITTING.value],
        ).fetchone()[0]
        rows = self.db.execute(
            "SELECT id, body FROM callbacks WHERE applied = 0 AND thingspace_id = ? AND received_at >= ? ORDER BY id",
            [campaign.thingspace_id, claimed or iso(campaign.created_at)],
        ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def mark_callback_received(self, campaign_ids: Iterable[int], at: dt.datetime) -> None:
        """The campaigns a callback was just applied to (the watchdog reads `last_callback_at`)."""
        with self.db.atomic():
            self.db.conn.executemany(
                "UPDATE campaigns SET last_callback_at = ? WHERE id = ?", [(at.isoformat(), i) for i in campaign_ids]
            )

    def mark_callbacks(self, ids: Sequence[int], *, parsed: bool, applied: bool, thingspace_id: str | None = None) -> None:
        with self.db.atomic():
            # One statement per chunk of ids, not one per callback.
            for start in range(0, len(ids), DEVICE_CHUNK):
                chunk = ids[start : start + DEVICE_CHUNK]
                marks = ",".join("?" * len(chunk))
                self.db.execute(
                    "UPDATE callbacks SET parsed = ?, applied = ?, thingspace_id = coalesce(?, thingspace_id) "
                    f"WHERE id IN ({marks})",
                    [int(parsed), int(applied), thingspace_id, *chunk],
                )

    def expire_waiting_callbacks(self, before: dt.datetime) -> int:
        """Callbacks that waited since before `before` for a campaign never named: kept raw,
        marked applied so that no later campaign takes them as its own."""
        with self.db.atomic():
            return self.db.execute(
                "UPDATE callbacks SET applied = 1 WHERE applied = 0 AND thingspace_id IS NOT NULL AND received_at < ?",
                [iso(before)],
            ).rowcount

    async def row_counts(self) -> RowCounts:
        """Campaigns by state, callbacks by applied, Slack updates by outcome: whole-table counts
        that grow with history, so read on the reader thread, off the event loop."""
        return await self.readers.run(_row_counts)

    def callback_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM callbacks").fetchone()[0])
