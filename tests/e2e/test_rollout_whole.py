"""A staged rollout seen whole, end to end through the signed HTTP app, the Slack stand-in and
the sandbox: one row per request in `/fota list` and the App Home (with its current wave),
`/fota status` with the plan and the current wave, one direct message at the start and one at
the end, and one summary across every wave (its CSVs, its *Retry failed* button)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from bot.standins.thingspace import sandbox_imeis
from commands import blocks
from storage.states import CampaignState
from tests.e2e.test_operator import command, open_home, text_of
from tests.e2e.test_rollout import schedule_text
from tests.e2e.test_staged import _promote_messages, _run_wave_to_its_end
from tests.support.stack import ANN, BOB, CHANNEL, REQUESTER, Stack, running_stack

S = CampaignState


def dms(stack: Stack, user: str) -> list[str]:
    return [m.text for m in stack.standin.messages(stack.standin.dm_channel(user))]


def summaries(stack: Stack) -> list[Any]:
    return [m for m in stack.standin.thread(CHANNEL, stack.root().ts) if "*Sent:*" in json.dumps(m.blocks)]


async def _staged_to_wave_2(stack: Stack, imeis: list[str], keys: str) -> None:
    await stack.slash(schedule_text(imeis) + keys)
    await stack.settle()
    await stack.click(blocks.ACTION_APPROVE, user=ANN)
    await stack.settle()
    await _run_wave_to_its_end(stack)
    await stack.click(blocks.ACTION_PROMOTE, user=BOB, message=_promote_messages(stack)[-1])
    await stack.settle()


async def test_list_home_and_status_show_a_staged_request_as_one_row_with_its_current_wave(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await _staged_to_wave_2(stack, sandbox_imeis(8), " canary=2 waves=50%,100%")
        assert [c.id for c in stack.rt.store.list_campaigns(scope="all", limit=10)] == [3, 2, 1]
        await stack.run_sandbox(6, step=2.0)  # wave 2 under way

        listed = text_of(await command(stack, "list"))
        # One row: the request, with its current wave; not a row for each wave's campaign.
        assert "Ref FB-1" in listed and "wave 2/3 running" in listed
        assert "FB-1 w1/3" not in listed and "FB-1 w2/3" not in listed and "Ref FB-2" not in listed
        assert "FB-1 w" not in text_of(await command(stack, "list all"))

        home = json.dumps(await open_home(stack, REQUESTER), ensure_ascii=False)
        assert "*Ref FB-1* · :ladder: Rolling out in waves" in home and "wave 2/3 running" in home
        assert "FB-1 w1/3" not in home and "FB-1 w2/3" not in home

        status = text_of(await command(stack, "status FB-1"))
        assert "Rolling out in waves" in status
        assert "w1 ✓" in status and ("w2 ▓" in status or "w2 ░" in status)
        assert "w3 ·" in status
        assert "*Now:* wave 2/3 running" in status


async def test_one_dm_per_rollout_and_one_summary_across_its_waves(tmp_path: Path) -> None:
    good = sandbox_imeis(6)
    bad = sandbox_imeis(2, kind="will_fail")
    async with running_stack(tmp_path) as stack:
        # halt=5: the failed devices of the last wave do not halt it; every wave is sent.
        await _staged_to_wave_2(stack, good[:2] + good[2:] + bad, " canary=2 waves=50%,100% success=1% halt=5")
        await _run_wave_to_its_end(stack)
        await stack.click(blocks.ACTION_PROMOTE, user=BOB, message=_promote_messages(stack)[-1])
        await stack.settle()
        await _run_wave_to_its_end(stack)
        assert stack.rt.store.campaign(1).state is S.ROLLED_OUT
        assert len(stack.thingspace.schedule_posts()) == 3

        # The requester: approved, wave 1 submitted, and the end of the rollout; nothing per wave.
        said = dms(stack, REQUESTER)
        assert len(said) == 3, said
        assert "approved" in said[0] and "FB-1 w1/3 was submitted" in said[1]
        assert "Rolled out: every wave ended" in said[2] and "Ref FB-1:" in said[2]
        assert "6 of 8 devices upgraded" in said[2] and "2 failed" in said[2]

        # One summary for the rollout, with each wave's line, totals and reasons.
        [summary] = summaries(stack)
        text = json.dumps(summary.blocks, ensure_ascii=False)
        assert "*Sent:* 8 devices · *succeeded* 6 · *failed* 2" in text
        for number in (1, 2, 3):
            assert f"*w{number}/3*" in text
        assert "*Failed, by reason*" in text
        [retry] = [e for b in summary.blocks for e in b.get("elements", []) if e.get("action_id") == blocks.ACTION_RETRY_FAILED]
        assert retry["text"]["text"] == "Retry failed (2)…"

        # Its CSVs cover every wave: every device once; the failed ones in the reasons' CSVs.
        files = {f.name: f for f in stack.standin.uploads}
        assert set(files) >= {"FB-1-devices.csv", "FB-1-failed-1.csv"}
        rows = list(csv.DictReader(io.StringIO((files["FB-1-devices.csv"].content or b"").decode())))
        assert sorted(r["imei"] for r in rows) == sorted(good + bad)
        failed = [
            row["imei"]
            for name, file in files.items()
            if name.startswith("FB-1-failed-")
            for row in csv.DictReader(io.StringIO((file.content or b"").decode()))
        ]
        assert sorted(failed) == sorted(bad)
        # No wave had a summary or a CSV of its own.
        assert not [n for n in files if " w" in n or "w1" in n]


async def test_a_halted_rollout_gets_its_summary_once_its_running_wave_ended(tmp_path: Path) -> None:
    imeis = sandbox_imeis(6, kind="will_fail")
    async with running_stack(tmp_path) as stack:
        await stack.slash(schedule_text(imeis) + " canary=2 waves=50%,100% halt=1")
        await stack.settle()
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        await _run_wave_to_its_end(stack)
        assert stack.rt.store.campaign(1).state is S.HALTED
        [summary] = summaries(stack)
        text = json.dumps(summary.blocks, ensure_ascii=False)
        assert "Halted: no further wave is sent" in text and "crossed the halt threshold" in text
        assert "never sent (2 devices)" in text
        # The requester: approved, wave 1 submitted, the halt; no message per wave's end.
        said = dms(stack, REQUESTER)
        assert len(said) == 3 and "halted itself" in said[2], said
        await stack.restart()
        await stack.settle()
        assert len(summaries(stack)) == 1
