"""The client's requests checked against Verizon's own SDK (`sdksio-verizon-apis-sdk`).

The SDK is generated from Verizon's API definitions and is the oracle here, in two ways:

* Every call the client makes is made by the SDK too, with the same arguments: the SDK's
  controller builds its request (an `HttpCallBack` catches it before anything is sent) and the
  two must agree on method, URL, query, Accept and Content-Type, credentials and body. The SDK
  builds its bodies from its own model classes, so names and required fields are the SDK's.
* Every body the client builds is read into the SDK's model and serialised back by the SDK's
  serialiser, which refuses a body without a required field (ValueError) and drops any field
  the model does not know (the comparison then fails).

Query values the SDK types as enums are checked against the SDK's enum classes. Where the bot
deliberately sends a value the SDK does not list, the alias is in ALIASES below with its reason
(and in docs/thingspace.md); a test fails once the SDK lists it, so the list cannot go stale.
Nothing here copies the SDK's field lists or enums.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from verizon.api_helper import APIHelper
from verizon.http.auth.thingspace_oauth import ThingspaceOauthCredentials
from verizon.http.auth.vz_m2m_token import VZM2mTokenCredentials
from verizon.http.http_call_back import HttpCallBack
from verizon.models.campaign_firmware_upgrade import CampaignFirmwareUpgrade
from verizon.models.campaign_status_enum import CampaignStatusEnum
from verizon.models.device_imei import DeviceIMEI
from verizon.models.firmware_protocol_enum import FirmwareProtocolEnum
from verizon.models.fota_v3_callback_registration_request import (
    FotaV3CallbackRegistrationRequest,
)
from verizon.models.log_in_request import LogInRequest
from verizon.models.oauth_token import OauthToken
from verizon.models.v3_add_or_remove_device_request import V3AddOrRemoveDeviceRequest
from verizon.models.v3_change_campaign_dates_request import V3ChangeCampaignDatesRequest
from verizon.models.v3_time_window import V3TimeWindow
from verizon.verizon_client import VerizonClient

from bot.secrets import Secret
from bot.thingspace import ThingSpaceClient
from bot.thingspace.client import CAMPAIGN_STATUSES
from storage.model import PROTOCOLS
from storage.store import Store
from tests.storage.test_store import make_campaign

# The SDK's production root; the client is pointed at the same one, so whole URLs compare.
ROOT = "https://thingspace.verizon.com"
ACCOUNT = "0642233522-00001"
CAMPAIGN_ID = "f858b8c4-2153-11ec-8c44-aeb16d1aa652"
IMEIS = ["354658090353977", "354658090353985"]
CLIENT_ID, CLIENT_SECRET = "oauth-key", "oauth-secret"
USERNAME, PASSWORD = "uws-user", "uws-password"
TOKEN, SESSION = "access-token-1", "m2m-session-1"
CALLBACK_URL = "https://bot.example.com/thingspace/callbacks/cb-token"

# Values the bot sends where the SDK's enum has no such member: (query key, value) -> why.
ALIASES: dict[tuple[str, str], str] = {
    ("campaignStatus", "CampaignPreScheduled"): (
        "a status ThingSpace's campaigns pass through (the SDK's own docs answer with it); "
        "missing from the SDK's CampaignStatusEnum. A 400 for it is taken as 'not searchable'."
    ),
    ("protocol", "OMA"): (
        "the schedule model's text says LWM2M, OMA and HTTP; the firmware-list enum says "
        "LWM2M, OMD-DM, all. The bot asks for the firmware list of the protocol it schedules."
    ),
    ("protocol", "HTTP"): "as OMA: the schedule model lists HTTP, the firmware-list enum does not.",
}


def enum_values(enum: type) -> set[str]:
    return {v for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, str)}


def as_sdk_sends(model: type, body: dict[str, Any]) -> dict[str, Any]:
    """`body` read into the SDK's model and serialised back by the SDK's serialiser."""
    serialised = APIHelper.json_serialize(model.from_dictionary(body))
    result: dict[str, Any] = json.loads(serialised)
    return result


def assert_conforms(model: type, body: dict[str, Any]) -> None:
    assert as_sdk_sends(model, body) == body


# --- one request, as either side sends it ------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    method: str
    url: str  # scheme, host and path
    query: list[tuple[str, str]]
    headers: dict[str, str]  # the ones both sides must agree on, names lower-cased
    body: Any  # parsed JSON, form fields as a sorted list, or None

    @property
    def path(self) -> str:
        return urlsplit(self.url).path


COMPARED_HEADERS = ("accept", "content-type", "authorization", "vz-m2m-token")


def _sent(method: str, url: str, headers: dict[str, str], body: Any) -> Sent:
    parts = urlsplit(url)
    lowered = {k.lower(): v for k, v in headers.items()}
    kept = {k: lowered[k] for k in COMPARED_HEADERS if k in lowered}
    if "content-type" in kept:
        kept["content-type"] = kept["content-type"].split(";")[0].strip()
    return Sent(
        method,
        f"{parts.scheme}://{parts.netloc}{parts.path}",
        sorted(parse_qsl(parts.query)),
        kept,
        body,
    )


def from_httpx(request: httpx.Request) -> Sent:
    content_type = request.headers.get("content-type", "")
    body: Any = None
    if request.content:
        if content_type.startswith("application/json"):
            body = json.loads(request.content)
        else:
            body = sorted(parse_qsl(request.content.decode()))
    return _sent(request.method, str(request.url), dict(request.headers), body)


class _Caught(Exception):
    """Raised from the SDK's before-request hook: nothing leaves the process."""


