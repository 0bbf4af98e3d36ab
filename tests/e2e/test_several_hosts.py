"""Several ``dbkeep up`` hosts on one throwaway PostgreSQL catalog (issue 16).

Three hosts, each with its own state dir, API port and loopback address (127.0.0.1-3 as
``--host`` and ``--hostname``), one availability zone each, one cluster key. Two clusters are
shared by the module: ``on_b`` is created through host A and lands on B (zone b); ``on_a`` is
created through C and lands on A (zone a).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import botocore.exceptions
import psycopg
import pytest
from sqlalchemy import select, update

from clusters import WAITER, unique
from dbkeep.catalog import schema
from dbkeep_process import DbkeepProcess
from test_catalog_postgres import catalog_postgres  # noqa: F401 - the module's throwaway catalog

PASSWORD = "Hosts-Pass-1"
NEW_PASSWORD = "Hosts-Pass-2"
ZONES = {"a": "us-east-1a", "b": "us-east-1b", "c": "us-east-1c"}
ADDRESSES = {"a": "127.0.0.1", "b": "127.0.0.2", "c": "127.0.0.3"}


class Fleet:
    def __init__(self, base: Path, catalog: str, key_file: Path) -> None:
        self.base = base
        self.catalog = catalog
        self.key_file = key_file
        self.hosts: dict[str, DbkeepProcess] = {}

    def process(self, name: str) -> DbkeepProcess:
        args = ["--catalog-url", self.catalog, "--cluster-key-file", str(self.key_file), "--node-name", f"host-{name}",
                "--availability-zone", ZONES[name], "--host", ADDRESSES[name], "--hostname", ADDRESSES[name]]
        return DbkeepProcess(self.base / name, extra_args=args)

    def start(self, name: str) -> DbkeepProcess:
        self.hosts[name] = self.process(name).start(timeout=120)
        return self.hosts[name]

    def logs(self) -> str:
        return "\n".join(f"--- host {n}\n{p.logs()[-3000:]}" for n, p in self.hosts.items())


@pytest.fixture(scope="module")
def fleet(catalog_postgres):  # noqa: F811
    base = Path(tempfile.mkdtemp(prefix="dbkeep-hosts-"))
    key_file = base / "cluster.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, os.urandom(32).hex().encode())
    os.close(fd)
    f = Fleet(base, catalog_postgres, key_file)
    try:
        for name in "abc":
            f.start(name)
        yield f
    finally:
        for p in f.hosts.values():
            p.stop()
    shutil.rmtree(base, ignore_errors=True)


def _wait(fleet: Fleet, via: str, ident: str, status: str, timeout: float = 300) -> dict:
    rds = fleet.hosts[via].client("rds")
    deadline = time.monotonic() + timeout
    while True:
        cluster = rds.describe_db_clusters(DBClusterIdentifier=ident)["DBClusters"][0]
        if cluster["Status"] == status:
            return cluster
        if cluster["Status"] == "failed" or time.monotonic() > deadline:
            raise AssertionError(f"{ident} is {cluster['Status']}, not {status}: {cluster.get('StatusInfos')}\n{fleet.logs()}")
        time.sleep(0.3)


def _create(fleet: Fleet, via: str, zone: str, group: str | None = None) -> dict:
    ident = unique(f"on-{zone[-1]}")
    rds = fleet.hosts[via].client("rds")
    args = dict(DBClusterIdentifier=ident, Engine="aurora-postgresql", MasterUsername="master",
                MasterUserPassword=PASSWORD, DatabaseName="appdb", AvailabilityZones=[zone])
    if group:
        args["DBClusterParameterGroupName"] = group
    rds.create_db_cluster(**args)
    rds.create_db_instance(DBInstanceIdentifier=f"{ident}-1", DBClusterIdentifier=ident, Engine="aurora-postgresql",
                           DBInstanceClass="db.r6g.large")
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=f"{ident}-1", WaiterConfig=WAITER)
    return _wait(fleet, via, ident, "available")


@pytest.fixture(scope="module")
def clusters(fleet):
    group = unique("hosts-pg")
    fleet.hosts["a"].client("rds").create_db_cluster_parameter_group(
        DBClusterParameterGroupName=group, DBParameterGroupFamily="aurora-postgresql15", Description="several hosts")
    return {"on_b": _create(fleet, "a", ZONES["b"], group), "on_a": _create(fleet, "c", ZONES["a"]), "group": group,
            "on_b_password": PASSWORD}  # the master password of on_b as the tests leave it


def _connect(fleet: Fleet, cluster: dict, address: str, password: str = PASSWORD, ca_of: str = "a"):
    return psycopg.connect(host=address, port=cluster["Port"], user="master", password=password, dbname="appdb",
                           sslmode="verify-full", sslrootcert=str(fleet.hosts[ca_of].state_dir / "ca.pem"),
                           connect_timeout=10, autocommit=True)


def _catalog_engine(fleet: Fleet):
    from sqlalchemy import create_engine

    return create_engine("postgresql+psycopg://" + fleet.catalog.split("://", 1)[1])


def _stored(fleet: Fleet, ident: str, column: str) -> str | None:
    """A column of the cluster's row in the shared catalog itself (what a host wrote), not what Describe computes."""
    engine = _catalog_engine(fleet)
    try:
        with engine.connect() as conn:
            return conn.execute(select(schema.clusters.c[column]).where(schema.clusters.c.identifier == ident)).scalar_one()
    finally:
        engine.dispose()


