"""End to end: IAM database logins to MariaDB through ``dbkeep up``'s gateway, with tokens from
boto3's ``generate_db_auth_token``, the ``aws`` CLI and a hand-signed spelling of another SDK,
and pymysql, mysql-connector-python and the ``mariadb`` CLI over verified TLS; every refusal is
MariaDB's 1045 to the client and its real reason in the audit log only. Also: the client's real
address reaches the engine (PROXY protocol)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid

import mysql.connector
import pymysql
import pytest

from clusters import create_cluster, socket_of, unique, wait_cluster
from dbkeep.engines.layout import ClusterLayout
from gateway_checks import assert_no_exception_escaped_a_session, audit_events, audit_mark
from iam_tokens import boto_token, cli_token, hand_token

PASSWORD = "Iam-Login-Pass-1"
REGION = "us-east-1"


class World:
    """One IAM-enabled cluster, its database accounts and the IAM principals that log in."""

    def __init__(self, dbkeep, cluster):
        self.dbkeep = dbkeep
        self.cluster = cluster
        self.ident = cluster["DBClusterIdentifier"]
        self.port = cluster["Port"]
        self.rid = cluster["DbClusterResourceId"]
        self.ca = str(dbkeep.state_dir / "ca.pem")
        self.account = dbkeep.client("sts").get_caller_identity()["Account"]
        self.iam = dbkeep.client("iam")
        self.client_ip = ""

    def arn(self, user: str) -> str:
        return f"arn:aws:rds-db:{REGION}:{self.account}:dbuser:{self.rid}/{user}"

    def principal(self, statements: list[dict]) -> tuple[str, str, str]:
        """A new IAM user with these policy statements: (its ARN, access key id, secret)."""
        name = f"dbu-{uuid.uuid4().hex[:8]}"
        arn = self.iam.create_user(UserName=name)["User"]["Arn"]
        self.policy(name, statements)
        key = self.iam.create_access_key(UserName=name)["AccessKey"]
        return arn, key["AccessKeyId"], key["SecretAccessKey"]

    def policy(self, name: str, statements: list[dict]) -> None:
        self.iam.put_user_policy(UserName=name, PolicyName="db", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": statements}))

    def allow(self, *users: str, **extra) -> dict:
        return {"Effect": "Allow", "Action": "rds-db:connect", "Resource": [self.arn(u) for u in users], **extra}

    def master(self):
        return pymysql.connect(host="localhost", port=self.port, user="admin", password=PASSWORD, autocommit=True,
                               ssl={"ca": self.ca, "check_hostname": True}, connect_timeout=10)

    def pymysql(self, user: str, password: str, **kw):
        args = dict(host="localhost", port=self.port, user=user, password=password, autocommit=True, connect_timeout=10,
                    ssl={"ca": self.ca, "check_hostname": True})
        args.update(kw)
        return pymysql.connect(**args)

    def denied_text(self, user: str) -> str:
        return f"Access denied for user '{user}'@'{self.client_ip}' (using password: YES)"


@pytest.fixture(scope="module")
def world(dbkeep):
    cluster = create_cluster(dbkeep, "aurora-mysql", unique("iam-login"), PASSWORD, EnableIAMDatabaseAuthentication=True)
    w = World(dbkeep, cluster)
    with w.master() as m, m.cursor() as cur:
        for user in ("jane_doe", "app_1", "app_2"):
            cur.execute(f"CREATE USER {user} IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'")
            cur.execute(f"GRANT SELECT ON appdb.* TO {user}")
        cur.execute("CREATE USER pw_user IDENTIFIED BY 'Pw-User-Pass-1'")
        cur.execute("SELECT USER()")
        w.client_ip = cur.fetchone()[0].split("@", 1)[1]  # the gateway names the real client to the engine
    assert w.client_ip in ("127.0.0.1", "::1")
    return w


def _query(conn, sql: str):
    cur = conn.cursor()
    cur.execute(sql)
    rows = [tuple(r) for r in cur.fetchall()]
    cur.close()
    return rows


def _iam_events(w: World, mark: int) -> list[dict]:
    return audit_events(w.dbkeep, "gateway.iam_login", w.ident, since=mark)


def _refused(w: World, user: str, token: str, reason: str | None, **kw) -> None:
    """The client sees MariaDB's own 1045; the audit log alone has the reason."""
    mark = audit_mark(w.dbkeep)
    with pytest.raises(pymysql.MySQLError) as exc:
        w.pymysql(user, token, **kw).close()
    assert exc.value.args == (1045, w.denied_text(user))
    events = _iam_events(w, mark)
    if reason is None:  # not an IAM account: no IAM event
        assert events == []
        return
    assert [e["verdict"] for e in events] == ["deny"] and events[0]["reason"] == reason, events
    assert events[0]["user"] == user and events[0]["source_ip"] == w.client_ip


