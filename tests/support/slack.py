"""Requests exactly as Slack sends and signs them, for driving the bot's /slack/events.

Slack signs every request with the app's signing secret: ``X-Slack-Signature`` is ``v0=`` and
the hex HMAC-SHA256 of ``v0:{X-Slack-Request-Timestamp}:{raw body}``, and Bolt refuses a
timestamp more than five minutes away from its clock. Slash commands arrive form-encoded;
interactions (block_actions, view_submission) form-encoded as ``payload=<json>``; events
as JSON. The payload shapes follow Slack's reference pages and bolt-python's own scenario
test fixtures.

Defaults match `bot.standins.slack.Workspace`, so bodies built here agree with the stand-in.

A body's ``response_url`` defaults to a closed local port, never to hooks.slack.com: a test
that wants to see what the bot answers passes ``standin.new_response_url()``.

    body = slash_command_body("schedule firmware=x", response_url=standin.new_response_url())
    await client.post("/slack/events", content=body, headers=sign(body, SECRET))
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from bot.standins.slack import Workspace

_WS = Workspace()
TEAM_ID = _WS.team_id
TEAM_DOMAIN = _WS.domain
API_APP_ID = _WS.app_id
BOT_ID = _WS.bot_id
BOT_USER_ID = _WS.bot_user_id

#: Slack sends a verification token in every payload; Bolt ignores it in favour of signatures.
VERIFICATION_TOKEN = "verification-token-unused"
#: Nothing listens on port 9 (discard) of 127.0.0.1: a stray respond() fails fast and locally.
UNUSED_RESPONSE_URL = "http://127.0.0.1:9/response/unused"

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

JSONDict = dict[str, Any]


def sign(
    body: bytes | str,
    secret: str,
    timestamp: int | None = None,
    *,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
) -> dict[str, str]:
    """The headers Slack sends with `body`: signature, timestamp and content type.

    `timestamp` defaults to now; pass an old one to test Bolt's five-minute replay window.
    `retry_num` adds the headers of Slack's Events API retries (X-Slack-Retry-Num/-Reason).
    """
    raw = body.encode("utf-8") if isinstance(body, str) else body
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(
        secret.encode("utf-8"), b"v0:" + str(ts).encode("ascii") + b":" + raw, hashlib.sha256
    ).hexdigest()
    headers = {
        "Content-Type": JSON if raw.lstrip()[:1] == b"{" else FORM,
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": f"v0={digest}",
    }
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason
    return headers


def new_trigger_id() -> str:
    """A trigger_id shaped like Slack's ("<seconds>.<digits>.<hex>")."""
    return f"{int(time.time())}.{secrets.randbelow(10**9)}.{secrets.token_hex(16)}"


def _action_ts() -> str:
    return f"{time.time():.6f}"


def _user(user_id: str, user_name: str | None, team_id: str) -> JSONDict:
    name = user_name or user_id.lower()
    return {"id": user_id, "username": name, "name": name, "team_id": team_id}


def _team(team_id: str, team_domain: str) -> JSONDict:
    return {"id": team_id, "domain": team_domain}


def _payload_form(payload: Mapping[str, Any]) -> bytes:
    # Interactions: one form field, payload=<url-encoded JSON>.
    return urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode("ascii")


def slash_command_body(text: str, **fields: Any) -> bytes:
    """A slash command invocation, form-encoded in the field order Slack uses (arguments as for
    `slash_command_payload`)."""
    return urlencode(list(slash_command_payload(text, **fields).items())).encode("ascii")


def slash_command_payload(
    text: str,
    *,
    user_id: str = "U0REQ",
    channel_id: str = "C_REQ",
    command: str = "/fota",
    response_url: str = UNUSED_RESPONSE_URL,
    trigger_id: str | None = None,
    user_name: str | None = None,
    channel_name: str = "fota-requests",
    team_id: str = TEAM_ID,
    team_domain: str = TEAM_DOMAIN,
    api_app_id: str = API_APP_ID,
) -> dict[str, str]:
    """A slash command's fields, in Slack's order: the form body over HTTP, the envelope's
    payload (as a JSON object of the same strings) over Socket Mode."""
    fields = [
        ("token", VERIFICATION_TOKEN),
        ("team_id", team_id),
        ("team_domain", team_domain),
        ("channel_id", channel_id),
        ("channel_name", channel_name),
        ("user_id", user_id),
        ("user_name", user_name or user_id.lower()),
        ("command", command),
        ("text", text),
        ("api_app_id", api_app_id),
        ("is_enterprise_install", "false"),
        ("response_url", response_url),
        ("trigger_id", trigger_id or new_trigger_id()),
    ]
    return dict(fields)


