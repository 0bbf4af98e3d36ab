"""Restricted password management and exclusive rds_iam/rds_ad on PostgreSQL (issue 12).

Through ``dbkeep up``'s gateway: with ``rds.restrict_password_commands`` = 1 (a static cluster
parameter) only members of ``rds_password`` may set passwords, expiries or rename roles, psql's
``\\password`` included; with 0 anyone the engine allows may. A grant that would make a role a
member of both ``rds_iam`` and ``rds_ad``, directly or through nested memberships in either
direction, is refused.
"""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import termios

import psycopg
import pytest

from clusters import create_cluster, unique
from gateway_checks import assert_no_exception_escaped_a_session
from pg_guard_helpers import PASSWORD, error_of, login, master, snapshot

PASSWORD_ERROR = "must be a member of rds_password to alter passwords"


@pytest.fixture(scope="module", autouse=True)
def no_exception_escaped_a_session(dbkeep):
    yield
    assert_no_exception_escaped_a_session(dbkeep, "postgres")


@pytest.fixture(scope="module")
def restricted(dbkeep):
    rds = dbkeep.client("rds")
    group = unique("pg-restrict")
    rds.create_db_cluster_parameter_group(DBClusterParameterGroupName=group, DBParameterGroupFamily="aurora-postgresql15",
                                          Description="restricted password management")
    rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=group, Parameters=[
        {"ParameterName": "rds.restrict_password_commands", "ParameterValue": "1", "ApplyMethod": "pending-reboot"}])
    cluster = create_cluster(dbkeep, "aurora-postgresql", unique("pgpw"), PASSWORD, DBClusterParameterGroupName=group)
    with master(dbkeep, cluster) as conn:
        # a role manager outside rds_password, and a plain login
        conn.execute("CREATE ROLE manager LOGIN CREATEROLE PASSWORD 'Manager-Pass-1'")
        conn.execute("CREATE ROLE plain LOGIN PASSWORD 'Plain-Pass-1'")
        conn.execute("CREATE ROLE target LOGIN")
    return cluster


@pytest.fixture(scope="module")
def unrestricted(dbkeep):
    cluster = create_cluster(dbkeep, "aurora-postgresql", unique("pgiam"), PASSWORD)
    with master(dbkeep, cluster) as conn:
        conn.execute("CREATE ROLE manager LOGIN CREATEROLE PASSWORD 'Manager-Pass-1'")
        conn.execute("CREATE ROLE target LOGIN")
    return cluster


PASSWORD_COMMANDS = [
    "ALTER ROLE target PASSWORD 'Target-Pass-1'",
    "ALTER USER target WITH ENCRYPTED PASSWORD 'Target-Pass-1'",
    "ALTER ROLE target VALID UNTIL 'infinity'",
    "CREATE ROLE pw_{u} PASSWORD 'x'",
    "CREATE USER pw_{u} VALID UNTIL '2100-01-01'",
    "ALTER ROLE target RENAME TO target",
]


@pytest.mark.parametrize("sql", PASSWORD_COMMANDS)
def test_only_rds_password_members_manage_passwords_when_restricted(dbkeep, restricted, sql):
    u = unique("x").replace("-", "_")
    sql = sql.format(u=u)
    with login(dbkeep, restricted, "manager", "Manager-Pass-1") as manager:
        error = error_of(manager, sql)
        assert error is not None and error.sqlstate == "42501" and error.diag.message_primary == PASSWORD_ERROR, sql
    with master(dbkeep, restricted) as conn:  # the master is a member through rds_superuser
        error = error_of(conn, sql)
        # renaming a role to its own name is the engine's own error, past the guard
        assert error is None or error.diag.message_primary == 'role "target" already exists', (sql, error)


def test_a_plain_role_cannot_change_its_own_password_when_restricted(dbkeep, restricted):
    with login(dbkeep, restricted, "plain", "Plain-Pass-1") as plain:
        error = error_of(plain, "ALTER USER CURRENT_USER PASSWORD 'Other-Pass-1'")
        assert error is not None and error.diag.message_primary == PASSWORD_ERROR
        assert plain.execute("SELECT 1").fetchone() == (1,)


def test_rds_password_membership_allows_it(dbkeep, restricted):
    with master(dbkeep, restricted) as conn:
        conn.execute("GRANT rds_password TO manager")
    try:
        with login(dbkeep, restricted, "manager", "Manager-Pass-1") as manager:
            manager.execute("ALTER ROLE target PASSWORD 'Target-Pass-2'")
    finally:
        with master(dbkeep, restricted) as conn:
            conn.execute("REVOKE rds_password FROM manager")


