"""The callback endpoint on the real store: checks in the receiver's order (token, source,
size, JSON), a 200 only once the row is committed."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request

from bot.callbacks.receiver import MAX_BODY, GroupCommit, callback_route, client_address
from bot.settings import IPNetwork
from storage.store import Store

TOKEN = "cb_9f2Jd8sLq0WmZ4xYt7Rk1Np6Hv3Bc5Ge"
PATH = f"/thingspace/callbacks/{TOKEN}"
VERIZON = "3.87.163.45"
PROXY = "10.0.0.5"
DEVICE_CHANGE = (
    '{"accountName": "0642233522-00001", "campaignId": "c-1", "deviceId": "990013907835573",'
    ' "status": "UpgradeFailed", "reason": "Rova \u00e9chec", "type": "DeviceStatus",'
    ' "timestamp": "2026-11-26T09:00:00.000Z"}'
)


def nets(*texts: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(t) for t in texts)


class Wakes:
    """A recording on_stored."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


def app_for(store: Store, wakes: Wakes | None = None, **options: Any) -> Starlette:
    return Starlette(
        routes=[callback_route(token=TOKEN, store=store, on_stored=wakes or Wakes(), **options)]
    )


def client_for(app: Starlette, host: str = VERIZON) -> httpx.AsyncClient:
    """A client whose requests reach the app from `host`, as the ASGI server would report it."""
    transport = httpx.ASGITransport(app=app, client=(host, 40123))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(store: Store, wakes: Wakes) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app_for(store, wakes)) as c:
        yield c


def stored(store: Store) -> list[tuple[str, str | None]]:
    return [
        (r[0], r[1])
        for r in store.db.execute("SELECT body, remote_addr FROM callbacks ORDER BY id")
    ]


# --- the happy path -------------------------------------------------------------------------------


async def test_right_token_stores_the_raw_body_exactly(
    client: httpx.AsyncClient, store: Store, wakes: Wakes
) -> None:
    response = await client.post(
        PATH, content=DEVICE_CHANGE.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    # Byte for byte: spacing, key order and non-ASCII text as sent.
    assert stored(store) == [(DEVICE_CHANGE, VERIZON)]
    assert wakes.count == 1


async def test_any_json_is_kept_even_shapes_nobody_knows(
    client: httpx.AsyncClient, store: Store
) -> None:
    for body in ('{"surprise": [1, 2]}', "[]", '"just a string"', "null", "42"):
        assert (await client.post(PATH, content=body)).status_code == 200
    assert [b for b, _ in stored(store)] == [
        '{"surprise": [1, 2]}',
        "[]",
        '"just a string"',
        "null",
        "42",
    ]


async def test_content_type_is_not_required(client: httpx.AsyncClient, store: Store) -> None:
    assert (
        await client.post(PATH, content=b"{}", headers={"content-type": "text/plain"})
    ).status_code == 200
    assert len(stored(store)) == 1


async def test_a_200_means_committed(client: httpx.AsyncClient, db_path: Path) -> None:
    await client.post(PATH, content=DEVICE_CHANGE)
    # A second connection sees the row: it is not sitting in an open transaction.
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("SELECT body FROM callbacks").fetchall() == [(DEVICE_CHANGE,)]
    finally:
        other.close()


async def test_on_stored_is_called_once_per_commit(
    client: httpx.AsyncClient, wakes: Wakes
) -> None:
    for _ in range(3):  # one after the other: a commit each
        await client.post(PATH, content=b"{}")
    assert wakes.count == 3
    await client.post(PATH, content=b"not json")
    await client.post("/thingspace/callbacks/wrong-token-0123456789", content=b"{}")
    assert wakes.count == 3


async def test_a_failing_wake_up_still_answers_200_and_keeps_the_row(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> None:
        raise RuntimeError("processor gone")

    app = Starlette(routes=[callback_route(token=TOKEN, store=store, on_stored=broken)])
    async with client_for(app) as c:
        assert (await c.post(PATH, content=b"{}")).status_code == 200
    assert len(stored(store)) == 1
    assert "waking the callback processor failed" in caplog.text


async def test_a_leading_bom_is_not_part_of_the_json(
    client: httpx.AsyncClient, store: Store
) -> None:
    assert (
        await client.post(PATH, content=b"\xef\xbb\xbf" + DEVICE_CHANGE.encode())
    ).status_code == 200
    assert stored(store)[0][0] == DEVICE_CHANGE


async def test_only_post(client: httpx.AsyncClient, store: Store) -> None:
    assert (await client.get(PATH)).status_code == 405
    assert stored(store) == []


def test_an_empty_token_is_refused_at_build_time(store: Store) -> None:
    with pytest.raises(ValueError):
        callback_route(token="", store=store)


# --- token (404) ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        "wrong-token-0123456789",
        TOKEN[:-1],  # a prefix
        TOKEN + "x",  # longer
        TOKEN.upper(),
        "%C3%A9" + TOKEN[1:],  # non-ASCII after decoding
        "%ED%A0%80",  # a lone surrogate after decoding must not crash the compare
    ],
)
async def test_wrong_token_is_404_and_stores_nothing(
    client: httpx.AsyncClient, store: Store, wakes: Wakes, given: str
) -> None:
    response = await client.post(f"/thingspace/callbacks/{given}", content=DEVICE_CHANGE)
    assert response.status_code == 404
    assert response.text == "Not Found"
    assert stored(store) == []
    assert wakes.count == 0