def _stored_status(fleet: Fleet, ident: str) -> str:
    return _stored(fleet, ident, "status")


def schema_update_owner(ident: str, owner: str | None):
    return update(schema.clusters).where(schema.clusters.c.identifier == ident).values(owner=owner)


def _catalog_write(fleet: Fleet, statement) -> None:
    engine = _catalog_engine(fleet)
    try:
        with engine.begin() as conn:
            conn.execute(statement)
    finally:
        engine.dispose()


def _status_lines(fleet: Fleet, via: str) -> dict[str, str]:
    """`dbkeep status`'s host lines, by node name."""
    out = subprocess.run([sys.executable, "-m", "dbkeep", "status", "--state-dir", str(fleet.hosts[via].state_dir)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return {line.split()[0]: line for line in out.stdout.splitlines() if line.strip().startswith("host-")}


def _error(exc) -> tuple[str, str]:
    err = exc.value.response["Error"]
    return err["Code"], err["Message"]


def test_one_trust_root(fleet):
    cas = {(p.state_dir / "ca.pem").read_bytes() for p in fleet.hosts.values()}
    assert len(cas) == 1, "every host serves certificates of one CA"
    for p in fleet.hosts.values():
        assert (p.state_dir / "ca-key.pem").stat().st_mode & 0o077 == 0
    key = fleet.key_file.read_text()
    for p in fleet.hosts.values():
        assert key not in p.logs()


def test_hosts_that_are_refused(fleet):
    """Without the cluster key, with another key, or under a live host's node name."""
    lone = DbkeepProcess(fleet.base / "keyless", extra_args=["--catalog-url", fleet.catalog, "--node-name", "keyless",
                                                             "--host", "127.0.0.4", "--hostname", "127.0.0.4"])
    with pytest.raises(RuntimeError) as exc:
        lone.start(timeout=60)
    assert "--cluster-key-file" in str(exc.value) and "DBKEEP_CLUSTER_KEY" in str(exc.value)
    wrong = fleet.base / "wrong.key"
    fd = os.open(wrong, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"w" * 40)
    os.close(fd)
    other = DbkeepProcess(fleet.base / "wrong", extra_args=["--catalog-url", fleet.catalog, "--node-name", "wrong",
                                                            "--cluster-key-file", str(wrong), "--host", "127.0.0.4"])
    with pytest.raises(RuntimeError) as exc:
        other.start(timeout=60)
    assert "does not open this catalog's trust root" in str(exc.value)
    twin = DbkeepProcess(fleet.base / "twin", extra_args=["--catalog-url", fleet.catalog, "--node-name", "host-a",
                                                          "--cluster-key-file", str(fleet.key_file), "--host", "127.0.0.4"])
    with pytest.raises(RuntimeError) as exc:
        twin.start(timeout=60)
    assert "--node-name host-a is in use by a live dbkeep host" in str(exc.value)


def test_hosts_are_listed(fleet):
    lines = _status_lines(fleet, "a")
    for name in "abc":
        assert ZONES[name] in lines[f"host-{name}"] and ADDRESSES[name] in lines[f"host-{name}"]
        assert " yes " in lines[f"host-{name}"]


def test_clusters_land_on_the_zone_asked_for(fleet, clusters):
    for via in "abc":
        rds = fleet.hosts[via].client("rds")
        on_b = rds.describe_db_clusters(DBClusterIdentifier=clusters["on_b"]["DBClusterIdentifier"])["DBClusters"][0]
        assert on_b["AvailabilityZones"] == [ZONES["b"]] and on_b["Endpoint"] == ADDRESSES["b"]
        on_a = rds.describe_db_clusters(DBClusterIdentifier=clusters["on_a"]["DBClusterIdentifier"])["DBClusters"][0]
        assert on_a["AvailabilityZones"] == [ZONES["a"]] and on_a["Endpoint"] == ADDRESSES["a"]
        inst = rds.describe_db_instances(DBInstanceIdentifier=on_b["DBClusterIdentifier"] + "-1")["DBInstances"][0]
        assert inst["AvailabilityZone"] == ZONES["b"] and inst["Endpoint"]["Address"] == ADDRESSES["b"]
    assert (fleet.hosts["b"].state_dir / "clusters" / clusters["on_b"]["DbClusterResourceId"]).is_dir()
    for other in "ac":
        assert not (fleet.hosts[other].state_dir / "clusters" / clusters["on_b"]["DbClusterResourceId"]).exists()
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        fleet.hosts["a"].client("rds").create_db_cluster(
            DBClusterIdentifier=unique("nowhere"), Engine="aurora-postgresql", MasterUsername="master",
            MasterUserPassword=PASSWORD, AvailabilityZones=["us-east-1z"])
    assert _error(exc)[0] == "InvalidParameterValue" and "us-east-1z" in _error(exc)[1]


def test_reachable_only_at_the_owner_with_the_one_ca(fleet, clusters):
    on_b = clusters["on_b"]
    for ca_of in "abc":
        with _connect(fleet, on_b, ADDRESSES["b"], ca_of=ca_of) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    for other in ("a", "c"):
        with pytest.raises(OSError):
            socket.create_connection((ADDRESSES[other], on_b["Port"]), timeout=5).close()


def test_engine_work_asked_of_a_is_done_by_b(fleet, clusters):
    on_b, ident = clusters["on_b"], clusters["on_b"]["DBClusterIdentifier"]
    rds_a = fleet.hosts["a"].client("rds")
    # a parameter change (dynamic, immediate) on the group B's cluster uses
    rds_a.modify_db_cluster_parameter_group(DBClusterParameterGroupName=clusters["group"], Parameters=[
        {"ParameterName": "statement_timeout", "ParameterValue": "12345", "ApplyMethod": "immediate"}])
    deadline = time.monotonic() + 60
    while True:
        with _connect(fleet, on_b, ADDRESSES["b"]) as conn:
            if conn.execute("SHOW statement_timeout").fetchone()[0] == "12345ms":
                break
        assert time.monotonic() < deadline, fleet.logs()
        time.sleep(0.3)
    # a master reset
    out = rds_a.modify_db_cluster(DBClusterIdentifier=ident, MasterUserPassword=NEW_PASSWORD, ApplyImmediately=True)
    assert out["DBCluster"]["Status"] == "resetting-master-credentials"
    _wait(fleet, "a", ident, "available")
    clusters["on_b_password"] = NEW_PASSWORD
    with _connect(fleet, on_b, ADDRESSES["b"], NEW_PASSWORD) as conn:
        started = conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0]
    # a reboot
    inst = rds_a.reboot_db_instance(DBInstanceIdentifier=f"{ident}-1")["DBInstance"]
    assert inst["DBInstanceStatus"] == "rebooting"
    rds_a.get_waiter("db_instance_available").wait(DBInstanceIdentifier=f"{ident}-1", WaiterConfig=WAITER)
    _wait(fleet, "a", ident, "available")
    with _connect(fleet, on_b, ADDRESSES["b"], NEW_PASSWORD) as conn:
        assert conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0] > started
    b_logs = fleet.hosts["b"].logs()
    for kind in ("apply_dynamic", "reset_master", "restart"):
        assert f"{kind} asked by host host-a" in b_logs, kind
    assert NEW_PASSWORD not in b_logs and NEW_PASSWORD not in fleet.hosts["a"].logs()
    assert "lost the catalog's notifications" not in b_logs  # woken by NOTIFY, not only by the poll


