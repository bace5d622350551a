"""Pre-flight checks: the pure rules, their storage and the guard, the runner against
the sandbox through the real client (httpx.ASGITransport), and the card's findings section."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from bot.background import Background
from bot.secrets import Secret
from bot.standins.thingspace import Sandbox, SandboxClock, create_sandbox_app, sandbox_imeis
from bot.thingspace.client import ThingSpaceClient
from bot.workflow.preflight import (
    DeviceInfo,
    PreflightRunner,
    RequestFacts,
    check_firmware,
    evaluate,
    monthly_only,
    windows_overlap,
)
from commands import blocks
from commands.blocks.kit import MAX_BLOCKS, MAX_SECTION_TEXT
from storage import preflight as stored
from storage.findings import (
    CHECKING,
    DONE,
    FAILED,
    Finding,
    Narrowed,
    OtherCampaign,
    PreflightRecord,
)
from storage.model import (
    ApprovalOutcome,
    Campaign,
    CampaignNotFound,
    NotApproved,
    TimeWindow,
    bound_hash,
    override_hash,
    request_hash,
)
from storage.refusals import preflight_refusal
from storage.states import CampaignState
from storage.store import Store
from tests.conftest import ManualClock
from tests.support.blocks import check_blocks, check_escaped
from tests.support.sqlite import Transactions

ACCOUNT = "0000000000-00001"
FIRMWARE = "SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657"
FROM, TO = "SR1.2.0.0-10512", "SR1.2.0.0-10657"
MAKE, MODEL = "SEQUANS Communications", "GM01Q"
TODAY = dt.date(2026, 11, 26)
CATALOGUE = [
    {
        "firmwareName": FIRMWARE,
        "firmwareFrom": FROM,
        "firmwareTo": TO,
        "make": MAKE,
        "model": MODEL,
        "protocol": "LWM2M",
    },
    {
        "firmwareName": "Quectel_BG96_BG96MAR04A02M1G",
        "firmwareFrom": "BG96MAR02A08M1G",
        "firmwareTo": "BG96MAR04A02M1G",
        "make": "Quectel",
        "model": "BG96",
        "protocol": "LWM2M",
    },
]
EVENT_PLAN = {"purchaseType": "TS-HFOTA-EVNT,TS-HFOTA-MRC"}
MRC_ONLY = {"purchaseType": "TS-HFOTA-MRC"}


def facts(devices: Sequence[str], **changes: Any) -> RequestFacts:
    base: dict[str, Any] = {
        "account": ACCOUNT,
        "firmware_name": FIRMWARE,
        "firmware_from": FROM,
        "firmware_to": TO,
        "protocol": "LWM2M",
        "start_date": TODAY,
        "end_date": TODAY + dt.timedelta(days=3),
        "windows": (),
        "devices": list(devices),
    }
    return RequestFacts(**{**base, **changes})


def info(
    imei: str,
    *,
    make: str = MAKE,
    model: str = MODEL,
    firmware: str = FROM,
    eligible: bool | None = True,
    licensed: bool | None = True,
) -> DeviceInfo:
    return DeviceInfo(imei, make, model, firmware, eligible, licensed)


# --- Pure rules ----------------------------------------------------------------------------


def test_each_device_finding_comes_from_thingspaces_answers() -> None:
    devices = [f"35000000000000{i}" for i in range(8)]
    ok, absent, ineligible, unlicensed, done, old, other_model, busy = devices
    answers = [
        info(ok),
        info(ineligible, eligible=False),
        info(unlicensed, licensed=False),
        info(done, firmware=TO),
        info(old, firmware="SR1.1.0.0-9000"),
        info(other_model, make="Quectel", model="BG96", firmware="BG96MAR02A08M1G"),
        info(busy),
    ]
    conflict = OtherCampaign(7, "pending_approval", TODAY, TODAY, (), frozenset({busy}))
    findings = evaluate(facts(devices), CATALOGUE, answers, MRC_ONLY, [conflict])

    assert findings.devices == {
        absent: (Finding.UNKNOWN,),
        ineligible: (Finding.INELIGIBLE,),
        unlicensed: (Finding.UNLICENSED,),
        done: (Finding.DONE,),
        old: (Finding.WRONG_FIRMWARE,),
        other_model: (Finding.WRONG_FIRMWARE, Finding.WRONG_MODEL),
        busy: (Finding.IN_OTHER_CAMPAIGN,),
    }
    summary = findings.summary
    assert summary.requested == 8 and summary.monthly_only
    # Eligible means will-probably-succeed: only `ok`. Every other device is excluded, each
    # with its reason, and the one already on `to` can never be sent (not even by override).
    assert summary.eligible == 1 and summary.excluded == 7
    assert summary.on_target == 1
    assert summary.includable == 6
    assert {f: summary.count(f) for f in Finding} == {
        Finding.UNKNOWN: 1,
        Finding.INELIGIBLE: 1,
        Finding.UNLICENSED: 1,
        Finding.DONE: 1,
        Finding.WRONG_FIRMWARE: 2,
        Finding.WRONG_MODEL: 1,
        Finding.IN_OTHER_CAMPAIGN: 1,
    }
    assert summary.firmware.listed and (summary.firmware.make, summary.firmware.model) == (
        MAKE,
        MODEL,
    )
    assert not summary.blocked


def test_a_missing_licence_matters_only_when_the_subscription_is_monthly_only() -> None:
    devices = ["350000000000001", "350000000000002"]
    answers = [info(devices[0]), info(devices[1], licensed=False)]
    with_events = evaluate(facts(devices), CATALOGUE, answers, EVENT_PLAN)
    assert with_events.devices == {} and with_events.summary.eligible == 2
    assert not with_events.summary.monthly_only
    mrc = evaluate(facts(devices), CATALOGUE, answers, MRC_ONLY)
    assert mrc.devices == {devices[1]: (Finding.UNLICENSED,)} and mrc.summary.eligible == 1


@pytest.mark.parametrize(
    ("purchase_type", "expected"),
    [
        ("TS-HFOTA-MRC", True),
        (" ts-hfota-mrc ", True),
        (["TS-HFOTA-MRC"], True),
        ("TS-HFOTA-EVNT,TS-HFOTA-MRC", False),
        ("TS-HFOTA-EVNT", False),
        ("", False),
        (None, False),
    ],
)
def test_monthly_only_means_only_mrc_items(purchase_type: object, expected: bool) -> None:
    assert monthly_only({"purchaseType": purchase_type}) is expected


def test_firmware_not_listed_for_the_protocol_or_the_versions_blocks() -> None:
    devices = ["350000000000001"]
    answers = [info(devices[0])]
    missing = evaluate(
        facts(devices, firmware_name="NoSuchFirmware"), CATALOGUE, answers, EVENT_PLAN
    )
    assert not missing.summary.firmware.listed
    assert missing.summary.blocking == (
        f"Firmware NoSuchFirmware is not in account {ACCOUNT}'s firmware list for LWM2M.",
    )
    wrong_pair = check_firmware(facts(devices, firmware_from="SR0"), CATALOGUE)
    assert not wrong_pair.listed and wrong_pair.problem is not None
    assert f"listed for {FROM} → {TO}, not for SR0 → {TO}" in wrong_pair.problem
    other_protocol = check_firmware(facts(devices, protocol="OMA"), CATALOGUE)
    assert not other_protocol.listed and "for OMA" in (other_protocol.problem or "")
    # Without a listed firmware there is no make/model to compare against.
    assert Finding.WRONG_MODEL not in missing.devices.get(devices[0], ())


def test_no_eligible_device_blocks_and_says_why() -> None:
    devices = ["350000000000001", "350000000000002", "350000000000003"]
    answers = [info(devices[0], firmware=TO), info(devices[1], eligible=False)]
    findings = evaluate(facts(devices), CATALOGUE, answers, EVENT_PLAN)
    assert findings.summary.eligible == 0
    assert findings.summary.blocking == (
        f"None of the 3 devices can take this upgrade (1 not in account {ACCOUNT}, "
        f"1 not FOTA-eligible, 1 already on {TO}).",
    )


def test_conflicts_report_shared_devices_and_overlapping_dates_and_windows() -> None:
    devices = ["350000000000001", "350000000000002"]
    request = facts(devices, windows=(TimeWindow(18, 22),))
    others = [
        # Same days, windows 20-24 overlap 18-22.
        OtherCampaign(
            3, "CampaignScheduled", TODAY, TODAY, (TimeWindow(20, 24),), frozenset(devices)
        ),
        # Same days, windows 2-6: no hour in common.
        OtherCampaign(4, "approved", TODAY, TODAY, (TimeWindow(2, 6),), frozenset(devices[:1])),
        # Later dates.
        OtherCampaign(
            5,
            "pending_approval",
            TODAY + dt.timedelta(days=9),
            TODAY + dt.timedelta(days=10),
            (),
            frozenset(devices[:1]),
        ),
    ]
    findings = evaluate(request, CATALOGUE, [info(d) for d in devices], EVENT_PLAN, others)
    assert [
        (c.ref, c.shared, c.dates_overlap, c.windows_overlap) for c in findings.summary.conflicts
    ] == [
        ("FB-3", 2, True, True),
        ("FB-4", 1, True, False),
        ("FB-5", 1, False, False),
    ]
    assert findings.summary.count(Finding.IN_OTHER_CAMPAIGN) == 2
    # A device in another active campaign is excluded: the approver decides by override.
    assert findings.summary.eligible == 0 and findings.summary.excluded == 2


def test_licence_auto_makes_unlicensed_devices_eligible_while_licences_are_free() -> None:
    devices = [f"35000000000000{i}" for i in range(5)]
    licensed, *unlicensed = devices
    answers = [info(licensed)] + [info(d, licensed=False) for d in unlicensed]
    # Monthly-only with 3 unused licences: the first three unlicensed devices take one each.
    plan = {**MRC_ONLY, "licenseCount": 10, "licenseUsedCount": 7}
    summary = evaluate(facts(devices, licence_auto=True), CATALOGUE, answers, plan).summary
    assert (summary.eligible, summary.licences_assigned, summary.licences_free) == (4, 3, 3)
    assert summary.count(Finding.UNLICENSED) == 1
    # Without licence=auto they are all excluded; the licence figures are not shown.
    summary = evaluate(facts(devices), CATALOGUE, answers, plan).summary
    assert (summary.eligible, summary.licences_assigned, summary.licences_free) == (1, 0, None)
    # ThingSpace not saying how many are free assigns none: nothing is assumed.
    summary = evaluate(facts(devices, licence_auto=True), CATALOGUE, answers, MRC_ONLY).summary
    assert (summary.eligible, summary.licences_assigned) == (1, 0)
    # A per-event subscription needs no licence at all.
    summary = evaluate(facts(devices, licence_auto=True), CATALOGUE, answers, EVENT_PLAN).summary
    assert (summary.eligible, summary.licences_assigned) == (5, 0)


def test_a_licence_is_not_spent_on_a_device_excluded_anyway() -> None:
    devices = ["350000000000001", "350000000000002"]
    answers = [info(devices[0], licensed=False, model="BG96"), info(devices[1], licensed=False)]
    plan = {**MRC_ONLY, "licenseCount": 1, "licenseUsedCount": 0}
    findings = evaluate(facts(devices, licence_auto=True), CATALOGUE, answers, plan)
    assert findings.summary.licences_assigned == 1 and findings.summary.eligible == 1
    assert findings.devices == {devices[0]: (Finding.UNLICENSED, Finding.WRONG_MODEL)}


def test_windows_overlap_treats_no_windows_as_the_whole_day() -> None:
    assert windows_overlap((), (TimeWindow(2, 6),))
    assert windows_overlap((TimeWindow(18, 22),), (TimeWindow(21, 24),))
    assert not windows_overlap((TimeWindow(18, 22),), (TimeWindow(22, 24),))


def test_blast_radius_groups_devices_by_model_and_current_firmware() -> None:
    devices = [f"3500000000000{i:02d}" for i in range(30)]
    answers = [info(d) for d in devices[:10]]
    answers += [
        info(d, make="Quectel", model="BG96", firmware="BG96MAR02A08M1G") for d in devices[10:15]
    ]
    # Nine more single-device groups: more than the card shows.
    answers += [info(d, model=f"M{i}") for i, d in enumerate(devices[15:24])]
    findings = evaluate(facts(devices), CATALOGUE, answers, EVENT_PLAN)
    radius = findings.summary.radius
    assert (radius[0].model, radius[0].firmware, radius[0].devices, radius[0].target) == (
        MODEL,
        FROM,
        10,
        True,
    )
    assert (radius[1].model, radius[1].devices, radius[1].target) == ("BG96", 5, False)
    assert len(radius) == 8 and findings.summary.radius_other == 3
    assert findings.summary.count(Finding.UNKNOWN) == 6


def test_the_digest_covers_every_devices_findings_and_nothing_else() -> None:
    devices = ["350000000000001", "350000000000002"]
    answers = [info(devices[0]), info(devices[1], eligible=False)]
    first = evaluate(facts(devices), CATALOGUE, answers, EVENT_PLAN).summary.digest
    again = evaluate(facts(devices), CATALOGUE, list(reversed(answers)), EVENT_PLAN).summary.digest
    assert first == again and len(first) == 64
    # Same counts, but the other device is the ineligible one: a different content.
    swapped = [info(devices[0], eligible=False), info(devices[1])]
    assert evaluate(facts(devices), CATALOGUE, swapped, EVENT_PLAN).summary.digest != first


def test_device_answers_are_read_leniently() -> None:
    parsed = DeviceInfo.from_thingspace(
        {
            "deviceId": "350000000000001",
            "make": "Telit",
            "fotaEligible": "false",
            "licenseAssigned": None,
        }
    )
    assert parsed == DeviceInfo("350000000000001", "Telit", "", "", False, None)
    # Case and spacing differ between endpoints; a person would call them the same model.
    answers = [info("350000000000001", make="sequans  communications", model="gm01q")]
    assert evaluate(facts(["350000000000001"]), CATALOGUE, answers, EVENT_PLAN).devices == {}


# --- Storage and the guard -----------------------------------------------------------------


def make_campaign(
    store: Store, clock: ManualClock, devices: Sequence[str], **changes: Any
) -> Campaign:
    args: dict[str, Any] = {
        "requester": "U0REQ",
        "account": ACCOUNT,
        "firmware_name": FIRMWARE,
        "firmware_from": FROM,
        "firmware_to": TO,
        "protocol": "LWM2M",
        "start_date": TODAY,
        "end_date": TODAY + dt.timedelta(days=3),
        "windows": (),
        "name": None,
        "devices": list(devices),
        "sandbox": True,
        "expires_at": clock() + dt.timedelta(days=1),
    }
    return store.create_campaign(**{**args, **changes})


def checked(
    store: Store,
    campaign: Campaign,
    answers: Sequence[DeviceInfo],
    subscription: dict[str, Any] = EVENT_PLAN,
) -> Campaign:
    """Pre-flight run by hand: begin, evaluate, finish."""
    attempt = stored.begin(store, campaign.id)
    assert attempt is not None
    devices = store.device_ids(campaign.id)
    findings = evaluate(
        RequestFacts.of(campaign, devices),
        CATALOGUE,
        answers,
        subscription,
        stored.other_active_campaigns(store, campaign),
    )
    updated = stored.finish(store, campaign.id, attempt, findings)
    assert updated is not None
    return updated


def test_a_run_begins_on_the_request_s_own_hash_and_only_for_a_request_on_record(
    store: Store, clock: ManualClock
) -> None:
    campaign = make_campaign(store, clock, ["350000000000001"])
    assert stored.begin(store, campaign.id) == 1
    row = store.db.execute("SELECT status, attempts, request_hash FROM preflight").fetchone()
    assert row == (CHECKING, 1, campaign.content_hash)
    with pytest.raises(CampaignNotFound, match="FB-99"):
        stored.begin(store, 99)
    assert store.db.execute("SELECT count(*) FROM preflight").fetchone()[0] == 1


def test_the_guard_refuses_while_checking_and_when_blocked(
    store: Store, clock: ManualClock
) -> None:
    campaign = make_campaign(store, clock, ["350000000000001"])
    assert stored.begin(store, campaign.id) == 1
    assert stored.begin(store, campaign.id) is None  # one run at a time
    with pytest.raises(NotApproved, match="still being checked"):
        store.record_approval(
            campaign.id, user="U0ANN", shown_hash=campaign.content_hash, required=1
        )

    blocked = make_campaign(store, clock, ["350000000000002"], firmware_from="SR0")
    blocked = checked(store, blocked, [info("350000000000002")])
    with pytest.raises(NotApproved, match="cannot be approved: Firmware .* listed for"):
        store.record_approval(blocked.id, user="U0ANN", shown_hash=blocked.content_hash, required=1)
    assert store.decisions(blocked.id) == []
    # Even a campaign moved to approved by some other path never passes the submission guard.
    store.transition(blocked.id, CampaignState.APPROVED, actor="test", reason="bypass")
    with pytest.raises(NotApproved, match="cannot be approved"):
        store.claim_for_submission(blocked.id, required=0)
    assert store.campaign(blocked.id).state is CampaignState.APPROVED


def test_findings_are_bound_into_the_content_hash(store: Store, clock: ManualClock) -> None:
    campaign = make_campaign(store, clock, ["350000000000001"])
    before = campaign.content_hash
    updated = checked(store, campaign, [info("350000000000001")])
    record = stored.load(store, campaign.id)
    assert record is not None and record.status == DONE and record.summary is not None
    assert updated.content_hash == bound_hash(before, record.summary.digest) != before
    # A card shown before the findings (the "checking…" card) is stale now.
    stale = store.record_approval(campaign.id, user="U0ANN", shown_hash=before, required=1)
    assert stale.outcome is ApprovalOutcome.STALE
    ok = store.record_approval(
        campaign.id, user="U0ANN", shown_hash=updated.content_hash, required=1
    )
    assert ok.outcome is ApprovalOutcome.APPROVED
    assert store.claim_for_submission(campaign.id, required=1).state is CampaignState.SUBMITTING


def test_results_of_a_superseded_run_are_dropped(store: Store, clock: ManualClock) -> None:
    campaign = make_campaign(store, clock, ["350000000000001"])
    first = stored.begin(store, campaign.id)
    assert first is not None and stored.restart(store, campaign.id) == first + 1
    findings = evaluate(RequestFacts.of(campaign, ["350000000000001"]), CATALOGUE, [], EVENT_PLAN)
    assert stored.finish(store, campaign.id, first, findings) is None
    assert not stored.fail(store, campaign.id, first, "late")
    record = stored.load(store, campaign.id)
    assert record is not None and record.status == CHECKING and record.attempts == 2


def test_a_plain_approval_of_a_request_with_excluded_devices_is_refused(
    store: Store, clock: ManualClock
) -> None:
    devices = ["350000000000001", "350000000000002"]
    campaign = checked(store, make_campaign(store, clock, devices), [info(devices[0])])
    with pytest.raises(NotApproved, match="holds 1 device pre-flight excluded"):
        store.record_approval(campaign.id, user="U0ANN", shown_hash=campaign.content_hash, required=1)
    assert store.decisions(campaign.id) == []
    # Nor can a campaign moved to approved by another path pass the submission guard.
    store.transition(campaign.id, CampaignState.APPROVED, actor="test", reason="bypass")
    with pytest.raises(NotApproved, match="pre-flight excluded"):
        store.claim_for_submission(campaign.id, required=0)


def test_an_override_widens_rehashes_records_and_narrowing_undoes_it(
    store: Store, clock: ManualClock
) -> None:
    devices = ["350000000000001", "350000000000002", "350000000000003", "350000000000004"]
    ok, ineligible, absent, done = devices
    campaign = make_campaign(store, clock, devices)
    original = campaign.content_hash
    campaign = checked(
        store, campaign, [info(ok), info(ineligible, eligible=False), info(done, firmware=TO)]
    )
    checked_hash = campaign.content_hash

    # The typed count must be what is being added: the two excluded devices not on `to`.
    for wrong in (3, 4, 0):
        with pytest.raises(NotApproved, match="not the number of devices being added; it is 2"):
            stored.override_and_approve(
                store, campaign.id, user="U0ANN", shown_hash=checked_hash,
                typed_count=wrong, reason="field test", required=2,
            )
    with pytest.raises(NotApproved, match="needs a reason"):
        stored.override_and_approve(
            store, campaign.id, user="U0ANN", shown_hash=checked_hash,
            typed_count=2, reason="  ", required=2,
        )
    with pytest.raises(NotApproved, match="requester"):
        stored.override_and_approve(
            store, campaign.id, user="U0REQ", shown_hash=checked_hash,
            typed_count=2, reason="mine", required=2,
        )
    assert store.campaign(campaign.id).content_hash == checked_hash
    assert store.decisions(campaign.id) == []

    widened = stored.override_and_approve(
        store, campaign.id, user="U0ANN", shown_hash=checked_hash,
        typed_count=2, reason="lab units, flashed by hand", required=2,
    )
    after = store.campaign(campaign.id)
    # The device already on `to` is never sent, not even by an override.
    assert store.device_ids(campaign.id) == [ok, ineligible, absent] and after.device_count == 3
    assert (widened.included, widened.done) == (2, 1)
    assert widened.counts == {"ineligible": 1, "unknown": 1}
    record = stored.load(store, campaign.id)
    assert record is not None and record.summary is not None and record.overridden
    assert (record.override_by, record.override_count, record.override_reason) == (
        "U0ANN", 2, "lab units, flashed by hand",
    )
    assert after.content_hash == override_hash(
        request_hash(after, [ok, ineligible, absent]), record.summary.digest, 2
    )
    assert after.content_hash not in (original, checked_hash)
    assert widened.result.outcome is ApprovalOutcome.RECORDED and widened.result.approvals == 1
    assert preflight_refusal(store.db, campaign.id) is None
    [audit] = [r for r in store.audit(campaign.id) if "overrode" in r["reason"]]
    assert audit["actor"] == "U0ANN" and "lab units, flashed by hand" in audit["reason"]
    assert "included 2 excluded devices (1 ineligible, 1 unknown)" in audit["reason"]

    # A click on a card shown before the override (another device set) counts for nothing.
    stale = store.record_approval(campaign.id, user="U0BOB", shown_hash=checked_hash, required=2)
    assert stale.outcome is ApprovalOutcome.STALE
    stale_narrow = stored.narrow_and_approve(
        store, campaign.id, user="U0BOB", shown_hash=checked_hash, required=2
    )
    assert stale_narrow.result.outcome is ApprovalOutcome.STALE
    assert store.device_ids(campaign.id) == [ok, ineligible, absent]

    # Bob disagrees: he approves the eligible devices, which takes the excluded ones out again.
    narrowed = stored.narrow_and_approve(
        store, campaign.id, user="U0BOB", shown_hash=after.content_hash, required=2
    )
    final = store.campaign(campaign.id)
    assert store.device_ids(campaign.id) == [ok] and final.device_count == 1
    assert (narrowed.kept, narrowed.dropped, narrowed.superseded) == (1, 2, ("U0ANN",))
    record = stored.load(store, campaign.id)
    assert record is not None and record.narrowed_by == "U0BOB" and not record.overridden
    assert final.content_hash == bound_hash(
        request_hash(final, [ok]), record.summary.digest if record.summary else ""
    )
    # Ann's approval was of the widened set: it does not count for what is sent now.
    with pytest.raises(NotApproved):
        store.claim_for_submission(campaign.id, required=2)
    again = store.record_approval(campaign.id, user="U0ANN", shown_hash=final.content_hash, required=2)
    assert again.outcome is ApprovalOutcome.APPROVED and again.approvals == 2
    assert store.claim_for_submission(campaign.id, required=2).state is CampaignState.SUBMITTING
    # Nothing is lost: every device left out stays on record with why.
    assert stored.dropped_devices(store, campaign.id) == [ineligible, absent, done]
    assert [imei for imei, _, kept in stored.excluded_devices(store, campaign.id) if not kept] == [
        ineligible, absent, done,
    ]
    assert stored.device_findings(store, campaign.id)[absent] == ("unknown",)
    assert any("eligible devices only" in row["reason"] for row in store.audit(campaign.id))


def test_a_second_override_submission_changes_nothing(store: Store, clock: ManualClock) -> None:
    """A double submit of the modal, or a second approver's form opened on the same card."""
    devices = ["350000000000001", "350000000000002"]
    campaign = checked(
        store, make_campaign(store, clock, devices), [info(devices[0]), info(devices[1], model="X")]
    )
    first = stored.override_and_approve(
        store, campaign.id, user="U0ANN", shown_hash=campaign.content_hash,
        typed_count=1, reason="first", required=2,
    )
    assert first.result.outcome is ApprovalOutcome.RECORDED
    widened = store.campaign(campaign.id)
    audit_rows = len(store.audit(campaign.id))
    for user in ("U0ANN", "U0BOB"):
        again = stored.override_and_approve(
            store, campaign.id, user=user, shown_hash=campaign.content_hash,
            typed_count=1, reason="again", required=2,
        )
        assert again.result.outcome is ApprovalOutcome.STALE and again.included == 0
    # With the current hash it is refused outright: the request is widened already.
    with pytest.raises(NotApproved, match="already widened by <@U0ANN>"):
        stored.override_and_approve(
            store, campaign.id, user="U0BOB", shown_hash=widened.content_hash,
            typed_count=1, reason="again", required=2,
        )
    assert store.campaign(campaign.id) == widened and len(store.audit(campaign.id)) == audit_rows
    record = stored.load(store, campaign.id)
    assert record is not None and record.override_reason == "first"
    assert [d.user for d in store.decisions(campaign.id)] == ["U0ANN"]


