"""The PostgreSQL gateway end to end, through a real ``dbkeep up``: psql, psycopg 3 and asyncpg
with ``verify-full`` against DIR/ca.pem; TLS policy from parameter groups; rdsadmin and wrong
passwords; security groups; cancel; kill -9 of the engine; handshake timeout and garbage; flow
control; and, in-process against the same engine, the guarded (framed) relay with a statement
guard (``dbkeep up`` installs none yet)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

import asyncpg
import psycopg
import pytest

import inprocess
from clusters import create_cluster, unique, wait_cluster
from gateway_checks import assert_no_exception_escaped_a_session, audit_events, audit_mark
from process_stats import relay_and_loop_ticks

PASSWORD = "Gateway-Pass-1"
PSQL = "/usr/lib/postgresql/15/bin/psql"
BIG_SQL = "SELECT repeat('x', 1000) FROM generate_series(1, 50000)"  # ~50 MB of rows
BIG_BYTES = 50000 * 1000
HANDSHAKE_TIMEOUT = 10.0  # Limits.handshake_timeout (dbkeep up's default)
FIRST_BYTE_TIMEOUT = 3.0  # Limits.first_byte_timeout (dbkeep up's default): a client that says nothing

pytestmark = pytest.mark.engines


def dsn(dbkeep, cluster: dict, *, user: str = "master", password: str = PASSWORD, sslmode: str = "verify-full", **extra) -> str:
    parts = {"host": "localhost", "port": cluster["Port"], "dbname": "appdb", "user": user, "password": password,
             "sslmode": sslmode, "sslrootcert": dbkeep.state_dir / "ca.pem", "connect_timeout": 10, **extra}
    quote = lambda v: "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"  # noqa: E731
    return " ".join(f"{k}={quote(v)}" for k, v in parts.items())


def connect(dbkeep, cluster: dict, **kw) -> psycopg.Connection:
    return psycopg.connect(dsn(dbkeep, cluster, **kw), autocommit=True)


def refused(dbkeep, cluster: dict, **kw) -> psycopg.OperationalError:
    with pytest.raises(psycopg.OperationalError) as exc:
        connect(dbkeep, cluster, **kw).close()
    return exc.value


def fatal_of(error: psycopg.OperationalError) -> str:
    """The primary message of a connection failure carrying a server FATAL (libpq keeps no
    SQLSTATE for those: :func:`login_error` has it)."""
    text = str(error)
    return text.split("FATAL:", 1)[1].strip().splitlines()[0] if "FATAL:" in text else text


def login_error(dbkeep, cluster: dict, *, user: str = "master", password: str = PASSWORD, tls: bool = True,
                **server_settings: str) -> tuple[str, str]:
    """(SQLSTATE, message) of a refused login, through asyncpg (verify-full when ``tls``)."""
    context = ssl.create_default_context(cafile=str(dbkeep.state_dir / "ca.pem")) if tls else False

    async def attempt() -> tuple[str, str]:
        try:
            conn = await asyncpg.connect(host="localhost", port=cluster["Port"], user=user, password=password, database="appdb",
                                         ssl=context, timeout=10, server_settings=server_settings or None)
        except asyncpg.PostgresError as exc:
            return exc.sqlstate, exc.args[0]
        await conn.close()
        raise AssertionError("login succeeded")

    return asyncio.run(attempt())


@pytest.fixture(scope="module", autouse=True)
def no_exception_escaped_a_session(dbkeep):
    """Checked after this module's tests, whichever ran."""
    yield
    assert_no_exception_escaped_a_session(dbkeep, "postgres")


def last_tls_version(dbkeep, cluster: dict) -> str | None:
    """The TLS version of the cluster's latest allowed login, as the gateway audited it."""
    allowed = [e for e in audit_events(dbkeep, "gateway.login", cluster["DBClusterIdentifier"]) if e["verdict"] == "allow"]
    return allowed[-1].get("tls_version")


def startup_packet(user: str, database: str = "appdb") -> bytes:
    body = struct.pack("!I", 3 << 16) + f"user\0{user}\0database\0{database}\0\0".encode()
    return struct.pack("!I", len(body) + 4) + body


def read_until_closed(sock: socket.socket, limit: float = 5.0) -> bytes:
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


