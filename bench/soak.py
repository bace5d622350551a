"""Soak: slow and idle clients against `fota-bot serve` while real work is served.

`python -m bench.soak` (127.0.0.1 only, bounded in count and time):

1. `fota-bot serve` (sandbox mode, the Slack stand-in in its own process) is measured at rest:
   signed `/fota help` commands and ThingSpace callbacks from 4 closed-loop clients.
2. A helper process (`python -m bench.soak slow …`) holds `--slow` connections open the way a
   slow-loris client does: each sends part of a request head, then one byte every 2 s, and opens
   a new connection whenever the server cuts one, so that many are held throughout.
3. The same measurement runs again beside them; the bot's descriptors are counted throughout.
4. The slow clients stop; the bot's descriptor count must come back to where it was at rest.

Figures: latency at rest and under the slow clients, how long a slow connection was held before
the bot cut it (its header deadline is 10 s), descriptors at rest, at the peak and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    SIGNING_SECRET,
    Figure,
    Section,
    append_results,
    bot_env,
    closed_loop,
    db_query,
    free_port,
    machine,
    percentile,
    running,
    spawn,
    spawn_standin,
)
from bench.common import Request as LoadRequest

SLOW_HEAD = b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: application/x-www-form-urlencoded\r\nX-Slow: "
CUT_DEADLINE_S = 10.0  # bot.server.ServerLimits.header_seconds


def descriptors(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


# --- the slow clients (their own process) ------------------------------------------------------


async def hold_slow(port: int, count: int, seconds: float, trickle: float) -> dict[str, object]:
    """Keep `count` slow connections open for `seconds`; report how long each cut one lived."""
    stop_at = time.monotonic() + seconds
    held: list[float] = []  # seconds each connection lived before the server closed it
    refused = 0
    open_now = 0
    peak = 0

    async def one() -> None:
        nonlocal refused, open_now, peak
        while time.monotonic() < stop_at:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                refused += 1
                await asyncio.sleep(0.5)
                continue
            opened = time.monotonic()
            open_now += 1
            peak = max(peak, open_now)
            cut = False
            try:
                writer.write(SLOW_HEAD)
                await writer.drain()
                while time.monotonic() < stop_at:
                    try:
                        data = await asyncio.wait_for(reader.read(1024), trickle)
                        if not data:
                            cut = True
                            break
                    except TimeoutError:
                        writer.write(b"a")
                        await writer.drain()
            except OSError:
                cut = True
            finally:
                open_now -= 1
                if cut:
                    held.append(time.monotonic() - opened)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    async def staggered(i: int) -> None:
        await asyncio.sleep(i * 0.002)  # 2,000 connections over ~4 s, not one burst
        await one()

    await asyncio.gather(*(staggered(i) for i in range(count)))
    return {
        "cut": len(held),
        "held_p50": percentile(held, 50) if held else 0.0,
        "held_max": max(held) if held else 0.0,
        "refused": refused,
        "peak_open": peak,
    }


# --- the measurement ---------------------------------------------------------------------------


def _requests(bot_url: str, slack_url: str, token: str) -> Callable[[int], LoadRequest]:
    from tests.support.slack import sign, slash_command_body

    def request(i: int) -> LoadRequest:
        if i % 2 == 0:
            body = slash_command_body("help", user_id=f"U0SOAK{i % 20:02d}", response_url=f"{slack_url}/response/S{i:08d}")
            return "/fota help", f"{bot_url}/slack/events", body, sign(body, SIGNING_SECRET)
        payload = json.dumps({"campaignId": f"soak-{i % 100}", "status": "CampaignRequestQueued"}).encode()
        return "callback", f"{bot_url}/thingspace/callbacks/{token}", payload, {"Content-Type": "application/json"}

    return request


async def run(*, slow: int = 2000, seconds: float = 30.0, clients: int = 4) -> Section:
    section = Section(f"Soak: {slow:,} slow connections held while commands and callbacks are served")
    with tempfile.TemporaryDirectory(prefix="fota-soak-") as tmp:
        work = Path(tmp)
        slack_port, bot_port = free_port(), free_port()
        standin = spawn_standin(work, slack_port)
        async with running(standin, "/bench/stats") as slack:
            db = work / "fota.db"
            # At INFO, so that the log size says what the slow clients cost in log lines.
            env = {**bot_env(slack_url=slack.url, db=db, port=bot_port), "FOTA_LOG_LEVEL": "INFO"}
            bot = spawn("bot", "bot", "serve", env=env, port=bot_port, workdir=work)
            async with running(bot):
                token = str(db_query(db, "SELECT value FROM kv WHERE key = 'callback_token'")[0][0])
                make = _requests(bot.url, slack.url, token)
                await closed_loop(make, concurrency=clients, total=200)  # warm-up
                at_rest_fds = descriptors(bot.pid)
                rest = await closed_loop(make, concurrency=clients, duration=seconds)

                slow_seconds = seconds + 20  # ramp-up, then the whole measured run beside them
                helper = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bench.soak", "slow", "--port", str(bot_port),
                    "--count", str(slow), "--seconds", f"{slow_seconds:g}",
                    stdout=asyncio.subprocess.PIPE,
                )
                peak_fds = at_rest_fds

                async def watch() -> None:
                    nonlocal peak_fds
                    while helper.returncode is None:
                        peak_fds = max(peak_fds, descriptors(bot.pid))
                        await asyncio.sleep(0.2)

                watcher = asyncio.create_task(watch())
                await asyncio.sleep(10)  # the slow clients ramp up (2,000 in ~4 s)
                fds_under_load = descriptors(bot.pid)
                loaded = await closed_loop(make, concurrency=clients, duration=seconds)
                output, _ = await asyncio.wait_for(helper.communicate(), slow_seconds + 60)
                watcher.cancel()
                stats = json.loads(output.decode().strip().splitlines()[-1])

                # Back to normal: the descriptor count returns to its resting value (bounded wait).
                settled_at = time.perf_counter()
                after_fds = descriptors(bot.pid)
                while after_fds > at_rest_fds + 5 and time.perf_counter() - settled_at < 30:
                    await asyncio.sleep(0.2)
                    after_fds = descriptors(bot.pid)
                settle_s = time.perf_counter() - settled_at
                log_bytes = bot.log.stat().st_size

    p99_rest, p99_loaded = rest.ms(99), loaded.ms(99)
    bad = sum(n for status, n in loaded.statuses.items() if status != 200) + sum(loaded.errors.values())
    section.add(
        Figure("p50 latency, commands + callbacks", loaded.ms(50), "ms", baseline=rest.ms(50)),
        Figure(
            "p99 latency, commands + callbacks", p99_loaded, "ms", baseline=p99_rest,
            target="≤ 50 ms and ≤ 3 × at rest", ok=p99_loaded <= 50 and p99_loaded <= 3 * max(p99_rest, 1),
        ),
        Figure("/fota help p99", loaded.ms(99, "/fota help"), "ms", baseline=rest.ms(99, "/fota help")),
        Figure("callback p99", loaded.ms(99, "callback"), "ms", baseline=rest.ms(99, "callback")),
        Figure("requests answered", loaded.count, "", baseline=rest.count, digits=0),
        Figure("answers other than 200, errors", bad, "", target="0", ok=bad == 0, digits=0),
        Figure("slow connections open at once (client's count)", float(stats["peak_open"]), "", digits=0),
        Figure("slow connections cut by the bot", float(stats["cut"]), "", digits=0),
        Figure("a slow connection held, median", float(stats["held_p50"]), "s", digits=1),
        Figure(
            "a slow connection held, longest", float(stats["held_max"]), "s",
            target=f"≤ {CUT_DEADLINE_S + 2:.0f} s", ok=float(stats["held_max"]) <= CUT_DEADLINE_S + 2,
        ),
        Figure("bot descriptors at rest", at_rest_fds, "", digits=0),
        Figure("bot descriptors with the slow clients (sampled / peak)", fds_under_load, "", baseline=peak_fds, digits=0),
        Figure(
            "bot descriptors after", after_fds, "", target="back to rest (+5)",
            ok=after_fds <= at_rest_fds + 5, digits=0,
        ),
        Figure("seconds to get back to rest", settle_s, "s", digits=1),
        Figure("bot log size at the end", log_bytes / 1024, "KiB", digits=0),
    )
    section.note(
        f"`fota-bot serve` in sandbox mode, FOTA_LOG_LEVEL=INFO, the Slack stand-in in its own process. "
        f"{clients} closed-loop clients alternate signed `/fota help` commands and callbacks, {seconds:.0f} s "
        f"at rest, then {seconds:.0f} s beside the slow clients (a helper process: each of {slow:,} "
        "connections sends part of a request head, then a byte every 2 s, and reconnects when cut). "
        "Baseline column: the same figure at rest; for descriptors, the peak sampled every 0.2 s."
    )
    return section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    sub = parser.add_subparsers(dest="command")
    slow = sub.add_parser("slow", help="(internal) hold slow connections and report")
    slow.add_argument("--port", type=int, required=True)
    slow.add_argument("--count", type=int, default=2000)
    slow.add_argument("--seconds", type=float, default=50.0)
    slow.add_argument("--trickle", type=float, default=2.0)
    parser.add_argument("--slow", type=int, default=2000, help="slow connections (at most 5,000)")
    parser.add_argument("--seconds", type=float, default=30.0, help="each measured run (at most 120)")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = parser.parse_args(argv)
    if args.command == "slow":
        result = asyncio.run(hold_slow(args.port, min(args.count, 5000), min(args.seconds, 200), args.trickle))
        print(json.dumps(result))
        return 0
    host = machine()
    section = asyncio.run(run(slow=min(args.slow, 5000), seconds=min(args.seconds, 120.0)))
    section.print()
    if not args.no_record:
        append_results([section], command="python -m bench.soak", host=host)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
