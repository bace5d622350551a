"""Configuration, read once from the environment (and `.env` when present).

The rest of the code never reads `os.environ`: it is handed a `Settings`.
Every bad value is reported at once, each with the variable, the value and
what was expected.

`VARIABLES` is the one table of variables: name, the rule its text is read by (and
the words that rule is explained in), the default, whether it is a secret, whether
`serve` needs it, and the README's words for it. `load`, the error messages, `--help`
(`describe`), the log filter's secrets and the README check (tests/test_docs.py) all
come from it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    """What `load` read; every field but the last is one row of
    `VARIABLES` (its `attr`), plus what `check` needs."""

    slack_bot_token: Secret | None
    slack_signing_secret: Secret | None
    slack_app_token: Secret | None
    slack_api_url: str
    approval_channel: str | None
    approvers: frozenset[str]
    requesters: frozenset[str]
    required_approvals: int
    approval_ttl: dt.timedelta
    db_path: Path
    host: str
    port: int
    public_url: str | None
    callback_token: Secret | None
    callback_allowed_ips: tuple[IPNetwork, ...]
    trusted_proxies: tuple[IPNetwork, ...]
    update_interval: float
    max_devices: int
    log_level: str
    log_format: str
    thingspace_url: str
    thingspace_client_id: Secret | None
    thingspace_client_secret: Secret | None
    thingspace_username: Secret | None
    thingspace_password: Secret | None
    thingspace_account: str
    # The variables `serve` needs that were not set; kept for `check`.
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

    def secret_values(self) -> list[str]:
        """Every secret that was set, revealed: what the log filter must never let through."""
        values = (getattr(self, v.attr) for v in VARIABLES if v.secret)
        return [value.reveal() for value in values if value]


# --- the rules a value is read by ---------------------------------------------------------------


class Invalid(ValueError):
    """A value that breaks its rule, with what to say about it instead of the bare rule."""

    def __init__(self, *details: str):
        super().__init__(*details)
        self.details = details


@dataclass(frozen=True)
class Rule:
    """How a variable's text becomes a value. `text` is what the operator is told was expected
    ("expected {text}"), None when any text goes; `parse` raises ValueError (the message is then
    the rule) or `Invalid` (its details are the message)."""

    text: str | None
    parse: Callable[[str], Any]


def _any_text() -> Rule:
    return Rule(None, lambda value: value)


def _secret(prefix: str = "", what: str = "") -> Rule:
    def parse(value: str) -> Secret:
        if not value.startswith(prefix):
            raise ValueError(value)
        return Secret(value)

    return Rule(f"{what} starting with {prefix}" if prefix else None, parse)


def _matching(pattern: str, text: str, *, secret: bool = False) -> Rule:
    regex = re.compile(pattern)

    def parse(value: str) -> Any:
        if not regex.match(value):
            raise ValueError(value)
        return Secret(value) if secret else value

    return Rule(text, parse)


def _url() -> Rule:
    return _matching(r"^https?://[^\s/]+", "an http:// or https:// URL")


def _whole(low: int, high: int) -> Rule:
    def parse(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(value)
        return number

    return Rule(f"a whole number from {low} to {high}", parse)


def _seconds(high: float) -> Rule:
    def parse(value: str) -> float:
        number = float(value)
        if not 0 < number <= high:  # also refuses nan
            raise ValueError(value)
        return number

    return Rule(f"a number of seconds above 0, at most {high:g}", parse)


def _duration() -> Rule:
    return Rule("a duration such as 30m, 24h or 2d", parse_duration)


def _one_of(choices: tuple[str, ...], fold: Callable[[str], str], text: str) -> Rule:
    def parse(value: str) -> str:
        if fold(value) not in choices:
            raise ValueError(value)
        return fold(value)

    return Rule(text, parse)


_PRINCIPALS_RULE = "comma-separated Slack user IDs (U…, W…) or user-group IDs (S…)"


def _principals() -> Rule:
    def parse(value: str) -> frozenset[str]:
        items = [item.strip() for item in value.split(",") if item.strip()]
        bad = [item for item in items if not _PRINCIPAL.match(item)]
        if bad or not items:
            raise Invalid(f"expected {_PRINCIPALS_RULE}; not valid: {', '.join(bad) or '(empty)'}")
        return frozenset(items)

    return Rule(_PRINCIPALS_RULE, parse)


def _networks() -> Rule:
    def parse(value: str) -> tuple[IPNetwork, ...]:
        result: list[IPNetwork] = []
        bad: list[str] = []
        for item in (i.strip() for i in value.split(",")):
            if not item:
                continue
            try:
                result.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                bad.append(f"'{item}' is not an IP address or network such as 3.87.163.45 or 10.0.0.0/8")
        if bad:
            raise Invalid(*bad)
        return tuple(result)

    return Rule("comma-separated IP addresses or networks such as 3.87.163.45 or 10.0.0.0/8", parse)


# --- the variables ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variable:
    """One environment variable: the README's configuration table has one row per variable,
    `meaning` and `shown_default` word for word (tests/test_docs.py)."""

    name: str
    attr: str  # the `Settings` attribute it fills
    rule: Rule
    meaning: str
    # The text used when the variable is unset, read by `rule` like a given value. None: unset
    # means `empty`, and `unset` says what that means.
    default: str | None = None
    empty: Any = None
    unset: str = ""
    secret: bool = False  # wrapped in `Secret`: masked in errors, reprs and logs
    required: bool = False  # `serve` cannot run without it

    @property
    def shown_default(self) -> str:
        """The README table's default cell."""
        if self.required:
            return "required for `serve`"
        return f"`{self.default}`" if self.default is not None else self.unset

    def default_value(self) -> Any:
        return self.rule.parse(self.default) if self.default is not None else self.empty