def test_nothing_to_override_when_every_excluded_device_is_done(
    store: Store, clock: ManualClock
) -> None:
    devices = ["350000000000001", "350000000000002"]
    campaign = checked(
        store, make_campaign(store, clock, devices), [info(devices[0]), info(devices[1], firmware=TO)]
    )
    record = stored.load(store, campaign.id)
    assert record is not None and record.summary is not None and record.summary.includable == 0
    with pytest.raises(NotApproved, match="no excluded device that could be sent"):
        stored.override_and_approve(
            store, campaign.id, user="U0ANN", shown_hash=campaign.content_hash,
            typed_count=0, reason="why not", required=1,
        )
    card = card_for(campaign, record)
    assert buttons(card) == [
        blocks.ACTION_EXCLUDED_CSV, blocks.ACTION_APPROVE_ELIGIBLE, blocks.ACTION_REJECT,
        blocks.ACTION_WITHDRAW,
    ]


def test_eligible_only_refuses_a_stale_card_the_requester_and_a_blocked_request(
    store: Store, clock: ManualClock
) -> None:
    devices = ["350000000000001", "350000000000002"]
    campaign = make_campaign(store, clock, devices)
    shown_while_checking = campaign.content_hash
    campaign = checked(store, campaign, [info(devices[0])])
    stale = stored.narrow_and_approve(
        store, campaign.id, user="U0ANN", shown_hash=shown_while_checking, required=1
    )
    assert (
        stale.result.outcome is ApprovalOutcome.STALE and store.device_ids(campaign.id) == devices
    )
    with pytest.raises(NotApproved, match="requester"):
        stored.narrow_and_approve(
            store, campaign.id, user="U0REQ", shown_hash=campaign.content_hash, required=1
        )
    nobody = make_campaign(store, clock, ["350000000000003"])
    nobody = checked(store, nobody, [])
    with pytest.raises(NotApproved, match="None of the 1 devices"):
        stored.narrow_and_approve(
            store, nobody.id, user="U0ANN", shown_hash=nobody.content_hash, required=1
        )
    assert store.device_ids(nobody.id) == ["350000000000003"]
    legacy = make_campaign(store, clock, ["350000000000004"])  # stored before pre-flight existed
    with pytest.raises(NotApproved, match="no pre-flight findings"):
        stored.narrow_and_approve(
            store, legacy.id, user="U0ANN", shown_hash=legacy.content_hash, required=1
        )


