"""/fota and its subcommands: parsed, acked within Slack's 3 seconds, answered on the response_url."""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from commands import blocks
from commands.help import HELP_TEXT
from commands.listeners.common import Ack, Respond, Services, ack_then_answer
from commands.listeners.operator import (
    cancel_prompt,
    show_devices,
    show_firmware,
    show_history,
    show_list,
    show_status,
)
from commands.listeners.retry import open_retry_form
from commands.modal import FirmwareChoice, build_schedule_modal
from commands.parse import (
    Cancel,
    Devices,
    Firmware,
    Help,
    History,
    ListCampaigns,
    OpenModal,
    Retry,
    Schedule,
    Status,
    parse_command,
    parse_schedule,
)
from storage.model import RequestError


async def fota(
    ack: Ack, command: dict[str, Any], respond: Respond, client: AsyncWebClient, *, services: Services
) -> None:
    user = command["user_id"]
    try:
        parsed = parse_command(command.get("text") or "")
    except RequestError as exc:
        await ack(**blocks.error_reply(exc.message()))
        return
    work: Awaitable[Any]
    match parsed:
        case Help():
            await ack(text=HELP_TEXT)
            return
        case Schedule(args=args):
            try:
                request = parse_schedule(args, today=services.today(), max_devices=services.settings.max_devices)
            except RequestError as exc:
                await ack(**blocks.error_reply(exc.message()))
                return
            work = services.campaigns.request(user=user, request=request, response_url=command.get("response_url"))
            count = len(request.devices)
            checking = f"Checking your request for {count:,} device{'s' if count != 1 else ''}…"
            await ack_then_answer(ack, respond, services, work, name="schedule request", text=checking)
            return
        case OpenModal(prefill=prefill):
            # A trigger_id dies 3 s after the command: open the modal right after the ack.
            work, name = open_schedule_form(services, client, command, prefill), "open modal"
        case Status(campaign=ident):
            work, name = show_status(services, ident, respond), "status"
        case History(campaign=ident):
            work, name = show_history(services, ident, respond), "history"
        case ListCampaigns(scope=scope):
            work, name = show_list(services, scope, user, None, respond), "list"
        case Cancel(campaign=ident):
            work, name = cancel_prompt(services, ident, user, respond), "cancel"
        case Firmware(account=account):
            work, name = show_firmware(services, account, respond), "firmware"
        case Devices(campaign=ident, failed_only=failed_only):
            work, name = show_devices(services, ident, failed_only, respond, client, user), "devices"
        case Retry(campaign=ident, wave=wave):
            # A trigger_id dies 3 s after the command: the form opens right after the ack.
            work = open_retry_form(
                services, client, trigger_id=command["trigger_id"], user=user, ident=ident, wave=wave
            )
            name = "retry form"
    await ack_then_answer(ack, respond, services, work, name=name)


async def open_schedule_form(
    services: Services, client: AsyncWebClient, command: dict[str, Any], prefill: dict[str, str]
) -> None:
    # Say "not allowed" before someone fills in the whole form, not after.
    await services.campaigns.check_may_request(command["user_id"])
    entries = await services.operations.firmware_for_form()
    choices = [FirmwareChoice.from_entry(e) for e in entries or ()]
    view = build_schedule_modal(prefill=prefill, firmware=choices)
    await client.views_open(trigger_id=command["trigger_id"], view=view)


def register(app: AsyncApp, services: Services) -> None:
    app.command("/fota")(partial(fota, services=services))
