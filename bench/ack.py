"""Benchmark 1: ack latency of signed slash commands and button clicks: p99 ≤ 50 ms and ≤ 3 × a
bare Bolt app's, with 0, 10,000 and 100,000 finished campaigns stored.

`fota-bot serve` (live mode against the sandbox in its own process; Slack's Web API played by the
stand-in in its own process) takes
`/fota help`, `/fota schedule … devices=<3 IMEIs>` and Approve clicks on posted cards, in equal
thirds, from `clients` concurrent clients, each sending its next request as soon as the last one
is answered (closed loop), for `seconds`. The same generator, with the same bodies, then runs
against the baseline: a bare Bolt `AsyncApp` that only acks, served the same way.

Every request is signed at the moment it is sent. The bot really does the work behind each ack
(a schedule request is stored, pre-flighted and posted as a card; the first Approve on a card
submits it to the sandbox, later ones are answered "already …"), so its background work
competes with its acks, as it would in production.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.common import (
    CHANNEL,
    FIRMWARE,
    FIRMWARE_FROM,
    FIRMWARE_TO,
    HISTORY,
    SIGNING_SECRET,
    CpuWatch,
    Figure,
    Load,
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
from bot.standins.thingspace import sandbox_imeis
from commands.blocks import ACTION_APPROVE, action_value
from tests.support.slack import block_action_body, sign, slash_command_body

TARGET_P99_MS = 50.0
TARGET_RATIO = 3.0  # × the bare AsyncApp's p99 in the same run
POOL = 40  # cards posted before the clock starts, for the Approve clicks to land on
DISTINCT_REQUESTS = 4000  # device lists for the schedule requests (then they come round again)
KINDS = ("/fota help", "/fota schedule (3 devices)", "Approve click")


class Bodies:
    """Request i: kind i % 3. Bodies are built up front; signatures at send time."""

    def __init__(self, slack_url: str, cards: list[tuple[int, str, str]]):
        self.slack_url = slack_url
        # Each request its own 3 devices: the same devices in hundreds of live requests would
        # measure pre-flight's conflict check at an absurd number of conflicts instead.
        imeis = sandbox_imeis(3 * DISTINCT_REQUESTS, start=10_000)
        self.schedules = [
            f"schedule firmware={FIRMWARE} from={FIRMWARE_FROM} to={FIRMWARE_TO} "
            f"start=today end=+3d devices={','.join(imeis[k : k + 3])}"
            for k in range(0, len(imeis), 3)
        ]
        self.cards = itertools.cycle(cards)

    def make(self, target: str) -> Callable[[int], Request]:
        url = f"{target}/slack/events"

        def request(i: int) -> Request:
            kind = KINDS[i % 3]
            response_url = f"{self.slack_url}/response/B{i:08d}"
            if i % 3 == 0:
                body = slash_command_body(
                    "help", user_id=f"U0BREQ{i % 50:02d}", response_url=response_url
                )
            elif i % 3 == 1:
                text = self.schedules[(i // 3) % len(self.schedules)]
                body = slash_command_body(
                    text, user_id=f"U0BREQ{i % 50:02d}", response_url=response_url
                )
            else:
                campaign_id, content_hash, ts = next(self.cards)
                body = block_action_body(
                    ACTION_APPROVE,
                    action_value(campaign_id, content_hash),
                    user_id=f"U0BAPP{i % 20:02d}",
                    channel_id=CHANNEL,
                    message_ts=ts,
                    response_url=response_url,
                )
            return kind, url, body, sign(body, SIGNING_SECRET)

        return request


async def _measure(target: str, bodies: Bodies, *, clients: int, seconds: float) -> Load:
    make = bodies.make(target)
    await closed_loop(make, concurrency=clients, total=clients * 15)  # warm-up, not counted
    return await closed_loop(make, concurrency=clients, duration=seconds)


async def run(
    *, seconds: float = 30.0, clients: int = 20, history: Sequence[tuple[int, int]] = HISTORY
) -> Section:
    sizes = ", ".join(f"{c:,}" for c, _ in history)
    section = Section(
        f"1. Ack latency: {clients} concurrent clients, {seconds:.0f} s each, with {sizes} campaigns stored"
    )
    started = time.perf_counter()
    for campaigns, devices in history:
        await _at(section, campaigns, devices, seconds=seconds, clients=clients)
    section.note(
        f"Closed loop: each client sends its next request when the last is answered, so the rate is "
        f"what each server sustains; latency includes the queue of {clients} clients. "
        f"Baseline: a bare Bolt AsyncApp that only acks (bench/servers.py), same bodies, same generator, "
        "measured again beside each history size."
    )
    section.note(
        "History: finished campaigns seeded before the bot starts (bench/seed.py: their devices from one "
        "fleet, so a device is in many campaigns; decisions, audit, delivered Slack updates, callbacks). "
        "ThingSpace is the sandbox in its own process (`python -m bench.servers sandbox`), the bot in "
        "live mode against it, so the figures are the bot's. Loop stall: the bot's own monitor, read "
        "from /metrics every 2 s through the measured run."
    )
    section.seconds = time.perf_counter() - started
    return section


async def _at(section: Section, campaigns: int, devices: int, *, seconds: float, clients: int) -> None:
    label = history_label(campaigns, devices)
    with tempfile.TemporaryDirectory(prefix="fota-bench-ack-") as tmp:
        work = Path(tmp)
        slack_port, bot_port, bare_port, ts_port = free_port(), free_port(), free_port(), free_port()
        env = base_env()
        db = work / "fota.db"
        seeded_in = seed(db, campaigns, devices)
        first = last_id(db)
        standin = spawn_standin(work, slack_port)
        sandbox = spawn_sandbox(work, ts_port)
        async with running(standin, "/bench/stats"), running(sandbox):
            slack_url = standin.url
            bot_env = bot_env_for(
                slack_url=slack_url, db=db, port=bot_port, **thingspace_env(sandbox.url, bot_port)
            )
            await register_callback(bot_env, work)
            bare = spawn(
                "bare-bolt",
                "bench.servers",
                "bare-bolt",
                "--port",
                str(bare_port),
                "--slack-api-url",
                f"{slack_url}/api/",
                env=env,
                port=bare_port,
                workdir=work,
            )
            bot = spawn("bot", "bot", "serve", env=bot_env, port=bot_port, workdir=work)
            async with running(bot):
                cards = await _post_cards(bot.url, slack_url, db, after=first)
                bodies = Bodies(slack_url, cards)
                async with running(bare), StallWatch(bare.url) as bare_watch, CpuWatch(bare.pid) as bare_cpu:
                    baseline = await _measure(bare.url, bodies, clients=clients, seconds=seconds)
                async with StallWatch(bot.url) as watch, CpuWatch(bot.pid) as bot_cpu:
                    measured = await _measure(bot.url, bodies, clients=clients, seconds=seconds)
                approved = db_query(
                    db, "SELECT count(*) FROM campaigns WHERE id > ? AND state != 'pending_approval'", [first]
                )[0][0]
                created = db_query(db, "SELECT count(*) FROM campaigns WHERE id > ?", [first])[0][0]
                if bot.process.poll() is not None:
                    raise RuntimeError(f"the bot died during the run:\n{bot.tail()}")

    p99, bare_p99 = measured.ms(99), baseline.ms(99)
    ratio = p99 / bare_p99 if bare_p99 else float("inf")
    for kind in KINDS:
        section.add(Figure(f"{label}: {kind} p99", measured.ms(99, kind), "ms", baseline.ms(99, kind)))
    section.add(
        Figure(f"{label}: all acks p50", measured.ms(50), "ms", baseline.ms(50)),
        Figure(
            f"{label}: all acks p99",
            p99,
            "ms",
            bare_p99,
            target=f"≤ {TARGET_P99_MS:.0f} ms",
            ok=p99 <= TARGET_P99_MS,
        ),
        Figure(
            f"{label}: all acks p99 ÷ bare p99",
            ratio,
            "×",
            None,
            target=f"≤ {TARGET_RATIO:g} ×",
            ok=ratio <= TARGET_RATIO,
            digits=2,
        ),
        Figure(f"{label}: all acks max", measured.ms(100), "ms", baseline.ms(100)),
        stall_figure(f"{label}: loop stall max", watch, bare_watch),
        Figure(f"{label}: acks per second", measured.rate, "/s", baseline.rate, digits=0),
        Figure(
            f"{label}: CPU per ack (process, warm-up included)",
            bot_cpu.per(measured.count + clients * 15) or 0.0,
            "ms",
            bare_cpu.per(baseline.count + clients * 15),
            digits=2,
        ),
        Figure(
            f"{label}: answers other than 200",
            measured.count - measured.statuses[200],
            "",
            baseline.count - baseline.statuses[200],
            target="0",
            ok=measured.count == measured.statuses[200] and not measured.errors,
            digits=0,
        ),
    )
    section.note(
        f"{label}: {measured.count:,} acks measured; behind them the bot created {created:,} campaigns (cards "
        f"posted to the stand-in, pre-flight against the sandbox) and {approved:,} went on from approval to "
        f"ThingSpace" + (f"; the seeded database was copied in {seeded_in:.1f} s" if campaigns else "") + "."
    )
    if measured.errors or baseline.errors:
        section.note(f"{label}: client errors: bot {dict(measured.errors)}, baseline {dict(baseline.errors)}")


async def _post_cards(bot_url: str, slack_url: str, db: Path, *, after: int) -> list[tuple[int, str, str]]:
    """POOL schedule requests, each waited for until its card is posted in the channel."""
    import aiohttp

    devices = ",".join(sandbox_imeis(3, start=1000))
    text = f"schedule firmware={FIRMWARE} from={FIRMWARE_FROM} to={FIRMWARE_TO} start=today end=+3d devices={devices}"
    async with aiohttp.ClientSession() as session:
        for i in range(POOL):
            body = slash_command_body(
                text, user_id="U0BREQPOOL", response_url=f"{slack_url}/response/P{i}"
            )
            async with session.post(
                f"{bot_url}/slack/events", data=body, headers=sign(body, SIGNING_SECRET)
            ) as r:
                assert r.status == 200, await r.text()

    def posted() -> bool:
        return (
            db_query(db, "SELECT count(*) FROM campaigns WHERE id > ? AND thread_ts IS NOT NULL", [after])[0][0]
            >= POOL
        )

    await wait_for(posted, f"{POOL} approval cards", within=60)
    await asyncio.sleep(1.0)  # let the pre-flight redraws settle before the clock starts
    rows = db_query(db, "SELECT id, content_hash, thread_ts FROM campaigns WHERE id > ? ORDER BY id", [after])
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]  # type: ignore[arg-type]
