"""`fota-bot demo`: one whole rollout with no credentials at all, printed as it unfolds.

The real app, wired exactly as `serve` wires it, with a local stand-in for Slack's Web API
(over real HTTP on 127.0.0.1) and the built-in ThingSpace sandbox on a sped-up clock. A
requester types `/fota schedule …` for a fleet with a few devices that should not take the
firmware (another model, unknown to the account, not FOTA-eligible); pre-flight excludes them,
an approver clicks the card's primary "Approve N eligible" (both as Slack-signed requests), and
the thread is printed as messages arrive and the card changes. It ends by accounting for every
device: excluded at approval, or sent and then succeeded or failed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from bot.app import Runtime, build_runtime
from bot.server import exclusive_lock, serve_in_loop
from bot.settings import load
from bot.standins.slack import RecordedCall, SlackStandIn, create_slack_standin_app, render_message
from bot.standins.slack.records import Message
from bot.standins.thingspace import (
    Sandbox,
    SandboxClock,
    SandboxTimings,
    device_facts,
    sandbox_imeis,
)
from bot.workflow.planner import assign
from storage import preflight
from storage.findings import CHECKING
from storage.plan import WHOLE, RolloutPlan, WaveAssignment
from storage.plan import DeviceFacts as PlanFacts
from storage.store import Store
from storage.waves import plan_of

# The buttons the demo's approver clicks (the ids Slack sends back; see commands/blocks).
ACTION_APPROVE = "fota_approve"
ACTION_PROMOTE = "fota_promote"

DEMO_SECRET = "demo-signing-secret"
DEMO_TOKEN = "xoxb-0000-demo"
CHANNEL = "C0DEMO"
REQUESTER = "U0DEMOREQ"
APPROVER = "U0DEMOAPP"
FIRMWARE = "SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657"
# The demo ends by itself: a whole rollout takes well under this at the default speed.
TIME_LIMIT = 55.0


def _signed(body: bytes) -> dict[str, str]:
    """Headers exactly as Slack signs a request (v0 HMAC-SHA256 of timestamp and body)."""
    timestamp = str(int(time.time()))
    base = b"v0:" + timestamp.encode() + b":" + body
    signature = "v0=" + hmac.new(DEMO_SECRET.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


class _Printer:
    """Prints each new message, and each change of the card, once."""

    def __init__(self, standin: SlackStandIn, write: Any = print):
        self.standin = standin
        self.write = write
        self.started = time.monotonic()
        self.last_card: list[str] = []

    def __call__(self, call: RecordedCall) -> None:
        if not call.ok or call.method not in ("chat.postMessage", "chat.update", "files.completeUploadExternal"):
            return
        message = self.standin.message_for(call)
        if message is None:
            return
        stamp = f"[{time.monotonic() - self.started:5.1f}s]"
        lines = render_message(message)
        if message.channel != CHANNEL:
            # The stand-in's DM channel is "D" + the user's ID: name whom the bot told.
            who = {f"D{REQUESTER}": "the requester", f"D{APPROVER}": "the approver"}.get(message.channel, message.channel)
            self.write(f"{stamp} direct message to {who}: {lines[0] if lines else ''}")
        elif call.method == "chat.update" or (message.thread_ts in (None, message.ts) and call.method != "files.completeUploadExternal"):
            if lines != self.last_card:
                self.last_card = lines
                self.write(f"{stamp} card {'updated' if call.method == 'chat.update' else 'posted'}:")
                for line in lines:
                    self.write(f"           │ {line}")
        else:
            self.write(f"{stamp} thread: " + "\n                   ".join(lines))


class DemoRefused(Exception):
    """The database named for the demo is not one the demo may write to; the message says why."""


def _check_demo_database(path: Path) -> None:
    """The demo writes rehearsal campaigns: only into a new database or an earlier demo's."""
    if not path.exists() or path.stat().st_size == 0:
        return
    store = Store.open(path)
    try:
        real = store.count_campaigns_beyond(channel=CHANNEL)
    finally:
        store.close()
    if real:
        raise DemoRefused(
            f"FOTA_DB={path} holds {real} campaign(s) of a real bot; the demo writes only to a new "
            "database or an earlier demo's: point FOTA_DB at another file"
        )