_THINGSPACE_CREDENTIALS = (
    "THINGSPACE_CLIENT_ID",
    "THINGSPACE_CLIENT_SECRET",
    "THINGSPACE_USERNAME",
    "THINGSPACE_PASSWORD",
)

VARIABLES: tuple[Variable, ...] = (
    Variable(
        "SLACK_BOT_TOKEN", "slack_bot_token", _secret("xoxb-", "a bot token"),
        "bot token (`xoxb-…`)", secret=True, required=True,
    ),
    Variable(
        "SLACK_SIGNING_SECRET", "slack_signing_secret", _secret(),
        "signing secret of the Slack app", secret=True, required=True,
    ),
    Variable(
        "SLACK_APP_TOKEN", "slack_app_token", _secret("xapp-", "an app-level token"),
        "`xapp-` token: use Socket Mode", unset="unset: HTTP mode", secret=True,
    ),
    Variable(
        "SLACK_API_URL", "slack_api_url", _url(), "base URL of Slack's Web API",
        default=DEFAULT_SLACK_API_URL,
    ),
    Variable(
        "FOTA_APPROVAL_CHANNEL", "approval_channel",
        _matching(r"^[CG][A-Z0-9]{2,}$", "a channel ID such as C0123ABCD (not a #name)"),
        "channel ID where approval requests and rollout threads go", required=True,
    ),
    Variable(
        "FOTA_APPROVERS", "approvers", _principals(),
        "comma-separated user IDs (`U…`, `W…`) and user-group IDs (`S…`) who may approve",
        empty=frozenset(), unset="unset: anyone but the requester",
    ),
    Variable(
        "FOTA_REQUESTERS", "requesters", _principals(), "same form: who may request",
        empty=frozenset(), unset="unset: anyone",
    ),
    Variable(
        "FOTA_REQUIRED_APPROVALS", "required_approvals", _whole(1, 10), "distinct approvals needed",
        default="1",
    ),
    Variable(
        "FOTA_APPROVAL_TTL", "approval_ttl", _duration(),
        "how long a request waits for approval (`30m`, `24h`, `2d`)", default="24h",
    ),
    Variable(
        "FOTA_DB", "db_path", Rule(None, Path), "SQLite file (created with mode 0600)",
        default="fota.db",
    ),
    Variable("FOTA_HOST", "host", _any_text(), "HTTP listen address", default="0.0.0.0"),
    Variable("FOTA_PORT", "port", _whole(1, 65535), "HTTP listen port", default="3000"),
    Variable(
        "FOTA_PUBLIC_URL", "public_url", _url(),
        "public base URL; the callback URL is `{FOTA_PUBLIC_URL}/thingspace/callbacks/{token}`",
        unset="unset: no registration",
    ),
    Variable(
        "FOTA_CALLBACK_TOKEN", "callback_token",
        _matching(
            r"^[A-Za-z0-9_-]{16,128}$",
            "16 to 128 letters, digits, '-' or '_' (it becomes a URL path segment)",
            secret=True,
        ),
        "the secret path segment of the callback URL",
        unset="generated once, kept in the database", secret=True,
    ),
    Variable(
        "FOTA_CALLBACK_ALLOWED_IPS", "callback_allowed_ips", _networks(),
        "allow-list of callback source addresses/networks (Verizon publishes its addresses)",
        empty=(), unset="unset: any",
    ),
    Variable(
        "FOTA_TRUSTED_PROXIES", "trusted_proxies", _networks(),
        "proxies whose `X-Forwarded-For` is believed for the allow-list",
        empty=(), unset="unset: none",
    ),
    Variable(
        "FOTA_UPDATE_INTERVAL", "update_interval", _seconds(3600),
        "least seconds between two edits of one thread's summary", default="5",
    ),
    Variable(
        "FOTA_MAX_DEVICES", "max_devices", _whole(1, 1_000_000),
        "largest device list one request may carry", default="100000",
    ),
    Variable(
        "FOTA_LOG_LEVEL", "log_level", _one_of(LOG_LEVELS, str.upper, f"one of {', '.join(LOG_LEVELS)}"),
        f"{', '.join(f'`{level}`' for level in LOG_LEVELS)}", default="INFO",
    ),
    Variable(
        "FOTA_LOG_FORMAT", "log_format", _one_of(LOG_FORMATS, str.lower, " or ".join(LOG_FORMATS)),
        "`text`, or `json`: one object per line with `time`, `level`, `logger`, `message`, `ref`",
        default="text",
    ),
    Variable(
        "THINGSPACE_URL", "thingspace_url", _url(), "ThingSpace host root",
        default=DEFAULT_THINGSPACE_URL,
    ),
    Variable(
        "THINGSPACE_CLIENT_ID", "thingspace_client_id", _secret(), "OAuth key",
        unset="unset: sandbox mode", secret=True,
    ),
    Variable(
        "THINGSPACE_CLIENT_SECRET", "thingspace_client_secret", _secret(), "OAuth secret",
        unset="unset: sandbox mode", secret=True,
    ),
    Variable(
        "THINGSPACE_USERNAME", "thingspace_username", _secret(), "UWS user for the M2M session",
        unset="unset: sandbox mode", secret=True,
    ),
    Variable(
        "THINGSPACE_PASSWORD", "thingspace_password", _secret(), "its password",
        unset="unset: sandbox mode", secret=True,
    ),
    Variable(
        "THINGSPACE_ACCOUNT", "thingspace_account",
        _matching(r"^[0-9][0-9-]*$", "an account name of digits and dashes such as 0642233522-00001"),
        "default billing account name",
        # Which default applies depends on the mode, decided from the credentials in `load`.
        empty="", unset=f"`{SANDBOX_ACCOUNT}` in sandbox mode, else required",
    ),
)
ENVIRONMENT_VARIABLES: tuple[str, ...] = tuple(v.name for v in VARIABLES)
BY_NAME: dict[str, Variable] = {v.name: v for v in VARIABLES}


