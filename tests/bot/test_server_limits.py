"""The real server (`fota-bot serve`'s uvicorn settings, bot.server.server_config) against slow,
idle, oversized and forwarded requests, on an ephemeral 127.0.0.1 port.

The limits are made small for the test (fractions of a second); each wait is bounded by a
timeout several times the limit, never a sleep that hopes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from bot.server import ServerLimits, serve_in_loop
from tests.support.slack import sign, slash_command_body
from tests.support.stack import REQUESTER, SECRET, Stack, running_stack

LIMITS = ServerLimits(header_seconds=0.4, body_seconds=0.4, keep_alive_seconds=1, max_connections=40)
# Upper bound on how long a cut may take on a loaded 2-core machine: far above the limits.
CUT_WITHIN = 5.0


@contextlib.asynccontextmanager
async def served(tmp_path: Path, limits: ServerLimits = LIMITS, **env: str) -> AsyncIterator[tuple[Stack, str]]:
    async with running_stack(tmp_path, **env) as stack, serve_in_loop(stack.rt.asgi, limits=limits) as url:
        yield stack, url


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    return await asyncio.open_connection(parts.hostname, parts.port)


async def closed_after(reader: asyncio.StreamReader) -> tuple[float, bytes]:
    """Seconds until the server closed the connection, and what it sent before."""
    started = time.monotonic()
    data = b""
    async with asyncio.timeout(CUT_WITHIN):
        while chunk := await reader.read(65536):
            data += chunk
    return time.monotonic() - started, data


async def test_a_connection_that_never_sends_is_closed_after_the_header_deadline(tmp_path: Path) -> None:
    async with served(tmp_path) as (_, url):
        reader, writer = await connect(url)
        elapsed, data = await closed_after(reader)
        writer.close()
        assert data == b"" and 0.3 <= elapsed < CUT_WITHIN


async def test_headers_sent_a_byte_at_a_time_are_cut_at_the_deadline_not_extended(tmp_path: Path) -> None:
    async with served(tmp_path) as (_, url):
        reader, writer = await connect(url)
        started = time.monotonic()

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nX-Slow: " + b"a" * 10_000:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.02)

        sender = asyncio.create_task(trickle())
        _, data = await closed_after(reader)
        sender.cancel()
        writer.close()
        assert data == b"" and time.monotonic() - started < CUT_WITHIN


async def test_a_body_that_stops_arriving_is_cut_and_nothing_is_recorded(tmp_path: Path) -> None:
    async with served(tmp_path) as (stack, url):
        body = slash_command_body("help", user_id=REQUESTER)
        headers = sign(body, SECRET)
        reader, writer = await connect(url)
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode()
            + body[:10]
        )
        await writer.drain()
        elapsed, data = await closed_after(reader)
        writer.close()
        assert data == b"" and elapsed < CUT_WITHIN
        assert stack.rt.store.db.execute("SELECT count(*) FROM slack_requests").fetchone()[0] == 0


async def test_an_idle_keep_alive_connection_is_closed(tmp_path: Path) -> None:
    async with served(tmp_path) as (_, url):
        reader, writer = await connect(url)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\n")
        await writer.drain()
        elapsed, data = await closed_after(reader)
        writer.close()
        assert data.startswith(b"HTTP/1.1 200") and elapsed < CUT_WITHIN


async def test_connections_over_the_cap_are_closed_at_once_and_service_resumes(tmp_path: Path) -> None:
    limits = ServerLimits(header_seconds=1.0, body_seconds=1.0, keep_alive_seconds=1, max_connections=10)
    async with served(tmp_path, limits) as (_, url):
        held = [await connect(url) for _ in range(10)]
        started = time.monotonic()
        # Refused at once, not after a deadline: reset during the connect or right after it.
        with contextlib.suppress(ConnectionError):
            extra_reader, extra_writer = await connect(url)
            _, data = await closed_after(extra_reader)
            extra_writer.close()
            assert data == b""
        assert time.monotonic() - started < 0.9
        for reader, _ in held:  # the held ones are cut at their header deadline
            await closed_after(reader)
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz")).status_code == 200
        for _, writer in held:
            writer.close()


async def test_a_head_growing_past_16_kib_gets_a_400_not_a_500(tmp_path: Path) -> None:
    # (h11 bounds what it buffers while a head is incomplete; a complete head that came in one
    # read is bounded by the transport's read size.)
    async with served(tmp_path) as (_, url):
        reader, writer = await connect(url)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: bot\r\nX-Big: " + b"a" * 40_000)
        await writer.drain()
        _, data = await closed_after(reader)
        writer.close()
        assert data.startswith(b"HTTP/1.1 400")


async def test_a_3_mb_unsigned_body_is_refused_without_being_read(tmp_path: Path) -> None:
    async with served(tmp_path) as (_, url):
        reader, writer = await connect(url)
        writer.write(
            b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Length: 3000000\r\n"
            + f"X-Slack-Request-Timestamp: {int(time.time())}\r\nX-Slack-Signature: v0=00\r\n\r\n".encode()
            + b"a" * 65536
        )
        await writer.drain()
        _, data = await closed_after(reader)
        writer.close()
        assert data.startswith(b"HTTP/1.1 413")


async def test_a_non_numeric_timestamp_through_the_server_is_401(tmp_path: Path) -> None:
    async with served(tmp_path) as (_, url), httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            "/slack/events", content=b"command=%2Ffota", headers={"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=1"}
        )
        assert response.status_code == 401


@pytest.mark.parametrize(("trusted", "expected"), [("", 403), ("127.0.0.1", 200)])
async def test_x_forwarded_for_is_believed_only_from_fota_trusted_proxies(
    tmp_path: Path, trusted: str, expected: int
) -> None:
    from tests.e2e.test_faults_secrets import THINGSPACE

    # Live mode: in sandbox mode loopback is always allowed (the in-process simulator's address).
    env = {**THINGSPACE, "FOTA_CALLBACK_ALLOWED_IPS": "10.0.0.0/8", "FOTA_TRUSTED_PROXIES": trusted}
    async with served(tmp_path, **env) as (stack, url), httpx.AsyncClient(base_url=url) as client:
        response = await client.post(
            f"/thingspace/callbacks/{stack.rt.callback_token}",
            json={"campaignId": "nope"},
            headers={"X-Forwarded-For": "10.1.2.3"},
        )
        assert response.status_code == expected


def test_serve_under_a_low_descriptor_limit_refuses_extra_connections_and_stays_up(tmp_path: Path) -> None:
    """400 idle connections against a process allowed 300 descriptors: it never runs out of
    them (no accept() errors), answers /healthz throughout, and its log stays short."""
    from tests.bot.test_serve import REQUIRED, clean_env, free_port, get

    port = free_port()
    env = clean_env(tmp_path, **REQUIRED, FOTA_PORT=str(port), FOTA_LOG_LEVEL="INFO")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))

    with subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
        preexec_fn=limit,
    ) as process:
        try:
            deadline = time.monotonic() + 30
            status = 0
            while time.monotonic() < deadline and status != 200:
                with contextlib.suppress(OSError):
                    status, _ = get(f"http://127.0.0.1:{port}/healthz")
            assert status == 200
            idle: list[socket.socket] = []
            try:
                for _ in range(400):
                    # Past the cap a connection is reset as it is accepted, maybe before connect() returns.
                    with contextlib.suppress(ConnectionError):
                        idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                with contextlib.suppress(OSError):  # urllib wraps the reset in URLError
                    get(f"http://127.0.0.1:{port}/healthz")
                # Either served (a slot was free) or refused at once; never a hang, never a crash.
                assert process.poll() is None
            finally:
                for sock in idle:
                    sock.close()
            deadline = time.monotonic() + 30
            status = 0
            while time.monotonic() < deadline and status != 200:
                with contextlib.suppress(OSError):
                    status, body = get(f"http://127.0.0.1:{port}/healthz")
            assert status == 200 and json.loads(body)["status"] == "ok"
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=20) == 0
            log = process.stderr.read() if process.stderr else ""
            assert "Too many open files" not in log and "out of system resource" not in log
            assert log.count("connection refused") <= 1  # rate-limited: one line a minute
            assert len(log) < 20_000
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_the_one_server_lock_holds_through_a_symlinked_fota_db(tmp_path: Path) -> None:
    from bot.server import AlreadyRunning, exclusive_lock

    real = tmp_path / "data" / "fota.db"
    real.parent.mkdir()
    real.touch()
    link = tmp_path / "link.db"
    link.symlink_to(real)
    dotted = tmp_path / "data" / ".." / "data" / "fota.db"
    with exclusive_lock(real):
        for other in (link, dotted):
            with pytest.raises(AlreadyRunning), exclusive_lock(other):
                pass
    with exclusive_lock(link):  # free again once the first one let go
        pass
