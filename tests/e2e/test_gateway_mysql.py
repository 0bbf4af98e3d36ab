"""The MySQL gateway end to end, through a real ``dbkeep up``: pymysql, mysql-connector-python and
the ``mariadb`` CLI verifying DIR/ca.pem and the endpoint host; big results, LOAD DATA LOCAL
INFILE, flow control and half-close; TLS policy from parameter groups (require_secure_transport,
tls_version, ssl_cipher) and REQUIRE SSL accounts; rdsadmin, wrong passwords and COM_CHANGE_USER;
security groups; kill -9 of the engine; handshake timeouts and garbage; and, in-process against the
same engine, a statement guard, the connection limit and an unreachable engine."""

from __future__ import annotations

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

import mysql.connector
import pymysql
import pymysql.cursors
import pytest
import inprocess
from clusters import create_cluster, socket_of, unique, wait_cluster
from gateway_checks import assert_no_exception_escaped_a_session, audit_events, audit_mark
from process_stats import relay_and_loop_ticks

from dbkeep.engines.layout import ClusterLayout

PASSWORD = "Gateway-Pass-1"
BIG_SQL = "SELECT REPEAT('x', 1000) FROM seq_1_to_50000"  # ~50 MB of rows
BIG_ROWS, BIG_BYTES = 50000, 50000 * 1000
HANDSHAKE_TIMEOUT = 10.0  # Limits.handshake_timeout (dbkeep up's default)
FIRST_BYTE_TIMEOUT = 3.0  # Limits.first_byte_timeout (dbkeep up's default): a client that says nothing
INSECURE = "Connections using insecure transport are prohibited while --require_secure_transport=ON."
ONE_CIPHER = "ECDHE-RSA-AES128-GCM-SHA256"

pytestmark = pytest.mark.engines


# --- helpers -----------------------------------------------------------------------------------


def ca_path(dbkeep) -> str:
    return str(dbkeep.state_dir / "ca.pem")