def test_conflicts_are_read_from_active_campaigns_only(store: Store, clock: ManualClock) -> None:
    shared = ["350000000000001", "350000000000002"]
    active = make_campaign(store, clock, shared)
    closed = make_campaign(store, clock, shared)
    store.transition(closed.id, CampaignState.WITHDRAWN, actor="U0REQ", reason="test")
    mine = make_campaign(store, clock, [*shared, "350000000000003"])
    [other] = stored.other_active_campaigns(store, mine)
    assert other.campaign_id == active.id and other.shared == frozenset(shared)


def test_interrupted_lists_requests_whose_checks_never_finished(
    store: Store, clock: ManualClock
) -> None:
    never = make_campaign(store, clock, ["350000000000001"])
    cut = make_campaign(store, clock, ["350000000000001"])
    stored.begin(store, cut.id)
    failed = make_campaign(store, clock, ["350000000000001"])
    attempt = stored.begin(store, failed.id)
    assert attempt is not None and stored.fail(store, failed.id, attempt, "ThingSpace down")
    done = checked(store, make_campaign(store, clock, ["350000000000001"]), [])
    assert stored.interrupted(store) == [never.id, cut.id, failed.id]
    assert done.id not in stored.interrupted(store)


# --- The runner against the sandbox --------------------------------------------------------


