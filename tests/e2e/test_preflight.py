"""Pre-flight checks end to end: through the real HTTP app with Slack-signed requests,
the recording Slack stand-in and the sandbox behind a recording transport."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest

from bot.standins.thingspace import sandbox_imeis
from commands import blocks
from commands.modal import SCHEDULE_CALLBACK_ID
from storage import preflight as stored
from storage.findings import CHECKING, DONE
from storage.model import NotApproved
from storage.states import CampaignState
from tests.e2e.test_flow import action_ids
from tests.e2e.test_operator import open_home
from tests.support.slack import block_action_body, text_input
from tests.support.stack import ANN, BOB, CHANNEL, EVE, FIRMWARE, REQUESTER, Stack, running_stack

DEVICES_PATH = "/api/fota/v3/devices/"


def schedule(imeis: list[str], *, to: str = "SR1.2.0.0-10657", extra: str = "") -> str:
    return (
        f"schedule firmware={FIRMWARE} from=SR1.2.0.0-10512 to={to} "
        f"start=today end=+3d devices={','.join(imeis)} {extra}"
    ).strip()


def card_text(stack: Stack) -> str:
    return json.dumps(stack.root().blocks, ensure_ascii=False)


async def forged_click(
    stack: Stack, action_id: str, *, user: str, campaign_id: int, shown_hash: str
) -> str:
    """A click carrying a value the current card does not offer (an old or tampered payload)."""
    response_url = stack.standin.new_response_url(user_id=user)
    body = block_action_body(
        action_id,
        blocks.action_value(campaign_id, shown_hash),
        user_id=user,
        channel_id=CHANNEL,
        message_ts=stack.root().ts,
        response_url=response_url,
    )
    response = await stack.post_slack(body)
    assert response.status_code == 200
    return response_url


def answers(stack: Stack, response_url: str) -> str:
    return json.dumps(stack.answers(response_url), ensure_ascii=False)


async def test_the_card_is_posted_checking_and_edited_when_the_findings_land(
    tmp_path: Path,
) -> None:
    imeis = sandbox_imeis(3)
    async with running_stack(tmp_path) as stack:
        # ThingSpace is slow to answer about the devices: the card goes out first.
        stack.sandbox.delay_next(DEVICES_PATH, 0.5, before=True)
        response, _ = await stack.slash(schedule(imeis))
        assert (
            response.status_code == 200 and "Checking your request for 3 devices" in response.text
        )
        for _ in range(200):
            await asyncio.sleep(0.005)
            await stack.rt.sender.drain()
            if stack.standin.messages(CHANNEL):
                break
        checking = stack.root().to_slack()
        assert "checking…" in json.dumps(checking, ensure_ascii=False)
        assert blocks.ACTION_APPROVE not in action_ids(checking["blocks"])
        shown_while_checking = stack.rt.store.campaign(1).content_hash

        # A click carrying the checking card's hash cannot approve what is not checked yet.
        early = await forged_click(
            stack, blocks.ACTION_APPROVE, user=ANN, campaign_id=1, shown_hash=shown_while_checking
        )
        await stack.settle()
        assert "still being checked" in answers(stack, early)
        assert stack.rt.store.decisions(1) == []

        # The findings landed: the same message was edited in place and offers Approve.
        root = stack.root()
        assert root.ts == checking["ts"] and root.edits
        assert "Pre-flight findings" in card_text(
            stack
        ) and "*3 of 3 devices eligible*" in card_text(stack)
        assert blocks.ACTION_APPROVE in action_ids(root.blocks)
        record = stored.load(stack.rt.store, 1)
        assert record is not None and record.summary is not None
        assert record.summary.digest[:12] in card_text(stack)

        # The checking card's hash is stale now: findings are part of the approved content.
        late = await forged_click(
            stack, blocks.ACTION_APPROVE, user=ANN, campaign_id=1, shown_hash=shown_while_checking
        )
        await stack.settle()
        assert "changed after this card was shown" in answers(stack, late)
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        [post] = stack.thingspace.schedule_posts()
        assert post.json()["deviceList"] == imeis


async def test_unknown_firmware_disables_approve_and_the_guard_refuses_it(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await stack.slash(schedule(sandbox_imeis(2), to="SR9.9"))
        await stack.settle()
        text = card_text(stack)
        assert "Approve is disabled" in text and "not for SR1.2.0.0-10512 → SR9.9" in text
        assert blocks.ACTION_APPROVE not in action_ids(stack.root().blocks)
        assert blocks.ACTION_APPROVE_ELIGIBLE not in action_ids(stack.root().blocks)

        campaign = stack.rt.store.campaign(1)
        for action in (blocks.ACTION_APPROVE, blocks.ACTION_APPROVE_ELIGIBLE):
            url = await forged_click(
                stack, action, user=ANN, campaign_id=1, shown_hash=campaign.content_hash
            )
            await stack.settle()
            assert "cannot be approved" in answers(stack, url) and "SR9.9" in answers(stack, url)
        assert stack.rt.store.decisions(1) == []

        # The guard holds on every path: straight through the store, and at submission.
        with pytest.raises(NotApproved, match="cannot be approved"):
            stack.rt.store.record_approval(
                1, user=ANN, shown_hash=campaign.content_hash, required=1
            )
        stack.rt.store.transition(
            1, CampaignState.APPROVED, actor="test", reason="bypassing approvals"
        )
        assert await stack.rt.submitter.submit(1) is None
        assert stack.thingspace.schedule_posts() == []


async def test_no_eligible_device_disables_approve(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        imeis = sandbox_imeis(2, kind="unknown") + sandbox_imeis(1, kind="ineligible")
        await stack.slash(schedule(imeis))
        await stack.settle()
        text = card_text(stack)
        assert (
            "Approve is disabled" in text and "None of the 3 devices can take this upgrade" in text
        )
        assert "2 devices not in account" in text and "1 device not FOTA-eligible" in text
        # Nothing approvable; the excluded list can still be downloaded.
        assert action_ids(stack.root().blocks) == {
            blocks.ACTION_EXCLUDED_CSV, blocks.ACTION_REJECT, blocks.ACTION_WITHDRAW,
        }
        url = await forged_click(
            stack,
            blocks.ACTION_APPROVE,
            user=ANN,
            campaign_id=1,
            shown_hash=stack.rt.store.campaign(1).content_hash,
        )
        await stack.settle()
        assert "cannot be approved" in answers(stack, url)
        assert stack.thingspace.schedule_posts() == []


BG96_FIRMWARE = "Quectel_BG96_BG96MAR04A02M1G"
BG96_FROM, BG96_TO = "BG96MAR02A08M1G", "BG96MAR04A02M1G"


def bg96_schedule(imeis: list[str], extra: str = "") -> str:
    return (
        f"schedule firmware={BG96_FIRMWARE} from={BG96_FROM} to={BG96_TO} "
        f"start=today end=+3d devices={','.join(imeis)} {extra}"
    ).strip()


def every_kind() -> dict[str, list[str]]:
    """Devices of every kind pre-flight tells apart, for the BG96 firmware from BG96MAR02A08M1G."""
    bg96 = {"model": "BG96", "firmware": BG96_FROM}
    return {
        "eligible": sandbox_imeis(3, **bg96),
        "will_fail": sandbox_imeis(1, kind="will_fail", **bg96),  # ThingSpace takes it; it fails
        "unknown": sandbox_imeis(1, kind="unknown", **bg96),
        "ineligible": sandbox_imeis(1, kind="ineligible", **bg96),
        "unlicensed": sandbox_imeis(1, kind="unlicensed", **bg96),
        "wrong_firmware": sandbox_imeis(2, model="BG96", firmware="BG96MAR03A01M1G"),
        "wrong_model": sandbox_imeis(2),  # SEQUANS GM01Q
        "in_other_campaign": sandbox_imeis(1, start=700, **bg96),
    }


def decision_buttons_of(view_blocks: list[dict]) -> list[tuple[str, str, str]]:
    return [
        (e["action_id"], e["text"]["text"], e["value"])
        for b in view_blocks
        if b.get("type") == "actions"
        for e in b["elements"]
        if e["action_id"]
        not in (blocks.ACTION_WITHDRAW, blocks.ACTION_PREFLIGHT_RETRY, blocks.ACTION_EXCLUDED_CSV)
    ]


async def test_a_request_with_devices_of_every_kind_sends_exactly_the_eligible_set(
    tmp_path: Path,
) -> None:
    kinds = every_kind()
    async with running_stack(tmp_path, FOTA_REQUIRED_APPROVALS="2") as stack:
        stack.sandbox.mrc_only = True
        # Another request, still waiting, already holds one device.
        await stack.slash(bg96_schedule(kinds["in_other_campaign"]))
        await stack.settle()
        imeis = [imei for group in kinds.values() for imei in group]
        await stack.slash(bg96_schedule(imeis))
        await stack.settle()
        text = card_text(stack)
        # Eligible means will-probably-succeed: the right model on the right version, known,
        # eligible, licensed, in no other campaign. Every other device is excluded with why.
        assert "*4 of 12 devices eligible*" in text
        for line in (
            "1 device not in account",
            "1 device not FOTA-eligible",
            "1 device without a licence",
            f"4 devices not on `{BG96_FROM}`",  # 2 on BG96MAR03A01M1G, 2 GM01Q
            "2 devices of another make or model than the firmware's (Quectel BG96)",
            "1 device already in another active campaign",
        ):
            assert line in text, line
        assert text.count(" — excluded") == 6
        # The primary, green button approves the eligible devices; sending the others is a
        # separate action; there is no plain Approve.
        buttons = decision_buttons_of(stack.root().blocks)
        assert [(a, t) for a, t, _ in buttons] == [
            (blocks.ACTION_APPROVE_ELIGIBLE, "Approve 4 eligible"),
            (blocks.ACTION_INCLUDE_EXCLUDED, "Include excluded devices…"),
            (blocks.ACTION_REJECT, "Reject"),
        ]
        primary = next(
            e for b in stack.root().blocks if b.get("type") == "actions" for e in b["elements"]
            if e["action_id"] == blocks.ACTION_APPROVE_ELIGIBLE
        )
        assert primary["style"] == "primary" and "the 8 excluded stay out" in primary["confirm"]["text"]["text"]

        # The App Home offers the same buttons with the same values, and the same findings.
        home = await open_home(stack, ANN)
        assert [b for b in decision_buttons_of(home["blocks"]) if "\"campaign_id\":2" in b[2]] == buttons
        home_text = json.dumps(home, ensure_ascii=False)
        assert "*4 of 12 devices eligible*" in home_text and "Blast radius:" in home_text
        # So does /fota status.
        _, status_url = await stack.slash("status FB-2", user=BOB)
        await stack.settle()
        assert "*4 of 12 devices eligible*" in answers(stack, status_url)

        # A plain Approve (an old or forged click) cannot send the excluded devices.
        campaign = stack.rt.store.campaign(2)
        url = await forged_click(
            stack, blocks.ACTION_APPROVE, user=ANN, campaign_id=2, shown_hash=campaign.content_hash
        )
        await stack.settle()
        assert "pre-flight excluded" in answers(stack, url) and stack.rt.store.decisions(2) == []

        _, ann = await stack.click(blocks.ACTION_APPROVE_ELIGIBLE, user=ANN)
        await stack.settle()
        assert "4 eligible devices; 8 left out" in answers(stack, ann) and "1 of 2" in answers(stack, ann)
        narrowed = stack.rt.store.campaign(2)
        assert narrowed.content_hash != campaign.content_hash and narrowed.device_count == 4
        assert "narrowed to the 4 eligible devices (of 12) by <@U0ANN>" in card_text(stack)
        # The second approver sees the narrowed request: a plain Approve of what is sent.
        assert [a for a, _, _ in decision_buttons_of(stack.root().blocks)] == [
            blocks.ACTION_APPROVE, blocks.ACTION_REJECT,
        ]
        await stack.click(blocks.ACTION_APPROVE, user=BOB)
        await stack.settle()
        [post] = stack.thingspace.schedule_posts()
        sent = kinds["eligible"] + kinds["will_fail"]
        assert post.json()["deviceList"] == sent
        assert stack.rt.store.campaign(2).state is CampaignState.SUBMITTED
        stamp = card_text(stack)
        assert "Narrowed by <@U0ANN> to the eligible devices: 8 excluded devices left out" in stamp
        _, status_url = await stack.slash("status FB-2", user=BOB)
        await stack.settle()
        assert "Narrowed by <@U0ANN> to the eligible devices" in answers(stack, status_url)

        # To the end: every device accounted for, the excluded ones in the summary.
        await stack.run_sandbox(60, step=2.0)
        stack.clock.advance(seconds=60)
        await stack.settle()
        assert stack.rt.store.campaign(2).state is CampaignState.ENDED
        counts = stack.rt.store.device_counts(2)
        assert (counts["succeeded"], counts["failed"]) == (3, 1)
        summary = next(m for m in stack.standin.thread(CHANNEL, stack.root().ts) if "finished" in m.text)
        summary_text = json.dumps(summary.blocks, ensure_ascii=False)
        assert "*Excluded at approval, never sent:* 8 devices" in summary_text
        assert "*Sent:* 4 devices · *succeeded* 3 · *failed* 1" in summary_text
        assert "75% succeeded · 25% failed" in summary_text


async def test_including_excluded_devices_is_an_explicit_recorded_override(tmp_path: Path) -> None:
    kinds = every_kind()
    eligible, wrong_model = kinds["eligible"], kinds["wrong_model"]
    imeis = eligible + wrong_model
    async with running_stack(tmp_path, FOTA_REQUIRED_APPROVALS="2") as stack:
        await stack.slash(bg96_schedule(imeis))
        await stack.settle()
        before = stack.root().to_slack()  # the card as Bob sees it now
        checked_hash = stack.rt.store.campaign(1).content_hash

        # The excluded list, with the reasons, is a click away: a CSV in the clicker's DM.
        _, csv_url = await stack.click(blocks.ACTION_EXCLUDED_CSV, user=BOB)
        await stack.settle()
        assert "Sent you FB-1-excluded-devices.csv" in answers(stack, csv_url)
        upload = stack.standin.uploads[-1]
        assert upload.channel == stack.standin.dm_channel(BOB)
        rows = list(csv.reader(io.StringIO(upload.content.decode())))
        assert rows[0] == ["imei", "findings", "reasons", "in_request"]
        assert [r[0] for r in rows[1:]] == wrong_model
        assert all(r[1] == "wrong_firmware;wrong_model" and r[3] == "yes" for r in rows[1:])
        assert "of another make or model" in rows[1][2]
        assert not any(m.files for m in stack.standin.thread(CHANNEL, stack.root().ts))

        # Someone who may not approve cannot even open the modal.
        _, eve = await stack.click(blocks.ACTION_INCLUDE_EXCLUDED, user=EVE)
        await stack.settle()
        assert "not one of them" in answers(stack, eve)
        assert not [c for c in stack.standin.calls_to("views.open") if c.ok]

        await stack.click(blocks.ACTION_INCLUDE_EXCLUDED, user=ANN)
        await stack.settle()
        [opened] = [c for c in stack.standin.calls_to("views.open") if c.ok]
        view = opened.args["view"]
        view = json.loads(view) if isinstance(view, str) else view
        assert view["callback_id"] == blocks.OVERRIDE_MODAL_CALLBACK_ID
        modal_text = json.dumps(view, ensure_ascii=False)
        assert "2 devices of another make or model" in modal_text and "Type 2 to confirm" in modal_text
        meta = view["private_metadata"]

        async def submit(count: str, reason: str) -> dict:
            values = {"count": {"count": text_input(count)}, "reason": {"reason": text_input(reason)}}
            response = await stack.submit_view(
                blocks.OVERRIDE_MODAL_CALLBACK_ID, values, user=ANN, private_metadata=meta
            )
            assert response.status_code == 200
            await stack.settle()
            return response.json() if response.content else {}

        # A wrong count, a count that is not a number, no reason: told under the field,
        # nothing changes.
        assert "not the number of devices being added (2)" in submit_errors(await submit("5", "lab"))
        assert "is not a number" in submit_errors(await submit("two", "lab"))
        assert "reason" in (await submit("2", "   ")).get("errors", {})
        assert stack.rt.store.campaign(1).content_hash == checked_hash
        assert stack.rt.store.decisions(1) == []

        assert await submit("2", "Bench units reflashed to BG96 <b>") == {}
        widened = stack.rt.store.campaign(1)
        assert widened.content_hash != checked_hash and widened.device_count == 5
        [decision] = stack.rt.store.decisions(1)
        assert (decision.user, decision.content_hash) == (ANN, widened.content_hash)
        text = card_text(stack)
        assert "*Overridden* by <@U0ANN>" in text and "Bench units reflashed to BG96 &lt;b&gt;" in text
        assert "2 excluded devices included" in text and "1 of 2 approvals" in text
        [audit] = [r for r in stack.rt.store.audit(1) if "overrode" in r["reason"]]
        assert audit["actor"] == ANN and "Bench units reflashed" in audit["reason"]
        thread = " ".join(stack.thread_texts())
        assert "overrode pre-flight" in thread
        dm = " ".join(m.text for m in stack.standin.messages(stack.standin.dm_channel(ANN)))
        assert "with 2 excluded devices included" in dm

        # Bob's card was shown before the override (another device set): his click is refused.
        _, bob = await stack.click(blocks.ACTION_APPROVE_ELIGIBLE, user=BOB, message=before)
        await stack.settle()
        assert "changed after this card was shown" in answers(stack, bob)
        assert stack.rt.store.campaign(1).device_count == 5
        # On the current card Bob approves all, knowingly (the confirm says how many).
        buttons = [a for a, _, _ in decision_buttons_of(stack.root().blocks)]
        assert buttons == [blocks.ACTION_APPROVE, blocks.ACTION_APPROVE_ELIGIBLE, blocks.ACTION_REJECT]
        await stack.click(blocks.ACTION_APPROVE, user=BOB)
        await stack.settle()
        [post] = stack.thingspace.schedule_posts()
        assert post.json()["deviceList"] == imeis
        stamp = card_text(stack)
        assert "*Overridden* by <@U0ANN>: 2 excluded devices included" in stamp
        assert "Bench units reflashed" in stamp


def submit_errors(answer: dict) -> str:
    assert answer.get("response_action") == "errors", answer
    return json.dumps(answer["errors"])


async def test_a_monthly_only_account_needs_licences_and_eligible_only_leaves_them_out(
    tmp_path: Path,
) -> None:
    licensed = sandbox_imeis(2)
    unlicensed = sandbox_imeis(1, kind="unlicensed")
    async with running_stack(tmp_path) as stack:
        stack.sandbox.mrc_only = True
        await stack.slash(schedule(licensed + unlicensed))
        await stack.settle()
        text = card_text(stack)
        assert "1 device without a licence" in text and "monthly-only" in text
        assert "*2 of 3 devices eligible*" in text
        await stack.click(blocks.ACTION_APPROVE_ELIGIBLE, user=ANN)
        await stack.settle()
        [post] = stack.thingspace.schedule_posts()
        assert post.json()["deviceList"] == licensed
        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTED

    # The same request on an account with per-event licences: nothing to leave out.
    async with running_stack(tmp_path / "events") as stack:
        await stack.slash(schedule(licensed + unlicensed))
        await stack.settle()
        assert "*3 of 3 devices eligible*" in card_text(stack)
        assert blocks.ACTION_APPROVE_ELIGIBLE not in action_ids(stack.root().blocks)


async def test_licence_auto_uses_the_accounts_unused_licences_and_sets_the_flag(
    tmp_path: Path,
) -> None:
    licensed = sandbox_imeis(2)
    unlicensed = sandbox_imeis(2, kind="unlicensed")
    async with running_stack(tmp_path) as stack:
        stack.sandbox.mrc_only = True
        stack.sandbox.model.license_count = 1  # one unused licence on the account
        await stack.slash(schedule(licensed + unlicensed, extra="licence=auto"))
        await stack.settle()
        text = card_text(stack)
        assert "`licence=auto`: ThingSpace may assign unused licences" in text
        assert "`licence=auto`: uses 1 licence of the account's 1 unused" in text
        assert "*3 of 4 devices eligible*" in text
        assert "1 device without a licence, and no unused licence of the account left" in text
        await stack.click(blocks.ACTION_APPROVE_ELIGIBLE, user=ANN)
        await stack.settle()
        [post] = stack.thingspace.schedule_posts()
        body = post.json()
        assert body["deviceList"] == licensed + unlicensed[:1]
        assert body["autoAssignLicenseFlag"] is True and body["autoAddDevicesFlag"] is False
        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTED

    # The same request without licence=auto: both unlicensed devices are excluded, and the
    # flag goes out false.
    async with running_stack(tmp_path / "none") as stack:
        stack.sandbox.mrc_only = True
        await stack.slash(schedule(licensed + unlicensed))
        await stack.settle()
        text = card_text(stack)
        assert "`licence=none`: none assigned" in text and "*2 of 4 devices eligible*" in text
        await stack.click(blocks.ACTION_APPROVE_ELIGIBLE, user=ANN)
        await stack.settle()
        [post] = stack.thingspace.schedule_posts()
        assert post.json()["deviceList"] == licensed
        assert post.json()["autoAssignLicenseFlag"] is False


async def test_the_forms_licence_checkbox_asks_for_licence_auto(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        values = {
            "firmware": {"firmware": text_input(FIRMWARE)},
            "devices": {"devices": text_input(",".join(sandbox_imeis(2)))},
            "licence": {
                "licence": {"type": "checkboxes", "selected_options": [{"value": "auto"}]}
            },
        }
        response = await stack.submit_view(SCHEDULE_CALLBACK_ID, values, user=REQUESTER)
        assert response.status_code == 200 and not response.content
        unticked = {**values, "licence": {"licence": {"type": "checkboxes", "selected_options": []}}}
        await stack.submit_view(SCHEDULE_CALLBACK_ID, unticked, user=REQUESTER)
        await stack.settle()
        assert stack.rt.store.campaign(1).licence_auto and not stack.rt.store.campaign(2).licence_auto
        assert "`licence=auto`" in json.dumps(stack.root(0).blocks)
        assert "`licence=none`" in json.dumps(stack.root(1).blocks)


async def test_a_conflict_with_another_active_campaign_is_on_the_card(tmp_path: Path) -> None:
    imeis = sandbox_imeis(4)
    async with running_stack(tmp_path) as stack:
        await stack.slash(schedule(imeis[:3], extra="window=18-22"))
        await stack.settle()
        await stack.slash(schedule(imeis[1:], extra="window=20-24"))
        await stack.settle()
        text = card_text(stack)
        assert "*Ref FB-1* (pending approval) already holds 2 devices" in text
        assert "its dates overlap; its windows overlap" in text
        assert "2 devices already in another active campaign (below) — excluded" in text
        # Excluded, not blocked: the approver sends the device in no other campaign, or
        # includes the others by override.
        assert action_ids(stack.root().blocks) == {
            blocks.ACTION_EXCLUDED_CSV, blocks.ACTION_APPROVE_ELIGIBLE,
            blocks.ACTION_INCLUDE_EXCLUDED, blocks.ACTION_REJECT, blocks.ACTION_WITHDRAW,
        }


async def test_an_interrupted_preflight_is_run_again_at_start_up(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        stack.sandbox.delay_next(DEVICES_PATH, 30, before=True)
        await stack.slash(schedule(sandbox_imeis(2)))
        for _ in range(200):
            await asyncio.sleep(0.005)
            record = stored.load(stack.rt.store, 1)
            if record is not None:
                break
        # The process dies while ThingSpace is still answering.
        await stack.rt.background.cancel_all()
        record = stored.load(stack.rt.store, 1)
        assert record is not None and record.status == CHECKING
        await stack.restart()
        await stack.settle()
        record = stored.load(stack.rt.store, 1)
        assert record is not None and record.status == DONE and record.attempts == 2
        assert blocks.ACTION_APPROVE in action_ids(stack.root().blocks)


async def test_a_failed_preflight_can_be_run_again_from_the_card(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        # ThingSpace refuses the device query (a 5xx would be retried by the client first).
        stack.sandbox.fail_next(
            DEVICES_PATH, 400, error_code="INVALID_ACCOUNT", error_message="Account locked"
        )
        await stack.slash(schedule(sandbox_imeis(2)))
        await stack.settle()
        text = card_text(stack)
        assert "could not finish" in text and "Account locked" in text
        assert blocks.ACTION_APPROVE not in action_ids(stack.root().blocks)
        stack.sandbox.clear_faults()
        _, url = await stack.click(blocks.ACTION_PREFLIGHT_RETRY, user=ANN)
        await stack.settle()
        assert "again" in answers(stack, url)
        assert blocks.ACTION_APPROVE in action_ids(stack.root().blocks)


async def test_the_excluded_devices_csv_is_read_and_written_off_the_event_loop(tmp_path: Path) -> None:
    kinds = every_kind()
    async with running_stack(tmp_path) as stack:
        await stack.slash(bg96_schedule(kinds["eligible"] + kinds["wrong_model"]))
        await stack.settle()
        on_loop: list[str] = []
        stack.rt.store.db.conn.set_trace_callback(on_loop.append)
        try:
            _, csv_url = await stack.click(blocks.ACTION_EXCLUDED_CSV, user=BOB)
            await stack.settle()
        finally:
            stack.rt.store.db.conn.set_trace_callback(None)
        assert "Sent you FB-1-excluded-devices.csv" in answers(stack, csv_url)
        rows = list(csv.reader(io.StringIO(stack.standin.uploads[-1].content.decode())))
        assert [r[0] for r in rows[1:]] == kinds["wrong_model"]
        # Anyone may click it, and a fleet of another model is 100,000 rows: read on the
        # reader thread, never on the event loop's connection.
        assert not [s for s in on_loop if "FROM preflight_devices p" in s]


async def test_the_final_summary_counts_the_left_out_devices_off_the_event_loop(tmp_path: Path) -> None:
    kinds = every_kind()
    async with running_stack(tmp_path) as stack:
        await stack.slash(bg96_schedule(kinds["eligible"] + kinds["wrong_model"]))
        await stack.settle()
        await stack.click(blocks.ACTION_APPROVE_ELIGIBLE, user=ANN)
        await stack.settle()
        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTED
        on_loop: list[str] = []
        stack.rt.store.db.conn.set_trace_callback(on_loop.append)
        try:
            await stack.run_sandbox(60, step=2.0)
            stack.clock.advance(seconds=60)
            await stack.settle()
        finally:
            stack.rt.store.db.conn.set_trace_callback(None)
        assert stack.rt.store.campaign(1).state is CampaignState.ENDED
        summary = next(m for m in stack.standin.thread(CHANNEL, stack.root().ts) if "finished" in m.text)
        left_out = len(kinds["wrong_model"])
        assert f"*Excluded at approval, never sent:* {left_out} devices" in json.dumps(
            summary.blocks, ensure_ascii=False
        )
        # A narrowing can leave out 100,000 devices: they are counted on the reader thread.
        assert not [s for s in on_loop if "FROM preflight_devices p" in s]
