"""The PostgreSQL statement rules (guard/pg_rules.py), pure: statement + facts in, verdict out."""

from __future__ import annotations

import pytest

from dbkeep.guard.pg_roles import RoleGraph
from dbkeep.guard.pg_rules import PASSWORD_MESSAGE, UNKNOWN_ROLE, PgFacts, judge
from dbkeep.guard.pg_statements import mask

BUILTINS = frozenset({"now", "lower", "count", "pg_terminate_backend", "set_config", "format", "current_setting",
                      "query_to_xml"})
FACTS = PgFacts(session_user="master", builtins=BUILTINS, routines=frozenset({"myfunc"}), graph=RoleGraph())

RDSADMIN_FORMS = [
    "ALTER ROLE rdsadmin NOLOGIN",
    "alter user RDSADMIN with password 'x'",
    'ALTER USER "rdsadmin" PASSWORD \'x\'',
    "ALTER USER U&\"\\0072dsadmin\" VALID UNTIL '2000-01-01'",
    "ALTER ROLE rdsadmin RENAME TO x",
    "ALTER ROLE rdsadmin SET statement_timeout = 1",
    "ALTER ROLE rdsadmin IN DATABASE postgres SET search_path = x",
    "ALTER ROLE rdsadmin RESET ALL",
    "ALTER GROUP rdsadmin ADD USER master",
    "ALTER GROUP pg_monitor DROP USER rdsadmin",
    "DROP ROLE rdsadmin",
    "DROP USER IF EXISTS x, rdsadmin",
    "DROP GROUP rdsadmin",
    "GRANT pg_monitor TO rdsadmin",
    "GRANT rdsadmin TO master",
    "REVOKE pg_read_all_data FROM rdsadmin",
    "REVOKE ADMIN OPTION FOR x FROM rdsadmin",
    "COMMENT ON ROLE rdsadmin IS 'x'",
    "SECURITY LABEL FOR selinux ON ROLE rdsadmin IS 'x'",
    "SET ROLE rdsadmin",
    "set role 'rdsadmin'",
    "SET LOCAL ROLE rdsadmin",
    "SET role TO \"rdsadmin\"",
    "SET SESSION AUTHORIZATION rdsadmin",
    "SET session_authorization = 'rdsadmin'",
    "ALTER DEFAULT PRIVILEGES FOR ROLE rdsadmin GRANT SELECT ON TABLES TO master",
    "REASSIGN OWNED BY rdsadmin TO master",
    "DROP OWNED BY rdsadmin",
    "CREATE ROLE x ROLE rdsadmin",
    "CREATE ROLE x IN ROLE rdsadmin",
    "CREATE ROLE x ADMIN rdsadmin",
    "ALTER ROLE x SET role = rdsadmin",
    "ALTER DATABASE appdb SET role = 'rdsadmin'",
    "ALTER DATABASE appdb SET session_authorization TO rdsadmin",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql SET role = rdsadmin AS $$ SELECT 1 $$",
    "SELECT 1; /* x */ ALTER ROLE rdsadmin CONNECTION LIMIT 0",
    "/* comment */ ALTER -- a comment\n ROLE\trdsadmin   NOSUPERUSER",
]


@pytest.mark.parametrize("sql", RDSADMIN_FORMS)
def test_rdsadmin_is_untouchable(sql: str) -> None:
    verdict = judge(sql, FACTS)
    assert verdict.refusal is not None, sql
    assert verdict.refusal.sqlstate == "42501"
    assert "rdsadmin" in verdict.refusal.message


PROTECTED_FORMS = [
    "DROP ROLE rds_superuser",
    "DROP ROLE rds_iam",
    "ALTER ROLE rds_superuser RENAME TO x",
    "ALTER ROLE rds_password LOGIN",
    "ALTER ROLE rds_replication PASSWORD 'x'",
    "ALTER ROLE rds_ad SET work_mem = '1GB'",
    "ALTER ROLE \"rds_superuser\" NOCREATEROLE",
    "REVOKE pg_monitor FROM rds_superuser",
    "REVOKE rds_password FROM rds_superuser",
    "REVOKE ADMIN OPTION FOR rds_password FROM rds_superuser",
    "GRANT pg_read_all_data TO rds_iam",
    "GRANT rds_iam TO rds_ad",
    "ALTER GROUP pg_monitor DROP USER rds_superuser",
    "CREATE ROLE x ROLE rds_superuser",
    "COMMENT ON ROLE rds_iam IS 'x'",
]


@pytest.mark.parametrize("sql", PROTECTED_FORMS)
def test_protected_roles_cannot_change(sql: str) -> None:
    verdict = judge(sql, FACTS)
    assert verdict.refusal is not None, sql
    assert verdict.refusal.sqlstate == "42501"


