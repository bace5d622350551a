"""What can go wrong talking to ThingSpace.

The client maps every failure, httpx's included (`raise Mapped(...) from exc`), into this
tree; nothing above the client ever sees an httpx exception. Each message is a sentence a
person can read in Slack or in `fota-bot check`, and none carries a token, a password or an
Authorization header.

* ThingSpaceError
  + ThingSpaceRejected      ThingSpace answered 4xx: it understood and said no.
                            `.status`, `.error_code`, `.error_message` (word for word from
                            ThingSpace's `{"errorCode", "errorMessage"}` body, or `HTTP_<status>`
                            and a plain description when the body has another shape).
    - ThingSpaceNotFound    404.
    - StatusNotSearchable   400 to a campaign list by status: ThingSpace does not search by
                            that status (`.campaign_status`).
  + ThingSpaceAuthError     The OAuth token or the M2M session login was refused, a FOTA call
                            still answered 401 after one fresh login, or a login failed a short
                            while ago and is not retried yet (five failed logins lock the user).
  + ThingSpaceUnavailable   ThingSpace could not be reached, kept answering 429/5xx until the
                            retries ran out, or answered something that is not JSON. `.status`
                            is the last HTTP status seen, if any. For the schedule POST this
                            means it was certainly not processed (connect error, 429, 503).
    - ThingSpaceAmbiguous   A request that must not be repeated blindly (scheduling a campaign)
                            MAY have been processed: a read timeout, a 500/502/504, an unreadable
                            answer. Look the campaign up by name before posting again.
"""

from __future__ import annotations

__all__ = [
    "StatusNotSearchable",
    "ThingSpaceAmbiguous",
    "ThingSpaceAuthError",
    "ThingSpaceError",
    "ThingSpaceNotFound",
    "ThingSpaceRejected",
    "ThingSpaceUnavailable",
]


class ThingSpaceError(Exception):
    """Base class of every error the ThingSpace client raises."""


class ThingSpaceRejected(ThingSpaceError):
    """ThingSpace answered 4xx: the request was understood and refused."""

    def __init__(self, status: int, error_code: str, error_message: str) -> None:
        self.status = status
        self.error_code = error_code
        self.error_message = error_message
        super().__init__(f"ThingSpace refused the request: {error_code}: {error_message}")


class ThingSpaceNotFound(ThingSpaceRejected):
    """ThingSpace answered 404: the account, campaign or callback does not exist."""


class StatusNotSearchable(ThingSpaceRejected):
    """ThingSpace answered 400 to the first page of a campaign list by this status."""

    def __init__(self, campaign_status: str, error_code: str, error_message: str) -> None:
        self.campaign_status = campaign_status
        super().__init__(400, error_code, error_message)


class ThingSpaceAuthError(ThingSpaceError):
    """ThingSpace refused our credentials, or a recent refusal is still cooling down."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ThingSpaceUnavailable(ThingSpaceError):
    """ThingSpace could not be reached or kept failing; `status` is the last HTTP status seen."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ThingSpaceAmbiguous(ThingSpaceUnavailable):
    """The request may have been processed: look before sending it again."""


def for_users(exc: ThingSpaceError) -> str:
    """The part of a ThingSpace failure worth telling a Slack user: no request paths, no
    advice meant for the operator (those stay in the log)."""
    if isinstance(exc, ThingSpaceRejected):
        return f"{exc.error_code}: {exc.error_message}"
    if isinstance(exc, ThingSpaceAuthError):
        return "the bot cannot log in to ThingSpace right now; the operator has to check its ThingSpace settings"
    status = getattr(exc, "status", None)
    return f"ThingSpace is not answering{f' (HTTP {status})' if status else ''}; try again in a few minutes"
