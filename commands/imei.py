"""IMEI lists: splitting, Luhn check, duplicates, limits; device files (pure).

Written for speed: 100,000 IMEIs (a pasted list or a device file) are checked in under a
second, so the hot loop sticks to C-level string operations (split, translate,
encode, sum) rather than per-digit Python arithmetic.
"""

from __future__ import annotations

import codecs
import csv
import io
import re

from storage.model import Problem, RequestError

IMEI_LENGTH = 15
IMEI_RULE = "15 digits with a valid Luhn check digit"

# Zero-width spaces and stray BOMs come along when lists are pasted from web
# pages and spreadsheets; they separate like spaces.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u2060\ufeff"), " ")
# Luhn doubles every second digit from the right; a doubled digit counts as the
# sum of its digits (2*7 = 14 -> 5), so map each digit to that sum.
_DOUBLED = str.maketrans("0123456789", "0246813579")
_DOUBLED_BYTES = bytes.maketrans(b"0123456789", b"0246813579")
# What a spreadsheet makes of a 15-digit number: 3.54658E+14.
_SCIENTIFIC = re.compile(r"^\d(?:[.,]\d+)?[eE]\+?\d+$")

_SHOWN_BAD = 10  # bad values named in the error; the rest are counted
_SHOWN_CHARS = 24

_CONTROL_BYTES = bytes(sorted(set(range(32)) - set(b"\t\n\r\f\v")))
_HEADER_NAMES = ("imei", "deviceid", "device")  # preference order
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")
_DIGITISH = re.compile(r"^[\d\s]*$")


def luhn_ok(digits: str) -> bool:
    """True when `digits` (ASCII digits only, check digit last) passes the Luhn check."""
    if not digits or not (digits.isascii() and digits.isdigit()):
        return False
    total = sum(digits[-1::-2].encode()) + sum(digits[-2::-2].translate(_DOUBLED).encode())
    # Each byte is the digit plus ord("0") == 48.
    return (total - 48 * len(digits)) % 10 == 0


def _short(value: str) -> str:
    return value if len(value) <= _SHOWN_CHARS else value[: _SHOWN_CHARS - 1] + "…"


def _why(value: str) -> str:
    if value.isascii() and value.isdigit():
        if len(value) == IMEI_LENGTH:
            return "wrong check digit"
        return f"{len(value)} digits"
    if _SCIENTIFIC.match(value):
        return "a spreadsheet number: format the column as text"
    return "not only digits"


def scan_imeis(text: str) -> tuple[list[str], list[str], int]:
    """Split `text` into (unique valid IMEIs in order, distinct bad values in order, duplicates)."""
    if not text.isascii():
        text = text.translate(_INVISIBLE)
    good: list[str] = []
    bad: list[str] = []
    doubled = _DOUBLED_BYTES
    # str.split() splits on any whitespace; replace() is several times faster than re.split.
    for token in text.replace(",", " ").replace(";", " ").split():
        if len(token) == IMEI_LENGTH and token.isdigit() and token.isascii():
            # 15 digits: the check digit sits at index 14, so the doubled digits are
            # the odd indices; 15 * 48 is a multiple of 10, so no offset is needed.
            raw = token.encode()
            if (sum(raw[::2]) + sum(raw[1::2].translate(doubled))) % 10:
                bad.append(token)
            else:
                good.append(token)
        else:
            bad.append(token)
    unique = list(dict.fromkeys(good))
    return unique, list(dict.fromkeys(bad)), len(good) - len(unique)


def bad_imeis_problem(bad: list[str], *, key: str = "devices") -> Problem:
    """One problem naming up to ten bad values, each with what is wrong with it."""
    count = len(bad)
    head = (
        f"1 value is not a valid IMEI ({IMEI_RULE})"
        if count == 1
        else f"{count:,} values are not valid IMEIs ({IMEI_RULE})"
    )
    shown = ", ".join(f"{_short(v)} ({_why(v)})" for v in bad[:_SHOWN_BAD])
    more = f", … and {count - _SHOWN_BAD:,} more" if count > _SHOWN_BAD else ""
    # The values are named in the rule, with their reasons; repeating them as the
    # Problem's value would only print them twice.
    return Problem(key, "", f"{head}: {shown}{more}")


