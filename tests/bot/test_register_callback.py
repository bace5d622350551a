"""Registering the callback listener: `fota-bot register-callback` over real HTTP against the
sandbox, and sandbox-mode start-up, each changing the listener only when it differs."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bot.check import register_callback
from bot.settings import load
from bot.standins.thingspace import Sandbox, SandboxClock, create_sandbox_app
from storage.store import Store
from tests.support.servers import serve_app
from tests.support.stack import running_stack

ACCOUNT = "0000000000-00001"
PUBLIC = "https://fota.example.com"


async def test_register_callback_creates_keeps_and_replaces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = Sandbox(clock=SandboxClock.manual_at(dt.datetime(2026, 11, 26, 9, tzinfo=dt.UTC)))
    async with serve_app(create_sandbox_app(sandbox)) as base:
        settings = load(
            {
                "THINGSPACE_URL": base,
                "THINGSPACE_CLIENT_ID": "oauth-key-4Rw9Lq",
                "THINGSPACE_CLIENT_SECRET": "oauth-secret-Zt7Yp2",
                "THINGSPACE_USERNAME": "uws-user-Hx3",
                "THINGSPACE_PASSWORD": "uws-password-Mv8Kd1",
                "THINGSPACE_ACCOUNT": ACCOUNT,
                "FOTA_PUBLIC_URL": PUBLIC,
                "FOTA_DB": str(tmp_path / "fota.db"),
            },
            for_serve=False,
        )
        assert await register_callback(settings) == 0
        first = capsys.readouterr().out
        store = Store.open(tmp_path / "fota.db")
        token = store.callback_token()
        store.close()
        ours = f"{PUBLIC}/thingspace/callbacks/{token}"
        assert sandbox.model.callback_url(ACCOUNT) == ours
        assert "(none was registered)" in first

        assert await register_callback(settings) == 0
        assert "Already registered" in capsys.readouterr().out

        sandbox.model.set_callback(ACCOUNT, {"url": "https://old.example.com/callbacks/x"})
        assert await register_callback(settings) == 0
        third = capsys.readouterr().out
        assert "replaces the URL registered before" in third
        assert sandbox.model.callback_url(ACCOUNT) == ours
    await sandbox.aclose()
    for said in (first, third):
        assert token not in said and "/thingspace/callbacks/********" in said


async def test_sandbox_mode_start_up_registers_once_and_then_only_reads(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        def listener_calls() -> list[str]:
            return [s.method for s in stack.thingspace.seen if s.path == f"/api/fota/v3/callbacks/{ACCOUNT}"]

        assert listener_calls() == ["GET", "POST"]
        registered = stack.sandbox.model.callback_url(ACCOUNT)
        await stack.restart()
        assert listener_calls() == ["GET", "POST", "GET"]
        assert stack.sandbox.model.callback_url(ACCOUNT) == registered
