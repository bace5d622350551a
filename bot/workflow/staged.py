"""Staged rollouts carried out: wave 1 on approval, each later wave on an approver's promotion.

Every wave is started by `storage.waves.start_wave` (one transaction: the wave's campaign and
who started it) and then sent by `Submitter.submit`, through the same guard as every campaign;
a crash between the two leaves an approved campaign that start-up resumes, and a second click
or a retry finds the wave already started. So each wave reaches ThingSpace once.

A promotion is checked again at the click, from the record: the clicker is an approver and
not the requester, the wave before ended and passed `success` by its figures now, and its soak
is over. Anything else is refused with the figures, and nothing changes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from bot.background import Background
from bot.workflow.approvers import Directory
from bot.workflow.errors import UserError
from bot.workflow.submission import Submitter
from bot.workflow.wave_figures import Judgement, Verdict, WaveFigures, judge, promotable_at
from storage import waves
from storage.model import Campaign, WaveRefused, ref_for
from storage.store import Store

log = logging.getLogger("bot.staged")


class StagedEvents(Protocol):
    def halted(
        self, parent: Campaign, wave: Campaign, sentence: str, reasons: Sequence[tuple[str, int]]
    ) -> None: ...


class _Silent:
    def halted(
        self, parent: Campaign, wave: Campaign, sentence: str, reasons: Sequence[tuple[str, int]]
    ) -> None:
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
    ):
        self.events: StagedEvents = events or _Silent()
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
        if stored is None or stored.halted:
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

    async def promote(self, parent_id: int, number: int, *, user: str) -> str:
        """An approver starts wave `number`; the sentence for them, or UserError (nothing changed)."""
        parent = self.store.campaign(parent_id)
        if user == parent.requester:
            raise UserError(
                f"You requested {parent.ref}, so you cannot promote it; an approver must. Nothing changed."
            )
        if not await self.directory.may_approve(user):
            raise UserError(f"Only approvers can promote {parent.ref}. Nothing changed.")
        stored = waves.plan_of(self.store, parent_id)
        if stored is None:
            raise UserError(f"{parent.ref} is not a staged rollout. Nothing changed.")
        if stored.halted:
            raise UserError(
                f"{parent.ref} was halted ({stored.halt_reason or 'no reason recorded'}); no further wave "
                "is sent. Nothing changed."
            )
        if number < 2 or number > len(stored.waves):
            raise UserError(f"{parent.ref} has no wave {number} to promote to. Nothing changed.")
        target = stored.wave(number)
        if target.campaign_id is not None:
            return f"Wave {number} of {parent.ref} was already started by {self._who(target.promoted_by)}."
        judgement = self.judgement(parent_id, number - 1)
        if judgement is None:
            raise UserError(f"Wave {number - 1} of {parent.ref} has not started yet. Nothing changed.")
        if judgement.verdict is not Verdict.PASSED:
            state = {
                Verdict.RUNNING: "has not ended yet",
                Verdict.MISSED: "missed its success threshold",
                Verdict.HALT: "failed on too many devices to pass",
            }[judgement.verdict]
            raise UserError(
                f"Wave {number - 1} of {parent.ref} {state}: {judgement.sentence()}. Nothing changed."
            )
        before = stored.wave(number - 1)
        assert before.campaign_id is not None
        ended = waves.ended_at(self.store, before.campaign_id)
        if ended is not None:
            ready = promotable_at(ended, stored.plan)
            if self.clock() < ready:
                raise UserError(
                    f"Wave {number - 1} of {parent.ref} is soaking until {ready:%Y-%m-%d %H:%M} UTC; "
                    "it can be promoted then. Nothing changed."
                )
        try:
            child = waves.start_wave(self.store, parent_id, number, by=user, reason="promoted")
        except WaveRefused as exc:
            raise UserError(f"{exc}. Nothing changed.") from exc
        self._send(child)
        log.info("%s promoted to wave %d by %s", parent.ref, number, user)
        return (
            f"You promoted {parent.ref} to wave {number} of {len(stored.waves)} "
            f"({target.label}, {target.size:,} devices); it is being sent to ThingSpace now."
        )

    def _send(self, child: Campaign) -> None:
        parent = ref_for(child.parent_id or child.id)
        self.background.spawn(self.submitter.submit(child.id), name=f"submit {parent} wave {child.wave}")

    @staticmethod
    def _who(user: str | None) -> str:
        return "fota-bot" if user in (None, "fota-bot") else f"<@{user}>"
