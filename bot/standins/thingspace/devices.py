"""The sandbox's firmware catalogue and its deterministic, per-IMEI device facts.

Nothing here is random: everything the sandbox says about a device follows from the IMEI
alone, so a rehearsal gives the same answer every time and tests can pick IMEIs of the kind
they need with `sandbox_imeis`.

The rule
--------
Let ``digest = sha256(imei.encode("ascii"))`` and ``bucket = int.from_bytes(digest[0:4],
"big") % 1000`` (a number from 0 to 999). The device's *kind* is:

===========  ==============  =======  ==============================================================
bucket       kind            share    what the sandbox does with it
===========  ==============  =======  ==============================================================
0–19         ``unknown``     2 %      not in the account: left out of ``POST /devices``; in a
                                      campaign it ends ``RequestToFotaServerFailed``,
                                      reason "Device not found in account"
20–69        ``ineligible``  5 %      ``fotaEligible: false``; in a campaign it ends
                                      ``RequestToFotaServerFailed``, reason "Device is not FOTA
                                      eligible"
70–119       ``unlicensed``  5 %      ``licenseAssigned: false``; upgrades like an eligible device,
                                      except that an MRC-only account refuses to schedule it
                                      (unless the request sets ``autoAssignLicenseFlag``)
120–219      ``will_fail``   10 %     eligible, but the upgrade ends ``UpgradeFailed``
220–999      ``eligible``    78 %     eligible, licensed: the upgrade ends ``UpgradeSuccess``
===========  ==============  =======  ==============================================================

An IMEI whose last digit is not its Luhn check digit is ``unknown`` whatever its bucket: no
real device carries it.

The failure reason of a ``will_fail`` device is ``FAILURE_REASONS[digest[4] % 3]``. Its MDN is
``"5"`` followed by ``int.from_bytes(digest[7:11], "big") % 10**9`` on nine digits. Two
fractions from ``digest[11:15]`` and ``digest[15:19]`` (see `DeviceFacts`) spread the devices'
progress over a campaign.

Make, model and firmware
------------------------
A device's make and model are fixed facts, read from its TAC (the first 8 digits, which name
the model of a real IMEI too):

==========  ========================  ===========  ========  =====================================
TAC         make                      model        protocol  firmware before any upgrade
==========  ========================  ===========  ========  =====================================
35465809    SEQUANS Communications    GM01Q        LWM2M     SR1.2.0.0-10512
35907610    Telit                     ME910C1-WW   LWM2M     M0B.020004
86695904    Quectel                   BG96         LWM2M     BG96MAR02A08M1G or BG96MAR03A01M1G
35316410    Sierra Wireless           WP7702       OMA       R13.1.0.002
35240611    Nordic Semiconductor      nRF9160      HTTP      mfw_nrf9160_1.3.4
==========  ========================  ===========  ========  =====================================

Any other TAC is the catalogue's first model (by default the GM01Q of the reference page's
example): IMEIs brought from elsewhere (a real fleet, the well-known example IMEIs) are then
one model, as one TAC is on a real network, and fit the reference page's example request. A
catalogue passed to `Sandbox` gives its own models, in order of first appearance; one not in
the table above gets the TAC ``990000NN``, NN its index. Where a model
runs more than one version, the device's is ``versions[digest[19] % len(versions)]``. A
successful upgrade changes the device's firmware, never its make or model: firmware built for
another make or model, or upgrading from a version the device does not run, fails the device
(``UpgradeFailed`` with the reason). ``sandbox_imeis(n, model="BG96", firmware=...)`` lists
IMEIs of one model (and version).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

PROTOCOLS = ("LWM2M", "OMA", "HTTP")
# Every spelling of a protocol that Verizon's SDK documents, to the one the sandbox keeps: its
# firmware-list enum says LWM2M | OMD-DM | all and its devices enum LWM2M | OMDADM | HTTP,
# while the schedule model's text says LWM2M, OMA and HTTP. All name OMA-DM.
PROTOCOL_SPELLINGS = {
    "LWM2M": "LWM2M",
    "OMA": "OMA",
    "OMA-DM": "OMA",
    "OMD-DM": "OMA",
    "OMDADM": "OMA",
    "HTTP": "HTTP",
}

FAILURE_REASONS = ("Device did not respond", "Firmware download failed", "Insufficient battery")
NOT_IN_ACCOUNT_REASON = "Device not found in account"
NOT_ELIGIBLE_REASON = "Device is not FOTA eligible"

# The TAC (first 8 digits of an IMEI) of each model of the default catalogue. 35465809 is the
# TAC of the reference page's example device (354658090353977), scheduled there with the
# SEQUANS GM01Q firmware.
MODEL_TACS: dict[tuple[str, str], str] = {
    ("SEQUANS Communications", "GM01Q"): "35465809",
    ("Telit", "ME910C1-WW"): "35907610",
    ("Quectel", "BG96"): "86695904",
    ("Sierra Wireless", "WP7702"): "35316410",
    ("Nordic Semiconductor", "nRF9160"): "35240611",
}


@dataclass(frozen=True)
class FirmwareEntry:
    """One item of `GET /firmware/{acc}`: an upgrade path from one version to another."""

    firmware_name: str
    firmware_from: str
    firmware_to: str
    make: str
    model: str
    protocol: str
    launch_date: str
    release_note: str

    def as_thingspace(self) -> dict[str, str]:
        return {
            "firmwareName": self.firmware_name,
            "firmwareFrom": self.firmware_from,
            "firmwareTo": self.firmware_to,
            "launchDate": self.launch_date,
            "releaseNote": self.release_note,
            "model": self.model,
            "make": self.make,
            "protocol": self.protocol,
        }


# The reference page's own example comes first, so its example request schedules as is.
# "Quectel_BG96_BG96MAR04A02M1G" is listed twice with different `from` versions, the way one
# target release is reachable from two older ones: a firmware name alone is then ambiguous.
DEFAULT_CATALOGUE: tuple[FirmwareEntry, ...] = (
    FirmwareEntry(
        firmware_name="SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657",
        firmware_from="SR1.2.0.0-10512",
        firmware_to="SR1.2.0.0-10657",
        make="SEQUANS Communications",
        model="GM01Q",
        protocol="LWM2M",
        launch_date="2021-09-01",
        release_note="LTE-M power saving fixes",
    ),
    FirmwareEntry(
        firmware_name="Telit_ME910C1-WW_M0B.020004_M0B.020008",
        firmware_from="M0B.020004",
        firmware_to="M0B.020008",
        make="Telit",
        model="ME910C1-WW",
        protocol="LWM2M",
        launch_date="2023-03-14",
        release_note="Carrier certification update",
    ),
    FirmwareEntry(
        firmware_name="Quectel_BG96_BG96MAR04A02M1G",
        firmware_from="BG96MAR02A08M1G",
        firmware_to="BG96MAR04A02M1G",
        make="Quectel",
        model="BG96",
        protocol="LWM2M",
        launch_date="2022-06-20",
        release_note="Security fixes; PSM timer handling",
    ),
    FirmwareEntry(
        firmware_name="Quectel_BG96_BG96MAR04A02M1G",
        firmware_from="BG96MAR03A01M1G",
        firmware_to="BG96MAR04A02M1G",
        make="Quectel",
        model="BG96",
        protocol="LWM2M",
        launch_date="2022-06-20",
        release_note="Security fixes; PSM timer handling",
    ),
    FirmwareEntry(
        firmware_name="SierraWireless_WP7702_R13.1_R14.0",
        firmware_from="R13.1.0.002",
        firmware_to="R14.0.1.004",
        make="Sierra Wireless",
        model="WP7702",
        protocol="OMA",
        launch_date="2022-11-02",
        release_note="Legato 19.11 base",
    ),
    # HTTP devices are not pushed: they fetch the firmware when they check in.
    FirmwareEntry(
        firmware_name="Nordic_nRF9160_mfw_1.3.4_1.3.5",
        firmware_from="mfw_nrf9160_1.3.4",
        firmware_to="mfw_nrf9160_1.3.5",
        make="Nordic Semiconductor",
        model="nRF9160",
        protocol="HTTP",
        launch_date="2023-05-10",
        release_note="Modem firmware maintenance release",
    ),
)


@dataclass(frozen=True)
class DeviceModel:
    """One make and model of device: its TAC, protocol and the versions it ships with."""

    tac: str
    make: str
    model: str
    protocol: str
    firmware: tuple[str, ...]  # versions a device may run before any upgrade, in catalogue order


def _build_models(catalogue: tuple[FirmwareEntry, ...]) -> tuple[DeviceModel, ...]:
    found: dict[tuple[str, str], DeviceModel] = {}
    for entry in catalogue:
        key = (entry.make, entry.model)
        known = found.get(key)
        if known is None:
            tac = MODEL_TACS.get(key, f"990000{len(found):02d}")
            found[key] = DeviceModel(tac, entry.make, entry.model, entry.protocol, (entry.firmware_from,))
        elif entry.firmware_from not in known.firmware:
            found[key] = DeviceModel(
                known.tac, known.make, known.model, known.protocol,
                (*known.firmware, entry.firmware_from),
            )
    return tuple(found.values())


# Per catalogue object (kept alive here, so its id stays its own): its models, and by TAC.
# Looked up once per device, 100,000 times for a large campaign: hashing the catalogue's
# entries on every lookup would cost more than the rest of the rule.
_MODELS: dict[int, tuple[Sequence[FirmwareEntry], tuple[DeviceModel, ...], dict[str, DeviceModel]]] = {}


def _lookup(catalogue: Sequence[FirmwareEntry]) -> tuple[tuple[DeviceModel, ...], dict[str, DeviceModel]]:
    hit = _MODELS.get(id(catalogue))
    if hit is None or hit[0] is not catalogue:
        models = _build_models(tuple(catalogue))
        hit = (catalogue, models, {m.tac: m for m in models})
        _MODELS[id(catalogue)] = hit
    return hit[1], hit[2]


def device_models(catalogue: Sequence[FirmwareEntry] = DEFAULT_CATALOGUE) -> tuple[DeviceModel, ...]:
    """The catalogue's makes and models, in order of first appearance."""
    return _lookup(catalogue)[0]


