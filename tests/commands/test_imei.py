"""IMEI lists and device files (commands/imei.py)."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.imei import devices_from_file, luhn_ok, parse_imeis
from storage.model import RequestError

GOOD = "354658090353977"  # ThingSpace's example device
GOOD2 = "490154203237518"
GOOD3 = "356938035643809"


def imei(body: str) -> str:
    """14 digits + the Luhn check digit that makes them valid."""
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


# --- luhn_ok -----------------------------------------------------------------------


@pytest.mark.parametrize("digits", [GOOD, GOOD2, GOOD3, "79927398713", "0", "18"])
def test_luhn_accepts_valid_numbers(digits: str) -> None:
    assert luhn_ok(digits)


@pytest.mark.parametrize(
    "digits",
    ["354658090353978", "79927398710", "1", "", "3546580903539 7", "35465809035397X", "٣٥"],
)
def test_luhn_refuses_invalid_numbers_and_non_digits(digits: str) -> None:
    assert not luhn_ok(digits)


@given(st.text(alphabet="0123456789", min_size=14, max_size=14))
def test_exactly_one_check_digit_makes_14_digits_valid(body: str) -> None:
    assert sum(luhn_ok(body + d) for d in "0123456789") == 1


@given(st.text(alphabet="0123456789", min_size=14, max_size=14))
def test_parse_imeis_agrees_with_luhn_ok(body: str) -> None:
    for d in "0123456789":
        devices, problems, _ = parse_imeis(body + d, max_devices=10)
        assert (devices == (body + d,)) == luhn_ok(body + d)
        assert bool(problems) != luhn_ok(body + d)


# --- parse_imeis -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"{GOOD},{GOOD2},{GOOD3}",
        f"{GOOD}, {GOOD2}, {GOOD3}",
        f"{GOOD} {GOOD2} {GOOD3}",
        f"{GOOD}\n{GOOD2}\r\n{GOOD3}\n",
        f"{GOOD};{GOOD2};\t{GOOD3}",
        f" ,{GOOD},,{GOOD2} ;\n {GOOD3}, ",
        f"{GOOD}\u200b{GOOD2}\u00a0{GOOD3}",
    ],
)
def test_separators(text: str) -> None:
    assert parse_imeis(text, max_devices=10) == ((GOOD, GOOD2, GOOD3), [], [])


def test_order_is_kept() -> None:
    devices, _, _ = parse_imeis(f"{GOOD3} {GOOD} {GOOD2}", max_devices=10)
    assert devices == (GOOD3, GOOD, GOOD2)


def test_duplicates_dropped_with_a_note() -> None:
    devices, problems, notes = parse_imeis(f"{GOOD} {GOOD2} {GOOD} {GOOD2} {GOOD}", max_devices=10)
    assert devices == (GOOD, GOOD2)
    assert problems == []
    assert notes == ["3 duplicate IMEIs dropped"]


def test_one_duplicate_note_is_singular() -> None:
    assert parse_imeis(f"{GOOD} {GOOD}", max_devices=10)[2] == ["1 duplicate IMEI dropped"]


def test_bad_values_in_one_problem_with_reasons() -> None:
    text = f"{GOOD} 12345 35465809035397X 354658090353978 {GOOD2}"
    devices, problems, _ = parse_imeis(text, max_devices=10)
    assert devices == (GOOD, GOOD2)
    assert len(problems) == 1
    p = problems[0]
    assert p.key == "devices"
    assert p.rule.startswith(
        "3 values are not valid IMEIs (15 digits with a valid Luhn check digit): "
    )
    assert "12345 (5 digits)" in p.rule
    assert "35465809035397X (not only digits)" in p.rule
    assert "354658090353978 (wrong check digit)" in p.rule
    assert str(p).startswith("`devices`: 3 values")


def test_one_bad_value_is_singular() -> None:
    (p,) = parse_imeis("12345", max_devices=10)[1]
    assert p.rule == (
        "1 value is not a valid IMEI (15 digits with a valid Luhn check digit): 12345 (5 digits)"
    )


def test_many_bad_values_are_counted_and_ten_shown() -> None:
    bad = [str(10_000 + i) for i in range(25)]
    (p,) = parse_imeis(" ".join(bad), max_devices=10)[1]
    assert p.rule.startswith("25 values are not valid IMEIs")
    assert "10009 (5 digits)" in p.rule
    assert "10010" not in p.rule
    assert p.rule.endswith("… and 15 more")


def test_repeated_bad_value_is_reported_once() -> None:
    (p,) = parse_imeis("12345 12345", max_devices=10)[1]
    assert p.rule.startswith("1 value is not")


def test_long_bad_values_are_shortened() -> None:
    (p,) = parse_imeis("x" * 5000, max_devices=10)[1]
    assert len(p.rule) < 200


def test_spreadsheet_numbers_get_a_hint() -> None:
    (p,) = parse_imeis("3.54658E+14", max_devices=10)[1]
    assert "format the column as text" in p.rule


def test_non_ascii_digits_are_not_digits() -> None:
    (p,) = parse_imeis("٣٥٤٦٥٨٠٩٠٣٥٣٩٧٧", max_devices=10)[1]
    assert "not only digits" in p.rule


@pytest.mark.parametrize("text", ["", "   ", ",,;\n"])
def test_at_least_one_imei(text: str) -> None:
    devices, problems, _ = parse_imeis(text, max_devices=10)
    assert devices == ()
    (p,) = problems
    assert p.key == "devices"
    assert p.rule.startswith("is required")


def test_at_most_max_devices_names_count_and_limit() -> None:
    devices = [imei(f"{i:014d}") for i in range(12)]
    result, problems, _ = parse_imeis(",".join(devices), max_devices=10)
    (p,) = problems
    assert p.key == "devices"
    assert p.value == "12 IMEIs"
    assert "10 devices" in p.rule and "FOTA_MAX_DEVICES" in p.rule


def test_exactly_max_devices_is_fine() -> None:
    devices = [imei(f"{i:014d}") for i in range(10)]
    assert parse_imeis(" ".join(devices), max_devices=10)[1] == []


def test_duplicates_do_not_count_towards_the_limit() -> None:
    assert parse_imeis(" ".join([GOOD] * 50), max_devices=1)[1] == []


def test_bad_values_and_limit_reported_together() -> None:
    text = f"{GOOD} {GOOD2} 123"
    problems = parse_imeis(text, max_devices=1)[1]
    assert len(problems) == 2


def test_100k_imeis() -> None:
    devices = [imei(f"{i:014d}") for i in range(100_000)]
    text = ", ".join(devices)
    result, problems, notes = parse_imeis(text, max_devices=100_000)
    assert problems == [] and notes == []
    assert result == tuple(devices)


@given(st.text())
def test_any_text_gives_a_result(text: str) -> None:
    devices, problems, notes = parse_imeis(text, max_devices=5)
    assert all(len(d) == 15 and luhn_ok(d) for d in devices)
    assert len(set(devices)) == len(devices)
    assert isinstance(problems, list) and isinstance(notes, list)


# --- devices_from_file -------------------------------------------------------------


def test_plain_text_one_per_line() -> None:
    content = f"{GOOD}\n{GOOD2}\n".encode()
    assert parse_imeis(devices_from_file(content, "d.txt"), max_devices=9)[0] == (GOOD, GOOD2)


def test_plain_text_with_imei_header_line() -> None:
    content = f"IMEI\r\n{GOOD}\r\n{GOOD2}\r\n".encode()
    assert parse_imeis(devices_from_file(content, "d.txt"), max_devices=9) == (
        (GOOD, GOOD2),
        [],
        [],
    )


def test_text_wrapped_over_lines_keeps_every_value() -> None:
    content = f"{GOOD}, {GOOD2}\n{GOOD3}, {GOOD}\n".encode()
    devices, _, notes = parse_imeis(devices_from_file(content, "d.txt"), max_devices=9)
    assert devices == (GOOD, GOOD2, GOOD3)
    assert notes == ["1 duplicate IMEI dropped"]


@pytest.mark.parametrize("header", ["imei", "IMEI", "deviceId", "DeviceID", "device", "Device Id"])
def test_csv_header_picks_the_column(header: str) -> None:
    content = f"name,{header},iccid\nmodem 1,{GOOD},8914800000000000001\nmodem 2,{GOOD2},x\n"
    text = devices_from_file(content.encode(), "devices.csv")
    assert parse_imeis(text, max_devices=9) == ((GOOD, GOOD2), [], [])


def test_csv_imei_column_preferred_over_device() -> None:
    content = f"device,imei\nmodem 1,{GOOD}\n"
    assert devices_from_file(content.encode(), "d.csv").split() == [GOOD]


def test_csv_quoted_cells_and_semicolons() -> None:
    content = f'"Label";"IMEI"\n"a; b";"{GOOD}"\n'
    assert devices_from_file(content.encode(), "d.csv").split() == [GOOD]


def test_csv_tab_separated() -> None:
    content = f"imei\tname\n{GOOD}\tx\n"
    assert devices_from_file(content.encode(), "d.txt").split() == [GOOD]


def test_csv_without_header_uses_first_column() -> None:
    content = f"{GOOD},modem one\n{GOOD2},modem two\n"
    assert devices_from_file(content.encode(), "d.csv").split() == [GOOD, GOOD2]


def test_csv_without_header_unknown_header_row_is_reported_as_a_bad_value() -> None:
    content = f"serial,name\n{GOOD},modem one\n"
    devices, problems, _ = parse_imeis(devices_from_file(content.encode(), "d.csv"), max_devices=9)
    assert devices == (GOOD,)
    assert "serial" in problems[0].rule


def test_utf8_bom() -> None:
    content = codecs.BOM_UTF8 + f"imei,name\n{GOOD},x\n".encode()
    assert devices_from_file(content, "d.csv").split() == [GOOD]


def test_utf16_with_bom() -> None:
    content = f"IMEI\tName\r\n{GOOD}\tmodem\r\n".encode("utf-16")
    assert devices_from_file(content, "d.txt").split() == [GOOD]


def test_latin1() -> None:
    content = f"imei;Bezeichnung\n{GOOD};Gerät\n".encode("latin-1")
    assert devices_from_file(content, "d.csv").split() == [GOOD]


def test_huge_single_line_does_not_hit_csv_limits() -> None:
    devices = [imei(f"{i:014d}") for i in range(20_000)]
    content = " ".join(devices).encode()
    assert parse_imeis(devices_from_file(content, "d.txt"), max_devices=20_000)[0] == tuple(devices)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"PK\x03\x04\x14\x00\x06\x00", "spreadsheet workbook"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (bytes(range(1, 32)) * 10, "binary"),
        (b"", "empty"),
        (b"\n \r\n", "empty"),
        (b",,,\n, ,", "empty"),
    ],
)
def test_unusable_files(content: bytes, words: str) -> None:
    with pytest.raises(RequestError) as exc:
        devices_from_file(content, "upload.xlsx")
    (p,) = exc.value.problems
    assert p.key == "devices"
    assert p.value == "upload.xlsx"
    assert words in p.rule


@given(st.binary())
def test_any_bytes_give_text_or_request_error(content: bytes) -> None:
    try:
        text = devices_from_file(content, "f.csv")
    except RequestError as exc:
        assert exc.problems and exc.problems[0].key == "devices"
    else:
        assert isinstance(text, str)
        parse_imeis(text, max_devices=10)


@given(st.lists(st.lists(st.text(), max_size=4), max_size=6))
def test_any_csv_like_text_gives_text_or_request_error(rows: list[list[str]]) -> None:
    content = "\n".join(",".join(row) for row in rows).encode()
    try:
        assert isinstance(devices_from_file(content, "f.csv"), str)
    except RequestError:
        pass