async def run_demo(
    *, devices: int = 25, speed: float = 4.0, write: Any = print, db_path: Path | None = None, waves: bool = False
) -> int:
    """One rollout, printed. With `db_path` (FOTA_DB) the database is kept there, for
    `fota-bot campaigns list/show/export` and `history` afterwards; else it is temporary.
    With `waves`, a staged rollout instead (see `bot.demo_waves`)."""
    if db_path is not None:
        _check_demo_database(db_path)
        with exclusive_lock(db_path):
            write(f"fota-bot demo: database {db_path} (FOTA_DB); it is kept for `fota-bot campaigns list`.")
            status = await _run(devices, speed, write, db_path, waves)
        write(f"With FOTA_DB={db_path}: `fota-bot campaigns list`, `campaigns show FB-n`, "
              "`campaigns export FB-n`, `history FB-n` show what the demo left.")
        return status
    with tempfile.TemporaryDirectory(prefix="fota-demo-") as folder:
        path = Path(folder) / "demo.db"
        write(f"fota-bot demo: database {path}, deleted at the end; set FOTA_DB to keep it.")
        return await _run(devices, speed, write, path, waves)


async def _run(devices: int, speed: float, write: Any, db_path: Path, waves: bool = False) -> int:
    standin = SlackStandIn(bot_token=DEMO_TOKEN)
    standin.on_call = _Printer(standin, write)
    async with serve_in_loop(create_slack_standin_app(standin)) as slack_url:
        standin.public_url = slack_url
        settings = load(
            {
                "SLACK_BOT_TOKEN": DEMO_TOKEN,
                "SLACK_SIGNING_SECRET": DEMO_SECRET,
                "FOTA_APPROVAL_CHANNEL": CHANNEL,
                "SLACK_API_URL": f"{slack_url}/api/",
                "FOTA_DB": str(db_path),
                "FOTA_UPDATE_INTERVAL": "1",
                "FOTA_APPROVERS": APPROVER,
            }
        )
        sandbox = Sandbox(clock=SandboxClock.real(speed=speed), timings=SandboxTimings())
        runtime = build_runtime(settings, sandbox=sandbox)
        await runtime.start()
        try:
            if waves:
                return await play_waves(runtime, standin, sandbox, write)
            return await _play(runtime, write, devices)
        finally:
            await runtime.stop()


