"""IAM JSON policy documents: parsing, validation and size limits.

Theory of operation
-------------------
Implements the grammar in "Grammar of the IAM JSON policy language" and the element pages
("Version", "Statement", "Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction",
"Resource", "NotResource", "Condition") of the IAM User Guide, and the size limits of
"IAM and AWS STS quotas".

``parse_policy`` turns JSON text into frozen :class:`PolicyDocument` / :class:`Statement`
records or raises :class:`~dbkeep.errors.PolicyDocumentError` with the text IAM returns in
its ``MalformedPolicyDocument`` error (the ``detail`` attribute names the exact element). The
checks run in the order IAM applies them, so a document with several faults gets the message
IAM would give:

1. JSON and structure — "Syntax errors in policy." (a role trust policy that is not JSON:
   "This policy contains invalid Json"): one object; top-level keys ``Version``, ``Id``,
   ``Statement``; ``Version`` is ``2012-10-17`` or ``2008-10-17``; ``Statement`` is an object
   or a non-empty list of objects; statement keys are the grammar's; no element twice;
   ``Effect`` is Allow or Deny; ``Action``/``Resource``/… are a string or a list of strings;
   not both ``Action`` and ``NotAction`` (likewise Resource, Principal); condition
   operators are known.
2. Where principals belong — identity policies: "Policy document should not specify a
   principal."; trust policies: "Has prohibited field Resource", "Missing required field
   Principal"; resource policies need a principal too.
3. Managed policies only: "Policy document must be version 2012-10-17 or greater."
4. Legacy parsing — "The policy failed legacy parsing": ``Effect`` spelled with the wrong case
   (``allow``), and condition values that must be dates, numbers, IP ranges, base64 or
   true/false but are not.
5. Statement ids: unique ("Statement IDs (SID) in a single policy must be unique.") and, in
   IAM policies, alphanumeric.
6. "Policy statement must contain actions." / "Policy statement must contain resources."
   (identity and resource policies; a trust policy names no resource).
7. Formats: ``Resource {r} must be in ARN format or "*".``; actions and condition keys need a
   vendor prefix ("Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2,
   etc.", "Actions/Condition can contain only one colon."); principals must be "*", an
   account id or an IAM/STS ARN without wildcards (``Invalid principal in policy:
   "AWS":"…"``).

Single strings and lists are both accepted wherever the grammar allows a list, ``Statement``
may be one object, and numbers and booleans may stand unquoted as condition values ("Quotation
marks are optional for numeric and Boolean values").

``Version``: ``2012-10-17`` enables policy variables; ``2008-10-17`` — the default when the
element is absent — treats ``${…}`` as literal text. An ``Id`` is accepted everywhere.
``NotPrincipal`` is refused in identity policies and, in role trust policies, accepted only
with ``Deny`` (AWS's pages say trust policies should not use it at all; a Deny with
NotPrincipal can only take access away, so dbkeep keeps it).

Size: IAM counts characters "not including white space". The limits are exported below with
helpers that return IAM's ``LimitExceeded`` texts; enforcing them (and the character set
``POLICY_DOCUMENT_CHARSET``) is left to the API handlers, which know the entity.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dbkeep.policy.conditions import (
    LEGACY_PARSING,
    Condition,
    parse_condition_block,
    policy_error,
    split_operator,
)

__all__ = [
    "GROUP_INLINE_POLICY_MAX",
    "KINDS",
    "MANAGED_POLICY_MAX",
    "POLICY_DOCUMENT_CHARSET",
    "Principal",
    "PolicyDocument",
    "ROLE_INLINE_POLICY_MAX",
    "ROLE_TRUST_POLICY_MAX",
    "Statement",
    "USER_INLINE_POLICY_MAX",
    "VERSION_2008",
    "VERSION_2012",
    "inline_policy_size_error",
    "managed_policy_size_error",
    "parse_policy",
    "policy_size",
    "trust_policy_size_error",
]

VERSION_2012 = "2012-10-17"
VERSION_2008 = "2008-10-17"
KINDS = ("identity", "trust", "resource")

# --- IAM's MalformedPolicyDocument texts -----------------------------------------------------
SYNTAX = "Syntax errors in policy."
INVALID_JSON = "This policy contains invalid Json"
SHOULD_NOT_SPECIFY_PRINCIPAL = "Policy document should not specify a principal."
MISSING_PRINCIPAL = "Missing required field Principal"
PROHIBITED_FIELD = "Has prohibited field {field}"
MANAGED_VERSION = "Policy document must be version 2012-10-17 or greater."
SID_UNIQUE = "Statement IDs (SID) in a single policy must be unique."
SID_ALNUM = ("Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the "
             "regular expression [0-9A-Za-z]*")
MUST_CONTAIN_ACTIONS = "Policy statement must contain actions."
MUST_CONTAIN_RESOURCES = "Policy statement must contain resources."
RESOURCE_FORMAT = 'Resource {resource} must be in ARN format or "*".'
NEEDS_VENDOR = "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."
ONE_COLON = "Actions/Condition can contain only one colon."
VENDOR_INVALID = "Vendor {vendor} is not valid"
INVALID_PRINCIPAL = 'Invalid principal in policy: "{kind}":"{value}"'
NO_PRINCIPALS = ("Invalid principal in policy: com.amazon.balsa.error.InvalidPolicyException: "
                 "The passed in policy has a statement with no principals!")

# --- size limits (IAM and AWS STS quotas) ----------------------------------------------------
MANAGED_POLICY_MAX = 6144  # characters, white space not counted
USER_INLINE_POLICY_MAX = 2048  # aggregate of a user's inline policies
GROUP_INLINE_POLICY_MAX = 5120  # aggregate of a group's inline policies
ROLE_INLINE_POLICY_MAX = 10240  # aggregate of a role's inline policies
ROLE_TRUST_POLICY_MAX = 2048  # default quota (AWS can raise it to 4096)
# "Policy documents can contain only … tab, linefeed, carriage return, and U+0020 to U+00FF."
POLICY_DOCUMENT_CHARSET = "[\u0009\u000A\u000D\u0020-\u00FF]+"

_INLINE_LIMITS = {"user": USER_INLINE_POLICY_MAX, "group": GROUP_INLINE_POLICY_MAX,
                  "role": ROLE_INLINE_POLICY_MAX}
_WHITESPACE = re.compile(r"\s+")


def policy_size(text: str) -> int:
    """Characters IAM counts against a size quota: everything but white space."""
    return len(_WHITESPACE.sub("", text))


def managed_policy_size_error(text: str) -> str | None:
    """IAM's ``LimitExceeded`` text when a managed policy is too large, else None."""
    if policy_size(text) > MANAGED_POLICY_MAX:
        return f"Cannot exceed quota for PolicySize: {MANAGED_POLICY_MAX}"
    return None


