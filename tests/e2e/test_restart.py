"""A second start on the same state dir keeps everything; a concurrent one is refused."""

from __future__ import annotations

import json
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


def test_bad_options_fail_clearly(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dbkeep", "up", "--state-dir", str(tmp_path / "s"), "--host", "not-an-ip"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--host must be an IP address" in out.stderr
    out = subprocess.run([sys.executable, "-m", "dbkeep", "up", "--state-dir", str(tmp_path / "s"), "--api-port", "70000"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "--api-port" in out.stderr