# --- logins that work -----------------------------------------------------------------------------


def test_exact_arn_with_every_client_and_token_source(world):
    w = world
    arn, akid, secret = w.principal([w.allow("jane_doe")])

    mark = audit_mark(w.dbkeep)
    with w.pymysql("jane_doe", boto_token("localhost", w.port, "jane_doe", akid, secret)) as conn:
        user, current, thread = _query(conn, "SELECT USER(), CURRENT_USER(), CONNECTION_ID()")[0]
        assert (user, current) == (f"jane_doe@{w.client_ip}", "jane_doe@%")
        local_port = conn._sock.getsockname()[1]
        processlist = _query(conn, "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()")
    (event,) = _iam_events(w, mark)
    assert event["verdict"] == "allow" and event["reason"] == "allow"
    assert event["thread_id"] == thread  # the processlist's Id leads to the principal
    assert processlist == [(f"{w.client_ip}:{local_port}",)] and event["source_port"] == local_port
    assert event["principal"] == arn and event["access_key_id"] == akid and event["resource"] == w.arn("jane_doe")
    assert event["tls_version"].startswith("TLSv1.") and event["tls_cipher"]
    assert "X-Amz-Signature" not in (w.dbkeep.state_dir / "audit.log").read_text()  # a token is never logged
    # from the processlist's Id to the principal, with dbkeep's own audit search
    found = subprocess.run([sys.executable, "-m", "dbkeep", "audit", "--state-dir", str(w.dbkeep.state_dir), "--event",
                            "gateway.iam_login", "--principal", arn.rsplit("/", 1)[1], "--user", "jane_doe",
                            "--format", "json"], capture_output=True, text=True, timeout=60, check=True)
    assert [json.loads(line)["thread_id"] for line in found.stdout.splitlines()] == [thread]

    cli = cli_token("localhost", w.port, "jane_doe", akid, secret)
    conn = mysql.connector.connect(host="localhost", port=w.port, user="jane_doe", password=cli, ssl_ca=w.ca,
                                   ssl_verify_identity=True, connection_timeout=10)
    try:
        cur = conn.cursor()
        cur.execute("SELECT CURRENT_USER()")
        assert cur.fetchall() == [("jane_doe@%",)]
    finally:
        conn.close()

    done = subprocess.run(
        ["mariadb", "--protocol=tcp", "-h", "localhost", "-P", str(w.port), "-u", "jane_doe", f"--password={cli}",
         "--enable-cleartext-plugin", f"--ssl-ca={w.ca}", "--ssl-verify-server-cert", "--batch", "--skip-column-names",
         "--connect-timeout=10", "-e", "SELECT CURRENT_USER()"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # MariaDB's CLI accepts --enable-cleartext-plugin as an obsolete option (it always may) and says so
    assert done.stdout.strip().splitlines()[-1] == "jane_doe@%"

    # a client that starts with mysql_clear_password: the token is in its login packet
    conn = mysql.connector.connect(host="localhost", port=w.port, user="jane_doe", password=cli, ssl_ca=w.ca,
                                   ssl_verify_identity=True, auth_plugin="mysql_clear_password", connection_timeout=10)
    conn.close()

    # a token signed for the address the client connected to
    if w.client_ip == "127.0.0.1":
        w.pymysql("jane_doe", boto_token("127.0.0.1", w.port, "jane_doe", akid, secret), host="127.0.0.1").close()

    # another SDK's parameter order and percent-encoding
    for token in (hand_token("localhost", w.port, "jane_doe", akid, secret),
                  hand_token("localhost", w.port, "jane_doe", akid, secret, lower_hex_everything=True)):
        w.pymysql("jane_doe", token).close()
    assert_no_exception_escaped_a_session(w.dbkeep, "mysql")


def test_wildcard_arn(world):
    w = world
    _, akid, secret = world.principal([{"Effect": "Allow", "Action": "rds-db:connect",
                                        "Resource": f"arn:aws:rds-db:{REGION}:{w.account}:dbuser:{w.rid}/app_*"}])
    for user in ("app_1", "app_2"):
        with w.pymysql(user, boto_token("localhost", w.port, user, akid, secret)) as conn:
            assert _query(conn, "SELECT CURRENT_USER()") == [(f"{user}@%",)]
    _refused(w, "jane_doe", boto_token("localhost", w.port, "jane_doe", akid, secret), "implicit_deny")


def test_assumed_role_until_its_credentials_expire(world, move_clock):
    w = world
    role = f"dbrole-{uuid.uuid4().hex[:6]}"
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{w.account}:root"},
                                                     "Action": "sts:AssumeRole"}]}
    w.iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
    w.iam.put_role_policy(RoleName=role, PolicyName="db", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [w.allow("jane_doe")]}))
    creds = w.dbkeep.client("sts").assume_role(RoleArn=f"arn:aws:iam::{w.account}:role/{role}", RoleSessionName="s1",
                                               DurationSeconds=900)["Credentials"]
    token = boto_token("localhost", w.port, "jane_doe", creds["AccessKeyId"], creds["SecretAccessKey"],
                       session=creds["SessionToken"])
    mark = audit_mark(w.dbkeep)
    with w.pymysql("jane_doe", token) as conn:
        assert _query(conn, "SELECT CURRENT_USER()") == [("jane_doe@%",)]
    assert _iam_events(w, mark)[0]["principal"].endswith(f":assumed-role/{role}/s1")
    # the credentials expire after 900 s: a token dated then (fresh itself) no longer logs in
    move_clock(1000)
    later = hand_token("localhost", w.port, "jane_doe", creds["AccessKeyId"], creds["SecretAccessKey"],
                       session=creds["SessionToken"], when=dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1000))
    _refused(w, "jane_doe", later, "expired_session")


