"""Pre-flight time for 1,000 and 100,000 devices against the in-process sandbox.

Runs the real `PreflightRunner` (the real ThingSpace client, through httpx.ASGITransport to the
sandbox app, in the same process and event loop) on a fresh SQLite file, and records:

- the wall time from "request stored" to "findings stored" (ThingSpace calls, conflicts query,
  evaluation, storage), with the default chunk size and concurrency;
- the pure `evaluate` alone on the same answers;
- the longest event-loop stall seen meanwhile (what a Slack ack would wait at worst; the
  sandbox answers in the same loop here, so this is pessimistic);
- the process's peak RSS.

Prints the figures and appends them, with the machine description, to bench/RESULTS.md.

    .venv/bin/python bench/bench_preflight.py [--sizes 1000 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.background import Background  # noqa: E402
from bot.secrets import Secret  # noqa: E402
from bot.standins.thingspace import Sandbox, SandboxClock, create_sandbox_app, sandbox_imeis  # noqa: E402
from bot.thingspace.client import ThingSpaceClient  # noqa: E402
from bot.workflow.preflight import (  # noqa: E402
    CHUNK_SIZE,
    CONCURRENCY,
    DeviceInfo,
    PreflightRunner,
    RequestFacts,
    evaluate,
)
from storage import preflight as stored  # noqa: E402
from storage.findings import DONE, Narrowed  # noqa: E402
from storage.model import Campaign  # noqa: E402
from storage.store import Store  # noqa: E402

ACCOUNT = "0000000000-00001"
FIRMWARE = "SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657"
START = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)
RESULTS = ROOT / "bench" / "RESULTS.md"


class _Quiet:
    def preflight_updated(self, campaign: Campaign) -> None:
        pass

    def narrowed(self, campaign: Campaign, user: str, narrowed: Narrowed) -> None:
        pass


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    return (
        f"{platform.platform()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs ({cpu_model()})"
    )


def peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def loop_stalls(stop: asyncio.Event, seen: list[float], period: float = 0.005) -> None:
    """Longest gap between two wake-ups of a task that asks to wake every `period` seconds."""
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(period)
        now = time.perf_counter()
        seen.append(now - last - period)
        last = now


async def one_size(n: int, workdir: Path) -> dict[str, Any]:
    store = Store.open(workdir / f"bench-{n}.db", clock=lambda: START)
    sandbox = Sandbox(clock=SandboxClock.manual_at(START))
    credential = Secret("sandbox")
    client = ThingSpaceClient(
        base_url="http://sandbox.in-process",
        transport=httpx.ASGITransport(app=create_sandbox_app(sandbox)),
        client_id=credential,
        client_secret=credential,
        username=credential,
        password=credential,
    )
    background = Background()
    runner = PreflightRunner(store=store, thingspace=client, events=_Quiet(), background=background)
    devices = sandbox_imeis(n, kind=None)  # every kind, in the sandbox's shares
    campaign = store.create_campaign(
        requester="U0BENCH",
        account=ACCOUNT,
        firmware_name=FIRMWARE,
        firmware_from="SR1.2.0.0-10512",
        firmware_to="SR1.2.0.0-10657",
        protocol="LWM2M",
        start_date=START.date(),
        end_date=START.date() + dt.timedelta(days=3),
        windows=(),
        name="bench",
        devices=devices,
        sandbox=True,
        expires_at=START + dt.timedelta(days=1),
    )
    await client.check()  # log in first: the figure is the checks, not the OAuth round trip

    rss_before = peak_rss_mb()
    stop = asyncio.Event()
    stalls: list[float] = []
    ticker = asyncio.create_task(loop_stalls(stop, stalls))
    started = time.perf_counter()
    runner.start(campaign)
    await background.idle()
    elapsed = time.perf_counter() - started
    stop.set()
    await ticker
    rss_after = peak_rss_mb()

    record = stored.load(store, campaign.id)
    assert record is not None and record.status == DONE and record.summary is not None
    requests = sum(
        1 for method, path in sandbox.request_log if method == "POST" and "/devices/" in path
    )

    # The pure evaluation alone, on the same answers.
    answers = await client.device_info(
        ACCOUNT, devices, chunk_size=CHUNK_SIZE, concurrency=CONCURRENCY
    )
    infos = [DeviceInfo.from_thingspace(a) for a in answers]
    catalogue = await client.list_firmware(ACCOUNT)
    subscription = await client.subscription(ACCOUNT)
    t0 = time.perf_counter()
    evaluate(RequestFacts.of(campaign, devices), catalogue, infos, subscription, [])
    pure = time.perf_counter() - t0

    await client.aclose()
    store.close()
    return {
        "devices": n,
        "seconds": elapsed,
        "evaluate": pure,
        "stall_ms": max(stalls, default=0.0) * 1000,
        "requests": requests,
        "eligible": record.summary.eligible,
        "rss_before": rss_before,
        "rss_mb": rss_after,
    }


async def main(sizes: list[int]) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        return [await one_size(n, Path(tmp)) for n in sizes]


def report(rows: list[dict[str, Any]]) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "",
        f"## Pre-flight checks (bench/bench_preflight.py), {stamp}",
        "",
        f"Machine: {machine()}.",
        f"In-process sandbox over httpx.ASGITransport; POST /devices in chunks of {CHUNK_SIZE:,}, "
        f"{CONCURRENCY} at once; devices of every sandbox kind. Loop stall: longest delay of a "
        "5 ms ticker during the run (the sandbox answers in the same loop). RSS: process peak "
        "before the run (IMEIs generated, request stored) and at its end.",
        "",
        "| devices | pre-flight (s) | evaluate alone (s) | POST /devices | eligible | max loop stall (ms) | peak RSS before → after (MB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['devices']:,} | {r['seconds']:.2f} | {r['evaluate']:.3f} | {r['requests']} | "
            f"{r['eligible']:,} | {r['stall_ms']:.0f} | {r['rss_before']:.0f} → {r['rss_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 100_000])
    parser.add_argument(
        "--no-record", action="store_true", help="print only; do not append to RESULTS.md"
    )
    args = parser.parse_args()
    rows = asyncio.run(main(args.sizes))
    text = report(rows)
    print(text)
    if not args.no_record:
        # Appended, never rewritten: other benchmarks record their figures in the same file.
        with RESULTS.open("a", encoding="utf-8") as out:
            out.write(text)
        print(f"appended to {RESULTS.relative_to(ROOT)}")
