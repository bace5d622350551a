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

And Slack's Socket Mode server (`socket_mode`): ``apps.connections.open`` hands out the URL
of a WebSocket the stand-in serves.

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
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.websockets import WebSocket

from bot.blockkit import block_problems, view_problems
from bot.standins.slack.records import (
    APP_TOKEN_METHODS,
    DOWNLOAD,
    MAX_MESSAGE_TEXT,
    MAX_MODAL_STACK,
    RESPONSE_URL,
    RESPONSE_URL_MAX_USES,
    RESPONSE_URL_TTL,
    RETIRED_METHODS,
    TRIGGER_TTL,
    UPLOAD,
    ApiAnswer,
    Ephemeral,
    JSONDict,
    Message,
    MessageVersion,
    RecordedCall,
    ResponsePost,
    StoredFile,
    TierPolicy,
    TierViolation,
    View,
    Workspace,
)
from bot.standins.slack.render import render_thread
from bot.standins.slack.socket_mode import SocketAck, SocketConnection, SocketModeServer

log = logging.getLogger(__name__)

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
        self.socket_mode = SocketModeServer(
            clock=lambda: self.clock(),
            wait_for=self.wait_for,
            wake=self._wake,
            is_down=lambda: self._down,
            app_id=lambda: self.workspace.app_id,
        )

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
        """The thread as terminal text (`render.render_thread`)."""
        return render_thread(self.thread(channel, ts))

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
        token = bearer_token(authorization)
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

    # -- Socket Mode (served by `socket_mode.SocketModeServer`) ---------------------------------

    def _apps_connections_open(self, args: JSONDict, base_url: str) -> JSONDict:
        return {"url": self.socket_mode.open_url(f"L{self._next_serial():08d}", base_url)}

    @property
    def socket_acks(self) -> list[SocketAck]:
        """The app's acknowledgements of envelopes, in the order they arrived."""
        return self.socket_mode.acks

    @property
    def socket_connections(self) -> list[SocketConnection]:
        """Every Socket Mode connection the app opened, oldest first, closed ones included."""
        return self.socket_mode.connections

    async def wait_for_socket(self, count: int = 1, *, within: float = 5.0) -> SocketConnection:
        """The `count`-th Socket Mode connection, once it is open and greeted with hello."""
        return await self.socket_mode.wait_for_socket(count, within=within)

    async def socket_send(self, envelope: Mapping[str, Any], *, within: float = 5.0) -> str:
        """Push one envelope (see `socket_envelope`) to the app over its newest open
        connection, waiting up to `within` seconds for one; returns its envelope_id."""
        return await self.socket_mode.send(envelope, within=within)

    async def socket_disconnect(
        self, reason: str = "refresh_requested", *, within: float = 5.0
    ) -> SocketConnection:
        """Ask the app to move to a new connection, as Slack does before it recycles one."""
        return await self.socket_mode.disconnect(reason, within=within)

    async def wait_for_socket_ack(self, envelope_id: str, *, within: float = 5.0) -> SocketAck:
        """The app's acknowledgement of envelope `envelope_id`, once it arrives."""
        return await self.socket_mode.wait_for_ack(envelope_id, within=within)

    async def serve_socket(self, websocket: WebSocket, ticket: str) -> None:
        """``/socket/{ticket}``: one Socket Mode connection, for as long as the app keeps it."""
        await self.socket_mode.serve(websocket, ticket)


_SIGN_IN_PAGE = (
    "<!DOCTYPE html><html><head><title>Slack</title></head>"
    "<body><h1>Sign in to your workspace</h1></body></html>"
)


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip() or None
    return None
