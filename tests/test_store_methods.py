"""Store methods that took over SQL once written in the engine: transactions, callbacks kept for
later, the counts behind /metrics, the read-only look at FOTA_DB."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from storage.states import CampaignState as S
from storage.store import Store, read_only_summary
from tests.conftest import ManualClock
from tests.test_storage import make_campaign


def test_atomic_commits_everything_or_nothing(store: Store) -> None:
    campaign = make_campaign(store)
    with pytest.raises(RuntimeError), store.atomic():
        store.transition(campaign.id, S.WITHDRAWN, actor="U_REQ", reason="changed my mind")
        store.set_kv("note", "written")
        raise RuntimeError("crash before the commit")
    assert store.campaign(campaign.id).state is S.PENDING_APPROVAL
    assert store.get_kv("note") is None
    assert [row["to_state"] for row in store.audit(campaign.id)] == ["pending_approval"]

    with store.atomic():
        with store.atomic():  # nested: joins the outer transaction
            store.set_kv("inner", "1")
        store.set_kv("outer", "1")
    assert (store.get_kv("inner"), store.get_kv("outer")) == ("1", "1")


def test_unapplied_callbacks_are_read_in_order_past_the_last_one_seen(store: Store) -> None:
    ids = store.store_callbacks([(f'{{"n": {n}}}', None) for n in range(5)])
    store.mark_callbacks([ids[1]], parsed=True, applied=True)
    assert [i for i, _ in store.unapplied_callbacks()] == [ids[0], ids[2], ids[3], ids[4]]
    assert [i for i, _ in store.unapplied_callbacks(2, after_id=ids[0])] == [ids[2], ids[3]]
    assert store.unapplied_callbacks(after_id=ids[4]) == []


def test_callbacks_waiting_for_a_campaign_are_those_since_its_claim_naming_its_id(
    store: Store, clock: ManualClock
) -> None:
    campaign = make_campaign(store)
    # Before the claim: naming the id it will get is no proof it is about this campaign.
    stale = store.store_callbacks([('{"early": 1}', None)])
    store.mark_callbacks(stale, parsed=True, applied=False, thingspace_id="TS-1")
    clock.advance(minutes=1)
    store.record_approval(campaign.id, user="U_APP", shown_hash=campaign.content_hash, required=1)
    store.claim_for_submission(campaign.id, required=1)
    clock.advance(seconds=1)
    ours = store.store_callbacks([('{"ours": 1}', None), ('{"other": 1}', None), ('{"done": 1}', None)])
    store.mark_callbacks([ours[0]], parsed=True, applied=False, thingspace_id="TS-1")
    store.mark_callbacks([ours[1]], parsed=True, applied=False, thingspace_id="TS-2")
    store.mark_callbacks([ours[2]], parsed=True, applied=True, thingspace_id="TS-1")
    named = store.transition(campaign.id, S.SUBMITTED, actor="thingspace", reason="scheduled", thingspace_id="TS-1")

    assert store.callbacks_waiting_for(named) == [(ours[0], '{"ours": 1}')]


def test_a_callback_received_is_stamped_on_the_campaigns_it_touched(store: Store, clock: ManualClock) -> None:
    first, second, untouched = make_campaign(store), make_campaign(store), make_campaign(store)
    store.mark_callback_received({first.id, second.id}, clock())
    assert store.campaign(first.id).last_callback_at == clock()
    assert store.campaign(second.id).last_callback_at == clock()
    assert store.campaign(untouched.id).last_callback_at is None


def test_row_counts_count_campaigns_callbacks_and_slack_updates(store: Store) -> None:
    from storage.outbox import Outbox

    campaign = make_campaign(store)
    make_campaign(store)
    store.transition(campaign.id, S.WITHDRAWN, actor="U_REQ", reason="no")
    ids = store.store_callbacks([("{}", None), ("{}", None), ("{}", None)])
    store.mark_callbacks(ids[:1], parsed=True, applied=True)
    outbox = Outbox(store)
    pending = outbox.enqueue("reply", {"text": "a"}, campaign_id=campaign.id)
    sent = outbox.enqueue("reply", {"text": "b"}, campaign_id=campaign.id)
    refused = outbox.enqueue("reply", {"text": "c"}, campaign_id=campaign.id)
    outbox.mark_sent(sent)
    outbox.mark_sent(refused, error="channel_not_found")
    assert pending

    counts = asyncio.run(store.row_counts())
    assert sorted(counts.campaigns) == [("pending_approval", 1), ("withdrawn", 1)]
    assert sorted(counts.callbacks) == [(0, 2), (1, 1)]
    assert counts.outbox == (1, 1, 1)


def test_campaigns_beyond_the_demo_channel_are_counted(store: Store) -> None:
    demo = make_campaign(store)
    store.update_fields(demo.id, approval_channel="C_DEMO")
    assert store.count_campaigns_beyond(channel="C_DEMO") == 0
    make_campaign(store)  # no channel yet: not the demo's
    assert store.count_campaigns_beyond(channel="C_DEMO") == 1


def test_the_read_only_summary_changes_nothing_and_says_what_is_there(db_path: Path, clock: ManualClock) -> None:
    store = Store.open(db_path, clock=clock)
    make_campaign(store)
    token = store.callback_token()
    store.close()
    before = db_path.read_bytes()

    summary = read_only_summary(db_path)
    assert (summary.callback_token, summary.campaigns, summary.newer_migrations) == (token, 1, [])
    assert db_path.read_bytes() == before

    missing = db_path.with_name("absent.db")
    with pytest.raises(sqlite3.Error):
        read_only_summary(missing)
    assert not missing.exists()


def test_a_read_only_summary_names_migrations_of_a_newer_version(db_path: Path, clock: ManualClock) -> None:
    store = Store.open(db_path, clock=clock)
    store.db["_sqlite_migrations"].insert(
        {"migration_set": "fota-bot", "name": "m999_from_the_future", "applied_at": "2027-01-01"}
    )
    store.close()
    assert read_only_summary(db_path).newer_migrations == ["m999_from_the_future"]

