"""Which tests got slower between two runs of the test suite, from pytest's JUnit XML files.

    PYTHONPATH=$PWD/bench .venv/bin/python -m pytest -p suite_times -p no:cacheprovider -q --junitxml=/tmp/new-1.xml
    .venv/bin/python -m bench.suite_times --old /tmp/old-1.xml /tmp/old-2.xml --new /tmp/new-1.xml /tmp/new-2.xml

Run each side at least twice, interleaved (old, new, old, new) so both see the same load: a
test's time is its fastest run (what the test costs; the slower runs measured the neighbours).
JUnit's time is the test's setup + call + teardown, on the wall clock. Loaded as a pytest plugin
(`-p suite_times`, this file found through PYTHONPATH, so an old checkout without it can be
measured too) it also records the CPU time the test's process spent over the same span, as a
`cpu` property: on a shared machine that moves far less with the neighbours than the wall clock,
while the wall clock is what shows a test waiting on real time. `--measure cpu` compares that.

Tests move between files and get renamed, so a test is matched by its name (the function's, with
its parametrize id): a name found once on each side is one test. Where a name repeats (the same
test name in several files), the pairs whose module paths share the most words (`tests.e2e.
test_preflight` → e2e, preflight; `tests.test_e2e_preflight` → the same) are matched first;
a pair with no word in common stays unmatched. A test counts as slower when it took more than
`--ratio` times its old time and more than `--floor` seconds longer: below a few tens of
milliseconds the difference between two runs of the same suite on a shared machine is noise.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pytest import StashKey
from pytest import hookimpl as pytest_hookimpl

_CPU_START = StashKey[float]()


# --- the pytest plugin ------------------------------------------------------------------------


def pytest_runtest_setup(item: Any) -> None:
    item.stash[_CPU_START] = time.process_time()


@pytest_hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: Any) -> Iterator[None]:
    yield
    # Before the teardown's report is made: JUnit's writer takes the properties from that report.
    if (start := item.stash.get(_CPU_START, None)) is not None:
        item.user_properties.append(("cpu", f"{time.process_time() - start:.6f}"))


# --- reading and matching ----------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    module: str  # dotted path of the test's module, e.g. tests.e2e.test_flow
    cls: str  # the class holding it, "" for a plain function
    name: str  # the function's name with its parametrize id, e.g. test_x[a-b]
    seconds: float  # setup + call + teardown; the fastest of the runs read
    skipped: bool = False
    cpu: float | None = None  # the process's CPU time over the same span (plugin runs only)

    @property
    def id(self) -> str:
        path = self.module.replace(".", "/") + ".py"
        return "::".join(part for part in (path, self.cls, self.name) if part)

    @property
    def words(self) -> frozenset[str]:
        """The module path's words, without the ones every test module carries."""
        return frozenset(w for w in re.split(r"[._/]+", self.module) if w and w not in {"tests", "test"})


@dataclass(frozen=True)
class Run:
    tests: tuple[Timing, ...]
    wall: float  # the session's time as pytest reported it (the largest of the runs read)


def split_classname(classname: str) -> tuple[str, str]:
    """JUnit's classname is the module's dotted path, then the class if there is one."""
    parts = classname.split(".")
    module = list(parts)
    cls: list[str] = []
    while module and module[-1][:1].isupper():
        cls.insert(0, module.pop())
    return ".".join(module), ".".join(cls)


def read_junit(text: str) -> tuple[list[Timing], float]:
    root = ET.fromstring(text)
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests: list[Timing] = []
    wall = 0.0
    for suite in suites:
        wall += float(suite.get("time", "0") or 0)
        for case in suite.iter("testcase"):
            module, cls = split_classname(case.get("classname", ""))
            skipped = case.find("skipped") is not None
            cpu = next((float(p.get("value", "")) for p in case.iter("property") if p.get("name") == "cpu"), None)
            tests.append(Timing(module, cls, case.get("name", ""), float(case.get("time", "0") or 0), skipped, cpu))
    return tests, wall


def fastest(runs: Iterable[tuple[list[Timing], float]]) -> Run:
    """One side's runs folded into one: each test at its fastest run; a test skipped in any run is
    skipped (its time measured nothing)."""
    best: dict[tuple[str, str, str], Timing] = {}
    wall = 0.0
    for tests, run_wall in runs:
        wall = max(wall, run_wall)
        for t in tests:
            key = (t.module, t.cls, t.name)
            seen = best.get(key)
            if seen is None:
                best[key] = t
            else:
                cpus = [c for c in (seen.cpu, t.cpu) if c is not None]
                best[key] = replace(
                    t,
                    seconds=min(seen.seconds, t.seconds),
                    skipped=seen.skipped or t.skipped,
                    cpu=min(cpus) if cpus else None,
                )
    return Run(tuple(best.values()), wall)


def cpu_times(run: Run) -> Run:
    """The run with each test's CPU time as its time."""
    missing = [t.id for t in run.tests if t.cpu is None and not t.skipped]
    if missing:
        raise ValueError(f"no CPU time for {len(missing)} tests (e.g. {missing[0]}): run pytest with -p suite_times")
    return Run(tuple(replace(t, seconds=t.cpu or 0.0) for t in run.tests), run.wall)


@dataclass(frozen=True)
class Pair:
    old: Timing
    new: Timing
    rule: str  # "name" (the name is unique on both sides) or "path" (matched by module words)

    @property
    def delta(self) -> float:
        return self.new.seconds - self.old.seconds

    @property
    def ratio(self) -> float:
        return self.new.seconds / self.old.seconds if self.old.seconds > 0 else float("inf")


