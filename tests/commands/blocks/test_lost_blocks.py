"""What a lost campaign looks like: the card, the thread reply and the requester's message."""

from __future__ import annotations

from commands.blocks import campaign_card, lost_reply, requester_dm
from storage.model import Campaign
from storage.states import CampaignState
from tests.commands.blocks.test_blocks import (
    COUNTS,
    HOSTILE,
    PERMALINK,
    check_message,
    make_campaign,
)
from tests.support.blocks import all_text, check_escaped

THINGSPACE_ID = "f858b8c4-2153-11ec-8c44-aeb16d1aa652"


def lost(**overrides: object) -> Campaign:
    fields: dict[str, object] = {
        "state": CampaignState.LOST,
        "thingspace_id": THINGSPACE_ID,
        "error_code": "CAMPAIGN_NOT_FOUND",
        "error_message": f"Campaign {THINGSPACE_ID} not found {HOSTILE}",
        "name": HOSTILE,
    }
    fields.update(overrides)
    return make_campaign(**fields)


def test_every_lost_message_is_valid_escaped_and_says_what_to_check() -> None:
    for sandbox in (False, True):
        campaign = lost(sandbox=sandbox)
        for msg in (
            lost_reply(campaign),
            requester_dm(campaign, "lost", permalink=PERMALINK),
            campaign_card(campaign, counts=COUNTS, last_update=None, sandbox=sandbox, decisions=[]),
        ):
            check_message(msg)
            check_escaped(msg)
            text = all_text(msg)
            assert THINGSPACE_ID in text and "CAMPAIGN_NOT_FOUND" in text
            assert "Nothing was cancelled" in text
            if sandbox:
                assert "sandbox forgets its campaigns" in text and "THINGSPACE_ACCOUNT" not in text
            else:
                assert "THINGSPACE_ACCOUNT" in text and "0642233522-00001" in text
                assert "sandbox forgets" not in text


def test_the_card_of_a_lost_campaign_keeps_its_last_counts() -> None:
    text = all_text(campaign_card(lost(), counts=COUNTS, last_update=None, sandbox=False, decisions=[]))
    assert "Lost: ThingSpace no longer knows this campaign" in text
    assert "*succeeded*\n5 · " in text and "*failed*\n2 · " in text
