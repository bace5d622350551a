"""`/fota` command text -> a typed command; schedule keys -> ScheduleRequest (pure).

`parse_schedule_fields` is the one validator behind both the slash command
(`parse_schedule`) and the modal (`commands.modal`), so the same input gives
the same request whichever way it came. Everything wrong is reported at once in
one `RequestError`; nothing here raises anything else.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from commands.imei import parse_imeis
from commands.plan import check_plan_fields
from storage.model import PROTOCOLS, Problem, RequestError, ScheduleRequest, TimeWindow

SUBCOMMANDS = ("help", "schedule", "status", "list", "cancel", "firmware", "devices", "history", "retry")
SCHEDULE_KEYS = (
    "firmware",
    "from",
    "to",
    "protocol",
    "start",
    "end",
    "window",
    "devices",
    "name",
    "account",
    "licence",
    # A staged rollout: waves sent one by one, each promoted by an approver (or by the bot).
    "canary",
    "waves",
    "success",
    "halt",
    "soak",
    "promote",
)
# Keys of staged rollouts that the bot cannot carry out yet: refused with the reason, so no
# request promises a safeguard that is not there.
NOT_YET_KEYS: dict[str, str] = {}
# Other spellings taken as they are (not a mistake to correct): the US spelling.
_SAME_KEY = {"license": "licence"}
LICENCE_VALUES = ("auto", "none")
LIST_SCOPES = ("active", "all", "mine")
DEFAULT_PROTOCOL = "LWM2M"
DEFAULT_DURATION = dt.timedelta(days=7)
# Not a ThingSpace rule: a date more than a year out is almost always a typo in the year.
MAX_DAYS_AHEAD = 366
MAX_NAME_LENGTH = 80  # Not a ThingSpace rule: the bot adds " [FB-12·a3f9 w2/4]" to what it sends.
MAX_FIRMWARE_LENGTH = 255
MAX_ACCOUNT_LENGTH = 32
MIN_WINDOW_HOURS = 4  # ThingSpace: endTime at least 4 hours after startTime
MAX_WINDOWS = 12  # past this, report the count rather than a problem per window

# ThingSpace's own field names (and other likely guesses) -> the key meant.
_KEY_ALIASES = {
    "firmwarename": "firmware",
    "fw": "firmware",
    "firmwarefrom": "from",
    "firmwareto": "to",
    "startdate": "start",
    "enddate": "end",
    "campaigntimewindowlist": "window",
    "windows": "window",
    "timewindow": "window",
    "devicelist": "devices",
    "device": "devices",
    "imei": "devices",
    "imeis": "devices",
    "campaignname": "name",
    "acc": "account",
    "accountname": "account",
    "autoassignlicenseflag": "licence",
    "licences": "licence",
    "licenses": "licence",
}

_REF = re.compile(r"^(?:fb[-_#]?|#)?0*(\d{1,12})$", re.IGNORECASE | re.ASCII)
_LOOKS_LIKE_REF = re.compile(r"^fb[-_#]?\d", re.IGNORECASE)
# ThingSpace campaign ids are UUIDs; accept any id-like token with a digit in it
# rather than refuse one of a shape the documentation does not show.
_THINGSPACE_ID = re.compile(r"^[0-9A-Za-z][0-9A-Za-z_-]{7,127}$")
_ID_WRAPPING = "`*_~<>()[]{}\"'“”‘’.,:;"
_ACCOUNT = re.compile(r"^\d+(?:-\d+)*$", re.ASCII)
_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$", re.ASCII)
_RELATIVE_DATE = re.compile(r"^\+(\d{1,4})d$", re.IGNORECASE | re.ASCII)
_WINDOW = re.compile(r"^(\d{1,2})(?::00)?\s*-\s*(\d{1,2})(?::00)?$", re.ASCII)
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
_KEY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_DEVICE_TAIL = re.compile(r"^[\d,;]+$", re.ASCII)
# Slack sends links as <url|label> or <url> when it autolinks something in the text.
_SLACK_LINK = re.compile(r"<((?:https?|mailto):[^|>\s]*)(?:\|([^>]*))?>")

# Straight quotes and the smart quotes Slack clients (and macOS) substitute.
_QUOTES = '"\u201c\u201d\u201e\u201f\u2033'
_PLAIN = re.compile(r"[^\s=\\" + _QUOTES + r"]+")
_QUOTED_BODY = re.compile(r"[^\\" + _QUOTES + r"]*(?:\\.[^\\" + _QUOTES + r"]*)*", re.DOTALL)
_ESCAPE = re.compile(r"\\([\\" + _QUOTES + r"])")
_SPACE = re.compile(r"\s+")
_SIMPLE_WORD = re.compile(r"[^\s\\" + _QUOTES + r"]+(?=\s|$)")

_ID_FORMS = (
    "the bot's reference such as `FB-12` (shown as `Ref FB-12` on every card) "
    "or ThingSpace's campaign id"
)
_DATE_RULE = "must be a date as YYYY-MM-DD, `today`, `tomorrow` or `+Nd` (N days from today, UTC)"
_WINDOW_RULE = "must be hours in UTC as `START-END`, e.g. `18-22` or `18-22,2-6`"
_UNTERMINATED = (
    "has an opening quote with no closing quote, so the rest of the text was read as its value"
)
_QUOTE_HINT = 'values with spaces go in double quotes, e.g. `name="Q3 rollout"`'


# --- commands ---------------------------------------------------------------------


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class OpenModal:
    prefill: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Schedule:
    args: str


@dataclass(frozen=True)
class Status:
    campaign: str


@dataclass(frozen=True)
class History:
    campaign: str


@dataclass(frozen=True)
class ListCampaigns:
    scope: str = "active"


@dataclass(frozen=True)
class Cancel:
    campaign: str


@dataclass(frozen=True)
class Firmware:
    account: str | None = None


@dataclass(frozen=True)
class Retry:
    """Retry the failed devices of a finished campaign, of a staged request (every wave), or
    of one wave of it (`wave`)."""

    campaign: str
    wave: int | None = None


@dataclass(frozen=True)
class Devices:
    campaign: str
    failed_only: bool = False


Command = Help | OpenModal | Schedule | Status | ListCampaigns | Cancel | Firmware | Devices | History | Retry


def _nearest(word: str, choices: tuple[str, ...] | list[str]) -> str | None:
    found = difflib.get_close_matches(word.lower()[:40], choices, n=1, cutoff=0.6)
    return found[0] if found else None


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unescape_slack(text: str) -> str:
    """Undo Slack's escaping of slash-command text (&amp; &lt; &gt;, autolinked URLs)."""
    text = _SLACK_LINK.sub(lambda m: m.group(2) or m.group(1), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


_DASHES = str.maketrans({"\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-",
                         "\u2212": "-", "\u200b": None, "\u200c": None, "\u200d": None, "\ufeff": None})


def normalize_campaign_id(text: str) -> str | None:
    """`FB-12`, `fb12`, `#12`, `12` -> `FB-12`; a ThingSpace id passes through; else None."""
    # Phones and word processors type FB–12 (en dash), ＦＢ-12 (full width) or hide a
    # zero-width space in it: read them as the reference they were meant to be.
    token = unicodedata.normalize("NFKC", text).translate(_DASHES).strip().strip(_ID_WRAPPING)
    if token.lower().startswith("ref "):
        token = token[4:].strip()
    m = _REF.match(token)
    if m:
        number = int(m.group(1))
        return f"FB-{number}" if number > 0 else None
    if (
        _THINGSPACE_ID.match(token)
        and not _LOOKS_LIKE_REF.match(token)
        and any(ch.isdigit() for ch in token)
    ):
        return token
    return None


def ref_number(campaign: str) -> int | None:
    """12 for the bot's reference `FB-12` (as normalised); None for a ThingSpace id."""
    if campaign.startswith("FB-") and campaign[3:].isdigit():
        return int(campaign[3:])
    return None


def _campaign_arg(sub: str, args: list[str], *, extra: str = "") -> str:
    if not args:
        raise RequestError([Problem(sub, "", f"needs a campaign ID: {_ID_FORMS}", typed_as="words")])
    if len(args) > 1 and args[0].lower() == "ref":  # pasted from a card: "Ref FB-12"
        args = args[1:]
    if len(args) > 1:
        raise RequestError(
            [
                Problem(
                    sub,
                    " ".join(args),
                    f"takes one campaign ID{extra}, e.g. `/fota {sub} FB-12`",
                    typed_as="words",
                )
            ]
        )
    campaign = normalize_campaign_id(args[0])
    if campaign is None:
        raise RequestError([Problem(sub, args[0], f"is not a campaign ID: use {_ID_FORMS}", typed_as="words")])
    return campaign


def parse_command(text: str) -> Command:
    """The text of `/fota …`, as Slack sends it, -> one Command, or RequestError.

    Slack's escaping (&amp; &lt; &gt;) is undone here, once; `Schedule.args` is
    plain text ready for `parse_schedule`. Text starting with `key=value` is a
    schedule request with the word `schedule` left out.
    """
    text = unescape_slack(text or "").strip()
    if not text:
        return OpenModal()
    parts = text.split(None, 1)
    first, rest = parts[0], parts[1] if len(parts) > 1 else ""
    if "=" in first:
        return Schedule(args=text)
    sub = first.lower()
    args = rest.split()
    if sub == "help":
        return Help()
    if sub == "schedule":
        return Schedule(args=rest) if rest.strip() else OpenModal()
    if sub == "status":
        return Status(_campaign_arg(sub, args))
    if sub == "cancel":
        return Cancel(_campaign_arg(sub, args))
    if sub == "history":
        return History(_campaign_arg(sub, args))
    if sub == "list":
        return ListCampaigns(_list_scope(args))
    if sub == "firmware":
        return Firmware(_firmware_account(args))
    if sub == "devices":
        return _devices(args)
    if sub == "retry":
        return _retry(args)
    guess = _nearest(sub, SUBCOMMANDS)
    if guess:
        hint = f"did you mean `{guess}`?"
    else:
        hint = "the commands are " + ", ".join(f"`{s}`" for s in SUBCOMMANDS) + "."
    raise RequestError(
        [Problem("command", first, f"is not a /fota command; {hint} Try `/fota help`.", typed_as="words")]
    )


def _list_scope(args: list[str]) -> str:
    if not args:
        return "active"
    scope = args[0].lower()
    if len(args) == 1 and scope in LIST_SCOPES:
        return scope
    guess = _nearest(scope, LIST_SCOPES) if len(args) == 1 else None
    hint = f"; did you mean `{guess}`?" if guess else ""
    raise RequestError(
        [Problem("list", " ".join(args), f"takes one of `active` (default), `all`, `mine`{hint}")]
    )


def _firmware_account(args: list[str]) -> str | None:
    if not args:
        return None
    if len(args) > 1:
        raise RequestError(
            [
                Problem(
                    "firmware",
                    " ".join(args),
                    "takes at most one account, e.g. `/fota firmware 0642233522-00001`",
                )
            ]
        )
    problem = _account_problem(args[0])
    if problem:
        raise RequestError([problem])
    return args[0]


_WAVE_ARG = re.compile(r"^w(?:ave)?0*([1-9]\d{0,2})(?:/\d{1,3})?$", re.IGNORECASE)


def _retry(args: list[str]) -> Retry:
    """`retry FB-12`, `retry FB-12 w2` (or `wave2`, `w2/4`: the wave as its ref shows it)."""
    if len(args) > 1 and args[0].lower() == "ref":  # pasted from a card: "Ref FB-12"
        args = args[1:]
    wave = None
    if len(args) == 2:
        m = _WAVE_ARG.match(args[1])
        if m is None:
            raise RequestError(
                [
                    Problem(
                        "retry",
                        args[1],
                        "is not a wave: use `w2` for wave 2, e.g. `/fota retry FB-12 w2`",
                        typed_as="words",
                    )
                ]
            )
        wave, args = int(m.group(1)), args[:1]
    return Retry(_campaign_arg("retry", args, extra=" and optionally a wave (`w2`)"), wave)


def _devices(args: list[str]) -> Devices:
    failed = False
    if len(args) >= 2 and args[-1].lower() in ("failed", "failures"):
        failed, args = True, args[:-1]
    elif len(args) == 2 and normalize_campaign_id(args[0]) is not None:
        raise RequestError(
            [
                Problem(
                    "devices",
                    args[1],
                    "takes a campaign ID and optionally `failed`, e.g. `/fota devices FB-12 failed`",
                )
            ]
        )
    return Devices(_campaign_arg("devices", args, extra=" (and optionally `failed`)"), failed)


# --- tokenizing -------------------------------------------------------------------


@dataclass
class _Word:
    text: str  # quotes removed, escapes applied
    eq: int  # index in text of the first `=` outside quotes, or -1
    eq_last: bool  # that `=` was the last character typed (`key=` then a space)
    unterminated: bool = False


def _words(text: str) -> list[_Word]:
    words: list[_Word] = []
    i, n = 0, len(text)
    while i < n:
        m = _SPACE.match(text, i)
        if m:
            i = m.end()
            if i >= n:
                break
        m = _SIMPLE_WORD.match(text, i)
        if m:  # the common case, no quotes or backslashes: one regex match
            word = m.group()
            eq = word.find("=")
            words.append(_Word(word, eq, eq == len(word) - 1))
            i = m.end()
            continue
        parts: list[str] = []
        length = 0
        eq = -1
        eq_end = -1
        unterminated = False
        while i < n and not text[i].isspace():
            ch = text[i]
            if ch in _QUOTES:
                body = _QUOTED_BODY.match(text, i + 1)
                end = body.end() if body else i + 1  # (it matches the empty string)
                chunk = _ESCAPE.sub(r"\1", text[i + 1 : end])
                parts.append(chunk)
                length += len(chunk)
                i = end
                if i < n and text[i] in _QUOTES:
                    i += 1
                else:
                    unterminated = True
                    i = n
                    break
            elif ch == "=":
                if eq < 0:
                    eq = length
                    eq_end = i + 1
                parts.append(ch)
                length += 1
                i += 1
            elif ch == "\\":
                parts.append(ch)
                length += 1
                i += 1
            else:
                m = _PLAIN.match(text, i)
                end = m.end() if m else i + 1
                parts.append(text[i:end])
                length += end - i
                i = end
        word = "".join(parts)
        eq_last = eq >= 0 and eq_end == i
        words.append(_Word(word, eq, eq_last, unterminated))
    return words


def _tokenize(text: str) -> tuple[list[tuple[str, str]], list[Problem]]:
    """key=value pairs and the problems with whatever is not one. Keys lower-cased."""
    words = _words(text)
    pairs: list[tuple[str, list[str]]] = []  # value parts, joined at the end
    problems: list[Problem] = []
    i = 0
    while i < len(words):
        w = words[i]
        i += 1
        if w.eq < 0 and i < len(words) and words[i].eq == 0 and _KEY_NAME.match(w.text):
            # `key = value` / `key =value`: spaces before the `=`.
            nxt = words[i]
            i += 1
            w = _Word(w.text + nxt.text, len(w.text), nxt.eq_last, nxt.unterminated)
        if w.eq < 0:
            if pairs and pairs[-1][0] == "devices" and _DEVICE_TAIL.match(w.text):
                # `devices=354…, 354…`: a list typed with spaces and no quotes.
                pairs[-1][1].append(w.text)
            elif w.unterminated:
                problems.append(Problem(_clip(w.text) or "text", "", _UNTERMINATED))
            else:
                problems.append(Problem(_clip(w.text), "", f"is not `key=value`; {_QUOTE_HINT}"))
            continue
        key, value = w.text[: w.eq], w.text[w.eq + 1 :]
        if not key:
            problems.append(Problem("text", w.text, "has no key before `=`; write `key=value`"))
            continue
        if (
            w.eq_last
            and i < len(words)
            and words[i].eq < 0
            and not (i + 1 < len(words) and words[i + 1].eq == 0)
        ):
            # `key= value`: a space after the `=`, and what follows is not a key=value.
            value = words[i].text
            w = words[i]
            i += 1
        if w.unterminated:
            problems.append(Problem(_clip(key.lower()), value, _UNTERMINATED))
            continue
        pairs.append((key.lower(), [value]))
    return [(key, " ".join(parts)) for key, parts in pairs], problems


def tokenize(text: str) -> list[tuple[str, str]]:
    """`key=value key="value with spaces"` -> [(key, value), …], keys lower-cased.

    Double quotes (straight or smart) group spaces; `\\"` is a quote inside a
    quoted value. Raises RequestError naming every malformed token.
    """
    pairs, problems = _tokenize(text)
    if problems:
        raise RequestError(problems)
    return pairs


# --- validating -------------------------------------------------------------------


def _unknown_key_problem(key: str, value: str) -> Problem:
    squashed = re.sub(r"[^a-z]", "", key.lower())
    guess = _KEY_ALIASES.get(squashed) or _nearest(key, SCHEDULE_KEYS)
    hint = f"did you mean `{guess}`?" if guess else "the keys are " + ", ".join(SCHEDULE_KEYS)
    return Problem(_clip(key), value, f"is not a schedule key; {hint}")


def _text_problem(key: str, value: str, limit: int) -> Problem | None:
    if _CONTROL.search(value):
        return Problem(key, value, "cannot contain line breaks or control characters")
    if len(value) > limit:
        return Problem(key, value, f"is {len(value)} characters long; at most {limit} are allowed")
    return None


def _account_problem(value: str) -> Problem | None:
    if len(value) > MAX_ACCOUNT_LENGTH or not _ACCOUNT.match(value) or not value.isascii():
        return Problem(
            "account",
            value,
            "must be the billing account: digits and dashes, e.g. `0642233522-00001` (leading zeros kept)",
        )
    return None


def _date(key: str, value: str, today: dt.date) -> tuple[dt.date | None, Problem | None]:
    word = value.lower()
    if word == "today":
        return today, None
    if word == "tomorrow":
        return today + dt.timedelta(days=1), None
    m = _RELATIVE_DATE.match(value)
    if m:
        days = int(m.group(1))
        if days > MAX_DAYS_AHEAD:
            return None, Problem(
                key, value, f"is more than {MAX_DAYS_AHEAD} days ahead; check the date"
            )
        return today + dt.timedelta(days=days), None
    m = _ISO_DATE.match(value)
    if m:
        try:
            return dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3))), None
        except ValueError:
            return None, Problem(key, value, "is not a real date (YYYY-MM-DD)")
    return None, Problem(key, value, _DATE_RULE)


