"""The operator commands' answers (status, history, list, cancel, firmware, devices) and their
buttons (list paging, cancel confirmation, History, firmware → schedule modal).

The `show_*` answers run after the ack (spawned by the /fota handler or a button's) and answer
on the response_url; a `UserError` they raise becomes an ephemeral error there.
"""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from commands import blocks
from commands.listeners.common import Ack, Respond, Services, ack_then_answer, refuse
from commands.modal import build_schedule_modal
from storage.model import CancelKind

FIRMWARE_PROTOCOL = "LWM2M"  # ThingSpace's v3 firmware list is asked per protocol; LWM2M in practice
# These buttons sit on ephemeral answers, not cards: the way back is the command, not a newer card.
STALE_ANSWER_BUTTON = "This button is damaged or out of date; run the command again."


# --- buttons -----------------------------------------------------------------------------------------


async def list_page(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, *, services: Services
) -> None:
    try:
        scope, before = blocks.parse_list_page_value(action.get("value"))
    except ValueError:
        work = refuse(STALE_ANSWER_BUTTON)
    else:
        work = show_list(services, scope, body["user"]["id"], before, respond)
    await ack_then_answer(ack, respond, services, work, name="list page")


async def cancel_confirmed(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, *, services: Services
) -> None:
    try:
        campaign_id, kind = blocks.parse_cancel_value(action.get("value"))
    except ValueError:
        work = refuse(STALE_ANSWER_BUTTON)
    else:
        work = confirm_cancel(services, campaign_id, kind, body["user"]["id"], respond)
    await ack_then_answer(ack, respond, services, work, name="cancel")


async def history_clicked(ack: Ack, action: dict[str, Any], respond: Respond, *, services: Services) -> None:
    try:
        campaign_id = blocks.parse_history_value(action.get("value"))
    except ValueError:
        work = refuse(STALE_ANSWER_BUTTON)
    else:
        work = show_history(services, f"FB-{campaign_id}", respond)
    await ack_then_answer(ack, respond, services, work, name="history")


async def cancel_kept(ack: Ack, respond: Respond, *, services: Services) -> None:
    await ack_then_answer(ack, respond, services, respond(delete_original=True), name="cancel kept")


async def firmware_schedule(
    ack: Ack,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: Respond,
    client: AsyncWebClient,
    *,
    services: Services,
) -> None:
    work: Awaitable[Any]
    try:
        prefill = blocks.parse_firmware_value(action.get("value"))
    except ValueError:
        work = refuse(STALE_ANSWER_BUTTON)
    else:
        # A trigger_id dies 3 s after the click: open the modal right after the ack.
        work = client.views_open(trigger_id=body["trigger_id"], view=build_schedule_modal(prefill=prefill))
    await ack_then_answer(ack, respond, services, work, name="firmware modal")


# --- answers ---------------------------------------------------------------------------------------


async def show_status(services: Services, ident: str, respond: Respond) -> None:
    view = await services.operations.status(ident)
    reply = blocks.status_reply(
        view,
        required_approvals=services.settings.required_approvals,
        permalink=view.permalink,
        last_actor=view.last_actor,
        now=services.clock(),
    )
    await respond(response_type="ephemeral", replace_original=False, **reply)


async def show_history(services: Services, ident: str, respond: Respond) -> None:
    campaign, entries = services.operations.history(ident)
    await respond(response_type="ephemeral", replace_original=False, **blocks.history_reply(campaign.ref, entries))


async def show_list(services: Services, scope: str, user: str, before: int | None, respond: Respond) -> None:
    page = services.operations.list_campaigns(scope=scope, user=user, before_id=before)
    reply = blocks.list_reply(page.items, scope=page.scope, next_before=page.next_before, first_page=page.first_page)
    # A "Next page" click replaces the list it was clicked on rather than stacking lists up.
    await respond(response_type="ephemeral", replace_original=before is not None, **reply)


async def cancel_prompt(services: Services, ident: str, user: str, respond: Respond) -> None:
    campaign = await services.operations.check_cancel(ident, user)
    reply = blocks.cancel_prompt(campaign, kind=services.operations.cancel_kind(campaign))
    await respond(response_type="ephemeral", replace_original=False, **reply)


async def confirm_cancel(
    services: Services, campaign_id: int, kind: CancelKind, user: str, respond: Respond
) -> None:
    # Operations.cancel checks again who may cancel: the prompt may be old, the approvers changed.
    outcome = await services.operations.cancel(str(campaign_id), user=user, shown=kind)
    reply = blocks.cancel_outcome_reply(
        outcome.campaign, outcome.result, error_code=outcome.error_code, error_message=outcome.error_message,
        said=outcome.said,
    )
    # Replacing the prompt takes its button away: a second click cannot cancel twice.
    await respond(response_type="ephemeral", replace_original=True, **reply)


async def show_firmware(services: Services, account: str | None, respond: Respond) -> None:
    account, entries = await services.operations.firmware(account, FIRMWARE_PROTOCOL)
    reply = blocks.firmware_reply(account, entries, protocol=FIRMWARE_PROTOCOL)
    await respond(response_type="ephemeral", replace_original=False, **reply)


async def show_devices(
    services: Services, ident: str, failed_only: bool, respond: Respond, client: AsyncWebClient, user: str
) -> None:
    # `client` is Bolt's Web API client, the one `services.operations` was built with: the CSV
    # goes through the service so that this stays a thin answer.
    listing = services.operations.devices(ident, failed_only=failed_only)
    shared = await services.operations.share_devices_csv(listing, user)
    reply = blocks.devices_reply(
        listing.campaign,
        counts=listing.counts,
        devices=listing.devices,
        total=listing.total,
        failed_only=failed_only,
        shared=shared,
    )
    await respond(response_type="ephemeral", replace_original=False, **reply)


def register(app: AsyncApp, services: Services) -> None:
    app.action(blocks.ACTION_LIST_PAGE)(partial(list_page, services=services))
    app.action(blocks.ACTION_CANCEL_CONFIRM)(partial(cancel_confirmed, services=services))
    app.action(blocks.ACTION_HISTORY)(partial(history_clicked, services=services))
    app.action(blocks.ACTION_CANCEL_KEEP)(partial(cancel_kept, services=services))
    app.action(blocks.ACTION_FIRMWARE_SCHEDULE)(partial(firmware_schedule, services=services))
