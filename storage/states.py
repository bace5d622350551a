"""Campaign states and the one table of allowed transitions.

Local states cover the time before ThingSpace knows the campaign; from
`submitted` on, the state follows ThingSpace's own campaign status. Transitions
only move forward: a late or reordered callback can never move a campaign back,
and a terminal state never changes again (a halted rollout is not terminal: an
approver's recorded decision resumes it). The one way back is a correction
(`CORRECTIONS`): ThingSpace's own answer to a re-read putting back a live status
that callbacks alone (unsigned hints) had moved forward.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CampaignState(StrEnum):
    PENDING_APPROVAL = "pending_approval"
    APPROVED = "approved"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    # ThingSpace's campaign statuses, kept under their own names.
    REQUEST_PENDING = "CampaignRequestPending"
    REQUEST_QUEUED = "CampaignRequestQueued"
    PRE_SCHEDULED = "CampaignPreScheduled"
    SCHEDULED = "CampaignScheduled"
    # Terminal.
    ENDED = "CampaignEnded"
    CANCELLED = "CampaignCancelled"
    ABORTED = "CampaignAborted"
    FAILED = "CampaignFailed"
    REQUEST_FAILED = "CampaignRequestFailed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"
    SUBMIT_FAILED = "submit_failed"
    # ThingSpace kept answering 404 for a campaign it had accepted (a sandbox reset, an account
    # move): fota-bot stops following it. Nothing was cancelled.
    LOST = "lost"
    # A staged rollout's request: its waves are campaigns of their own (storage.waves); the
    # request itself is never sent. Rolled out once its last wave ended.
    ROLLING_OUT = "rolling_out"
    ROLLED_OUT = "rolled_out"
    # A wave crossed the plan's halt threshold, or someone halted the rollout: no further wave
    # is sent until an approver resumes it (with a reason). Not terminal: it may go on.
    HALTED = "halted"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL

    @property
    def is_thingspace(self) -> bool:
        return self.value.startswith("Campaign")


S = CampaignState

TERMINAL: frozenset[CampaignState] = frozenset(
    {
        S.ENDED,
        S.CANCELLED,
        S.ABORTED,
        S.FAILED,
        S.REQUEST_FAILED,
        S.REJECTED,
        S.EXPIRED,
        S.WITHDRAWN,
        S.SUBMIT_FAILED,
        S.LOST,
        S.ROLLED_OUT,
    }
)

# ThingSpace ends a campaign in any of these, from any live status; and a campaign ThingSpace
# holds can turn out lost at any point.
_THINGSPACE_ENDINGS = {S.ENDED, S.CANCELLED, S.ABORTED, S.FAILED}
_ENDINGS = _THINGSPACE_ENDINGS | {S.LOST}

ALLOWED: dict[CampaignState, frozenset[CampaignState]] = {
    S.PENDING_APPROVAL: frozenset({S.APPROVED, S.REJECTED, S.EXPIRED, S.WITHDRAWN}),
    S.APPROVED: frozenset({S.SUBMITTING, S.SUBMIT_FAILED, S.ROLLING_OUT}),
    S.ROLLING_OUT: frozenset({S.ROLLED_OUT, S.HALTED}),
    # Resumed by an approver's recorded decision; the request itself never reaches ThingSpace.
    S.HALTED: frozenset({S.ROLLING_OUT}),
    S.SUBMITTING: frozenset({S.SUBMITTED, S.SUBMIT_FAILED}),
    S.SUBMITTED: frozenset(
        {S.REQUEST_PENDING, S.REQUEST_QUEUED, S.PRE_SCHEDULED, S.SCHEDULED, S.REQUEST_FAILED}
        | _ENDINGS
    ),
    S.REQUEST_PENDING: frozenset(
        {S.REQUEST_QUEUED, S.PRE_SCHEDULED, S.SCHEDULED, S.REQUEST_FAILED} | _ENDINGS
    ),
    S.REQUEST_QUEUED: frozenset({S.PRE_SCHEDULED, S.SCHEDULED, S.REQUEST_FAILED} | _ENDINGS),
    S.PRE_SCHEDULED: frozenset({S.SCHEDULED} | _ENDINGS),
    S.SCHEDULED: frozenset(_ENDINGS),
    **{state: frozenset() for state in TERMINAL},
}

# ThingSpace's live statuses, in the order it moves a campaign through them, and its ended ones:
# the one list of ThingSpace's campaign statuses (the client looks campaigns up by them).
THINGSPACE_LIVE: tuple[CampaignState, ...] = (S.REQUEST_PENDING, S.REQUEST_QUEUED, S.PRE_SCHEDULED, S.SCHEDULED)
THINGSPACE_ENDED: tuple[CampaignState, ...] = (S.ENDED, S.CANCELLED, S.ABORTED, S.FAILED, S.REQUEST_FAILED)

# The only edges back: a live status that callbacks alone produced, put back to the earlier one
# ThingSpace's answer to a re-read gives (a forged "started" must not stand, or /fota cancel
# treats a campaign that has not started as started). Never out of or into a terminal state.
CORRECTIONS: dict[CampaignState, frozenset[CampaignState]] = {
    later: frozenset(THINGSPACE_LIVE[:i]) for i, later in enumerate(THINGSPACE_LIVE) if i
}

# ThingSpace's prose also says "CampaignQueued" for CampaignRequestQueued.
THINGSPACE_ALIASES = {"CampaignQueued": S.REQUEST_QUEUED}

# States in which ThingSpace holds the campaign and callbacks are expected.
ACTIVE_AT_THINGSPACE: frozenset[CampaignState] = frozenset({S.SUBMITTED, *THINGSPACE_LIVE})


def thingspace_state(status: str) -> CampaignState | None:
    """The state for a ThingSpace campaign status, or None for one we do not know."""
    status = THINGSPACE_ALIASES.get(status, status)
    try:
        state = CampaignState(status)
    except ValueError:
        return None
    return state if state.is_thingspace else None


@dataclass(frozen=True)
class StateWords:
    """A state in people's words: as a heading on a card, and inside a sentence ("FB-12 is …")."""

    heading: str
    inline: str


