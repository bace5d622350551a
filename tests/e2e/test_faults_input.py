"""Garbage in: never a 500, never a traceback shown to anyone, never a state change.

Hypothesis throws command text, modal submissions, button payloads and callback bodies at the
real HTTP app (signed, so they reach the listeners). The stack holds two campaigns for the
garbage to aim at: FB-1 waiting for approval and FB-2 submitted to ThingSpace and re-read, so a
re-read that the garbage triggers finds nothing new.

After every example: the answer is not a 5xx; nothing the bot said (the ack's body, every Slack
call's arguments, every response_url post) carries a traceback; the campaigns, their audit
trail, the decisions and the devices are as they were.

One stack serves all the examples of this module (an `asyncio.Runner` keeps its loop between
them); `derandomize` keeps CI's examples the same on every run.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bot.standins.thingspace import sandbox_imeis
from commands import blocks
from commands.modal import BLOCK_IDS, SCHEDULE_CALLBACK_ID, parse_schedule_submission
from storage.model import RequestError
from storage.states import CampaignState
from tests.support.slack import block_action_body, text_input, view_submission_body
from tests.support.stack import ANN, CHANNEL, EVE, FIRMWARE, REQUESTER, Stack, running_stack

EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
USERS = st.sampled_from([REQUESTER, ANN, EVE])
# What a traceback or an exception's repr looks like when it leaks into a message.
LEAK_MARKERS = ("Traceback", 'File "/', "Error(", "Exception(")


@dataclass
class Live:
    runner: asyncio.Runner
    stack: Stack

    def run(self, coro: Any) -> Any:
        return self.runner.run(coro)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    runner = asyncio.Runner()
    context = running_stack(Path(tmp_path_factory.mktemp("garbage")))
    stack = runner.run(context.__aenter__())
    try:
        runner.run(_two_campaigns(stack))
        yield Live(runner, stack)
    finally:
        runner.run(context.__aexit__(None, None, None))
        runner.close()


async def _two_campaigns(stack: Stack) -> None:
    for imeis in (sandbox_imeis(2), sandbox_imeis(3, kind="will_fail")):
        text = (
            f"schedule firmware={FIRMWARE} from=SR1.2.0.0-10512 to=SR1.2.0.0-10657 "
            f"start=today end=+3d devices={','.join(imeis)}"
        )
        await stack.slash(text)
        await stack.settle()
    await stack.click(blocks.ACTION_APPROVE, user=ANN)  # the latest card: FB-2
    await stack.settle()
    await stack.rt.rollout.reconcile(2)
    await stack.settle()
    assert stack.rt.store.campaign(1).state is CampaignState.PENDING_APPROVAL
    submitted = stack.rt.store.campaign(2)
    assert submitted.thingspace_id and not submitted.state.is_terminal


def snapshot(stack: Stack, *, campaign_columns: str = "*") -> tuple[Any, ...]:
    db = stack.rt.store.db
    return (
        db.execute(f"SELECT {campaign_columns} FROM campaigns ORDER BY id").fetchall(),
        db.execute("SELECT * FROM audit ORDER BY id").fetchall(),
        db.execute("SELECT * FROM decisions ORDER BY id").fetchall(),
        db.execute("SELECT * FROM devices ORDER BY campaign_id, imei").fetchall(),
    )


def said_since(stack: Stack, calls: int, responses: int) -> str:
    out = [json.dumps(c.args, default=str) for c in stack.standin.calls[calls:]]
    out += [json.dumps(r.body, default=str) for r in stack.standin.responses[responses:]]
    return "\n".join(out)


def check_answer(live: Live, post: Any, *, campaign_columns: str = "*") -> None:
    """Send one piece of garbage, settle, and check the three promises."""
    stack = live.stack
    before = snapshot(stack, campaign_columns=campaign_columns)
    calls, responses = len(stack.standin.calls), len(stack.standin.responses)

    async def go() -> Any:
        response = await post
        await stack.settle()
        return response

    response = live.run(go())
    assert response.status_code < 500, response.text
    told = response.text + "\n" + said_since(stack, calls, responses)
    for marker in LEAK_MARKERS:
        assert marker not in told, told
    assert snapshot(stack, campaign_columns=campaign_columns) == before


# --- strategies --------------------------------------------------------------------------------

WORDS = st.sampled_from(
    (
        "schedule help status list cancel firmware devices all mine active failed "
        "FB-1 FB-2 FB-0 FB-99999999999999999999 fb-1 FB--1 firmware= from= to= protocol= "
        "start= end= window= devices= name= account= = \" ' \\ <@U0ANN> <!channel> &amp; &lt; "
        "*bold* `code` ``` ĭmei １２３ %s {0} 354658090353978 +999999d 2026-02-30 25-30 "
        "18-22,20-23 zigbee"
    ).split()
    + ["\u200b", "\ufeff", "\x00", "a\nb", "devices=1\t2"]
)
COMMAND_TEXT = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(WORDS, st.text(max_size=12)), max_size=14).map(" ".join),
    st.lists(st.tuples(WORDS, st.text(max_size=20)), max_size=8).map(
        lambda pairs: "schedule " + " ".join(f"{k}{v}" for k, v in pairs)
    ),
)
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(["campaign_id", "hash", "scope", "before"]) | st.text(max_size=8),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)
# A button's value as it arrives: usually a string (maybe JSON), sometimes not a string at all.
BUTTON_VALUES = st.one_of(
    st.text(max_size=200),
    JSON_VALUES.map(json.dumps),
    JSON_VALUES,
    st.just("x" * 5000),
)
ACTION_IDS = sorted({getattr(blocks, name) for name in dir(blocks) if name.startswith("ACTION_")})


# --- the tests ---------------------------------------------------------------------------------


@EXAMPLES
@given(text=COMMAND_TEXT, user=USERS)
def test_command_text(live: Live, text: str, user: str) -> None:
    async def post() -> Any:
        response, _ = await live.stack.slash(text, user=user)
        return response

    check_answer(live, post())


@EXAMPLES
@given(
    values=st.dictionaries(
        st.sampled_from(BLOCK_IDS),
        st.one_of(st.text(max_size=80), st.none(), COMMAND_TEXT),
        max_size=len(BLOCK_IDS),
    ),
    user=USERS,
)
def test_schedule_modal_submissions(live: Live, values: dict[str, str | None], user: str) -> None:
    state = {block: {block: text_input(value)} for block, value in values.items()}
    try:
        parse_schedule_submission(
            state, today=live.stack.clock().date(), max_devices=100_000, file_text=None
        )
    except RequestError:
        pass
    else:
        assume(False)  # a valid request would rightly create a campaign: not garbage
    body = view_submission_body(SCHEDULE_CALLBACK_ID, state, user_id=user)
    check_answer(live, live.stack.post_slack(body))


@EXAMPLES
@given(
    metadata=st.one_of(st.text(max_size=100), JSON_VALUES.map(json.dumps)),
    reason=st.text(max_size=100),
    user=USERS,
)
def test_reject_modal_submissions(live: Live, metadata: str, reason: str, user: str) -> None:
    values = {"reason": {"reason": text_input(reason)}}
    body = view_submission_body(
        blocks.REJECT_MODAL_CALLBACK_ID, values, user_id=user, private_metadata=metadata
    )
    check_answer(live, live.stack.post_slack(body))


@EXAMPLES
@given(action_id=st.sampled_from(ACTION_IDS), value=BUTTON_VALUES, user=USERS)
def test_button_payloads(live: Live, action_id: str, value: Any, user: str) -> None:
    stack = live.stack
    url = stack.standin.new_response_url(user_id=user)
    card = stack.root(0).to_slack()
    body = block_action_body(
        action_id,
        "placeholder",
        user_id=user,
        channel_id=CHANNEL,
        message_ts=card["ts"],
        response_url=url,
    )
    # Put the garbage in as JSON allows, whatever its type: Slack's own clients only send strings.
    payload = json.loads(dict(_form(body))["payload"])
    payload["actions"][0]["value"] = value
    check_answer(live, stack.post_slack(_encode(payload)))


@EXAMPLES
@given(body=st.one_of(st.binary(max_size=300), JSON_VALUES.map(lambda v: json.dumps(v).encode())))
def test_callback_bodies(live: Live, body: bytes) -> None:
    url = f"/thingspace/callbacks/{live.stack.rt.callback_token}"
    check_answer(live, live.stack.http.post(url, content=body))


def _near_miss(thingspace_id: str) -> st.SearchStrategy[Any]:
    """Callbacks shaped like ThingSpace's, about the real campaign, with garbage in the fields."""
    device = st.fixed_dictionaries(
        {
            "campaignId": st.just(thingspace_id),
            "deviceId": st.text(max_size=20) | st.integers(),
            "status": st.text(max_size=30) | st.integers() | st.none(),
            "reason": st.text(max_size=30) | st.none(),
            "timestamp": st.text(max_size=30) | st.integers(),
        }
    )
    campaign = st.fixed_dictionaries(
        {
            "campaignId": st.just(thingspace_id),
            "status": st.text(max_size=30).filter(lambda s: not s.startswith("Campaign"))
            | st.integers()
            | st.none()
            | JSON_VALUES,
            "type": st.sampled_from(["CampaignStatus", "DeviceStatus", "", "x"]),
        }
    )
    return st.one_of(device, campaign, st.lists(device | campaign, max_size=5))


@EXAMPLES
@given(data=st.data())
def test_callbacks_about_a_real_campaign_with_garbage_fields(
    live: Live, data: st.DataObject
) -> None:
    stack = live.stack
    campaign = stack.rt.store.campaign(2)
    assert campaign.thingspace_id
    state = campaign.state
    payload = data.draw(_near_miss(campaign.thingspace_id))
    url = f"/thingspace/callbacks/{stack.rt.callback_token}"
    # ThingSpace's own status text for the campaign is kept for display even when unknown; the
    # state, its audit trail and the devices must not move.
    check_answer(
        live, stack.http.post(url, json=payload), campaign_columns="id, state, thingspace_id"
    )
    assert stack.rt.store.campaign(2).state is state


def _form(body: bytes) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(body.decode("ascii"))


def _encode(payload: dict[str, Any]) -> bytes:
    from urllib.parse import urlencode

    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode("ascii")
