"""Configuration, read once from the environment (and `.env` when present).

The rest of the code never reads `os.environ`: it is handed a `Settings`.
Every bad value is reported at once, each with the variable, the value and
what was expected.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from bot.secrets import Secret

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_THINGSPACE_URL = "https://thingspace.verizon.com"
SANDBOX_ACCOUNT = "0000000000-00001"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_PRINCIPAL = re.compile(r"^[UWS][A-Z0-9]{2,}$")
_ACCOUNT = re.compile(r"^[0-9][0-9-]*$")


class SettingsError(Exception):
    """Every configuration problem, one per line; the message is what the operator reads."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "fota-bot cannot start; fix the configuration:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


# What documentation and templates put where a value goes: README's `xoxb-…`, `<token>`,
# `your-signing-secret`, `changeme`.
_PLACEHOLDER_WORDS = {"changeme", "change-me", "change_me", "todo", "tbd", "placeholder", "secret", "token", "xxx"}
_PLACEHOLDER_PREFIX = re.compile(r"^(?:your|my|insert|enter|put)[-_ ]", re.IGNORECASE)


def placeholder(value: str) -> str | None:
    """Why `value` looks like a placeholder pasted from an example, or None."""
    if "…" in value or "..." in value:
        return "looks like a placeholder (it contains an ellipsis)"
    if re.search(r"<[^<>]+>", value) or (value.startswith("{") and value.endswith("}")):
        return "looks like a placeholder (a name in brackets)"
    if value.lower() in _PLACEHOLDER_WORDS or _PLACEHOLDER_PREFIX.match(value):
        return "looks like a placeholder, not a real value"
    if re.fullmatch(r"(?i)x(?:oxb|app)-x*", value):
        return "looks like a placeholder (only the token's prefix)"
    return None


def parse_duration(text: str) -> dt.timedelta:
    m = _DURATION.match(text)
    if not m or int(m.group(1)) == 0:
        raise ValueError(text)
    return dt.timedelta(**{_DURATION_UNITS[m.group(2)]: int(m.group(1))})


@dataclass(frozen=True)
class Settings:
    slack_bot_token: Secret | None = None
    slack_signing_secret: Secret | None = None
    slack_app_token: Secret | None = None
    slack_api_url: str = DEFAULT_SLACK_API_URL
    approval_channel: str | None = None
    approvers: frozenset[str] = frozenset()
    requesters: frozenset[str] = frozenset()
    required_approvals: int = 1
    approval_ttl: dt.timedelta = dt.timedelta(hours=24)
    db_path: Path = Path("fota.db")
    host: str = "0.0.0.0"
    port: int = 3000
    public_url: str | None = None
    callback_token: Secret | None = None
    callback_allowed_ips: tuple[IPNetwork, ...] = ()
    trusted_proxies: tuple[IPNetwork, ...] = ()
    update_interval: float = 5.0
    max_devices: int = 100_000
    log_level: str = "INFO"
    log_format: str = "text"
    thingspace_url: str = DEFAULT_THINGSPACE_URL
    thingspace_client_id: Secret | None = None
    thingspace_client_secret: Secret | None = None
    thingspace_username: Secret | None = None
    thingspace_password: Secret | None = None
    thingspace_account: str = SANDBOX_ACCOUNT
    # Filled only by `load` when a value was missing for `serve`; kept for `check`.
    missing_for_serve: tuple[str, ...] = field(default=(), compare=False)

    @property
    def sandbox_mode(self) -> bool:
        """No ThingSpace credentials at all: talk to the built-in simulator."""
        return not any(
            (
                self.thingspace_client_id,
                self.thingspace_client_secret,
                self.thingspace_username,
                self.thingspace_password,
            )
        )

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    def callback_url(self, token: str) -> str | None:
        if not self.public_url:
            return None
        return f"{self.public_url.rstrip('/')}/thingspace/callbacks/{token}"


_KNOWN = (
    "SLACK_BOT_TOKEN SLACK_SIGNING_SECRET SLACK_APP_TOKEN SLACK_API_URL FOTA_APPROVAL_CHANNEL "
    "FOTA_APPROVERS FOTA_REQUESTERS FOTA_REQUIRED_APPROVALS FOTA_APPROVAL_TTL FOTA_DB FOTA_HOST "
    "FOTA_PORT FOTA_PUBLIC_URL FOTA_CALLBACK_TOKEN FOTA_CALLBACK_ALLOWED_IPS FOTA_TRUSTED_PROXIES "
    "FOTA_UPDATE_INTERVAL FOTA_MAX_DEVICES FOTA_LOG_LEVEL FOTA_LOG_FORMAT THINGSPACE_URL THINGSPACE_CLIENT_ID "
    "THINGSPACE_CLIENT_SECRET THINGSPACE_USERNAME THINGSPACE_PASSWORD THINGSPACE_ACCOUNT"
).split()
ENVIRONMENT_VARIABLES: tuple[str, ...] = tuple(_KNOWN)

