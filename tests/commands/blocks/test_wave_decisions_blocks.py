"""The decisions around a staged rollout's waves as Block Kit (pure): Halt, Promote anyway…,
Resume…, their forms and the thread's words; every one valid, escaped and bound to its request."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from commands import blocks
from storage.plan import WHOLE, Promote, RolloutPlan
from storage.states import CampaignState
from storage.waves import StoredPlan, WaveRecord
from tests.commands.blocks.test_blocks import HOSTILE, hostile_campaign, make_campaign
from tests.support.blocks import all_text, check_blocks, check_escaped

S = CampaignState
PARENT = make_campaign(state=S.ROLLING_OUT)
HALTED_AT = dt.datetime(2030, 1, 3, 10, 0, tzinfo=dt.UTC)


def _stored(*, promote: Promote = Promote.MANUAL, halted: bool = False, started: int = 1) -> StoredPlan:
    plan = RolloutPlan(canary=2, waves=(5_000, WHOLE), promote=promote)
    return StoredPlan(
        campaign_id=PARENT.id,
        plan=plan,
        base_hash="b",
        bound_hash="h",
        waves=tuple(
            WaveRecord(n, label, size, (), 100 + n if n <= started else None, "U2", None, None)
            for n, label, size in ((1, "canary", 2), (2, "50%", 10), (3, "100%", 10))
        ),
        halted_at=HALTED_AT if halted else None,
        halted_by="U2" if halted else None,
        halt_reason="boom" if halted else None,
    )


def _wave(number: int = 1) -> Any:
    return make_campaign(id=100 + number, state=S.ENDED, parent_id=PARENT.id, wave=number, waves_total=3)


def _ids(msg: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in msg["blocks"] if b["type"] == "actions" for e in b["elements"]]


def test_a_decision_value_round_trips_and_junk_is_refused() -> None:
    assert blocks.parse_decision_value(blocks.promote_anyway_modal(PARENT, 2, "w2", "1 of 2")["private_metadata"]) == (
        12, 2, None,
    )
    value = json.dumps({"campaign_id": 12, "wave": 0, "halted_at": HALTED_AT.isoformat()})
    assert blocks.parse_decision_value(value) == (12, 0, HALTED_AT.isoformat())
    for junk in (None, 12, "", "{", "[]", '{"campaign_id": 12}', '{"campaign_id": true, "wave": 1}',
                 '{"campaign_id": 0, "wave": 1}', '{"campaign_id": 1, "wave": -1}',
                 '{"campaign_id": 1, "wave": 1, "extra": 1}', '{"campaign_id": 1, "wave": 1, "halted_at": 5}',
                 "x" * 400):
        with pytest.raises(ValueError):
            blocks.parse_decision_value(junk)


def test_a_passed_wave_offers_promote_and_halt_behind_a_confirmation() -> None:
    msg = blocks.wave_ended_reply(_wave(), _stored(), "2 of 2 succeeded", True, None, PARENT)
    check_blocks(msg["blocks"])
    assert _ids(msg) == [blocks.ACTION_PROMOTE, blocks.ACTION_HALT]
    [halt] = [e for b in msg["blocks"] if b["type"] == "actions" for e in b["elements"] if e["action_id"] == blocks.ACTION_HALT]
    assert halt["style"] == "danger" and halt["confirm"]["style"] == "danger"
    assert blocks.parse_decision_value(halt["value"]) == (PARENT.id, 1, None)


def test_a_missed_wave_holds_for_promote_anyway_a_retry_slot_and_halt() -> None:
    retry = {"type": "button", "action_id": "fota_retry_wave", "text": {"type": "plain_text", "text": "Retry"}, "value": "1"}
    msg = blocks.wave_ended_reply(_wave(), _stored(), "0 of 2 succeeded", False, None, PARENT, extra_actions=[retry])
    check_blocks(msg["blocks"])
    assert _ids(msg) == [blocks.ACTION_PROMOTE_ANYWAY, "fota_retry_wave", blocks.ACTION_HALT]
    assert "holds for a decision" in msg["text"]


def test_an_automatic_plan_says_it_promotes_itself_and_keeps_halt() -> None:
    msg = blocks.wave_ended_reply(_wave(), _stored(promote=Promote.AUTO), "2 of 2 succeeded", True,
                                  "2030-01-03 11:00 UTC", PARENT)
    check_blocks(msg["blocks"])
    assert _ids(msg) == [blocks.ACTION_HALT]
    assert "promotes automatically" in msg["text"] and "2030-01-03 11:00 UTC" in msg["text"]


def test_the_card_offers_halt_while_rolling_out_and_resume_once_halted() -> None:
    [rolling] = blocks.rollout_actions(PARENT, _stored())
    assert [e["action_id"] for e in rolling["elements"]] == [blocks.ACTION_HALT]
    [halted] = blocks.rollout_actions(PARENT, _stored(halted=True))
    [resume] = halted["elements"]
    assert resume["action_id"] == blocks.ACTION_RESUME
    assert blocks.parse_decision_value(resume["value"]) == (PARENT.id, 0, HALTED_AT.isoformat())


@pytest.mark.parametrize(
    "form",
    [
        lambda c: blocks.halt_modal(c, 2, [f"{c.ref} w2/3"]),
        lambda c: blocks.promote_anyway_modal(c, 2, "wave 2/3 (50%, 10 devices)", "0 of 2 succeeded"),
        lambda c: blocks.resume_modal(c, HALTED_AT.isoformat(), "U2", HOSTILE, "wave 2 can be promoted."),
    ],
)
def test_every_form_is_valid_and_asks_for_a_reason(form: Any) -> None:
    view = form(hostile_campaign(state=S.ROLLING_OUT))
    check_blocks(view["blocks"])
    assert len(view["title"]["text"]) <= 24 and len(view["submit"]["text"]) <= 24
    [reason] = [b for b in view["blocks"] if b["type"] == "input"]
    assert reason["block_id"] == "reason" and reason["element"]["min_length"] == 1
    check_escaped({"text": "", "blocks": view["blocks"]})
    state = {"state": {"values": {"reason": {"reason": {"value": "because"}}}}}
    assert blocks.reason_from(state) == "because"


@pytest.mark.parametrize(
    "reply",
    [
        lambda c: blocks.halted_by_reply(c, "U2", HOSTILE),
        lambda c: blocks.halted_by_reply(c, "U2", HOSTILE, cancelled_kind="cancel"),
        lambda c: blocks.resumed_reply(c, "U2", HOSTILE, HOSTILE),
        lambda c: blocks.promoted_anyway_reply(c, "U2", 2, 3, "0 of 2 succeeded", HOSTILE),
        lambda c: blocks.auto_promoted_reply(c, 2, 3, HOSTILE, "2 of 2 succeeded"),
        lambda c: blocks.wave_cancelled_reply(c, "U2"),
    ],
)
def test_the_threads_words_are_valid_escaped_and_name_the_request(reply: Any) -> None:
    msg = reply(hostile_campaign(state=S.ROLLING_OUT))
    check_blocks(msg["blocks"])
    check_escaped(msg)
    assert "FB-12" in all_text(msg)
