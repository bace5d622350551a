"""register_listeners() through Bolt itself: the handlers bound with their services, Bolt's
argument injection around them, and the order (middleware first, the catch-alls last)."""

from __future__ import annotations

import json
import urllib.parse

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.app import Runtime
from commands import blocks
from commands.listeners import STALE_BUTTON, Services, register_listeners
from tests.commands.listeners.conftest import FakeSlack, card_value, pending_campaign
from tests.support.stack import ANN


async def authorize(**_: object) -> AuthorizeResult:
    # Bolt would otherwise ask Slack (auth.test) who the token is before the first request.
    return AuthorizeResult(enterprise_id=None, team_id="T1", bot_token="xoxb-1-2-listeners", bot_user_id="UBOT")


def app_with_listeners(services: Services) -> AsyncApp:
    # Signatures are the HTTP app's business (bot/slack_guard.py), not what is tested here.
    # Nothing may reach Slack but through the fake client: a call that did would fail.
    client = AsyncWebClient(base_url="http://127.0.0.1:9/api/")
    app = AsyncApp(client=client, authorize=authorize, request_verification_enabled=False)
    register_listeners(app, services)
    return app


def home_click(action_id: str, value: str) -> AsyncBoltRequest:
    # From the Home tab: no response_url, so the answer is drawn on the tab (the fake client).
    payload = {
        "type": "block_actions",
        "team": {"id": "T1"},
        "user": {"id": ANN, "team_id": "T1"},
        "api_app_id": "A1",
        "trigger_id": "13345.trigger",
        "view": {"type": "home", "id": "V1"},
        "actions": [{"type": "button", "action_id": action_id, "block_id": "b", "value": value}],
    }
    form = {"content-type": ["application/x-www-form-urlencoded"]}
    return AsyncBoltRequest(body=urllib.parse.urlencode({"payload": json.dumps(payload)}), headers=form)


async def test_a_card_button_reaches_its_handler_with_the_services_bound(
    slack: FakeSlack, services: Services, runtime: Runtime
) -> None:
    campaign = await pending_campaign(services)
    app = app_with_listeners(services)
    response = await app.async_dispatch(home_click(blocks.ACTION_APPROVE, card_value(campaign)))
    await services.background.idle()
    assert response.status == 200
    assert [d.user for d in runtime.store.decisions(campaign.id)] == [ANN]
    # The approver's answer, drawn on top of the Home tab (the home middleware ran first).
    [published] = slack.called("views_publish")
    assert published["user_id"] == ANN and STALE_BUTTON not in json.dumps(published["view"])


async def test_a_button_no_module_claims_lands_in_the_fallback(slack: FakeSlack, services: Services) -> None:
    app = app_with_listeners(services)
    response = await app.async_dispatch(home_click("a_button_of_an_older_bot", "1"))
    await services.background.idle()
    assert response.status == 200
    [published] = slack.called("views_publish")
    assert STALE_BUTTON in json.dumps(published["view"])


def test_no_two_buttons_or_forms_share_an_id() -> None:
    # What lets register_listeners order its modules by how often they are hit: a listener
    # matches only its own id, so none is shadowed by one registered before it.
    ids = [
        value
        for name, value in vars(blocks).items()
        if (name.startswith("ACTION_") or name.endswith("_CALLBACK_ID")) and isinstance(value, str)
    ]
    assert len(ids) > 20 and len(set(ids)) == len(ids)
