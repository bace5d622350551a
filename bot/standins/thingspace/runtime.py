"""`Sandbox`: the simulator, its clock and credentials, callback delivery and fault knobs.

Everything the sandbox holds hangs off one `Sandbox` instance; `create_sandbox_app(sandbox)`
serves it over HTTP and `await sandbox.tick()` moves it along.

Callbacks
---------
Each status change is POSTed as JSON to the account's registered listener, in the order the
changes happened:

- campaign: ``{"accountName", "campaignId", "status", "type": "CampaignStatus", "timestamp"}``
- device: ``{"accountName", "campaignId", "deviceId", "status", "reason", "type":
  "DeviceStatus", "timestamp"}`` (no ``reason`` when there is none)

``timestamp`` is the sandbox time of the change (ISO 8601, UTC, ``Z``). When one tick carries
more than ``batch_threshold`` device changes for an account (default 50; None: never), runs of
consecutive device changes go as JSON arrays of device objects, at most ``batch_size`` (500)
per POST, which keeps each body far below the bot's 1 MiB limit. A delivery that fails
(connection error, timeout, non-2xx) is logged and dropped: ThingSpace's retries are not
documented, so the bot must not rely on them. ``duplicate_rate`` and ``shuffle`` (seeded by
``seed``) deliver some callbacks twice and each tick's callbacks out of order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bot.settings import SANDBOX_ACCOUNT
from bot.standins.thingspace import state
from bot.standins.thingspace.devices import DEFAULT_CATALOGUE, FirmwareEntry, find_model
from bot.standins.thingspace.simulator import (
    AuthRegistry,
    Campaign,
    CampaignChange,
    DeviceChange,
    FirmwareFault,
    SandboxClock,
    SandboxEvent,
    SandboxTimings,
    Simulator,
)
from storage.sandbox_state import SandboxTables

log = logging.getLogger(__name__)

_FAULT_BODIES = {
    401: ("UNAUTHORIZED", "Token or session expired"),
    429: ("TOO_MANY_REQUESTS", "Rate limit exceeded, try again later"),
    500: ("INTERNAL_SERVER_ERROR", "Internal server error"),
    502: ("BAD_GATEWAY", "Bad gateway"),
    503: ("SERVICE_UNAVAILABLE", "Service temporarily unavailable"),
    504: ("GATEWAY_TIMEOUT", "Gateway timeout"),
}


@dataclass
class FailRule:
    path_prefix: str
    status: int
    remaining: int
    retry_after: float | None
    method: str | None
    error_code: str
    error_message: str


@dataclass
class DelayRule:
    path_prefix: str
    seconds: float
    remaining: int
    method: str | None
    before: bool


@dataclass(frozen=True)
class ScheduleRecord:
    """One schedule request that reached ThingSpace's logic (past auth), with its outcome."""

    at: dt.datetime
    account: str
    body: object
    status_code: int
    campaign_id: str | None
    error_code: str | None


@dataclass(frozen=True)
class Delivery:
    """One callback POST: what was sent, and the status answered or the error met."""

    url: str
    payload: object
    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _origin(url: str) -> str:
    # The bot's callback URL carries its secret token as the last path segment: never log it.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…"


