"""rdsadmin and the rds_* roles are untouchable through the gateway (issue 12, PostgreSQL).

As the master user, through ``dbkeep up``'s gateway: every statement of the corpus is refused
with SQLSTATE 42501 (naming rdsadmin where it is the target) before the engine sees it, in
every spelling (case, quotes, Unicode escapes, comments, whitespace, multi-statement strings,
the extended protocol); code the guard cannot see into (DO, a function or procedure made to do
it, EXECUTE of a prepared statement) runs, and then dbkeep finds the damage, restores the roles,
ends the session and audits it. After each case rdsadmin's and the protected roles' definition,
attributes, password hash, memberships, settings and comment are what they were.
"""

from __future__ import annotations

import uuid

import psycopg
import pytest

from clusters import create_cluster, unique
from gateway_checks import assert_no_exception_escaped_a_session, audit_events, audit_mark
from pg_guard_helpers import PASSWORD, error_of, master, snapshot


@pytest.fixture(scope="module", autouse=True)
def no_exception_escaped_a_session(dbkeep):
    yield
    assert_no_exception_escaped_a_session(dbkeep, "postgres")


@pytest.fixture(scope="module")
def pg(dbkeep):
    return create_cluster(dbkeep, "aurora-postgresql", unique("pgguard"), PASSWORD)


@pytest.fixture(scope="module")
def baseline(dbkeep, pg):
    with master(dbkeep, pg) as conn:
        conn.execute("CREATE ROLE app_user LOGIN PASSWORD 'App-Pass-1'")
    return snapshot(dbkeep, pg)


@pytest.fixture(scope="module")
def unhooked(tmp_path_factory):
    """A ``dbkeep up`` whose engines run without dbkeep_protect.so (engines/pg_hook.py), so that
    opaque code can do the damage the gateway's check after it must find and undo (the layer
    behind the hook): (dbkeep, cluster, baseline)."""
    import shutil
    import tempfile
    from pathlib import Path

    from dbkeep.engines.pg_hook import TEST_OFF_ENV
    from dbkeep_process import DbkeepProcess

    base = Path(tempfile.mkdtemp(prefix="dbkeep-e2e-unhooked-"))
    proc = DbkeepProcess(base / "state", extra_args=["--max-connections", "200"], extra_env={TEST_OFF_ENV: "1"}).start()
    try:
        cluster = create_cluster(proc, "aurora-postgresql", unique("pgbare"), PASSWORD)
        with master(proc, cluster) as conn:
            assert conn.execute("SHOW shared_preload_libraries").fetchone() == ("",)
            conn.execute("CREATE ROLE app_user LOGIN PASSWORD 'App-Pass-1'")
        yield proc, cluster, snapshot(proc, cluster)
    finally:
        assert proc.stop() == 0
        shutil.rmtree(base, ignore_errors=True)


REFUSED_RDSADMIN = [
    "ALTER ROLE rdsadmin NOLOGIN",
    "ALTER USER RDSADMIN WITH PASSWORD 'x'",
    'ALTER USER "rdsadmin" VALID UNTIL \'2000-01-01\'',
    'ALTER ROLE U&"\\0072dsadmin" CONNECTION LIMIT 0',
    "ALTER ROLE rdsadmin RENAME TO gone",
    "ALTER ROLE rdsadmin SET statement_timeout = 1",
    "ALTER ROLE rdsadmin IN DATABASE appdb SET search_path = nowhere",
    "ALTER ROLE rdsadmin RESET ALL",
    "ALTER GROUP pg_monitor ADD USER rdsadmin",
    "DROP ROLE rdsadmin",
    "DROP USER IF EXISTS app_nobody, rdsadmin",
    "GRANT pg_monitor TO rdsadmin",
    "GRANT app_user TO rdsadmin",
    "REVOKE pg_monitor FROM rdsadmin",
    "COMMENT ON ROLE rdsadmin IS 'mine now'",
    "SECURITY LABEL FOR selinux ON ROLE rdsadmin IS 'x'",
    "SET ROLE rdsadmin",
    "SET SESSION AUTHORIZATION rdsadmin",
    "SET LOCAL role TO 'rdsadmin'",
    "ALTER DEFAULT PRIVILEGES FOR ROLE rdsadmin GRANT SELECT ON TABLES TO master",
    "REASSIGN OWNED BY rdsadmin TO master",
    "CREATE ROLE sneaky ROLE rdsadmin",
    "/* hello */ alter -- comment\n role\n\trdsadmin   nologin",
    "SELECT 1; GRANT pg_monitor TO rdsadmin",
    "ALTER ROLE app_user SET role = rdsadmin",
    "CREATE FUNCTION bad_set() RETURNS int LANGUAGE sql SET role = rdsadmin AS $$ SELECT 1 $$",
    "CREATE FUNCTION bad_body() RETURNS void LANGUAGE plpgsql AS $$ BEGIN GRANT pg_monitor TO rdsadmin; END $$",
]

