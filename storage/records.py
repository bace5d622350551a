"""Typed rows, as the rest of the code sees them."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from commands.requests import ScheduleRequest, TimeWindow
from storage.states import CampaignState


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
