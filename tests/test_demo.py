"""`fota-bot demo` runs a whole rollout with no credentials and prints the thread."""

from __future__ import annotations

from bot.demo import run_demo


async def test_the_demo_runs_a_whole_rollout_and_prints_the_thread() -> None:
    lines: list[str] = []
    # A fast clock: the demo's own default is slower, so people can watch it unfold.
    assert await run_demo(devices=6, speed=40.0, write=lines.append) == 0
    output = "\n".join(lines)
    assert "card posted" in output and "clicks Approve" in output
    assert "card updated" in output.split("clicks Approve")[0]  # the checks reached the card first
    assert "CampaignEnded" in output
    assert "FB-1-devices.csv" in output
    assert "Done: FB-1 is CampaignEnded" in output
