"""Pre-flight's reads (subscription, firmware list, device information) asked by several callers
at the same moment reach the ThingSpace sandbox once; asked after the answer, they go again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from bot.secrets import Secret
from bot.standins.thingspace import Sandbox, create_sandbox_app, sandbox_imeis
from bot.thingspace import ThingSpaceClient, ThingSpaceRejected

ACCOUNT = "0000000000-00001"
FOTA = "/api/fota/v3"


class HeldTransport(httpx.AsyncBaseTransport):
    """The sandbox behind a gate: FOTA calls wait at it until the test opens it, so callers
    are surely asking at the same moment. Counts what reached the sandbox."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.inner = httpx.ASGITransport(app=create_sandbox_app(sandbox))
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = 0
        self.sent: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith(FOTA):
            self.waiting += 1
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1
            self.sent.append((request.method, request.url.path))
        return await self.inner.handle_async_request(request)

    def hold(self) -> None:
        self.gate.clear()

    async def until_waiting(self, n: int) -> None:
        for _ in range(1000):
            if self.waiting >= n:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"{self.waiting} calls at the gate, not {n}")


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    sb = Sandbox()
    yield sb
    await sb.aclose()


@pytest.fixture
async def transport(sandbox: Sandbox) -> HeldTransport:
    return HeldTransport(sandbox)


@pytest.fixture
async def client(transport: HeldTransport) -> AsyncIterator[ThingSpaceClient]:
    async with ThingSpaceClient(
        base_url="https://thingspace.test",
        client_id=Secret("key"),
        client_secret=Secret("secret"),
        username=Secret("uws"),
        password=Secret("pw"),
        transport=transport,
    ) as c:
        await c.check()  # logged in: only the FOTA calls below reach the gate
        yield c


async def test_two_callers_asking_at_once_share_one_request(client: ThingSpaceClient, transport: HeldTransport) -> None:
    transport.hold()
    first = asyncio.ensure_future(client.subscription(ACCOUNT))
    await transport.until_waiting(1)
    second = asyncio.ensure_future(client.subscription(ACCOUNT))
    for _ in range(5):
        await asyncio.sleep(0)
    transport.gate.set()
    a, b = await asyncio.gather(first, second)
    assert transport.sent == [("GET", f"{FOTA}/subscriptions/{ACCOUNT}")]
    assert a == b and a is not b  # each caller reads its own copy of the answer
    # Asked after the answer came back: a request of its own.
    assert await client.subscription(ACCOUNT) == a
    assert len(transport.sent) == 2


async def test_firmware_lists_and_device_pages_are_shared_only_when_the_same(
    client: ThingSpaceClient, transport: HeldTransport
) -> None:
    devices = sandbox_imeis(3, start=500)
    transport.hold()
    calls = [
        client.list_firmware(ACCOUNT, "LWM2M"),
        client.list_firmware(ACCOUNT, "LWM2M"),
        client.list_firmware(ACCOUNT, "HTTP"),  # another read
        client.device_info(ACCOUNT, devices),
        client.device_info(ACCOUNT, devices),
        client.device_info(ACCOUNT, devices[:2]),  # other devices
    ]
    tasks = [asyncio.ensure_future(call) for call in calls]
    await transport.until_waiting(4)
    transport.gate.set()
    lwm2m, again, http, infos, same, fewer = await asyncio.gather(*tasks)
    assert sorted(transport.sent) == sorted(
        [("GET", f"{FOTA}/firmware/{ACCOUNT}")] * 2 + [("POST", f"{FOTA}/devices/{ACCOUNT}")] * 2
    )
    assert lwm2m == again and infos == same
    assert [d["deviceId"] for d in infos] == devices and [d["deviceId"] for d in fewer] == devices[:2]


async def test_a_refusal_reaches_every_caller_that_shared_the_read(
    client: ThingSpaceClient, transport: HeldTransport, sandbox: Sandbox
) -> None:
    sandbox.fail_next(f"{FOTA}/subscriptions/", 403)
    transport.hold()
    tasks = [asyncio.ensure_future(client.subscription(ACCOUNT)) for _ in range(2)]
    await transport.until_waiting(1)
    for _ in range(5):
        await asyncio.sleep(0)
    transport.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert len(transport.sent) == 1
    assert all(isinstance(r, ThingSpaceRejected) and r.status == 403 for r in results)
    assert results[0] is not results[1]  # each caller its own error
    # The next caller asks again (and the sandbox answers it this time).
    assert (await client.subscription(ACCOUNT))["accountName"] == ACCOUNT


async def test_a_caller_called_off_does_not_stop_the_read_of_the_others(
    client: ThingSpaceClient, transport: HeldTransport
) -> None:
    transport.hold()
    first = asyncio.ensure_future(client.subscription(ACCOUNT))
    await transport.until_waiting(1)
    second = asyncio.ensure_future(client.subscription(ACCOUNT))
    for _ in range(5):
        await asyncio.sleep(0)
    first.cancel()
    for _ in range(5):
        await asyncio.sleep(0)
    transport.gate.set()
    assert (await second)["accountName"] == ACCOUNT
    assert first.cancelled() and len(transport.sent) == 1


async def test_the_last_caller_called_off_stops_the_read(client: ThingSpaceClient, transport: HeldTransport) -> None:
    transport.hold()
    only = asyncio.ensure_future(client.subscription(ACCOUNT))
    await transport.until_waiting(1)
    only.cancel()
    for _ in range(5):
        await asyncio.sleep(0)
    assert transport.waiting == 0  # the request at the gate was called off too
    transport.gate.set()
    # A later caller sends the read anew, and is answered.
    assert (await client.subscription(ACCOUNT))["accountName"] == ACCOUNT
    assert transport.sent == [("GET", f"{FOTA}/subscriptions/{ACCOUNT}")]
