"""Routing of one Query-protocol call: authenticate, find the operation, parse, handle, serialise.

The service comes from the SigV4 credential scope (``…/us-east-1/iam/aws4_request``), as on AWS;
the operation from ``Action`` within that service's botocore model. Handlers are thin: they take
a :class:`CallContext` and the validated input, authorise against real resource ARNs, call the
domain layer and return the output shape as a dict. Any exception that is not an
:class:`ApiError` becomes ``InternalFailure`` with an id that is logged (never the exception's
text).
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dbkeep.api import query
from dbkeep.api.context import CallContext
from dbkeep.audit.log import AuditLog
from dbkeep.catalog.store import Catalog
from dbkeep.clock import Clock
from dbkeep.errors import ApiError
from dbkeep.identity import sigv4
from dbkeep.identity.credentials import Authenticator, Principal

log = logging.getLogger("dbkeep.api")

Handler = Callable[[CallContext, dict[str, Any]], dict[str, Any] | None | Awaitable[dict[str, Any] | None]]

# Query-protocol API versions, to pick the error envelope of a request we cannot authenticate.
VERSIONS = {"2014-10-31": "rds", "2010-05-08": "iam", "2011-06-15": "sts", "2016-11-15": "ec2"}
# IAM and STS report parameter problems as ValidationError; RDS and EC2 as InvalidParameterValue.
ERROR_STYLE = {"iam": "validation", "sts": "validation", "rds": "parameter", "ec2": "parameter"}


@dataclass(frozen=True)
class Response:
    status: int
    body: str
    request_id: str
    # for metrics: the service and action when they name an operation of this endpoint, else
    # "unknown" (a caller must not be able to mint label values)
    service: str = "unknown"
    action: str = "unknown"


class Dispatcher:
    def __init__(
        self,
        catalog: Catalog,
        audit: AuditLog,
        clock: Clock,
        authenticator: Authenticator,
        handlers: Mapping[str, Mapping[str, Handler]],
        services: Any = None,
    ) -> None:
        self._catalog = catalog
        self._audit = audit
        self._clock = clock
        self._auth = authenticator
        self._handlers = handlers
        self._services = services

    async def handle(
        self, request: sigv4.HttpRequest, params: Mapping[str, str], source_ip: str, secure: bool = False
    ) -> Response:
        request_id = str(uuid.uuid4())
        service = VERSIONS.get(params.get("Version", ""), "sts")
        action = params.get("Action", "")
        known = ("unknown", "unknown")  # (service, action) once they name an operation here
        try:
            try:
                principal, sig = self._auth.authenticate(request)
                home = getattr(getattr(self._services, "config", None), "region", None)
                if home is not None and sig.region != home:
                    # One endpoint, one region: a request signed for another names nothing
                    # here (its ARNs would be another region's), as on AWS.
                    raise ApiError("SignatureDoesNotMatch", f"Credential should be scoped to a valid region, not '{sig.region}'. ", 403)
            except ApiError as exc:
                self._audit.event(
                    "api.auth_failed",
                    verdict="deny",
                    code=exc.code,
                    source_ip=source_ip,
                    action=action or None,
                    request_id=request_id,
                )
                raise
            service = sig.service
            operation = self._operation(service, action, params)
            known = (service, action)
            result = await self._run(principal, service, action, operation, params, request_id, source_ip, secure, sig.region)
            return Response(200, query.serialize_response(operation, result, request_id), request_id, *known)
        except ApiError as exc:
            model = query.service_model(service) if service in ERROR_STYLE else None
            return Response(exc.status, query.serialize_error(model, exc, request_id), request_id, *known)
        except Exception:
            log.exception("internal error in %s %s (request %s)", service, action, request_id)
            model = query.service_model(service) if service in ERROR_STYLE else None
            error = ApiError("InternalFailure", f"An internal error occurred (request {request_id}).", 500, sender=False)
            return Response(500, query.serialize_error(model, error, request_id), request_id, *known)

    def _operation(self, service: str, action: str, params: Mapping[str, str]) -> Any:
        """The operation model ``action`` names in ``service``, or the error AWS gives."""
        if service not in self._handlers:
            raise ApiError("InvalidAction", f"The service '{service}' is not offered by this endpoint.", 400)
        model = query.service_model(service)
        if not action:
            raise ApiError("MissingAction", "Missing Action", 400)
        version = params.get("Version")
        if version is None:
            raise ApiError("MissingParameter", "The request must contain the parameter Version", 400)
        if version != model.api_version:
            raise ApiError("InvalidAction", f"Could not find operation {action} for version {version}", 400)
        handler = self._handlers[service].get(action)
        if handler is None or action not in model.operation_names:
            raise ApiError(
                "InvalidAction",
                "The action or operation requested is invalid. Verify that the action is typed correctly.",
                400,
            )
        return model.operation_model(action)

    async def _run(self, principal: Principal, service: str, action: str, operation: Any, params: Mapping[str, str],
                   request_id: str, source_ip: str, secure: bool, region: str) -> dict[str, Any] | None:
        args = query.parse_request(operation, params, ERROR_STYLE[service])
        ctx = self.context(principal, service, action, request_id=request_id, source_ip=source_ip, secure=secure, region=region)
        result = self._handlers[service][action](ctx, args)
        if inspect.isawaitable(result):
            result = await result
        return result

    def context(self, principal: Principal, service: str, action: str, *, request_id: str, source_ip: str, secure: bool,
                region: str | None = None) -> CallContext:
        return CallContext(
            catalog=self._catalog,
            audit=self._audit,
            principal=principal,
            request_id=request_id,
            source_ip=source_ip,
            secure_transport=secure,
            region=region or self.region,
            now=self._clock.now(),
            service=service,
            action=action,
            services=self._services,
        )

    @property
    def region(self) -> str:
        return getattr(getattr(self._services, "config", None), "region", None) or "us-east-1"

    @property
    def authenticator(self) -> Authenticator:
        return self._auth

    async def call(self, principal: Principal, service: str, action: str, params: Mapping[str, str], *,
                   source_ip: str, secure: bool) -> tuple[dict[str, Any], str]:
        """One operation as ``principal``, already authenticated by another door (the web
        console): the same parsing, authorisation, handler and errors as a signed request.
        ``params`` is the flat Query form (botocore's serializer makes it from a structure).
        Returns (the output structure, the request id); raises ``ApiError`` as the API answers,
        ``InternalFailure`` for anything unexpected (logged with the request id)."""
        request_id = str(uuid.uuid4())
        params = {**params, "Action": action, "Version": query.service_model(service).api_version}
        try:
            operation = self._operation(service, action, params)
            result = await self._run(principal, service, action, operation, params, request_id, source_ip, secure, self.region)
        except ApiError:
            raise
        except Exception:
            log.exception("internal error in %s %s (request %s)", service, action, request_id)
            raise ApiError("InternalFailure", f"An internal error occurred (request {request_id}).", 500, sender=False) from None
        return result or {}, request_id
