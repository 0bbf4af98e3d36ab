"""What a MariaDB statement does, as far as the guard needs to know (pure).

:func:`classify` reads one statement's tokens (:mod:`.mysql_lexer`) and reports its
:class:`Kind`, every table it may write (schema-qualified; unqualified names take the session's
current database, or stay unknown when that is unknown), the databases it changes by DDL, and
whether it is *opaque*: something that runs SQL the guard cannot read (``CALL``, ``EXECUTE`` of
a prepared statement, ``EXECUTE IMMEDIATE`` or ``PREPARE … FROM`` of an expression). Writes are
found wherever a write verb stands, not only at the start of the statement, so ``ANALYZE
UPDATE``, ``INSERT … ON DUPLICATE KEY UPDATE`` or a statement of a routine body behind a
``DECLARE … HANDLER FOR`` are seen too: over-reading makes the guard stricter, never blinder.

A literal of ``PREPARE s FROM '…'`` or ``EXECUTE IMMEDIATE '…'`` is returned as ``dynamic``
for the caller to judge as statements of its own. ``PREPARE s FROM @var`` and ``EXECUTE
IMMEDIATE @var`` (one user variable, nothing else) stay opaque but name the variable in
``variable`` (lower case, without the ``@``): the gateway may read its value on the session and
judge it as a literal (``mysql_grants.judge``'s ``variables``). A compound statement (routine,
trigger or event body; ``BEGIN NOT ATOMIC``) has ``body`` set to the tokens inside it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .mysql_lexer import NAME, NUMBER, OP, QNAME, SEMI, STRING, VAR, Statement, Token, opens_compound

__all__ = ["Kind", "Classified", "TableRef", "classify", "UNKNOWN_DB"]

UNKNOWN_DB = "\0unknown"  # the current database is not known (unqualified names may be anything)


class Kind(enum.Enum):
    DML = "DML"
    DDL = "DDL"
    FLUSH = "FLUSH"
    CREATE_ROLE = "CREATE ROLE"
    ACCOUNT = "ACCOUNT"  # GRANT, REVOKE, ALTER/CREATE/DROP/RENAME USER, SET PASSWORD, SET DEFAULT ROLE
    SET_ROLE = "SET ROLE"
    CALL = "CALL"
    PREPARE = "PREPARE"
    EXECUTE = "EXECUTE"
    EXECUTE_IMMEDIATE = "EXECUTE IMMEDIATE"
    DEALLOCATE = "DEALLOCATE"
    USE = "USE"
    SET = "SET"
    COMPOUND = "COMPOUND"  # a routine, trigger or event definition, or an anonymous block
    OTHER = "OTHER"


@dataclass(frozen=True)
class TableRef:
    schema: str  # lower case; UNKNOWN_DB when the current database is unknown
    name: str  # lower case


@dataclass
class Classified:
    kind: Kind
    verb: str = ""
    dml_writes: set[TableRef] = field(default_factory=set)  # INSERT/REPLACE/UPDATE/LOAD targets
    deletes: set[TableRef] = field(default_factory=set)  # DELETE targets
    ddl_tables: set[TableRef] = field(default_factory=set)  # tables created, altered, dropped, renamed ...
    ddl_databases: set[str] = field(default_factory=set)
    opaque: bool = False
    flush_privileges: bool = False
    refresh: bool = False  # GRANT, REVOKE, ALTER USER: the server reads the account's stored row again
    use_db: str | None = None  # USE db: the new current database
    sql_mode: str | None = None  # SET sql_mode = '…' (a literal); "" when set to something else
    prepare_name: str | None = None
    execute_name: str | None = None
    dynamic: str | None = None  # the literal text of PREPARE … FROM '…' / EXECUTE IMMEDIATE '…'
    variable: str | None = None  # PREPARE … FROM @v / EXECUTE IMMEDIATE @v: the name (lower case, no @)
    view_sources: set[TableRef] = field(default_factory=set)  # CREATE/ALTER VIEW: every name after AS
    call: TableRef | None = None  # CALL: the routine (schema UNKNOWN_DB when not known)
    call_args: list[str | None] | None = None  # CALL: each argument's string value, None if not a literal
    body: list[Token] | None = None  # the inside of a compound statement
    numbers: list[int] = field(default_factory=list)  # integer literals (naming privileges)
    bad: bool = False  # malformed (unterminated quote or comment)
    unknown: bool = False  # a statement verb the guard does not know
    kill: int | None = None  # KILL [CONNECTION|QUERY] n: the thread id (-1: not a literal)
    kill_user_at: int | None = None  # KILL … USER account: the account's token index
    tokens: list[Token] = field(default_factory=list)


_DML_WRITE_VERBS = frozenset({"INSERT", "REPLACE", "UPDATE", "DELETE", "LOAD"})
_TABLE_REF_STOP = frozenset({
    "SET", "WHERE", "ORDER", "LIMIT", "VALUES", "VALUE", "SELECT", "PARTITION", "RETURNING", "ON", "USING",
    "WITH", "UNION", "(", ")",
})
_JOIN_WORDS = frozenset({"JOIN", "INNER", "LEFT", "RIGHT", "OUTER", "CROSS", "NATURAL", "STRAIGHT_JOIN", "AS"})
_MODIFIERS = frozenset({"LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "QUICK", "INTO", "CONCURRENT", "LOCAL"})


def _name_at(tokens: list[Token], k: int, db: str | None) -> tuple[TableRef | None, int]:
    """A table name starting at ``tokens[k]`` (``a``, ``a.b``); returns (ref, next index)."""
    if k >= len(tokens) or not tokens[k].is_name:
        return None, k + 1
    first = tokens[k].value
    if k + 2 < len(tokens) and tokens[k + 1].text == "." and tokens[k + 2].is_name:
        return TableRef(first.lower(), tokens[k + 2].value.lower()), k + 3
    if db is None:
        return None, k + 1  # no current database: an unqualified name is an error for the server
    return TableRef(db if db == UNKNOWN_DB else db.lower(), first.lower()), k + 1


def _table_list(tokens: list[Token], k: int, db: str | None, stop: frozenset[str]) -> tuple[set[TableRef], int]:
    """Every table name of a table-reference list from ``tokens[k]`` up to a stop word
    (aliases and join words are read as names too: the guard over-reads)."""
    refs: set[TableRef] = set()
    n = len(tokens)
    while k < n:
        tok = tokens[k]
        if tok.upper in stop or tok.text in stop or tok.kind == SEMI:
            break
        if tok.upper in _JOIN_WORDS or tok.text == ",":
            k += 1
            continue
        if tok.is_name:
            ref, k = _name_at(tokens, k, db)
            if ref is not None:
                refs.add(ref)
            continue
        k += 1
    return refs, k


def _writes_at(tokens: list[Token], k: int, db: str | None, out: Classified) -> None:
    verb = tokens[k].upper
    n = len(tokens)
    j = k + 1
    if verb in ("INSERT", "REPLACE"):
        while j < n and tokens[j].upper in _MODIFIERS:
            j += 1
        if j < n and tokens[j].upper == "TABLE":
            j += 1
        ref, _ = _name_at(tokens, j, db)
        if ref is not None:
            out.dml_writes.add(ref)
    elif verb == "UPDATE":
        while j < n and tokens[j].upper in _MODIFIERS:
            j += 1
        refs, _ = _table_list(tokens, j, db, _TABLE_REF_STOP)
        out.dml_writes |= refs
    elif verb == "DELETE":
        while j < n and tokens[j].upper in _MODIFIERS:
            j += 1
        # DELETE [t1, t2] FROM refs [USING refs] WHERE …: every name before WHERE is a target
        refs, j = _table_list(tokens, j, db, frozenset({"WHERE", "ORDER", "LIMIT", "RETURNING", "PARTITION", "FROM"}))
        out.deletes |= refs
        if j < n and tokens[j].upper == "FROM":
            more, j = _table_list(tokens, j + 1, db, frozenset({"WHERE", "ORDER", "LIMIT", "RETURNING", "PARTITION", "ON", "USING"}))
            out.deletes |= more
            if j < n and tokens[j].upper == "USING":
                more, _ = _table_list(tokens, j + 1, db, frozenset({"WHERE", "ORDER", "LIMIT", "RETURNING", "ON"}))
                out.deletes |= more
    elif verb == "LOAD":
        # LOAD DATA|XML … INTO TABLE name
        while j < n and tokens[j].kind != SEMI:
            if tokens[j].upper == "TABLE" and tokens[j - 1].upper == "INTO":
                ref, _ = _name_at(tokens, j + 1, db)
                if ref is not None:
                    out.dml_writes.add(ref)
                break
            if tokens[j].upper in ("INDEX",):  # LOAD INDEX INTO CACHE: no write
                break
            j += 1


def _ddl(tokens: list[Token], db: str | None, out: Classified) -> None:
    """Tables and databases touched by CREATE/ALTER/DROP/RENAME/TRUNCATE (and the like)."""
    n = len(tokens)
    for k, tok in enumerate(tokens):
        word = tok.upper
        if word in ("TABLE", "TABLES", "VIEW", "SEQUENCE") and k and tokens[k - 1].upper not in ("INTO", "LOCK", "FLUSH", "SHOW", "CHECKSUM"):
            refs, _ = _table_list(tokens, k + 1, db, frozenset({"(", "AS", "SELECT", "LIKE", "ENGINE", "IF", "RESTRICT", "CASCADE", "WAIT", "NOWAIT", "ADD", "DROP", "MODIFY", "CHANGE", "RENAME", "ALTER", "CONVERT", "DEFAULT", "CHARACTER", "COLLATE", "COMMENT", "PARTITION", "FORCE", "ORDER", "ALGORITHM", "LOCK", "DISCARD", "IMPORT", "AUTO_INCREMENT", "ROW_FORMAT", "CHARSET", "WITH", "SQL", "DEFINER", "TO"}))
            out.ddl_tables |= refs
            # IF [NOT] EXISTS before the name
            j = k + 1
            if j < n and tokens[j].upper == "IF":
                while j < n and tokens[j].upper in ("IF", "NOT", "EXISTS"):
                    j += 1
                refs, _ = _table_list(tokens, j, db, frozenset({"(", "AS", "SELECT", "LIKE", "ENGINE", "TO", ","}))
                out.ddl_tables |= refs
        elif word in ("TO", "AS") and any(t.upper == "RENAME" for t in tokens[:k]):
            ref, _ = _name_at(tokens, k + 1, db)
            if ref is not None:
                out.ddl_tables.add(ref)
        elif word == "ON" and out.verb in ("CREATE", "DROP") and k and any(t.upper in ("INDEX", "TRIGGER") for t in tokens[:k]):
            ref, _ = _name_at(tokens, k + 1, db)
            if ref is not None:
                out.ddl_tables.add(ref)
        elif word in ("DATABASE", "SCHEMA") and k and tokens[k - 1].upper in ("CREATE", "DROP", "ALTER", "REPLACE"):
            j = k + 1
            while j < n and tokens[j].upper in ("IF", "NOT", "EXISTS"):
                j += 1
            if j < n and tokens[j].is_name:
                out.ddl_databases.add(tokens[j].value.lower())
            elif tokens[k - 1].upper == "ALTER" and db is not None:  # ALTER DATABASE with no name: the current one
                out.ddl_databases.add(db.lower())


def _string_after(tokens: list[Token], k: int) -> Token | None:
    """The string literal at ``tokens[k]`` (also ``_charset'…'``), else None."""
    if k < len(tokens) and tokens[k].kind == STRING:
        return tokens[k] if k + 1 >= len(tokens) or tokens[k + 1].kind == SEMI else None
    if k + 1 < len(tokens) and tokens[k].kind == NAME and tokens[k].value.startswith("_") and tokens[k + 1].kind == STRING:
        return tokens[k + 1] if k + 2 >= len(tokens) else None
    return None


def _user_variable_after(tokens: list[Token], k: int) -> str | None:
    """The name of the one user variable at ``tokens[k]`` that ends the statement (``@v``,
    ``@'v'``, ``@"v"``, ``@`v```; not ``@@system``), lower case without the ``@``: MariaDB's
    user variable names are case-insensitive."""
    if k >= len(tokens) or tokens[k].kind != VAR or tokens[k].bad or tokens[k].value.startswith("@@"):
        return None
    if k + 1 < len(tokens) and tokens[k + 1].kind != SEMI:
        return None
    name = tokens[k].value[1:]
    return name.lower() if name else None


def _int(text: str) -> int | None:
    try:
        return int(text, 0) if text.lower().startswith(("0x", "0b")) else int(text)
    except ValueError:
        return None


def _skip_definer(tokens: list[Token], k: int) -> int:
    """Skip ``OR REPLACE``, ``DEFINER = x``, ``SQL SECURITY …``, ``AGGREGATE`` …"""
    n = len(tokens)
    while k < n:
        word = tokens[k].upper
        if word in ("OR", "REPLACE", "AGGREGATE", "NONSEMANTIC", "ALGORITHM", "TEMPORARY", "UNDEFINED", "MERGE", "TEMPTABLE"):
            k += 1
        elif word == "DEFINER":
            k += 1
            if k < n and tokens[k].text == "=":
                k += 1
            while k < n and (tokens[k].is_name or tokens[k].kind in (STRING, VAR) or tokens[k].text in ("@", "(", ")")):
                k += 1
                if k < n and tokens[k - 1].text == "(":
                    continue
        elif word == "SQL" and k + 1 < n and tokens[k + 1].upper == "SECURITY":
            k += 3
        else:
            break
    return k


def classify(stmt: Statement, db: str | None) -> Classified:
    """Classify one statement; ``db`` is the current database (None: none, UNKNOWN_DB: not known)."""
    tokens = stmt.tokens
    first = tokens[0].upper if tokens else ""
    out = Classified(Kind.OTHER, verb=first, tokens=tokens)
    out.bad = any(t.bad for t in tokens)
    for tok in tokens:
        if tok.kind == NUMBER and (value := _int(tok.text)) is not None:
            out.numbers.append(value)
        elif tok.kind == STRING and "access" in tok.value:
            out.numbers += [v for w in _digits(tok.value) if (v := _int(w)) is not None]
    for k, tok in enumerate(tokens):
        if tok.upper in _DML_WRITE_VERBS:
            _writes_at(tokens, k, db, out)
    if out.dml_writes or out.deletes:
        out.kind = Kind.DML
    if not tokens:
        return out
    if opens_compound(tokens):
        out.kind = Kind.COMPOUND
        out.body = _compound_body(tokens)
        if first == "CREATE":
            _ddl(tokens[: len(tokens) - len(out.body)], db, out)
        return out
    second = tokens[1].upper if len(tokens) > 1 else ""
    if first in ("CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE"):
        k = _skip_definer(tokens, 1)
        obj = tokens[k].upper if k < len(tokens) else ""
        if first == "CREATE" and obj == "ROLE":
            out.kind = Kind.CREATE_ROLE
        elif obj in ("USER", "ROLE"):
            out.kind = Kind.ACCOUNT
            out.refresh = first == "ALTER"
        else:
            out.kind = Kind.DDL
            if first == "TRUNCATE":
                ref, _ = _name_at(tokens, 2 if second == "TABLE" else 1, db)
                if ref is not None:
                    out.ddl_tables.add(ref)
            _ddl(tokens, db, out)
            view = next((j for j, t in enumerate(tokens[:16]) if t.upper == "VIEW"), None)
            if view is not None:
                after_as = next((j for j, t in enumerate(tokens) if t.upper == "AS" and j > view), None)
                if after_as is not None:
                    j = after_as + 1
                    while j < len(tokens):
                        ref, nxt = _name_at(tokens, j, db)
                        if ref is not None:
                            out.view_sources.add(ref)
                        j = max(nxt, j + 1)
    elif first in ("GRANT", "REVOKE"):
        out.kind = Kind.ACCOUNT
        out.refresh = True
    elif first == "FLUSH":
        out.kind = Kind.FLUSH
        out.flush_privileges = any(t.upper == "PRIVILEGES" for t in tokens[1:])
    elif first == "CALL":
        out.kind = Kind.CALL
        out.opaque = True
        ref, k = _name_at(tokens, 1, db if db is not None else UNKNOWN_DB)
        out.call = ref
        out.call_args = _call_args(tokens, k)
    elif first == "EXECUTE":
        if second == "IMMEDIATE":
            out.kind = Kind.EXECUTE_IMMEDIATE
            literal = _string_after(tokens, 2)
            if literal is None or literal.bad:
                out.opaque = True
                out.variable = _user_variable_after(tokens, 2)
            else:
                out.dynamic = literal.value
        else:
            out.kind = Kind.EXECUTE
            out.execute_name = tokens[1].value.lower() if len(tokens) > 1 and tokens[1].is_name else None
            if out.execute_name is None:
                out.opaque = True
    elif first == "PREPARE":
        out.kind = Kind.PREPARE
        out.prepare_name = tokens[1].value.lower() if len(tokens) > 1 and tokens[1].is_name else None
        literal = _string_after(tokens, 3) if len(tokens) > 3 and tokens[2].upper == "FROM" else None
        if literal is None or literal.bad or out.prepare_name is None:
            out.opaque = True
            if out.prepare_name is not None and len(tokens) > 3 and tokens[2].upper == "FROM":
                out.variable = _user_variable_after(tokens, 3)
        else:
            out.dynamic = literal.value
    elif first in ("DEALLOCATE", "DROP") and second == "PREPARE":
        out.kind = Kind.DEALLOCATE
        out.prepare_name = tokens[2].value.lower() if len(tokens) > 2 and tokens[2].is_name else None
    elif first == "USE":
        out.kind = Kind.USE
        out.use_db = tokens[1].value if len(tokens) > 1 and tokens[1].is_name else None
        if out.use_db is None:
            out.bad = True
    elif first == "SET":
        _classify_set(tokens, out)
    elif first == "KILL":
        _classify_kill(tokens, out)
    elif out.kind is Kind.OTHER and first not in _KNOWN_VERBS and first not in ("(",):
        out.opaque = True  # a statement the guard does not know: it cannot see into it
        out.unknown = True
    if out.bad:
        out.opaque = True
    return out


def _call_args(tokens: list[Token], k: int) -> list[str | None]:
    """The arguments of ``CALL name(…)``: a string literal's value, or None for anything else."""
    if k >= len(tokens) or tokens[k].text != "(":
        return []
    args: list[str | None] = []
    current: list[Token] = []
    depth = 0
    for tok in tokens[k + 1:]:
        if tok.text == "(":
            depth += 1
        elif tok.text == ")":
            if depth == 0:
                break
            depth -= 1
        if tok.text == "," and depth == 0:
            args.append(current[0].value if len(current) == 1 and current[0].kind == STRING else None)
            current = []
            continue
        current.append(tok)
    if current:
        args.append(current[0].value if len(current) == 1 and current[0].kind == STRING else None)
    return args


