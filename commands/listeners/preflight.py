"""The pre-flight findings' buttons: the excluded devices as a CSV, pre-flight run again."""

from __future__ import annotations

from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp

from commands import blocks
from commands.listeners.common import (
    Ack,
    Respond,
    Services,
    ack_stale_button,
    ack_then_answer,
    action_value,
)


async def excluded_csv(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, *, services: Services
) -> None:
    campaign_id, _ = action_value(action)
    if not campaign_id:
        await ack_stale_button(ack, respond, services)
        return
    work = share_excluded_csv(services, campaign_id, body["user"]["id"])
    await ack_then_answer(ack, respond, services, work, name="excluded devices CSV")


async def share_excluded_csv(services: Services, campaign_id: int, user: str) -> str:
    shared = await services.operations.share_excluded_csv(campaign_id, user)
    return blocks.excluded_csv_reply(f"FB-{campaign_id}", shared)


async def preflight_retry(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, *, services: Services
) -> None:
    campaign_id, _ = action_value(action)
    if services.preflight is None:
        await ack()
        return
    work = services.preflight.retry(campaign_id, user=body["user"]["id"])
    await ack_then_answer(ack, respond, services, work, name="pre-flight again")


def register(app: AsyncApp, services: Services) -> None:
    app.action(blocks.ACTION_EXCLUDED_CSV)(partial(excluded_csv, services=services))
    app.action(blocks.ACTION_PREFLIGHT_RETRY)(partial(preflight_retry, services=services))
