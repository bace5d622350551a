"""Slack's Block Kit rules, checked on anything a builder makes: `bot.blockkit`, the checker the
Slack stand-in answers with, plus this project's own stricter rules."""

from __future__ import annotations

from typing import Any

from bot.blockkit import MAX_BLOCKS, MAX_SURFACE_BLOCKS, block_problems, view_problems

# User-supplied text the fixtures plant; none may reach mrkdwn or a fallback text unescaped.
HOSTILE_FRAGMENTS = (
    "<script>", "</script>", "<!channel>", "<@U999>", "a<b", "c>d", "<INVALID", "<id>", "<Weird>", "<make>", "<acc>",
)


def texts(obj: Any, kinds: tuple[str, ...] = ("mrkdwn", "plain_text")) -> list[str]:
    """Every text object's text (of the given kinds), anywhere in a block tree."""
    found: list[str] = []
    if isinstance(obj, dict):
        if obj.get("type") in kinds and isinstance(obj.get("text"), str):
            found.append(obj["text"])
        for value in obj.values():
            found += texts(value, kinds)
    elif isinstance(obj, list):
        for value in obj:
            found += texts(value, kinds)
    return found


def check_blocks(blocks: list[dict[str, Any]], *, max_blocks: int = 50, unique_ids: str = "block") -> None:
    """Slack's rules, by the one checker the Slack stand-in answers with (`bot.blockkit`, which
    also reads each block with slack_sdk's models: nothing unknown, nothing dropped), then this
    project's own stricter ones. `max_blocks`: 50 for a message, 100 for a modal or the Home tab.
    `unique_ids`: action_id unique per block (Slack's rule; the Home tab repeats Approve per
    request) or per "message" (stricter, for cards with one set of buttons)."""
    assert 0 < len(blocks) <= max_blocks
    surface = "message" if max_blocks <= MAX_BLOCKS else "modal"
    problems = block_problems(blocks, surface=surface)
    assert problems == [], problems
    if unique_ids == "message":
        ids = [
            e["action_id"]
            for block in blocks
            if block["type"] == "actions"
            for e in block["elements"]
            if "action_id" in e
        ]
        assert len(ids) == len(set(ids)), "action_id must be unique in a message"
    for text in texts(blocks):
        assert text.strip()


def check_view(view: dict[str, Any], *, expected_type: str = "modal") -> None:
    """A whole modal or Home tab view, by the same checker."""
    problems = view_problems(view, expected_type=expected_type)
    assert problems == [], problems
    check_blocks(view["blocks"], max_blocks=MAX_SURFACE_BLOCKS)


def check_escaped(msg: dict[str, Any]) -> None:
    """No user-supplied control character survives into mrkdwn or the fallback text (Slack
    parses both). plain_text is shown as typed, so it must not be escaped twice."""
    parsed = "\n".join([msg.get("text", ""), *texts(msg["blocks"], ("mrkdwn",))])
    for raw in HOSTILE_FRAGMENTS:
        assert raw not in parsed, raw
    for text in texts(msg["blocks"], ("plain_text",)):
        assert "&amp;" not in text and "&lt;" not in text


def all_text(msg: dict[str, Any]) -> str:
    return "\n".join([msg.get("text", ""), *texts(msg["blocks"])])
