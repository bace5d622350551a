"""The Dockerfile and the systemd units say what README 'Operating' says. The image itself was
built and run by hand (a local Debian base, host networking, 127.0.0.1); here the files are
read, so a change that drops the non-root user, the volume or the health check fails a test."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    text = DOCKERFILE.replace("\\\n", " ")
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.*)$", text, re.MULTILINE)]


def test_the_image_runs_serve_as_a_user_that_is_not_root() -> None:
    [user] = instructions("USER")
    assert user not in ("root", "0")
    assert "useradd --system" in DOCKERFILE and f"--shell /usr/sbin/nologin {user}" in DOCKERFILE
    assert instructions("ENTRYPOINT") == ['["fota-bot"]'] and instructions("CMD") == ['["serve"]']


def test_the_database_lives_on_the_volume() -> None:
    assert instructions("VOLUME") == ['["/data"]']
    [env] = [e for e in instructions("ENV") if "FOTA_DB" in e]
    assert "FOTA_DB=/data/fota.db" in env and "FOTA_PORT=3000" in env
    assert instructions("EXPOSE") == ["3000"]


def test_the_health_check_asks_healthz() -> None:
    [check] = instructions("HEALTHCHECK")
    assert "/healthz" in check and "FOTA_PORT" in check


def test_the_build_context_leaves_secrets_and_databases_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    for pattern in (".env", "*.db", "*.db-*", ".venv", ".git"):
        assert pattern in ignored


def test_the_systemd_unit_runs_serve_with_the_environment_file_and_state_directory() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((ROOT / "deploy" / "fota-bot.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"].endswith("/fota-bot serve")
    assert service["User"] == "fota" and service["EnvironmentFile"] == "/etc/fota-bot/fota-bot.env"
    assert service["Environment"] == "FOTA_DB=/var/lib/fota-bot/fota.db" and service["StateDirectory"] == "fota-bot"
    assert service["KillSignal"] == "SIGTERM" and service["RestartPreventExitStatus"] == "2"
    backup = configparser.ConfigParser(strict=False, interpolation=None)
    backup.read_string((ROOT / "deploy" / "fota-bot-backup.service").read_text())
    assert "fota-bot backup /var/lib/fota-bot/backups/" in backup["Service"]["ExecStart"]
