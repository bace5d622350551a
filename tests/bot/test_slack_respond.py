"""Answers on a response_url share one HTTP connection: counted at a real server, not timed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from slack_bolt.context.respond.async_respond import AsyncRespond

from bot.slack_respond import ResponseUrls


@dataclass
class Hooks:
    """A response_url endpoint on 127.0.0.1 that notes each connection an answer came over."""

    url: str
    peers: list[tuple[str, int]] = field(default_factory=list)
    bodies: list[dict[str, object]] = field(default_factory=list)

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
