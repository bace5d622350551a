"""The approval card's handlers alone: approve, withdraw, reject (button and modal), override form."""

from __future__ import annotations

import json
from typing import Any

from bot.app import Runtime
from bot.standins.thingspace import sandbox_imeis
from commands import blocks
from commands.listeners import STALE_BUTTON, Services
from commands.listeners.approvals import (
    approve,
    override_submitted,
    reject_clicked,
    reject_submitted,
    withdraw,
)
from commands.listeners.common import DAMAGED_FORM
from storage.states import CampaignState
from tests.commands.listeners.conftest import (
    IMEIS,
    SCHEDULE_ARGS,
    FakeSlack,
    Recorder,
    card_value,
    clicked,
    pending_campaign,
)
from tests.support.stack import ANN, EVE, REQUESTER


def submitted_view(private_metadata: str, values: dict[str, Any]) -> dict[str, Any]:
    return {"private_metadata": private_metadata, "state": {"values": values}}


def reason_values(reason: str) -> dict[str, Any]:
    return {"reason": {"reason": {"value": reason}}}


async def test_approve_records_the_approval_and_answers_the_approver(
    ack: Recorder, respond: Recorder, services: Services, runtime: Runtime
) -> None:
    campaign = await pending_campaign(services)
    body, action = clicked(ANN, card_value(campaign))
    await approve(ack, body, action, respond, services=services)
    await services.background.idle()
    assert ack.calls == [{}]
    assert [d.user for d in runtime.store.decisions(campaign.id)] == [ANN]
    [answer] = respond.calls
    assert answer["response_type"] == "ephemeral" and answer["replace_original"] is False
    assert answer["text"]


async def test_a_damaged_approve_button_changes_nothing_and_says_so(
    ack: Recorder, respond: Recorder, services: Services, runtime: Runtime
) -> None:
    campaign = await pending_campaign(services)
    body, action = clicked(ANN, "not-a-card-value")
    await approve(ack, body, action, respond, services=services)
    await services.background.idle()
    assert ack.calls == [{}]
    assert STALE_BUTTON in json.dumps(respond.calls)
    assert runtime.store.decisions(campaign.id) == []
    assert runtime.store.campaign(campaign.id).state is CampaignState.PENDING_APPROVAL


async def test_approving_what_the_card_no_longer_shows_is_refused(
    ack: Recorder, respond: Recorder, services: Services, runtime: Runtime
) -> None:
    campaign = await pending_campaign(services)
    body, action = clicked(ANN, blocks.action_value(campaign.id, "0" * 64))
    await approve(ack, body, action, respond, services=services)
    await services.background.idle()
    [answer] = respond.calls
    assert answer["response_type"] == "ephemeral" and "Nothing" in json.dumps(answer)
    assert runtime.store.decisions(campaign.id) == []


async def test_withdraw_by_the_requester_withdraws(
    ack: Recorder, respond: Recorder, services: Services, runtime: Runtime
) -> None:
    campaign = await pending_campaign(services)
    body, action = clicked(REQUESTER, card_value(campaign))
    await withdraw(ack, body, action, respond, services=services)
    await services.background.idle()
    assert ack.calls == [{}]
    assert runtime.store.campaign(campaign.id).state is CampaignState.WITHDRAWN


async def test_withdraw_by_anyone_else_is_refused_with_who_may(
    ack: Recorder, respond: Recorder, services: Services, runtime: Runtime
) -> None:
    campaign = await pending_campaign(services)
    body, action = clicked(ANN, card_value(campaign))
    await withdraw(ack, body, action, respond, services=services)
    await services.background.idle()
    assert f"Only the requester, <@{REQUESTER}>" in json.dumps(respond.calls)
    assert runtime.store.campaign(campaign.id).state is CampaignState.PENDING_APPROVAL


async def test_reject_opens_the_reason_modal_for_an_approver(
    ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services
) -> None:
    campaign = await pending_campaign(services)
    body, action = clicked(ANN, card_value(campaign))
    await reject_clicked(ack, body, action, respond, slack, services=services)  # type: ignore[arg-type]
    await services.background.idle()
    [opened] = slack.called("views_open")
    assert opened["trigger_id"] == "13345.trigger"
    assert opened["view"]["callback_id"] == blocks.REJECT_MODAL_CALLBACK_ID
    assert respond.calls == []