def _windows(value: str) -> tuple[tuple[TimeWindow, ...], list[Problem]]:
    windows: list[TimeWindow] = []
    problems: list[Problem] = []
    parts = value.split(",")
    if len(parts) > MAX_WINDOWS:
        # Windows are 4 hours or more and may not overlap: at most 6 fit in a day.
        return (), [Problem("window", value, f"has {len(parts)} windows; at most 6 fit in a day")]
    for part in parts:
        part = part.strip()
        if not part:
            continue
        m = _WINDOW.match(part)
        if not m:
            problems.append(Problem("window", part, _WINDOW_RULE))
            continue
        start, end = int(m.group(1)), int(m.group(2))
        wrong = []
        if start > 23:
            wrong.append("the start hour must be 0–23")
        if not 1 <= end <= 24:
            wrong.append("the end hour must be 1–24")
        if wrong:
            problems.append(Problem("window", part, "; ".join(wrong)))
        elif end <= start:
            problems.append(
                Problem(
                    "window",
                    part,
                    "ends before it starts: a window cannot cross midnight UTC; "
                    "split it, e.g. `20-24,0-4`",
                )
            )
        elif end - start < MIN_WINDOW_HOURS:
            problems.append(
                Problem(
                    "window",
                    part,
                    f"is {end - start} hours long: the end hour must be at least "
                    f"{MIN_WINDOW_HOURS} hours after the start hour",
                )
            )
        else:
            windows.append(TimeWindow(start, end))
    ordered = sorted(windows, key=lambda w: (w.start_hour, w.end_hour))
    # Compare each window with the one reaching furthest so far, so that every
    # overlapping window is named, not only neighbours. Touching (0-4,4-8) is fine.
    for i, later in enumerate(ordered[1:]):
        reach = max(ordered[: i + 1], key=lambda w: w.end_hour)
        if later.start_hour < reach.end_hour:
            problems.append(
                Problem(
                    "window",
                    value,
                    f"windows {reach.start_hour}-{reach.end_hour} and "
                    f"{later.start_hour}-{later.end_hour} overlap; windows must not overlap",
                )
            )
    return tuple(windows), problems


