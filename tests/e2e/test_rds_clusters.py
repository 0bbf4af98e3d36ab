"""End to end: RDS clusters on real engines through ``dbkeep up``, driven by boto3 and the aws CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import botocore.exceptions
import pytest

from clusters import create_cluster, mysql, postgres, unique, wait_cluster

MYSQL_PASSWORD = "Start-Pass-1"
PG_PASSWORD = "Start-Pass-2"

MASTER_MYSQL_PRIVILEGES = {
    "SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "RELOAD", "PROCESS", "REFERENCES", "INDEX", "ALTER",
    "SHOW DATABASES", "CREATE TEMPORARY TABLES", "LOCK TABLES", "EXECUTE", "REPLICATION SLAVE", "BINLOG MONITOR",
    "CREATE VIEW", "SHOW VIEW", "CREATE ROUTINE", "ALTER ROUTINE", "CREATE USER", "EVENT", "TRIGGER",
}


def error_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


@pytest.fixture(scope="module")
def my(dbkeep):
    return create_cluster(dbkeep, "aurora-mysql", unique("my"), MYSQL_PASSWORD)


@pytest.fixture(scope="module")
def pg(dbkeep):
    return create_cluster(dbkeep, "aurora-postgresql", unique("pg"), PG_PASSWORD)


def global_privileges(conn, user: str = "admin", host: str = "%") -> set[str]:
    with conn.cursor() as cur:
        cur.execute(f"SHOW GRANTS FOR '{user}'@'{host}'")
        rows = [r[0] for r in cur.fetchall()]
    line = next(r for r in rows if " ON *.* TO " in r)
    privs = line.split("GRANT ", 1)[1].split(" ON *.*")[0]
    return {p.strip() for p in privs.split(",")}


def test_cluster_shape(dbkeep, my):
    account = dbkeep.client("sts").get_caller_identity()["Account"]
    assert my["Status"] == "available" and my["Engine"] == "aurora-mysql"
    assert my["DBClusterArn"] == f"arn:aws:rds:us-east-1:{account}:cluster:{my['DBClusterIdentifier']}"
    assert my["DbClusterResourceId"].startswith("cluster-") and len(my["DbClusterResourceId"]) == 34
    assert my["DbClusterResourceId"][8:].isupper() or my["DbClusterResourceId"][8:].isalnum()
    assert my["Endpoint"] == "localhost" and my["ReaderEndpoint"] == "localhost"
    assert 1150 <= my["Port"] <= 65535
    assert my["DBClusterMembers"][0]["IsClusterWriter"] is True
    assert my["DBClusterParameterGroup"] == "default.aurora-mysql8.0"
    inst = dbkeep.client("rds").describe_db_instances(DBInstanceIdentifier=my["DBClusterMembers"][0]["DBInstanceIdentifier"])["DBInstances"][0]
    assert inst["DbiResourceId"].startswith("db-") and len(inst["DbiResourceId"]) == 29
    assert inst["Endpoint"] == {"Address": "localhost", "Port": my["Port"], "HostedZoneId": inst["Endpoint"]["HostedZoneId"]}
    assert inst["DBInstanceStatus"] == "available"


def test_mysql_master_has_aurora_defaults(dbkeep, my):
    conn = mysql(dbkeep, my, "admin", MYSQL_PASSWORD, "appdb")
    try:
        privileges = global_privileges(conn)
        assert MASTER_MYSQL_PRIVILEGES <= privileges
        assert not privileges & {"SUPER", "CONNECTION ADMIN", "FILE", "SHUTDOWN", "ALL PRIVILEGES"}
        with conn.cursor() as cur:
            cur.execute("SHOW GRANTS FOR 'admin'@'%'")
            grants = " ".join(r[0] for r in cur.fetchall())
            assert "WITH GRANT OPTION" in grants and "rds_superuser_role" in grants
            cur.execute("SELECT CURRENT_ROLE()")
            assert cur.fetchone()[0] == "rds_superuser_role"
            cur.execute("SELECT user, host FROM mysql.user WHERE user IN ('rdsadmin', '') ORDER BY user")
            assert cur.fetchall() == (("rdsadmin", "localhost"),)
            cur.execute("SHOW DATABASES LIKE 'test'")
            assert cur.fetchall() == ()
            cur.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
            cur.execute("INSERT INTO t VALUES (1, 'one')")
    finally:
        conn.close()


def test_postgres_master_has_aurora_defaults(dbkeep, pg):
    with postgres(dbkeep, pg, "master", PG_PASSWORD) as conn:
        row = conn.execute("SELECT rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolvaliduntil::text "
                           "FROM pg_roles WHERE rolname = 'master'").fetchone()
        assert row[:6] == (False, True, True, True, True, False)
        assert str(row[6]) == "infinity"
        member_of = {r[0] for r in conn.execute(
            "SELECT b.rolname FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = 'master'")}
        assert "rds_superuser" in member_of
        roles = {r[0]: r[1:] for r in conn.execute("SELECT rolname, rolsuper, rolcanlogin FROM pg_roles WHERE rolname IN "
                                                   "('rdsadmin', 'rds_superuser', 'rds_password', 'rds_iam', 'rds_ad', 'rds_replication')")}
        assert roles["rdsadmin"] == (True, True)
        for r in ("rds_superuser", "rds_password", "rds_iam", "rds_ad", "rds_replication"):
            assert roles[r] == (False, False), r
        assert conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'appdb'").fetchone()[0] == "master"
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO t VALUES (1, 'one')")


def test_postgres_master_cannot_run_programs_on_the_host(dbkeep, pg, tmp_path):
    """CREATEROLE may not hand the master pg_execute_server_program (or the server-file roles):
    psql through the gateway gets PostgreSQL's own refusals, and COPY … PROGRAM stays closed."""
    script = tmp_path / "escape.sql"
    script.write_text("GRANT pg_execute_server_program TO master;\n"
                      "CREATE ROLE escape IN ROLE pg_write_server_files;\n"
                      "CREATE TEMP TABLE out (line text);\n"
                      "COPY out FROM PROGRAM 'id';\n")
    done = subprocess.run(["/usr/lib/postgresql/15/bin/psql", "-X", "-v", "ON_ERROR_STOP=0", "-f", str(script),
                           f"host=localhost port={pg['Port']} user=master dbname=appdb sslmode=verify-full "
                           f"sslrootcert={dbkeep.state_dir / 'ca.pem'}"],
                          capture_output=True, text=True, timeout=60, check=False, env={**os.environ, "PGPASSWORD": PG_PASSWORD})
    errors = [line.split("ERROR:  ", 1)[1] for line in done.stderr.splitlines() if "ERROR:  " in line]
    assert errors == ["must be superuser to alter superusers", "must be superuser to alter superusers",
                      "must be superuser or have privileges of the pg_execute_server_program role to COPY to or "
                      "from an external program"], done.stderr
    assert "uid=" not in done.stdout


