"""Pre-flight checks: the blast radius on the approval card before anyone decides.

`evaluate` is pure: the request, ThingSpace's firmware list, its device answers, the
subscription and the other active campaigns in, `Findings` out. `PreflightRunner` does the
I/O around it: it asks ThingSpace (devices in chunks, a bounded number at once, under one
deadline), reads conflicts from the database, evaluates off the event loop, stores the
findings with the request and tells the thread to redraw the card.

Rules (what ThingSpace documents, see docs/thingspace.md):
1. Firmware: `GET /firmware/{acc}?protocol=` lists `firmwareName` with this `firmwareFrom`
   and `firmwareTo`; that entry gives the make and model.
2. Devices: `POST /devices/{acc}` answers only devices of the account; `fotaEligible`;
   `licenseAssigned` matters when the subscription is monthly-only (its purchaseType holds
   only an MRC item), because ThingSpace then refuses the whole schedule request while an
   unlicensed device is in it; the current firmware should be `firmwareFrom` (on
   `firmwareTo` already: done); make and model should be the firmware's.
3. Conflicts: devices already in another active campaign here; overlapping dates/windows.

A device is *eligible* when the upgrade will probably succeed on it: in the account,
FOTA-eligible, licensed where that matters, of the firmware's make and model, on `firmwareFrom`
(on `firmwareTo` already: done, never sent) and in no other active campaign here. A device
that does not report its make, model or firmware is not known to match, so it is excluded too.
Every other device is excluded with its reasons; the card's primary button sends exactly the
eligible ones, and sending excluded devices is a separate, recorded override. Blocking: the
firmware is not listed, or no device is eligible.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import hashlib
import logging
import re
import sys
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from bot.background import Background
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.errors import ThingSpaceError
from bot.workflow.errors import UserError
from bot.workflow.planner import assign
from storage import preflight as stored
from storage import waves
from storage.findings import (
    EXCLUDING,
    FAILED,
    ConflictFinding,
    Finding,
    Findings,
    FirmwareCheck,
    Narrowed,
    OtherCampaign,
    Overridden,
    PreflightRecord,
    PreflightSummary,
    RadiusRow,
)
from storage.model import Campaign, TimeWindow, canonical
from storage.plan import DeviceFacts
from storage.states import CampaignState
from storage.store import Store

log = logging.getLogger("bot.preflight")

# ThingSpace documents no maximum for POST /devices; its report pages hold 1,000 IMEIs, so
# 1,000 per request is a size it is known to handle. Four at once keeps one campaign's check
# from crowding out the other calls (submissions, re-reads) on the same account.
CHUNK_SIZE = 1000
CONCURRENCY = 4
# Pre-flights of different requests at once; more wait their turn.
PARALLEL_CHECKS = 2
# A pre-flight that takes longer is recorded as failed (retry from the card), never left hanging:
# 100,000 devices are 100 requests, 25 rounds of 4; the client's own retries fit well inside.
DEADLINE_SECONDS = 300.0
# Device ids read per query, in request order off the devices(campaign_id) index: under a ms each.
ID_PAGE = 1_000
# Devices per slice of the findings digest.
DIGEST_SLICE = 2000
# Lines of the blast radius kept (the card has 50 blocks and approvers have little time).
RADIUS_ROWS = 8


# --- Pure evaluation -------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestFacts:
    """What pre-flight needs to know about the request itself."""

    account: str
    firmware_name: str
    firmware_from: str
    firmware_to: str
    protocol: str
    start_date: dt.date
    end_date: dt.date
    windows: tuple[TimeWindow, ...]
    devices: Sequence[str]
    # licence=auto: ThingSpace may give unlicensed devices the account's unused licences.
    licence_auto: bool = False

    @classmethod
    def of(cls, campaign: Campaign, devices: Sequence[str]) -> RequestFacts:
        return cls(
            account=campaign.account,
            firmware_name=campaign.firmware_name,
            firmware_from=campaign.firmware_from,
            firmware_to=campaign.firmware_to,
            protocol=campaign.protocol,
            start_date=campaign.start_date,
            end_date=campaign.end_date,
            windows=campaign.windows,
            devices=devices,
            licence_auto=campaign.licence_auto,
        )


class DeviceInfo(NamedTuple):
    """One device of ThingSpace's `POST /devices` answer, reduced to what pre-flight reads.

    A named tuple with interned strings: 100,000 of them stay a few MB, where the raw JSON
    dicts would take about a hundred.
    """

    imei: str
    make: str
    model: str
    firmware: str
    fota_eligible: bool | None
    license_assigned: bool | None

    @classmethod
    def from_thingspace(cls, item: Mapping[str, Any]) -> DeviceInfo:
        return cls(
            imei=str(item.get("deviceId") or ""),
            make=sys.intern(str(item.get("make") or "")),
            model=sys.intern(str(item.get("model") or "")),
            firmware=sys.intern(str(item.get("firmware") or "")),
            fota_eligible=_flag(item.get("fotaEligible")),
            license_assigned=_flag(item.get("licenseAssigned")),
        )


def _flag(value: object) -> bool | None:
    # Generated clients say boolean; take the strings too. Absent is "not said", not False.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


@functools.lru_cache(maxsize=4096)
def _norm(text: str) -> str:
    # Cached: a fleet has few distinct makes, models and versions, repeated on every device.
    return " ".join(text.split()).casefold()


def _same(a: str | None, b: str | None) -> bool:
    """Make/model/firmware names compared the way a person would: case and spacing aside."""
    return _norm(a or "") == _norm(b or "")


def monthly_only(subscription: Mapping[str, Any]) -> bool:
    """True when purchaseType holds only MRC (monthly recurring charge) items.

    ThingSpace's examples: `"TS-HFOTA-MRC"` (monthly only) and `"TS-HFOTA-EVNT,TS-HFOTA-MRC"`
    (also per-event); a list of items is accepted too.
    """
    raw = subscription.get("purchaseType")
    items: list[str]
    if isinstance(raw, str):
        items = [i for i in re.split(r"[,;\s]+", raw) if i]
    elif isinstance(raw, list):
        items = [str(i) for i in raw if str(i).strip()]
    else:
        items = []
    return bool(items) and all("MRC" in item.upper() for item in items)


def free_licences(subscription: Mapping[str, Any]) -> int | None:
    """Unused licences of the account (licenseCount - licenseUsedCount), None when not said."""
    try:
        total = int(subscription["licenseCount"])
        used = int(subscription.get("licenseUsedCount") or 0)
    except (KeyError, TypeError, ValueError):
        return None
    return max(total - used, 0)


def check_firmware(request: RequestFacts, catalogue: Iterable[Mapping[str, Any]]) -> FirmwareCheck:
    """Rule 1, with a sentence that says what the list does hold when it does not match."""
    named = [
        entry
        for entry in catalogue
        if entry.get("firmwareName") == request.firmware_name
        and str(entry.get("protocol") or request.protocol).upper() == request.protocol.upper()
    ]
    for entry in named:
        if (
            entry.get("firmwareFrom") == request.firmware_from
            and entry.get("firmwareTo") == request.firmware_to
        ):
            return FirmwareCheck(
                listed=True,
                make=str(entry.get("make") or "") or None,
                model=str(entry.get("model") or "") or None,
            )
    if not named:
        problem = (
            f"Firmware {request.firmware_name} is not in account {request.account}'s firmware list "
            f"for {request.protocol}."
        )
    else:
        pairs = ", ".join(f"{e.get('firmwareFrom')} → {e.get('firmwareTo')}" for e in named[:5])
        problem = (
            f"Firmware {request.firmware_name} is listed for {pairs}, not for "
            f"{request.firmware_from} → {request.firmware_to}."
        )
    return FirmwareCheck(listed=False, problem=problem)


def dates_overlap(a_start: dt.date, a_end: dt.date, b_start: dt.date, b_end: dt.date) -> bool:
    return a_start <= b_end and b_start <= a_end


def windows_overlap(a: Sequence[TimeWindow], b: Sequence[TimeWindow]) -> bool:
    """Hours in common; no windows means the whole day (ThingSpace runs the campaign any time)."""
    if not a or not b:
        return True
    return any(x.start_hour < y.end_hour and y.start_hour < x.end_hour for x in a for y in b)


def evaluate(
    request: RequestFacts,
    catalogue: Sequence[Mapping[str, Any]],
    devices: Iterable[DeviceInfo],
    subscription: Mapping[str, Any],
    conflicts: Sequence[OtherCampaign] = (),
) -> Findings:
    """Rules 1–3 applied to ThingSpace's answers: the findings, pure and deterministic."""
    firmware = check_firmware(request, catalogue)
    mrc_only = monthly_only(subscription)
    answered: dict[str, DeviceInfo] = {}
    for answer in devices:
        answered.setdefault(answer.imei, answer)
    in_other: set[str] = set()
    for other in conflicts:
        in_other |= other.shared

    # licence=auto on a monthly-only account: an unlicensed device that is otherwise eligible
    # takes one of the unused licences, in request order, while there are any; ThingSpace
    # assigns them when the campaign is scheduled.
    auto_licences = request.licence_auto and mrc_only
    free = free_licences(subscription) if auto_licences else None
    licences_left = free or 0
    assigned = 0
    unlicensed_only: tuple[Finding, ...] = (Finding.UNLICENSED,)

    requested = list(dict.fromkeys(request.devices))
    # A device's findings follow from its answer alone (its IMEI aside), and a fleet gives few
    # distinct answers: each is judged once, then devices are only counted (100,000 devices).
    judged: dict[tuple[Any, ...], tuple[Finding, ...]] = {}
    unknown: tuple[Finding, ...] = (Finding.UNKNOWN,)
    per_device: dict[str, tuple[Finding, ...]] = {}
    combos: Counter[tuple[Finding, ...]] = Counter()
    radius: Counter[tuple[str, str, str]] = Counter()
    for imei in requested:
        info = answered.get(imei)
        found: tuple[Finding, ...]
        if info is None:
            found = unknown
        else:
            radius[(info.make, info.model, info.firmware)] += 1
            key = info[1:]
            cached = judged.get(key)
            if cached is None:
                cached = judged[key] = _judge(info, request, firmware, mrc_only)
            found = cached
        if imei in in_other:
            found = (*found, Finding.IN_OTHER_CAMPAIGN)
        if auto_licences and found == unlicensed_only and licences_left > 0:
            licences_left -= 1
            assigned += 1
            found = ()
        if found:
            per_device[imei] = found
        combos[found] += 1

    counts: Counter[str] = Counter()
    eligible = on_target = 0
    for combo, n in combos.items():
        for finding in combo:
            counts[finding.value] += n
        if EXCLUDING.isdisjoint(combo):
            eligible += n
            if Finding.WRONG_FIRMWARE not in combo and Finding.WRONG_MODEL not in combo:
                on_target += n

    rows = sorted(radius.items(), key=lambda item: (-item[1], item[0]))
    shown = tuple(
        RadiusRow(
            make=make,
            model=model,
            firmware=current,
            devices=n,
            target=firmware.listed
            and _same(make, firmware.make)
            and _same(model, firmware.model)
            and _same(current, request.firmware_from),
        )
        for (make, model, current), n in rows[:RADIUS_ROWS]
    )
    conflict_findings = tuple(
        ConflictFinding(
            campaign_id=other.campaign_id,
            state=other.state,
            shared=len(other.shared),
            start_date=other.start_date,
            end_date=other.end_date,
            dates_overlap=(
                overlap := dates_overlap(
                    request.start_date, request.end_date, other.start_date, other.end_date
                )
            ),
            windows_overlap=overlap and windows_overlap(request.windows, other.windows),
        )
        for other in sorted(conflicts, key=lambda c: c.campaign_id)
    )
    blocking: list[str] = []
    if not firmware.listed and firmware.problem:
        blocking.append(firmware.problem)
    if eligible == 0:
        blocking.append(_no_eligible_reason(len(requested), counts, request))
    summary = PreflightSummary(
        requested=len(requested),
        eligible=eligible,
        on_target=on_target,
        counts=dict(counts),
        monthly_only=mrc_only,
        firmware=firmware,
        radius=shown,
        radius_other=sum(n for _, n in rows[RADIUS_ROWS:]),
        conflicts=conflict_findings,
        blocking=tuple(blocking),
        licences_assigned=assigned,
        licences_free=free if auto_licences else None,
    )
    return Findings(summary=_with_digest(summary, per_device), devices=per_device)


