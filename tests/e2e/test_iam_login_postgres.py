"""End to end, issue 11 (PostgreSQL): IAM database logins through the gateway of ``dbkeep up``.

One PostgreSQL cluster with IAM authentication on for the module; IAM users, keys and roles
made through dbkeep's own IAM API. Tokens come from boto3's ``generate_db_auth_token``, the
``aws rds generate-db-auth-token`` CLI and, for the other SDKs' spellings and dates, a SigV4
signer written here from the specification. Clients: psycopg, asyncpg and psql, verifying
dbkeep's CA (``sslmode=verify-full``). Every refusal is the engine's PAM text for the client;
the reason is in the ``gateway.iam_login`` audit event."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import ssl
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import asyncpg
import boto3
import psycopg
import pytest

from clusters import create_cluster, postgres, unique
from dbkeep.engines import iam
from dbkeep.engines.layout import ClusterLayout
from gateway_checks import assert_no_exception_escaped_a_session, audit_events, audit_mark

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="PostgreSQL IAM logins need dbkeep's PAM service (root)")

REGION = "us-east-1"
MASTER_PASSWORD = "Iam-Pg-Master-1"
PW_USER_PASSWORD = "Pw-User-Pass-1"
DATABASE = "appdb"


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def account(dbkeep) -> str:
    return dbkeep.client("sts").get_caller_identity()["Account"]


@pytest.fixture(scope="module")
def pg(dbkeep):
    """The cluster, with IAM accounts ``iam_user`` (direct member of rds_iam), ``iam_nested``
    (through ``iam_group``), ``other_user`` and a password account ``pw_user``."""
    cluster = create_cluster(dbkeep, "aurora-postgresql", unique("iam-pg"), MASTER_PASSWORD, database=DATABASE,
                             EnableIAMDatabaseAuthentication=True)
    with postgres(dbkeep, cluster, "master", MASTER_PASSWORD) as m:
        for sql in ("CREATE USER iam_user", "GRANT rds_iam TO iam_user", "CREATE ROLE iam_group NOLOGIN",
                    "GRANT rds_iam TO iam_group", "CREATE USER iam_nested", "GRANT iam_group TO iam_nested",
                    "CREATE USER other_user", "GRANT rds_iam TO other_user",
                    f"CREATE USER pw_user PASSWORD '{PW_USER_PASSWORD}'"):
            m.execute(sql)
    return cluster


class IamUser:
    """An IAM user with one inline policy and an access key."""

    def __init__(self, dbkeep, statements: list[dict] | None) -> None:
        self.iam = dbkeep.client("iam")
        self.name = f"db-{uuid.uuid4().hex[:8]}"
        self.iam.create_user(UserName=self.name)
        if statements:
            self.set_policy(statements)
        key = self.iam.create_access_key(UserName=self.name)["AccessKey"]
        self.key, self.secret, self.session_token = key["AccessKeyId"], key["SecretAccessKey"], None

    def set_policy(self, statements: list[dict]) -> None:
        self.iam.put_user_policy(UserName=self.name, PolicyName="db",
                                 PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}))


def dbuser_arn(account: str, cluster: dict, user: str) -> str:
    return f"arn:aws:rds-db:{REGION}:{account}:dbuser:{cluster['DbClusterResourceId']}/{user}"


def connect_allow(resource: str, **condition) -> dict:
    st = {"Effect": "Allow", "Action": "rds-db:connect", "Resource": resource}
    if condition:
        st["Condition"] = condition
    return st


@pytest.fixture(scope="module")
def exact(dbkeep, pg, account) -> IamUser:
    """Allowed ``iam_user`` and ``iam_nested`` by their exact ARNs."""
    return IamUser(dbkeep, [connect_allow([dbuser_arn(account, pg, "iam_user"), dbuser_arn(account, pg, "iam_nested")])])


@pytest.fixture(scope="module")
def wildcard(dbkeep, pg, account) -> IamUser:
    return IamUser(dbkeep, [connect_allow(f"arn:aws:rds-db:{REGION}:{account}:dbuser:{pg['DbClusterResourceId']}/*")])


# --- tokens and logins ------------------------------------------------------------------------

def boto_token(who: IamUser, pg: dict, user: str = "iam_user", *, port: int | None = None, region: str = REGION,
               host: str = "localhost") -> str:
    rds = boto3.session.Session().client("rds", region_name=region, aws_access_key_id=who.key,
                                         aws_secret_access_key=who.secret, aws_session_token=who.session_token)
    return rds.generate_db_auth_token(DBHostname=host, Port=port or pg["Port"], DBUsername=user, Region=region)


def cli_token(who: IamUser, pg: dict, user: str = "iam_user") -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=who.key, AWS_SECRET_ACCESS_KEY=who.secret, AWS_CONFIG_FILE="/dev/null",
               AWS_SHARED_CREDENTIALS_FILE="/dev/null")
    aws = Path(sys.executable).with_name("aws")
    out = subprocess.run([str(aws), "rds", "generate-db-auth-token", "--hostname", "localhost", "--port",
                          str(pg["Port"]), "--username", user, "--region", REGION],
                         env=env, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()


def signed_token(who: IamUser, pg: dict, user: str = "iam_user", *, when: dt.datetime | None = None,
                 order: list[str] | None = None, escape=None) -> str:
    """A token signed per SigV4 ("Create a signed AWS API request") with its own date and the
    query spelled as another SDK may: ``order`` of the parameters, ``escape`` of each part."""
    when = when or dt.datetime.now(dt.timezone.utc)
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{REGION}/rds-db/aws4_request"
    params = {"Action": "connect", "DBUser": user, "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
              "X-Amz-Credential": f"{who.key}/{scope}", "X-Amz-Date": amz_date, "X-Amz-Expires": "900",
              "X-Amz-SignedHeaders": "host"}
    if who.session_token:
        params["X-Amz-Security-Token"] = who.session_token
    host = f"localhost:{pg['Port']}"
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
    canonical = f"GET\n/\n{canonical_query}\nhost:{host}\n\nhost\n{hashlib.sha256(b'').hexdigest()}"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = ("AWS4" + who.secret).encode()
    for part in (amz_date[:8], REGION, "rds-db", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    params["X-Amz-Signature"] = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    items = list(params.items())
    if order:
        items.sort(key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    escape = escape or (lambda s: quote(s, safe=""))
    return f"{host}/?" + "&".join(f"{escape(k)}={escape(v)}" for k, v in items)


def ca(dbkeep) -> str:
    return str(dbkeep.state_dir / "ca.pem")


def login(dbkeep, pg: dict, user: str, password: str, sslmode: str = "verify-full") -> psycopg.Connection:
    return psycopg.connect(host="localhost", port=pg["Port"], user=user, password=password, dbname=DATABASE,
                           sslmode=sslmode, sslrootcert=ca(dbkeep), connect_timeout=20, autocommit=True)


def whoami(conn: psycopg.Connection) -> tuple[str, int]:
    return conn.execute("SELECT current_user, pg_backend_pid()").fetchone()


def pam_refused(dbkeep, pg: dict, user: str, password: str, **kw) -> str:
    """The login fails with the engine's PAM text; returns the reason of its audit event."""
    mark = audit_mark(dbkeep)
    with pytest.raises(psycopg.OperationalError) as exc:
        login(dbkeep, pg, user, password, **kw).close()
    assert f'FATAL:  PAM authentication failed for user "{user}"' in str(exc.value), str(exc.value)
    assert exc.value.sqlstate in (None, "28000")
    events = audit_events(dbkeep, "gateway.iam_login", pg["DBClusterIdentifier"], since=mark)
    assert len(events) == 1, (dbkeep.state_dir / "audit.log").read_text().splitlines()[mark:]
    [event] = events
    assert event["verdict"] == "deny" and event["user"] == user
    return event["reason"]