def find_model(name: str, catalogue: Sequence[FirmwareEntry] = DEFAULT_CATALOGUE) -> DeviceModel:
    """The model called `name` (``BG96``, or make and model ``Quectel BG96``; case aside)."""
    wanted = " ".join(name.split()).casefold()
    for model in device_models(catalogue):
        if wanted in (model.model.casefold(), f"{model.make} {model.model}".casefold()):
            return model
    known = ", ".join(m.model for m in device_models(catalogue))
    raise ValueError(f"no sandbox device model {name!r}: the catalogue has {known}")


class DeviceKind(StrEnum):
    UNKNOWN = "unknown"
    INELIGIBLE = "ineligible"
    UNLICENSED = "unlicensed"
    WILL_FAIL = "will_fail"
    ELIGIBLE = "eligible"


# Upper bounds (exclusive) of each kind's bucket range, in the order of the table above.
_KIND_BOUNDS = (
    (20, DeviceKind.UNKNOWN),
    (70, DeviceKind.INELIGIBLE),
    (120, DeviceKind.UNLICENSED),
    (220, DeviceKind.WILL_FAIL),
    (1000, DeviceKind.ELIGIBLE),
)


# Luhn's doubled digit, digits summed: 0→0, 1→2, …, 5→1 (10), …, 9→9 (18).
_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_check_digit(body: str) -> str:
    """The check digit that makes `body` + digit pass the Luhn test."""
    digits = [ord(char) - 48 for char in body]
    # Counted from the right of the finished number, every second digit is doubled: that is
    # the body's last digit and every other one before it.
    total = sum(_DOUBLED[d] for d in digits[-1::-2]) + sum(digits[-2::-2])
    return str((10 - total % 10) % 10)