def _find_element(
    blocks: Sequence[Any], action_id: str
) -> tuple[str | None, Mapping[str, Any] | None]:
    for block in blocks:
        if not isinstance(block, Mapping):
            continue
        candidates = list(block.get("elements") or [])
        if isinstance(block.get("accessory"), Mapping):
            candidates.append(block["accessory"])
        if isinstance(block.get("element"), Mapping):
            candidates.append(block["element"])
        for element in candidates:
            if isinstance(element, Mapping) and element.get("action_id") == action_id:
                return block.get("block_id"), element
    return None, None


def block_action_body(action_id: str, value: str | None = None, **kwargs: Any) -> bytes:
    """A button click (block_actions), form-encoded as Slack posts it to the interactivity URL
    (arguments as for `block_action_payload`)."""
    return _payload_form(block_action_payload(action_id, value, **kwargs))


def block_action_payload(
    action_id: str,
    value: str | None = None,
    *,
    user_id: str,
    channel_id: str | None = None,
    message_ts: str | None = None,
    response_url: str = UNUSED_RESPONSE_URL,
    trigger_id: str | None = None,
    view: Mapping[str, Any] | None = None,
    message: Mapping[str, Any] | None = None,
    block_id: str | None = None,
    user_name: str | None = None,
    channel_name: str = "fota-approvals",
    team_id: str = TEAM_ID,
    team_domain: str = TEAM_DOMAIN,
    api_app_id: str = API_APP_ID,
) -> JSONDict:
    """A button click's payload (block_actions): the ``payload`` form field over HTTP, the
    envelope's payload over Socket Mode.

    On a message: give `channel_id` and `message_ts`, and preferably `message` (e.g.
    ``standin.message(ch, ts).to_slack()``): the clicked button is then looked up in its blocks
    for its block_id, label, style and -- when `value` is None -- its value, like Slack does.
    In a modal: give `view` (the view object); the container is then the view.
    """
    blocks: Sequence[Any] = []
    if message is not None:
        blocks = message.get("blocks") or []
        message_ts = message_ts or message.get("ts")
    elif view is not None:
        blocks = view.get("blocks") or []
    found_block_id, element = _find_element(blocks, action_id)
    if (message is not None or view is not None) and element is None:
        raise ValueError(f"no element with action_id {action_id!r} in the given blocks")
    if value is None and element is not None:
        value = element.get("value")
    action: JSONDict = {
        "action_id": action_id,
        "block_id": block_id or found_block_id or "actions",
        "type": (element or {}).get("type", "button"),
        "action_ts": _action_ts(),
    }
    if element is not None and "text" in element:
        action["text"] = element["text"]
    if element is not None and "style" in element:
        action["style"] = element["style"]
    if value is not None:
        action["value"] = value
    payload: JSONDict = {
        "type": "block_actions",
        "user": _user(user_id, user_name, team_id),
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "team": _team(team_id, team_domain),
        "enterprise": None,
        "is_enterprise_install": False,
        "state": {"values": {}},
        "actions": [action],
    }
    if view is not None:
        payload["container"] = {"type": "view", "view_id": view.get("id")}
        payload["view"] = {**view, "state": view.get("state") or {"values": {}}}
    else:
        if channel_id is None or message_ts is None:
            raise ValueError("a click on a message needs channel_id and message_ts")
        payload["container"] = {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        }
        payload["channel"] = {"id": channel_id, "name": channel_name}
        payload["message"] = (
            dict(message)
            if message is not None
            else {
                "type": "message",
                "user": BOT_USER_ID,
                "bot_id": BOT_ID,
                "ts": message_ts,
                "text": "",
            }
        )
        payload["response_url"] = response_url
    return payload


