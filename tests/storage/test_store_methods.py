"""Store methods that took over SQL once written in the engine: transactions, callbacks kept for
later, the counts behind /metrics, the read-only look at FOTA_DB, the submission facts."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from storage.migrations import migrations
from storage.states import CampaignState as S
from storage.store import DEVICE_CHUNK, NotFoundSpell, Store, SubmissionFacts, read_only_summary
from tests.conftest import ManualClock
from tests.storage.test_store import IMEIS, make_campaign


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


def test_marking_more_callbacks_than_a_chunk_marks_every_one_and_no_other(store: Store) -> None:
    ids = store.store_callbacks([(f'{{"n": {n}}}', None) for n in range(DEVICE_CHUNK * 2 + 3)])
    store.mark_callbacks(ids[1:], parsed=True, applied=False, thingspace_id="TS-1")
    rows = store.db.execute("SELECT id, parsed, applied, thingspace_id FROM callbacks ORDER BY id").fetchall()
    assert rows[0] == (ids[0], 0, 0, None)
    assert rows[1:] == [(i, 1, 0, "TS-1") for i in ids[1:]]
    store.mark_callbacks(ids, parsed=True, applied=True)  # the id kept where none is given
    assert store.db.execute("SELECT count(*) FROM callbacks WHERE applied = 1 AND thingspace_id = 'TS-1'").fetchone()[0] == len(ids) - 1


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



# --- submission facts ------------------------------------------------------------------------


def test_submission_facts_start_empty_and_count_one_campaign_only(store: Store, clock: ManualClock) -> None:
    campaign, other = make_campaign(store), make_campaign(store)
    assert store.submission_facts(campaign.id) == SubmissionFacts(None, 0, None, False, False, 0, 0, 0)

    first = store.record_post(campaign.id, clock())
    assert (first.posts, first.last_post_at, first.unanswered_post, first.unanswered_post_before_last) == (
        1, clock(), True, False,
    )
    clock.advance(minutes=1)
    second = store.record_post(campaign.id, clock())
    # The first POST was never answered: a refusal of the second must still look for what it made.
    assert (second.posts, second.last_post_at, second.unanswered_post_before_last) == (2, clock(), True)
    answered = store.record_post_not_processed(campaign.id)
    assert (answered.unanswered_post, answered.unanswered_post_before_last) == (False, True)
    third = store.record_post(campaign.id, clock())
    assert (third.unanswered_post, third.unanswered_post_before_last) == (True, False)

    assert store.count_submission_retry(campaign.id).retries == 1
    assert store.count_submission_retry(campaign.id).retries == 2
    assert store.count_report_wait(campaign.id).report_waits == 1
    assert store.count_membership_wait(campaign.id).membership_waits == 1
    assert store.submission_facts(campaign.id).retries == 2
    assert store.submission_facts(other.id) == SubmissionFacts(None, 0, None, False, False, 0, 0, 0)


def test_a_claim_keeps_the_approvals_it_was_claimed_with(store: Store) -> None:
    campaign = make_campaign(store)
    store.record_approval(campaign.id, user="U_APP", shown_hash=campaign.content_hash, required=1)
    store.claim_for_submission(campaign.id, required=1)
    assert store.submission_facts(campaign.id).approvals_required == 1
    # Resumed after FOTA_REQUIRED_APPROVALS went up: a request maybe at ThingSpace is not stranded.
    assert store.claim_for_submission(campaign.id, required=2).state is S.SUBMITTING


def _campaign_row(db: Database, state: str) -> None:
    db.execute(
        """INSERT INTO campaigns(state, requester, account, firmware_name, firmware_from, firmware_to,
           protocol, start_date, end_date, windows, name, device_count, content_hash, sandbox,
           created_at, updated_at, expires_at, notes)
           VALUES(?, 'U_REQ', '1-1', 'FW', 'A', 'B', 'LWM2M', '2026-11-27', '2026-11-30',
           '[]', NULL, 1, 'h', 1, '2026-11-26T09:00:00+00:00', '2026-11-26T09:00:00+00:00',
           '2026-11-27T09:00:00+00:00', '[]')""",
        [state],
    )


def test_submission_facts_kept_as_key_value_strings_move_into_their_table(db_path: Path, clock: ManualClock) -> None:
    legacy = Database(sqlite3.connect(db_path))
    migrations.apply(legacy, stop_before="m013_submission_facts")
    _campaign_row(legacy, "submitting")
    _campaign_row(legacy, "approved")
    legacy.execute(
        """INSERT INTO decisions(campaign_id, user, decision, content_hash, reason, at)
           VALUES(1, 'U_APP', 'approve', 'h', NULL, '2026-11-26T09:30:00+00:00')"""
    )
    posted = "2026-11-26T10:00:00.123456+00:00"
    kept = {
        "claimed_with:1": "1",
        "submit_attempts:1": "2",
        "submit_last_post:1": posted,
        "submit_open:1": "1",
        "submit_earlier_open:1": "",
        "submit_retries:1": "3",
        "submit_waits:1": "1",
        "submit_membership_waits:1": "2",
        "submit_open:2": "",
        "submit_retries:2": "1",
        "claimed_with:99": "1",  # names no campaign on record
        "installation_id": "a1b2",
        "callback_token": "kept-token",
    }
    legacy.conn.executemany("INSERT INTO kv(key, value) VALUES(?, ?)", list(kept.items()))
    legacy.conn.commit()
    legacy.close()

    store = Store.open(db_path, clock=clock)
    try:
        assert migrations.pending(store.db) == []
        assert store.submission_facts(1) == SubmissionFacts(
            approvals_required=1,
            posts=2,
            last_post_at=dt.datetime.fromisoformat(posted),
            unanswered_post=True,
            unanswered_post_before_last=False,
            retries=3,
            report_waits=1,
            membership_waits=2,
        )
        assert store.submission_facts(2) == SubmissionFacts(None, 0, None, False, False, 1, 0, 0)
        assert store.db.execute("SELECT count(*) FROM submission_facts").fetchone()[0] == 2
        # Out of kv: the table is the one place they are read from; other keys stay.
        left = {row[0] for row in store.db.execute("SELECT key FROM kv")}
        assert left == {"installation_id", "callback_token"}
        assert store.callback_token() == "kept-token"
        # The resumed claim is checked against the number it was claimed with, read from the table.
        assert store.claim_for_submission(1, required=2).state is S.SUBMITTING
        # Counting goes on from the migrated figures.
        assert store.record_post(1, clock()).posts == 3
    finally:
        store.close()


def test_a_database_with_no_submission_facts_migrates_to_an_empty_table(db_path: Path, clock: ManualClock) -> None:
    legacy = Database(sqlite3.connect(db_path))
    migrations.apply(legacy, stop_before="m013_submission_facts")
    legacy.close()
    store = Store.open(db_path, clock=clock)
    try:
        assert store.db.execute("SELECT count(*) FROM submission_facts").fetchone()[0] == 0
        assert store.submission_facts(1) == SubmissionFacts(None, 0, None, False, False, 0, 0, 0)
    finally:
        store.close()


# --- content bound, changes noted ----------------------------------------------------------------


def test_binding_new_content_voids_approvals_of_the_old_hash(store: Store, clock: ManualClock) -> None:
    campaign = make_campaign(store)
    store.record_approval(campaign.id, user="U_ONE", shown_hash=campaign.content_hash, required=2)
    clock.advance(minutes=1)
    store.bind_content(campaign.id, "f" * 64, device_count=2)
    bound = store.campaign(campaign.id)
    assert (bound.content_hash, bound.device_count, bound.state) == ("f" * 64, 2, S.PENDING_APPROVAL)
    updated_at = store.db.execute("SELECT updated_at FROM campaigns WHERE id = ?", [campaign.id]).fetchone()[0]
    assert dt.datetime.fromisoformat(updated_at) == clock()
    # The approval of the old content no longer counts toward the two required.
    result = store.record_approval(campaign.id, user="U_TWO", shown_hash="f" * 64, required=2)
    assert (result.outcome.name, result.approvals) == ("RECORDED", 1)

    store.bind_content(campaign.id, "e" * 64)  # the device count stays as it was
    assert store.campaign(campaign.id).device_count == 2


def test_a_note_in_the_audit_keeps_the_state(store: Store, clock: ManualClock) -> None:
    campaign = make_campaign(store)
    clock.advance(minutes=3)
    store.note_in_audit(campaign.id, actor="U_APP", reason="approved the eligible devices only")
    last = store.audit(campaign.id)[-1]
    assert (last["from_state"], last["to_state"], last["actor"], last["reason"]) == (
        "pending_approval",
        "pending_approval",
        "U_APP",
        "approved the eligible devices only",
    )
    assert dt.datetime.fromisoformat(last["at"]) == clock()
    assert store.campaign(campaign.id).state is S.PENDING_APPROVAL


def test_preflight_refusal_says_why_approve_is_not_offered(store: Store) -> None:
    from storage import preflight

    campaign = make_campaign(store)
    assert store.preflight_refusal(campaign.id) is None  # no checks on record: the approval rules alone
    preflight.begin(store, campaign.id)
    assert "still being checked" in (store.preflight_refusal(campaign.id) or "")


def test_a_wave_campaign_is_created_approved_with_its_own_devices_and_hash(store: Store, clock: ManualClock) -> None:
    from storage.model import request_hash

    parent = make_campaign(store)
    wave = store.create_wave_campaign(
        parent,
        number=1,
        waves_total=3,
        devices=IMEIS[:1],
        start_date=dt.date(2026, 11, 26),
        end_date=dt.date(2026, 11, 29),
        by="U_APP",
        reason="wave 1/3 of FB-1: approved",
    )
    assert (wave.state, wave.parent_id, wave.wave, wave.waves_total) == (S.APPROVED, parent.id, 1, 3)
    assert (wave.start_date, wave.end_date) == (dt.date(2026, 11, 26), dt.date(2026, 11, 29))
    assert (wave.firmware_name, wave.windows, wave.thread_ts) == (parent.firmware_name, parent.windows, parent.thread_ts)
    assert wave.installation == parent.installation == store.installation_id()
    assert store.device_ids(wave.id) == IMEIS[:1]
    assert wave.content_hash == request_hash(wave, IMEIS[:1]) != parent.content_hash
    [created] = store.audit(wave.id)
    assert (created["from_state"], created["to_state"], created["actor"], created["reason"]) == (
        None,
        "approved",
        "U_APP",
        "wave 1/3 of FB-1: approved",
    )
    assert store.campaign(parent.id).state is S.PENDING_APPROVAL  # the request's state is not the wave's



# --- 404 spells --------------------------------------------------------------------------------


def test_a_spell_of_404s_is_kept_per_campaign_until_it_ends(store: Store, clock: ManualClock) -> None:
    campaign, other = make_campaign(store), make_campaign(store)
    assert store.not_found_spell(campaign.id) is None
    first = clock()
    store.record_not_found(campaign.id, NotFoundSpell(first, first, 1))
    clock.advance(minutes=10)
    store.record_not_found(campaign.id, NotFoundSpell(first, clock(), 2))
    assert store.not_found_spell(campaign.id) == NotFoundSpell(first, clock(), 2)
    assert store.not_found_spell(other.id) is None
    store.end_not_found_spell(campaign.id)
    assert store.not_found_spell(campaign.id) is None


def test_spells_kept_as_key_value_json_move_into_their_table(db_path: Path, clock: ManualClock) -> None:
    legacy = Database(sqlite3.connect(db_path))
    migrations.apply(legacy, stop_before="m017_not_found_spells")
    for _ in range(3):
        _campaign_row(legacy, "CampaignScheduled")
    first, last = "2026-11-26T09:00:00+00:00", "2026-11-26T09:10:00+00:00"
    legacy.conn.executemany(
        "INSERT INTO kv(key, value) VALUES(?, ?)",
        [
            ("not_found:1", f'{{"first": "{first}", "last": "{last}", "reads": 2}}'),
            ("not_found:2", ""),  # a spell that ended
            ("not_found:3", "not json"),
            ("not_found:77", f'{{"first": "{first}", "last": "{last}", "reads": 1}}'),  # no such campaign
            ("callback_token", "kept-token"),
        ],
    )
    legacy.conn.commit()
    legacy.close()

    store = Store.open(db_path, clock=clock)
    try:
        assert store.not_found_spell(1) == NotFoundSpell(
            dt.datetime.fromisoformat(first), dt.datetime.fromisoformat(last), 2
        )
        assert [store.not_found_spell(i) for i in (2, 3, 77)] == [None, None, None]
        assert {row[0] for row in store.db.execute("SELECT key FROM kv")} == {"callback_token"}
    finally:
        store.close()


# --- a halted rollout's waves ThingSpace would not cancel ----------------------------------------


def test_a_refusal_to_cancel_is_kept_per_campaign(store: Store) -> None:
    wave, other = make_campaign(store), make_campaign(store)
    assert store.cancel_refusal(wave.id) is None
    store.record_cancel_refusal(wave.id, "CAMPAIGN_ALREADY_STARTED: has already started")
    assert store.cancel_refusal(wave.id) == "CAMPAIGN_ALREADY_STARTED: has already started"
    assert store.cancel_refusal(other.id) is None


def test_refusals_kept_as_key_value_strings_move_into_their_table(db_path: Path, clock: ManualClock) -> None:
    legacy = Database(sqlite3.connect(db_path))
    migrations.apply(legacy, stop_before="m019_cancel_refusals")
    for _ in range(2):
        _campaign_row(legacy, "CampaignScheduled")
    legacy.conn.executemany(
        "INSERT INTO kv(key, value) VALUES(?, ?)",
        [
            ("halt_cancel_refused:2", "CAMPAIGN_ALREADY_STARTED: has already started"),
            ("halt_cancel_refused:77", "CAMPAIGN_ALREADY_STARTED: no such campaign here"),
            ("callback_token", "kept-token"),
        ],
    )
    legacy.conn.commit()
    legacy.close()

    store = Store.open(db_path, clock=clock)
    try:
        assert store.cancel_refusal(2) == "CAMPAIGN_ALREADY_STARTED: has already started"
        assert [store.cancel_refusal(i) for i in (1, 77)] == [None, None]
        assert {row[0] for row in store.db.execute("SELECT key FROM kv")} == {"callback_token"}
    finally:
        store.close()


def test_approval_authors_are_the_users_of_approve_decisions_lapsed_or_not(store: Store) -> None:
    # What `CampaignService.current_approvers` asks the directory about: the decisions' own rows.
    campaign = make_campaign(store)
    for user in ("U_A", "U_B"):
        store.record_approval(campaign.id, user=user, shown_hash=campaign.content_hash, required=3)
    # U_A is no approver any more: the next approval marks theirs lapsed; they still authored it.
    store.record_approval(
        campaign.id, user="U_C", shown_hash=campaign.content_hash, required=3, current_approvers=frozenset({"U_B"})
    )
    other = make_campaign(store)
    store.record_rejection(other.id, user="U_D", shown_hash=other.content_hash, reason="no")
    assert store.approval_authors(campaign.id) == ["U_A", "U_B", "U_C"]
    assert [d.user for d in store.decisions(campaign.id) if d.decision == "approve"] == ["U_A", "U_B", "U_C"]
    assert [d.lapsed for d in store.decisions(campaign.id)] == [True, False, False]
    assert store.approval_authors(other.id) == []


def test_a_signature_is_refused_again_across_a_crash_and_dropped_once_its_window_is_over(tmp_path: Path) -> None:
    path = tmp_path / "fota.db"
    store = Store.open(path)
    t = 1_000_000.0
    assert store.first_sighting("v0=a", t)
    assert store.first_sighting("v0=b", t + 0.5)
    assert not store.first_sighting("v0=a", t + 0.6)
    # A process that died without closing anything: a new one on the file still refuses it.
    again = Store.open(path)
    assert not again.first_sighting("v0=a", t + 299)

    def kept() -> set[str]:
        return {r[0] for r in again.db.execute("SELECT signature FROM slack_requests")}

    # Past keep_seconds (600) the next request drops it; within the second after, no further
    # delete runs (v0=b, over its time since t + 600.5, waits for the next one).
    assert again.first_sighting("v0=c", t + 600.4)
    assert kept() == {"v0=b", "v0=c"}
    assert again.first_sighting("v0=d", t + 601.0)
    assert kept() == {"v0=b", "v0=c", "v0=d"}
    assert again.first_sighting("v0=e", t + 601.4)
    assert kept() == {"v0=c", "v0=d", "v0=e"}
    # A clock set back does not stop the pruning.
    assert again.first_sighting("v0=f", t + 2000)
    assert again.first_sighting("v0=g", t + 1500)
    assert kept() == {"v0=f", "v0=g"}
    store.close()
    again.close()


def _refusal_as_first_written(db: Database, campaign_id: int) -> str | None:
    """preflight_refusal as first written (the row read twice, the summary parsed twice): the
    oracle the test below holds the one-read version to."""
    import json

    from storage.findings import CHECKING, FAILED
    from storage.model import ref_for

    row = db.execute("SELECT status, summary, error FROM preflight WHERE campaign_id = ?", [campaign_id]).fetchone()
    if row is None:
        return None
    status, summary, error = row
    ref = ref_for(campaign_id)
    if status == CHECKING:
        return f"{ref} is still being checked against ThingSpace; it can be approved once the pre-flight findings are on its card"
    if status == FAILED:
        return (
            f"the pre-flight checks of {ref} could not finish ({error or 'no reason given'}); "
            "they must pass before it can be approved"
        )
    blocking = json.loads(summary)["blocking"] if summary else []
    if blocking:
        return f"{ref} cannot be approved: " + " ".join(blocking)
    row = db.execute("SELECT summary, narrowed_at, override_at FROM preflight WHERE campaign_id = ?", [campaign_id]).fetchone()
    if row is None or not row[0] or row[1] or row[2]:
        return None
    data = json.loads(row[0])
    excluded = int(data["requested"]) - int(data["eligible"])
    if excluded > 0:
        return (
            f"{ref} holds {excluded:,} device{'s' if excluded != 1 else ''} pre-flight excluded; approve the "
            "eligible devices, or include the excluded ones explicitly with Include excluded devices…"
        )
    return None


@pytest.mark.parametrize("status", ["checking", "failed", "done"])
@pytest.mark.parametrize(
    "summary",
    [
        None,
        "",
        '{"requested": 3, "eligible": 3, "blocking": [], "conflicts": [[1, 2, 3]]}',
        '{"requested": 3, "eligible": 1, "blocking": []}',
        '{"requested": 1, "eligible": 0, "blocking": []}',
        '{"requested": 3, "eligible": 1, "blocking": ["FB-2 holds the same devices.", "No firmware."]}',
        '{"requested": 100000, "eligible": 99998, "blocking": []}',
    ],
)
@pytest.mark.parametrize("marked", [(None, None), ("2026-11-24T10:00:00+00:00", None), (None, "2026-11-24T10:00:00+00:00")])
def test_preflight_refusal_reads_what_it_read_before(
    store: Store, status: str, summary: str | None, marked: tuple[str | None, str | None]
) -> None:
    from storage import preflight
    from storage.refusals import preflight_refusal

    campaign = make_campaign(store)
    preflight.begin(store, campaign.id)
    store.db.execute(
        "UPDATE preflight SET status = ?, summary = ?, error = ?, narrowed_at = ?, override_at = ? WHERE campaign_id = ?",
        [status, summary, "ThingSpace said no", *marked, campaign.id],
    )
    expected = _refusal_as_first_written(store.db, campaign.id)
    assert preflight_refusal(store.db, campaign.id) == expected
    if status == "done" and summary and not any(marked):
        assert expected is not None or '"eligible": 3' in summary  # the cases mean something