# --- allowed ----------------------------------------------------------------------------------

def test_boto3_token_with_psycopg_and_the_audit_trail(dbkeep, pg, exact, account):
    mark = audit_mark(dbkeep)
    with login(dbkeep, pg, "iam_user", boto_token(exact, pg)) as conn:
        user, pid = whoami(conn)
        assert user == "iam_user"
        [event] = audit_events(dbkeep, "gateway.iam_login", pg["DBClusterIdentifier"], since=mark)
    assert event["verdict"] == "allow" and event["reason"] == "allow"
    assert event["backend_pid"] == pid
    assert event["principal"] == f"arn:aws:iam::{account}:user/{exact.name}"
    assert event["access_key_id"] == exact.key
    assert event["user"] == "iam_user"
    assert event["resource"] == dbuser_arn(account, pg, "iam_user")
    assert event["source_ip"] in ("127.0.0.1", "::1") and isinstance(event["source_port"], int)
    assert event["tls_version"].startswith("TLS") and event["tls_cipher"]
    log_text = (dbkeep.state_dir / "audit.log").read_text()
    assert "X-Amz-Signature" not in log_text and exact.secret not in log_text
    [login_event] = audit_events(dbkeep, "gateway.login", pg["DBClusterIdentifier"], since=mark)
    assert login_event["verdict"] == "allow" and login_event["user"] == "iam_user" and login_event["method"] == "iam"
    # "which IAM principal ran this session": the operator's search by principal and user
    out = subprocess.run([sys.executable, "-m", "dbkeep", "audit", "--state-dir", str(dbkeep.state_dir), "--format",
                          "json", "--event", "gateway.iam_login", "--principal", exact.name, "--user", "iam_user"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert pid in [json.loads(line)["backend_pid"] for line in out.stdout.splitlines()]


def test_cli_token_with_psql(dbkeep, pg, exact):
    env = {**os.environ, "PGPASSWORD": cli_token(exact, pg)}
    out = subprocess.run(["psql", f"host=localhost port={pg['Port']} user=iam_user dbname={DATABASE} "
                          f"sslmode=verify-full sslrootcert={ca(dbkeep)}", "-Atc", "SELECT current_user"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "iam_user", out.stderr


def test_asyncpg_and_membership_through_another_role(dbkeep, pg, exact):
    context = ssl.create_default_context(cafile=ca(dbkeep))

    async def run() -> str:
        conn = await asyncpg.connect(host="localhost", port=pg["Port"], user="iam_nested", database=DATABASE,
                                     password=boto_token(exact, pg, "iam_nested"), ssl=context, timeout=20)
        try:
            return await conn.fetchval("SELECT current_user")
        finally:
            await conn.close()

    assert asyncio.run(run()) == "iam_nested"
    # a member of rds_iam, even through another role, is an IAM account: no password login
    assert pam_refused(dbkeep, pg, "iam_nested", "not-a-token") == "malformed_token"


def test_wildcard_arn(dbkeep, pg, wildcard):
    for user in ("iam_user", "other_user"):
        with login(dbkeep, pg, user, boto_token(wildcard, pg, user)) as conn:
            assert whoami(conn)[0] == user


def test_other_sdk_spellings(dbkeep, pg, exact):
    """Java-like order (DBUser first), .NET-like (credential first) with lower-case escapes."""
    java = signed_token(exact, pg, order=["DBUser", "Action", "X-Amz-Algorithm", "X-Amz-Date"])
    lower = signed_token(exact, pg, order=["X-Amz-Credential", "X-Amz-Algorithm", "X-Amz-Date", "Action"],
                         escape=lambda s: "".join(c if c.isalnum() or c in "-_.~" else "%" + c.encode().hex()
                                                  for c in s))
    assert "%2f" in lower
    for token in (java, lower):
        with login(dbkeep, pg, "iam_user", token) as conn:
            assert whoami(conn)[0] == "iam_user"


def test_assumed_role_until_its_credentials_expire(dbkeep, pg, account, move_clock):
    iam = dbkeep.client("iam")
    role = f"dbrole-{uuid.uuid4().hex[:6]}"
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                     "Principal": {"AWS": f"arn:aws:iam::{account}:root"}}]}
    arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=role, PolicyName="db", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [connect_allow(dbuser_arn(account, pg, "iam_user"))]}))
    assumer = IamUser(dbkeep, [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": arn}])
    sts = dbkeep.client("sts", assumer.key, assumer.secret)
    creds = sts.assume_role(RoleArn=arn, RoleSessionName="dbsession", DurationSeconds=900)["Credentials"]
    session = IamUser.__new__(IamUser)
    session.key, session.secret, session.session_token = (creds["AccessKeyId"], creds["SecretAccessKey"],
                                                          creds["SessionToken"])
    mark = audit_mark(dbkeep)
    with login(dbkeep, pg, "iam_user", boto_token(session, pg)) as conn:
        assert whoami(conn)[0] == "iam_user"
    [event] = audit_events(dbkeep, "gateway.iam_login", pg["DBClusterIdentifier"], since=mark)
    assert event["principal"] == f"arn:aws:sts::{account}:assumed-role/{role}/dbsession"
    # 15 minutes on: the credentials expired; a token dated then (so itself current) is refused
    move_clock(905)
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=905)
    assert pam_refused(dbkeep, pg, "iam_user", signed_token(session, pg, when=later)) == "expired_session"


# --- refused ----------------------------------------------------------------------------------

def test_expired_token(dbkeep, pg, exact):
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=960)
    assert pam_refused(dbkeep, pg, "iam_user", signed_token(exact, pg, when=old)) == "expired"


