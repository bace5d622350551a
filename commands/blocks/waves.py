"""A staged rollout on the card and in the thread: the plan, its waves, the Promote button (pure)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from commands.blocks.actions import button
from commands.blocks.cards import bucket_counts, percent, state_label
from commands.blocks.kit import Block, clip, code, context, escape, plural, section, sections
from commands.blocks.replies import final_summary_reply
from commands.blocks.retry import with_retry_button
from commands.blocks.wave_decisions import (
    actions,
    halt_button,
    promote_anyway_button,
    resume_button,
)
from storage.model import Campaign
from storage.plan import Promote, RolloutPlan, duration_text, percent_text
from storage.states import CampaignState
from storage.waves import StoredPlan, WaveRecord, WaveTally, rollout_counts

S = CampaignState

ACTION_PROMOTE = "fota_promote"
PROMOTE_BLOCK_ID = "fota_promote"
RADIUS_SHOWN = 3  # groups listed per wave; the rest summed up
REASONS_SHOWN = 5  # failure reasons listed when a rollout halts; the rest summed up


def wave_title(wave: WaveRecord, total: int) -> str:
    share = "canary" if wave.label == "canary" else f"up to {wave.label}"
    return f"wave {wave.number}/{total} ({share}, {plural(wave.size, 'device')})"


def _radius(wave: WaveRecord) -> str:
    shown = [
        f"{escape(make)} {escape(model)} on {code(firmware)}: {count:,}"
        for make, model, firmware, count in wave.radius[:RADIUS_SHOWN]
    ]
    rest = sum(r[3] for r in wave.radius[RADIUS_SHOWN:])
    if rest:
        shown.append(f"{rest:,} more")
    return " · ".join(shown)


def plan_line(plan: RolloutPlan) -> str:
    parts = []
    if plan.canary:
        parts.append(f"canary of {plan.canary:,}")
    parts.append("then " + ", ".join(percent_text(w) for w in plan.waves) + " of the rest")
    parts.append(f"a wave passes at {percent_text(plan.success)} succeeded")
    if plan.halt.count is not None or plan.halt.basis_points is not None:
        parts.append(f"the rollout halts itself when {plan.halt} of a wave's devices failed")
    else:
        parts.append("it halts itself as soon as a wave can no longer pass")
    if plan.soak:
        parts.append(f"{duration_text(plan.soak)} soak after each wave")
    parts.append(
        "each next wave promoted by fota-bot once the wave before passed"
        if plan.promote is Promote.AUTO
        else "each next wave promoted by an approver"
    )
    return "; ".join(parts)


def plan_blocks(stored: StoredPlan | None) -> list[Block]:
    """The plan on the approval card: one line of rules, then each wave with its blast radius.
    All of it is bound into the content hash the Approve button carries."""
    if stored is None:
        return []
    if not stored.waves:
        return [section(":hourglass_flowing_sand: *Staged rollout:* the waves are planned once the checks finish.")]
    total = len(stored.waves)
    lines = [f":ladder: *Staged rollout* ({plan_line(stored.plan)})"]
    lines += [f"• *{wave_title(w, total).capitalize()}*: {_radius(w)}" for w in stored.waves]
    return sections(lines, max_blocks=3)


def promote_value(parent_id: int, number: int) -> str:
    return json.dumps({"campaign_id": parent_id, "wave": number}, separators=(",", ":"))


def parse_promote_value(value: Any) -> tuple[int, int]:
    """(request id, wave number) from a Promote button's value; ValueError for anything else."""
    if not isinstance(value, str) or len(value) > 200:
        raise ValueError("promote value is not a short string")
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"promote value is not JSON: {exc.msg}") from exc
    if not isinstance(data, dict) or set(data) != {"campaign_id", "wave"}:
        raise ValueError("promote value must be an object with campaign_id and wave")
    parent, number = data["campaign_id"], data["wave"]
    if type(parent) is not int or type(number) is not int or parent < 1 or number < 2:
        raise ValueError("promote value must name a request and a wave after the first")
    return parent, number