def test_current_user_resolves_to_the_role_set() -> None:
    facts = PgFacts(session_user="master", current_role="rds_superuser", graph=RoleGraph())
    assert judge("ALTER ROLE CURRENT_USER NOCREATEDB", facts).refusal is not None
    assert judge("ALTER ROLE CURRENT_ROLE SET x.y = 1", facts).refusal is not None
    assert judge("ALTER ROLE SESSION_USER SET work_mem = '1MB'", facts).refusal is None
    unknown = PgFacts(session_user="master", current_role=UNKNOWN_ROLE, graph=RoleGraph())
    assert judge("ALTER USER CURRENT_USER VALID UNTIL 'infinity'", unknown).refusal is not None


def test_set_role_tracks_the_current_role() -> None:
    verdict = judge("SET ROLE rds_superuser", FACTS)
    assert verdict.refusal is None and verdict.role == "rds_superuser" and verdict.roles_changed
    assert judge("RESET ROLE", FACTS).role == ""
    assert judge("SET ROLE NONE", FACTS).role == ""
    assert judge("SET LOCAL ROLE rds_superuser", FACTS).role == UNKNOWN_ROLE
    # within the same string the new role applies; afterwards it may be rolled back
    verdict = judge("SET ROLE rds_superuser; ALTER ROLE CURRENT_USER NOLOGIN", FACTS)
    assert verdict.refusal is not None
    assert judge("BEGIN; SET ROLE rds_superuser", FACTS).role == UNKNOWN_ROLE


MANAGING_OTHERS = [
    "CREATE ROLE app LOGIN PASSWORD 'x'",
    "CREATE USER app2 WITH ENCRYPTED PASSWORD 'x' VALID UNTIL 'infinity' IN ROLE rds_superuser",
    "ALTER ROLE app NOLOGIN",
    "ALTER USER app RENAME TO app3",
    "ALTER ROLE app SET search_path = a, b",
    "DROP ROLE IF EXISTS app",
    "GRANT rds_superuser TO app",
    "GRANT rds_iam TO app",
    "REVOKE rds_superuser FROM app",
    "GRANT pg_monitor TO app WITH ADMIN OPTION",
    "COMMENT ON ROLE app IS 'rdsadmin'",
    "ALTER GROUP rds_superuser ADD USER app",
    "SELECT 'ALTER ROLE rdsadmin NOLOGIN'",
    "-- DROP ROLE rdsadmin\nSELECT 1",
    "SELECT * FROM pg_roles WHERE rolname = 'rdsadmin'",
    "CREATE TABLE rdsadmin (id int)",
    "CREATE SCHEMA rdsadmin",
    "SELECT now(), lower('X'), count(*) FROM pg_class",
    "SELECT pg_catalog.now()",
    "SET search_path = public",
    "SET ROLE app",
    "GRANT SELECT ON t TO rdsadmin",
    "ALTER DEFAULT PRIVILEGES FOR ROLE master GRANT SELECT ON TABLES TO app",
]


@pytest.mark.parametrize("sql", MANAGING_OTHERS)
def test_ordinary_statements_pass(sql: str) -> None:
    verdict = judge(sql, FACTS)
    assert verdict.refusal is None, verdict.refusal
    assert not verdict.check_after


PASSWORD_COMMANDS = [
    "CREATE ROLE x PASSWORD 'p'",
    "CREATE USER x WITH ENCRYPTED PASSWORD 'p'",
    "CREATE ROLE x PASSWORD NULL",
    "CREATE ROLE x VALID UNTIL '2030-01-01'",
    "ALTER ROLE x PASSWORD 'p'",
    "ALTER USER x WITH ENCRYPTED PASSWORD 'SCRAM-SHA-256$4096:abc$def:ghi'",
    "ALTER ROLE x VALID UNTIL 'infinity'",
    "ALTER GROUP x RENAME TO y",
    "ALTER USER x RENAME TO y",
    "alter user CURRENT_USER password 'p'",
    "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN ALTER USER x PASSWORD 'p'; END $$",
]


@pytest.mark.parametrize("sql", PASSWORD_COMMANDS)
def test_restricted_password_commands(sql: str) -> None:
    restricted = PgFacts(session_user="master", restrict_password_commands=True, graph=RoleGraph(), builtins=BUILTINS)
    verdict = judge(sql, restricted)
    assert verdict.refusal is not None and verdict.refusal.message == PASSWORD_MESSAGE
    assert verdict.refusal.sqlstate == "42501"
    member = PgFacts(session_user="master", restrict_password_commands=True, password_member=True, graph=RoleGraph(),
                     builtins=BUILTINS)
    assert judge(sql, member).refusal is None
    assert judge(sql, PgFacts(session_user="master", graph=RoleGraph(), builtins=BUILTINS)).refusal is None


