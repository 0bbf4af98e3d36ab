"""IAM ``Condition`` operators: parsing and evaluation.

Theory of operation
-------------------
Implements "IAM JSON policy elements: Condition operators" and "Creating a condition with
multiple keys or values" from the IAM User Guide.

A ``Condition`` block maps operators to ``{key: value-or-values}``. Every (operator, key) pair
becomes one :class:`Condition`; all of them must hold (logical AND across operators and
across keys). The values listed for one key are ORed — except for the negated operators
(``StringNotEquals``, ``StringNotEqualsIgnoreCase``, ``StringNotLike``, ``NumericNotEquals``,
``DateNotEquals``, ``NotIpAddress``, ``ArnNotEquals``, ``ArnNotLike``), which hold only when the
request value matches *none* of them ("the effective permissions work like a logical AND").

Operator families and how a request value is compared with a policy value:

* ``String*``: exact, case-sensitive (``…IgnoreCase``: case-insensitive); ``StringLike`` globs
  with ``*`` and ``?``.
* ``Numeric*``: decimal numbers. ``Date*``: W3C ISO 8601 dates or epoch seconds, compared as
  instants (no wildcards). ``Bool``: ``true``/``false``. ``BinaryEquals``: the policy value is
  base64; request values for binary keys are base64 text too and are compared byte for byte.
* ``IpAddress``/``NotIpAddress``: IPv4 or IPv6 CIDR (a bare address means /32 or /128);
  IPv4-mapped IPv6 request addresses are compared as IPv4.
* ``ArnEquals`` = ``ArnLike`` and ``ArnNotEquals`` = ``ArnNotLike``: the six colon-separated
  ARN parts are globbed separately, case-sensitively.
* ``Null``: ``true`` holds when the key is absent, ``false`` when it is present.

Missing keys: "If the key that you specify in a policy condition is not present in the request
context, the values do not match and the condition is false. If the policy condition requires
that the key is not matched, such as StringNotLike or ArnNotLike, and the right key is not
present, the condition is true." ``…IfExists`` (any operator but ``Null``) makes a missing key
true. An empty list of request values counts as absent (a "null data set").

Set qualifiers: ``ForAllValues:`` holds when every request value satisfies the operator
(true for an absent key or an empty set); ``ForAnyValue:`` when at least one does (false for
an absent key or an empty set). With a negated operator "satisfies" means "matches none of
the policy values". Without a qualifier a positive operator holds when any request value
matches any policy value, and a negated one when none does.

Condition keys are case-insensitive; values are case-sensitive unless the operator says
otherwise. Policy variables (``${aws:username}``) are substituted in String, Bool and ARN
values only (documents with ``Version`` 2012-10-17); a variable whose key is absent matches
nothing. Numeric, Date, Binary, IP and Null values are parsed when the policy is parsed, so
a malformed one is rejected then.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from dbkeep.errors import PolicyDocumentError
from dbkeep.policy.match import Resolver, arn_like, glob_match, substitute_literal

__all__ = [
    "Condition",
    "LEGACY_PARSING",
    "OPERATORS",
    "conditions_hold",
    "evaluate_condition",
    "parse_condition_block",
    "parse_date",
    "policy_error",
    "split_operator",
]

LEGACY_PARSING = "The policy failed legacy parsing"


def policy_error(message: str, detail: str = "") -> PolicyDocumentError:
    """A :class:`PolicyDocumentError` whose message is AWS's text; ``detail`` says exactly what.

    AWS's texts are sometimes generic ("Syntax errors in policy."); ``detail`` (an attribute)
    names the element at fault, for logs and for people reading dbkeep's own audit trail.
    """
    err = PolicyDocumentError(message)
    err.detail = detail or message  # type: ignore[attr-defined]
    return err


# --- typed values ----------------------------------------------------------------------------

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_ONE_MICROSECOND = dt.timedelta(microseconds=1)
_EPOCH_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_YEAR_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


def parse_date(text: str) -> int | None:
    """An ISO 8601 date/time or epoch seconds → microseconds since the epoch (UTC), else None.

    Accepts the W3C profile (``YYYY-MM``, ``YYYY-MM-DD``, ``YYYY-MM-DDThh:mm[:ss[.s]]`` with
    ``Z`` or ``±hh:mm``, or no zone = UTC) and what ``datetime.fromisoformat`` reads (including
    the basic form ``20130930T231548Z``), and integer or decimal epoch seconds. A value of digits
    only is epoch seconds — so the W3C year-only form ``YYYY`` reads as seconds, as in IAM's
    legacy parser, which takes a value without ``T`` or ``-`` for a timestamp.
    """
    if not isinstance(text, str) or not text or len(text) > 64:
        return None
    try:
        if _EPOCH_NUMBER.fullmatch(text):
            return int(Decimal(text) * 1_000_000)
        if (m := _YEAR_MONTH.fullmatch(text)) is not None:
            when = dt.datetime(int(m.group(1)), int(m.group(2)), 1, tzinfo=dt.timezone.utc)
        else:
            iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
            when = dt.datetime.fromisoformat(iso.replace("t", "T", 1))
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
        return (when - _EPOCH) // _ONE_MICROSECOND
    except (ValueError, OverflowError, InvalidOperation):
        return None


def _parse_number(text: str) -> Decimal | None:
    if not isinstance(text, str) or len(text) > 64:
        return None
    try:
        number = Decimal(text)
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


_IpAddr = ipaddress.IPv4Address | ipaddress.IPv6Address
_IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_network(text: str) -> _IpNet | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except (ValueError, TypeError):
        return None


def _parse_address(text: str) -> _IpAddr | None:
    try:
        addr = ipaddress.ip_address(text)
    except (ValueError, TypeError):
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _parse_binary(text: object) -> bytes | None:
    if isinstance(text, (bytes, bytearray)):
        return bytes(text)
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


# --- operator families -----------------------------------------------------------------------

@dataclass(frozen=True)
class _Family:
    """How one operator compares a request value with a policy value."""

    negated: bool
    variables: bool  # policy variables allowed in the values
    # Typed families: policy values are parsed once, at policy-parse time (None = invalid).
    parse_policy: Callable[[str], Any] | None
    parse_request: Callable[[Any], Any]
    compare: Callable[[Any, Any, Resolver | None], bool]


def _identity(v: Any) -> Any:
    return v if isinstance(v, str) else None


def _lower(v: Any) -> Any:
    return v.lower() if isinstance(v, str) else None


def _string(negated: bool) -> _Family:
    return _Family(negated, True, None, _identity,
                   lambda r, p, res: (s := substitute_literal(p, res)) is not None and r == s)


def _string_ci(negated: bool) -> _Family:
    return _Family(negated, True, None, _lower,
                   lambda r, p, res: (s := substitute_literal(p, res)) is not None and r == s.lower())


def _string_like(negated: bool) -> _Family:
    return _Family(negated, True, None, _identity,
                   lambda r, p, res: glob_match(p, r, resolve=res))


def _numeric(op: Callable[[Decimal, Decimal], bool], negated: bool = False) -> _Family:
    return _Family(negated, False, _parse_number, _parse_number, lambda r, p, res: op(r, p))


def _date(op: Callable[[int, int], bool], negated: bool = False) -> _Family:
    return _Family(negated, False, parse_date, parse_date, lambda r, p, res: op(r, p))


def _arn(negated: bool) -> _Family:
    return _Family(negated, True, None, _identity, lambda r, p, res: arn_like(p, r, res))


def _ip(negated: bool) -> _Family:
    return _Family(negated, False, _parse_network, _parse_address,
                   lambda r, p, res: r.version == p.version and r in p)


def _eq(a: Any, b: Any) -> bool:
    return bool(a == b)


_BOOL = _string_ci(False)  # "true"/"false", compared without regard to case
_BINARY = _Family(False, False, _parse_binary, _parse_binary, lambda r, p, res: r == p)
_NULL = _Family(False, False, None, _identity, lambda r, p, res: False)  # evaluated apart

OPERATORS: Mapping[str, _Family] = {
    "StringEquals": _string(False),
    "StringNotEquals": _string(True),
    "StringEqualsIgnoreCase": _string_ci(False),
    "StringNotEqualsIgnoreCase": _string_ci(True),
    "StringLike": _string_like(False),
    "StringNotLike": _string_like(True),
    "NumericEquals": _numeric(_eq),
    "NumericNotEquals": _numeric(_eq, negated=True),
    "NumericLessThan": _numeric(lambda r, p: r < p),
    "NumericLessThanEquals": _numeric(lambda r, p: r <= p),
    "NumericGreaterThan": _numeric(lambda r, p: r > p),
    "NumericGreaterThanEquals": _numeric(lambda r, p: r >= p),
    "DateEquals": _date(_eq),
    "DateNotEquals": _date(_eq, negated=True),
    "DateLessThan": _date(lambda r, p: r < p),
    "DateLessThanEquals": _date(lambda r, p: r <= p),
    "DateGreaterThan": _date(lambda r, p: r > p),
    "DateGreaterThanEquals": _date(lambda r, p: r >= p),
    "Bool": _BOOL,
    "BinaryEquals": _BINARY,
    "IpAddress": _ip(False),
    "NotIpAddress": _ip(True),
    "ArnEquals": _arn(False),
    "ArnLike": _arn(False),
    "ArnNotEquals": _arn(True),
    "ArnNotLike": _arn(True),
    "Null": _NULL,
}

_QUALIFIERS = ("ForAnyValue", "ForAllValues")


def split_operator(name: str) -> tuple[str, str | None, bool] | None:
    """``"ForAnyValue:StringLikeIfExists"`` → ``("StringLike", "ForAnyValue", True)``; None if unknown."""
    qualifier: str | None = None
    rest = name
    for q in _QUALIFIERS:
        if name.startswith(q + ":"):
            qualifier, rest = q, name[len(q) + 1:]
            break
    if_exists = rest.endswith("IfExists")
    if if_exists:
        rest = rest[: -len("IfExists")]
    if rest not in OPERATORS or (rest == "Null" and if_exists):
        return None
    return rest, qualifier, if_exists


@dataclass(frozen=True)
class Condition:
    """One (operator, key) pair of a ``Condition`` block, with its policy values."""

    operator: str  # as written, e.g. "ForAllValues:StringLikeIfExists"
    base: str  # e.g. "StringLike"
    qualifier: str | None  # "ForAnyValue", "ForAllValues" or None
    if_exists: bool
    key: str  # as written; matched case-insensitively
    values: tuple[str, ...]
    # Values parsed at policy-parse time, for the typed families (Numeric, Date, IP, Binary).
    parsed: tuple[Any, ...] | None = None

    @property
    def negated(self) -> bool:
        return OPERATORS[self.base].negated


def parse_condition_block(block: Mapping[str, Mapping[str, Sequence[str]]]) -> tuple[Condition, ...]:
    """Turn a structurally valid ``Condition`` object into :class:`Condition` records.

    ``block`` has already been checked by the document parser to be an object of objects whose
    leaves are lists of strings. Unknown operators and unparseable typed values raise
    :class:`PolicyDocumentError`.
    """
    out: list[Condition] = []
    for operator, keys in block.items():
        split = split_operator(operator)
        if split is None:
            raise policy_error("Syntax errors in policy.",
                               f"unknown condition operator {operator!r}")
        base, qualifier, if_exists = split
        family = OPERATORS[base]
        for key, values in keys.items():
            values = tuple(values)
            parsed: tuple[Any, ...] | None = None
            if base == "Null":
                bad = [v for v in values if v.lower() not in ("true", "false")]
                if bad:
                    raise policy_error(LEGACY_PARSING,
                                       f"Null condition on {key!r} takes true or false, not {bad[0]!r}")
            elif family.parse_policy is not None:
                parsed = tuple(family.parse_policy(v) for v in values)
                for raw, value in zip(values, parsed):
                    if value is None:
                        raise policy_error(
                            LEGACY_PARSING,
                            f"{operator} condition on {key!r}: {raw!r} is not a valid "
                            f"{_VALUE_KINDS[base]} value",
                        )
            out.append(Condition(operator, base, qualifier, if_exists, key, values, parsed))
    return tuple(out)


_VALUE_KINDS = {
    **{name: "number" for name in OPERATORS if name.startswith("Numeric")},
    **{name: "date" for name in OPERATORS if name.startswith("Date")},
    "IpAddress": "IP address or CIDR",
    "NotIpAddress": "IP address or CIDR",
    "BinaryEquals": "base64",
}


# --- evaluation ------------------------------------------------------------------------------

def _request_values(keys: Mapping[str, Any], key: str) -> tuple[Any, ...] | None:
    """The request's values for ``key`` (keys already lower-case); None when absent or empty."""
    raw = keys.get(key.lower())
    if raw is None:
        return None
    if isinstance(raw, bool):
        return ("true" if raw else "false",)
    if isinstance(raw, (str, bytes, bytearray, int, float, Decimal)):
        return (raw if isinstance(raw, (str, bytes, bytearray)) else str(raw),)
    if isinstance(raw, Sequence) or isinstance(raw, (set, frozenset)):
        values = tuple(("true" if v else "false") if isinstance(v, bool) else v for v in raw)
        return values or None
    return (raw,)