REFUSED_PROTECTED = [
    "DROP ROLE rds_superuser",
    "DROP ROLE rds_iam",
    "ALTER ROLE rds_superuser RENAME TO su",
    "ALTER ROLE rds_password LOGIN PASSWORD 'x'",
    "ALTER ROLE rds_iam VALID UNTIL 'infinity'",
    "ALTER ROLE rds_ad SET work_mem = '1GB'",
    "ALTER ROLE rds_replication CONNECTION LIMIT 1",
    "REVOKE pg_monitor FROM rds_superuser",
    "REVOKE rds_password FROM rds_superuser",
    "REVOKE ADMIN OPTION FOR rds_password FROM rds_superuser",
    "GRANT pg_read_all_data TO rds_iam",
    "ALTER GROUP pg_signal_backend DROP USER rds_superuser",
    "COMMENT ON ROLE rds_iam IS 'x'",
    "SET ROLE rds_superuser; ALTER ROLE CURRENT_USER NOCREATEROLE",
    "CREATE PROCEDURE bad_proc() LANGUAGE plpgsql AS $$ BEGIN DROP ROLE rds_ad; END $$",
]


def _refused(dbkeep, pg, sql: str, *, prepared: bool = False) -> psycopg.Error:
    with master(dbkeep, pg) as conn:
        error = error_of(conn, sql) if not prepared else _prepared_error(conn, sql)
        assert error is not None, sql
        # the session goes on: the refusal was a statement error
        assert conn.execute("SELECT 1").fetchone() == (1,)
    return error


def _prepared_error(conn: psycopg.Connection, sql: str) -> psycopg.Error | None:
    try:
        conn.execute(sql, prepare=True)  # Parse/Bind/Execute
    except psycopg.Error as exc:
        return exc
    return None


@pytest.mark.parametrize("sql", REFUSED_RDSADMIN)
def test_rdsadmin_cannot_be_touched(dbkeep, pg, baseline, sql):
    mark = audit_mark(dbkeep)
    error = _refused(dbkeep, pg, sql)
    assert error.sqlstate == "42501" and "rdsadmin" in error.diag.message_primary, (sql, error)
    assert snapshot(dbkeep, pg) == baseline
    events = audit_events(dbkeep, "gateway.statement_refused", pg["DBClusterIdentifier"], since=mark)
    assert events and events[-1]["user"] == "master" and events[-1]["rule"] and events[-1]["session"]
    assert "'x'" not in events[-1]["statement"] and "mine now" not in events[-1]["statement"]  # literals masked


@pytest.mark.parametrize("sql", REFUSED_PROTECTED)
def test_protected_roles_cannot_be_changed(dbkeep, pg, baseline, sql):
    error = _refused(dbkeep, pg, sql)
    assert error.sqlstate == "42501", (sql, error)
    assert snapshot(dbkeep, pg) == baseline


@pytest.mark.parametrize("sql", ["ALTER ROLE rdsadmin NOLOGIN", "REVOKE pg_monitor FROM rds_superuser",
                                 "SELECT 1 WHERE false; DROP ROLE rds_iam"])