class Events:
    def __init__(self) -> None:
        self.done: list[int] = []
        self.narrowings: list[tuple[int, str, Narrowed]] = []

    def preflight_updated(self, campaign: Campaign) -> None:
        self.done.append(campaign.id)

    def narrowed(self, campaign: Campaign, user: str, narrowed: Narrowed) -> None:
        self.narrowings.append((campaign.id, user, narrowed))


class ConcurrencyProbe(httpx.AsyncBaseTransport):
    """Counts device requests in flight at once."""

    def __init__(self, inner: httpx.AsyncBaseTransport):
        self.inner = inner
        self.now = self.most = self.device_posts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        devices = request.url.path.startswith("/api/fota/v3/devices/")
        if devices:
            self.device_posts += 1
            self.now += 1
            self.most = max(self.most, self.now)
            await asyncio.sleep(0.001)
        try:
            return await self.inner.handle_async_request(request)
        finally:
            if devices:
                self.now -= 1


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(clock=SandboxClock.manual_at(dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)))


@pytest.fixture
async def probe(sandbox: Sandbox) -> AsyncIterator[ConcurrencyProbe]:
    yield ConcurrencyProbe(httpx.ASGITransport(app=create_sandbox_app(sandbox)))


@pytest.fixture
async def client(probe: ConcurrencyProbe) -> AsyncIterator[ThingSpaceClient]:
    credential = Secret("sandbox")
    async with ThingSpaceClient(
        base_url="http://sandbox.in-process",
        transport=probe,
        client_id=credential,
        client_secret=credential,
        username=credential,
        password=credential,
        max_retries=0,
    ) as ts:
        yield ts


