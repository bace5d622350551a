"""A staged rollout's plan and waves on record (the guard's say about them: `storage.refusals`).

A request with a plan is never sent whole: each wave, once started, is a campaign row of its
own (`parent_id`, `wave`), created here from the plan's `wave_devices` in the transaction that
records who started it, and sent by `Submitter.submit` through `Store.claim_for_submission`
like every campaign. The guard recounts the request's approvals of the plan's hash for each
wave, so one approval (with the usual quorum) approves the whole plan, and nothing else does.

The plan is bound into the request's content hash (`bind_plan`): approvals given to the
request before its plan was known, or to another plan, do not count for it.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from sqlite_utils import Database

from storage.model import (
    Campaign,
    NotApproved,
    WaveRefused,
    plan_hash,
    ref_for,
)
from storage.plan import RolloutPlan, WaveAssignment
from storage.states import CampaignState
from storage.store import Store

S = CampaignState


@dataclass(frozen=True)
class WaveRecord:
    number: int
    label: str
    size: int
    radius: tuple[tuple[str, str, str, int], ...]
    campaign_id: int | None  # the wave's own campaign, once started
    promoted_by: str | None
    promoted_at: dt.datetime | None
    promote_reason: str | None


@dataclass(frozen=True)
class StoredPlan:
    campaign_id: int
    plan: RolloutPlan
    base_hash: str
    bound_hash: str
    waves: tuple[WaveRecord, ...]
    halted_at: dt.datetime | None = None
    halted_by: str | None = None
    halt_reason: str | None = None
    # Waves up to this number were started before an approver resumed the rollout: their
    # failures no longer halt it (each still holds for a decision at its end).
    halt_waived_through: int = 0

    @property
    def halted(self) -> bool:
        return self.halted_at is not None

    def wave(self, number: int) -> WaveRecord:
        for wave in self.waves:
            if wave.number == number:
                return wave
        raise KeyError(number)


def bind_plan(store: Store, campaign_id: int, plan: RolloutPlan, waves: Sequence[WaveAssignment]) -> Campaign:
    """Record the plan of a request waiting for approval and bind it into its content hash.

    Called again it replaces the plan. The waves hold devices of the request, each exactly
    once: its eligible devices, planned before an approver narrows the request to them (the
    excluded devices are never in a wave, so a staged request is approved only as narrowed).
    """
    with store.db.atomic():
        campaign = store.campaign(campaign_id)
        if campaign.state is not S.PENDING_APPROVAL:
            raise NotApproved(f"{campaign.ref} is {campaign.state}: its plan can no longer change")
        devices = store.device_ids(campaign_id)
        planned = [imei for wave in waves for imei in wave.devices]
        if len(planned) != len(set(planned)) or not set(planned) <= set(devices):
            raise ValueError(f"the plan of {campaign.ref} must hold devices of it, each exactly once")
        row = store.db.execute(
            "SELECT base_hash, bound_hash FROM rollout_plans WHERE campaign_id = ?", [campaign_id]
        ).fetchone()
        # Re-bound after a change of the request: the base is the request's hash as it is now.
        base = row[0] if row is not None and row[1] == campaign.content_hash else campaign.content_hash
        bound = plan_hash(base, plan, waves)
        for table in ("wave_devices", "waves"):
            store.db.execute(f"DELETE FROM {table} WHERE parent_id = ?", [campaign_id])
        store.db.execute(
            """INSERT INTO rollout_plans(campaign_id, plan, base_hash, bound_hash, created_at)
               VALUES(?, ?, ?, ?, ?)
               ON CONFLICT(campaign_id) DO UPDATE SET plan = excluded.plan,
                 base_hash = excluded.base_hash, bound_hash = excluded.bound_hash""",
            [campaign_id, json.dumps(plan.to_json()), base, bound, store.now()],
        )
        store.db.conn.executemany(
            "INSERT INTO waves(parent_id, number, label, size, radius) VALUES(?, ?, ?, ?, ?)",
            [(campaign_id, w.number, w.label, w.size, json.dumps([list(r) for r in w.radius])) for w in waves],
        )
        store.db.conn.executemany(
            "INSERT INTO wave_devices(parent_id, imei, number) VALUES(?, ?, ?)",
            ((campaign_id, imei, w.number) for w in waves for imei in w.devices),
        )
        store.bind_content(campaign_id, bound)
        return store.campaign(campaign_id)


def _when(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def plan_of(store: Store, campaign_id: int) -> StoredPlan | None:
    """`load` on the store's connection."""
    return load(store.db, campaign_id)


