"""A rollout halted while one of its waves waits on an unanswered schedule POST.

The guard refuses to send a wave of a halted rollout, rightly; but a POST that went out before
the halt may have created the campaign at ThingSpace, and that campaign starts on its date
whatever the bot thinks. So the bot still looks it up by name (a look-up sends nothing): found,
it is known (its ThingSpace id, followed, cancellable); not found once ThingSpace's reports had
time to show it, it ends as never sent. It is never posted again.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from bot.standins.thingspace import sandbox_imeis
from commands import blocks
from storage import waves
from storage.states import CampaignState
from tests.e2e.test_faults_thingspace import SCHEDULE_PATH, AnswerLost, quiet
from tests.e2e.test_rollout import schedule_text
from tests.support.stack import ANN, BOB, Stack, running_stack

S = CampaignState


class SearchDown(httpx.AsyncBaseTransport):
    """ThingSpace's campaign search answering 503 while `down`; everything else goes through."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner = inner
        self.down = True

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down and request.method == "GET" and "/reports/" in request.url.path:
            return httpx.Response(503, json={"errorCode": "UNAVAILABLE", "errorMessage": "try later"})
        return await self.inner.handle_async_request(request)


async def _wave_one_ended(stack: Stack) -> None:
    response, _ = await stack.slash(schedule_text(sandbox_imeis(8)) + " canary=2 waves=50%,100%")
    assert response.status_code == 200
    await stack.settle()
    await stack.click(blocks.ACTION_APPROVE, user=ANN)
    await stack.settle()
    await stack.run_sandbox(60, step=2.0)
    stack.clock.advance(seconds=60)
    await stack.settle()


def _posts(stack: Stack) -> int:
    return len(stack.thingspace.schedule_posts())


def _wave(stack: Stack, number: int) -> int:
    stored = waves.load(stack.rt.store.db, 1)
    assert stored is not None
    ident = stored.wave(number).campaign_id
    assert ident is not None
    return ident


async def _retries_run_out(stack: Stack) -> None:
    for _ in range(20):
        stack.clock.advance(minutes=15)
        await stack.settle()


async def test_a_wave_created_by_a_lost_post_before_the_halt_is_found_not_left_unknown(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        quiet(stack)
        await _wave_one_ended(stack)
        # Wave 2's POST is processed by ThingSpace, its answer lost; the search is down, so the
        # bot cannot tell yet and waits to look again.
        search = SearchDown(stack.thingspace.inner)
        stack.thingspace.inner = AnswerLost(search)
        await stack.rt.service.promote(1, 2, user=BOB)
        await stack.settle()
        second = _wave(stack, 2)
        assert stack.rt.store.campaign(second).state is S.SUBMITTING
        assert len(stack.sandbox.campaigns) == 2  # wave 2 exists at ThingSpace

        waves.halt(stack.rt.store, 1, by=ANN, reason="battery drain on the canary")
        search.down = False
        await _retries_run_out(stack)

        wave = stack.rt.store.campaign(second)
        assert wave.state is not S.SUBMITTING, "the bot never looked: a live campaign it does not know"
        assert wave.thingspace_id == stack.sandbox.campaigns[1].id
        assert _posts(stack) == 2  # never posted again after the halt


async def test_a_wave_whose_post_was_not_processed_before_the_halt_ends_as_never_sent(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        quiet(stack)
        await _wave_one_ended(stack)
        stack.sandbox.fail_next(SCHEDULE_PATH, 500)  # ambiguous: it may have been created
        await stack.rt.service.promote(1, 2, user=BOB)
        await stack.settle()
        second = _wave(stack, 2)
        assert stack.rt.store.campaign(second).state is S.SUBMITTING

        waves.halt(stack.rt.store, 1, by=ANN, reason="battery drain on the canary")
        await _retries_run_out(stack)

        wave = stack.rt.store.campaign(second)
        assert wave.state is S.SUBMIT_FAILED
        assert "halted" in (wave.error_message or "")
        assert len(stack.sandbox.campaigns) == 1 and _posts(stack) == 2  # never posted again


def test_never_sent_reads_as_the_bots_word_not_thingspaces() -> None:
    assert blocks.LOCAL_ERROR_CODES >= {"NOT_SENT"}


async def test_a_wave_claimed_before_the_halt_is_not_sent_by_a_restart_after_a_resume(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        quiet(stack)
        await _wave_one_ended(stack)
        # Wave 2 is claimed; ThingSpace answers 503 (processed nothing): a retry is due later.
        stack.sandbox.fail_next(SCHEDULE_PATH, 503, count=5)
        await stack.rt.service.promote(1, 2, user=BOB)
        await stack.settle()
        second = _wave(stack, 2)
        assert stack.rt.store.campaign(second).state is S.SUBMITTING

        waves.halt(stack.rt.store, 1, by=ANN, reason="battery drain on the canary")
        await _retries_run_out(stack)
        assert stack.rt.store.campaign(second).state is S.SUBMIT_FAILED  # never sent: the halt came first

        # An approver resumes; the next restart must not send the wave the halt stopped.
        assert stack.rt.staged is not None
        await stack.rt.staged.resume(1, user=BOB, reason="false alarm", halted_at=None)
        await stack.restart()
        await stack.settle()
        assert len(stack.sandbox.campaigns) == 1
        assert stack.rt.store.campaign(second).state is S.SUBMIT_FAILED