def test_the_extended_protocol_is_judged_too(dbkeep, pg, baseline, sql):
    if ";" in sql:  # several statements cannot be prepared: the engine refuses, the guard first
        sql = sql.split("; ")[1]
    error = _refused(dbkeep, pg, sql, prepared=True)
    assert error.sqlstate == "42501"
    assert snapshot(dbkeep, pg) == baseline


def test_an_unparsable_statement_is_refused_with_the_parsers_error(dbkeep, pg):
    error = _refused(dbkeep, pg, "ALTER ROLE rdsadmin WITH WITH")
    assert error.sqlstate == "42601" and "syntax error" in error.diag.message_primary


OPAQUE = {
    "do_block": ["DO $$ BEGIN EXECUTE 'GRANT pg_monitor TO ' || quote_ident('rds' || 'admin'); END $$"],
    "do_protected": ["DO $$ BEGIN EXECUTE format('ALTER ROLE %I VALID UNTIL %L', 'rds_iam', 'infinity'); END $$"],
    "function": [
        "CREATE OR REPLACE FUNCTION f_{u}(r text) RETURNS void LANGUAGE plpgsql AS "
        "$$ BEGIN EXECUTE 'REVOKE pg_monitor FROM ' || r; END $$",
        "SELECT f_{u}('rds_superuser')",
    ],
    "procedure": [
        "CREATE OR REPLACE PROCEDURE p_{u}(r text) LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'COMMENT ON ROLE ' || r || ' IS ''x'''; END $$",
        "CALL p_{u}('rds_ad')",
    ],
    "prepared_execute": [
        "CREATE OR REPLACE FUNCTION g_{u}(r text) RETURNS int LANGUAGE plpgsql AS "
        "$$ BEGIN EXECUTE 'ALTER ROLE ' || r || ' SET work_mem = ''64kB'''; RETURN 1; END $$",
        "PREPARE s_{u} AS SELECT g_{u}('rds_replication')",
        "EXECUTE s_{u}",
    ],
    "rename": ["DO $$ BEGIN EXECUTE 'ALTER ROLE rds_iam RENAME TO ' || 'gone_iam'; END $$"],
    "drop": ["DO $$ BEGIN EXECUTE 'DROP ROLE ' || 'rds_replication'; END $$"],
    "unnamed_parse": ["SELECT f_{u}('rds_superuser') FROM (SELECT 1) AS one WHERE 1 = %s"],
    "in_a_transaction": [
        "BEGIN",
        "DO $$ BEGIN EXECUTE 'GRANT pg_read_all_data TO rds_password'; END $$",
        "SELECT 1",
        "COMMIT",
    ],
}


@pytest.mark.parametrize("case", sorted(OPAQUE))
def test_code_the_guard_cannot_see_into_is_undone_and_ends_the_session(unhooked, case):
    dbkeep, pg, baseline = unhooked  # opaque code can do harm there
    u = uuid.uuid4().hex[:8]
    mark = audit_mark(dbkeep)
    if case == "unnamed_parse":  # the extended protocol, an unnamed statement
        with master(dbkeep, pg) as setup:
            setup.execute(OPAQUE["function"][0].format(u=u))
    conn = master(dbkeep, pg)
    try:
        for sql in OPAQUE[case]:
            sql = sql.format(u=u) if "{u}" in sql else sql
            if "%s" in sql:
                conn.execute(sql, (1,), prepare=False)
            else:
                conn.execute(sql)
        # the next statement waits for the check; the check finds the damage and ends the session
        with pytest.raises(psycopg.Error) as ended:
            conn.execute("SELECT 1")
        assert ended.value.sqlstate == "42501" and "undone" in str(ended.value)
        assert conn.broken or conn.closed
    finally:
        conn.close()
    assert snapshot(dbkeep, pg) == baseline  # a dropped role is recreated: all but its OID is as before
    events = audit_events(dbkeep, "gateway.protected_roles_restored", pg["DBClusterIdentifier"], since=mark)
    assert len(events) == 1 and events[0]["repairs"] and events[0]["restored"] is True
    with master(dbkeep, pg) as again:  # the master carries on in a new session
        assert again.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("case", sorted(OPAQUE))
