"""Benchmark 2: callback ingestion over loopback HTTP: ≥ 3,000/s, and in every 5-second window
≥ 50 % of a bare Starlette endpoint's rate; p99 ≤ 100 ms; none lost; with 0, 10,000 and 100,000
finished campaigns stored.

`fota-bot serve` (live mode against the sandbox in its own process) follows a submitted 1,000-device campaign, requested and approved
through signed Slack requests first. `senders` concurrent senders then POST `total` device-status
callbacks about that campaign to `/thingspace/callbacks/{token}`, each sending its next one as
soon as the last is answered. Every callback is a real change (the devices' statuses alternate,
each newer than the last), so the bot's applier works on the same event loop while the receiver
answers, as it would during a big rollout; the sandbox sends its own callbacks too.

Afterwards the callbacks table is counted: every callback answered 200 must be a row. The
baseline is a bare Starlette endpoint answering 200, served by uvicorn the same way, fed by the
same generator.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp

from bench.common import (
    CHANNEL,
    FIRMWARE,
    FIRMWARE_FROM,
    FIRMWARE_TO,
    HISTORY,
    SIGNING_SECRET,
    CpuWatch,
    Figure,
    Request,
    Section,
    StallWatch,
    base_env,
    closed_loop,
    db_query,
    free_port,
    history_label,
    last_id,
    register_callback,
    running,
    seed,
    spawn,
    spawn_sandbox,
    spawn_standin,
    stall_figure,
    thingspace_env,
    wait_for,
)
from bench.common import (
    bot_env as bot_env_for,
)
from bot.settings import SANDBOX_ACCOUNT
from bot.standins.thingspace import sandbox_imeis
from commands.blocks import ACTION_APPROVE, action_value
from tests.support.slack import block_action_body, sign, slash_command_body

TARGET_RATE = 3_000.0
TARGET_SHARE = 0.5  # of the bare endpoint's rate, in every 5-second window
TARGET_P99_MS = 100.0
DEVICES = 1_000
CALLBACK_TOKEN = "bench-callback-token-4f2a9c"
STATUSES = ("UpgradeScheduled", "UpgradeInProgress")


def callbacks(target: str, thingspace_id: str, imeis: list[str]) -> Callable[[int], Request]:
    url = f"{target}/thingspace/callbacks/{CALLBACK_TOKEN}"
    headers = {"Content-Type": "application/json"}
    start = dt.datetime.now(dt.UTC)

    def request(i: int) -> Request:
        round_, device = divmod(i, len(imeis))
        payload = {
            "accountName": SANDBOX_ACCOUNT,
            "campaignId": thingspace_id,
            "deviceId": imeis[device],
            "status": STATUSES[round_ % 2],
            "reason": "",
            "type": "DeviceStatus",
            "timestamp": (start + dt.timedelta(milliseconds=i)).isoformat(timespec="milliseconds"),
            "benchSeq": i,  # to count our rows apart from the sandbox's own callbacks
        }
        return "callback", url, json.dumps(payload).encode(), headers

    return request


async def run(
    *, total: int = 100_000, senders: int = 32, history: Sequence[tuple[int, int]] = HISTORY
) -> Section:
    sizes = ", ".join(f"{c:,}" for c, _ in history)
    section = Section(
        f"2. Callback ingestion: {total:,} callbacks, {senders} concurrent senders, with {sizes} campaigns stored"
    )
    for campaigns, devices in history:
        await _at(section, campaigns, devices, total=total, senders=senders)
    section.note(
        f"Every callback is a status change of one of the campaign's {DEVICES:,} devices, so the applier "
        "really applies them (device rows, progress edits for the card) on the bot's loop meanwhile."
    )
    section.note(
        "Closed loop over keep-alive connections (aiohttp); the generator runs in its own process. "
        "Baseline: a bare Starlette endpoint reading the body and answering 200 (bench/servers.py), "
        "measured again beside each history size. ThingSpace is the sandbox in its own process; "
        "loop stall: the bot's own monitor, read from /metrics every 2 s through the run."
    )
    return section


async def _at(section: Section, campaigns: int, devices: int, *, total: int, senders: int) -> None:
    label = history_label(campaigns, devices)
    with tempfile.TemporaryDirectory(prefix="fota-bench-ingest-") as tmp:
        work = Path(tmp)
        slack_port, bot_port, bare_port, ts_port = free_port(), free_port(), free_port(), free_port()
        env = base_env()
        db = work / "fota.db"
        seed(db, campaigns, devices)
        first = last_id(db)
        standin = spawn_standin(work, slack_port)
        sandbox = spawn_sandbox(work, ts_port)
        async with running(standin, "/bench/stats"), running(sandbox):
            bot_env = bot_env_for(
                slack_url=standin.url,
                db=db,
                port=bot_port,
                FOTA_CALLBACK_TOKEN=CALLBACK_TOKEN,
                **thingspace_env(sandbox.url, bot_port),
            )
            await register_callback(bot_env, work)
            imeis = sandbox_imeis(DEVICES)
            bare = spawn(
                "bare-starlette",
                "bench.servers",
                "bare-starlette",
                "--port",
                str(bare_port),
                env=env,
                port=bare_port,
                workdir=work,
            )
            async with running(bare), StallWatch(bare.url) as bare_watch, CpuWatch(bare.pid) as bare_cpu:
                baseline = await closed_loop(
                    callbacks(bare.url, "not-a-campaign", imeis), concurrency=senders, total=total
                )
            bot = spawn("bot", "bot", "serve", env=bot_env, port=bot_port, workdir=work)
            async with running(bot):
                thingspace_id = await submitted_campaign(bot.url, standin.url, db, imeis, after=first)
                before = _ours(db)
                async with CpuWatch(bot.pid) as bot_cpu:
                    async with StallWatch(bot.url) as watch:
                        measured = await closed_loop(
                            callbacks(bot.url, thingspace_id, imeis), concurrency=senders, total=total
                        )
                    stored, distinct = _ours(db)
                    applied_in = await wait_for(
                        lambda: _unapplied(db) == 0,
                        "the bot to apply every callback",
                        within=300,
                        step=0.2,
                    )
                if bot.process.poll() is not None:
                    raise RuntimeError(f"the bot died during the run:\n{bot.tail()}")
    assert before == (0, 0)
    ok = measured.statuses[200]
    sustained = measured.slowest_window_rate(5.0)
    bare_rate = baseline.rate
    share = sustained / bare_rate if bare_rate else 0.0
    section.add(
        Figure(
            f"{label}: callbacks per second (whole run)",
            measured.rate,
            "/s",
            bare_rate,
            target=f"≥ {TARGET_RATE:,.0f}/s",
            ok=measured.rate >= TARGET_RATE,
            digits=0,
        ),
        Figure(
            f"{label}: slowest 5-second window",
            sustained,
            "/s",
            baseline.slowest_window_rate(5.0),
            target=f"≥ {TARGET_RATE:,.0f}/s",
            ok=sustained >= TARGET_RATE,
            digits=0,
        ),
        Figure(
            f"{label}: slowest 5-second window ÷ bare rate",
            share * 100,
            "%",
            None,
            target=f"≥ {TARGET_SHARE:.0%}",
            ok=share >= TARGET_SHARE,
            digits=0,
        ),
        Figure(
            f"{label}: CPU per callback (process, until all applied)",
            bot_cpu.per(total) or 0.0,
            "ms",
            bare_cpu.per(total),
            digits=3,
        ),
        Figure(f"{label}: latency p50", measured.ms(50), "ms", baseline.ms(50)),
        Figure(
            f"{label}: latency p99",
            measured.ms(99),
            "ms",
            baseline.ms(99),
            target=f"≤ {TARGET_P99_MS:.0f} ms",
            ok=measured.ms(99) <= TARGET_P99_MS,
        ),
        Figure(f"{label}: latency max", measured.ms(100), "ms", baseline.ms(100)),
        stall_figure(f"{label}: loop stall max", watch, bare_watch),
        Figure(
            f"{label}: answered 200",
            ok,
            "",
            baseline.statuses[200],
            target=f"{total:,}",
            ok=ok == total,
            digits=0,
        ),
        Figure(
            f"{label}: rows in the callbacks table",
            stored,
            "",
            None,
            target="= answered 200",
            ok=stored == ok and distinct == ok,
            digits=0,
        ),
        Figure(f"{label}: all applied, after the last answer", applied_in, "s", None),
    )
    if measured.errors or baseline.errors:
        section.note(
            f"{label}: client errors: bot {dict(measured.errors)}, baseline {dict(baseline.errors)}"
        )


def _ours(db: Path) -> tuple[int, int]:
    row = db_query(
        db,
        "SELECT count(*), count(DISTINCT json_extract(body, '$.benchSeq')) FROM callbacks "
        "WHERE json_extract(body, '$.benchSeq') IS NOT NULL",
    )[0]
    return int(row[0]), int(row[1])  # type: ignore[arg-type]


def _unapplied(db: Path) -> int:
    return int(db_query(db, "SELECT count(*) FROM callbacks WHERE applied = 0")[0][0])  # type: ignore[arg-type]


async def submitted_campaign(
    bot_url: str, slack_url: str, db: Path, imeis: list[str], *, after: int = 0
) -> str:
    """Request a campaign of `imeis` with `/fota schedule`, approve it once its pre-flight is
    done, and return ThingSpace's (the in-process sandbox's) id for it."""
    text = (
        f"schedule firmware={FIRMWARE} from={FIRMWARE_FROM} to={FIRMWARE_TO} start=today end=+3d "
        f"devices={','.join(imeis)}"
    )
    async with aiohttp.ClientSession() as session:

        async def post(body: bytes) -> None:
            async with session.post(
                f"{bot_url}/slack/events", data=body, headers=sign(body, SIGNING_SECRET)
            ) as r:
                assert r.status == 200, await r.text()

        await post(
            slash_command_body(text, user_id="U0BENCHREQ", response_url=f"{slack_url}/response/S1")
        )
        await wait_for(
            lambda: bool(db_query(db, "SELECT 1 FROM campaigns WHERE id > ? AND thread_ts IS NOT NULL", [after])),
            "the approval card",
            within=60,
        )
        # Approve until it takes: a click while pre-flight still runs is (rightly) refused.
        for attempt in range(120):
            campaign_id, content_hash, ts, state = db_query(
                db,
                "SELECT id, content_hash, thread_ts, state FROM campaigns WHERE id > ? ORDER BY id LIMIT 1",
                [after],
            )[0]
            if state != "pending_approval":
                break
            click = block_action_body(
                ACTION_APPROVE,
                action_value(int(campaign_id), str(content_hash)),  # type: ignore[arg-type]
                user_id="U0BENCHAPPR",
                channel_id=CHANNEL,
                message_ts=str(ts),
                response_url=f"{slack_url}/response/A{attempt}",
            )
            await post(click)
            await asyncio.sleep(0.5)
        else:
            raise RuntimeError("the campaign could not be approved within 60 s")

    def named() -> bool:
        return bool(
            db_query(db, "SELECT 1 FROM campaigns WHERE id > ? AND thingspace_id IS NOT NULL", [after])
        )

    await wait_for(named, "ThingSpace's answer to the submission", within=60)
    return str(
        db_query(db, "SELECT thingspace_id FROM campaigns WHERE id > ? AND thingspace_id IS NOT NULL", [after])[0][0]
    )
