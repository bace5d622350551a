"""Logging set-up: one format for every record (text, or one JSON object per line for a log
shipper), library chatter kept quiet, and a last line of defence: known secret values are
masked in every record."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from collections.abc import Iterable

# Slack tokens have a recognisable shape even when we do not know their value.
_SLACK_TOKEN = re.compile(r"\bx(?:oxb|oxp|oxa|oxe|app)-[A-Za-z0-9-]+")


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
    # httpx logs every request URL at INFO, and the callback URL's path is a secret.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    bolt = logging.getLogger("slack_bolt.AsyncApp")
    if not any(isinstance(f, _DropBoltTokenNote) for f in bolt.filters):
        bolt.addFilter(_DropBoltTokenNote())
    return redactor
