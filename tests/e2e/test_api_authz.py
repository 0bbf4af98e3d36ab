"""End to end, issue 15 (items 4, 5, 7): the management API authorises the real resource, tags need
tag permissions, and a denied caller cannot tell whether a name exists.

One ``dbkeep up`` (the session's) and one instance-less PostgreSQL cluster for the module; parameter
groups, IAM entities and security groups do the rest (they start no engine)."""

from __future__ import annotations

import json
import re
import time
import uuid

import botocore.exceptions
import pytest

from clusters import unique

OTHER_ACCOUNT = "000000000000"


def error_of(excinfo) -> tuple[str, str]:
    err = excinfo.value.response["Error"]
    return err["Code"], err["Message"]


def refused(call, **kwargs) -> tuple[str, str]:
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        call(**kwargs)
    return error_of(exc)


def policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action, resource="*", **condition) -> dict:
    st = {"Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        st["Condition"] = condition
    return st


def deny(action, resource="*", **condition) -> dict:
    st = allow(action, resource, **condition)
    st["Effect"] = "Deny"
    return st


class Caller:
    """An IAM user with one inline policy, and its clients."""

    def __init__(self, dbkeep, document: dict | None, prefix: str = "u") -> None:
        iam = dbkeep.client("iam")
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=self.name)
        if document is not None:
            iam.put_user_policy(UserName=self.name, PolicyName="p", PolicyDocument=json.dumps(document))
        key = iam.create_access_key(UserName=self.name)["AccessKey"]
        self.key, self.secret, self.dbkeep = key["AccessKeyId"], key["SecretAccessKey"], dbkeep

    def client(self, service: str, region: str = "us-east-1"):
        return self.dbkeep.client(service, self.key, self.secret, region=region)


@pytest.fixture(scope="module")
def account(dbkeep) -> str:
    return dbkeep.client("sts").get_caller_identity()["Account"]


# A caller that may create RDS resources, and tag them only with team=db (and no other key).
TAG_TEAM_DB = {"StringEquals": {"aws:RequestTag/team": "db"}, "ForAllValues:StringEquals": {"aws:TagKeys": ["team"]}}


@pytest.fixture(scope="module")
def rds_creator(dbkeep):
    doc = policy(
        allow(["rds:CreateDBCluster", "rds:CreateDBInstance", "rds:CreateDBClusterParameterGroup", "rds:Describe*"]),
        {**allow("rds:AddTagsToResource"), "Condition": TAG_TEAM_DB},
        deny("rds:CreateDBClusterParameterGroup", **{"StringEquals": {"aws:RequestTag/team": "forbidden"}}),
    )
    return Caller(dbkeep, doc, "rdsmaker")


@pytest.fixture(scope="module")
def cluster(dbkeep, rds_creator, account):
    """An instance-less cluster, created (tags and all) by a caller allowed to tag team=db only."""
    rds = rds_creator.client("rds")
    ident = unique("authz")
    out = rds.create_db_cluster(DBClusterIdentifier=ident, Engine="aurora-postgresql", MasterUsername="master",
                                MasterUserPassword="Authz-Pass-1", Tags=[{"Key": "team", "Value": "db"}])["DBCluster"]
    assert out["TagList"] == [{"Key": "team", "Value": "db"}]
    yield {"id": ident, "arn": f"arn:aws:rds:us-east-1:{account}:cluster:{ident}"}
    root = dbkeep.client("rds")
    deadline = time.monotonic() + 120
    while root.describe_db_clusters(DBClusterIdentifier=ident)["DBClusters"][0]["Status"] == "creating" and time.monotonic() < deadline:
        time.sleep(0.5)
    try:
        root.delete_db_cluster(DBClusterIdentifier=ident, SkipFinalSnapshot=True)
    except botocore.exceptions.ClientError:
        pass  # the session's teardown removes it with the state dir


