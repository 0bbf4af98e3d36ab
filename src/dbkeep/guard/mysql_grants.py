"""The grant-table rules: no account but rdsadmin may ever hold a privilege outside the master's
list (pure).

Theory of operation. MariaDB keeps privileges in the ``mysql`` schema (``global_priv`` holds a
JSON ``access`` bit mask per account and role) and reads them into memory at start and at
``FLUSH PRIVILEGES``; ``GRANT``, ``REVOKE`` and ``ALTER USER`` also read the named account's
stored row back into memory. A session's global privileges are computed at login, by
``COM_CHANGE_USER`` and by ``SET ROLE`` (checked on MariaDB 10.11: after ``UPDATE
mysql.global_priv … ; FLUSH PRIVILEGES`` the same session still gets 1227 for ``SET GLOBAL``,
but after ``SET ROLE NONE`` it may; a stored procedure may do all of that in one ``CALL``).
The master holds INSERT/UPDATE/DELETE on ``*.*``, so it reaches those tables with plain DML.

Verdicts for the statements of one packet (:func:`judge`):

- **refuse** (``ERROR 1227``, naming the privileges the statement would give when its integer
  literals show them, else SUPER): INSERT/REPLACE/UPDATE/LOAD into ``mysql.global_priv`` or
  ``mysql.user`` (no access value written by DML can be proven within the master's list);
  any DML on the tables whose rows run code as their definer or load code (``proc``,
  ``event``, ``func``, ``plugin``, ``servers``); DDL on the grant tables or those, and on the
  ``mysql`` database itself (``RENAME TABLE mysql.global_priv …`` leaves a server nobody can
  log in to); a routine, trigger, event or anonymous block whose body writes the grant tables,
  flushes privileges or runs SQL the guard cannot read (``EXECUTE IMMEDIATE @s``, ``PREPARE``
  from a variable) — such a body could give itself a privilege and use it inside one ``CALL``.
- **hygiene after** (dbkeep takes back, through rdsadmin, every privilege outside the master's
  list before the session's next statement): any other grant-table write (DELETE, ``mysql.db``
  …), ``FLUSH PRIVILEGES``, ``CREATE ROLE``, GRANT/REVOKE/ALTER USER, and every opaque
  statement (``CALL``, ``EXECUTE``, unreadable SQL). **Hygiene before** as well for the
  statements that load stored privileges into memory (``FLUSH PRIVILEGES``, GRANT, REVOKE,
  ALTER USER), so that what they load is clean.
- Such a statement must be the last of its packet: statements after it would run before the
  hygiene, so the packet is refused (``ERROR 1235``) and nothing of it runs.

``SessionFacts`` carry what the verdict depends on: the current database (``USE``,
COM_INIT_DB; ``mysql`` may be it), the session's sql_mode as far as the lexer needs it
(``ANSI_QUOTES``, ``NO_BACKSLASH_ESCAPES``; unknown: every combination is judged and the
strictest verdict wins), and the prepared statements whose text is a hygiene trigger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from .mysql_accounts import RDSADMIN, UNREADABLE, account_at, account_refusal_rule, grant_table_rows, normal_name
from .mysql_classify import UNKNOWN_DB, Classified, Kind, TableRef, classify
from .mysql_lexer import SEMI, SqlMode, Statement, Token, lex, split_tokens

__all__ = ["PRIVILEGE_BITS", "MASTER_PRIVILEGES", "SessionFacts", "Verdict", "judge", "mask_literals",
           "ADMIN_ONLY_MASK", "privilege_names", "use_database", "Refusal", "routine_refusal"]

# MariaDB 10.11's global privilege bits (``access`` in mysql.global_priv; read back from the
# engine one bit at a time with SHOW GRANTS).
PRIVILEGE_BITS: tuple[str | None, ...] = (
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "RELOAD", "SHUTDOWN", "PROCESS", "FILE",
    "GRANT OPTION", "REFERENCES", "INDEX", "ALTER", "SHOW DATABASES", "SUPER", "CREATE TEMPORARY TABLES",
    "LOCK TABLES", "EXECUTE", "REPLICATION SLAVE", "BINLOG MONITOR", "CREATE VIEW", "SHOW VIEW",
    "CREATE ROUTINE", "ALTER ROUTINE", "CREATE USER", "EVENT", "TRIGGER", "CREATE TABLESPACE",
    "DELETE HISTORY", "SET USER", "FEDERATED ADMIN", "CONNECTION ADMIN", "READ_ONLY ADMIN",
    "REPLICATION SLAVE ADMIN", "REPLICATION MASTER ADMIN", "BINLOG ADMIN", "BINLOG REPLAY", "SLAVE MONITOR",
)
# The master's list (SPEC.md; engines/bootstrap.MYSQL_MASTER_PRIVILEGES) WITH GRANT OPTION.
MASTER_PRIVILEGES: frozenset[str] = frozenset({
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "RELOAD", "PROCESS", "REFERENCES", "INDEX", "ALTER",
    "SHOW DATABASES", "CREATE TEMPORARY TABLES", "LOCK TABLES", "EXECUTE", "REPLICATION SLAVE", "BINLOG MONITOR",
    "CREATE VIEW", "SHOW VIEW", "CREATE ROUTINE", "ALTER ROUTINE", "CREATE USER", "EVENT", "TRIGGER", "GRANT OPTION",
})
MASTER_MASK = sum(1 << i for i, name in enumerate(PRIVILEGE_BITS) if name in MASTER_PRIVILEGES)
ALL_MASK = (1 << len(PRIVILEGE_BITS)) - 1
ADMIN_ONLY_MASK = ALL_MASK & ~MASTER_MASK

GRANT_TABLES = frozenset({"user", "global_priv", "db", "tables_priv", "columns_priv", "procs_priv", "proxies_priv",
                          "roles_mapping", "host"})
PRIVILEGE_TABLES = frozenset({"user", "global_priv"})  # where global privileges live
CODE_TABLES = frozenset({"proc", "event", "func", "plugin", "servers"})  # code run as its definer, or loaded
PROTECTED_TABLES = GRANT_TABLES | CODE_TABLES
SYSTEM_DB = "mysql"

ERR_ACCESS = 1227
ERR_NOT_SUPPORTED = 1235
ERR_PARSE = 1064
# A variable is read on the session before the packet runs: one set by an earlier statement of
# the same packet cannot be (mysql_inspect.py reads it; docs/DESIGN-NOTES.md, "rdsadmin and
# rds_superuser_role untouchable").
VARIABLE_NOT_FIRST = ("Access denied; PREPARE … FROM @variable and EXECUTE IMMEDIATE @variable must be the first "
                      "statement of a query: send it as a statement of its own")
SYSTEM_USER = "SYSTEM_USER"  # Aurora MySQL 3's answer for rdsadmin (SPEC.md)


def privilege_names(mask: int) -> list[str]:
    return [name for i, name in enumerate(PRIVILEGE_BITS) if name and mask >> i & 1]


@dataclass(frozen=True)
class SessionFacts:
    database: str | None = None  # None: no current database; UNKNOWN_DB: not known
    sql_mode: SqlMode | None = SqlMode()  # None: not known
    triggers: frozenset[str] = frozenset()  # prepared statement names whose text is a hygiene trigger


@dataclass(frozen=True)
class Refusal:
    errno: int
    sqlstate: str
    message: str
    rule: str


@dataclass
class Verdict:
    refusal: Refusal | None = None
    hygiene_before: bool = False
    hygiene_after: bool = False
    rules: list[str] = field(default_factory=list)  # why hygiene runs (for the audit event)
    # the packet may run stored routines the guard has not read (CALL, unreadable SQL): the
    # cluster's routines must pass routine_refusal() first
    check_routines: bool = False
    facts: SessionFacts = SessionFacts()  # the session's facts after the packet
    # KILL of these engine threads: refused (1095) if one is rdsadmin's or the server's
    kill_threads: list[int] = field(default_factory=list)
    # the packet runs SQL the guard could not read (CALL, EXECUTE, EXECUTE IMMEDIATE of an
    # expression): rdsadmin and rds_superuser_role are checked right after it (the last line)
    opaque: bool = False
    malformed: bool = False  # a statement of this reading is malformed (see _judge_packet)
    # the packet's first statement is PREPARE … FROM @v / EXECUTE IMMEDIATE @v and the value of
    # @v was not given: read it on the session, then judge the packet again with it
    read_variable: str | None = None

    @property
    def allowed(self) -> bool:
        return self.refusal is None


def _access_denied(privileges: str, rule: str) -> Refusal:
    return Refusal(ERR_ACCESS, "42000",
                   f"Access denied; you need (at least one of) the {privileges} privilege(s) for this operation", rule)


def _in_system(ref: TableRef, names: frozenset[str]) -> bool:
    return ref.name in names and ref.schema in (SYSTEM_DB, UNKNOWN_DB)


def _named_privileges(c: Classified) -> str:
    mask = 0
    for value in c.numbers:
        if 0 <= value < 1 << 64:
            mask |= value
    names = privilege_names(mask & ADMIN_ONLY_MASK)
    return ", ".join(names) if names else "SUPER"


@dataclass
class _Judged:
    refusal: Refusal | None = None
    before: bool = False
    after: bool = False  # a hygiene trigger
    rule: str = ""
    routines: bool = False  # may run stored routines
    kill: int | None = None  # a thread id to look up before the KILL runs


def _malformed() -> Refusal:
    return Refusal(ERR_PARSE, "42000", "You have an error in your SQL syntax; an unterminated quoted string, name or "
                   "comment", "a statement the guard cannot read")


def _untouchable(rule: str) -> Refusal:
    return _access_denied(SYSTEM_USER, rule)


_DML_VERBS = ("INSERT", "REPLACE", "UPDATE", "DELETE", "LOAD")


def _protection(c: Classified) -> _Judged | None:
    """The refusals that keep rdsadmin and rds_superuser_role as dbkeep made them, and those of
    statements the guard cannot read (mysql_accounts.py); None when none applies."""
    if c.bad:
        return _Judged(_malformed())
    if c.unknown:
        return _Judged(_access_denied(SYSTEM_USER, f"a statement the guard cannot read ({c.verb or '?'})"))
    rule = account_refusal_rule(c, c.tokens)
    if rule is not None:
        return _Judged(_untouchable(rule))
    grant_written = {r for r in c.dml_writes | c.deletes if _in_system(r, GRANT_TABLES)}
    if grant_written and not any(_in_system(r, PRIVILEGE_TABLES) for r in c.dml_writes):  # those: refused below
        k = next((j for j, t in enumerate(c.tokens) if t.upper in _DML_VERBS), None)
        why = "unreadable" if k is None else grant_table_rows(c.tokens[k:], c.tokens[k].upper)
        if why is not None:
            name = sorted(r.name for r in grant_written)[0]
            return _Judged(_untouchable(f"write to mysql.{name}: {why}"))
    if c.kill_user_at is not None:
        name, end = account_at(c.tokens, c.kill_user_at)
        if name is None or end != len(c.tokens) or normal_name(name) == RDSADMIN or name == UNREADABLE:
            return _Judged(_access_denied(SYSTEM_USER, "KILL USER of a protected or unreadable account"))
    if c.kill is not None:
        if c.kill < 0:
            return _Judged(_access_denied(SYSTEM_USER, "a KILL the guard cannot read"))
        return _Judged(kill=c.kill)
    return None


# MariaDB's own routines that run SQL built from their arguments (SQL SECURITY INVOKER): the
# arguments must be literals the guard can judge.
_SQL_RUNNING_BUILTINS = {("sys", "execute_prepared_stmt"): "statement",
                         ("mysql", "addgeometrycolumn"): "alter", ("mysql", "dropgeometrycolumn"): "alter"}


def _judge_call(c: Classified, facts: SessionFacts, depth: int) -> _Judged | None:
    """Refusals for CALLs of MariaDB's SQL-running built-ins; None when the CALL may go on."""
    ref = c.call
    if ref is None:
        return None
    for (schema, name), what in _SQL_RUNNING_BUILTINS.items():
        if ref.name != name or ref.schema not in (schema, UNKNOWN_DB):
            continue
        args = c.call_args or []
        if any(arg is None for arg in args) or not args:
            return _Judged(_access_denied("SUPER", f"CALL {schema}.{name} with arguments the guard cannot read"))
        if what == "statement":
            inner = _judge_text(args[0], facts, depth + 1)
            if inner.refusal is not None:
                return inner
            if inner.after:
                return _Judged(_access_denied("SUPER", f"CALL {schema}.{name} of a statement that changes privileges"))
        elif any(arg.lower() == SYSTEM_DB for arg in args):
            return _Judged(_access_denied("SUPER", f"DDL on the mysql database through {schema}.{name}"))
    return None


