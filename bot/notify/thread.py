"""The campaign's thread: what is said, and when: decisions, milestones, the final summary.

`ThreadNotifier` turns workflow events into outbox rows (never a Slack call);
`ThreadRenderer` builds the messages from the database at send time, using the
pure builders in `commands.blocks`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Sequence
from typing import Any

from bot.workflow.wave_figures import Verdict, WaveFigures, judge, promotable_at
from commands import blocks
from storage import preflight, waves
from storage.findings import Narrowed, Overridden
from storage.model import Campaign, Device
from storage.outbox import Outbox
from storage.states import CampaignState
from storage.store import Store, device_rows

S = CampaignState

# How many failed devices one thread reply names before "and N more" (Slack: 50 blocks/message).
FAILURES_PER_REPLY = 20
DEVICE_SAMPLE = 10


class ThreadNotifier:
    """Workflow events → outbox rows, then a wake-up for the sender."""

    def __init__(
        self,
        *,
        store: Store,
        approval_channel: str,
        update_interval: float,
        clock: Callable[[], dt.datetime],
        wake: Callable[[], None] = lambda: None,
        approvers: frozenset[str] = frozenset(),
        required_approvals: int | None = None,
    ):
        self.approvers = approvers
        self.required_approvals = required_approvals
        self.store = store
        self.outbox = Outbox(store)
        self.approval_channel = approval_channel
        self.update_interval = dt.timedelta(seconds=update_interval)
        self.clock = clock
        self.wake = wake

    # --- low level ---------------------------------------------------------------------------

    def refresh_root(self, campaign: Campaign, *, now: bool = False) -> None:
        """Edit the root card, at most once per FOTA_UPDATE_INTERVAL (milestones: at once)."""
        if campaign.parent_id is not None:
            # A wave's thread is its request's: the request's card is the one shown and edited.
            campaign = self.store.campaign(campaign.parent_id)
        key = f"root:{campaign.id}"
        not_before = None
        if not now:
            last = self.outbox.last_sent_at(key)
            if last is not None and last + self.update_interval > self.clock():
                not_before = last + self.update_interval
        self.outbox.enqueue("root_update", {}, campaign_id=campaign.id, coalesce_key=key, not_before=not_before)
        if now:
            # A milestone edit (a stamp) should not wait behind a throttled progress edit.
            with self.store.db.atomic():
                self.store.db.execute(
                    "UPDATE outbox SET not_before = NULL WHERE coalesce_key = ? AND sent_at IS NULL", [key]
                )
        self.wake()

    def reply(self, campaign: Campaign, message: dict[str, Any]) -> None:
        self.outbox.enqueue("reply", {"message": message}, campaign_id=campaign.id)
        self.wake()

    def dm(self, campaign: Campaign, event: str, **args: Any) -> None:
        self.outbox.enqueue("dm", {"user": campaign.requester, "event": event, **args}, campaign_id=campaign.id)
        self.wake()

    # --- requests and decisions (CampaignEvents) ---------------------------------------------

    def requested(self, campaign: Campaign, response_url: str | None) -> None:
        self.outbox.enqueue("root", {"channel": self.approval_channel}, campaign_id=campaign.id)
        self.outbox.enqueue("confirm", {"response_url": response_url}, campaign_id=campaign.id)
        self.wake()

    def approval_recorded(self, campaign: Campaign, user: str) -> None:
        self.refresh_root(campaign, now=True)

    def approved(self, campaign: Campaign) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, blocks.approved_reply(campaign, self.store.decisions(campaign.id)))
        self.dm(campaign, "approved")

    def rejected(self, campaign: Campaign, user: str, reason: str) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, blocks.rejected_reply(campaign, user, reason))
        self.dm(campaign, "rejected", by=user, reason=reason)

    def withdrawn(self, campaign: Campaign, user: str) -> None:
        self.refresh_root(campaign, now=True)
        # `/fota cancel` lets an approver withdraw a request too: the reply names who did.
        self.reply(campaign, blocks.withdrawn_reply(campaign, user))
        if user != campaign.requester:
            # The requester hears of every decision on their request, even one they did not make.
            self.dm(campaign, "withdrawn", by=user)

    def expired(self, campaign: Campaign) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, blocks.expired_reply(campaign))
        self.dm(campaign, "expired")

    def reminder(self, campaign: Campaign) -> None:
        self.reply(
            campaign,
            blocks.reminder_reply(
                campaign,
                campaign.expires_at,
                decisions=self.store.decisions(campaign.id),
                required_approvals=self.required_approvals,
                approvers=sorted(self.approvers),
            ),
        )

    # --- submission (SubmissionEvents) -------------------------------------------------------

    def submitted(self, campaign: Campaign) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, blocks.submitted_reply(campaign))
        self.dm(campaign, "submitted")

    def submit_failed(self, campaign: Campaign) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, blocks.submit_failed_reply(campaign))
        self.dm(campaign, "submit_failed")

    def submit_delayed(self, campaign: Campaign, reason: str, retry_in: float) -> None:
        self.reply(campaign, blocks.submit_delayed_reply(campaign, reason, retry_in))

    # --- rollout -----------------------------------------------------------------------------

    def progressed(self, campaign: Campaign) -> None:
        self.refresh_root(campaign)

    def status_changed(self, campaign: Campaign, old: str | None, new: str) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, blocks.status_change_reply(campaign, old, new))

    def devices_failed(self, campaign: Campaign) -> None:
        """New failures: one batched reply per interval, rendered when it goes out."""
        key = f"failures:{campaign.id}"
        last = self.outbox.last_sent_at(key)
        not_before = last + self.update_interval if last else None
        self.outbox.enqueue("failures", {}, campaign_id=campaign.id, coalesce_key=key, not_before=not_before)
        self.wake()

    def finished(self, campaign: Campaign) -> None:
        self.refresh_root(campaign, now=True)
        self._final_report(campaign)
        self.dm(campaign, "finished")
        if campaign.parent_id is not None:
            self._wave_ended(campaign)

    def halted(self, parent: Campaign, wave: Campaign, sentence: str, reasons: Sequence[tuple[str, int]]) -> None:
        """A rollout halted itself: the thread says why; the requester and the approvers named
        in FOTA_APPROVERS get the same words (user groups hear it in the approval channel)."""
        message = blocks.halted_reply(parent, wave, sentence, reasons)
        self.refresh_root(parent, now=True)
        self.reply(parent, message)
        people = [parent.requester, *(a for a in self.approvers if a[:1] in ("U", "W") and a != parent.requester)]
        for person in dict.fromkeys(people):
            self.outbox.enqueue("dm", {"user": person, "message": message}, campaign_id=parent.id)
        self.wake()

    def _wave_ended(self, wave: Campaign) -> None:
        """A wave of a staged rollout ended: passed (the next wave's Promote button), or held."""
        assert wave.parent_id is not None
        stored = waves.load(self.store.db, wave.parent_id)
        if stored is None:
            return
        counts = self.store.device_counts(wave.id)
        figures = WaveFigures(sum(counts.values()), counts["succeeded"], counts["failed"])
        judgement = judge(stored.plan, figures, ended=True)
        passed = judgement.verdict is Verdict.PASSED and not stored.halted
        ready = promotable_at(self.clock(), stored.plan) if stored.plan.soak else None
        ready_text = f"{ready:%Y-%m-%d %H:%M} UTC" if ready is not None else None
        self.reply(wave, blocks.wave_ended_reply(wave, stored, judgement.sentence(), passed, ready_text))

    def lost(self, campaign: Campaign) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, blocks.lost_reply(campaign))
        self.dm(campaign, "lost")

    def _final_report(self, campaign: Campaign) -> None:
        """The end of a campaign at ThingSpace: a summary reply, the per-device CSV, and one CSV
        of the failed devices per failure reason (the reasons past the summary's list in one)."""
        self.outbox.enqueue("summary", {}, campaign_id=campaign.id, coalesce_key=f"summary:{campaign.id}")
        self.outbox.enqueue(
            "upload",
            {"title": f"{campaign.ref} per-device report"},
            campaign_id=campaign.id,
            coalesce_key=f"upload:{campaign.id}",
        )
        reasons = [r for r, _ in self.store.failure_reasons(campaign.id)]
        groups = [[r] for r in reasons[: blocks.MAX_FAILURE_REASONS]]
        if reasons[blocks.MAX_FAILURE_REASONS :]:
            groups.append(reasons[blocks.MAX_FAILURE_REASONS :])
        for n, group in enumerate(groups, 1):
            label = blocks.failure_label(group[0]) if len(group) == 1 else "other reasons"
            self.outbox.enqueue(
                "upload",
                {"title": f"{campaign.ref} failed: {label}", "reasons": group, "part": n},
                campaign_id=campaign.id,
                coalesce_key=f"upload:{campaign.id}:failed:{n}",
            )
        self.wake()

    def cancelled(self, campaign: Campaign, user: str) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(campaign, blocks.cancelled_reply(campaign, user))
        self._final_report(campaign)
        if user != campaign.requester:
            # An approver cancelled it: the requester hears of every outcome of their request.
            self.dm(campaign, "cancelled", by=user)

    def cancel_refused(self, campaign: Campaign, code: str, message: str) -> None:
        self.reply(campaign, blocks.cancel_refused_reply(campaign, code, message))

    # --- pre-flight (PreflightEvents) --------------------------------------------------------

    def preflight_updated(self, campaign: Campaign) -> None:
        # Findings landed (or the checks failed, or run again): the card approvers decide on
        # changed, so it is edited at once, not after the progress throttle.
        self.refresh_root(campaign, now=True)

    def narrowed(self, campaign: Campaign, user: str, narrowed: Narrowed) -> None:
        self.refresh_root(campaign, now=True)
        self.reply(
            campaign,
            blocks.narrowed_reply(
                campaign,
                user,
                kept=narrowed.kept,
                dropped=narrowed.dropped,
                superseded=narrowed.superseded,
            ),
        )

    def overridden(
        self, campaign: Campaign, user: str, overridden: Overridden, reason: str
    ) -> None:
        self.refresh_root(campaign, now=True)
        superseded = [
            d.user
            for d in self.store.decisions(campaign.id)
            if d.decision == "approve" and d.user != user and d.content_hash == overridden.old_hash
        ]
        self.reply(
            campaign,
            blocks.overridden_reply(
                campaign,
                user,
                included=overridden.included,
                done=overridden.done,
                reason=reason,
                superseded=superseded,
            ),
        )


