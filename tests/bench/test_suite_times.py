"""bench/suite_times.py: tests matched across a regrouped suite, and which got slower."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.suite_times import Timing, fastest, main, match, read_junit, slower, split_classname


def junit(*cases: tuple[str, str, float], skipped: tuple[str, ...] = (), wall: float = 9.5) -> str:
    rows = "".join(
        f'<testcase classname="{cls}" name="{name}" time="{t}">'
        + ("<skipped/>" if name in skipped else "")
        + "</testcase>"
        for cls, name, t in cases
    )
    return f'<?xml version="1.0"?><testsuites><testsuite name="pytest" time="{wall}">{rows}</testsuite></testsuites>'


def t(module: str, name: str, seconds: float = 0.1, cls: str = "") -> Timing:
    return Timing(module, cls, name, seconds)


def test_classname_splits_into_module_and_class() -> None:
    assert split_classname("tests.e2e.test_flow") == ("tests.e2e.test_flow", "")
    assert split_classname("tests.e2e.test_flow.TestApproval") == ("tests.e2e.test_flow", "TestApproval")


def test_read_junit_keeps_name_with_parametrize_id_time_and_skips() -> None:
    tests, wall = read_junit(
        junit(("tests.test_parse", "test_imei[a-b]", 0.25), ("tests.test_parse", "test_off", 0.0), skipped=("test_off",))
    )
    assert wall == 9.5
    assert tests == [
        Timing("tests.test_parse", "", "test_imei[a-b]", 0.25),
        Timing("tests.test_parse", "", "test_off", 0.0, skipped=True),
    ]
    assert tests[0].id == "tests/test_parse.py::test_imei[a-b]"


def test_fastest_run_counts_and_a_skip_in_any_run_counts() -> None:
    first = read_junit(junit(("tests.test_a", "test_x", 0.5), ("tests.test_a", "test_y", 0.1), wall=10))
    second = read_junit(
        junit(("tests.test_a", "test_x", 0.3), ("tests.test_a", "test_y", 0.2), skipped=("test_y",), wall=12)
    )
    run = fastest([first, second])
    assert run.wall == 12
    assert sorted((x.name, x.seconds, x.skipped) for x in run.tests) == [("test_x", 0.3, False), ("test_y", 0.1, True)]


def test_a_name_unique_on_both_sides_matches_across_a_move() -> None:
    old = [t("tests.test_callback_receiver", "test_duplicate_is_ignored")]
    new = [t("tests.bot.callbacks.test_receiver", "test_duplicate_is_ignored")]
    pairs, only_old, only_new = match(old, new)
    assert [(p.old, p.new, p.rule) for p in pairs] == [(old[0], new[0], "name")]
    assert only_old == only_new == []


def test_a_repeated_name_matches_by_the_module_words_in_common() -> None:
    # The old unit file and the old end-to-end file both had test_expired; the end-to-end one moved
    # under e2e/, the unit one under bot/workflow/. Each goes where its words go, whatever the order.
    old = [t("tests.test_preflight", "test_expired", 1), t("tests.test_e2e_preflight", "test_expired", 2)]
    new = [t("tests.e2e.test_preflight", "test_expired", 3), t("tests.bot.workflow.test_preflight", "test_expired", 4)]
    pairs, only_old, only_new = match(old, new)
    assert sorted((p.old.seconds, p.new.seconds, p.rule) for p in pairs) == [(1, 4, "path"), (2, 3, "path")]
    assert only_old == only_new == []


def test_a_repeated_name_with_nothing_in_common_stays_unmatched() -> None:
    old = [t("tests.test_guard", "test_x"), t("tests.test_cli", "test_x")]
    new = [t("tests.bot.test_settings", "test_x")]
    pairs, only_old, only_new = match(old, new)
    assert pairs == []
    assert only_old == old and only_new == new


def test_new_and_removed_tests_are_listed_apart() -> None:
    pairs, only_old, only_new = match([t("tests.test_a", "test_gone")], [t("tests.a.test_a", "test_added")])
    assert pairs == []
    assert [x.name for x in only_old] == ["test_gone"] and [x.name for x in only_new] == ["test_added"]


def test_slower_needs_both_the_ratio_and_the_floor() -> None:
    pairs, _, _ = match(
        [
            t("tests.test_a", "test_ratio_only", 0.001),  # ×3 but 2 ms: noise
            t("tests.test_a", "test_floor_only", 1.0),  # +50 ms but +5 %
            t("tests.test_a", "test_both", 0.2),  # +100 ms, ×1.5
            t("tests.test_a", "test_worse", 0.2),  # +300 ms, ×2.5
            t("tests.test_a", "test_faster", 0.5),
        ],
        [
            t("tests.a.test_a", "test_ratio_only", 0.003),
            t("tests.a.test_a", "test_floor_only", 1.05),
            t("tests.a.test_a", "test_both", 0.3),
            t("tests.a.test_a", "test_worse", 0.5),
            t("tests.a.test_a", "test_faster", 0.1),
        ],
    )
    assert [p.new.name for p in slower(pairs, ratio=1.10, floor=0.020)] == ["test_worse", "test_both"]


def test_a_skipped_test_is_never_counted_slower() -> None:
    old = [Timing("tests.test_a", "", "test_x", 0.0, skipped=True)]
    new = [t("tests.a.test_a", "test_x", 1.0)]
    pairs, _, _ = match(old, new)
    assert slower(pairs, ratio=1.10, floor=0.020) == []


def test_main_prints_counts_totals_and_the_slower_list(tmp_path: Path, capsys) -> None:
    (tmp_path / "old.xml").write_text(junit(("tests.test_a", "test_x", 0.1), ("tests.test_a", "test_gone", 0.1)))
    (tmp_path / "new.xml").write_text(junit(("tests.a.test_a", "test_x", 0.5), ("tests.a.test_a", "test_new", 0.1)))
    assert main(["--old", str(tmp_path / "old.xml"), "--new", str(tmp_path / "new.xml")]) == 0
    out = capsys.readouterr().out
    assert "matched: 1 (1 by name, 0 by name and module path), 1 run on both sides; only old: 1; only new: 1" in out
    assert "slower by > 10 % and > 20 ms: 1" in out
    assert "tests/a/test_a.py::test_x  (was tests/test_a.py::test_x)" in out


def test_the_plugin_records_each_tests_cpu_time_in_the_junit_file(tmp_path: Path) -> None:
    (tmp_path / "test_spin.py").write_text(
        "import time\n\n"
        "def test_spin():\n"
        "    end = time.process_time() + 0.05\n"
        "    while time.process_time() < end:\n"
        "        pass\n\n"
        "def test_idle():\n"
        "    time.sleep(0.05)\n"
    )
    bench = Path(__file__).resolve().parents[2] / "bench"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "suite_times", "-p", "no:cacheprovider", "-q",
         "--junitxml=out.xml", "-c", "/dev/null", "--rootdir", str(tmp_path), "test_spin.py"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(bench)}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    tests, _ = read_junit((tmp_path / "out.xml").read_text())
    cpu = {t.name: t.cpu for t in tests}
    assert cpu["test_spin"] is not None and cpu["test_spin"] >= 0.05
    # Asleep, the test spent its wall time but little CPU: what tells waiting from working.
    assert cpu["test_idle"] is not None and cpu["test_idle"] < 0.04
    assert {t.name: t.seconds for t in tests}["test_idle"] >= 0.05
