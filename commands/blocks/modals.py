"""The reject modal: Reject on the card opens it, its submission carries the reason."""

from __future__ import annotations

from typing import Any

from commands.blocks.actions import (
    REJECT_MODAL_CALLBACK_ID,
    REJECT_REASON_ACTION_ID,
    REJECT_REASON_BLOCK_ID,
    action_value,
)
from commands.blocks.kit import MAX_MODAL_BUTTON, MAX_MODAL_TITLE, plain, section
from storage.model import ref_for

# The reason is quoted in the thread, the stamp and a DM; a section holds 3,000 characters.
MAX_REASON_INPUT = 2000


def reject_reason_modal(campaign_id: int, content_hash: str) -> dict[str, Any]:
    """A modal view asking why. private_metadata is the card's button value, so the
    submission is checked against the same content hash (`parse_action_value` reads it)."""
    ref = ref_for(campaign_id)
    title = f"Reject {ref}"
    return {
        "type": "modal",
        "callback_id": REJECT_MODAL_CALLBACK_ID,
        "private_metadata": action_value(campaign_id, content_hash),
        # A modal title holds 24 characters; a very large ref falls back to plain words.
        "title": plain(
            title if len(title) <= MAX_MODAL_TITLE else "Reject request", MAX_MODAL_TITLE
        ),
        "submit": plain("Reject", MAX_MODAL_BUTTON),
        "close": plain("Cancel", MAX_MODAL_BUTTON),
        "blocks": [
            section(
                f"You are rejecting *Ref {ref}*. Nothing is sent to ThingSpace. The requester and "
                "the thread see your reason."
            ),
            {
                "type": "input",
                "block_id": REJECT_REASON_BLOCK_ID,
                "label": plain("Reason", 2000),
                "element": {
                    "type": "plain_text_input",
                    "action_id": REJECT_REASON_ACTION_ID,
                    "multiline": True,
                    "min_length": 1,
                    "max_length": MAX_REASON_INPUT,
                    "placeholder": plain("What should change before this is requested again?", 150),
                },
            },
        ],
    }
