"""Storage: migrations, the state machine's one writer, the submission guard, the outbox."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest

from storage.migrations import migrations
from storage.model import ApprovalOutcome, CampaignNotFound, NotApproved, TimeWindow
from storage.outbox import Outbox
from storage.states import ALLOWED, CampaignState, IllegalTransition
from storage.store import DEVICE_CHUNK, Store, open_database

S = CampaignState
IMEIS = ["354658090353977", "490154203237518", "356938035643809"]


def make_campaign(store: Store, requester: str = "U_REQ", devices: list[str] | None = None):
    return store.create_campaign(
        requester=requester,
        account="0000000000-00001",
        firmware_name="SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657",
        firmware_from="SR1.2.0.0-10512",
        firmware_to="SR1.2.0.0-10657",
        protocol="LWM2M",
        start_date=dt.date(2026, 11, 27),
        end_date=dt.date(2026, 11, 30),
        windows=(TimeWindow(18, 22),),
        name="Smart FOTA",
        devices=devices or IMEIS,
        sandbox=True,
        expires_at=dt.datetime(2026, 11, 27, 9, tzinfo=dt.UTC),
    )


def test_migrations_create_every_table_on_an_empty_file(db_path: Path) -> None:
    db = open_database(db_path)
    assert {"campaigns", "devices", "decisions", "audit", "callbacks", "outbox", "kv"} <= set(
        db.table_names()
    )
    registered = [m.name for m in migrations.pending(open_database(":memory:"))] or None
    assert registered is None  # a fresh in-memory database is fully migrated too
    assert [m.name for m in migrations.applied(db)][0] == "m001_initial"
    assert migrations.pending(db) == []
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert stat.S_IMODE(os.stat(db_path).st_mode) == 0o600
    db.close()


def test_migrations_again_on_an_existing_file_change_nothing(db_path: Path, clock) -> None:
    store = Store.open(db_path, clock=clock)
    campaign = make_campaign(store)
    store.close()
    applied_before = [m.name for m in migrations.applied(open_database(db_path))]
    db = open_database(db_path)
    assert [m.name for m in migrations.applied(db)] == applied_before
    assert migrations.pending(db) == []
    assert db["campaigns"].count == 1
    assert Store(db).campaign(campaign.id).firmware_to == "SR1.2.0.0-10657"
    db.close()


def test_create_keeps_devices_hash_and_an_audit_row(store: Store) -> None:
    campaign = make_campaign(store)
    assert campaign.ref == "FB-1"
    assert campaign.state is S.PENDING_APPROVAL
    assert store.device_ids(campaign.id) == IMEIS
    assert len(campaign.content_hash) == 64
    assert campaign.thingspace_name == f"Smart FOTA [FB-1·{store.installation_id()}]"
    [row] = store.audit(campaign.id)
    assert (row["from_state"], row["to_state"], row["actor"]) == (None, "pending_approval", "U_REQ")


async def test_a_new_campaign_is_returned_as_stored(store: Store) -> None:
    first = make_campaign(store)
    second = make_campaign(store)
    # What create_campaign returns is the row on record, hash included.
    assert first == store.campaign(first.id) and second == store.campaign(second.id)
    assert first.installation == second.installation == store.get_kv("installation_id")
    # A request stored a chunk at a time, without a name, with notes, a response_url, the
    # licence option: the same.
    chunked = await store.store_request(
        requester="U_REQ", account="0000000000-00001", firmware_name="FW", firmware_from="A",
        firmware_to="B", protocol="HTTP", start_date=dt.date(2026, 11, 27), end_date=dt.date(2026, 11, 28),
        windows=(), name=None, devices=[f"35465809{n:07d}" for n in range(DEVICE_CHUNK + 1)], sandbox=False,
        expires_at=dt.datetime(2026, 11, 27, 9, 30, tzinfo=dt.UTC), notes=["note"],
        response_url="https://hooks.slack.com/commands/T1/2/x", licence_auto=True,
    )
    assert chunked == store.campaign(chunked.id) and chunked.device_count == DEVICE_CHUNK + 1


def test_the_installation_id_of_a_request_rolled_back_is_not_kept(store: Store) -> None:
    with pytest.raises(RuntimeError), store.atomic():
        make_campaign(store)
        raise RuntimeError("the request's transaction fails")
    assert store.get_kv("installation_id") is None
    campaign = make_campaign(store)
    assert len(campaign.installation) == 4 and campaign.installation == store.get_kv("installation_id")
    assert make_campaign(store).installation == campaign.installation


def test_the_hash_changes_with_anything_that_would_be_sent(store: Store) -> None:
    a = make_campaign(store)
    b = make_campaign(store, devices=IMEIS[:2])
    assert a.content_hash != b.content_hash


def test_every_transition_is_checked_and_audited(store: Store) -> None:
    campaign = make_campaign(store)
    with pytest.raises(IllegalTransition):
        store.transition(campaign.id, S.SUBMITTED, actor="x", reason="skip ahead")
    assert store.campaign(campaign.id).state is S.PENDING_APPROVAL
    store.transition(campaign.id, S.WITHDRAWN, actor="U_REQ", reason="changed my mind")
    with pytest.raises(IllegalTransition):
        store.transition(campaign.id, S.PENDING_APPROVAL, actor="x", reason="back")
    assert [r["to_state"] for r in store.audit(campaign.id)] == ["pending_approval", "withdrawn"]


def test_terminal_states_allow_nothing() -> None:
    for state in S:
        if state.is_terminal:
            assert ALLOWED[state] == frozenset()
        else:
            assert ALLOWED[state], state


def test_thingspace_statuses_only_move_forward(store: Store) -> None:
    campaign = make_campaign(store)
    for to in (S.APPROVED, S.SUBMITTING, S.SUBMITTED, S.REQUEST_QUEUED, S.SCHEDULED):
        store.transition(campaign.id, to, actor="t", reason="t")
    with pytest.raises(IllegalTransition):
        store.transition(campaign.id, S.REQUEST_QUEUED, actor="late callback", reason="reordered")
    store.transition(campaign.id, S.ENDED, actor="t", reason="t")
    with pytest.raises(IllegalTransition):
        store.transition(campaign.id, S.CANCELLED, actor="t", reason="t")


def test_approvals_are_distinct_bound_to_the_hash_and_complete_once(store: Store) -> None:
    campaign = make_campaign(store)
    first = store.record_approval(campaign.id, user="U_A", shown_hash=campaign.content_hash, required=2)
    assert first.outcome is ApprovalOutcome.RECORDED and first.approvals == 1
    again = store.record_approval(campaign.id, user="U_A", shown_hash=campaign.content_hash, required=2)
    assert again.outcome is ApprovalOutcome.DUPLICATE and again.approvals == 1
    stale = store.record_approval(campaign.id, user="U_B", shown_hash="0" * 64, required=2)
    assert stale.outcome is ApprovalOutcome.STALE
    done = store.record_approval(campaign.id, user="U_B", shown_hash=campaign.content_hash, required=2)
    assert done.outcome is ApprovalOutcome.APPROVED and done.campaign.state is S.APPROVED
    late = store.record_approval(campaign.id, user="U_C", shown_hash=campaign.content_hash, required=2)
    assert late.outcome is ApprovalOutcome.CLOSED
    assert [r["to_state"] for r in store.audit(campaign.id)].count("approved") == 1


def test_the_requester_cannot_approve(store: Store) -> None:
    campaign = make_campaign(store)
    with pytest.raises(NotApproved):
        store.record_approval(campaign.id, user="U_REQ", shown_hash=campaign.content_hash, required=1)
    assert store.decisions(campaign.id) == []


def test_the_guard_refuses_without_recorded_approvals(store: Store) -> None:
    campaign = make_campaign(store)
    with pytest.raises(NotApproved):
        store.claim_for_submission(campaign.id, required=1)
    # Even a state forced to approved behind the guard's back does not pass it.
    store.transition(campaign.id, S.APPROVED, actor="intruder", reason="no votes")
    with pytest.raises(NotApproved, match="0 recorded approvals of 1"):
        store.claim_for_submission(campaign.id, required=1)
    assert store.campaign(campaign.id).state is S.APPROVED


def test_the_guard_passes_once_approved_and_again_when_resumed(store: Store) -> None:
    campaign = make_campaign(store)
    store.record_approval(campaign.id, user="U_A", shown_hash=campaign.content_hash, required=1)
    claimed = store.claim_for_submission(campaign.id, required=1)
    assert claimed.state is S.SUBMITTING
    assert store.claim_for_submission(campaign.id, required=1).state is S.SUBMITTING
    # More approvers required after a restart with new settings: a request already under way
    # (maybe at ThingSpace) goes on under the rule it was approved by...
    assert store.claim_for_submission(campaign.id, required=2).state is S.SUBMITTING
    # ...but content changed since the approvals never passes.
    store.db.execute("UPDATE campaigns SET content_hash = 'changed' WHERE id = ?", [campaign.id])
    store.db.conn.commit()
    with pytest.raises(NotApproved):
        store.claim_for_submission(campaign.id, required=1)


def test_rejection_records_the_reason(store: Store) -> None:
    campaign = make_campaign(store)
    result = store.record_rejection(campaign.id, user="U_A", shown_hash=campaign.content_hash, reason="wrong fw")
    assert result.campaign.state is S.REJECTED
    [decision] = store.decisions(campaign.id)
    assert (decision.decision, decision.reason) == ("reject", "wrong fw")


def test_find_by_ref_number_or_thingspace_id(store: Store) -> None:
    campaign = make_campaign(store)
    store.update_fields(campaign.id, thingspace_id="f858b8c4-2153-11ec-8c44-aeb16d1aa652")
    assert store.find_campaign("FB-1").id == campaign.id
    assert store.find_campaign("fb-1").id == campaign.id
    assert store.find_campaign("f858b8c4-2153-11ec-8c44-aeb16d1aa652").id == campaign.id
    with pytest.raises(CampaignNotFound, match="FB-99"):
        store.find_campaign("FB-99")


def test_device_updates_are_idempotent_and_never_regress(store: Store) -> None:
    campaign = make_campaign(store)
    a, b, _ = IMEIS
    assert store.apply_device_updates(campaign.id, [(a, "UpgradeScheduled", None, "2026-11-26T10:00:00")])
    assert store.apply_device_updates(campaign.id, [(a, "UpgradeScheduled", None, "2026-11-26T10:00:00")]) == []
    store.apply_device_updates(campaign.id, [(a, "UpgradeSuccess", None, "2026-11-26T11:00:00")])
    # A late, older report cannot move a finished device back.
    assert store.apply_device_updates(campaign.id, [(a, "UpgradeScheduled", None, "2026-11-26T10:30:00")]) == []
    store.apply_device_updates(campaign.id, [(b, "UpgradeFailed", "Device did not respond", None)])
    store.apply_device_updates(campaign.id, [("999999999999999", "UpgradeSuccess", None, None)])
    counts = store.device_counts(campaign.id)
    assert counts == {"pending": 1, "in progress": 0, "succeeded": 1, "failed": 1, "other": 0}
    failures, more = store.unreported_failures(campaign.id, limit=10)
    assert failures == [(b, "Device did not respond")] and more == 0
    store.mark_failures_reported(campaign.id)
    assert store.unreported_failures(campaign.id, limit=10) == ([], 0)


def test_a_batch_of_device_updates_ends_as_the_same_updates_one_at_a_time(
    db_path: Path, tmp_path: Path, clock
) -> None:
    """A device named several times in one batch meets each earlier update's outcome: an older
    report after a newer one, a move back from a final status, a repeat, a confirmed end."""
    a, b, c = IMEIS
    updates = [
        (a, "UpgradeScheduled", None, "2026-11-26T10:00:00"),
        (a, "UpgradeInProgress", None, "2026-11-26T10:05:00"),
        (a, "UpgradeScheduled", None, "2026-11-26T10:01:00"),  # older: loses
        (b, "UpgradeFailed", "Device did not respond", "2026-11-26T10:02:00"),
        (b, "UpgradeInProgress", None, "2026-11-26T10:09:00"),  # out of a final status: never
        (b, "UpgradeFailed", "Device did not respond", "2026-11-26T10:02:00"),  # a repeat
        (c, "UpgradeSuccess", None, None),
        (c, "UpgradeSuccess", "confirmed", None),  # a new reason for the same status
        ("999999999999999", "UpgradeSuccess", None, None),  # not in the campaign
    ]
    one_by_one = Store.open(tmp_path / "one-by-one.db", clock=clock)
    batched = Store.open(db_path, clock=clock)
    try:
        results = []
        for target, calls in ((one_by_one, [[u] for u in updates]), (batched, [updates])):
            campaign = make_campaign(target)
            changes = [change for call in calls for change in target.apply_device_updates(campaign.id, call)]
            rows = target.db.execute(
                "SELECT imei, status, reason, updated_at, confirmed FROM devices WHERE campaign_id = ? ORDER BY imei",
                [campaign.id],
            ).fetchall()
            results.append((changes, rows, target.device_counts(campaign.id)))
        assert results[0] == results[1]
        changes, rows, counts = results[1]
        assert [imei for imei, _, _ in changes] == [a, a, b, c, c]
        assert counts == {"pending": 0, "in progress": 1, "succeeded": 1, "failed": 1, "other": 0}
    finally:
        one_by_one.close()
        batched.close()


def test_callback_token_is_generated_once(store: Store) -> None:
    token = store.callback_token()
    assert len(token) >= 32
    assert store.callback_token() == token


def test_outbox_coalesces_root_edits_and_keeps_lanes_in_order(store: Store, clock) -> None:
    outbox = Outbox(store)
    first = outbox.enqueue("reply", {"text": "one"}, campaign_id=1)
    outbox.enqueue("reply", {"text": "two"}, campaign_id=1)
    edit = outbox.enqueue("root_update", {"v": 1}, campaign_id=1, coalesce_key="root:1")
    assert outbox.enqueue("root_update", {"v": 2}, campaign_id=1, coalesce_key="root:1") == edit
    other = outbox.enqueue("reply", {"text": "elsewhere"}, campaign_id=2)
    due = outbox.due(clock())
    assert [i.id for i in due] == [first, edit, other]
    assert [i.payload for i in due if i.id == edit] == [{"v": 2}]
    outbox.retry_later(first, clock() + dt.timedelta(seconds=30), "slack down")
    # The failed head holds its lane back: "two" must not overtake "one".
    assert [i.id for i in outbox.due(clock())] == [edit, other]
    clock.advance(seconds=31)
    assert first in [i.id for i in outbox.due(clock())]
    outbox.mark_sent(edit)
    assert outbox.enqueue("root_update", {"v": 3}, campaign_id=1, coalesce_key="root:1") != edit


def test_an_approval_after_the_ttl_counts_for_nothing_even_before_the_expiry_job(store: Store, clock) -> None:
    campaign = make_campaign(store)
    clock.moment = campaign.expires_at
    result = store.record_approval(campaign.id, user="U_A", shown_hash=campaign.content_hash, required=1)
    assert result.outcome is ApprovalOutcome.CLOSED
    assert store.decisions(campaign.id) == []
    assert store.campaign(campaign.id).state is S.PENDING_APPROVAL


@pytest.mark.parametrize(
    ("first_at", "later_at"),
    [
        ("2026-11-26T10:00:05Z", "2026-11-26T10:00:00+00:00"),  # ThingSpace's clock vs ours
        ("2026-11-26T11:00:00", "2026-11-26 10:30:00"),  # a space instead of the T
        ("1795687200000", "2026-11-26T09:00:00Z"),  # epoch milliseconds
    ],
)
def test_a_final_status_is_never_lost_to_a_timestamp_in_another_format(store: Store, first_at: str, later_at: str) -> None:
    campaign = make_campaign(store)
    imei = IMEIS[0]
    store.apply_device_updates(campaign.id, [(imei, "UpgradeScheduled", None, first_at)])
    assert store.apply_device_updates(campaign.id, [(imei, "UpgradeSuccess", None, later_at)])
    assert store.devices(campaign.id)[0].status == "UpgradeSuccess"


def test_an_older_report_in_any_readable_format_does_not_overwrite_a_newer_one(store: Store) -> None:
    campaign = make_campaign(store)
    imei = IMEIS[0]
    store.apply_device_updates(campaign.id, [(imei, "UpgradeScheduled", None, "2026-11-26T10:00:00Z")])
    store.apply_device_updates(campaign.id, [(imei, "ReceivedDeviceDataFromNetwork", None, "2026-11-26 11:00:00")])
    assert store.apply_device_updates(campaign.id, [(imei, "UpgradeScheduled", None, "1795683600")]) == []
    assert store.devices(campaign.id)[0].status == "ReceivedDeviceDataFromNetwork"
