"""The sandbox's stricter contract: protocol spellings, date and device changes before the start,
licences and the account's device list, each with ThingSpace's rules and error shape."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from bot.standins.thingspace import (
    Sandbox,
    SandboxClock,
    create_sandbox_app,
    device_facts,
    sandbox_imeis,
)
from tests.standins.test_sandbox import ACCOUNT, FOTA, SCHEDULE, login, report, schedule, valid_body

START = dt.datetime(2030, 1, 15, 12, 0, tzinfo=dt.UTC)


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


def refused(response: httpx.Response, message: str, code: str = "INVALID_PARAMETER") -> bool:
    assert response.status_code == 400, response.text
    assert response.json() == {"errorCode": code, "errorMessage": message}
    return True


# --- Protocols ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "protocols"),
    [
        ("LWM2M", {"LWM2M"}),
        ("OMA", {"OMA"}),
        ("OMD-DM", {"OMA"}),  # the SDK's firmware-list enum
        ("OMDADM", {"OMA"}),  # the SDK's devices enum
        ("HTTP", {"HTTP"}),
        ("all", {"LWM2M", "OMA", "HTTP"}),  # the SDK's firmware-list enum: everything
    ],
)
async def test_the_firmware_list_takes_every_spelling_the_sdk_documents(
    api: httpx.AsyncClient, spelling: str, protocols: set[str]
) -> None:
    answer = await api.get(f"{FOTA}/firmware/{ACCOUNT}", params={"protocol": spelling})
    assert answer.status_code == 200
    assert {entry["protocol"] for entry in answer.json()} == protocols


async def test_an_unknown_protocol_spelling_is_a_400_naming_the_accepted_ones(api: httpx.AsyncClient) -> None:
    assert refused(
        await api.get(f"{FOTA}/firmware/{ACCOUNT}", params={"protocol": "lwm2m"}),
        "Invalid protocol 'lwm2m': expected one of LWM2M, OMA, OMA-DM, OMD-DM, OMDADM, HTTP, all",
    )
    # A schedule takes the three its model's text names, not the list calls' aliases.
    assert refused(
        await api.post(SCHEDULE, json=valid_body(protocol="OMDADM")),
        "Invalid protocol 'OMDADM': expected one of LWM2M, OMA, HTTP",
    )


# --- Dates ----------------------------------------------------------------------------------------


async def test_dates_change_before_the_start_and_the_campaign_waits_for_the_new_start(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    answer = await schedule(api, valid_body())
    path = f"{FOTA}/campaigns/firmware/{ACCOUNT}/{answer['id']}/dates"
    body = {"startDate": "2030-01-17", "endDate": "2030-01-20",
            "campaignTimeWindowList": [{"startTime": 2, "endTime": 6}]}
    changed = await api.put(path, json=body)
    assert changed.status_code == 200, changed.text
    assert {k: changed.json()[k] for k in body} == body
    assert changed.json()["status"] == "CampaignRequestPending"

    sandbox.clock.advance(3600)
    await sandbox.tick()
    campaign = sandbox.campaign(answer["id"])
    # Queued and pre-scheduled on the original plan, then waiting for the new start date.
    assert campaign.status == "CampaignPreScheduled"
    assert [status for status, _ in campaign.history].count("CampaignRequestQueued") == 1
    sandbox.clock.advance(2 * 86400)
    await sandbox.tick()
    assert campaign.status == "CampaignEnded"
    scheduled_at = dict((s, t) for s, t in campaign.history)["CampaignScheduled"]
    assert scheduled_at == dt.datetime(2030, 1, 17, tzinfo=dt.UTC)

    api.headers.update(await login(api))  # two days on, the token and session have expired
    assert refused(
        await api.put(path, json={**body, "startDate": "2030-01-18"}),
        f"Campaign {answer['id']} has already started (status CampaignEnded); "
        "its dates can be changed only before it starts",
        code="CAMPAIGN_ALREADY_STARTED",
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"endDate": "2030-01-20"}, "startDate is required"),
        ({"startDate": "2030-01-16"}, "endDate is required"),
        ({"startDate": "2030-01-14", "endDate": "2030-01-20"},
         "startDate 2030-01-14 is in the past (today is 2030-01-15 UTC)"),
        ({"startDate": "2030-01-16", "endDate": "2030-01-15"}, "endDate 2030-01-15 is before startDate 2030-01-16"),
        ({"startDate": "2030-01-16", "endDate": "2030-01-20", "campaignTimeWindowList": [{"startTime": 20, "endTime": 22}]},
         "campaignTimeWindowList[0].endTime 22 must be at least 4 hours after startTime 20"),
    ],
)
async def test_a_bad_date_change_is_a_400_and_changes_nothing(
    api: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    answer = await schedule(api, valid_body())
    path = f"{FOTA}/campaigns/firmware/{ACCOUNT}/{answer['id']}/dates"
    assert refused(await api.put(path, json=body), message)
    info = (await api.get(f"{FOTA}/campaigns/{ACCOUNT}/{answer['id']}")).json()
    assert (info["startDate"], info["endDate"]) == ("2030-01-15", "2030-01-16")


# --- Devices of a campaign ------------------------------------------------------------------------


async def test_devices_are_added_and_removed_before_the_start_only(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    first, second, third, fourth = sandbox_imeis(4)
    answer = await schedule(api, valid_body([first, second, third]))
    path = f"{FOTA}/campaigns/firmware/{ACCOUNT}/{answer['id']}"

    removed = await api.put(path, json={"Type": "remove", "deviceList": [second, fourth]})
    assert removed.json() == {
        "accountName": ACCOUNT,
        "campaignId": answer["id"],
        "deviceList": [
            {"deviceId": second, "status": "Success"},
            {"deviceId": fourth, "status": "Failure", "Reason": "Device is not in the campaign"},
        ],
    }
    appended = await api.put(path, json={"Type": "append", "deviceList": [fourth, first]})
    assert [(d["deviceId"], d["status"]) for d in appended.json()["deviceList"]] == [
        (fourth, "Success"), (first, "Failure")]
    assert refused(
        await api.put(path, json={"Type": "remove", "deviceList": [first, third, fourth]}),
        f"Removing every device would leave campaign {answer['id']} empty; cancel it instead",
    )
    assert refused(await api.put(path, json={"type": "remove", "deviceList": [first]}),
                   "Type is required: append or remove, not None")

    sandbox.clock.advance(120)
    await sandbox.tick()
    rows = {row["deviceId"]: row["status"] for row in await report(api, answer["id"])}
    assert rows == {first: "UpgradeSuccess", third: "UpgradeSuccess", fourth: "UpgradeSuccess"}
    assert refused(
        await api.put(path, json={"Type": "append", "deviceList": [second]}),
        f"Campaign {answer['id']} has already started (status CampaignEnded); "
        "devices can be added or removed only before it starts",
        code="CAMPAIGN_ALREADY_STARTED",
    )


# --- Licences and the account's devices -----------------------------------------------------------


async def test_licences_are_assigned_listed_and_removed(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    sandbox.mrc_only = True
    sandbox.model.license_count = 2
    unlicensed = sandbox_imeis(3, kind="unlicensed")
    unknown = sandbox_imeis(1, kind="unknown")[0]
    assert (await api.get(f"{FOTA}/licenses/{ACCOUNT}")).json() == {
        "accountName": ACCOUNT, "totalLicenses": 2, "assignedLicenses": 0, "hasMoreData": False,
        "maxPageSize": 1000, "deviceList": [],
    }
    assigned = (await api.post(f"{FOTA}/licenses/{ACCOUNT}/assign",
                               json={"deviceList": [*unlicensed, unknown]})).json()
    assert assigned == {
        "accountName": ACCOUNT, "licCount": 2, "licUsedCount": 2,
        "deviceList": [
            {"deviceId": unlicensed[0], "status": "Success"},
            {"deviceId": unlicensed[1], "status": "Success"},
            {"deviceId": unlicensed[2], "status": "Failure", "resultReason": "No unused license left in the account"},
            {"deviceId": unknown, "status": "Failure", "resultReason": "Device not found in account"},
        ],
    }
    listed = (await api.get(f"{FOTA}/licenses/{ACCOUNT}/index/0")).json()
    assert [d["deviceId"] for d in listed["deviceList"]] == unlicensed[:2]
    assert all(d["assignmentTime"] == "2030-01-15T12:00:00.000Z" for d in listed["deviceList"])

    # Licensed now, the two schedule on an MRC-only account; the third is still refused.
    await schedule(api, valid_body(unlicensed[:2]))
    assert refused(
        await api.post(SCHEDULE, json=valid_body(unlicensed[2:])),
        "1 device(s) have no license assigned; this account has only an MRC subscription, so assign "
        f"licenses first or set autoAssignLicenseFlag: {unlicensed[2]}",
        code="LICENSE_NOT_ASSIGNED",
    )
    removed = (await api.post(f"{FOTA}/licenses/{ACCOUNT}/remove",
                              json={"deviceList": [unlicensed[0], unlicensed[2]]})).json()
    assert [(d["deviceId"], d["status"]) for d in removed["deviceList"]] == [
        (unlicensed[0], "Success"), (unlicensed[2], "Failure")]
    assert removed["licUsedCount"] == 1
    info = (await api.post(f"{FOTA}/devices/{ACCOUNT}", json={"deviceList": unlicensed[:2]})).json()
    assert [d["licenseAssigned"] for d in info["deviceList"]] == [False, True]
    assert refused(await api.post(f"{FOTA}/licenses/{ACCOUNT}/assign", json={"deviceList": ["12"]}),
                   "Invalid device id format: 12")


async def test_the_account_device_list_pages_the_devices_the_account_has_used(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    sandbox.model.report_page_size = 2
    gm01q = sandbox_imeis(3)
    wp7702 = sandbox_imeis(1, model="WP7702")
    await schedule(api, valid_body(gm01q))
    await api.post(f"{FOTA}/devices/{ACCOUNT}", json={"deviceList": [*wp7702, sandbox_imeis(1, kind="unknown")[0]]})

    first = (await api.get(f"{FOTA}/devices/{ACCOUNT}", params={"lastSeenDeviceId": "0"})).json()
    assert first["hasMoreData"] is True and first["lastSeenDeviceId"] == gm01q[1]
    second = (await api.get(f"{FOTA}/devices/{ACCOUNT}", params={"lastSeenDeviceId": gm01q[1]})).json()
    assert second["hasMoreData"] is False
    assert [d["deviceId"] for d in first["deviceList"] + second["deviceList"]] == gm01q
    facts = device_facts(gm01q[0])
    assert first["deviceList"][0] == {
        "deviceId": gm01q[0], "mdn": facts.mdn, "make": facts.make, "model": facts.model,
        "firmware": "SR1.2.0.0-10512", "fotaEligible": True, "licenseAssigned": True,
        "status": "Active", "protocol": "LWM2M", "softwareList": [],
    }
    oma = (await api.get(f"{FOTA}/devices/{ACCOUNT}", params={"protocol": "OMDADM"})).json()
    assert [d["deviceId"] for d in oma["deviceList"]] == wp7702