class ThreadRenderer:
    """Messages built at send time from what the database says now."""

    def __init__(self, *, store: Store, required_approvals: int, clock: Callable[[], dt.datetime]):
        self.store = store
        self.required_approvals = required_approvals
        self.clock = clock

    def _waves_row(self, campaign: Campaign) -> list[str]:
        stored = waves.load(self.store.db, campaign.id)
        if stored is None:
            return []
        states: dict[int, tuple[str, int, int]] = {}
        for wave in stored.waves:
            if wave.campaign_id is None:
                continue
            child = self.store.campaign(wave.campaign_id)
            counts = self.store.device_counts(child.id)
            size = sum(counts.values())
            if not child.state.is_terminal:
                states[wave.number] = ("running", counts["succeeded"], size)
                continue
            figures = WaveFigures(size, counts["succeeded"], counts["failed"])
            passed = judge(stored.plan, figures, ended=True).verdict is Verdict.PASSED
            states[wave.number] = ("done" if passed else "held", counts["succeeded"], size)
        return [blocks.waves_row(stored, states)]

    def root_card(self, campaign: Campaign) -> dict[str, Any]:
        decisions = self.store.decisions(campaign.id)
        sample = [d.imei for d in self.store.devices(campaign.id, limit=DEVICE_SAMPLE)]
        if campaign.state is S.PENDING_APPROVAL:
            # Pre-flight findings are part of what approvers decide on; the buttons
            # follow them: no Approve while checking or when a finding blocks.
            checks = preflight.load(self.store, campaign.id)
            card = blocks.approval_card(
                campaign,
                devices_sample=sample,
                approvals=[d for d in decisions if d.decision == "approve"],
                required_approvals=self.required_approvals,
                sandbox=campaign.sandbox,
                preflight_blocks=[
                    *blocks.preflight_blocks(campaign, checks, today=self.clock().astimezone(dt.UTC).date()),
                    *blocks.plan_blocks(waves.load(self.store.db, campaign.id)),
                ],
            )
            return blocks.gate_decisions(card, campaign, checks)
        if campaign.state in (S.ROLLING_OUT, S.ROLLED_OUT, S.HALTED):
            return blocks.decided_card(
                campaign,
                decisions=decisions,
                outcome=campaign.state.value,
                devices_sample=sample,
                sandbox=campaign.sandbox,
                scope_lines=[*blocks.scope_lines(preflight.load(self.store, campaign.id)), *self._waves_row(campaign)],
            )
        if campaign.state in (S.REJECTED, S.EXPIRED, S.WITHDRAWN, S.SUBMIT_FAILED, S.APPROVED, S.SUBMITTING):
            # `/fota cancel` lets an approver withdraw a request too: the audit says who did.
            by_user = self.store.audit(campaign.id)[-1]["actor"] if campaign.state is S.WITHDRAWN else None
            return blocks.decided_card(
                campaign,
                decisions=decisions,
                outcome=campaign.state.value,
                devices_sample=sample,
                sandbox=campaign.sandbox,
                by_user=by_user,
                scope_lines=blocks.scope_lines(preflight.load(self.store, campaign.id)),
            )
        return blocks.campaign_card(
            campaign,
            counts=self.store.device_counts(campaign.id),
            last_update=campaign.last_callback_at,
            sandbox=campaign.sandbox,
            decisions=decisions,
            scope_lines=blocks.scope_lines(preflight.load(self.store, campaign.id)),
        )

    def dynamic(self, kind: str, campaign: Campaign, payload: dict[str, Any]) -> dict[str, Any] | None:
        if kind == "failures":
            failures, more = self.store.unreported_failures(campaign.id, FAILURES_PER_REPLY)
            if not failures:
                return None
            self.store.mark_failures_reported(campaign.id)
            return blocks.failures_reply(campaign, failures, more)
        if kind == "summary":
            if "left_out" in payload:  # read by `prefetch`, off the loop
                left_out, reasons = int(payload["left_out"]), dict(payload["left_out_reasons"])
            else:
                left_out, reasons = preflight.left_out_counts(self.store, campaign.id)
            record = preflight.load(self.store, campaign.id)
            overridden = record is not None and record.overridden
            return blocks.final_summary_reply(
                campaign,
                self.store.device_counts(campaign.id),
                left_out=left_out,
                left_out_reasons=reasons,
                included_by_override=(record.override_count or 0) if record and overridden else 0,
                override_by=record.override_by if record and overridden else None,
                failure_reasons=self.store.failure_reasons(campaign.id),
            )
        if kind == "confirm":
            return blocks.request_confirmation(campaign, payload.get("permalink"))
        if kind == "dm":
            return blocks.requester_dm(
                campaign,
                payload["event"],
                permalink=payload.get("permalink"),
                by=payload.get("by"),
                reason=payload.get("reason"),
                decisions=self.store.decisions(campaign.id),
                counts=self.store.device_counts(campaign.id),
            )
        raise ValueError(kind)

    async def prefetch(self, kind: str, campaign: Campaign) -> dict[str, Any]:
        """What `dynamic` needs that is large to read, read on the reader thread first: the
        summary's left-out devices are every device a narrowing dropped (up to 100,000)."""
        if kind != "summary":
            return {}
        left_out, reasons = await self.store.readers.run(lambda conn: preflight.left_out_on(conn, campaign.id))
        return {"left_out": left_out, "left_out_reasons": reasons}

    async def csv(self, campaign: Campaign, payload: dict[str, Any] | None = None) -> tuple[str, str]:
        """The file of an `upload` row: every device, or (`reasons` given) the failed devices
        with those reasons."""
        reasons = (payload or {}).get("reasons")
        if reasons is None:
            return f"{campaign.ref}-devices.csv", await devices_csv_off_loop(self.store, campaign)
        name = f"{campaign.ref}-failed-{int((payload or {}).get('part') or 1)}.csv"
        content = await devices_csv_off_loop(self.store, campaign, failed_only=True, reasons=set(reasons))
        return name, content


