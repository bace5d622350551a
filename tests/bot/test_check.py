"""`fota-bot check` against the recording Slack stand-in and the sandbox: what breaks a first day,
a line each with the fix, and nothing written anywhere (no database, no ThingSpace write)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from bot.check import REQUIRED_BOT_SCOPES, run_check
from bot.secrets import Secret
from bot.settings import load
from bot.standins.slack import SlackStandIn, create_slack_standin_app
from bot.standins.thingspace import Sandbox, create_sandbox_app
from bot.thingspace.client import CAMPAIGN_STATUSES, ThingSpaceClient
from bot.thingspace_probe import probe
from storage.model import PROTOCOLS
from tests.support.servers import serve_app
from tests.support.thingspace import RecordingTransport

TOKEN = "xoxb-check-1-2"
ACCOUNT = "0000000000-00001"


def settings_for(base: str, tmp_path: Path, **extra: str):  # type: ignore[no-untyped-def]
    return load({"SLACK_BOT_TOKEN": TOKEN, "SLACK_SIGNING_SECRET": "check-signing-secret",
                 "FOTA_APPROVAL_CHANNEL": "C0APPROVE", "SLACK_API_URL": f"{base}/api/",
                 "FOTA_DB": str(tmp_path / "fota.db"), **extra})


async def test_a_first_day_setup_with_everything_wrong_says_each_thing_and_its_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    standin = SlackStandIn(bot_token=TOKEN)
    ws = standin.workspace
    ws.bot_scopes = tuple(s for s in REQUIRED_BOT_SCOPES if s != "files:write")  # installed before a change
    ws.channels = {"C0APPROVE", "C0OTHER"}
    ws.bot_channels = {"C0OTHER"}  # the approval channel exists, the bot was never invited
    ws.auto_users = False
    ws.users = {"U0ANN": {"real_name": "Ann"}, "U0GONE": {"real_name": "Gone", "deleted": True}}
    ws.usergroups = {"S0OPS": ["U0ANN"], "S0EMPTY": []}
    async with serve_app(create_slack_standin_app(standin)) as base:
        settings = settings_for(base, tmp_path, FOTA_APPROVERS="U0ANN,U0NOBODY,U0GONE,S0OPS,S0EMPTY,S0TYPO")
        assert await run_check(settings) == 1
    out = capsys.readouterr().out
    assert "ok    Slack: the bot token works for team" in out
    assert ("FAIL  Slack: the app lacks the scope(s) files:write that manifest.yml asks for; add them under "
            "OAuth & Permissions (or paste manifest.yml again) and reinstall the app") in out
    assert ("FAIL  Slack: the bot is not in the approval channel #c0approve; invite it there (`/invite @fota-bot`), "
            "or cards cannot be posted") in out
    assert "ok    Slack: FOTA_APPROVERS U0ANN is Ann" in out
    assert "FAIL  Slack: FOTA_APPROVERS names U0NOBODY, which Slack does not know (user_not_found)" in out
    assert "FAIL  Slack: FOTA_APPROVERS names U0GONE (Gone), whose account is deactivated" in out
    assert "ok    Slack: FOTA_APPROVERS group S0OPS exists, 1 member(s)" in out
    assert "warn  Slack: FOTA_APPROVERS group S0EMPTY has no members" in out
    assert "FAIL  Slack: FOTA_APPROVERS names S0TYPO, which Slack does not know (no_such_subteam)" in out
    assert out.rstrip().endswith("5 problem(s)")
    assert TOKEN not in out
    assert os.listdir(tmp_path) == []  # no database written


async def test_a_good_setup_is_all_good(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    standin = SlackStandIn(bot_token=TOKEN)
    async with serve_app(create_slack_standin_app(standin)) as base:
        assert await run_check(settings_for(base, tmp_path, FOTA_APPROVERS="U0ANN")) == 0
    out = capsys.readouterr().out
    assert "ok    Slack: every scope manifest.yml asks for is granted" in out
    assert "ok    Slack: the approval channel #c0approve exists and the bot is in it" in out
    assert f"ok    database {tmp_path / 'fota.db'} does not exist yet; `fota-bot serve` creates it" in out
    assert out.rstrip().endswith("all good")
    assert os.listdir(tmp_path) == []


async def test_a_channel_that_does_not_exist_or_cannot_be_looked_at(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    standin = SlackStandIn(bot_token=TOKEN)
    standin.workspace.channels = {"C0OTHER"}
    async with serve_app(create_slack_standin_app(standin)) as base:
        assert await run_check(settings_for(base, tmp_path)) == 1
        standin.workspace.bot_scopes = ("commands", "chat:write")
        assert await run_check(settings_for(base, tmp_path)) == 1
    out = capsys.readouterr().out
    assert "FAIL  Slack: FOTA_APPROVAL_CHANNEL=C0APPROVE was not found (channel_not_found)" in out
    assert "FAIL  Slack: cannot look at FOTA_APPROVAL_CHANNEL=C0APPROVE: the app lacks channels:read" in out


async def test_the_public_url_must_reach_a_running_bot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    standin = SlackStandIn(bot_token=TOKEN)
    async with serve_app(create_slack_standin_app(standin)) as base:
        # The stand-in is not fota-bot: its /healthz is not the bot's.
        assert await run_check(settings_for(base, tmp_path, FOTA_PUBLIC_URL=base)) == 1
        assert await run_check(settings_for(base, tmp_path, FOTA_PUBLIC_URL="http://127.0.0.1:9")) == 1
    out = capsys.readouterr().out
    assert f"FOTA_PUBLIC_URL: {base}/healthz answered 404, but not as fota-bot" in out
    assert "FOTA_PUBLIC_URL: http://127.0.0.1:9/healthz cannot be reached from here (ConnectError)" in out


async def test_the_thingspace_probe_reads_every_call_and_writes_nothing(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    sandbox = Sandbox()
    recorder = RecordingTransport(httpx.ASGITransport(app=create_sandbox_app(sandbox)))
    client = ThingSpaceClient(base_url="http://thingspace.test", client_id=Secret("k"), client_secret=Secret("s"),
                              username=Secret("u"), password=Secret("p"), transport=recorder, max_retries=0)
    try:
        await client.register_callback(ACCOUNT, "https://fota.example.com/thingspace/callbacks/tok-0123456789abcdef")
        recorder.seen.clear()
        lines = await probe(client, ACCOUNT, expected_callback="https://fota.example.com/thingspace/callbacks/"
                                                                "tok-0123456789abcdef")
    finally:
        await client.aclose()
    calls = [line.call for line in lines]
    assert calls[0] == "OAuth token and M2M session"
    assert [f"GET firmware ({p})" for p in PROTOCOLS] == calls[1:4]
    assert "GET subscription" in calls and "GET callback listener" in calls
    assert [f"GET campaigns ({s})" for s in CAMPAIGN_STATUSES] == [c for c in calls if c.startswith("GET campaigns")]
    assert calls[-1].startswith("POST devices")
    by_call = {line.call: line for line in lines}
    assert by_call["GET callback listener"].answer == "this bot's URL"
    assert all(line.verdict in ("ok", "warn") for line in lines), [line.text for line in lines]
    # Read only: GETs, the two logins, and the device look-up (a POST that changes nothing).
    for seen in recorder.seen:
        assert seen.method == "GET" or seen.path.endswith(("/oauth2/token", "/session/login")) or (
            seen.method == "POST" and seen.path == f"/api/fota/v3/devices/{ACCOUNT}"
        ), (seen.method, seen.path)
    assert {seen.method for seen in recorder.seen} <= {"GET", "POST"}


class OnlyOurAccount(httpx.AsyncBaseTransport):
    """ThingSpace as it answers for an account the credentials do not hold (the sandbox
    serves any account): 403 in ThingSpace's error shape."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "1111111111-00001" in request.url.path:
            return httpx.Response(403, json={"errorCode": "UnauthorizedAccount",
                                             "errorMessage": "Account 1111111111-00001 is not authorized"})
        return await self.inner.handle_async_request(request)


