"""`/fota history ID` and the *History* button: a campaign's audit trail (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from commands.blocks.kit import (
    MAX_BLOCKS,
    Message,
    context,
    escape,
    header,
    message,
    sections,
    slack_date,
)
from storage.history import HistoryEntry

ACTION_HISTORY = "fota_history"

# Who did it, as Slack shows it: a user mention, or the bot's or ThingSpace's own name.
_SYSTEM_ACTORS = {"fota-bot": "fota-bot", "thingspace": "ThingSpace"}


def actor_label(actor: str) -> str:
    if actor in _SYSTEM_ACTORS:
        return _SYSTEM_ACTORS[actor]
    if actor and actor[0] in "UW" and actor.isalnum():
        return f"<@{actor}>"
    return escape(actor)


def history_line(entry: HistoryEntry) -> str:
    detail = f" · {escape(entry.detail)}" if entry.detail else ""
    return f"{slack_date(entry.at)} · *{escape(entry.what)}* · {actor_label(entry.actor)}{detail}"


def history_reply(ref: str, entries: Sequence[HistoryEntry]) -> Message:
    """The trail, oldest first, packed into sections; a very long one says how much is left out
    (Slack allows 50 blocks a message) and where the whole of it is."""
    top = [header(f"History of Ref {ref}")]
    foot = [context(f"{len(entries)} entries · all of them: `fota-bot history {ref}` on the bot's host")]
    body = sections((history_line(e) for e in entries), max_blocks=MAX_BLOCKS - len(top) - len(foot))
    return message(f"History of Ref {ref}: {len(entries)} entries", [*top, *body, *foot])


def history_value(campaign_id: int) -> str:
    return str(campaign_id)


def parse_history_value(value: object) -> int:
    if not isinstance(value, str) or not value.isdigit() or not 0 < int(value) < 2**53:
        raise ValueError("history button value must be a campaign id")
    return int(value)
