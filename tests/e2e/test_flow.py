"""The core flow end to end: /fota schedule → approval card → exactly one campaign.

Through the real HTTP app with Slack-signed requests, a recording stand-in for Slack's Web API
on a real local port, and the sandbox behind a recording transport.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from commands import blocks
from storage.states import CampaignState
from tests.support.stack import ANN, BOB, EVE, FIRMWARE, REQUESTER, Stack, running_stack

IMEIS = ["354658090353977", "490154203237518", "356938035643809"]
SCHEDULE = (
    f"schedule firmware={FIRMWARE} from=SR1.2.0.0-10512 to=SR1.2.0.0-10657 "
    f"start=today end=+3d window=18-22 devices={','.join(IMEIS)} name=\"Smart FOTA\""
)


def action_ids(message_blocks: list[dict]) -> set[str]:
    return {e.get("action_id") for b in message_blocks if b.get("type") == "actions" for e in b["elements"]}


async def request_campaign(stack: Stack, text: str = SCHEDULE) -> str:
    response, response_url = await stack.slash(text)
    assert response.status_code == 200
    await stack.settle()
    return response_url


async def test_nothing_reaches_thingspace_before_approval_then_exactly_one_campaign(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        response, response_url = await stack.slash(SCHEDULE)
        assert response.status_code == 200
        assert "Checking your request for 3 devices" in response.text
        await stack.settle()

        card = stack.root()
        assert "Ref FB-1" in json.dumps(card.blocks)
        tag = f"FB-1·{stack.rt.store.installation_id()}"  # the installation id: this database's own
        assert f"Smart FOTA [{tag}]" in json.dumps(card.blocks, ensure_ascii=False)
        confirmation = stack.answers(response_url)
        assert confirmation and "FB-1" in json.dumps(confirmation[-1])
        assert "slack.com/archives" in json.dumps(confirmation[-1]) or "/archives/" in json.dumps(confirmation[-1])
        assert stack.thingspace.schedule_posts() == []

        response, _ = await stack.click(blocks.ACTION_APPROVE, user=ANN)
        assert response.status_code == 200
        await stack.settle()

        [post] = stack.thingspace.schedule_posts()
        assert post.path == "/api/fota/v3/campaigns/firmware/0000000000-00001"
        assert post.json() == {
            "campaignName": f"Smart FOTA [{tag}]",
            "firmwareName": FIRMWARE,
            "firmwareFrom": "SR1.2.0.0-10512",
            "firmwareTo": "SR1.2.0.0-10657",
            "protocol": "LWM2M",
            "startDate": "2026-11-26",
            "endDate": "2026-11-29",
            "campaignTimeWindowList": [{"startTime": 18, "endTime": 22}],
            "deviceList": IMEIS,
            "autoAssignLicenseFlag": False,
            "autoAddDevicesFlag": False,
        }
        assert post.headers["authorization"].startswith("Bearer ")
        assert post.headers["vz-m2m-token"]
        assert post.headers["content-type"] == "application/json"

        campaign = stack.rt.store.find_campaign("FB-1")
        assert campaign.state is CampaignState.SUBMITTED
        assert campaign.thingspace_id and campaign.make == "SEQUANS Communications"
        card_text = json.dumps(stack.root().blocks)
        assert blocks.ACTION_APPROVE not in action_ids(stack.root().blocks)
        assert f"<@{ANN}>" in card_text
        thread = " ".join(stack.thread_texts())
        assert "accepted by thingspace" in thread.lower() and campaign.thingspace_id in thread
        dms = stack.standin.messages(stack.standin.dm_channel(REQUESTER))
        assert any("FB-1" in m.text for m in dms)


async def test_the_requester_and_outsiders_cannot_approve(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
        for user, words in ((REQUESTER, "cannot approve"), (EVE, "not one of them")):
            response, response_url = await stack.click(blocks.ACTION_APPROVE, user=user)
            assert response.status_code == 200
            await stack.settle()
            assert words in json.dumps(stack.answers(response_url))
        assert stack.rt.store.decisions(1) == []
        assert stack.rt.store.campaign(1).state is CampaignState.PENDING_APPROVAL
        assert stack.thingspace.schedule_posts() == []


async def test_two_approvals_at_the_same_moment_submit_once(tmp_path: Path) -> None:
    async with running_stack(tmp_path, FOTA_REQUIRED_APPROVALS="1") as stack:
        await request_campaign(stack)
        card = stack.root().to_slack()
        results = await asyncio.gather(
            stack.click(blocks.ACTION_APPROVE, user=ANN, message=card),
            stack.click(blocks.ACTION_APPROVE, user=BOB, message=card),
            stack.click(blocks.ACTION_APPROVE, user=ANN, message=card),  # a double click
        )
        assert all(r.status_code == 200 for r, _ in results)
        await stack.settle()
        assert len(stack.thingspace.schedule_posts()) == 1
        assert len(stack.sandbox.schedule_requests) == 1
        audit = [row["to_state"] for row in stack.rt.store.audit(1)]
        assert audit.count("submitting") == 1 and audit.count("submitted") == 1


async def test_two_required_approvals_wait_for_the_second_approver(tmp_path: Path) -> None:
    async with running_stack(tmp_path, FOTA_REQUIRED_APPROVALS="2") as stack:
        await request_campaign(stack)
        _, first = await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        assert "1 of 2" in json.dumps(stack.answers(first))
        assert stack.thingspace.schedule_posts() == []
        assert "1 of 2" in json.dumps(stack.root().blocks)
        _, again = await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        assert "already approved" in json.dumps(stack.answers(again))
        assert stack.thingspace.schedule_posts() == []
        await stack.click(blocks.ACTION_APPROVE, user=BOB)
        await stack.settle()
        assert len(stack.thingspace.schedule_posts()) == 1


async def test_a_click_on_a_card_whose_request_changed_is_refused(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
        card = stack.root().to_slack()
        # The request changes behind the card (e.g. pre-flight narrowed the devices).
        # (Flip the first hex digit: prefixing a fixed 'f' changes nothing when the hash starts with f.)
        stack.rt.store.db.execute(
            "UPDATE campaigns SET content_hash = "
            "(CASE WHEN substr(content_hash, 1, 1) = 'f' THEN 'e' ELSE 'f' END) || substr(content_hash, 2)"
        )
        stack.rt.store.db.conn.commit()
        _, response_url = await stack.click(blocks.ACTION_APPROVE, user=ANN, message=card)
        await stack.settle()
        assert "changed after this card was shown" in json.dumps(stack.answers(response_url))
        assert stack.thingspace.schedule_posts() == []


async def test_a_thingspace_400_is_shown_word_for_word(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
        stack.sandbox.fail_next(
            "/api/fota/v3/campaigns/firmware",
            400,
            error_code="INVALID_PARAMETER",
            error_message="Invalid device id format",
        )
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        campaign = stack.rt.store.campaign(1)
        assert campaign.state is CampaignState.SUBMIT_FAILED
        assert (campaign.error_code, campaign.error_message) == ("INVALID_PARAMETER", "Invalid device id format")
        thread = " ".join(stack.thread_texts())
        assert "INVALID_PARAMETER" in thread and "Invalid device id format" in thread
        dms = " ".join(m.text for m in stack.standin.messages(stack.standin.dm_channel(REQUESTER)))
        assert "Invalid device id format" in dms


async def test_bad_command_text_gets_every_problem_and_changes_nothing(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        response, _ = await stack.slash("schedule firmware=x from=a to=a protocol=zigbee devices=123 windw=1-2")
        assert response.status_code == 200
        body = response.text
        for fragment in ("protocol", "zigbee", "devices", "123", "windw", "window"):
            assert fragment in body
        await stack.settle()
        assert stack.rt.store.list_campaigns(scope="all") == []
        assert stack.standin.calls_to("chat.postMessage") == []


async def test_help_through_the_signed_http_app(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        response, _ = await stack.slash("help")
        assert response.status_code == 200
        assert "/fota schedule" in response.text


async def test_a_bad_signature_is_refused_with_401(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        from tests.support.slack import sign, slash_command_body

        body = slash_command_body("help")
        headers = sign(body, "not-the-secret")
        response = await stack.http.post("/slack/events", content=body, headers=headers)
        assert response.status_code == 401
        stale = sign(body, "8f742231b10e8888abcd99yyyzzz85a5", timestamp=1_600_000_000)
        response = await stack.http.post("/slack/events", content=body, headers=stale)
        assert response.status_code == 401


@pytest.mark.parametrize("user", [REQUESTER])
async def test_the_requester_may_withdraw_before_the_decision(tmp_path: Path, user: str) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
        card_before = stack.root().to_slack()
        _, response_url = await stack.click(blocks.ACTION_WITHDRAW, user=ANN)
        await stack.settle()
        assert "Only the requester" in json.dumps(stack.answers(response_url))
        await stack.click(blocks.ACTION_WITHDRAW, user=user)
        await stack.settle()
        assert stack.rt.store.campaign(1).state is CampaignState.WITHDRAWN
        assert "withdrawn" in json.dumps(stack.root().blocks).lower()
        # A stale copy of the card still shows Approve: the click changes nothing.
        _, late = await stack.click(blocks.ACTION_APPROVE, user=ANN, message=card_before)
        await stack.settle()
        assert "withdrawn already" in json.dumps(stack.answers(late))
        assert stack.thingspace.schedule_posts() == []


async def test_a_damaged_or_unknown_button_gets_a_plain_answer_and_changes_nothing(tmp_path: Path) -> None:
    from tests.support.slack import block_action_body

    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
        for action_id, value in ((blocks.ACTION_APPROVE, "garbage"), ("fota_from_an_old_version", "x")):
            response_url = stack.standin.new_response_url(user_id=ANN)
            body = block_action_body(action_id, value, user_id=ANN, channel_id="C0APPROVALS",
                                     message_ts=stack.root().ts, response_url=response_url)
            response = await stack.post_slack(body)
            assert response.status_code == 200
            await stack.settle()
            assert "damaged or out of date" in json.dumps(stack.answers(response_url))
        assert stack.rt.store.decisions(1) == [] and stack.thingspace.schedule_posts() == []


async def test_a_signed_payload_without_a_user_gets_400_not_500(tmp_path: Path) -> None:
    from urllib.parse import urlencode

    async with running_stack(tmp_path) as stack:
        command = urlencode({"command": "/fota", "text": "help", "team_id": "T0FOTA", "channel_id": "C1"}).encode()
        assert (await stack.post_slack(command)).status_code == 400
        click = urlencode({"payload": json.dumps({"type": "block_actions", "actions": []})}).encode()
        assert (await stack.post_slack(click)).status_code == 400
        assert stack.rt.store.list_campaigns(scope="all") == []