@pytest.fixture
def verifier_like_b(fleet):
    verifier = _verifier_like_b(fleet)
    yield verifier
    verifier.close()
    verifier._catalog.close()  # the throwaway PostgreSQL stops only when no client is left


def test_a_key_deactivated_on_a_is_refused_at_b(fleet, clusters, verifier_like_b):
    iam_a = fleet.hosts["a"].client("iam")
    user = unique("hosts-user")
    iam_a.create_user(UserName=user)
    iam_a.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["rds:DescribeDBClusters", "rds-db:connect"], "Resource": "*"}]}))
    key = iam_a.create_access_key(UserName=user)["AccessKey"]
    as_user_b = fleet.hosts["b"].client("rds", key["AccessKeyId"], key["SecretAccessKey"])
    assert as_user_b.describe_db_clusters()["DBClusters"]

    # B's IAM token verifier, as its gateway holds it: warm its cache with a valid token first
    verifier, on_b = verifier_like_b, clusters["on_b"]
    token = _token(on_b, key)
    verdict = lambda: verifier.verify(token, cluster_resource_id=on_b["DbClusterResourceId"], port=on_b["Port"],  # noqa: E731
                                      iam_enabled=True, db_user="jane", hosts=[ADDRESSES["b"]], source_ip="127.0.0.9")
    assert verdict().allowed, verdict()

    iam_a.update_access_key(UserName=user, AccessKeyId=key["AccessKeyId"], Status="Inactive")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        as_user_b.describe_db_clusters()
    assert _error(exc)[0] == "InvalidClientTokenId"
    assert not verdict().allowed  # at once: the catalog's IAM change counter moved


