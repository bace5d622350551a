"""Interactive pieces: the action ids the listeners route on, and the button value that binds a
click to the request content it was shown with: an approval never counts for content the
approver did not see."""

from __future__ import annotations

import json
from typing import Any

from commands.blocks.kit import (
    MAX_BUTTON_TEXT,
    MAX_BUTTON_VALUE,
    MAX_CONFIRM_BUTTON,
    MAX_CONFIRM_TEXT,
    MAX_CONFIRM_TITLE,
    Block,
    clip,
    plain,
)
from storage.model import Campaign

ACTION_APPROVE = "fota_approve"
ACTION_REJECT = "fota_reject"
ACTION_WITHDRAW = "fota_withdraw"
ACTIONS_BLOCK_ID = "fota_decision"
REJECT_MODAL_CALLBACK_ID = "fota_reject_reason"
REJECT_REASON_BLOCK_ID = "reason"
REJECT_REASON_ACTION_ID = "reason"

# A content hash is a hex digest; anything much longer is not one of ours.
_MAX_HASH = 256


def action_value(campaign_id: int, content_hash: str) -> str:
    """The button value (and the reject modal's private_metadata): which request, and the
    content hash the clicker was shown."""
    value = json.dumps({"campaign_id": campaign_id, "hash": content_hash}, separators=(",", ":"))
    if len(value) > MAX_BUTTON_VALUE or len(content_hash) > _MAX_HASH:
        # Never cut: a cut hash would refuse every click on the card.
        raise ValueError(f"content hash too long for a button value ({len(content_hash)} chars)")
    return value


def parse_action_value(value: str) -> tuple[int, str]:
    """(campaign_id, content_hash) from a button value or the reject modal's private_metadata.

    Raises ValueError for anything that is not exactly what `action_value` makes: the value
    comes back from the client and is not trusted.
    """
    if not isinstance(value, str) or len(value) > MAX_BUTTON_VALUE:
        raise ValueError("action value is not a string of at most 2,000 characters")
    try:
        data: Any = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"action value is not JSON: {exc.msg}") from exc
    if not isinstance(data, dict) or set(data) != {"campaign_id", "hash"}:
        raise ValueError("action value must be an object with campaign_id and hash")
    campaign_id, content_hash = data["campaign_id"], data["hash"]
    # bool is an int subclass: `true` is not a campaign id.
    if type(campaign_id) is not int or campaign_id < 1:
        raise ValueError("action value campaign_id must be a positive integer")
    if (
        not isinstance(content_hash, str)
        or not content_hash
        or len(content_hash) > _MAX_HASH
        or not content_hash.isascii()
        or not content_hash.isalnum()
    ):
        raise ValueError("action value hash must be a non-empty alphanumeric string")
    return campaign_id, content_hash


def confirm_dialog(
    *, title: str, text: str, confirm: str, deny: str, danger: bool = False
) -> dict[str, Any]:
    # Slack's confirm dialog takes plain_text only; plain_text is not parsed, so no escaping.
    dialog: dict[str, Any] = {
        "title": plain(title, MAX_CONFIRM_TITLE),
        "text": plain(text, MAX_CONFIRM_TEXT),
        "confirm": plain(confirm, MAX_CONFIRM_BUTTON),
        "deny": plain(deny, MAX_CONFIRM_BUTTON),
    }
    if danger:
        dialog["style"] = "danger"
    return dialog


def button(
    text: str,
    *,
    action_id: str,
    value: str,
    style: str | None = None,
    confirm: dict[str, Any] | None = None,
) -> Block:
    element: Block = {
        "type": "button",
        "action_id": action_id,
        "text": plain(text, MAX_BUTTON_TEXT),
        "value": value,
    }
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def decision_buttons(campaign: Campaign, *, sandbox: bool) -> list[Block]:
    """Approve (behind Slack's confirm dialog) and Reject, bound to the content hash shown.

    One builder for the card and the App Home, so the confirmation an approver reads
    before firmware goes out is the same wherever they click.
    """
    value = action_value(campaign.id, campaign.content_hash)
    target = f"{campaign.device_count:,} devices to {clip(campaign.firmware_to, 60)} on account {clip(campaign.account, 40)}"
    return [
        button(
            "Approve",
            action_id=ACTION_APPROVE,
            value=value,
            style="primary",
            confirm=confirm_dialog(
                title="Approve firmware campaign?",
                text=f"{'SANDBOX. ' if sandbox else ''}Ref {campaign.ref}: upgrade {target}. "
                "This cannot be undone once the campaign starts.",
                confirm="Approve",
                deny="Cancel",
            ),
        ),
        button("Reject", action_id=ACTION_REJECT, value=value, style="danger"),
    ]
