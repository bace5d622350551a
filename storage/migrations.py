"""Every table, declared in sqlite-utils migrations applied at start-up.

Migrations are append-only: a new schema change is a new function below the
last one, never an edit of an applied one. Re-applying on an existing file is a
no-op (sqlite-utils records applied migrations in `_sqlite_migrations`).
"""

from __future__ import annotations

import datetime as dt
import json

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("fota-bot")


@migrations()
def m001_initial(db: Database) -> None:
    db.table("campaigns").create(
        {
            "id": int,
            "state": str,
            "requester": str,
            "account": str,
            "firmware_name": str,
            "firmware_from": str,
            "firmware_to": str,
            "protocol": str,
            "start_date": str,
            "end_date": str,
            "windows": str,  # JSON [[start, end], ...]
            "name": str,
            "device_count": int,
            "content_hash": str,
            "sandbox": int,
            "created_at": str,
            "updated_at": str,
            "expires_at": str,
            "approval_channel": str,
            "thread_ts": str,
            "thingspace_id": str,
            "thingspace_status": str,
            "make": str,
            "model": str,
            "error_code": str,
            "error_message": str,
            "last_callback_at": str,
            "notes": str,  # JSON list of strings
            "response_url": str,
        },
        pk="id",
        not_null={
            "state",
            "requester",
            "account",
            "firmware_name",
            "firmware_from",
            "firmware_to",
            "protocol",
            "start_date",
            "end_date",
            "windows",
            "device_count",
            "content_hash",
            "sandbox",
            "created_at",
            "updated_at",
            "expires_at",
        },
    )
    db.table("campaigns").create_index(["state"])
    db.table("campaigns").create_index(["thingspace_id"], unique=True)
    db.table("campaigns").create_index(["requester"])

    db.table("devices").create(
        {
            "campaign_id": int,
            "imei": str,
            "status": str,
            "reason": str,
            "updated_at": str,  # ThingSpace's updatedTime when given, else when we learned it
            "failure_reported": int,
        },
        pk=("campaign_id", "imei"),
        not_null={"campaign_id", "imei"},
        foreign_keys=[("campaign_id", "campaigns", "id")],
    )
    db.table("devices").create_index(["campaign_id", "status"])

    db.table("decisions").create(
        {
            "id": int,
            "campaign_id": int,
            "user": str,
            "decision": str,
            "content_hash": str,
            "reason": str,
            "at": str,
        },
        pk="id",
        not_null={"campaign_id", "user", "decision", "content_hash", "at"},
        foreign_keys=[("campaign_id", "campaigns", "id")],
    )
    # One vote per person per campaign: a double click cannot count twice.
    db.table("decisions").create_index(["campaign_id", "user"], unique=True)

    db.table("audit").create(
        {
            "id": int,
            "campaign_id": int,
            "from_state": str,
            "to_state": str,
            "actor": str,
            "reason": str,
            "at": str,
        },
        pk="id",
        not_null={"campaign_id", "to_state", "actor", "at"},
        foreign_keys=[("campaign_id", "campaigns", "id")],
    )
    db.table("audit").create_index(["campaign_id"])

    db.table("callbacks").create(
        {
            "id": int,
            "received_at": str,
            "remote_addr": str,
            "body": str,
            "parsed": int,  # 1 recognised shape, 0 kept only
            "applied": int,  # 1 once its updates reached campaign/device rows
            "thingspace_id": str,
        },
        pk="id",
        not_null={"received_at", "body"},
    )
    db.table("callbacks").create_index(["applied", "thingspace_id"])

    db.table("outbox").create(
        {
            "id": int,
            "campaign_id": int,
            "kind": str,  # root | root_update | reply | dm | ephemeral | upload
            "coalesce_key": str,  # at most one unsent row per key; a newer one replaces it
            "payload": str,  # JSON
            "created_at": str,
            "not_before": str,  # earliest send time (rate limit, retry backoff)
            "attempts": int,
            "sent_at": str,
            "last_error": str,
        },
        pk="id",
        not_null={"kind", "payload", "created_at", "attempts"},
    )
    db.table("outbox").create_index(["sent_at", "not_before"])
    db.execute(
        "CREATE UNIQUE INDEX idx_outbox_pending_key ON outbox(coalesce_key) "
        "WHERE sent_at IS NULL AND coalesce_key IS NOT NULL"
    )

    db.table("kv").create({"key": str, "value": str}, pk="key", not_null={"value"})