def tags_of(dbkeep, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in dbkeep.client("rds").list_tags_for_resource(ResourceName=arn)["TagList"]}


# --- item 4: the canonical resource ----------------------------------------------------------------


def test_rds_arn_of_another_account_or_region_names_nothing(dbkeep, cluster, account):
    root = dbkeep.client("rds")
    before = tags_of(dbkeep, cluster["arn"])
    for foreign in (f"arn:aws:rds:us-east-1:{OTHER_ACCOUNT}:cluster:{cluster['id']}",
                    f"arn:aws:rds:eu-west-9:{account}:cluster:{cluster['id']}"):
        code, _ = refused(root.add_tags_to_resource, ResourceName=foreign, Tags=[{"Key": "pwned", "Value": "1"}])
        assert code == "DBClusterNotFoundFault", foreign
        assert refused(root.remove_tags_from_resource, ResourceName=foreign, TagKeys=["team"])[0] == "DBClusterNotFoundFault"
        assert refused(root.list_tags_for_resource, ResourceName=foreign)[0] == "DBClusterNotFoundFault"
        assert refused(root.describe_db_clusters, DBClusterIdentifier=foreign)[0] == "DBClusterNotFoundFault"
    assert tags_of(dbkeep, cluster["arn"]) == before
    # the same for the other tagged types
    pg = unique("pg-arn")
    root.create_db_cluster_parameter_group(DBClusterParameterGroupName=pg, DBParameterGroupFamily="aurora-postgresql15", Description="x")
    foreign_pg = f"arn:aws:rds:us-east-1:{OTHER_ACCOUNT}:cluster-pg:{pg}"
    assert refused(root.add_tags_to_resource, ResourceName=foreign_pg, Tags=[{"Key": "a", "Value": "b"}])[0] == "DBClusterParameterGroupNotFound"
    assert refused(root.add_tags_to_resource, ResourceName=f"arn:aws:rds:us-east-1:{OTHER_ACCOUNT}:db:{cluster['id']}",
                   Tags=[{"Key": "a", "Value": "b"}])[0] == "DBInstanceNotFound"
    assert tags_of(dbkeep, f"arn:aws:rds:us-east-1:{account}:cluster-pg:{pg}") == {}
    # the identifier's case does not matter: RDS identifiers are lower-case
    root.add_tags_to_resource(ResourceName=f"arn:aws:rds:us-east-1:{account}:cluster:{cluster['id'].upper()}", Tags=[{"Key": "case", "Value": "ok"}])
    assert tags_of(dbkeep, cluster["arn"])["case"] == "ok"


def test_rds_deny_on_the_canonical_arn_holds_whatever_the_caller_spells(dbkeep, cluster, account):
    caller = Caller(dbkeep, policy(allow("rds:*"), deny(["rds:AddTagsToResource", "rds:DescribeDBClusters"], cluster["arn"])))
    rds = caller.client("rds")
    spellings = [cluster["arn"], cluster["arn"].replace(cluster["id"], cluster["id"].upper())]
    for spelled in spellings:
        code, message = refused(rds.add_tags_to_resource, ResourceName=spelled, Tags=[{"Key": "x", "Value": "y"}])
        assert code == "AccessDenied", spelled
        assert message.endswith(f"on resource: {cluster['arn']} with an explicit deny in an identity-based policy")
    for spelled in (cluster["id"], cluster["id"].upper(), *spellings):
        assert refused(rds.describe_db_clusters, DBClusterIdentifier=spelled)[0] == "AccessDenied", spelled
    # spelled in another account or region it names nothing here: not found, nothing tagged
    for foreign in (f"arn:aws:rds:us-east-1:{OTHER_ACCOUNT}:cluster:{cluster['id']}",
                    f"arn:aws:rds:eu-west-9:{account}:cluster:{cluster['id']}"):
        assert refused(rds.add_tags_to_resource, ResourceName=foreign, Tags=[{"Key": "x", "Value": "y"}])[0] == "DBClusterNotFoundFault"
        assert refused(rds.describe_db_clusters, DBClusterIdentifier=foreign)[0] == "DBClusterNotFoundFault"
    assert "x" not in tags_of(dbkeep, cluster["arn"])
    # a request signed for another region is refused outright (its ARNs would be that region's)
    code, message = refused(caller.client("rds", region="eu-west-9").describe_db_clusters, DBClusterIdentifier=cluster["id"])
    assert (code, message) == ("SignatureDoesNotMatch", "Credential should be scoped to a valid region, not 'eu-west-9'. ")


