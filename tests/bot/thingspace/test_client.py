"""ThingSpaceClient against `httpx.MockTransport`: paths, headers, auth, retries, errors.

A stand-in ThingSpace answers the OAuth and session logins itself (a new token and session
per login) and hands every FOTA call to the test's own handler. Time is a fake clock whose
`sleep` records the delay and moves the clock: nothing really sleeps, nothing leaves the process.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.secrets import Secret
from bot.thingspace import (
    Registration,
    StatusNotSearchable,
    ThingSpaceAmbiguous,
    ThingSpaceAuthError,
    ThingSpaceClient,
    ThingSpaceError,
    ThingSpaceNotFound,
    ThingSpaceRejected,
    ThingSpaceUnavailable,
)
from bot.thingspace.client import CAMPAIGN_STATUSES

BASE_URL = "https://thingspace.test"
ACCOUNT = "0642233522-00001"
CAMPAIGN_ID = "f858b8c4-2153-11ec-8c44-aeb16d1aa652"
CLIENT_ID = "oauth-key-4Rw9Lq"
CLIENT_SECRET = "oauth-secret-Zt7Yp2"
USERNAME = "uws-user-Hx3"
PASSWORD = "uws-password-Mv8Kd1"
TOKEN_PREFIX = "access-token-Qe5"
SESSION_PREFIX = "m2m-session-Jb6"
BASIC = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
SECRETS = (CLIENT_ID, CLIENT_SECRET, USERNAME, PASSWORD, TOKEN_PREFIX, SESSION_PREFIX, BASIC)

FOTA = "/api/fota/v3"
TOKEN_PATH = "/api/ts/v1/oauth2/token"
SESSION_PATH = "/api/m2m/v1/session/login"

SCHEDULE_BODY = {
    "campaignName": "Smart FOTA - test 4 [FB-12]",
    "firmwareName": "SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657",
    "firmwareFrom": "SR1.2.0.0-10512",
    "firmwareTo": "SR1.2.0.0-10657",
    "protocol": "LWM2M",
    "startDate": "2021-09-29",
    "endDate": "2021-10-01",
    "campaignTimeWindowList": [{"startTime": 18, "endTime": 22}],
    "deviceList": ["354658090353977"],
}
CAMPAIGN = {
    "id": CAMPAIGN_ID,
    "accountName": ACCOUNT,
    "campaignName": "Smart FOTA - test 4 [FB-12]",
    "make": "SEQUANS Communications",
    "model": "GM01Q",
    "status": "CampaignRequestPending",
}

Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]


def token(n: int) -> str:
    return f"{TOKEN_PREFIX}-{n}"


def session(n: int) -> str:
    return f"{SESSION_PREFIX}-{n}"


class FakeThingSpace:
    """Records every request; answers logins, passes FOTA calls to `fota`."""

    def __init__(
        self,
        fota: Handler | None = None,
        *,
        login: Handler | None = None,
        expires_in: int = 3600,
        prefix: str = "",
    ) -> None:
        self.prefix = prefix
        self.requests: list[httpx.Request] = []
        self.fota = fota or (lambda request: httpx.Response(200, json=CAMPAIGN))
        self.login = login
        self.expires_in = expires_in

    def __call__(self, request: httpx.Request) -> httpx.Response | Awaitable[httpx.Response]:
        self.requests.append(request)
        path = request.url.path.removeprefix(self.prefix)
        if self.login is not None and path in (TOKEN_PATH, SESSION_PATH):
            return self.login(request)
        if path == TOKEN_PATH:
            n = len(self.token_requests)
            return httpx.Response(
                200,
                json={
                    "access_token": token(n),
                    "token_type": "bearer",
                    "expires_in": self.expires_in,
                },
            )
        if path == SESSION_PATH:
            return httpx.Response(200, json={"sessionToken": session(len(self.session_requests))})
        return self.fota(request)

    def _on(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == self.prefix + path]

    @property
    def token_requests(self) -> list[httpx.Request]:
        return self._on(TOKEN_PATH)

    @property
    def session_requests(self) -> list[httpx.Request]:
        return self._on(SESSION_PATH)

    @property
    def fota_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.startswith(self.prefix + FOTA)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


MakeClient = Callable[..., ThingSpaceClient]


@pytest.fixture
async def make_client(clock: FakeClock) -> AsyncIterator[MakeClient]:
    clients: list[ThingSpaceClient] = []

    def make(handler: Handler, **options: Any) -> ThingSpaceClient:
        client = ThingSpaceClient(
            base_url=BASE_URL,
            client_id=Secret(CLIENT_ID),
            client_secret=Secret(CLIENT_SECRET),
            username=Secret(USERNAME),
            password=Secret(PASSWORD),
            transport=httpx.MockTransport(handler),
            sleep=clock.sleep,
            clock=clock.time,
            **options,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


def answers(*responses: httpx.Response | Exception) -> Handler:
    """A FOTA handler giving these answers in turn (an exception is raised), the last forever."""
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


# --- requests on the wire ----------------------------------------------------------------


async def test_schedule_sends_the_body_with_both_auth_headers(make_client: MakeClient) -> None:
    ts = FakeThingSpace()
    client = make_client(ts)

    answer = await client.schedule_campaign(ACCOUNT, SCHEDULE_BODY)

    assert answer == CAMPAIGN
    (post,) = ts.fota_requests
    assert post.method == "POST"
    assert post.url == f"{BASE_URL}{FOTA}/campaigns/firmware/{ACCOUNT}"
    assert post.headers["Authorization"] == f"Bearer {token(1)}"
    assert post.headers["VZ-M2M-Token"] == session(1)
    assert post.headers["Content-Type"] == "application/json"
    assert json.loads(post.content) == SCHEDULE_BODY


async def test_logins_send_the_documented_requests(make_client: MakeClient) -> None:
    ts = FakeThingSpace()
    await make_client(ts).check()

    (oauth,) = ts.token_requests
    assert oauth.method == "POST"
    assert oauth.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert oauth.content == b"grant_type=client_credentials"
    assert oauth.headers["Authorization"] == f"Basic {BASIC}"

    (login,) = ts.session_requests
    assert login.method == "POST"
    assert login.headers["Authorization"] == f"Bearer {token(1)}"
    assert login.headers["Content-Type"] == "application/json"
    assert json.loads(login.content) == {"username": USERNAME, "password": PASSWORD}
    # As Verizon's SDK sends them: not httpx's default `*/*`.
    assert oauth.headers["Accept"] == login.headers["Accept"] == "application/json"
    assert ts.fota_requests == []


CALLBACK_URL = "https://bot.example.com/thingspace/callbacks/cb-token-Ww2"


@pytest.mark.parametrize(
    ("call", "answer", "method", "path", "query", "body", "expected"),
    [
        pytest.param(
            lambda c: c.get_campaign(ACCOUNT, CAMPAIGN_ID),
            CAMPAIGN, "GET", f"/campaigns/{ACCOUNT}/{CAMPAIGN_ID}", {}, None, CAMPAIGN,
            id="get_campaign",
        ),
        pytest.param(
            lambda c: c.cancel_campaign(ACCOUNT, CAMPAIGN_ID),
            {"success": True}, "DELETE", f"/campaigns/{ACCOUNT}/{CAMPAIGN_ID}", {}, None,
            {"success": True},
            id="cancel_campaign",
        ),
        pytest.param(
            lambda c: c.campaign_device_report_page(ACCOUNT, CAMPAIGN_ID, "354658090353977"),
            {"hasMoreData": False, "deviceList": []},
            "GET", f"/reports/{ACCOUNT}/campaigns/{CAMPAIGN_ID}/devices",
            {"lastSeenDeviceId": "354658090353977"}, None,
            {"hasMoreData": False, "deviceList": []},
            id="campaign_device_report_page",
        ),
        pytest.param(
            lambda c: c.list_firmware(ACCOUNT),
            [{"firmwareName": "fw-a"}], "GET", f"/firmware/{ACCOUNT}", {"protocol": "LWM2M"},
            None, [{"firmwareName": "fw-a"}],
            id="list_firmware",
        ),
        pytest.param(
            lambda c: c.list_firmware(ACCOUNT, "HTTP"),
            [], "GET", f"/firmware/{ACCOUNT}", {"protocol": "HTTP"}, None, [],
            id="list_firmware_protocol",
        ),
        pytest.param(
            lambda c: c.subscription(ACCOUNT),
            {"licenseCount": 10}, "GET", f"/subscriptions/{ACCOUNT}", {}, None,
            {"licenseCount": 10},
            id="subscription",
        ),
        pytest.param(
            lambda c: c.device_info(ACCOUNT, ["354658090353977"]),
            {"deviceCount": 1, "deviceList": [{"deviceId": "354658090353977"}]},
            "POST", f"/devices/{ACCOUNT}", {}, {"deviceList": ["354658090353977"]},
            [{"deviceId": "354658090353977"}],
            id="device_info",
        ),
        pytest.param(
            lambda c: c.change_campaign_dates(
                ACCOUNT, CAMPAIGN_ID, start_date=dt.date(2026, 12, 1),
                end_date=dt.date(2026, 12, 4), windows=[(18, 22), (2, 6)],
            ),
            CAMPAIGN, "PUT", f"/campaigns/firmware/{ACCOUNT}/{CAMPAIGN_ID}/dates", {},
            {"startDate": "2026-12-01", "endDate": "2026-12-04",
             "campaignTimeWindowList": [{"startTime": 18, "endTime": 22},
                                        {"startTime": 2, "endTime": 6}]},
            CAMPAIGN,
            id="change_campaign_dates",
        ),
        pytest.param(
            lambda c: c.remove_devices(ACCOUNT, CAMPAIGN_ID, ["354658090353977"]),
            {"accountName": ACCOUNT, "campaignId": CAMPAIGN_ID,
             "deviceList": [{"deviceId": "354658090353977", "status": "Success"}]},
            "PUT", f"/campaigns/firmware/{ACCOUNT}/{CAMPAIGN_ID}", {},
            {"Type": "remove", "deviceList": ["354658090353977"]},
            {"accountName": ACCOUNT, "campaignId": CAMPAIGN_ID,
             "deviceList": [{"deviceId": "354658090353977", "status": "Success"}]},
            id="remove_devices",
        ),
        pytest.param(
            lambda c: c.get_callback(ACCOUNT),
            {"url": CALLBACK_URL}, "GET", f"/callbacks/{ACCOUNT}", {}, None,
            {"url": CALLBACK_URL},
            id="get_callback",
        ),
        pytest.param(
            lambda c: c.delete_callback(ACCOUNT),
            {}, "DELETE", f"/callbacks/{ACCOUNT}", {}, None, None,
            id="delete_callback",
        ),
    ],
)  # fmt: skip
async def test_each_call_on_the_wire(
    make_client: MakeClient,
    call: Callable[[ThingSpaceClient], Awaitable[Any]],
    answer: Any,
    method: str,
    path: str,
    query: dict[str, str],
    body: Any,
    expected: Any,
) -> None:
    ts = FakeThingSpace(answers(httpx.Response(200, json=answer)))

    assert await call(make_client(ts)) == expected

    (request,) = ts.fota_requests
    assert request.method == method
    assert request.url.path == FOTA + path
    assert dict(request.url.params) == query
    assert request.headers["Authorization"] == f"Bearer {token(1)}"
    assert request.headers["VZ-M2M-Token"] == session(1)
    assert request.headers["Accept"] == "application/json"
    if body is None:
        assert request.content == b""
    else:
        assert request.headers["Content-Type"] == "application/json"
        assert json.loads(request.content) == body


async def test_path_segments_are_url_encoded_and_keep_leading_zeros(
    make_client: MakeClient,
) -> None:
    ts = FakeThingSpace()
    await make_client(ts).get_campaign("0000000000-00001", "a/b c?d")

    assert ts.fota_requests[0].url.raw_path == (
        f"{FOTA}/campaigns/0000000000-00001/a%2Fb%20c%3Fd".encode()
    )


async def test_a_base_url_with_a_path_prefix_is_kept(clock: FakeClock) -> None:
    ts = FakeThingSpace(prefix="/thingspace")
    async with ThingSpaceClient(
        base_url="https://proxy.test/thingspace/",
        client_id=Secret(CLIENT_ID),
        client_secret=Secret(CLIENT_SECRET),
        username=Secret(USERNAME),
        password=Secret(PASSWORD),
        transport=httpx.MockTransport(ts),
        sleep=clock.sleep,
        clock=clock.time,
    ) as client:
        await client.subscription(ACCOUNT)

    assert [r.url.path for r in ts.requests] == [
        f"/thingspace{TOKEN_PATH}",
        f"/thingspace{SESSION_PATH}",
        f"/thingspace{FOTA}/subscriptions/{ACCOUNT}",
    ]


# --- token and session -------------------------------------------------------------------


async def test_token_and_session_are_obtained_once_and_reused(make_client: MakeClient) -> None:
    ts = FakeThingSpace()
    client = make_client(ts)

    await client.get_campaign(ACCOUNT, CAMPAIGN_ID)
    await client.subscription(ACCOUNT)
    await client.schedule_campaign(ACCOUNT, SCHEDULE_BODY)

    assert len(ts.token_requests) == 1
    assert len(ts.session_requests) == 1
    assert {r.headers["Authorization"] for r in ts.fota_requests} == {f"Bearer {token(1)}"}
    assert {r.headers["VZ-M2M-Token"] for r in ts.fota_requests} == {session(1)}


async def test_token_is_renewed_60_seconds_before_it_expires(
    make_client: MakeClient, clock: FakeClock
) -> None:
    ts = FakeThingSpace(expires_in=600)
    client = make_client(ts)

    await client.subscription(ACCOUNT)
    clock.now += 539
    await client.subscription(ACCOUNT)
    assert len(ts.token_requests) == 1

    clock.now += 2
    await client.subscription(ACCOUNT)
    assert len(ts.token_requests) == 2
    assert ts.fota_requests[-1].headers["Authorization"] == f"Bearer {token(2)}"
    # The session outlives the token.
    assert len(ts.session_requests) == 1


async def test_an_idle_session_is_renewed_before_thingspace_drops_it(
    make_client: MakeClient, clock: FakeClock
) -> None:
    ts = FakeThingSpace()
    client = make_client(ts)

    await client.subscription(ACCOUNT)
    clock.now += 18 * 60
    await client.subscription(ACCOUNT)
    clock.now += 18 * 60  # busy: 36 minutes old, but used 18 minutes ago
    await client.subscription(ACCOUNT)
    assert len(ts.session_requests) == 1

    clock.now += 20 * 60
    await client.subscription(ACCOUNT)
    assert len(ts.session_requests) == 2
    assert ts.fota_requests[-1].headers["VZ-M2M-Token"] == session(2)
    assert len(ts.token_requests) == 1


async def test_concurrent_callers_share_one_login(make_client: MakeClient) -> None:
    async def slow_login(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        if request.url.path == TOKEN_PATH:
            return httpx.Response(200, json={"access_token": token(1), "expires_in": 3600})
        return httpx.Response(200, json={"sessionToken": session(1)})

    ts = FakeThingSpace(login=slow_login)
    client = make_client(ts)

    await asyncio.gather(*(client.get_campaign(ACCOUNT, str(i)) for i in range(10)))

    assert len(ts.token_requests) == 1
    assert len(ts.session_requests) == 1
    assert len(ts.fota_requests) == 10


async def test_a_401_logs_in_again_once_and_retries(make_client: MakeClient) -> None:
    ts = FakeThingSpace(answers(httpx.Response(401), httpx.Response(200, json=CAMPAIGN)))
    client = make_client(ts)

    assert await client.schedule_campaign(ACCOUNT, SCHEDULE_BODY) == CAMPAIGN

    first, second = ts.fota_requests
    assert (first.headers["Authorization"], first.headers["VZ-M2M-Token"]) == (
        f"Bearer {token(1)}",
        session(1),
    )
    assert (second.headers["Authorization"], second.headers["VZ-M2M-Token"]) == (
        f"Bearer {token(2)}",
        session(2),
    )
    assert json.loads(second.content) == SCHEDULE_BODY
    assert len(ts.token_requests) == len(ts.session_requests) == 2


async def test_a_second_401_is_an_auth_error(make_client: MakeClient) -> None:
    ts = FakeThingSpace(answers(httpx.Response(401)))
    client = make_client(ts)

    with pytest.raises(ThingSpaceAuthError, match="even after a fresh login") as caught:
        await client.get_campaign(ACCOUNT, CAMPAIGN_ID)

    assert caught.value.status == 401
    assert len(ts.fota_requests) == 2
    assert len(ts.token_requests) == len(ts.session_requests) == 2


async def test_concurrent_401s_share_one_new_login(make_client: MakeClient) -> None:
    async def fota(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0)
        if request.headers["VZ-M2M-Token"] == session(1):
            return httpx.Response(401)
        return httpx.Response(200, json=CAMPAIGN)

    ts = FakeThingSpace(fota)
    client = make_client(ts)
    await client.check()

    await asyncio.gather(*(client.get_campaign(ACCOUNT, str(i)) for i in range(5)))

    assert len(ts.session_requests) == 2
    assert len(ts.fota_requests) == 10


@pytest.mark.parametrize("refused", [TOKEN_PATH, SESSION_PATH])
async def test_a_refused_login_is_not_retried_and_cools_down(
    make_client: MakeClient, clock: FakeClock, refused: str
) -> None:
    ts = FakeThingSpace()
    fresh_login = FakeThingSpace()

    def login(request: httpx.Request) -> httpx.Response | Awaitable[httpx.Response]:
        if request.url.path == refused:
            return httpx.Response(401, json={"error": "invalid_client"})
        return fresh_login(request)

    ts.login = login
    client = make_client(ts)

    with pytest.raises(ThingSpaceAuthError, match="invalid_client") as first:
        await client.get_campaign(ACCOUNT, CAMPAIGN_ID)
    assert "Not retrying for 300 s" in str(first.value)
    calls = len(ts.requests)
    assert len(ts._on(refused)) == 1
    assert ts.fota_requests == []

    clock.now += 299
    for _ in range(3):
        with pytest.raises(ThingSpaceAuthError) as again:
            await client.get_campaign(ACCOUNT, CAMPAIGN_ID)
    assert re.match(
        r"ThingSpace login failed at \d\d:\d\d:\d\d UTC; not retrying for 1 s "
        r"so the user is not locked",
        str(again.value),
    )
    with pytest.raises(ThingSpaceAuthError):
        await client.check()
    assert len(ts.requests) == calls
    assert clock.sleeps == []

    clock.now += 2
    ts.login = None
    assert await client.get_campaign(ACCOUNT, CAMPAIGN_ID) == CAMPAIGN
    assert len(ts._on(refused)) == 2


async def test_a_refused_login_after_a_401_cools_down_too(make_client: MakeClient) -> None:
    ts = FakeThingSpace(answers(httpx.Response(401)))
    client = make_client(ts)
    await client.check()
    ts.login = lambda request: httpx.Response(400, json={"errorCode": "UnAuthorized.Error"})

    with pytest.raises(ThingSpaceAuthError, match="UnAuthorized.Error"):
        await client.get_campaign(ACCOUNT, CAMPAIGN_ID)
    with pytest.raises(ThingSpaceAuthError, match="not retrying"):
        await client.get_campaign(ACCOUNT, CAMPAIGN_ID)

    assert len(ts.fota_requests) == 1
    assert len(ts.token_requests) == 2  # the first login, then the one refused


async def test_check_reports_a_refused_login(make_client: MakeClient) -> None:
    ts = FakeThingSpace(login=lambda request: httpx.Response(401))

    with pytest.raises(ThingSpaceAuthError, match="THINGSPACE_CLIENT_ID") as caught:
        await make_client(ts).check()

    assert caught.value.status == 401
    assert len(ts.requests) == 1


async def test_a_login_answer_without_a_token_is_an_auth_error(make_client: MakeClient) -> None:
    ts = FakeThingSpace(login=lambda request: httpx.Response(200, json={"token_type": "bearer"}))

    with pytest.raises(ThingSpaceAuthError, match="without an access_token"):
        await make_client(ts).check()


# --- ThingSpace says no --------------------------------------------------------------------


async def test_a_400_carries_error_code_and_message_word_for_word(make_client: MakeClient) -> None:
    refusal = {"errorCode": "INVALID_PARAMETER", "errorMessage": "Invalid device id format"}
    ts = FakeThingSpace(answers(httpx.Response(400, json=refusal)))

    with pytest.raises(ThingSpaceRejected) as caught:
        await make_client(ts).schedule_campaign(ACCOUNT, SCHEDULE_BODY)

    error = caught.value
    assert (error.status, error.error_code, error.error_message) == (
        400,
        "INVALID_PARAMETER",
        "Invalid device id format",
    )
    assert str(error) == (
        "ThingSpace refused the request: INVALID_PARAMETER: Invalid device id format"
    )
    assert len(ts.fota_requests) == 1


async def test_a_4xx_without_thingspace_error_body_gets_a_plain_description(
    make_client: MakeClient,
) -> None:
    ts = FakeThingSpace(answers(httpx.Response(403, text="<html>denied</html>")))

    with pytest.raises(ThingSpaceRejected) as caught:
        await make_client(ts).subscription(ACCOUNT)

    assert caught.value.error_code == "HTTP_403"
    assert caught.value.error_message == f"Forbidden (GET {FOTA}/subscriptions/{ACCOUNT})"
    assert not isinstance(caught.value, ThingSpaceNotFound)


async def test_a_404_is_not_found(make_client: MakeClient) -> None:
    ts = FakeThingSpace(answers(httpx.Response(404)))
    client = make_client(ts)

    with pytest.raises(ThingSpaceNotFound) as caught:
        await client.get_campaign(ACCOUNT, CAMPAIGN_ID)
    assert isinstance(caught.value, ThingSpaceRejected)
    assert caught.value.status == 404

    assert await client.get_callback(ACCOUNT) is None
    assert await client.delete_callback(ACCOUNT) is None
    assert len(ts.fota_requests) == 3


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.get_campaign(ACCOUNT, CAMPAIGN_ID), ThingSpaceUnavailable),
        (lambda c: c.schedule_campaign(ACCOUNT, SCHEDULE_BODY), ThingSpaceAmbiguous),
    ],
    ids=["get", "schedule"],
)
async def test_an_answer_that_is_not_json(
    make_client: MakeClient,
    call: Callable[[ThingSpaceClient], Awaitable[Any]],
    error: type[ThingSpaceError],
) -> None:
    ts = FakeThingSpace(answers(httpx.Response(200, text="<html>maintenance</html>")))

    with pytest.raises(error, match="not JSON"):
        await call(make_client(ts))

    assert len(ts.fota_requests) == 1


async def test_a_schedule_answer_without_an_id_is_ambiguous(make_client: MakeClient) -> None:
    ts = FakeThingSpace(answers(httpx.Response(200, json={"status": "CampaignRequestPending"})))

    with pytest.raises(ThingSpaceAmbiguous, match="no campaign id"):
        await make_client(ts).schedule_campaign(ACCOUNT, SCHEDULE_BODY)


# --- retries -------------------------------------------------------------------------------


async def test_a_429_waits_for_retry_after(make_client: MakeClient, clock: FakeClock) -> None:
    ts = FakeThingSpace(
        answers(
            httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(200, json=CAMPAIGN),
        )
    )

    assert await make_client(ts).get_campaign(ACCOUNT, CAMPAIGN_ID) == CAMPAIGN

    assert clock.sleeps == [7]
    assert len(ts.fota_requests) == 2


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [
        (dt.timedelta(days=1), 120.0),  # capped at backoff_cap * 4
        (dt.timedelta(days=-1), 0.0),
    ],
    ids=["far-future", "past"],
)
async def test_retry_after_as_an_http_date(
    make_client: MakeClient, clock: FakeClock, retry_after: dt.timedelta, expected: float
) -> None:
    when = email.utils.format_datetime(dt.datetime.now(dt.UTC) + retry_after, usegmt=True)
    ts = FakeThingSpace(
        answers(
            httpx.Response(503, headers={"Retry-After": when}),
            httpx.Response(200, json=CAMPAIGN),
        )
    )

    await make_client(ts, backoff_cap=30.0).get_campaign(ACCOUNT, CAMPAIGN_ID)

    assert clock.sleeps == [expected]


async def test_a_503_is_retried_with_jittered_exponential_backoff(
    make_client: MakeClient, clock: FakeClock
) -> None:
    ts = FakeThingSpace(
        answers(
            httpx.Response(503),
            httpx.Response(503),
            httpx.Response(502),
            httpx.Response(200, json=CAMPAIGN),
        )
    )

    client = make_client(ts, backoff_base=2.0, backoff_cap=5.0)
    assert await client.get_campaign(ACCOUNT, CAMPAIGN_ID) == CAMPAIGN

    assert len(ts.fota_requests) == 4
    assert len(clock.sleeps) == 3
    for attempt, delay in enumerate(clock.sleeps):
        assert 0 <= delay <= min(5.0, 2.0 * 2**attempt)


async def test_a_503_forever_gives_up_after_max_retries(
    make_client: MakeClient, clock: FakeClock
) -> None:
    ts = FakeThingSpace(answers(httpx.Response(503)))

    with pytest.raises(ThingSpaceUnavailable, match="HTTP 503") as caught:
        await make_client(ts, max_retries=3).get_campaign(ACCOUNT, CAMPAIGN_ID)

    assert not isinstance(caught.value, ThingSpaceAmbiguous)
    assert caught.value.status == 503
    assert len(ts.fota_requests) == 4
    assert len(clock.sleeps) == 3


async def test_a_read_timeout_on_a_get_is_retried(
    make_client: MakeClient, clock: FakeClock
) -> None:
    ts = FakeThingSpace(answers(httpx.ReadTimeout("timed out"), httpx.Response(200, json=CAMPAIGN)))

    assert await make_client(ts).get_campaign(ACCOUNT, CAMPAIGN_ID) == CAMPAIGN

    assert len(ts.fota_requests) == 2
    assert len(clock.sleeps) == 1


async def test_a_read_timeout_on_schedule_is_ambiguous_after_one_post(
    make_client: MakeClient, clock: FakeClock
) -> None:
    ts = FakeThingSpace(answers(httpx.ReadTimeout("timed out")))

    with pytest.raises(ThingSpaceAmbiguous, match="may have been processed") as caught:
        await make_client(ts).schedule_campaign(ACCOUNT, SCHEDULE_BODY)

    assert isinstance(caught.value, ThingSpaceUnavailable)
    assert isinstance(caught.value.__cause__, httpx.ReadTimeout)
    assert len(ts.fota_requests) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_a_5xx_on_schedule_is_ambiguous_after_one_post(
    make_client: MakeClient, clock: FakeClock, status: int
) -> None:
    ts = FakeThingSpace(answers(httpx.Response(status)))

    with pytest.raises(ThingSpaceAmbiguous) as caught:
        await make_client(ts).schedule_campaign(ACCOUNT, SCHEDULE_BODY)

    assert caught.value.status == status
    assert len(ts.fota_requests) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(429), httpx.Response(503), httpx.ConnectError("refused")],
    ids=["429", "503", "connect-error"],
)
async def test_schedule_is_retried_when_nothing_was_processed(
    make_client: MakeClient, clock: FakeClock, failure: httpx.Response | Exception
) -> None:
    ts = FakeThingSpace(answers(failure, httpx.Response(200, json=CAMPAIGN)))

    assert await make_client(ts).schedule_campaign(ACCOUNT, SCHEDULE_BODY) == CAMPAIGN

    assert len(ts.fota_requests) == 2
    assert len(clock.sleeps) == 1


async def test_schedule_503_forever_is_unavailable_not_ambiguous(make_client: MakeClient) -> None:
    ts = FakeThingSpace(answers(httpx.Response(503)))

    with pytest.raises(ThingSpaceUnavailable) as caught:
        await make_client(ts, max_retries=2).schedule_campaign(ACCOUNT, SCHEDULE_BODY)

    assert not isinstance(caught.value, ThingSpaceAmbiguous)
    assert len(ts.fota_requests) == 3


async def test_connection_refused_is_retried_then_unavailable(
    make_client: MakeClient, clock: FakeClock
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    ts = FakeThingSpace(login=refuse)

    with pytest.raises(ThingSpaceUnavailable, match="Could not reach ThingSpace") as caught:
        await make_client(ts, max_retries=4).get_campaign(ACCOUNT, CAMPAIGN_ID)

    assert "Connection refused" in str(caught.value)
    assert not isinstance(caught.value, httpx.HTTPError)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert len(ts.token_requests) == 5
    assert len(clock.sleeps) == 4


async def test_a_login_5xx_is_retried_and_does_not_cool_down(
    make_client: MakeClient, clock: FakeClock
) -> None:
    ts = FakeThingSpace()
    ts.login = lambda request: httpx.Response(500)
    client = make_client(ts, max_retries=1)

    with pytest.raises(ThingSpaceUnavailable):
        await client.check()
    assert len(ts.token_requests) == 2

    ts.login = None
    await client.check()
    assert len(ts.session_requests) == 1


# --- paging and chunking -------------------------------------------------------------------


def imei(n: int) -> str:
    return f"35465809{n:07d}"


async def test_campaign_devices_follows_three_pages(make_client: MakeClient) -> None:
    pages = {
        "0": {"hasMoreData": True, "lastSeenDeviceId": imei(2), "deviceList": [
            {"deviceId": imei(1), "status": "UpgradePending"},
            {"deviceId": imei(2), "status": "UpgradeSuccess"},
        ]},
        imei(2): {"hasMoreData": True, "lastSeenDeviceId": imei(4), "deviceList": [
            {"deviceId": imei(3), "status": "UpgradeFailed"},
            {"deviceId": imei(4), "status": "UpgradeSuccess"},
        ]},
        imei(4): {"hasMoreData": False, "lastSeenDeviceId": imei(5), "deviceList": [
            {"deviceId": imei(5), "status": "UpgradeSuccess"},
        ]},
    }  # fmt: skip
    ts = FakeThingSpace(
        lambda request: httpx.Response(200, json=pages[request.url.params["lastSeenDeviceId"]])
    )

    devices = [d async for d in make_client(ts).campaign_devices(ACCOUNT, CAMPAIGN_ID)]

    assert [d["deviceId"] for d in devices] == [imei(n) for n in range(1, 6)]
    assert [r.url.params["lastSeenDeviceId"] for r in ts.fota_requests] == ["0", imei(2), imei(4)]
    assert {r.url.path for r in ts.fota_requests} == {
        f"{FOTA}/reports/{ACCOUNT}/campaigns/{CAMPAIGN_ID}/devices"
    }


async def test_campaign_devices_stops_when_a_page_repeats_its_cursor(
    make_client: MakeClient,
) -> None:
    page = {"hasMoreData": True, "lastSeenDeviceId": imei(1), "deviceList": [{"deviceId": imei(1)}]}

    def fota(request: httpx.Request) -> httpx.Response:
        assert len(ts.fota_requests) <= 5, "paging in a loop"
        return httpx.Response(200, json=page)

    ts = FakeThingSpace(fota)

    devices = [d async for d in make_client(ts).campaign_devices(ACCOUNT, CAMPAIGN_ID)]

    assert len(devices) == 2
    assert [r.url.params["lastSeenDeviceId"] for r in ts.fota_requests] == ["0", imei(1)]


@settings(max_examples=50, deadline=None)
@given(cursors=st.lists(st.sampled_from(["0", "a", "b", "c", ""]), min_size=1, max_size=12))
def test_campaign_devices_always_ends(cursors: list[str]) -> None:
    """Whatever cursors ThingSpace sends back, paging ends, and asks each cursor once."""

    def fota(request: httpx.Request) -> httpx.Response:
        n = len(ts.fota_requests) - 1
        assert n < 10, "paging in a loop"
        cursor = cursors[n] if n < len(cursors) else cursors[-1]
        return httpx.Response(
            200, json={"hasMoreData": True, "lastSeenDeviceId": cursor, "deviceList": []}
        )

    ts = FakeThingSpace(fota)

    async def page_through() -> None:
        async with ThingSpaceClient(
            base_url=BASE_URL,
            client_id=Secret(CLIENT_ID),
            client_secret=Secret(CLIENT_SECRET),
            username=Secret(USERNAME),
            password=Secret(PASSWORD),
            transport=httpx.MockTransport(ts),
        ) as client:
            async for _ in client.campaign_devices(ACCOUNT, CAMPAIGN_ID):
                pass

    asyncio.run(page_through())

    sent = [r.url.params["lastSeenDeviceId"] for r in ts.fota_requests]
    assert len(sent) == len(set(sent)) <= 4


async def test_device_info_sends_chunks_and_joins_the_answers(make_client: MakeClient) -> None:
    def fota(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)["deviceList"]
        return httpx.Response(
            200,
            json={
                "accountName": ACCOUNT,
                "deviceCount": len(sent),
                "deviceList": [{"deviceId": d, "fotaEligible": True} for d in sent],
            },
        )

    ts = FakeThingSpace(fota)
    imeis = [imei(n) for n in range(2500)]

    devices = await make_client(ts).device_info(ACCOUNT, imeis)

    chunks = [json.loads(r.content)["deviceList"] for r in ts.fota_requests]
    assert sorted(len(c) for c in chunks) == [500, 1000, 1000]
    assert sorted(d for c in chunks for d in c) == imeis
    assert {r.url.path for r in ts.fota_requests} == {f"{FOTA}/devices/{ACCOUNT}"}
    assert [d["deviceId"] for d in devices] == imeis


async def test_device_info_keeps_to_its_concurrency(make_client: MakeClient) -> None:
    in_flight = 0
    most = 0

    async def fota(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        for _ in range(3):
            await asyncio.sleep(0)
        in_flight -= 1
        return httpx.Response(200, json={"deviceList": []})

    ts = FakeThingSpace(fota)

    await make_client(ts).device_info(
        ACCOUNT, [imei(n) for n in range(100)], chunk_size=10, concurrency=3
    )

    assert len(ts.fota_requests) == 10
    assert most == 3


async def test_device_info_of_nothing_asks_nothing(make_client: MakeClient) -> None:
    ts = FakeThingSpace()
    assert await make_client(ts).device_info(ACCOUNT, []) == []
    assert ts.requests == []


async def test_device_info_raises_the_first_mapped_error(make_client: MakeClient) -> None:
    def fota(request: httpx.Request) -> httpx.Response:
        if imei(1500) in json.loads(request.content)["deviceList"]:
            return httpx.Response(400, json={"errorCode": "E1", "errorMessage": "bad device"})
        return httpx.Response(200, json={"deviceList": []})

    ts = FakeThingSpace(fota)

    with pytest.raises(ThingSpaceRejected, match="E1: bad device"):
        await make_client(ts).device_info(ACCOUNT, [imei(n) for n in range(2500)])


async def test_campaigns_by_status_follows_pages(make_client: MakeClient) -> None:
    def fota(request: httpx.Request) -> httpx.Response:
        if "lastSeenCampaignId" not in request.url.params:
            return httpx.Response(
                200,
                json={"hasMoreData": True, "lastSeenCampaignId": "c2",
                      "campaignList": [{"id": "c1"}, {"id": "c2"}]},
            )  # fmt: skip
        return httpx.Response(200, json={"hasMoreData": False, "campaignList": [{"id": "c3"}]})

    ts = FakeThingSpace(fota)

    found = [c async for c in make_client(ts).campaigns_by_status(ACCOUNT, "CampaignEnded")]

    assert [c["id"] for c in found] == ["c1", "c2", "c3"]
    assert [dict(r.url.params) for r in ts.fota_requests] == [
        {"campaignStatus": "CampaignEnded"},
        {"campaignStatus": "CampaignEnded", "lastSeenCampaignId": "c2"},
    ]
    assert ts.fota_requests[0].url.path == f"{FOTA}/reports/{ACCOUNT}/firmware/campaigns"


async def test_campaigns_by_status_accepts_a_bare_list(make_client: MakeClient) -> None:
    ts = FakeThingSpace(answers(httpx.Response(200, json=[{"id": "c1"}])))

    found = [c async for c in make_client(ts).campaigns_by_status(ACCOUNT, "CampaignEnded")]

    assert found == [{"id": "c1"}]
    assert len(ts.fota_requests) == 1


async def test_find_campaign_by_name(make_client: MakeClient) -> None:
    wanted = {"id": "c9", "campaignName": "fota-bot FB-12"}

    def fota(request: httpx.Request) -> httpx.Response:
        if request.url.params["campaignStatus"] == "CampaignRequestQueued":
            return httpx.Response(
                200,
                json={"campaignList": [{"id": "c8", "campaignName": "fota-bot FB-1"}, wanted]},
            )
        return httpx.Response(200, json={"campaignList": [], "hasMoreData": False})

    ts = FakeThingSpace(fota)
    client = make_client(ts)

    assert await client.find_campaign_by_name(ACCOUNT, "fota-bot FB-12") == wanted
    assert [r.url.params["campaignStatus"] for r in ts.fota_requests] == [
        "CampaignRequestPending",
        "CampaignRequestQueued",
    ]

    ts.requests.clear()
    assert await client.find_campaign_by_name(ACCOUNT, "fota-bot FB-1 ") is None
    assert [r.url.params["campaignStatus"] for r in ts.fota_requests] == list(CAMPAIGN_STATUSES)


async def test_find_campaign_by_name_raises_rather_than_answering_none(
    make_client: MakeClient,
) -> None:
    ts = FakeThingSpace(answers(httpx.Response(503)))

    with pytest.raises(ThingSpaceUnavailable):
        await make_client(ts, max_retries=0).find_campaign_by_name(ACCOUNT, "fota-bot FB-12")


async def test_a_status_thingspace_cannot_search_is_skipped_and_logged_once(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    wanted = {"id": "c9", "campaignName": "fota-bot FB-12"}

    def fota(request: httpx.Request) -> httpx.Response:
        status = request.url.params["campaignStatus"]
        if status == "CampaignPreScheduled":
            # What a ThingSpace that follows Verizon's SDK enum would answer.
            return httpx.Response(
                400,
                json={"errorCode": "INVALID_PARAMETER", "errorMessage": "Invalid campaignStatus"},
            )
        if status == "CampaignEnded":
            return httpx.Response(200, json={"campaignList": [wanted], "hasMoreData": False})
        return httpx.Response(200, json={"campaignList": [], "hasMoreData": False})

    ts = FakeThingSpace(fota)
    client = make_client(ts)
    caplog.set_level(logging.WARNING, logger="bot.thingspace")

    assert await client.find_campaign_by_name(ACCOUNT, "fota-bot FB-12") == wanted
    # Not found elsewhere is not "not created": FB-13 may be the campaign pre-scheduled.
    with pytest.raises(ThingSpaceRejected, match="STATUS_NOT_SEARCHABLE") as caught:
        await client.find_campaign_by_name(ACCOUNT, "fota-bot FB-13")
    assert "CampaignPreScheduled" in caught.value.error_message
    asked = [r.url.params["campaignStatus"] for r in ts.fota_requests]
    assert asked.count("CampaignPreScheduled") == 2
    assert asked[-len(CAMPAIGN_STATUSES):] == list(CAMPAIGN_STATUSES)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "cannot list campaigns by status CampaignPreScheduled" in warnings[0]
    assert "INVALID_PARAMETER" in warnings[0]


async def test_a_look_up_with_no_searchable_status_cannot_decide(make_client: MakeClient) -> None:
    ts = FakeThingSpace(answers(httpx.Response(400, json={"errorCode": "E", "errorMessage": "no"})))

    with pytest.raises(ThingSpaceRejected, match="NO_STATUS_SEARCHABLE"):
        await make_client(ts).find_campaign_by_name(ACCOUNT, "fota-bot FB-12")


async def test_a_400_on_a_later_page_still_fails_the_look_up(make_client: MakeClient) -> None:
    def fota(request: httpx.Request) -> httpx.Response:
        if "lastSeenCampaignId" in request.url.params:
            return httpx.Response(400, json={"errorCode": "E", "errorMessage": "bad cursor"})
        return httpx.Response(
            200, json={"campaignList": [{"id": "c1"}], "hasMoreData": True, "lastSeenCampaignId": "c1"}
        )

    ts = FakeThingSpace(fota)

    # Half a list is not "that status cannot be searched": a campaign may be on the lost page.
    with pytest.raises(ThingSpaceRejected, match="bad cursor") as caught:
        await make_client(ts).find_campaign_by_name(ACCOUNT, "fota-bot FB-12")
    assert not isinstance(caught.value, StatusNotSearchable)


# --- the callback listener ------------------------------------------------------------------


class Listener:
    """ThingSpace's one callback listener per account, as Verizon's SDK models it: GET reads
    ({"url"} or 404), POST creates, PUT updates; `put_refused` plays a ThingSpace whose older
    pages know only POST."""

    def __init__(self, url: str | None = None, *, put_refused: bool = False) -> None:
        self.url = url
        self.put_refused = put_refused

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"{FOTA}/callbacks/{ACCOUNT}"
        if request.method == "GET":
            if self.url is None:
                return httpx.Response(
                    404, json={"errorCode": "NOT_FOUND", "errorMessage": "No callback registered"}
                )
            return httpx.Response(200, json={"url": self.url})
        if request.method == "PUT" and self.put_refused:
            return httpx.Response(405)
        if request.method in ("POST", "PUT"):
            self.url = json.loads(request.content)["url"]
            return httpx.Response(200, json={"url": self.url})
        return httpx.Response(405)


@pytest.mark.parametrize(
    ("registered", "put_refused", "done", "calls"),
    [
        pytest.param(CALLBACK_URL, False, Registration.UNCHANGED, ["GET"], id="same URL"),
        pytest.param(None, False, Registration.CREATED, ["GET", "POST"], id="none"),
        pytest.param("https://old.example.com/cb/x", False, Registration.UPDATED, ["GET", "PUT"],
                     id="another URL"),
        pytest.param("https://old.example.com/cb/x", True, Registration.REPLACED,
                     ["GET", "PUT", "POST"], id="PUT refused"),
    ],
)  # fmt: skip
async def test_register_callback_reads_first_and_changes_only_what_differs(
    make_client: MakeClient,
    registered: str | None,
    put_refused: bool,
    done: Registration,
    calls: list[str],
) -> None:
    listener = Listener(registered, put_refused=put_refused)
    ts = FakeThingSpace(listener)

    assert await make_client(ts).register_callback(ACCOUNT, CALLBACK_URL) is done

    assert [r.method for r in ts.fota_requests] == calls
    assert listener.url == CALLBACK_URL
    for request in ts.fota_requests:
        assert request.headers["Accept"] == "application/json"
        if request.method in ("POST", "PUT"):
            assert json.loads(request.content) == {"url": CALLBACK_URL}


async def test_a_refused_read_of_the_listener_registers_with_post(make_client: MakeClient) -> None:
    def fota(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(
                400, json={"errorCode": "NO_CALLBACK", "errorMessage": "No callback registered"}
            )
        return httpx.Response(200, json={"url": CALLBACK_URL})

    ts = FakeThingSpace(fota)

    assert await make_client(ts).register_callback(ACCOUNT, CALLBACK_URL) is Registration.CREATED
    assert [r.method for r in ts.fota_requests] == ["GET", "POST"]


async def test_register_callback_twice_sends_one_write(make_client: MakeClient) -> None:
    listener = Listener()
    ts = FakeThingSpace(listener)
    client = make_client(ts)

    assert await client.register_callback(ACCOUNT, CALLBACK_URL) is Registration.CREATED
    assert await client.register_callback(ACCOUNT, CALLBACK_URL) is Registration.UNCHANGED
    assert [r.method for r in ts.fota_requests] == ["GET", "POST", "GET"]


async def test_a_refused_registration_keeps_the_callback_token_out_of_the_error(
    make_client: MakeClient,
) -> None:
    def fota(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(404)
        return httpx.Response(
            400, json={"errorCode": "INVALID_URL", "errorMessage": f"Bad url {CALLBACK_URL}"}
        )

    with pytest.raises(ThingSpaceRejected) as caught:
        await make_client(FakeThingSpace(fota)).register_callback(ACCOUNT, CALLBACK_URL)
    assert "cb-token-Ww2" not in str(caught.value)


async def test_remove_devices_needs_a_device(make_client: MakeClient) -> None:
    ts = FakeThingSpace()
    with pytest.raises(ValueError):
        await make_client(ts).remove_devices(ACCOUNT, CAMPAIGN_ID, [])
    assert ts.fota_requests == []


# --- secrets -------------------------------------------------------------------------------


async def test_secrets_stay_out_of_repr_errors_and_logs(
    make_client: MakeClient, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    messages: list[str] = []

    async def collect(call: Awaitable[Any]) -> None:
        try:
            await call
        except ThingSpaceError as exc:
            messages.append(str(exc))

    echo = FakeThingSpace(
        lambda request: httpx.Response(
            400,
            json={
                "errorCode": "BAD",
                # A careless server echoing what it was sent.
                "errorMessage": f"{request.headers['Authorization']} {request.headers['VZ-M2M-Token']} "
                f"{request.content.decode()}",
            },
        )
    )
    client = make_client(echo)
    assert repr(client) == f"ThingSpaceClient(base_url='{BASE_URL}')"
    await collect(client.register_callback(ACCOUNT, CALLBACK_URL))
    await collect(client.get_campaign(ACCOUNT, CAMPAIGN_ID))

    for handler in (
        answers(httpx.Response(401)),
        answers(httpx.Response(429, headers={"Retry-After": "1"}), httpx.Response(503)),
        answers(httpx.ReadTimeout("timed out")),
    ):
        failing = make_client(FakeThingSpace(handler), max_retries=1)
        await collect(failing.schedule_campaign(ACCOUNT, SCHEDULE_BODY))

    def echo_login(request: httpx.Request) -> httpx.Response:
        body = request.content.decode()
        return httpx.Response(
            401,
            json={
                "error": "invalid_client",
                "error_description": body + request.headers["Authorization"],
            },
        )

    refused = make_client(FakeThingSpace(login=echo_login))
    await collect(refused.check())
    await collect(refused.check())

    assert len(messages) == 7
    assert "cb-token-Ww2" not in messages[0]
    assert "********" in messages[1]
    debug_lines = [r.getMessage() for r in caplog.records if r.name == "bot.thingspace"]
    assert f"POST {TOKEN_PATH} -> 200" in " ".join(debug_lines)
    assert any(
        re.search(rf"GET {FOTA}/campaigns/\S+ -> 400 in \d+ ms", line) for line in debug_lines
    )
    for text in (repr(client), *messages, caplog.text):
        assert_no_secret(text)
        assert "cb-token-Ww2" not in text