def tls_context(dbkeep, *, minimum: ssl.TLSVersion | None = None, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """Verifies the chain to dbkeep's CA and the endpoint host (``localhost``)."""
    context = ssl.create_default_context(cafile=ca_path(dbkeep))
    if minimum is not None:
        context.minimum_version = minimum
    if maximum is not None:
        context.maximum_version = maximum
    return context


def connect(dbkeep, cluster: dict, *, user: str = "admin", password: str = PASSWORD, tls: bool | ssl.SSLContext = True,
            port: int | None = None, **kw) -> pymysql.Connection:
    context = tls if isinstance(tls, ssl.SSLContext) else tls_context(dbkeep) if tls else None
    kw.setdefault("database", "appdb")
    kw.setdefault("connect_timeout", 10)
    return pymysql.connect(host="localhost", port=port or cluster["Port"], user=user, password=password, ssl=context,
                           ssl_disabled=not tls, autocommit=True, **kw)


def refused(dbkeep, cluster: dict, **kw) -> tuple[int, str]:
    """(errno, message) of a refused login."""
    with pytest.raises(pymysql.MySQLError) as exc:
        connect(dbkeep, cluster, **kw).close()
    return exc.value.args[0], exc.value.args[1]


def query(conn, sql: str, args=None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


@pytest.fixture(scope="module", autouse=True)
def no_exception_escaped_a_session(dbkeep):
    """Checked after this module's tests, whichever ran."""
    yield
    assert_no_exception_escaped_a_session(dbkeep, "mysql")


def last_login(dbkeep, cluster: dict, verdict: str = "allow") -> dict:
    return [e for e in audit_events(dbkeep, "gateway.login", cluster["DBClusterIdentifier"]) if e["verdict"] == verdict][-1]


def read_until_closed(sock: socket.socket, limit: float = 5.0) -> bytes:
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def packet(payload: bytes, seq: int) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def login_packet(user: str, plugin: str = "mysql_native_password", *, ssl_request: bool = False) -> bytes:
    """A HandshakeResponse41 (protocol 4.1, secure connection, plugin auth) with a dummy scramble,
    or the 32-byte SSLRequest."""
    caps = 0x0200 | 0x8000 | 0x80000 | 0x0001 | (0x0800 if ssl_request else 0)
    head = struct.pack("<IIB", caps, 1 << 24, 45) + b"\0" * 23
    if ssl_request:
        return packet(head, 1)
    return packet(head + user.encode() + b"\0" + bytes([20]) + b"\0" * 20 + plugin.encode() + b"\0", 1)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def engine_allows_local_infile(dbkeep, cluster: dict) -> None:
    """LOAD DATA LOCAL INFILE needs the engine's ``local_infile``; dbkeep's engine configuration
    leaves it off, so the test turns it on (as rdsadmin, on the engine's socket) to exercise the
    gateway's side: the request, the file's packets and the result."""
    with connect(dbkeep, cluster) as conn:
        if query(conn, "SELECT @@global.local_infile")[0][0]:
            return
    secret = ClusterLayout(dbkeep.state_dir, cluster["DbClusterResourceId"]).read_secret()
    with pymysql.connect(unix_socket=socket_of(dbkeep, cluster), user="rdsadmin", password=secret, autocommit=True) as admin:
        query(admin, "SET GLOBAL local_infile = 1")


class _Watch(threading.Thread):
    """A client that stops talking after sending ``hello`` (None: nothing at all, not even
    after reading the greeting); records when the gateway closes it."""

    def __init__(self, port: int, hello: bytes | None) -> None:
        super().__init__(daemon=True)
        self.port, self.hello = port, hello
        self.opened = self.closed = 0.0
        self.received = b""

    def run(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port)) as sock:
            self.opened = time.monotonic()
            if self.hello is not None:
                sock.settimeout(10)
                self.received = sock.recv(65536)  # the greeting
                sock.sendall(self.hello)
            self.received += read_until_closed(sock, HANDSHAKE_TIMEOUT + 20)
            self.closed = time.monotonic()


# --- clusters ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def my(dbkeep):
    """The main cluster; three clients that go silent at different points are started at once."""
    cluster = create_cluster(dbkeep, "aurora-mysql", unique("myw"), PASSWORD)
    port = cluster["Port"]
    watches = (
        _Watch(port, None),  # connects, says nothing
        _Watch(port, login_packet("", ssl_request=True)),  # SSLRequest, then no ClientHello
        _Watch(port, login_packet("admin", "caching_sha2_password")),  # gets an auth switch, never answers
    )
    for watch in watches:
        watch.start()
    cluster["watches"] = watches
    return cluster


@pytest.fixture(scope="module")
def my_policy(dbkeep):
    return create_cluster(dbkeep, "aurora-mysql", unique("mytls"), PASSWORD)


@pytest.fixture(scope="module")
def my_sg(dbkeep):
    return create_cluster(dbkeep, "aurora-mysql", unique("mysg"), PASSWORD)


# --- clients -----------------------------------------------------------------------------------


def test_pymysql_verify_identity_ddl_dml_and_a_big_result(dbkeep, my):
    with connect(dbkeep, my) as conn:
        assert conn._sock.version() in ("TLSv1.2", "TLSv1.3")
        query(conn, "CREATE TABLE py_items (id INT PRIMARY KEY, name VARCHAR(40))")
        query(conn, "INSERT INTO py_items VALUES (1, 'one'), (2, 'two'), (3, 'three')")
        query(conn, "UPDATE py_items SET name = 'TWO' WHERE id = %s", (2,))
        query(conn, "DELETE FROM py_items WHERE id = 3")
        assert query(conn, "SELECT id, name FROM py_items ORDER BY id") == [(1, "one"), (2, "TWO")]
        assert query(conn, "SELECT CURRENT_USER()") == [("admin@%",)]
        rows = query(conn, BIG_SQL)
        assert len(rows) == BIG_ROWS and sum(len(r[0]) for r in rows) == BIG_BYTES
    login = last_login(dbkeep, my)
    assert login["user"] == "admin" and login["tls_version"] in ("TLSv1.2", "TLSv1.3") and login["tls_cipher"]


def test_mysql_connector_verify_identity(dbkeep, my):
    conn = mysql.connector.connect(host="localhost", port=my["Port"], user="admin", password=PASSWORD, database="appdb",
                                   ssl_ca=ca_path(dbkeep), ssl_verify_identity=True, connection_timeout=10)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TABLE mc_items (id INT PRIMARY KEY, v TEXT)")
        cur.execute("INSERT INTO mc_items VALUES (%s, %s), (%s, %s)", (1, "a", 2, "b"))
        conn.commit()
        cur.execute("SELECT COUNT(*) FROM mc_items")
        assert cur.fetchall() == [(2,)]
        cur.execute(BIG_SQL)
        total = rows = 0
        for (value,) in cur:
            rows += 1
            total += len(value)
        assert (rows, total) == (BIG_ROWS, BIG_BYTES)
        cur.close()
    finally:
        conn.close()
    assert last_login(dbkeep, my)["tls_version"] in ("TLSv1.2", "TLSv1.3")


def test_mariadb_cli_verify_server_cert(dbkeep, my, tmp_path):
    base = ["mariadb", "--protocol=tcp", "-h", "localhost", "-P", str(my["Port"]), "-u", "admin", f"-p{PASSWORD}",
            f"--ssl-ca={ca_path(dbkeep)}", "--ssl-verify-server-cert", "--batch", "--skip-column-names",
            "--connect-timeout=10", "appdb"]
    sql = ("CREATE TABLE cli_items (id INT PRIMARY KEY, v TEXT); INSERT INTO cli_items VALUES (1, 'x'), (2, 'y'); "
           "UPDATE cli_items SET v = 'z' WHERE id = 2; SELECT id, v FROM cli_items ORDER BY id;\nstatus")
    done = subprocess.run([*base, "-e", sql], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("1\tx\n2\tz\n")
    assert "Cipher in use is" in done.stdout
    out = tmp_path / "big.tsv"
    with out.open("wb") as sink:
        done = subprocess.run([*base, "-e", BIG_SQL], stdout=sink, stderr=subprocess.PIPE, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size == BIG_BYTES + BIG_ROWS  # each row and its newline
    # a CA that did not sign the endpoint's certificate: refused by the client
    other = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(tmp_path / "k.pem"), "-out", str(other), "-days", "1", "-subj", "/CN=other"],
                   check=True, capture_output=True)
    done = subprocess.run([*[a if not a.startswith("--ssl-ca=") else f"--ssl-ca={other}" for a in base], "-e", "SELECT 1"],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "2026" in done.stderr


def test_concurrent_tls_logins_from_a_c_client_are_each_audited(dbkeep, my, tmp_path):
    """bench/login_load.c (OpenSSL, one shared context, eight threads) logs in over and over with
    verify-full: no login fails, each success is one allow event, and a wrong password is the
    engine's own 1045 and one deny event per attempt."""
    binary = tmp_path / "login_load"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(binary),
                    str(Path(__file__).resolve().parents[2] / "bench" / "login_load.c"), "-lssl", "-lcrypto", "-lpthread"],
                   check=True, timeout=120)
    ident = my["DBClusterIdentifier"]
    base = [str(binary), "--host=127.0.0.1", f"--port={my['Port']}", f"--ca={ca_path(dbkeep)}", "--verify-host=localhost",
            "--user=admin", "--database=appdb", "--threads=8"]

    def run(password: str, seconds: str) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
        before = {v: sum(e["verdict"] == v for e in audit_events(dbkeep, "gateway.login", ident)) for v in ("allow", "deny")}
        done = subprocess.run([*base, f"--seconds={seconds}"], env={**os.environ, "MYSQL_PWD": password},
                              capture_output=True, text=True, timeout=60, check=False)
        fields = dict(item.split("=") for item in done.stdout.split())
        after = {v: sum(e["verdict"] == v for e in audit_events(dbkeep, "gateway.login", ident)) for v in ("allow", "deny")}
        return done, {"logins": int(fields["logins"]), "failures": int(fields["failures"]),
                      "allowed": after["allow"] - before["allow"], "denied": after["deny"] - before["deny"]}

    done, counts = run(PASSWORD, "1.5")
    assert done.returncode == 0, done.stderr
    assert counts["logins"] > 0 and counts["failures"] == 0 and counts["denied"] == 0
    assert counts["allowed"] == counts["logins"]

    done, counts = run("not-the-password", "0.3")
    assert done.returncode == 1
    assert "ERROR 1045 (28000): Access denied for user 'admin'" in done.stderr
    assert counts["logins"] == 0 and counts["failures"] > 0
    assert counts["denied"] == counts["failures"] and counts["allowed"] == 0


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "cleartext"])
def test_logged_in_sessions_are_relayed_by_the_native_threads(dbkeep, my, tls):
    """After the login a session's bytes (and both legs' TLS) are the native relay's work: a
    50 MB result costs the relay threads CPU and the event loop next to none. A change of user,
    a refused one (rdsadmin) and COM_RESET_CONNECTION go back to Python, which checks and
    audits them as usual and then hands the session to the relay again. (Application accounts:
    the master's sessions are inspected in Python, test_grant_hygiene.py.)"""
    first, user = f"native_{'tls' if tls else 'clear'}_1", f"native_{'tls' if tls else 'clear'}"
    with connect(dbkeep, my) as admin:
        for name in (first, user):
            query(admin, f"CREATE USER '{name}'@'%' IDENTIFIED BY 'Native-Pass-1'")
            query(admin, f"GRANT SELECT ON *.* TO '{name}'@'%'")
    options = {"ssl_ca": ca_path(dbkeep), "ssl_verify_identity": True} if tls else {"ssl_disabled": True}
    mark = audit_mark(dbkeep)
    conn = mysql.connector.connect(host="localhost", port=my["Port"], user=first, password="Native-Pass-1",
                                   database="appdb", connection_timeout=10, use_pure=True, **options)
    cur = conn.cursor()

    def one(sql: str) -> list[tuple]:
        cur.execute(sql)
        return cur.fetchall()

    def stream() -> None:
        for _ in range(2):
            cur.execute(BIG_SQL)
            assert sum(len(value) for (value,) in cur) == BIG_BYTES

    def relayed() -> None:
        relay, loop = relay_and_loop_ticks(dbkeep.proc.pid, stream)
        assert relay >= 3 and relay > 2 * loop, (relay, loop)

    try:
        [(_, engine_cipher)] = one("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert bool(engine_cipher) == tls  # the engine leg runs TLS exactly when the client's does
        time.sleep(0.5)  # the account's facts (read-only: not inspected) arrive off the login path
        relayed()
        conn.cmd_change_user(username=user, password="Native-Pass-1", database="appdb")
        assert one("SELECT CURRENT_USER()") == [(f"{user}@%",)]
        time.sleep(0.5)
        relayed()
        with pytest.raises(mysql.connector.Error) as exc:
            conn.cmd_change_user(username="rdsadmin", password="whatever")
        assert exc.value.errno == 1045
        assert one("SELECT CURRENT_USER()") == [(f"{user}@%",)]  # refused at the gateway: unchanged
        one("SET @marker = 'kept'")
        conn.cmd_reset_connection()
        assert one("SELECT CURRENT_USER(), @marker") == [(f"{user}@%", None)]
        relayed()
        assert one("SELECT COUNT(*) FROM seq_1_to_1000") == [(1000,)]
    finally:
        cur.close()
        conn.close()
    events = [e for e in audit_events(dbkeep, "gateway.login", my["DBClusterIdentifier"], since=mark)
              if e.get("reason", "").startswith("change of user")]
    assert [(e["user"], e["verdict"]) for e in events] == [(user, "allow"), ("rdsadmin", "deny")]
    assert all(bool(e.get("tls_version")) == tls for e in events)


def test_load_data_local_infile(dbkeep, my, tmp_path):
    engine_allows_local_infile(dbkeep, my)
    data = tmp_path / "rows.csv"
    n = 60000
    data.write_text("".join(f"{i},{'v' * 60}{i}\n" for i in range(n)))  # about 4 MB
    assert data.stat().st_size > 4_000_000
    with connect(dbkeep, my, local_infile=True) as conn:
        query(conn, "CREATE TABLE loaded (id INT PRIMARY KEY, v VARCHAR(80))")
        with conn.cursor() as cur:
            cur.execute(f"LOAD DATA LOCAL INFILE '{data}' INTO TABLE loaded FIELDS TERMINATED BY ','")
            assert cur.rowcount == n
        assert query(conn, "SELECT COUNT(*), SUM(id), MAX(LENGTH(v)) FROM loaded") == [(n, n * (n - 1) // 2, 65)]
        assert query(conn, "SELECT 'after'") == [("after",)]


def test_a_slow_reader_is_not_buffered_and_half_close_delivers_the_answer(dbkeep, my):
    pid = dbkeep.proc.pid
    with connect(dbkeep, my, cursorclass=pymysql.cursors.SSCursor) as conn:
        before = rss_kib(pid)
        cur = conn.cursor()
        cur.execute(BIG_SQL)
        first = cur.fetchone()
        time.sleep(1.5)  # the engine is far ahead; the gateway must not hold its output
        grown = rss_kib(pid) - before
        total, rows = len(first[0]), 1
        for (value,) in cur:
            total, rows = total + len(value), rows + 1
        assert (rows, total) == (BIG_ROWS, BIG_BYTES)
        assert grown < 20 * 1024, f"the gateway grew by {grown} KiB while its client was not reading"
    # half-close (cleartext): the query, then EOF; the engine's answer still arrives
    conn = connect(dbkeep, my, tls=False)
    sock = conn._sock
    sock.sendall(packet(b"\x03SELECT 'answered after EOF'", 0))
    sock.shutdown(socket.SHUT_WR)
    assert b"answered after EOF" in read_until_closed(sock)
    sock.close()


# --- logins ------------------------------------------------------------------------------------


def test_rdsadmin_wrong_password_change_user_and_audit(dbkeep, my):
    ident = my["DBClusterIdentifier"]
    mark = audit_mark(dbkeep)
    assert refused(dbkeep, my, user="rdsadmin", password="whatever") == (
        1045, "Access denied for user 'rdsadmin'@'127.0.0.1' (using password: YES)")
    assert refused(dbkeep, my, user="'rdsadmin'", password="", tls=False) == (
        1045, "Access denied for user 'rdsadmin'@'127.0.0.1' (using password: NO)")
    errno, message = refused(dbkeep, my, password="Wrong-Pass-1")
    assert errno == 1045 and message.startswith("Access denied for user 'admin'@")  # the engine's own refusal
    with connect(dbkeep, my) as conn:
        query(conn, "CREATE USER 'other'@'%' IDENTIFIED BY 'Other-Pass-1'")
    conn = mysql.connector.connect(host="localhost", port=my["Port"], user="admin", password=PASSWORD,
                                   ssl_ca=ca_path(dbkeep), ssl_verify_identity=True, use_pure=True, connection_timeout=10)
    try:
        with pytest.raises(mysql.connector.Error) as exc:
            conn.cmd_change_user(username="rdsadmin", password="whatever")
        assert exc.value.errno == 1045 and "rdsadmin" in exc.value.msg
        cur = conn.cursor()
        cur.execute("SELECT CURRENT_USER()")
        assert cur.fetchall() == [("admin@%",)]  # refused at the gateway: the session is unchanged
        conn.cmd_change_user(username="other", password="Other-Pass-1")
        cur.execute("SELECT CURRENT_USER()")
        assert cur.fetchall() == [("other@%",)]
        with pytest.raises(mysql.connector.Error) as exc:
            conn.cmd_change_user(username="admin", password="Wrong-Pass-1")
        assert exc.value.errno == 1045
        conn.cmd_change_user(username="admin", password=PASSWORD)
        cur.execute("SET @marker = 'kept'")
        conn.cmd_reset_connection()  # COM_RESET_CONNECTION: user variables are gone
        cur.execute("SELECT CURRENT_USER(), @marker")
        assert cur.fetchall() == [("admin@%", None)]
        cur.close()
    finally:
        conn.close()
    events = audit_events(dbkeep, "gateway.login", ident, since=mark)
    denied = [e for e in events if e["verdict"] == "deny"]
    assert {e["reason"] for e in denied if e["user"] == "rdsadmin"} == {
        "rdsadmin is reserved", "change of user: rdsadmin is reserved"}
    assert any(e["user"] == "admin" and e["reason"].startswith("engine error 1045") for e in denied)
    assert any(e["user"] == "admin" and e["reason"].startswith("change of user: engine error 1045") for e in denied)
    allowed = [e for e in events if e["verdict"] == "allow"]
    assert any(e["user"] == "other" and e.get("reason") == "change of user" for e in allowed)
    assert all(e["source_ip"] == "127.0.0.1" and e["tls_version"] for e in allowed if e["user"] == "other")


def test_require_secure_transport_tls_version_and_ssl_cipher(dbkeep, my_policy):
    rds = dbkeep.client("rds")
    ident, group = my_policy["DBClusterIdentifier"], unique("mytls-params")
    with connect(dbkeep, my_policy, tls=False) as conn:  # before: cleartext is allowed
        assert query(conn, "SELECT 1") == [(1,)]
    rds.create_db_cluster_parameter_group(DBClusterParameterGroupName=group, DBParameterGroupFamily="aurora-mysql8.0",
                                          Description="gateway TLS policy")
    rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=group, Parameters=[
        {"ParameterName": "require_secure_transport", "ParameterValue": "ON", "ApplyMethod": "immediate"}])
    rds.modify_db_cluster(DBClusterIdentifier=ident, DBClusterParameterGroupName=group, ApplyImmediately=True)
    wait_cluster(dbkeep, ident)
    assert refused(dbkeep, my_policy, tls=False) == (3159, INSECURE)
    done = subprocess.run(["mariadb", "--protocol=tcp", "-h", "127.0.0.1", "-P", str(my_policy["Port"]), "-u", "admin",
                           f"-p{PASSWORD}", "--skip-ssl", "-e", "SELECT 1"], check=False, capture_output=True, text=True, timeout=30)
    assert done.stderr.strip() == f"ERROR 3159 (HY000): {INSECURE}"
    with connect(dbkeep, my_policy) as conn:
        assert query(conn, "SELECT 1") == [(1,)]
    assert last_login(dbkeep, my_policy, "deny")["reason"] == "require_secure_transport: cleartext connection"

    # static: tls_version and ssl_cipher apply after a reboot
    rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=group, Parameters=[
        {"ParameterName": "require_secure_transport", "ParameterValue": "OFF", "ApplyMethod": "immediate"},
        {"ParameterName": "tls_version", "ParameterValue": "TLSv1.2", "ApplyMethod": "pending-reboot"},
        {"ParameterName": "ssl_cipher", "ParameterValue": ONE_CIPHER, "ApplyMethod": "pending-reboot"}])
    with connect(dbkeep, my_policy, tls=tls_context(dbkeep, minimum=ssl.TLSVersion.TLSv1_3)) as conn:
        assert conn._sock.version() == "TLSv1.3"  # not before the reboot
    rds.reboot_db_instance(DBInstanceIdentifier=f"{ident}-1")
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=f"{ident}-1", WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    wait_cluster(dbkeep, ident)
    errno, message = refused(dbkeep, my_policy, tls=tls_context(dbkeep, minimum=ssl.TLSVersion.TLSv1_3))
    assert errno == 2003 and "SSL" in message  # the TLS handshake fails: no protocol version in common
    with connect(dbkeep, my_policy) as conn:
        assert conn._sock.version() == "TLSv1.2" and conn._sock.cipher()[0] == ONE_CIPHER
        assert query(conn, "SELECT 1") == [(1,)]
    assert last_login(dbkeep, my_policy)["tls_cipher"] == ONE_CIPHER
    # the TLS 1.3-only client's (the first TLS failure of a source is written at once, later ones
    # within --refusal-log-interval are counted into a summary)
    assert any(e["reason"] == "TLS handshake failed" for e in audit_events(dbkeep, "gateway.connection_refused", ident))
    with connect(dbkeep, my_policy, tls=False) as conn:  # require_secure_transport is OFF again
        assert query(conn, "SELECT 1") == [(1,)]


def test_require_ssl_account(dbkeep, my_policy):
    with connect(dbkeep, my_policy) as conn:
        query(conn, "CREATE USER 'tlsonly'@'%' IDENTIFIED BY 'Tls-Only-Pass-1'")
        query(conn, "ALTER USER 'tlsonly'@'%' REQUIRE SSL")
        query(conn, "GRANT SELECT ON appdb.* TO 'tlsonly'@'%'")
        assert query(conn, "SELECT @@have_ssl")[0][0] == "YES"  # the engine has its own certificate
    errno, _ = refused(dbkeep, my_policy, user="tlsonly", password="Tls-Only-Pass-1", tls=False)
    assert errno == 1045  # the engine refuses it: the gateway never gives a cleartext client a TLS engine leg
    with connect(dbkeep, my_policy, user="tlsonly", password="Tls-Only-Pass-1") as conn:
        assert query(conn, "SELECT CURRENT_USER()") == [("tlsonly@%",)]


# --- security groups and engine faults -------------------------------------------------------


def test_security_groups_close_before_any_byte_and_are_stateful(dbkeep, my_sg):
    ec2, rds = dbkeep.client("ec2"), dbkeep.client("rds")
    ident, port = my_sg["DBClusterIdentifier"], my_sg["Port"]
    default = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]["GroupId"]
    group = ec2.create_security_group(GroupName=unique("my-gw"), Description="no loopback")["GroupId"]
    rds.modify_db_cluster(DBClusterIdentifier=ident, VpcSecurityGroupIds=[group], ApplyImmediately=True)
    wait_cluster(dbkeep, ident)
    try:
        with socket.create_connection(("127.0.0.1", port)) as raw:
            assert read_until_closed(raw) == b""  # not even the greeting
        errno, _ = refused(dbkeep, my_sg)
        assert errno in (2013, 2003)  # lost connection
        permission = {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": "127.0.0.1/32"}]}
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[permission])
        with connect(dbkeep, my_sg) as kept:
            assert query(kept, "SELECT 1") == [(1,)]
            ec2.revoke_security_group_ingress(GroupId=group, IpPermissions=[permission])
            assert refused(dbkeep, my_sg)[0] in (2013, 2003)
            assert query(kept, "SELECT 2") == [(2,)]  # stateful: the open session goes on
        events = audit_events(dbkeep, "gateway.connection_refused", ident)
        assert len(events) >= 3 and all(e["reason"] == "security group" for e in events)
    finally:
        rds.modify_db_cluster(DBClusterIdentifier=ident, VpcSecurityGroupIds=[default], ApplyImmediately=True)
        wait_cluster(dbkeep, ident)
        ec2.delete_security_group(GroupId=group)
    with connect(dbkeep, my_sg) as conn:
        assert query(conn, "SELECT 1") == [(1,)]


