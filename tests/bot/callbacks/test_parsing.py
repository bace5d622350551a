"""Callback payloads -> updates (pure): every shape we know, and nothing ever raises."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.callbacks import parsing
from bot.callbacks.parsing import (
    MAX_REASON,
    CampaignUpdate,
    DeviceUpdate,
    ParsedCallback,
    parse_callback,
)

ACC = "0642233522-00001"
CAMPAIGN = "f8ef3f8d-1bd5-4b0a-b2d7-1c4b2ce2e6c1"
IMEI = "990013907835573"
IMEI2 = "356938035643809"
WHEN = "2026-11-26T09:00:00.000Z"


def campaign_change(**extra: Any) -> dict[str, Any]:
    """The sandbox's campaign status callback."""
    return {
        "accountName": ACC,
        "campaignId": CAMPAIGN,
        "status": "CampaignScheduled",
        "type": "CampaignStatus",
        "timestamp": WHEN,
        **extra,
    }


def device_change(imei: str = IMEI, **extra: Any) -> dict[str, Any]:
    """The sandbox's device status callback."""
    return {
        "accountName": ACC,
        "campaignId": CAMPAIGN,
        "deviceId": imei,
        "status": "UpgradeFailed",
        "reason": "RovaClientDownloadFailed",
        "type": "DeviceStatus",
        "timestamp": WHEN,
        **extra,
    }


def v1_envelope(kind: str, **parts: Any) -> dict[str, Any]:
    """The documented v1 shape: every part present, the ones not about `kind` empty."""
    envelope: dict[str, Any] = {
        "accountName": ACC,
        "participantName": "acme",
        "type": kind,
        "username": "callback-user",
        "password": "callback-password",
        "firmwareList": [],
        "upgradeScheduled": {
            "firmwareName": "",
            "upgradeId": "",
            "startDate": "",
            "deviceList": [],
        },
        "upgradeProgress": {"upgradeId": "", "deviceId": "", "status": "", "reason": ""},
    }
    envelope.update(parts)
    return envelope


def nothing_but_unrecognised(body: Any) -> None:
    parsed = parse_callback(body)
    assert parsed.campaign_updates == ()
    assert parsed.device_updates == ()
    assert parsed.unrecognised == (body,)


# --- the sandbox's documented shapes ------------------------------------------------------------


def test_sandbox_campaign_change() -> None:
    assert parse_callback(campaign_change()) == ParsedCallback(
        campaign_updates=(CampaignUpdate(ACC, CAMPAIGN, "CampaignScheduled", WHEN),),
        device_updates=(),
        unrecognised=(),
        accounts=frozenset({ACC}),
    )


def test_sandbox_device_change() -> None:
    assert parse_callback(device_change()) == ParsedCallback(
        campaign_updates=(),
        device_updates=(
            DeviceUpdate(ACC, CAMPAIGN, IMEI, "UpgradeFailed", "RovaClientDownloadFailed", WHEN),
        ),
        unrecognised=(),
        accounts=frozenset({ACC}),
    )


def test_array_of_device_changes_keeps_order() -> None:
    parsed = parse_callback(
        [device_change(IMEI), device_change(IMEI2, status="UpgradeSuccess", reason="")]
    )
    assert parsed.device_updates == (
        DeviceUpdate(ACC, CAMPAIGN, IMEI, "UpgradeFailed", "RovaClientDownloadFailed", WHEN),
        DeviceUpdate(ACC, CAMPAIGN, IMEI2, "UpgradeSuccess", None, WHEN),
    )
    assert parsed.unrecognised == ()


def test_a_payload_through_json_reads_the_same() -> None:
    body = [campaign_change(), device_change()]
    assert parse_callback(json.loads(json.dumps(body))) == parse_callback(body)


