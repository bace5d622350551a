"""A recording stand-in for Slack's Web API.

`fota-bot demo`, the end-to-end tests and the benchmarks point the bot's `AsyncWebClient`
at this instead of https://slack.com/api/ (``SLACK_API_URL=http://127.0.0.1:PORT/api/``).
It answers the way Slack does -- HTTP 200 with ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``, HTTP 429 with ``Retry-After`` when rate limited -- and keeps
what the bot did: every call, every message with its edits and thread replies, ephemerals,
modals, home tabs, uploaded files and what was posted to response URLs.

It also plays the parts of Slack that are not the Web API but that a Slack app talks to:
the pre-signed upload URLs of ``files.getUploadURLExternal`` (``POST /upload/{file_id}``),
the private download URLs of users' files (``GET /files/{file_id}/{name}``), and the
``response_url`` of slash commands and interactions (``POST /response/{id}``).

And Slack's Socket Mode server: ``apps.connections.open`` (with an app-level ``xapp-`` token)
hands out a WebSocket URL, ``ws://HOST/socket/{ticket}``, good for one connection. The app is
greeted with ``hello``; a test pushes envelopes to it (`SlackStandIn.socket_send`), asks it to
reconnect (`SlackStandIn.socket_disconnect`) and waits for its acknowledgements
(`SlackStandIn.wait_for_socket_ack`). Serving WebSockets needs uvicorn's ``wsproto`` (the
``test`` extra): ``serve_in_loop(app, websockets=True)``.

Faults for tests: `SlackStandIn.rate_limit_next`, `SlackStandIn.fail_next`,
`SlackStandIn.down`; and, with ``enforce_tiers=True``, Slack's published per-method rate
tiers on an injectable clock (`TierPolicy`), so that a benchmark can show the bot never
earns a 429 by its own pace.

Everything runs in the caller's event loop; state changes happen between awaits, so no
locks are needed.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import math
import mimetypes
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

log = logging.getLogger(__name__)

JSONDict = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# Slack's published numbers this stand-in enforces. Sources: docs.slack.dev "Rate limits",
# each method's reference page, and the Block Kit reference.
# ---------------------------------------------------------------------------------------------

#: Requests per minute per method per workspace for each Web API tier ("20+", "50+", "100+"
#: in Slack's table; the stand-in holds the bot to the floor of each range).
TIER_PER_MINUTE: Mapping[int, int] = MappingProxyType({1: 1, 2: 20, 3: 50, 4: 100})

#: The tier of each method the stand-in serves. chat.postMessage is a "special tier" (about one
#: message per second per channel) and handled apart; auth.test and chat.getPermalink are
#: "special" too and generous in practice, so they are held to Tier 4 here.
DEFAULT_METHOD_TIERS: Mapping[str, int] = MappingProxyType(
    {
        "auth.test": 4,
        "chat.update": 3,
        "chat.delete": 3,
        "chat.postEphemeral": 4,
        "chat.getPermalink": 4,
        "conversations.open": 3,
        "views.open": 4,
        "views.update": 4,
        "views.push": 4,
        "views.publish": 4,
        "usergroups.users.list": 2,
        "users.info": 4,
        "conversations.info": 3,
        "files.getUploadURLExternal": 4,
        "files.completeUploadExternal": 4,
        "files.info": 4,
        "apps.connections.open": 1,
    }
)

#: chat.postMessage: "posting one message per second per channel" (Slack's special tier).
POST_MESSAGE_METHOD = "chat.postMessage"

MAX_MESSAGE_TEXT = 40_000  # chat.postMessage answers msg_too_long beyond this
MAX_MESSAGE_BLOCKS = 50  # Block Kit: 50 blocks in a message
MAX_SURFACE_BLOCKS = 100  # 100 in a modal or a Home tab
MAX_MODAL_STACK = 3  # views.push: at most three views in a modal's stack
TRIGGER_TTL = 3.0  # a trigger_id expires three seconds after it is issued
RESPONSE_URL_MAX_USES = 5  # a response_url may be used five times ...
RESPONSE_URL_TTL = 30 * 60.0  # ... within thirty minutes

#: Methods Slack has retired; the stand-in answers them as Slack does so the bot cannot lean on
#: them (files.upload stopped working for good on 12 November 2025).
RETIRED_METHODS: Mapping[str, str] = MappingProxyType({"files.upload": "method_deprecated"})

#: Pseudo-method names under which the non-Web-API routes are recorded and can be faulted.
UPLOAD = "upload"
DOWNLOAD = "download"
RESPONSE_URL = "response_url"

#: Methods that take an app-level token (``xapp-``) and nothing else; every other method
#: refuses one with ``not_allowed_token_type``, as Slack does.
APP_TOKEN_METHODS = frozenset({"apps.connections.open"})
#: The close code the stand-in's Socket Mode server refuses a connection with (policy violation).
SOCKET_REFUSED = 1008

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


# ---------------------------------------------------------------------------------------------
# Clock
# ---------------------------------------------------------------------------------------------


class ManualClock:
    """A clock that only moves when told to; pass it as ``clock=`` for rate-tier tests."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


@dataclass
class Workspace:
    """The simulated workspace: who the bot is, which users, groups and channels exist."""

    team_id: str = "T0FOTA"
    team_name: str = "FOTA Test Workspace"
    domain: str = "example"
    enterprise_id: str | None = None
    app_id: str = "A0FOTA"
    bot_id: str = "B0FOTABOT"
    bot_user_id: str = "U0FOTABOT"
    bot_name: str = "fota-bot"
    bot_scopes: tuple[str, ...] = (
        "chat:write",
        "commands",
        "files:read",
        "files:write",
        "im:write",
        "usergroups:read",
        "users:read",
        "channels:read",
        "groups:read",
    )
    #: Known users: id -> fields merged into the users.info answer.
    users: dict[str, JSONDict] = field(default_factory=dict)
    #: User groups (subteams, ``S…``) -> member user ids.
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    #: Channel ids that exist; None accepts any id (most tests do not care).
    channels: set[str] | None = None
    #: Channels the bot is a member of; None: every channel that exists.
    bot_channels: set[str] | None = None
    #: Archived channels (conversations.info says so).
    archived_channels: set[str] = field(default_factory=set)
    #: When true any ``U…``/``W…`` id is a user; when false only those in `users`.
    auto_users: bool = True

    @property
    def url(self) -> str:
        return f"https://{self.domain}.slack.com/"


@dataclass
class RecordedCall:
    """One request the stand-in received, with what it answered."""

    method: str
    args: JSONDict
    at: float
    status: int = 200
    response: JSONDict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        error = self.response.get("error")
        return str(error) if error is not None else None


@dataclass(frozen=True)
class MessageVersion:
    """A message's content at one point: the original post or one edit."""

    text: str
    blocks: list[JSONDict]
    attachments: list[JSONDict]
    at: float
    via: str  # the method (or "response_url") that produced this version


@dataclass
class Message:
    """A message as it stands now, with every version it went through."""

    channel: str
    ts: str
    text: str
    blocks: list[JSONDict]
    attachments: list[JSONDict]
    thread_ts: str | None
    user: str
    bot_id: str
    team: str
    history: list[MessageVersion]
    files: list[JSONDict] = field(default_factory=list)
    metadata: JSONDict | None = None
    replies: list[Message] = field(default_factory=list)
    deleted: bool = False
    edited_ts: str | None = None

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def edits(self) -> list[MessageVersion]:
        """The versions after the original post, oldest first."""
        return self.history[1:]

    def to_slack(self) -> JSONDict:
        """The message object as Slack's API and interaction payloads carry it."""
        out: JSONDict = {
            "type": "message",
            "user": self.user,
            "bot_id": self.bot_id,
            "text": self.text,
            "ts": self.ts,
            "team": self.team,
        }
        if self.blocks:
            out["blocks"] = self.blocks
        if self.attachments:
            out["attachments"] = self.attachments
        if self.files:
            out["files"] = self.files
            out["upload"] = False
        if self.metadata is not None:
            out["metadata"] = self.metadata
        if self.edited_ts is not None:
            out["edited"] = {"user": self.user, "ts": self.edited_ts}
        if self.is_reply:
            out["thread_ts"] = self.thread_ts
            out["parent_user_id"] = self.user
        elif self.replies:
            live = [r for r in self.replies if not r.deleted]
            out["thread_ts"] = self.ts
            out["reply_count"] = len(live)
            out["reply_users"] = sorted({r.user for r in live})
            if live:
                out["latest_reply"] = live[-1].ts
        return out


