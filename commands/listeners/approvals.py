"""The approval card's decisions: approve, approve the eligible devices only (narrow), include the
excluded ones (the override modal), reject (the reason modal), withdraw."""

from __future__ import annotations

from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.workflow.errors import UserError
from commands import blocks
from commands.listeners.common import (
    DAMAGED_FORM,
    Ack,
    Respond,
    Services,
    ack_stale_button,
    ack_then_answer,
    action_value,
    answer_in_dm,
)
from storage.model import RequestError


async def approve(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, *, services: Services
) -> None:
    campaign_id, shown_hash = action_value(action)
    if not campaign_id:
        await ack_stale_button(ack, respond, services)
        return
    work = services.campaigns.approve(campaign_id, user=body["user"]["id"], shown_hash=shown_hash)
    await ack_then_answer(ack, respond, services, work, name="approve")


async def approve_eligible(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, *, services: Services
) -> None:
    campaign_id, shown_hash = action_value(action)
    work = services.campaigns.approve(campaign_id, user=body["user"]["id"], shown_hash=shown_hash, eligible_only=True)
    await ack_then_answer(ack, respond, services, work, name="approve eligible only")


async def include_excluded_clicked(
    ack: Ack,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: Respond,
    client: AsyncWebClient,
    *,
    services: Services,
) -> None:
    campaign_id, shown_hash = action_value(action)
    if not campaign_id:
        await ack_stale_button(ack, respond, services)
        return
    work = open_override_modal(services, client, body, campaign_id, shown_hash)
    await ack_then_answer(ack, respond, services, work, name="override modal")


async def open_override_modal(
    services: Services, client: AsyncWebClient, body: dict[str, Any], campaign_id: int, shown_hash: str
) -> None:
    # Refused before the modal opens (not after the approver typed a reason): not an
    # approver, a stale card, nothing excluded left.
    campaign, record = await services.campaigns.override_form(
        campaign_id, user=body["user"]["id"], shown_hash=shown_hash
    )
    await client.views_open(trigger_id=body["trigger_id"], view=blocks.override_modal(campaign, record))


async def override_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient, *, services: Services
) -> None:
    count_block, reason_block = blocks.OVERRIDE_COUNT_BLOCK_ID, blocks.OVERRIDE_REASON_BLOCK_ID
    try:
        campaign_id, shown_hash = blocks.parse_action_value(view.get("private_metadata") or "")
        values = view["state"]["values"]
        count_text = str(values[count_block][count_block]["value"] or "")
        reason = str(values[reason_block][reason_block]["value"] or "")
    except (ValueError, KeyError, TypeError):
        await ack(response_action="errors", errors={reason_block: DAMAGED_FORM})
        return
    try:
        typed = blocks.parse_override_count(count_text)
    except ValueError as exc:
        await ack(response_action="errors", errors={count_block: f"{exc}; type the number the form shows."})
        return
    user = body["user"]["id"]
    try:
        answer = await services.campaigns.include_excluded(
            campaign_id, user=user, shown_hash=shown_hash, typed_count=typed, reason=reason
        )
    except RequestError as exc:
        await ack(response_action="errors", errors={p.key: f"{p.value}: {p.rule}".lstrip(": ") for p in exc.problems})
        return
    except UserError as exc:
        await ack(response_action="errors", errors={count_block: str(exc)})
        return
    await ack()
    answer_in_dm(services, client, user, answer, name="override answer")


async def reject_clicked(
    ack: Ack,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: Respond,
    client: AsyncWebClient,
    *,
    services: Services,
) -> None:
    campaign_id, shown_hash = action_value(action)
    if not campaign_id:
        await ack_stale_button(ack, respond, services)
        return
    work = open_reject_modal(services, client, body, campaign_id, shown_hash)
    await ack_then_answer(ack, respond, services, work, name="reject modal")


async def open_reject_modal(
    services: Services, client: AsyncWebClient, body: dict[str, Any], campaign_id: int, shown_hash: str
) -> None:
    await services.campaigns.check_may_decide(campaign_id, user=body["user"]["id"])
    await client.views_open(trigger_id=body["trigger_id"], view=blocks.reject_reason_modal(campaign_id, shown_hash))


async def reject_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any], *, services: Services) -> None:
    try:
        campaign_id, shown_hash = blocks.parse_action_value(view.get("private_metadata") or "")
        reason = view["state"]["values"]["reason"]["reason"]["value"] or ""
    except (ValueError, KeyError, TypeError):
        await ack(response_action="errors", errors={"reason": DAMAGED_FORM})
        return
    try:
        await services.campaigns.reject(campaign_id, user=body["user"]["id"], shown_hash=shown_hash, reason=reason)
    except UserError as exc:
        await ack(response_action="errors", errors={"reason": str(exc)})
        return
    await ack()


async def withdraw(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, *, services: Services
) -> None:
    campaign_id, _ = action_value(action)
    if not campaign_id:
        await ack_stale_button(ack, respond, services)
        return
    work = services.campaigns.withdraw(campaign_id, user=body["user"]["id"])
    await ack_then_answer(ack, respond, services, work, name="withdraw")


def register(app: AsyncApp, services: Services) -> None:
    app.action(blocks.ACTION_APPROVE)(partial(approve, services=services))
    app.action(blocks.ACTION_APPROVE_ELIGIBLE)(partial(approve_eligible, services=services))
    app.action(blocks.ACTION_INCLUDE_EXCLUDED)(partial(include_excluded_clicked, services=services))
    app.view(blocks.OVERRIDE_MODAL_CALLBACK_ID)(partial(override_submitted, services=services))
    app.action(blocks.ACTION_REJECT)(partial(reject_clicked, services=services))
    app.view(blocks.REJECT_MODAL_CALLBACK_ID)(partial(reject_submitted, services=services))
    app.action(blocks.ACTION_WITHDRAW)(partial(withdraw, services=services))
