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
from dbkeep.identity.credentials import Authenticator

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
            operation = model.operation_model(action)
            known = (service, action)
            args = query.parse_request(operation, params, ERROR_STYLE[service])
            ctx = CallContext(
                catalog=self._catalog,
                audit=self._audit,
                principal=principal,
                request_id=request_id,
                source_ip=source_ip,
                secure_transport=secure,
                region=sig.region,
                now=self._clock.now(),
                service=service,
                action=action,
                services=self._services,
            )
            result = handler(ctx, args)
            if inspect.isawaitable(result):
                result = await result
            return Response(200, query.serialize_response(operation, result, request_id), request_id, *known)
        except ApiError as exc:
            model = query.service_model(service) if service in ERROR_STYLE else None
            return Response(exc.status, query.serialize_error(model, exc, request_id), request_id, *known)
        except Exception:
            log.exception("internal error in %s %s (request %s)", service, action, request_id)
            model = query.service_model(service) if service in ERROR_STYLE else None
            error = ApiError("InternalFailure", f"An internal error occurred (request {request_id}).", 500, sender=False)
            return Response(500, query.serialize_error(model, error, request_id), request_id, *known)
