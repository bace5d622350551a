"""A campaign's audit trail for people: every state change (who, why) and every recorded
decision, oldest first. Read only."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from storage.store import Store


@dataclass(frozen=True)
class HistoryEntry:
    at: dt.datetime
    actor: str  # a Slack user id, "fota-bot", or "thingspace"
    what: str  # "requested", "pending_approval → approved", "approval"
    detail: str  # the reason as recorded


def load(store: Store, campaign_id: int) -> list[HistoryEntry]:
    entries: list[HistoryEntry] = []
    for row in store.audit(campaign_id):
        what = f"{row['from_state']} → {row['to_state']}" if row["from_state"] else row["reason"] or "requested"
        detail = "" if not row["from_state"] else row["reason"] or ""
        entries.append(HistoryEntry(dt.datetime.fromisoformat(row["at"]), row["actor"], what, detail))
    for decision in store.decisions(campaign_id):
        # A rejection is the state change's own row (with its reason); an approval that did not
        # complete the set changed no state, so it is only here.
        if decision.decision == "approve":
            entries.append(
                HistoryEntry(decision.at, decision.user, "approval", f"of request hash {decision.content_hash[:12]}")
            )
    # Within one moment (a clock's resolution): the request, then approvals, then the state
    # changes they caused, these in the order they were written (a stable sort).
    rank = {"requested": 0, "approval": 1}
    return sorted(entries, key=lambda e: (e.at, rank.get(e.what, 2)))