def _judge_one(c: Classified, facts: SessionFacts, depth: int) -> _Judged:
    # 1. refusals
    protected = _protection(c)
    if protected is not None:
        return protected
    for ref in c.dml_writes:
        if _in_system(ref, PRIVILEGE_TABLES):
            return _Judged(_access_denied(_named_privileges(c), f"write to mysql.{ref.name}"))
        if _in_system(ref, CODE_TABLES):
            return _Judged(_access_denied("SUPER", f"write to mysql.{ref.name}"))
    for ref in c.deletes:
        if _in_system(ref, CODE_TABLES):
            return _Judged(_access_denied("SUPER", f"write to mysql.{ref.name}"))
    for ref in c.ddl_tables:
        if _in_system(ref, PROTECTED_TABLES):
            return _Judged(_access_denied("SUPER", f"DDL on mysql.{ref.name}"))
    if SYSTEM_DB in c.ddl_databases or (UNKNOWN_DB in c.ddl_databases):
        return _Judged(_access_denied("SUPER", "DDL on the mysql database"))
    if c.kind is Kind.DDL and c.verb in ("CREATE", "ALTER") and c.view_sources:
        protected = sorted(r.name for r in c.view_sources if _in_system(r, PROTECTED_TABLES))
        if protected:  # an SQL SECURITY INVOKER view would let DML reach them unseen
            return _Judged(_access_denied("SUPER", f"a view over mysql.{protected[0]}"))
    if c.kind is Kind.COMPOUND:
        inner = _judge_body(c, facts, depth)
        if inner.refusal is not None:
            return inner
        # the definition itself: harmless once its body passed; an anonymous block runs now
        anonymous = c.verb != "CREATE"
        return _Judged(after=anonymous and inner.after, rule=inner.rule if anonymous else "",
                       routines=anonymous and inner.routines)
    if c.kind is Kind.CALL:
        refused_call = _judge_call(c, facts, depth)
        if refused_call is not None:
            return refused_call
    if c.dynamic is not None:
        if depth > 4:
            return _Judged(after=True, rule="nested dynamic SQL")
        inner = _judge_text(c.dynamic, facts, depth + 1)
        if inner.refusal is not None:
            return inner
        if c.kind is Kind.PREPARE:
            return _Judged()  # judged again when executed (the name is recorded as a trigger)
        return inner
    # 2. hygiene triggers
    written = {r for r in c.dml_writes | c.deletes if _in_system(r, GRANT_TABLES)}
    if written:
        return _Judged(after=True, rule="write to " + ", ".join(sorted(f"mysql.{r.name}" for r in written)))
    if c.kind is Kind.FLUSH and c.flush_privileges:
        return _Judged(before=True, after=True, rule="FLUSH PRIVILEGES")
    if c.kind is Kind.CREATE_ROLE:
        return _Judged(after=True, rule="CREATE ROLE")
    if c.refresh:
        return _Judged(before=True, after=True, rule=c.verb)
    if c.kind is Kind.EXECUTE and c.execute_name is not None and c.execute_name in facts.triggers:
        return _Judged(after=True, rule="EXECUTE of a checked statement", routines=True)
    if c.opaque:
        return _Judged(after=True, rule=f"{c.kind.value if c.kind is not Kind.OTHER else 'unreadable statement'}",
                       routines=True)
    return _Judged()


