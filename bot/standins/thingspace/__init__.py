"""The built-in ThingSpace FOTA v3 simulator, for rehearsing rollouts without credentials.

`fota-bot sandbox` serves it on its own port; `fota-bot serve` in sandbox mode (no ThingSpace
credentials) and `fota-bot demo` run it in-process through `httpx.ASGITransport`::

    sandbox = Sandbox(clock=SandboxClock.real(speed=1.0))
    app = create_sandbox_app(sandbox)          # ThingSpace's paths, from the host root
    ticker = asyncio.create_task(sandbox.run_forever(0.5))

Tests use a manual clock instead and move it themselves: ``sandbox.clock.advance(5)`` then
``await sandbox.tick()``, which applies every change due and POSTs its callbacks.

Modules: `devices` (firmware catalogue, per-IMEI facts, IMEI helpers), `simulator` (the pure
model, clock, credentials), `runtime` (`Sandbox`: callbacks and fault knobs), `app` (HTTP).

Accounts: any path segment of digits and dashes is an account (the default is
``0000000000-00001``); each has its own campaigns and callback listener.

Devices, by the IMEI alone (rule in `bot.standins.thingspace.devices`): bucket = first 4 bytes of
sha256(IMEI) mod 1000; 0–19 ``unknown`` to the account (2 %, left out of ``POST /devices``,
``RequestToFotaServerFailed`` in a campaign), 20–69 ``ineligible`` (5 %, ``fotaEligible:
false``, ``RequestToFotaServerFailed``), 70–119 ``unlicensed`` (5 %, ``licenseAssigned:
false``, refused by an MRC-only account, otherwise upgraded), 120–219 ``will_fail`` (10 %,
``UpgradeFailed`` with "Device did not respond", "Firmware download failed" or "Insufficient
battery"), 220–999 ``eligible`` (78 %, ``UpgradeSuccess``). IMEIs failing the Luhn check are
``unknown``. Make, model and the firmware a device ships with are fixed by its TAC (first 8
digits; table in `bot.standins.thingspace.devices`); firmware for another model or version
fails the device with a reason. ``sandbox_imeis(n, kind=..., model=..., firmware=...)`` lists IMEIs.

Campaigns, on the sandbox clock (rule in `bot.standins.thingspace.simulator`):
``CampaignRequestPending`` → ``CampaignRequestQueued`` (+2 s) → ``CampaignPreScheduled`` (+2 s) → ``CampaignScheduled``
(+2 s, but not before startDate 00:00 UTC) → devices over 10 s, each taking 1–4 s →
``CampaignEnded`` 2 s after the last device. Cancel works until ``CampaignScheduled``.

Callbacks (shapes in `bot.standins.thingspace.runtime`): ``{"accountName", "campaignId",
"status", "type": "CampaignStatus", "timestamp"}`` and ``{"accountName", "campaignId",
"deviceId", "status", "reason", "type": "DeviceStatus", "timestamp"}`` (no empty ``reason``),
device ones batched into JSON arrays when a tick has more than 50.
"""

from bot.standins.thingspace.app import create_sandbox_app
from bot.standins.thingspace.devices import (
    DEFAULT_CATALOGUE,
    FAILURE_REASONS,
    DeviceFacts,
    DeviceKind,
    DeviceModel,
    FirmwareEntry,
    device_facts,
    device_kind,
    device_models,
    find_model,
    iter_imeis,
    luhn_check_digit,
    luhn_valid,
    sandbox_imeis,
)
from bot.standins.thingspace.runtime import Delivery, Sandbox, ScheduleRecord
from bot.standins.thingspace.simulator import (
    CampaignChange,
    DeviceChange,
    SandboxClock,
    SandboxError,
    SandboxEvent,
    SandboxTimings,
    Simulator,
)

__all__ = [
    "DEFAULT_CATALOGUE",
    "FAILURE_REASONS",
    "CampaignChange",
    "Delivery",
    "DeviceChange",
    "DeviceFacts",
    "DeviceKind",
    "DeviceModel",
    "FirmwareEntry",
    "Sandbox",
    "SandboxClock",
    "SandboxError",
    "SandboxEvent",
    "SandboxTimings",
    "ScheduleRecord",
    "Simulator",
    "create_sandbox_app",
    "device_facts",
    "device_kind",
    "device_models",
    "find_model",
    "iter_imeis",
    "luhn_check_digit",
    "luhn_valid",
    "sandbox_imeis",
]