def _psql_password(dbkeep, cluster, user: str, password: str, role: str) -> str:
    """psql's \\password on a terminal (a pty): it prompts twice, computes the SCRAM verifier
    and sends ALTER USER … PASSWORD. Returns what psql printed."""
    conninfo = (f"host=localhost port={cluster['Port']} user={user} dbname=appdb sslmode=verify-full "
                f"sslrootcert={dbkeep.state_dir / 'ca.pem'}")
    controller, terminal = os.openpty()

    def take_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(["psql", conninfo, "-c", f"\\password {role}"], stdin=terminal, stdout=terminal,
                            stderr=terminal, preexec_fn=take_terminal, env={"PGPASSWORD": password, "PATH": "/usr/bin:/bin"})
    os.close(terminal)
    seen = b""
    try:
        for prompt in (b"Enter new password", b"Enter it again"):
            while prompt not in seen:
                ready, _, _ = select.select([controller], [], [], 30)
                assert ready, f"psql did not prompt: {seen!r}"
                seen += os.read(controller, 4096)
            seen = seen.replace(prompt, b"")
            os.write(controller, b"New-Pass-123\n")
        while True:
            ready, _, _ = select.select([controller], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: psql has exited
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(controller)
        proc.wait(timeout=30)
    return seen.decode("utf-8", "replace")


def test_psql_password_is_a_password_command(dbkeep, restricted):
    assert PASSWORD_ERROR in _psql_password(dbkeep, restricted, "manager", "Manager-Pass-1", "target")
    assert "ERROR" not in _psql_password(dbkeep, restricted, "master", PASSWORD, "target")
    login(dbkeep, restricted, "target", "New-Pass-123").close()


def test_unrestricted_clusters_leave_passwords_alone(dbkeep, unrestricted):
    with login(dbkeep, unrestricted, "manager", "Manager-Pass-1") as manager:
        manager.execute("ALTER ROLE target PASSWORD 'Target-Pass-1' VALID UNTIL 'infinity'")
    assert "ERROR" not in _psql_password(dbkeep, unrestricted, "manager", "Manager-Pass-1", "target")
    login(dbkeep, unrestricted, "target", "New-Pass-123").close()


def test_the_parameter_is_static(dbkeep):
    rds = dbkeep.client("rds")
    params = rds.describe_engine_default_cluster_parameters(DBParameterGroupFamily="aurora-postgresql15")
    entry = next(p for p in params["EngineDefaults"]["Parameters"] if p["ParameterName"] == "rds.restrict_password_commands")
    assert entry["ApplyType"] == "static" and entry["AllowedValues"] == "0,1" and entry.get("ParameterValue") == "0"


def test_rds_iam_and_rds_ad_are_exclusive_directly_and_nested(dbkeep, unrestricted):
    before = snapshot(dbkeep, unrestricted)
    with master(dbkeep, unrestricted) as conn:
        for role in ("alice", "bob", "carol", "iam_team", "ad_team", "team"):
            conn.execute(f"CREATE ROLE {role}")
        conn.execute("GRANT rds_iam TO alice")
        error = error_of(conn, "GRANT rds_ad TO alice")
        assert error is not None and error.sqlstate == "0LP01" and "rds_iam and rds_ad" in error.diag.message_primary
        error = error_of(conn, "GRANT rds_iam, rds_ad TO bob")
        assert error is not None and "rds_iam and rds_ad" in error.diag.message_primary
        conn.execute("GRANT rds_iam TO iam_team")
        conn.execute("GRANT rds_ad TO ad_team")
        conn.execute("GRANT ad_team TO carol")
        # carol is a Kerberos user through ad_team: making her an IAM user through iam_team is refused
        error = error_of(conn, "GRANT iam_team TO carol")
        assert error is not None and 'role "carol"' in error.diag.message_primary
        # the other direction: a group whose members include an IAM user gets rds_ad
        conn.execute("GRANT team TO alice")
        error = error_of(conn, "GRANT ad_team TO team")
        assert error is not None and 'role "alice"' in error.diag.message_primary
        error = error_of(conn, "ALTER GROUP rds_ad ADD USER alice")
        assert error is not None
        error = error_of(conn, "CREATE ROLE dave IN ROLE iam_team, ad_team")
        assert error is not None
        conn.execute("GRANT iam_team TO bob")  # harmless grants still pass
        both = conn.execute(
            "SELECT r.rolname FROM pg_roles r WHERE pg_has_role(r.oid, 'rds_iam', 'MEMBER') "
            "AND pg_has_role(r.oid, 'rds_ad', 'MEMBER') AND NOT r.rolsuper "
            "AND r.rolname NOT IN ('rds_iam', 'rds_ad')").fetchall()
        assert both == []
    assert snapshot(dbkeep, unrestricted) == before


def test_a_session_whose_role_becomes_privileged_is_ended(dbkeep, unrestricted):
    import time

    from gateway_checks import audit_events, audit_mark

    with master(dbkeep, unrestricted) as conn:
        conn.execute("CREATE ROLE promoted LOGIN PASSWORD 'Promoted-Pass-1'")
    app = login(dbkeep, unrestricted, "promoted", "Promoted-Pass-1")
    try:
        assert app.execute("SELECT 1").fetchone() == (1,)  # not inspected: the native relay
        mark = audit_mark(dbkeep)
        with master(dbkeep, unrestricted) as conn:
            conn.execute("GRANT rds_superuser TO promoted")
            conn.execute("SELECT 1")  # after the grant's ReadyForQuery the others are asked about
        deadline = time.monotonic() + 30
        while not audit_events(dbkeep, "gateway.session_ended", unrestricted["DBClusterIdentifier"], since=mark):
            assert time.monotonic() < deadline, "the promoted role's session was not ended"
            time.sleep(0.1)
        with pytest.raises(psycopg.OperationalError):
            app.execute("SELECT 1")
    finally:
        app.close()
    # its new sessions are inspected
    with login(dbkeep, unrestricted, "promoted", "Promoted-Pass-1") as again:
        error = error_of(again, "ALTER ROLE rdsadmin NOLOGIN")
        assert error is not None and error.diag.message_primary == 'permission denied to alter role "rdsadmin"'