def trust_policy_size_error(text: str, limit: int = ROLE_TRUST_POLICY_MAX) -> str | None:
    """IAM's ``LimitExceeded`` text when a role trust policy is too large, else None."""
    if policy_size(text) > limit:
        return f"Cannot exceed quota for ACLSizePerRole: {limit}"
    return None


def inline_policy_size_error(texts: Iterable[str], *, entity_type: str, entity_name: str) -> str | None:
    """IAM's ``LimitExceeded`` text when the inline policies of one user/group/role are too large.

    ``texts`` are all the entity's inline policy documents after the change (the quota is on
    their sum).
    """
    limit = _INLINE_LIMITS[entity_type]
    if sum(policy_size(t) for t in texts) > limit:
        return f"Maximum policy size of {limit} bytes exceeded for {entity_type} {entity_name}"
    return None


# --- records ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Principal:
    """One principal of a ``Principal``/``NotPrincipal`` element; ``"*"`` is ``("AWS", "*")``."""

    kind: str  # "AWS", "Service", "Federated" or "CanonicalUser"
    value: str


@dataclass(frozen=True)
class Statement:
    sid: str | None
    effect: str  # "Allow" or "Deny"
    actions: tuple[str, ...] | None
    not_actions: tuple[str, ...] | None
    resources: tuple[str, ...] | None
    not_resources: tuple[str, ...] | None
    principals: tuple[Principal, ...] | None
    not_principals: tuple[Principal, ...] | None
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class PolicyDocument:
    version: str  # "2012-10-17" or "2008-10-17" (the default when the element is absent)
    statements: tuple[Statement, ...]
    id: str | None = None

    @property
    def variables_enabled(self) -> bool:
        """Policy variables are substituted only in ``2012-10-17`` documents."""
        return self.version == VERSION_2012


