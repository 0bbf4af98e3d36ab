"""``--catalog-url postgresql://…``: the same schema on a throwaway local PostgreSQL, surviving restarts."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from dbkeep_process import DbkeepProcess

PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture(scope="module")
def catalog_postgres():
    """A private PostgreSQL on a unix socket, owned by an unprivileged user when we are root."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 binaries are not installed")
    base = Path(tempfile.mkdtemp(prefix="dbkeep-catalog-pg-"))
    user = None
    if os.geteuid() == 0:
        for candidate in ("postgres", "dbkeep"):
            try:
                user = pwd.getpwnam(candidate)
                break
            except KeyError:
                continue
        if user is None:
            pytest.skip("no unprivileged OS user to run PostgreSQL as")
        os.chmod(base, 0o755)
        shutil.chown(base, user.pw_uid, user.pw_gid)
    prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"] if user else []
    data = base / "data"
    subprocess.run([*prefix, str(PG_BIN / "initdb"), "-D", str(data), "-U", "catalog", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    proc = subprocess.Popen([*prefix, str(PG_BIN / "postgres"), "-D", str(data), "-c", "listen_addresses=", "-c", f"unix_socket_directories={base}",
                             "-c", "fsync=off"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # ready when it accepts connections (the socket file comes first); a loaded machine may take a while
    for _ in range(600):
        if (base / ".s.PGSQL.5432").exists() and subprocess.run(
                [str(PG_BIN / "pg_isready"), "-q", "-h", str(base), "-U", "catalog"], timeout=30).returncode == 0:
            break
        subprocess.run(["sleep", "0.1"])
    subprocess.run([*prefix, str(PG_BIN / "psql"), "-h", str(base), "-U", "catalog", "-d", "postgres", "-c", "CREATE DATABASE dbkeep"],
                   check=True, capture_output=True, timeout=60)
    yield f"postgresql://catalog@/dbkeep?host={base}"
    proc.terminate()
    proc.wait(60)
    shutil.rmtree(base, ignore_errors=True)


def test_postgres_catalog_keeps_state_across_restarts(catalog_postgres):
    state = Path(tempfile.mkdtemp(prefix="dbkeep-pgcat-")) / "state"
    first = DbkeepProcess(state, extra_args=["--catalog-url", catalog_postgres]).start()
    try:
        iam = first.client("iam")
        iam.create_user(UserName="dora")
        iam.put_user_policy(UserName="dora", PolicyName="p", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="dora")["AccessKey"]
        assert first.client("rds").describe_db_cluster_parameter_groups()["DBClusterParameterGroups"]
    finally:
        assert first.stop() == 0
    assert not (state / "catalog.sqlite3").exists(), "the SQLite catalog was used instead of PostgreSQL"
    again = DbkeepProcess(state, extra_args=["--catalog-url", catalog_postgres]).start()
    try:
        dora = again.client("iam", key["AccessKeyId"], key["SecretAccessKey"])
        assert dora.get_user(UserName="dora")["User"]["UserName"] == "dora"
    finally:
        assert again.stop() == 0
    shutil.rmtree(state.parent, ignore_errors=True)  # kept when the test failed
