"""No firmware reaches ThingSpace without the recorded approvals: one guard, every entry point."""

from __future__ import annotations

import ast
import unicodedata
from pathlib import Path

from storage.states import CampaignState
from tests.e2e.test_flow import request_campaign
from tests.support.stack import ANN, running_stack

ROOT = Path(__file__).resolve().parents[2]


def test_only_the_submitter_calls_the_schedule_endpoint() -> None:
    callers: list[str] = []
    for path in [*ROOT.glob("bot/**/*.py"), *ROOT.glob("commands/**/*.py"), *ROOT.glob("storage/**/*.py")]:
        source = path.read_text()
        # Only a file that spells the name can hold the attribute (identifiers are read NFKC
        # normalised): the others need no parsing.
        if "schedule_campaign" not in unicodedata.normalize("NFKC", source):
            continue
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "schedule_campaign" and isinstance(node.ctx, ast.Load):
                callers.append(str(path.relative_to(ROOT)))
    assert callers == ["bot/workflow/submission.py"]


def test_the_submitter_claims_through_the_guard_before_posting() -> None:
    source = (ROOT / "bot/workflow/submission.py").read_text()
    claim = source.index("self.store.claim_for_submission(")
    post = source.index("self.client.schedule_campaign(")
    assert claim < post


async def test_a_direct_submit_of_an_unapproved_request_sends_nothing(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
        assert await stack.rt.submitter.submit(1) is None
        stack.rt.timers.retry_submission(1, 0)  # a retry job, as after a ThingSpace outage
        await stack.rt.submitter.submit(1)
        await stack.settle()
        assert stack.thingspace.schedule_posts() == []
        assert stack.rt.store.campaign(1).state is CampaignState.PENDING_APPROVAL


async def test_a_state_forced_to_approved_without_votes_is_not_resumed_at_start_up(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
        # Someone edits the database by hand: approved, but no decision rows.
        stack.rt.store.transition(1, CampaignState.APPROVED, actor="sqlite3 shell", reason="manual")
        await stack.restart()
        await stack.settle()
        assert stack.thingspace.schedule_posts() == []
        assert stack.rt.store.campaign(1).state is CampaignState.APPROVED


async def test_approvals_for_an_older_content_do_not_count(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
        campaign = stack.rt.store.campaign(1)
        stack.rt.store.record_approval(1, user=ANN, shown_hash=campaign.content_hash, required=2)
        # The content changes after the vote (the hash no longer matches the approval).
        stack.rt.store.db.execute("UPDATE campaigns SET content_hash = 'changed', state = 'approved'")
        stack.rt.store.db.conn.commit()
        await stack.rt.submitter.resume_all()
        await stack.settle()
        assert stack.thingspace.schedule_posts() == []


async def test_approved_and_killed_before_sending_is_resumed_once(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
        campaign = stack.rt.store.campaign(1)
        # The approval is recorded, then the process dies before the submission task runs.
        stack.rt.store.record_approval(1, user=ANN, shown_hash=campaign.content_hash, required=1)
        await stack.restart()
        await stack.settle()
        await stack.restart()  # and once more: nothing is sent twice
        await stack.settle()
        assert len(stack.thingspace.schedule_posts()) == 1
        assert stack.rt.store.campaign(1).state is CampaignState.SUBMITTED
