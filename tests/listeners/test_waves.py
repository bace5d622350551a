"""A staged rollout's buttons alone: Promote."""

from __future__ import annotations

import json

from bot.app import Runtime
from commands import blocks
from commands.listeners import STALE_BUTTON, Services
from commands.listeners.waves import promote
from storage.states import CampaignState
from tests.listeners.conftest import Recorder, clicked, pending_campaign
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
