"""Whether a wave passed, is still running, missed `success`, or crossed `halt` (pure).

The one judgement behind the thread's "wave 2 passed", the promotion click's re-check and the
halt: the same figures always give the same verdict, whoever asks.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from storage.plan import WHOLE, RolloutPlan
from storage.waves import WaveTally


class Verdict(StrEnum):
    RUNNING = "running"  # not ended, under the halt threshold
    PASSED = "passed"  # ended with at least `success` of its devices succeeded
    MISSED = "missed"  # ended under `success`: the rollout waits for a decision
    HALT = "halt"  # failures reached the halt threshold: the rollout stops at once


@dataclass(frozen=True)
class WaveFigures:
    size: int
    succeeded: int
    failed: int

    @property
    def open(self) -> int:
        return max(0, self.size - self.succeeded - self.failed)


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    figures: WaveFigures
    needed: int  # successes for `success`
    halt_at: int  # failures that halt

    def sentence(self) -> str:
        """'9 of 10 succeeded, 1 failed (10 needed to pass)'."""
        f = self.figures
        return f"{f.succeeded:,} of {f.size:,} succeeded, {f.failed:,} failed ({self.needed:,} needed to pass)"


def judge(plan: RolloutPlan, figures: WaveFigures, *, ended: bool) -> Judgement:
    """The verdict on one wave. `ended`: ThingSpace ended its campaign (a re-read confirmed it)."""
    needed = -(-figures.size * plan.success // WHOLE)
    halt_at = plan.halt.failures_that_halt(figures.size, plan.success)
    if figures.failed >= halt_at:
        verdict = Verdict.HALT
    elif not ended:
        verdict = Verdict.RUNNING
    elif figures.succeeded >= needed:
        verdict = Verdict.PASSED
    else:
        verdict = Verdict.MISSED
    return Judgement(verdict, figures, needed, halt_at)


def promotable_at(ended_at: dt.datetime, plan: RolloutPlan) -> dt.datetime:
    """When the next wave may start: the soak after the wave before ended."""
    return ended_at + plan.soak



def wave_states(plan: RolloutPlan, tallies: Sequence[WaveTally]) -> dict[int, tuple[str, int, int]]:
    """What the row of waves shows for each started wave: (state, succeeded, size), state
    `running`, `done` (ended and passed) or `held` (ended under `success`)."""
    states: dict[int, tuple[str, int, int]] = {}
    for wave in tallies:
        if wave.campaign is None:
            continue
        size = sum(wave.counts.values())
        succeeded = wave.counts.get("succeeded", 0)
        if not wave.campaign.state.is_terminal:
            states[wave.number] = ("running", succeeded, size)
            continue
        figures = WaveFigures(size, succeeded, wave.counts.get("failed", 0))
        passed = judge(plan, figures, ended=True).verdict is Verdict.PASSED
        states[wave.number] = ("done" if passed else "held", succeeded, size)
    return states