def load(db: Database, campaign_id: int) -> StoredPlan | None:
    """The plan of a request, or None for a request that is one campaign (no plan)."""
    row = db.execute(
        """SELECT plan, base_hash, bound_hash, halted_at, halted_by, halt_reason, halt_waived_through
           FROM rollout_plans WHERE campaign_id = ?""",
        [campaign_id],
    ).fetchone()
    if row is None:
        return None
    waves = tuple(
        WaveRecord(
            number=r[0],
            label=r[1],
            size=r[2],
            radius=tuple((str(x[0]), str(x[1]), str(x[2]), int(x[3])) for x in json.loads(r[3])),
            campaign_id=r[4],
            promoted_by=r[5],
            promoted_at=_when(r[6]),
            promote_reason=r[7],
        )
        for r in db.execute(
            """SELECT number, label, size, radius, campaign_id, promoted_by, promoted_at, promote_reason
               FROM waves WHERE parent_id = ? ORDER BY number""",
            [campaign_id],
        ).fetchall()
    )
    return StoredPlan(
        campaign_id=campaign_id,
        plan=RolloutPlan.from_json(json.loads(row[0])),
        base_hash=row[1],
        bound_hash=row[2],
        waves=waves,
        halted_at=_when(row[3]),
        halted_by=row[4],
        halt_reason=row[5],
        halt_waived_through=int(row[6] or 0),
    )


def wave_devices(db: Database, parent_id: int, number: int) -> list[str]:
    rows = db.execute(
        "SELECT imei FROM wave_devices WHERE parent_id = ? AND number = ? ORDER BY rowid", [parent_id, number]
    ).fetchall()
    return [r[0] for r in rows]


def start_wave(store: Store, parent_id: int, number: int, *, by: str, reason: str) -> Campaign:
    """Create wave `number`'s campaign, approved by the request's approvals; it is then sent by
    `Submitter.submit` like any campaign. Idempotent: a wave already started is returned as is.

    Checks only what the record says (approved plan, not halted, waves in order, who may start
    a later wave); whether the wave before passed is the workflow's to judge from its figures,
    and the guard recounts the approvals again when the wave is sent. The wave starts the day
    it is started, with the request's windows and the request's number of days.
    """
    with store.db.atomic():
        parent = store.campaign(parent_id)
        stored = load(store.db, parent_id)
        if stored is None:
            raise WaveRefused(f"{parent.ref} is not a staged rollout")
        try:
            wave = stored.wave(number)
        except KeyError:
            raise WaveRefused(f"{parent.ref} has no wave {number} (it has {len(stored.waves)})") from None
        if wave.campaign_id is not None:
            return store.campaign(wave.campaign_id)
        if stored.halted:
            raise WaveRefused(f"{parent.ref} was halted: {stored.halt_reason or 'no reason recorded'}")
        expected = S.APPROVED if number == 1 else S.ROLLING_OUT
        if parent.state is not expected:
            raise WaveRefused(f"{parent.ref} is {parent.state}, not an approved rollout")
        if parent.content_hash != stored.bound_hash:
            raise WaveRefused(f"{parent.ref} changed since its plan was approved")
        if number > 1:
            before = stored.wave(number - 1)
            if before.campaign_id is None:
                raise WaveRefused(f"wave {number - 1} of {parent.ref} has not started yet")
            if not store.campaign(before.campaign_id).state.is_terminal:
                raise WaveRefused(f"wave {number - 1} of {parent.ref} has not ended yet")
            if by == parent.requester:
                raise WaveRefused(f"the requester of {parent.ref} cannot promote their own rollout")
        devices = wave_devices(store.db, parent_id, number)
        today = store.clock().astimezone(dt.UTC).date()
        child = store.create_wave_campaign(
            parent,
            number=number,
            waves_total=len(stored.waves),
            devices=devices,
            start_date=today,
            end_date=today + (parent.end_date - parent.start_date),
            by=by,
            reason=f"wave {number}/{len(stored.waves)} of {parent.ref}: {reason}",
        )
        store.db.execute(
            """UPDATE waves SET campaign_id = ?, promoted_by = ?, promoted_at = ?, promote_reason = ?
               WHERE parent_id = ? AND number = ?""",
            [child.id, by, store.now(), reason, parent_id, number],
        )
        if number == 1:
            store.transition(parent_id, S.ROLLING_OUT, actor=by, reason=f"wave 1 of {len(stored.waves)} started")
        return store.campaign(child.id)


