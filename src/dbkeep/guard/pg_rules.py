"""The PostgreSQL statement rules (pure): rdsadmin and the rds_* roles, passwords, IAM/Kerberos.

Theory of operation (SPEC.md, "rdsadmin and the PostgreSQL rds_* roles", "Restricted password
management"). :func:`judge` reads a query string with PostgreSQL's own parser
(:mod:`.pg_statements`) and returns a :class:`Verdict` for the whole string: a refusal (the first
statement refused; nothing of the string runs), or pass, with what the gateway must do around it.

- **rdsadmin is untouchable**: ``ALTER ROLE``/``ALTER USER``/``ALTER GROUP`` in every form
  (``RENAME``, ``SET``, ``IN DATABASE``), ``DROP ROLE``, ``COMMENT ON ROLE``, ``SECURITY
  LABEL … ON ROLE``, ``GRANT role TO rdsadmin``, ``GRANT rdsadmin TO …``, ``REVOKE … FROM
  rdsadmin``, ``CREATE ROLE … ROLE/ADMIN/IN ROLE`` naming it, ``SET ROLE rdsadmin``, ``SET
  SESSION AUTHORIZATION rdsadmin`` (also as a function's or a role's ``SET`` clause),
  ``ALTER DEFAULT PRIVILEGES FOR ROLE rdsadmin``, ``REASSIGN OWNED BY``/``DROP OWNED BY``
  rdsadmin: SQLSTATE 42501 naming rdsadmin. Names are compared after the parser's case folding
  and unquoting; ``CURRENT_USER``/``CURRENT_ROLE``/``SESSION_USER`` are resolved from the
  session's facts (an unknown current role is taken as protected: fail closed).
- **the protected roles** (``rds_superuser``, ``rds_password``, ``rds_iam``, ``rds_ad``,
  ``rds_replication``) cannot be dropped, renamed, altered, commented or labelled, and their own
  memberships (the groups they are members of, and members added through ``CREATE ROLE … ROLE``)
  cannot change. Granting them to users and revoking them from users stays allowed, as on RDS.
- **restricted password management**: with ``rds.restrict_password_commands`` = 1, a role that
  is not a member of ``rds_password`` gets ``must be a member of rds_password to alter passwords``
  for ``CREATE ROLE … PASSWORD``/``VALID UNTIL``, ``ALTER ROLE … PASSWORD``/``VALID UNTIL``
  and ``ALTER ROLE … RENAME TO`` (every spelling: USER, GROUP, ENCRYPTED; psql's ``\\password``).
- **rds_iam and rds_ad are exclusive**: a statement that adds memberships needs the role graph
  (``Verdict.needs_graph``: the gateway reads ``pg_auth_members`` and asks again) and is refused
  when some role would be a member of both, nested memberships included.
- **opaque code** (``DO``, ``CALL``, ``EXECUTE`` of a prepared statement, a call of a function
  that is not a built-in, or whose name some user-defined routine also has): passes with
  ``check_after``: the gateway verifies rdsadmin and the protected roles once its transaction
  has ended. ``CREATE FUNCTION``/``PROCEDURE`` bodies in SQL and PL/pgSQL are judged at
  creation, statement by statement; ``EXECUTE`` of a string inside them stays opaque.
- a text the parser cannot read is refused with the parser's own syntax error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

from pglast import parser as _parser

from .pg_roles import IAM_ROLE, KERBEROS_ROLE, RoleGraph
from .pg_statements import ParseFailure, Statement, nodes_of, parse

__all__ = ["RDSADMIN", "PROTECTED_ROLES", "PASSWORD_ROLE", "UNKNOWN_ROLE", "PgFacts", "Refusal", "Verdict", "judge"]

RDSADMIN = "rdsadmin"
PASSWORD_ROLE = "rds_password"
PROTECTED_ROLES = frozenset({"rds_superuser", PASSWORD_ROLE, IAM_ROLE, KERBEROS_ROLE, "rds_replication"})
UNKNOWN_ROLE = "\x00unknown"  # the current role after code the guard could not see into

INSUFFICIENT_PRIVILEGE = "42501"
INVALID_GRANT_OPERATION = "0LP01"
SYNTAX_ERROR = "42601"
PASSWORD_MESSAGE = "must be a member of rds_password to alter passwords"
# Built-ins that run no user code whatever their arguments but change the session's role
_ROLE_SETTERS = frozenset({"set_config"})
# Built-ins that run a query given as text (which may call user code): opaque like any call
_RUNS_SQL = frozenset({"query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml",
                       "cursor_to_xmlschema", "ts_stat", "ts_rewrite"})
_MAX_DEPTH = 3  # routine bodies within routine bodies


@dataclass(frozen=True)
class PgFacts:
    """What a verdict depends on, besides the statement."""

    session_user: str
    current_role: str | None = None  # after SET ROLE; None: the session user; UNKNOWN_ROLE
    restrict_password_commands: bool = False
    password_member: bool = False  # the session's role is a member of rds_password
    graph: RoleGraph | None = None  # pg_auth_members, when read for this statement
    builtins: frozenset[str] | None = None  # routine names in pg_catalog; None: unknown
    routines: frozenset[str] | None = None  # user-defined routine names of the database; None: unknown
    # a transaction block is open: a role set now may be rolled back, so afterwards it is unknown
    in_transaction: bool = False


@dataclass(frozen=True)
class Refusal:
    sqlstate: str
    message: str
    rule: str
    statement: str  # the refused statement's text (mask it before logging)
    detail: str | None = None


@dataclass
class Verdict:
    refusal: Refusal | None = None
    check_after: bool = False  # opaque code runs: verify the protected roles afterwards
    roles_changed: bool = False  # roles, memberships or the current role may change
    routines_changed: bool = False  # the database's routines may change
    needs_graph: bool = False  # ask again with PgFacts.graph
    role: str | None = None  # the current role after the string (None: unchanged)
    rules: list[str] = field(default_factory=list)


class _Refused(Exception):
    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


class _NeedGraph(Exception):
    pass


def judge(sql: str, facts: PgFacts) -> Verdict:
    """The verdict for one query string (simple Query) or one Parse's text."""
    verdict = Verdict()
    try:
        _judge_text(sql, facts, verdict, depth=0)
    except _Refused as refused:
        return Verdict(refusal=refused.refusal, rules=[refused.refusal.rule])
    except _NeedGraph:
        return Verdict(needs_graph=True)
    return verdict


