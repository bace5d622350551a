"""ThingSpace misbehaving during a submission, end to end.

Each test requests a campaign with a signed `/fota schedule`, approves it with a signed click,
and lets the submission meet one fault: 500, 503, 429 with Retry-After, refused connections, an
answer that comes after the timeout, a 401 cured by a fresh token, an expired M2M session. Each
asserts what ThingSpace ended up with (never two campaigns) and what the thread shows.

Nothing waits on real time: the ThingSpace client's back-off sleeps are recorded instead of
slept, and a "retry in 30 s" job runs when the test moves the bot's clock (in tests the
scheduler's one-off jobs run from `settle()` by that clock).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import httpx

from commands import blocks
from storage.states import CampaignState
from tests.support.stack import ANN, FIRMWARE, REQUESTER, Stack, running_stack

SCHEDULE_PATH = "/api/fota/v3/campaigns/firmware/"
TOKEN_PATH = "/api/ts/v1/oauth2/token"
SCHEDULE = (
    f"schedule firmware={FIRMWARE} from=SR1.2.0.0-10512 to=SR1.2.0.0-10657 "
    "start=today end=+3d devices=354658090353977,490154203237518"
)


class Sleeps:
    """Stands in for the client's asyncio.sleep: records each back-off, returns at once."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


def quiet(stack: Stack) -> Sleeps:
    """No real waiting: record the client's back-offs instead of sleeping them. (In tests the
    scheduler does not run by itself: `settle()` runs the jobs due by the bot's clock.)"""
    sleeps = Sleeps()
    stack.rt.thingspace._sleep = sleeps
    return sleeps


async def requested(stack: Stack) -> None:
    """The request is on its card (pre-flight done); faults are set after this, so they meet
    the submission, not the checks before the card."""
    response, _ = await stack.slash(SCHEDULE)
    assert response.status_code == 200
    await stack.settle()


async def approved(stack: Stack) -> None:
    response, _ = await stack.click(blocks.ACTION_APPROVE, user=ANN)
    assert response.status_code == 200
    await stack.settle()


async def run_retry_job(stack: Stack, expected_delay: float) -> None:
    """Move the bot's clock to the retry, checking it is not tried a second before it is due."""
    due = stack.rt.jobs.run_date("submit:1")
    assert due == stack.clock() + dt.timedelta(seconds=expected_delay), (
        "no retry at the expected time"
    )
    tried = schedule_attempts(stack)
    stack.clock.advance(seconds=expected_delay - 1)
    await stack.settle()
    assert schedule_attempts(stack) == tried
    stack.clock.advance(seconds=1)
    await stack.settle()
    assert stack.rt.jobs.run_date("submit:1") is None


def replies(stack: Stack) -> list[str]:
    return stack.thread_texts()[1:]  # [0] is the card


def schedule_attempts(stack: Stack) -> int:
    """Schedule POSTs that reached ThingSpace, whether it processed them or not."""
    return sum(
        1
        for method, path in stack.sandbox.request_log
        if method == "POST" and path.startswith(SCHEDULE_PATH)
    )


def assert_one_campaign_submitted(stack: Stack) -> None:
    assert len(stack.sandbox.campaigns) == 1
    campaign = stack.rt.store.campaign(1)
    assert campaign.state is CampaignState.SUBMITTED
    assert campaign.thingspace_id == stack.sandbox.campaigns[0].id
    accepted = [t for t in replies(stack) if "accepted Ref FB-1" in t]
    assert len(accepted) == 1 and campaign.thingspace_id in accepted[0]
    dms = [m.text for m in stack.standin.messages(stack.standin.dm_channel(REQUESTER))]
    assert sum("Ref FB-1 was submitted" in t for t in dms) == 1


def delayed_replies(stack: Stack) -> list[str]:
    return [t for t in replies(stack) if "is not at ThingSpace yet" in t]


class Refusing(httpx.AsyncBaseTransport):
    """ThingSpace's host refusing connections while `down`: nothing is ever sent."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner = inner
        self.down = True
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            self.refused += 1
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return await self.inner.handle_async_request(request)


class AnswerLost(httpx.AsyncBaseTransport):
    """The first schedule POST is processed by ThingSpace, but the answer comes after the
    client's read timeout: the client sees httpx.ReadTimeout, exactly as on the network."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner = inner
        self.timed_out = False
        # What happens at ThingSpace while the client waits in vain (nothing by default).
        self.meanwhile: Callable[[], object] = lambda: None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if (
            not self.timed_out
            and request.method == "POST"
            and request.url.path.startswith(SCHEDULE_PATH)
        ):
            self.timed_out = True
            await response.aread()
            self.meanwhile()
            raise httpx.ReadTimeout("timed out", request=request)
        return response


