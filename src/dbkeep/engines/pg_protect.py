"""What the PostgreSQL statement guard asks of the engine, through rdsadmin (async, psycopg).

- :func:`session_facts`: whether a role's sessions must be inspected (it has CREATEROLE, is a
  member of rds_superuser, or can SET ROLE to a role that is either) and whether it is a member
  of ``rds_password``.
- :func:`role_graph`: every membership edge (group, member), for the rds_iam/rds_ad rule.
- :func:`routine_names`: the routine names of ``pg_catalog`` (built-ins) and those of every other
  schema of the database (user-defined: calling one runs code the guard cannot see).
- :func:`check_protected` / :func:`restore_protected`: rdsadmin and the rds_* roles as bootstrap
  made them (attributes, no password or expiry, no settings, no comment or label, memberships);
  the repair renames a renamed role back (by OID), recreates a dropped one
  (``reset.pg_ensure_roles``), and takes away what was added. Members of the rds_* roles are
  users' business and are left alone (a recreated rds_iam has lost its members).
"""

from __future__ import annotations

from psycopg import AsyncConnection, sql

from dbkeep.engines import bootstrap as b
from dbkeep.engines import reset

__all__ = ["session_facts", "role_graph", "routine_names", "check_protected", "restore_protected", "PROTECTED"]

PROTECTED = tuple(role.name for role in b.PG_ROLES)
_ATTRIBUTES = ("rolsuper", "rolinherit", "rolcreaterole", "rolcreatedb", "rolcanlogin", "rolreplication", "rolbypassrls")
_ATTRIBUTE_WORDS = {"SUPERUSER": "rolsuper", "INHERIT": "rolinherit", "CREATEROLE": "rolcreaterole",
                    "CREATEDB": "rolcreatedb", "LOGIN": "rolcanlogin", "REPLICATION": "rolreplication",
                    "BYPASSRLS": "rolbypassrls"}
# rdsadmin as initdb makes it: every attribute, no password (peer only), no expiry
_RDSADMIN_ATTRIBUTES = dict.fromkeys(_ATTRIBUTES, True)


def _expected_attributes(attributes: str) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for word in attributes.split():
        negated = word.startswith("NO") and word[2:] in _ATTRIBUTE_WORDS
        key = _ATTRIBUTE_WORDS.get(word[2:] if negated else word)
        if key:
            out[key] = not negated
    return out


EXPECTED: dict[str, tuple[dict[str, bool], frozenset[tuple[str, bool]]]] = {
    b.RDSADMIN_PG: (_RDSADMIN_ATTRIBUTES, frozenset()),
    **{role.name: (_expected_attributes(role.attributes), frozenset(role.member_of)) for role in b.PG_ROLES},
}

_FACTS = """
WITH me AS (SELECT oid FROM pg_roles WHERE rolname = %(user)s),
     reach AS (SELECT r.oid, r.rolcreaterole, r.rolsuper FROM pg_roles r, me WHERE pg_has_role(me.oid, r.oid, 'MEMBER'))
SELECT EXISTS (SELECT 1 FROM me),
       COALESCE(bool_or(reach.rolcreaterole OR reach.rolsuper
                        OR pg_has_role(reach.oid, 'rds_superuser', 'MEMBER')), false),
       COALESCE(bool_or(pg_has_role(reach.oid, 'rds_password', 'MEMBER')), false)
FROM reach
"""


async def session_facts(conn: AsyncConnection, user: str) -> tuple[bool, bool]:
    """(inspect its sessions, member of rds_password) for a role. An unknown role (renamed or
    dropped since it logged in) is inspected."""
    cur = await conn.execute(_FACTS, {"user": user})
    exists, privileged, password_member = await cur.fetchone()  # type: ignore[misc]
    return (bool(privileged) or not exists), bool(password_member)


async def role_graph(conn: AsyncConnection) -> list[tuple[str, str]]:
    cur = await conn.execute("SELECT g.rolname, m.rolname FROM pg_auth_members a "
                             "JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member")
    return [(str(g), str(m)) for g, m in await cur.fetchall()]


async def routine_names(conn: AsyncConnection) -> tuple[frozenset[str], frozenset[str]]:
    """(built-in routine names, user-defined routine names) of the connection's database."""
    cur = await conn.execute("SELECT DISTINCT p.proname, n.nspname = 'pg_catalog' FROM pg_proc p "
                             "JOIN pg_namespace n ON n.oid = p.pronamespace")
    builtins: set[str] = set()
    user: set[str] = set()
    for name, builtin in await cur.fetchall():
        (builtins if builtin else user).add(name)
    return frozenset(builtins), frozenset(user)


_STATE = """
SELECT a.oid, a.rolname, a.rolsuper, a.rolinherit, a.rolcreaterole, a.rolcreatedb, a.rolcanlogin,
       a.rolreplication, a.rolbypassrls, a.rolconnlimit, a.rolpassword IS NOT NULL, a.rolvaliduntil IS NOT NULL,
       EXISTS (SELECT 1 FROM pg_db_role_setting s WHERE s.setrole = a.oid),
       EXISTS (SELECT 1 FROM pg_shdescription d WHERE d.objoid = a.oid AND d.classoid = 'pg_authid'::regclass),
       EXISTS (SELECT 1 FROM pg_shseclabel l WHERE l.objoid = a.oid AND l.classoid = 'pg_authid'::regclass),
       ARRAY(SELECT g.rolname || CASE WHEN m.admin_option THEN '+' ELSE '' END
             FROM pg_auth_members m JOIN pg_authid g ON g.oid = m.roleid WHERE m.member = a.oid),
       ARRAY(SELECT r.rolname FROM pg_auth_members m JOIN pg_authid r ON r.oid = m.member WHERE m.roleid = a.oid)
FROM pg_authid a WHERE a.rolname = ANY(%(names)s) OR a.oid = ANY(%(oids)s)
"""


