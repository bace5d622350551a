"""The schedule modal: its view, and its submission -> ScheduleRequest (pure).

Block ids are the schedule keys (plus `devices_file`), so `RequestError.by_key()`
is directly the `errors` of a `response_action: errors` answer. The fields go
through the same `parse_schedule_fields` as the slash command: the same input
gives the same request either way.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.blockkit import MAX_OPTION_TEXT, MAX_OPTION_VALUE, MAX_OPTIONS
from commands.imei import bad_imeis_problem, count_problems, scan_imeis
from commands.parse import (
    DEFAULT_PROTOCOL,
    MAX_ACCOUNT_LENGTH,
    MAX_FIRMWARE_LENGTH,
    MAX_NAME_LENGTH,
    SCHEDULE_KEYS,
    check_schedule_fields,
    parse_schedule_fields,
)
from storage.model import PROTOCOLS, Problem, RequestError, ScheduleRequest

SCHEDULE_CALLBACK_ID = "fota_schedule"
DEVICES_FILE = "devices_file"
BLOCK_IDS = (*SCHEDULE_KEYS, DEVICES_FILE)
FILE_TYPES = ("csv", "txt")
# Slack: plain_text_input max_length is at most 3000 -- about 180 IMEIs with
# separators, hence the file input for anything bigger.
MAX_PASTED = 3000
_FILE_KEYS = ("id", "name", "title", "size", "filetype", "mimetype", "url_private_download")


def _plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text, "emoji": True}


def _text_input(
    key: str,
    label: str,
    *,
    hint: str,
    placeholder: str = "",
    optional: bool = True,
    max_length: int | None = None,
    multiline: bool = False,
    prefill: Mapping[str, str],
) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": key}
    if multiline:
        element["multiline"] = True
    if max_length:
        element["max_length"] = max_length
    if placeholder:
        element["placeholder"] = _plain(placeholder)
    initial = (prefill.get(key) or "").strip()
    # Slack refuses an initial_value longer than max_length; leave it out rather than cut it.
    if initial and (max_length is None or len(initial) <= max_length):
        element["initial_value"] = initial
    return {
        "type": "input",
        "block_id": key,
        "optional": optional,
        "label": _plain(label),
        "hint": _plain(hint),
        "element": element,
    }


def _option(value: str) -> dict[str, Any]:
    return {"text": _plain(value), "value": value}


# Slack's limits for a select (100 options; an option's text 75 characters, its value 150)
# are bot/blockkit.py's, the checker's.
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_WINDOW = re.compile(r"^\d{1,2}-\d{1,2}$")


@dataclass(frozen=True)
class FirmwareChoice:
    """One entry of the account's firmware list, as the modal offers it."""

    name: str
    from_version: str
    to_version: str

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> FirmwareChoice:
        return cls(
            str(entry.get("firmwareName") or ""),
            str(entry.get("firmwareFrom") or ""),
            str(entry.get("firmwareTo") or ""),
        )


def _clip(text: str, limit: int = MAX_OPTION_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def firmware_select_fits(choices: Sequence[FirmwareChoice]) -> bool:
    """Whether the list can be a select: 1 to 100 entries, each name a whole option value.
    Otherwise the modal keeps the typed field rather than offer a cut list or cut names."""
    return 0 < len(choices) <= MAX_OPTIONS and all(0 < len(c.name) <= MAX_OPTION_VALUE for c in choices)


def _firmware_option(choice: FirmwareChoice) -> dict[str, Any]:
    option: dict[str, Any] = {"text": _plain(_clip(choice.name)), "value": choice.name}
    if choice.from_version or choice.to_version:
        option["description"] = _plain(_clip(f"{choice.from_version or '?'} → {choice.to_version or '?'}"))
    return option


def _firmware_select(choices: Sequence[FirmwareChoice], given: Mapping[str, str]) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "static_select",
        "action_id": "firmware",
        "placeholder": _plain("Choose the firmware"),
        "options": [_firmware_option(c) for c in choices],
    }
    chosen = (given.get("firmware") or "").strip()
    for choice in choices:
        if choice.name == chosen:
            element["initial_option"] = _firmware_option(choice)
    return {
        "type": "input",
        "block_id": "firmware",
        "label": _plain("Firmware"),
        "hint": _plain("The default account's firmware list, as /fota firmware shows it: version now → after."),
        "element": element,
    }


def _date_picker(key: str, label: str, *, hint: str, given: Mapping[str, str]) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "datepicker", "action_id": key, "placeholder": _plain("Pick a date")}
    initial = (given.get(key) or "").strip()
    # A typed relative date (today, +3d) has no date to show until it is resolved; leave it out.
    if _ISO_DATE.match(initial):
        element["initial_date"] = initial
    return {
        "type": "input",
        "block_id": key,
        "optional": True,
        "label": _plain(label),
        "hint": _plain(hint),
        "element": element,
    }