@migrations()
def m002_preflight(db: Database) -> None:
    """Pre-flight results stored with each request."""
    db.table("preflight").create(
        {
            "campaign_id": int,
            "status": str,  # checking | done | failed
            "attempts": int,
            "started_at": str,
            "finished_at": str,
            "request_hash": str,  # hash of what will be sent; the content hash binds it to the digest
            "digest": str,  # of the findings, shown on the card
            "blocking": int,
            "eligible": int,
            "summary": str,  # JSON: counts, firmware, blast radius, conflicts, blocking reasons
            "error": str,
            "narrowed_by": str,  # who approved the eligible devices only
            "narrowed_at": str,
            "narrowed_from": int,  # device count before narrowing
        },
        pk="campaign_id",
        not_null={"status", "attempts", "started_at", "request_hash"},
        foreign_keys=[("campaign_id", "campaigns", "id")],
    )
    db.table("preflight").create_index(["status"])
    db.table("preflight_devices").create(
        {
            "campaign_id": int,
            "imei": str,
            "findings": str,  # comma-separated Finding values
            "excluded": int,  # 1: not eligible, left out by "Approve eligible only"
            "dropped": int,  # 1: left out of the request when it was narrowed
        },
        pk=("campaign_id", "imei"),
        not_null={"campaign_id", "imei", "findings", "excluded", "dropped"},
        foreign_keys=[("campaign_id", "campaigns", "id")],
    )
    # Conflicts: which other campaigns hold this request's devices, one probe per device.
    db.table("devices").create_index(["imei"])


@migrations()
def m003_devices_dropped(db: Database) -> None:
    """Devices left out of a request ("Approve eligible only") stay on record, marked."""
    db.table("devices").add_column("dropped_at", str)


@migrations()
def m004_slack_requests(db: Database) -> None:
    """Signatures of the Slack requests acted on, so a replayed one is not acted on twice."""
    db.table("slack_requests").create(
        {"signature": str, "seen_at": float}, pk="signature", not_null={"seen_at"}
    )
    db.table("slack_requests").create_index(["seen_at"])


@migrations()
def m005_bounded_queries(db: Database) -> None:
    """Indexes that keep the outbox's per-drain and per-request queries independent of history.

    Sent rows pile up (every Slack update of every campaign): the lane heads are found among
    unsent rows only, and a campaign's or a coalesce key's rows by index, never by a scan.
    """
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_outbox_unsent_lane ON outbox(campaign_id, kind, id) "
        "WHERE sent_at IS NULL"
    )
    # The unsent rows in id order, with their due time: the sender's walk for lane heads.
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_outbox_unsent_order ON outbox(id, not_before) "
        "WHERE sent_at IS NULL"
    )
    db.execute("CREATE INDEX IF NOT EXISTS idx_outbox_campaign_kind ON outbox(campaign_id, kind)")
    db.execute("CREATE INDEX IF NOT EXISTS idx_outbox_coalesce_key ON outbox(coalesce_key, sent_at)")


@migrations()
def m006_preflight_override(db: Database) -> None:
    """An approver's explicit choice to send devices pre-flight excluded: who, when, why, how many."""
    table = db.table("preflight")
    table.add_column("override_by", str)
    table.add_column("override_at", str)
    table.add_column("override_reason", str)
    table.add_column("override_count", int)


@migrations()
def m007_licence_auto(db: Database) -> None:
    """The request's licence option (autoAssignLicenseFlag); requests before it: off."""
    db.table("campaigns").add_column("licence_auto", int, not_null_default=0)


