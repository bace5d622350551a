"""Block Kit builders of the operator commands and the App Home: content, escaping, button
values, and Slack's limits, checked by plain asserts and by slack_sdk's own block models."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from commands import blocks as kit
from commands.blocks import (
    ACTION_APPROVE,
    ACTION_CANCEL_CONFIRM,
    ACTION_CANCEL_KEEP,
    ACTION_FIRMWARE_SCHEDULE,
    ACTION_LIST_PAGE,
    ACTION_REJECT,
    SANDBOX_BANNER,
    cancel_outcome_reply,
    cancel_prompt,
    devices_reply,
    firmware_reply,
    home_notice,
    home_view,
    list_reply,
    parse_action_value,
    parse_cancel_value,
    parse_firmware_value,
    parse_list_page_value,
    status_reply,
)
from commands.blocks.operations import cancel_value, firmware_value, list_page_value
from storage.findings import PreflightRecord
from storage.model import Campaign, Decision, Device, TimeWindow
from storage.states import CampaignState
from storage.waves import StoredPlan, WaveTally
from tests.support.blocks import all_text, check_blocks, check_escaped, check_view

S = CampaignState
UTC = dt.UTC
HASH = "0123456789abcdef" * 4
T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
HOSTILE = "<script>&</script> <!channel> <@U999>"
PERMALINK = "https://example.slack.com/archives/C123/p1700000000000100"
HUGE = "x&<" * 5000
COUNTS = {"pending": 2, "in progress": 1, "succeeded": 5, "failed": 2, "other": 0}


def make_campaign(**overrides: Any) -> Campaign:
    fields: dict[str, Any] = {
        "id": 12,
        "state": S.PENDING_APPROVAL,
        "requester": "U1",
        "account": "0642233522-00001",
        "firmware_name": "FOTA_FW_1",
        "firmware_from": "SR1.2.0.0-ENG",
        "firmware_to": "SR1.2.0.1-ENG",
        "protocol": "LWM2M",
        "start_date": dt.date(2030, 1, 2),
        "end_date": dt.date(2030, 1, 9),
        "windows": (TimeWindow(18, 22),),
        "name": None,
        "device_count": 3,
        "content_hash": HASH,
        "sandbox": False,
        "created_at": T0,
        "expires_at": T0 + dt.timedelta(hours=24),
        "approval_channel": "C123",
        "thread_ts": "1700000000.000100",
        "thingspace_id": "5e1f7c2a-1b2c-4d5e-8f90-0123456789ab",
    }
    fields.update(overrides)
    return Campaign(**fields)


def hostile_campaign(**overrides: Any) -> Campaign:
    fields: dict[str, Any] = {
        "name": HOSTILE,
        "firmware_name": HOSTILE,
        "firmware_from": "a<b",
        "firmware_to": "c>d&e",
        "account": "<acc>",
        "notes": (HOSTILE,),
        "error_code": "<INVALID&>",
        "error_message": HOSTILE,
        "thingspace_id": "<id>",
        "thingspace_status": "<Weird>",
        "make": "<make>",
        "model": "`model`",
    }
    fields.update(overrides)
    return make_campaign(**fields)


def huge_campaign(**overrides: Any) -> Campaign:
    fields: dict[str, Any] = {
        "id": 10**15,
        "name": HUGE,
        "firmware_name": HUGE,
        "firmware_from": HUGE,
        "firmware_to": HUGE,
        "account": HUGE,
        "notes": tuple(HUGE for _ in range(50)),
        "error_code": HUGE,
        "error_message": HUGE,
        "thingspace_id": HUGE,
        "thingspace_status": HUGE,
        "make": HUGE,
        "model": HUGE,
        "device_count": 100_000,
        "requester": "U" + "X" * 3000,
    }
    fields.update(overrides)
    return make_campaign(**fields)


@dataclass(frozen=True)
class Facts:
    """What bot.workflow.operations.CampaignView carries, for the builders' CampaignFacts."""

    campaign: Campaign
    counts: dict[str, int] = field(default_factory=lambda: dict(COUNTS))
    decisions: list[Decision] = field(default_factory=list)
    sample: tuple[str, ...] = ("354658090353977", "490154203237518")
    not_approvable: str | None = None
    preflight: PreflightRecord | None = None
    plan: StoredPlan | None = None
    current_wave: WaveTally | None = None
    wave_states: dict[int, tuple[str, int, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Shared:
    name: str = "FB-12-devices.csv"
    rows: int = 3
    permalink: str | None = "https://example.slack.com/files/U0/F1/FB-12-devices.csv"
    error: str | None = None


def approval(user: str, content_hash: str = HASH) -> Decision:
    return Decision(12, user, "approve", content_hash, None, T0)


FIRMWARE = {
    "firmwareName": "SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657",
    "firmwareFrom": "SR1.2.0.0-10512",
    "firmwareTo": "SR1.2.0.0-10657",
    "launchDate": "2021-09-01",
    "releaseNote": "LTE-M power saving fixes",
    "model": "GM01Q",
    "make": "SEQUANS Communications",
    "protocol": "LWM2M",
}
HOSTILE_FIRMWARE = {key: HOSTILE for key in FIRMWARE}


def devices(n: int, *, reason: str | None = None) -> list[Device]:
    return [Device(f"{354658090000000 + i:015d}", "UpgradeFailed", reason, "2030-01-01") for i in range(n)]


# --- The limit checker: tests/support/blocks.py ----------------------------------------------


def check_message(msg: dict[str, Any]) -> None:
    assert set(msg) == {"text", "blocks"}
    assert isinstance(msg["text"], str) and 0 < len(msg["text"]) <= 3000
    check_blocks(msg["blocks"])


def check_home(view: dict[str, Any]) -> None:
    assert view["type"] == "home"
    check_view(view, expected_type="home")



def buttons(msg: dict[str, Any], action_id: str) -> list[dict[str, Any]]:
    found = []
    for block in msg["blocks"]:
        for element in [*block.get("elements", []), block.get("accessory") or {}]:
            if element.get("action_id") == action_id:
                found.append(element)
    return found


# --- Every builder, for the sweep tests -----------------------------------------------------------

Builder = Callable[[Campaign], dict[str, Any]]

BUILDERS: dict[str, Builder] = {
    "status_reply pending": lambda c: status_reply(
        Facts(c, decisions=[approval("U2")]), required_approvals=2, permalink=PERMALINK
    ),
    "status_reply withdrawn": lambda c: status_reply(
        Facts(replace(c, state=S.WITHDRAWN)), required_approvals=1, permalink=None, last_actor="U3"
    ),
    "status_reply submit_failed": lambda c: status_reply(
        Facts(replace(c, state=S.SUBMIT_FAILED)), required_approvals=1, permalink=PERMALINK
    ),
    "status_reply scheduled": lambda c: status_reply(
        Facts(replace(c, state=S.SCHEDULED)), required_approvals=1, permalink=PERMALINK
    ),
    "list_reply": lambda c: list_reply(
        [Facts(replace(c, id=i, state=s)) for i, s in zip(range(12, 2, -1), list(S)[:10], strict=False)],
        scope="all",
        next_before=3,
        first_page=True,
    ),
    "cancel_prompt withdraw": lambda c: cancel_prompt(c, kind="withdraw"),
    "cancel_prompt thingspace": lambda c: cancel_prompt(replace(c, state=S.SCHEDULED), kind="thingspace"),
    "cancel_outcome withdrawn": lambda c: cancel_outcome_reply(c, "withdrawn"),
    "cancel_outcome cancelled": lambda c: cancel_outcome_reply(c, "cancelled"),
    "cancel_outcome refused": lambda c: cancel_outcome_reply(
        c, "refused", error_code=c.error_code, error_message=c.error_message
    ),
    "firmware_reply": lambda c: firmware_reply(
        c.account,
        [{**FIRMWARE, "firmwareName": c.firmware_name, "firmwareFrom": c.firmware_from, "releaseNote": c.name}],
        protocol="LWM2M",
    ),
    "devices_reply": lambda c: devices_reply(
        c, counts=COUNTS, devices=devices(20, reason=c.error_message), total=30, failed_only=False, shared=Shared()
    ),
    "devices_reply failed, not shared": lambda c: devices_reply(
        c, counts=COUNTS, devices=devices(2, reason=c.name), total=2, failed_only=True, shared=Shared(error=c.model)
    ),
}


@pytest.mark.parametrize("name", BUILDERS)
def test_every_builder_is_valid_block_kit(name: str) -> None:
    check_message(BUILDERS[name](make_campaign()))


@pytest.mark.parametrize("name", BUILDERS)
def test_every_builder_escapes_user_text(name: str) -> None:
    msg = BUILDERS[name](hostile_campaign())
    check_message(msg)
    check_escaped(msg)


@pytest.mark.parametrize("name", BUILDERS)
def test_huge_values_stay_within_limits(name: str) -> None:
    check_message(BUILDERS[name](huge_campaign()))


@pytest.mark.parametrize("name", [n for n in BUILDERS if not n.startswith("firmware")])
def test_every_answer_about_a_campaign_names_its_ref(name: str) -> None:
    assert "FB-12" in all_text(BUILDERS[name](make_campaign()))


# --- /fota status ----------------------------------------------------------------------------------


def test_status_reply_uses_the_thread_root_builders_without_buttons() -> None:
    pending = status_reply(Facts(make_campaign(), decisions=[approval("U2")]), required_approvals=2, permalink=PERMALINK)
    text = all_text(pending)
    assert "Firmware campaign request" in text and "Waiting for approval" in text
    assert "1 of 2 approvals" in text and f"<{PERMALINK}|Open the thread of Ref FB-12>" in text
    assert not buttons(pending, ACTION_APPROVE) and not buttons(pending, ACTION_REJECT)

    running = status_reply(
        Facts(make_campaign(state=S.SCHEDULED, thingspace_status="CampaignScheduled")),
        required_approvals=1,
        permalink=None,
    )
    text = all_text(running)
    assert "Firmware campaign FB-12" in text and "Progress" in text and "succeeded 5" in text
    assert "not posted yet" in text


def test_status_reply_names_who_withdrew() -> None:
    msg = status_reply(
        Facts(make_campaign(state=S.WITHDRAWN)), required_approvals=1, permalink=None, last_actor="U7"
    )
    assert "*Withdrawn* by <@U7>" in all_text(msg)


# --- /fota list ------------------------------------------------------------------------------------


def test_list_reply_one_section_per_campaign_and_a_next_button() -> None:
    items = [
        Facts(make_campaign(id=3, state=S.SCHEDULED), counts={"succeeded": 1, "pending": 3}),
        Facts(make_campaign(id=2, state=S.PENDING_APPROVAL)),
    ]
    msg = list_reply(items, scope="active", next_before=2, first_page=True)
    check_message(msg)
    sections = [b for b in msg["blocks"] if b["type"] == "section"]
    assert len(sections) == 3  # the title, then one per campaign
    assert "*Ref FB-3*" in sections[1]["text"]["text"] and "25% done" in sections[1]["text"]["text"]
    assert "not started" in sections[2]["text"]["text"] and "<@U1>" in sections[2]["text"]["text"]
    assert "3 devices" in sections[2]["text"]["text"] and "`SR1.2.0.1-ENG`" in sections[2]["text"]["text"]
    [button] = buttons(msg, ACTION_LIST_PAGE)
    assert parse_list_page_value(button["value"]) == ("active", 2)
    last = list_reply(items, scope="active", next_before=None, first_page=False)
    assert not buttons(last, ACTION_LIST_PAGE) and "(continued)" in all_text(last)


@pytest.mark.parametrize("scope", ["active", "all", "mine"])
def test_list_reply_when_empty_says_what_to_do(scope: str) -> None:
    msg = list_reply([], scope=scope, next_before=None, first_page=True)
    check_message(msg)
    assert "/fota" in msg["text"]
    assert "No more campaigns" in list_reply([], scope=scope, next_before=None, first_page=False)["text"]


@pytest.mark.parametrize(
    "value",
    [None, "", "x", "[]", '{"scope":"all"}', '{"scope":"nope","before":3}', '{"scope":"all","before":0}',
     '{"scope":"all","before":true}', '{"scope":"all","before":"3"}', '{"scope":"all","before":3,"x":1}'],
)
def test_parse_list_page_value_refuses_garbage(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_list_page_value(value)


def test_list_page_value_round_trip() -> None:
    assert parse_list_page_value(list_page_value("mine", 41)) == ("mine", 41)


# --- /fota cancel ----------------------------------------------------------------------------------


def test_cancel_prompt_for_a_request_says_nothing_was_sent() -> None:
    msg = cancel_prompt(make_campaign(), kind="withdraw")
    text = all_text(msg)
    assert "never sent to ThingSpace" in text and "Withdraw request" in text
    [confirm] = buttons(msg, ACTION_CANCEL_CONFIRM)
    assert confirm["style"] == "danger" and confirm["confirm"]["style"] == "danger"
    assert parse_cancel_value(confirm["value"]) == (12, "withdraw")
    [keep] = buttons(msg, ACTION_CANCEL_KEEP)
    assert "style" not in keep


def test_cancel_prompt_at_thingspace_says_plainly_what_cancelling_means() -> None:
    msg = cancel_prompt(make_campaign(state=S.REQUEST_QUEUED), kind="thingspace")
    text = all_text(msg)
    for words in ("only *before it starts*", "may refuse", "abort", "already upgraded stay upgraded", "word for word"):
        assert words in text
    assert "5e1f7c2a-1b2c-4d5e-8f90-0123456789ab" in text and "3 devices" in text
    assert "started already" not in text
    [confirm] = buttons(msg, ACTION_CANCEL_CONFIRM)
    assert confirm["text"]["text"] == "Cancel campaign" and confirm["style"] == "danger"
    assert "refuse or abort" in confirm["confirm"]["text"]["text"]
    assert parse_cancel_value(confirm["value"]) == (12, "thingspace")
    scheduled = all_text(cancel_prompt(make_campaign(state=S.SCHEDULED), kind="thingspace"))
    assert "may consider it started already" in scheduled


def test_cancel_outcome_reply_gives_thingspace_words_word_for_word() -> None:
    msg = cancel_outcome_reply(
        make_campaign(),
        "refused",
        error_code="CAMPAIGN_ALREADY_STARTED",
        error_message="Campaign 5e1f has already started (status CampaignScheduled); a campaign can only be cancelled before it starts",
    )
    text = all_text(msg)
    assert "`CAMPAIGN_ALREADY_STARTED`: Campaign 5e1f has already started (status CampaignScheduled); a campaign can only be cancelled before it starts" in text
    assert "goes on" in text
    assert "ThingSpace cancelled Ref FB-12" in all_text(cancel_outcome_reply(make_campaign(), "cancelled"))
    with pytest.raises(ValueError):
        cancel_outcome_reply(make_campaign(), "exploded")


@pytest.mark.parametrize(
    "value",
    [None, "", "{}", '{"campaign_id":1}', '{"campaign_id":0,"kind":"withdraw"}', '{"campaign_id":1,"kind":"nuke"}',
     '{"campaign_id":true,"kind":"withdraw"}', '{"campaign_id":"1","kind":"withdraw"}', "x" * 3000],
)
def test_parse_cancel_value_refuses_garbage(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_cancel_value(value)


def test_cancel_value_round_trip() -> None:
    assert parse_cancel_value(cancel_value(7, "thingspace")) == (7, "thingspace")


# --- /fota firmware --------------------------------------------------------------------------------


def test_firmware_reply_lists_each_entry_with_a_schedule_button() -> None:
    msg = firmware_reply("0642233522-00001", [FIRMWARE, {**FIRMWARE, "firmwareFrom": "SR1.1"}], protocol="LWM2M")
    check_message(msg)
    text = all_text(msg)
    for fragment in ("SEQUANS Communications / GM01Q", "launched 2021-09-01", "_LTE-M power saving fixes_",
                     "`SR1.2.0.0-10512` → `SR1.2.0.0-10657`", "`SR1.1` →", "2 upgrade paths", "(LWM2M)"):
        assert fragment in text
    first, second = buttons(msg, ACTION_FIRMWARE_SCHEDULE)
    assert first["text"]["text"] == "Schedule…"
    assert parse_firmware_value(first["value"]) == {
        "firmware": FIRMWARE["firmwareName"],
        "from": "SR1.2.0.0-10512",
        "to": "SR1.2.0.0-10657",
        "protocol": "LWM2M",
        "account": "0642233522-00001",
    }
    assert parse_firmware_value(second["value"])["from"] == "SR1.1"


def test_firmware_reply_trims_the_release_note_and_caps_the_list() -> None:
    long_note = "word " * 500
    msg = firmware_reply("1-1", [{**FIRMWARE, "releaseNote": long_note}] * 120, protocol="LWM2M")
    check_message(msg)
    sections = [b for b in msg["blocks"] if b.get("accessory")]
    assert len(sections) == 40
    assert all(len(s["text"]["text"]) < 600 for s in sections)
    assert "… and 80 more entries not shown" in all_text(msg)


def test_firmware_reply_when_empty_and_when_a_value_cannot_fit() -> None:
    empty = firmware_reply("1-1", [], protocol="LWM2M")
    check_message(empty)
    assert "no LWM2M firmware" in empty["text"]
    huge = {**FIRMWARE, "firmwareName": "n" * 2500}
    assert firmware_value(huge, "1-1") is None
    msg = firmware_reply("1-1", [huge, FIRMWARE], protocol="LWM2M")
    check_message(msg)
    assert len(buttons(msg, ACTION_FIRMWARE_SCHEDULE)) == 1


def test_firmware_reply_escapes_thingspace_text() -> None:
    msg = firmware_reply("<acc>", [HOSTILE_FIRMWARE], protocol="LWM2M")
    check_message(msg)
    check_escaped(msg)
    # The button value carries the raw words for the modal (plain_text inputs, not parsed).
    assert parse_firmware_value(buttons(msg, ACTION_FIRMWARE_SCHEDULE)[0]["value"])["firmware"] == HOSTILE


@pytest.mark.parametrize(
    "value",
    [None, "{}", '{"firmware":"x"}', '{"firmware":1,"from":"","to":"","protocol":"","account":""}', "[1]"],
)
def test_parse_firmware_value_refuses_garbage(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_firmware_value(value)


def test_parse_firmware_value_drops_empty_fields() -> None:
    value = firmware_value({"firmwareName": "fw"}, "1-1")
    assert value is not None and parse_firmware_value(value) == {"firmware": "fw", "account": "1-1"}


# --- /fota devices ---------------------------------------------------------------------------------


def test_devices_reply_counts_first_devices_and_where_the_csv_went() -> None:
    msg = devices_reply(
        make_campaign(state=S.ENDED),
        counts=COUNTS,
        devices=devices(20, reason="Device did not respond"),
        total=30,
        failed_only=False,
        shared=Shared(rows=30),
    )
    check_message(msg)
    text = all_text(msg)
    assert "*Ref FB-12: 30 devices*" in text
    for name, count in COUNTS.items():
        assert f"*{name}*\n{count}" in text
    assert text.count("`UpgradeFailed` — Device did not respond") == 20
    assert "… and 10 more in the CSV file" in text
    assert "All 30 rows are in <https://example.slack.com/files/U0/F1/FB-12-devices.csv|FB-12-devices.csv>" in text
    assert "direct message" in text


def test_devices_reply_failed_only_and_when_slack_refused_the_file() -> None:
    msg = devices_reply(
        make_campaign(), counts=COUNTS, devices=devices(2), total=2, failed_only=True, shared=Shared(error="not_in_channel")
    )
    text = all_text(msg)
    assert "2 failed devices" in text and "not_in_channel" in text and "fota-bot campaigns export FB-12" in text
    none = devices_reply(make_campaign(), counts={}, devices=[], total=0, failed_only=True, shared=None)
    check_message(none)
    assert "No device has failed so far" in all_text(none)


def test_devices_reply_with_long_reasons_stays_within_limits() -> None:
    msg = devices_reply(
        make_campaign(), counts=COUNTS, devices=devices(20, reason="r" * 5000), total=100_000,
        failed_only=False, shared=Shared(),
    )
    check_message(msg)


# --- App Home --------------------------------------------------------------------------------------


def home(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "may_approve": True,
        "to_decide": [Facts(make_campaign(id=5, requester="U1"))],
        "mine_waiting": [Facts(make_campaign(id=6, requester="U9"))],
        "active": [Facts(make_campaign(id=4, state=S.SCHEDULED))],
        "totals": {"to_decide": 1, "mine_waiting": 1, "active": 1},
        "required_approvals": 2,
        "sandbox": False,
        "now": T0,
    }
    args.update(overrides)
    return home_view("U9", **args)


def test_home_view_sections_in_order_with_the_card_buttons() -> None:
    view = home()
    check_home(view)
    text = all_text(view)
    order = [
        text.index("Requests waiting for your approval"),
        text.index("*Ref FB-5*"),
        text.index("Your requests waiting for approval"),
        text.index("*Ref FB-6*"),
        text.index("Campaigns under way"),
        text.index("*Ref FB-4*"),
    ]
    assert order == sorted(order)
    assert "▓" * 10 + "▒" * 4 + "░" * 6 + " 50% succeeded · 20% failed" in text  # FB-4's progress bar
    [approve] = buttons(view, ACTION_APPROVE)
    [reject] = buttons(view, ACTION_REJECT)
    assert parse_action_value(approve["value"]) == parse_action_value(reject["value"]) == (5, HASH)
    assert "confirm" in approve and approve["style"] == "primary"
    for fragment in ("FOTA_FW_1", "`SR1.2.0.0-ENG` → `SR1.2.0.1-ENG`", "0 of 2 approvals", "`0123456789ab`",
                     "`354658090353977`", "18–22", "fota-bot FB-5"):
        assert fragment in text
    assert SANDBOX_BANNER not in text


def test_home_view_offers_no_approve_while_pre_flight_does_not_allow_it() -> None:
    checking = "FB-5 is still being checked against ThingSpace"
    view = home(to_decide=[Facts(make_campaign(id=5), not_approvable=checking)])
    check_home(view)
    assert not buttons(view, ACTION_APPROVE)
    assert buttons(view, ACTION_REJECT)
    assert checking in all_text(view)


def test_home_view_for_someone_who_is_not_an_approver_or_who_approved_already() -> None:
    not_approver = home(may_approve=False, to_decide=[])
    check_home(not_approver)
    assert "Requests waiting for your approval" not in all_text(not_approver)
    approved = home(to_decide=[Facts(make_campaign(id=5), decisions=[approval("U9")])])
    check_home(approved)
    assert not buttons(approved, ACTION_APPROVE) and "You approved this" in all_text(approved)
    assert "1 of 2 approvals" in all_text(approved)


def test_home_view_when_empty_and_with_a_notice_on_top() -> None:
    view = home(to_decide=[], mine_waiting=[], active=[], totals={}, sandbox=True,
                notice=home_notice("You approved FB-5; it is being sent to ThingSpace now."))
    check_home(view)
    text = all_text(view)
    assert text.index("You approved FB-5") < text.index("Requests waiting for your approval")
    assert "Nothing is waiting for you" in text and "No campaign is running" in text
    assert SANDBOX_BANNER in text


def test_home_view_stays_within_100_blocks_on_a_busy_day() -> None:
    many = [Facts(huge_campaign(id=i)) for i in range(1, 60)]
    view = home(
        to_decide=many, mine_waiting=many, active=many, totals={"to_decide": 59, "mine_waiting": 59, "active": 59},
        sandbox=True, notice=home_notice("x", [{"type": "section", "text": {"type": "mrkdwn", "text": "y"}}] * 20),
    )
    check_home(view)
    assert len(view["blocks"]) <= 100
    text = all_text(view)
    assert "… and 49 requests more" in text and "… and 44 campaigns more" in text


def test_home_view_escapes_user_text() -> None:
    view = home(
        to_decide=[Facts(hostile_campaign(id=5))],
        mine_waiting=[Facts(hostile_campaign(id=6))],
        active=[Facts(hostile_campaign(id=4, state=S.SCHEDULED))],
    )
    check_home(view)
    check_escaped({"text": "", "blocks": view["blocks"]})


def test_home_notice_prefers_the_answer_blocks() -> None:
    answer = kit.error_reply("Only the approvers named in FOTA_APPROVERS may approve FB-5 <x>")
    notice = home_notice(answer["text"], answer["blocks"])
    assert notice == answer["blocks"]
    assert home_notice("  ") == [{"type": "section", "text": {"type": "mrkdwn", "text": "Done."}}]


def test_the_package_exports_the_operator_builders() -> None:
    assert (ACTION_LIST_PAGE, ACTION_CANCEL_CONFIRM, ACTION_FIRMWARE_SCHEDULE) == (
        "fota_list_page",
        "fota_cancel_confirm",
        "fota_firmware_schedule",
    )
    assert all(hasattr(kit, name) for name in kit.__all__)
    json.dumps(home())  # a view is plain JSON