def _judge_body(c: Classified, facts: SessionFacts, depth: int) -> _Judged:
    """A compound body: every ``;``-separated piece is read from each write or dynamic-SQL
    verb in it (block keywords, labels and handler declarations stand in front of them)."""
    body = c.body or []
    pieces = _pieces(body)
    after = False
    rule = ""
    for piece in pieces:
        for k, tok in enumerate(piece):
            if tok.upper not in _BODY_VERBS:
                continue
            sub = classify(Statement(piece[k:], ""), facts.database)
            judged = _judge_one(sub, facts, depth + 1)
            if judged.refusal is not None:
                return judged
            if sub.kind in (Kind.EXECUTE_IMMEDIATE, Kind.PREPARE, Kind.EXECUTE) and sub.opaque:
                return _Judged(_access_denied("SUPER", "dynamic SQL in a routine, trigger or event body"))
            if sub.kind is Kind.EXECUTE:
                return _Judged(_access_denied("SUPER", "dynamic SQL in a routine, trigger or event body"))
            if judged.after and (sub.dml_writes or sub.deletes or (sub.kind is Kind.FLUSH and sub.flush_privileges)):
                return _Judged(_access_denied("SUPER", f"{judged.rule} in a routine, trigger or event body"))
            if judged.before:  # GRANT/REVOKE/ALTER USER load stored privileges: not inside a body
                return _Judged(_access_denied("SUPER", f"{judged.rule} in a routine, trigger or event body"))
            if judged.after:
                after, rule = True, judged.rule
    return _Judged(after=after, rule=rule, routines=after)


