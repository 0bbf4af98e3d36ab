"""`dbkeep audit` on a running dbkeep's own trail: a denied API call is found by its filters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from botocore.exceptions import ClientError
from clusters import unique


def test_a_denied_call_is_found_by_principal_event_and_time(dbkeep) -> None:
    iam = dbkeep.client("iam")
    name = unique("auditee")
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    as_user = dbkeep.client("rds", key["AccessKeyId"], key["SecretAccessKey"])
    with pytest.raises(ClientError):
        as_user.describe_db_clusters()

    def audit(*args: str) -> list[dict]:
        out = subprocess.run([sys.executable, "-m", "dbkeep", "audit", "--state-dir", str(dbkeep.state_dir),
                              "--format", "json", *args], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return [json.loads(line) for line in out.stdout.splitlines()]

    [denied] = audit("--principal", name, "--event", "api.access_denied", "--since", "10m")
    assert denied["action"] == "rds:DescribeDBClusters" and denied["verdict"] == "deny"
    assert denied["principal"].endswith(f":user/{name}")
    assert audit("--principal", name, "--verdict", "allow") == []
    assert audit("--principal", name, "--until", "2000-01-01T00:00:00Z") == []
    assert key["SecretAccessKey"] not in (dbkeep.state_dir / "audit.log").read_text()
