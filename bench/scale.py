"""Benchmark 4: scale (target: parsing 100,000 IMEIs ≤ 1 s; RSS ≤ 150 MB idle, ≤ 300 MB while a
100,000-device campaign reports in; `fota-bot serve` up in ≤ 2 s).

- Parsing: `/fota schedule … devices=<100,000 IMEIs>` through `parse_command` + `parse_schedule`,
  and a 100,000-row CSV through `devices_from_file` + `parse_imeis`, in this process; baseline:
  splitting the same text on commas, and reading the same CSV with `csv.reader`.
- Memory: `fota-bot serve` in live mode against the sandbox in its own process (so the
  simulated ThingSpace's 100,000 devices do not count), Slack played by the stand-in. RSS idle
  after start-up, then the peak (VmHWM) over a whole rollout: the modal with a 100,000-row CSV,
  pre-flight, approval, submission, the sandbox's callbacks, re-reads, the summary and its CSV.
  Baseline: a bare Python process that imports the same libraries. In the same run, the loop
  stall (target ≤ 50 ms; no piece of work should hold the loop more than 20 ms) from the
  modal's submission until pre-flight's findings are stored; baseline: the same bot idle.
- Reconcile: `Rollout.reconcile` of a 100,000-device campaign (100 report pages) against the
  in-process sandbox, first with every device changed, then with nothing new; baseline: paging
  through the same 100 report pages without applying them.
- Start-up: spawn `python -m bot serve` (the three required settings, a new or an existing
  FOTA_DB, a free FOTA_PORT) and poll /healthz until 200; baseline: the same for a bare Starlette
  app under uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import (
    BOT_TOKEN,
    CHANNEL,
    FIRMWARE,
    FIRMWARE_FROM,
    FIRMWARE_TO,
    SIGNING_SECRET,
    STALL_TARGET_MS,
    Figure,
    Section,
    Server,
    StallWatch,
    base_env,
    db_query,
    free_port,
    rss_kib,
    running,
    seed,
    spawn,
    wait_for,
    wait_ready,
)
from bench.common import (
    bot_env as bot_env_for,
)
from bot.standins.thingspace import sandbox_imeis
from commands.blocks import ACTION_APPROVE_ELIGIBLE, action_value
from commands.imei import devices_from_file, parse_imeis
from commands.modal import SCHEDULE_CALLBACK_ID
from commands.parse import Schedule, parse_command, parse_schedule
from tests.support.slack import (
    block_action_body,
    file_input,
    sign,
    static_select,
    text_input,
    view_submission_body,
)

PARSE_TARGET = 1.0
IDLE_TARGET_MB, BUSY_TARGET_MB = 150.0, 300.0
START_TARGET = 2.0
ACCOUNT = "0000000000-00001"
LIBRARIES = "starlette uvicorn slack_bolt slack_sdk httpx aiohttp sqlite_utils apscheduler prometheus_client"


async def run(*, devices: int = 100_000, history: tuple[int, int] = (100_000, 100)) -> Section:
    section = Section(f"4. Scale: {devices:,} devices")
    imeis = sandbox_imeis(devices, kind=None)
    _parsing(section, imeis)
    # The rollouts take eligible devices: an excluded device now needs a recorded override,
    # and Approve on a request holding excluded devices is (rightly) refused.
    eligible = sandbox_imeis(devices)
    await _reconcile(section, eligible)
    await _startup(section, history=history)
    await _memory(section, eligible)
    return section


def _timed(work: Callable[[], Any], repeat: int = 3) -> float:
    """Median wall time of `repeat` runs (the first one included: no warm cache in real life)."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --- parsing -------------------------------------------------------------------------------------


