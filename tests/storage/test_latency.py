"""Latency: the loop-stall monitor, history-independent outbox queries, pruning, checkpoints
off the event loop, and the reader thread."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from pathlib import Path

from bot.loopstall import LoopStallMonitor, StallWindows
from bot.metrics import SharedCounts
from bot.notify.reports import devices_csv, devices_csv_off_loop
from storage.migrations import migrations
from storage.outbox import Outbox
from storage.preflight import active_conflicts
from storage.readers import Readers
from storage.states import CampaignState as S
from storage.store import Store, iso, open_database
from tests.conftest import ManualClock
from tests.storage.test_store import make_campaign
from tests.support.stack import running_stack

# --- the loop-stall monitor ----------------------------------------------------------------------


def test_stall_windows_keep_the_longest_stall_of_each_second() -> None:
    windows = StallWindows(keep=100)
    windows.record(1000.1, 0.002)
    windows.record(1000.5, 0.030)
    windows.record(1000.9, 0.001)
    windows.record(1030.0, 0.060)
    windows.record(1059.0, 0.004)
    assert windows.longest(1059.5, 60) == 0.060
    assert windows.longest(1059.5, 5) == 0.004
    assert windows.longest(1100.0, 60) == 0.004  # the 60 ms stall is more than a minute old
    assert windows.longest(2000.0, 60) == 0.0
    assert windows.counts == {0.02: 2, 0.05: 1, 0.1: 0, 0.5: 0}
    assert windows.ticks == 5


def test_stall_windows_forget_seconds_beyond_what_they_keep() -> None:
    windows = StallWindows(keep=10)
    windows.record(0.0, 1.0)
    for second in range(1, 11):
        windows.record(float(second), 0.001)
    assert windows.longest(10.0, 3600) == 0.001


async def test_the_monitor_sees_the_loop_blocked() -> None:
    monitor = LoopStallMonitor()
    task = asyncio.get_running_loop().create_task(monitor.run())
    try:
        await asyncio.sleep(0.03)
        # On purpose: what a synchronous query over a big table does to every other task.
        time.sleep(0.08)  # noqa: ASYNC251
        await asyncio.sleep(0.03)
        # The ticker woke at least 80 ms - one tick (10 ms) late.
        assert monitor.longest(60) >= 0.07
        assert monitor.windows.counts[0.05] >= 1
    finally:
        task.cancel()


# --- outbox queries do not read history ----------------------------------------------------------


def _plans(db: sqlite3.Connection, sql: str, params: list[object]) -> str:
    return " | ".join(str(row[3]) for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))


def _with_history(store: Store, sent: int, unsent: int) -> None:
    now = store.now()
    with store.db.atomic():
        store.db.conn.executemany(
            """INSERT INTO outbox(campaign_id, kind, coalesce_key, payload, created_at, attempts, sent_at)
               VALUES(?, ?, ?, '{}', ?, 1, ?)""",
            [(i // 4, ("root", "confirm", "root_update", "reply")[i % 4], f"root:{i // 4}", now, now) for i in range(sent)],
        )
        store.db.conn.executemany(
            "INSERT INTO outbox(campaign_id, kind, payload, created_at, attempts) VALUES(?, 'reply', '{}', ?, 0)",
            [(1_000_000 + i // 2, now) for i in range(unsent)],
        )


def test_the_outbox_finds_lane_heads_among_unsent_rows_only(store: Store, clock: ManualClock) -> None:
    outbox = Outbox(store)
    _with_history(store, sent=20_000, unsent=40)
    due = outbox.due(clock() + dt.timedelta(seconds=1))
    # Two rows per campaign in one lane: only the first of each is a head.
    assert [item.campaign_id for item in due] == [1_000_000 + i for i in range(20)]
    assert outbox.next_due_at() == clock()
    plan = _plans(
        store.db.conn,
        "SELECT 1 FROM outbox WHERE campaign_id = ? AND kind = 'root' AND sent_at IS NOT NULL "
        "AND last_error IS NOT NULL LIMIT 1",
        [5],
    )
    assert "idx_outbox_campaign_kind" in plan and "SCAN" not in plan


def test_root_refused_newer_pending_and_last_sent_are_index_probes(store: Store) -> None:
    queries = {
        "root_refused": (
            "SELECT 1 FROM outbox WHERE campaign_id = ? AND kind = 'root' AND sent_at IS NOT NULL "
            "AND last_error IS NOT NULL LIMIT 1",
            [5],
        ),
        "newer_pending": (
            "SELECT 1 FROM outbox WHERE campaign_id = ? AND kind = ? AND sent_at IS NULL AND id > ? LIMIT 1",
            [5, "root_update", 3],
        ),
        "last_sent_at": (
            "SELECT max(coalesce(sent_at, ?)) FROM outbox WHERE coalesce_key IN (?, ? || '#sending') "
            "AND (sent_at IS NOT NULL OR coalesce_key = ? || '#sending')",
            ["x", "root:5", "root:5", "root:5"],
        ),
    }
    for name, (sql, params) in queries.items():
        plan = _plans(store.db.conn, sql, params)
        assert "SCAN" not in plan, f"{name} scans the outbox: {plan}"


def test_due_costs_the_same_with_thirty_thousand_sent_rows(tmp_path: Path, clock: ManualClock) -> None:
    small = Store.open(tmp_path / "small.db", clock=clock)
    large = Store.open(tmp_path / "large.db", clock=clock)
    try:
        _with_history(small, sent=0, unsent=200)
        _with_history(large, sent=30_000, unsent=200)
        later = clock() + dt.timedelta(seconds=1)

        def cost(store: Store) -> int:
            # SQLite's own count of rows visited (virtual machine steps), not wall time: the
            # same on any machine, under any load.
            conn = store.db.conn
            steps = 0

            def count() -> int:
                nonlocal steps
                steps += 1
                return 0

            conn.set_progress_handler(count, 100)
            try:
                Outbox(store).due(later)
                Outbox(store).next_due_at()
            finally:
                conn.set_progress_handler(None, 100)
            return steps

        assert cost(large) <= cost(small) + 2
    finally:
        small.close()
        large.close()


def test_the_next_unapplied_callbacks_cost_the_same_behind_a_backlog(tmp_path: Path, clock: ManualClock) -> None:
    small = Store.open(tmp_path / "small.db", clock=clock)
    large = Store.open(tmp_path / "large.db", clock=clock)
    try:
        for store, waiting in ((small, 300), (large, 20_000)):
            ids = store.store_callbacks([(f'{{"n": {n}}}', None) for n in range(waiting + 2_000)])
            store.mark_callbacks(ids[:2_000], parsed=True, applied=True)  # history, applied

        def cost(store: Store, after: int) -> tuple[int, list[int]]:
            conn = store.db.conn
            steps = 0

            def count() -> int:
                nonlocal steps
                steps += 1
                return 0

            conn.set_progress_handler(count, 100)
            try:
                rows = store.unapplied_callbacks(250, after_id=after)
            finally:
                conn.set_progress_handler(None, 100)
            return steps, [i for i, _ in rows]

        for after in (0, 2_020):
            (small_cost, small_ids), (large_cost, large_ids) = cost(small, after), cost(large, after)
            assert small_ids == large_ids == list(range(max(after, 2_000) + 1, max(after, 2_000) + 251))
            assert large_cost <= small_cost + 2
    finally:
        small.close()
        large.close()


# --- pacing: a backlog is postponed once, not at every slot -------------------------------------


async def test_a_backlog_of_posts_to_one_channel_is_postponed_once_each(tmp_path: Path) -> None:
    async with running_stack(tmp_path, post_spacing=1.0) as stack:
        store, sender = stack.rt.store, stack.rt.sender
        for _ in range(30):
            campaign = make_campaign(store)
            sender.outbox.enqueue("dm", {"user": "U0ANN", "message": {"text": "hi"}}, campaign_id=campaign.id)
        assert await sender.drain() == 30
        dms = [c for c in stack.standin.calls_to("chat.postMessage") if c.args.get("channel") == "U0ANN"]
        assert len(dms) == 1
        waiting = store.db.execute(
            "SELECT not_before FROM outbox WHERE kind = 'dm' AND sent_at IS NULL ORDER BY id"
        ).fetchall()
        slots = [dt.datetime.fromisoformat(r[0]) for r in waiting]
        assert slots == [stack.clock() + dt.timedelta(seconds=s) for s in range(1, 30)]
        # Nothing is due until the next slot: another drain touches nothing.
        assert await sender.drain() == 0
        for second in range(1, 30):
            stack.clock.advance(seconds=1)
            assert await sender.drain() == 1, second
        assert sender.outbox.pending_count() == 0
        texts = [c for c in stack.standin.calls_to("chat.postMessage") if c.args.get("channel") == "U0ANN"]
        assert len(texts) == 30


# --- pruning delivered updates ------------------------------------------------------------------


def test_pruning_keeps_unsent_recent_and_refused_card_rows(store: Store, clock: ManualClock) -> None:
    outbox = Outbox(store)
    campaign = make_campaign(store)
    old_sent = outbox.enqueue("reply", {"message": {"text": "old"}}, campaign_id=campaign.id)
    refused = outbox.enqueue("root", {"channel": "C1"}, campaign_id=campaign.id)
    outbox.mark_sent(old_sent)
    outbox.mark_sent(refused, error="channel_not_found")
    clock.advance(days=8)
    recent = outbox.enqueue("reply", {"message": {"text": "new"}}, campaign_id=campaign.id)
    outbox.mark_sent(recent)
    unsent = outbox.enqueue("reply", {"message": {"text": "waiting"}}, campaign_id=campaign.id)
    assert outbox.prune_sent(clock() - dt.timedelta(days=7)) == 1
    left = {row[0] for row in store.db.execute("SELECT id FROM outbox")}
    assert left == {refused, recent, unsent}
    assert outbox.root_refused(campaign.id)
    assert outbox.prune_sent(clock() - dt.timedelta(days=7)) == 0


def test_pruning_goes_in_small_batches(store: Store, clock: ManualClock) -> None:
    _with_history(store, sent=1_200, unsent=0)
    clock.advance(days=8)
    outbox = Outbox(store)
    batches = []
    while batch := outbox.prune_sent(clock() - dt.timedelta(days=7), limit=500):
        batches.append(batch)
    assert batches == [500, 500, 200]


async def test_the_runtime_prunes_what_was_delivered_a_week_ago(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        _with_history(stack.rt.store, sent=700, unsent=3)
        stack.clock.advance(days=7, seconds=1)
        assert await stack.rt.prune_outbox() == 700
        assert stack.rt.sender.outbox.pending_count() == 3


# --- the schema change migrates existing databases ----------------------------------------------


def test_a_database_from_before_the_indexes_gets_them_and_keeps_its_rows(db_path: Path, clock: ManualClock) -> None:
    conn = sqlite3.connect(db_path)
    from sqlite_utils import Database

    old = Database(conn)
    migrations.apply(old, stop_before="m005_bounded_queries")
    old.execute(
        "INSERT INTO outbox(campaign_id, kind, payload, created_at, attempts) VALUES(1, 'root', '{}', ?, 0)",
        [iso(clock())],
    )
    conn.commit()
    assert "idx_outbox_unsent_order" not in {i.name for i in old["outbox"].indexes}
    old.close()
    store = Store.open(db_path, clock=clock)
    try:
        names = {i.name for i in store.db["outbox"].indexes}
        assert {"idx_outbox_unsent_order", "idx_outbox_unsent_lane", "idx_outbox_campaign_kind"} <= names
        assert [item.kind for item in Outbox(store).due(clock())] == ["root"]
        assert migrations.pending(store.db) == []
    finally:
        store.close()


# --- the reader thread and checkpoints ----------------------------------------------------------


async def test_the_reader_thread_sees_what_the_loop_committed(store: Store) -> None:
    campaign = make_campaign(store)

    def read(conn: sqlite3.Connection) -> tuple[int, str]:
        import threading

        row = conn.execute("SELECT count(*) FROM devices WHERE campaign_id = ?", [campaign.id]).fetchone()
        return int(row[0]), threading.current_thread().name

    count, thread = await store.readers.run(read)
    assert count == 3 and thread.startswith("sqlite-reader")


async def test_an_in_memory_database_reads_inline() -> None:
    db = open_database(":memory:")
    readers = Readers(db.conn)
    assert not readers.off_loop
    assert await readers.run(lambda conn: conn.execute("SELECT 1").fetchone()[0]) == 1
    readers.close()
    db.close()


async def test_checkpoints_run_on_the_reader_thread_not_on_a_commit(store: Store) -> None:
    store.checkpoint_off_loop()
    assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    for _ in range(30):  # well past SQLite's automatic 1,000-page mark would have been
        make_campaign(store, devices=[f"35465809{n:07d}" for n in range(200)])
    busy, frames, copied = await store.readers.checkpoint()
    assert busy == 0 and frames > 0 and copied == frames


async def test_serve_hands_checkpoints_to_the_reader_thread(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        # Tests run without the workers; `serve` starts them, and with them the job.
        assert stack.rt.store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        await stack.rt.checkpoint()
    async with running_stack(tmp_path) as stack:
        await stack.rt.start(workers=True)
        assert stack.rt.store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        assert {"wal-checkpoint", "prune-outbox"} <= set(stack.rt.jobs.ids())


# --- request paths read what they show, not the history ----------------------------------------


def test_list_active_reads_live_campaigns_by_the_state_index(store: Store) -> None:
    finished = [make_campaign(store) for _ in range(30)]
    for campaign in finished:
        store.transition(campaign.id, S.WITHDRAWN, actor="U_REQ", reason="test")
    live = make_campaign(store)
    assert [c.id for c in store.list_campaigns(scope="active")] == [live.id]
    assert len(store.list_campaigns(scope="all", limit=50)) == 31
    live_states = [s.value for s in S if not s.is_terminal]
    plan = _plans(
        store.db.conn,
        f"SELECT * FROM campaigns WHERE state IN ({','.join('?' * len(live_states))}) ORDER BY id DESC LIMIT 11",
        live_states,
    )
    assert "idx_campaigns_state" in plan and "SCAN" not in plan


def test_a_device_page_is_filtered_and_limited_by_sqlite(store: Store) -> None:
    imeis = [f"35465809{n:07d}" for n in range(50)]
    campaign = make_campaign(store, devices=imeis)
    store.apply_device_updates(
        campaign.id, [(imei, "UpgradeFailed" if n % 5 == 0 else "UpgradeSuccess", "r", None) for n, imei in enumerate(imeis)]
    )
    assert [d.imei for d in store.devices(campaign.id, limit=3)] == imeis[:3]
    assert [d.imei for d in store.devices(campaign.id, failed_only=True, limit=4)] == imeis[0:20:5]
    assert len(store.devices(campaign.id, failed_only=True)) == 10
    assert len(store.devices(campaign.id)) == 50


def test_a_large_requests_devices_are_read_in_request_order_without_sorting_them(store: Store) -> None:
    """The card's first devices, pre-flight's pages and the whole list come off an index kept in
    request order: SQLite sorted all of a 100,000-device request's rows for each of them."""
    earlier = make_campaign(store, devices=[f"49015420{n:07d}" for n in range(300)])
    imeis = [f"35465809{n:07d}" for n in range(3_000)]
    campaign = make_campaign(store, devices=sorted(imeis, reverse=True))  # the request's own order
    later = make_campaign(store, devices=[f"35282107{n:07d}" for n in range(300)])
    queries = {
        "the card's sample": (
            "SELECT imei, status, reason, updated_at FROM devices WHERE campaign_id = ? AND dropped_at IS NULL "
            "ORDER BY rowid LIMIT ?",
            [campaign.id, 20],
        ),
        "a pre-flight page": (
            "SELECT rowid, imei FROM devices WHERE campaign_id = ? AND rowid > ? AND dropped_at IS NULL "
            "ORDER BY rowid LIMIT ?",
            [campaign.id, 0, 1000],
        ),
        "the whole list": (
            "SELECT imei FROM devices WHERE campaign_id = ? AND dropped_at IS NULL ORDER BY rowid",
            [campaign.id],
        ),
    }
    for name, (sql, params) in queries.items():
        plan = _plans(store.db.conn, sql, params)
        assert "idx_devices_campaign_id " in plan + " " and "TEMP B-TREE" not in plan, f"{name}: {plan}"
    assert [d.imei for d in store.devices(campaign.id, limit=3)] == sorted(imeis, reverse=True)[:3]
    assert store.device_ids(campaign.id) == sorted(imeis, reverse=True)
    assert len(store.device_ids(earlier.id)) == len(store.device_ids(later.id)) == 300