def runner_for(
    store: Store, client: ThingSpaceClient, events: Events, **options: Any
) -> PreflightRunner:
    return PreflightRunner(
        store=store, thingspace=client, events=events, background=Background(), **options
    )


async def run_checks(store: Store, runner: PreflightRunner, campaign: Campaign) -> PreflightRecord:
    runner.start(campaign)
    await runner.background.idle()
    record = stored.load(store, campaign.id)
    assert record is not None
    return record


async def test_each_sandbox_kind_is_found_through_the_client(
    store: Store, clock: ManualClock, sandbox: Sandbox, client: ThingSpaceClient
) -> None:
    sandbox.mrc_only = True
    kinds = {"eligible": 6, "will_fail": 2, "unknown": 2, "ineligible": 3, "unlicensed": 4}
    by_kind = {kind: sandbox_imeis(n, kind=kind) for kind, n in kinds.items()}
    devices = [imei for imeis in by_kind.values() for imei in imeis]
    events = Events()
    runner = runner_for(store, client, events)
    campaign = make_campaign(store, clock, devices)
    record = await run_checks(store, runner, campaign)

    assert record.status == DONE and events.done == [campaign.id]
    summary = record.summary
    assert summary is not None and summary.monthly_only and summary.firmware.listed
    assert summary.count(Finding.UNKNOWN) == 2
    assert summary.count(Finding.INELIGIBLE) == 3
    assert summary.count(Finding.UNLICENSED) == 4
    assert summary.eligible == 8  # eligible and will_fail: ThingSpace takes them
    found = stored.device_findings(store, campaign.id)
    assert {i for i, f in found.items() if "unknown" in f} == set(by_kind["unknown"])
    assert {i for i, f in found.items() if "unlicensed" in f} == set(by_kind["unlicensed"])
    # The sandbox gives devices catalogue entries at random: the blast radius shows which.
    assert sum(r.devices for r in summary.radius) + summary.radius_other == len(devices) - 2
    assert store.campaign(campaign.id).content_hash != campaign.content_hash


async def test_devices_are_asked_in_chunks_with_bounded_concurrency(
    store: Store, clock: ManualClock, probe: ConcurrencyProbe, client: ThingSpaceClient
) -> None:
    devices = sandbox_imeis(50, kind=None)
    runner = runner_for(store, client, Events(), chunk_size=7, concurrency=3)
    record = await run_checks(store, runner, make_campaign(store, clock, devices))
    assert record.summary is not None and record.summary.requested == 50
    assert probe.device_posts == 8  # ceil(50 / 7)
    assert 1 < probe.most <= 3


async def test_unknown_firmware_blocks_through_the_client(
    store: Store, clock: ManualClock, client: ThingSpaceClient
) -> None:
    campaign = make_campaign(store, clock, sandbox_imeis(2), firmware_to="SR9")
    record = await run_checks(store, runner_for(store, client, Events()), campaign)
    assert record.summary is not None and record.summary.blocked
    assert "not for SR1.2.0.0-10512 → SR9" in record.summary.blocking[0]
    assert preflight_refusal(store.db, campaign.id) is not None


async def test_a_burst_of_requests_waits_its_turn_as_queue_entries_not_tasks(
    store: Store, clock: ManualClock, probe: ConcurrencyProbe, client: ThingSpaceClient
) -> None:
    events = Events()
    runner = runner_for(store, client, events, parallel_checks=2)
    # A device each, no two the same: two pre-flights reading the same devices at once share
    # one read (sandbox_imeis(1, start=n) gives the same device for some neighbouring n).
    imeis = sandbox_imeis(13)
    campaigns = [make_campaign(store, clock, [imei]) for imei in imeis[:12]]
    for campaign in campaigns:
        runner.start(campaign)
    # Every one is `checking` on record (the guard refuses it), but only two workers run.
    assert all(stored.load(store, c.id).status == CHECKING for c in campaigns)  # type: ignore[union-attr]
    assert len(runner.background) == 2
    await runner.background.idle()
    # Each checked once, in the order requested, at most two at once.
    assert events.done == [c.id for c in campaigns]
    assert all(stored.load(store, c.id).status == DONE for c in campaigns)  # type: ignore[union-attr]
    assert probe.device_posts == 12 and probe.most <= 2
    # A later request is taken up again by a new worker.
    later = make_campaign(store, clock, imeis[12:])
    assert (await run_checks(store, runner, later)).status == DONE
    assert len(runner.background) == 0


async def test_a_run_ending_in_an_error_of_its_own_does_not_stop_the_runs_queued_behind_it(
    store: Store, clock: ManualClock, client: ThingSpaceClient
) -> None:
    events = Events()
    runner = runner_for(store, client, events, parallel_checks=1)
    campaigns = [make_campaign(store, clock, [imei]) for imei in sandbox_imeis(3)]
    real = runner.run

    async def first_fails(campaign_id: int, attempt: int) -> PreflightRecord | None:
        if campaign_id == campaigns[0].id:
            # As when recording the failure fails too (the database refusing writes).
            raise sqlite3.OperationalError("disk I/O error")
        return await real(campaign_id, attempt)

    runner.run = first_fails  # type: ignore[method-assign]
    for campaign in campaigns:
        runner.start(campaign)
    await runner.background.idle()
    # The one worker went on to the others; the first is still `checking`, for start-up.
    assert events.done == [c.id for c in campaigns[1:]]
    assert stored.load(store, campaigns[0].id).status == CHECKING  # type: ignore[union-attr]
    assert len(runner.background) == 0


