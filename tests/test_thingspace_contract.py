"""The client's requests checked against Verizon's own SDK (`sdksio-verizon-apis-sdk`).

The SDK is generated from Verizon's API definitions. Its request models are the oracle: a body
the client builds is read into the SDK's model class and serialised back by the SDK's own
serialiser, which refuses a body without a required field (ValueError) and drops any field the
model does not know (the comparison then fails). Nothing here copies the SDK's field lists.

Where the bot deliberately sends something the SDK does not model, the alias is listed once,
in ALIASES below, with its reason; docs/thingspace.md says which side the bot takes.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import httpx
from verizon.api_helper import APIHelper
from verizon.models.campaign_firmware_upgrade import CampaignFirmwareUpgrade

from bot.secrets import Secret
from bot.thingspace import ThingSpaceClient
from storage.store import Store
from tests.test_storage import make_campaign

ACCOUNT = "0642233522-00001"
CAMPAIGN_ID = "f858b8c4-2153-11ec-8c44-aeb16d1aa652"


def as_sdk_sends(model: type, body: dict[str, Any]) -> dict[str, Any]:
    """`body` read into the SDK's model and serialised back by the SDK's serialiser."""
    serialised = APIHelper.json_serialize(model.from_dictionary(body))
    result: dict[str, Any] = json.loads(serialised)
    return result


def assert_conforms(model: type, body: dict[str, Any]) -> None:
    assert as_sdk_sends(model, body) == body


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


async def test_the_schedule_body_on_the_wire_conforms(store: Store) -> None:
    campaign = make_campaign(store)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/oauth2/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        if request.url.path.endswith("/session/login"):
            return httpx.Response(200, json={"sessionToken": "s"})
        return httpx.Response(200, json={"id": CAMPAIGN_ID, "status": "CampaignRequestPending"})

    async with ThingSpaceClient(
        base_url="https://thingspace.test",
        client_id=Secret("id"),
        client_secret=Secret("secret"),
        username=Secret("user"),
        password=Secret("password"),
        transport=httpx.MockTransport(handler),
    ) as client:
        await client.schedule_campaign(
            ACCOUNT, campaign.schedule_body(store.device_ids(campaign.id))
        )
    [post] = [r for r in seen if r.url.path.startswith("/api/fota/v3/")]
    assert post.url.path == f"/api/fota/v3/campaigns/firmware/{ACCOUNT}"
    assert_conforms(CampaignFirmwareUpgrade, json.loads(post.content))