_SECRET_VARIABLES = {
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_APP_TOKEN",
    "FOTA_CALLBACK_TOKEN",
    "THINGSPACE_CLIENT_SECRET",
    "THINGSPACE_PASSWORD",
}


def load(env: Mapping[str, str], *, for_serve: bool = True) -> Settings:
    """Settings from `env`, or SettingsError listing every problem.

    With `for_serve`, the values `serve` cannot run without are required too.
    """
    problems: list[str] = []
    placeholders: set[str] = set()

    def raw(name: str) -> str | None:
        value = env.get(name)
        if value is None or value.strip() == "":
            return None
        if name not in placeholders and (why := placeholder(value.strip())):
            placeholders.add(name)
            problems.append(f"{name}={shown(name, value.strip())}: {why}; put the real value")
        return value.strip()

    def shown(name: str, value: str) -> str:
        return "(hidden)" if name in _SECRET_VARIABLES else value

    def secret(name: str) -> Secret | None:
        value = raw(name)
        return Secret(value) if value is not None else None

    def url(name: str, default: str | None) -> str | None:
        value = raw(name)
        if value is None:
            return default
        if not re.match(r"^https?://[^\s/]+", value):
            problems.append(f"{name}={value}: expected an http:// or https:// URL")
            return default
        return value

    def integer(name: str, default: int, low: int, high: int) -> int:
        value = raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            problems.append(f"{name}={value}: expected a whole number from {low} to {high}")
            return default
        return number

    def principals(name: str) -> frozenset[str]:
        value = raw(name)
        if value is None:
            return frozenset()
        items = [item.strip() for item in value.split(",") if item.strip()]
        bad = [item for item in items if not _PRINCIPAL.match(item)]
        if bad or not items:
            problems.append(
                f"{name}={value}: expected comma-separated Slack user IDs (U…, W…) "
                f"or user-group IDs (S…); not valid: {', '.join(bad) or '(empty)'}"
            )
            return frozenset()
        return frozenset(items)

    def networks(name: str) -> tuple[IPNetwork, ...]:
        value = raw(name)
        if value is None:
            return ()
        result: list[IPNetwork] = []
        for item in (i.strip() for i in value.split(",")):
            if not item:
                continue
            try:
                result.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                problems.append(
                    f"{name}={value}: '{item}' is not an IP address or network such as 3.87.163.45 or 10.0.0.0/8"
                )
        return tuple(result)

    slack_bot_token = secret("SLACK_BOT_TOKEN")
    if slack_bot_token and not slack_bot_token.reveal().startswith("xoxb-"):
        problems.append("SLACK_BOT_TOKEN=(hidden): expected a bot token starting with xoxb-")
    slack_app_token = secret("SLACK_APP_TOKEN")
    if slack_app_token and not slack_app_token.reveal().startswith("xapp-"):
        problems.append("SLACK_APP_TOKEN=(hidden): expected an app-level token starting with xapp-")

    approval_channel = raw("FOTA_APPROVAL_CHANNEL")
    if approval_channel and not re.match(r"^[CG][A-Z0-9]{2,}$", approval_channel):
        problems.append(
            f"FOTA_APPROVAL_CHANNEL={approval_channel}: expected a channel ID such as C0123ABCD "
            "(not a #name)"
        )

    ttl = dt.timedelta(hours=24)
    if (ttl_raw := raw("FOTA_APPROVAL_TTL")) is not None:
        try:
            ttl = parse_duration(ttl_raw)
        except ValueError:
            problems.append(f"FOTA_APPROVAL_TTL={ttl_raw}: expected a duration such as 30m, 24h or 2d")

    interval = 5.0
    if (interval_raw := raw("FOTA_UPDATE_INTERVAL")) is not None:
        try:
            interval = float(interval_raw)
            if not 0 < interval <= 3600:
                raise ValueError
        except ValueError:
            problems.append(
                f"FOTA_UPDATE_INTERVAL={interval_raw}: expected a number of seconds above 0, at most 3600"
            )
            interval = 5.0

    log_level = (raw("FOTA_LOG_LEVEL") or "INFO").upper()
    if log_level not in LOG_LEVELS:
        problems.append(f"FOTA_LOG_LEVEL={raw('FOTA_LOG_LEVEL')}: expected one of {', '.join(LOG_LEVELS)}")
        log_level = "INFO"
    log_format = (raw("FOTA_LOG_FORMAT") or "text").lower()
    if log_format not in LOG_FORMATS:
        problems.append(f"FOTA_LOG_FORMAT={raw('FOTA_LOG_FORMAT')}: expected text or json")
        log_format = "text"

    callback_token = secret("FOTA_CALLBACK_TOKEN")
    if callback_token and not re.match(r"^[A-Za-z0-9_-]{16,128}$", callback_token.reveal()):
        problems.append(
            "FOTA_CALLBACK_TOKEN=(hidden): expected 16 to 128 letters, digits, '-' or '_' "
            "(it becomes a URL path segment)"
        )

    ts_values = {
        name: secret(name)
        for name in (
            "THINGSPACE_CLIENT_ID",
            "THINGSPACE_CLIENT_SECRET",
            "THINGSPACE_USERNAME",
            "THINGSPACE_PASSWORD",
        )
    }
    given = [name for name, value in ts_values.items() if value]
    # Half a set of credentials must never silently fall back to the sandbox.
    if given and len(given) < len(ts_values):
        missing = [name for name in ts_values if name not in given]
        problems.append(
            f"{', '.join(missing)}: not set, but {', '.join(given)} is; set all four ThingSpace "
            "credentials for live mode, or none for sandbox mode"
        )
    sandbox = not given
    account = raw("THINGSPACE_ACCOUNT")
    if account is not None and not _ACCOUNT.match(account):
        problems.append(
            f"THINGSPACE_ACCOUNT={account}: expected an account name of digits and dashes such as 0642233522-00001"
        )
    if account is None:
        if sandbox:
            account = SANDBOX_ACCOUNT
        else:
            problems.append("THINGSPACE_ACCOUNT: required with ThingSpace credentials (live mode)")
            account = ""

    missing_for_serve = tuple(
        name
        for name, value in (
            ("SLACK_BOT_TOKEN", slack_bot_token),
            ("SLACK_SIGNING_SECRET", secret("SLACK_SIGNING_SECRET")),
            ("FOTA_APPROVAL_CHANNEL", approval_channel),
        )
        if not value
    )
    if for_serve:
        for name in missing_for_serve:
            problems.append(f"{name}: required to serve, but not set")

    settings = Settings(
        slack_bot_token=slack_bot_token,
        slack_signing_secret=secret("SLACK_SIGNING_SECRET"),
        slack_app_token=slack_app_token,
        slack_api_url=url("SLACK_API_URL", DEFAULT_SLACK_API_URL) or DEFAULT_SLACK_API_URL,
        approval_channel=approval_channel,
        approvers=principals("FOTA_APPROVERS"),
        requesters=principals("FOTA_REQUESTERS"),
        required_approvals=integer("FOTA_REQUIRED_APPROVALS", 1, 1, 10),
        approval_ttl=ttl,
        db_path=Path(raw("FOTA_DB") or "fota.db"),
        host=raw("FOTA_HOST") or "0.0.0.0",
        port=integer("FOTA_PORT", 3000, 1, 65535),
        public_url=url("FOTA_PUBLIC_URL", None),
        callback_token=callback_token,
        callback_allowed_ips=networks("FOTA_CALLBACK_ALLOWED_IPS"),
        trusted_proxies=networks("FOTA_TRUSTED_PROXIES"),
        update_interval=interval,
        max_devices=integer("FOTA_MAX_DEVICES", 100_000, 1, 1_000_000),
        log_level=log_level,
        log_format=log_format,
        thingspace_url=url("THINGSPACE_URL", DEFAULT_THINGSPACE_URL) or DEFAULT_THINGSPACE_URL,
        thingspace_client_id=ts_values["THINGSPACE_CLIENT_ID"],
        thingspace_client_secret=ts_values["THINGSPACE_CLIENT_SECRET"],
        thingspace_username=ts_values["THINGSPACE_USERNAME"],
        thingspace_password=ts_values["THINGSPACE_PASSWORD"],
        thingspace_account=account,
        missing_for_serve=missing_for_serve,
    )
    if (
        settings.approvers
        and not any(p.startswith("S") for p in settings.approvers)
        and len(settings.approvers) < settings.required_approvals
    ):
        problems.append(
            f"FOTA_REQUIRED_APPROVALS={settings.required_approvals}: more than the "
            f"{len(settings.approvers)} people listed in FOTA_APPROVERS; no request could ever be approved"
        )
    if problems:
        raise SettingsError(problems)
    return settings


def read_environment(environ: Mapping[str, str], dotenv_path: Path = Path(".env")) -> dict[str, str]:
    """The environment merged over `.env` (the real environment wins)."""
    from dotenv import dotenv_values

    merged: dict[str, str] = {}
    if dotenv_path.is_file():
        values = dotenv_values(dotenv_path)
        merged.update({k: v for k, v in values.items() if v is not None and k in ENVIRONMENT_VARIABLES})
    merged.update({k: v for k, v in environ.items() if k in ENVIRONMENT_VARIABLES})
    return merged
