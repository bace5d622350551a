"""Staged rollouts carried out (the engine): wave 1 on approval, later waves on an approver's
promotion, re-checked at the click, exactly one ThingSpace campaign per wave across crashes.
Through the whole stack (the sandbox, the real store file); the plan bound as the card binds it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bot.standins.thingspace import sandbox_imeis
from bot.workflow.errors import UserError
from bot.workflow.planner import assign
from bot.workflow.wave_figures import Verdict, WaveFigures, judge
from storage import waves
from storage.plan import WHOLE, DeviceFacts, Halt, RolloutPlan
from storage.states import CampaignState
from tests.e2e.test_rollout import schedule_text
from tests.support.stack import ANN, BOB, EVE, REQUESTER, Stack, running_stack

S = CampaignState
PLAN = RolloutPlan(canary=2, waves=(5_000, WHOLE), soak=dt.timedelta(hours=2))


# --- the verdict (pure) ---------------------------------------------------------------------------


def test_the_verdict_on_a_wave() -> None:
    plan = RolloutPlan(canary=1, success=9_000, halt=Halt(count=3))
    assert judge(plan, WaveFigures(10, 4, 1), ended=False).verdict is Verdict.RUNNING
    assert judge(plan, WaveFigures(10, 9, 1), ended=True).verdict is Verdict.PASSED
    assert judge(plan, WaveFigures(10, 8, 2), ended=True).verdict is Verdict.MISSED
    halted = judge(plan, WaveFigures(10, 2, 3), ended=False)
    assert halted.verdict is Verdict.HALT
    assert halted.sentence() == "2 of 10 succeeded, 3 failed (9 needed to pass)"
    # Default halt: as soon as `success` can no longer be reached.
    assert judge(RolloutPlan(canary=1), WaveFigures(20, 0, 2), ended=False).verdict is Verdict.HALT
    assert judge(RolloutPlan(canary=1), WaveFigures(20, 0, 1), ended=False).verdict is Verdict.RUNNING


# --- through the stack -----------------------------------------------------------------------------


async def _planned_and_approved(stack: Stack, imeis: list[str], plan: RolloutPlan = PLAN) -> None:
    response, _ = await stack.slash(schedule_text(imeis))
    assert response.status_code == 200
    await stack.settle()
    store = stack.rt.store
    devices = store.device_ids(1)
    facts = [DeviceFacts(imei, "SEQUANS", "GM01Q", "SR1.2.0.0-10512") for imei in devices]
    campaign = waves.bind_plan(store, 1, plan, assign(plan, facts))
    answer = await stack.rt.service.approve(1, user=ANN, shown_hash=campaign.content_hash)
    assert "first wave is being sent" in answer
    await stack.settle()


async def _run_wave_to_its_end(stack: Stack) -> None:
    await stack.run_sandbox(60, step=2.0)
    stack.clock.advance(seconds=60)
    await stack.settle()


def _names(stack: Stack) -> list[str]:
    return [post.json()["campaignName"] for post in stack.thingspace.schedule_posts()]


def _wave(stack: Stack, number: int) -> waves.WaveRecord:
    stored = waves.load(stack.rt.store.db, 1)
    assert stored is not None
    return stored.wave(number)


async def test_a_plan_promoted_wave_by_wave_sends_each_wave_once(tmp_path: Path) -> None:
    imeis = sandbox_imeis(6)
    async with running_stack(tmp_path) as stack:
        await _planned_and_approved(stack, imeis)
        staged = stack.rt.staged
        assert staged is not None
        [first] = stack.thingspace.schedule_posts()
        assert first.json()["campaignName"] == f"fota-bot FB-1·{stack.rt.store.installation_id()} w1/3"
        assert sorted(first.json()["deviceList"]) == sorted(waves.wave_devices(stack.rt.store.db, 1, 1))
        assert stack.rt.store.campaign(1).state is S.ROLLING_OUT  # the request itself is never sent

        with pytest.raises(UserError, match="has not ended yet"):
            await staged.promote(1, 2, user=BOB)
        await _run_wave_to_its_end(stack)
        wave1 = _wave(stack, 1)
        assert wave1.campaign_id is not None
        assert stack.rt.store.campaign(wave1.campaign_id).state is S.ENDED

        with pytest.raises(UserError, match="cannot promote it"):
            await staged.promote(1, 2, user=REQUESTER)
        with pytest.raises(UserError, match="Only approvers"):
            await staged.promote(1, 2, user=EVE)
        with pytest.raises(UserError, match="soaking until"):
            await staged.promote(1, 2, user=BOB)
        assert len(stack.thingspace.schedule_posts()) == 1

        stack.clock.advance(hours=2)
        answer = await staged.promote(1, 2, user=BOB)
        assert answer.startswith("You promoted FB-1 to wave 2 of 3 (50%, 2 devices)")
        again = await staged.promote(1, 2, user=ANN)  # a second click, another approver
        assert again == f"Wave 2 of FB-1 was already started by <@{BOB}>."
        await stack.settle()
        assert _names(stack) == [f"fota-bot FB-1·{stack.rt.store.installation_id()} w1/3", f"fota-bot FB-1·{stack.rt.store.installation_id()} w2/3"]
        second = stack.rt.store.campaign(_wave(stack, 2).campaign_id or 0)
        assert second.start_date == stack.clock().date()  # the day it was promoted

        await _run_wave_to_its_end(stack)
        stack.clock.advance(hours=2)
        await staged.promote(1, 3, user=ANN)
        await stack.settle()
        assert _names(stack) == [f"fota-bot FB-1·{stack.rt.store.installation_id()} w1/3", f"fota-bot FB-1·{stack.rt.store.installation_id()} w2/3", f"fota-bot FB-1·{stack.rt.store.installation_id()} w3/3"]
        sent = [imei for post in stack.thingspace.schedule_posts() for imei in post.json()["deviceList"]]
        assert sorted(sent) == sorted(imeis)  # every device once, in exactly one wave


async def test_a_wave_that_missed_success_is_not_promoted(tmp_path: Path) -> None:
    imeis = sandbox_imeis(1) + sandbox_imeis(1, kind="will_fail") + sandbox_imeis(4, start=1)
    plan = RolloutPlan(canary=2, waves=(WHOLE,), halt=Halt(count=5))
    async with running_stack(tmp_path) as stack:
        await _planned_and_approved(stack, imeis, plan)
        await _run_wave_to_its_end(stack)
        staged = stack.rt.staged
        assert staged is not None
        judgement = staged.judgement(1, 1)
        assert judgement is not None and judgement.verdict is Verdict.MISSED
        with pytest.raises(UserError, match="missed its success threshold: 1 of 2 succeeded, 1 failed"):
            await staged.promote(1, 2, user=BOB)
        assert len(stack.thingspace.schedule_posts()) == 1


@pytest.mark.parametrize("step", ["after the approval", "after the wave was started", "after the POST"])
async def test_a_crash_at_any_step_of_the_first_wave_sends_it_once(tmp_path: Path, step: str) -> None:
    imeis = sandbox_imeis(4)
    async with running_stack(tmp_path) as stack:
        response, _ = await stack.slash(schedule_text(imeis))
        await stack.settle()
        store = stack.rt.store
        facts = [DeviceFacts(i, "SEQUANS", "GM01Q", "SR1") for i in store.device_ids(1)]
        campaign = waves.bind_plan(store, 1, PLAN, assign(PLAN, facts))
        store.record_approval(1, user=ANN, shown_hash=campaign.content_hash, required=1)
        if step != "after the approval":
            waves.start_wave(store, 1, 1, by="fota-bot", reason="the plan was approved")
        if step == "after the POST":
            await stack.rt.submitter.submit(_wave(stack, 1).campaign_id or 0)
        await stack.restart()
        await stack.settle()
        await stack.restart()
        await stack.settle()
        assert _names(stack) == [f"fota-bot FB-1·{stack.rt.store.installation_id()} w1/3"]
        child = stack.rt.store.campaign(_wave(stack, 1).campaign_id or 0)
        assert child.state is not S.APPROVED


@pytest.mark.parametrize("step", ["after the wave was started", "after the POST"])
async def test_a_crash_at_any_step_of_a_promotion_sends_the_wave_once(tmp_path: Path, step: str) -> None:
    imeis = sandbox_imeis(4)
    async with running_stack(tmp_path) as stack:
        await _planned_and_approved(stack, imeis, RolloutPlan(canary=2, waves=(WHOLE,)))
        await _run_wave_to_its_end(stack)
        store = stack.rt.store
        if step == "after the wave was started":
            waves.start_wave(store, 1, 2, by=BOB, reason="promoted")  # the crash: never sent
        else:
            await stack.rt.staged.promote(1, 2, user=BOB)  # type: ignore[union-attr]
            await stack.settle()
        await stack.restart()
        await stack.settle()
        await stack.rt.staged.promote(1, 2, user=ANN)  # type: ignore[union-attr]  # clicked again after the restart
        await stack.settle()
        assert _names(stack) == [f"fota-bot FB-1·{stack.rt.store.installation_id()} w1/2", f"fota-bot FB-1·{stack.rt.store.installation_id()} w2/2"]


def test_the_row_of_waves() -> None:
    from commands.blocks import waves_row

    stored = waves.StoredPlan(
        campaign_id=1,
        plan=PLAN,
        base_hash="b",
        bound_hash="h",
        waves=tuple(
            waves.WaveRecord(n, label, size, (), None, None, None, None)
            for n, label, size in ((1, "canary", 2), (2, "50%", 10), (3, "100%", 10), (4, "100%", 5))
        ),
    )
    row = waves_row(stored, {1: ("done", 2, 2), 2: ("running", 4, 10), 3: ("held", 1, 10)})
    assert row == "*Waves* (4): w1 ✓  ·  w2 ▓▓░░░ 4/10  ·  w3 ✗  ·  w4 ·"


async def test_campaigns_show_prints_the_plan_and_each_wave(tmp_path: Path) -> None:
    from bot.operator import plan_lines

    async with running_stack(tmp_path) as stack:
        await _planned_and_approved(stack, sandbox_imeis(6))
        store = stack.rt.store
        lines = plan_lines(store, store.campaign(1))
        assert lines[0].startswith("plan ") and "canary 2 · 50%, 100% · success 95%" in lines[0]
        assert lines[1].startswith("wave 1/3 canary") and "2 devices" in lines[1] and "started by fota-bot" in lines[1]
        assert lines[2].startswith("wave 2/3 50%") and lines[2].endswith("not started")
        assert lines[3].startswith("wave 3/3 100%")
        assert plan_lines(store, store.campaign(_wave(stack, 1).campaign_id or 0)) == lines  # from a wave too
