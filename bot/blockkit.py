"""Block Kit's rules as Slack enforces them, checked on plain JSON (pure, no I/O).

Slack refuses blocks that break these with ``invalid_blocks`` (messages) or
``invalid_arguments`` (views). The Slack stand-in answers with these problems as Slack would,
and the block builders' tests run the same checks, so a builder bug is caught before Slack
sees it. Sources: the Block Kit reference on docs.slack.dev (blocks, elements, composition
objects, views).
"""

from __future__ import annotations

from typing import Any

MAX_MESSAGE_BLOCKS = 50  # Block Kit: 50 blocks in a message
MAX_SURFACE_BLOCKS = 100  # 100 in a modal or a Home tab

_BLOCK_TYPES = frozenset(
    {
        "actions",
        "context",
        "context_actions",
        "divider",
        "file",
        "header",
        "image",
        "input",
        "markdown",
        "rich_text",
        "section",
        "table",
        "video",
    }
)




def _problem(message: str, pointer: str) -> str:
    # The shape of Slack's own messages in response_metadata.messages.
    return f"[ERROR] {message} [json-pointer:{pointer}]"


def _text_problems(obj: Any, pointer: str, *, max_len: int, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict):
        return [_problem("must be a text object", pointer)]
    kind = obj.get("type")
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if kind not in allowed:
        return [_problem(f"type must be one of {', '.join(allowed)}", f"{pointer}/type")]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [_problem("must be more than 0 characters", f"{pointer}/text")]
    if len(text) > max_len:
        return [_problem(f"must be less than {max_len + 1} characters", f"{pointer}/text")]
    return []


def _confirm_problems(confirm: Any, pointer: str) -> list[str]:
    if not isinstance(confirm, dict):
        return [_problem("must be a confirmation dialog object", pointer)]
    problems = _text_problems(
        confirm.get("title"), f"{pointer}/title", max_len=100, plain_only=True
    )
    problems += _text_problems(confirm.get("text"), f"{pointer}/text", max_len=300)
    problems += _text_problems(
        confirm.get("confirm"), f"{pointer}/confirm", max_len=30, plain_only=True
    )
    problems += _text_problems(confirm.get("deny"), f"{pointer}/deny", max_len=30, plain_only=True)
    return problems


def _element_problems(element: Any, pointer: str) -> list[str]:
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        return [_problem("missing required field: type", pointer)]
    problems: list[str] = []
    action_id = element.get("action_id")
    if action_id is not None and (not isinstance(action_id, str) or len(action_id) > 255):
        problems.append(_problem("must be less than 256 characters", f"{pointer}/action_id"))
    if element["type"] == "button":
        problems += _text_problems(
            element.get("text"), f"{pointer}/text", max_len=75, plain_only=True
        )
        value = element.get("value")
        if value is not None and (not isinstance(value, str) or len(value) > 2000):
            problems.append(_problem("must be less than 2001 characters", f"{pointer}/value"))
        url = element.get("url")
        if url is not None and (not isinstance(url, str) or len(url) > 3000):
            problems.append(_problem("must be less than 3001 characters", f"{pointer}/url"))
        style = element.get("style")
        if style is not None and style not in ("primary", "danger"):
            problems.append(_problem("must be one of primary, danger", f"{pointer}/style"))
    if "confirm" in element:
        problems += _confirm_problems(element["confirm"], f"{pointer}/confirm")
    return problems