def test_an_iam_login_at_bs_gateway_is_refused_once_its_key_is_deactivated_on_a(fleet, clusters):
    """B's gateway itself, not only a verifier like its own: IAM authentication turned on through
    A, a token login through B's endpoint, then the key made inactive through A refused by B's
    gateway at the very next login (the engine's PAM text; the reason in B's audit log)."""
    on_b = clusters["on_b"]
    ident = on_b["DBClusterIdentifier"]
    fleet.hosts["a"].client("rds").modify_db_cluster(DBClusterIdentifier=ident, EnableIAMDatabaseAuthentication=True,
                                                     ApplyImmediately=True)
    _wait(fleet, "a", ident, "available")
    with _connect(fleet, on_b, ADDRESSES["b"], password=clusters["on_b_password"]) as conn:
        conn.execute("DROP ROLE IF EXISTS jane")
        conn.execute("CREATE ROLE jane LOGIN")
        conn.execute("GRANT rds_iam TO jane")
    iam_a = fleet.hosts["a"].client("iam")
    user = unique("hosts-db-user")
    iam_a.create_user(UserName=user)
    iam_a.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "rds-db:connect", "Resource": "*"}]}))
    key = iam_a.create_access_key(UserName=user)["AccessKey"]

    def login():
        return psycopg.connect(host=ADDRESSES["b"], port=on_b["Port"], user="jane", password=_token(on_b, key),
                               dbname="appdb", sslmode="verify-full", connect_timeout=10,
                               sslrootcert=str(fleet.hosts["a"].state_dir / "ca.pem"))

    deadline = time.monotonic() + 60  # B's gateway reads the cluster's IAM flag within a second or two
    while True:
        try:
            with login() as conn:
                assert conn.execute("SELECT current_user").fetchone()[0] == "jane"
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)

    iam_a.update_access_key(UserName=user, AccessKeyId=key["AccessKeyId"], Status="Inactive")
    with pytest.raises(psycopg.OperationalError, match='PAM authentication failed for user "jane"'):
        login()
    audit = (fleet.hosts["b"].state_dir / "audit.log").read_text().splitlines()
    denied = [json.loads(line) for line in audit if '"gateway.iam_login"' in line and key["AccessKeyId"] in line]
    assert denied and denied[-1]["verdict"] == "deny", denied[-1:]


