"""The App Home tab alone: drawn when opened, a click on it answered on top of it."""

from __future__ import annotations

import json
import urllib.parse

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from commands.listeners import Services
from commands.listeners.home import answer_home_clicks, home_opened
from tests.commands.listeners.conftest import FakeSlack, pending_campaign
from tests.support.stack import ANN, REQUESTER


async def test_opening_the_home_tab_publishes_it(slack: FakeSlack, services: Services) -> None:
    campaign = await pending_campaign(services)
    await home_opened({"type": "app_home_opened", "user": ANN, "tab": "home"}, services=services)
    await services.background.idle()
    [published] = slack.called("views_publish")
    assert published["user_id"] == ANN and published["view"]["type"] == "home"
    assert campaign.ref in json.dumps(published["view"])  # waiting for ANN's decision


async def test_the_messages_tab_is_not_ours_to_draw(slack: FakeSlack, services: Services) -> None:
    await home_opened({"type": "app_home_opened", "user": ANN, "tab": "messages"}, services=services)
    await services.background.idle()
    assert slack.calls == []


def home_click(user: str) -> AsyncBoltRequest:
    payload = {"type": "block_actions", "user": {"id": user}, "view": {"type": "home"}, "actions": []}
    form = {"content-type": ["application/x-www-form-urlencoded"]}
    return AsyncBoltRequest(body=urllib.parse.urlencode({"payload": json.dumps(payload)}), headers=form)


async def test_the_answer_to_a_click_on_home_goes_on_top_of_the_re_published_tab(
    slack: FakeSlack, services: Services
) -> None:
    req = home_click(REQUESTER)

    async def following() -> BoltResponse:
        return BoltResponse(status=200)

    await answer_home_clicks(req, BoltResponse(status=200), following, services=services)
    # What a handler would send as an ephemeral reply, through the respond() it is given.
    await req.context["respond"](text="Only approvers may approve FB-1. Nothing changed.")
    [published] = slack.called("views_publish")
    assert published["user_id"] == REQUESTER
    assert "Only approvers may approve FB-1. Nothing changed." in json.dumps(published["view"])
