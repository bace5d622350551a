"""The outbox sender: one handler per kind of row, events rendered when sent, and rows queued
by an older version (their messages built when the event happened) sent as they are, once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from bot.notify.events import Event, OutboxKind
from bot.notify.sender import OutboxSender
from bot.standins.thingspace import sandbox_imeis
from commands import blocks
from storage.states import CampaignState
from tests.support.stack import ANN, BOB, CHANNEL, REQUESTER, running_stack
from tests.test_e2e_rollout import schedule_text


async def test_every_kind_of_row_has_a_handler(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        sender: OutboxSender = stack.rt.sender
        assert set(sender._handlers) == set(OutboxKind)


async def test_a_row_of_an_unknown_kind_backs_off_and_holds_back_nothing_else(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        response, _ = await stack.slash(schedule_text(sandbox_imeis(1, kind="eligible")))
        await stack.settle()
        outbox = stack.rt.sender.outbox
        odd = outbox.enqueue("carrier_pigeon", {}, campaign_id=None)
        outbox.enqueue(OutboxKind.DM, {"user": ANN, "event": Event.EXPIRED, "facts": {}}, campaign_id=1)
        await stack.rt.sender.drain()
        [row] = [r for r in stack.rt.store.db["outbox"].rows_where("id = ?", [odd])]
        assert row["sent_at"] is None and row["attempts"] == 1 and row["last_error"] == "ValueError"
        told = [c.args for c in stack.standin.calls_to("chat.postMessage") if c.args.get("channel") == ANN]
        assert len(told) == 1 and "expired" in told[0]["text"]


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
