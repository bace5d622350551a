"""The one place outbox rows become Slack messages, when the sender sends them.

A row names an `Event` and the facts that must read as they were when it happened; all else
is read here from the records as they are now (`Records`). The functions above `Renderer`
are pure (a row and records in, a message out); `Renderer` reads the records and is what
`bot/app.py` hands the outbox sender.

Which is which, per event (`bot/notify/events.py` lists each event's facts):
- as it was: who rejected, withdrew, cancelled, narrowed or overrode, and why; ThingSpace's
  status at submission, its error when it refused, a status change's old and new status; a
  wave's verdict at its end; a halt's sentence and failures by reason; the content hash and
  device count a narrowing or an override left.
- as it is: the card (its stamp, approvals, progress, pre-flight findings, waves); the failed
  devices not yet told; the final summary and the CSVs (the devices as they ended); who still
  has to decide (a reminder, not sent once the request is decided); the approvals of an approved request (closed once approved);
  direct messages' thread link and device counts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from bot.notify.events import Event, Facts, Upload
from bot.notify.reports import devices_csv_off_loop
from bot.workflow.wave_figures import wave_states
from commands import blocks
from commands.blocks import replies
from commands.blocks.kit import Message, section
from storage import preflight, retries, waves
from storage.model import Campaign, Decision, ref_for
from storage.states import CampaignState
from storage.store import Store
from storage.waves import StoredPlan

S = CampaignState

# How many failed devices one thread reply names before "and N more" (Slack: 50 blocks/message).
FAILURES_PER_REPLY = 20
# Devices named on the card.
DEVICE_SAMPLE = 10


@dataclass(frozen=True)
class Records:
    """What the database (and the settings) say at send time, as far as a message reads it."""

    decisions: Sequence[Decision] = ()
    counts: Mapping[str, int] | None = None
    plan: StoredPlan | None = None  # the request's plan, for a wave's message
    wave: Campaign | None = None  # the wave a halt names
    parent: Campaign | None = None  # a wave's request, whose decision buttons its end carries
    approvers: Sequence[str] = ()  # FOTA_APPROVERS
    required_approvals: int | None = None


def as_then(campaign: Campaign, facts: Facts) -> Campaign:
    """The campaign with the fields the event recorded as they were (`facts["then"]`)."""
    then = facts.get("then") or {}
    return replace(campaign, **then) if then else campaign


ReplyBuilder = Callable[[Campaign, Facts, Records], Message | None]


def _wave_ended(wave: Campaign, facts: Facts, records: Records) -> Message:
    assert records.plan is not None, "a wave's end is told only for a request with a plan"
    failed = int(facts.get("failed") or 0)
    return blocks.wave_ended_reply(
        wave,
        records.plan,
        str(facts["sentence"]),
        bool(facts["passed"]),
        facts.get("ready_at"),
        records.parent,
        # A wave that missed: its failed devices can be requested again, beside the decision.
        [blocks.retry_button(wave.id, failed, label=f"Retry the wave's failed devices ({failed:,})…")]
        if failed and not bool(facts["passed"])
        else [],
        halted=bool(facts.get("halted")),
    )


def _reminder(campaign: Campaign, records: Records) -> Message | None:
    """Who still has to decide, as it is when the reminder goes out; once the request is
    decided (or withdrawn, or expired) there is nobody to remind."""
    if campaign.state is not S.PENDING_APPROVAL:
        return None
    return blocks.reminder_reply(
        campaign,
        campaign.expires_at,
        decisions=records.decisions,
        required_approvals=records.required_approvals,
        approvers=sorted(records.approvers),
    )


def _wave_title(parent: Campaign, number: int, records: Records) -> str:
    if records.plan is None:
        return f"wave {number}"
    return blocks.wave_title(records.plan.wave(number), len(records.plan.waves))


def _total(records: Records) -> int:
    return len(records.plan.waves) if records.plan is not None else 0


def _halted_by(parent: Campaign, facts: Facts) -> Message:
    return blocks.halted_by_reply(
        parent, str(facts["by"]), str(facts["reason"]), cancelled_kind=str(facts.get("kind") or "halt")
    )


def _resumed(parent: Campaign, facts: Facts) -> Message:
    return blocks.resumed_reply(parent, str(facts["by"]), str(facts["reason"]), str(facts["next_step"]))


def _halted(parent: Campaign, facts: Facts, records: Records) -> Message:
    assert records.wave is not None, "a halt names its wave"
    reasons = [(str(reason), int(count)) for reason, count in facts.get("reasons") or ()]
    return blocks.halted_reply(parent, records.wave, str(facts["sentence"]), reasons)


# Thread replies, one builder per event.
REPLIES: dict[Event, ReplyBuilder] = {
    Event.APPROVED: lambda c, f, r: blocks.approved_reply(c, r.decisions),
    Event.REJECTED: lambda c, f, r: blocks.rejected_reply(c, f["by"], f.get("reason")),
    Event.WITHDRAWN: lambda c, f, r: blocks.withdrawn_reply(c, f.get("by")),
    Event.EXPIRED: lambda c, f, r: blocks.expired_reply(c),
    Event.REMINDER: lambda c, f, r: _reminder(c, r),
    Event.NARROWED: lambda c, f, r: blocks.narrowed_reply(
        as_then(c, f), f["by"], kept=int(f["kept"]), dropped=int(f["dropped"]), superseded=list(f["superseded"])
    ),
    Event.OVERRIDDEN: lambda c, f, r: blocks.overridden_reply(
        as_then(c, f),
        f["by"],
        included=int(f["included"]),
        done=int(f["done"]),
        reason=str(f["reason"]),
        superseded=list(f["superseded"]),
    ),
    Event.SUBMITTED: lambda c, f, r: blocks.submitted_reply(as_then(c, f)),
    Event.SUBMIT_FAILED: lambda c, f, r: blocks.submit_failed_reply(as_then(c, f)),
    Event.SUBMIT_DELAYED: lambda c, f, r: blocks.submit_delayed_reply(c, str(f["reason"]), float(f["retry_in"])),
    Event.STATUS_CHANGED: lambda c, f, r: blocks.status_change_reply(c, f.get("old"), str(f["new"])),
    Event.CANCELLED: lambda c, f, r: blocks.cancelled_reply(c, f["by"]),
    Event.CANCEL_REFUSED: lambda c, f, r: blocks.cancel_refused_reply(c, f.get("error_code"), f.get("error_message")),
    Event.LOST: lambda c, f, r: blocks.lost_reply(c),
    Event.WAVE_ENDED: _wave_ended,
    Event.HALTED: _halted,
    Event.HALTED_BY: lambda c, f, r: _halted_by(c, f),
    Event.RESUMED: lambda c, f, r: _resumed(c, f),
    Event.PROMOTED_ANYWAY: lambda c, f, r: blocks.promoted_anyway_reply(
        c, str(f["by"]), int(f["number"]), _total(r), str(f["sentence"]), str(f["reason"])
    ),
    Event.AUTO_PROMOTED: lambda c, f, r: blocks.auto_promoted_reply(
        c, int(f["number"]), _total(r), _wave_title(c, int(f["number"]), r), str(f["sentence"])
    ),
    Event.WAVE_CANCELLED: lambda c, f, r: blocks.wave_cancelled_reply(c, str(f["by"])),
    Event.RETRY_REQUESTED: lambda c, f, r: blocks.retry_requested_reply(
        c.ref, ref_for(int(f["retry"])), str(f["by"]), int(f["failed"])
    ),
}


def reply(event: Event, campaign: Campaign, facts: Facts, records: Records) -> Message | None:
    """The thread reply for one event, or None when it has nothing true to say any more.
    KeyError for an event that has none."""
    return REPLIES[event](campaign, facts, records)


def root_refused_dm(campaign: Campaign, error: str) -> Message:
    """Slack will not take the approval card: nobody can approve, so the requester must know."""
    text = (
        f":warning: Ref {campaign.ref} could not be posted for approval: Slack answered `{error}` "
        f"for <#{campaign.approval_channel or ''}>. Nothing was sent to ThingSpace. An operator must "
        "invite the bot to the approval channel (or fix FOTA_APPROVAL_CHANNEL); then request it again."
    )
    return {"text": text}


DmBuilder = Callable[[Campaign, Facts, Records, str | None], Message]

# Direct messages, one builder per event: the requester's (with a link to the thread), a halt
# (the thread's words, to the requester and the approvers), Slack refusing the card.
DIRECT_MESSAGES: dict[Event, DmBuilder] = {
    Event.APPROVED: lambda c, f, r, link: replies.dm_approved(c, r.decisions, link),
    Event.REJECTED: lambda c, f, r, link: replies.dm_rejected(c, f.get("by"), f.get("reason"), link),
    Event.WITHDRAWN: lambda c, f, r, link: replies.dm_withdrawn(c, f.get("by"), link),
    Event.EXPIRED: lambda c, f, r, link: replies.dm_expired(c, link),
    Event.SUBMITTED: lambda c, f, r, link: replies.dm_submitted(as_then(c, f), link),
    Event.SUBMIT_FAILED: lambda c, f, r, link: replies.dm_submit_failed(c, link),
    Event.FINISHED: lambda c, f, r, link: replies.dm_finished(c, r.counts, link),
    Event.CANCELLED: lambda c, f, r, link: replies.dm_cancelled(c, f.get("by"), link),
    Event.LOST: lambda c, f, r, link: replies.dm_lost(c, link),
    Event.HALTED: lambda c, f, r, link: _halted(c, f, r),
    Event.HALTED_BY: lambda c, f, r, link: _halted_by(c, f),
    Event.RESUMED: lambda c, f, r, link: _resumed(c, f),
    Event.ROOT_REFUSED: lambda c, f, r, link: root_refused_dm(c, str(f.get("error") or "")),
}


def dm(event: Event, campaign: Campaign, facts: Facts, records: Records, permalink: str | None) -> Message:
    """The direct message for one event. KeyError for an event that has none."""
    return DIRECT_MESSAGES[event](campaign, facts, records, permalink)


def upload_title(campaign: Campaign, facts: Facts) -> str:
    reasons = facts.get("reasons")
    if reasons is None:
        return f"{campaign.ref} per-device report"
    label = blocks.failure_label(reasons[0]) if len(reasons) == 1 else "other reasons"
    return f"{campaign.ref} failed: {label}"


def upload_filename(campaign: Campaign, facts: Facts) -> str:
    if facts.get("reasons") is None:
        return f"{campaign.ref}-devices.csv"
    return f"{campaign.ref}-failed-{int(facts.get('part') or 1)}.csv"


class Renderer:
    """Messages built at send time from what the database says now (`bot.notify.events.Renderer`)."""

    def __init__(
        self,
        *,
        store: Store,
        required_approvals: int,
        clock: Callable[[], dt.datetime],
        approvers: frozenset[str] = frozenset(),
    ):
        self.store = store
        self.required_approvals = required_approvals
        self.approvers = approvers
        self.clock = clock

    def _records(self, event: Event, campaign: Campaign, facts: Facts, *, counts: bool = False) -> Records:
        plan = None
        if event is Event.WAVE_ENDED and campaign.parent_id is not None:
            plan = waves.plan_of(self.store, campaign.parent_id)
        elif event in (Event.PROMOTED_ANYWAY, Event.AUTO_PROMOTED):
            plan = waves.plan_of(self.store, campaign.id)
        wave = self.store.campaign(int(facts["wave"])) if event is Event.HALTED else None
        parent = self.store.campaign(campaign.parent_id) if plan is not None and campaign.parent_id else None
        return Records(
            parent=parent,
            decisions=self.store.decisions(campaign.id),
            counts=self.store.device_counts(campaign.id) if counts else None,
            plan=plan,
            wave=wave,
            approvers=sorted(self.approvers),
            required_approvals=self.required_approvals,
        )

    def reply(self, event: Event, campaign: Campaign, facts: Facts) -> Message | None:
        return reply(event, campaign, facts, self._records(event, campaign, facts))

    def dm(self, event: Event, campaign: Campaign, facts: Facts, permalink: str | None) -> Message:
        records = self._records(event, campaign, facts, counts=event is Event.FINISHED)
        if event is Event.FINISHED:
            # A staged request's devices are counted in its waves (its own are never sent).
            tallies = waves.tally(self.store, campaign.id)
            if tallies:
                records = replace(records, counts=waves.rollout_counts(tallies))
        return dm(event, campaign, facts, records, permalink)

    def confirmation(self, campaign: Campaign, permalink: str | None) -> Message:
        return blocks.request_confirmation(campaign, permalink)

    def failures(self, campaign: Campaign) -> Message | None:
        failures, more = self.store.unreported_failures(campaign.id, FAILURES_PER_REPLY)
        return blocks.failures_reply(campaign, failures, more) if failures else None

    async def summary_reads(self, campaign: Campaign) -> Facts:
        # Every device a narrowing dropped (up to 100,000): read on the reader thread.
        left_out, reasons = await self.store.readers.run(lambda conn: preflight.left_out_on(conn, campaign.id))
        return {"left_out": left_out, "left_out_reasons": reasons}

    def summary(self, campaign: Campaign, reads: Facts) -> Message:
        stored = waves.plan_of(self.store, campaign.id)
        if stored is not None:
            # A staged rollout's one summary, across its waves.
            return blocks.rollout_summary_reply(
                campaign,
                waves.tally(self.store, campaign.id),
                left_out=int(reads["left_out"]),
                left_out_reasons=dict(reads["left_out_reasons"]),
                failure_reasons=waves.rollout_failure_reasons(self.store, campaign.id),
                halt_reason=stored.halt_reason,
            )
        record = preflight.load(self.store, campaign.id)
        overridden = record is not None and record.overridden
        counts = self.store.device_counts(campaign.id)
        summary = blocks.final_summary_reply(
            campaign,
            counts,
            left_out=int(reads["left_out"]),
            left_out_reasons=dict(reads["left_out_reasons"]),
            included_by_override=(record.override_count or 0) if record and overridden else 0,
            override_by=record.override_by if record and overridden else None,
            failure_reasons=self.store.failure_reasons(campaign.id),
        )
        return blocks.with_retry_button(summary, campaign.id, blocks.bucket_counts(counts)["failed"])

    async def csv(self, campaign: Campaign, facts: Facts) -> tuple[str, str]:
        """The file of an upload: every device, or (`reasons` given) the failed devices with
        those reasons."""
        reasons = facts.get("reasons")
        filename = upload_filename(campaign, facts)
        if reasons is None:
            return filename, await devices_csv_off_loop(self.store, campaign, waves_too=True)
        return filename, await devices_csv_off_loop(
            self.store, campaign, failed_only=True, reasons=set(reasons), waves_too=True
        )

    async def upload(self, campaign: Campaign, facts: Facts) -> Upload:
        filename, content = await self.csv(campaign, facts)
        # Rows from before the title was rendered here carry their own.
        return Upload(filename, str(facts.get("title") or upload_title(campaign, facts)), content)

    # --- the card ---------------------------------------------------------------------------

    def _waves_row(self, campaign: Campaign) -> list[str]:
        stored = waves.plan_of(self.store, campaign.id)
        if stored is None:
            return []
        return [blocks.waves_row(stored, wave_states(stored.plan, waves.tally(self.store, campaign.id)))]

    def card(self, campaign: Campaign) -> Message:
        decisions = self.store.decisions(campaign.id)
        sample = [d.imei for d in self.store.devices(campaign.id, limit=DEVICE_SAMPLE)]
        # A retry says, on every card it has, whose failed devices it holds.
        link = retries.link_of(self.store, campaign.id)
        retry = [blocks.retry_of_line(link.origin_ref, link.failed, link.origin_permalink)] if link else []
        if campaign.state is S.PENDING_APPROVAL:
            # Pre-flight findings are part of what approvers decide on; the buttons follow
            # them: no Approve while checking or when a finding blocks.
            checks = preflight.load(self.store, campaign.id)
            card = blocks.approval_card(
                campaign,
                devices_sample=sample,
                approvals=[d for d in decisions if d.decision == "approve"],
                required_approvals=self.required_approvals,
                sandbox=campaign.sandbox,
                preflight_blocks=[
                    *(section(line) for line in retry),
                    *blocks.preflight_blocks(campaign, checks, today=self.clock().astimezone(dt.UTC).date()),
                    *blocks.plan_blocks(waves.plan_of(self.store, campaign.id)),
                ],
            )
            return blocks.gate_decisions(card, campaign, checks)
        if campaign.state in (S.ROLLING_OUT, S.ROLLED_OUT, S.HALTED):
            card = blocks.decided_card(
                campaign,
                decisions=decisions,
                outcome=campaign.state.value,
                devices_sample=sample,
                sandbox=campaign.sandbox,
                scope_lines=[
                    *retry, *blocks.scope_lines(preflight.load(self.store, campaign.id)), *self._waves_row(campaign)
                ],
            )
            stored = waves.plan_of(self.store, campaign.id)
            if stored is not None and campaign.state is not S.ROLLED_OUT:
                # Halt while it rolls out, Resume… once halted: before the card's reference line.
                card["blocks"][-1:-1] = blocks.rollout_actions(campaign, stored)
            return card
        if campaign.state in (S.REJECTED, S.EXPIRED, S.WITHDRAWN, S.SUBMIT_FAILED, S.APPROVED, S.SUBMITTING):
            # `/fota cancel` lets an approver withdraw a request too: the audit says who did.
            by_user = self.store.audit(campaign.id)[-1]["actor"] if campaign.state is S.WITHDRAWN else None
            return blocks.decided_card(
                campaign,
                decisions=decisions,
                outcome=campaign.state.value,
                devices_sample=sample,
                sandbox=campaign.sandbox,
                by_user=by_user,
                scope_lines=[*retry, *blocks.scope_lines(preflight.load(self.store, campaign.id))],
            )
        return blocks.campaign_card(
            campaign,
            counts=self.store.device_counts(campaign.id),
            last_update=campaign.last_callback_at,
            sandbox=campaign.sandbox,
            decisions=decisions,
            scope_lines=[*retry, *blocks.scope_lines(preflight.load(self.store, campaign.id))],
        )

