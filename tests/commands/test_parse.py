"""/fota command routing, key=value tokenizing and schedule validation (commands/parse.py)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commands.help import HELP_TEXT, USAGE_HINT
from commands.parse import (
    SCHEDULE_KEYS,
    SUBCOMMANDS,
    Cancel,
    Command,
    Devices,
    Firmware,
    Help,
    ListCampaigns,
    OpenModal,
    Retry,
    Schedule,
    Status,
    normalize_campaign_id,
    parse_command,
    parse_schedule,
    parse_schedule_fields,
    ref_number,
    tokenize,
)
from storage.model import Problem, RequestError, ScheduleRequest, TimeWindow

TODAY = dt.date(2024, 5, 1)
GOOD = "354658090353977"
GOOD2 = "490154203237518"
BASE = f"firmware=FW1 from=A to=B devices={GOOD}"
UUID = "f858b8c4-2153-11ec-8c44-aeb16d1aa652"


def schedule(text: str, max_devices: int = 100) -> ScheduleRequest:
    return parse_schedule(text, today=TODAY, max_devices=max_devices)


def problems(text: str, max_devices: int = 100) -> list[Problem]:
    with pytest.raises(RequestError) as exc:
        schedule(text, max_devices)
    return list(exc.value.problems)


def only_problem(text: str) -> Problem:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def command_problem(text: str) -> Problem:
    with pytest.raises(RequestError) as exc:
        parse_command(text)
    (p,) = exc.value.problems
    return p


# --- parse_command -----------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "schedule", "  Schedule  ", "SCHEDULE\n"])
def test_bare_command_or_schedule_opens_the_modal(text: str) -> None:
    assert parse_command(text) == OpenModal({})


@pytest.mark.parametrize("text", ["help", "HELP", "help schedule"])
def test_help(text: str) -> None:
    assert parse_command(text) == Help()


def test_schedule_carries_the_rest_of_the_text() -> None:
    assert parse_command(f"schedule {BASE}") == Schedule(args=BASE)


def test_schedule_word_may_be_left_out_before_key_value() -> None:
    assert parse_command(BASE) == Schedule(args=BASE)


def test_slack_escaping_is_undone_once() -> None:
    cmd = parse_command('schedule name="A &amp; B &lt;x&gt;" firmware=<http://fw.io|fw.io>')
    assert cmd == Schedule(args='name="A & B <x>" firmware=fw.io')
    assert parse_command("schedule name=&amp;lt;") == Schedule(args="name=&lt;")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status FB-12", Status("FB-12")),
        ("status fb-12", Status("FB-12")),
        ("status Fb12", Status("FB-12")),
        ("status 12", Status("FB-12")),
        ("status #12", Status("FB-12")),
        ("status FB-012", Status("FB-12")),
        ("status `FB-12`", Status("FB-12")),
        ("status *FB-12*", Status("FB-12")),
        ("status Ref FB-12", Status("FB-12")),
        (f"status {UUID}", Status(UUID)),
        ("cancel FB-3", Cancel("FB-3")),
        ("Cancel 3", Cancel("FB-3")),
        ("list", ListCampaigns("active")),
        ("list active", ListCampaigns("active")),
        ("list ALL", ListCampaigns("all")),
        ("list mine", ListCampaigns("mine")),
        ("firmware", Firmware(None)),
        ("firmware 0642233522-00001", Firmware("0642233522-00001")),
        ("devices FB-4", Devices("FB-4", False)),
        ("devices FB-4 failed", Devices("FB-4", True)),
        ("devices fb-4 FAILED", Devices("FB-4", True)),
        (f"devices {UUID} failed", Devices(UUID, True)),
    ],
)
def test_subcommands(text: str, expected: object) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("retry FB-12", Retry("FB-12")),
        ("retry 12", Retry("FB-12")),
        ("retry Ref FB-12", Retry("FB-12")),
        ("retry FB-12 w2", Retry("FB-12", 2)),
        ("retry FB-12 W2/4", Retry("FB-12", 2)),
        ("retry fb-12 wave3", Retry("FB-12", 3)),
    ],
)
def test_retry_names_a_campaign_and_maybe_a_wave(text: str, expected: Retry) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("retry", "needs a campaign ID"),
        ("retry FB-12 2", "is not a wave: use `w2`"),
        ("retry FB-12 w0", "is not a wave"),
        ("retry FB-12 w2 w3", "takes one campaign ID and optionally a wave"),
        ("retry nonsense!", "is not a campaign ID"),
    ],
)
def test_retry_refuses_what_is_not_a_campaign_and_wave(text: str, said: str) -> None:
    with pytest.raises(RequestError, match=re.escape(said)):
        parse_command(text)


def test_every_subcommand_is_routed() -> None:
    args = {"status": " FB-1", "cancel": " FB-1", "devices": " FB-1", "history": " FB-1", "retry": " FB-1",
            "schedule": " firmware=x"}
    for sub in SUBCOMMANDS:
        parse_command(sub + args.get(sub, ""))  # no RequestError


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("shedule", "schedule"),
        ("stauts", "status"),
        ("lst", "list"),
        ("cancle", "cancel"),
        ("firmwares", "firmware"),
        ("device", "devices"),
        ("hlep", "help"),
    ],
)
def test_unknown_subcommand_suggests_the_nearest(typed: str, meant: str) -> None:
    p = command_problem(f"{typed} FB-1")
    assert p.value == typed
    assert p.rule == f"is not a /fota command; did you mean `{meant}`? Try `/fota help`."
    assert f"`{typed}`" in str(p) or typed in str(p)


def test_unknown_subcommand_without_a_near_one_lists_them_all() -> None:
    p = command_problem("xyzzy")
    assert "is not a /fota command" in p.rule
    assert all(f"`{s}`" in p.rule for s in SUBCOMMANDS)


@pytest.mark.parametrize("sub", ["status", "cancel", "devices"])
def test_missing_id_explains_the_forms(sub: str) -> None:
    p = command_problem(sub)
    assert p.key == sub
    assert "needs a campaign ID" in p.rule
    assert "`FB-12`" in p.rule and "ThingSpace's campaign id" in p.rule


@pytest.mark.parametrize("ident", ["abc", "FB-", "FB-0", "FB-x1", "0", "FB-12abc", "schedule"])
def test_invalid_id(ident: str) -> None:
    p = command_problem(f"status {ident}")
    assert p.key == "status"
    assert p.value == ident
    assert "is not a campaign ID" in p.rule and "`FB-12`" in p.rule


def test_status_takes_one_id() -> None:
    p = command_problem("status FB-1 FB-2")
    assert p.value == "FB-1 FB-2" and "one campaign ID" in p.rule


def test_list_unknown_scope_suggests() -> None:
    p = command_problem("list mne")
    assert p.key == "list" and p.value == "mne"
    assert "did you mean `mine`?" in p.rule and "`active` (default)" in p.rule


def test_list_takes_one_scope() -> None:
    assert "takes one of" in command_problem("list all mine").rule


def test_firmware_account_is_checked() -> None:
    p = command_problem("firmware acme")
    assert p.key == "account" and p.value == "acme"
    assert "digits and dashes" in p.rule
    assert "at most one account" in command_problem("firmware 1 2").rule


def test_devices_second_word_must_be_failed() -> None:
    p = command_problem("devices FB-1 everything")
    assert p.value == "everything" and "`failed`" in p.rule


def test_normalize_campaign_id_and_ref_number() -> None:
    assert normalize_campaign_id(" fb-7 ") == "FB-7"
    assert normalize_campaign_id(UUID.upper()) == UUID.upper()
    assert normalize_campaign_id("nope") is None
    assert ref_number("FB-7") == 7
    assert ref_number(UUID) is None


# --- tokenize ----------------------------------------------------------------------


def test_tokenize_plain_pairs_lowercases_keys() -> None:
    assert tokenize("firmware=X From=a TO=b") == [("firmware", "X"), ("from", "a"), ("to", "b")]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('name="Q3 rollout"', "Q3 rollout"),
        ("name=\u201cQ3 rollout\u201d", "Q3 rollout"),  # “smart” quotes
        ("name=\u201eQ3 rollout\u201c", "Q3 rollout"),  # „German“ quotes
        ('name="Q3 rollout\u201d', "Q3 rollout"),  # mixed
        ('name="say \\"hi\\" now"', 'say "hi" now'),
        ('name="back\\\\slash"', "back\\slash"),
        ('name="C:\\dir"', "C:\\dir"),
        ('name="a=b c"', "a=b c"),
        ('name=pre" fix"', "pre fix"),
        ('name=""', ""),
        ('name="line\nbreak"', "line\nbreak"),
        ("name=Bob's", "Bob's"),
    ],
)
def test_tokenize_quotes(text: str, value: str) -> None:
    assert tokenize(text) == [("name", value)]


def test_tokenize_spaces_around_equals() -> None:
    assert tokenize("firmware = X to =b from= a name=") == [
        ("firmware", "X"),
        ("to", "b"),
        ("from", "a"),
        ("name", ""),
    ]


def test_tokenize_empty_value_before_next_pair() -> None:
    assert tokenize("from= to=B") == [("from", ""), ("to", "B")]


def test_tokenize_devices_list_with_spaces_unquoted() -> None:
    assert tokenize(f"devices={GOOD}, {GOOD2} {GOOD} name=x") == [
        ("devices", f"{GOOD}, {GOOD2} {GOOD}"),
        ("name", "x"),
    ]


def test_tokenize_reports_every_malformed_token() -> None:
    with pytest.raises(RequestError) as exc:
        tokenize('firmware=X oops, =lonely name="never closed')
    found = exc.value.problems
    assert len(found) == 3
    assert found[0].key == "oops," and "is not `key=value`" in found[0].rule
    assert found[1].value == "=lonely" and "no key before `=`" in found[1].rule
    assert found[2].key == "name" and "no closing quote" in found[2].rule


def test_tokenize_unterminated_smart_quote() -> None:
    with pytest.raises(RequestError) as exc:
        tokenize("name=\u201cQ3 rollout")
    assert "no closing quote" in exc.value.problems[0].rule


# --- parse_schedule: defaults and values --------------------------------------------


def test_minimal_request_and_defaults() -> None:
    r = schedule(f"firmware=FW1 devices={GOOD}")
    assert r == ScheduleRequest(
        firmware="FW1",
        firmware_from=None,
        firmware_to=None,
        protocol="LWM2M",
        start_date=TODAY,
        end_date=TODAY + dt.timedelta(days=7),
        windows=(),
        devices=(GOOD,),
        name=None,
        account=None,
    )
    assert "No `end` given: the campaign ends 2024-05-08 (start + 7 days)" in r.notes
    assert any("`from` and `to` not given" in n for n in r.notes)


def test_full_request() -> None:
    r = schedule(
        'firmware="SEQUANS_GM01Q_SR1.2" from=SR1.2.0.0-10512 to=SR1.2.0.0-10657 protocol=oma '
        f"start=2024-05-03 end=2024-05-04 window=18-22,2-6 devices={GOOD},{GOOD2} "
        'name="Q3 rollout" account=0642233522-00001'
    )
    assert r.firmware == "SEQUANS_GM01Q_SR1.2"
    assert (r.firmware_from, r.firmware_to) == ("SR1.2.0.0-10512", "SR1.2.0.0-10657")
    assert r.protocol == "OMA"
    assert (r.start_date, r.end_date) == (dt.date(2024, 5, 3), dt.date(2024, 5, 4))
    assert r.windows == (TimeWindow(18, 22), TimeWindow(2, 6))
    assert r.devices == (GOOD, GOOD2)
    assert r.name == "Q3 rollout"
    assert r.account == "0642233522-00001"
    assert r.notes == ()


@pytest.mark.parametrize(("typed", "sent"), [("lwm2m", "LWM2M"), ("Oma", "OMA"), ("http", "HTTP")])
def test_protocol_any_case(typed: str, sent: str) -> None:
    assert schedule(f"{BASE} protocol={typed}").protocol == sent


@pytest.mark.parametrize(
    ("typed", "date"),
    [
        ("today", TODAY),
        ("TODAY", TODAY),
        ("tomorrow", dt.date(2024, 5, 2)),
        ("+0d", TODAY),
        ("+3d", dt.date(2024, 5, 4)),
        ("+30D", dt.date(2024, 5, 31)),
        ("2024-05-01", TODAY),
        ("2024-06-30", dt.date(2024, 6, 30)),
    ],
)
def test_date_forms(typed: str, date: dt.date) -> None:
    r = schedule(f"{BASE} start={typed} end={typed}")
    assert (r.start_date, r.end_date) == (date, date)


def test_relative_end_counts_from_today_and_default_end_from_start() -> None:
    assert schedule(f"{BASE} start=+2d end=+3d").end_date == dt.date(2024, 5, 4)
    assert schedule(f"{BASE} start=+2d").end_date == dt.date(2024, 5, 10)


def test_duplicate_imeis_note() -> None:
    r = schedule(f"firmware=X devices={GOOD},{GOOD2},{GOOD},{GOOD2}")
    assert r.devices == (GOOD, GOOD2)
    assert "2 duplicate IMEIs dropped" in r.notes


def test_notes_do_not_affect_equality() -> None:
    assert schedule(f"{BASE} end=+7d") == schedule(BASE)


def test_account_keeps_leading_zeros() -> None:
    assert schedule(f"{BASE} account=0000000000-00001").account == "0000000000-00001"


def test_name_of_80_characters_is_fine() -> None:
    assert schedule(f'{BASE} name="{"n" * 80}"').name == "n" * 80


def test_values_are_stripped_and_empty_means_left_out() -> None:
    r = schedule(f'{BASE} name="  x  " start="" window=""')
    assert r.name == "x" and r.start_date == TODAY and r.windows == ()


# --- parse_schedule: rules, each naming key, value and rule -------------------------


@pytest.mark.parametrize(
    ("extra", "key", "value", "words"),
    [
        ("protocol=SMS", "protocol", "SMS", "must be LWM2M (default), OMA or HTTP"),
        ("start=yesterday", "start", "yesterday", "YYYY-MM-DD"),
        ("start=2024-04-30", "start", "2024-04-30", "is in the past"),
        ("start=2024-13-01", "start", "2024-13-01", "not a real date"),
        ("start=2024-02-30", "start", "2024-02-30", "not a real date"),
        ("start=20240501", "start", "20240501", "YYYY-MM-DD"),
        ("start=-1d", "start", "-1d", "YYYY-MM-DD"),
        ("start=+400d", "start", "+400d", "366 days ahead"),
        ("start=2026-01-01", "start", "2026-01-01", "366 days ahead"),
        ("start=9999-12-31", "start", "9999-12-31", "366 days ahead"),
        ("start=+9999d", "start", "+9999d", "366 days ahead"),
        ("end=2024-04-30", "end", "2024-04-30", "is before the start"),
        ("start=+5d end=+4d", "end", "+4d", "is before the start (2024-05-06)"),
        ("end=nextweek", "end", "nextweek", "`+Nd`"),
        ("end=9999-12-31", "end", "9999-12-31", "366 days ahead"),
        ("window=18", "window", "18", "START-END"),
        ("window=evening", "window", "evening", "START-END"),
        ("window=24-28", "window", "24-28", "start hour must be 0–23"),
        ("window=0-25", "window", "0-25", "end hour must be 1–24"),
        ("window=10-0", "window", "10-0", "end hour must be 1–24"),
        ("window=18-21", "window", "18-21", "at least 4 hours"),
        ("window=22-2", "window", "22-2", "cannot cross midnight"),
        ("window=5-5", "window", "5-5", "cannot cross midnight"),
        ("window=18-22,20-24", "window", "18-22,20-24", "overlap"),
        ("window=0-6,0-6", "window", "0-6,0-6", "overlap"),
        ("window=" + ",".join(["0-4"] * 13), "window", ",".join(["0-4"] * 13), "13 windows"),
        ('name="' + "n" * 81 + '"', "name", "n" * 81, "81 characters long; at most 80"),
        ('name="two\nlines"', "name", "two\nlines", "line breaks"),
        ('name="x [FB-3]"', "name", "x [FB-3]", "`[` or `]`"),
        ("account=acme", "account", "acme", "digits and dashes"),
        ("account=0642-", "account", "0642-", "digits and dashes"),
        ("account=-1", "account", "-1", "digits and dashes"),
        ("account=١٢٣", "account", "١٢٣", "digits and dashes"),
        ('firmware2="x y"', "firmware2", "x y", "did you mean `firmware`?"),
        ("to=A", "to", "A", "must differ from `from` (A)"),
    ],
)
def test_each_rule_names_key_value_and_rule(extra: str, key: str, value: str, words: str) -> None:
    base = BASE.replace("to=B", "") if extra.startswith("to=") else BASE
    p = only_problem(f"{base} {extra}")
    assert (p.key, p.value) == (key, value)
    assert words in p.rule
    shown = str(p)
    assert shown.startswith(f"`{key}")
    assert (value[:50] in shown) if "\n" not in value else True


def test_firmware_required() -> None:
    p = only_problem(f"devices={GOOD}")
    assert p.key == "firmware" and p.rule.startswith("is required")


def test_devices_required() -> None:
    p = only_problem("firmware=X")
    assert p.key == "devices" and p.rule.startswith("is required")


@pytest.mark.parametrize(("given_", "missing"), [("from=A", "to"), ("to=B", "from")])
def test_from_and_to_go_together(given_: str, missing: str) -> None:
    p = only_problem(f"firmware=X {given_} devices={GOOD}")
    assert p.key == missing
    assert "give both `from` and `to`, or leave both out" in p.rule


def test_bad_imeis_reported_under_devices() -> None:
    p = only_problem(f"firmware=X devices={GOOD},12345,354658090353978")
    assert p.key == "devices"
    assert "2 values are not valid IMEIs" in p.rule
    assert "12345 (5 digits)" in p.rule and "354658090353978 (wrong check digit)" in p.rule


def test_too_many_devices() -> None:
    found = problems(f"firmware=X devices={GOOD},{GOOD2}", max_devices=1)
    assert found == [
        Problem(
            "devices",
            "2 IMEIs",
            "is more than the 1 devices one request may carry (FOTA_MAX_DEVICES); "
            "split the list into several requests",
        )
    ]


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("firmwre", "firmware"),
        ("Firmware_Name", "firmware"),
        ("firmwareName", "firmware"),
        ("firmwareFrom", "from"),
        ("firmwareTo", "to"),
        ("frm", "from"),
        ("protocl", "protocol"),
        ("startDate", "start"),
        ("strat", "start"),
        ("end_date", "end"),
        ("windw", "window"),
        ("campaignTimeWindowList", "window"),
        ("deviceList", "devices"),
        ("imei", "devices"),
        ("device", "devices"),
        ("nmae", "name"),
        ("campaignName", "name"),
        ("acount", "account"),
    ],
)
def test_unknown_key_suggests_the_nearest(typed: str, meant: str) -> None:
    found = problems(f"{BASE} {typed}=v")
    p = next(p for p in found if p.key == typed.lower())
    assert p.value == "v"
    assert p.rule == f"is not a schedule key; did you mean `{meant}`?"


def test_unknown_key_without_near_one_lists_keys() -> None:
    p = only_problem(f"{BASE} zzz=1")
    assert all(k in p.rule for k in SCHEDULE_KEYS)


def test_duplicate_key() -> None:
    p = only_problem(f"{BASE} name=one name=two")
    assert (p.key, p.value) == ("name", "two")
    assert "given twice" in p.rule and "`name=one`" in p.rule


def test_duplicate_key_differing_in_case() -> None:
    assert "given twice" in only_problem(f"{BASE} NAME=one name=two").rule


def test_every_problem_is_reported_at_once() -> None:
    text = (
        "firmwre=X from=A to=A protocol=sms start=2024-01-01 end=soon window=22-2,1-3 "
        'devices=123 name="[x]" account=acme stray name=again'
    )
    found = problems(text)
    keys = [p.key for p in found]
    for key in (
        "firmwre",
        "firmware",
        "to",
        "protocol",
        "start",
        "end",
        "window",
        "devices",
        "name",
        "account",
        "stray",
    ):
        assert key in keys, key
    assert keys.count("window") == 2
    assert keys.count("name") == 2  # the duplicate and the brackets
    message = RequestError(found).message()
    assert message.startswith(f"That request has {len(found)} problems:")


def test_end_is_not_checked_against_an_invalid_start() -> None:
    found = problems(f"{BASE} start=bad end=2024-05-02")
    assert [p.key for p in found] == ["start"]


# --- windows -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "windows"),
    [
        ("18-22", (TimeWindow(18, 22),)),
        ("0-4", (TimeWindow(0, 4),)),
        ("20-24", (TimeWindow(20, 24),)),
        ("0-24", (TimeWindow(0, 24),)),
        ("18-22,2-6", (TimeWindow(18, 22), TimeWindow(2, 6))),
        ("0-4,4-8", (TimeWindow(0, 4), TimeWindow(4, 8))),  # adjacent is not overlapping
        ("20-24,0-4", (TimeWindow(20, 24), TimeWindow(0, 4))),
        (" 18 - 22 , 02-06 ,", (TimeWindow(18, 22), TimeWindow(2, 6))),
        ("18:00-22:00", (TimeWindow(18, 22),)),
        ("0-4,4-8,8-12,12-16,16-20,20-24", tuple(TimeWindow(h, h + 4) for h in range(0, 24, 4))),
    ],
)
def test_windows(typed: str, windows: tuple[TimeWindow, ...]) -> None:
    assert schedule(f'{BASE} window="{typed}"').windows == windows


def test_every_overlapping_window_is_named() -> None:
    found = problems(f"{BASE} window=0-20,4-8,10-14")
    rules = [p.rule for p in found]
    assert any("0-20 and 4-8" in r for r in rules)
    assert any("0-20 and 10-14" in r for r in rules)


def test_window_problems_for_each_bad_part() -> None:
    found = problems(f"{BASE} window=25-30,1-2,x")
    assert [p.value for p in found] == ["25-30", "1-2", "x"]


# --- parse_schedule_fields ----------------------------------------------------------


def test_fields_and_text_give_the_same_request() -> None:
    fields = {
        "firmware": "FW 1",
        "from": "A",
        "to": "B",
        "protocol": "http",
        "start": "tomorrow",
        "window": "18-22",
        "devices": f"{GOOD}\n{GOOD2}",
        "name": "Q3 rollout",
        "account": "0642233522-00001",
    }
    text = " ".join(f'{k}="{v}"' for k, v in fields.items())
    assert parse_schedule_fields(fields, today=TODAY, max_devices=9) == schedule(text)


def test_fields_are_case_insensitive_and_none_is_empty() -> None:
    fields: dict[str, object] = {"Firmware": "X", "devices": GOOD, "name": None}
    r = parse_schedule_fields(fields, today=TODAY, max_devices=9)  # type: ignore[arg-type]
    assert r.firmware == "X" and r.name is None


def test_fields_unknown_key() -> None:
    with pytest.raises(RequestError) as exc:
        parse_schedule_fields(
            {"firmware": "X", "devices": GOOD, "devicelist": "1"}, today=TODAY, max_devices=9
        )
    assert exc.value.problems[0].rule == "is not a schedule key; did you mean `devices`?"


# --- robustness --------------------------------------------------------------------

_KEYS = st.sampled_from([*SCHEDULE_KEYS, "Firmware", "nme", "", "x y", "=", '"'])
_VALUES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            GOOD,
            f"{GOOD},{GOOD2}",
            "today",
            "+3d",
            "+99999d",
            "2024-05-02",
            "9999-12-31",
            "18-22",
            "22-2",
            "0-24,0-4",
            "LWM2M",
            "oma",
            "0642233522-00001",
            '"quoted value"',
            "\u201csmart\u201d",
            'a\\"b',
            "",
            " ",
            "\n",
        ]
    ),
)
_PAIRS = st.lists(st.tuples(_KEYS, _VALUES), max_size=12).map(
    lambda pairs: " ".join(f"{k}={v}" for k, v in pairs)
)


def _schedule_or_request_error(text: str) -> None:
    try:
        r = parse_schedule(text, today=TODAY, max_devices=5)
    except RequestError as exc:
        assert exc.problems
        assert all(isinstance(p, Problem) for p in exc.problems)
        exc.message()
        exc.by_key()
    else:
        assert isinstance(r, ScheduleRequest)
        assert r.devices and r.start_date >= TODAY and r.end_date >= r.start_date


@given(st.text())
def test_any_text_gives_request_or_request_error(text: str) -> None:
    _schedule_or_request_error(text)


@given(_PAIRS)
def test_any_key_value_text_gives_request_or_request_error(text: str) -> None:
    _schedule_or_request_error(text)


@given(st.dictionaries(st.text(max_size=12) | _KEYS, _VALUES, max_size=12))
def test_any_fields_give_request_or_request_error(fields: dict[str, str]) -> None:
    try:
        parse_schedule_fields(fields, today=TODAY, max_devices=5)
    except RequestError as exc:
        assert exc.problems


@given(
    st.text() | st.sampled_from(SUBCOMMANDS).flatmap(lambda s: st.text().map(lambda t: f"{s} {t}"))
)
def test_any_command_text_gives_command_or_request_error(text: str) -> None:
    try:
        cmd = parse_command(text)
    except RequestError as exc:
        assert exc.problems
    else:
        assert isinstance(cmd, Command)  # every command there is, whichever is added next


# --- help --------------------------------------------------------------------------


def test_help_documents_every_subcommand_and_key() -> None:
    for sub in SUBCOMMANDS:
        assert f"/fota {sub}" in HELP_TEXT, sub
        assert sub in USAGE_HINT
    for key in SCHEDULE_KEYS:
        assert f"`{key}`" in HELP_TEXT, key
    assert len(HELP_TEXT) <= 3000  # one section block


def test_usage_hint() -> None:
    assert USAGE_HINT == (
        "schedule key=value … | status ID | list [active|all|mine] | cancel ID | "
        "firmware [account] | devices ID [failed] | history ID | retry ID [wN] | help"
    )


def test_help_example_is_a_valid_request() -> None:
    line = next(
        line for line in HELP_TEXT.splitlines() if line.startswith("`/fota schedule firmware=")
    )
    cmd = parse_command(line.strip("`").removeprefix("/fota "))
    assert isinstance(cmd, Schedule)
    assert schedule(cmd.args).name == "Q3 rollout"


@pytest.mark.parametrize("typed", ["FB–1", "ＦＢ-1", "FB\u200b-1", "FB—1", "fb\u22121"])
def test_campaign_ids_typed_with_odd_dashes_or_widths_are_read(typed: str) -> None:
    assert normalize_campaign_id(typed) == "FB-1"


@pytest.mark.parametrize(
    ("text", "shown"),
    [("stauts FB-1", "`/fota stauts`"), ("status abc", "`/fota status abc`"), ("status", "`/fota status`")],
)
def test_command_errors_show_the_command_as_typed_not_as_a_key(text: str, shown: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_command(text)
    assert shown in caught.value.message() and "=" not in caught.value.message().splitlines()[1][:20]


@pytest.mark.parametrize(
    ("typed", "auto"),
    [("", False), (" licence=none", False), (" licence=auto", True), (" license=AUTO", True)],
)
def test_the_licence_option_is_off_by_default(typed: str, auto: bool) -> None:
    request = schedule(BASE + typed)
    assert request.licence_auto is auto


def test_a_bad_licence_value_says_the_two_choices() -> None:
    with pytest.raises(RequestError) as exc:
        schedule(BASE + " licence=yes")
    [problem] = exc.value.problems
    assert problem.key == "licence" and problem.value == "yes"
    assert "`auto`" in problem.rule and "`none` (default)" in problem.rule
    with pytest.raises(RequestError) as exc:
        schedule(BASE + " autoAssignLicenseFlag=true")
    assert "did you mean `licence`?" in exc.value.message()
