"""Slack's Block Kit limits, checked on anything a builder makes (one checker for every test)."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import Block

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


def check_button(element: dict[str, Any]) -> None:
    assert element["type"] == "button"
    assert 0 < len(element["text"]["text"]) <= 75
    assert len(element["action_id"]) <= 255
    assert len(element.get("value", "")) <= 2000
    if "confirm" in element:
        confirm = element["confirm"]
        assert 0 < len(confirm["title"]["text"]) <= 100
        assert 0 < len(confirm["text"]["text"]) <= 300
        assert 0 < len(confirm["confirm"]["text"]) <= 30
        assert 0 < len(confirm["deny"]["text"]) <= 30


def check_blocks(blocks: list[dict[str, Any]], *, max_blocks: int = 50, unique_ids: str = "block") -> None:
    """Slack's limits. `unique_ids`: action_id unique per block (Slack's rule; the Home tab
    repeats Approve per request) or per "message" (stricter, for cards with one set of buttons)."""
    assert 0 < len(blocks) <= max_blocks
    message_ids: list[str] = []
    for block in blocks:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.validate_json()
        assert parsed.to_dict() == block  # nothing unknown, nothing dropped
        assert len(block.get("block_id", "")) <= 255
        kind = block["type"]
        if kind == "header":
            assert 0 < len(block["text"]["text"]) <= 150
        elif kind == "section":
            assert "text" in block or "fields" in block
            if "text" in block:
                assert 0 < len(block["text"]["text"]) <= 3000
            assert len(block.get("fields", [])) <= 10
            assert all(0 < len(f["text"]) <= 2000 for f in block.get("fields", []))
            if "accessory" in block:
                check_button(block["accessory"])
        elif kind == "context":
            assert 0 < len(block["elements"]) <= 10
            assert all(0 < len(e["text"]) <= 3000 for e in block["elements"])
        elif kind == "actions":
            ids = [e["action_id"] for e in block["elements"]]
            assert len(ids) == len(set(ids)), "action_id must be unique in its block"
            message_ids += ids
            for element in block["elements"]:
                check_button(element)
    if unique_ids == "message":
        assert len(message_ids) == len(set(message_ids)), "action_id must be unique in a message"
    for text in texts(blocks):
        assert text.strip()


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
