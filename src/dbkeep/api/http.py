"""The HTTP edge of the management API (aiohttp).

Accepts ``POST /`` with a form body and ``GET /?Action=…`` with a query string, bounds the body
size (``/metrics`` and the web console under ``/console`` are routes of their own), hands the raw request to the dispatcher (the SigV4 verifier needs the exact bytes and
headers) and writes the XML answer. No parsing of AWS semantics happens here.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from urllib.parse import parse_qsl

from aiohttp import web

from dbkeep.api import query
from dbkeep.api.dispatch import Dispatcher
from dbkeep.errors import ApiError
from dbkeep.identity.sigv4 import HttpRequest
from dbkeep.metrics import CONTENT_TYPE, Metrics

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
    def __init__(self, dispatcher: Dispatcher, host: str, port: int, *, metrics: Metrics | None = None,
                 metrics_token: str | None = None, console: web.Application | None = None) -> None:
        self._dispatcher = dispatcher
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._metrics = metrics
        self._metrics_token = metrics_token  # None: loopback scrapers need no credentials, others are refused
        self._console = console  # the web console's sub-application (dbkeep/console), mounted at /console
        self.port: int | None = None

    async def _metrics_page(self, request: web.Request) -> web.Response:
        """Prometheus text format. With a token, every scraper sends ``Authorization: Bearer
        TOKEN``; without one, only loopback addresses may scrape."""
        assert self._metrics is not None
        if self._metrics_token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self._metrics_token}".encode()):
                return web.Response(status=401, text="a bearer token is required\n", headers={"WWW-Authenticate": "Bearer"})
        else:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            if not peer or not ipaddress.ip_address(peer[0]).is_loopback:
                return web.Response(status=403, text="metrics are served to loopback addresses only "
                                                     "(start dbkeep with --metrics-token-file to allow others)\n")
        return web.Response(body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    @staticmethod
    async def _to_console(request: web.Request) -> web.Response:
        raise web.HTTPMovedPermanently("/console/")

    async def _handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        response, service, action = await self._answer(request)
        if self._metrics is not None:
            self._metrics.api_call(service, action, response.status, started)
        return response

    async def _answer(self, request: web.Request) -> tuple[web.Response, str, str]:
        """The response, and the service and action it answered ("unknown" if none)."""
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
        answer = web.Response(status=response.status, text=response.body, content_type="text/xml",
                              headers={"x-amzn-RequestId": response.request_id})
        return answer, response.service, response.action

    @staticmethod
    def _early_error(exc: ApiError) -> tuple[web.Response, str, str]:
        answer = web.Response(status=exc.status, text=query.serialize_error(None, exc, "0"), content_type="text/xml")
        return answer, "unknown", "unknown"

    async def start(self) -> int:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("POST", "/", self._handle)
        app.router.add_route("GET", "/", self._handle)
        if self._metrics is not None:
            app.router.add_route("GET", "/metrics", self._metrics_page)
        if self._console is not None:
            app.router.add_route("GET", "/console", self._to_console)  # before the sub-application, which would take it
            app.add_subapp("/console", self._console)
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