class _Watch(threading.Thread):
    """Holds a client socket that stops talking and records when the gateway closes it."""

    def __init__(self, port: int, hello: bytes | None) -> None:
        super().__init__(daemon=True)
        self.port, self.hello = port, hello
        self.opened = self.closed = 0.0
        self.received = b""

    def run(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        self.opened = time.monotonic()
        if self.hello:
            sock.sendall(self.hello)
        self.received = read_until_closed(sock, limit=HANDSHAKE_TIMEOUT + 20)
        self.closed = time.monotonic()
        sock.close()


# --- clusters ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg(dbkeep):
    """The main cluster; two silent clients are started on it at once (handshake timeout)."""
    cluster = create_cluster(dbkeep, "aurora-postgresql", unique("pgw"), PASSWORD)
    silent = _Watch(cluster["Port"], None)
    mute_after_startup = _Watch(cluster["Port"], startup_packet("master"))
    silent.start()
    mute_after_startup.start()
    cluster["watches"] = (silent, mute_after_startup)
    return cluster


@pytest.fixture(scope="module")
def pg_policy(dbkeep):
    return create_cluster(dbkeep, "aurora-postgresql", unique("pgtls"), PASSWORD)


@pytest.fixture(scope="module")
def pg_sg(dbkeep):
    return create_cluster(dbkeep, "aurora-postgresql", unique("pgsg"), PASSWORD)


# --- clients -----------------------------------------------------------------------------------


def test_psql_verify_full(dbkeep, pg, tmp_path):
    env = {**os.environ, "PGPASSWORD": PASSWORD, "PGCONNECT_TIMEOUT": "10"}
    conninfo = dsn(dbkeep, pg).replace(f"password='{PASSWORD}' ", "")

    def psql(*args: str, stdin: str | None = None) -> str:
        result = subprocess.run([PSQL, conninfo, "-X", "-v", "ON_ERROR_STOP=1", "-At", *args], input=stdin,
                                capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    out = psql("-c", "\\conninfo")
    assert 'SSL connection (protocol: TLSv1.3' in out  # TLS is the gateway's (the engine side is a unix socket)
    psql("-c", "CREATE TABLE psql_items (n int PRIMARY KEY, label text)",
         "-c", "INSERT INTO psql_items SELECT g, 'item ' || g FROM generate_series(1, 1000) g",
         "-c", "UPDATE psql_items SET label = upper(label) WHERE n <= 10",
         "-c", "DELETE FROM psql_items WHERE n > 900")
    assert psql("-c", "SELECT count(*), max(label) FROM psql_items").strip() == "900|item 99"
    # COPY both ways through psql's \copy
    psql("-c", "\\copy psql_items FROM STDIN WITH (FORMAT csv)", stdin="".join(f"{n},copied\n" for n in range(1001, 21001)))
    out_file = tmp_path / "items.csv"
    psql("-c", f"\\copy psql_items TO '{out_file}' WITH (FORMAT csv)")
    assert len(out_file.read_text().splitlines()) == 20900
    # a 50 MB result
    big = subprocess.run([PSQL, conninfo, "-X", "-At", "-c", BIG_SQL], capture_output=True, env=env, timeout=120)
    assert big.returncode == 0, big.stderr
    assert len(big.stdout) == BIG_BYTES + 50000  # one newline per row


def test_psycopg_verify_full(dbkeep, pg):
    with connect(dbkeep, pg) as conn:
        assert conn.pgconn.ssl_in_use and last_tls_version(dbkeep, pg) == "TLSv1.3"
        # the gateway keeps the engine's process id in its own cancel key
        assert conn.info.backend_pid == conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.execute("CREATE TABLE pg_items (n int PRIMARY KEY, payload text)")
        with conn.transaction():
            conn.execute("INSERT INTO pg_items SELECT g, md5(g::text) FROM generate_series(1, 100) g")
            conn.execute("UPDATE pg_items SET payload = 'x' WHERE n = %s", (7,))
        assert conn.execute("SELECT payload FROM pg_items WHERE n = %s", (7,)).fetchone() == ("x",)
        with conn.cursor() as cur:
            cur.execute(BIG_SQL)
            assert sum(len(row[0]) for row in cur) == BIG_BYTES
        with conn.cursor().copy("COPY pg_items FROM STDIN") as copy:
            for n in range(1000, 101000):
                copy.write_row((n, "y" * 100))
        out = io.BytesIO()
        with conn.cursor().copy("COPY pg_items TO STDOUT") as copy:
            for chunk in copy:
                out.write(chunk)
        assert out.getvalue().count(b"\n") == 100100
        with pytest.raises(psycopg.errors.UniqueViolation):  # an engine error is relayed as is
            conn.execute("INSERT INTO pg_items VALUES (1, 'again')")
        assert conn.execute("SELECT count(*) FROM pg_items").fetchone() == (100100,)


@pytest.mark.parametrize("sslmode", ["verify-full", "disable"])
def test_logged_in_sessions_are_relayed_by_the_native_threads(dbkeep, pg, sslmode):
    """After the login, a session's bytes (and its TLS) are the native relay's work, not the
    event loop's: streaming 50 MB costs the relay thread CPU and the Python thread next to none."""
    pid = dbkeep.proc.pid
    user = f"relayed_{sslmode.replace('-', '_')}"
    with connect(dbkeep, pg) as admin:
        admin.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{PASSWORD}'")
    with connect(dbkeep, pg, sslmode=sslmode, user=user) as conn:
        assert conn.pgconn.ssl_in_use == (sslmode != "disable")

        def stream() -> None:
            for _ in range(2):
                with conn.cursor() as cur:
                    cur.execute(BIG_SQL)
                    assert sum(len(row[0]) for row in cur) == BIG_BYTES

        relay, loop = relay_and_loop_ticks(pid, stream)
    assert relay >= 3 and relay > 2 * loop, (relay, loop)


def test_psycopg_direct_tls(dbkeep, pg):
    """PostgreSQL 17's direct TLS (sslnegotiation=direct, ALPN "postgresql")."""
    with connect(dbkeep, pg, sslnegotiation="direct") as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # without ALPN the handshake may finish, but the session goes no further
    context = ssl.create_default_context(cafile=str(dbkeep.state_dir / "ca.pem"))
    with socket.create_connection(("127.0.0.1", pg["Port"])) as raw, context.wrap_socket(raw, server_hostname="localhost") as tls:
        try:
            tls.sendall(startup_packet("master"))
            assert read_until_closed(tls) == b""
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
            pass


def test_asyncpg(dbkeep, pg):
    async def main() -> None:
        context = ssl.create_default_context(cafile=str(dbkeep.state_dir / "ca.pem"))
        conn = await asyncpg.connect(host="localhost", port=pg["Port"], user="master", password=PASSWORD,
                                     database="appdb", ssl=context, timeout=10)
        try:
            await conn.execute("CREATE TABLE apg_items (n int PRIMARY KEY, label text)")
            await conn.executemany("INSERT INTO apg_items VALUES ($1, $2)", [(n, f"n{n}") for n in range(100)])
            assert await conn.fetchval("SELECT label FROM apg_items WHERE n = $1", 42) == "n42"
            rows = await conn.fetch(BIG_SQL)
            assert sum(len(r[0]) for r in rows) == BIG_BYTES
            await conn.copy_records_to_table("apg_items", records=[(n, "c" * 50) for n in range(100, 50100)])
            out = io.BytesIO()
            await conn.copy_from_query("SELECT * FROM apg_items", output=out)
            assert out.getvalue().count(b"\n") == 50100
            # asyncpg's timeout cancels the statement through the gateway (CancelRequest)
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await conn.execute("SELECT pg_sleep(30)", timeout=0.5)
            assert await conn.fetchval("SELECT 42") == 42
            assert time.monotonic() - started < 5
        finally:
            await conn.close()

    asyncio.run(main())


@pytest.mark.parametrize("how", ["cancel", "cancel_safe"])
def test_psycopg_cancel(dbkeep, pg, how):
    """``cancel`` (PQcancel: a cleartext CancelRequest) and ``cancel_safe`` (libpq 17+
    PQcancelConn: the CancelRequest goes over TLS like the session)."""
    with connect(dbkeep, pg) as conn:
        timer = threading.Timer(0.5, getattr(conn, how))
        started = time.monotonic()
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")
        assert time.monotonic() - started < 5
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_client_that_stops_reading_is_not_buffered(dbkeep, pg):
    """Back-pressure: a 300 MB result to a client that reads nothing stays in the engine."""
    pid = dbkeep.proc.pid
    with connect(dbkeep, pg) as watcher:
        stalled = connect(dbkeep, pg)
        before = rss_kib(pid)
        stalled_pid = stalled.info.backend_pid
        stalled.pgconn.send_query(b"SELECT repeat('x', 1000) FROM generate_series(1, 300000)")
        stalled.pgconn.flush()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            state = watcher.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s", (stalled_pid,)).fetchone()
            if state == ("ClientWrite",):
                break
            time.sleep(0.2)
        assert state == ("ClientWrite",)  # the engine waits for the gateway, which waits for the client
        time.sleep(0.5)
        assert rss_kib(pid) - before < 48 * 1024
        watcher.execute("SELECT pg_terminate_backend(%s)", (stalled_pid,))
        stalled.close()


# --- refusals at login ---------------------------------------------------------------------------


def test_rdsadmin_and_wrong_password_are_refused_and_audited(dbkeep, pg):
    mark = audit_mark(dbkeep)
    with connect(dbkeep, pg) as conn:  # one login that succeeds, for the allow event's fields
        assert conn.execute("SELECT 1").fetchone() == (1,)
    rejected = 'pg_hba.conf rejects connection for host "127.0.0.1", user "rdsadmin", database "appdb", SSL on'
    assert fatal_of(refused(dbkeep, pg, user="rdsadmin")) == rejected
    assert login_error(dbkeep, pg, user="rdsadmin") == ("28000", rejected)
    assert login_error(dbkeep, pg, user="rdsadmin", tls=False) == ("28000", rejected.replace("SSL on", "SSL off"))
    wrong = 'password authentication failed for user "master"'  # the engine's own error, relayed
    assert fatal_of(refused(dbkeep, pg, password="not-the-password")) == wrong
    assert login_error(dbkeep, pg, password="not-the-password") == ("28P01", wrong)
    assert fatal_of(refused(dbkeep, pg, replication="true")) == (
        'no pg_hba.conf entry for replication connection from host "127.0.0.1", user "master", SSL on')
    assert fatal_of(refused(dbkeep, pg, replication="database")) == (
        'no pg_hba.conf entry for host "127.0.0.1", user "master", database "appdb", SSL on')
    logins = audit_events(dbkeep, "gateway.login", pg["DBClusterIdentifier"], since=mark)
    allowed = [e for e in logins if e["verdict"] == "allow" and e["user"] == "master"]
    assert len(allowed) == 1 and all(e["tls_version"] == "TLSv1.3" and e["tls_cipher"] and e["source_ip"] == "127.0.0.1" for e in allowed)
    denied = {(e["user"], e.get("tls_version"), e["reason"]) for e in logins if e["verdict"] == "deny"}
    assert ("rdsadmin", "TLSv1.3", "rdsadmin") in denied
    assert ("rdsadmin", None, "rdsadmin") in denied
    assert ("master", "TLSv1.3", '28P01 password authentication failed for user "master"') in denied


def test_force_ssl_and_tls_versions_from_the_parameter_group(dbkeep, pg_policy):
    rds = dbkeep.client("rds")
    ident, group = pg_policy["DBClusterIdentifier"], unique("pgtls-params")
    # before: cleartext is allowed
    with connect(dbkeep, pg_policy, sslmode="disable") as conn:
        assert not conn.pgconn.ssl_in_use
    rds.create_db_cluster_parameter_group(DBClusterParameterGroupName=group, DBParameterGroupFamily="aurora-postgresql15",
                                          Description="gateway TLS policy")
    rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=group, Parameters=[
        {"ParameterName": "rds.force_ssl", "ParameterValue": "1", "ApplyMethod": "immediate"}])
    rds.modify_db_cluster(DBClusterIdentifier=ident, DBClusterParameterGroupName=group, ApplyImmediately=True)
    wait_cluster(dbkeep, ident)
    off = 'no pg_hba.conf entry for host "127.0.0.1", user "master", database "appdb", SSL off'
    assert fatal_of(refused(dbkeep, pg_policy, sslmode="disable")) == off
    assert login_error(dbkeep, pg_policy, tls=False) == ("28000", off)
    with connect(dbkeep, pg_policy) as conn:
        assert conn.pgconn.ssl_in_use
    # ssl_min_protocol_version=TLSv1.3 refuses a client capped at TLS 1.2 (new connections at once)
    with connect(dbkeep, pg_policy, ssl_max_protocol_version="TLSv1.2") as conn:
        assert conn.pgconn.ssl_in_use and last_tls_version(dbkeep, pg_policy) == "TLSv1.2"
    rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=group, Parameters=[
        {"ParameterName": "ssl_min_protocol_version", "ParameterValue": "TLSv1.3", "ApplyMethod": "immediate"}])
    wait_cluster(dbkeep, ident)
    error = refused(dbkeep, pg_policy, ssl_max_protocol_version="TLSv1.2")
    assert "SSL" in str(error) and error.sqlstate is None  # the TLS handshake fails: no FATAL, no session
    with connect(dbkeep, pg_policy) as conn:
        assert conn.pgconn.ssl_in_use and last_tls_version(dbkeep, pg_policy) == "TLSv1.3"
    failures = [e for e in (json.loads(line) for line in (dbkeep.state_dir / "audit.log").read_text().splitlines())
                if e.get("event") == "gateway.connection_refused" and e.get("cluster") == ident
                and e.get("reason") == "TLS handshake failed"]
    assert failures