def _classify_kill(tokens: list[Token], out: Classified) -> None:
    """``KILL [HARD|SOFT] [CONNECTION|QUERY [ID]] n`` / ``KILL … CONNECTION_ID()`` / ``KILL … USER name``."""
    k = 1
    while k < len(tokens) and tokens[k].upper in ("HARD", "SOFT", "CONNECTION", "QUERY", "ID"):
        k += 1
    rest = tokens[k:]
    if rest and rest[0].upper == "USER":
        out.kill_user_at = k + 1
        return
    if len(rest) == 3 and rest[0].upper == "CONNECTION_ID" and rest[1].text == "(" and rest[2].text == ")":
        return  # the session's own thread: never rdsadmin's through the gateway
    value = _int(rest[0].text) if len(rest) == 1 and rest[0].kind == NUMBER else None
    out.kill = value if value is not None else -1


def _digits(text: str) -> list[str]:
    out, run = [], ""
    for c in text:
        if c.isdigit():
            run += c
        elif run:
            out.append(run)
            run = ""
    if run:
        out.append(run)
    return out


def _classify_set(tokens: list[Token], out: Classified) -> None:
    words = [t.upper for t in tokens[:4]]
    if len(words) > 1 and words[1] == "ROLE":
        out.kind = Kind.SET_ROLE
        return
    if len(words) > 2 and words[1] == "DEFAULT" and words[2] == "ROLE":
        out.kind = Kind.ACCOUNT
        return
    if len(words) > 1 and words[1] == "PASSWORD":
        out.kind = Kind.ACCOUNT
        return
    out.kind = Kind.SET
    if words[1:2] == ["STATEMENT"]:
        if any("sql_mode" in t.value.lower() for t in tokens if t.kind in (NAME, VAR)):
            out.sql_mode = ""  # for one statement only, but the guard cannot tell which mode
        return
    # SET [SESSION|LOCAL|@@session.|@@] sql_mode = '…' [, …]
    for k, tok in enumerate(tokens):
        if tok.kind in (NAME, VAR) and tok.value.lower().lstrip("@").split(".")[-1] == "sql_mode":
            if k and tokens[k - 1].upper == "GLOBAL" or tok.value.lower().startswith("@@global."):
                continue  # the global value: not this session's
            if tok.kind == VAR and not tok.value.startswith("@@"):
                continue  # a user variable named sql_mode
            j = k + 1
            if j < len(tokens) and tokens[j].text in ("=", ":="):
                literal = tokens[j + 1] if j + 1 < len(tokens) else None
                after = tokens[j + 2] if j + 2 < len(tokens) else None
                if literal is not None and literal.kind == STRING and (after is None or after.text == ","):
                    out.sql_mode = literal.value
                    continue
            out.sql_mode = ""