async def test_conflict_with_another_active_campaign_through_the_runner(
    store: Store, clock: ManualClock, client: ThingSpaceClient
) -> None:
    devices = sandbox_imeis(4)
    runner = runner_for(store, client, Events())
    first = make_campaign(store, clock, devices[:3], windows=(TimeWindow(18, 22),))
    await run_checks(store, runner, first)
    second = make_campaign(store, clock, devices[1:], windows=(TimeWindow(20, 24),))
    record = await run_checks(store, runner, second)
    assert record.summary is not None
    [conflict] = record.summary.conflicts
    assert (
        conflict.campaign_id,
        conflict.shared,
        conflict.dates_overlap,
        conflict.windows_overlap,
    ) == (first.id, 2, True, True)
    assert record.summary.count(Finding.IN_OTHER_CAMPAIGN) == 2 and not record.summary.blocked


async def test_a_thingspace_failure_is_recorded_and_can_be_run_again(
    store: Store, clock: ManualClock, sandbox: Sandbox, client: ThingSpaceClient
) -> None:
    sandbox.fail_next("/api/fota/v3/devices", 503, count=5)
    events = Events()
    runner = runner_for(store, client, events)
    campaign = make_campaign(store, clock, sandbox_imeis(3))
    record = await run_checks(store, runner, campaign)
    assert record.status == FAILED and "503" in (record.error or "")
    assert "could not finish" in (preflight_refusal(store.db, campaign.id) or "")
    sandbox.clear_faults()
    answer = await runner.retry(campaign.id, user="U0ANN")
    assert "again" in answer
    await runner.background.idle()
    record2 = stored.load(store, campaign.id)
    assert record2 is not None and record2.status == DONE and record2.attempts == 2
    assert preflight_refusal(store.db, campaign.id) is None


async def test_a_run_past_its_deadline_fails_instead_of_hanging(
    store: Store, clock: ManualClock, sandbox: Sandbox, client: ThingSpaceClient
) -> None:
    sandbox.delay_next("/api/fota/v3/devices", 1.0, before=True)
    runner = runner_for(store, client, Events(), deadline=0.05)
    record = await run_checks(store, runner, make_campaign(store, clock, sandbox_imeis(2)))
    assert record.status == FAILED and "within 0 s" in (record.error or "")


async def test_interrupted_checks_are_run_again(
    store: Store, clock: ManualClock, client: ThingSpaceClient
) -> None:
    campaign = make_campaign(store, clock, sandbox_imeis(2))
    stored.begin(store, campaign.id)  # the process died here
    legacy = make_campaign(
        store, clock, sandbox_imeis(1, start=100)
    )  # stored before pre-flight existed
    runner = runner_for(store, client, Events())
    runner.resume_interrupted()
    await runner.background.idle()
    for campaign_id in (campaign.id, legacy.id):
        record = stored.load(store, campaign_id)
        assert record is not None and record.status == DONE


async def test_findings_are_written_a_chunk_per_transaction_with_the_loop_turning_between(
    store: Store,
    clock: ManualClock,
    client: ThingSpaceClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stored, "FINDINGS_CHUNK", 10)
    campaign = make_campaign(store, clock, sandbox_imeis(25, kind="unknown"))  # 25 findings
    turns = 0
    running = True

    async def other_work() -> None:
        nonlocal turns
        while running:
            turns += 1
            await asyncio.sleep(0)

    # What the rest of the bot could see after each chunk: still checking, still refused.
    seen: list[tuple[int, str, bool]] = []
    write = stored.write_device_findings

    def watched(*args: Any) -> bool:
        written = write(*args)
        record = stored.load(store, campaign.id)
        assert record is not None
        seen.append((turns, record.status, preflight_refusal(store.db, campaign.id) is not None))
        return written

    monkeypatch.setattr(stored, "write_device_findings", watched)
    other = asyncio.create_task(other_work())
    runner = runner_for(store, client, Events())
    stored.begin(store, campaign.id)
    transactions = Transactions(store.db.conn)
    try:
        await runner.run(campaign.id, 1)
    finally:
        transactions.stop()
        running = False
        await other

    # The clearing (nothing left by an earlier run), three chunks, then `finish`: the row's
    # status, summary and digest, and the content hash it binds.
    assert transactions.sizes == [0, 10, 10, 5, 2]
    assert [status for _, status, _ in seen] == [CHECKING] * 3 and all(refused for *_, refused in seen)
    assert all(later > earlier for (earlier, *_), (later, *_) in zip(seen, seen[1:], strict=False))
    record = stored.load(store, campaign.id)
    assert record is not None and record.status == DONE
    assert len(stored.device_findings(store, campaign.id)) == 25


async def test_a_run_cut_short_half_way_is_never_read_as_done_and_its_rows_are_cleared(
    store: Store,
    clock: ManualClock,
    client: ThingSpaceClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stored, "FINDINGS_CHUNK", 10)
    devices = sandbox_imeis(25, kind="unknown")
    campaign = make_campaign(store, clock, devices)
    attempt = stored.begin(store, campaign.id)
    assert attempt == 1
    # Two chunks of an older run's findings committed, then the process stopped.
    left = [(imei, (Finding.INELIGIBLE,)) for imei in devices[:20]]
    assert stored.write_device_findings(store, campaign.id, 1, left[:10])
    assert stored.write_device_findings(store, campaign.id, 1, left[10:])
    record = stored.load(store, campaign.id)
    assert record is not None and record.status == CHECKING and record.summary is None
    assert "still being checked" in (preflight_refusal(store.db, campaign.id) or "")
    assert stored.interrupted(store) == [campaign.id]
    with pytest.raises(ValueError, match="at most 10"):
        stored.write_device_findings(store, campaign.id, 1, left[:11])

    # The next start runs it again: the old rows go a chunk per transaction, the new run's
    # findings alone remain.
    transactions = Transactions(store.db.conn)
    runner = runner_for(store, client, Events())
    runner.resume_interrupted()
    await runner.background.idle()
    transactions.stop()
    assert max(transactions.sizes) == 10
    record = stored.load(store, campaign.id)
    assert record is not None and record.status == DONE and record.attempts == 2
    found = stored.device_findings(store, campaign.id)
    assert sorted(found) == sorted(devices) and set(found.values()) == {("unknown",)}
    # The superseded run can write nothing more.
    assert not stored.write_device_findings(store, campaign.id, 1, left[:1])
    assert stored.clear_device_findings(store, campaign.id, 1) is None


# --- The card ------------------------------------------------------------------------------


def card_for(
    campaign: Campaign, record: PreflightRecord | None, today: dt.date = TODAY
) -> dict[str, Any]:
    card = blocks.approval_card(
        campaign,
        devices_sample=[],
        approvals=[],
        required_approvals=1,
        sandbox=True,
        preflight_blocks=blocks.preflight_blocks(campaign, record, today=today),
    )
    return blocks.gate_decisions(card, campaign, record)