# --- security groups and engine faults -------------------------------------------------------------


def test_security_groups_close_before_any_byte_and_are_stateful(dbkeep, pg_sg):
    ec2, rds = dbkeep.client("ec2"), dbkeep.client("rds")
    ident, port = pg_sg["DBClusterIdentifier"], pg_sg["Port"]
    default = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    group = ec2.create_security_group(GroupName=unique("pg-gw"), Description="no loopback")["GroupId"]
    rds.modify_db_cluster(DBClusterIdentifier=ident, VpcSecurityGroupIds=[group], ApplyImmediately=True)
    wait_cluster(dbkeep, ident)
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(struct.pack("!II", 8, 80877103))  # SSLRequest: no answer, not even 'N'
            assert read_until_closed(raw) == b""
        refused(dbkeep, pg_sg)
        permission = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": "127.0.0.1/32"}]}
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[permission])
        with connect(dbkeep, pg_sg) as kept:
            assert kept.execute("SELECT 1").fetchone() == (1,)
            ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[permission])
            refused(dbkeep, pg_sg)
            assert kept.execute("SELECT 2").fetchone() == (2,)  # stateful: the open session goes on
        events = audit_events(dbkeep, "gateway.connection_refused", ident)
        assert len(events) >= 3 and all(e["reason"] == "security group" for e in events)
    finally:
        rds.modify_db_cluster(DBClusterIdentifier=ident, VpcSecurityGroupIds=[default], ApplyImmediately=True)
        wait_cluster(dbkeep, ident)
        ec2.delete_security_group(GroupId=group)
    with connect(dbkeep, pg_sg) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_engine_killed_gives_an_error_and_recovers(dbkeep, pg_sg):
    conn = connect(dbkeep, pg_sg)
    pid_file = dbkeep.state_dir / "clusters" / pg_sg["DbClusterResourceId"] / "data" / "postmaster.pid"
    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        for _ in range(100):
            conn.execute("SELECT 1")
            time.sleep(0.05)
    assert time.monotonic() - started < 10
    conn.close()
    errors = set()
    while True:
        try:
            with connect(dbkeep, pg_sg, connect_timeout=5) as again:
                assert again.execute("SELECT 1").fetchone() == (1,)
                break
        except psycopg.OperationalError as exc:
            errors.add(fatal_of(exc))
            assert time.monotonic() - started < 60, errors
            time.sleep(0.1)
    # meanwhile every refusal was a clear error, never a timeout
    assert errors <= {"the database system is starting up", "the database system is in recovery mode",
                      "the database system is not yet accepting connections"}, errors


