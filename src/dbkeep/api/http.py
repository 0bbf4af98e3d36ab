"""The HTTP edge of the management API (aiohttp).

Accepts ``POST /`` with a form body and ``GET /?Action=…`` with a query string, bounds the body
size, hands the raw request to the dispatcher (the SigV4 verifier needs the exact bytes and
headers) and writes the XML answer. No parsing of AWS semantics happens here.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from aiohttp import web

from dbkeep.api import query
from dbkeep.api.dispatch import Dispatcher
from dbkeep.errors import ApiError
from dbkeep.identity.sigv4 import HttpRequest

log = logging.getLogger("dbkeep.api.http")

MAX_BODY = 1024 * 1024


def _form(text: str) -> dict[str, str]:
    pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=query.MAX_PARAMS)
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise ApiError("InvalidParameterValue", f"The parameter {key} is given more than once", 400)
        params[key] = value
    return params


class ApiServer:
    def __init__(self, dispatcher: Dispatcher, host: str, port: int) -> None:
        self._dispatcher = dispatcher
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
            text = body.decode("utf-8")
            params = _form(request.query_string)
            if request.method == "POST" and body:
                ctype = request.headers.get("Content-Type", "")
                if not ctype.startswith("application/x-www-form-urlencoded"):
                    raise ApiError("InvalidParameterValue", "The request body must be application/x-www-form-urlencoded", 400)
                for key, value in _form(text).items():
                    if key in params:
                        raise ApiError("InvalidParameterValue", f"The parameter {key} is given more than once", 400)
                    params[key] = value
        except UnicodeDecodeError:
            return self._early_error(ApiError("InvalidParameterValue", "The request body is not valid UTF-8", 400))
        except ValueError:
            return self._early_error(ApiError("InvalidParameterValue", "Too many parameters", 400))
        except ApiError as exc:
            return self._early_error(exc)
        http_request = HttpRequest(
            method=request.method,
            path=request.raw_path.split("?", 1)[0],
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        peer = request.transport.get_extra_info("peername") if request.transport else None
        source_ip = peer[0] if peer else "0.0.0.0"
        response = await self._dispatcher.handle(http_request, params, source_ip, secure=request.secure)
        return web.Response(
            status=response.status,
            text=response.body,
            content_type="text/xml",
            headers={"x-amzn-RequestId": response.request_id},
        )

    @staticmethod
    def _early_error(exc: ApiError) -> web.Response:
        return web.Response(status=exc.status, text=query.serialize_error(None, exc, "0"), content_type="text/xml")

    async def start(self) -> int:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("POST", "/", self._handle)
        app.router.add_route("GET", "/", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else self._port
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