def _verifier_like_b(fleet: Fleet):
    """A TokenVerifier on its own connection to the shared catalog, opened as a host opens it
    (the cluster key unseals the catalog's key), with the cross-host IAM change counter."""
    from dbkeep.catalog import trust
    from dbkeep.catalog.hosts import change_counter
    from dbkeep.catalog.store import Catalog, make_engine
    from dbkeep.clock import default_clock
    from dbkeep.identity.dbauth import TokenVerifier

    engine = make_engine(fleet.catalog)
    catalog = Catalog(engine, trust.catalog_box(engine, fleet.base / "verifier", trust.load_cluster_key(fleet.key_file)))
    account = catalog.get_meta("account_id")
    return TokenVerifier(catalog, default_clock(), account, "us-east-1", cache_ttl=3600, iam_version=change_counter(catalog, "iam"))


def _token(cluster: dict, key: dict) -> str:
    import boto3

    rds = boto3.session.Session().client("rds", region_name="us-east-1", aws_access_key_id=key["AccessKeyId"],
                                         aws_secret_access_key=key["SecretAccessKey"])
    return rds.generate_db_auth_token(DBHostname=ADDRESSES["b"], Port=cluster["Port"], DBUsername="jane")


def _unreachable(fleet: Fleet, ident: str) -> dict:
    deadline = time.monotonic() + 120
    while True:
        cluster = fleet.hosts["a"].client("rds").describe_db_clusters(DBClusterIdentifier=ident)["DBClusters"][0]
        if cluster["Status"] == "incompatible-network":
            return cluster
        assert time.monotonic() < deadline, f"{ident} is still {cluster['Status']}\n{fleet.logs()}"
        time.sleep(0.5)