def test_updates_are_frozen() -> None:
    update = parse_callback(campaign_change()).campaign_updates[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        update.status = "CampaignEnded"  # type: ignore[misc]


# --- flat objects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["campaignId", "upgradeId", "id"])
def test_campaign_id_under_any_documented_key(key: str) -> None:
    parsed = parse_callback({key: "c-1", "status": "CampaignEnded"})
    assert parsed.campaign_updates == (CampaignUpdate(None, "c-1", "CampaignEnded", None),)


def test_campaign_id_precedence_campaignid_then_upgradeid_then_id() -> None:
    body = {
        "id": "from-id",
        "upgradeId": "from-upgrade",
        "campaignId": "from-campaign",
        "status": "s",
    }
    assert parse_callback(body).campaign_updates[0].campaign_id == "from-campaign"
    del body["campaignId"]
    assert parse_callback(body).campaign_updates[0].campaign_id == "from-upgrade"


def test_empty_campaign_id_falls_through_to_the_next_key() -> None:
    parsed = parse_callback({"campaignId": "", "id": "c-2", "status": "s"})
    assert parsed.campaign_updates[0].campaign_id == "c-2"


@pytest.mark.parametrize("key", ["status", "upgradeStatus", "campaignStatus"])
def test_status_keys(key: str) -> None:
    assert (
        parse_callback({"campaignId": "c", key: "CampaignEnded"}).campaign_updates[0].status
        == "CampaignEnded"
    )


@pytest.mark.parametrize("key", ["reason", "resultReason", "failureReason"])
def test_reason_keys(key: str) -> None:
    parsed = parse_callback(
        {"campaignId": "c", "deviceId": IMEI, "status": "UpgradeFailed", key: "low battery"}
    )
    assert parsed.device_updates[0].reason == "low battery"


@pytest.mark.parametrize("key", ["timestamp", "updatedTime", "time"])
def test_time_keys_keep_thingspace_format(key: str) -> None:
    parsed = parse_callback(
        {"campaignId": "c", "status": "s", key: " 2026-11-26 09:00:00.007 +0000 UTC "}
    )
    assert parsed.campaign_updates[0].at == "2026-11-26 09:00:00.007 +0000 UTC"


def test_epoch_time_as_number_becomes_text() -> None:
    assert parse_callback(
        {"campaignId": "c", "status": "s", "timestamp": 1795683600000}
    ).campaign_updates[0].at == ("1795683600000")


def test_unusable_time_is_none_not_an_error() -> None:
    for when in (1.5, True, {"t": 1}, "x" * 65, -1):
        parsed = parse_callback({"campaignId": "c", "status": "s", "timestamp": when})
        assert parsed.campaign_updates[0].at is None


def test_reason_is_cut_to_1000_characters() -> None:
    parsed = parse_callback(
        {"campaignId": "c", "deviceId": IMEI, "status": "UpgradeFailed", "reason": "r" * 5000}
    )
    assert parsed.device_updates[0].reason == "r" * MAX_REASON


def test_numeric_reason_is_kept_as_text_other_types_dropped() -> None:
    def reason(value: Any) -> str | None:
        body = {"campaignId": "c", "deviceId": IMEI, "status": "UpgradeFailed", "reason": value}
        return parse_callback(body).device_updates[0].reason

    assert reason(504) == "504"
    assert reason({"code": 1}) is None
    assert reason(True) is None
    assert reason("   ") is None


def test_values_are_trimmed() -> None:
    parsed = parse_callback(
        {
            "accountName": f" {ACC} ",
            "campaignId": " c ",
            "deviceId": f" {IMEI} ",
            "status": " UpgradeSuccess ",
        }
    )
    assert parsed.device_updates == (DeviceUpdate(ACC, "c", IMEI, "UpgradeSuccess", None, None),)


def test_fifteen_digit_integer_device_id_is_accepted() -> None:
    parsed = parse_callback({"campaignId": "c", "deviceId": int(IMEI), "status": "UpgradeSuccess"})
    assert parsed.device_updates[0].device_id == IMEI


def test_device_id_keeps_leading_zeros() -> None:
    parsed = parse_callback(
        {"campaignId": "c", "deviceId": "012345678901234", "status": "UpgradeSuccess"}
    )
    assert parsed.device_updates[0].device_id == "012345678901234"


def test_unknown_statuses_are_passed_on() -> None:
    # The status lists are incomplete in every source: the caller decides what a status means.
    assert (
        parse_callback({"campaignId": "c", "status": "SomethingNew"}).campaign_updates[0].status
        == "SomethingNew"
    )


def test_unknown_fields_are_ignored() -> None:
    parsed = parse_callback(campaign_change(extra={"nested": {"status": "ok"}}, firmware="1.2"))
    assert parsed.campaign_updates == (CampaignUpdate(ACC, CAMPAIGN, "CampaignScheduled", WHEN),)
    assert parsed.unrecognised == ()


# --- deviceList -----------------------------------------------------------------------------------


def report_item(imei: str, status: str = "UpgradeSuccess", **extra: Any) -> dict[str, Any]:
    return {
        "deviceId": imei,
        "status": status,
        "resultReason": "" if status == "UpgradeSuccess" else "RovaClientDownloadFailed",
        "updatedTime": WHEN,
        "recentAttemptTime": "",
        "nextAttemptTime": "",
        **extra,
    }


def test_device_list_beside_a_campaign_id() -> None:
    parsed = parse_callback(
        {
            "accountName": ACC,
            "campaignId": CAMPAIGN,
            "deviceList": [report_item(IMEI), report_item(IMEI2, "UpgradeFailed")],
        }
    )
    assert parsed.device_updates == (
        DeviceUpdate(ACC, CAMPAIGN, IMEI, "UpgradeSuccess", None, WHEN),
        DeviceUpdate(ACC, CAMPAIGN, IMEI2, "UpgradeFailed", "RovaClientDownloadFailed", WHEN),
    )
    assert parsed.campaign_updates == ()
    assert parsed.unrecognised == ()


def test_device_list_items_inherit_the_outer_time_when_they_have_none() -> None:
    parsed = parse_callback(
        {
            "campaignId": "c",
            "timestamp": "outer",
            "deviceList": [{"deviceId": IMEI, "status": "UpgradeScheduled"}],
        }
    )
    assert parsed.device_updates[0].at == "outer"


def test_device_list_item_may_name_its_own_campaign() -> None:
    parsed = parse_callback(
        {
            "campaignId": "outer",
            "deviceList": [report_item(IMEI, campaignId="inner"), report_item(IMEI2)],
        }
    )
    assert [d.campaign_id for d in parsed.device_updates] == ["inner", "outer"]


def test_device_list_item_id_is_not_a_campaign_id() -> None:
    parsed = parse_callback({"campaignId": "outer", "deviceList": [report_item(IMEI, id="row-7")]})
    assert parsed.device_updates[0].campaign_id == "outer"


def test_campaign_status_with_a_device_list_gives_both() -> None:
    parsed = parse_callback(
        {"campaignId": "c", "status": "CampaignEnded", "deviceList": [report_item(IMEI)]}
    )
    assert parsed.campaign_updates == (CampaignUpdate(None, "c", "CampaignEnded", None),)
    assert [d.device_id for d in parsed.device_updates] == [IMEI]


def test_bad_device_list_items_are_set_aside_the_rest_read() -> None:
    no_status = {"deviceId": IMEI2}
    parsed = parse_callback(
        {"campaignId": "c", "deviceList": [report_item(IMEI), no_status, "356938035643809", 7]}
    )
    assert [d.device_id for d in parsed.device_updates] == [IMEI]
    assert parsed.unrecognised == (no_status, "356938035643809", 7)


def test_a_status_inside_a_device_list_is_never_a_campaign_status() -> None:
    nothing_but_unrecognised({"campaignId": "c", "deviceList": [{"status": "CampaignEnded"}]})


def test_device_list_without_a_campaign_id_is_unrecognised() -> None:
    nothing_but_unrecognised({"accountName": ACC, "deviceList": [report_item(IMEI)]})
    assert parse_callback({"accountName": ACC, "deviceList": [report_item(IMEI)]}).accounts == {ACC}


def test_empty_device_list_with_nothing_else_is_unrecognised() -> None:
    nothing_but_unrecognised({"campaignId": "c", "deviceList": []})


# --- the v1 envelope ------------------------------------------------------------------------------


def test_v1_upgrade_progress() -> None:
    body = v1_envelope(
        "upgradeProgress",
        upgradeProgress={
            "upgradeId": "u-1",
            "deviceId": IMEI,
            "status": "UpgradeSuccess",
            "reason": "done",
        },
    )
    parsed = parse_callback(body)
    assert parsed.device_updates == (
        DeviceUpdate(ACC, "u-1", IMEI, "UpgradeSuccess", "done", None),
    )
    assert parsed.campaign_updates == ()
    # The empty placeholders for the other parts are not "unrecognised": they say nothing.
    assert parsed.unrecognised == ()
    assert parsed.accounts == {ACC}


def test_v1_upgrade_progress_as_a_list() -> None:
    body = v1_envelope(
        "upgradeProgress",
        upgradeProgress=[
            {"upgradeId": "u-1", "deviceId": IMEI, "upgradeStatus": "UpgradeSuccess"},
            {
                "upgradeId": "u-1",
                "deviceId": IMEI2,
                "upgradeStatus": "UpgradeFailed",
                "reason": "x",
            },
        ],
    )
    assert [(d.device_id, d.status) for d in parse_callback(body).device_updates] == [
        (IMEI, "UpgradeSuccess"),
        (IMEI2, "UpgradeFailed"),
    ]


def test_v1_nested_objects_inherit_the_envelope_campaign_and_time() -> None:
    body = {
        "accountName": ACC,
        "upgradeId": "u-9",
        "timestamp": WHEN,
        "type": "UpgradeProgress",  # capitalised: still names upgradeProgress
        "upgradeProgress": {"deviceId": IMEI, "status": "UpgradeScheduled"},
    }
    assert parse_callback(body).device_updates == (
        DeviceUpdate(ACC, "u-9", IMEI, "UpgradeScheduled", None, WHEN),
    )


def test_v1_nested_campaign_status() -> None:
    body = v1_envelope(
        "upgradeScheduled",
        upgradeScheduled={"upgradeId": "u-1", "status": "Queued", "startDate": "2026-12-01"},
    )
    assert parse_callback(body).campaign_updates == (CampaignUpdate(ACC, "u-1", "Queued", None),)


def test_v1_nested_device_list() -> None:
    body = v1_envelope(
        "upgradeScheduled",
        upgradeScheduled={
            "upgradeId": "u-1",
            "deviceList": [{"deviceId": IMEI, "status": "Accepted"}],
        },
    )
    assert parse_callback(body).device_updates == (
        DeviceUpdate(ACC, "u-1", IMEI, "Accepted", None, None),
    )


def test_v1_upgrade_scheduled_without_statuses_is_unrecognised_but_names_the_account() -> None:
    # The documented upgradeScheduled part has no status: a hint to re-read, nothing more.
    body = v1_envelope(
        "upgradeScheduled",
        upgradeScheduled={
            "firmwareName": "fw",
            "upgradeId": "u-1",
            "startDate": "2026-12-01",
            "deviceList": [IMEI],
        },
    )
    parsed = parse_callback(body)
    assert (parsed.campaign_updates, parsed.device_updates) == ((), ())
    assert parsed.unrecognised == (body,)
    assert parsed.accounts == {ACC}


def test_v1_typed_part_that_fails_is_set_aside_beside_the_parts_that_work() -> None:
    bad = {"upgradeId": "u-1", "deviceId": "not-an-imei", "status": "UpgradeSuccess"}
    body = v1_envelope(
        "upgradeProgress",
        upgradeProgress=bad,
        upgradeScheduled={"upgradeId": "u-1", "status": "Queued"},
    )
    parsed = parse_callback(body)
    assert parsed.campaign_updates == (CampaignUpdate(ACC, "u-1", "Queued", None),)
    assert parsed.unrecognised == (bad,)


def test_v1_firmware_list_alone_is_unrecognised() -> None:
    body = v1_envelope(
        "firmwareList",
        firmwareList=[
            {"firmwareName": "fw", "fromVersion": "1", "toVersion": "2", "make": "m", "model": "x"}
        ],
    )
    nothing_but_unrecognised(body)
    assert parse_callback(body).accounts == {ACC}


def test_nesting_is_read_one_level_only() -> None:
    deep = {"accountName": ACC, "outer": {"inner": {"campaignId": "c", "status": "s"}}}
    nothing_but_unrecognised(deep)


def test_a_flat_object_does_not_read_its_nested_objects() -> None:
    # Unrelated nested objects must not borrow the campaign id and pose as its status.
    parsed = parse_callback(
        {"campaignId": "c", "status": "CampaignEnded", "meta": {"status": "ok"}}
    )
    assert parsed.campaign_updates == (CampaignUpdate(None, "c", "CampaignEnded", None),)


# --- arrays ---------------------------------------------------------------------------------------


def test_array_mixing_shapes() -> None:
    body = [
        campaign_change(),
        [device_change(IMEI), device_change(IMEI2)],
        v1_envelope(
            "upgradeProgress",
            upgradeProgress={"upgradeId": "u-1", "deviceId": IMEI, "status": "UpgradeSuccess"},
        ),
        "noise",
        {"hello": "world"},
    ]
    parsed = parse_callback(body)
    assert len(parsed.campaign_updates) == 1
    assert [(d.campaign_id, d.device_id) for d in parsed.device_updates] == [
        (CAMPAIGN, IMEI),
        (CAMPAIGN, IMEI2),
        ("u-1", IMEI),
    ]
    assert parsed.unrecognised == ("noise", {"hello": "world"})


def test_arrays_are_read_one_level_deep() -> None:
    too_deep = [campaign_change()]
    parsed = parse_callback([[too_deep], [campaign_change()]])
    assert len(parsed.campaign_updates) == 1
    assert parsed.unrecognised == (too_deep,)


def test_empty_array_says_nothing() -> None:
    assert parse_callback([]) == ParsedCallback((), (), (), frozenset())
    assert parse_callback([[]]) == ParsedCallback((), (), (), frozenset())


# --- what is set aside ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [None, True, 0, 1.5, "CampaignEnded", {}, {"status": "CampaignEnded"}]
)
def test_scalars_and_objects_without_campaign_id(body: Any) -> None:
    nothing_but_unrecognised(body)