async def test_reject_by_a_non_approver_opens_nothing(
    ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services
) -> None:
    campaign = await pending_campaign(services)
    body, action = clicked(EVE, card_value(campaign))
    await reject_clicked(ack, body, action, respond, slack, services=services)  # type: ignore[arg-type]
    await services.background.idle()
    assert slack.called("views_open") == []
    [answer] = respond.calls
    assert answer["response_type"] == "ephemeral"


async def test_the_reject_modal_needs_a_reason_under_its_field(
    ack: Recorder, services: Services, runtime: Runtime
) -> None:
    campaign = await pending_campaign(services)
    view = submitted_view(card_value(campaign), reason_values("   "))
    await reject_submitted(ack, {"user": {"id": ANN}}, view, services=services)
    [answer] = ack.calls
    assert answer["response_action"] == "errors" and set(answer["errors"]) == {"reason"}
    assert runtime.store.campaign(campaign.id).state is CampaignState.PENDING_APPROVAL


async def test_a_damaged_reject_modal_says_close_it(ack: Recorder, services: Services) -> None:
    await reject_submitted(ack, {"user": {"id": ANN}}, submitted_view("", reason_values("no")), services=services)
    assert ack.calls == [{"response_action": "errors", "errors": {"reason": DAMAGED_FORM}}]


async def test_the_reject_modal_with_a_reason_rejects(ack: Recorder, services: Services, runtime: Runtime) -> None:
    campaign = await pending_campaign(services)
    view = submitted_view(card_value(campaign), reason_values("wrong firmware"))
    await reject_submitted(ack, {"user": {"id": ANN}}, view, services=services)
    assert ack.calls == [{}]
    assert runtime.store.campaign(campaign.id).state is CampaignState.REJECTED


async def test_the_override_modal_refuses_a_count_that_is_not_a_number(
    ack: Recorder, slack: FakeSlack, services: Services
) -> None:
    campaign = await pending_campaign(services)
    count, reason = blocks.OVERRIDE_COUNT_BLOCK_ID, blocks.OVERRIDE_REASON_BLOCK_ID
    values = {count: {count: {"value": "many"}}, reason: {reason: {"value": "lab devices"}}}
    await override_submitted(ack, {"user": {"id": ANN}}, submitted_view(card_value(campaign), values), slack, services=services)  # type: ignore[arg-type]
    [answer] = ack.calls
    assert answer["response_action"] == "errors" and set(answer["errors"]) == {count}
    assert slack.calls == []


async def test_a_damaged_override_modal_says_close_it(ack: Recorder, slack: FakeSlack, services: Services) -> None:
    await override_submitted(ack, {"user": {"id": ANN}}, submitted_view("", {}), slack, services=services)  # type: ignore[arg-type]
    assert ack.calls == [{"response_action": "errors", "errors": {blocks.OVERRIDE_REASON_BLOCK_ID: DAMAGED_FORM}}]


async def test_the_override_modal_with_the_count_includes_the_excluded_and_answers_in_a_dm(
    ack: Recorder, slack: FakeSlack, services: Services, runtime: Runtime
) -> None:
    # Two devices of another model than the firmware's: pre-flight excludes them.
    other_model = sandbox_imeis(2, model="BG96", firmware="BG96MAR02A08M1G")
    devices = ",".join([*IMEIS, *other_model])
    campaign = await pending_campaign(services, args=SCHEDULE_ARGS.replace(",".join(IMEIS), devices))
    count, reason = blocks.OVERRIDE_COUNT_BLOCK_ID, blocks.OVERRIDE_REASON_BLOCK_ID

    values = {count: {count: {"value": "2"}}, reason: {reason: {"value": "lab devices, flashed by hand"}}}
    submitted = submitted_view(card_value(campaign), values)
    await override_submitted(ack, {"user": {"id": ANN}}, submitted, slack, services=services)  # type: ignore[arg-type]
    await services.background.idle()

    assert ack.calls == [{}]
    [dm] = slack.called("chat_postMessage")
    assert dm["channel"] == ANN and campaign.ref in dm["text"]
    assert runtime.store.campaign(campaign.id).content_hash != campaign.content_hash
