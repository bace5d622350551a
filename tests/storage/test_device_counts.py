"""A campaign's devices per status are kept by triggers, and always equal a full count.

Hypothesis drives random reports, drops and deletions; after each, the kept counts are
compared with a count of every device row (the query the kept counts replace).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlite_utils import Database

from storage.migrations import migrations
from storage.states import DEVICE_BUCKETS, device_bucket
from storage.store import Store
from tests.conftest import ManualClock
from tests.storage.test_store import make_campaign
from tests.storage.test_store_methods import _campaign_row

IMEIS = [f"35465809{n:07d}" for n in range(6)]
STATUSES = ["Device Pending", "Download In Progress", "Upgrade Success", "Download Failed", "", "Odd", "UpgradeSuccess"]


def full_count(store: Store, campaign_id: int) -> dict[str, int]:
    counts = dict.fromkeys(DEVICE_BUCKETS, 0)
    for status, count in store.db.execute(
        "SELECT status, count(*) FROM devices WHERE campaign_id = ? AND dropped_at IS NULL GROUP BY status", [campaign_id]
    ).fetchall():
        counts[device_bucket(status)] += count
    return counts


def kept_rows(store: Store) -> dict[tuple[int, int, str], int]:
    return {(c, k, s): n for c, k, s, n in store.db.execute("SELECT * FROM device_status_counts").fetchall() if n}


def recount(store: Store) -> dict[tuple[int, int, str], int]:
    rows = store.db.execute(
        """SELECT campaign_id, status IS NOT NULL, coalesce(status, ''), count(*) FROM devices
           WHERE dropped_at IS NULL GROUP BY 1, 2, 3"""
    ).fetchall()
    return {(c, k, s): n for c, k, s, n in rows}


@pytest.fixture
def two(store: Store) -> Iterator[tuple[Store, list[int]]]:
    ids = [make_campaign(store, devices=IMEIS).id, make_campaign(store, devices=IMEIS[:4]).id]
    yield store, ids


operation = st.one_of(
    st.tuples(
        st.just("report"),
        st.integers(0, 1),
        st.lists(st.tuples(st.sampled_from(IMEIS), st.sampled_from(STATUSES)), max_size=6),
        st.booleans(),
    ),
    st.tuples(st.just("drop"), st.integers(0, 1), st.sampled_from(IMEIS), st.booleans()),
    st.tuples(st.just("delete"), st.integers(0, 1), st.sampled_from(IMEIS), st.booleans()),
    st.tuples(st.just("null"), st.integers(0, 1), st.sampled_from(IMEIS), st.booleans()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(operation, max_size=25))
def test_kept_counts_equal_a_full_count_after_any_changes(two: tuple[Store, list[int]], ops: list[tuple]) -> None:
    store, ids = two
    savepoint = "counts_example"
    store.db.execute(f"SAVEPOINT {savepoint}")
    try:
        for kind, which, arg, flag in ops:
            campaign_id = ids[which]
            if kind == "report":
                store.apply_device_updates(campaign_id, [(i, s, None, None) for i, s in arg], from_report=flag)
            elif kind == "drop":
                # Pre-flight drops a device (and an override can bring it back).
                store.db.execute(
                    "UPDATE devices SET dropped_at = ? WHERE campaign_id = ? AND imei = ?",
                    ["2026-11-26T09:00:00+00:00" if flag else None, campaign_id, arg],
                )
            elif kind == "delete":
                store.db.execute("DELETE FROM devices WHERE campaign_id = ? AND imei = ?", [campaign_id, arg])
            else:
                store.db.execute("UPDATE devices SET status = NULL WHERE campaign_id = ? AND imei = ?", [campaign_id, arg])
            for each in ids:
                assert store.device_counts(each) == full_count(store, each)
            assert kept_rows(store) == recount(store)
    finally:
        store.db.execute(f"ROLLBACK TO {savepoint}")
        store.db.execute(f"RELEASE {savepoint}")


def test_a_request_s_devices_are_counted_from_the_start(store: Store) -> None:
    campaign = make_campaign(store, devices=IMEIS)
    store.apply_device_updates(campaign.id, [(IMEIS[0], "Upgrade Success", None, None)], from_report=True)
    assert store.device_counts(campaign.id) == full_count(store, campaign.id)
    assert sum(store.device_counts(campaign.id).values()) == len(IMEIS)


def test_the_counts_are_read_in_a_few_rows_however_many_devices(store: Store) -> None:
    many = [f"49015420{n:07d}" for n in range(3000)]
    campaign = make_campaign(store, devices=many)
    steps: list[int] = []

    def progress() -> int:
        steps.append(1)
        return 0

    store.db.conn.set_progress_handler(progress, 100)  # a call every 100 SQLite VM steps
    try:
        counts = store.device_counts(campaign.id)
    finally:
        store.db.conn.set_progress_handler(None, 100)
    assert sum(counts.values()) == len(many)
    assert len(steps) <= 2  # a full count of 3,000 devices takes hundreds


def test_existing_devices_are_counted_by_the_migration(db_path: Path, clock: ManualClock) -> None:
    legacy = Database(sqlite3.connect(db_path))
    migrations.apply(legacy, stop_before="m016_device_status_counts")
    _campaign_row(legacy, "submitted")
    _campaign_row(legacy, "approved")
    legacy.conn.executemany(
        "INSERT INTO devices(campaign_id, imei, status, dropped_at) VALUES(?, ?, ?, ?)",
        [
            (1, IMEIS[0], "Upgrade Success", None),
            (1, IMEIS[1], "Upgrade Success", None),
            (1, IMEIS[2], None, None),
            (1, IMEIS[3], "Download Failed", "2026-11-26T09:00:00+00:00"),  # dropped: not counted
            (2, IMEIS[0], None, None),
        ],
    )
    legacy.conn.commit()
    legacy.close()
    store = Store.open(db_path, clock=clock)
    try:
        assert kept_rows(store) == recount(store) == {(1, 1, "Upgrade Success"): 2, (1, 0, ""): 1, (2, 0, ""): 1}
        assert store.device_counts(1) == full_count(store, 1)
    finally:
        store.close()
