"""Logging set-up: one format for every record (text, or one JSON object per line for a log
shipper), library chatter kept quiet, and a last line of defence: known secret values are
masked in every record."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable, Iterable

# Slack tokens have a recognisable shape even when we do not know their value.
_SLACK_TOKEN = re.compile(r"\bx(?:oxb|oxp|oxa|oxe|app)-[A-Za-z0-9-]+")

# Control characters (CR and LF first of all) and Unicode's line and paragraph separators:
# in a message they would let text from an unsigned request start a fake log line.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

# Slack's libraries put request bodies (user text, the sender's signature) in some of their
# messages; those parts are cut, whatever the level.
_SLACK_LIBRARIES = ("slack_bolt", "slack_sdk")


def escape_controls(text: str) -> str:
    """`text` on one line: control characters written as escapes (``\\n``, ``\\x1b``)."""
    return _CONTROLS.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100 else f"\\u{ord(m.group()):04x}"), text)


def _without_body(message: str) -> str:
    at = message.lower().find("body")
    if at < 0:
        return message
    cut = message.rfind("(", 0, at)
    return message[: cut if cut >= 0 else at].rstrip() + " (request body not logged)"


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "********")
        return _SLACK_TOKEN.sub("x***-********", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if record.name.startswith(_SLACK_LIBRARIES):
            redacted = _without_body(redacted)
        redacted = escape_controls(redacted)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        return True


_REF = re.compile(r"\bFB-\d+\b")

# Libraries whose INFO lines are routine (a job ran, a request was served): at WARNING unless
# FOTA_LOG_LEVEL=DEBUG, and even then at INFO, since their DEBUG lines repeat request bodies.
LIBRARIES = ("apscheduler", "uvicorn", "slack_bolt", "slack_sdk", "aiohttp")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def ref_of(record: logging.LogRecord) -> str | None:
    """The campaign reference of a record: `extra={"ref": …}`, else the first `FB-n` it names."""
    ref = getattr(record, "ref", None)
    if isinstance(ref, str) and ref:
        return ref
    match = _REF.search(record.getMessage())
    return match.group(0) if match else None


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ref (and exc when there is one).

    Written here rather than taken from a JSON-logging library: five fixed fields are one
    json.dumps, and the record reaching it has already been through RedactSecrets."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, str | None] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "ref": ref_of(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class _DropBoltTokenNote(logging.Filter):
    """Bolt reads SLACK_BOT_TOKEN from the environment by itself and then warns that the token
    is unused because the app is given a client, built from that same token: not news."""

    def filter(self, record: logging.LogRecord) -> bool:
        from slack_bolt.logger.messages import warning_client_prioritized_and_token_skipped

        return record.getMessage() != warning_client_prioritized_and_token_skipped()


class RateLimited(logging.Filter):
    """At most one record per message template every `interval` seconds; the next one says how
    many were dropped. For what strangers can trigger at will: accept() failures when
    descriptors run out, malformed HTTP, refused connections."""

    def __init__(self, interval: float = 60.0, *, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._dropped: dict[tuple[str, str], int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        # The first line: asyncio's accept() error goes on with the socket's details.
        key = (record.name, str(record.msg).split("\n", 1)[0])
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._dropped[key] = self._dropped.get(key, 0) + 1
            return False
        if len(self._last) > 1000:  # templates are few; never let odd ones pile up
            self._last.clear()
            self._dropped.clear()
        self._last[key] = now
        dropped = self._dropped.pop(key, 0)
        if dropped:
            record.msg = f"{record.getMessage()} ({dropped} more like this in the last {self.interval:.0f} s not logged)"
            record.args = None
        return True


# Loggers that unauthenticated clients can make speak as often as they like.
RATE_LIMITED_LOGGERS = ("asyncio", "uvicorn.error", "bot.server")


def configure_logging(level: str, secrets: Iterable[str], fmt: str = "text") -> RedactSecrets:
    """Root logging to stderr; the redaction filter sits on the handler so it sees every record."""
    redactor = RedactSecrets(secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(redactor)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    chatter = logging.INFO if level == "DEBUG" else max(logging.getLevelName(level), logging.WARNING)
    for library in LIBRARIES:
        logging.getLogger(library).setLevel(chatter)
    limiter = RateLimited()
    for name in RATE_LIMITED_LOGGERS:
        limited = logging.getLogger(name)
        for old in [f for f in limited.filters if isinstance(f, RateLimited)]:
            limited.removeFilter(old)
        limited.addFilter(limiter)
    # httpx logs every request URL at INFO, and the callback URL's path is a secret.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    bolt = logging.getLogger("slack_bolt.AsyncApp")
    if not any(isinstance(f, _DropBoltTokenNote) for f in bolt.filters):
        bolt.addFilter(_DropBoltTokenNote())
    return redactor
