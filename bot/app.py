"""The one place that wires everything, as bolt-python's App.__init__ wires its parts.

`build_runtime` takes the settings and the few seams tests replace (clock, the
ThingSpace transport, the Slack base URL via settings) and hands every piece
its collaborators. No module-level singletons.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from slack_bolt.adapter.starlette.async_handler import to_starlette_response
from slack_bolt.async_app import AsyncApp, AsyncBoltRequest
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from bot import metrics
from bot.background import Background
from bot.callbacks.receiver import callback_route
from bot.loopstall import LoopStallMonitor
from bot.notify.sender import POST_SPACING, OutboxSender
from bot.notify.thread import ThreadNotifier
from bot.scheduler import Jobs
from bot.secrets import Secret
from bot.settings import IPNetwork, Settings
from bot.slack_files import SlackFiles
from bot.slack_guard import (
    GuardedRequestVerification,
    Refusal,
    Sightings,
    SlackRequestGuard,
    passed_context,
)
from bot.slack_respond import ResponseUrls
from bot.standins.thingspace import Sandbox, create_sandbox_app
from bot.thingspace.client import ThingSpaceClient
from bot.workflow.approvers import Directory
from bot.workflow.campaigns import CampaignService
from bot.workflow.operations import Operations
from bot.workflow.preflight import PreflightRunner
from bot.workflow.retries import Retries
from bot.workflow.rollout import Rollout
from bot.workflow.staged import StagedRollouts
from bot.workflow.submission import Submitter
from commands.blocks.render import Renderer
from commands.listeners import Services, register_listeners
from storage.model import Campaign, reminder_time
from storage.store import Store, utcnow

log = logging.getLogger("bot.app")

# The host the in-process sandbox posts callbacks to; it never leaves the process.
IN_PROCESS_BOT_URL = "http://fota-bot.in-process"
SANDBOX_CREDENTIAL = Secret("sandbox")
WATCHDOG_SECONDS = 60.0
MIN_FREE_BYTES = 64 * 1024 * 1024
# The WAL is copied into the database file this often, on the reader thread.
CHECKPOINT_SECONDS = 10.0
# Delivered Slack updates are kept this long (what was said, for a look back), then pruned.
OUTBOX_KEEP = dt.timedelta(days=7)
PRUNE_SECONDS = 600.0
# The one scheduler job of every waiting request's expiry and reminder (Timers).
APPROVAL_TIMERS_JOB = "approval-timers"


class Timers:
    """Scheduler jobs for one runtime: approval expiry and reminder, retries, re-reads.

    Built before the services that use it, then bound to them (they need each other).
    """

    def __init__(self, jobs: Jobs, clock: Callable[[], dt.datetime], store: Store):
        self.jobs = jobs
        self.clock = clock
        self.store = store
        # When the one approval-timers job is set to run (None: not set).
        self._approval_at: dt.datetime | None = None

    def bind(self, *, service: CampaignService, submitter: Submitter, rollout: Rollout) -> None:
        self.service = service
        self.submitter = submitter
        self.rollout = rollout

    # Approval expiry and reminder: the database holds each waiting request's two moments
    # (indexed), and ONE job runs at the first of them, does what is due and is set again for
    # the next; a request decided meanwhile is simply no longer due. (Two jobs per waiting
    # request meant thousands of live job objects the garbage collector walked again and again.)

    def schedule_approval_timers(self, campaign: Campaign) -> None:
        """A new request: the job runs by its reminder, if not set sooner already."""
        self._approval_timer_at(min(reminder_time(campaign.created_at, campaign.expires_at), campaign.expires_at))

    def rebuild_approval_timers(self) -> None:
        """Start-up: the job set for the first reminder or expiry on record (at once if past)."""
        self._approval_at = None
        when = self.store.next_approval_timer()
        if when is not None:
            self._approval_timer_at(when)

    async def run_approval_timers(self) -> None:
        """Every expiry and reminder due by now; then the job set for the next one."""
        self._approval_at = None
        now = self.clock()
        try:
            await self.service.expire_overdue(now)
            await self.service.remind_due(now)
        finally:
            when = self.store.next_approval_timer(after=now)
            if when is not None:
                self._approval_timer_at(when)

    def _approval_timer_at(self, when: dt.datetime) -> None:
        if self._approval_at is not None and self._approval_at <= when:
            return  # set already, as soon or sooner: that run sets it again for what follows
        self._approval_at = when
        self.jobs.at(APPROVAL_TIMERS_JOB, when, self.run_approval_timers)

    def retry_submission(self, campaign_id: int, delay: float) -> None:
        when = self.clock() + dt.timedelta(seconds=delay)
        self.jobs.at(f"submit:{campaign_id}", when, self.submitter.submit, campaign_id)

    def reconcile_soon(self, campaign_id: int, delay: float) -> None:
        job_id = f"reconcile:{campaign_id}"
        when = self.clock() + dt.timedelta(seconds=delay)
        waiting = self.jobs.run_date(job_id)
        if waiting is not None and waiting <= when:
            return  # debounced: one re-read already waits, as soon or sooner
        self.jobs.at(job_id, when, self.rollout.reconcile, campaign_id)

    def sweep_soon(self, delay: float) -> None:
        """One re-read of every active campaign, however many callbacks asked for it."""
        if self.jobs.run_date("reconcile-sweep") is not None:
            return  # one already waits
        self.jobs.at("reconcile-sweep", self.clock() + dt.timedelta(seconds=delay), self.rollout.sweep)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    clock: Callable[[], dt.datetime]
    thingspace: ThingSpaceClient
    slack: AsyncWebClient
    bolt: AsyncApp
    jobs: Jobs
    background: Background
    notifier: ThreadNotifier
    sender: OutboxSender
    directory: Directory
    submitter: Submitter
    service: CampaignService
    operations: Operations
    rollout: Rollout
    callback_token: str
    timers: Timers
    sandbox: Sandbox | None = None
    preflight: PreflightRunner | None = None
    staged: StagedRollouts | None = None
    loop_monitor: LoopStallMonitor = field(default_factory=LoopStallMonitor)
    # /metrics' database read, shared by the scrapes that arrive while it runs.
    metrics_counts: metrics.SharedCounts = field(default_factory=metrics.SharedCounts)
    response_urls: ResponseUrls = field(default_factory=ResponseUrls)
    # /healthz says 503 below this much free space beside the database: room for the WAL of
    # a 100,000-device report re-read and for the log, before writes start failing.
    min_free_bytes: int = MIN_FREE_BYTES
    asgi: Starlette = field(init=False)
    _workers: list[asyncio.Task[Any]] = field(default_factory=list)

    @property
    def mode(self) -> str:
        return "sandbox" if self.sandbox is not None else "live"

    async def start(self, *, workers: bool = True) -> None:
        """Start-up: jobs rebuilt from the database, interrupted work resumed.

        Without `workers` (tests) nothing runs by itself: not the outbox sender, not the
        callback applier, not the scheduler; `settle()` and `jobs.run_due()` drive them.
        """
        self.store.discard_unfinished_requests()
        if workers:
            self.jobs.start()
            self.store.checkpoint_off_loop()
            self.jobs.every("wal-checkpoint", CHECKPOINT_SECONDS, self.checkpoint)
            self.jobs.every("prune-outbox", PRUNE_SECONDS, self.prune_outbox)
        self.rebuild_jobs()
        if self.sandbox is not None:
            await self.thingspace.register_callback(
                self.settings.thingspace_account,
                f"{IN_PROCESS_BOT_URL}/thingspace/callbacks/{self.callback_token}",
            )
        if workers:
            loop = asyncio.get_running_loop()
            self._workers.append(loop.create_task(self.loop_monitor.run(), name="loop stall monitor"))
            self._workers.append(loop.create_task(self.sender.run(), name="outbox sender"))
            self._workers.append(loop.create_task(self.rollout.run(), name="callback applier"))
            if self.sandbox is not None:
                self._workers.append(loop.create_task(self.sandbox.run_forever(), name="sandbox clock"))
        self.background.spawn(self.submitter.resume_all(), name="resume submissions")
        if self.staged is not None:
            self.staged.resume_all()
        if self.preflight is not None:
            self.preflight.resume_interrupted()
        self.sender.wake()
        self.rollout.wake()

    def rebuild_jobs(self) -> None:
        self.timers.rebuild_approval_timers()
        self.jobs.every("watchdog", WATCHDOG_SECONDS, self.rollout.watchdog)
        # Beside the approval-timers job: a reminder or expiry that failed is tried again.
        self.jobs.every("approval-timers-sweep", WATCHDOG_SECONDS, self.timers.run_approval_timers)
        if self.staged is not None:
            # Automatic promotions once a soak is over; cancellations a halt could not make yet.
            self.jobs.every("staged-rollouts", WATCHDOG_SECONDS, self.staged.tick)

    async def checkpoint(self) -> None:
        await self.store.readers.checkpoint()

    async def prune_outbox(self) -> int:
        """Delete delivered Slack updates older than OUTBOX_KEEP, a small batch at a time."""
        before = self.clock() - OUTBOX_KEEP
        pruned = 0
        while batch := self.sender.outbox.prune_sent(before):
            pruned += batch
            await asyncio.sleep(0)
        return pruned

    async def stop(self) -> None:
        """SIGTERM: stop the scheduler, finish what is in flight, close the database."""
        self.jobs.shutdown()  # first: no new job starts while the rest winds down
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        try:
            await asyncio.wait_for(self.background.idle(), 10)
        except TimeoutError:
            await self.background.cancel_all()
        await self.thingspace.aclose()
        await self.response_urls.aclose()
        if self.sandbox is not None:
            await self.sandbox.aclose()
        self.store.close()

    async def settle(self, rounds: int = 1000) -> None:
        """Tests and the demo: run every piece of pending work until nothing moves."""
        for _ in range(rounds):
            await self.jobs.run_due(self.clock())
            await self.background.idle()
            moved = self.rollout.process_pending()
            moved += await self.sender.drain()
            await self.background.idle()
            if not moved and not len(self.background):
                return


def live_thingspace_client(settings: Settings, **options: Any) -> ThingSpaceClient:
    """The client for real ThingSpace (live mode), from the settings' credentials."""
    # Settings refuse half a set of credentials, so all four are here in live mode.
    return ThingSpaceClient(
        base_url=settings.thingspace_url,
        client_id=settings.thingspace_client_id or Secret(""),
        client_secret=settings.thingspace_client_secret or Secret(""),
        username=settings.thingspace_username or Secret(""),
        password=settings.thingspace_password or Secret(""),
        **options,
    )


