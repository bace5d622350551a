"""The one path from an approved campaign to ThingSpace's schedule endpoint.

`Submitter.submit` is the only caller of `ThingSpaceClient.schedule_campaign`
(a test checks this). It passes `Store.claim_for_submission` first: no recorded
approvals, no request. A POST whose answer was lost (timeout, 500/502/504) may
have created the campaign, so before any new POST the campaign is looked up by
its name, which carries the bot's reference.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bot.thingspace.client import ThingSpaceClient
from bot.thingspace.errors import (
    ThingSpaceAmbiguous,
    ThingSpaceError,
    ThingSpaceRejected,
)
from bot.workflow.approvers import MembershipUnknown
from storage.model import ApprovalsLapsed, Campaign, NotApproved
from storage.states import CampaignState
from storage.store import Store

log = logging.getLogger("bot.submission")

S = CampaignState

# How many times an unanswered or unavailable submission is tried before it is given up.
MAX_ATTEMPTS = 6
# Seconds before each retry: ThingSpace may need a moment before a new campaign shows in reports.
RETRY_DELAYS = (30, 60, 120, 300, 600)
# Delays in all (POST retries and look-ups) before the bot stops and says what to check.
MAX_RETRIES = 12
# After a POST whose answer was lost, how long ThingSpace's reports get to show the campaign
# before the bot believes it was not created and posts again.
LOOKUP_GRACE = dt.timedelta(minutes=10)


class SubmissionEvents(Protocol):
    """What the thread and the requester are told."""

    def submitted(self, campaign: Campaign) -> None: ...

    def submit_failed(self, campaign: Campaign) -> None: ...

    def submit_delayed(self, campaign: Campaign, reason: str, retry_in: float) -> None: ...


class RetryScheduler(Protocol):
    def retry_submission(self, campaign_id: int, delay: float) -> None: ...


class Submitter:
    def __init__(
        self,
        *,
        store: Store,
        client: ThingSpaceClient,
        events: SubmissionEvents,
        retries: RetryScheduler,
        required_approvals: int,
        clock: Callable[[], dt.datetime],
    ):
        self.store = store
        self.client = client
        self.events = events
        self.retries = retries
        self.required_approvals = required_approvals
        self.clock = clock
        self._locks: dict[int, asyncio.Lock] = {}
        # Called with the campaign once ThingSpace named it (early callbacks wait for this).
        self.on_submitted: Callable[[Campaign], object] = lambda campaign: None
        # Who of a campaign's approvers are approvers now (None: everyone counts); the app
        # binds it to the Slack directory.
        self.current_approvers: Callable[[int], Awaitable[frozenset[str] | None]] = _everyone

    async def submit(self, campaign_id: int) -> Campaign | None:
        """Send an approved campaign to ThingSpace once; safe to call again at any time."""
        lock = self._locks.setdefault(campaign_id, asyncio.Lock())
        async with lock:
            try:
                current = await self.current_approvers(campaign_id)
            except MembershipUnknown as exc:
                # Unknown is not removed: nothing is sent, the approvals stand, and the claim is
                # tried again once Slack can list the group (a real removal still lapses then).
                return self._membership_unknown(campaign_id, exc)
            try:
                campaign = self.store.claim_for_submission(
                    campaign_id, required=self.required_approvals, current_approvers=current
                )
            except ApprovalsLapsed as exc:
                return self._fail(
                    self.store.campaign(campaign_id),
                    "APPROVALS_LAPSED",
                    f"Nothing was sent: {exc}. Approvals count only while their authors are in "
                    "FOTA_APPROVERS; please request it again.",
                )
            except NotApproved as exc:
                refused = self.store.campaign(campaign_id)
                if refused.state is S.SUBMITTING:
                    # Claimed before the refusal came (a wave whose rollout was halted since):
                    # settled now, or a restart after a resume would send it.
                    if self._maybe_created(refused):
                        return await self._resolve_refused(refused, exc)
                    return self._fail(refused, "NOT_SENT", f"Never sent: {exc}.")
                log.info("not submitting %s: %s", f"FB-{campaign_id}", exc)
                return None
            return await self._submit_claimed(campaign)

    async def _resolve_refused(self, campaign: Campaign, refusal: NotApproved) -> Campaign:
        """The guard refuses a campaign claimed before (a wave of a rollout halted since), but a
        POST of it went out unanswered: ThingSpace may hold it, and it would start on its date
        unknown to the bot. Never posted again; only looked up (a look-up sends nothing): found,
        it is known (followed, cancellable); not found once ThingSpace's reports had time to
        show it, it ends as never sent."""
        try:
            found = await self._look_up(campaign)
        except _NotOurs as exc:
            return self._fail(
                campaign,
                "NOT_SENT",
                f"Nothing more is sent: {refusal}. ThingSpace has a campaign named "
                f"“{campaign.thingspace_name}” that is not this one ({exc}); look at ThingSpace.",
            )
        except _CouldNotLook as exc:
            if self._retries(campaign) >= MAX_RETRIES:
                return self._fail(
                    campaign,
                    "NO_ANSWER",
                    f"Nothing more is sent: {refusal}. An earlier request may have created it and "
                    f"ThingSpace could not be searched: look there for a campaign named "
                    f"“{campaign.thingspace_name}” and cancel it.",
                )
            return self._retry_later(campaign, str(exc))
        if found is not None:
            return self._succeeded(campaign, found, f"found by name after an unanswered request ({refusal})")
        last = self._last_post(campaign)
        if last is not None and self.clock() - last < LOOKUP_GRACE:
            return self._retry_later(
                campaign, "waiting for ThingSpace's reports to show whether it was created", counted=False
            )
        return self._fail(campaign, "NOT_SENT", f"Never sent: {refusal}.")

    async def resume_all(self) -> None:
        """At start-up: finish every submission a crash interrupted, by the same rules."""
        for campaign in self.store.campaigns_in((S.APPROVED, S.SUBMITTING)):
            log.info("resuming submission of %s (%s)", campaign.ref, campaign.state)
            await self.submit(campaign.id)

    async def _submit_claimed(self, campaign: Campaign) -> Campaign:
        attempts = self._attempts(campaign)
        try:
            if self._maybe_created(campaign):
                # An earlier POST may have reached ThingSpace: look before posting again.
                found = await self._look_up(campaign)
                if found is not None:
                    return self._succeeded(campaign, found, "found by name after an unanswered request")
                if self._retries(campaign) >= MAX_RETRIES:
                    return self._give_up(campaign)
                last = self._last_post(campaign)
                if last is not None and self.clock() - last < LOOKUP_GRACE:
                    # Reports can lag behind a new campaign: a miss this soon proves nothing.
                    # Not a failed try (ThingSpace answered), so it does not use up the retries:
                    # restarts during the wait must not end a request nothing went wrong with.
                    return self._retry_later(
                        campaign, "waiting for ThingSpace's reports before sending again", counted=False
                    )
            elif self._retries(campaign) >= MAX_RETRIES:
                return self._give_up(campaign)
            return await self._post(campaign, attempts)
        except _NotOurs as exc:
            return self._fail(
                campaign,
                "NAME_IN_USE",
                f"ThingSpace has a campaign named “{campaign.thingspace_name}” that is not this request "
                f"({exc}). It was not taken for this one and nothing was sent; look at ThingSpace before "
                "requesting again.",
            )
        except _CouldNotLook as exc:
            if self._retries(campaign) >= MAX_RETRIES:
                return self._give_up(campaign)
            return self._retry_later(campaign, str(exc))

    def _give_up(self, campaign: Campaign) -> Campaign:
        if not self._maybe_created(campaign):
            return self._fail(
                campaign,
                "THINGSPACE_UNAVAILABLE",
                "ThingSpace could not be reached for over an hour. Nothing was sent; please request it again.",
            )
        return self._fail(
            campaign,
            "NO_ANSWER",
            f"ThingSpace never confirmed the campaign and could not be searched for it. Before requesting "
            f"again, look at ThingSpace for a campaign named “{campaign.thingspace_name}”: it may exist.",
        )

    async def _post(self, campaign: Campaign, attempts: int) -> Campaign:
        today = self.clock().astimezone(dt.UTC).date()
        if campaign.start_date < today:
            # Never move the date silently: the approvers approved that date. (Checked only
            # before a new POST: a campaign an earlier POST created was found above.)
            return self._fail(
                campaign,
                "START_DATE_PASSED",
                f"The start date {campaign.start_date.isoformat()} passed before the campaign could be "
                f"sent (today is {today.isoformat()} UTC). Nothing was sent; please request it again.",
            )
        if attempts >= MAX_ATTEMPTS:
            return self._fail(
                campaign,
                "NO_ANSWER",
                f"ThingSpace did not answer {attempts} attempts and has no campaign named "
                f"“{campaign.thingspace_name}”. Nothing is running; please request it again.",
            )
        # Counted before the POST leaves: after a crash we know a request may be out there.
        self.store.record_post(campaign.id, self.clock())
        body = campaign.schedule_body(self.store.device_ids(campaign.id))
        try:
            answer = await self.client.schedule_campaign(campaign.account, body)
        except ThingSpaceRejected as exc:
            if attempts > 0 and self._maybe_created(campaign, ignore_last=True):
                # A refusal now (e.g. devices already in a campaign) may be because an earlier,
                # unanswered POST created it: look once more before calling it failed.
                found = await self._look_up(campaign)
                if found is not None:
                    return self._succeeded(campaign, found, "found by name after an unanswered request")
            return self._fail(campaign, exc.error_code, exc.error_message)
        except ThingSpaceAmbiguous as exc:
            found = await self._look_up(campaign)
            if found is not None:
                return self._succeeded(campaign, found, "found by name after an unanswered request")
            return self._retry_later(campaign, f"ThingSpace did not answer clearly ({exc})")
        except ThingSpaceError as exc:
            # Unavailable (503, 429, refused) or refused credentials: ThingSpace processed
            # nothing, so the next try need not wait for its reports.
            self.store.record_post_not_processed(campaign.id)
            return self._retry_later(campaign, str(exc))
        return self._succeeded(campaign, answer, "scheduled")

    async def _look_up(self, campaign: Campaign) -> dict[str, Any] | None:
        """The campaign at ThingSpace by name, or None; _CouldNotLook when ThingSpace cannot say;
        _NotOurs when a campaign has the name but not this request's content."""
        try:
            found = await self.client.find_campaign_by_name(campaign.account, campaign.thingspace_name)
            if found is None:
                return None
            mismatch = _differences(campaign, found)
            if not mismatch:
                mismatch = await self._device_count_differs(campaign, found)
        except ThingSpaceError as exc:
            raise _CouldNotLook(f"could not look the campaign up at ThingSpace ({exc})") from exc
        if mismatch:
            log.warning("%s: a campaign named %s exists at ThingSpace but differs: %s", campaign.ref,
                        campaign.thingspace_name, mismatch)
            raise _NotOurs(mismatch)
        return found

    async def _device_count_differs(self, campaign: Campaign, found: dict[str, Any]) -> str:
        """The campaign answer carries no device count; its report's first page does (totalDevice)."""
        ident = str(found.get("id") or found.get("campaignId") or "")
        if not ident:
            return ""
        page = await self.client.campaign_device_report_page(campaign.account, ident)
        total = page.get("totalDevice")
        ours = len(self.store.device_ids(campaign.id))
        if isinstance(total, int) and not isinstance(total, bool) and total != ours:
            return f"{total:,} devices there, {ours:,} here"
        return ""

    def _succeeded(self, campaign: Campaign, answer: dict[str, Any], why: str) -> Campaign:
        status = str(answer.get("status") or "")
        # One transaction with the thread's outbox rows: a crash in between would leave the
        # campaign submitted with nobody told, and a submitted campaign is never resumed.
        with self.store.atomic():
            updated = self.store.transition(
                campaign.id,
                S.SUBMITTED,
                actor="thingspace",
                reason=why,
                thingspace_id=str(answer.get("id") or answer.get("campaignId") or "") or None,
                thingspace_status=status or None,
                make=answer.get("make"),
                model=answer.get("model"),
            )
            self.events.submitted(updated)
        log.info("%s submitted: ThingSpace id %s, %s", updated.ref, updated.thingspace_id, status)
        self.on_submitted(updated)
        return updated

    def _fail(self, campaign: Campaign, code: str, message: str) -> Campaign:
        with self.store.atomic():  # as in _succeeded: the outcome and its telling together
            updated = self.store.transition(
                campaign.id,
                S.SUBMIT_FAILED,
                actor="thingspace" if code not in ("START_DATE_PASSED", "NO_ANSWER", "NOT_SENT") else "fota-bot",
                reason=f"{code}: {message}",
                error_code=code,
                error_message=message,
            )
            self.events.submit_failed(updated)
        log.warning("%s not submitted: %s", updated.ref, code)
        return updated

    def _retry_later(self, campaign: Campaign, reason: str, *, counted: bool = True) -> Campaign:
        """Try again later. `counted`: this try failed (ThingSpace unreachable, unclear), and
        MAX_RETRIES of those end the request; a wait for ThingSpace's reports is not one."""
        if counted:
            facts = self.store.count_submission_retry(campaign.id)
        else:
            facts = self.store.count_report_wait(campaign.id)
        tries = facts.retries + facts.report_waits
        delay = float(RETRY_DELAYS[min(tries - 1, len(RETRY_DELAYS) - 1)])
        log.warning("%s submission delayed: %s; retrying in %.0f s", campaign.ref, reason, delay)
        self.retries.retry_submission(campaign.id, delay)
        if tries == 1:
            # Said once in the thread; later retries are in the log, and the outcome is said too.
            self.events.submit_delayed(campaign, reason, delay)
        return self.store.campaign(campaign.id)

    def _membership_unknown(self, campaign_id: int, exc: MembershipUnknown) -> Campaign:
        """Retry a claim Slack could not check. Not a ThingSpace retry: its own count, so it
        neither uses up MAX_RETRIES nor ends the request, and the thread is told once."""
        waits = self.store.count_membership_wait(campaign_id).membership_waits
        delay = float(RETRY_DELAYS[min(waits - 1, len(RETRY_DELAYS) - 1)])
        campaign = self.store.campaign(campaign_id)
        log.warning("%s not claimed: %s; retrying in %.0f s", campaign.ref, exc, delay)
        self.retries.retry_submission(campaign_id, delay)
        if waits == 1:
            self.events.submit_delayed(
                campaign,
                f"{exc}, so whether its approvers still count is unknown. Nothing was sent and the "
                "approvals stand; the submission will be retried",
                delay,
            )
        return campaign

    def _retries(self, campaign: Campaign) -> int:
        return self.store.submission_facts(campaign.id).retries

    def _last_post(self, campaign: Campaign) -> dt.datetime | None:
        return self.store.submission_facts(campaign.id).last_post_at

    def _attempts(self, campaign: Campaign) -> int:
        return self.store.submission_facts(campaign.id).posts

    def _maybe_created(self, campaign: Campaign, *, ignore_last: bool = False) -> bool:
        """Did a POST go out whose outcome we do not know (lost answer, crash mid-request)?"""
        facts = self.store.submission_facts(campaign.id)
        return facts.unanswered_post_before_last if ignore_last else facts.unanswered_post


def _differences(campaign: Campaign, found: dict[str, Any]) -> str:
    """What a campaign found by this request's name says differently from the request (fields
    ThingSpace left out are not held against it); "" when it is this request."""
    expected = {
        "firmwareName": campaign.firmware_name,
        "firmwareFrom": campaign.firmware_from,
        "firmwareTo": campaign.firmware_to,
        "startDate": campaign.start_date.isoformat(),
        "endDate": campaign.end_date.isoformat(),
    }
    differs = []
    for key, ours in expected.items():
        theirs = found.get(key)
        if theirs is None:
            continue
        # Dates may come back with a time part (2026-11-26T00:00:00): the day is what counts.
        value = str(theirs)[:10] if key.endswith("Date") else str(theirs)
        if value != ours:
            differs.append(f"{key} {str(theirs)[:40]!r} there, {ours!r} here")
    return "; ".join(differs)


async def _everyone(campaign_id: int) -> frozenset[str] | None:
    return None


class _NotOurs(Exception):
    """A campaign at ThingSpace carries this request's name but not its content."""


class _CouldNotLook(Exception):
    """ThingSpace could not tell whether the campaign exists: never post blind, retry later."""
