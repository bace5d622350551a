"""The Slack surface's listeners, one module per surface (the layout of Slack's Bolt starter
template): module-level handlers taking Bolt's arguments plus the services, each module's
`register(app, services)` binding them.

    middleware       redeliveries skipped, who acted checked, response_url trusted or dropped
    slash            /fota and its subcommands
    schedule_modal   the schedule modal's submission (and its uploaded device file)
    approvals        approve, approve eligible only, include excluded (override), reject, withdraw
    preflight        the findings' buttons: excluded devices CSV, pre-flight again
    waves            a staged rollout's buttons: promote; halt, promote anyway, resume (and their forms)
    retry            retrying failed devices: the button and the form it opens (its submission
                     comes through schedule_modal, which hands it here)
    operator         the operator commands' answers and buttons (list paging, cancel, history, firmware)
    home             the App Home tab, and answers to clicks on it
    fallback         buttons and forms nothing else claims, and errors
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from commands.listeners import (
    approvals,
    fallback,
    home,
    middleware,
    operator,
    preflight,
    retry,
    schedule_modal,
    slash,
    waves,
)
from commands.listeners.common import NOT_RECORDED, STALE_BUTTON, Services

__all__ = ["NOT_RECORDED", "STALE_BUTTON", "Services", "register_listeners"]


def register_listeners(app: AsyncApp, services: Services) -> None:
    # Order matters twice: middleware runs in the order registered (a redelivery is dropped
    # before anything looks at it), and the fallback's catch-alls come last. In between, Bolt
    # tries the listeners in this order, a matcher each per request: the commonest (/fota, the
    # approval card's buttons) first. Each matches its own command, event, action or form id,
    # none another's, so their order changes nothing else.
    middleware.register(app, services)
    slash.register(app, services)
    approvals.register(app, services)
    home.register(app, services)
    schedule_modal.register(app, services)
    preflight.register(app, services)
    waves.register(app, services)
    retry.register(app, services)
    operator.register(app, services)
    fallback.register(app, services)
