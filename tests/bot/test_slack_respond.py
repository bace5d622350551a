"""Answers on a response_url share one HTTP connection: counted at a real server, not timed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    async_default_handlers,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.webhook.async_client import AsyncWebhookClient, WebhookResponse

from bot.slack_respond import ResponseUrls


@dataclass
class Hooks:
    """A response_url endpoint on 127.0.0.1 that notes each connection an answer came over."""

    url: str
    peers: list[tuple[str, int]] = field(default_factory=list)
    bodies: list[dict[str, object]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    @property
    def connections(self) -> int:
        return len(set(self.peers))


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    found: list[Hooks] = []

    async def hook(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        found[0].peers.append(tuple(peer[:2]))
        found[0].bodies.append(await request.json())
        found[0].headers.append(dict(request.headers))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/commands/T1/1/abc", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.append(Hooks(url=f"http://127.0.0.1:{port}/commands/T1/1/abc"))
    try:
        yield found[0]
    finally:
        await runner.cleanup()


async def test_bolt_s_own_respond_opens_a_connection_per_answer(hooks: Hooks) -> None:
    # The baseline this module exists for: three answers, three connections.
    for n in range(3):
        await AsyncRespond(response_url=hooks.url)(text=f"answer {n}")
    assert hooks.connections == 3


async def test_answers_through_the_shared_session_reuse_one_connection(hooks: Hooks) -> None:
    urls = ResponseUrls()
    try:
        for n in range(3):
            response = await urls.respond(hooks.url)(text=f"answer {n}", response_type="ephemeral")
            assert response.status_code == 200
        assert hooks.connections == 1 and len(hooks.peers) == 3
        assert urls.sessions_made == 1
    finally:
        await urls.aclose()


async def test_the_message_is_the_one_bolt_would_send(hooks: Hooks) -> None:
    urls = ResponseUrls()
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    try:
        await urls.respond(hooks.url)(text="plain", blocks=blocks, replace_original=True)
        await urls.respond(hooks.url)({"text": "whole", "delete_original": True})
    finally:
        await urls.aclose()
    await AsyncRespond(response_url=hooks.url)(text="plain", blocks=blocks, replace_original=True)
    await AsyncRespond(response_url=hooks.url)({"text": "whole", "delete_original": True})
    assert hooks.bodies[:2] == hooks.bodies[2:]
    assert hooks.bodies[0]["blocks"] == blocks and hooks.bodies[1]["delete_original"] is True


async def test_closed_at_shutdown_and_made_again_if_used_after(hooks: Hooks) -> None:
    urls = ResponseUrls()
    await urls.respond(hooks.url)(text="one")
    session = urls.session()
    await urls.aclose()
    assert session.closed
    await urls.aclose()  # twice is harmless
    await urls.respond(hooks.url)(text="two")
    assert urls.sessions_made == 2
    await urls.aclose()


def test_a_respond_is_bolt_s_respond() -> None:
    # Listeners and Bolt's argument injection see the same type either way.
    assert isinstance(ResponseUrls().respond("https://hooks.slack.com/x"), AsyncRespond)


async def test_the_request_is_the_one_bolt_would_send(hooks: Hooks) -> None:
    # Posted without slack_sdk's webhook client, but byte for byte its request: body and headers.
    urls = ResponseUrls()
    try:
        await urls.respond(hooks.url)(text="plain", response_type="ephemeral", replace_original=False)
    finally:
        await urls.aclose()
    await AsyncRespond(response_url=hooks.url)(text="plain", response_type="ephemeral", replace_original=False)
    ours, bolts = hooks.headers
    for name in ("Content-Type", "User-Agent", "Content-Length"):
        assert ours[name] == bolts[name], name
    assert hooks.bodies[0] == hooks.bodies[1]


@dataclass
class Flaky:
    """A response_url endpoint that drops the first `drops` requests' connections unanswered
    (as a keep-alive connection Slack closed while it sat in the pool), then answers 200."""

    url: str
    drops: int
    requests: int = 0


@pytest.fixture
async def flaky() -> AsyncIterator[Flaky]:
    holder: list[Flaky] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while head := await _request_head(reader):
            await reader.readexactly(int(head.split(b"content-length:")[1].split(b"\r\n")[0]))
            holder[0].requests += 1
            if holder[0].requests <= holder[0].drops:
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    holder.append(Flaky(url=f"http://127.0.0.1:{port}/commands/T1/1/abc", drops=0))
    try:
        yield holder[0]
    finally:
        server.close()


async def _request_head(reader: asyncio.StreamReader) -> bytes:
    """One request's head, lower-cased; b"" when the client closed the connection."""
    try:
        return (await reader.readuntil(b"\r\n\r\n")).lower()
    except asyncio.IncompleteReadError:
        return b""


def _no_wait() -> list[AsyncRetryHandler]:
    return [AsyncConnectionErrorRetryHandler(interval_calculator=FixedValueRetryIntervalCalculator(0))]


async def _webhook_client(url: str, handlers: list[AsyncRetryHandler]) -> WebhookResponse:
    async with aiohttp.ClientSession() as session:
        return await AsyncWebhookClient(url, session=session, retry_handlers=handlers).send_dict({"text": "x"})


async def _ours(url: str, handlers: list[AsyncRetryHandler]) -> WebhookResponse:
    urls = ResponseUrls(retry_handlers=handlers)
    try:
        return await urls.respond(url)(text="x")
    finally:
        await urls.aclose()


@pytest.mark.parametrize("send", [_webhook_client, _ours], ids=["slack_sdk's client", "the shared session"])
async def test_a_dropped_connection_is_tried_once_more_as_slack_sdk_does(flaky: Flaky, send: Any) -> None:
    flaky.drops = 1
    response = await send(flaky.url, _no_wait())
    assert response.status_code == 200 and response.body == "ok"
    assert flaky.requests == 2


@pytest.mark.parametrize("send", [_webhook_client, _ours], ids=["slack_sdk's client", "the shared session"])
async def test_a_second_drop_is_raised_as_slack_sdk_raises_it(flaky: Flaky, send: Any) -> None:
    flaky.drops = 2
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(flaky.url, _no_wait())
    assert flaky.requests == 2


def test_the_retries_are_slack_sdk_s_defaults() -> None:
    # Only the wait is shortened in the tests above; the handlers in use are the client's own.
    assert [type(h) for h in ResponseUrls().retry_handlers] == [type(h) for h in async_default_handlers()]
