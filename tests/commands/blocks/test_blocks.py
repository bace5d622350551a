"""Block Kit builders: content, escaping, and Slack's limits, checked by plain asserts and by
slack_sdk's own block models (every block must parse, validate and round-trip unchanged)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest

from commands import blocks as kit
from commands.blocks import (
    ACTION_APPROVE,
    ACTION_REJECT,
    ACTION_WITHDRAW,
    REJECT_MODAL_CALLBACK_ID,
    SANDBOX_BANNER,
    START_DATE_PASSED,
    STATE_LABELS,
    action_value,
    approval_card,
    approval_recorded_reply,
    approved_reply,
    campaign_card,
    cancel_refused_reply,
    cancelled_reply,
    decided_card,
    dm_approved,
    dm_cancelled,
    dm_expired,
    dm_finished,
    dm_rejected,
    dm_submit_failed,
    dm_submitted,
    error_reply,
    escape,
    expired_reply,
    failures_reply,
    final_headline,
    final_summary_reply,
    parse_action_value,
    progress_bar,
    reject_reason_modal,
    rejected_reply,
    reminder_reply,
    request_confirmation,
    requester_dm,
    slack_date,
    state_label,
    status_change_reply,
    submit_delayed_reply,
    submit_failed_reply,
    submitted_reply,
    withdrawn_reply,
)
from commands.blocks.kit import clip, format_duration
from storage.model import Campaign, Decision, RequestError, TimeWindow
from storage.states import DEVICE_BUCKETS, CampaignState
from tests.support import blocks as support_blocks
from tests.support.blocks import all_text, check_escaped

S = CampaignState
UTC = dt.UTC
HASH = "0123456789abcdef" * 4
T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
HOSTILE = "<script>&</script> <!channel> <@U999>"
PERMALINK = "https://example.slack.com/archives/C123/p1700000000000100?thread_ts=1.2&cid=C123"


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
        "windows": (TimeWindow(18, 22), TimeWindow(2, 6)),
        "name": None,
        "device_count": 3,
        "content_hash": HASH,
        "sandbox": False,
        "created_at": T0,
        "expires_at": T0 + dt.timedelta(hours=24),
        "approval_channel": "C123",
        "thread_ts": "1700000000.000100",
    }
    fields.update(overrides)
    return Campaign(**fields)


def hostile_campaign(**overrides: Any) -> Campaign:
    fields: dict[str, Any] = {
        "name": HOSTILE,
        "firmware_name": HOSTILE,
        "firmware_from": "a<b",
        "firmware_to": "c>d&e",
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


def approve(user: str, *, content_hash: str = HASH, at: dt.datetime = T0) -> Decision:
    return Decision(12, user, "approve", content_hash, None, at)


def reject(user: str, reason: str | None, *, at: dt.datetime = T0) -> Decision:
    return Decision(12, user, "reject", HASH, reason, at)


# --- The limit checker (tests/support/blocks.py), applied to everything built below ------------


def check_blocks(blocks: list[dict[str, Any]], *, max_blocks: int = 50) -> None:
    # These cards carry one set of buttons: action_ids unique across the whole message.
    support_blocks.check_blocks(blocks, max_blocks=max_blocks, unique_ids="message")


def check_message(msg: dict[str, Any]) -> None:
    assert set(msg) == {"text", "blocks"}
    assert isinstance(msg["text"], str) and 0 < len(msg["text"]) <= 3000
    check_blocks(msg["blocks"])


# --- Every builder, for the sweep tests ---------------------------------------------------------

Builder = Callable[[Campaign], dict[str, Any]]

MANY_IMEIS = [f"{35000000000000 + i:014d}0" for i in range(100_000)]
COUNTS = {"pending": 2, "in progress": 1, "succeeded": 5, "failed": 2, "Mystery": 1}

BUILDERS: dict[str, Builder] = {
    "approval_card": lambda c: approval_card(
        c, devices_sample=MANY_IMEIS, approvals=[approve("U2")], required_approvals=2, sandbox=True
    ),
    "decided_card approved": lambda c: decided_card(
        c, decisions=[approve("U2")], outcome="approved", devices_sample=MANY_IMEIS, sandbox=False
    ),
    "decided_card rejected": lambda c: decided_card(
        c,
        decisions=[reject("U3", HOSTILE)],
        outcome="rejected",
        devices_sample=["1"],
        sandbox=False,
    ),
    "decided_card withdrawn": lambda c: decided_card(
        c, decisions=[], outcome="withdrawn", devices_sample=[], sandbox=False, decided_at=T0
    ),
    "decided_card expired": lambda c: decided_card(
        c, decisions=[approve("U2")], outcome=S.EXPIRED, devices_sample=[], sandbox=True
    ),
    "decided_card submit_failed": lambda c: decided_card(
        c, decisions=[approve("U2")], outcome="submit_failed", devices_sample=[], sandbox=False
    ),
    "campaign_card": lambda c: campaign_card(
        c, counts=COUNTS, last_update=T0, sandbox=True, decisions=[approve("U2")]
    ),
    "approval_recorded_reply": lambda c: approval_recorded_reply(c, [approve("U2")], 2),
    "approved_reply": lambda c: approved_reply(c, [approve("U2"), approve("U3")]),
    "submitted_reply": submitted_reply,
    "submit_failed_reply": submit_failed_reply,
    "status_change_reply": lambda c: status_change_reply(
        c, "CampaignRequestQueued", "CampaignScheduled"
    ),
    "failures_reply": lambda c: failures_reply(c, [("351756051523999", HOSTILE)] * 1000, 9000),
    "final_summary_reply": lambda c: final_summary_reply(
        c, COUNTS, ended_at=T0 + dt.timedelta(days=3)
    ),
    "reminder_reply": lambda c: reminder_reply(
        c, c.expires_at, decisions=[approve("U2")], required_approvals=2
    ),
    "expired_reply": expired_reply,
    "rejected_reply": lambda c: rejected_reply(c, "U3", HOSTILE),
    "withdrawn_reply": withdrawn_reply,
    "cancelled_reply": lambda c: cancelled_reply(c, "U4"),
    "cancel_refused_reply": lambda c: cancel_refused_reply(c, "<NOPE>", HOSTILE),
    "dm_approved": lambda c: dm_approved(c, [approve("U2")], PERMALINK),
    "dm_submitted": lambda c: dm_submitted(c, PERMALINK),
    "dm_submit_failed": lambda c: dm_submit_failed(c, PERMALINK),
    "dm_rejected": lambda c: dm_rejected(c, "U3", HOSTILE, PERMALINK),
    "dm_expired": lambda c: dm_expired(c, None),
    "dm_cancelled": lambda c: dm_cancelled(c, "U4", PERMALINK),
    "dm_finished": lambda c: dm_finished(c, COUNTS, PERMALINK),
    "submit_delayed_reply": lambda c: submit_delayed_reply(c, HOSTILE, 90.0),
    "requester_dm approved": lambda c: requester_dm(c, "approved", permalink=PERMALINK),
    "requester_dm rejected": lambda c: requester_dm(c, "rejected", by="U3", reason=HOSTILE),
    "requester_dm finished": lambda c: requester_dm(c, "finished", permalink=PERMALINK),
    "request_confirmation": lambda c: request_confirmation(c, PERMALINK),
    "error_reply": lambda c: error_reply(
        f"That request has 2 problems:\n• `name={HOSTILE}`: too long\n• x"
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


@pytest.mark.parametrize("name", [n for n in BUILDERS if n != "error_reply"])
def test_every_card_and_reply_shows_the_ref(name: str) -> None:
    msg = BUILDERS[name](make_campaign())
    assert "Ref FB-12" in all_text(msg)
    assert "Ref FB-12" in msg["text"] or "FB-12" in msg["text"]


@pytest.mark.parametrize("name", BUILDERS)
def test_huge_values_stay_within_limits(name: str) -> None:
    huge = "x&<" * 5000
    msg = BUILDERS[name](
        make_campaign(
            id=10**15,
            name=huge,
            firmware_name=huge,
            firmware_from=huge,
            firmware_to=huge,
            account=huge,
            notes=tuple(huge for _ in range(50)),
            error_code=huge,
            error_message=huge,
            thingspace_id=huge,
            thingspace_status=huge,
            make=huge,
            model=huge,
            device_count=100_000,
        )
    )
    check_message(msg)


# --- escape / clip ------------------------------------------------------------------------------


def test_escape_the_three_control_characters() -> None:
    assert escape("<script>&</script>") == "&lt;script&gt;&amp;&lt;/script&gt;"
    assert escape("a & b") == "a &amp; b"
    assert escape("&amp;") == "&amp;amp;"  # user text is never trusted to be pre-escaped
    assert escape("• `key=value`") == "• `key=value`"


def test_clip_never_splits_an_entity_or_a_mention() -> None:
    assert clip("abc", 3) == "abc"
    assert clip("abcdef", 4) == "abc…"
    assert clip("ab&amp;cd", 5) == "ab…"
    assert clip("hi <@U12345> there", 8) == "hi …"
    assert len(clip("x" * 5000, 3000)) == 3000


# --- approval card ------------------------------------------------------------------------------


def card(**kwargs: Any) -> dict[str, Any]:
    campaign = kwargs.pop("campaign", make_campaign())
    args: dict[str, Any] = {
        "devices_sample": ["351756051523999", "490154203237518", "356938035643809"],
        "approvals": [],
        "required_approvals": 2,
        "sandbox": False,
    }
    args.update(kwargs)
    msg = approval_card(campaign, **args)
    check_message(msg)
    return msg


def actions_of(msg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (block,) = [b for b in msg["blocks"] if b["type"] == "actions"]
    return {e["action_id"]: e for e in block["elements"]}


def test_approval_card_shows_the_request() -> None:
    msg = card()
    text = all_text(msg)
    assert msg["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Firmware campaign request", "emoji": True},
    }
    for expected in (
        "<@U1>",
        "0642233522-00001",
        "FOTA_FW_1",
        "`SR1.2.0.0-ENG` → `SR1.2.0.1-ENG`",
        "LWM2M",
        "2030-01-02",
        "2030-01-09",
        "18:00–22:00, 02:00–06:00",
        "`fota-bot FB-12`",
        "Request hash*\n`0123456789ab`",
        "Ref FB-12",
        "cannot be called back",
        "*0 of 2 approvals*",
    ):
        assert expected in text, expected
    assert HASH not in text  # the short form only; the full hash is in the button value
    assert SANDBOX_BANNER not in text
    assert "Approval needed" in msg["text"] and "FB-12" in msg["text"]


def test_approval_card_without_windows_says_any_time_and_uses_the_name() -> None:
    text = all_text(card(campaign=make_campaign(windows=(), name="Q3 rollout")))
    assert "*Windows (UTC)*\nany time" in text
    assert "`Q3 rollout [FB-12]`" in text


def test_approval_card_sandbox_banner_is_loud() -> None:
    msg = card(sandbox=True)
    assert msg["blocks"][1]["text"]["text"] == f"*{SANDBOX_BANNER}*"
    assert ":test_tube: SANDBOX — nothing reaches real devices" in all_text(msg)
    assert msg["text"].startswith("[SANDBOX]")
    # A sandbox campaign is flagged even if the caller forgets.
    assert SANDBOX_BANNER in all_text(card(campaign=make_campaign(sandbox=True)))


def test_approval_card_counts_only_valid_distinct_approvals() -> None:
    msg = card(
        approvals=[
            approve("U2"),
            approve("U2"),  # a double click
            approve("U1"),  # the requester: never counts
            approve("U3", content_hash="f" * 64),  # shown an older request
            reject("U4", "no"),
        ]
    )
    assert "*1 of 2 approvals*: <@U2>" in all_text(msg)
    msg = card(approvals=[approve("U2"), approve("U5")], required_approvals=3)
    assert "*2 of 3 approvals*: <@U2>, <@U5>" in all_text(msg)
    assert "*0 of 1 approval*" in all_text(card(required_approvals=1))


def test_approval_card_buttons() -> None:
    buttons = actions_of(card())
    assert list(buttons) == [ACTION_APPROVE, ACTION_REJECT, ACTION_WITHDRAW]
    assert [b["text"]["text"] for b in buttons.values()] == ["Approve", "Reject", "Withdraw"]
    approve_button = buttons[ACTION_APPROVE]
    assert approve_button["style"] == "primary"
    confirm = approve_button["confirm"]
    assert confirm["title"]["text"] == "Approve firmware campaign?"
    assert confirm["confirm"]["text"] == "Approve"
    assert confirm["deny"]["text"] == "Cancel"
    for expected in (
        "3 devices",
        "SR1.2.0.1-ENG",
        "0642233522-00001",
        "This cannot be undone once the campaign starts",
    ):
        assert expected in confirm["text"]["text"]
    assert buttons[ACTION_REJECT]["style"] == "danger"
    assert "confirm" not in buttons[ACTION_REJECT]  # it opens the reason modal instead
    assert buttons[ACTION_WITHDRAW]["confirm"]["confirm"]["text"] == "Withdraw"
    for button in buttons.values():
        assert parse_action_value(button["value"]) == (12, HASH)


def test_approval_card_confirm_fits_with_long_values() -> None:
    long = make_campaign(firmware_to="F" * 500, account="9" * 500, device_count=100_000)
    confirm = actions_of(card(campaign=long, sandbox=True))[ACTION_APPROVE]["confirm"]
    assert len(confirm["text"]["text"]) <= 300
    assert "100,000 devices" in confirm["text"]["text"]
    assert confirm["text"]["text"].startswith("SANDBOX")


def test_approval_card_for_100000_devices() -> None:
    msg = card(campaign=make_campaign(device_count=100_000), devices_sample=MANY_IMEIS)
    text = all_text(msg)
    assert "*Devices:* 100,000: " in text
    assert all(f"`{imei}`" in text for imei in MANY_IMEIS[:10])
    assert MANY_IMEIS[10] not in text
    assert "and 99,990 more" in text


def test_approval_card_sample_without_more() -> None:
    text = all_text(card())
    assert "*Devices:* 3: `351756051523999`, `490154203237518`, `356938035643809`" in text
    assert "more" not in text.split("*Devices:*")[1].split("\n")[0]


def test_approval_card_makes_room_for_preflight_but_not_more() -> None:
    finding = {
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": ":warning: 2 devices not eligible"}],
    }
    msg = card(preflight_blocks=[finding])
    assert finding in msg["blocks"]
    assert msg["blocks"].index(finding) < [b["type"] for b in msg["blocks"]].index("actions")
    msg = card(preflight_blocks=[finding] * 80, campaign=make_campaign(notes=("n",)), sandbox=True)
    assert len(msg["blocks"]) == 50
    assert msg["blocks"][-2]["type"] == "actions"  # the buttons are never pushed out


def test_approval_card_notes_are_shown_escaped() -> None:
    text = all_text(card(campaign=make_campaign(notes=("2 duplicate IMEIs dropped", "a <b> & c"))))
    assert ":information_source: 2 duplicate IMEIs dropped" in text
    assert "a &lt;b&gt; &amp; c" in text


def test_hostile_names_are_escaped_on_the_card() -> None:
    text = all_text(card(campaign=hostile_campaign()))
    assert "&lt;script&gt;&amp;&lt;/script&gt; &lt;!channel&gt; &lt;@U999&gt; [FB-12]" in text
    assert "`a&lt;b` → `c&gt;d&amp;e`" in text


# --- action values ------------------------------------------------------------------------------


def test_action_value_round_trip() -> None:
    value = action_value(12, HASH)
    assert json.loads(value) == {"campaign_id": 12, "hash": HASH}
    assert parse_action_value(value) == (12, HASH)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "[]",
        "null",
        "12",
        '{"campaign_id": 12}',
        '{"hash": "abc"}',
        '{"campaign_id": "12", "hash": "abc"}',
        '{"campaign_id": true, "hash": "abc"}',
        '{"campaign_id": 0, "hash": "abc"}',
        '{"campaign_id": -3, "hash": "abc"}',
        '{"campaign_id": 1.5, "hash": "abc"}',
        '{"campaign_id": 12, "hash": ""}',
        '{"campaign_id": 12, "hash": 5}',
        '{"campaign_id": 12, "hash": "ab cd"}',
        '{"campaign_id": 12, "hash": "abc", "extra": 1}',
        json.dumps({"campaign_id": 12, "hash": "a" * 3000}),
    ],
)
def test_parse_action_value_refuses_garbage(value: str) -> None:
    with pytest.raises(ValueError):
        parse_action_value(value)


def test_parse_action_value_refuses_non_strings() -> None:
    with pytest.raises(ValueError):
        parse_action_value(None)  # type: ignore[arg-type]


def test_action_value_refuses_a_hash_it_cannot_carry_whole() -> None:
    with pytest.raises(ValueError):
        action_value(12, "a" * 3000)


# --- decided card -------------------------------------------------------------------------------


def decided(outcome: str, decisions: list[Decision], **kwargs: Any) -> dict[str, Any]:
    campaign = kwargs.pop("campaign", make_campaign())
    msg = decided_card(
        campaign,
        decisions=decisions,
        outcome=outcome,
        devices_sample=["351756051523999"],
        sandbox=False,
        **kwargs,
    )
    check_message(msg)
    assert not [b for b in msg["blocks"] if b["type"] == "actions"]
    assert "Ref FB-12" in all_text(msg)
    return msg


def stamp(msg: dict[str, Any]) -> str:
    return str(msg["blocks"][-2]["text"]["text"])


def test_slack_date_token() -> None:
    at = dt.datetime(2030, 1, 1, 13, 5, tzinfo=UTC)
    unix = int(at.timestamp())
    assert slack_date(at) == f"<!date^{unix}^{{date_short_pretty}} {{time}}|2030-01-01 13:05 UTC>"
    assert slack_date(at.replace(tzinfo=None)) == slack_date(at)  # stored times are UTC
    assert slack_date(at.astimezone(dt.timezone(dt.timedelta(hours=2)))) == slack_date(at)


def test_decided_card_approved_stamp() -> None:
    at = T0 + dt.timedelta(hours=1)
    msg = decided("approved", [approve("U2", at=at), approve("U3", at=at)])
    assert stamp(msg) == (
        f":white_check_mark: *Approved* by <@U2> ({slack_date(at)}), <@U3> ({slack_date(at)})\n"
        ":outbox_tray: Being sent to ThingSpace…"
    )
    submitting = stamp(
        decided(S.SUBMITTING, [approve("U2")], campaign=make_campaign(state=S.SUBMITTING))
    )
    assert submitting.startswith(":white_check_mark: *Approved* by <@U2>")
    assert "Being sent to ThingSpace" in submitting
    assert "card" not in msg and "Outcome: approved" in msg["text"]
    # The request itself stays on the card.
    assert "`SR1.2.0.0-ENG` → `SR1.2.0.1-ENG`" in all_text(msg)


def test_decided_card_rejected_stamp_with_reason() -> None:
    msg = decided("rejected", [approve("U2"), reject("U3", "Wrong firmware <b>\nsecond line")])
    text = stamp(msg)
    assert text.startswith(f":no_entry: *Rejected* by <@U3> · {slack_date(T0)}")
    assert ">Wrong firmware &lt;b&gt;\n>second line" in text
    assert "Approved before that by <@U2>" in text
    # The verb form and the state itself work as outcomes too.
    assert stamp(decided("reject", [reject("U3", None)])).startswith(
        ":no_entry: *Rejected* by <@U3>"
    )
    assert stamp(decided(S.REJECTED, [], by_user="U9")).startswith(":no_entry: *Rejected* by <@U9>")


def test_decided_card_withdrawn_expired_cancelled() -> None:
    assert stamp(decided("withdrawn", [], decided_at=T0)) == (
        f":leftwards_arrow_with_hook: *Withdrawn* by <@U1> · {slack_date(T0)}"
    )
    expired = stamp(decided("expired", [approve("U2")]))
    assert expired.startswith(f":alarm_clock: *Expired* {slack_date(make_campaign().expires_at)}")
    assert "(1 approval recorded: <@U2>)" in expired
    assert "Nothing was sent to ThingSpace" in expired
    assert stamp(decided("cancelled", [], by_user="U4")) == ":no_entry_sign: *Cancelled* by <@U4>"
    assert "CampaignAborted" not in stamp(decided("CampaignAborted", []))
    assert stamp(decided("CampaignAborted", [])) == ":octagonal_sign: Aborted"


def test_decided_card_submit_failed_shows_thingspace_words() -> None:
    failed = make_campaign(
        state=S.SUBMIT_FAILED,
        error_code="INVALID_PARAMETER",
        error_message="Invalid device id format <x>",
    )
    text = stamp(decided("submit_failed", [approve("U2")], campaign=failed))
    assert text.startswith(":white_check_mark: *Approved* by <@U2>")
    assert (
        ":x: *ThingSpace refused the campaign:* `INVALID_PARAMETER`: Invalid device id format &lt;x&gt;"
        in text
    )
    late = make_campaign(
        state=S.SUBMIT_FAILED, error_code=START_DATE_PASSED, error_message="The start date passed."
    )
    assert ":x: *Not scheduled:* The start date passed." in stamp(
        decided("submit_failed", [], campaign=late)
    )


# --- progress bar -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "width", "expected"),
    [
        ({}, 20, "░" * 20 + " 0% done\nno device reports yet"),
        ({"pending": 0, "failed": 0}, 10, "░" * 10 + " 0% done\nno device reports yet"),
        ({"succeeded": 6, "pending": 4}, 10, "▓▓▓▓▓▓░░░░ 60% succeeded\npending 4 · succeeded 6"),
        (
            {"succeeded": 2, "failed": 1},
            20,
            "▓" * 13 + "▒" * 7 + " 66% succeeded · 33% failed\nsucceeded 2 · failed 1",
        ),
        ({"succeeded": 2, "pending": 1}, 20, "▓" * 13 + "░" * 7 + " 66% succeeded\npending 1 · succeeded 2"),
        (
            {"succeeded": 999, "in progress": 1},
            20,
            "▓" * 19 + "░" + " 99% succeeded\nin progress 1 · succeeded 999",
        ),
        ({"succeeded": 1, "pending": 999}, 20, "░" * 20 + " 0% succeeded\npending 999 · succeeded 1"),
        ({"failed": 3, "pending": 0}, 4, "▒▒▒▒ 0% succeeded · 100% failed\nfailed 3"),
        (
            {"other": 1, "failed": 1, "succeeded": 1, "in progress": 1, "pending": 1},
            5,
            "▓▒░░░ 20% succeeded · 20% failed\npending 1 · in progress 1 · succeeded 1 · failed 1 · other 1",
        ),
        (
            {"succeeded": 12_345, "pending": 87_655},
            20,
            "▓▓░░░░░░░░░░░░░░░░░░ 12% succeeded\npending 87,655 · succeeded 12,345",
        ),
    ],
)
def test_progress_bar(counts: dict[str, int], width: int, expected: str) -> None:
    assert progress_bar(counts, width) == expected


def test_progress_bar_unknown_buckets_count_as_other_or_their_bucket() -> None:
    # Raw ThingSpace statuses land in their bucket; unknown names in `other`, never dropped.
    counts = {"UpgradeSuccess": 1, "Mystery": 2, "in progress": 1, "DeviceRejected": 1}
    assert (
        progress_bar(counts, 10)
        == "▓▓▒▒░░░░░░ 20% succeeded · 20% failed\nin progress 1 · succeeded 1 · failed 1 · other 2"
    )


def test_progress_bar_never_goes_past_100_or_below_0() -> None:
    assert progress_bar({"succeeded": 5, "pending": -3}).endswith("100% succeeded\nsucceeded 5")
    for done in range(0, 101):
        for failed in (0, 100 - done):
            counts = {"succeeded": done, "failed": failed, "pending": 100 - done - failed}
            bar, line = progress_bar(counts, 7).split("\n")
            assert len(bar.split(" ")[0]) == 7
            shares = [int(w.rstrip("%")) for w in bar.split(" ")[1:] if w.endswith("%")]
            assert all(0 <= share <= 100 for share in shares) and sum(shares) <= 100


def test_a_finished_campaign_with_failures_never_reads_100_percent() -> None:
    bar = progress_bar({"succeeded": 1674, "failed": 326}).split("\n")[0]
    assert "100%" not in bar and "83% succeeded · 16% failed" in bar
    assert bar.count("▓") == 16 and bar.count("▒") == 4 and "░" not in bar


def test_progress_bar_labels_are_the_spec_words() -> None:
    line = progress_bar(dict.fromkeys(DEVICE_BUCKETS, 1)).split("\n")[1]
    assert line == "pending 1 · in progress 1 · succeeded 1 · failed 1 · other 1"


def test_progress_bar_width_must_be_positive() -> None:
    with pytest.raises(ValueError):
        progress_bar({}, 0)


# --- campaign card ------------------------------------------------------------------------------


def test_every_state_has_human_words_and_an_emoji() -> None:
    assert set(STATE_LABELS) == set(CampaignState)
    for state in CampaignState:
        emoji, words = STATE_LABELS[state]
        assert emoji.startswith(":") and emoji.endswith(":") and words
        assert state.value not in words


@pytest.mark.parametrize("state", list(CampaignState))
def test_campaign_card_in_every_state(state: CampaignState) -> None:
    msg = campaign_card(
        make_campaign(state=state), counts={}, last_update=None, sandbox=False, decisions=[]
    )
    check_message(msg)
    assert state_label(state) in all_text(msg)
    assert "No device reports yet" in all_text(msg)


def test_campaign_card_content() -> None:
    campaign = make_campaign(
        state=S.SCHEDULED,
        thingspace_id="f9c0e0b7-3c7d-4c0a",
        thingspace_status="CampaignScheduled",
        make="Telit",
        model="ME910C1",
    )
    at = T0 + dt.timedelta(days=2)
    msg = campaign_card(
        campaign,
        counts={"succeeded": 6, "failed": 1, "pending": 3},
        last_update=at,
        sandbox=False,
        decisions=[approve("U2"), approve("U3")],
    )
    check_message(msg)
    text = all_text(msg)
    for expected in (
        "Firmware campaign FB-12",
        "*:arrows_counterclockwise: Scheduled",
        "`f9c0e0b7-3c7d-4c0a`",
        "`Telit` / `ME910C1`",
        "▓" * 12 + "▒" * 2 + "░" * 6 + " 60% succeeded · 10% failed\npending 3 · succeeded 6 · failed 1",
        "*succeeded*\n6 · 60%",
        "*failed*\n1 · 10%",
        "*other*\n0 · 0%",
        f"Last update {slack_date(at)}",
        "Approved by <@U2>, <@U3>",
        "Ref FB-12",
    ):
        assert expected in text, expected
    assert "ThingSpace status" not in text  # same as the state: not repeated
    assert (
        msg["text"]
        == "Ref FB-12: Scheduled: devices upgrade in the campaign's dates and windows. 6 succeeded (60%), 1 failed (10%) of 10."
    )


def test_campaign_card_shows_an_unknown_thingspace_status() -> None:
    campaign = make_campaign(state=S.SUBMITTED, thingspace_status="CampaignSomethingNew")
    text = all_text(
        campaign_card(campaign, counts={}, last_update=None, sandbox=True, decisions=[])
    )
    assert "ThingSpace status `CampaignSomethingNew`" in text
    assert SANDBOX_BANNER in text
    assert "not assigned yet" in text and "not known yet" in text


# --- thread replies -----------------------------------------------------------------------------


def test_approved_and_approval_recorded_replies() -> None:
    text = all_text(approved_reply(make_campaign(), [approve("U2"), approve("U3"), approve("U1")]))
    assert "Ref FB-12 approved by <@U2>, <@U3>" in text
    assert "<@U1>" not in text
    text = all_text(approval_recorded_reply(make_campaign(), [approve("U2")], 2))
    assert "<@U2> approved Ref FB-12: 1 of 2 approvals" in text


def test_submitted_reply() -> None:
    campaign = make_campaign(
        state=S.SUBMITTED,
        thingspace_id="abc-123",
        thingspace_status="CampaignRequestPending",
        make="Telit",
        model="ME910",
    )
    text = all_text(submitted_reply(campaign))
    for expected in ("Ref FB-12", "`abc-123`", "`CampaignRequestPending`", "`Telit`", "`ME910`"):
        assert expected in text


def test_submit_failed_reply_word_for_word() -> None:
    campaign = make_campaign(
        state=S.SUBMIT_FAILED,
        error_code="INVALID_PARAMETER",
        error_message="Invalid device id format",
    )
    msg = submit_failed_reply(campaign)
    assert (
        "ThingSpace refused Ref FB-12: `INVALID_PARAMETER`: Invalid device id format"
        in all_text(msg)
    )
    hostile = submit_failed_reply(hostile_campaign(state=S.SUBMIT_FAILED))
    assert "&lt;INVALID&amp;&gt;" in all_text(hostile)
    assert escape(HOSTILE) in all_text(hostile)


def test_submit_failed_reply_for_a_start_date_that_passed_asks_to_request_again() -> None:
    message_text = "The start date 2030-01-02 passed before the campaign could be sent."
    campaign = make_campaign(
        state=S.SUBMIT_FAILED, error_code=START_DATE_PASSED, error_message=message_text
    )
    text = all_text(submit_failed_reply(campaign))
    assert f"Ref FB-12 was not scheduled: {message_text}" in text
    assert "ThingSpace refused" not in text
    assert "<@U1>, please request it again" in text
    dm = all_text(dm_submit_failed(campaign, None))
    assert message_text in dm and "request it again" in dm


def test_status_change_reply() -> None:
    text = all_text(
        status_change_reply(make_campaign(), "CampaignRequestQueued", "CampaignScheduled")
    )
    assert "Ref FB-12: :arrows_counterclockwise: Scheduled" in text
    assert "`CampaignScheduled` (was `CampaignRequestQueued`)" in text
    text = all_text(status_change_reply(make_campaign(), None, "CampaignQueued"))
    assert "Queued at ThingSpace" in text and "was" not in text
    odd = all_text(status_change_reply(make_campaign(), None, "<Odd>"))
    assert ":grey_question: ThingSpace status `&lt;Odd&gt;`" in odd and "<Odd>" not in odd


def test_failures_reply_lists_reasons_then_more() -> None:
    failures = [("351756051523999", "Device rejected <firmware>"), ("490154203237518", None)]
    text = all_text(failures_reply(make_campaign(), failures, 3))
    assert "Ref FB-12: 5 devices failed to upgrade" in text
    assert "• `351756051523999` — Device rejected &lt;firmware&gt;" in text
    assert "• `490154203237518` — no reason given" in text
    assert "… and 3 more" in text
    assert "/fota devices FB-12 failed" in text


def test_failures_reply_for_1000_failures_stays_within_limits() -> None:
    failures = [(f"{i:015d}", "x" * 5000) for i in range(1000)]
    msg = failures_reply(make_campaign(), failures, 0)
    check_message(msg)
    text = all_text(msg)
    assert "1,000 devices failed" in text
    assert "… and 950 more" in text
    assert f"{49:015d}" in text and f"{50:015d}" not in text


def test_final_summary_reply() -> None:
    campaign = make_campaign(state=S.ENDED, last_callback_at=T0 + dt.timedelta(days=2, hours=3))
    msg = final_summary_reply(campaign, {"succeeded": 97, "failed": 3})
    text = all_text(msg)
    assert ":checkered_flag: *Ended* · Ref FB-12" in text
    assert "*97 of 100 devices upgraded (97%)*, 3 failed (3%)" in text
    assert "Duration 2 d 3 h" in text
    assert msg["text"] == (
        "Ref FB-12 finished: Ended. 97 of 100 devices sent upgraded, 3 failed; "
        "0 excluded at approval."
    )
    assert "*Excluded at approval:* none" in text and "*Sent:* 100 devices" in text
    perfect = all_text(final_summary_reply(campaign, {"succeeded": 4}, started_at=T0, ended_at=T0))
    assert ":tada: *Ended*" in perfect and "Duration under a minute" in perfect
    unfinished = all_text(final_summary_reply(make_campaign(state=S.ABORTED), {}))
    assert ":octagonal_sign: *Aborted*" in unfinished and "Duration" not in unfinished


def test_the_final_summary_says_what_was_excluded_sent_succeeded_and_failed_by_reason() -> None:
    campaign = make_campaign(state=S.ENDED, last_callback_at=T0 + dt.timedelta(hours=3))
    counts = {"succeeded": 1674, "failed": 326}
    reasons = [("Device did not respond", 200), ("Firmware download failed", 100), ("", 26)]
    msg = final_summary_reply(
        campaign,
        counts,
        left_out=148,
        left_out_reasons={"wrong_model": 100, "unknown": 48, "wrong_firmware": 100},
        included_by_override=12,
        override_by="U7",
        failure_reasons=reasons,
    )
    check_message(msg)
    text = all_text(msg)
    assert "*1,674 of 2,000 devices upgraded (83%)*, 326 failed (16%)" in text
    assert "83% succeeded · 16% failed" in text and "100%" not in text
    assert (
        "*Excluded at approval, never sent:* 148 devices (100 not on the from version, "
        "100 of another make or model, 48 not in the account; a device can have several reasons)"
        in text
    )
    single = all_text(final_summary_reply(campaign, counts, left_out=48, left_out_reasons={"unknown": 48}))
    assert "(48 not in the account)" in single and "several reasons" not in single
    assert "*Sent by override:* 12 devices pre-flight excluded were included by <@U7>" in text
    assert "*Sent:* 2,000 devices · *succeeded* 1,674 · *failed* 326" in text
    assert "• Device did not respond: 200\n• Firmware download failed: 100\n• no reason given: 26" in text
    # The requester's direct message leads with the very same sentence as the thread.
    assert final_headline(campaign, counts) in all_text(dm_finished(campaign, counts, None))
    assert final_headline(campaign, counts) in text
    many = [(f"reason {i:02d}", 1) for i in range(14)]
    text = all_text(final_summary_reply(campaign, {"failed": 14}, failure_reasons=many))
    assert "reason 09: 1" in text and "reason 10" not in text and "other reasons: 4" in text


def test_format_duration() -> None:
    assert format_duration(dt.timedelta(seconds=30)) == "under a minute"
    assert format_duration(dt.timedelta(minutes=45)) == "45 min"
    assert format_duration(dt.timedelta(hours=3)) == "3 h"
    assert format_duration(dt.timedelta(hours=3, minutes=12)) == "3 h 12 min"
    assert format_duration(dt.timedelta(days=1)) == "1 d"
    assert format_duration(dt.timedelta(seconds=-5)) == "under a minute"


def test_reminder_expired_rejected_withdrawn_cancelled_replies() -> None:
    campaign = make_campaign()
    text = all_text(
        reminder_reply(
            campaign, campaign.expires_at, decisions=[approve("U2")], required_approvals=2
        )
    )
    assert (
        "Ref FB-12 is still waiting for approval (1 of 2 approvals so far)." in text
        and f"It expires {slack_date(campaign.expires_at)}" in text
    )
    assert "(1 of" not in all_text(reminder_reply(campaign, campaign.expires_at))
    assert "Ref FB-12 expired" in all_text(expired_reply(campaign))
    text = all_text(rejected_reply(campaign, "U3", "Wrong <b> build"))
    assert "<@U3> rejected Ref FB-12." in text and ">Wrong &lt;b&gt; build" in text
    assert ">" not in all_text(rejected_reply(campaign, "U3", None)).replace("<@U3>", "")
    assert "<@U1> withdrew Ref FB-12" in all_text(withdrawn_reply(campaign))
    text = all_text(cancelled_reply(make_campaign(thingspace_id="abc"), "U4"))
    assert "<@U4> cancelled Ref FB-12 (ThingSpace campaign `abc`)" in text


def test_the_reminder_names_the_approvers_who_have_not_decided() -> None:
    campaign = make_campaign()  # requested by U1
    reminder = reminder_reply(
        campaign,
        campaign.expires_at,
        decisions=[approve("U2"), approve("U5", content_hash="0" * 64)],
        required_approvals=2,
        approvers=["U1", "U2", "U3", "S0OPS", "U5"],
    )
    check_blocks(reminder["blocks"])
    text = all_text(reminder)
    # U2 approved what the card shows; U5's approval was of other content, so U5 is asked again;
    # the requester cannot decide; a user group is mentioned whole.
    assert "Waiting on <@U3>, <@U5>, <!subteam^S0OPS>." in text
    assert "<@U1>" not in text and "<@U2>" not in text
    anyone = all_text(reminder_reply(campaign, campaign.expires_at))
    assert "FOTA_APPROVERS is not set" in anyone


def test_cancel_refused_reply_word_for_word() -> None:
    text = all_text(
        cancel_refused_reply(
            make_campaign(), "CAMPAIGN_STARTED", "Campaign already started & running"
        )
    )
    assert (
        "ThingSpace refused to cancel Ref FB-12: `CAMPAIGN_STARTED`: Campaign already started &amp; running"
        in text
    )
    assert "The campaign goes on." in text
    assert "refused to cancel Ref FB-12: no error message given" in all_text(
        cancel_refused_reply(make_campaign(), None, None)
    )


# --- direct messages and confirmations ----------------------------------------------------------


def test_direct_messages_link_to_the_thread() -> None:
    campaign = make_campaign(
        state=S.SUBMIT_FAILED,
        error_code="INVALID_PARAMETER",
        error_message="Invalid device id format",
    )
    link = "<https://example.slack.com/archives/C123/p1700000000000100?thread_ts=1.2&amp;cid=C123|View the thread>"
    cases = {
        "approved": (
            dm_approved(campaign, [approve("U2")], PERMALINK),
            "Ref FB-12 was approved by <@U2>",
        ),
        "submitted": (
            dm_submitted(make_campaign(thingspace_id="abc"), PERMALINK),
            "Ref FB-12 was submitted",
        ),
        "failed": (
            dm_submit_failed(campaign, PERMALINK),
            "Ref FB-12 failed: `INVALID_PARAMETER`: Invalid device id format",
        ),
        "rejected": (
            dm_rejected(campaign, "U3", "Not now", PERMALINK),
            "Ref FB-12 was rejected by <@U3>:\n>Not now",
        ),
        "expired": (dm_expired(campaign, PERMALINK), "Ref FB-12 expired"),
        "cancelled": (dm_cancelled(campaign, "U4", PERMALINK), "Ref FB-12 was cancelled by <@U4>"),
        "finished": (
            dm_finished(make_campaign(state=S.ENDED), {"succeeded": 3}, PERMALINK),
            "*3 of 3 devices upgraded (100%)*",
        ),
    }
    for kind, (msg, expected) in cases.items():
        check_message(msg)
        text = all_text(msg)
        assert expected in text, kind
        assert link in text, kind
    without = all_text(dm_expired(campaign, None))
    assert "View the thread" not in without and "<http" not in without


def test_requester_dm_dispatches_every_event() -> None:
    failed = make_campaign(state=S.SUBMIT_FAILED, error_code="E1", error_message="bad")
    expected = {
        "approved": "Ref FB-12 was approved. It is on its way",
        "submitted": "Ref FB-12 was submitted",
        "submit_failed": "Ref FB-12 failed: `E1`: bad",
        "rejected": "Ref FB-12 was rejected by <@U3>:\n>too early",
        "expired": "Ref FB-12 expired",
        "cancelled": "Ref FB-12 was cancelled by <@U3>.",
        "finished": "Ref FB-12 has finished.",
    }
    for event, text in expected.items():
        msg = requester_dm(failed, event, permalink=PERMALINK, by="U3", reason="too early")
        check_message(msg)
        assert text in all_text(msg), event
        assert "|View the thread>" in all_text(msg), event
    # What the events carry when they have more to say.
    assert "approved by <@U2>" in all_text(
        requester_dm(failed, "approved", decisions=[approve("U2")])
    )
    assert "*3 of 4 devices upgraded (75%)*, 1 failed (25%)" in all_text(
        requester_dm(failed, "finished", counts={"succeeded": 3, "failed": 1})
    )
    assert "was rejected." in all_text(requester_dm(failed, "rejected"))
    with pytest.raises(ValueError):
        requester_dm(failed, "exploded")


def test_submit_delayed_reply() -> None:
    text = all_text(submit_delayed_reply(make_campaign(), "ThingSpace answered 503 <busy>", 90))
    assert "Ref FB-12 is not at ThingSpace yet: ThingSpace answered 503 &lt;busy&gt;." in text
    assert "Trying again in 1 min" in text
    assert "Trying again in 5 s" in all_text(submit_delayed_reply(make_campaign(), "x", 5))


def test_link_cannot_break_out_of_its_control_sequence() -> None:
    text = all_text(dm_expired(make_campaign(), "https://x.test/a|b><!channel>"))
    assert "<!channel>" not in text
    assert "<https://x.test/a%7Cb%3E%3C!channel%3E|View the thread>" in text


def test_request_confirmation() -> None:
    campaign = make_campaign(notes=("2 duplicate IMEIs dropped",), device_count=1_234, sandbox=True)
    msg = request_confirmation(campaign, PERMALINK)
    check_message(msg)
    text = all_text(msg)
    assert (
        "Ref FB-12 posted for approval in <#C123>: "
        "<https://example.slack.com/archives/C123/p1700000000000100?thread_ts=1.2&amp;cid=C123|view the request>"
    ) in text
    assert "1,234 devices" in text and "sandbox" in text
    assert ":information_source: 2 duplicate IMEIs dropped" in text
    plain = all_text(request_confirmation(make_campaign(approval_channel=None), None))
    assert "Ref FB-12 posted for approval." in plain


# --- reject modal -------------------------------------------------------------------------------


def test_reject_reason_modal() -> None:
    modal = reject_reason_modal(12, HASH)
    support_blocks.check_view(modal)
    assert modal["type"] == "modal"
    assert modal["callback_id"] == REJECT_MODAL_CALLBACK_ID
    assert parse_action_value(modal["private_metadata"]) == (12, HASH)
    assert modal["title"]["text"] == "Reject FB-12"
    assert modal["submit"]["text"] == "Reject" and modal["close"]["text"] == "Cancel"
    (field,) = [b for b in modal["blocks"] if b["type"] == "input"]
    assert field["block_id"] == "reason"
    assert field["element"]["action_id"] == "reason"
    assert field["element"]["multiline"] is True
    assert field.get("optional", False) is False
    assert "Ref FB-12" in all_text(modal)


def test_reject_reason_modal_title_fits_for_any_id() -> None:
    modal = reject_reason_modal(10**30, HASH)
    support_blocks.check_view(modal)
    assert len(modal["title"]["text"]) <= 24


# --- error replies ------------------------------------------------------------------------------


def test_error_reply_keeps_bullets_and_escapes() -> None:
    message = "That request has 2 problems:\n• `firmware=<x>`: unknown\n• `start=2020-01-01`: in the past & gone"
    msg = error_reply(message)
    check_message(msg)
    assert msg["blocks"][0]["text"]["text"] == (
        "That request has 2 problems:\n• `firmware=&lt;x&gt;`: unknown\n• `start=2020-01-01`: in the past &amp; gone"
    )
    assert msg["text"].startswith("That request has 2 problems:")


def test_error_reply_for_a_request_error_with_thousands_of_problems() -> None:
    from storage.model import Problem

    error = RequestError(
        [Problem("devices", f"{i:015d}<", "not a valid IMEI") for i in range(5000)]
    )
    msg = error_reply(str(error))
    check_message(msg)
    text = all_text(msg)
    assert text.count("• ") > 100
    assert "more line" in text


def test_error_reply_mentions_only_when_the_bot_wrote_them() -> None:
    text = "Only the requester, <@U1>, may withdraw FB-12 in <#C123>. <!channel> <https://x|y>"
    strict = error_reply(text)["blocks"][0]["text"]["text"]
    assert "<@U1>" not in strict and "&lt;@U1&gt;" in strict
    live = error_reply(text, mentions=True)["blocks"][0]["text"]["text"]
    assert live == (
        "Only the requester, <@U1>, may withdraw FB-12 in <#C123>. &lt;!channel&gt; &lt;https://x|y&gt;"
    )


def test_error_reply_never_empty() -> None:
    check_message(error_reply("  "))


def test_the_package_exports_what_the_listeners_use() -> None:
    for name in ("ACTION_APPROVE", "ACTION_REJECT", "ACTION_WITHDRAW", "REJECT_MODAL_CALLBACK_ID"):
        assert isinstance(getattr(kit, name), str)
    assert (ACTION_APPROVE, ACTION_REJECT, ACTION_WITHDRAW, REJECT_MODAL_CALLBACK_ID) == (
        "fota_approve",
        "fota_reject",
        "fota_withdraw",
        "fota_reject_reason",
    )
    assert all(hasattr(kit, name) for name in kit.__all__)
