"""The rollout thread end to end: ThingSpace callbacks → live progress in Slack."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import httpx

from bot.standins.thingspace import sandbox_imeis
from commands import blocks
from storage.states import CampaignState
from tests.support.stack import ANN, CHANNEL, FIRMWARE, Stack, running_stack


def schedule_text(imeis: list[str]) -> str:
    return (
        f"schedule firmware={FIRMWARE} from=SR1.2.0.0-10512 to=SR1.2.0.0-10657 "
        f"start=today end=+3d devices={','.join(imeis)}"
    )


async def approve_and_submit(stack: Stack, imeis: list[str]) -> None:
    response, _ = await stack.slash(schedule_text(imeis))
    assert response.status_code == 200
    await stack.settle()
    await stack.click(blocks.ACTION_APPROVE, user=ANN)
    await stack.settle()
    assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTED


async def test_a_rollout_is_followed_to_its_end_with_a_summary_and_a_csv(tmp_path: Path) -> None:
    imeis = sandbox_imeis(8, kind="eligible") + sandbox_imeis(2, kind="will_fail")
    async with running_stack(tmp_path) as stack:
        await approve_and_submit(stack, imeis)
        await stack.run_sandbox(6, step=1.0)
        # Callbacks arrived: one debounced re-read of ThingSpace's report is waiting.
        assert stack.rt.jobs.run_date("reconcile:1") is not None
        await stack.run_sandbox(54, step=1.0)
        stack.clock.advance(seconds=60)
        await stack.settle()

        campaign = stack.rt.store.campaign(1)
        assert campaign.state is CampaignState.ENDED
        counts = stack.rt.store.device_counts(1)
        assert counts == {"pending": 0, "in progress": 0, "succeeded": 8, "failed": 2, "other": 0}

        thread = stack.standin.thread(CHANNEL, stack.root().ts)
        texts = [m.text for m in thread]
        joined = json.dumps([m.blocks for m in thread])
        for status in ("CampaignRequestQueued", "CampaignPreScheduled", "CampaignScheduled", "CampaignEnded"):
            assert any(status in t or status.replace("Campaign", "") in t for t in texts), status
        failed = [i for i in imeis[-2:]]
        assert all(imei in joined for imei in failed)
        assert any("finished" in t and "8 of 10 devices sent upgraded, 2 failed" in t for t in texts), texts
        # The per-device report, then one CSV of the failed devices per failure reason.
        uploads = [f for m in thread for f in m.files]
        reasons = stack.rt.store.failure_reasons(1)
        assert sum(n for _, n in reasons) == 2
        assert [f["name"] for f in uploads] == ["FB-1-devices.csv"] + [
            f"FB-1-failed-{n}.csv" for n in range(1, len(reasons) + 1)
        ]
        csv_bytes = stack.standin.file(uploads[0]["id"]).content
        lines = csv_bytes.decode().strip().splitlines()
        assert lines[0] == "imei,status,reason,updated_at" and len(lines) == 11
        for (reason, count), upload in zip(reasons, uploads[1:], strict=True):
            rows = stack.standin.file(upload["id"]).content.decode().strip().splitlines()[1:]
            assert len(rows) == count and all(row.split(",")[0] in failed for row in rows)
            assert all(row.split(",")[2] == reason for row in rows)
            assert reason in upload["title"]
        summary = next(m for m in thread if "finished" in m.text)
        summary_text = json.dumps(summary.blocks, ensure_ascii=False)
        assert "*Excluded at approval:* none" in summary_text and "*Sent:* 10 devices" in summary_text
        assert all(f"{reason}: {count}" in summary_text for reason, count in reasons)
        root_text = json.dumps(stack.root().blocks)
        assert "succeeded 8" in root_text and "failed 2" in root_text


async def test_root_card_edits_are_throttled_to_the_update_interval(tmp_path: Path) -> None:
    imeis = sandbox_imeis(30, kind="eligible")
    async with running_stack(tmp_path, FOTA_UPDATE_INTERVAL="5") as stack:
        await approve_and_submit(stack, imeis)
        before = len(stack.standin.calls_to("chat.update"))
        # ThingSpace reports every second for a minute while the bot's clock stands still:
        # progress edits must wait for the interval to pass, whatever the callback rate.
        await stack.run_sandbox(40, step=1.0)
        edits_frozen_clock = len(stack.standin.calls_to("chat.update")) - before
        status_changes = sum(1 for r in stack.rt.store.audit(1) if r["to_state"].startswith("Campaign"))
        assert edits_frozen_clock <= status_changes + 1
        stack.clock.advance(seconds=6)
        await stack.settle()
        assert "succeeded 30" in json.dumps(stack.root().blocks)


async def post_callback(stack: Stack, payload: object) -> int:
    url = f"/thingspace/callbacks/{stack.rt.callback_token}"
    response = await stack.http.post(url, content=json.dumps(payload), headers={"content-type": "application/json"})
    return response.status_code


def ten_k_thingspace(imeis: list[str], failing: set[str], other: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
    """ThingSpace's answers for campaign ts-10k (ended; its report), everything else as before."""

    async def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/campaigns/ts-10k/devices"):
            rows = [
                {"deviceId": imei, "status": "UpgradeFailed" if imei in failing else "UpgradeSuccess",
                 "resultReason": "Device did not respond" if imei in failing else None}
                for imei in imeis
            ]
            return httpx.Response(200, json={"hasMoreData": False, "deviceList": rows})
        if path.endswith("/ts-10k"):
            return httpx.Response(200, json={"id": "ts-10k", "status": "CampaignEnded"})
        return await other.handle_async_request(request)

    return httpx.MockTransport(handler)