def test_kill_is_restricted_to_rds_kill(dbkeep, my):
    admin = mysql(dbkeep, my, "admin", MYSQL_PASSWORD)
    try:
        with admin.cursor() as cur:
            cur.execute("CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'App-Pass-123'")
        victim = mysql(dbkeep, my, "app", "App-Pass-123")
        with victim.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")
            victim_id = cur.fetchone()[0]
        with admin.cursor() as cur:
            with pytest.raises(pymysql_error()) as exc:
                cur.execute(f"KILL {victim_id}")
            assert exc.value.args[0] == 1095 and f"You are not owner of thread {victim_id}" in exc.value.args[1]
            cur.execute(f"CALL mysql.rds_kill({victim_id})")
            with pytest.raises(pymysql_error()) as exc:
                cur.execute("CALL mysql.rds_kill(999999)")
            assert exc.value.args[0] == 1094
        with pytest.raises(pymysql_error()) as exc:  # the killed session's next query finds it gone
            with victim.cursor() as cur:
                cur.execute("SELECT 1")
        assert exc.value.args[0] in (2006, 2013), exc.value.args  # server gone away / lost connection
    finally:
        admin.close()


def test_mysql_server_plugins_are_locked_down(dbkeep, my):
    """Every login reaches the engine from the gateway, so unix_socket (which trusts the peer's
    OS user) is off; the master's INSERT on *.* does not let it INSTALL plugins beyond dbkeep's
    list; ed25519 is loaded and its accounts log in through the gateway (mariadb client, PyMySQL)."""
    admin = mysql(dbkeep, my, "admin", MYSQL_PASSWORD)
    try:
        with admin.cursor() as cur:
            cur.execute("SELECT plugin_name FROM information_schema.plugins "
                        "WHERE plugin_type = 'AUTHENTICATION' AND plugin_status = 'ACTIVE'")
            assert {r[0] for r in cur.fetchall()} == {"mysql_native_password", "mysql_old_password", "ed25519"}
            with pytest.raises(pymysql_error()) as exc:  # before: a passwordless door for user root
                cur.execute("CREATE USER 'root'@'%' IDENTIFIED VIA unix_socket")
            assert exc.value.args == (1524, "Plugin 'unix_socket' is not loaded")
            for library in ("auth_pam", "handlersocket", "ha_federatedx"):
                with pytest.raises(pymysql_error()) as exc:
                    cur.execute(f"INSTALL SONAME '{library}'")
                assert exc.value.args[0] == 1126 and f"/plugins/{library}.so' (errno: 2," in exc.value.args[1]
            with pytest.raises(pymysql_error()) as exc:  # and no way out of plugin_dir
                cur.execute("INSTALL SONAME '../../../../usr/lib/mysql/plugin/auth_pam'")
            assert exc.value.args == (1124, "No paths allowed for shared library")
            cur.execute("SELECT COUNT(*) FROM mysql.plugin")
            assert cur.fetchone() == (0,)
            cur.execute("CREATE USER 'edna'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('Edna-Pass-123')")
            cur.execute("GRANT SELECT ON appdb.* TO 'edna'@'%'")
    finally:
        admin.close()
    base = ["mariadb", "--host=localhost", f"--port={my['Port']}", "--user=edna", "--database=appdb",
            f"--ssl-ca={dbkeep.state_dir / 'ca.pem'}", "--ssl-verify-server-cert", "--batch", "--skip-column-names"]
    done = subprocess.run([*base, "-e", "SELECT CURRENT_USER(), @@plugin_dir LIKE '%/plugins/'"], capture_output=True,
                          text=True, timeout=60, check=False, env={**os.environ, "MYSQL_PWD": "Edna-Pass-123"})
    assert (done.returncode, done.stdout) == (0, "edna@%\t1\n"), done.stderr
    done = subprocess.run([*base, "-e", "SELECT 1"], capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "MYSQL_PWD": "not-the-password"})
    assert done.returncode == 1 and "ERROR 1045 (28000): Access denied for user 'edna'" in done.stderr
    with mysql(dbkeep, my, "edna", "Edna-Pass-123", "appdb") as conn:  # PyMySQL's ed25519 (PyNaCl)
        with conn.cursor() as cur:
            cur.execute("SELECT CURRENT_USER()")
            assert cur.fetchone() == ("edna@%",)