_BODY_VERBS = frozenset({"INSERT", "REPLACE", "UPDATE", "DELETE", "LOAD", "FLUSH", "PREPARE", "EXECUTE", "CREATE",
                         "ALTER", "DROP", "RENAME", "TRUNCATE", "GRANT", "REVOKE", "CALL", "SET"})


def _pieces(tokens: list[Token]) -> list[list[Token]]:
    out: list[list[Token]] = []
    current: list[Token] = []
    for tok in tokens:
        if tok.kind == SEMI:
            if current:
                out.append(current)
            current = []
        else:
            current.append(tok)
    if current:
        out.append(current)
    return out


def _judge_text(text: str, facts: SessionFacts, depth: int) -> _Judged:
    """Every statement of ``text`` under ``facts``; the combined result (as for a packet)."""
    verdict = _judge_packet(text, facts, depth)
    return _Judged(verdict.refusal, verdict.hygiene_before, verdict.hygiene_after, "; ".join(verdict.rules),
                   verdict.check_routines)


def _judge_packet(text: str, facts: SessionFacts, depth: int = 0, *, other_readings: bool = False,
                  variables: dict[str, str | None] | None = None, first: bool = True) -> Verdict:
    """``other_readings``: this is one of several readings (the sql_mode is not known); a
    malformed statement in it is what the engine would refuse in that mode, not a reason to
    refuse the packet while another reading is well formed. ``variables``: user variables read
    on the session (see :func:`judge`); ``first``: the text starts the packet."""
    mode = facts.sql_mode
    if mode is None:
        modes = [SqlMode()]
        if '"' in text or "\\" in text:
            modes = [SqlMode(a, b) for a in (False, True) for b in (False, True)]
        verdicts = [_judge_packet(text, replace(facts, sql_mode=m), depth, other_readings=len(modes) > 1,
                                  variables=variables, first=first)
                    for m in modes]
        for v in verdicts:  # the strictest wins
            if v.refusal is not None:
                return replace(v, facts=replace(v.facts, sql_mode=None))
        if all(v.malformed for v in verdicts):
            return Verdict(refusal=_malformed(), facts=replace(facts, sql_mode=None))
        names = {v.read_variable for v in verdicts if v.read_variable is not None}
        if len(names) > 1 or (names and any(v.read_variable is None and not v.malformed for v in verdicts)):
            # the readings do not agree on which variable is prepared: nothing to read safely
            return Verdict(refusal=_access_denied(SYSTEM_USER, "PREPARE of a variable the guard cannot name"),
                           facts=replace(facts, sql_mode=None))
        out = verdicts[0]
        out.read_variable = next(iter(names), None)
        out.hygiene_before = any(v.hygiene_before for v in verdicts)
        out.check_routines = any(v.check_routines for v in verdicts)
        out.hygiene_after = any(v.hygiene_after for v in verdicts)
        out.opaque = any(v.opaque for v in verdicts)
        out.kill_threads = sorted({t for v in verdicts for t in v.kill_threads})
        out.rules = sorted({r for v in verdicts for r in v.rules})
        out.facts = replace(out.facts, sql_mode=None)
        if len({v.facts.database for v in verdicts}) > 1:
            out.facts = replace(out.facts, database=UNKNOWN_DB)
        return out
    tokens = lex(text, mode)
    statements = split_tokens(text, tokens)
    verdict = Verdict(facts=facts)
    current = facts
    pending_after: str | None = None  # the hygiene trigger seen so far in this packet
    strict = False  # it was opaque: nothing at all may follow it
    for index, stmt in enumerate(statements):
        c = classify(stmt, current.database)
        unread = False
        if c.variable is not None and depth == 0:
            if index or not first:
                verdict.refusal = Refusal(ERR_ACCESS, "42000", VARIABLE_NOT_FIRST,
                                          f"{c.kind.value} of a variable after another statement of the query")
                return verdict
            # read on the session before the packet runs: judged as its literal would be
            c.opaque = False
            if variables is not None and c.variable in variables:
                c.dynamic = variables[c.variable]  # None: NULL, which the engine refuses
            else:
                verdict.read_variable = c.variable
                unread = True
        if pending_after is not None and (strict or not _may_follow(c)):
            verdict.refusal = Refusal(
                ERR_NOT_SUPPORTED, "42000",
                "This version of MariaDB doesn't yet support 'statements after "
                f"{pending_after} in the same query: send them separately'", "statement after a hygiene trigger")
            return verdict
        if c.bad and other_readings:
            # the engine, reading it so, refuses it as a syntax error: nothing of it runs, and
            # nothing follows it (a malformed token runs to the end of the packet)
            verdict.malformed = True
            judged = _Judged()
        else:
            judged = _judge_one(c, current, depth)
        if judged.refusal is not None:
            verdict.refusal = judged.refusal
            return verdict
        verdict.hygiene_before |= judged.before
        verdict.check_routines |= judged.routines
        verdict.opaque |= (c.opaque and not (c.bad and other_readings)) or (c.kind is Kind.EXECUTE and judged.after)
        if judged.kill is not None:
            verdict.kill_threads.append(judged.kill)
        if judged.after:
            verdict.hygiene_after = True
            verdict.rules.append(judged.rule)
            pending_after = pending_after or judged.rule
            strict = strict or c.opaque or c.kind is Kind.COMPOUND or c.dynamic is not None
        # an unread PREPARE is recorded as before (opaque): a caller may forward it unread
        current = _advance(current, replace(c, opaque=True) if unread else c, judged)
        if c.sql_mode is not None and index + 1 < len(statements):
            # the rest of the packet is lexed under the new mode (or every mode if unknown)
            rest = _judge_packet(text[stmt.tokens[-1].end:], current, depth, variables=variables, first=False)
            if rest.refusal is not None:
                verdict.refusal = rest.refusal
                return verdict
            verdict.hygiene_before |= rest.hygiene_before
            verdict.check_routines |= rest.check_routines
            verdict.hygiene_after |= rest.hygiene_after
            verdict.opaque |= rest.opaque
            verdict.kill_threads += rest.kill_threads
            verdict.rules += rest.rules
            verdict.facts = rest.facts
            return verdict
    verdict.facts = current
    return verdict