def test_the_engine_itself_refuses_what_opaque_code_would_do_to_the_protected_roles(dbkeep, pg, baseline, case):
    """dbkeep_protect.so (engines/pg_hook.py): the same code, run inside the engine, is refused
    there with the guard's text; the session goes on and nothing needs undoing."""
    u = uuid.uuid4().hex[:8]
    mark = audit_mark(dbkeep)
    if case == "unnamed_parse":
        with master(dbkeep, pg) as setup:
            setup.execute(OPAQUE["function"][0].format(u=u))
    with master(dbkeep, pg) as conn:
        assert conn.execute("SHOW shared_preload_libraries").fetchone()[0].endswith("/conf/dbkeep_protect.so")
        refused = None
        for sql in OPAQUE[case]:
            sql = sql.format(u=u) if "{u}" in sql else sql
            try:
                conn.execute(sql, (1,), prepare=False) if "%s" in sql else conn.execute(sql)
            except psycopg.Error as exc:
                refused = exc
                break
        assert refused is not None and refused.sqlstate == "42501", refused
        assert refused.diag.message_primary.startswith("permission denied to ") and "role" in refused.diag.message_primary
        assert refused.diag.message_detail == "The role is managed by dbkeep."
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            conn.rollback()
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on
    assert snapshot(dbkeep, pg) == baseline
    assert audit_events(dbkeep, "gateway.protected_roles_restored", pg["DBClusterIdentifier"], since=mark) == []


def test_a_trigger_fired_by_an_uninspected_session_cannot_change_a_protected_role(dbkeep, pg, baseline):
    """An application role's sessions are not read by the gateway; a trigger of the master's that
    alters a protected role with the master's rights (SECURITY DEFINER) is refused by the engine."""
    u = uuid.uuid4().hex[:8]
    with master(dbkeep, pg) as conn:
        conn.execute(f"CREATE TABLE audit_{u} (n int)")
        conn.execute(f"CREATE FUNCTION trg_{u}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS "
                     f"$$ BEGIN EXECUTE 'ALTER ROLE ' || 'rds_replication CONNECTION LIMIT 3'; RETURN NEW; END $$")
        conn.execute(f"CREATE TRIGGER t_{u} BEFORE INSERT ON audit_{u} FOR EACH ROW EXECUTE FUNCTION trg_{u}()")
        conn.execute(f"GRANT INSERT ON audit_{u} TO app_user")
    from pg_guard_helpers import login

    with login(dbkeep, pg, "app_user", "App-Pass-1") as app:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match='permission denied to alter role "rds_replication"'):
            app.execute(f"INSERT INTO audit_{u} VALUES (1)")
    assert snapshot(dbkeep, pg) == baseline


def test_granting_the_protected_roles_to_others_stays_allowed_inside_the_engine(dbkeep, pg, baseline):
    with master(dbkeep, pg) as conn:
        conn.execute("DO $$ BEGIN EXECUTE 'GRANT rds_password TO app_user'; EXECUTE 'REVOKE rds_password FROM app_user'; END $$")
        conn.execute("DO $$ BEGIN EXECUTE 'CREATE ROLE hooked_' || 'x IN ROLE rds_iam'; EXECUTE 'DROP ROLE hooked_x'; END $$")
        conn.execute("DO $$ BEGIN EXECUTE 'ALTER GROUP rds_password ADD USER ' || 'app_user'; "
                     "EXECUTE 'ALTER GROUP rds_password DROP USER app_user'; END $$")
        # rdsadmin itself (a superuser) is refused by the engine with its own text
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be superuser"):
            conn.execute("DO $$ BEGIN EXECUTE 'ALTER ROLE ' || 'rdsadmin NOLOGIN'; END $$")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match='permission denied to alter role "rdsadmin"'):
            conn.execute("DO $$ BEGIN EXECUTE 'GRANT pg_monitor TO ' || 'rdsadmin'; END $$")
    assert snapshot(dbkeep, pg) == baseline