def is_imei(value: object) -> bool:
    """Exactly 15 ASCII digits (the shape ThingSpace checks; not the check digit)."""
    return isinstance(value, str) and len(value) == 15 and value.isascii() and value.isdigit()


def luhn_valid(imei: str) -> bool:
    return is_imei(imei) and luhn_check_digit(imei[:14]) == imei[14]


class DeviceFacts(NamedTuple):
    """What the sandbox knows about one IMEI. `spread` and `pace` lie in [0, 1).

    A named tuple rather than a dataclass: a 100,000-device campaign builds one per device
    while its schedule request waits.
    """

    imei: str
    kind: DeviceKind
    device_model: DeviceModel
    firmware: str  # the version the device runs before any upgrade
    mdn: str
    failure_reason: str | None
    spread: float  # when, within the spread phase, the device begins upgrading
    pace: float  # how much of the upgrade phase the device's upgrade takes
    lot: float  # where the device falls in a firmware fault's share (`Sandbox.fail_firmware`)

    @property
    def make(self) -> str:
        return self.device_model.make

    @property
    def model(self) -> str:
        return self.device_model.model

    @property
    def protocol(self) -> str:
        return self.device_model.protocol

    @property
    def in_account(self) -> bool:
        return self.kind is not DeviceKind.UNKNOWN

    @property
    def fota_eligible(self) -> bool:
        return self.kind not in (DeviceKind.UNKNOWN, DeviceKind.INELIGIBLE)

    @property
    def license_assigned(self) -> bool:
        return self.kind not in (DeviceKind.UNKNOWN, DeviceKind.UNLICENSED)


