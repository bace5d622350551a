"""The decisions around a staged rollout's waves, end to end through the signed HTTP app, the
recording Slack stand-in and the sandbox: *Halt* (confirm, then a form with the reason), a wave
sent but not started cancelled at ThingSpace (and ThingSpace's refusal shown word for word),
*Promote anyway…*, *Resume…*, `promote=auto`, `/fota cancel` on a rollout. The sandbox's record
of requests is the proof of what reached ThingSpace."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from bot.standins.thingspace import sandbox_imeis
from commands import blocks
from storage import waves
from storage.plan import WHOLE, Halt, Promote, RolloutPlan, WaveAssignment
from storage.states import CampaignState
from tests.e2e.test_rollout import schedule_text
from tests.support.stack import ANN, BOB, CHANNEL, EVE, REQUESTER, Stack, running_stack

S = CampaignState


# --- helpers ---------------------------------------------------------------------------------------


async def _run_wave_to_its_end(stack: Stack) -> None:
    await stack.run_sandbox(60, step=2.0)
    stack.clock.advance(seconds=60)
    await stack.settle()


def _action_ids(message: Any) -> list[str]:
    return [e.get("action_id") for b in message.blocks if b.get("type") == "actions" for e in b["elements"]]


def _thread_with(stack: Stack, action_id: str) -> list[Any]:
    return [m for m in stack.standin.thread(CHANNEL, stack.root().ts) if action_id in _action_ids(m)]


def _names(stack: Stack) -> list[str]:
    return [post.json()["campaignName"] for post in stack.thingspace.schedule_posts()]


def _deletes(stack: Stack) -> list[str]:
    return [s.path for s in stack.thingspace.seen if s.method == "DELETE"]


def _dms(stack: Stack, user: str) -> str:
    return " ".join(m.text for m in stack.standin.messages(stack.standin.dm_channel(user)))


def _modals(stack: Stack, callback_id: str) -> list[dict[str, Any]]:
    return [v.view for v in stack.standin.views if v.type == "modal" and v.view.get("callback_id") == callback_id]


async def _decide(
    stack: Stack, action_id: str, callback_id: str, *, user: str, reason: str, message: Any | None = None
) -> tuple[str, Any]:
    """Click a decision button, then submit its form with `reason`: (what the click answered,
    the form submission's HTTP answer). No form opened: the submission is not made (None)."""
    before = len(_modals(stack, callback_id))
    _, url = await stack.click(action_id, user=user, message=message)
    await stack.settle()
    said = json.dumps(stack.answers(url))
    opened = _modals(stack, callback_id)
    if len(opened) == before:
        return said, None
    response = await stack.submit_view(
        callback_id, {"reason": {"reason": reason}}, user=user, private_metadata=opened[-1]["private_metadata"]
    )
    await stack.settle()
    return said, response


async def _requested(stack: Stack, imeis: list[str], keys: str) -> None:
    response, _ = await stack.slash(schedule_text(imeis) + " " + keys)
    assert response.status_code == 200
    await stack.settle()
    await stack.click(blocks.ACTION_APPROVE, user=ANN)
    await stack.settle()


def _wave_campaign(stack: Stack, number: int) -> Any:
    stored = waves.load(stack.rt.store.db, 1)
    assert stored is not None
    ident = stored.wave(number).campaign_id
    return None if ident is None else stack.rt.store.campaign(ident)


async def _scheduler_tick(stack: Stack) -> None:
    """What the scheduler runs every minute for staged rollouts, run once now."""
    job = stack.rt.jobs.scheduler.get_job("staged-rollouts")
    assert job is not None
    await job.func(*job.args)
    await stack.settle()


# --- Halt ------------------------------------------------------------------------------------------


async def test_halt_beside_promote_stops_the_rollout_with_who_and_why(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await _requested(stack, sandbox_imeis(8), "canary=2 waves=50%,100%")
        await _run_wave_to_its_end(stack)
        [passed] = _thread_with(stack, blocks.ACTION_PROMOTE)
        assert blocks.ACTION_HALT in _action_ids(passed)
        halt = next(e for b in passed.blocks if b.get("type") == "actions" for e in b["elements"]
                    if e["action_id"] == blocks.ACTION_HALT)
        assert halt["confirm"]["title"]["text"] == "Halt this rollout?"  # Slack asks before the form

        # Someone who is neither the requester nor an approver: refused before any form opens.
        said, response = await _decide(stack, blocks.ACTION_HALT, blocks.HALT_MODAL_CALLBACK_ID,
                                       user=EVE, reason="x", message=passed)
        assert response is None and "Only the requester" in said
        # An empty reason is refused in the form (Slack enforces min_length; a crafted one too).
        _, empty = await _decide(stack, blocks.ACTION_HALT, blocks.HALT_MODAL_CALLBACK_ID,
                                 user=BOB, reason="   ", message=passed)
        assert empty.json()["errors"]["reason"].startswith("A reason is required")
        assert stack.rt.store.campaign(1).state is S.ROLLING_OUT

        _, ok = await _decide(stack, blocks.ACTION_HALT, blocks.HALT_MODAL_CALLBACK_ID,
                              user=BOB, reason="battery drain reports from the canary", message=passed)
        assert ok.status_code == 200 and not ok.content
        assert stack.rt.store.campaign(1).state is S.HALTED
        said_in_thread = [t for t in stack.thread_texts() if f"<@{BOB}> halted FB-1" in t]
        assert len(said_in_thread) == 1 and "battery drain reports from the canary" in said_in_thread[0]
        for person in (REQUESTER, ANN):
            assert "battery drain reports from the canary" in _dms(stack, person), person
        assert "You halted FB-1" in _dms(stack, BOB)
        audit = stack.rt.store.audit(1)[-1]
        assert (audit["to_state"], audit["actor"]) == ("halted", BOB)

        # A second submission (a double click on the form, or another approver): nothing twice.
        refused, again = await _decide(stack, blocks.ACTION_HALT, blocks.HALT_MODAL_CALLBACK_ID,
                                       user=ANN, reason="me too", message=passed)
        assert again is None and f"already halted by <@{BOB}>" in refused
        [form] = _modals(stack, blocks.HALT_MODAL_CALLBACK_ID)[-1:]
        twice = await stack.submit_view(blocks.HALT_MODAL_CALLBACK_ID, {"reason": {"reason": "again"}}, user=BOB,
                                        private_metadata=form["private_metadata"])
        assert "already halted" in json.dumps(twice.json())
        assert len([t for t in stack.thread_texts() if "halted FB-1" in t]) == 1
        # The old Promote button: refused, and wave 2 never reaches ThingSpace.
        _, url = await stack.click(blocks.ACTION_PROMOTE, user=ANN, message=passed)
        await stack.settle()
        assert "was halted" in json.dumps(stack.answers(url))
        await stack.restart()
        await _scheduler_tick(stack)
        assert _names(stack) == [f"fota-bot FB-1·{stack.rt.store.installation_id()} w1/3"]
        card = json.dumps(stack.root().blocks, ensure_ascii=False)
        assert "Halted" in card and blocks.ACTION_RESUME in card and blocks.ACTION_HALT not in card


async def test_halt_cancels_a_wave_sent_but_not_started_at_thingspace(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await _requested(stack, sandbox_imeis(8), "canary=2 waves=50%,100%")
        await _run_wave_to_its_end(stack)
        [passed] = _thread_with(stack, blocks.ACTION_PROMOTE)
        await stack.click(blocks.ACTION_PROMOTE, user=ANN, message=passed)
        await stack.settle()
        second = _wave_campaign(stack, 2)
        assert second.state is S.SUBMITTED and second.thingspace_id  # sent, not started
        # The Halt button on the request's card, while it rolls out.
        assert blocks.ACTION_HALT in _action_ids(stack.root())
        _, ok = await _decide(stack, blocks.ACTION_HALT, blocks.HALT_MODAL_CALLBACK_ID,
                              user=BOB, reason="wrong firmware build")
        assert ok.status_code == 200
        assert _deletes(stack) == [f"/api/fota/v3/campaigns/{second.account}/{second.thingspace_id}"]
        assert stack.rt.store.campaign(second.id).state is S.CANCELLED
        assert stack.sandbox.model.campaigns[second.thingspace_id].status == "CampaignCancelled"
        assert any("had not started at ThingSpace" in t and "FB-1 w2/3" in t for t in stack.thread_texts())
        await stack.run_sandbox(60, step=2.0)
        assert len(_names(stack)) == 2 and len(_deletes(stack)) == 1  # wave 3 never; one DELETE


async def test_thingspace_refusing_the_cancel_is_shown_word_for_word(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await _requested(stack, sandbox_imeis(8), "canary=2 waves=50%,100%")
        await _run_wave_to_its_end(stack)
        [passed] = _thread_with(stack, blocks.ACTION_PROMOTE)
        await stack.click(blocks.ACTION_PROMOTE, user=ANN, message=passed)
        await stack.settle()
        second = _wave_campaign(stack, 2)
        # ThingSpace starts the wave, but its callbacks have not arrived: the bot still sees it unstarted.
        stack.sandbox_clock.advance(10)
        _, ok = await _decide(stack, blocks.ACTION_HALT, blocks.HALT_MODAL_CALLBACK_ID,
                              user=BOB, reason="stop it")
        assert ok.status_code == 200
        assert len(_deletes(stack)) == 1
        words = (f"Campaign {second.thingspace_id} has already started (status CampaignScheduled); "
                 "a campaign can only be cancelled before it starts")
        refused = [t for t in stack.thread_texts() if "refused to cancel" in t]
        assert len(refused) == 1 and "CAMPAIGN_ALREADY_STARTED" in refused[0] and words in refused[0]
        assert stack.rt.store.campaign(1).state is S.HALTED
        await _scheduler_tick(stack)  # a refusal is not asked again every minute
        assert len(_deletes(stack)) == 1


async def test_a_halt_by_threshold_cancels_a_wave_sent_but_not_started(tmp_path: Path) -> None:
    # Wave 1 passes and wave 2 is sent; then a late failure report of wave 1 crosses `halt=1`.
    async with running_stack(tmp_path) as stack:
        await _requested(stack, sandbox_imeis(8), "canary=2 waves=50%,100% halt=1 success=50%")
        await _run_wave_to_its_end(stack)
        [passed] = _thread_with(stack, blocks.ACTION_PROMOTE)
        await stack.click(blocks.ACTION_PROMOTE, user=ANN, message=passed)
        await stack.settle()
        first, second = _wave_campaign(stack, 1), _wave_campaign(stack, 2)
        imei = stack.rt.store.device_ids(first.id)[0]
        with stack.rt.store.db.atomic():
            stack.rt.store.db.execute(
                "UPDATE devices SET status = 'UpgradeFailed', reason = 'late report' WHERE campaign_id = ? AND imei = ?",
                [first.id, imei],
            )
            stack.rt.staged.check_halt(stack.rt.store.campaign(first.id))  # type: ignore[union-attr]
        await stack.settle()
        assert stack.rt.store.campaign(1).state is S.HALTED
        assert _deletes(stack) == [f"/api/fota/v3/campaigns/{second.account}/{second.thingspace_id}"]
        assert stack.rt.store.campaign(second.id).state is S.CANCELLED


# --- Promote anyway and resume -------------------------------------------------------------------


async def test_a_missed_wave_holds_for_promote_anyway_by_an_approver_with_a_reason(tmp_path: Path) -> None:
    imeis = sandbox_imeis(2, kind="will_fail") + sandbox_imeis(4)
    async with running_stack(tmp_path) as stack:
        await _requested(stack, imeis, "canary=2 waves=100% halt=5")
        await _run_wave_to_its_end(stack)
        assert _thread_with(stack, blocks.ACTION_PROMOTE) == []
        [held] = _thread_with(stack, blocks.ACTION_PROMOTE_ANYWAY)
        assert _action_ids(held)[-1] == blocks.ACTION_HALT
        assert "holds for a decision" in held.text

        said, form = await _decide(stack, blocks.ACTION_PROMOTE_ANYWAY, blocks.PROMOTE_ANYWAY_MODAL_CALLBACK_ID,
                                   user=REQUESTER, reason="mine", message=held)
        assert form is None and "cannot promote it" in said
        said, form = await _decide(stack, blocks.ACTION_PROMOTE_ANYWAY, blocks.PROMOTE_ANYWAY_MODAL_CALLBACK_ID,
                                   user=EVE, reason="x", message=held)
        assert form is None and "Only approvers" in said
        assert len(_names(stack)) == 1

        _, ok = await _decide(stack, blocks.ACTION_PROMOTE_ANYWAY, blocks.PROMOTE_ANYWAY_MODAL_CALLBACK_ID,
                              user=BOB, reason="both canary devices were on a bench PSU", message=held)
        assert ok.status_code == 200 and not ok.content
        [modal] = _modals(stack, blocks.PROMOTE_ANYWAY_MODAL_CALLBACK_ID)
        assert "0 of 2 succeeded, 2 failed" in json.dumps(modal)  # the figures, in the form
        assert len(_names(stack)) == 2
        said = [t for t in stack.thread_texts() if "promoted FB-1 to wave 2/2 anyway" in t]
        assert len(said) == 1 and "bench PSU" in said[0]
        stored = waves.load(stack.rt.store.db, 1)
        assert stored is not None and stored.wave(2).promoted_by == BOB
        assert "bench PSU" in (stored.wave(2).promote_reason or "")

        # The same form submitted again: the wave is not sent twice.
        again = await stack.submit_view(
            blocks.PROMOTE_ANYWAY_MODAL_CALLBACK_ID, {"reason": {"reason": "again"}}, user=ANN,
            private_metadata=modal["private_metadata"],
        )
        await stack.settle()
        assert again.status_code == 200 and len(_names(stack)) == 2


async def test_a_halted_rollout_is_resumed_only_by_an_approver_with_a_reason(tmp_path: Path) -> None:
    imeis = sandbox_imeis(6, kind="will_fail")
    async with running_stack(tmp_path) as stack:
        await _requested(stack, imeis, "canary=2 waves=50%,100% halt=1")
        await _run_wave_to_its_end(stack)
        assert stack.rt.store.campaign(1).state is S.HALTED
        card = stack.root()
        assert blocks.ACTION_RESUME in _action_ids(card)

        said, form = await _decide(stack, blocks.ACTION_RESUME, blocks.RESUME_MODAL_CALLBACK_ID,
                                   user=REQUESTER, reason="please", message=card)
        assert form is None and "cannot resume it" in said
        said, form = await _decide(stack, blocks.ACTION_RESUME, blocks.RESUME_MODAL_CALLBACK_ID,
                                   user=EVE, reason="please", message=card)
        assert form is None and "Only approvers" in said
        assert stack.rt.store.campaign(1).state is S.HALTED

        _, ok = await _decide(stack, blocks.ACTION_RESUME, blocks.RESUME_MODAL_CALLBACK_ID,
                              user=BOB, reason="the failures were a test SIM batch", message=card)
        assert ok.status_code == 200 and not ok.content
        assert stack.rt.store.campaign(1).state is S.ROLLING_OUT
        audit = stack.rt.store.audit(1)[-1]
        assert (audit["from_state"], audit["to_state"], audit["actor"]) == ("halted", "rolling_out", BOB)
        assert "test SIM batch" in audit["reason"]
        assert any("resumed FB-1" in t and "test SIM batch" in t for t in stack.thread_texts())
        assert "test SIM batch" in _dms(stack, REQUESTER)
        assert len(_names(stack)) == 1  # a resume sends nothing by itself

        # The resume form opened on the old halt, submitted again: refused, nothing changes.
        [modal] = _modals(stack, blocks.RESUME_MODAL_CALLBACK_ID)
        again = await stack.submit_view(blocks.RESUME_MODAL_CALLBACK_ID, {"reason": {"reason": "x"}}, user=ANN,
                                        private_metadata=modal["private_metadata"])
        assert "not halted" in json.dumps(again.json())

        # Wave 1 failed: going on takes *Promote anyway…* (the card's Halt is back meanwhile).
        assert blocks.ACTION_HALT in _action_ids(stack.root())
        _, url = await stack.click(blocks.ACTION_PROMOTE, user=ANN,
                                   message={"ts": card.ts, "blocks": [{"type": "actions", "elements": [
                                       {"type": "button", "action_id": blocks.ACTION_PROMOTE,
                                        "value": blocks.promote_value(1, 2)}]}]})
        await stack.settle()
        assert "Promote anyway" in json.dumps(stack.answers(url))
        answer = await stack.rt.staged.promote(1, 2, user=ANN, anyway="accepted after the SIM check")  # type: ignore[union-attr]
        await stack.settle()
        assert answer.startswith("You promoted FB-1 to wave 2 of 3")
        assert len(_names(stack)) == 2


# --- promote=auto ----------------------------------------------------------------------------------


async def _bound(stack: Stack, devices: list[list[str]], plan: RolloutPlan) -> None:
    """Request every device, bind a plan with exactly these waves (as the card binds one), approve."""
    every = [imei for wave in devices for imei in wave]
    await stack.slash(schedule_text(every))
    await stack.settle()
    labels = ["canary", *(f"{(n + 1) * 100 // len(devices)}%" for n in range(1, len(devices)))]
    assigned = [WaveAssignment(n, labels[n - 1], tuple(d), ()) for n, d in enumerate(devices, 1)]
    campaign = waves.bind_plan(stack.rt.store, 1, plan, assigned)
    await stack.rt.service.approve(1, user=ANN, shown_hash=campaign.content_hash)
    await stack.settle()


AUTO = RolloutPlan(canary=2, waves=(3_300, 6_600, WHOLE), halt=Halt(count=5), soak=dt.timedelta(hours=1),
                   promote=Promote.AUTO)


async def test_an_automatic_plan_promotes_itself_after_the_soak_and_holds_on_a_miss(tmp_path: Path) -> None:
    good, bad = sandbox_imeis(6), sandbox_imeis(2, kind="will_fail")
    async with running_stack(tmp_path) as stack:
        await _bound(stack, [good[0:2], good[2:4], bad, good[4:6]], AUTO)
        assert len(_names(stack)) == 1
        await _run_wave_to_its_end(stack)
        [passed] = [t for t in stack.thread_texts() if "FB-1 w1/4 passed" in t]
        assert "promotes automatically" in passed and blocks.ACTION_PROMOTE not in json.dumps(passed)
        await _scheduler_tick(stack)  # the soak is not over: nothing
        assert len(_names(stack)) == 1

        stack.clock.advance(hours=1)
        await _scheduler_tick(stack)
        await _scheduler_tick(stack)  # a second tick sends nothing twice
        assert len(_names(stack)) == 2
        said = [t for t in stack.thread_texts() if "promoted itself" in t]
        assert len(said) == 1 and "wave 2/4" in said[0]
        assert waves.load(stack.rt.store.db, 1).wave(2).promoted_by == "fota-bot"  # type: ignore[union-attr]

        await _run_wave_to_its_end(stack)
        stack.clock.advance(hours=1)
        await _scheduler_tick(stack)
        assert len(_names(stack)) == 3  # wave 3: every device fails, under `success`

        await _run_wave_to_its_end(stack)
        stack.clock.advance(hours=2)
        await _scheduler_tick(stack)
        assert len(_names(stack)) == 3  # held: the bot does not promote past a miss
        [held] = _thread_with(stack, blocks.ACTION_PROMOTE_ANYWAY)
        assert "FB-1 w3/4 missed" in held.text
        assert stack.rt.store.campaign(1).state is S.ROLLING_OUT


async def test_an_automatic_plan_without_soak_goes_on_when_the_wave_ends(tmp_path: Path) -> None:
    good = sandbox_imeis(6)
    async with running_stack(tmp_path) as stack:
        await _bound(stack, [good[0:2], good[2:6]], RolloutPlan(canary=2, promote=Promote.AUTO))
        await _run_wave_to_its_end(stack)
        assert len(_names(stack)) == 2  # promoted as the wave ended: no soak, no click, no tick
        assert any("promoted itself" in t for t in stack.thread_texts())
        await _run_wave_to_its_end(stack)
        assert stack.rt.store.campaign(1).state is S.ROLLED_OUT


@pytest.mark.parametrize("step", ["the wave ended", "the wave was started", "the POST"])
async def test_a_crash_at_each_step_of_an_automatic_promotion_sends_the_wave_once(tmp_path: Path, step: str) -> None:
    good = sandbox_imeis(6)
    plan = RolloutPlan(canary=2, halt=Halt(count=5), soak=dt.timedelta(hours=1), promote=Promote.AUTO)
    async with running_stack(tmp_path) as stack:
        await _bound(stack, [good[0:2], good[2:6]], plan)
        await _run_wave_to_its_end(stack)
        stack.clock.advance(hours=1)
        store = stack.rt.store
        if step == "the wave was started":
            # The process stops right after the wave's campaign was recorded, before its POST.
            waves.start_wave(store, 1, 2, by="fota-bot", reason="promoted automatically")
        elif step == "the POST":
            await _scheduler_tick(stack)
            assert len(_names(stack)) == 2
        await stack.restart()
        await stack.settle()
        await _scheduler_tick(stack)
        await stack.restart()
        await stack.settle()
        await _scheduler_tick(stack)
        installation = stack.rt.store.installation_id()
        assert _names(stack) == [f"fota-bot FB-1·{installation} w1/2", f"fota-bot FB-1·{installation} w2/2"]
        assert stack.rt.store.campaign(_wave_campaign(stack, 2).id).state is not S.APPROVED


# --- /fota cancel ----------------------------------------------------------------------------------


async def test_fota_cancel_on_a_rollout_halts_it_and_cancels_its_waves_at_thingspace(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await _requested(stack, sandbox_imeis(8), "canary=2 waves=50%,100%")
        await _run_wave_to_its_end(stack)
        [passed] = _thread_with(stack, blocks.ACTION_PROMOTE)
        await stack.click(blocks.ACTION_PROMOTE, user=ANN, message=passed)
        await stack.settle()
        second = _wave_campaign(stack, 2)

        _, url = await stack.slash("cancel FB-1", user=EVE)
        await stack.settle()
        assert "Only the requester" in json.dumps(stack.answers(url))
        _, url = await stack.slash("cancel FB-1", user=REQUESTER)
        await stack.settle()
        [prompt] = stack.answers(url)
        assert "Cancel the rollout Ref FB-1?" in json.dumps(prompt) and stack.rt.store.campaign(1).state is S.ROLLING_OUT
        confirm = {"ts": "1.1", "blocks": prompt["blocks"]}
        _, done = await stack.click(blocks.ACTION_CANCEL_CONFIRM, user=REQUESTER, message=confirm)
        await stack.settle()
        answer = json.dumps(stack.answers(done))
        assert "You halted FB-1" in answer and "FB-1 w2/3 had not started: it was cancelled at ThingSpace" in answer
        assert stack.rt.store.campaign(1).state is S.HALTED
        assert stack.rt.store.campaign(second.id).state is S.CANCELLED
        assert _deletes(stack) == [f"/api/fota/v3/campaigns/{second.account}/{second.thingspace_id}"]
        assert any("cancelled FB-1" in t and "/fota cancel" in t for t in stack.thread_texts())

        # The same confirmation clicked again: nothing twice.
        _, again = await stack.click(blocks.ACTION_CANCEL_CONFIRM, user=REQUESTER, message=confirm)
        await stack.settle()
        assert "halted already" in json.dumps(stack.answers(again))
        assert len(_deletes(stack)) == 1 and len(_names(stack)) == 2


async def test_fota_cancel_on_a_halted_rollout_asks_thingspace_again_for_the_wave_it_still_holds(
    tmp_path: Path,
) -> None:
    async with running_stack(tmp_path) as stack:
        await _requested(stack, sandbox_imeis(8), "canary=2 waves=50%,100%")
        await _run_wave_to_its_end(stack)
        [passed] = _thread_with(stack, blocks.ACTION_PROMOTE)
        await stack.click(blocks.ACTION_PROMOTE, user=ANN, message=passed)
        await stack.settle()
        second = _wave_campaign(stack, 2)
        # ThingSpace starts the wave; the halt by hand asks to cancel it and ThingSpace refuses.
        stack.sandbox_clock.advance(10)
        await _decide(stack, blocks.ACTION_HALT, blocks.HALT_MODAL_CALLBACK_ID, user=BOB, reason="stop it")
        assert stack.rt.store.campaign(1).state is S.HALTED and len(_deletes(stack)) == 1

        # Halted, but ThingSpace still holds a wave: /fota cancel offers to ask again, not "halted already".
        _, url = await stack.slash("cancel FB-1", user=REQUESTER)
        await stack.settle()
        [prompt] = stack.answers(url)
        assert "is halted: no further wave is sent" in json.dumps(prompt)
        confirm = {"ts": "1.1", "blocks": prompt["blocks"]}
        _, done = await stack.click(blocks.ACTION_CANCEL_CONFIRM, user=REQUESTER, message=confirm)
        await stack.settle()
        answer = json.dumps(stack.answers(done))
        assert f"ThingSpace refused to cancel {second.ref}: CAMPAIGN_ALREADY_STARTED" in answer
        assert _deletes(stack) == [f"/api/fota/v3/campaigns/{second.account}/{second.thingspace_id}"] * 2
        assert stack.rt.store.campaign(1).state is S.HALTED and len(_names(stack)) == 2
