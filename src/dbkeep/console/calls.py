"""The console's door to the API: every read and change is a call of the API's own handler as
the signed-in principal (``Dispatcher.call``), so authorisation, validation, errors and the
API's audit events are exactly those of a signed request; :meth:`Caller.may` asks the same
policy evaluation before a button is shown.

Parameters are given as the structure boto3 takes and turned into the Query form by botocore's
own serializer, then parsed back by ``api/query.py`` like any request.
"""

from __future__ import annotations

import time
from functools import lru_cache
from typing import Any

from botocore.serialize import create_serializer

from dbkeep.api import query
from dbkeep.api.dispatch import Dispatcher
from dbkeep.audit.log import AuditLog
from dbkeep.errors import ApiError
from dbkeep.identity.credentials import Principal
from dbkeep.metrics import Metrics


@lru_cache(maxsize=None)
def _serializer(protocol: str) -> Any:
    return create_serializer(protocol, include_validation=False)


def flat_params(service: str, action: str, params: dict[str, Any]) -> dict[str, str]:
    model = query.service_model(service)
    body = _serializer(model.protocol).serialize_to_request(params, model.operation_model(action))["body"]
    return {k: str(v) for k, v in body.items() if k not in ("Action", "Version")}


class Caller:
    def __init__(self, dispatcher: Dispatcher, audit: AuditLog, principal: Principal, source_ip: str, secure: bool,
                 metrics: Metrics | None = None) -> None:
        self._dispatcher = dispatcher
        self._metrics = metrics
        self._audit = audit
        self.principal = principal
        self._source_ip = source_ip
        self._secure = secure

    async def _call(self, service: str, action: str, params: dict[str, Any]) -> tuple[dict[str, Any], str]:
        started, status = time.perf_counter(), 200
        try:
            return await self._dispatcher.call(self.principal, service, action, flat_params(service, action, params),
                                               source_ip=self._source_ip, secure=self._secure)
        except ApiError as exc:
            status = exc.status
            raise
        finally:
            if self._metrics is not None:  # API calls by service, action and status, whichever door they came by
                self._metrics.api_call(service, action, status, started)

    async def read(self, service: str, action: str, **params: Any) -> dict[str, Any]:
        result, _ = await self._call(service, action, params)
        return result

    async def try_read(self, service: str, action: str, **params: Any) -> tuple[dict[str, Any] | None, ApiError | None]:
        """A read that may be refused (a page shows what it may and says what it may not)."""
        try:
            return await self.read(service, action, **params), None
        except ApiError as exc:
            return None, exc

    async def change(self, service: str, action: str, target: str, *, cluster: str | None = None, **params: Any) -> dict[str, Any]:
        """A change, audited as ``console.change`` with its outcome (never its parameters:
        they may hold a password); ``cluster`` names the cluster it touches, for the audit
        log's cluster filter."""
        try:
            result, request_id = await self._call(service, action, params)
        except ApiError as exc:
            self._audit.event("console.change", verdict="deny", principal=self.principal.arn, source_ip=self._source_ip,
                              action=f"{service}:{action}", target=target, cluster=cluster, code=exc.code)
            raise
        self._audit.event("console.change", verdict="allow", principal=self.principal.arn, source_ip=self._source_ip,
                          action=f"{service}:{action}", target=target, cluster=cluster, request_id=request_id)
        return result

    def may(self, action: str, resource: str, extra: dict[str, Any] | None = None) -> bool:
        service = action.split(":", 1)[0]
        ctx = self._dispatcher.context(self.principal, service, action, request_id="console-check", source_ip=self._source_ip,
                                       secure=self._secure)
        return ctx.allows(action, resource, extra)

    def arn(self, service: str, kind: str, name: str) -> str:
        """The ARN the API authorises ``kind`` ``name`` on (the RDS and EC2 forms used by the buttons)."""
        acct, region = self.principal.account_id, self._dispatcher.region
        if service == "rds":
            return f"arn:aws:rds:{region}:{acct}:{kind}:{name}"
        if service == "ec2":
            return f"arn:aws:ec2:{region}:{acct}:{kind}/{name}"
        return f"arn:aws:iam::{acct}:{kind}{name}"  # IAM: name carries the path ("/alice", "/ops/alice")