def wave_ended_reply(
    wave: Campaign,
    stored: StoredPlan,
    verdict_sentence: str,
    passed: bool,
    ready_at: str | None,
    parent: Campaign | None = None,
    extra_actions: Sequence[Block] = (),
    *,
    halted: bool | None = None,
) -> dict[str, Any]:
    """The thread's word when a wave ends: passed (the next wave's Promote button, or the bot
    promotes it itself for `promote=auto`) or missed (held for a decision: *Promote anyway…*,
    `extra_actions`, *Halt*). `parent` (the request) puts the decision buttons on. `halted`:
    whether the rollout was halted when the wave ended (default: the plan's word now)."""
    total = len(stored.waves)
    number = wave.wave or 0
    if stored.halted if halted is None else halted:
        head = (
            f":octagonal_sign: *{escape(wave.ref)} ended:* {escape(verdict_sentence)}. "
            "The rollout was halted: no further wave is sent."
        )
        return {"text": head, "blocks": [section(head)]}
    if number >= total:
        head = f":checkered_flag: *{escape(wave.ref)}, the last wave, ended:* {escape(verdict_sentence)}."
        return {"text": head, "blocks": [section(head)]}
    following = stored.wave(number + 1)
    title = wave_title(following, total)
    halt = [halt_button(parent, number)] if parent is not None else []
    if not passed:
        head = (
            f":warning: *{escape(wave.ref)} missed its success threshold:* {escape(verdict_sentence)}. "
            f"The rollout holds for a decision: wave {number + 1} is not sent unless an approver other "
            "than the requester promotes it anyway, with a reason."
        )
        elements = [promote_anyway_button(parent, number + 1, title), *extra_actions, *halt] if parent else []
        return {
            "text": head,
            "blocks": [section(head), *([actions(elements)] if elements else []), context(f"Ref {escape(wave.ref)}")],
        }
    head = f":white_check_mark: *{escape(wave.ref)} passed:* {escape(verdict_sentence)}."
    when = f" It can be promoted from {ready_at}." if ready_at else ""
    if stored.plan.promote is Promote.AUTO:
        text = f"{head}{when} The plan promotes automatically: fota-bot sends {escape(title)} {'then' if when else 'now'}."
        return {
            "text": text,
            "blocks": [section(text), *([actions(halt)] if halt else []), context(f"Ref {escape(wave.ref)}")],
        }
    text = f"{head}{when} An approver other than the requester promotes it to the next wave."
    promote = button(
        f"Promote to {title}",
        action_id=ACTION_PROMOTE,
        value=promote_value(wave.parent_id or 0, number + 1),
        style="primary",
    )
    return {
        "text": text,
        "blocks": [
            section(text),
            {"type": "actions", "block_id": PROMOTE_BLOCK_ID, "elements": [promote, *halt]},
            context(f"Ref {escape(wave.ref)}"),
        ],
    }


def rollout_actions(parent: Campaign, stored: StoredPlan) -> list[Block]:
    """The request's card while it rolls out (*Halt*) or is halted (*Resume…*)."""
    if stored.halted and stored.halted_at is not None:
        return [actions([resume_button(parent, stored.halted_at.isoformat())])]
    started = max((w.number for w in stored.waves if w.campaign_id is not None), default=0)
    return [actions([halt_button(parent, started)])]


# --- the row of waves on the request's card ------------------------------------------------------

WAVE_MARKS = {"done": "✓", "waiting": "·", "held": "✗"}
_BAR = 5  # characters of a running wave's bar


def waves_row(stored: StoredPlan, states: Mapping[int, tuple[str, int, int]]) -> str:
    """`Waves: w1 ✓ · w2 ▓▓░░░ 2/5 · w3 ·` (mrkdwn). `states[number]` is (state, succeeded,
    size) for a started wave, state `running`, `done` (passed) or `held` (ended under `success`);
    a wave not started is waiting."""
    parts = []
    total = len(stored.waves)
    for wave in stored.waves:
        state, succeeded, size = states.get(wave.number, ("waiting", 0, wave.size))
        if state == "running":
            filled = min(_BAR, round(_BAR * succeeded / size)) if size else 0
            mark = "▓" * filled + "░" * (_BAR - filled) + f" {succeeded:,}/{size:,}"
        else:
            mark = WAVE_MARKS.get(state, "·")
        parts.append(f"w{wave.number} {mark}")
    head = f"*Waves* ({total}): " if total else "*Waves*: "
    return head + "  ·  ".join(parts)