def test_opaque_code_that_does_no_harm_keeps_its_session(dbkeep, pg, baseline):
    with master(dbkeep, pg) as conn:
        conn.execute("DO $$ BEGIN PERFORM 1; END $$")
        conn.execute("CREATE OR REPLACE FUNCTION harmless(i int) RETURNS int LANGUAGE sql AS $$ SELECT i + 1 $$")
        assert conn.execute("SELECT harmless(1)").fetchone() == (2,)
        assert conn.execute("SELECT harmless(%s)", (41,), prepare=True).fetchone() == (42,)
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert snapshot(dbkeep, pg) == baseline


def test_a_session_that_leaves_right_after_opaque_code_is_still_checked(unhooked):
    dbkeep, pg, baseline = unhooked  # opaque code can do harm there
    mark = audit_mark(dbkeep)
    with master(dbkeep, pg) as conn:
        conn.execute("DO $$ BEGIN EXECUTE 'ALTER ROLE rds_iam VALID UNTIL ''infinity'''; END $$")
    ident = pg["DBClusterIdentifier"]
    import time
    deadline = time.monotonic() + 30
    while not audit_events(dbkeep, "gateway.protected_roles_restored", ident, since=mark):
        assert time.monotonic() < deadline, "no check after the session left"
        time.sleep(0.1)
    assert snapshot(dbkeep, pg) == baseline


def test_startup_options_cannot_become_rdsadmin(dbkeep, pg):
    with pytest.raises(psycopg.OperationalError) as refused:
        master(dbkeep, pg, options="-c role=rdsadmin").close()
    assert 'permission denied to set role "rdsadmin"' in str(refused.value)


def test_pg_terminate_backend_of_rdsadmin_is_refused_but_others_may_be_ended(dbkeep, pg, baseline):
    from pg_guard_helpers import rdsadmin
    with rdsadmin(dbkeep, pg) as admin, master(dbkeep, pg) as conn:
        admin_pid = admin.info.backend_pid
        error = error_of(conn, "SELECT pg_terminate_backend(%s)", (admin_pid,))
        assert error is not None and error.sqlstate == "42501"
        assert error.diag.message_primary == "must be a superuser to terminate superuser process"
        error = error_of(conn, "SELECT pg_cancel_backend(%s)", (admin_pid,))
        assert error is not None and error.diag.message_primary == "must be a superuser to cancel superuser query"
        assert admin.execute("SELECT 1").fetchone() == (1,)
        with psycopg.connect(host="localhost", port=pg["Port"], user="app_user", password="App-Pass-1", dbname="appdb",
                             sslmode="require") as victim:
            victim_pid = victim.info.backend_pid
            assert conn.execute("SELECT pg_terminate_backend(%s)", (victim_pid,)).fetchone() == (True,)
            with pytest.raises(psycopg.OperationalError):
                victim.execute("SELECT 1")


def test_opaque_code_pipelined_behind_a_slow_statement_is_checked_after_it_ran(unhooked):
    """The check waits for the opaque statement's own answer, not an earlier one's: slow
    statements and their Syncs go first (the native relay carries them, Python never frames them),
    DO and its Sync right behind. The check must run after DO did, find the damage and undo it."""
    dbkeep, pg, baseline = unhooked  # opaque code can do harm there
    import time

    mark = audit_mark(dbkeep)
    conn = master(dbkeep, pg)
    try:
        # a statement that waits for the role's facts: once answered the session is on the relay threads
        assert conn.execute("SELECT length(current_user)").fetchone() == (6,)
        pgconn = conn.pgconn
        pgconn.enter_pipeline_mode()
        for _ in range(2):
            pgconn.send_query_params(b"SELECT pg_sleep(0.3)", None)
            pgconn.pipeline_sync()
        # DO's change comes late: a check that ran at the earlier statement's answer would miss it
        pgconn.send_query_params(b"DO $$ BEGIN PERFORM pg_sleep(1); "
                                 b"EXECUTE 'ALTER ROLE rds_iam VALID UNTIL ''infinity'''; END $$", None)
        pgconn.pipeline_sync()
        while pgconn.flush():  # psycopg's connections are non-blocking
            time.sleep(0.01)
        ident = pg["DBClusterIdentifier"]
        deadline = time.monotonic() + 30
        while not audit_events(dbkeep, "gateway.protected_roles_restored", ident, since=mark):
            assert time.monotonic() < deadline, "the check ran before DO did, or not at all"
            time.sleep(0.1)
    finally:
        conn.close()
    assert snapshot(dbkeep, pg) == baseline


