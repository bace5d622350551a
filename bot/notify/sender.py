"""The one sender that drains the outbox to Slack.

Every thread update is in the database before it is sent, so Slack being slow,
rate-limiting (429) or down loses nothing, and a restart picks up where it was.
A 429 pauses everything until Slack's Retry-After; a network error or 5xx
retries that lane with backoff; a permanent Slack error (`channel_not_found`,
`invalid_blocks`, …) is logged and recorded on the row, and the lane moves on; so is a row
this version cannot read (`Unsendable`). Each kind of row has its handler (`OutboxKind`); what
a row says is rendered by the `Renderer` bot/app.py hands in, once, at its first attempt.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.notify.events import Event, Message, OutboxKind, Renderer
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

# Slack errors after which the same call, sent again later, may well succeed.
_TRANSIENT_SLACK_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


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
        # How each kind of row reaches Slack.
        self._handlers: dict[OutboxKind, Callable[[OutboxItem, Campaign | None], Awaitable[None]]] = {
            OutboxKind.ROOT: self._post_root,
            OutboxKind.ROOT_UPDATE: self._edit_root,
            OutboxKind.REPLY: self._post_in_thread,
            OutboxKind.FAILURES: self._post_in_thread,
            OutboxKind.SUMMARY: self._post_in_thread,
            OutboxKind.UPLOAD: self._upload,
            OutboxKind.DM: self._direct_message,
            OutboxKind.CONFIRM: self._confirm,
        }

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
        if item.kind == OutboxKind.CONFIRM and item.attempts >= CONFIRM_ATTEMPTS:
            # A response_url lives 30 minutes; past a few tries it is gone for good.
            self.outbox.mark_sent(item.id, error="response_url unreachable; gave up")
            return False
        try:
            await self._deliver(item)
        except _Superseded:
            self.outbox.mark_sent(item.id, error="superseded by a later edit")
            return False
        except Unsendable as exc:
            # Trying again cannot help, and the row would hold its lane back while it tried.
            log.error("cannot send %s #%s: %s", item.kind, item.id, exc)
            self.outbox.mark_sent(item.id, error=f"cannot send: {exc}")
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
            if item.kind == OutboxKind.ROOT and item.campaign_id is not None:
                self._root_refused(item.campaign_id, error)
            return False
        except (SlackUnreachable, aiohttp.ClientError, TimeoutError, OSError) as exc:
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
        if item.kind == OutboxKind.ROOT:
            return str(item.payload.get("channel") or "") or None
        if item.kind == OutboxKind.DM:
            return str(item.payload.get("user") or "") or None
        if item.kind in _THREAD_POSTS and item.campaign_id is not None:
            return self.store.campaign(item.campaign_id).approval_channel
        return None

    def _backoff(self, item: OutboxItem, error: str) -> None:
        delay = min(self.max_backoff, 2.0 ** min(item.attempts, 8)) * random.uniform(0.5, 1.0)
        log.warning("Slack unavailable for %s #%s (%s); retrying in %.1f s", item.kind, item.id, error, delay)
        self.outbox.retry_later(item.id, self.clock() + dt.timedelta(seconds=delay), error)

    async def _deliver(self, item: OutboxItem) -> None:
        try:
            kind = OutboxKind(item.kind)
        except ValueError:
            raise Unsendable(f"unknown kind {item.kind!r}") from None
        campaign = self.store.campaign(item.campaign_id) if item.campaign_id is not None else None
        if campaign is not None and kind in _IN_THREAD:
            if not campaign.thread_ts or not campaign.approval_channel:
                if self.outbox.root_refused(campaign.id):
                    return  # no thread will ever exist for these; the requester was told
                # The root is not posted yet (its own lane is behind): try again shortly.
                raise SlackUnreachable("the thread's root is not posted yet")
        await self._handlers[kind](item, campaign)

    async def _post_root(self, item: OutboxItem, campaign: Campaign | None) -> None:
        assert campaign is not None
        if campaign.thread_ts:  # already posted before a crash: never post the card twice
            return
        answer = await self.client.chat_postMessage(channel=item.payload["channel"], **self.renderer.card(campaign))
        self.store.update_fields(campaign.id, approval_channel=answer["channel"], thread_ts=answer["ts"])

    async def _edit_root(self, item: OutboxItem, campaign: Campaign | None) -> None:
        assert campaign is not None and campaign.thread_ts and campaign.approval_channel
        if self.outbox.newer_pending(item):
            raise _Superseded()  # a later edit will show the same card: never send it twice
        self.outbox.detach(item.id)
        await self.client.chat_update(
            channel=campaign.approval_channel, ts=campaign.thread_ts, **self.renderer.card(campaign)
        )

    async def _post_in_thread(self, item: OutboxItem, campaign: Campaign | None) -> None:
        """A reply, the batch of failed devices or the final summary, into the thread."""
        assert campaign is not None and campaign.approval_channel
        message: Message | None = item.payload.get("message")  # rendered before (or a row from before events)
        if message is None:
            render = await self._thread_message(item, campaign)
            # Rendered once, at the first attempt, and kept: a retry sends the same words.
            message = self.outbox.keep_rendered(item.id, render)
            if message is None:
                return
        await self.client.chat_postMessage(channel=campaign.approval_channel, thread_ts=campaign.thread_ts, **message)

    async def _thread_message(self, item: OutboxItem, campaign: Campaign) -> Callable[[], Message | None]:
        """How to render a thread row; large reads happen here, off the loop and before the
        transaction the rendering runs in."""
        if item.kind == OutboxKind.FAILURES:

            def failures() -> Message | None:
                message = self.renderer.failures(campaign)
                if message is not None:
                    self.store.mark_failures_reported(campaign.id)
                return message

            return failures
        if item.kind == OutboxKind.SUMMARY:
            reads = await self.renderer.summary_reads(campaign)
            return lambda: self.renderer.summary(campaign, reads)
        event, facts = _event(item), item.payload.get("facts") or {}
        return lambda: self.renderer.reply(event, campaign, facts)

    async def _upload(self, item: OutboxItem, campaign: Campaign | None) -> None:
        assert campaign is not None and campaign.thread_ts
        upload = await self.renderer.upload(campaign, item.payload)
        await self.client.files_upload_v2(
            channel=campaign.approval_channel,
            thread_ts=campaign.thread_ts,
            filename=upload.filename,
            title=upload.title,
            content=upload.content,
            initial_comment=item.payload.get("comment"),
        )

    async def _direct_message(self, item: OutboxItem, campaign: Campaign | None) -> None:
        payload = item.payload
        message: Message | None = payload.get("message")  # a row from before events
        if message is None:
            assert campaign is not None
            # Rows from before events carried their facts beside the event (`by`, `reason`).
            facts = payload.get("facts")
            if facts is None:
                facts = {k: v for k, v in payload.items() if k not in ("user", "event")}
            permalink = await self._permalink(campaign)
            message = self.renderer.dm(_event(item), campaign, facts, permalink)
        await self.client.chat_postMessage(channel=payload["user"], **message)

    async def _confirm(self, item: OutboxItem, campaign: Campaign | None) -> None:
        assert campaign is not None
        if not campaign.thread_ts:
            # "Posted for approval" is said only once the card is there, with its link.
            if self.outbox.root_refused(campaign.id):
                return  # the requester was told why instead (see the root's refusal)
            raise SlackUnreachable("the approval card is not posted yet")
        message = self.renderer.confirmation(campaign, await self._permalink(campaign))
        response_url = item.payload.get("response_url")
        if not response_url:
            # A modal has no response_url: the confirmation goes to a direct message.
            await self.client.chat_postMessage(channel=campaign.requester, **message)
            return
        response = await AsyncWebhookClient(response_url).send(
            response_type="ephemeral", replace_original=False, text=message["text"], blocks=message.get("blocks")
        )
        if response.status_code >= 500:
            raise SlackUnreachable(f"response_url answered {response.status_code}")

    def _root_refused(self, campaign_id: int, error: str) -> None:
        """Slack will not take the approval card: nobody can approve, so the requester must know."""
        campaign = self.store.campaign(campaign_id)
        self.outbox.enqueue(
            OutboxKind.DM,
            {"user": campaign.requester, "event": Event.ROOT_REFUSED, "facts": {"error": error}},
            campaign_id=campaign.id,
        )

    async def _permalink(self, campaign: Campaign) -> str | None:
        if not campaign.thread_ts or not campaign.approval_channel:
            return None
        key = (campaign.approval_channel, campaign.thread_ts)
        if key not in self._permalinks:
            answer = await self.client.chat_getPermalink(channel=key[0], message_ts=key[1])
            self._permalinks[key] = answer["permalink"]
        return self._permalinks[key]

class _Superseded(Exception):
    """A newer row of the same kind waits: this one need not go out."""


class Unsendable(Exception):
    """A row this version cannot turn into a message (a kind or an event it does not know, as
    a newer version may have written): given up at once, with why, rather than retried."""


def _event(item: OutboxItem) -> Event:
    try:
        return Event(str(item.payload.get("event")))
    except ValueError:
        raise Unsendable(f"unknown event {item.payload.get('event')!r}") from None


class SlackUnreachable(Exception):
    """Not sent this time, and worth sending again: the thread's root is not posted yet, or a
    response_url answered 5xx. The item backs off like a network error."""


# Kinds of rows that only make sense inside the thread, once its root is posted.
_IN_THREAD = frozenset({OutboxKind.ROOT_UPDATE, OutboxKind.REPLY, OutboxKind.FAILURES, OutboxKind.SUMMARY, OutboxKind.UPLOAD})
# Kinds of rows that post a new message into the thread (paced per channel).
_THREAD_POSTS = frozenset({OutboxKind.REPLY, OutboxKind.FAILURES, OutboxKind.SUMMARY})


def _retry_after(headers: Any) -> float:
    for key in ("Retry-After", "retry-after"):
        value = headers.get(key) if headers else None
        if value:
            try:
                return max(1.0, float(value))
            except ValueError:
                break
    return 30.0