async def test_a_500_is_ambiguous_so_the_bot_looks_first_then_retries_later(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        quiet(stack)
        await requested(stack)
        stack.sandbox.fail_next(SCHEDULE_PATH, 500)
        await approved(stack)

        # A 500 may mean "created, answer lost": never re-POSTed blindly.
        assert schedule_attempts(stack) == 1
        assert stack.sandbox.campaigns == []
        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTING
        lookups = [p for _, p in stack.sandbox.request_log if p.endswith("/firmware/campaigns")]
        assert lookups, "the bot should have looked the campaign up by name"
        [delayed] = delayed_replies(stack)
        assert "HTTP 500" in delayed and "Trying again in 30 s" in delayed

        # At the retry it only looks: ThingSpace's reports may lag behind a new campaign.
        assert stack.rt.jobs.run_date("submit:1") == stack.clock() + dt.timedelta(seconds=30)
        stack.clock.advance(seconds=30)
        await stack.settle()
        assert schedule_attempts(stack) == 1
        assert stack.rt.jobs.run_date("submit:1") is not None  # it will look again
        # Once the grace has passed with no campaign by that name, it is sent again: once.
        stack.clock.advance(minutes=10)
        await stack.settle()
        assert schedule_attempts(stack) == 2
        assert_one_campaign_submitted(stack)
        assert len(delayed_replies(stack)) == 1  # the wait is said once, not at every retry


async def test_503_is_retried_with_backoff_then_later_and_never_twice(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        sleeps = quiet(stack)
        await requested(stack)
        # 503 says "not processed": the client may repeat the POST, 1 + 4 retries.
        stack.sandbox.fail_next(SCHEDULE_PATH, 503, count=5)
        await approved(stack)

        assert schedule_attempts(stack) == 5
        assert len(sleeps.seconds) == 4 and all(0 <= s <= 30 for s in sleeps.seconds)
        assert stack.sandbox.campaigns == []
        [delayed] = delayed_replies(stack)
        assert "HTTP 503" in delayed and "5 times" in delayed

        await run_retry_job(stack, 30)
        assert schedule_attempts(stack) == 6
        assert_one_campaign_submitted(stack)
        assert len(delayed_replies(stack)) == 1


async def test_429_waits_for_retry_after_then_succeeds(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        sleeps = quiet(stack)
        await requested(stack)
        stack.sandbox.fail_next(SCHEDULE_PATH, 429, retry_after=7)
        await approved(stack)

        assert sleeps.seconds == [7.0]  # Retry-After honoured, not a guess
        assert schedule_attempts(stack) == 2
        assert_one_campaign_submitted(stack)
        assert delayed_replies(stack) == []


async def test_refused_connections_are_retried_and_the_thread_says_it_waits(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        sleeps = quiet(stack)
        await requested(stack)
        refusing = Refusing(stack.thingspace.inner)
        stack.thingspace.inner = refusing
        await approved(stack)

        assert refusing.refused == 5 and len(sleeps.seconds) == 4
        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTING
        [delayed] = delayed_replies(stack)
        assert "Could not reach ThingSpace" in delayed and "Connection refused" in delayed

        refusing.down = False
        await run_retry_job(stack, 30)
        assert_one_campaign_submitted(stack)


async def test_an_answer_after_the_timeout_is_resolved_by_looking_the_campaign_up(
    tmp_path: Path,
) -> None:
    async with running_stack(tmp_path) as stack:
        quiet(stack)
        await requested(stack)
        lost = AnswerLost(stack.thingspace.inner)
        stack.thingspace.inner = lost
        await approved(stack)

        assert lost.timed_out
        # ThingSpace created it; the bot found it by its name instead of posting again.
        assert schedule_attempts(stack) == 1
        assert_one_campaign_submitted(stack)
        assert delayed_replies(stack) == []
        reasons = [r["reason"] for r in stack.rt.store.audit(1) if r["to_state"] == "submitted"]
        assert reasons == ["found by name after an unanswered request"]
        assert stack.rt.jobs.run_date("submit:1") is None


async def test_a_401_gets_one_fresh_token_and_the_post_goes_through(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        quiet(stack)
        await requested(stack)
        tokens_before = sum(1 for _, p in stack.sandbox.request_log if p == TOKEN_PATH)
        stack.sandbox.expire_token()  # the token the bot holds is now refused with 401
        await approved(stack)

        assert sum(1 for _, p in stack.sandbox.request_log if p == TOKEN_PATH) == tokens_before + 1
        assert schedule_attempts(stack) == 2  # the 401, then the retry with the new token
        posts = stack.thingspace.schedule_posts()
        assert posts[0].headers["authorization"] != posts[1].headers["authorization"]
        assert_one_campaign_submitted(stack)
        assert delayed_replies(stack) == []


async def test_an_expired_session_logs_in_again_once(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        quiet(stack)
        await requested(stack)
        logins_before = stack.sandbox.auth.logins
        stack.sandbox.expire_session()
        await approved(stack)

        assert stack.sandbox.auth.logins == logins_before + 1
        posts = stack.thingspace.schedule_posts()
        assert (
            len(posts) == 2 and posts[0].headers["vz-m2m-token"] != posts[1].headers["vz-m2m-token"]
        )
        assert_one_campaign_submitted(stack)
        assert delayed_replies(stack) == []


async def test_a_401_even_after_a_fresh_login_waits_and_says_why(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        quiet(stack)
        await requested(stack)
        stack.sandbox.fail_next(SCHEDULE_PATH, 401, count=2)
        await approved(stack)

        assert schedule_attempts(stack) == 2  # one fresh login, one retry, no loop
        assert stack.sandbox.campaigns == []
        [delayed] = delayed_replies(stack)
        assert "even after a fresh login" in delayed
        # No credential leaks into the explanation.
        for secret in (*stack.sandbox.auth.tokens, *stack.sandbox.auth.sessions):
            assert secret not in delayed

        await run_retry_job(stack, 30)
        assert_one_campaign_submitted(stack)


async def test_a_campaign_that_cannot_be_confirmed_or_searched_ends_with_what_to_check(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        quiet(stack)
        await requested(stack)
        stack.sandbox.fail_next(SCHEDULE_PATH, 500)
        # ThingSpace's campaign search is broken for hours: the bot can never tell.
        stack.sandbox.fail_next("/api/fota/v3/reports", 500, count=10_000)
        await approved(stack)
        for _ in range(20):
            stack.clock.advance(minutes=15)
            await stack.settle()
        campaign = stack.rt.store.campaign(1)
        assert campaign.state is CampaignState.SUBMIT_FAILED and campaign.error_code == "NO_ANSWER"
        assert campaign.thingspace_name in (campaign.error_message or "")
        assert schedule_attempts(stack) == 1  # never posted blind
        assert len(delayed_replies(stack)) == 1  # the wait said once, then the outcome
        assert any("NO_ANSWER" in t or "never confirmed" in t for t in replies(stack))
class PreScheduledUnsearchable(httpx.AsyncBaseTransport):
    """A ThingSpace that follows Verizon's SDK enum: a campaign list by CampaignPreScheduled is
    refused with a 400 (the docs' open question 3)."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.params.get("campaignStatus") == "CampaignPreScheduled":
            return httpx.Response(
                400, json={"errorCode": "INVALID_PARAMETER", "errorMessage": "Invalid campaignStatus"}
            )
        return await self.inner.handle_async_request(request)


async def test_a_lost_answer_is_never_posted_again_while_a_status_it_may_sit_in_cannot_be_searched(
    tmp_path: Path,
) -> None:
    async with running_stack(tmp_path) as stack:
        quiet(stack)
        response, _ = await stack.slash(SCHEDULE.replace("start=today", "start=+2d"))
        assert response.status_code == 200
        await stack.settle()
        lost = AnswerLost(PreScheduledUnsearchable(stack.thingspace.inner))
        stack.thingspace.inner = lost
        # By the time the client gives up waiting, ThingSpace has moved the new campaign on.
        lost.meanwhile = lambda: stack.sandbox_clock.advance(10)
        await approved(stack)
        assert lost.timed_out
        assert stack.sandbox.campaigns[0].status == "CampaignPreScheduled"
        # ThingSpace created it and holds it CampaignPreScheduled until its start date, the one
        # status the look-up cannot search: "not found" proves nothing, so never a second POST.
        for _ in range(20):
            stack.clock.advance(minutes=15)
            await stack.settle()
        assert len(stack.sandbox.campaigns) == 1
        assert schedule_attempts(stack) == 1
        # It could never tell, so it says what to look for at ThingSpace.
        campaign = stack.rt.store.campaign(1)
        assert campaign.state is CampaignState.SUBMIT_FAILED and campaign.error_code == "NO_ANSWER"
        assert campaign.thingspace_name in (campaign.error_message or "")
