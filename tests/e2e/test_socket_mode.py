"""Slack over Socket Mode (`serve` uses it when SLACK_APP_TOKEN is set), end to end.

The bot connects the way `fota-bot serve` does (`bot.cli.connect_socket_mode`: Bolt's
AsyncSocketModeHandler, aiohttp) to the Slack stand-in, which plays Slack's Socket Mode server
over a real WebSocket on 127.0.0.1: ``apps.connections.open`` with the app-level token, hello,
envelopes pushed by the test, the app's acks back over the socket, disconnect and reconnect.
Nothing sleeps: every wait is on the stand-in's events, bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

from bot.app import Runtime, build_runtime
from bot.cli import SocketModeError, connect_socket_mode
from bot.settings import load
from bot.standins.slack import SlackStandIn, create_slack_standin_app, socket_envelope
from bot.standins.thingspace import Sandbox, SandboxClock
from commands import blocks
from storage.states import CampaignState
from tests.bot.test_serve import free_port
from tests.conftest import ManualClock
from tests.e2e.test_flow import IMEIS, SCHEDULE
from tests.support.servers import serve_app
from tests.support.slack import block_action_payload, slash_command_payload
from tests.support.stack import ANN, BOT_TOKEN, CHANNEL, REQUESTER, SECRET, START

APP_TOKEN = "xapp-1-test"
CONNECT_WITHIN = 5.0


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # slack_sdk's Socket Mode client sends its WebSocket through HTTP(S)_PROXY, ignoring NO_PROXY.
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@contextlib.asynccontextmanager
async def socket_mode_bot(tmp_path: Path) -> AsyncIterator[tuple[SlackStandIn, Runtime, AsyncSocketModeHandler]]:
    """The stand-in (Web API and Socket Mode) on a real port, the bot connected to it."""
    standin = SlackStandIn(bot_token=BOT_TOKEN, app_token=APP_TOKEN)
    async with serve_app(create_slack_standin_app(standin), websockets=True) as base:
        standin.public_url = base
        settings = load(
            {
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_APP_TOKEN": APP_TOKEN,
                "SLACK_API_URL": f"{base}/api/",
                "FOTA_APPROVAL_CHANNEL": CHANNEL,
                "FOTA_APPROVERS": ANN,
                "FOTA_DB": str(tmp_path / "fota.db"),
            }
        )
        assert settings.socket_mode and settings.slack_app_token is not None
        runtime = build_runtime(
            settings, clock=ManualClock(START), sandbox=Sandbox(clock=SandboxClock.manual_at(START))
        )
        await runtime.start(workers=False)
        try:
            async with asyncio.timeout(CONNECT_WITHIN):
                handler = await connect_socket_mode(runtime, settings.slack_app_token.reveal())
            try:
                yield standin, runtime, handler
            finally:
                await handler.close_async()
        finally:
            await runtime.stop()


async def push(standin: SlackStandIn, kind: str, payload: dict[str, Any]) -> Any:
    """Send one envelope to the bot and return its ack."""
    envelope = socket_envelope(kind, payload)
    await standin.socket_send(envelope)
    return await standin.wait_for_socket_ack(envelope["envelope_id"])


async def test_a_whole_request_over_socket_mode_help_schedule_approve(tmp_path: Path) -> None:
    async with socket_mode_bot(tmp_path) as (standin, runtime, _):
        [opened] = standin.calls_to("apps.connections.open")
        assert opened.ok and opened.response["url"].startswith("ws://127.0.0.1:")
        connection = await standin.wait_for_socket(1)
        hello = connection.sent[0]
        assert hello["type"] == "hello" and hello["num_connections"] == 1
        assert hello["connection_info"] == {"app_id": standin.workspace.app_id}

        # /fota help: the answer is the ack's payload, over the socket.
        ack = await push(standin, "slash_commands", slash_command_payload("help", user_id=REQUESTER))
        assert "/fota schedule" in ack.text
        assert ack.connection_id == connection.id

        # /fota schedule …: acked at once, then the approval card in the approval channel.
        response_url = standin.new_response_url(user_id=REQUESTER)
        ack = await push(
            standin,
            "slash_commands",
            slash_command_payload(SCHEDULE, user_id=REQUESTER, response_url=response_url),
        )
        assert "Checking your request for 3 devices" in ack.text
        await runtime.settle()
        campaign = runtime.store.find_campaign("FB-1")
        assert campaign.state is CampaignState.PENDING_APPROVAL
        assert campaign.device_count == len(IMEIS)
        [card] = [m for m in standin.messages(CHANNEL) if not m.is_reply]
        assert "Ref FB-1" in json.dumps(card.blocks)
        confirmation = [r.body for r in standin.responses if response_url.endswith(r.response_id)]
        assert confirmation and "FB-1" in json.dumps(confirmation[-1])
        assert runtime.sandbox is not None and runtime.sandbox.schedule_requests == []

        # An approver clicks Approve on the card: an empty ack, then the campaign is submitted.
        click = block_action_payload(
            blocks.ACTION_APPROVE,
            user_id=ANN,
            channel_id=CHANNEL,
            message=card.to_slack(),
            response_url=standin.new_response_url(user_id=ANN),
        )
        ack = await push(standin, "interactive", click)
        assert ack.payload is None
        await runtime.settle()
        campaign = runtime.store.find_campaign("FB-1")
        assert campaign.state is CampaignState.SUBMITTED and campaign.thingspace_id
        [scheduled] = runtime.sandbox.schedule_requests
        assert scheduled.status_code == 200 and scheduled.campaign_id == campaign.thingspace_id
        assert isinstance(scheduled.body, dict) and scheduled.body["deviceList"] == IMEIS
        assert f"<@{ANN}>" in json.dumps(standin.message(CHANNEL, card.ts).blocks)

        # Every envelope was acked exactly once (the bot's HTTP app is not even served here).
        assert len(standin.socket_acks) == 3
        assert len({a.envelope_id for a in standin.socket_acks}) == 3


async def test_the_bot_moves_to_a_new_connection_when_slack_asks(tmp_path: Path) -> None:
    async with socket_mode_bot(tmp_path) as (standin, _, _):
        first = await standin.wait_for_socket(1)
        await standin.socket_disconnect("refresh_requested")
        second = await standin.wait_for_socket(2)
        await standin.wait_for(lambda: first.closed, what="the old connection to close")
        assert len(standin.calls_to("apps.connections.open")) == 2
        assert second.sent[0]["type"] == "hello"
        ack = await push(standin, "slash_commands", slash_command_payload("help", user_id=REQUESTER))
        assert ack.connection_id == second.id and "/fota schedule" in ack.text


async def test_a_refused_app_token_is_a_plain_error_not_an_endless_retry(tmp_path: Path) -> None:
    standin = SlackStandIn(bot_token=BOT_TOKEN, app_token=APP_TOKEN)
    async with serve_app(create_slack_standin_app(standin), websockets=True) as base:
        settings = load(
            {
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SECRET,
                "SLACK_API_URL": f"{base}/api/",
                "FOTA_APPROVAL_CHANNEL": CHANNEL,
                "FOTA_DB": str(tmp_path / "fota.db"),
            }
        )
        runtime = build_runtime(settings, clock=ManualClock(START))
        try:
            async with asyncio.timeout(CONNECT_WITHIN):
                with pytest.raises(SocketModeError, match="Slack refused SLACK_APP_TOKEN: invalid_auth"):
                    await connect_socket_mode(runtime, "xapp-1-wrong")
                # A bot token cannot open a connection.
                with pytest.raises(SocketModeError, match="not_allowed_token_type"):
                    await connect_socket_mode(runtime, BOT_TOKEN)
        finally:
            await runtime.stop()
        assert standin.socket_connections == []


async def test_the_standin_socket_url_is_good_for_one_connection_and_needs_the_app_token() -> None:
    standin = SlackStandIn(bot_token=BOT_TOKEN, app_token=APP_TOKEN)
    async with (
        serve_app(create_slack_standin_app(standin), websockets=True) as base,
        aiohttp.ClientSession() as http,
    ):
        async def call(method: str, token: str) -> dict[str, Any]:
            async with http.post(f"{base}/api/{method}", headers={"Authorization": f"Bearer {token}"}) as r:
                answer: dict[str, Any] = await r.json()
                return answer

        assert await call("apps.connections.open", BOT_TOKEN) == {"ok": False, "error": "not_allowed_token_type"}
        assert (await call("chat.postMessage", APP_TOKEN))["error"] == "not_allowed_token_type"
        opened = await call("apps.connections.open", APP_TOKEN)
        assert opened["ok"] is True
        async with asyncio.timeout(CONNECT_WITHIN):
            async with http.ws_connect(opened["url"]) as ws:
                hello = await ws.receive_json()
                assert hello["type"] == "hello"
                envelope_id = await standin.socket_send(socket_envelope("events_api", {"type": "event_callback"}))
                envelope = await ws.receive_json()
                assert envelope["envelope_id"] == envelope_id and envelope["retry_attempt"] == 0
                assert envelope["accepts_response_payload"] is False
                await ws.send_json({"envelope_id": envelope_id})
                ack = await standin.wait_for_socket_ack(envelope_id)
                assert ack.payload is None
            # Used once: the same URL is refused at the handshake, as is a made-up one.
            for url in (opened["url"], opened["url"].rsplit("/", 1)[0] + "/L99999999"):
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(url)
                assert refused.value.status == 403


async def test_serve_with_an_app_token_answers_over_socket_mode_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`fota-bot serve` itself, as a process: Socket Mode on, HTTP app up, SIGTERM ends both."""
    standin = SlackStandIn(bot_token=BOT_TOKEN, app_token=APP_TOKEN)
    async with serve_app(create_slack_standin_app(standin), websockets=True) as base:
        standin.public_url = base
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FOTA_", "THINGSPACE_"))}
        env.update(
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SECRET,
            SLACK_APP_TOKEN=APP_TOKEN,
            SLACK_API_URL=f"{base}/api/",
            FOTA_APPROVAL_CHANNEL=CHANNEL,
            FOTA_DB=str(tmp_path / "fota.db"),
            FOTA_HOST="127.0.0.1",
            FOTA_PORT=str(free_port()),
        )
        for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
            env.pop(name, None)
        log_path = tmp_path / "serve.log"
        with log_path.open("w") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "serve", env=env, cwd=tmp_path, stderr=log
            )
        try:
            # A loaded CI machine may take a while to import everything; the wait is bounded,
            # and ends at once should the process exit instead.
            connected = asyncio.ensure_future(standin.wait_for_socket(1, within=60))
            exited = asyncio.ensure_future(process.wait())
            done, _ = await asyncio.wait({connected, exited}, return_when=asyncio.FIRST_COMPLETED)
            exited.cancel()
            if connected not in done:
                connected.cancel()
                pytest.fail(f"fota-bot serve exited before connecting:\n{log_path.read_text()}")
            await connected
            ack = await push(standin, "slash_commands", slash_command_payload("help", user_id=REQUESTER))
            assert "/fota schedule" in ack.text
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                assert await process.wait() == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        await standin.wait_for(lambda: standin.socket_connections[0].closed, what="the bot to close its socket")
    text = log_path.read_text()
    assert "Slack over Socket Mode" in text and "fota-bot stopped" in text
    assert "Traceback" not in text
    for secret in (BOT_TOKEN, SECRET, APP_TOKEN):
        assert secret not in text