def test_token_for_another_user_port_region(dbkeep, pg, exact):
    assert pam_refused(dbkeep, pg, "iam_user", boto_token(exact, pg, "other_user")) == "wrong_user"
    assert pam_refused(dbkeep, pg, "iam_user", boto_token(exact, pg, port=pg["Port"] + 1)) == "wrong_port"
    assert pam_refused(dbkeep, pg, "iam_user", boto_token(exact, pg, region="eu-west-1")) == "wrong_region"
    assert pam_refused(dbkeep, pg, "iam_user", boto_token(exact, pg, host="db.elsewhere.test")) == "wrong_host"


def test_tampered_signature(dbkeep, pg, exact):
    token = boto_token(exact, pg)
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert pam_refused(dbkeep, pg, "iam_user", tampered) == "bad_signature"


def test_policy_that_does_not_allow_and_explicit_deny(dbkeep, pg, exact, account):
    # exact allows iam_user, not other_user
    assert pam_refused(dbkeep, pg, "other_user", boto_token(exact, pg, "other_user")) == "implicit_deny"
    denied = IamUser(dbkeep, [connect_allow("*"), {"Effect": "Deny", "Action": "rds-db:*",
                                                   "Resource": dbuser_arn(account, pg, "other_user")}])
    with login(dbkeep, pg, "iam_user", boto_token(denied, pg)) as conn:
        assert whoami(conn)[0] == "iam_user"
    assert pam_refused(dbkeep, pg, "other_user", boto_token(denied, pg, "other_user")) == "explicit_deny"