def test_a_database_from_before_the_request_order_index_gets_it_and_keeps_its_rows(
    db_path: Path, clock: ManualClock
) -> None:
    from sqlite_utils import Database

    conn = sqlite3.connect(db_path)
    old = Database(conn)
    migrations.apply(old, stop_before="m021_devices_in_request_order")
    conn.close()
    store = Store.open(db_path, clock=clock)
    try:
        campaign = make_campaign(store, devices=["354658090000023", "354658090000015"])
        assert "idx_devices_campaign_id" in {i.name for i in store.db["devices"].indexes}
        assert store.device_ids(campaign.id) == ["354658090000023", "354658090000015"]
        assert migrations.pending(store.db) == []
    finally:
        store.close()


async def test_the_devices_csv_is_written_on_the_reader_thread_with_the_same_content(store: Store) -> None:
    imeis = [f"35465809{n:07d}" for n in range(20)]
    campaign = make_campaign(store, devices=imeis)
    store.apply_device_updates(campaign.id, [(imeis[3], "UpgradeFailed", "no space", None)])
    assert await devices_csv_off_loop(store, campaign) == devices_csv(store, campaign)
    failed = await devices_csv_off_loop(store, campaign, failed_only=True, reasons={"no space"})
    assert failed == f"imei,status,reason,updated_at\n{imeis[3]},UpgradeFailed,no space,{store.now()}\n"


