"""Block Kit as terminal text (pure): what `fota-bot demo` prints of each thread."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bot.standins.slack.records import Message


def _plain(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        if isinstance(obj.get("text"), str):
            return str(obj["text"])
        if isinstance(obj.get("text"), dict):
            return _plain(obj["text"])
    return ""


def _rich_text(obj: Any) -> str:
    if isinstance(obj, dict):
        if obj.get("type") == "text":
            return str(obj.get("text", ""))
        if obj.get("type") == "user":
            return f"<@{obj.get('user_id', '')}>"
        if obj.get("type") == "link":
            return str(obj.get("text") or obj.get("url", ""))
        if obj.get("type") == "emoji":
            return f":{obj.get('name', '')}:"
        return "".join(_rich_text(e) for e in obj.get("elements", []))
    if isinstance(obj, list):
        return "".join(_rich_text(e) for e in obj)
    return ""


def _render_element(element: Any) -> str:
    if not isinstance(element, dict):
        return ""
    kind = element.get("type")
    label = _plain(element.get("text")) or _plain(element.get("placeholder"))
    if kind == "button":
        return f"[{label}]"
    if kind == "overflow":
        return "[...]"
    if isinstance(kind, str) and ("select" in kind or kind.endswith("picker")):
        return f"[{label or kind} v]"
    return f"[{label or kind}]"


def render_blocks(blocks: Sequence[Any]) -> list[str]:
    """Block Kit as lines of terminal text: headers, sections, context, buttons as [Label]."""
    lines: list[str] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "header":
            lines.append(f"== {_plain(block.get('text'))} ==")
        elif kind == "section":
            text = _plain(block.get("text"))
            accessory = block.get("accessory")
            if accessory is not None:
                text = f"{text}  {_render_element(accessory)}".strip()
            if text:
                lines.extend(text.splitlines())
            for f in block.get("fields", []) or []:
                lines.extend(f"  {line}" for line in _plain(f).splitlines())
        elif kind == "context":
            parts = [
                str(e.get("alt_text", "")) if e.get("type") == "image" else _plain(e)
                for e in block.get("elements", [])
                if isinstance(e, dict)
            ]
            lines.append("  " + " | ".join(p for p in parts if p))
        elif kind == "actions":
            lines.append(" ".join(_render_element(e) for e in block.get("elements", [])))
        elif kind == "divider":
            lines.append("-" * 40)
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
        elif kind == "input":
            lines.append(f"{_plain(block.get('label'))}: {_render_element(block.get('element'))}")
        elif kind == "rich_text":
            lines.extend(_rich_text(block.get("elements", [])).splitlines())
        elif kind == "markdown":
            lines.extend(str(block.get("text", "")).splitlines())
        else:
            lines.append(f"[{kind}]")
    return lines


def render_message(message: Message) -> list[str]:
    """A message's current state as lines: its blocks (or text), then its files."""
    lines = render_blocks(message.blocks) if message.blocks else message.text.splitlines()
    for f in message.files:
        lines.append(f"[file: {f.get('name')} ({f.get('size', 0)} bytes)]")
    if message.deleted:
        lines = ["(This message was deleted.)"]
    return lines


def render_thread(messages: Sequence[Message]) -> str:
    """A thread (its root first) as terminal text: the root's latest state, then each reply
    indented."""
    root = messages[0]
    edits = len(root.edits)
    head = f"-- {root.channel} {root.ts}" + (f" (edited {edits}x)" if edits else "") + " --"
    lines = [head, *render_message(root)]
    for reply in messages[1:]:
        body = render_message(reply) or [""]
        suffix = f" (edited {len(reply.edits)}x)" if reply.edits else ""
        lines.append(f"  > {body[0]}{suffix}")
        lines.extend(f"    {line}" for line in body[1:])
    return "\n".join(lines)
