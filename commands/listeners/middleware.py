"""What every Slack request passes before a listener: redeliveries, who acted, the response_url."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.slack_urls import trusted_response_url
from commands.listeners.common import Middleware, Services

log = logging.getLogger("bot.listeners")

_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")


async def respond_nowhere(*args: Any, **kwargs: Any) -> None:
    """respond() for a request whose response_url is not Slack's: the answer is dropped."""


async def skip_redeliveries(
    req: AsyncBoltRequest,
    resp: BoltResponse,
    next: Callable[[], Awaitable[BoltResponse]],
    *,
    services: Services,
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
        req.context["respond"] = respond_nowhere
        body.pop("response_url", None)
    elif url and services.response_urls is not None:
        req.context["respond"] = services.response_urls.respond(str(url))
    return await next()


def register(app: AsyncApp, services: Services) -> None:
    app.middleware(Middleware(partial(skip_redeliveries, services=services)))
