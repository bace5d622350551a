"""Who may request and who may approve, with Slack user groups resolved and cached."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger("bot.approvers")


class MembershipUnknown(Exception):
    """Slack could not say who is in these user groups (and no earlier list is cached): whether a
    user is an approver is unknown, which is not the same as "not an approver"."""

    def __init__(self, groups: Iterable[str]):
        self.groups = tuple(sorted(set(groups)))
        super().__init__(f"Slack's user-group membership could not be checked ({', '.join(self.groups)})")


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

    async def may_approve_checked(self, user: str) -> bool:
        """As `may_approve`, but MembershipUnknown when the answer hangs on a group Slack could not
        list: a Slack hiccup must not read as a removal, which would void a recorded approval."""
        return not self.approvers or await self._listed(user, self.approvers, strict=True)

    async def still_approvers(self, users: Iterable[str]) -> frozenset[str] | None:
        """Which of `users` are approvers now (None: FOTA_APPROVERS unset, anyone may approve).
        MembershipUnknown when a user's standing cannot be read: the caller must neither count
        nor lapse their approval."""
        if not self.approvers:
            return None
        current: set[str] = set()
        unknown: set[str] = set()
        for user in set(users):
            try:
                if await self.may_approve_checked(user):
                    current.add(user)
            except MembershipUnknown as exc:
                unknown.update(exc.groups)
            except Exception as exc:  # Slack unreachable: unknown, as for an unreadable group
                log.warning("could not tell whether %s is still an approver: %s", user, exc)
                unknown.update(p for p in self.approvers if p.startswith("S"))
        if unknown:
            raise MembershipUnknown(unknown)
        return frozenset(current)

    async def may_request(self, user: str) -> bool:
        return not self.requesters or await self._listed(user, self.requesters)

    async def _listed(self, user: str, principals: frozenset[str], *, strict: bool = False) -> bool:
        """`strict`: MembershipUnknown when the user is in no readable group but some group could
        not be read; otherwise an unreadable group grants nothing (fail closed)."""
        if user in principals:
            return True
        unreadable: list[str] = []
        for group in sorted(p for p in principals if p.startswith("S")):
            members = await self._read(group)
            if members is None:
                unreadable.append(group)
            elif user in members:
                return True
        if strict and unreadable:
            raise MembershipUnknown(unreadable)
        return False

    async def members(self, group: str) -> frozenset[str]:
        members = await self._read(group)
        # Fail closed: an unreadable group grants nothing.
        return members if members is not None else frozenset()

    async def _read(self, group: str) -> frozenset[str] | None:
        """The group's members, a stale cached list when Slack fails, or None: never read."""
        cached = self._groups.get(group)
        if cached and self.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        try:
            answer = await self.client.usergroups_users_list(usergroup=group)
            members = frozenset(answer.get("users") or [])
        except SlackApiError as exc:
            # Keep a stale list if we had one.
            log.warning("could not read user group %s: %s", group, exc.response.get("error"))
            return cached[1] if cached else None
        self._groups[group] = (self.monotonic(), members)
        return members