async def test_check_thingspace_lines_and_what_a_refusal_means(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sandbox = Sandbox()
    recorder = RecordingTransport(OnlyOurAccount(httpx.ASGITransport(app=create_sandbox_app(sandbox))))
    client = ThingSpaceClient(base_url="http://thingspace.test", client_id=Secret("k"), client_secret=Secret("s"),
                              username=Secret("u"), password=Secret("p"), transport=recorder, max_retries=0)
    standin = SlackStandIn(bot_token=TOKEN)
    try:
        async with serve_app(create_slack_standin_app(standin)) as base:
            # An account these credentials do not hold: every account call is refused.
            settings = settings_for(base, tmp_path, THINGSPACE_ACCOUNT="1111111111-00001")
            assert await run_check(settings, thingspace=True, thingspace_client=client) == 1
    finally:
        await client.aclose()
    out = capsys.readouterr().out
    assert "ok    ThingSpace OAuth token and M2M session: obtained" in out
    assert "FAIL  ThingSpace GET firmware (LWM2M): refused (" in out
    assert "→ pre-flight checks of LWM2M requests fail: they cannot be approved" in out
    assert "FAIL  ThingSpace GET subscription: refused (" in out
    assert all(s.method == "GET" or not s.path.startswith("/api/fota/v3/campaigns") for s in recorder.seen)
    assert not [s for s in recorder.seen if s.method in ("PUT", "DELETE")]
