"""The same flows through the ``aws`` CLI, configured only by AWS_CONFIG_FILE/AWS_SHARED_CREDENTIALS_FILE."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest


# The CLI installed beside dbkeep (make setup), whose venv undoes AWS CLI v1's rds endpoint override.
AWS = str(Path(sys.executable).parent / "aws") if (Path(sys.executable).parent / "aws").exists() else shutil.which("aws")


def aws(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([AWS, *args, "--output", "json"], env=env, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"aws {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def profile_files(tmp: Path, endpoint: str, key: str, secret: str) -> dict[str, str]:
    config, creds = tmp / "config", tmp / "credentials"
    config.write_text(f"[default]\nregion = us-east-1\nendpoint_url = {endpoint}\n")
    creds.write_text(f"[default]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=str(creds))
    return env


def test_cli_flows(dbkeep, tmp_path):
    env = dbkeep.env
    ident = json.loads(aws(env, "sts", "get-caller-identity").stdout)
    account = ident["Account"]
    assert ident["Arn"] == f"arn:aws:iam::{account}:root"
    name = f"cli-{uuid.uuid4().hex[:6]}"
    aws(env, "iam", "create-user", "--user-name", name)
    policy = tmp_path / "ro.json"
    policy.write_text(json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "rds:Describe*", "Resource": "*"},
        {"Effect": "Deny", "Action": "rds:DescribeDBInstances", "Resource": "*"}]}))
    aws(env, "iam", "put-user-policy", "--user-name", name, "--policy-name", "ro", "--policy-document", f"file://{policy}")
    got = json.loads(aws(env, "iam", "get-user-policy", "--user-name", name, "--policy-name", "ro").stdout)
    assert got["PolicyDocument"]["Statement"][0]["Action"] == "rds:Describe*"
    key = json.loads(aws(env, "iam", "create-access-key", "--user-name", name).stdout)["AccessKey"]
    user_env = profile_files(tmp_path, dbkeep.url, key["AccessKeyId"], key["SecretAccessKey"])
    assert json.loads(aws(user_env, "sts", "get-caller-identity").stdout)["Arn"] == f"arn:aws:iam::{account}:user/{name}"
    assert isinstance(json.loads(aws(user_env, "rds", "describe-db-clusters").stdout)["DBClusters"], list)
    denied = aws(user_env, "rds", "describe-db-instances", check=False)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr and "explicit deny" in denied.stderr
    denied = aws(user_env, "rds", "create-db-cluster", "--db-cluster-identifier", "c9", "--engine", "aurora-mysql",
                 "--master-username", "admin", "--master-user-password", "secret1234", check=False)
    assert denied.returncode != 0 and "AccessDenied" in denied.stderr
    assert f"rds:CreateDBCluster on resource: arn:aws:rds:us-east-1:{account}:cluster:c9" in denied.stderr
    bad = profile_files(tmp_path / ".." / tmp_path.name, dbkeep.url, key["AccessKeyId"], "wrong" * 8)
    out = aws(bad, "sts", "get-caller-identity", check=False)
    assert out.returncode != 0 and "SignatureDoesNotMatch" in out.stderr


def test_dbkeep_env_prints_exports(dbkeep):
    out = subprocess.run([sys.executable, "-m", "dbkeep", "env", "--state-dir", str(dbkeep.state_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert out.stdout.splitlines() == [
        f"export AWS_CONFIG_FILE={dbkeep.state_dir}/config",
        f"export AWS_SHARED_CREDENTIALS_FILE={dbkeep.state_dir}/credentials",
    ]


def test_cli_cluster_lifecycle(dbkeep):
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).parent))
    from clusters import postgres

    env = dbkeep.env
    ident = f"cli-{uuid.uuid4().hex[:6]}"
    created = json.loads(aws(env, "rds", "create-db-cluster", "--db-cluster-identifier", ident, "--engine", "aurora-postgresql",
                             "--master-username", "master", "--master-user-password", "Cli-Pass-123", "--database-name", "appdb").stdout)
    assert created["DBCluster"]["Status"] == "creating"
    aws(env, "rds", "create-db-instance", "--db-instance-identifier", f"{ident}-1", "--db-cluster-identifier", ident,
        "--engine", "aurora-postgresql", "--db-instance-class", "db.r6g.large")
    # the CLI's own waiters poll every 30 s; boto3's waiter with a 1 s delay checks the same thing
    rds = dbkeep.client("rds")
    rds.get_waiter("db_instance_available").wait(DBInstanceIdentifier=f"{ident}-1", WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=ident, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    cluster = json.loads(aws(env, "rds", "describe-db-clusters", "--db-cluster-identifier", ident).stdout)["DBClusters"][0]
    assert cluster["Status"] == "available" and cluster["DBClusterMembers"][0]["IsClusterWriter"]
    postgres(dbkeep, cluster, "master", "Cli-Pass-123").close()
    aws(env, "rds", "modify-db-cluster", "--db-cluster-identifier", ident, "--master-user-password", "Cli-Pass-456", "--apply-immediately")
    rds.get_waiter("db_cluster_available").wait(DBClusterIdentifier=ident, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    postgres(dbkeep, cluster, "master", "Cli-Pass-456").close()
    bad = aws(env, "rds", "create-db-cluster", "--db-cluster-identifier", ident, "--engine", "aurora-postgresql",
              "--master-username", "master", "--master-user-password", "Cli-Pass-123", check=False)
    assert bad.returncode != 0 and "DBClusterAlreadyExistsFault" in bad.stderr


def test_dbkeep_status(dbkeep):
    out = subprocess.run([sys.executable, "-m", "dbkeep", "status", "--state-dir", str(dbkeep.state_dir)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "running (pid" in out.stdout and dbkeep.url in out.stdout


def test_an_aws_cli_of_the_users_own_works_with_dbkeeps_files(dbkeep, tmp_path):
    """An AWS CLI v1 installed in a venv of its own (no dbkeep there), with only the two files:
    every command works; `aws rds` in us-east-1 needs --endpoint-url there, as the README says
    (AWS CLI v1 replaces that endpoint with AWS's own unless it is on the command line)."""
    venv = tmp_path / "their-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "awscli"], check=True, timeout=600, capture_output=True)
    theirs = str(venv / "bin" / "aws")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(AWS_CONFIG_FILE=str(dbkeep.state_dir / "config"), AWS_SHARED_CREDENTIALS_FILE=str(dbkeep.state_dir / "credentials"))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([theirs, *args, "--output", "json"], env=env, capture_output=True, text=True, timeout=120)

    assert subprocess.run([theirs, "--version"], capture_output=True, text=True, env=env).stdout.startswith("aws-cli/1.")
    ident = run("sts", "get-caller-identity")
    assert ident.returncode == 0, ident.stderr
    assert json.loads(ident.stdout)["Arn"].endswith(":root")
    users = run("iam", "list-users")
    assert users.returncode == 0 and "Users" in json.loads(users.stdout), users.stderr
    clusters = run("rds", "describe-db-clusters", "--endpoint-url", dbkeep.url)
    assert clusters.returncode == 0 and "DBClusters" in json.loads(clusters.stdout), clusters.stderr
    assert "ModuleNotFoundError" not in ident.stderr + users.stderr + clusters.stderr



DEBIAN_AWS = Path("/usr/bin/aws")  # Debian 12's awscli package: AWS CLI 2.9 (make setup installs it)


def cli_version(aws_cli: str) -> tuple[int, ...]:
    out = subprocess.run([aws_cli, "--version"], capture_output=True, text=True, timeout=60).stdout
    return tuple(int(part) for part in out.split("/", 1)[1].split(" ", 1)[0].split(".")[:2])


def aws_cli_v2_current() -> str | None:
    """An AWS CLI v2.13 or later (honours endpoint_url in the config): ``DBKEEP_TEST_AWSCLI_V2``
    (a path), else an ``aws`` on PATH. AWS's installer or a build of its source
    (github.com/aws/aws-cli, branch v2: ``pip install .``) provides one; PyPI has none."""
    for candidate in (os.environ.get("DBKEEP_TEST_AWSCLI_V2"), shutil.which("aws")):
        if candidate and Path(candidate).exists() and cli_version(candidate) >= (2, 13):
            return candidate
    return None


def run_theirs(aws_cli: str, dbkeep, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=str(dbkeep.state_dir / "credentials"),
               AWS_MAX_ATTEMPTS="1")  # a CLI that went to AWS instead fails at once
    return subprocess.run([aws_cli, *args, "--output", "json", "--cli-connect-timeout", "5"], env=env,
                          capture_output=True, text=True, timeout=120)


COMMANDS = ((["sts", "get-caller-identity"], "Arn"), (["iam", "list-users"], "Users"),
            (["rds", "describe-db-clusters"], "DBClusters"), (["rds", "describe-events"], "Events"))


def test_aws_cli_v2_works_with_dbkeeps_files_alone(dbkeep):
    """AWS CLI v2 from 2.13 on honours ``endpoint_url`` in the config file for every service and
    has no us-east-1 rule for rds: the two files are enough, no plugin and no --endpoint-url."""
    theirs = aws_cli_v2_current()
    if theirs is None:
        pytest.skip("no AWS CLI v2.13+ here (set DBKEEP_TEST_AWSCLI_V2 to its aws)")
    for args, key in COMMANDS:
        done = run_theirs(theirs, dbkeep, dbkeep.state_dir / "config", *args)
        assert done.returncode == 0, done.stderr
        assert key in json.loads(done.stdout)


def test_debians_aws_cli_v2_9_with_the_plugin_config(dbkeep):
    """Debian 12's AWS CLI 2.9 ignores ``endpoint_url`` in the config file (it would go to AWS);
    ``DIR/config-plugin`` names the plugin dbkeep writes beside it, which applies it."""
    assert DEBIAN_AWS.exists(), "make setup installs Debian's awscli"
    assert cli_version(str(DEBIAN_AWS))[0] == 2
    ignored = run_theirs(str(DEBIAN_AWS), dbkeep, dbkeep.state_dir / "config", "sts", "get-caller-identity")
    if cli_version(str(DEBIAN_AWS)) < (2, 13):
        assert ignored.returncode != 0 and "amazonaws.com" in ignored.stderr, ignored.stderr
    plugin = dbkeep.state_dir / "config-plugin"
    assert (plugin.stat().st_mode & 0o777) == 0o600
    for args, key in COMMANDS:
        done = run_theirs(str(DEBIAN_AWS), dbkeep, plugin, *args)
        assert done.returncode == 0, done.stderr
        assert key in json.loads(done.stdout)
