"""The decisions around a staged rollout's waves, on buttons and in forms (pure).

*Halt* (behind Slack's confirm dialog, then a form for the reason), *Promote anyway…* for a
wave that missed `success` (a form with the figures and a required reason) and *Resume…* for a
halted rollout (a form with the halt being set aside and a required reason). Every button
names the request and the wave it was shown for; the forms carry the same in
`private_metadata`, with the halt they resume, so a form opened on one halt cannot resume
another.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from commands.blocks.actions import button, confirm_dialog
from commands.blocks.kit import (
    MAX_MODAL_BUTTON,
    MAX_MODAL_TITLE,
    Block,
    Message,
    context,
    escape,
    plain,
    section,
    sections,
)
from commands.blocks.modals import MAX_REASON_INPUT
from storage.model import Campaign

ACTION_HALT = "fota_halt"
ACTION_PROMOTE_ANYWAY = "fota_promote_anyway"
ACTION_RESUME = "fota_resume"
ROLLOUT_ACTIONS_BLOCK_ID = "fota_rollout"
HALT_MODAL_CALLBACK_ID = "fota_halt_reason"
PROMOTE_ANYWAY_MODAL_CALLBACK_ID = "fota_promote_anyway_reason"
RESUME_MODAL_CALLBACK_ID = "fota_resume_reason"
DECISION_REASON_BLOCK_ID = "reason"
DECISION_REASON_ACTION_ID = "reason"
_MAX_VALUE = 300


def decision_value(parent_id: int, wave: int, halted_at: str | None = None) -> str:
    """A decision button's value (and its form's private_metadata): the request, the wave the
    button was shown for (0: none in particular) and, for a resume, the halt it resumes."""
    data: dict[str, Any] = {"campaign_id": parent_id, "wave": wave}
    if halted_at is not None:
        data["halted_at"] = halted_at
    return json.dumps(data, separators=(",", ":"))


def parse_decision_value(value: Any) -> tuple[int, int, str | None]:
    """(request id, wave, halted_at) from `decision_value`; ValueError for anything else: the
    value comes back from the client and is not trusted."""
    if not isinstance(value, str) or len(value) > _MAX_VALUE:
        raise ValueError("decision value is not a short string")
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"decision value is not JSON: {exc.msg}") from exc
    if not isinstance(data, dict) or not {"campaign_id", "wave"} <= set(data) <= {"campaign_id", "wave", "halted_at"}:
        raise ValueError("decision value must be an object with campaign_id and wave")
    parent, wave, halted_at = data["campaign_id"], data["wave"], data.get("halted_at")
    if type(parent) is not int or type(wave) is not int or parent < 1 or wave < 0:
        raise ValueError("decision value must name a request and a wave")
    if halted_at is not None and (not isinstance(halted_at, str) or len(halted_at) > 40):
        raise ValueError("decision value halted_at must be a short string")
    return parent, wave, halted_at


def halt_button(parent: Campaign, wave: int) -> Block:
    """*Halt*, behind Slack's confirm dialog; the reason is asked in a form after it."""
    return button(
        "Halt",
        action_id=ACTION_HALT,
        value=decision_value(parent.id, wave),
        style="danger",
        confirm=confirm_dialog(
            title="Halt this rollout?",
            text=f"Ref {parent.ref}: no further wave is sent, and a wave already sent to ThingSpace "
            "but not started yet is cancelled there. You give a reason next. An approver can resume it later.",
            confirm="Halt",
            deny="Keep rolling out",
            danger=True,
        ),
    )


def promote_anyway_button(parent: Campaign, number: int, title: str) -> Block:
    return button(
        f"Promote anyway to {title}…",
        action_id=ACTION_PROMOTE_ANYWAY,
        value=decision_value(parent.id, number),
    )


def resume_button(parent: Campaign, halted_at: str) -> Block:
    return button("Resume…", action_id=ACTION_RESUME, value=decision_value(parent.id, 0, halted_at))


def actions(elements: Sequence[Block]) -> Block:
    return {"type": "actions", "block_id": ROLLOUT_ACTIONS_BLOCK_ID, "elements": list(elements)}


def _reason_input(placeholder: str) -> Block:
    return {
        "type": "input",
        "block_id": DECISION_REASON_BLOCK_ID,
        "label": plain("Reason", 2000),
        "element": {
            "type": "plain_text_input",
            "action_id": DECISION_REASON_ACTION_ID,
            "multiline": True,
            "min_length": 1,
            "max_length": MAX_REASON_INPUT,
            "placeholder": plain(placeholder, 150),
        },
    }


def _modal(callback_id: str, title: str, submit: str, metadata: str, blocks: list[Block]) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": metadata,
        "title": plain(title, MAX_MODAL_TITLE),
        "submit": plain(submit, MAX_MODAL_BUTTON),
        "close": plain("Cancel", MAX_MODAL_BUTTON),
        "blocks": blocks,
    }