def problem(variable: Variable, value: str, detail: str) -> str:
    """What the operator reads about one bad value: the variable, the value (masked when secret)
    and what was wrong."""
    return f"{variable.name}={'(hidden)' if variable.secret else value}: {detail}"


def load(env: Mapping[str, str], *, for_serve: bool = True) -> Settings:
    """Settings from `env`, or SettingsError listing every problem.

    Each variable is read by its rule, in the table's order; then the rules between variables.
    With `for_serve`, the values `serve` cannot run without are required too.
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    given: set[str] = set()
    for variable in VARIABLES:
        values[variable.attr] = variable.default_value()
        text = (env.get(variable.name) or "").strip()
        if not text:
            continue
        given.add(variable.name)
        if why := placeholder(text):
            problems.append(problem(variable, text, f"{why}; put the real value"))
        try:
            values[variable.attr] = variable.rule.parse(text)
        except Invalid as exc:
            problems.extend(problem(variable, text, detail) for detail in exc.details)
        except ValueError:
            problems.append(problem(variable, text, f"expected {variable.rule.text}"))

    credentials = [name for name in _THINGSPACE_CREDENTIALS if name in given]
    # Half a set of credentials must never silently fall back to the sandbox.
    if credentials and len(credentials) < len(_THINGSPACE_CREDENTIALS):
        missing = [name for name in _THINGSPACE_CREDENTIALS if name not in given]
        problems.append(
            f"{', '.join(missing)}: not set, but {', '.join(credentials)} is; set all four ThingSpace "
            "credentials for live mode, or none for sandbox mode"
        )
    if "THINGSPACE_ACCOUNT" not in given:
        if credentials:
            problems.append("THINGSPACE_ACCOUNT: required with ThingSpace credentials (live mode)")
        else:
            values["thingspace_account"] = SANDBOX_ACCOUNT

    missing_for_serve = tuple(v.name for v in VARIABLES if v.required and v.name not in given)
    if for_serve:
        problems.extend(f"{name}: required to serve, but not set" for name in missing_for_serve)

    settings = Settings(**values, missing_for_serve=missing_for_serve)
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


def describe() -> str:
    """The variables as `--help` lists them: name, default, and the rule a value must follow."""
    lines = ["configuration (the environment, or .env in the working directory; see the README):"]
    for v in VARIABLES:
        rule = f" · expects {v.rule.text}" if v.rule.text else ""
        lines.append(f"  {v.name:<26} {v.shown_default.replace('`', '')}{rule}")
    return "\n".join(lines)


def read_environment(environ: Mapping[str, str], dotenv_path: Path = Path(".env")) -> dict[str, str]:
    """The environment merged over `.env` (the real environment wins)."""
    from dotenv import dotenv_values

    merged: dict[str, str] = {}
    if dotenv_path.is_file():
        values = dotenv_values(dotenv_path)
        merged.update({k: v for k, v in values.items() if v is not None and k in ENVIRONMENT_VARIABLES})
    merged.update({k: v for k, v in environ.items() if k in ENVIRONMENT_VARIABLES})
    return merged
