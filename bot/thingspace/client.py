"""The ThingSpace FOTA v3 client: OAuth token, M2M session, retries and error mapping.

Every call goes through one `httpx.AsyncClient`; tests and the sandbox hand in an httpx
transport instead of the network. Answers come back as plain parsed JSON; every failure comes
back as one of the errors in `bot.thingspace.errors`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import email.utils
import json
import logging
import math
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, NoReturn, Self, TypeVar
from urllib.parse import quote, urlsplit

import httpx

from bot.secrets import Secret
from bot.thingspace.errors import (
    StatusNotSearchable,
    ThingSpaceAmbiguous,
    ThingSpaceAuthError,
    ThingSpaceNotFound,
    ThingSpaceRejected,
    ThingSpaceUnavailable,
)
from storage.states import THINGSPACE_ENDED, THINGSPACE_LIVE

log = logging.getLogger("bot.thingspace")

TOKEN_PATH = "/api/ts/v1/oauth2/token"
SESSION_PATH = "/api/m2m/v1/session/login"
FOTA_PREFIX = "/api/fota/v3"

# Renew the OAuth token this long before ThingSpace says it expires.
TOKEN_MARGIN = 60.0
DEFAULT_TOKEN_LIFETIME = 3600.0
# ThingSpace drops an M2M session after 20 minutes without a call; renewing it a minute early
# saves a 401 round trip.
SESSION_IDLE_LIMIT = 19 * 60.0

ACTIVE_CAMPAIGN_STATUSES: tuple[str, ...] = tuple(state.value for state in THINGSPACE_LIVE)
ENDED_CAMPAIGN_STATUSES: tuple[str, ...] = tuple(state.value for state in THINGSPACE_ENDED)
CAMPAIGN_STATUSES = ACTIVE_CAMPAIGN_STATUSES + ENDED_CAMPAIGN_STATUSES

_MASK = "********"
_Page = TypeVar("_Page")
# The request never left this process: repeating it cannot do anything twice.
_NOT_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
# Repeating cannot help: the URL or the client is wrong.
_HOPELESS: tuple[type[Exception], ...] = (
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.InvalidURL,
)
# Answers after which ThingSpace has certainly not processed the request.
_NOT_PROCESSED = frozenset({429, 503})

JSON = Any


@dataclass(eq=False)
class _Flight:
    task: asyncio.Task[httpx.Response]
    waiting: int = 0


class _SharedReads:
    """The same read asked by several callers while it is in flight goes to ThingSpace once:
    each later caller waits for that answer. Nothing is kept once it has come back, so a
    caller that asks after that sends the read anew (no cache, no stale answer). A caller
    called off does not stop the read for the others; the last one to leave stops it.

    (The few single-flight packages on PyPI are young one-author projects, and most of them
    add a cache this must not have.)"""

    def __init__(self) -> None:
        self._flights: dict[tuple[Any, ...], _Flight] = {}

    async def read(
        self, key: tuple[Any, ...], send: Callable[[], Awaitable[httpx.Response]]
    ) -> httpx.Response:
        flight = self._flights.get(key)
        if flight is None or flight.task.done():
            flight = _Flight(asyncio.ensure_future(send()))
            self._flights[key] = flight
            flight.task.add_done_callback(lambda _: self._landed(key, flight))
        flight.waiting += 1
        try:
            return await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            if flight.waiting == 1 and not flight.task.done():
                flight.task.cancel()
                self._landed(key, flight)
            raise
        finally:
            flight.waiting -= 1

    def _landed(self, key: tuple[Any, ...], flight: _Flight) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]

    def __len__(self) -> int:
        return len(self._flights)


class Registration(StrEnum):
    """What `register_callback` did to the account's callback listener."""

    UNCHANGED = "unchanged"  # this URL was already registered: nothing sent
    CREATED = "created"  # none was registered: POST
    UPDATED = "updated"  # another URL was: PUT
    REPLACED = "replaced"  # another URL was and the PUT was refused: POST


@dataclass(frozen=True)
class _Credentials:
    token: str
    session: str
    generation: int


