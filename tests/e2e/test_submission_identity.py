"""A campaign at ThingSpace is taken for this request only when it is this installation's and
this request's; only real failures use up a submission's retries."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from storage.states import CampaignState
from tests.e2e.test_faults_thingspace import (
    SCHEDULE_PATH,
    approved,
    quiet,
    requested,
    schedule_attempts,
)
from tests.support.stack import ANN, FIRMWARE, Stack, running_stack

ACCOUNT = "0000000000-00001"
OTHER_DEVICES = ["356938035643809"]


async def plant(stack: Stack, name: str, *, end: dt.date | None = None, devices: list[str] = OTHER_DEVICES) -> str:
    """A campaign already at ThingSpace (another installation's, or anybody's) with `name`."""
    today = stack.sandbox_clock.today()
    body = {
        "campaignName": name, "firmwareName": FIRMWARE, "firmwareFrom": "SR1.2.0.0-10512",
        "firmwareTo": "SR1.2.0.0-10657", "protocol": "LWM2M", "startDate": today.isoformat(),
        "endDate": (end or today + dt.timedelta(days=3)).isoformat(), "deviceList": devices,
        "autoAssignLicenseFlag": False, "autoAddDevicesFlag": False,
    }
    answer = await stack.rt.thingspace.schedule_campaign(ACCOUNT, body)
    return str(answer["id"])


async def test_a_fresh_database_never_adopts_another_installations_campaign(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        quiet(stack)
        # The old installation's FB-1, as it was named before (and with another id after).
        old = await plant(stack, "fota-bot FB-1")
        other = await plant(stack, "fota-bot FB-1·0000", devices=["490154203237518"])
        await stack.thingspace_quiet(lambda: stack.rt.thingspace.cancel_campaign(ACCOUNT, old))
        await requested(stack)
        campaign = stack.rt.store.campaign(1)
        assert campaign.thingspace_name == f"fota-bot FB-1·{stack.rt.store.installation_id()}"
        stack.sandbox.fail_next(SCHEDULE_PATH, 502)
        await approved(stack)
        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTING  # not "found"
        stack.clock.advance(minutes=11)
        await stack.settle()
        stack.clock.advance(minutes=5)
        await stack.settle()
        campaign = stack.rt.store.campaign(1)
        assert campaign.state is CampaignState.SUBMITTED
        assert campaign.thingspace_id not in (old, other)
        assert schedule_attempts(stack) == 2 + 2  # the two planted, the 502, the real one


async def test_a_campaign_with_this_name_but_other_content_is_not_taken_and_nothing_is_sent(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        quiet(stack)
        await requested(stack)
        name = stack.rt.store.campaign(1).thingspace_name
        today = stack.sandbox_clock.today()
        planted = await plant(stack, name, end=today + dt.timedelta(days=5))
        stack.sandbox.fail_next(SCHEDULE_PATH, 502)
        await approved(stack)
        campaign = stack.rt.store.campaign(1)
        assert campaign.state is CampaignState.SUBMIT_FAILED
        assert campaign.error_code == "NAME_IN_USE" and "endDate" in (campaign.error_message or "")
        assert campaign.thingspace_id is None and campaign.thingspace_id != planted
        assert schedule_attempts(stack) == 2  # the planted one and the 502: never posted again


async def test_a_campaign_with_this_name_and_content_is_taken_after_a_lost_answer(tmp_path: Path) -> None:
    """The control: the same look-up does adopt the campaign an unanswered POST created."""
    async with running_stack(tmp_path) as stack:
        quiet(stack)
        await requested(stack)
        name = stack.rt.store.campaign(1).thingspace_name
        devices = stack.rt.store.device_ids(1)
        created = await plant(stack, name, devices=devices)
        stack.sandbox.fail_next(SCHEDULE_PATH, 502)
        await approved(stack)
        campaign = stack.rt.store.campaign(1)
        assert campaign.state is CampaignState.SUBMITTED and campaign.thingspace_id == created


async def test_restarts_while_waiting_for_thingspaces_reports_do_not_use_up_the_retries(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        quiet(stack)
        await requested(stack)
        store = stack.rt.store
        # Killed just before the POST: the attempt was counted, nothing was sent.
        store.record_approval(1, user=ANN, shown_hash=store.campaign(1).content_hash, required=1)
        claimed = store.claim_for_submission(1, required=1)
        store.record_post(claimed.id, stack.clock())
        for _ in range(12):  # twelve quick graceful restarts
            await stack.restart()
            quiet(stack)
            await stack.settle()
            stack.clock.advance(seconds=5)
        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTING
        stack.clock.advance(minutes=11)
        await stack.settle()
        stack.clock.advance(minutes=10)
        await stack.settle()
        campaign = stack.rt.store.campaign(1)
        assert campaign.state is CampaignState.SUBMITTED, campaign.error_message
        assert schedule_attempts(stack) == 1 and len(stack.sandbox.campaigns) == 1
