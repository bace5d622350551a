"""`fota-bot check` and `fota-bot register-callback`: plain words about what is wrong."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from bot.thingspace.client import Registration
from bot.thingspace.errors import ThingSpaceError
from storage.store import Store

if TYPE_CHECKING:
    from bot.app import Runtime

log = logging.getLogger("bot.check")


def _say(ok: bool, text: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'}  {text}")


async def run_check(settings: Settings) -> int:
    problems = 0
    for name in settings.missing_for_serve:
        _say(False, f"{name} is not set; `fota-bot serve` needs it")
        problems += 1
    if settings.slack_bot_token:
        client = AsyncWebClient(token=settings.slack_bot_token.reveal(), base_url=settings.slack_api_url)
        try:
            answer = await client.auth_test()
            _say(True, f"Slack: auth.test answered for team {answer.get('team')} as {answer.get('user')}")
        except SlackApiError as exc:
            _say(False, f"Slack refused the bot token: {exc.response.get('error')}")
            problems += 1
        except Exception as exc:  # any network failure is the message here
            _say(False, f"Slack could not be reached at {settings.slack_api_url}: {type(exc).__name__}")
            problems += 1
    if settings.slack_app_token:
        socket = AsyncWebClient(base_url=settings.slack_api_url)
        try:
            await socket.apps_connections_open(app_token=settings.slack_app_token.reveal())
            _say(True, "Slack: SLACK_APP_TOKEN opens a Socket Mode connection")
        except SlackApiError as exc:
            _say(False, f"Slack refused SLACK_APP_TOKEN for Socket Mode: {exc.response.get('error')}")
            problems += 1
        except Exception as exc:  # any network failure is the message here
            _say(False, f"Slack could not be reached for Socket Mode: {type(exc).__name__}")
            problems += 1
    if settings.sandbox_mode:
        _say(True, "ThingSpace: sandbox mode (no credentials set); the built-in simulator is used")
    else:
        from bot.app import live_thingspace_client

        client_ts = live_thingspace_client(settings, max_retries=1)
        try:
            await client_ts.check()
            _say(True, f"ThingSpace: token and M2M session obtained from {settings.thingspace_url}")
        except ThingSpaceError as exc:
            _say(False, f"ThingSpace: {exc}")
            problems += 1
        finally:
            await client_ts.aclose()
    try:
        store = Store.open(settings.db_path)
        store.close()
        _say(True, f"database {settings.db_path} opens and is migrated")
    except Exception as exc:
        _say(False, f"database {settings.db_path} cannot be opened: {exc}")
        problems += 1
    print("all good" if not problems else f"{problems} problem(s)")
    return 0 if not problems else 1


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
