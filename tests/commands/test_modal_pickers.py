"""The schedule modal's pickers: firmware chosen from the account's list, dates from date
pickers, windows from hour ranges. What they produce is the request the typed command makes."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from commands.modal import (
    MAX_OPTIONS,
    FirmwareChoice,
    build_schedule_modal,
    parse_schedule_submission,
    window_options,
)
from commands.parse import parse_schedule
from tests.support.blocks import check_view
from tests.support.stack import REQUESTER, running_stack

TODAY = dt.date(2024, 5, 1)
GOOD, GOOD2 = "354658090353977", "490154203237518"
GM01Q = FirmwareChoice("SEQUANSCommunications_GM01Q_SR1.2.0.0-10512_SR1.2.0.0-10657", "SR1.2.0.0-10512",
                       "SR1.2.0.0-10657")
BG96 = FirmwareChoice("Quectel_BG96_R02A08_R02A09", "R02A08", "R02A09")


def blocks_of(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}


def picked(view: dict[str, Any], *, firmware: str, start: str, end: str, windows: list[str],
           devices: str) -> dict[str, Any]:
    """`view.state.values` as Slack sends it after these picks, each value taken from the
    view's own options (a select can only send what it offers)."""
    blocks = blocks_of(view)
    [fw] = [o for o in blocks["firmware"]["element"]["options"] if o["value"] == firmware]
    offered = {o["value"]: o for g in blocks["window"]["element"]["option_groups"] for o in g["options"]}
    return {
        "firmware": {"firmware": {"type": "static_select", "selected_option": fw}},
        "from": {"from": {"type": "plain_text_input", "value": None}},
        "to": {"to": {"type": "plain_text_input", "value": None}},
        "protocol": {"protocol": {"type": "static_select", "selected_option": {"value": "LWM2M"}}},
        "start": {"start": {"type": "datepicker", "selected_date": start}},
        "end": {"end": {"type": "datepicker", "selected_date": end}},
        "window": {"window": {"type": "multi_static_select", "selected_options": [offered[w] for w in windows]}},
        "devices": {"devices": {"type": "plain_text_input", "value": devices}},
        "devices_file": {"devices_file": {"type": "file_input", "files": []}},
        "name": {"name": {"type": "plain_text_input", "value": None}},
        "account": {"account": {"type": "plain_text_input", "value": None}},
        "licence": {"licence": {"type": "checkboxes", "selected_options": []}},
    }


def test_the_pickers_produce_the_same_request_as_the_typed_command() -> None:
    view = build_schedule_modal(firmware=[GM01Q, BG96])
    values = picked(view, firmware=GM01Q.name, start="2024-05-02", end="2024-05-09", windows=["18-22", "2-6"],
                    devices=f"{GOOD}, {GOOD2}")
    from_modal = parse_schedule_submission(values, today=TODAY, max_devices=100, file_text=None)
    typed = f"firmware={GM01Q.name} start=2024-05-02 end=2024-05-09 window=18-22,2-6 devices={GOOD},{GOOD2}"
    assert from_modal == parse_schedule(typed, today=TODAY, max_devices=100)
    # from/to are left to follow the firmware chosen, exactly as when the command leaves them out.
    assert from_modal.firmware_from is None and from_modal.firmware_to is None


def test_the_firmware_select_shows_each_entry_with_its_versions() -> None:
    view = build_schedule_modal(firmware=[GM01Q, BG96], prefill={"firmware": BG96.name})
    element = blocks_of(view)["firmware"]["element"]
    assert element["type"] == "static_select"
    assert [o["value"] for o in element["options"]] == [GM01Q.name, BG96.name]
    assert element["options"][0]["text"]["text"] == GM01Q.name
    assert element["options"][1]["description"]["text"] == "R02A08 → R02A09"
    assert element["initial_option"]["value"] == BG96.name
    check_view(view)
    # A name longer than an option's text (75) is shown cut, and sent whole as the value.
    long = FirmwareChoice("N" * 120, "a", "b")
    [option] = blocks_of(build_schedule_modal(firmware=[long]))["firmware"]["element"]["options"]
    assert option["text"]["text"] == "N" * 74 + "…" and option["value"] == long.name


