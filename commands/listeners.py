"""Thin Slack listeners: ack, parse, call one service, answer, as in Slack's Bolt starter template.

No SQL and no HTTP here. User mistakes are answered where the user looks: the
slash command's ephemeral reply, the modal's fields, an ephemeral message for
a button. Slack's 3-second limit: everything slow happens after the ack.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.background import Background
from bot.settings import Settings
from bot.slack_urls import trusted_response_url
from bot.workflow.campaigns import CampaignService
from bot.workflow.errors import UserError
from bot.workflow.operations import Operations
from bot.workflow.preflight import PreflightRunner
from commands import blocks
from commands.help import HELP_TEXT
from commands.imei import devices_from_file
from commands.modal import (
    SCHEDULE_CALLBACK_ID,
    FirmwareChoice,
    build_schedule_modal,
    parse_schedule_submission,
    uploaded_files,
    view_errors,
)
from commands.operator_listeners import (
    cancel_prompt,
    register_operator_listeners,
    show_devices,
    show_firmware,
    show_history,
    show_list,
    show_status,
)
from commands.parse import (
    Cancel,
    Devices,
    Firmware,
    Help,
    History,
    ListCampaigns,
    OpenModal,
    Schedule,
    Status,
    parse_command,
    parse_schedule,
)
from storage.model import Problem, RequestError

log = logging.getLogger("bot.listeners")

# Slack's file_input accepts big files; a device list is text: 100,000 IMEIs ≈ 1.6 MB.
MAX_DEVICE_FILE_BYTES = 8 * 1024 * 1024

Respond = Callable[..., Awaitable[Any]]

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


async def _nowhere(*args: Any, **kwargs: Any) -> None:
    """respond() for a request whose response_url is not Slack's: the answer is dropped."""


@dataclass(frozen=True)
class Services:
    settings: Settings
    campaigns: CampaignService
    operations: Operations
    background: Background
    clock: Callable[[], dt.datetime]
    download: Callable[[dict[str, Any], int], Awaitable[bytes]]
    preflight: PreflightRunner | None = None


