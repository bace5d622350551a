"""Logging set-up with a last line of defence: known secret values are masked in every record."""

from __future__ import annotations

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


def configure_logging(level: str, secrets: Iterable[str]) -> RedactSecrets:
    """Root logging to stderr; the redaction filter sits on the handler so it sees every record."""
    redactor = RedactSecrets(secrets)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(redactor)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Library chatter at DEBUG would repeat request bodies; keep it at INFO at most.
    for noisy in ("slack_bolt", "slack_sdk", "apscheduler", "aiohttp"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.INFO))
    # httpx logs every request URL at INFO, and the callback URL's path is a secret.
    for chatty in ("httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    return redactor
