"""Approvals count only while their authors are approvers: at each approval and at the claim."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from bot.standins.thingspace import sandbox_imeis
from commands import blocks
from storage.states import CampaignState
from tests.e2e.test_flow import request_campaign
from tests.e2e.test_preflight import forged_click, schedule
from tests.support.stack import ANN, BOB, EVE, running_stack


async def test_an_approval_by_someone_removed_from_the_approvers_no_longer_counts(tmp_path: Path) -> None:
    async with running_stack(tmp_path, FOTA_REQUIRED_APPROVALS="2") as stack:
        await request_campaign(stack)
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        # ANN leaves the approvers; the bot restarts with the new list.
        stack.env["FOTA_APPROVERS"] = f"{BOB},{EVE}"
        await stack.restart()
        _, url = await stack.click(blocks.ACTION_APPROVE, user=BOB)
        await stack.settle()
        assert "1 of 2" in json.dumps(stack.answers(url))
        assert stack.rt.store.campaign(1).state is CampaignState.PENDING_APPROVAL
        assert stack.thingspace.schedule_posts() == []
        card = json.dumps(stack.root().blocks)
        assert "no longer counted" in card and ANN in card
        await stack.click(blocks.ACTION_APPROVE, user=EVE)
        await stack.settle()
        assert len(stack.thingspace.schedule_posts()) == 1


async def test_an_approver_back_in_the_list_completes_the_set_by_clicking_again(tmp_path: Path) -> None:
    # Their first approval stopped counting while they were out; clicking Approve again (the
    # same content, so no new decision row) makes it count, and that completes the set.
    async with running_stack(tmp_path, FOTA_REQUIRED_APPROVALS="2") as stack:
        await request_campaign(stack)
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        stack.env["FOTA_APPROVERS"] = f"{BOB},{EVE}"
        await stack.restart()
        await stack.click(blocks.ACTION_APPROVE, user=BOB)  # ANN's no longer counts: 1 of 2
        await stack.settle()
        assert stack.rt.store.campaign(1).state is CampaignState.PENDING_APPROVAL
        stack.env["FOTA_APPROVERS"] = f"{ANN},{BOB}"
        await stack.restart()
        _, url = await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        assert "You approved FB-1" in json.dumps(stack.answers(url))
        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTED
        assert len(stack.thingspace.schedule_posts()) == 1


async def test_the_claim_counts_only_current_approvers(tmp_path: Path) -> None:
    async with running_stack(tmp_path, FOTA_REQUIRED_APPROVALS="2") as stack:
        await request_campaign(stack)
        store = stack.rt.store
        campaign = store.campaign(1)
        # Approved with two approvals, then killed before the submission started.
        store.record_approval(1, user=ANN, shown_hash=campaign.content_hash, required=2)
        store.record_approval(1, user=BOB, shown_hash=campaign.content_hash, required=2)
        assert store.campaign(1).state is CampaignState.APPROVED
        stack.env["FOTA_APPROVERS"] = f"{BOB},{EVE}"
        await stack.restart()  # resumes the submission: ANN no longer counts
        await stack.settle()
        campaign = stack.rt.store.campaign(1)
        assert campaign.state is CampaignState.SUBMIT_FAILED and campaign.error_code == "APPROVALS_LAPSED"
        assert ANN in (campaign.error_message or "")
        assert stack.thingspace.schedule_posts() == []


async def test_approve_eligible_marks_an_approval_that_no_longer_counts(tmp_path: Path) -> None:
    """The narrowing path records an approval too: the card says whose earlier one lapsed."""
    licensed = sandbox_imeis(2)
    unlicensed = sandbox_imeis(1, kind="unlicensed")
    async with running_stack(
        tmp_path, FOTA_REQUIRED_APPROVALS="2", FOTA_APPROVERS=f"{ANN},{BOB},{EVE}"
    ) as stack:
        stack.sandbox.mrc_only = True
        await stack.slash(schedule(licensed + unlicensed))
        await stack.settle()
        await stack.click(blocks.ACTION_APPROVE_ELIGIBLE, user=ANN)
        await stack.settle()
        narrowed = stack.rt.store.campaign(1)
        assert narrowed.device_count == 2
        # ANN leaves the approvers; the bot restarts with the new list.
        stack.env["FOTA_APPROVERS"] = f"{BOB},{EVE}"
        await stack.restart()
        # An "Approve eligible" click on the narrowed request (a view showing its current hash).
        url = await forged_click(
            stack, blocks.ACTION_APPROVE_ELIGIBLE, user=BOB, campaign_id=1, shown_hash=narrowed.content_hash
        )
        await stack.settle()
        assert "1 of 2" in json.dumps(stack.answers(url))
        card = json.dumps(stack.root().blocks)
        assert "no longer counted" in card and ANN in card
        assert stack.rt.store.campaign(1).state is CampaignState.PENDING_APPROVAL
        assert stack.thingspace.schedule_posts() == []


async def test_a_group_slack_cannot_list_at_the_claim_delays_the_submission_and_lapses_nothing(
    tmp_path: Path,
) -> None:
    """Unknown is not removed: a Slack hiccup at the claim sends nothing, keeps the approvals, says
    why in the thread, and the retry sends it once Slack answers."""
    async with running_stack(tmp_path, FOTA_REQUIRED_APPROVALS="2", FOTA_APPROVERS="S0RELEASE") as stack:
        stack.standin.add_usergroup("S0RELEASE", ["U0GRP", "U0GR2"])
        await request_campaign(stack)
        store = stack.rt.store
        campaign = store.campaign(1)
        # Approved with two approvals, then killed before the submission started (no cached list).
        store.record_approval(1, user="U0GRP", shown_hash=campaign.content_hash, required=2)
        store.record_approval(1, user="U0GR2", shown_hash=campaign.content_hash, required=2)
        assert store.campaign(1).state is CampaignState.APPROVED
        stack.standin.fail_next("usergroups.users.list", count=100)
        await stack.restart()  # resumes the submission while Slack cannot list the group
        await stack.settle()
        campaign = stack.rt.store.campaign(1)
        assert campaign.state is CampaignState.APPROVED and campaign.error_code is None
        assert stack.thingspace.schedule_posts() == []
        thread = " ".join(stack.thread_texts())
        assert "membership could not be checked" in thread and "retried" in thread
        assert "no longer counted" not in thread
        assert stack.rt.jobs.run_date("submit:1") == stack.clock() + dt.timedelta(seconds=30)
        # Slack answers again: the retry claims and sends it, once.
        stack.standin.clear_faults()
        stack.clock.advance(seconds=30)
        await stack.settle()
        assert len(stack.thingspace.schedule_posts()) == 1
        assert stack.rt.store.campaign(1).state is not CampaignState.SUBMIT_FAILED
        stack.clock.advance(minutes=30)
        await stack.settle()
        await stack.restart()
        await stack.settle()
        assert len(stack.thingspace.schedule_posts()) == 1


async def test_an_approval_click_slack_cannot_check_records_nothing(tmp_path: Path) -> None:
    async with running_stack(tmp_path, FOTA_APPROVERS="S0RELEASE") as stack:
        stack.standin.add_usergroup("S0RELEASE", ["U0GRP"])
        await request_campaign(stack)
        stack.standin.fail_next("usergroups.users.list", count=100)
        _, url = await stack.click(blocks.ACTION_APPROVE, user="U0GRP")
        await stack.settle()
        answer = json.dumps(stack.answers(url))
        assert "membership could not be checked" in answer and "not one of them" not in answer
        assert stack.rt.store.decisions(1) == []
        assert stack.rt.store.campaign(1).state is CampaignState.PENDING_APPROVAL
        stack.standin.clear_faults()
        await stack.click(blocks.ACTION_APPROVE, user="U0GRP")
        await stack.settle()
        assert len(stack.thingspace.schedule_posts()) == 1