def _parsing(section: Section, imeis: list[str]) -> None:
    today = dt.datetime.now(dt.UTC).date()
    n = len(imeis)
    text = (
        f"schedule firmware={FIRMWARE} from={FIRMWARE_FROM} to={FIRMWARE_TO} start=today end=+3d "
        f"window=18-22 devices={','.join(imeis)}"
    )

    def from_text() -> None:
        parsed = parse_command(text)
        assert isinstance(parsed, Schedule)
        request = parse_schedule(parsed.args, today=today, max_devices=n)
        assert len(request.devices) == n

    def split_text() -> None:
        assert len(set(text.rsplit("devices=", 1)[1].split(","))) == n

    content = (
        "imei,label,site\n"
        + "".join(f"{imei},unit {i},site {i % 7}\n" for i, imei in enumerate(imeis))
    ).encode()

    def from_csv() -> None:
        devices, problems, _ = parse_imeis(devices_from_file(content, "devices.csv"), max_devices=n)
        assert len(devices) == n and not problems

    def read_csv() -> None:
        rows = list(csv.reader(io.StringIO(content.decode())))
        assert len(rows) == n + 1

    t_text, t_split = _timed(from_text), _timed(split_text)
    t_csv, t_read = _timed(from_csv), _timed(read_csv)
    section.add(
        Figure(
            f"parse + validate {n:,} IMEIs, command text",
            t_text,
            "s",
            t_split,
            target=f"≤ {PARSE_TARGET:g} s",
            ok=t_text <= PARSE_TARGET,
            digits=3,
        ),
        Figure(
            f"parse + validate {n:,} IMEIs, CSV file",
            t_csv,
            "s",
            t_read,
            target=f"≤ {PARSE_TARGET:g} s",
            ok=t_csv <= PARSE_TARGET,
            digits=3,
        ),
    )
    section.note(
        "Parsing: median of 3 runs; baselines: splitting the devices on commas into a set, and "
        f"csv.reader over the same file ({len(content) / 1e6:.1f} MB, 3 columns with a header)."
    )


# --- reconcile -----------------------------------------------------------------------------------


async def _reconcile(section: Section, imeis: list[str]) -> None:
    from bot.app import build_runtime
    from bot.settings import load
    from bot.standins.thingspace import Sandbox, SandboxClock

    n = len(imeis)
    today = dt.datetime.now(dt.UTC).date()
    with tempfile.TemporaryDirectory(prefix="fota-bench-reconcile-") as tmp:
        clock = SandboxClock.manual_at(None)
        sandbox = Sandbox(clock=clock)
        settings = load(
            {
                "SLACK_BOT_TOKEN": BOT_TOKEN,
                "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "FOTA_APPROVAL_CHANNEL": CHANNEL,
                "SLACK_API_URL": "http://127.0.0.1:9/api/",  # never called: the outbox is not run
                "FOTA_DB": str(Path(tmp) / "fota.db"),
                "FOTA_LOG_LEVEL": "WARNING",
            }
        )
        rt = build_runtime(settings, sandbox=sandbox)
        await rt.start(workers=False)
        try:
            text = f"firmware={FIRMWARE} from={FIRMWARE_FROM} to={FIRMWARE_TO} start=today end=+3d devices={','.join(imeis)}"
            request = parse_schedule(text, today=today, max_devices=n)
            campaign = await rt.service.request(
                user="U0SCALEREQ", request=request, response_url=None
            )
            await rt.background.idle()  # pre-flight: 100 device-information requests
            campaign = rt.store.campaign(campaign.id)
            await rt.service.approve(
                campaign.id, user="U0SCALEAPPR", shown_hash=campaign.content_hash
            )
            await rt.background.idle()  # the submission
            campaign = rt.store.campaign(campaign.id)
            assert campaign.thingspace_id, f"not submitted: {campaign.state}"
            clock.advance(3600)  # ThingSpace's side is over: every device has its final status
            account, ts_id = campaign.account, campaign.thingspace_id

            async def page_only() -> int:
                count = 0
                async for _ in rt.thingspace.campaign_devices(account, ts_id):
                    count += 1
                return count

            pages_before = sum(1 for _, p in sandbox.request_log if "/reports/" in p)
            started = time.perf_counter()
            assert await page_only() == n
            t_pages = time.perf_counter() - started
            pages = sum(1 for _, p in sandbox.request_log if "/reports/" in p) - pages_before

            started = time.perf_counter()
            await rt.rollout.reconcile(campaign.id)
            t_first = time.perf_counter() - started
            changed = sum(
                rt.store.device_counts(campaign.id)[b] for b in ("succeeded", "failed", "other")
            )
            started = time.perf_counter()
            await rt.rollout.reconcile(campaign.id)
            t_again = time.perf_counter() - started
            state = rt.store.campaign(campaign.id).state.value
            started = time.perf_counter()  # the baseline again, warm like the second pass
            await page_only()
            t_pages = min(t_pages, time.perf_counter() - started)
        finally:
            await rt.stop()
    section.add(
        Figure(f"reconcile, {n:,} devices all changed", t_first, "s", t_pages, digits=2),
        Figure(f"reconcile, {n:,} devices, nothing new", t_again, "s", t_pages, digits=2),
    )
    section.note(
        f"Reconcile: {pages} report pages from the in-process sandbox; the first pass moved {changed:,} "
        f"devices to a final status and the campaign to `{state}`. Baseline: the same pages read without "
        "applying them (the faster of two reads)."
    )


