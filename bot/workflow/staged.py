"""Staged rollouts carried out: wave 1 on approval, each later wave on an approver's promotion.

Every wave is started by `storage.waves.start_wave` (one transaction: the wave's campaign and
who started it) and then sent by `Submitter.submit`, through the same guard as every campaign;
a crash between the two leaves an approved campaign that start-up resumes, and a second click
or a retry finds the wave already started. So each wave reaches ThingSpace once.

A promotion is checked again at the click, from the record: the clicker is an approver and
not the requester, the wave before ended and passed `success` by its figures now, and its soak
is over. Anything else is refused with the figures, and nothing changes. A wave that ended
under `success` holds the rollout for a decision: *Promote anyway* (an approver, not the
requester, with a reason, the figures checked again) or *Halt*. A plan with `promote=auto` is
promoted by the bot itself (`tick`, on the scheduler) once a wave passed and soaked.

A halt (a wave crossing `halt`, an approver's *Halt*, `/fota cancel`) is immediate: no wave
starts after it, a wave started but not yet sent is never sent, and a wave sent to ThingSpace
but not started there is cancelled there (`DELETE`; a refusal is shown word for word). Only an
approver other than the requester resumes a halted rollout, with a reason; the resume sends
nothing by itself: the next wave goes by a promotion as always.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from bot.background import Background
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.errors import ThingSpaceError, ThingSpaceRejected
from bot.workflow.approvers import Directory
from bot.workflow.errors import UserError
from bot.workflow.submission import Submitter
from bot.workflow.wave_figures import Judgement, Verdict, WaveFigures, judge, promotable_at
from storage import waves
from storage.model import Campaign, WaveRefused, ref_for
from storage.plan import Promote
from storage.states import CampaignState
from storage.store import Store

S = CampaignState
# Longest reason kept for a decision: it is quoted in the thread, the card and direct messages.
MAX_REASON = 2000

log = logging.getLogger("bot.staged")


class StagedEvents(Protocol):
    def halted(
        self, parent: Campaign, wave: Campaign, sentence: str, reasons: Sequence[tuple[str, int]]
    ) -> None: ...

    def halted_by(self, parent: Campaign, user: str, reason: str, kind: str) -> None: ...

    def resumed(self, parent: Campaign, user: str, reason: str, next_step: str) -> None: ...

    def promoted_anyway(self, parent: Campaign, user: str, number: int, sentence: str, reason: str) -> None: ...

    def auto_promoted(self, parent: Campaign, number: int, sentence: str) -> None: ...

    def wave_cancelled(self, wave: Campaign, user: str) -> None: ...

    def cancel_refused(self, campaign: Campaign, code: str, message: str) -> None: ...


class _Silent:
    def halted(
        self, parent: Campaign, wave: Campaign, sentence: str, reasons: Sequence[tuple[str, int]]
    ) -> None:
        return None

    def halted_by(self, parent: Campaign, user: str, reason: str, kind: str) -> None:
        return None

    def resumed(self, parent: Campaign, user: str, reason: str, next_step: str) -> None:
        return None

    def promoted_anyway(self, parent: Campaign, user: str, number: int, sentence: str, reason: str) -> None:
        return None

    def auto_promoted(self, parent: Campaign, number: int, sentence: str) -> None:
        return None

    def wave_cancelled(self, wave: Campaign, user: str) -> None:
        return None

    def cancel_refused(self, campaign: Campaign, code: str, message: str) -> None:
        return None


class StagedRollouts:
    def __init__(
        self,
        *,
        store: Store,
        submitter: Submitter,
        directory: Directory,
        background: Background,
        clock: Callable[[], dt.datetime],
        events: StagedEvents | None = None,
        thingspace: ThingSpaceClient | None = None,
        approvers_configured: bool = True,
    ):
        self.events: StagedEvents = events or _Silent()
        self.thingspace = thingspace
        # With FOTA_APPROVERS unset everybody "may approve"; that must not let anybody halt.
        self.approvers_configured = approvers_configured
        self.store = store
        self.submitter = submitter
        self.directory = directory
        self.background = background
        self.clock = clock

    def planned(self, campaign_id: int) -> bool:
        return waves.plan_of(self.store, campaign_id) is not None

    def check_halt(self, wave: Campaign) -> bool:
        """Halt the rollout at once when `wave` crossed its halt threshold; True when it did now.

        Called as failures are recorded. Waves not yet sent are never sent (the guard refuses
        them); the thread, the requester and the approvers are told why, with the reasons.
        """
        if wave.parent_id is None:
            return False
        stored = waves.plan_of(self.store, wave.parent_id)
        if stored is None or stored.halted or (wave.wave or 0) <= stored.halt_waived_through:
            return False
        judgement = judge(stored.plan, self.figures(wave.id), ended=wave.state.is_terminal)
        if judgement.verdict is not Verdict.HALT:
            return False
        reason = f"{wave.ref} crossed the halt threshold: {judgement.sentence()}"
        with self.store.atomic():
            if not waves.halt(self.store, wave.parent_id, by="fota-bot", reason=reason):
                return False
            parent = self.store.campaign(wave.parent_id)
            self.events.halted(parent, wave, judgement.sentence(), self.store.failure_reasons(wave.id))
        log.warning("%s halted: %s", parent.ref, reason)
        # Called inside the transaction that recorded the failures: the DELETE goes after it.
        self.background.spawn(self.cancel_unstarted(parent.id, by="fota-bot"), name=f"halt {parent.ref}")
        return True

    def start(self, parent_id: int) -> Campaign | None:
        """The plan was approved: start wave 1 and send it (in the background).

        Refused (the request changed since its plan was bound, or was halted): nothing is
        sent, and the reason is logged; the guard would refuse the wave anyway.
        """
        try:
            child = waves.start_wave(self.store, parent_id, 1, by="fota-bot", reason="the plan was approved")
        except WaveRefused as exc:
            log.error("%s: wave 1 not started: %s", ref_for(parent_id), exc)
            return None
        self._send(child)
        return child

    def resume_all(self) -> None:
        """At start-up: a plan approved just before a crash gets its first wave (once)."""
        for parent_id in waves.approved_without_first_wave(self.store):
            log.info("%s: starting wave 1 after a restart", ref_for(parent_id))
            self.start(parent_id)

    def figures(self, campaign_id: int) -> WaveFigures:
        counts = self.store.device_counts(campaign_id)
        return WaveFigures(
            size=sum(counts.values()), succeeded=counts["succeeded"], failed=counts["failed"]
        )

    def judgement(self, parent_id: int, number: int) -> Judgement | None:
        """The verdict on a started wave, from its figures now; None for a wave not started."""
        stored = waves.plan_of(self.store, parent_id)
        if stored is None:
            return None
        wave = stored.wave(number)
        if wave.campaign_id is None:
            return None
        child = self.store.campaign(wave.campaign_id)
        return judge(stored.plan, self.figures(child.id), ended=child.state.is_terminal)

    async def check_may_decide(self, parent_id: int, user: str, what: str) -> Campaign:
        """An approver other than the requester; UserError (nothing changed) for anyone else."""
        parent = self.store.campaign(parent_id)
        if user == parent.requester:
            raise UserError(
                f"You requested {parent.ref}, so you cannot {what} it; an approver must. Nothing changed."
            )
        if not await self.directory.may_approve(user):
            raise UserError(f"Only approvers can {what} {parent.ref}. Nothing changed.")
        return parent

    async def promote(self, parent_id: int, number: int, *, user: str, anyway: str | None = None) -> str:
        """An approver starts wave `number`; the sentence for them, or UserError (nothing changed).

        `anyway`: the reason of a *Promote anyway*: the wave before may then have ended under
        `success` (or crossed `halt`, after a resume); it must still have ended."""
        if anyway is not None:
            anyway = _reason(anyway)
        parent = await self.check_may_decide(parent_id, user, "promote")
        stored = waves.plan_of(self.store, parent_id)
        if stored is None:
            raise UserError(f"{parent.ref} is not a staged rollout. Nothing changed.")
        if stored.halted:
            raise UserError(
                f"{parent.ref} was halted ({stored.halt_reason or 'no reason recorded'}); no further wave "
                "is sent unless an approver resumes it. Nothing changed."
            )
        if number < 2 or number > len(stored.waves):
            raise UserError(f"{parent.ref} has no wave {number} to promote to. Nothing changed.")
        target = stored.wave(number)
        if target.campaign_id is not None:
            return f"Wave {number} of {parent.ref} was already started by {self._who(target.promoted_by)}."
        judgement = self.judgement(parent_id, number - 1)
        if judgement is None:
            raise UserError(f"Wave {number - 1} of {parent.ref} has not started yet. Nothing changed.")
        before = stored.wave(number - 1)
        assert before.campaign_id is not None
        wave_before = self.store.campaign(before.campaign_id)
        passed = judgement.verdict is Verdict.PASSED
        if not wave_before.state.is_terminal:
            raise UserError(
                f"Wave {number - 1} of {parent.ref} has not ended yet: {judgement.sentence()}. Nothing changed."
            )
        if not passed and anyway is None:
            state = {
                Verdict.MISSED: "missed its success threshold",
                Verdict.HALT: "failed on too many devices to pass",
            }.get(judgement.verdict, "did not pass")
            raise UserError(
                f"Wave {number - 1} of {parent.ref} {state}: {judgement.sentence()}. Only *Promote anyway…* "
                "(with a reason) goes on from here. Nothing changed."
            )
        ended = waves.ended_at(self.store, before.campaign_id)
        if ended is not None:
            ready = promotable_at(ended, stored.plan)
            if self.clock() < ready:
                raise UserError(
                    f"Wave {number - 1} of {parent.ref} is soaking until {ready:%Y-%m-%d %H:%M} UTC; "
                    "it can be promoted then. Nothing changed."
                )
        reason = "promoted" if anyway is None else f"promoted anyway ({judgement.sentence()}): {anyway}"
        try:
            with self.store.atomic():  # the wave and the thread's word of the decision, together
                child = waves.start_wave(self.store, parent_id, number, by=user, reason=reason)
                if anyway is not None:
                    self.events.promoted_anyway(parent, user, number, judgement.sentence(), anyway)
        except WaveRefused as exc:
            raise UserError(f"{exc}. Nothing changed.") from exc
        self._send(child)
        log.info("%s promoted to wave %d by %s%s", parent.ref, number, user, " anyway" if anyway else "")
        return (
            f"You promoted {parent.ref} to wave {number} of {len(stored.waves)} "
            f"({target.label}, {target.size:,} devices){' anyway' if anyway else ''}; it is being sent to "
            "ThingSpace now."
        )

    def promote_anyway_form(self, parent_id: int, number: int) -> tuple[Campaign, str, str]:
        """What the *Promote anyway* form shows: the request, the target wave's title and the
        figures of the wave before; UserError when there is nothing to decide."""
        parent = self.store.campaign(parent_id)
        stored = waves.plan_of(self.store, parent_id)
        if stored is None or number < 2 or number > len(stored.waves):
            raise UserError(f"{parent.ref} has no wave {number} to promote to. Nothing changed.")
        if stored.halted:
            raise UserError(f"{parent.ref} was halted; an approver must resume it first. Nothing changed.")
        target = stored.wave(number)
        if target.campaign_id is not None:
            raise UserError(f"Wave {number} of {parent.ref} was already started by {self._who(target.promoted_by)}.")
        judgement = self.judgement(parent_id, number - 1)
        if judgement is None:
            raise UserError(f"Wave {number - 1} of {parent.ref} has not started yet. Nothing changed.")
        title = f"wave {number}/{len(stored.waves)} ({target.label}, {target.size:,} devices)"
        return parent, title, judgement.sentence()

    # --- halting and resuming --------------------------------------------------------------------

    async def check_may_halt(self, parent_id: int, user: str) -> tuple[Campaign, waves.StoredPlan]:
        """The requester or an approver may halt (stopping is the safe direction, as with
        `/fota cancel`); UserError for anyone else, or a rollout that is not going on."""
        parent = self.store.campaign(parent_id)
        stored = waves.plan_of(self.store, parent_id)
        if stored is None:
            raise UserError(f"{parent.ref} is not a staged rollout. Nothing changed.")
        if user != parent.requester and not (self.approvers_configured and await self.directory.may_approve(user)):
            raise UserError(
                f"Only the requester (<@{parent.requester}>) or an approver may halt {parent.ref}. Nothing changed."
            )
        if stored.halted:
            raise UserError(
                f"{parent.ref} was already halted by {self._who(stored.halted_by)}: "
                f"{stored.halt_reason or 'no reason recorded'}. Nothing changed."
            )
        if parent.state is not S.ROLLING_OUT:
            raise UserError(f"{parent.ref} is {parent.state.value.replace('_', ' ')}: there is no rollout to halt.")
        return parent, stored

    def unstarted_refs(self, parent_id: int) -> list[str]:
        return [self.store.campaign(c).ref for c in waves.live_waves(self.store, parent_id)]

    async def halt(self, parent_id: int, *, user: str, reason: str, kind: str = "halt", wait: bool = False) -> str:
        """Halt at once, by a person: nothing further is sent, and every wave at ThingSpace that
        has not started is cancelled there (`kind="cancel"`, `/fota cancel`: every live wave,
        started or not; ThingSpace decides). The sentence for them, or UserError.

        The halt is recorded before anything else; the DELETEs follow, in the background unless
        `wait` (a form must be answered within Slack's 3 seconds; the thread shows the outcome)."""
        reason = _reason(reason)
        parent, _ = await self.check_may_halt(parent_id, user)
        with self.store.atomic():  # the halt and the thread's word of it, together
            if not waves.halt(self.store, parent_id, by=user, reason=f"halted by {user}: {reason}"):
                stored = waves.plan_of(self.store, parent_id)
                assert stored is not None
                raise UserError(
                    f"{parent.ref} was already halted by {self._who(stored.halted_by)}. Nothing changed."
                )
            self.events.halted_by(self.store.campaign(parent_id), user, reason, kind)
        log.warning("%s halted by %s: %s", parent.ref, user, reason)
        said = f"You halted {parent.ref}: no further wave is sent."
        if not wait:
            self.background.spawn(
                self.cancel_unstarted(parent_id, by=user, started_too=kind == "cancel"), name=f"halt {parent.ref}"
            )
            return f"{said} A wave sent to ThingSpace but not started is cancelled there; the thread shows ThingSpace's answer."
        outcomes = await self.cancel_unstarted(parent_id, by=user, started_too=kind == "cancel")
        return " ".join([said, *outcomes])

    async def cancel_unstarted(self, parent_id: int, *, by: str, started_too: bool = False) -> list[str]:
        """DELETE at ThingSpace each wave of a halted request that was sent but has not started
        (`started_too`: each live wave). A refusal is told in the thread word for word and not
        tried again; ThingSpace out of reach is tried again by `tick`. Sentences for the halter."""
        if self.thingspace is None:
            return []
        states = (*waves.NOT_STARTED, S.SCHEDULED) if started_too else waves.NOT_STARTED
        said: list[str] = []
        for wave_id in waves.live_waves(self.store, parent_id, states):
            wave = self.store.campaign(wave_id)
            if self.store.cancel_refusal(wave.id) is not None and not started_too:
                continue
            assert wave.thingspace_id is not None
            try:
                answer = await self.thingspace.cancel_campaign(wave.account, wave.thingspace_id)
                if answer.get("success") is False:
                    # The documented answer is {"success": true}; anything else is not a cancellation.
                    raise ThingSpaceRejected(200, "CANCEL_NOT_CONFIRMED", f"ThingSpace answered {answer}")
            except ThingSpaceRejected as exc:
                with self.store.atomic():
                    self.store.record_cancel_refusal(wave.id, f"{exc.error_code}: {exc.error_message}")
                    self.events.cancel_refused(wave, exc.error_code, exc.error_message)
                said.append(f"ThingSpace refused to cancel {wave.ref}: {exc.error_code}: {exc.error_message}.")
                continue
            except ThingSpaceError as exc:
                log.warning("%s: cancelling after the halt failed (%s); tried again shortly", wave.ref, exc)
                said.append(f"ThingSpace could not be reached to cancel {wave.ref}; fota-bot tries again shortly.")
                continue
            current = self.store.campaign(wave.id)
            if current.state.is_terminal:
                continue  # ThingSpace's callback came first
            with self.store.atomic():
                current = self.store.transition(
                    wave.id, S.CANCELLED, actor=by, reason="cancelled at ThingSpace: the rollout was halted",
                    thingspace_status=S.CANCELLED.value,
                )
                self.events.wave_cancelled(current, by)
            said.append(f"{wave.ref} had not started: it was cancelled at ThingSpace.")
        return said

    def resume_form(self, parent_id: int) -> tuple[Campaign, waves.StoredPlan, str]:
        """What the *Resume* form shows: the request, its halt, and what happens next."""
        parent = self.store.campaign(parent_id)
        stored = waves.plan_of(self.store, parent_id)
        if stored is None or not stored.halted or parent.state is not S.HALTED:
            raise UserError(f"{parent.ref} is not halted: there is nothing to resume. Nothing changed.")
        return parent, stored, self.next_step(stored)

    def next_step(self, stored: waves.StoredPlan) -> str:
        """What happens after a resume, in one sentence."""
        started = [w for w in stored.waves if w.campaign_id is not None]
        if not started:
            return "wave 1 has not started; it starts with the rollout."
        last = started[-1]
        if last.number == len(stored.waves):
            return f"wave {last.number} is the last; the rollout ends with it."
        assert last.campaign_id is not None
        wave = self.store.campaign(last.campaign_id)
        following = stored.wave(last.number + 1)
        title = f"wave {following.number} ({following.label}, {following.size:,} devices)"
        if not wave.state.is_terminal:
            return (
                f"wave {last.number} goes on at ThingSpace and no longer halts the rollout; when it ends, "
                f"{title} is promoted as usual (or *Promote anyway…* if it did not pass)."
            )
        if wave.state is S.CANCELLED or wave.state is S.SUBMIT_FAILED:
            return (
                f"wave {last.number} never reached its devices ({wave.state.value}); they are not sent again. "
                f"{title.capitalize()} can be promoted with *Promote anyway…*."
            )
        return f"{title} can be promoted again (*Promote anyway…* if wave {last.number} did not pass)."

    async def resume(self, parent_id: int, *, user: str, reason: str, halted_at: str | None) -> str:
        """An approver other than the requester resumes a halted rollout, with a reason."""
        reason = _reason(reason)
        parent = await self.check_may_decide(parent_id, user, "resume")
        try:
            with self.store.atomic():  # the decision and the thread's word of it, together
                stored = waves.resume(self.store, parent_id, by=user, reason=reason, halted_at=halted_at)
                step = self.next_step(stored)
                self.events.resumed(self.store.campaign(parent_id), user, reason, step[:1].upper() + step[1:])
        except WaveRefused as exc:
            raise UserError(f"{exc}. Nothing changed.") from exc
        log.warning("%s resumed by %s: %s", parent.ref, user, reason)
        return f"You resumed {parent.ref}: {step}"

    # --- promote=auto ------------------------------------------------------------------------------

    async def tick(self) -> None:
        """On the scheduler (and when a wave ends): promote automatic plans whose wave passed and
        soaked; cancel at ThingSpace what a halt left there unstarted (ThingSpace was out of reach,
        or a wave was still being sent when the halt came)."""
        for parent_id in waves.halted_with_waves_to_cancel(self.store):
            stored = waves.plan_of(self.store, parent_id)
            await self.cancel_unstarted(parent_id, by=(stored.halted_by if stored else None) or "fota-bot")
        for parent_id in waves.rolling_out(self.store):
            self.auto_promote(parent_id)

    def auto_promote(self, parent_id: int) -> Campaign | None:
        """Start the next wave of a `promote=auto` plan if the wave before ended, passed and
        soaked; the started wave (sent in the background), or None. A wave that did not pass
        waits for a person's decision (*Promote anyway…* or *Halt*)."""
        stored = waves.plan_of(self.store, parent_id)
        if stored is None or stored.halted or stored.plan.promote is not Promote.AUTO:
            return None
        started = [w for w in stored.waves if w.campaign_id is not None]
        if not started or started[-1].number == len(stored.waves):
            return None
        last = started[-1]
        assert last.campaign_id is not None
        judgement = self.judgement(parent_id, last.number)
        if judgement is None or judgement.verdict is not Verdict.PASSED:
            return None
        if not self.store.campaign(last.campaign_id).state.is_terminal:
            return None
        ended = waves.ended_at(self.store, last.campaign_id)
        if ended is not None and self.clock() < promotable_at(ended, stored.plan):
            return None
        number = last.number + 1
        reason = f"promoted automatically: wave {last.number} passed ({judgement.sentence()})"
        try:
            with self.store.atomic():  # the wave and the thread's word of it, together
                parent = self.store.campaign(parent_id)
                child = waves.start_wave(self.store, parent_id, number, by="fota-bot", reason=reason)
                self.events.auto_promoted(parent, number, judgement.sentence())
        except WaveRefused as exc:
            log.error("%s: wave %d not promoted automatically: %s", ref_for(parent_id), number, exc)
            return None
        log.info("%s promoted itself to wave %d", ref_for(parent_id), number)
        self._send(child)
        return child

    def wave_ended(self, wave: Campaign) -> None:
        """A wave's campaign ended (called after its end was recorded): an automatic plan goes on
        at once when there is no soak."""
        if wave.parent_id is not None:
            self.auto_promote(wave.parent_id)

    def _send(self, child: Campaign) -> None:
        parent = ref_for(child.parent_id or child.id)
        self.background.spawn(self.submitter.submit(child.id), name=f"submit {parent} wave {child.wave}")

    @staticmethod
    def _who(user: str | None) -> str:
        return "fota-bot" if user in (None, "fota-bot") else f"<@{user}>"


def _reason(text: str) -> str:
    """A decision's reason: required, at most MAX_REASON characters; UserError otherwise."""
    reason = " ".join(text.split())
    if not reason:
        raise UserError("A reason is required for this decision; nothing changed.")
    if len(reason) > MAX_REASON:
        raise UserError(f"The reason is {len(reason):,} characters; at most {MAX_REASON:,} are kept. Nothing changed.")
    return reason