def test_other_role_changes_are_not_password_commands() -> None:
    restricted = PgFacts(session_user="master", restrict_password_commands=True, graph=RoleGraph())
    for sql in ("CREATE ROLE x LOGIN", "ALTER ROLE x NOLOGIN", "ALTER ROLE x SET work_mem = '4MB'", "DROP ROLE x"):
        assert judge(sql, restricted).refusal is None, sql


def test_iam_and_kerberos_are_exclusive() -> None:
    graph = RoleGraph.of([("rds_iam", "iam_group"), ("iam_group", "alice"), ("rds_ad", "bob"), ("team", "carol")])
    facts = PgFacts(session_user="master", graph=graph)
    assert judge("GRANT rds_iam, rds_ad TO dave", facts).refusal is not None
    assert judge("GRANT rds_ad TO alice", facts).refusal is not None  # alice is IAM through iam_group
    assert judge("GRANT iam_group TO bob", facts).refusal is not None  # bob is Kerberos
    refusal = judge("GRANT rds_ad TO team", PgFacts(session_user="master", graph=graph.of(
        graph.edges | {("rds_iam", "carol")}))).refusal  # carol, a member of team, is IAM
    assert refusal is not None and 'carol' in refusal.message and refusal.sqlstate == "0LP01"
    assert judge("CREATE ROLE eve IN ROLE rds_iam, rds_ad", facts).refusal is not None
    assert judge("ALTER GROUP rds_ad ADD USER alice", facts).refusal is not None
    assert judge("GRANT rds_iam TO carol", facts).refusal is None
    assert judge("GRANT team TO alice", facts).refusal is None
    assert judge("REVOKE rds_iam FROM alice", facts).refusal is None


def test_grants_need_the_role_graph() -> None:
    facts = PgFacts(session_user="master")
    assert judge("GRANT rds_ad TO x", facts).needs_graph
    assert judge("CREATE ROLE x IN ROLE g", facts).needs_graph
    assert not judge("REVOKE g FROM x", facts).needs_graph
    assert not judge("CREATE ROLE x LOGIN", facts).needs_graph


@pytest.mark.parametrize("sql", ["DO $$ BEGIN NULL; END $$", "CALL p()", "EXECUTE s(1)", "SELECT myfunc()",
                                 "SELECT unknown_function(1)", "SELECT lower(x) FROM t",  # lower: a user overload exists?
                                 "SELECT public.now()", "INSERT INTO t VALUES (myfunc())",
                                 "SELECT query_to_xml('SELECT myfunc()', true, true, '')"])
def test_opaque_code_is_checked_after(sql: str) -> None:
    facts = PgFacts(session_user="master", builtins=BUILTINS, routines=frozenset({"myfunc", "lower"}), graph=RoleGraph())
    verdict = judge(sql, facts)
    assert verdict.refusal is None and verdict.check_after, sql


def test_role_setting_builtins_make_the_role_unknown() -> None:
    verdict = judge("SELECT set_config('role', 'rds_superuser', false)", FACTS)
    assert verdict.refusal is None and verdict.role == UNKNOWN_ROLE and not verdict.check_after
    verdict = judge("SELECT set_config(x, 'y', false) FROM t", FACTS)
    assert verdict.role == UNKNOWN_ROLE
    verdict = judge("SELECT pg_catalog.set_config('search_path', '', false)", FACTS)
    assert verdict.refusal is None and verdict.role is None and not verdict.roles_changed
    assert judge("SELECT set_config('role', 'rdsadmin', false)", FACTS).refusal is not None


@pytest.mark.parametrize("body", [
    "CREATE FUNCTION f() RETURNS void LANGUAGE sql AS $$ ALTER ROLE rdsadmin NOLOGIN $$",
    "CREATE OR REPLACE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $b$ BEGIN IF true THEN DROP ROLE rds_iam; END IF; END $b$",
    "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
    "CREATE PROCEDURE p() LANGUAGE plpgsql AS $$ BEGIN REVOKE pg_monitor FROM rds_superuser; END $$",
])
def test_routine_bodies_are_judged_at_creation(body: str) -> None:
    verdict = judge(body, FACTS)
    if "ATOMIC" in body:
        assert verdict.refusal is None
    else:
        assert verdict.refusal is not None and verdict.refusal.rule.startswith("routine body")


