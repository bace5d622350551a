"""/healthz checks a real write and the free space; a request that cannot be recorded is answered."""

from __future__ import annotations

import json
from pathlib import Path

from commands import blocks
from commands.listeners import NOT_RECORDED
from storage.states import CampaignState
from tests.e2e.test_flow import SCHEDULE, request_campaign
from tests.support.stack import ANN, Stack, running_stack


def read_only(stack: Stack, on: bool = True) -> None:
    # What a read-only file or a full disk does to every write: SQLite refuses it.
    stack.rt.store.db.execute(f"PRAGMA query_only = {'ON' if on else 'OFF'}")


async def test_healthz_is_503_with_the_reason_when_the_database_takes_no_write(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        assert (await stack.http.get("/healthz")).status_code == 200
        read_only(stack)
        broken = await stack.http.get("/healthz")
        assert broken.status_code == 503
        assert broken.json()["database"] == "unusable"
        assert "cannot be written" in broken.json()["reason"] and "readonly" in broken.json()["reason"]
        read_only(stack, False)
        assert (await stack.http.get("/healthz")).status_code == 200


async def test_healthz_is_503_when_the_disk_beside_the_database_is_nearly_full(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        stack.rt.min_free_bytes = 1 << 60  # more than any disk here has: the real statvfs says no
        broken = await stack.http.get("/healthz")
        assert broken.status_code == 503
        assert "MiB free beside the database" in broken.json()["reason"]


async def test_a_request_that_cannot_be_recorded_is_answered_so(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        read_only(stack)
        response, url = await stack.slash(SCHEDULE)
        assert response.status_code == 200
        await stack.settle()
        assert NOT_RECORDED in json.dumps(stack.answers(url))
        read_only(stack, False)
        assert stack.rt.store.list_campaigns(scope="all") == []


async def test_an_approval_that_cannot_be_recorded_is_answered_so(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
        read_only(stack)
        response, url = await stack.click(blocks.ACTION_APPROVE, user=ANN)
        assert response.status_code == 200
        await stack.settle()
        assert NOT_RECORDED in json.dumps(stack.answers(url))
        read_only(stack, False)
        assert stack.rt.store.decisions(1) == []
        assert stack.rt.store.campaign(1).state is CampaignState.PENDING_APPROVAL
        assert stack.thingspace.schedule_posts() == []