# --- start-up ------------------------------------------------------------------------------------


async def _startup(section: Section, runs: int = 3, history: tuple[int, int] = (100_000, 100)) -> None:
    new_db: list[float] = []
    existing_db: list[float] = []
    seeded_db: list[float] = []
    seeded_rss: list[float] = []
    bare: list[float] = []
    campaigns, devices = history
    with tempfile.TemporaryDirectory(prefix="fota-bench-startup-") as tmp:
        work = Path(tmp)
        seeded = work / "seeded.db"
        seed(seeded, campaigns, devices)
        for i in range(runs):
            for kind, into in (("new", new_db), ("existing", existing_db), ("seeded", seeded_db)):
                port = free_port()
                db = {"new": work / f"new-{i}.db", "existing": work / "existing.db", "seeded": seeded}[kind]
                env = base_env(
                    SLACK_BOT_TOKEN=BOT_TOKEN,
                    SLACK_SIGNING_SECRET=SIGNING_SECRET,
                    FOTA_APPROVAL_CHANNEL=CHANNEL,
                    SLACK_API_URL="http://127.0.0.1:9/api/",
                    FOTA_DB=str(db),
                    FOTA_HOST="127.0.0.1",
                    FOTA_PORT=str(port),
                    FOTA_LOG_LEVEL="WARNING",
                )
                server = spawn(f"serve-{i}-{kind}", "bot", "serve", env=env, port=port, workdir=work)
                if kind == "seeded":
                    into.append(await _time_to_healthy(server, keep=True))
                    await asyncio.sleep(3.0)  # idle: the scheduler's first ticks, nothing else
                    seeded_rss.append(rss_kib(server.pid)["VmRSS"] / 1024)
                    server.stop()
                else:
                    into.append(await _time_to_healthy(server))
            port = free_port()
            server = spawn(
                f"bare-{i}",
                "bench.servers",
                "bare-starlette",
                "--port",
                str(port),
                env=base_env(),
                port=port,
                workdir=work,
            )
            bare.append(await _time_to_healthy(server))
    worst = max(new_db + existing_db + seeded_db)
    label = f"{campaigns:,} campaigns stored"
    section.add(
        Figure(
            "serve start-up to /healthz 200, new database (median)",
            statistics.median(new_db),
            "s",
            statistics.median(bare),
            target=f"≤ {START_TARGET:g} s",
            ok=statistics.median(new_db) <= START_TARGET,
            digits=2,
        ),
        Figure(
            "serve start-up to /healthz 200, existing database (median)",
            statistics.median(existing_db),
            "s",
            statistics.median(bare),
            target=f"≤ {START_TARGET:g} s",
            ok=statistics.median(existing_db) <= START_TARGET,
            digits=2,
        ),
        Figure(
            f"serve start-up to /healthz 200, {label} (median)",
            statistics.median(seeded_db),
            "s",
            statistics.median(bare),
            target=f"≤ {START_TARGET:g} s",
            ok=statistics.median(seeded_db) <= START_TARGET,
            digits=2,
        ),
        Figure(
            f"serve start-up, slowest of {3 * runs}",
            worst,
            "s",
            max(bare),
            target=f"≤ {START_TARGET:g} s",
            ok=worst <= START_TARGET,
            digits=2,
        ),
        Figure(
            f"RSS idle after start-up, {label} (largest)",
            max(seeded_rss),
            "MB",
            None,
            target=f"≤ {IDLE_TARGET_MB:g} MB",
            ok=max(seeded_rss) <= IDLE_TARGET_MB,
        ),
    )
    section.note(
        "Start-up: from spawning `python -m bot serve` (sandbox mode) to the first 200 from /healthz, "
        "polled every 10 ms; baseline: a bare Starlette app under uvicorn, spawned and polled the same way. "
        f"`{label}`: a copy of bench/seed.py's database ({devices} devices each, "
        f"{campaigns * devices:,} device rows), RSS read 3 s after /healthz answered."
    )


async def _time_to_healthy(server: Server, *, keep: bool = False) -> float:
    started = time.perf_counter()
    try:
        await wait_ready(server, within=60)
        return time.perf_counter() - started
    except BaseException:
        server.stop()
        raise
    finally:
        if not keep:
            server.stop()


# --- memory --------------------------------------------------------------------------------------


