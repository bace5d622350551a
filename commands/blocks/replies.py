"""Thread replies that mark the milestones, direct messages to the requester (every
decision and outcome), the requester's ephemeral confirmation and ephemeral errors."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence

from bot.notify.events import FAILURE_REASONS_LISTED
from commands.blocks.cards import (
    LOCAL_ERROR_CODES,
    START_DATE_PASSED,
    bucket_counts,
    counted_approvals,
    lost_advice,
    percent,
    progress_bar,
    state_label,
    state_parts,
    thingspace_error,
)
from commands.blocks.kit import (
    MAX_BLOCKS,
    Block,
    Message,
    channel,
    clip,
    code,
    context,
    escape,
    format_duration,
    link,
    message,
    plural,
    quote,
    section,
    sections,
    slack_date,
    user,
    users,
)
from storage.findings import FINDING_WORDS
from storage.model import Campaign, Decision
from storage.states import DEVICE_BUCKETS, CampaignState

S = CampaignState

MAX_FAILURES_SHOWN = 50
MAX_REASON = 300


def _reply(text: str, *extra: Block) -> Message:
    return message(text, [section(text), *extra])


def _sandbox(campaign: Campaign) -> str:
    return ":test_tube: " if campaign.sandbox else ""


def _thread_link(permalink: str | None, label: str = "View the thread") -> str:
    return f" {link(permalink, label)}" if permalink else ""


def _ts_id(campaign: Campaign) -> str:
    return code(campaign.thingspace_id) if campaign.thingspace_id else "(no id)"


# --- Thread replies ----------------------------------------------------------------------------


def approval_recorded_reply(
    campaign: Campaign, decisions: Sequence[Decision], required_approvals: int
) -> Message:
    """One approval in, more needed."""
    approvals = counted_approvals(campaign, decisions)
    who = user(approvals[-1].user) if approvals else "An approver"
    return _reply(
        f":+1: {who} approved Ref {campaign.ref}: "
        f"{len(approvals)} of {plural(required_approvals, 'approval')}"
        + (f" ({users(d.user for d in approvals)})" if approvals else "")
        + "."
    )


def approved_reply(campaign: Campaign, decisions: Sequence[Decision]) -> Message:
    approvals = counted_approvals(campaign, decisions)
    who = users(d.user for d in approvals) or "the approvers"
    return _reply(
        f":white_check_mark: Ref {campaign.ref} approved by {who}. "
        f"{_sandbox(campaign)}Sending it to ThingSpace{' sandbox' if campaign.sandbox else ''} now."
    )


def submitted_reply(campaign: Campaign) -> Message:
    status = code(campaign.thingspace_status) if campaign.thingspace_status else "not given"
    return _reply(
        f":rocket: {_sandbox(campaign)}ThingSpace{' sandbox' if campaign.sandbox else ''} accepted "
        f"Ref {campaign.ref} as campaign {_ts_id(campaign)}.\n"
        f"Status {status} · make {code(campaign.make or '?')} · model {code(campaign.model or '?')}"
    )


def submit_failed_reply(campaign: Campaign) -> Message:
    if campaign.error_code in LOCAL_ERROR_CODES:
        text = f":x: Ref {campaign.ref} was not scheduled: {escape(campaign.error_message or '')}"
    else:
        text = (
            f":x: ThingSpace refused Ref {campaign.ref}: "
            f"{thingspace_error(campaign.error_code, campaign.error_message)}\nNothing was scheduled."
        )
    if campaign.error_code == START_DATE_PASSED:
        ask = (
            f"<@{escape(campaign.requester)}>, please request it again with a start date of today "
            "or later (`/fota schedule … start=today`)."
        )
        return _reply(text, context(ask))
    return _reply(text)


def submit_delayed_reply(campaign: Campaign, reason: str, retry_in: float) -> Message:
    """ThingSpace did not answer clearly; the bot tries again (bounded) and says so."""
    wait = (
        f"{max(int(retry_in), 1)} s"
        if retry_in < 60
        else format_duration(dt.timedelta(seconds=retry_in))
    )
    return _reply(
        f":hourglass: Ref {campaign.ref} is not at ThingSpace yet: {escape(reason)}. "
        f"Trying again in {wait}; nothing is sent twice."
    )


def status_change_reply(campaign: Campaign, old: str | None, new: str) -> Message:
    was = f" (was {code(old)})" if old else ""
    return _reply(f"Ref {campaign.ref}: {state_label(new)} · ThingSpace status {code(new)}{was}")


def failures_reply(
    campaign: Campaign, failures: Sequence[tuple[str, str | None]], more: int
) -> Message:
    """A batch of failed devices with ThingSpace's reasons. The caller caps the list; this
    caps it again so a message never outgrows Slack's limits."""
    shown = failures[:MAX_FAILURES_SHOWN]
    hidden = max(more, 0) + len(failures) - len(shown)
    total = len(shown) + hidden
    lines = [
        f"• {code(imei, 40)} — {escape(clip(reason, MAX_REASON)) if reason else 'no reason given'}"
        for imei, reason in shown
    ]
    if hidden:
        lines.append(f"… and {hidden:,} more")
    head = f":warning: Ref {campaign.ref}: {plural(total, 'device')} failed to upgrade"
    blocks = [
        section(head),
        *sections(lines, max_blocks=MAX_BLOCKS - 2),
        context(f"`/fota devices {campaign.ref} failed` lists every failed device."),
    ]
    return message(head, blocks)