def halt(store: Store, parent_id: int, *, by: str, reason: str) -> bool:
    """Record that the rollout stops: no wave starts after this, and the request is halted.
    True the first time; a later call (a duplicate report, a second click) changes nothing and
    says False.

    A wave started but not yet claimed for sending is ended here, never sent (the guard
    would refuse it anyway); a wave already at ThingSpace is the workflow's to cancel there.
    """
    with store.db.atomic():
        changed = store.db.execute(
            """UPDATE rollout_plans SET halted_at = ?, halted_by = ?, halt_reason = ?
               WHERE campaign_id = ? AND halted_at IS NULL""",
            [store.now(), by, reason, parent_id],
        ).rowcount
        if load(store.db, parent_id) is None:
            raise WaveRefused(f"{ref_for(parent_id)} is not a staged rollout")
        if not changed:
            return False
        if store.campaign(parent_id).state is S.ROLLING_OUT:
            store.transition(parent_id, S.HALTED, actor=by, reason=reason)
        for (child_id,) in store.db.execute(
            "SELECT id FROM campaigns WHERE parent_id = ? AND state = ?", [parent_id, S.APPROVED.value]
        ).fetchall():
            store.transition(
                child_id, S.SUBMIT_FAILED, actor=by, reason=f"never sent: {ref_for(parent_id)} was halted",
                error_code="HALTED", error_message=f"the rollout was halted before this wave was sent: {reason}",
            )
    return True


def resume(store: Store, parent_id: int, *, by: str, reason: str, halted_at: str | None) -> StoredPlan:
    """An approver's decision to go on after a halt, recorded with its reason (the audit row of
    the request's move back to `rolling_out`). `halted_at`: the halt the decider was shown
    (`StoredPlan.halted_at` as ISO text); another halt since refuses.

    Nothing is sent here: the next wave starts by a promotion as always. The waves started
    before now no longer halt the rollout: the decider weighed their failures.
    """
    with store.db.atomic():
        parent = store.campaign(parent_id)
        stored = load(store.db, parent_id)
        if stored is None:
            raise WaveRefused(f"{parent.ref} is not a staged rollout")
        if not stored.halted or parent.state is not S.HALTED:
            raise WaveRefused(f"{parent.ref} is {parent.state}, not halted: there is nothing to resume")
        assert stored.halted_at is not None
        if halted_at is not None and halted_at != stored.halted_at.isoformat():
            raise WaveRefused(f"{parent.ref} was halted again since that form was opened; open Resume again")
        started = max((w.number for w in stored.waves if w.campaign_id is not None), default=0)
        store.db.execute(
            """UPDATE rollout_plans SET halted_at = NULL, halted_by = NULL, halt_reason = NULL,
               halt_waived_through = ? WHERE campaign_id = ?""",
            [started, parent_id],
        )
        store.transition(
            parent_id, S.ROLLING_OUT, actor=by,
            reason=f"resumed: {reason} (halted by {stored.halted_by or 'fota-bot'}: {stored.halt_reason or 'no reason'})",
        )
        resumed = load(store.db, parent_id)
        assert resumed is not None
        last = resumed.waves[-1] if resumed.waves else None
        if last is not None and last.campaign_id is not None:
            final = store.campaign(last.campaign_id)
            if final.state.is_terminal:
                # The last wave ended while the rollout was halted: nothing is left to send.
                wave_ended(store, final)
        return resumed