def _compound_body(tokens: list[Token]) -> list[Token]:
    """The tokens of a compound statement's body: from the first block opener (or, for a
    routine with a single-statement body, after the parameter list's closing parenthesis /
    ``DO`` / ``FOR EACH ROW``) to the end."""
    for k, tok in enumerate(tokens):
        if tok.upper in ("BEGIN", "IF", "CASE", "LOOP", "WHILE", "REPEAT") and k:
            return tokens[k:]
        if tok.upper in ("BEGIN", "IF", "CASE", "LOOP", "WHILE", "REPEAT", "FOR") and k == 0:
            return tokens
        if tok.upper == "DO":
            return tokens[k + 1:]
        if tok.upper == "ROW" and k >= 2 and tokens[k - 1].upper == "EACH":
            return tokens[k + 1:]
        if tok.upper == "RETURN":
            return tokens[k:]
    # a procedure whose body is one statement: whatever follows the parameter list and the
    # characteristics; the guard reads every token after the name as body (over-reading)
    return tokens[3:]


_KNOWN_VERBS = frozenset({
    "SELECT", "WITH", "VALUES", "TABLE", "INSERT", "REPLACE", "UPDATE", "DELETE", "LOAD", "SHOW", "DESCRIBE", "DESC",
    "EXPLAIN", "ANALYZE", "CHECK", "CHECKSUM", "OPTIMIZE", "REPAIR", "BEGIN", "START", "COMMIT", "ROLLBACK",
    "SAVEPOINT", "RELEASE", "LOCK", "UNLOCK", "XA", "HANDLER", "DO", "KILL", "HELP", "BINLOG", "PURGE", "RESET",
    "CHANGE", "STOP", "INSTALL", "UNINSTALL", "SIGNAL", "RESIGNAL", "GET", "BACKUP", "CACHE", "SHUTDOWN",
    "CREATE", "ALTER", "DROP", "RENAME", "TRUNCATE", "GRANT", "REVOKE", "FLUSH", "CALL", "EXECUTE", "PREPARE",
    "DEALLOCATE", "USE", "SET",
})