@pytest.mark.parametrize(
    ("choices", "prefill"),
    [
        ([], {}),  # the list could not be read in time, or is empty
        ([FirmwareChoice(f"FW{i}", "a", "b") for i in range(MAX_OPTIONS + 1)], {}),  # Slack's 100 options
        ([FirmwareChoice("F" * 151, "a", "b")], {}),  # a name longer than an option value
        ([GM01Q], {"firmware": "Other_firmware"}),  # a prefilled name not in the list stays as given
    ],
)
def test_the_firmware_is_typed_when_the_list_does_not_fit_a_select(
    choices: list[FirmwareChoice], prefill: dict[str, str]
) -> None:
    element = blocks_of(build_schedule_modal(firmware=choices, prefill=prefill))["firmware"]["element"]
    assert element["type"] == "plain_text_input"
    assert element.get("initial_value") == prefill.get("firmware")


def test_dates_are_date_pickers_and_windows_hour_ranges_slack_accepts() -> None:
    view = build_schedule_modal(prefill={"start": "2024-05-03", "end": "+3d", "window": "18-22,2-6"})
    blocks = blocks_of(view)
    assert blocks["start"]["element"] == {"type": "datepicker", "action_id": "start", "initial_date": "2024-05-03",
                                          "placeholder": {"type": "plain_text", "text": "Pick a date", "emoji": True}}
    assert "initial_date" not in blocks["end"]["element"]  # a relative date has no day to show
    window = blocks["window"]["element"]
    assert [o["value"] for o in window["initial_options"]] == ["18-22", "2-6"]
    offered = [o["value"] for g in window_options() for o in g["options"]]
    assert len(offered) <= MAX_OPTIONS and len(set(offered)) == len(offered)
    for value in offered:  # every range offered is one the rules accept
        parse_schedule(f"firmware=FW devices={GOOD} window={value}", today=TODAY, max_devices=1)
    check_view(view)


async def test_slash_fota_opens_the_form_with_the_accounts_firmware(tmp_path: Path) -> None:
    async with running_stack(tmp_path) as stack:
        response, _ = await stack.slash("")
        assert response.status_code == 200
        await stack.settle()
        [opened] = [c for c in stack.standin.calls_to("views.open") if c.ok]
        view = opened.args["view"]
        view = json.loads(view) if isinstance(view, str) else view
        firmware = blocks_of(view)["firmware"]["element"]
        assert firmware["type"] == "static_select"
        names = [o["value"] for o in firmware["options"]]
        assert GM01Q.name in names
        values = picked(view, firmware=GM01Q.name, start="2026-11-27", end="2026-12-01", windows=["18-22"],
                        devices=GOOD)
        submitted = await stack.submit_view("fota_schedule", values, user=REQUESTER)
        assert submitted.status_code == 200 and not submitted.content
        await stack.settle()
        from_modal = stack.rt.store.campaign(1)
        await stack.slash(f"schedule firmware={GM01Q.name} start=2026-11-27 end=2026-12-01 window=18-22 devices={GOOD}")
        await stack.settle()
        typed = stack.rt.store.campaign(2)
        def request_of(c: Any) -> tuple[Any, ...]:
            return (c.firmware_name, c.firmware_from, c.firmware_to, c.protocol, c.start_date, c.end_date,
                    c.windows, stack.rt.store.device_ids(c.id), c.account)

        assert request_of(from_modal) == request_of(typed)
        assert (from_modal.firmware_from, from_modal.firmware_to) == (GM01Q.from_version, GM01Q.to_version)


class SlowThenQuickThingSpace:
    """list_firmware that never answers the first time (a ThingSpace slower than Slack's
    trigger), then answers; counts the calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def list_firmware(self, account: str, protocol: str = "LWM2M") -> list[dict[str, Any]]:
        self.calls += 1
        if self.calls == 1:
            await asyncio.Event().wait()
        return [{"firmwareName": GM01Q.name, "firmwareFrom": GM01Q.from_version, "firmwareTo": GM01Q.to_version}]


async def test_a_slow_firmware_list_opens_the_form_with_a_typed_field_and_a_read_list_is_kept() -> None:
    from bot.settings import load
    from bot.workflow.operations import Operations

    thingspace = SlowThenQuickThingSpace()
    operations = Operations(settings=load({}, for_serve=False), store=None, thingspace=thingspace,  # type: ignore[arg-type]
                            directory=None, events=None, clock=lambda: dt.datetime.now(dt.UTC))  # type: ignore[arg-type]
    assert await operations.firmware_for_form(within=0.01) is None  # the form opens typed, in time
    first = await operations.firmware_for_form(within=5)
    assert first and first[0]["firmwareName"] == GM01Q.name
    assert await operations.firmware_for_form(within=5) == first
    assert thingspace.calls == 2  # the third form used the list read for the second