# --- hostile clients ---------------------------------------------------------------------------


def test_garbage_never_harms_other_sessions(dbkeep, pg):
    port = pg["Port"]
    with connect(dbkeep, pg) as bystander:
        probes = [
            (struct.pack("!II", 8, 0x00020000), b"E"),  # protocol 2.0: the v2-style error, then close
            (struct.pack("!II", 8, 0x00040000), b"E"),  # protocol 4.0: FATAL 0A000
            (struct.pack("!II", 0x7FFFFFFF, 196608), b""),  # absurd length: closed before the body is awaited
            (struct.pack("!II", 8, 80877103) + b"sneaky", b""),  # bytes behind an SSLRequest: closed, no 'S'
            (bytes(range(256)) * 4, b""),
            (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b""),
            (startup_packet("master") + b"p\xff\xff\xff\xffjunk", b"R"),  # a 4 GB password message, pipelined
        ]
        for payload, starts in probes:
            with socket.create_connection(("127.0.0.1", port)) as raw:
                raw.sendall(payload)
                reply = read_until_closed(raw)
            assert reply.startswith(starts), (payload[:16], reply[:80])
            if payload[4:8] == struct.pack("!I", 0x00040000):
                assert b"C0A000" in reply and b"unsupported frontend protocol 4.0" in reply
        assert bystander.execute("SELECT 'still here'").fetchone() == ("still here",)
    with connect(dbkeep, pg) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_silent_clients_are_closed_after_the_handshake_timeout(dbkeep, pg):
    for watch in pg["watches"]:
        watch.join(HANDSHAKE_TIMEOUT + 25)
        assert not watch.is_alive()
        # one that sends nothing at all is closed after the first-byte timeout
        timeout = FIRST_BYTE_TIMEOUT if watch.hello is None else HANDSHAKE_TIMEOUT
        assert timeout - 0.5 <= watch.closed - watch.opened <= timeout + 5
    silent, mute = pg["watches"]
    assert silent.received == b""  # as PostgreSQL: closed without a message
    assert mute.received.startswith(b"R")  # it got the SASL request, then said nothing
    # counted per source (gateway/refusals.py), not a login event each: the first of a kind at once
    refused = {e["reason"]: e for e in audit_events(dbkeep, "gateway.connection_refused", pg["DBClusterIdentifier"])}
    assert "first byte timeout" in refused
    assert refused["handshake timeout"]["user"] == "master"


