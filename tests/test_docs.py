"""Docs kept honest (as sqlite-utils' own tests/test_docs.py does): every `/fota` subcommand in the
code is in the manifest's usage hint, `/fota help` and the README, and the other way round;
every CLI subcommand is in the README and `--help`; every environment variable the code reads
is in the README's configuration table and nothing else is; the manifest asks for the scopes
the features use and no more."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot import cli
from bot.check import REQUIRED_BOT_SCOPES
from bot.settings import ENVIRONMENT_VARIABLES, VARIABLES
from commands.help import HELP_TEXT, USAGE_HINT
from commands.parse import LIST_SCOPES, SUBCOMMANDS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
MANIFEST: dict[str, Any] = yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8"))

# Every bot scope the manifest asks for, and what needs it. A new feature that needs a scope adds
# it here and in manifest.yml; a scope nothing needs any more goes from both.
NEEDED_SCOPES = {
    "commands": "/fota",
    "chat:write": "approval cards, thread replies, direct messages (chat.postMessage to a user id)",
    "files:read": "device lists uploaded in the schedule modal (file_input)",
    "files:write": "the per-device CSV in the thread and in /fota devices (files_upload_v2)",
    "im:write": "conversations.open: the direct message /fota devices shares its CSV into",
    "usergroups:read": "FOTA_APPROVERS / FOTA_REQUESTERS naming user groups (usergroups.users.list)",
    "users:read": "fota-bot check: every FOTA_APPROVERS / FOTA_REQUESTERS user exists (users.info)",
    "channels:read": "fota-bot check: the approval channel exists and the bot is in it (conversations.info)",
    "groups:read": "fota-bot check: the same for a private approval channel",
}


def section(markdown: str, heading: str) -> str:
    """The text of one `## heading` section of a Markdown document."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.MULTILINE | re.DOTALL)
    assert match, f"README has no section '## {heading}'"
    return match.group(1)


def table_first_cells(markdown: str) -> list[str]:
    """The first cell of every body row of the Markdown tables in `markdown`."""
    cells = []
    for line in markdown.splitlines():
        if line.startswith("|") and not line.startswith("| ---") and not re.match(r"^\| (command|variable) \|", line):
            cells.append(line.split("|")[1].strip())
    return cells


def the_command() -> dict[str, Any]:
    [command] = MANIFEST["features"]["slash_commands"]
    return command


def usage_words(hint: str) -> list[str]:
    # "schedule key=value … | status ID | list [active|all|mine] | …": alternatives are
    # separated by " | "; the bars inside [active|all|mine] have no spaces around them.
    return [part.split()[0] for part in hint.split(" | ")]


# --- /fota subcommands -----------------------------------------------------------------------------


def test_the_manifest_usage_hint_is_the_one_in_the_code() -> None:
    assert the_command()["command"] == "/fota"
    assert the_command()["usage_hint"] == USAGE_HINT
    assert len(USAGE_HINT) <= 1000  # Slack's limit for a usage hint


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_every_subcommand_is_in_the_usage_hint_help_and_readme(subcommand: str) -> None:
    assert subcommand in usage_words(the_command()["usage_hint"])
    assert f"`/fota {subcommand}" in HELP_TEXT
    commands_table = table_first_cells(section(README, "The `/fota` command"))
    assert any(cell.startswith(f"`/fota {subcommand}") for cell in commands_table), subcommand


def test_every_subcommand_word_in_the_docs_exists_in_the_code() -> None:
    assert sorted(usage_words(the_command()["usage_hint"])) == sorted(SUBCOMMANDS)
    in_help = set(re.findall(r"`/fota ([a-z]+)", HELP_TEXT))
    assert in_help <= set(SUBCOMMANDS), in_help - set(SUBCOMMANDS)
    commands_table = table_first_cells(section(README, "The `/fota` command"))
    in_readme = {m.group(1) for cell in commands_table if (m := re.match(r"`/fota ([a-z]+)", cell))}
    assert in_readme == set(SUBCOMMANDS)


def test_the_list_scopes_are_documented_as_the_code_reads_them() -> None:
    scopes = "[" + "|".join(LIST_SCOPES) + "]"
    assert f"list {scopes}" in the_command()["usage_hint"]
    assert f"/fota list {scopes}" in HELP_TEXT
    assert f"/fota list {scopes.replace('|', chr(92) + '|')}" in README  # escaped in a table cell


# --- the fota-bot command line ---------------------------------------------------------------------


@pytest.mark.parametrize("subcommand", cli.SUBCOMMANDS)
def test_every_cli_subcommand_is_in_the_readme(subcommand: str) -> None:
    table = table_first_cells(section(README, "Command line"))
    assert any(cell.startswith(f"`fota-bot {subcommand}") for cell in table), subcommand


def test_every_cli_subcommand_in_the_readme_exists() -> None:
    table = table_first_cells(section(README, "Command line"))
    named = {m.group(1) for cell in table if (m := re.match(r"`fota-bot ([a-z-]+)", cell))}
    assert named == set(cli.SUBCOMMANDS)


def test_python_m_bot_help_lists_the_cli_subcommands() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    for subcommand in cli.SUBCOMMANDS:
        assert re.search(rf"^\s+{re.escape(subcommand)}\b", result.stdout, re.MULTILINE), subcommand


# --- configuration -----------------------------------------------------------------------------------


def test_the_readme_configuration_table_is_exactly_the_environment_the_code_reads() -> None:
    table = table_first_cells(section(README, "Configuration"))
    documented = [name for cell in table for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)]
    assert len(documented) == len(set(documented)), "a variable is listed twice"
    assert set(documented) == set(ENVIRONMENT_VARIABLES)


def test_each_readme_configuration_row_is_the_settings_table_row() -> None:
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in section(README, "Configuration").splitlines()
        if line.startswith("| `")
    ]
    expected = [[f"`{v.name}`", v.meaning, v.shown_default] for v in VARIABLES]
    assert rows == expected


# --- the Slack app manifest --------------------------------------------------------------------------


def test_the_manifest_routes_everything_to_slack_events() -> None:
    settings = MANIFEST["settings"]
    urls = [the_command()["url"], settings["event_subscriptions"]["request_url"], settings["interactivity"]["request_url"]]
    assert all(url.endswith("/slack/events") for url in urls), urls
    assert settings["interactivity"]["is_enabled"] is True
    assert the_command()["should_escape"] is False  # commands.parse undoes Slack's &amp; itself


def test_the_manifest_has_the_app_home_and_its_event() -> None:
    assert MANIFEST["features"]["app_home"]["home_tab_enabled"] is True
    assert MANIFEST["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]


def test_the_manifest_asks_for_the_scopes_the_features_need_and_no_more() -> None:
    scopes = MANIFEST["oauth_config"]["scopes"]["bot"]
    assert len(scopes) == len(set(scopes))
    assert set(scopes) == set(NEEDED_SCOPES)
    # fota-bot check compares what Slack granted with this list (the manifest is not installed).
    assert sorted(REQUIRED_BOT_SCOPES) == sorted(scopes)
    assert "user" not in MANIFEST["oauth_config"]["scopes"]  # no user token, no user scopes
