"""IAM policy evaluation: identity policies, resource/trust policies, AccessDenied texts.

Theory of operation
-------------------
Implements "Policy evaluation logic" (single account) from the IAM User Guide, for the policy
types dbkeep has: identity-based policies and resource-based policies, of which role trust
policies are the one IAM itself uses.

* "By default, all requests are implicitly denied with the exception of the AWS account root
  user, which has full access." — ``evaluate(..., is_root=True)`` allows without looking at
  the policies (the root user has no identity policies; SCPs, which could limit it, do not
  exist in dbkeep).
* Every statement of every policy is tested against the request. A statement *applies* when
  its ``Action`` matches the action (``NotAction``: matches none of them), its ``Resource``
  matches the resource (``NotResource``: none), its ``Principal`` matches the caller
  (``NotPrincipal``: none) when the statement names principals, and every condition holds. A
  statement whose condition fails simply does not apply.
* "An explicit deny in any policy overrides any allows": any applicable ``Deny`` →
  explicit deny; otherwise any applicable ``Allow`` → allow; otherwise implicit deny.

Principals (``"Principal"`` element; "AWS JSON policy elements: Principal"): ``"*"`` and
``{"AWS": "*"}`` match everyone; an account — ``"123456789012"`` or
``arn:aws:iam::123456789012:root`` — matches every principal of that account ("Using the account
ARN … does not limit permissions to only the root user"); a user, role, assumed-role session
or federated-user ARN matches that principal exactly, and a role ARN also matches the role's
sessions (``arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION``), which is how role chaining and
"same role" trust work; ``Service``, ``Federated`` and ``CanonicalUser`` values match a caller
whose identifier is that value (``caller_arn="ec2.amazonaws.com"``). ``NotPrincipal`` applies
when the caller matches none of its entries.

``trust_allows`` evaluates a role's trust policy for ``sts:AssumeRole`` (or whatever
``ctx.action`` says): there is no root exception — a trust policy "must explicitly allow
access for principals" — and an ``Allow`` that names no principal grants nothing.

AccessDenied texts ("Troubleshooting access denied error messages"):
``User: ARN is not authorized to perform: ACTION on resource: RESOURCE because no
identity-based policy allows the ACTION action`` (implicit) or ``… with an explicit deny in an
identity-based policy`` (explicit). For an assumed role the ARN shown is the session's
``arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION``. ``sts:AssumeRole`` refusals use the older
form without the ``because``/``with`` clause (``policy_type=None``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dbkeep.policy.conditions import conditions_hold
from dbkeep.policy.document import PolicyDocument, Principal, Statement
from dbkeep.policy.match import Resolver, match_action, match_resource, resolver_for

__all__ = [
    "Decision",
    "RequestContext",
    "access_denied_message",
    "evaluate",
    "principal_matches",
    "statement_applies",
    "trust_allows",
]

ROOT = "root"
ALLOW = "allow"
EXPLICIT_DENY = "explicit_deny"
IMPLICIT_DENY = "implicit_deny"


@dataclass(frozen=True)
class RequestContext:
    """What is being asked: the action, the resource ARN, who asks, and the condition keys.

    ``keys`` holds global and service condition keys (``aws:SourceIp``, ``aws:SecureTransport``
    as ``"true"``/``"false"``, ``aws:CurrentTime``, ``aws:EpochTime``, ``aws:username``,
    ``aws:PrincipalTag/Team``, ``rds:DatabaseEngine`` …); a multivalued key is a sequence of
    strings. Key names are case-insensitive. The context adds nothing by itself: a key the
    caller leaves out is absent.
    """

    action: str
    resource: str
    principal_arn: str
    keys: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    _lower: dict[str, Any] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lower", {k.lower(): v for k, v in self.keys.items()})

    @property
    def lower_keys(self) -> Mapping[str, Any]:
        return self._lower

    @property
    def resolve(self) -> Resolver:
        """Policy-variable resolver over this context's keys."""
        return resolver_for(self._lower)


@dataclass(frozen=True)
class Decision:
    """The verdict. ``reason``: ``"root"``, ``"allow"``, ``"explicit_deny"`` or ``"implicit_deny"``.

    ``sid`` (not part of equality) is the Sid of the deciding statement, when it had one.
    """

    allowed: bool
    reason: str
    sid: str | None = field(default=None, compare=False)


# --- principals ------------------------------------------------------------------------------

def _arn_parts(arn: str) -> list[str] | None:
    parts = arn.split(":", 5)
    return parts if len(parts) == 6 and parts[0] == "arn" else None


def account_of(arn: str) -> str | None:
    parts = _arn_parts(arn)
    return parts[4] if parts else None


def principal_matches(principal: Principal, caller_arn: str, caller_account: str | None) -> bool:
    """Whether one ``Principal`` entry names the caller (see the module docstring)."""
    value = principal.value
    if principal.kind != "AWS":
        if principal.kind == "Service":
            return value.lower() == caller_arn.lower()
        return value == caller_arn
    if value == "*":
        return True
    if value.isascii() and value.isdigit():
        return caller_account is not None and value == caller_account
    parts = _arn_parts(value)
    if parts is None:
        return False
    _, partition, service, _, account, resource = parts
    if service == "iam" and resource == "root":
        return caller_account is not None and account == caller_account
    if value == caller_arn:
        return True
    if service == "iam" and resource.startswith("role/"):
        caller = _arn_parts(caller_arn)
        role_name = resource.rsplit("/", 1)[1]
        return (caller is not None and caller[1] == partition and caller[2] == "sts"
                and caller[4] == account and caller[5].startswith(f"assumed-role/{role_name}/"))
    return False


