"""The sandbox over HTTP: ThingSpace's paths and JSON shapes, served from a `Sandbox`.

Paths are those of the ThingSpace host root, so `THINGSPACE_URL` can point here:
``/api/ts/v1/oauth2/token``, ``/api/m2m/v1/session/login|logout``, ``/api/fota/v3/…``.
Sandbox-only paths help people rehearsing by hand: ``GET /sandbox`` (clock, campaigns),
``POST /sandbox/advance`` with ``{"seconds": N}`` (move the clock on and tick) and
``POST /sandbox/faults/firmware`` with ``{"firmwareName", "model", "share", "reason"}`` (that
firmware fails on that share of that model's devices from the next campaign on).

Beyond the calls the bot makes, it serves the rest of ThingSpace's v3 reference a rehearsal may
touch: ``PUT /campaigns/firmware/{acc}/{id}`` (``{"Type": "append" | "remove", "deviceList"}``)
and ``PUT …/{id}/dates``, both only before the campaign starts; ``GET /licenses/{acc}`` (also
``…/index/{lastSeenDeviceId}``), ``POST /licenses/{acc}/assign|remove``; ``GET /devices/{acc}``;
and the listener: POST creates or replaces, PUT updates an existing one, GET, DELETE.

Error answers: FOTA calls without a current bearer token and M2M session get 401
``{"errorCode": "UNAUTHORIZED", "errorMessage"}``; a malformed account path segment or a
broken rule 400 ``{"errorCode": "INVALID_PARAMETER" | "LICENSE_NOT_ASSIGNED" |
"CAMPAIGN_ALREADY_STARTED", "errorMessage"}``; an unknown campaign or listener 404
``{"errorCode": "CAMPAIGN_NOT_FOUND" | "CALLBACK_NOT_FOUND"}``; the OAuth endpoint answers
OAuth-style ``{"error": "invalid_client", "error_description"}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.standins.thingspace.runtime import Sandbox, ScheduleRecord
from bot.standins.thingspace.simulator import (
    SandboxError,
    check_account,
    invalid,
    iso,
    unauthorized,
)

FOTA = "/api/fota/v3"

Handler = Callable[[Request, str], Awaitable[Response]]


class _Faults:
    """ASGI middleware: logs each request and applies `fail_next` / `delay_next` rules."""

    def __init__(self, app: ASGIApp, sandbox: Sandbox):
        self.app = app
        self.sandbox = sandbox

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        self.sandbox.request_log.append((method, path))
        fail, delay = self.sandbox.take_faults(method, path)
        if delay is not None and delay.before:
            await asyncio.sleep(delay.seconds)
        if fail is not None:
            headers = {"Retry-After": f"{fail.retry_after:g}"} if fail.retry_after is not None else None
            response = JSONResponse(
                {"errorCode": fail.error_code, "errorMessage": fail.error_message},
                status_code=fail.status,
                headers=headers,
            )
            if delay is not None and not delay.before:
                await asyncio.sleep(delay.seconds)
            await response(scope, receive, send)
            return
        if delay is None or delay.before:
            await self.app(scope, receive, send)
            return
        seconds = delay.seconds

        async def late_send(message: Message) -> None:
            # The handler has done its work by the time it starts answering: only the answer
            # is late, as when ThingSpace created the campaign but the reply was lost.
            if message["type"] == "http.response.start":
                await asyncio.sleep(seconds)
            await send(message)

        await self.app(scope, receive, late_send)


def _error(exc: SandboxError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers or None)


async def _json_body(request: Request) -> object:
    raw = await request.body()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise invalid("Request body is not valid JSON") from None


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class _Api:
    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox

    @property
    def now(self) -> Any:
        return self.sandbox.clock.now()

    # -- auth --------------------------------------------------------------------------------

    async def token(self, request: Request) -> Response:
        def refuse(description: str) -> JSONResponse:
            return JSONResponse(
                {"error": "invalid_client", "error_description": description},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="thingspace"'},
            )

        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic" or not encoded.strip():
            return refuse("Client authentication failed: send HTTP Basic key:secret")
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return refuse("Client authentication failed: malformed Basic credentials")
        key, colon, secret = decoded.partition(":")
        if not colon or not key or not secret:
            return refuse("Client authentication failed: key and secret are both required")
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        grant = form.get("grant_type", [""])[0]
        if grant != "client_credentials":
            return JSONResponse(
                {"error": "unsupported_grant_type",
                 "error_description": "grant_type must be client_credentials"},
                status_code=400,
            )
        try:
            token, expires_in = self.sandbox.auth.issue_token(key, secret, self.now)
        except ValueError:
            return refuse("Client authentication failed: unknown key or secret")
        return JSONResponse(
            {"access_token": token, "token_type": "bearer", "expires_in": expires_in}
        )

    def _require_token(self, request: Request) -> None:
        token = _bearer(request)
        if token is None:
            raise unauthorized("Missing Authorization: Bearer token")
        if not self.sandbox.auth.token_valid(token, self.now):
            raise unauthorized("Access token is invalid or expired")

    async def login(self, request: Request) -> Response:
        self._require_token(request)
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise unauthorized("username and password are required")
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            raise unauthorized("username and password are required")
        session = self.sandbox.auth.login(username, password, self.now)
        return JSONResponse({"sessionToken": session})

    async def logout(self, request: Request) -> Response:
        self._require_token(request)
        session = request.headers.get("vz-m2m-token", "")
        body = await _json_body(request)
        if not session and isinstance(body, dict):
            session = str(body.get("sessionToken") or "")
        self.sandbox.auth.logout(session)
        return JSONResponse({"sessionToken": session})

    def fota(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a FOTA endpoint: bearer token and M2M session first, then the account's shape."""

        async def endpoint(request: Request) -> Response:
            self._require_token(request)
            session = request.headers.get("vz-m2m-token", "").strip()
            if not session:
                raise unauthorized("Missing VZ-M2M-Token header")
            if not self.sandbox.auth.session_valid(session, self.now):
                raise unauthorized("Session token is invalid or expired; log in again")
            account = check_account(request.path_params["acc"])
            try:
                return await handler(request, account)
            finally:
                # Reads move the simulation along too: whatever changed is kept.
                self.sandbox.save()

        return endpoint

    # -- FOTA ----------------------------------------------------------------------------------

    async def schedule(self, request: Request, account: str) -> Response:
        now = self.now
        body: object = None
        try:
            body = await _json_body(request)
            campaign = self.sandbox.model.schedule(account, body, now)
        except SandboxError as exc:
            self.sandbox.schedule_requests.append(
                ScheduleRecord(now, account, body, exc.status, None, exc.code)
            )
            raise
        self.sandbox.schedule_requests.append(
            ScheduleRecord(now, account, body, 200, campaign.id, None)
        )
        return JSONResponse(campaign.answer())

    async def get_campaign(self, request: Request, account: str) -> Response:
        campaign = self.sandbox.model.campaign(account, request.path_params["campaign_id"], self.now)
        return JSONResponse(campaign.info())

    async def cancel_campaign(self, request: Request, account: str) -> Response:
        self.sandbox.model.cancel(account, request.path_params["campaign_id"], self.now)
        return JSONResponse({"success": True})

    async def firmware(self, request: Request, account: str) -> Response:
        return JSONResponse(self.sandbox.model.firmware(account, request.query_params.get("protocol")))

    async def devices(self, request: Request, account: str) -> Response:
        body = await _json_body(request)
        return JSONResponse(self.sandbox.model.device_info(account, body, self.now))

    async def device_report(self, request: Request, account: str) -> Response:
        return JSONResponse(
            self.sandbox.model.device_report(
                account,
                request.path_params["campaign_id"],
                request.query_params.get("lastSeenDeviceId"),
                self.now,
            )
        )

    async def campaigns_by_status(self, request: Request, account: str) -> Response:
        return JSONResponse(
            self.sandbox.model.campaigns_by_status(
                account,
                request.query_params.get("campaignStatus"),
                request.query_params.get("lastSeenCampaignId"),
                self.now,
            )
        )

    async def subscription(self, request: Request, account: str) -> Response:
        return JSONResponse(self.sandbox.model.subscription(account))

    async def callbacks(self, request: Request, account: str) -> Response:
        model = self.sandbox.model
        if request.method == "GET":
            return JSONResponse(model.get_callback(account))
        if request.method == "DELETE":
            model.delete_callback(account)
            return JSONResponse({"success": True})
        body = await _json_body(request)
        return JSONResponse(model.set_callback(account, body, replace=request.method == "POST"))

    async def change_dates(self, request: Request, account: str) -> Response:
        campaign = self.sandbox.model.change_dates(
            account, request.path_params["campaign_id"], await _json_body(request), self.now
        )
        return JSONResponse(campaign.answer())

    async def change_devices(self, request: Request, account: str) -> Response:
        return JSONResponse(
            self.sandbox.model.change_devices(
                account, request.path_params["campaign_id"], await _json_body(request), self.now
            )
        )

    async def account_devices(self, request: Request, account: str) -> Response:
        return JSONResponse(
            self.sandbox.model.account_devices(
                account,
                request.query_params.get("lastSeenDeviceId"),
                request.query_params.get("protocol"),
                self.now,
            )
        )

    async def licences(self, request: Request, account: str) -> Response:
        last_seen = request.path_params.get("last_seen") or request.query_params.get("lastSeenDeviceId")
        return JSONResponse(self.sandbox.model.licences(account, last_seen))

    async def assign_licences(self, request: Request, account: str) -> Response:
        body = await _json_body(request)
        return JSONResponse(self.sandbox.model.assign_licences(account, body, self.now))

    async def remove_licences(self, request: Request, account: str) -> Response:
        body = await _json_body(request)
        return JSONResponse(self.sandbox.model.remove_licences(account, body, self.now))

    # -- sandbox-only ----------------------------------------------------------------------------

    async def status(self, request: Request) -> Response:
        clock = self.sandbox.clock
        return JSONResponse(
            {
                "sandbox": True,
                "defaultAccount": self.sandbox.default_account,
                "now": iso(clock.now()),
                "clock": "manual" if clock.manual else f"real x{clock.speed:g}",
                "campaigns": {c.id: c.status for c in self.sandbox.campaigns},
            }
        )

    async def advance(self, request: Request) -> Response:
        body = await _json_body(request)
        seconds = body.get("seconds") if isinstance(body, dict) else None
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
            raise invalid("seconds is required: a number of sandbox seconds, 0 or more")
        self.sandbox.clock.advance(float(seconds))
        events = await self.sandbox.tick()
        return JSONResponse({"now": iso(self.sandbox.clock.now()), "changes": len(events)})


    async def fail_firmware(self, request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise invalid("Request body must be a JSON object: firmwareName, model, share, reason")
        name, model, share = body.get("firmwareName"), body.get("model"), body.get("share")
        reason = body.get("reason")
        if not isinstance(name, str) or not isinstance(model, str):
            raise invalid("firmwareName and model are required: which firmware fails on which model")
        if not isinstance(share, int | float) or isinstance(share, bool) or not 0 <= share <= 1:
            raise invalid(f"share is required: a number from 0 to 1, not {share!r}")
        if reason is not None and (not isinstance(reason, str) or not reason.strip()):
            raise invalid("reason, when given, is the text devices fail with")
        try:
            fault = self.sandbox.fail_firmware(
                name, float(share), model=model, **({"reason": reason} if reason else {})
            )
        except ValueError as exc:
            raise invalid(str(exc)) from None
        return JSONResponse(
            {"firmwareName": fault.firmware_name, "model": fault.model, "share": fault.share,
             "reason": fault.reason}
        )


def create_sandbox_app(sandbox: Sandbox) -> Starlette:
    """The Starlette app serving `sandbox` with ThingSpace's paths and shapes."""
    api = _Api(sandbox)
    fota = api.fota

    async def sandbox_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SandboxError)
        return _error(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "ERROR")
        return JSONResponse(
            {"errorCode": code, "errorMessage": f"{request.method} {request.url.path}: {exc.detail}"},
            status_code=exc.status_code,
        )

    routes = [
        Route("/api/ts/v1/oauth2/token", api.token, methods=["POST"]),
        Route("/api/m2m/v1/session/login", api.login, methods=["POST"]),
        Route("/api/m2m/v1/session/logout", api.logout, methods=["POST"]),
        Route(f"{FOTA}/campaigns/firmware/{{acc}}", fota(api.schedule), methods=["POST"]),
        Route(f"{FOTA}/campaigns/firmware/{{acc}}/{{campaign_id}}", fota(api.change_devices), methods=["PUT"]),
        Route(
            f"{FOTA}/campaigns/firmware/{{acc}}/{{campaign_id}}/dates", fota(api.change_dates), methods=["PUT"]
        ),
        Route(f"{FOTA}/campaigns/{{acc}}/{{campaign_id}}", fota(api.get_campaign), methods=["GET"]),
        Route(f"{FOTA}/campaigns/{{acc}}/{{campaign_id}}", fota(api.cancel_campaign), methods=["DELETE"]),
        Route(f"{FOTA}/firmware/{{acc}}", fota(api.firmware), methods=["GET"]),
        Route(f"{FOTA}/devices/{{acc}}", fota(api.devices), methods=["POST"]),
        Route(f"{FOTA}/devices/{{acc}}", fota(api.account_devices), methods=["GET"]),
        Route(f"{FOTA}/licenses/{{acc}}", fota(api.licences), methods=["GET"]),
        # The reference page's form of the same call: the last IMEI seen as a path segment.
        Route(f"{FOTA}/licenses/{{acc}}/index/{{last_seen}}", fota(api.licences), methods=["GET"]),
        Route(f"{FOTA}/licenses/{{acc}}/assign", fota(api.assign_licences), methods=["POST"]),
        Route(f"{FOTA}/licenses/{{acc}}/remove", fota(api.remove_licences), methods=["POST"]),
        Route(
            f"{FOTA}/reports/{{acc}}/campaigns/{{campaign_id}}/devices",
            fota(api.device_report),
            methods=["GET"],
        ),
        Route(f"{FOTA}/reports/{{acc}}/firmware/campaigns", fota(api.campaigns_by_status), methods=["GET"]),
        Route(f"{FOTA}/subscriptions/{{acc}}", fota(api.subscription), methods=["GET"]),
        Route(f"{FOTA}/callbacks/{{acc}}", fota(api.callbacks), methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/sandbox", api.status, methods=["GET"]),
        Route("/sandbox/advance", api.advance, methods=["POST"]),
        Route("/sandbox/faults/firmware", api.fail_firmware, methods=["POST"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(_Faults, sandbox=sandbox)],
        exception_handlers={SandboxError: sandbox_error, HTTPException: http_error},
    )