def check_schedule_fields(
    fields: Mapping[str, str], *, today: dt.date, max_devices: int
) -> tuple[ScheduleRequest | None, list[Problem]]:
    """The validator behind `parse_schedule_fields`: (request, []) or (None, problems)."""
    problems: list[Problem] = []
    notes: list[str] = []
    seen: dict[str, str] = {}
    for raw_key, raw_value in fields.items():
        key = str(raw_key).strip().lower()
        key = _SAME_KEY.get(key, key)
        value = raw_value.strip() if isinstance(raw_value, str) else ""
        if key in NOT_YET_KEYS:
            problems.append(Problem(key, value, NOT_YET_KEYS[key]))
        elif key not in SCHEDULE_KEYS:
            problems.append(_unknown_key_problem(str(raw_key), value))
        elif key in seen:
            problems.append(
                Problem(
                    key,
                    value,
                    f"is given twice (also `{key}={_clip(seen[key])}`); give each key once",
                )
            )
        else:
            seen[key] = value
    # An empty value is the same as leaving the key out (an empty modal input).
    given = {key: value for key, value in seen.items() if value}

    firmware = given.get("firmware")
    if firmware is None:
        problems.append(
            Problem("firmware", "", "is required: the firmware name as `/fota firmware` lists it")
        )
    else:
        problems += filter(None, [_text_problem("firmware", firmware, MAX_FIRMWARE_LENGTH)])

    firmware_from, firmware_to = given.get("from"), given.get("to")
    for version_key, version in (("from", firmware_from), ("to", firmware_to)):
        if version is not None:
            problems += filter(None, [_text_problem(version_key, version, MAX_FIRMWARE_LENGTH)])
    if (firmware_from is None) != (firmware_to is None):
        missing, other = ("to", "from") if firmware_to is None else ("from", "to")
        problems.append(
            Problem(
                missing,
                "",
                f"is required when `{other}` is given: give both `from` and `to`, "
                "or leave both out to take them from the firmware list",
            )
        )
    elif firmware_from is not None and firmware_from == firmware_to:
        problems.append(
            Problem("to", firmware_to or "", f"must differ from `from` ({_clip(firmware_from)})")
        )
    elif firmware_from is None and firmware is not None:
        notes.append("`from` and `to` not given: they will be taken from the firmware list")

    protocol = given.get("protocol", DEFAULT_PROTOCOL).upper()
    if protocol not in PROTOCOLS:
        guess = _nearest(protocol, [p.lower() for p in PROTOCOLS])
        hint = f"; did you mean `{guess.upper()}`?" if guess else ""
        problems.append(
            Problem("protocol", given["protocol"], f"must be LWM2M (default), OMA or HTTP{hint}")
        )

    horizon = today + dt.timedelta(days=MAX_DAYS_AHEAD)
    start: dt.date | None = today
    if "start" in given:
        start, problem = _date("start", given["start"], today)
        if problem:
            problems.append(problem)
        elif start is not None and start < today:
            problems.append(
                Problem(
                    "start",
                    given["start"],
                    f"is in the past: the start must be today ({today} UTC) or later",
                )
            )
            start = None
        elif start is not None and start > horizon:
            problems.append(
                Problem(
                    "start",
                    given["start"],
                    f"is more than {MAX_DAYS_AHEAD} days ahead; check the year",
                )
            )
            start = None
    end: dt.date | None = None
    if "end" in given:
        end, problem = _date("end", given["end"], today)
        if problem:
            problems.append(problem)
        elif end is not None and start is not None and end < start:
            problems.append(
                Problem(
                    "end",
                    given["end"],
                    f"is before the start ({start}): the end must be on or after the start",
                )
            )
        elif end is not None and end > horizon:
            problems.append(
                Problem(
                    "end", given["end"], f"is more than {MAX_DAYS_AHEAD} days ahead; check the year"
                )
            )
    elif start is not None:
        end = start + DEFAULT_DURATION
        notes.append(f"No `end` given: the campaign ends {end} (start + 7 days)")

    windows: tuple[TimeWindow, ...] = ()
    if "window" in given:
        windows, window_problems = _windows(given["window"])
        problems += window_problems

    devices: tuple[str, ...] = ()
    if "devices" in given:
        devices, device_problems, device_notes = parse_imeis(
            given["devices"], max_devices=max_devices
        )
        problems += device_problems
        notes += device_notes
    else:
        problems.append(
            Problem("devices", "", "is required: IMEIs (15 digits) separated by commas or spaces")
        )

    name = given.get("name")
    if name is not None:
        problem = _text_problem("name", name, MAX_NAME_LENGTH)
        if problem is None and ("[" in name or "]" in name):
            # The bot appends `[FB-12]` and finds lost campaigns by it.
            problem = Problem(
                "name", name, "cannot contain `[` or `]`: the bot adds its reference in brackets"
            )
        if problem:
            problems.append(problem)

    account = given.get("account")
    if account is not None:
        problems += filter(None, [_account_problem(account)])

    licence = given.get("licence", "none").lower()
    if licence not in LICENCE_VALUES:
        problems.append(
            Problem(
                "licence",
                given["licence"],
                "must be `auto` (ThingSpace may assign the account's unused licences to "
                "unlicensed devices) or `none` (default)",
            )
        )

    plan, plan_problems = check_plan_fields(given, max_devices=max_devices)
    problems += plan_problems
    if problems or firmware is None or start is None or end is None:
        return None, problems
    return (
        ScheduleRequest(
            firmware=firmware,
            firmware_from=firmware_from,
            firmware_to=firmware_to,
            protocol=protocol,
            start_date=start,
            end_date=end,
            windows=windows,
            devices=devices,
            name=name,
            account=account,
            licence_auto=licence == "auto",
            plan=plan,
            notes=tuple(notes),
        ),
        [],
    )


def parse_schedule_fields(
    fields: Mapping[str, str], *, today: dt.date, max_devices: int
) -> ScheduleRequest:
    """Schedule keys -> ScheduleRequest, or RequestError with every problem.

    Keys are case-insensitive; values are stripped, and an empty value is the
    same as leaving the key out. `today` is the current date in UTC.
    """
    request, problems = check_schedule_fields(fields, today=today, max_devices=max_devices)
    if request is None:
        raise RequestError(problems)
    return request


def parse_schedule(text: str, *, today: dt.date, max_devices: int) -> ScheduleRequest:
    """`firmware=… devices=… …` -> ScheduleRequest, or RequestError with every problem."""
    pairs, problems = _tokenize(text)
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            problems.append(
                Problem(
                    key,
                    value,
                    f"is given twice (also `{key}={_clip(fields[key])}`); give each key once",
                )
            )
        else:
            fields[key] = value
    request, more = check_schedule_fields(fields, today=today, max_devices=max_devices)
    problems += more
    if request is None or problems:
        raise RequestError(problems)
    return request
