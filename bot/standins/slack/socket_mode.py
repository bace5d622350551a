"""The stand-in's Socket Mode server: what Slack's ``wss://wss-primary.slack.com/link`` does.

``apps.connections.open`` (with an app-level ``xapp-`` token) hands out a WebSocket URL,
``ws://HOST/socket/{ticket}``, good for one connection. The app is greeted with ``hello``; a
test pushes envelopes to it (`SlackStandIn.socket_send`), asks it to reconnect
(`SlackStandIn.socket_disconnect`) and waits for its acknowledgements
(`SlackStandIn.wait_for_socket_ack`).

Serving WebSockets needs uvicorn's ``wsproto``, a main dependency for this reason:
``serve_in_loop(app, websockets=True)``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket

from bot.standins.slack.records import JSONDict

#: The close code the stand-in's Socket Mode server refuses a connection with (policy violation).
SOCKET_REFUSED = 1008

_SOCKET_HOST = "applink-standin"

#: `SlackStandIn.wait_for`: return once the predicate holds, re-checked at every wake.
WaitFor = Callable[..., Awaitable[None]]


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

class SocketModeServer:
    """Tickets, connections and acknowledgements of the stand-in's Socket Mode server.

    It shares the stand-in's clock, its waiters (`wait_for` / `wake`: no sleeps, woken by
    each frame) and its outage switch (`is_down`), so a test sees one Slack.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        wait_for: WaitFor,
        wake: Callable[[], None],
        is_down: Callable[[], bool],
        app_id: Callable[[], str],
    ) -> None:
        self._clock = clock
        self._wait_for = wait_for
        self._wake = wake
        self._is_down = is_down
        self._app_id = app_id
        self.acks: list[SocketAck] = []
        self._tickets: dict[str, float] = {}
        self._sockets: list[SocketConnection] = []

    def open_url(self, ticket: str, base_url: str) -> str:
        """``apps.connections.open``'s URL for `ticket`, good for one connection."""
        # Slack answers wss://wss-primary.slack.com/link/?ticket=…; here the ticket is a path.
        self._tickets[ticket] = self._clock()
        scheme, _, rest = base_url.partition("://")
        ws_scheme = "wss" if scheme == "https" else "ws"
        return f"{ws_scheme}://{rest}/socket/{ticket}"

    @property
    def connections(self) -> list[SocketConnection]:
        """Every Socket Mode connection the app opened, oldest first, closed ones included."""
        return list(self._sockets)

    def _open_sockets(self) -> list[SocketConnection]:
        return [c for c in self._sockets if not c.closed]

    async def wait_for_socket(self, count: int = 1, *, within: float = 5.0) -> SocketConnection:
        """The `count`-th Socket Mode connection, once it is open and greeted with hello."""
        await self._wait_for(
            lambda: len(self._sockets) >= count,
            within=within,
            what=f"Socket Mode connection #{count}",
        )
        return self._sockets[count - 1]

    async def _newest_open_socket(self, within: float) -> SocketConnection:
        await self._wait_for(
            lambda: bool(self._open_sockets()), within=within, what="an open Socket Mode connection"
        )
        return self._open_sockets()[-1]

    async def send(self, envelope: Mapping[str, Any], *, within: float = 5.0) -> str:
        """Push one envelope (see `socket_envelope`) to the app over its newest open
        connection, waiting up to `within` seconds for one; returns its envelope_id."""
        connection = await self._newest_open_socket(within)
        message = dict(envelope)
        await connection.send(message)
        return str(message.get("envelope_id") or "")

    async def disconnect(
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

    async def wait_for_ack(self, envelope_id: str, *, within: float = 5.0) -> SocketAck:
        """The app's acknowledgement of envelope `envelope_id`, once it arrives."""

        def ack() -> SocketAck | None:
            return next((a for a in self.acks if a.envelope_id == envelope_id), None)

        await self._wait_for(
            lambda: ack() is not None, within=within, what=f"the ack of envelope {envelope_id}"
        )
        found = ack()
        assert found is not None
        return found

    async def serve(self, websocket: WebSocket, ticket: str) -> None:
        """``/socket/{ticket}``: one Socket Mode connection, for as long as the app keeps it."""
        if self._is_down() or self._tickets.pop(ticket, None) is None:
            # A URL apps.connections.open did not hand out, or one already used: refused at
            # the handshake (HTTP 403), and the app has to ask for a new one.
            await websocket.close(code=SOCKET_REFUSED)
            return
        await websocket.accept()
        connection = SocketConnection(ticket, self._clock(), websocket)
        await connection.send(
            {
                "type": "hello",
                "num_connections": len(self._open_sockets()) + 1,
                "debug_info": {
                    "host": _SOCKET_HOST,
                    "build_number": 1,
                    "approximate_connection_time": 18060,
                },
                "connection_info": {"app_id": self._app_id()},
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
                self._receive(connection, raw)
        finally:
            connection.closed = True
            self._wake()

    def _receive(self, connection: SocketConnection, raw: str) -> None:
        try:
            decoded: Any = json.loads(raw)
        except json.JSONDecodeError:
            decoded = raw
        connection.received.append(decoded)
        if isinstance(decoded, dict) and isinstance(decoded.get("envelope_id"), str):
            payload = decoded.get("payload")
            self.acks.append(
                SocketAck(
                    decoded["envelope_id"],
                    payload if isinstance(payload, dict) else None,
                    self._clock(),
                    connection.id,
                )
            )
        self._wake()


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
