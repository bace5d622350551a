"""Listener unit tests, after Slack's Bolt starter template: each handler called alone with a
fake ack, respond and client (plain async callables that record their calls) and the real
services on a real SQLite file; no HTTP, no Bolt dispatch.

The services are the ones `bot/app.py` builds (with the in-process ThingSpace sandbox), except
`Operations`, which is given the fake client: in the running bot it holds the same Web API
client Bolt hands the handlers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import Runtime, build_runtime
from bot.settings import load
from bot.slack_files import SlackFiles
from bot.standins.thingspace import Sandbox, SandboxClock
from bot.workflow.operations import Operations
from commands import blocks
from commands.listeners import Services
from commands.parse import parse_schedule
from storage.model import Campaign
from tests.conftest import ManualClock
from tests.support.database import migrated_database
from tests.support.stack import ANN, BOB, CHANNEL, FIRMWARE, REQUESTER, START

IMEIS = ("354658090353977", "490154203237518", "356938035643809")
SCHEDULE_ARGS = (
    f"firmware={FIRMWARE} from=SR1.2.0.0-10512 to=SR1.2.0.0-10657 "
    f"start=today end=+3d window=18-22 devices={','.join(IMEIS)}"
)


class Recorder:
    """Bolt's ack() or respond(), faked: a plain async callable that records its calls."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def __call__(self, text: str | None = None, **kwargs: Any) -> None:
        self.calls.append({"text": text, **kwargs} if text is not None else kwargs)

    @property
    def texts(self) -> list[str]:
        return [str(call.get("text") or "") for call in self.calls]


class FakeSlack:
    """Bolt's Web API client, faked for the methods the handlers (and Operations) call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def called(self, method: str) -> list[dict[str, Any]]:
        return [kwargs for name, kwargs in self.calls if name == method]

    async def _record(self, method: str, kwargs: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((method, kwargs))
        return {"ok": True, **answer}

    async def views_open(self, **kwargs: Any) -> dict[str, Any]:
        return await self._record("views_open", kwargs, {})

    async def views_publish(self, **kwargs: Any) -> dict[str, Any]:
        return await self._record("views_publish", kwargs, {})

    async def chat_postMessage(self, **kwargs: Any) -> dict[str, Any]:
        return await self._record("chat_postMessage", kwargs, {"ts": "1.000001"})

    async def chat_getPermalink(self, **kwargs: Any) -> dict[str, Any]:
        return await self._record("chat_getPermalink", kwargs, {"permalink": "https://example.slack.com/archives/C/p1"})

    async def conversations_open(self, **kwargs: Any) -> dict[str, Any]:
        return await self._record("conversations_open", kwargs, {"channel": {"id": "D0DM"}})

    async def files_upload_v2(self, **kwargs: Any) -> dict[str, Any]:
        return await self._record("files_upload_v2", kwargs, {"files": [{"permalink": "https://files.example/f"}]})


@pytest.fixture
def ack() -> Recorder:
    return Recorder()


@pytest.fixture
def respond() -> Recorder:
    return Recorder()


@pytest.fixture
def slack() -> FakeSlack:
    return FakeSlack()


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-1-2-listeners",
        "SLACK_SIGNING_SECRET": "listeners-signing-secret",
        "FOTA_APPROVAL_CHANNEL": CHANNEL,
        # Nothing here talks to Slack but through the fake client: a call that did would fail.
        "SLACK_API_URL": "http://127.0.0.1:9/api/",
        "FOTA_DB": str(migrated_database(tmp_path / "fota.db")),
        "FOTA_APPROVERS": f"{ANN},{BOB}",
        "FOTA_REQUESTERS": REQUESTER,
    }
    rt = build_runtime(
        load(env), clock=ManualClock(START), sandbox=Sandbox(clock=SandboxClock.manual_at(START))
    )
    await rt.start(workers=False)
    try:
        yield rt
    finally:
        await rt.stop()


@pytest.fixture
def services(runtime: Runtime, slack: FakeSlack) -> Services:
    rt = runtime
    operations = Operations(
        settings=rt.settings,
        store=rt.store,
        thingspace=rt.thingspace,
        directory=rt.directory,
        events=rt.notifier,
        clock=rt.clock,
        slack=slack,  # type: ignore[arg-type]
    )
    return Services(
        settings=rt.settings,
        campaigns=rt.service,
        operations=operations,
        background=rt.background,
        clock=rt.clock,
        download=SlackFiles(token="xoxb-1-2-listeners", api_url=rt.settings.slack_api_url).download,
        preflight=rt.preflight,
    )


async def pending_campaign(services: Services, *, args: str = SCHEDULE_ARGS) -> Campaign:
    """A request waiting for approval, made through the service (pre-flight run)."""
    request = parse_schedule(args, today=services.today(), max_devices=services.settings.max_devices)
    campaign = await services.campaigns.request(user=REQUESTER, request=request, response_url=None)
    await services.background.idle()
    return services.campaigns.store.campaign(campaign.id)


def clicked(user: str, value: str = "", **body: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A button click's body and action, as Bolt hands them to a handler."""
    return {"user": {"id": user}, "trigger_id": "13345.trigger", **body}, {"value": value}


def card_value(campaign: Campaign) -> str:
    return blocks.action_value(campaign.id, campaign.content_hash)
