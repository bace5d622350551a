"""GET /metrics in Prometheus text format, through prometheus_client.

A custom collector reads the figures from the database at scrape time: the
database is the source of truth, so counters survive restarts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from bot.app import Runtime

CONTENT_TYPE = CONTENT_TYPE_LATEST


class _RuntimeCollector(Collector):
    def __init__(self, runtime: Runtime):
        self.rt = runtime

    def collect(self) -> Iterator[Metric]:
        db = self.rt.store.db
        campaigns = GaugeMetricFamily("fota_campaigns", "Campaigns by state", labels=["state"])
        for state, count in db.execute("SELECT state, count(*) FROM campaigns GROUP BY state"):
            campaigns.add_metric([state], count)
        yield campaigns
        callbacks = GaugeMetricFamily("fota_callbacks_received", "ThingSpace callbacks kept", labels=["applied"])
        for applied, count in db.execute("SELECT applied, count(*) FROM callbacks GROUP BY applied"):
            callbacks.add_metric(["yes" if applied else "no"], count)
        yield callbacks
        outbox = GaugeMetricFamily("fota_slack_updates", "Slack updates by outcome", labels=["outcome"])
        row = db.execute(
            """SELECT sum(sent_at IS NULL), sum(sent_at IS NOT NULL AND last_error IS NULL),
                      sum(sent_at IS NOT NULL AND last_error IS NOT NULL) FROM outbox"""
        ).fetchone()
        for label, value in zip(("pending", "sent", "refused"), row, strict=True):
            outbox.add_metric([label], value or 0)
        yield outbox
        yield GaugeMetricFamily("fota_background_tasks", "Work running after an ack", value=len(self.rt.background))


def render(runtime: Runtime) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_RuntimeCollector(runtime))
    return generate_latest(registry)