def _may_follow(c: Classified) -> bool:
    """Statements that may follow a visible hygiene trigger in one packet: account statements
    and FLUSH PRIVILEGES (``GRANT …; FLUSH PRIVILEGES``) — none of them can use a privilege the
    session does not already hold (only a new login, COM_CHANGE_USER or SET ROLE recompute a
    session's global privileges)."""
    return (c.kind in (Kind.ACCOUNT, Kind.CREATE_ROLE) or (c.kind is Kind.FLUSH and c.flush_privileges)) \
        and not c.opaque and not c.dml_writes and not c.deletes


def use_database(facts: SessionFacts, name: str | None) -> SessionFacts:
    """The facts after ``USE name`` / COM_INIT_DB, whose success the gateway does not see: a
    failed change keeps the old database, so leaving ``mysql`` (or an unknown one) makes the
    database unknown (unqualified names may then be grant tables), and entering ``mysql``
    makes it ``mysql`` (stricter if it failed)."""
    if name is None:
        return replace(facts, database=UNKNOWN_DB)
    old = facts.database
    if name.lower() != SYSTEM_DB and old is not None and (old == UNKNOWN_DB or old.lower() == SYSTEM_DB):
        return replace(facts, database=UNKNOWN_DB)
    return replace(facts, database=name)


