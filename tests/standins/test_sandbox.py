"""The built-in ThingSpace sandbox: paths, shapes, rules, lifecycle, callbacks and fault knobs.

Everything runs on a manual sandbox clock that the tests move themselves; nothing waits for
real time to pass except the two client-timeout tests, which need a real socket.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import socket
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bot.secrets import Secret
from bot.standins.thingspace import (
    DEFAULT_CATALOGUE,
    FAILURE_REASONS,
    DeviceKind,
    Sandbox,
    SandboxClock,
    create_sandbox_app,
    device_facts,
    device_kind,
    luhn_check_digit,
    luhn_valid,
    sandbox_imeis,
)
from bot.thingspace import ThingSpaceAmbiguous, ThingSpaceClient, ThingSpaceRejected

ACCOUNT = "0000000000-00001"
START = dt.datetime(2030, 1, 15, 12, 0, tzinfo=dt.UTC)
TOKEN_PATH = "/api/ts/v1/oauth2/token"
LOGIN_PATH = "/api/m2m/v1/session/login"
FOTA = "/api/fota/v3"
SCHEDULE = f"{FOTA}/campaigns/firmware/{ACCOUNT}"
CALLBACK_URL = "http://receiver.test/thingspace/callbacks/s3cret-token-0123456789"

SEQUANS = {
    "firmwareName": "SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657",
    "firmwareFrom": "SR1.2.0.0-10512",
    "firmwareTo": "SR1.2.0.0-10657",
}


def valid_body(devices: list[str] | None = None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "campaignName": "fota-bot FB-1",
        **SEQUANS,
        "protocol": "LWM2M",
        "startDate": "2030-01-15",
        "endDate": "2030-01-16",
        "campaignTimeWindowList": [{"startTime": 18, "endTime": 22}],
        "deviceList": devices or sandbox_imeis(3),
        # Required by Verizon's SDK (`CampaignFirmwareUpgrade`), so by the sandbox too.
        "autoAssignLicenseFlag": False,
        "autoAddDevicesFlag": False,
    }
    body.update(changes)
    return body


# --- Fixtures and helpers -------------------------------------------------------------------------


class Receiver:
    """A callback listener that records every body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[Any] = []
        self.status = 200
        self.arrived = asyncio.Event()
        self.app = Starlette(
            routes=[Route("/thingspace/callbacks/{token}", self.receive, methods=["POST"])]
        )

    async def receive(self, request: Request) -> JSONResponse:
        self.bodies.append(await request.json())
        self.arrived.set()
        return JSONResponse({"ok": self.status == 200}, status_code=self.status)

    def payloads(self) -> list[dict[str, Any]]:
        """Every callback object, batches (JSON arrays) flattened, in arrival order."""
        flat: list[dict[str, Any]] = []
        for body in self.bodies:
            flat.extend(body if isinstance(body, list) else [body])
        return flat

    def campaign_statuses(self) -> list[str]:
        return [p["status"] for p in self.payloads() if p["type"] == "CampaignStatus"]


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
async def sandbox(receiver: Receiver) -> AsyncIterator[Sandbox]:
    sb = Sandbox(
        clock=SandboxClock.manual_at(START),
        callback_transport=httpx.ASGITransport(app=receiver.app),
    )
    yield sb
    await sb.aclose()


async def login(client: httpx.AsyncClient, key: str = "key", secret: str = "secret") -> dict[str, str]:
    token = await client.post(TOKEN_PATH, data={"grant_type": "client_credentials"}, auth=(key, secret))
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    session = await client.post(LOGIN_PATH, json={"username": "uws", "password": "pw"}, headers=bearer)
    return {**bearer, "VZ-M2M-Token": session.json()["sessionToken"]}


@pytest.fixture
async def anonymous(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_sandbox_app(sandbox))
    async with httpx.AsyncClient(transport=transport, base_url="https://thingspace.test") as client:
        yield client