def test_both_conflict_walks_find_the_same_campaigns(store: Store) -> None:
    fleet = [f"35465809{n:07d}" for n in range(12)]
    active = make_campaign(store, devices=fleet[0:4])
    other = make_campaign(store, devices=fleet[3:6])
    for old in (make_campaign(store, devices=fleet[0:6]) for _ in range(5)):
        store.transition(old.id, S.WITHDRAWN, actor="U_REQ", reason="history")
    mine = make_campaign(store, devices=[fleet[1], fleet[3], fleet[5], fleet[11]])
    # The device count decides the walk: tiny (probe each of this request's devices in the
    # IMEI index) or huge (walk the active campaigns' devices instead).
    by_device = active_conflicts(store.db.conn, mine.id, 1)
    by_active = active_conflicts(store.db.conn, mine.id, 10**9)
    assert by_device == by_active
    assert [(c.campaign_id, c.shared) for c in by_active] == [
        (active.id, frozenset({fleet[1], fleet[3]})),
        (other.id, frozenset({fleet[3], fleet[5]})),
    ]
    assert by_active[0].windows == active.windows and by_active[0].start_date == active.start_date


async def test_metrics_read_the_database_at_most_once_per_ttl(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        now = [1000.0]
        shared = SharedCounts(ttl=15.0, clock=lambda: now[0])
        make_campaign(stack.rt.store)
        first = await shared.read(stack.rt)
        assert first.campaigns == [("pending_approval", 1)]
        make_campaign(stack.rt.store)
        now[0] += 14.9
        assert await shared.read(stack.rt) is first  # a scrape every few seconds costs no scan
        now[0] += 0.1
        assert (await shared.read(stack.rt)).campaigns == [("pending_approval", 2)]
