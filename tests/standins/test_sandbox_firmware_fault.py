"""The firmware fault knob: one firmware fails on a chosen share of one model's devices, the
same devices every time, kept across a restart (for rehearsing a rollout halted on failures)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.standins.thingspace import (
    Sandbox,
    SandboxClock,
    create_sandbox_app,
    device_facts,
    sandbox_imeis,
)
from tests.standins.test_sandbox import login, report, schedule, valid_body

START = dt.datetime(2030, 1, 15, 12, 0, tzinfo=dt.UTC)
BG96 = {
    "firmwareName": "Quectel_BG96_BG96MAR04A02M1G",
    "firmwareFrom": "BG96MAR02A08M1G",
    "firmwareTo": "BG96MAR04A02M1G",
}
BAD_BUILD = "Firmware image rejected by the device (signature check failed)"


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sb = Sandbox(clock=SandboxClock.manual_at(START))
    yield sb
    await sb.aclose()


@pytest.fixture
async def api(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_sandbox_app(sandbox))
    async with httpx.AsyncClient(transport=transport, base_url="https://thingspace.test") as client:
        client.headers.update(await login(client))
        yield client


async def outcomes(api: httpx.AsyncClient, sandbox: Sandbox, body: dict[str, object]) -> dict[str, tuple[str, str]]:
    answer = await schedule(api, body)
    sandbox.clock.advance(120)
    await sandbox.tick()
    return {r["deviceId"]: (r["status"], r.get("resultReason", "")) for r in await report(api, answer["id"])}


async def test_a_firmware_fails_on_the_chosen_share_of_one_models_devices(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    devices = sandbox_imeis(200, model="BG96", firmware="BG96MAR02A08M1G")
    doomed = {i for i in devices if device_facts(i).lot < 0.3}
    assert 40 < len(doomed) < 80  # about 30 % of 200

    sandbox.fail_firmware(BG96["firmwareName"], 0.3, model="Quectel BG96")
    rows = await outcomes(api, sandbox, valid_body(devices, **BG96))
    assert {i for i, (status, reason) in rows.items() if reason == BAD_BUILD} == doomed
    assert all(rows[i] == ("UpgradeSuccess", "") for i in set(devices) - doomed)
    assert all(rows[i][0] == "UpgradeFailed" for i in doomed)

    # Another firmware, another model: untouched.
    others = sandbox_imeis(20)
    assert Counter(s for s, _ in (await outcomes(api, sandbox, valid_body(others))).values()) == {"UpgradeSuccess": 20}


async def test_the_knob_over_http_says_what_it_refuses(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    path = "/sandbox/faults/firmware"
    ok = await api.post(path, json={**{"firmwareName": BG96["firmwareName"]}, "model": "BG96", "share": 1,
                                    "reason": "Bricked in the lab"})
    assert ok.json() == {"firmwareName": BG96["firmwareName"], "model": "BG96", "share": 1.0,
                         "reason": "Bricked in the lab"}
    rows = await outcomes(api, sandbox, valid_body(sandbox_imeis(3, model="BG96", firmware="BG96MAR02A08M1G"), **BG96))
    assert set(rows.values()) == {("UpgradeFailed", "Bricked in the lab")}
    for body, message in [
        ({"firmwareName": BG96["firmwareName"], "model": "BG96", "share": 1.5},
         "share is required: a number from 0 to 1, not 1.5"),
        ({"firmwareName": "Acme_X1", "model": "BG96", "share": 0.5},
         "no firmware 'Acme_X1' in the sandbox's catalogue"),
        ({"firmwareName": BG96["firmwareName"], "model": "BG97", "share": 0.5},
         "no sandbox device model 'BG97': the catalogue has GM01Q, ME910C1-WW, BG96, WP7702, nRF9160"),
    ]:
        refused = await api.post(path, json=body)
        assert refused.status_code == 400
        assert refused.json() == {"errorCode": "INVALID_PARAMETER", "errorMessage": message}


async def test_the_fault_is_kept_across_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "sandbox.db"
    first = Sandbox(clock=SandboxClock.manual_at(START))
    first.open_state(state)
    first.fail_firmware(BG96["firmwareName"], 0.5, model="BG96")
    await first.aclose()
    second = Sandbox(clock=SandboxClock.manual_at(START))
    second.open_state(state)
    try:
        [fault] = second.model.firmware_faults
        assert (fault.firmware_name, fault.model, fault.share, fault.reason) == (
            BG96["firmwareName"], "BG96", 0.5, BAD_BUILD)
        second.clear_faults()
        assert second.model.firmware_faults == []
    finally:
        await second.aclose()