@pytest.mark.parametrize(
    "change",
    [
        {"status": 3},  # numeric status
        {"status": True},
        {"status": ["UpgradeFailed"]},
        {"status": "x" * 101},  # absurd status
        {"status": "Upgrade\nFailed"},
        {"status": "   "},
        {"status": None},
        {"status": ""},
        {"campaignId": 42},  # a present but unusable id is not replaced by `id`
        {"campaignId": "c" * 129},
        {"campaignId": "\x00c"},
        {"deviceId": "99001390783557A"},  # not digits
        {"deviceId": "9" * 33},
        {"deviceId": 99001390783557},  # a 14-digit number: a lost leading zero or junk
        {"deviceId": 9.9001390783557e14},
        {"deviceId": True},
        {"deviceId": None},  # device-level still: its status is not the campaign's
        {"deviceId": ""},
    ],
)
def test_bad_device_change_is_unrecognised(change: dict[str, Any]) -> None:
    nothing_but_unrecognised(device_change(**change))


def test_device_status_type_without_device_id_is_not_a_campaign_status() -> None:
    body = device_change()
    del body["deviceId"]
    nothing_but_unrecognised(body)


def test_campaign_id_at_the_limit_is_accepted() -> None:
    assert (
        parse_callback({"campaignId": "c" * 128, "status": "s"}).campaign_updates[0].campaign_id
        == "c" * 128
    )