async def test_wrong_token_looks_like_any_unknown_path(client: httpx.AsyncClient) -> None:
    wrong = await client.post("/thingspace/callbacks/wrong-token-0123456789", content=b"{}")
    unknown = await client.post("/no/such/path", content=b"{}")
    assert (wrong.status_code, wrong.text, wrong.headers["content-type"]) == (
        unknown.status_code,
        unknown.text,
        unknown.headers["content-type"],
    )


async def test_token_is_checked_before_anything_else(store: Store) -> None:
    app = app_for(store, allowed_networks=nets("3.87.163.45/32"), max_body=10)
    async with client_for(app, host="6.6.6.6") as c:
        # Not allowed, too large and not JSON: the token still decides first.
        assert (
            await c.post("/thingspace/callbacks/wrong-token-0123456789", content=b"x" * 100)
        ).status_code == 404


async def test_the_404_and_the_logs_never_show_the_real_token(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    almost = TOKEN[:-1] + "Z"
    response = await client.post(f"/thingspace/callbacks/{almost}", content=b"{}")
    assert response.status_code == 404
    assert TOKEN not in response.text and TOKEN not in str(response.headers)
    assert almost not in response.text  # nor the one it tried
    await client.post(PATH, content=b"{}")
    assert "wrong token" in caplog.text
    # The test's own HTTP client logs the URLs it calls; everything on the server side is checked.
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert server_side
    assert all(TOKEN not in r.getMessage() and TOKEN not in str(r.args) for r in server_side)


async def test_the_body_is_never_logged_at_info(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret_body = '{"campaignId": "c", "password": "callback-password-xyz"}'
    await client.post(PATH, content=secret_body)
    await client.post(PATH, content="callback-password-xyz, not json")
    assert not [
        r
        for r in caplog.records
        if r.levelno >= logging.INFO and "callback-password-xyz" in r.getMessage()
    ]
    debug = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.DEBUG and r.name == "bot.callbacks"
    ]
    assert f"callback stored: {len(secret_body)} bytes from {VERIZON}" in debug


# --- source allow-list (403) ----------------------------------------------------------------------


async def test_allow_list_admits_listed_sources(store: Store, wakes: Wakes) -> None:
    app = app_for(store, wakes, allowed_networks=nets("3.87.163.45/32", "54.197.0.0/16"))
    for host in (VERIZON, "54.197.62.209"):
        async with client_for(app, host=host) as c:
            assert (await c.post(PATH, content=b"{}")).status_code == 200
    assert [r for _, r in stored(store)] == [VERIZON, "54.197.62.209"]


async def test_allow_list_refuses_others_and_stores_nothing(
    store: Store, wakes: Wakes, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_for(store, wakes, allowed_networks=nets("3.87.163.45/32"))
    async with client_for(app, host="6.6.6.6") as c:
        response = await c.post(PATH, content=b"{}")
    assert response.status_code == 403
    assert response.json() == {"error": "source address not allowed"}
    assert stored(store) == []
    assert wakes.count == 0
    assert "6.6.6.6 is not in the allowed source networks" in caplog.text


async def test_allow_list_with_ipv6_and_ipv4_mapped_peers(store: Store) -> None:
    app = app_for(store, allowed_networks=nets("3.87.163.45/32", "2001:db8::/32"))
    for host, status in (("2001:db8::7", 200), ("::ffff:3.87.163.45", 200), ("2001:db9::1", 403)):
        async with client_for(app, host=host) as c:
            assert (await c.post(PATH, content=b"{}")).status_code == status, host
    assert [r for _, r in stored(store)] == ["2001:db8::7", VERIZON]


async def test_a_peer_that_is_not_an_address_is_refused_by_an_allow_list(store: Store) -> None:
    app = app_for(store, allowed_networks=nets("0.0.0.0/0", "::/0"))
    async with client_for(app, host="testclient") as c:
        assert (await c.post(PATH, content=b"{}")).status_code == 403


async def test_no_allow_list_admits_anyone(store: Store) -> None:
    async with client_for(app_for(store), host="6.6.6.6") as c:
        assert (await c.post(PATH, content=b"{}")).status_code == 200
    assert stored(store) == [("{}", "6.6.6.6")]


# --- X-Forwarded-For ------------------------------------------------------------------------------


def proxied_app(store: Store, wakes: Wakes | None = None) -> Starlette:
    return app_for(
        store, wakes, allowed_networks=nets("3.87.163.45/32"), trusted_proxies=nets("10.0.0.0/8")
    )


async def test_forwarded_for_is_honoured_from_a_trusted_proxy(store: Store) -> None:
    async with client_for(proxied_app(store), host=PROXY) as c:
        assert (
            await c.post(PATH, content=b"{}", headers={"x-forwarded-for": VERIZON})
        ).status_code == 200
    assert stored(store) == [("{}", VERIZON)]


async def test_forged_left_entries_are_ignored_right_most_untrusted_wins(store: Store) -> None:
    async with client_for(proxied_app(store), host=PROXY) as c:
        # The sender wrote "3.87.163.45"; our proxy appended the real peer 6.6.6.6.
        forged = await c.post(
            PATH, content=b"{}", headers={"x-forwarded-for": f"{VERIZON}, 6.6.6.6"}
        )
        assert forged.status_code == 403
        # A chain of our own proxies is skipped: the client is the first hop that is not ours.
        chained = await c.post(
            PATH, content=b"{}", headers={"x-forwarded-for": f"6.6.6.6, {VERIZON}, 10.1.1.1"}
        )
        assert chained.status_code == 200
    assert stored(store) == [("{}", VERIZON)]


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(store: Store) -> None:
    async with client_for(proxied_app(store), host="6.6.6.6") as c:
        assert (
            await c.post(PATH, content=b"{}", headers={"x-forwarded-for": VERIZON})
        ).status_code == 403
    async with client_for(app_for(store), host="6.6.6.6") as c:
        await c.post(PATH, content=b"{}", headers={"x-forwarded-for": VERIZON})
    assert stored(store) == [("{}", "6.6.6.6")]


def request_from(peer: str | None, *forwarded: str) -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": PATH,
        "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded],
        "client": (peer, 4000) if peer is not None else None,
    }
    return Request(scope)


TRUSTED = nets("10.0.0.0/8", "fd00::/8")


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        (VERIZON, (), VERIZON),
        ("6.6.6.6", ("1.2.3.4",), "6.6.6.6"),  # not a proxy: header ignored
        (PROXY, (), PROXY),  # the proxy itself, nothing forwarded
        (PROXY, ("1.2.3.4",), "1.2.3.4"),
        (PROXY, ("9.9.9.9, 1.2.3.4",), "1.2.3.4"),
        (PROXY, ("9.9.9.9", "1.2.3.4, 10.2.2.2"), "1.2.3.4"),  # several headers, in order
        (PROXY, (" 1.2.3.4 ,, 10.2.2.2 ",), "1.2.3.4"),  # spacing and empty entries
        (PROXY, ("1.2.3.4:5678",), "1.2.3.4"),  # a port some proxies add
        (PROXY, ("[2001:db8::1]:443",), "2001:db8::1"),
        (PROXY, ("2001:db8::1",), "2001:db8::1"),
        (PROXY, ("::ffff:1.2.3.4",), "1.2.3.4"),
        (PROXY, ("1.2.3.4, unknown",), "unknown"),  # garbage stops the walk: fail closed
        (PROXY, ("10.3.3.3, 10.2.2.2",), "10.3.3.3"),  # all ours: the furthest one
        ("fd00::1", ("1.2.3.4",), "1.2.3.4"),
        ("::ffff:10.0.0.5", ("1.2.3.4",), "1.2.3.4"),  # a dual-stack socket's view of the proxy
        ("testclient", ("1.2.3.4",), "testclient"),
        (None, ("1.2.3.4",), ""),
    ],
)
def test_client_address(peer: str | None, forwarded: tuple[str, ...], expected: str) -> None:
    assert client_address(request_from(peer, *forwarded), TRUSTED) == expected


