"""`fota-bot check` and `fota-bot register-callback`: plain words about what is wrong."""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING, Any

import httpx
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.thingspace.client import Registration, ThingSpaceClient
from bot.thingspace.errors import ThingSpaceError
from bot.thingspace_probe import SAMPLE_IMEI, probe
from storage.store import Store, read_only_summary

if TYPE_CHECKING:
    from bot.app import Runtime

log = logging.getLogger("bot.check")


# The bot scopes manifest.yml asks for (tests/test_docs.py keeps the two lists equal).
REQUIRED_BOT_SCOPES = (
    "commands",
    "chat:write",
    "files:read",
    "files:write",
    "usergroups:read",
    "im:write",
    "users:read",
    "channels:read",
    "groups:read",
)


class _Report:
    """Prints a line per check as it is made and counts the failures."""

    def __init__(self) -> None:
        self.problems = 0

    def say(self, ok: bool | str, text: str) -> None:
        mark = ok if isinstance(ok, str) else ("ok" if ok else "FAIL")
        if mark == "FAIL":
            self.problems += 1
        print(f"{mark:<4}  {text}", flush=True)


def _header(headers: Any, name: str) -> str:
    for key, value in dict(headers or {}).items():
        if key.lower() == name:
            return str(value)
    return ""


async def run_check(
    settings: Settings,
    *,
    thingspace: bool = False,
    imei: str = SAMPLE_IMEI,
    thingspace_client: ThingSpaceClient | None = None,
) -> int:
    """A line per check, with the fix; exit status 1 when anything fails. Writes nothing:
    the database is only read (the callback token), and ThingSpace only asked (read calls)."""
    report = _Report()
    for name in settings.missing_for_serve:
        report.say(False, f"{name} is not set; `fota-bot serve` needs it")
    if settings.slack_bot_token:
        await _check_slack(settings, report)
    if settings.slack_app_token:
        socket = AsyncWebClient(base_url=settings.slack_api_url)
        try:
            await socket.apps_connections_open(app_token=settings.slack_app_token.reveal())
            report.say(True, "Slack: SLACK_APP_TOKEN opens a Socket Mode connection")
        except SlackApiError as exc:
            report.say(False, f"Slack refused SLACK_APP_TOKEN for Socket Mode: {exc.response.get('error')}; "
                       "create an app-level token with connections:write")
        except Exception as exc:  # any network failure is the message here
            report.say(False, f"Slack could not be reached for Socket Mode: {type(exc).__name__}")
    token = _check_database(settings, report)
    if settings.public_url:
        await _check_public_url(settings, report)
    if settings.sandbox_mode and thingspace_client is None:
        report.say(True, "ThingSpace: sandbox mode (no credentials set): the built-in simulator, a rehearsal"
                   + ("; --thingspace probes real ThingSpace once the credentials are set" if thingspace else ""))
    else:
        from bot.app import live_thingspace_client

        client = thingspace_client or live_thingspace_client(settings, max_retries=1)
        try:
            if thingspace:
                expected = settings.callback_url(token) if token else None
                for line in await probe(client, settings.thingspace_account, imei=imei, expected_callback=expected):
                    report.say(line.verdict, line.text)
            else:
                try:
                    await client.check()
                    report.say(True, f"ThingSpace: token and M2M session obtained from {settings.thingspace_url} "
                               "(`fota-bot check --thingspace` tries every call the bot makes)")
                except ThingSpaceError as exc:
                    report.say(False, f"ThingSpace: {exc}")
        finally:
            if thingspace_client is None:
                await client.aclose()
    print("all good" if not report.problems else f"{report.problems} problem(s)")
    return 0 if not report.problems else 1