def build_runtime(
    settings: Settings,
    *,
    clock: Callable[[], dt.datetime] = utcnow,
    thingspace_transport: httpx.AsyncBaseTransport | None = None,
    sandbox: Sandbox | None = None,
    slack_post_spacing: float = POST_SPACING,
) -> Runtime:
    store = Store.open(settings.db_path, clock=clock)
    callback_token = (
        settings.callback_token.reveal() if settings.callback_token else store.callback_token()
    )
    bot_token = settings.slack_bot_token.reveal() if settings.slack_bot_token else None
    slack = AsyncWebClient(
        token=bot_token,
        base_url=settings.slack_api_url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )
    signing_secret = settings.slack_signing_secret.reveal() if settings.slack_signing_secret else None
    bolt = AsyncApp(
        # Bolt names its listeners' loggers after the file that built the app, which it finds
        # with inspect.stack(): that reads the source lines of every frame on the stack (tens of
        # milliseconds per app under pytest). The same name, given.
        name="app.py",
        client=slack,
        signing_secret=signing_secret,
        # Every listener acks and hands anything slow to `Background` before it returns (the
        # listeners' rule, commands/listeners/common.py), so Slack is answered when the listener
        # returns. Otherwise Bolt runs each listener as a task of its own and looks for its ack
        # every 10 ms: a timer per request, and up to 10 ms more before the answer.
        process_before_response=True,
        # Bolt's signature check, in its own place (before authorization), but not a second time
        # for a request /slack/events' guard has verified (bot/slack_guard.py).
        request_verification_enabled=False,
        before_authorize=GuardedRequestVerification(signing_secret),  # type: ignore[arg-type]
    )

    if settings.sandbox_mode:
        # Sandbox mode is always the in-process simulator, never THINGSPACE_URL.
        sandbox = sandbox or Sandbox()
        # Its own tables in the bot's database: a restart of `serve` carries the rehearsal on.
        # The bot's reader thread checkpoints that file; the sandbox's commits never do.
        sandbox.open_state(settings.db_path, checkpoints=False)
        if thingspace_transport is None:
            thingspace_transport = httpx.ASGITransport(app=create_sandbox_app(sandbox))
        thingspace = ThingSpaceClient(
            base_url="http://sandbox.in-process",
            client_id=SANDBOX_CREDENTIAL,
            client_secret=SANDBOX_CREDENTIAL,
            username=SANDBOX_CREDENTIAL,
            password=SANDBOX_CREDENTIAL,
            transport=thingspace_transport,
        )
    else:
        thingspace = live_thingspace_client(settings, transport=thingspace_transport)

    background = Background()
    jobs = Jobs(background=background)
    notifier = ThreadNotifier(
        store=store,
        approval_channel=settings.approval_channel or "",
        update_interval=settings.update_interval,
        clock=clock,
        approvers=settings.approvers,
    )
    # The one reach up from bot/: messages are Block Kit, rendered by commands/ at send time.
    renderer = Renderer(
        store=store, required_approvals=settings.required_approvals, approvers=settings.approvers, clock=clock
    )
    # The outbox waits out Slack's 429s through the database (postponing every queued update),
    # so its client must not also sleep inside slack_sdk's rate-limit retry handler.
    outbox_client = AsyncWebClient(token=bot_token, base_url=settings.slack_api_url)
    sender = OutboxSender(
        store=store, client=outbox_client, renderer=renderer, clock=clock, post_spacing=slack_post_spacing
    )
    notifier.wake = sender.wake
    directory = Directory(slack, approvers=settings.approvers, requesters=settings.requesters)

    timers = Timers(jobs, clock, store)
    submitter = Submitter(
        store=store,
        client=thingspace,
        events=notifier,
        retries=timers,
        required_approvals=settings.required_approvals,
        clock=clock,
    )
    preflight = PreflightRunner(store=store, thingspace=thingspace, events=notifier, background=background)
    staged = StagedRollouts(
        store=store,
        submitter=submitter,
        directory=directory,
        background=background,
        clock=clock,
        events=notifier,
        thingspace=thingspace,
        approvers_configured=bool(settings.approvers),
    )
    service = CampaignService(
        settings=settings,
        store=store,
        thingspace=thingspace,
        directory=directory,
        submitter=submitter,
        events=notifier,
        timers=timers,
        background=background,
        clock=clock,
        preflight=preflight,
        staged=staged,
    )
    rollout = Rollout(
        store=store,
        client=thingspace,
        events=notifier,
        scheduler=timers,
        clock=clock,
        update_interval=settings.update_interval,
    )
    operations = Operations(
        settings=settings,
        store=store,
        thingspace=thingspace,
        directory=directory,
        events=notifier,
        clock=clock,
        slack=slack,
        staged=staged,
    )
    runtime = Runtime(
        settings=settings,
        store=store,
        clock=clock,
        thingspace=thingspace,
        slack=slack,
        bolt=bolt,
        jobs=jobs,
        background=background,
        notifier=notifier,
        sender=sender,
        directory=directory,
        submitter=submitter,
        service=service,
        operations=operations,
        rollout=rollout,
        callback_token=callback_token,
        timers=timers,
        sandbox=sandbox if settings.sandbox_mode else None,
        preflight=preflight,
        staged=staged,
    )
    timers.bind(service=service, submitter=submitter, rollout=rollout)
    submitter.on_submitted = rollout.adopt_waiting_callbacks
    rollout.on_wave_failures = staged.check_halt
    rollout.on_wave_ended = staged.wave_ended
    submitter.current_approvers = service.current_approvers

    register_listeners(
        bolt,
        Services(
            settings=settings,
            campaigns=service,
            operations=operations,
            background=background,
            clock=clock,
            download=SlackFiles(token=bot_token, api_url=settings.slack_api_url).download,
            preflight=preflight,
            response_urls=runtime.response_urls,
            retries=Retries(store=store, campaigns=service, events=notifier, permalink=operations.permalink),
        ),
    )
    runtime.asgi = _http_app(runtime)
    if runtime.sandbox is not None:
        # The in-process sandbox delivers its callbacks straight into this app.
        runtime.sandbox.set_callback_transport(httpx.ASGITransport(app=runtime.asgi))
    return runtime


