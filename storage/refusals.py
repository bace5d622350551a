"""What the guard refuses, read inside the transaction of `Store.record_approval` or
`Store.claim_for_submission`: pre-flight's say (checks unfinished, failed or blocking; excluded
devices still in the request) and a staged rollout's (waves not planned yet or planned for
another request; a request with a plan never sent whole; a wave only as planned, its request
approved and not halted).

Plain reads of a connection, below `Store`: the store asks them, and `storage.preflight` and
`storage.waves`, which write what they read, build on the store.
"""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from storage.findings import CHECKING, FAILED
from storage.model import Campaign, ref_for


def preflight_refusal(db: Database, campaign_id: int) -> str | None:
    """Why the guard must refuse approving or submitting this campaign, or None.

    Used by `Store.record_approval` and `Store.claim_for_submission` inside their
    transactions. A campaign without a pre-flight row (stored before pre-flight existed, or
    by a test straight through the store) is left to the approval rules alone; every request
    made through `CampaignService` gets its row before its card is posted.

    Besides unfinished or blocking checks, a request still holding devices pre-flight excluded
    is refused until an approver either narrows it to the eligible devices or includes them
    explicitly: the excluded devices never go out by default.
    """
    # One read of the row for both questions (the checks, then the excluded devices).
    row = db.execute(
        "SELECT status, summary, error, narrowed_at, override_at FROM preflight WHERE campaign_id = ?",
        [campaign_id],
    ).fetchone()
    if row is None:
        return None
    status, summary, error, narrowed_at, override_at = row
    why = _status_refusal(campaign_id, status, error)
    if why:
        return why
    data = json.loads(summary) if summary else None
    why = _blocking_refusal(campaign_id, data)
    if why:
        return why
    if data is None or narrowed_at or override_at:
        return None
    excluded = int(data["requested"]) - int(data["eligible"])
    if excluded > 0:
        return (
            f"{ref_for(campaign_id)} holds {excluded:,} device{'s' if excluded != 1 else ''} "
            "pre-flight excluded; approve the eligible devices, or include the excluded ones "
            "explicitly with Include excluded devices…"
        )
    return None


def checks_refusal(db: Database, campaign_id: int) -> str | None:
    """The pre-flight checks' own say: still checking, failed, or a blocking finding."""
    row = db.execute(
        "SELECT status, summary, error FROM preflight WHERE campaign_id = ?", [campaign_id]
    ).fetchone()
    if row is None:
        return None
    status, summary, error = row
    return _status_refusal(campaign_id, status, error) or _blocking_refusal(
        campaign_id, json.loads(summary) if summary else None
    )


def _status_refusal(campaign_id: int, status: str, error: str | None) -> str | None:
    ref = ref_for(campaign_id)
    if status == CHECKING:
        return (
            f"{ref} is still being checked against ThingSpace; it can be approved once the "
            "pre-flight findings are on its card"
        )
    if status == FAILED:
        return (
            f"the pre-flight checks of {ref} could not finish ({error or 'no reason given'}); "
            "they must pass before it can be approved"
        )
    return None


def _blocking_refusal(campaign_id: int, summary: dict[str, Any] | None) -> str | None:
    blocking = summary["blocking"] if summary is not None else []
    if blocking:
        return f"{ref_for(campaign_id)} cannot be approved: " + " ".join(blocking)
    return None


def plan_refusal(db: Database, campaign: Campaign) -> str | None:
    """Why a staged request cannot be approved now, or None: its waves are not planned yet,
    or the request changed since they were (the card then shows the new plan)."""
    row = db.execute("SELECT bound_hash FROM rollout_plans WHERE campaign_id = ?", [campaign.id]).fetchone()
    if row is None:
        return None
    if not row[0]:
        return f"the waves of {campaign.ref} are planned once its pre-flight checks finish"
    if row[0] != campaign.content_hash:
        return f"{campaign.ref} changed since its waves were planned; approve the current card"
    return None


def wave_refusal(db: Database, campaign: Campaign, approvals_of: int) -> str | None:
    """Why the guard must refuse sending `campaign`, as far as plans are concerned, or None.

    `approvals_of` is the count of valid approvals of the request `campaign` belongs to, for
    the request's current content hash (the caller counts them as for any campaign).
    """
    if campaign.parent_id is None:
        if db.execute("SELECT 1 FROM rollout_plans WHERE campaign_id = ?", [campaign.id]).fetchone():
            return f"{campaign.ref} is a staged rollout: it is sent wave by wave, never whole"
        return None
    parent = ref_for(campaign.parent_id)
    plan = db.execute(
        "SELECT bound_hash, halted_at, halt_reason FROM rollout_plans WHERE campaign_id = ?",
        [campaign.parent_id],
    ).fetchone()
    if plan is None:
        return f"{campaign.ref} is a wave of {parent}, which has no plan on record"
    bound, halted_at, halt_reason = plan
    if halted_at is not None:
        return f"{parent} was halted: {halt_reason or 'no reason recorded'}"
    row = db.execute("SELECT content_hash FROM campaigns WHERE id = ?", [campaign.parent_id]).fetchone()
    if row is None or row[0] != bound:
        return f"{parent} changed since its plan was approved"
    number = campaign.wave or 0
    wave = db.execute(
        "SELECT campaign_id FROM waves WHERE parent_id = ? AND number = ?", [campaign.parent_id, number]
    ).fetchone()
    if wave is None:
        return f"{parent} has no wave {campaign.wave}"
    if wave[0] != campaign.id:
        return f"{campaign.ref} is not the campaign of wave {number} of {parent}"
    planned = db.execute(
        "SELECT imei FROM wave_devices WHERE parent_id = ? AND number = ? ORDER BY imei",
        [campaign.parent_id, number],
    ).fetchall()
    held = db.execute(
        "SELECT imei FROM devices WHERE campaign_id = ? AND dropped_at IS NULL ORDER BY imei", [campaign.id]
    ).fetchall()
    if planned != held:
        return f"the devices of {campaign.ref} are not those of wave {number} of {parent}"
    if approvals_of < 1:
        return f"{parent} has no recorded approval of its plan"
    return None