class _Catch(HttpCallBack):
    def __init__(self) -> None:
        self.request: Any = None

    def on_before_request(self, request: Any) -> None:
        self.request = request
        raise _Caught

    def on_after_response(self, response: Any) -> None:  # pragma: no cover - never sent
        raise AssertionError("the SDK sent a request")


def sdk_sends(call: Callable[[VerizonClient], object]) -> Sent:
    """The request the SDK builds for `call`, caught before it is sent."""
    catch = _Catch()
    sdk = VerizonClient(
        http_call_back=catch,
        thingspace_oauth_credentials=ThingspaceOauthCredentials(
            CLIENT_ID,
            CLIENT_SECRET,
            oauth_token=OauthToken(
                access_token=TOKEN, token_type="bearer", expires_in=3600,
                expiry=int(time.time()) + 3600,
            ),
        ),
        vz_m2m_token_credentials=VZM2mTokenCredentials(SESSION),
    )  # fmt: skip
    try:
        call(sdk)
    except _Caught:
        pass
    request = catch.request
    assert request is not None, "the SDK built no request"
    body: Any = request.parameters
    if isinstance(body, str):
        body = json.loads(body)
    elif isinstance(body, list | dict):
        body = sorted(dict(body).items())
    return _sent(request.http_method, request.query_url, dict(request.headers), body)


# --- the client, recorded --------------------------------------------------------------------