# --- JSON ------------------------------------------------------------------------------------

class _Number(str):
    """A JSON number, kept as its source text; allowed only as a condition value."""


class _Duplicate(ValueError):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and not isinstance(value, _Number)


def _syntax(detail: str) -> Exception:
    return policy_error(SYNTAX, detail)


_TOP_KEYS = frozenset({"Version", "Id", "Statement"})
_STATEMENT_KEYS = frozenset({"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction",
                             "Resource", "NotResource", "Condition"})
_PRINCIPAL_KINDS = ("AWS", "Service", "Federated", "CanonicalUser")
_SID = re.compile(r"[0-9A-Za-z]*")
_VENDOR = re.compile(r"[A-Za-z0-9\-.*?]+")
_ACCOUNT = re.compile(r"[0-9]{12}")
_AWS_PRINCIPAL_ARN = re.compile(
    r"arn:[a-z\-]+:(?:iam::[0-9]{12}:(?:root|user/.+|role/.+)"
    r"|sts::[0-9]{12}:(?:assumed-role/[^/]+/.+|federated-user/.+))"
)


def _strings(stmt: dict[str, Any], key: str, index: int) -> tuple[str, ...] | None:
    """A string-or-list-of-strings element, or None when absent."""
    if key not in stmt:
        return None
    value = stmt[key]
    if _is_text(value):
        return (value,)
    if isinstance(value, list) and all(_is_text(v) for v in value):
        return tuple(value)
    raise _syntax(f"Statement {index}: {key} must be a string or a list of strings")


def _condition_value(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):  # text or _Number
        return str.__str__(value)
    return None


def _conditions_structure(value: Any, index: int) -> dict[str, dict[str, list[str]]]:
    if not isinstance(value, dict):
        raise _syntax(f"Statement {index}: Condition must be an object")
    block: dict[str, dict[str, list[str]]] = {}
    for operator, keys in value.items():
        if split_operator(operator) is None:
            raise _syntax(f"Statement {index}: unknown condition operator {operator!r}")
        if not isinstance(keys, dict):
            raise _syntax(f"Statement {index}: {operator} must map condition keys to values")
        entry: dict[str, list[str]] = {}
        for key, raw in keys.items():
            items = raw if isinstance(raw, list) else [raw]
            values = [_condition_value(v) for v in items]
            if any(v is None for v in values):
                raise _syntax(f"Statement {index}: {operator} {key!r} values must be strings, "
                              "numbers or booleans")
            entry[key] = values  # type: ignore[assignment]
        block[operator] = entry
    return block


def _principals(value: Any, element: str, index: int) -> tuple[Principal, ...]:
    if _is_text(value):
        if value == "*":
            return (Principal("AWS", "*"),)
        raise _syntax(f"Statement {index}: {element} must be \"*\" or an object")
    if not isinstance(value, dict):
        raise _syntax(f"Statement {index}: {element} must be \"*\" or an object")
    out: list[Principal] = []
    for kind, ids in value.items():
        if kind not in _PRINCIPAL_KINDS:
            raise _syntax(f"Statement {index}: unknown principal type {kind!r} in {element}")
        items = [ids] if _is_text(ids) else ids
        if not isinstance(items, list) or not all(_is_text(i) for i in items):
            raise _syntax(f"Statement {index}: {element} {kind} must be a string or a list of strings")
        out.extend(Principal(kind, i) for i in items)
    return tuple(out)


