"""Retrying a finished campaign's failed devices: the button, the line on the new request's
card, the original thread's word, and the form's devices section (pure)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from commands.blocks.actions import button as make_button
from commands.blocks.kit import (
    Block,
    Message,
    clip,
    code,
    context,
    escape,
    link,
    plural,
    section,
    user,
)
from storage.model import Campaign

ACTION_RETRY_FAILED = "fota_retry_failed"
RETRY_BLOCK_ID = "fota_retry_failed"
REASONS_SHOWN = 8  # failure reasons listed in the form; the rest summed up
IMEIS_SHOWN = 20  # failed devices listed in the form; the rest counted


def retry_value(campaign_id: int) -> str:
    return json.dumps({"campaign_id": campaign_id}, separators=(",", ":"))


def parse_retry_value(value: Any) -> int:
    """The campaign (or staged request) id of a Retry failed button; ValueError for anything else."""
    if not isinstance(value, str) or len(value) > 200:
        raise ValueError("retry value is not a short string")
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"retry value is not JSON: {exc.msg}") from exc
    if not isinstance(data, dict) or set(data) != {"campaign_id"}:
        raise ValueError("retry value must be an object with campaign_id")
    campaign_id = data["campaign_id"]
    if type(campaign_id) is not int or campaign_id < 1:
        raise ValueError("retry value must name a campaign")
    return campaign_id


def retry_button(campaign_id: int, failed: int, *, label: str | None = None) -> Block:
    """*Retry failed (326)…*: opens the request form with those devices (the … says a form follows)."""
    text = label or f"Retry failed ({failed:,})…"
    return make_button(text, action_id=ACTION_RETRY_FAILED, value=retry_value(campaign_id))


def with_retry_button(reply: Message, campaign_id: int, failed: int, *, button: Block | None = None) -> Message:
    """A final summary (or a held wave's word) with its retry button; none when nothing failed."""
    if failed <= 0:
        return reply
    elements = [button or retry_button(campaign_id, failed)]
    return {**reply, "blocks": [*reply["blocks"], {"type": "actions", "block_id": RETRY_BLOCK_ID, "elements": elements}]}


def retry_of_line(origin_ref: str, failed: int, permalink: str | None) -> str:
    """The new request's card: where its devices come from (mrkdwn)."""
    what = f"Retry of {origin_ref}" if not permalink else link(permalink, f"Retry of {origin_ref}")
    return f":repeat: *{what}* ({plural(failed, 'failed device')}): exactly the devices that failed there."


def retry_requested_reply(origin_ref: str, new_ref: str, requester: str, failed: int) -> Message:
    """The original's thread told that its failed devices were asked for again."""
    text = (
        f":repeat: {user(requester)} asked to retry the {plural(failed, 'failed device')} of {escape(origin_ref)} "
        f"as Ref {escape(new_ref)}; it waits for approval like every request. `/fota status {escape(new_ref)}`"
    )
    return {"text": text, "blocks": [section(text)]}


def retry_form_blocks(
    origin_ref: str, failed: Sequence[str], reasons: Sequence[tuple[str, int]]
) -> list[Block]:
    """The form's devices, in place of the IMEI inputs: the failed devices (not editable:
    exactly those go to the approvers) and why they failed."""
    shown = ", ".join(failed[:IMEIS_SHOWN])
    more = f" and {len(failed) - IMEIS_SHOWN:,} more" if len(failed) > IMEIS_SHOWN else ""
    lines = [
        f":repeat: *Devices: the {plural(len(failed), 'failed device')} of {escape(origin_ref)}*, "
        "exactly those. Approvers see this request as any other, after pre-flight checks.",
        f"{code(shown, 1500)}{more}",
    ]
    if reasons:
        listed = [f"• {escape(clip(reason or 'no reason given', 150))}: {n:,}" for reason, n in reasons[:REASONS_SHOWN]]
        rest = sum(n for _, n in reasons[REASONS_SHOWN:])
        if rest:
            listed.append(f"• other reasons: {rest:,}")
        lines.append("*Why they failed*\n" + "\n".join(listed))
    return [section(line) for line in lines] + [
        context("To send other devices, use `/fota schedule` or the form from `/fota`.")
    ]


# --- the form ----------------------------------------------------------------------------------


def retry_prefill(campaign: Campaign, today: dt.date) -> dict[str, str]:
    """The request form's fields from the campaign whose failed devices are retried: its
    firmware, protocol, windows, name, account and licence option; from today for as many
    days as it ran."""
    days = (campaign.end_date - campaign.start_date).days
    return {
        "firmware": campaign.firmware_name,
        "from": campaign.firmware_from,
        "to": campaign.firmware_to,
        "protocol": campaign.protocol,
        "window": ",".join(f"{w.start_hour}-{w.end_hour}" for w in campaign.windows),
        "end": (today + dt.timedelta(days=days)).isoformat(),
        "name": campaign.name or "",
        "account": campaign.account,
        "licence": "auto" if campaign.licence_auto else "",
    }


def retry_metadata(origin_id: int, failed: int) -> str:
    """The form's private_metadata: which campaign's failed devices, and how many it showed."""
    return json.dumps({"retry_of": origin_id, "failed": failed}, separators=(",", ":"))


def parse_retry_metadata(text: Any) -> tuple[int, int] | None:
    """(origin id, failed devices shown) of a retry form; None for any other form."""
    if not isinstance(text, str) or not text.startswith('{"retry_of"') or len(text) > 200:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or set(data) != {"retry_of", "failed"}:
        return None
    origin, failed = data["retry_of"], data["failed"]
    if type(origin) is not int or type(failed) is not int or origin < 1 or failed < 1:
        return None
    return origin, failed