def _judge_text(sql: str, facts: PgFacts, verdict: Verdict, *, depth: int) -> None:
    try:
        statements = parse(sql)
    except ParseFailure as exc:
        raise _Refused(Refusal(SYNTAX_ERROR, str(exc), "unparsable statement", sql)) from None
    for statement in statements:
        facts = _judge_statement(statement, facts, verdict, depth=depth)
    if verdict.role not in (None, UNKNOWN_ROLE) and (facts.in_transaction or len(statements) > 1):
        verdict.role = UNKNOWN_ROLE  # SET LOCAL, a rollback or a later error may undo it


# --- roles named by a statement --------------------------------------------------------------

def _role(spec: dict[str, Any] | None, facts: PgFacts) -> str | None:
    """The role a RoleSpec names (None for PUBLIC or nothing)."""
    if not spec:
        return None
    spec = spec.get("RoleSpec", spec)
    kind = spec.get("roletype")
    if kind == "ROLESPEC_CSTRING":
        return spec.get("rolename")
    if kind in ("ROLESPEC_CURRENT_USER", "ROLESPEC_CURRENT_ROLE"):
        return facts.current_role or facts.session_user
    if kind == "ROLESPEC_SESSION_USER":
        return facts.session_user
    return None


def _role_list(arg: Any, facts: PgFacts) -> list[str]:
    items = arg.get("List", {}).get("items", []) if isinstance(arg, dict) else (arg or [])
    return [name for name in (_role(item, facts) for item in items) if name]


