"""Block Kit's rules as Slack enforces them, checked on plain JSON (pure, no I/O).

One checker for the whole project: the Slack stand-in answers ``invalid_blocks`` (messages) or
``invalid_arguments`` (views) with these problems, as Slack does; the block builders' tests run
the same checks on everything a builder makes; and the builders (`commands/blocks/kit.py`) clip
to the limits named here, so each number is written once. Sources: the Block Kit reference on
docs.slack.dev (blocks, elements, composition objects, views), and slack_sdk's block models,
which know every field of every block type.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block as SdkBlock
from slack_sdk.models.views import View as SdkView

MAX_BLOCKS = 50  # blocks in a message
MAX_SURFACE_BLOCKS = 100  # blocks in a modal or a Home tab
MAX_TEXT = 3000  # a text object; a section's text; a context element
MAX_SECTION_TEXT = MAX_TEXT
MAX_CONTEXT_TEXT = MAX_TEXT
MAX_HEADER_TEXT = 150
MAX_FIELDS = 10  # a section's fields
MAX_FIELD_TEXT = 2000
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_ID = 255  # action_id, block_id, a view's callback_id and external_id
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_URL = 3000
MAX_CONFIRM_TITLE = 100
MAX_CONFIRM_TEXT = 300
MAX_CONFIRM_BUTTON = 30
MAX_OPTIONS = 100  # a static select's options
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_LABEL = 2000  # an input block's label and hint
MAX_ALT_TEXT = 2000
MAX_MODAL_TITLE = 24
MAX_MODAL_BUTTON = 24  # a modal's submit and close
MAX_PRIVATE_METADATA = 3000

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


def _too_long(most: int, pointer: str) -> str:
    return _problem(f"must be less than {most + 1} characters", pointer)


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
        return [_too_long(max_len, f"{pointer}/text")]
    return []


def _confirm_problems(confirm: Any, pointer: str) -> list[str]:
    if not isinstance(confirm, dict):
        return [_problem("must be a confirmation dialog object", pointer)]
    problems = _text_problems(
        confirm.get("title"), f"{pointer}/title", max_len=MAX_CONFIRM_TITLE, plain_only=True
    )
    problems += _text_problems(confirm.get("text"), f"{pointer}/text", max_len=MAX_CONFIRM_TEXT)
    problems += _text_problems(
        confirm.get("confirm"), f"{pointer}/confirm", max_len=MAX_CONFIRM_BUTTON, plain_only=True
    )
    problems += _text_problems(
        confirm.get("deny"), f"{pointer}/deny", max_len=MAX_CONFIRM_BUTTON, plain_only=True
    )
    return problems


def _options_problems(options: Any, pointer: str) -> list[str]:
    if not isinstance(options, list) or not 0 < len(options) <= MAX_OPTIONS:
        return [_problem(f"must have 1 to {MAX_OPTIONS} items", pointer)]
    problems: list[str] = []
    for i, option in enumerate(options):
        optr = f"{pointer}/{i}"
        if not isinstance(option, dict):
            problems.append(_problem("must be an option object", optr))
            continue
        problems += _text_problems(
            option.get("text"), f"{optr}/text", max_len=MAX_OPTION_TEXT, plain_only=True
        )
        value = option.get("value")
        if not isinstance(value, str) or not 0 < len(value) <= MAX_OPTION_VALUE:
            problems.append(
                _problem(f"must be 1 to {MAX_OPTION_VALUE} characters", f"{optr}/value")
            )
    return problems


def _element_problems(element: Any, pointer: str) -> list[str]:
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        return [_problem("missing required field: type", pointer)]
    problems: list[str] = []
    action_id = element.get("action_id")
    if action_id is not None and (not isinstance(action_id, str) or len(action_id) > MAX_ID):
        problems.append(_too_long(MAX_ID, f"{pointer}/action_id"))
    if element["type"] == "button":
        problems += _text_problems(
            element.get("text"), f"{pointer}/text", max_len=MAX_BUTTON_TEXT, plain_only=True
        )
        value = element.get("value")
        if value is not None and (not isinstance(value, str) or len(value) > MAX_BUTTON_VALUE):
            problems.append(_too_long(MAX_BUTTON_VALUE, f"{pointer}/value"))
        url = element.get("url")
        if url is not None and (not isinstance(url, str) or len(url) > MAX_URL):
            problems.append(_too_long(MAX_URL, f"{pointer}/url"))
        style = element.get("style")
        if style is not None and style not in ("primary", "danger"):
            problems.append(_problem("must be one of primary, danger", f"{pointer}/style"))
    if element["type"] == "static_select":
        problems += _options_problems(element.get("options"), f"{pointer}/options")
    if "confirm" in element:
        problems += _confirm_problems(element["confirm"], f"{pointer}/confirm")
    return problems


def _kind_problems(block: dict[str, Any], kind: str, ptr: str) -> list[str]:
    problems: list[str] = []
    if kind == "header":
        problems += _text_problems(
            block.get("text"), f"{ptr}/text", max_len=MAX_HEADER_TEXT, plain_only=True
        )
    elif kind == "section":
        if "text" not in block and "fields" not in block:
            problems.append(_problem("must provide text or fields", ptr))
        if "text" in block:
            problems += _text_problems(block["text"], f"{ptr}/text", max_len=MAX_SECTION_TEXT)
        fields = block.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or not 0 < len(fields) <= MAX_FIELDS:
                problems.append(_problem(f"must have 1 to {MAX_FIELDS} items", f"{ptr}/fields"))
            else:
                for j, f in enumerate(fields):
                    problems += _text_problems(f, f"{ptr}/fields/{j}", max_len=MAX_FIELD_TEXT)
        if "accessory" in block:
            problems += _element_problems(block["accessory"], f"{ptr}/accessory")
    elif kind in ("context", "actions"):
        elements = block.get("elements")
        most = MAX_CONTEXT_ELEMENTS if kind == "context" else MAX_ACTIONS_ELEMENTS
        if not isinstance(elements, list) or not 0 < len(elements) <= most:
            problems.append(_problem(f"must have 1 to {most} items", f"{ptr}/elements"))
            return problems
        action_ids: set[str] = set()
        for j, element in enumerate(elements):
            eptr = f"{ptr}/elements/{j}"
            if kind == "context":
                if isinstance(element, dict) and element.get("type") == "image":
                    continue
                problems += _text_problems(element, eptr, max_len=MAX_CONTEXT_TEXT)
                continue
            problems += _element_problems(element, eptr)
            aid = element.get("action_id") if isinstance(element, dict) else None
            if isinstance(aid, str):
                if aid in action_ids:
                    problems.append(_problem("duplicate action_id", f"{eptr}/action_id"))
                action_ids.add(aid)
    elif kind == "image":
        alt = block.get("alt_text")
        if not isinstance(alt, str) or not 0 < len(alt) <= MAX_ALT_TEXT:
            problems.append(_problem(f"must be 1 to {MAX_ALT_TEXT} characters", f"{ptr}/alt_text"))
        if "image_url" not in block and "slack_file" not in block:
            problems.append(_problem("must provide image_url or slack_file", ptr))
    elif kind == "input":
        problems += _text_problems(
            block.get("label"), f"{ptr}/label", max_len=MAX_LABEL, plain_only=True
        )
        problems += _element_problems(block.get("element"), f"{ptr}/element")
        if "hint" in block:
            problems += _text_problems(
                block["hint"], f"{ptr}/hint", max_len=MAX_LABEL, plain_only=True
            )
    return problems


def _differ(sent: dict[str, Any], read: dict[str, Any]) -> list[str]:
    """Keys of `sent` the model did not read back as sent; slack_sdk leaves out empty
    values (``"private_metadata": ""``), which Slack takes as not given."""
    return sorted(
        str(k)
        for k, v in sent.items()
        if v != read.get(k) and not (k not in read and v in ("", None, [], {}))
    )


def _model_problems(block: dict[str, Any], ptr: str) -> list[str]:
    """slack_sdk's block models know every field of every block type: a block they cannot
    read, or read without a field (an unknown key, a misspelt one), is one Slack refuses."""
    try:
        parsed = SdkBlock.parse(block)
        if parsed is None:
            # A type Slack has and this slack_sdk release does not model yet: the checks
            # above are all there is to say.
            return []
        parsed.validate_json()
        read = parsed.to_dict()
    except SlackObjectFormationError as exc:
        return [_problem(str(exc), ptr)]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return [_problem(f"malformed {block.get('type')} block ({type(exc).__name__})", ptr)]
    differ = _differ(block, read)
    if differ:
        return [_problem(f"unknown or malformed field: {', '.join(differ)}", ptr)]
    return []


def block_problems(blocks: Any, *, surface: str = "message") -> list[str]:
    """Problems Slack would report for `blocks` on `surface` ("message", "modal", "home")."""
    if blocks is None:
        return []
    if not isinstance(blocks, list):
        return [_problem("must be an array", "/blocks")]
    limit = MAX_BLOCKS if surface == "message" else MAX_SURFACE_BLOCKS
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
            if not isinstance(block_id, str) or len(block_id) > MAX_ID:
                problems.append(_too_long(MAX_ID, f"{ptr}/block_id"))
            elif block_id in seen_block_ids:
                problems.append(_problem("duplicate block_id", f"{ptr}/block_id"))
            else:
                seen_block_ids.add(block_id)
        before = len(problems)
        problems += _kind_problems(block, kind, ptr)
        if len(problems) == before:
            problems += _model_problems(block, ptr)
    return problems


def _view_model_problems(view: dict[str, Any]) -> list[str]:
    """The view read by slack_sdk's model: a field it does not know is one Slack refuses. Its
    lengths are checked above; slack_sdk's own rules are not asked, as they refuse a Home tab
    with no blocks, which Slack publishes."""
    try:
        read = SdkView(**view).get_non_null_attributes()
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return [_problem(f"malformed view ({type(exc).__name__})", "/view")]
    differ = _differ(view, read)
    if differ:
        return [_problem(f"unknown or malformed field: {', '.join(differ)}", "/view")]
    return []


def view_problems(view: Any, *, expected_type: str) -> list[str]:
    """Problems Slack would report for a modal or Home tab view."""
    if not isinstance(view, dict):
        return [_problem("must be a view object", "/view")]
    problems: list[str] = []
    if view.get("type") != expected_type:
        problems.append(_problem(f"type must be {expected_type}", "/view/type"))
    if expected_type == "modal":
        problems += _text_problems(
            view.get("title"), "/view/title", max_len=MAX_MODAL_TITLE, plain_only=True
        )
        for key in ("submit", "close"):
            if key in view:
                problems += _text_problems(
                    view[key], f"/view/{key}", max_len=MAX_MODAL_BUTTON, plain_only=True
                )
        blocks = view.get("blocks")
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks
        )
        if has_input and "submit" not in view:
            # Slack: "submit ... is required when an input block is within the blocks array".
            problems.append(_problem("submit is required when blocks contain an input", "/view"))
    for key, most in (
        ("private_metadata", MAX_PRIVATE_METADATA),
        ("callback_id", MAX_ID),
        ("external_id", MAX_ID),
    ):
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
    if not problems:
        problems += _view_model_problems(view)
    return problems
