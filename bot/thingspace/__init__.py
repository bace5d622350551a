"""ThingSpace FOTA v3: the client and the errors it raises."""

from bot.thingspace.client import (
    ACTIVE_CAMPAIGN_STATUSES,
    CAMPAIGN_STATUSES,
    ENDED_CAMPAIGN_STATUSES,
    Registration,
    ThingSpaceClient,
)
from bot.thingspace.errors import (
    StatusNotSearchable,
    ThingSpaceAmbiguous,
    ThingSpaceAuthError,
    ThingSpaceError,
    ThingSpaceNotFound,
    ThingSpaceRejected,
    ThingSpaceUnavailable,
)

__all__ = [
    "ACTIVE_CAMPAIGN_STATUSES",
    "CAMPAIGN_STATUSES",
    "ENDED_CAMPAIGN_STATUSES",
    "Registration",
    "StatusNotSearchable",
    "ThingSpaceAmbiguous",
    "ThingSpaceAuthError",
    "ThingSpaceClient",
    "ThingSpaceError",
    "ThingSpaceNotFound",
    "ThingSpaceRejected",
    "ThingSpaceUnavailable",
]
