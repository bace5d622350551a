"""Operator services behind `/fota status | list | cancel | firmware | devices` and the App Home.

The listeners in `commands/listeners/operator.py` call these and render the answers with the
pure builders in `commands.blocks`. Slack I/O an answer needs (a permalink, the CSV shared in a
direct message, the Home tab) is done here through the same Web API client Bolt uses, so the
listeners stay thin.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.notify.reports import devices_csv_off_loop, excluded_csv_off_loop
from bot.settings import Settings
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.errors import ThingSpaceError, ThingSpaceRejected, for_users
from bot.workflow.approvers import Directory
from bot.workflow.campaigns import describe
from bot.workflow.errors import UserError
from bot.workflow.staged import StagedRollouts
from bot.workflow.wave_figures import wave_states
from storage import history, preflight, waves
from storage.findings import PreflightRecord
from storage.history import HistoryEntry
from storage.model import Campaign, CampaignNotFound, CancelKind, Decision, Device
from storage.states import ACTIVE_AT_THINGSPACE, CampaignState, IllegalTransition
from storage.store import Store

log = logging.getLogger("bot.operations")

S = CampaignState

# ThingSpace may cancel only these (before the campaign starts; after, it may refuse or abort).
CANCELLABLE_AT_THINGSPACE = frozenset(
    {S.SUBMITTED, S.REQUEST_PENDING, S.REQUEST_QUEUED, S.PRE_SCHEDULED, S.SCHEDULED}
)
# On the Home tab: everything past the approval that has not ended.
HOME_ACTIVE = frozenset({S.APPROVED, S.SUBMITTING, S.ROLLING_OUT, *ACTIVE_AT_THINGSPACE})
DEVICE_SAMPLE = 10
LIST_PAGE = 10
# Slack's trigger_id lives 3 s: the form waits this long for the firmware list, then opens with
# a typed field; a list read is kept this long for the next form.
FORM_FIRMWARE_WAIT = 1.5
FORM_FIRMWARE_TTL = 300.0



class CancelEvents(Protocol):
    def withdrawn(self, campaign: Campaign, user: str) -> None: ...

    def cancelled(self, campaign: Campaign, user: str) -> None: ...

    def cancel_refused(self, campaign: Campaign, code: str, message: str) -> None: ...


@dataclass(frozen=True)
class CampaignView:
    """One campaign with what its cards show: device counts per state, decisions, a sample."""

    campaign: Campaign
    counts: dict[str, int]
    decisions: list[Decision]
    sample: tuple[str, ...] = ()
    permalink: str | None = None
    # Who made the last state change (the audit's actor): a withdrawal's stamp names them.
    last_actor: str | None = None
    # Why pre-flight does not allow approving it now (checking, failed, blocked), or None.
    not_approvable: str | None = None
    # The pre-flight record, so the App Home shows the card's findings and buttons.
    preflight: PreflightRecord | None = None
    # A staged rollout's plan, so whoever approves from the App Home sees the waves they approve.
    plan: waves.StoredPlan | None = None
    # A staged rollout under way or over: its last started wave, and what the row of waves shows.
    current_wave: waves.WaveTally | None = None
    wave_states: Mapping[int, tuple[str, int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class ListPage:
    scope: str
    items: list[CampaignView]
    # The `before_id` of the next page; None on the last page.
    next_before: int | None
    first_page: bool


@dataclass(frozen=True)
class DeviceListing:
    campaign: Campaign
    counts: dict[str, int]
    devices: list[Device]
    total: int
    failed_only: bool = False


@dataclass(frozen=True)
class SharedFile:
    """The per-device CSV as shared with the user: its name and where to find it."""

    name: str
    rows: int
    permalink: str | None
    # Why Slack did not take it; the answer still shows the devices and says so.
    error: str | None = None


@dataclass(frozen=True)
class CancelOutcome:
    """What a cancel did: `withdrawn` (never sent), `cancelled` at ThingSpace, or `refused` by
    ThingSpace with its errorCode and errorMessage, word for word."""

    campaign: Campaign
    result: Literal["withdrawn", "cancelled", "refused", "halted"]
    error_code: str | None = None
    error_message: str | None = None
    # A staged rollout halted: what the halt did, wave by wave.
    said: str | None = None


@dataclass(frozen=True)
class Home:
    """What one user's App Home shows."""

    user: str
    may_approve: bool
    to_decide: list[CampaignView]
    mine_waiting: list[CampaignView]
    active: list[CampaignView]
    totals: Mapping[str, int] = field(default_factory=dict)


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
        slack: AsyncWebClient | None = None,
        staged: StagedRollouts | None = None,
    ):
        self.staged = staged
        self.settings = settings
        self.store = store
        self.thingspace = thingspace
        self.directory = directory
        self.events = events
        self.clock = clock
        self.slack = slack
        self._form_firmware: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    # --- lookups -----------------------------------------------------------------------------

    def find(self, ident: str) -> Campaign:
        try:
            return self.store.find_campaign(ident)
        except CampaignNotFound as exc:
            raise UserError(str(exc)) from exc

    def _view(self, campaign: Campaign, *, sample: bool = False) -> CampaignView:
        plan = waves.plan_of(self.store, campaign.id)
        tallies = waves.tally(self.store, campaign.id) if plan is not None else []
        started = [w for w in tallies if w.started]
        return CampaignView(
            campaign,
            self.store.device_counts(campaign.id),
            self.store.decisions(campaign.id),
            tuple(d.imei for d in self.store.devices(campaign.id, limit=DEVICE_SAMPLE)) if sample else (),
            not_approvable=self.store.preflight_refusal(campaign.id)
            if campaign.state is S.PENDING_APPROVAL
            else None,
            # Also after the decision: the stamp and the campaign card say who narrowed or
            # overrode the device set.
            preflight=preflight.load(self.store, campaign.id),
            plan=plan,
            current_wave=started[-1] if started else None,
            wave_states=wave_states(plan.plan, tallies) if plan is not None else {},
        )

    def view(self, ident: str) -> CampaignView:
        return self._view(self.find(ident), sample=True)

    async def status(self, ident: str) -> CampaignView:
        """`/fota status`: the campaign as its thread root shows it, and a link to the thread."""
        view = self.view(ident)
        audit = self.store.audit(view.campaign.id)
        return CampaignView(
            view.campaign,
            view.counts,
            view.decisions,
            view.sample,
            await self.permalink(view.campaign),
            audit[-1]["actor"] if audit else None,
            preflight=view.preflight,
            plan=view.plan,
            current_wave=view.current_wave,
            wave_states=view.wave_states,
        )

    def history(self, ident: str) -> tuple[Campaign, list[HistoryEntry]]:
        """`/fota history` and the History button: the campaign's audit trail, oldest first."""
        campaign = self.find(ident)
        return campaign, history.load(self.store, campaign.id)

    def list_campaigns(self, *, scope: str, user: str, before_id: int | None = None, limit: int = LIST_PAGE) -> ListPage:
        """One page of `/fota list`, newest first; one row more than shown tells if there is a next."""
        # A staged request is one row with its current wave, not a row per wave's campaign.
        rows = self.store.list_campaigns(
            scope=scope, user=user, before_id=before_id, limit=limit + 1, requests_only=True
        )
        shown = rows[:limit]
        next_before = shown[-1].id if len(rows) > limit else None
        items = [self._list_view(c) for c in shown]
        return ListPage(scope, items, next_before, first_page=before_id is None)

    def _list_view(self, campaign: Campaign) -> CampaignView:
        current = waves.current_wave(self.store, campaign.id)
        return CampaignView(campaign, self.store.device_counts(campaign.id), [], current_wave=current)

    def devices(self, ident: str, *, failed_only: bool, limit: int = 20) -> DeviceListing:
        campaign = self.find(ident)
        counts = self.store.device_counts(campaign.id)
        shown = self.store.devices(campaign.id, failed_only=failed_only, limit=limit)
        total = counts["failed"] if failed_only else sum(counts.values())
        return DeviceListing(campaign, counts, shown, total, failed_only)

    async def firmware_for_form(self, *, within: float = FORM_FIRMWARE_WAIT) -> list[dict[str, Any]] | None:
        """The default account's LWM2M firmware list for the schedule form, or None when it is
        not had within `within` seconds: the form must open within Slack's 3-second trigger
        life, and then offers a typed field instead. Kept for FORM_FIRMWARE_TTL, so that a form
        opened again soon opens at once."""
        account = self.settings.thingspace_account
        cached = self._form_firmware.get(account)
        if cached is not None and time.monotonic() - cached[0] < FORM_FIRMWARE_TTL:
            return cached[1]
        try:
            entries = await asyncio.wait_for(self.thingspace.list_firmware(account, "LWM2M"), within)
        except (TimeoutError, ThingSpaceError) as exc:
            log.info("the schedule form opens with a typed firmware field: the firmware list of %s "
                     "was not had in time (%s)", account, type(exc).__name__)
            return None
        self._form_firmware[account] = (time.monotonic(), entries)
        return entries

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
            log.warning("firmware list for %s failed: %s", account, exc)
            raise UserError(f"ThingSpace's firmware list for account {account} could not be read: {for_users(exc)}.") from exc

    # --- cancel --------------------------------------------------------------------------------

    async def may_cancel(self, campaign: Campaign, user: str) -> bool:
        # With FOTA_APPROVERS unset everybody "may approve"; that must not let anybody cancel.
        return user == campaign.requester or (
            bool(self.settings.approvers) and await self.directory.may_approve(user)
        )

    async def check_cancel(self, ident: str, user: str) -> Campaign:
        """The campaign a cancel would act on; UserError when it cannot or may not."""
        campaign = self.find(ident)
        if campaign.parent_id is not None:
            # A wave is cancelled as part of its rollout: halted, so that no later wave follows it.
            campaign = self.store.campaign(campaign.parent_id)
        if not await self.may_cancel(campaign, user):
            raise UserError(
                f"Only the requester (<@{campaign.requester}>) or an approver may cancel {campaign.ref}. "
                "Nothing changed."
            )
        if campaign.state.is_terminal:
            raise UserError(f"{campaign.ref} is {describe(campaign.state)} already; there is nothing to cancel.")
        if campaign.state is S.HALTED and not self._waves_at_thingspace(campaign):
            raise UserError(
                f"{campaign.ref} is halted already: no further wave is sent. An approver can resume it; "
                "`/fota status` shows its waves."
            )
        if campaign.state in (S.APPROVED, S.SUBMITTING):
            raise UserError(
                f"{campaign.ref} is being sent to ThingSpace right now. Try again in a minute, once "
                "ThingSpace has answered."
            )
        return campaign

    def _waves_at_thingspace(self, campaign: Campaign) -> list[int]:
        """A halted rollout's waves ThingSpace still holds: a halt by hand cancels only the waves
        that had not started, so a started one goes on until someone asks ThingSpace to stop it."""
        return waves.live_waves(self.store, campaign.id, tuple(CANCELLABLE_AT_THINGSPACE))

    @staticmethod
    def cancel_kind(campaign: Campaign) -> CancelKind:
        if campaign.state is S.PENDING_APPROVAL:
            return "withdraw"
        return "halt" if campaign.state in (S.ROLLING_OUT, S.HALTED) else "thingspace"

    async def cancel(self, ident: str, *, user: str, shown: CancelKind | None = None) -> CancelOutcome:
        """Withdraw a request, or ask ThingSpace to cancel a campaign.

        Authorization is checked again here, at the click, not only when the prompt was shown.
        `shown` is what the confirmation promised (`withdraw`: never sent; `thingspace`: a
        DELETE at ThingSpace). A campaign that moved from one to the other since is not
        cancelled on the strength of the old words, as an approval is refused when the request
        changed.
        """
        campaign = await self.check_cancel(ident, user)
        kind = self.cancel_kind(campaign)
        if shown is not None and shown != kind:
            raise UserError(
                f"{campaign.ref} was approved and sent to ThingSpace after you asked to cancel it, so "
                f"nothing was cancelled. Run `/fota cancel {campaign.ref}` again to cancel it at ThingSpace."
            )
        if kind == "withdraw":
            try:
                campaign = self.store.transition(
                    campaign.id, S.WITHDRAWN, actor=user, reason="cancelled before approval"
                )
            except IllegalTransition as exc:
                # Decided in the moment between the check and the write (another click, an expiry).
                current = self.store.campaign(campaign.id)
                raise UserError(f"{current.ref} is {describe(current.state)} now; nothing changed.") from exc
            self.events.withdrawn(campaign, user)
            return CancelOutcome(campaign, "withdrawn")
        if kind == "halt":
            if self.staged is None:
                raise UserError(f"{campaign.ref} is a staged rollout, which cannot be halted here. Nothing changed.")
            if campaign.state is S.HALTED:
                # Halted already: what is left is asking ThingSpace to cancel each wave it still holds.
                outcomes = await self.staged.cancel_unstarted(campaign.id, by=user, started_too=True)
                said = " ".join(outcomes) or f"{campaign.ref} is halted; ThingSpace holds none of its waves now."
                return CancelOutcome(self.store.campaign(campaign.id), "halted", said=said)
            said = await self.staged.halt(
                campaign.id, user=user, reason="cancelled with /fota cancel", kind="cancel", wait=True
            )
            return CancelOutcome(self.store.campaign(campaign.id), "halted", said=said)
        assert campaign.thingspace_id and campaign.state in CANCELLABLE_AT_THINGSPACE
        try:
            answer = await self.thingspace.cancel_campaign(campaign.account, campaign.thingspace_id)
            if answer.get("success") is False:
                # The documented answer is {"success": true}; anything else is not a cancellation.
                raise ThingSpaceRejected(200, "CANCEL_NOT_CONFIRMED", f"ThingSpace answered {answer}")
        except ThingSpaceRejected as exc:
            self.events.cancel_refused(campaign, exc.error_code, exc.error_message)
            return CancelOutcome(campaign, "refused", exc.error_code, exc.error_message)
        except ThingSpaceError as exc:
            raise UserError(
                f"ThingSpace could not be reached to cancel {campaign.ref}: {for_users(exc)}. Nothing changed."
            ) from exc
        current = self.store.campaign(campaign.id)
        if current.state.is_terminal:
            # A second click, or ThingSpace's callback came first: say it once in the thread.
            return CancelOutcome(current, "cancelled")
        with self.store.atomic():  # the state and the thread's news, together
            campaign = self.store.transition(
                campaign.id,
                S.CANCELLED,
                actor=user,
                reason="cancelled at ThingSpace",
                thingspace_status=S.CANCELLED.value,
            )
            self.events.cancelled(campaign, user)
        return CancelOutcome(campaign, "cancelled")

    # --- App Home ------------------------------------------------------------------------------

    async def home(self, user: str, *, limit: int = 10, active_limit: int = 15) -> Home:
        """The user's Home tab: requests they may decide, their own waiting requests, and the
        campaigns under way, newest first."""
        may_approve = await self.directory.may_approve(user)
        pending = list(reversed(self.store.campaigns_in((S.PENDING_APPROVAL,))))
        decide = [c for c in pending if may_approve and c.requester != user]
        mine = [c for c in pending if c.requester == user]
        # A staged request is one row with its current wave; its waves' campaigns are not rows.
        active = sorted(
            (c for c in self.store.campaigns_in(HOME_ACTIVE) if c.parent_id is None), key=lambda c: c.id, reverse=True
        )
        return Home(
            user=user,
            may_approve=may_approve,
            to_decide=[self._view(c, sample=True) for c in decide[:limit]],
            mine_waiting=[self._view(c) for c in mine[:limit]],
            active=[self._view(c) for c in active[:active_limit]],
            totals={"to_decide": len(decide), "mine_waiting": len(mine), "active": len(active)},
        )

    async def publish_home(self, user: str, view: dict[str, Any]) -> None:
        """Publish `user`'s Home tab (views.publish replaces the whole tab)."""
        await self._slack().views_publish(user_id=user, view=view)

    # --- Slack side ----------------------------------------------------------------------------

    def _slack(self) -> AsyncWebClient:
        if self.slack is None:
            raise RuntimeError("Operations was built without a Slack client")
        return self.slack

    async def permalink(self, campaign: Campaign) -> str | None:
        """A link to the campaign's thread; None before the card is posted or when Slack fails
        (the answer is still useful without it)."""
        if not campaign.approval_channel or not campaign.thread_ts or self.slack is None:
            return None
        try:
            answer = await self.slack.chat_getPermalink(
                channel=campaign.approval_channel, message_ts=campaign.thread_ts
            )
        except SlackApiError as exc:
            log.warning("%s: no permalink from Slack: %s", campaign.ref, exc.response.get("error"))
            return None
        link = answer.get("permalink")
        return str(link) if link else None

    async def share_devices_csv(self, listing: DeviceListing, user: str) -> SharedFile | None:
        """The whole device list (or every failed device) as a CSV in the user's direct
        message with the bot; None when there is nothing to send."""
        if listing.total == 0:
            return None
        campaign = listing.campaign
        suffix = "failed-devices" if listing.failed_only else "devices"
        name = f"{campaign.ref}-{suffix}.csv"
        content = await devices_csv_off_loop(self.store, campaign, failed_only=listing.failed_only)
        slack = self._slack()
        try:
            # files_upload_v2 shares into a channel id; a user's DM id comes from conversations.open.
            opened = await slack.conversations_open(users=user)
            channel = opened["channel"]["id"]
            answer = await slack.files_upload_v2(
                channel=channel,
                filename=name,
                title=f"{campaign.ref} {'failed devices' if listing.failed_only else 'devices'}",
                content=content,
                initial_comment=f"Ref {campaign.ref}: {listing.total:,} "
                f"{'failed ' if listing.failed_only else ''}device{'s' if listing.total != 1 else ''}, "
                "as asked with /fota devices.",
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "no answer")
            log.warning("%s: the devices CSV was not shared with %s: %s", campaign.ref, user, error)
            return SharedFile(name, listing.total, None, error)
        files = answer.get("files") or [answer.get("file") or {}]
        permalink = files[0].get("permalink") if files and isinstance(files[0], dict) else None
        return SharedFile(name, listing.total, str(permalink) if permalink else None)

    async def share_excluded_csv(self, campaign_id: int, user: str) -> SharedFile | None:
        """The devices pre-flight excluded, each with its reasons, as a CSV in the user's
        direct message with the bot (like `/fota devices`: a file only the clicker asked for
        does not belong in the shared thread, and a double click does not post it twice there);
        None when nothing was excluded."""
        try:
            campaign = self.store.campaign(campaign_id)
        except CampaignNotFound as exc:
            raise UserError(str(exc)) from exc
        content, rows = await excluded_csv_off_loop(self.store, campaign)
        if rows == 0:
            return None
        name = f"{campaign.ref}-excluded-devices.csv"
        slack = self._slack()
        try:
            opened = await slack.conversations_open(users=user)
            answer = await slack.files_upload_v2(
                channel=opened["channel"]["id"],
                filename=name,
                title=f"{campaign.ref} devices excluded by pre-flight",
                content=content,
                initial_comment=f"Ref {campaign.ref}: {rows:,} device{'s' if rows != 1 else ''} "
                "pre-flight excluded, each with its reasons, as asked from the approval card.",
            )
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "no answer")
            log.warning("%s: the excluded devices CSV was not shared with %s: %s", campaign.ref, user, error)
            return SharedFile(name, rows, None, error)
        files = answer.get("files") or [answer.get("file") or {}]
        permalink = files[0].get("permalink") if files and isinstance(files[0], dict) else None
        return SharedFile(name, rows, str(permalink) if permalink else None)
