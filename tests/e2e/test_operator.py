"""Operator commands and the App Home end to end: `/fota status | list | cancel |
firmware | devices` and the Home tab, through the real HTTP app with Slack-signed requests,
the recording Slack stand-in and the sandbox behind a recording transport."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from bot.standins.thingspace import sandbox_imeis
from commands import blocks
from storage.states import CampaignState
from tests.support.slack import app_home_opened_body, block_action_body
from tests.support.stack import ANN, BOB, CHANNEL, EVE, FIRMWARE, REQUESTER, Stack, running_stack

S = CampaignState
IMEIS = sandbox_imeis(3, kind="eligible")
ANSWER_CHANNEL = "C_REQ"  # where the slash commands are typed (tests.support.slack's default)


def schedule_text(imeis: list[str] = IMEIS, name: str = "Smart FOTA") -> str:
    return (
        f"schedule firmware={FIRMWARE} from=SR1.2.0.0-10512 to=SR1.2.0.0-10657 "
        f'start=today end=+3d devices={",".join(imeis)} name="{name}"'
    )


async def request(stack: Stack, *, user: str = REQUESTER, imeis: list[str] = IMEIS) -> None:
    response, _ = await stack.slash(schedule_text(imeis), user=user)
    assert response.status_code == 200
    await stack.settle()


async def request_and_submit(stack: Stack, *, imeis: list[str] = IMEIS) -> int:
    await request(stack, imeis=imeis)
    campaign_id = stack.rt.store.list_campaigns(scope="all", limit=1)[0].id
    root = next(m for m in stack.standin.messages(CHANNEL) if f"FB-{campaign_id}" in json.dumps(m.blocks))
    await stack.click(blocks.ACTION_APPROVE, user=ANN, message=root)
    await stack.settle()
    assert stack.rt.store.campaign(campaign_id).state is S.SUBMITTED
    return campaign_id


async def command(stack: Stack, text: str, *, user: str = REQUESTER) -> dict[str, Any]:
    """Type `/fota text` and return the one ephemeral answer it got on its response_url."""
    response, response_url = await stack.slash(text, user=user)
    assert response.status_code == 200
    await stack.settle()
    answers = stack.answers(response_url)
    assert len(answers) == 1, answers
    assert answers[0].get("response_type", "ephemeral") == "ephemeral"
    return answers[0]


async def click_answer(
    stack: Stack, answer: dict[str, Any], action_id: str, *, user: str, value: str | None = None
) -> list[dict[str, Any]]:
    """Click a button on an ephemeral answer; returns what the bot sent to the click's response_url."""
    response_url = stack.standin.new_response_url(user_id=user)
    body = block_action_body(
        action_id,
        value,
        user_id=user,
        channel_id=ANSWER_CHANNEL,
        message_ts="1700000000.000001",
        message={"type": "message", "ts": "1700000000.000001", "text": answer["text"], "blocks": answer["blocks"]},
        response_url=response_url,
    )
    response = await stack.post_slack(body)
    assert response.status_code == 200
    await stack.settle()
    return stack.answers(response_url)


def text_of(answer: dict[str, Any]) -> str:
    return json.dumps(answer, ensure_ascii=False)


def elements(message_blocks: list[dict[str, Any]], action_id: str) -> list[dict[str, Any]]:
    found = []
    for block in message_blocks:
        for element in [*block.get("elements", []), block.get("accessory") or {}]:
            if element.get("action_id") == action_id:
                found.append(element)
    return found


def deletes(stack: Stack) -> list[Any]:
    return [s for s in stack.thingspace.seen if s.method == "DELETE"]


async def open_home(stack: Stack, user: str) -> dict[str, Any]:
    """Open the Home tab as `user`; returns the view the bot published."""
    before = stack.standin.home_view(user)
    versions = len(before.history) if before else 0
    response = await stack.post_slack(app_home_opened_body(user))
    assert response.status_code == 200
    # Bolt acks an event before running its listener: wait for the publish, then settle.
    await stack.standin.wait_for(
        lambda: (v := stack.standin.home_view(user)) is not None and len(v.history) > versions,
        what=f"the Home tab of {user}",
    )
    await stack.settle()
    view = stack.standin.home_view(user)
    assert view is not None
    return view.to_slack(stack.standin.workspace)


