"""Reading an HTTP request body under a size limit, for every route that takes one from outside."""

from __future__ import annotations

from contextlib import aclosing

from starlette.requests import Request


async def read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None when it is over `limit`; never holds more than limit + one chunk."""
    declared = request.headers.get("content-length")
    declared = declared.strip() if declared is not None else ""
    # isascii: "²" is a digit to str.isdigit() but not to int().
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    # A sender can lie in Content-Length or send chunked: count what actually arrives.
    async with aclosing(request.stream()) as stream:
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    return b"".join(chunks)
