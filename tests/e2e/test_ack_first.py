"""Slack is answered when a listener returns (Bolt's process_before_response): so no listener
may wait for Slack's Web API, a response_url or ThingSpace before it returns. Here both are
held (every request to them waits until the test lets it through): each command, button,
form and event must still be answered, and the work it handed on then finishes once they
answer again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.standins.slack import create_slack_standin_app
from commands import blocks
from commands.blocks.history import history_value
from commands.blocks.operations import cancel_value, firmware_value, list_page_value
from commands.blocks.retry import retry_value
from commands.blocks.wave_decisions import decision_value
from commands.modal import SCHEDULE_CALLBACK_ID
from tests.e2e.test_flow import SCHEDULE, request_campaign
from tests.support.servers import serve_app
from tests.support.slack import app_home_opened_body, block_action_body, slash_command_body
from tests.support.stack import ANN, CHANNEL, FIRMWARE, REQUESTER, Stack, running_stack

# A listener waiting on a held call is never answered, so the test needs a bound; one that
# hands its work on is answered within a few turns of the loop (or a short hop to a thread):
# milliseconds. Only a failure waits this long.
ANSWER_WITHIN = 10.0


class Gate:
    """An ASGI app in front of another that holds every request while closed."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None
        self.open = asyncio.Event()
        self.open.set()
        self.held = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.open.is_set():
            self.held += 1
            await self.open.wait()
        assert self.app is not None
        await self.app(scope, receive, send)


class GatedTransport(httpx.AsyncBaseTransport):
    """ThingSpace, held the same way."""

    def __init__(self, inner: httpx.AsyncBaseTransport, gate: Gate) -> None:
        self.inner = inner
        self.gate = gate

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self.gate.open.is_set():
            self.gate.held += 1
            await self.gate.open.wait()
        return await self.inner.handle_async_request(request)


@contextlib.asynccontextmanager
async def held_stack(tmp_path: Path) -> AsyncIterator[tuple[Stack, Gate]]:
    gate = Gate()
    async with serve_app(gate) as gated:
        # The bot's Slack (Web API, response URLs, files) is the stand-in behind the gate.
        async with running_stack(tmp_path, SLACK_API_URL=f"{gated}/api/") as stack:
            gate.app = create_slack_standin_app(stack.standin)
            stack.standin.public_url = gated
            stack.thingspace.inner = GatedTransport(stack.thingspace.inner, gate)
            try:
                yield stack, gate
            finally:
                gate.open.set()  # nothing is left waiting at shutdown, even after a failure


async def answered(request: Awaitable[httpx.Response], what: str) -> httpx.Response:
    try:
        async with asyncio.timeout(ANSWER_WITHIN):
            return await request
    except TimeoutError:
        raise AssertionError(f"{what}: not answered while Slack and ThingSpace were held") from None


