"""A staged rollout's plan: the thresholds the requester chose and the devices of each wave.

A plan is what one approval approves: its thresholds and every wave's devices are bound into
the request's content hash (`RolloutPlan.to_json` and `WaveAssignment.to_json` are the exact
fields hashed), so a click on a card that showed another plan is refused like any stale click.

Shares are kept in basis points (5 % is 500, 2.5 % is 250): integers, so the JSON hashed and the
arithmetic that sizes waves are exact and the same on every machine.

The record types are shared by `commands.plan` (which parses the keys into them),
`bot.workflow.planner` (which assigns devices to waves) and the card (which renders them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

WHOLE = 10_000  # 100 % in basis points
DEFAULT_SUCCESS = 9_500  # a wave passes when 95 % of its devices succeeded


class Promote(StrEnum):
    MANUAL = "manual"  # an approver clicks Promote
    AUTO = "auto"  # the bot promotes a wave that passed, once its soak is over


def percent_text(basis_points: int) -> str:
    """500 -> '5%', 250 -> '2.5%', 1 -> '0.01%'."""
    whole, part = divmod(basis_points, 100)
    return f"{whole}%" if part == 0 else f"{whole}.{part:02d}".rstrip("0") + "%"


def duration_text(delta: dt.timedelta) -> str:
    """A soak as the user typed it: 2h, 90m, 1d, 0."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Halt:
    """When a running wave halts the rollout: a share of its devices failed, or a count.

    Neither given: the rollout halts as soon as the wave can no longer reach `success`, so a
    wave that is bound to fail stops before it fails any more devices.
    """

    basis_points: int | None = None
    count: int | None = None

    def failures_that_halt(self, wave_size: int, success: int) -> int:
        """How many failed devices of a wave of `wave_size` halt the rollout (at least 1)."""
        if self.count is not None:
            return max(1, self.count)
        if self.basis_points is not None:
            return max(1, -(-wave_size * self.basis_points // WHOLE))
        # The smallest failure count that makes success impossible.
        allowed = wave_size - -(-wave_size * success // WHOLE)
        return allowed + 1

    def __str__(self) -> str:
        if self.count is not None:
            return f"{self.count} device{'s' if self.count != 1 else ''}"
        if self.basis_points is not None:
            return percent_text(self.basis_points)
        return "when success can no longer be reached"


@dataclass(frozen=True)
class RolloutPlan:
    """The requester's choices. The default (no key given) is one wave, exactly as always."""

    canary: int = 0  # devices in a first wave of their own; 0: no canary
    waves: tuple[int, ...] = (WHOLE,)  # cumulative shares after the canary; the last is 100 %
    success: int = DEFAULT_SUCCESS
    halt: Halt = Halt()
    soak: dt.timedelta = dt.timedelta(0)
    promote: Promote = Promote.MANUAL

    @property
    def staged(self) -> bool:
        """More than one wave could come of it: a canary, or shares before 100 %."""
        return self.canary > 0 or len(self.waves) > 1

    def to_json(self) -> dict[str, Any]:
        return {
            "canary": self.canary,
            "waves": list(self.waves),
            "success": self.success,
            "halt": {"basis_points": self.halt.basis_points, "count": self.halt.count},
            "soak_seconds": int(self.soak.total_seconds()),
            "promote": self.promote.value,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RolloutPlan:
        halt = data.get("halt") or {}
        return cls(
            canary=int(data["canary"]),
            waves=tuple(int(w) for w in data["waves"]),
            success=int(data["success"]),
            halt=Halt(
                basis_points=None if halt.get("basis_points") is None else int(halt["basis_points"]),
                count=None if halt.get("count") is None else int(halt["count"]),
            ),
            soak=dt.timedelta(seconds=int(data["soak_seconds"])),
            promote=Promote(data["promote"]),
        )

    def describe(self) -> str:
        """One line for the card: canary 10 · 5%, 25%, 100% · success 95% · halt 5% · soak 2h · manual."""
        parts = []
        if self.canary:
            parts.append(f"canary {self.canary:,}")
        parts.append(", ".join(percent_text(w) for w in self.waves))
        parts.append(f"success {percent_text(self.success)}")
        parts.append(f"halt {self.halt}")
        if self.soak:
            parts.append(f"soak {duration_text(self.soak)}")
        parts.append(f"promote {self.promote.value}")
        return " · ".join(parts)


@dataclass(frozen=True)
class DeviceFacts:
    """What the planner needs of an eligible device: the group it spreads the canary over."""

    imei: str
    make: str
    model: str
    firmware: str

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.make, self.model, self.firmware)


@dataclass(frozen=True)
class WaveAssignment:
    """One wave of a plan: its number, what it stands for, its devices and its blast radius."""

    number: int  # 1-based
    label: str  # "canary" or the cumulative share it reaches, e.g. "25%"
    devices: tuple[str, ...]
    # (make, model, firmware, devices), largest first: what this wave puts at risk.
    radius: tuple[tuple[str, str, str, int], ...]

    @property
    def size(self) -> int:
        return len(self.devices)

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "label": self.label,
            "devices": list(self.devices),
            "radius": [list(r) for r in self.radius],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WaveAssignment:
        return cls(
            number=int(data["number"]),
            label=str(data["label"]),
            devices=tuple(str(d) for d in data["devices"]),
            radius=tuple((str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in data["radius"]),
        )


def plan_fields(plan: RolloutPlan, waves: Sequence[WaveAssignment]) -> dict[str, Any]:
    """The plan as it is bound into the content hash: thresholds and every wave's devices."""
    return {"plan": plan.to_json(), "waves": [w.to_json() for w in waves]}
