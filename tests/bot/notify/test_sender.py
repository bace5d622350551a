"""The outbox sender: one handler per kind of row, events rendered when sent, and rows queued
by an older version (their messages built when the event happened) sent as they are, once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from bot.notify.events import Event, OutboxKind
from bot.notify.sender import OutboxSender
from bot.notify.thread import ThreadNotifier
from bot.standins.thingspace import sandbox_imeis
from commands import blocks
from commands.blocks import render
from storage.outbox import Outbox
from storage.states import CampaignState
from storage.store import Store
from tests.conftest import ManualClock
from tests.e2e.test_rollout import schedule_text
from tests.storage.test_store import make_campaign
from tests.support.stack import ANN, BOB, CHANNEL, REQUESTER, running_stack


async def test_every_kind_of_row_has_a_handler(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        sender: OutboxSender = stack.rt.sender
        assert set(sender._handlers) == set(OutboxKind)


async def test_a_row_this_version_cannot_read_is_given_up_at_once_and_holds_back_nothing(tmp_path: Path) -> None:
    # As a newer version may leave behind: a kind, or an event, this one does not know.
    async with running_stack(tmp_path) as stack:
        response, _ = await stack.slash(schedule_text(sandbox_imeis(1, kind="eligible")))
        await stack.settle()
        outbox = stack.rt.sender.outbox
        odd_kind = outbox.enqueue("carrier_pigeon", {}, campaign_id=1)
        odd_event = outbox.enqueue(OutboxKind.REPLY, {"event": "eclipse", "facts": {}}, campaign_id=1)
        outbox.enqueue(OutboxKind.REPLY, {"event": Event.SUBMIT_DELAYED, "facts": {"reason": "r", "retry_in": 5}},
                       campaign_id=1)
        outbox.enqueue(OutboxKind.DM, {"user": ANN, "event": Event.EXPIRED, "facts": {}}, campaign_id=1)
        await stack.rt.sender.drain()
        rows = {r["id"]: r for r in stack.rt.store.db["outbox"].rows_where("id IN (?, ?)", [odd_kind, odd_event])}
        assert rows[odd_kind]["last_error"] == "cannot send: unknown kind 'carrier_pigeon'"
        assert rows[odd_event]["last_error"] == "cannot send: unknown event 'eclipse'"
        assert all(r["sent_at"] is not None and r["attempts"] == 1 for r in rows.values())
        # The reply behind the unreadable one in the thread's lane went out at once.
        assert "is not at ThingSpace yet" in stack.thread_texts()[-1]
        told = [c.args for c in stack.standin.calls_to("chat.postMessage") if c.args.get("channel") == ANN]
        assert len(told) == 1 and "expired" in told[0]["text"]
        assert stack.rt.sender.outbox.pending_count() == 0


async def test_rows_queued_the_old_way_are_sent_once_across_an_upgrade(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        response, _ = await stack.slash(schedule_text(sandbox_imeis(1, kind="eligible")))
        await stack.settle()
        store = stack.rt.store
        campaign = store.campaign(1)
        assert campaign.state is CampaignState.PENDING_APPROVAL and campaign.thread_ts

        # What the previous version wrote: thread replies and a halt's direct message with their
        # message built at the event, a direct message naming its event with the facts beside
        # it, uploads with their titles.
        old_reply = blocks.rejected_reply(campaign, BOB, "old words, as rendered then")
        old_dm = {"text": ":octagonal_sign: FB-1 halted itself (as rendered then)"}
        rows = [
            ("reply", {"message": old_reply}, None),
            ("dm", {"user": ANN, "message": old_dm}, None),
            ("dm", {"user": REQUESTER, "event": "rejected", "by": BOB, "reason": "not tonight"}, None),
            ("upload", {"title": "FB-1 per-device report (old title)"}, "upload:1"),
        ]
        now = store.now()
        await stack.shutdown()
        with sqlite3.connect(stack.env["FOTA_DB"]) as db:
            for kind, payload, key in rows:
                db.execute(
                    "INSERT INTO outbox(campaign_id, kind, coalesce_key, payload, created_at, attempts) "
                    "VALUES(1, ?, ?, ?, ?, 0)",
                    [kind, key, json.dumps(payload), now],
                )
        stack.standin.clear_calls()

        await stack.boot()  # the new version starts on the same database
        await stack.settle()
        for _ in range(2):  # and again: nothing goes twice
            await stack.restart()
            stack.clock.advance(minutes=5)
            await stack.settle()

        thread = [m for m in stack.standin.thread(CHANNEL, campaign.thread_ts) if m.is_reply and not m.files]
        assert [m.text for m in thread] == [old_reply["text"]]
        assert thread[0].blocks == old_reply["blocks"]
        to_ann = [c.args for c in stack.standin.calls_to("chat.postMessage") if c.args.get("channel") == ANN]
        assert [a["text"] for a in to_ann] == [old_dm["text"]]
        to_requester = [
            c.args for c in stack.standin.calls_to("chat.postMessage") if c.args.get("channel") == REQUESTER
        ]
        assert len(to_requester) == 1
        assert "rejected" in to_requester[0]["text"] and "not tonight" in json.dumps(to_requester[0]["blocks"])
        assert [f.title for f in stack.standin.uploads] == ["FB-1 per-device report (old title)"]
        assert stack.rt.sender.outbox.pending_count() == 0


# --- the notifier writes events, never messages ---------------------------------------------------


def _rows(store: Store) -> list[tuple[str, dict[str, Any]]]:
    return [(kind, json.loads(payload)) for kind, payload in store.db.execute("SELECT kind, payload FROM outbox")]


def test_the_notifier_writes_events_and_facts_never_a_message(store: Store, clock: ManualClock) -> None:
    notifier = ThreadNotifier(
        store=store,
        approval_channel="C0APPROVALS",
        update_interval=60,
        clock=clock,
        approvers=frozenset({"U0ANN", "U_REQ", "S0GROUP"}),
    )
    campaign = make_campaign(store)
    notifier.requested(campaign, "https://hooks.slack.com/commands/T1/2/3")
    notifier.rejected(campaign, "U0ANN", "not <tonight>")
    notifier.submit_delayed(campaign, "ThingSpace timed out", 30.0)
    notifier.status_changed(campaign, "CampaignRequestPending", "CampaignStarted")
    notifier.cancel_refused(campaign, "NOPE", "already ended")
    notifier.halted(campaign, campaign, "2 of 3 failed", [("no space", 2)])
    rows = _rows(store)
    assert {kind for kind, _ in rows} <= set(OutboxKind)
    for kind, payload in rows:
        assert "message" not in payload and "blocks" not in json.dumps(payload), (kind, payload)
        if kind in (OutboxKind.REPLY, OutboxKind.DM):
            event = Event(payload["event"])
            assert event in (render.REPLIES if kind == OutboxKind.REPLY else render.DIRECT_MESSAGES)
    replies = [p for k, p in rows if k == OutboxKind.REPLY]
    assert replies[0] == {"event": "rejected", "facts": {"by": "U0ANN", "reason": "not <tonight>"}}
    assert replies[2] == {"event": "status_changed", "facts": {"old": "CampaignRequestPending", "new": "CampaignStarted"}}
    # A halt is told to the requester and each approver named as a user, once; a user group
    # hears it in the approval channel.
    halted = [p for k, p in rows if k == OutboxKind.DM and p["event"] == "halted"]
    assert sorted(p["user"] for p in halted) == ["U0ANN", "U_REQ"]
    assert halted[0]["facts"] == {"wave": campaign.id, "sentence": "2 of 3 failed", "reasons": [["no space", 2]]}


def test_a_rendered_message_is_kept_so_a_retry_sends_the_same_words(store: Store, clock: ManualClock) -> None:
    outbox = Outbox(store)
    campaign = make_campaign(store)
    row = outbox.enqueue(OutboxKind.REPLY, {"event": "reminder", "facts": {}}, campaign_id=campaign.id)
    calls: list[int] = []

    def render_once() -> dict[str, Any]:
        calls.append(1)
        return {"text": "first words"}

    assert outbox.keep_rendered(row, render_once) == {"text": "first words"}
    [item] = outbox.due(clock())
    assert item.payload["message"] == {"text": "first words"} and item.payload["event"] == "reminder"
    nothing = outbox.enqueue(OutboxKind.FAILURES, {}, campaign_id=campaign.id + 1)
    assert outbox.keep_rendered(nothing, lambda: None) is None
    assert "message" not in next(i for i in outbox.due(clock()) if i.id == nothing).payload
    assert calls == [1]