@migrations()
def m008_staged_rollouts(db: Database) -> None:
    """Staged rollouts: a request's plan, its waves as rows, and each wave's own campaign.

    A wave, once promoted, is a campaign row of its own (`parent_id`, `wave`, `waves_total`),
    so it is sent, followed and re-read by the same code as every campaign; the request keeps
    its reference and its approvals. Every device of a plan is in exactly one wave
    (`wave_devices`' key). Campaigns before this: no parent, no plan, one wave as always.
    """
    campaigns = db.table("campaigns")
    campaigns.add_column("parent_id", int)
    campaigns.add_column("wave", int)
    campaigns.add_column("waves_total", int)
    campaigns.create_index(["parent_id"])
    db.table("rollout_plans").create(
        {
            "campaign_id": int,
            "plan": str,  # JSON: RolloutPlan.to_json()
            "base_hash": str,  # the request's content hash before the plan was bound in
            "bound_hash": str,  # the content hash approvals of this plan are given to
            "created_at": str,
            "halted_at": str,
            "halted_by": str,
            "halt_reason": str,
        },
        pk="campaign_id",
        not_null={"plan", "base_hash", "bound_hash", "created_at"},
        foreign_keys=[("campaign_id", "campaigns", "id")],
    )
    db.table("waves").create(
        {
            "parent_id": int,
            "number": int,
            "label": str,
            "size": int,
            "radius": str,  # JSON [[make, model, firmware, devices], ...]
            "campaign_id": int,  # the wave's own campaign, once promoted
            "promoted_by": str,
            "promoted_at": str,
            "promote_reason": str,
        },
        pk=("parent_id", "number"),
        not_null={"parent_id", "number", "label", "size", "radius"},
        foreign_keys=[("parent_id", "campaigns", "id")],
    )
    db.execute("CREATE UNIQUE INDEX idx_waves_campaign ON waves(campaign_id) WHERE campaign_id IS NOT NULL")
    db.table("wave_devices").create(
        {"parent_id": int, "imei": str, "number": int},
        pk=("parent_id", "imei"),
        not_null={"parent_id", "imei", "number"},
        foreign_keys=[("parent_id", "campaigns", "id")],
    )
    db.table("wave_devices").create_index(["parent_id", "number"])


@migrations()
def m009_devices_confirmed(db: Database) -> None:
    """A device's final status as ThingSpace's own report gave it: callbacks cannot change it."""
    db.table("devices").add_column("confirmed", int)


@migrations()
def m010_installation(db: Database) -> None:
    """Each campaign's installation id (random, one per database), carried in its name at
    ThingSpace: another database on the same account never takes this one's campaigns for
    its own. Campaigns from before keep the names they were sent with."""
    db.table("campaigns").add_column("installation", str)


@migrations()
def m011_decisions_lapsed(db: Database) -> None:
    """An approval whose author is no longer an approver: kept on record, no longer counted."""
    db.table("decisions").add_column("lapsed", int)


@migrations()
def m012_campaign_status_from_callback(db: Database) -> None:
    """1 while the campaign's ThingSpace status came from callbacks alone (no re-read has
    confirmed it): a re-read may then put it back."""
    db.table("campaigns").add_column("status_from_callback", int, not_null_default=0)