async def _memory(section: Section, imeis: list[str]) -> None:
    n = len(imeis)
    baseline_kib = _bare_python_rss()
    with tempfile.TemporaryDirectory(prefix="fota-bench-memory-") as tmp:
        work = Path(tmp)
        devices_csv = work / "devices.csv"
        devices_csv.write_text("imei\n" + "\n".join(imeis) + "\n")
        file_json = work / "file.json"
        slack_port, ts_port, bot_port = free_port(), free_port(), free_port()
        env = base_env()
        standin = spawn(
            "standin",
            "bench.servers",
            "standin",
            "--port",
            str(slack_port),
            "--file",
            str(devices_csv),
            "--file-json",
            str(file_json),
            env=env,
            port=slack_port,
            workdir=work,
        )
        sandbox = spawn(
            "sandbox",
            "bench.servers",
            "sandbox",
            "--port",
            str(ts_port),
            "--speed",
            "1",
            env=env,
            port=ts_port,
            workdir=work,
        )
        async with running(standin, "/bench/stats"), running(sandbox):
            db = work / "fota.db"
            bot_env = bot_env_for(slack_url=standin.url, db=db, port=bot_port,
                FOTA_PUBLIC_URL=f"http://127.0.0.1:{bot_port}",
                THINGSPACE_URL=sandbox.url,
                THINGSPACE_CLIENT_ID="bench-key",
                THINGSPACE_CLIENT_SECRET="bench-secret",
                THINGSPACE_USERNAME="bench-user",
                THINGSPACE_PASSWORD="bench-password",
                THINGSPACE_ACCOUNT=ACCOUNT,
            )
            # ThingSpace learns where to call back the way an operator tells it, by the CLI.
            register = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "register-callback",
                env=bot_env,
                cwd=work,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output, _ = await asyncio.wait_for(register.communicate(), 60)
            if register.returncode != 0:
                raise RuntimeError(f"register-callback failed: {output.decode(errors='replace')}")
            bot = spawn("bot", "bot", "serve", env=bot_env, port=bot_port, workdir=work)
            async with running(bot):
                await asyncio.sleep(3.0)  # idle: the scheduler's first ticks, nothing else
                idle = rss_kib(bot.pid)
                # The loop of the same bot with nothing to do, once start-up's own stalls have
                # left the monitor's 5-second window: the stall figure's baseline.
                await asyncio.sleep(2.5)
                async with StallWatch(bot.url, every=1.0) as idle_stalls:
                    await asyncio.sleep(5.0)
                peak_seen = 0
                sampling = True

                async def sample() -> None:
                    nonlocal peak_seen
                    while sampling:
                        with contextlib.suppress(OSError):
                            peak_seen = max(peak_seen, rss_kib(bot.pid)["VmRSS"])
                        await asyncio.sleep(0.25)

                sampler = asyncio.create_task(sample())
                started = time.perf_counter()
                try:
                    timings, stalls = await _rollout(bot, standin, db, json.loads(file_json.read_text()), n)
                finally:
                    sampling = False
                    await sampler
                elapsed = time.perf_counter() - started
                busy = rss_kib(bot.pid)
                sandbox_peak = rss_kib(sandbox.pid)["VmHWM"]
                counts = db_query(db, "SELECT status, count(*) FROM devices GROUP BY status")
    idle_mb, peak_mb = idle["VmRSS"] / 1024, busy["VmHWM"] / 1024
    section.add(
        Figure(
            "RSS idle after start-up",
            idle_mb,
            "MB",
            baseline_kib / 1024,
            target=f"≤ {IDLE_TARGET_MB:g} MB",
            ok=idle_mb <= IDLE_TARGET_MB,
        ),
        Figure(
            f"peak RSS (VmHWM) through a {n:,}-device rollout",
            peak_mb,
            "MB",
            baseline_kib / 1024,
            target=f"≤ {BUSY_TARGET_MB:g} MB",
            ok=peak_mb <= BUSY_TARGET_MB,
        ),
        Figure("RSS at the end of the rollout", busy["VmRSS"] / 1024, "MB", None),
        Figure(
            f"loop stall max while a {n:,}-device request is stored and pre-flighted",
            stalls.ms,
            "ms",
            idle_stalls.ms,
            target=f"≤ {STALL_TARGET_MS:.0f} ms",
            ok=stalls.ms <= STALL_TARGET_MS and stalls.samples > 0,
        ),
        Figure(
            "loop stalls of 20 ms or more meanwhile (a piece of work holds the loop ≤ 20 ms)",
            float(stalls.over_20 if stalls.over_20 is not None else math.nan),
            "",
            float(idle_stalls.over_20) if idle_stalls.over_20 is not None else None,
            digits=0,
        ),
    )
    section.note(
        "Memory: "
        + ", ".join(f"{what} after {t:.0f} s" for what, t in timings)
        + f"; {elapsed:.0f} s in all. Devices at the end: "
        + ", ".join(f"{status} {count:,}" for status, count in counts)
        + ". "
        f"Sampled RSS peak {peak_seen / 1024:.0f} MB; the sandbox process (ThingSpace's side) peaked at "
        f"{sandbox_peak / 1024:.0f} MB. Baseline: a bare Python importing {LIBRARIES.replace(' ', ', ')}."
    )
    section.note(
        "Loop stalls: the bot's own monitor, read from /metrics every second from the modal's "
        "submission (the CSV downloaded and parsed, the request stored a chunk at a time) until "
        "pre-flight's findings are stored (ThingSpace asked, the findings written a chunk at a "
        "time, the card redrawn); baseline: the same bot idle for 5 s before it. The count is the "
        "monitor's stalls of 20 ms or more; on a shared machine the operating system's scheduling "
        "adds some to both."
    )


