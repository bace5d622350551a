"""uvicorn, with the shutdown fota-bot needs and the limits an open port needs.

Why uvicorn plus a guard of our own rather than another server: uvicorn (h11) has an idle
keep-alive timeout and a header-size cap, but no deadline for reading a request's headers
or body, and `limit_concurrency` still accepts every connection (it answers 503 once the
request is read, so a client that never finishes one holds its descriptor for ever).
Hypercorn's `read_timeout` is a per-read inactivity timeout, which a client sending one byte
a second never trips. `GuardedH11Protocol` adds exactly what is missing, on uvicorn's own
h11 protocol: a deadline for the headers (from the connection or the previous response), a
deadline for the body, and a cap on open connections below the descriptor limit, past which
a new connection is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import resource
import signal
import socket
import struct
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("bot.server")


@dataclass(frozen=True)
class ServerLimits:
    """What a connection may cost before it is cut.

    Slack and ThingSpace send a whole request in milliseconds; these leave a slow mobile
    proxy ample time and a slow-loris client very little.
    """

    # From the connection (or the end of the previous response) to the end of the headers.
    header_seconds: float = 10.0
    # From the end of the headers to the end of the body (bodies here are at most 1 MiB).
    body_seconds: float = 30.0
    # Idle between two requests on one connection (uvicorn's timeout_keep_alive).
    keep_alive_seconds: int = 5
    # Largest request head (request line and headers); Slack's are about 1 KiB.
    max_header_bytes: int = 16 * 1024
    # Open connections at most; None: the descriptor limit less a reserve (see connection_cap).
    max_connections: int | None = None


# Descriptors kept for everything but client connections: SQLite (database, WAL, shared
# memory), the HTTP pools to Slack and ThingSpace, the listening socket, logs.
DESCRIPTOR_RESERVE = 256
LISTEN_BACKLOG = 2048


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one (a common, allowed step); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


def connection_cap(limits: ServerLimits) -> int:
    """How many connections may be open at once: never so many that accept() runs out of descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    room = 65_536 if soft == resource.RLIM_INFINITY else max(16, soft - DESCRIPTOR_RESERVE)
    return min(limits.max_connections, room) if limits.max_connections else room


class ConnectionGate:
    """Counts open connections; says no past the cap."""

    def __init__(self, cap: int):
        self.cap = cap
        self.open = 0
        self.refused = 0

    def admit(self) -> bool:
        if self.open >= self.cap:
            self.refused += 1
            return False
        self.open += 1
        return True

    def release(self) -> None:
        self.open = max(0, self.open - 1)


class GatedSocket(socket.socket):
    """A listening socket whose accept() closes connections past the gate's cap at once.

    asyncio accepts a whole burst of connections before any of them reaches a protocol, so a
    cap applied in the protocol comes too late: the burst alone can use every descriptor.
    Here a connection over the cap is closed inside accept() itself and never costs more
    than that one call.
    """

    gate: ConnectionGate

    def accept(self) -> tuple[socket.socket, Any]:
        while True:
            conn, address = super().accept()  # BlockingIOError when none is waiting
            if self.gate.admit():
                return conn, address
            # RST rather than FIN: nothing lingers in TIME_WAIT on our side.
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            log.warning("connection refused: %d connections are open, the most allowed", self.gate.cap)


