"""read_limited on scripted ASGI messages: the body whole, chunk by chunk, over the limit, a
sender gone mid-body, and the request's stream spent afterwards."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import ClientDisconnect, Request

from bot.request_body import read_limited


def request_of(messages: list[dict[str, Any]], headers: list[tuple[bytes, bytes]] | None = None) -> tuple[Request, list[int]]:
    pulled = [0]

    async def receive() -> dict[str, Any]:
        pulled[0] += 1
        if pulled[0] > len(messages):
            raise AssertionError("read past the last message: it would wait for ever")
        return messages[pulled[0] - 1]

    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers or []}
    return Request(scope, receive), pulled


def body(data: bytes, more: bool = False) -> dict[str, Any]:
    return {"type": "http.request", "body": data, "more_body": more}


async def test_the_body_in_chunks_is_joined_and_the_stream_is_spent_after() -> None:
    request, pulled = request_of([body(b'{"a":', True), body(b"", True), body(b" 1}")])
    assert await read_limited(request, 100) == b'{"a": 1}'
    assert pulled[0] == 3
    with pytest.raises(RuntimeError, match="Stream consumed"):
        await request.body()


async def test_over_the_limit_stops_reading_at_the_chunk_that_crosses_it() -> None:
    request, pulled = request_of([body(b"x" * 60, True), body(b"x" * 60, True), body(b"x")])
    assert await read_limited(request, 100) is None
    assert pulled[0] == 2


async def test_a_declared_length_over_the_limit_reads_nothing() -> None:
    request, pulled = request_of([body(b"x")], headers=[(b"content-length", b"101")])
    assert await read_limited(request, 100) is None
    assert pulled[0] == 0


async def test_a_sender_gone_mid_body_is_a_client_disconnect() -> None:
    request, _ = request_of([body(b"{", True), {"type": "http.disconnect"}])
    with pytest.raises(ClientDisconnect):
        await read_limited(request, 100)