# Short words for each pre-flight finding, for the final summary's "excluded at approval".
LEFT_OUT_WORDS = FINDING_WORDS
# Failure reasons listed by name (each with its own CSV); the rest are summed in one line.
MAX_FAILURE_REASONS = FAILURE_REASONS_LISTED


def failure_label(reason: str) -> str:
    return reason or "no reason given"


def final_headline(campaign: Campaign, counts: Mapping[str, int]) -> str:
    """The one sentence the thread's summary and the requester's direct message both lead
    with, so the two never disagree on how the campaign ended."""
    buckets = bucket_counts(counts)
    total = sum(buckets.values())
    succeeded, failed = buckets["succeeded"], buckets["failed"]
    unfinished = total - succeeded - failed
    all_good = campaign.state is S.ENDED and total > 0 and succeeded == total
    emoji, words = state_parts(campaign.state)
    text = (
        f"{':tada:' if all_good else emoji} *{words}* · Ref {campaign.ref}: "
        f"*{succeeded:,} of {plural(total, 'device')} upgraded ({percent(succeeded, total)}%)*, "
        f"{failed:,} failed ({percent(failed, total)}%)"
    )
    if unfinished:
        text += f", {unfinished:,} without a final report"
    return text + "."


def final_summary_reply(
    campaign: Campaign,
    counts: Mapping[str, int],
    *,
    started_at: dt.datetime | None = None,
    ended_at: dt.datetime | None = None,
    left_out: int = 0,
    left_out_reasons: Mapping[str, int] | None = None,
    included_by_override: int = 0,
    override_by: str | None = None,
    failure_reasons: Sequence[tuple[str, int]] = (),
) -> Message:
    """The end of the rollout: what was excluded at approval, what was sent, what succeeded
    and what failed, by reason (a CSV for each reason follows in the thread). Duration runs
    from `started_at` (default: when it was requested) to `ended_at` (default: the last
    callback)."""
    buckets = bucket_counts(counts)
    total = sum(buckets.values())
    succeeded, failed = buckets["succeeded"], buckets["failed"]
    _, words = state_parts(campaign.state)
    lines = [final_headline(campaign, counts), progress_bar(buckets)]
    if left_out:
        why = ", ".join(
            f"{n:,} {LEFT_OUT_WORDS.get(k, escape(k))}"
            for k, n in sorted((left_out_reasons or {}).items(), key=lambda kv: (-kv[1], kv[0]))
        )
        # One device can fail several checks (another model is usually on another version too),
        # so the reasons may add up to more than the devices: say so rather than look wrong.
        several = sum((left_out_reasons or {}).values()) > left_out
        why = f"{why}; a device can have several reasons" if several else why
        lines.append(f"*Excluded at approval, never sent:* {plural(left_out, 'device')} ({why})")
    else:
        lines.append("*Excluded at approval:* none")
    if included_by_override:
        who = f" by {user(override_by)}" if override_by else ""
        lines.append(
            f":warning: *Sent by override:* {plural(included_by_override, 'device')} pre-flight "
            f"excluded were included{who}"
        )
    lines.append(
        f"*Sent:* {plural(total, 'device')} · *succeeded* {succeeded:,} · *failed* {failed:,}"
    )
    if failure_reasons:
        shown = list(failure_reasons[:MAX_FAILURE_REASONS])
        rest = sum(n for _, n in failure_reasons[MAX_FAILURE_REASONS:])
        lines.append("*Failed, by reason* (a CSV for each below):")
        lines += [f"• {escape(clip(failure_label(r), 200))}: {n:,}" for r, n in shown]
        if rest:
            lines.append(f"• other reasons: {rest:,}")
    start, end = started_at or campaign.created_at, ended_at or campaign.last_callback_at
    if end:
        lines.append(
            f"Duration {format_duration(end - start)} ({slack_date(start)} → {slack_date(end)})"
        )
    fields = [
        f"*{name}*\n{buckets[name]:,} · {percent(buckets[name], total)}%" for name in DEVICE_BUCKETS
    ]
    fallback = (
        f"Ref {campaign.ref} finished: {words}. "
        f"{succeeded:,} of {total:,} devices sent upgraded, {failed:,} failed; "
        f"{left_out:,} excluded at approval."
    )
    return message(fallback, [section(clip("\n".join(lines), 3000), fields=fields)])


