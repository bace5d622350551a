"""ThingSpace's pace in the sandbox (`SandboxTimings.thingspace()`), after its "About Campaigns"
page: on-demand campaigns start within about two hours, future ones at 00:00 UTC, devices only
inside the time windows, an unresponsive LWM2M device retried around 04:00 UTC for up to three
days, HTTP devices at a check-in inside a window. The tests move the clock by hours and days;
nothing waits."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.standins.thingspace import (
    Sandbox,
    SandboxClock,
    SandboxTimings,
    create_sandbox_app,
    device_facts,
    sandbox_imeis,
)
from tests.standins.test_sandbox import ACCOUNT, FOTA, login, valid_body

MORNING = dt.datetime(2030, 1, 15, 9, 0, tzinfo=dt.UTC)
UTC = dt.UTC


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sb = Sandbox(clock=SandboxClock.manual_at(MORNING), timings=SandboxTimings.thingspace())
    yield sb
    await sb.aclose()


@pytest.fixture
async def api(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_sandbox_app(sandbox))
    async with httpx.AsyncClient(transport=transport, base_url="https://thingspace.test") as client:
        yield client


async def schedule(api: httpx.AsyncClient, body: dict[str, Any]) -> str:
    api.headers.update(await login(api))  # hours pass between calls: a fresh token and session
    response = await api.post(f"{FOTA}/campaigns/firmware/{ACCOUNT}", json=body)
    assert response.status_code == 200, response.text
    campaign_id: str = response.json()["id"]
    return campaign_id


async def until(sandbox: Sandbox, moment: dt.datetime) -> None:
    sandbox.clock.advance((moment - sandbox.clock.now()).total_seconds())
    await sandbox.tick()


def at(hour: int, minute: int = 0, day: int = 15) -> dt.datetime:
    return dt.datetime(2030, 1, day, hour, minute, tzinfo=UTC)


def when(sandbox: Sandbox, campaign_id: str, status: str) -> dt.datetime:
    return dict((s, t) for s, t in sandbox.campaign(campaign_id).history)[status]


def attempts(sandbox: Sandbox, campaign_id: str, imei: str) -> dt.datetime:
    device = sandbox.campaign(campaign_id).devices[imei]
    assert device.recent_attempt is not None
    return dt.datetime.fromtimestamp(device.recent_attempt, UTC)


async def test_an_on_demand_campaign_starts_within_about_two_hours(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    devices = sandbox_imeis(5)
    campaign_id = await schedule(api, valid_body(devices, startDate="2030-01-15", endDate="2030-01-18",
                                                 campaignTimeWindowList=[]))
    await until(sandbox, at(10, 30))
    assert sandbox.campaign(campaign_id).status == "CampaignPreScheduled"
    await until(sandbox, at(11, 0))
    scheduled = when(sandbox, campaign_id, "CampaignScheduled")
    assert dt.timedelta(hours=1, minutes=30) <= scheduled - MORNING <= dt.timedelta(hours=2)
    await until(sandbox, at(13, 0))
    campaign = sandbox.campaign(campaign_id)
    assert campaign.status == "CampaignEnded"
    assert {d.status for d in campaign.devices.values()} == {"UpgradeSuccess"}
    # Devices were reached over the half hour after the start, not all at once.
    reached = sorted(attempts(sandbox, campaign_id, imei) for imei in devices)
    assert scheduled <= reached[0] < reached[-1] <= scheduled + dt.timedelta(minutes=30)


async def test_a_future_campaign_starts_around_midnight_utc(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    campaign_id = await schedule(api, valid_body(startDate="2030-01-17", endDate="2030-01-18",
                                                 campaignTimeWindowList=[]))
    await until(sandbox, at(23, 59, day=16))
    assert sandbox.campaign(campaign_id).status == "CampaignPreScheduled"
    await until(sandbox, at(6, day=17))
    assert when(sandbox, campaign_id, "CampaignScheduled") == at(0, day=17)
    assert sandbox.campaign(campaign_id).status == "CampaignEnded"


async def test_devices_are_reached_only_inside_the_time_windows(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    devices = sandbox_imeis(6)
    campaign_id = await schedule(api, valid_body(devices, startDate="2030-01-15", endDate="2030-01-18",
                                                 campaignTimeWindowList=[{"startTime": 18, "endTime": 22}]))
    await until(sandbox, at(17, 59))
    campaign = sandbox.campaign(campaign_id)
    assert campaign.status == "CampaignScheduled"
    assert {d.status for d in campaign.devices.values()} == {"UpgradePending"}
    await until(sandbox, at(23, 0))
    assert campaign.status == "CampaignEnded"
    for imei in devices:
        assert at(18) <= attempts(sandbox, campaign_id, imei) < at(22)


async def test_an_unresponsive_lwm2m_device_is_retried_around_4_utc_for_three_days(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    silent = next(i for i in sandbox_imeis(40, kind="will_fail")
                  if device_facts(i).failure_reason == "Device did not respond")
    fine = sandbox_imeis(1)[0]
    campaign_id = await schedule(api, valid_body([silent, fine], startDate="2030-01-15", endDate="2030-01-25",
                                                 campaignTimeWindowList=[]))
    await until(sandbox, at(13, 0))
    api.headers.update(await login(api))
    rows = {row["deviceId"]: row for row in (await api.get(
        f"{FOTA}/reports/{ACCOUNT}/campaigns/{campaign_id}/devices")).json()["deviceList"]}
    assert rows[fine]["status"] == "UpgradeSuccess"
    assert rows[silent]["status"] == "UpgradeScheduled"
    assert rows[silent]["resultReason"] == "Device did not respond"
    retry = dt.datetime.fromisoformat(rows[silent]["nextAttemptTime"])
    assert at(4, day=16) <= retry < at(5, day=16)

    for day in (16, 17):
        await until(sandbox, at(12, day=day))
        device = sandbox.campaign(campaign_id).devices[silent]
        assert device.status == "UpgradeScheduled"
        assert at(4, day=day) <= attempts(sandbox, campaign_id, silent) < at(5, day=day)
    await until(sandbox, at(12, day=18))
    device = sandbox.campaign(campaign_id).devices[silent]
    assert (device.status, device.reason) == ("UpgradeFailed", "Device did not respond")
    assert at(4, day=18) <= dt.datetime.fromtimestamp(device.updated, UTC) < at(5, day=18)
    assert sandbox.campaign(campaign_id).status == "CampaignEnded"  # days before its end date


async def test_an_http_device_upgrades_when_it_checks_in_inside_a_window(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    devices = sandbox_imeis(4, model="nRF9160")
    campaign_id = await schedule(api, valid_body(
        devices, firmwareName="Nordic_nRF9160_mfw_1.3.4_1.3.5", firmwareFrom="mfw_nrf9160_1.3.4",
        firmwareTo="mfw_nrf9160_1.3.5", protocol="HTTP", startDate="2030-01-15", endDate="2030-01-18",
        campaignTimeWindowList=[{"startTime": 2, "endTime": 6}]))
    await until(sandbox, at(12, day=16))
    campaign = sandbox.campaign(campaign_id)
    assert campaign.status == "CampaignEnded"
    for imei in devices:
        reached = attempts(sandbox, campaign_id, imei)
        assert at(2, day=16) <= reached < at(6, day=16)  # the first window after the start
        # At one of the device's own check-ins, every four hours.
        phase = device_facts(imei).pace * 4 * 3600
        off = (reached.timestamp() - phase) % (4 * 3600)
        assert min(off, 4 * 3600 - off) < 1e-3
        assert campaign.devices[imei].status == "UpgradeSuccess"