def _judge(
    info: DeviceInfo, request: RequestFacts, firmware: FirmwareCheck, mrc_only: bool
) -> tuple[Finding, ...]:
    """Rule 2 for one device ThingSpace knows."""
    found: list[Finding] = []
    if info.fota_eligible is False:
        found.append(Finding.INELIGIBLE)
    if mrc_only and info.license_assigned is False:
        found.append(Finding.UNLICENSED)
    if info.firmware and _same(info.firmware, request.firmware_to):
        found.append(Finding.DONE)
    elif not info.firmware or not _same(info.firmware, request.firmware_from):
        # Not reported is not "on firmwareFrom": the image is built for that version only.
        found.append(Finding.WRONG_FIRMWARE)
    if (
        firmware.listed
        and (firmware.make or firmware.model)
        and not (_same(info.make, firmware.make) and _same(info.model, firmware.model))
    ):
        found.append(Finding.WRONG_MODEL)
    return tuple(found)


def _no_eligible_reason(requested: int, counts: Mapping[str, int], request: RequestFacts) -> str:
    words = {
        Finding.UNKNOWN: f"not in account {request.account}",
        Finding.INELIGIBLE: "not FOTA-eligible",
        Finding.UNLICENSED: "without a licence on a monthly-only subscription",
        Finding.DONE: f"already on {request.firmware_to}",
        Finding.WRONG_FIRMWARE: f"not on {request.firmware_from}",
        Finding.WRONG_MODEL: "of another make or model",
        Finding.IN_OTHER_CAMPAIGN: "in another active campaign",
    }
    why = ", ".join(
        f"{counts[f.value]:,} {text}" for f, text in words.items() if counts.get(f.value)
    )
    return f"None of the {requested:,} devices can take this upgrade ({why})."


