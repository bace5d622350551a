"""A large request is stored a chunk per transaction, and is nothing until its last one.

Work is counted (rows per transaction, transactions, turns the loop got), never timed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from storage.model import CampaignNotFound, TimeWindow, request_hash
from storage.preflight import active_conflicts
from storage.store import DEVICE_CHUNK, Store
from tests.conftest import ManualClock
from tests.support.sqlite import Transactions

DEVICES = [f"35465809{n:07d}" for n in range(2 * DEVICE_CHUNK + 500)]  # three chunks
# SQLite's change counter counts a device row and its trigger's update of the status counts.
WRITES_PER_DEVICE = 2


def request(devices: list[str], **overrides: Any) -> dict[str, Any]:
    return {
        "requester": "U_REQ",
        "account": "0000000000-00001",
        "firmware_name": "SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657",
        "firmware_from": "SR1.2.0.0-10512",
        "firmware_to": "SR1.2.0.0-10657",
        "protocol": "LWM2M",
        "start_date": dt.date(2026, 11, 27),
        "end_date": dt.date(2026, 11, 30),
        "windows": (TimeWindow(18, 22),),
        "name": "Smart FOTA",
        "devices": devices,
        "sandbox": True,
        "expires_at": dt.datetime(2026, 11, 27, 9, tzinfo=dt.UTC),
        **overrides,
    }


def device_rows(store: Store, campaign_id: int) -> int:
    return int(store.db.execute("SELECT count(*) FROM devices WHERE campaign_id = ?", [campaign_id]).fetchone()[0])


def reservations(store: Store) -> int:
    return int(store.db.execute("SELECT count(*) FROM requests_being_stored").fetchone()[0])


async def test_a_large_request_is_written_a_chunk_per_transaction(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def whole_list(*_: Any) -> str:
        raise AssertionError("the last transaction serialises the whole device list again")

    # The list is serialised with its chunks; the last transaction only hashes it.
    monkeypatch.setattr("storage.store.request_hash", whole_list)
    seen = Transactions(store.db.conn)
    campaign = await store.store_request(**request(DEVICES))
    seen.stop()
    # Reservation, three chunks, the campaign: no transaction writes more than a chunk and the
    # campaign's own few rows (its row, the audit line, the updates of installation and hash).
    assert len(seen.sizes) == 5
    assert max(seen.sizes) == DEVICE_CHUNK * WRITES_PER_DEVICE
    assert sum(seen.sizes[1:4]) == len(DEVICES) * WRITES_PER_DEVICE
    assert seen.sizes[-1] < 10
    assert store.device_ids(campaign.id) == DEVICES  # in the order given
    assert campaign.device_count == len(DEVICES)
    assert store.device_counts(campaign.id)["pending"] == len(DEVICES)
    assert campaign.content_hash == request_hash(campaign, DEVICES)
    assert reservations(store) == 0


async def test_chunked_and_whole_store_the_same_request(db_path: Path, tmp_path: Path, clock: ManualClock) -> None:
    chunked_store = Store.open(db_path, clock=clock)
    whole_store = Store.open(tmp_path / "whole.db", clock=clock)
    try:
        chunked = await chunked_store.store_request(**request(DEVICES))
        whole = whole_store.create_campaign(**request(DEVICES))
        assert (chunked.id, chunked.state, chunked.device_count) == (whole.id, whole.state, whole.device_count)
        assert chunked_store.device_ids(chunked.id) == whole_store.device_ids(whole.id)
        assert chunked_store.audit(chunked.id) == whole_store.audit(whole.id)
        # Each database names its requests with its own installation id; the hash covers it.
        assert chunked.content_hash == request_hash(chunked, DEVICES)
        assert whole.content_hash == request_hash(whole, DEVICES)
    finally:
        chunked_store.close()
        whole_store.close()


async def test_a_small_request_is_one_transaction_as_before(store: Store) -> None:
    seen = Transactions(store.db.conn)
    campaign = await store.store_request(**request(DEVICES[:DEVICE_CHUNK]))
    seen.stop()
    assert len(seen.sizes) == 1 and seen.sizes[0] > DEVICE_CHUNK * WRITES_PER_DEVICE
    assert device_rows(store, campaign.id) == DEVICE_CHUNK


async def test_the_loop_runs_between_chunks(store: Store) -> None:
    turns = 0
    storing = True

    async def other_work() -> None:
        nonlocal turns
        while storing:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    before = turns
    await store.store_request(**request(DEVICES))
    storing = False
    await other
    assert turns - before >= 3  # a turn after each of the three chunks


async def test_a_crash_between_chunks_leaves_nothing_visible_nor_sendable(db_path: Path, clock: ManualClock) -> None:
    store = Store.open(db_path, clock=clock)
    earlier = store.create_campaign(**request(DEVICES[:3]))
    # What store_request has committed after two chunks, then the process dies.
    campaign_id = store.reserve_campaign_id()
    store.store_device_chunk(campaign_id, DEVICES[:DEVICE_CHUNK])
    store.store_device_chunk(campaign_id, DEVICES[DEVICE_CHUNK : 2 * DEVICE_CHUNK])
    store.close()

    store = Store.open(db_path, clock=clock)
    try:
        assert [c.id for c in store.list_campaigns(scope="all", limit=100)] == [earlier.id]
        with pytest.raises(CampaignNotFound):
            store.find_campaign(f"FB-{campaign_id}")
        with pytest.raises(CampaignNotFound):
            store.claim_for_submission(campaign_id, required=0)
        # The other request sharing those devices sees no campaign holding them.
        assert active_conflicts(store.db.conn, earlier.id, earlier.device_count) == []
        assert device_rows(store, campaign_id) == 2 * DEVICE_CHUNK

        # Start-up deletes what was left, a chunk per transaction.
        seen = Transactions(store.db.conn)
        assert store.discard_unfinished_requests() == 1
        seen.stop()
        assert max(seen.sizes) == DEVICE_CHUNK * WRITES_PER_DEVICE
        assert device_rows(store, campaign_id) == 0 and reservations(store) == 0
        assert sum(store.device_counts(campaign_id).values()) == 0
        assert store.db.execute("PRAGMA foreign_key_check").fetchall() == []

        # The id is free again, and the next request is whole.
        again = await store.store_request(**request(DEVICES))
        assert again.id == campaign_id and store.device_ids(again.id) == DEVICES
    finally:
        store.close()


async def test_an_error_between_chunks_deletes_what_was_written(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    written = store.store_device_chunk
    calls = 0

    def failing(campaign_id: int, imeis: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise sqlite3.OperationalError("database or disk is full")
        written(campaign_id, imeis)

    monkeypatch.setattr(store, "store_device_chunk", failing)
    with pytest.raises(sqlite3.OperationalError):
        await store.store_request(**request(DEVICES))
    assert store.db.execute("SELECT count(*) FROM devices").fetchone()[0] == 0
    assert reservations(store) == 0
    assert store.list_campaigns(scope="all") == []


async def test_the_campaign_is_not_made_unless_every_device_was_written(store: Store) -> None:
    campaign_id = store.reserve_campaign_id()
    store.store_device_chunk(campaign_id, DEVICES[:DEVICE_CHUNK])
    with pytest.raises(RuntimeError, match=f"{DEVICE_CHUNK} of {len(DEVICES)} devices"):
        store.create_campaign(**request(DEVICES), reserved_id=campaign_id)
    assert store.list_campaigns(scope="all") == [] and reservations(store) == 1


def test_a_chunk_needs_a_reserved_id(store: Store) -> None:
    with pytest.raises(RuntimeError, match="not reserved"):
        store.store_device_chunk(99, DEVICES[:2])
    assert store.db.execute("SELECT count(*) FROM devices").fetchone()[0] == 0
    # The foreign key is back on for everything else.
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_no_campaign_lands_on_a_reserved_id(store: Store) -> None:
    campaign_id = store.reserve_campaign_id()
    store.store_device_chunk(campaign_id, DEVICES[:2])
    # Any other insert taking the next rowid would adopt the devices being written: refused.
    with pytest.raises(sqlite3.IntegrityError, match="reserved"):
        store.db.execute(
            """INSERT INTO campaigns(state, requester, account, firmware_name, firmware_from, firmware_to,
               protocol, start_date, end_date, windows, device_count, content_hash, sandbox, created_at,
               updated_at, expires_at) VALUES('approved', 'U', 'a', 'f', 'x', 'y', 'LWM2M', '2026-11-27',
               '2026-11-30', '[]', 1, '', 1, 'now', 'now', 'later')"""
        )
    store.db.conn.rollback()
    # The allocator a wave's campaign takes its id from steps past it.
    assert store.next_campaign_id() == campaign_id + 1


async def test_two_large_requests_stored_at_once_keep_their_own_devices(store: Store) -> None:
    other = [f"49015420{n:07d}" for n in range(DEVICE_CHUNK + 1)]
    first, second = await asyncio.gather(
        store.store_request(**request(DEVICES)), store.store_request(**request(other, requester="U_OTHER"))
    )
    assert first.id != second.id
    assert store.device_ids(first.id) == DEVICES and store.device_ids(second.id) == other
    assert reservations(store) == 0


async def test_a_small_request_made_while_a_large_one_is_stored_is_recorded(store: Store) -> None:
    small = DEVICES[:2]
    other = [f"49015420{n:07d}" for n in range(DEVICE_CHUNK + 1)]

    async def small_request() -> Any:
        await asyncio.sleep(0)  # the large request has reserved its id and written a chunk
        return store.create_campaign(**request(small, requester="U_SMALL"))

    large, made = await asyncio.gather(store.store_request(**request(other)), small_request())
    assert large.id != made.id
    assert store.device_ids(made.id) == small and store.device_ids(large.id) == other
    assert reservations(store) == 0