def test_engine_killed_gives_an_error_and_recovers(dbkeep, my_sg):
    conn = connect(dbkeep, my_sg)
    pid_file = ClusterLayout(dbkeep.state_dir, my_sg["DbClusterResourceId"]).run / "mariadbd.pid"
    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
    started = time.monotonic()
    with pytest.raises(pymysql.OperationalError) as exc:
        for _ in range(100):
            query(conn, "SELECT 1")
            time.sleep(0.05)
    assert exc.value.args[0] in (2006, 2013) and time.monotonic() - started < 10
    conn.close()
    errors = set()
    while True:
        try:
            with connect(dbkeep, my_sg, connect_timeout=5) as again:
                assert query(again, "SELECT 1") == [(1,)]
                break
        except pymysql.OperationalError as exc:
            errors.add((exc.args[0], exc.args[1].split(":")[0]))
            assert time.monotonic() - started < 60, errors
            time.sleep(0.1)
    # meanwhile every refusal was the gateway's clear error, never a hang
    assert errors <= {(2013, "Lost connection to server at 'handshake")}, errors


# --- hostile clients ---------------------------------------------------------------------------


def test_garbage_never_harms_other_sessions(dbkeep, my):
    port = my["Port"]
    with connect(dbkeep, my) as bystander:
        probes = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",  # a 2 MB "login packet": refused at once
            bytes(range(256)) * 4,
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(300),  # a TLS ClientHello without SSLRequest
            login_packet("", ssl_request=True) + b"cleartext behind the SSLRequest",
            login_packet("admin")[:20],  # truncated, then EOF
            packet(b"\x00" * 10, 0),  # wrong sequence id
        ]
        for payload in probes:
            with socket.create_connection(("127.0.0.1", port)) as raw:
                raw.settimeout(10)
                greeting = raw.recv(4096)
                assert greeting[4] == 10  # protocol version 10: the engine's greeting
                raw.sendall(payload)
                if payload == login_packet("admin")[:20]:
                    raw.shutdown(socket.SHUT_WR)
                reply = read_until_closed(raw)
            assert reply == b"" or reply[4] == 0xFF, (payload[:16], reply[:80])  # an ERR packet or nothing
            if payload.startswith(b"GET"):
                assert b"Bad handshake" in reply
        assert query(bystander, "SELECT 'still here'") == [("still here",)]
    with connect(dbkeep, my) as conn:
        assert query(conn, "SELECT 1") == [(1,)]