def test_status_at_the_limit_is_accepted() -> None:
    assert (
        parse_callback({"campaignId": "c", "status": "s" * 100}).campaign_updates[0].status
        == "s" * 100
    )


def test_one_bad_item_does_not_spoil_the_rest() -> None:
    bad = device_change(status=7)
    parsed = parse_callback([device_change(), bad, campaign_change()])
    assert len(parsed.device_updates) == 1
    assert len(parsed.campaign_updates) == 1
    assert parsed.unrecognised == (bad,)


# --- accounts -------------------------------------------------------------------------------------


def test_accounts_from_deep_inside_an_unknown_shape() -> None:
    body = {"event": {"data": [{"meta": {"accountName": ACC}}]}}
    parsed = parse_callback(body)
    assert parsed.unrecognised == (body,)
    assert parsed.accounts == {ACC}


def test_accounts_from_every_part() -> None:
    parsed = parse_callback(
        [
            campaign_change(),
            device_change(accountName="0000000000-00001"),
            {"accountName": "1111111111-00001"},
        ]
    )
    assert parsed.accounts == {ACC, "0000000000-00001", "1111111111-00001"}


@pytest.mark.parametrize(
    "account", ["", "   ", "../../campaigns", "a b", "0" * 65, 642233522, None]
)
def test_unusable_account_names_are_dropped(account: Any) -> None:
    parsed = parse_callback(campaign_change(accountName=account))
    assert parsed.accounts == frozenset()
    assert parsed.campaign_updates[0].account is None


