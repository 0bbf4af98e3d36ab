"""A MariaDB lexer for the statement guard (pure; never raises, never loops without progress).

Theory of operation (MariaDB KB "Comment Syntax", "String Literals", "Identifier Names",
"SQL_MODE"; ``sql/sql_lex.cc``). The server's lexer is reproduced as far as a guard needs it:

- strings ``'…'`` and ``"…"`` (the latter an identifier under ``ANSI_QUOTES``), with doubled
  quotes and backslash escapes (none under ``NO_BACKSLASH_ESCAPES``); ``x'…'``, ``b'…'``,
  ``n'…'`` and ``_charset'…'`` introducers are strings too;
- identifiers: backticks with doubled backticks, unquoted names of ``[0-9A-Za-z_$]`` and any
  non-ASCII character (a name may start with a digit: ``1a`` is a name, ``12`` a number);
  keywords are names compared case-insensitively (:attr:`Token.upper`);
- comments ``#…`` and ``-- …`` (two dashes then a space, control character or the end) to
  the end of the line, ``/* … */``; executable comments ``/*! … */``, ``/*!50000 … */`` and
  ``/*M!100000 … */`` are code: their content is lexed as if the markers were not there,
  unless their version is above every MariaDB 10.11 (:data:`ENGINE_VERSION_ID`), which skips
  them (``mariadb-dump`` starts with ``/*M!999999\\- enable the sandbox mode */``); a version
  between the engine's own and that bound is read as code, which only makes the guard stricter;
- ``@var``, ``@'var'``, ``@@global.var`` are one token; ``?`` is a parameter marker.

A statement ends at ``;`` outside quotes and comments, except inside a compound statement
(``BEGIN … END`` and the ``IF``/``CASE``/``LOOP``/``WHILE``/``REPEAT``/``FOR`` blocks of a
routine, trigger or event body, or of an anonymous ``BEGIN NOT ATOMIC`` block), where the
server parses the whole block as one statement. ``DELIMITER`` is a command of the ``mysql``
client, never sent to the server: here it is a name like any other.

Malformed input (an unterminated string, quoted name or comment) never raises: the token is
marked ``bad`` and runs to the end of the input, and whoever judges the statement treats it as
something the guard cannot see into.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Token", "Statement", "lex", "split", "SqlMode"]

# token kinds
NAME = "name"  # unquoted identifier or keyword
QNAME = "qname"  # quoted identifier (backticks, or "…" under ANSI_QUOTES)
STRING = "string"
NUMBER = "number"
VAR = "var"  # @x, @@x
PARAM = "param"  # ?
OP = "op"  # punctuation and operators, one or more characters
SEMI = "semi"


@dataclass(frozen=True)
class SqlMode:
    ansi_quotes: bool = False
    no_backslash_escapes: bool = False

    @classmethod
    def parse(cls, value: str | None) -> SqlMode:
        flags = {f.strip().upper() for f in (value or "").split(",")}
        ansi = bool(flags & {"ANSI_QUOTES", "ANSI", "DB2", "MAXDB", "MSSQL", "ORACLE", "POSTGRESQL"})
        return cls(ansi_quotes=ansi, no_backslash_escapes="NO_BACKSLASH_ESCAPES" in flags)


@dataclass(frozen=True)
class Token:
    kind: str
    text: str  # the source text of the token
    value: str  # names: as written (quotes removed); strings: the decoded value; else the text
    start: int
    end: int
    bad: bool = False  # unterminated

    @property
    def upper(self) -> str:
        """The keyword form (unquoted names only; anything else never matches a keyword)."""
        return self.value.upper() if self.kind == NAME else ""

    @property
    def is_name(self) -> bool:
        return self.kind in (NAME, QNAME)


@dataclass
class Statement:
    tokens: list[Token] = field(default_factory=list)
    text: str = ""  # the source text, from the first token to the last

    def __bool__(self) -> bool:
        return bool(self.tokens)


_NAME_CHAR = re.compile(r"[0-9A-Za-z_$\u0080-\U0010ffff]+")
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|0[xX][0-9a-fA-F]+|0[bB][01]+")
_DIGITS_DOT = re.compile(r"\d*\.\d+(?:[eE][+-]?\d+)?|\d+\.(?:\d*(?:[eE][+-]?\d+)?)?")
_OPERATORS = ("<=>", "->>", ":=", "<=", ">=", "<>", "!=", "||", "&&", "<<", ">>", "->")
_ESCAPES = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}
_EXEC_COMMENT = re.compile(r"/\*(?:!|M!)(\d{5,6})?")
# Executable comments with a higher version are plain comments to the engine (MariaDB 10.11.x).
ENGINE_VERSION_ID = 101199


def _quoted(text: str, i: int, quote: str, backslash: bool) -> tuple[str, int, bool]:
    """Read a quoted run starting at ``text[i] == quote``; returns (value, end, bad)."""
    out: list[str] = []
    n = len(text)
    j = i + 1
    while j < n:
        c = text[j]
        if backslash and c == "\\":
            if j + 1 >= n:
                return "".join(out), n, True
            nxt = text[j + 1]
            out.append(_ESCAPES.get(nxt, nxt if nxt not in "%_" else "\\" + nxt))
            j += 2
            continue
        if c == quote:
            if j + 1 < n and text[j + 1] == quote:
                out.append(quote)
                j += 2
                continue
            return "".join(out), j + 1, False
        out.append(c)
        j += 1
    return "".join(out), n, True


def lex(text: str, mode: SqlMode = SqlMode()) -> list[Token]:
    """Every token of ``text`` (comments dropped, executable comments' content kept)."""
    tokens: list[Token] = []
    n = len(text)
    i = 0
    exec_depth = 0  # inside /*! … */: the next */ closes it
    backslash = not mode.no_backslash_escapes
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c == "#" or (c == "-" and text.startswith("--", i) and (i + 2 >= n or text[i + 2].isspace() or ord(text[i + 2]) < 32)):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if c == "/" and text.startswith("/*", i):
            m = _EXEC_COMMENT.match(text, i)
            if m and not (m.group(1) and int(m.group(1)) > ENGINE_VERSION_ID):
                exec_depth += 1
                i = m.end()
                continue
            j = text.find("*/", i + 2)
            if j < 0:
                tokens.append(Token(OP, text[i:], text[i:], i, n, bad=True))
                return tokens
            i = j + 2
            continue
        if c == "*" and exec_depth and text.startswith("*/", i):
            exec_depth -= 1
            i += 2
            continue
        start = i
        if c == "`" or (c == '"' and mode.ansi_quotes):
            value, i, bad = _quoted(text, i, c, False)
            tokens.append(Token(QNAME, text[start:i], value, start, i, bad))
            continue
        if c in "'\"":
            value, i, bad = _quoted(text, i, c, backslash)
            tokens.append(Token(STRING, text[start:i], value, start, i, bad))
            continue
        if c in "xXbBnN" and i + 1 < n and text[i + 1] == "'":
            value, i, bad = _quoted(text, i + 1, "'", c in "nN" and backslash)
            tokens.append(Token(STRING, text[start:i], value, start, i, bad))
            continue
        if c == "@":
            j = i + 1
            if j < n and text[j] == "@":
                j += 1
                m = _NAME_CHAR.match(text, j)
                while m:  # @@global.name, @@session.name
                    j = m.end()
                    if j < n and text[j] == "." and (m := _NAME_CHAR.match(text, j + 1)):
                        continue
                    break
                tokens.append(Token(VAR, text[i:j], text[i:j], i, j))
                i = j
                continue
            if j < n and text[j] in "'\"`":
                value, i, bad = _quoted(text, j, text[j], text[j] != "`" and backslash)
                tokens.append(Token(VAR, text[start:i], "@" + value, start, i, bad))
                continue
            m = _NAME_CHAR.match(text, j)
            i = m.end() if m else j
            tokens.append(Token(VAR, text[start:i], text[start:i], start, i))
            continue
        if c.isdigit() or (c == "." and i + 1 < n and text[i + 1].isdigit() and not (tokens and tokens[-1].is_name)):
            m = _NAME_CHAR.match(text, i)
            word = m.group() if m else ""
            num = _DIGITS_DOT.match(text, i) if c.isdigit() or c == "." else None
            if num and num.end() > i + len(word) and not (tokens and tokens[-1].is_name and c == "."):
                i = num.end()
                tokens.append(Token(NUMBER, text[start:i], text[start:i], start, i))
                continue
            if word and _NUMBER.fullmatch(word):
                i += len(word)
                tokens.append(Token(NUMBER, word, word, start, i))
                continue
            if word:
                i += len(word)
                tokens.append(Token(NAME, word, word, start, i))
                continue
        m = _NAME_CHAR.match(text, i)
        if m:
            i = m.end()
            tokens.append(Token(NAME, m.group(), m.group(), start, i))
            continue
        if c == ";":
            tokens.append(Token(SEMI, ";", ";", i, i + 1))
            i += 1
            continue
        if c == "?":
            tokens.append(Token(PARAM, "?", "?", i, i + 1))
            i += 1
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                break
        else:
            op = c
        i += len(op)
        tokens.append(Token(OP, op, op, start, i))
    return tokens


# --- statement splitting ------------------------------------------------------------------------

_BLOCK_OPENERS = frozenset({"BEGIN", "IF", "CASE", "LOOP", "WHILE", "REPEAT", "FOR"})
_BODY_OBJECTS = frozenset({"PROCEDURE", "FUNCTION", "TRIGGER", "EVENT", "PACKAGE"})


def opens_compound(tokens: list[Token]) -> bool:
    """Whether a statement beginning with ``tokens`` holds a compound body whose ``;`` do not
    end it: ``CREATE … PROCEDURE|FUNCTION|TRIGGER|EVENT|PACKAGE …``, ``BEGIN NOT ATOMIC`` and
    labelled blocks (``l: BEGIN``, ``WHILE``, ``LOOP``, ``REPEAT``, ``FOR``, ``IF``, ``CASE``
    at the start)."""
    if not tokens:
        return False
    first = tokens[0].upper
    if first == "ALTER":  # ALTER EVENT … DO <body> replaces the body
        return any(t.upper == "EVENT" for t in tokens[1:4]) and any(t.upper == "DO" for t in tokens)
    if first == "CREATE":
        for tok in tokens[1:12]:
            if tok.upper in _BODY_OBJECTS:
                return True
            if tok.upper in ("TABLE", "VIEW", "INDEX", "USER", "ROLE", "DATABASE", "SCHEMA", "SERVER", "SEQUENCE"):
                return False
        return False
    if first == "BEGIN":
        return len(tokens) > 1 and tokens[1].upper == "NOT"
    if first in ("IF", "CASE", "LOOP", "WHILE", "REPEAT", "FOR"):
        return first != "IF" or not (len(tokens) > 1 and tokens[1].text == "(")
    if len(tokens) > 2 and tokens[0].is_name and tokens[1].text == ":":
        return tokens[2].upper in _BLOCK_OPENERS
    return False


def _block_delta(tokens: list[Token], k: int, at_start: bool) -> int:
    """+1 when ``tokens[k]`` opens a block, -1 when it closes one, else 0 (inside a body).
    ``at_start``: the token begins a statement of the body (after ``;``, a label or a block
    header), where IF, LOOP, WHILE, REPEAT and FOR are blocks rather than functions or
    clauses (``IF(…)``, ``IF EXISTS``, ``FOR UPDATE``, ``HANDLER FOR``)."""
    tok = tokens[k]
    word = tok.upper
    if not word:
        return 0
    prev = tokens[k - 1].upper if k else ""
    if word == "END":
        return -1
    if prev == "END":  # END IF / END CASE / END LOOP / END WHILE / END REPEAT / END FOR
        return 0
    if word == "CASE":
        return 1  # a CASE expression ends with END too
    if word == "BEGIN":
        nxt = tokens[k + 1] if k + 1 < len(tokens) else None
        return 0 if nxt is not None and nxt.upper in ("WORK", "TRANSACTION") else 1
    if word in ("LOOP", "WHILE", "REPEAT", "FOR", "IF"):
        return 1 if at_start else 0
    return 0


_STARTS_BODY_STATEMENT = frozenset({"BEGIN", "THEN", "ELSE", "DO", "LOOP", "REPEAT", "ATOMIC"})


def split(text: str, mode: SqlMode = SqlMode()) -> list[Statement]:
    """The statements of a COM_QUERY, in order (empty ones dropped)."""
    return split_tokens(text, lex(text, mode))


def split_tokens(text: str, tokens: list[Token]) -> list[Statement]:
    statements: list[Statement] = []
    current: list[Token] = []
    compound = False
    depth = 0
    at_start = True  # the next token starts a statement (of the packet or of a body)
    for tok in tokens:
        if tok.kind == SEMI and depth <= 0:
            if current:
                statements.append(_statement(text, current))
            current, compound, depth, at_start = [], False, 0, True
            continue
        current.append(tok)
        if not compound:
            if len(current) <= 12 and opens_compound(current):
                compound = True
                depth = 0
                for j in range(len(current)):
                    depth = max(depth + _block_delta(current, j, j == 0 or current[j - 1].text == ":"), 0)
        else:
            depth = max(depth + _block_delta(current, len(current) - 1, at_start), 0)
        at_start = tok.kind == SEMI or tok.text == ":" or tok.upper in _STARTS_BODY_STATEMENT
    if current:
        statements.append(_statement(text, current))
    return statements


def _statement(text: str, tokens: list[Token]) -> Statement:
    return Statement(tokens, text[tokens[0].start:tokens[-1].end])