def halted_reply(parent: Campaign, wave: Campaign, sentence: str, reasons: Sequence[tuple[str, int]]) -> dict[str, Any]:
    """The thread (and the requester and approvers) told that a rollout halted itself, and why."""
    head = (
        f":octagonal_sign: *{escape(parent.ref)} halted itself:* {escape(wave.ref)} crossed its halt "
        f"threshold: {escape(sentence)}. No further wave is sent."
    )
    lines = [head]
    if reasons:
        shown = [f"• {escape(reason or 'no reason given')}: {count:,}" for reason, count in reasons[:REASONS_SHOWN]]
        more = sum(count for _, count in reasons[REASONS_SHOWN:])
        if more:
            shown.append(f"• other reasons: {more:,}")
        lines.append("*Failures so far, by reason*\n" + "\n".join(shown))
    lines.append(
        f"Devices of {escape(wave.ref)} already at ThingSpace may still upgrade: a started campaign "
        "cannot be called back. `/fota devices` lists each device's state."
    )
    return {"text": head, "blocks": [*sections(lines, max_blocks=3), context(f"Ref {escape(parent.ref)}")]}


# --- a rollout seen whole: the current wave in lists, the summary across waves -------------------


def current_wave_text(wave: WaveTally | None) -> str:
    """`wave 2/4 running 41 %` (mrkdwn): how far the current wave is, for /fota list, the App
    Home and /fota status; `no wave sent yet` before the first."""
    if wave is None or wave.campaign is None:
        return "no wave sent yet"
    buckets = bucket_counts(wave.counts)
    size = sum(buckets.values())
    done = buckets["succeeded"] + buckets["failed"]
    where = f"wave {wave.number}/{wave.total}"
    if not wave.campaign.state.is_terminal:
        if not wave.campaign.state.is_thingspace and wave.campaign.state is not S.SUBMITTED:
            return f"{where} being sent"
        return f"{where} running {percent(done, size)} %"
    return f"{where} {state_label(wave.campaign.state)} · {buckets['succeeded']:,} of {size:,} succeeded"


def _wave_summary_line(wave: WaveTally) -> str:
    title = "canary" if wave.label == "canary" else f"up to {wave.label}"
    if wave.campaign is None:
        return f"• *w{wave.number}/{wave.total}* ({title}): never sent ({plural(wave.size, 'device')})"
    buckets = bucket_counts(wave.counts)
    return (
        f"• *w{wave.number}/{wave.total}* ({title}) · {state_label(wave.campaign.state)} · "
        f"sent {sum(buckets.values()):,} · succeeded {buckets['succeeded']:,} · failed {buckets['failed']:,}"
    )


def rollout_summary_reply(
    parent: Campaign,
    tallies: Sequence[WaveTally],
    *,
    left_out: int = 0,
    left_out_reasons: Mapping[str, int] | None = None,
    failure_reasons: Sequence[tuple[str, int]] = (),
    halt_reason: str | None = None,
) -> dict[str, Any]:
    """The one summary when a staged rollout is over: the single-campaign summary's figures
    summed over its waves, each wave's own line, why it halted, and *Retry failed (N)…*."""
    counts = rollout_counts(tallies)
    started = [w.campaign for w in tallies if w.campaign is not None]
    reply = final_summary_reply(
        parent,
        counts,
        started_at=min((c.created_at for c in started), default=None),
        ended_at=max((c.last_callback_at for c in started if c.last_callback_at), default=None),
        left_out=left_out,
        left_out_reasons=left_out_reasons,
        failure_reasons=failure_reasons,
    )
    lines = [f"*Waves* ({len(started)} of {len(tallies)} sent)", *(_wave_summary_line(w) for w in tallies)]
    if halt_reason:
        lines.append(f":octagonal_sign: *Halted:* {escape(clip(halt_reason, 500))}")
    waves_blocks = sections(lines, max_blocks=3)
    reply = {**reply, "blocks": [*reply["blocks"][:1], *waves_blocks, *reply["blocks"][1:]]}
    return with_retry_button(reply, parent.id, bucket_counts(counts)["failed"])