# The one table of what each state is called (every state has words: tested); the cards add an
# emoji, the services' refusals use the inline words.
STATE_WORDS: dict[CampaignState, StateWords] = {
    S.PENDING_APPROVAL: StateWords("Waiting for approval", "waiting for approval"),
    S.APPROVED: StateWords("Approved, about to be sent to ThingSpace", "approved"),
    S.SUBMITTING: StateWords("Being sent to ThingSpace", "being sent to ThingSpace"),
    S.SUBMITTED: StateWords("Accepted by ThingSpace", "submitted to ThingSpace"),
    S.REQUEST_PENDING: StateWords("ThingSpace is processing the request", "being processed by ThingSpace"),
    S.REQUEST_QUEUED: StateWords("Queued at ThingSpace", "queued at ThingSpace"),
    S.PRE_SCHEDULED: StateWords("Pre-scheduled at ThingSpace", "pre-scheduled at ThingSpace"),
    S.SCHEDULED: StateWords(
        "Scheduled: devices upgrade in the campaign's dates and windows", "scheduled at ThingSpace"
    ),
    S.ENDED: StateWords("Ended", "ended"),
    S.CANCELLED: StateWords("Cancelled", "cancelled"),
    S.ABORTED: StateWords("Aborted", "aborted"),
    S.FAILED: StateWords("Failed at ThingSpace", "failed at ThingSpace"),
    S.REQUEST_FAILED: StateWords("ThingSpace could not take the request", "refused by ThingSpace"),
    S.REJECTED: StateWords("Rejected", "rejected"),
    S.EXPIRED: StateWords("Expired without a decision", "expired"),
    S.WITHDRAWN: StateWords("Withdrawn by the requester", "withdrawn"),
    S.SUBMIT_FAILED: StateWords("Not scheduled: the request failed", "refused by ThingSpace"),
    S.LOST: StateWords(
        "Lost: ThingSpace no longer knows this campaign", "lost (ThingSpace no longer knows it)"
    ),
    S.ROLLING_OUT: StateWords("Rolling out in waves", "rolling out in waves"),
    S.ROLLED_OUT: StateWords("Rolled out: every wave ended", "rolled out"),
    S.HALTED: StateWords("Halted: no further wave is sent unless an approver resumes it", "halted"),
}


class IllegalTransition(Exception):
    def __init__(self, ref: str, current: CampaignState, wanted: CampaignState):
        self.current = current
        self.wanted = wanted
        super().__init__(f"{ref} cannot go from {current} to {wanted}")


def check_transition(
    ref: str, current: CampaignState, wanted: CampaignState, *, correction: bool = False
) -> None:
    allowed = CORRECTIONS.get(current, frozenset()) if correction else ALLOWED[current]
    if wanted not in allowed:
        raise IllegalTransition(ref, current, wanted)


# --- Device statuses --------------------------------------------------------------------------
# ThingSpace's device status list is incomplete in every source (v2 and v3 names mixed); any
# status we do not know is counted as "other", never dropped.

DEVICE_BUCKETS = ("pending", "in progress", "succeeded", "failed", "other")

_DEVICE_BUCKET_OF = {
    None: "pending",
    "": "pending",
    "UpgradePending": "pending",
    "NoDeviceDataFromNetwork": "pending",
    "Accepted": "pending",
    "UpgradeScheduled": "in progress",
    "ReceivedDeviceDataFromNetwork": "in progress",
    "UpgradeInProgress": "in progress",
    "UpgradeSuccess": "succeeded",
    "UpgradeFailed": "failed",
    "UpgradedFailed": "failed",
    "RequestToFotaServerFailed": "failed",
    "DeviceRejected": "failed",
}

# The statuses counted as "failed", for finding devices to report in the thread.
FAILED_DEVICE_STATUSES: tuple[str, ...] = tuple(
    sorted(status for status, bucket in _DEVICE_BUCKET_OF.items() if status and bucket == "failed")
)

# Device statuses after which ThingSpace will not change the device again.
DEVICE_FINAL = frozenset(
    {"UpgradeSuccess", "UpgradeFailed", "UpgradedFailed", "RequestToFotaServerFailed", "DeviceRejected",
     "CampaignCancelled", "CampaignAborted"}
)


def device_bucket(status: str | None) -> str:
    """Which progress bucket a ThingSpace device status counts in."""
    return _DEVICE_BUCKET_OF.get(status, "other")
