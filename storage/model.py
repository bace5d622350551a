"""The model: what a request, a campaign and a decision are, the hashes approvals are bound to,
and the outcomes and errors the store and the services share.

Pure types and functions: no SQL, no Slack, no I/O. Everything above the storage floor (the
services in `bot/`, the Slack surface in `commands/`) takes its types from here, so the ground
floor never needs anything from above it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from storage.plan import RolloutPlan, WaveAssignment, plan_fields
from storage.states import CampaignState

# The firmware protocols ThingSpace knows: a request names one, a firmware list is read per one.
PROTOCOLS = ("LWM2M", "OMA", "HTTP")


# --- Requests, as the parser and the schedule modal produce them ----------------------------
# Both entry points (slash-command text and the schedule modal) produce the same
# `ScheduleRequest` for the same input, or raise one `RequestError` carrying every problem
# found, each naming the key, the value and the rule.


@dataclass(frozen=True)
class TimeWindow:
    """One entry of ThingSpace's campaignTimeWindowList, hours in UTC."""

    start_hour: int  # 0..23
    end_hour: int  # 1..24, at least 4 hours after start_hour

    def as_thingspace(self) -> dict[str, int]:
        return {"startTime": self.start_hour, "endTime": self.end_hour}

    def __str__(self) -> str:
        return f"{self.start_hour:02d}:00–{self.end_hour:02d}:00 UTC"


@dataclass(frozen=True)
class ScheduleRequest:
    """A validated campaign request, not yet checked against ThingSpace.

    `firmware_from`/`firmware_to` may be None: the service fills them from the
    account's firmware list when `firmware` names exactly one entry there.
    """

    firmware: str
    firmware_from: str | None
    firmware_to: str | None
    protocol: str
    start_date: dt.date
    end_date: dt.date
    windows: tuple[TimeWindow, ...]
    devices: tuple[str, ...]
    name: str | None = None
    account: str | None = None
    # licence=auto: ThingSpace may assign free FOTA licences to unlicensed devices
    # (autoAssignLicenseFlag). Off by default.
    licence_auto: bool = False
    # A staged rollout (canary, waves, …); None: one campaign, all devices at once.
    plan: RolloutPlan | None = None
    # Things the user should know that are not errors ("2 duplicate IMEIs dropped").
    notes: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: which key, what was given, which rule it broke."""

    key: str
    value: str
    rule: str
    # How the user typed it: a `key=value` pair, or words of a command (`/fota status abc`).
    typed_as: str = "pair"

    def __str__(self) -> str:
        shown = self.value if len(self.value) <= 60 else self.value[:57] + "..."
        if self.typed_as == "words":
            typed = " ".join(part for part in ("/fota", self.key if self.key != "command" else "", shown) if part)
            return f"`{typed}`: {self.rule}"
        if shown:
            return f"`{self.key}={shown}`: {self.rule}"
        return f"`{self.key}`: {self.rule}"


class RequestError(Exception):
    """Every problem with a request, all at once. Its message is what the user reads."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]):
        self.problems = tuple(problems)
        super().__init__(self.message())

    def message(self) -> str:
        count = len(self.problems)
        head = "That request has a problem:" if count == 1 else f"That request has {count} problems:"
        return "\n".join([head, *(f"• {p}" for p in self.problems)])

    def by_key(self) -> dict[str, str]:
        """Problems grouped by key, joined, for `response_action: errors` in the modal."""
        grouped: dict[str, list[str]] = {}
        for p in self.problems:
            grouped.setdefault(p.key, []).append(str(p))
        return {k: " ".join(v) for k, v in grouped.items()}


# --- Records: typed rows, as the rest of the code sees them ---------------------------------


def reminder_time(created_at: dt.datetime, expires_at: dt.datetime) -> dt.datetime:
    """When the approvers of a request still undecided are reminded: halfway to its expiry."""
    return created_at + (expires_at - created_at) / 2


def ref_for(campaign_id: int) -> str:
    """The bot's own reference for a campaign, shown on every card: FB-12."""
    return f"FB-{campaign_id}"