# Hour ranges a multi-select offers: 4, 6, 8 and 12 hours starting at each whole hour (70
# options, within Slack's 100), plus the whole day. A window of another length is typed with
# /fota schedule window=….
WINDOW_LENGTHS = (4, 6, 8, 12)


def window_options() -> list[dict[str, Any]]:
    groups = []
    for length in WINDOW_LENGTHS:
        options = [_option(f"{start}-{start + length}") for start in range(0, 25 - length)]
        groups.append({"label": _plain(f"{length} hours"), "options": options})
    groups.append({"label": _plain("All day"), "options": [_option("0-24")]})
    return groups


def _window_select(given: Mapping[str, str]) -> dict[str, Any]:
    element: dict[str, Any] = {
        "type": "multi_static_select",
        "action_id": "window",
        "placeholder": _plain("Any time of day"),
        "option_groups": window_options(),
    }
    offered = {o["value"]: o for group in element["option_groups"] for o in group["options"]}
    typed = [w.strip() for w in (given.get("window") or "").split(",") if w.strip()]
    # Windows filled in from an earlier campaign (a retry) that no range above offers: offered
    # too, so the form keeps them rather than open with "any time of day".
    others = [w for w in typed if w not in offered and _WINDOW.match(w)]
    if others and len(offered) + len(others) <= MAX_OPTIONS:
        extra = [_option(w) for w in others]
        element["option_groups"].append({"label": _plain("As before"), "options": extra})
        offered.update((o["value"], o) for o in extra)
    if typed and all(w in offered for w in typed):
        element["initial_options"] = [offered[w] for w in typed]
    return {
        "type": "input",
        "block_id": "window",
        "optional": True,
        "label": _plain("Time windows (UTC hours)"),
        "hint": _plain("One or more, not overlapping. None: any time of day. Other lengths: "
                       "/fota schedule window=START-END."),
        "element": element,
    }


