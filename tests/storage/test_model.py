"""The model on the ground floor: one hash of what is sent, one table of state words, one list
of ThingSpace's campaign statuses."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.thingspace.client import (
    ACTIVE_CAMPAIGN_STATUSES,
    CAMPAIGN_STATUSES,
    ENDED_CAMPAIGN_STATUSES,
)
from bot.workflow.campaigns import describe
from commands.blocks.cards import STATE_LABELS, state_parts
from storage.model import (
    Campaign,
    TimeWindow,
    content_hash,
    device_list_json,
    joined_device_lists,
    request_hash,
    request_hash_of_list,
)
from storage.states import STATE_WORDS, THINGSPACE_ENDED, THINGSPACE_LIVE, CampaignState
from storage.store import Store

S = CampaignState


def test_the_content_hash_keeps_its_serialisation() -> None:
    """Approvals on record are bound to hashes taken this way: a change would make every
    approval of a waiting request stop counting."""
    fields = {"b": [1, 2], "a": "é", "c": {"y": None, "x": True}}
    expected = hashlib.sha256(b'{"a":"\\u00e9","b":[1,2],"c":{"x":true,"y":null}}').hexdigest()
    assert content_hash(fields) == expected


def test_a_stored_request_is_hashed_as_what_it_sends(store: Store, clock) -> None:
    campaign = store.create_campaign(
        requester="U_REQ",
        account="0000000000-00001",
        firmware_name="FW",
        firmware_from="A",
        firmware_to="B",
        protocol="LWM2M",
        start_date=dt.date(2026, 11, 27),
        end_date=dt.date(2026, 11, 30),
        windows=(TimeWindow(18, 22),),
        name="Q3",
        devices=["354658090353977", "490154203237518"],
        sandbox=True,
        expires_at=dt.datetime(2026, 11, 27, 9, tzinfo=dt.UTC),
    )
    devices = store.device_ids(campaign.id)
    assert campaign.content_hash == request_hash(campaign, devices)
    assert campaign.content_hash == content_hash(
        {"account": campaign.account, **campaign.schedule_body(devices)}
    )
    # Another device list, another hash.
    assert request_hash(campaign, devices[:1]) != campaign.content_hash


WINDOWS = st.lists(
    st.tuples(st.integers(0, 23), st.integers(1, 24)).map(lambda w: TimeWindow(*w)), max_size=3
).map(tuple)
# Any text a requester could put in a name or a device list, quotes and the key itself included.
TEXT = st.text(max_size=30) | st.sampled_from(['"deviceList":[]', '\\"deviceList\\":[]', "é\u2028"])


@settings(max_examples=200)
@given(
    name=st.none() | TEXT,
    account=TEXT,
    windows=WINDOWS,
    licence_auto=st.booleans(),
    installation=st.sampled_from(["", "3f2a"]),
    devices=st.lists(TEXT, max_size=12),
    cuts=st.lists(st.integers(0, 12), max_size=4),
)
def test_a_list_serialised_beforehand_hashes_as_the_request_does(
    name: str | None,
    account: str,
    windows: tuple[TimeWindow, ...],
    licence_auto: bool,
    installation: str,
    devices: list[str],
    cuts: list[int],
) -> None:
    """A large request serialises its device list a chunk at a time before its last
    transaction; the hash must be the very one `request_hash` takes (approvals are bound to it)."""
    campaign = dataclasses.replace(
        REQUEST,
        name=name,
        account=account,
        windows=windows,
        licence_auto=licence_auto,
        installation=installation,
    )
    bounds = [0, *sorted(min(c, len(devices)) for c in cuts), len(devices)]
    parts = [device_list_json(devices[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    assert joined_device_lists(parts) == device_list_json(devices)
    assert request_hash_of_list(campaign, joined_device_lists(parts)) == request_hash(campaign, devices)


REQUEST = Campaign(
    id=12,
    state=S.PENDING_APPROVAL,
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
    device_count=0,
    content_hash="",
    sandbox=True,
    created_at=dt.datetime(2026, 11, 26, 9, tzinfo=dt.UTC),
    expires_at=dt.datetime(2026, 11, 27, 9, tzinfo=dt.UTC),
)


def test_every_state_has_words_and_an_emoji() -> None:
    assert set(STATE_WORDS) == set(CampaignState) == set(STATE_LABELS)
    for state, words in STATE_WORDS.items():
        assert words.heading and words.inline, state
        assert words.heading[0].isupper() and not words.inline[0].isupper(), state
        assert state_parts(state)[1] == words.heading
        assert describe(state) == words.inline


def test_a_refusal_names_a_thingspace_status_in_words() -> None:
    assert describe(S.SCHEDULED) == "scheduled at ThingSpace"
    assert "Campaign" not in describe(S.ENDED)


def test_one_list_of_thingspace_campaign_statuses() -> None:
    thingspace = {state for state in CampaignState if state.is_thingspace}
    assert set(THINGSPACE_LIVE) | set(THINGSPACE_ENDED) == thingspace
    assert not set(THINGSPACE_LIVE) & set(THINGSPACE_ENDED)
    assert all(not state.is_terminal for state in THINGSPACE_LIVE)
    assert all(state.is_terminal for state in THINGSPACE_ENDED)
    assert ACTIVE_CAMPAIGN_STATUSES == tuple(state.value for state in THINGSPACE_LIVE)
    assert ENDED_CAMPAIGN_STATUSES == tuple(state.value for state in THINGSPACE_ENDED)
    assert set(CAMPAIGN_STATUSES) == {state.value for state in thingspace}
