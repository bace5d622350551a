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

The record types here are shared by `bot.workflow.preflight` (which computes them) and
`commands.blocks.preflight` (which renders them).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlite_utils import Database

from storage import waves
from storage.model import (
    ApprovalResult,
    Campaign,
    NotApproved,
    TimeWindow,
    bound_hash,
    override_hash,
    ref_for,
    request_hash,
)
from storage.states import CampaignState
from storage.store import Store

S = CampaignState

CHECKING = "checking"
DONE = "done"
FAILED = "failed"


class Finding(StrEnum):
    """What pre-flight can find about one device, in the order the card lists them."""

    UNKNOWN = "unknown"  # absent from POST /devices: not in the account
    INELIGIBLE = "ineligible"  # fotaEligible: false
    UNLICENSED = "unlicensed"  # licenseAssigned: false on a monthly-only (MRC) subscription
    DONE = "done"  # already runs firmwareTo
    WRONG_FIRMWARE = "wrong_firmware"  # runs neither firmwareFrom nor firmwareTo
    WRONG_MODEL = "wrong_model"  # make/model differ from the firmware's
    IN_OTHER_CAMPAIGN = "in_other_campaign"  # already in another active campaign here


# Every finding leaves a device out of "eligible": a firmware image is built for one make, one
# model and one starting version, so a device of another model or on another version fails at
# best; an unknown, ineligible or unlicensed device is refused by ThingSpace; a device in
# another active campaign would be upgraded twice or raced. Sending any of them is an explicit,
# recorded override ("Include excluded devices…"), never the default.
EXCLUDING: frozenset[Finding] = frozenset(Finding)
# Findings that keep a device out even of an override: already on firmwareTo, nothing to send.
NEVER_SENT: frozenset[Finding] = frozenset({Finding.DONE})

# Non-terminal states: a campaign in one of them may still touch its devices.
ACTIVE_STATES: tuple[CampaignState, ...] = tuple(s for s in CampaignState if not s.is_terminal)


# --- Records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FirmwareCheck:
    """Rule 1: is the firmware listed for the account and protocol, with this from → to?"""

    listed: bool
    make: str | None = None
    model: str | None = None
    problem: str | None = None  # the sentence approvers read when not listed


@dataclass(frozen=True)
class RadiusRow:
    """One line of the blast radius: devices of one make/model on one current firmware."""

    make: str
    model: str
    firmware: str
    devices: int
    target: bool  # the firmware's make/model, on firmwareFrom: the upgrade applies


@dataclass(frozen=True)
class ConflictFinding:
    """Another active campaign in the database that shares devices with this one."""

    campaign_id: int
    state: str
    shared: int
    start_date: dt.date
    end_date: dt.date
    dates_overlap: bool
    windows_overlap: bool

    @property
    def ref(self) -> str:
        return ref_for(self.campaign_id)


