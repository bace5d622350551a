"""The outbox: pending Slack updates, written before they are sent, so that nothing is lost
when Slack is slow or down. Delivered rows are pruned after a while (`Outbox.prune_sent`)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from storage.store import iso

if TYPE_CHECKING:
    from storage.store import Store


# Suffix of the coalesce key of a row being sent (see Outbox.detach).
_IN_FLIGHT = "#sending"

# Which lane an outbox row queues in, within its campaign (SQL over the row's kind).
_LANE = "CASE WHEN kind IN ('root_update', 'confirm') THEN kind ELSE 'thread' END"
# Outbox row `o` is the head of its lane: no earlier unsent row of its campaign in that lane.
_LANE_HEAD = f"""NOT EXISTS (SELECT 1 FROM outbox AS e
    WHERE e.sent_at IS NULL AND e.campaign_id IS o.campaign_id AND e.id < o.id
    AND {_LANE.replace("kind", "e.kind")} = {_LANE.replace("kind", "o.kind")})"""


@dataclass(frozen=True)
class OutboxItem:
    id: int
    campaign_id: int | None
    kind: str
    payload: dict[str, Any]
    attempts: int


class Outbox:
    """Pending Slack updates, written before they are sent: nothing is lost.

    Items of one campaign go out in order, in three lanes: thread messages
    (replies, direct messages, the CSV), the root card edit (one pending row per
    campaign, replaced by newer edits, so a superseded edit is never sent), and
    the requester's confirmation (its response_url may be dead; that must not
    hold the thread back).
    """

    def __init__(self, store: Store):
        self.store = store
        self.db = store.db

    def enqueue(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        campaign_id: int | None = None,
        coalesce_key: str | None = None,
        not_before: dt.datetime | None = None,
    ) -> int:
        now = self.store.now()
        body = json.dumps(payload)
        with self.db.atomic():
            if coalesce_key is not None:
                row = self.db.execute(
                    "SELECT id FROM outbox WHERE coalesce_key = ? AND sent_at IS NULL", [coalesce_key]
                ).fetchone()
                if row is not None:
                    self.db.execute("UPDATE outbox SET payload = ? WHERE id = ?", [body, row[0]])
                    return int(row[0])
            cursor = self.db.execute(
                """INSERT INTO outbox(campaign_id, kind, coalesce_key, payload, created_at, not_before, attempts)
                   VALUES(?, ?, ?, ?, ?, ?, 0)""",
                [campaign_id, kind, coalesce_key, body, now, iso(not_before) if not_before else None],
            )
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def due(self, now: dt.datetime, limit: int = 50) -> list[OutboxItem]:
        """The head of every lane, when its time has come.

        Bounded by the unsent rows that are due (read from the partial index of unsent rows),
        never by the history of sent ones; each candidate's lane is probed by index.
        """
        rows = self.db.execute(
            # SQLite's planner would read every unsent row and sort them; this index walks them
            # in id order and stops at `limit` heads (a backlog of thousands costs well under 1 ms).
            f"""SELECT id, campaign_id, kind, payload, attempts FROM outbox AS o INDEXED BY idx_outbox_unsent_order
               WHERE sent_at IS NULL AND (not_before IS NULL OR not_before <= ?) AND {_LANE_HEAD}
               ORDER BY id LIMIT ?""",
            [iso(now), limit],
        ).fetchall()
        return [OutboxItem(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in rows]

    def next_due_at(self) -> dt.datetime | None:
        # Only lane heads can go out next: an item queued behind a waiting head must not
        # make the sender spin. Each walk is in time order and stops at the first head.
        timed = self.db.execute(
            f"""SELECT not_before FROM outbox AS o
               WHERE sent_at IS NULL AND not_before IS NOT NULL AND {_LANE_HEAD}
               ORDER BY not_before LIMIT 1"""
        ).fetchone()
        untimed = self.db.execute(
            f"""SELECT created_at FROM outbox AS o INDEXED BY idx_outbox_unsent_order
               WHERE sent_at IS NULL AND not_before IS NULL AND {_LANE_HEAD}
               ORDER BY id LIMIT 1"""
        ).fetchone()
        moments = [row[0] for row in (timed, untimed) if row and row[0]]
        return dt.datetime.fromisoformat(min(moments)) if moments else None

    def root_refused(self, campaign_id: int) -> bool:
        """Slack refused the campaign's approval card for good (no thread will ever exist)."""
        row = self.db.execute(
            """SELECT 1 FROM outbox WHERE campaign_id = ? AND kind = 'root' AND sent_at IS NOT NULL
               AND last_error IS NOT NULL LIMIT 1""",
            [campaign_id],
        ).fetchone()
        return row is not None

    def prune_sent(self, before: dt.datetime, limit: int = 500) -> int:
        """Delete up to `limit` rows delivered before `before`; how many went.

        A delivered update is Slack's to keep from then on; only a refused approval card stays
        (`root_refused` reads it for as long as the campaign exists). Small batches, each its
        own short transaction, so pruning a large backlog never holds the event loop.
        """
        with self.db.atomic():
            cursor = self.db.execute(
                """DELETE FROM outbox WHERE id IN (
                       SELECT id FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?
                       AND NOT (kind = 'root' AND last_error IS NOT NULL) LIMIT ?)""",
                [iso(before), limit],
            )
        return int(cursor.rowcount)

    def pending_count(self) -> int:
        return int(self.db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL").fetchone()[0])

    def mark_sent(self, item_id: int, *, error: str | None = None) -> None:
        with self.db.atomic():
            self.db.execute(
                "UPDATE outbox SET sent_at = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
                [self.store.now(), error, item_id],
            )

    def postpone(self, item_id: int, not_before: dt.datetime) -> None:
        """Hold an item back without counting a failed attempt (pacing, not an error)."""
        with self.db.atomic():
            self.db.execute("UPDATE outbox SET not_before = ? WHERE id = ?", [iso(not_before), item_id])

    def retry_later(self, item_id: int, not_before: dt.datetime, error: str) -> None:
        with self.db.atomic():
            self.db.execute(
                "UPDATE outbox SET not_before = ?, attempts = attempts + 1, last_error = ? WHERE id = ?",
                [iso(not_before), error, item_id],
            )

    def postpone_all(self, not_before: dt.datetime) -> None:
        """Slack said 429: nothing goes out before `not_before`."""
        with self.db.atomic():
            self.db.execute(
                "UPDATE outbox SET not_before = ? WHERE sent_at IS NULL AND (not_before IS NULL OR not_before < ?)",
                [iso(not_before), iso(not_before)],
            )

    def last_sent_at(self, coalesce_key: str) -> dt.datetime | None:
        """When the last update under this key went out; one being sent right now counts as now."""
        row = self.db.execute(
            f"""SELECT max(coalesce(sent_at, ?)) FROM outbox WHERE coalesce_key IN (?, ? || '{_IN_FLIGHT}')
                AND (sent_at IS NOT NULL OR coalesce_key = ? || '{_IN_FLIGHT}')""",
            [self.store.now(), coalesce_key, coalesce_key, coalesce_key],
        ).fetchone()
        return dt.datetime.fromisoformat(row[0]) if row and row[0] else None

    def expedite(self, coalesce_key: str) -> None:
        """The pending row under this key goes out as soon as its lane lets it (no throttle)."""
        with self.db.atomic():
            self.db.execute(
                "UPDATE outbox SET not_before = NULL WHERE coalesce_key = ? AND sent_at IS NULL", [coalesce_key]
            )

    def keep_rendered(
        self, item_id: int, render: Callable[[], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Render a row's message once and keep it in the row (`payload["message"]`), so a
        retry sends the same words; None (nothing to say) keeps nothing. Taking the row out of
        coalescing, rendering (which may mark what it tells as told) and keeping the message
        are one transaction."""
        with self.db.atomic():
            self.detach(item_id)
            message = render()
            if message is None:
                return None
            row = self.db.execute("SELECT payload FROM outbox WHERE id = ?", [item_id]).fetchone()
            payload = {**json.loads(row[0]), "message": message}
            self.db.execute("UPDATE outbox SET payload = ? WHERE id = ?", [json.dumps(payload), item_id])
            return message

    def newer_pending(self, item: OutboxItem) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM outbox WHERE campaign_id = ? AND kind = ? AND sent_at IS NULL AND id > ? LIMIT 1",
            [item.campaign_id, item.kind, item.id],
        ).fetchone()
        return row is not None

    def detach(self, item_id: int) -> None:
        """Take a row out of coalescing while it is being sent.

        An update arriving during the send then gets a row of its own instead of being
        folded into one whose content was already rendered (and would be lost).
        """
        with self.db.atomic():
            self.db.execute(
                f"""UPDATE outbox SET coalesce_key = coalesce_key || '{_IN_FLIGHT}'
                    WHERE id = ? AND coalesce_key IS NOT NULL AND coalesce_key NOT LIKE '%{_IN_FLIGHT}'""",
                [item_id],
            )

    def sent(self, kind: str | None = None) -> list[dict[str, Any]]:
        where = "sent_at IS NOT NULL" + (" AND kind = ?" if kind else "")
        return list(self.db["outbox"].rows_where(where, [kind] if kind else [], order_by="id"))
