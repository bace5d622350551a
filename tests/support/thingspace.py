"""A recording wrapper around any httpx transport: what reached ThingSpace, headers and all."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner = inner
        self.seen: list[Seen] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self.seen.append(Seen(request.method, request.url.path, dict(request.headers), body))
        return await self.inner.handle_async_request(request)

    def schedule_posts(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST" and s.path.startswith("/api/fota/v3/campaigns/firmware/")]
