"""What nothing else handles, alone: an older bot's buttons and forms."""

from __future__ import annotations

import json

from commands.listeners import STALE_BUTTON, Services
from commands.listeners.fallback import unknown_button, unknown_form
from tests.commands.listeners.conftest import Recorder


async def test_an_unknown_button_is_answered_as_out_of_date(
    ack: Recorder, respond: Recorder, services: Services
) -> None:
    await unknown_button(ack, respond, services=services)
    await services.background.idle()
    assert ack.calls == [{}]
    assert [call["response_type"] for call in respond.calls] == ["ephemeral"]
    assert STALE_BUTTON in json.dumps(respond.calls)


async def test_an_unknown_form_is_closed(ack: Recorder) -> None:
    await unknown_form(ack)
    assert ack.calls == [{}]
