"""The process dying at each step of a submission, then starting again.

A submission survives a crash: a request approved but not yet answered by ThingSpace is
resumed at start-up, and a campaign is never created twice.

In-process tests kill the bot deterministically: `asyncio.CancelledError` raised at the chosen
point unwinds the submission with nothing more committed (no `except` of ours catches it; an
open transaction rolls back, as SQLite's does when a process dies), exactly as if the process
had died there; `stack.restart()` then starts a new runtime on the same database, the same
sandbox and the same Slack. `Submitter.resume_all` runs at start-up.

The last test is a real SIGKILL of `python -m bot serve`. The bot runs in live mode against the
sandbox served from this test process on a real port, so ThingSpace (the sandbox) outlives the
bot and "exactly one campaign" is checked where it matters: at ThingSpace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.standins.slack import SlackStandIn, create_slack_standin_app
from bot.standins.thingspace import Sandbox, SandboxClock, create_sandbox_app
from commands import blocks
from storage.states import CampaignState
from tests.support.servers import serve_app
from tests.support.slack import block_action_body, sign, slash_command_body
from tests.support.stack import (
    ANN,
    BOT_TOKEN,
    CHANNEL,
    FIRMWARE,
    REQUESTER,
    SECRET,
    Stack,
    running_stack,
)

IMEIS = ["354658090353977", "490154203237518"]
SCHEDULE = (
    f"schedule firmware={FIRMWARE} from=SR1.2.0.0-10512 to=SR1.2.0.0-10657 "
    f'start=today end=+3d devices={",".join(IMEIS)} name="Crash test"'
)
SCHEDULE_PATH = "/api/fota/v3/campaigns/firmware/"
REPO = Path(__file__).resolve().parents[2]


class KillOnSchedule(httpx.AsyncBaseTransport):
    """Wraps the ThingSpace transport; the first schedule POST kills the process.

    `before`: the process dies with the request built but not sent (ThingSpace saw nothing).
    `after`: ThingSpace processed the request and answered, and the process died before the
    answer was read, let alone stored.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, when: str):
        assert when in ("before", "after")
        self.inner = inner
        self.when = when
        self.fired = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        is_schedule = request.method == "POST" and request.url.path.startswith(SCHEDULE_PATH)
        if not is_schedule or self.fired:
            return await self.inner.handle_async_request(request)
        self.fired = True
        if self.when == "before":
            raise asyncio.CancelledError("process killed before the schedule POST left")
        response = await self.inner.handle_async_request(request)
        await response.aread()
        raise asyncio.CancelledError("process killed before the schedule answer was stored")


def died() -> Callable[..., Any]:
    def die(*args: Any, **kwargs: Any) -> Any:
        raise asyncio.CancelledError("process killed here")

    return die


async def request_and_approve(stack: Stack) -> None:
    response, _ = await stack.slash(SCHEDULE)
    assert response.status_code == 200
    await stack.settle()
    response, _ = await stack.click(blocks.ACTION_APPROVE, user=ANN)
    assert response.status_code == 200
    await stack.settle()


def attempts(stack: Stack) -> int:
    return stack.rt.store.submission_facts(1).posts


def assert_submitted_exactly_once(stack: Stack) -> None:
    """One campaign at ThingSpace, the bot's row names it, the audit has one of each step."""
    assert len(stack.sandbox.campaigns) == 1, [c.name for c in stack.sandbox.campaigns]
    [at_thingspace] = stack.sandbox.campaigns
    assert at_thingspace.name == f"Crash test [FB-1·{stack.rt.store.installation_id()}]"
    campaign = stack.rt.store.campaign(1)
    assert campaign.state is CampaignState.SUBMITTED
    assert campaign.thingspace_id == at_thingspace.id
    steps = [row["to_state"] for row in stack.rt.store.audit(1)]
    assert steps.count("approved") == 1
    assert steps.count("submitting") == 1
    assert steps.count("submitted") == 1


def assert_thread_told_once(stack: Stack) -> None:
    campaign = stack.rt.store.campaign(1)
    replies = stack.thread_texts()[1:]  # [0] is the card itself
    accepted = [t for t in replies if "accepted Ref FB-1" in t]
    assert len(accepted) == 1, replies
    assert campaign.thingspace_id and campaign.thingspace_id in accepted[0]
    # The card itself moved on from "approved" to the campaign card with ThingSpace's id.
    assert campaign.thingspace_id in json.dumps(stack.root().blocks)
    dms = [m.text for m in stack.standin.messages(stack.standin.dm_channel(REQUESTER))]
    submitted = [t for t in dms if "Ref FB-1 was submitted" in t]
    assert len(submitted) == 1 and campaign.thingspace_id in submitted[0], dms


