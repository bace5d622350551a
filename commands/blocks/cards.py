"""The thread root: the approval card, the same card once decided, and the live campaign card."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from commands.blocks.actions import (
    ACTION_WITHDRAW,
    ACTIONS_BLOCK_ID,
    action_value,
    button,
    confirm_dialog,
    decision_buttons,
)
from commands.blocks.kit import (
    MAX_BLOCKS,
    MAX_SECTION_TEXT,
    Block,
    Message,
    clip,
    code,
    context,
    escape,
    fields_section,
    header,
    message,
    plural,
    quote,
    section,
    slack_date,
    user,
    users,
)
from storage.model import Campaign, Decision, TimeWindow
from storage.states import (
    DEVICE_BUCKETS,
    STATE_WORDS,
    CampaignState,
    device_bucket,
    thingspace_state,
)

S = CampaignState

SANDBOX_BANNER = ":test_tube: SANDBOX — nothing reaches real devices"
NO_RECALL_WARNING = (
    ":warning: Once ThingSpace starts a campaign it cannot be called back. "
    "Check the devices and the firmware before approving."
)
SAMPLE_SIZE = 10
HASH_SHOWN = 12
# Error codes the bot itself records for submit_failed (see bot/workflow/submission.py): the
# request never reached ThingSpace's answer, so the words are ours, not ThingSpace's.
START_DATE_PASSED = "START_DATE_PASSED"
NO_ANSWER = "NO_ANSWER"
# The guard refused a campaign claimed before (its rollout halted since): the bot's word, not ThingSpace's.
NOT_SENT = "NOT_SENT"
LOCAL_ERROR_CODES = frozenset({START_DATE_PASSED, NO_ANSWER, NOT_SENT})

# An emoji for each state, beside its words (storage.states.STATE_WORDS); every state has one.
STATE_EMOJI: dict[CampaignState, str] = {
    S.PENDING_APPROVAL: ":hourglass_flowing_sand:",
    S.APPROVED: ":white_check_mark:",
    S.SUBMITTING: ":outbox_tray:",
    S.SUBMITTED: ":inbox_tray:",
    S.REQUEST_PENDING: ":hourglass:",
    S.REQUEST_QUEUED: ":hourglass:",
    S.PRE_SCHEDULED: ":spiral_calendar_pad:",
    S.SCHEDULED: ":arrows_counterclockwise:",
    S.ENDED: ":checkered_flag:",
    S.CANCELLED: ":no_entry_sign:",
    S.ABORTED: ":octagonal_sign:",
    S.FAILED: ":x:",
    S.REQUEST_FAILED: ":x:",
    S.REJECTED: ":no_entry:",
    S.EXPIRED: ":alarm_clock:",
    S.WITHDRAWN: ":leftwards_arrow_with_hook:",
    S.SUBMIT_FAILED: ":x:",
    S.LOST: ":ghost:",
    S.ROLLING_OUT: ":ladder:",
    S.ROLLED_OUT: ":checkered_flag:",
    S.HALTED: ":octagonal_sign:",
}
# (emoji, heading) for each state.
STATE_LABELS: dict[CampaignState, tuple[str, str]] = {
    state: (STATE_EMOJI[state], STATE_WORDS[state].heading) for state in CampaignState
}


def state_parts(state: CampaignState | str) -> tuple[str, str]:
    """(emoji, human words) for a state or a ThingSpace status, known or not; the words are
    mrkdwn, an unknown status shown escaped."""
    known: CampaignState | None
    try:
        known = CampaignState(state)
    except ValueError:
        known = thingspace_state(str(state))
    if known is None:
        return ":grey_question:", f"ThingSpace status {code(str(state))}"
    return STATE_LABELS[known]


def lost_advice(campaign: Campaign) -> str:
    """What to check when ThingSpace no longer knows a campaign it accepted (mrkdwn)."""
    said = thingspace_error(campaign.error_code, campaign.error_message)
    head = (
        f"ThingSpace answers {said} for campaign {code(campaign.thingspace_id or '')}, so "
        "fota-bot has stopped following it; the counts are the last it saw. Nothing was cancelled."
    )
    if campaign.sandbox:
        return (
            f"{head}\nThis is a sandbox rehearsal: the sandbox forgets its campaigns when its "
            "state is reset. No real device was involved; request it again to rehearse again."
        )
    return (
        f"{head}\nCheck that `THINGSPACE_ACCOUNT` and the ThingSpace credentials are those of "
        f"account {code(campaign.account)}, where the campaign was created (a moved account or "
        "another user cannot see it). If the campaign still exists at ThingSpace its devices may "
        f"still upgrade: look it up in ThingSpace by its name {code(campaign.thingspace_name)}."
    )


def state_label(state: CampaignState | str) -> str:
    """`:emoji: Human words` for a state or a ThingSpace status."""
    emoji, words = state_parts(state)
    return f"{emoji} {words}"


# --- Progress ----------------------------------------------------------------------------------


def bucket_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Counts per DEVICE_BUCKETS entry. Keys may be bucket names or raw ThingSpace device
    statuses; anything unknown counts as `other`, never dropped; negatives count as 0."""
    out = dict.fromkeys(DEVICE_BUCKETS, 0)
    for key, count in counts.items():
        bucket = key if key in out else device_bucket(key)
        out[bucket] += max(int(count), 0)
    return out