def test_a_host_that_goes_away(fleet, clusters):
    on_b, on_a = clusters["on_b"]["DBClusterIdentifier"], clusters["on_a"]["DBClusterIdentifier"]
    rds_a = fleet.hosts["a"].client("rds")
    for stop in ("sigterm", "sigkill"):
        b = fleet.hosts["b"]
        if stop == "sigterm":
            assert b.stop() == 0
        else:
            b.proc.send_signal(signal.SIGKILL)
            b.proc.wait(60)
        cluster = _unreachable(fleet, on_b)
        assert "host-b" in cluster["StatusInfos"][0]["Message"]
        inst = rds_a.describe_db_instances(DBInstanceIdentifier=f"{on_b}-1")["DBInstances"][0]
        assert inst["DBInstanceStatus"] == "incompatible-network"
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            rds_a.reboot_db_instance(DBInstanceIdentifier=f"{on_b}-1")
        code, message = _error(exc)
        assert code == "InvalidDBClusterStateFault" and "host-b" in message
        # nobody took it over, and no host wrote its status: the catalog still says what B wrote
        assert _stored_status(fleet, on_b) == "available"
        if stop == "sigterm":  # a host's recovery at start leaves the others' clusters alone
            assert fleet.hosts["a"].stop() == 0
            fleet.start("a")
            rds_a = fleet.hosts["a"].client("rds")
            _wait(fleet, "a", on_a, "available")
            assert _stored_status(fleet, on_b) == "available"
            assert not (fleet.hosts["a"].state_dir / "clusters" / clusters["on_b"]["DbClusterResourceId"]).exists()
        status = _status_lines(fleet, "c")
        assert " NO " in status["host-b"] and " yes " in status["host-a"]
        assert rds_a.describe_db_clusters(DBClusterIdentifier=on_a)["DBClusters"][0]["Status"] == "available"
        with _connect(fleet, clusters["on_a"], ADDRESSES["a"]) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(OSError):
            socket.create_connection((ADDRESSES["b"], clusters["on_b"]["Port"]), timeout=5).close()
        if stop == "sigterm":  # as if made before the catalog was shared: the host with its data adopts it
            _catalog_write(fleet, schema_update_owner(on_b, None))
            with pytest.raises(botocore.exceptions.ClientError) as exc:
                rds_a.reboot_db_instance(DBInstanceIdentifier=f"{on_b}-1")
            assert _error(exc)[0] == "InvalidDBClusterStateFault" and "has no host" in _error(exc)[1]
        fleet.start("b")
        _wait(fleet, "a", on_b, "available")
        assert _stored(fleet, on_b, "owner") == "host-b"
        with _connect(fleet, clusters["on_b"], ADDRESSES["b"], clusters["on_b_password"]) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)



def test_work_and_iam_changes_are_woken_by_notify(fleet, verifier_like_b):
    """With the safety-net poll out of reach, a queued work row and an IAM change through a
    host's API still reach a listener: the catalog's NOTIFY wakes it."""
    import asyncio

    from dbkeep.catalog.work import WorkQueue
    from dbkeep.rds.remote import WorkListener

    catalog = verifier_like_b._catalog  # a host's view of the catalog (its key unsealed)
    listening, claimed, iam_changes = asyncio.Event(), [], []

    class Owner:  # the listener's consumer: records what it is handed
        def run_work(self, cluster_identifier, kind, args, asked_by):
            claimed.append((cluster_identifier, kind, args, asked_by))

    def iam_changed():
        iam_changes.append(1)
        listening.set()

    async def scenario():
        listener = WorkListener(fleet.catalog, "probe", WorkQueue(catalog), Owner(), iam_changed, poll=3600)
        task = asyncio.create_task(listener.run())
        try:
            async with asyncio.timeout(60):
                await listening.wait()  # LISTEN is in place (it drops the IAM caches once then)
                WorkQueue(catalog).submit("probe", "some-cluster", "reset_master", {"password": "Sealed-Pass-1"},
                                          asked_by="host-x", now=dt.datetime.now(dt.timezone.utc))
                while not claimed:
                    await asyncio.sleep(0.05)
                before = len(iam_changes)
                await asyncio.to_thread(fleet.hosts["c"].client("iam").create_user, UserName=unique("notified"))
                while len(iam_changes) == before:
                    await asyncio.sleep(0.05)
        finally:
            task.cancel()

    asyncio.run(scenario())
    assert claimed == [("some-cluster", "reset_master", {"password": "Sealed-Pass-1"}, "host-x")]
    assert WorkQueue(catalog).pending("some-cluster") == 0
