"""The model on the ground floor: one hash of what is sent, one table of state words, one list
of ThingSpace's campaign statuses."""

from __future__ import annotations

import datetime as dt
import hashlib

from bot.thingspace.client import (
    ACTIVE_CAMPAIGN_STATUSES,
    CAMPAIGN_STATUSES,
    ENDED_CAMPAIGN_STATUSES,
)
from bot.workflow.campaigns import describe
from commands.blocks.cards import STATE_LABELS, state_parts
from storage.model import TimeWindow, content_hash, request_hash
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
