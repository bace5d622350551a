"""How long the event loop was blocked: the longest stall per second, kept for an hour.

Everything the bot does shares one asyncio loop, so one slow piece of work (a big query, a
CSV, a WAL checkpoint) delays every ack and callback behind it. A ticker asks to wake every
`interval` seconds; how late it wakes is how long something else held the loop. The late
wake-ups are recorded per second (`StallWindows`, pure, driven by the caller's clock) and read
as "the longest stall in the last N seconds" by `/metrics` and the benchmarks.

A stall shorter than `interval` can go unseen in part (the ticker may have been asleep for some
of it); anything that matters here (20 ms and more) is seen to within `interval`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

# 10 ms: fine enough to see the 20 ms a piece of work may hold the loop, cheap enough
# (100 wake-ups a second) to run in production.
TICK_SECONDS = 0.010
# Thresholds counted in fota_event_loop_stalls_total (seconds).
THRESHOLDS = (0.020, 0.050, 0.100, 0.500)


class StallWindows:
    """The longest stall of each whole second (monotonic time), for the last `keep` seconds."""

    def __init__(self, keep: int = 3600):
        self._seconds: deque[tuple[int, float]] = deque(maxlen=keep)
        self.counts = dict.fromkeys(THRESHOLDS, 0)
        self.ticks = 0

    def record(self, at: float, stall: float) -> None:
        self.ticks += 1
        for threshold in THRESHOLDS:
            if stall >= threshold:
                self.counts[threshold] += 1
        second = int(at)
        if self._seconds and self._seconds[-1][0] == second:
            if stall > self._seconds[-1][1]:
                self._seconds[-1] = (second, stall)
        else:
            self._seconds.append((second, stall))

    def longest(self, now: float, window: float) -> float:
        """The longest stall that ended within the last `window` seconds before `now`."""
        since = int(now - window)
        longest = 0.0
        for second, stall in reversed(self._seconds):
            if second < since:
                break
            longest = max(longest, stall)
        return longest


class LoopStallMonitor:
    """The ticker; `run()` is a task on the loop it watches."""

    def __init__(self, *, interval: float = TICK_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self.windows = StallWindows()

    def longest(self, window: float = 60.0) -> float:
        return self.windows.longest(self.clock(), window)

    async def run(self) -> None:
        expected = self.clock() + self.interval
        while True:
            await asyncio.sleep(self.interval)
            now = self.clock()
            self.windows.record(now, max(0.0, now - expected))
            expected = now + self.interval