async def test_every_listener_answers_slack_without_waiting_for_slack_or_thingspace(tmp_path: Path) -> None:
    async with held_stack(tmp_path) as (stack, gate):
        await request_campaign(stack)  # Bolt's first request also asks Slack who the bot is
        card = stack.root().to_slack()
        campaign = stack.rt.store.campaign(1)
        standin = stack.standin

        def click(action_id: str, value: str | None = None, *, user: str = ANN) -> Callable[[], Awaitable[Any]]:
            def post() -> Awaitable[httpx.Response]:
                on_card = value is None
                body = block_action_body(
                    action_id,
                    value,
                    user_id=user,
                    channel_id=CHANNEL,
                    message_ts=card["ts"],
                    message=card if on_card else None,
                    response_url=standin.new_response_url(user_id=user),
                )
                return stack.post_slack(body)

            return post

        def slash(text: str, *, user: str = REQUESTER) -> Callable[[], Awaitable[httpx.Response]]:
            def post() -> Awaitable[httpx.Response]:
                body = slash_command_body(text, user_id=user, response_url=standin.new_response_url(user_id=user))
                return stack.post_slack(body)

            return post

        firmware = firmware_value(
            {"firmwareName": FIRMWARE, "firmwareFrom": "SR1.2.0.0-10512", "firmwareTo": "SR1.2.0.0-10657",
             "protocol": "LWM2M"},
            stack.rt.settings.thingspace_account,
        )
        schedule_form = {
            "firmware": {"firmware": {"type": "static_select", "selected_option": None}},
        }
        requests: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
            "/fota help": slash("help"),
            "/fota schedule …": slash(SCHEDULE),
            "/fota schedule (the form)": slash("schedule"),
            "/fota status": slash("status FB-1"),
            "/fota history": slash("history FB-1"),
            "/fota list": slash("list"),
            "/fota cancel": slash("cancel FB-1"),
            "/fota firmware": slash("firmware"),
            "/fota devices": slash("devices FB-1"),
            "/fota retry": slash("retry FB-1"),
            # The forms first, while the request still waits for approval.
            "Reject (its form)": click(blocks.ACTION_REJECT),
            "Include excluded (its form)": click(blocks.ACTION_INCLUDE_EXCLUDED, blocks.action_value(1, campaign.content_hash)),
            "Approve": click(blocks.ACTION_APPROVE),
            "Approve eligible only": click(blocks.ACTION_APPROVE_ELIGIBLE, blocks.action_value(1, campaign.content_hash)),
            "Excluded devices CSV": click(blocks.ACTION_EXCLUDED_CSV, blocks.action_value(1, campaign.content_hash)),
            "Run checks again": click(blocks.ACTION_PREFLIGHT_RETRY, blocks.action_value(1, campaign.content_hash)),
            "Withdraw": click(blocks.ACTION_WITHDRAW, user=REQUESTER),
            "Next page": click(blocks.ACTION_LIST_PAGE, list_page_value("all", 2)),
            "Cancel (confirmed)": click(blocks.ACTION_CANCEL_CONFIRM, cancel_value(1, "withdraw"), user=REQUESTER),
            "Cancel (kept)": click(blocks.ACTION_CANCEL_KEEP, "keep", user=REQUESTER),
            "History": click(blocks.ACTION_HISTORY, history_value(1)),
            "Schedule this firmware (its form)": click(blocks.ACTION_FIRMWARE_SCHEDULE, firmware),
            "Retry failed (its form)": click(blocks.ACTION_RETRY_FAILED, retry_value(1)),
            "Promote": click(blocks.ACTION_PROMOTE, blocks.promote_value(1, 2)),
            "Halt (its form)": click(blocks.ACTION_HALT, decision_value(1, 1)),
            "an old card's button": click("fota_gone_since", "1"),
            "the schedule form, sent": lambda: stack.submit_view(SCHEDULE_CALLBACK_ID, schedule_form, user=REQUESTER),
            "App Home opened": lambda: stack.post_slack(app_home_opened_body(ANN)),
        }
        gate.open.clear()
        for what, post in requests.items():
            response = await answered(post(), what)
            assert response.status_code == 200, (what, response.status_code, response.text)
        # The answers waited for Slack and ThingSpace, not the other way round.
        assert gate.held > 0
        gate.open.set()
        await stack.settle()
        assert [c for c in standin.calls_to("views.open") if c.ok], "no form opened once Slack answered"
        assert standin.calls_to("views.publish"), "the Home tab was never drawn"


async def test_an_error_after_the_ack_leaves_the_ack_as_slacks_answer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Bolt answers Slack when the listener returns; on an error it answers 500 even after the
    # ack. Slack must get what the ack said (the user was told the request was taken), and the
    # error goes to the log, as when Bolt answered at the ack.
    async with running_stack(tmp_path) as stack:

        async def acks_then_fails(ack: Callable[..., Awaitable[None]]) -> None:
            await ack(text="Checking your request…")
            raise RuntimeError("a fault after the ack")

        stack.rt.bolt.command("/fota-after-ack")(acks_then_fails)
        body = slash_command_body("x", user_id=REQUESTER, command="/fota-after-ack")
        response = await stack.post_slack(body)
        assert response.status_code == 200
        assert response.text == "Checking your request…"
        assert "unhandled error in a Slack listener: RuntimeError" in caplog.text
