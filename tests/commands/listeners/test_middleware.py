"""What every Slack request passes before a listener, alone: a real Bolt request, a fake next()."""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from typing import Any

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bot.slack_respond import ResponseUrls, SessionRespond
from commands.listeners import Services
from commands.listeners.middleware import respond_nowhere, skip_redeliveries
from tests.support.stack import ANN, REQUESTER

HOOK = "https://hooks.slack.com/commands/T1/1/abc"
FORM = {"content-type": ["application/x-www-form-urlencoded"]}


class Next:
    """Bolt's next(), faked: records that the request went on to the listeners."""

    def __init__(self) -> None:
        self.called = 0

    async def __call__(self) -> BoltResponse:
        self.called += 1
        return BoltResponse(status=200, body="listeners ran")


def slash(user: Any = REQUESTER, response_url: str = HOOK, **headers: list[str]) -> AsyncBoltRequest:
    body = urllib.parse.urlencode({"command": "/fota", "text": "help", "user_id": user, "response_url": response_url})
    return AsyncBoltRequest(body=body, headers={**FORM, **headers})


def click(user: dict[str, Any]) -> AsyncBoltRequest:
    payload = {"type": "block_actions", "user": user, "actions": [{"action_id": "approve", "value": "1"}]}
    return AsyncBoltRequest(body=urllib.parse.urlencode({"payload": json.dumps(payload)}), headers=FORM)


async def run(req: AsyncBoltRequest, services: Services) -> tuple[BoltResponse, Next]:
    following = Next()
    response = await skip_redeliveries(req, BoltResponse(status=200), following, services=services)
    return response, following


async def test_a_request_from_slack_goes_on_untouched(services: Services) -> None:
    req = slash()
    response, following = await run(req, services)
    assert following.called == 1 and response.body == "listeners ran"
    assert req.context["response_url"] == HOOK


async def test_a_redelivery_is_answered_and_goes_no_further(services: Services) -> None:
    response, following = await run(slash(**{"x-slack-retry-num": ["1"], "x-slack-retry-reason": ["http_timeout"]}), services)
    assert following.called == 0 and (response.status, response.body) == (200, "")


async def test_a_command_with_a_lower_case_user_id_is_refused(services: Services) -> None:
    response, following = await run(slash(user=REQUESTER.lower()), services)
    assert following.called == 0
    assert (response.status, response.body) == (400, "malformed Slack request: no valid user")


async def test_a_click_without_a_user_is_refused(services: Services) -> None:
    response, following = await run(click({}), services)
    assert following.called == 0 and response.status == 400


async def test_a_click_by_a_user_goes_on(services: Services) -> None:
    response, following = await run(click({"id": ANN}), services)
    assert following.called == 1


async def test_a_response_url_off_slack_s_hooks_host_gets_nothing(services: Services) -> None:
    req = slash(response_url="https://attacker.example/hook")
    response, following = await run(req, services)
    assert following.called == 1
    assert req.context["response_url"] is None and "response_url" not in req.body
    # The handler's respond() now drops what it is given instead of posting it anywhere.
    assert req.context["respond"] is respond_nowhere


async def test_a_response_url_on_slack_s_hooks_host_is_answered_through_the_shared_session(services: Services) -> None:
    urls = ResponseUrls()
    req = slash()
    response, following = await run(req, dataclasses.replace(services, response_urls=urls))
    assert following.called == 1
    respond = req.context["respond"]
    assert isinstance(respond, SessionRespond) and respond.response_url == HOOK