@pytest.fixture
async def api(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    """A client logged in to the sandbox, as the bot's ThingSpace client would be."""
    transport = httpx.ASGITransport(app=create_sandbox_app(sandbox))
    async with httpx.AsyncClient(transport=transport, base_url="https://thingspace.test") as client:
        client.headers.update(await login(client))
        yield client


@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[str]:
    """`app` on a real uvicorn socket on 127.0.0.1, an ephemeral port; yields its base URL.

    The socket is listening before uvicorn starts, so a client can connect at once.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", ws="none", access_log=False)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def schedule(api: httpx.AsyncClient, body: dict[str, Any], account: str = ACCOUNT) -> dict[str, Any]:
    response = await api.post(f"{FOTA}/campaigns/firmware/{account}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


async def run_until(sandbox: Sandbox, done: Callable[[], bool], step: float = 1.0, limit: int = 200) -> None:
    """Move the sandbox clock by `step` and tick, until `done()`."""
    for _ in range(limit):
        if done():
            return
        sandbox.clock.advance(step)
        await sandbox.tick()
    raise AssertionError("the sandbox never got there")


async def report(api: httpx.AsyncClient, campaign_id: str) -> list[dict[str, Any]]:
    pages = await report_pages(api, campaign_id)
    return [device for page in pages for device in page["deviceList"]]


async def report_pages(api: httpx.AsyncClient, campaign_id: str) -> list[dict[str, Any]]:
    pages: list[dict[str, Any]] = []
    last_seen = "0"
    while True:
        response = await api.get(
            f"{FOTA}/reports/{ACCOUNT}/campaigns/{campaign_id}/devices",
            params={"lastSeenDeviceId": last_seen},
        )
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        if not page["hasMoreData"]:
            return pages
        last_seen = page["lastSeenDeviceId"]


def expected_outcomes(devices: list[str]) -> Counter[str]:
    """Final device statuses by the documented rule in `bot.standins.thingspace.devices`."""
    final = {
        DeviceKind.ELIGIBLE: "UpgradeSuccess",
        DeviceKind.UNLICENSED: "UpgradeSuccess",
        DeviceKind.WILL_FAIL: "UpgradeFailed",
        DeviceKind.INELIGIBLE: "RequestToFotaServerFailed",
        DeviceKind.UNKNOWN: "RequestToFotaServerFailed",
    }
    return Counter(final[device_kind(imei)] for imei in devices)


# --- Devices: the deterministic rule --------------------------------------------------------------


def test_the_reference_device_has_pinned_facts() -> None:
    # Pinned so that a change of the documented rule cannot slip through unnoticed.
    facts = device_facts("354658090353977")
    assert luhn_valid("354658090353977")
    assert facts.kind is DeviceKind.ELIGIBLE
    assert facts.mdn == "5150833861"
    # The reference page schedules its SEQUANS GM01Q firmware on this device: its TAC is GM01Q's.
    assert (facts.make, facts.model, facts.protocol, facts.firmware) == (
        "SEQUANS Communications", "GM01Q", "LWM2M", "SR1.2.0.0-10512")
    assert (facts.fota_eligible, facts.license_assigned, facts.in_account) == (True, True, True)


@pytest.mark.parametrize("kind", list(DeviceKind))
def test_sandbox_imeis_gives_valid_imeis_of_the_kind_asked(kind: DeviceKind) -> None:
    imeis = sandbox_imeis(25, kind=kind)
    assert len(set(imeis)) == 25
    assert imeis == sorted(imeis)
    assert all(luhn_valid(i) and device_kind(i) is kind for i in imeis)
    assert imeis == sandbox_imeis(25, kind=kind.value)  # deterministic, str accepted
    # One TAC holds a million serials: a later start inside it gives an independent set.
    assert not set(imeis) & set(sandbox_imeis(25, kind=kind, start=500_000))


def test_kinds_have_the_documented_shares() -> None:
    shares = Counter(device_kind(i) for i in sandbox_imeis(20_000, kind=None))
    documented = {
        DeviceKind.UNKNOWN: 0.02,
        DeviceKind.INELIGIBLE: 0.05,
        DeviceKind.UNLICENSED: 0.05,
        DeviceKind.WILL_FAIL: 0.10,
        DeviceKind.ELIGIBLE: 0.78,
    }
    for kind, share in documented.items():
        assert abs(shares[kind] / 20_000 - share) < 0.01, kind


def test_an_imei_failing_the_luhn_check_is_unknown_to_the_account() -> None:
    good = sandbox_imeis(1)[0]
    bad = good[:14] + str((int(good[14]) + 1) % 10)
    assert luhn_check_digit(good[:14]) == good[14]
    assert not luhn_valid(bad)
    assert device_kind(bad) is DeviceKind.UNKNOWN
    assert device_facts(sandbox_imeis(1, kind="will_fail")[0]).failure_reason in FAILURE_REASONS


# --- Clock ----------------------------------------------------------------------------------------


def test_manual_clock_moves_only_when_told() -> None:
    clock = SandboxClock.manual_at(START)
    assert clock.now() == START
    assert clock.advance(90) == START + dt.timedelta(seconds=90)
    assert clock.today() == dt.date(2030, 1, 15)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_real_clock_runs_at_its_speed() -> None:
    wall = [100.0]
    clock = SandboxClock.real(speed=10, start=START, monotonic=lambda: wall[0])
    wall[0] = 102.5
    assert clock.now() == START + dt.timedelta(seconds=25)
    clock.advance(60)  # a demo can also jump ahead, e.g. to a start date
    wall[0] = 103.0
    assert clock.now() == START + dt.timedelta(seconds=90)


# --- Auth ---------------------------------------------------------------------------------------


def basic(text: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(text.encode()).decode()}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(":secret"),
        basic("key:"),
        basic("keysecret"),
        {"Authorization": "Basic not-base64!!"},
        {"Authorization": "Bearer abc"},
    ],
    ids=["none", "empty key", "empty secret", "no colon", "malformed", "wrong scheme"],
)
async def test_token_refuses_bad_client_credentials(
    anonymous: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await anonymous.post(TOKEN_PATH, data={"grant_type": "client_credentials"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_description"]


async def test_token_is_issued_and_reused_within_its_hour(
    anonymous: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    first = await anonymous.post(TOKEN_PATH, data={"grant_type": "client_credentials"}, auth=("k", "s"))
    assert first.status_code == 200
    assert first.json()["token_type"] == "bearer"
    assert first.json()["expires_in"] == 3600
    sandbox.clock.advance(600)
    again = await anonymous.post(TOKEN_PATH, data={"grant_type": "client_credentials"}, auth=("k", "s"))
    assert again.json()["access_token"] == first.json()["access_token"]
    assert again.json()["expires_in"] == 3000
    sandbox.clock.advance(3000)
    fresh = await anonymous.post(TOKEN_PATH, data={"grant_type": "client_credentials"}, auth=("k", "s"))
    assert fresh.json()["access_token"] != first.json()["access_token"]
    wrong_grant = await anonymous.post(TOKEN_PATH, data={"grant_type": "password"}, auth=("k", "s"))
    assert wrong_grant.status_code == 400


async def test_login_needs_a_bearer_and_non_empty_credentials(anonymous: httpx.AsyncClient) -> None:
    token = await anonymous.post(TOKEN_PATH, data={"grant_type": "client_credentials"}, auth=("k", "s"))
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    good = {"username": "uws", "password": "pw"}
    assert (await anonymous.post(LOGIN_PATH, json=good)).status_code == 401
    assert (await anonymous.post(LOGIN_PATH, json=good, headers={"Authorization": "Bearer nope"})).status_code == 401
    for body in ({"username": "", "password": "pw"}, {"username": "uws", "password": ""}, {}):
        refused = await anonymous.post(LOGIN_PATH, json=body, headers=bearer)
        assert refused.status_code == 401
        assert refused.json()["errorCode"] == "UNAUTHORIZED"
    ok = await anonymous.post(LOGIN_PATH, json=good, headers=bearer)
    assert ok.status_code == 200 and ok.json()["sessionToken"]


async def test_five_failed_logins_lock_a_known_user() -> None:
    sandbox = Sandbox(clock=SandboxClock.manual_at(START), users={"uws": "right"})
    transport = httpx.ASGITransport(app=create_sandbox_app(sandbox))
    async with httpx.AsyncClient(transport=transport, base_url="https://ts.test") as client:
        token = await client.post(TOKEN_PATH, data={"grant_type": "client_credentials"}, auth=("k", "s"))
        bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
        for _ in range(5):
            wrong = await client.post(LOGIN_PATH, json={"username": "uws", "password": "no"}, headers=bearer)
            assert wrong.status_code == 401
        locked = await client.post(LOGIN_PATH, json={"username": "uws", "password": "right"}, headers=bearer)
        assert locked.status_code == 401
        assert "locked" in locked.json()["errorMessage"]


@pytest.mark.parametrize(
    "spoil",
    [
        lambda h: h.pop("Authorization"),
        lambda h: h.pop("VZ-M2M-Token"),
        lambda h: h.update({"Authorization": "Bearer not-a-token"}),
        lambda h: h.update({"VZ-M2M-Token": "not-a-session"}),
        lambda h: h.update({"Authorization": h["Authorization"].replace("Bearer", "Basic")}),
    ],
    ids=["no bearer", "no session", "wrong bearer", "wrong session", "not bearer"],
)
async def test_fota_calls_need_a_current_token_and_session(
    anonymous: httpx.AsyncClient, spoil: Callable[[dict[str, str]], object]
) -> None:
    headers = await login(anonymous)
    spoil(headers)
    response = await anonymous.get(f"{FOTA}/firmware/{ACCOUNT}", params={"protocol": "LWM2M"}, headers=headers)
    assert response.status_code == 401
    assert response.json()["errorCode"] == "UNAUTHORIZED"
    assert response.json()["errorMessage"]


async def test_expired_token_and_session_give_401_until_renewed(
    api: httpx.AsyncClient, sandbox: Sandbox
) -> None:
    firmware = f"{FOTA}/firmware/{ACCOUNT}"
    assert (await api.get(firmware)).status_code == 200
    sandbox.expire_token()
    assert (await api.get(firmware)).status_code == 401
    api.headers.update(await login(api))
    assert (await api.get(firmware)).status_code == 200
    sandbox.expire_session()
    assert (await api.get(firmware)).status_code == 401
    api.headers.update(await login(api))
    # ThingSpace drops a session after 20 minutes idle.
    sandbox.clock.advance(1201)
    assert (await api.get(firmware)).status_code == 401


@pytest.mark.parametrize("account", ["acme", "12a-3", "-", " 0642233522-00001"])
async def test_an_account_not_of_digits_and_dashes_is_refused(api: httpx.AsyncClient, account: str) -> None:
    response = await api.get(f"{FOTA}/subscriptions/{account}")
    assert response.status_code == 400
    assert response.json()["errorCode"] == "INVALID_PARAMETER"
    assert "Invalid account name" in response.json()["errorMessage"]


# --- Schedule rules -------------------------------------------------------------------------------


def without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.pop(key)


def setting(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.update({key: value})


def window(start: Any, end: Any) -> Callable[[dict[str, Any]], None]:
    return setting("campaignTimeWindowList", [{"startTime": 2, "endTime": 6}, {"startTime": start, "endTime": end}])


RULES = [
    *[(f"missing {k}", without(k), f"{k} is required") for k in
      ("firmwareName", "firmwareFrom", "firmwareTo", "protocol", "startDate", "endDate", "deviceList")],
    *[(f"missing {k}", without(k), f"{k} is required: true or false") for k in
      ("autoAssignLicenseFlag", "autoAddDevicesFlag")],
    ("autoAddDevicesFlag null", setting("autoAddDevicesFlag", None), "autoAddDevicesFlag is required: true or false"),
    ("autoAssignLicenseFlag text", setting("autoAssignLicenseFlag", "false"), "autoAssignLicenseFlag must be true or false"),
    ("protocol unknown", setting("protocol", "SMS"), "Invalid protocol 'SMS': expected one of LWM2M, OMA, HTTP"),
    ("protocol lower case", setting("protocol", "lwm2m"), "Invalid protocol 'lwm2m': expected one of LWM2M, OMA, HTTP"),
    ("startDate format", setting("startDate", "15/01/2030"), "Invalid startDate '15/01/2030': expected a date as YYYY-MM-DD"),
    ("endDate not a date", setting("endDate", "2030-02-30"), "Invalid endDate '2030-02-30': expected a date as YYYY-MM-DD"),
    ("startDate past", setting("startDate", "2030-01-14"), "startDate 2030-01-14 is in the past (today is 2030-01-15 UTC)"),
    ("endDate before start", setting("endDate", "2030-01-14"), "endDate 2030-01-14 is before startDate 2030-01-15"),
    ("startTime 24", window(24, 24), "campaignTimeWindowList[1].startTime must be an hour from 0 to 23, not 24"),
    ("startTime -1", window(-1, 6), "campaignTimeWindowList[1].startTime must be an hour from 0 to 23, not -1"),
    ("startTime text", window("18", 22), "campaignTimeWindowList[1].startTime must be an hour from 0 to 23, not 18"),
    ("endTime 0", window(0, 0), "campaignTimeWindowList[1].endTime must be an hour from 1 to 24, not 0"),
    ("endTime 25", window(20, 25), "campaignTimeWindowList[1].endTime must be an hour from 1 to 24, not 25"),
    ("window 3 hours", window(18, 21), "campaignTimeWindowList[1].endTime 21 must be at least 4 hours after startTime 18"),
    ("window backwards", window(22, 2), "campaignTimeWindowList[1].endTime 2 must be at least 4 hours after startTime 22"),
    ("deviceList empty", setting("deviceList", []), "deviceList must contain at least one device"),
    ("device 14 digits", setting("deviceList", ["35465809035397"]), "Invalid device id format: 35465809035397"),
    ("device letters", setting("deviceList", ["35465809035397a"]), "Invalid device id format: 35465809035397a"),
    ("device number", setting("deviceList", [354658090353977]), "Invalid device id format: 354658090353977"),
    ("firmwareName unknown", setting("firmwareName", "Acme_X1_1.0_2.0"),
     "Firmware 'Acme_X1_1.0_2.0' is not available for protocol LWM2M"),
    ("firmware of another protocol", setting("protocol", "OMA"),
     f"Firmware '{SEQUANS['firmwareName']}' is not available for protocol OMA"),
    ("firmwareFrom mismatch", setting("firmwareFrom", "SR1.2.0.0-10000"),
     f"firmwareFrom 'SR1.2.0.0-10000' does not match firmware '{SEQUANS['firmwareName']}' "
     "(it upgrades from SR1.2.0.0-10512)"),
    ("firmwareTo mismatch", setting("firmwareTo", "SR1.2.0.0-99999"),
     f"firmwareTo 'SR1.2.0.0-99999' does not match firmware '{SEQUANS['firmwareName']}' "
     "(it upgrades to SR1.2.0.0-10657)"),
]


@pytest.mark.parametrize(("spoil", "message"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
async def test_each_schedule_rule_is_a_400(
    api: httpx.AsyncClient, sandbox: Sandbox, spoil: Callable[[dict[str, Any]], None], message: str
) -> None:
    body = valid_body()
    spoil(body)
    response = await api.post(SCHEDULE, json=body)
    assert response.status_code == 400
    assert response.json() == {"errorCode": "INVALID_PARAMETER", "errorMessage": message}
    assert sandbox.campaigns == []
    assert [(r.status_code, r.error_code) for r in sandbox.schedule_requests] == [(400, "INVALID_PARAMETER")]


async def test_a_body_that_is_not_json_is_a_400(api: httpx.AsyncClient) -> None:
    response = await api.post(SCHEDULE, content=b"{nope", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["errorMessage"] == "Request body is not valid JSON"


async def test_the_reference_example_schedules_with_the_reference_answer(anonymous: httpx.AsyncClient) -> None:
    # The page's example, verbatim, on the page's own date and account.
    request = {
        "campaignName": "Smart FOTA - test 4",
        "firmwareName": "SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657",
        "firmwareFrom": "SR1.2.0.0-10512",
        "firmwareTo": "SR1.2.0.0-10657",
        "protocol": "LWM2M",
        "startDate": "2021-09-29",
        "endDate": "2021-10-01",
        "campaignTimeWindowList": [{"startTime": 18, "endTime": 22}],
        "deviceList": ["354658090353977"],
    }
    # The page's example predates the two flags Verizon's SDK requires: verbatim, it is refused.
    required_flags = {"autoAssignLicenseFlag": False, "autoAddDevicesFlag": False}
    expected = {
        "accountName": "0642233522-00001",
        "campaignName": "Smart FOTA - test 4",
        "firmwareName": "SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657",
        "protocol": "LWM2M",
        "firmwareFrom": "SR1.2.0.0-10512",
        "firmwareTo": "SR1.2.0.0-10657",
        "make": "SEQUANS Communications",
        "model": "GM01Q",
        "status": "CampaignRequestPending",
        "startDate": "2021-09-29",
        "endDate": "2021-10-01",
        "campaignTimeWindowList": [{"startTime": 18, "endTime": 22}],
    }
    sandbox = Sandbox(clock=SandboxClock.manual_at(dt.datetime(2021, 9, 29, 8, tzinfo=dt.UTC)))
    transport = httpx.ASGITransport(app=create_sandbox_app(sandbox))
    async with httpx.AsyncClient(transport=transport, base_url="https://ts.test") as client:
        client.headers.update(await login(client))
        verbatim = await client.post(f"{FOTA}/campaigns/firmware/0642233522-00001", json=request)
        assert verbatim.status_code == 400
        assert verbatim.json()["errorMessage"] == "autoAssignLicenseFlag is required: true or false"
        answer = await schedule(client, {**request, **required_flags}, account="0642233522-00001")
        info = await client.get(f"{FOTA}/campaigns/0642233522-00001/{answer['id']}")
    campaign_id = answer.pop("id")
    assert uuid.UUID(campaign_id)
    assert answer == expected
    assert list(answer) == list(expected)  # same fields, in the page's order
    assert info.json() == {
        "id": campaign_id, **expected, "autoAssignLicenseFlag": False, "autoAddDevicesFlag": False
    }
    # The verbatim example was refused, then the example with the flags accepted.
    assert [r.campaign_id for r in sandbox.schedule_requests] == [None, campaign_id]


async def test_an_ambiguous_firmware_name_needs_from_and_to(api: httpx.AsyncClient) -> None:
    listed = (await api.get(f"{FOTA}/firmware/{ACCOUNT}", params={"protocol": "LWM2M"})).json()
    names = Counter(entry["firmwareName"] for entry in listed)
    ambiguous = [name for name, count in names.items() if count > 1]
    assert ambiguous == ["Quectel_BG96_BG96MAR04A02M1G"]
    for entry in (e for e in listed if e["firmwareName"] == ambiguous[0]):
        body = valid_body(**{k: entry[k] for k in ("firmwareName", "firmwareFrom", "firmwareTo")})
        answer = await schedule(api, body)
        assert (answer["make"], answer["model"], answer["firmwareFrom"]) == ("Quectel", "BG96", entry["firmwareFrom"])
    refused = await api.post(SCHEDULE, json=valid_body(firmwareName=ambiguous[0], firmwareFrom="X", firmwareTo="Y"))
    assert refused.json()["errorMessage"].endswith("(it upgrades from BG96MAR02A08M1G, BG96MAR03A01M1G)")


# --- Lifecycle ------------------------------------------------------------------------------------


async def test_a_campaign_runs_to_its_end_with_paged_report_and_callbacks(
    api: httpx.AsyncClient, sandbox: Sandbox, receiver: Receiver
) -> None:
    devices = sandbox_imeis(2500, kind=None)
    assert (await api.post(f"{FOTA}/callbacks/{ACCOUNT}", json={"url": CALLBACK_URL})).status_code == 200
    answer = await schedule(api, valid_body(devices))
    campaign_id = answer["id"]

    seen: list[str] = [answer["status"]]

    async def status() -> str:
        return (await api.get(f"{FOTA}/campaigns/{ACCOUNT}/{campaign_id}")).json()["status"]

    while seen[-1] != "CampaignEnded":
        sandbox.clock.advance(1)
        await sandbox.tick()
        if (now := await status()) != seen[-1]:
            seen.append(now)
        assert len(seen) < 10 and sandbox.clock.now() < START + dt.timedelta(minutes=1)
    assert seen == [
        "CampaignRequestPending",
        "CampaignRequestQueued",
        "CampaignPreScheduled",
        "CampaignScheduled",
        "CampaignEnded",
    ]

    pages = await report_pages(api, campaign_id)
    assert [len(p["deviceList"]) for p in pages] == [1000, 1000, 500]
    assert [p["hasMoreData"] for p in pages] == [True, True, False]
    assert {p["totalDevice"] for p in pages} == {2500} and {p["maxPageSize"] for p in pages} == {1000}
    listed = [d["deviceId"] for p in pages for d in p["deviceList"]]
    assert listed == devices  # every device once, ascending
    assert pages[0]["lastSeenDeviceId"] == devices[999]

    rows = [d for p in pages for d in p["deviceList"]]
    outcome = Counter(d["status"] for d in rows)
    assert outcome == expected_outcomes(devices)
    assert outcome["UpgradeFailed"] == sum(device_kind(i) is DeviceKind.WILL_FAIL for i in devices)
    assert 0.08 < outcome["UpgradeFailed"] / 2500 < 0.12  # the documented ~10 %
    for row in rows:
        assert row.get("resultReason", "") == {
            DeviceKind.WILL_FAIL: device_facts(row["deviceId"]).failure_reason,
            DeviceKind.INELIGIBLE: "Device is not FOTA eligible",
            DeviceKind.UNKNOWN: "Device not found in account",
        }.get(device_kind(row["deviceId"]), "")
        assert row["updatedTime"].endswith("Z") and "nextAttemptTime" not in row  # omitted, never ""

    # Callbacks: the campaign's changes in order, each device's changes, and the end last.
    payloads = receiver.payloads()
    assert receiver.campaign_statuses() == seen[1:]
    assert payloads[-1]["status"] == "CampaignEnded"
    assert payloads[-1] == {
        "accountName": ACCOUNT, "campaignId": campaign_id, "status": "CampaignEnded",
        "type": "CampaignStatus", "timestamp": payloads[-1]["timestamp"],
    }
    device_payloads = [p for p in payloads if p["type"] == "DeviceStatus"]
    final_by_device = {p["deviceId"]: p["status"] for p in device_payloads}
    assert Counter(final_by_device.values()) == outcome
    direct_failures = outcome["RequestToFotaServerFailed"]
    assert len(device_payloads) == 2 * (2500 - direct_failures) + direct_failures
    # Busy ticks came as arrays of at most 500; every delivery was accepted.
    batches = [b for b in receiver.bodies if isinstance(b, list)]
    assert batches and max(len(b) for b in batches) <= 500
    assert all(d.ok for d in sandbox.deliveries)


async def test_quiet_ticks_send_single_device_callbacks(
    api: httpx.AsyncClient, sandbox: Sandbox, receiver: Receiver
) -> None:
    await api.post(f"{FOTA}/callbacks/{ACCOUNT}", json={"url": CALLBACK_URL})
    devices = sandbox_imeis(20)
    await schedule(api, valid_body(devices))
    await run_until(sandbox, lambda: "CampaignEnded" in receiver.campaign_statuses(), step=0.5)
    assert all(isinstance(b, dict) for b in receiver.bodies)
    first = next(p for p in receiver.payloads() if p["type"] == "DeviceStatus")
    # No reason yet: the field is left out, never sent as "".
    assert set(first) == {"accountName", "campaignId", "deviceId", "status", "type", "timestamp"}
    assert first["status"] == "UpgradeScheduled"


async def test_a_future_dated_campaign_waits_for_its_start_date(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    answer = await schedule(api, valid_body(startDate="2030-01-17", endDate="2030-01-18"))
    campaign = sandbox.campaign(answer["id"])
    sandbox.clock.advance(3600)
    await sandbox.tick()
    assert campaign.status == "CampaignPreScheduled"
    # 2030-01-17 00:00 UTC is 36 hours after START.
    sandbox.clock.advance(35 * 3600 - 1)
    await sandbox.tick()
    assert campaign.status == "CampaignPreScheduled"
    sandbox.clock.advance(1)
    await sandbox.tick()
    assert campaign.status == "CampaignScheduled"
    assert campaign.history[-1][1] == dt.datetime(2030, 1, 17, tzinfo=dt.UTC)


async def test_devices_unfinished_at_the_end_date_fail_and_the_campaign_ends() -> None:
    # Accepted 10 s before the end date runs out: Scheduled at 23:59:56, devices begin over
    # the next 10 s and take 1–4 s each, so only the quickest finish before midnight.
    sandbox = Sandbox(clock=SandboxClock.manual_at(dt.datetime(2030, 1, 15, 23, 59, 50, tzinfo=dt.UTC)))
    transport = httpx.ASGITransport(app=create_sandbox_app(sandbox))
    async with httpx.AsyncClient(transport=transport, base_url="https://ts.test") as client:
        client.headers.update(await login(client))
        devices = sandbox_imeis(40)
        answer = await schedule(client, valid_body(devices, endDate="2030-01-15"))
        sandbox.clock.advance(60)
        await sandbox.tick()
        rows = {r["deviceId"]: (r["status"], r.get("resultReason", "")) for r in await report(client, answer["id"])}
    campaign = sandbox.campaign(answer["id"])
    assert campaign.status == "CampaignEnded"
    assert campaign.history[-1][1] == dt.datetime(2030, 1, 16, tzinfo=dt.UTC)
    for imei in devices:
        facts = device_facts(imei)
        finish = 6 + facts.spread * 10 + (0.25 + 0.75 * facts.pace) * 4
        expected = ("UpgradeSuccess", "") if finish <= 10 else (
            "UpgradeFailed", "Campaign end date reached before the device was upgraded")
        assert rows[imei] == expected
    assert {status for status, _ in rows.values()} == {"UpgradeSuccess", "UpgradeFailed"}


async def test_run_forever_ticks_on_its_own(sandbox: Sandbox, api: httpx.AsyncClient, receiver: Receiver) -> None:
    await api.post(f"{FOTA}/callbacks/{ACCOUNT}", json={"url": CALLBACK_URL})
    await schedule(api, valid_body())
    ticker = asyncio.create_task(sandbox.run_forever(interval=0))
    try:
        sandbox.clock.advance(2)
        await asyncio.wait_for(receiver.arrived.wait(), timeout=5)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
    assert receiver.campaign_statuses() == ["CampaignRequestQueued"]


# --- Callbacks over a real socket -----------------------------------------------------------------


async def test_callbacks_reach_a_real_listener_over_http() -> None:
    receiver = Receiver()
    sandbox = Sandbox(clock=SandboxClock.manual_at(START))  # default transport: the network
    transport = httpx.ASGITransport(app=create_sandbox_app(sandbox))
    async with serve(receiver.app) as base, httpx.AsyncClient(
        transport=transport, base_url="https://ts.test"
    ) as client:
        client.headers.update(await login(client))
        url = f"{base}/thingspace/callbacks/abcdefghijklmnop"
        assert (await client.post(f"{FOTA}/callbacks/{ACCOUNT}", json={"url": url})).status_code == 200
        devices = sandbox_imeis(4) + sandbox_imeis(1, kind="will_fail")
        answer = await schedule(client, valid_body(devices))
        await run_until(sandbox, lambda: sandbox.campaign(answer["id"]).status == "CampaignEnded")
        await sandbox.aclose()
    payloads = receiver.payloads()
    assert payloads[-1]["type"] == "CampaignStatus" and payloads[-1]["status"] == "CampaignEnded"
    assert receiver.campaign_statuses() == [
        "CampaignRequestQueued", "CampaignPreScheduled", "CampaignScheduled", "CampaignEnded"
    ]
    finals = {p["deviceId"]: (p["status"], p.get("reason", "")) for p in payloads if p["type"] == "DeviceStatus"}
    assert finals[devices[-1]] == ("UpgradeFailed", device_facts(devices[-1]).failure_reason)
    assert [finals[d][0] for d in devices[:4]] == ["UpgradeSuccess"] * 4
    assert len(sandbox.deliveries) == len(receiver.bodies) and all(d.ok for d in sandbox.deliveries)


# --- Cancel ---------------------------------------------------------------------------------------


async def test_cancel_before_start_succeeds_with_callbacks(
    api: httpx.AsyncClient, sandbox: Sandbox, receiver: Receiver
) -> None:
    await api.post(f"{FOTA}/callbacks/{ACCOUNT}", json={"url": CALLBACK_URL})
    devices = sandbox_imeis(3)
    campaign_id = (await schedule(api, valid_body(devices)))["id"]
    sandbox.clock.advance(2)
    await sandbox.tick()
    cancelled = await api.delete(f"{FOTA}/campaigns/{ACCOUNT}/{campaign_id}")
    assert cancelled.status_code == 200 and cancelled.json() == {"success": True}
    assert (await api.get(f"{FOTA}/campaigns/{ACCOUNT}/{campaign_id}")).json()["status"] == "CampaignCancelled"
    await sandbox.tick()
    sandbox.clock.advance(120)
    await sandbox.tick()  # nothing planned for a cancelled campaign happens any more
    assert receiver.campaign_statuses() == ["CampaignRequestQueued", "CampaignCancelled"]
    device_statuses = {p["deviceId"]: p["status"] for p in receiver.payloads() if p["type"] == "DeviceStatus"}
    assert device_statuses == dict.fromkeys(devices, "CampaignCancelled")
    assert {r["status"] for r in await report(api, campaign_id)} == {"CampaignCancelled"}
    # A retried DELETE is harmless.
    assert (await api.delete(f"{FOTA}/campaigns/{ACCOUNT}/{campaign_id}")).json() == {"success": True}


async def test_cancel_after_start_is_refused(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    campaign_id = (await schedule(api, valid_body()))["id"]
    sandbox.clock.advance(6)  # Scheduled: devices begin upgrading
    refused = await api.delete(f"{FOTA}/campaigns/{ACCOUNT}/{campaign_id}")
    assert refused.status_code == 400
    assert refused.json() == {
        "errorCode": "CAMPAIGN_ALREADY_STARTED",
        "errorMessage": f"Campaign {campaign_id} has already started (status CampaignScheduled); "
        "a campaign can only be cancelled before it starts",
    }
    missing = await api.delete(f"{FOTA}/campaigns/{ACCOUNT}/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["errorCode"] == "CAMPAIGN_NOT_FOUND"
    other_account = await api.get(f"{FOTA}/campaigns/0000000000-00002/{campaign_id}")
    assert other_account.status_code == 404


# --- Campaigns by status --------------------------------------------------------------------------


async def test_campaigns_by_status_finds_a_campaign_by_name(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    sandbox.model.campaign_page_size = 2
    ids = {}
    for ref in ("FB-1", "FB-2", "FB-3", "FB-4"):
        ids[ref] = (await schedule(api, valid_body(campaignName=f"fota-bot {ref}")))["id"]
    sandbox.clock.advance(2)  # all four queued
    await api.delete(f"{FOTA}/campaigns/{ACCOUNT}/{ids['FB-4']}")

    found: list[dict[str, Any]] = []
    last_seen = "0"
    pages = 0
    while True:
        page = (await api.get(
            f"{FOTA}/reports/{ACCOUNT}/firmware/campaigns",
            params={"campaignStatus": "CampaignRequestQueued", "lastSeenCampaignId": last_seen},
        )).json()
        pages += 1
        found.extend(page["campaignList"])
        if not page["hasMoreData"]:
            break
        last_seen = page["lastSeenCampaignId"]
    assert pages == 2
    assert sorted(c["campaignName"] for c in found) == ["fota-bot FB-1", "fota-bot FB-2", "fota-bot FB-3"]
    match = [c for c in found if "FB-2" in c["campaignName"]]
    assert [c["id"] for c in match] == [ids["FB-2"]]
    # A campaign in this report is Verizon's SDK `V3CampaignMetaInfo`: no licence/device flags.
    assert match[0]["status"] == "CampaignRequestQueued" and "autoAddDevicesFlag" not in match[0]
    cancelled = (await api.get(
        f"{FOTA}/reports/{ACCOUNT}/firmware/campaigns", params={"campaignStatus": "CampaignCancelled"}
    )).json()
    assert [c["id"] for c in cancelled["campaignList"]] == [ids["FB-4"]]
    assert cancelled["hasMoreData"] is False


# --- Firmware, devices, subscription, listeners -------------------------------------------------


async def test_firmware_list_by_protocol(api: httpx.AsyncClient) -> None:
    lwm2m = (await api.get(f"{FOTA}/firmware/{ACCOUNT}", params={"protocol": "LWM2M"})).json()
    assert lwm2m[0] == {
        **SEQUANS, "launchDate": "2021-09-01", "releaseNote": "LTE-M power saving fixes",
        "model": "GM01Q", "make": "SEQUANS Communications", "protocol": "LWM2M",
    }
    assert len(lwm2m) == sum(e.protocol == "LWM2M" for e in DEFAULT_CATALOGUE)
    oma = (await api.get(f"{FOTA}/firmware/{ACCOUNT}", params={"protocol": "OMA"})).json()
    assert [e["make"] for e in oma] == ["Sierra Wireless"]
    bad = await api.get(f"{FOTA}/firmware/{ACCOUNT}", params={"protocol": "SMS"})
    assert bad.status_code == 400 and bad.json()["errorCode"] == "INVALID_PARAMETER"


async def test_device_info_leaves_out_devices_not_in_the_account(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    eligible, ineligible, unlicensed, unknown = (
        sandbox_imeis(1, kind=k)[0] for k in ("eligible", "ineligible", "unlicensed", "unknown")
    )
    response = await api.post(f"{FOTA}/devices/{ACCOUNT}", json={"deviceList": [eligible, ineligible, unlicensed, unknown]})
    assert response.status_code == 200
    info = response.json()
    assert info["accountName"] == ACCOUNT and info["deviceCount"] == 3
    by_id = {d["deviceId"]: d for d in info["deviceList"]}
    assert unknown not in by_id
    facts = device_facts(eligible)
    assert by_id[eligible] == {
        "deviceId": eligible, "mdn": facts.mdn, "make": facts.make, "model": facts.model,
        "firmware": facts.firmware, "fotaEligible": True, "licenseAssigned": True,
        "status": "Active", "protocol": facts.protocol,
    }
    assert by_id[ineligible]["fotaEligible"] is False
    assert by_id[unlicensed]["licenseAssigned"] is False
    bad = await api.post(f"{FOTA}/devices/{ACCOUNT}", json={"deviceList": ["123"]})
    assert bad.json() == {"errorCode": "INVALID_PARAMETER", "errorMessage": "Invalid device id format: 123"}

    # After a successful sandbox upgrade the device reports the new firmware.
    await schedule(api, valid_body([eligible]))
    sandbox.clock.advance(60)
    after = (await api.post(f"{FOTA}/devices/{ACCOUNT}", json={"deviceList": [eligible]})).json()
    assert (after["deviceList"][0]["model"], after["deviceList"][0]["firmware"]) == ("GM01Q", "SR1.2.0.0-10657")


async def test_subscription_and_mrc_only_licences(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    subscription = (await api.get(f"{FOTA}/subscriptions/{ACCOUNT}")).json()
    assert subscription["accountName"] == ACCOUNT
    assert subscription["purchaseType"] == "TS-HFOTA-EVNT,TS-HFOTA-MRC"
    assert set(subscription) == {"accountName", "purchaseType", "licenseCount", "licenseUsedCount", "updateTime"}

    sandbox.mrc_only = True
    assert (await api.get(f"{FOTA}/subscriptions/{ACCOUNT}")).json()["purchaseType"] == "TS-HFOTA-MRC"
    devices = sandbox_imeis(2) + sandbox_imeis(1, kind="unlicensed")
    refused = await api.post(SCHEDULE, json=valid_body(devices))
    assert refused.status_code == 400
    assert refused.json()["errorCode"] == "LICENSE_NOT_ASSIGNED"
    assert devices[-1] in refused.json()["errorMessage"]
    await schedule(api, valid_body(devices, autoAssignLicenseFlag=True))
    assert (await api.get(f"{FOTA}/subscriptions/{ACCOUNT}")).json()["licenseUsedCount"] == 3


async def test_one_callback_listener_per_account(api: httpx.AsyncClient) -> None:
    path = f"{FOTA}/callbacks/{ACCOUNT}"
    assert (await api.get(path)).status_code == 404
    # PUT updates a listener; with none registered there is nothing to update.
    assert (await api.put(path, json={"url": "https://a.example/cb"})).status_code == 404
    assert (await api.post(path, json={"url": "https://a.example/cb"})).json() == {"url": "https://a.example/cb"}
    assert (await api.put(path, json={"url": "https://b.example/cb"})).json() == {"url": "https://b.example/cb"}
    assert (await api.get(path)).json() == {"url": "https://b.example/cb"}
    # POST again replaces the one listener, as ThingSpace's pages say.
    assert (await api.post(path, json={"url": "https://c.example/cb"})).status_code == 200
    assert (await api.get(path)).json() == {"url": "https://c.example/cb"}
    assert (await api.get(f"{FOTA}/callbacks/0000000000-00002")).status_code == 404
    assert (await api.post(path, json={"url": "ftp://nope"})).status_code == 400
    assert (await api.delete(path)).json() == {"success": True}
    assert (await api.delete(path)).status_code == 404


async def test_sandbox_control_paths(anonymous: httpx.AsyncClient, sandbox: Sandbox) -> None:
    status = (await anonymous.get("/sandbox")).json()
    assert status["sandbox"] is True and status["defaultAccount"] == ACCOUNT and status["clock"] == "manual"
    moved = await anonymous.post("/sandbox/advance", json={"seconds": 30})
    assert moved.json()["now"] == "2030-01-15T12:00:30.000Z"
    assert (await anonymous.post("/sandbox/advance", json={"seconds": -1})).status_code == 400


# --- Fault knobs ----------------------------------------------------------------------------------


async def test_fail_next_answers_errors_then_recovers(api: httpx.AsyncClient, sandbox: Sandbox) -> None:
    sandbox.fail_next(f"{FOTA}/campaigns/firmware/", 429, count=2, retry_after=7)
    sandbox.fail_next(f"{FOTA}/firmware/", 503, method="GET")
    for _ in range(2):
        limited = await api.post(SCHEDULE, json=valid_body())
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "7"
        assert limited.json()["errorCode"] == "TOO_MANY_REQUESTS"
    # Other paths are untouched by the first rule, and failed requests created nothing.
    assert (await api.get(f"{FOTA}/subscriptions/{ACCOUNT}")).status_code == 200
    assert sandbox.schedule_requests == []
    assert (await api.post(SCHEDULE, json=valid_body())).status_code == 200
    assert len(sandbox.campaigns) == 1
    assert (await api.get(f"{FOTA}/firmware/{ACCOUNT}")).status_code == 503
    assert (await api.get(f"{FOTA}/firmware/{ACCOUNT}")).status_code == 200
    assert sandbox.request_log[-1] == ("GET", f"{FOTA}/firmware/{ACCOUNT}")


async def test_delay_next_lets_a_client_time_out_after_the_campaign_was_created() -> None:
    sandbox = Sandbox(clock=SandboxClock.manual_at(START))
    async with serve(create_sandbox_app(sandbox)) as base, httpx.AsyncClient(base_url=base) as client:
        client.headers.update(await login(client))
        sandbox.delay_next(f"{FOTA}/campaigns/firmware/", 0.3)
        with pytest.raises(httpx.ReadTimeout):
            await client.post(SCHEDULE, json=valid_body(), timeout=0.05)
        # The answer was lost, not the request: exactly one campaign exists.
        assert [r.status_code for r in sandbox.schedule_requests] == [200]
        assert len(sandbox.campaigns) == 1
        name = (await client.get(
            f"{FOTA}/reports/{ACCOUNT}/firmware/campaigns", params={"campaignStatus": "CampaignRequestPending"}
        )).json()["campaignList"][0]["campaignName"]
        assert name == "fota-bot FB-1"


async def test_duplicates_and_shuffle_are_seeded(api: httpx.AsyncClient, sandbox: Sandbox, receiver: Receiver) -> None:
    await api.post(f"{FOTA}/callbacks/{ACCOUNT}", json={"url": CALLBACK_URL})
    sandbox.duplicate_rate = 1.0
    sandbox.shuffle = True
    sandbox.batch_threshold = None
    devices = sandbox_imeis(30)
    await schedule(api, valid_body(devices))
    sandbox.clock.advance(60)
    events = await sandbox.tick()
    in_order = [e.payload() for e in events]
    delivered = receiver.payloads()
    assert len(delivered) == 2 * len(in_order)
    assert Counter(map(str, delivered)) == Counter(map(str, in_order * 2))
    assert delivered[::2] != in_order  # shuffled


async def test_a_listener_answering_errors_never_stops_the_sandbox(
    api: httpx.AsyncClient, sandbox: Sandbox, receiver: Receiver
) -> None:
    receiver.status = 500
    await api.post(f"{FOTA}/callbacks/{ACCOUNT}", json={"url": CALLBACK_URL})
    campaign_id = (await schedule(api, valid_body()))["id"]
    await run_until(sandbox, lambda: sandbox.campaign(campaign_id).status == "CampaignEnded")
    assert {d.status_code for d in sandbox.deliveries} == {500}
    assert receiver.campaign_statuses()[-1] == "CampaignEnded"


async def test_an_unreachable_listener_is_logged_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nobody listens there: connection refused
    sandbox = Sandbox(clock=SandboxClock.manual_at(START))
    transport = httpx.ASGITransport(app=create_sandbox_app(sandbox))
    async with httpx.AsyncClient(transport=transport, base_url="https://ts.test") as client:
        client.headers.update(await login(client))
        url = f"http://127.0.0.1:{port}/thingspace/callbacks/secret-token-value"
        await client.post(f"{FOTA}/callbacks/{ACCOUNT}", json={"url": url})
        campaign_id = (await schedule(client, valid_body()))["id"]
        await run_until(sandbox, lambda: sandbox.campaign(campaign_id).status == "CampaignEnded")
    await sandbox.aclose()
    assert sandbox.deliveries and all(d.status_code is None for d in sandbox.deliveries)
    assert "ConnectError" in (sandbox.deliveries[-1].error or "")
    assert "callback to http://127.0.0.1" in caplog.text
    assert "secret-token-value" not in caplog.text  # the callback token never reaches the log


# --- Through the project's ThingSpace client ------------------------------------------------------


class Sleeps:
    """The client's backoff sleep, recorded instead of waited."""

    def __init__(self) -> None:
        self.waited: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waited.append(seconds)


def thingspace_client(base_url: str, **options: Any) -> ThingSpaceClient:
    return ThingSpaceClient(
        base_url=base_url,
        client_id=Secret("key"),
        client_secret=Secret("secret"),
        username=Secret("uws"),
        password=Secret("pw"),
        **options,
    )


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(sandbox: Sandbox, sleeps: Sleeps) -> AsyncIterator[ThingSpaceClient]:
    transport = httpx.ASGITransport(app=create_sandbox_app(sandbox))
    async with thingspace_client("https://thingspace.test", transport=transport, sleep=sleeps) as c:
        yield c


async def test_client_follows_a_campaign_to_its_end(
    client: ThingSpaceClient, sandbox: Sandbox, receiver: Receiver
) -> None:
    await client.register_callback(ACCOUNT, CALLBACK_URL)
    assert await client.get_callback(ACCOUNT) == {"url": CALLBACK_URL}
    devices = sandbox_imeis(2500, kind=None)
    answer = await client.schedule_campaign(ACCOUNT, valid_body(devices))
    assert answer["status"] == "CampaignRequestPending"
    await run_until(sandbox, lambda: "CampaignEnded" in receiver.campaign_statuses())
    assert (await client.get_campaign(ACCOUNT, answer["id"]))["status"] == "CampaignEnded"
    before = len(sandbox.request_log)
    rows = [row async for row in client.campaign_devices(ACCOUNT, answer["id"])]
    assert [row["deviceId"] for row in rows] == devices
    assert len(sandbox.request_log) - before == 3  # three pages
    assert Counter(row["status"] for row in rows) == expected_outcomes(devices)
    assert sandbox.auth.logins == 1


async def test_client_relays_a_400_word_for_word(client: ThingSpaceClient) -> None:
    with pytest.raises(ThingSpaceRejected) as refused:
        await client.schedule_campaign(ACCOUNT, valid_body(startDate="2030-01-01"))
    assert refused.value.error_code == "INVALID_PARAMETER"
    assert refused.value.error_message == "startDate 2030-01-01 is in the past (today is 2030-01-15 UTC)"


async def test_client_logs_in_again_once_after_the_session_expired(
    client: ThingSpaceClient, sandbox: Sandbox
) -> None:
    assert await client.list_firmware(ACCOUNT)
    sandbox.expire_session()
    assert (await client.subscription(ACCOUNT))["accountName"] == ACCOUNT
    assert sandbox.auth.logins == 2


async def test_client_retries_429_and_creates_one_campaign(
    client: ThingSpaceClient, sandbox: Sandbox, sleeps: Sleeps
) -> None:
    sandbox.fail_next(f"{FOTA}/campaigns/firmware/", 429, count=2, retry_after=3)
    await client.schedule_campaign(ACCOUNT, valid_body())
    assert sleeps.waited == [3, 3]
    assert len(sandbox.campaigns) == 1 and len(sandbox.schedule_requests) == 1


async def test_client_cancel_and_find_by_name(client: ThingSpaceClient, sandbox: Sandbox) -> None:
    early = await client.schedule_campaign(ACCOUNT, valid_body(campaignName="fota-bot FB-7"))
    late = await client.schedule_campaign(ACCOUNT, valid_body(campaignName="fota-bot FB-8"))
    assert await client.cancel_campaign(ACCOUNT, early["id"]) == {"success": True}
    sandbox.clock.advance(6)
    with pytest.raises(ThingSpaceRejected) as refused:
        await client.cancel_campaign(ACCOUNT, late["id"])
    assert refused.value.error_code == "CAMPAIGN_ALREADY_STARTED"
    found = await client.find_campaign_by_name(ACCOUNT, "fota-bot FB-8")
    assert found is not None and found["id"] == late["id"] and found["status"] == "CampaignScheduled"
    assert (await client.find_campaign_by_name(ACCOUNT, "fota-bot FB-7") or {})["status"] == "CampaignCancelled"


async def test_client_timeout_on_schedule_is_ambiguous_and_the_campaign_is_found() -> None:
    sandbox = Sandbox(clock=SandboxClock.manual_at(START))
    async with serve(create_sandbox_app(sandbox)) as base, thingspace_client(base, timeout=0.05) as client:
        await client.check()  # log in before the delay is armed
        sandbox.delay_next(f"{FOTA}/campaigns/firmware/", 0.3)
        with pytest.raises(ThingSpaceAmbiguous):
            await client.schedule_campaign(ACCOUNT, valid_body(campaignName="fota-bot FB-9"))
        found = await client.find_campaign_by_name(ACCOUNT, "fota-bot FB-9")
    assert found is not None and [c.id for c in sandbox.campaigns] == [found["id"]]
