"""LostCampaigns on a real SQLite file and a MockTransport ThingSpace: which 404s count, when."""

from __future__ import annotations

import datetime as dt

import httpx

from bot.secrets import Secret
from bot.thingspace import ThingSpaceClient, ThingSpaceNotFound
from bot.workflow.lost import NOT_FOUND_READS, NOT_FOUND_SPACING, LostCampaigns
from storage.model import Campaign
from storage.states import CampaignState
from storage.store import Store
from tests.conftest import ManualClock
from tests.storage.test_store import make_campaign

S = CampaignState
THINGSPACE_ID = "f858b8c4-2153-11ec-8c44-aeb16d1aa652"
NOT_FOUND = ThingSpaceNotFound(404, "CAMPAIGN_NOT_FOUND", "Campaign not found")


class Told:
    def __init__(self) -> None:
        self.lost: list[Campaign] = []
        self.rereads: list[tuple[int, float]] = []

    def reconcile_soon(self, campaign_id: int, delay: float) -> None:
        self.rereads.append((campaign_id, delay))


def submitted(store: Store) -> Campaign:
    campaign = make_campaign(store)
    for state in (S.APPROVED, S.SUBMITTING):
        store.transition(campaign.id, state, actor="test", reason="test")
    return store.transition(
        campaign.id, S.SUBMITTED, actor="test", reason="test", thingspace_id=THINGSPACE_ID
    )


def client(campaign_answer: httpx.Response) -> ThingSpaceClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
        if request.url.path.endswith("/session/login"):
            return httpx.Response(200, json={"sessionToken": "s"})
        assert request.url.path.endswith(f"/campaigns/0000000000-00001/{THINGSPACE_ID}")
        return campaign_answer

    return ThingSpaceClient(
        base_url="https://thingspace.test",
        client_id=Secret("id"),
        client_secret=Secret("secret"),
        username=Secret("user"),
        password=Secret("password"),
        transport=httpx.MockTransport(handler),
        max_retries=0,
    )


def lost_campaigns(store: Store, clock: ManualClock, answer: httpx.Response, told: Told) -> LostCampaigns:
    class Events:
        def lost(self, campaign: Campaign) -> None:
            told.lost.append(campaign)

    return LostCampaigns(
        store=store, client=client(answer), events=Events(), scheduler=told, clock=clock
    )


GONE = httpx.Response(404, json={"errorCode": "CAMPAIGN_NOT_FOUND", "errorMessage": "not found"})


async def test_the_count_survives_a_restart_and_ends_in_lost(store: Store, clock: ManualClock) -> None:
    campaign = submitted(store)
    told = Told()
    for read in range(1, NOT_FOUND_READS + 1):
        # A new process each time: the count is in the database.
        lost = lost_campaigns(store, clock, GONE, told)
        campaign = await lost.not_found(store.campaign(campaign.id), NOT_FOUND)
        await lost.client.aclose()
        if read < NOT_FOUND_READS:
            assert campaign.state is S.SUBMITTED
            assert told.rereads[-1] == (campaign.id, NOT_FOUND_SPACING.total_seconds())
        clock.advance(seconds=NOT_FOUND_SPACING.total_seconds())
    assert campaign.state is S.LOST
    assert [c.ref for c in told.lost] == [campaign.ref]
    assert store.audit(campaign.id)[-1]["to_state"] == "lost"


async def test_404s_inside_the_spacing_count_once_and_keep_the_next_reread(
    store: Store, clock: ManualClock
) -> None:
    campaign = submitted(store)
    told = Told()
    lost = lost_campaigns(store, clock, GONE, told)
    for _ in range(NOT_FOUND_READS * 3):
        await lost.not_found(store.campaign(campaign.id), NOT_FOUND)
        clock.advance(minutes=1)
    await lost.client.aclose()
    assert store.campaign(campaign.id).state is S.SUBMITTED
    # Every uncounted one still asks for the counted re-read when the spacing is over.
    assert all(delay <= NOT_FOUND_SPACING.total_seconds() for _, delay in told.rereads)
    assert told.rereads[-1][1] == (NOT_FOUND_SPACING - dt.timedelta(minutes=NOT_FOUND_READS * 3 - 1)).total_seconds()


