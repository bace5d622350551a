"""The renderer (commands/blocks/render.py): outbox events and records in, Slack messages out,
as pure functions, each checked against Slack's Block Kit limits with slack_sdk's models."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.notify.events import Event
from bot.notify.thread import as_then
from commands import blocks
from commands.blocks import render
from commands.blocks.render import Records
from storage.plan import WHOLE, RolloutPlan
from storage.states import CampaignState
from storage.waves import StoredPlan, WaveRecord
from tests.commands.blocks.test_blocks import (
    HASH,
    PERMALINK,
    T0,
    approve,
    check_message,
    hostile_campaign,
    make_campaign,
    reject,
)
from tests.support.blocks import all_text, check_escaped

S = CampaignState

PLAN = StoredPlan(
    campaign_id=12,
    plan=RolloutPlan(canary=1, waves=(5, WHOLE)),
    base_hash=HASH,
    bound_hash=HASH,
    waves=tuple(WaveRecord(n, f"wave {n}", 3, (), 12 + n, None, None, None) for n in (1, 2, 3)),
)
WAVE = make_campaign(id=13, parent_id=12, wave=1, waves_total=3, state=S.ENDED)

# Facts for each event as the notifier writes them (through JSON, as the outbox keeps them).
FACTS: dict[Event, dict[str, Any]] = {
    Event.APPROVED: {},
    Event.REJECTED: {"by": "U2", "reason": "<b>not</b> tonight"},
    Event.WITHDRAWN: {"by": "U2"},
    Event.EXPIRED: {},
    Event.REMINDER: {},
    Event.NARROWED: {"by": "U2", "kept": 2, "dropped": 1, "superseded": ["U3"], "then": {"content_hash": HASH}},
    Event.OVERRIDDEN: {"by": "U2", "included": 1, "done": 0, "reason": "field test", "superseded": []},
    Event.SUBMITTED: {"then": {"thingspace_status": "CampaignRequestPending"}},
    Event.SUBMIT_FAILED: {"then": {"error_code": "INVALID", "error_message": "bad <dates>"}},
    Event.SUBMIT_DELAYED: {"reason": "ThingSpace timed out", "retry_in": 30.0},
    Event.STATUS_CHANGED: {"old": "CampaignRequestPending", "new": "CampaignStarted"},
    Event.CANCELLED: {"by": "U2"},
    Event.CANCEL_REFUSED: {"error_code": "NOPE", "error_message": "already ended"},
    Event.LOST: {},
    Event.WAVE_ENDED: {"sentence": "3 of 3 upgraded", "passed": True, "ready_at": None, "halted": False},
    Event.HALTED: {"wave": 13, "sentence": "2 of 3 failed", "reasons": [["no space", 2], ["", 1]]},
    Event.HALTED_BY: {"by": "U2", "reason": "<b>battery</b> drain", "kind": "halt"},
    Event.RESUMED: {"by": "U2", "reason": "false <alarm>", "next_step": "Wave 2 can be promoted."},
    Event.PROMOTED_ANYWAY: {"by": "U2", "number": 2, "sentence": "0 of 2 succeeded", "reason": "bench <PSU>"},
    Event.AUTO_PROMOTED: {"number": 2, "sentence": "2 of 2 succeeded"},
    Event.WAVE_CANCELLED: {"by": "U2"},
    Event.FINISHED: {},
    Event.ROOT_REFUSED: {"error": "not_in_channel"},
    Event.RETRY_REQUESTED: {"retry": 15, "by": "U2", "failed": 3},
}
RECORDS = Records(
    decisions=[approve("U2"), approve("U3"), reject("U4", "no")],
    counts={"succeeded": 2, "failed": 1, "pending": 0},
    plan=PLAN,
    wave=WAVE,
    approvers=["U2", "U3", "S0GROUP"],
    required_approvals=2,
)
DIRECT_MESSAGES = [
    Event.APPROVED, Event.REJECTED, Event.WITHDRAWN, Event.EXPIRED, Event.SUBMITTED, Event.SUBMIT_FAILED,
    Event.FINISHED, Event.CANCELLED, Event.LOST, Event.HALTED, Event.HALTED_BY, Event.RESUMED,
]
# Direct messages that are the thread's own words (told to the requester and the approvers).
AS_IN_THE_THREAD = {Event.HALTED, Event.HALTED_BY, Event.RESUMED}


def stored(facts: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(facts))
    return loaded


def test_every_event_but_the_direct_message_only_ones_has_a_thread_reply() -> None:
    assert set(render.REPLIES) == set(Event) - {Event.FINISHED, Event.ROOT_REFUSED}
    assert set(FACTS) == set(Event)


@pytest.mark.parametrize("event", sorted(render.REPLIES))
def test_each_thread_reply_is_valid_block_kit_with_user_text_escaped(event: Event) -> None:
    campaign = hostile_campaign(state=S.ENDED, thread_ts="1.2")
    if event is Event.WAVE_ENDED:
        campaign = WAVE
    if event is Event.REMINDER:
        campaign = hostile_campaign()
    msg = render.reply(event, campaign, stored(FACTS[event]), RECORDS)
    assert msg is not None
    check_message(msg)
    check_escaped(msg)


@pytest.mark.parametrize("event", DIRECT_MESSAGES)
def test_each_direct_message_is_valid_block_kit_and_links_the_thread(event: Event) -> None:
    msg = render.dm(event, hostile_campaign(state=S.ENDED), stored(FACTS[event]), RECORDS, PERMALINK)
    check_message(msg)
    check_escaped(msg)
    if event not in AS_IN_THE_THREAD:  # a halt's message is the thread's own words
        assert "p1700000000000100" in json.dumps(msg) and "View the thread" in json.dumps(msg)


def test_every_event_told_in_a_direct_message_has_a_builder() -> None:
    assert set(render.DIRECT_MESSAGES) == {*DIRECT_MESSAGES, Event.ROOT_REFUSED}
    with pytest.raises(KeyError):
        render.dm(Event.STATUS_CHANGED, make_campaign(), {}, Records(), PERMALINK)


def test_slack_refusing_the_card_is_told_to_the_requester_in_words() -> None:
    msg = render.dm(Event.ROOT_REFUSED, make_campaign(), FACTS[Event.ROOT_REFUSED], Records(), None)
    assert "could not be posted for approval" in msg["text"] and "`not_in_channel`" in msg["text"]


def test_a_reply_says_what_was_true_at_the_event_not_what_is_true_when_sent() -> None:
    then = make_campaign(state=S.SUBMITTED, thingspace_id="ts-1", thingspace_status="CampaignRequestPending")
    facts = stored({"then": as_then(then, "thingspace_status")})
    now = make_campaign(state=S.ENDED, thingspace_id="ts-1", thingspace_status="CampaignEnded")
    text = render.reply(Event.SUBMITTED, now, facts, Records())["text"]
    assert "CampaignRequestPending" in text and "CampaignEnded" not in text
    # The requester's direct message too: a short wave can end before the message goes out.
    text = render.dm(Event.SUBMITTED, now, facts, Records(), PERMALINK)["text"]
    assert "CampaignRequestPending" in text and "CampaignEnded" not in text


def test_a_halt_names_the_failures_as_they_were_at_the_halt() -> None:
    parent = make_campaign(state=S.HALTED)
    msg = render.reply(Event.HALTED, parent, stored(FACTS[Event.HALTED]), Records(wave=WAVE))
    text = all_text(msg)
    assert "no space: 2" in text and "no reason given: 1" in text
    assert WAVE.ref in msg["text"]


def test_a_waves_end_keeps_its_verdict_when_the_rollout_is_halted_later() -> None:
    halted_now = StoredPlan(**{**PLAN.__dict__, "halted_at": T0, "halted_by": "U2"})
    facts = stored(FACTS[Event.WAVE_ENDED])
    passed = render.reply(Event.WAVE_ENDED, WAVE, facts, Records(plan=halted_now))
    assert "passed" in passed["text"] and "halted" not in passed["text"]
    assert any(b["type"] == "actions" for b in passed["blocks"])  # its Promote button
    held = render.reply(Event.WAVE_ENDED, WAVE, {**facts, "passed": False, "halted": True}, Records(plan=PLAN))
    assert "halted" in held["text"]


def test_a_reminder_waits_on_who_has_not_decided_when_it_is_sent() -> None:
    msg = render.reply(Event.REMINDER, make_campaign(), {}, RECORDS)
    assert msg is not None
    text = msg["text"]
    assert "2 of 2 approvals" in text
    assert "<@U2>" not in text and "<!subteam^S0GROUP>" in text


@pytest.mark.parametrize("state", [S.APPROVED, S.REJECTED, S.WITHDRAWN, S.EXPIRED, S.ROLLING_OUT])
def test_a_reminder_of_a_request_decided_before_it_went_out_says_nothing(state: CampaignState) -> None:
    assert render.reply(Event.REMINDER, make_campaign(state=state), {}, RECORDS) is None


def test_upload_titles_and_names_come_from_the_event() -> None:
    campaign = make_campaign(id=7)
    assert render.upload_title(campaign, {}) == "FB-7 per-device report"
    assert render.upload_filename(campaign, {}) == "FB-7-devices.csv"
    assert render.upload_title(campaign, {"reasons": [""], "part": 2}) == "FB-7 failed: no reason given"
    assert render.upload_filename(campaign, {"reasons": [""], "part": 2}) == "FB-7-failed-2.csv"
    assert render.upload_title(campaign, {"reasons": ["a", "b"], "part": 11}) == "FB-7 failed: other reasons"


def test_an_unknown_event_has_no_reply() -> None:
    with pytest.raises(KeyError):
        render.reply(Event.ROOT_REFUSED, make_campaign(), {}, Records())


def test_facts_survive_the_outbox_json() -> None:
    # Every fact the notifier records is plain JSON: an event read back renders the same.
    for event, facts in FACTS.items():
        assert stored(facts) == facts, event


def test_a_wave_that_missed_carries_its_decision_buttons_when_its_request_is_known() -> None:
    facts = {**stored(FACTS[Event.WAVE_ENDED]), "passed": False}
    parent = make_campaign(id=12, state=S.ROLLING_OUT)
    msg = render.reply(Event.WAVE_ENDED, WAVE, facts, Records(plan=PLAN, parent=parent))
    ids = [e["action_id"] for b in msg["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert ids == ["fota_promote_anyway", "fota_halt"]
    check_message(msg)


def test_an_automatic_promotion_names_the_wave_it_sent() -> None:
    msg = render.reply(Event.AUTO_PROMOTED, make_campaign(id=12), stored(FACTS[Event.AUTO_PROMOTED]), Records(plan=PLAN))
    assert "promoted itself to wave 2/3" in msg["text"] and "2 of 2 succeeded" in msg["text"]


def test_a_held_wave_offers_to_retry_its_failed_devices_and_the_original_hears_of_a_retry() -> None:
    facts = {"sentence": "1 of 3 succeeded, 2 failed", "passed": False, "ready_at": None, "halted": False, "failed": 2}
    parent = make_campaign(id=12, state=S.ROLLING_OUT)
    held = render.reply(Event.WAVE_ENDED, WAVE, stored(facts), Records(plan=PLAN, parent=parent))
    check_message(held)
    ids = [e["action_id"] for b in held["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert ids == ["fota_promote_anyway", "fota_retry_failed", "fota_halt"]  # beside the decision
    assert "Retry the wave's failed devices (2)…" in json.dumps(held, ensure_ascii=False)
    [button] = [e for b in held["blocks"] for e in b.get("elements", []) if e.get("action_id") == "fota_retry_failed"]
    assert blocks.parse_retry_value(button["value"]) == WAVE.id  # the wave's own campaign
    told = render.reply(Event.RETRY_REQUESTED, WAVE, stored(FACTS[Event.RETRY_REQUESTED]), RECORDS)
    assert "retry the 3 failed devices of FB-12 w1/3 as Ref FB-15" in told["text"]