def _state_value(value: Any) -> JSONDict:
    if isinstance(value, Mapping):
        return dict(value)
    return {"type": "plain_text_input", "value": value}


def text_input(value: str | None) -> JSONDict:
    """The state of a plain_text_input (None when left empty)."""
    return {"type": "plain_text_input", "value": value}


def static_select(value: str | None, text: str | None = None) -> JSONDict:
    """The state of a static_select; `value` None when nothing is chosen."""
    if value is None:
        return {"type": "static_select", "selected_option": None}
    option = {"text": {"type": "plain_text", "text": text or value, "emoji": True}, "value": value}
    return {"type": "static_select", "selected_option": option}


def datepicker(date: str | None) -> JSONDict:
    """The state of a datepicker ("YYYY-MM-DD")."""
    return {"type": "datepicker", "selected_date": date}


def file_input(*files: Mapping[str, Any]) -> JSONDict:
    """The state of a file_input: file objects, e.g. from ``standin.register_file(...)``."""
    return {"type": "file_input", "files": [dict(f) for f in files]}


def view_submission_body(
    callback_id: str,
    values: Mapping[str, Mapping[str, Any]],
    *,
    user_id: str = "U0REQ",
    private_metadata: str = "",
    view_id: str = "V1",
    blocks: Sequence[Mapping[str, Any]] = (),
    title: str = "FOTA",
    view_hash: str | None = None,
    trigger_id: str | None = None,
    response_urls: Sequence[Mapping[str, Any]] = (),
    user_name: str | None = None,
    team_id: str = TEAM_ID,
    team_domain: str = TEAM_DOMAIN,
    api_app_id: str = API_APP_ID,
) -> bytes:
    """A modal's submission (view_submission).

    `values` is ``view.state.values``: ``{block_id: {action_id: state}}``; a state may be a plain
    string (taken as a plain_text_input) or built with `text_input`, `static_select`,
    `datepicker`, `file_input`.
    """
    state = {
        block: {action: _state_value(v) for action, v in actions.items()}
        for block, actions in values.items()
    }
    payload: JSONDict = {
        "type": "view_submission",
        "team": _team(team_id, team_domain),
        "user": _user(user_id, user_name, team_id),
        "api_app_id": api_app_id,
        "token": VERIFICATION_TOKEN,
        "trigger_id": trigger_id or new_trigger_id(),
        "view": {
            "id": view_id,
            "team_id": team_id,
            "type": "modal",
            "blocks": [dict(b) for b in blocks],
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": state},
            "hash": view_hash or f"{int(time.time())}.{secrets.token_hex(4)}",
            "title": {"type": "plain_text", "text": title, "emoji": True},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": {"type": "plain_text", "text": "Cancel", "emoji": True},
            "submit": {"type": "plain_text", "text": "Submit", "emoji": True},
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": api_app_id,
            "external_id": "",
            "app_installed_team_id": team_id,
            "bot_id": BOT_ID,
        },
        "response_urls": [dict(r) for r in response_urls],
        "is_enterprise_install": False,
        "enterprise": None,
    }
    return _payload_form(payload)


def app_home_opened_body(
    user_id: str,
    *,
    tab: str = "home",
    channel: str | None = None,
    view: Mapping[str, Any] | None = None,
    team_id: str = TEAM_ID,
    api_app_id: str = API_APP_ID,
    event_id: str | None = None,
) -> bytes:
    """The app_home_opened event, as the Events API posts it (JSON event_callback)."""
    now = time.time()
    event: JSONDict = {
        "type": "app_home_opened",
        "user": user_id,
        "channel": channel or f"D{user_id}",
        "tab": tab,
        "event_ts": f"{now:.6f}",
    }
    if view is not None:
        event["view"] = dict(view)
    body: JSONDict = {
        "token": VERIFICATION_TOKEN,
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{secrets.token_hex(5).upper()}",
        "event_time": int(now),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


def url_verification_body(challenge: str) -> bytes:
    """The Events API's URL check, sent when the request URL is saved in the app config."""
    body = {"token": VERIFICATION_TOKEN, "challenge": challenge, "type": "url_verification"}
    return json.dumps(body).encode("utf-8")