def register_listeners(app: AsyncApp, services: Services) -> None:
    @app.middleware
    async def skip_redeliveries(
        req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        # Slack re-sends a request it thinks timed out (X-Slack-Retry-Num); the first one acted.
        if req.headers.get("x-slack-retry-num"):
            return BoltResponse(status=200, body="")
        # Every command and interaction names who acted; one without is not from Slack as
        # documented: refuse it plainly rather than fail inside a listener (a 500).
        body = req.body if isinstance(req.body, dict) else {}
        if body.get("command") or body.get("type") in ("block_actions", "view_submission"):
            user = body.get("user_id") if body.get("command") else (body.get("user") or {}).get("id")
            # Slack's user IDs are upper-case (U…, W…): a lower-case copy of someone's ID must
            # never pass for another person, in approvals or anywhere else.
            if not isinstance(user, str) or not _USER_ID.match(user):
                return BoltResponse(status=400, body="malformed Slack request: no valid user")
        url = req.context.get("response_url")
        if url and not trusted_response_url(str(url), services.settings.slack_api_url):
            log.warning("a Slack request named a response_url off Slack's hooks host; nothing is sent to it")
            req.context["response_url"] = None
            req.context["respond"] = _nowhere
            body.pop("response_url", None)
        return await next()

    def today() -> dt.date:
        return services.clock().astimezone(dt.UTC).date()

    def later(work: Awaitable[Any], respond: Respond, name: str) -> None:
        # Tracked before the ack goes out, so nothing after the ack runs unseen.
        services.background.spawn(_answer_errors(respond, work), name=name)

    @app.command("/fota")
    async def fota(ack: Any, command: dict[str, Any], respond: Respond, client: AsyncWebClient) -> None:
        user = command["user_id"]
        try:
            parsed = parse_command(command.get("text") or "")
        except RequestError as exc:
            await ack(**blocks.error_reply(exc.message()))
            return
        match parsed:
            case Help():
                await ack(text=HELP_TEXT)
            case OpenModal(prefill=prefill):
                # A trigger_id dies 3 s after the command: open the modal right after the ack.
                async def open_form() -> None:
                    # Say "not allowed" before someone fills in the whole form, not after.
                    await services.campaigns.check_may_request(user)
                    entries = await services.operations.firmware_for_form()
                    choices = [FirmwareChoice.from_entry(e) for e in entries or ()]
                    view = build_schedule_modal(prefill=prefill, firmware=choices)
                    await client.views_open(trigger_id=command["trigger_id"], view=view)

                later(open_form(), respond, "open modal")
                await ack()
            case Schedule(args=args):
                try:
                    request = parse_schedule(args, today=today(), max_devices=services.settings.max_devices)
                except RequestError as exc:
                    await ack(**blocks.error_reply(exc.message()))
                    return
                work = services.campaigns.request(user=user, request=request, response_url=command.get("response_url"))
                later(work, respond, "schedule request")
                count = len(request.devices)
                await ack(text=f"Checking your request for {count:,} device{'s' if count != 1 else ''}…")
            case Status(campaign=ident):
                later(show_status(services, ident, respond), respond, "status")
                await ack()
            case History(campaign=ident):
                later(show_history(services, ident, respond), respond, "history")
                await ack()
            case ListCampaigns(scope=scope):
                later(show_list(services, scope, user, None, respond), respond, "list")
                await ack()
            case Cancel(campaign=ident):
                later(cancel_prompt(services, ident, user, respond), respond, "cancel")
                await ack()
            case Firmware(account=account):
                later(show_firmware(services, account, respond), respond, "firmware")
                await ack()
            case Devices(campaign=ident, failed_only=failed_only):
                later(show_devices(services, ident, failed_only, respond, client, user), respond, "devices")
                await ack()

    @app.view(SCHEDULE_CALLBACK_ID)
    async def schedule_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient) -> None:
        user = body["user"]["id"]
        values = view["state"]["values"]
        try:
            file_text = await _device_file_text(services, uploaded_files(values))
            request = parse_schedule_submission(
                values, today=today(), max_devices=services.settings.max_devices, file_text=file_text
            )
        except RequestError as exc:
            await ack(response_action="errors", errors=view_errors(exc))
            return

        async def dm_errors(text: str, **_: Any) -> None:
            # A modal has no response_url: problems found after it closed go to a direct message.
            await client.chat_postMessage(channel=user, **blocks.error_reply(text, mentions=True))

        async def submit() -> None:
            try:
                await services.campaigns.request(user=user, request=request, response_url=None)
            except RequestError as exc:
                await dm_errors(exc.message())
            except UserError as exc:
                await dm_errors(str(exc))
            except sqlite3.Error:
                log.exception("a schedule request could not be recorded")
                await dm_errors(NOT_RECORDED)

        services.background.spawn(submit(), name="schedule request (modal)")
        await ack()

    @app.action(blocks.ACTION_APPROVE)
    async def approve(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        campaign_id, shown_hash = _action_value(action)
        if not campaign_id:
            later(_stale_button(), respond, "stale button")
            await ack()
            return
        work = services.campaigns.approve(campaign_id, user=body["user"]["id"], shown_hash=shown_hash)
        later(work, respond, "approve")
        await ack()

    @app.action(blocks.ACTION_PROMOTE)
    async def promote(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        try:
            parent_id, number = blocks.parse_promote_value(action.get("value"))
        except ValueError:
            later(_stale_button(), respond, "stale button")
            await ack()
            return
        later(services.campaigns.promote(parent_id, number, user=body["user"]["id"]), respond, "promote")
        await ack()

    @app.action(blocks.ACTION_APPROVE_ELIGIBLE)
    async def approve_eligible(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        campaign_id, shown_hash = _action_value(action)
        work = services.campaigns.approve(
            campaign_id, user=body["user"]["id"], shown_hash=shown_hash, eligible_only=True
        )
        later(work, respond, "approve eligible only")
        await ack()

    @app.action(blocks.ACTION_INCLUDE_EXCLUDED)
    async def include_excluded_clicked(
        ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: AsyncWebClient
    ) -> None:
        campaign_id, shown_hash = _action_value(action)
        if not campaign_id:
            later(_stale_button(), respond, "stale button")
            await ack()
            return

        async def open_modal() -> None:
            # Refused before the modal opens (not after the approver typed a reason): not an
            # approver, a stale card, nothing excluded left.
            campaign, record = await services.campaigns.override_form(
                campaign_id, user=body["user"]["id"], shown_hash=shown_hash
            )
            await client.views_open(trigger_id=body["trigger_id"], view=blocks.override_modal(campaign, record))

        later(open_modal(), respond, "override modal")
        await ack()

    @app.view(blocks.OVERRIDE_MODAL_CALLBACK_ID)
    async def override_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient) -> None:
        count_block, reason_block = blocks.OVERRIDE_COUNT_BLOCK_ID, blocks.OVERRIDE_REASON_BLOCK_ID
        try:
            campaign_id, shown_hash = blocks.parse_action_value(view.get("private_metadata") or "")
            values = view["state"]["values"]
            count_text = str(values[count_block][count_block]["value"] or "")
            reason = str(values[reason_block][reason_block]["value"] or "")
        except (ValueError, KeyError, TypeError):
            await ack(response_action="errors", errors={reason_block: "This form is damaged; close it and try again."})
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
        # A modal has no response_url: the approver's answer goes to a direct message.
        services.background.spawn(client.chat_postMessage(channel=user, text=answer), name="override answer")

    @app.action(blocks.ACTION_EXCLUDED_CSV)
    async def excluded_csv(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        campaign_id, _ = _action_value(action)
        if not campaign_id:
            later(_stale_button(), respond, "stale button")
            await ack()
            return

        async def share() -> str:
            shared = await services.operations.share_excluded_csv(campaign_id, body["user"]["id"])
            return blocks.excluded_csv_reply(f"FB-{campaign_id}", shared)

        later(share(), respond, "excluded devices CSV")
        await ack()

    @app.action(blocks.ACTION_PREFLIGHT_RETRY)
    async def preflight_retry(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        campaign_id, _ = _action_value(action)
        if services.preflight is not None:
            later(services.preflight.retry(campaign_id, user=body["user"]["id"]), respond, "pre-flight again")
        await ack()

    @app.action(blocks.ACTION_REJECT)
    async def reject_clicked(
        ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: AsyncWebClient
    ) -> None:
        campaign_id, shown_hash = _action_value(action)
        if not campaign_id:
            later(_stale_button(), respond, "stale button")
            await ack()
            return

        async def open_modal() -> None:
            await services.campaigns.check_may_decide(campaign_id, user=body["user"]["id"])
            await client.views_open(
                trigger_id=body["trigger_id"], view=blocks.reject_reason_modal(campaign_id, shown_hash)
            )

        later(open_modal(), respond, "reject modal")
        await ack()

    @app.view(blocks.REJECT_MODAL_CALLBACK_ID)
    async def reject_submitted(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            campaign_id, shown_hash = blocks.parse_action_value(view.get("private_metadata") or "")
            reason = view["state"]["values"]["reason"]["reason"]["value"] or ""
        except (ValueError, KeyError, TypeError):
            await ack(response_action="errors", errors={"reason": "This form is damaged; close it and try again."})
            return
        try:
            await services.campaigns.reject(campaign_id, user=body["user"]["id"], shown_hash=shown_hash, reason=reason)
        except UserError as exc:
            await ack(response_action="errors", errors={"reason": str(exc)})
            return
        await ack()

    @app.action(blocks.ACTION_WITHDRAW)
    async def withdraw(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        campaign_id, _ = _action_value(action)
        if not campaign_id:
            later(_stale_button(), respond, "stale button")
            await ack()
            return
        later(services.campaigns.withdraw(campaign_id, user=body["user"]["id"]), respond, "withdraw")
        await ack()

    register_operator_listeners(app, services)

    # Registered last, so only what nothing above handles lands here: buttons and forms of an
    # older version of the bot (after a redeploy) get an answer instead of Slack's error.
    @app.action(re.compile(".*"))
    async def unknown_button(ack: Any, respond: Respond) -> None:
        later(_stale_button(), respond, "unknown button")
        await ack()

    @app.view(re.compile(".*"))
    async def unknown_form(ack: Any) -> None:
        await ack()

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        # Never a traceback to a user: log it here; Bolt answers Slack with a plain failure.
        log.error("unhandled error in a Slack listener: %s", type(error).__name__, exc_info=error)


NOT_RECORDED = (
    "fota-bot could not record that: its database cannot be written right now (disk full or "
    "read-only). Nothing changed and nothing was sent to ThingSpace. Please try again later, and "
    "tell whoever runs fota-bot."
)
STALE_BUTTON = "This button is damaged or out of date; nothing changed. Run the command again, or use the latest card."


async def _stale_button() -> None:
    raise UserError(STALE_BUTTON)


def _action_value(action: dict[str, Any]) -> tuple[int, str]:
    try:
        return blocks.parse_action_value(action.get("value") or "")
    except ValueError:
        return 0, ""


async def _answer_errors(respond: Respond, work: Awaitable[Any]) -> None:
    """Run a service call; tell the user in an ephemeral reply what it said, or what went wrong."""
    try:
        result = await work
    except RequestError as exc:
        await respond(response_type="ephemeral", replace_original=False, **blocks.error_reply(exc.message()))
        return
    except UserError as exc:
        # Our own sentences carry <@U…> mentions of the requester; user text in them is ours to escape.
        await respond(response_type="ephemeral", replace_original=False, **blocks.error_reply(str(exc), mentions=True))
        return
    except sqlite3.Error:
        # Disk full, a read-only file: the user hears that nothing was recorded, not silence.
        log.exception("a request could not be recorded")
        await respond(response_type="ephemeral", replace_original=False, text=NOT_RECORDED)
        return
    except SlackApiError as exc:
        # E.g. views.open after the trigger expired (Slack allows 3 s): say so, not nothing.
        error = exc.response.get("error") or f"HTTP {exc.response.status_code}"
        log.warning("Slack refused a call made for a user: %s", error)
        await respond(
            response_type="ephemeral",
            replace_original=False,
            text=f"Slack refused that (`{error}`); nothing changed. Please try again; for the schedule form, "
            "`/fota schedule key=value …` works without it.",
        )
        return
    if isinstance(result, str):
        await respond(response_type="ephemeral", replace_original=False, text=result)


async def _device_file_text(services: Services, files: list[dict[str, Any]]) -> str | None:
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
            texts.append(devices_from_file(content, name))
        except RequestError as exc:
            # A problem with the file belongs under the file field, not the pasted-IMEIs box.
            raise RequestError([Problem("devices_file", p.value, p.rule) for p in exc.problems]) from exc
    return "\n".join(texts)
