"""ThingSpace's own answer is the authority over callbacks (unsigned hints): forged ends, flipped
devices, other accounts, future times, junk floods and callbacks for campaigns never known."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from bot.standins.thingspace import sandbox_imeis
from commands import blocks
from storage.states import CampaignState
from tests.e2e.test_rollout import approve_and_submit, post_callback, schedule_text
from tests.support.stack import ANN, Stack, running_stack

FUTURE = "2099-01-01T00:00:00Z"
OTHER_ACCOUNT = "9999999999-00001"


def campaign_reads(stack: Stack) -> int:
    """GETs of the campaign itself at ThingSpace: one per re-read."""
    campaign = stack.rt.store.campaign(1)
    return len([s for s in stack.thingspace.seen
                if s.method == "GET" and s.path.endswith(f"/campaigns/{campaign.account}/{campaign.thingspace_id}")])


async def test_a_forged_end_of_a_campaign_not_started_is_overruled_by_thingspace(tmp_path: Path) -> None:
    imeis = sandbox_imeis(4, kind="eligible")
    async with running_stack(tmp_path) as stack:
        await approve_and_submit(stack, imeis)
        ts_id = stack.rt.store.campaign(1).thingspace_id
        forged = [{"campaignId": ts_id, "deviceId": imei, "status": "UpgradeFailed", "reason": "forged",
                   "timestamp": FUTURE} for imei in imeis]
        assert await post_callback(stack, forged) == 200
        assert await post_callback(stack, {"campaignId": ts_id, "status": "CampaignEnded", "timestamp": FUTURE}) == 200
        await stack.settle()
        stack.clock.advance(seconds=60)
        await stack.settle()
        campaign = stack.rt.store.campaign(1)
        assert not campaign.state.is_terminal
        # ThingSpace's report (still pending there) replaced what the forged callback said.
        assert stack.rt.store.device_counts(1)["failed"] == 0
        # So the campaign can still be cancelled before its start.
        response, url = await stack.slash("cancel FB-1")
        await stack.settle()
        assert "nothing to cancel" not in json.dumps(stack.answers(url)) + response.text


async def test_a_device_thingspace_confirmed_final_never_changes(tmp_path: Path) -> None:
    imeis = sandbox_imeis(3, kind="eligible")
    async with running_stack(tmp_path) as stack:
        await approve_and_submit(stack, imeis)
        await stack.run_sandbox(60, step=2.0)
        stack.clock.advance(seconds=60)
        await stack.settle()
        assert stack.rt.store.campaign(1).state is CampaignState.ENDED
        assert stack.rt.store.device_counts(1)["succeeded"] == 3
        ts_id = stack.rt.store.campaign(1).thingspace_id
        for account in (OTHER_ACCOUNT, stack.rt.store.campaign(1).account):
            flip = {"accountName": account, "campaignId": ts_id, "deviceId": imeis[0], "status": "UpgradeFailed",
                    "reason": "forged"}
            assert await post_callback(stack, flip) == 200
            await stack.settle()
        assert stack.rt.store.device_counts(1)["succeeded"] == 3
        assert [d.status for d in stack.rt.store.devices(1)] == ["UpgradeSuccess"] * 3


async def test_a_callback_naming_another_account_changes_nothing(tmp_path: Path) -> None:
    imeis = sandbox_imeis(2, kind="eligible")
    async with running_stack(tmp_path) as stack:
        await approve_and_submit(stack, imeis)
        campaign = stack.rt.store.campaign(1)
        update = {"campaignId": campaign.thingspace_id, "deviceId": imeis[0], "status": "UpgradeFailed", "reason": "x"}
        assert await post_callback(stack, {**update, "accountName": OTHER_ACCOUNT}) == 200
        await stack.settle()
        assert stack.rt.store.devices(1)[0].status != "UpgradeFailed"
        assert stack.rt.rollout.ignored_count == 1
        # The same callback naming the campaign's own account is applied (until a re-read says otherwise).
        assert await post_callback(stack, {**update, "accountName": campaign.account}) == 200
        await stack.settle()
        assert stack.rt.store.devices(1)[0].status == "UpgradeFailed"


def test_a_time_from_the_future_does_not_make_true_reports_look_old(tmp_path: Path) -> None:
    from storage.store import Store
    from tests.conftest import ManualClock

    clock = ManualClock()
    store = Store.open(tmp_path / "fota.db", clock=clock)
    try:
        campaign = store.create_campaign(
            requester="U0REQ", account="0000000000-00001", firmware_name="f", firmware_from="a",
            firmware_to="b", protocol="LWM2M", start_date=clock().date(), end_date=clock().date(),
            windows=(), name=None, devices=["354658090353977"], sandbox=True,
            expires_at=clock() + dt.timedelta(days=1),
        )
        store.apply_device_updates(campaign.id, [("354658090353977", "UpgradeScheduled", None, FUTURE)])
        clock.advance(minutes=1)
        changes = store.apply_device_updates(
            campaign.id, [("354658090353977", "UpgradeInProgress", None, clock().isoformat())]
        )
        assert changes and store.devices(campaign.id)[0].status == "UpgradeInProgress"
    finally:
        store.close()


async def test_junk_callbacks_cost_thingspace_one_reread_a_minute(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await approve_and_submit(stack, sandbox_imeis(2, kind="eligible"))
        await stack.settle()
        before = campaign_reads(stack)
        for _ in range(100):  # 100 junk callbacks over 10 seconds
            assert await post_callback(stack, {}) == 200
            assert await post_callback(stack, {"accountName": "0000000000-00001", "odd": 1}) == 200
            await stack.settle()
            stack.clock.advance(seconds=0.1)
            await stack.settle()
        assert campaign_reads(stack) - before <= 1
        stack.clock.advance(seconds=60)
        await stack.settle()
        assert campaign_reads(stack) - before <= 2


async def test_callbacks_for_a_campaign_never_known_are_kept_a_bounded_time(tmp_path: Path) -> None:
    imeis = sandbox_imeis(2, kind="eligible")
    async with running_stack(tmp_path) as stack:
        response, _ = await stack.slash(f"schedule firmware=SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657 "
                                        f"start=today end=+3d devices={','.join(imeis)}")
        await stack.settle()
        ghost = {"campaignId": "ghost-1", "deviceId": imeis[0], "status": "UpgradeFailed", "reason": "planted"}
        assert await post_callback(stack, ghost) == 200
        await stack.settle()
        stack.clock.advance(hours=2)
        await stack.rt.rollout.watchdog()
        waiting = stack.rt.store.db.execute("SELECT count(*) FROM callbacks WHERE applied = 0").fetchone()[0]
        assert waiting == 0
        # A campaign that later gets that id at ThingSpace does not take the planted callback.
        store = stack.rt.store
        campaign = store.campaign(1)
        from tests.support.stack import ANN

        store.record_approval(1, user=ANN, shown_hash=campaign.content_hash, required=1)
        store.claim_for_submission(1, required=1)
        updated = store.transition(1, CampaignState.SUBMITTED, actor="t", reason="t", thingspace_id="ghost-1")
        assert stack.rt.rollout.adopt_waiting_callbacks(updated) == 0
        assert store.devices(1)[0].status is None


async def test_a_reread_puts_back_a_status_only_a_forged_callback_moved_forward(tmp_path: Path) -> None:
    imeis = sandbox_imeis(2, kind="eligible")
    async with running_stack(tmp_path) as stack:
        # Starting in two days: ThingSpace holds it pre-scheduled until then.
        await stack.slash(schedule_text(imeis).replace("start=today", "start=+2d"))
        await stack.settle()
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        await stack.run_sandbox(6, step=1.0)
        stack.clock.advance(seconds=60)
        await stack.settle()
        store = stack.rt.store
        assert store.campaign(1).state is CampaignState.PRE_SCHEDULED  # ThingSpace's answer
        assert not store.campaign(1).status_from_callback  # a re-read confirmed it
        ts_id = store.campaign(1).thingspace_id
        # A forged callback: the campaign has started, it says.
        assert await post_callback(stack, {"campaignId": ts_id, "status": "CampaignScheduled"}) == 200
        await stack.settle()
        assert store.campaign(1).state is CampaignState.SCHEDULED
        assert store.campaign(1).status_from_callback
        stack.clock.advance(seconds=60)  # the re-read the callback asked for
        await stack.settle()
        campaign = store.campaign(1)
        assert campaign.state is CampaignState.PRE_SCHEDULED
        assert campaign.thingspace_status == "CampaignPreScheduled"
        last = store.audit(1)[-1]
        assert (last["from_state"], last["to_state"]) == ("CampaignScheduled", "CampaignPreScheduled")
        assert "corrected by ThingSpace's answer" in last["reason"]
        # So /fota cancel offers it as a campaign not started yet.
        response, url = await stack.slash("cancel FB-1")
        await stack.settle()
        offered = json.dumps(stack.answers(url)) + response.text
        assert "Cancel Ref FB-1 at ThingSpace?" in offered
        assert "may consider it started already" not in offered


def test_corrections_stay_between_live_statuses_and_only_go_back() -> None:
    from storage.states import ALLOWED, CORRECTIONS, IllegalTransition, check_transition

    S = CampaignState
    for later, earlier in CORRECTIONS.items():
        assert later.is_thingspace and not later.is_terminal
        assert all(e.is_thingspace and not e.is_terminal and later in ALLOWED[e] for e in earlier)
    check_transition("FB-1", S.SCHEDULED, S.PRE_SCHEDULED, correction=True)
    for current, wanted in ((S.ENDED, S.SCHEDULED), (S.PRE_SCHEDULED, S.SCHEDULED), (S.SCHEDULED, S.SUBMITTED)):
        try:
            check_transition("FB-1", current, wanted, correction=True)
        except IllegalTransition:
            continue
        raise AssertionError(f"{current} -> {wanted} passed as a correction")