def test_dynamic_sql_in_a_body_passes_creation() -> None:
    sql = "CREATE FUNCTION f(r text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'DROP ROLE ' || r; END $$"
    assert judge(sql, FACTS).refusal is None


@pytest.mark.parametrize("sql", ["ALTER ROLE rdsadmin", "SELEC 1", "SELECT 'unterminated", "\x00"])
def test_unparsable_text_is_refused(sql: str) -> None:
    verdict = judge(sql, FACTS)
    assert verdict.refusal is not None


def test_masking_hides_passwords() -> None:
    masked = mask("ALTER USER x PASSWORD 'secret' VALID UNTIL '2030-01-01'")
    assert "secret" not in masked and "2030" not in masked
    assert "secret" not in mask("CREATE ROLE y PASSWORD $q$secret$q$")


# --- spelling variants (property test) ---------------------------------------------------------

from hypothesis import given, settings
from hypothesis import strategies as st

_SEPARATORS = st.sampled_from([" ", "  ", "\t", "\n", " /* x */ ", " -- c\n", "/**/", " /* /* nested */ */ "])


@st.composite
def _rdsadmin_spelling(draw) -> str:
    kind = draw(st.sampled_from(["plain", "quoted", "unicode"]))
    if kind == "plain":
        return "".join(c.upper() if draw(st.booleans()) else c for c in "rdsadmin")
    if kind == "quoted":
        return '"rdsadmin"'
    escaped = "".join(f"\\{ord(c):04x}" if draw(st.booleans()) else c for c in "rdsadmin")
    return f'U&"{escaped}"'


@st.composite
def _statement(draw) -> str:
    template = draw(st.sampled_from([
        "ALTER {sep}ROLE{sep}{r}{sep}NOLOGIN", "alter user {r} with password 'x'", "DROP{sep}USER {r}",
        "ALTER ROLE {r} RENAME TO x", "GRANT pg_monitor TO{sep}{r}", "REVOKE pg_monitor FROM {r}",
        "COMMENT ON ROLE {r} IS 'x'", "SET ROLE{sep}{r}", "SET SESSION AUTHORIZATION {r}",
        "ALTER ROLE {r} SET work_mem = 1", "ALTER GROUP {r} ADD USER x",
    ]))
    words = template.split(" ")
    text = " ".join("".join(c.swapcase() if draw(st.booleans()) else c for c in w) if "{" not in w and "'" not in w else w
                    for w in words)
    return text.format(sep=draw(_SEPARATORS), r=draw(_rdsadmin_spelling()))


@settings(max_examples=300, deadline=None)
@given(_statement())
def test_every_spelling_of_rdsadmin_is_refused(sql: str) -> None:
    verdict = judge(sql, FACTS)
    assert verdict.refusal is not None, sql
    assert verdict.refusal.sqlstate == "42501" and "rdsadmin" in verdict.refusal.message


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_0123456789", min_size=1, max_size=12))
def test_other_role_names_pass(name: str) -> None:
    quoted = '"' + name + '"'
    if quoted.strip('"') in ("rdsadmin",) or quoted.strip('"') in {"rds_superuser", "rds_password", "rds_iam", "rds_ad",
                                                                      "rds_replication"}:
        return
    refusal = judge(f"ALTER ROLE {quoted} NOLOGIN", FACTS).refusal
    # names the grammar itself reserves ("none", "public" …) get the parser's (and the engine's) error
    assert refusal is None or refusal.rule == "unparsable statement"


def test_deeply_nested_statements_are_refused_not_crashed() -> None:
    sql = "SELECT " + "f(" * 3000 + "1" + ")" * 3000
    verdict = judge(sql, FACTS)
    assert verdict.refusal is not None and verdict.refusal.sqlstate == "42601"


@pytest.mark.parametrize("sql, ambiguous", [
    ("SELECT 1", False),
    ("SELECT 'no backslash', E'\\\\n', $$a\\b$$, $q$\\$q$", False),
    ('SELECT "odd\\name" FROM t', False),
    ("SELECT '\\''; ALTER ROLE rds_iam NOLOGIN; --'", True),
    ("SELECT N'a\\b'", True),
    ("SELECT 'C:\\temp'", True),
    ("SELECT 1 -- a comment \\ with a backslash", False),
    ("SELECT 'unterminated \\", True),
])
def test_backslash_in_standard_string(sql, ambiguous):
    """What reads differently with standard_conforming_strings off (the gateway refuses it
    then): a backslash in an ordinary literal; E'' strings, dollar quotes, identifiers and
    comments read alike."""
    from dbkeep.guard.pg_statements import backslash_in_standard_string

    assert backslash_in_standard_string(sql) is ambiguous
