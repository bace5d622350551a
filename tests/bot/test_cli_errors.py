"""Every expected failure of the command line is one sentence and a non-zero exit status,
never a traceback: paths, ports, a database that is missing, damaged or not a database at all,
bad flags, and placeholder values pasted from the README."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
from bot.settings import SettingsError, load
from storage.store import Store
from tests.e2e.test_flow import request_campaign
from tests.support.stack import running_stack

SLACK = {"SLACK_BOT_TOKEN": "xoxb-1-2-cli", "SLACK_SIGNING_SECRET": "cli-signing-secret", "FOTA_APPROVAL_CHANNEL": "C0CLI"}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """A clean environment in an empty folder (conftest puts the process's logging back)."""
    for name in list(os.environ):
        if name.startswith(("SLACK_", "FOTA_", "THINGSPACE_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield monkeypatch


def one_sentence(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.strip()]
    return line


async def test_export_into_a_missing_folder(env: pytest.MonkeyPatch, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    async with running_stack(tmp_path) as stack:
        await request_campaign(stack)
    for name in list(os.environ):
        if name.startswith(("SLACK_", "FOTA_", "THINGSPACE_")):
            env.delenv(name)
    env.setenv("FOTA_DB", str(tmp_path / "fota.db"))
    assert main(["campaigns", "export", "FB-9", "--out", "missing/fb9.csv"]) == 1
    assert one_sentence(capsys).startswith("No campaign `FB-9`.")  # looked up before any file is touched
    assert main(["campaigns", "export", "FB-1", "--out", "missing/fb1.csv"]) == 1
    assert one_sentence(capsys) == "Cannot write missing/fb1.csv: No such file or directory (the folder must exist)."
    assert main(["campaigns", "export", "FB-1", "--out", str(tmp_path)]) == 1
    assert one_sentence(capsys) == f"Cannot write {tmp_path}: Is a directory."


@pytest.mark.parametrize("command", [["campaigns", "list"], ["serve"], ["register-callback"]])
def test_a_file_that_is_not_a_database(command: list[str], env: pytest.MonkeyPatch, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("shopping list\n")
    for name, value in {**SLACK, "FOTA_DB": "notes.txt"}.items():
        env.setenv(name, value)
    assert main(command) == 1
    assert one_sentence(capsys) == (
        "fota-bot: FOTA_DB=notes.txt is not a SQLite database; point FOTA_DB at fota-bot's database file, "
        "or restore it from a backup"
    )
    assert (tmp_path / "notes.txt").read_text() == "shopping list\n"  # untouched
    assert not (tmp_path / "notes.txt.lock").exists()


def test_a_damaged_database(env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Store.open(tmp_path / "fota.db").close()
    data = (tmp_path / "fota.db").read_bytes()
    (tmp_path / "fota.db").write_bytes(data[:100] + b"\xff" * (len(data) - 100))  # header kept, pages gone
    env.setenv("FOTA_DB", "fota.db")
    assert main(["campaigns", "list"]) == 1
    line = one_sentence(capsys)
    assert line.startswith("fota-bot: FOTA_DB=fota.db cannot be used: ")
    assert line.endswith("; restore it from a backup")


def test_a_database_from_a_newer_version(env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store.open(tmp_path / "fota.db")
    store.db["_sqlite_migrations"].insert(
        {"migration_set": "fota-bot", "name": "m999_from_the_future", "applied_at": "2027-01-01"}
    )
    store.close()
    env.setenv("FOTA_DB", "fota.db")
    assert main(["campaigns", "list"]) == 1
    assert one_sentence(capsys) == (
        "fota-bot: FOTA_DB=fota.db was upgraded by a newer fota-bot (schema m999_from_the_future); "
        "run that version, or restore the backup taken before the upgrade"
    )


def test_serve_with_the_database_in_a_missing_folder(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in {**SLACK, "FOTA_DB": "data/fota.db"}.items():
        env.setenv(name, value)
    assert main(["serve"]) == 1
    assert one_sentence(capsys) == "fota-bot: FOTA_DB=data/fota.db: the folder data does not exist; create it (or mount the volume) first"
    assert not Path("data").exists()


def test_serve_with_fota_db_naming_a_folder(env: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in {**SLACK, "FOTA_DB": str(tmp_path)}.items():
        env.setenv(name, value)
    assert main(["serve"]) == 1
    assert one_sentence(capsys).startswith(f"fota-bot: FOTA_DB={tmp_path} is a folder")


def test_serve_on_a_port_in_use(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for name, value in {**SLACK, "FOTA_HOST": "127.0.0.1", "FOTA_PORT": str(port)}.items():
            env.setenv(name, value)
        assert main(["serve"]) == 1
        assert one_sentence(capsys) == (
            f"fota-bot: FOTA_HOST=127.0.0.1 FOTA_PORT={port}: cannot listen on 127.0.0.1:{port}: "
            "Address already in use (another program uses this port)"
        )
        assert main(["sandbox", "--port", str(port)]) == 1
        assert "cannot listen on" in one_sentence(capsys)
    assert not Path("fota.db").exists()  # nothing started, nothing created


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["sandbox", "--port", "99999"], "argument --port: 99999 is not a port number; expected 1 to 65535"),
        (["sandbox", "--port", "http"], "argument --port: http is not a port number; expected 1 to 65535"),
        (["sandbox", "--speed", "0"], "argument --speed: 0 is not a speed; expected a number above 0, at most 10000"),
        (["sandbox", "--speed", "nan"], "argument --speed: nan is not a speed; expected a number above 0, at most 10000"),
        (["demo", "--devices", "-3"], "argument --devices: -3 is not a device count; expected 1 to 1000"),
        (["campaigns", "lst"], "argument VIEW: invalid choice: 'lst'"),
        (["serve", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_flags(argv: list[str], said: str, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


@pytest.mark.parametrize(
    "value", ["xoxb-…", "xoxb-...", "…", "your-token", "<signing secret>", "changeme", "YOUR_SECRET", "xoxb-"]
)
def test_placeholders_are_refused_like_any_bad_value(value: str) -> None:
    with pytest.raises(SettingsError) as error:
        load({**SLACK, "SLACK_BOT_TOKEN": value if value.startswith("xoxb") else "xoxb-1-2-3",
              "SLACK_SIGNING_SECRET": value})
    problems = error.value.problems
    assert any(p.startswith("SLACK_SIGNING_SECRET=(hidden): looks like a placeholder") for p in problems), problems
    assert value not in str(error.value)  # a secret's value is never echoed, placeholder or not


def test_the_readme_quick_start_pasted_literally_does_not_start(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in {"SLACK_BOT_TOKEN": "xoxb-…", "SLACK_SIGNING_SECRET": "…", "FOTA_APPROVAL_CHANNEL": "C0123ABCD",
                        "FOTA_PUBLIC_URL": "https://<your-host>"}.items():
        env.setenv(name, value)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "SLACK_BOT_TOKEN=(hidden): looks like a placeholder (it contains an ellipsis); put the real value" in err
    assert "SLACK_SIGNING_SECRET=(hidden): looks like a placeholder" in err
    assert "FOTA_PUBLIC_URL=https://<your-host>: looks like a placeholder (a name in brackets)" in err
    assert not Path("fota.db").exists()


def test_real_looking_values_are_not_placeholders() -> None:
    settings = load({**SLACK, "FOTA_PUBLIC_URL": "https://fota.example.com", "FOTA_APPROVERS": "U0ANN,S0OPS"})
    assert settings.public_url == "https://fota.example.com"


def test_a_real_process_prints_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "fota.db").write_text("not a database")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "FOTA_", "THINGSPACE_"))}
    result = subprocess.run([sys.executable, "-m", "bot", "campaigns", "list"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("fota-bot: FOTA_DB=fota.db is not a SQLite database")
    assert "Traceback" not in result.stderr