def pymysql_error():
    import pymysql

    return pymysql.err.MySQLError


def test_errors(dbkeep, my):
    rds = dbkeep.client("rds")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        rds.describe_db_clusters(DBClusterIdentifier="nope")
    assert error_of(exc) == ("DBClusterNotFoundFault", "DBCluster nope not found.")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        rds.create_db_cluster(DBClusterIdentifier=my["DBClusterIdentifier"], Engine="aurora-mysql", MasterUsername="admin", MasterUserPassword="Another-1")
    assert error_of(exc)[0] == "DBClusterAlreadyExistsFault"
    for bad in ({"MasterUserPassword": "short"}, {"MasterUserPassword": "has/slash1"}, {"MasterUserPassword": "has space1"},
                {"MasterUsername": "rdsadmin"}, {"MasterUsername": "1abc"}, {"DBClusterIdentifier": "bad--name"},
                {"Engine": "oracle-ee"}, {"Port": 80}):
        args = dict(DBClusterIdentifier=unique("x"), Engine="aurora-mysql", MasterUsername="admin", MasterUserPassword="Good-Pass-1")
        args.update(bad)
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            rds.create_db_cluster(**args)
        assert error_of(exc)[0] == "InvalidParameterValue", bad
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        rds.describe_db_instances(DBInstanceIdentifier="nope")
    assert error_of(exc) == ("DBInstanceNotFound", "DBInstance nope not found.")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        rds.delete_db_cluster(DBClusterIdentifier=my["DBClusterIdentifier"], SkipFinalSnapshot=True)
    assert error_of(exc)[0] == "InvalidDBClusterStateFault"