def _http_app(rt: Runtime) -> Starlette:
    signing_secret = rt.settings.slack_signing_secret
    guard = SlackRequestGuard(
        signing_secret=signing_secret.reveal() if signing_secret else None,
        first_sighting=Sightings(rt.store.first_sightings).first,
    )

    async def slack_events(request: Request) -> Response:
        checked = await guard.check(request)
        if isinstance(checked, Refusal):
            return PlainTextResponse(checked.text, status_code=checked.status)
        try:
            # What Bolt's Starlette adapter does with a POST (to_async_bolt_request), with the
            # body the guard read; Slack sends no query string, and Starlette parses even an
            # empty one into a dict of its own.
            bolt_request = AsyncBoltRequest(
                body=checked.decode("utf-8"),
                query=request.query_params if request.scope.get("query_string") else None,  # type: ignore[arg-type]
                headers=request.headers,  # type: ignore[arg-type]
            )
            bolt_request.context.update(passed_context())
            return to_starlette_response(await rt.bolt.async_dispatch(bolt_request))
        except Exception:
            # Bolt itself can fail on a malformed payload (e.g. block_actions with no actions)
            # before any listener runs: a plain 400 and a log line, never a 500 or a traceback.
            log.warning("malformed request to /slack/events refused", exc_info=True)
            return PlainTextResponse("malformed Slack request", status_code=400)

    async def healthz(request: Request) -> Response:
        problem = rt.store.health(min_free_bytes=rt.min_free_bytes)
        database = "ok" if problem is None else "unusable"
        body = {
            "status": "ok" if database == "ok" else "error",
            "database": database,
            **({"reason": f"the database {problem}"} if problem else {}),
            "scheduler": "running" if rt.jobs.running else "stopped",
            "thingspace": rt.mode,
        }
        return JSONResponse(body, status_code=200 if database == "ok" else 503)

    async def metrics_endpoint(request: Request) -> Response:
        return PlainTextResponse(await metrics.render(rt), media_type=metrics.CONTENT_TYPE)

    routes = [
        Route("/slack/events", slack_events, methods=["POST"]),
        callback_route(
            token=rt.callback_token,
            store=rt.store,
            allowed_networks=_allowed_callback_sources(rt),
            trusted_proxies=rt.settings.trusted_proxies,
            on_stored=rt.rollout.wake,
        ),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _allowed_callback_sources(rt: Runtime) -> tuple[IPNetwork, ...]:
    """FOTA_CALLBACK_ALLOWED_IPS, plus loopback in sandbox mode when a list is set.

    The in-process sandbox reaches the receiver through an ASGI transport that reports
    127.0.0.1; refusing it would break a rehearsal configured with Verizon's addresses.
    """
    allowed = rt.settings.callback_allowed_ips
    if allowed and rt.sandbox is not None:
        return (*allowed, ipaddress.ip_network("127.0.0.1/32"))
    return allowed