def test_source_ip_condition_and_policy_change_seen_at_once(dbkeep, pg, account):
    resource = dbuser_arn(account, pg, "iam_user")
    who = IamUser(dbkeep, [connect_allow(resource, IpAddress={"aws:SourceIp": "10.0.0.0/8"})])
    assert pam_refused(dbkeep, pg, "iam_user", boto_token(who, pg)) == "implicit_deny"
    who.set_policy([connect_allow(resource, IpAddress={"aws:SourceIp": ["127.0.0.0/8", "::1/128"]})])
    with login(dbkeep, pg, "iam_user", boto_token(who, pg)) as conn:  # the very next login
        assert whoami(conn)[0] == "iam_user"


def test_inactive_then_active_key(dbkeep, pg, account):
    who = IamUser(dbkeep, [connect_allow(dbuser_arn(account, pg, "iam_user"))])
    token = boto_token(who, pg)
    login(dbkeep, pg, "iam_user", token).close()
    who.iam.update_access_key(UserName=who.name, AccessKeyId=who.key, Status="Inactive")
    assert pam_refused(dbkeep, pg, "iam_user", token) == "inactive_key"
    who.iam.update_access_key(UserName=who.name, AccessKeyId=who.key, Status="Active")
    login(dbkeep, pg, "iam_user", token).close()
    who.iam.delete_access_key(UserName=who.name, AccessKeyId=who.key)
    assert pam_refused(dbkeep, pg, "iam_user", token) == "unknown_key"


