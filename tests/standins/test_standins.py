"""The stand-ins' wing (`bot/standins/`): apart from the engine, importable on its own."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import bot.standins

ROOT = Path(__file__).resolve().parents[2]

#: The composition points that must reach the stand-ins: the in-process sandbox of `serve`
#: (app.py), `fota-bot sandbox` (cli.py) and `fota-bot demo` (demo.py).
COMPOSITION_POINTS = {"bot/app.py", "bot/cli.py", "bot/demo.py"}


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_only_the_composition_points_import_the_stand_ins() -> None:
    importers = {
        str(path.relative_to(ROOT))
        for path in _sources("bot", "commands", "storage")
        if "bot/standins/" not in str(path.relative_to(ROOT))
        and any(
            name == "bot.standins" or name.startswith("bot.standins.")
            for name in _imported_modules(path)
        )
    }
    assert importers <= COMPOSITION_POINTS, sorted(importers - COMPOSITION_POINTS)


def test_the_stand_ins_import_nothing_of_the_slack_surface() -> None:
    for path in _sources("bot/standins"):
        upward = {n for n in _imported_modules(path) if n == "commands" or n.startswith("commands.")}
        assert not upward, (path.relative_to(ROOT), upward)


def test_every_stand_in_module_imports() -> None:
    names = [
        info.name
        for info in pkgutil.walk_packages(bot.standins.__path__, prefix="bot.standins.")
    ]
    assert {"bot.standins.slack.web_api", "bot.standins.thingspace.runtime"} <= set(names)
    for name in names:
        importlib.import_module(name)


def _main_dependencies() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {_normal(re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0]) for spec in project["dependencies"]}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_what_the_stand_ins_need_at_run_time_is_a_main_dependency() -> None:
    # `fota-bot demo` and `fota-bot sandbox` run from an install without the test extras
    # (scripts/check-install proves it end to end in CI; this is the quick check).
    main = _main_dependencies()
    distributions = packages_distributions()
    needed: dict[str, set[str]] = {}
    for path in _sources("bot/standins"):
        for name in _imported_modules(path):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top in {"bot", "storage", "commands"}:
                continue
            for dist in distributions.get(top, [top]):
                needed.setdefault(_normal(dist), set()).add(str(path.relative_to(ROOT)))
    missing = {dist: files for dist, files in needed.items() if dist not in main}
    assert not missing, missing
    # Not imported by name: uvicorn serves the Socket Mode WebSocket through it.
    assert "wsproto" in main


def test_the_stand_ins_reach_sqlite_only_through_storage() -> None:
    # storage/ is the only door to SQLite: the sandbox's tables are storage/sandbox_state.py's.
    for path in _sources("bot/standins"):
        source = path.read_text(encoding="utf-8")
        assert "execute(" not in source and ".db." not in source, path.relative_to(ROOT)
        assert not {"sqlite3", "sqlite_utils"} & {n.split(".")[0] for n in _imported_modules(path)}