@dataclass(frozen=True)
class Campaign:
    id: int
    state: CampaignState
    requester: str
    account: str
    firmware_name: str
    firmware_from: str
    firmware_to: str
    protocol: str
    start_date: dt.date
    end_date: dt.date
    windows: tuple[TimeWindow, ...]
    name: str | None
    device_count: int
    content_hash: str
    sandbox: bool
    created_at: dt.datetime
    expires_at: dt.datetime
    approval_channel: str | None = None
    thread_ts: str | None = None
    thingspace_id: str | None = None
    thingspace_status: str | None = None
    make: str | None = None
    model: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    last_callback_at: dt.datetime | None = None
    notes: tuple[str, ...] = ()
    # Let ThingSpace assign a free FOTA licence to a device that has none (the request's
    # licence option); sent as autoAssignLicenseFlag. Off unless the request asked for it.
    licence_auto: bool = False
    # A wave of a staged rollout: the request it belongs to, its number and the plan's count.
    parent_id: int | None = None
    wave: int | None = None
    waves_total: int | None = None
    # The database's installation id (Store.installation_id), or "" for a campaign from
    # before installation ids: its name stays what it was sent as.
    installation: str = ""
    # The ThingSpace status came from callbacks alone; no re-read has confirmed it yet.
    status_from_callback: bool = False

    @property
    def ref(self) -> str:
        """FB-12; a wave of a staged rollout is shown as its request's wave, FB-12 w2/4."""
        if self.parent_id is not None:
            return f"{ref_for(self.parent_id)} w{self.wave}/{self.waves_total}"
        return ref_for(self.id)

    @property
    def tag(self) -> str:
        """What the campaign name carries: the reference with the installation id
        (`FB-12·a3f9`, a wave `FB-12·a3f9 w2/4`): FB-12 of another database on the same
        account is another campaign."""
        if not self.installation:
            return self.ref
        request = ref_for(self.parent_id) if self.parent_id is not None else ref_for(self.id)
        return f"{request}·{self.installation}" + self.ref[len(request):]

    @property
    def thingspace_name(self) -> str:
        """The campaignName sent to ThingSpace; it carries the ref so a lost answer can be found."""
        return f"{self.name} [{self.tag}]" if self.name else f"fota-bot {self.tag}"

    def schedule_body(self, devices: list[str]) -> dict[str, Any]:
        """The schedule request body, in the reference page's shape and key order.

        ThingSpace's v3 model requires both flags (Verizon's SDK refuses to serialise a body
        without them). autoAddDevicesFlag is always false: true would let ThingSpace add
        devices of the same make and model that nobody approved.
        """
        body: dict[str, Any] = {
            "campaignName": self.thingspace_name,
            "firmwareName": self.firmware_name,
            "firmwareFrom": self.firmware_from,
            "firmwareTo": self.firmware_to,
            "protocol": self.protocol,
            "startDate": self.start_date.isoformat(),
            "endDate": self.end_date.isoformat(),
        }
        if self.windows:
            body["campaignTimeWindowList"] = [w.as_thingspace() for w in self.windows]
        body["deviceList"] = list(devices)
        body["autoAssignLicenseFlag"] = self.licence_auto
        body["autoAddDevicesFlag"] = False
        return body

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Campaign:
        def when(v: str | None) -> dt.datetime | None:
            return dt.datetime.fromisoformat(v) if v else None

        return cls(
            id=row["id"],
            state=CampaignState(row["state"]),
            requester=row["requester"],
            account=row["account"],
            firmware_name=row["firmware_name"],
            firmware_from=row["firmware_from"],
            firmware_to=row["firmware_to"],
            protocol=row["protocol"],
            start_date=dt.date.fromisoformat(row["start_date"]),
            end_date=dt.date.fromisoformat(row["end_date"]),
            windows=tuple(TimeWindow(w[0], w[1]) for w in json.loads(row["windows"])),
            name=row["name"],
            device_count=row["device_count"],
            content_hash=row["content_hash"],
            sandbox=bool(row["sandbox"]),
            created_at=dt.datetime.fromisoformat(row["created_at"]),
            expires_at=dt.datetime.fromisoformat(row["expires_at"]),
            approval_channel=row["approval_channel"],
            thread_ts=row["thread_ts"],
            thingspace_id=row["thingspace_id"],
            thingspace_status=row["thingspace_status"],
            make=row["make"],
            model=row["model"],
            error_code=row["error_code"],
            error_message=row["error_message"],
            last_callback_at=when(row["last_callback_at"]),
            notes=tuple(json.loads(row["notes"] or "[]")),
            # A database without the column predates the licence option: off.
            licence_auto=bool(row.get("licence_auto") or 0),
            parent_id=row.get("parent_id"),
            wave=row.get("wave"),
            waves_total=row.get("waves_total"),
            installation=row.get("installation") or "",
            status_from_callback=bool(row.get("status_from_callback") or 0),
        )


@dataclass(frozen=True)
class Decision:
    campaign_id: int
    user: str
    decision: str  # "approve" | "reject"
    content_hash: str
    reason: str | None
    at: dt.datetime
    # An approval by someone who was no longer an approver when it was last counted.
    lapsed: bool = False