def _with_digest(
    summary: PreflightSummary, per_device: Mapping[str, tuple[Finding, ...]]
) -> PreflightSummary:
    """The digest covers the summary and every device's findings, so "eligible only" is bound
    to exactly which devices were found eligible.

    Devices are hashed in slices, in the request's order (which the request hash fixes):
    json's C encoder holds the GIL, and one 100,000-device document would hold it for tens of
    ms while this runs off the loop.
    """
    words: dict[tuple[Finding, ...], list[str]] = {}
    for found in per_device.values():
        if found not in words:
            words[found] = [f.value for f in found]
    digest = hashlib.sha256(canonical(summary.to_json(with_digest=False)))
    items = list(per_device.items())
    for start in range(0, len(items), DIGEST_SLICE):
        digest.update(b"\n")
        digest.update(
            canonical(
                [[imei, words[found]] for imei, found in items[start : start + DIGEST_SLICE]]
            )
        )
    return dataclasses.replace(summary, digest=digest.hexdigest())


# --- I/O -------------------------------------------------------------------------------------


def _first(group: BaseExceptionGroup[ThingSpaceError]) -> ThingSpaceError:
    """The first ThingSpace error of a task group's failure: the one sentence people read."""
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, ThingSpaceError)
    return error


class PreflightEvents(Protocol):
    """What the thread is told (implemented by the thread notifier)."""

    def preflight_updated(self, campaign: Campaign) -> None:
        """The pre-flight record changed (checking, done or failed): redraw the card."""

    def narrowed(self, campaign: Campaign, user: str, narrowed: Narrowed) -> None: ...

    def overridden(
        self, campaign: Campaign, user: str, overridden: Overridden, reason: str
    ) -> None: ...