def evaluate_condition(cond: Condition, keys: Mapping[str, Any], resolve: Resolver | None) -> bool:
    """Whether one condition holds for a request context (``keys`` lower-cased, see module doc)."""
    values = _request_values(keys, cond.key)
    if cond.base == "Null":
        present = values is not None
        return any((v.lower() == "true") != present for v in cond.values)
    if values is None:
        if cond.if_exists or cond.qualifier == "ForAllValues":
            return True
        if cond.qualifier == "ForAnyValue":
            return False
        return cond.negated
    family = OPERATORS[cond.base]
    policy_values = cond.parsed if cond.parsed is not None else cond.values
    if not family.variables:
        resolve = None

    def matches(request_value: Any) -> bool:
        typed = family.parse_request(request_value)
        if typed is None:
            return False
        return any(family.compare(typed, p, resolve) for p in policy_values)

    if family.negated:
        satisfied: Callable[[Any], bool] = lambda v: not matches(v)  # noqa: E731
    else:
        satisfied = matches
    if cond.qualifier == "ForAllValues":
        return all(satisfied(v) for v in values)
    if cond.qualifier == "ForAnyValue":
        return any(satisfied(v) for v in values)
    if family.negated:
        return not any(matches(v) for v in values)
    return any(matches(v) for v in values)


def conditions_hold(conditions: Sequence[Condition], keys: Mapping[str, Any],
                    resolve: Resolver | None) -> bool:
    """All conditions of a statement hold (AND)."""
    return all(evaluate_condition(c, keys, resolve) for c in conditions)