def test_iam_policy_arns_of_another_account_or_aws_name_nothing(dbkeep, account):
    iam = dbkeep.client("iam")
    name = f"mine-{uuid.uuid4().hex[:6]}"
    iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(policy(allow("rds:Describe*"))))
    user = Caller(dbkeep, None).name
    for foreign in (f"arn:aws:iam::{OTHER_ACCOUNT}:policy/{name}", f"arn:aws:iam::aws:policy/{name}"):
        code, message = refused(iam.get_policy, PolicyArn=foreign)
        assert (code, message) == ("NoSuchEntity", f"Policy {foreign} does not exist or is not attachable.")
        assert refused(iam.attach_user_policy, UserName=user, PolicyArn=foreign)[0] == "NoSuchEntity"
        assert refused(iam.delete_policy, PolicyArn=foreign)[0] == "NoSuchEntity"
    assert iam.list_attached_user_policies(UserName=user)["AttachedPolicies"] == []
    assert refused(iam.get_policy, PolicyArn=f"arn:aws:iam::{account}:role/{name}") == ("InvalidInput", f"ARN arn:aws:iam::{account}:role/{name} is not valid.")
    iam.get_policy(PolicyArn=f"arn:aws:iam::{account}:policy/{name}")


def test_iam_deny_on_a_path_arn_holds(dbkeep, account):
    iam = dbkeep.client("iam")
    name = f"pathy-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=name, Path="/ops/")
    caller = Caller(dbkeep, policy(allow("iam:*"), deny("iam:*", f"arn:aws:iam::{account}:user/ops/{name}")))
    code, message = refused(caller.client("iam").get_user, UserName=name)
    assert code == "AccessDenied" and f"on resource: arn:aws:iam::{account}:user/ops/{name} with an explicit deny" in message
    assert refused(caller.client("iam").tag_user, UserName=name, Tags=[{"Key": "a", "Value": "b"}])[0] == "AccessDenied"