def count_problems(count: int, *, max_devices: int, key: str = "devices") -> list[Problem]:
    if count > max_devices:
        return [
            Problem(
                key,
                f"{count:,} IMEIs",
                f"is more than the {max_devices:,} devices one request may carry "
                "(FOTA_MAX_DEVICES); split the list into several requests",
            )
        ]
    return []


def duplicates_note(duplicates: int) -> list[str]:
    if not duplicates:
        return []
    return [
        "1 duplicate IMEI dropped" if duplicates == 1 else f"{duplicates:,} duplicate IMEIs dropped"
    ]


def parse_imeis(
    text: str, *, max_devices: int, key: str = "devices"
) -> tuple[tuple[str, ...], list[Problem], list[str]]:
    """IMEIs separated by commas, semicolons, spaces or new lines -> (IMEIs, problems, notes).

    Order is kept and duplicates are dropped (with a note). All bad values are
    reported in one problem; an empty list and a list over `max_devices` are
    problems too. Never raises.
    """
    unique, bad, duplicates = scan_imeis(text)
    problems: list[Problem] = []
    if bad:
        problems.append(bad_imeis_problem(bad, key=key))
    elif not unique:
        problems.append(
            Problem(
                key,
                "",
                "is required: at least one IMEI (15 digits), separated by commas, spaces or new lines",
            )
        )
    problems += count_problems(len(unique), max_devices=max_devices, key=key)
    return tuple(unique), problems, duplicates_note(duplicates)


# --- device files -----------------------------------------------------------------


def _file_error(filename: str, rule: str) -> RequestError:
    return RequestError([Problem("devices", filename, rule)])


def _decode(content: bytes, filename: str) -> str:
    if content.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise _file_error(
            filename, "is a spreadsheet workbook, not text: save it as CSV (one IMEI per row)"
        )
    if content.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # What Excel's "Unicode text" export writes.
        try:
            return content.decode("utf-16")
        except UnicodeDecodeError:
            raise _file_error(filename, "is not a readable text file") from None
    # Text has no NUL and next to no other control bytes; counted at C speed.
    controls = len(content) - len(content.translate(None, _CONTROL_BYTES))
    if b"\x00" in content or controls > len(content) // 100:
        raise _file_error(filename, "is a binary file: upload a CSV or text file of IMEIs")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return content.decode("latin-1")  # never fails; spreadsheets on Windows write it


def _header_name(cell: str) -> str:
    return _NOT_ALNUM.sub("", cell.strip().lower())


def devices_from_file(content: bytes, filename: str) -> str:
    """A CSV or text file of devices -> IMEI text for `parse_imeis`.

    Decodes UTF-8 (with or without BOM), UTF-16 with BOM, else Latin-1. In a
    table, a header cell named `imei`, `deviceId` or `device` (any case) picks
    its column. Without one, a table of nothing but numbers is read whole (a
    list wrapped over several lines); any other table gives its first column.
    Raises RequestError (key `devices`, value the file name) for a binary,
    workbook or empty file.
    """
    text = _decode(content, filename)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise _file_error(filename, "is empty: upload a CSV or text file of IMEIs")
    first = lines[0]
    counts = {d: first.count(d) for d in (",", ";", "\t")}
    delimiter = max(counts, key=lambda d: counts[d])
    if not counts[delimiter]:
        # One column: an IMEI (or several, space-separated) per line.
        if _header_name(first) in _HEADER_NAMES:
            lines = lines[1:]
        return "\n".join(lines)
    try:
        # Row by row in Python, not list(reader): one C call over 100,000 rows would keep the
        # interpreter lock ~100 ms, holding the event loop even while this runs in a thread.
        rows = [row for row in csv.reader(io.StringIO("\n".join(lines), newline=""), delimiter=delimiter)]
    except csv.Error:  # a field over csv's size limit, a stray quote
        rows = [line.split(delimiter) for line in lines]
    rows = [row for row in rows if "".join(row).strip()]
    if not rows:
        raise _file_error(filename, "is empty: upload a CSV or text file of IMEIs")
    names = [_header_name(cell) for cell in rows[0]]
    for wanted in _HEADER_NAMES:
        if wanted in names:
            col = names.index(wanted)
            return "\n".join(row[col] for row in rows[1:] if len(row) > col)
    if all(_DIGITISH.match(cell) for row in rows for cell in row):
        return "\n".join(cell for row in rows for cell in row)
    return "\n".join(row[0] for row in rows if row)
