"""Pre-flight results, stored with the request, and the narrowing to eligible devices.

One `preflight` row per campaign: `checking` from the moment the request is stored, then
`done` (with the findings) or `failed` (with the reason). `preflight_devices` keeps, per device
with a finding, what was found; when an approver narrows a request to its eligible devices,
the devices left out are removed from `devices` (what `Submitter` sends) and stay here,
marked `dropped`, so the record of what was asked for is never lost.

The findings are part of the content an approval is bound to: when they are stored, the
campaign's content hash becomes `bound_hash(request hash, findings digest)`, so any card shown
before (the "checking…" card) is stale, and approvals are counted only for the findings the
approvers saw. Narrowing changes the device list, hence the request hash, hence the content
hash: approvals given to the full list stop counting in the same transaction.

The record types are in `storage.findings`; the guard's reading of this table in
`storage.refusals`.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from storage import waves
from storage.findings import (
    CHECKING,
    DONE,
    EXCLUDING,
    FAILED,
    NEVER_SENT,
    Finding,
    Findings,
    Narrowed,
    OtherCampaign,
    Overridden,
    PreflightRecord,
    PreflightSummary,
)
from storage.model import (
    Campaign,
    CampaignNotFound,
    NotApproved,
    TimeWindow,
    bound_hash,
    override_hash,
    ref_for,
    request_hash,
)
from storage.refusals import checks_refusal
from storage.states import CampaignState
from storage.store import DEVICE_CHUNK, Store

S = CampaignState

# Per-device findings written (or cleared) per transaction: as many as a chunk of a large
# request's devices (`Store.store_request`), a few ms each.
FINDINGS_CHUNK = DEVICE_CHUNK


# Non-terminal states: a campaign in one of them may still touch its devices.
ACTIVE_STATES: tuple[CampaignState, ...] = tuple(s for s in CampaignState if not s.is_terminal)


# --- Records ---------------------------------------------------------------------------------


# --- Reads -----------------------------------------------------------------------------------


def _when(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def load(store: Store, campaign_id: int) -> PreflightRecord | None:
    row = store.db.execute(
        """SELECT campaign_id, status, attempts, started_at, finished_at, request_hash, summary,
                  error, narrowed_by, narrowed_at, narrowed_from, override_by, override_at,
                  override_reason, override_count
           FROM preflight WHERE campaign_id = ?""",
        [campaign_id],
    ).fetchone()
    if row is None:
        return None
    started = _when(row[3])
    assert started is not None
    return PreflightRecord(
        campaign_id=row[0],
        status=row[1],
        attempts=row[2],
        started_at=started,
        finished_at=_when(row[4]),
        request_hash=row[5],
        summary=PreflightSummary.from_json(json.loads(row[6])) if row[6] else None,
        error=row[7],
        narrowed_by=row[8],
        narrowed_at=_when(row[9]),
        narrowed_from=row[10],
        override_by=row[11],
        override_at=_when(row[12]),
        override_reason=row[13],
        override_count=row[14],
    )


def interrupted(store: Store) -> list[int]:
    """Requests waiting for approval whose pre-flight never finished (or never started)."""
    rows = store.db.execute(
        """SELECT c.id FROM campaigns c LEFT JOIN preflight p ON p.campaign_id = c.id
           WHERE c.state = ? AND (p.campaign_id IS NULL OR p.status IN (?, ?)) ORDER BY c.id""",
        [S.PENDING_APPROVAL.value, CHECKING, FAILED],
    ).fetchall()
    return [r[0] for r in rows]


def other_active_campaigns(store: Store, campaign: Campaign) -> list[OtherCampaign]:
    """Active campaigns in the database sharing at least one device with `campaign`."""
    return active_conflicts(store.db.conn, campaign.id, campaign.device_count)


def active_conflicts(conn: sqlite3.Connection, campaign_id: int, device_count: int) -> list[OtherCampaign]:
    """`other_active_campaigns` on a connection (the reader thread's, for a large request).

    The cost is the smaller of two walks, never the history: each device of this request
    probed in devices(imei), which also meets every finished campaign that device was ever in,
    or every device of the active campaigns probed in this request's (campaign_id, imei).
    """
    states = [s.value for s in ACTIVE_STATES]
    marks = ",".join("?" * len(states))
    live = conn.execute(
        f"SELECT coalesce(sum(device_count), 0) FROM campaigns WHERE state IN ({marks}) AND id != ?",
        [*states, campaign_id],
    ).fetchone()[0]
    if live < device_count:
        # CROSS JOIN fixes SQLite's join order: the active campaigns first, by the state index.
        rows = conn.execute(
            f"""SELECT o.campaign_id, o.imei FROM campaigns c CROSS JOIN devices o CROSS JOIN devices d
                WHERE c.state IN ({marks}) AND c.id != ? AND o.campaign_id = c.id AND o.dropped_at IS NULL
                AND d.campaign_id = ? AND d.imei = o.imei AND d.dropped_at IS NULL""",
            [*states, campaign_id, campaign_id],
        ).fetchall()
    else:
        # devices(imei) is indexed (m002): one probe per device of this request.
        rows = conn.execute(
            f"""SELECT o.campaign_id, o.imei FROM devices d
                JOIN devices o ON o.imei = d.imei AND o.campaign_id != d.campaign_id
                    AND o.dropped_at IS NULL
                JOIN campaigns c ON c.id = o.campaign_id
                WHERE d.campaign_id = ? AND d.dropped_at IS NULL AND c.state IN ({marks})""",
            [campaign_id, *states],
        ).fetchall()
    shared: dict[int, set[str]] = {}
    for other_id, imei in rows:
        shared.setdefault(other_id, set()).add(imei)
    if not shared:
        return []
    found = conn.execute(
        f"""SELECT id, state, start_date, end_date, windows FROM campaigns
            WHERE id IN ({",".join("?" * len(shared))}) ORDER BY id""",
        sorted(shared),
    ).fetchall()
    return [
        OtherCampaign(
            campaign_id=other_id,
            state=state,
            start_date=dt.date.fromisoformat(start),
            end_date=dt.date.fromisoformat(end),
            windows=tuple(TimeWindow(w[0], w[1]) for w in json.loads(windows)),
            shared=frozenset(shared[other_id]),
        )
        for other_id, state, start, end, windows in found
    ]


def device_page(store: Store, campaign_id: int, after: int, limit: int) -> list[tuple[int, str]]:
    """(rowid, IMEI) of the request's devices after `after`, in request order: a long list is
    read a page at a time so the event loop is never held for all of it."""
    rows = store.db.execute(
        """SELECT rowid, imei FROM devices WHERE campaign_id = ? AND rowid > ?
           AND dropped_at IS NULL ORDER BY rowid LIMIT ?""",
        [campaign_id, after, limit],
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def device_findings(store: Store, campaign_id: int) -> dict[str, tuple[str, ...]]:
    rows = store.db.execute(
        "SELECT imei, findings FROM preflight_devices WHERE campaign_id = ? ORDER BY rowid",
        [campaign_id],
    ).fetchall()
    return {imei: tuple(found.split(",")) for imei, found in rows}


def dropped_devices(store: Store, campaign_id: int) -> list[str]:
    """Devices an approver left out by approving the eligible ones only."""
    rows = store.db.execute(
        "SELECT imei FROM preflight_devices WHERE campaign_id = ? AND dropped = 1 ORDER BY rowid",
        [campaign_id],
    ).fetchall()
    return [r[0] for r in rows]


# --- Writes ----------------------------------------------------------------------------------


def begin(store: Store, campaign_id: int) -> int | None:
    """Mark a pre-flight run as started; returns its attempt number.

    None when there is nothing to run: the findings are already stored, or a run is in
    progress (a double click on "Run checks again").
    """
    return _begin(store, campaign_id, force=False)


def restart(store: Store, campaign_id: int) -> int | None:
    """Like `begin`, but also takes over a run left `checking` by a process that died."""
    return _begin(store, campaign_id, force=True)


def _begin(store: Store, campaign_id: int, *, force: bool) -> int | None:
    now = store.now()
    with store.db.atomic():
        row = store.db.execute(
            "SELECT status, attempts FROM preflight WHERE campaign_id = ?", [campaign_id]
        ).fetchone()
        if row is None:
            inserted = store.db.execute(
                """INSERT INTO preflight(campaign_id, status, attempts, started_at, request_hash)
                   SELECT id, ?, 1, ?, content_hash FROM campaigns WHERE id = ?""",
                # Until findings exist the content hash is the request's own.
                [CHECKING, now, campaign_id],
            )
            if inserted.rowcount != 1:
                raise CampaignNotFound(ref_for(campaign_id))
            return 1
        status, attempts = row
        if status == DONE or (status == CHECKING and not force):
            return None
        store.db.execute(
            """UPDATE preflight SET status = ?, attempts = ?, started_at = ?, finished_at = NULL,
               error = NULL WHERE campaign_id = ?""",
            [CHECKING, attempts + 1, now, campaign_id],
        )
        return int(attempts) + 1


def _current(store: Store, campaign_id: int, attempt: int) -> tuple[Any, ...] | None:
    """The pre-flight row if run `attempt` is still the one in progress, else None."""
    row = store.db.execute(
        "SELECT status, attempts, request_hash FROM preflight WHERE campaign_id = ?", [campaign_id]
    ).fetchone()
    if row is None or row[0] != CHECKING or row[1] != attempt:
        return None
    return tuple(row)


def _insert_device_findings(
    store: Store, campaign_id: int, items: Iterable[tuple[str, Sequence[Finding]]]
) -> None:
    store.db.conn.executemany(
        """INSERT INTO preflight_devices(campaign_id, imei, findings, excluded, dropped)
           VALUES(?, ?, ?, ?, 0)""",
        (
            (
                campaign_id,
                imei,
                ",".join(f.value for f in found),
                int(any(f in EXCLUDING for f in found)),
            )
            for imei, found in items
        ),
    )


def clear_device_findings(store: Store, campaign_id: int, attempt: int) -> int | None:
    """Delete up to FINDINGS_CHUNK per-device findings an earlier run of this request left
    (a run cut short, or one that failed), in one transaction; how many went. Called until it
    answers fewer than FINDINGS_CHUNK. None when run `attempt` was superseded."""
    with store.db.atomic():
        if _current(store, campaign_id, attempt) is None:
            return None
        return int(
            store.db.execute(
                """DELETE FROM preflight_devices WHERE rowid IN
                   (SELECT rowid FROM preflight_devices WHERE campaign_id = ? LIMIT ?)""",
                [campaign_id, FINDINGS_CHUNK],
            ).rowcount
        )


def write_device_findings(
    store: Store,
    campaign_id: int,
    attempt: int,
    items: Sequence[tuple[str, Sequence[Finding]]],
) -> bool:
    """One chunk (at most FINDINGS_CHUNK) of per-device findings of run `attempt`, in one
    transaction; False when superseded.

    Large requests write a chunk per transaction, so the event loop (Slack acks, callbacks) is
    never held for the whole list; `finish` then publishes them. Until then the row stays
    `checking`: the guard refuses the request, the card offers nothing to click, and nothing
    reads these rows, so a run that stops half-way (a crash, an error) is never read as done;
    the next run clears what it left (`clear_device_findings`).
    """
    if len(items) > FINDINGS_CHUNK:
        raise ValueError(f"at most {FINDINGS_CHUNK} device findings to a transaction, not {len(items)}")
    with store.db.atomic():
        if _current(store, campaign_id, attempt) is None:
            return False
        _insert_device_findings(store, campaign_id, items)
    return True


def finish(
    store: Store,
    campaign_id: int,
    attempt: int,
    findings: Findings,
    *,
    devices_written: bool = False,
) -> Campaign | None:
    """Store the findings of run `attempt` and bind them into the content hash, atomically.

    `devices_written`: the per-device findings went in already (`write_device_findings`).
    Returns the campaign, or None when the run was superseded by a newer one (its results
    are then dropped). A request decided meanwhile (withdrawn, expired) keeps its hash: it can
    no longer be approved, and its decided card must keep the hash it was decided with.
    """
    summary = findings.summary
    now = store.now()
    with store.db.atomic():
        row = _current(store, campaign_id, attempt)
        if row is None:
            return None
        store.db.execute(
            """UPDATE preflight SET status = ?, finished_at = ?, summary = ?, digest = ?,
               blocking = ?, eligible = ? WHERE campaign_id = ?""",
            [
                DONE,
                now,
                json.dumps(summary.to_json(), separators=(",", ":")),
                summary.digest,
                int(summary.blocked),
                summary.eligible,
                campaign_id,
            ],
        )
        if not devices_written:
            store.db.execute("DELETE FROM preflight_devices WHERE campaign_id = ?", [campaign_id])
            _insert_device_findings(store, campaign_id, findings.devices.items())
        campaign = store.campaign(campaign_id)
        if campaign.state is S.PENDING_APPROVAL:
            store.bind_content(campaign_id, bound_hash(row[2], summary.digest))
    return store.campaign(campaign_id)


def fail(store: Store, campaign_id: int, attempt: int, error: str) -> bool:
    """Record that run `attempt` could not finish; False when a newer run superseded it."""
    with store.db.atomic():
        cursor = store.db.execute(
            """UPDATE preflight SET status = ?, finished_at = ?, error = ?
               WHERE campaign_id = ? AND status = ? AND attempts = ?""",
            [FAILED, store.now(), error, campaign_id, CHECKING, attempt],
        )
        return cursor.rowcount > 0


def narrow_and_approve(
    store: Store,
    campaign_id: int,
    *,
    user: str,
    shown_hash: str,
    required: int,
    current_approvers: frozenset[str] | None = None,
) -> Narrowed:
    """Narrow the request to its eligible devices and approve that, in one transaction.

    The card's hash must be the campaign's current one (else STALE, nothing changes). The
    devices left out are moved out of `devices` (kept in `preflight_devices`, `dropped`),
    the request hash is recomputed over the list that will be sent, and the approval is
    recorded for the new content hash through `Store.record_approval`, the same guard as
    a plain approval. Approvals of the full list were bound to the old hash, so they no
    longer count: with FOTA_REQUIRED_APPROVALS > 1 those approvers must approve again.
    `current_approvers` as for `Store.record_approval`: approvals by anyone else are marked as
    no longer counted, as on the plain approval path. Raises NotApproved when the request
    cannot be narrowed.
    """
    with store.db.atomic():
        campaign = store.campaign(campaign_id)
        if campaign.state is not S.PENDING_APPROVAL or shown_hash != campaign.content_hash:
            # Let the guard answer CLOSED or STALE in its own words; it changes nothing.
            result = store.record_approval(
                campaign_id, user=user, shown_hash=shown_hash, required=required,
                current_approvers=current_approvers,
            )
            return Narrowed(result, campaign.device_count, 0, campaign.content_hash, ())
        if user == campaign.requester:
            raise NotApproved("the requester cannot approve their own request")
        why = checks_refusal(store.db, campaign_id)
        if why:
            raise NotApproved(why)
        record = load(store, campaign_id)
        if record is None or record.summary is None:
            # Stored before pre-flight existed: nothing says which devices are eligible.
            raise NotApproved(f"{campaign.ref} has no pre-flight findings to choose devices by")
        before = campaign.device_count
        # Left out, not deleted (what was asked for stays on record): the row stays, marked dropped.
        dropped = store.db.execute(
            """UPDATE devices SET dropped_at = ? WHERE campaign_id = ? AND dropped_at IS NULL AND imei IN
               (SELECT imei FROM preflight_devices WHERE campaign_id = ? AND excluded = 1)""",
            [store.now(), campaign_id, campaign_id],
        ).rowcount
        if dropped == 0:
            # Nothing to leave out (already narrowed): a plain approval of what is shown.
            result = store.record_approval(
                campaign_id, user=user, shown_hash=shown_hash, required=required,
                current_approvers=current_approvers,
            )
            return Narrowed(result, before, 0, campaign.content_hash, ())
        devices = store.device_ids(campaign_id)
        if not devices:
            raise NotApproved(f"{campaign.ref} has no eligible device left to send")
        store.db.execute(
            "UPDATE preflight_devices SET dropped = 1 WHERE campaign_id = ? AND excluded = 1",
            [campaign_id],
        )
        new_request = request_hash(campaign, devices)
        # A staged request's waves were planned over exactly these eligible devices: the same
        # plan stays bound to the narrowed request.
        new_hash = waves.rebind(store.db, campaign_id, bound_hash(new_request, record.summary.digest))
        superseded = tuple(
            r[0]
            for r in store.db.execute(
                """SELECT user FROM decisions WHERE campaign_id = ? AND decision = 'approve'
                   AND content_hash = ? AND user != ? ORDER BY id""",
                [campaign_id, campaign.content_hash, user],
            ).fetchall()
        )
        now = store.now()
        store.bind_content(campaign_id, new_hash, device_count=len(devices))
        # Narrowing after an override takes the excluded devices out again: the override no
        # longer describes the request (the audit keeps that it happened).
        store.db.execute(
            """UPDATE preflight SET request_hash = ?, narrowed_by = ?, narrowed_at = ?,
               narrowed_from = ?, override_by = NULL, override_at = NULL,
               override_reason = NULL, override_count = NULL WHERE campaign_id = ?""",
            [new_request, user, now, before, campaign_id],
        )
        # The audit trail says who changed the request, from what to what, and whose
        # approvals that voided; the state itself does not change.
        reason = (
            f"approved the eligible devices only: {len(devices):,} of {before:,} kept, "
            f"{dropped:,} left out; content hash {campaign.content_hash[:12]} -> {new_hash[:12]}"
        )
        if superseded:
            reason += "; approvals of the full list no longer count: " + ", ".join(superseded)
        store.note_in_audit(campaign_id, actor=user, reason=reason)
        result = store.record_approval(
            campaign_id, user=user, shown_hash=new_hash, required=required,
            current_approvers=current_approvers,
        )
        return Narrowed(result, len(devices), dropped, campaign.content_hash, superseded)


def override_and_approve(
    store: Store,
    campaign_id: int,
    *,
    user: str,
    shown_hash: str,
    typed_count: int,
    reason: str,
    required: int,
    current_approvers: frozenset[str] | None = None,
) -> Overridden:
    """Include the excluded devices (those not on firmwareTo already) and approve that, in one
    transaction: an approver's explicit, recorded choice.

    `typed_count` must equal the number of devices being added: the approver read it.
    Devices already on firmwareTo are left out (nothing to send). The content hash becomes
    `override_hash`, so a click on any card shown before counts for nothing; the override's
    author, time, reason and count are stored with the findings and in the audit trail.
    Raises NotApproved when the request cannot be widened.
    """
    reason = reason.strip()
    with store.db.atomic():
        campaign = store.campaign(campaign_id)
        if campaign.state is not S.PENDING_APPROVAL or shown_hash != campaign.content_hash:
            result = store.record_approval(
                campaign_id, user=user, shown_hash=shown_hash, required=required,
                current_approvers=current_approvers,
            )
            return Overridden(result, 0, 0, campaign.content_hash, {})
        if user == campaign.requester:
            raise NotApproved("the requester cannot approve their own request")
        why = checks_refusal(store.db, campaign_id)
        if why:
            raise NotApproved(why)
        record = load(store, campaign_id)
        if record is None or record.summary is None:
            raise NotApproved(f"{campaign.ref} has no pre-flight findings to override")
        if record.narrowed or record.overridden:
            raise NotApproved(
                f"{campaign.ref} was already {'narrowed' if record.narrowed else 'widened'} by "
                f"<@{record.narrowed_by if record.narrowed else record.override_by}>"
            )
        if not reason:
            raise NotApproved("an override needs a reason, for the record")
        summary = record.summary
        included = summary.includable
        if included <= 0:
            raise NotApproved(f"{campaign.ref} has no excluded device that could be sent")
        if typed_count != included:
            raise NotApproved(
                f"{typed_count:,} is not the number of devices being added; it is {included:,}"
            )
        now = store.now()
        never = sorted(f.value for f in NEVER_SENT)
        done = store.db.execute(
            f"""UPDATE devices SET dropped_at = ? WHERE campaign_id = ? AND dropped_at IS NULL
                AND imei IN (SELECT imei FROM preflight_devices WHERE campaign_id = ?
                AND ({" OR ".join("(',' || findings || ',') LIKE ?" for _ in never)}))""",
            [now, campaign_id, campaign_id, *(f"%,{v},%" for v in never)],
        ).rowcount
        if done:
            store.db.execute(
                f"""UPDATE preflight_devices SET dropped = 1 WHERE campaign_id = ? AND
                    ({" OR ".join("(',' || findings || ',') LIKE ?" for _ in never)})""",
                [campaign_id, *(f"%,{v},%" for v in never)],
            )
        devices = store.device_ids(campaign_id)
        new_request = request_hash(campaign, devices)
        new_hash = override_hash(new_request, summary.digest, included)
        counts: dict[str, int] = {}
        for (found,) in store.db.execute(
            """SELECT findings FROM preflight_devices WHERE campaign_id = ? AND excluded = 1
               AND dropped = 0""",
            [campaign_id],
        ).fetchall():
            for value in found.split(","):
                counts[value] = counts.get(value, 0) + 1
        store.bind_content(campaign_id, new_hash, device_count=len(devices))
        store.db.execute(
            """UPDATE preflight SET request_hash = ?, override_by = ?, override_at = ?,
               override_reason = ?, override_count = ? WHERE campaign_id = ?""",
            [new_request, user, now, reason, included, campaign_id],
        )
        per_reason = ", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in sorted(counts.items()))
        audit = (
            f"overrode pre-flight: included {included:,} excluded devices ({per_reason})"
            + (f", {done:,} already on {campaign.firmware_to} left out" if done else "")
            + f"; reason: {reason}; content hash {campaign.content_hash[:12]} -> {new_hash[:12]}"
        )
        store.note_in_audit(campaign_id, actor=user, reason=audit)
        result = store.record_approval(
            campaign_id, user=user, shown_hash=new_hash, required=required,
            current_approvers=current_approvers,
        )
        return Overridden(result, included, done, campaign.content_hash, counts)


def excluded_devices(store: Store, campaign_id: int) -> list[tuple[str, tuple[str, ...], bool]]:
    """Every device pre-flight excluded: (IMEI, its findings, still in the request)."""
    return excluded_rows(store.db.conn, campaign_id)


def excluded_rows(conn: sqlite3.Connection, campaign_id: int) -> list[tuple[str, tuple[str, ...], bool]]:
    """`excluded_devices` on a connection (the reader thread's: 100,000 excluded devices are a
    large read)."""
    rows = conn.execute(
        """SELECT p.imei, p.findings, d.dropped_at IS NULL FROM preflight_devices p
           LEFT JOIN devices d ON d.campaign_id = p.campaign_id AND d.imei = p.imei
           WHERE p.campaign_id = ? AND p.excluded = 1 ORDER BY d.rowid""",
        [campaign_id],
    ).fetchall()
    return [(imei, tuple(found.split(",")), bool(kept)) for imei, found, kept in rows]


def left_out_counts(store: Store, campaign_id: int) -> tuple[int, dict[str, int]]:
    """Devices pre-flight excluded that were not sent (narrowed out, or already on
    firmwareTo), and how many of them had each finding (a device may have several)."""
    return left_out_on(store.db.conn, campaign_id)


def left_out_on(conn: sqlite3.Connection, campaign_id: int) -> tuple[int, dict[str, int]]:
    """`left_out_counts` on a connection (the reader thread's): counted by SQLite per
    combination of findings, never a Python loop over 100,000 rows."""
    rows = conn.execute(
        """SELECT p.findings, count(*) FROM preflight_devices p
           JOIN devices d ON d.campaign_id = p.campaign_id AND d.imei = p.imei
           WHERE p.campaign_id = ? AND p.excluded = 1 AND d.dropped_at IS NOT NULL
           GROUP BY p.findings""",
        [campaign_id],
    ).fetchall()
    total = 0
    counts: dict[str, int] = {}
    for found, n in rows:
        total += n
        for value in str(found).split(","):
            counts[value] = counts.get(value, 0) + n
    return total, counts
