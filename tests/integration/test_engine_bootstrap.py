"""The Aurora-style bootstrap on real engines: accounts, roles, privileges exactly as SPEC.md."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess

import psycopg
import pytest

from dbkeep.engines.bootstrap import MYSQL_MASTER_PRIVILEGES
from engine_clients import (SPEC_V2_MARIADB, global_privileges, members_of, my_connect, my_login_error, my_rows,
                            pg_connect, pg_login_error, pg_role, pg_rows)

pytestmark = pytest.mark.engines

# --- layout ---------------------------------------------------------------------------------------

def test_private_layout(mysql_cluster, pg_cluster, engines):
    assert stat.S_IMODE(os.stat(engines.state_dir).st_mode) & 0o007 == 0, "state dir opened to others"
    for cluster in (mysql_cluster, pg_cluster):
        layout = cluster.layout
        for d in (layout.data, layout.run, layout.log, layout.conf):
            st = os.stat(d)
            assert stat.S_IMODE(st.st_mode) == 0o700, d
            assert st.st_uid == cluster.user.uid
        assert stat.S_IMODE(os.stat(layout.root).st_mode) & 0o007 == 0
    if os.geteuid() == 0:  # each cluster's engine has an OS user of its own, in the engines' group
        users = (mysql_cluster.user, pg_cluster.user)
        assert len({u.uid for u in users} | {engines.driver.user.uid, 0}) == 4
        assert all(u.name.startswith("dbk-") and u.groups == (engines.driver.user.gid,) for u in users)
    secret = mysql_cluster.layout.secret_path
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600 and os.stat(secret).st_uid == os.geteuid()


# --- MariaDB ----------------------------------------------------------------------------------------

def test_mysql_master_grants_match_spec(mysql_cluster):
    assert set(MYSQL_MASTER_PRIVILEGES) == SPEC_V2_MARIADB
    grants = mysql_cluster.rdsadmin("SHOW GRANTS FOR 'admin'@'%'")
    privs, rest = global_privileges(grants)
    assert privs == SPEC_V2_MARIADB
    assert "WITH GRANT OPTION" in rest
    assert not privs & {"SUPER", "CONNECTION ADMIN", "FILE", "SHUTDOWN", "ALL PRIVILEGES"}
    lines = [g for (g,) in grants]
    assert "GRANT `rds_superuser_role` TO `admin`@`%` WITH ADMIN OPTION" in lines
    assert "SET DEFAULT ROLE `rds_superuser_role` FOR `admin`@`%`" in lines
    role_privs, role_rest = global_privileges(mysql_cluster.rdsadmin("SHOW GRANTS FOR rds_superuser_role"))
    assert role_privs == SPEC_V2_MARIADB and "WITH GRANT OPTION" in role_rest


def test_mysql_master_logs_in_with_default_role(mysql_cluster):
    conn = my_connect(mysql_cluster, database="appdb")
    try:
        assert my_rows(conn, "SELECT CURRENT_USER(), CURRENT_ROLE()") == [("admin@%", "rds_superuser_role")]
        my_rows(conn, "CREATE TABLE IF NOT EXISTS boot_t (id INT PRIMARY KEY)")
        my_rows(conn, "DROP TABLE boot_t")
        assert my_rows(conn, "SELECT @@time_zone, @@skip_networking") == [("UTC", 1)]
    finally:
        conn.close()
    errno, msg = my_login_error(mysql_cluster, password="wrong-password")
    assert errno == 1045 and "Access denied for user 'admin'@'localhost'" in msg


def test_mysql_accounts_hygiene(mysql_cluster):
    accounts = {(u, h) for u, h in mysql_cluster.rdsadmin(
        "SELECT User, Host FROM mysql.global_priv WHERE Host <> ''")}
    assert accounts == {("rdsadmin", "localhost"), ("admin", "%"), ("mariadb.sys", "localhost")}
    roles = [u for (u,) in mysql_cluster.rdsadmin("SELECT User FROM mysql.global_priv WHERE Host = ''")]
    assert roles == ["rds_superuser_role"]
    # Nobody but rdsadmin holds SUPER (or any privilege the master lacks).
    supers = mysql_cluster.rdsadmin("SELECT DISTINCT GRANTEE FROM information_schema.USER_PRIVILEGES "
                                    "WHERE PRIVILEGE_TYPE IN ('SUPER', 'SHUTDOWN', 'FILE', 'CONNECTION ADMIN')")
    assert supers == [("'rdsadmin'@'localhost'",)]
    dbs = {d for (d,) in mysql_cluster.rdsadmin("SHOW DATABASES")}
    assert "appdb" in dbs and "test" not in dbs
    assert mysql_cluster.rdsadmin("SELECT COUNT(*) FROM mysql.db") == [(0,)]
    assert mysql_cluster.rdsadmin("SELECT COUNT(*) FROM mysql.proxies_priv") == [(0,)]
    assert mysql_cluster.rdsadmin("SELECT COUNT(*) FROM mysql.time_zone_name")[0][0] > 300
    procs = set(mysql_cluster.rdsadmin(
        "SELECT ROUTINE_NAME, DEFINER, SECURITY_TYPE FROM information_schema.ROUTINES "
        "WHERE ROUTINE_SCHEMA = 'mysql' AND ROUTINE_NAME LIKE 'rds_kill%'"))
    assert procs == {("rds_kill", "rdsadmin@localhost", "DEFINER"),
                     ("rds_kill_query", "rdsadmin@localhost", "DEFINER")}


def test_mysql_rdsadmin_not_reachable_without_secret(mysql_cluster):
    errno, _ = my_login_error(mysql_cluster, user="rdsadmin", password="")
    assert errno == 1045
    errno, _ = my_login_error(mysql_cluster, user="root", password="")
    assert errno in (1045, 1698)


def test_mysql_plugin_dir_holds_only_the_allowed_plugins(mysql_cluster, engines):
    """plugin_dir is dbkeep's, not the engine user's, and is rebuilt at every start: a planted
    plugin is gone and a redirected link is put back before the engine can load either."""
    plugins = mysql_cluster.layout.root / "plugins"
    allowed = "/usr/lib/mysql/plugin/auth_ed25519.so"

    def contents() -> dict[str, str]:
        return {entry.name: os.readlink(entry) for entry in plugins.iterdir()}

    st = os.lstat(plugins)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755 and st.st_uid == os.geteuid()
    assert contents() == {"auth_ed25519.so": allowed}
    assert mysql_cluster.rdsadmin("SELECT @@plugin_dir")[0][0].rstrip("/") == str(plugins)
    (plugins / "auth_pam.so").symlink_to("/usr/lib/mysql/plugin/auth_pam.so")
    (plugins / "auth_ed25519.so").unlink()
    (plugins / "auth_ed25519.so").symlink_to("/usr/lib/mysql/plugin/auth_pam.so")
    engines.run(engines.driver.stop(mysql_cluster.spec.cluster_id))
    engines.run(engines.driver.start(mysql_cluster.spec))
    assert contents() == {"auth_ed25519.so": allowed}
    active = {name for (name,) in mysql_cluster.rdsadmin(
        "SELECT plugin_name FROM information_schema.plugins WHERE plugin_type = 'AUTHENTICATION' AND plugin_status = 'ACTIVE'")}
    assert active == {"mysql_native_password", "mysql_old_password", "ed25519"}


# --- PostgreSQL ---------------------------------------------------------------------------------------

def test_pg_roles_match_spec(pg_cluster):
    master = pg_role(pg_cluster, "pgadmin")
    assert master == dict(super=False, inherit=True, createrole=True, createdb=True, login=True,
                          replication=False, bypassrls=False, connlimit=-1, validuntil="infinity")
    assert members_of(pg_cluster, "pgadmin") == {("rds_superuser", False)}
    su = pg_role(pg_cluster, "rds_superuser")
    assert (su["login"], su["super"], su["createrole"], su["createdb"]) == (False, False, True, True)
    assert members_of(pg_cluster, "rds_superuser") == {
        ("pg_monitor", False), ("pg_signal_backend", False), ("rds_replication", True), ("rds_password", True)}
    for name in ("rds_password", "rds_iam", "rds_ad", "rds_replication"):
        r = pg_role(pg_cluster, name)
        assert not r["login"] and not r["super"] and not r["createrole"], name
    admin = pg_role(pg_cluster, "rdsadmin")
    assert admin["super"] and admin["login"]
    supers = pg_cluster.rdsadmin("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolsuper ORDER BY 1")
    # rdsadmin, and the host-access roles dbkeep locks (NOLOGIN, no members; see the last test)
    assert supers == [("pg_execute_server_program", False), ("pg_read_server_files", False),
                      ("pg_write_server_files", False), ("rdsadmin", True)]
    owner = pg_cluster.rdsadmin("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'appdb'")
    assert owner == [("pgadmin",)]
    assert pg_cluster.rdsadmin("SELECT rolpassword LIKE 'SCRAM-SHA-256$4096:%%' FROM pg_authid "
                               "WHERE rolname = 'pgadmin'") == [(True,)]
    # PostgreSQL 15's default is kept: PUBLIC may not CREATE in the public schema.
    assert pg_cluster.rdsadmin("SELECT has_schema_privilege('public', 'public', 'CREATE'), "
                               "has_schema_privilege('public', 'public', 'USAGE')") == [(False, True)]


def test_pg_master_logs_in_with_scram(pg_cluster):
    with pg_connect(pg_cluster) as conn:
        assert pg_rows(conn, "SELECT current_user, pg_has_role('rds_superuser', 'MEMBER')") == [("pgadmin", True)]
        assert pg_rows(conn, "SHOW password_encryption") == [("scram-sha-256",)]
        assert pg_rows(conn, "SHOW listen_addresses") == [("",)]
        pg_rows(conn, "CREATE TABLE boot_t (id int)")
        pg_rows(conn, "DROP TABLE boot_t")
    assert "password authentication failed" in pg_login_error(pg_cluster, password="wrong-password")


def test_pg_hba_no_password_path_to_rdsadmin(pg_cluster):
    hba = (pg_cluster.layout.conf / "pg_hba.conf").read_text()
    rules = [ln.split() for ln in hba.splitlines() if ln.strip() and not ln.startswith("#")]
    assert rules[0] == ["local", "all", "rdsadmin", "peer", "map=dbkeep"]
    # members of rds_iam: dbkeep's IAM proof through the cluster's PAM service (engines/iam.py)
    assert rules[1][:3] == ["local", "all", "+rds_iam"] and (rules[1][3:] == ["reject"] or (
        rules[1][3] == "pam" and rules[1][4].startswith("pamservice=dbkeep-iam-")))
    assert rules[2:] == [["local", "all", "all", "scram-sha-256"]]
    # rdsadmin has no password at all: only peer through the map gets in.
    assert pg_cluster.rdsadmin("SELECT rolpassword IS NULL FROM pg_authid WHERE rolname = 'rdsadmin'") == [(True,)]


def test_pg_master_cannot_touch_rdsadmin(pg_cluster):
    with pg_connect(pg_cluster) as conn:
        for stmt, text in (("DROP ROLE rdsadmin", "must be superuser to drop superusers"),
                           ("ALTER ROLE rdsadmin NOLOGIN",
                            "must be superuser to alter superuser roles or change superuser attribute"),
                           ("SELECT * FROM pg_authid", "permission denied for table pg_authid")):
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as ei:
                conn.execute(stmt)
            assert text in str(ei.value)


def test_pg_master_cannot_reach_the_host(pg_cluster, engines):
    """CREATEROLE on PostgreSQL 15 may grant any non-superuser role, and three predefined ones
    run programs or touch files as the engine's OS user. dbkeep keeps them superuser and
    memberless, so the master gets the engine's own refusals; a start repairs a cluster where
    they were not (one provisioned before the lock, or changed by hand)."""
    host_roles = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files")

    def refusals() -> None:
        with pg_connect(pg_cluster) as conn:
            for role in host_roles:
                for stmt in (f"GRANT {role} TO pgadmin", f"CREATE ROLE host_{role} IN ROLE {role}"):
                    with pytest.raises(psycopg.errors.InsufficientPrivilege) as ei:
                        conn.execute(stmt)
                    assert "must be superuser to alter superusers" in str(ei.value)
            pg_rows(conn, "CREATE TEMP TABLE out (line text)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as ei:
                conn.execute("COPY out FROM PROGRAM 'id'")
            assert "pg_execute_server_program" in str(ei.value)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("COPY out FROM '/etc/passwd'")

    def state() -> list[tuple]:
        return pg_cluster.rdsadmin(
            "SELECT r.rolname, r.rolsuper, (SELECT count(*) FROM pg_auth_members m WHERE m.roleid = r.oid) "
            "FROM pg_roles r WHERE r.rolname = ANY(%s) ORDER BY 1", [list(host_roles)])

    assert state() == [(role, True, 0) for role in host_roles]
    refusals()
    # as on a cluster from before the lock: the flag gone and the master already a member
    pg_cluster.rdsadmin("UPDATE pg_authid SET rolsuper = false WHERE rolname = ANY(%s)", [list(host_roles)])
    pg_cluster.rdsadmin("GRANT pg_execute_server_program, pg_read_server_files TO pgadmin")
    engines.run(engines.driver.stop(pg_cluster.spec.cluster_id))
    engines.run(engines.driver.start(pg_cluster.spec))
    assert state() == [(role, True, 0) for role in host_roles]
    refusals()


@pytest.mark.skipif(os.geteuid() != 0, reason="engines have users of their own only when dbkeep runs as root")
def test_one_clusters_engine_user_cannot_reach_another_cluster(mysql_cluster, pg_cluster, engines):
    """Whatever a master could make its engine do as its OS user stays inside its own cluster."""
    def as_user(user, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([*user.command_prefix(), *argv], capture_output=True, text=True, timeout=30, check=False)

    for own, other in ((mysql_cluster, pg_cluster), (pg_cluster, mysql_cluster)):
        assert as_user(own.user, "ls", str(own.layout.data)).returncode == 0  # the check can tell
        for path in (other.layout.data, other.layout.conf, other.layout.root, engines.state_dir / "clusters"):
            denied = as_user(own.user, "ls", str(path))
            assert denied.returncode != 0 and "Permission denied" in denied.stderr, path
        denied = as_user(own.user, "sh", "-c", f"echo x > {other.layout.run}/planted")
        assert denied.returncode != 0 and "Permission denied" in denied.stderr
        assert as_user(own.user, "cat", str(own.layout.secret_path)).returncode != 0  # dbkeep's, not the engine's


@pytest.mark.skipif(os.geteuid() != 0, reason="engines have users of their own only when dbkeep runs as root")
def test_cluster_users_are_made_and_removed_with_their_clusters(engines):
    from dbkeep.engines import osuser
    from dbkeep.engines.driver import EngineSpec
    from dbkeep.engines import settings as engine_settings

    # a user left by a state directory deleted with its clusters in it
    stale = osuser.cluster_user(engines.driver.user, engines.state_dir.parent / "gone-state-dir" / "clusters" / "x")
    assert pwd.getpwnam(stale.name).pw_uid == stale.uid
    spec = EngineSpec("cluster-USERS0INTEGRATION000000000", "postgres", "pgadmin", None, engine_settings.defaults("postgres"))
    engines.run(engines.driver.provision(spec, "Users-Pass-123"), timeout=180)
    driver = engines.driver.for_engine("postgres")
    user = driver.user_of(driver.layout(spec.cluster_id))
    with pytest.raises(KeyError):  # made before the new user: the stale one is gone
        pwd.getpwnam(stale.name)
    assert pwd.getpwnam(user.name).pw_gecos == f"dbkeep engine {driver.layout(spec.cluster_id).root}"
    engines.run(engines.driver.destroy(spec.cluster_id))
    with pytest.raises(KeyError):
        pwd.getpwnam(user.name)
    assert not any(g.gr_name == user.name for g in grp.getgrall())


@pytest.mark.skipif(os.geteuid() != 0, reason="engines have users of their own only when dbkeep runs as root")
def test_a_cluster_from_before_per_cluster_users_is_handed_over(pg_cluster, engines):
    """A data directory owned by the engines' shared user (as every cluster was made before
    each had a user of its own) gets its own user at the next start, with all its files."""
    from dbkeep.engines import osuser

    driver = engines.driver.for_engine("postgres")
    layout, shared = pg_cluster.layout, engines.driver.user
    engines.run(engines.driver.stop(pg_cluster.spec.cluster_id))
    old = pg_cluster.user
    for top in (layout.data, layout.run, layout.log, layout.conf):
        subprocess.run(["chown", "-R", f"{shared.uid}:{shared.gid}", str(top)], check=True)
    osuser.remove_cluster_user(old)
    driver._users.clear()
    engines.run(engines.driver.start(pg_cluster.spec))
    new = pg_cluster.user
    assert pwd.getpwnam(new.name).pw_uid == new.uid and new.uid != shared.uid
    owners = {os.lstat(os.path.join(path, name)).st_uid
              for top in (layout.data, layout.conf) for path, dirs, files in os.walk(top) for name in (*dirs, *files)}
    assert owners == {new.uid}
    with pg_connect(pg_cluster) as conn:
        assert pg_rows(conn, "SELECT 1") == [(1,)]