def build_schedule_modal(
    *,
    prefill: Mapping[str, str] | None = None,
    private_metadata: str = "",
    firmware: Sequence[FirmwareChoice] | None = None,
    devices_blocks: Sequence[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The `/fota schedule` modal, optionally with fields filled in.

    With `devices_blocks` (a retry of failed devices) those blocks stand in for the devices
    inputs: the devices are fixed, and the submission brings them in by `private_metadata`.

    With `firmware` (the default account's list, when it fits a select) the firmware is
    picked from it; without, or when the list is empty or too long, it is typed. Dates are
    picked; windows are chosen from hour ranges."""
    given: Mapping[str, str] = prefill or {}
    choices = list(firmware or ())
    if not firmware_select_fits(choices) or (
        (given.get("firmware") or "").strip() not in ("", *(c.name for c in choices))
    ):
        choices = []  # a prefilled name not in the list stays typed, as it was given
    protocol = (given.get("protocol") or DEFAULT_PROTOCOL).strip().upper()
    if protocol not in PROTOCOLS:
        protocol = DEFAULT_PROTOCOL
    blocks: list[dict[str, Any]] = [
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": "Dates and hours are UTC. Approvers see the request before anything "
                    "reaches ThingSpace. Same fields as `/fota schedule key=value …`.",
                }
            ],
        },
        _firmware_select(choices, given)
        if choices
        else _text_input(
            "firmware",
            "Firmware",
            hint="The firmware name exactly as /fota firmware lists it.",
            placeholder="e.g. SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657",
            optional=False,
            max_length=MAX_FIRMWARE_LENGTH,
            prefill=given,
        ),
        _text_input(
            "from",
            "From version",
            hint="The version on the devices now. Leave From and To both empty to take them "
            "from the firmware list (they follow the firmware chosen); give both otherwise, "
            "different from each other.",
            placeholder="e.g. SR1.2.0.0-10512",
            max_length=MAX_FIRMWARE_LENGTH,
            prefill=given,
        ),
        _text_input(
            "to",
            "To version",
            hint="The version to install. Required with From, and different from it.",
            placeholder="e.g. SR1.2.0.0-10657",
            max_length=MAX_FIRMWARE_LENGTH,
            prefill=given,
        ),
        {
            "type": "input",
            "block_id": "protocol",
            "label": _plain("Protocol"),
            "hint": _plain("LWM2M unless your devices use OMA-DM or HTTP."),
            "element": {
                "type": "static_select",
                "action_id": "protocol",
                "options": [_option(p) for p in PROTOCOLS],
                "initial_option": _option(protocol),
            },
        },
        _date_picker("start", "Start date", hint="UTC; not in the past. None: today.", given=given),
        _date_picker("end", "End date", hint="UTC; not before the start. None: start + 7 days.", given=given),
        _window_select(given),
        _text_input(
            "devices",
            "Devices (IMEIs)",
            hint="15-digit IMEIs separated by commas, spaces or new lines; duplicates are dropped. "
            "This box holds 3,000 characters (about 180 IMEIs): upload longer lists as a file "
            "below. Paste here, upload a file, or both.",
            placeholder="354658090353977, 490154203237518",
            max_length=MAX_PASTED,
            multiline=True,
            prefill=given,
        ),
        {
            "type": "input",
            "block_id": DEVICES_FILE,
            "optional": True,
            "label": _plain("Devices file (CSV or text)"),
            "hint": _plain(
                "A CSV with a column headed imei, deviceId or device (else the first column is "
                "used), or a text file with IMEIs separated by commas, spaces or new lines."
            ),
            "element": {
                "type": "file_input",
                "action_id": DEVICES_FILE,
                "filetypes": list(FILE_TYPES),
                "max_files": 1,
            },
        },
        _text_input(
            "name",
            "Campaign name",
            hint=f"Up to {MAX_NAME_LENGTH} characters, without [ or ]. Sent to ThingSpace as "
            "NAME [FB-12], or fota-bot FB-12 when empty.",
            placeholder="e.g. Q3 modem rollout",
            max_length=MAX_NAME_LENGTH,
            prefill=given,
        ),
        _text_input(
            "account",
            "Account",
            hint="ThingSpace billing account: digits and dashes, leading zeros kept. "
            "Empty: the bot's default account.",
            placeholder="e.g. 0642233522-00001",
            max_length=MAX_ACCOUNT_LENGTH,
            prefill=given,
        ),
        _licence_input(given),
        # A staged rollout: all empty, one campaign for every device, as always.
        _text_input(
            "canary",
            "Staged rollout: canary devices",
            hint="A first wave of this many devices, spread over the request's models and firmware. "
            "Empty: no canary.",
            placeholder="e.g. 10",
            max_length=7,
            prefill=given,
        ),
        _text_input(
            "waves",
            "Staged rollout: waves",
            hint="Cumulative shares of the eligible devices after the canary, ending at 100%. "
            "Each wave is a campaign NAME [FB-12 w2/4], promoted by an approver (or automatically).",
            placeholder="e.g. 5%,25%,100%",
            max_length=100,
            prefill=given,
        ),
        _text_input(
            "success",
            "Staged rollout: success threshold",
            hint="A wave can be promoted only when at least this share of its devices succeeded. "
            "Default 95%.",
            placeholder="e.g. 95%",
            max_length=10,
            prefill=given,
        ),
        _text_input(
            "halt",
            "Staged rollout: halt",
            hint="The rollout halts itself as soon as this share (5%) or number (3) of a wave's devices "
            "failed. Empty: as soon as a wave can no longer reach its success threshold.",
            placeholder="e.g. 5%",
            max_length=10,
            prefill=given,
        ),
        _text_input(
            "soak",
            "Staged rollout: soak",
            hint="How long after a wave ends before the next may start: 30m, 2h, 1d. Default 0.",
            placeholder="e.g. 2h",
            max_length=10,
            prefill=given,
        ),
        _text_input(
            "promote",
            "Staged rollout: promotion",
            hint="manual (default): an approver other than the requester clicks Promote in the thread. "
            "auto: fota-bot promotes a wave that passed, once it soaked.",
            placeholder="manual",
            max_length=10,
            prefill=given,
        ),
    ]
    if devices_blocks is not None:
        at = next(i for i, b in enumerate(blocks) if b.get("block_id") == "devices")
        blocks[at : at + 2] = [dict(b) for b in devices_blocks]
    return {
        "type": "modal",
        "callback_id": SCHEDULE_CALLBACK_ID,
        "title": _plain("Schedule firmware" if devices_blocks is None else "Retry failed devices"),
        "submit": _plain("Request approval"),
        "close": _plain("Cancel"),
        "private_metadata": private_metadata,
        "blocks": blocks,
    }


def _licence_input(given: Mapping[str, str]) -> dict[str, Any]:
    """`licence=auto` as a checkbox, off unless asked for: licences cost money."""
    option = {
        "text": _plain("Assign free licences automatically (licence=auto)"),
        "description": _plain(
            "On a monthly-only subscription, ThingSpace gives unlicensed devices one of the "
            "account's unused licences. The approval card says how many it will use."
        ),
        "value": "auto",
    }
    element: dict[str, Any] = {"type": "checkboxes", "action_id": "licence", "options": [option]}
    if (given.get("licence") or given.get("license") or "").strip().lower() == "auto":
        element["initial_options"] = [option]
    return {
        "type": "input",
        "block_id": "licence",
        "optional": True,
        "label": _plain("Licences"),
        "hint": _plain(
            "Only matters on a monthly-only subscription: unlicensed devices are excluded unless "
            "this is ticked and the account has unused licences. Off by default."
        ),
        "element": element,
    }


def _actions(values: Any, block_id: str) -> list[Mapping[str, Any]]:
    block = values.get(block_id) if isinstance(values, Mapping) else None
    if not isinstance(block, Mapping):
        return []
    return [action for action in block.values() if isinstance(action, Mapping)]


def fields_from_view_state(values: dict[str, Any]) -> dict[str, str]:
    """`view["state"]["values"]` -> {schedule key: text typed or chosen}; empty inputs left out.

    The file input is not a field: see `uploaded_files`.
    """
    fields: dict[str, str] = {}
    for key in SCHEDULE_KEYS:
        for action in _actions(values, key):
            kind = action.get("type")
            value: Any = None
            if kind == "plain_text_input":
                value = action.get("value")
            elif kind in ("static_select", "radio_buttons"):
                option = action.get("selected_option")
                value = option.get("value") if isinstance(option, Mapping) else None
            elif kind == "datepicker":
                value = action.get("selected_date")
            elif kind == "multi_static_select":
                chosen = action.get("selected_options") or ()
                value = ",".join(str(o.get("value")) for o in chosen if isinstance(o, Mapping))
            elif kind == "checkboxes":
                chosen = action.get("selected_options") or ()
                values_chosen = [o.get("value") for o in chosen if isinstance(o, Mapping)]
                value = "auto" if "auto" in values_chosen else None
            if isinstance(value, str) and value.strip():
                fields[key] = value
                break
    return fields


def uploaded_files(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The files of the devices file input: id, name, size, url_private_download, …"""
    files: list[dict[str, Any]] = []
    for action in _actions(values, DEVICES_FILE):
        for file in action.get("files") or ():
            if isinstance(file, Mapping):
                files.append({k: file[k] for k in _FILE_KEYS if k in file})
    return files


def _device_problems(pasted: str, file_text: str, *, max_devices: int) -> list[Problem]:
    """Device problems put under the input they come from: pasted box or file."""
    pasted_good, pasted_bad, _ = scan_imeis(pasted)
    file_good, file_bad, _ = scan_imeis(file_text)
    problems: list[Problem] = []
    if pasted_bad:
        problems.append(bad_imeis_problem(pasted_bad, key="devices"))
    if file_bad:
        problems.append(bad_imeis_problem(file_bad, key=DEVICES_FILE))
    total = len(dict.fromkeys(pasted_good + file_good))
    if not total and not problems:
        problems.append(
            Problem(DEVICES_FILE, "", "has no IMEIs: upload a CSV or text file of IMEIs")
        )
    key = "devices" if pasted.strip() else DEVICES_FILE
    return problems + count_problems(total, max_devices=max_devices, key=key)


def parse_schedule_submission(
    values: dict[str, Any], *, today: dt.date, max_devices: int, file_text: str | None
) -> ScheduleRequest:
    """A view_submission's state values (+ the uploaded file's text) -> ScheduleRequest.

    `file_text` is the file already downloaded and decoded by `devices_from_file`;
    its IMEIs are added after the pasted ones. Every problem's key is a block id.
    """
    fields = fields_from_view_state(values)
    if file_text is None:
        try:
            return parse_schedule_fields(fields, today=today, max_devices=max_devices)
        except RequestError as exc:
            raise RequestError([_modal_wording(p) for p in exc.problems]) from None
    pasted = fields.get("devices", "")
    merged = {**fields, "devices": f"{pasted}\n{file_text}"}
    request, problems = check_schedule_fields(merged, today=today, max_devices=max_devices)
    if request is not None:
        return request
    if any(p.key == "devices" for p in problems):
        at = next(i for i, p in enumerate(problems) if p.key == "devices")
        others = [p for p in problems if p.key != "devices"]
        problems = [
            *others[:at],
            *_device_problems(pasted, file_text, max_devices=max_devices),
            *others[at:],
        ]
    raise RequestError(problems)


def _modal_wording(problem: Problem) -> Problem:
    if problem.key == "devices" and not problem.value and problem.rule.startswith("is required"):
        return Problem("devices", "", "is required: paste IMEIs here or upload a CSV or text file")
    return problem


def view_errors(error: RequestError) -> dict[str, str]:
    """`errors` for a `response_action: errors` answer, from any RequestError.

    Slack shows these strings as plain text under the blocks, so the backticks of
    `Problem.__str__` go; a key that is not a block id (a file problem raised with
    key `devices` by `devices_from_file` is, already) lands under `firmware`.
    """
    errors: dict[str, str] = {}
    for key, text in error.by_key().items():
        block = key if key in BLOCK_IDS else "firmware"
        plain = text.replace("`", "")
        errors[block] = f"{errors[block]} {plain}" if block in errors else plain
    return errors