def percent(part: int, total: int) -> int:
    # Floor, in integers: 100% only when every device is done, never more.
    return part * 100 // total if total > 0 else 0


def progress_bar(counts: Mapping[str, int], width: int = 20) -> str:
    """`▓▓▓▓▓▒░░░░ 50% succeeded · 10% failed`: the succeeded share (▓) and the failed share
    (▒) of all devices, the rest (░) not done, then a line of the non-zero buckets in
    DEVICE_BUCKETS order: `succeeded 5 · failed 1`. A finished campaign with failures never
    reads "100%": the shares say how it went, not only that it is over."""
    if width < 1:
        raise ValueError("progress bar width must be at least 1")
    buckets = bucket_counts(counts)
    total = sum(buckets.values())
    succeeded, failed = buckets["succeeded"], buckets["failed"]
    good = succeeded * width // total if total else 0
    done = (succeeded + failed) * width // total if total else 0
    bar = "▓" * good + "▒" * (done - good) + "░" * (width - done)
    if not succeeded and not failed:
        shares = "0% done"
    else:
        shares = f"{percent(succeeded, total)}% succeeded"
        if failed:
            shares += f" · {percent(failed, total)}% failed"
    line = " · ".join(f"{name} {buckets[name]:,}" for name in DEVICE_BUCKETS if buckets[name])
    return f"{bar} {shares}\n{line or 'no device reports yet'}"


# --- Shared card parts -------------------------------------------------------------------------


def counted_approvals(campaign: Campaign, decisions: Sequence[Decision]) -> list[Decision]:
    """Approvals that count: for the content the card shows now, one per user, never the
    requester's own (as the store counts them)."""
    seen: set[str] = set()
    out = []
    for d in decisions:
        if (
            d.decision == "approve"
            and not d.lapsed
            and d.content_hash == campaign.content_hash
            and d.user != campaign.requester
            and d.user not in seen
        ):
            seen.add(d.user)
            out.append(d)
    return out


def _windows(windows: Sequence[TimeWindow]) -> str:
    if not windows:
        return "any time"
    return ", ".join(f"{w.start_hour:02d}:00–{w.end_hour:02d}:00" for w in windows)


def _firmware(campaign: Campaign) -> str:
    return f"{code(campaign.firmware_from)} → {code(campaign.firmware_to)}"


def _devices(campaign: Campaign, devices_sample: Sequence[str]) -> str:
    shown = [code(imei, 40) for imei in devices_sample[:SAMPLE_SIZE]]
    text = f"*Devices:* {campaign.device_count:,}"
    if shown:
        more = campaign.device_count - len(shown)
        text += ": " + ", ".join(shown) + (f" and {more:,} more" if more > 0 else "")
    return text


def _notes(campaign: Campaign) -> list[Block]:
    if not campaign.notes:
        return []
    lines = [f":information_source: {escape(n)}" for n in campaign.notes[:10]]
    if len(campaign.notes) > 10:
        lines.append(f"… and {len(campaign.notes) - 10:,} more notes")
    return [section("\n".join(lines))]


