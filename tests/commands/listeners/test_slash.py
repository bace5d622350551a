"""/fota's handler alone: what it acks at once, and what it answers after the ack."""

from __future__ import annotations

import json
from typing import Any

from bot.app import Runtime
from commands.help import HELP_TEXT
from commands.listeners import Services
from commands.listeners.slash import fota
from storage.states import CampaignState
from tests.commands.listeners.conftest import SCHEDULE_ARGS, FakeSlack, Recorder, pending_campaign
from tests.support.stack import EVE, REQUESTER


def command(text: str, user: str = REQUESTER) -> dict[str, Any]:
    return {
        "user_id": user,
        "text": text,
        "trigger_id": "13345.trigger",
        "response_url": "https://hooks.slack.com/commands/T1/1/abc",
    }


async def run(text: str, ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services, user: str = REQUESTER) -> None:
    await fota(ack, command(text, user), respond, slack, services=services)  # type: ignore[arg-type]
    await services.background.idle()


async def test_help_is_the_ack_itself(ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services) -> None:
    await run("help", ack, respond, slack, services)
    assert ack.calls == [{"text": HELP_TEXT}]
    assert respond.calls == [] and slack.calls == []


async def test_an_unknown_subcommand_is_refused_in_the_ack(
    ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services, runtime: Runtime
) -> None:
    await run("frobnicate FB-1", ack, respond, slack, services)
    [answer] = ack.calls
    assert "frobnicate" in answer["text"]
    assert respond.calls == [] and runtime.store.campaigns_in(tuple(CampaignState)) == []


async def test_schedule_acks_with_the_device_count_then_records_the_request(
    ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services, runtime: Runtime
) -> None:
    await run(f"schedule {SCHEDULE_ARGS}", ack, respond, slack, services)
    assert ack.calls == [{"text": "Checking your request for 3 devices…"}]
    [campaign] = runtime.store.campaigns_in(tuple(CampaignState))
    assert campaign.requester == REQUESTER and campaign.device_count == 3


async def test_a_bad_imei_is_refused_in_the_ack_and_nothing_is_recorded(
    ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services, runtime: Runtime
) -> None:
    bad = SCHEDULE_ARGS.replace("354658090353977", "354658090353978")  # Luhn digit off by one
    await run(f"schedule {bad}", ack, respond, slack, services)
    [answer] = ack.calls
    assert "354658090353978" in json.dumps(answer)
    assert runtime.store.campaigns_in(tuple(CampaignState)) == []


async def test_no_arguments_opens_the_schedule_modal_after_the_ack(
    ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services
) -> None:
    await run("schedule", ack, respond, slack, services)
    assert ack.calls == [{}]
    [opened] = slack.called("views_open")
    assert opened["trigger_id"] == "13345.trigger" and opened["view"]["type"] == "modal"
    assert respond.calls == []


async def test_status_answers_ephemerally_after_an_empty_ack(
    ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services
) -> None:
    campaign = await pending_campaign(services)
    await run(f"status {campaign.ref}", ack, respond, slack, services)
    assert ack.calls == [{}]
    [answer] = respond.calls
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert campaign.ref in json.dumps(answer)


async def test_status_of_an_unknown_campaign_is_an_ephemeral_error(
    ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services
) -> None:
    await run("status FB-99", ack, respond, slack, services)
    [answer] = respond.calls
    assert answer["response_type"] == "ephemeral" and "FB-99" in json.dumps(answer)


async def test_cancel_by_someone_who_may_not_is_refused_with_who_may(
    ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services, runtime: Runtime
) -> None:
    campaign = await pending_campaign(services)
    await run(f"cancel {campaign.ref}", ack, respond, slack, services, user=EVE)
    [answer] = respond.calls
    assert answer["response_type"] == "ephemeral" and "Nothing changed" in json.dumps(answer)
    assert runtime.store.campaign(campaign.id).state is campaign.state


async def test_list_answers_with_the_campaigns(
    ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services
) -> None:
    campaign = await pending_campaign(services)
    await run("list", ack, respond, slack, services)
    [answer] = respond.calls
    assert campaign.ref in json.dumps(answer)
