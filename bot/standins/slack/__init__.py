"""A recording stand-in for Slack's Web API and Socket Mode server (see `web_api`)."""

from bot.standins.slack.web_api import (
    DOWNLOAD,
    RESPONSE_URL,
    UPLOAD,
    ManualClock,
    RecordedCall,
    SlackStandIn,
    TierPolicy,
    Workspace,
    block_problems,
    create_slack_standin_app,
    render_message,
    socket_envelope,
)

__all__ = [
    "DOWNLOAD",
    "RESPONSE_URL",
    "UPLOAD",
    "ManualClock",
    "RecordedCall",
    "SlackStandIn",
    "TierPolicy",
    "Workspace",
    "block_problems",
    "create_slack_standin_app",
    "render_message",
    "socket_envelope",
]