def reminder_reply(
    campaign: Campaign,
    expires_at: dt.datetime,
    *,
    decisions: Sequence[Decision] = (),
    required_approvals: int | None = None,
    approvers: Sequence[str] = (),
) -> Message:
    """Half-way to expiry: who still has to decide. `approvers` are FOTA_APPROVERS' users
    (`U…`, `W…`) and user groups (`S…`); users who approved what the card shows now or
    rejected are not pinged again, nor the requester (who cannot decide); a group is
    mentioned whole, since any member may decide."""
    got = ""
    if required_approvals is not None:
        got = f" ({len(counted_approvals(campaign, decisions))} of {plural(required_approvals, 'approval')} so far)"
    decided = {d.user for d in counted_approvals(campaign, decisions)}
    decided |= {d.user for d in decisions if d.decision == "reject"}
    people = sorted(a for a in approvers if not a.startswith("S") and a not in decided and a != campaign.requester)
    groups = sorted(a for a in approvers if a.startswith("S"))
    mentions = [user(a) for a in people] + [f"<!subteam^{g}>" for g in groups]
    waiting = (
        f" Waiting on {', '.join(mentions)}." if mentions
        else "" if approvers
        else " Any approver but the requester may decide (FOTA_APPROVERS is not set)."
    )
    return _reply(
        f":bell: Ref {campaign.ref} is still waiting for approval{got}.{waiting} "
        f"It expires {slack_date(expires_at)} unless someone decides."
    )


def expired_reply(campaign: Campaign) -> Message:
    return _reply(
        f":alarm_clock: Ref {campaign.ref} expired: it was not approved in time. "
        "Nothing was sent to ThingSpace. Request it again if it is still needed."
    )


def rejected_reply(campaign: Campaign, by_user: str, reason: str | None) -> Message:
    text = (
        f":no_entry: {user(by_user)} rejected Ref {campaign.ref}. Nothing was sent to ThingSpace."
    )
    return _reply(text + (f"\n{quote(reason)}" if reason else ""))


def withdrawn_reply(campaign: Campaign, by_user: str | None = None) -> Message:
    return _reply(
        f":leftwards_arrow_with_hook: {user(by_user or campaign.requester)} withdrew "
        f"Ref {campaign.ref}. Nothing was sent to ThingSpace."
    )


def cancelled_reply(campaign: Campaign, by_user: str) -> Message:
    return _reply(
        f":no_entry_sign: {user(by_user)} cancelled Ref {campaign.ref} "
        f"(ThingSpace campaign {_ts_id(campaign)})."
    )


def cancel_refused_reply(
    campaign: Campaign, error_code: str | None, error_message: str | None
) -> Message:
    return _reply(
        f":warning: ThingSpace refused to cancel Ref {campaign.ref}: "
        f"{thingspace_error(error_code, error_message)}\nThe campaign goes on."
    )


def lost_reply(campaign: Campaign) -> Message:
    return _reply(f":ghost: Ref {campaign.ref} is lost. {lost_advice(campaign)}")


# --- Direct messages to the requester ----------------------------------------------------------


def dm_approved(
    campaign: Campaign, decisions: Sequence[Decision], permalink: str | None
) -> Message:
    who = users(d.user for d in counted_approvals(campaign, decisions))
    return _reply(
        f":white_check_mark: Your request Ref {campaign.ref} was approved{f' by {who}' if who else ''}. "
        f"It is on its way to ThingSpace.{_thread_link(permalink)}"
    )


def dm_submitted(campaign: Campaign, permalink: str | None) -> Message:
    return _reply(
        f":rocket: {_sandbox(campaign)}Ref {campaign.ref} was submitted: ThingSpace campaign "
        f"{_ts_id(campaign)}, status {code(campaign.thingspace_status or 'not given')}."
        f"{_thread_link(permalink)}"
    )


def dm_submit_failed(campaign: Campaign, permalink: str | None) -> Message:
    if campaign.error_code in LOCAL_ERROR_CODES:
        why = escape(campaign.error_message or "")
    else:
        why = thingspace_error(campaign.error_code, campaign.error_message)
    text = f":x: Ref {campaign.ref} failed: {why}"
    if campaign.error_code == START_DATE_PASSED:
        text += "\nPlease request it again with a start date of today or later."
    return _reply(text + _thread_link(permalink))


def dm_rejected(
    campaign: Campaign, by_user: str | None, reason: str | None, permalink: str | None
) -> Message:
    who = f" by {user(by_user)}" if by_user else ""
    text = f":no_entry: Ref {campaign.ref} was rejected{who}{':' if reason else '.'}"
    if reason:
        text += f"\n{quote(reason)}\n"
    return _reply(text + _thread_link(permalink).lstrip())


