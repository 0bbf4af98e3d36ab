"""IAM database authentication, engine side: the engine itself decides who is an IAM account and
accepts only dbkeep's per-login proof for it (engines/iam.py, identity/engine_proof.py).

A test client stands in for the gateway: it speaks to the engine's socket, reads the nonce the
MariaDB plugin sends in its AuthSwitchRequest (or mints a PostgreSQL one) and answers with the
proof computed from the cluster's key."""

from __future__ import annotations

import os
import ssl
import stat
from dataclasses import replace

import psycopg
import pymysql
import pytest

from dbkeep.engines import iam
from dbkeep.identity import engine_proof
from engine_clients import closing_all, my_connect, my_error, my_rows, pg_connect, pg_rows
from iam_login import mysql_iam_login

pytestmark = pytest.mark.engines


def _set_iam(cluster, on: bool) -> None:
    cluster.spec = replace(cluster.spec, iam_auth=on)
    cluster.run(cluster.engines.driver.set_iam_auth(cluster.spec))


def _key(cluster) -> bytes:
    return engine_proof.ProofKeys().key(iam.iam_dir(cluster.layout))


@pytest.fixture
def my_iam(mysql_cluster):
    _set_iam(mysql_cluster, True)
    try:
        yield mysql_cluster
    finally:
        _set_iam(mysql_cluster, False)
        with closing_all(my_connect(mysql_cluster)) as (m,):
            for user in ("jane_doe", "iam_two"):
                my_rows(m, f"DROP USER IF EXISTS '{user}'@'%'")


def _my_iam_login(cluster, user: str, answer) -> pymysql.Connection:
    return mysql_iam_login(cluster.socket, user, answer)


def test_mysql_proof_key_file(my_iam):
    key = iam.iam_dir(my_iam.layout) / engine_proof.KEY_NAME
    st = os.stat(key)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_uid == my_iam.user.uid
    assert stat.S_IMODE(os.stat(key.parent).st_mode) == 0o700
    assert (my_iam.layout.root / "plugins" / iam.PLUGIN_FILE).is_file()


def test_mysql_iam_account_and_proof(my_iam):
    with closing_all(my_connect(my_iam)) as (m,):
        my_rows(m, "CREATE USER jane_doe IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'")
        my_rows(m, "GRANT SELECT ON appdb.* TO jane_doe")
        assert my_rows(m, "SELECT plugin, authentication_string FROM mysql.user WHERE User = 'jane_doe'") == [
            ("AWSAuthenticationPlugin", "RDS")]
        (create,), = my_rows(m, "SHOW CREATE USER jane_doe")
        assert "IDENTIFIED VIA AWSAuthenticationPlugin USING 'RDS'" in create
    key = _key(my_iam)
    conn = _my_iam_login(my_iam, "jane_doe", lambda thread: engine_proof.mysql_proof(key, thread, "jane_doe"))
    with closing_all(conn) as (c,):
        assert my_rows(c, "SELECT CURRENT_USER()") == [("jane_doe@%",)]
        assert conn.seen == [b""]  # the plugin's switch carries no data: the proof is bound to the connection id
        assert my_rows(c, "SELECT CONNECTION_ID()") == [(conn.server_thread_id[0],)]
    with closing_all(my_connect(my_iam)) as (m,):
        # an IAM account has no password: neither a password for the plugin nor SET PASSWORD
        assert my_error(my_rows, m, "CREATE USER iam_pw IDENTIFIED WITH AWSAuthenticationPlugin BY 'x'")[0] != 0
        assert my_rows(m, "SELECT COUNT(*) FROM mysql.user WHERE User = 'iam_pw'") == [(0,)]
        assert my_error(my_rows, m, "SET PASSWORD FOR jane_doe = PASSWORD('Some-pass-1')") == (
            1699, "SET PASSWORD is not applicable for users authenticating via AWSAuthenticationPlugin plugin")
        assert my_rows(m, "SELECT plugin FROM mysql.user WHERE User = 'jane_doe'") == [("AWSAuthenticationPlugin",)]
    # the client's AuthSwitchRequest names mysql_clear_password: a password is simply refused
    assert my_error(lambda: my_connect(my_iam, user="jane_doe", password="anything").close())[0] == 1045
    assert my_error(lambda: my_connect(my_iam, user="jane_doe", password="").close())[0] == 1045


