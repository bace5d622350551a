"""What stands between the internet and Bolt on `POST /slack/events`.

Anyone can reach that route, so before Bolt parses anything the request must be small,
carry a numeric timestamp and a valid Slack signature, and not be a replay of a request
already acted on. Bolt never sees an unsigned body, so nothing unsigned reaches its logs.

Bolt's own signature check (`GuardedRequestVerification`, in its place among Bolt's middleware)
lets through without a second HMAC only a request the route marked as passed by this guard, and
checks every other request as Bolt always does: a way into Bolt that bypasses the guard (Socket
Mode aside, which Bolt never checks) is still refused unless signed.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_bolt.middleware.request_verification.async_request_verification import (
    AsyncRequestVerification,
)
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier
from starlette.requests import ClientDisconnect, Request

from bot.request_body import read_limited

log = logging.getLogger("bot.slack_guard")

# Every payload Slack sends here carries a message or a view this bot built (our cards and
# modals stay well inside Block Kit's limits, a few tens of KB) plus at most a few
# 3,000-character inputs; URL-encoding can triple that. 1 MiB leaves a wide margin and keeps
# an unsigned sender from making the process hold more than that per request.
MAX_SLACK_BODY = 1024 * 1024

# Slack's replay window: Bolt refuses a timestamp more than five minutes from its clock.
SIGNATURE_WINDOW = 5 * 60


@dataclass(frozen=True)
class Refusal:
    status: int
    text: str


UNSIGNED = Refusal(401, "invalid request")
TOO_LARGE = Refusal(413, "request body too large")
GONE = Refusal(400, "request body incomplete")
# A replay of a signed request that was acted on: an empty 200 (Slack shows nothing) and no work.
REPLAYED = Refusal(200, "")


class SlackRequestGuard:
    """Checks one request's size, signature and novelty; hands back the body when it passes."""

    def __init__(
        self,
        *,
        signing_secret: str | None,
        first_sighting: Callable[[str, float], Awaitable[bool]],
        max_body: int = MAX_SLACK_BODY,
        now: Callable[[], float] = time.time,
    ):
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self._first_sighting = first_sighting
        self._max_body = max_body
        self._now = now

    async def check(self, request: Request) -> bytes | Refusal:
        if self._verifier is None:
            # No signing secret (Socket Mode only): nothing may come in over HTTP.
            return UNSIGNED
        timestamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        # A forged header is answered before the body is read: no reason to take it in.
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or not signature:
            return UNSIGNED
        if abs(self._now() - int(timestamp)) > SIGNATURE_WINDOW:
            return UNSIGNED
        try:
            body = await read_limited(request, self._max_body)
        except ClientDisconnect:
            return GONE
        if body is None:
            log.info("Slack request refused: body over %d bytes", self._max_body)
            return TOO_LARGE
        if not self._verifier.is_valid(body, timestamp, signature):
            # Neither the body nor the signature is logged: both are the sender's text.
            log.info("Slack request refused: invalid signature")
            return UNSIGNED
        try:
            fresh = await self._first_sighting(signature, self._now())
        except sqlite3.Error:
            # Nothing can be recorded, so a replay could change nothing either; let the request
            # through so the user is told, by the listener that fails to record it, that nothing
            # happened (rather than Slack's bare "failed with http_service_error").
            log.exception("a Slack request's signature could not be recorded: the database is unusable")
            return body
        if not fresh:
            log.warning("a signed Slack request arrived a second time; not acted on again")
            return REPLAYED
        return body


class Sightings:
    """The signatures of the requests that reach the guard in one turn of the event loop, recorded
    together in one transaction (Store.first_sightings), in the order they came.

    A commit per request was most of what the guard cost under load; requests arriving together
    now share one. Each request still waits for the commit that records its own signature before
    it goes on, so a request is acted on only once its signature is on disk, and a replay is
    refused after a crash or restart exactly as with a commit of its own. Two copies of one
    request in the same turn: the first goes on, the second is the replay.
    """

    def __init__(self, record: Callable[[Sequence[tuple[str, float]]], list[bool]]):
        self._record = record
        self._waiting: list[tuple[str, float, asyncio.Future[bool]]] = []

    async def first(self, signature: str, now: float) -> bool:
        """True when `signature` was never seen before; raises what recording it raised."""
        loop = asyncio.get_running_loop()
        if not self._waiting:
            # After the callbacks already due in this turn: the requests they carry join in.
            loop.call_soon(self._flush)
        seen: asyncio.Future[bool] = loop.create_future()
        self._waiting.append((signature, now, seen))
        return await seen

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        try:
            fresh = self._record([(signature, now) for signature, now, _ in waiting])
        except Exception as exc:
            for *_, seen in waiting:
                if not seen.done():
                    seen.set_exception(exc)
            return
        for (*_, seen), first in zip(waiting, fresh, strict=True):
            if not seen.done():
                seen.set_result(first)


# The Bolt context key the route sets on a request the guard passed, and its value: an object
# no payload can carry (Bolt fills the rest of the context from the body, with strings).
PASSED_KEY = "fota_guard_passed"
_PASSED = object()


def passed_context() -> dict[str, Any]:
    """The context properties the route hands Bolt with a request the guard passed."""
    return {PASSED_KEY: _PASSED}


class GuardedRequestVerification(AsyncRequestVerification):
    """Bolt's signature check, skipped only for a request SlackRequestGuard has verified already
    (the same bytes, the same verifier, a stricter timestamp rule): one HMAC per request, not two."""

    async def async_process(
        self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse:
        if req.context.get(PASSED_KEY) is _PASSED:
            return await next()
        return await super().async_process(req=req, resp=resp, next=next)
