"""What every listener module shares: the services they call, and how an answer reaches the user.

Thin listeners (the starter template's rule): ack, parse, call one service, answer. No SQL and
no HTTP here. User mistakes are answered where the user looks: the slash command's ephemeral
reply, the modal's fields, an ephemeral message for a button. Slack's 3-second limit:
everything slow happens after the ack, in `Background` (`ack_then_answer`): Bolt answers Slack
when the listener returns (bot/app.py), so a listener never awaits slow work itself.
"""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.background import Background
from bot.settings import Settings
from bot.slack_respond import ResponseUrls
from bot.workflow.campaigns import CampaignService
from bot.workflow.errors import UserError
from bot.workflow.operations import Operations
from bot.workflow.preflight import PreflightRunner
from bot.workflow.retries import Retries
from commands import blocks
from storage.model import RequestError

log = logging.getLogger("bot.listeners")

# Bolt's ack() and respond(): what a handler is given, and what a unit test fakes.
Ack = Callable[..., Awaitable[Any]]
Respond = Callable[..., Awaitable[Any]]
Next = Callable[[], Awaitable[BoltResponse]]

NOT_RECORDED = (
    "fota-bot could not record that: its database cannot be written right now (disk full or "
    "read-only). Nothing changed and nothing was sent to ThingSpace. Please try again later, and "
    "tell whoever runs fota-bot."
)
# A modal's private_metadata or state not as the bot built it (an older bot's form, a forged one).
DAMAGED_FORM = "This form is damaged; close it and try again."
STALE_BUTTON = "This button is damaged or out of date; nothing changed. Run the command again, or use the latest card."


@dataclass(frozen=True)
class Services:
    """The services the handlers call, built once by the composition root (bot/app.py).

    Every module's `register(app, services)` binds them to its handlers with
    `functools.partial(handler, services=services)`: a keyword-only argument, which Bolt's
    argument injection leaves alone (it fills in only the positional names it knows: ack,
    body, respond, client…). Chosen over putting them in Bolt's request context, which also
    reaches handlers as an argument: the context is a per-request dict filled by a
    middleware, a misspelt key arrives as None with only a log warning, and nothing
    type-checks it; a partial binds the one frozen object at start-up, where it can be seen,
    and a unit test passes the same keyword.
    """

    settings: Settings
    campaigns: CampaignService
    operations: Operations
    background: Background
    clock: Callable[[], dt.datetime]
    download: Callable[[dict[str, Any], int], Awaitable[bytes]]
    preflight: PreflightRunner | None = None
    # Answers on a response_url share one HTTP session (Bolt's respond() opens one per answer).
    response_urls: ResponseUrls | None = None
    retries: Retries | None = None

    def today(self) -> dt.date:
        return self.clock().astimezone(dt.UTC).date()


class Middleware(AsyncMiddleware):
    """A middleware function of Bolt's three arguments (req, resp, next), registered as a Bolt
    middleware object: Bolt wraps a plain function in one that works out again, on every
    request, which arguments it takes and builds them all."""

    def __init__(self, func: Callable[[AsyncBoltRequest, BoltResponse, Next], Awaitable[BoltResponse]]):
        self.func = func

    async def async_process(self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Next) -> BoltResponse:
        return await self.func(req, resp, next)


async def ack_then_answer(
    ack: Ack, respond: Respond, services: Services, work: Awaitable[Any], *, name: str, **reply: Any
) -> None:
    """Run `work` after the ack, its answer (or what went wrong) to `respond`.

    The work is tracked before the ack goes out, so nothing after the ack runs unseen (and
    tests settle it)."""
    services.background.spawn(answer_errors(respond, work), name=name)
    await ack(**reply)


def answer_in_dm(services: Services, client: AsyncWebClient, user: str, text: str, *, name: str) -> None:
    """After a modal's ack: a modal has no response_url, so its answer goes to a direct message."""
    services.background.spawn(client.chat_postMessage(channel=user, text=text), name=name)


async def refuse(message: str) -> None:
    """Work whose answer is a refusal: the user reads `message` as an ephemeral error."""
    raise UserError(message)


async def ack_stale_button(ack: Ack, respond: Respond, services: Services, *, name: str = "stale button") -> None:
    await ack_then_answer(ack, respond, services, refuse(STALE_BUTTON), name=name)


def action_value(action: dict[str, Any]) -> tuple[int, str]:
    """A card button's campaign id and the content hash it was shown with; (0, "") if damaged."""
    try:
        return blocks.parse_action_value(action.get("value") or "")
    except ValueError:
        return 0, ""


async def answer_errors(respond: Respond, work: Awaitable[Any]) -> None:
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
