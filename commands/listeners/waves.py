"""A staged rollout's buttons: promoting the next wave, and the decisions around a wave.

*Halt* (behind Slack's confirm dialog), *Promote anyway…* and *Resume…* open a form for the
reason; its submission decides. Who may decide is checked before a form opens (nobody types a
reason to be refused) and again when it is submitted, by `bot.workflow.staged`; a refusal at
submission is shown in the form.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.workflow.errors import UserError
from bot.workflow.staged import StagedRollouts
from commands import blocks
from commands.listeners.common import (
    DAMAGED_FORM,
    Ack,
    Respond,
    Services,
    ack_stale_button,
    ack_then_answer,
    answer_in_dm,
)

REASON_BLOCK = "reason"


async def promote(
    ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, *, services: Services
) -> None:
    try:
        parent_id, number = blocks.parse_promote_value(action.get("value"))
    except ValueError:
        await ack_stale_button(ack, respond, services)
        return
    work = services.campaigns.promote(parent_id, number, user=body["user"]["id"])
    await ack_then_answer(ack, respond, services, work, name="promote")


def _staged(services: Services) -> StagedRollouts:
    if services.campaigns.staged is None:
        raise UserError("Staged rollouts are not available here. Nothing changed.")
    return services.campaigns.staged


# --- the buttons: each opens its form, once the clicker may decide ---------------------------------

Form = Callable[[StagedRollouts, int, int, str, str], Awaitable[dict[str, Any]]]


async def _halt_form(staged: StagedRollouts, parent_id: int, wave: int, _: str, user: str) -> dict[str, Any]:
    parent, _stored = await staged.check_may_halt(parent_id, user)
    return blocks.halt_modal(parent, wave, staged.unstarted_refs(parent_id))


async def _promote_anyway_form(staged: StagedRollouts, parent_id: int, wave: int, _: str, user: str) -> dict[str, Any]:
    await staged.check_may_decide(parent_id, user, "promote")
    parent, title, sentence = staged.promote_anyway_form(parent_id, wave)
    return blocks.promote_anyway_modal(parent, wave, title, sentence)


async def _resume_form(staged: StagedRollouts, parent_id: int, _: int, shown: str, user: str) -> dict[str, Any]:
    await staged.check_may_decide(parent_id, user, "resume")
    parent, stored, step = staged.resume_form(parent_id)
    assert stored.halted_at is not None
    if shown and shown != stored.halted_at.isoformat():
        raise UserError(f"{parent.ref} was resumed and halted again since; use the latest card. Nothing changed.")
    return blocks.resume_modal(parent, stored.halted_at.isoformat(), stored.halted_by, stored.halt_reason, step)


async def open_decision_form(
    ack: Ack,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: Respond,
    client: AsyncWebClient,
    *,
    services: Services,
    form: Form,
) -> None:
    try:
        parent_id, wave, halted_at = blocks.parse_decision_value(action.get("value"))
    except ValueError:
        await ack_stale_button(ack, respond, services)
        return

    async def show() -> None:
        view = await form(_staged(services), parent_id, wave, halted_at or "", body["user"]["id"])
        # A trigger_id dies 3 s after the click: nothing slow runs before this.
        await client.views_open(trigger_id=body["trigger_id"], view=view)

    await ack_then_answer(ack, respond, services, show(), name=str(action.get("action_id")))


# --- the forms' submissions: the decisions ---------------------------------------------------------

Decide = Callable[[StagedRollouts, int, int, str | None, str, str], Awaitable[str]]


async def _halt(staged: StagedRollouts, parent_id: int, _: int, __: str | None, user: str, reason: str) -> str:
    return await staged.halt(parent_id, user=user, reason=reason)


async def _promote_anyway(
    staged: StagedRollouts, parent_id: int, wave: int, _: str | None, user: str, reason: str
) -> str:
    return await staged.promote(parent_id, wave, user=user, anyway=reason)


async def _resume(
    staged: StagedRollouts, parent_id: int, _: int, halted_at: str | None, user: str, reason: str
) -> str:
    return await staged.resume(parent_id, user=user, reason=reason, halted_at=halted_at)


async def decision_submitted(
    ack: Ack, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient, *, services: Services, decide: Decide
) -> None:
    try:
        parent_id, wave, halted_at = blocks.parse_decision_value(view.get("private_metadata") or "")
        reason = blocks.reason_from(view)
    except (ValueError, KeyError, TypeError):
        await ack(response_action="errors", errors={REASON_BLOCK: DAMAGED_FORM})
        return
    user = body["user"]["id"]
    try:
        answer = await decide(_staged(services), parent_id, wave, halted_at, user, reason)
    except UserError as exc:
        await ack(response_action="errors", errors={REASON_BLOCK: str(exc)})
        return
    await ack()
    answer_in_dm(services, client, user, answer, name="decision answer")


def register(app: AsyncApp, services: Services) -> None:
    app.action(blocks.ACTION_PROMOTE)(partial(promote, services=services))
    for action_id, form in (
        (blocks.ACTION_HALT, _halt_form),
        (blocks.ACTION_PROMOTE_ANYWAY, _promote_anyway_form),
        (blocks.ACTION_RESUME, _resume_form),
    ):
        app.action(action_id)(partial(open_decision_form, services=services, form=form))
    for callback_id, decide in (
        (blocks.HALT_MODAL_CALLBACK_ID, _halt),
        (blocks.PROMOTE_ANYWAY_MODAL_CALLBACK_ID, _promote_anyway),
        (blocks.RESUME_MODAL_CALLBACK_ID, _resume),
    ):
        app.view(callback_id)(partial(decision_submitted, services=services, decide=decide))