async def _check_slack(settings: Settings, report: _Report) -> None:
    assert settings.slack_bot_token is not None
    client = AsyncWebClient(token=settings.slack_bot_token.reveal(), base_url=settings.slack_api_url)
    try:
        answer = await client.auth_test()
    except SlackApiError as exc:
        report.say(False, f"Slack refused the bot token: {exc.response.get('error')}; copy the Bot User OAuth "
                   "Token (xoxb-) from the app's OAuth & Permissions page")
        return
    except Exception as exc:  # any network failure is the message here
        report.say(False, f"Slack could not be reached at {settings.slack_api_url}: {type(exc).__name__}; "
                   "check the network (and SLACK_API_URL)")
        return
    report.say(True, f"Slack: the bot token works for team {answer.get('team')} as {answer.get('user')}")
    granted = {s.strip() for s in _header(answer.headers, "x-oauth-scopes").split(",") if s.strip()}
    missing = [scope for scope in REQUIRED_BOT_SCOPES if scope not in granted]
    if missing:
        report.say(False, f"Slack: the app lacks the scope(s) {', '.join(missing)} that manifest.yml asks for; "
                   "add them under OAuth & Permissions (or paste manifest.yml again) and reinstall the app")
    else:
        report.say(True, "Slack: every scope manifest.yml asks for is granted")
    await _check_channel(client, settings, report)
    await _check_people(client, settings, report)


async def _check_channel(client: AsyncWebClient, settings: Settings, report: _Report) -> None:
    channel = settings.approval_channel
    if not channel:
        return
    try:
        info = (await client.conversations_info(channel=channel)).get("channel") or {}
    except SlackApiError as exc:
        error = exc.response.get("error")
        if error == "missing_scope":
            report.say(False, f"Slack: cannot look at FOTA_APPROVAL_CHANNEL={channel}: the app lacks "
                       f"{exc.response.get('needed') or 'channels:read/groups:read'}; reinstall it from manifest.yml")
        else:
            report.say(False, f"Slack: FOTA_APPROVAL_CHANNEL={channel} was not found ({error}): copy the channel ID "
                       "from the channel's details; a private channel is found only once the bot is invited")
        return
    except Exception as exc:  # any network failure is the message here
        report.say(False, f"Slack could not be reached to look at the channel: {type(exc).__name__}")
        return
    name = f"#{info.get('name')}" if info.get("name") else channel
    if info.get("is_archived"):
        report.say(False, f"Slack: the approval channel {name} is archived; unarchive it or choose another")
    elif not info.get("is_member"):
        report.say(False, f"Slack: the bot is not in the approval channel {name}; invite it there "
                   "(`/invite @fota-bot`), or cards cannot be posted")
    else:
        report.say(True, f"Slack: the approval channel {name} exists and the bot is in it")


async def _check_people(client: AsyncWebClient, settings: Settings, report: _Report) -> None:
    for variable, ids in (("FOTA_APPROVERS", settings.approvers), ("FOTA_REQUESTERS", settings.requesters)):
        for principal in sorted(ids):
            try:
                if principal.startswith("S"):
                    members = (await client.usergroups_users_list(usergroup=principal)).get("users") or []
                    if members:
                        report.say(True, f"Slack: {variable} group {principal} exists, {len(members)} member(s)")
                    else:
                        report.say("warn", f"Slack: {variable} group {principal} has no members: nobody in it can act")
                    continue
                user = (await client.users_info(user=principal)).get("user") or {}
            except SlackApiError as exc:
                error = exc.response.get("error")
                if error == "missing_scope":
                    report.say(False, f"Slack: cannot look up {variable} {principal}: the app lacks "
                               f"{exc.response.get('needed') or 'a scope'}; reinstall it from manifest.yml")
                else:
                    report.say(False, f"Slack: {variable} names {principal}, which Slack does not know ({error}); "
                               "copy the member ID (U…) from the person's profile, or the group's ID (S…)")
                continue
            except Exception as exc:  # any network failure is the message here
                report.say(False, f"Slack could not be reached to look up {principal}: {type(exc).__name__}")
                continue
            name = user.get("real_name") or user.get("name") or principal
            if user.get("deleted"):
                report.say(False, f"Slack: {variable} names {principal} ({name}), whose account is deactivated")
            elif user.get("is_bot"):
                report.say("warn", f"Slack: {variable} names {principal} ({name}), a bot")
            else:
                report.say(True, f"Slack: {variable} {principal} is {name}")


