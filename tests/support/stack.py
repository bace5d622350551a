"""The whole bot, for end-to-end tests: the real HTTP app, Slack-signed requests, a recording
stand-in for Slack's Web API on a real local port, and the sandbox behind a recording transport.

Nothing waits on real time: the bot's clock and the sandbox's clock are moved by hand, and
`settle()` runs every piece of pending work (background tasks, callbacks, the outbox) until
nothing moves.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bot.app import Runtime, build_runtime
from bot.settings import load
from bot.standins.slack import SlackStandIn, create_slack_standin_app
from bot.standins.thingspace import Sandbox, SandboxClock, create_sandbox_app
from tests.conftest import ManualClock
from tests.support.database import migrated_database
from tests.support.servers import serve_app
from tests.support.slack import block_action_body, sign, slash_command_body, view_submission_body
from tests.support.thingspace import RecordingTransport

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-17653672481-19874698323-pdFZKVeTuE8sk7oOcBrzbqgy"
CHANNEL = "C0APPROVALS"
REQUESTER = "U0REQ"
ANN = "U0ANN"
BOB = "U0BOB"
EVE = "U0EVE"  # not an approver
START = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)
FIRMWARE = "SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657"


@dataclass
class Stack:
    standin: SlackStandIn
    slack_url: str
    sandbox: Sandbox
    sandbox_clock: SandboxClock
    thingspace: RecordingTransport
    clock: ManualClock
    env: dict[str, str]
    post_spacing: float = 0.0
    rt: Runtime = field(init=False)
    http: httpx.AsyncClient = field(init=False)

    async def boot(self) -> None:
        # Slack's per-channel pace is kept on the bot's clock, which tests hold still; only
        # the test of that pacing turns it on.
        self.rt = build_runtime(
            load(self.env),
            clock=self.clock,
            thingspace_transport=self.thingspace,
            sandbox=self.sandbox,
            slack_post_spacing=self.post_spacing,
        )
        await self.rt.start(workers=False)
        self.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.rt.asgi), base_url="http://bot")

    async def shutdown(self) -> None:
        await self.http.aclose()
        await self.rt.stop()

    async def restart(self) -> None:
        """A new process on the same database, the same sandbox and the same Slack."""
        await self.shutdown()
        # The sandbox's callback client was bound to the old app.
        await self.sandbox.aclose()
        self.sandbox._callback_transport = None
        await self.boot()

    async def settle(self) -> None:
        await self.rt.settle()

    async def post_slack(self, body: bytes, **sign_args: Any) -> httpx.Response:
        return await self.http.post("/slack/events", content=body, headers=sign(body, SECRET, **sign_args))

    async def slash(self, text: str, *, user: str = REQUESTER) -> tuple[httpx.Response, str]:
        """Type `/fota text`; returns the ack and the response_url the bot may answer on."""
        response_url = self.standin.new_response_url(user_id=user)
        body = slash_command_body(text, user_id=user, response_url=response_url)
        return await self.post_slack(body), response_url

    def root(self, index: int = -1) -> Any:
        roots = [m for m in self.standin.messages(CHANNEL) if not m.thread_ts or m.thread_ts == m.ts]
        return roots[index]

    async def click(self, action_id: str, *, user: str, message: Any | None = None) -> tuple[httpx.Response, str]:
        # A dict is a snapshot (the card as one approver saw it); a Message is live.
        snapshot = message if isinstance(message, dict) else (message or self.root()).to_slack()
        response_url = self.standin.new_response_url(user_id=user)
        body = block_action_body(
            action_id,
            user_id=user,
            channel_id=CHANNEL,
            message_ts=snapshot["ts"],
            message=snapshot,
            response_url=response_url,
        )
        return await self.post_slack(body), response_url

    async def submit_view(self, callback_id: str, values: Mapping[str, Any], *, user: str, private_metadata: str = "") -> httpx.Response:
        body = view_submission_body(callback_id, values, user_id=user, private_metadata=private_metadata)
        return await self.post_slack(body)

    def answers(self, response_url: str) -> list[dict[str, Any]]:
        """What the bot sent to one response_url (ephemeral replies)."""
        response_id = response_url.rstrip("/").rsplit("/", 1)[-1]
        return [r.body for r in self.standin.responses if r.response_id == response_id]

    def thread_texts(self) -> list[str]:
        root = self.root()
        return [m.text for m in self.standin.thread(CHANNEL, root.ts)]

    async def thingspace_quiet(self, work: Any) -> None:
        """Run `work` while ThingSpace's callbacks are lost on the way (none arrives)."""
        account = self.rt.settings.thingspace_account
        url = self.sandbox.model.callback_url(account)
        self.sandbox.model.delete_callback(account)
        try:
            await work()
        finally:
            if url is not None:
                self.sandbox.model.set_callback(account, {"url": url})

    async def run_sandbox(self, seconds: float, step: float = 1.0) -> None:
        """Move ThingSpace's time forward, delivering every callback, and let the bot apply them."""
        elapsed = 0.0
        while elapsed < seconds:
            self.sandbox_clock.advance(step)
            elapsed += step
            await self.sandbox.tick()
            await self.settle()


@contextlib.asynccontextmanager
async def running_stack(tmp_path: Path, *, post_spacing: float = 0.0, **env: str) -> AsyncIterator[Stack]:
    standin = SlackStandIn(bot_token=BOT_TOKEN)
    async with serve_app(create_slack_standin_app(standin)) as base:
        standin.public_url = base
        sandbox_clock = SandboxClock.manual_at(START)
        sandbox = Sandbox(clock=sandbox_clock)
        recorder = RecordingTransport(httpx.ASGITransport(app=create_sandbox_app(sandbox)))
        settings_env = {
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SECRET,
            "FOTA_APPROVAL_CHANNEL": CHANNEL,
            "SLACK_API_URL": f"{base}/api/",
            "FOTA_DB": str(tmp_path / "fota.db"),
            "FOTA_APPROVERS": f"{ANN},{BOB}",
            "FOTA_UPDATE_INTERVAL": "5",
            **env,
        }
        with contextlib.suppress(FileExistsError):  # a test's own database, kept
            migrated_database(settings_env["FOTA_DB"])
        stack = Stack(standin, base, sandbox, sandbox_clock, recorder, ManualClock(START), settings_env, post_spacing)
        await stack.boot()
        try:
            yield stack
        finally:
            await stack.shutdown()
