"""Pre-flight's record types: what the checks found, per request and per device, and what
narrowing or an override did. Pure: computed by `bot.workflow.preflight`, stored by
`storage.preflight`, rendered by `commands.blocks.preflight`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from storage.model import ApprovalResult, TimeWindow, ref_for

# A request's pre-flight status: checking from the moment it is stored, then done (with the
# findings) or failed (with the reason).
CHECKING = "checking"
DONE = "done"
FAILED = "failed"


class Finding(StrEnum):
    """What pre-flight can find about one device, in the order the card lists them."""

    UNKNOWN = "unknown"  # absent from POST /devices: not in the account
    INELIGIBLE = "ineligible"  # fotaEligible: false
    UNLICENSED = "unlicensed"  # licenseAssigned: false on a monthly-only (MRC) subscription
    DONE = "done"  # already runs firmwareTo
    WRONG_FIRMWARE = "wrong_firmware"  # runs neither firmwareFrom nor firmwareTo
    WRONG_MODEL = "wrong_model"  # make/model differ from the firmware's
    IN_OTHER_CAMPAIGN = "in_other_campaign"  # already in another active campaign here


# Short words for each finding, for people: the final summary's "excluded at approval" and the
# excluded devices' CSV.
FINDING_WORDS: dict[str, str] = {
    Finding.UNKNOWN: "not in the account",
    Finding.INELIGIBLE: "not FOTA-eligible",
    Finding.UNLICENSED: "without a licence",
    Finding.DONE: "already on the target version",
    Finding.WRONG_FIRMWARE: "not on the from version",
    Finding.WRONG_MODEL: "of another make or model",
    Finding.IN_OTHER_CAMPAIGN: "in another active campaign",
}


# Every finding leaves a device out of "eligible": a firmware image is built for one make, one
# model and one starting version, so a device of another model or on another version fails at
# best; an unknown, ineligible or unlicensed device is refused by ThingSpace; a device in
# another active campaign would be upgraded twice or raced. Sending any of them is an explicit,
# recorded override ("Include excluded devices…"), never the default.
EXCLUDING: frozenset[Finding] = frozenset(Finding)


# Findings that keep a device out even of an override: already on firmwareTo, nothing to send.
NEVER_SENT: frozenset[Finding] = frozenset({Finding.DONE})


@dataclass(frozen=True)
class FirmwareCheck:
    """Rule 1: is the firmware listed for the account and protocol, with this from → to?"""

    listed: bool
    make: str | None = None
    model: str | None = None
    problem: str | None = None  # the sentence approvers read when not listed


@dataclass(frozen=True)
class RadiusRow:
    """One line of the blast radius: devices of one make/model on one current firmware."""

    make: str
    model: str
    firmware: str
    devices: int
    target: bool  # the firmware's make/model, on firmwareFrom: the upgrade applies


@dataclass(frozen=True)
class ConflictFinding:
    """Another active campaign in the database that shares devices with this one."""

    campaign_id: int
    state: str
    shared: int
    start_date: dt.date
    end_date: dt.date
    dates_overlap: bool
    windows_overlap: bool

    @property
    def ref(self) -> str:
        return ref_for(self.campaign_id)


@dataclass(frozen=True)
class PreflightSummary:
    """What the card shows; its `digest` covers it and every device's findings."""

    requested: int
    eligible: int
    on_target: int  # eligible, on firmwareFrom and of the firmware's make/model: no warning
    counts: Mapping[str, int]  # Finding value -> devices with it
    monthly_only: bool
    firmware: FirmwareCheck
    radius: tuple[RadiusRow, ...]
    radius_other: int  # devices in the account on rows not shown
    conflicts: tuple[ConflictFinding, ...]
    blocking: tuple[str, ...]
    digest: str = ""
    # licence=auto on a monthly-only account: unlicensed devices made eligible (each takes one
    # of the account's unused licences) and the unused licences there were.
    licences_assigned: int = 0
    licences_free: int | None = None

    @property
    def blocked(self) -> bool:
        return bool(self.blocking)

    @property
    def excluded(self) -> int:
        return self.requested - self.eligible

    @property
    def includable(self) -> int:
        """Excluded devices an override may add: all but those already on firmwareTo."""
        return self.excluded - self.count(Finding.DONE)

    def count(self, finding: Finding) -> int:
        return int(self.counts.get(finding.value, 0))

    def to_json(self, *, with_digest: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "requested": self.requested,
            "eligible": self.eligible,
            "on_target": self.on_target,
            "counts": {f.value: self.count(f) for f in Finding if self.count(f)},
            "monthly_only": self.monthly_only,
            "firmware": {
                "listed": self.firmware.listed,
                "make": self.firmware.make,
                "model": self.firmware.model,
                "problem": self.firmware.problem,
            },
            "radius": [[r.make, r.model, r.firmware, r.devices, r.target] for r in self.radius],
            "radius_other": self.radius_other,
            "conflicts": [
                {
                    "campaign_id": c.campaign_id,
                    "state": c.state,
                    "shared": c.shared,
                    "start_date": c.start_date.isoformat(),
                    "end_date": c.end_date.isoformat(),
                    "dates_overlap": c.dates_overlap,
                    "windows_overlap": c.windows_overlap,
                }
                for c in self.conflicts
            ],
            "blocking": list(self.blocking),
        }
        if self.licences_assigned or self.licences_free is not None:
            data["licences"] = {"assigned": self.licences_assigned, "free": self.licences_free}
        if with_digest:
            data["digest"] = self.digest
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PreflightSummary:
        fw = data["firmware"]
        return cls(
            requested=int(data["requested"]),
            eligible=int(data["eligible"]),
            on_target=int(data["on_target"]),
            counts={str(k): int(v) for k, v in data["counts"].items()},
            monthly_only=bool(data["monthly_only"]),
            firmware=FirmwareCheck(
                fw["listed"], fw.get("make"), fw.get("model"), fw.get("problem")
            ),
            radius=tuple(
                RadiusRow(r[0], r[1], r[2], int(r[3]), bool(r[4])) for r in data["radius"]
            ),
            radius_other=int(data["radius_other"]),
            conflicts=tuple(
                ConflictFinding(
                    campaign_id=int(c["campaign_id"]),
                    state=str(c["state"]),
                    shared=int(c["shared"]),
                    start_date=dt.date.fromisoformat(c["start_date"]),
                    end_date=dt.date.fromisoformat(c["end_date"]),
                    dates_overlap=bool(c["dates_overlap"]),
                    windows_overlap=bool(c["windows_overlap"]),
                )
                for c in data["conflicts"]
            ),
            blocking=tuple(data["blocking"]),
            digest=str(data.get("digest") or ""),
            licences_assigned=int((data.get("licences") or {}).get("assigned") or 0),
            licences_free=(data.get("licences") or {}).get("free"),
        )


