"""`/fota history ID`, the *History* button on `/fota status`, `fota-bot history ID` and
`fota-bot callback-url`: the audit trail of a campaign, and the URL to register by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from bot.cli import main
from commands import blocks
from storage.history import HistoryEntry
from tests.e2e.test_operator import click_answer, command, elements, request, text_of
from tests.support.blocks import check_blocks, check_escaped
from tests.support.stack import ANN, BOB, REQUESTER, running_stack


async def test_history_tells_every_decision_and_state_change_with_who(tmp_path: Path) -> None:
    async with running_stack(tmp_path, FOTA_REQUIRED_APPROVALS="2") as stack:
        await request(stack)
        await stack.click(blocks.ACTION_APPROVE, user=ANN)
        await stack.settle()
        await stack.click(blocks.ACTION_APPROVE, user=BOB)
        await stack.settle()
        campaign = stack.rt.store.campaign(1)
        assert campaign.thingspace_id

        answer = await command(stack, "history FB-1")
        body = text_of(answer)
        assert "History of Ref FB-1" in body
        lines = "\n".join(b["text"]["text"] for b in answer["blocks"] if b["type"] == "section").splitlines()
        told = [(line.split(" · ")[1], line.split(" · ")[2]) for line in lines]
        assert told == [
            ("*requested*", f"<@{REQUESTER}>"),
            ("*approval*", f"<@{ANN}>"),
            ("*approval*", f"<@{BOB}>"),
            ("*pending_approval → approved*", f"<@{BOB}>"),
            ("*approved → submitting*", "fota-bot"),
            ("*submitting → submitted*", "ThingSpace"),
        ], lines
        assert "2 of 2 approvals" in body and campaign.content_hash[:12] in body
        check_blocks(answer["blocks"])
        check_escaped(answer)

        # The same trail one click away from /fota status.
        status = await command(stack, "status FB-1")
        [button] = elements(status["blocks"], blocks.ACTION_HISTORY)
        assert button["text"]["text"] == "History"
        [clicked] = await click_answer(stack, status, blocks.ACTION_HISTORY, user=BOB)
        assert clicked["blocks"] == answer["blocks"]
        assert clicked.get("replace_original") is False  # the status stays where it was

        # A damaged button value is refused in words, and nothing else is said.
        [stale] = await click_answer(stack, status, blocks.ACTION_HISTORY, user=BOB, value="FB-1; drop")
        assert "out of date" in text_of(stale)

        unknown = await command(stack, "history FB-9")
        assert "No campaign `FB-9`" in text_of(unknown)
        missing, _ = await stack.slash("history")  # a typing mistake is answered in the ack
        assert "needs a campaign ID" in missing.text


async def test_fota_bot_history_prints_the_same_trail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    async with running_stack(tmp_path) as stack:
        await request(stack)
        shown = stack.rt.store.campaign(1).content_hash
        await stack.rt.service.reject(1, user=BOB, shown_hash=shown, reason="wrong model")
        await stack.settle()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FOTA_DB", str(tmp_path / "fota.db"))
    assert main(["history", "FB-1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "FB-1  rejected  ThingSpace id -"
    assert out[1].endswith(f"{REQUESTER:<12} requested")
    assert out[2].endswith(f"{BOB:<12} pending_approval → rejected  wrong model")
    assert main(["history", "FB-2"]) == 1
    assert "No campaign `FB-2`" in capsys.readouterr().err


def test_a_long_history_stays_within_slack_limits_and_says_where_the_rest_is() -> None:
    at = dt.datetime(2026, 11, 26, 9, 0, tzinfo=dt.UTC)
    entries = [HistoryEntry(at + dt.timedelta(minutes=i), "thingspace", "CampaignScheduled → CampaignScheduled",
                            "x" * 300) for i in range(600)]
    reply = blocks.history_reply("FB-7", entries)
    check_blocks(reply["blocks"])
    check_escaped(reply)
    assert "more line" in text_of(reply)
    assert "`fota-bot history FB-7`" in text_of(reply)


def test_callback_url_prints_the_full_url_once_and_keeps_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("FOTA_PUBLIC_URL", "FOTA_CALLBACK_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FOTA_DB", str(tmp_path / "fota.db"))
    assert main(["callback-url"]) == 2
    assert "FOTA_PUBLIC_URL is not set" in capsys.readouterr().err
    monkeypatch.setenv("FOTA_PUBLIC_URL", "https://fota.example.com/")
    assert main(["callback-url"]) == 0
    first = capsys.readouterr().out.strip()
    assert first.startswith("https://fota.example.com/thingspace/callbacks/") and len(first) > 60
    assert main(["callback-url"]) == 0
    assert capsys.readouterr().out.strip() == first  # generated once, kept in FOTA_DB
    monkeypatch.setenv("FOTA_CALLBACK_TOKEN", "cbtok-Q9v7Lm2Xr4Tz8Wn1")
    assert main(["callback-url"]) == 0
    assert capsys.readouterr().out.strip() == "https://fota.example.com/thingspace/callbacks/cbtok-Q9v7Lm2Xr4Tz8Wn1"