def _bare_python_rss() -> int:
    code = f"import {', '.join(LIBRARIES.split())}; print(open('/proc/self/status').read())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    for line in out.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def _rollout(
    bot: Server, standin: Server, db: Path, file: dict[str, Any], n: int
) -> tuple[list[tuple[str, float]], StallWatch]:
    """The modal with the CSV, approval once pre-flight allows it, then wait for the end;
    the loop's stalls from the submission until pre-flight's findings are stored."""
    started = time.perf_counter()
    marks: list[tuple[str, float]] = []
    today = dt.datetime.now(dt.UTC).date()
    values = {
        "firmware": {"firmware": text_input(FIRMWARE)},
        "from": {"from": text_input(FIRMWARE_FROM)},
        "to": {"to": text_input(FIRMWARE_TO)},
        "protocol": {"protocol": static_select("LWM2M")},
        "start": {"start": text_input(today.isoformat())},
        "end": {"end": text_input((today + dt.timedelta(days=3)).isoformat())},
        "devices_file": {"devices_file": file_input(file)},
    }
    async with aiohttp.ClientSession() as session:

        async def post(body: bytes) -> None:
            async with session.post(
                f"{bot.url}/slack/events", data=body, headers=sign(body, SIGNING_SECRET)
            ) as r:
                assert r.status == 200, await r.text()

        async with StallWatch(bot.url, every=1.0) as stalls:
            await post(view_submission_body(SCHEDULE_CALLBACK_ID, values, user_id="U0BENCHREQ"))
            await wait_for(
                lambda: bool(db_query(db, "SELECT 1 FROM campaigns WHERE thread_ts IS NOT NULL")),
                "the card",
                within=120,
            )
            marks.append(("card posted", time.perf_counter() - started))
            await wait_for(
                lambda: bool(db_query(db, "SELECT 1 FROM preflight WHERE status = 'done'")),
                "pre-flight's findings",
                within=300,
            )
            marks.append(("pre-flight done", time.perf_counter() - started))
        # The card's primary button: "Approve N eligible" (a plain Approve is refused while
        # pre-flight excludes devices, as it does for the sandbox's unknown/ineligible/unlicensed
        # shares of this fleet); with nothing excluded it approves the request as it is.
        for attempt in range(600):  # a click while pre-flight runs is refused: click until it takes
            campaign_id, content_hash, ts, state = db_query(
                db, "SELECT id, content_hash, thread_ts, state FROM campaigns"
            )[0]
            if state != "pending_approval":
                break
            await post(
                block_action_body(
                    ACTION_APPROVE_ELIGIBLE,
                    action_value(int(campaign_id), str(content_hash)),  # type: ignore[arg-type]
                    user_id="U0BENCHAPPR",
                    channel_id=CHANNEL,
                    message_ts=str(ts),
                    response_url=f"{standin.url}/response/A{attempt}",
                )
            )
            await asyncio.sleep(0.5)
        marks.append(("approved", time.perf_counter() - started))
        await wait_for(
            lambda: bool(db_query(db, "SELECT 1 FROM campaigns WHERE thingspace_id IS NOT NULL")),
            "submission",
            within=120,
        )
        marks.append(("submitted", time.perf_counter() - started))

        def uploaded() -> bool:
            return (
                db_query(
                    db, "SELECT count(*) FROM outbox WHERE kind = 'upload' AND sent_at IS NOT NULL"
                )[0][0]
                > 0
            )  # type: ignore[operator]

        await wait_for(
            uploaded, "the end of the rollout (the CSV in the thread)", within=600, step=0.5
        )
        marks.append(("ended, CSV posted", time.perf_counter() - started))
    return marks, stalls