class PreflightRunner:
    """Runs pre-flight checks in the background and keeps their results with the request."""

    def __init__(
        self,
        *,
        store: Store,
        thingspace: ThingSpaceClient,
        events: PreflightEvents,
        background: Background,
        chunk_size: int = CHUNK_SIZE,
        concurrency: int = CONCURRENCY,
        parallel_checks: int = PARALLEL_CHECKS,
        deadline: float = DEADLINE_SECONDS,
    ):
        if chunk_size < 1 or concurrency < 1 or parallel_checks < 1:
            raise ValueError("chunk_size, concurrency and parallel_checks must be at least 1")
        self.store = store
        self.thingspace = thingspace
        self.events = events
        self.background = background
        self.chunk_size = chunk_size
        self.concurrency = concurrency
        self.deadline = deadline
        self.parallel_checks = parallel_checks
        self._checks = asyncio.Semaphore(parallel_checks)
        # Runs waiting their turn, in order, and how many workers take them: a request waiting
        # is an entry here (`checking` on record), not a task of its own kept alive, frames
        # and all, for the garbage collector to walk while a burst of requests waits.
        self._queue: deque[tuple[int, int]] = deque()
        self._workers = 0

    # --- starting ----------------------------------------------------------------------------

    def start(self, campaign: Campaign) -> None:
        """Record the request as `checking` now (the card shows it, the guard refuses it) and
        run the checks in the background. Call before the card is posted."""
        attempt = stored.begin(self.store, campaign.id)
        if attempt is not None:
            self._spawn(campaign.id, attempt)

    def resume_interrupted(self) -> None:
        """At start-up: run again every pre-flight a stop or crash cut short (or that failed)."""
        for campaign_id in stored.interrupted(self.store):
            attempt = stored.restart(self.store, campaign_id)
            if attempt is not None:
                log.info("re-running the pre-flight of FB-%d (attempt %d)", campaign_id, attempt)
                self._spawn(campaign_id, attempt)

    async def retry(self, campaign_id: int, *, user: str) -> str:
        """The card's "Run checks again", offered when the checks failed."""
        try:
            campaign = self.store.campaign(campaign_id)
        except LookupError as exc:
            raise UserError(str(exc)) from exc
        if campaign.state is not CampaignState.PENDING_APPROVAL:
            raise UserError(f"{campaign.ref} is no longer waiting for approval; nothing to check.")
        record = stored.load(self.store, campaign_id)
        if record is not None and record.status != FAILED:
            raise UserError(
                f"The checks of {campaign.ref} are {record.status}; nothing to run again."
            )
        attempt = stored.begin(self.store, campaign_id)
        if attempt is None:
            raise UserError(f"The checks of {campaign.ref} are already running.")
        log.info("%s asked to re-run the pre-flight of %s", user, campaign.ref)
        self.events.preflight_updated(campaign)  # back to "checking…" on the card
        self._spawn(campaign_id, attempt)
        return f"Checking {campaign.ref} again; its card changes when the checks are done."

    def _spawn(self, campaign_id: int, attempt: int) -> None:
        self._queue.append((campaign_id, attempt))
        if self._workers < self.parallel_checks:
            self._workers += 1
            self.background.spawn(self._work(), name="pre-flight checks")

    async def _work(self) -> None:
        """Queued runs one after another until none is left (tracked work: shutdown waits for
        it, and a run it never started is still `checking`, so start-up runs it again)."""
        try:
            while self._queue:
                campaign_id, attempt = self._queue.popleft()
                try:
                    await self.run(campaign_id, attempt)
                except Exception:
                    # A run records its own failure; one it could not record (the database
                    # failing as well) stays `checking` for start-up to run again, and must not
                    # stop this worker: the requests queued behind it would wait for the next
                    # request to start one.
                    log.exception("pre-flight of FB-%d ended without its outcome on record", campaign_id)
        finally:
            self._workers -= 1

    # --- running -----------------------------------------------------------------------------

    async def run(self, campaign_id: int, attempt: int) -> PreflightRecord | None:
        """One pre-flight run; its outcome (done or failed) is stored and the card redrawn."""
        async with self._checks:
            try:
                return await self._run(campaign_id, attempt)
            except Exception:
                # A bug or a database error must not leave the card "checking…" for ever:
                # the request stays unapprovable, and the card offers to run the checks again.
                log.exception("pre-flight of FB-%d stopped by an unexpected error", campaign_id)
                return self._failed(
                    self.store.campaign(campaign_id),
                    attempt,
                    "an unexpected error stopped the checks (details in the bot's log)",
                )

    async def _run(self, campaign_id: int, attempt: int) -> PreflightRecord | None:
        campaign = self.store.campaign(campaign_id)
        if campaign.state is not CampaignState.PENDING_APPROVAL:
            # Decided (withdrawn, expired) before its turn came: nobody will read the findings.
            stored.fail(
                self.store, campaign_id, attempt, f"{campaign.ref} was closed before the checks ran"
            )
            return None
        devices = await self._device_ids(campaign_id)
        try:
            async with asyncio.timeout(self.deadline):
                catalogue, subscription, infos = await self._ask(campaign, devices)
        except ThingSpaceError as exc:
            return self._failed(campaign, attempt, str(exc))
        except TimeoutError:
            return self._failed(
                campaign,
                attempt,
                f"ThingSpace did not answer for {len(devices):,} devices within "
                f"{self.deadline:.0f} s",
            )
        # Against years of history this is a large read: on the reader thread, off the loop.
        conflicts = await self.store.readers.run(
            lambda conn: stored.active_conflicts(conn, campaign.id, campaign.device_count)
        )
        facts = RequestFacts.of(campaign, devices)
        # 100,000 devices take a few hundred ms of CPU: off the loop, so acks stay fast.
        findings = await asyncio.to_thread(
            evaluate, facts, catalogue, infos, subscription, conflicts
        )
        if not await self._write_findings(campaign_id, attempt, findings):
            return None  # a newer run took over
        # The findings and a staged request's waves (planned over its eligible devices) are
        # bound into the content hash together: no card ever offers Approve for one without
        # the other.
        with self.store.atomic():
            updated = stored.finish(self.store, campaign_id, attempt, findings, devices_written=True)
            if updated is not None:
                updated = self._plan_waves(updated, devices, infos, findings)
        if updated is None:
            return None  # a newer run took over
        summary = findings.summary
        log.info(
            "%s pre-flight: %d of %d devices eligible%s",
            campaign.ref,
            summary.eligible,
            summary.requested,
            "; blocked" if summary.blocked else "",
        )
        self.events.preflight_updated(updated)
        return stored.load(self.store, campaign_id)

    async def _write_findings(self, campaign_id: int, attempt: int, findings: Findings) -> bool:
        """The per-device findings, a chunk per transaction with a turn of the loop between
        (acks and callbacks go through), after clearing what an earlier run left the same way.
        The run stays `checking` throughout; `finish` publishes them. False when superseded."""
        while True:
            cleared = stored.clear_device_findings(self.store, campaign_id, attempt)
            if cleared is None:
                return False
            if cleared < stored.FINDINGS_CHUNK:
                break
            await asyncio.sleep(0)
        items = list(findings.devices.items())
        for start in range(0, len(items), stored.FINDINGS_CHUNK):
            chunk = items[start : start + stored.FINDINGS_CHUNK]
            if not stored.write_device_findings(self.store, campaign_id, attempt, chunk):
                return False
            await asyncio.sleep(0)
        return True

    def _plan_waves(
        self, campaign: Campaign, devices: Sequence[str], infos: Sequence[DeviceInfo], findings: Findings
    ) -> Campaign:
        stored_plan = waves.plan_of(self.store, campaign.id)
        if stored_plan is None:
            return campaign
        known = {info.imei: info for info in infos}
        eligible = [
            DeviceFacts(imei, known[imei].make, known[imei].model, known[imei].firmware)
            for imei in devices
            if imei not in findings.devices and imei in known
        ]
        return waves.bind_plan(self.store, campaign.id, stored_plan.plan, assign(stored_plan.plan, eligible))

    async def _device_ids(self, campaign_id: int) -> list[str]:
        devices: list[str] = []
        after = 0
        while page := stored.device_page(self.store, campaign_id, after, ID_PAGE):
            devices.extend(imei for _, imei in page)
            after = page[-1][0]
            await asyncio.sleep(0)  # 100,000 rows in one read would hold the loop ~0.1 s
        return devices

    async def _ask(
        self, campaign: Campaign, devices: Sequence[str]
    ) -> tuple[list[dict[str, Any]], dict[str, Any], list[DeviceInfo]]:
        """The three ThingSpace reads at once; the first failure cancels the others."""
        try:
            async with asyncio.TaskGroup() as group:
                catalogue = group.create_task(
                    self.thingspace.list_firmware(campaign.account, campaign.protocol)
                )
                subscription = group.create_task(self.thingspace.subscription(campaign.account))
                infos = group.create_task(self._device_infos(campaign.account, devices))
        except* ThingSpaceError as group_error:
            raise _first(group_error) from None
        return catalogue.result(), subscription.result(), infos.result()

    async def _device_infos(self, account: str, imeis: Sequence[str]) -> list[DeviceInfo]:
        """`POST /devices` chunk by chunk, at most `concurrency` at once; each answer is reduced
        to `DeviceInfo` as it arrives, so 100,000 raw answers are never held at once."""
        pages = await self.thingspace.device_info_pages(
            account,
            imeis,
            lambda page: [DeviceInfo.from_thingspace(item) for item in page],
            chunk_size=self.chunk_size,
            concurrency=self.concurrency,
        )
        return [info for page in pages for info in page]

    def _failed(self, campaign: Campaign, attempt: int, error: str) -> PreflightRecord | None:
        log.warning("%s pre-flight failed: %s", campaign.ref, error)
        if not stored.fail(self.store, campaign.id, attempt, error):
            return None
        self.events.preflight_updated(self.store.campaign(campaign.id))
        return stored.load(self.store, campaign.id)

    # --- reading and narrowing ---------------------------------------------------------------

    def record(self, campaign_id: int) -> PreflightRecord | None:
        return stored.load(self.store, campaign_id)

    def narrow_and_approve(
        self,
        campaign_id: int,
        *,
        user: str,
        shown_hash: str,
        required: int,
        current_approvers: frozenset[str] | None = None,
    ) -> Narrowed:
        """The card's "Approve eligible only": narrow and approve in one transaction, then tell
        the thread. Raises `NotApproved` (the guard's refusal)."""
        narrowed = stored.narrow_and_approve(
            self.store, campaign_id, user=user, shown_hash=shown_hash, required=required,
            current_approvers=current_approvers,
        )
        if narrowed.dropped:
            self.events.narrowed(narrowed.result.campaign, user, narrowed)
        return narrowed

    def override_and_approve(
        self,
        campaign_id: int,
        *,
        user: str,
        shown_hash: str,
        typed_count: int,
        reason: str,
        required: int,
        current_approvers: frozenset[str] | None = None,
    ) -> Overridden:
        """"Include excluded devices…" submitted: widen, record and approve in one
        transaction, then tell the thread. Raises `NotApproved` (the guard's refusal)."""
        overridden = stored.override_and_approve(
            self.store,
            campaign_id,
            user=user,
            shown_hash=shown_hash,
            typed_count=typed_count,
            reason=reason,
            required=required,
            current_approvers=current_approvers,
        )
        if overridden.included:
            self.events.overridden(overridden.result.campaign, user, overridden, reason.strip())
        return overridden