def test_parameter_groups(dbkeep, my):
    rds = dbkeep.client("rds")
    name = unique("pgroup")
    rds.create_db_cluster_parameter_group(DBClusterParameterGroupName=name, DBParameterGroupFamily="aurora-mysql8.0", Description="test")
    params = {p["ParameterName"]: p for p in rds.describe_db_cluster_parameters(DBClusterParameterGroupName=name)["Parameters"]}
    assert params["require_secure_transport"]["ApplyType"] == "dynamic" and params["require_secure_transport"]["Source"] == "engine-default"
    assert params["tls_version"]["ApplyType"] == "static"
    assert params["max_connections"]["IsModifiable"] is True
    # bad values and combinations are refused, naming the parameter
    for bad, code in (
        ({"ParameterName": "require_secure_transport", "ParameterValue": "maybe", "ApplyMethod": "immediate"}, "InvalidParameterValue"),
        ({"ParameterName": "no_such_thing", "ParameterValue": "1", "ApplyMethod": "immediate"}, "InvalidParameterValue"),
        ({"ParameterName": "tls_version", "ParameterValue": "TLSv9", "ApplyMethod": "pending-reboot"}, "InvalidParameterValue"),
        ({"ParameterName": "ssl_cipher", "ParameterValue": "RC4-MD5", "ApplyMethod": "pending-reboot"}, "InvalidParameterValue"),
        ({"ParameterName": "tls_version", "ParameterValue": "TLSv1.2", "ApplyMethod": "immediate"}, "InvalidParameterCombination"),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=name, Parameters=[bad])
        assert error_of(exc)[0] == code, bad
        assert bad["ParameterName"] in error_of(exc)[1]
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName="default.aurora-mysql8.0", Parameters=[
            {"ParameterName": "max_connections", "ParameterValue": "50", "ApplyMethod": "immediate"}])
    assert error_of(exc)[0] == "InvalidParameterValue"
    ident = my["DBClusterIdentifier"]
    rds.modify_db_cluster(DBClusterIdentifier=ident, DBClusterParameterGroupName=name, ApplyImmediately=True)
    # a dynamic engine setting reaches the running engine without a reboot
    rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=name, Parameters=[
        {"ParameterName": "max_connections", "ParameterValue": "77", "ApplyMethod": "immediate"}])
    conn = mysql(dbkeep, my, "admin", MYSQL_PASSWORD)
    with conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.max_connections")
        assert cur.fetchone()[0] == 77
    conn.close()
    cluster = wait_cluster(dbkeep, ident)
    assert cluster["DBClusterMembers"][0]["DBClusterParameterGroupStatus"] == "in-sync"
    # a static one waits for a reboot
    rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=name, Parameters=[
        {"ParameterName": "tls_version", "ParameterValue": "TLSv1.2", "ApplyMethod": "pending-reboot"}])
    cluster = wait_cluster(dbkeep, ident)
    assert cluster["DBClusterMembers"][0]["DBClusterParameterGroupStatus"] == "pending-reboot"
    instance = cluster["DBClusterMembers"][0]["DBInstanceIdentifier"]
    rds.reboot_db_instance(DBInstanceIdentifier=instance)
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=instance, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    cluster = wait_cluster(dbkeep, ident)
    assert cluster["DBClusterMembers"][0]["DBClusterParameterGroupStatus"] == "in-sync"
    user = {p["ParameterName"]: p["ParameterValue"] for p in rds.describe_db_cluster_parameters(DBClusterParameterGroupName=name, Source="user")["Parameters"]}
    assert user == {"max_connections": "77", "tls_version": "TLSv1.2"}
    # the data survived the reboot
    conn = mysql(dbkeep, my, "admin", MYSQL_PASSWORD, "appdb")
    with conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.max_connections")
        assert cur.fetchone()[0] == 77
    conn.close()
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        rds.delete_db_cluster_parameter_group(DBClusterParameterGroupName=name)
    assert error_of(exc)[0] == "InvalidDBParameterGroupState"
    rds.reset_db_cluster_parameter_group(DBClusterParameterGroupName=name, ResetAllParameters=True)
    assert rds.describe_db_cluster_parameters(DBClusterParameterGroupName=name, Source="user")["Parameters"] == []


