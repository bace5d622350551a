"""Campaigns ThingSpace no longer knows: counted, then marked lost, never re-read forever.

ThingSpace may answer 404 for a campaign it accepted: the sandbox forgets its campaigns when
its state is reset, and a live account can be moved or the bot's credentials changed to
another account's. Re-reading such a campaign forever helps nobody and tells nobody.

A 404 counts only when ThingSpace itself said it (its `errorCode` body: a bare 404 may be a
wrong URL or a proxy) and only once per spacing, however many callbacks asked for re-reads
meanwhile. After NOT_FOUND_READS counted 404s in a row (so at least
(NOT_FOUND_READS - 1) × NOT_FOUND_SPACING after the first) the campaign moves to `lost`, a
terminal state: the thread and the requester are told what to check, and the watchdog, which
re-reads only campaigns active at ThingSpace, leaves it alone. Any answer that is not a 404 in
between starts the count again. The count is kept in the database, so a restart neither resets
nor repeats it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Protocol

from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.errors import ThingSpaceError, ThingSpaceNotFound
from storage.model import Campaign
from storage.states import CampaignState, IllegalTransition
from storage.store import NotFoundSpell, Store

log = logging.getLogger("bot.rollout")

# Right after ThingSpace accepts a campaign its reports may not know it for a while; three
# 404s ten minutes apart are not that.
NOT_FOUND_READS = 3
NOT_FOUND_SPACING = dt.timedelta(minutes=10)


class LostEvents(Protocol):
    def lost(self, campaign: Campaign) -> None: ...


class ReReads(Protocol):
    def reconcile_soon(self, campaign_id: int, delay: float) -> None: ...


class LostCampaigns:
    def __init__(
        self,
        *,
        store: Store,
        client: ThingSpaceClient,
        events: LostEvents,
        scheduler: ReReads,
        clock: Callable[[], dt.datetime],
    ):
        self.store = store
        self.client = client
        self.events = events
        self.scheduler = scheduler
        self.clock = clock

    def counts(self, exc: ThingSpaceNotFound) -> bool:
        """Whether this 404 is ThingSpace saying it does not know the campaign."""
        return not exc.error_code.startswith("HTTP_")

    async def not_found(self, campaign: Campaign, exc: ThingSpaceNotFound) -> Campaign:
        """A re-read answered 404: count it, re-read again later, or mark the campaign lost."""
        campaign = self.store.campaign(campaign.id)
        if campaign.state.is_terminal:
            return campaign
        if not self.counts(exc):
            log.warning("%s: re-read from ThingSpace failed: %s", campaign.ref, exc)
            return campaign
        now = self.clock()
        spell = self.store.not_found_spell(campaign.id)
        if spell is not None and now - spell.last < NOT_FOUND_SPACING:
            # Asked again within the spacing (callbacks, the watchdog): not counted, not logged
            # again (once a minute for twenty minutes says nothing new), but the next counted
            # re-read must still come.
            log.debug("%s: ThingSpace still answers 404 %s", campaign.ref, exc.error_code)
            wait = spell.last + NOT_FOUND_SPACING - now
            self.scheduler.reconcile_soon(campaign.id, wait.total_seconds())
            return campaign
        assert campaign.thingspace_id
        try:
            # The device report may be missing while ThingSpace still prepares a campaign; only
            # the campaign itself answering 404 says ThingSpace does not know it.
            await self.client.get_campaign(campaign.account, campaign.thingspace_id)
        except ThingSpaceNotFound as confirmed:
            if not self.counts(confirmed):
                log.warning("%s: re-read from ThingSpace failed: %s", campaign.ref, confirmed)
                return campaign
            exc = confirmed
        except ThingSpaceError as unclear:
            # ThingSpace cannot say now; the next re-read asks again.
            log.warning("%s: re-read from ThingSpace failed: %s", campaign.ref, unclear)
            return campaign
        else:
            log.info("%s: ThingSpace knows campaign %s but answered 404 for its report (%s)",
                     campaign.ref, campaign.thingspace_id, exc.error_code)
            self.found(campaign)
            return campaign
        reads = 1 if spell is None else spell.reads + 1
        first = now if spell is None else spell.first
        if reads < NOT_FOUND_READS:
            self.store.record_not_found(campaign.id, NotFoundSpell(first, now, reads))
            log.warning(
                "%s: ThingSpace does not know campaign %s (%s); re-read %d of %d before it is "
                "marked lost",
                campaign.ref,
                campaign.thingspace_id,
                exc.error_code,
                reads,
                NOT_FOUND_READS,
            )
            self.scheduler.reconcile_soon(campaign.id, NOT_FOUND_SPACING.total_seconds())
            return campaign
        reason = (
            f"ThingSpace answered 404 {exc.error_code} to {reads} re-reads since "
            f"{first.isoformat(timespec='minutes')}"
        )
        try:
            # One transaction: the state and the telling of it together.
            with self.store.atomic():
                lost = self.store.transition(
                    campaign.id,
                    CampaignState.LOST,
                    actor="reconcile",
                    reason=reason,
                    error_code=exc.error_code,
                    error_message=exc.error_message,
                )
                self.store.end_not_found_spell(campaign.id)
                self.events.lost(lost)
        except IllegalTransition:
            # It ended meanwhile (a cancel, ThingSpace's own end): that outcome stands.
            self.found(campaign)
            return self.store.campaign(campaign.id)
        log.warning("%s lost: %s; no longer followed", lost.ref, reason)
        return lost

    def found(self, campaign: Campaign) -> None:
        """A re-read was answered: any spell of 404s is over."""
        if self.store.not_found_spell(campaign.id) is not None:
            self.store.end_not_found_spell(campaign.id)
