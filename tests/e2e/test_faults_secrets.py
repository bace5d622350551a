"""No secret in the logs or in Slack, through a whole flow at DEBUG.

The bot runs in live mode (ThingSpace credentials set) against the sandbox, with an explicit
callback token, at FOTA_LOG_LEVEL=DEBUG, logging set up exactly as `fota-bot serve` does it
(`configure_logging` with the same secret list). One campaign goes from the request to its end:
approval, a 401 cured by a fresh token, submission, callbacks (and a caller with a wrong callback
token), re-reads, the summary and the CSV.

Two captures are checked:
- what the operator reads: the production handler's output, redaction filter included;
- the raw records of our own loggers (bot, commands, storage), before any filter: our code must
  not rely on the last line of defence to keep a secret out.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bot.logs import LIBRARIES, configure_logging
from bot.settings import load
from commands import blocks
from storage.states import CampaignState
from tests.support.stack import ANN, BOT_TOKEN, FIRMWARE, SECRET, Stack, running_stack

ACCOUNT = "0642233522-00001"
CALLBACK_TOKEN = "cbtok-Q9v7Lm2Xr4Tz8Wn1"
THINGSPACE = {
    "THINGSPACE_URL": "https://thingspace.example.test",
    "THINGSPACE_CLIENT_ID": "tsclient-8d41c0f5e2",
    "THINGSPACE_CLIENT_SECRET": "tssecret-b7e9a3d16c",
    "THINGSPACE_USERNAME": "tsuser-fota-ops-5521",
    "THINGSPACE_PASSWORD": "tspass-Zk3!q8Lp0w",
    "THINGSPACE_ACCOUNT": ACCOUNT,
}
OUR_LOGGERS = ("bot", "commands", "storage")


class RawRecords(logging.Handler):
    """Every record of our own loggers as emitted, before the redaction filter runs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in OUR_LOGGERS:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
            self.lines.append(f"{record.name}: {text}")


@contextmanager
def serve_logging(env: dict[str, str]) -> Iterator[tuple[io.StringIO, RawRecords]]:
    """`fota-bot serve`'s logging at DEBUG, into a buffer; the process's logging restored after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    noisy = ("httpx", "httpcore", *LIBRARIES)
    saved_levels = {name: logging.getLogger(name).level for name in noisy}
    raw = RawRecords()
    try:
        configure_logging("DEBUG", load(env).secret_values())
        [handler] = root.handlers
        assert isinstance(handler, logging.StreamHandler)
        output = io.StringIO()
        handler.setStream(output)
        # The raw handler sits beside the production one, not behind its filter.
        root.addHandler(raw)
        yield output, raw
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


def secrets_in_play(stack: Stack) -> dict[str, str]:
    client_id, client_secret = (
        THINGSPACE["THINGSPACE_CLIENT_ID"],
        THINGSPACE["THINGSPACE_CLIENT_SECRET"],
    )
    found = {
        "bot token": BOT_TOKEN,
        "signing secret": SECRET,
        "callback token": CALLBACK_TOKEN,
        "ThingSpace client id": client_id,
        "ThingSpace client secret": client_secret,
        "ThingSpace username": THINGSPACE["THINGSPACE_USERNAME"],
        "ThingSpace password": THINGSPACE["THINGSPACE_PASSWORD"],
        "ThingSpace Basic credentials": base64.b64encode(
            f"{client_id}:{client_secret}".encode()
        ).decode(),
    }
    # The OAuth tokens and M2M sessions ThingSpace handed out during the flow.
    for i, token in enumerate(stack.sandbox.auth.tokens):
        found[f"OAuth access token #{i + 1}"] = token
    for i, session in enumerate(stack.sandbox.auth.sessions):
        found[f"M2M session #{i + 1}"] = session
    return found


def slack_traffic(stack: Stack) -> str:
    """Everything the bot sent to Slack: API calls, response_url posts, uploaded files."""
    parts = [json.dumps(call.args, default=str) for call in stack.standin.calls]
    parts += [json.dumps(r.body, default=str) for r in stack.standin.responses]
    parts += [(f.content or b"").decode("utf-8", "replace") for f in stack.standin.uploads]
    return "\n".join(parts)


async def test_a_whole_flow_at_debug_leaks_no_secret(tmp_path: Path) -> None:
    env_overrides = {**THINGSPACE, "FOTA_CALLBACK_TOKEN": CALLBACK_TOKEN, "FOTA_LOG_LEVEL": "DEBUG"}
    async with running_stack(tmp_path, **env_overrides) as stack:
        with serve_logging(stack.env) as (output, raw):
            assert stack.rt.mode == "live"
            callback_url = f"http://bot/thingspace/callbacks/{CALLBACK_TOKEN}"
            await stack.rt.thingspace.register_callback(ACCOUNT, callback_url)
            stack.sandbox.set_callback_transport(httpx.ASGITransport(app=stack.rt.asgi))

            devices = "354658090353977,490154203237518,356938035643809"
            text = (
                f"schedule firmware={FIRMWARE} from=SR1.2.0.0-10512 to=SR1.2.0.0-10657 "
                f"start=today end=+3d devices={devices} account={ACCOUNT}"
            )
            response, _ = await stack.slash(text)
            assert response.status_code == 200
            await stack.settle()
            stack.sandbox.expire_token()  # a 401 and a fresh login, logged at DEBUG
            await stack.click(blocks.ACTION_APPROVE, user=ANN)
            await stack.settle()
            assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTED

            wrong = await stack.http.post(
                "/thingspace/callbacks/not-the-token", json={"status": "x"}
            )
            assert wrong.status_code == 404
            await stack.run_sandbox(40, step=2.0)
            stack.clock.advance(seconds=120)  # the debounced re-read
            await stack.settle()
            assert stack.rt.store.campaign(1).state is CampaignState.ENDED
            for path in ("/metrics", "/healthz"):
                output.write((await stack.http.get(path)).text)

        operator_log = output.getvalue()
        our_raw = "\n".join(raw.lines)
        # The captures are real: the flow was logged, at DEBUG, from start to end.
        assert "DEBUG" in operator_log and "FB-1 submitted" in operator_log
        assert any("401" in line for line in raw.lines)
        slack = slack_traffic(stack)
        assert "FB-1" in slack

        secrets = secrets_in_play(stack)
        assert len(secrets) >= 10  # two tokens and two sessions were handed out
        for what, value in secrets.items():
            assert value not in operator_log, f"{what} in the operator's log"
            assert value not in our_raw, f"{what} logged by our code (only the filter hid it)"
            assert value not in slack, f"{what} sent to Slack"