def test_client_address_without_trusted_proxies_is_the_peer() -> None:
    assert client_address(request_from(PROXY, "1.2.3.4"), ()) == PROXY


# --- size (413) -----------------------------------------------------------------------------------


async def test_body_over_1_mib_with_content_length_is_413(
    client: httpx.AsyncClient, store: Store, wakes: Wakes
) -> None:
    body = b'"' + b"x" * MAX_BODY + b'"'
    response = await client.post(PATH, content=body)
    assert response.status_code == 413
    assert response.json() == {"error": "body too large"}
    assert stored(store) == []
    assert wakes.count == 0


async def test_body_of_exactly_the_limit_is_accepted(store: Store) -> None:
    body = b'"' + b"x" * (MAX_BODY - 2) + b'"'
    assert len(body) == MAX_BODY
    async with client_for(app_for(store)) as c:
        assert (await c.post(PATH, content=body)).status_code == 200
    assert len(stored(store)[0][0]) == MAX_BODY


async def test_chunked_body_over_the_limit_is_413(store: Store) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'"'
        for _ in range(5):
            yield b"x" * 30
        yield b'"'

    async with client_for(app_for(store, max_body=100)) as c:
        request = c.build_request("POST", PATH, content=chunks())
        response = await c.send(request)
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413
    assert stored(store) == []