class ThingSpaceClient:
    """ThingSpace FOTA v3 over one `httpx.AsyncClient`; use with `async with` or `aclose()`."""

    def __init__(
        self,
        *,
        base_url: str,
        client_id: Secret,
        client_secret: Secret,
        username: Secret,
        password: Secret,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        login_cooldown: float = 300.0,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self._base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._username = username
        self._password = password
        self._max_retries = max_retries
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._sleep = sleep
        self._clock = clock
        self._login_cooldown = login_cooldown
        # ThingSpace's API definitions give every call `Accept: application/json`; httpx
        # would send `*/*`, which an API gateway may answer with something else than JSON.
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            transport=transport,
            timeout=httpx.Timeout(timeout),
            headers={"Accept": "application/json"},
        )

        # One login at a time: concurrent callers wait for it and share its result.
        self._auth_lock = asyncio.Lock()
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._session: str | None = None
        self._session_used_at = 0.0
        # Bumped on every new token or session, so a 401 drops only the credentials it was
        # answered with, not fresher ones another caller has just obtained.
        self._generation = 0
        self._login_failed_at: float | None = None
        self._login_failed_wall: dt.datetime | None = None
        self._login_failure = ""
        # Campaign statuses ThingSpace refused to search by (a 400), each logged once.
        self._unsearchable: set[str] = set()
        # Pre-flights running at once ask the same subscription, firmware list or devices.
        self._shared = _SharedReads()

    def __repr__(self) -> str:
        return f"ThingSpaceClient(base_url={self._base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- FOTA v3 -------------------------------------------------------------------------

    async def schedule_campaign(self, account: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST /campaigns/firmware/{acc}. Never repeated once it may have been processed."""
        answer = await self._fota(
            "POST", "campaigns", "firmware", account, body=body, idempotent=False
        )
        if not isinstance(answer, dict) or not (answer.get("id") or answer.get("campaignId")):
            raise ThingSpaceAmbiguous(
                "ThingSpace accepted the campaign request but its answer carries no campaign id; "
                "look the campaign up by name before sending it again"
            )
        return answer

    async def get_campaign(self, account: str, campaign_id: str) -> dict[str, Any]:
        answer = await self._fota("GET", "campaigns", account, campaign_id)
        return _expect_dict(answer, f"campaign {campaign_id}")

    async def cancel_campaign(self, account: str, campaign_id: str) -> dict[str, Any]:
        answer = await self._fota("DELETE", "campaigns", account, campaign_id)
        return answer if isinstance(answer, dict) else {}

    async def campaign_device_report_page(
        self, account: str, campaign_id: str, last_seen_device_id: str = "0"
    ) -> dict[str, Any]:
        answer = await self._fota(
            "GET",
            "reports",
            account,
            "campaigns",
            campaign_id,
            "devices",
            params={"lastSeenDeviceId": last_seen_device_id},
        )
        return _expect_dict(answer, f"the device report of campaign {campaign_id}")

    async def campaign_devices(
        self, account: str, campaign_id: str
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Every device of a campaign's report, following the pages."""

        async def page(last: str | None) -> dict[str, Any]:
            return await self.campaign_device_report_page(account, campaign_id, last or "0")

        async for device in _follow_pages(
            page, "deviceList", "lastSeenDeviceId", f"the report of campaign {campaign_id}", start="0"
        ):
            yield device

    async def list_firmware(self, account: str, protocol: str = "LWM2M") -> list[dict[str, Any]]:
        answer = await self._fota("GET", "firmware", account, params={"protocol": protocol}, shared=True)
        return _dict_list(answer, "the firmware list")

    async def device_info(
        self,
        account: str,
        imeis: Sequence[str],
        *,
        chunk_size: int = 1000,
        concurrency: int = 4,
    ) -> list[dict[str, Any]]:
        """POST /devices/{acc} in chunks, at most `concurrency` at once; answers in chunk order."""
        pages = await self.device_info_pages(
            account, imeis, lambda page: page, chunk_size=chunk_size, concurrency=concurrency
        )
        return [device for page in pages for device in page]

    async def device_info_pages(
        self,
        account: str,
        imeis: Sequence[str],
        reduce: Callable[[list[dict[str, Any]]], _Page],
        *,
        chunk_size: int = 1000,
        concurrency: int = 4,
    ) -> list[_Page]:
        """POST /devices/{acc} in chunks, at most `concurrency` at once, each answer passed
        through `reduce` as it arrives (so a caller keeping less than the raw answer never holds
        100,000 of them); results in chunk order. The first error cancels the other chunks."""
        if chunk_size < 1 or concurrency < 1:
            raise ValueError("chunk_size and concurrency must be at least 1")
        chunks = [list(imeis[i : i + chunk_size]) for i in range(0, len(imeis), chunk_size)]
        gate = asyncio.Semaphore(concurrency)

        async def one(chunk: list[str]) -> _Page:
            async with gate:
                answer = await self._fota("POST", "devices", account, body={"deviceList": chunk}, shared=True)
            page = _expect_dict(answer, "the device information")
            return reduce(_dict_list(page.get("deviceList") or [], "deviceList"))

        tasks = [asyncio.create_task(one(chunk)) for chunk in chunks]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def subscription(self, account: str) -> dict[str, Any]:
        answer = await self._fota("GET", "subscriptions", account, shared=True)
        return _expect_dict(answer, "the subscription")

    async def campaigns_by_status(
        self, account: str, status: str
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Every campaign of the account in `status`, following the pages."""
        # The answer's shape is not documented for v3: generated clients say
        # {campaignList, hasMoreData, lastSeenCampaignId}; a bare list is taken as one page.

        async def page(last: str | None) -> dict[str, Any]:
            params = {"campaignStatus": status}
            if last is not None:
                params["lastSeenCampaignId"] = last
            try:
                answer = await self._fota(
                    "GET", "reports", account, "firmware", "campaigns", params=params
                )
            except ThingSpaceRejected as exc:
                if exc.status != 400 or last is not None:
                    raise
                # A 400 on the first page refuses the status itself: Verizon's SDK lists no
                # CampaignPreScheduled among the searchable statuses, though campaigns pass
                # through it.
                raise StatusNotSearchable(status, exc.error_code, exc.error_message) from exc
            if isinstance(answer, list):
                return {"campaignList": _dict_list(answer, "the campaign list")}
            return _expect_dict(answer, f"the {status} campaign list")

        async for campaign in _follow_pages(
            page, "campaignList", "lastSeenCampaignId", f"the {status} campaign list"
        ):
            yield campaign

    async def find_campaign_by_name(
        self, account: str, name: str, statuses: Sequence[str] = CAMPAIGN_STATUSES
    ) -> dict[str, Any] | None:
        """The campaign whose campaignName is exactly `name`, or None after searching every status.

        A status ThingSpace refuses to search by (400) is skipped, logged once per status: the
        others are still searched, and a match among them is the answer. But None means "not
        created", and the caller may then post the campaign again, so None is answered only when
        every status was searched: a new campaign may sit in the skipped one (a future-dated
        campaign stays CampaignPreScheduled until its start date). A look-up that skipped a
        status and found nothing raises, as does any other failure.
        """
        skipped: list[str] = []
        for status in statuses:
            try:
                async with contextlib.aclosing(
                    self.campaigns_by_status(account, status)
                ) as campaigns:
                    async for campaign in campaigns:
                        if campaign.get("campaignName") == name:
                            return campaign
            except StatusNotSearchable as exc:
                if status not in self._unsearchable:
                    self._unsearchable.add(status)
                    log.warning(
                        "ThingSpace cannot list campaigns by status %s (%s: %s); "
                        "campaign look-ups by name search the other statuses",
                        status,
                        exc.error_code,
                        exc.error_message,
                    )
                skipped.append(status)
        if skipped and len(skipped) == len(statuses):
            raise ThingSpaceRejected(
                400,
                "NO_STATUS_SEARCHABLE",
                "ThingSpace refused to list campaigns by every status asked "
                f"({', '.join(statuses)}); cannot tell whether the campaign exists",
            )
        if skipped:
            raise ThingSpaceRejected(
                400,
                "STATUS_NOT_SEARCHABLE",
                f"no campaign named {name!r} in the statuses ThingSpace lists, but it refused to list "
                f"{', '.join(skipped)}; cannot tell whether the campaign exists",
            )
        return None

    async def change_campaign_dates(
        self,
        account: str,
        campaign_id: str,
        *,
        start_date: dt.date,
        end_date: dt.date,
        windows: Sequence[tuple[int, int]],
    ) -> dict[str, Any]:
        """PUT /campaigns/firmware/{acc}/{campaignId}/dates: new dates and time windows (UTC
        hours, start and end). ThingSpace wants all three, even the ones that stay the same,
        and allows the change only before the campaign starts."""
        body = {
            "startDate": start_date.isoformat(),
            "endDate": end_date.isoformat(),
            "campaignTimeWindowList": [
                {"startTime": start, "endTime": end} for start, end in windows
            ],
        }
        answer = await self._fota(
            "PUT", "campaigns", "firmware", account, campaign_id, "dates", body=body
        )
        return _expect_dict(answer, f"the date change of campaign {campaign_id}")

    async def remove_devices(
        self, account: str, campaign_id: str, imeis: Sequence[str]
    ) -> dict[str, Any]:
        """PUT /campaigns/firmware/{acc}/{campaignId} with Type "remove" (capital T, as
        ThingSpace spells it). ThingSpace allows it only before the campaign is scheduled.

        There is deliberately no "append": adding devices to a campaign would send firmware
        to devices nobody approved.
        """
        if not imeis:
            raise ValueError("remove_devices needs at least one device")
        answer = await self._fota(
            "PUT",
            "campaigns",
            "firmware",
            account,
            campaign_id,
            body={"Type": "remove", "deviceList": list(imeis)},
        )
        return _expect_dict(answer, f"the device removal from campaign {campaign_id}")

    async def register_callback(self, account: str, url: str) -> Registration:
        """Make `url` the account's one callback listener, changing nothing when it already is.

        Reads first: nothing is sent when `url` is registered. With none registered (or the
        read refused) it is created (POST); another URL is updated (PUT, as Verizon's SDK does).
        ThingSpace's older pages say a POST replaces a listener, so a refused PUT falls back to
        POST.
        """
        # The callback URL's path carries our secret token; keep it out of error messages.
        hidden = urlsplit(url)._replace(scheme="", netloc="").geturl()
        hide = (hidden,) if hidden.strip("/") else ()
        try:
            current = await self.get_callback(account)
        except ThingSpaceRejected as exc:
            # Only 400 is modelled for this GET; "none registered" may well come as one.
            # A POST creates or replaces, so it is right whatever is registered.
            log.info(
                "ThingSpace refused to read the callback listener of %s (%s); registering with POST",
                account,
                exc.error_code,
            )
            current = None
        registered = (current or {}).get("url")
        if registered == url:
            return Registration.UNCHANGED
        body = {"url": url}
        if not registered:
            await self._fota("POST", "callbacks", account, body=body, hide=hide)
            return Registration.CREATED
        try:
            await self._fota("PUT", "callbacks", account, body=body, hide=hide)
        except ThingSpaceRejected as exc:
            log.info(
                "ThingSpace refused to update the callback listener of %s (%s); "
                "registering it with POST instead",
                account,
                exc.error_code,
            )
            await self._fota("POST", "callbacks", account, body=body, hide=hide)
            return Registration.REPLACED
        return Registration.UPDATED

    async def get_callback(self, account: str) -> dict[str, Any] | None:
        """The account's callback listener, or None when none is registered (404)."""
        try:
            answer = await self._fota("GET", "callbacks", account)
        except ThingSpaceNotFound:
            return None
        if isinstance(answer, list):
            answer = answer[0] if answer else None
        return answer if isinstance(answer, dict) else None

    async def delete_callback(self, account: str) -> None:
        """Remove the account's callback listener; nothing registered (404) is fine too."""
        with contextlib.suppress(ThingSpaceNotFound):
            await self._fota("DELETE", "callbacks", account)

    async def check(self) -> None:
        """Obtain a token and a session, raising the mapped error when ThingSpace refuses."""
        await self._credentials()

    # --- authentication ------------------------------------------------------------------

    async def _credentials(self) -> _Credentials:
        async with self._auth_lock:
            now = self._clock()
            if self._token is None or now >= self._token_renew_at:
                self._token = None
                token, lifetime = await self._login_token()
                self._token = token
                self._token_renew_at = self._clock() + lifetime - min(TOKEN_MARGIN, lifetime / 2)
                self._generation += 1
            if self._session is None or now - self._session_used_at >= SESSION_IDLE_LIMIT:
                self._session = None
                self._session = await self._login_session(self._token)
                self._generation += 1
            self._session_used_at = self._clock()
            return _Credentials(self._token, self._session, self._generation)

    async def _forget(self, credentials: _Credentials) -> None:
        async with self._auth_lock:
            if self._generation == credentials.generation:
                self._token = None
                self._session = None

    async def _login_token(self) -> tuple[str, float]:
        answer, token = await self._login(
            TOKEN_PATH,
            "the OAuth token request",
            "check THINGSPACE_CLIENT_ID and THINGSPACE_CLIENT_SECRET",
            "access_token",
            data={"grant_type": "client_credentials"},
            headers={"Accept": "application/json"},
            auth=httpx.BasicAuth(self._client_id.reveal(), self._client_secret.reveal()),
        )
        try:
            lifetime = float(answer["expires_in"])
        except (KeyError, TypeError, ValueError):
            lifetime = DEFAULT_TOKEN_LIFETIME
        if not math.isfinite(lifetime) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        log.debug("ThingSpace OAuth token obtained, valid for %.0f s", lifetime)
        return token, lifetime

    async def _login_session(self, token: str) -> str:
        _, session = await self._login(
            SESSION_PATH,
            "the M2M session login",
            "check THINGSPACE_USERNAME and THINGSPACE_PASSWORD",
            "sessionToken",
            body={"username": self._username.reveal(), "password": self._password.reveal()},
            headers={"Authorization": f"Bearer {token}"},
        )
        log.debug("ThingSpace M2M session obtained")
        return session

    async def _login(
        self, path: str, what: str, hint: str, field: str, **request: Any
    ) -> tuple[dict[str, Any], str]:
        """One login request (the OAuth token or the M2M session): not while a refused login
        cools down, a refusal starts the cool-down, and the answer must carry `field`."""
        self._check_cooldown()
        response = await self._send("POST", path, idempotent=True, **request)
        if 400 <= response.status_code < 500:
            self._login_refused(what, response, hint)
        answer = self._answer(response, "POST", path, idempotent=True)
        value = answer.get(field) if isinstance(answer, dict) else None
        if not isinstance(answer, dict) or not isinstance(value, str) or not value:
            article = "an" if field[0] in "aeiou" else "a"
            raise ThingSpaceAuthError(
                f"ThingSpace answered {what} without {article} {field}", status=response.status_code
            )
        self._login_failed_at = None
        return answer, value

    def _check_cooldown(self) -> None:
        if self._login_failed_at is None or self._login_failed_wall is None:
            return
        remaining = self._login_cooldown - (self._clock() - self._login_failed_at)
        if remaining <= 0:
            return
        raise ThingSpaceAuthError(
            f"ThingSpace login failed at {self._login_failed_wall:%H:%M:%S} UTC; "
            f"not retrying for {math.ceil(remaining)} s so the user is not locked "
            f"({self._login_failure})"
        )

    def _login_refused(self, what: str, response: httpx.Response, hint: str) -> NoReturn:
        # Five failed logins in a row lock the ThingSpace user: never try again in a loop.
        self._login_failed_at = self._clock()
        self._login_failed_wall = dt.datetime.now(dt.UTC)
        reason = self._redact(_login_reason(response))
        self._login_failure = f"{what} was refused: {reason}"
        log.warning("ThingSpace login failed: %s; %s", self._login_failure, hint)
        raise ThingSpaceAuthError(
            f"ThingSpace refused {what} ({reason}); {hint}. "
            f"Not retrying for {math.ceil(self._login_cooldown)} s so the user is not locked.",
            status=response.status_code,
        )

    # --- transport -----------------------------------------------------------------------

    async def _fota(
        self,
        method: str,
        *segments: str,
        params: dict[str, str] | None = None,
        body: Any = None,
        idempotent: bool = True,
        hide: tuple[str, ...] = (),
        shared: bool = False,
    ) -> JSON:
        """One FOTA call with both auth headers; a 401 gets one fresh login and one retry.
        `shared` (reads only): callers asking the same read while it is in flight share it."""
        path = FOTA_PREFIX + "".join("/" + quote(str(s), safe="") for s in segments)
        if shared:
            key = (method, path, tuple(sorted((params or {}).items())), json.dumps(body, sort_keys=True))
            response = await self._shared.read(
                key, lambda: self._exchange(method, path, params=params, body=body, idempotent=idempotent)
            )
        else:
            response = await self._exchange(method, path, params=params, body=body, idempotent=idempotent)
        return self._answer(response, method, path, idempotent=idempotent, hide=hide)

    async def _exchange(
        self, method: str, path: str, *, params: dict[str, str] | None, body: Any, idempotent: bool
    ) -> httpx.Response:
        credentials = await self._credentials()
        response = await self._send(
            method,
            path,
            idempotent=idempotent,
            params=params,
            body=body,
            headers=_auth_headers(credentials),
        )
        if response.status_code == 401:
            # A 401 means the token or the session expired; it is answered before anything is
            # processed, so even the schedule POST may be sent again.
            log.info("ThingSpace answered 401 to %s %s; logging in again", method, path)
            await self._forget(credentials)
            credentials = await self._credentials()
            response = await self._send(
                method,
                path,
                idempotent=idempotent,
                params=params,
                body=body,
                headers=_auth_headers(credentials),
            )
            if response.status_code == 401:
                raise ThingSpaceAuthError(
                    f"ThingSpace refused {method} {path} (HTTP 401) even after a fresh login; "
                    "check that the ThingSpace user may use the FOTA API for this account",
                    status=401,
                )
        return response

    async def _send(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        params: dict[str, str] | None = None,
        body: Any = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | None = None,
    ) -> httpx.Response:
        """Send with retries on 429, 5xx and network failures; return any other answer."""
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                response = await self._http.request(
                    method,
                    path,
                    params=params,
                    json=body,
                    data=data,
                    headers=headers,
                    auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
                )
            except _HOPELESS as exc:
                raise ThingSpaceUnavailable(
                    self._redact(
                        f"Could not send {method} {path} to ThingSpace at {self._base_url}: "
                        f"{_describe(exc)}"
                    )
                ) from exc
            except _NOT_SENT as exc:
                self._log_failure(method, path, exc, started)
                if attempt >= self._max_retries:
                    raise ThingSpaceUnavailable(
                        self._redact(
                            f"Could not reach ThingSpace at {self._base_url} for {method} {path} "
                            f"after {attempt + 1} attempts: {_describe(exc)}"
                        )
                    ) from exc
                delay = self._backoff(attempt, None)
            except httpx.RequestError as exc:
                # Sent, but the answer was lost (read timeout, dropped connection): ThingSpace
                # may have processed it.
                self._log_failure(method, path, exc, started)
                if not idempotent:
                    raise ThingSpaceAmbiguous(
                        self._redact(
                            f"ThingSpace did not answer {method} {path} ({_describe(exc)}); "
                            "it may have been processed"
                        )
                    ) from exc
                if attempt >= self._max_retries:
                    raise ThingSpaceUnavailable(
                        self._redact(
                            f"ThingSpace did not answer {method} {path} after {attempt + 1} "
                            f"attempts: {_describe(exc)}"
                        )
                    ) from exc
                delay = self._backoff(attempt, None)
            else:
                status = response.status_code
                log.debug(
                    "ThingSpace %s %s -> %d in %.0f ms",
                    method,
                    path,
                    status,
                    (time.perf_counter() - started) * 1000,
                )
                if status != 429 and status < 500:
                    return response
                if not idempotent and status not in _NOT_PROCESSED:
                    raise ThingSpaceAmbiguous(
                        f"ThingSpace answered HTTP {status} to {method} {path}; "
                        "it may have been processed",
                        status=status,
                    )
                if attempt >= self._max_retries:
                    raise ThingSpaceUnavailable(
                        f"ThingSpace answered HTTP {status} to {method} {path} "
                        f"{attempt + 1} times; giving up",
                        status=status,
                    )
                delay = self._backoff(attempt, _retry_after(response))
            log.info(
                "ThingSpace %s %s failed (attempt %d of %d); retrying in %.1f s",
                method,
                path,
                attempt + 1,
                self._max_retries + 1,
                delay,
            )
            await self._sleep(delay)
            attempt += 1

    def _answer(
        self,
        response: httpx.Response,
        method: str,
        path: str,
        *,
        idempotent: bool,
        hide: tuple[str, ...] = (),
    ) -> JSON:
        """Parsed JSON of a 2xx answer (None when empty); the mapped error otherwise."""
        status = response.status_code
        # What was sent may have been processed whenever an answer is not understood.
        unclear = ThingSpaceUnavailable if idempotent else ThingSpaceAmbiguous
        if 200 <= status < 300:
            if not response.content.strip():
                return None
            try:
                return response.json()
            except ValueError as exc:
                raise unclear(
                    f"ThingSpace answered {method} {path} with something that is not JSON",
                    status=status,
                ) from exc
        if 400 <= status < 500:
            code, message = _error_body(response, method, path)
            error = ThingSpaceNotFound if status == 404 else ThingSpaceRejected
            raise error(status, self._redact(code, hide), self._redact(message, hide))
        raise unclear(f"ThingSpace answered HTTP {status} to {method} {path}", status=status)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self._backoff_cap * 4)
        return random.uniform(0, min(self._backoff_cap, self._backoff_base * 2**attempt))

    def _log_failure(self, method: str, path: str, exc: Exception, started: float) -> None:
        log.debug(
            "ThingSpace %s %s -> %s in %.0f ms",
            method,
            path,
            type(exc).__name__,
            (time.perf_counter() - started) * 1000,
        )

    def _redact(self, text: str, hide: tuple[str, ...] = ()) -> str:
        basic = f"{self._client_id.reveal()}:{self._client_secret.reveal()}"
        secrets = [
            base64.b64encode(basic.encode()).decode(),
            self._client_id.reveal(),
            self._client_secret.reveal(),
            self._username.reveal(),
            self._password.reveal(),
            self._token,
            self._session,
            *hide,
        ]
        for secret in secrets:
            if secret:
                text = text.replace(secret, _MASK)
        return text


def _auth_headers(credentials: _Credentials) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials.token}", "VZ-M2M-Token": credentials.session}


def _error_body(response: httpx.Response, method: str, path: str) -> tuple[str, str]:
    """ThingSpace's errorCode and errorMessage, or HTTP_<status> and a plain description."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("errorCode"):
        message = body.get("errorMessage")
        return str(body["errorCode"]), response.reason_phrase if message is None else str(message)
    return f"HTTP_{response.status_code}", f"{response.reason_phrase} ({method} {path})"


def _login_reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    words = [f"HTTP {response.status_code}"]
    if isinstance(body, dict):
        # OAuth answers {error, error_description}; the M2M API answers {errorCode, errorMessage}.
        for key in ("error", "error_description", "errorCode", "errorMessage"):
            if body.get(key):
                words.append(str(body[key]))
    return " ".join(words)


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds, given as a number or as an HTTP date; None when absent or bad."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _describe(exc: Exception) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


async def _follow_pages(
    fetch: Callable[[str | None], Awaitable[dict[str, Any]]],
    items: str,
    cursor: str,
    where: str,
    *,
    start: str | None = None,
) -> AsyncGenerator[dict[str, Any], None]:
    """Every item of a paged answer: ThingSpace pages with `hasMoreData` and the last id seen
    (`cursor`), fetched again from that id until a page says there is no more."""
    last = start
    seen = {start} if start is not None else set()
    while True:
        page = await fetch(last)
        for item in _dict_list(page.get(items) or [], items):
            yield item
        following = page.get(cursor)
        if not _truthy(page.get("hasMoreData")) or not following:
            return
        following = str(following)
        if following in seen:
            # A page pointing back at one already read would page forever.
            log.warning("ThingSpace repeated %s %s in %s; stopping there", cursor, following, where)
            return
        seen.add(following)
        last = following


def _truthy(value: object) -> bool:
    # Only generated clients say hasMoreData is a boolean; take "true" as well.
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _expect_dict(answer: JSON, what: str) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise ThingSpaceUnavailable(f"ThingSpace answered {what} with an unexpected shape")
    return answer


def _dict_list(answer: JSON, what: str) -> list[dict[str, Any]]:
    if not isinstance(answer, list) or not all(isinstance(item, dict) for item in answer):
        raise ThingSpaceUnavailable(f"ThingSpace answered {what} with an unexpected shape")
    return answer