@dataclass(frozen=True)
class Device:
    imei: str
    status: str | None
    reason: str | None
    updated_at: str | None


@dataclass(frozen=True)
class ResolvedRequest:
    """A parsed request with from/to filled and the account chosen: ready to store."""

    request: ScheduleRequest
    account: str
    firmware_from: str
    firmware_to: str


# --- Content hashes: what approvals are bound to --------------------------------------------


def canonical(value: Any) -> bytes:
    """The one serialisation every hash here is taken of: sorted keys, no spaces, ASCII."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def content_hash(fields: dict[str, Any]) -> str:
    """A stable hash of what will be sent: approvals are bound to it."""
    return hashlib.sha256(canonical(fields)).hexdigest()


def request_hash(campaign: Campaign, devices: Sequence[str]) -> str:
    """The hash of what will be sent to ThingSpace: the account and the schedule body (whose
    name carries the reference). A request, a wave and a narrowed request all take it here."""
    return content_hash({"account": campaign.account, **campaign.schedule_body(list(devices))})


def device_list_json(devices: Sequence[str]) -> bytes:
    """A device list serialised as `canonical` serialises it inside a request's hash."""
    return canonical(list(devices))


def joined_device_lists(parts: Sequence[bytes]) -> bytes:
    """`device_list_json` of several lists one after another, from each one's own: a large
    request's list is serialised a chunk at a time, between its chunks' transactions."""
    return b"[" + b",".join(part[1:-1] for part in parts if part != b"[]") + b"]"


_NO_DEVICES = b'"deviceList":[]'


def request_hash_of_list(campaign: Campaign, device_list: bytes) -> str:
    """`request_hash` with the device list already serialised (`device_list_json`): the same
    bytes are hashed, the campaign's fields around the list's. Serialising 100,000 devices is
    the costly part (tens of ms); hashing the result takes about one.
    """
    outline = canonical({"account": campaign.account, **campaign.schedule_body([])})
    # Inside a JSON string every '"' is escaped, so only the key itself can read like this.
    if outline.count(_NO_DEVICES) != 1:
        raise ValueError("a schedule body holds exactly one device list")
    head, _, tail = outline.partition(_NO_DEVICES)
    digest = hashlib.sha256(head)
    digest.update(b'"deviceList":')
    digest.update(device_list)
    digest.update(tail)
    return digest.hexdigest()


def bound_hash(request_hash: str, digest: str) -> str:
    """The content hash approvals are bound to once findings exist: request and findings."""
    return content_hash({"request": request_hash, "preflight": digest})


def override_hash(request_hash: str, digest: str, included: int) -> str:
    """The content hash of a request widened by an override: request, findings and the fact
    that `included` excluded devices go out, so no approval of another device set counts."""
    return content_hash(
        {"request": request_hash, "preflight": digest, "include_excluded": included}
    )


def plan_hash(base_hash: str, plan: RolloutPlan, waves: Sequence[WaveAssignment]) -> str:
    """The content hash of a request with its plan: what was asked for and how it rolls out."""
    return content_hash({"request": base_hash, "plan": content_hash(plan_fields(plan, waves))})


# --- Outcomes and errors the store and the services share -----------------------------------


class CampaignNotFound(LookupError):
    def __init__(self, ident: str):
        self.ident = ident
        super().__init__(
            f"No campaign `{ident}`. Use the bot's reference such as `FB-12` or ThingSpace's "
            "campaign id; `/fota list all` shows them."
        )


class NotApproved(Exception):
    """The guard said no: the campaign lacks the recorded approvals for its content."""


class ApprovalsLapsed(NotApproved):
    """It had enough approvals, but some of their authors are no longer approvers."""


class ApprovalOutcome(Enum):
    RECORDED = "recorded"  # counted; more approvals still needed
    APPROVED = "approved"  # this approval completed the set; the campaign is now approved
    DUPLICATE = "duplicate"  # this person already decided
    STALE = "stale"  # the card's hash is not the campaign's hash any more
    CLOSED = "closed"  # not waiting for approval any more
    REJECTED = "rejected"  # this rejection decided the request


@dataclass(frozen=True)
class ApprovalResult:
    outcome: ApprovalOutcome
    campaign: Campaign
    approvals: int


class WaveRefused(Exception):
    """A wave cannot be started now; the message is the sentence the clicker reads."""


# What a cancel confirmation promised: "withdraw" a request never sent, or cancel at ThingSpace.
# `halt`: a staged rollout (`/fota cancel` halts it and cancels its live waves at ThingSpace).
CancelKind = Literal["withdraw", "thingspace", "halt"]