def test_device_list_items_name_their_own_account() -> None:
    parsed = parse_callback(
        {
            "accountName": ACC,
            "campaignId": "c",
            "deviceList": [report_item(IMEI, accountName="9-9")],
        }
    )
    assert parsed.device_updates[0].account == "9-9"
    assert parsed.accounts == {ACC, "9-9"}


def test_account_search_is_bounded() -> None:
    # A hostile payload cannot make the search walk forever (here: a structure containing
    # itself, which JSON cannot express but the contract "never raises" still covers).
    loop: list[Any] = []
    loop.append(loop)
    loop.append({"accountName": ACC})
    parsed = parse_callback({"x": loop})
    assert parsed.accounts == {ACC}


# --- never raises ---------------------------------------------------------------------------------


def test_a_parser_bug_sets_the_payload_aside(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: Any, value: Any) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(parsing._Parser, "item", broken)
    parsed = parse_callback(campaign_change())
    assert parsed == ParsedCallback((), (), (campaign_change(),), frozenset())
    assert "callback parser failed" in caplog.text


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=40,
)


# Payloads shaped like the real ones, each value usually good and sometimes junk, so most
# examples reach the deep paths (and the junk reaches every check).
def good_or_junk(good: list[Any], edge: list[Any]) -> st.SearchStrategy[Any]:
    """Good 70% of the time (one_of alone would flatten and favour the many junk branches)."""
    junk = st.sampled_from(edge) | json_scalars
    return st.tuples(st.integers(0, 9), st.sampled_from(good), junk).map(
        lambda t: t[1] if t[0] < 7 else t[2]
    )


