"""Retries of failed devices: which request retries which campaign's failed devices.

A retry is an ordinary request (pre-flight, approval, the guard) whose devices are exactly
the failed devices of a finished campaign, a wave, or a whole staged rollout; this table only
links the two, so the new card can say where its devices come from and the original's thread
can point to it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from storage import waves
from storage.model import Campaign, Device
from storage.store import Store


@dataclass(frozen=True)
class RetryLink:
    """The new request `campaign_id` retries the `failed` failed devices of `origin_id`."""

    campaign_id: int
    origin_id: int
    origin_ref: str  # FB-12, or a wave's FB-12 w2/4, as the original was shown
    failed: int
    origin_permalink: str | None
    created_at: dt.datetime


def record(store: Store, link: RetryLink) -> None:
    """Link a new request to the campaign whose failed devices it holds (once: its key)."""
    with store.db.atomic():
        store.db.execute(
            """INSERT INTO retries(campaign_id, origin_id, origin_ref, failed, origin_permalink, created_at)
               VALUES(?, ?, ?, ?, ?, ?)""",
            [
                link.campaign_id,
                link.origin_id,
                link.origin_ref,
                link.failed,
                link.origin_permalink,
                link.created_at.isoformat(),
            ],
        )


def link_of(store: Store, campaign_id: int) -> RetryLink | None:
    """What `campaign_id` retries, or None for a request that is not a retry."""
    row = store.db.execute(
        """SELECT campaign_id, origin_id, origin_ref, failed, origin_permalink, created_at
           FROM retries WHERE campaign_id = ?""",
        [campaign_id],
    ).fetchone()
    if row is None:
        return None
    return RetryLink(row[0], row[1], row[2], row[3], row[4], dt.datetime.fromisoformat(row[5]))


def failed_devices(store: Store, campaign: Campaign) -> list[Device]:
    """The failed devices of a campaign or a wave, or of every wave of a staged request, in
    the order they were sent."""
    ids = waves.wave_campaign_ids(store.db.conn, campaign.id) or [campaign.id]
    return [d for cid in ids for d in store.devices(cid, failed_only=True)]


def failure_reasons(store: Store, campaign: Campaign) -> list[tuple[str, int]]:
    """Failed devices per reason, most first: a staged request's summed over its waves."""
    if waves.wave_campaign_ids(store.db.conn, campaign.id):
        return waves.rollout_failure_reasons(store, campaign.id)
    return store.failure_reasons(campaign.id)