def test_mysql_replayed_or_wrong_proof_refused(my_iam):
    with closing_all(my_connect(my_iam)) as (m,):
        my_rows(m, "CREATE USER IF NOT EXISTS iam_two IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'")
    key = _key(my_iam)
    proofs = []

    def first(thread):
        proofs.append(engine_proof.mysql_proof(key, thread, "iam_two"))
        return proofs[-1]

    _my_iam_login(my_iam, "iam_two", first).close()
    # the same proof on another connection (another id)
    code, message = my_error(_my_iam_login, my_iam, "iam_two", lambda thread: proofs[0])
    assert code == 1045 and "using password: YES" in message
    # a proof for another user, a proof under another key, a token
    assert my_error(_my_iam_login, my_iam, "iam_two",
                    lambda n: engine_proof.mysql_proof(key, n, "jane_doe"))[0] == 1045
    assert my_error(_my_iam_login, my_iam, "iam_two",
                    lambda n: engine_proof.mysql_proof(os.urandom(32), n, "iam_two"))[0] == 1045
    assert my_error(_my_iam_login, my_iam, "iam_two",
                    lambda n: b"host:3306/?Action=connect&DBUser=iam_two&X-Amz-Signature=00\0")[0] == 1045


def test_mysql_alter_user_to_iam_and_back(my_iam):
    with closing_all(my_connect(my_iam)) as (m,):
        my_rows(m, "CREATE USER IF NOT EXISTS iam_two IDENTIFIED BY 'Pw-iam-two-1'")
        my_connect(my_iam, user="iam_two", password="Pw-iam-two-1").close()
        my_rows(m, "ALTER USER iam_two IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'")
        assert my_error(lambda: my_connect(my_iam, user="iam_two", password="Pw-iam-two-1").close())[0] == 1045
        key = _key(my_iam)
        _my_iam_login(my_iam, "iam_two", lambda n: engine_proof.mysql_proof(key, n, "iam_two")).close()
        my_rows(m, "DROP USER iam_two")


def test_mysql_iam_account_is_an_ordinary_account(my_iam):
    """REQUIRE SSL, resource limits, GRANT/REVOKE and DROP USER apply as to any account."""
    key = _key(my_iam)

    def login(**kw):
        return mysql_iam_login(my_iam.socket, "iam_two", lambda n: engine_proof.mysql_proof(key, n, "iam_two"), **kw)

    with closing_all(my_connect(my_iam)) as (m,):
        my_rows(m, "CREATE USER iam_two IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS' REQUIRE SSL "
                   "WITH MAX_USER_CONNECTIONS 1")
        (create,), = my_rows(m, "SHOW CREATE USER iam_two")
        assert "REQUIRE SSL" in create and "MAX_USER_CONNECTIONS 1" in create
        assert my_error(login)[0] == 1045  # no TLS on this leg
        tls = {"ssl": {"check_hostname": False, "verify_mode": ssl.CERT_NONE}, "ssl_disabled": False}
        with closing_all(login(**tls)) as (c,):
            assert my_error(login, **tls)[0] == 1226  # max_user_connections
            assert my_error(my_rows, c, "SELECT * FROM appdb.nothing_here")[0] in (1142, 1146)
            my_rows(m, "GRANT SELECT ON appdb.* TO iam_two")
        with closing_all(login(**tls)) as (c,):
            assert my_rows(c, "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'appdb'") == [(1,)]
        my_rows(m, "REVOKE SELECT ON appdb.* FROM iam_two")
        my_rows(m, "DROP USER iam_two")
        assert my_error(login, **tls)[0] == 1045


def test_mysql_without_the_plugin_offered(my_iam):
    with closing_all(my_connect(my_iam)) as (m,):
        my_rows(m, "CREATE USER IF NOT EXISTS jane_doe IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'")
    _set_iam(my_iam, False)
    assert not (my_iam.layout.root / "plugins" / iam.PLUGIN_FILE).exists()
    with closing_all(my_connect(my_iam)) as (m,):
        code, message = my_error(my_rows, m, "CREATE USER iam_two IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'")
        assert (code, message) == (1524, "Plugin 'AWSAuthenticationPlugin' is not loaded")
        # the master cannot load it either: it is not in the engine's plugin_dir
        assert my_error(my_rows, m, f"INSTALL SONAME '{iam.PLUGIN_SONAME}'")[0] in (1126, 1127)
        # the account stays mapped
        assert my_rows(m, "SELECT plugin FROM mysql.user WHERE User = 'jane_doe'") == [("AWSAuthenticationPlugin",)]
    key = _key(my_iam)
    assert my_error(_my_iam_login, my_iam, "jane_doe", lambda n: engine_proof.mysql_proof(key, n, "jane_doe"))[0] \
        in (1045, 1524)
    _set_iam(my_iam, True)  # works again
    _my_iam_login(my_iam, "jane_doe", lambda n: engine_proof.mysql_proof(key, n, "jane_doe")).close()


