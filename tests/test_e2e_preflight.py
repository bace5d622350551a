"""Pre-flight checks end to end (issue 6): through the real HTTP app with Slack-signed requests,
the recording Slack stand-in and the sandbox behind a recording transport."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.sandbox import sandbox_imeis
from commands import blocks
from storage import preflight as stored
from storage.states import CampaignState
from storage.store import NotApproved
from tests.support.slack import block_action_body
from tests.support.stack import ANN, BOB, CHANNEL, FIRMWARE, Stack, running_stack
from tests.test_e2e_flow import action_ids

DEVICES_PATH = "/api/fota/v3/devices/"


def schedule(imeis: list[str], *, to: str = "SR1.2.0.0-10657", extra: str = "") -> str:
    return (
        f"schedule firmware={FIRMWARE} from=SR1.2.0.0-10512 to={to} "
        f"start=today end=+3d devices={','.join(imeis)} {extra}"
    ).strip()


def card_text(stack: Stack) -> str:
    return json.dumps(stack.root().blocks, ensure_ascii=False)


async def forged_click(
    stack: Stack, action_id: str, *, user: str, campaign_id: int, shown_hash: str
) -> str:
    """A click carrying a value the current card does not offer (an old or tampered payload)."""
    response_url = stack.standin.new_response_url(user_id=user)
    body = block_action_body(
        action_id,
        blocks.action_value(campaign_id, shown_hash),
        user_id=user,
        channel_id=CHANNEL,
        message_ts=stack.root().ts,
        response_url=response_url,
    )
    response = await stack.post_slack(body)
    assert response.status_code == 200
    return response_url


def answers(stack: Stack, response_url: str) -> str:
    return json.dumps(stack.answers(response_url), ensure_ascii=False)


async def test_the_card_is_posted_checking_and_edited_when_the_findings_land(
    tmp_path: Path,
) -> None:
    imeis = sandbox_imeis(3)
    async with running_stack(tmp_path) as stack:
        # ThingSpace is slow to answer about the devices: the card goes out first.
        stack.sandbox.delay_next(DEVICES_PATH, 0.5, before=True)
        response, _ = await stack.slash(schedule(imeis))
        assert (
            response.status_code == 200 and "Checking your request for 3 devices" in response.text
        )
        for _ in range(200):
            await asyncio.sleep(0.005)
            await stack.rt.sender.drain()
            if stack.standin.messages(CHANNEL):
                break
        checking = stack.root().to_slack()
        assert "checking…" in json.dumps(checking, ensure_ascii=False)
        assert blocks.ACTION_APPROVE not in action_ids(checking["blocks"])
        shown_while_checking = stack.rt.store.campaign(1).content_hash

        # A click carrying the checking card's hash cannot approve what is not checked yet.
        early = await forged_click(
            stack, blocks.ACTION_APPROVE, user=ANN, campaign_id=1, shown_hash=shown_while_checking
        )
        await stack.settle()
        assert "still being checked" in answers(stack, early)
        assert stack.rt.store.decisions(1) == []

        # The findings landed: the same message was edited in place and offers Approve.
        root = stack.root()
        assert root.ts == checking["ts"] and root.edits
        assert "Pre-flight findings" in card_text(
            stack
        ) and "*3 of 3 devices eligible*" in card_text(stack)
        assert blocks.ACTION_APPROVE in action_ids(root.blocks)
        record = stored.load(stack.rt.store, 1)
        assert record is not None and record.summary is not None
        assert record.summary.digest[:12] in card_text(stack)

        # The checking card's hash is stale now: findings are part of the approved content.
        late = await forged_click(
            stack, blocks.ACTION_APPROVE, user=ANN, campaign_id=1, shown_hash=shown_while_checking
        )
        await stack.settle()
        assert "changed after this card was shown" in answers(stack, late)
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        [post] = stack.thingspace.schedule_posts()
        assert post.json()["deviceList"] == imeis


async def test_unknown_firmware_disables_approve_and_the_guard_refuses_it(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await stack.slash(schedule(sandbox_imeis(2), to="SR9.9"))
        await stack.settle()
        text = card_text(stack)
        assert "Approve is disabled" in text and "not for SR1.2.0.0-10512 → SR9.9" in text
        assert blocks.ACTION_APPROVE not in action_ids(stack.root().blocks)
        assert blocks.ACTION_APPROVE_ELIGIBLE not in action_ids(stack.root().blocks)

        campaign = stack.rt.store.campaign(1)
        for action in (blocks.ACTION_APPROVE, blocks.ACTION_APPROVE_ELIGIBLE):
            url = await forged_click(
                stack, action, user=ANN, campaign_id=1, shown_hash=campaign.content_hash
            )
            await stack.settle()
            assert "cannot be approved" in answers(stack, url) and "SR9.9" in answers(stack, url)
        assert stack.rt.store.decisions(1) == []

        # The guard holds on every path: straight through the store, and at submission.
        with pytest.raises(NotApproved, match="cannot be approved"):
            stack.rt.store.record_approval(
                1, user=ANN, shown_hash=campaign.content_hash, required=1
            )
        stack.rt.store.transition(
            1, CampaignState.APPROVED, actor="test", reason="bypassing approvals"
        )
        assert await stack.rt.submitter.submit(1) is None
        assert stack.thingspace.schedule_posts() == []


async def test_no_eligible_device_disables_approve(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        imeis = sandbox_imeis(2, kind="unknown") + sandbox_imeis(1, kind="ineligible")
        await stack.slash(schedule(imeis))
        await stack.settle()
        text = card_text(stack)
        assert (
            "Approve is disabled" in text and "None of the 3 devices can take this upgrade" in text
        )
        assert "2 devices not in account" in text and "1 device not FOTA-eligible" in text
        assert action_ids(stack.root().blocks) == {blocks.ACTION_REJECT, blocks.ACTION_WITHDRAW}
        url = await forged_click(
            stack,
            blocks.ACTION_APPROVE,
            user=ANN,
            campaign_id=1,
            shown_hash=stack.rt.store.campaign(1).content_hash,
        )
        await stack.settle()
        assert "cannot be approved" in answers(stack, url)
        assert stack.thingspace.schedule_posts() == []


async def test_approve_eligible_only_sends_exactly_the_eligible_devices(tmp_path: Path) -> None:
    eligible = sandbox_imeis(3)
    left_out = sandbox_imeis(1, kind="unknown") + sandbox_imeis(1, kind="ineligible")
    imeis = [eligible[0], left_out[0], eligible[1], left_out[1], eligible[2]]
    async with running_stack(tmp_path, FOTA_REQUIRED_APPROVALS="2") as stack:
        await stack.slash(schedule(imeis))
        await stack.settle()
        assert "*3 of 5 devices eligible*" in card_text(stack)
        full_hash = stack.rt.store.campaign(1).content_hash

        # Ann approves the full list; Bob then approves the eligible devices only.
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        _, bob = await stack.click(blocks.ACTION_APPROVE_ELIGIBLE, user=BOB)
        await stack.settle()
        assert "3 eligible devices; 2 left out" in answers(stack, bob) and "1 of 2" in answers(
            stack, bob
        )

        campaign = stack.rt.store.campaign(1)
        assert campaign.content_hash != full_hash and campaign.device_count == 3
        assert stack.rt.store.device_ids(1) == eligible
        # Nothing is deleted: the devices left out stay on record, marked with when.
        kept = stack.rt.store.db.execute(
            "SELECT imei, dropped_at IS NOT NULL FROM devices WHERE campaign_id = 1 ORDER BY rowid"
        ).fetchall()
        assert kept == [(imei, imei in left_out) for imei in imeis]
        thread = " ".join(stack.thread_texts())
        assert "approved the eligible devices only" in thread and "no longer count" in thread
        # Ann's approval was given to the full list: it does not count for what is sent now.
        assert stack.thingspace.schedule_posts() == []
        assert "1 of 2 approvals" in card_text(stack)
        assert blocks.ACTION_APPROVE_ELIGIBLE not in action_ids(stack.root().blocks)

        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        [post] = stack.thingspace.schedule_posts()
        assert post.json()["deviceList"] == eligible
        decisions = stack.rt.store.decisions(1)
        assert {d.user for d in decisions} == {ANN, BOB}
        assert all(d.content_hash == campaign.content_hash for d in decisions)
        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTED


async def test_a_monthly_only_account_needs_licences_and_eligible_only_leaves_them_out(
    tmp_path: Path,
) -> None:
    licensed = sandbox_imeis(2)
    unlicensed = sandbox_imeis(1, kind="unlicensed")
    async with running_stack(tmp_path) as stack:
        stack.sandbox.mrc_only = True
        await stack.slash(schedule(licensed + unlicensed))
        await stack.settle()
        text = card_text(stack)
        assert "1 device without a licence" in text and "monthly-only" in text
        assert "*2 of 3 devices eligible*" in text
        await stack.click(blocks.ACTION_APPROVE_ELIGIBLE, user=ANN)
        await stack.settle()
        [post] = stack.thingspace.schedule_posts()
        assert post.json()["deviceList"] == licensed
        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTED

    # The same request on an account with per-event licences: nothing to leave out.
    async with running_stack(tmp_path / "events") as stack:
        await stack.slash(schedule(licensed + unlicensed))
        await stack.settle()
        assert "*3 of 3 devices eligible*" in card_text(stack)
        assert blocks.ACTION_APPROVE_ELIGIBLE not in action_ids(stack.root().blocks)


async def test_a_conflict_with_another_active_campaign_is_on_the_card(tmp_path: Path) -> None:
    imeis = sandbox_imeis(4)
    async with running_stack(tmp_path) as stack:
        await stack.slash(schedule(imeis[:3], extra="window=18-22"))
        await stack.settle()
        await stack.slash(schedule(imeis[1:], extra="window=20-24"))
        await stack.settle()
        text = card_text(stack)
        assert "*Ref FB-1* (pending approval) already holds 2 devices" in text
        assert "its dates overlap; its windows overlap" in text
        assert "2 devices already in another active campaign" in text
        # A warning, not a block.
        assert blocks.ACTION_APPROVE in action_ids(stack.root().blocks)


async def test_an_interrupted_preflight_is_run_again_at_start_up(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        stack.sandbox.delay_next(DEVICES_PATH, 30, before=True)
        await stack.slash(schedule(sandbox_imeis(2)))
        for _ in range(200):
            await asyncio.sleep(0.005)
            record = stored.load(stack.rt.store, 1)
            if record is not None:
                break
        # The process dies while ThingSpace is still answering.
        await stack.rt.background.cancel_all()
        record = stored.load(stack.rt.store, 1)
        assert record is not None and record.status == stored.CHECKING
        await stack.restart()
        await stack.settle()
        record = stored.load(stack.rt.store, 1)
        assert record is not None and record.status == stored.DONE and record.attempts == 2
        assert blocks.ACTION_APPROVE in action_ids(stack.root().blocks)


async def test_a_failed_preflight_can_be_run_again_from_the_card(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        # ThingSpace refuses the device query (a 5xx would be retried by the client first).
        stack.sandbox.fail_next(
            DEVICES_PATH, 400, error_code="INVALID_ACCOUNT", error_message="Account locked"
        )
        await stack.slash(schedule(sandbox_imeis(2)))
        await stack.settle()
        text = card_text(stack)
        assert "could not finish" in text and "Account locked" in text
        assert blocks.ACTION_APPROVE not in action_ids(stack.root().blocks)
        stack.sandbox.clear_faults()
        _, url = await stack.click(blocks.ACTION_PREFLIGHT_RETRY, user=ANN)
        await stack.settle()
        assert "again" in answers(stack, url)
        assert blocks.ACTION_APPROVE in action_ids(stack.root().blocks)
