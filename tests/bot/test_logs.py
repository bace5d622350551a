"""Logs an operator can use: one INFO line per decision and outcome, each with its Ref; library
chatter at WARNING unless DEBUG; FOTA_LOG_FORMAT=json is one JSON object per line."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bot.logs import LIBRARIES, JsonLines, RedactSecrets, configure_logging
from bot.settings import load
from commands import blocks
from storage.states import CampaignState
from tests.e2e.test_flow import request_campaign
from tests.support.stack import ANN, BOB, BOT_TOKEN, REQUESTER, running_stack


@contextmanager
def operator_log(level: str, fmt: str, env: dict[str, str]) -> Iterator[io.StringIO]:
    """Logging exactly as `fota-bot serve` sets it up, into a buffer; restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    names = ("httpx", "httpcore", *LIBRARIES)
    saved_levels = {name: logging.getLogger(name).level for name in names}
    try:
        configure_logging(level, load(env).secret_values(), fmt)
        [handler] = root.handlers
        assert isinstance(handler, logging.StreamHandler)
        output = io.StringIO()
        handler.setStream(output)
        yield output
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        for name, saved in saved_levels.items():
            logging.getLogger(name).setLevel(saved)


async def test_a_whole_rollout_is_told_in_json_lines_each_with_its_ref(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        with operator_log("INFO", "json", stack.env) as output:
            await request_campaign(stack)
            await stack.click(blocks.ACTION_APPROVE, user=ANN)
            await stack.settle()
            await stack.run_sandbox(40, step=2.0)
            stack.clock.advance(seconds=120)  # the debounced re-read confirms the end
            await stack.settle()
            assert stack.rt.store.campaign(1).state is CampaignState.ENDED

    entries = [json.loads(line) for line in output.getvalue().splitlines()]  # every line parses
    assert entries
    for entry in entries:
        assert set(entry) >= {"time", "level", "logger", "message", "ref"}
        assert BOT_TOKEN not in entry["message"]
    # Library chatter (scheduler jobs, HTTP requests) stays below INFO.
    assert {e["logger"].split(".")[0] for e in entries} <= {"bot", "commands", "storage"}, entries
    told = [e["message"] for e in entries if e["ref"] == "FB-1"]
    expected = [
        f"FB-1 requested by {REQUESTER}",
        "FB-1 pre-flight: 3 of 3 devices eligible",
        f"FB-1 pending_approval -> approved by {ANN}",
        "FB-1 approved -> submitting by fota-bot",
        "FB-1 submitted: ThingSpace id",
        "-> CampaignRequestQueued",
        "-> CampaignEnded",
        "FB-1 ended CampaignEnded: succeeded 3",
    ]
    position = 0
    for fragment in expected:  # in this order, each once
        hits = [i for i, message in enumerate(told) if fragment in message]
        assert len(hits) == 1, (fragment, told)
        assert hits[0] >= position, (fragment, told)
        position = hits[0]


async def test_rejection_and_withdrawal_say_who(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        with operator_log("INFO", "text", stack.env) as output:
            await request_campaign(stack)
            shown = stack.rt.store.campaign(1).content_hash
            await stack.rt.service.reject(1, user=BOB, shown_hash=shown, reason="wrong firmware")
            await request_campaign(stack)
            await stack.rt.service.withdraw(2, user=REQUESTER)
            await stack.settle()
    text = output.getvalue()
    assert f"FB-1 pending_approval -> rejected by {BOB}: wrong firmware" in text
    assert f"FB-2 pending_approval -> withdrawn by {REQUESTER}" in text
    # The text format is one line per record: time, level, logger, message.
    line = next(line for line in text.splitlines() if "-> rejected" in line)
    assert " INFO storage.store: FB-1 " in line


def test_library_chatter_is_quiet_unless_debug() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    names = ("httpx", "httpcore", *LIBRARIES)
    saved_levels = {name: logging.getLogger(name).level for name in names}
    try:
        configure_logging("INFO", [])
        assert all(logging.getLogger(name).getEffectiveLevel() == logging.WARNING for name in LIBRARIES)
        configure_logging("DEBUG", [])
        assert all(logging.getLogger(name).getEffectiveLevel() == logging.INFO for name in LIBRARIES)
        # Request URLs carry the callback token: never logged, whatever the level.
        assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("bot").getEffectiveLevel() == logging.DEBUG
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        for name, saved in saved_levels.items():
            logging.getLogger(name).setLevel(saved)


def test_json_lines_carry_the_ref_the_exception_and_no_secret() -> None:
    record = logging.LogRecord("bot.x", logging.ERROR, __file__, 1, "%s failed with %s", ("FB-7", "xoxb-1-2-3"), None)
    try:
        raise ValueError("token xoxb-9-9-9 inside")
    except ValueError:
        record.exc_info = sys.exc_info()
    RedactSecrets([]).filter(record)
    entry = json.loads(JsonLines().format(record))
    assert entry["ref"] == "FB-7" and entry["level"] == "ERROR" and entry["logger"] == "bot.x"
    assert entry["message"] == "FB-7 failed with x***-********"
    assert "ValueError" in entry["exc"] and "xoxb-9" not in entry["exc"]
    assert entry["time"].endswith("+00:00")
    explicit = logging.LogRecord("bot.x", logging.INFO, __file__, 1, "no ref in the text", None, None)
    explicit.ref = "FB-3"
    assert json.loads(JsonLines().format(explicit))["ref"] == "FB-3"
    bare = logging.LogRecord("bot.x", logging.INFO, __file__, 1, "started", None, None)
    assert json.loads(JsonLines().format(bare))["ref"] is None
