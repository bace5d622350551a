"""The staged-rollout keys -> a RolloutPlan, with every problem at once (pure).

`canary=10 waves=5%,25%,100% success=95% halt=5% soak=2h promote=manual`. None of them given:
no plan, the request is one wave exactly as before. Every problem names the key, the value
and the rule, like every other schedule key's.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from storage.model import Problem
from storage.plan import DEFAULT_SUCCESS, WHOLE, Halt, Promote, RolloutPlan, percent_text

PLAN_KEYS = ("canary", "waves", "success", "halt", "soak", "promote")
MAX_WAVES = 10  # past this, a wave is a few devices and the approvers' clicks are the rollout
MAX_SOAK = dt.timedelta(days=7)  # ThingSpace campaigns run days, not weeks; a longer soak is a typo

_PERCENT = re.compile(r"^(\d{1,3})(?:\.(\d{1,2}))?\s*%$", re.ASCII)
_COUNT = re.compile(r"^\d{1,7}$", re.ASCII)
_SOAK = re.compile(r"^(\d{1,4})\s*([mhd])$", re.ASCII | re.IGNORECASE)
_UNIT = {"m": 60, "h": 3_600, "d": 86_400}

_PERCENT_RULE = "must be a share such as `5%` or `2.5%` (at most two decimals)"


def _basis_points(text: str) -> int | None:
    m = _PERCENT.match(text.strip())
    if not m:
        return None
    return int(m.group(1)) * 100 + int((m.group(2) or "0").ljust(2, "0"))


def _canary(value: str, max_devices: int) -> tuple[int, Problem | None]:
    if not _COUNT.match(value):
        return 0, Problem("canary", value, "must be a number of devices, e.g. `canary=10`")
    count = int(value)
    if count < 1 or count > max_devices:
        return 0, Problem("canary", value, f"must be between 1 and {max_devices:,} devices")
    return count, None


def _waves(value: str) -> tuple[tuple[int, ...], list[Problem]]:
    parts = [p.strip() for p in value.split(",")]
    shares: list[int] = []
    problems: list[Problem] = []
    for part in parts:
        share = _basis_points(part)
        if share is None:
            problems.append(
                Problem("waves", part or value, f"{_PERCENT_RULE}; write cumulative shares, e.g. `waves=5%,25%,100%`")
            )
        elif share == 0 or share > WHOLE:
            problems.append(Problem("waves", part, "must be more than 0% and at most 100%"))
        else:
            shares.append(share)
    if problems:
        return (), problems
    if len(shares) > MAX_WAVES:
        problems.append(Problem("waves", value, f"has {len(shares)} waves; at most {MAX_WAVES}"))
    if any(b <= a for a, b in zip(shares, shares[1:], strict=False)):
        problems.append(
            Problem("waves", value, "must grow from wave to wave: each share is the total reached so far, e.g. `5%,25%,100%`")
        )
    if shares[-1] != WHOLE:
        problems.append(
            Problem("waves", value, f"must end at 100% (it ends at {percent_text(shares[-1])}), so every device is reached")
        )
    return tuple(shares), problems


def _success(value: str) -> tuple[int, Problem | None]:
    share = _basis_points(value)
    if share is None:
        return 0, Problem("success", value, f"{_PERCENT_RULE}, e.g. `success=95%`")
    if share == 0 or share > WHOLE:
        return 0, Problem("success", value, "must be more than 0% and at most 100%")
    return share, None


def _halt(value: str, max_devices: int) -> tuple[Halt, Problem | None]:
    if _COUNT.match(value):
        count = int(value)
        if count < 1 or count > max_devices:
            return Halt(), Problem("halt", value, f"must be between 1 and {max_devices:,} failed devices")
        return Halt(count=count), None
    share = _basis_points(value)
    if share is None:
        return Halt(), Problem(
            "halt", value, "must be a share of a wave's devices (`halt=5%`) or a number of devices (`halt=3`)"
        )
    if share == 0 or share > WHOLE:
        return Halt(), Problem("halt", value, "must be more than 0% and at most 100%")
    return Halt(basis_points=share), None


def _soak(value: str) -> tuple[dt.timedelta, Problem | None]:
    if value.strip() == "0":
        return dt.timedelta(0), None
    m = _SOAK.match(value.strip())
    if not m:
        return dt.timedelta(0), Problem(
            "soak", value, "must be a time such as `30m`, `2h` or `1d` (or `0`) after a wave ends"
        )
    soak = dt.timedelta(seconds=int(m.group(1)) * _UNIT[m.group(2).lower()])
    if soak > MAX_SOAK:
        return dt.timedelta(0), Problem("soak", value, "must be at most 7 days")
    return soak, None


def check_plan_fields(
    fields: Mapping[str, str], *, max_devices: int
) -> tuple[RolloutPlan | None, list[Problem]]:
    """The plan the keys describe (None when none is given) and every problem with them.

    `fields` are the schedule keys, lower-cased, values stripped; empty means left out.
    """
    given = {k: fields[k].strip() for k in PLAN_KEYS if (fields.get(k) or "").strip()}
    if not given:
        return None, []
    problems: list[Problem] = []
    canary = 0
    waves: tuple[int, ...] = (WHOLE,)
    success = DEFAULT_SUCCESS
    halt = Halt()
    soak = dt.timedelta(0)
    promote = Promote.MANUAL
    if "canary" in given:
        canary, problem = _canary(given["canary"], max_devices)
        problems += [problem] if problem else []
    if "waves" in given:
        parsed, more = _waves(given["waves"])
        problems += more
        waves = parsed or waves
    if "success" in given:
        success, problem = _success(given["success"])
        problems += [problem] if problem else []
    if "halt" in given:
        halt, problem = _halt(given["halt"], max_devices)
        problems += [problem] if problem else []
    if "soak" in given:
        soak, problem = _soak(given["soak"])
        problems += [problem] if problem else []
    if "promote" in given:
        word = given["promote"].lower()
        if word in (p.value for p in Promote):
            promote = Promote(word)
        else:
            problems.append(Problem("promote", given["promote"], "must be `manual` (an approver clicks) or `auto`"))
    staged = "canary" in given or len(waves) > 1 or ("waves" in given and len(given["waves"].split(",")) > 1)
    if not staged:
        for key in given:
            if key not in ("canary", "waves"):
                problems.append(
                    Problem(
                        key,
                        given[key],
                        "applies to a staged rollout only; add `canary=N` or `waves=5%,25%,100%`",
                    )
                )
    if problems:
        return None, problems
    if not staged:
        return None, []  # `waves=100%` alone: one wave, as without the key
    return (
        RolloutPlan(canary=canary, waves=waves, success=success, halt=halt, soak=soak, promote=promote),
        [],
    )
