"""Who may request and who may approve (SPEC §6), with Slack user groups resolved and cached."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger("bot.approvers")


class Directory:
    """Answers "may this user approve / request?" from FOTA_APPROVERS / FOTA_REQUESTERS.

    Entries are user IDs (U…, W…) or user-group IDs (S…); group members come from
    `usergroups.users.list` and are cached for `cache_seconds`, so a click does not
    wait on Slack every time.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        approvers: frozenset[str],
        requesters: frozenset[str],
        cache_seconds: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.client = client
        self.approvers = approvers
        self.requesters = requesters
        self.cache_seconds = cache_seconds
        self.monotonic = monotonic
        self._groups: dict[str, tuple[float, frozenset[str]]] = {}

    async def may_approve(self, user: str) -> bool:
        """Anyone when FOTA_APPROVERS is unset (the requester is refused elsewhere)."""
        return not self.approvers or await self._listed(user, self.approvers)

    async def still_approvers(self, users: Iterable[str]) -> frozenset[str] | None:
        """Which of `users` are approvers now (None: FOTA_APPROVERS unset, anyone may approve).
        A user whose standing cannot be read does not count."""
        if not self.approvers:
            return None
        current: set[str] = set()
        for user in set(users):
            try:
                if await self.may_approve(user):
                    current.add(user)
            except Exception:  # Slack unreachable: fail closed, as for an unreadable group
                log.warning("could not tell whether %s is still an approver; not counted", user)
        return frozenset(current)

    async def may_request(self, user: str) -> bool:
        return not self.requesters or await self._listed(user, self.requesters)

    async def _listed(self, user: str, principals: frozenset[str]) -> bool:
        if user in principals:
            return True
        for group in sorted(p for p in principals if p.startswith("S")):
            if user in await self.members(group):
                return True
        return False

    async def members(self, group: str) -> frozenset[str]:
        cached = self._groups.get(group)
        if cached and self.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        try:
            answer = await self.client.usergroups_users_list(usergroup=group)
            members = frozenset(answer.get("users") or [])
        except SlackApiError as exc:
            # Fail closed: an unreadable group grants nothing. Keep a stale list if we had one.
            log.warning("could not read user group %s: %s", group, exc.response.get("error"))
            return cached[1] if cached else frozenset()
        self._groups[group] = (self.monotonic(), members)
        return members