def test_cleartext_connection_never_sends_its_token(dbkeep, pg, exact):
    assert pam_refused(dbkeep, pg, "iam_user", boto_token(exact, pg), sslmode="disable") == "cleartext"


def test_password_login_to_an_iam_account(dbkeep, pg):
    assert pam_refused(dbkeep, pg, "iam_user", PW_USER_PASSWORD) == "malformed_token"


def test_token_to_a_password_account(dbkeep, pg, wildcard):
    mark = audit_mark(dbkeep)
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "pw_user"'):
        login(dbkeep, pg, "pw_user", boto_token(wildcard, pg, "pw_user"))
    assert not audit_events(dbkeep, "gateway.iam_login", pg["DBClusterIdentifier"], since=mark)
    events = [e for e in audit_events(dbkeep, "gateway.login", pg["DBClusterIdentifier"], since=mark)
              if e["user"] == "pw_user"]
    assert len(events) == 1, events
    assert events[0]["verdict"] == "deny" and "28P01" in events[0]["reason"]
    login(dbkeep, pg, "pw_user", PW_USER_PASSWORD).close()


def test_revoke_and_grant_rds_iam_take_effect_at_once(dbkeep, pg, wildcard):
    with postgres(dbkeep, pg, "master", MASTER_PASSWORD) as m:
        m.execute("CREATE USER flip_user PASSWORD 'Flip-Pass-1'")
        m.execute("GRANT rds_iam TO flip_user")
        login(dbkeep, pg, "flip_user", boto_token(wildcard, pg, "flip_user")).close()
        assert pam_refused(dbkeep, pg, "flip_user", "Flip-Pass-1") == "malformed_token"
        m.execute("REVOKE rds_iam FROM flip_user")
        login(dbkeep, pg, "flip_user", "Flip-Pass-1").close()
        with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "flip_user"'):
            login(dbkeep, pg, "flip_user", boto_token(wildcard, pg, "flip_user"))


def test_iam_authentication_off_and_on(dbkeep, pg, exact):
    rds = dbkeep.client("rds")
    ident = pg["DBClusterIdentifier"]
    token = boto_token(exact, pg)
    rds.modify_db_cluster(DBClusterIdentifier=ident, EnableIAMDatabaseAuthentication=False, ApplyImmediately=True)
    try:
        assert pam_refused(dbkeep, pg, "iam_user", token) == "iam_auth_disabled"
    finally:
        rds.modify_db_cluster(DBClusterIdentifier=ident, EnableIAMDatabaseAuthentication=True, ApplyImmediately=True)
    with login(dbkeep, pg, "iam_user", token) as conn:
        assert whoami(conn)[0] == "iam_user"


def test_engine_refusing_the_proof_is_audited(dbkeep, pg, exact):
    """The gateway allows, the engine refuses (its PAM service says off, the catalog on): the
    client gets the engine's own FATAL, the audit says engine_refused_proof."""
    service = iam.PAM_DIR / iam.pam_service_name(ClusterLayout(dbkeep.state_dir, pg["DbClusterResourceId"]))
    text = service.read_text()
    service.write_text(re.sub(rf"{re.escape(iam.PAM_MODULE)} \S+", f"{iam.PAM_MODULE} off", text, count=1))
    try:
        assert f"{iam.PAM_MODULE} off" in service.read_text()
        assert pam_refused(dbkeep, pg, "iam_user", boto_token(exact, pg)) == "engine_refused_proof"
    finally:
        service.write_text(text)
    login(dbkeep, pg, "iam_user", boto_token(exact, pg)).close()


def test_no_proof_without_the_nonce_directory(dbkeep, pg, exact):
    nonces = iam.iam_dir(ClusterLayout(dbkeep.state_dir, pg["DbClusterResourceId"])) / "nonces"
    nonces.rename(nonces.with_name("nonces.away"))
    try:
        assert pam_refused(dbkeep, pg, "iam_user", boto_token(exact, pg)) == "proof_unavailable"
    finally:
        nonces.with_name("nonces.away").rename(nonces)
    login(dbkeep, pg, "iam_user", boto_token(exact, pg)).close()


def test_no_exception_escaped(dbkeep, pg):
    assert_no_exception_escaped_a_session(dbkeep, "postgres")