def halt_modal(parent: Campaign, wave: int, unstarted: Sequence[str]) -> dict[str, Any]:
    """Why halt. `unstarted`: the refs of waves sent to ThingSpace and not started, which the
    halt cancels there."""
    cancels = (
        f" {', '.join(escape(r) for r in unstarted)} was sent to ThingSpace but has not started: "
        "it is cancelled there (ThingSpace may refuse; its answer is shown in the thread)."
        if unstarted
        else ""
    )
    return _modal(
        HALT_MODAL_CALLBACK_ID,
        "Halt the rollout",
        "Halt",
        decision_value(parent.id, wave),
        [
            section(
                f"You are halting *Ref {escape(parent.ref)}*: no further wave is sent.{cancels} Devices "
                "of a wave already started may still upgrade: a started campaign cannot be called back. "
                "The thread, the requester and the approvers see your reason."
            ),
            _reason_input("What went wrong?"),
        ],
    )


def promote_anyway_modal(parent: Campaign, number: int, title: str, sentence: str) -> dict[str, Any]:
    """Promote past a wave that did not pass: its figures, and a required reason."""
    return _modal(
        PROMOTE_ANYWAY_MODAL_CALLBACK_ID,
        "Promote anyway",
        "Promote",
        decision_value(parent.id, number),
        [
            section(
                f"Wave {number - 1} of *Ref {escape(parent.ref)}* did not pass: {escape(sentence)}. "
                f"Promoting anyway sends {escape(title)} to ThingSpace now. The figures are checked "
                "again when you submit; your reason is recorded and shown in the thread."
            ),
            _reason_input("Why is it safe to go on?"),
        ],
    )


def resume_modal(parent: Campaign, halted_at: str, halted_by: str | None, halt_reason: str | None,
                 next_step: str) -> dict[str, Any]:
    """Resume a halted rollout: the halt set aside, what happens next, a required reason."""
    by = "fota-bot" if halted_by in (None, "fota-bot") else f"<@{halted_by}>"
    return _modal(
        RESUME_MODAL_CALLBACK_ID,
        "Resume the rollout",
        "Resume",
        decision_value(parent.id, 0, halted_at),
        [
            section(
                f"*Ref {escape(parent.ref)}* was halted by {by}: {escape(halt_reason or 'no reason recorded')}.\n"
                f"Resuming sends nothing by itself: {escape(next_step)} Your reason is recorded and "
                "shown in the thread."
            ),
            _reason_input("Why is it safe to go on?"),
        ],
    )


def reason_from(view: dict[str, Any]) -> str:
    """The reason typed in one of these forms; KeyError/TypeError for a damaged form."""
    return str(view["state"]["values"][DECISION_REASON_BLOCK_ID][DECISION_REASON_ACTION_ID]["value"] or "")


# --- the thread's words -----------------------------------------------------------------------


def halted_by_reply(parent: Campaign, user: str, reason: str, *, cancelled_kind: str = "halt") -> Message:
    """Someone halted the rollout: who and why (the thread, the requester, the approvers)."""
    verb = "cancelled" if cancelled_kind == "cancel" else "halted"
    head = f":octagonal_sign: *<@{user}> {verb} {escape(parent.ref)}:* {escape(reason)}"
    text = (
        f"{head}\nNo further wave is sent. A wave sent to ThingSpace but not started is cancelled there; "
        "devices of a wave already started may still upgrade. An approver can resume the rollout with a reason."
    )
    return {"text": text, "blocks": [*sections([text], max_blocks=2), context(f"Ref {escape(parent.ref)}")]}


def resumed_reply(parent: Campaign, user: str, reason: str, next_step: str) -> Message:
    text = f":arrow_forward: *<@{user}> resumed {escape(parent.ref)}:* {escape(reason)}\n{escape(next_step)}"
    return {"text": text, "blocks": [*sections([text], max_blocks=2), context(f"Ref {escape(parent.ref)}")]}


def promoted_anyway_reply(parent: Campaign, user: str, number: int, total: int, sentence: str, reason: str) -> Message:
    text = (
        f":fast_forward: *<@{user}> promoted {escape(parent.ref)} to wave {number}/{total} anyway:* "
        f"{escape(reason)}\nWave {number - 1} had not passed: {escape(sentence)}."
    )
    return {"text": text, "blocks": [*sections([text], max_blocks=2)]}


def auto_promoted_reply(parent: Campaign, number: int, total: int, title: str, sentence: str) -> Message:
    text = (
        f":robot_face: *{escape(parent.ref)} promoted itself to {escape(title)}:* wave {number - 1} passed "
        f"({escape(sentence)}) and the plan promotes automatically. It is being sent to ThingSpace now."
    )
    return {"text": text, "blocks": [section(text)]}


def wave_cancelled_reply(wave: Campaign, by: str) -> Message:
    who = "fota-bot" if by == "fota-bot" else f"<@{by}>"
    text = (
        f":no_entry_sign: {escape(wave.ref)} had not started at ThingSpace: {who}'s halt cancelled it there "
        f"(ThingSpace campaign `{escape(wave.thingspace_id or '?')}`). None of its devices was sent the firmware."
    )
    return {"text": text, "blocks": [section(text)]}