def _decode(text: str, kind: str) -> Any:
    if isinstance(text, (bytes, bytearray)):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
    if not isinstance(text, str):
        raise TypeError("policy text must be str")
    try:
        return json.loads(text, object_pairs_hook=_object, parse_int=_Number,
                          parse_float=_Number, parse_constant=_no_constant)
    except _Duplicate as exc:
        raise _syntax(f"element {exc.args[0]!r} appears twice in one object") from None
    except (ValueError, RecursionError) as exc:
        raise policy_error(INVALID_JSON if kind == "trust" else SYNTAX,
                           f"not valid JSON: {exc}") from None


# --- parse -----------------------------------------------------------------------------------

def parse_policy(text: str, *, kind: str = "identity", managed: bool = False) -> PolicyDocument:
    """Parse and validate a policy document.

    ``kind``: ``"identity"`` (user/group/role permissions and managed policies: no Principal,
    Resource required), ``"trust"`` (a role's AssumeRolePolicyDocument: Principal required,
    Resource prohibited) or ``"resource"`` (other resource-based policies: both required).
    ``managed``: a customer managed policy, which must say ``"Version": "2012-10-17"``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    doc = _decode(text, kind)

    # 1. structure
    if not isinstance(doc, dict):
        raise _syntax("the policy must be a JSON object")
    for key in doc:
        if key not in _TOP_KEYS:
            raise _syntax(f"unknown top-level element {key!r}")
    version = doc.get("Version", VERSION_2008)
    if not _is_text(version) or version not in (VERSION_2012, VERSION_2008):
        raise _syntax(f"Version must be {VERSION_2012} or {VERSION_2008}, not {version!r}")
    policy_id = doc.get("Id")
    if policy_id is not None and not _is_text(policy_id):
        raise _syntax("Id must be a string")
    if "Statement" not in doc:
        raise _syntax("the policy has no Statement")
    raw_statements = doc["Statement"]
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        raise _syntax("Statement must be an object or a non-empty list of objects")

    parsed: list[dict[str, Any]] = []
    for i, stmt in enumerate(raw_statements):
        if not isinstance(stmt, dict):
            raise _syntax(f"Statement {i} is not an object")
        for key in stmt:
            if key not in _STATEMENT_KEYS:
                raise _syntax(f"Statement {i}: unknown element {key!r}")
        for a, b in (("Action", "NotAction"), ("Resource", "NotResource"),
                     ("Principal", "NotPrincipal")):
            if a in stmt and b in stmt:
                raise _syntax(f"Statement {i} has both {a} and {b}")
        effect = stmt.get("Effect")
        if not _is_text(effect) or effect.lower() not in ("allow", "deny"):
            raise _syntax(f"Statement {i}: Effect must be Allow or Deny, not {effect!r}")
        sid = stmt.get("Sid")
        if sid is not None and not _is_text(sid):
            raise _syntax(f"Statement {i}: Sid must be a string")
        fields = {key: _strings(stmt, key, i)
                  for key in ("Action", "NotAction", "Resource", "NotResource")}
        fields["Condition"] = _conditions_structure(stmt.get("Condition", {}), i)
        for element in ("Principal", "NotPrincipal"):
            fields[element] = (_principals(stmt[element], element, i) if element in stmt
                               else None)
        fields["Effect"], fields["Sid"] = effect, sid
        parsed.append(fields)

    # 2. where principals and resources belong
    for i, f in enumerate(parsed):
        has_principal = f["Principal"] is not None or f["NotPrincipal"] is not None
        if kind == "identity" and has_principal:
            raise policy_error(SHOULD_NOT_SPECIFY_PRINCIPAL, f"Statement {i} names a principal")
        if kind == "trust":
            for element in ("Resource", "NotResource"):
                if f[element] is not None:
                    raise policy_error(PROHIBITED_FIELD.format(field=element),
                                       f"Statement {i}: a trust policy names no {element}")
        if kind != "identity" and not has_principal:
            raise policy_error(MISSING_PRINCIPAL, f"Statement {i} has no Principal")

    # 3. managed policies need the current language version
    if managed and doc.get("Version") != VERSION_2012:
        raise policy_error(MANAGED_VERSION, f"Version is {doc.get('Version')!r}")

    # 4. legacy parsing: Effect's case, typed condition values
    conditions: list[tuple[Condition, ...]] = []
    for i, f in enumerate(parsed):
        if f["Effect"] not in ("Allow", "Deny"):
            raise policy_error(LEGACY_PARSING,
                               f"Statement {i}: Effect is {f['Effect']!r}; write Allow or Deny")
        conditions.append(parse_condition_block(f["Condition"]))

    # 5. statement ids
    seen: set[str] = set()
    for i, f in enumerate(parsed):
        sid = f["Sid"]
        if sid:
            if sid in seen:
                raise policy_error(SID_UNIQUE, f"Sid {sid!r} is used twice")
            seen.add(sid)
        if sid is not None and kind != "resource" and not _SID.fullmatch(sid):
            raise policy_error(SID_ALNUM, f"Sid {sid!r} is not alphanumeric")

    # 6. actions and resources must be present
    for i, f in enumerate(parsed):
        if not (f["Action"] or f["NotAction"]):
            raise policy_error(MUST_CONTAIN_ACTIONS, f"Statement {i} has no Action or NotAction")
    if kind != "trust":
        for i, f in enumerate(parsed):
            if not (f["Resource"] or f["NotResource"]):
                raise policy_error(MUST_CONTAIN_RESOURCES,
                                   f"Statement {i} has no Resource or NotResource")

    # 7. formats
    for i, f in enumerate(parsed):
        for element in ("Resource", "NotResource"):
            for resource in f[element] or ():
                if resource != "*" and not resource.startswith("arn:"):
                    raise policy_error(RESOURCE_FORMAT.format(resource=resource),
                                       f"Statement {i}: {element} {resource!r}")
        for element in ("Action", "NotAction"):
            for action in f[element] or ():
                _check_action(action, i)
        for keys in f["Condition"].values():
            for key in keys:
                if ":" not in key:
                    raise policy_error(NEEDS_VENDOR, f"Statement {i}: condition key {key!r}")
        if kind != "identity":
            _check_principals(f, kind, i)

    statements = tuple(
        Statement(
            sid=f["Sid"],
            effect=f["Effect"],
            actions=f["Action"],
            not_actions=f["NotAction"],
            resources=f["Resource"],
            not_resources=f["NotResource"],
            principals=f["Principal"],
            not_principals=f["NotPrincipal"],
            conditions=conds,
        )
        for f, conds in zip(parsed, conditions)
    )
    return PolicyDocument(version=version, statements=statements, id=policy_id)


def _check_action(action: str, index: int) -> None:
    if action == "*":
        return
    parts = action.split(":")
    if len(parts) == 1:
        raise policy_error(NEEDS_VENDOR, f"Statement {index}: action {action!r}")
    if len(parts) > 2:
        raise policy_error(ONE_COLON, f"Statement {index}: action {action!r}")
    if not _VENDOR.fullmatch(parts[0]):
        raise policy_error(VENDOR_INVALID.format(vendor=parts[0]),
                           f"Statement {index}: action {action!r}")


def _check_principals(f: dict[str, Any], kind: str, index: int) -> None:
    for element in ("Principal", "NotPrincipal"):
        principals = f[element]
        if principals is None:
            continue
        if not principals:
            raise policy_error(NO_PRINCIPALS, f"Statement {index}: {element} lists no principal")
        if element == "NotPrincipal" and kind == "trust" and f["Effect"] != "Deny":
            raise policy_error(
                INVALID_PRINCIPAL.format(kind="NotPrincipal", value=principals[0].value),
                f"Statement {index}: a trust policy may use NotPrincipal only with Deny",
            )
        for p in principals:
            if p.kind == "AWS":
                ok = (p.value == "*" or _ACCOUNT.fullmatch(p.value) is not None
                      or ("*" not in p.value and _AWS_PRINCIPAL_ARN.fullmatch(p.value) is not None))
            else:
                ok = bool(p.value) and "*" not in p.value and "?" not in p.value
            if not ok:
                raise policy_error(INVALID_PRINCIPAL.format(kind=p.kind, value=p.value),
                                   f"Statement {index}: {element} {p.kind} {p.value!r}")
