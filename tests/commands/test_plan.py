"""The rollout plan: its keys (every problem at once) and the planner's assignment of waves."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.workflow.planner import assign
from commands.parse import parse_schedule
from commands.plan import check_plan_fields
from storage.model import RequestError, content_hash
from storage.plan import (
    WHOLE,
    DeviceFacts,
    Halt,
    Promote,
    RolloutPlan,
    WaveAssignment,
    percent_text,
    plan_fields,
)

MAX = 100_000


def _imei(n: int) -> str:
    body = f"35465809{n:06d}"
    digits = [int(c) for c in body]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


def _fleet(groups: list[int]) -> list[DeviceFacts]:
    """`groups[i]` devices of model M{i} (two firmware versions in turn)."""
    devices = []
    n = 0
    for g, size in enumerate(groups):
        for k in range(size):
            devices.append(DeviceFacts(_imei(n), "SEQUANS", f"M{g}", f"SR1.{k % 2}"))
            n += 1
    return devices


# --- the keys ------------------------------------------------------------------------------------


def test_no_plan_key_is_no_plan():
    assert check_plan_fields({"firmware": "x"}, max_devices=MAX) == (None, [])
    assert check_plan_fields({"waves": "100%"}, max_devices=MAX) == (None, [])
    assert check_plan_fields({"canary": "  "}, max_devices=MAX) == (None, [])


def test_every_key_parsed():
    plan, problems = check_plan_fields(
        {
            "canary": "10",
            "waves": "5%, 25%,100%",
            "success": "97.5%",
            "halt": "3",
            "soak": "2h",
            "promote": "AUTO",
        },
        max_devices=MAX,
    )
    assert problems == []
    assert plan == RolloutPlan(
        canary=10,
        waves=(500, 2_500, WHOLE),
        success=9_750,
        halt=Halt(count=3),
        soak=dt.timedelta(hours=2),
        promote=Promote.AUTO,
    )
    assert plan.describe() == "canary 10 · 5%, 25%, 100% · success 97.5% · halt 3 devices · soak 2h · promote auto"
    assert RolloutPlan.from_json(plan.to_json()) == plan


def test_defaults_of_a_staged_plan():
    plan, problems = check_plan_fields({"canary": "5"}, max_devices=MAX)
    assert problems == []
    assert plan == RolloutPlan(canary=5)
    assert plan.staged and plan.promote is Promote.MANUAL and plan.success == 9_500


def test_every_problem_at_once():
    plan, problems = check_plan_fields(
        {
            "canary": "ten",
            "waves": "25%,5%,90%",
            "success": "95",
            "halt": "-2",
            "soak": "2 weeks",
            "promote": "yes",
        },
        max_devices=MAX,
    )
    assert plan is None
    by_key = {p.key: p for p in problems}
    assert set(by_key) == {"canary", "waves", "success", "halt", "soak", "promote"}
    wave_rules = " ".join(p.rule for p in problems if p.key == "waves")
    assert "must grow" in wave_rules and "must end at 100% (it ends at 90%)" in wave_rules
    assert str(by_key["canary"]) == "`canary=ten`: must be a number of devices, e.g. `canary=10`"
    assert str(by_key["promote"]).startswith("`promote=yes`: must be `manual`")


@pytest.mark.parametrize(
    ("fields", "key", "rule"),
    [
        ({"canary": "0"}, "canary", "between 1 and 100,000"),
        ({"canary": "100001"}, "canary", "between 1 and 100,000"),
        ({"waves": "0%,100%"}, "waves", "more than 0%"),
        ({"waves": "50%,150%"}, "waves", "at most 100%"),
        ({"waves": "5%,5%,100%"}, "waves", "must grow"),
        ({"waves": "1.234%,100%"}, "waves", "at most two decimals"),
        ({"waves": ",".join(f"{i}%" for i in range(1, 12)) + ",100%"}, "waves", "at most 10"),
        ({"canary": "3", "success": "0%"}, "success", "more than 0%"),
        ({"canary": "3", "halt": "0%"}, "halt", "more than 0%"),
        ({"canary": "3", "soak": "8d"}, "soak", "at most 7 days"),
        ({"success": "90%"}, "success", "applies to a staged rollout only"),
        ({"waves": "100%", "promote": "auto"}, "promote", "applies to a staged rollout only"),
    ],
)
def test_each_rule(fields, key, rule):
    plan, problems = check_plan_fields(fields, max_devices=MAX)
    assert plan is None
    assert any(p.key == key and rule in p.rule for p in problems), problems


# --- halt thresholds -----------------------------------------------------------------------------


def test_halt_thresholds():
    assert Halt(count=3).failures_that_halt(1_000, 9_500) == 3
    assert Halt(basis_points=500).failures_that_halt(100, 9_500) == 5
    assert Halt(basis_points=500).failures_that_halt(10, 9_500) == 1  # never zero
    # Default: the first failure that makes `success` unreachable.
    assert Halt().failures_that_halt(100, 9_500) == 6
    assert Halt().failures_that_halt(10, 9_500) == 1
    assert Halt().failures_that_halt(100, WHOLE) == 1


# --- the planner -------------------------------------------------------------------------------


def test_four_wave_plan_sizes_and_labels():
    fleet = _fleet([120, 60, 20])
    waves = assign(RolloutPlan(canary=6, waves=(500, 2_500, WHOLE)), fleet)
    assert [(w.number, w.label, w.size) for w in waves] == [
        (1, "canary", 6),
        (2, "5%", 10),  # ceil(194 × 5 %)
        (3, "25%", 39),  # ceil(194 × 25 %) − 10
        (4, "100%", 145),
    ]
    # The canary holds two devices of each of the three models, both firmware versions.
    canary = waves[0]
    assert sorted(r[1] for r in canary.radius) == ["M0", "M0", "M1", "M1", "M2", "M2"]
    assert sum(r[3] for r in canary.radius) == 6


def test_assignment_is_deterministic_and_order_free():
    fleet = _fleet([30, 7, 3])
    plan = RolloutPlan(canary=4, waves=(1_000, 5_000, WHOLE))
    first = assign(plan, fleet)
    assert assign(plan, list(reversed(fleet))) == first
    assert content_hash(plan_fields(plan, first)) == content_hash(plan_fields(plan, assign(plan, fleet)))
    assert [WaveAssignment.from_json(w.to_json()) for w in first] == list(first)


def test_tiny_fleet_drops_empty_waves_and_a_big_canary_is_everything():
    fleet = _fleet([3])
    waves = assign(RolloutPlan(waves=(100, 200, WHOLE)), fleet)
    assert [w.size for w in waves] == [1, 2]  # 1 % and 2 % of 3 both round up to one device
    only = assign(RolloutPlan(canary=50, waves=(500, WHOLE)), fleet)
    assert [(w.label, w.size) for w in only] == [("canary", 3)]
    assert assign(RolloutPlan(canary=2), []) == ()


def test_duplicate_devices_are_refused():
    device = _fleet([1])[0]
    with pytest.raises(ValueError):
        assign(RolloutPlan(canary=1), [device, device])


_shares = st.lists(st.integers(min_value=1, max_value=WHOLE - 1), max_size=5, unique=True).map(
    lambda xs: (*sorted(xs), WHOLE)
)


@settings(max_examples=150, deadline=None)
@given(
    groups=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=6),
    canary=st.integers(min_value=0, max_value=30),
    shares=_shares,
)
def test_properties_of_every_plan(groups, canary, shares):
    fleet = _fleet(groups)
    plan = RolloutPlan(canary=canary, waves=shares)
    waves = assign(plan, fleet)

    # Every eligible device in exactly one wave; no wave empty; numbered 1..n.
    placed = [imei for w in waves for imei in w.devices]
    assert sorted(placed) == sorted(d.imei for d in fleet)
    assert all(w.size > 0 for w in waves)
    assert [w.number for w in waves] == list(range(1, len(waves) + 1))
    for w in waves:
        assert sum(r[3] for r in w.radius) == w.size

    # The canary has its size and covers every model (and group) present when N allows.
    after = waves
    if canary:
        assert waves[0].label == "canary"
        assert waves[0].size == min(canary, len(fleet))
        groups_present = {d.group for d in fleet}
        if canary >= len(groups_present):
            assert {(r[0], r[1], r[2]) for r in waves[0].radius} == groups_present
        after = waves[1:]

    # Wave sizes follow the shares: each wave ends where its cumulative share of the rest does.
    rest = len(fleet) - (waves[0].size if canary else 0)
    by_label = {percent_text(s): s for s in shares}
    reached = 0
    for w in after:
        reached += w.size
        share = by_label[w.label]
        assert reached == math.ceil(rest * share / WHOLE)
    assert reached == rest


# --- staged rollouts through /fota schedule ------------------------------------------------------

_BASE = (
    "firmware=FW from=A to=B devices=354658090353977"
)


def test_schedule_takes_a_staged_plan() -> None:
    request = parse_schedule(
        _BASE + " canary=5 waves=5%,25%,100% success=90% soak=2h promote=manual",
        today=dt.date(2026, 11, 26),
        max_devices=100_000,
    )
    assert request.plan == RolloutPlan(
        canary=5, waves=(500, 2_500, 10_000), success=9_000, soak=dt.timedelta(hours=2)
    )
    assert parse_schedule(_BASE, today=dt.date(2026, 11, 26), max_devices=100_000).plan is None


def test_schedule_reports_staged_problems_with_every_other_problem() -> None:
    with pytest.raises(RequestError) as caught:
        parse_schedule(
            _BASE + " canary=5 halt=-5% waves=5%,50% window=1-2",
            today=dt.date(2026, 11, 26),
            max_devices=100_000,
        )
    by_key = {p.key: p.rule for p in caught.value.problems}
    assert "share of a wave's devices" in by_key["halt"]
    assert "must end at 100%" in by_key["waves"]
    assert "window" in by_key
    request = parse_schedule(_BASE + " canary=5 halt=5%", today=dt.date(2026, 11, 26), max_devices=100_000)
    assert request.plan is not None and request.plan.halt.basis_points == 500


def test_schedule_takes_automatic_promotion() -> None:
    request = parse_schedule(_BASE + " canary=5 promote=auto", today=dt.date(2026, 11, 26), max_devices=100_000)
    assert request.plan is not None and request.plan.promote.value == "auto"
