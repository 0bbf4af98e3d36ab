"""Prometheus metrics at /metrics, scraped and parsed with prometheus_client's own parser: API
calls, logins allowed and denied, refused connections, engine state and open connections move
as they happen; so do connections accepted, the login latency histogram, bytes relayed (the
event loop's and the native relay's), guard refusals and logins that fail before the engine's
verdict; a token, when configured, is required."""

from __future__ import annotations

import secrets
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pymysql
import pytest
from botocore.exceptions import ClientError
from clusters import create_cluster, mysql, postgres, unique
from prometheus_client.parser import text_string_to_metric_families

from dbkeep_process import DbkeepProcess

PASSWORD = "Metrics-Pass-1"


def scrape(url: str, token: str | None = None) -> dict[tuple[str, tuple], float]:
    request = urllib.request.Request(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def cluster(dbkeep):
    return create_cluster(dbkeep, "aurora-mysql", unique("met"), PASSWORD)


@pytest.fixture(scope="module")
def pg_cluster(dbkeep):
    return create_cluster(dbkeep, "aurora-postgresql", unique("met-pg"), PASSWORD)


def test_api_calls_are_counted_by_service_action_and_status(dbkeep):
    before = scrape(dbkeep.url)
    dbkeep.client("iam").list_users()
    with pytest.raises(ClientError):
        dbkeep.client("iam").get_user(UserName=unique("nobody"))
    after = scrape(dbkeep.url)
    ok = dict(service="iam", action="ListUsers", status="200")
    missing = dict(service="iam", action="GetUser", status="404")
    assert value(after, "dbkeep_api_requests_total", **ok) == value(before, "dbkeep_api_requests_total", **ok) + 1
    assert value(after, "dbkeep_api_requests_total", **missing) == value(before, "dbkeep_api_requests_total", **missing) + 1
    count = ("dbkeep_api_request_duration_seconds_count", (("service", "iam"),))
    assert after[count] >= before.get(count, 0) + 2


def test_a_made_up_action_mints_no_label(dbkeep):
    """Labels come from operations this endpoint has: an attacker's made-up names are "unknown"."""
    name = f"Made{secrets.token_hex(4)}Up"
    data = f"Action={name}&Version=2010-05-08".encode()
    request = urllib.request.Request(dbkeep.url, data=data, headers={"Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(request, timeout=10)
    assert exc.value.code == 403  # unsigned
    text = urllib.request.urlopen(f"{dbkeep.url}/metrics", timeout=10).read().decode()
    assert name not in text
    assert 'dbkeep_api_requests_total{action="unknown",service="unknown",status="403"}' in text


def test_logins_refusals_engine_and_connections(dbkeep, cluster):
    ident = cluster["DBClusterIdentifier"]
    before = scrape(dbkeep.url)
    held = mysql(dbkeep, cluster, "admin", PASSWORD)
    with pytest.raises(pymysql.err.OperationalError):
        mysql(dbkeep, cluster, "admin", "Not-The-Password-1").close()
    # refused at accept: a source the security group does not admit
    ec2, rds = dbkeep.client("ec2"), dbkeep.client("rds")
    group = ec2.create_security_group(GroupName=unique("met-sg"), Description="127.0.0.2 only")["GroupId"]
    port = cluster["Port"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": "127.0.0.2/32"}]}])
    default = cluster["VpcSecurityGroups"][0]["VpcSecurityGroupId"]
    rds.modify_db_cluster(DBClusterIdentifier=ident, VpcSecurityGroupIds=[group], ApplyImmediately=True)
    try:
        deadline = time.monotonic() + 10
        refused = False
        while not refused and time.monotonic() < deadline:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                refused = sock.recv(16) == b""
            time.sleep(0.2)
        assert refused
    finally:
        rds.modify_db_cluster(DBClusterIdentifier=ident, VpcSecurityGroupIds=[default], ApplyImmediately=True)
    after = scrape(dbkeep.url)
    held.close()
    allow = dict(cluster=ident, method="password", verdict="allow")
    deny = dict(cluster=ident, method="password", verdict="deny")
    assert value(after, "dbkeep_gateway_logins_total", **allow) == value(before, "dbkeep_gateway_logins_total", **allow) + 1
    assert value(after, "dbkeep_gateway_logins_total", **deny) == value(before, "dbkeep_gateway_logins_total", **deny) + 1
    sg = dict(cluster=ident, reason="security group")
    assert value(after, "dbkeep_gateway_connections_refused_total", **sg) >= \
        value(before, "dbkeep_gateway_connections_refused_total", **sg) + 1
    assert value(after, "dbkeep_engine_up", cluster=ident) == 1.0
    assert value(after, "dbkeep_gateway_connections_open", cluster=ident) >= 1.0
    assert ("dbkeep_engine_restarts_total", (("cluster", ident),)) in after


def test_a_token_file_makes_metrics_ask_for_it():
    base = Path(tempfile.mkdtemp(prefix="dbkeep-metrics-"))
    token = secrets.token_urlsafe(24)
    (base / "token").write_text(token + "\n")
    proc = DbkeepProcess(base / "state", extra_args=["--metrics-token-file", str(base / "token")]).start()
    try:
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(f"{proc.url}/metrics", timeout=10)
        assert exc.value.code == 401
        with pytest.raises(urllib.error.HTTPError) as exc:
            scrape(proc.url, "wrong-token-wrong-token")
        assert exc.value.code == 401
        request = urllib.request.Request(f"{proc.url}/metrics", headers={"Authorization": f"Bearer {token}"})
        text = urllib.request.urlopen(request, timeout=10).read().decode()
        assert "# HELP dbkeep_gateway_logins_total" in text and "# TYPE dbkeep_engine_up gauge" in text
    finally:
        assert proc.stop() == 0, proc.logs()
        shutil.rmtree(base, ignore_errors=True)


# a write the statement guard refuses (tests/e2e/test_grant_hygiene.py): nothing reaches the engine
GUARDED = ("UPDATE mysql.global_priv SET Priv=JSON_SET(Priv, '$.access', "
           "CAST(JSON_VALUE(Priv, '$.access') AS UNSIGNED) | 2 | 512 | 32768) WHERE User='admin'")


def test_accepted_latency_bytes_guard_and_failed_logins(dbkeep, cluster, pg_cluster):
    my, pg = cluster["DBClusterIdentifier"], pg_cluster["DBClusterIdentifier"]
    before = scrape(dbkeep.url)
    # the master's MariaDB session is inspected: relayed by the event loop
    with mysql(dbkeep, cluster, "admin", PASSWORD) as conn, conn.cursor() as cur:
        cur.execute("SELECT REPEAT('x', 300000)")
        assert len(cur.fetchone()[0]) == 300000
        with pytest.raises(pymysql.err.OperationalError) as refused:
            cur.execute(GUARDED)
        assert refused.value.args[0] == 1227
    # PostgreSQL without a guard on its statements: the native relay's threads
    with postgres(dbkeep, pg_cluster, "master", PASSWORD) as conn:
        assert len(conn.execute("SELECT repeat('y', 400000)").fetchone()[0]) == 400000
    # a login that fails before the engine's verdict: a protocol error
    with socket.create_connection(("127.0.0.1", cluster["Port"]), timeout=10) as sock:
        sock.recv(4096)  # the greeting
        sock.sendall(b"\x01\x00\x00\x01\xff")
        sock.settimeout(10)
        while sock.recv(4096):
            pass
    deadline = time.monotonic() + 10
    while True:  # the refusal is counted when the gateway has closed its side
        after = scrape(dbkeep.url)
        failed = dict(cluster=my, reason="protocol error")
        if value(after, "dbkeep_gateway_connections_refused_total", **failed) > \
                value(before, "dbkeep_gateway_connections_refused_total", **failed) or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    def moved(name: str, **labels) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("dbkeep_gateway_connections_refused_total", cluster=my, reason="protocol error") == 1
    assert moved("dbkeep_gateway_connections_accepted_total", cluster=my) == 2
    assert moved("dbkeep_gateway_connections_accepted_total", cluster=pg) == 1
    for ident in (my, pg):
        assert moved("dbkeep_gateway_login_duration_seconds_count", cluster=ident, method="password") == 1
        assert moved("dbkeep_gateway_login_duration_seconds_bucket", cluster=ident, method="password", le="+Inf") == 1
        assert moved("dbkeep_gateway_login_duration_seconds_sum", cluster=ident, method="password") > 0
    assert moved("dbkeep_gateway_bytes_relayed_total", cluster=my, direction="engine_to_client") >= 300000
    assert moved("dbkeep_gateway_bytes_relayed_total", cluster=my, direction="client_to_engine") >= len(GUARDED)
    assert moved("dbkeep_gateway_bytes_relayed_total", cluster=pg, direction="engine_to_client") >= 400000
    assert moved("dbkeep_gateway_bytes_relayed_total", cluster=pg, direction="client_to_engine") > 0
    assert moved("dbkeep_guard_refusals_total", cluster=my, rule="write to mysql.global_priv") == 1