@dataclass(frozen=True)
class PreflightSummary:
    """What the card shows; its `digest` covers it and every device's findings."""

    requested: int
    eligible: int
    on_target: int  # eligible, on firmwareFrom and of the firmware's make/model: no warning
    counts: Mapping[str, int]  # Finding value -> devices with it
    monthly_only: bool
    firmware: FirmwareCheck
    radius: tuple[RadiusRow, ...]
    radius_other: int  # devices in the account on rows not shown
    conflicts: tuple[ConflictFinding, ...]
    blocking: tuple[str, ...]
    digest: str = ""
    # licence=auto on a monthly-only account: unlicensed devices made eligible (each takes one
    # of the account's unused licences) and the unused licences there were.
    licences_assigned: int = 0
    licences_free: int | None = None

    @property
    def blocked(self) -> bool:
        return bool(self.blocking)

    @property
    def excluded(self) -> int:
        return self.requested - self.eligible

    @property
    def includable(self) -> int:
        """Excluded devices an override may add: all but those already on firmwareTo."""
        return self.excluded - self.count(Finding.DONE)

    def count(self, finding: Finding) -> int:
        return int(self.counts.get(finding.value, 0))

    def to_json(self, *, with_digest: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "requested": self.requested,
            "eligible": self.eligible,
            "on_target": self.on_target,
            "counts": {f.value: self.count(f) for f in Finding if self.count(f)},
            "monthly_only": self.monthly_only,
            "firmware": {
                "listed": self.firmware.listed,
                "make": self.firmware.make,
                "model": self.firmware.model,
                "problem": self.firmware.problem,
            },
            "radius": [[r.make, r.model, r.firmware, r.devices, r.target] for r in self.radius],
            "radius_other": self.radius_other,
            "conflicts": [
                {
                    "campaign_id": c.campaign_id,
                    "state": c.state,
                    "shared": c.shared,
                    "start_date": c.start_date.isoformat(),
                    "end_date": c.end_date.isoformat(),
                    "dates_overlap": c.dates_overlap,
                    "windows_overlap": c.windows_overlap,
                }
                for c in self.conflicts
            ],
            "blocking": list(self.blocking),
        }
        if self.licences_assigned or self.licences_free is not None:
            data["licences"] = {"assigned": self.licences_assigned, "free": self.licences_free}
        if with_digest:
            data["digest"] = self.digest
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PreflightSummary:
        fw = data["firmware"]
        return cls(
            requested=int(data["requested"]),
            eligible=int(data["eligible"]),
            on_target=int(data["on_target"]),
            counts={str(k): int(v) for k, v in data["counts"].items()},
            monthly_only=bool(data["monthly_only"]),
            firmware=FirmwareCheck(
                fw["listed"], fw.get("make"), fw.get("model"), fw.get("problem")
            ),
            radius=tuple(
                RadiusRow(r[0], r[1], r[2], int(r[3]), bool(r[4])) for r in data["radius"]
            ),
            radius_other=int(data["radius_other"]),
            conflicts=tuple(
                ConflictFinding(
                    campaign_id=int(c["campaign_id"]),
                    state=str(c["state"]),
                    shared=int(c["shared"]),
                    start_date=dt.date.fromisoformat(c["start_date"]),
                    end_date=dt.date.fromisoformat(c["end_date"]),
                    dates_overlap=bool(c["dates_overlap"]),
                    windows_overlap=bool(c["windows_overlap"]),
                )
                for c in data["conflicts"]
            ),
            blocking=tuple(data["blocking"]),
            digest=str(data.get("digest") or ""),
            licences_assigned=int((data.get("licences") or {}).get("assigned") or 0),
            licences_free=(data.get("licences") or {}).get("free"),
        )