# --- the guarded relay, in process ----------------------------------------------------------------


def InProcessGateway(dbkeep, cluster: dict, *, limits=None, engine_socket: str | None = None, guarded: bool = True,  # noqa: N802
                     login_audit_delay: float = 0.0):
    """An in-process gateway (tests/e2e/inprocess.py) whose guard refuses with SQLSTATE 42501."""
    from dbkeep.errors import DbError
    from dbkeep.gateway.drivers.postgres import PostgresSession

    refusal = DbError("statement refused by the guard", sqlstate="42501")
    return inprocess.InProcessGateway(dbkeep, cluster, PostgresSession, refusal, engine_socket=engine_socket, limits=limits,
                                      guarded=guarded, login_audit_delay=login_audit_delay)


def test_the_engines_verdict_is_audited_before_the_client_learns_it(dbkeep, pg):
    """A client that has its ReadyForQuery (or the engine's 28P01) already finds the event in the
    audit log, even when writing the event is slow: the verdict is recorded before it is relayed."""
    gateway = InProcessGateway(dbkeep, pg, guarded=False, login_audit_delay=0.5)
    try:
        def logins() -> list[tuple[str, str]]:
            events = map(json.loads, gateway.audit_path.read_text().splitlines())
            return [(e["verdict"], e.get("reason", "")) for e in events if e["event"] == "gateway.login"]

        cluster = {**pg, "Port": gateway.port}
        for sslmode in ("verify-full", "disable"):
            with connect(dbkeep, cluster, sslmode=sslmode) as conn:
                assert logins()[-1] == ("allow", "")
                assert conn.execute("SELECT 1").fetchone() == (1,)
            error = refused(dbkeep, cluster, sslmode=sslmode, password="not-the-password")
            assert 'password authentication failed for user "master"' in str(error)
            verdict, reason = logins()[-1]
            assert verdict == "deny" and reason.startswith("28P01")
        assert len(logins()) == 4
    finally:
        gateway.close()