def _options(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in node.get("options", ()):
        elem = item.get("DefElem", {})
        out.setdefault(elem.get("defname"), elem.get("arg"))
    return out


def _refuse(statement: Statement, rule: str, message: str, sqlstate: str = INSUFFICIENT_PRIVILEGE,
            detail: str | None = None) -> None:
    raise _Refused(Refusal(sqlstate, message, rule, statement.text, detail))


def _untouchable(statement: Statement, role: str | None, action: str = "alter") -> None:
    """Refuse when ``role`` is rdsadmin or a protected role (or unknown)."""
    if role == RDSADMIN:
        _refuse(statement, "rdsadmin is untouchable", f'permission denied to {action} role "rdsadmin"')
    if role in PROTECTED_ROLES:
        _refuse(statement, f"{role} is managed by dbkeep", f'permission denied to {action} role "{role}"',
                detail=f"The role {role} is managed by the database service and cannot be changed.")
    if role == UNKNOWN_ROLE:
        _refuse(statement, "unknown current role",
                "permission denied: CURRENT_USER cannot be resolved after code the gateway could not inspect",
                detail="Run SET ROLE or RESET ROLE first.")


def _memberships(statement: Statement, edges: list[tuple[str, str]], *, adding: bool) -> None:
    """Rules on membership edges (group, member) a statement adds or removes."""
    for group, member in edges:
        if RDSADMIN in (group, member) or UNKNOWN_ROLE in (group, member):
            _untouchable(statement, RDSADMIN if RDSADMIN in (group, member) else UNKNOWN_ROLE)
        if member in PROTECTED_ROLES:
            _refuse(statement, f"{member} is managed by dbkeep",
                    f'permission denied to alter role "{member}"',
                    detail=f"The memberships of {member} are managed by the database service.")


def _check_exclusive(statement: Statement, edges: list[tuple[str, str]], facts: PgFacts) -> None:
    if not edges:
        return
    if facts.graph is None:
        raise _NeedGraph()
    both = facts.graph.both_after(edges)
    if both is not None:
        _refuse(statement, "rds_iam and rds_ad are exclusive",
                f'role "{both}" cannot be a member of both rds_iam and rds_ad', INVALID_GRANT_OPERATION,
                detail="A PostgreSQL database user can use either IAM or Kerberos authentication but not both, "
                       "also through nested memberships.")


def _password_command(statement: Statement, facts: PgFacts) -> None:
    if facts.restrict_password_commands and not facts.password_member:
        _refuse(statement, "rds.restrict_password_commands", PASSWORD_MESSAGE)


# --- statements -------------------------------------------------------------------------------

def _judge_statement(statement: Statement, facts: PgFacts, verdict: Verdict, *, depth: int) -> PgFacts:
    kind, node = statement.kind, statement.node
    handler = _HANDLERS.get(kind)
    if handler is not None:
        facts = handler(statement, facts, verdict, depth) or facts
    if kind != "CreateFunctionStmt":  # a routine's body runs later (judged at creation below)
        facts = _calls(statement, facts, verdict)
        for setting in nodes_of(node, "VariableSetStmt"):  # SET clauses nested in other statements
            _setting(statement, setting, facts, nested=True)
        if isinstance(node.get("setstmt"), dict):  # ALTER DATABASE|ROLE … SET (an unwrapped field)
            _setting(statement, node["setstmt"], facts, nested=True)
    return facts


def _alter_role(statement: Statement, facts: PgFacts, verdict: Verdict, depth: int) -> None:
    node = statement.node
    role = _role(node.get("role"), facts)
    options = _options(node)
    members = options.get("rolemembers")
    verdict.roles_changed = True
    if members is not None and len(options) == 1:  # ALTER GROUP g ADD|DROP USER …
        if role == RDSADMIN or role == UNKNOWN_ROLE:
            _untouchable(statement, role)
        edges = [(role, m) for m in _role_list(members, facts)] if role else []
        _memberships(statement, edges, adding=node.get("action", 1) > 0)
        if node.get("action", 1) > 0:
            _check_exclusive(statement, edges, facts)
        return
    _untouchable(statement, role)
    if "password" in options or "validUntil" in options:
        _password_command(statement, facts)


def _alter_role_set(statement: Statement, facts: PgFacts, verdict: Verdict, depth: int) -> None:
    node = statement.node
    if node.get("role") is not None:
        _untouchable(statement, _role(node["role"], facts))
    setting = node.get("setstmt")
    if setting:
        _setting(statement, setting, facts, nested=True)


def _rename(statement: Statement, facts: PgFacts, verdict: Verdict, depth: int) -> None:
    node = statement.node
    if node.get("renameType") != "OBJECT_ROLE":
        return
    verdict.roles_changed = True
    _untouchable(statement, node.get("subname"), "rename")
    if node.get("newname") in PROTECTED_ROLES or node.get("newname") == RDSADMIN:
        _untouchable(statement, node.get("newname"), "rename")
    _password_command(statement, facts)  # renaming clears an MD5 password (SPEC.md)


def _drop_role(statement: Statement, facts: PgFacts, verdict: Verdict, depth: int) -> None:
    verdict.roles_changed = True
    for role in _role_list(statement.node.get("roles"), facts):
        _untouchable(statement, role, "drop")


def _grant_role(statement: Statement, facts: PgFacts, verdict: Verdict, depth: int) -> None:
    node = statement.node
    verdict.roles_changed = True
    groups = [item.get("AccessPriv", {}).get("priv_name") for item in node.get("granted_roles", ())]
    members = _role_list(node.get("grantee_roles"), facts)
    edges = [(g, m) for g in groups if g for m in members]
    _memberships(statement, edges, adding=bool(node.get("is_grant")))
    if node.get("is_grant"):
        _check_exclusive(statement, edges, facts)


def _create_role(statement: Statement, facts: PgFacts, verdict: Verdict, depth: int) -> None:
    node = statement.node
    verdict.roles_changed = True
    name = node.get("role")
    options = _options(node)
    edges = [(g, name) for g in _role_list(options.get("addroleto"), facts)]
    edges += [(name, m) for m in _role_list(options.get("rolemembers"), facts)]
    edges += [(name, m) for m in _role_list(options.get("adminmembers"), facts)]
    _memberships(statement, edges, adding=True)
    if "password" in options or "validUntil" in options:
        _password_command(statement, facts)
    _check_exclusive(statement, edges, facts)


def _object_role(statement: Statement, facts: PgFacts, verdict: Verdict, depth: int) -> None:
    node = statement.node
    if node.get("objtype") == "OBJECT_ROLE":
        _untouchable(statement, node.get("object", {}).get("String", {}).get("sval"))


def _owned(statement: Statement, facts: PgFacts, verdict: Verdict, depth: int) -> None:
    """REASSIGN OWNED BY / DROP OWNED BY rdsadmin (or a protected role): its objects and grants."""
    node = statement.node
    for role in _role_list(node.get("roles"), facts) + ([_role(node.get("newrole"), facts)] if node.get("newrole") else []):
        if role == RDSADMIN or role in PROTECTED_ROLES:
            _untouchable(statement, role)


def _default_privileges(statement: Statement, facts: PgFacts, verdict: Verdict, depth: int) -> None:
    roles = _role_list(_options(statement.node).get("roles"), facts)
    for role in roles:
        if role == RDSADMIN or role == UNKNOWN_ROLE:
            _untouchable(statement, role)


def _const_string(args: Any) -> str | None:
    for item in args or ():
        const = item.get("A_Const", {})
        if "sval" in const:
            return const["sval"].get("sval")
        return None
    return None


def _setting(statement: Statement, node: dict[str, Any], facts: PgFacts, *, nested: bool) -> str | None:
    """SET ROLE / SET SESSION AUTHORIZATION: the new current role ("" for none), None if other."""
    name = node.get("name")
    if name not in ("role", "session_authorization"):
        return None
    if node.get("kind") != "VAR_SET_VALUE":
        return ""
    value = _const_string(node.get("args"))
    if value == RDSADMIN:
        what = "set role" if name == "role" else "set session authorization"
        _refuse(statement, "rdsadmin is untouchable", f'permission denied to {what} "rdsadmin"')
    if value is None or value.lower() == "none":
        return ""
    return value


def _variable_set(statement: Statement, facts: PgFacts, verdict: Verdict, depth: int) -> PgFacts | None:
    role = _setting(statement, statement.node, facts, nested=False)
    if role is None:
        return None
    verdict.roles_changed = True
    verdict.role = UNKNOWN_ROLE if statement.node.get("is_local") else role
    return replace(facts, current_role=role or None)


def _discard(statement: Statement, facts: PgFacts, verdict: Verdict, depth: int) -> PgFacts | None:
    if statement.node.get("target") == "DISCARD_ALL":  # includes SET SESSION AUTHORIZATION DEFAULT
        verdict.roles_changed = True
        verdict.role = ""
        return replace(facts, current_role=None)
    return None


def _opaque(statement: Statement, facts: PgFacts, verdict: Verdict, depth: int) -> PgFacts:
    verdict.check_after = True
    verdict.roles_changed = True
    verdict.rules.append(f"opaque: {statement.kind}")
    verdict.role = UNKNOWN_ROLE
    return replace(facts, current_role=UNKNOWN_ROLE)


def _calls(statement: Statement, facts: PgFacts, verdict: Verdict) -> PgFacts:
    """Function calls: a built-in runs no user code; anything else may (check after)."""
    for call in nodes_of(statement.node, "FuncCall"):
        names = [part.get("String", {}).get("sval") for part in call.get("funcname", ())]
        name = names[-1] if names else None
        if name in _ROLE_SETTERS:
            setting = _const_string(call.get("args", [])[:1])
            if setting is not None and setting.lower() not in ("role", "session_authorization"):
                continue  # set_config('search_path', …) as pg_dump writes it: no role changes
            if (setting or "").lower() in ("role", "session_authorization") and \
                    _const_string(call.get("args", [])[1:2]) == RDSADMIN:
                _refuse(statement, "rdsadmin is untouchable", 'permission denied to set role "rdsadmin"')
            verdict.roles_changed = True
            verdict.role = UNKNOWN_ROLE
            facts = replace(facts, current_role=UNKNOWN_ROLE)
            continue
        builtin = facts.builtins is not None and name in facts.builtins and name not in _RUNS_SQL
        if len(names) > 1:  # schema-qualified: only pg_catalog's are built-ins
            if builtin and names[-2] == "pg_catalog":
                continue
        elif builtin and facts.routines is not None and name not in facts.routines:
            continue  # unqualified: a user-defined overload of the same name could win
        facts = _opaque(statement, facts, verdict, 0)
    return facts


# --- routine bodies ---------------------------------------------------------------------------

def _create_function(statement: Statement, facts: PgFacts, verdict: Verdict, depth: int) -> None:
    """Judge a new routine's body now, as if its statements were sent (SQL and PL/pgSQL)."""
    node = statement.node
    verdict.routines_changed = True
    options = _options(node)
    for item in node.get("options", ()):  # SET role = … clauses run at every call
        arg = item.get("DefElem", {}).get("arg")
        if isinstance(arg, dict) and "VariableSetStmt" in arg:
            _setting(statement, arg["VariableSetStmt"], facts, nested=True)
    if depth >= _MAX_DEPTH:
        return
    language = (options.get("language") or {}).get("String", {}).get("sval", "sql")
    body_facts = replace(facts, current_role=None)  # runs as its caller, whoever that is
    inner = Verdict()
    if node.get("sql_body") is not None:  # BEGIN ATOMIC … END: already parsed
        for kind, fields in _body_statements(node["sql_body"]):
            _judge_statement(Statement(kind, fields, statement.text), body_facts, inner, depth=depth + 1)
        return
    as_items = (options.get("as") or {}).get("List", {}).get("items", [])
    body = as_items[0].get("String", {}).get("sval") if as_items else None
    if body is None:
        return
    try:
        if language == "sql":
            _judge_text(body, body_facts, inner, depth=depth + 1)
        elif language == "plpgsql":
            for query in _plpgsql_queries(statement.text):
                _judge_text(query, body_facts, inner, depth=depth + 1)
    except _Refused as refused:
        r = refused.refusal
        raise _Refused(Refusal(r.sqlstate, r.message, f"routine body: {r.rule}", statement.text, r.detail)) from None
    except _NeedGraph:
        return  # memberships granted when it runs: the check after the call sees them


def _body_statements(sql_body: Any) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for item in sql_body.get("List", {}).get("items", []):
        for stmt in item.get("List", {}).get("items", []) if "List" in item else [item]:
            if stmt:
                kind, fields = next(iter(stmt.items()))
                out.append((kind, fields))
    return out


def _plpgsql_queries(create_text: str) -> list[str]:
    """The SQL statements a PL/pgSQL body runs as written (not EXECUTE of a string: that
    stays opaque until it runs). A body the PL/pgSQL parser cannot read is left to the engine,
    which refuses it the same way when the routine is created."""
    try:
        tree = json.loads(_parser.parse_plpgsql_json(create_text))
    except Exception:  # noqa: BLE001
        return []
    queries: list[str] = []
    stack: list[Any] = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key == "PLpgSQL_stmt_execsql":
                    query = value.get("sqlstmt", {}).get("PLpgSQL_expr", {}).get("query")
                    if query:
                        queries.append(query)
                if isinstance(value, (dict, list)):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)
    return queries


_HANDLERS = {
    "AlterRoleStmt": _alter_role,
    "AlterRoleSetStmt": _alter_role_set,
    "RenameStmt": _rename,
    "DropRoleStmt": _drop_role,
    "GrantRoleStmt": _grant_role,
    "CreateRoleStmt": _create_role,
    "CommentStmt": _object_role,
    "SecLabelStmt": _object_role,
    "ReassignOwnedStmt": _owned,
    "DropOwnedStmt": _owned,
    "AlterDefaultPrivilegesStmt": _default_privileges,
    "VariableSetStmt": _variable_set,
    "DiscardStmt": _discard,
    "DoStmt": _opaque,
    "CallStmt": _opaque,
    "ExecuteStmt": _opaque,
    "CreateFunctionStmt": _create_function,
}
