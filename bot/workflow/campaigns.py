"""Campaign requests and approvers' decisions: the services the Slack listeners call."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, Protocol

from bot.background import Background
from bot.settings import Settings
from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.errors import ThingSpaceError, for_users
from bot.workflow.approvers import Directory, MembershipUnknown
from bot.workflow.errors import UserError
from bot.workflow.preflight import PreflightRunner
from bot.workflow.staged import StagedRollouts
from bot.workflow.submission import Submitter
from storage import retries
from storage.findings import PreflightRecord
from storage.model import (
    ApprovalOutcome,
    ApprovalResult,
    Campaign,
    CampaignNotFound,
    NotApproved,
    Problem,
    RequestError,
    ScheduleRequest,
)
from storage.states import STATE_WORDS, CampaignState
from storage.store import Store

log = logging.getLogger("bot.campaigns")

S = CampaignState


class CampaignEvents(Protocol):
    """What the thread, the requester and the card are told (implemented by the notifier)."""

    def requested(self, campaign: Campaign, response_url: str | None) -> None: ...

    def approval_recorded(self, campaign: Campaign, user: str) -> None: ...

    def approved(self, campaign: Campaign) -> None: ...

    def rejected(self, campaign: Campaign, user: str, reason: str) -> None: ...

    def withdrawn(self, campaign: Campaign, user: str) -> None: ...

    def expired(self, campaign: Campaign) -> None: ...

    def reminder(self, campaign: Campaign) -> None: ...


class ApprovalTimers(Protocol):
    def schedule_approval_timers(self, campaign: Campaign) -> None: ...


def distinct_prefixes(first: str, second: str, *, least: int = 12) -> tuple[str, str]:
    """The two hashes cut as short as the card shows them (12) but never so short that they
    read the same: two different hashes are never shown as one value."""
    length = least
    while length < max(len(first), len(second)) and first[:length] == second[:length]:
        length += 4
    return first[:length], second[:length]


class CampaignService:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        thingspace: ThingSpaceClient,
        directory: Directory,
        submitter: Submitter,
        events: CampaignEvents,
        timers: ApprovalTimers,
        background: Background,
        clock: Callable[[], dt.datetime],
        preflight: PreflightRunner | None = None,
        staged: StagedRollouts | None = None,
    ):
        self.settings = settings
        self.staged = staged
        self.preflight = preflight
        self.store = store
        self.thingspace = thingspace
        self.directory = directory
        self.submitter = submitter
        self.events = events
        self.timers = timers
        self.background = background
        self.clock = clock

    def today(self) -> dt.date:
        return self.clock().astimezone(dt.UTC).date()

    # --- requests ----------------------------------------------------------------------------

    async def check_may_request(self, user: str) -> None:
        if not await self.directory.may_request(user):
            raise UserError(
                "You are not on the list of people who may request firmware campaigns "
                "(FOTA_REQUESTERS). Nothing was created; ask the operator to add you."
            )

    async def request(
        self,
        *,
        user: str,
        request: ScheduleRequest,
        response_url: str | None,
        retry_of: retries.RetryLink | None = None,
    ) -> Campaign:
        """Store a validated request and post it for approval. Raises UserError / RequestError.
        `retry_of`: it retries another campaign's failed devices, linked to it."""
        await self.check_may_request(user)
        account = request.account or self.settings.thingspace_account
        firmware_from, firmware_to = request.firmware_from, request.firmware_to
        if firmware_from is None or firmware_to is None:
            firmware_from, firmware_to = await self._fill_from_catalogue(account, request)
        campaign = await self.store.store_request(
            requester=user,
            account=account,
            firmware_name=request.firmware,
            firmware_from=firmware_from,
            firmware_to=firmware_to,
            protocol=request.protocol,
            start_date=request.start_date,
            end_date=request.end_date,
            windows=request.windows,
            name=request.name,
            devices=request.devices,
            sandbox=self.settings.sandbox_mode,
            expires_at=self.clock() + self.settings.approval_ttl,
            notes=request.notes,
            response_url=response_url,
            licence_auto=request.licence_auto,
            plan=request.plan,
        )
        if retry_of is not None:
            # Linked before anything is told (nothing awaits in between): the card says it is a
            # retry from the first time it is posted.
            retries.record(self.store, replace(retry_of, campaign_id=campaign.id))
        log.info("%s requested by %s: %d devices", campaign.ref, user, campaign.device_count)
        if self.preflight is not None:
            # Marked "checking" before the card is posted, so no card ever offers Approve
            # for content whose findings are not known yet; the checks run after the ack.
            self.preflight.start(campaign)
        self.events.requested(campaign, response_url)
        self.timers.schedule_approval_timers(campaign)
        return campaign

    async def _fill_from_catalogue(self, account: str, request: ScheduleRequest) -> tuple[str, str]:
        try:
            catalogue = await self.thingspace.list_firmware(account, request.protocol)
        except ThingSpaceError as exc:
            raise UserError(
                f"`from` and `to` were left out, and ThingSpace's firmware list for account {account} "
                f"could not be read ({for_users(exc)}). Give `from=` and `to=` explicitly, or try again."
            ) from exc
        matches = [f for f in catalogue if f.get("firmwareName") == request.firmware]
        if len(matches) == 1:
            return str(matches[0]["firmwareFrom"]), str(matches[0]["firmwareTo"])
        if not matches:
            rule = (
                f"is not in account {account}'s firmware list for {request.protocol}; "
                "`/fota firmware` lists what the account may install"
            )
        else:
            pairs = ", ".join(f"{m.get('firmwareFrom')} → {m.get('firmwareTo')}" for m in matches[:5])
            rule = f"names {len(matches)} entries of the firmware list ({pairs}); give `from=` and `to=`"
        raise RequestError([Problem("firmware", request.firmware, rule)])

    # --- decisions ---------------------------------------------------------------------------

    def _campaign(self, campaign_id: int) -> Campaign:
        try:
            return self.store.campaign(campaign_id)
        except CampaignNotFound as exc:
            raise UserError(str(exc)) from exc

    async def current_approvers(self, campaign_id: int) -> frozenset[str] | None:
        """Who of those who approved `campaign_id` (a wave: its request) are approvers now."""
        return await self._approvers_now(self.store.campaign(campaign_id))

    async def _approvers_now(self, campaign: Campaign) -> frozenset[str] | None:
        if not self.directory.approvers:
            return None  # FOTA_APPROVERS unset: anyone may approve, whoever approved counts
        # A campaign's parent never changes, so a campaign read before an await still names it.
        root = campaign.parent_id if campaign.parent_id is not None else campaign.id
        return await self.directory.still_approvers(self.store.approval_authors(root))

    async def _counted_approvers(self, campaign: Campaign) -> frozenset[str] | None:
        """`current_approvers` for a click: when Slack cannot list a group, nothing is recorded
        (an approval lapsed for a Slack hiccup would blame a removal that never happened)."""
        try:
            return await self._approvers_now(campaign)
        except MembershipUnknown as exc:
            raise UserError(_membership_unknown(exc)) from exc

    async def _refuse_non_decider(self, campaign: Campaign, user: str, requester_cannot: str) -> None:
        """The requester never decides on their own request; only approvers decide at all."""
        if user == campaign.requester:
            raise UserError(f"You requested {campaign.ref}, so you cannot {requester_cannot}. Nothing changed.")
        try:
            may_approve = await self.directory.may_approve_checked(user)
        except MembershipUnknown as exc:
            raise UserError(_membership_unknown(exc)) from exc
        if not may_approve:
            raise UserError(
                f"Only the approvers named in FOTA_APPROVERS may decide on {campaign.ref}, and you are not "
                "one of them. Nothing changed."
            )

    async def check_may_decide(self, campaign_id: int, *, user: str) -> Campaign:
        """Refuse early (before a modal opens) anyone who may not approve or reject."""
        campaign = self._campaign(campaign_id)
        await self._refuse_non_decider(campaign, user, "decide on it; withdraw it instead")
        if campaign.state is not S.PENDING_APPROVAL:
            raise UserError(f"{campaign.ref} is {describe(campaign.state)} already; nothing changed.")
        return campaign

    async def approve(self, campaign_id: int, *, user: str, shown_hash: str, eligible_only: bool = False) -> str:
        """Record one approval; returns the sentence for the approver. Raises UserError.

        `eligible_only` (the card's "Approve eligible only"): narrow the request to the devices
        pre-flight found eligible and approve that narrowed content, in one transaction.
        Pre-flight's refusals (still checking, blocking findings) come from the store's guard.
        """
        campaign = self._campaign(campaign_id)
        await self._refuse_non_decider(campaign, user, "approve it; another approver must")
        required = self.settings.required_approvals
        scope = ""
        # Approvals count only while their authors are approvers (someone removed from
        # FOTA_APPROVERS since, or from its group, no longer counts).
        current = await self._counted_approvers(campaign)
        # The decision and the thread's news of it are one transaction.
        with self.store.atomic():
            try:
                if eligible_only:
                    if self.preflight is None:
                        raise UserError("Pre-flight checks are not running here; use Approve. Nothing changed.")
                    narrowed = self.preflight.narrow_and_approve(
                        campaign_id, user=user, shown_hash=shown_hash, required=required,
                        current_approvers=current,
                    )
                    result = narrowed.result
                    if narrowed.dropped:
                        scope = f" (its {narrowed.kept:,} eligible devices; {narrowed.dropped:,} left out)"
                else:
                    result = self.store.record_approval(
                        campaign_id, user=user, shown_hash=shown_hash, required=required,
                        current_approvers=current,
                    )
            except NotApproved as exc:
                raise UserError(f"{exc}. Nothing changed.") from exc
            if result.outcome is ApprovalOutcome.RECORDED:
                log.info("%s approval by %s recorded: %d of %d", result.campaign.ref, user, result.approvals, required)
                self.events.approval_recorded(result.campaign, user)
            elif result.outcome is ApprovalOutcome.APPROVED:
                self.events.approved(result.campaign)
        return self._approval_answer(result, shown_hash, required, scope)

    def _approval_answer(self, result: ApprovalResult, shown_hash: str, required: int, scope: str) -> str:
        """The approver's answer to an approval (plain, narrowed or widened); raises UserError."""
        campaign = result.campaign
        match result.outcome:
            case ApprovalOutcome.STALE:
                shown, current = distinct_prefixes(shown_hash, campaign.content_hash)
                raise UserError(
                    f"{campaign.ref} changed after this card was shown (the card says request hash "
                    f"{shown}, the request is now {current}). Nothing was approved; look at the current card."
                )
            case ApprovalOutcome.CLOSED:
                if campaign.state is S.PENDING_APPROVAL:
                    raise UserError(
                        f"{campaign.ref} expired at {campaign.expires_at:%Y-%m-%d %H:%M} UTC, before this "
                        "approval; nothing changed. The requester can ask again."
                    )
                raise UserError(f"{campaign.ref} is {describe(campaign.state)} already; nothing changed.")
            case ApprovalOutcome.DUPLICATE:
                return f"You already approved {campaign.ref} ({result.approvals} of {required})."
            case ApprovalOutcome.RECORDED:
                return (
                    f"Your approval of {campaign.ref}{scope} is recorded: {result.approvals} of {required}. "
                    "It goes to ThingSpace when the last approver approves."
                )
            case ApprovalOutcome.APPROVED:
                if self.staged is not None and self.staged.planned(campaign.id):
                    # A staged rollout is never sent whole: its first wave goes now.
                    self.staged.start(campaign.id)
                    return f"You approved {campaign.ref}{scope}; its first wave is being sent to ThingSpace now."
                self.background.spawn(self.submitter.submit(campaign.id), name=f"submit {campaign.ref}")
                return f"You approved {campaign.ref}{scope}; it is being sent to ThingSpace now."
        raise AssertionError(result.outcome)

    async def override_form(self, campaign_id: int, *, user: str, shown_hash: str) -> tuple[Campaign, PreflightRecord]:
        """What "Include excluded devices…" shows, checked before its modal opens: who may decide,
        the card still current, and excluded devices there to include. Raises UserError."""
        campaign = await self.check_may_decide(campaign_id, user=user)
        self._refuse_override_of_plan(campaign)
        if shown_hash != campaign.content_hash:
            raise UserError(f"{campaign.ref} changed after this card was shown; nothing changed. Look at the current card.")
        record = self.preflight.record(campaign_id) if self.preflight is not None else None
        if record is None or not record.approvable or record.summary is None:
            raise UserError(f"{campaign.ref} has no finished pre-flight findings to override. Nothing changed.")
        if record.excluded_pending == 0 or record.summary.includable == 0:
            raise UserError(f"{campaign.ref} has no excluded device left to include. Nothing changed.")
        return campaign, record

    async def include_excluded(
        self, campaign_id: int, *, user: str, shown_hash: str, typed_count: int, reason: str
    ) -> str:
        """The override modal submitted: the excluded devices go in, as this approver's approval of
        the widened request. Mistakes come back as RequestError on the modal's fields (`count`,
        `reason`); refusals as UserError. Nothing changes unless everything holds."""
        campaign = self._campaign(campaign_id)
        await self._refuse_non_decider(campaign, user, "approve it; another approver must")
        self._refuse_override_of_plan(campaign)
        if self.preflight is None:
            raise UserError("Pre-flight checks are not running here; nothing to override. Nothing changed.")
        record = self.preflight.record(campaign_id)
        expected = record.summary.includable if record is not None and record.summary is not None else 0
        problems = []
        if typed_count != expected:
            problems.append(
                Problem("count", f"{typed_count:,}", f"is not the number of devices being added ({expected:,})")
            )
        if not reason.strip():
            problems.append(Problem("reason", "", "is required: say why these devices must get this firmware"))
        if problems:
            raise RequestError(problems)
        required = self.settings.required_approvals
        # As for a plain approval: only approvals by people who are approvers now count.
        current = await self._counted_approvers(campaign)
        with self.store.atomic():
            try:
                overridden = self.preflight.override_and_approve(
                    campaign_id, user=user, shown_hash=shown_hash, typed_count=typed_count, reason=reason,
                    required=required, current_approvers=current,
                )
            except NotApproved as exc:
                raise UserError(f"{exc}. Nothing changed.") from exc
            result = overridden.result
            if result.outcome is ApprovalOutcome.RECORDED:
                self.events.approval_recorded(result.campaign, user)
            elif result.outcome is ApprovalOutcome.APPROVED:
                self.events.approved(result.campaign)
        return self._approval_answer(
            result, shown_hash, required, f" (with {overridden.included:,} excluded devices included)"
        )

    async def promote(self, parent_id: int, number: int, *, user: str) -> str:
        """The thread's Promote button: start the next wave of a staged rollout. Raises UserError."""
        if self.staged is None:
            raise UserError("Staged rollouts are not running here. Nothing changed.")
        return await self.staged.promote(parent_id, number, user=user)

    def _refuse_override_of_plan(self, campaign: Campaign) -> None:
        if self.staged is not None and self.staged.planned(campaign.id):
            raise UserError(
                f"{campaign.ref} is a staged rollout, planned over its eligible devices only: "
                "excluded devices cannot be added to its waves. Approve the eligible devices, and "
                "request the others separately if they must have this firmware. Nothing changed."
            )

    async def reject(self, campaign_id: int, *, user: str, shown_hash: str, reason: str) -> str:
        campaign = await self.check_may_decide(campaign_id, user=user)
        reason = reason.strip()
        if not reason:
            raise UserError("A rejection needs a reason, so the requester knows what to change.")
        with self.store.atomic():  # the decision and the thread's news of it, together
            result = self.store.record_rejection(campaign_id, user=user, shown_hash=shown_hash, reason=reason)
            if result.outcome is ApprovalOutcome.REJECTED:
                self.events.rejected(result.campaign, user, reason)
        if result.outcome is ApprovalOutcome.STALE:
            raise UserError(f"{campaign.ref} changed after this card was shown; nothing was rejected.")
        if result.outcome is ApprovalOutcome.CLOSED:
            raise UserError(f"{campaign.ref} is {describe(result.campaign.state)} already; nothing changed.")
        return f"You rejected {campaign.ref}."

    async def withdraw(self, campaign_id: int, *, user: str) -> str:
        campaign = self._campaign(campaign_id)
        if user != campaign.requester:
            raise UserError(f"Only the requester, <@{campaign.requester}>, may withdraw {campaign.ref}. Nothing changed.")
        if campaign.state is not S.PENDING_APPROVAL:
            raise UserError(f"{campaign.ref} is {describe(campaign.state)}; it can no longer be withdrawn.")
        with self.store.atomic():  # the state and the thread's news, together
            campaign = self.store.transition(campaign_id, S.WITHDRAWN, actor=user, reason="withdrawn by the requester")
            self.events.withdrawn(campaign, user)
        return f"You withdrew {campaign.ref}; nothing was sent to ThingSpace."

    # --- timers ------------------------------------------------------------------------------

    async def expire(self, campaign_id: int) -> None:
        campaign = self.store.campaign(campaign_id)
        if campaign.state is not S.PENDING_APPROVAL or self.clock() < campaign.expires_at:
            return
        with self.store.atomic():  # the state and the thread's news, together
            campaign = self.store.transition(
                campaign_id,
                S.EXPIRED,
                actor="fota-bot",
                reason=f"not decided within {self.settings.approval_ttl}",
            )
            self.events.expired(campaign)

    async def remind(self, campaign_id: int) -> None:
        """The approvers' reminder, once per request (not after its expiry)."""
        campaign = self.store.campaign(campaign_id)
        if campaign.state is not S.PENDING_APPROVAL:
            return
        with self.store.atomic():  # the reminder and the mark that it was given, together
            if self.store.take_reminder(campaign_id) and self.clock() < campaign.expires_at:
                self.events.reminder(campaign)

    async def expire_overdue(self, now: dt.datetime | None = None) -> None:
        """Expire every request waiting past its time (by `now`)."""
        await self._each_due(self.store.expiries_due, self.expire, now or self.clock())

    async def remind_due(self, now: dt.datetime | None = None) -> None:
        """Remind the approvers of every request whose reminder time has come (by `now`)."""
        await self._each_due(self.store.reminders_due, self.remind, now or self.clock())

    async def _each_due(
        self,
        due: Callable[..., list[tuple[str, int]]],
        act: Callable[[int], Coroutine[Any, Any, None]],
        now: dt.datetime,
    ) -> None:
        """`act` on each request `due` names, a batch at a time. One that fails is logged and
        left for the next run; the others go on."""
        after: tuple[str, int] | None = None
        while batch := due(now, after=after):
            for _, campaign_id in batch:
                try:
                    await act(campaign_id)
                except Exception:
                    log.exception("the approval timer of FB-%d failed; tried again later", campaign_id)
            after = batch[-1]
            await asyncio.sleep(0)  # a backlog (after a long stop) never holds the loop at once


def describe(state: CampaignState) -> str:
    """A state inside a sentence: "FB-12 is {describe(state)}"."""
    return STATE_WORDS[state].inline


def _membership_unknown(exc: MembershipUnknown) -> str:
    return (
        f"{exc}, so whether you and the earlier approvers are approvers now is unknown. "
        "Nothing changed; try again in a moment."
    )
