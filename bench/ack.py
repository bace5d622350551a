"""Benchmark 1: ack latency of signed slash commands and button clicks (SPEC §9: p99 ≤ 100 ms).

`fota-bot serve` (sandbox mode, Slack's Web API played by the stand-in in its own process) takes
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
from collections.abc import Callable
from pathlib import Path

from bench.common import (
    CHANNEL,
    FIRMWARE,
    FIRMWARE_FROM,
    FIRMWARE_TO,
    SIGNING_SECRET,
    Figure,
    Load,
    Request,
    Section,
    base_env,
    closed_loop,
    db_query,
    free_port,
    running,
    spawn,
    spawn_standin,
    wait_for,
)
from bench.common import (
    bot_env as bot_env_for,
)
from bot.sandbox import sandbox_imeis
from commands.blocks import ACTION_APPROVE, action_value
from tests.support.slack import block_action_body, sign, slash_command_body

TARGET_P99_MS = 100.0
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


async def run(*, seconds: float = 30.0, clients: int = 20) -> Section:
    section = Section(f"1. Ack latency: {clients} concurrent clients, {seconds:.0f} s each")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fota-bench-ack-") as tmp:
        work = Path(tmp)
        slack_port, bot_port, bare_port = free_port(), free_port(), free_port()
        env = base_env()
        standin = spawn_standin(work, slack_port)
        async with running(standin, "/bench/stats"):
            slack_url = standin.url
            db = work / "fota.db"
            bot_env = bot_env_for(slack_url=slack_url, db=db, port=bot_port)
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
                cards = await _post_cards(bot.url, slack_url, db)
                bodies = Bodies(slack_url, cards)
                async with running(bare):
                    baseline = await _measure(bare.url, bodies, clients=clients, seconds=seconds)
                measured = await _measure(bot.url, bodies, clients=clients, seconds=seconds)
                approved = db_query(
                    db, "SELECT count(*) FROM campaigns WHERE state NOT IN ('pending_approval')"
                )[0][0]
                created = db_query(db, "SELECT count(*) FROM campaigns")[0][0]
                if bot.process.poll() is not None:
                    raise RuntimeError(f"the bot died during the run:\n{bot.tail()}")

    for kind in KINDS:
        for p in (50, 99):
            section.add(
                Figure(
                    f"{kind} p{p}",
                    measured.ms(p, kind),
                    "ms",
                    baseline.ms(p, kind),
                    target=f"≤ {TARGET_P99_MS:.0f} ms" if p == 99 else "",
                    ok=measured.ms(p, kind) <= TARGET_P99_MS if p == 99 else None,
                )
            )
    section.add(
        Figure("all acks p50", measured.ms(50), "ms", baseline.ms(50)),
        Figure(
            "all acks p99",
            measured.ms(99),
            "ms",
            baseline.ms(99),
            target=f"≤ {TARGET_P99_MS:.0f} ms",
            ok=measured.ms(99) <= TARGET_P99_MS,
        ),
        Figure("all acks max", measured.ms(100), "ms", baseline.ms(100)),
        Figure("acks per second", measured.rate, "/s", baseline.rate, digits=0),
        Figure("requests answered", measured.count, "", baseline.count, digits=0),
        Figure(
            "answers other than 200",
            measured.count - measured.statuses[200],
            "",
            baseline.count - baseline.statuses[200],
            target="0",
            ok=measured.count == measured.statuses[200] and not measured.errors,
            digits=0,
        ),
    )
    section.note(
        f"Closed loop: each client sends its next request when the last is answered, so the rate is "
        f"what each server sustains; latency includes the queue of {clients} clients. "
        f"Baseline: a bare Bolt AsyncApp that only acks (bench/servers.py), same bodies, same generator."
    )
    section.note(
        f"Behind the acks the bot created {created:,} campaigns (cards posted to the stand-in, pre-flight "
        f"against its in-process sandbox) and {approved:,} went on from approval to ThingSpace."
    )
    if measured.errors or baseline.errors:
        section.note(
            f"client errors: bot {dict(measured.errors)}, baseline {dict(baseline.errors)}"
        )
    section.seconds = time.perf_counter() - started
    return section


async def _post_cards(bot_url: str, slack_url: str, db: Path) -> list[tuple[int, str, str]]:
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
            db_query(db, "SELECT count(*) FROM campaigns WHERE thread_ts IS NOT NULL")[0][0] >= POOL
        )

    await wait_for(posted, f"{POOL} approval cards", within=60)
    await asyncio.sleep(1.0)  # let the pre-flight redraws settle before the clock starts
    rows = db_query(db, "SELECT id, content_hash, thread_ts FROM campaigns ORDER BY id")
    return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]  # type: ignore[arg-type]