async def test_ten_thousand_devices_in_random_order_with_duplicates_end_with_exact_counts(tmp_path: Path) -> None:
    import random

    rng = random.Random(7)
    imeis = sandbox_imeis(10_000)
    async with running_stack(tmp_path) as stack:
        store = stack.rt.store
        campaign = store.create_campaign(
            requester="U0REQ", account="0000000000-00001", firmware_name=FIRMWARE,
            firmware_from="SR1.2.0.0-10512", firmware_to="SR1.2.0.0-10657", protocol="LWM2M",
            start_date=stack.clock().date(), end_date=stack.clock().date(), windows=(), name=None,
            devices=imeis, sandbox=True, expires_at=stack.clock() + dt.timedelta(days=1),
        )
        store.record_approval(campaign.id, user=ANN, shown_hash=campaign.content_hash, required=1)
        store.claim_for_submission(campaign.id, required=1)
        store.transition(campaign.id, CampaignState.SUBMITTED, actor="test", reason="test", thingspace_id="ts-10k")
        stack.rt.notifier.requested(store.campaign(campaign.id), None)
        await stack.settle()

        failing = set(rng.sample(imeis, 700))
        stack.thingspace.inner = ten_k_thingspace(imeis, failing, stack.thingspace.inner)
        events: list[dict] = []
        for imei in imeis:
            events.append({"campaignId": "ts-10k", "deviceId": imei, "status": "UpgradeScheduled"})
            final = "UpgradeFailed" if imei in failing else "UpgradeSuccess"
            events.append({"campaignId": "ts-10k", "deviceId": imei, "status": final,
                           "reason": "Device did not respond" if imei in failing else None})
        events += rng.sample(events, len(events) // 10)  # 10 % duplicates
        rng.shuffle(events)
        for start in range(0, len(events), 250):
            assert await post_callback(stack, events[start : start + 250]) == 200
        for _ in range(2):  # the end, twice
            assert await post_callback(stack, {"campaignId": "ts-10k", "status": "CampaignEnded"}) == 200
        await stack.settle()
        assert store.device_counts(campaign.id) == {
            "pending": 0, "in progress": 0, "succeeded": 9_300, "failed": 700, "other": 0,
        }
        # Callbacks are hints: the end waited for ThingSpace's own word, a re-read (its report
        # agrees here with what the callbacks said).
        stack.clock.advance(seconds=60)
        await stack.settle()

        assert store.device_counts(campaign.id) == {
            "pending": 0, "in progress": 0, "succeeded": 9_300, "failed": 700, "other": 0,
        }
        assert store.campaign(campaign.id).state is CampaignState.ENDED
        thread = stack.standin.thread(CHANNEL, stack.root().ts)
        summaries = [m for m in thread if "finished" in m.text]
        assert len(summaries) == 1
        assert "9,300 of 10,000 devices sent upgraded, 700 failed" in summaries[0].text
        # The per-device report and one CSV per failure reason.
        assert len([f for m in thread for f in m.files]) == 1 + len(store.failure_reasons(campaign.id))
        assert store.callback_count() == len(events) // 250 + (len(events) % 250 > 0) + 2


async def test_slack_rate_limiting_then_down_loses_no_update_and_sends_no_edit_twice(tmp_path: Path) -> None:
    imeis = sandbox_imeis(6, kind="eligible") + sandbox_imeis(2, kind="will_fail")
    async with running_stack(tmp_path) as stack:
        await approve_and_submit(stack, imeis)
        stack.standin.rate_limit_next(None, count=1, retry_after=30)
        stack.standin.down(True)
        await stack.run_sandbox(60, step=2.0)
        # Slack stays down for minutes while ThingSpace finishes the campaign.
        assert stack.rt.store.campaign(1).state is CampaignState.ENDED
        pending = stack.rt.sender.outbox.pending_count()
        assert pending > 0
        stack.standin.down(False)
        for _ in range(12):  # ten minutes of the bot's time, in 50-second steps
            stack.clock.advance(seconds=50)
            await stack.settle()
        assert stack.rt.sender.outbox.pending_count() == 0
        thread = stack.standin.thread(CHANNEL, stack.root().ts)
        texts = [m.text for m in thread]
        assert sum("finished" in t for t in texts) == 1
        assert any("CampaignEnded" in t for t in texts)
        # Each file once: the per-device report and one per failure reason.
        assert sum(len(m.files) for m in thread) == 1 + len(stack.rt.store.failure_reasons(1))
        assert "succeeded 6" in json.dumps(stack.root().blocks)
        # Each root edit that Slack accepted was a different state of the card: none twice in a row.
        accepted = [c for c in stack.standin.calls_to("chat.update") if c.ok]
        bodies = [json.dumps(c.args.get("blocks")) for c in accepted]
        assert all(a != b for a, b in zip(bodies, bodies[1:], strict=False))


async def test_the_watchdog_rereads_a_campaign_whose_callbacks_stopped(tmp_path: Path) -> None:
    imeis = sandbox_imeis(5, kind="eligible")
    async with running_stack(tmp_path) as stack:
        await approve_and_submit(stack, imeis)
        # ThingSpace's callbacks get lost: nothing reaches the bot.
        await stack.thingspace_quiet(lambda: stack.run_sandbox(60, step=2.0))
        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTED
        stack.clock.advance(minutes=16)
        await stack.rt.rollout.watchdog()
        await stack.settle()
        assert stack.rt.store.campaign(1).state is CampaignState.ENDED
        assert stack.rt.store.device_counts(1)["succeeded"] == 5


async def test_a_restart_in_the_middle_of_a_rollout_continues_the_thread(tmp_path: Path) -> None:
    imeis = sandbox_imeis(6, kind="eligible")
    async with running_stack(tmp_path) as stack:
        await approve_and_submit(stack, imeis)
        await stack.run_sandbox(8, step=1.0)
        assert stack.rt.store.campaign(1).state is not CampaignState.ENDED
        root_ts = stack.root().ts
        await stack.restart()
        await stack.run_sandbox(60, step=1.0)
        stack.clock.advance(seconds=30)
        await stack.settle()
        assert stack.rt.store.campaign(1).state is CampaignState.ENDED
        roots = [m for m in stack.standin.messages(CHANNEL) if not m.thread_ts or m.thread_ts == m.ts]
        assert [m.ts for m in roots] == [root_ts]
        texts = [m.text for m in stack.standin.thread(CHANNEL, root_ts)]
        assert sum("finished" in t for t in texts) == 1


async def test_a_callback_that_beats_the_schedule_answer_is_applied_when_the_campaign_appears(tmp_path: Path) -> None:
    imeis = sandbox_imeis(3, kind="eligible")
    async with running_stack(tmp_path) as stack:
        response, _ = await stack.slash(schedule_text(imeis))
        await stack.settle()
        early = {"campaignId": "early-id", "deviceId": imeis[0], "status": "UpgradeScheduled"}
        assert await post_callback(stack, early) == 200
        await stack.settle()
        assert stack.rt.store.devices(1)[0].status is None
        store = stack.rt.store
        campaign = store.campaign(1)
        store.record_approval(1, user=ANN, shown_hash=campaign.content_hash, required=1)
        store.claim_for_submission(1, required=1)
        updated = store.transition(1, CampaignState.SUBMITTED, actor="t", reason="t", thingspace_id="early-id")
        stack.rt.rollout.adopt_waiting_callbacks(updated)
        assert store.devices(1)[0].status == "UpgradeScheduled"


async def test_the_receiver_through_the_app_refuses_bad_bodies_and_keeps_unknown_shapes(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        token = stack.rt.callback_token
        wrong = await stack.http.post("/thingspace/callbacks/not-the-token", json={"a": 1})
        assert wrong.status_code == 404 and token not in wrong.text
        big = await stack.http.post(f"/thingspace/callbacks/{token}", content=b"[" + b"1," * 600_000 + b"1]")
        assert big.status_code == 413
        garbage = await stack.http.post(f"/thingspace/callbacks/{token}", content=b"<xml>nope</xml>")
        assert garbage.status_code == 400
        odd = await stack.http.post(f"/thingspace/callbacks/{token}", json={"weird": ["shape"], "accountName": "0000000000-00001"})
        assert odd.status_code == 200
        await stack.settle()
        rows = list(stack.rt.store.db["callbacks"].rows)
        assert len(rows) == 1 and json.loads(rows[0]["body"]) == {"weird": ["shape"], "accountName": "0000000000-00001"}
        assert rows[0]["applied"] == 1 and rows[0]["parsed"] == 0


async def test_an_allow_list_still_lets_the_in_process_sandbox_call_back(tmp_path: Path) -> None:
    async with running_stack(tmp_path, FOTA_CALLBACK_ALLOWED_IPS="3.87.163.45,54.197.62.209") as stack:
        await approve_and_submit(stack, sandbox_imeis(2, kind="eligible"))
        await stack.run_sandbox(40, step=2.0)
        assert stack.rt.store.campaign(1).state is CampaignState.ENDED


async def test_thread_posts_keep_slacks_pace_of_one_per_second_per_channel(tmp_path: Path) -> None:
    imeis = sandbox_imeis(4, kind="eligible") + sandbox_imeis(2, kind="will_fail")
    async with running_stack(tmp_path, post_spacing=1.0) as stack:
        stack.standin.enforce_tiers = True
        stack.standin.clock = lambda: stack.clock().timestamp()  # Slack's limits on the test's time
        await stack.slash(schedule_text(imeis))
        await stack.settle()
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        # The bot's clock stands still: one post into the approvals channel, the rest wait.
        posted = [c for c in stack.standin.calls_to("chat.postMessage") if c.args.get("channel") == CHANNEL]
        assert len(posted) == 1
        for _ in range(90):
            stack.sandbox_clock.advance(1)
            await stack.sandbox.tick()
            stack.clock.advance(seconds=1)
            await stack.settle()
        assert stack.rt.store.campaign(1).state is CampaignState.ENDED
        assert stack.rt.sender.outbox.pending_count() == 0
        posts = [c.at for c in stack.standin.calls_to("chat.postMessage") if c.args.get("channel") == CHANNEL]
        assert len(posts) >= 6
        assert stack.standin.rate_limited_count == 0


async def test_one_item_failing_unexpectedly_does_not_stop_other_updates(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await approve_and_submit(stack, sandbox_imeis(2, kind="eligible"))

        async def broken_csv(campaign: object, payload: object = None) -> tuple[str, str]:
            raise RuntimeError("a renderer bug")

        stack.rt.sender.renderer.csv = broken_csv  # type: ignore[method-assign]
        await stack.run_sandbox(40, step=2.0)
        assert stack.rt.store.campaign(1).state is CampaignState.ENDED
        # The broken upload waits and retries; meanwhile the next request's card still goes out.
        response, _ = await stack.slash(schedule_text(sandbox_imeis(1, kind="eligible", start=50)))
        await stack.settle()
        assert stack.rt.store.campaign(2).thread_ts is not None
        for _ in range(12):  # the broken item is given up after its tries, never blocking others
            stack.clock.advance(minutes=5)
            await stack.settle()
        [upload] = [r for r in stack.rt.sender.outbox.sent("upload")]
        assert upload["last_error"] == "gave up: RuntimeError"


async def test_a_card_change_arriving_while_an_edit_is_in_flight_is_not_lost(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await approve_and_submit(stack, sandbox_imeis(2, kind="eligible"))
        fired: list[bool] = []

        def during_edit(call: object) -> None:
            # Slack has answered this edit; the sender has not recorded it yet.
            if getattr(call, "method", "") == "chat.update" and not fired:
                fired.append(True)
                stack.rt.rollout.apply_status(1, "CampaignRequestQueued", actor="callback")

        stack.rt.notifier.refresh_root(stack.rt.store.campaign(1), now=True)
        stack.standin.on_call = during_edit
        await stack.settle()
        stack.clock.advance(seconds=10)
        await stack.settle()
        assert fired
        assert "Queued" in json.dumps(stack.root().blocks)


async def test_a_lone_terminal_callback_is_checked_with_thingspace_before_it_ends_a_campaign(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await approve_and_submit(stack, sandbox_imeis(3, kind="eligible"))
        campaign = stack.rt.store.campaign(1)
        # Devices are still under way and ThingSpace says nothing of an abort.
        assert await post_callback(stack, {"campaignId": campaign.thingspace_id, "status": "CampaignAborted"}) == 200
        await stack.settle()
        assert not stack.rt.store.campaign(1).state.is_terminal
        # The campaign still runs to its real end, followed as usual; its end callback too is
        # confirmed by a re-read (spaced RECONCILE_MIN_SECONDS from the previous one).
        await stack.run_sandbox(60, step=2.0)
        stack.clock.advance(seconds=30)
        await stack.settle()
        assert stack.rt.store.campaign(1).state is CampaignState.ENDED
