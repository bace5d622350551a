"""Typed campaign requests produced by the command parser and the schedule modal.

Both entry points (slash-command text and modal submission) produce the same
`ScheduleRequest` for the same input, or raise one `RequestError` carrying every
problem found, each naming the key, the value and the rule.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from storage.plan import RolloutPlan

PROTOCOLS = ("LWM2M", "OMA", "HTTP")


@dataclass(frozen=True)
class TimeWindow:
    """One entry of ThingSpace's campaignTimeWindowList, hours in UTC."""

    start_hour: int  # 0..23
    end_hour: int  # 1..24, at least 4 hours after start_hour

    def as_thingspace(self) -> dict[str, int]:
        return {"startTime": self.start_hour, "endTime": self.end_hour}

    def __str__(self) -> str:
        return f"{self.start_hour:02d}:00–{self.end_hour:02d}:00 UTC"


@dataclass(frozen=True)
class ScheduleRequest:
    """A validated campaign request, not yet checked against ThingSpace.

    `firmware_from`/`firmware_to` may be None: the service fills them from the
    account's firmware list when `firmware` names exactly one entry there.
    """

    firmware: str
    firmware_from: str | None
    firmware_to: str | None
    protocol: str
    start_date: dt.date
    end_date: dt.date
    windows: tuple[TimeWindow, ...]
    devices: tuple[str, ...]
    name: str | None = None
    account: str | None = None
    # licence=auto: ThingSpace may assign free FOTA licences to unlicensed devices
    # (autoAssignLicenseFlag). Off by default.
    licence_auto: bool = False
    # A staged rollout (canary, waves, …); None: one campaign, all devices at once.
    plan: RolloutPlan | None = None
    # Things the user should know that are not errors ("2 duplicate IMEIs dropped").
    notes: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: which key, what was given, which rule it broke."""

    key: str
    value: str
    rule: str
    # How the user typed it: a `key=value` pair, or words of a command (`/fota status abc`).
    typed_as: str = "pair"

    def __str__(self) -> str:
        shown = self.value if len(self.value) <= 60 else self.value[:57] + "..."
        if self.typed_as == "words":
            typed = " ".join(part for part in ("/fota", self.key if self.key != "command" else "", shown) if part)
            return f"`{typed}`: {self.rule}"
        if shown:
            return f"`{self.key}={shown}`: {self.rule}"
        return f"`{self.key}`: {self.rule}"


class RequestError(Exception):
    """Every problem with a request, all at once. Its message is what the user reads."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]):
        self.problems = tuple(problems)
        super().__init__(self.message())

    def message(self) -> str:
        count = len(self.problems)
        head = "That request has a problem:" if count == 1 else f"That request has {count} problems:"
        return "\n".join([head, *(f"• {p}" for p in self.problems)])

    def by_key(self) -> dict[str, str]:
        """Problems grouped by key, joined, for `response_action: errors` in the modal."""
        grouped: dict[str, list[str]] = {}
        for p in self.problems:
            grouped.setdefault(p.key, []).append(str(p))
        return {k: " ".join(v) for k, v in grouped.items()}