def _advance(facts: SessionFacts, c: Classified, judged: _Judged) -> SessionFacts:
    if c.kind is Kind.USE:
        facts = use_database(facts, c.use_db)
    if c.sql_mode is not None:
        # whether the change succeeds is not seen here: the mode is unknown from now on
        facts = replace(facts, sql_mode=None)
    if c.kind is Kind.PREPARE and c.prepare_name is not None:
        trigger = c.opaque
        if c.dynamic is not None:
            trigger = _judge_text(c.dynamic, facts, 1).after
        names = set(facts.triggers)
        names.discard(c.prepare_name)
        if trigger:
            names.add(c.prepare_name)
        facts = replace(facts, triggers=frozenset(names))
    if c.kind is Kind.DEALLOCATE and c.prepare_name is not None:
        facts = replace(facts, triggers=facts.triggers - {c.prepare_name})
    if c.opaque and c.kind in (Kind.CALL, Kind.EXECUTE, Kind.EXECUTE_IMMEDIATE, Kind.OTHER):
        # SQL the guard cannot read may have changed the session's sql_mode (USE is not
        # allowed in routines or prepared statements, so the database stays)
        facts = replace(facts, sql_mode=None)
    return facts


# Ordinary DML that no rule reads: one SELECT/INSERT/UPDATE/DELETE/REPLACE of names, numbers,
# operators and plain '...' literals (no backslash or quote inside), with no comment, no other
# quoting, no statement separator, no variable and no word `mysql` or `definer`, in a known database other
# than `mysql`. Every rule needs one of those (a grant table, an account, a routine body, dynamic
# SQL, a SET, KILL, USE ...), so judge's verdict on such a text is always "pass, facts unchanged":
# this skips the lexer for the bulk of an inspected session's simple-protocol traffic
# (tests/unit/test_guard_mysql_fastpath.py checks the two agree).
_PLAIN_CHARS = r"[A-Za-z0-9_\s,.=()<>!+*/%&|^~-]"
_PLAIN = re.compile(r"\s*(?:SELECT|INSERT|UPDATE|DELETE|REPLACE)\s" + rf"(?:{_PLAIN_CHARS}|'{_PLAIN_CHARS}*')*\Z",
                    re.IGNORECASE | re.ASCII)