accounts = good_or_junk([ACC, "0000000000-00001"], ["", " ", "a/b"])
campaign_ids = good_or_junk([CAMPAIGN, "u-1"], ["", "c" * 129, 42])
statuses = good_or_junk(["UpgradeSuccess", "UpgradeFailed", "CampaignEnded"], ["", "s" * 101, 3])
device_ids = good_or_junk(
    [IMEI, IMEI2, " 990013907835573 ", int(IMEI)], ["99001390783557A", 99001390783557, 10**15, None]
)
reasons = good_or_junk(["RovaClientDownloadFailed", ""], ["r" * 1500, 504])
times = good_or_junk([WHEN], ["", 1795683600000])
kinds = good_or_junk(
    ["CampaignStatus", "DeviceStatus", "upgradeProgress", "upgradeScheduled"], [""]
)
device_item = st.fixed_dictionaries(
    {"deviceId": device_ids, "status": statuses},
    optional={
        "resultReason": reasons,
        "updatedTime": times,
        "campaignId": campaign_ids,
        "id": campaign_ids,
    },
)
flat = st.fixed_dictionaries(
    {"campaignId": campaign_ids, "status": statuses},
    optional={
        "deviceId": device_ids,
        "reason": reasons,
        "accountName": accounts,
        "timestamp": times,
        "type": kinds,
        "deviceList": st.lists(device_item | json_scalars, max_size=4),
    },
)
envelope = st.fixed_dictionaries(
    {"accountName": accounts, "type": kinds},
    optional={
        "upgradeProgress": flat | st.lists(flat, max_size=3) | json_scalars,
        "upgradeScheduled": flat | json_scalars,
        "firmwareList": st.lists(
            st.dictionaries(st.text(max_size=8), json_scalars, max_size=3), max_size=2
        ),
        "upgradeId": campaign_ids,
        "timestamp": times,
    },
)
plausible = st.one_of(
    flat,
    envelope,
    st.lists(
        st.one_of(flat, envelope, json_values, st.lists(flat | envelope, max_size=3)), max_size=5
    ),
)