def buttons(card: dict[str, Any]) -> list[str]:
    return [e["action_id"] for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]]


def test_the_card_offers_no_approve_while_checking(store: Store, clock: ManualClock) -> None:
    campaign = make_campaign(store, clock, ["350000000000001"])
    stored.begin(store, campaign.id)
    card = card_for(campaign, stored.load(store, campaign.id))
    text = json.dumps(card, ensure_ascii=False)
    assert "checking…" in text and "about 2 hours" in text
    assert buttons(card) == [blocks.ACTION_REJECT, blocks.ACTION_WITHDRAW]


def test_the_card_shows_why_approve_is_disabled(store: Store, clock: ManualClock) -> None:
    campaign = make_campaign(store, clock, ["350000000000001"], firmware_name="<!channel> fw")
    campaign = checked(store, campaign, [info("350000000000001")])
    card = card_for(campaign, stored.load(store, campaign.id))
    text = json.dumps(card, ensure_ascii=False)
    assert "Approve is disabled" in text and "&lt;!channel&gt; fw is not in account" in text
    assert "<!channel>" not in text
    assert blocks.ACTION_APPROVE not in buttons(
        card
    ) and blocks.ACTION_APPROVE_ELIGIBLE not in buttons(card)


def test_the_card_shows_counts_radius_start_and_offers_eligible_only(
    store: Store, clock: ManualClock
) -> None:
    devices = ["350000000000001", "350000000000002", "350000000000003"]
    start = TODAY + dt.timedelta(days=2)
    campaign = make_campaign(
        store, clock, devices, start_date=start, end_date=start, windows=(TimeWindow(18, 22),)
    )
    campaign = checked(store, campaign, [info(devices[0]), info(devices[1], eligible=False)])
    record = stored.load(store, campaign.id)
    assert record is not None and record.summary is not None
    card = card_for(campaign, record)
    text = json.dumps(card, ensure_ascii=False)
    assert "*1 of 3 devices eligible*" in text
    assert "1 device not in account" in text and "1 device not FOTA-eligible" in text
    assert "Blast radius" in text and f"{MAKE} {MODEL} on `{FROM}`: 2" in text
    assert f"about 00:00 UTC on {start.isoformat()}" in text and "18:00–22:00 UTC" in text
    assert "cannot be called back" in text
    assert record.summary.digest[:12] in text
    assert "changed when the checks finished" in text
    # Some devices are excluded: the primary button approves the eligible ones; sending the
    # excluded ones too is a separate action; there is no plain Approve.
    assert buttons(card) == [
        blocks.ACTION_EXCLUDED_CSV,
        blocks.ACTION_APPROVE_ELIGIBLE,
        blocks.ACTION_INCLUDE_EXCLUDED,
        blocks.ACTION_REJECT,
        blocks.ACTION_WITHDRAW,
    ]
    elements = {e["action_id"]: e for b in card["blocks"] if b["type"] == "actions" for e in b["elements"]}
    eligible = elements[blocks.ACTION_APPROVE_ELIGIBLE]
    assert blocks.parse_action_value(eligible["value"]) == (campaign.id, campaign.content_hash)
    assert eligible["text"]["text"] == "Approve 1 eligible" and eligible["style"] == "primary"
    assert "confirm" in eligible and "confirm" not in elements[blocks.ACTION_INCLUDE_EXCLUDED]
    assert blocks.parse_action_value(elements[blocks.ACTION_INCLUDE_EXCLUDED]["value"]) == (
        campaign.id, campaign.content_hash,
    )
    assert len(card["blocks"]) <= MAX_BLOCKS
    assert all(len(b.get("text", {}).get("text", "")) <= MAX_SECTION_TEXT for b in card["blocks"])


@dataclass(frozen=True)
class HomeFacts:
    campaign: Campaign
    preflight: PreflightRecord | None
    counts: dict[str, int] = field(default_factory=dict)
    decisions: list[Any] = field(default_factory=list)
    sample: tuple[str, ...] = ()
    not_approvable: str | None = None
    plan: Any = None  # a staged rollout's StoredPlan; none here
    current_wave: Any = None
    wave_states: dict[int, tuple[str, int, int]] = field(default_factory=dict)


def home_for(campaign: Campaign, record: PreflightRecord | None, **facts: Any) -> dict[str, Any]:
    return blocks.home_view(
        "U0ANN",
        may_approve=True,
        to_decide=[HomeFacts(campaign, record, **facts)],
        mine_waiting=[],
        active=[],
        totals={},
        required_approvals=1,
        sandbox=True,
        now=dt.datetime.combine(TODAY, dt.time(9), tzinfo=dt.UTC),
    )


def decision_row(view: dict[str, Any]) -> list[dict[str, Any]]:
    """The approve-side buttons and Reject, without Withdraw (the requester's) and the
    excluded-devices download (a card-only extra, not a decision)."""
    return [
        e
        for b in view["blocks"]
        if b["type"] == "actions"
        for e in b["elements"]
        if e["action_id"] not in (blocks.ACTION_WITHDRAW, blocks.ACTION_EXCLUDED_CSV)
    ]


def test_the_app_home_shows_the_cards_findings_and_the_same_buttons(
    store: Store, clock: ManualClock
) -> None:
    devices = ["350000000000001", "350000000000002", "350000000000003", "350000000000004"]
    waiting = make_campaign(store, clock, ["350000000000009"])
    stored.begin(store, waiting.id)
    cases = [("checking", waiting, stored.load(store, waiting.id))]
    campaign = checked(
        store,
        make_campaign(store, clock, devices),
        [info(devices[0]), info(devices[1], model="BG96"), info(devices[2], firmware="SR0")],
    )
    record = stored.load(store, campaign.id)
    cases.append(("excluded", campaign, record))
    stored.override_and_approve(
        store, campaign.id, user="U0BOB", shown_hash=campaign.content_hash,
        typed_count=3, reason="bench units", required=2,
    )
    cases.append(("overridden", store.campaign(campaign.id), stored.load(store, campaign.id)))
    all_eligible = checked(
        store, make_campaign(store, clock, ["350000000000008"]), [info("350000000000008")]
    )
    cases.append(("eligible", all_eligible, stored.load(store, all_eligible.id)))
    for name, shown, rec in cases:
        card, home = card_for(shown, rec), home_for(shown, rec)
        check_blocks(home["blocks"], max_blocks=100)
        check_blocks(card["blocks"], unique_ids="message")
        same = [(e["action_id"], e["text"]["text"], e["value"], e.get("confirm")) for e in decision_row(card)]
        assert same == [
            (e["action_id"], e["text"]["text"], e["value"], e.get("confirm")) for e in decision_row(home)
        ], name
    text = json.dumps(home_for(cases[1][1], cases[1][2]), ensure_ascii=False)
    assert "*1 of 4 devices eligible*" in text and "1 device not in account" in text
    assert "1 device of another make or model" in text and "Blast radius:" in text
    assert "Expected start: on demand" in text and "changed when the checks finished" in text
    text = json.dumps(home_for(cases[2][1], cases[2][2]), ensure_ascii=False)
    assert "*Overridden* by <@U0BOB>" in text and "bench units" in text