def test_postgres_dynamic_parameter(dbkeep, pg):
    rds = dbkeep.client("rds")
    name = unique("pgpg")
    rds.create_db_cluster_parameter_group(DBClusterParameterGroupName=name, DBParameterGroupFamily="aurora-postgresql15", Description="pg")
    rds.modify_db_cluster(DBClusterIdentifier=pg["DBClusterIdentifier"], DBClusterParameterGroupName=name)
    rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=name, Parameters=[
        {"ParameterName": "log_min_duration_statement", "ParameterValue": "1234", "ApplyMethod": "immediate"}])
    with postgres(dbkeep, pg, "master", PG_PASSWORD) as conn:
        assert conn.execute("SHOW log_min_duration_statement").fetchone()[0] == "1234ms"
    defaults = dbkeep.client("rds").describe_engine_default_cluster_parameters(DBParameterGroupFamily="aurora-postgresql15")["EngineDefaults"]
    assert {"rds.force_ssl", "rds.restrict_password_commands", "ssl_min_protocol_version"} <= {p["ParameterName"] for p in defaults["Parameters"]}


def test_tags_filters_and_pagination(dbkeep, my, pg):
    rds = dbkeep.client("rds")
    arn = my["DBClusterArn"]
    rds.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": "team", "Value": "db"}, {"Key": "env", "Value": "test"}])
    assert {t["Key"]: t["Value"] for t in rds.list_tags_for_resource(ResourceName=arn)["TagList"]} == {"team": "db", "env": "test"}
    rds.remove_tags_from_resource(ResourceName=arn, TagKeys=["env"])
    assert rds.list_tags_for_resource(ResourceName=arn)["TagList"] == [{"Key": "team", "Value": "db"}]
    only_pg = rds.describe_db_clusters(Filters=[{"Name": "engine", "Values": ["aurora-postgresql"]}])["DBClusters"]
    assert pg["DBClusterIdentifier"] in {c["DBClusterIdentifier"] for c in only_pg}
    assert all(c["Engine"] == "aurora-postgresql" for c in only_pg)
    pages = list(rds.get_paginator("describe_db_clusters").paginate(PaginationConfig={"PageSize": 20}))
    assert sum(len(p["DBClusters"]) for p in pages) >= 2


def test_engine_crash_keeps_data_and_recovers(dbkeep, pg):
    with postgres(dbkeep, pg, "master", PG_PASSWORD) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS crash (v text)")
        conn.execute("INSERT INTO crash VALUES ('before kill -9')")
    pidfile = None
    for root, _dirs, files in os.walk(dbkeep.state_dir / "clusters" / pg["DbClusterResourceId"]):
        if "postmaster.pid" in files:
            pidfile = os.path.join(root, "postmaster.pid")
    postmaster = int(open(pidfile).read().split()[0])
    os.kill(postmaster, signal.SIGKILL)
    deadline = time.monotonic() + 90
    while True:
        try:
            with postgres(dbkeep, pg, "master", PG_PASSWORD) as conn:
                assert conn.execute("SELECT v FROM crash").fetchall() == [("before kill -9",)]
                break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    wait_cluster(dbkeep, pg["DBClusterIdentifier"])