def _ref_context(campaign: Campaign, *extra: str) -> Block:
    return context(f"*Ref {campaign.ref}*", *extra)


def _request_blocks(
    campaign: Campaign, devices_sample: Sequence[str], sandbox: bool
) -> list[Block]:
    blocks = [header("Firmware campaign request")]
    if sandbox:
        blocks.append(section(f"*{SANDBOX_BANNER}*"))
    blocks += [
        section(
            f"{user(campaign.requester)} asks to upgrade *{plural(campaign.device_count, 'device')}* "
            f"to {code(campaign.firmware_to)} on account {code(campaign.account)}. *Ref {campaign.ref}*"
        ),
        fields_section(
            [
                f"*Account*\n{code(campaign.account)}",
                f"*Firmware*\n{code(campaign.firmware_name)}",
                f"*From → to*\n{_firmware(campaign)}",
                f"*Protocol*\n{escape(campaign.protocol)}",
                f"*Start*\n{campaign.start_date.isoformat()}",
                f"*End*\n{campaign.end_date.isoformat()}",
                f"*Windows (UTC)*\n{_windows(campaign.windows)}",
                f"*Campaign name*\n{code(campaign.thingspace_name)}",
                f"*Request hash*\n`{escape(campaign.content_hash[:HASH_SHOWN])}`",
                f"*Licences*\n{licence_words(campaign)}",
            ]
        ),
        section(_devices(campaign, devices_sample)),
        *_notes(campaign),
    ]
    return blocks


def licence_words(campaign: Campaign) -> str:
    """The licence option as the card shows it (sent as autoAssignLicenseFlag)."""
    if campaign.licence_auto:
        return "`licence=auto`: ThingSpace may assign unused licences"
    return "`licence=none`: none assigned"


def _fallback(campaign: Campaign, sandbox: bool, tail: str) -> str:
    return (
        f"{'[SANDBOX] ' if sandbox else ''}Firmware campaign request Ref {campaign.ref} from "
        f"{user(campaign.requester)}: {plural(campaign.device_count, 'device')} to "
        f"{escape(campaign.firmware_to)} on account {escape(campaign.account)}. {tail}"
    )


# --- Approval card -----------------------------------------------------------------------------


def approval_card(
    campaign: Campaign,
    *,
    devices_sample: Sequence[str],
    approvals: Sequence[Decision],
    required_approvals: int,
    sandbox: bool,
    preflight_blocks: Sequence[Block] = (),
) -> Message:
    """The request as approvers see it, with Approve / Reject / Withdraw."""
    sandbox = sandbox or campaign.sandbox
    value = action_value(campaign.id, campaign.content_hash)
    counted = counted_approvals(campaign, approvals)
    so_far = f"*{len(counted)} of {plural(required_approvals, 'approval')}*"
    if counted:
        so_far += ": " + users(d.user for d in counted)
    lapsed = [d for d in approvals if d.decision == "approve" and d.lapsed and d.content_hash == campaign.content_hash]
    if lapsed:
        so_far += (
            f" (no longer counted: the approval by {users(d.user for d in lapsed)}, "
            "no longer an approver)"
        )
    actions: Block = {
        "type": "actions",
        "block_id": ACTIONS_BLOCK_ID,
        "elements": [
            *decision_buttons(campaign, sandbox=sandbox),
            button(
                "Withdraw",
                action_id=ACTION_WITHDRAW,
                value=value,
                confirm=confirm_dialog(
                    title="Withdraw this request?",
                    text=f"Ref {campaign.ref} will be closed and nothing is sent to ThingSpace. "
                    "Only the requester can withdraw a request.",
                    confirm="Withdraw",
                    deny="Keep it",
                    danger=True,
                ),
            ),
        ],
    }
    head = _request_blocks(campaign, devices_sample, sandbox)
    tail = [
        context(NO_RECALL_WARNING),
        section(so_far),
        actions,
        _ref_context(
            campaign,
            f"Request hash `{escape(campaign.content_hash[:HASH_SHOWN])}`",
            f"Expires {slack_date(campaign.expires_at)}",
        ),
    ]
    # Preflight findings are the caller's; they get whatever room the card leaves.
    room = MAX_BLOCKS - len(head) - len(tail)
    preflight = list(preflight_blocks[: max(room, 0)])
    return message(
        _fallback(campaign, sandbox, "Approval needed."),
        head + preflight + tail,
    )