def test_a_lying_content_length_is_caught_while_reading(store: Store) -> None:
    app = app_for(store, max_body=100)
    scope = http_scope()
    scope["headers"] = [(b"content-length", b"10")]
    messages = [{"type": "http.request", "body": b"x" * 60, "more_body": True}] * 2
    status, pulled = run_asgi(app, scope, messages)
    assert status == 413
    assert pulled == 2
    assert stored(store) == []


def test_reading_stops_at_the_limit(store: Store) -> None:
    # An endless chunked body: the receiver pulls only up to the limit plus one chunk.
    chunk = 16 * 1024
    app = app_for(store)
    status, pulled = run_asgi(app, http_scope(), endless=b"x" * chunk)
    assert status == 413
    assert pulled == MAX_BODY // chunk + 1


@pytest.mark.parametrize("declared", [b"1_0", b"\xb2", b"-1", b"", b"ten"])
def test_an_unparseable_content_length_is_ignored_and_the_body_counted(
    store: Store, declared: bytes
) -> None:
    scope = http_scope()
    scope["headers"] = [(b"content-length", declared)]
    status, _ = run_asgi(
        app_for(store), scope, [{"type": "http.request", "body": b"{}", "more_body": False}]
    )
    assert status == 200
    assert stored(store) == [("{}", VERIZON)]