@dataclass(frozen=True)
class Findings:
    """The outcome of one evaluation: the summary and each device's findings."""

    summary: PreflightSummary
    # IMEI -> its findings; devices without any finding are not listed (most of them).
    devices: Mapping[str, tuple[Finding, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class OtherCampaign:
    """Conflict input: another active campaign and the devices it shares with this request."""

    campaign_id: int
    state: str
    start_date: dt.date
    end_date: dt.date
    windows: tuple[TimeWindow, ...]
    shared: frozenset[str]


@dataclass(frozen=True)
class PreflightRecord:
    campaign_id: int
    status: str  # checking | done | failed
    attempts: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    request_hash: str
    summary: PreflightSummary | None
    error: str | None
    narrowed_by: str | None
    narrowed_at: dt.datetime | None
    narrowed_from: int | None  # device count before narrowing
    override_by: str | None = None
    override_at: dt.datetime | None = None
    override_reason: str | None = None
    override_count: int | None = None  # excluded devices the override added

    @property
    def approvable(self) -> bool:
        return self.status == DONE and self.summary is not None and not self.summary.blocked

    @property
    def narrowed(self) -> bool:
        return self.narrowed_at is not None

    @property
    def overridden(self) -> bool:
        return self.override_at is not None

    @property
    def excluded_pending(self) -> int:
        """Excluded devices still in the request with nobody's explicit say: while there are
        any, neither a plain approval nor a submission is allowed."""
        if self.summary is None or self.narrowed or self.overridden:
            return 0
        return self.summary.excluded


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


def refusal(db: Database, campaign_id: int) -> str | None:
    """Why the guard must refuse approving or submitting this campaign, or None.

    Used by `Store.record_approval` and `Store.claim_for_submission` inside their
    transactions. A campaign without a pre-flight row (stored before pre-flight existed, or
    by a test straight through the store) is left to the approval rules alone; every request
    made through `CampaignService` gets its row before its card is posted.

    Besides unfinished or blocking checks, a request still holding devices pre-flight excluded
    is refused until an approver either narrows it to the eligible devices or includes them
    explicitly: the excluded devices never go out by default.
    """
    why = checks_refusal(db, campaign_id)
    if why:
        return why
    row = db.execute(
        """SELECT summary, narrowed_at, override_at FROM preflight WHERE campaign_id = ?""",
        [campaign_id],
    ).fetchone()
    if row is None or not row[0] or row[1] or row[2]:
        return None
    data = json.loads(row[0])
    excluded = int(data["requested"]) - int(data["eligible"])
    if excluded > 0:
        return (
            f"{ref_for(campaign_id)} holds {excluded:,} device{'s' if excluded != 1 else ''} "
            "pre-flight excluded; approve the eligible devices, or include the excluded ones "
            "explicitly with Include excluded devices…"
        )
    return None


def checks_refusal(db: Database, campaign_id: int) -> str | None:
    """The pre-flight checks' own say: still checking, failed, or a blocking finding."""
    row = db.execute(
        "SELECT status, summary, error FROM preflight WHERE campaign_id = ?", [campaign_id]
    ).fetchone()
    if row is None:
        return None
    status, summary, error = row
    ref = ref_for(campaign_id)
    if status == CHECKING:
        return (
            f"{ref} is still being checked against ThingSpace; it can be approved once the "
            "pre-flight findings are on its card"
        )
    if status == FAILED:
        return (
            f"the pre-flight checks of {ref} could not finish ({error or 'no reason given'}); "
            "they must pass before it can be approved"
        )
    blocking = json.loads(summary)["blocking"] if summary else []
    if blocking:
        return f"{ref} cannot be approved: " + " ".join(blocking)
    return None


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
        campaign = store.campaign(campaign_id)
        row = store.db.execute(
            "SELECT status, attempts FROM preflight WHERE campaign_id = ?", [campaign_id]
        ).fetchone()
        if row is None:
            store.db.execute(
                """INSERT INTO preflight(campaign_id, status, attempts, started_at, request_hash)
                   VALUES(?, ?, 1, ?, ?)""",
                # Until findings exist the content hash is the request's own.
                [campaign_id, CHECKING, now, campaign.content_hash],
            )
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


def write_device_findings(
    store: Store,
    campaign_id: int,
    attempt: int,
    items: Sequence[tuple[str, Sequence[Finding]]],
    *,
    first: bool,
) -> bool:
    """One batch of per-device findings of run `attempt` (`first`: clear older ones first).

    Large requests write in batches, each its own short transaction, so the event loop
    (Slack acks, callbacks) is never held for the whole list; `finish` then publishes them.
    Until then the row stays `checking` and nothing reads these rows. False when superseded.
    """
    with store.db.atomic():
        if _current(store, campaign_id, attempt) is None:
            return False
        if first:
            store.db.execute("DELETE FROM preflight_devices WHERE campaign_id = ?", [campaign_id])
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
            store.db.execute(
                "UPDATE campaigns SET content_hash = ?, updated_at = ? WHERE id = ?",
                [bound_hash(row[2], summary.digest), now, campaign_id],
            )
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


@dataclass(frozen=True)
class Narrowed:
    """What "Approve eligible only" did: the approval outcome and the device counts."""

    result: ApprovalResult
    kept: int
    dropped: int
    old_hash: str
    superseded: tuple[str, ...]  # approvers whose approval of the full list stopped counting


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
        store.db.execute(
            "UPDATE campaigns SET content_hash = ?, device_count = ?, updated_at = ? WHERE id = ?",
            [new_hash, len(devices), now, campaign_id],
        )
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
        store.db.execute(
            """INSERT INTO audit(campaign_id, from_state, to_state, actor, reason, at)
               VALUES(?, ?, ?, ?, ?, ?)""",
            [campaign_id, campaign.state.value, campaign.state.value, user, reason, now],
        )
        result = store.record_approval(
            campaign_id, user=user, shown_hash=new_hash, required=required,
            current_approvers=current_approvers,
        )
        return Narrowed(result, len(devices), dropped, campaign.content_hash, superseded)


@dataclass(frozen=True)
class Overridden:
    """What "Include excluded devices…" did: the approval outcome and the device counts."""

    result: ApprovalResult
    included: int  # excluded devices now in the request
    done: int  # devices already on firmwareTo, left out all the same
    old_hash: str
    counts: Mapping[str, int]  # Finding value -> included devices with it


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
        store.db.execute(
            "UPDATE campaigns SET content_hash = ?, device_count = ?, updated_at = ? WHERE id = ?",
            [new_hash, len(devices), now, campaign_id],
        )
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
        store.db.execute(
            """INSERT INTO audit(campaign_id, from_state, to_state, actor, reason, at)
               VALUES(?, ?, ?, ?, ?, ?)""",
            [campaign_id, campaign.state.value, campaign.state.value, user, audit, now],
        )
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