def test_mysql_iam_state_survives_a_restart(my_iam):
    driver = my_iam.engines.driver
    old_key = _key(my_iam)
    my_iam.run(driver.stop(my_iam.spec.cluster_id))
    my_iam.run(driver.start(my_iam.spec))
    with closing_all(my_connect(my_iam)) as (m,):
        my_rows(m, "CREATE USER IF NOT EXISTS jane_doe IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'")
        assert my_rows(m, "SELECT COUNT(*) FROM mysql.plugin WHERE name = 'AWSAuthenticationPlugin'") == [(0,)]
    key = _key(my_iam)
    assert key != old_key  # a new key at every start: connection ids start again
    assert my_error(_my_iam_login, my_iam, "jane_doe", lambda n: engine_proof.mysql_proof(old_key, n, "jane_doe"))[0] \
        == 1045
    _my_iam_login(my_iam, "jane_doe", lambda n: engine_proof.mysql_proof(key, n, "jane_doe")).close()
    # started with IAM off (the catalog says so): not loaded
    my_iam.run(driver.stop(my_iam.spec.cluster_id))
    my_iam.spec = replace(my_iam.spec, iam_auth=False)
    my_iam.run(driver.start(my_iam.spec))
    with closing_all(my_connect(my_iam)) as (m,):
        assert my_error(my_rows, m, "CREATE USER iam_two IDENTIFIED WITH AWSAuthenticationPlugin AS 'RDS'")[0] == 1524


# --- PostgreSQL --------------------------------------------------------------------------------

pam_only = pytest.mark.skipif(os.geteuid() != 0, reason="the PAM service needs root")


@pytest.fixture
def pg_iam(pg_cluster):
    _set_iam(pg_cluster, True)
    with closing_all(pg_connect(pg_cluster)) as (m,):
        for stmt in ("CREATE ROLE db_userx LOGIN PASSWORD 'Userx-pass-1'", "GRANT rds_iam TO db_userx",
                     "CREATE ROLE iam_group NOLOGIN", "GRANT rds_iam TO iam_group",
                     "CREATE ROLE db_nested LOGIN PASSWORD 'Nested-pass-1'", "GRANT iam_group TO db_nested",
                     "CREATE ROLE db_plain LOGIN PASSWORD 'Plain-pass-1'"):
            pg_rows(m, stmt)
    try:
        yield pg_cluster
    finally:
        _set_iam(pg_cluster, False)
        with closing_all(pg_connect(pg_cluster)) as (m,):
            for role in ("db_userx", "db_nested", "db_plain", "iam_group"):
                pg_rows(m, f"DROP ROLE IF EXISTS {role}")


def _pg_proof(cluster, user: str) -> str:
    d = iam.iam_dir(cluster.layout)
    return engine_proof.pg_proof(_key(cluster), engine_proof.mint_pg_nonce(d), user)


def _pg_login_error(cluster, user: str, password: str) -> psycopg.Error:
    try:
        pg_connect(cluster, user=user, password=password).close()
    except psycopg.Error as exc:
        return exc
    raise AssertionError("login succeeded")


def _pam_failed(exc: psycopg.Error, user: str) -> bool:
    # libpq gives no SQLSTATE for a failed connection; the server's is 28000
    return f'FATAL:  PAM authentication failed for user "{user}"' in str(exc)


@pam_only
def test_pg_files(pg_iam):
    d = iam.iam_dir(pg_iam.layout)
    for path, mode in ((d, 0o700), (d / engine_proof.KEY_NAME, 0o600), (d / engine_proof.NONCES_DIR, 0o700)):
        st = os.stat(path)
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (mode, pg_iam.user.uid), path
    service = iam.PAM_DIR / iam.pam_service_name(pg_iam.layout)
    assert f"{d / iam.PAM_MODULE} {d}" in service.read_text()
    assert stat.S_IMODE(os.stat(d / iam.PAM_MODULE).st_mode) == 0o644
    hba = (pg_iam.layout.conf / "pg_hba.conf").read_text()
    assert f"+rds_iam  pam pamservice={service.name}" in hba