def test_a_sender_that_goes_away_mid_body_stores_nothing(store: Store) -> None:
    messages = [
        {"type": "http.request", "body": b"{", "more_body": True},
        {"type": "http.disconnect"},
    ]
    status, _ = run_asgi(app_for(store), http_scope(), messages)
    assert status == 400
    assert stored(store) == []


def http_scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "client": (VERIZON, 40123),
        "server": ("testserver", 80),
    }


def run_asgi(
    app: Starlette,
    scope: dict[str, Any],
    messages: list[dict[str, Any]] | None = None,
    endless: bytes | None = None,
) -> tuple[int, int]:
    """Drive the app with scripted request messages; returns (status, messages pulled)."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        if endless is not None:
            return {"type": "http.request", "body": endless, "more_body": True}
        assert messages is not None
        if pulled <= len(messages):
            return messages[pulled - 1]
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)
    return sent[0]["status"], pulled


# --- JSON (400) -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"not json",
        b'{"campaignId": "c",',
        b"\xff\xfe{}",  # not UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # nesting no parser downstream could follow
    ],
)
async def test_not_json_is_400(
    client: httpx.AsyncClient, store: Store, wakes: Wakes, body: bytes
) -> None:
    response = await client.post(PATH, content=body)
    assert response.status_code == 400
    assert response.json() == {"error": "body is not JSON"}
    assert stored(store) == []
    assert wakes.count == 0


# --- storage failures (503) -----------------------------------------------------------------------


async def test_an_unusable_database_is_503_so_thingspace_retries(
    store: Store, wakes: Wakes, caplog: pytest.LogCaptureFixture
) -> None:
    store.db.conn.close()
    async with client_for(app_for(store, wakes)) as c:
        response = await c.post(PATH, content=DEVICE_CHANGE)
    assert response.status_code == 503
    assert response.json() == {"error": "storage unavailable"}
    assert wakes.count == 0
    assert "the database is unusable" in caplog.text
    assert TOKEN not in caplog.text and "UpgradeFailed" not in caplog.text


async def test_a_failing_insert_is_503_and_leaves_nothing_behind(
    store: Store, wakes: Wakes
) -> None:
    store.db.execute(
        "CREATE TRIGGER disk_full BEFORE INSERT ON callbacks BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    async with client_for(app_for(store, wakes)) as c:
        assert (await c.post(PATH, content=b"{}")).status_code == 503
    store.db.execute("DROP TRIGGER disk_full")
    assert stored(store) == []
    assert wakes.count == 0


async def test_an_unexpected_store_error_is_a_logged_500(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Store):
        def store_callbacks(self, bodies: Any) -> list[int]:
            raise RuntimeError("bug")

    async with client_for(app_for(Broken(store.db))) as c:
        response = await c.post(PATH, content=b"{}")
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    assert "unexpected error" in caplog.text


async def test_many_callbacks_each_get_their_own_row(
    client: httpx.AsyncClient, store: Store, wakes: Wakes
) -> None:
    bodies = [
        json.dumps(
            {"campaignId": "c", "deviceId": f"99001390783{i:04d}", "status": "UpgradeSuccess"}
        )
        for i in range(50)
    ]
    for body in bodies:
        assert (await client.post(PATH, content=body)).status_code == 200
    assert [b for b, _ in stored(store)] == bodies
    assert store.unapplied_callbacks() == [(i + 1, b) for i, b in enumerate(bodies)]
    assert wakes.count == 50


# --- callbacks arriving together (group commit) ---------------------------------------------------


def commits(store: Store) -> list[str]:
    """The COMMIT statements the store's connection runs from now on."""
    seen: list[str] = []
    store.db.conn.set_trace_callback(lambda sql: seen.append(sql) if sql == "COMMIT" else None)
    return seen


