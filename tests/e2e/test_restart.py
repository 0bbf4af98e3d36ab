"""A second start on the same state dir keeps everything; a concurrent one is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from dbkeep_process import DbkeepProcess


def test_restart_keeps_users_keys_policies():
    state = Path(tempfile.mkdtemp(prefix="dbkeep-restart-")) / "state"
    first = DbkeepProcess(state).start()
    try:
        account = first.client("sts").get_caller_identity()["Account"]
        root_key = first.root_credentials()
        iam = first.client("iam")
        iam.create_user(UserName="carol")
        iam.put_user_policy(UserName="carol", PolicyName="p", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:GetUser", "Resource": "*"}]}))
        key = iam.create_access_key(UserName="carol")["AccessKey"]
        # a second dbkeep on the same directory refuses with a clear message
        second = subprocess.run([sys.executable, "-m", "dbkeep", "up", "--state-dir", str(state), "--api-port", "0"],
                                capture_output=True, text=True, timeout=60)
        assert second.returncode != 0
        assert "in use by another dbkeep" in second.stderr
    finally:
        assert first.stop() == 0
    again = DbkeepProcess(state).start()
    try:
        assert again.root_credentials() == root_key
        assert again.client("sts").get_caller_identity()["Account"] == account
        carol = again.client("iam", key["AccessKeyId"], key["SecretAccessKey"])
        assert carol.get_user(UserName="carol")["User"]["UserName"] == "carol"
        assert again.client("iam").get_user_policy(UserName="carol", PolicyName="p")["PolicyDocument"]["Statement"][0]["Action"] == "iam:GetUser"
    finally:
        assert again.stop() == 0
    shutil.rmtree(state.parent, ignore_errors=True)  # engines' data; kept when the test failed


@pytest.mark.parametrize("option, value, message", [
    ("--host", "not-an-ip", "--host must be an IP address"),
    ("--api-port", "70000", "--api-port"),
    ("--max-connections", "0", "--max-connections must be between 1 and 100000"),
    ("--relay-threads", "-1", "--relay-threads must be between 0 and 64, not -1"),
])
def test_bad_options_fail_clearly(tmp_path, option, value, message):
    out = subprocess.run([sys.executable, "-m", "dbkeep", "up", "--state-dir", str(tmp_path / "s"), option, value],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and message in out.stderr


def test_restart_brings_clusters_back_with_their_data():
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).parent))
    from clusters import create_cluster, mysql, postgres, wait_cluster

    state = Path(tempfile.mkdtemp(prefix="dbkeep-restart-rds-")) / "state"
    first = DbkeepProcess(state).start()
    try:
        my = create_cluster(first, "aurora-mysql", "keepmy", "Keep-Pass-1")
        pg = create_cluster(first, "aurora-postgresql", "keeppg", "Keep-Pass-2")
        conn = mysql(first, my, "admin", "Keep-Pass-1", "appdb")
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE t (v TEXT)")
            cur.execute("INSERT INTO t VALUES ('committed before restart')")
        conn.close()
        with postgres(first, pg, "master", "Keep-Pass-2") as c:
            c.execute("CREATE TABLE t (v text)")
            c.execute("INSERT INTO t VALUES ('committed before restart')")
    finally:
        assert first.stop() == 0
    # engines were stopped with dbkeep: nothing listens on their sockets any more
    import socket

    for cluster, name in ((my, "mysqld.sock"), (pg, ".s.PGSQL.5432")):
        path = state / "clusters" / cluster["DbClusterResourceId"] / "run" / name
        assert path.parent.is_dir(), path  # the right place: only the socket is gone or dead
        s = socket.socket(socket.AF_UNIX)
        with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
            s.connect(str(path))
        s.close()
    again = DbkeepProcess(state).start()
    try:
        my2 = wait_cluster(again, "keepmy")
        pg2 = wait_cluster(again, "keeppg")
        assert (my2["Port"], pg2["Port"]) == (my["Port"], pg["Port"])
        assert my2["DbClusterResourceId"] == my["DbClusterResourceId"]
        conn = mysql(again, my2, "admin", "Keep-Pass-1", "appdb")
        with conn.cursor() as cur:
            cur.execute("SELECT v FROM t")
            assert cur.fetchall() == (("committed before restart",),)
        conn.close()
        with postgres(again, pg2, "master", "Keep-Pass-2") as c:
            assert c.execute("SELECT v FROM t").fetchall() == [("committed before restart",)]
        instances = again.client("rds").describe_db_instances()["DBInstances"]
        assert {i["DBInstanceStatus"] for i in instances} == {"available"}
    finally:
        assert again.stop() == 0
    shutil.rmtree(state.parent, ignore_errors=True)  # engines' data; kept when the test failed
