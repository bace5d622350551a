"""uvicorn, with the shutdown fota-bot needs."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import socket
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Literal

import uvicorn
from starlette.types import ASGIApp


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
    app: ASGIApp, *, lifespan: Literal["auto", "on", "off"] = "auto", websockets: bool = False
) -> AsyncIterator[str]:
    """Run `app` under uvicorn on a free ephemeral port of 127.0.0.1; yield its base URL
    (``http://127.0.0.1:PORT``, no trailing slash) and shut it down cleanly on exit.

    With `websockets` its WebSocket routes are served too (the Slack stand-in's Socket Mode),
    through uvicorn's wsproto implementation: the ``wsproto`` package must be installed (it is
    in the ``test`` extra, not a runtime dependency)."""
    # Bind (and listen) before starting: the port is known at once and a client that connects
    # early waits in the backlog rather than being refused.
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only then (else ~40 ms per response, Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        lifespan=lifespan,
        log_level="warning",
        access_log=False,
        ws="wsproto" if websockets else "none",
        http="h11",
        timeout_graceful_shutdown=5,
    )
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
        server.should_exit = True
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
    lock_path = f"{os.fspath(db_path)}.lock"
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