@pytest.mark.parametrize("sslmode", ["verify-full", "disable"])
def test_event_loop_raw_relay(dbkeep, pg, sslmode):
    """Without native relay threads (``--relay-threads 0``, or a session the relay refused) an
    unguarded session is relayed raw by the event loop: big results, COPY and cancel work."""
    gateway = InProcessGateway(dbkeep, pg, guarded=False)
    try:
        assert gateway.ctx.guard is None and gateway.ctx.offload is None
        cluster = {**pg, "Port": gateway.port}
        with connect(dbkeep, cluster, sslmode=sslmode) as conn:
            with conn.cursor() as cur:
                cur.execute(BIG_SQL)
                assert sum(len(row[0]) for row in cur) == BIG_BYTES
            table = f"raw_items_{sslmode.replace('-', '_')}"
            conn.execute(f"CREATE TABLE {table} (n int)")
            with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
                for n in range(50000):
                    copy.write_row((n,))
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (50000,)
            # cancel_safe: PQcancel would hold the GIL this in-process gateway needs to answer it
            timer = threading.Timer(0.5, conn.cancel_safe)
            timer.start()
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(30)")
            timer.join()
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        gateway.close()


@pytest.fixture(scope="module")
def guarded(dbkeep, pg):
    gateway = InProcessGateway(dbkeep, pg)
    yield gateway
    gateway.close()


