"""The examples people copy (README, /fota help, the form's placeholder) teach the safe path: run
against the sandbox, every device in them is one the firmware is built for, so the approval
card shows them all eligible and nothing excluded."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from bot.standins.thingspace import DEFAULT_CATALOGUE, DeviceKind, device_facts
from commands.help import HELP_TEXT
from commands.modal import build_schedule_modal
from commands.parse import parse_schedule

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
TODAY = dt.date(2026, 11, 26)


def examples() -> list[tuple[str, str]]:
    found = [("README", m) for m in re.findall(r"`/fota (schedule firmware=[^`]+)`", README)]
    found += [("help", m) for m in re.findall(r"`/fota (schedule firmware=[^`]+)`", HELP_TEXT.replace("\\\n", ""))]
    return found


def test_there_are_examples_to_check() -> None:
    assert {where for where, _ in examples()} == {"README", "help"}


@pytest.mark.parametrize(("where", "text"), examples())
def test_each_example_schedules_only_devices_the_firmware_fits(where: str, text: str) -> None:
    request = parse_schedule(text.removeprefix("schedule "), today=TODAY, max_devices=100)
    [entry] = [
        e
        for e in DEFAULT_CATALOGUE
        if e.firmware_name == request.firmware
        and (request.firmware_from is None or e.firmware_from == request.firmware_from)
    ]
    for imei in request.devices:
        facts = device_facts(imei)
        assert facts.kind is DeviceKind.ELIGIBLE, (where, imei)
        assert (facts.make, facts.model, facts.firmware) == (
            entry.make, entry.model, entry.firmware_from,
        ), (where, imei)


def test_the_forms_placeholder_imeis_fit_the_example_firmware() -> None:
    [devices] = [b for b in build_schedule_modal()["blocks"] if b.get("block_id") == "devices"]
    imeis = re.findall(r"\d{15}", devices["element"]["placeholder"]["text"])
    entry = DEFAULT_CATALOGUE[0]
    assert imeis and all(
        (device_facts(i).model, device_facts(i).firmware) == (entry.model, entry.firmware_from)
        for i in imeis
    )
