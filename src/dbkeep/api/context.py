"""The context of one API call: who calls, from where, and the authorisation step.

Handlers call :meth:`CallContext.authorize` with the real resource ARN of what they touch
(never ``*``); the identity policies of the principal are evaluated by the pure policy engine,
and a denial raises ``AccessDenied`` with AWS's message and is an audit event.

Rules every handler keeps (issue 15):
- **Canonical resource.** A name or ARN the caller spells is resolved to the resource it names
  here, and the action is authorised on that resource's own ARN (this account, this region,
  the stored identifier and path), never on the caller's spelling. An ARN of another account or
  region names nothing here.
- **Authorise before saying whether it exists.** The lookup that builds the ARN is silent: the
  handler authorises first (on the ARN the name would have when nothing answers to it) and
  only then reports "not found", so a denied caller gets the same AccessDenied either way.
- **Tags need tag permission.** Tags given on create are authorised twice, on the create action
  and on the service's tag action, both with ``aws:RequestTag/<key>`` and ``aws:TagKeys``
  (:func:`request_tag_keys`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dbkeep.audit.log import AuditLog
from dbkeep.catalog.store import Catalog
from dbkeep.errors import ApiError, PolicyDocumentError
from dbkeep.identity.credentials import Principal, identity_policy_texts
from dbkeep.policy.document import PolicyDocument, parse_policy
from dbkeep.policy.evaluate import RequestContext, access_denied_message, evaluate


def identity_policies(catalog: Catalog, principal: Principal) -> list[PolicyDocument]:
    """Every identity-based policy that applies to the principal, parsed."""
    docs = []
    for text in identity_policy_texts(catalog, principal):
        try:
            docs.append(parse_policy(text))
        except PolicyDocumentError:
            continue  # stored documents were validated on the way in; never let one break auth
    return docs


def request_tag_keys(tags: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """``aws:RequestTag/<key>`` for each tag in the request and ``aws:TagKeys`` (all keys)."""
    keys: dict[str, Any] = {f"aws:RequestTag/{k}": v for k, v in tags}
    keys["aws:TagKeys"] = [k for k, _ in tags]
    return keys


def tag_keys_only(keys: Sequence[str]) -> dict[str, Any]:
    """``aws:TagKeys`` of an untag request."""
    return {"aws:TagKeys": list(keys)}


def resource_tag_keys(tags: Sequence[tuple[str, str]], *prefixes: str) -> dict[str, Any]:
    """``aws:ResourceTag/<key>`` (and each service prefix given, e.g. ``iam:ResourceTag``)."""
    out: dict[str, Any] = {}
    for prefix in ("aws:ResourceTag", *prefixes):
        out.update({f"{prefix}/{k}": v for k, v in tags})
    return out


@dataclass
class CallContext:
    catalog: Catalog
    audit: AuditLog
    principal: Principal
    request_id: str
    source_ip: str
    secure_transport: bool
    region: str
    now: dt.datetime
    service: str
    action: str
    services: Any = None  # the app's service registry (engines, pki, gateway), set by the dispatcher

    @property
    def account_id(self) -> str:
        return self.principal.account_id

    def condition_keys(self, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        p = self.principal
        keys: dict[str, Any] = {
            "aws:SourceIp": self.source_ip,
            "aws:SecureTransport": "true" if self.secure_transport else "false",
            "aws:CurrentTime": self.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "aws:EpochTime": str(int(self.now.timestamp())),
            "aws:userid": p.user_id,
            "aws:PrincipalArn": p.arn if p.kind != "assumed-role" else f"arn:aws:iam::{p.account_id}:role{p.path}{p.name}",
            "aws:PrincipalAccount": p.account_id,
            "aws:PrincipalType": {"root": "Account", "user": "User", "assumed-role": "AssumedRole"}[p.kind],
            "aws:RequestedRegion": self.region,
        }
        if p.kind == "user":
            keys["aws:username"] = p.name
        for k, v in p.tags:
            keys[f"aws:PrincipalTag/{k}"] = v
        if extra:
            keys.update(extra)
        return keys

    def allows(self, action: str, resource: str, extra_keys: Mapping[str, Any] | None = None) -> bool:
        """Whether :meth:`authorize` would pass, without an audit event: the web console asks it
        before it shows a button, so that a button never leads to a refusal."""
        if self.principal.is_root:
            return True
        request = RequestContext(
            action=action, resource=resource, principal_arn=self.principal.arn, keys=self.condition_keys(extra_keys)
        )
        return evaluate(identity_policies(self.catalog, self.principal), request).allowed

    def authorize(self, action: str, resource: str, extra_keys: Mapping[str, Any] | None = None, *, shown: str | None = None) -> None:
        """Raise AccessDenied (an audit event) unless the principal may ``action`` on ``resource``.

        ``shown`` replaces ``resource`` in the caller's error message only (the audit event keeps
        the real one): for a resource the caller named by something other than its ARN, where the
        ARN itself would tell a denied caller that the resource exists (an EC2 group by name).
        """
        request = RequestContext(
            action=action, resource=resource, principal_arn=self.principal.arn, keys=self.condition_keys(extra_keys)
        )
        if self.principal.is_root:
            return
        decision = evaluate(identity_policies(self.catalog, self.principal), request)
        if decision.allowed:
            return
        self.audit.event(
            "api.access_denied",
            verdict="deny",
            principal=self.principal.arn,
            source_ip=self.source_ip,
            action=action,
            resource=resource,
            reason=decision.reason,
            request_id=self.request_id,
        )
        raise ApiError(
            "UnauthorizedOperation" if self.service == "ec2" else "AccessDenied",
            access_denied_message(self.principal.arn, action, shown or resource, decision),
            403,
        )

    def authorize_all(self, action: str, resources: Sequence[str]) -> None:
        for resource in resources:
            self.authorize(action, resource)