# --- /fota status ----------------------------------------------------------------------------------


async def test_status_shows_the_card_and_a_link_to_the_thread(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request(stack)
        pending = await command(stack, "status FB-1")
        assert "Waiting for approval" in text_of(pending) and "0 of 1 approval" in text_of(pending)
        assert not elements(pending["blocks"], blocks.ACTION_APPROVE)  # decide on the card, not here
        root = stack.root()
        link = f"/archives/{CHANNEL}/p{root.ts.replace('.', '')}"
        assert link in text_of(pending)

        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        campaign = stack.rt.store.campaign(1)
        for ident in ("FB-1", "fb-1", campaign.thingspace_id):
            answer = await command(stack, f"status {ident}")
            assert "Firmware campaign FB-1" in text_of(answer)  # campaign_card, as the thread root
            assert campaign.thingspace_id in text_of(answer) and "Ref FB-1" in text_of(answer)
            assert link in text_of(answer)
        assert len(stack.standin.calls_to("chat.getPermalink")) >= 3


async def test_status_of_an_unknown_campaign_is_a_clear_error(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        answer = await command(stack, "status FB-99")
        assert "No campaign `FB-99`" in text_of(answer) and "/fota list all" in text_of(answer)
        answer = await command(stack, "status 5e1f7c2a-0000-4000-8000-000000000000")
        assert "No campaign" in text_of(answer)


# --- /fota list -------------------------------------------------------------------------------------


async def test_list_is_newest_first_and_pages_with_a_button(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        for _ in range(12):
            await request(stack)
        first = await command(stack, "list all")
        shown = [f"Ref FB-{n}*" for n in range(12, 2, -1)]
        body = text_of(first)
        positions = [body.index(ref) for ref in shown]
        assert positions == sorted(positions)  # newest first
        assert "Ref FB-2*" not in body and "Ref FB-1*" not in body
        assert "Waiting for approval" in body and f"<@{REQUESTER}>" in body and "3 devices" in body
        [next_button] = elements(first["blocks"], blocks.ACTION_LIST_PAGE)
        assert blocks.parse_list_page_value(next_button["value"]) == ("all", 3)

        [second] = await click_answer(stack, first, blocks.ACTION_LIST_PAGE, user=REQUESTER)
        assert second["replace_original"] is True
        assert "Ref FB-2*" in text_of(second) and "Ref FB-1*" in text_of(second)
        assert "Ref FB-3*" not in text_of(second)
        assert not elements(second["blocks"], blocks.ACTION_LIST_PAGE)  # the last page

        mine = await command(stack, "list mine", user=BOB)
        assert "You have not requested any campaign" in text_of(mine)
        active = await command(stack, "list")
        assert "Ref FB-12*" in text_of(active)


# --- /fota cancel -----------------------------------------------------------------------------------


async def test_an_unauthorised_cancel_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_and_submit(stack)
        answer = await command(stack, "cancel FB-1", user=EVE)
        assert "Only the requester" in text_of(answer) and "Nothing changed" in text_of(answer)
        assert not elements(answer["blocks"], blocks.ACTION_CANCEL_CONFIRM)

        # The requester's own prompt, clicked by someone else (a forwarded or forged click):
        # the click is checked again, not only the prompt.
        prompt = await command(stack, "cancel FB-1")
        [refused] = await click_answer(stack, prompt, blocks.ACTION_CANCEL_CONFIRM, user=EVE)
        assert "Only the requester" in text_of(refused)

        assert deletes(stack) == []
        assert stack.rt.store.campaign(1).state is S.SUBMITTED
        assert not any("cancel" in t.lower() for t in stack.thread_texts()[1:])


async def test_cancelling_a_request_waiting_for_approval_withdraws_it_without_thingspace(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request(stack)
        prompt = await command(stack, "cancel FB-1")
        assert "never sent to ThingSpace" in text_of(prompt)
        [button] = elements(prompt["blocks"], blocks.ACTION_CANCEL_CONFIRM)
        assert button["style"] == "danger" and button["confirm"]["style"] == "danger"

        [outcome] = await click_answer(stack, prompt, blocks.ACTION_CANCEL_CONFIRM, user=REQUESTER)
        assert outcome["replace_original"] is True and "withdrawn" in text_of(outcome)
        assert stack.rt.store.campaign(1).state is S.WITHDRAWN
        assert deletes(stack) == [] and stack.thingspace.schedule_posts() == []
        assert "Withdrawn" in json.dumps(stack.root().blocks)
        assert any(f"<@{REQUESTER}> withdrew Ref FB-1" in t for t in stack.thread_texts())
        # No reminder or expiry waits for it any more.
        assert stack.rt.store.next_approval_timer() is None

        # A second click on the same prompt changes nothing.
        [again] = await click_answer(stack, prompt, blocks.ACTION_CANCEL_CONFIRM, user=REQUESTER)
        assert "withdrawn already" in text_of(again)


async def test_an_approver_may_cancel_and_the_thread_and_requester_are_told(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request(stack)
        prompt = await command(stack, "cancel FB-1", user=BOB)
        await click_answer(stack, prompt, blocks.ACTION_CANCEL_CONFIRM, user=BOB)
        assert stack.rt.store.campaign(1).state is S.WITHDRAWN
        assert any(f"<@{BOB}> withdrew Ref FB-1" in t for t in stack.thread_texts())
        assert f"Withdrawn* by <@{BOB}>" in json.dumps(stack.root().blocks)


async def test_a_prompt_for_a_request_does_not_cancel_the_campaign_it_became(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request(stack)
        prompt = await command(stack, "cancel FB-1")  # says: withdraw, nothing was sent
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        [refused] = await click_answer(stack, prompt, blocks.ACTION_CANCEL_CONFIRM, user=REQUESTER)
        assert "sent to ThingSpace after you asked" in text_of(refused)
        assert deletes(stack) == [] and stack.rt.store.campaign(1).state is S.SUBMITTED


async def test_a_cancel_before_the_start_cancels_at_thingspace(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_and_submit(stack)
        campaign = stack.rt.store.campaign(1)
        prompt = await command(stack, "cancel FB-1", user=ANN)
        for words in ("only *before it starts*", "may refuse", "abort", "word for word"):
            assert words in text_of(prompt)
        assert "Keep it" in text_of(prompt)

        [outcome] = await click_answer(stack, prompt, blocks.ACTION_CANCEL_CONFIRM, user=ANN)
        assert "ThingSpace cancelled Ref FB-1" in text_of(outcome)
        [delete] = deletes(stack)
        assert delete.path == f"/api/fota/v3/campaigns/0000000000-00001/{campaign.thingspace_id}"
        assert stack.rt.store.campaign(1).state is S.CANCELLED
        assert any(f"<@{ANN}> cancelled Ref FB-1" in t for t in stack.thread_texts())
        dms = " ".join(m.text for m in stack.standin.messages(stack.standin.dm_channel(REQUESTER)))
        assert "was cancelled by" in dms

        # ThingSpace's own callbacks about the cancellation change nothing twice.
        replies = len(stack.thread_texts())
        await stack.run_sandbox(10)
        assert stack.rt.store.campaign(1).state is S.CANCELLED
        assert len(stack.thread_texts()) == replies


async def test_a_cancel_after_the_start_shows_thingspace_answer_word_for_word(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_and_submit(stack)
        for _ in range(60):
            if stack.rt.store.campaign(1).state is S.SCHEDULED:
                break
            await stack.run_sandbox(1)
        campaign = stack.rt.store.campaign(1)
        assert campaign.state is S.SCHEDULED
        prompt = await command(stack, "cancel FB-1")
        assert "may consider it started already" in text_of(prompt)

        [outcome] = await click_answer(stack, prompt, blocks.ACTION_CANCEL_CONFIRM, user=REQUESTER)
        words = (
            f"Campaign {campaign.thingspace_id} has already started (status CampaignScheduled); "
            "a campaign can only be cancelled before it starts"
        )
        assert "CAMPAIGN_ALREADY_STARTED" in text_of(outcome) and words in text_of(outcome)
        assert "goes on" in text_of(outcome)
        thread = " ".join(stack.thread_texts())
        assert "CAMPAIGN_ALREADY_STARTED" in thread and words in thread
        assert len(deletes(stack)) == 1
        assert stack.rt.store.campaign(1).state is S.SCHEDULED


async def test_keep_it_removes_the_prompt(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request(stack)
        prompt = await command(stack, "cancel FB-1")
        [kept] = await click_answer(stack, prompt, blocks.ACTION_CANCEL_KEEP, user=REQUESTER)
        assert kept["delete_original"] is True
        assert stack.rt.store.campaign(1).state is S.PENDING_APPROVAL


# --- /fota firmware --------------------------------------------------------------------------------


async def test_firmware_lists_the_account_catalogue_and_opens_a_prefilled_modal(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        answer = await command(stack, "firmware")
        [get] = [s for s in stack.thingspace.seen if s.path.startswith("/api/fota/v3/firmware/")]
        assert get.path == "/api/fota/v3/firmware/0000000000-00001"
        body = text_of(answer)
        for fragment in (FIRMWARE, "SR1.2.0.0-10512", "SEQUANS Communications", "GM01Q", "2021-09-01", "LTE-M power saving fixes"):
            assert fragment in body
        telit = next(
            e for e in elements(answer["blocks"], blocks.ACTION_FIRMWARE_SCHEDULE) if "Telit" in e["value"]
        )
        await click_answer(stack, answer, blocks.ACTION_FIRMWARE_SCHEDULE, user=REQUESTER, value=telit["value"])
        [modal] = [v for v in stack.standin.views if v.type == "modal"]
        assert modal.opened_by == "views.open"
        initial = {
            b["block_id"]: b["element"].get("initial_value") or (b["element"].get("initial_option") or {}).get("value")
            for b in modal.view["blocks"]
            if b["type"] == "input"
        }
        assert initial["firmware"] == "Telit_ME910C1-WW_M0B.020004_M0B.020008"
        assert (initial["from"], initial["to"]) == ("M0B.020004", "M0B.020008")
        assert initial["protocol"] == "LWM2M" and initial["account"] == "0000000000-00001"


async def test_firmware_refused_by_thingspace_is_said_plainly(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        stack.sandbox.fail_next(
            "/api/fota/v3/firmware", 400, error_code="INVALID_ACCOUNT", error_message="Account not found"
        )
        answer = await command(stack, "firmware 0642233522-00001")
        assert "INVALID_ACCOUNT" in text_of(answer) and "Account not found" in text_of(answer)
        assert "0642233522-00001" in text_of(answer)


# --- /fota devices ---------------------------------------------------------------------------------


async def test_devices_shows_counts_and_the_first_devices_and_sends_the_csv(tmp_path: Path) -> None:
    imeis = sandbox_imeis(22, kind="eligible") + sandbox_imeis(2, kind="will_fail")
    async with running_stack(tmp_path) as stack:
        await request_and_submit(stack, imeis=imeis)
        await stack.run_sandbox(60)
        stack.clock.advance(seconds=60)
        await stack.settle()
        assert stack.rt.store.campaign(1).state is S.ENDED

        answer = await command(stack, "devices FB-1")
        body = text_of(answer)
        assert "24 devices" in body and "*succeeded*\\n22" in body and "*failed*\\n2" in body
        assert sum(imei in body for imei in imeis) == 20  # the first 20, with status
        assert "UpgradeSuccess" in body and "and 4 more" in body
        assert "sent to you in a direct message" in body
        upload = stack.standin.uploads[-1]
        assert upload.name == "FB-1-devices.csv" and upload.channel == stack.standin.dm_channel(REQUESTER)
        assert stack.standin.calls_to("conversations.open")
        rows = list(csv.reader(io.StringIO(upload.content.decode())))
        assert rows[0] == ["imei", "status", "reason", "updated_at"] and len(rows) == 25

        failed = await command(stack, "devices FB-1 failed")
        assert "2 failed devices" in text_of(failed)
        assert all(imei in text_of(failed) for imei in imeis[-2:])
        upload = stack.standin.uploads[-1]
        assert upload.name == "FB-1-failed-devices.csv"
        rows = list(csv.reader(io.StringIO(upload.content.decode())))
        assert [r[0] for r in rows[1:]] == imeis[-2:] and all(r[1] == "UpgradeFailed" and r[2] for r in rows[1:])


async def test_devices_of_a_request_with_no_failures(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request(stack)
        answer = await command(stack, "devices FB-1 failed")
        assert "No device has failed so far" in text_of(answer)
        assert "No failed devices to put in a CSV file" in text_of(answer)
        assert stack.standin.uploads == []


# --- App Home --------------------------------------------------------------------------------------


async def test_app_home_shows_the_right_sections_for_each_user(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_and_submit(stack)  # FB-1, under way
        # FB-2, waiting, on other devices (FB-1's would be excluded: in another active campaign).
        await request(stack, imeis=sandbox_imeis(3, kind="eligible", start=500))
        home = await open_home(stack, ANN)
        text = text_of(home)
        waiting = text.index("Requests waiting for your approval")
        under_way = text.index("Campaigns under way")
        assert waiting < text.index("Ref FB-2*") < under_way < text.index("Ref FB-1*")
        assert "░" in text  # FB-1's progress bar
        approve = elements(home["blocks"], blocks.ACTION_APPROVE)
        assert [blocks.parse_action_value(b["value"])[0] for b in approve] == [2]
        assert elements(home["blocks"], blocks.ACTION_REJECT)
        assert len(home["blocks"]) <= 100

        mine = text_of(await open_home(stack, REQUESTER))
        assert "Requests waiting for your approval" not in mine  # not an approver
        assert mine.index("Your requests waiting for approval") < mine.index("Ref FB-2*")

        # The Messages tab fires the same event; it is not ours to draw.
        publishes = len(stack.standin.calls_to("views.publish"))
        await stack.post_slack(app_home_opened_body(BOB, tab="messages"))
        await stack.settle()
        assert len(stack.standin.calls_to("views.publish")) == publishes


async def test_approving_from_the_app_home_works_and_answers_on_the_home(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request(stack)
        home = await open_home(stack, ANN)
        body = block_action_body(blocks.ACTION_APPROVE, user_id=ANN, view=home)
        assert (await stack.post_slack(body)).status_code == 200
        await stack.settle()

        assert stack.rt.store.campaign(1).state is S.SUBMITTED
        assert len(stack.thingspace.schedule_posts()) == 1
        republished = text_of(stack.standin.home_view(ANN).view)
        assert "You approved FB-1" in republished
        assert not elements(stack.standin.home_view(ANN).view["blocks"], blocks.ACTION_APPROVE)
        assert republished.index("Campaigns under way") < republished.index("Ref FB-1*")


async def test_a_refused_click_on_the_app_home_is_explained_there(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request(stack)
        home = await open_home(stack, ANN)
        await stack.post_slack(block_action_body(blocks.ACTION_APPROVE, user_id=EVE, view=home))
        await stack.settle()
        assert "not one of them" in text_of(stack.standin.home_view(EVE).view)
        assert stack.rt.store.campaign(1).state is S.PENDING_APPROVAL

        await stack.post_slack(block_action_body(blocks.ACTION_REJECT, user_id=ANN, view=home))
        await stack.settle()
        [modal] = [v for v in stack.standin.views if v.type == "modal"]
        assert modal.callback_id == blocks.REJECT_MODAL_CALLBACK_ID


async def test_thingspace_being_down_is_said_plainly_without_internal_paths(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        stack.rt.thingspace._sleep = _no_sleep  # the client's back-offs, without waiting
        stack.sandbox.fail_next("/api/fota/v3/firmware", 500, count=10)
        answer = text_of(await command(stack, "firmware"))
        assert "ThingSpace is not answering (HTTP 500)" in answer
        assert "/api/" not in answer and "giving up" not in answer


async def _no_sleep(seconds: float) -> None:
    return None