@dataclass(frozen=True)
class Findings:
    """The outcome of one evaluation: the summary and each device's findings."""

    summary: PreflightSummary
    # IMEI -> its findings; devices without any finding are not listed (most of them).
    devices: Mapping[str, tuple[Finding, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class OtherCampaign:
    """Conflict input: another active campaign and the devices it shares with this request."""

    campaign_id: int
    state: str
    start_date: dt.date
    end_date: dt.date
    windows: tuple[TimeWindow, ...]
    shared: frozenset[str]


@dataclass(frozen=True)
class PreflightRecord:
    campaign_id: int
    status: str  # checking | done | failed
    attempts: int
    started_at: dt.datetime
    finished_at: dt.datetime | None
    request_hash: str
    summary: PreflightSummary | None
    error: str | None
    narrowed_by: str | None
    narrowed_at: dt.datetime | None
    narrowed_from: int | None  # device count before narrowing
    override_by: str | None = None
    override_at: dt.datetime | None = None
    override_reason: str | None = None
    override_count: int | None = None  # excluded devices the override added

    @property
    def approvable(self) -> bool:
        return self.status == DONE and self.summary is not None and not self.summary.blocked

    @property
    def narrowed(self) -> bool:
        return self.narrowed_at is not None

    @property
    def overridden(self) -> bool:
        return self.override_at is not None

    @property
    def excluded_pending(self) -> int:
        """Excluded devices still in the request with nobody's explicit say: while there are
        any, neither a plain approval nor a submission is allowed."""
        if self.summary is None or self.narrowed or self.overridden:
            return 0
        return self.summary.excluded


@dataclass(frozen=True)
class Narrowed:
    """What "Approve eligible only" did: the approval outcome and the device counts."""

    result: ApprovalResult
    kept: int
    dropped: int
    old_hash: str
    superseded: tuple[str, ...]  # approvers whose approval of the full list stopped counting


@dataclass(frozen=True)
class Overridden:
    """What "Include excluded devices…" did: the approval outcome and the device counts."""

    result: ApprovalResult
    included: int  # excluded devices now in the request
    done: int  # devices already on firmwareTo, left out all the same
    old_hash: str
    counts: Mapping[str, int]  # Finding value -> included devices with it