@migrations()
def m013_submission_facts(db: Database) -> None:
    """What the submission path counts per campaign, in a table of its own (they were
    key-value strings `claimed_with:N`, `submit_attempts:N`, …): the approvals required when
    the campaign was claimed, the schedule POSTs sent and the last one's time, whether a POST
    went out whose answer never came (it may have created the campaign), and the three
    counts of waits before trying again. Those strings move in here, and out of `kv`."""
    db.table("submission_facts").create(
        {
            "campaign_id": int,
            "approvals_required": int,
            "posts": int,
            "last_post_at": str,
            "unanswered_post": int,
            "unanswered_post_before_last": int,
            "retries": int,
            "report_waits": int,
            "membership_waits": int,
        },
        pk="campaign_id",
        not_null={
            "posts",
            "unanswered_post",
            "unanswered_post_before_last",
            "retries",
            "report_waits",
            "membership_waits",
        },
        defaults={
            "posts": 0,
            "unanswered_post": 0,
            "unanswered_post_before_last": 0,
            "retries": 0,
            "report_waits": 0,
            "membership_waits": 0,
        },
        foreign_keys=[("campaign_id", "campaigns", "id")],
    )

    def count(value: str) -> int:
        return int(value) if value.strip().isdigit() else 0

    columns = {
        "claimed_with": ("approvals_required", lambda v: count(v) or None),
        "submit_attempts": ("posts", count),
        "submit_last_post": ("last_post_at", lambda v: v or None),
        "submit_open": ("unanswered_post", lambda v: int(v == "1")),
        "submit_earlier_open": ("unanswered_post_before_last", lambda v: int(v == "1")),
        "submit_retries": ("retries", count),
        "submit_waits": ("report_waits", count),
        "submit_membership_waits": ("membership_waits", count),
    }
    facts: dict[int, dict[str, object]] = {}
    moved: list[str] = []
    for key, value in db.execute(
        "SELECT key, value FROM kv WHERE " + " OR ".join("key LIKE ?" for _ in columns),
        [f"{prefix}:%" for prefix in columns],
    ).fetchall():
        prefix, _, ident = key.partition(":")
        if prefix not in columns or not ident.isdigit():
            continue
        column, read = columns[prefix]
        facts.setdefault(int(ident), {})[column] = read(value)
        moved.append(key)
    names = [column for column, _ in columns.values()]
    blank: dict[str, object] = {name: None if name in ("approvals_required", "last_post_at") else 0 for name in names}
    # A key naming no campaign on record (none should) has nothing to belong to: it goes.
    db.conn.executemany(
        f"""INSERT INTO submission_facts(campaign_id, {", ".join(names)})
            SELECT ?, {", ".join("?" for _ in names)} WHERE EXISTS (SELECT 1 FROM campaigns WHERE id = ?)""",
        [
            (ident, *({**blank, **values}[name] for name in names), ident)
            for ident, values in sorted(facts.items())
        ],
    )
    db.conn.executemany("DELETE FROM kv WHERE key = ?", [(key,) for key in moved])


@migrations()
def m014_rollout_halt_set_aside(db: Database) -> None:
    """A halted rollout resumed by an approver: the waves started before the resume no longer
    halt it (the approver weighed their failures); each still holds for a decision at its end."""
    db.table("rollout_plans").add_column("halt_waived_through", int, not_null_default=0)


@migrations()
def m015_requests_being_stored(db: Database) -> None:
    """A large request's devices are written a chunk per transaction before its campaign row
    exists (storage.store.Store.store_request): the campaign id they carry is reserved here until
    the one short transaction that inserts the campaign. Nothing reads a device without its
    campaign, so until then the request is neither visible nor sendable; a crash leaves only
    these rows and their devices, which start-up deletes. A campaign inserted on a reserved id
    by any other path (it would take over the devices being written) is refused outright."""
    db.execute(
        """CREATE TABLE requests_being_stored (
               campaign_id INTEGER PRIMARY KEY,
               started_at TEXT NOT NULL
           )"""
    )
    db.execute(
        """CREATE TRIGGER campaigns_not_on_a_reserved_id AFTER INSERT ON campaigns
           WHEN EXISTS (SELECT 1 FROM requests_being_stored WHERE campaign_id = NEW.id)
           BEGIN SELECT RAISE(ABORT, 'campaign id reserved by a request being stored'); END"""
    )