def test_silent_clients_are_closed_after_the_handshake_timeout(dbkeep, my):
    for watch in my["watches"]:
        watch.join(HANDSHAKE_TIMEOUT + 25)
        assert not watch.is_alive()
        # one that says nothing after the greeting is closed after the first-byte timeout
        timeout = FIRST_BYTE_TIMEOUT if watch.hello is None else HANDSHAKE_TIMEOUT
        assert timeout - 0.5 <= watch.closed - watch.opened <= timeout + 5
        assert watch.received[4] == 10  # each got the greeting first
    assert b"mysql_native_password" in my["watches"][2].received[60:]  # and the last one its auth switch
    ident = my["DBClusterIdentifier"]
    # timeouts are counted per source (gateway/refusals.py): the first of each kind is an event at once
    refused = {e["reason"] for e in audit_events(dbkeep, "gateway.connection_refused", ident)}
    assert "first byte timeout" in refused
    reasons = {e["reason"] for e in audit_events(dbkeep, "gateway.login", ident) if e["verdict"] == "deny" and e["user"] == "admin"}
    # the engine's own connect_timeout (10 s as well) may end the stalled login first
    assert "handshake timeout" in refused or "the engine closed the connection" in reasons


# --- in process: guard, connection limit, unreachable engine ---------------------------------