def test_assume_role_decides_on_the_roles_own_arn(dbkeep, account):
    iam = dbkeep.client("iam")
    role = f"svc-{uuid.uuid4().hex[:6]}"
    trust = policy({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "sts:AssumeRole"})
    real = iam.create_role(RoleName=role, Path="/svc/", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    assert real == f"arn:aws:iam::{account}:role/svc/{role}"
    caller = Caller(dbkeep, policy(allow("sts:AssumeRole"), deny("sts:AssumeRole", real)))
    sts = caller.client("sts")
    code, message = refused(sts.assume_role, RoleArn=real, RoleSessionName="s1")
    assert code == "AccessDenied" and message.endswith("with an explicit deny in an identity-based policy")
    # other spellings (no path, another path, another account) name no role: refused, never assumed
    for spelled in (f"arn:aws:iam::{account}:role/{role}", f"arn:aws:iam::{account}:role/x/{role}",
                    f"arn:aws:iam::{OTHER_ACCOUNT}:role/svc/{role}"):
        assert refused(sts.assume_role, RoleArn=spelled, RoleSessionName="s1")[0] == "AccessDenied", spelled
    # an unrestricted caller assumes it by its exact ARN only
    free = Caller(dbkeep, policy(allow("sts:AssumeRole"))).client("sts")
    assumed = free.assume_role(RoleArn=real, RoleSessionName="s1")
    assert assumed["AssumedRoleUser"]["Arn"].endswith(f":assumed-role/{role}/s1")
    # the session's aws:PrincipalArn is the role's own ARN, path included
    iam.put_role_policy(RoleName=role, PolicyName="p", PolicyDocument=json.dumps(policy(
        {**allow("rds:DescribeDBClusters"), "Condition": {"ArnEquals": {"aws:PrincipalArn": real}}})))
    creds = assumed["Credentials"]
    session = dbkeep.client("rds", creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"])
    assert isinstance(session.describe_db_clusters()["DBClusters"], list)
    assert refused(free.assume_role, RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName="s1")[0] == "AccessDenied"


# --- item 5: tags need tag permissions -------------------------------------------------------------


def test_iam_create_with_tags_needs_the_tag_action(dbkeep, account):
    iam = dbkeep.client("iam")
    no_tagging = Caller(dbkeep, policy(allow(["iam:CreateUser", "iam:CreateRole"]))).client("iam")
    trust = json.dumps(policy({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "sts:AssumeRole"}))
    user, role = f"tu-{uuid.uuid4().hex[:6]}", f"tr-{uuid.uuid4().hex[:6]}"
    code, message = refused(no_tagging.create_user, UserName=user, Tags=[{"Key": "team", "Value": "db"}])
    assert code == "AccessDenied" and f"perform: iam:TagUser on resource: arn:aws:iam::{account}:user/{user}" in message
    code, message = refused(no_tagging.create_role, RoleName=role, AssumeRolePolicyDocument=trust, Tags=[{"Key": "clearance", "Value": "high"}])
    assert code == "AccessDenied" and f"perform: iam:TagRole on resource: arn:aws:iam::{account}:role/{role}" in message
    assert refused(iam.get_user, UserName=user)[0] == "NoSuchEntity"
    assert refused(iam.get_role, RoleName=role)[0] == "NoSuchEntity"
    no_tagging.create_user(UserName=user)  # without tags the create action alone is enough

    # tag actions allowed only for team=db and no other key; CreateRole denied for clearance=high
    tagging = Caller(dbkeep, policy(
        allow(["iam:CreateUser", "iam:CreateRole"]),
        {**allow(["iam:TagUser", "iam:TagRole"]), "Condition": TAG_TEAM_DB},
        deny("iam:CreateRole", **{"StringEquals": {"aws:RequestTag/clearance": "high"}}),
    )).client("iam")
    u2, r2 = f"tu-{uuid.uuid4().hex[:6]}", f"tr-{uuid.uuid4().hex[:6]}"
    assert tagging.create_user(UserName=u2, Tags=[{"Key": "team", "Value": "db"}])["User"]["Tags"] == [{"Key": "team", "Value": "db"}]
    assert tagging.create_role(RoleName=r2, AssumeRolePolicyDocument=trust, Tags=[{"Key": "team", "Value": "db"}])["Role"]["Tags"] == [{"Key": "team", "Value": "db"}]
    for tags in ([{"Key": "team", "Value": "ops"}], [{"Key": "team", "Value": "db"}, {"Key": "extra", "Value": "1"}]):
        code, message = refused(tagging.create_user, UserName=f"tu-{uuid.uuid4().hex[:6]}", Tags=tags)
        assert code == "AccessDenied" and "iam:TagUser" in message, tags
    code, message = refused(tagging.create_role, RoleName=f"tr-{uuid.uuid4().hex[:6]}", AssumeRolePolicyDocument=trust,
                            Tags=[{"Key": "clearance", "Value": "high"}])
    assert code == "AccessDenied" and "perform: iam:CreateRole" in message and "explicit deny" in message


def test_rds_create_with_tags_needs_add_tags_to_resource(dbkeep, cluster, rds_creator, account):
    # the module's cluster was created with team=db by rds_creator: allowed (see the fixture)
    rds = rds_creator.client("rds")
    family = {"DBParameterGroupFamily": "aurora-postgresql15", "Description": "x"}
    ok = unique("pg-ok")
    made = rds.create_db_cluster_parameter_group(DBClusterParameterGroupName=ok, Tags=[{"Key": "team", "Value": "db"}], **family)
    assert tags_of(dbkeep, made["DBClusterParameterGroup"]["DBClusterParameterGroupArn"]) == {"team": "db"}
    for tags in ([{"Key": "team", "Value": "ops"}], [{"Key": "team", "Value": "db"}, {"Key": "extra", "Value": "1"}]):
        name = unique("pg-no")
        code, message = refused(rds.create_db_cluster_parameter_group, DBClusterParameterGroupName=name, Tags=tags, **family)
        assert code == "AccessDenied" and f"rds:AddTagsToResource on resource: arn:aws:rds:us-east-1:{account}:cluster-pg:{name}" in message
        assert refused(dbkeep.client("rds").describe_db_cluster_parameter_groups, DBClusterParameterGroupName=name)[0] == "DBClusterParameterGroupNotFound"
    code, message = refused(rds.create_db_cluster_parameter_group, DBClusterParameterGroupName=unique("pg-no"),
                            Tags=[{"Key": "team", "Value": "forbidden"}], **family)
    assert code == "AccessDenied" and "perform: rds:CreateDBClusterParameterGroup" in message  # aws:RequestTag on the create action
    ident = unique("no-tags")
    code, message = refused(rds.create_db_cluster, DBClusterIdentifier=ident, Engine="aurora-mysql", MasterUsername="admin",
                            MasterUserPassword="Authz-Pass-2", Tags=[{"Key": "team", "Value": "ops"}])
    assert code == "AccessDenied" and "rds:AddTagsToResource" in message
    code, message = refused(rds.create_db_instance, DBInstanceIdentifier=ident, DBClusterIdentifier=cluster["id"], Engine="aurora-postgresql",
                            DBInstanceClass="db.r6g.large", Tags=[{"Key": "team", "Value": "ops"}])
    assert code == "AccessDenied" and f"rds:AddTagsToResource on resource: arn:aws:rds:us-east-1:{account}:db:{ident}" in message
    assert refused(dbkeep.client("rds").describe_db_clusters, DBClusterIdentifier=ident)[0] == "DBClusterNotFoundFault"
    # without any tag permission, tags on create are refused; without tags the create goes through
    bare = Caller(dbkeep, policy(allow("rds:CreateDBClusterParameterGroup"))).client("rds")
    assert refused(bare.create_db_cluster_parameter_group, DBClusterParameterGroupName=unique("pg-no"),
                   Tags=[{"Key": "team", "Value": "db"}], **family)[0] == "AccessDenied"
    bare.create_db_cluster_parameter_group(DBClusterParameterGroupName=unique("pg-ok"), **family)


def test_ec2_create_with_tag_specifications_needs_create_tags(dbkeep, account):
    tags = [{"ResourceType": "security-group", "Tags": [{"Key": "team", "Value": "db"}]}]
    bare = Caller(dbkeep, policy(allow("ec2:CreateSecurityGroup"))).client("ec2")
    code, message = refused(bare.create_security_group, GroupName=unique("grp"), Description="x", TagSpecifications=tags)
    assert code == "UnauthorizedOperation" and "ec2:CreateTags" in message
    bare.create_security_group(GroupName=unique("grp"), Description="x")
    tagging = Caller(dbkeep, policy(
        allow("ec2:CreateSecurityGroup"),
        {**allow("ec2:CreateTags"), "Condition": {**TAG_TEAM_DB, "StringEquals": {"aws:RequestTag/team": "db", "ec2:CreateAction": "CreateSecurityGroup"}}},
    )).client("ec2")
    made = tagging.create_security_group(GroupName=unique("grp"), Description="x", TagSpecifications=tags)
    assert made["Tags"] == [{"Key": "team", "Value": "db"}]
    wrong = [{"ResourceType": "security-group", "Tags": [{"Key": "team", "Value": "ops"}]}]
    assert refused(tagging.create_security_group, GroupName=unique("grp"), Description="x", TagSpecifications=wrong)[0] == "UnauthorizedOperation"


def test_iam_tag_actions(dbkeep, account):
    iam = dbkeep.client("iam")
    user = Caller(dbkeep, None).name
    trust = json.dumps(policy({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "sts:AssumeRole"}))
    role = f"tags-{uuid.uuid4().hex[:6]}"
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
    iam.tag_user(UserName=user, Tags=[{"Key": "Team", "Value": "db"}, {"Key": "temp", "Value": ""}])
    iam.tag_user(UserName=user, Tags=[{"Key": "team", "Value": "ops"}])  # keys are case-insensitive: overwritten
    assert iam.list_user_tags(UserName=user)["Tags"] == [{"Key": "temp", "Value": ""}, {"Key": "team", "Value": "ops"}]
    assert iam.get_user(UserName=user)["User"]["Tags"] == [{"Key": "temp", "Value": ""}, {"Key": "team", "Value": "ops"}]
    iam.untag_user(UserName=user, TagKeys=["TEMP"])
    assert iam.list_user_tags(UserName=user)["Tags"] == [{"Key": "team", "Value": "ops"}]
    iam.tag_role(RoleName=role, Tags=[{"Key": "team", "Value": "db"}])
    assert iam.list_role_tags(RoleName=role)["Tags"] == [{"Key": "team", "Value": "db"}]
    assert iam.get_role(RoleName=role)["Role"]["Tags"] == [{"Key": "team", "Value": "db"}]
    iam.untag_role(RoleName=role, TagKeys=["team"])
    assert iam.list_role_tags(RoleName=role) | {"ResponseMetadata": None} == {"Tags": [], "IsTruncated": False, "ResponseMetadata": None}
    # unknown names, AWS's limits and texts
    assert refused(iam.tag_user, UserName="nobody-here", Tags=[{"Key": "a", "Value": "b"}]) == ("NoSuchEntity", "The user with name nobody-here cannot be found.")
    assert refused(iam.list_role_tags, RoleName="nobody-here") == ("NoSuchEntity", "The role with name nobody-here cannot be found.")
    assert refused(iam.untag_role, RoleName="nobody-here", TagKeys=["a"])[0] == "NoSuchEntity"
    many = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    code, message = refused(iam.tag_user, UserName=user, Tags=many)
    assert code == "ValidationError" and message.endswith("at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50")
    code, message = refused(iam.tag_user, UserName=user, Tags=[{"Key": "k" * 129, "Value": "v"}])
    assert code == "ValidationError" and "Member must have length less than or equal to 128" in message
    code, message = refused(iam.tag_user, UserName=user, Tags=[{"Key": "bad<key", "Value": "v"}])
    assert code == "ValidationError" and message.endswith(r"Member must satisfy regular expression pattern: [\p{L}\p{Z}\p{N}_.:/=+\-@]+")
    assert refused(iam.tag_user, UserName=user, Tags=[{"Key": "a", "Value": "1"}, {"Key": "A", "Value": "2"}]) == (
        "InvalidInput", "Duplicate tag keys found. Please note that Tag keys are case insensitive.")
    iam.tag_user(UserName=user, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(49)])
    assert refused(iam.tag_user, UserName=user, Tags=[{"Key": "one-more", "Value": "v"}]) == ("LimitExceeded", "Cannot exceed quota for TagsPerUser: 50")
    assert len(iam.list_user_tags(UserName=user)["Tags"]) == 50


def test_iam_tag_actions_evaluate_tag_condition_keys(dbkeep, account):
    iam = dbkeep.client("iam")
    ours, theirs = Caller(dbkeep, None).name, Caller(dbkeep, None).name
    iam.tag_user(UserName=ours, Tags=[{"Key": "team", "Value": "db"}])
    iam.tag_user(UserName=theirs, Tags=[{"Key": "team", "Value": "web"}])
    caller = Caller(dbkeep, policy(
        {**allow("iam:TagUser"), "Condition": {"StringEquals": {"aws:ResourceTag/team": "db"},
                                               "ForAllValues:StringEquals": {"aws:TagKeys": ["temp"]}}},
        {**allow("iam:UntagUser"), "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["temp"]}}},
        allow("iam:ListUserTags"),
    )).client("iam")
    caller.tag_user(UserName=ours, Tags=[{"Key": "temp", "Value": "1"}])
    assert refused(caller.tag_user, UserName=theirs, Tags=[{"Key": "temp", "Value": "1"}])[0] == "AccessDenied"  # aws:ResourceTag
    assert refused(caller.tag_user, UserName=ours, Tags=[{"Key": "team", "Value": "web"}])[0] == "AccessDenied"  # aws:TagKeys
    assert refused(caller.untag_user, UserName=ours, TagKeys=["team"])[0] == "AccessDenied"
    caller.untag_user(UserName=ours, TagKeys=["temp"])
    assert caller.list_user_tags(UserName=ours)["Tags"] == [{"Key": "team", "Value": "db"}]


# --- item 7: no existence oracle -------------------------------------------------------------------


def _same_denial(call, existing: str, missing: str, param: str, code: str = "AccessDenied", **kwargs) -> None:
    """``call`` answers alike for an existing and a missing name (the names aside)."""
    got = []
    for name in (existing, missing):
        c, message = refused(call, **{param: name}, **kwargs)
        got.append((c, re.sub(re.escape(name), "NAME", message)))
    assert got[0] == got[1] and got[0][0] == code, got


def test_iam_denied_caller_cannot_tell_whether_a_name_exists(dbkeep, account):
    iam = dbkeep.client("iam")
    user = Caller(dbkeep, None).name
    group, role = f"g-{uuid.uuid4().hex[:6]}", f"r-{uuid.uuid4().hex[:6]}"
    iam.create_group(GroupName=group)
    trust = json.dumps(policy({"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"}, "Action": "sts:AssumeRole"}))
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
    pol = iam.create_policy(PolicyName=f"p-{uuid.uuid4().hex[:6]}", PolicyDocument=json.dumps(policy(allow("rds:Describe*"))))["Policy"]["Arn"]
    missing = f"missing-{uuid.uuid4().hex[:6]}"
    nobody = Caller(dbkeep, None)  # no policy at all
    denied = nobody.client("iam")
    _same_denial(denied.get_user, user, missing, "UserName")
    _same_denial(denied.delete_user, user, missing, "UserName")
    _same_denial(denied.list_access_keys, user, missing, "UserName")
    _same_denial(denied.create_access_key, user, missing, "UserName")
    _same_denial(denied.list_user_tags, user, missing, "UserName")
    _same_denial(denied.tag_user, user, missing, "UserName", Tags=[{"Key": "a", "Value": "b"}])
    _same_denial(denied.put_user_policy, user, missing, "UserName", PolicyName="p", PolicyDocument=json.dumps(policy(allow("*"))))
    _same_denial(denied.attach_user_policy, user, missing, "UserName", PolicyArn=pol)
    _same_denial(denied.get_group, group, missing, "GroupName")
    _same_denial(denied.add_user_to_group, group, missing, "GroupName", UserName=user)
    _same_denial(denied.get_role, role, missing, "RoleName")
    _same_denial(denied.list_role_tags, role, missing, "RoleName")
    _same_denial(denied.get_policy, pol, pol.replace(pol.rsplit("/", 1)[1], missing), "PolicyArn")
    # may add to this group, but not learn which users exist through it
    adder = Caller(dbkeep, policy(allow("iam:AddUserToGroup", f"arn:aws:iam::{account}:group/{group}"))).client("iam")
    assert refused(adder.add_user_to_group, GroupName=missing, UserName=user)[0] == "AccessDenied"
    # STS: a caller that may not assume a role hears the same about a missing one
    sts = nobody.client("sts")
    _same_denial(sts.assume_role, f"arn:aws:iam::{account}:role/{role}", f"arn:aws:iam::{account}:role/{missing}", "RoleArn", RoleSessionName="s1")
    # every denial is an audit event
    events = [json.loads(line) for line in (dbkeep.state_dir / "audit.log").read_text().splitlines()]
    mine = [e for e in events if e.get("principal", "").endswith(f"user/{nobody.name}") and e["verdict"] == "deny"]
    assert {e["resource"] for e in mine} >= {f"arn:aws:iam::{account}:user/{user}", f"arn:aws:iam::{account}:user/{missing}",
                                               f"arn:aws:iam::{account}:role/{missing}"}


def test_rds_and_ec2_denied_caller_cannot_tell_whether_a_name_exists(dbkeep, cluster, account):
    root_rds, root_ec2 = dbkeep.client("rds"), dbkeep.client("ec2")
    pg = unique("pg-oracle")
    root_rds.create_db_cluster_parameter_group(DBClusterParameterGroupName=pg, DBParameterGroupFamily="aurora-postgresql15", Description="x")
    sg = root_ec2.create_security_group(GroupName=unique("oracle"), Description="x")["GroupId"]
    sg_name = root_ec2.describe_security_groups(GroupIds=[sg])["SecurityGroups"][0]["GroupName"]
    missing = unique("missing")
    nobody = Caller(dbkeep, None)
    rds, ec2 = nobody.client("rds"), nobody.client("ec2")
    _same_denial(rds.describe_db_clusters, cluster["id"], missing, "DBClusterIdentifier")
    _same_denial(rds.modify_db_cluster, cluster["id"], missing, "DBClusterIdentifier", DeletionProtection=False)
    _same_denial(rds.delete_db_cluster, cluster["id"], missing, "DBClusterIdentifier", SkipFinalSnapshot=True)
    _same_denial(rds.stop_db_cluster, cluster["id"], missing, "DBClusterIdentifier")
    _same_denial(rds.list_tags_for_resource, cluster["arn"], cluster["arn"].replace(cluster["id"], missing), "ResourceName")
    _same_denial(rds.describe_db_cluster_parameters, pg, missing, "DBClusterParameterGroupName")
    _same_denial(rds.delete_db_cluster_parameter_group, pg, missing, "DBClusterParameterGroupName")
    assert refused(rds.delete_db_instance, DBInstanceIdentifier=missing)[0] == "AccessDenied"
    assert refused(rds.reboot_db_instance, DBInstanceIdentifier=missing)[0] == "AccessDenied"
    # may create instances, but not in (or learn about) clusters it has no right to
    maker = Caller(dbkeep, policy(allow("rds:CreateDBInstance", f"arn:aws:rds:us-east-1:{account}:db:*"))).client("rds")
    _same_denial(maker.create_db_instance, cluster["id"], missing, "DBClusterIdentifier", DBInstanceIdentifier=unique("i"),
                 Engine="aurora-postgresql", DBInstanceClass="db.r6g.large")
    code = "UnauthorizedOperation"
    _same_denial(ec2.delete_security_group, sg, "sg-0123456789abcdef0", "GroupId", code)
    _same_denial(ec2.delete_security_group, sg_name, missing, "GroupName", code)
    _same_denial(ec2.authorize_security_group_ingress, sg, "sg-0123456789abcdef0", "GroupId", code, IpProtocol="tcp", FromPort=1, ToPort=2, CidrIp="192.0.2.0/24")
    assert refused(ec2.describe_security_groups, GroupIds=["sg-0123456789abcdef0"])[0] == code
