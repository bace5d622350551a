"""The Slack stand-in over HTTP: a Starlette app serving `SlackStandIn` at Slack's paths."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from bot.standins.slack.records import ApiAnswer, JSONDict, RecordedCall
from bot.standins.slack.web_api import SlackStandIn, bearer_token


async def _request_args(request: Request) -> JSONDict | None:
    """Query string, then form or JSON body, merged as Slack does; None for a bad JSON body."""
    args: JSONDict = dict(request.query_params)
    raw = await request.body()
    if not raw:
        return args
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        if not isinstance(body, dict):
            return None
        args.update(body)
    elif content_type in ("application/x-www-form-urlencoded", ""):
        args.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return args


def _json_response(answer: ApiAnswer) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status, headers=dict(answer.headers))


def create_slack_standin_app(standin: SlackStandIn) -> Starlette:
    """A Starlette app serving `standin` at Slack's paths.

    ``/api/{method}`` (GET or POST, like slack.com/api/), ``POST /upload/{file_id}``,
    ``GET /files/{file_id}/{name}``, ``POST /response/{id}`` and the Socket Mode WebSocket
    ``/socket/{ticket}`` (served only where uvicorn has a WebSocket library).
    """

    async def api(request: Request) -> Response:
        method = request.path_params["method"]
        args = await _request_args(request)
        token = bearer_token(request.headers.get("authorization"))
        if args is None:
            await standin._record(
                RecordedCall(
                    method, {}, standin.clock(), 200, {"ok": False, "error": "invalid_json"}
                )
            )
            return JSONResponse({"ok": False, "error": "invalid_json"})
        if token is None and isinstance(args.get("token"), str):
            token = args["token"]
        base_url = str(request.base_url).rstrip("/")
        return _json_response(await standin.call(method, args, token=token, base_url=base_url))

    async def upload(request: Request) -> Response:
        return await standin.receive_upload(request.path_params["file_id"], await request.body())

    async def download(request: Request) -> Response:
        return await standin.serve_download(
            request.path_params["file_id"],
            request.path_params["name"],
            request.headers.get("authorization"),
        )

    async def respond(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else {}
        except (json.JSONDecodeError, UnicodeDecodeError):
            # response_url also takes a form-encoded payload=<json>, as incoming webhooks do.
            form = dict(parse_qsl(raw.decode("utf-8", "replace")))
            try:
                body = json.loads(form.get("payload", ""))
            except json.JSONDecodeError:
                return PlainTextResponse("invalid_payload", 400)
        if not isinstance(body, dict):
            return PlainTextResponse("invalid_payload", 400)
        return _json_response(
            await standin.receive_response(request.path_params["response_id"], body)
        )

    async def socket(websocket: WebSocket) -> None:
        await standin.serve_socket(websocket, websocket.path_params["ticket"])

    return Starlette(
        routes=[
            Route("/api/{method}", api, methods=["GET", "POST"]),
            Route("/upload/{file_id}", upload, methods=["POST"]),
            Route("/files/{file_id}/{name}", download, methods=["GET"]),
            Route("/response/{response_id}", respond, methods=["POST"]),
            WebSocketRoute("/socket/{ticket}", socket),
        ]
    )
