"""A staged rollout's buttons: promoting the next wave."""

from __future__ import annotations

from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp

from commands import blocks
from commands.listeners.common import Ack, Respond, Services, ack_stale_button, ack_then_answer


async def promote(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, *, services: Services
) -> None:
    try:
        parent_id, number = blocks.parse_promote_value(action.get("value"))
    except ValueError:
        await ack_stale_button(ack, respond, services)
        return
    work = services.campaigns.promote(parent_id, number, user=body["user"]["id"])
    await ack_then_answer(ack, respond, services, work, name="promote")


def register(app: AsyncApp, services: Services) -> None:
    app.action(blocks.ACTION_PROMOTE)(partial(promote, services=services))
