"""Approval rules end to end: reject with a reason, expiry and reminder as
scheduler jobs rebuilt at start-up, user-group approvers, the modal with an uploaded device file."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest

from bot.app import APPROVAL_TIMERS_JOB
from commands import blocks
from commands.modal import SCHEDULE_CALLBACK_ID
from storage.model import Campaign
from storage.states import CampaignState
from storage.store import TIMER_BATCH
from tests.e2e.test_flow import IMEIS, SCHEDULE, request_campaign
from tests.support.slack import file_input, static_select, text_input
from tests.support.stack import ANN, BOB, CHANNEL, EVE, FIRMWARE, REQUESTER, Stack, running_stack


async def test_reject_asks_for_a_reason_and_stamps_the_card(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
        await stack.click(blocks.ACTION_REJECT, user=ANN)
        await stack.settle()
        [opened] = [c for c in stack.standin.calls_to("views.open") if c.ok]
        view = json.loads(opened.args["view"]) if isinstance(opened.args["view"], str) else opened.args["view"]
        assert view["callback_id"] == blocks.REJECT_MODAL_CALLBACK_ID
        values = {"reason": {"reason": text_input("   ")}}
        empty = await stack.submit_view(
            blocks.REJECT_MODAL_CALLBACK_ID, values, user=ANN, private_metadata=view["private_metadata"]
        )
        assert empty.json()["response_action"] == "errors" and "reason" in empty.json()["errors"]
        assert stack.rt.store.campaign(1).state is CampaignState.PENDING_APPROVAL
        values = {"reason": {"reason": text_input("Wrong firmware for GM01Q <b>")}}
        ok = await stack.submit_view(
            blocks.REJECT_MODAL_CALLBACK_ID, values, user=ANN, private_metadata=view["private_metadata"]
        )
        assert ok.status_code == 200 and not ok.content
        await stack.settle()
        assert stack.rt.store.campaign(1).state is CampaignState.REJECTED
        card = json.dumps(stack.root().blocks)
        assert "Wrong firmware for GM01Q &lt;b&gt;" in card and f"<@{ANN}>" in card
        assert blocks.ACTION_APPROVE not in card
        dms = " ".join(m.text for m in stack.standin.messages(stack.standin.dm_channel(REQUESTER)))
        assert "Wrong firmware" in dms
        assert stack.thingspace.schedule_posts() == []


async def test_an_outsider_cannot_even_open_the_reject_modal(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
        _, response_url = await stack.click(blocks.ACTION_REJECT, user=EVE)
        await stack.settle()
        assert "not one of them" in json.dumps(stack.answers(response_url))
        assert not [c for c in stack.standin.calls_to("views.open") if c.ok]


def reminders(stack: Stack) -> list[str]:
    return [m.text for m in stack.standin.thread(CHANNEL, stack.root().ts)[1:] if "Waiting on" in m.text]


async def test_expiry_and_reminder_are_jobs_rebuilt_from_the_database(tmp_path: Path) -> None:
    async with running_stack(tmp_path, FOTA_APPROVAL_TTL="2h") as stack:
        await request_campaign(stack)
        campaign = stack.rt.store.campaign(1)
        assert campaign.expires_at == stack.clock() + dt.timedelta(hours=2)
        # The approval-timers job runs at the reminder (half the TTL), then at the expiry.
        assert stack.rt.jobs.run_date(APPROVAL_TIMERS_JOB) == stack.clock() + dt.timedelta(hours=1)

        await stack.restart()
        # The new process knows the timers from the database alone.
        assert stack.rt.jobs.run_date(APPROVAL_TIMERS_JOB) == stack.clock() + dt.timedelta(hours=1)

        stack.clock.advance(minutes=59, seconds=59)
        await stack.settle()
        assert reminders(stack) == []  # not yet
        stack.clock.advance(seconds=1)
        await stack.settle()
        # The reminder names the approvers who have not decided.
        [reminder] = reminders(stack)
        assert f"Waiting on <@{ANN}>, <@{BOB}>." in reminder
        assert stack.rt.jobs.run_date(APPROVAL_TIMERS_JOB) == campaign.expires_at
        # Given once: neither a restart nor a second call repeats it.
        await stack.restart()
        await stack.rt.service.remind(1)
        await stack.settle()
        assert len(reminders(stack)) == 1
        await stack.rt.service.expire(1)  # too early: nothing happens
        assert stack.rt.store.campaign(1).state is CampaignState.PENDING_APPROVAL

        card_before = stack.root().to_slack()
        stack.clock.advance(hours=1, seconds=1)
        await stack.rt.service.expire_overdue()
        await stack.settle()
        assert stack.rt.store.campaign(1).state is CampaignState.EXPIRED
        assert "expired" in json.dumps(stack.root().blocks).lower()
        _, late = await stack.click(blocks.ACTION_APPROVE, user=ANN, message=card_before)
        await stack.settle()
        assert "expired already" in json.dumps(stack.answers(late))
        assert stack.thingspace.schedule_posts() == []


async def test_members_of_an_approver_user_group_may_approve(tmp_path: Path) -> None:
    async with running_stack(tmp_path, FOTA_APPROVERS="S0RELEASE") as stack:
        stack.standin.add_usergroup("S0RELEASE", ["U0GRP"])
        await request_campaign(stack)
        _, refused = await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        assert "not one of them" in json.dumps(stack.answers(refused))
        await stack.click(blocks.ACTION_APPROVE, user="U0GRP")
        await stack.settle()
        assert len(stack.thingspace.schedule_posts()) == 1
        lookups = stack.standin.calls_to("usergroups.users.list")
        assert len(lookups) == 1  # the second check was answered from the cache


async def test_the_modal_with_an_uploaded_device_file_makes_the_same_request_as_the_text(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        response, _ = await stack.slash("schedule")
        await stack.settle()
        assert [c for c in stack.standin.calls_to("views.open") if c.ok]
        csv = ("imei,label\n" + "\n".join(f"{i},unit" for i in IMEIS) + "\n").encode()
        uploaded = stack.standin.register_file("devices.csv", csv, user_id=REQUESTER)
        values = {
            "firmware": {"firmware": text_input(FIRMWARE)},
            "from": {"from": text_input("SR1.2.0.0-10512")},
            "to": {"to": text_input("SR1.2.0.0-10657")},
            "protocol": {"protocol": static_select("LWM2M")},
            "start": {"start": text_input("today")},
            "end": {"end": text_input("+3d")},
            "window": {"window": text_input("18-22")},
            "devices": {"devices": text_input(None)},
            "devices_file": {"devices_file": file_input(uploaded)},
            "name": {"name": text_input("Smart FOTA")},
            "account": {"account": text_input(None)},
        }
        submitted = await stack.submit_view(SCHEDULE_CALLBACK_ID, values, user=REQUESTER)
        assert submitted.status_code == 200 and not submitted.content
        await stack.settle()
        from_modal = stack.rt.store.campaign(1)

        await stack.slash(SCHEDULE)
        await stack.settle()
        from_text = stack.rt.store.campaign(2)
        assert stack.rt.store.device_ids(1) == stack.rt.store.device_ids(2) == IMEIS
        same = lambda c: (c.firmware_name, c.firmware_from, c.firmware_to, c.protocol, c.start_date, c.end_date, c.windows, c.name)  # noqa: E731
        assert same(from_modal) == same(from_text)


async def test_modal_errors_appear_under_the_fields_and_change_nothing(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        values = {
            "firmware": {"firmware": text_input(FIRMWARE)},
            "start": {"start": text_input("2020-01-01")},
            "window": {"window": text_input("22-23")},
            "devices": {"devices": text_input("12345")},
        }
        answer = await stack.submit_view(SCHEDULE_CALLBACK_ID, values, user=REQUESTER)
        body = answer.json()
        assert body["response_action"] == "errors"
        assert {"start", "window", "devices"} <= set(body["errors"])
        assert stack.rt.store.list_campaigns(scope="all") == []



def dm_texts(stack, user: str = REQUESTER) -> list[str]:  # type: ignore[no-untyped-def]
    return [m.text for m in stack.standin.messages(stack.standin.dm_channel(user))]


async def test_a_request_from_the_modal_is_confirmed_by_direct_message_with_the_link(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        values = {
            "firmware": {"firmware": text_input(FIRMWARE)},
            "from": {"from": text_input("SR1.2.0.0-10512")},
            "to": {"to": text_input("SR1.2.0.0-10657")},
            "devices": {"devices": text_input(IMEIS[0])},
        }
        await stack.submit_view(SCHEDULE_CALLBACK_ID, values, user=REQUESTER)
        await stack.settle()
        [confirmation] = [t for t in dm_texts(stack) if "FB-1" in t]
        assert "posted for approval" in confirmation
        assert "/archives/" in json.dumps(stack.standin.messages(stack.standin.dm_channel(REQUESTER))[0].blocks)


async def test_a_card_slack_refuses_for_good_is_told_to_the_requester_not_confirmed(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        stack.standin.fail_next("chat.postMessage", 1, status=200, error="not_in_channel")
        _, response_url = await stack.slash(SCHEDULE)
        await stack.settle()
        assert stack.rt.store.campaign(1).thread_ts is None
        assert "posted for approval" not in json.dumps(stack.answers(response_url))
        [told] = dm_texts(stack)
        assert "could not be posted for approval" in told and "not_in_channel" in told
        assert stack.rt.sender.outbox.pending_count() == 0  # nothing waits forever behind it


async def test_a_form_that_slack_will_not_open_gets_a_plain_answer(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        stack.standin.fail_next("views.open", 1, status=200, error="expired_trigger_id")
        _, response_url = await stack.slash("schedule")
        await stack.settle()
        answer = json.dumps(stack.answers(response_url))
        assert "expired_trigger_id" in answer and "/fota schedule key=value" in answer


async def test_an_approver_withdrawing_a_request_tells_the_requester(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
        await stack.rt.operations.cancel("FB-1", user=ANN)
        await stack.settle()
        assert any("withdrawn by" in t and ANN in t for t in dm_texts(stack))


async def test_someone_not_allowed_to_request_is_told_before_the_form_opens(tmp_path: Path) -> None:
    async with running_stack(tmp_path, FOTA_REQUESTERS=REQUESTER) as stack:
        _, response_url = await stack.slash("schedule", user=EVE)
        await stack.settle()
        assert "FOTA_REQUESTERS" in json.dumps(stack.answers(response_url))
        assert not [c for c in stack.standin.calls_to("views.open") if c.ok]


async def test_a_bad_device_file_is_reported_under_the_file_field(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        empty = stack.standin.register_file("devices.csv", b"", user_id=REQUESTER)
        values = {
            "firmware": {"firmware": text_input(FIRMWARE)},
            "devices_file": {"devices_file": file_input(empty)},
        }
        answer = (await stack.submit_view(SCHEDULE_CALLBACK_ID, values, user=REQUESTER)).json()
        assert answer["response_action"] == "errors" and "devices_file" in answer["errors"]
        assert stack.rt.store.list_campaigns(scope="all") == []


def queued_reminders(stack: Stack) -> list[int]:
    """The campaigns a reminder was queued for, in order (sent or not)."""
    rows = stack.rt.store.db.execute(
        "SELECT campaign_id, payload FROM outbox WHERE kind = 'reply' ORDER BY id"
    ).fetchall()
    return [campaign_id for campaign_id, payload in rows if json.loads(payload)["event"] == "reminder"]


async def test_every_waiting_request_is_timed_by_one_job_set_for_the_next_moment(tmp_path: Path) -> None:
    async with running_stack(tmp_path, FOTA_APPROVAL_TTL="2h") as stack:
        first_at = stack.clock() + dt.timedelta(hours=1)
        await request_campaign(stack)
        stack.clock.advance(minutes=10)
        await request_campaign(stack)
        stack.clock.advance(minutes=10)
        await request_campaign(stack)
        # One job, however many requests wait: set for the first one's reminder.
        assert [j for j in stack.rt.jobs.ids() if "remind" in j or "expire" in j or "approval" in j] == [
            "approval-timers",
            "approval-timers-sweep",
        ]
        assert stack.rt.jobs.run_date(APPROVAL_TIMERS_JOB) == first_at
        # The first is withdrawn: at its reminder time the job finds nothing due and is set
        # for the second's reminder.
        assert "withdrew" in (await stack.rt.service.withdraw(1, user=REQUESTER))
        stack.clock.moment = first_at
        await stack.settle()
        assert queued_reminders(stack) == []
        assert stack.rt.jobs.run_date(APPROVAL_TIMERS_JOB) == first_at + dt.timedelta(minutes=10)
        stack.clock.advance(minutes=10)
        await stack.settle()
        assert queued_reminders(stack) == [2]
        assert stack.rt.jobs.run_date(APPROVAL_TIMERS_JOB) == first_at + dt.timedelta(minutes=20)
        # Past every moment at once (a long pause): the third's reminder is not sent after its
        # expiry; both expire, in one run.
        stack.clock.advance(hours=3)
        await stack.settle()
        assert queued_reminders(stack) == [2]
        states = [stack.rt.store.campaign(n).state for n in (1, 2, 3)]
        assert states == [CampaignState.WITHDRAWN, CampaignState.EXPIRED, CampaignState.EXPIRED]
        assert stack.rt.jobs.run_date(APPROVAL_TIMERS_JOB) is None
        assert stack.rt.store.next_approval_timer() is None


async def test_reminders_due_during_a_stop_are_each_sent_once_after_it(tmp_path: Path) -> None:
    async with running_stack(tmp_path, FOTA_APPROVAL_TTL="2h") as stack:
        await request_campaign(stack)
        campaign = stack.rt.store.campaign(1)
        # More requests than one batch of the timers reads, stored as a request stores them.
        fields = {
            name: getattr(campaign, name)
            for name in ("requester", "account", "firmware_name", "firmware_from", "firmware_to", "protocol",
                         "start_date", "end_date", "windows", "name", "sandbox", "expires_at")
        }
        more = [
            stack.rt.store.create_campaign(**fields, devices=IMEIS).id for _ in range(TIMER_BATCH + 10)
        ]
        await stack.shutdown()
        stack.clock.advance(hours=1, minutes=30)
        await stack.boot()
        assert stack.rt.jobs.run_date(APPROVAL_TIMERS_JOB) == campaign.created_at + dt.timedelta(hours=1)
        await stack.settle()
        assert queued_reminders(stack) == [1, *more]
        await stack.restart()
        await stack.settle()
        assert queued_reminders(stack) == [1, *more]
        assert stack.rt.jobs.run_date(APPROVAL_TIMERS_JOB) == campaign.expires_at


async def test_a_reminder_that_failed_is_tried_again_by_the_sweep(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running_stack(tmp_path, FOTA_APPROVAL_TTL="2h") as stack:
        await request_campaign(stack)
        await request_campaign(stack)
        notifier = stack.rt.notifier
        told = notifier.reminder

        def refused_for_the_first(campaign: Campaign) -> None:
            if campaign.id == 1:
                raise sqlite3.OperationalError("disk I/O error")
            told(campaign)

        notifier.reminder = refused_for_the_first  # type: ignore[method-assign]
        stack.clock.advance(hours=1)
        await stack.settle()
        # The second is reminded all the same; the first's reminder is still due.
        assert queued_reminders(stack) == [2]
        assert "approval timer of FB-1 failed" in caplog.text
        notifier.reminder = told  # type: ignore[method-assign]
        await stack.rt.timers.run_approval_timers()  # what the sweep runs every minute
        assert queued_reminders(stack) == [2, 1]
