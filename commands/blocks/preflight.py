"""The pre-flight section of the approval card (issue 6), its buttons, and its thread reply.

Pure functions of the stored records. `preflight_blocks` goes into `approval_card`'s
`preflight_blocks=`; `gate_decisions` then adjusts the card's decision buttons: no Approve while
the checks run, after they failed, or when a finding blocks (the section says why), and an
"Approve eligible only" button when some devices would be left out.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from commands.blocks.actions import (
    ACTION_APPROVE,
    ACTIONS_BLOCK_ID,
    action_value,
    button,
    confirm_dialog,
)
from commands.blocks.kit import (
    Block,
    Message,
    clip,
    code,
    context,
    divider,
    escape,
    message,
    plural,
    section,
    slack_date,
    user,
    users,
)
from commands.requests import TimeWindow
from storage.preflight import (
    CHECKING,
    EXCLUDING,
    FAILED,
    ConflictFinding,
    Finding,
    PreflightRecord,
    PreflightSummary,
)
from storage.records import Campaign

ACTION_APPROVE_ELIGIBLE = "fota_eligible_only"
ACTION_PREFLIGHT_RETRY = "fota_preflight_retry"
PREFLIGHT_BLOCK_ID = "fota_preflight"
DIGEST_SHOWN = 12
CONFLICTS_SHOWN = 5

# ThingSpace: "On-demand campaigns start in about 90 minutes to 2 hours; future-dated ones
# around 00:00 UTC" (shared/reference/thingspace-fota-v3.md).
ON_DEMAND_DELAY = "about 2 hours"


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
        # A campaign runs while startTime <= current hour < endTime (reference page).
        when += "; devices upgrade only inside " + ", ".join(str(w) for w in windows)
    return when


def _finding_line(
    finding: Finding, count: int, campaign: Campaign, summary: PreflightSummary
) -> str:
    left_out = " — left out by _Approve eligible only_" if finding in EXCLUDING else ""
    devices = plural(count, "device")
    match finding:
        case Finding.UNKNOWN:
            return f":grey_question: {devices} not in account {code(campaign.account)}{left_out}"
        case Finding.INELIGIBLE:
            return f":no_entry_sign: {devices} not FOTA-eligible (ThingSpace says `fotaEligible: false`){left_out}"
        case Finding.UNLICENSED:
            return (
                f":ticket: {devices} without a licence. The subscription is monthly-only (MRC), so "
                f"ThingSpace refuses the whole request while they are in it{left_out}"
            )
        case Finding.DONE:
            return f":ballot_box_with_check: {devices} already on {code(campaign.firmware_to)}: done, nothing to send{left_out}"
        case Finding.WRONG_FIRMWARE:
            return (
                f":warning: {devices} not on {code(campaign.firmware_from)}: the upgrade is built "
                "for that version and is likely to fail on them"
            )
        case Finding.WRONG_MODEL:
            target = " ".join(v for v in (summary.firmware.make, summary.firmware.model) if v)
            return f":warning: {devices} of another make or model than the firmware's ({escape(target)})"
        case Finding.IN_OTHER_CAMPAIGN:
            return (
                f":twisted_rightwards_arrows: {devices} already in another active campaign (below)"
            )
    raise AssertionError(finding)


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
    lines += [
        _finding_line(f, summary.count(f), campaign, summary) for f in Finding if summary.count(f)
    ]
    if record.narrowed and record.narrowed_by:
        lines.append(
            f":scissors: Narrowed by {user(record.narrowed_by)} to the eligible devices: "
            f"{campaign.device_count:,} of {record.narrowed_from or 0:,} are in the request now."
        )
    blocks.append(section("*Pre-flight findings*\n" + "\n".join(lines)))
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


def offers_eligible_only(record: PreflightRecord | None) -> bool:
    """Whether to offer "Approve eligible only": checks passed, some devices would be left
    out, some remain, and the request was not narrowed already."""
    return (
        record is not None
        and record.approvable
        and record.summary is not None
        and record.summary.eligible > 0
        and record.summary.excluded > 0
        and not record.narrowed
    )


def eligible_only_button(campaign: Campaign, record: PreflightRecord) -> Block:
    assert record.summary is not None
    summary = record.summary
    return button(
        f"Approve eligible only ({summary.eligible:,})",
        action_id=ACTION_APPROVE_ELIGIBLE,
        value=action_value(campaign.id, campaign.content_hash),
        confirm=confirm_dialog(
            title="Approve eligible devices only?",
            text=(
                f"{'SANDBOX. ' if campaign.sandbox else ''}Ref {campaign.ref}: send only the "
                f"{summary.eligible:,} eligible devices of {summary.requested:,}; "
                f"{summary.excluded:,} are left out. The request changes, so approvals of the full "
                "list no longer count. A started campaign cannot be called back."
            ),
            confirm="Approve eligible",
            deny="Cancel",
        ),
    )


def gate_decisions(card: Message, campaign: Campaign, record: PreflightRecord | None) -> Message:
    """The approval card's decision buttons as pre-flight allows them (a new message).

    Approve is removed unless the checks finished without a blocking finding: a card shown
    while checking can then never be used to approve something the findings would block.
    Reject and Withdraw stay. A request stored before pre-flight existed is left as it is.
    """
    if record is None:
        return card
    approvable = record.approvable
    offer = offers_eligible_only(record)
    blocks: list[Block] = []
    for block in card.get("blocks", []):
        if block.get("type") == "actions" and block.get("block_id") == ACTIONS_BLOCK_ID:
            elements: list[Block] = []
            for element in block.get("elements", []):
                if element.get("action_id") == ACTION_APPROVE:
                    if approvable:
                        elements.append(element)
                    if offer:
                        elements.append(eligible_only_button(campaign, record))
                    continue
                elements.append(element)
            block = {**block, "elements": elements}
        blocks.append(block)
    return {**card, "blocks": blocks}


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