@pam_only
@pytest.mark.parametrize("user", ["db_userx", "db_nested"])
def test_pg_rds_iam_member_needs_the_proof(pg_iam, user):
    with closing_all(pg_connect(pg_iam, user=user, password=_pg_proof(pg_iam, user))) as (c,):
        assert pg_rows(c, "SELECT current_user") == [(user,)]
    # its password, a proof for someone else, a forged or replayed proof: PAM failed
    password = {"db_userx": "Userx-pass-1", "db_nested": "Nested-pass-1"}[user]
    assert _pam_failed(_pg_login_error(pg_iam, user, password), user)
    assert _pam_failed(_pg_login_error(pg_iam, user, _pg_proof(pg_iam, "db_plain")), user)
    d = iam.iam_dir(pg_iam.layout)
    nonce = engine_proof.mint_pg_nonce(d)
    assert _pam_failed(_pg_login_error(pg_iam, user, engine_proof.pg_proof(os.urandom(32), nonce, user)), user)
    proof = _pg_proof(pg_iam, user)
    pg_connect(pg_iam, user=user, password=proof).close()
    assert _pam_failed(_pg_login_error(pg_iam, user, proof), user)
    # a proof whose nonce was never minted
    fake = engine_proof.pg_proof(_key(pg_iam), nonce[:16] + "0" * 32, user)
    assert _pam_failed(_pg_login_error(pg_iam, user, fake), user)


@pam_only
def test_pg_engine_asks_for_cleartext(pg_iam):
    """libpq reports which method the server asked for when it is refused one."""
    assert _pam_failed(_pg_login_error(pg_iam, "db_userx", "x"), "db_userx")
    try:
        pg_connect(pg_iam, user="db_userx", password="x", require_auth="scram-sha-256").close()
    except psycopg.Error as err:
        assert "server requested a cleartext password" in str(err)
    else:
        raise AssertionError("login succeeded")


def test_pg_non_member_keeps_scram(pg_iam):
    with closing_all(pg_connect(pg_iam, user="db_plain", password="Plain-pass-1", require_auth="scram-sha-256")) as (c,):
        assert pg_rows(c, "SELECT current_user") == [("db_plain",)]
    assert "password authentication failed" in str(_pg_login_error(pg_iam, "db_plain", "wrong"))


@pam_only
def test_pg_revoke_and_grant_apply_at_once(pg_iam):
    with closing_all(pg_connect(pg_iam)) as (m,):
        pg_rows(m, "REVOKE rds_iam FROM db_userx")
        with closing_all(pg_connect(pg_iam, user="db_userx", password="Userx-pass-1")):
            pass
        pg_rows(m, "GRANT rds_iam TO db_userx")
    assert _pam_failed(_pg_login_error(pg_iam, "db_userx", "Userx-pass-1"), "db_userx")
    pg_connect(pg_iam, user="db_userx", password=_pg_proof(pg_iam, "db_userx")).close()


@pam_only
def test_pg_disabled_refuses_every_iam_login(pg_iam):
    _set_iam(pg_iam, False)
    assert f"{iam.PAM_MODULE} off" in (iam.PAM_DIR / iam.pam_service_name(pg_iam.layout)).read_text()
    assert _pam_failed(_pg_login_error(pg_iam, "db_userx", _pg_proof(pg_iam, "db_userx")), "db_userx")
    assert _pam_failed(_pg_login_error(pg_iam, "db_userx", "Userx-pass-1"), "db_userx")
    _set_iam(pg_iam, True)
    pg_connect(pg_iam, user="db_userx", password=_pg_proof(pg_iam, "db_userx")).close()


def test_pg_nonce_sweep(tmp_path):
    (tmp_path / engine_proof.NONCES_DIR).mkdir()
    old = engine_proof.mint_pg_nonce(tmp_path, now=1000)
    new = engine_proof.mint_pg_nonce(tmp_path, now=2000)
    assert engine_proof.sweep_pg_nonces(tmp_path, now=2010) == 1
    assert os.listdir(tmp_path / engine_proof.NONCES_DIR) == [new]
    assert old != new