def listening_socket(host: str, port: int, gate: ConnectionGate) -> GatedSocket:
    """The bound, listening socket `fota-bot serve` accepts on (IPv4 or IPv6, as `host` says)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only then (else ~40 ms per response, Nagle).
    sock = GatedSocket(family, kind, proto or socket.IPPROTO_TCP)
    sock.gate = gate
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def guarded_protocol(limits: ServerLimits, gate: ConnectionGate) -> type[H11Protocol]:
    """uvicorn's h11 protocol with header and body deadlines, counted by `gate`."""

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _phase = ""

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm("headers", limits.header_seconds)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._follow()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._follow()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            gate.release()
            super().connection_lost(exc)

        def _follow(self) -> None:
            """Move the deadline along with what the client still owes us."""
            if self.transport.is_closing():
                self._disarm()
                return
            state = self.conn.their_state
            if state is h11.IDLE:
                # Between requests uvicorn's keep-alive timer runs; once a byte of the next
                # request has come in, the headers' deadline does (set once, never extended).
                if self.timeout_keep_alive_task is None and self._phase != "headers":
                    self._arm("headers", limits.header_seconds)
            elif state is h11.SEND_BODY:
                if self._phase != "body":
                    self._arm("body", limits.body_seconds)
            else:
                self._disarm()

        def _arm(self, phase: str, seconds: float) -> None:
            self._disarm()
            self._phase = phase
            self._deadline = self.loop.call_later(seconds, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._deadline, self._phase = None, ""

        def _expired(self) -> None:
            phase, self._deadline = self._phase, None
            log.info("connection closed: its request's %s did not arrive in time", phase)
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True
                self.cycle.message_event.set()
            self.transport.close()

    return GuardedH11Protocol


def server_config(app: ASGIApp, *, limits: ServerLimits, gate: ConnectionGate, **options: Any) -> uvicorn.Config:
    """The uvicorn settings `fota-bot serve` runs with (and the tests and benchmarks of them);
    serve it on `listening_socket(host, port, gate)`."""
    return uvicorn.Config(
        app,
        http=guarded_protocol(limits, gate),
        ws="none",
        lifespan="off",
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default; the app alone decides,
        # from FOTA_TRUSTED_PROXIES, whose forwarded headers count.
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=limits.keep_alive_seconds,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        log_config=None,  # uvicorn's records go through the one handler configure_logging set
        access_log=False,  # an access log would print the callback URL, whose path is a secret
        timeout_graceful_shutdown=20,
        **options,
    )


class GracefulServer(uvicorn.Server):
    """uvicorn minus re-raising the signal after its graceful shutdown.

    uvicorn re-raises SIGTERM once it has drained the requests in flight, which
    would end the process before the scheduler is stopped and the database closed.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        try:
            yield
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)


class _InLoopServer(uvicorn.Server):
    """uvicorn without its signal handlers (they belong to the host: pytest, the demo), and with a readiness event
    instead of a flag, so nobody has to poll or sleep to know the app is up."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()
        self._exit = asyncio.Event()

    def exit(self) -> None:
        self.should_exit = True
        self._exit.set()

    async def main_loop(self) -> None:
        # uvicorn's loop sleeps 0.1 s between its ticks (the Date header, should_exit): woken by
        # exit() instead, leaving does not wait out the rest of a tick (each test's servers).
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._exit.wait(), 0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn's shutdown with its waits cut short: it pauses a fixed 0.1 s after asking the
        # connections to close, then looks again every 0.1 s until they and their tasks are gone.
        # These servers' clients are on 127.0.0.1 and close within a few turns of the loop: looked
        # at every 5 ms, a server leaves in milliseconds. The same steps, the same time limit.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        try:
            async with asyncio.timeout(self.config.timeout_graceful_shutdown):
                # uvicorn sets no event when the last connection or task is gone: looked at.
                while self.server_state.connections or self.server_state.tasks:  # noqa: ASYNC110
                    if self.force_exit:
                        break
                    await asyncio.sleep(0.005)
        except TimeoutError:
            for task in self.server_state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        for server in self.servers:
            await server.wait_closed()
        if not self.force_exit:
            await self.lifespan.shutdown()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        except SystemExit as exc:
            # uvicorn exits the process when lifespan startup fails; here that must be
            # an ordinary error, not SystemExit escaping the event loop.
            raise RuntimeError("the app failed to start (lifespan startup)") from exc
        self.ready.set()


@contextlib.asynccontextmanager
async def serve_in_loop(
    app: ASGIApp,
    *,
    lifespan: Literal["auto", "on", "off"] = "auto",
    websockets: bool = False,
    limits: ServerLimits | None = None,
) -> AsyncIterator[str]:
    """Run `app` under uvicorn on a free ephemeral port of 127.0.0.1; yield its base URL
    (``http://127.0.0.1:PORT``, no trailing slash) and shut it down cleanly on exit.

    With `websockets` its WebSocket routes are served too (the Slack stand-in's Socket Mode),
    through uvicorn's wsproto implementation: the ``wsproto`` package must be installed (it is
    in the ``test`` extra, not a runtime dependency)."""
    # Bind (and listen) before starting: the port is known at once and a client that connects
    # early waits in the backlog rather than being refused.
    if limits is not None:
        # `fota-bot serve`'s own socket and settings, for tests and benchmarks of them.
        gate = ConnectionGate(connection_cap(limits))
        sock: socket.socket = listening_socket("127.0.0.1", 0, gate)
        config = server_config(app, limits=limits, gate=gate, log_level="warning")
        config.timeout_graceful_shutdown = 5
    else:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only then (else ~40 ms per response, Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        config = uvicorn.Config(
            app,
            lifespan=lifespan,
            log_level="warning",
            access_log=False,
            ws="wsproto" if websockets else "none",
            http="h11",
            timeout_graceful_shutdown=5,
        )
    port = sock.getsockname()[1]
    server = _InLoopServer(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    ready = asyncio.create_task(server.ready.wait())
    started = False
    try:
        await asyncio.wait({serving, ready}, return_when=asyncio.FIRST_COMPLETED)
        started = server.ready.is_set()
        if not started:
            serving.result()  # re-raises the startup error, if any
            raise RuntimeError("uvicorn stopped before it was ready")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.exit()
        ready.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ready
        if started:
            await serving
        sock.close()


class AlreadyRunning(Exception):
    """Another fota-bot holds the database."""


@contextlib.contextmanager
def exclusive_lock(db_path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold `{FOTA_DB}.lock` for as long as the bot serves.

    Two processes on one database would both resume the same submissions and both drain
    the same outbox: the same campaign sent twice, every Slack update posted twice.
    """
    # The resolved file: FOTA_DB reached through a symlink (or a path with ..) is the same
    # database, and must meet the same lock.
    lock_path = f"{Path(db_path).resolve()}.lock"
    handle = open(lock_path, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise AlreadyRunning(
                f"another fota-bot is already serving FOTA_DB={os.fspath(db_path)} (it holds {lock_path}); "
                "stop it first: two would send the same campaigns twice"
            ) from exc
        yield
    finally:
        handle.close()
