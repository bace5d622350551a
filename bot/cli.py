"""`fota-bot …` / `python -m bot …`: serve, sandbox, demo, check, campaigns, register-callback."""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot.settings import Settings, SettingsError, load, read_environment
from bot.settings import describe as describe_settings

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

    from bot.app import Runtime

log = logging.getLogger("bot.cli")

SUBCOMMANDS = (
    "serve", "sandbox", "demo", "check", "campaigns", "history", "register-callback", "callback-url", "backup",
)

SANDBOX_BANNER = (
    "SANDBOX MODE: no ThingSpace credentials are set, so fota-bot talks to its built-in "
    "ThingSpace simulator: a rehearsal. Nothing reaches real devices."
)


# Tracked objects allocated (net) between two young collections; CPython's default is 700.
GC_YOUNG_THRESHOLD = 5_000


def settle_garbage_collector() -> None:
    """After start-up: freeze what it built, and collect the young generation less often.

    What start-up built (Bolt, the SDKs, the scheduler, every imported module: ~70,000 objects)
    lives as long as the process. Frozen, it is left out of the collector's full passes, each
    of which otherwise held the event loop 30-70 ms.

    Under load a request's objects live across a few awaits; collected every 700 allocations
    they were caught alive and promoted, and promotions are what start a full pass (which
    walks every object not frozen: 10-30 ms at 20,000-60,000 of them).
    Every 5,000 they are mostly freed by reference counting first; a young pass of 5,000
    objects takes a few ms. Cycles are still collected, only in larger, rarer batches.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def version() -> str:
    """The installed distribution's version (pyproject.toml's), as `pip show fota-bot` says it."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("fota-bot")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fota-bot",
        description="Schedule ThingSpace FOTA campaigns from Slack, behind human approval.",
        epilog=describe_settings(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fota-bot {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", help="run the bot (HTTP app on FOTA_PORT; Socket Mode with SLACK_APP_TOKEN)")
    sandbox = sub.add_parser("sandbox", help="run the built-in ThingSpace simulator on its own port")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=_port, default=8099)
    sandbox.add_argument("--speed", type=_speed, default=1.0, help="simulated seconds per real second")
    sandbox.add_argument(
        "--state", default="fota-sandbox.db", help="SQLite file the sandbox keeps its state in across restarts"
    )
    sandbox.add_argument(
        "--pace",
        choices=("quick", "thingspace"),
        default="quick",
        help="quick: a campaign runs in seconds; thingspace: ThingSpace's hours, windows and 04:00 UTC retries",
    )
    demo = sub.add_parser("demo", help="one whole rollout with no credentials, printed as it unfolds")
    demo.add_argument("--devices", type=_demo_devices, default=25, help="how many devices (1 to 1000)")
    demo.add_argument("--speed", type=_speed, default=4.0, help="simulated seconds per real second")
    demo.add_argument(
        "--waves", action="store_true",
        help="a staged rollout instead: the canary passes, an approver promotes, a bad build halts the next wave",
    )
    check = sub.add_parser("check", help="validate the configuration and reach Slack and ThingSpace; writes nothing")
    check.add_argument("--thingspace", action="store_true",
                       help="try every ThingSpace call the bot depends on (read calls only)")
    check.add_argument("--imei", type=_imei, default=None, help="the device to look up (--thingspace)")
    campaigns = sub.add_parser("campaigns", help="operator views of the database")
    views = campaigns.add_subparsers(dest="view", required=True, metavar="VIEW")
    listing = views.add_parser("list", help="campaigns, newest first")
    listing.add_argument("--all", action="store_true", help="include finished ones")
    show = views.add_parser("show", help="one campaign with its audit trail")
    show.add_argument("id")
    export = views.add_parser("export", help="per-device CSV of one campaign")
    export.add_argument("id")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    history = sub.add_parser("history", help="the audit trail of one campaign")
    history.add_argument("id")
    sub.add_parser("register-callback", help="register {FOTA_PUBLIC_URL}/thingspace/callbacks/{token} with ThingSpace")
    sub.add_parser("callback-url", help="print the full callback URL, for registering it by hand")
    backup = sub.add_parser("backup", help="a consistent copy of FOTA_DB, safe while serve runs")
    backup.add_argument("path", type=Path, help="the file to write, or a folder to write a dated file in")
    return parser


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number; expected 1 to 65535")
    return int(text)


def _speed(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        speed = 0.0
    if not 0 < speed <= 10_000:
        raise argparse.ArgumentTypeError(f"{text} is not a speed; expected a number above 0, at most 10000")
    return speed


def _imei(text: str) -> str:
    if not (len(text) == 15 and text.isdigit()):
        raise argparse.ArgumentTypeError(f"{text} is not an IMEI; expected 15 digits")
    return text


def _demo_devices(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"{text} is not a device count; expected 1 to 1000")
    return int(text)


# The commands that open FOTA_DB, and whether it must already be there.
_DATABASE_COMMANDS = {
    "serve": False, "campaigns": False, "history": False, "register-callback": False, "callback-url": False,
    "backup": True,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _main(args)
    except OperatorError as exc:
        print(f"fota-bot: {exc}", file=sys.stderr)
        return 1


class OperatorError(Exception):
    """An expected failure of a command, said in one sentence (no traceback)."""


def _main(args: argparse.Namespace) -> int:
    env = read_environment(os.environ)
    try:
        settings = load(env, for_serve=args.command == "serve")
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    from bot.logs import configure_logging

    # The demo's output is the thread: only warnings unless FOTA_LOG_LEVEL asks for more.
    level = "WARNING" if args.command == "demo" and "FOTA_LOG_LEVEL" not in env else settings.log_level
    configure_logging(level, settings.secret_values(), settings.log_format)
    # The demo keeps its database only where FOTA_DB says; else it uses a temporary one.
    args.demo_db = settings.db_path if args.command == "demo" and "FOTA_DB" in env else None
    if args.command in _DATABASE_COMMANDS or args.demo_db:
        from bot.database_file import database_problem

        if problem := database_problem(settings.db_path, must_exist=_DATABASE_COMMANDS.get(args.command, False)):
            raise OperatorError(problem)
    # Here, not at the top: `--help` and a settings error answer without loading sqlite-utils.
    from storage.migrations import NewerDatabase

    try:
        return _run(args, settings)
    except KeyboardInterrupt:
        return 130
    except sqlite3.DatabaseError as exc:
        # A damaged file passes the header check and fails at its first query.
        raise OperatorError(f"FOTA_DB={settings.db_path} cannot be used: {exc}; restore it from a backup") from exc
    except NewerDatabase as exc:
        raise OperatorError(f"FOTA_DB={exc}") from exc
    except OSError as exc:
        log.debug("%s failed", args.command, exc_info=True)
        where = f": {exc.filename}" if exc.filename else ""
        raise OperatorError(f"{exc.strerror or exc}{where}") from exc


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        return asyncio.run(_serve(settings))
    if args.command == "sandbox":
        return asyncio.run(_sandbox(args.host, args.port, args.speed, args.state, args.pace))
    if args.command == "demo":
        from bot.demo import DemoRefused, run_demo
        from bot.server import AlreadyRunning

        try:
            return asyncio.run(run_demo(devices=args.devices, speed=args.speed, db_path=args.demo_db, waves=args.waves))
        except (DemoRefused, AlreadyRunning) as exc:
            raise OperatorError(str(exc)) from exc
    if args.command == "check":
        from bot.check import run_check
        from bot.thingspace_probe import SAMPLE_IMEI

        return asyncio.run(run_check(settings, thingspace=args.thingspace, imei=args.imei or SAMPLE_IMEI))
    if args.command == "campaigns":
        from bot.operator import run_campaigns

        return run_campaigns(settings, args)
    if args.command == "history":
        from bot.operator import run_history

        return run_history(settings, args.id)
    if args.command == "backup":
        from storage.backup import BackupError, backup

        try:
            result = backup(settings.db_path, args.path)
        except BackupError as exc:
            raise OperatorError(str(exc)) from exc
        campaigns = f"{result.campaigns} campaign{'' if result.campaigns == 1 else 's'}"
        print(f"backed up FOTA_DB={settings.db_path} to {result.path}: {campaigns}, "
              f"{result.size / 1_000_000:.1f} MB, integrity ok")
        return 0
    if args.command == "callback-url":
        from bot.operator import run_callback_url

        return run_callback_url(settings)
    if args.command == "register-callback":
        from bot.check import register_callback

        return asyncio.run(register_callback(settings))
    return 2


def _check_address(host: str, port: int, setting: str) -> None:
    """Refuse before anything starts when the address cannot be listened on: otherwise the
    runtime would start its jobs and resume submissions only for the bind to fail after."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OperatorError(f"{setting}: {host} is not an address of this machine ({exc.strerror})") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise OperatorError(
                f"{setting}: cannot listen on {host}:{port}: {exc.strerror}"
                + (" (another program uses this port)" if exc.errno == errno.EADDRINUSE else "")
            ) from exc


async def _serve(settings: Settings) -> int:
    from bot.server import AlreadyRunning, exclusive_lock

    _check_address(settings.host, settings.port, f"FOTA_HOST={settings.host} FOTA_PORT={settings.port}")
    try:
        with exclusive_lock(settings.db_path):
            return await _serve_locked(settings)
    except AlreadyRunning as exc:
        log.error("%s", exc)
        return 1


async def _serve_locked(settings: Settings) -> int:
    from bot.app import build_runtime
    from bot.logs import RedactSecrets
    from bot.server import (
        ConnectionGate,
        GracefulServer,
        ServerLimits,
        connection_cap,
        listening_socket,
        raise_descriptor_limit,
        server_config,
    )

    runtime = build_runtime(settings)
    # The generated callback token is a secret too: mask it from here on.
    for handler in logging.getLogger().handlers:
        for flt in handler.filters:
            if isinstance(flt, RedactSecrets):
                flt.secrets = sorted({*flt.secrets, runtime.callback_token}, key=len, reverse=True)
    if runtime.sandbox is not None:
        log.warning("=" * 78)
        log.warning(SANDBOX_BANNER)
        log.warning("=" * 78)
    await runtime.start()
    settle_garbage_collector()
    socket_handler = None
    try:
        if runtime.sandbox is None:
            from bot.check import warn_if_callback_differs

            await warn_if_callback_differs(settings, runtime)
        if settings.slack_app_token is not None:
            socket_handler = await connect_socket_mode(runtime, settings.slack_app_token.reveal())
            log.info("Slack over Socket Mode")
        raise_descriptor_limit()
        limits = ServerLimits()
        gate = ConnectionGate(connection_cap(limits))
        sock = listening_socket(settings.host, settings.port, gate)
        server = GracefulServer(server_config(runtime.asgi, limits=limits, gate=gate))
        log.info("fota-bot listening on %s:%s (ThingSpace: %s)", settings.host, settings.port, runtime.mode)
        # uvicorn handles SIGTERM/SIGINT: it stops accepting and finishes requests in flight.
        await server.serve(sockets=[sock])
    except SocketModeError as exc:
        log.error("%s", exc)
        return 1
    finally:
        if socket_handler is not None:
            await socket_handler.close_async()
        await runtime.stop()
        log.info("fota-bot stopped")
    return 0


class SocketModeError(Exception):
    """Socket Mode could not start; the message says why in plain words."""


async def connect_socket_mode(runtime: Runtime, app_token: str) -> AsyncSocketModeHandler:
    """Slack over Socket Mode: the WebSocket that brings commands, clicks and events to the
    runtime's Bolt app (the same listeners as `POST /slack/events`). Close it with
    ``await handler.close_async()``.

    The WebSocket URL is asked for here first (``apps.connections.open``, with `app_token`), so
    that a refused token or an unreachable Slack is a `SocketModeError` at start-up, where
    slack_sdk's own connect() would log and retry it forever.
    """
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_sdk.errors import SlackApiError

    handler = AsyncSocketModeHandler(runtime.bolt, app_token)
    try:
        handler.client.wss_uri = await handler.client.issue_new_wss_url()
    except SlackApiError as exc:
        await handler.close_async()
        raise SocketModeError(f"Slack refused SLACK_APP_TOKEN: {exc.response.get('error')}") from exc
    except Exception as exc:  # any network failure is the message here
        await handler.close_async()
        raise SocketModeError(
            f"Slack could not be reached at {runtime.settings.slack_api_url}: {type(exc).__name__}"
        ) from exc
    await handler.connect_async()
    return handler


async def _sandbox(host: str, port: int, speed: float, state: str, pace: str = "quick") -> int:
    import uvicorn

    from bot.server import GracefulServer
    from bot.standins.thingspace import Sandbox, SandboxClock, SandboxTimings, create_sandbox_app

    _check_address(host, port, f"--host {host} --port {port}")
    timings = SandboxTimings.thingspace() if pace == "thingspace" else SandboxTimings()
    sandbox = Sandbox(clock=SandboxClock.real(speed=speed), timings=timings)
    try:
        sandbox.open_state(state)
    except sqlite3.DatabaseError as exc:
        raise OperatorError(f"--state {state} cannot be used: {exc}") from exc
    ticker = asyncio.get_running_loop().create_task(sandbox.run_forever())
    log.warning("ThingSpace sandbox on http://%s:%s (speed x%s); point THINGSPACE_URL at it", host, port, speed)
    server = GracefulServer(
        uvicorn.Config(create_sandbox_app(sandbox), host=host, port=port, lifespan="off", log_config=None)
    )
    try:
        await server.serve()
    finally:
        ticker.cancel()
        await sandbox.aclose()
    return 0