@dataclass(frozen=True)
class Ephemeral:
    """A chat.postEphemeral: seen by `user` only, never stored in the channel."""

    channel: str
    user: str
    text: str
    blocks: list[JSONDict]
    thread_ts: str | None
    message_ts: str
    at: float


@dataclass(frozen=True)
class ResponsePost:
    """One post the bot made to a response_url."""

    response_id: str
    body: JSONDict
    at: float
    channel: str | None
    message_ts: str | None
    user_id: str | None

    @property
    def text(self) -> str:
        return str(self.body.get("text") or "")

    @property
    def response_type(self) -> str:
        # Slack's default for a response_url post is ephemeral.
        return str(self.body.get("response_type") or "ephemeral")


@dataclass(frozen=True)
class SocketAck:
    """What the app sent back over Socket Mode for one envelope: its ack, with the payload
    that stands in for an HTTP response body (a slash command's reply, a modal's errors)."""

    envelope_id: str
    payload: JSONDict | None
    at: float
    connection_id: str

    @property
    def text(self) -> str:
        return str((self.payload or {}).get("text") or "")


@dataclass
class SocketConnection:
    """One Socket Mode WebSocket the app holds open, with what went each way."""

    id: str
    opened: float
    websocket: WebSocket = field(repr=False)
    #: Every message the stand-in sent: hello, envelopes, disconnect requests.
    sent: list[JSONDict] = field(default_factory=list)
    #: Every text frame the app sent, decoded when it was JSON.
    received: list[Any] = field(default_factory=list)
    closed: bool = False
    close_code: int | None = None
    _sending: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    async def send(self, message: JSONDict) -> None:
        # One frame at a time: the hello, a test's envelopes and disconnects come from
        # different tasks.
        async with self._sending:
            await self.websocket.send_text(json.dumps(message, separators=(",", ":")))
        self.sent.append(message)


@dataclass
class View:
    """A modal or a Home tab opened, pushed, updated or published by the bot."""

    id: str
    type: str
    view: JSONDict
    hash: str
    opened_by: str
    user_id: str | None
    trigger_id: str | None
    external_id: str
    root_view_id: str
    previous_view_id: str | None
    history: list[JSONDict] = field(default_factory=list)

    @property
    def callback_id(self) -> str:
        return str(self.view.get("callback_id") or "")

    @property
    def private_metadata(self) -> str:
        return str(self.view.get("private_metadata") or "")

    def to_slack(self, ws: Workspace) -> JSONDict:
        """The view object as views.* answers and view_submission payloads carry it."""
        out: JSONDict = {
            "id": self.id,
            "team_id": ws.team_id,
            "type": self.type,
            "blocks": self.view.get("blocks", []),
            "private_metadata": self.private_metadata,
            "callback_id": self.callback_id,
            "state": {"values": {}},
            "hash": self.hash,
            "clear_on_close": bool(self.view.get("clear_on_close", False)),
            "notify_on_close": bool(self.view.get("notify_on_close", False)),
            "previous_view_id": self.previous_view_id,
            "root_view_id": self.root_view_id,
            "app_id": ws.app_id,
            "external_id": self.external_id,
            "app_installed_team_id": ws.team_id,
            "bot_id": ws.bot_id,
        }
        for key in ("title", "submit", "close"):
            if key in self.view:
                out[key] = self.view[key]
        return out


@dataclass
class StoredFile:
    """A file the bot uploaded (files_upload_v2) or a user's file a test registered."""

    id: str
    name: str
    title: str
    user: str
    created: int
    mimetype: str
    filetype: str
    content: bytes | None = None
    declared_length: int | None = None
    alt_txt: str | None = None
    snippet_type: str | None = None
    #: True for files the bot uploaded, false for users' files registered by tests.
    from_bot: bool = False
    completed: bool = False
    channel: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None
    message_ts: str | None = None
    public_url: str = ""

    @property
    def size(self) -> int:
        return len(self.content) if self.content is not None else (self.declared_length or 0)

    @property
    def url_private(self) -> str:
        return f"{self.public_url}/files/{self.id}/{self.name}"

    def to_slack(self, ws: Workspace) -> JSONDict:
        out: JSONDict = {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.title,
            "mimetype": self.mimetype,
            "filetype": self.filetype,
            "pretty_type": self.filetype.upper(),
            "user": self.user,
            "user_team": ws.team_id,
            "editable": False,
            "size": self.size,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": self.channel is not None and self.channel.startswith("C"),
            "url_private": self.url_private,
            "url_private_download": f"{self.url_private}?download=1",
            "permalink": f"{ws.url}files/{self.user}/{self.id}/{self.name}",
            "channels": [self.channel] if self.channel else [],
        }
        if self.alt_txt:
            out["alt_txt"] = self.alt_txt
        return out


@dataclass(frozen=True)
class TierViolation:
    """A 429 the tier enforcer gave: which method, on which key, and the limit broken."""

    method: str
    key: str
    at: float
    limit: int
    window: float
    retry_after: int


@dataclass(frozen=True)
class TierPolicy:
    """Slack's rate tiers as the enforcer applies them (a sliding window per method)."""

    method_tiers: Mapping[str, int] = field(default_factory=lambda: DEFAULT_METHOD_TIERS)
    per_minute: Mapping[int, int] = field(default_factory=lambda: TIER_PER_MINUTE)
    window: float = 60.0
    #: chat.postMessage: this many messages per `post_message_window` seconds per channel.
    post_message_limit: int = 1
    post_message_window: float = 1.0

    def limit_for(self, method: str, channel: str | None) -> tuple[str, int, float] | None:
        """The (key, limit, window) that governs one call, or None when unlimited."""
        if method == POST_MESSAGE_METHOD:
            return (
                f"{method}:{channel or '-'}",
                self.post_message_limit,
                self.post_message_window,
            )
        tier = self.method_tiers.get(method)
        if tier is None:
            return None
        return method, self.per_minute[tier], self.window


@dataclass(frozen=True)
class ApiAnswer:
    """What the stand-in answers one HTTP request with."""

    status: int
    body: JSONDict
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Fault:
    method: str | None
    remaining: int
    status: int
    error: str
    retry_after: int | None = None


@dataclass
class _ResponseUrl:
    id: str
    created: float
    channel: str | None
    message_ts: str | None
    user_id: str | None
    uses: int = 0


@dataclass
class _Trigger:
    issued: float
    used: bool = False


