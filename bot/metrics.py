"""GET /metrics in Prometheus text format, through prometheus_client.

The figures are read from the database at scrape time (the database is the source of truth,
so counters survive restarts), on the reader thread: counting every callback ever received
is a scan that must not hold the event loop. The loop-stall monitor's figures come from
memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sized
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.loopstall import THRESHOLDS, LoopStallMonitor
from storage.store import RowCounts, Store

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Windows of the longest loop stall: the last minute, and the last 5 s for a scraper (a
# benchmark) that wants the stalls of a short run only.
STALL_WINDOWS = (("1m", 60.0), ("5s", 5.0))


class Scraped(Protocol):
    """What /metrics reads of the running bot (`bot.app.Runtime` has these): taken by shape,
    so this module needs nothing from the module that serves it."""

    @property
    def store(self) -> Store: ...

    @property
    def background(self) -> Sized: ...

    @property
    def loop_monitor(self) -> LoopStallMonitor: ...

    @property
    def metrics_counts(self) -> SharedCounts: ...


class _RuntimeCollector(Collector):
    def __init__(self, runtime: Scraped, counts: RowCounts):
        self.rt = runtime
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        campaigns = GaugeMetricFamily("fota_campaigns", "Campaigns by state", labels=["state"])
        for state, count in self.counts.campaigns:
            campaigns.add_metric([state], count)
        yield campaigns
        callbacks = GaugeMetricFamily("fota_callbacks_received", "ThingSpace callbacks kept", labels=["applied"])
        for applied, count in self.counts.callbacks:
            callbacks.add_metric(["yes" if applied else "no"], count)
        yield callbacks
        outbox = GaugeMetricFamily("fota_slack_updates", "Slack updates by outcome", labels=["outcome"])
        for label, value in zip(("pending", "sent", "refused"), self.counts.outbox, strict=True):
            outbox.add_metric([label], value)
        yield outbox
        yield GaugeMetricFamily("fota_background_tasks", "Work running after an ack", value=len(self.rt.background))
        monitor = self.rt.loop_monitor
        stall = GaugeMetricFamily(
            "fota_event_loop_stall_max_seconds",
            "Longest time the event loop was blocked within the window",
            labels=["window"],
        )
        for label, seconds in STALL_WINDOWS:
            stall.add_metric([label], monitor.longest(seconds))
        yield stall
        stalls = CounterMetricFamily(
            "fota_event_loop_stalls", "Event loop stalls at least this long since start", labels=["at_least"]
        )
        for threshold in THRESHOLDS:
            stalls.add_metric([f"{threshold:g}"], monitor.windows.counts[threshold])
        yield stalls


class SharedCounts:
    """One database read for every scrape that arrives while it runs.

    /metrics needs no credentials and each read counts whole tables on the one reader thread,
    which also runs pre-flight's conflict checks, CSVs and the WAL checkpoints: a read per
    request would let a burst of scrapes queue minutes of scans ahead of them (and the WAL grow
    meanwhile). Concurrent scrapes share the read in flight; a scraper that goes away does not
    cancel it for the others.
    """

    def __init__(self, ttl: float = 15.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._inflight: asyncio.Future[RowCounts] | None = None
        # A finished read also serves every scrape of the next `ttl` seconds: a scraper asking
        # every few seconds (a benchmark reading the loop-stall figures) must not make whole-table
        # counts the bot's main work. The loop-stall figures are always current.
        self.ttl = ttl
        self.clock = clock
        self._last: tuple[float, RowCounts] | None = None

    async def read(self, runtime: Scraped) -> RowCounts:
        if self._last is not None and self.clock() - self._last[0] < self.ttl:
            return self._last[1]
        inflight = self._inflight
        if inflight is None:
            inflight = asyncio.ensure_future(runtime.store.row_counts())
            self._inflight = inflight
            inflight.add_done_callback(self._done)
        return await asyncio.shield(inflight)

    def _done(self, future: asyncio.Future[RowCounts]) -> None:
        if self._inflight is future:
            self._inflight = None
        if not future.cancelled() and future.exception() is None:
            self._last = (self.clock(), future.result())


async def render(runtime: Scraped) -> bytes:
    counts = await runtime.metrics_counts.read(runtime)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RuntimeCollector(runtime, counts))
    return generate_latest(registry)