def check_invariants(body: Any, parsed: ParsedCallback) -> None:
    assert isinstance(parsed, ParsedCallback)
    for update in (*parsed.campaign_updates, *parsed.device_updates):
        assert 0 < len(update.campaign_id) <= 128
        assert 0 < len(update.status) <= 100
        assert update.account is None or update.account in parsed.accounts
        assert update.at is None or 0 < len(update.at) <= 64
    for device in parsed.device_updates:
        assert device.device_id.isascii() and device.device_id.isdigit()
        assert device.reason is None or 0 < len(device.reason) <= MAX_REASON
    items = body if isinstance(body, list) else [body]
    if items and not (parsed.campaign_updates or parsed.device_updates):
        # Nothing read from a non-empty payload: it must show up as unrecognised (a re-read).
        assert parsed.unrecognised or all(item == [] for item in items)


@settings(max_examples=300)
@given(json_values)
def test_arbitrary_json_never_raises(body: Any) -> None:
    check_invariants(body, parse_callback(body))


@settings(max_examples=300)
@given(plausible)
def test_plausible_payloads_never_raise(body: Any) -> None:
    check_invariants(body, parse_callback(body))


words = st.text(
    alphabet=st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=100
)


@settings(max_examples=200)
@given(
    st.lists(
        st.tuples(
            words,
            st.text(alphabet="0123456789", min_size=15, max_size=15),
            words,
            st.text(max_size=1500),
        ),
        max_size=20,
    )
)
def test_well_formed_device_changes_are_all_read_exactly(
    changes: list[tuple[str, str, str, str]],
) -> None:
    body = [
        {
            "accountName": ACC,
            "campaignId": c,
            "deviceId": d,
            "status": s,
            "reason": r,
            "type": "DeviceStatus",
        }
        for c, d, s, r in changes
    ]
    parsed = parse_callback(json.loads(json.dumps(body)))
    assert parsed.device_updates == tuple(
        DeviceUpdate(ACC, c, d, s, r.strip()[:MAX_REASON] or None, None) for c, d, s, r in changes
    )
    assert parsed.unrecognised == ()
