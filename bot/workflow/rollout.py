"""Following a campaign at ThingSpace: callbacks applied, re-reads, the watchdog.

Callbacks are hints. Each is stored raw by the receiver before anything else;
this module applies the recognised ones idempotently (a duplicate or a
reordered one changes nothing twice; a terminal campaign never moves), keeps
the ones for campaigns not known yet until the schedule answer names them, and
re-reads ThingSpace's report (the authority) after callbacks and when a
campaign's callbacks go quiet.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from bot.callbacks.parsing import DeviceUpdate, parse_callback
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.errors import ThingSpaceError, ThingSpaceNotFound
from bot.workflow.lost import LostCampaigns
from storage import waves
from storage.model import Campaign
from storage.states import ALLOWED, CORRECTIONS, CampaignState, device_bucket, thingspace_state
from storage.store import Store

log = logging.getLogger("bot.rollout")

S = CampaignState

# A re-read fetches every report page (100 for 100,000 devices): never more often than this.
RECONCILE_MIN_SECONDS = 30.0
# An active campaign with no callback for this long is re-read by the watchdog.
QUIET_SECONDS = 15 * 60
# Report pages are applied in batches of this many devices, one transaction each.
REPORT_BATCH = 1000
# Callbacks nobody can read make the bot re-read every active campaign, at most this often:
# junk costs ThingSpace nothing extra however fast it comes.
SWEEP_SECONDS = 60.0
# Stored callbacks are applied this many at a time (about 10 ms of parsing and applying), so
# that the receiver answers between batches; 2,000 held the event loop for 60 ms and more.
APPLY_BATCH = 250
# ... and at most this many bytes of callbacks (characters of the stored JSON): ThingSpace may put many devices' results in
# one callback, and 250 callbacks of ~11 devices each held the loop 280-465 ms in a
# 100,000-device rollout. ~32 KiB is ~200 device results, ~20 ms of applying.
APPLY_BYTES = 32 * 1024
# After a callback is stored, the applier waits this long for the rest of its burst: a batch's
# reads and writes (its campaign, the card's edit, marking the callbacks applied) then serve
# dozens of callbacks instead of the two or three one turn of the loop holds. The card's
# edits are paced in seconds (FOTA_UPDATE_INTERVAL); nobody waits on the applier.
APPLY_GATHER_SECONDS = 0.05
# A callback for a campaign not known yet waits this long for the schedule answer naming it;
# then it is set aside (kept raw, never applied).
WAITING_SECONDS = 60 * 60


def within_bytes(rows: list[tuple[int, str]], budget: int) -> list[tuple[int, str]]:
    """The first rows whose bodies add up to at most `budget` bytes (the first row always)."""
    total = 0
    for n, (_, body) in enumerate(rows):
        total += len(body)
        if total > budget and n > 0:
            return rows[:n]
    return rows


class RolloutEvents(Protocol):
    def progressed(self, campaign: Campaign) -> None: ...

    def status_changed(self, campaign: Campaign, old: str | None, new: str) -> None: ...

    def devices_failed(self, campaign: Campaign) -> None: ...

    def finished(self, campaign: Campaign) -> None: ...

    def lost(self, campaign: Campaign) -> None: ...


class ReconcileScheduler(Protocol):
    def reconcile_soon(self, campaign_id: int, delay: float) -> None: ...

    def sweep_soon(self, delay: float) -> None: ...


class Rollout:
    def __init__(
        self,
        *,
        store: Store,
        client: ThingSpaceClient,
        events: RolloutEvents,
        scheduler: ReconcileScheduler,
        clock: Callable[[], dt.datetime],
        update_interval: float,
        quiet_seconds: float = QUIET_SECONDS,
    ):
        self.store = store
        self.client = client
        self.events = events
        self.scheduler = scheduler
        self.clock = clock
        self.reconcile_delay = max(update_interval, RECONCILE_MIN_SECONDS)
        self.quiet = dt.timedelta(seconds=quiet_seconds)
        self._wake = asyncio.Event()
        self._reconcile_locks: dict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._last_seen_id = 0
        # The last batch stopped at a limit: more were stored than it applied.
        self._more_waiting = False
        self._last_reread: dict[int, dt.datetime] = {}
        self._last_sweep: dt.datetime | None = None
        self.applied_count = 0
        self.ignored_count = 0
        self.lost = LostCampaigns(store=store, client=client, events=events, scheduler=scheduler, clock=clock)
        # Called with a wave of a staged rollout when some of its devices just failed (in the
        # transaction that recorded them): the halt check.
        self.on_wave_failures: Callable[[Campaign], object] = lambda campaign: None
        # Called with a wave of a staged rollout once its end is recorded: an automatic plan
        # promotes the next wave.
        self.on_wave_ended: Callable[[Campaign], object] = lambda campaign: None

    # --- callbacks ---------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Forever: apply stored callbacks as they arrive."""
        while True:
            self._wake.clear()  # before reading: a wake-up during the read is not lost
            try:
                self.process_pending(APPLY_BATCH)
            except Exception:
                log.exception("applying callbacks failed; retrying shortly")
                self._more_waiting = False  # not at once: wait for a wake-up or the 5 s timer
            if self._more_waiting:
                await asyncio.sleep(0)  # let the receiver answer between batches
                continue
            # Caught up: wait for the next stored callback, then for the others of its burst.
            try:
                await asyncio.wait_for(self._wake.wait(), 5.0)
            except TimeoutError:
                continue
            await self._gather()

    async def _gather(self) -> None:
        await asyncio.sleep(APPLY_GATHER_SECONDS)

    def process_pending(self, limit: int = APPLY_BATCH) -> int:
        """Apply stored callbacks not seen yet, up to `limit` and APPLY_BYTES of them (at least
        one); returns how many were applied."""
        rows = self.store.unapplied_callbacks(limit, after_id=self._last_seen_id)
        self._more_waiting = len(rows) >= limit
        if not rows:
            return 0
        kept = within_bytes(rows, APPLY_BYTES)
        if len(kept) < len(rows):
            rows, self._more_waiting = kept, True
        self._apply_rows(rows)
        # Only once applied: a batch that failed (SQLite busy, a bug) is read again next time.
        self._last_seen_id = rows[-1][0]
        return len(rows)

    def _apply_rows(self, rows: list[tuple[int, str]]) -> None:
        device_updates: dict[str, list[DeviceUpdate]] = defaultdict(list)
        status_updates: list[tuple[str, str]] = []
        applied: list[int] = []
        unrecognised: list[int] = []
        waiting: dict[str, list[int]] = defaultdict(list)
        sweep = False
        known: dict[str, Campaign | None] = {}

        def campaign_for(thingspace_id: str) -> Campaign | None:
            if thingspace_id not in known:
                known[thingspace_id] = self.store.by_thingspace_id(thingspace_id)
            return known[thingspace_id]

        for callback_id, body in rows:
            try:
                parsed = parse_callback(json.loads(body))
            except ValueError:
                unrecognised.append(callback_id)
                sweep = True
                continue
            if parsed.unrecognised:
                sweep = True
            ids = {u.campaign_id for u in parsed.campaign_updates} | {u.campaign_id for u in parsed.device_updates}
            missing = [i for i in ids if campaign_for(i) is None]
            if missing:
                # It can beat the schedule answer: keep it until the campaign is known.
                waiting[missing[0]].append(callback_id)
                continue
            if not ids:
                unrecognised.append(callback_id)
                continue
            for update in parsed.campaign_updates:
                if self._foreign(campaign_for(update.campaign_id), update.account):
                    continue
                status_updates.append((update.campaign_id, update.status))
            for device in parsed.device_updates:
                if self._foreign(campaign_for(device.campaign_id), device.account):
                    continue
                device_updates[device.campaign_id].append(device)
            applied.append(callback_id)

        touched: set[int] = set()
        for thingspace_id, devices in device_updates.items():
            campaign = campaign_for(thingspace_id)
            assert campaign is not None
            self._apply_devices(campaign, ((d.device_id, d.status, d.reason, d.at) for d in devices))
            touched.add(campaign.id)
        for thingspace_id, status in status_updates:
            campaign = campaign_for(thingspace_id)
            assert campaign is not None
            touched.add(campaign.id)
            new = thingspace_state(status)
            if new is not None and new.is_terminal:
                # Callbacks are unsigned hints, and an end can never be undone: only
                # ThingSpace's own answer to a re-read ends a campaign.
                self._reread_soon(campaign.id)
                continue
            self.apply_status(campaign.id, status, actor="callback")

        with self.store.atomic():
            if touched:
                self.store.mark_callback_received(touched, self.clock())
            if applied:
                self.store.mark_callbacks(applied, parsed=True, applied=True)
            if unrecognised:
                self.store.mark_callbacks(unrecognised, parsed=False, applied=True)
            for thingspace_id, callback_ids in waiting.items():
                self.store.mark_callbacks(callback_ids, parsed=True, applied=False, thingspace_id=thingspace_id)
        self.applied_count += len(applied)
        for campaign_id in touched:
            self.scheduler.reconcile_soon(campaign_id, self.reconcile_delay)
        if sweep:
            self._sweep_soon()

    def _foreign(self, campaign: Campaign | None, account: str | None) -> bool:
        """A callback naming another account than the campaign's changes nothing."""
        if campaign is None or account is None or account == campaign.account:
            return False
        self.ignored_count += 1
        log.warning("%s: a callback named account %s, not the campaign's; ignored", campaign.ref, account[:64])
        return True

    def _reread_soon(self, campaign_id: int) -> None:
        """A re-read asked for by a callback: at once, unless one ran less than
        RECONCILE_MIN_SECONDS ago (then when that much time has passed)."""
        last = self._last_reread.get(campaign_id)
        wait = 0.0
        if last is not None:
            wait = max(0.0, RECONCILE_MIN_SECONDS - (self.clock() - last).total_seconds())
        self.scheduler.reconcile_soon(campaign_id, wait)

    def _sweep_soon(self) -> None:
        wait = 0.0
        if self._last_sweep is not None:
            wait = max(0.0, SWEEP_SECONDS - (self.clock() - self._last_sweep).total_seconds())
        self.scheduler.sweep_soon(wait)

    async def sweep(self) -> None:
        """Re-read every campaign active at ThingSpace (after callbacks nobody could read)."""
        self._last_sweep = self.clock()
        for campaign in self.store.active_at_thingspace():
            await self.reconcile(campaign.id)

    def adopt_waiting_callbacks(self, campaign: Campaign) -> int:
        """Apply callbacks that arrived before ThingSpace's answer named this campaign."""
        if not campaign.thingspace_id:
            return 0
        rows = self.store.callbacks_waiting_for(campaign)
        if rows:
            self._apply_rows(rows)
        return len(rows)

    def _apply_devices(
        self,
        campaign: Campaign,
        updates: Iterable[tuple[str, str, str | None, str | None]],
        *,
        from_report: bool = False,
    ) -> None:
        changes = self.store.apply_device_updates(campaign.id, updates, from_report=from_report)
        if not changes:
            return
        current = self.store.campaign(campaign.id)
        self.events.progressed(current)
        if any(device_bucket(new) == "failed" for _, _, new in changes):
            self.events.devices_failed(current)
            if current.parent_id is not None:
                self.on_wave_failures(current)

    def apply_status(self, campaign_id: int, status: str, *, actor: str) -> Campaign:
        """Move the campaign to ThingSpace's status when that is a step forward; else nothing.

        `actor` "reconcile" is ThingSpace's own answer to a re-read: it confirms the status, and
        it puts back a live status that callbacks alone had moved forward (a correction)."""
        campaign = self.store.campaign(campaign_id)
        new = thingspace_state(status)
        reread = actor == "reconcile"
        if new is None:
            if status and status != campaign.thingspace_status:
                log.warning("%s: ThingSpace status %r is not one we know; kept, state unchanged", campaign.ref, status)
                campaign = self.store.update_fields(campaign_id, thingspace_status=status[:100])
            return campaign
        if new is campaign.state:
            if reread and campaign.status_from_callback:
                campaign = self.store.update_fields(campaign_id, status_from_callback=0)  # confirmed
            return campaign
        if new not in ALLOWED[campaign.state]:
            if reread and campaign.status_from_callback and new in CORRECTIONS.get(campaign.state, ()):
                return self._correct(campaign, new, status)
            return campaign  # a duplicate, a late or reordered report: changes nothing
        old = campaign.thingspace_status or campaign.state.value
        # One transaction: a crash cannot leave a terminal campaign whose end was never told.
        with self.store.atomic():
            campaign = self.store.transition(
                campaign_id, new, actor=actor, reason=f"ThingSpace status {status}", thingspace_status=status,
                status_from_callback=0 if reread else 1,
            )
            self.events.status_changed(campaign, old, new.value)
            if new.is_terminal:
                # The request of a last wave is rolled out first, so what is told of the wave's
                # end (the summary across waves, the requester's one message) sees it so.
                waves.wave_ended(self.store, campaign)
                self.events.finished(campaign)
        if new.is_terminal:
            log.info("%s ended %s: %s", campaign.ref, new.value, _counts(self.store.device_counts(campaign_id)))
            if campaign.parent_id is not None:
                self.on_wave_ended(campaign)
        return campaign

    def _correct(self, campaign: Campaign, new: CampaignState, status: str) -> Campaign:
        """Put back a live status that callbacks alone produced: ThingSpace's answer is the
        authority, and a forged "started" must not make /fota cancel treat the campaign as started."""
        old = campaign.thingspace_status or campaign.state.value
        with self.store.atomic():
            campaign = self.store.transition(
                campaign.id,
                new,
                actor="reconcile",
                reason=f"corrected by ThingSpace's answer to a re-read ({status}); {old} came from callbacks alone",
                correction=True,
                thingspace_status=status,
                status_from_callback=0,
            )
            self.events.status_changed(campaign, old, new.value)
        log.warning("%s: ThingSpace says %s; %s came from callbacks alone and is corrected", campaign.ref, status, old)
        return campaign

    # --- re-reads ----------------------------------------------------------------------------

    async def reconcile(self, campaign_id: int) -> Campaign:
        """Re-read the campaign and every device from ThingSpace, and apply what changed."""
        async with self._reconcile_locks[campaign_id]:
            self._last_reread[campaign_id] = self.clock()
            campaign = self.store.campaign(campaign_id)
            if not campaign.thingspace_id:
                return campaign
            try:
                batch: list[tuple[str, str, str | None, str | None]] = []
                async for device in self.client.campaign_devices(campaign.account, campaign.thingspace_id):
                    batch.append(_report_row(device))
                    if len(batch) >= REPORT_BATCH:
                        self._apply_devices(campaign, batch, from_report=True)
                        batch = []
                if batch:
                    self._apply_devices(campaign, batch, from_report=True)
                info = await self.client.get_campaign(campaign.account, campaign.thingspace_id)
            except ThingSpaceError as exc:
                if isinstance(exc, ThingSpaceNotFound):
                    return await self.lost.not_found(campaign, exc)  # it says what it saw
                log.warning("%s: re-read from ThingSpace failed: %s", campaign.ref, exc)
                return self.store.campaign(campaign_id)
            self.lost.found(campaign)
            status = str(info.get("status") or "")
            if status and not campaign.state.is_terminal:
                campaign = self.apply_status(campaign_id, status, actor="reconcile")
            return self.store.campaign(campaign_id)

    async def watchdog(self) -> None:
        """Re-read every active campaign whose callbacks went quiet; set aside callbacks that
        waited too long for their campaign."""
        now = self.clock()
        expired = self.store.expire_waiting_callbacks(now - dt.timedelta(seconds=WAITING_SECONDS))
        if expired:
            log.info("%d callbacks for campaigns never known here set aside", expired)
        for campaign in self.store.active_at_thingspace():
            last = campaign.last_callback_at or campaign.created_at
            if now - last >= self.quiet:
                log.info("%s: no callback since %s; re-reading", campaign.ref, last.isoformat())
                await self.reconcile(campaign.id)


def _report_row(device: dict[str, Any]) -> tuple[str, str, str | None, str | None]:
    reason = device.get("resultReason") or device.get("reason")
    return (
        str(device.get("deviceId")),
        str(device.get("status") or ""),
        str(reason)[:1000] if reason else None,
        device.get("updatedTime"),
    )


def _counts(counts: dict[str, int]) -> str:
    return " · ".join(f"{label} {n}" for label, n in counts.items() if n) or "no devices"
