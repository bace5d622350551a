"""What the notifier writes into the outbox, and what the sender asks of a renderer.

An outbox row is an event: its `OutboxKind` says how it reaches Slack (the card, a thread
reply, a direct message, a file, the requester's confirmation), and a thread reply or a
direct message names its `Event` and the facts that must read as they were when it
happened (`{"event": …, "facts": {…}}`). Everything else is read from the database when
the row is sent, by a `Renderer` that `bot/app.py` hands to the sender: the Block Kit is
built in one place, and `bot/` never imports it.

Rows queued before events existed carry their message already built (`{"message": …}`);
the sender sends those as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from storage.model import Campaign

Message = dict[str, Any]  # {"text": fallback, "blocks": [...]}, as chat.postMessage takes it
Facts = Mapping[str, Any]  # JSON: what was true when the event happened


class OutboxKind(StrEnum):
    """How a row reaches Slack; the outbox's `kind` column (its lanes are built on it)."""

    ROOT = "root"  # the approval card, posted once: the thread's root
    ROOT_UPDATE = "root_update"  # the card edited to what the records say now (coalesced)
    CONFIRM = "confirm"  # "posted for approval", through the requester's response_url
    REPLY = "reply"  # a thread reply about one event
    FAILURES = "failures"  # the failed devices not yet told (batched, coalesced)
    SUMMARY = "summary"  # the final summary of a campaign
    UPLOAD = "upload"  # a CSV into the thread
    DM = "dm"  # a direct message about one event


class Event(StrEnum):
    """What happened. Its facts (what `ThreadNotifier` stores) are listed beside it, `then:`
    the campaign's fields as they were (`facts["then"]`); all else is read at send time. The
    values are the strings direct-message rows were written with before."""

    # the request
    APPROVED = "approved"  # — (the approvals of an approved content hash are closed)
    REJECTED = "rejected"  # by, reason
    WITHDRAWN = "withdrawn"  # by
    EXPIRED = "expired"  # —
    REMINDER = "reminder"  # — (who still has to decide is who has not decided now)
    NARROWED = "narrowed"  # by, kept, dropped, superseded; then: content_hash, device_count
    OVERRIDDEN = "overridden"  # by, included, done, reason, superseded; then: content_hash, device_count
    # ThingSpace
    SUBMITTED = "submitted"  # then: thingspace_status (ThingSpace's answer to the schedule call)
    SUBMIT_FAILED = "submit_failed"  # then: error_code, error_message
    SUBMIT_DELAYED = "submit_delayed"  # reason, retry_in
    STATUS_CHANGED = "status_changed"  # old, new
    FINISHED = "finished"  # — (the direct message counts the devices as they end up)
    CANCELLED = "cancelled"  # by
    CANCEL_REFUSED = "cancel_refused"  # error_code, error_message
    LOST = "lost"  # —
    # staged rollouts
    WAVE_ENDED = "wave_ended"  # sentence, passed, ready_at, halted (the verdict at the wave's end)
    HALTED = "halted"  # wave (its id), sentence, reasons (the failures by reason at the halt)
    HALTED_BY = "halted_by"  # by, reason, kind (`halt`: the Halt button; `cancel`: /fota cancel)
    RESUMED = "resumed"  # by, reason, next_step (what the resume leaves to do, as it was)
    PROMOTED_ANYWAY = "promoted_anyway"  # by, number, sentence (the wave before's figures), reason
    AUTO_PROMOTED = "auto_promoted"  # number, sentence (the wave before's figures)
    WAVE_CANCELLED = "wave_cancelled"  # by (a wave not started, cancelled at ThingSpace by a halt)
    # retrying failed devices
    RETRY_REQUESTED = "retry_requested"  # retry (the new request's id), by, failed (told in the original's thread)
    # Slack
    ROOT_REFUSED = "root_refused"  # error (Slack's answer to the approval card)


@dataclass(frozen=True)
class Upload:
    filename: str
    title: str
    content: str


class Renderer(Protocol):
    """Turns an outbox row and the records as they are now into what Slack is sent."""

    def card(self, campaign: Campaign) -> Message: ...

    def reply(self, event: Event, campaign: Campaign, facts: Facts) -> Message | None:
        """The thread reply, or None when it has nothing true to say any more (nothing is sent)."""
        ...

    def dm(self, event: Event, campaign: Campaign, facts: Facts, permalink: str | None) -> Message: ...

    def confirmation(self, campaign: Campaign, permalink: str | None) -> Message: ...

    def failures(self, campaign: Campaign) -> Message | None:
        """The failed devices not yet told, or None; the caller marks them told."""
        ...

    async def summary_reads(self, campaign: Campaign) -> Facts:
        """What the final summary needs that is large to read, read off the event loop."""
        ...

    def summary(self, campaign: Campaign, reads: Facts) -> Message: ...

    async def upload(self, campaign: Campaign, facts: Facts) -> Upload: ...


# Failure reasons the final summary lists by name, each with a CSV of its own; the rest are
# summed in one line and one CSV.
FAILURE_REASONS_LISTED = 10
