"""Answers to the operator commands (pure): `/fota status | list | cancel | firmware | devices`.

All of them are ephemeral replies (the slash command's or the click's response_url). The
status answer reuses the thread root's own builders; the rest are compact, one line or one
section per campaign, firmware entry or device. Button values come back from the client and
are parsed strictly (`parse_*_value` raise ValueError for anything these builders did not make).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from commands.blocks.actions import button, confirm_dialog
from commands.blocks.cards import (
    bucket_counts,
    campaign_card,
    counted_approvals,
    decided_card,
    percent,
    progress_bar,
    state_label,
    thingspace_error,
)
from commands.blocks.history import ACTION_HISTORY, history_value
from commands.blocks.kit import (
    MAX_BLOCKS,
    MAX_BUTTON_VALUE,
    Block,
    Message,
    clip,
    code,
    context,
    escape,
    fields_section,
    link,
    message,
    plural,
    section,
    sections,
    slack_date,
    user,
)
from commands.blocks.preflight import SharedCsv, findings_summary, scope_lines
from commands.blocks.waves import current_wave_text, waves_row
from storage.findings import PreflightRecord
from storage.model import Campaign, CancelKind, Decision, Device
from storage.states import DEVICE_BUCKETS, CampaignState
from storage.waves import StoredPlan, WaveTally

S = CampaignState

ACTION_LIST_PAGE = "fota_list_page"
ACTION_CANCEL_CONFIRM = "fota_cancel_confirm"
ACTION_CANCEL_KEEP = "fota_cancel_keep"
ACTION_FIRMWARE_SCHEDULE = "fota_firmware_schedule"

# The states whose thread root is the approval card with a stamp (commands/blocks/render.py, Renderer.card).
_DECIDED_CARD_STATES = frozenset(
    {S.PENDING_APPROVAL, S.APPROVED, S.SUBMITTING, S.REJECTED, S.EXPIRED, S.WITHDRAWN, S.SUBMIT_FAILED}
)
_SCOPE_TITLES = {
    "active": "Campaigns not finished yet",
    "all": "All campaigns",
    "mine": "Your campaigns",
}
_SCOPE_EMPTY = {
    "active": "No campaign is waiting or running. `/fota list all` shows finished ones too.",
    "all": "No campaign has been requested yet. `/fota schedule` requests one.",
    "mine": "You have not requested any campaign. `/fota schedule` requests one.",
}
MAX_FIRMWARE_SHOWN = 40
MAX_RELEASE_NOTE = 200
MAX_DEVICE_REASON = 200


class CampaignFacts(Protocol):
    """A campaign with what its cards show (bot.workflow.operations.CampaignView has these)."""

    @property
    def campaign(self) -> Campaign: ...

    @property
    def counts(self) -> Mapping[str, int]: ...

    @property
    def decisions(self) -> Sequence[Decision]: ...

    @property
    def sample(self) -> Sequence[str]: ...

    @property
    def not_approvable(self) -> str | None: ...

    @property
    def preflight(self) -> PreflightRecord | None: ...

    @property
    def plan(self) -> StoredPlan | None: ...

    @property
    def current_wave(self) -> WaveTally | None: ...

    @property
    def wave_states(self) -> Mapping[int, tuple[str, int, int]]: ...


def _value(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _load_value(value: Any, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, str) or len(value) > MAX_BUTTON_VALUE:
        raise ValueError("button value is not a string of at most 2,000 characters")
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"button value is not JSON: {exc.msg}") from exc
    if not isinstance(data, dict) or set(data) != keys:
        raise ValueError(f"button value must be an object with {', '.join(sorted(keys))}")
    return data


# A staged request's own state: its figures are its waves'.
STAGED_STATES = frozenset({S.ROLLING_OUT, S.ROLLED_OUT, S.HALTED})


def _progress(facts: CampaignFacts) -> str:
    """How far a row's campaign is: a staged request by its current wave (`wave 2/4 running
    41 %`), any other by its devices."""
    if facts.campaign.state in STAGED_STATES:
        return current_wave_text(facts.current_wave)
    return _progress_percent(facts.campaign, facts.counts)


def _progress_percent(campaign: Campaign, counts: Mapping[str, int]) -> str:
    if not campaign.state.is_thingspace and campaign.state not in (S.SUBMITTED, S.LOST):
        return "not started"
    buckets = bucket_counts(counts)
    done = buckets["succeeded"] + buckets["failed"]
    return f"{percent(done, sum(buckets.values()))}% done"


# --- /fota status ----------------------------------------------------------------------------------


def status_reply(
    facts: CampaignFacts,
    *,
    required_approvals: int,
    permalink: str | None,
    last_actor: str | None = None,
    now: dt.datetime | None = None,
) -> Message:
    """The campaign card as the thread root shows it now (without its buttons: an ephemeral
    copy is not the place to approve), and a link to the thread. `last_actor` names who
    withdrew a withdrawn request (the requester, or an approver through `/fota cancel`)."""
    campaign = facts.campaign
    if campaign.state in STAGED_STATES and facts.plan is not None:
        # A staged request's card, as its thread root shows it: the plan's row of waves and,
        # under it, the current wave.
        card = decided_card(
            campaign,
            decisions=facts.decisions,
            outcome=campaign.state.value,
            devices_sample=facts.sample,
            sandbox=campaign.sandbox,
            scope_lines=[
                *scope_lines(facts.preflight),
                waves_row(facts.plan, facts.wave_states),
                f"*Now:* {current_wave_text(facts.current_wave)}",
            ],
        )
    elif campaign.state in _DECIDED_CARD_STATES:
        card = decided_card(
            campaign,
            decisions=facts.decisions,
            outcome=campaign.state.value,
            devices_sample=facts.sample,
            sandbox=campaign.sandbox,
            by_user=last_actor if campaign.state is S.WITHDRAWN else None,
            scope_lines=scope_lines(facts.preflight),
        )
    else:
        card = campaign_card(
            campaign,
            counts=facts.counts,
            last_update=campaign.last_callback_at,
            sandbox=campaign.sandbox,
            decisions=facts.decisions,
            scope_lines=scope_lines(facts.preflight),
        )
    extra: list[Block] = []
    if campaign.state is S.PENDING_APPROVAL:
        approvals = counted_approvals(campaign, facts.decisions)
        if facts.preflight is not None and now is not None:
            # The findings the approvers decide on, as the card shows them.
            today = now.astimezone(dt.UTC).date()
            extra.append(section(findings_summary(campaign, facts.preflight, today=today)))
        extra.append(
            section(
                f"*{len(approvals)} of {plural(required_approvals, 'approval')}* so far · "
                f"expires {slack_date(campaign.expires_at)}. Approvers decide on the card in the thread."
            )
        )
    where = (
        f":speech_balloon: {link(permalink, f'Open the thread of Ref {campaign.ref}')}"
        if permalink
        else f"The thread of Ref {campaign.ref} is not posted yet."
    )
    extra.append(context(where))
    history = button("History", action_id=ACTION_HISTORY, value=history_value(campaign.id))
    extra.append({"type": "actions", "elements": [history]})
    blocks = list(card["blocks"])[: MAX_BLOCKS - len(extra)] + extra
    return message(card["text"], blocks)


# --- /fota list ----------------------------------------------------------------------------------


def list_page_value(scope: str, before_id: int) -> str:
    return _value({"scope": scope, "before": before_id})


def parse_list_page_value(value: Any) -> tuple[str, int]:
    data = _load_value(value, {"scope", "before"})
    scope, before = data["scope"], data["before"]
    if scope not in _SCOPE_TITLES or type(before) is not int or before < 1:
        raise ValueError("list page value must carry a known scope and a positive id")
    return scope, before


def list_reply(
    items: Sequence[CampaignFacts], *, scope: str, next_before: int | None, first_page: bool
) -> Message:
    """One page of campaigns, newest first: a section each, and a *Next page* button."""
    title = _SCOPE_TITLES.get(scope, "Campaigns")
    if not items:
        text = _SCOPE_EMPTY.get(scope, "No campaigns.") if first_page else "No more campaigns."
        return message(text, [section(text)])
    blocks: list[Block] = [section(f"*{title}*, newest first{'' if first_page else ' (continued)'}")]
    for facts in items:
        c = facts.campaign
        blocks.append(
            section(
                f"*Ref {c.ref}* · {state_label(c.state)}\n"
                f"to {code(c.firmware_to, 80)} · {plural(c.device_count, 'device')} · "
                f"by {user(c.requester)} · {_progress(facts)} · "
                f"requested {slack_date(c.created_at, '{date_short}')}"
            )
        )
    tail = context("`/fota status ID` shows one campaign; `/fota list active|all|mine` another list.")
    if next_before is not None:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    button(
                        "Next page",
                        action_id=ACTION_LIST_PAGE,
                        value=list_page_value(scope, next_before),
                    )
                ],
            }
        )
    blocks.append(tail)
    refs = ", ".join(f.campaign.ref for f in items)
    return message(f"{title}: {refs}", blocks)


# --- /fota cancel ---------------------------------------------------------------------------------


def cancel_value(campaign_id: int, kind: CancelKind) -> str:
    return _value({"campaign_id": campaign_id, "kind": kind})


def parse_cancel_value(value: Any) -> tuple[int, CancelKind]:
    data = _load_value(value, {"campaign_id", "kind"})
    campaign_id, kind = data["campaign_id"], data["kind"]
    if type(campaign_id) is not int or campaign_id < 1 or kind not in ("withdraw", "thingspace", "halt"):
        raise ValueError("cancel value must carry a positive campaign id and a known kind")
    return campaign_id, kind


def cancel_prompt(campaign: Campaign, *, kind: CancelKind) -> Message:
    """The confirmation before a cancel, saying plainly what it does and does not do."""
    if kind == "withdraw":
        head = f"*Withdraw Ref {campaign.ref}?*"
        body = (
            f"Ref {campaign.ref} is waiting for approval. It was never sent to ThingSpace, so "
            "withdrawing it only closes the request: nobody can approve it any more and nothing "
            "reaches any device."
        )
        label, dialog_title = "Withdraw request", "Withdraw this request?"
        dialog_text = f"Ref {campaign.ref} is closed; nothing was or will be sent to ThingSpace."
    elif kind == "halt":
        head = f"*Cancel the rollout Ref {campaign.ref}?*"
        now = (
            f"Ref {campaign.ref} is halted: no further wave is sent. Cancelling"
            if campaign.state is CampaignState.HALTED
            else f"Ref {campaign.ref} is rolling out in waves. Cancelling halts it: no further wave is sent,"
        )
        body = (
            f"{now} and fota-bot asks ThingSpace to cancel each wave it holds. ThingSpace cancels a campaign "
            "only *before it starts*; a started wave may be refused (it goes on) or aborted part-way. "
            "Its answers are shown in the thread, word for word. An approver can resume the rollout later."
        )
        label, dialog_title = "Cancel rollout", "Cancel this rollout?"
        dialog_text = (
            f"Ref {campaign.ref}: halt the rollout and ask ThingSpace to cancel its live waves. "
            "After a wave's start ThingSpace may refuse or abort it."
        )
    else:
        ts_id = code(campaign.thingspace_id or "?")
        head = f"*Cancel Ref {campaign.ref} at ThingSpace?*"
        body = (
            f"ThingSpace campaign {ts_id} ({plural(campaign.device_count, 'device')}) is "
            f"{state_label(campaign.state)}.\n"
            "ThingSpace cancels a campaign only *before it starts*. After the start it may refuse "
            "(the campaign goes on) or abort it part-way (devices already upgraded stay upgraded). "
            "Its answer is shown here and in the thread, word for word."
        )
        if campaign.state is S.SCHEDULED:
            body += (
                "\n:warning: This campaign is scheduled: ThingSpace may consider it started already."
            )
        label, dialog_title = "Cancel campaign", "Cancel at ThingSpace?"
        dialog_text = (
            f"Ref {campaign.ref}: ask ThingSpace to cancel campaign {campaign.thingspace_id or '?'} "
            f"({campaign.device_count:,} devices). After its start ThingSpace may refuse or abort it."
        )
    actions: Block = {
        "type": "actions",
        "elements": [
            button(
                label,
                action_id=ACTION_CANCEL_CONFIRM,
                value=cancel_value(campaign.id, kind),
                style="danger",
                confirm=confirm_dialog(
                    title=dialog_title, text=dialog_text, confirm=label, deny="Keep it", danger=True
                ),
            ),
            button("Keep it", action_id=ACTION_CANCEL_KEEP, value=str(campaign.id)),
        ],
    }
    fallback = f"{'Withdraw' if kind == 'withdraw' else 'Cancel'} Ref {campaign.ref}? Confirm below."
    return message(fallback, [section(f"{head}\n{body}"), actions])


def cancel_outcome_reply(
    campaign: Campaign,
    result: str,
    *,
    error_code: str | None = None,
    error_message: str | None = None,
    said: str | None = None,
) -> Message:
    """What the cancel did: `withdrawn`, `cancelled`, `refused` (ThingSpace's words) or `halted`
    (a staged rollout; `said`: what the halt did, wave by wave)."""
    if result == "withdrawn":
        text = (
            f":leftwards_arrow_with_hook: Ref {campaign.ref} is withdrawn. It was never sent to "
            "ThingSpace; nothing reaches any device."
        )
    elif result == "cancelled":
        ts_id = code(campaign.thingspace_id) if campaign.thingspace_id else "(no id)"
        text = f":no_entry_sign: ThingSpace cancelled Ref {campaign.ref} (campaign {ts_id})."
    elif result == "halted":
        text = f":octagonal_sign: {escape(said or f'Ref {campaign.ref} was halted.')}"
    elif result == "refused":
        text = (
            f":warning: ThingSpace refused to cancel Ref {campaign.ref}: "
            f"{thingspace_error(error_code, error_message)}\nThe campaign goes on."
        )
    else:
        raise ValueError(f"no cancel outcome {result!r}")
    return message(text, [section(text), context("The campaign's thread says so too.")])


# --- /fota firmware -------------------------------------------------------------------------------


def firmware_value(entry: Mapping[str, Any], account: str) -> str | None:
    """The schedule modal's prefill for one firmware entry; None when it does not fit a
    button value (the entry is then listed without a button rather than cut)."""
    value = _value(
        {
            "firmware": str(entry.get("firmwareName") or ""),
            "from": str(entry.get("firmwareFrom") or ""),
            "to": str(entry.get("firmwareTo") or ""),
            "protocol": str(entry.get("protocol") or ""),
            "account": account,
        }
    )
    return value if len(value) <= MAX_BUTTON_VALUE else None


def parse_firmware_value(value: Any) -> dict[str, str]:
    """The prefill carried by a *Schedule…* button: firmware, from, to, protocol, account."""
    data = _load_value(value, {"firmware", "from", "to", "protocol", "account"})
    if not all(isinstance(v, str) for v in data.values()):
        raise ValueError("firmware value fields must be strings")
    return {k: v for k, v in data.items() if v}


def _firmware_line(entry: Mapping[str, Any]) -> str:
    def field(key: str) -> str:
        return str(entry.get(key) or "").strip()

    make_model = " / ".join(escape(v) for v in (field("make"), field("model")) if v) or "make and model not given"
    lines = [
        f"*{code(field('firmwareName') or '(no name)', 255)}*",
        f"{code(field('firmwareFrom') or '?', 100)} → {code(field('firmwareTo') or '?', 100)} · "
        f"{make_model} · launched {escape(field('launchDate') or '?')}",
    ]
    note = field("releaseNote")
    if note:
        lines.append(f"_{escape(clip(' '.join(note.split()), MAX_RELEASE_NOTE))}_")
    return "\n".join(lines)


def firmware_reply(account: str, entries: Sequence[Mapping[str, Any]], *, protocol: str) -> Message:
    """The firmware the account may install, each with a *Schedule…* button."""
    title = f"Firmware for account {code(account, 40)} ({escape(protocol)})"
    if not entries:
        text = f"ThingSpace lists no {escape(protocol)} firmware for account {code(account, 40)}."
        return message(text, [section(text)])
    blocks: list[Block] = [section(f"*{title}*: {plural(len(entries), 'upgrade path')}")]
    for entry in entries[:MAX_FIRMWARE_SHOWN]:
        block = section(_firmware_line(entry))
        value = firmware_value(entry, account)
        if value is not None:
            block["accessory"] = button(
                "Schedule…", action_id=ACTION_FIRMWARE_SCHEDULE, value=value
            )
        blocks.append(block)
    hidden = len(entries) - MAX_FIRMWARE_SHOWN
    note = "*Schedule…* opens the request form filled in with that firmware."
    if hidden > 0:
        note = f"… and {plural(hidden, 'more entry', 'more entries')} not shown. " + note
    blocks.append(context(note))
    # Every section carries its own button: action ids repeat across blocks, which Slack allows
    # (unique within a block), so the click's value tells which entry was chosen.
    return message(f"Firmware for account {escape(account)}: {plural(len(entries), 'upgrade path')}", blocks)


# --- /fota devices --------------------------------------------------------------------------------


def devices_reply(
    campaign: Campaign,
    *,
    counts: Mapping[str, int],
    devices: Sequence[Device],
    total: int,
    failed_only: bool,
    shared: SharedCsv | None,
) -> Message:
    """Counts per device state, the first devices with status and reason, and where the whole
    list went (a CSV in the user's direct message with the bot)."""
    buckets = bucket_counts(counts)
    which = "failed devices" if failed_only else "devices"
    head = f"*Ref {campaign.ref}: {plural(total, which[:-1], which)}* · {state_label(campaign.state)}"
    blocks: list[Block] = [
        section(head),
        fields_section([f"*{name}*\n{buckets[name]:,}" for name in DEVICE_BUCKETS]),
    ]
    lines = [
        f"• {code(d.imei, 40)} — {code(d.status) if d.status else 'no report yet'}"
        + (f" — {escape(clip(d.reason, MAX_DEVICE_REASON))}" if d.reason else "")
        for d in devices
    ]
    if lines:
        if total > len(devices):
            lines.append(f"… and {total - len(devices):,} more in the CSV file")
        blocks += sections(lines, max_blocks=MAX_BLOCKS - 4)
    elif failed_only:
        blocks.append(section("No device has failed so far."))
    if shared is None:
        where = f"No {which} to put in a CSV file."
    elif shared.error:
        where = (
            f"The CSV file could not be sent ({escape(shared.error)}); the operator can export it "
            f"with `fota-bot campaigns export {campaign.ref}`."
        )
    else:
        name = link(shared.permalink, shared.name) if shared.permalink else code(shared.name)
        where = f":page_facing_up: All {plural(shared.rows, 'row')} are in {name}, sent to you in a direct message from the bot."
    blocks.append(context(where, progress_bar(buckets).replace("\n", " · ")))
    fallback = f"Ref {campaign.ref}: {total:,} {which}."
    return message(fallback, blocks)
