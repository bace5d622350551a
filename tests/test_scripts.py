"""scripts/serve, scripts/test: install once, then start with no package index.

Each test runs the real scripts in a copy of the repository's top level whose `.venv` holds
stand-ins for `python` and `fota-bot` that record how they were called, so what the scripts
install, and when, is observed without a network or a real installation. The fresh-machine
path (no `.venv` at all) is the one CI takes: `.ci/run` deletes `.venv` and runs scripts/test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    for name in ("venv.sh", "serve", "test"):
        shutil.copy(ROOT / "scripts" / name, tmp_path / "scripts" / name)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    calls = tmp_path / "calls.log"
    for tool in ("python", "fota-bot", "ruff", "mypy"):
        script = bin_dir / tool
        script.write_text(
            "#!/bin/sh\n"
            f'echo "{tool} $*" >> "{calls}"\n'
            # A failing pip, when the test asks for one: what an unreachable index looks like.
            f'if [ "{tool}" = python ] && [ "$2" = pip ] && [ -e "{tmp_path}/pip-fails" ]; then\n'
            '  echo "ERROR: No matching distribution found for setuptools>=77"; exit 1\nfi\n'
        )
        script.chmod(0o755)
    return tmp_path


def run(checkout: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", f"scripts/{script}", *args], cwd=checkout, capture_output=True, text=True, timeout=60, check=False
    )


def calls(checkout: Path) -> list[str]:
    log = checkout / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return lines


def test_serve_installs_once_then_starts_without_pip(checkout: Path) -> None:
    first = run(checkout, "serve", "--version")
    assert first.returncode == 0, first.stderr
    assert calls(checkout) == [
        "python -m pip install --quiet --disable-pip-version-check -e .",
        "fota-bot --version",
    ]
    again = run(checkout, "serve")
    assert again.returncode == 0 and again.stderr == "" and again.stdout == ""
    assert calls(checkout) == ["fota-bot serve"]  # no pip: works offline, prints nothing


def test_a_changed_pyproject_installs_again(checkout: Path) -> None:
    assert run(checkout, "serve").returncode == 0
    calls(checkout)
    with (checkout / "pyproject.toml").open("a") as f:
        f.write("\n# a new dependency\n")
    result = run(checkout, "serve")
    assert result.returncode == 0
    assert "pyproject.toml changed since .venv was installed" in result.stderr
    assert calls(checkout)[0].startswith("python -m pip install")


def test_the_test_extras_serve_serve_but_not_the_other_way_round(checkout: Path) -> None:
    assert run(checkout, "serve").returncode == 0
    calls(checkout)
    assert run(checkout, "test", "-q").returncode == 0
    assert calls(checkout) == [
        "python -m pip install --quiet --disable-pip-version-check -e .[test]",
        "ruff check .",
        "mypy ",
        "python -m pytest -q",
    ]
    assert run(checkout, "serve").returncode == 0
    assert calls(checkout) == ["fota-bot serve"]


def test_a_failed_install_says_why_and_is_tried_again_next_time(checkout: Path) -> None:
    (checkout / "pip-fails").touch()
    result = run(checkout, "serve")
    assert result.returncode == 1
    assert "No matching distribution found" in result.stderr
    assert "a first install needs the package index" in result.stderr
    assert "fota-bot serve" not in calls(checkout)
    (checkout / "pip-fails").unlink()
    assert run(checkout, "serve").returncode == 0
    assert calls(checkout)[0].startswith("python -m pip install")


def test_fota_bot_version() -> None:
    from importlib.metadata import version

    result = subprocess.run(
        [sys.executable, "-m", "bot", "--version"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"fota-bot {version('fota-bot')}"
