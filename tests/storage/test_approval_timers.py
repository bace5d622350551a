"""Approval timers in the database: each waiting request's reminder and expiry, read by index."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

from sqlite_utils import Database

from storage.migrations import migrations
from storage.states import CampaignState as S
from storage.store import TIMER_BATCH, Store, iso
from tests.conftest import ManualClock
from tests.storage.test_store import make_campaign

TTL = dt.timedelta(hours=2)


def waiting(store: Store, clock: ManualClock, n: int = 1) -> list[int]:
    """`n` requests made now, expiring after TTL (so reminded of after TTL / 2)."""
    return [
        store.create_campaign(
            requester="U_REQ",
            account="0000000000-00001",
            firmware_name="FW",
            firmware_from="A",
            firmware_to="B",
            protocol="LWM2M",
            start_date=dt.date(2026, 11, 27),
            end_date=dt.date(2026, 11, 30),
            windows=(),
            name=None,
            devices=["354658090353977"],
            sandbox=True,
            expires_at=clock() + TTL,
        ).id
        for _ in range(n)
    ]


def test_a_new_request_is_reminded_of_halfway_to_its_expiry(store: Store, clock: ManualClock) -> None:
    campaign = make_campaign(store)  # expires 2026-11-27 09:00, made 2026-11-26 09:00
    halfway = dt.datetime(2026, 11, 26, 21, tzinfo=dt.UTC)
    assert store.next_approval_timer() == halfway
    assert store.reminders_due(halfway - dt.timedelta(microseconds=1)) == []
    assert [cid for _, cid in store.reminders_due(halfway)] == [campaign.id]
    assert store.expiries_due(halfway) == []
    assert store.next_approval_timer(after=halfway) == campaign.expires_at
    assert [cid for _, cid in store.expiries_due(campaign.expires_at)] == [campaign.id]


def test_a_reminder_is_taken_once_and_only_while_the_request_waits(store: Store, clock: ManualClock) -> None:
    first, second = waiting(store, clock, 2)
    assert store.take_reminder(first) is True
    assert store.take_reminder(first) is False
    assert [cid for _, cid in store.reminders_due(clock() + TTL)] == [second]
    store.transition(second, S.WITHDRAWN, actor="U_REQ", reason="withdrawn")
    assert store.take_reminder(second) is False
    assert store.reminders_due(clock() + TTL) == []
    # The first still expires; the second waits for nothing.
    assert [cid for _, cid in store.expiries_due(clock() + TTL)] == [first]
    assert store.next_approval_timer() == clock() + TTL


def test_due_timers_come_in_batches_in_time_order(store: Store, clock: ManualClock) -> None:
    ids = []
    for _ in range(TIMER_BATCH + 3):
        ids += waiting(store, clock)
        clock.advance(seconds=1)
    # Two requests with the same moment are both read, in id order.
    ids += waiting(store, clock, 2)
    until = clock() + TTL
    seen: list[int] = []
    after = None
    while batch := store.expiries_due(until, after=after):
        assert len(batch) <= TIMER_BATCH
        seen += [cid for _, cid in batch]
        after = batch[-1]
    assert seen == ids


def test_due_timers_are_read_among_waiting_requests_only(store: Store, clock: ManualClock) -> None:
    # Thousands of decided requests on record: their moments are past, none is read.
    with store.atomic():
        store.db.conn.executemany(
            """INSERT INTO campaigns(state, requester, account, firmware_name, firmware_from, firmware_to,
               protocol, start_date, end_date, windows, device_count, content_hash, sandbox,
               created_at, updated_at, expires_at, remind_at, notes)
               VALUES('expired', 'U', 'a', 'f', 'x', 'y', 'LWM2M', '2026-11-27', '2026-11-30', '[]', 1,
               'h', 1, ?, ?, ?, ?, '[]')""",
            [(iso(clock()), iso(clock()), iso(clock()), iso(clock())) for _ in range(5_000)],
        )
    [mine] = waiting(store, clock)
    clock.advance(days=1)
    assert [cid for _, cid in store.reminders_due(clock())] == [mine]
    assert [cid for _, cid in store.expiries_due(clock())] == [mine]
    for column, index in (("remind_at", "remind"), ("expires_at", "expiry")):
        plan = " | ".join(
            str(row[3])
            for row in store.db.execute(
                f"EXPLAIN QUERY PLAN SELECT {column}, id FROM campaigns INDEXED BY idx_campaigns_waiting_{index} "
                f"WHERE state = 'pending_approval' AND {column} <= ? AND ({column}, id) > (?, ?) "
                f"ORDER BY {column}, id LIMIT 50",
                [iso(clock()), "", 0],
            )
        )
        # As the store asks it (SQLite's planner alone would take the index of every state and
        # sort): a range of the waiting requests' index, already in order.
        assert "SEARCH" in plan and "SCAN" not in plan and "TEMP B-TREE" not in plan, plan


def test_requests_waiting_at_the_upgrade_get_their_reminder_time(db_path: Path, clock: ManualClock) -> None:
    legacy = Database(sqlite3.connect(db_path))
    migrations.apply(legacy, stop_before="m020_approval_timers")
    for state in ("pending_approval", "expired"):
        legacy.execute(
            """INSERT INTO campaigns(state, requester, account, firmware_name, firmware_from, firmware_to,
               protocol, start_date, end_date, windows, device_count, content_hash, sandbox,
               created_at, updated_at, expires_at, notes)
               VALUES(?, 'U', 'a', 'f', 'x', 'y', 'LWM2M', '2026-11-27', '2026-11-30', '[]', 1, 'h', 1,
               '2026-11-26T09:00:00.000000+00:00', '2026-11-26T09:00:00.000000+00:00',
               '2026-11-27T09:00:00.000001+00:00', '[]')""",
            [state],
        )
    legacy.conn.commit()
    legacy.close()
    store = Store.open(db_path, clock=clock)
    try:
        rows = store.db.execute("SELECT state, remind_at FROM campaigns ORDER BY id").fetchall()
        # Halfway, to the microsecond, as create_campaign writes it; none for a decided request.
        assert rows == [("pending_approval", "2026-11-26T21:00:00.000000+00:00"), ("expired", None)]
        assert store.next_approval_timer() == dt.datetime(2026, 11, 26, 21, tzinfo=dt.UTC)
    finally:
        store.close()
