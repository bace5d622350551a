"""The one sender that drains the outbox to Slack.

Every thread update is in the database before it is sent, so Slack being slow,
rate-limiting (429) or down loses nothing, and a restart picks up where it was.
A 429 pauses everything until Slack's Retry-After; a network error or 5xx
retries that lane with backoff; a permanent Slack error (`channel_not_found`,
`invalid_blocks`, …) is logged and recorded on the row, and the lane moves on.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from storage.model import Campaign
from storage.outbox import Outbox, OutboxItem
from storage.store import Store

log = logging.getLogger("bot.outbox")

# Slack's chat.postMessage allows about one message per second per channel (short bursts
# tolerated); the sender keeps to one per second so a busy rollout never earns a 429.
POST_SPACING = 1.0
# Tries of a requester's confirmation through its response_url before giving it up.
CONFIRM_ATTEMPTS = 5
# Tries of an item failing in an unexpected way (not Slack saying no) before giving it up.
GIVE_UP_ATTEMPTS = 8

# Errors after which sending the same call again cannot succeed.
_TRANSIENT_SLACK_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


class Renderer(Protocol):
    """Builds messages at send time from the database, so they show the latest state."""

    def root_card(self, campaign: Campaign) -> dict[str, Any]: ...

    def dynamic(self, kind: str, campaign: Campaign, payload: dict[str, Any]) -> dict[str, Any] | None: ...

    async def prefetch(self, kind: str, campaign: Campaign) -> dict[str, Any]: ...

    async def csv(self, campaign: Campaign, payload: dict[str, Any] | None = None) -> tuple[str, str]: ...


class OutboxSender:
    def __init__(
        self,
        *,
        store: Store,
        client: AsyncWebClient,
        renderer: Renderer,
        clock: Callable[[], dt.datetime],
        max_backoff: float = 300.0,
        post_spacing: float = POST_SPACING,
    ):
        self.store = store
        self.outbox = Outbox(store)
        self.client = client
        self.renderer = renderer
        self.clock = clock
        self.max_backoff = max_backoff
        self.post_spacing = dt.timedelta(seconds=post_spacing)
        self._last_post: dict[str, dt.datetime] = {}
        # Paced posts waiting for their turn: the last slot handed out per channel, and each
        # waiting item's slot.
        self._reserved: dict[str, dt.datetime] = {}
        self._slots: dict[int, dt.datetime] = {}
        self._wake = asyncio.Event()
        self._permalinks: dict[tuple[str, str], str] = {}
        self.sent_count = 0

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Forever: send what is due, then sleep until the next item is due or a wake-up."""
        while True:
            self._wake.clear()  # before draining: a wake-up during the drain is not lost
            try:
                await self.drain()
            except Exception:  # the sender must outlive any one bad item
                log.exception("outbox sender failed; retrying shortly")
            next_at = self.outbox.next_due_at()
            timeout = 30.0
            if next_at is not None:
                timeout = max(0.05, min(30.0, (next_at - self.clock()).total_seconds()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    async def drain(self) -> int:
        """Send everything due now (by the clock); returns how many items were handled."""
        handled = 0
        while True:
            items = self.outbox.due(self.clock())
            if not items:
                return handled
            for item in items:
                paused = await self._send_one(item)
                handled += 1
                if paused:
                    return handled
                # Between items, whatever else waits on the loop (an ack, a callback) goes first.
                await asyncio.sleep(0)

    async def _send_one(self, item: OutboxItem) -> bool:
        """Send one item; True when Slack asked us to pause everything."""
        channel = self._posts_to(item)
        if channel is not None and self.post_spacing:
            when = self._paced(channel, item.id)
            if when is not None:
                # Keep Slack's chat.postMessage pace (1 per second per channel) rather than
                # earn a 429: the item waits, its lane with it, other lanes go on.
                self.outbox.postpone(item.id, when)
                return False
            self._slots.pop(item.id, None)
        if item.kind == "confirm" and item.attempts >= CONFIRM_ATTEMPTS:
            # A response_url lives 30 minutes; past a few tries it is gone for good.
            self.outbox.mark_sent(item.id, error="response_url unreachable; gave up")
            return False
        try:
            await self._deliver(item)
        except _Superseded:
            self.outbox.mark_sent(item.id, error="superseded by a later edit")
            return False
        except SlackApiError as exc:
            status = exc.response.status_code
            error = str(exc.response.get("error") or f"HTTP {status}")
            if status == 429:
                retry_after = _retry_after(exc.response.headers)
                log.warning("Slack rate limit: pausing updates for %.0f s", retry_after)
                self.outbox.postpone_all(self.clock() + dt.timedelta(seconds=retry_after))
                self.outbox.retry_later(item.id, self.clock() + dt.timedelta(seconds=retry_after), error)
                return True
            if status >= 500 or error in _TRANSIENT_SLACK_ERRORS:
                self._backoff(item, error)
                return False
            log.error("Slack refused %s #%s for good: %s", item.kind, item.id, error)
            self.outbox.mark_sent(item.id, error=error)
            if item.kind == "root" and item.campaign_id is not None:
                self._root_refused(item.campaign_id, error)
            return False
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._backoff(item, f"{type(exc).__name__}")
            return False
        except Exception as exc:
            # Anything else (slack_sdk's SlackRequestError from a files.slack.com upload step,
            # a renderer bug) must not stop every other update: back off, then give up on it.
            if item.attempts + 1 >= GIVE_UP_ATTEMPTS:
                log.error("giving up on %s #%s after %d tries: %s", item.kind, item.id, item.attempts + 1,
                          type(exc).__name__, exc_info=exc)
                self.outbox.mark_sent(item.id, error=f"gave up: {type(exc).__name__}")
            else:
                log.warning("%s #%s failed unexpectedly (%s); retrying", item.kind, item.id, type(exc).__name__,
                            exc_info=exc)
                self._backoff(item, type(exc).__name__)
            return False
        self.outbox.mark_sent(item.id)
        self.sent_count += 1
        if channel is not None:
            self._last_post[channel] = self.clock()
        return False

    def _paced(self, channel: str, item_id: int) -> dt.datetime | None:
        """When the item may post into `channel`, or None if it may now.

        Waiting items get a slot each, one `post_spacing` apart in the order they come, so a
        backlog of thousands of cards is postponed once each instead of all of them again at
        every slot (which held the event loop for the whole backlog once a second).
        """
        last = self._last_post.get(channel)
        now = self.clock()
        if last is None or now >= last + self.post_spacing:
            return None
        earliest = last + self.post_spacing
        if item_id in self._slots:
            return earliest  # its turn came while the post before it was late: still next
        reserved = self._reserved.get(channel)
        when = earliest if reserved is None or reserved < earliest else reserved + self.post_spacing
        self._reserved[channel] = when
        self._slots[item_id] = when
        return when

    def _posts_to(self, item: OutboxItem) -> str | None:
        """The channel an item posts a new message to (chat.postMessage), if it does."""
        if item.kind == "root":
            return str(item.payload.get("channel") or "") or None
        if item.kind == "dm":
            return str(item.payload.get("user") or "") or None
        if item.kind in ("reply", "failures", "summary") and item.campaign_id is not None:
            return self.store.campaign(item.campaign_id).approval_channel
        return None

    def _backoff(self, item: OutboxItem, error: str) -> None:
        delay = min(self.max_backoff, 2.0 ** min(item.attempts, 8)) * random.uniform(0.5, 1.0)
        log.warning("Slack unavailable for %s #%s (%s); retrying in %.1f s", item.kind, item.id, error, delay)
        self.outbox.retry_later(item.id, self.clock() + dt.timedelta(seconds=delay), error)

    async def _deliver(self, item: OutboxItem) -> None:
        payload = item.payload
        campaign = self.store.campaign(item.campaign_id) if item.campaign_id is not None else None
        kind = item.kind
        if kind == "root":
            assert campaign is not None
            if campaign.thread_ts:  # already posted before a crash: never post the card twice
                return
            answer = await self.client.chat_postMessage(
                channel=payload["channel"], **self.renderer.root_card(campaign)
            )
            self.store.update_fields(
                campaign.id, approval_channel=answer["channel"], thread_ts=answer["ts"]
            )
            return
        if campaign is not None and kind in ("root_update", "reply", "failures", "summary", "upload"):
            if not campaign.thread_ts or not campaign.approval_channel:
                if self.outbox.root_refused(campaign.id):
                    return  # no thread will ever exist for these; the requester was told
                # The root is not posted yet (its own lane is behind): try again shortly.
                raise _NotYet()
        if kind == "root_update":
            assert campaign is not None and campaign.thread_ts and campaign.approval_channel
            if self.outbox.newer_pending(item):
                raise _Superseded()  # a later edit will show the same card: never send it twice
            self.outbox.detach(item.id)
            await self.client.chat_update(
                channel=campaign.approval_channel, ts=campaign.thread_ts, **self.renderer.root_card(campaign)
            )
            return
        if kind in ("reply", "failures", "summary"):
            assert campaign is not None and campaign.approval_channel
            message = payload.get("message")
            if message is None:
                # Large reads first, off the loop and outside the transaction below.
                read = await self.renderer.prefetch(kind, campaign)
                # Rendered once, at the first attempt, and kept: a retry sends the same words.
                # Rendering (which marks failures as told) and keeping it are one transaction.
                with self.store.db.atomic():
                    self.outbox.detach(item.id)
                    message = self.renderer.dynamic(kind, campaign, {**payload, **read})
                    if message is None:
                        return
                    payload = {**payload, "message": message}
                    self._save_payload(item.id, payload)
            await self.client.chat_postMessage(
                channel=campaign.approval_channel, thread_ts=campaign.thread_ts, **message
            )
            return
        if kind == "upload":
            assert campaign is not None and campaign.thread_ts
            filename, content = await self.renderer.csv(campaign, payload)
            await self.client.files_upload_v2(
                channel=campaign.approval_channel,
                thread_ts=campaign.thread_ts,
                filename=filename,
                title=payload.get("title", filename),
                content=content,
                initial_comment=payload.get("comment"),
            )
            return
        if kind == "dm":
            message = payload.get("message")
            if message is None:
                assert campaign is not None
                permalink = await self._permalink(campaign)
                message = self.renderer.dynamic("dm", campaign, {**payload, "permalink": permalink})
            if message is None:
                return
            await self.client.chat_postMessage(channel=payload["user"], **message)
            return
        if kind == "confirm":
            assert campaign is not None
            if not campaign.thread_ts:
                # "Posted for approval" is said only once the card is there, with its link.
                if self.outbox.root_refused(campaign.id):
                    return  # the requester was told why instead (see the root's refusal)
                raise _NotYet()
            permalink = await self._permalink(campaign)
            message = self.renderer.dynamic("confirm", campaign, {**payload, "permalink": permalink})
            if message is None:
                return
            if not payload.get("response_url"):
                # A modal has no response_url: the confirmation goes to a direct message.
                await self.client.chat_postMessage(channel=campaign.requester, **message)
                return
            webhook = AsyncWebhookClient(payload["response_url"])
            response = await webhook.send(
                response_type="ephemeral", replace_original=False, text=message["text"], blocks=message.get("blocks")
            )
            if response.status_code >= 500:
                raise aiohttp.ClientError(f"response_url answered {response.status_code}")
            return
        raise ValueError(f"unknown outbox kind {kind!r}")

    def _root_refused(self, campaign_id: int, error: str) -> None:
        """Slack will not take the approval card: nobody can approve, so the requester must know."""
        campaign = self.store.campaign(campaign_id)
        text = (
            f":warning: Ref {campaign.ref} could not be posted for approval: Slack answered `{error}` "
            f"for <#{campaign.approval_channel or ''}>. Nothing was sent to ThingSpace. An operator must "
            "invite the bot to the approval channel (or fix FOTA_APPROVAL_CHANNEL); then request it again."
        )
        self.outbox.enqueue("dm", {"user": campaign.requester, "message": {"text": text}}, campaign_id=campaign.id)

    async def _permalink(self, campaign: Campaign) -> str | None:
        if not campaign.thread_ts or not campaign.approval_channel:
            return None
        key = (campaign.approval_channel, campaign.thread_ts)
        if key not in self._permalinks:
            answer = await self.client.chat_getPermalink(channel=key[0], message_ts=key[1])
            self._permalinks[key] = answer["permalink"]
        return self._permalinks[key]

    def _save_payload(self, item_id: int, payload: dict[str, Any]) -> None:
        import json

        with self.store.db.atomic():
            self.store.db.execute("UPDATE outbox SET payload = ? WHERE id = ?", [json.dumps(payload), item_id])


class _Superseded(Exception):
    """A newer row of the same kind waits: this one need not go out."""


class _NotYet(aiohttp.ClientError):
    """The thread root is not posted yet; the item waits its turn (treated as transient)."""


def _retry_after(headers: Any) -> float:
    for key in ("Retry-After", "retry-after"):
        value = headers.get(key) if headers else None
        if value:
            try:
                return max(1.0, float(value))
            except ValueError:
                break
    return 30.0