def _any_principal(principals: Sequence[Principal], caller_arn: str, account: str | None) -> bool:
    return any(principal_matches(p, caller_arn, account) for p in principals)


# --- statements ------------------------------------------------------------------------------

def statement_applies(
    stmt: Statement,
    ctx: RequestContext,
    resolve: Resolver | None,
    *,
    caller_arn: str | None = None,
    caller_account: str | None = None,
) -> bool:
    """Whether a statement applies to the request (its Effect then decides)."""
    action = ctx.action
    if stmt.actions is not None and not any(match_action(p, action) for p in stmt.actions):
        return False
    if stmt.not_actions is not None and any(match_action(p, action) for p in stmt.not_actions):
        return False
    resource = ctx.resource
    if stmt.resources is not None and not any(
            match_resource(p, resource, resolve) for p in stmt.resources):
        return False
    if stmt.not_resources is not None and any(
            match_resource(p, resource, resolve) for p in stmt.not_resources):
        return False
    if stmt.principals is not None or stmt.not_principals is not None:
        arn = ctx.principal_arn if caller_arn is None else caller_arn
        account = account_of(arn) if caller_account is None else caller_account
        if stmt.principals is not None and not _any_principal(stmt.principals, arn, account):
            return False
        if stmt.not_principals is not None and _any_principal(stmt.not_principals, arn, account):
            return False
    return conditions_hold(stmt.conditions, ctx.lower_keys, resolve)


def _decide(policies: Sequence[PolicyDocument], ctx: RequestContext, *, trust: bool,
            caller_arn: str | None = None, caller_account: str | None = None) -> Decision:
    resolve_all = ctx.resolve
    allow: Statement | None = None
    for doc in policies:
        resolve = resolve_all if doc.variables_enabled else None
        for stmt in doc.statements:
            if stmt.effect == "Allow" and (allow is not None or (
                    trust and stmt.principals is None and stmt.not_principals is None)):
                continue  # an Allow is already found, or this one grants no principal anything
            if statement_applies(stmt, ctx, resolve, caller_arn=caller_arn,
                                 caller_account=caller_account):
                if stmt.effect == "Deny":
                    return Decision(False, EXPLICIT_DENY, stmt.sid)
                allow = stmt
    if allow is not None:
        return Decision(True, ALLOW, allow.sid)
    return Decision(False, IMPLICIT_DENY)


def evaluate(policies: Sequence[PolicyDocument], ctx: RequestContext, *,
             is_root: bool = False) -> Decision:
    """Evaluate a principal's policies for one request: explicit Deny > Allow > implicit deny.

    ``policies`` are the principal's identity-based policies (inline, attached, group), and may
    include resource-based policies, whose ``Principal`` is then matched against
    ``ctx.principal_arn``.
    """
    if is_root:
        return Decision(True, ROOT)
    return _decide(policies, ctx, trust=False)


def trust_allows(trust: PolicyDocument, *, caller_arn: str, caller_account: str,
                 ctx: RequestContext) -> Decision:
    """Whether a role's trust policy lets ``caller_arn`` perform ``ctx.action`` (sts:AssumeRole).

    ``caller_account`` is the caller's account id (for ``"123456789012"`` / ``…:root``
    principals); for a service caller pass ``caller_arn="ec2.amazonaws.com"``. Conditions are
    evaluated against ``ctx.keys``. Whether the caller's own identity policies also allow
    ``sts:AssumeRole`` is a separate ``evaluate`` call.
    """
    return _decide([trust], ctx, trust=True, caller_arn=caller_arn,
                   caller_account=caller_account)


# --- AccessDenied ----------------------------------------------------------------------------

def access_denied_message(principal_arn: str, action: str, resource: str, decision: Decision,
                          *, policy_type: str | None = "identity-based policy") -> str:
    """AWS's AccessDenied text for a refused request.

    ``policy_type`` is the noun phrase AWS uses: ``"identity-based policy"`` (default),
    ``"resource-based policy"``, ``"permissions boundary"``, ``"session policy"``,
    ``"service control policy"``, ``"VPC endpoint policy"``; ``None`` gives the short form
    without a reason (what STS returns for a refused ``AssumeRole``). An empty ``resource``
    drops the ``on resource:`` part, as AWS does for actions without a resource.
    """
    if decision.allowed:
        raise ValueError("access_denied_message() needs a refusal")
    text = f"User: {principal_arn} is not authorized to perform: {action}"
    if resource:
        text += f" on resource: {resource}"
    if policy_type is None:
        return text
    if decision.reason == EXPLICIT_DENY:
        article = "an" if policy_type[:1].lower() in "aeiou" else "a"
        return f"{text} with an explicit deny in {article} {policy_type}"
    return f"{text} because no {policy_type} allows the {action} action"
