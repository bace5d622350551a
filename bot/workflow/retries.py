"""Retrying the failed devices of a finished campaign, wave or staged rollout.

The retry is a new request like any other: the requester fills in the request form (its
firmware and windows taken from the original, its devices exactly the original's failed
devices), and it goes through pre-flight and approval before anything reaches ThingSpace.
It is linked to the original (`storage/retries.py`): its card says what it retries, and the
original's thread is told.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bot.workflow.campaigns import CampaignService, describe
from bot.workflow.errors import UserError
from storage import retries, waves
from storage.model import Campaign, CampaignNotFound, ScheduleRequest
from storage.store import Store


@dataclass(frozen=True)
class RetryOrigin:
    """A finished campaign (a wave, a staged request) with its failed devices and why they failed."""

    campaign: Campaign
    failed: tuple[str, ...]
    reasons: tuple[tuple[str, int], ...]


class RetryEvents(Protocol):
    def retry_requested(self, origin: Campaign, campaign: Campaign, user: str, failed: int) -> None: ...


class Retries:
    def __init__(
        self,
        *,
        store: Store,
        campaigns: CampaignService,
        events: RetryEvents,
        permalink: Callable[[Campaign], Awaitable[str | None]] | None = None,
    ):
        self.store = store
        self.campaigns = campaigns
        self.events = events
        self.permalink = permalink

    def find(self, ident: str, wave: int | None = None) -> Campaign:
        """The campaign `ident` names (a wave's own, or a staged request's), or its wave `wave`."""
        try:
            campaign = self.store.find_campaign(ident)
        except CampaignNotFound as exc:
            raise UserError(f"{exc}. Nothing to retry.") from exc
        if wave is None:
            return campaign
        stored = waves.plan_of(self.store, campaign.id)
        if stored is None:
            raise UserError(
                f"{campaign.ref} is not a staged rollout, so it has no wave {wave}: `/fota retry {campaign.ref}` "
                "retries its failed devices."
            )
        try:
            record = stored.wave(wave)
        except KeyError:
            raise UserError(f"{campaign.ref} has no wave {wave}: its plan has {len(stored.waves)} waves.") from None
        if record.campaign_id is None:
            raise UserError(f"Wave {wave} of {campaign.ref} was never sent, so none of its devices failed.")
        return self.store.campaign(record.campaign_id)

    def origin(self, campaign: Campaign) -> RetryOrigin:
        """What a retry of `campaign` holds; UserError when it has not finished or nothing failed."""
        staged = waves.plan_of(self.store, campaign.id) is not None
        if staged and not waves.rollout_over(self.store, campaign):
            raise UserError(
                f"{campaign.ref} is {describe(campaign.state)}: a staged rollout's failed devices can be retried "
                "once it is over (rolled out, or halted and its last wave ended). `/fota retry "
                f"{campaign.ref} wN` retries one wave that has ended. Nothing changed."
            )
        if not campaign.state.is_terminal:
            raise UserError(
                f"{campaign.ref} is {describe(campaign.state)}, not finished: its failed devices can be retried "
                "once it has ended. Nothing changed."
            )
        failed = retries.failed_devices(self.store, campaign)
        if not failed:
            raise UserError(
                f"{campaign.ref} ({describe(campaign.state)}) has no failed devices: there is nothing to retry."
            )
        reasons = retries.failure_reasons(self.store, campaign)
        return RetryOrigin(campaign, tuple(d.imei for d in failed), tuple(reasons))

    async def form(self, ident: str, wave: int | None, *, user: str) -> RetryOrigin:
        """What the retry form shows, for `user`; refused before the form opens when they may
        not request, the campaign is unknown, not finished, or has no failed devices."""
        await self.campaigns.check_may_request(user)
        return self.origin(self.find(ident, wave))

    def for_submission(self, origin_id: int, shown: int) -> RetryOrigin:
        """The origin again when the form is sent: the devices must be those the form showed."""
        try:
            campaign = self.store.campaign(origin_id)
        except CampaignNotFound as exc:
            raise UserError(f"{exc}. Nothing to retry.") from exc
        origin = self.origin(campaign)
        if len(origin.failed) != shown:
            raise UserError(
                f"The failed devices of {campaign.ref} changed since this form opened ({shown:,} then, "
                f"{len(origin.failed):,} now). Close it and open it again; nothing was requested."
            )
        return origin

    async def request(self, origin: RetryOrigin, *, user: str, request: ScheduleRequest) -> Campaign:
        """The retry requested: a new request holding exactly the failed devices, linked to its origin."""
        if sorted(request.devices) != sorted(origin.failed):
            raise UserError(
                f"A retry of {origin.campaign.ref} holds exactly its {len(origin.failed):,} failed devices; "
                "nothing was requested."
            )
        permalink = await self.permalink(origin.campaign) if self.permalink is not None else None
        link = retries.RetryLink(
            campaign_id=0,  # filled in when the request is stored
            origin_id=origin.campaign.id,
            origin_ref=origin.campaign.ref,
            failed=len(origin.failed),
            origin_permalink=permalink,
            created_at=self.campaigns.clock(),
        )
        campaign = await self.campaigns.request(user=user, request=request, response_url=None, retry_of=link)
        self.events.retry_requested(origin.campaign, campaign, user, len(origin.failed))
        return campaign
