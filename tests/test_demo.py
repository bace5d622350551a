"""`fota-bot demo` runs a whole rollout with no credentials and prints the thread."""

from __future__ import annotations

from bot.demo import run_demo


async def test_the_demo_runs_a_whole_rollout_and_prints_the_thread() -> None:
    lines: list[str] = []
    # A fast clock: the demo's own default is slower, so people can watch it unfold.
    assert await run_demo(devices=6, speed=40.0, write=lines.append) == 0
    output = "\n".join(lines)
    assert "card posted" in output and "clicks Approve 6 eligible" in output
    before_click = output.split("clicks Approve")[0]
    # The checks reached the card first: a few devices excluded, each with why.
    assert "card updated" in before_click and "(4 of 10 devices excluded)" in before_click
    assert "6 of 10 devices eligible" in before_click
    for why in ("not in account", "not FOTA-eligible", "of another make or model"):
        assert why in before_click, why
    assert "CampaignEnded" in output
    assert "FB-1-devices.csv" in output
    assert "*Excluded at approval, never sent:* 4 devices" in output
    assert "Done: FB-1 is CampaignEnded" in output
    assert (
        "Of 10 devices asked for, 4 were excluded at approval and never sent; 6 were sent: "
        "5 succeeded, 1 failed. Every device is accounted for." in output
    )
