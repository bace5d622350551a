"""A recording stand-in for Slack: the Web API (`web_api`), Socket Mode (`socket_mode`), the
records it keeps (`records`), its HTTP app (`app`) and terminal rendering (`render`). Block
Kit's rules it answers with are `bot.blockkit`, the checker the builders' tests run too.

`fota-bot demo`, the end-to-end tests and the benchmarks point the bot's `AsyncWebClient` at
it instead of https://slack.com/api/ (``SLACK_API_URL=http://127.0.0.1:PORT/api/``).
"""

from bot.standins.slack.app import create_slack_standin_app
from bot.standins.slack.records import (
    DOWNLOAD,
    RESPONSE_URL,
    UPLOAD,
    ApiAnswer,
    Ephemeral,
    ManualClock,
    Message,
    MessageVersion,
    RecordedCall,
    ResponsePost,
    StoredFile,
    TierPolicy,
    TierViolation,
    View,
    Workspace,
)
from bot.standins.slack.render import render_blocks, render_message, render_thread
from bot.standins.slack.socket_mode import SocketAck, SocketConnection, socket_envelope
from bot.standins.slack.web_api import SlackStandIn

__all__ = [
    "DOWNLOAD",
    "RESPONSE_URL",
    "UPLOAD",
    "ApiAnswer",
    "Ephemeral",
    "ManualClock",
    "Message",
    "MessageVersion",
    "RecordedCall",
    "ResponsePost",
    "SlackStandIn",
    "SocketAck",
    "SocketConnection",
    "StoredFile",
    "TierPolicy",
    "TierViolation",
    "View",
    "Workspace",
    "create_slack_standin_app",
    "render_blocks",
    "render_message",
    "render_thread",
    "socket_envelope",
]
