"""Operator services behind `/fota status | list | cancel | firmware | devices`."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.settings import Settings
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.errors import ThingSpaceError, ThingSpaceRejected
from bot.workflow.approvers import Directory
from bot.workflow.campaigns import describe
from bot.workflow.errors import UserError
from storage.records import Campaign, Decision, Device
from storage.states import CampaignState
from storage.store import CampaignNotFound, Store

log = logging.getLogger("bot.operations")

S = CampaignState

# ThingSpace may cancel only these (before the campaign starts; after, it may refuse or abort).
CANCELLABLE_AT_THINGSPACE = frozenset(
    {S.SUBMITTED, S.REQUEST_PENDING, S.REQUEST_QUEUED, S.PRE_SCHEDULED, S.SCHEDULED}
)


class CancelEvents(Protocol):
    def withdrawn(self, campaign: Campaign, user: str) -> None: ...

    def cancelled(self, campaign: Campaign, user: str) -> None: ...

    def cancel_refused(self, campaign: Campaign, code: str, message: str) -> None: ...


@dataclass(frozen=True)
class CampaignView:
    campaign: Campaign
    counts: dict[str, int]
    decisions: list[Decision]


@dataclass(frozen=True)
class DeviceListing:
    campaign: Campaign
    counts: dict[str, int]
    devices: list[Device]
    total: int


class Operations:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        thingspace: ThingSpaceClient,
        directory: Directory,
        events: CancelEvents,
        clock: Callable[[], dt.datetime],
    ):
        self.settings = settings
        self.store = store
        self.thingspace = thingspace
        self.directory = directory
        self.events = events
        self.clock = clock

    def find(self, ident: str) -> Campaign:
        try:
            return self.store.find_campaign(ident)
        except CampaignNotFound as exc:
            raise UserError(str(exc)) from exc

    def view(self, ident: str) -> CampaignView:
        campaign = self.find(ident)
        return CampaignView(campaign, self.store.device_counts(campaign.id), self.store.decisions(campaign.id))

    def list(self, *, scope: str, user: str, before_id: int | None = None, limit: int = 10) -> list[Campaign]:
        return self.store.list_campaigns(scope=scope, user=user, before_id=before_id, limit=limit)

    def devices(self, ident: str, *, failed_only: bool, limit: int = 20) -> DeviceListing:
        campaign = self.find(ident)
        devices = self.store.devices(campaign.id, failed_only=failed_only)
        return DeviceListing(campaign, self.store.device_counts(campaign.id), devices[:limit], len(devices))

    async def firmware(self, account: str | None, protocol: str = "LWM2M") -> tuple[str, list[dict[str, Any]]]:
        account = account or self.settings.thingspace_account
        try:
            return account, await self.thingspace.list_firmware(account, protocol)
        except ThingSpaceRejected as exc:
            raise UserError(
                f"ThingSpace refused the firmware list for account {account}: "
                f"{exc.error_code}: {exc.error_message}"
            ) from exc
        except ThingSpaceError as exc:
            raise UserError(f"ThingSpace's firmware list for account {account} could not be read: {exc}") from exc

    async def may_cancel(self, campaign: Campaign, user: str) -> bool:
        return user == campaign.requester or (
            bool(self.settings.approvers) and await self.directory.may_approve(user)
        )

    async def check_cancel(self, ident: str, user: str) -> Campaign:
        """The campaign a cancel would act on; UserError when it cannot or may not."""
        campaign = self.find(ident)
        if not await self.may_cancel(campaign, user):
            raise UserError(
                f"Only the requester (<@{campaign.requester}>) or an approver may cancel {campaign.ref}. "
                "Nothing changed."
            )
        if campaign.state.is_terminal:
            raise UserError(f"{campaign.ref} is {describe(campaign.state)} already; there is nothing to cancel.")
        if campaign.state in (S.APPROVED, S.SUBMITTING):
            raise UserError(
                f"{campaign.ref} is being sent to ThingSpace right now. Try again in a minute, once "
                "ThingSpace has answered."
            )
        return campaign

    async def cancel(self, ident: str, *, user: str) -> str:
        """Withdraw a request, or ask ThingSpace to cancel a campaign. Returns the sentence to show."""
        campaign = await self.check_cancel(ident, user)
        if campaign.state is S.PENDING_APPROVAL:
            campaign = self.store.transition(
                campaign.id, S.WITHDRAWN, actor=user, reason="cancelled before approval"
            )
            self.events.withdrawn(campaign, user)
            return f"{campaign.ref} was withdrawn before approval; nothing was sent to ThingSpace."
        assert campaign.thingspace_id and campaign.state in CANCELLABLE_AT_THINGSPACE
        try:
            await self.thingspace.cancel_campaign(campaign.account, campaign.thingspace_id)
        except ThingSpaceRejected as exc:
            self.events.cancel_refused(campaign, exc.error_code, exc.error_message)
            return (
                f"ThingSpace refused to cancel {campaign.ref}: {exc.error_code}: {exc.error_message}. "
                "The campaign goes on."
            )
        except ThingSpaceError as exc:
            raise UserError(
                f"ThingSpace could not be reached to cancel {campaign.ref} ({exc}). Nothing changed; try again."
            ) from exc
        campaign = self.store.campaign(campaign.id)
        if not campaign.state.is_terminal:
            campaign = self.store.transition(
                campaign.id,
                S.CANCELLED,
                actor=user,
                reason="cancelled at ThingSpace",
                thingspace_status=S.CANCELLED.value,
            )
        self.events.cancelled(campaign, user)
        return f"ThingSpace cancelled {campaign.ref}."