class Sandbox:
    """The built-in ThingSpace: one instance holds every account's state and every knob."""

    def __init__(
        self,
        *,
        clock: SandboxClock | None = None,
        timings: SandboxTimings | None = None,
        catalogue: Sequence[FirmwareEntry] = DEFAULT_CATALOGUE,
        default_account: str = SANDBOX_ACCOUNT,
        mrc_only: bool = False,
        license_count: int = 100_000,
        clients: Mapping[str, str] | None = None,
        users: Mapping[str, str] | None = None,
        token_lifetime: float = 3600.0,
        session_idle_timeout: float | None = 1200.0,
        report_page_size: int = 1000,
        campaign_page_size: int = 100,
        callback_transport: httpx.AsyncBaseTransport | None = None,
        callback_timeout: float = 5.0,
        batch_threshold: int | None = 50,
        batch_size: int = 500,
        duplicate_rate: float = 0.0,
        shuffle: bool = False,
        seed: int = 0,
        log_size: int = 100_000,
    ):
        self.clock = clock or SandboxClock.real()
        self.default_account = default_account
        self.model = Simulator(
            catalogue=catalogue,
            timings=timings,
            mrc_only=mrc_only,
            license_count=license_count,
            report_page_size=report_page_size,
            campaign_page_size=campaign_page_size,
            created=self.clock.now(),
        )
        self.auth = AuthRegistry(
            clients=clients,
            users=users,
            token_lifetime=token_lifetime,
            session_idle_timeout=session_idle_timeout,
        )
        self.callback_timeout = callback_timeout
        self.batch_threshold = batch_threshold
        self.batch_size = batch_size
        self.duplicate_rate = duplicate_rate
        self.shuffle = shuffle
        self.random = random.Random(seed)
        self.schedule_requests: list[ScheduleRecord] = []
        # Bounded, so a sandbox left running for days does not grow without end.
        self.request_log: deque[tuple[str, str]] = deque(maxlen=log_size)
        self.deliveries: deque[Delivery] = deque(maxlen=log_size)
        self._callback_transport = callback_transport
        self._http: httpx.AsyncClient | None = None
        self._fail_rules: list[FailRule] = []
        self._delay_rules: list[DelayRule] = []
        self._tick_lock = asyncio.Lock()
        self._state: SandboxTables | None = None

    # -- views -----------------------------------------------------------------------------------

    @property
    def campaigns(self) -> list[Campaign]:
        return list(self.model.campaigns.values())

    def campaign(self, campaign_id: str) -> Campaign:
        return self.model.campaigns[campaign_id]

    @property
    def mrc_only(self) -> bool:
        return self.model.mrc_only

    @mrc_only.setter
    def mrc_only(self, value: bool) -> None:
        self.model.mrc_only = value

    # -- credentials knobs -------------------------------------------------------------------------

    def expire_token(self, token: str | None = None) -> None:
        """Expire one OAuth token (all when None): the next call carrying it gets a 401."""
        self.auth.expire_token(token)

    def expire_session(self, session: str | None = None) -> None:
        """Expire one M2M session (all when None): the next FOTA call carrying it gets a 401."""
        self.auth.expire_session(session)

    # -- fault knobs -------------------------------------------------------------------------------

    def fail_next(
        self,
        path_prefix: str,
        status: int,
        count: int = 1,
        retry_after: float | None = None,
        *,
        method: str | None = None,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> None:
        """Answer `status` to the next `count` requests whose path starts with `path_prefix`.

        The request is not processed: nothing is created. `retry_after` adds a Retry-After
        header (seconds).
        """
        code, message = _FAULT_BODIES.get(status, ("ERROR", f"HTTP {status}"))
        self._fail_rules.append(
            FailRule(path_prefix, status, count, retry_after, method and method.upper(),
                     error_code or code, error_message or message)
        )

    def delay_next(
        self,
        path_prefix: str,
        seconds: float,
        count: int = 1,
        *,
        method: str | None = None,
        before: bool = False,
    ) -> None:
        """Hold the answer to the next `count` matching requests for `seconds` of real time.

        By default the request is processed first and only its answer is late, which is the
        ambiguous case a client timeout must handle (the campaign exists, the client does not
        know). `before=True` delays before processing instead.
        """
        self._delay_rules.append(
            DelayRule(path_prefix, seconds, count, method and method.upper(), before)
        )

    def take_faults(self, method: str, path: str) -> tuple[FailRule | None, DelayRule | None]:
        """The fail and delay rules that apply to this request, each use counted."""
        return self._take(self._fail_rules, method, path), self._take(self._delay_rules, method, path)

    @staticmethod
    def _take(rules: list[Any], method: str, path: str) -> Any:
        for rule in rules:
            if path.startswith(rule.path_prefix) and rule.method in (None, method):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    rules.remove(rule)
                return rule
        return None

    def fail_firmware(
        self,
        firmware_name: str,
        share: float,
        *,
        model: str,
        reason: str = "Firmware image rejected by the device (signature check failed)",
    ) -> FirmwareFault:
        """From now on, campaigns of `firmware_name` fail on `share` (0 to 1) of the `model`
        devices in them, the same devices every time (chosen by IMEI); kept across restarts.
        Campaigns already accepted keep their plan."""
        if not 0 <= share <= 1:
            raise ValueError(f"share must be from 0 to 1, not {share}")
        if not any(e.firmware_name == firmware_name for e in self.model.catalogue):
            raise ValueError(f"no firmware {firmware_name!r} in the sandbox's catalogue")
        known = find_model(model, self.model.catalogue)
        fault = FirmwareFault(firmware_name, known.model, share, reason)
        self.model.firmware_faults = [
            f for f in self.model.firmware_faults
            if (f.firmware_name, f.model) != (firmware_name, known.model)
        ] + [fault]
        self.model.changes.faults = True
        self.save()
        return fault

    def clear_faults(self) -> None:
        self._fail_rules.clear()
        self._delay_rules.clear()
        if self.model.firmware_faults:
            self.model.firmware_faults = []
            self.model.changes.faults = True
            self.save()

    # -- persistence -----------------------------------------------------------------------------

    def open_state(self, path: Path | str, *, checkpoints: bool = True) -> None:
        """Keep the state in SQLite at `path` (see `bot.standins.thingspace.state`): carried on from there
        when the file holds a sandbox's state, else this sandbox's state is written there.

        `checkpoints=False` when `path` is the bot's own database: the bot copies the WAL into
        the file on its reader thread, and a commit of the sandbox's crossing SQLite's
        1,000-page mark would otherwise copy all of it (the bot's writes too) on the event loop.
        """
        self.close_state()
        db = state.open_state(path, checkpoints=checkpoints)
        if state.has_state(db):
            saved_clock = state.load(db, self.model)
            if saved_clock is not None and saved_clock > self.clock.now():
                # A sped-up clock ran ahead of wall time before the restart: never go back.
                self.clock.advance((saved_clock - self.clock.now()).total_seconds())
        else:
            state.save(db, self.model, self.clock.now(), everything=True)
        self._state = db

    def save(self) -> None:
        """Write what changed since the last save; nothing without `open_state`."""
        if self._state is not None:
            state.save(self._state, self.model, self.clock.now())

    def close_state(self) -> None:
        if self._state is not None:
            self.save()
            self._state.close()
            self._state = None

    # -- running ---------------------------------------------------------------------------------

    async def tick(self) -> list[SandboxEvent]:
        """Apply everything due at `clock.now()`, POST the callbacks, return the changes."""
        async with self._tick_lock:
            self.model.advance(self.clock.now())
            events = self.model.drain()
            self.save()
            if events:
                await self._deliver(self._callbacks_for(events))
            return events

    async def run_forever(self, interval: float = 0.5) -> None:
        """Tick every `interval` real seconds until cancelled (for `serve`, `sandbox`, `demo`)."""
        while True:
            try:
                await self.tick()
            except Exception:
                # A rehearsal must keep going: one bad tick is logged, the next one runs.
                log.exception("sandbox tick failed")
            await asyncio.sleep(interval)

    def set_callback_transport(self, transport: httpx.AsyncBaseTransport) -> None:
        """Deliver callbacks through `transport` (in-process: straight into the bot's ASGI app)."""
        if self._http is not None:
            raise RuntimeError("set the callback transport before the first callback is delivered")
        self._callback_transport = transport

    async def aclose(self) -> None:
        self.close_state()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- callbacks -------------------------------------------------------------------------------

    def _callbacks_for(self, events: list[SandboxEvent]) -> list[tuple[str, object]]:
        """(url, payload) pairs in event order, device runs batched where the tick is busy."""
        device_counts: dict[str, int] = {}
        for event in events:
            if isinstance(event, DeviceChange):
                device_counts[event.account] = device_counts.get(event.account, 0) + 1
        out: list[tuple[str, object]] = []
        runs: dict[str, list[dict[str, str]]] = {}

        def flush(account: str, url: str) -> None:
            run = runs.pop(account, [])
            for i in range(0, len(run), self.batch_size):
                out.append((url, run[i:i + self.batch_size]))

        for event in events:
            url = self.model.callback_url(event.account)
            if url is None:
                continue  # no listener: ThingSpace has nowhere to send it
            batching = (
                self.batch_threshold is not None
                and device_counts.get(event.account, 0) > self.batch_threshold
            )
            if isinstance(event, CampaignChange):
                flush(event.account, url)
                out.append((url, event.payload()))
            elif batching:
                runs.setdefault(event.account, []).append(event.payload())
            else:
                out.append((url, event.payload()))
        for account in list(runs):
            url = self.model.callback_url(account)
            if url is not None:
                flush(account, url)
        if self.duplicate_rate > 0:
            doubled: list[tuple[str, object]] = []
            for item in out:
                doubled.append(item)
                if self.random.random() < self.duplicate_rate:
                    doubled.append(item)
            out = doubled
        if self.shuffle:
            self.random.shuffle(out)
        return out

    async def _deliver(self, callbacks: list[tuple[str, object]]) -> None:
        if not callbacks:
            return
        if self._http is None:
            self._http = httpx.AsyncClient(
                transport=self._callback_transport,
                timeout=self.callback_timeout,
                headers={"User-Agent": "fota-bot-thingspace-sandbox"},
            )
        # One at a time, so the listener sees changes in the order they happened.
        for url, payload in callbacks:
            await self._post(url, payload)

    async def _post(self, url: str, payload: object) -> None:
        assert self._http is not None
        try:
            response = await self._http.post(url, json=payload)
        except Exception as exc:
            # Any failure of the listener (refused, timeout, an in-process app raising) is
            # ThingSpace's problem to log, never a reason for the sandbox to stop.
            log.warning("callback to %s failed: %s", _origin(url), type(exc).__name__)
            self.deliveries.append(Delivery(url, payload, None, f"{type(exc).__name__}: {exc}"))
            return
        if not 200 <= response.status_code < 300:
            log.warning("callback to %s answered %s", _origin(url), response.status_code)
        self.deliveries.append(Delivery(url, payload, response.status_code, None))
