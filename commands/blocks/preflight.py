"""The pre-flight section of the approval card, its buttons, the override modal, and the thread
replies about narrowing and widening a request.

Pure functions of the stored records. `preflight_blocks` goes into `approval_card`'s
`preflight_blocks=`; `gate_decisions` then sets the card's decision buttons from
`approve_elements`, which the App Home uses too, so both always offer the same choices:
nothing approvable while the checks run, after they failed, or when a finding blocks (the
section says why); Approve when every device is eligible; when some are excluded, the primary
"Approve N eligible" and a separate "Include excluded devices…" that opens `override_modal`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, Protocol

from commands.blocks.actions import (
    ACTION_APPROVE,
    ACTIONS_BLOCK_ID,
    action_value,
    button,
    confirm_dialog,
    decision_buttons,
)
from commands.blocks.kit import (
    MAX_MODAL_BUTTON,
    MAX_MODAL_TITLE,
    MAX_SECTION_TEXT,
    Block,
    Message,
    clip,
    code,
    context,
    divider,
    escape,
    link,
    message,
    plain,
    plural,
    quote,
    section,
    slack_date,
    user,
    users,
)
from storage.findings import (
    CHECKING,
    DONE,
    FAILED,
    NEVER_SENT,
    ConflictFinding,
    Finding,
    PreflightRecord,
    PreflightSummary,
)
from storage.model import Campaign, TimeWindow

ACTION_APPROVE_ELIGIBLE = "fota_eligible_only"
ACTION_INCLUDE_EXCLUDED = "fota_include_excluded"
ACTION_EXCLUDED_CSV = "fota_excluded_csv"
EXCLUDED_BLOCK_ID = "fota_excluded"
ACTION_PREFLIGHT_RETRY = "fota_preflight_retry"
OVERRIDE_MODAL_CALLBACK_ID = "fota_override"
OVERRIDE_COUNT_BLOCK_ID = "count"
OVERRIDE_REASON_BLOCK_ID = "reason"
MAX_OVERRIDE_REASON = 2000
PREFLIGHT_BLOCK_ID = "fota_preflight"
DIGEST_SHOWN = 12
CONFLICTS_SHOWN = 5

# ThingSpace: "On-demand campaigns start in about 90 minutes to 2 hours; future-dated ones
# around 00:00 UTC" (docs/thingspace.md).
ON_DEMAND_DELAY = "about 2 hours"


class SharedCsv(Protocol):
    """The per-device CSV as shared in a direct message (bot.workflow.operations.SharedFile)."""

    @property
    def name(self) -> str: ...

    @property
    def rows(self) -> int: ...

    @property
    def permalink(self) -> str | None: ...

    @property
    def error(self) -> str | None: ...


def expected_start(start_date: dt.date, today: dt.date, windows: Sequence[TimeWindow] = ()) -> str:
    """When ThingSpace will start the campaign if it is approved now, in words."""
    if start_date < today:
        return (
            f"the start date {start_date.isoformat()} has passed; ThingSpace would refuse it, "
            "so it would end unsent"
        )
    if start_date == today:
        when = f"on demand: {ON_DEMAND_DELAY} after it is approved and sent"
    else:
        midnight = dt.datetime.combine(start_date, dt.time(0, 0), tzinfo=dt.UTC)
        when = f"about 00:00 UTC on {start_date.isoformat()} ({slack_date(midnight)})"
    if windows and not any(w.start_hour == 0 and w.end_hour == 24 for w in windows):
        # A campaign runs while startTime <= current hour < endTime (ThingSpace's schedule page).
        when += "; devices upgrade only inside " + ", ".join(str(w) for w in windows)
    return when


def _finding_line(
    finding: Finding, count: int, campaign: Campaign, summary: PreflightSummary
) -> str:
    left_out = "" if finding in NEVER_SENT else " — excluded"
    devices = plural(count, "device")
    match finding:
        case Finding.UNKNOWN:
            return f":grey_question: {devices} not in account {code(campaign.account)}{left_out}"
        case Finding.INELIGIBLE:
            return f":no_entry_sign: {devices} not FOTA-eligible (ThingSpace says `fotaEligible: false`){left_out}"
        case Finding.UNLICENSED:
            if campaign.licence_auto:
                return (
                    f":ticket: {devices} without a licence, and no unused licence of the account "
                    f"left for them (monthly-only subscription){left_out}"
                )
            return (
                f":ticket: {devices} without a licence. The subscription is monthly-only (MRC), so "
                f"ThingSpace refuses the whole request while they are in it; `licence=auto` lets "
                f"it assign unused licences{left_out}"
            )
        case Finding.DONE:
            return f":ballot_box_with_check: {devices} already on {code(campaign.firmware_to)}: done, never sent"
        case Finding.WRONG_FIRMWARE:
            return (
                f":warning: {devices} not on {code(campaign.firmware_from)} (or not reporting "
                f"a version): the upgrade is built for that version only{left_out}"
            )
        case Finding.WRONG_MODEL:
            target = " ".join(v for v in (summary.firmware.make, summary.firmware.model) if v)
            return f":warning: {devices} of another make or model than the firmware's ({escape(target)}){left_out}"
        case Finding.IN_OTHER_CAMPAIGN:
            return f":twisted_rightwards_arrows: {devices} already in another active campaign (below){left_out}"
    raise AssertionError(finding)


def licence_line(campaign: Campaign, summary: PreflightSummary) -> str | None:
    """How many licences `licence=auto` will use, on a monthly-only account."""
    if not (campaign.licence_auto and summary.monthly_only):
        return None
    if summary.licences_free is None:
        return (
            ":ticket: `licence=auto`: ThingSpace did not say how many unused licences the account "
            "has, so no unlicensed device counts as eligible"
        )
    return (
        f":ticket: `licence=auto`: uses {plural(summary.licences_assigned, 'licence')} of the "
        f"account's {summary.licences_free:,} unused"
    )


def _conflict_line(conflict: ConflictFinding) -> str:
    overlap = []
    if conflict.dates_overlap:
        overlap.append("its dates overlap")
        if conflict.windows_overlap:
            overlap.append("its windows overlap")
    timing = "; ".join(overlap) if overlap else "no date overlap"
    return (
        f":warning: *Ref {conflict.ref}* ({escape(conflict.state.replace('_', ' '))}) already holds "
        f"{plural(conflict.shared, 'device')} of this request, "
        f"{conflict.start_date.isoformat()} → {conflict.end_date.isoformat()}: {timing}"
    )


def _radius_lines(summary: PreflightSummary) -> list[str]:
    lines = []
    for row in summary.radius:
        what = " ".join(v for v in (row.make, row.model) if v) or "make/model not given"
        firmware = code(row.firmware) if row.firmware else "firmware not given"
        mark = " :dart:" if row.target else ""
        lines.append(f"• {escape(what)} on {firmware}: {row.devices:,}{mark}")
    if summary.radius_other:
        lines.append(f"• other models and versions: {summary.radius_other:,}")
    unknown = summary.count(Finding.UNKNOWN)
    if unknown:
        lines.append(f"• not in the account: {unknown:,}")
    return lines


def preflight_blocks(
    campaign: Campaign, record: PreflightRecord | None, *, today: dt.date
) -> list[Block]:
    """The findings section of the approval card; empty for a request stored before pre-flight."""
    if record is None:
        return []
    start = (
        f":clock3: *Expected start:* {expected_start(campaign.start_date, today, campaign.windows)}"
    )
    if record.status == CHECKING:
        return [
            divider(),
            section(
                ":hourglass_flowing_sand: *Pre-flight checks: checking…* The firmware, "
                f"{plural(campaign.device_count, 'device')} and other campaigns are being checked "
                "against ThingSpace. Approve appears when the findings are here."
            ),
            context(start),
        ]
    if record.status == FAILED or record.summary is None:
        retry: Block = {
            "type": "actions",
            "block_id": PREFLIGHT_BLOCK_ID,
            "elements": [
                button(
                    "Run checks again",
                    action_id=ACTION_PREFLIGHT_RETRY,
                    value=action_value(campaign.id, campaign.content_hash),
                )
            ],
        }
        return [
            divider(),
            section(
                ":x: *Pre-flight checks could not finish:* "
                f"{escape(clip(record.error or 'no reason given', 1500))}. "
                "Approve stays off until they pass."
            ),
            retry,
            context(start),
        ]
    summary = record.summary
    blocks: list[Block] = [divider()]
    if summary.blocked:
        reasons = "\n".join(f"• {escape(r)}" for r in summary.blocking)
        blocks.append(section(f":no_entry: *Approve is disabled:*\n{reasons}"))
    if summary.firmware.listed:
        make_model = " ".join(v for v in (summary.firmware.make, summary.firmware.model) if v)
        firmware = (
            f":white_check_mark: Firmware listed for {escape(campaign.protocol)}: "
            f"{code(campaign.firmware_from)} → {code(campaign.firmware_to)}"
            + (f", for {escape(make_model)}" if make_model else "")
        )
    else:
        firmware = f":x: {escape(summary.firmware.problem or 'Firmware not listed.')}"
    lines = [
        firmware,
        f"*{summary.eligible:,} of {plural(summary.requested, 'device')} eligible*"
        + (
            f" ({summary.on_target:,} of them on {code(campaign.firmware_from)} and of the firmware's model)"
            if summary.firmware.listed and summary.on_target != summary.eligible
            else ""
        )
        + (" · licences checked: the subscription is monthly-only" if summary.monthly_only else ""),
    ]
    licences = licence_line(campaign, summary)
    if licences:
        lines.append(licences)
    lines += [
        _finding_line(f, summary.count(f), campaign, summary) for f in Finding if summary.count(f)
    ]
    blocks.append(section("*Pre-flight findings*\n" + "\n".join(lines)))
    if summary.excluded:
        blocks.append(
            {
                "type": "actions",
                "block_id": EXCLUDED_BLOCK_ID,
                "elements": [
                    button(
                        "Excluded devices (CSV)",
                        action_id=ACTION_EXCLUDED_CSV,
                        value=action_value(campaign.id, campaign.content_hash),
                    )
                ],
            }
        )
    change = hash_change_line(campaign, record)
    if change:
        blocks.append(section(change))
    radius = _radius_lines(summary)
    if radius:
        blocks.append(
            section(
                "*Blast radius* (devices by make, model and current firmware)\n" + "\n".join(radius)
            )
        )
    if summary.conflicts:
        shown = [_conflict_line(c) for c in summary.conflicts[:CONFLICTS_SHOWN]]
        more = len(summary.conflicts) - CONFLICTS_SHOWN
        if more > 0:
            shown.append(f"… and {plural(more, 'more campaign')}")
        blocks.append(section("\n".join(shown)))
    checked = f"Checked {slack_date(record.finished_at)}" if record.finished_at else "Checked"
    blocks.append(
        context(
            start,
            f"{checked} · findings `{escape(summary.digest[:DIGEST_SHOWN])}`",
        )
    )
    return blocks


def findings_summary(campaign: Campaign, record: PreflightRecord, *, today: dt.date) -> str:
    """The card's findings in one section (the App Home): eligible count, counts per reason,
    a blast radius line, the expected start and what changed the request hash."""
    start = f":clock3: Expected start: {expected_start(campaign.start_date, today, campaign.windows)}"
    if record.status == CHECKING:
        return f":hourglass_flowing_sand: *Pre-flight checks: checking…*\n{start}"
    if record.status == FAILED or record.summary is None:
        return (
            ":x: *Pre-flight checks could not finish:* "
            f"{escape(clip(record.error or 'no reason given', 500))}\n{start}"
        )
    summary = record.summary
    lines = []
    if summary.blocked:
        lines += [f":no_entry: {escape(clip(r, 400))}" for r in summary.blocking]
    lines.append(f"*{summary.eligible:,} of {plural(summary.requested, 'device')} eligible*")
    licences = licence_line(campaign, summary)
    if licences:
        lines.append(licences)
    lines += [_finding_line(f, summary.count(f), campaign, summary) for f in Finding if summary.count(f)]
    radius = [
        f"{escape(' '.join(v for v in (r.make, r.model) if v) or 'make/model not given')} on "
        f"{code(r.firmware) if r.firmware else 'firmware not given'}: {r.devices:,}"
        + (" :dart:" if r.target else "")
        for r in summary.radius[:3]
    ]
    rest = sum(r.devices for r in summary.radius[3:]) + summary.radius_other
    if rest:
        radius.append(f"{rest:,} on other models and versions")
    if radius:
        lines.append(":dart: *Blast radius:* " + "; ".join(radius))
    lines.append(start)
    change = hash_change_line(campaign, record)
    if change:
        lines.append(change)
    return clip("\n".join(lines), MAX_SECTION_TEXT)


def scope_lines(record: PreflightRecord | None) -> list[str]:
    """For the stamp and the campaign card: the device set was narrowed or widened, by whom
    and why; nothing when approvers approved the request as it was."""
    if record is None:
        return []
    if record.overridden and record.override_by:
        return [
            f":warning: *Overridden* by {user(record.override_by)}: "
            f"{plural(record.override_count or 0, 'excluded device')} included\n"
            + quote(clip(record.override_reason or "", MAX_OVERRIDE_REASON))
        ]
    if record.narrowed and record.narrowed_by and record.summary is not None:
        return [
            f":scissors: Narrowed by {user(record.narrowed_by)} to the eligible devices: "
            f"{plural(record.summary.excluded, 'excluded device')} left out"
        ]
    return []


def hash_change_line(campaign: Campaign, record: PreflightRecord) -> str | None:
    """Why the request hash is not what the request first had: what changed, by whom."""
    hash_now = f"`{escape(campaign.content_hash[:DIGEST_SHOWN])}`"
    if record.overridden and record.override_by:
        when = f" {slack_date(record.override_at)}" if record.override_at else ""
        return (
            f":warning: *Overridden* by {user(record.override_by)}{when}: "
            f"{plural(record.override_count or 0, 'excluded device')} included, "
            f"{campaign.device_count:,} in the request now. Request hash changed to {hash_now}; "
            "approvals of another device set do not count.\n"
            + quote(clip(record.override_reason or "", MAX_OVERRIDE_REASON))
        )
    if record.narrowed and record.narrowed_by:
        return (
            f":scissors: Request hash changed to {hash_now}: narrowed to the "
            f"{campaign.device_count:,} eligible devices (of {record.narrowed_from or 0:,}) by "
            f"{user(record.narrowed_by)}; approvals of the full list do not count."
        )
    if record.status == DONE:
        return (
            f"Request hash {hash_now} includes these findings: it changed when the checks "
            "finished, so a click on the card shown while checking does not count."
        )
    return None


def _eligible_button(campaign: Campaign, record: PreflightRecord, *, primary: bool) -> Block:
    assert record.summary is not None
    summary = record.summary
    return button(
        f"Approve {summary.eligible:,} eligible",
        action_id=ACTION_APPROVE_ELIGIBLE,
        value=action_value(campaign.id, campaign.content_hash),
        style="primary" if primary else None,
        confirm=confirm_dialog(
            title="Approve the eligible devices?",
            text=(
                f"{'SANDBOX. ' if campaign.sandbox else ''}Ref {campaign.ref}: send only the "
                f"{summary.eligible:,} eligible devices of {summary.requested:,} to "
                f"{campaign.firmware_to}; the {summary.excluded:,} excluded stay out. "
                "A started campaign cannot be called back."
            ),
            confirm="Approve eligible",
            deny="Cancel",
        ),
    )


def _include_button(campaign: Campaign) -> Block:
    # No confirm dialog: it only opens the override modal, which is the confirmation.
    return button(
        "Include excluded devices…",
        action_id=ACTION_INCLUDE_EXCLUDED,
        value=action_value(campaign.id, campaign.content_hash),
    )


def _overridden_approve(campaign: Campaign, record: PreflightRecord) -> Block:
    included = record.override_count or 0
    return button(
        f"Approve all {campaign.device_count:,}",
        action_id=ACTION_APPROVE,
        value=action_value(campaign.id, campaign.content_hash),
        style="danger",
        confirm=confirm_dialog(
            title="Approve, excluded devices included?",
            text=(
                f"{'SANDBOX. ' if campaign.sandbox else ''}Ref {campaign.ref}: upgrade "
                f"{campaign.device_count:,} devices to {campaign.firmware_to}, {included:,} of them "
                f"excluded by pre-flight and included by {record.override_by}'s override. "
                "A started campaign cannot be called back."
            ),
            confirm="Approve all",
            deny="Cancel",
            danger=True,
        ),
    )


def approve_elements(
    campaign: Campaign, record: PreflightRecord | None, *, sandbox: bool
) -> list[Block]:
    """The approving buttons pre-flight allows, for the card and the App Home alike.

    - no pre-flight record (stored before pre-flight existed): Approve;
    - checking, failed or blocked (incl. no eligible device): nothing;
    - every device in the request eligible (or narrowed to them): Approve;
    - some excluded: the primary "Approve N eligible" (narrows and approves in one step) and
      "Include excluded devices…" (the override modal), when any excluded device could go;
    - widened by an override: "Approve all N" (red, its confirm says how many were excluded)
      and "Approve N eligible", which narrows back to the safe set.
    """
    if record is None:
        return decision_buttons(campaign, sandbox=sandbox)[:1]
    if not record.approvable or record.summary is None:
        return []
    if record.overridden:
        return [
            _overridden_approve(campaign, record),
            _eligible_button(campaign, record, primary=False),
        ]
    if record.excluded_pending == 0:
        return decision_buttons(campaign, sandbox=sandbox)[:1]
    elements = [_eligible_button(campaign, record, primary=True)]
    if record.summary.includable > 0:
        elements.append(_include_button(campaign))
    return elements


def gate_decisions(card: Message, campaign: Campaign, record: PreflightRecord | None) -> Message:
    """The approval card's decision buttons as pre-flight allows them (a new message).

    The card's Approve is replaced by `approve_elements`: a card shown while checking can
    never be used to approve something the findings would block, and excluded devices go out
    only through the override. Reject and Withdraw stay.
    """
    if record is None:
        return card
    blocks: list[Block] = []
    for block in card.get("blocks", []):
        if block.get("type") == "actions" and block.get("block_id") == ACTIONS_BLOCK_ID:
            elements: list[Block] = []
            for element in block.get("elements", []):
                if element.get("action_id") == ACTION_APPROVE:
                    elements += approve_elements(campaign, record, sandbox=campaign.sandbox)
                    continue
                elements.append(element)
            block = {**block, "elements": elements}
        blocks.append(block)
    return {**card, "blocks": blocks}


def _finding_words(finding: Finding, campaign: Campaign) -> str:
    match finding:
        case Finding.UNKNOWN:
            return f"not in account {campaign.account}: ThingSpace will refuse or fail them"
        case Finding.INELIGIBLE:
            return "not FOTA-eligible: ThingSpace will fail them"
        case Finding.UNLICENSED:
            return (
                "without a licence on a monthly-only subscription: ThingSpace refuses the "
                "whole campaign while they are in it"
            )
        case Finding.WRONG_FIRMWARE:
            return f"not on {campaign.firmware_from}: the image is built for that version only"
        case Finding.WRONG_MODEL:
            return "of another make or model: firmware for another model fails at best"
        case Finding.IN_OTHER_CAMPAIGN:
            return "already in another active campaign"
        case Finding.DONE:
            return f"already on {campaign.firmware_to}: left out, never sent"
    raise AssertionError(finding)


def override_modal(campaign: Campaign, record: PreflightRecord) -> dict[str, Any]:
    """"Include excluded devices…": counts per reason, the number to type, a reason.

    private_metadata is the card's button value, so the submission is checked against the
    content hash the approver was shown; submitting counts as their approval of the widened
    request (a new content hash).
    """
    assert record.summary is not None
    summary = record.summary
    included = summary.includable
    lines = [
        f"• {plural(summary.count(f), 'device')} {escape(_finding_words(f, campaign))}"
        for f in Finding
        if summary.count(f)
    ]
    title = f"Include in {campaign.ref}"
    return {
        "type": "modal",
        "callback_id": OVERRIDE_MODAL_CALLBACK_ID,
        "private_metadata": action_value(campaign.id, campaign.content_hash),
        "title": plain(
            title if len(title) <= MAX_MODAL_TITLE else "Include excluded", MAX_MODAL_TITLE
        ),
        "submit": plain("Include and approve", MAX_MODAL_BUTTON),
        "close": plain("Cancel", MAX_MODAL_BUTTON),
        "blocks": [
            section(
                f":warning: *Ref {campaign.ref}*: pre-flight excluded "
                f"{plural(summary.excluded, 'device')} of {summary.requested:,} "
                "(a device may have several reasons):\n" + "\n".join(lines)
            ),
            section(
                f"Including them sends *{summary.eligible + included:,} devices* to "
                f"{code(campaign.firmware_to)}: the {summary.eligible:,} eligible and "
                f"*{included:,} excluded*. Firmware pushed to a device it was not built for cannot "
                "be recalled. This counts as your approval of the widened request; approvals of "
                "another device set no longer count. Your name and reason go on the card and in "
                "the audit trail."
            ),
            {
                "type": "input",
                "block_id": OVERRIDE_COUNT_BLOCK_ID,
                "label": plain("Number of excluded devices being added", 2000),
                "hint": plain(f"Type {included:,} to confirm you read it.", 2000),
                "element": {
                    "type": "plain_text_input",
                    "action_id": OVERRIDE_COUNT_BLOCK_ID,
                    "max_length": 12,
                },
            },
            {
                "type": "input",
                "block_id": OVERRIDE_REASON_BLOCK_ID,
                "label": plain("Reason", 2000),
                "element": {
                    "type": "plain_text_input",
                    "action_id": OVERRIDE_REASON_BLOCK_ID,
                    "multiline": True,
                    "min_length": 1,
                    "max_length": MAX_OVERRIDE_REASON,
                    "placeholder": plain("Why must these devices get this firmware?", 150),
                },
            },
        ],
    }


def parse_override_count(text: str) -> int:
    """The typed count: digits, with thousands separators or spaces allowed; ValueError else."""
    cleaned = "".join(ch for ch in text.strip() if ch not in ", _  ")
    if not cleaned.isascii() or not cleaned.isdigit():
        raise ValueError(f"`{text.strip()[:40]}` is not a number of devices")
    return int(cleaned)


def overridden_reply(
    campaign: Campaign,
    by: str,
    *,
    included: int,
    done: int,
    reason: str,
    superseded: Sequence[str] = (),
) -> Message:
    """Thread reply: an approver included the excluded devices (an override)."""
    text = (
        f":warning: {user(by)} *overrode pre-flight*: Ref {campaign.ref} now includes "
        f"{plural(included, 'excluded device')} and holds {plural(campaign.device_count, 'device')}"
        + (f" ({plural(done, 'device')} already on {code(campaign.firmware_to)} left out)" if done else "")
        + f". New request hash `{escape(campaign.content_hash[:DIGEST_SHOWN])}`.\n"
        + quote(clip(reason, MAX_OVERRIDE_REASON))
    )
    if superseded:
        text += f"\nApprovals of another device set by {users(superseded)} no longer count."
    return message(text, [section(text)])


def narrowed_reply(
    campaign: Campaign, by: str, *, kept: int, dropped: int, superseded: Sequence[str]
) -> Message:
    """Thread reply: an approver approved the eligible devices only."""
    text = (
        f":scissors: {user(by)} approved the eligible devices only: Ref {campaign.ref} now holds "
        f"{plural(kept, 'device')}; {plural(dropped, 'device')} left out. New request hash "
        f"`{escape(campaign.content_hash[:DIGEST_SHOWN])}`."
    )
    if superseded:
        text += (
            f" Approvals of the full list by {users(superseded)} no longer count; "
            "they need to approve again."
        )
    return message(text, [section(text)])


def excluded_csv_reply(ref: str, shared: SharedCsv | None) -> str:
    """The answer to "Excluded devices (CSV)": where the file went, or why it did not."""
    if shared is None:
        return f"Pre-flight excluded no device of Ref {ref}; there is no list to send."
    if shared.error:
        return (
            f"Slack did not take the CSV of the {shared.rows:,} excluded devices of Ref {ref} "
            f"(`{escape(shared.error)}`); nothing else changed. Please try again."
        )
    where = f" ({link(shared.permalink, shared.name)})" if shared.permalink else ""
    return (
        f"Sent you {shared.name}{where} in a direct message: the {plural(shared.rows, 'device')} "
        f"pre-flight excluded from Ref {ref}, each with its reasons."
    )
