"""Slack misbehaving, or someone pretending to be Slack.

- A request with a wrong signature, a stale or future timestamp, or no signature at all gets
  401 and changes nothing (Bolt's check, five-minute window).
- A redelivery (`X-Slack-Retry-Num`) of a command or a click does not act twice.
- Slack's Web API answering 429 is waited out: the outbox (whose client has no sleeping
  rate-limit handler of its own) pauses every queued update until Retry-After has passed on
  the bot's clock. Nothing is lost and the root card's edit is not sent twice.
- Slack down (503) for a while: updates wait in the outbox and all go out once it is back.
"""

from __future__ import annotations

import time
from pathlib import Path

from commands import blocks
from storage.states import CampaignState
from tests.support.slack import block_action_body, sign, slash_command_body
from tests.support.stack import ANN, CHANNEL, FIRMWARE, REQUESTER, SECRET, Stack, running_stack

SCHEDULE = (
    f"schedule firmware={FIRMWARE} from=SR1.2.0.0-10512 to=SR1.2.0.0-10657 "
    "start=today end=+3d devices=354658090353977"
)


async def requested(stack: Stack) -> None:
    response, _ = await stack.slash(SCHEDULE)
    assert response.status_code == 200
    await stack.settle()


def ok_calls(stack: Stack, method: str) -> int:
    return sum(1 for c in stack.standin.calls_to(method) if c.ok)


def replies(stack: Stack) -> list[str]:
    return stack.thread_texts()[1:]


# --- signatures ------------------------------------------------------------------------------


async def test_forged_stale_future_and_unsigned_requests_get_401_and_change_nothing(
    tmp_path: Path,
) -> None:
    async with running_stack(tmp_path) as stack:
        command = slash_command_body(SCHEDULE, user_id=REQUESTER)
        click = block_action_body(
            blocks.ACTION_APPROVE,
            '{"campaign_id":1,"hash":"x"}',
            user_id=ANN,
            channel_id=CHANNEL,
            message_ts="1.2",
        )
        now = int(time.time())
        for body in (command, click):
            for headers in (
                sign(body, "not-the-signing-secret"),
                sign(body, SECRET, timestamp=now - 6 * 60),  # replayed after Bolt's 5-minute window
                sign(body, SECRET, timestamp=now + 6 * 60),
                {"Content-Type": "application/x-www-form-urlencoded"},
            ):
                response = await stack.http.post("/slack/events", content=body, headers=headers)
                assert response.status_code == 401, headers
            # The body itself altered after signing (a valid signature of another body).
            tampered = sign(body, SECRET)
            response = await stack.http.post(
                "/slack/events", content=body + b"&x=1", headers=tampered
            )
            assert response.status_code == 401
        await stack.settle()
        assert stack.rt.store.list_campaigns(scope="all") == []
        assert [c.method for c in stack.standin.calls] == []


# --- redeliveries ----------------------------------------------------------------------------