# With standard_conforming_strings off the engine reads a backslash in an ordinary string
# literal as an escape; pglast (like the engine by default) reads it as a character. So
# '\'' is one string to the parser, and a string that ends at the second quote to the engine:
# what follows would run unread. The guard refuses such literals while the setting is off or
# may have changed (E'' strings, dollar quotes and backslash-free strings read the same).
HIDDEN = "SELECT '\\''; ALTER ROLE rds_replication CONNECTION LIMIT 7; --'"
STRINGS_REFUSED = "standard_conforming_strings"


@pytest.mark.parametrize("how", ["set", "startup", "set_config", "pipelined"])
def test_a_statement_hidden_in_a_string_with_standard_conforming_strings_off(dbkeep, pg, baseline, how):
    mark = audit_mark(dbkeep)
    options = {"options": "-c standard_conforming_strings=off"} if how == "startup" else {}
    with master(dbkeep, pg, **options) as conn:
        if how == "set":
            conn.execute("SET standard_conforming_strings = off")
        elif how == "set_config":
            conn.execute("SELECT set_config('standard_conforming_strings', 'off', false)")
        if how == "pipelined":  # sent before the engine has answered the SET
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused, conn.pipeline():
                conn.execute("SET standard_conforming_strings = off")
                conn.execute(HIDDEN)
            error = refused.value
        else:
            error = error_of(conn, HIDDEN)
        assert error is not None and error.sqlstate == "42501", error
        assert STRINGS_REFUSED in error.diag.message_primary
        if how != "pipelined":  # there the refusal rolled back the batch's implicit transaction, SET included
            assert conn.execute("SHOW standard_conforming_strings").fetchone() == ("off",)
            assert conn.execute("SELECT E'a\\\\b', 'plain', $$c\\d$$").fetchone() == ("a\\b", "plain", "c\\d")
    assert snapshot(dbkeep, pg) == baseline
    events = audit_events(dbkeep, "gateway.statement_refused", pg["DBClusterIdentifier"], since=mark)
    assert any(STRINGS_REFUSED in (e.get("rule") or "") for e in events), events


def test_backslashes_in_strings_pass_with_standard_conforming_strings_on(dbkeep, pg, baseline):
    with master(dbkeep, pg) as conn:
        assert conn.execute(HIDDEN).fetchone() == ("\\'; ALTER ROLE rds_replication CONNECTION LIMIT 7; --",)
        assert conn.execute("SELECT 'C:\\temp\\new'").fetchone() == ("C:\\temp\\new",)
    assert snapshot(dbkeep, pg) == baseline


def test_non_ascii_sent_before_a_change_of_client_encoding_is_answered(dbkeep, pg, baseline):
    """A pipelined statement is decoded here in the encoding the engine last reported; after
    a SET client_encoding the engine decodes it in the new one (a multi-byte character whose
    second byte is a backslash or a quote could hide code): refused until the engine answered."""
    with master(dbkeep, pg) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused, conn.pipeline():
            conn.execute("SET client_encoding TO 'LATIN1'")
            conn.execute("SELECT 'caf\u00e9'")
        assert "client_encoding" in refused.value.diag.message_primary
        conn.execute("SET client_encoding TO 'LATIN1'")  # answered before the next one: read alike
        assert conn.execute("SELECT 'caf\u00e9'").fetchone() == ("caf\u00e9",)
    assert snapshot(dbkeep, pg) == baseline
