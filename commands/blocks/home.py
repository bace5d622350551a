"""The App Home tab (pure): requests waiting for my approval (with the card's own Approve and
Reject buttons), my requests waiting for approval, and the campaigns under way with their
progress bars. Rebuilt from the database each time the tab is opened.

A Home tab holds at most 100 blocks; each section gets a fixed budget and says how many it
left out, so a busy day never breaks the tab.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence

from commands.blocks.actions import (
    ACTION_REJECT,
    action_value,
    button,
    decision_buttons,
)
from commands.blocks.cards import (
    HASH_SHOWN,
    SANDBOX_BANNER,
    counted_approvals,
    progress_bar,
    state_label,
)
from commands.blocks.kit import (
    MAX_SURFACE_BLOCKS,
    Block,
    code,
    context,
    divider,
    escape,
    header,
    plural,
    section,
    slack_date,
    user,
)
from commands.blocks.operations import STAGED_STATES, CampaignFacts
from commands.blocks.preflight import approve_elements, findings_summary
from commands.blocks.waves import current_wave_text, plan_blocks
from storage.model import Campaign

HOME_CALLBACK_ID = "fota_home"
MAX_HOME_BLOCKS = MAX_SURFACE_BLOCKS  # Slack's limit for a Home tab (messages: 50)
MAX_NOTICE_BLOCKS = 5
# Per-section budgets (blocks per entry: to decide 3, mine 1, active 1), well inside 100.
MAX_TO_DECIDE = 10
MAX_MINE = 10
MAX_ACTIVE = 15


def _windows(campaign: Campaign) -> str:
    if not campaign.windows:
        return "any time"
    return ", ".join(f"{w.start_hour:02d}–{w.end_hour:02d}" for w in campaign.windows)


def _more(shown: int, total: int, what: str) -> list[Block]:
    hidden = total - shown
    return [context(f"… and {plural(hidden, what)} more: `/fota list active` lists them all.")] if hidden > 0 else []


def _to_decide(
    facts: CampaignFacts, required_approvals: int, user_id: str, today: dt.date
) -> list[Block]:
    c = facts.campaign
    approvals = counted_approvals(c, facts.decisions)
    sample = ", ".join(code(i, 40) for i in facts.sample[:3])
    more = c.device_count - min(len(facts.sample), 3)
    devices = f"{plural(c.device_count, 'device')}" + (
        f": {sample}{f' and {more:,} more' if more > 0 and sample else ''}" if sample else ""
    )
    text = (
        f"*Ref {c.ref}*{' · :test_tube: sandbox' if c.sandbox else ''} · from {user(c.requester)}\n"
        f"{code(c.firmware_name, 120)}: {code(c.firmware_from, 60)} → {code(c.firmware_to, 60)} · "
        f"{escape(c.protocol)} · account {code(c.account, 40)}\n"
        f"{devices}\n"
        f"{c.start_date.isoformat()} → {c.end_date.isoformat()} · windows (UTC) {_windows(c)} · "
        f"name {code(c.thingspace_name, 120)}"
    )
    already = any(d.user == user_id for d in approvals)
    blocks: list[Block] = [
        section(text),
        context(
            f"{len(approvals)} of {plural(required_approvals, 'approval')} · "
            f"request hash `{escape(c.content_hash[:HASH_SHOWN])}` · expires {slack_date(c.expires_at)}"
        ),
    ]
    if already:
        blocks.append(context("You approved this; it waits for the other approvers."))
        return blocks
    value = action_value(c.id, c.content_hash)
    record = facts.preflight
    if record is not None:
        # The card's findings and the card's buttons, never more: whoever decides from here
        # sees what the approval card shows.
        blocks[1:1] = [section(findings_summary(c, record, today=today)), *plan_blocks(facts.plan)]
        elements = approve_elements(c, record, sandbox=c.sandbox)
        if not elements and facts.not_approvable:
            blocks.append(context(f":hourglass: Not approvable now: {escape(facts.not_approvable)}."))
        reject = button("Reject", action_id=ACTION_REJECT, value=value, style="danger")
        blocks.append({"type": "actions", "elements": [*elements, reject]})
        return blocks
    if facts.not_approvable:
        # Pre-flight decides whether Approve is offered at all, here as on the card.
        blocks.append(context(f":hourglass: Not approvable now: {escape(facts.not_approvable)}."))
        blocks.append({"type": "actions", "elements": [button("Reject", action_id=ACTION_REJECT, value=value, style="danger")]})
        return blocks
    blocks.append({"type": "actions", "elements": decision_buttons(c, sandbox=c.sandbox)})
    return blocks


def _mine(facts: CampaignFacts, required_approvals: int) -> Block:
    c = facts.campaign
    approvals = counted_approvals(c, facts.decisions)
    return section(
        f"*Ref {c.ref}* · {plural(c.device_count, 'device')} to {code(c.firmware_to, 80)} · "
        f"{len(approvals)} of {plural(required_approvals, 'approval')} · "
        f"expires {slack_date(c.expires_at)}"
    )


def _active(facts: CampaignFacts) -> Block:
    c = facts.campaign
    # A staged request: one row with its current wave (its waves are not rows of their own).
    wave = facts.current_wave
    progress = (
        f"{current_wave_text(wave)}\n{progress_bar(wave.counts)}"
        if c.state in STAGED_STATES and wave is not None
        else progress_bar(facts.counts)
    )
    return section(
        f"*Ref {c.ref}* · {state_label(c.state)}\n"
        f"{plural(c.device_count, 'device')} to {code(c.firmware_to, 80)} · by {user(c.requester)}\n"
        f"{progress}"
    )


def home_view(
    user_id: str,
    *,
    may_approve: bool,
    to_decide: Sequence[CampaignFacts],
    mine_waiting: Sequence[CampaignFacts],
    active: Sequence[CampaignFacts],
    totals: Mapping[str, int],
    required_approvals: int,
    sandbox: bool,
    now: dt.datetime,
    notice: Sequence[Block] = (),
) -> dict[str, object]:
    """The Home tab view for `user_id`. `totals` counts each list before it was cut
    (keys `to_decide`, `mine_waiting`, `active`); `notice` is shown on top (the answer to a
    button clicked on this tab)."""
    blocks: list[Block] = [header("Firmware campaigns")]
    if sandbox:
        blocks.append(section(f"*{SANDBOX_BANNER}*"))
    if notice:
        blocks += list(notice[:MAX_NOTICE_BLOCKS])
        blocks.append(divider())

    if may_approve:
        shown = to_decide[:MAX_TO_DECIDE]
        blocks.append(section(f"*Requests waiting for your approval* ({totals.get('to_decide', len(to_decide)):,})"))
        if not shown:
            blocks.append(context("Nothing is waiting for you."))
        for facts in shown:
            blocks += _to_decide(facts, required_approvals, user_id, now.astimezone(dt.UTC).date())
        blocks += _more(len(shown), totals.get("to_decide", len(to_decide)), "request")
        blocks.append(divider())

    shown_mine = mine_waiting[:MAX_MINE]
    blocks.append(section(f"*Your requests waiting for approval* ({totals.get('mine_waiting', len(mine_waiting)):,})"))
    if not shown_mine:
        blocks.append(context("None. `/fota` opens the request form."))
    blocks += [_mine(f, required_approvals) for f in shown_mine]
    blocks += _more(len(shown_mine), totals.get("mine_waiting", len(mine_waiting)), "request")
    blocks.append(divider())

    shown_active = active[:MAX_ACTIVE]
    blocks.append(section(f"*Campaigns under way* ({totals.get('active', len(active)):,})"))
    if not shown_active:
        blocks.append(context("No campaign is running."))
    blocks += [_active(f) for f in shown_active]
    blocks += _more(len(shown_active), totals.get("active", len(active)), "campaign")

    blocks.append(divider())
    blocks.append(
        context(
            f"Updated {slack_date(now)} for {user(user_id)}. `/fota status ID`, `/fota list`, "
            "`/fota cancel ID`, `/fota firmware`, `/fota devices ID` · `/fota help`"
        )
    )
    return {"type": "home", "callback_id": HOME_CALLBACK_ID, "blocks": blocks[:MAX_HOME_BLOCKS]}


def home_notice(text: str, notice_blocks: Sequence[Block] | None = None) -> list[Block]:
    """An answer shown on top of the Home tab. `text`/`notice_blocks` are what the bot would
    have sent as an ephemeral reply (already mrkdwn, already escaped where needed)."""
    if notice_blocks:
        return [dict(b) for b in notice_blocks[:MAX_NOTICE_BLOCKS]]
    return [section(text.strip() or "Done.")]