async def test_a_redelivered_schedule_command_creates_one_campaign(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        url = stack.standin.new_response_url(user_id=REQUESTER)
        body = slash_command_body(SCHEDULE, user_id=REQUESTER, response_url=url)
        first = await stack.post_slack(body)
        again = await stack.post_slack(body, retry_num=1, retry_reason="http_timeout")
        assert (first.status_code, again.status_code) == (200, 200)
        await stack.settle()
        assert len(stack.rt.store.list_campaigns(scope="all")) == 1
        assert len([m for m in stack.standin.messages(CHANNEL) if not m.is_reply]) == 1


async def test_a_redelivered_approval_click_does_not_act_twice(tmp_path: Path) -> None:
    async with running_stack(tmp_path, FOTA_REQUIRED_APPROVALS="2") as stack:
        await requested(stack)
        card = stack.root().to_slack()
        url = stack.standin.new_response_url(user_id=ANN)
        body = block_action_body(
            blocks.ACTION_APPROVE, user_id=ANN, channel_id=CHANNEL, message=card, response_url=url
        )
        assert (await stack.post_slack(body)).status_code == 200
        await stack.settle()
        answered = len(stack.answers(url))
        for retry in (1, 2, 3):  # Slack retries up to three times
            assert (await stack.post_slack(body, retry_num=retry)).status_code == 200
        await stack.settle()
        assert len(stack.rt.store.decisions(1)) == 1
        assert len(stack.answers(url)) == answered  # not even an "already approved" reply
        assert stack.rt.store.campaign(1).state is CampaignState.PENDING_APPROVAL
        assert stack.thingspace.schedule_posts() == []


# --- rate limits and outages -----------------------------------------------------------------


async def test_a_429_pauses_every_update_until_retry_after_then_sends_each_once(
    tmp_path: Path,
) -> None:
    async with running_stack(tmp_path) as stack:
        await requested(stack)
        root = stack.root()
        edits_before = len(root.edits)
        updates_before = ok_calls(stack, "chat.update")
        replies_before = len(replies(stack))

        stack.standin.rate_limit_next(None, count=1, retry_after=30)
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()

        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTED  # ThingSpace got it
        # ... but Slack said wait: nothing was sent after the 429, everything is kept.
        [limited_at] = [i for i, c in enumerate(stack.standin.calls) if c.status == 429]
        assert stack.standin.calls[limited_at].method == "chat.update"  # the approval stamp
        assert [c.method for c in stack.standin.calls[limited_at + 1 :]] == []
        assert len(replies(stack)) == replies_before and len(root.edits) == edits_before
        assert stack.rt.sender.outbox.pending_count() > 0

        stack.clock.advance(seconds=29)
        await stack.settle()
        assert [c.method for c in stack.standin.calls[limited_at + 1 :]] == []

        stack.clock.advance(seconds=1)
        await stack.settle()
        assert stack.rt.sender.outbox.pending_count() == 0
        texts = replies(stack)
        assert sum("approved by" in t for t in texts) == 1
        assert sum("accepted Ref FB-1" in t for t in texts) == 1
        dms = [m.text for m in stack.standin.messages(stack.standin.dm_channel(REQUESTER))]
        assert (
            sum("was approved" in t for t in dms) == 1
            and sum("was submitted" in t for t in dms) == 1
        )
        # The card's two pending edits (approval stamp, then "submitted") were one row by then:
        # one edit went out, showing the latest state; the refused one was not sent again.
        assert len(root.edits) == edits_before + 1
        assert stack.rt.store.campaign(1).thingspace_id in str(root.blocks)
        assert ok_calls(stack, "chat.update") == updates_before + 1


async def test_repeated_429s_are_each_waited_out(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await requested(stack)
        stack.standin.rate_limit_next("chat.postMessage", count=3, retry_after=10)
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        for _ in range(3):
            calls = len(stack.standin.calls)
            stack.clock.advance(seconds=9)
            await stack.settle()
            assert len(stack.standin.calls) == calls, "sent before Retry-After had passed"
            stack.clock.advance(seconds=1)
            await stack.settle()
        assert stack.standin.rate_limited_count == 3
        assert stack.rt.sender.outbox.pending_count() == 0
        assert sum("accepted Ref FB-1" in t for t in replies(stack)) == 1


async def test_slack_down_for_a_while_loses_nothing(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await requested(stack)
        stack.standin.down()
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTED
        assert sum("accepted Ref FB-1" in t for t in replies(stack)) == 0
        pending = stack.rt.sender.outbox.pending_count()
        assert pending > 0

        stack.standin.down(False)
        # The outbox backs off for at most max_backoff (300 s) per attempt.
        for _ in range(10):
            stack.clock.advance(seconds=300)
            await stack.settle()
            if stack.rt.sender.outbox.pending_count() == 0:
                break
        assert stack.rt.sender.outbox.pending_count() == 0
        assert sum("approved by" in t for t in replies(stack)) == 1
        assert sum("accepted Ref FB-1" in t for t in replies(stack)) == 1
