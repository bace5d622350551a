"""`fota-bot check --thingspace`: every ThingSpace call the bot depends on, tried once, read only.

A line per call: how ThingSpace answered, and what the bot will do about it. Only reads are
made: GETs, the OAuth token and session logins, and the device look-up, which ThingSpace
serves as a POST of a device list (it changes nothing). Never a campaign, a listener or a
licence change: a probe must be safe to run against a production account at any time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from bot.thingspace.client import CAMPAIGN_STATUSES, ThingSpaceClient
from bot.thingspace.errors import (
    StatusNotSearchable,
    ThingSpaceAuthError,
    ThingSpaceError,
    ThingSpaceNotFound,
    ThingSpaceRejected,
)
from storage.model import PROTOCOLS

# The reference page's example IMEI: a look-up of a device the account does not have still
# shows that the call works.
SAMPLE_IMEI = "354658090353977"

Verdict = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class ProbeLine:
    verdict: Verdict
    call: str  # e.g. "GET firmware (LWM2M)"
    answer: str  # how ThingSpace answered
    consequence: str  # what the bot will do about it

    @property
    def text(self) -> str:
        return f"ThingSpace {self.call}: {self.answer} → {self.consequence}"


def _refusal(exc: ThingSpaceError) -> str:
    if isinstance(exc, ThingSpaceRejected):
        return f"refused ({exc.status} {exc.error_code}: {exc.error_message})"
    return str(exc)


async def probe(
    client: ThingSpaceClient,
    account: str,
    *,
    imei: str = SAMPLE_IMEI,
    expected_callback: str | None = None,
) -> list[ProbeLine]:
    lines: list[ProbeLine] = []
    try:
        await client.check()
    except ThingSpaceError as exc:
        fix = ("check THINGSPACE_CLIENT_ID/SECRET and THINGSPACE_USERNAME/PASSWORD (five failed logins "
               "lock the user)" if isinstance(exc, ThingSpaceAuthError) else "check THINGSPACE_URL and the network")
        lines.append(ProbeLine("FAIL", "OAuth token and M2M session", str(exc),
                               f"nothing can be sent or followed; {fix}"))
        return lines
    lines.append(ProbeLine("ok", "OAuth token and M2M session", "obtained",
                           "the bot logs in the same way and renews both itself"))

    for protocol in PROTOCOLS:
        call = f"GET firmware ({protocol})"
        try:
            firmware = await client.list_firmware(account, protocol)
        except ThingSpaceError as exc:
            lines.append(ProbeLine("FAIL" if protocol == "LWM2M" else "warn", call, _refusal(exc),
                                   f"pre-flight checks of {protocol} requests fail: they cannot be approved"))
            continue
        lines.append(ProbeLine("ok" if firmware or protocol != "LWM2M" else "warn", call,
                               f"{len(firmware)} firmware",
                               f"{protocol} requests are checked against this list"
                               if firmware else f"no {protocol} firmware: such requests are refused at pre-flight"))

    try:
        subscription = await client.subscription(account)
        used, total = subscription.get("licenseUsedCount"), subscription.get("licenseCount")
        lines.append(ProbeLine("ok", "GET subscription",
                               f"{subscription.get('purchaseType') or 'no purchaseType'}, {used} of {total} licences used",
                               "pre-flight reads whether devices need licences, and how many are free"))
    except ThingSpaceError as exc:
        lines.append(ProbeLine("FAIL", "GET subscription", _refusal(exc),
                               "every pre-flight check fails while this does: no request can be approved"))

    try:
        listener = await client.get_callback(account)
        url = (listener or {}).get("url")
        if not url:
            lines.append(ProbeLine("warn", "GET callback listener", "none registered",
                                   "no callbacks: rollouts are followed by re-reading reports only; "
                                   "run `fota-bot register-callback`"))
        elif expected_callback is None:
            lines.append(ProbeLine("ok", "GET callback listener", "a URL is registered",
                                   "set FOTA_PUBLIC_URL to compare it with this bot's"))
        elif url == expected_callback:
            lines.append(ProbeLine("ok", "GET callback listener", "this bot's URL",
                                   "callbacks reach this bot"))
        else:
            lines.append(ProbeLine("FAIL", "GET callback listener", "another URL",
                                   "callbacks go elsewhere; run `fota-bot register-callback`"))
    except ThingSpaceError as exc:
        lines.append(ProbeLine("warn", "GET callback listener", _refusal(exc),
                               "`fota-bot register-callback` may fail the same way"))

    for status in CAMPAIGN_STATUSES:
        call = f"GET campaigns ({status})"
        try:
            count = 0
            async for _ in client.campaigns_by_status(account, status):
                count += 1
            lines.append(ProbeLine("ok", call, f"{count} campaign{'s' if count != 1 else ''}",
                                   "a lost answer to a submission is looked up here by name"))
        except StatusNotSearchable as exc:
            lines.append(ProbeLine("warn", call, _refusal(exc),
                                   "look-ups skip this status and search the others"))
        except ThingSpaceError as exc:
            lines.append(ProbeLine("FAIL", call, _refusal(exc),
                                   "a lost answer cannot be resolved: such a submission waits instead of "
                                   "posting again"))

    call = f"POST devices (look-up of {imei}, reads only)"
    try:
        devices = await client.device_info(account, [imei])
        lines.append(ProbeLine("ok", call, f"{len(devices)} device record{'s' if len(devices) != 1 else ''}",
                               "pre-flight checks every requested device this way"))
    except ThingSpaceNotFound as exc:
        lines.append(ProbeLine("ok", call, f"device unknown to the account ({exc.error_code})",
                               "pre-flight checks every requested device this way"))
    except ThingSpaceError as exc:
        lines.append(ProbeLine("FAIL", call, _refusal(exc),
                               "every pre-flight check fails while this does: no request can be approved"))
    return lines


def summary(lines: Sequence[ProbeLine]) -> tuple[int, int]:
    """(failures, warnings)."""
    return sum(line.verdict == "FAIL" for line in lines), sum(line.verdict == "warn" for line in lines)
