"""The schedule modal's submission alone: mistakes under the form's fields, later ones in a DM."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import pytest

from bot.app import Runtime
from bot.workflow.errors import UserError
from commands.listeners import Services, schedule_modal
from commands.listeners.schedule_modal import MAX_DEVICE_FILE_BYTES, schedule_submitted
from commands.modal import build_schedule_modal
from storage.states import CampaignState
from tests.commands.listeners.conftest import IMEIS, FakeSlack, Recorder
from tests.support.stack import EVE, FIRMWARE, REQUESTER

FIELDS = {
    "firmware": FIRMWARE,
    "from": "SR1.2.0.0-10512",
    "to": "SR1.2.0.0-10657",
    "start": "2026-11-26",
    "end": "2026-11-29",
    "window": "18-22",
    "devices": "\n".join(IMEIS),
}
FILE = {"id": "F0123", "name": "devices.csv", "size": 64, "url_private_download": "https://files.slack.com/x"}


def view(fields: dict[str, str], files: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """`view` as Slack sends it for the schedule modal (text inputs, the date pickers, the file)."""
    values: dict[str, Any] = {}
    for block in build_schedule_modal()["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        key, kind = block["block_id"], element["type"]
        action: dict[str, Any] = {"type": kind}
        if kind == "datepicker":
            action["selected_date"] = fields.get(key)
        elif kind == "file_input":
            action["files"] = list(files)
        elif kind == "static_select":
            action["selected_option"] = {"text": {"type": "plain_text", "text": "LWM2M"}, "value": "LWM2M"}
        else:
            action["value"] = fields.get(key)
        values[key] = {element["action_id"]: action}
    return {"state": {"values": values}}


def campaigns(runtime: Runtime) -> list[Any]:
    return runtime.store.campaigns_in(tuple(CampaignState))


async def submit(ack: Recorder, slack: FakeSlack, services: Services, submitted: dict[str, Any], user: str = REQUESTER) -> None:
    await schedule_submitted(ack, {"user": {"id": user}}, submitted, slack, services=services)  # type: ignore[arg-type]
    await services.background.idle()


async def test_a_good_form_closes_and_the_request_is_recorded(
    ack: Recorder, slack: FakeSlack, services: Services, runtime: Runtime
) -> None:
    await submit(ack, slack, services, view(FIELDS))
    assert ack.calls == [{}]
    [campaign] = campaigns(runtime)
    assert campaign.requester == REQUESTER and campaign.device_count == 3
    assert slack.called("chat_postMessage") == []


async def test_a_bad_imei_stays_in_the_form_under_the_devices_box(
    ack: Recorder, slack: FakeSlack, services: Services, runtime: Runtime
) -> None:
    await submit(ack, slack, services, view({**FIELDS, "devices": "12345"}))
    [answer] = ack.calls
    assert answer["response_action"] == "errors" and "devices" in answer["errors"]
    assert campaigns(runtime) == []


async def test_someone_who_may_not_request_hears_it_in_a_dm_after_the_form_closed(
    ack: Recorder, slack: FakeSlack, services: Services, runtime: Runtime
) -> None:
    await submit(ack, slack, services, view(FIELDS), user=EVE)
    assert ack.calls == [{}]
    [dm] = slack.called("chat_postMessage")
    assert dm["channel"] == EVE and "FOTA_REQUESTERS" in dm["text"]
    assert campaigns(runtime) == []


async def test_the_uploaded_device_file_is_read_through_the_download_service(
    ack: Recorder, slack: FakeSlack, services: Services, runtime: Runtime
) -> None:
    asked: list[tuple[str, int]] = []

    async def download(file: dict[str, Any], limit: int) -> bytes:
        asked.append((file["id"], limit))
        return "\n".join(IMEIS).encode()

    with_file = dataclasses.replace(services, download=download)
    await submit(ack, slack, with_file, view({**FIELDS, "devices": ""}, (FILE,)))
    assert asked == [("F0123", MAX_DEVICE_FILE_BYTES)]
    assert ack.calls == [{}]
    [campaign] = campaigns(runtime)
    assert campaign.device_count == 3


async def test_the_device_file_is_read_and_checked_off_the_event_loop(
    ack: Recorder, slack: FakeSlack, services: Services, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 100,000 IMEIs take a few hundred ms to read and check: the loop's thread must not do it.
    threads: dict[str, int] = {}

    def on_thread(name: str, work: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            threads[name] = threading.get_ident()
            return work(*args, **kwargs)

        return run

    monkeypatch.setattr(schedule_modal, "devices_from_file", on_thread("file", schedule_modal.devices_from_file))
    monkeypatch.setattr(
        schedule_modal, "parse_schedule_submission", on_thread("form", schedule_modal.parse_schedule_submission)
    )

    async def download(file: dict[str, Any], limit: int) -> bytes:
        return ("imei,label\n" + "".join(f"{imei},unit\n" for imei in IMEIS)).encode()

    await submit(ack, slack, dataclasses.replace(services, download=download), view({**FIELDS, "devices": ""}, (FILE,)))
    assert set(threads) == {"file", "form"} and threading.get_ident() not in threads.values()
    assert ack.calls == [{}]
    [campaign] = campaigns(runtime)
    assert runtime.store.device_ids(campaign.id) == list(IMEIS)


async def test_a_file_too_large_is_refused_under_the_file_field_without_downloading(
    ack: Recorder, slack: FakeSlack, services: Services, runtime: Runtime
) -> None:
    async def download(file: dict[str, Any], limit: int) -> bytes:
        raise AssertionError("a file over the limit is never downloaded")

    too_big = {**FILE, "size": MAX_DEVICE_FILE_BYTES + 1}
    await submit(ack, slack, dataclasses.replace(services, download=download), view(FIELDS, (too_big,)))
    [answer] = ack.calls
    assert answer["response_action"] == "errors"
    assert "larger than 8 MiB" in answer["errors"]["devices_file"]
    assert campaigns(runtime) == []


async def test_a_download_slack_refuses_is_an_error_under_the_file_field(
    ack: Recorder, slack: FakeSlack, services: Services, runtime: Runtime
) -> None:
    async def download(file: dict[str, Any], limit: int) -> bytes:
        raise UserError("Slack would not hand over the file")

    await submit(ack, slack, dataclasses.replace(services, download=download), view(FIELDS, (FILE,)))
    [answer] = ack.calls
    assert "Slack would not hand over the file" in answer["errors"]["devices_file"]
    assert campaigns(runtime) == []
