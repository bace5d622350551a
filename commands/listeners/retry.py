"""Retrying failed devices: the *Retry failed (N)…* button and `/fota retry ID` open the request
form with the failed devices; its submission requests them like any request."""

from __future__ import annotations

import logging
import sqlite3
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.workflow.errors import UserError
from commands import blocks
from commands.listeners.common import (
    NOT_RECORDED,
    Ack,
    Respond,
    Services,
    ack_stale_button,
    ack_then_answer,
)
from commands.modal import (
    FirmwareChoice,
    build_schedule_modal,
    parse_schedule_submission,
    view_errors,
)
from storage.model import RequestError

log = logging.getLogger("bot.listeners")

# Where the form shows a refusal found when it is sent: it has no devices input of its own.
ERROR_BLOCK = "firmware"


async def open_retry_form(
    services: Services, client: AsyncWebClient, *, trigger_id: str, user: str, ident: str, wave: int | None
) -> None:
    """The request form, filled in from the original, its devices the failed ones (or a refusal)."""
    if services.retries is None:
        raise UserError("Retrying failed devices is not available in this bot.")
    origin = await services.retries.form(ident, wave, user=user)
    entries = await services.operations.firmware_for_form()
    view = build_schedule_modal(
        prefill=blocks.retry_prefill(origin.campaign, services.today()),
        firmware=[FirmwareChoice.from_entry(e) for e in entries or ()],
        devices_blocks=blocks.retry_form_blocks(origin.campaign.ref, origin.failed, origin.reasons),
        private_metadata=blocks.retry_metadata(origin.campaign.id, len(origin.failed)),
    )
    await client.views_open(trigger_id=trigger_id, view=view)


async def retry_clicked(
    ack: Ack,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: Respond,
    client: AsyncWebClient,
    *,
    services: Services,
) -> None:
    try:
        campaign_id = blocks.parse_retry_value(action.get("value"))
    except ValueError:
        await ack_stale_button(ack, respond, services)
        return
    # A trigger_id dies 3 s after the click: the form opens right after the ack.
    work = open_retry_form(
        services, client, trigger_id=body["trigger_id"], user=body["user"]["id"], ident=f"FB-{campaign_id}", wave=None
    )
    await ack_then_answer(ack, respond, services, work, name="retry form")


async def retry_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient, *, services: Services,
    origin_id: int, shown: int,
) -> None:
    """The retry form sent: its fields as any request's, its devices the original's failed ones."""
    user = body["user"]["id"]
    retries = services.retries
    if retries is None:
        await ack(response_action="errors", errors={ERROR_BLOCK: "Retrying failed devices is not available."})
        return
    try:
        origin = retries.for_submission(origin_id, shown)
        request = parse_schedule_submission(
            view["state"]["values"],
            today=services.today(),
            max_devices=services.settings.max_devices,
            file_text="\n".join(origin.failed),
        )
    except UserError as exc:
        await ack(response_action="errors", errors={ERROR_BLOCK: str(exc)})
        return
    except RequestError as exc:
        await ack(response_action="errors", errors=view_errors(exc))
        return

    async def submit() -> None:
        try:
            await retries.request(origin, user=user, request=request)
        except RequestError as exc:
            await _dm_error(client, user, exc.message())
        except UserError as exc:
            await _dm_error(client, user, str(exc))
        except sqlite3.Error:
            log.exception("a retry request could not be recorded")
            await _dm_error(client, user, NOT_RECORDED)

    services.background.spawn(submit(), name="retry request (modal)")
    await ack()


async def _dm_error(client: AsyncWebClient, user: str, text: str) -> None:
    # A modal has no response_url: problems found after it closed go to a direct message.
    await client.chat_postMessage(channel=user, **blocks.error_reply(text, mentions=True))


def register(app: AsyncApp, services: Services) -> None:
    app.action(blocks.ACTION_RETRY_FAILED)(partial(retry_clicked, services=services))
