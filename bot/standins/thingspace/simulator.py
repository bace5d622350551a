"""The sandbox's pure model: a simulated clock, credentials, and ThingSpace's campaign state.

No I/O and no asyncio here. Every method that reads or changes state takes the sandbox time
`now` and first applies whatever was due by then, so a read always shows the state at `now`;
the status changes it applies are kept in an outbox that `Sandbox.tick` drains and turns into
callbacks.

Campaign timeline (sandbox seconds; `SandboxTimings`, defaults in brackets)
--------------------------------------------------------------------------
A campaign accepted at time t0 with startDate S and endDate E moves:

- ``CampaignRequestPending`` at t0 (the schedule answer; no callback for it),
- ``CampaignRequestQueued`` at q = t0 + ``queue`` [2],
- ``CampaignPreScheduled`` at p = q + ``pre_schedule`` [2],
- ``CampaignScheduled`` at s = max(p + ``schedule`` [2], S 00:00 UTC): a future-dated
  campaign waits for its start date in sandbox time, as ThingSpace starts those around
  00:00 UTC; advance the clock (or speed it up) to get there,
- each device then begins at s + spread × ``device_spread`` [10], moving ``UpgradePending``
  → ``UpgradeScheduled``, and finishes ``(0.25 + 0.75 × pace) × upgrade`` [4] later with
  ``UpgradeSuccess`` or ``UpgradeFailed`` (``spread``/``pace`` come from the IMEI, see
  `bot.standins.thingspace.devices`). Devices that are not in the account or not FOTA eligible go
  straight from ``UpgradePending`` to ``RequestToFotaServerFailed`` when they would begin,
- ``CampaignEnded`` ``end_grace`` [2] after the last device finished.

With the defaults a campaign ends about 22 sandbox seconds after it was accepted. Nothing
happens after the end of E (24:00 UTC): a device not finished by then ends ``UpgradeFailed``
("Campaign end date reached before the device was upgraded") and the campaign ends.
At this quick pace time windows (``campaignTimeWindowList``) are validated but not waited
for: rehearsals would otherwise wait for the window's hours.

`SandboxTimings.thingspace()` follows ThingSpace's "About Campaigns" page instead: scheduled
about 1 h 45 after acceptance (or at 00:00 UTC of a future start date), pushed devices reached
over half an hour but only inside a window (else from the next window's opening), a device
that does not respond (LWM2M) left ``UpgradeScheduled`` with the reason and its next attempt
at 04:00 UTC (plus its spread) on each of the next three days before it ends ``UpgradeFailed``,
and HTTP devices reached at their first check-in (every 4 hours, at a phase of their own)
inside a window.

A campaign may be cancelled (``DELETE``) until it is ``CampaignScheduled``; it then becomes
``CampaignCancelled`` and each of its devices ``CampaignCancelled`` (reason "Campaign
cancelled"), each change announced by a callback. Cancelling a cancelled campaign answers
success again, so a retried DELETE is harmless.
"""

from __future__ import annotations

import datetime as dt
import heapq
import re
import secrets
import time
import uuid
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from bot.standins.thingspace.devices import (
    DEFAULT_CATALOGUE,
    NOT_ELIGIBLE_REASON,
    NOT_IN_ACCOUNT_REASON,
    PROTOCOL_SPELLINGS,
    PROTOCOLS,
    DeviceFacts,
    DeviceKind,
    FirmwareEntry,
    device_facts,
    is_imei,
)

UTC = dt.UTC

# --- Statuses -----------------------------------------------------------------------------------

PENDING = "CampaignRequestPending"
QUEUED = "CampaignRequestQueued"
PRE_SCHEDULED = "CampaignPreScheduled"
SCHEDULED = "CampaignScheduled"
ENDED = "CampaignEnded"
CANCELLED = "CampaignCancelled"
CAMPAIGN_TERMINAL = frozenset({ENDED, CANCELLED, "CampaignAborted", "CampaignFailed",
                               "CampaignRequestFailed"})
CANCELLABLE = frozenset({PENDING, QUEUED, PRE_SCHEDULED})

UPGRADE_PENDING = "UpgradePending"
UPGRADE_SCHEDULED = "UpgradeScheduled"
UPGRADE_SUCCESS = "UpgradeSuccess"
UPGRADE_FAILED = "UpgradeFailed"
REQUEST_FAILED = "RequestToFotaServerFailed"
DEVICE_CANCELLED = "CampaignCancelled"
DEVICE_FINAL = frozenset({UPGRADE_SUCCESS, UPGRADE_FAILED, REQUEST_FAILED, DEVICE_CANCELLED})

END_DATE_REACHED_REASON = "Campaign end date reached before the device was upgraded"
NO_RESPONSE_REASON = "Device did not respond"
CANCELLED_REASON = "Campaign cancelled"

REQUIRED_FIELDS = (
    "firmwareName",
    "firmwareFrom",
    "firmwareTo",
    "protocol",
    "startDate",
    "endDate",
    "deviceList",
)
# Required booleans of the schedule body in Verizon's SDK (`CampaignFirmwareUpgrade`): its
# serialiser refuses a body without them, so ThingSpace is taken to refuse one too.
REQUIRED_FLAGS = ("autoAssignLicenseFlag", "autoAddDevicesFlag")

NOT_IN_CAMPAIGN_REASON = "Device is not in the campaign"
ALREADY_IN_CAMPAIGN_REASON = "Device is already in the campaign"
NO_LICENCE_REASON = "Device has no license assigned"
NO_LICENCES_LEFT_REASON = "No unused license left in the account"

_ACCOUNT = re.compile(r"^[0-9-]*[0-9][0-9-]*$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")


