"""One HTTP session for every answer on a Slack response_url, closed at shutdown.

Bolt's own respond() builds a webhook client per call, and each opens a connection of its
own (TCP and TLS set up again for every answer to a click or a command). Here every answer
goes through one aiohttp session, whose connection pool keeps the connection to Slack's
hooks host open between answers.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.context.respond.internals import _build_message
from slack_sdk.webhook.async_client import AsyncWebhookClient, WebhookResponse


class ResponseUrls:
    """The session the answers share; made on first use, on the loop that serves requests."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.sessions_made = 0

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self.sessions_made += 1
        return self._session

    def respond(self, response_url: str) -> SessionRespond:
        return SessionRespond(response_url=response_url, urls=self)

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


class SessionRespond(AsyncRespond):
    """Bolt's respond() (same arguments, same message), sent through the shared session."""

    def __init__(self, *, response_url: str, urls: ResponseUrls):
        super().__init__(response_url=response_url)
        self._urls = urls

    async def __call__(self, text: str | dict[str, Any] = "", **fields: Any) -> WebhookResponse:  # type: ignore[override]
        assert self.response_url is not None
        client = AsyncWebhookClient(url=self.response_url, session=self._urls.session())
        if isinstance(text, dict):
            return await client.send_dict(_build_message(**text))
        if not isinstance(text, str):
            raise ValueError(f"The arg is unexpected type ({type(text)})")
        return await client.send_dict(_build_message(text=text, **fields))
