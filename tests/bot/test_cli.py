"""The operator's command line: check, campaigns list/show/export, register-callback."""

from __future__ import annotations

import gc
import logging
import os
import weakref
from pathlib import Path

import pytest

from bot.check import run_check, warn_if_callback_differs
from bot.cli import GC_YOUNG_THRESHOLD, main, settle_garbage_collector
from bot.settings import load
from bot.standins.slack import SlackStandIn, create_slack_standin_app
from tests.e2e.test_flow import request_campaign
from tests.support.servers import serve_app
from tests.support.stack import running_stack


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith(("SLACK_", "FOTA_", "THINGSPACE_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def test_check_reaches_slack_and_says_sandbox_mode(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    standin = SlackStandIn(bot_token="xoxb-check-token")
    async with serve_app(create_slack_standin_app(standin)) as base:
        settings = load(
            {"SLACK_BOT_TOKEN": "xoxb-check-token", "SLACK_API_URL": f"{base}/api/", "FOTA_DB": str(tmp_path / "f.db")},
            for_serve=False,
        )
        assert await run_check(settings) == 1  # two values serve needs are missing
    out = capsys.readouterr().out
    assert "ok    Slack: the bot token works for team" in out
    assert "sandbox mode" in out
    assert "FAIL  SLACK_SIGNING_SECRET is not set" in out and "FAIL  FOTA_APPROVAL_CHANNEL is not set" in out
    assert "xoxb-check-token" not in out


async def test_check_tries_the_socket_mode_token(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    standin = SlackStandIn(bot_token="xoxb-check-token", app_token="xapp-1-right")
    async with serve_app(create_slack_standin_app(standin)) as base:
        env = {"SLACK_BOT_TOKEN": "xoxb-check-token", "SLACK_SIGNING_SECRET": "s", "FOTA_APPROVAL_CHANNEL": "C0X",
               "SLACK_API_URL": f"{base}/api/", "FOTA_DB": str(tmp_path / "f.db")}
        assert await run_check(load({**env, "SLACK_APP_TOKEN": "xapp-1-right"})) == 0
        assert await run_check(load({**env, "SLACK_APP_TOKEN": "xapp-1-wrong"})) == 1
    out = capsys.readouterr().out
    assert "ok    Slack: SLACK_APP_TOKEN opens a Socket Mode connection" in out
    assert "FAIL  Slack refused SLACK_APP_TOKEN for Socket Mode: invalid_auth" in out
    assert "xapp-1-" not in out


async def test_check_says_plainly_when_slack_refuses_or_cannot_be_reached(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    standin = SlackStandIn(bot_token="xoxb-the-real-one")
    async with serve_app(create_slack_standin_app(standin)) as base:
        env = {"SLACK_SIGNING_SECRET": "s", "FOTA_APPROVAL_CHANNEL": "C0X", "FOTA_DB": str(tmp_path / "f.db")}
        wrong = load({**env, "SLACK_BOT_TOKEN": "xoxb-wrong", "SLACK_API_URL": f"{base}/api/"})
        assert await run_check(wrong) == 1
    unreachable = load({**env, "SLACK_BOT_TOKEN": "xoxb-wrong", "SLACK_API_URL": "http://127.0.0.1:9/api/"})
    assert await run_check(unreachable) == 1
    out = capsys.readouterr().out
    assert "Slack refused the bot token: invalid_auth" in out
    assert "Slack could not be reached at http://127.0.0.1:9/api/" in out


async def test_campaign_views_for_the_operator(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
    for name in list(os.environ):
        if name.startswith(("SLACK_", "FOTA_", "THINGSPACE_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FOTA_DB", str(tmp_path / "fota.db"))
    assert main(["campaigns", "list"]) == 0
    assert main(["campaigns", "show", "FB-1"]) == 0
    out_file = tmp_path / "fb1.csv"
    assert main(["campaigns", "export", "FB-1", "--out", str(out_file)]) == 0
    assert main(["campaigns", "show", "FB-9"]) == 1
    captured = capsys.readouterr()
    assert "FB-1" in captured.out and "pending_approval" in captured.out
    assert "requested" in captured.out  # the audit trail
    assert out_file.read_text().splitlines()[0] == "imei,status,reason,updated_at"
    assert len(out_file.read_text().splitlines()) == 4
    assert "No campaign `FB-9`" in captured.err


def test_campaigns_without_a_database_say_so(clean_environment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["campaigns", "list"]) == 1
    assert "No database at fota.db" in capsys.readouterr().err


def test_register_callback_needs_a_public_url_in_live_mode(clean_environment: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("THINGSPACE_CLIENT_ID", "THINGSPACE_CLIENT_SECRET", "THINGSPACE_USERNAME", "THINGSPACE_PASSWORD"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("THINGSPACE_ACCOUNT", "0642233522-00001")
    assert main(["register-callback"]) == 2
    assert "FOTA_PUBLIC_URL is not set" in capsys.readouterr().out


async def test_serve_warns_when_thingspace_calls_back_elsewhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with running_stack(tmp_path, FOTA_PUBLIC_URL="https://fota.example.com") as stack:
        caplog.set_level(logging.WARNING, logger="bot.check")
        # The in-process sandbox has the bot's in-process URL registered, not the public one.
        await warn_if_callback_differs(stack.rt.settings, stack.rt)
        assert "is not this bot's (a different URL); run `fota-bot register-callback`" in caplog.text
        assert stack.rt.callback_token not in caplog.text
        await stack.rt.thingspace.register_callback(
            "0000000000-00001", f"https://fota.example.com/thingspace/callbacks/{stack.rt.callback_token}"
        )
        caplog.clear()
        await warn_if_callback_differs(stack.rt.settings, stack.rt)
        assert "register-callback" not in caplog.text


class _Node:
    other: _Node | None = None


def test_serve_freezes_what_start_up_built_and_collects_young_objects_less_often() -> None:
    thresholds = gc.get_threshold()
    try:
        settle_garbage_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *thresholds[1:])
        # Cycles made afterwards are still collected, by the collector on its own.
        gc.collect()
        made = gc.get_stats()[0]["collections"]
        first, second = _Node(), _Node()
        first.other, second.other = second, first
        gone = weakref.ref(first)
        del first, second
        garbage = [[n] for n in range(GC_YOUNG_THRESHOLD * 2)]
        assert gc.get_stats()[0]["collections"] > made and gone() is None
        del garbage
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