def match(old: Sequence[Timing], new: Sequence[Timing]) -> tuple[list[Pair], list[Timing], list[Timing]]:
    """Pairs of the same test on both sides, then the old tests and the new tests left unpaired."""
    by_name_old: dict[str, list[Timing]] = defaultdict(list)
    by_name_new: dict[str, list[Timing]] = defaultdict(list)
    for t in old:
        by_name_old[t.name].append(t)
    for t in new:
        by_name_new[t.name].append(t)
    pairs: list[Pair] = []
    only_old: list[Timing] = []
    only_new: list[Timing] = []
    for name in sorted(by_name_old.keys() | by_name_new.keys()):
        olds, news = by_name_old.get(name, []), by_name_new.get(name, [])
        if len(olds) == 1 and len(news) == 1:
            pairs.append(Pair(olds[0], news[0], "name"))
            continue
        # Best-sharing pairs first; ties go in the order the files were listed, so a run is repeatable.
        scored = sorted(
            (
                (-_shared(o, n), i, j)
                for i, o in enumerate(olds)
                for j, n in enumerate(news)
                if _shared(o, n) > 0
            ),
        )
        used_old: set[int] = set()
        used_new: set[int] = set()
        for _, i, j in scored:
            if i in used_old or j in used_new:
                continue
            used_old.add(i)
            used_new.add(j)
            pairs.append(Pair(olds[i], news[j], "path"))
        only_old += [o for i, o in enumerate(olds) if i not in used_old]
        only_new += [n for j, n in enumerate(news) if j not in used_new]
    return pairs, only_old, only_new


def _shared(a: Timing, b: Timing) -> float:
    """How alike two tests' places are: the module words (and class) in common over all of them."""
    wa, wb = a.words | {a.cls} - {""}, b.words | {b.cls} - {""}
    union = wa | wb
    return len(wa & wb) / len(union) if union else 0.0


def slower(pairs: Iterable[Pair], ratio: float, floor: float) -> list[Pair]:
    """The pairs that got slower by more than `ratio` and by more than `floor` seconds, worst first.
    Skipped tests measured nothing and are left out."""
    found = [
        p
        for p in pairs
        if not p.old.skipped and not p.new.skipped and p.new.seconds > p.old.seconds * ratio and p.delta > floor
    ]
    return sorted(found, key=lambda p: p.delta, reverse=True)


def report(old: Run, new: Run, ratio: float, floor: float) -> str:
    pairs, only_old, only_new = match(old.tests, new.tests)
    timed = [p for p in pairs if not p.old.skipped and not p.new.skipped]
    worse = slower(pairs, ratio, floor)
    faster = [p for p in timed if p.old.seconds > p.new.seconds * ratio and -p.delta > floor]
    old_sum = sum(p.old.seconds for p in timed)
    new_sum = sum(p.new.seconds for p in timed)
    by_rule = defaultdict(int)
    for p in pairs:
        by_rule[p.rule] += 1
    lines = [
        f"old suite: {len(old.tests)} tests, {sum(t.seconds for t in old.tests):.1f} s in tests, "
        f"session {old.wall:.1f} s",
        f"new suite: {len(new.tests)} tests, {sum(t.seconds for t in new.tests):.1f} s in tests, "
        f"session {new.wall:.1f} s",
        f"matched: {len(pairs)} ({by_rule['name']} by name, {by_rule['path']} by name and module path), "
        f"{len(timed)} run on both sides; only old: {len(only_old)}; only new: {len(only_new)}",
        f"matched tests' time: old {old_sum:.2f} s, new {new_sum:.2f} s "
        f"({(new_sum / old_sum - 1) * 100 if old_sum else 0:+.1f} %)",
        f"faster by > {(ratio - 1) * 100:.0f} % and > {floor * 1000:.0f} ms: {len(faster)}",
        f"slower by > {(ratio - 1) * 100:.0f} % and > {floor * 1000:.0f} ms: {len(worse)}",
    ]
    for p in worse:
        lines.append(
            f"  {p.old.seconds * 1000:8.1f} ms → {p.new.seconds * 1000:8.1f} ms  "
            f"{p.delta * 1000:+8.1f} ms  ×{p.ratio:.2f}  {p.new.id}"
            + (f"  (was {p.old.id})" if p.old.id != p.new.id else "")
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suite_times", description=__doc__.split("\n\n")[0])
    parser.add_argument("--old", nargs="+", type=Path, required=True, help="JUnit XML files of the old suite")
    parser.add_argument("--new", nargs="+", type=Path, required=True, help="JUnit XML files of the new suite")
    parser.add_argument("--ratio", type=float, default=1.10, help="slower means more than this × (default 1.10)")
    parser.add_argument(
        "--floor", type=float, default=0.020, help="…and more than this many seconds longer (default 0.020)"
    )
    parser.add_argument(
        "--measure",
        choices=("wall", "cpu"),
        default="wall",
        help="compare the wall clock (default) or the CPU time the plugin recorded",
    )
    args = parser.parse_args(argv)
    old = fastest(read_junit(p.read_text()) for p in args.old)
    new = fastest(read_junit(p.read_text()) for p in args.new)
    if args.measure == "cpu":
        try:
            old, new = cpu_times(old), cpu_times(new)
        except ValueError as exc:
            parser.error(str(exc))
    print(report(old, new, args.ratio, args.floor))
    return 0


if __name__ == "__main__":
    sys.exit(main())