def devices_csv(
    store: Store, campaign: Campaign, *, failed_only: bool = False, reasons: set[str] | None = None
) -> str:
    """The per-device report: IMEI, status, reason, updated time (`reasons`: only devices
    with one of those reasons, '' for none given)."""
    return _devices_csv(device_rows(store.db.conn, campaign.id, failed_only=failed_only), reasons)


async def devices_csv_off_loop(
    store: Store, campaign: Campaign, *, failed_only: bool = False, reasons: set[str] | None = None
) -> str:
    """`devices_csv`, read and written on the reader thread: 100,000 devices take a few hundred
    ms, which on the event loop would hold every ack and callback behind them."""
    return await store.readers.run(
        lambda conn: _devices_csv(device_rows(conn, campaign.id, failed_only=failed_only), reasons)
    )


def _devices_csv(devices: list[Device], reasons: set[str] | None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["imei", "status", "reason", "updated_at"])
    for device in devices:
        if reasons is not None and (device.reason or "") not in reasons:
            continue
        writer.writerow([device.imei, device.status or "", device.reason or "", device.updated_at or ""])
    return buffer.getvalue()


def excluded_csv(store: Store, campaign: Campaign) -> tuple[str, int]:
    """Every device pre-flight excluded, with its reasons and what became of it: the CSV
    behind the card's "Excluded devices (CSV)"."""
    return _excluded_csv(preflight.excluded_rows(store.db.conn, campaign.id))


async def excluded_csv_off_loop(store: Store, campaign: Campaign) -> tuple[str, int]:
    """`excluded_csv`, read and written on the reader thread: anyone may click the card's
    button, and 100,000 excluded devices on the event loop would hold every ack behind them."""
    return await store.readers.run(lambda conn: _excluded_csv(preflight.excluded_rows(conn, campaign.id)))


def _excluded_csv(rows: list[tuple[str, tuple[str, ...], bool]]) -> tuple[str, int]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["imei", "findings", "reasons", "in_request"])
    for imei, found, kept in rows:
        words = "; ".join(blocks.LEFT_OUT_WORDS.get(f, f) for f in found)
        writer.writerow([imei, ";".join(found), words, "yes" if kept else "no"])
    return buffer.getvalue(), len(rows)