async def test_killed_after_the_approval_before_the_submission_started(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        stack.rt.submitter.submit = died()  # type: ignore[method-assign]
        await request_and_approve(stack)
        assert stack.rt.store.campaign(1).state is CampaignState.APPROVED
        assert stack.sandbox.schedule_requests == []

        await stack.restart()
        await stack.settle()

        assert len(stack.sandbox.schedule_requests) == 1
        assert_submitted_exactly_once(stack)
        assert_thread_told_once(stack)


async def test_killed_with_the_schedule_post_not_sent(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        killer = KillOnSchedule(stack.thingspace.inner, "before")
        stack.thingspace.inner = killer
        await request_and_approve(stack)
        assert killer.fired
        # The attempt is counted before the POST leaves, so the next process knows to look.
        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTING
        assert attempts(stack) == 1
        assert stack.sandbox.schedule_requests == []

        await stack.restart()
        await stack.settle()
        # It looked ThingSpace up by name: nothing yet, but a report can lag behind a new
        # campaign, so it waits before sending again.
        assert any(path.endswith("/firmware/campaigns") for _, path in stack.sandbox.request_log)
        assert stack.sandbox.schedule_requests == []
        stack.clock.advance(minutes=10)
        await stack.settle()

        # Still nothing by that name after the grace: sent, once.
        assert len(stack.sandbox.schedule_requests) == 1
        assert any(path.endswith("/firmware/campaigns") for _, path in stack.sandbox.request_log)
        assert_submitted_exactly_once(stack)
        assert_thread_told_once(stack)


async def test_killed_after_thingspace_answered_before_the_answer_was_stored(
    tmp_path: Path,
) -> None:
    async with running_stack(tmp_path) as stack:
        killer = KillOnSchedule(stack.thingspace.inner, "after")
        stack.thingspace.inner = killer
        await request_and_approve(stack)
        assert killer.fired
        assert len(stack.sandbox.campaigns) == 1  # ThingSpace created it ...
        campaign = stack.rt.store.campaign(1)
        assert campaign.state is CampaignState.SUBMITTING  # ... and the bot never heard
        assert campaign.thingspace_id is None

        await stack.restart()
        await stack.settle()

        # Found by name: no second POST, the first campaign adopted.
        assert len(stack.sandbox.schedule_requests) == 1
        assert_submitted_exactly_once(stack)
        assert_thread_told_once(stack)
        reasons = [
            row["reason"] for row in stack.rt.store.audit(1) if row["to_state"] == "submitted"
        ]
        assert reasons == ["found by name after an unanswered request"]


async def test_killed_after_the_answer_was_stored_before_the_thread_was_told(
    tmp_path: Path,
) -> None:
    # This found a bug: the `submitted` transition was committed on its own, then the thread's
    # outbox rows; a death in between left a submitted campaign nobody was ever told about (a
    # submitted campaign is not resumed). Now both are one transaction, so the death rolls the
    # transition back and the restart finds the campaign by name and tells the thread.
    async with running_stack(tmp_path) as stack:
        stack.rt.notifier.submitted = died()  # type: ignore[method-assign]
        await request_and_approve(stack)
        assert len(stack.sandbox.campaigns) == 1

        await stack.restart()
        await stack.settle()

        # Whatever the split, after the restart ThingSpace has one campaign, the bot knows it,
        # and the thread and the requester were told (once).
        assert len(stack.sandbox.schedule_requests) == 1
        assert_submitted_exactly_once(stack)
        assert_thread_told_once(stack)


async def test_killed_twice_in_a_row_still_one_campaign(tmp_path: Path) -> None:
    """A crash loop: killed after ThingSpace answered, then again before the next POST left."""
    async with running_stack(tmp_path) as stack:
        stack.thingspace.inner = KillOnSchedule(stack.thingspace.inner, "after")
        await request_and_approve(stack)
        # The next process dies while looking ThingSpace up (before it could adopt the campaign).
        lookups = 0
        inner = stack.thingspace.inner

        class DieOnLookup(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                nonlocal lookups
                if request.url.path.endswith("/firmware/campaigns"):
                    lookups += 1
                    if lookups == 1:
                        raise asyncio.CancelledError("killed during the look-up")
                return await inner.handle_async_request(request)

        stack.thingspace.inner = DieOnLookup()
        await stack.restart()
        await stack.settle()
        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTING

        await stack.restart()
        await stack.settle()
        assert len(stack.sandbox.schedule_requests) == 1
        assert_submitted_exactly_once(stack)
        assert_thread_told_once(stack)


# ---------------------------------------------------------------------------------------------
# A real SIGKILL of `python -m bot serve`
# ---------------------------------------------------------------------------------------------


class HoldScheduleAnswer:
    """ASGI wrapper around the sandbox: the first schedule POST is processed, then its answer is
    held until `release` is set. `processed` is set the moment ThingSpace has the campaign."""

    def __init__(self, app: ASGIApp):
        self.app = app
        self.processed = asyncio.Event()
        self.release = asyncio.Event()
        self.held = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hold = (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].startswith(SCHEDULE_PATH)
            and not self.held
        )
        if not hold:
            await self.app(scope, receive, send)
            return
        self.held = True

        async def held_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.processed.set()
                await self.release.wait()
            with contextlib.suppress(OSError):
                await send(message)

        await self.app(scope, receive, held_send)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


@contextlib.asynccontextmanager
async def bot_process(
    env: dict[str, str], port: int, log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m bot serve`, up (its /healthz answered 200) within 20 s, killed on exit.
    Its log goes to `log`, shown when something goes wrong."""
    with open(log, "ab") as sink:  # noqa: ASYNC230 - opening a local file for the child
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "serve",
            # Not the checkout: `serve` reads a .env from its working directory.
            cwd=log.parent,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            for _ in range(400):  # bounded: 400 x 50 ms
                if process.returncode is not None:
                    raise AssertionError(f"the bot exited:\n{tail(log)}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"the bot did not answer /healthz within 20 s:\n{tail(log)}")
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), 10)


async def post_signed(port: int, body: bytes) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5.0) as client:
        return await client.post(
            f"http://127.0.0.1:{port}/slack/events", content=body, headers=sign(body, SECRET)
        )


async def wait_until(
    predicate: Callable[[], bool], what: str, *, log: Path, within: float = 15.0
) -> None:
    """Poll a condition the test cannot be woken by (another process's work), bounded."""
    for _ in range(int(within / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still waiting for {what} after {within} s; the bot's log:\n{tail(log)}")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
async def test_sigkill_between_the_schedule_post_and_its_answer(tmp_path: Path) -> None:
    standin = SlackStandIn(bot_token=BOT_TOKEN)
    sandbox = Sandbox(clock=SandboxClock.manual_at(None))
    hold = HoldScheduleAnswer(create_sandbox_app(sandbox))
    async with serve_app(create_slack_standin_app(standin)) as slack_url, serve_app(hold) as ts_url:
        standin.public_url = slack_url
        db = tmp_path / "fota.db"
        bot_log = tmp_path / "bot.log"
        port = free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(REPO),
            "HOME": str(tmp_path),
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "FOTA_APPROVAL_CHANNEL": CHANNEL,
            "SLACK_API_URL": f"{slack_url}/api/",
            "FOTA_DB": str(db),
            "FOTA_HOST": "127.0.0.1",
            "FOTA_PORT": str(port),
            "FOTA_LOG_LEVEL": "INFO",
            # Live mode against the sandbox on its own port: it survives the bot's death.
            "THINGSPACE_URL": ts_url,
            "THINGSPACE_CLIENT_ID": "crash-test-key",
            "THINGSPACE_CLIENT_SECRET": "crash-test-secret",
            "THINGSPACE_USERNAME": "crash-test-user",
            "THINGSPACE_PASSWORD": "crash-test-password",
            "THINGSPACE_ACCOUNT": "0000000000-00001",
        }

        async with bot_process(env, port, bot_log) as first:
            command = slash_command_body(
                SCHEDULE,
                user_id=REQUESTER,
                response_url=standin.new_response_url(user_id=REQUESTER),
            )
            response = await post_signed(port, command)
            assert response.status_code == 200

            def approvable() -> bool:
                # The card gets its buttons once the pre-flight checks are done.
                cards = standin.messages(CHANNEL)
                return bool(cards) and blocks.ACTION_APPROVE in json.dumps(cards[0].blocks)

            await standin.wait_for(approvable, within=15, what="the card with its Approve button")
            card = standin.messages(CHANNEL)[0].to_slack()
            click = block_action_body(
                blocks.ACTION_APPROVE, user_id=ANN, channel_id=CHANNEL, message=card
            )
            assert (await post_signed(port, click)).status_code == 200
            async with asyncio.timeout(15):
                await hold.processed.wait()
            # ThingSpace has the campaign; the bot is waiting for the answer. Kill it now.
            first.send_signal(signal.SIGKILL)
            assert await asyncio.wait_for(first.wait(), 10) == -signal.SIGKILL
        hold.release.set()  # the held answer goes to a dead socket

        with sqlite3.connect(db) as conn:
            state = conn.execute(
                "SELECT state, thingspace_id FROM campaigns WHERE id = 1"
            ).fetchone()
            tries = conn.execute("SELECT posts FROM submission_facts WHERE campaign_id = 1").fetchone()
        assert state == ("submitting", None)
        assert tries == (1,)
        assert len(sandbox.campaigns) == 1

        async with bot_process(env, port, bot_log):

            def told() -> bool:
                return any("accepted Ref FB-1" in m.text for m in standin.messages(CHANNEL))

            await wait_until(told, "the thread to be told", log=bot_log)

        [campaign] = sandbox.campaigns
        assert len(sandbox.schedule_requests) == 1  # the restarted bot looked, and did not post
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT state, thingspace_id FROM campaigns WHERE id = 1").fetchone()
            steps = [r[0] for r in conn.execute("SELECT to_state FROM audit WHERE campaign_id = 1")]
        assert row == ("submitted", campaign.id)
        assert steps.count("submitting") == 1 and steps.count("submitted") == 1
        replies = [m.text for m in standin.messages(CHANNEL) if "accepted Ref FB-1" in m.text]
        assert len(replies) == 1 and campaign.id in replies[0]
