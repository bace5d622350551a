"""Verizon's own SDK (`sdksio-verizon-apis-sdk`) against the sandbox, over a real socket.

The SDK is generated from Verizon's API definitions, so it is the witness the sandbox is held
to: its base URLs point at the sandbox on an ephemeral port of 127.0.0.1, it calls every
endpoint the bot uses (and the other v3 calls the sandbox serves), and every answer must parse
into the SDK's model with nothing dropped, renamed or changed. The check reads the answer
into the model and serialises it back with the SDK's own serialiser: a field the model does
not know (a renamed one) disappears, a value of the wrong type (`""` for a datetime) is lost or
refused. Times compare as instants, dates as days, since the SDK rewrites their format.

Answers that differ from the SDK's models on purpose are listed once, in `EXCEPTIONS`, with
the reason.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from verizon.api_helper import APIHelper
from verizon.configuration import Configuration, Environment
from verizon.exceptions.fota_v3_result_exception import FotaV3ResultException
from verizon.http.auth.thingspace_oauth import ThingspaceOauthCredentials
from verizon.http.auth.vz_m2m_token import VZM2mTokenCredentials
from verizon.models.campaign_firmware_upgrade import CampaignFirmwareUpgrade
from verizon.models.device_imei import DeviceIMEI
from verizon.models.fota_v3_callback_registration_request import FotaV3CallbackRegistrationRequest
from verizon.models.log_in_request import LogInRequest
from verizon.models.v3_add_or_remove_device_request import V3AddOrRemoveDeviceRequest
from verizon.models.v3_campaign_device import V3CampaignDevice
from verizon.models.v3_change_campaign_dates_request import V3ChangeCampaignDatesRequest
from verizon.models.v3_license_imei import V3LicenseIMEI
from verizon.verizon_client import VerizonClient

from bot.standins.thingspace import Sandbox, SandboxClock, create_sandbox_app, sandbox_imeis
from tests.standins.test_sandbox import serve

ACCOUNT = "0000000000-00001"
START = dt.datetime(2030, 1, 15, 12, 0, tzinfo=dt.UTC)
PRODUCTION_ROOT = "https://thingspace.verizon.com"
SEQUANS = {
    "firmwareName": "SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657",
    "firmwareFrom": "SR1.2.0.0-10512",
    "firmwareTo": "SR1.2.0.0-10657",
}

# (endpoint, path in the answer) -> why the sandbox's answer differs from the SDK's model there.
# Empty: every answer of every call below parses whole. A deliberate difference goes here, with
# its reason, and nowhere else.
EXCEPTIONS: dict[tuple[str, str], str] = {}


# --- The check ------------------------------------------------------------------------------------


def _instant(value: str) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _same(sent: Any, parsed: Any) -> bool:
    if sent == parsed:
        return True
    if isinstance(sent, str) and isinstance(parsed, str):
        a, b = _instant(sent), _instant(parsed)
        return a is not None and a == b
    return False


def drift(sent: Any, parsed: Any, path: str = "") -> Iterator[str]:
    """Every place where `parsed` (the SDK's reading) differs from `sent` (the wire)."""
    if isinstance(sent, dict) and isinstance(parsed, dict):
        for key, value in sent.items():
            where = f"{path}.{key}" if path else key
            if key not in parsed:
                # The SDK's generated readers test optional fields for truth, so a 0 or false
                # is read as absent: its quirk, not a drift. An empty string is a drift.
                if value is False or (type(value) is int and value == 0):
                    continue
                yield f"{where}: sent {value!r}, dropped by the SDK's model"
            else:
                yield from drift(value, parsed[key], where)
        for key in parsed.keys() - sent.keys():
            where = f"{path}.{key}" if path else key
            yield f"{where}: not sent, the SDK's model says {parsed[key]!r}"
    elif isinstance(sent, list) and isinstance(parsed, list):
        if len(sent) != len(parsed):
            yield f"{path}: {len(sent)} items sent, {len(parsed)} parsed"
        for index, (a, b) in enumerate(zip(sent, parsed, strict=False)):
            yield from drift(a, b, f"{path}[{index}]")
    elif not _same(sent, parsed):
        yield f"{path}: sent {sent!r}, parsed as {parsed!r}"


def sdk_reading(body: object) -> Any:
    """A parsed answer as the SDK would write it back: lists of models and models alike."""
    return json.loads(APIHelper.json_serialize(body))


def conformance(endpoint: str, text: str, body: object) -> list[str]:
    found = drift(json.loads(text), sdk_reading(body))
    return [d for d in found if (endpoint, d.split(":", 1)[0]) not in EXCEPTIONS]


# --- The SDK on a real port -----------------------------------------------------------------------


@dataclass
class Sdk:
    sandbox: Sandbox
    root: str
    client: VerizonClient

    async def call(self, endpoint: str, method: Callable[..., Any], *args: Any) -> Any:
        """Call the SDK (blocking, `requests` underneath) off the loop serving the sandbox, and
        hold its answer to its model."""
        response = await asyncio.to_thread(method, *args)
        assert 200 <= response.status_code < 300, (endpoint, response.status_code, response.text)
        assert conformance(endpoint, response.text, response.body) == [], endpoint
        return response.body

    async def tick(self, seconds: float) -> None:
        self.sandbox.clock.advance(seconds)
        await self.sandbox.tick()


def configuration(root: str, session: str | None = None) -> Configuration:
    config = Configuration(
        timeout=10,
        thingspace_oauth_credentials=ThingspaceOauthCredentials(
            oauth_client_id="sdk-key", oauth_client_secret="sdk-secret"
        ),
        vz_m2m_token_credentials=VZM2mTokenCredentials(vz_m2m_token=session) if session else None,
    )
    # The SDK's servers are fixed per environment; every one of them is rebased on the sandbox.
    production = Configuration.environments[Environment.PRODUCTION]
    config.environments = {
        Environment.PRODUCTION: {
            server: root + url.removeprefix(PRODUCTION_ROOT) for server, url in production.items()
        }
    }
    return config


@pytest.fixture
async def sdk() -> AsyncIterator[Sdk]:
    sandbox = Sandbox(clock=SandboxClock.manual_at(START))
    async with serve(create_sandbox_app(sandbox)) as root:
        anonymous = VerizonClient(config=configuration(root))
        login = await asyncio.to_thread(
            anonymous.session_management.start_connectivity_management_session,
            LogInRequest(username="uws-user", password="uws-password"),
        )
        assert login.status_code == 200
        assert conformance("session login", login.text, login.body) == []
        yield Sdk(sandbox, root, VerizonClient(config=configuration(root, login.body.session_token)))
    await sandbox.aclose()


def schedule_body(devices: list[str], **changes: Any) -> CampaignFirmwareUpgrade:
    return CampaignFirmwareUpgrade.from_dictionary(
        {
            "campaignName": "fota-bot FB-1",
            **SEQUANS,
            "protocol": "LWM2M",
            "startDate": "2030-01-15",
            "endDate": "2030-01-16",
            "campaignTimeWindowList": [{"startTime": 18, "endTime": 22}],
            "deviceList": devices,
            "autoAssignLicenseFlag": False,
            "autoAddDevicesFlag": False,
            **changes,
        }
    )


# --- The oracle is not vacuous ----------------------------------------------------------------------


def test_the_check_catches_a_renamed_an_empty_and_an_extra_field() -> None:
    sent = {
        "totalDevice": 1, "hasMoreData": False, "lastSeenDeviceId": "354658090000008", "maxPageSize": 1000,
        "deviceList": [{"deviceId": "354658090000008", "status": "UpgradeFailed", "reason": "Insufficient battery",
                        "updatedTime": "2030-01-15T12:00:15.018Z", "nextAttemptTime": ""}],
    }
    found = list(drift(sent, sdk_reading(V3CampaignDevice.from_dictionary(sent))))
    assert found == [
        "deviceList[0].reason: sent 'Insufficient battery', dropped by the SDK's model",
        "deviceList[0].nextAttemptTime: sent '', dropped by the SDK's model",
    ]
    # Times in another format are the same instant, not a drift; the SDK reads an optional 0
    # as absent (its generated readers test for truth), which is not the sandbox's doing.
    assert list(drift({"n": 0, "f": False}, {})) == []
    assert list(drift({"t": "2030-01-15T12:00:00.000Z"}, {"t": "2030-01-15T12:00:00+00:00"})) == []


# --- Every endpoint -------------------------------------------------------------------------------


async def test_the_oauth_token_answer_parses(sdk: Sdk) -> None:
    basic = "Basic " + base64.b64encode(b"sdk-key:sdk-secret").decode()
    token = await sdk.call(
        "oauth token", sdk.client.oauth_authorization.request_token_thingspace_oauth, basic
    )
    assert token.access_token and token.expires_in == 3600


async def test_a_whole_campaign_through_the_sdk_parses_at_every_step(sdk: Sdk) -> None:
    client = sdk.client
    devices = sandbox_imeis(3) + sandbox_imeis(1, kind="will_fail") + sandbox_imeis(1, kind="ineligible")

    callback = FotaV3CallbackRegistrationRequest(url="http://127.0.0.1:9/thingspace/callbacks/t0ken")
    await sdk.call("register listener", client.software_management_callbacks_v3.register_callback, ACCOUNT, callback)
    listener = await sdk.call(
        "read listener", client.software_management_callbacks_v3.list_registered_callbacks, ACCOUNT)
    assert listener.url == callback.url
    callback.url = "http://127.0.0.1:9/thingspace/callbacks/t0ken-2"
    await sdk.call("update listener", client.software_management_callbacks_v3.update_callback, ACCOUNT, callback)

    for protocol in ("LWM2M", "OMD-DM", "all"):
        firmware = await sdk.call(
            f"firmware {protocol}", client.firmware_v3.list_available_firmware, ACCOUNT, protocol)
        assert firmware
    subscription = await sdk.call(
        "subscription", client.software_management_subscriptions_v3.get_account_subscription_status, ACCOUNT)
    assert subscription.license_count == 100_000
    info = await sdk.call(
        "device info", client.account_devices.list_account_devices_information, ACCOUNT, DeviceIMEI(devices))
    assert info.device_count == 5

    campaign = await sdk.call(
        "schedule", client.campaigns_v3.schedule_campaign_firmware_upgrade, ACCOUNT, schedule_body(devices))
    assert campaign.status == "CampaignRequestPending"
    await sdk.call(
        "change dates", client.campaigns_v3.update_campaign_dates, ACCOUNT, campaign.id,
        V3ChangeCampaignDatesRequest.from_dictionary(
            {"startDate": "2030-01-15", "endDate": "2030-01-18",
             # Not 0-24: the SDK's reader takes an hour 0 for a missing one and then refuses
             # to write the window back: a quirk of the SDK's generated reader.
             "campaignTimeWindowList": [{"startTime": 2, "endTime": 24}]}),
    )
    removed = await sdk.call(
        "remove devices", client.campaigns_v3.update_campaign_firmware_devices, ACCOUNT, campaign.id,
        V3AddOrRemoveDeviceRequest(mtype="remove", device_list=[devices[-1]]),
    )
    assert [d.status for d in removed.device_list] == ["Success"]
    await sdk.call("campaign before the start", client.campaigns_v3.get_campaign_information, ACCOUNT, campaign.id)
    await sdk.call("report before the start", client.software_management_reports_v3.get_campaign_device_status,
                   ACCOUNT, campaign.id, "0")

    # Nobody listens on port 9: the listener goes before the campaign runs.
    await sdk.call("delete listener", client.software_management_callbacks_v3.deregister_callback, ACCOUNT)
    await sdk.tick(120)
    info = await sdk.call("campaign at the end", client.campaigns_v3.get_campaign_information, ACCOUNT, campaign.id)
    assert info.status == "CampaignEnded" and info.auto_add_devices_flag is False
    report = await sdk.call("report at the end", client.software_management_reports_v3.get_campaign_device_status,
                            ACCOUNT, campaign.id, "0")
    assert sorted(d.status for d in report.device_list) == ["UpgradeFailed"] + ["UpgradeSuccess"] * 3
    # The SDK's status enum lacks CampaignPreScheduled; the by-status report is asked for each
    # status the bot searches, each answer parsed.
    for status in ("CampaignRequestPending", "CampaignPreScheduled", "CampaignEnded"):
        history = await sdk.call(f"campaigns {status}",
                                 client.software_management_reports_v3.get_campaign_history_by_status,
                                 ACCOUNT, status)
        assert [c.id for c in history.campaign_list] == ([campaign.id] if status == "CampaignEnded" else [])

    devices_page = await sdk.call("account devices", client.account_devices.get_account_device_information,
                                  ACCOUNT, "0", "LWM2M")
    # Every device asked about is listed, the one removed from the campaign and the ineligible
    # one included: they are the account's all the same.
    assert [d.device_id for d in devices_page.device_list] == sorted(devices)


async def test_cancel_and_licences_through_the_sdk_parse(sdk: Sdk) -> None:
    client = sdk.client
    sdk.sandbox.mrc_only = True
    unlicensed = sandbox_imeis(2, kind="unlicensed")
    assigned = await sdk.call("assign licences", client.software_management_licenses_v3.assign_licenses_to_devices,
                              ACCOUNT, V3LicenseIMEI(unlicensed))
    assert assigned.lic_used_count == 2
    summary = await sdk.call("licences", client.software_management_licenses_v3.get_account_licenses_status,
                             ACCOUNT, "0")
    assert [d.device_id for d in summary.device_list] == unlicensed
    campaign = await sdk.call("schedule", client.campaigns_v3.schedule_campaign_firmware_upgrade, ACCOUNT,
                              schedule_body(unlicensed, startDate="2030-01-20", endDate="2030-01-21"))
    cancelled = await sdk.call("cancel", client.campaigns_v3.cancel_campaign, ACCOUNT, campaign.id)
    assert cancelled.success is True
    removed = await sdk.call("remove licences", client.software_management_licenses_v3.remove_licenses_from_devices,
                             ACCOUNT, V3LicenseIMEI(unlicensed[:1]))
    assert removed.lic_used_count == 1


async def test_a_refusal_parses_as_the_sdks_error(sdk: Sdk) -> None:
    body = schedule_body(sandbox_imeis(1), startDate="2030-01-14")
    with pytest.raises(FotaV3ResultException) as caught:
        await asyncio.to_thread(sdk.client.campaigns_v3.schedule_campaign_firmware_upgrade, ACCOUNT, body)
    assert caught.value.response_code == 400
    assert caught.value.error_code == "INVALID_PARAMETER"
    assert caught.value.error_message == "startDate 2030-01-14 is in the past (today is 2030-01-15 UTC)"