# Sent to ThingSpace, not started there yet: a halt cancels these (ThingSpace allows a DELETE
# only before a campaign starts).
NOT_STARTED = (S.SUBMITTED, S.REQUEST_PENDING, S.REQUEST_QUEUED, S.PRE_SCHEDULED)


def live_waves(store: Store, parent_id: int, states: Sequence[CampaignState] = NOT_STARTED) -> list[int]:
    """The campaigns of the request's waves in one of `states`, by wave number."""
    rows = store.db.execute(
        f"""SELECT id FROM campaigns WHERE parent_id = ? AND state IN ({",".join("?" * len(states))})
            AND thingspace_id IS NOT NULL ORDER BY wave""",
        [parent_id, *(s.value for s in states)],
    ).fetchall()
    return [r[0] for r in rows]


def halted_with_waves_to_cancel(store: Store) -> list[int]:
    """Halted requests with a wave at ThingSpace that has not started (to cancel there)."""
    states = [s.value for s in NOT_STARTED]
    rows = store.db.execute(
        f"""SELECT DISTINCT p.campaign_id FROM rollout_plans p
            JOIN campaigns c ON c.parent_id = p.campaign_id
            WHERE p.halted_at IS NOT NULL AND c.thingspace_id IS NOT NULL
            AND c.state IN ({",".join("?" * len(states))}) ORDER BY p.campaign_id""",
        states,
    ).fetchall()
    return [r[0] for r in rows]


def rolling_out(store: Store) -> list[int]:
    """Requests rolling out (not halted): the ones a promotion may be due for."""
    rows = store.db.execute(
        """SELECT p.campaign_id FROM rollout_plans p JOIN campaigns c ON c.id = p.campaign_id
           WHERE c.state = ? AND p.halted_at IS NULL ORDER BY p.campaign_id""",
        [S.ROLLING_OUT.value],
    ).fetchall()
    return [r[0] for r in rows]


def ended_at(store: Store, campaign_id: int) -> dt.datetime | None:
    """When the campaign reached its terminal state (its audit row), or None while it runs."""
    terminal = [s.value for s in S if s.is_terminal]
    row = store.db.execute(
        f"""SELECT at FROM audit WHERE campaign_id = ? AND to_state IN ({",".join("?" * len(terminal))})
            ORDER BY id DESC LIMIT 1""",
        [campaign_id, *terminal],
    ).fetchone()
    return _when(row[0]) if row else None


def approved_without_first_wave(store: Store) -> list[int]:
    """Approved requests with a plan, not halted, whose first wave was never started."""
    rows = store.db.execute(
        """SELECT p.campaign_id FROM rollout_plans p
           JOIN campaigns c ON c.id = p.campaign_id
           JOIN waves w ON w.parent_id = p.campaign_id AND w.number = 1
           WHERE c.state = ? AND p.halted_at IS NULL AND w.campaign_id IS NULL ORDER BY p.campaign_id""",
        [S.APPROVED.value],
    ).fetchall()
    return [r[0] for r in rows]


