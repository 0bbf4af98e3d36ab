"""End to end: the management API against a real ``dbkeep up``, with boto3 and hand-signed requests."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid

import botocore.exceptions
import pytest

from sign import send, signed_post

DESCRIBE_ONLY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "rds:Describe*", "Resource": "*"}]}


def error_of(excinfo) -> tuple[str, str]:
    err = excinfo.value.response["Error"]
    return err["Code"], err["Message"]


def new_user(dbkeep, iam, policy: dict | None = None, name: str | None = None):
    name = name or f"u{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    if policy:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return name, key["AccessKeyId"], key["SecretAccessKey"]


def test_root_get_caller_identity(dbkeep):
    ident = dbkeep.client("sts").get_caller_identity()
    assert re.fullmatch(r"\d{12}", ident["Account"])
    assert ident["Arn"] == f"arn:aws:iam::{ident['Account']}:root"


def test_state_dir_files_are_private(dbkeep):
    # nobody else may read or write it; traversing is allowed (the engines' OS group gets an ACL
    # entry g:dbkeep:x once a cluster exists, which shows as the group bits' mask)
    assert os.stat(dbkeep.state_dir).st_mode & 0o066 == 0
    for name in ("credentials", "catalog.key", "audit.log"):
        assert os.stat(dbkeep.state_dir / name).st_mode & 0o777 == 0o600, name
    config = (dbkeep.state_dir / "config").read_text()
    assert "region = us-east-1" in config and f"endpoint_url = {dbkeep.url}" in config


def test_user_with_describe_policy(dbkeep):
    iam = dbkeep.client("iam")
    account = dbkeep.client("sts").get_caller_identity()["Account"]
    name, key, secret = new_user(dbkeep, iam, DESCRIBE_ONLY, name="alice")
    alice_rds = dbkeep.client("rds", key, secret)
    root_view = {c["DBClusterIdentifier"] for c in dbkeep.client("rds").describe_db_clusters()["DBClusters"]}
    assert {c["DBClusterIdentifier"] for c in alice_rds.describe_db_clusters()["DBClusters"]} == root_view
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        alice_rds.create_db_cluster(DBClusterIdentifier="c1", Engine="aurora-mysql", MasterUsername="admin", MasterUserPassword="secret123")
    code, message = error_of(exc)
    assert code == "AccessDenied"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert message == (
        f"User: arn:aws:iam::{account}:user/alice is not authorized to perform: rds:CreateDBCluster on resource: "
        f"arn:aws:rds:us-east-1:{account}:cluster:c1 because no identity-based policy allows the rds:CreateDBCluster action"
    )
    # alice may not manage IAM either
    alice_iam = dbkeep.client("iam", key, secret)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        alice_iam.create_user(UserName="mallory")
    assert error_of(exc)[0] == "AccessDenied"
    assert dbkeep.client("sts", key, secret).get_caller_identity()["Arn"] == f"arn:aws:iam::{account}:user/alice"


def test_explicit_deny_beats_allow(dbkeep):
    iam = dbkeep.client("iam")
    account = dbkeep.client("sts").get_caller_identity()["Account"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iam:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "iam:CreateUser", "Resource": f"arn:aws:iam::{account}:user/blocked-*"},
        ],
    }
    name, key, secret = new_user(dbkeep, iam, policy)
    mine = dbkeep.client("iam", key, secret)
    mine.create_user(UserName=f"ok-{uuid.uuid4().hex[:6]}")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        mine.create_user(UserName="blocked-one")
    code, message = error_of(exc)
    assert code == "AccessDenied"
    assert message.endswith("with an explicit deny in an identity-based policy")


def test_managed_policy_through_group(dbkeep):
    iam = dbkeep.client("iam")
    name, key, secret = new_user(dbkeep, iam)
    sts_alice = dbkeep.client("iam", key, secret)
    with pytest.raises(botocore.exceptions.ClientError):
        sts_alice.list_users()
    arn = iam.create_policy(PolicyName=f"list-{name}", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:List*", "Resource": "*"}]}))["Policy"]["Arn"]
    iam.create_group(GroupName=f"g-{name}")
    iam.attach_group_policy(GroupName=f"g-{name}", PolicyArn=arn)
    iam.add_user_to_group(GroupName=f"g-{name}", UserName=name)
    assert name in [u["UserName"] for u in sts_alice.list_users()["Users"]]
    assert iam.list_attached_group_policies(GroupName=f"g-{name}")["AttachedPolicies"][0]["PolicyArn"] == arn
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iam.delete_policy(PolicyArn=arn)
    assert error_of(exc)[0] == "DeleteConflict"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iam.delete_group(GroupName=f"g-{name}")
    assert error_of(exc)[0] == "DeleteConflict"


def test_tampered_signature(dbkeep):
    key, secret = dbkeep.root_credentials()
    req = signed_post(dbkeep.url, key, secret, {"Action": "GetCallerIdentity", "Version": "2011-06-15"})
    req.headers["Authorization"] = req.headers["Authorization"][:-4] + ("0000" if not req.headers["Authorization"].endswith("0000") else "1111")
    status, body = send(req)
    assert status == 403 and "<Code>SignatureDoesNotMatch</Code>" in body
    # a body changed after signing is caught by the payload hash
    req = signed_post(dbkeep.url, key, secret, {"Action": "GetCallerIdentity", "Version": "2011-06-15"})
    req.data = req.body + b"&Extra=1"
    status, body = send(req)
    assert status == 403 and "SignatureDoesNotMatch" in body


def test_unknown_key(dbkeep):
    sts = dbkeep.client("sts", "AKIAAAAAAAAAAAAAAAAA", "x" * 40)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        sts.get_caller_identity()
    assert error_of(exc) == ("InvalidClientTokenId", "The security token included in the request is invalid.")


def test_request_dated_twenty_minutes_ago(dbkeep):
    key, secret = dbkeep.root_credentials()
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=20)
    status, body = send(signed_post(dbkeep.url, key, secret, {"Action": "GetCallerIdentity", "Version": "2011-06-15"}, when=when))
    assert status == 400 and "<Code>RequestExpired</Code>" in body
    assert "Signature expired: " + when.strftime("%Y%m%dT%H%M%SZ") + " is now earlier than" in body
    # within the window it is fine
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=10)
    status, body = send(signed_post(dbkeep.url, key, secret, {"Action": "GetCallerIdentity", "Version": "2011-06-15"}, when=when))
    assert status == 200, body


def test_missing_authentication(dbkeep):
    import urllib.request

    status, body = send(type("R", (), {"url": dbkeep.url + "/", "body": b"Action=GetCallerIdentity&Version=2011-06-15",
                                       "headers": {"Content-Type": "application/x-www-form-urlencoded"}, "method": "POST"})())
    assert status == 403 and "<Code>MissingAuthenticationToken</Code>" in body
    _ = urllib.request


def test_incomplete_signature(dbkeep):
    key, secret = dbkeep.root_credentials()
    req = signed_post(dbkeep.url, key, secret, {"Action": "GetCallerIdentity", "Version": "2011-06-15"})
    req.headers["Authorization"] = req.headers["Authorization"].split(", Signature=")[0]
    status, body = send(req)
    assert status == 400 and "<Code>IncompleteSignature</Code>" in body


def test_presigned_get(dbkeep):
    sts = dbkeep.client("sts")
    url = sts.generate_presigned_url("get_caller_identity", ExpiresIn=60, HttpMethod="GET")
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as resp:
        body = resp.read().decode()
    assert "<GetCallerIdentityResult>" in body and ":root</Arn>" in body


def test_inactive_key_refused(dbkeep):
    iam = dbkeep.client("iam")
    name, key, secret = new_user(dbkeep, iam)
    assert dbkeep.client("sts", key, secret).get_caller_identity()["Arn"].endswith(f":user/{name}")
    iam.update_access_key(UserName=name, AccessKeyId=key, Status="Inactive")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        dbkeep.client("sts", key, secret).get_caller_identity()
    assert error_of(exc)[0] == "InvalidClientTokenId"
    iam.update_access_key(UserName=name, AccessKeyId=key, Status="Active")
    dbkeep.client("sts", key, secret).get_caller_identity()
    keys = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
    assert [k["AccessKeyId"] for k in keys] == [key] and "SecretAccessKey" not in keys[0]


def test_iam_errors(dbkeep):
    iam = dbkeep.client("iam")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iam.get_user(UserName="nobody-here")
    assert error_of(exc) == ("NoSuchEntity", "The user with name nobody-here cannot be found.")
    name, key, _ = new_user(dbkeep, iam)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iam.create_user(UserName=name)
    assert error_of(exc)[0] == "EntityAlreadyExists"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    iam.create_access_key(UserName=name)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iam.create_access_key(UserName=name)
    assert error_of(exc) == ("LimitExceeded", "Cannot exceed quota for AccessKeysPerUser: 2")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iam.delete_user(UserName=name)
    assert error_of(exc)[0] == "DeleteConflict"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iam.put_user_policy(UserName=name, PolicyName="bad", PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*"}]}')
    code, message = error_of(exc)
    assert code == "MalformedPolicyDocument" and "action" in message.lower()
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iam.put_user_policy(UserName=name, PolicyName="bad", PolicyDocument="{not json")
    assert error_of(exc)[0] == "MalformedPolicyDocument"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iam.create_user(UserName="bad name!")
    assert error_of(exc)[0] == "ValidationError"
    big = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iam:GetUser", "Resource": f"arn:aws:iam::123456789012:user/{'x' * 60}{i}"} for i in range(40)]})
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iam.put_user_policy(UserName=name, PolicyName="big", PolicyDocument=big)
    assert error_of(exc) == ("LimitExceeded", f"Maximum policy size of 2048 bytes exceeded for user {name}")
    # delete in order works
    for k in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=name, AccessKeyId=k["AccessKeyId"])
    iam.delete_user(UserName=name)
    assert name not in [u["UserName"] for u in iam.list_users()["Users"]]


def test_unknown_action_and_bad_input(dbkeep):
    key, secret = dbkeep.root_credentials()
    status, body = send(signed_post(dbkeep.url, key, secret, {"Action": "MakeCoffee", "Version": "2011-06-15"}))
    assert status == 400 and "<Code>InvalidAction</Code>" in body
    status, body = send(signed_post(dbkeep.url, key, secret, {"Action": "CreateUser", "Version": "2010-05-08"}, service="iam"))
    assert status == 400 and "<Code>ValidationError</Code>" in body and "userName" in body
    status, body = send(signed_post(dbkeep.url, key, secret, {"Action": "ListUsers", "Version": "2010-05-08", "MaxItems": "lots"}, service="iam"))
    assert status == 400 and "ValidationError" in body
    for junk in ({"Action": "CreateUser", "Version": "2010-05-08", "UserName": "x" * 5000},
                 {"Action": "PutUserPolicy", "Version": "2010-05-08", "UserName": "a", "PolicyName": "p", "PolicyDocument": "\x00" * 10},
                 {"Action": "CreateUser", "Version": "2010-05-08", "UserName": "ok", "Tags.member.99999.Key": "k"}):
        status, body = send(signed_post(dbkeep.url, key, secret, junk, service="iam"))
        assert 400 <= status < 500, body


def test_assume_role_and_expiry(dbkeep, move_clock):
    iam = dbkeep.client("iam")
    account = dbkeep.client("sts").get_caller_identity()["Account"]
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "sts:AssumeRole"}]}
    role_arn = iam.create_role(RoleName="dba", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName="dba", PolicyName="desc", PolicyDocument=json.dumps(DESCRIBE_ONLY))
    name, key, secret = new_user(dbkeep, iam)
    user_sts = dbkeep.client("sts", key, secret)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        user_sts.assume_role(RoleArn=role_arn, RoleSessionName="s1")
    assert error_of(exc)[0] == "AccessDenied"
    iam.put_user_policy(UserName=name, PolicyName="assume", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn}]}))
    creds = user_sts.assume_role(RoleArn=role_arn, RoleSessionName="s1", DurationSeconds=900)["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    temp = dict(key=creds["AccessKeyId"], secret=creds["SecretAccessKey"], token=creds["SessionToken"])
    ident = dbkeep.client("sts", **temp).get_caller_identity()
    assert ident["Arn"] == f"arn:aws:sts::{account}:assumed-role/dba/s1"
    assert isinstance(dbkeep.client("rds", **temp).describe_db_clusters()["DBClusters"], list)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        dbkeep.client("iam", **temp).list_users()
    assert error_of(exc)[0] == "AccessDenied"
    assert "assumed-role/dba/s1 is not authorized" in error_of(exc)[1]
    # a wrong session token is refused
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        dbkeep.client("sts", temp["key"], temp["secret"], "bm90IHRoZSB0b2tlbg==").get_caller_identity()
    assert error_of(exc)[0] == "InvalidClientTokenId"
    move_clock(901)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        dbkeep.client("sts", **temp).get_caller_identity()
    assert error_of(exc)[0] == "ExpiredToken"


def test_assume_role_trust_policy_refuses(dbkeep):
    iam = dbkeep.client("iam")
    account = dbkeep.client("sts").get_caller_identity()["Account"]
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:user/someone-else"}, "Action": "sts:AssumeRole"}]}
    role_arn = iam.create_role(RoleName="locked", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    name, key, secret = new_user(dbkeep, iam, {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]})
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        dbkeep.client("sts", key, secret).assume_role(RoleArn=role_arn, RoleSessionName="xx")
    assert error_of(exc)[0] == "AccessDenied"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iam.create_role(RoleName="bad-trust", AssumeRolePolicyDocument=json.dumps(DESCRIBE_ONLY))
    assert error_of(exc)[0] == "MalformedPolicyDocument"


def test_audit_log_records_denials_without_secrets(dbkeep):
    sts = dbkeep.client("sts", "AKIAZZZZZZZZZZZZZZZZ", "y" * 40)
    with pytest.raises(botocore.exceptions.ClientError):
        sts.get_caller_identity()
    iam = dbkeep.client("iam")
    name, key, secret = new_user(dbkeep, iam)
    with pytest.raises(botocore.exceptions.ClientError):
        dbkeep.client("iam", key, secret).list_users()
    events = [json.loads(line) for line in (dbkeep.state_dir / "audit.log").read_text().splitlines()]
    failed = [e for e in events if e["event"] == "api.auth_failed" and e.get("code") == "InvalidClientTokenId"]
    assert failed and failed[-1]["source_ip"] == "127.0.0.1" and failed[-1]["verdict"] == "deny" and failed[-1]["request_id"]
    denied = [e for e in events if e["event"] == "api.access_denied" and e["principal"].endswith(f"user/{name}")]
    assert denied and denied[-1]["action"] == "iam:ListUsers" and denied[-1]["resource"].startswith("arn:aws:iam::")
    everything = (dbkeep.state_dir / "audit.log").read_text() + dbkeep.logs()
    assert secret not in everything
    root_secret = dbkeep.root_credentials()[1]
    assert root_secret not in everything
