"""The sandbox's devices: make and model are fixed facts of the IMEI, firmware built for another
model or another version fails the device with a reason, and the documented examples hold."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.standins.thingspace import (
    DEFAULT_CATALOGUE,
    FirmwareEntry,
    Sandbox,
    SandboxClock,
    create_sandbox_app,
    device_facts,
    device_models,
    luhn_valid,
    sandbox_imeis,
)
from tests.standins.test_sandbox import ACCOUNT, FOTA, login, report, schedule, valid_body

START = dt.datetime(2030, 1, 15, 12, 0, tzinfo=dt.UTC)
README = Path(__file__).resolve().parents[2] / "README.md"

BG96_FROM_02 = {
    "firmwareName": "Quectel_BG96_BG96MAR04A02M1G",
    "firmwareFrom": "BG96MAR02A08M1G",
    "firmwareTo": "BG96MAR04A02M1G",
}


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


async def device_info(api: httpx.AsyncClient, imeis: list[str]) -> dict[str, dict[str, Any]]:
    response = await api.post(f"{FOTA}/devices/{ACCOUNT}", json={"deviceList": imeis})
    assert response.status_code == 200, response.text
    return {d["deviceId"]: d for d in response.json()["deviceList"]}


async def run_to_end(api: httpx.AsyncClient, sandbox: Sandbox, body: dict[str, Any]) -> dict[str, tuple[str, str]]:
    answer = await schedule(api, body)
    sandbox.clock.advance(120)
    await sandbox.tick()
    assert sandbox.campaign(answer["id"]).status == "CampaignEnded"
    return {row["deviceId"]: (row["status"], row.get("resultReason", "")) for row in await report(api, answer["id"])}


# --- The rule -------------------------------------------------------------------------------------


def test_the_tac_names_make_model_and_the_firmware_a_device_ships_with() -> None:
    table = {m.model: (m.tac, m.make, m.protocol, m.firmware) for m in device_models()}
    assert table == {
        "GM01Q": ("35465809", "SEQUANS Communications", "LWM2M", ("SR1.2.0.0-10512",)),
        "ME910C1-WW": ("35907610", "Telit", "LWM2M", ("M0B.020004",)),
        "BG96": ("86695904", "Quectel", "LWM2M", ("BG96MAR02A08M1G", "BG96MAR03A01M1G")),
        "WP7702": ("35316410", "Sierra Wireless", "OMA", ("R13.1.0.002",)),
        "nRF9160": ("35240611", "Nordic Semiconductor", "HTTP", ("mfw_nrf9160_1.3.4",)),
    }
    for model in device_models():
        for imei in sandbox_imeis(20, kind=None, model=model.model):
            facts = device_facts(imei)
            assert imei.startswith(model.tac) and luhn_valid(imei)
            assert (facts.make, facts.model, facts.protocol) == (model.make, model.model, model.protocol)
            assert facts.firmware in model.firmware


def test_sandbox_imeis_picks_model_and_firmware() -> None:
    older = sandbox_imeis(5, model="Quectel BG96", firmware="BG96MAR02A08M1G")
    newer = sandbox_imeis(5, model="bg96", firmware="BG96MAR03A01M1G")
    assert {device_facts(i).firmware for i in older} == {"BG96MAR02A08M1G"}
    assert {device_facts(i).firmware for i in newer} == {"BG96MAR03A01M1G"}
    assert older == sandbox_imeis(5, model="BG96", firmware="BG96MAR02A08M1G")  # deterministic
    # The default is the reference page's example model, so its example request fits.
    assert {device_facts(i).model for i in sandbox_imeis(30)} == {"GM01Q"}
    with pytest.raises(ValueError, match="Quectel BG96 devices run BG96MAR02A08M1G, BG96MAR03A01M1G"):
        sandbox_imeis(1, model="BG96", firmware="SR1.2.0.0-10512")
    with pytest.raises(ValueError, match="no sandbox device model 'GM02'"):
        sandbox_imeis(1, model="GM02")


def test_an_unlisted_tac_is_the_reference_example_model() -> None:
    for imei in ("490154203237518", "356938035643809"):  # TACs the table does not list
        assert luhn_valid(imei)
        facts = device_facts(imei)
        assert (facts.make, facts.model, facts.firmware) == (
            "SEQUANS Communications", "GM01Q", "SR1.2.0.0-10512")


def test_a_custom_catalogue_gives_its_own_models() -> None:
    catalogue = (
        FirmwareEntry("Acme_X1_1_2", "1.0", "2.0", "Acme", "X1", "HTTP", "2024-01-01", ""),
        *DEFAULT_CATALOGUE,
    )
    acme = sandbox_imeis(3, model="X1", catalogue=catalogue)
    assert all(i.startswith("99000000") for i in acme)
    assert {(device_facts(i, catalogue).model, device_facts(i, catalogue).firmware) for i in acme} == {("X1", "1.0")}


def test_the_readme_examples_are_what_the_sandbox_says() -> None:
    """The README's table of example IMEIs is what a person rehearsing by hand copies."""
    section = README.read_text().split("## Sandbox mode", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (.+?) \| (.+?) \| `(.+?)` \| (.+?) \| `(\d{15})(?:`, `(\d{15}))?` \|$", section, re.M)
    assert len(rows) >= 5
    for make, model, firmware, kind, *imeis in rows:
        for imei in filter(None, imeis):
            facts = device_facts(imei)
            assert (facts.make, facts.model, facts.firmware, facts.kind.value) == (
                make, model, firmware, kind.replace(" ", "_")), imei


# --- Campaigns ------------------------------------------------------------------------------------


async def test_firmware_for_another_model_fails_the_device_and_never_changes_it(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    gm01q = sandbox_imeis(2)
    bg96 = sandbox_imeis(2, model="BG96")
    telit = sandbox_imeis(1, model="ME910C1-WW")
    before = await device_info(api, gm01q + bg96 + telit)

    rows = await run_to_end(api, sandbox, valid_body(gm01q + bg96 + telit))

    assert all(rows[i] == ("UpgradeSuccess", "") for i in gm01q)
    for imei in bg96 + telit:
        facts = device_facts(imei)
        assert rows[imei] == (
            "UpgradeFailed",
            "Firmware SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657 is for "
            f"SEQUANS Communications GM01Q; the device is a {facts.make} {facts.model}",
        )
    after = await device_info(api, gm01q + bg96 + telit)
    for imei in bg96 + telit:
        assert after[imei] == before[imei]  # make, model and firmware all unchanged
    for imei in gm01q:
        assert (after[imei]["make"], after[imei]["model"], after[imei]["firmware"]) == (
            "SEQUANS Communications", "GM01Q", "SR1.2.0.0-10657")


async def test_a_device_on_another_version_of_its_model_fails_with_the_reason(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    on_02 = sandbox_imeis(2, model="BG96", firmware="BG96MAR02A08M1G")
    on_03 = sandbox_imeis(1, model="BG96", firmware="BG96MAR03A01M1G")

    rows = await run_to_end(api, sandbox, valid_body(on_02 + on_03, **BG96_FROM_02))

    assert all(rows[i] == ("UpgradeSuccess", "") for i in on_02)
    assert rows[on_03[0]] == (
        "UpgradeFailed",
        "The device runs BG96MAR03A01M1G; firmware Quectel_BG96_BG96MAR04A02M1G upgrades from BG96MAR02A08M1G",
    )
    info = await device_info(api, on_02 + on_03)
    assert [info[i]["firmware"] for i in on_02 + on_03] == ["BG96MAR04A02M1G"] * 2 + ["BG96MAR03A01M1G"]

    # Sent again, the upgraded devices are already on the target: nothing to do, success.
    again = await run_to_end(api, sandbox, valid_body(on_02, **BG96_FROM_02, startDate="2030-01-15"))
    assert all(again[i] == ("UpgradeSuccess", "") for i in on_02)
    assert {(await device_info(api, on_02))[i]["model"] for i in on_02} == {"BG96"}
