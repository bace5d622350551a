"""What the Slack stand-in records and the numbers it holds the bot to: the workspace it
simulates, every call, message (with its edits), ephemeral, response_url post, view and file,
and Slack's published rate tiers and per-method limits.

Plain records, no I/O: `web_api.SlackStandIn` fills them, tests read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

JSONDict = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# Slack's published numbers this stand-in enforces. Sources: docs.slack.dev "Rate limits"
# and each method's reference page (Block Kit's own limits are in `bot.blockkit`).
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
