"""ThingSpace callback payloads -> campaign and device updates. Pure; never raises.

ThingSpace does not publish the v3 callback shape (its pages show v1/v2 bodies only, see
docs/thingspace.md), so this reads every shape we know or expect and sets the rest aside:

- flat objects: a campaign id (`campaignId`, `upgradeId` or `id`) and a `status`;
  with a `deviceId` they are about one device (reason in `reason`, `resultReason` or
  `failureReason`). The sandbox sends exactly these, `type` `CampaignStatus` or
  `DeviceStatus`, time in `timestamp`;
- any object carrying a `deviceList` of device objects (like the report endpoint's
  items: deviceId, status, resultReason, updatedTime) beside a campaign id;
- the older v1 envelope `{accountName, participantName, type, firmwareList: [...],
  upgradeScheduled: {...}, upgradeProgress: {...}}`: its nested objects are read one
  level down and inherit the envelope's account, campaign id and time. `type` names
  the nested key the callback is about; v1 fills the others with empty placeholders;
- a JSON array of any of these (and arrays inside it, one level).

Anything that yields no usable update goes to `unrecognised`. The receiver has kept
the raw payload anyway; the caller treats an unrecognised part as a hint to re-read
the accounts named in the payload. Values are checked, never trusted: ThingSpace is
loose with types.
"""

from __future__ import annotations

import itertools
import logging
import string
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("bot.callbacks")

MAX_CAMPAIGN_ID = 128
MAX_STATUS = 100
MAX_REASON = 1000
MAX_ACCOUNT = 64
MAX_TIME = 64
# IMEIs are 15 digits; MEIDs and ICCIDs in decimal are longer, but never this long.
MAX_DEVICE_ID = 32
# How many values the search for account names inside unrecognised parts may visit:
# enough for any real payload, bounded for a hostile one.
ACCOUNT_SEARCH_BUDGET = 10_000

_CAMPAIGN_ID_KEYS = ("campaignId", "upgradeId", "id")
# Inside a deviceList, `id` could be the device's or the row's own: only explicit names count.
_ITEM_CAMPAIGN_ID_KEYS = ("campaignId", "upgradeId")
_STATUS_KEYS = ("status", "upgradeStatus", "campaignStatus")
_REASON_KEYS = ("reason", "resultReason", "failureReason")
_TIME_KEYS = ("timestamp", "updatedTime", "time")
_ACCOUNT_KEY = "accountName"
_DEVICE_KEY = "deviceId"
_DEVICE_LIST_KEY = "deviceList"
# Keys that show a nested object meant to report something. v1 envelopes carry empty
# placeholders ("", [], {}) for the parts that do not apply; those do not count.
_SIGNAL_KEYS = ("campaignId", "upgradeId", _DEVICE_KEY, *_STATUS_KEYS, _DEVICE_LIST_KEY)
_EMPTY: tuple[Any, ...] = (None, "", [], {})
# Account names become URL path segments when re-reading (e.g. 0642233522-00001).
_ACCOUNT_CHARS = frozenset(string.ascii_letters + string.digits + "-_.")
# 15-digit integers: an IMEI sent as a JSON number.
_IMEI_INT_LOW, _IMEI_INT_HIGH = 10**14, 10**15
# Integer reasons and times are converted to text only within this range (str() of a
# huge int is slow and, past 4,300 digits, raises).
_INT_TEXT_LIMIT = 10**18

_TOP, _NESTED, _DEVICE_ITEM = "top", "nested", "device item"


@dataclass(frozen=True, slots=True)
class CampaignUpdate:
    account: str | None
    campaign_id: str
    status: str
    at: str | None


@dataclass(frozen=True, slots=True)
class DeviceUpdate:
    account: str | None
    campaign_id: str
    device_id: str
    status: str
    reason: str | None
    at: str | None