def InProcessGateway(dbkeep, cluster: dict, *, socket_path: str | None = None, login_audit_delay: float = 0.0,  # noqa: N802
                     **limits):
    """An in-process gateway (tests/e2e/inprocess.py) whose guard refuses with MySQL's 1142."""
    from dbkeep.errors import DbError
    from dbkeep.gateway.listener import Limits
    from dbkeep.gateway.drivers.mysql import MySQLSession

    refusal = DbError("statement refused by the guard", mysql_errno=1142, sqlstate="42000")
    return inprocess.InProcessGateway(dbkeep, cluster, MySQLSession, refusal, engine_socket=socket_path, limits=Limits(**limits),
                                      login_audit_delay=login_audit_delay)


def test_the_engines_verdict_is_audited_before_the_client_learns_it(dbkeep, my):
    """A client that has its OK (or the engine's 1045) already finds the event in the audit log,
    even when writing the event is slow: the verdict is recorded before it is relayed."""
    gateway = InProcessGateway(dbkeep, my, login_audit_delay=0.5)
    try:
        def logins() -> list[tuple[str, str]]:
            events = map(json.loads, gateway.audit_path.read_text().splitlines())
            return [(e["verdict"], e.get("reason", "")) for e in events if e["event"] == "gateway.login"]

        for tls in (True, False):
            with connect(dbkeep, my, port=gateway.port, tls=tls) as conn:
                assert logins()[-1] == ("allow", "")
                assert query(conn, "SELECT 1") == [(1,)]
            assert refused(dbkeep, my, port=gateway.port, tls=tls, password="not-the-password")[0] == 1045
            verdict, reason = logins()[-1]
            assert verdict == "deny" and reason.startswith("engine error 1045")
        assert len(logins()) == 4
    finally:
        gateway.close()