def test_stop_start_delete(dbkeep):
    rds = dbkeep.client("rds")
    ident = unique("life")
    cluster = create_cluster(dbkeep, "aurora-mysql", ident, "Life-Pass-1", DeletionProtection=True)
    conn = mysql(dbkeep, cluster, "admin", "Life-Pass-1", "appdb")
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE keep (v TEXT)")
        cur.execute("INSERT INTO keep VALUES ('kept')")
    conn.close()
    rds.stop_db_cluster(DBClusterIdentifier=ident)
    wait_cluster(dbkeep, ident, "stopped")
    rds.start_db_cluster(DBClusterIdentifier=ident)
    cluster = wait_cluster(dbkeep, ident, "available")
    conn = mysql(dbkeep, cluster, "admin", "Life-Pass-1", "appdb")
    with conn.cursor() as cur:
        cur.execute("SELECT v FROM keep")
        assert cur.fetchall() == (("kept",),)
    conn.close()
    rds.delete_db_instance(DBInstanceIdentifier=f"{ident}-1", SkipFinalSnapshot=True)
    deadline = time.monotonic() + 60
    while rds.describe_db_instances(Filters=[{"Name": "db-cluster-id", "Values": [ident]}])["DBInstances"]:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        rds.delete_db_cluster(DBClusterIdentifier=ident, SkipFinalSnapshot=True)
    assert error_of(exc) == ("InvalidParameterCombination", "Cannot delete protected Cluster, please disable deletion protection and try again.")
    rds.modify_db_cluster(DBClusterIdentifier=ident, DeletionProtection=False)
    rds.delete_db_cluster(DBClusterIdentifier=ident, SkipFinalSnapshot=True)
    deadline = time.monotonic() + 60
    while True:
        try:
            rds.describe_db_clusters(DBClusterIdentifier=ident)
        except botocore.exceptions.ClientError as exc:
            assert exc.response["Error"]["Code"] == "DBClusterNotFoundFault"
            break
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert not (dbkeep.state_dir / "clusters" / cluster["DbClusterResourceId"]).exists()


def test_engine_that_cannot_start_reports_its_log_line(dbkeep):
    rds = dbkeep.client("rds")
    ident = unique("broken")
    name = unique("bigmem")
    rds.create_db_cluster_parameter_group(DBClusterParameterGroupName=name, DBParameterGroupFamily="aurora-postgresql15", Description="x")
    cluster = create_cluster(dbkeep, "aurora-postgresql", ident, "Broken-Pass-1", DBClusterParameterGroupName=name)
    with postgres(dbkeep, cluster, "master", "Broken-Pass-1") as conn:
        conn.execute("CREATE TABLE survives (v text)")
        conn.execute("INSERT INTO survives VALUES ('kept')")
    # valid for the parameter group, impossible for this host: 8 TB of shared buffers
    rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=name, Parameters=[
        {"ParameterName": "shared_buffers", "ParameterValue": "1073741823", "ApplyMethod": "pending-reboot"}])
    rds.reboot_db_instance(DBInstanceIdentifier=f"{ident}-1")
    broken = wait_cluster(dbkeep, ident, "incompatible-parameters")
    assert "could not map anonymous shared memory" in broken["StatusInfos"][0]["Message"]
    inst = rds.describe_db_instances(DBInstanceIdentifier=f"{ident}-1")["DBInstances"][0]
    assert inst["DBInstanceStatus"] == "incompatible-parameters"
    rds.reset_db_cluster_parameter_group(DBClusterParameterGroupName=name, ResetAllParameters=True)
    rds.reboot_db_instance(DBInstanceIdentifier=f"{ident}-1")
    cluster = wait_cluster(dbkeep, ident, "available")
    with postgres(dbkeep, cluster, "master", "Broken-Pass-1") as conn:
        assert conn.execute("SELECT v FROM survives").fetchall() == [("kept",)]
