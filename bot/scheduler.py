"""Timed work on APScheduler 3.x, rebuilt from the database at start-up.

The database is the source of truth: jobs are only reminders of what the
database already says (expiry times, campaigns to watch), so a restart loses
nothing. Every job calls a plain async method that tests call directly.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bot.background import Background

log = logging.getLogger("bot.scheduler")

Job = Callable[..., Coroutine[Any, Any, Any]]


class Jobs:
    def __init__(self, scheduler: AsyncIOScheduler | None = None, *, background: Background | None = None):
        self.scheduler = scheduler or AsyncIOScheduler(timezone=dt.UTC)
        # One-off jobs (a submission retry, an expiry) run their work as tracked background
        # tasks: shutting the scheduler down then cannot cut a ThingSpace POST short.
        self.background = background

    async def _launch(self, job_id: str, func: Job, *args: Any) -> None:
        if self.background is None:
            await func(*args)
        else:
            self.background.spawn(func(*args), name=job_id)

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running)

    def start(self) -> None:
        if not self.scheduler.running:
            self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def at(self, job_id: str, when: dt.datetime, func: Job, *args: Any) -> None:
        """Run `func(*args)` once at `when` (or at once if that has passed)."""
        self.scheduler.add_job(
            self._launch,
            "date",
            run_date=when,
            args=[job_id, func, *args],
            id=job_id,
            replace_existing=True,
            misfire_grace_time=None,  # late is better than never: run it even after a long pause
            coalesce=True,
        )

    def every(self, job_id: str, seconds: float, func: Job, *args: Any) -> None:
        self.scheduler.add_job(
            func,
            "interval",
            seconds=seconds,
            args=list(args),
            id=job_id,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )

    def cancel(self, job_id: str) -> None:
        if self.scheduler.get_job(job_id) is not None:
            self.scheduler.remove_job(job_id)

    def run_date(self, job_id: str) -> dt.datetime | None:
        job = self.scheduler.get_job(job_id)
        if job is None:
            return None
        # A job added before the scheduler starts has no next_run_time yet, only its trigger.
        return getattr(job, "next_run_time", None) or getattr(job.trigger, "run_date", None)

    async def run_due(self, now: dt.datetime) -> list[str]:
        """Run, once, every one-off job due by `now` (tests and the demo drive time this way)."""
        ran: list[str] = []
        for job in list(self.scheduler.get_jobs()):
            when = getattr(job.trigger, "run_date", None)
            if when is not None and when <= now:
                self.cancel(job.id)
                await job.func(*job.args)
                ran.append(job.id)
        return ran

    def ids(self) -> list[str]:
        return sorted(job.id for job in self.scheduler.get_jobs())
