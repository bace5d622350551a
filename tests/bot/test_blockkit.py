"""bot/blockkit.py: the one Block Kit checker (the Slack stand-in's answers, the builders' tests)."""

from __future__ import annotations

from typing import Any

from bot.blockkit import (
    MAX_CONTEXT_TEXT,
    MAX_OPTION_VALUE,
    MAX_OPTIONS,
    block_problems,
    view_problems,
)
from commands.blocks import kit


def _select(n: int, value_length: int = 5) -> dict[str, Any]:
    return {
        "type": "actions",
        "elements": [
            {
                "type": "static_select",
                "action_id": "pick",
                "options": [
                    {"text": {"type": "plain_text", "text": f"o{i}"}, "value": "v" * value_length}
                    for i in range(n)
                ],
            }
        ],
    }


def test_the_builders_clip_to_the_limits_the_checker_holds_them_to() -> None:
    # kit.py clips to the checker's own numbers: text far over every limit comes out valid.
    huge = "x" * 50_000
    blocks = [
        kit.header(huge),
        kit.section(huge, fields=[huge] * 30, block_id=huge),
        kit.context(*[huge] * 30),
        *kit.sections([huge] * 5, max_blocks=3),
    ]
    assert block_problems(blocks) == []
    message = kit.message(huge, [kit.divider()] * 200)
    assert block_problems(message["blocks"]) == []


def test_a_context_element_may_hold_a_whole_text_object() -> None:
    # Slack's text object holds 3,000 characters in a context block too (the stand-in once
    # refused more than 2,000, while the builders clipped at 3,000).
    assert block_problems([kit.context("y" * MAX_CONTEXT_TEXT)]) == []
    too_long = [{"type": "context", "elements": [{"type": "mrkdwn", "text": "y" * 3001}]}]
    assert block_problems(too_long) == [
        "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/elements/0/text]"
    ]


def test_a_field_slack_does_not_know_is_refused() -> None:
    button = {"type": "button", "text": kit.plain("Go", kit.MAX_BUTTON_TEXT), "action_id": "go"}
    misspelt = [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}, "acessory": button}]
    problems = block_problems(misspelt)
    assert problems == ["[ERROR] unknown or malformed field: acessory [json-pointer:/blocks/0]"]
    assert block_problems([kit.section("hi")]) == []


def test_a_static_selects_options_are_checked() -> None:
    assert block_problems([_select(MAX_OPTIONS)]) == []
    assert "must have 1 to 100 items" in block_problems([_select(MAX_OPTIONS + 1)])[0]
    problems = block_problems([_select(1, value_length=MAX_OPTION_VALUE + 1)])
    assert problems == [
        "[ERROR] must be 1 to 150 characters "
        "[json-pointer:/blocks/0/elements/0/options/0/value]"
    ]


def test_views_are_checked_whole() -> None:
    modal = {
        "type": "modal",
        "title": kit.plain("Schedule firmware", kit.MAX_MODAL_TITLE),
        "close": kit.plain("Cancel", kit.MAX_MODAL_BUTTON),
        "private_metadata": "",
        "blocks": [kit.section("hi")],
    }
    assert view_problems(modal, expected_type="modal") == []
    assert view_problems({**modal, "colour": "red"}, expected_type="modal") == [
        "[ERROR] unknown or malformed field: colour [json-pointer:/view]"
    ]
    # Slack publishes a Home tab with nothing on it (slack_sdk's model would refuse it).
    assert view_problems({"type": "home", "blocks": []}, expected_type="home") == []
    long_title = {**modal, "title": {"type": "plain_text", "text": "t" * 25}}
    assert view_problems(long_title, expected_type="modal") == [
        "[ERROR] must be less than 25 characters [json-pointer:/view/title/text]"
    ]