def test_guard_refuses_statements_with_engine_semantics(dbkeep, pg, guarded):
    cluster = {**pg, "Port": guarded.port}
    with connect(dbkeep, cluster) as conn:
        assert conn.pgconn.ssl_in_use
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="statement refused by the guard"):
            conn.execute("SELECT 'forbidden'")  # simple protocol
        assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):  # extended protocol: Parse refused
            conn.execute("SELECT 'forbidden' WHERE %s", (True,))
        assert conn.execute("SELECT %s::int + 1", (1,)).fetchone() == (2,)
        conn.autocommit = False  # a refusal leaves a transaction block failed, as any error
        conn.execute("SELECT 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT 'forbidden'")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        conn.autocommit = True
        # the framed relay carries big results and COPY too
        with conn.cursor() as cur:
            cur.execute(BIG_SQL)
            assert sum(len(row[0]) for row in cur) == BIG_BYTES
        conn.execute("CREATE TABLE guarded_items (n int)")
        with conn.cursor().copy("COPY guarded_items FROM STDIN") as copy:
            for n in range(50000):
                copy.write_row((n,))
        assert conn.execute("SELECT count(*) FROM guarded_items").fetchone() == (50000,)
    assert ("master", "SELECT 'forbidden'") in guarded.judged
    assert fatal_of(refused(dbkeep, cluster, options="-c search_path=forbidden")) == "statement refused by the guard"
    assert login_error(dbkeep, cluster, search_path="forbidden") == ("42501", "statement refused by the guard")
    with connect(dbkeep, cluster, options="-c search_path=public") as conn:
        assert conn.execute("SHOW search_path").fetchone() == ("public",)
    assert ("master", "SET \"search_path\" TO 'public'") in guarded.judged
    refusals = [json.loads(line) for line in guarded.audit_path.read_text().splitlines()]
    assert any(e["event"] == "gateway.statement_refused" and e["user"] == "master" for e in refusals)


def test_guarded_cancel_and_asyncpg(dbkeep, pg, guarded):
    async def main() -> None:
        context = ssl.create_default_context(cafile=str(dbkeep.state_dir / "ca.pem"))
        conn = await asyncpg.connect(host="localhost", port=guarded.port, user="master", password=PASSWORD,
                                     database="appdb", ssl=context, timeout=10)
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval("SELECT 'forbidden'::text")
            assert await conn.fetchval("SELECT $1::int * 2", 21) == 42
            started = time.monotonic()
            with pytest.raises(asyncio.TimeoutError):
                await conn.execute("SELECT pg_sleep(30)", timeout=0.5)
            assert await conn.fetchval("SELECT 1") == 1 and time.monotonic() - started < 5
        finally:
            await conn.close()

    asyncio.run(main())


def test_connection_limit_and_unreachable_engine(dbkeep, pg, tmp_path):
    from dbkeep.gateway.listener import Limits

    limited = InProcessGateway(dbkeep, pg, limits=Limits(max_connections=1))
    try:
        cluster = {**pg, "Port": limited.port}
        with connect(dbkeep, cluster) as first:
            assert fatal_of(refused(dbkeep, cluster)) == "sorry, too many clients already"
            assert login_error(dbkeep, cluster) == ("53300", "sorry, too many clients already")
            assert first.execute("SELECT 1").fetchone() == (1,)
        deadline = time.monotonic() + 5
        while limited.ctx.connections.get(pg["DBClusterIdentifier"]):  # the slot is given back
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with connect(dbkeep, cluster) as again:
            assert again.execute("SELECT 1").fetchone() == (1,)
    finally:
        limited.close()
    down = InProcessGateway(dbkeep, pg, engine_socket=str(tmp_path / "no-engine" / ".s.PGSQL.5432"))
    try:
        cluster = {**pg, "Port": down.port}
        started = time.monotonic()
        assert login_error(dbkeep, cluster) == ("57P03", "the database system is starting up")
        assert time.monotonic() - started < 5
    finally:
        down.close()
