"""Staged rollouts on record: the plan bound into the hash, waves as campaigns of their own, and
the guard that sends each wave on the plan's approvals and never the request whole."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from bot.workflow.planner import assign
from storage import waves
from storage.migrations import migrations
from storage.model import Campaign, NotApproved, WaveRefused, plan_hash, request_hash
from storage.plan import WHOLE, DeviceFacts, RolloutPlan
from storage.states import CampaignState
from storage.store import Store
from tests.conftest import ManualClock
from tests.e2e.test_flow import request_campaign
from tests.support.stack import ANN, BOB, REQUESTER, running_stack

S = CampaignState
PLAN = RolloutPlan(canary=1, waves=(5_000, WHOLE))


def _request(store: Store, clock: ManualClock, devices: list[str], name: str | None = "Q3") -> Campaign:
    import datetime as dt

    return store.create_campaign(
        requester=REQUESTER,
        account="0000000000-00001",
        firmware_name="FW",
        firmware_from="A",
        firmware_to="B",
        protocol="LWM2M",
        start_date=clock().date(),
        end_date=clock().date() + dt.timedelta(days=3),
        windows=(),
        name=name,
        devices=devices,
        sandbox=True,
        expires_at=clock() + dt.timedelta(hours=24),
    )


def _facts(imeis: list[str]) -> list[DeviceFacts]:
    return [DeviceFacts(imei, "SEQUANS", f"M{i % 2}", "SR1") for i, imei in enumerate(imeis)]


DEVICES = [f"35465809035{n:04d}" for n in range(6)]


def _planned(store: Store, clock: ManualClock) -> Campaign:
    campaign = _request(store, clock, DEVICES)
    return waves.bind_plan(store, campaign.id, PLAN, assign(PLAN, _facts(DEVICES)))


def _approve(store: Store, campaign: Campaign, user: str = ANN) -> None:
    store.record_approval(campaign.id, user=user, shown_hash=campaign.content_hash, required=1)


# --- schema ----------------------------------------------------------------------------------


def test_a_database_from_before_staged_rollouts_migrates_and_keeps_its_campaigns(
    db_path: Path, clock: ManualClock
) -> None:
    legacy = Database(sqlite3.connect(db_path))
    migrations.apply(legacy, stop_before="m008_staged_rollouts")
    legacy.close()
    store = Store.open(db_path, clock=clock)
    try:
        campaign = _request(store, clock, DEVICES[:2])
        assert {"parent_id", "wave", "waves_total"} <= set(store.db["campaigns"].columns_dict)
        assert {"rollout_plans", "waves", "wave_devices"} <= set(store.db.table_names())
        assert campaign.parent_id is None and campaign.thingspace_name == f"Q3 [FB-1·{store.installation_id()}]"
        assert migrations.pending(store.db) == []
    finally:
        store.close()


def test_rows_written_before_the_migration_read_back_as_one_wave(db_path: Path, clock: ManualClock) -> None:
    legacy = Database(sqlite3.connect(db_path))
    migrations.apply(legacy, stop_before="m008_staged_rollouts")
    legacy.execute(
        """INSERT INTO campaigns(state, requester, account, firmware_name, firmware_from, firmware_to,
           protocol, start_date, end_date, windows, name, device_count, content_hash, sandbox,
           created_at, updated_at, expires_at, notes)
           VALUES('CampaignEnded', 'U1', '1-1', 'FW', 'A', 'B', 'LWM2M', '2026-11-01', '2026-11-02',
           '[]', NULL, 1, 'h', 0, '2026-11-01T00:00:00+00:00', '2026-11-01T00:00:00+00:00',
           '2026-11-02T00:00:00+00:00', '[]')"""
    )
    legacy.conn.commit()
    legacy.close()
    store = Store.open(db_path, clock=clock)
    try:
        old = store.campaign(1)
        assert (old.parent_id, old.wave, old.waves_total) == (None, None, None)
        assert old.thingspace_name == "fota-bot FB-1"
        assert waves.load(store.db, 1) is None
    finally:
        store.close()


# --- binding the plan -----------------------------------------------------------------------------


def test_the_plan_is_bound_into_the_content_hash(store: Store, clock: ManualClock) -> None:
    campaign = _request(store, clock, DEVICES)
    approved_before = campaign.content_hash
    planned = waves.bind_plan(store, campaign.id, PLAN, assign(PLAN, _facts(DEVICES)))
    assert planned.content_hash != approved_before
    # The same plan bound again gives the same hash; another plan another one.
    again = waves.bind_plan(store, campaign.id, PLAN, assign(PLAN, _facts(DEVICES)))
    assert again.content_hash == planned.content_hash
    other = RolloutPlan(canary=2, waves=(5_000, WHOLE))
    changed = waves.bind_plan(store, campaign.id, other, assign(other, _facts(DEVICES)))
    assert changed.content_hash != planned.content_hash

    stored = waves.load(store.db, campaign.id)
    assert stored is not None and stored.plan == other and stored.bound_hash == changed.content_hash
    assert [(w.number, w.label, w.size) for w in stored.waves] == [(1, "canary", 2), (2, "50%", 2), (3, "100%", 2)]
    assert sorted(i for w in stored.waves for i in waves.wave_devices(store.db, campaign.id, w.number)) == sorted(DEVICES)


def test_an_approval_given_before_the_plan_does_not_approve_it(store: Store, clock: ManualClock) -> None:
    campaign = _request(store, clock, DEVICES)
    shown = campaign.content_hash
    waves.bind_plan(store, campaign.id, PLAN, assign(PLAN, _facts(DEVICES)))
    result = store.record_approval(campaign.id, user=ANN, shown_hash=shown, required=1)
    assert result.outcome.name == "STALE"
    assert store.campaign(campaign.id).state is S.PENDING_APPROVAL


def test_a_plan_holds_devices_of_the_request_each_once(store: Store, clock: ManualClock) -> None:
    campaign = _request(store, clock, DEVICES)
    foreign = _facts([*DEVICES[:-1], "354658090359999"])
    with pytest.raises(ValueError):
        waves.bind_plan(store, campaign.id, PLAN, assign(PLAN, foreign))
    assert waves.load(store.db, campaign.id) is None
    # Its eligible devices only (one excluded by pre-flight): fine, the excluded one is in no wave.
    waves.bind_plan(store, campaign.id, PLAN, assign(PLAN, _facts(DEVICES[:-1])))
    stored = waves.load(store.db, campaign.id)
    assert stored is not None and sum(w.size for w in stored.waves) == len(DEVICES) - 1


def test_a_staged_request_cannot_be_approved_before_its_waves_are_planned(store: Store, clock: ManualClock) -> None:
    import datetime as dt

    campaign = store.create_campaign(
        requester=REQUESTER,
        account="0000000000-00001",
        firmware_name="FW",
        firmware_from="A",
        firmware_to="B",
        protocol="LWM2M",
        start_date=clock().date(),
        end_date=clock().date() + dt.timedelta(days=3),
        windows=(),
        name=None,
        devices=DEVICES,
        sandbox=True,
        expires_at=clock() + dt.timedelta(hours=24),
        plan=PLAN,
    )
    with pytest.raises(NotApproved, match="planned once its pre-flight checks finish"):
        store.record_approval(campaign.id, user=ANN, shown_hash=campaign.content_hash, required=1)
    planned = waves.bind_plan(store, campaign.id, PLAN, assign(PLAN, _facts(DEVICES)))
    assert store.record_approval(campaign.id, user=ANN, shown_hash=planned.content_hash, required=1).outcome.name == "APPROVED"
    with pytest.raises(NotApproved, match="never whole"):
        store.claim_for_submission(campaign.id, required=1)


def test_narrowing_keeps_the_same_plan_bound(store: Store, clock: ManualClock) -> None:
    campaign = _request(store, clock, DEVICES)
    planned = waves.bind_plan(store, campaign.id, PLAN, assign(PLAN, _facts(DEVICES)))
    bound = waves.rebind(store.db, campaign.id, "new-base")
    assert bound == plan_hash("new-base", PLAN, assign(PLAN, _facts(DEVICES)))
    assert bound != planned.content_hash


# --- the guard ------------------------------------------------------------------------------------


def test_an_approved_plan_is_never_claimed_whole(store: Store, clock: ManualClock) -> None:
    campaign = _planned(store, clock)
    _approve(store, campaign)
    assert store.campaign(campaign.id).state is S.APPROVED
    with pytest.raises(NotApproved, match="wave by wave, never whole"):
        store.claim_for_submission(campaign.id, required=1)


def test_wave_one_is_claimed_on_the_plans_approvals(store: Store, clock: ManualClock) -> None:
    campaign = _planned(store, clock)
    with pytest.raises(WaveRefused, match="not an approved rollout"):
        waves.start_wave(store, campaign.id, 1, by=ANN, reason="approved")
    _approve(store, campaign)
    clock.advance(days=1)
    first = waves.start_wave(store, campaign.id, 1, by=ANN, reason="approved")
    assert (first.parent_id, first.wave, first.waves_total, first.state) == (campaign.id, 1, 3, S.APPROVED)
    assert first.thingspace_name == f"Q3 [FB-1·{store.installation_id()} w1/3]"
    assert first.start_date == clock().date()  # the day it is started
    assert first.end_date - first.start_date == campaign.end_date - campaign.start_date
    assert store.device_ids(first.id) == waves.wave_devices(store.db, campaign.id, 1)
    # A wave's hash is taken as a request's: what its own body sends.
    assert first.content_hash == request_hash(first, store.device_ids(first.id))
    # A second start (a double click, a retry) is the same wave: one campaign.
    assert waves.start_wave(store, campaign.id, 1, by=BOB, reason="again").id == first.id
    assert store.claim_for_submission(first.id, required=1).state is S.SUBMITTING


def test_a_wave_is_not_sent_when_the_request_is_not_approved(store: Store, clock: ManualClock) -> None:
    campaign = _planned(store, clock)
    _approve(store, campaign)
    first = waves.start_wave(store, campaign.id, 1, by=ANN, reason="approved")
    # The approval is taken away from under the wave (a hand edit of the database).
    store.db.execute("DELETE FROM decisions")
    store.db.conn.commit()
    with pytest.raises(NotApproved, match="no recorded approval of its plan"):
        store.claim_for_submission(first.id, required=1)


def test_a_wave_whose_devices_were_changed_is_refused(store: Store, clock: ManualClock) -> None:
    campaign = _planned(store, clock)
    _approve(store, campaign)
    first = waves.start_wave(store, campaign.id, 1, by=ANN, reason="approved")
    store.db.execute("INSERT INTO devices(campaign_id, imei) VALUES(?, '354658090359999')", [first.id])
    store.db.conn.commit()
    with pytest.raises(NotApproved, match="not those of wave 1"):
        store.claim_for_submission(first.id, required=1)


def test_later_waves_wait_for_the_one_before_and_not_for_the_requester(store: Store, clock: ManualClock) -> None:
    campaign = _planned(store, clock)
    _approve(store, campaign)
    first = waves.start_wave(store, campaign.id, 1, by=ANN, reason="approved")
    with pytest.raises(WaveRefused, match="wave 1 of FB-1 has not ended yet"):
        waves.start_wave(store, campaign.id, 2, by=BOB, reason="promoted")
    with pytest.raises(WaveRefused, match="wave 2 of FB-1 has not started"):
        waves.start_wave(store, campaign.id, 3, by=BOB, reason="promoted")
    store.claim_for_submission(first.id, required=1)
    store.transition(first.id, S.SUBMITTED, actor="thingspace", reason="scheduled", thingspace_id="ts-1")
    store.transition(first.id, S.ENDED, actor="thingspace", reason="ended")
    with pytest.raises(WaveRefused, match="cannot promote their own rollout"):
        waves.start_wave(store, campaign.id, 2, by=REQUESTER, reason="promoted")
    second = waves.start_wave(store, campaign.id, 2, by=BOB, reason="promoted")
    assert second.thingspace_name == f"Q3 [FB-1·{store.installation_id()} w2/3]"
    stored = waves.load(store.db, campaign.id)
    assert stored is not None and stored.wave(2).promoted_by == BOB and stored.wave(2).campaign_id == second.id
    assert any("wave 2/3 of FB-1" in row["reason"] for row in store.audit(second.id))


def test_a_halted_rollout_sends_no_further_wave(store: Store, clock: ManualClock) -> None:
    campaign = _planned(store, clock)
    _approve(store, campaign)
    first = waves.start_wave(store, campaign.id, 1, by=ANN, reason="approved")
    waves.halt(store, campaign.id, by="fota-bot", reason="3 of 10 devices failed (halt 5%)")
    assert not waves.halt(store, campaign.id, by=ANN, reason="said again")  # the first reason stays
    # Wave 1 was started but not yet claimed for sending: ended there, never sent.
    ended = store.campaign(first.id)
    assert ended.state is S.SUBMIT_FAILED and ended.error_code == "HALTED"
    with pytest.raises(NotApproved, match="submit_failed, not approved"):
        store.claim_for_submission(first.id, required=1)
    with pytest.raises(WaveRefused, match="halted: 3 of 10 devices failed"):
        waves.start_wave(store, campaign.id, 2, by=BOB, reason="promoted")


def test_a_wave_claimed_before_the_halt_is_refused_when_its_sending_resumes(store: Store, clock: ManualClock) -> None:
    campaign = _planned(store, clock)
    _approve(store, campaign)
    first = waves.start_wave(store, campaign.id, 1, by=ANN, reason="approved")
    store.claim_for_submission(first.id, required=1)  # then the process stops mid-POST
    waves.halt(store, campaign.id, by="fota-bot", reason="3 of 10 devices failed (halt 5%)")
    with pytest.raises(NotApproved, match="halted: 3 of 10 devices failed"):
        store.claim_for_submission(first.id, required=1)


def test_a_resume_is_an_approvers_decision_on_the_halt_it_was_shown(store: Store, clock: ManualClock) -> None:
    campaign = _planned(store, clock)
    _approve(store, campaign)
    waves.start_wave(store, campaign.id, 1, by=ANN, reason="approved")
    with pytest.raises(WaveRefused, match="not halted"):
        waves.resume(store, campaign.id, by=BOB, reason="go on", halted_at=None)
    waves.halt(store, campaign.id, by=ANN, reason="looks wrong")
    stored = waves.load(store.db, campaign.id)
    assert stored is not None and stored.halted_at is not None
    with pytest.raises(WaveRefused, match="halted again"):
        waves.resume(store, campaign.id, by=BOB, reason="go on", halted_at="2020-01-01T00:00:00+00:00")
    resumed = waves.resume(store, campaign.id, by=BOB, reason="false alarm", halted_at=stored.halted_at.isoformat())
    assert not resumed.halted and resumed.halt_waived_through == 1
    assert store.campaign(campaign.id).state is S.ROLLING_OUT
    last = store.audit(campaign.id)[-1]
    assert (last["from_state"], last["to_state"], last["actor"]) == ("halted", "rolling_out", BOB)
    assert "false alarm" in last["reason"] and "looks wrong" in last["reason"]
    with pytest.raises(WaveRefused, match="not halted"):  # a second submission of the form
        waves.resume(store, campaign.id, by=BOB, reason="again", halted_at=stored.halted_at.isoformat())


# --- through the submitter and the sandbox --------------------------------------------------------


async def test_an_approved_plan_is_sent_as_its_first_wave_never_whole_even_across_restarts(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
        store = stack.rt.store
        devices = store.device_ids(1)
        plan = RolloutPlan(canary=1, waves=(5_000, WHOLE))
        campaign = waves.bind_plan(store, 1, plan, assign(plan, _facts(devices)))
        store.record_approval(1, user=ANN, shown_hash=campaign.content_hash, required=1)
        assert await stack.rt.submitter.submit(1) is None  # the request itself: refused
        await stack.restart()  # start-up resumes approved work: wave 1 is started and sent
        await stack.settle()
        await stack.restart()
        await stack.settle()
        [post] = stack.thingspace.schedule_posts()
        assert post.json()["campaignName"] == f"Smart FOTA [FB-1·{stack.rt.store.installation_id()} w1/3]"
        assert post.json()["deviceList"] == waves.wave_devices(stack.rt.store.db, 1, 1)
        assert stack.rt.store.campaign(1).state is S.ROLLING_OUT


def test_a_rollout_resumed_after_its_last_wave_ended_is_rolled_out(store: Store, clock: ManualClock) -> None:
    campaign = _planned(store, clock)
    _approve(store, campaign)
    for number in (1, 2, 3):
        wave = waves.start_wave(store, campaign.id, number, by=ANN if number == 1 else BOB, reason="go")
        if number < 3:  # ended without reaching ThingSpace, so the next may start
            store.transition(wave.id, S.SUBMIT_FAILED, actor="test", reason="test")
    waves.halt(store, campaign.id, by=ANN, reason="stop")  # wave 3, started but unsent, ends here
    stored = waves.plan_of(store, campaign.id)
    assert stored is not None and stored.halted_at is not None
    waves.resume(store, campaign.id, by=BOB, reason="go on", halted_at=stored.halted_at.isoformat())
    # Nothing is left to send: the request does not stay "rolling out" for ever.
    assert store.campaign(campaign.id).state is S.ROLLED_OUT
