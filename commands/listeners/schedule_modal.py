"""The schedule modal's submission: the form's mistakes under its fields, later ones in a DM."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.workflow.errors import UserError
from commands import blocks
from commands.imei import devices_from_file
from commands.listeners.common import NOT_RECORDED, Ack, Services
from commands.listeners.retry import retry_submitted
from commands.modal import (
    SCHEDULE_CALLBACK_ID,
    parse_schedule_submission,
    uploaded_files,
    view_errors,
)
from storage.model import Problem, RequestError, ScheduleRequest

log = logging.getLogger("bot.listeners")

# Slack's file_input accepts big files; a device list is text: 100,000 IMEIs ≈ 1.6 MB.
MAX_DEVICE_FILE_BYTES = 8 * 1024 * 1024


async def schedule_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient, *, services: Services
) -> None:
    retry = blocks.parse_retry_metadata(view.get("private_metadata"))
    if retry is not None:
        # The form a *Retry failed* button or `/fota retry` opened: its devices are the failed ones.
        await retry_submitted(ack, body, view, client, services=services, origin_id=retry[0], shown=retry[1])
        return
    user = body["user"]["id"]
    values = view["state"]["values"]
    try:
        file_text = await device_file_text(services, uploaded_files(values))
        # A file of 100,000 IMEIs takes a few hundred ms to read and check: in a thread, so the
        # event loop (other acks, callbacks) keeps turning meanwhile. Both are pure.
        request = await asyncio.to_thread(
            partial(
                parse_schedule_submission,
                values,
                today=services.today(),
                max_devices=services.settings.max_devices,
                file_text=file_text,
            )
        )
    except RequestError as exc:
        await ack(response_action="errors", errors=view_errors(exc))
        return
    services.background.spawn(submit(services, client, user, request), name="schedule request (modal)")
    await ack()


async def submit(services: Services, client: AsyncWebClient, user: str, request: ScheduleRequest) -> None:
    try:
        await services.campaigns.request(user=user, request=request, response_url=None)
    except RequestError as exc:
        await _dm_error(client, user, exc.message())
    except UserError as exc:
        await _dm_error(client, user, str(exc))
    except sqlite3.Error:
        log.exception("a schedule request could not be recorded")
        await _dm_error(client, user, NOT_RECORDED)


async def _dm_error(client: AsyncWebClient, user: str, text: str) -> None:
    # A modal has no response_url: problems found after it closed go to a direct message.
    await client.chat_postMessage(channel=user, **blocks.error_reply(text, mentions=True))


async def device_file_text(services: Services, files: list[dict[str, Any]]) -> str | None:
    if not files:
        return None
    texts: list[str] = []
    for file in files:
        name = str(file.get("name") or "devices")
        if int(file.get("size") or 0) > MAX_DEVICE_FILE_BYTES:
            raise RequestError(
                [Problem("devices_file", name, f"is larger than {MAX_DEVICE_FILE_BYTES // (1024 * 1024)} MiB")]
            )
        try:
            content = await services.download(file, MAX_DEVICE_FILE_BYTES)
        except UserError as exc:
            raise RequestError([Problem("devices_file", name, str(exc))]) from exc
        try:
            texts.append(await asyncio.to_thread(devices_from_file, content, name))
        except RequestError as exc:
            # A problem with the file belongs under the file field, not the pasted-IMEIs box.
            raise RequestError([Problem("devices_file", p.value, p.rule) for p in exc.problems]) from exc
    return "\n".join(texts)


def register(app: AsyncApp, services: Services) -> None:
    app.view(SCHEDULE_CALLBACK_ID)(partial(schedule_submitted, services=services))
