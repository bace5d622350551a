"""The benchmarks' other processes: `python -m bench.servers KIND --port P [...]`.

- ``standin``: the recording Slack stand-in (`bot.standins.slack`) the bot's SLACK_API_URL
  points at, plus ``GET /bench/stats`` (calls per method, 429s) and, with ``--file``, a user's
  uploaded device file registered at start-up (its file object written to ``--file-json``).
- ``bare-bolt``: the ack-latency baseline, a Bolt `AsyncApp` that only acks.
- ``bare-starlette``: the callback-ingestion baseline, one endpoint answering 200.
  Both serve ``GET /metrics`` with the bot's loop-stall figures of their own loop.
- ``sandbox``: the ThingSpace sandbox on its own port, its clock at ``--speed``.

All are served the way `fota-bot serve` serves the bot: uvicorn on one asyncio loop, no
lifespan, no access log, 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from bench.common import BOT_TOKEN, SIGNING_SECRET


def uvicorn_config(app: Any, port: int) -> uvicorn.Config:
    # The settings `fota-bot serve` uses (bot/cli.py), log level as with FOTA_LOG_LEVEL=WARNING.
    return uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=20,
    )


def standin_app(
    port: int, file: Path | None, file_json: Path | None, enforce_tiers: bool
) -> Starlette:
    from bot.standins.slack import SlackStandIn, create_slack_standin_app

    standin = SlackStandIn(
        bot_token=BOT_TOKEN, public_url=f"http://127.0.0.1:{port}", enforce_tiers=enforce_tiers
    )
    if file is not None and file_json is not None:
        registered = standin.register_file(file.name, file.read_bytes(), user_id="U0BENCHREQ")
        file_json.write_text(json.dumps(registered))

    async def stats(request: Request) -> Response:
        calls = Counter(c.method for c in standin.calls)
        return JSONResponse(
            {
                "calls": dict(calls),
                "rate_limited": standin.rate_limited_count,
                "tier_violations": len(standin.tier_violations),
                "not_ok": sum(1 for c in standin.calls if not c.ok),
            }
        )

    return Starlette(
        routes=[
            Route("/bench/stats", stats, methods=["GET"]),
            Mount("/", create_slack_standin_app(standin)),
        ]
    )


def stall_route() -> Route:
    """The bot's loop-stall monitor in a baseline too, read the way the bot's is (GET /metrics),
    so that each stall figure has a same-run baseline: on a shared 2-core machine a loop is also
    "stalled" while the operating system runs another process."""
    from bot.loopstall import LoopStallMonitor

    monitor = LoopStallMonitor()
    started: list[asyncio.Task[None]] = []

    async def metrics(request: Request) -> Response:
        if not started:  # the first scrape starts it, on the server's own loop
            started.append(asyncio.get_running_loop().create_task(monitor.run()))
        text = "".join(
            f'fota_event_loop_stall_max_seconds{{window="{label}"}} {monitor.longest(seconds)}\n'
            for label, seconds in (("1m", 60.0), ("5s", 5.0))
        )
        return Response(text, media_type="text/plain")

    return Route("/metrics", metrics, methods=["GET"])


def bare_bolt_app(slack_api_url: str) -> Starlette:
    from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
    from slack_bolt.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    # Bolt's own defaults with the bot's client and secret, minus the bot's listeners. The bot
    # (bot/app.py) answers when its listener returns and has Bolt skip the signature its guard
    # checked; the baseline stays what a bare Bolt app costs.
    bolt = AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=slack_api_url),
        signing_secret=SIGNING_SECRET,
        process_before_response=False,
    )

    @bolt.command("/fota")
    async def command(ack: Any) -> None:
        await ack(text="ok")

    @bolt.action(re.compile(".*"))
    async def action(ack: Any) -> None:
        await ack()

    handler = AsyncSlackRequestHandler(bolt)

    async def events(request: Request) -> Response:
        return await handler.handle(request)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/slack/events", events, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            stall_route(),
        ]
    )


def bare_starlette_app() -> Starlette:
    async def callback(request: Request) -> Response:
        await request.body()
        return Response(b'{"ok":true}', media_type="application/json")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/thingspace/callbacks/{token}", callback, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            stall_route(),
        ]
    )


async def serve_sandbox(port: int, speed: float) -> None:
    from bot.standins.thingspace import Sandbox, SandboxClock, create_sandbox_app

    sandbox = Sandbox(clock=SandboxClock.real(speed=speed))
    ticker = asyncio.get_running_loop().create_task(sandbox.run_forever())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Mount("/", create_sandbox_app(sandbox)),
        ]
    )
    try:
        await uvicorn.Server(uvicorn_config(app, port)).serve()
    finally:
        ticker.cancel()
        await sandbox.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers")
    parser.add_argument("kind", choices=["standin", "bare-bolt", "bare-starlette", "sandbox"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slack-api-url", default="http://127.0.0.1:9/api/")
    parser.add_argument("--file", type=Path)
    parser.add_argument("--file-json", type=Path)
    parser.add_argument("--enforce-tiers", action="store_true")
    parser.add_argument("--speed", type=float, default=1.0)
    args = parser.parse_args()
    if args.kind == "sandbox":
        asyncio.run(serve_sandbox(args.port, args.speed))
        return
    if args.kind == "standin":
        app = standin_app(args.port, args.file, args.file_json, args.enforce_tiers)
    elif args.kind == "bare-bolt":
        app = bare_bolt_app(args.slack_api_url)
    else:
        app = bare_starlette_app()
    asyncio.run(uvicorn.Server(uvicorn_config(app, args.port)).serve())


if __name__ == "__main__":
    main()