def test_change_user_to_an_iam_account(world):
    w = world
    _, akid, secret = w.principal([w.allow("jane_doe")])
    conn = mysql.connector.connect(host="localhost", port=w.port, user="pw_user", password="Pw-User-Pass-1", ssl_ca=w.ca,
                                   ssl_verify_identity=True, connection_timeout=10)
    try:
        cur = conn.cursor()
        cur.execute("SELECT CONNECTION_ID()")
        (thread,), = cur.fetchall()
        cur.close()
        mark = audit_mark(w.dbkeep)
        conn.cmd_change_user(username="jane_doe", password=boto_token("localhost", w.port, "jane_doe", akid, secret))
        cur = conn.cursor()
        cur.execute("SELECT CURRENT_USER(), CONNECTION_ID()")
        assert cur.fetchall() == [("jane_doe@%", thread)]
        (event,) = _iam_events(w, mark)
        assert event["verdict"] == "allow" and event["thread_id"] == thread
        with pytest.raises(mysql.connector.Error) as exc:
            conn.cmd_change_user(username="jane_doe", password="Not-A-Token-1")
        assert exc.value.errno == 1045 and exc.value.msg == w.denied_text("jane_doe")
        assert _iam_events(w, mark)[-1]["reason"] == "malformed_token"
    finally:
        conn.close()


# --- refusals: 1045 to the client, the reason in the audit log --------------------------------------


@pytest.fixture(scope="module")
def jane(world):
    """A principal allowed to log in as jane_doe only."""
    return world.principal([world.allow("jane_doe")])


@pytest.mark.parametrize("case, reason", [
    ("expired", "expired"),
    ("other_user", "wrong_user"),
    ("other_port", "wrong_port"),
    ("other_region", "wrong_region"),
    ("tampered", "bad_signature"),
    ("password_to_iam_account", "malformed_token"),
])
def test_refused_token(world, jane, case, reason):
    w = world
    _, akid, secret = jane
    token = {
        "expired": lambda: hand_token("localhost", w.port, "jane_doe", akid, secret,
                                      when=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=20)),
        "other_user": lambda: boto_token("localhost", w.port, "app_1", akid, secret),
        "other_port": lambda: boto_token("localhost", w.port + 1, "jane_doe", akid, secret),
        "other_region": lambda: boto_token("localhost", w.port, "jane_doe", akid, secret, region="us-west-2"),
        "tampered": lambda: (lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"))(
            boto_token("localhost", w.port, "jane_doe", akid, secret)),
        "password_to_iam_account": lambda: "Some-Password-1",
    }[case]()
    _refused(w, "jane_doe", token, reason)


