"""The App Home tab: drawn when opened, and the answer to a click on it shown on top of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from commands import blocks
from commands.listeners.common import Middleware, Respond, Services


async def answer_home_clicks(
    req: AsyncBoltRequest,
    resp: BoltResponse,
    next: Callable[[], Awaitable[BoltResponse]],
    *,
    services: Services,
) -> BoltResponse:
    # A button on the Home tab (Approve, Reject) comes without a response_url, so the
    # listeners' respond() would have nowhere to go. Their answer is shown on top of the
    # re-published Home tab instead, which also drops the buttons of a decided request.
    body = req.body
    if body.get("type") == "block_actions" and (body.get("view") or {}).get("type") == "home":
        user_id = str((body.get("user") or {}).get("id") or "")
        if user_id:
            req.context["respond"] = home_respond(services, user_id)
    return await next()


async def home_opened(event: dict[str, Any], *, services: Services) -> None:
    # The same event fires for the Messages tab; only the Home tab is ours to draw.
    if event.get("tab", "home") != "home" or not event.get("user"):
        return
    services.background.spawn(refresh_home(services, str(event["user"])), name="app home")


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


def home_respond(services: Services, user: str) -> Respond:
    """A respond() for a click on the Home tab: the answer (text and blocks, as an ephemeral
    reply would carry them) goes on top of the re-published tab."""

    async def respond(text: str = "", **message: Any) -> None:
        await refresh_home(services, user, notice=blocks.home_notice(text, message.get("blocks")))

    return respond


def register(app: AsyncApp, services: Services) -> None:
    app.middleware(Middleware(partial(answer_home_clicks, services=services)))
    app.event("app_home_opened")(partial(home_opened, services=services))