@migrations()
def m016_device_status_counts(db: Database) -> None:
    """Each campaign's devices per status (dropped ones not counted), kept by triggers in the
    transaction of every insert, update and delete of a device: a card of a 100,000-device
    campaign reads a few rows instead of counting its devices at each edit. `known` is 0 for
    devices with no status yet (a NULL status cannot be part of the key)."""
    db.execute(
        """CREATE TABLE device_status_counts (
               campaign_id INTEGER NOT NULL,
               known INTEGER NOT NULL,
               status TEXT NOT NULL,
               devices INTEGER NOT NULL,
               PRIMARY KEY (campaign_id, known, status)
           )"""
    )

    def count(row: str, sign: str) -> str:
        # INSERT … SELECT … WHERE: the WHERE keeps SQLite from reading ON CONFLICT as a join's.
        return f"""INSERT INTO device_status_counts(campaign_id, known, status, devices)
                   SELECT {row}.campaign_id, {row}.status IS NOT NULL, coalesce({row}.status, ''), {sign}1
                   WHERE {row}.dropped_at IS NULL
                   ON CONFLICT(campaign_id, known, status) DO UPDATE SET devices = devices {sign} 1;"""

    db.execute(f"CREATE TRIGGER device_counted AFTER INSERT ON devices BEGIN {count('NEW', '+')} END")
    db.execute(f"CREATE TRIGGER device_uncounted AFTER DELETE ON devices BEGIN {count('OLD', '-')} END")
    db.execute(
        f"""CREATE TRIGGER device_recounted AFTER UPDATE OF campaign_id, status, dropped_at ON devices
            WHEN OLD.campaign_id IS NOT NEW.campaign_id OR OLD.status IS NOT NEW.status
                 OR (OLD.dropped_at IS NULL) IS NOT (NEW.dropped_at IS NULL)
            BEGIN {count('OLD', '-')} {count('NEW', '+')} END"""
    )
    db.execute(
        """INSERT INTO device_status_counts(campaign_id, known, status, devices)
           SELECT campaign_id, status IS NOT NULL, coalesce(status, ''), count(*) FROM devices
           WHERE dropped_at IS NULL GROUP BY 1, 2, 3"""
    )


@migrations()
def m017_not_found_spells(db: Database) -> None:
    """A campaign's spell of ThingSpace 404s (when the first and the last counted one came, how
    many in a row) in a table of its own; they were JSON strings under `not_found:N` in `kv`.
    An ended spell is no row (it was an empty string)."""
    db.table("not_found_spells").create(
        {"campaign_id": int, "first_at": str, "last_at": str, "reads": int},
        pk="campaign_id",
        not_null={"first_at", "last_at", "reads"},
        foreign_keys=[("campaign_id", "campaigns", "id")],
    )
    moved: list[str] = []
    spells: list[tuple[int, str, str, int, int]] = []
    for key, value in db.execute("SELECT key, value FROM kv WHERE key LIKE 'not_found:%'").fetchall():
        moved.append(key)
        ident = key.partition(":")[2]
        try:
            data = json.loads(value) if value else None
            spell = (int(ident), str(data["first"]), str(data["last"]), int(data["reads"])) if data else None
        except (ValueError, TypeError, KeyError):
            spell = None  # unreadable: the count starts again at the next 404
        if spell is not None:
            spells.append((*spell, spell[0]))
    db.conn.executemany(
        """INSERT INTO not_found_spells(campaign_id, first_at, last_at, reads)
           SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM campaigns WHERE id = ?)""",
        spells,
    )
    db.conn.executemany("DELETE FROM kv WHERE key = ?", [(key,) for key in moved])


@migrations()
def m018_retries(db: Database) -> None:
    """A request that retries the failed devices of another campaign (a wave, a staged
    request): which one, as it was shown, how many devices, and a link to its thread."""
    db.table("retries").create(
        {
            "campaign_id": int,
            "origin_id": int,
            "origin_ref": str,
            "failed": int,
            "origin_permalink": str,
            "created_at": str,
        },
        pk="campaign_id",
        not_null={"origin_id", "origin_ref", "failed", "created_at"},
        foreign_keys=[("campaign_id", "campaigns", "id"), ("origin_id", "campaigns", "id")],
    )
    db.table("retries").create_index(["origin_id"])


