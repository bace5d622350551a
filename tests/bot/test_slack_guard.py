"""`POST /slack/events` before Bolt: size, signature, timestamp and replay checks, no body in any log."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from bot.slack_guard import PASSED_KEY, Sightings
from storage.store import Store
from tests.support.slack import sign, slash_command_body
from tests.support.stack import REQUESTER, SECRET, running_stack

MARKER = "BODY-MARKER-7f3a"


async def test_a_non_numeric_timestamp_is_401_with_no_traceback(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_stack(tmp_path) as stack:
        for timestamp in ("abc", "1e9", "-5", "１２３".encode(), "", "9" * 40):
            response = await stack.http.post(
                "/slack/events",
                content=f"command=%2Ffota&text={MARKER}".encode(),
                headers={"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": "v0=00",
                         "Content-Type": "application/x-www-form-urlencoded"},
            )
            assert response.status_code == 401, timestamp
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert MARKER not in caplog.text


async def test_an_oversized_unsigned_body_is_413_counted_while_streaming_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_stack(tmp_path) as stack:
        now = str(int(time.time()))
        headers = {"X-Slack-Request-Timestamp": now, "X-Slack-Signature": "v0=00"}

        async def chunks():  # no Content-Length: the size is counted as it arrives
            for _ in range(40):
                yield (MARKER * 4096).encode()

        response = await stack.http.post("/slack/events", content=chunks(), headers=headers)
        assert response.status_code == 413
        small = await stack.http.post("/slack/events", content=f"text={MARKER}".encode(), headers=headers)
        assert small.status_code == 401
    assert MARKER not in caplog.text


async def test_a_replayed_signed_slash_command_is_not_acted_on_twice(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        response_url = stack.standin.new_response_url(user_id=REQUESTER)
        body = slash_command_body(
            "schedule firmware=SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657 "
            "devices=354658090353977",
            user_id=REQUESTER,
            response_url=response_url,
        )
        headers = sign(body, SECRET)
        first = await stack.http.post("/slack/events", content=body, headers=headers)
        await stack.settle()
        again = await stack.http.post("/slack/events", content=body, headers=headers)
        await stack.settle()
        assert first.status_code == 200 and "Checking your request" in first.text
        assert again.status_code == 200 and again.text == ""
        assert len(stack.rt.store.list_campaigns(scope="all", user=REQUESTER)) == 1
        # Still recognised by a new process on the same database.
        await stack.restart()
        after_restart = await stack.http.post("/slack/events", content=body, headers=headers)
        await stack.settle()
        assert after_restart.text == ""
        assert len(stack.rt.store.list_campaigns(scope="all", user=REQUESTER)) == 1


async def test_a_signed_request_is_verified_once_by_the_guard_not_again_by_bolt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[bytes | str] = []
    is_valid = SignatureVerifier.is_valid

    def counted(self: SignatureVerifier, body: bytes | str, timestamp: str, signature: str) -> bool:
        checks.append(body)
        return is_valid(self, body, timestamp, signature)

    monkeypatch.setattr(SignatureVerifier, "is_valid", counted)
    async with running_stack(tmp_path) as stack:
        body = slash_command_body("help", user_id=REQUESTER, response_url=stack.standin.new_response_url())
        response = await stack.http.post("/slack/events", content=body, headers=sign(body, SECRET))
        assert response.status_code == 200 and "/fota schedule" in response.text
    assert len(checks) == 1


@pytest.mark.parametrize("mark", [None, "True", True])
async def test_a_request_that_reaches_bolt_past_the_guard_is_still_verified_by_bolt(
    tmp_path: Path, mark: object
) -> None:
    # Only the guard's own mark skips Bolt's check; a look-alike value in the context does not.
    async with running_stack(tmp_path) as stack:
        body = slash_command_body("help", user_id=REQUESTER, response_url=stack.standin.new_response_url())
        headers = sign(body, SECRET)
        context = {} if mark is None else {PASSED_KEY: mark}
        forged = {**headers, "X-Slack-Signature": "v0=" + "0" * 64}
        refused = await stack.rt.bolt.async_dispatch(
            AsyncBoltRequest(body=body.decode(), headers=forged, context=dict(context))
        )
        assert refused.status == 401
        signed = await stack.rt.bolt.async_dispatch(
            AsyncBoltRequest(body=body.decode(), headers=headers, context=dict(context))
        )
        assert signed.status == 200 and "/fota schedule" in signed.body


async def test_requests_arriving_together_share_one_commit_and_a_copy_among_them_is_the_replay(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "fota.db")
    batches: list[list[tuple[str, float]]] = []

    def record(seen: Sequence[tuple[str, float]]) -> list[bool]:
        batches.append(list(seen))
        return store.first_sightings(seen)

    sightings = Sightings(record)
    first = await asyncio.gather(*(sightings.first(s, 1000.0) for s in ("v0=a", "v0=b", "v0=a")))
    assert first == [True, True, False]
    assert [len(b) for b in batches] == [3]
    # Answered only once committed: a process that dies now (nothing closed) leaves them on
    # record for the next one.
    after_crash = Store.open(tmp_path / "fota.db")
    assert await Sightings(after_crash.first_sightings).first("v0=a", 1001.0) is False
    assert await Sightings(after_crash.first_sightings).first("v0=c", 1001.0) is True
    # A later turn of the loop is a transaction of its own.
    assert await sightings.first("v0=b", 1002.0) is False
    assert [len(b) for b in batches] == [3, 1]
    store.close()
    after_crash.close()


async def test_when_the_signatures_cannot_be_recorded_every_request_waiting_is_told() -> None:
    def record(seen: Sequence[tuple[str, float]]) -> list[bool]:
        raise sqlite3.OperationalError("database or disk is full")

    sightings = Sightings(record)
    results = await asyncio.gather(sightings.first("v0=a", 1.0), sightings.first("v0=b", 1.0), return_exceptions=True)
    assert all(isinstance(r, sqlite3.OperationalError) for r in results)


async def test_the_same_signed_request_twice_at_once_is_acted_on_once(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        body = slash_command_body(
            "schedule firmware=SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657 "
            "devices=354658090353977",
            user_id=REQUESTER,
            response_url=stack.standin.new_response_url(user_id=REQUESTER),
        )
        headers = sign(body, SECRET)
        answers = await asyncio.gather(
            *(stack.http.post("/slack/events", content=body, headers=headers) for _ in range(2))
        )
        await stack.settle()
        assert sorted(r.text[:19] for r in answers) == ["", "Checking your reque"]
        assert len(stack.rt.store.list_campaigns(scope="all", user=REQUESTER)) == 1


@pytest.mark.parametrize("query", ["", "?team=T1&x=%20y"])
async def test_bolt_gets_the_request_as_its_starlette_adapter_would_build_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    from slack_bolt.adapter.starlette.async_handler import to_async_bolt_request
    from starlette.requests import Request

    seen: list[AsyncBoltRequest] = []
    async with running_stack(tmp_path) as stack:
        dispatch = stack.rt.bolt.async_dispatch

        async def recorded(req: AsyncBoltRequest) -> object:
            seen.append(req)
            return await dispatch(req)

        monkeypatch.setattr(stack.rt.bolt, "async_dispatch", recorded)
        body = slash_command_body("help", user_id=REQUESTER, response_url=stack.standin.new_response_url())
        headers = sign(body, SECRET)
        response = await stack.http.post(f"/slack/events{query}", content=body, headers=headers)
        assert response.status_code == 200 and "/fota schedule" in response.text
    [req] = seen
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/slack/events",
        "query_string": query.lstrip("?").encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in {**headers, "content-length": str(len(body))}.items()],
    }
    adapters = to_async_bolt_request(Request(scope), body)
    assert (req.raw_body, req.query, req.body) == (adapters.raw_body, adapters.query, adapters.body)
    assert {k: v for k, v in req.headers.items() if k.startswith("x-slack")} == {
        k: v for k, v in adapters.headers.items() if k.startswith("x-slack")
    }
