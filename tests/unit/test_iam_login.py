"""The gateway's IAM login facade (gateway/iam.py), the proof formats (identity/engine_proof.py)
against the native checker, and the engine-side file helpers (engines/iam.py)."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import subprocess
from pathlib import Path

import boto3
import pytest

from dbkeep.catalog.models import User
from dbkeep.catalog.secrets import SecretBox
from dbkeep.catalog.store import Catalog
from dbkeep.clock import FakeClock
from dbkeep.engines import iam as engine_iam
from dbkeep.engines.layout import ClusterLayout
from dbkeep.gateway.iam import IamLogin
from dbkeep.gateway.target import ClusterTarget
from dbkeep.identity import engine_proof
from dbkeep.identity.dbauth import IAM_DISABLED, TokenVerifier

RID = "cluster-UNITIAMLOGIN0000000000000"
CHECKER = Path(engine_iam.NATIVE) / engine_iam.CHECKER


def _target(iam_auth: bool = True) -> ClusterTarget:
    return ClusterTarget(identifier="c1", resource_id=RID, engine="mysql", port=3306, status="available",
                         socket_path="/nonexistent", hostname="db.example.test", master_username="admin", tls=None,
                         require_tls=False, iam_auth=iam_auth, rules=())


@pytest.fixture
def login(tmp_path):
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'c.db'}", SecretBox.load_or_create(tmp_path / "k"))
    now = dt.datetime.now(dt.timezone.utc)
    catalog.add_user(User("jane", "AIDAJANEEXAMPLE000001", "/", now))
    catalog.add_access_key(None, access_key_id="AKIAUNITIAMLOGIN0001", secret="s" * 40, owner_kind="user",
                           owner_name="jane", created=now)
    catalog.put_inline_policy("user", "jane", "db", '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
                              '"Action":"rds-db:connect","Resource":"*"}]}')
    layout = ClusterLayout(tmp_path / "state", RID)
    layout.ensure_root()
    d = layout.root / "iam"
    (d / engine_proof.NONCES_DIR).mkdir(parents=True)
    (d / engine_proof.KEY_NAME).write_text(engine_proof.new_key_text())
    verifier = TokenVerifier(catalog, FakeClock(now), "123456789012", "us-east-1")
    yield IamLogin(verifier, tmp_path / "state")
    verifier.close()
    catalog.close()


def _token(host: str, user: str = "jane_doe") -> str:
    client = boto3.client("rds", region_name="us-east-1", aws_access_key_id="AKIAUNITIAMLOGIN0001",
                          aws_secret_access_key="s" * 40)
    return client.generate_db_auth_token(DBHostname=host, Port=3306, DBUsername=user)


def test_verify_through_the_facade(login):
    t = _target()
    assert login.verify(t, user="jane_doe", token=_token("db.example.test"), client_ip="10.0.0.1", local_host="10.0.0.2").allowed
    assert login.verify(t, user="jane_doe", token=_token("10.0.0.2"), client_ip="10.0.0.1", local_host="10.0.0.2").allowed
    assert login.verify(t, user="jane_doe", token=_token("localhost"), client_ip="127.0.0.1", local_host="127.0.0.1").allowed
    assert not login.verify(t, user="jane_doe", token=_token("localhost"), client_ip="10.0.0.1", local_host="10.0.0.2").allowed
    v = login.verify(_target(False), user="jane_doe", token=_token("db.example.test"), client_ip="1.2.3.4", local_host=None)
    assert v.reason == IAM_DISABLED and IamLogin.audit_fields(v)["verdict"] == "deny"


def test_mysql_answer_format(login):
    answer = login.mysql_answer(_target(), 4242, "jane_doe")
    key = bytes.fromhex((login.iam_dir(_target()) / engine_proof.KEY_NAME).read_text().strip())
    expected = hmac.new(key, b"dbkeep-iam-mysql-v2\0" + b"4242" + b"\0jane_doe", hashlib.sha256).hexdigest()
    assert answer == expected.encode() + b"\0"
    assert login.mysql_answer(_target(), 4243, "jane_doe") != answer  # bound to the connection
    with pytest.raises(ValueError):
        login.mysql_answer(_target(), 1 << 32, "jane_doe")


def _check(iam_dir: Path, password: str, user: str) -> int:
    return subprocess.run([str(CHECKER), str(iam_dir)], input=password.encode() + b"\0",
                          env={"PAM_USER": user, "PAM_TYPE": "auth"}, capture_output=True, timeout=10).returncode


@pytest.mark.skipif(not CHECKER.exists(), reason="native checker not built")
def test_pg_password_accepted_once_by_the_native_checker(login):
    d = login.iam_dir(_target())
    password = login.pg_password(_target(), "db_userx")
    assert password.startswith("dbkeep-iam-pg-v1:") and len(os.listdir(d / engine_proof.NONCES_DIR)) == 1
    assert _check(d, password, "other_user") != 0
    assert _check(d, password, "db_userx") == 0
    assert _check(d, password, "db_userx") != 0  # consumed
    assert os.listdir(d / engine_proof.NONCES_DIR) == []
    stale = engine_proof.mint_pg_nonce(d, now=dt.datetime.now().timestamp() - 120)
    assert _check(d, engine_proof.pg_proof(login._keys.key(d), stale, "db_userx"), "db_userx") != 0
    assert _check(d, "a plain password", "db_userx") != 0


def test_pam_texts_and_hba_lines(tmp_path):
    layout = ClusterLayout(tmp_path / "state", RID)
    assert engine_iam.pg_hba_line(None).endswith("+rds_iam  reject")
    assert engine_iam.pg_hba_line("dbkeep-iam-x") == "local   all       +rds_iam  pam pamservice=dbkeep-iam-x"
    on, off = engine_iam._pam_text(layout, True), engine_iam._pam_text(layout, False)
    module = layout.root.absolute() / "iam" / engine_iam.PAM_MODULE
    assert f"auth     required   {module} {layout.root.absolute() / 'iam'}\n" in on
    # off: the module still asks for the password (so the gateway audits why), and nothing passes
    assert f"auth     requisite  {module} off\n" in off and "pam_deny.so" in off
    assert engine_iam.pam_service_name(layout).startswith("dbkeep-iam-") and len(engine_iam.pam_service_name(layout)) == 27


def test_stale_pam_services_removed(tmp_path, monkeypatch):
    if os.geteuid() != 0:
        pytest.skip("root only")
    pam = tmp_path / "pam.d"
    pam.mkdir()
    live = ClusterLayout(tmp_path / "state", RID)
    live.ensure_root()
    gone = ClusterLayout(tmp_path / "gone", RID)
    (pam / engine_iam.pam_service_name(live)).write_text(engine_iam._pam_text(live, True))
    (pam / engine_iam.pam_service_name(gone)).write_text(engine_iam._pam_text(gone, True))
    (pam / "other").write_text("auth required pam_unix.so\n")
    engine_iam.remove_stale_pam_services(pam)
    assert sorted(p.name for p in pam.iterdir()) == sorted([engine_iam.pam_service_name(live), "other"])