def rebind(db: Database, campaign_id: int, base_hash: str) -> str:
    """The content hash for a request whose own hash became `base_hash` (narrowed to the
    eligible devices its plan was made of): the same plan bound to it. No plan: `base_hash`."""
    stored = load(db, campaign_id)
    if stored is None or not stored.waves:
        return base_hash
    assignments = [
        WaveAssignment(w.number, w.label, tuple(wave_devices(db, campaign_id, w.number)), w.radius)
        for w in stored.waves
    ]
    bound = plan_hash(base_hash, stored.plan, assignments)
    db.execute(
        "UPDATE rollout_plans SET base_hash = ?, bound_hash = ? WHERE campaign_id = ?",
        [base_hash, bound, campaign_id],
    )
    return bound


def wave_ended(store: Store, wave: Campaign) -> Campaign | None:
    """A wave's campaign reached its end: after the last wave, the request is rolled out.
    Returns the request when it changed state; called in the transaction of the wave's end."""
    if wave.parent_id is None or wave.wave is None or wave.wave != wave.waves_total:
        return None
    parent = store.campaign(wave.parent_id)
    if parent.state is not S.ROLLING_OUT:
        return None
    return store.transition(parent.id, S.ROLLED_OUT, actor="fota-bot", reason=f"the last wave ({wave.ref}) ended")


# --- a rollout seen whole: its current wave, its figures across waves, its end ------------------


@dataclass(frozen=True)
class WaveTally:
    """One wave of a rollout with its figures: device counts per bucket (all zero, and no
    campaign, for a wave not started)."""

    number: int
    total: int
    label: str
    size: int
    campaign: Campaign | None
    counts: dict[str, int]

    @property
    def started(self) -> bool:
        return self.campaign is not None


def wave_campaign_ids(conn: sqlite3.Connection, parent_id: int) -> list[int]:
    """The campaigns of a request's started waves, in wave order (on any connection: the
    bot's, or the reader thread's for a large CSV)."""
    rows = conn.execute(
        "SELECT campaign_id FROM waves WHERE parent_id = ? AND campaign_id IS NOT NULL ORDER BY number",
        [parent_id],
    ).fetchall()
    return [int(r[0]) for r in rows]


def tally(store: Store, parent_id: int) -> list[WaveTally]:
    """Every wave of a request's plan with its figures now; empty for a request without a plan."""
    stored = load(store.db, parent_id)
    if stored is None:
        return []
    total = len(stored.waves)
    out = []
    for wave in stored.waves:
        child = store.campaign(wave.campaign_id) if wave.campaign_id is not None else None
        counts = store.device_counts(child.id) if child is not None else {}
        out.append(WaveTally(wave.number, total, wave.label, wave.size, child, counts))
    return out


def current_wave(store: Store, parent_id: int) -> WaveTally | None:
    """The last wave started: the one running, or the one whose end the rollout waits on."""
    started = [w for w in tally(store, parent_id) if w.started]
    return started[-1] if started else None


def rollout_counts(tallies: Sequence[WaveTally]) -> dict[str, int]:
    """Device counts per bucket summed over the started waves: the rollout's figures."""
    counts: dict[str, int] = {}
    for wave in tallies:
        for bucket, n in wave.counts.items():
            counts[bucket] = counts.get(bucket, 0) + n
    return counts


def rollout_failure_reasons(store: Store, parent_id: int) -> list[tuple[str, int]]:
    """Failed devices per reason across every started wave, most first."""
    merged: dict[str, int] = {}
    for campaign_id in wave_campaign_ids(store.db.conn, parent_id):
        for reason, n in store.failure_reasons(campaign_id):
            merged[reason] = merged.get(reason, 0) + n
    return sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))


def rollout_over(store: Store, parent: Campaign) -> bool:
    """The rollout has ended: rolled out, or halted with no started wave still at ThingSpace
    (a halted rollout's running wave goes on to its end: its devices may still upgrade)."""
    if parent.state is S.ROLLED_OUT:
        return True
    if parent.state is not S.HALTED:
        return False
    return all(store.campaign(cid).state.is_terminal for cid in wave_campaign_ids(store.db.conn, parent.id))
