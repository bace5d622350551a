"""The pre-flight findings' buttons alone: the excluded devices CSV, pre-flight run again."""

from __future__ import annotations

import dataclasses
import json

from commands.listeners import STALE_BUTTON, Services
from commands.listeners.preflight import excluded_csv, preflight_retry
from tests.commands.listeners.conftest import (
    FakeSlack,
    Recorder,
    card_value,
    clicked,
    pending_campaign,
)
from tests.support.stack import ANN


async def test_the_csv_of_no_excluded_device_is_not_sent_and_the_clicker_hears_why(
    ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services
) -> None:
    campaign = await pending_campaign(services)
    body, action = clicked(ANN, card_value(campaign))
    await excluded_csv(ack, body, action, respond, services=services)
    await services.background.idle()
    assert ack.calls == [{}]
    assert respond.calls == [
        {
            "response_type": "ephemeral",
            "replace_original": False,
            "text": f"Pre-flight excluded no device of Ref {campaign.ref}; there is no list to send.",
        }
    ]
    assert slack.called("files_upload_v2") == []


async def test_a_damaged_csv_button_says_so(ack: Recorder, respond: Recorder, services: Services) -> None:
    body, action = clicked(ANN, "")
    await excluded_csv(ack, body, action, respond, services=services)
    await services.background.idle()
    assert STALE_BUTTON in json.dumps(respond.calls)


async def test_checks_that_passed_are_not_run_again(
    ack: Recorder, respond: Recorder, services: Services
) -> None:
    assert services.preflight is not None
    campaign = await pending_campaign(services)
    body, action = clicked(ANN, card_value(campaign))
    await preflight_retry(ack, body, action, respond, services=services)
    await services.background.idle()
    assert ack.calls == [{}]
    assert "nothing to run again" in json.dumps(respond.calls)


async def test_without_pre_flight_the_click_is_only_acked(
    ack: Recorder, respond: Recorder, services: Services
) -> None:
    campaign = await pending_campaign(services)
    body, action = clicked(ANN, card_value(campaign))
    await preflight_retry(ack, body, action, respond, services=dataclasses.replace(services, preflight=None))
    await services.background.idle()
    assert ack.calls == [{}] and respond.calls == []