def plain(text: str, facts: SessionFacts) -> bool:
    """Whether ``text`` is ordinary DML that :func:`judge` would pass without changing ``facts``."""
    db = facts.database
    if db is None or db == UNKNOWN_DB or db.lower() == SYSTEM_DB:
        return False
    lowered = text.lower()
    if "--" in text or "/*" in text or "mysql" in lowered or "definer" in lowered:  # DEFINER names an account
        return False
    return _PLAIN.match(text) is not None


def judge(text: str, facts: SessionFacts, variables: dict[str, str | None] | None = None) -> Verdict:
    """The verdict on one COM_QUERY (or the text of a COM_STMT_PREPARE), never raising.

    A packet whose first statement is ``PREPARE s FROM @v`` / ``EXECUTE IMMEDIATE @v`` gets
    ``read_variable`` (``v``) unless ``variables`` holds its value (the text, or None for
    NULL): the caller reads it on the session and asks again; with the value, the statement is
    judged exactly as ``PREPARE s FROM '<value>'``. The same forms later in a packet are
    refused (an earlier statement may set the variable)."""
    if len(text) < 4096 and plain(text, facts):
        return Verdict(facts=facts)
    try:
        verdict = _judge_packet(text, facts, variables=variables)
        if verdict.read_variable is not None:
            # for a caller that forwards it unread: what the guard cannot read (the last line)
            verdict.hygiene_after = verdict.opaque = verdict.check_routines = True
            verdict.rules.append(f"PREPARE of the unread variable @{verdict.read_variable}")
        return verdict
    except RecursionError:  # pragma: no cover - pathological nesting
        return Verdict(refusal=_access_denied("SUPER", "statement too deeply nested"), facts=facts)