def test_refused_by_policy(world):
    w = world
    _, akid, secret = w.principal([w.allow("app_1")])
    _refused(w, "jane_doe", boto_token("localhost", w.port, "jane_doe", akid, secret), "implicit_deny")
    _, akid, secret = w.principal([w.allow("*"), {"Effect": "Deny", "Action": "rds-db:connect", "Resource": w.arn("jane_doe")}])
    _refused(w, "jane_doe", boto_token("localhost", w.port, "jane_doe", akid, secret), "explicit_deny")
    w.pymysql("app_1", boto_token("localhost", w.port, "app_1", akid, secret)).close()  # the Allow still works elsewhere
    # aws:SourceIp (a documented extension) against the client's real address
    _, akid, secret = w.principal([w.allow("jane_doe", Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})])
    _refused(w, "jane_doe", boto_token("localhost", w.port, "jane_doe", akid, secret), "implicit_deny")
    _, akid, secret = w.principal([w.allow("jane_doe", Condition={"IpAddress": {"aws:SourceIp": [f"{w.client_ip}/32"
                                                                                                  if ":" not in w.client_ip else "::1/128"]}})])
    w.pymysql("jane_doe", boto_token("localhost", w.port, "jane_doe", akid, secret)).close()


def test_inactive_key_is_refused_at_once(world):
    w = world
    arn, akid, secret = w.principal([w.allow("jane_doe")])
    w.pymysql("jane_doe", boto_token("localhost", w.port, "jane_doe", akid, secret)).close()
    w.iam.update_access_key(UserName=arn.rsplit("/", 1)[1], AccessKeyId=akid, Status="Inactive")
    _refused(w, "jane_doe", boto_token("localhost", w.port, "jane_doe", akid, secret), "inactive_key")


def test_cleartext_connection_is_refused_before_the_token(world, jane):
    w = world
    _, akid, secret = jane
    _refused(w, "jane_doe", boto_token("localhost", w.port, "jane_doe", akid, secret), "cleartext", ssl=None,
             ssl_disabled=True)


def test_token_to_a_password_account(world, jane):
    w = world
    _, akid, secret = jane
    w.pymysql("pw_user", "Pw-User-Pass-1").close()
    _refused(w, "pw_user", boto_token("localhost", w.port, "pw_user", akid, secret), None)


def test_iam_auth_off_then_on_again(world, jane):
    w = world
    _, akid, secret = jane
    rds = w.dbkeep.client("rds")

    def toggle(on: bool) -> None:
        rds.modify_db_cluster(DBClusterIdentifier=w.ident, EnableIAMDatabaseAuthentication=on, ApplyImmediately=True)

    toggle(False)
    try:
        _refused(w, "jane_doe", boto_token("localhost", w.port, "jane_doe", akid, secret), "iam_auth_disabled")
    finally:
        toggle(True)
    deadline = time.monotonic() + 20
    while True:  # the engine loads the plugin again
        try:
            w.pymysql("jane_doe", boto_token("localhost", w.port, "jane_doe", akid, secret)).close()
            break
        except pymysql.MySQLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# --- the client's real address (PROXY protocol) ---------------------------------------------------