async def _play(rt: Runtime, write: Any, count: int) -> int:
    # Mostly devices the firmware is built for (SEQUANS GM01Q on SR1.2.0.0-10512), some of which
    # fail in the field, plus a few pre-flight must exclude.
    excluded = (
        sandbox_imeis(1, kind="unknown")
        + sandbox_imeis(1, kind="ineligible")
        + sandbox_imeis(2, model="BG96", firmware="BG96MAR02A08M1G")
    )
    imeis = (
        sandbox_imeis(max(1, count - count // 5), kind="eligible")
        + sandbox_imeis(count // 5, kind="will_fail")
        + excluded
    )
    text = (
        f"schedule firmware={FIRMWARE} from=SR1.2.0.0-10512 to=SR1.2.0.0-10657 start=today end=+2d "
        f'window=0-24 devices={",".join(imeis)} name="Demo rollout"'
    )
    write("fota-bot demo: a local Slack stand-in, the ThingSpace sandbox and the real app. No credentials.\n")
    write(f"<@{REQUESTER}> types: /fota {text[:110]}…")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.asgi), base_url="http://fota-bot") as bot:
        body = urlencode(
            {"command": "/fota", "text": text, "user_id": REQUESTER, "channel_id": "C0DEMOREQ", "team_id": "T0FOTA",
             "response_url": f"{rt.settings.slack_api_url.removesuffix('/api/')}/response/demo", "trigger_id": "demo.1"}
        ).encode()
        answer = await bot.post("/slack/events", content=body, headers=_signed(body))
        write(f"fota-bot answers <@{REQUESTER}> (only they see it): {answer.text}")
        campaign = await _wait(rt, lambda: rt.store.list_campaigns(scope="all", limit=1), "the approval card")
        card = await _wait(rt, lambda: rt.store.campaign(campaign[0].id).thread_ts, "the card in Slack")
        # Approvers decide on the pre-flight findings: the card offers Approve only once they are in.
        await _wait(rt, lambda: _checked(rt, campaign[0].id), "the pre-flight checks")
        record = preflight.load(rt.store, campaign[0].id)
        assert record is not None and record.summary is not None
        eligible = record.summary.eligible
        write(
            f"<@{APPROVER}> reads the checks ({record.summary.excluded} of {len(imeis)} devices "
            f"excluded), clicks Approve {eligible} eligible, and confirms."
        )
        payload = {
            "type": "block_actions",
            "user": {"id": APPROVER},
            "team": {"id": "T0FOTA"},
            "channel": {"id": CHANNEL},
            "container": {"type": "message", "message_ts": card, "channel_id": CHANNEL},
            "trigger_id": "demo.2",
            "response_url": f"{rt.settings.slack_api_url.removesuffix('/api/')}/response/demo2",
            "actions": [
                {"action_id": "fota_eligible_only", "block_id": "fota_decision", "type": "button",
                 "action_ts": str(time.time()),
                 "value": json.dumps({"campaign_id": campaign[0].id, "hash": rt.store.campaign(campaign[0].id).content_hash})}
            ],
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        await bot.post("/slack/events", content=body, headers=_signed(body))
        ended = await _wait(
            rt,
            lambda: rt.store.campaign(campaign[0].id).state.is_terminal
            and rt.sender.outbox.pending_count() == 0,
            "the end of the rollout",
        )
    final = rt.store.campaign(campaign[0].id)
    counts = rt.store.device_counts(final.id)
    left_out, _ = preflight.left_out_counts(rt.store, final.id)
    sent = final.device_count
    accounted = left_out + sent == len(imeis) and counts["succeeded"] + counts["failed"] == sent
    write(
        f"\nDone: {final.ref} is {final.state.value}; the whole thread is above. Of {len(imeis)} "
        f"devices asked for, {left_out} were excluded at approval and never sent; {sent} were sent: "
        f"{counts['succeeded']} succeeded, {counts['failed']} failed. "
        + ("Every device is accounted for." if accounted else "SOME DEVICES ARE NOT ACCOUNTED FOR.")
    )
    return 0 if ended and final.state.value == "CampaignEnded" and accounted else 1


def _checked(rt: Runtime, campaign_id: int) -> bool:
    record = preflight.load(rt.store, campaign_id)
    return record is not None and record.status != CHECKING and rt.sender.outbox.pending_count() == 0


async def _wait(rt: Runtime, probe: Any, what: str) -> Any:
    deadline = time.monotonic() + TIME_LIMIT
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        await asyncio.sleep(0.1)  # real time passes in a demo: the sandbox clock runs on it
    print(f"fota-bot demo: gave up waiting for {what}", file=sys.stderr)
    raise SystemExit(1)


# -- `fota-bot demo --waves`: a staged rollout that halts itself ------------------------------

WAVE_KEYS = "canary=2 waves=50%,100% halt=1"
# The sandbox's bad build: this firmware fails on this share of GM01Q devices (by IMEI).
FAULT_SHARE = 0.3
FAULT_MODEL = "GM01Q"


def waves_devices() -> tuple[list[str], tuple[WaveAssignment, ...]]:
    """A request of 7 GM01Q devices whose waves come out as the demo needs: a canary with no
    device the fault hits, then a 50 % wave with one, then the rest. Found by running the
    planner itself (pure and deterministic) on candidate fleets, so the bot plans the same."""
    pool = sandbox_imeis(40, kind="eligible", firmware="SR1.2.0.0-10512")
    clean = [i for i in pool if device_facts(i).lot >= FAULT_SHARE]
    faulted = [i for i in pool if device_facts(i).lot < FAULT_SHARE]
    plan = RolloutPlan(canary=2, waves=(WHOLE // 2, WHOLE))
    for doomed in faulted:
        imeis = sorted(clean[:6] + [doomed])
        facts = [PlanFacts(i, device_facts(i).make, device_facts(i).model, device_facts(i).firmware) for i in imeis]
        waves = assign(plan, facts)
        if len(waves) == 3 and doomed not in waves[0].devices and doomed in waves[1].devices:
            return imeis, waves
    raise RuntimeError("no candidate fleet gives a clean canary and a faulted second wave")


def _button(message: Message, action_id: str) -> dict[str, Any] | None:
    for block in message.blocks:
        if block.get("type") == "actions":
            for element in block["elements"]:
                if element.get("action_id") == action_id:
                    return {**element, "block_id": block.get("block_id")}
    return None


async def _click(bot: httpx.AsyncClient, rt: Runtime, message: Message, button: dict[str, Any], n: int) -> None:
    """An approver's click on `button` of `message`, signed as Slack signs it."""
    payload = {
        "type": "block_actions",
        "user": {"id": APPROVER},
        "team": {"id": "T0FOTA"},
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "message_ts": message.ts, "channel_id": CHANNEL},
        "message": message.to_slack(),
        "trigger_id": f"demo.{n}",
        "response_url": f"{rt.settings.slack_api_url.removesuffix('/api/')}/response/demo{n}",
        "actions": [
            {"action_id": button["action_id"], "block_id": button["block_id"], "type": "button",
             "action_ts": str(time.time()), "value": button.get("value", "")}
        ],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    await bot.post("/slack/events", content=body, headers=_signed(body))


def _find_in_thread(standin: SlackStandIn, root_ts: str, action_id: str) -> tuple[Message, dict[str, Any]] | None:
    for message in standin.thread(CHANNEL, root_ts):
        button = _button(message, action_id)
        if button is not None:
            return message, button
    return None


async def play_waves(rt: Runtime, standin: SlackStandIn, sandbox: Sandbox, write: Any) -> int:
    imeis, planned = waves_devices()
    fault = sandbox.fail_firmware(FIRMWARE, FAULT_SHARE, model=FAULT_MODEL)
    doomed = [i for i in imeis if device_facts(i).lot < FAULT_SHARE]
    text = (
        f"schedule firmware={FIRMWARE} from=SR1.2.0.0-10512 to=SR1.2.0.0-10657 start=today end=+2d "
        f'window=0-24 devices={",".join(imeis)} name="Demo staged rollout" {WAVE_KEYS}'
    )
    write("fota-bot demo --waves: a staged rollout on a local Slack stand-in, the ThingSpace sandbox and the real app.")
    write(f"The sandbox has a bad build: {FIRMWARE} fails on {fault.share:.0%} of {fault.model} devices "
          f"({fault.reason}); of these {len(imeis)} devices it hits {', '.join(doomed)}.\n")
    write(f"<@{REQUESTER}> types: /fota schedule … devices=({len(imeis)} IMEIs) {WAVE_KEYS}")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=rt.asgi), base_url="http://fota-bot") as bot:
        body = urlencode(
            {"command": "/fota", "text": text, "user_id": REQUESTER, "channel_id": "C0DEMOREQ", "team_id": "T0FOTA",
             "response_url": f"{rt.settings.slack_api_url.removesuffix('/api/')}/response/demo", "trigger_id": "demo.1"}
        ).encode()
        answer = await bot.post("/slack/events", content=body, headers=_signed(body))
        write(f"fota-bot answers <@{REQUESTER}> (only they see it): {answer.text}")
        [request] = await _wait(rt, lambda: rt.store.list_campaigns(scope="all", limit=1), "the approval card")
        root = await _wait(rt, lambda: rt.store.campaign(request.id).thread_ts, "the card in Slack")
        await _wait(rt, lambda: _checked(rt, request.id), "the pre-flight checks")
        approve = await _wait(rt, lambda: _find_in_thread(standin, root, ACTION_APPROVE), "the Approve button")
        write(f"<@{APPROVER}> reads the card and its waves, and clicks Approve.")
        await _click(bot, rt, approve[0], approve[1], 2)
        promote = await _wait(rt, lambda: _find_in_thread(standin, root, ACTION_PROMOTE), "the canary's end")
        write(f"<@{APPROVER}> reads the canary's result and clicks {promote[1]['text']['text']}.")
        await _click(bot, rt, promote[0], promote[1], 3)
        await _wait(
            rt,
            lambda: (p := plan_of(rt.store, request.id)) is not None and p.halted
            and all(rt.store.campaign(w.campaign_id).state.is_terminal for w in p.waves if w.campaign_id)
            and rt.sender.outbox.pending_count() == 0,
            "the halt",
        )
    return _waves_verdict(rt, sandbox, request.id, planned, doomed, write)


def _waves_verdict(
    rt: Runtime, sandbox: Sandbox, request_id: int, planned: tuple[WaveAssignment, ...], doomed: list[str], write: Any
) -> int:
    """Whether it went as told: canary passed, wave 2 promoted by the click and halted on the
    fault, wave 3 never reached ThingSpace."""
    plan = plan_of(rt.store, request_id)
    assert plan is not None
    canary, second, last = plan.wave(1), plan.wave(2), plan.wave(3)
    canary_counts = rt.store.device_counts(canary.campaign_id) if canary.campaign_id else {}
    second_counts = rt.store.device_counts(second.campaign_id) if second.campaign_id else {}
    in_sandbox = {imei for c in sandbox.model.campaigns.values() for imei in c.devices}
    never_sent = [i for i in planned[2].devices if i not in in_sandbox]
    checks = {
        f"the canary ({canary.size} devices) passed: {canary_counts.get('succeeded', 0)} succeeded":
            canary.size == 2 and canary_counts.get("succeeded") == canary.size,
        f"wave 2 was promoted by <@{second.promoted_by}>": second.promoted_by == APPROVER,
        f"wave 2 halted the rollout: {second_counts.get('failed', 0)} failed on the bad build ({plan.halt_reason})":
            plan.halted and second_counts.get("failed", 0) >= 1 and all(i in planned[1].devices for i in doomed),
        f"wave 3 ({last.size} devices) never reached ThingSpace": last.campaign_id is None
            and len(never_sent) == last.size == len(planned[2].devices),
    }
    write("")
    for what, ok in checks.items():
        write(f"{'✓' if ok else '✗ NOT SO:'} {what}")
    went = all(checks.values())
    write(f"\nDone: {rt.store.campaign(request_id).ref} "
          + ("went as planned: canary passed, promoted, halted itself." if went else "DID NOT GO AS PLANNED."))
    return 0 if went else 1