def test_guard_refuses_statements_in_order(dbkeep, my):
    gateway = InProcessGateway(dbkeep, my)
    try:
        with connect(dbkeep, my, port=gateway.port) as conn:
            with pytest.raises(pymysql.MySQLError) as exc:
                query(conn, "SELECT 'forbidden'")
            assert exc.value.args == (1142, "statement refused by the guard")
            assert query(conn, "SELECT 1") == [(1,)]
            rows = query(conn, BIG_SQL)  # the hot path under a guard still carries big results
            assert len(rows) == BIG_ROWS
        conn = mysql.connector.connect(host="localhost", port=gateway.port, user="admin", password=PASSWORD, database="appdb",
                                       ssl_ca=ca_path(dbkeep), ssl_verify_identity=True, use_pure=True, connection_timeout=10)
        try:
            cur = conn.cursor(prepared=True)
            with pytest.raises(mysql.connector.Error) as exc:  # COM_STMT_PREPARE refused
                cur.execute("SELECT 'forbidden' WHERE 1 = %s", (1,))
            assert exc.value.errno == 1142
            cur.execute("SELECT %s + 1", (1,))
            assert cur.fetchall() == [(2,)]
            cur.close()
        finally:
            conn.close()
        judged = [sql for _, sql in gateway.judged]
        assert "SELECT 'forbidden'" in judged and "SELECT 1" in judged and BIG_SQL in judged
        assert any("forbidden" in sql and "?" in sql for sql in judged)  # the prepared form
        refusals = [json.loads(line) for line in gateway.audit_path.read_text().splitlines()
                    if '"gateway.statement_refused"' in line]
        assert len(refusals) == 2 and refusals[0]["user"] == "admin"
    finally:
        gateway.close()


def test_connection_limit_and_unreachable_engine(dbkeep, my, tmp_path):
    gateway = InProcessGateway(dbkeep, my, max_connections=2)
    try:
        first, second = connect(dbkeep, my, port=gateway.port), connect(dbkeep, my, port=gateway.port, tls=False)
        assert refused(dbkeep, my, port=gateway.port) == (1040, "Too many connections")
        first.close()
        time.sleep(0.2)
        with connect(dbkeep, my, port=gateway.port) as third:
            assert query(third, "SELECT 3") == [(3,)]
        second.close()
    finally:
        gateway.close()
    down = InProcessGateway(dbkeep, my, socket_path=str(tmp_path / "no-engine.sock"))
    try:
        started = time.monotonic()
        errno, message = refused(dbkeep, my, port=down.port)
        assert errno == 2013 and "is not available" in message and time.monotonic() - started < 5
    finally:
        down.close()


