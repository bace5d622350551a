"""Listeners and answers for the operator commands: status, list, cancel, firmware, devices, App Home.

Registered by `commands.listeners.register_listeners`; the same rules apply (thin: ack,
parse, call one service, answer). The `show_*` functions run after the ack (spawned into
`services.background` by the caller) and answer on the command's response_url; a
`UserError` they raise becomes an ephemeral error there.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot.workflow.errors import UserError
from commands import blocks
from commands.modal import build_schedule_modal
from storage.model import CancelKind

if TYPE_CHECKING:
    from commands.listeners import Respond, Services

log = logging.getLogger("bot.listeners")

FIRMWARE_PROTOCOL = "LWM2M"  # ThingSpace's v3 firmware list is asked per protocol; LWM2M in practice
_STALE_BUTTON = "This button is damaged or out of date; run the command again."


def register_operator_listeners(app: AsyncApp, services: Services) -> None:
    """Buttons of the operator views (list paging, cancel confirmation, firmware → modal) and App Home."""
    # Imported here: commands.listeners imports this module at its top.
    from commands.listeners import _answer_errors

    def later(work: Awaitable[Any], respond: Respond, name: str) -> None:
        # Tracked before the ack goes out, so nothing after the ack runs unseen (and tests settle).
        services.background.spawn(_answer_errors(respond, work), name=name)

    @app.middleware
    async def answer_home_clicks(
        req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        # A button on the Home tab (Approve, Reject) comes without a response_url, so the
        # listeners' respond() would have nowhere to go. Their answer is shown on top of the
        # re-published Home tab instead, which also drops the buttons of a decided request.
        body = req.body
        if body.get("type") == "block_actions" and (body.get("view") or {}).get("type") == "home":
            user_id = str((body.get("user") or {}).get("id") or "")
            if user_id:
                req.context["respond"] = _home_respond(services, user_id)
        return await next()

    @app.action(blocks.ACTION_LIST_PAGE)
    async def list_page(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        try:
            scope, before = blocks.parse_list_page_value(action.get("value"))
        except ValueError:
            later(_raise(_STALE_BUTTON), respond, "list page")
        else:
            later(show_list(services, scope, body["user"]["id"], before, respond), respond, "list page")
        await ack()

    @app.action(blocks.ACTION_CANCEL_CONFIRM)
    async def cancel_confirmed(ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        try:
            campaign_id, kind = blocks.parse_cancel_value(action.get("value"))
        except ValueError:
            later(_raise(_STALE_BUTTON), respond, "cancel")
        else:
            later(confirm_cancel(services, campaign_id, kind, body["user"]["id"], respond), respond, "cancel")
        await ack()

    @app.action(blocks.ACTION_HISTORY)
    async def history_clicked(ack: Any, action: dict[str, Any], respond: Respond) -> None:
        try:
            campaign_id = blocks.parse_history_value(action.get("value"))
        except ValueError:
            later(_raise(_STALE_BUTTON), respond, "history")
        else:
            later(show_history(services, f"FB-{campaign_id}", respond), respond, "history")
        await ack()

    @app.action(blocks.ACTION_CANCEL_KEEP)
    async def cancel_kept(ack: Any, respond: Respond) -> None:
        later(respond(delete_original=True), respond, "cancel kept")
        await ack()

    @app.action(blocks.ACTION_FIRMWARE_SCHEDULE)
    async def firmware_schedule(
        ack: Any, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: AsyncWebClient
    ) -> None:
        try:
            prefill = blocks.parse_firmware_value(action.get("value"))
        except ValueError:
            later(_raise(_STALE_BUTTON), respond, "firmware modal")
        else:
            # A trigger_id dies 3 s after the click: open the modal right after the ack.
            view = build_schedule_modal(prefill=prefill)
            later(client.views_open(trigger_id=body["trigger_id"], view=view), respond, "firmware modal")
        await ack()

    @app.event("app_home_opened")
    async def home_opened(event: dict[str, Any]) -> None:
        # The same event fires for the Messages tab; only the Home tab is ours to draw.
        if event.get("tab", "home") != "home" or not event.get("user"):
            return
        services.background.spawn(refresh_home(services, str(event["user"])), name="app home")


async def _raise(message: str) -> None:
    raise UserError(message)


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
        outcome.campaign, outcome.result, error_code=outcome.error_code, error_message=outcome.error_message
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


async def refresh_home(services: Services, user: str, notice: Sequence[blocks.Block] = ()) -> None:
    """Build and publish `user`'s Home tab from the database as it is now."""
    home = await services.operations.home(user)
    view = blocks.home_view(
        home.user,
        may_approve=home.may_approve,
        to_decide=home.to_decide,
        mine_waiting=home.mine_waiting,
        active=home.active,
        totals=home.totals,
        required_approvals=services.settings.required_approvals,
        sandbox=services.settings.sandbox_mode,
        now=services.clock(),
        notice=notice,
    )
    await services.operations.publish_home(user, view)


def _home_respond(services: Services, user: str) -> Respond:
    """A respond() for a click on the Home tab: the answer (text and blocks, as an ephemeral
    reply would carry them) goes on top of the re-published tab."""

    async def respond(text: str = "", **message: Any) -> None:
        await refresh_home(services, user, notice=blocks.home_notice(text, message.get("blocks")))

    return respond
