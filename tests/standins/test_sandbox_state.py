"""The sandbox keeps its state in SQLite: a new process on the same file carries a rehearsal on,
from the sandbox alone up to `serve` in sandbox mode restarted in the middle of a rollout."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.cli import main
from bot.standins.thingspace import Sandbox, SandboxClock, create_sandbox_app, sandbox_imeis
from storage.states import CampaignState
from tests.e2e.test_rollout import approve_and_submit
from tests.standins.test_sandbox import ACCOUNT, FOTA, Receiver, login, report, schedule, valid_body
from tests.support.stack import CHANNEL, Stack, running_stack
from tests.support.thingspace import RecordingTransport

START = dt.datetime(2030, 1, 15, 12, 0, tzinfo=dt.UTC)
LISTENER = "http://receiver.test/thingspace/callbacks/s3cret-token-0123456789"


@contextlib.asynccontextmanager
async def process(path: Path, receiver: Receiver, clock: SandboxClock) -> AsyncIterator[tuple[Sandbox, httpx.AsyncClient]]:
    """One sandbox process on the state file `path`, with a logged-in client."""
    sandbox = Sandbox(clock=clock, callback_transport=httpx.ASGITransport(app=receiver.app))
    sandbox.open_state(path)
    transport = httpx.ASGITransport(app=create_sandbox_app(sandbox))
    async with httpx.AsyncClient(transport=transport, base_url="https://thingspace.test") as client:
        client.headers.update(await login(client))
        yield sandbox, client
    await sandbox.aclose()


async def test_a_new_sandbox_on_the_same_file_carries_the_campaign_on(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.db"
    receiver = Receiver()
    devices = sandbox_imeis(6) + sandbox_imeis(2, kind="will_fail") + sandbox_imeis(1, kind="ineligible")
    unlicensed = sandbox_imeis(1, kind="unlicensed")
    async with process(state, receiver, SandboxClock.manual_at(START)) as (first, api):
        await api.post(f"{FOTA}/callbacks/{ACCOUNT}", json={"url": LISTENER})
        await api.post(f"{FOTA}/licenses/{ACCOUNT}/assign", json={"deviceList": unlicensed})
        answer = await schedule(api, valid_body(devices))
        waiting = await schedule(api, valid_body(devices[:2], startDate="2030-01-20", endDate="2030-01-21"))
        # Scheduled at +6 s, devices begin over the next 10 s: stop while some are done and
        # others have not begun.
        for _ in range(30):
            first.clock.advance(1)
            await first.tick()
            statuses = Counter(d.status for d in first.campaign(answer["id"]).devices.values())
            if statuses["UpgradeSuccess"] and statuses["UpgradePending"]:
                break
        assert statuses["UpgradeSuccess"] > 0 and statuses["UpgradePending"] > 0, statuses
        before = {row["deviceId"]: row for row in await report(api, answer["id"])}
        delivered_before = len(receiver.payloads())
        stopped_at = first.clock.now()

    # A new process: its clock starts where the file's left off, never earlier.
    async with process(state, receiver, SandboxClock.manual_at(START)) as (second, api):
        assert second.clock.now() == stopped_at
        assert {row["deviceId"]: row for row in await report(api, answer["id"])} == before
        assert (await api.get(f"{FOTA}/callbacks/{ACCOUNT}")).json() == {"url": LISTENER}
        licences = (await api.get(f"{FOTA}/licenses/{ACCOUNT}")).json()
        assert [d["deviceId"] for d in licences["deviceList"]] == sorted([*unlicensed, *devices])
        second.clock.advance(60)
        await second.tick()
        rows = await report(api, answer["id"])
        info = (await api.get(f"{FOTA}/campaigns/{ACCOUNT}/{answer['id']}")).json()
        # The future campaign was not started by the restart, and can still be cancelled.
        assert (await api.delete(f"{FOTA}/campaigns/{ACCOUNT}/{waiting['id']}")).json() == {"success": True}
        upgraded = (await api.post(f"{FOTA}/devices/{ACCOUNT}", json={"deviceList": devices[:1]})).json()

    assert info["status"] == "CampaignEnded"
    assert Counter(row["status"] for row in rows) == {
        "UpgradeSuccess": 6, "UpgradeFailed": 2, "RequestToFotaServerFailed": 1}
    assert upgraded["deviceList"][0]["firmware"] == "SR1.2.0.0-10657"
    # Each device's end was announced exactly once, across both processes.
    finals = Counter(
        p["deviceId"] for p in receiver.payloads()
        if p["type"] == "DeviceStatus" and p["status"] in ("UpgradeSuccess", "UpgradeFailed", "RequestToFotaServerFailed")
    )
    assert finals == {imei: 1 for imei in devices}
    assert len(receiver.payloads()) > delivered_before


async def test_the_state_lives_in_the_sandboxs_own_tables(tmp_path: Path) -> None:
    state = tmp_path / "fota.db"
    receiver = Receiver()
    async with process(state, receiver, SandboxClock.manual_at(START)) as (_, api):
        await schedule(api, valid_body())
    tables = {row[0] for row in sqlite3.connect(state).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables and all(name.startswith("sandbox_") for name in tables), tables
    assert state.stat().st_mode & 0o077 == 0  # a listener URL carries the bot's secret token


async def restart_serve_with_a_new_sandbox(stack: Stack) -> None:
    """`serve` stopped and started again: a new process, so a new sandbox (and a sandbox clock
    that starts afresh) on the same database file."""
    await stack.shutdown()
    clock = SandboxClock.manual_at(stack.sandbox_clock.now() - dt.timedelta(hours=1))
    stack.sandbox = Sandbox(clock=clock)
    stack.sandbox_clock = clock
    stack.thingspace = RecordingTransport(httpx.ASGITransport(app=create_sandbox_app(stack.sandbox)))
    await stack.boot()


async def test_serve_restarted_mid_rollout_ends_the_thread_with_the_right_counts(tmp_path: Path) -> None:
    imeis = sandbox_imeis(8, kind="eligible") + sandbox_imeis(2, kind="will_fail")
    async with running_stack(tmp_path) as stack:
        await approve_and_submit(stack, imeis)
        [campaign_id] = [c.id for c in stack.sandbox.campaigns]
        # Scheduled, some devices done, others not begun.
        for _ in range(30):
            await stack.run_sandbox(1, step=1.0)
            mid = Counter(d.status for d in stack.sandbox.campaign(campaign_id).devices.values())
            if mid["UpgradePending"] and mid["UpgradeSuccess"]:
                break
        assert mid["UpgradePending"] > 0 and mid["UpgradeSuccess"] > 0, mid
        old = stack.sandbox

        await restart_serve_with_a_new_sandbox(stack)

        assert stack.sandbox is not old
        carried = stack.sandbox.campaign(campaign_id)
        assert carried.status == "CampaignScheduled"
        assert Counter(d.status for d in carried.devices.values()) == mid
        await stack.run_sandbox(50, step=1.0)
        stack.clock.advance(seconds=120)  # the debounced re-read confirms the end
        await stack.settle()

        assert stack.rt.store.campaign(1).state is CampaignState.ENDED
        assert stack.rt.store.device_counts(1) == {
            "pending": 0, "in progress": 0, "succeeded": 8, "failed": 2, "other": 0}
        texts = [m.text for m in stack.standin.thread(CHANNEL, stack.root().ts)]
        # One final summary, with the counts of the whole rollout (before and after the restart).
        assert sum("finished" in t and "8 of 10 devices sent upgraded, 2 failed" in t for t in texts) == 1, texts
        assert not any("CAMPAIGN_NOT_FOUND" in t or "lost" in t.lower() for t in texts), texts
        assert "Ended. 8 succeeded (80%), 2 failed (20%) of 10." in stack.root().text
        # Nothing announced twice: each device's end reached the bot once, before or after.
        finals = Counter(
            p["deviceId"]
            for sandbox in (old, stack.sandbox)
            for delivery in sandbox.deliveries
            for p in (delivery.payload if isinstance(delivery.payload, list) else [delivery.payload])
            if isinstance(p, dict) and p.get("status") in ("UpgradeSuccess", "UpgradeFailed")
        )
        assert finals == {imei: 1 for imei in imeis}


def test_fota_bot_sandbox_refuses_a_state_file_it_cannot_use_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with socket.socket() as probe:  # a free port; nothing listens on it: the state is refused first
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["sandbox", "--port", str(port), "--state", str(tmp_path)]) == 1  # a folder, not a file
    err = capsys.readouterr().err
    assert err == f"fota-bot: --state {tmp_path} cannot be used: unable to open database file\n"


async def test_in_process_the_sandbox_never_checkpoints_the_bots_database(tmp_path: Path) -> None:
    """The bot checkpoints its WAL on the reader thread only (`Store.checkpoint_off_loop`);
    the sandbox shares the file, and its commits (every tick) must not do it on the loop."""
    async with running_stack(tmp_path) as stack:
        assert stack.sandbox._state is not None
        assert stack.sandbox._state.autocheckpoint_pages() == 0
    # Run alone, on a file of its own, it keeps SQLite's own checkpoints.
    sandbox = Sandbox(clock=SandboxClock.manual_at(START))
    sandbox.open_state(tmp_path / "alone.db")
    assert sandbox._state is not None
    assert sandbox._state.autocheckpoint_pages() == 1000
    await sandbox.aclose()
