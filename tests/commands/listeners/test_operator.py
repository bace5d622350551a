"""The operator answers' buttons alone: list paging, cancel (confirm, keep), History, firmware → modal."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.app import Runtime
from commands.blocks.history import history_value
from commands.blocks.operations import cancel_value, firmware_value, list_page_value
from commands.listeners import Services
from commands.listeners.operator import (
    STALE_ANSWER_BUTTON,
    cancel_confirmed,
    cancel_kept,
    firmware_schedule,
    history_clicked,
    list_page,
)
from storage.states import CampaignState
from tests.commands.listeners.conftest import FakeSlack, Recorder, clicked, pending_campaign
from tests.support.stack import ANN, FIRMWARE, REQUESTER


@pytest.mark.parametrize("handler", [list_page, cancel_confirmed])
async def test_a_damaged_button_says_run_the_command_again(
    handler: Any, ack: Recorder, respond: Recorder, services: Services, runtime: Runtime
) -> None:
    campaign = await pending_campaign(services)
    body, action = clicked(REQUESTER, "{not json")
    await handler(ack, body, action, respond, services=services)
    await services.background.idle()
    assert ack.calls == [{}]
    assert STALE_ANSWER_BUTTON in json.dumps(respond.calls)
    assert runtime.store.campaign(campaign.id).state is CampaignState.PENDING_APPROVAL


async def test_a_damaged_history_button_says_run_the_command_again(
    ack: Recorder, respond: Recorder, services: Services
) -> None:
    await history_clicked(ack, {"value": "FB-one"}, respond, services=services)
    await services.background.idle()
    assert ack.calls == [{}] and STALE_ANSWER_BUTTON in json.dumps(respond.calls)


async def test_a_damaged_firmware_button_opens_nothing(
    ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services
) -> None:
    body, action = clicked(ANN, "{not json")
    await firmware_schedule(ack, body, action, respond, slack, services=services)  # type: ignore[arg-type]
    await services.background.idle()
    assert slack.calls == [] and STALE_ANSWER_BUTTON in json.dumps(respond.calls)


async def test_the_firmware_button_opens_the_schedule_modal_filled_in(
    ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services
) -> None:
    value = firmware_value({"firmwareName": FIRMWARE, "protocol": "LWM2M"}, "0000000000-00001")
    assert value is not None
    body, action = clicked(ANN, value)
    await firmware_schedule(ack, body, action, respond, slack, services=services)  # type: ignore[arg-type]
    await services.background.idle()
    assert ack.calls == [{}]
    [opened] = slack.called("views_open")
    assert opened["trigger_id"] == "13345.trigger" and FIRMWARE in json.dumps(opened["view"])


async def test_next_page_replaces_the_list_it_was_clicked_on(
    ack: Recorder, respond: Recorder, services: Services
) -> None:
    first = await pending_campaign(services)
    await pending_campaign(services)
    body, action = clicked(ANN, list_page_value("all", 2))
    await list_page(ack, body, action, respond, services=services)
    await services.background.idle()
    [answer] = respond.calls
    assert answer["replace_original"] is True and first.ref in answer["text"]


async def test_history_answers_with_the_campaign_s_trail(
    ack: Recorder, respond: Recorder, services: Services
) -> None:
    campaign = await pending_campaign(services)
    await history_clicked(ack, {"value": history_value(campaign.id)}, respond, services=services)
    await services.background.idle()
    [answer] = respond.calls
    assert answer["response_type"] == "ephemeral" and answer["text"].startswith(f"History of Ref {campaign.ref}")


async def test_confirming_a_withdraw_replaces_the_prompt_and_withdraws(
    ack: Recorder, respond: Recorder, services: Services, runtime: Runtime
) -> None:
    campaign = await pending_campaign(services)
    body, action = clicked(REQUESTER, cancel_value(campaign.id, "withdraw"))
    await cancel_confirmed(ack, body, action, respond, services=services)
    await services.background.idle()
    [answer] = respond.calls
    assert answer["replace_original"] is True
    assert runtime.store.campaign(campaign.id).state is CampaignState.WITHDRAWN


async def test_keep_deletes_the_prompt_and_changes_nothing(
    ack: Recorder, respond: Recorder, services: Services, runtime: Runtime
) -> None:
    campaign = await pending_campaign(services)
    await cancel_kept(ack, respond, services=services)
    await services.background.idle()
    assert ack.calls == [{}] and respond.calls == [{"delete_original": True}]
    assert runtime.store.campaign(campaign.id).state is CampaignState.PENDING_APPROVAL