def iso(moment: dt.datetime | float) -> str:
    """ISO 8601 in UTC with a Z, to the millisecond."""
    if not isinstance(moment, dt.datetime):
        moment = dt.datetime.fromtimestamp(moment, UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- Clock --------------------------------------------------------------------------------------


class SandboxClock:
    """Sandbox time. Manual: moves only by `advance`. Real: runs `speed` times wall time.

    `advance` works in both modes, so a demo can also jump to a campaign's start date.
    """

    def __init__(
        self,
        start: dt.datetime | None = None,
        *,
        manual: bool = True,
        speed: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        if speed <= 0:
            raise ValueError("speed must be above 0")
        if start is None:
            start = dt.datetime.now(UTC).replace(microsecond=0)
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware (UTC)")
        self._start = start.astimezone(UTC)
        self._offset = 0.0
        self.manual = manual
        self.speed = speed
        self._monotonic = monotonic
        self._origin = monotonic()

    @classmethod
    def manual_at(cls, start: dt.datetime | None = None) -> SandboxClock:
        return cls(start, manual=True)

    @classmethod
    def real(
        cls,
        *,
        speed: float = 1.0,
        start: dt.datetime | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> SandboxClock:
        return cls(start, manual=False, speed=speed, monotonic=monotonic)

    def now(self) -> dt.datetime:
        elapsed = self._offset
        if not self.manual:
            elapsed += (self._monotonic() - self._origin) * self.speed
        return self._start + dt.timedelta(seconds=elapsed)

    def today(self) -> dt.date:
        return self.now().date()

    def advance(self, seconds: float) -> dt.datetime:
        if seconds < 0:
            raise ValueError("the sandbox clock never goes back")
        self._offset += seconds
        return self.now()


@dataclass(frozen=True)
class SandboxTimings:
    """Phase durations in sandbox seconds (see the module docstring for the timeline).

    The defaults are the quick rehearsal: a campaign runs in seconds, whatever its time windows.
    `thingspace()` follows ThingSpace's "About Campaigns" page instead (see there).
    """

    queue: float = 2.0
    pre_schedule: float = 2.0
    schedule: float = 2.0
    device_spread: float = 10.0
    upgrade: float = 4.0
    end_grace: float = 2.0
    # ThingSpace's calendar, off in the quick rehearsal:
    windows: bool = False  # devices upgrade only inside campaignTimeWindowList (UTC hours)
    retry_hour: int | None = None  # an unresponsive LWM2M device is retried at this UTC hour…
    retry_days: int = 3  # …on up to this many following days
    http_checkin: float | None = None  # HTTP devices are not pushed: they check in this often

    @classmethod
    def thingspace(cls) -> SandboxTimings:
        """ThingSpace's pace: an on-demand LWM2M/OMA campaign is scheduled about 1 h 45 after
        it is accepted (its page: "within about two hours", after pre-validation), a future one
        at 00:00 UTC of its start date; devices are reached over half an hour, only inside the
        time windows; an unresponsive LWM2M device is retried around 04:00 UTC on each of the
        next three days; HTTP devices upgrade at a check-in (every 4 hours) inside a window."""
        return cls(
            queue=60.0, pre_schedule=3540.0, schedule=2700.0, device_spread=1800.0,
            upgrade=600.0, end_grace=300.0,
            windows=True, retry_hour=4, retry_days=3, http_checkin=4 * 3600.0,
        )


# --- Errors and events ---------------------------------------------------------------------------


class SandboxError(Exception):
    """An answer ThingSpace would give instead of success: HTTP status, errorCode, errorMessage."""

    def __init__(self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None):
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        super().__init__(f"{status} {code}: {message}")

    def body(self) -> dict[str, str]:
        return {"errorCode": self.code, "errorMessage": self.message}


def invalid(message: str, code: str = "INVALID_PARAMETER") -> SandboxError:
    return SandboxError(400, code, message)


def unauthorized(message: str) -> SandboxError:
    return SandboxError(401, "UNAUTHORIZED", message)


@dataclass(frozen=True, slots=True)
class CampaignChange:
    account: str
    campaign_id: str
    status: str
    at: dt.datetime

    def payload(self) -> dict[str, str]:
        return {
            "accountName": self.account,
            "campaignId": self.campaign_id,
            "status": self.status,
            "type": "CampaignStatus",
            "timestamp": iso(self.at),
        }


@dataclass(frozen=True, slots=True)
class DeviceChange:
    account: str
    campaign_id: str
    device_id: str
    status: str
    reason: str
    at: dt.datetime

    def payload(self) -> dict[str, str]:
        # No reason, no field: as in every answer, an empty string is never sent for one.
        reason = {"reason": self.reason} if self.reason else {}
        return {
            "accountName": self.account,
            "campaignId": self.campaign_id,
            "deviceId": self.device_id,
            "status": self.status,
            **reason,
            "type": "DeviceStatus",
            "timestamp": iso(self.at),
        }


SandboxEvent = CampaignChange | DeviceChange


# --- Credentials ----------------------------------------------------------------------------------


class AuthRegistry:
    """OAuth tokens and M2M sessions, timed by sandbox time.

    `clients`/`users` None: any non-empty key/secret or username/password is accepted; given,
    only those. Five failed logins in a row lock a user, as ThingSpace does, so a client that
    retries logins in a loop is caught in rehearsal.
    """

    MAX_FAILED_LOGINS = 5

    def __init__(
        self,
        *,
        clients: Mapping[str, str] | None = None,
        users: Mapping[str, str] | None = None,
        token_lifetime: float = 3600.0,
        session_idle_timeout: float | None = 1200.0,
    ):
        self.clients = dict(clients) if clients is not None else None
        self.users = dict(users) if users is not None else None
        self.token_lifetime = token_lifetime
        self.session_idle_timeout = session_idle_timeout
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (client id, expires at)
        self._token_of_client: dict[str, str] = {}
        self._sessions: dict[str, tuple[str, float]] = {}  # session -> (user, last used)
        self._failed_logins: dict[str, int] = {}
        self.logins = 0  # successful logins, so tests can see a client re-login once

    def issue_token(self, client_id: str, client_secret: str, now: dt.datetime) -> tuple[str, int]:
        if not client_id or not client_secret:
            raise ValueError("empty client credentials")
        if self.clients is not None and self.clients.get(client_id) != client_secret:
            raise ValueError("unknown client credentials")
        t = now.timestamp()
        # ThingSpace hands back the same token when asked again inside its lifetime.
        current = self._token_of_client.get(client_id)
        if current and current in self._tokens and self._tokens[current][1] > t:
            return current, int(self._tokens[current][1] - t)
        token = secrets.token_hex(16)
        self._tokens[token] = (client_id, t + self.token_lifetime)
        self._token_of_client[client_id] = token
        return token, int(self.token_lifetime)

    def token_valid(self, token: str, now: dt.datetime) -> bool:
        entry = self._tokens.get(token)
        return entry is not None and entry[1] > now.timestamp()

    def expire_token(self, token: str | None = None) -> None:
        """Expire one token, or all: the next call carrying it gets a 401."""
        for key in [token] if token is not None else list(self._tokens):
            if key in self._tokens:
                self._tokens[key] = (self._tokens[key][0], float("-inf"))

    def login(self, username: str, password: str, now: dt.datetime) -> str:
        if self._failed_logins.get(username, 0) >= self.MAX_FAILED_LOGINS:
            raise unauthorized(
                f"User {username} is locked after {self.MAX_FAILED_LOGINS} failed logins in a row"
            )
        known = self.users is None or self.users.get(username) == password
        if not username or not password or not known:
            if username:
                self._failed_logins[username] = self._failed_logins.get(username, 0) + 1
            raise unauthorized("Invalid username or password")
        self._failed_logins.pop(username, None)
        session = secrets.token_hex(16)
        self._sessions[session] = (username, now.timestamp())
        self.logins += 1
        return session

    def session_valid(self, session: str, now: dt.datetime) -> bool:
        """True, and the idle timer restarts, when `session` is current."""
        entry = self._sessions.get(session)
        if entry is None:
            return False
        t = now.timestamp()
        if self.session_idle_timeout is not None and t - entry[1] > self.session_idle_timeout:
            return False
        self._sessions[session] = (entry[0], t)
        return True

    def expire_session(self, session: str | None = None) -> None:
        for key in [session] if session is not None else list(self._sessions):
            if key in self._sessions:
                self._sessions[key] = (self._sessions[key][0], float("-inf"))

    def logout(self, session: str) -> bool:
        return self._sessions.pop(session, None) is not None

    @property
    def sessions(self) -> list[str]:
        return list(self._sessions)

    @property
    def tokens(self) -> list[str]:
        return list(self._tokens)


# --- Campaign state -----------------------------------------------------------------------------


@dataclass(slots=True)
class DeviceState:
    device_id: str
    status: str
    reason: str
    updated: float
    recent_attempt: float | None = None
    next_attempt: float | None = None

    def report(self) -> dict[str, str]:
        # A field with no value is left out, as Verizon's SDK models it (optional, a datetime
        # when present): an empty string would not parse as a time.
        row = {"deviceId": self.device_id, "status": self.status}
        if self.reason:
            row["resultReason"] = self.reason
        row["updatedTime"] = iso(self.updated)
        if self.recent_attempt is not None:
            row["recentAttemptTime"] = iso(self.recent_attempt)
        if self.next_attempt is not None:
            row["nextAttemptTime"] = iso(self.next_attempt)
        return row


@dataclass
class Campaign:
    id: str
    account: str
    name: str
    entry: FirmwareEntry
    start_date: str
    end_date: str
    windows: list[dict[str, int]]
    auto_assign_license: bool
    auto_add_devices: bool
    created: dt.datetime
    devices: dict[str, DeviceState]
    order: list[str]  # device ids, ascending, for paging
    status: str = PENDING
    history: list[tuple[str, dt.datetime]] = field(default_factory=list)
    # Bumped when dates or devices change: changes planned under an older generation lapse.
    generation: int = 0

    def answer(self) -> dict[str, Any]:
        """The schedule answer's shape, exactly the reference page's fields (also the shape of
        a campaign in the by-status report, `V3CampaignMetaInfo` in Verizon's SDK)."""
        named = {"campaignName": self.name} if self.name else {}
        return {
            "id": self.id,
            "accountName": self.account,
            **named,
            "firmwareName": self.entry.firmware_name,
            "protocol": self.entry.protocol,
            "firmwareFrom": self.entry.firmware_from,
            "firmwareTo": self.entry.firmware_to,
            "make": self.entry.make,
            "model": self.entry.model,
            "status": self.status,
            "startDate": self.start_date,
            "endDate": self.end_date,
            "campaignTimeWindowList": [dict(w) for w in self.windows],
        }

    def info(self) -> dict[str, Any]:
        """`GET /campaigns/{acc}/{id}`: the schedule answer's fields plus the two flags."""
        return {
            **self.answer(),
            "autoAssignLicenseFlag": self.auto_assign_license,
            "autoAddDevicesFlag": self.auto_add_devices,
        }

    def counts(self) -> dict[str, int]:
        result: dict[str, int] = {}
        for device in self.devices.values():
            result[device.status] = result.get(device.status, 0) + 1
        return result


def check_account(account: str) -> str:
    if not _ACCOUNT.match(account):
        raise invalid(
            f"Invalid account name '{account}': expected digits and dashes such as 0642233522-00001"
        )
    return account


@dataclass(frozen=True)
class FirmwareFault:
    """One firmware failing on a share of one model's devices (a bad build, for rehearsing a
    halted rollout): devices whose `lot` is below `share` end ``UpgradeFailed`` with `reason`."""

    firmware_name: str
    model: str
    share: float
    reason: str

    def hits(self, campaign: Campaign, fact: DeviceFacts) -> bool:
        return (
            campaign.entry.firmware_name == self.firmware_name
            and fact.model == self.model
            and fact.lot < self.share
        )


@dataclass
class Changes:
    """What changed since the last save, by key (see `bot.standins.thingspace.state`)."""

    campaigns: set[str] = field(default_factory=set)
    devices: set[tuple[str, str]] = field(default_factory=set)  # (campaign id, IMEI)
    callbacks: set[str] = field(default_factory=set)  # accounts
    licences: set[tuple[str, str]] = field(default_factory=set)  # (account, IMEI)
    firmware: set[tuple[str, str]] = field(default_factory=set)
    seen: set[tuple[str, str]] = field(default_factory=set)
    licence_accounts: set[str] = field(default_factory=set)
    faults: bool = False  # the firmware faults changed


# A pending change: (time, sequence, campaign id, generation, device id or None, status,
# reason). The sequence keeps changes due at the same moment in the order they were planned.
# The last field is the device's next attempt after this change, if one is planned.
_Planned = tuple[float, int, str, int, str | None, str, str, float | None]


class Simulator:
    """ThingSpace's FOTA state for every account, in memory, driven by sandbox time."""

    def __init__(
        self,
        *,
        catalogue: Sequence[FirmwareEntry] = DEFAULT_CATALOGUE,
        timings: SandboxTimings | None = None,
        mrc_only: bool = False,
        license_count: int = 100_000,
        report_page_size: int = 1000,
        campaign_page_size: int = 100,
        created: dt.datetime | None = None,
    ):
        if not catalogue:
            raise ValueError("the firmware catalogue must not be empty")
        self.catalogue = tuple(catalogue)
        self.timings = timings or SandboxTimings()
        self.mrc_only = mrc_only
        self.license_count = license_count
        self.report_page_size = report_page_size
        self.campaign_page_size = campaign_page_size
        self.campaigns: dict[str, Campaign] = {}
        self._callbacks: dict[str, str] = {}
        self._planned: list[_Planned] = []
        self._sequence = 0
        self._outbox: list[SandboxEvent] = []
        # The version a device runs after a successful sandbox upgrade, per (account, IMEI).
        self._upgraded: dict[tuple[str, str], str] = {}
        # Licences in use per account: IMEI -> when assigned (by a licence call, a campaign
        # with autoAssignLicenseFlag, or a campaign of an already licensed device).
        self._licences: dict[str, dict[str, float]] = {}
        # Devices licensed by the IMEI rule whose licence was removed, per account.
        self._licence_removed: dict[str, set[str]] = {}
        self._licence_updated: dict[str, dt.datetime] = {}
        # The devices each account has been told of, for GET /devices/{acc}: the whole
        # fleet an IMEI rule allows cannot be listed.
        self._seen: dict[str, set[str]] = {}
        self.changes = Changes()
        self._created = created or dt.datetime.now(UTC)
        self.firmware_faults: list[FirmwareFault] = []

    # -- persistence hooks (bot.standins.thingspace.state) ------------------------------------------------------

    def reset(self) -> None:
        """Forget every account's state (before loading a saved one)."""
        self.campaigns.clear()
        self._callbacks.clear()
        self._planned.clear()
        self._upgraded.clear()
        self._licences.clear()
        self._licence_removed.clear()
        self._licence_updated.clear()
        self._seen.clear()
        self.changes = Changes()

    def replan_all(self) -> None:
        """Plan what is still to come for every running campaign (after loading)."""
        for campaign in self.campaigns.values():
            if campaign.status not in CAMPAIGN_TERMINAL:
                self._plan(campaign)

    def take_changes(self) -> Changes:
        changes, self.changes = self.changes, Changes()
        return changes

    def clean(self) -> None:
        self.changes = Changes()

    def everything(self) -> Changes:
        """Every key there is, as if all had changed (the first save of a sandbox's state)."""
        self.changes = Changes()
        return Changes(
            campaigns=set(self.campaigns),
            devices={(c.id, i) for c in self.campaigns.values() for i in c.devices},
            callbacks=set(self._callbacks),
            licences={(a, i) for a, d in self._licences.items() for i in d}
            | {(a, i) for a, d in self._licence_removed.items() for i in d},
            firmware=set(self._upgraded),
            seen={(a, i) for a, d in self._seen.items() for i in d},
            licence_accounts=set(self._licence_updated),
            faults=True,
        )

    def _see(self, account: str, imei: str) -> None:
        seen = self._seen.setdefault(account, set())
        if imei not in seen:
            seen.add(imei)
            self.changes.seen.add((account, imei))

    # -- time ---------------------------------------------------------------------------------

    def advance(self, now: dt.datetime) -> None:
        """Apply every change due at or before `now`, in time order, into the outbox."""
        t = now.timestamp()
        planned = self._planned
        while planned and planned[0][0] <= t:
            at, _, campaign_id, generation, device_id, status, reason, next_at = heapq.heappop(planned)
            campaign = self.campaigns[campaign_id]
            if campaign.status == CANCELLED or generation != campaign.generation:
                continue  # cancelled, or planned before the dates or devices changed
            if device_id is not None and device_id not in campaign.devices:
                continue  # removed from the campaign
            moment = dt.datetime.fromtimestamp(at, UTC)
            if device_id is None:
                campaign.status = status
                campaign.history.append((status, moment))
                self.changes.campaigns.add(campaign_id)
                self._outbox.append(CampaignChange(campaign.account, campaign_id, status, moment))
                continue
            self.changes.devices.add((campaign_id, device_id))
            device = campaign.devices[device_id]
            device.status = status
            device.reason = reason
            device.updated = at
            if status == UPGRADE_SCHEDULED or status == REQUEST_FAILED:
                device.recent_attempt = at
            device.next_attempt = next_at
            if status == UPGRADE_SUCCESS:
                # The version changes; make and model never do.
                self._upgraded[(campaign.account, device_id)] = campaign.entry.firmware_to
                self.changes.firmware.add((campaign.account, device_id))
            self._outbox.append(
                DeviceChange(campaign.account, campaign_id, device_id, status, reason, moment)
            )

    def drain(self) -> list[SandboxEvent]:
        """The changes applied since the last drain, oldest first."""
        events, self._outbox = self._outbox, []
        return events

    def next_due(self) -> dt.datetime | None:
        """When the next planned change is due (it may belong to a cancelled campaign)."""
        if not self._planned:
            return None
        return dt.datetime.fromtimestamp(self._planned[0][0], UTC)

    # -- schedule ------------------------------------------------------------------------------

    def schedule(self, account: str, body: object, now: dt.datetime) -> Campaign:
        """Validate a schedule request by the reference page's rules and accept it."""
        self.advance(now)
        check_account(account)
        request = _validate_schedule(body, now.date())
        entry = self._firmware_entry(request)
        devices: list[str] = sorted(set(request["deviceList"]))
        facts = {imei: device_facts(imei, self.catalogue) for imei in devices}
        auto_assign = request["autoAssignLicenseFlag"]
        if self.mrc_only and not auto_assign:
            unlicensed = [imei for imei in devices if facts[imei].in_account
                          and not self.licensed(account, facts[imei])]
            if unlicensed:
                shown = ", ".join(unlicensed[:5]) + (" …" if len(unlicensed) > 5 else "")
                raise invalid(
                    f"{len(unlicensed)} device(s) have no license assigned; this account has only an "
                    f"MRC subscription, so assign licenses first or set autoAssignLicenseFlag: {shown}",
                    code="LICENSE_NOT_ASSIGNED",
                )
        t0 = now.timestamp()
        campaign = Campaign(
            id=str(uuid.uuid4()),
            account=account,
            name=request.get("campaignName") or "",
            entry=entry,
            start_date=request["startDate"],
            end_date=request["endDate"],
            windows=[{"startTime": w["startTime"], "endTime": w["endTime"]}
                     for w in request.get("campaignTimeWindowList") or []],
            auto_assign_license=auto_assign,
            auto_add_devices=request["autoAddDevicesFlag"],
            created=now,
            devices={imei: DeviceState(imei, UPGRADE_PENDING, "", t0) for imei in devices},
            order=devices,
        )
        campaign.history.append((PENDING, now))
        self.campaigns[campaign.id] = campaign
        self._use_licences(account, [facts[i] for i in devices], auto_assign, now)
        self._plan(campaign, facts)
        return campaign

    def licensed(self, account: str, fact: DeviceFacts) -> bool:
        if fact.imei in self._licences.get(account, ()):
            return True
        return fact.license_assigned and fact.imei not in self._licence_removed.get(account, ())

    def _use_licences(
        self, account: str, facts: Sequence[DeviceFacts], auto_assign: bool, now: dt.datetime
    ) -> None:
        """Devices going into a campaign: licensed ones count as used, the rest get one when
        the request asked for automatic assignment."""
        licences = self._licences.setdefault(account, {})
        t = now.timestamp()
        for fact in facts:
            if fact.in_account:
                self._see(account, fact.imei)
                if fact.imei not in licences and (auto_assign or self.licensed(account, fact)):
                    licences[fact.imei] = t
                    self.changes.licences.add((account, fact.imei))
        self._licence_updated[account] = now
        self.changes.licence_accounts.add(account)

    def _firmware_entry(self, request: Mapping[str, Any]) -> FirmwareEntry:
        name, protocol = request["firmwareName"], request["protocol"]
        named = [e for e in self.catalogue if e.firmware_name == name and e.protocol == protocol]
        if not named:
            raise invalid(f"Firmware '{name}' is not available for protocol {protocol}")
        fitting = [e for e in named if e.firmware_from == request["firmwareFrom"]]
        if not fitting:
            expected = ", ".join(sorted({e.firmware_from for e in named}))
            raise invalid(
                f"firmwareFrom '{request['firmwareFrom']}' does not match firmware '{name}' "
                f"(it upgrades from {expected})"
            )
        for entry in fitting:
            if entry.firmware_to == request["firmwareTo"]:
                return entry
        expected = ", ".join(sorted({e.firmware_to for e in fitting}))
        raise invalid(
            f"firmwareTo '{request['firmwareTo']}' does not match firmware '{name}' "
            f"(it upgrades to {expected})"
        )

    def _plan(self, campaign: Campaign, facts: Mapping[str, DeviceFacts] | None = None) -> None:
        """Lay out every status change of the campaign still to come (module docstring).

        Planned from the moment the campaign was accepted, so planning again after its dates
        or devices changed (or after a restart) gives the same times for what did not change;
        steps the campaign or a device has already taken are left out.
        """
        timing = self.timings
        t0 = campaign.created.timestamp()
        reached = {status for status, _ in campaign.history}
        start = dt.datetime.combine(dt.date.fromisoformat(campaign.start_date), dt.time(), UTC)
        end_date = dt.date.fromisoformat(campaign.end_date) + dt.timedelta(days=1)
        cutoff = dt.datetime.combine(end_date, dt.time(), UTC).timestamp()
        queued = t0 + timing.queue
        pre_scheduled = queued + timing.pre_schedule
        scheduled = max(pre_scheduled + timing.schedule, start.timestamp())
        plan: list[tuple[float, str | None, str, str, float | None]] = [
            (at, None, status, "", None)
            for at, status in ((min(queued, cutoff), QUEUED),
                               (min(pre_scheduled, cutoff), PRE_SCHEDULED),
                               (min(scheduled, cutoff), SCHEDULED))
            if status not in reached
        ]
        windows = [(w["startTime"], w["endTime"]) for w in campaign.windows] if timing.windows else []
        last = scheduled
        for imei in campaign.order:
            device = campaign.devices[imei]
            if device.status in DEVICE_FINAL:
                last = max(last, device.updated)
                continue
            fact = facts[imei] if facts is not None else device_facts(imei, self.catalogue)
            if not fact.fota_eligible:
                begin = scheduled + fact.spread * timing.device_spread
                reason = NOT_IN_ACCOUNT_REASON if not fact.in_account else NOT_ELIGIBLE_REASON
                device.next_attempt = min(begin, cutoff)
                plan.append((min(begin, cutoff), imei, REQUEST_FAILED, reason, None))
                last = max(last, min(begin, cutoff))
                continue
            steps = self._device_steps(campaign, fact, scheduled, windows, cutoff)
            # A step at or before the device's last change was taken already (a plan made
            # again after a change of dates or devices, or after a restart).
            steps = [step for step in steps if step[0] > device.updated]
            if device.status == UPGRADE_PENDING and steps:
                device.next_attempt = steps[0][0] if steps[0][1] == UPGRADE_SCHEDULED else None
            plan.extend((at, imei, status, reason, next_at) for at, status, reason, next_at in steps)
            last = max([last, *(step[0] for step in steps)])
        if ENDED not in reached:
            plan.append((min(last + timing.end_grace, cutoff), None, ENDED, "", None))
        self.changes.campaigns.add(campaign.id)
        self.changes.devices.update(
            (campaign.id, imei) for imei in campaign.order
            if campaign.devices[imei].status not in DEVICE_FINAL
        )
        generation = campaign.generation
        for at, device_id, status, reason, next_at in plan:
            self._sequence += 1
            self._planned.append(
                (at, self._sequence, campaign.id, generation, device_id, status, reason, next_at)
            )
        # One heapify for the whole campaign: 100,000 devices are planned in well under a second.
        heapq.heapify(self._planned)

    def _device_steps(
        self,
        campaign: Campaign,
        fact: DeviceFacts,
        scheduled: float,
        windows: Sequence[tuple[int, int]],
        cutoff: float,
    ) -> list[tuple[float, str, str, float | None]]:
        """One eligible device's changes: (time, status, reason, next attempt), in order."""
        timing = self.timings
        took = (0.25 + 0.75 * fact.pace) * timing.upgrade
        if fact.protocol == "HTTP" and timing.http_checkin:
            first = _check_in(scheduled, fact, timing.http_checkin, windows, cutoff)
        else:
            first = _in_window(scheduled + fact.spread * timing.device_spread, fact, windows, timing)
        attempts = [first]
        unresponsive = fact.kind is DeviceKind.WILL_FAIL and fact.failure_reason == NO_RESPONSE_REASON
        if unresponsive and fact.protocol == "LWM2M" and timing.retry_hour is not None:
            day = dt.datetime.fromtimestamp(first, UTC).date()
            for later in range(1, timing.retry_days + 1):
                retry = dt.datetime.combine(day + dt.timedelta(days=later), dt.time(timing.retry_hour), UTC)
                attempts.append(retry.timestamp() + fact.spread * timing.device_spread)
        attempts = [at for at in attempts if at < cutoff]
        if not attempts:
            return [(cutoff, UPGRADE_FAILED, END_DATE_REACHED_REASON, None)]
        steps: list[tuple[float, str, str, float | None]] = []
        for index, at in enumerate(attempts[:-1]):
            # Not answered: ThingSpace says when it tries again.
            steps.append((at, UPGRADE_SCHEDULED, "", None))
            steps.append((min(at + took, attempts[index + 1]), UPGRADE_SCHEDULED, NO_RESPONSE_REASON,
                          attempts[index + 1]))
        begin = attempts[-1]
        finish = begin + took
        steps.append((begin, UPGRADE_SCHEDULED, "", None))
        refusal = self._refusal(campaign, fact)
        fault = next((f for f in self.firmware_faults if f.hits(campaign, fact)), None)
        if refusal is None and fault is not None:
            refusal = fault.reason
        if finish > cutoff:
            steps.append((cutoff, UPGRADE_FAILED, END_DATE_REACHED_REASON, None))
        elif refusal is not None:
            steps.append((finish, UPGRADE_FAILED, refusal, None))
        elif fact.kind is DeviceKind.WILL_FAIL:
            steps.append((finish, UPGRADE_FAILED, fact.failure_reason or "", None))
        else:
            steps.append((finish, UPGRADE_SUCCESS, "", None))
        return steps

    def firmware_of(self, account: str, fact: DeviceFacts) -> str:
        """The version the device runs now: its first one, or what a sandbox upgrade left."""
        return self._upgraded.get((account, fact.imei), fact.firmware)

    def _refusal(self, campaign: Campaign, fact: DeviceFacts) -> str | None:
        """Why the device rejects the campaign's firmware, or None when it can take it.

        Real devices refuse an image built for another make or model, and a delta image only
        applies to the version it was built from. A device already on `firmwareTo` has nothing
        to do and reports success.
        """
        entry = campaign.entry
        if (fact.make, fact.model) != (entry.make, entry.model):
            return (
                f"Firmware {entry.firmware_name} is for {entry.make} {entry.model}; "
                f"the device is a {fact.make} {fact.model}"
            )
        current = self.firmware_of(campaign.account, fact)
        if current not in (entry.firmware_from, entry.firmware_to):
            return (
                f"The device runs {current}; firmware {entry.firmware_name} "
                f"upgrades from {entry.firmware_from}"
            )
        return None

    # -- reads and cancel ----------------------------------------------------------------------

    def campaign(self, account: str, campaign_id: str, now: dt.datetime) -> Campaign:
        self.advance(now)
        check_account(account)
        campaign = self.campaigns.get(campaign_id)
        if campaign is None or campaign.account != account:
            raise SandboxError(
                404, "CAMPAIGN_NOT_FOUND", f"Campaign {campaign_id} not found in account {account}"
            )
        return campaign

    def cancel(self, account: str, campaign_id: str, now: dt.datetime) -> None:
        campaign = self.campaign(account, campaign_id, now)
        if campaign.status == CANCELLED:
            return
        if campaign.status not in CANCELLABLE:
            raise invalid(
                f"Campaign {campaign_id} has already started (status {campaign.status}); "
                "a campaign can only be cancelled before it starts",
                code="CAMPAIGN_ALREADY_STARTED",
            )
        campaign.status = CANCELLED
        campaign.history.append((CANCELLED, now))
        self.changes.campaigns.add(campaign_id)
        self._outbox.append(CampaignChange(account, campaign_id, CANCELLED, now))
        t = now.timestamp()
        for imei in campaign.order:
            device = campaign.devices[imei]
            if device.status in DEVICE_FINAL:
                continue
            device.status, device.reason, device.updated = DEVICE_CANCELLED, CANCELLED_REASON, t
            device.next_attempt = None
            self.changes.devices.add((campaign_id, imei))
            self._outbox.append(
                DeviceChange(account, campaign_id, imei, DEVICE_CANCELLED, CANCELLED_REASON, now)
            )

    def device_report(
        self, account: str, campaign_id: str, last_seen: str | None, now: dt.datetime
    ) -> dict[str, Any]:
        campaign = self.campaign(account, campaign_id, now)
        last_seen = last_seen or "0"
        if not (last_seen.isascii() and last_seen.isdigit() and len(last_seen) <= 15):
            raise invalid(f"Invalid lastSeenDeviceId '{last_seen}': expected 0 or a device IMEI")
        # Equal-length digit strings sort as numbers do.
        first = bisect_right(campaign.order, last_seen.zfill(15))
        page = campaign.order[first:first + self.report_page_size]
        more = first + len(page) < len(campaign.order)
        return {
            "totalDevice": len(campaign.order),
            "hasMoreData": more,
            "lastSeenDeviceId": page[-1] if page else last_seen,
            "maxPageSize": self.report_page_size,
            "deviceList": [campaign.devices[imei].report() for imei in page],
        }

    def campaigns_by_status(
        self, account: str, status: str | None, last_seen: str | None, now: dt.datetime
    ) -> dict[str, Any]:
        """Campaigns of `account` in `status` (None or empty: any), by id, paged."""
        self.advance(now)
        check_account(account)
        chosen = sorted(
            (c for c in self.campaigns.values()
             if c.account == account and (not status or c.status == status)),
            key=lambda c: c.id,
        )
        if last_seen and last_seen != "0":
            chosen = [c for c in chosen if c.id > last_seen]
        page = chosen[: self.campaign_page_size]
        answer: dict[str, Any] = {"hasMoreData": len(chosen) > len(page)}
        if page or last_seen:
            answer["lastSeenCampaignId"] = page[-1].id if page else last_seen
        # `V3CampaignMetaInfo` in Verizon's SDK: the schedule answer's fields, no flags.
        answer["campaignList"] = [c.answer() for c in page]
        return answer

    # -- firmware, devices, subscription -------------------------------------------------------

    def firmware(self, account: str, protocol: str | None) -> list[dict[str, str]]:
        check_account(account)
        protocol = protocol or "LWM2M"  # the parameter is documented with LWM2M as its example
        if protocol == "all":  # the SDK's firmware-list enum: every protocol at once
            return [e.as_thingspace() for e in self.catalogue]
        wanted = _protocol(protocol, also="all")
        return [e.as_thingspace() for e in self.catalogue if e.protocol == wanted]

    def device_info(self, account: str, body: object, now: dt.datetime) -> dict[str, Any]:
        """`POST /devices/{acc}`: devices not in the account are left out (about 2 %)."""
        self.advance(now)
        check_account(account)
        if not isinstance(body, dict) or not isinstance(body.get("deviceList"), list):
            raise invalid("deviceList is required: a list of device IMEIs")
        device_ids = body["deviceList"]
        if not device_ids:
            raise invalid("deviceList must contain at least one device")
        for device_id in device_ids:
            if not is_imei(device_id):
                raise invalid(f"Invalid device id format: {device_id}")
        listed: list[dict[str, Any]] = []
        for imei in dict.fromkeys(device_ids):
            fact = device_facts(imei, self.catalogue)
            if not fact.in_account:
                continue
            self._see(account, imei)
            listed.append(self._device_row(account, fact))
        return {"accountName": account, "deviceCount": len(listed), "deviceList": listed}

    def _device_row(self, account: str, fact: DeviceFacts) -> dict[str, Any]:
        return {
            "deviceId": fact.imei,
            "mdn": fact.mdn,
            "make": fact.make,
            "model": fact.model,
            "firmware": self.firmware_of(account, fact),
            "fotaEligible": fact.fota_eligible,
            "licenseAssigned": self.licensed(account, fact),
            "status": "Active",
            "protocol": fact.protocol,
        }

    def account_devices(
        self, account: str, last_seen: str | None, protocol: str | None, now: dt.datetime
    ) -> dict[str, Any]:
        """`GET /devices/{acc}`: the account's devices the sandbox has been told of (scheduled,
        asked about, or given a licence), of one protocol, paged by IMEI like the report."""
        self.advance(now)
        check_account(account)
        wanted = _protocol(protocol or "LWM2M")  # LWM2M is the SDK's default for this call
        last_seen = _last_seen_device(last_seen)
        devices = sorted(
            i for i in self._seen.get(account, ())
            if i > last_seen and device_facts(i, self.catalogue).protocol == wanted
        )
        page = devices[: self.report_page_size]
        answer: dict[str, Any] = {
            "accountName": account,
            "hasMoreData": len(devices) > len(page),
            "maxPageSize": self.report_page_size,
        }
        if page:
            answer["lastSeenDeviceId"] = page[-1]
        # `V3AccountDevice` requires a software list; sandbox devices run firmware only.
        answer["deviceList"] = [
            {**self._device_row(account, device_facts(i, self.catalogue)), "softwareList": []}
            for i in page
        ]
        return answer

    def subscription(self, account: str) -> dict[str, Any]:
        check_account(account)
        return {
            "accountName": account,
            "purchaseType": "TS-HFOTA-MRC" if self.mrc_only else "TS-HFOTA-EVNT,TS-HFOTA-MRC",
            "licenseCount": self.license_count,
            "licenseUsedCount": len(self._licences.get(account, ())),
            "updateTime": iso(self._licence_updated.get(account, self._created)),
        }

    # -- callback listeners --------------------------------------------------------------------

    def callback_url(self, account: str) -> str | None:
        return self._callbacks.get(account)

    def get_callback(self, account: str) -> dict[str, str]:
        check_account(account)
        url = self._callbacks.get(account)
        if url is None:
            raise SandboxError(404, "CALLBACK_NOT_FOUND", f"No callback listener registered for {account}")
        return {"url": url}

    def set_callback(self, account: str, body: object, *, replace: bool = True) -> dict[str, str]:
        """POST (`replace`): register the account's one listener, replacing one already there,
        as ThingSpace's pages say. PUT: update the listener, which must exist. Plain http is
        allowed in the sandbox."""
        check_account(account)
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not _URL.match(url):
            raise invalid("url is required: an absolute http:// or https:// URL")
        if not replace and account not in self._callbacks:
            raise SandboxError(
                404, "CALLBACK_NOT_FOUND",
                f"No callback listener registered for {account}: register one with POST",
            )
        self._callbacks[account] = url
        self.changes.callbacks.add(account)
        return {"url": url}

    def delete_callback(self, account: str) -> None:
        check_account(account)
        if self._callbacks.pop(account, None) is None:
            raise SandboxError(404, "CALLBACK_NOT_FOUND", f"No callback listener registered for {account}")
        self.changes.callbacks.add(account)

    # -- changes before the start ----------------------------------------------------------------

    def _before_start(self, account: str, campaign_id: str, now: dt.datetime, what: str) -> Campaign:
        campaign = self.campaign(account, campaign_id, now)
        if campaign.status not in CANCELLABLE:
            raise invalid(
                f"Campaign {campaign_id} has already started (status {campaign.status}); "
                f"{what} only before it starts",
                code="CAMPAIGN_ALREADY_STARTED",
            )
        return campaign

    def change_dates(self, account: str, campaign_id: str, body: object, now: dt.datetime) -> Campaign:
        """`PUT /campaigns/firmware/{acc}/{id}/dates`: new dates and time windows."""
        if not isinstance(body, dict):
            raise invalid("Request body must be a JSON object")
        for name in ("startDate", "endDate"):
            if not isinstance(body.get(name), str) or not body[name]:
                raise invalid(f"{name} is required")
        _validate_dates(body, now.date())
        windows = _validate_windows(body.get("campaignTimeWindowList"))
        campaign = self._before_start(account, campaign_id, now, "its dates can be changed")
        campaign.start_date, campaign.end_date = body["startDate"], body["endDate"]
        if windows is not None:
            campaign.windows = windows
        campaign.generation += 1
        self._plan(campaign)
        return campaign

    def change_devices(self, account: str, campaign_id: str, body: object, now: dt.datetime) -> dict[str, Any]:
        """`PUT /campaigns/firmware/{acc}/{id}`: ``{"Type": "append" | "remove", "deviceList"}``."""
        if not isinstance(body, dict):
            raise invalid("Request body must be a JSON object")
        kind = body.get("Type")
        if kind not in ("append", "remove"):
            raise invalid(f"Type is required: append or remove, not {kind!r}")
        device_ids = _device_list(body)
        campaign = self._before_start(account, campaign_id, now, "devices can be added or removed")
        t = now.timestamp()
        results: list[dict[str, str]] = []
        wanted = list(dict.fromkeys(device_ids))
        if kind == "remove":
            if set(campaign.devices) <= set(wanted):
                raise invalid(
                    f"Removing every device would leave campaign {campaign_id} empty; cancel it instead"
                )
            for imei in wanted:
                self.changes.devices.add((campaign.id, imei))
                if campaign.devices.pop(imei, None) is None:
                    results.append({"deviceId": imei, "status": "Failure", "Reason": NOT_IN_CAMPAIGN_REASON})
                else:
                    results.append({"deviceId": imei, "status": "Success"})
            campaign.order = [i for i in campaign.order if i in campaign.devices]
        else:
            added: list[DeviceFacts] = []
            for imei in wanted:
                fact = device_facts(imei, self.catalogue)
                if imei in campaign.devices:
                    results.append({"deviceId": imei, "status": "Failure", "Reason": ALREADY_IN_CAMPAIGN_REASON})
                elif (self.mrc_only and fact.in_account and not campaign.auto_assign_license
                      and not self.licensed(account, fact)):
                    results.append({"deviceId": imei, "status": "Failure", "Reason": NO_LICENCE_REASON})
                else:
                    campaign.devices[imei] = DeviceState(imei, UPGRADE_PENDING, "", t)
                    added.append(fact)
                    results.append({"deviceId": imei, "status": "Success"})
            campaign.order = sorted(campaign.devices)
            self._use_licences(account, added, campaign.auto_assign_license, now)
        campaign.generation += 1
        self._plan(campaign)
        return {"accountName": account, "campaignId": campaign_id, "deviceList": results}

    # -- licences ----------------------------------------------------------------------------------

    def licences(self, account: str, last_seen: str | None) -> dict[str, Any]:
        """`GET /licenses/{acc}`: the licences in use, by IMEI, paged like the report."""
        check_account(account)
        last_seen = _last_seen_device(last_seen)
        assigned = self._licences.get(account, {})
        devices = sorted(i for i in assigned if i > last_seen)
        page = devices[: self.report_page_size]
        answer: dict[str, Any] = {
            "accountName": account,
            "totalLicenses": self.license_count,
            "assignedLicenses": len(assigned),
            "hasMoreData": len(devices) > len(page),
            "maxPageSize": self.report_page_size,
        }
        if page:
            answer["lastSeenDeviceId"] = page[-1]
        answer["deviceList"] = [{"deviceId": i, "assignmentTime": iso(assigned[i])} for i in page]
        return answer

    def assign_licences(self, account: str, body: object, now: dt.datetime) -> dict[str, Any]:
        """`POST /licenses/{acc}/assign`: one licence per listed device, while any are left."""
        check_account(account)
        device_ids = _device_list(body)
        assigned = self._licences.setdefault(account, {})
        removed = self._licence_removed.setdefault(account, set())
        results: list[dict[str, str]] = []
        for imei in dict.fromkeys(device_ids):
            fact = device_facts(imei, self.catalogue)
            if not fact.in_account:
                results.append({"deviceId": imei, "status": "Failure", "resultReason": NOT_IN_ACCOUNT_REASON})
                continue
            self._see(account, imei)
            self.changes.licences.add((account, imei))
            if imei not in assigned:
                if len(assigned) >= self.license_count:
                    results.append({"deviceId": imei, "status": "Failure", "resultReason": NO_LICENCES_LEFT_REASON})
                    continue
                assigned[imei] = now.timestamp()
            removed.discard(imei)
            results.append({"deviceId": imei, "status": "Success"})
        self._licence_updated[account] = now
        self.changes.licence_accounts.add(account)
        return self._licence_result(account, results)

    def remove_licences(self, account: str, body: object, now: dt.datetime) -> dict[str, Any]:
        """`POST /licenses/{acc}/remove`: the listed devices' licences go back to the pool."""
        check_account(account)
        device_ids = _device_list(body)
        assigned = self._licences.setdefault(account, {})
        removed = self._licence_removed.setdefault(account, set())
        results: list[dict[str, str]] = []
        for imei in dict.fromkeys(device_ids):
            fact = device_facts(imei, self.catalogue)
            if not fact.in_account:
                results.append({"deviceId": imei, "status": "Failure", "resultReason": NOT_IN_ACCOUNT_REASON})
            elif not self.licensed(account, fact):
                results.append({"deviceId": imei, "status": "Failure", "resultReason": NO_LICENCE_REASON})
            else:
                assigned.pop(imei, None)
                removed.add(imei)
                self.changes.licences.add((account, imei))
                results.append({"deviceId": imei, "status": "Success"})
        self._licence_updated[account] = now
        self.changes.licence_accounts.add(account)
        return self._licence_result(account, results)

    def _licence_result(self, account: str, results: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "accountName": account,
            "licCount": self.license_count,
            "licUsedCount": len(self._licences.get(account, ())),
            "deviceList": results,
        }


# --- ThingSpace's calendar ---------------------------------------------------------------------


def _window_hours(moment: float, windows: Sequence[tuple[int, int]]) -> bool:
    hour = dt.datetime.fromtimestamp(moment, UTC).hour
    return any(start <= hour < end for start, end in windows)


def _next_opening(moment: float, windows: Sequence[tuple[int, int]]) -> tuple[float, float]:
    """The next window opening after `moment` and that window's length in seconds."""
    day = dt.datetime.fromtimestamp(moment, UTC).date()
    for offset in range(2):
        for start, end in sorted(windows):
            opening = dt.datetime.combine(day + dt.timedelta(days=offset), dt.time(), UTC)
            at = opening.timestamp() + start * 3600
            if at > moment:
                return at, (end - start) * 3600.0
    raise AssertionError("a window opens every day")


def _in_window(moment: float, fact: DeviceFacts, windows: Sequence[tuple[int, int]],
               timing: SandboxTimings) -> float:
    """When a pushed (LWM2M, OMA) device is first reached at or after `moment`: at once inside
    a window, else spread over the start of the next window."""
    if not windows or _window_hours(moment, windows):
        return moment
    opening, length = _next_opening(moment, windows)
    return opening + fact.spread * min(timing.device_spread, length / 2)


def _check_in(scheduled: float, fact: DeviceFacts, period: float,
              windows: Sequence[tuple[int, int]], cutoff: float) -> float:
    """An HTTP device's first check-in after `scheduled` that falls inside a window. Its
    check-ins come every `period` seconds, at a phase of its own."""
    phase = fact.pace * period
    moment = scheduled + (phase - scheduled) % period
    while moment < cutoff and windows and not _window_hours(moment, windows):
        moment += period
    return moment


# --- Schedule validation ------------------------------------------------------------------------


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _protocol(value: object, *, also: str = "") -> str:
    """The protocol a spelling names, or the 400 ThingSpace gives for an unknown one."""
    if isinstance(value, str) and value in PROTOCOL_SPELLINGS:
        return PROTOCOL_SPELLINGS[value]
    expected = ", ".join([*PROTOCOL_SPELLINGS, *([also] if also else [])])
    raise invalid(f"Invalid protocol '{value}': expected one of {expected}")


def _last_seen_device(value: str | None) -> str:
    value = value or "0"
    if not (value.isascii() and value.isdigit() and len(value) <= 15):
        raise invalid(f"Invalid lastSeenDeviceId '{value}': expected 0 or a device IMEI")
    # Equal-length digit strings sort as numbers do.
    return value.zfill(15)


def _device_list(body: object) -> list[str]:
    if not isinstance(body, dict) or body.get("deviceList") is None:
        raise invalid("deviceList is required: a list of device IMEIs")
    devices = body["deviceList"]
    if not isinstance(devices, list):
        raise invalid("deviceList must be a list of device IMEIs")
    if not devices:
        raise invalid("deviceList must contain at least one device")
    for device_id in devices:
        if not is_imei(device_id):
            raise invalid(f"Invalid device id format: {device_id}")
    return devices


def _validate_dates(body: Mapping[str, Any], today: dt.date) -> None:
    dates: dict[str, dt.date] = {}
    for name in ("startDate", "endDate"):
        try:
            if not _DATE.match(body[name]):
                raise ValueError
            dates[name] = dt.date.fromisoformat(body[name])
        except ValueError:
            raise invalid(f"Invalid {name} '{body[name]}': expected a date as YYYY-MM-DD") from None
    if dates["startDate"] < today:
        raise invalid(
            f"startDate {body['startDate']} is in the past (today is {today.isoformat()} UTC)"
        )
    if dates["endDate"] < dates["startDate"]:
        raise invalid(f"endDate {body['endDate']} is before startDate {body['startDate']}")


def _validate_windows(windows: object) -> list[dict[str, int]] | None:
    if windows is None:
        return None
    if not isinstance(windows, list):
        raise invalid("campaignTimeWindowList must be a list of {startTime, endTime}")
    for index, window in enumerate(windows):
        where = f"campaignTimeWindowList[{index}]"
        if not isinstance(window, dict):
            raise invalid(f"{where} must be an object with startTime and endTime")
        start, end = window.get("startTime"), window.get("endTime")
        if not _is_int(start) or not 0 <= start <= 23:
            raise invalid(f"{where}.startTime must be an hour from 0 to 23, not {start}")
        if not _is_int(end) or not 1 <= end <= 24:
            raise invalid(f"{where}.endTime must be an hour from 1 to 24, not {end}")
        if end - start < 4:
            raise invalid(
                f"{where}.endTime {end} must be at least 4 hours after startTime {start}"
            )
    return [{"startTime": w["startTime"], "endTime": w["endTime"]} for w in windows]


def _validate_schedule(body: object, today: dt.date) -> dict[str, Any]:
    """The request if it keeps every rule of the schedule page, else the first rule broken.

    ThingSpace answers one error at a time; the checks run in the order of the page, then the
    two flags Verizon's SDK requires.
    """
    if not isinstance(body, dict):
        raise invalid("Request body must be a JSON object")
    for name in REQUIRED_FIELDS:
        if body.get(name) is None or body.get(name) == "":
            raise invalid(f"{name} is required")
    for name in REQUIRED_FLAGS:
        if body.get(name) is None:
            raise invalid(f"{name} is required: true or false")
    for name in REQUIRED_FIELDS[:-1]:
        if not isinstance(body[name], str):
            raise invalid(f"{name} must be a string")
    if body.get("campaignName") is not None and not isinstance(body["campaignName"], str):
        raise invalid("campaignName must be a string")
    if body["protocol"] not in PROTOCOLS:
        # The schedule model's own text lists these three; the OMA-DM spellings of the SDK's
        # list enums are not documented for a schedule.
        raise invalid(f"Invalid protocol '{body['protocol']}': expected one of {', '.join(PROTOCOLS)}")
    _validate_dates(body, today)
    _validate_windows(body.get("campaignTimeWindowList"))
    _device_list(body)
    for flag in REQUIRED_FLAGS:
        if not isinstance(body[flag], bool):
            raise invalid(f"{flag} must be true or false")
    return body