async def test_a_missing_report_of_a_campaign_thingspace_knows_does_not_count(
    store: Store, clock: ManualClock
) -> None:
    campaign = submitted(store)
    told = Told()
    known = httpx.Response(200, json={"id": THINGSPACE_ID, "status": "CampaignRequestPending"})
    lost = lost_campaigns(store, clock, known, told)
    for _ in range(NOT_FOUND_READS + 1):
        await lost.not_found(store.campaign(campaign.id), NOT_FOUND)
        clock.advance(seconds=NOT_FOUND_SPACING.total_seconds())
    await lost.client.aclose()
    assert store.campaign(campaign.id).state is S.SUBMITTED
    assert told.lost == [] and told.rereads == []


async def test_a_404_thingspace_did_not_word_does_not_count(store: Store, clock: ManualClock) -> None:
    # A bare 404 (a wrong THINGSPACE_URL, a proxy) is not ThingSpace saying it lost the campaign.
    campaign = submitted(store)
    told = Told()
    lost = lost_campaigns(store, clock, httpx.Response(404, text="Not Found"), told)
    bare = ThingSpaceNotFound(404, "HTTP_404", "Not Found (GET /api/fota/v3/...)")
    for _ in range(NOT_FOUND_READS + 1):
        await lost.not_found(store.campaign(campaign.id), bare)
        await lost.not_found(store.campaign(campaign.id), NOT_FOUND)  # confirmed by a bare 404
        clock.advance(seconds=NOT_FOUND_SPACING.total_seconds())
    await lost.client.aclose()
    assert store.campaign(campaign.id).state is S.SUBMITTED
    assert told.lost == []


async def test_a_finished_campaign_is_never_marked_lost(store: Store, clock: ManualClock) -> None:
    campaign = submitted(store)
    store.transition(campaign.id, S.ENDED, actor="test", reason="test")
    told = Told()
    lost = lost_campaigns(store, clock, GONE, told)
    for _ in range(NOT_FOUND_READS + 1):
        assert (await lost.not_found(store.campaign(campaign.id), NOT_FOUND)).state is S.ENDED
        clock.advance(seconds=NOT_FOUND_SPACING.total_seconds())
    await lost.client.aclose()
    assert told.lost == [] and told.rereads == []


async def test_a_campaign_that_ends_during_the_last_check_keeps_its_end(
    store: Store, clock: ManualClock
) -> None:
    campaign = submitted(store)
    told = Told()
    for _ in range(NOT_FOUND_READS - 1):
        lost = lost_campaigns(store, clock, GONE, told)
        await lost.not_found(store.campaign(campaign.id), NOT_FOUND)
        await lost.client.aclose()
        clock.advance(seconds=NOT_FOUND_SPACING.total_seconds())

    class EndsMeanwhile(httpx.MockTransport):
        def __init__(self) -> None:
            super().__init__(self.answer)

        def answer(self, request: httpx.Request) -> httpx.Response:
            if "/api/fota/v3/" in request.url.path:
                # Someone cancels it while the confirming read is on its way.
                store.transition(campaign.id, S.CANCELLED, actor="U1", reason="cancelled")
                return GONE
            if request.url.path.endswith("/oauth2/token"):
                return httpx.Response(200, json={"access_token": "t", "expires_in": 3600})
            return httpx.Response(200, json={"sessionToken": "s"})

    lost = lost_campaigns(store, clock, GONE, told)
    lost.client = ThingSpaceClient(
        base_url="https://thingspace.test", client_id=Secret("id"), client_secret=Secret("secret"),
        username=Secret("user"), password=Secret("password"), transport=EndsMeanwhile(),
    )  # fmt: skip
    after = await lost.not_found(store.campaign(campaign.id), NOT_FOUND)
    await lost.client.aclose()
    assert after.state is S.CANCELLED
    assert told.lost == []
