"""Retrying failed devices end to end, through the signed HTTP app, the Slack stand-in and the
sandbox: the *Retry failed (N)…* button on a final summary and `/fota retry ID` open the request
form with exactly the failed devices (and why they failed), the firmware and windows of the
original; the new request is linked both ways and needs its own approval before anything
reaches ThingSpace. Refusals say the value and the rule, and open nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bot.standins.thingspace import sandbox_imeis
from commands import blocks
from commands.modal import SCHEDULE_CALLBACK_ID
from storage import retries
from storage.states import CampaignState
from tests.e2e.test_rollout import schedule_text
from tests.e2e.test_staged import _promote_messages, _run_wave_to_its_end
from tests.support.stack import ANN, BOB, CHANNEL, EVE, FIRMWARE, REQUESTER, Stack, running_stack

S = CampaignState


def submitted_as_shown(view: dict[str, Any]) -> dict[str, Any]:
    """The state values Slack sends when the form is submitted as it opened (every field as
    filled in)."""
    values: dict[str, Any] = {}
    for block in view["blocks"]:
        element = block.get("element")
        if block.get("type") != "input" or not element:
            continue
        kind, action = element["type"], element["action_id"]
        state: dict[str, Any] = {"type": kind}
        if kind == "plain_text_input":
            state["value"] = element.get("initial_value")
        elif kind == "static_select":
            state["selected_option"] = element.get("initial_option")
        elif kind in ("multi_static_select", "checkboxes"):
            state["selected_options"] = element.get("initial_options") or []
        elif kind == "datepicker":
            state["selected_date"] = element.get("initial_date")
        elif kind == "file_input":
            state["files"] = []
        values[block["block_id"]] = {action: state}
    return values


def opened_views(stack: Stack) -> list[dict[str, Any]]:
    views = []
    for call in stack.standin.calls_to("views.open"):
        if call.ok:
            view = call.args["view"]
            views.append(json.loads(view) if isinstance(view, str) else view)
    return views


def summary_of(stack: Stack, root: Any) -> Any:
    [summary] = [m for m in stack.standin.thread(CHANNEL, root.ts) if "*Sent:*" in json.dumps(m.blocks)]
    return summary


def retry_button_of(message: Any) -> dict[str, Any]:
    [button] = [
        e for b in message.blocks for e in b.get("elements", []) if e.get("action_id") == blocks.ACTION_RETRY_FAILED
    ]
    return button


async def submit(stack: Stack, view: dict[str, Any], *, user: str = REQUESTER) -> None:
    response = await stack.submit_view(
        SCHEDULE_CALLBACK_ID, submitted_as_shown(view), user=user, private_metadata=view["private_metadata"]
    )
    assert response.status_code == 200 and not response.content, response.content
    await stack.settle()


async def finished_campaign_with_failures(stack: Stack, good: list[str], bad: list[str]) -> None:
    await stack.slash(schedule_text(good + bad) + " window=18-22,2-7 name=Fleet")
    await stack.settle()
    await stack.click(blocks.ACTION_APPROVE, user=ANN)
    await stack.settle()
    await _run_wave_to_its_end(stack)
    assert stack.rt.store.campaign(1).state is S.ENDED


async def test_retry_failed_from_the_summary_requests_exactly_the_failed_devices_with_its_own_approval(
    tmp_path: Path,
) -> None:
    good, bad = sandbox_imeis(4), sandbox_imeis(3, kind="will_fail")
    async with running_stack(tmp_path) as stack:
        await finished_campaign_with_failures(stack, good, bad)
        original = stack.root()
        summary = summary_of(stack, original)
        assert retry_button_of(summary)["text"]["text"] == "Retry failed (3)…"

        await stack.click(blocks.ACTION_RETRY_FAILED, user=REQUESTER, message=summary)
        await stack.settle()
        [view] = opened_views(stack)
        shown = json.dumps(view, ensure_ascii=False)
        assert view["title"]["text"] == "Retry failed devices"
        assert "the 3 failed devices of FB-1" in shown and "Why they failed" in shown
        assert all(imei in shown for imei in bad) and not any(imei in shown for imei in good)
        # The original's firmware and windows (2-7 is no range the form offers: kept all the same).
        fields = submitted_as_shown(view)
        firmware = fields["firmware"]["firmware"]
        assert (firmware.get("selected_option") or {}).get("value", firmware.get("value")) == FIRMWARE
        assert [o["value"] for o in fields["window"]["window"]["selected_options"]] == ["18-22", "2-7"]
        posts = len(stack.thingspace.schedule_posts())

        await submit(stack, view)
        retry = stack.rt.store.campaign(2)
        assert retry.state is S.PENDING_APPROVAL
        assert sorted(stack.rt.store.device_ids(2)) == sorted(bad)  # exactly the failed ones
        original_campaign = stack.rt.store.campaign(1)
        assert (retry.firmware_name, retry.windows) == (original_campaign.firmware_name, original_campaign.windows)
        link = retries.link_of(stack.rt.store, 2)
        assert link is not None and (link.origin_id, link.failed) == (1, 3)

        card = json.dumps(stack.root().blocks, ensure_ascii=False)
        assert "Retry of FB-1" in card and "(3 failed devices)" in card
        # A link to the original's thread: the permalink of its card.
        assert f"archives/{CHANNEL}/p{original.ts.replace('.', '')}|Retry of FB-1>" in card
        told = [m.text for m in stack.standin.thread(CHANNEL, original.ts) if "asked to retry" in m.text]
        assert len(told) == 1 and "FB-2" in told[0] and "3 failed devices of FB-1" in told[0]

        # Nothing reaches ThingSpace before its own approval; the requester cannot give it.
        assert len(stack.thingspace.schedule_posts()) == posts
        _, refused = await stack.click(blocks.ACTION_APPROVE, user=REQUESTER)
        await stack.settle()
        assert "cannot" in json.dumps(stack.answers(refused))
        assert len(stack.thingspace.schedule_posts()) == posts
        await stack.click(blocks.ACTION_APPROVE, user=BOB)
        await stack.settle()
        [post] = stack.thingspace.schedule_posts()[posts:]
        assert sorted(post.json()["deviceList"]) == sorted(bad)


async def test_fota_retry_of_a_staged_rollout_takes_the_failed_devices_of_every_wave(tmp_path: Path) -> None:
    good, bad = sandbox_imeis(6), sandbox_imeis(2, kind="will_fail")
    async with running_stack(tmp_path) as stack:
        await stack.slash(schedule_text(good + bad) + " canary=2 waves=50%,100% success=1% halt=5")
        await stack.settle()
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        for _ in (2, 3):
            await _run_wave_to_its_end(stack)
            await stack.click(blocks.ACTION_PROMOTE, user=BOB, message=_promote_messages(stack)[-1])
            await stack.settle()
        await _run_wave_to_its_end(stack)
        assert stack.rt.store.campaign(1).state is S.ROLLED_OUT
        assert retry_button_of(summary_of(stack, stack.root()))["text"]["text"] == "Retry failed (2)…"

        response, url = await stack.slash("retry FB-1")
        assert response.status_code == 200
        await stack.settle()
        assert stack.answers(url) == []  # the form opened; nothing to say
        [view] = opened_views(stack)
        assert "the 2 failed devices of FB-1" in json.dumps(view)
        await submit(stack, view)
        new = stack.rt.store.list_campaigns(scope="all", limit=1, requests_only=True)[0]
        assert sorted(stack.rt.store.device_ids(new.id)) == sorted(bad)
        assert new.state is S.PENDING_APPROVAL and new.parent_id is None

        # One wave by its number: the wave that holds no failed device is refused, plainly.
        wave_with_none = next(
            n for n in (1, 2, 3)
            if not set(stack.rt.store.device_ids(stack.rt.store.find_campaign(f"FB-{n + 1}").id)) & set(bad)
        )
        _, url = await stack.slash(f"retry FB-1 w{wave_with_none}")
        await stack.settle()
        assert "has no failed devices" in json.dumps(stack.answers(url))
        assert len(opened_views(stack)) == 1


async def test_the_held_waves_retry_button_opens_the_form_with_that_waves_failed_devices(tmp_path: Path) -> None:
    imeis = sandbox_imeis(6, kind="will_fail")
    async with running_stack(tmp_path) as stack:
        await stack.slash(schedule_text(imeis) + " canary=2 waves=100% halt=5")
        await stack.settle()
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        await _run_wave_to_its_end(stack)
        message = next(
            m for m in stack.standin.thread(CHANNEL, stack.root().ts) if "missed its success threshold" in m.text
        )
        assert retry_button_of(message)["text"]["text"] == "Retry the wave's failed devices (2)…"
        await stack.click(blocks.ACTION_RETRY_FAILED, user=REQUESTER, message=message)
        await stack.settle()
        [view] = opened_views(stack)
        assert "the 2 failed devices of FB-1 w1/2" in json.dumps(view)
        await submit(stack, view)
        canary = stack.rt.store.device_ids(stack.rt.store.campaign(2).id)
        assert sorted(stack.rt.store.device_ids(3)) == sorted(canary)
        assert "Retry of FB-1 w1/2" in json.dumps(stack.root().blocks)


async def test_retry_refusals_say_the_value_and_the_rule_and_open_nothing(tmp_path: Path) -> None:
    good, bad = sandbox_imeis(2), sandbox_imeis(1, kind="will_fail")
    async with running_stack(tmp_path, FOTA_REQUESTERS=f"{REQUESTER},{ANN},{BOB}") as stack:
        await finished_campaign_with_failures(stack, good, bad)
        await stack.slash(schedule_text(sandbox_imeis(4)[2:]))  # FB-2, other devices, waiting for approval
        await stack.settle()

        async def refused(text: str, user: str = REQUESTER) -> str:
            """The one answer: in the ack (a mistake in the text) or on the response_url."""
            response, url = await stack.slash(text, user=user)
            await stack.settle()
            answers = [json.loads(response.content)] if response.content else []
            [answer] = answers + stack.answers(url)
            return json.dumps(answer, ensure_ascii=False)

        assert "FB-99" in await refused("retry FB-99")
        said = await refused("retry FB-2")
        assert "FB-2" in said and "not finished" in said
        assert "FOTA_REQUESTERS" in await refused("retry FB-1", user=EVE)
        said = await refused("retry FB-1 w2")
        assert "FB-1 is not a staged rollout" in said
        said = await refused("retry FB-1 two")
        assert "`/fota retry two`: is not a wave" in said
        assert opened_views(stack) == []

        # A campaign whose devices all succeeded has nothing to retry.
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        await _run_wave_to_its_end(stack)
        assert stack.rt.store.campaign(2).state is S.ENDED
        said = await refused("retry FB-2")
        assert "FB-2" in said and "has no failed devices" in said
        assert opened_views(stack) == []
