"""Forged or odd input in signed and unsigned requests: user IDs, response URLs, file URLs,
what reaches the log (one line per record, no request bodies, no tokens)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from bot.logs import RateLimited, escape_controls
from bot.slack_urls import trusted_file_url, trusted_response_url
from bot.workflow.campaigns import distinct_prefixes
from commands import blocks
from storage.states import CampaignState
from tests.e2e.test_faults_secrets import serve_logging
from tests.e2e.test_flow import SCHEDULE, request_campaign
from tests.support.slack import sign, slash_command_body
from tests.support.stack import BOT_TOKEN, REQUESTER, SECRET, running_stack

STANDIN_API = "http://127.0.0.1:4567/api/"


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://hooks.slack.com/commands/T1/2/abc", True),
        ("https://hooks.slack.com:443/actions/T1/2/abc", True),
        ("http://hooks.slack.com/commands/T1/2/abc", False),  # not https
        ("https://hooks.slack.com:8443/commands/T1/2/abc", False),  # not 443
        ("https://hooks.slack.com.evil.example/commands/x", False),
        ("https://evil.example/hooks.slack.com", False),
        ("https://user@hooks.slack.com/commands/x", False),
        ("https://hooks.slack.com:bad/commands", False),
        ("http://127.0.0.1:4567/response/abc", True),  # SLACK_API_URL's own origin (the stand-in)
        ("http://127.0.0.1:4568/response/abc", False),
        ("", False),
    ],
)
def test_response_urls_only_on_slacks_hooks_host_over_https(url: str, trusted: bool) -> None:
    assert trusted_response_url(url, STANDIN_API) is trusted


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://files.slack.com/files-pri/T1-F1/download/devices.csv", True),
        ("http://files.slack.com/files-pri/T1-F1/download/devices.csv", False),
        ("https://files.slack.com:444/files-pri/T1-F1/download/devices.csv", False),
        ("https://slack.com/files-pri/x", False),
        ("https://evil.slack.com.example/x", False),
        ("https://files.slack.com@evil.example/x", False),
        ("http://127.0.0.1:4567/files/F1/devices.csv", True),
    ],
)
def test_the_bot_token_goes_only_to_slacks_file_hosts_over_https_on_443(url: str, trusted: bool) -> None:
    assert trusted_file_url(url, STANDIN_API) is trusted


async def test_a_lower_case_copy_of_the_requesters_id_is_not_another_person(tmp_path: Path) -> None:
    # No FOTA_APPROVERS: anyone but the requester may approve, so only the ID tells them apart.
    async with running_stack(tmp_path, FOTA_APPROVERS="") as stack:
        await request_campaign(stack)
        response, _ = await stack.click(blocks.ACTION_APPROVE, user=REQUESTER.lower())
        await stack.settle()
        assert response.status_code == 400
        assert stack.rt.store.decisions(1) == []
        assert stack.rt.store.campaign(1).state is CampaignState.PENDING_APPROVAL
        assert stack.thingspace.schedule_posts() == []
        command, _ = await stack.slash(SCHEDULE, user="u0someone")
        assert command.status_code == 400
        assert len(stack.rt.store.list_campaigns(scope="all")) == 1


async def test_a_response_url_off_slacks_hooks_host_is_never_used(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        body = slash_command_body(SCHEDULE, user_id=REQUESTER, response_url="https://evil.example/hook")
        response = await stack.post_slack(body)
        assert response.status_code == 200
        await stack.settle()
        payloads = [row[0] for row in stack.rt.store.db.execute("SELECT payload FROM outbox WHERE kind = 'confirm'")]
        assert payloads and not any("evil.example" in p for p in payloads)
        # The confirmation goes by direct message instead, as for a modal.
        dms = [c for c in stack.standin.calls if c.method == "chat.postMessage" and c.args.get("channel") == REQUESTER]
        assert dms and "FB-1" in json.dumps(dms[-1].args)


def test_two_hashes_are_never_shown_as_one_value() -> None:
    a = "0123456789abcdef" * 4
    b = a[:-1] + "0"
    shown, current = distinct_prefixes(a, b)
    assert shown != current and a.startswith(shown) and b.startswith(current)
    assert distinct_prefixes("f" + a[1:], a) == ("f" + a[1:12], a[:12])


async def test_at_debug_no_request_body_token_or_forged_line_reaches_the_log(tmp_path: Path) -> None:
    marker = "BODY-MARKER-5c1e"
    async with running_stack(tmp_path, FOTA_LOG_LEVEL="DEBUG") as stack:
        with serve_logging(stack.env) as (output, _):
            forged = f"text={marker}\nERROR bot.app: forged line {BOT_TOKEN}".encode()
            unsigned = await stack.http.post(
                "/slack/events",
                content=forged,
                headers={"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v0=" + "0" * 64,
                         "Content-Type": "application/x-www-form-urlencoded"},
            )
            assert unsigned.status_code == 401
            # A signed event nobody listens for: Bolt logs it as unhandled, with the body it saw.
            event = json.dumps({"type": "event_callback", "team_id": "T1", "api_app_id": "A1",
                                "event": {"type": "reaction_added", "user": "U0ANN", "reaction": marker},
                                "event_id": "Ev1", "event_time": 1})
            await stack.http.post("/slack/events", content=event, headers=sign(event, SECRET))
            await stack.slash(f"status {marker}")
            await stack.settle()
            logging.getLogger("bot.test").info("user text: %s", "a\r\nERROR forged\u2028line")
        log = output.getvalue()
    assert "user text: a\\r\\nERROR forged\\u2028line" in log
    assert marker not in log and BOT_TOKEN not in log and SECRET not in log
    assert not [line for line in log.splitlines() if "forged" in line and not line.startswith("20")]


def test_control_characters_are_escaped() -> None:
    assert escape_controls("a\rb\nc\x1b[0m\x00\x85") == "a\\rb\\nc\\x1b[0m\\x00\\x85"


def test_what_strangers_can_trigger_is_logged_once_a_minute_with_a_count() -> None:
    now = [0.0]
    limiter = RateLimited(60, clock=lambda: now[0])
    logger = logging.getLogger("test.ratelimited")

    def record() -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.ERROR, __file__, 1,
                                 "socket.accept() out of system resource\nsocket: <fd=%d>", (7,), None)

    passed = [limiter.filter(record()) for _ in range(1000)]
    assert passed.count(True) == 1
    now[0] = 61
    later = record()
    assert limiter.filter(later) and "999 more like this" in later.getMessage()
