"""The schedule modal and its submission (commands/modal.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.imei import devices_from_file
from commands.modal import (
    BLOCK_IDS,
    SCHEDULE_CALLBACK_ID,
    build_schedule_modal,
    fields_from_view_state,
    parse_schedule_submission,
    uploaded_files,
    view_errors,
)
from commands.parse import SCHEDULE_KEYS, parse_schedule, parse_schedule_fields
from storage.model import Problem, RequestError, ScheduleRequest
from tests.support.blocks import check_view

TODAY = dt.date(2024, 5, 1)
GOOD = "354658090353977"
GOOD2 = "490154203237518"
GOOD3 = "356938035643809"
FILE = {
    "id": "F0123",
    "name": "devices.csv",
    "title": "devices.csv",
    "size": 64,
    "filetype": "csv",
    "mimetype": "text/csv",
    "url_private_download": "https://files.slack.com/files-pri/T1-F0123/download/devices.csv",
    "permalink": "https://example.slack.com/files/U1/F0123/devices.csv",
}


def state(
    fields: dict[str, str | None], *, files: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """`view.state.values` as Slack sends it for the modal built by build_schedule_modal."""
    values: dict[str, Any] = {}
    for block in build_schedule_modal()["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        key, kind = block["block_id"], element["type"]
        action: dict[str, Any] = {"type": kind}
        if kind == "plain_text_input":
            action["value"] = fields.get(key)
        elif kind == "static_select":
            chosen = fields.get(key) or "LWM2M"
            action["selected_option"] = {
                "text": {"type": "plain_text", "text": chosen},
                "value": chosen,
            }
        elif kind == "datepicker":
            action["selected_date"] = fields.get(key)
        elif kind == "multi_static_select":
            chosen = [w for w in (fields.get(key) or "").split(",") if w]
            action["selected_options"] = [{"text": {"type": "plain_text", "text": w}, "value": w} for w in chosen]
        elif kind == "file_input":
            action["files"] = files or []
        elif kind == "checkboxes":
            action["selected_options"] = [
                o for o in element["options"] if o["value"] == fields.get(key)
            ]
        values[key] = {element["action_id"]: action}
    return values


def submit(
    fields: dict[str, str | None], *, file_text: str | None = None, max_devices: int = 100
) -> ScheduleRequest:
    return parse_schedule_submission(
        state(fields), today=TODAY, max_devices=max_devices, file_text=file_text
    )


def submit_errors(fields: dict[str, str | None], **kwargs: Any) -> dict[str, str]:
    with pytest.raises(RequestError) as exc:
        submit(fields, **kwargs)
    errors = exc.value.by_key()
    assert set(errors) <= set(BLOCK_IDS), errors  # Slack shows errors under input blocks only
    return errors


# --- the view ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefill",
    [
        None,
        {},
        {"firmware": "FW", "protocol": "oma", "name": "x"},
        {"devices": "1" * 4000, "protocol": "SMS"},
    ],
)
def test_view_is_valid_for_slack(prefill: dict[str, str] | None) -> None:
    view = build_schedule_modal(prefill=prefill, private_metadata='{"channel": "C1"}')
    # Slack's limits (title 24, blocks 100, private_metadata 3000, …), read by slack_sdk's model
    # too: nothing unknown, nothing dropped.
    check_view(view)
    assert view["type"] == "modal"
    assert view["callback_id"] == SCHEDULE_CALLBACK_ID
    assert view["private_metadata"] == '{"channel": "C1"}'
    assert len(view["title"]["text"]) <= 24 and len(view["submit"]["text"]) <= 24


def test_view_limits_checked_by_hand() -> None:
    view = build_schedule_modal()
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        assert len(block["label"]["text"]) <= 2000
        assert len(block["hint"]["text"]) <= 2000
        element = block["element"]
        if "placeholder" in element:
            assert len(element["placeholder"]["text"]) <= 150
        if element["type"] == "plain_text_input" and "max_length" in element:
            assert element["max_length"] <= 3000


def test_block_ids_are_the_schedule_keys_and_the_file() -> None:
    ids = [b["block_id"] for b in build_schedule_modal()["blocks"] if b["type"] == "input"]
    # The file input sits right under the pasted devices.
    assert ids == [*SCHEDULE_KEYS[:8], "devices_file", *SCHEDULE_KEYS[8:]]
    assert set(ids) == set(BLOCK_IDS)


def test_required_markers_match_the_rules() -> None:
    blocks = {b["block_id"]: b for b in build_schedule_modal()["blocks"] if b["type"] == "input"}
    required = {k for k, b in blocks.items() if not b.get("optional", False)}
    # Devices may come from the box or the file, so neither input is required by Slack.
    assert required == {"firmware", "protocol"}


def test_protocol_select() -> None:
    blocks = {b["block_id"]: b for b in build_schedule_modal()["blocks"] if b["type"] == "input"}
    element = blocks["protocol"]["element"]
    assert element["type"] == "static_select"
    assert [o["value"] for o in element["options"]] == ["LWM2M", "OMA", "HTTP"]
    assert element["initial_option"]["value"] == "LWM2M"


def test_devices_inputs() -> None:
    blocks = {b["block_id"]: b for b in build_schedule_modal()["blocks"] if b["type"] == "input"}
    box = blocks["devices"]["element"]
    assert box["type"] == "plain_text_input" and box["multiline"] and box["max_length"] == 3000
    assert "file" in blocks["devices"]["hint"]["text"]  # large lists go in a file
    upload = blocks["devices_file"]["element"]
    assert upload == {
        "type": "file_input",
        "action_id": "devices_file",
        "filetypes": ["csv", "txt"],
        "max_files": 1,
    }


def test_hints_explain_the_rules() -> None:
    hints = {
        b["block_id"]: b["hint"]["text"]
        for b in build_schedule_modal()["blocks"]
        if b["type"] == "input"
    }
    assert "not in the past" in hints["start"] and "None: today" in hints["start"]
    assert "start + 7 days" in hints["end"]
    assert "not overlapping" in hints["window"] and "window=START-END" in hints["window"]
    assert "80 characters" in hints["name"]
    assert "leading zeros" in hints["account"]
    assert "both empty" in hints["from"]


def test_prefill() -> None:
    view = build_schedule_modal(prefill={"firmware": "FW", "protocol": "http", "window": "18-22"})
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    assert blocks["firmware"]["element"]["initial_value"] == "FW"
    assert [o["value"] for o in blocks["window"]["element"]["initial_options"]] == ["18-22"]
    assert blocks["protocol"]["element"]["initial_option"]["value"] == "HTTP"
    assert "initial_value" not in blocks["name"]["element"]


def test_prefill_longer_than_the_input_is_left_out() -> None:
    view = build_schedule_modal(prefill={"name": "n" * 81})
    blocks = {b.get("block_id"): b for b in view["blocks"]}
    assert "initial_value" not in blocks["name"]["element"]


# --- reading the state -------------------------------------------------------------


def test_fields_from_view_state() -> None:
    values = state({"firmware": "FW", "from": None, "to": "", "start": "2024-05-02", "protocol": "OMA",
                    "window": "18-22,2-6"})
    assert fields_from_view_state(values) == {
        "firmware": "FW", "protocol": "OMA", "start": "2024-05-02", "window": "18-22,2-6"
    }


def test_fields_from_datepicker_and_junk() -> None:
    values = {
        "start": {"start": {"type": "datepicker", "selected_date": "2024-05-03"}},
        "end": {"end": {"type": "datepicker", "selected_date": None}},
        "name": "not a block",
        "account": {"account": {"type": "plain_text_input"}},
        "other": {"x": {"type": "plain_text_input", "value": "ignored"}},
    }
    assert fields_from_view_state(values) == {"start": "2024-05-03"}


def test_uploaded_files() -> None:
    files = uploaded_files(state({}, files=[FILE]))
    assert files == [{k: v for k, v in FILE.items() if k != "permalink"}]
    assert uploaded_files(state({})) == []
    assert uploaded_files({}) == []
    assert (
        uploaded_files({"devices_file": {"devices_file": {"type": "file_input", "files": None}}})
        == []
    )


# --- submission --------------------------------------------------------------------

FULL = {
    "firmware": "SEQUANS GM01Q",
    "from": "SR1.2.0.0-10512",
    "to": "SR1.2.0.0-10657",
    "protocol": "HTTP",
    "start": "2024-05-02",  # a date picker sends dates only
    "end": "2024-05-10",
    "window": "18-22,2-6",
    "devices": f"{GOOD}\n{GOOD2}, {GOOD}",
    "name": 'Q3 "big" rollout',
    "account": "0642233522-00001",
}


def _as_text(fields: dict[str, str]) -> str:
    return " ".join(f'{k}="{v.replace(chr(34), chr(92) + chr(34))}"' for k, v in fields.items())


@pytest.mark.parametrize(
    "fields",
    [
        FULL,
        {"firmware": "FW", "devices": GOOD},
        {"firmware": "FW", "devices": GOOD, "protocol": "LWM2M", "start": "2024-05-01"},
        {"firmware": "FW", "devices": GOOD, "licence": "auto"},
    ],
)
def test_modal_and_text_give_equal_requests(fields: dict[str, str]) -> None:
    from_modal = submit(dict(fields))
    from_text = parse_schedule(_as_text(fields), today=TODAY, max_devices=100)
    assert from_modal == from_text
    assert from_modal.notes == from_text.notes


def test_modal_and_text_give_equal_errors() -> None:
    fields = {**FULL, "to": FULL["from"], "window": "22-2", "devices": "123", "account": "acme"}
    with pytest.raises(RequestError) as from_modal:
        submit(dict(fields))
    with pytest.raises(RequestError) as from_text:
        parse_schedule(_as_text(fields), today=TODAY, max_devices=100)
    assert from_modal.value.problems == from_text.value.problems


def test_missing_required_fields_map_to_blocks() -> None:
    errors = submit_errors({})
    assert set(errors) == {"firmware", "devices"}
    assert "paste IMEIs here or upload" in errors["devices"]


def test_each_error_lands_under_its_block() -> None:
    errors = submit_errors(
        {
            "firmware": "FW",
            "from": "A",
            "start": "2024-04-30",  # in the past
            "window": "1-2",
            "devices": "123",
            "name": "[x]",
            "account": "acme",
        }
    )
    assert set(errors) == {"to", "start", "window", "devices", "name", "account"}
    assert set(submit_errors({"firmware": "FW", "devices": GOOD, "start": "2024-05-03", "end": "2024-05-02"})) == {"end"}
    assert errors["account"].startswith("`account=acme`: must be the billing account")


def test_file_devices_are_added_after_pasted_ones() -> None:
    r = submit({"firmware": "FW", "devices": f"{GOOD} {GOOD2}"}, file_text=f"{GOOD2}\n{GOOD3}")
    assert r.devices == (GOOD, GOOD2, GOOD3)
    assert "1 duplicate IMEI dropped" in r.notes


def test_file_only() -> None:
    text = devices_from_file(f"imei,name\n{GOOD},a\n{GOOD3},b\n".encode(), "devices.csv")
    r = submit({"firmware": "FW"}, file_text=text)
    assert r.devices == (GOOD, GOOD3)


def test_file_and_box_equal_the_same_list_typed() -> None:
    from_file = submit({"firmware": "FW"}, file_text=f"{GOOD}\n{GOOD2}")
    typed = parse_schedule_fields(
        {"firmware": "FW", "devices": f"{GOOD} {GOOD2}"}, today=TODAY, max_devices=9
    )
    assert from_file == typed


def test_bad_imeis_in_the_file_go_under_the_file_input() -> None:
    errors = submit_errors({"firmware": "FW"}, file_text=f"{GOOD}\n12345")
    assert list(errors) == ["devices_file"]
    assert "12345 (5 digits)" in errors["devices_file"]


def test_bad_imeis_attributed_to_box_and_file_separately() -> None:
    errors = submit_errors({"firmware": "FW", "devices": f"{GOOD} 111"}, file_text=f"{GOOD2}\n222")
    assert "111" in errors["devices"] and "222" not in errors["devices"]
    assert "222" in errors["devices_file"] and "111" not in errors["devices_file"]


def test_too_many_devices_counts_box_and_file_together() -> None:
    errors = submit_errors(
        {"firmware": "FW", "devices": GOOD}, file_text=f"{GOOD2}\n{GOOD3}", max_devices=2
    )
    assert list(errors) == ["devices"]
    assert "`devices=3 IMEIs`" in errors["devices"]
    errors = submit_errors({"firmware": "FW"}, file_text=f"{GOOD2}\n{GOOD3}", max_devices=1)
    assert list(errors) == ["devices_file"]


def test_file_without_imeis() -> None:
    errors = submit_errors({"firmware": "FW"}, file_text="\n,\n")
    assert list(errors) == ["devices_file"]
    assert "no IMEIs" in errors["devices_file"]


def test_other_errors_kept_with_file_problems() -> None:
    errors = submit_errors({"firmware": "FW", "window": "bad"}, file_text="123")
    assert set(errors) == {"window", "devices_file"}


@given(
    st.dictionaries(
        st.sampled_from(SCHEDULE_KEYS),
        st.one_of(
            st.none(), st.text(max_size=40), st.sampled_from([GOOD, "today", "18-22", "OMA"])
        ),
    ),
    st.one_of(st.none(), st.text(max_size=60), st.just(f"{GOOD}\n{GOOD2}")),
)
def test_any_submission_gives_request_or_errors_under_blocks(
    fields: dict[str, str | None], file_text: str | None
) -> None:
    try:
        submit(fields, file_text=file_text, max_devices=5)
    except RequestError as exc:
        assert set(exc.by_key()) <= set(BLOCK_IDS)


def test_view_errors_are_plain_text_under_block_ids() -> None:
    error = RequestError(
        [
            Problem("devices", "d.xlsx", "is a spreadsheet workbook"),
            Problem("start", "x", "bad"),
            Problem("command", "y", "odd"),
            Problem("firmware", "", "is required"),
        ]
    )
    assert view_errors(error) == {
        "devices": "devices=d.xlsx: is a spreadsheet workbook",
        "start": "start=x: bad",
        "firmware": "command=y: odd firmware: is required",
    }


def test_the_licence_checkbox_is_off_unless_asked_for() -> None:
    blocks = {b["block_id"]: b for b in build_schedule_modal()["blocks"] if b["type"] == "input"}
    licence = blocks["licence"]
    assert licence["optional"] and licence["element"]["type"] == "checkboxes"
    assert "initial_options" not in licence["element"]
    assert not submit({"firmware": "FW", "devices": GOOD}).licence_auto
    assert submit({"firmware": "FW", "devices": GOOD, "licence": "auto"}).licence_auto
    filled = build_schedule_modal(prefill={"licence": "auto"})
    [checked] = [b for b in filled["blocks"] if b.get("block_id") == "licence"]
    assert [o["value"] for o in checked["element"]["initial_options"]] == ["auto"]


def test_the_form_takes_a_staged_plan_and_reports_its_problems_under_its_fields() -> None:
    from storage.plan import RolloutPlan

    base = {"firmware": "FW", "from": "A", "to": "B", "devices": GOOD}
    request = submit({**base, "canary": "2", "waves": "50%,100%", "soak": "1h"})
    assert request.plan == RolloutPlan(canary=2, waves=(5_000, 10_000), soak=dt.timedelta(hours=1))
    errors = submit_errors({**base, "canary": "two", "waves": "50%", "promote": "auto"})
    assert set(errors) >= {"canary", "waves"}
    assert "must end at 100%" in errors["waves"]