def test_host_restricted_accounts_match_the_real_address(world):
    w = world
    with w.master() as m, m.cursor() as cur:
        cur.execute(f"CREATE USER 'u_host'@'{w.client_ip}' IDENTIFIED BY 'Here-Pass-1'")
        cur.execute("CREATE USER 'u_host'@'10.9.9.9' IDENTIFIED BY 'There-Pass-2'")
        cur.execute("CREATE USER 'u_net'@'10.0.0.%' IDENTIFIED BY 'Net-Pass-3'")
    with w.pymysql("u_host", "Here-Pass-1") as conn:
        assert _query(conn, "SELECT CURRENT_USER()") == [(f"u_host@{w.client_ip}",)]
    for user, password in (("u_host", "There-Pass-2"), ("u_net", "Net-Pass-3")):
        with pytest.raises(pymysql.MySQLError) as exc:
            w.pymysql(user, password).close()
        assert exc.value.args == (1045, w.denied_text(user))
    # dbkeep's own headerless connections on the engine's socket are still 'localhost'
    secret = ClusterLayout(w.dbkeep.state_dir, w.rid).read_secret()
    with pymysql.connect(unix_socket=socket_of(w.dbkeep, w.cluster), user="rdsadmin", password=secret,
                         ssl_disabled=True) as conn:
        assert _query(conn, "SELECT USER()") == [("rdsadmin@localhost",)]
    # the master's '%' account, and a reset of its password through the API, keep working
    rds = w.dbkeep.client("rds")
    rds.modify_db_cluster(DBClusterIdentifier=w.ident, MasterUserPassword=PASSWORD, ApplyImmediately=True)
    wait_cluster(w.dbkeep, w.ident)
    with w.master() as m:
        assert _query(m, "SELECT CURRENT_USER()") == [("admin@%",)]


# --- accounts the engine marked as IAM ones: the next logins ask the client first -----------------


def test_an_account_changed_behind_the_gateways_back_still_logs_in_as_it_now_is(world, jane):
    """After a token login the gateway knows jane_twin as an IAM account and asks the client for
    its token before the engine sees the login (the login packet then carries the proof). When
    the account becomes a password one through a path the gateway does not read (rdsadmin on the
    engine's socket), a password login still works -- the engine decides on the login as the
    client sent it -- and so does a token login once it is an IAM account again."""
    from mysql_sessions import rdsadmin, run

    w = world
    arn, akid, secret = w.principal([w.allow("jane_twin")])
    with w.master() as m, m.cursor() as cur:
        cur.execute("CREATE USER jane_twin IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'")
        cur.execute("GRANT SELECT ON appdb.* TO jane_twin")
    for _ in range(3):  # the first login teaches the gateway; the next ones take the short path
        mark = audit_mark(w.dbkeep)
        with w.pymysql("jane_twin", boto_token("localhost", w.port, "jane_twin", akid, secret)) as conn:
            assert _query(conn, "SELECT CURRENT_USER()") == [("jane_twin@%",)]
            thread = _query(conn, "SELECT CONNECTION_ID()")[0][0]
        (event,) = _iam_events(w, mark)
        assert event["verdict"] == "allow" and event["principal"] == arn and event["thread_id"] == thread
    with rdsadmin(w.dbkeep, w.cluster) as admin:
        run(admin, "ALTER USER jane_twin IDENTIFIED BY 'Twin-Pass-1'")
    with w.pymysql("jane_twin", "Twin-Pass-1") as conn:
        assert _query(conn, "SELECT CURRENT_USER()") == [("jane_twin@%",)]
    _refused(w, "jane_twin", boto_token("localhost", w.port, "jane_twin", akid, secret), None)
    with rdsadmin(w.dbkeep, w.cluster) as admin:
        run(admin, "ALTER USER jane_twin IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'")
    for _ in range(2):
        w.pymysql("jane_twin", boto_token("localhost", w.port, "jane_twin", akid, secret)).close()
    _refused(w, "jane_twin", "Twin-Pass-1", "malformed_token")  # a password to an IAM account, known or not


def test_a_known_account_turned_into_a_password_one_with_a_token_in_hand(world):
    """The account changed behind the gateway's back and the client still sends a token: the
    proof goes to the engine, which asks for another plugin: refused, and forgotten."""
    from mysql_sessions import rdsadmin, run

    w = world
    _, akid, secret = w.principal([w.allow("jane_flip")])
    with w.master() as m, m.cursor() as cur:
        cur.execute("CREATE USER jane_flip IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'")
    w.pymysql("jane_flip", boto_token("localhost", w.port, "jane_flip", akid, secret)).close()
    with rdsadmin(w.dbkeep, w.cluster) as admin:
        run(admin, "ALTER USER jane_flip IDENTIFIED BY 'Flip-Pass-1'")
    _refused(w, "jane_flip", boto_token("localhost", w.port, "jane_flip", akid, secret), "not_an_iam_account")
    _refused(w, "jane_flip", boto_token("localhost", w.port, "jane_flip", akid, secret), None)  # forgotten
    w.pymysql("jane_flip", "Flip-Pass-1").close()