# --- Decided card ------------------------------------------------------------------------------

_OUTCOME_ALIASES = {
    "approve": "approved",
    "reject": "rejected",
    "withdraw": "withdrawn",
    "expire": "expired",
    "cancel": "cancelled",
}


def _by_with_time(decisions: Sequence[Decision]) -> str:
    return ", ".join(f"{user(d.user)} ({slack_date(d.at)})" for d in decisions)


def thingspace_error(error_code: str | None, error_message: str | None) -> str:
    """ThingSpace's errorCode and errorMessage word for word (escaped)."""
    parts = [code(error_code) if error_code else "", escape(error_message or "")]
    text = ": ".join(p for p in parts if p)
    return text or "no error message given"


def _stamp(
    campaign: Campaign,
    outcome: str,
    decisions: Sequence[Decision],
    decided_at: dt.datetime | None,
    by_user: str | None,
) -> list[str]:
    """The lines that replace the buttons: who, when, and why."""
    approvals = counted_approvals(campaign, decisions)
    approved_line = (
        f":white_check_mark: *Approved* by {_by_with_time(approvals)}" if approvals else ""
    )

    def when(at: dt.datetime | None) -> str:
        return f" · {slack_date(at)}" if at else ""

    def reason(text: str | None) -> str:
        return f"\n{quote(text)}" if text else ""

    if outcome in ("approved", "submitting"):
        # Shown for the moments between the last approval and ThingSpace's answer.
        return [
            approved_line or ":white_check_mark: *Approved*",
            ":outbox_tray: Being sent to ThingSpace…",
        ]
    if outcome in ("rolling_out", "rolled_out", "halted"):
        # A staged rollout: its waves are sent one by one; the card's row of waves follows them.
        return [approved_line or ":white_check_mark: *Approved*", state_label(outcome)]
    if outcome == "rejected":
        rejections = [d for d in decisions if d.decision == "reject"]
        last = rejections[-1] if rejections else None
        who = user(last.user) if last else user(by_user) if by_user else "an approver"
        lines = [
            f":no_entry: *Rejected* by {who}{when(last.at if last else decided_at)}"
            f"{reason(last.reason if last else None)}"
        ]
        return lines + (
            [f"Approved before that by {users(d.user for d in approvals)}"] if approvals else []
        )
    if outcome == "withdrawn":
        withdrawals = [d for d in decisions if d.decision == "withdraw"]
        last = withdrawals[-1] if withdrawals else None
        who = user(last.user if last else by_user or campaign.requester)
        return [
            f":leftwards_arrow_with_hook: *Withdrawn* by {who}{when(last.at if last else decided_at)}"
            f"{reason(last.reason if last else None)}"
        ]
    if outcome == "expired":
        got = f" ({len(approvals)} approval{'s' if len(approvals) != 1 else ''} recorded" + (
            f": {users(d.user for d in approvals)})" if approvals else ")"
        )
        return [
            f":alarm_clock: *Expired* {slack_date(decided_at or campaign.expires_at)}: "
            f"not decided in time{got}. Nothing was sent to ThingSpace."
        ]
    if outcome == "submit_failed":
        if campaign.error_code in LOCAL_ERROR_CODES:
            failed = f":x: *Not scheduled:* {escape(campaign.error_message or campaign.error_code or '')}"
        else:
            failed = (
                ":x: *ThingSpace refused the campaign:* "
                f"{thingspace_error(campaign.error_code, campaign.error_message)}"
            )
        return [line for line in (approved_line, failed + when(decided_at)) if line]
    if outcome == "cancelled":
        who = f" by {user(by_user)}" if by_user else ""
        return [f":no_entry_sign: *Cancelled*{who}{when(decided_at)}"]
    return [f"{state_label(outcome)}{when(decided_at)}"]


