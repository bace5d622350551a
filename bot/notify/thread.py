"""The campaign's thread: what is said, and when: decisions, milestones, the final summary.

`ThreadNotifier` turns workflow events into outbox rows (never a Slack call, never a message):
an `Event` and the facts that must read as they were when it happened. The sender has them
rendered from the database when it sends them (`bot/notify/events.py`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

from bot.notify.events import FAILURE_REASONS_LISTED, Event, OutboxKind
from bot.workflow.wave_figures import Verdict, WaveFigures, judge, promotable_at
from storage import waves
from storage.findings import Narrowed, Overridden
from storage.model import Campaign
from storage.outbox import Outbox
from storage.states import CampaignState
from storage.store import Store


def as_then(campaign: Campaign, *fields: str) -> dict[str, Any]:
    """The campaign's fields a message reads that may change before it is sent."""
    return {name: getattr(campaign, name) for name in fields}


class ThreadNotifier:
    """Workflow events → outbox rows, then a wake-up for the sender."""

    def __init__(
        self,
        *,
        store: Store,
        approval_channel: str,
        update_interval: float,
        clock: Callable[[], dt.datetime],
        wake: Callable[[], None] = lambda: None,
        approvers: frozenset[str] = frozenset(),
    ):
        self.approvers = approvers
        self.store = store
        self.outbox = Outbox(store)
        self.approval_channel = approval_channel
        self.update_interval = dt.timedelta(seconds=update_interval)
        self.clock = clock
        self.wake = wake

    # --- low level ---------------------------------------------------------------------------

    def refresh_root(self, campaign: Campaign, *, now: bool = False) -> None:
        """Edit the root card, at most once per FOTA_UPDATE_INTERVAL (milestones: at once)."""
        if campaign.parent_id is not None:
            # A wave's thread is its request's: the request's card is the one shown and edited.
            campaign = self.store.campaign(campaign.parent_id)
        key = f"root:{campaign.id}"
        not_before = None
        if not now:
            last = self.outbox.last_sent_at(key)
            if last is not None and last + self.update_interval > self.clock():
                not_before = last + self.update_interval
        self.outbox.enqueue(OutboxKind.ROOT_UPDATE, {}, campaign_id=campaign.id, coalesce_key=key, not_before=not_before)
        if now:
            # A milestone edit (a stamp) should not wait behind a throttled progress edit.
            self.outbox.expedite(key)
        self.wake()

    def reply(self, campaign: Campaign, event: Event, **facts: Any) -> None:
        self.outbox.enqueue(OutboxKind.REPLY, {"event": event, "facts": facts}, campaign_id=campaign.id)
        self.wake()

    def dm(self, campaign: Campaign, event: Event, *, user: str | None = None, **facts: Any) -> None:
        """A direct message to the requester (or `user`)."""
        payload = {"user": user or campaign.requester, "event": event, "facts": facts}
        self.outbox.enqueue(OutboxKind.DM, payload, campaign_id=campaign.id)
        self.wake()

    # --- requests and decisions (CampaignEvents) ---------------------------------------------

    def requested(self, campaign: Campaign, response_url: str | None) -> None:
        self.outbox.enqueue(OutboxKind.ROOT, {"channel": self.approval_channel}, campaign_id=campaign.id)
        self.outbox.enqueue(OutboxKind.CONFIRM, {"response_url": response_url}, campaign_id=campaign.id)
        self.wake()

    def approval_recorded(self, campaign: Campaign, user: str) -> None:
        self.refresh_root(campaign, now=True)

    def approved(self, campaign: Campaign) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, Event.APPROVED)
        self.dm(campaign, Event.APPROVED)

    def rejected(self, campaign: Campaign, user: str, reason: str) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, Event.REJECTED, by=user, reason=reason)
        self.dm(campaign, Event.REJECTED, by=user, reason=reason)

    def withdrawn(self, campaign: Campaign, user: str) -> None:
        self.refresh_root(campaign, now=True)
        # `/fota cancel` lets an approver withdraw a request too: the reply names who did.
        self.reply(campaign, Event.WITHDRAWN, by=user)
        if user != campaign.requester:
            # The requester hears of every decision on their request, even one they did not make.
            self.dm(campaign, Event.WITHDRAWN, by=user)

    def expired(self, campaign: Campaign) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, Event.EXPIRED)
        self.dm(campaign, Event.EXPIRED)

    def reminder(self, campaign: Campaign) -> None:
        self.reply(campaign, Event.REMINDER)

    # --- submission (SubmissionEvents) -------------------------------------------------------

    def submitted(self, campaign: Campaign) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, Event.SUBMITTED, then=as_then(campaign, "thingspace_status"))
        if campaign.wave in (None, 1):
            # One direct message per rollout: the requester hears of its first wave; the waves
            # after it are told in the thread only.
            self.dm(campaign, Event.SUBMITTED, then=as_then(campaign, "thingspace_status"))

    def submit_failed(self, campaign: Campaign) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, Event.SUBMIT_FAILED, then=as_then(campaign, "error_code", "error_message"))
        self.dm(campaign, Event.SUBMIT_FAILED)

    def submit_delayed(self, campaign: Campaign, reason: str, retry_in: float) -> None:
        self.reply(campaign, Event.SUBMIT_DELAYED, reason=reason, retry_in=retry_in)

    # --- rollout -----------------------------------------------------------------------------

    def progressed(self, campaign: Campaign) -> None:
        self.refresh_root(campaign)

    def status_changed(self, campaign: Campaign, old: str | None, new: str) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, Event.STATUS_CHANGED, old=old, new=new)

    def devices_failed(self, campaign: Campaign) -> None:
        """New failures: one batched reply per interval, rendered when it goes out."""
        key = f"failures:{campaign.id}"
        last = self.outbox.last_sent_at(key)
        not_before = last + self.update_interval if last else None
        self.outbox.enqueue(OutboxKind.FAILURES, {}, campaign_id=campaign.id, coalesce_key=key, not_before=not_before)
        self.wake()

    def finished(self, campaign: Campaign) -> None:
        self.refresh_root(campaign, now=True)
        if campaign.parent_id is None:
            self._final_report(campaign)
            self.dm(campaign, Event.FINISHED)
            return
        # A wave: its verdict in the thread; the summary and the requester's message come once,
        # across every wave, when the rollout is over.
        self._wave_ended(campaign)
        self._rollout_over(campaign.parent_id)

    def _rollout_over(self, parent_id: int) -> None:
        """When a staged rollout is over (rolled out, or halted with no wave left running): one
        summary across its waves with its CSVs, and, rolled out, the requester's one message
        of its end (a halt was told them when it happened)."""
        parent = self.store.campaign(parent_id)
        if not waves.rollout_over(self.store, parent):
            return
        # Once per end: a halted rollout resumed and then rolled out (or halted again) ends anew.
        stored = waves.plan_of(self.store, parent.id)
        halted_at = stored.halted_at.isoformat() if stored is not None and stored.halted_at else ""
        end = f":{parent.state.value}:{halted_at}"
        if self.outbox.last_sent_at(f"summary:{parent.id}{end}") is not None:
            return  # told already
        self._final_report(parent, end=end)
        if parent.state is CampaignState.ROLLED_OUT:
            self.dm(parent, Event.FINISHED)

    def halted(self, parent: Campaign, wave: Campaign, sentence: str, reasons: Sequence[tuple[str, int]]) -> None:
        """A rollout halted itself: the thread says why, with the failures as they were at the
        halt; the requester and the approvers named in FOTA_APPROVERS get the same words (user
        groups hear it in the approval channel)."""
        facts = {"wave": wave.id, "sentence": sentence, "reasons": [list(r) for r in reasons]}
        self.refresh_root(parent, now=True)
        self.reply(parent, Event.HALTED, **facts)
        people = [parent.requester, *(a for a in self.approvers if a[:1] in ("U", "W") and a != parent.requester)]
        for person in dict.fromkeys(people):
            self.dm(parent, Event.HALTED, user=person, **facts)
        # Halted after its last started wave had ended: the rollout is over now.
        self._rollout_over(parent.id)

    def halted_by(self, parent: Campaign, user: str, reason: str, kind: str) -> None:
        """Someone halted the rollout (*Halt*, `/fota cancel`): who and why, to the same people
        as a halt by threshold (but the one who halted it, who is answered)."""
        self._tell_everyone(parent, Event.HALTED_BY, but=user, by=user, reason=reason, kind=kind)
        # Halted after its last started wave had ended: the rollout is over now.
        self._rollout_over(parent.id)

    def resumed(self, parent: Campaign, user: str, reason: str, next_step: str) -> None:
        self._tell_everyone(parent, Event.RESUMED, but=user, by=user, reason=reason, next_step=next_step)

    def promoted_anyway(self, parent: Campaign, user: str, number: int, sentence: str, reason: str) -> None:
        self.refresh_root(parent, now=True)
        self.reply(parent, Event.PROMOTED_ANYWAY, by=user, number=number, sentence=sentence, reason=reason)

    def auto_promoted(self, parent: Campaign, number: int, sentence: str) -> None:
        self.refresh_root(parent, now=True)
        self.reply(parent, Event.AUTO_PROMOTED, number=number, sentence=sentence)

    def wave_cancelled(self, wave: Campaign, user: str) -> None:
        """A wave sent but not started, cancelled at ThingSpace by a halt."""
        self.refresh_root(wave, now=True)
        self.reply(wave, Event.WAVE_CANCELLED, by=user)

    def _tell_everyone(self, parent: Campaign, event: Event, *, but: str, **facts: Any) -> None:
        """The thread, and a direct message to the requester and each approver named by user ID
        in FOTA_APPROVERS (user groups hear it in the approval channel), but `but`."""
        self.refresh_root(parent, now=True)
        self.reply(parent, event, **facts)
        people = [parent.requester, *(a for a in self.approvers if a[:1] in ("U", "W") and a != parent.requester)]
        for person in dict.fromkeys(people):
            if person != but:
                self.dm(parent, event, user=person, **facts)

    def _wave_ended(self, wave: Campaign) -> None:
        """A wave of a staged rollout ended: passed (the next wave's Promote button), or held.
        The verdict is the one at the wave's end: later callbacks do not rewrite it."""
        assert wave.parent_id is not None
        stored = waves.plan_of(self.store, wave.parent_id)
        if stored is None:
            return
        counts = self.store.device_counts(wave.id)
        figures = WaveFigures(sum(counts.values()), counts["succeeded"], counts["failed"])
        judgement = judge(stored.plan, figures, ended=True)
        passed = judgement.verdict is Verdict.PASSED and not stored.halted
        ready = promotable_at(self.clock(), stored.plan) if stored.plan.soak else None
        self.reply(
            wave,
            Event.WAVE_ENDED,
            sentence=judgement.sentence(),
            passed=passed,
            ready_at=f"{ready:%Y-%m-%d %H:%M} UTC" if ready is not None else None,
            halted=stored.halted,
            failed=counts["failed"],
        )

    def lost(self, campaign: Campaign) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, Event.LOST)
        self.dm(campaign, Event.LOST)

    def _final_report(self, campaign: Campaign, *, end: str = "") -> None:
        """The end of a campaign at ThingSpace: a summary reply, the per-device CSV, and one CSV
        of the failed devices per failure reason (the reasons past the summary's list in one)."""
        self.outbox.enqueue(
            OutboxKind.SUMMARY, {}, campaign_id=campaign.id, coalesce_key=f"summary:{campaign.id}{end}"
        )
        self.outbox.enqueue(OutboxKind.UPLOAD, {}, campaign_id=campaign.id, coalesce_key=f"upload:{campaign.id}")
        staged = waves.plan_of(self.store, campaign.id) is not None
        found = waves.rollout_failure_reasons(self.store, campaign.id) if staged else self.store.failure_reasons(campaign.id)
        reasons = [r for r, _ in found]
        groups = [[r] for r in reasons[:FAILURE_REASONS_LISTED]]
        if reasons[FAILURE_REASONS_LISTED:]:
            groups.append(reasons[FAILURE_REASONS_LISTED:])
        for n, group in enumerate(groups, 1):
            self.outbox.enqueue(
                OutboxKind.UPLOAD,
                {"reasons": group, "part": n},
                campaign_id=campaign.id,
                coalesce_key=f"upload:{campaign.id}:failed:{n}",
            )
        self.wake()

    def cancelled(self, campaign: Campaign, user: str) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, Event.CANCELLED, by=user)
        if campaign.parent_id is not None:
            self._rollout_over(campaign.parent_id)  # a wave: reported with the rollout's end
        else:
            self._final_report(campaign)
        if user != campaign.requester:
            # An approver cancelled it: the requester hears of every outcome of their request.
            self.dm(campaign, Event.CANCELLED, by=user)

    def cancel_refused(self, campaign: Campaign, code: str, message: str) -> None:
        self.reply(campaign, Event.CANCEL_REFUSED, error_code=code, error_message=message)

    # --- retries (RetryEvents) ---------------------------------------------------------------

    def retry_requested(self, origin: Campaign, campaign: Campaign, user: str, failed: int) -> None:
        """The original's thread is told that its failed devices were asked for again."""
        self.reply(origin, Event.RETRY_REQUESTED, retry=campaign.id, by=user, failed=failed)

    # --- pre-flight (PreflightEvents) --------------------------------------------------------

    def preflight_updated(self, campaign: Campaign) -> None:
        # Findings landed (or the checks failed, or run again): the card approvers decide on
        # changed, so it is edited at once, not after the progress throttle.
        self.refresh_root(campaign, now=True)

    def narrowed(self, campaign: Campaign, user: str, narrowed: Narrowed) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(
            campaign,
            Event.NARROWED,
            by=user,
            kept=narrowed.kept,
            dropped=narrowed.dropped,
            superseded=list(narrowed.superseded),
            then=as_then(campaign, "content_hash", "device_count"),
        )

    def overridden(
        self, campaign: Campaign, user: str, overridden: Overridden, reason: str
    ) -> None:
        self.refresh_root(campaign, now=True)
        superseded = [
            d.user
            for d in self.store.decisions(campaign.id)
            if d.decision == "approve" and d.user != user and d.content_hash == overridden.old_hash
        ]
        self.reply(
            campaign,
            Event.OVERRIDDEN,
            by=user,
            included=overridden.included,
            done=overridden.done,
            reason=reason,
            superseded=superseded,
            then=as_then(campaign, "content_hash", "device_count"),
        )