# dbkeep's own routines that run as rdsadmin (engines/bootstrap.MYSQL_KILL_PROCEDURES)
RDSADMIN_ROUTINES = frozenset({("mysql", "rds_kill"), ("mysql", "rds_kill_query")})
BUILTIN_DEFINER = "mariadb.sys@localhost"


def routine_refusal(db: str, name: str, kind: str, definer: str, body: str) -> Refusal | None:
    """Whether a stored routine must not run from an inspected session: it runs as rdsadmin
    without being dbkeep's own, or its body could give a privilege and use it inside one CALL
    (a grant-table write, FLUSH PRIVILEGES, SQL the guard cannot read — the rules for bodies
    at CREATE). MariaDB's own routines (definer mariadb.sys) are judged at CALL instead."""
    label = f"{db}.{name}"
    user = definer.rsplit("@", 1)[0].strip("`'")
    if user == "rdsadmin":
        if (db.lower(), name.lower()) in RDSADMIN_ROUTINES:
            return None
        return _access_denied("SUPER", f"{kind.lower()} {label} runs as rdsadmin")
    if definer == BUILTIN_DEFINER and db.lower() in (SYSTEM_DB, "sys"):
        return None
    facts = SessionFacts(database=db, sql_mode=None)
    for mode in (SqlMode(), SqlMode(True, False), SqlMode(False, True), SqlMode(True, True)):
        tokens = lex(body, mode)
        judged = _judge_body(Classified(Kind.COMPOUND, verb="CREATE", body=tokens), facts, 1)
        if judged.refusal is not None:
            return replace(judged.refusal, rule=f"{kind.lower()} {label}: {judged.refusal.rule}")
    return None


_LITERAL = re.compile(r"('(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\")", re.S)


def mask_literals(text: str, limit: int = 2000) -> str:
    """The statement for an audit event: every string literal replaced by ``'?'`` (passwords
    and hashes never reach the log), cut to ``limit`` characters."""
    try:
        tokens = lex(text[: limit * 2], SqlMode())
        out, last = [], 0
        for tok in tokens:
            if tok.kind == "string" or (tok.kind == "var" and tok.text[1:2] in ("'", '"')):
                out.append(text[last:tok.start])
                out.append("'?'" if tok.kind == "string" else "@'?'")
                last = tok.end
        out.append(text[last:limit * 2])
        masked = "".join(out)
    except Exception:  # noqa: BLE001 - never let the audit fail on odd input
        masked = _LITERAL.sub("'?'", text[: limit * 2])
    return masked[:limit]
