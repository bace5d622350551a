"""What nothing else handles: buttons and forms of an older version of the bot, and errors.

Registered last: Bolt runs the first listener that matches, so these catch-alls only see what
no module before them claimed.
"""

from __future__ import annotations

import logging
import re
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from commands.listeners.common import Ack, Respond, Services, ack_stale_button

log = logging.getLogger("bot.listeners")


async def unknown_button(ack: Ack, respond: Respond, *, services: Services) -> None:
    # After a redeploy, an old card's button gets an answer instead of Slack's error.
    await ack_stale_button(ack, respond, services, name="unknown button")


async def unknown_form(ack: Ack) -> None:
    await ack()


async def on_error(error: Exception, body: dict[str, Any], request: AsyncBoltRequest) -> BoltResponse | None:
    # Never a traceback to a user: log it here; Bolt answers Slack with a plain failure.
    log.error("unhandled error in a Slack listener: %s", type(error).__name__, exc_info=error)
    # Bolt answers Slack when the listener returns (bot/app.py), and on an error it answers 500
    # even when the listener had acked already: Slack would then show the user a failure for a
    # request it had been told was taken. What the ack said is the answer, as it was.
    acked: BoltResponse | None = request.context.ack.response
    return acked


def register(app: AsyncApp, services: Services) -> None:
    app.action(re.compile(".*"))(partial(unknown_button, services=services))
    app.view(re.compile(".*"))(unknown_form)
    app.error(on_error)
