"""Staged rollouts end to end: `/fota schedule … canary=… waves=…` through the signed HTTP app,
the plan on the card, one approval, then each wave promoted by a click in the thread; the
sandbox's record of requests shows each wave reaching ThingSpace once, under its own name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.standins.thingspace import sandbox_imeis
from bot.workflow.errors import UserError
from commands import blocks
from storage import waves
from storage.states import CampaignState
from tests.e2e.test_rollout import schedule_text
from tests.support.stack import ANN, BOB, CHANNEL, REQUESTER, Stack, running_stack

S = CampaignState


async def _run_wave_to_its_end(stack: Stack) -> None:
    await stack.run_sandbox(60, step=2.0)
    stack.clock.advance(seconds=60)
    await stack.settle()


def _action_ids(message: Any) -> list[str]:
    return [e.get("action_id") for b in message.blocks if b.get("type") == "actions" for e in b["elements"]]


def _messages_with(stack: Stack, action_id: str) -> list[Any]:
    root = stack.root()
    return [m for m in stack.standin.thread(CHANNEL, root.ts) if action_id in _action_ids(m)]


def _promote_messages(stack: Stack) -> list[Any]:
    return _messages_with(stack, blocks.ACTION_PROMOTE)


def _names(stack: Stack) -> list[str]:
    return [post.json()["campaignName"] for post in stack.thingspace.schedule_posts()]


async def test_a_four_wave_plan_promoted_by_clicks(tmp_path: Path) -> None:
    imeis = sandbox_imeis(12)
    async with running_stack(tmp_path) as stack:
        response, _ = await stack.slash(schedule_text(imeis) + " canary=2 waves=25%,50%,100% name=Fleet")
        assert response.status_code == 200
        await stack.settle()
        card = json.dumps(stack.root().blocks)
        assert "Staged rollout" in card
        for title in ("Wave 1/4 (canary, 2 devices)", "Wave 2/4 (up to 25%, 3 devices)",
                      "Wave 3/4 (up to 50%, 2 devices)", "Wave 4/4 (up to 100%, 5 devices)"):
            assert title in card

        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        assert _names(stack) == [f"Fleet [FB-1·{stack.rt.store.installation_id()} w1/4]"]
        assert stack.rt.store.campaign(1).state is S.ROLLING_OUT
        await stack.run_sandbox(6, step=2.0)  # the canary under way: its bar on the request's card
        card = json.dumps(stack.root().blocks, ensure_ascii=False)
        assert "Rolling out in waves" in card and "w1 ░░░░░ 0/2" in card and "w4 ·" in card

        for number in (2, 3, 4):
            await _run_wave_to_its_end(stack)
            message = _promote_messages(stack)[-1]
            assert f"Promote to wave {number}/4" in json.dumps(message.blocks)
            # The requester may not promote their own rollout: told so, nothing sent.
            _, refused_url = await stack.click(blocks.ACTION_PROMOTE, user=REQUESTER, message=message)
            await stack.settle()
            assert "cannot promote it" in json.dumps(stack.answers(refused_url))
            assert len(_names(stack)) == number - 1

            _, url = await stack.click(blocks.ACTION_PROMOTE, user=BOB, message=message)
            await stack.settle()
            assert f"You promoted FB-1 to wave {number} of 4" in json.dumps(stack.answers(url))
            # A second click on the same button: the wave is not sent again.
            _, again = await stack.click(blocks.ACTION_PROMOTE, user=ANN, message=message)
            await stack.settle()
            assert "already started" in json.dumps(stack.answers(again))
            assert len(_names(stack)) == number

        assert _names(stack) == [f"Fleet [FB-1·{stack.rt.store.installation_id()} w{n}/4]" for n in (1, 2, 3, 4)]
        sent = [imei for post in stack.thingspace.schedule_posts() for imei in post.json()["deviceList"]]
        assert sorted(sent) == sorted(imeis)  # every device once
        stored = waves.load(stack.rt.store.db, 1)
        assert stored is not None
        assert [w.promoted_by for w in stored.waves] == ["fota-bot", BOB, BOB, BOB]
        card = json.dumps(stack.root().blocks, ensure_ascii=False)
        assert "w1 ✓" in card and "w3 ✓" in card and "w4 " in card
        await _run_wave_to_its_end(stack)
        assert "the last wave, ended" in json.dumps(stack.thread_texts())
        # The request is rolled out once its last wave ended; its card shows every wave done.
        assert stack.rt.store.campaign(1).state is S.ROLLED_OUT
        card = json.dumps(stack.root().blocks, ensure_ascii=False)
        assert "Rolled out: every wave ended" in card
        assert all(f"w{n} ✓" in card for n in (1, 2, 3, 4)), card


async def test_a_wave_under_success_is_held_and_its_promotion_refused(tmp_path: Path) -> None:
    imeis = sandbox_imeis(6, kind="will_fail")
    async with running_stack(tmp_path) as stack:
        # `halt=5`: two failed devices do not halt the rollout; the wave ends under `success`.
        await stack.slash(schedule_text(imeis) + " canary=2 waves=100% soak=1h halt=5")
        await stack.settle()
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        await _run_wave_to_its_end(stack)
        assert _promote_messages(stack) == []  # no Promote button for a wave that missed
        assert any("missed its success threshold" in t for t in stack.thread_texts())
        staged = stack.rt.staged
        assert staged is not None
        with pytest.raises(UserError, match="0 of 2 succeeded, 2 failed"):
            await staged.promote(1, 2, user=BOB)
        assert _names(stack) == [f"fota-bot FB-1·{stack.rt.store.installation_id()} w1/2"]


async def test_a_staged_request_with_excluded_devices_is_approved_as_its_eligible_waves(tmp_path: Path) -> None:
    eligible = sandbox_imeis(6)
    excluded = sandbox_imeis(2, kind="ineligible")
    async with running_stack(tmp_path) as stack:
        await stack.slash(schedule_text(eligible + excluded) + " canary=2")
        await stack.settle()
        card = json.dumps(stack.root().blocks)
        # The waves hold the six eligible devices only.
        assert "Wave 1/2 (canary, 2 devices)" in card and "Wave 2/2 (up to 100%, 4 devices)" in card

        # Adding the excluded devices to a plan is refused before any form opens.
        _, url = await stack.click(blocks.ACTION_INCLUDE_EXCLUDED, user=ANN)
        await stack.settle()
        assert "excluded devices cannot be added to its waves" in json.dumps(stack.answers(url))

        await stack.click(blocks.ACTION_APPROVE_ELIGIBLE, user=ANN)
        await stack.settle()
        [post] = stack.thingspace.schedule_posts()
        assert post.json()["campaignName"] == f"fota-bot FB-1·{stack.rt.store.installation_id()} w1/2"
        assert set(post.json()["deviceList"]) <= set(eligible)
        assert stack.rt.store.device_ids(1) and set(stack.rt.store.device_ids(1)) == set(eligible)



def _dms(stack: Stack, user: str) -> str:
    return " ".join(m.text for m in stack.standin.messages(stack.standin.dm_channel(user)))


async def test_a_wave_crossing_halt_halts_the_rollout_and_later_waves_never_reach_thingspace(
    tmp_path: Path,
) -> None:
    imeis = sandbox_imeis(6, kind="will_fail")
    async with running_stack(tmp_path) as stack:
        await stack.slash(schedule_text(imeis) + " canary=2 waves=50%,100% halt=1")
        await stack.settle()
        assert "halts itself when 1 device of a wave" in json.dumps(stack.root().blocks)
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        await _run_wave_to_its_end(stack)

        assert stack.rt.store.campaign(1).state is S.HALTED
        said = [t for t in stack.thread_texts() if "halted itself" in t]
        assert len(said) == 1  # said once, however many failures came after
        assert "FB-1 w1/3 crossed its halt threshold" in said[0]
        for person in (REQUESTER, ANN, BOB):
            assert "halted itself" in _dms(stack, person), person
        stored = waves.load(stack.rt.store.db, 1)
        assert stored is not None and stored.halted and stored.halted_by == "fota-bot"

        staged = stack.rt.staged
        assert staged is not None
        with pytest.raises(UserError, match="halted"):
            await staged.promote(1, 2, user=BOB)
        await stack.restart()  # nothing resumes a halted rollout
        await stack.settle()
        # The sandbox's own record of requests: only the first wave ever reached ThingSpace.
        assert _names(stack) == [f"fota-bot FB-1·{stack.rt.store.installation_id()} w1/3"]
        assert _promote_messages(stack) == []
        card = json.dumps(stack.root().blocks, ensure_ascii=False)
        assert "Halted: no further wave is sent" in card


async def test_the_app_home_shows_an_approver_the_plan_they_approve(tmp_path: Path) -> None:
    from tests.e2e.test_operator import open_home

    async with running_stack(tmp_path) as stack:
        await stack.slash(schedule_text(sandbox_imeis(6)) + " canary=2")
        await stack.settle()
        home = json.dumps(await open_home(stack, ANN))
        assert "Staged rollout" in home and "Wave 1/2 (canary, 2 devices)" in home
        assert blocks.ACTION_APPROVE in home
