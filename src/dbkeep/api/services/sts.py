"""STS: GetCallerIdentity and AssumeRole.

AssumeRole follows AWS's same-account rule: the role's trust policy must allow the caller, and,
unless the trust policy names the caller's ARN itself, the caller's identity policies must allow
``sts:AssumeRole`` on the role (the account root needs no identity policy). An explicit deny in
either wins. ``RoleArn`` must name the role exactly (this account, the role's own path); the
decision is made on the role's own ARN, and the caller's identity policies are asked first, so a
caller that may not assume a role gets the same answer whether or not it exists (or trusts it).
The temporary credentials are an ``ASIA…`` key, a secret and a session token (kept
only as a hash) that stop working at ``Expiration``.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from dbkeep.api.context import CallContext, identity_policies, resource_tag_keys
from dbkeep.errors import ApiError, PolicyDocumentError
from dbkeep.identity.credentials import new_access_key_id, new_secret_access_key, new_session_token
from dbkeep.policy.document import parse_policy
from dbkeep.policy.evaluate import RequestContext, access_denied_message, evaluate, trust_allows

_ROLE_ARN = re.compile(r"^arn:aws:iam::(\d{12}):role(/(?:[\x21-\x7e]*/)?)([\w+=,.@-]{1,64})$")


def get_caller_identity(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    # "No permissions are required to perform this operation."
    p = ctx.principal
    return {"UserId": p.user_id, "Account": p.account_id, "Arn": p.arn}


def _deny(ctx: CallContext, role_arn: str, reason: str) -> ApiError:
    ctx.audit.event("sts.assume_role", verdict="deny", principal=ctx.principal.arn, source_ip=ctx.source_ip, resource=role_arn, reason=reason, request_id=ctx.request_id)
    return ApiError("AccessDenied", f"User: {ctx.principal.arn} is not authorized to perform: sts:AssumeRole on resource: {role_arn}", 403)


def assume_role(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    role_arn, session_name = args["RoleArn"], args["RoleSessionName"]
    match = _ROLE_ARN.match(role_arn)
    if not match:
        raise ApiError("ValidationError", f"{role_arn} is invalid")
    account, path, role_name = match.groups()
    # The role this ARN names here: this account's, and only when the path is the role's own
    # (``role/x/dba`` is not ``role/dba``). Everything is decided on that role's ARN, never on
    # the caller's spelling; an ARN that names no role is authorised as spelled.
    role = ctx.catalog.get_role(role_name) if account == ctx.account_id else None
    if role is not None and role.path != path:
        role = None
    if role is not None:
        role_arn = f"arn:aws:iam::{ctx.account_id}:role{role.path}{role.name}"
        keys = ctx.condition_keys(resource_tag_keys(role.tags, "iam:ResourceTag"))
    else:
        keys = ctx.condition_keys()
    request = RequestContext(action="sts:AssumeRole", resource=role_arn, principal_arn=ctx.principal.arn, keys=keys)
    # The identity decision comes first, so a caller learns nothing about a role its own
    # policies do not let it assume: missing role, untrusting role and forbidden role all
    # answer alike. (Same account: the trust policy naming the caller itself is enough.)
    decision = None if ctx.principal.is_root else evaluate(identity_policies(ctx.catalog, ctx.principal), request)
    allowed = decision is None or decision.allowed

    def refuse(reason: str) -> ApiError:
        if allowed:
            return _deny(ctx, role_arn, reason)
        ctx.audit.event("sts.assume_role", verdict="deny", principal=ctx.principal.arn, source_ip=ctx.source_ip, resource=role_arn, reason=decision.reason, request_id=ctx.request_id)
        return ApiError("AccessDenied", access_denied_message(ctx.principal.arn, "sts:AssumeRole", role_arn, decision), 403)

    if decision is not None and decision.reason == "explicit_deny":
        raise refuse("explicit deny")
    if role is None:
        raise refuse("no such role")
    try:
        trust = parse_policy(role.trust_policy, kind="trust")
    except PolicyDocumentError:
        raise refuse("unreadable trust policy") from None
    if not trust_allows(trust, caller_arn=ctx.principal.arn, caller_account=ctx.account_id, ctx=request).allowed:
        raise refuse("trust policy")
    named_directly = any(st.effect == "Allow" and ctx.principal.arn in _aws_principals(st.principals) for st in trust.statements)
    if not allowed and not named_directly:
        raise refuse("identity policy")
    duration = args.get("DurationSeconds", 3600)
    if duration > role.max_session_duration:
        raise ApiError(
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        )
    if ctx.principal.kind == "assumed-role" and duration > 3600:
        raise ApiError("ValidationError", "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.")
    expires = ctx.now + dt.timedelta(seconds=duration)
    key_id, secret, token = new_access_key_id(temporary=True), new_secret_access_key(), new_session_token()
    ctx.catalog.delete_expired_sessions(ctx.now)
    ctx.catalog.add_access_key(
        None, access_key_id=key_id, secret=secret, owner_kind="session", owner_name=role.name, created=ctx.now,
        session_token=token, session_name=session_name, expires=expires,
    )
    ctx.audit.event("sts.assume_role", verdict="allow", principal=ctx.principal.arn, source_ip=ctx.source_ip, resource=role_arn, session=session_name, access_key_id=key_id, request_id=ctx.request_id)
    return {
        "Credentials": {"AccessKeyId": key_id, "SecretAccessKey": secret, "SessionToken": token, "Expiration": expires},
        "AssumedRoleUser": {"AssumedRoleId": f"{role.role_id}:{session_name}", "Arn": f"arn:aws:sts::{ctx.account_id}:assumed-role/{role.name}/{session_name}"},
        "PackedPolicySize": 0,
    }


def _aws_principals(principals: Any) -> set[str]:
    return {p.value for p in principals or () if p.kind == "AWS"}


HANDLERS = {"GetCallerIdentity": get_caller_identity, "AssumeRole": assume_role}