def _kind_of(bucket: int) -> DeviceKind:
    for bound, kind in _KIND_BOUNDS:
        if bucket < bound:
            return kind
    raise AssertionError(bucket)  # bucket is always below 1000


def device_facts(imei: str, catalogue: Sequence[FirmwareEntry] = DEFAULT_CATALOGUE) -> DeviceFacts:
    """The facts for a 15-digit IMEI, by the rule in this module's docstring."""
    digest = hashlib.sha256(imei.encode("ascii")).digest()
    kind = _kind_by_digest(imei, digest)
    models, by_tac = _lookup(catalogue)
    model = by_tac.get(imei[:8]) or models[0]
    return DeviceFacts(
        imei=imei,
        kind=kind,
        device_model=model,
        firmware=model.firmware[digest[19] % len(model.firmware)],
        mdn="5" + f"{int.from_bytes(digest[7:11], 'big') % 10**9:09d}",
        failure_reason=FAILURE_REASONS[digest[4] % 3] if kind is DeviceKind.WILL_FAIL else None,
        spread=int.from_bytes(digest[11:15], "big") / 2**32,
        pace=int.from_bytes(digest[15:19], "big") / 2**32,
        lot=int.from_bytes(digest[20:24], "big") / 2**32,
    )


def _kind_by_digest(imei: str, digest: bytes) -> DeviceKind:
    if not luhn_valid(imei):
        return DeviceKind.UNKNOWN
    return _kind_of(int.from_bytes(digest[0:4], "big") % 1000)


def device_kind(imei: str) -> DeviceKind:
    """`device_facts(imei).kind`, without working out the other facts."""
    return _kind_by_digest(imei, hashlib.sha256(imei.encode("ascii")).digest())


def iter_imeis(*, start: int = 0, tac: str = MODEL_TACS[("SEQUANS Communications", "GM01Q")]) -> Iterator[str]:
    """Luhn-valid IMEIs in ascending order: TAC `tac`, serials from `start` upwards.

    The default TAC is the reference page's example device's (354658090353977).
    """
    if not (len(tac) == 8 and tac.isascii() and tac.isdigit()):
        raise ValueError(f"a TAC is 8 digits, not {tac!r}")
    body = int(tac) * 10**6 + start
    end = (int(tac) + 1) * 10**6
    while body < end:
        text = f"{body:014d}"
        yield text + luhn_check_digit(text)
        body += 1


def sandbox_imeis(
    n: int,
    *,
    kind: DeviceKind | str | None = DeviceKind.ELIGIBLE,
    start: int = 0,
    model: str | None = None,
    firmware: str | None = None,
    catalogue: Sequence[FirmwareEntry] = DEFAULT_CATALOGUE,
) -> list[str]:
    """`n` distinct Luhn-valid IMEIs of `kind` (None: any kind), ascending.

    `model` names the device model (``BG96`` or ``Quectel BG96``; default: the catalogue's
    first, the SEQUANS GM01Q of the reference page's example); `firmware` the version the
    devices run (default: any the model ships with). The same arguments always give the same
    IMEIs; different kinds never overlap, and a different `start` (a serial offset) gives a
    further, independent set of one kind.
    """
    wanted = DeviceKind(kind) if kind is not None else None
    chosen = find_model(model, catalogue) if model is not None else device_models(catalogue)[0]
    if firmware is not None and firmware not in chosen.firmware:
        raise ValueError(
            f"{chosen.make} {chosen.model} devices run {', '.join(chosen.firmware)} "
            f"before any upgrade, not {firmware!r}"
        )
    found: list[str] = []
    if n <= 0:
        return found
    for imei in iter_imeis(start=start, tac=chosen.tac):
        # The whole facts only when the firmware is asked for: the kind alone is cheaper.
        if (wanted is None or device_kind(imei) is wanted) and (
            firmware is None or device_facts(imei, catalogue).firmware == firmware
        ):
            found.append(imei)
            if len(found) == n:
                return found
    raise ValueError(
        f"only {len(found)} IMEIs of kind {wanted} exist among TAC {chosen.tac}'s serials "
        f"from {start} (a TAC has {10**6:,})"
    )