FotaAnswer = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Answers the logins with TOKEN and SESSION and every FOTA call with `fota`."""

    def __init__(self, fota: FotaAnswer) -> None:
        self.fota = fota
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/api/ts/v1/oauth2/token":
            return httpx.Response(
                200, json={"access_token": TOKEN, "token_type": "bearer", "expires_in": 3600}
            )
        if request.url.path == "/api/m2m/v1/session/login":
            return httpx.Response(200, json={"sessionToken": SESSION})
        return self.fota(request)

    @property
    def fota_requests(self) -> list[Sent]:
        return [from_httpx(r) for r in self.requests if r.url.path.startswith("/api/fota/v3/")]


async def recorded(call: Callable[[ThingSpaceClient], Awaitable[object]], fota: FotaAnswer) -> Recorder:
    recorder = Recorder(fota)
    async with ThingSpaceClient(
        base_url=ROOT,
        client_id=Secret(CLIENT_ID),
        client_secret=Secret(CLIENT_SECRET),
        username=Secret(USERNAME),
        password=Secret(PASSWORD),
        transport=httpx.MockTransport(recorder),
    ) as client:
        await call(client)
    return recorder


def answer(body: Any, status: int = 200) -> FotaAnswer:
    return lambda request: httpx.Response(status, json=body)


async def drain(pages: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in pages]


# --- the schedule body ------------------------------------------------------------------------


def test_the_schedule_body_is_what_the_sdk_would_send(store: Store) -> None:
    campaign = make_campaign(store)
    body = campaign.schedule_body(store.device_ids(campaign.id))
    assert_conforms(CampaignFirmwareUpgrade, body)


def test_the_schedule_body_never_lets_thingspace_add_devices(store: Store) -> None:
    campaign = make_campaign(store)
    body = campaign.schedule_body(store.device_ids(campaign.id))
    assert body["autoAddDevicesFlag"] is False
    # Licence assignment is off unless the request asked for it.
    assert body["autoAssignLicenseFlag"] is False
    licensed = dataclasses.replace(campaign, licence_auto=True)
    body = licensed.schedule_body(store.device_ids(campaign.id))
    assert body["autoAssignLicenseFlag"] is True
    assert body["autoAddDevicesFlag"] is False
    assert_conforms(CampaignFirmwareUpgrade, body)


def test_a_schedule_body_without_a_required_flag_is_refused_by_the_sdk(store: Store) -> None:
    campaign = make_campaign(store)
    body = campaign.schedule_body(store.device_ids(campaign.id))
    for flag in ("autoAddDevicesFlag", "autoAssignLicenseFlag", "deviceList", "firmwareTo"):
        dropped = {k: v for k, v in body.items() if k != flag}
        try:
            as_sdk_sends(CampaignFirmwareUpgrade, dropped)
        except ValueError as exc:
            assert "can not be None" in str(exc)
        else:
            raise AssertionError(f"the SDK accepted a schedule body without {flag}")


def test_the_schedule_body_is_what_the_sdk_sends_for_the_same_campaign(store: Store) -> None:
    campaign = make_campaign(store)
    devices = store.device_ids(campaign.id)
    built = CampaignFirmwareUpgrade(
        campaign_name=campaign.thingspace_name,
        firmware_name=campaign.firmware_name,
        firmware_from=campaign.firmware_from,
        firmware_to=campaign.firmware_to,
        protocol=campaign.protocol,
        start_date=campaign.start_date,
        end_date=campaign.end_date,
        campaign_time_window_list=[
            V3TimeWindow(start_time=w.start_hour, end_time=w.end_hour) for w in campaign.windows
        ],
        device_list=devices,
        auto_assign_license_flag=False,
        auto_add_devices_flag=False,
    )
    assert campaign.schedule_body(devices) == json.loads(APIHelper.json_serialize(built))


async def test_the_schedule_post_is_the_request_the_sdk_builds(store: Store) -> None:
    campaign = dataclasses.replace(make_campaign(store), licence_auto=True)
    body = campaign.schedule_body(store.device_ids(campaign.id))
    recorder = await recorded(
        lambda c: c.schedule_campaign(ACCOUNT, body), answer({"id": CAMPAIGN_ID, **CAMPAIGN})
    )
    [ours] = recorder.fota_requests
    assert ours == sdk_sends(
        lambda v: v.campaigns_v3.schedule_campaign_firmware_upgrade(
            ACCOUNT, CampaignFirmwareUpgrade.from_dictionary(body)
        )
    )
    assert ours.body["autoAssignLicenseFlag"] is True
    assert ours.body["autoAddDevicesFlag"] is False


# --- every call, the client's request against the SDK's ----------------------------------------


@dataclass(frozen=True)
class Case:
    ours: Callable[[ThingSpaceClient], Awaitable[object]]
    sdk: tuple[Callable[[VerizonClient], object], ...]  # one per FOTA request, in order
    fota: FotaAnswer


def listener(registered: str | None, *, put: int = 200) -> FotaAnswer:
    """The account's callback listener as the SDK models it: GET {url} or 404; POST/PUT {url}."""

    def fota(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            if registered is None:
                return httpx.Response(404, json={"errorCode": "NOT_FOUND", "errorMessage": "none"})
            return httpx.Response(200, json={"url": registered})
        if request.method == "PUT" and put != 200:
            return httpx.Response(put)
        return httpx.Response(200, json={"url": CALLBACK_URL})

    return fota


def two_pages(cursor_key: str, cursor: str, list_key: str) -> FotaAnswer:
    def fota(request: httpx.Request) -> httpx.Response:
        if request.url.params.get(cursor_key, "0") in ("", "0"):
            return httpx.Response(
                200, json={"hasMoreData": True, cursor_key: cursor, list_key: [{"id": cursor}]}
            )
        return httpx.Response(200, json={"hasMoreData": False, list_key: []})

    return fota


CAMPAIGN = {
    "id": CAMPAIGN_ID, "accountName": ACCOUNT, "campaignName": "fota-bot FB-12",
    "firmwareName": "SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657",
    "firmwareFrom": "SR1.2.0.0-10512", "firmwareTo": "SR1.2.0.0-10657", "protocol": "LWM2M",
    "make": "SEQUANS Communications", "model": "GM01Q", "startDate": "2026-12-01",
    "endDate": "2026-12-04", "status": "CampaignRequestPending",
    "autoAssignLicenseFlag": False, "autoAddDevicesFlag": False,
}
OTHER_URL = "https://old.example.com/thingspace/callbacks/other"
reports = "software_management_reports_v3"

CASES: dict[str, Case] = {
    "campaign": Case(
        lambda c: c.get_campaign(ACCOUNT, CAMPAIGN_ID),
        (lambda v: v.campaigns_v3.get_campaign_information(ACCOUNT, CAMPAIGN_ID),),
        answer(CAMPAIGN),
    ),
    "cancel": Case(
        lambda c: c.cancel_campaign(ACCOUNT, CAMPAIGN_ID),
        (lambda v: v.campaigns_v3.cancel_campaign(ACCOUNT, CAMPAIGN_ID),),
        answer({"success": True}),
    ),
    "device report, both pages": Case(
        lambda c: drain(c.campaign_devices(ACCOUNT, CAMPAIGN_ID)),
        (
            lambda v: v.software_management_reports_v3.get_campaign_device_status(
                ACCOUNT, CAMPAIGN_ID, "0"
            ),
            lambda v: v.software_management_reports_v3.get_campaign_device_status(
                ACCOUNT, CAMPAIGN_ID, IMEIS[0]
            ),
        ),
        two_pages("lastSeenDeviceId", IMEIS[0], "deviceList"),
    ),
    **{
        f"campaigns by status {status}, both pages": Case(
            (lambda s: lambda c: drain(c.campaigns_by_status(ACCOUNT, s)))(status),
            (
                (lambda s: lambda v: v.software_management_reports_v3.get_campaign_history_by_status(
                    ACCOUNT, s, None))(status),
                (lambda s: lambda v: v.software_management_reports_v3.get_campaign_history_by_status(
                    ACCOUNT, s, "c-1"))(status),
            ),
            two_pages("lastSeenCampaignId", "c-1", "campaignList"),
        )
        for status in CAMPAIGN_STATUSES
    },
    **{
        f"firmware list {protocol}": Case(
            (lambda p: lambda c: c.list_firmware(ACCOUNT, p))(protocol),
            ((lambda p: lambda v: v.firmware_v3.list_available_firmware(ACCOUNT, p))(protocol),),
            answer([]),
        )
        for protocol in PROTOCOLS
    },
    "device facts": Case(
        lambda c: c.device_info(ACCOUNT, IMEIS),
        (lambda v: v.account_devices.list_account_devices_information(
            ACCOUNT, DeviceIMEI(device_list=IMEIS)),),
        answer({"accountName": ACCOUNT, "deviceCount": 0, "deviceList": []}),
    ),
    "subscription": Case(
        lambda c: c.subscription(ACCOUNT),
        (lambda v: v.software_management_subscriptions_v3.get_account_subscription_status(ACCOUNT),),
        answer({"accountName": ACCOUNT, "purchaseType": "TS-HFOTA-EVNT,", "licenseCount": 10,
                "licenseUsedCount": 2}),
    ),
    "listener read": Case(
        lambda c: c.get_callback(ACCOUNT),
        (lambda v: v.software_management_callbacks_v3.list_registered_callbacks(ACCOUNT),),
        listener(CALLBACK_URL),
    ),
    "listener already registered": Case(
        lambda c: c.register_callback(ACCOUNT, CALLBACK_URL),
        (lambda v: v.software_management_callbacks_v3.list_registered_callbacks(ACCOUNT),),
        listener(CALLBACK_URL),
    ),
    "listener created": Case(
        lambda c: c.register_callback(ACCOUNT, CALLBACK_URL),
        (
            lambda v: v.software_management_callbacks_v3.list_registered_callbacks(ACCOUNT),
            lambda v: v.software_management_callbacks_v3.register_callback(
                ACCOUNT, FotaV3CallbackRegistrationRequest(url=CALLBACK_URL)),
        ),
        listener(None),
    ),
    "listener updated": Case(
        lambda c: c.register_callback(ACCOUNT, CALLBACK_URL),
        (
            lambda v: v.software_management_callbacks_v3.list_registered_callbacks(ACCOUNT),
            lambda v: v.software_management_callbacks_v3.update_callback(
                ACCOUNT, FotaV3CallbackRegistrationRequest(url=CALLBACK_URL)),
        ),
        listener(OTHER_URL),
    ),
    "listener replaced after a refused PUT": Case(
        lambda c: c.register_callback(ACCOUNT, CALLBACK_URL),
        (
            lambda v: v.software_management_callbacks_v3.list_registered_callbacks(ACCOUNT),
            lambda v: v.software_management_callbacks_v3.update_callback(
                ACCOUNT, FotaV3CallbackRegistrationRequest(url=CALLBACK_URL)),
            lambda v: v.software_management_callbacks_v3.register_callback(
                ACCOUNT, FotaV3CallbackRegistrationRequest(url=CALLBACK_URL)),
        ),
        listener(OTHER_URL, put=405),
    ),
    "listener removed": Case(
        lambda c: c.delete_callback(ACCOUNT),
        (lambda v: v.software_management_callbacks_v3.deregister_callback(ACCOUNT),),
        answer({"success": True}),
    ),
    "dates change": Case(
        lambda c: c.change_campaign_dates(
            ACCOUNT, CAMPAIGN_ID, start_date=dt.date(2026, 12, 2), end_date=dt.date(2026, 12, 5),
            windows=[(18, 22), (2, 6)],
        ),
        (lambda v: v.campaigns_v3.update_campaign_dates(
            ACCOUNT, CAMPAIGN_ID,
            V3ChangeCampaignDatesRequest(
                start_date=dt.date(2026, 12, 2), end_date=dt.date(2026, 12, 5),
                campaign_time_window_list=[V3TimeWindow(18, 22), V3TimeWindow(2, 6)],
            ),
        ),),
        answer(CAMPAIGN),
    ),
    "device removal": Case(
        lambda c: c.remove_devices(ACCOUNT, CAMPAIGN_ID, IMEIS),
        (lambda v: v.campaigns_v3.update_campaign_firmware_devices(
            ACCOUNT, CAMPAIGN_ID, V3AddOrRemoveDeviceRequest(mtype="remove", device_list=IMEIS)),),
        answer({"accountName": ACCOUNT, "campaignId": CAMPAIGN_ID,
                "deviceList": [{"deviceId": i, "status": "Success"} for i in IMEIS]}),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_each_call_is_the_request_the_sdk_builds(case: Case) -> None:
    recorder = await recorded(case.ours, case.fota)
    ours = recorder.fota_requests
    theirs = [sdk_sends(call) for call in case.sdk]
    assert len(ours) == len(theirs)
    for mine, sdk in zip(ours, theirs, strict=True):
        assert mine == sdk


async def test_the_logins_are_the_requests_the_sdk_builds() -> None:
    recorder = await recorded(lambda c: c.check(), answer({}))
    token, login = (from_httpx(r) for r in recorder.requests)
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    assert token == sdk_sends(
        lambda v: v.oauth_authorization.request_token_thingspace_oauth(f"Basic {basic}")
    )
    assert login == sdk_sends(
        lambda v: v.session_management.start_connectivity_management_session(
            LogInRequest(username=USERNAME, password=PASSWORD)
        )
    )


# --- bodies through the SDK's serialiser, query values through its enums ------------------------


BODY_MODELS: dict[str, type] = {
    "device facts": DeviceIMEI,
    "listener created": FotaV3CallbackRegistrationRequest,
    "listener updated": FotaV3CallbackRegistrationRequest,
    "dates change": V3ChangeCampaignDatesRequest,
    "device removal": V3AddOrRemoveDeviceRequest,
}


@pytest.mark.parametrize("name", list(BODY_MODELS))
async def test_each_body_survives_the_sdks_own_serialiser(name: str) -> None:
    recorder = await recorded(CASES[name].ours, CASES[name].fota)
    [body] = [sent.body for sent in recorder.fota_requests if sent.body is not None]
    assert_conforms(BODY_MODELS[name], body)


ENUMS: dict[str, type] = {
    "campaignStatus": CampaignStatusEnum,
    "protocol": FirmwareProtocolEnum,
}


async def test_every_query_value_is_in_the_sdks_enum_or_a_listed_alias() -> None:
    sent: list[tuple[str, str]] = []
    for case in CASES.values():
        recorder = await recorded(case.ours, case.fota)
        sent += [pair for request in recorder.fota_requests for pair in request.query]
    checked = [(key, value) for key, value in sent if key in ENUMS]
    assert {key for key, _ in checked} == set(ENUMS)
    for key, value in checked:
        assert value in enum_values(ENUMS[key]) or (key, value) in ALIASES, (key, value)


def test_every_alias_is_still_missing_from_the_sdk() -> None:
    # Once the SDK lists a value, its alias (and its paragraph in docs/thingspace.md) goes.
    for key, value in ALIASES:
        assert value not in enum_values(ENUMS[key]), (key, value)


def test_every_alias_is_explained_in_the_contract_notes() -> None:
    notes = (Path(__file__).parents[3] / "docs" / "thingspace.md").read_text()
    for _, value in ALIASES:
        assert f"`{value}`" in notes, value
