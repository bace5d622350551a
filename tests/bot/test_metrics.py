"""GET /metrics: figures read from the database off the event loop, and cheap to ask for."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.stack import running_stack


async def test_concurrent_metrics_scrapes_share_one_database_read(tmp_path: Path) -> None:
    """/metrics needs no credentials: a burst of scrapes must not queue a table scan each on
    the reader thread, ahead of pre-flight and the WAL checkpoints."""
    async with running_stack(tmp_path) as stack:
        readers = stack.rt.store.readers
        original = readers.run
        release, reading = asyncio.Event(), asyncio.Event()
        reads = 0

        async def held(work):  # type: ignore[no-untyped-def]
            nonlocal reads
            reads += 1
            reading.set()
            await release.wait()
            return await original(work)

        readers.run = held  # type: ignore[method-assign]
        scrapes = [asyncio.create_task(stack.http.get("/metrics")) for _ in range(20)]
        await reading.wait()  # the first scrape has started its read
        for _ in range(50):
            await asyncio.sleep(0)  # every other scrape gets as far as it can meanwhile
        assert reads == 1
        scrapes[0].cancel()  # one scraper going away does not cancel the read for the others
        release.set()
        answers = await asyncio.gather(*scrapes[1:])
        assert all(a.status_code == 200 and b"fota_campaigns" in a.content for a in answers)
        assert reads == 1
        readers.run = original  # type: ignore[method-assign]
        assert (await stack.http.get("/metrics")).status_code == 200  # a later scrape reads anew
