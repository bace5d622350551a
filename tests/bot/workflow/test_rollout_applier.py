"""The callback applier's loop (`Rollout.run`): a burst of stored callbacks is applied in one
batch once it has gathered, a backlog in batches of `APPLY_BATCH` with a turn of the loop
between them, and nothing stored is left unapplied."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bot.workflow.rollout import APPLY_BATCH, APPLY_BYTES, Rollout, within_bytes
from storage.store import Store
from tests.conftest import ManualClock


class Quiet:
    """Events and scheduler that record nothing: these callbacks name no known campaign."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None


class Applier:
    def __init__(self, store: Store, clock: ManualClock) -> None:
        self.rollout = Rollout(
            store=store,
            client=None,  # type: ignore[arg-type]  # never re-reads here
            events=Quiet(),  # type: ignore[arg-type]
            scheduler=Quiet(),  # type: ignore[arg-type]
            clock=clock,
            update_interval=30.0,
        )
        self.batches: list[int] = []
        self.gathered = asyncio.Event()
        self.gathering = asyncio.Event()
        real = self.rollout.process_pending

        def counting(limit: int = APPLY_BATCH) -> int:
            read = real(limit)
            self.batches.append(read)
            return read

        async def gather() -> None:
            # The test says when the burst is over, instead of the real short wait.
            self.gathering.set()
            await self.gathered.wait()
            self.gathered.clear()
            self.gathering.clear()

        self.rollout.process_pending = counting  # type: ignore[method-assign]
        self.rollout._gather = gather  # type: ignore[method-assign]


@pytest.fixture
async def applier(store: Store, clock: ManualClock) -> AsyncIterator[Applier]:
    a = Applier(store, clock)
    task = asyncio.create_task(a.rollout.run())
    await until(lambda: a.batches == [0])  # started: nothing stored, waiting for a wake-up
    yield a
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(10_000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the applier never got there")


def store_one(store: Store, rollout: Rollout, n: int) -> None:
    body: dict[str, Any] = {"campaignId": "not-known-yet", "deviceId": f"99001390783{n:04d}", "status": "UpgradeSuccess"}
    store.store_callbacks([(json.dumps(body), None)])
    rollout.wake()


def waiting(store: Store) -> int:
    """Callbacks read and kept for a campaign ThingSpace has not named yet."""
    return int(store.db.execute("SELECT count(*) FROM callbacks WHERE thingspace_id IS NOT NULL").fetchone()[0])


async def test_a_burst_stored_over_several_turns_is_applied_in_one_batch(
    applier: Applier, store: Store
) -> None:
    for n in range(10):
        store_one(store, applier.rollout, n)
        await asyncio.sleep(0)  # each in a turn of the loop of its own, as they arrive
    await until(applier.gathering.is_set)
    assert applier.batches == [0]  # nothing applied while the burst gathers
    applier.gathered.set()
    await until(lambda: waiting(store) == 10)
    assert applier.batches == [0, 10]


async def test_a_backlog_goes_in_batches_with_the_loop_free_between_them(
    applier: Applier, store: Store
) -> None:
    total = APPLY_BATCH * 2 + 7
    store.store_callbacks(
        [(json.dumps({"campaignId": "not-known-yet", "deviceId": str(n), "status": "x"}), None) for n in range(total)]
    )
    applier.rollout.wake()
    await until(applier.gathering.is_set)
    applier.gathered.set()
    await until(lambda: waiting(store) == total)
    assert applier.batches == [0, APPLY_BATCH, APPLY_BATCH, 7]
    # Caught up: waiting for the next wake-up, not reading again.
    for _ in range(100):
        await asyncio.sleep(0)
    assert applier.batches == [0, APPLY_BATCH, APPLY_BATCH, 7]
    assert not applier.gathering.is_set()


async def test_a_callback_stored_while_a_batch_is_applied_is_not_missed(
    applier: Applier, store: Store
) -> None:
    real = applier.rollout.process_pending

    def storing_meanwhile(limit: int = APPLY_BATCH) -> int:
        read = real(limit)
        if len(applier.batches) == 2:  # during the first real batch
            store_one(store, applier.rollout, 99)
        return read

    applier.rollout.process_pending = storing_meanwhile  # type: ignore[method-assign]
    store_one(store, applier.rollout, 1)
    await until(applier.gathering.is_set)
    applier.gathered.set()
    await until(lambda: waiting(store) == 1)
    # The wake-up during the batch is kept: the next gather, then the late one.
    await until(applier.gathering.is_set)
    applier.gathered.set()
    await until(lambda: waiting(store) == 2)
    assert applier.batches == [0, 1, 1]


def test_a_batch_stops_at_its_byte_budget_but_always_takes_one() -> None:
    rows = [(1, "a" * 10), (2, "b" * 10), (3, "c" * 10)]
    assert within_bytes(rows, 25) == rows[:2]
    assert within_bytes(rows, 30) == rows
    assert within_bytes(rows, 5) == rows[:1]  # a callback larger than the budget still goes
    assert within_bytes([], 5) == []


async def test_callbacks_carrying_many_devices_go_in_smaller_batches_with_the_loop_free_between(
    applier: Applier, store: Store
) -> None:
    # ThingSpace may report many devices in one callback: the batch is bounded by how much
    # there is to apply, not only by how many callbacks carry it.
    def many(n: int) -> str:
        return json.dumps(
            [
                {"campaignId": "not-known-yet", "deviceId": f"99001390{n:03d}{d:04d}", "status": "UpgradeSuccess"}
                for d in range(120)
            ]
        )

    bodies = [many(n) for n in range(10)]
    per_batch = APPLY_BYTES // len(bodies[0])
    assert 1 <= per_batch < 10
    store.store_callbacks([(b, None) for b in bodies])
    applier.rollout.wake()
    await until(applier.gathering.is_set)
    applier.gathered.set()
    await until(lambda: waiting(store) == 10)
    full, rest = divmod(10, per_batch)
    assert applier.batches == [0] + [per_batch] * full + ([rest] if rest else [])
    for _ in range(100):
        await asyncio.sleep(0)
    assert not applier.gathering.is_set()  # caught up, waiting for the next wake-up