class _SlackError(Exception):
    """An ``ok: false`` answer; `extra` goes into the body beside ``error``."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


# ---------------------------------------------------------------------------------------------
# Block Kit checks (pure). Slack refuses blocks that break these with invalid_blocks
# (messages) or invalid_arguments (views); catching them here keeps a builder bug out of prod.
# ---------------------------------------------------------------------------------------------


def _problem(message: str, pointer: str) -> str:
    # The shape of Slack's own messages in response_metadata.messages.
    return f"[ERROR] {message} [json-pointer:{pointer}]"


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
        return [_problem(f"must be less than {max_len + 1} characters", f"{pointer}/text")]
    return []


def _confirm_problems(confirm: Any, pointer: str) -> list[str]:
    if not isinstance(confirm, dict):
        return [_problem("must be a confirmation dialog object", pointer)]
    problems = _text_problems(
        confirm.get("title"), f"{pointer}/title", max_len=100, plain_only=True
    )
    problems += _text_problems(confirm.get("text"), f"{pointer}/text", max_len=300)
    problems += _text_problems(
        confirm.get("confirm"), f"{pointer}/confirm", max_len=30, plain_only=True
    )
    problems += _text_problems(confirm.get("deny"), f"{pointer}/deny", max_len=30, plain_only=True)
    return problems


def _element_problems(element: Any, pointer: str) -> list[str]:
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        return [_problem("missing required field: type", pointer)]
    problems: list[str] = []
    action_id = element.get("action_id")
    if action_id is not None and (not isinstance(action_id, str) or len(action_id) > 255):
        problems.append(_problem("must be less than 256 characters", f"{pointer}/action_id"))
    if element["type"] == "button":
        problems += _text_problems(
            element.get("text"), f"{pointer}/text", max_len=75, plain_only=True
        )
        value = element.get("value")
        if value is not None and (not isinstance(value, str) or len(value) > 2000):
            problems.append(_problem("must be less than 2001 characters", f"{pointer}/value"))
        url = element.get("url")
        if url is not None and (not isinstance(url, str) or len(url) > 3000):
            problems.append(_problem("must be less than 3001 characters", f"{pointer}/url"))
        style = element.get("style")
        if style is not None and style not in ("primary", "danger"):
            problems.append(_problem("must be one of primary, danger", f"{pointer}/style"))
    if "confirm" in element:
        problems += _confirm_problems(element["confirm"], f"{pointer}/confirm")
    return problems


def block_problems(blocks: Any, *, surface: str = "message") -> list[str]:
    """Problems Slack would report for `blocks` on `surface` ("message", "modal", "home")."""
    if blocks is None:
        return []
    if not isinstance(blocks, list):
        return [_problem("must be an array", "/blocks")]
    limit = MAX_MESSAGE_BLOCKS if surface == "message" else MAX_SURFACE_BLOCKS
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
            if not isinstance(block_id, str) or len(block_id) > 255:
                problems.append(_problem("must be less than 256 characters", f"{ptr}/block_id"))
            elif block_id in seen_block_ids:
                problems.append(_problem("duplicate block_id", f"{ptr}/block_id"))
            else:
                seen_block_ids.add(block_id)
        if kind == "header":
            problems += _text_problems(
                block.get("text"), f"{ptr}/text", max_len=150, plain_only=True
            )
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(_problem("must provide text or fields", ptr))
            if "text" in block:
                problems += _text_problems(block["text"], f"{ptr}/text", max_len=3000)
            fields = block.get("fields")
            if fields is not None:
                if not isinstance(fields, list) or not 0 < len(fields) <= 10:
                    problems.append(_problem("must have 1 to 10 items", f"{ptr}/fields"))
                else:
                    for j, f in enumerate(fields):
                        problems += _text_problems(f, f"{ptr}/fields/{j}", max_len=2000)
            if "accessory" in block:
                problems += _element_problems(block["accessory"], f"{ptr}/accessory")
        elif kind in ("context", "actions"):
            elements = block.get("elements")
            most = 10 if kind == "context" else 25
            if not isinstance(elements, list) or not 0 < len(elements) <= most:
                problems.append(_problem(f"must have 1 to {most} items", f"{ptr}/elements"))
                continue
            action_ids: set[str] = set()
            for j, element in enumerate(elements):
                eptr = f"{ptr}/elements/{j}"
                if kind == "context":
                    if isinstance(element, dict) and element.get("type") == "image":
                        continue
                    problems += _text_problems(element, eptr, max_len=2000)
                    continue
                problems += _element_problems(element, eptr)
                aid = element.get("action_id") if isinstance(element, dict) else None
                if isinstance(aid, str):
                    if aid in action_ids:
                        problems.append(_problem("duplicate action_id", f"{eptr}/action_id"))
                    action_ids.add(aid)
        elif kind == "image":
            alt = block.get("alt_text")
            if not isinstance(alt, str) or not 0 < len(alt) <= 2000:
                problems.append(_problem("must be 1 to 2000 characters", f"{ptr}/alt_text"))
            if "image_url" not in block and "slack_file" not in block:
                problems.append(_problem("must provide image_url or slack_file", ptr))
        elif kind == "input":
            problems += _text_problems(
                block.get("label"), f"{ptr}/label", max_len=2000, plain_only=True
            )
            problems += _element_problems(block.get("element"), f"{ptr}/element")
            if "hint" in block:
                problems += _text_problems(
                    block["hint"], f"{ptr}/hint", max_len=2000, plain_only=True
                )
    return problems


def view_problems(view: Any, *, expected_type: str) -> list[str]:
    """Problems Slack would report for a modal or Home tab view."""
    if not isinstance(view, dict):
        return [_problem("must be a view object", "/view")]
    problems: list[str] = []
    if view.get("type") != expected_type:
        problems.append(_problem(f"type must be {expected_type}", "/view/type"))
    if expected_type == "modal":
        problems += _text_problems(view.get("title"), "/view/title", max_len=24, plain_only=True)
        for key in ("submit", "close"):
            if key in view:
                problems += _text_problems(view[key], f"/view/{key}", max_len=24, plain_only=True)
        blocks = view.get("blocks")
        has_input = isinstance(blocks, list) and any(
            isinstance(b, dict) and b.get("type") == "input" for b in blocks
        )
        if has_input and "submit" not in view:
            # Slack: "submit ... is required when an input block is within the blocks array".
            problems.append(_problem("submit is required when blocks contain an input", "/view"))
    for key, most in (("private_metadata", 3000), ("callback_id", 255), ("external_id", 255)):
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
    return problems


# ---------------------------------------------------------------------------------------------
# Terminal rendering (pure): what `fota-bot demo` prints.
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Argument helpers
# ---------------------------------------------------------------------------------------------

_JSON_ARGS = ("blocks", "attachments", "view", "files", "metadata")


def _normalise_args(raw: Mapping[str, Any]) -> JSONDict:
    """Slack accepts blocks/view/... as JSON strings in form bodies; decode them once here."""
    args: JSONDict = {}
    for key, value in raw.items():
        if value is None:
            continue
        if key in _JSON_ARGS and isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        args[key] = value
    return args


def _arg(args: Mapping[str, Any], key: str) -> str | None:
    value = args.get(key)
    if value is None or value == "":
        return None
    return str(value)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)


def _is_user_id(value: str) -> bool:
    return value[:1] in ("U", "W")


# ---------------------------------------------------------------------------------------------
# The stand-in
# ---------------------------------------------------------------------------------------------

OnCall = Callable[[RecordedCall], object]


class SlackStandIn:
    """Recorded calls plus a simulated workspace; serve it with `create_slack_standin_app`.

    Keyword arguments:
      workspace: who the bot is, which users/groups/channels exist (`Workspace`).
      public_url: the base URL the stand-in is reachable at, used for response URLs and users'
        file URLs (upload URLs follow the host each request came in on). Set it once a server
        is listening: ``standin.public_url = base_url``.
      bot_token: when set, the only token accepted; otherwise any ``xoxb-``/``xoxp-`` token.
      app_token: when set, the only app-level token ``apps.connections.open`` accepts;
        otherwise any ``xapp-`` token.
      clock: seconds as a float; `ManualClock` for tier tests. Defaults to `time.monotonic`.
      enforce_tiers: answer 429 when a method goes over its Slack rate tier (`TierPolicy`).
      tiers: the policy to enforce.
      on_call: called with each `RecordedCall` right after it is answered (may be async).
      ts_origin: the seconds part of the first message ts.
    """

    def __init__(
        self,
        *,
        workspace: Workspace | None = None,
        public_url: str = "http://slack-standin.test",
        bot_token: str | None = None,
        app_token: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        enforce_tiers: bool = False,
        tiers: TierPolicy | None = None,
        on_call: OnCall | None = None,
        ts_origin: int = 1_700_000_000,
    ) -> None:
        self.workspace = workspace or Workspace()
        self.public_url = public_url.rstrip("/")
        self.bot_token = bot_token
        self.app_token = app_token
        self.clock = clock
        self.enforce_tiers = enforce_tiers
        self.tiers = tiers or TierPolicy()
        self.on_call = on_call

        self.calls: list[RecordedCall] = []
        self.ephemerals: list[Ephemeral] = []
        self.responses: list[ResponsePost] = []
        self.rate_limited_count = 0
        self.tier_violations: list[TierViolation] = []
        self.socket_acks: list[SocketAck] = []

        self._ts_micros = ts_origin * 1_000_000
        self._serial = 0
        self._messages: dict[tuple[str, str], Message] = {}
        self._channel_order: dict[str, list[Message]] = {}
        self._dm_by_user: dict[str, str] = {}
        self._views: dict[str, View] = {}
        self._home_by_user: dict[str, str] = {}
        self._files: dict[str, StoredFile] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._triggers: dict[str, _Trigger] = {}
        self._faults: list[_Fault] = []
        self._down = False
        self._windows: dict[str, deque[float]] = {}
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._socket_tickets: dict[str, float] = {}
        self._sockets: list[SocketConnection] = []

        self._handlers: dict[str, Callable[[JSONDict, str], JSONDict]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "chat.delete": self._chat_delete,
            "conversations.open": self._conversations_open,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "usergroups.users.list": self._usergroups_users_list,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
            "files.info": self._files_info,
            "apps.connections.open": self._apps_connections_open,
        }

    # -- recording API ------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[RecordedCall]:
        """Every request to `method`, answered or refused, in order."""
        return [c for c in self.calls if c.method == method]

    def messages(self, channel: str, *, include_deleted: bool = False) -> list[Message]:
        """Messages in `channel` (a ``U…`` id means the bot's DM with that user), oldest first,
        thread replies included (each root also lists its replies in ``.replies``)."""
        channel = self._dm_by_user.get(channel, channel)
        return [m for m in self._channel_order.get(channel, []) if include_deleted or not m.deleted]

    def message(self, channel: str, ts: str) -> Message:
        channel = self._dm_by_user.get(channel, channel)
        try:
            return self._messages[(channel, ts)]
        except KeyError:
            raise LookupError(f"no message {ts} in {channel}") from None

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The thread rooted at `ts`: the root first, then its live replies in order."""
        root = self.message(channel, ts)
        if root.is_reply:
            assert root.thread_ts is not None
            root = self.message(channel, root.thread_ts)
        return [root, *(r for r in root.replies if not r.deleted)]

    def dm_channel(self, user_id: str) -> str:
        """The bot's DM channel with `user_id` (the same id conversations.open answers)."""
        channel = self._dm_by_user.get(user_id)
        if channel is None:
            channel = f"D{user_id}"
            self._dm_by_user[user_id] = channel
        return channel

    @property
    def views(self) -> list[View]:
        return list(self._views.values())

    def view(self, view_id: str) -> View:
        return self._views[view_id]

    def home_view(self, user_id: str) -> View | None:
        view_id = self._home_by_user.get(user_id)
        return self._views[view_id] if view_id else None

    @property
    def uploads(self) -> list[StoredFile]:
        """Files the bot uploaded through files.getUploadURLExternal, in order."""
        return [f for f in self._files.values() if f.from_bot]

    def file(self, file_id: str) -> StoredFile:
        return self._files[file_id]

    def clear_calls(self) -> None:
        self.calls.clear()

    # -- waiting (no sleeps: woken by each recorded call) ------------------------------------

    async def wait_for(
        self, predicate: Callable[[], bool], *, within: float = 5.0, what: str = "condition"
    ) -> None:
        """Return once `predicate()` holds; it is re-checked after every request served.
        Raises AssertionError after `within` seconds."""
        if predicate():
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (predicate, future)
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(within):
                await future
        except TimeoutError:
            raise AssertionError(
                f"Slack stand-in: still waiting for {what} after {within}s"
            ) from None
        finally:
            self._waiters.remove(waiter)

    async def wait_for_call(
        self, method: str, *, count: int = 1, ok: bool = True, within: float = 5.0
    ) -> RecordedCall:
        """The `count`-th (successful, unless ok=False) call to `method`, once it happens."""

        def matching() -> list[RecordedCall]:
            return [c for c in self.calls if c.method == method and (c.ok or not ok)]

        await self.wait_for(
            lambda: len(matching()) >= count, within=within, what=f"{count} x {method}"
        )
        return matching()[count - 1]

    def _wake(self) -> None:
        for predicate, future in list(self._waiters):
            if future.done():
                continue
            try:
                if predicate():
                    future.set_result(None)
            except Exception as exc:  # a broken predicate fails the waiting test, not us
                future.set_exception(exc)

    # -- fault injection -----------------------------------------------------------------------

    def rate_limit_next(self, method: str | None, count: int = 1, retry_after: int = 1) -> None:
        """Answer the next `count` calls to `method` (None: any Web API method) with 429 and
        ``Retry-After: retry_after``, as Slack does when a method's tier is exhausted."""
        self._faults.append(
            _Fault(method, count, 429, "ratelimited", retry_after=max(0, int(retry_after)))
        )

    def fail_next(
        self,
        method: str | None,
        count: int = 1,
        *,
        status: int = 500,
        error: str = "internal_error",
    ) -> None:
        """Answer the next `count` calls to `method` (None: any Web API method) with
        ``{"ok": false, "error": error}`` and HTTP `status`; ``status=200`` gives a plain Slack
        error such as ``channel_not_found``. Pseudo-methods "upload", "download" and
        "response_url" target the non-API routes."""
        self._faults.append(_Fault(method, count, status, error))

    def down(self, value: bool = True) -> None:
        """While down every route answers 503, as during a Slack outage."""
        self._down = value

    @property
    def is_down(self) -> bool:
        return self._down

    def clear_faults(self) -> None:
        self._faults.clear()

    # -- workspace set-up ----------------------------------------------------------------------

    def add_user(self, user_id: str, **fields: Any) -> None:
        self.workspace.users[user_id] = fields

    def add_usergroup(self, group_id: str, members: Iterable[str]) -> None:
        self.workspace.usergroups[group_id] = list(members)

    def new_response_url(
        self,
        *,
        channel: str | None = None,
        message_ts: str | None = None,
        user_id: str | None = None,
    ) -> str:
        """Mint a response_url served by this stand-in. Bound to a message (channel and
        message_ts), ``replace_original``/``delete_original`` act on that message as in Slack."""
        rid = f"R{self._next_serial():08d}"
        self._response_urls[rid] = _ResponseUrl(rid, self.clock(), channel, message_ts, user_id)
        return f"{self.public_url}/response/{rid}"

    def new_trigger_id(self) -> str:
        """Mint a trigger_id that expires like Slack's (3 s on the stand-in's clock, one use)."""
        n = self._next_serial()
        trigger = f"{self._ts_micros // 1_000_000 + n}.{n}.standin{n:06x}"
        self._triggers[trigger] = _Trigger(self.clock())
        return trigger

    def register_file(
        self,
        name: str,
        content: bytes,
        *,
        user_id: str = "U_REQ",
        title: str | None = None,
        mimetype: str | None = None,
    ) -> JSONDict:
        """A user's uploaded file (e.g. from a modal's file_input), downloadable with the bot
        token at its ``url_private_download``. Returns the file object Slack would put in the
        view_submission state."""
        stored = self._new_file(name, title=title, user=user_id, mimetype=mimetype)
        stored.content = content
        stored.completed = True
        return stored.to_slack(self.workspace)

    # -- rendering -----------------------------------------------------------------------------

    def render_thread(self, channel: str, ts: str) -> str:
        """The thread as terminal text: the root's latest state, then each reply indented."""
        messages = self.thread(channel, ts)
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

    def message_for(self, call: RecordedCall) -> Message | None:
        """The message a successful call created or changed (post, update, delete, file share,
        response_url edit), or None -- for an `on_call` hook that follows threads."""
        if not call.ok:
            return None
        if call.method in ("chat.postMessage", "chat.update", "chat.delete"):
            channel, ts = call.response.get("channel"), call.response.get("ts")
        elif call.method == "files.completeUploadExternal":
            files = call.response.get("files") or [{}]
            stored = self._files.get(str(files[0].get("id")))
            channel, ts = (stored.channel, stored.message_ts) if stored else (None, None)
        elif call.method == RESPONSE_URL and self.responses:
            channel, ts = self.responses[-1].channel, self.responses[-1].message_ts
        else:
            return None
        return self._messages.get((str(channel), str(ts)))

    def thread_printer(self, write: Callable[[str], object] = print) -> OnCall:
        """An `on_call` hook that writes the whole thread each time one of its messages
        changes: what `fota-bot demo` shows as the rollout unfolds."""

        def hook(call: RecordedCall) -> None:
            message = self.message_for(call)
            if message is not None:
                write(self.render_thread(message.channel, message.thread_ts or message.ts))

        return hook

    # -- the Web API ---------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        args: Mapping[str, Any],
        *,
        token: str | None,
        base_url: str | None = None,
    ) -> ApiAnswer:
        """Answer one Web API call as Slack would, record it and tell `on_call`."""
        at = self.clock()
        clean = _normalise_args({k: v for k, v in args.items() if k != "token"})
        answer = self._answer(method, clean, token, (base_url or self.public_url).rstrip("/"), at)
        await self._record(RecordedCall(method, clean, at, answer.status, answer.body))
        return answer

    def _answer(
        self, method: str, args: JSONDict, token: str | None, base_url: str, at: float
    ) -> ApiAnswer:
        fault = self._fault_for(method, api=True)
        if fault is not None:
            return fault
        handler = self._handlers.get(method)
        if handler is None:
            error = RETIRED_METHODS.get(method, "unknown_method")
            return ApiAnswer(200, {"ok": False, "error": error})
        if not token:
            return ApiAnswer(200, {"ok": False, "error": "not_authed"})
        if (method in APP_TOKEN_METHODS) != token.startswith("xapp-"):
            # App-level tokens open Socket Mode connections and nothing else; nor can a bot
            # token open one.
            return ApiAnswer(200, {"ok": False, "error": "not_allowed_token_type"})
        if not (self._app_token_ok(token) if method in APP_TOKEN_METHODS else self._token_ok(token)):
            return ApiAnswer(200, {"ok": False, "error": "invalid_auth"})
        limited = self._enforce_tier(method, args, at)
        if limited is not None:
            return limited
        try:
            body = handler(args, base_url)
        except _SlackError as exc:
            return ApiAnswer(200, {"ok": False, "error": exc.error, **exc.extra})
        headers: dict[str, str] = {}
        if method == "auth.test":
            # Bolt reads the bot's scopes from this header of auth.test.
            headers["x-oauth-scopes"] = ",".join(self.workspace.bot_scopes)
        return ApiAnswer(200, {"ok": True, **body}, headers)

    def _token_ok(self, token: str) -> bool:
        if self.bot_token is not None:
            return token == self.bot_token
        return token.startswith(("xoxb-", "xoxp-"))

    def _app_token_ok(self, token: str) -> bool:
        if self.app_token is not None:
            return token == self.app_token
        return token.startswith("xapp-")

    def _fault_for(self, method: str, *, api: bool) -> ApiAnswer | None:
        if self._down:
            return ApiAnswer(503, {"ok": False, "error": "service_unavailable"})
        for fault in self._faults:
            if fault.remaining <= 0:
                continue
            if fault.method == method or (fault.method is None and api):
                fault.remaining -= 1
                body: JSONDict = {"ok": False, "error": fault.error}
                if fault.retry_after is not None:
                    self.rate_limited_count += 1
                    return ApiAnswer(429, body, {"Retry-After": str(fault.retry_after)})
                return ApiAnswer(fault.status, body)
        self._faults = [f for f in self._faults if f.remaining > 0]
        return None

    def _enforce_tier(self, method: str, args: JSONDict, at: float) -> ApiAnswer | None:
        if not self.enforce_tiers:
            return None
        channel = _arg(args, "channel")
        if channel is not None and _is_user_id(channel):
            channel = self.dm_channel(channel)
        rule = self.tiers.limit_for(method, channel)
        if rule is None:
            return None
        key, limit, window = rule
        times = self._windows.setdefault(key, deque())
        while times and times[0] <= at - window:
            times.popleft()
        if len(times) >= limit:
            # Retry-After: whole seconds until the oldest counted call leaves the window.
            retry_after = max(1, math.ceil(times[0] + window - at))
            self.rate_limited_count += 1
            self.tier_violations.append(TierViolation(method, key, at, limit, window, retry_after))
            return ApiAnswer(
                429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
            )
        times.append(at)
        return None

    async def _record(self, call: RecordedCall) -> None:
        self.calls.append(call)
        self._wake()
        if self.on_call is None:
            return
        try:
            result = self.on_call(call)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # A printing hook (fota-bot demo) must not turn into a Slack failure for the bot.
            log.exception("Slack stand-in on_call hook failed for %s", call.method)

    # -- ids -----------------------------------------------------------------------------------

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _next_ts(self) -> str:
        # Slack's ts is "seconds.micros", unique per channel and increasing; 100 µs steps keep
        # them readable ("1700000000.000100", "1700000000.000200", ...).
        self._ts_micros += 100
        seconds, micros = divmod(self._ts_micros, 1_000_000)
        return f"{seconds}.{micros:06d}"

    # -- channels and messages -----------------------------------------------------------------

    def _resolve_channel(self, args: JSONDict, key: str = "channel") -> str:
        channel = _arg(args, key)
        if channel is None:
            raise _SlackError("channel_not_found")
        if _is_user_id(channel):
            # Posting to a user id lands in the bot's DM with that user (Slack's app-DM rule).
            return self.dm_channel(channel)
        known = self.workspace.channels
        if known is not None and channel not in known and channel not in self._dm_by_user.values():
            raise _SlackError("channel_not_found")
        return channel

    def _content(self, args: JSONDict, *, surface: str = "message") -> tuple[str | None, Any, Any]:
        text = _arg(args, "text") or _arg(args, "markdown_text")
        blocks = args.get("blocks")
        attachments = args.get("attachments")
        if text is not None and len(text) > MAX_MESSAGE_TEXT:
            raise _SlackError("msg_too_long")
        problems = block_problems(blocks, surface=surface)
        if problems:
            raise _SlackError(
                "invalid_blocks", errors=problems, response_metadata={"messages": problems}
            )
        if attachments is not None and not isinstance(attachments, list):
            raise _SlackError("invalid_attachments")
        return text, blocks, attachments

    def _post(
        self,
        channel: str,
        *,
        text: str,
        blocks: list[JSONDict],
        attachments: list[JSONDict],
        thread_ts: str | None,
        via: str,
        files: list[JSONDict] | None = None,
        metadata: JSONDict | None = None,
    ) -> Message:
        root: Message | None = None
        if thread_ts is not None:
            root = self._messages.get((channel, thread_ts))
            if root is not None and root.is_reply:
                # A reply to a reply joins the parent's thread, as in Slack.
                root = self._messages.get((channel, root.thread_ts or ""))
            if root is not None:
                thread_ts = root.ts
        ws = self.workspace
        at = self.clock()
        message = Message(
            channel=channel,
            ts=self._next_ts(),
            text=text,
            blocks=blocks,
            attachments=attachments,
            thread_ts=thread_ts,
            user=ws.bot_user_id,
            bot_id=ws.bot_id,
            team=ws.team_id,
            history=[MessageVersion(text, blocks, attachments, at, via)],
            files=files or [],
            metadata=metadata,
        )
        self._messages[(channel, message.ts)] = message
        self._channel_order.setdefault(channel, []).append(message)
        if root is not None:
            root.replies.append(message)
        return message

    def _edit(
        self,
        message: Message,
        *,
        text: str | None,
        blocks: list[JSONDict] | None,
        attachments: list[JSONDict] | None,
        via: str,
    ) -> None:
        # Slack keeps what an update leaves out; an empty list clears blocks or attachments.
        if text is not None:
            message.text = text
        if blocks is not None:
            message.blocks = blocks
        if attachments is not None:
            message.attachments = attachments
        message.edited_ts = self._next_ts()
        message.history.append(
            MessageVersion(message.text, message.blocks, message.attachments, self.clock(), via)
        )

    def _find_live(self, channel: str, ts: str | None) -> Message:
        message = self._messages.get((channel, ts or ""))
        if message is None or message.deleted:
            raise _SlackError("message_not_found")
        return message

    # -- method handlers (args already normalised; raise _SlackError for ok:false) -------------

    def _auth_test(self, args: JSONDict, base_url: str) -> JSONDict:
        ws = self.workspace
        return {
            "url": ws.url,
            "team": ws.team_name,
            "user": ws.bot_name,
            "team_id": ws.team_id,
            "user_id": ws.bot_user_id,
            "bot_id": ws.bot_id,
            "enterprise_id": ws.enterprise_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, args: JSONDict, base_url: str) -> JSONDict:
        channel = self._resolve_channel(args)
        text, blocks, attachments = self._content(args)
        if text is None and not blocks and not attachments:
            raise _SlackError("no_text")
        metadata = args.get("metadata")
        message = self._post(
            channel,
            text=text or "",
            blocks=list(blocks or []),
            attachments=list(attachments or []),
            thread_ts=_arg(args, "thread_ts"),
            via="chat.postMessage",
            metadata=metadata if isinstance(metadata, dict) else None,
        )
        return {"channel": channel, "ts": message.ts, "message": message.to_slack()}

    def _chat_update(self, args: JSONDict, base_url: str) -> JSONDict:
        channel = self._resolve_channel(args)
        message = self._find_live(channel, _arg(args, "ts"))
        text, blocks, attachments = self._content(args)
        if text is None and blocks is None and attachments is None:
            raise _SlackError("no_text")
        self._edit(
            message,
            text=text,
            blocks=list(blocks) if blocks is not None else None,
            attachments=list(attachments) if attachments is not None else None,
            via="chat.update",
        )
        return {
            "channel": channel,
            "ts": message.ts,
            "text": message.text,
            "message": message.to_slack(),
        }

    def _chat_post_ephemeral(self, args: JSONDict, base_url: str) -> JSONDict:
        channel = self._resolve_channel(args)
        user = _arg(args, "user")
        if user is None or not self._user_exists(user):
            raise _SlackError("user_not_found")
        text, blocks, _ = self._content(args)
        if text is None and not blocks:
            raise _SlackError("no_text")
        ts = self._next_ts()
        self.ephemerals.append(
            Ephemeral(
                channel,
                user,
                text or "",
                list(blocks or []),
                _arg(args, "thread_ts"),
                ts,
                self.clock(),
            )
        )
        return {"message_ts": ts}

    def _chat_get_permalink(self, args: JSONDict, base_url: str) -> JSONDict:
        channel = self._resolve_channel(args)
        message = self._find_live(channel, _arg(args, "message_ts"))
        link = f"{self.workspace.url}archives/{channel}/p{message.ts.replace('.', '')}"
        if message.is_reply:
            link += f"?thread_ts={message.thread_ts}&cid={channel}"
        return {"channel": channel, "permalink": link}

    def _chat_delete(self, args: JSONDict, base_url: str) -> JSONDict:
        channel = self._resolve_channel(args)
        message = self._find_live(channel, _arg(args, "ts"))
        message.deleted = True
        return {"channel": channel, "ts": message.ts}

    def _conversations_open(self, args: JSONDict, base_url: str) -> JSONDict:
        existing = _arg(args, "channel")
        users = [u.strip() for u in (_arg(args, "users") or "").split(",") if u.strip()]
        if existing is not None:
            return {"channel": {"id": existing}, "no_op": True, "already_open": True}
        if not users:
            raise _SlackError("users_list_not_supplied")
        if len(users) > 8:
            raise _SlackError("too_many_users")
        for user in users:
            if not self._user_exists(user):
                raise _SlackError("user_not_found")
        if len(users) == 1:
            already = users[0] in self._dm_by_user
            channel_id = self.dm_channel(users[0])
            out: JSONDict = {"id": channel_id}
            if _truthy(args.get("return_im")):
                out.update({"is_im": True, "user": users[0], "created": int(self.clock())})
            return {"channel": out, "no_op": already, "already_open": already}
        return {"channel": {"id": "G" + "".join(sorted(users))}}

    def _conversations_info(self, args: JSONDict, base_url: str) -> JSONDict:
        channel = _arg(args, "channel")
        ws = self.workspace
        private = bool(channel) and str(channel).startswith("G")
        # Slack's scope rule for this method: channels:read for public channels, groups:read
        # for private ones; without it the answer is missing_scope, naming what is needed.
        needed = "groups:read" if private else "channels:read"
        if needed not in ws.bot_scopes:
            raise _SlackError("missing_scope", needed=needed, provided=",".join(ws.bot_scopes))
        if channel is None or not (channel[:1] in "CG" and (ws.channels is None or channel in ws.channels)):
            raise _SlackError("channel_not_found")
        member = ws.bot_channels is None or channel in ws.bot_channels
        if private and not member:
            raise _SlackError("channel_not_found")  # a private channel is invisible to outsiders
        return {
            "channel": {
                "id": channel,
                "name": channel.lower(),
                "is_channel": not private,
                "is_private": private,
                "is_archived": channel in ws.archived_channels,
                "is_member": member,
                "created": 1700000000,
            }
        }

    def _usergroups_users_list(self, args: JSONDict, base_url: str) -> JSONDict:
        group = _arg(args, "usergroup")
        if group is None or group not in self.workspace.usergroups:
            raise _SlackError("no_such_subteam")
        return {"users": list(self.workspace.usergroups[group])}

    def _user_exists(self, user_id: str) -> bool:
        if user_id in self.workspace.users or user_id == self.workspace.bot_user_id:
            return True
        return self.workspace.auto_users and _is_user_id(user_id)

    def _users_info(self, args: JSONDict, base_url: str) -> JSONDict:
        if "users:read" not in self.workspace.bot_scopes:
            raise _SlackError("missing_scope", needed="users:read", provided=",".join(self.workspace.bot_scopes))
        user_id = _arg(args, "user")
        if user_id is None or not self._user_exists(user_id):
            raise _SlackError("user_not_found")
        ws = self.workspace
        name = user_id.lower()
        user: JSONDict = {
            "id": user_id,
            "team_id": ws.team_id,
            "name": name,
            "real_name": name,
            "deleted": False,
            "is_bot": user_id == ws.bot_user_id,
            "tz": "Etc/UTC",
            "tz_offset": 0,
            "profile": {"display_name": name, "real_name": name},
        }
        user.update(ws.users.get(user_id, {}))
        return {"user": user}

    # -- views -----------------------------------------------------------------------------------

    def _view_arg(self, args: JSONDict, expected_type: str) -> JSONDict:
        view = args.get("view")
        problems = view_problems(view, expected_type=expected_type)
        if problems:
            raise _SlackError("invalid_arguments", response_metadata={"messages": problems})
        assert isinstance(view, dict)
        return view

    def _use_trigger(self, args: JSONDict) -> str:
        trigger = _arg(args, "trigger_id") or _arg(args, "interactivity_pointer")
        if trigger is None:
            raise _SlackError("invalid_arguments")
        issued = self._triggers.get(trigger)
        if issued is not None:  # only triggers minted here are checked; others are trusted
            if issued.used:
                raise _SlackError("exchanged_trigger_id")
            if self.clock() - issued.issued > TRIGGER_TTL:
                raise _SlackError("expired_trigger_id")
            issued.used = True
        return trigger

    def _new_view(
        self,
        view: JSONDict,
        *,
        kind: str,
        opened_by: str,
        trigger_id: str | None,
        user_id: str | None,
        previous: View | None,
    ) -> View:
        view_id = f"V{self._next_serial():08d}"
        created = View(
            id=view_id,
            type=kind,
            view=view,
            hash=self._view_hash(),
            opened_by=opened_by,
            user_id=user_id,
            trigger_id=trigger_id,
            external_id=str(view.get("external_id") or ""),
            root_view_id=previous.root_view_id if previous else view_id,
            previous_view_id=previous.id if previous else None,
            history=[view],
        )
        self._views[view_id] = created
        return created

    def _view_hash(self) -> str:
        return f"{int(self.clock())}.h{self._next_serial():07d}"

    def _views_open(self, args: JSONDict, base_url: str) -> JSONDict:
        view = self._view_arg(args, "modal")
        trigger = self._use_trigger(args)
        created = self._new_view(
            view,
            kind="modal",
            opened_by="views.open",
            trigger_id=trigger,
            user_id=None,
            previous=None,
        )
        return {"view": created.to_slack(self.workspace)}

    def _views_push(self, args: JSONDict, base_url: str) -> JSONDict:
        view = self._view_arg(args, "modal")
        trigger = self._use_trigger(args)
        modals = [v for v in self._views.values() if v.type == "modal"]
        previous = modals[-1] if modals else None
        depth = 1
        cursor = previous
        while cursor is not None and cursor.previous_view_id is not None:
            depth += 1
            cursor = self._views.get(cursor.previous_view_id)
        if previous is not None and depth >= MAX_MODAL_STACK:
            raise _SlackError("push_limit_reached")
        created = self._new_view(
            view,
            kind="modal",
            opened_by="views.push",
            trigger_id=trigger,
            user_id=None,
            previous=previous,
        )
        return {"view": created.to_slack(self.workspace)}

    def _views_update(self, args: JSONDict, base_url: str) -> JSONDict:
        view_id = _arg(args, "view_id")
        external_id = _arg(args, "external_id")
        if view_id is None and external_id is None:
            raise _SlackError("invalid_arguments")
        target = self._views.get(view_id or "")
        if target is None and external_id is not None:
            target = next((v for v in self._views.values() if v.external_id == external_id), None)
        if target is None:
            raise _SlackError("not_found")
        view = self._view_arg(args, target.type)
        expected_hash = _arg(args, "hash")
        if expected_hash is not None and expected_hash != target.hash:
            # Slack's guard against racing updates of the same view.
            raise _SlackError("hash_conflict")
        target.view = view
        target.hash = self._view_hash()
        target.history.append(view)
        return {"view": target.to_slack(self.workspace)}

    def _views_publish(self, args: JSONDict, base_url: str) -> JSONDict:
        user_id = _arg(args, "user_id")
        if user_id is None or not self._user_exists(user_id):
            raise _SlackError("user_not_found")
        view = self._view_arg(args, "home")
        existing = self.home_view(user_id)
        expected_hash = _arg(args, "hash")
        if existing is None:
            existing = self._new_view(
                view,
                kind="home",
                opened_by="views.publish",
                trigger_id=None,
                user_id=user_id,
                previous=None,
            )
            self._home_by_user[user_id] = existing.id
        else:
            if expected_hash is not None and expected_hash != existing.hash:
                raise _SlackError("hash_conflict")
            existing.view = view
            existing.hash = self._view_hash()
            existing.history.append(view)
        return {"view": existing.to_slack(self.workspace)}

    # -- files -----------------------------------------------------------------------------------

    def _new_file(
        self, name: str, *, title: str | None, user: str, mimetype: str | None
    ) -> StoredFile:
        file_id = f"F{self._next_serial():010d}"
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        guessed = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
        stored = StoredFile(
            id=file_id,
            name=name,
            title=title or name,
            user=user,
            created=int(self._ts_micros // 1_000_000),
            mimetype=guessed,
            filetype={"txt": "text", "": "binary"}.get(extension, extension),
            public_url=self.public_url,
        )
        self._files[file_id] = stored
        return stored

    def _files_get_upload_url_external(self, args: JSONDict, base_url: str) -> JSONDict:
        filename = _arg(args, "filename")
        length = _arg(args, "length")
        if filename is None or length is None or not length.isdigit():
            raise _SlackError("invalid_arguments")
        stored = self._new_file(
            filename, title=None, user=self.workspace.bot_user_id, mimetype=None
        )
        stored.from_bot = True
        stored.declared_length = int(length)
        stored.alt_txt = _arg(args, "alt_txt")
        stored.snippet_type = _arg(args, "snippet_type")
        stored.public_url = base_url
        return {"upload_url": f"{base_url}/upload/{stored.id}", "file_id": stored.id}

    def _files_complete_upload_external(self, args: JSONDict, base_url: str) -> JSONDict:
        items = args.get("files")
        if not isinstance(items, list) or not items:
            raise _SlackError("invalid_arguments")
        stored_files: list[StoredFile] = []
        for item in items:
            stored = self._files.get(str(item.get("id"))) if isinstance(item, dict) else None
            # Completing a file whose bytes never arrived is refused like an unknown file.
            if stored is None or not stored.from_bot or stored.content is None:
                raise _SlackError("file_not_found")
            if isinstance(item, dict) and item.get("title"):
                stored.title = str(item["title"])
            stored_files.append(stored)
        channel_arg = _arg(args, "channel_id") or (_arg(args, "channels") or "").split(",")[0]
        channel = self._resolve_channel({"channel": channel_arg}) if channel_arg else None
        thread_ts = _arg(args, "thread_ts")
        comment = _arg(args, "initial_comment")
        for stored in stored_files:
            stored.completed = True
            stored.channel = channel
            stored.thread_ts = thread_ts
            stored.initial_comment = comment
        if channel is not None:
            # Sharing to a channel posts one message carrying the files and the comment.
            blocks = args.get("blocks")
            message = self._post(
                channel,
                text=comment or "",
                blocks=list(blocks) if isinstance(blocks, list) else [],
                attachments=[],
                thread_ts=thread_ts,
                via="files.completeUploadExternal",
                files=[f.to_slack(self.workspace) for f in stored_files],
            )
            for stored in stored_files:
                stored.message_ts = message.ts
        return {"files": [f.to_slack(self.workspace) for f in stored_files]}

    def _files_info(self, args: JSONDict, base_url: str) -> JSONDict:
        stored = self._files.get(_arg(args, "file") or "")
        if stored is None or not stored.completed:
            raise _SlackError("file_not_found")
        return {
            "file": stored.to_slack(self.workspace),
            "comments": [],
            "response_metadata": {"next_cursor": ""},
        }

    # -- non-Web-API routes ----------------------------------------------------------------------

    async def receive_upload(self, file_id: str, content: bytes) -> Response:
        """``POST /upload/{file_id}``: the pre-signed URL files.getUploadURLExternal gave out."""
        at = self.clock()
        answer = self._fault_for(UPLOAD, api=False)
        stored = self._files.get(file_id)
        if answer is not None:
            response: Response = JSONResponse(answer.body, answer.status, dict(answer.headers))
            status, body = answer.status, answer.body
        elif stored is None or not stored.from_bot:
            response = PlainTextResponse("Not Found", 404)
            status, body = 404, {"ok": False, "error": "not_found"}
        else:
            stored.content = content
            # Slack's upload host answers in plain text, which slack_sdk reads as such.
            response = PlainTextResponse(f"OK - {len(content)}")
            status, body = 200, {"ok": True}
        await self._record(
            RecordedCall(UPLOAD, {"file_id": file_id, "length": len(content)}, at, status, body)
        )
        return response

    async def serve_download(self, file_id: str, name: str, authorization: str | None) -> Response:
        """``GET /files/{file_id}/{name}``: a file's url_private(_download)."""
        at = self.clock()
        token = _bearer(authorization)
        authorized = token is not None and self._token_ok(token)
        answer = self._fault_for(DOWNLOAD, api=False)
        stored = self._files.get(file_id)
        response: Response
        if answer is not None:
            response = JSONResponse(answer.body, answer.status, dict(answer.headers))
            status = answer.status
        elif not authorized:
            # Slack does not answer 401 here: without a valid token it serves its HTML
            # sign-in page with 200, a classic trap when a bot forgets the Authorization header.
            response = HTMLResponse(_SIGN_IN_PAGE)
            status = 200
        elif stored is None or stored.content is None or stored.name != name:
            response = PlainTextResponse("Not Found", 404)
            status = 404
        else:
            response = Response(stored.content, media_type=stored.mimetype)
            status = 200
        await self._record(
            RecordedCall(
                DOWNLOAD,
                {"file_id": file_id, "name": name, "authorized": authorized},
                at,
                status,
                {"ok": status == 200 and authorized},
            )
        )
        return response

    async def receive_response(self, response_id: str, body: JSONDict) -> ApiAnswer:
        """``POST /response/{id}``: what the bot sent to a slash command's or click's
        response_url."""
        at = self.clock()
        answer = self._fault_for(RESPONSE_URL, api=False)
        if answer is None:
            answer = self._apply_response(response_id, body, at)
        await self._record(
            RecordedCall(
                RESPONSE_URL, {"response_id": response_id, **body}, at, answer.status, answer.body
            )
        )
        return answer

    def _apply_response(self, response_id: str, body: JSONDict, at: float) -> ApiAnswer:
        minted = self._response_urls.get(response_id)
        if minted is not None:
            if at - minted.created > RESPONSE_URL_TTL:
                return ApiAnswer(404, {"ok": False, "error": "expired_url"})
            if minted.uses >= RESPONSE_URL_MAX_USES:
                return ApiAnswer(404, {"ok": False, "error": "used_url"})
            minted.uses += 1
        channel = minted.channel if minted else None
        message_ts = minted.message_ts if minted else None
        self.responses.append(
            ResponsePost(
                response_id, body, at, channel, message_ts, minted.user_id if minted else None
            )
        )
        blocks = body.get("blocks")
        if blocks is not None:
            problems = block_problems(blocks)
            if problems:
                return ApiAnswer(400, {"ok": False, "error": "invalid_blocks", "errors": problems})
        original = self._messages.get((channel or "", message_ts or ""))
        if original is not None and not original.deleted:
            if _truthy(body.get("delete_original")):
                original.deleted = True
            elif _truthy(body.get("replace_original")):
                self._edit(
                    original,
                    text=_arg(body, "text"),
                    blocks=list(blocks) if isinstance(blocks, list) else None,
                    attachments=None,
                    via=RESPONSE_URL,
                )
                return ApiAnswer(200, {"ok": True})
        if channel is not None and body.get("response_type") == "in_channel":
            # An in_channel response is posted to the channel for everyone to see.
            self._post(
                channel,
                text=str(body.get("text") or ""),
                blocks=list(blocks) if isinstance(blocks, list) else [],
                attachments=[],
                thread_ts=_arg(body, "thread_ts"),
                via=RESPONSE_URL,
            )
        return ApiAnswer(200, {"ok": True})

    # -- Socket Mode -----------------------------------------------------------------------------

    def _apps_connections_open(self, args: JSONDict, base_url: str) -> JSONDict:
        # Slack answers wss://wss-primary.slack.com/link/?ticket=…; here the ticket is a path.
        ticket = f"L{self._next_serial():08d}"
        self._socket_tickets[ticket] = self.clock()
        scheme, _, rest = base_url.partition("://")
        ws_scheme = "wss" if scheme == "https" else "ws"
        return {"url": f"{ws_scheme}://{rest}/socket/{ticket}"}

    @property
    def socket_connections(self) -> list[SocketConnection]:
        """Every Socket Mode connection the app opened, oldest first, closed ones included."""
        return list(self._sockets)

    def _open_sockets(self) -> list[SocketConnection]:
        return [c for c in self._sockets if not c.closed]

    async def wait_for_socket(self, count: int = 1, *, within: float = 5.0) -> SocketConnection:
        """The `count`-th Socket Mode connection, once it is open and greeted with hello."""
        await self.wait_for(
            lambda: len(self._sockets) >= count,
            within=within,
            what=f"Socket Mode connection #{count}",
        )
        return self._sockets[count - 1]

    async def _newest_open_socket(self, within: float) -> SocketConnection:
        await self.wait_for(
            lambda: bool(self._open_sockets()), within=within, what="an open Socket Mode connection"
        )
        return self._open_sockets()[-1]

    async def socket_send(self, envelope: Mapping[str, Any], *, within: float = 5.0) -> str:
        """Push one envelope (see `socket_envelope`) to the app over its newest open
        connection, waiting up to `within` seconds for one; returns its envelope_id."""
        connection = await self._newest_open_socket(within)
        message = dict(envelope)
        await connection.send(message)
        return str(message.get("envelope_id") or "")

    async def socket_disconnect(
        self, reason: str = "refresh_requested", *, within: float = 5.0
    ) -> SocketConnection:
        """Ask the app to move to a new connection, as Slack does before it recycles one
        (``warning``, ``refresh_requested``; ``link_disabled`` when Socket Mode is turned off).
        Returns the connection the request went over."""
        connection = await self._newest_open_socket(within)
        await connection.send(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": _SOCKET_HOST}}
        )
        return connection

    async def wait_for_socket_ack(self, envelope_id: str, *, within: float = 5.0) -> SocketAck:
        """The app's acknowledgement of envelope `envelope_id`, once it arrives."""

        def ack() -> SocketAck | None:
            return next((a for a in self.socket_acks if a.envelope_id == envelope_id), None)

        await self.wait_for(
            lambda: ack() is not None, within=within, what=f"the ack of envelope {envelope_id}"
        )
        found = ack()
        assert found is not None
        return found

    async def serve_socket(self, websocket: WebSocket, ticket: str) -> None:
        """``/socket/{ticket}``: one Socket Mode connection, for as long as the app keeps it."""
        if self._down or self._socket_tickets.pop(ticket, None) is None:
            # A URL apps.connections.open did not hand out, or one already used: refused at
            # the handshake (HTTP 403), and the app has to ask for a new one.
            await websocket.close(code=SOCKET_REFUSED)
            return
        await websocket.accept()
        connection = SocketConnection(ticket, self.clock(), websocket)
        await connection.send(
            {
                "type": "hello",
                "num_connections": len(self._open_sockets()) + 1,
                "debug_info": {
                    "host": _SOCKET_HOST,
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self.workspace.app_id},
            }
        )
        # Registered only once greeted: no envelope can overtake the hello.
        self._sockets.append(connection)
        self._wake()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    connection.close_code = message.get("code")
                    break
                raw = message.get("text")
                if raw is None:
                    raw = (message.get("bytes") or b"").decode("utf-8", "replace")
                self._receive_socket_message(connection, raw)
        finally:
            connection.closed = True
            self._wake()

    def _receive_socket_message(self, connection: SocketConnection, raw: str) -> None:
        try:
            decoded: Any = json.loads(raw)
        except json.JSONDecodeError:
            decoded = raw
        connection.received.append(decoded)
        if isinstance(decoded, dict) and isinstance(decoded.get("envelope_id"), str):
            payload = decoded.get("payload")
            self.socket_acks.append(
                SocketAck(
                    decoded["envelope_id"],
                    payload if isinstance(payload, dict) else None,
                    self.clock(),
                    connection.id,
                )
            )
        self._wake()


_SOCKET_HOST = "applink-standin"


def socket_envelope(
    kind: str,
    payload: Mapping[str, Any],
    *,
    envelope_id: str | None = None,
    accepts_response_payload: bool | None = None,
) -> JSONDict:
    """A Socket Mode envelope as Slack sends it: `kind` is ``slash_commands``,
    ``interactive`` or ``events_api``; `payload` what Slack would have POSTed over HTTP
    (a slash command's fields, an interaction's payload, an event callback) as JSON.

    ``accepts_response_payload`` defaults as Slack sets it: true where the HTTP response body
    would carry an answer (slash commands, view_submission, block_suggestion).
    """
    if accepts_response_payload is None:
        accepts_response_payload = kind == "slash_commands" or (
            kind == "interactive" and payload.get("type") in ("view_submission", "block_suggestion")
        )
    envelope: JSONDict = {
        "envelope_id": envelope_id or str(uuid.uuid4()),
        "payload": dict(payload),
        "type": kind,
        "accepts_response_payload": accepts_response_payload,
    }
    if kind == "events_api":
        envelope["retry_attempt"] = 0
        envelope["retry_reason"] = ""
    return envelope


_SIGN_IN_PAGE = (
    "<!DOCTYPE html><html><head><title>Slack</title></head>"
    "<body><h1>Sign in to your workspace</h1></body></html>"
)


def _bearer(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None
    return None


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------


async def _request_args(request: Request) -> JSONDict | None:
    """Query string, then form or JSON body, merged as Slack does; None for a bad JSON body."""
    args: JSONDict = dict(request.query_params)
    raw = await request.body()
    if not raw:
        return args
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(body, dict):
            return None
        args.update(body)
    elif content_type in ("application/x-www-form-urlencoded", ""):
        args.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return args


def _json_response(answer: ApiAnswer) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status, headers=dict(answer.headers))


def create_slack_standin_app(standin: SlackStandIn) -> Starlette:
    """A Starlette app serving `standin` at Slack's paths.

    ``/api/{method}`` (GET or POST, like slack.com/api/), ``POST /upload/{file_id}``,
    ``GET /files/{file_id}/{name}``, ``POST /response/{id}`` and the Socket Mode WebSocket
    ``/socket/{ticket}`` (served only where uvicorn has a WebSocket library).
    """

    async def api(request: Request) -> Response:
        method = request.path_params["method"]
        args = await _request_args(request)
        token = _bearer(request.headers.get("authorization"))
        if args is None:
            await standin._record(
                RecordedCall(
                    method, {}, standin.clock(), 200, {"ok": False, "error": "invalid_json"}
                )
            )
            return JSONResponse({"ok": False, "error": "invalid_json"})
        if token is None and isinstance(args.get("token"), str):
            token = args["token"]
        base_url = str(request.base_url).rstrip("/")
        return _json_response(await standin.call(method, args, token=token, base_url=base_url))

    async def upload(request: Request) -> Response:
        return await standin.receive_upload(request.path_params["file_id"], await request.body())

    async def download(request: Request) -> Response:
        return await standin.serve_download(
            request.path_params["file_id"],
            request.path_params["name"],
            request.headers.get("authorization"),
        )

    async def respond(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            # response_url also takes a form-encoded payload=<json>, as incoming webhooks do.
            form = dict(parse_qsl(raw.decode("utf-8", "replace")))
            try:
                body = json.loads(form.get("payload", ""))
            except json.JSONDecodeError:
                return PlainTextResponse("invalid_payload", 400)
        if not isinstance(body, dict):
            return PlainTextResponse("invalid_payload", 400)
        return _json_response(
            await standin.receive_response(request.path_params["response_id"], body)
        )

    async def socket(websocket: WebSocket) -> None:
        await standin.serve_socket(websocket, websocket.path_params["ticket"])

    return Starlette(
        routes=[
            Route("/api/{method}", api, methods=["GET", "POST"]),
            Route("/upload/{file_id}", upload, methods=["POST"]),
            Route("/files/{file_id}/{name}", download, methods=["GET"]),
            Route("/response/{response_id}", respond, methods=["POST"]),
            WebSocketRoute("/socket/{ticket}", socket),
        ]
    )