def _check_database(settings: Settings, report: _Report) -> str | None:
    """FOTA_DB's state, read only (never created or migrated here); the callback token kept in it."""
    from bot.database_file import database_problem

    path = settings.db_path
    if problem := database_problem(path):
        report.say(False, problem)
        return None
    if not path.exists():
        report.say(True, f"database {path} does not exist yet; `fota-bot serve` creates it")
        return settings.callback_token.reveal() if settings.callback_token else None
    try:
        summary = read_only_summary(path)
    except sqlite3.Error as exc:
        report.say(False, f"database {path} cannot be read: {exc}; restore it from a backup")
        return None
    if newer := summary.newer_migrations:
        report.say(False, f"database {path} was upgraded by a newer fota-bot ({', '.join(newer)}); run that version")
    else:
        report.say(True, f"database {path} reads, {summary.campaigns} campaign(s)")
    if settings.callback_token:
        return settings.callback_token.reveal()
    return summary.callback_token


async def _check_public_url(settings: Settings, report: _Report) -> None:
    """ThingSpace calls `{FOTA_PUBLIC_URL}/thingspace/callbacks/…`: the address must reach a
    running fota-bot. /healthz is asked, as the callback path itself takes only POSTs."""
    assert settings.public_url
    url = f"{settings.public_url.rstrip('/')}/healthz"
    try:
        async with httpx.AsyncClient(timeout=10, follow_redirects=False) as http:
            response = await http.get(url)
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    except (httpx.HTTPError, ValueError) as exc:
        report.say(False, f"FOTA_PUBLIC_URL: {url} cannot be reached from here ({type(exc).__name__}); ThingSpace's "
                   "callbacks will not arrive: is `fota-bot serve` running, and is the address forwarded to it?")
        return
    if isinstance(body, dict) and "database" in body and "thingspace" in body:
        report.say(True, f"FOTA_PUBLIC_URL: {url} reaches a running fota-bot ({response.status_code})")
    else:
        report.say(False, f"FOTA_PUBLIC_URL: {url} answered {response.status_code}, but not as fota-bot: "
                   "the address goes somewhere else; point it (or its proxy) at `fota-bot serve`")


REGISTRATION_WORDS = {
    Registration.CREATED: "none was registered",
    Registration.UPDATED: "it replaces the URL registered before",
    Registration.REPLACED: "it replaces the URL registered before",
}


async def register_callback(settings: Settings) -> int:
    if settings.sandbox_mode:
        print("Sandbox mode: `fota-bot serve` registers its own callback with the built-in simulator.")
        return 0
    if not settings.public_url:
        print("FOTA_PUBLIC_URL is not set: ThingSpace needs a public HTTPS address to call back.")
        return 2
    store = Store.open(settings.db_path)
    token = settings.callback_token.reveal() if settings.callback_token else store.callback_token()
    store.close()
    url = settings.callback_url(token)
    assert url is not None
    from bot.app import live_thingspace_client

    client = live_thingspace_client(settings)
    try:
        done = await client.register_callback(settings.thingspace_account, url)
    except ThingSpaceError as exc:
        print(f"ThingSpace refused the callback registration: {exc}")
        return 1
    finally:
        await client.aclose()
    shown = f"{settings.public_url.rstrip('/')}/thingspace/callbacks/********"
    if done is Registration.UNCHANGED:
        print(f"Already registered: {shown} for account {settings.thingspace_account}; nothing changed.")
    else:
        print(f"Registered {shown} for account {settings.thingspace_account} "
              f"({REGISTRATION_WORDS[done]}).")
    return 0


async def warn_if_callback_differs(settings: Settings, runtime: Runtime) -> None:
    """At start-up with real credentials: say so when ThingSpace calls back somewhere else."""
    expected = settings.callback_url(runtime.callback_token)
    if expected is None:
        log.warning("FOTA_PUBLIC_URL is not set: ThingSpace callbacks cannot reach this bot; "
                    "rollouts are followed by re-reading reports only")
        return
    try:
        registered = await runtime.thingspace.get_callback(settings.thingspace_account)
    except ThingSpaceError as exc:
        log.warning("could not read the registered callback from ThingSpace: %s", exc)
        return
    url = (registered or {}).get("url")
    if url != expected:
        log.warning(
            "ThingSpace's registered callback for %s is not this bot's (%s); run `fota-bot register-callback`",
            settings.thingspace_account,
            "none registered" if not url else "a different URL",
        )
