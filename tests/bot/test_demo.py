"""`fota-bot demo` runs a whole rollout with no credentials and prints the thread."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.cli import main
from bot.demo import APPROVER, FAULT_SHARE, DemoRefused, run_demo, waves_devices
from bot.server import exclusive_lock
from bot.standins.thingspace import device_facts
from tests.e2e.test_flow import request_campaign
from tests.support.stack import running_stack


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


async def test_the_demo_keeps_its_database_where_fota_db_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "demo.db"
    lines: list[str] = []
    assert await run_demo(devices=3, speed=40.0, write=lines.append, db_path=db) == 0
    assert lines[0] == f"fota-bot demo: database {db} (FOTA_DB); it is kept for `fota-bot campaigns list`."
    assert "`history FB-n` show what the demo left" in lines[-1]

    for name in list(os.environ):
        if name.startswith(("SLACK_", "FOTA_", "THINGSPACE_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FOTA_DB", str(db))
    assert main(["campaigns", "list", "--all"]) == 0
    assert main(["history", "FB-1"]) == 0
    assert main(["campaigns", "export", "FB-1", "--out", str(tmp_path / "fb1.csv")]) == 0
    out = capsys.readouterr().out
    assert "FB-1     CampaignEnded" in out
    assert f"{APPROVER:<12} pending_approval → approved" in out
    assert len((tmp_path / "fb1.csv").read_text().splitlines()) == 1 + 3


async def test_the_demo_never_writes_into_a_real_bots_database(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
    before = (tmp_path / "fota.db").read_bytes()
    with pytest.raises(DemoRefused, match=r"holds 1 campaign\(s\) of a real bot"):
        await run_demo(devices=3, speed=40.0, write=lambda _: None, db_path=tmp_path / "fota.db")
    assert (tmp_path / "fota.db").read_bytes() == before


def test_fota_bot_demo_refuses_a_database_another_bot_is_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FOTA_DB", str(tmp_path / "busy.db"))
    with exclusive_lock(tmp_path / "busy.db"):
        assert main(["demo", "--devices", "2"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fota-bot: another fota-bot is already serving FOTA_DB=") and "Traceback" not in err


async def test_the_waves_demo_passes_the_canary_promotes_and_halts_itself_on_the_bad_build() -> None:
    imeis, planned = waves_devices()
    doomed = [i for i in imeis if device_facts(i).lot < FAULT_SHARE]
    # The chosen fleet: a clean canary, the bad build's device in wave 2, none in wave 3.
    assert doomed and set(doomed) <= set(planned[1].devices)
    assert not set(doomed) & (set(planned[0].devices) | set(planned[2].devices))
    lines: list[str] = []
    assert await run_demo(speed=40.0, write=lines.append, waves=True) == 0
    output = "\n".join(lines)
    canary_passed = output.index("*FB-1 w1/3 passed:* 2 of 2 succeeded, 0 failed")
    promoted = output.index(f"<@{APPROVER}> reads the canary's result and clicks Promote to wave 2/3")
    halted = output.index("*FB-1 halted itself:* FB-1 w2/3 crossed its halt threshold")
    assert canary_passed < promoted < halted
    assert f"`{doomed[0]}` — Firmware image rejected by the device (signature check failed)" in output
    # Both the requester and the approver are told of the halt, each in their own DM.
    for who in ("requester", "approver"):
        assert f"direct message to the {who}: :octagonal_sign: *FB-1 halted itself:*" in output, who
    assert "*w3/3* (up to 100%): never sent (2 devices)" in output
    assert "ThingSpace sandbox accepted Ref FB-1 w3/3" not in output
    for check in ("the canary (2 devices) passed", f"wave 2 was promoted by <@{APPROVER}>",
                  "wave 2 halted the rollout", "wave 3 (2 devices) never reached ThingSpace"):
        assert f"✓ {check}" in output, check
    assert lines[-1] == "\nDone: FB-1 went as planned: canary passed, promoted, halted itself."


def test_fota_bot_demo_help_offers_the_waves(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--waves" in capsys.readouterr().out
