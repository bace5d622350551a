"""One HTTP session for every answer on a Slack response_url, closed at shutdown.

Bolt's own respond() builds a webhook client per call, and each opens a connection of its
own (TCP and TLS set up again for every answer to a click or a command). Here every answer
goes through one aiohttp session, whose connection pool keeps the connection to Slack's
hooks host open between answers.

The answer is posted with that session directly rather than through slack_sdk's
AsyncWebhookClient: the client does the same POST, but building one per answer (its user agent
and proxy read from the environment each time, its retry bookkeeping) cost as much of the
event loop as the POST itself. The request is the client's to the byte (same JSON body, same
headers, the same proxy from the environment) and so is the failure handling: its retry
handlers (one more try after a dropped connection, a keep-alive connection Slack closed while
it sat in the pool) decide, and what they do not retry is raised as the client raises it.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.context.respond.internals import _build_message
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import async_default_handlers
from slack_sdk.http_retry.request import HttpRequest as RetryRequest
from slack_sdk.http_retry.response import HttpResponse as RetryResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.proxy_env_variable_loader import load_http_proxy_from_env
from slack_sdk.webhook.async_client import WebhookResponse
from slack_sdk.webhook.internal_utils import _build_body, get_user_agent

log = logging.getLogger("bot.slack_respond")


class ResponseUrls:
    """The session the answers share; made on first use, on the loop that serves requests."""

    def __init__(self, *, retry_handlers: list[AsyncRetryHandler] | None = None) -> None:
        self._session: aiohttp.ClientSession | None = None
        self.sessions_made = 0
        # What AsyncWebhookClient sends with every answer, worked out once.
        self.headers = {"Content-Type": "application/json;charset=utf-8", "User-Agent": get_user_agent()}
        self.proxy = load_http_proxy_from_env(log)
        self.retry_handlers = retry_handlers if retry_handlers is not None else async_default_handlers()

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self.sessions_made += 1
        return self._session

    def respond(self, response_url: str) -> SessionRespond:
        return SessionRespond(response_url=response_url, urls=self)

    async def post(self, url: str, message: dict[str, Any]) -> WebhookResponse:
        """POST `message` as AsyncWebhookClient.send_dict would, through the shared session."""
        body = _build_body(message) or {}
        data = json.dumps(body)
        state = RetryState()
        retry_request: RetryRequest | None = None
        while True:
            state.next_attempt_requested = False
            try:
                async with self.session().post(url, data=data, headers=self.headers, proxy=self.proxy) as res:
                    try:
                        text = await res.text()
                    except aiohttp.ContentTypeError:
                        text = ""
                    # No handler slack_sdk has by default retries an answered request; one
                    # given here may (a 429's wait), as it would in the webhook client.
                    if res.status >= 400 and self.retry_handlers:
                        retry_request = retry_request or RetryRequest(
                            method="POST", url=url, headers=dict(self.headers), body_params=body
                        )
                        answered = RetryResponse(status_code=res.status, headers=res.headers, data=text.encode())  # type: ignore[arg-type]
                        await self._retry(state, retry_request, answered, None)
                    if not state.next_attempt_requested:
                        return WebhookResponse(url=url, status_code=res.status, body=text, headers=res.headers)  # type: ignore[arg-type]
            except Exception as exc:
                retry_request = retry_request or RetryRequest(
                    method="POST", url=url, headers=dict(self.headers), body_params=body
                )
                await self._retry(state, retry_request, None, exc)
                if not state.next_attempt_requested:
                    raise

    async def _retry(
        self, state: RetryState, request: RetryRequest, response: RetryResponse | None, error: Exception | None
    ) -> None:
        """The first handler that takes the failure waits its interval and asks for another try."""
        for handler in self.retry_handlers:
            if await handler.can_retry_async(state=state, request=request, response=response, error=error):
                await handler.prepare_for_next_attempt_async(
                    state=state, request=request, response=response, error=error
                )
                return

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
        if isinstance(text, dict):
            return await self._urls.post(self.response_url, _build_message(**text))
        if not isinstance(text, str):
            raise ValueError(f"The arg is unexpected type ({type(text)})")
        return await self._urls.post(self.response_url, _build_message(text=text, **fields))
