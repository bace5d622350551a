"""A campaign ThingSpace no longer knows, end to end: counted re-reads, then `lost`, told once.

The in-process sandbox forgets its campaigns when its state is reset (its tables dropped from
the database; a restart alone carries them on): the bot then hears 404 CAMPAIGN_NOT_FOUND for a campaign it
follows. Everything goes through the real HTTP app, signed Slack requests, the Slack stand-in
and the sandbox; time moves only when the test says so.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from bot.standins.thingspace import Sandbox, create_sandbox_app, sandbox_imeis
from bot.standins.thingspace.state import forget
from bot.workflow.lost import NOT_FOUND_READS, NOT_FOUND_SPACING
from commands import blocks
from storage.states import ACTIVE_AT_THINGSPACE, CampaignState
from tests.support.stack import ANN, FIRMWARE, REQUESTER, Stack, running_stack

S = CampaignState


async def submit(stack: Stack, imeis: list[str]) -> str:
    response, _ = await stack.slash(
        f"schedule firmware={FIRMWARE} from=SR1.2.0.0-10512 to=SR1.2.0.0-10657 "
        f"start=today end=+3d devices={','.join(imeis)}"
    )
    assert response.status_code == 200
    await stack.settle()
    await stack.click(blocks.ACTION_APPROVE, user=ANN)
    await stack.settle()
    campaign = stack.rt.store.campaign(1)
    assert campaign.state is S.SUBMITTED and campaign.thingspace_id
    return campaign.thingspace_id


async def sandbox_forgets_everything(stack: Stack) -> None:
    """`serve` restarted in sandbox mode after the sandbox's state was reset."""
    await stack.shutdown()
    await stack.sandbox.aclose()
    forget(stack.env["FOTA_DB"])
    fresh = Sandbox(clock=stack.sandbox_clock)
    stack.sandbox = fresh
    stack.thingspace.inner = httpx.ASGITransport(app=create_sandbox_app(fresh))
    await stack.boot()


def reads_of(stack: Stack, thingspace_id: str) -> int:
    return sum(1 for s in stack.thingspace.seen if s.method == "GET" and thingspace_id in s.path)


async def command(stack: Stack, text: str) -> str:
    response, response_url = await stack.slash(text)
    assert response.status_code == 200
    await stack.settle()
    return json.dumps(stack.answers(response_url), ensure_ascii=False)


def lost_texts(stack: Stack) -> list[str]:
    return [t for t in stack.thread_texts() if "is lost" in t]


async def test_a_campaign_thingspace_forgot_is_marked_lost_after_bounded_rereads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.rollout")
    async with running_stack(tmp_path) as stack:
        thingspace_id = await submit(stack, sandbox_imeis(4, kind="eligible"))
        await stack.run_sandbox(3, step=1.0)
        before = stack.rt.store.device_counts(1)
        await sandbox_forgets_everything(stack)

        # Callbacks stopped: the watchdog re-reads, and ThingSpace does not know the campaign.
        stack.clock.advance(minutes=16)
        await stack.rt.rollout.watchdog()
        await stack.settle()
        for read in range(2, NOT_FOUND_READS + 1):
            assert stack.rt.store.campaign(1).state in ACTIVE_AT_THINGSPACE, read
            assert lost_texts(stack) == []
            # Re-reads asked for meanwhile (a watchdog pass, a callback) do not count.
            stack.clock.advance(minutes=1)
            await stack.rt.rollout.watchdog()
            await stack.settle()
            stack.clock.advance(seconds=NOT_FOUND_SPACING.total_seconds() - 60)
            await stack.settle()

        campaign = stack.rt.store.campaign(1)
        assert campaign.state is S.LOST
        # Logged once per counted re-read and once for the end, not at every watchdog pass.
        warned = [r.getMessage() for r in caplog.records
                  if r.levelno >= logging.WARNING and r.name == "bot.rollout"]
        assert len(warned) == NOT_FOUND_READS, warned
        assert warned[-1].startswith("FB-1 lost: ThingSpace answered 404 CAMPAIGN_NOT_FOUND")
        assert campaign.error_code == "CAMPAIGN_NOT_FOUND"
        last = stack.rt.store.audit(1)[-1]
        assert (last["to_state"], last["actor"]) == ("lost", "reconcile")
        assert f"404 CAMPAIGN_NOT_FOUND to {NOT_FOUND_READS} re-reads" in last["reason"]
        # The last counts seen are kept, not reset.
        assert stack.rt.store.device_counts(1) == before

        # Told once in the thread and to the requester, with what to check.
        [told] = lost_texts(stack)
        assert thingspace_id in told and "sandbox forgets its campaigns" in told
        assert "Nothing was cancelled" in told
        dms = [m.text for m in stack.standin.messages(stack.standin.dm_channel(REQUESTER))]
        assert sum("is lost" in t for t in dms) == 1
        assert "Lost: ThingSpace no longer knows this campaign" in json.dumps(stack.root().blocks)

        # The watchdog leaves it alone from now on.
        reads = reads_of(stack, thingspace_id)
        for _ in range(3):
            stack.clock.advance(hours=1)
            await stack.rt.rollout.watchdog()
            await stack.settle()
        assert reads_of(stack, thingspace_id) == reads
        assert len(lost_texts(stack)) == 1

        status = await command(stack, "status FB-1")
        assert "Lost: ThingSpace no longer knows this campaign" in status
        assert "sandbox forgets its campaigns" in status
        listed = await command(stack, "list all")
        assert "Ref FB-1" in listed and "Lost: ThingSpace no longer knows this campaign" in listed
        cancel = await command(stack, "cancel FB-1")
        assert "nothing to cancel" in cancel and "ThingSpace no longer knows it" in cancel
        assert not [s for s in stack.thingspace.seen if s.method == "DELETE"]


async def test_one_answer_between_404s_starts_the_count_again(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await submit(stack, sandbox_imeis(3, kind="eligible"))
        campaign = stack.rt.store.campaign(1)
        kept = stack.sandbox.model.campaigns.pop(campaign.thingspace_id)  # ThingSpace hiccups
        for _ in range(NOT_FOUND_READS - 1):
            await stack.rt.rollout.reconcile(1)
            stack.clock.advance(seconds=NOT_FOUND_SPACING.total_seconds())
        stack.sandbox.model.campaigns[kept.id] = kept  # and knows it again
        await stack.rt.rollout.reconcile(1)
        stack.sandbox.model.campaigns.pop(kept.id)
        stack.clock.advance(seconds=NOT_FOUND_SPACING.total_seconds())
        await stack.rt.rollout.reconcile(1)
        await stack.settle()
        assert stack.rt.store.campaign(1).state is not S.LOST
        assert lost_texts(stack) == []