def decided_card(
    campaign: Campaign,
    *,
    decisions: Sequence[Decision],
    outcome: str,
    devices_sample: Sequence[str],
    sandbox: bool,
    decided_at: dt.datetime | None = None,
    by_user: str | None = None,
    scope_lines: Sequence[str] = (),
) -> Message:
    """The approval card with its buttons replaced by a stamp, so nobody clicks a decided card.

    `scope_lines` (mrkdwn) go under the stamp: how approvers changed the device set before
    deciding (narrowed to the eligible devices, or widened by an override: by whom, why).

    `outcome`: `approved`, `submitting`, `rejected`, `withdrawn`, `expired`, `submit_failed` or
    `cancelled` (a CampaignState or the verb form works too; anything else gets its state words). `decided_at`/`by_user` fill in what the
    decisions do not record (a withdrawal, an expiry).
    """
    sandbox = sandbox or campaign.sandbox
    outcome = _OUTCOME_ALIASES.get(str(outcome), str(outcome))
    stamp = _stamp(campaign, outcome, decisions, decided_at, by_user) + list(scope_lines)
    blocks = _request_blocks(campaign, devices_sample, sandbox) + [
        section(clip("\n".join(stamp), MAX_SECTION_TEXT)),
        _ref_context(campaign, f"Request hash `{escape(campaign.content_hash[:HASH_SHOWN])}`"),
    ]
    return message(_fallback(campaign, sandbox, f"Outcome: {outcome.replace('_', ' ')}."), blocks)


# --- Campaign card -----------------------------------------------------------------------------


def campaign_card(
    campaign: Campaign,
    *,
    counts: Mapping[str, int],
    last_update: dt.datetime | None,
    sandbox: bool,
    decisions: Sequence[Decision],
    scope_lines: Sequence[str] = (),
) -> Message:
    """The thread root once submitted (also the `/fota status` answer): status, progress.
    `scope_lines`: how approvers changed the device set (as on the decided card)."""
    sandbox = sandbox or campaign.sandbox
    buckets = bucket_counts(counts)
    total = sum(buckets.values())
    status = f"*{state_label(campaign.state)}*"
    if campaign.thingspace_status and campaign.thingspace_status != campaign.state.value:
        status += f" · ThingSpace status {code(campaign.thingspace_status)}"
    make_model = (
        " / ".join(code(v) for v in (campaign.make, campaign.model) if v) or "not known yet"
    )
    blocks = [header(f"Firmware campaign {campaign.ref}")]
    if sandbox:
        blocks.append(section(f"*{SANDBOX_BANNER}*"))
    blocks += [
        section(status),
        fields_section(
            [
                f"*ThingSpace campaign*\n{code(campaign.thingspace_id) if campaign.thingspace_id else 'not assigned yet'}",
                f"*Make / model*\n{make_model}",
                f"*Firmware*\n{code(campaign.firmware_name)}",
                f"*From → to*\n{_firmware(campaign)}",
                f"*Account*\n{code(campaign.account)}",
                f"*Dates*\n{campaign.start_date.isoformat()} → {campaign.end_date.isoformat()}",
                f"*Windows (UTC)*\n{_windows(campaign.windows)}",
                f"*Devices*\n{campaign.device_count:,}",
                f"*Campaign name*\n{code(campaign.thingspace_name)}",
                f"*Requested by*\n{user(campaign.requester)}",
            ]
        ),
        section(f"*Progress*\n{progress_bar(buckets)}"),
        fields_section(
            [
                f"*{name}*\n{buckets[name]:,} · {percent(buckets[name], total)}%"
                for name in DEVICE_BUCKETS
            ]
        ),
    ]
    if campaign.state is S.LOST:
        blocks.append(section(f":ghost: {lost_advice(campaign)}"))
    if scope_lines:
        blocks.append(section(clip("\n".join(scope_lines), MAX_SECTION_TEXT)))
    approvals = counted_approvals(campaign, decisions)
    updated = f"Last update {slack_date(last_update)}" if last_update else "No device reports yet"
    blocks.append(
        _ref_context(
            campaign,
            updated,
            *([f"Approved by {users(d.user for d in approvals)}"] if approvals else []),
        )
    )
    fallback = (
        f"{'[SANDBOX] ' if sandbox else ''}Ref {campaign.ref}: {STATE_LABELS[campaign.state][1]}. "
        f"{buckets['succeeded']:,} succeeded ({percent(buckets['succeeded'], total)}%), "
        f"{buckets['failed']:,} failed ({percent(buckets['failed'], total)}%) of {total:,}."
    )
    return message(fallback, blocks)
