"""PostgreSQL statements as the engine reads them (pure): pglast, PostgreSQL's own parser.

Theory of operation. ``pglast`` wraps libpg_query, the PostgreSQL server's grammar compiled as a
library, so quoting (``"RdsAdmin"`` is another role than ``rdsadmin``, ``U&"\\0072dsadmin"`` the
same one), dollar quoting, comments, nested comments and case folding are decided exactly as the
engine decides them. Its grammar is newer than the engines' (15): it reads everything 15 reads.

A text is parsed once, to libpg_query's JSON (one C call, a few microseconds): a statement
whose JSON holds none of the node types the rules look at (:data:`INTERESTING`) needs no
further reading, which keeps ordinary traffic of inspected sessions cheap. The rest is read
from the decoded JSON (plain dicts and lists; enum values as strings), not from pglast's AST
objects, which cost ten times as much to build.

Literals and comments are masked for the audit log with PostgreSQL's own scanner, so no
password, in any spelling, reaches a log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pglast import parser as _parser

__all__ = ["ParseFailure", "Statement", "INTERESTING", "parse", "plain", "native_settings_safe", "mask", "walk", "nodes_of",
           "backslash_in_standard_string"]

# Node types at least one rule reads (pg_rules.py); a statement with none of them passes as it is.
INTERESTING = (
    '"AlterRoleStmt":', '"AlterRoleSetStmt":', '"RenameStmt":', '"DropRoleStmt":', '"GrantRoleStmt":',
    '"CreateRoleStmt":', '"CommentStmt":', '"SecLabelStmt":', '"VariableSetStmt":',
    '"AlterDefaultPrivilegesStmt":', '"DoStmt":', '"CallStmt":', '"ExecuteStmt":', '"FuncCall":',
    '"CreateFunctionStmt":', '"DiscardStmt":', '"AlterFunctionStmt":', '"ReassignOwnedStmt":',
    '"DropOwnedStmt":', '"AlterOwnerStmt":', '"setstmt":',
)


class ParseFailure(Exception):
    """The text is not a statement the parser reads (its message is PostgreSQL's)."""


@dataclass(frozen=True)
class Statement:
    kind: str  # the node type: "AlterRoleStmt", "SelectStmt" ...
    node: dict[str, Any]  # its fields (libpg_query JSON); {} for plain statements
    text: str  # the statement's own text within the query string


def parse(sql: str) -> list[Statement]:
    """The statements of a query string, or ``[]`` when none holds a node of interest.
    Raises :class:`ParseFailure` when the parser refuses the text."""
    if "\x00" in sql:  # libpg_query reads a C string; the engine refuses a NUL in a message
        raise ParseFailure("invalid message format")
    try:
        raw = _parser.parse_sql_json(sql)
    except _parser.ParseError as exc:
        raise ParseFailure(str(exc.args[0]) if exc.args else "syntax error") from None
    except Exception as exc:  # noqa: BLE001 - e.g. a NUL byte: the engine refuses those too
        raise ParseFailure(f"cannot read the statement: {type(exc).__name__}") from None
    if not interesting(raw):
        return []
    try:
        tree = json.loads(raw)
    except RecursionError:  # nesting deeper than Python's decoder goes: refused, never passed
        raise ParseFailure("statement nested too deeply for the gateway to read") from None
    out: list[Statement] = []
    encoded = sql.encode("utf-8")  # libpg_query's locations are byte offsets
    for entry in tree.get("stmts", ()):
        stmt = entry.get("stmt") or {}
        kind, node = next(iter(stmt.items())) if stmt else ("EmptyStmt", {})
        start = entry.get("stmt_location", 0)
        length = entry.get("stmt_len") or len(encoded) - start
        text = encoded[start:start + length].decode("utf-8", "replace").strip()
        out.append(Statement(kind, node, text))
    return out


def plain(sql: str) -> bool:
    """True when the text parses and holds no node any rule reads: it passes whatever the
    session's facts (the hot path of inspected sessions: one C call and a few substring tests)."""
    if "\x00" in sql:
        return False
    try:
        raw = _parser.parse_sql_json(sql)
    except Exception:  # noqa: BLE001 - judge() says why
        return False
    return not interesting(raw)


# What may change a setting the engine reports in ParameterStatus (client_encoding ...).
_SETTINGS = ('"VariableSetStmt":', '"DiscardStmt":', "set_config")


def native_settings_safe(sql: str) -> bool:
    """True when the text cannot change a setting of the session (no SET, RESET, DISCARD or
    set_config call): a relay that does not read the engine's ParameterStatus may forward it."""
    try:
        raw = _parser.parse_sql_json(sql)
    except Exception:  # noqa: BLE001
        return False
    return not any(marker in raw for marker in _SETTINGS)


def backslash_in_standard_string(sql: str) -> bool:
    """True when an ordinary string literal ('...', not E'...' nor dollar-quoted) holds a
    backslash, or the text cannot be scanned. pglast reads such a literal as PostgreSQL does
    with ``standard_conforming_strings`` on (the backslash is a character); with it off the
    engine reads an escape, so ``'\''`` is one literal here and a literal followed by code
    there. Up to the first such backslash both readings are the same: a text without one is
    read alike whatever the setting."""
    if "\\" not in sql:
        return False
    try:
        tokens = _parser.scan(sql)
    except Exception:  # noqa: BLE001 - unreadable: not the same for sure
        return True
    return any(token.name == "SCONST" and sql[token.start:token.start + 1] == "'" and "\\" in sql[token.start:token.end + 1]
               for token in tokens)


def interesting(raw_json: str) -> bool:
    return any(marker in raw_json for marker in INTERESTING)


_LITERALS = frozenset({"SCONST", "USCONST", "ICONST", "FCONST", "BCONST", "XCONST"})
_COMMENTS = frozenset({"C_COMMENT", "SQL_COMMENT"})


def mask(sql: str) -> str:
    """The statement with every constant replaced by ``?`` and every comment dropped (for the
    audit log), by PostgreSQL's own scanner: no password or comment text, in any spelling or
    statement (``COMMENT ON``, ``SECURITY LABEL`` included), reaches a log. A text the scanner
    cannot read is not logged beyond its length."""
    try:
        tokens = _parser.scan(sql)
    except Exception:  # noqa: BLE001
        return f"<unreadable statement, {len(sql)} characters>"
    out: list[str] = []
    pos = 0
    for token in tokens:  # offsets are characters, ``end`` inclusive
        if token.name in _LITERALS or token.name in _COMMENTS:
            out.append(sql[pos:token.start])
            out.append("?" if token.name in _LITERALS else "")
            pos = token.end + 1
    out.append(sql[pos:])
    return "".join(out).strip()


def walk(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (node type, fields) pair in a JSON tree, depth first."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if isinstance(value, dict) and key[:1].isupper():
                    yield key, value
                if isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def nodes_of(node: Any, kind: str) -> Iterator[dict[str, Any]]:
    for k, fields in walk(node):
        if k == kind:
            yield fields