@migrations()
def m019_cancel_refusals(db: Database) -> None:
    """ThingSpace's refusal to cancel a wave of a halted rollout (so it is not asked again) in a
    table of its own; it was a string under `halt_cancel_refused:N` in `kv`."""
    db.table("cancel_refusals").create(
        {"campaign_id": int, "refusal": str},
        pk="campaign_id",
        not_null={"refusal"},
        foreign_keys=[("campaign_id", "campaigns", "id")],
    )
    rows = db.execute("SELECT key, value FROM kv WHERE key LIKE 'halt_cancel_refused:%'").fetchall()
    refusals: list[tuple[int, str, int]] = []
    for key, value in rows:
        ident = key.partition(":")[2]
        if ident.isdigit() and value:
            refusals.append((int(ident), value, int(ident)))
    db.conn.executemany(
        """INSERT INTO cancel_refusals(campaign_id, refusal)
           SELECT ?, ? WHERE EXISTS (SELECT 1 FROM campaigns WHERE id = ?)""",
        refusals,
    )
    db.conn.executemany("DELETE FROM kv WHERE key = ?", [(key,) for key, _ in rows])


@migrations()
def m020_approval_timers(db: Database) -> None:
    """A request's reminder time beside its expiry (`remind_at`, cleared once the reminder is
    queued) and partial indexes of the requests waiting for approval by those two moments: one
    scheduler job finds what is due by index, however many campaigns are on record, instead of
    two jobs held in memory per waiting request. Requests waiting at the upgrade get their
    reminder time (halfway to expiry) as the jobs the older version rebuilt at start-up had."""
    db.table("campaigns").add_column("remind_at", str)
    waiting = db.execute(
        "SELECT id, created_at, expires_at FROM campaigns WHERE state = 'pending_approval'"
    ).fetchall()
    reminders = []
    for campaign_id, created_at, expires_at in waiting:
        created = dt.datetime.fromisoformat(created_at)
        expires = dt.datetime.fromisoformat(expires_at)
        remind = created + (expires - created) / 2
        reminders.append((remind.astimezone(dt.UTC).isoformat(timespec="microseconds"), campaign_id))
    db.conn.executemany("UPDATE campaigns SET remind_at = ? WHERE id = ?", reminders)
    db.execute(
        "CREATE INDEX idx_campaigns_waiting_remind ON campaigns(remind_at) "
        "WHERE state = 'pending_approval' AND remind_at IS NOT NULL"
    )
    db.execute(
        "CREATE INDEX idx_campaigns_waiting_expiry ON campaigns(expires_at) WHERE state = 'pending_approval'"
    )


@migrations()
def m021_devices_in_request_order(db: Database) -> None:
    """An index on devices(campaign_id): its entries are in rowid order, the order the request
    listed its devices in. A card's first 20 devices and pre-flight's pages of a 100,000-device
    request are then read a few rows at a time; the (campaign_id, status) index made SQLite sort
    all 100,000 of them for each (20-30 ms on the event loop, at every card edit)."""
    db.table("devices").create_index(["campaign_id"])


@migrations()
def m022_unapplied_callbacks(db: Database) -> None:
    """A partial index of the callbacks not applied yet, by id: the applier reads the next 250
    past the last one it saw from it, a few rows, however many wait. The (applied, thingspace_id)
    index made SQLite read every unapplied callback and sort them for each batch: 5 ms a batch
    behind a backlog of 50,000 (after a restart), on the event loop."""
    db.execute("CREATE INDEX idx_callbacks_unapplied ON callbacks(id) WHERE applied = 0")


def apply(db: Database) -> None:
    migrations.apply(db)


class NewerDatabase(Exception):
    """The file was migrated by a newer fota-bot; the message says what to do."""


def unknown_to_this_version(db: Database) -> list[str]:
    """Migrations a newer fota-bot applied to `db` that this version does not have (read only)."""
    known = {m.name for m in migrations.pending(Database(memory=True))}
    return [m.name for m in migrations.applied(db) if m.name not in known]