def dm_expired(campaign: Campaign, permalink: str | None) -> Message:
    return _reply(
        f":alarm_clock: Ref {campaign.ref} expired: nobody approved it in time. Nothing was sent "
        f"to ThingSpace; request it again if it is still needed.{_thread_link(permalink)}"
    )


def dm_cancelled(campaign: Campaign, by_user: str | None, permalink: str | None) -> Message:
    who = f" by {user(by_user)}" if by_user else ""
    return _reply(
        f":no_entry_sign: Ref {campaign.ref} was cancelled{who}.{_thread_link(permalink)}"
    )


def dm_withdrawn(campaign: Campaign, by_user: str | None, permalink: str | None) -> Message:
    who = f" by {user(by_user)}" if by_user else ""
    return _reply(
        f":leftwards_arrow_with_hook: Your request Ref {campaign.ref} was withdrawn{who} before approval; "
        f"nothing was sent to ThingSpace.{_thread_link(permalink)}"
    )


def dm_finished(
    campaign: Campaign, counts: Mapping[str, int] | None, permalink: str | None
) -> Message:
    if counts is None:
        text = f"{state_label(campaign.state)}: Ref {campaign.ref} has finished."
    else:
        # The same sentence as the thread's final summary: the two never disagree.
        text = final_headline(campaign, counts)
    return _reply(text + _thread_link(permalink))


def dm_lost(campaign: Campaign, permalink: str | None) -> Message:
    return _reply(
        f":ghost: Your campaign Ref {campaign.ref} is lost. {lost_advice(campaign)}"
        f"{_thread_link(permalink)}"
    )


def requester_dm(
    campaign: Campaign,
    event: str,
    *,
    permalink: str | None = None,
    by: str | None = None,
    reason: str | None = None,
    decisions: Sequence[Decision] = (),
    counts: Mapping[str, int] | None = None,
) -> Message:
    """The direct message for one event: `approved`, `submitted`, `submit_failed`, `rejected`,
    `expired`, `cancelled`, `withdrawn`, `finished` or `lost`. Raises ValueError for any other
    event."""
    if event == "approved":
        return dm_approved(campaign, decisions, permalink)
    if event == "submitted":
        return dm_submitted(campaign, permalink)
    if event == "submit_failed":
        return dm_submit_failed(campaign, permalink)
    if event == "rejected":
        return dm_rejected(campaign, by, reason, permalink)
    if event == "expired":
        return dm_expired(campaign, permalink)
    if event == "cancelled":
        return dm_cancelled(campaign, by, permalink)
    if event == "withdrawn":
        return dm_withdrawn(campaign, by, permalink)
    if event == "finished":
        return dm_finished(campaign, counts, permalink)
    if event == "lost":
        return dm_lost(campaign, permalink)
    raise ValueError(f"no direct message for event {event!r}")


# --- Ephemeral answers -------------------------------------------------------------------------


def request_confirmation(campaign: Campaign, permalink: str | None) -> Message:
    """What the requester sees right after asking."""
    where = f" in {channel(campaign.approval_channel)}" if campaign.approval_channel else ""
    head = f":inbox_tray: Ref {campaign.ref} posted for approval{where}"
    head += f": {link(permalink, 'view the request')}" if permalink else "."
    lines = [
        head,
        f"{plural(campaign.device_count, 'device')} · {code(campaign.firmware_from)} → "
        f"{code(campaign.firmware_to)} · account {code(campaign.account)}"
        + (" · :test_tube: sandbox" if campaign.sandbox else ""),
        *(f":information_source: {escape(n)}" for n in campaign.notes[:10]),
    ]
    if len(campaign.notes) > 10:
        lines.append(f"… and {len(campaign.notes) - 10:,} more notes")
    blocks = [
        section("\n".join(lines)),
        context(
            "You get a direct message when it is decided. The card's *Withdraw* button takes it back."
        ),
    ]
    return message(head, blocks)


_MENTION = re.compile(r"&lt;(@[UW][A-Z0-9]{1,30}|#C[A-Z0-9]{1,30})&gt;")


def error_reply(text: str, *, mentions: bool = False) -> Message:
    """An ephemeral error. `text` is already the sentence the user reads (a RequestError's
    message, bullets and all); it is escaped and split to fit, never reworded.

    `mentions=True` is for messages the bot wrote itself (UserError: "Only the requester,
    <@U1>, may withdraw FB-12"): well-formed user and channel mentions stay live; everything
    else, `<!channel>` and links included, is still escaped.
    """
    text = text.strip() or "Something went wrong, and there is nothing more to say about it."
    escaped = escape(text)
    if mentions:
        escaped = _MENTION.sub(r"<\1>", escaped)
    return message(escaped, sections(escaped.splitlines(), max_blocks=MAX_BLOCKS))
