"""The Slack stand-in, driven the way the bot drives Slack.

Two ways in: slack_sdk's real AsyncWebClient (aiohttp) against the stand-in served by uvicorn
on 127.0.0.1, and httpx's ASGITransport straight into the Starlette app for the cheap cases.
The last part signs requests with tests.support.slack and has Bolt itself accept them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_async_handlers
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import (
    FixedValueRetryIntervalCalculator,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bot.blockkit import block_problems
from bot.standins.slack import (
    DOWNLOAD,
    RESPONSE_URL,
    UPLOAD,
    ManualClock,
    SlackStandIn,
    TierPolicy,
    Workspace,
    create_slack_standin_app,
)
from tests.support.servers import serve_app
from tests.support.slack import (
    app_home_opened_body,
    block_action_body,
    file_input,
    sign,
    slash_command_body,
    static_select,
    view_submission_body,
)

TOKEN = "xoxb-test"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL = "C0APPROVALS"

CARD_BLOCKS: list[dict[str, Any]] = [
    {"type": "header", "text": {"type": "plain_text", "text": "FOTA campaign FB-1"}},
    {"type": "section", "text": {"type": "mrkdwn", "text": "*Firmware* v1 -> v2"}},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": "Ref FB-1"}]},
    {
        "type": "actions",
        "block_id": "decision",
        "elements": [
            {
                "type": "button",
                "action_id": "approve",
                "text": {"type": "plain_text", "text": "Approve"},
                "style": "primary",
                "value": "FB-1:hash123",
            },
            {
                "type": "button",
                "action_id": "reject",
                "text": {"type": "plain_text", "text": "Reject"},
                "style": "danger",
                "value": "FB-1",
            },
        ],
    },
]


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


MODAL = {
    "type": "modal",
    "callback_id": "schedule",
    "title": {"type": "plain_text", "text": "Schedule FOTA"},
    "submit": {"type": "plain_text", "text": "Request"},
    "blocks": [
        {
            "type": "input",
            "block_id": "firmware",
            "label": {"type": "plain_text", "text": "Firmware"},
            "element": {"type": "plain_text_input", "action_id": "value"},
        }
    ],
}


@pytest.fixture
def standin() -> SlackStandIn:
    return SlackStandIn()


@pytest.fixture
async def base_url(standin: SlackStandIn) -> AsyncIterator[str]:
    async with serve_app(create_slack_standin_app(standin)) as url:
        standin.public_url = url
        yield url


@pytest.fixture
def client(base_url: str) -> AsyncWebClient:
    return AsyncWebClient(token=TOKEN, base_url=f"{base_url}/api/")


@pytest.fixture
async def asgi(standin: SlackStandIn) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_slack_standin_app(standin))
    async with httpx.AsyncClient(transport=transport, base_url=standin.public_url) as http:
        yield http


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- through slack_sdk's AsyncWebClient over real HTTP -------------------------------------------


async def test_auth_test_names_the_bot_and_workspace(
    standin: SlackStandIn, client: AsyncWebClient
) -> None:
    answer = await client.auth_test()
    ws = standin.workspace
    assert answer["team_id"] == ws.team_id
    assert answer["user_id"] == ws.bot_user_id
    assert answer["bot_id"] == ws.bot_id
    assert answer["url"] == "https://example.slack.com/"
    assert "chat:write" in answer.headers["x-oauth-scopes"]


async def test_post_update_and_thread(standin: SlackStandIn, client: AsyncWebClient) -> None:
    root = await client.chat_postMessage(channel=CHANNEL, text="FB-1 pending", blocks=CARD_BLOCKS)
    reply1 = await client.chat_postMessage(channel=CHANNEL, thread_ts=root["ts"], text="approved")
    reply2 = await client.chat_postMessage(channel=CHANNEL, thread_ts=root["ts"], text="submitted")
    await client.chat_update(channel=CHANNEL, ts=root["ts"], text="FB-1 approved")
    await client.chat_update(
        channel=CHANNEL, ts=root["ts"], text="FB-1 running", blocks=[section("running")]
    )

    assert root["ts"] == "1700000000.000100"
    assert root["channel"] == CHANNEL
    assert root["message"]["blocks"] == CARD_BLOCKS
    assert root["ts"] < reply1["ts"] < reply2["ts"]

    messages = standin.messages(CHANNEL)
    assert [m.ts for m in messages] == [root["ts"], reply1["ts"], reply2["ts"]]
    card = messages[0]
    # Current state: the last edit; text-only edits keep the blocks, as chat.update does.
    assert card.text == "FB-1 running"
    assert card.blocks == [section("running")]
    assert [v.text for v in card.history] == ["FB-1 pending", "FB-1 approved", "FB-1 running"]
    assert card.history[1].blocks == CARD_BLOCKS
    assert len(card.edits) == 2

    thread = standin.thread(CHANNEL, root["ts"])
    assert [m.text for m in thread] == ["FB-1 running", "approved", "submitted"]
    assert thread[1].thread_ts == root["ts"]
    assert card.to_slack()["reply_count"] == 2
    assert len(standin.calls_to("chat.postMessage")) == 3
    assert standin.calls_to("chat.update")[0].args["ts"] == root["ts"]


async def test_update_of_an_unknown_message_is_refused(client: AsyncWebClient) -> None:
    with pytest.raises(SlackApiError) as err:
        await client.chat_update(channel=CHANNEL, ts="1.000001", text="nope")
    assert err.value.response["error"] == "message_not_found"


async def test_posting_to_a_user_lands_in_the_dm(
    standin: SlackStandIn, client: AsyncWebClient
) -> None:
    posted = await client.chat_postMessage(channel="U0REQ", text="FB-1 was approved")
    opened = await client.conversations_open(users="U0REQ")
    assert posted["channel"].startswith("D")
    assert opened["channel"]["id"] == posted["channel"] == standin.dm_channel("U0REQ")
    assert [m.text for m in standin.messages("U0REQ")] == ["FB-1 was approved"]


async def test_permalink_ephemeral_and_delete(
    standin: SlackStandIn, client: AsyncWebClient
) -> None:
    root = await client.chat_postMessage(channel=CHANNEL, text="card")
    reply = await client.chat_postMessage(channel=CHANNEL, text="r", thread_ts=root["ts"])
    link = await client.chat_getPermalink(channel=CHANNEL, message_ts=root["ts"])
    assert link["permalink"] == f"https://example.slack.com/archives/{CHANNEL}/p1700000000000100"
    reply_link = await client.chat_getPermalink(channel=CHANNEL, message_ts=reply["ts"])
    assert reply_link["permalink"].endswith(f"?thread_ts={root['ts']}&cid={CHANNEL}")

    eph = await client.chat_postEphemeral(channel=CHANNEL, user="U0REQ", text="only you")
    assert standin.ephemerals[0].user == "U0REQ"
    assert standin.ephemerals[0].message_ts == eph["message_ts"]
    assert standin.messages(CHANNEL)[-1].text == "r"  # ephemerals are not channel messages

    await client.chat_delete(channel=CHANNEL, ts=reply["ts"])
    assert [m.text for m in standin.thread(CHANNEL, root["ts"])] == ["card"]
    with pytest.raises(SlackApiError):
        await client.chat_delete(channel=CHANNEL, ts=reply["ts"])


async def test_files_upload_v2_lands_bytes_and_attaches_to_the_thread(
    standin: SlackStandIn, client: AsyncWebClient
) -> None:
    root = await client.chat_postMessage(channel=CHANNEL, text="card")
    csv = b"imei,status\n490154203237518,succeeded\n"
    done = await client.files_upload_v2(
        channel=CHANNEL,
        thread_ts=root["ts"],
        filename="FB-1-devices.csv",
        content=csv,
        title="FB-1 devices",
        initial_comment="Rollout ended: 1 succeeded",
    )

    (upload,) = standin.uploads
    assert upload.content == csv
    assert upload.title == "FB-1 devices"
    assert done["file"]["id"] == upload.id
    assert [c.method for c in standin.calls[-3:]] == [
        "files.getUploadURLExternal",
        UPLOAD,
        "files.completeUploadExternal",
    ]
    shared = standin.thread(CHANNEL, root["ts"])[-1]
    assert shared.text == "Rollout ended: 1 succeeded"
    assert shared.files[0]["name"] == "FB-1-devices.csv"
    assert shared.files[0]["size"] == len(csv)

    info = await client.files_info(file=upload.id)
    assert info["file"]["mimetype"] == "text/csv"
    async with httpx.AsyncClient() as http:
        got = await http.get(info["file"]["url_private_download"], headers=bearer())
    assert got.content == csv


async def test_429_carries_retry_after_and_the_sdk_handler_waits_it_out(
    standin: SlackStandIn, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = AsyncWebClient(token=TOKEN, base_url=f"{base_url}/api/")
    standin.rate_limit_next("chat.postMessage", 1, retry_after=3)
    with pytest.raises(SlackApiError) as err:
        await plain.chat_postMessage(channel=CHANNEL, text="x")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "3"
    assert err.value.response["error"] == "ratelimited"

    # Retry-After: 0 is accepted by slack_sdk (it sleeps 0 s plus < 1 s of random jitter; the
    # jitter held at 0 here, so the test does not wait on chance).
    monkeypatch.setattr(builtin_async_handlers, "random", SimpleNamespace(random=lambda: 0.0))
    patient = AsyncWebClient(
        token=TOKEN,
        base_url=f"{base_url}/api/",
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )
    standin.rate_limit_next(None, 2, retry_after=0)
    answer = await patient.chat_postMessage(channel=CHANNEL, text="after the wait")
    assert answer["ok"]
    statuses = [c.status for c in standin.calls_to("chat.postMessage")]
    assert statuses == [429, 429, 429, 200]
    assert standin.rate_limited_count == 3
    assert [m.text for m in standin.messages(CHANNEL)] == ["after the wait"]


async def test_fail_next_and_down(standin: SlackStandIn, base_url: str) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=f"{base_url}/api/")
    standin.fail_next("chat.postMessage", status=200, error="channel_not_found")
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel=CHANNEL, text="x")
    assert err.value.response.status_code == 200
    assert err.value.response["error"] == "channel_not_found"

    standin.fail_next(None)
    with pytest.raises(SlackApiError) as err:
        await client.auth_test()
    assert err.value.response.status_code == 500
    assert (await client.auth_test())["ok"]

    standin.down()
    with pytest.raises(SlackApiError) as err:
        await client.chat_postMessage(channel=CHANNEL, text="x")
    assert err.value.response.status_code == 503
    standin.down(False)
    assert (await client.chat_postMessage(channel=CHANNEL, text="back"))["ok"]

    retrying = AsyncWebClient(
        token=TOKEN,
        base_url=f"{base_url}/api/",
        retry_handlers=[
            AsyncServerErrorRetryHandler(
                max_retry_count=1, interval_calculator=FixedValueRetryIntervalCalculator(0)
            )
        ],
    )
    standin.fail_next("chat.update", 1, status=503, error="service_unavailable")
    ts = standin.messages(CHANNEL)[0].ts
    assert (await retrying.chat_update(channel=CHANNEL, ts=ts, text="edited"))["ok"]
    assert [c.status for c in standin.calls_to("chat.update")] == [503, 200]


async def test_usergroups_users_and_views(standin: SlackStandIn, client: AsyncWebClient) -> None:
    standin.add_usergroup("S0APPROVERS", ["U0ANN", "U0BOB"])
    members = await client.usergroups_users_list(usergroup="S0APPROVERS")
    assert members["users"] == ["U0ANN", "U0BOB"]
    with pytest.raises(SlackApiError) as err:
        await client.usergroups_users_list(usergroup="S0NOPE")
    assert err.value.response["error"] == "no_such_subteam"

    standin.add_user("U0ANN", real_name="Ann Approver")
    assert (await client.users_info(user="U0ANN"))["user"]["real_name"] == "Ann Approver"

    opened = await client.views_open(trigger_id=standin.new_trigger_id(), view=MODAL)
    view_id = opened["view"]["id"]
    assert standin.view(view_id).callback_id == "schedule"
    pushed = await client.views_push(trigger_id="1.2.external", view=MODAL)
    assert pushed["view"]["previous_view_id"] == view_id
    assert pushed["view"]["root_view_id"] == view_id
    updated = await client.views_update(view_id=view_id, view=MODAL, hash=opened["view"]["hash"])
    assert updated["view"]["hash"] != opened["view"]["hash"]
    with pytest.raises(SlackApiError) as err:  # the old hash no longer matches
        await client.views_update(view_id=view_id, view=MODAL, hash=opened["view"]["hash"])
    assert err.value.response["error"] == "hash_conflict"

    home = {"type": "home", "blocks": [section("Your campaigns")]}
    await client.views_publish(user_id="U0ANN", view=home)
    await client.views_publish(user_id="U0ANN", view={"type": "home", "blocks": []})
    published = standin.home_view("U0ANN")
    assert published is not None
    assert len(published.history) == 2
    assert [v.opened_by for v in standin.views] == ["views.open", "views.push", "views.publish"]


async def test_tiers_are_enforced_on_a_manual_clock(base_url: str, standin: SlackStandIn) -> None:
    clock = ManualClock(1000.0)
    standin.clock = clock
    standin.enforce_tiers = True
    standin.add_usergroup("S0APPROVERS", ["U0ANN"])
    client = AsyncWebClient(token=TOKEN, base_url=f"{base_url}/api/")

    for _ in range(20):  # usergroups.users.list is Tier 2: 20 per minute
        await client.usergroups_users_list(usergroup="S0APPROVERS")
    clock.advance(30)
    with pytest.raises(SlackApiError) as err:
        await client.usergroups_users_list(usergroup="S0APPROVERS")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "30"
    clock.advance(30)
    assert (await client.usergroups_users_list(usergroup="S0APPROVERS"))["ok"]

    # chat.postMessage: one per second per channel; another channel is not affected.
    await client.chat_postMessage(channel=CHANNEL, text="one")
    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel=CHANNEL, text="two")
    await client.chat_postMessage(channel="C0OTHER", text="elsewhere")
    clock.advance(1)
    await client.chat_postMessage(channel=CHANNEL, text="two")

    assert standin.rate_limited_count == 2
    assert [(v.method, v.limit) for v in standin.tier_violations] == [
        ("usergroups.users.list", 20),
        ("chat.postMessage", 1),
    ]


# --- through httpx's ASGITransport ---------------------------------------------------------------


async def test_form_and_json_bodies_and_token_placement(
    standin: SlackStandIn, asgi: httpx.AsyncClient
) -> None:
    form = await asgi.post(
        "/api/chat.postMessage",
        data={"token": TOKEN, "channel": CHANNEL, "text": "t", "blocks": json.dumps(CARD_BLOCKS)},
    )
    assert form.status_code == 200 and form.json()["ok"]
    assert standin.messages(CHANNEL)[0].blocks == CARD_BLOCKS
    assert "token" not in standin.calls[0].args  # tokens are never recorded

    as_json = await asgi.post(
        "/api/chat.update",
        json={"channel": CHANNEL, "ts": form.json()["ts"], "text": "json edit"},
        headers=bearer(),
    )
    assert as_json.json()["ok"]
    query = await asgi.get(
        "/api/chat.getPermalink",
        params={"channel": CHANNEL, "message_ts": form.json()["ts"]},
        headers=bearer(),
    )
    assert query.json()["permalink"].startswith("https://example.slack.com/archives/")


@pytest.mark.parametrize(
    ("method", "headers", "error"),
    [
        ("chat.postMessage", {}, "not_authed"),
        ("chat.postMessage", {"Authorization": "Bearer nope"}, "invalid_auth"),
        ("chat.frobnicate", {"Authorization": f"Bearer {TOKEN}"}, "unknown_method"),
        ("files.upload", {"Authorization": f"Bearer {TOKEN}"}, "method_deprecated"),
    ],
)
async def test_refusals_are_http_200_with_ok_false(
    asgi: httpx.AsyncClient, method: str, headers: dict[str, str], error: str
) -> None:
    answer = await asgi.post(
        f"/api/{method}", data={"channel": CHANNEL, "text": "x"}, headers=headers
    )
    assert answer.status_code == 200
    assert answer.json() == {"ok": False, "error": error}


async def test_bad_json_and_invalid_blocks(standin: SlackStandIn, asgi: httpx.AsyncClient) -> None:
    bad = await asgi.post(
        "/api/chat.postMessage",
        content=b"{not json",
        headers={**bearer(), "Content-Type": "application/json"},
    )
    assert bad.json() == {"ok": False, "error": "invalid_json"}

    too_long = [section("x" * 3001)]
    answer = await asgi.post(
        "/api/chat.postMessage",
        json={"channel": CHANNEL, "text": "t", "blocks": too_long},
        headers=bearer(),
    )
    assert answer.json()["error"] == "invalid_blocks"
    assert "/blocks/0/text/text" in answer.json()["errors"][0]
    assert standin.messages(CHANNEL) == []

    assert block_problems(CARD_BLOCKS) == []
    assert block_problems([section("a")] * 51)  # more than 50 blocks in a message
    duplicate = [{**section("a"), "block_id": "b"}, {**section("c"), "block_id": "b"}]
    assert "duplicate block_id" in block_problems(duplicate)[0]


async def test_tier_enforcement_directly_with_a_tighter_policy(
    asgi: httpx.AsyncClient, standin: SlackStandIn
) -> None:
    clock = ManualClock()
    standin.clock = clock
    standin.enforce_tiers = True
    standin.tiers = TierPolicy(post_message_limit=3, post_message_window=3.0)
    statuses = []
    for _ in range(4):
        answer = await asgi.post(
            "/api/chat.postMessage", json={"channel": CHANNEL, "text": "x"}, headers=bearer()
        )
        statuses.append(answer.status_code)
    assert statuses == [200, 200, 200, 429]
    clock.advance(3)
    ok = await asgi.post(
        "/api/chat.postMessage", json={"channel": CHANNEL, "text": "x"}, headers=bearer()
    )
    assert ok.status_code == 200


async def test_triggers_expire_and_are_single_use(
    standin: SlackStandIn, asgi: httpx.AsyncClient
) -> None:
    clock = ManualClock()
    standin.clock = clock
    trigger = standin.new_trigger_id()
    clock.advance(3.5)  # Slack: a trigger_id is good for three seconds
    late = await asgi.post(
        "/api/views.open", json={"trigger_id": trigger, "view": MODAL}, headers=bearer()
    )
    assert late.json()["error"] == "expired_trigger_id"
    fresh = standin.new_trigger_id()
    first = await asgi.post(
        "/api/views.open", json={"trigger_id": fresh, "view": MODAL}, headers=bearer()
    )
    again = await asgi.post(
        "/api/views.open", json={"trigger_id": fresh, "view": MODAL}, headers=bearer()
    )
    assert first.json()["ok"]
    assert again.json()["error"] == "exchanged_trigger_id"
    no_submit = {**MODAL}
    del no_submit["submit"]
    refused = await asgi.post(
        "/api/views.open",
        json={"trigger_id": standin.new_trigger_id(), "view": no_submit},
        headers=bearer(),
    )
    assert refused.json()["error"] == "invalid_arguments"


async def test_user_files_download_only_with_the_bot_token(
    standin: SlackStandIn, asgi: httpx.AsyncClient
) -> None:
    file = standin.register_file("devices.csv", b"490154203237518\n")
    url = file["url_private_download"]
    assert url.startswith(f"{standin.public_url}/files/{file['id']}/devices.csv")

    got = await asgi.get(url, headers=bearer())
    assert got.status_code == 200
    assert got.content == b"490154203237518\n"
    # Without the token Slack serves its sign-in page, still with 200.
    anonymous = await asgi.get(url)
    assert anonymous.status_code == 200
    assert anonymous.headers["content-type"].startswith("text/html")
    assert [c.args["authorized"] for c in standin.calls_to(DOWNLOAD)] == [True, False]


async def test_response_url_records_and_replaces_the_original(
    standin: SlackStandIn, asgi: httpx.AsyncClient
) -> None:
    root = await asgi.post(
        "/api/chat.postMessage",
        json={"channel": CHANNEL, "text": "card", "blocks": CARD_BLOCKS},
        headers=bearer(),
    )
    ts = root.json()["ts"]
    url = standin.new_response_url(channel=CHANNEL, message_ts=ts, user_id="U0ANN")
    path = url.removeprefix(standin.public_url)

    await asgi.post(path, json={"text": "You cannot approve your own request."})
    await asgi.post(path, json={"replace_original": True, "text": "Approved by Ann"})
    assert standin.responses[0].response_type == "ephemeral"
    assert standin.responses[0].user_id == "U0ANN"
    assert standin.message(CHANNEL, ts).text == "Approved by Ann"
    assert standin.message(CHANNEL, ts).history[-1].via == RESPONSE_URL

    for _ in range(3):
        assert (await asgi.post(path, json={"text": "again"})).status_code == 200
    used_up = await asgi.post(path, json={"text": "sixth"})  # five uses per response_url
    assert used_up.status_code == 404


async def test_render_thread_and_the_printing_hook(standin: SlackStandIn) -> None:
    printed: list[str] = []
    standin.on_call = standin.thread_printer(printed.append)
    root = await standin.call(
        "chat.postMessage", {"channel": CHANNEL, "text": "c", "blocks": CARD_BLOCKS}, token=TOKEN
    )
    ts = root.body["ts"]
    assert "[Approve] [Reject]" in printed[-1]

    stamp = [
        *CARD_BLOCKS[:3],
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "Approved by <@U0ANN>"}]},
    ]
    await standin.call("chat.update", {"channel": CHANNEL, "ts": ts, "blocks": stamp}, token=TOKEN)
    await standin.call(
        "chat.postMessage",
        {"channel": CHANNEL, "thread_ts": ts, "text": "submitted\nid 42"},
        token=TOKEN,
    )
    text = standin.render_thread(CHANNEL, ts)
    assert text == printed[-1]
    assert text.splitlines() == [
        f"-- {CHANNEL} {ts} (edited 1x) --",
        "== FOTA campaign FB-1 ==",
        "*Firmware* v1 -> v2",
        "  Ref FB-1",
        "  Approved by <@U0ANN>",
        "  > submitted",
        "    id 42",
    ]
    assert len(printed) == 3


async def test_wait_for_call_is_woken_by_the_call(standin: SlackStandIn) -> None:
    async def later() -> None:
        await asyncio.sleep(0)
        await standin.call("chat.postMessage", {"channel": CHANNEL, "text": "hi"}, token=TOKEN)

    task = asyncio.create_task(later())
    call = await standin.wait_for_call("chat.postMessage", within=2)
    await task
    assert call.response["ok"]
    with pytest.raises(AssertionError, match="still waiting for 1 x chat.update"):
        await standin.wait_for_call("chat.update", within=0.01)


# --- Slack-signed requests -----------------------------------------------------------------------


def test_signatures_from_sign_are_what_slack_sdk_verifies() -> None:
    body = slash_command_body("help")
    headers = sign(body, SECRET)
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid_request(body, headers)
    assert headers["X-Slack-Signature"] == verifier.generate_signature(
        timestamp=headers["X-Slack-Request-Timestamp"], body=body
    )
    assert not SignatureVerifier("wrong-secret").is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b"x", headers)
    stale = sign(body, SECRET, timestamp=int(time.time()) - 6 * 60)  # Bolt allows 5 minutes
    assert not verifier.is_valid_request(body, stale)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert sign(app_home_opened_body("U0ANN"), SECRET)["Content-Type"] == "application/json"


def test_bodies_have_slacks_shapes(standin: SlackStandIn) -> None:
    command = {
        k: v[0] for k, v in parse_qs(slash_command_body('schedule a="b c"').decode()).items()
    }
    assert list(command) == [
        "token", "team_id", "team_domain", "channel_id", "channel_name", "user_id", "user_name",
        "command", "text", "api_app_id", "is_enterprise_install", "response_url", "trigger_id",
    ]  # fmt: skip
    assert command["command"] == "/fota"
    assert command["text"] == 'schedule a="b c"'

    message = {"type": "message", "ts": "1700000000.000100", "blocks": CARD_BLOCKS}
    raw = block_action_body("approve", user_id="U0ANN", channel_id=CHANNEL, message=message)
    payload = json.loads(parse_qs(raw.decode())["payload"][0])
    action = payload["actions"][0]
    assert payload["type"] == "block_actions"
    assert payload["container"] == {
        "type": "message",
        "message_ts": "1700000000.000100",
        "channel_id": CHANNEL,
        "is_ephemeral": False,
    }
    assert (action["block_id"], action["value"], action["style"]) == (
        "decision",
        "FB-1:hash123",
        "primary",
    )
    assert action["text"]["text"] == "Approve"

    file = standin.register_file("d.csv", b"1")
    raw = view_submission_body(
        "schedule",
        {
            "firmware": {"value": "fw-2"},
            "proto": {"p": static_select("OMA")},
            "f": {"up": file_input(file)},
        },
        private_metadata="C_REQ",
    )
    view = json.loads(parse_qs(raw.decode())["payload"][0])["view"]
    assert view["state"]["values"]["firmware"]["value"] == {
        "type": "plain_text_input",
        "value": "fw-2",
    }
    assert view["state"]["values"]["proto"]["p"]["selected_option"]["value"] == "OMA"
    assert view["state"]["values"]["f"]["up"]["files"][0]["id"] == file["id"]
    assert view["private_metadata"] == "C_REQ"

    event = json.loads(app_home_opened_body("U0ANN"))
    assert (event["type"], event["event"]["type"], event["event"]["user"]) == (
        "event_callback",
        "app_home_opened",
        "U0ANN",
    )


@pytest.fixture
def bolt_app(client: AsyncWebClient) -> AsyncApp:
    return AsyncApp(client=client, signing_secret=SECRET)


@pytest.fixture
async def events(bolt_app: AsyncApp) -> AsyncIterator[httpx.AsyncClient]:
    handler = AsyncSlackRequestHandler(bolt_app)

    async def slack_events(request: Request) -> Response:
        return await handler.handle(request)

    app = Starlette(routes=[Route("/slack/events", slack_events, methods=["POST"])])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bot.test") as http:
        yield http


async def test_bolt_accepts_signed_commands_and_answers_through_the_stand_in(
    standin: SlackStandIn, bolt_app: AsyncApp, events: httpx.AsyncClient
) -> None:
    @bolt_app.command("/fota")
    async def fota(ack: Any, respond: Any, command: dict[str, Any]) -> None:
        await ack()
        await respond(f"you said {command['text']}")

    body = slash_command_body("help", response_url=standin.new_response_url())
    accepted = await events.post("/slack/events", content=body, headers=sign(body, SECRET))
    assert accepted.status_code == 200
    await standin.wait_for_call(RESPONSE_URL)
    assert standin.responses[0].text == "you said help"
    assert len(standin.calls_to("auth.test")) == 1  # Bolt's single-workspace authorization

    forged = await events.post("/slack/events", content=body, headers=sign(body, "not-the-secret"))
    assert forged.status_code == 401


async def test_bolt_click_edits_the_card_and_submission_downloads_the_file(
    standin: SlackStandIn, bolt_app: AsyncApp, events: httpx.AsyncClient, client: AsyncWebClient
) -> None:
    @bolt_app.action("approve")
    async def approve(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await client.chat_update(
            channel=body["channel"]["id"],
            ts=body["message"]["ts"],
            text=f"approved {body['actions'][0]['value']}",
            blocks=[section(f"Approved by <@{body['user']['id']}>")],
        )

    downloaded: list[bytes] = []
    submission_done = asyncio.Event()

    @bolt_app.view("schedule")
    async def schedule(ack: Any, view: dict[str, Any], context: Any) -> None:
        await ack()
        (upload,) = view["state"]["values"]["devices"]["file"]["files"]
        async with httpx.AsyncClient() as http:
            got = await http.get(upload["url_private_download"], headers=bearer(context.bot_token))
        downloaded.append(got.content)
        submission_done.set()

    @bolt_app.event("app_home_opened")
    async def home(event: dict[str, Any], client: AsyncWebClient) -> None:
        await client.views_publish(
            user_id=event["user"], view={"type": "home", "blocks": [section("hi")]}
        )

    card = await client.chat_postMessage(channel=CHANNEL, text="FB-1", blocks=CARD_BLOCKS)
    message = standin.message(CHANNEL, card["ts"]).to_slack()
    click = block_action_body("approve", user_id="U0ANN", channel_id=CHANNEL, message=message)
    assert (
        await events.post("/slack/events", content=click, headers=sign(click, SECRET))
    ).status_code == 200
    await standin.wait_for_call("chat.update")
    assert standin.message(CHANNEL, card["ts"]).text == "approved FB-1:hash123"

    file = standin.register_file("devices.csv", b"490154203237518\n")
    submit = view_submission_body("schedule", {"devices": {"file": file_input(file)}})
    assert (
        await events.post("/slack/events", content=submit, headers=sign(submit, SECRET))
    ).status_code == 200
    async with asyncio.timeout(5):
        await submission_done.wait()
    assert downloaded == [b"490154203237518\n"]
    assert standin.calls_to(DOWNLOAD)[0].args["authorized"]

    opened = app_home_opened_body("U0ANN")
    assert (
        await events.post("/slack/events", content=opened, headers=sign(opened, SECRET))
    ).status_code == 200
    await standin.wait_for_call("views.publish")
    assert standin.home_view("U0ANN") is not None


async def test_a_strict_workspace_knows_only_its_channels_and_users() -> None:
    strict = SlackStandIn(workspace=Workspace(channels={CHANNEL}, auto_users=False))
    strict.add_user("U0ANN")
    unknown_channel = await strict.call(
        "chat.postMessage", {"channel": "C0ELSEWHERE", "text": "x"}, token=TOKEN
    )
    unknown_user = await strict.call("users.info", {"user": "U0NOBODY"}, token=TOKEN)
    known = await strict.call("chat.postMessage", {"channel": CHANNEL, "text": "x"}, token=TOKEN)
    dm = await strict.call("chat.postMessage", {"channel": "U0ANN", "text": "x"}, token=TOKEN)
    assert unknown_channel.body == {"ok": False, "error": "channel_not_found"}
    assert unknown_user.body == {"ok": False, "error": "user_not_found"}
    assert known.body["ok"] and dm.body["ok"]