def device_changes(n: int, tag: str = "") -> list[str]:
    return [
        json.dumps({"campaignId": "c", "deviceId": f"99001390783{i:04d}", "status": "UpgradeSuccess", "tag": tag})
        for i in range(n)
    ]


async def test_callbacks_arriving_together_share_one_commit(
    client: httpx.AsyncClient, store: Store, wakes: Wakes
) -> None:
    seen = commits(store)
    bodies = device_changes(20)
    answers = await asyncio.gather(*(client.post(PATH, content=body) for body in bodies))
    assert [a.status_code for a in answers] == [200] * 20
    assert len(seen) < len(bodies)  # one for all of them, as they arrive in one turn of the loop
    assert wakes.count == len(seen)
    # Each its own row, in the order they arrived.
    assert [b for b, _ in stored(store)] == bodies


async def test_each_callback_of_a_shared_commit_is_on_disk_before_its_200(
    store: Store, db_path: Path
) -> None:
    seen = commits(store)
    app = app_for(store)
    other = sqlite3.connect(db_path)
    checked: list[str] = []

    async def watching(scope: Any, receive: Any, send: Any) -> None:
        body = b""

        async def receive_body() -> Any:
            nonlocal body
            message = await receive()
            body += message.get("body", b"")
            return message

        async def send_checked(message: Any) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                # Another connection sees the row already: it is committed, not pending.
                rows = other.execute("SELECT count(*) FROM callbacks WHERE body = ?", [body.decode()])
                assert rows.fetchone()[0] == 1
                checked.append(body.decode())
            await send(message)

        await app(scope, receive_body, send_checked)

    bodies = device_changes(12)
    try:
        transport = httpx.ASGITransport(app=watching, client=(VERIZON, 40123))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            answers = await asyncio.gather(*(c.post(PATH, content=body) for body in bodies))
    finally:
        other.close()
    assert [a.status_code for a in answers] == [200] * 12
    assert sorted(checked) == sorted(bodies)
    assert len(seen) < len(bodies)


async def test_a_failed_shared_commit_answers_each_of_its_callbacks_503_and_keeps_none(
    client: httpx.AsyncClient, store: Store, wakes: Wakes, caplog: pytest.LogCaptureFixture
) -> None:
    # One row the database refuses takes down the transaction it shares with the others:
    # none of them is on disk, so none of them may be answered 200.
    store.db.execute(
        "CREATE TRIGGER disk_full BEFORE INSERT ON callbacks WHEN NEW.body LIKE '%poison%' "
        "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
    )
    bodies = [*device_changes(5), '{"poison": true}', *device_changes(3, "after")]
    answers = await asyncio.gather(*(client.post(PATH, content=body) for body in bodies))
    assert [a.status_code for a in answers] == [503] * len(bodies)
    assert {a.json()["error"] for a in answers} == {"storage unavailable"}
    assert stored(store) == []
    assert wakes.count == 0
    # Logged once for the transaction, not once per callback.
    assert caplog.text.count("not stored: the database is unusable") == 1
    # The next callbacks have a transaction of their own.
    assert (await client.post(PATH, content=bodies[0])).status_code == 200
    assert [b for b, _ in stored(store)] == [bodies[0]]


async def test_a_handler_gone_before_the_commit_leaves_the_others_answered(
    store: Store, wakes: Wakes
) -> None:
    writer = GroupCommit(store, wakes)
    first = asyncio.ensure_future(writer.store_callback('{"n": 1}', VERIZON))
    second = asyncio.ensure_future(writer.store_callback('{"n": 2}', VERIZON))
    await asyncio.sleep(0)  # both queued
    first.cancel()
    assert await second is None
    assert first.cancelled()
    # Its row was written with the others: a sender that never saw a 200 sends it again,
    # and applying a callback twice changes nothing.
    assert [b for b, _ in stored(store)] == ['{"n": 1}', '{"n": 2}']
    assert wakes.count == 1
