"""Listeners and answers for the operator commands: status, list, cancel, firmware, devices, App Home.

Registered by `commands.listeners.register_listeners`; the same rules apply (thin: ack,
parse, call one service, answer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.workflow.errors import UserError

if TYPE_CHECKING:
    from commands.listeners import Respond, Services


def register_operator_listeners(app: AsyncApp, services: Services) -> None:
    """Buttons of the operator views (list paging, cancel confirmation, firmware → modal) and App Home."""


async def show_status(services: Services, ident: str, respond: Respond) -> None:
    raise UserError("status: wired with the operator commands")


async def show_list(services: Services, scope: str, user: str, before: int | None, respond: Respond) -> None:
    raise UserError("list: wired with the operator commands")


async def cancel_prompt(services: Services, ident: str, user: str, respond: Respond) -> None:
    raise UserError("cancel: wired with the operator commands")


async def show_firmware(services: Services, account: str | None, respond: Respond) -> None:
    raise UserError("firmware: wired with the operator commands")


async def show_devices(
    services: Services, ident: str, failed_only: bool, respond: Respond, client: AsyncWebClient, user: str
) -> None:
    raise UserError("devices: wired with the operator commands")