async def check_protected(conn: AsyncConnection, known_oids: dict[str, int]) -> list[str]:
    """What differs from bootstrap's rdsadmin and rds_* roles, one line each (empty: intact).
    ``known_oids`` (name -> OID, filled here on first sight) finds a renamed role."""
    cur = await conn.execute(_STATE, {"names": list(EXPECTED), "oids": list(known_oids.values())})
    rows = {row[1]: row for row in await cur.fetchall()}
    problems: list[str] = []
    for name, (attributes, groups) in EXPECTED.items():
        row = rows.get(name)
        if row is None or (name in known_oids and row[0] != known_oids[name]):
            renamed = [r[1] for r in rows.values() if r[0] == known_oids.get(name) and r[1] != name]
            problems.append(f"{name}: renamed to {renamed[0]}" if renamed else f"{name}: missing")
            continue
        known_oids.setdefault(name, row[0])
        state = dict(zip(_ATTRIBUTES, row[2:9]))
        changed = sorted(k for k, v in attributes.items() if state.get(k) != v)
        if changed:
            problems.append(f"{name}: attributes changed ({', '.join(changed)})")
        if row[9] != -1:
            problems.append(f"{name}: connection limit {row[9]}")
        if row[10]:
            problems.append(f"{name}: has a password")
        if row[11]:
            problems.append(f"{name}: has an expiry (VALID UNTIL)")
        if row[12]:
            problems.append(f"{name}: has role settings")
        if row[13] or row[14]:
            problems.append(f"{name}: has a comment or security label")
        expected_groups = {g + ("+" if admin else "") for g, admin in groups}
        if set(row[15]) != expected_groups:
            problems.append(f"{name}: member of {sorted(row[15])}, not {sorted(expected_groups)}")
        if name == b.RDSADMIN_PG and row[16]:
            problems.append(f"{name}: has members {sorted(row[16])}")
    return problems


async def restore_protected(conn: AsyncConnection, known_oids: dict[str, int]) -> list[str]:
    """Put rdsadmin and the rds_* roles back as bootstrap made them (idempotent, one
    transaction); returns what was wrong before."""
    problems = await check_protected(conn, known_oids)
    if not problems:
        return []
    async with conn.transaction():
        for name, oid in known_oids.items():  # renamed: rename back (the OID keeps its members)
            cur = await conn.execute("SELECT rolname FROM pg_authid WHERE oid = %s", (oid,))
            row = await cur.fetchone()
            taken = await (await conn.execute("SELECT 1 FROM pg_authid WHERE rolname = %s", (name,))).fetchone()
            if row is not None and row[0] != name and taken is None:
                await conn.execute(sql.SQL("ALTER ROLE {} RENAME TO {}").format(sql.Identifier(row[0]), sql.Identifier(name)))
        await reset.pg_ensure_roles(conn)
        names = list(EXPECTED)
        await conn.execute("UPDATE pg_authid SET rolpassword = NULL, rolvaliduntil = NULL, rolconnlimit = -1 "
                           "WHERE rolname = ANY(%s)", (names,))
        await conn.execute("UPDATE pg_authid SET rolsuper = true, rolinherit = true, rolcreaterole = true, "
                           "rolcreatedb = true, rolcanlogin = true, rolreplication = true, rolbypassrls = true "
                           "WHERE rolname = %s", (b.RDSADMIN_PG,))
        await conn.execute("DELETE FROM pg_db_role_setting WHERE setrole IN (SELECT oid FROM pg_authid WHERE rolname = ANY(%s))",
                           (names,))
        await conn.execute("DELETE FROM pg_shdescription WHERE classoid = 'pg_authid'::regclass AND objoid IN "
                           "(SELECT oid FROM pg_authid WHERE rolname = ANY(%s))", (names,))
        await conn.execute("DELETE FROM pg_shseclabel WHERE classoid = 'pg_authid'::regclass AND objoid IN "
                           "(SELECT oid FROM pg_authid WHERE rolname = ANY(%s))", (names,))
        cur = await conn.execute(
            "SELECT g.rolname, r.rolname, m.admin_option FROM pg_auth_members m JOIN pg_authid g ON g.oid = m.roleid "
            "JOIN pg_authid r ON r.oid = m.member WHERE r.rolname = ANY(%s) OR g.rolname = %s", (names, b.RDSADMIN_PG))
        for group, member, admin in await cur.fetchall():
            expected = EXPECTED.get(member, (None, frozenset()))[1]
            if member in EXPECTED and (group, admin) in expected:
                continue
            if member in EXPECTED and admin and (group, False) in expected:
                await conn.execute(sql.SQL("REVOKE ADMIN OPTION FOR {} FROM {}").format(sql.Identifier(group), sql.Identifier(member)))
                continue
            await conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(group), sql.Identifier(member)))
        cur = await conn.execute("SELECT rolname, oid FROM pg_authid WHERE rolname = ANY(%s)", (names,))
        known_oids.clear()  # a recreated role has a new OID
        known_oids.update({str(name): int(oid) for name, oid in await cur.fetchall()})
    return problems