def test_a_failed_check_offers_to_run_again(store: Store, clock: ManualClock) -> None:
    campaign = make_campaign(store, clock, ["350000000000001"])
    attempt = stored.begin(store, campaign.id)
    assert attempt is not None
    stored.fail(store, campaign.id, attempt, "ThingSpace answered HTTP 503 <b>")
    card = card_for(campaign, stored.load(store, campaign.id))
    text = json.dumps(card, ensure_ascii=False)
    assert "could not finish" in text and "HTTP 503 &lt;b&gt;" in text
    assert blocks.ACTION_APPROVE not in buttons(card) and blocks.ACTION_PREFLIGHT_RETRY in buttons(
        card
    )


def test_a_request_stored_before_preflight_keeps_its_card() -> None:
    campaign = Campaign(
        id=1,
        state=CampaignState.PENDING_APPROVAL,
        requester="U0REQ",
        account=ACCOUNT,
        firmware_name=FIRMWARE,
        firmware_from=FROM,
        firmware_to=TO,
        protocol="LWM2M",
        start_date=TODAY,
        end_date=TODAY,
        windows=(),
        name=None,
        device_count=1,
        content_hash="a" * 64,
        sandbox=True,
        created_at=dt.datetime(2026, 11, 26, tzinfo=dt.UTC),
        expires_at=dt.datetime(2026, 11, 27, tzinfo=dt.UTC),
    )
    assert blocks.ACTION_APPROVE in buttons(card_for(campaign, None))


@pytest.mark.parametrize(
    ("start", "words"),
    [
        (TODAY, "on demand: about 2 hours"),
        (TODAY + dt.timedelta(days=1), "about 00:00 UTC on 2026-11-27"),
        (TODAY - dt.timedelta(days=1), "has passed"),
    ],
)
def test_expected_start(start: dt.date, words: str) -> None:
    assert words in blocks.expected_start(start, TODAY)


@dataclass(frozen=True)
class Shared:
    name: str = "FB-3-excluded-devices.csv"
    rows: int = 2
    permalink: str | None = "https://example.slack.com/files/U0/F1/x.csv"
    error: str | None = None


def test_the_excluded_csv_answer_says_where_the_file_went_or_why_not() -> None:
    sent = blocks.excluded_csv_reply("FB-3", Shared())
    assert "Sent you FB-3-excluded-devices.csv" in sent and "the 2 devices pre-flight excluded" in sent
    refused = blocks.excluded_csv_reply("FB-3", Shared(permalink=None, error="not_in_channel<b>"))
    assert "`not_in_channel&lt;b&gt;`" in refused and "nothing else changed" in refused
    assert "no device" in blocks.excluded_csv_reply("FB-3", None)


def test_every_payload_stays_within_slacks_limits_at_100000_devices(
    store: Store, clock: ManualClock
) -> None:
    """The card, the App Home, the override modal, the stamp and the final summary of a
    100,000-device request with every finding, many models and hostile names."""
    devices = [f"35{i:012d}0" for i in range(100_000)]
    # Six other active requests, each sharing a device: more conflicts than the card lists.
    for n in range(6):
        checked(store, make_campaign(store, clock, [devices[n]]), [info(devices[n])])
    campaign = make_campaign(
        store, clock, devices, name="<!channel> big " + "x" * 60, firmware_name=FIRMWARE
    )
    answers = []
    for i, imei in enumerate(devices[:-1000]):  # the last 1,000: not in the account
        match i % 10:
            case 0:
                answers.append(info(imei, eligible=False))
            case 1:
                answers.append(info(imei, firmware=f"<b>SR{i % 37}</b>" + "9" * 150))
            case 2:
                answers.append(info(imei, make=f"<Weird> maker {i % 50}", model="M" * 200))
            case 3:
                answers.append(info(imei, firmware=TO))
            case _:
                answers.append(info(imei))
    campaign = checked(store, campaign, answers)
    record = stored.load(store, campaign.id)
    assert record is not None and record.summary is not None
    summary = record.summary
    assert summary.requested == 100_000 and 0 < summary.eligible < summary.requested
    assert len(summary.conflicts) == 6

    card = card_for(campaign, record)
    check_blocks(card["blocks"], unique_ids="message")
    check_escaped(card)
    assert blocks.ACTION_APPROVE_ELIGIBLE in buttons(card)
    home = home_for(campaign, record)
    check_blocks(home["blocks"], max_blocks=100)
    check_escaped(home)
    busy = blocks.home_view(
        "U0ANN",
        may_approve=True,
        to_decide=[HomeFacts(campaign, record)] * 12,
        mine_waiting=[HomeFacts(campaign, record)] * 12,
        active=[HomeFacts(campaign, None)] * 20,
        totals={},
        required_approvals=2,
        sandbox=True,
        now=dt.datetime.combine(TODAY, dt.time(9), tzinfo=dt.UTC),
        notice=blocks.home_notice("You approved FB-7."),
    )
    check_blocks(busy["blocks"], max_blocks=100)
    modal = blocks.override_modal(campaign, record)
    check_blocks(modal["blocks"], max_blocks=100)
    assert len(modal["private_metadata"]) <= 3000 and len(modal["title"]["text"]) <= 24

    widened = stored.override_and_approve(
        store, campaign.id, user="U0ANN", shown_hash=campaign.content_hash,
        typed_count=summary.includable, reason="r" * 2000, required=2,
    )
    assert widened.included == summary.includable
    after = store.campaign(campaign.id)
    record = stored.load(store, campaign.id)
    card = card_for(after, record)
    check_blocks(card["blocks"], unique_ids="message")
    stamp = blocks.decided_card(
        after, decisions=store.decisions(campaign.id), outcome="approved",
        devices_sample=devices[:10], sandbox=True, scope_lines=blocks.scope_lines(record),
    )
    check_blocks(stamp["blocks"], unique_ids="message")
    reply = blocks.overridden_reply(
        after, "U0ANN", included=widened.included, done=widened.done, reason="r" * 2000
    )
    check_blocks(reply["blocks"])
    left_out, reasons = stored.left_out_counts(store, campaign.id)
    final = blocks.final_summary_reply(
        dataclasses.replace(after, state=CampaignState.ENDED),
        {"succeeded": 60_000, "failed": 39_000, "pending": 1_000},
        left_out=left_out,
        left_out_reasons=reasons,
        included_by_override=widened.included,
        override_by="U0ANN",
        failure_reasons=[(f"<b>reason {i}</b> " + "z" * 300, 1_000 - i) for i in range(39)],
    )
    check_blocks(final["blocks"])
    check_escaped(final)
    assert len(final["text"]) <= 3000


def test_the_licence_option_is_part_of_the_content_hash(store: Store, clock: ManualClock) -> None:
    none = make_campaign(store, clock, ["350000000000001"], name="same")
    auto = make_campaign(store, clock, ["350000000000001"], name="same", licence_auto=True)
    assert (none.licence_auto, auto.licence_auto) == (False, True)
    body = auto.schedule_body(["350000000000001"])
    assert body["autoAssignLicenseFlag"] is True and body["autoAddDevicesFlag"] is False
    # Same request but for the option (and the ref in the name): the hashes differ because the
    # bodies do, and the option is read back from the database as stored.
    assert request_hash(auto, ["350000000000001"]) != request_hash(
        dataclasses.replace(auto, licence_auto=False), ["350000000000001"]
    )
    assert store.campaign(auto.id).licence_auto and not store.campaign(none.id).licence_auto