@dataclass(frozen=True, slots=True)
class ParsedCallback:
    """What one payload says.

    `at` is ThingSpace's time as sent (trimmed), not normalised, so it compares with
    the report endpoint's `updatedTime` in the same format. `unrecognised` holds the
    parts (as decoded) that yielded nothing; `accounts` every valid account name seen,
    including inside unrecognised parts, for re-reading those accounts' campaigns.
    """

    campaign_updates: tuple[CampaignUpdate, ...]
    device_updates: tuple[DeviceUpdate, ...]
    unrecognised: tuple[Any, ...]
    accounts: frozenset[str]


def parse_callback(body: Any) -> ParsedCallback:
    """Read an already-decoded callback payload; never raises."""
    parser = _Parser()
    try:
        if isinstance(body, list):
            for entry in body:
                if isinstance(entry, list):
                    for inner in entry:
                        parser.item(inner)
                else:
                    parser.item(entry)
        else:
            parser.item(body)
        return parser.result()
    except Exception:
        # A parser bug must not turn one payload into a poison pill that stops the
        # processor: the payload is kept raw and counts as unrecognised (a re-read).
        log.exception("callback parser failed; payload treated as unrecognised")
        return ParsedCallback((), (), (body,), frozenset())


class _Parser:
    __slots__ = ("campaigns", "devices", "unrecognised", "accounts")

    def __init__(self) -> None:
        self.campaigns: list[CampaignUpdate] = []
        self.devices: list[DeviceUpdate] = []
        self.unrecognised: list[Any] = []
        self.accounts: set[str] = set()

    def result(self) -> ParsedCallback:
        self._search_accounts()
        return ParsedCallback(
            tuple(self.campaigns),
            tuple(self.devices),
            tuple(self.unrecognised),
            frozenset(self.accounts),
        )

    def item(self, value: Any) -> None:
        """One top-level payload item: updates, or the whole item unrecognised."""
        if isinstance(value, dict):
            produced, failures = self._object(value, None, None, None, _TOP)
            if produced:
                self.unrecognised.extend(failures)
                return
        self.unrecognised.append(value)

    def _object(
        self,
        obj: dict[Any, Any],
        account: str | None,
        campaign_id: str | None,
        at: str | None,
        level: str,
    ) -> tuple[int, list[Any]]:
        """Updates found in `obj` and below; returns (how many, parts that failed).

        The failed parts matter only when something else in the same item was read:
        otherwise the caller sets the whole item aside instead.
        """
        own_account = _account(obj.get(_ACCOUNT_KEY))
        if own_account is not None:
            self.accounts.add(own_account)
            account = own_account
        # An id or time that is present but unusable is not replaced by the inherited
        # one: the object is about something we cannot read.
        raw_id = _first(obj, _ITEM_CAMPAIGN_ID_KEYS if level is _DEVICE_ITEM else _CAMPAIGN_ID_KEYS)
        if raw_id is not None:
            campaign_id = _text(raw_id, MAX_CAMPAIGN_ID)
        raw_at = _first(obj, _TIME_KEYS)
        if raw_at is not None:
            at = _time(raw_at)

        produced = 0
        failures: list[Any] = []
        raw_status = _first(obj, _STATUS_KEYS)
        # A deviceId key, even null, makes the object device-level: its status must never
        # be taken for the campaign's.
        has_device = _DEVICE_KEY in obj
        flat = has_device or raw_status is not None or level is _DEVICE_ITEM
        if flat:
            if self._own_update(obj, raw_status, has_device, account, campaign_id, at, level):
                produced += 1
            else:
                failures.append(obj)

        if level is not _DEVICE_ITEM:
            device_list = obj.get(_DEVICE_LIST_KEY)
            if isinstance(device_list, list):
                for entry in device_list:
                    if (
                        isinstance(entry, dict)
                        and self._object(entry, account, campaign_id, at, _DEVICE_ITEM)[0]
                    ):
                        produced += 1
                    else:
                        failures.append(entry)

        if level is _TOP and not flat:
            # An envelope (v1, or an unknown wrapper): read its nested objects, one level.
            about = _type_key(obj)
            for key, value in obj.items():
                if key == _DEVICE_LIST_KEY:
                    continue
                if isinstance(value, dict):
                    candidates: list[Any] | tuple[Any, ...] = (value,)
                elif isinstance(value, list):
                    candidates = value
                else:
                    continue
                for candidate in candidates:
                    if not isinstance(candidate, dict):
                        continue
                    count, nested_failures = self._object(
                        candidate, account, campaign_id, at, _NESTED
                    )
                    if count:
                        produced += count
                        failures.extend(nested_failures)
                    elif key == about or _signals(candidate):
                        failures.append(candidate)
        return produced, failures

    def _own_update(
        self,
        obj: dict[Any, Any],
        raw_status: Any,
        has_device: bool,
        account: str | None,
        campaign_id: str | None,
        at: str | None,
        level: str,
    ) -> bool:
        status = _text(raw_status, MAX_STATUS) if raw_status is not None else None
        if status is None or campaign_id is None:
            return False
        kind = obj.get("type")
        device_typed = (
            isinstance(kind, str) and len(kind) <= MAX_STATUS and "device" in kind.lower()
        )
        if has_device or level is _DEVICE_ITEM or device_typed:
            device_id = _device_id(obj.get(_DEVICE_KEY))
            if device_id is None:
                return False
            reason = _reason(_first(obj, _REASON_KEYS))
            self.devices.append(DeviceUpdate(account, campaign_id, device_id, status, reason, at))
        else:
            self.campaigns.append(CampaignUpdate(account, campaign_id, status, at))
        return True

    def _search_accounts(self) -> None:
        """Account names anywhere inside the unrecognised parts, within a budget."""
        budget = ACCOUNT_SEARCH_BUDGET
        stack = [v for v in self.unrecognised if isinstance(v, dict | list)]
        while stack and budget > 0:
            budget -= 1
            value = stack.pop()
            children: Iterable[Any]
            if isinstance(value, dict):
                found = _account(value.get(_ACCOUNT_KEY))
                if found is not None:
                    self.accounts.add(found)
                children = value.values()
            else:
                children = value
            stack.extend(
                itertools.islice((c for c in children if isinstance(c, dict | list)), budget)
            )


