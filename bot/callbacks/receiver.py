"""`POST /thingspace/callbacks/{token}`: keep ThingSpace's callback, answer, wake the processor.

Checks, in this order: the path token (404, as for any unknown path), the
optional source allow-list (403), the body size (413), JSON (400). Then the raw body
is committed to the database and only then answered 200, so a 200 always means the
row is on disk; the processor is woken after the answer has gone out. Nothing here
calls the network or applies the update: ThingSpace's delivery retries are not
documented, so answering fast and never losing an acknowledged payload is the job.

Callbacks that arrive together are committed together (`GroupCommit`): each handler
waits for the commit that holds its row, and one commit serves every callback read in the
same turn of the event loop. A lone callback is committed on the very next turn, so light
traffic waits for nothing; a burst costs one commit instead of one each.

v3 callbacks carry no signature (docs/thingspace.md): the secret path token and
Verizon's published source addresses are all there is to check.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bot.request_body import read_limited
from bot.settings import IPNetwork
from storage.store import Store

log = logging.getLogger("bot.callbacks")

CALLBACK_PATH = "/thingspace/callbacks/{token}"
MAX_BODY = 1024 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_JSON = "application/json"
_OK = b'{"ok":true}'
_FORBIDDEN = b'{"error":"source address not allowed"}'
_TOO_LARGE = b'{"error":"body too large"}'
_NOT_JSON = b'{"error":"body is not JSON"}'
_UNAVAILABLE = b'{"error":"storage unavailable"}'
_INTERNAL = b'{"error":"internal error"}'


class GroupCommit:
    """Stores callbacks that arrive in the same turn of the event loop in one transaction.

    `store(body, remote)` returns once the transaction holding the row has committed (None)
    or failed (the error, the same for every callback of that transaction: none of them is
    on disk). The write runs on the loop's next turn, where every handler that read its body
    meanwhile has queued its row too; it never waits for a timer.

    SQLite spends most of a lone callback's insert on the commit (writing the WAL frame):
    ~50 µs, where a callback in a batch of four costs ~13 µs.
    """

    def __init__(self, store: Store, on_stored: Callable[[], None]):
        self.store = store
        self.on_stored = on_stored
        self._queued: list[tuple[str, str | None, asyncio.Future[BaseException | None]]] = []

    async def store_callback(self, body: str, remote: str | None) -> BaseException | None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[BaseException | None] = loop.create_future()
        self._queued.append((body, remote, done))
        if len(self._queued) == 1:
            loop.call_soon(self._commit)
        return await done

    def _commit(self) -> None:
        batch, self._queued = self._queued, []
        outcome: BaseException | None = None
        try:
            # On the event loop, not in a thread: the store's one SQLite connection is shared
            # with the rest of the app, and a transaction from another thread could take these
            # inserts with it on rollback after we answered 200.
            self.store.store_callbacks([(body, remote) for body, remote, _ in batch])
        except sqlite3.Error as exc:
            # 503, not 200, for each of them: ThingSpace may retry, and we must not
            # acknowledge what we lost.
            log.error("%d callback(s) not stored: the database is unusable", len(batch), exc_info=exc)
            outcome = exc
        except Exception as exc:
            log.error("%d callback(s) not stored: unexpected error", len(batch), exc_info=exc)
            outcome = exc
        for _, _, done in batch:
            if not done.done():  # a handler cancelled meanwhile (server shutting down)
                done.set_result(outcome)
        if outcome is None:
            # After the handlers' wake-ups were queued: their answers go out on the next
            # turn, before the processor (queued behind them) starts applying.
            try:
                self.on_stored()
            except Exception:
                # The rows are committed and acknowledged; the processor's own timer finds them.
                log.exception("waking the callback processor failed")


def callback_route(
    *,
    token: str,
    store: Store,
    allowed_networks: tuple[IPNetwork, ...] = (),
    trusted_proxies: tuple[IPNetwork, ...] = (),
    on_stored: Callable[[], None] = lambda: None,
    max_body: int = MAX_BODY,
) -> Route:
    """The callback endpoint, ready to mount.

    `on_stored` is called once per commit of stored callbacks (one or more), on the event
    loop: it must be cheap (an `asyncio.Event.set()`).
    """
    if not token:
        raise ValueError("the callback token must not be empty")
    expected = token.encode("utf-8")
    writer = GroupCommit(store, on_stored)

    async def receive_callback(request: Request) -> Response:
        given = request.path_params.get("token", "")
        # surrogatepass: a path can decode to any code point; never let encoding fail.
        if not hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected):
            log.info(
                "callback refused: wrong token, from %s", client_address(request, trusted_proxies)
            )
            # Starlette's own answer for a path it does not know: a wrong token tells a
            # prober nothing, and never echoes the token it tried.
            return PlainTextResponse("Not Found", status_code=404)

        remote = client_address(request, trusted_proxies)
        if allowed_networks and not address_in(remote, allowed_networks):
            # WARNING: when this is Verizon, FOTA_CALLBACK_ALLOWED_IPS is losing callbacks.
            log.warning(
                "callback refused: %s is not in the allowed source networks", remote or "(unknown)"
            )
            return Response(_FORBIDDEN, status_code=403, media_type=_JSON)

        try:
            body = await read_limited(request, max_body)
        except ClientDisconnect:
            log.debug("callback sender from %s went away mid-body", remote)
            return Response(_NOT_JSON, status_code=400, media_type=_JSON)
        if body is None:
            log.warning("callback refused: body over %d bytes, from %s", max_body, remote)
            return Response(_TOO_LARGE, status_code=413, media_type=_JSON)

        try:
            # utf-8-sig: a leading BOM (some senders add one) is not part of the JSON.
            text = body.decode("utf-8-sig")
            json.loads(text)
        except (ValueError, RecursionError):
            # ValueError covers bad UTF-8 and bad JSON; RecursionError absurdly deep nesting.
            log.info("callback refused: %d bytes from %s are not JSON", len(body), remote)
            return Response(_NOT_JSON, status_code=400, media_type=_JSON)

        failure = await writer.store_callback(text, remote or None)
        if failure is not None:
            # Logged once for the whole transaction, by the writer.
            if isinstance(failure, sqlite3.Error):
                return Response(_UNAVAILABLE, status_code=503, media_type=_JSON)
            return Response(_INTERNAL, status_code=500, media_type=_JSON)

        log.debug("callback stored: %d bytes from %s", len(body), remote)
        return Response(_OK, status_code=200, media_type=_JSON)

    return Route(CALLBACK_PATH, _Endpoint(receive_callback), methods=["POST"], name="thingspace_callbacks")


class _Endpoint:
    """A request → response function served as a plain ASGI app.

    Starlette wraps a function endpoint in layers (a closure per request and one that routes
    HTTPException to exception handlers, on every message sent) that this route, which
    answers every case itself and never raises HTTPException, has no use for; an object that
    is not a function it mounts as it is. An unexpected error still reaches Starlette's
    ServerErrorMiddleware (a 500), as before.
    """

    def __init__(self, handle: Callable[[Request], Awaitable[Response]]) -> None:
        self.handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.handle(Request(scope, receive, send))
        await response(scope, receive, send)


def client_address(request: Request, trusted_proxies: Sequence[IPNetwork]) -> str:
    """The address the request came from; "" when the server does not know it.

    The connection's peer, unless that peer is one of our `trusted_proxies`: then the
    right-most `X-Forwarded-For` entry that is not itself a trusted proxy (entries to
    its left were written by the sender and can be forged). A header from anyone else
    is ignored. Addresses come back in canonical form, an IPv4-mapped IPv6 peer as
    plain IPv4, so they compare with the allow-list.
    """
    peer_ip, canonical_peer = _peer(request.client.host if request.client else "")
    if not trusted_proxies or peer_ip is None or not _in_networks(peer_ip, trusted_proxies):
        return canonical_peer
    hops = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        hop_ip = parse_address(hop)
        if hop_ip is None:
            # Garbage where an address should be: stop and report it, so an allow-list
            # refuses it rather than trusting anything further left.
            return hop
        if not _in_networks(hop_ip, trusted_proxies):
            return str(hop_ip)
    # Every hop is one of our proxies: the furthest one is the best we know.
    if hops:
        first = parse_address(hops[0])
        return str(first) if first is not None else hops[0]
    return canonical_peer


@functools.lru_cache(maxsize=1024)
def _peer(peer: str) -> tuple[IPAddress | None, str]:
    """The connection's peer, parsed and in canonical form. Kept for the few addresses a
    sender calls from: parsing one costs more than the rest of the checks together. Only
    the socket's own peer (short, from the server), never a header's text."""
    address = parse_address(peer)
    return address, str(address) if address is not None else peer


def parse_address(text: str) -> IPAddress | None:
    """An IP from a peer or X-Forwarded-For entry (`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`), or None."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        text = text[1:end] if end > 0 else text
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def address_in(address: str, networks: Sequence[IPNetwork]) -> bool:
    """Whether `address` (as from `client_address`) is inside any of `networks`."""
    parsed = parse_address(address)
    return parsed is not None and _in_networks(parsed, networks)


def _in_networks(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    # An IPv4 address is never "in" an IPv6 network (and back): ipaddress answers False.
    return any(address in network for network in networks)