def block_problems(blocks: Any, *, surface: str = "message") -> list[str]:
    """Problems Slack would report for `blocks` on `surface` ("message", "modal", "home")."""
    if blocks is None:
        return []
    if not isinstance(blocks, list):
        return [_problem("must be an array", "/blocks")]
    limit = MAX_MESSAGE_BLOCKS if surface == "message" else MAX_SURFACE_BLOCKS
    problems: list[str] = []
    if len(blocks) > limit:
        problems.append(_problem(f"must be less than {limit + 1} items", "/blocks"))
    seen_block_ids: set[str] = set()
    for i, block in enumerate(blocks):
        ptr = f"/blocks/{i}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            problems.append(_problem("missing required field: type", ptr))
            continue
        kind = block["type"]
        if kind not in _BLOCK_TYPES:
            problems.append(_problem(f"unsupported type: {kind}", f"{ptr}/type"))
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or len(block_id) > 255:
                problems.append(_problem("must be less than 256 characters", f"{ptr}/block_id"))
            elif block_id in seen_block_ids:
                problems.append(_problem("duplicate block_id", f"{ptr}/block_id"))
            else:
                seen_block_ids.add(block_id)
        if kind == "header":
            problems += _text_problems(
                block.get("text"), f"{ptr}/text", max_len=150, plain_only=True
            )
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(_problem("must provide text or fields", ptr))
            if "text" in block:
                problems += _text_problems(block["text"], f"{ptr}/text", max_len=3000)
            fields = block.get("fields")
            if fields is not None:
                if not isinstance(fields, list) or not 0 < len(fields) <= 10:
                    problems.append(_problem("must have 1 to 10 items", f"{ptr}/fields"))
                else:
                    for j, f in enumerate(fields):
                        problems += _text_problems(f, f"{ptr}/fields/{j}", max_len=2000)
            if "accessory" in block:
                problems += _element_problems(block["accessory"], f"{ptr}/accessory")
        elif kind in ("context", "actions"):
            elements = block.get("elements")
            most = 10 if kind == "context" else 25
            if not isinstance(elements, list) or not 0 < len(elements) <= most:
                problems.append(_problem(f"must have 1 to {most} items", f"{ptr}/elements"))
                continue
            action_ids: set[str] = set()
            for j, element in enumerate(elements):
                eptr = f"{ptr}/elements/{j}"
                if kind == "context":
                    if isinstance(element, dict) and element.get("type") == "image":
                        continue
                    problems += _text_problems(element, eptr, max_len=2000)
                    continue
                problems += _element_problems(element, eptr)
                aid = element.get("action_id") if isinstance(element, dict) else None
                if isinstance(aid, str):
                    if aid in action_ids:
                        problems.append(_problem("duplicate action_id", f"{eptr}/action_id"))
                    action_ids.add(aid)
        elif kind == "image":
            alt = block.get("alt_text")
            if not isinstance(alt, str) or not 0 < len(alt) <= 2000:
                problems.append(_problem("must be 1 to 2000 characters", f"{ptr}/alt_text"))
            if "image_url" not in block and "slack_file" not in block:
                problems.append(_problem("must provide image_url or slack_file", ptr))
        elif kind == "input":
            problems += _text_problems(
                block.get("label"), f"{ptr}/label", max_len=2000, plain_only=True
            )
            problems += _element_problems(block.get("element"), f"{ptr}/element")
            if "hint" in block:
                problems += _text_problems(
                    block["hint"], f"{ptr}/hint", max_len=2000, plain_only=True
                )
    return problems


def view_problems(view: Any, *, expected_type: str) -> list[str]:
    """Problems Slack would report for a modal or Home tab view."""
    if not isinstance(view, dict):
        return [_problem("must be a view object", "/view")]
    problems: list[str] = []
    if view.get("type") != expected_type:
        problems.append(_problem(f"type must be {expected_type}", "/view/type"))
    if expected_type == "modal":
        problems += _text_problems(view.get("title"), "/view/title", max_len=24, plain_only=True)
        for key in ("submit", "close"):
            if key in view:
                problems += _text_problems(view[key], f"/view/{key}", max_len=24, plain_only=True)
        blocks = view.get("blocks")
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks
        )
        if has_input and "submit" not in view:
            # Slack: "submit ... is required when an input block is within the blocks array".
            problems.append(_problem("submit is required when blocks contain an input", "/view"))
    for key, most in (("private_metadata", 3000), ("callback_id", 255), ("external_id", 255)):
        value = view.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > most):
            problems.append(_problem(f"must be less than {most + 1} characters", f"/view/{key}"))
    if not isinstance(view.get("blocks"), list):
        problems.append(_problem("missing required field: blocks", "/view/blocks"))
    else:
        surface = "home" if expected_type == "home" else "modal"
        problems += [
            p.replace("[json-pointer:/blocks", "[json-pointer:/view/blocks")
            for p in block_problems(view["blocks"], surface=surface)
        ]
    return problems
