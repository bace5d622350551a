"""Reading an HTTP request body under a size limit, for every route that takes one from outside."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is over `limit`; never holds more than limit + one chunk.

    Raises ClientDisconnect when the sender goes away mid-body. The request's stream is spent
    afterwards, as after `Request.stream()`.
    """
    declared = request.headers.get("content-length")
    declared = declared.strip() if declared is not None else ""
    # isascii: "²" is a digit to str.isdigit() but not to int().
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    # The ASGI messages themselves, as Request.stream() reads them but without an async
    # generator per request (created, registered with the loop for shutdown, then closed:
    # more than the rest of this function on a small callback).
    receive = request.receive
    # A sender can lie in Content-Length or send chunked: count what actually arrives.
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            raise ClientDisconnect()
    # What Request.stream() records once the last message is in: reading the body again
    # from this request is then refused instead of waiting for messages that never come.
    request._stream_consumed = True
    return b"".join(chunks)
