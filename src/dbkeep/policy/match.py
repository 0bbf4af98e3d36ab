"""Wildcard matching and policy variables for IAM policies.

Theory of operation
-------------------
IAM matches ``Action``, ``Resource`` and the ``StringLike``/``ArnLike`` condition values with a
two-character glob language: ``*`` matches any run of characters (including none, and across
``:`` and ``/``) and ``?`` matches exactly one character; every other character stands for
itself ("IAM JSON policy elements: Action / Resource", "Condition operators" in the IAM User
Guide). So a pattern is *escaped first* — ``.``, ``+``, ``(``, ``[``, ``$`` and every other regex
metacharacter are literal — and only then are ``*`` and ``?`` turned into regex wildcards, and
the whole value must match (a full match, never a search).

Action names are case-insensitive ("The prefix and the action name are case insensitive");
ARNs and string conditions are case-sensitive.

Linear time. A naive ``*``→``.*`` translation backtracks polynomially in the number of stars
(``*a*a*a*a*b`` against ``aaaa…``), and request values reach this code from the network. The
translation therefore splits the pattern at each ``*`` into fixed-length chunks and emits every
chunk but the first and last as an atomic group ``(?>.*?CHUNK)``: the leftmost place where a
fixed-length chunk fits is always a valid choice, so the regex engine never needs to revisit it.
The language matched is exactly the glob language above; tests check it against a
straightforward reference matcher with hypothesis.

Policy variables ("IAM policy elements: Variables and tags"): in documents whose ``Version`` is
``2012-10-17``, ``${key}`` is replaced by the value of the request-context key ``key`` (key names
are case-insensitive), ``${key, 'default'}`` falls back to ``default`` when the key is absent,
and ``${*}``, ``${?}``, ``${$}`` stand for a literal ``*``, ``?`` and ``$``. A substituted value
is literal text: a ``*`` in a user name is not a wildcard. A variable whose key is absent (and
has no default) "is effectively null … There is no equal or like value": the pattern matches
nothing. Only single-valued keys can be variables. With ``2008-10-17`` (or no ``Version``)
``${…}`` is ordinary literal text.

Compiled regexes are cached (``functools.lru_cache``) by their source text.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "Resolver",
    "arn_like",
    "compile_pattern",
    "glob_match",
    "match_action",
    "match_resource",
    "resolver_for",
    "substitute_literal",
]

# A resolver maps a (case-insensitive) key name to its single value, or None when the key is
# absent or multivalued. ``None`` in place of a resolver means "variables are not enabled".
Resolver = Callable[[str], "str | None"]

_WILD_ONE = object()  # token for "?"
_WILD_ANY = object()  # token for "*"

# ${key} or ${key, 'default'}. Keys are vendor:name with tag-style suffixes (aws:PrincipalTag/x).
_VARIABLE = re.compile(r"\$\{\s*([^\s,'{}]+)\s*(?:,\s*'([^']*)'\s*)?\}")
_SPECIALS = {"*": "*", "?": "?", "$": "$"}

_CACHE_SIZE = 4096


def _tokens(pattern: str, resolve: Resolver | None) -> list[object] | None:
    """Split a pattern into literal strings and wildcard tokens; ``None`` = unresolvable variable."""
    out: list[object] = []
    i = 0
    n = len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append(_WILD_ANY)
            i += 1
            continue
        if c == "?":
            out.append(_WILD_ONE)
            i += 1
            continue
        if c == "$" and resolve is not None and pattern.startswith("${", i):
            m = _VARIABLE.match(pattern, i)
            if m is not None:
                name, default = m.group(1), m.group(2)
                if name in _SPECIALS and default is None:
                    out.append(_SPECIALS[name])
                else:
                    value = resolve(name)
                    if value is None:
                        value = default
                    if value is None:
                        return None
                    out.append(value)
                i = m.end()
                continue
        out.append(c)
        i += 1
    return out


def _regex_source(tokens: list[object]) -> str:
    """Linear-time regex for a token list (see the module docstring)."""
    chunks: list[str] = []
    current: list[str] = []
    for t in tokens:
        if t is _WILD_ANY:
            chunks.append("".join(current))
            current = []
        elif t is _WILD_ONE:
            current.append(".")
        else:
            current.append(re.escape(t))  # type: ignore[arg-type]
    chunks.append("".join(current))
    if len(chunks) == 1:
        return chunks[0]
    middle = "".join(f"(?>.*?{c})" for c in chunks[1:-1] if c)
    return f"{chunks[0]}{middle}.*{chunks[-1]}"


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile_source(source: str) -> re.Pattern[str]:
    return re.compile(source, re.DOTALL)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile_static(pattern: str) -> re.Pattern[str]:
    tokens = _tokens(pattern, None)
    assert tokens is not None  # without a resolver nothing can be unresolved
    return _compile_source(_regex_source(tokens))


def compile_pattern(pattern: str, resolve: Resolver | None = None) -> re.Pattern[str] | None:
    """Compile a glob (after variable substitution when ``resolve`` is given).

    Returns ``None`` when the pattern uses a variable whose key is absent: such a pattern
    matches nothing.
    """
    if resolve is None or "${" not in pattern:
        return _compile_static(pattern)
    tokens = _tokens(pattern, resolve)
    if tokens is None:
        return None
    return _compile_source(_regex_source(tokens))


def glob_match(
    pattern: str, value: str, *, resolve: Resolver | None = None, ignore_case: bool = False
) -> bool:
    """Whether ``value`` matches the whole glob ``pattern``. Never raises for str inputs.

    ``ignore_case`` folds both sides to lower case; it is meant for patterns without variables
    (action names), where folding the pattern text is exact.
    """
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    if "*" not in pattern and "?" not in pattern and (resolve is None or "${" not in pattern):
        return pattern == value
    compiled = compile_pattern(pattern, resolve)
    return compiled is not None and compiled.fullmatch(value) is not None


def substitute_literal(text: str, resolve: Resolver | None) -> str | None:
    """Replace policy variables in ``text`` and return plain text (wildcards stay characters).

    Used for operators that do not interpret wildcards (``StringEquals``, ``Bool`` …), where
    ``${*}`` simply yields ``*``. ``None`` means an unresolvable variable.
    """
    if resolve is None or "${" not in text:
        return text
    tokens = _tokens(text, resolve)
    if tokens is None:
        return None
    return "".join("*" if t is _WILD_ANY else "?" if t is _WILD_ONE else str(t) for t in tokens)


def match_action(pattern: str, action: str) -> bool:
    """``Action``/``NotAction`` entry against a request action: case-insensitive, no variables."""
    return glob_match(pattern, action, ignore_case=True)


def match_resource(pattern: str, resource: str, resolve: Resolver | None = None) -> bool:
    """``Resource``/``NotResource`` entry against a resource ARN: case-sensitive, variables."""
    return glob_match(pattern, resource, resolve=resolve)


def arn_like(pattern: str, value: str, resolve: Resolver | None = None) -> bool:
    """``ArnLike``/``ArnEquals``: each of the six colon-separated ARN parts matched on its own.

    "Each of the six colon-delimited components of the ARN is checked separately and each can
    include multi-character match wildcards (*) or single-character match wildcards (?)." The
    sixth part (the resource) keeps any further colons. A bare ``*`` matches any value.
    """
    if pattern == "*":
        return True
    parts = _split_arn(pattern) if resolve is not None and "${" in pattern else pattern.split(":", 5)
    values = value.split(":", 5)
    if len(parts) != 6 or len(values) != 6:
        return False
    return all(glob_match(p, v, resolve=resolve) for p, v in zip(parts, values))


def _split_arn(pattern: str) -> list[str]:
    """``pattern.split(":", 5)`` that leaves the colons inside ``${aws:…}`` variables alone."""
    spans = [m.span() for m in _VARIABLE.finditer(pattern)]
    parts: list[str] = []
    start = 0
    for i, c in enumerate(pattern):
        if len(parts) == 5:
            break
        if c == ":" and not any(a <= i < b for a, b in spans):
            parts.append(pattern[start:i])
            start = i + 1
    parts.append(pattern[start:])
    return parts


def resolver_for(keys: Mapping[str, object]) -> Resolver:
    """Resolver over a mapping whose keys are already lower-case (see ``RequestContext``)."""

    def resolve(name: str) -> str | None:
        value = keys.get(name.lower())
        if value is None:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
            # "You can't use a multivalued condition key as a variable."
            return value[0] if len(value) == 1 and isinstance(value[0], str) else None
        return None

    return resolve