def _first(obj: dict[Any, Any], keys: tuple[str, ...]) -> Any:
    """The first of `keys` with a value; v1's empty-string placeholders count as absent."""
    for key in keys:
        value = obj.get(key)
        if value is not None and value != "":
            return value
    return None


def _signals(obj: dict[Any, Any]) -> bool:
    return any(obj.get(key) not in _EMPTY for key in _SIGNAL_KEYS)


def _type_key(obj: dict[Any, Any]) -> str | None:
    """The nested key an envelope's `type` names (`upgradeProgress`, also as `UpgradeProgress`)."""
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind:
        return None
    if kind in obj:
        return kind
    camel = kind[0].lower() + kind[1:]
    return camel if camel in obj else None


def _text(value: Any, limit: int) -> str | None:
    """A short one-line string (ids, statuses), or None."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > limit or not text.isprintable():
        return None
    return text


def _account(value: Any) -> str | None:
    text = _text(value, MAX_ACCOUNT)
    if text is None or not _ACCOUNT_CHARS.issuperset(text):
        return None
    return text


def _device_id(value: Any) -> str | None:
    if isinstance(value, str):
        text = value.strip()
        if 0 < len(text) <= MAX_DEVICE_ID and text.isascii() and text.isdigit():
            return text
        return None
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and _IMEI_INT_LOW <= value < _IMEI_INT_HIGH
    ):
        return str(value)
    return None


def _reason(value: Any) -> str | None:
    """Free text, cut to MAX_REASON; an error code sent as a number is kept as text."""
    if isinstance(value, str):
        text = value.strip()
    elif (
        isinstance(value, int)
        and not isinstance(value, bool)
        and -_INT_TEXT_LIMIT < value < _INT_TEXT_LIMIT
    ):
        text = str(value)
    else:
        return None
    return text[:MAX_REASON] or None


def _time(value: Any) -> str | None:
    """ThingSpace's time as sent: a short string, or epoch seconds/milliseconds as text."""
    if isinstance(value, str):
        text = value.strip()
        return text if 0 < len(text) <= MAX_TIME else None
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < _INT_TEXT_LIMIT:
        return str(value)
    return None
