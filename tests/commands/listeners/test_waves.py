"""A staged rollout's buttons alone: Promote, and the decisions around a wave (halt, promote anyway, resume)."""

from __future__ import annotations

import json
from typing import Any

from bot.app import Runtime
from bot.workflow.errors import UserError
from commands import blocks
from commands.blocks.wave_decisions import decision_value
from commands.listeners import STALE_BUTTON, Services
from commands.listeners.common import DAMAGED_FORM
from commands.listeners.waves import _halt_form, decision_submitted, open_decision_form, promote
from storage.states import CampaignState
from tests.commands.listeners.conftest import FakeSlack, Recorder, clicked, pending_campaign
from tests.support.stack import ANN


async def test_a_damaged_promote_button_says_so(ack: Recorder, respond: Recorder, services: Services) -> None:
    body, action = clicked(ANN, "wave two please")
    await promote(ack, body, action, respond, services=services)
    await services.background.idle()
    assert ack.calls == [{}]
    assert STALE_BUTTON in json.dumps(respond.calls)


async def test_promoting_a_request_without_a_plan_is_refused_and_nothing_starts(
    ack: Recorder, respond: Recorder, services: Services, runtime: Runtime
) -> None:
    campaign = await pending_campaign(services)
    body, action = clicked(ANN, blocks.promote_value(campaign.id, 2))
    await promote(ack, body, action, respond, services=services)
    await services.background.idle()
    [answer] = respond.calls
    assert answer["response_type"] == "ephemeral"
    assert answer["text"] == f"{campaign.ref} is not a staged rollout. Nothing changed."
    assert [c.id for c in runtime.store.campaigns_in(tuple(CampaignState))] == [campaign.id]
    assert runtime.store.campaign(campaign.id).state is CampaignState.PENDING_APPROVAL


# --- the decisions: a button opens a form, the form's submission decides ---------------------------


def _form(metadata: str, reason: str | None) -> dict[str, Any]:
    values = {} if reason is None else {"reason": {"reason": {"type": "plain_text_input", "value": reason}}}
    return {"private_metadata": metadata, "state": {"values": values}}


async def test_a_damaged_decision_form_is_answered_in_the_form(
    ack: Recorder, services: Services, slack: FakeSlack
) -> None:
    for view in (_form("not json", "why"), _form(json.dumps({"campaign_id": 1, "wave": 0}), None)):
        ack.calls.clear()
        await decision_submitted(ack, {"user": {"id": ANN}}, view, slack, services=services, decide=_never)  # type: ignore[arg-type]
        assert ack.calls == [{"response_action": "errors", "errors": {"reason": DAMAGED_FORM}}]


async def test_a_refused_decision_is_answered_in_the_form_and_a_taken_one_in_a_dm(
    ack: Recorder, services: Services, slack: FakeSlack
) -> None:
    async def refused(*_: Any) -> str:
        raise UserError("You requested FB-1, so you cannot resume it; an approver must. Nothing changed.")

    async def taken(*_: Any) -> str:
        return "You resumed FB-1."

    view = _form(json.dumps({"campaign_id": 1, "wave": 0, "halted_at": "2026-01-01T00:00:00+00:00"}), "go")
    await decision_submitted(ack, {"user": {"id": ANN}}, view, slack, services=services, decide=refused)  # type: ignore[arg-type]
    assert ack.calls[-1]["errors"]["reason"].startswith("You requested FB-1")
    await decision_submitted(ack, {"user": {"id": ANN}}, view, slack, services=services, decide=taken)  # type: ignore[arg-type]
    await services.background.idle()
    assert ack.calls[-1] == {}
    assert slack.called("chat_postMessage")[-1] == {"channel": ANN, "text": "You resumed FB-1."}


async def _never(*_: Any) -> str:
    raise AssertionError("a damaged form decides nothing")


async def test_a_damaged_decision_button_says_so(ack: Recorder, respond: Recorder, services: Services, slack: FakeSlack) -> None:
    body, action = clicked(ANN, "halt!")
    await open_decision_form(ack, body, action, respond, slack, services=services, form=_never_form)  # type: ignore[arg-type]
    await services.background.idle()
    assert STALE_BUTTON in json.dumps(respond.calls) and slack.called("views_open") == []


async def _never_form(*_: Any) -> dict[str, Any]:
    raise AssertionError("a damaged button opens nothing")


async def test_halting_a_request_without_a_plan_opens_no_form_and_says_why(
    ack: Recorder, respond: Recorder, slack: FakeSlack, services: Services, runtime: Runtime
) -> None:
    campaign = await pending_campaign(services)
    body, action = clicked(ANN, decision_value(campaign.id, 1))
    await open_decision_form(ack, body, action, respond, slack, services=services, form=_halt_form)  # type: ignore[arg-type]
    await services.background.idle()
    assert slack.called("views_open") == []
    [answer] = respond.calls
    assert answer["response_type"] == "ephemeral" and "Nothing changed" in answer["text"]
    assert runtime.store.campaign(campaign.id).state is CampaignState.PENDING_APPROVAL
