"""Small pieces every builder shares: escaping, clipping to Slack's limits, Slack's
formatting tokens (mentions, links, dates) and plain block constructors.

Everything user-supplied that lands in a `mrkdwn` text goes through `escape()`; a campaign or
firmware name such as `<!channel>` must never become a ping or a link. `plain_text` objects are
not parsed by Slack (no mentions, no links), so they carry raw text and are only clipped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

# Slack's Block Kit limits are written once, in bot/blockkit.py beside the checker that holds
# every builder (and the Slack stand-in) to them; the builders import them from here.
from bot.blockkit import (
    MAX_BLOCKS,
    MAX_BUTTON_TEXT,  # noqa: F401 (for the builders)
    MAX_BUTTON_VALUE,  # noqa: F401 (for the builders)
    MAX_CONFIRM_BUTTON,  # noqa: F401 (for the builders)
    MAX_CONFIRM_TEXT,  # noqa: F401 (for the builders)
    MAX_CONFIRM_TITLE,  # noqa: F401 (for the builders)
    MAX_CONTEXT_ELEMENTS,
    MAX_CONTEXT_TEXT,
    MAX_FIELD_TEXT,
    MAX_FIELDS,
    MAX_HEADER_TEXT,
    MAX_ID,
    MAX_MODAL_BUTTON,  # noqa: F401 (for the builders)
    MAX_MODAL_TITLE,  # noqa: F401 (for the builders)
    MAX_PRIVATE_METADATA,  # noqa: F401 (for the builders)
    MAX_SECTION_TEXT,
    MAX_SURFACE_BLOCKS,  # noqa: F401 (for the builders)
)

Block = dict[str, Any]
Message = dict[str, Any]  # {"text": fallback, "blocks": [...]}

# The top-level `text` is the notification / screen-reader fallback. Slack cuts it at 40,000
# characters; nobody reads that much in a notification.
MAX_FALLBACK_TEXT = 3000

ELLIPSIS = "…"


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, with an ellipsis when cut.

    The cut never splits an escape entity (`&amp;`) or a control sequence (`<@U1>`,
    `<!date^…>`, `<url|label>`): a half entity would show as garbage, a half control sequence
    could swallow the rest of the message.
    """
    if len(text) <= limit:
        return text
    if limit <= len(ELLIPSIS):
        return ELLIPSIS[:limit]
    cut = text[: limit - len(ELLIPSIS)]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    lt = cut.rfind("<")
    if lt != -1 and ">" not in cut[lt:]:
        cut = cut[:lt]
    return cut + ELLIPSIS


def code(value: str, limit: int = 200) -> str:
    """An escaped value in an inline code span; plain escaped text when a code span cannot
    hold it (a backtick or a line break would end it early)."""
    value = clip(value, limit)
    if not value or "`" in value or "\n" in value:
        return escape(value)
    return f"`{escape(value)}`"


def quote(text: str) -> str:
    """Escaped text as a mrkdwn block quote, every line marked."""
    return "\n".join(f">{escape(line)}" for line in text.splitlines() or [""])


def user(user_id: str) -> str:
    return f"<@{escape(user_id)}>"


def users(user_ids: Iterable[str]) -> str:
    return ", ".join(user(u) for u in user_ids)


def channel(channel_id: str) -> str:
    return f"<#{escape(channel_id)}>"


def link(url: str, label: str) -> str:
    """A mrkdwn link. `|`, `<` and `>` would end the control sequence early."""
    safe_url = escape(url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E"))
    safe_label = escape(label.replace("|", "/"))
    return f"<{safe_url}|{safe_label}>"


def as_utc(at: dt.datetime) -> dt.datetime:
    """Stored datetimes are UTC; a naive one is taken as UTC, never as local time."""
    if at.tzinfo is None:
        return at.replace(tzinfo=dt.UTC)
    return at.astimezone(dt.UTC)


def slack_date(at: dt.datetime, fmt: str = "{date_short_pretty} {time}") -> str:
    """Slack's date token: each reader sees the time in their own time zone; clients that
    cannot render it show the UTC fallback."""
    at = as_utc(at)
    fallback = at.strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{fmt}|{fallback}>"


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else (words or word + 's')}"


def format_duration(delta: dt.timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return "under a minute"


# --- Blocks ------------------------------------------------------------------------------------


def plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text, limit), "emoji": True}


def mrkdwn(text: str, limit: int = MAX_SECTION_TEXT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip(text, limit)}


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, MAX_HEADER_TEXT)}


def section(text: str, *, fields: Sequence[str] = (), block_id: str | None = None) -> Block:
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if fields:
        block["fields"] = [mrkdwn(f, MAX_FIELD_TEXT) for f in fields[:MAX_FIELDS]]
    if block_id:
        block["block_id"] = block_id[:MAX_ID]
    return block


def fields_section(fields: Sequence[str]) -> Block:
    return {
        "type": "section",
        "fields": [mrkdwn(f, MAX_FIELD_TEXT) for f in fields[:MAX_FIELDS]],
    }


def context(*texts: str) -> Block:
    return {
        "type": "context",
        "elements": [mrkdwn(t, MAX_CONTEXT_TEXT) for t in texts[:MAX_CONTEXT_ELEMENTS]],
    }


def divider() -> Block:
    return {"type": "divider"}


def sections(lines: Iterable[str], *, max_blocks: int) -> list[Block]:
    """Lines packed into as few sections as fit (each ≤ 3,000 characters), at most
    `max_blocks` of them; what does not fit is dropped, the last section saying so."""
    chunks: list[list[str]] = [[]]
    size = 0
    dropped = 0
    for line in lines:
        line = clip(line, MAX_SECTION_TEXT)
        if chunks[-1] and size + 1 + len(line) > MAX_SECTION_TEXT:
            if len(chunks) == max_blocks:
                dropped += 1
                continue
            chunks.append([])
            size = 0
        size += len(line) + (1 if chunks[-1] else 0)
        chunks[-1].append(line)
    if dropped:
        # Make room for the note in the last section.
        note = f"… and {plural(dropped, 'more line')}"
        last = chunks[-1]
        while last and size + 1 + len(note) > MAX_SECTION_TEXT:
            size -= len(last.pop()) + 1
            dropped += 1
            note = f"… and {plural(dropped, 'more line')}"
        last.append(note)
    return [section("\n".join(chunk)) for chunk in chunks if chunk]


def message(fallback: str, blocks: Sequence[Block]) -> Message:
    """A message: the fallback text (notifications, screen readers) and at most 50 blocks."""
    return {"text": clip(fallback, MAX_FALLBACK_TEXT), "blocks": list(blocks[:MAX_BLOCKS])}
