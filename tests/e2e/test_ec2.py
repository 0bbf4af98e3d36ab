"""EC2 security groups of the default VPC: the API surface, with EC2's XML and error codes."""

from __future__ import annotations

import uuid

import botocore.exceptions
import pytest

from clusters import unique


def error_of(excinfo):
    return excinfo.value.response["Error"]["Code"], excinfo.value.response["Error"]["Message"]


def test_default_vpc_and_group(dbkeep):
    ec2 = dbkeep.client("ec2")
    vpcs = ec2.describe_vpcs()["Vpcs"]
    assert len(vpcs) == 1 and vpcs[0]["IsDefault"] is True and vpcs[0]["VpcId"].startswith("vpc-") and len(vpcs[0]["VpcId"]) == 21
    default = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"][0]
    assert default["GroupId"].startswith("sg-") and len(default["GroupId"]) == 20
    cidrs = {r["CidrIp"] for p in default["IpPermissions"] for r in p["IpRanges"]}
    cidrs6 = {r["CidrIpv6"] for p in default["IpPermissions"] for r in p["Ipv6Ranges"]}
    assert cidrs == {"127.0.0.0/8"} and cidrs6 == {"::1/128"}


def test_group_lifecycle_and_errors(dbkeep):
    ec2 = dbkeep.client("ec2")
    name = f"db-{uuid.uuid4().hex[:6]}"
    gid = ec2.create_security_group(GroupName=name, Description="databases")["GroupId"]
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        ec2.create_security_group(GroupName=name, Description="again")
    assert error_of(exc)[0] == "InvalidGroup.Duplicate"
    rules = ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306, "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "office"}]},
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "Ipv6Ranges": [{"CidrIpv6": "2001:db8::/32"}]},
    ])["SecurityGroupRules"]
    assert {r.get("CidrIpv4") or r.get("CidrIpv6") for r in rules} == {"10.0.0.0/8", "2001:db8::/32"}
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        ec2.authorize_security_group_ingress(GroupId=gid, IpProtocol="tcp", FromPort=3306, ToPort=3306, CidrIp="10.0.0.0/8")
    assert error_of(exc) == ("InvalidPermission.Duplicate", 'the specified rule "peer: 10.0.0.0/8, TCP, from port: 3306, to port: 3306, ALLOW" already exists')
    for bad in ({"CidrIp": "10.0.0.300/8"}, {"CidrIp": "10.0.0.1/8"}, {"FromPort": 10, "ToPort": 5}, {"IpProtocol": "sctp-ish"}):
        args = dict(GroupId=gid, IpProtocol="tcp", FromPort=1, ToPort=2, CidrIp="192.0.2.0/24")
        args.update(bad)
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            ec2.authorize_security_group_ingress(**args)
        assert error_of(exc)[0] == "InvalidParameterValue", bad
    described = ec2.describe_security_groups(GroupIds=[gid])["SecurityGroups"][0]
    assert described["GroupName"] == name and len(described["IpPermissions"]) == 2
    ec2.revoke_security_group_ingress(GroupId=gid, IpProtocol="tcp", FromPort=3306, ToPort=3306, CidrIp="10.0.0.0/8")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        ec2.revoke_security_group_ingress(GroupId=gid, IpProtocol="tcp", FromPort=3306, ToPort=3306, CidrIp="10.0.0.0/8")
    assert error_of(exc)[0] == "InvalidPermission.NotFound"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        ec2.describe_security_groups(GroupIds=["sg-0123456789abcdef0"])
    assert error_of(exc) == ("InvalidGroup.NotFound", "The security group 'sg-0123456789abcdef0' does not exist")
    ec2.delete_security_group(GroupId=gid)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        ec2.delete_security_group(GroupId=gid)
    assert error_of(exc)[0] == "InvalidGroup.NotFound"


def test_group_in_use_cannot_be_deleted(dbkeep):
    ec2, rds = dbkeep.client("ec2"), dbkeep.client("rds")
    gid = ec2.create_security_group(GroupName=f"inuse-{uuid.uuid4().hex[:6]}", Description="x")["GroupId"]
    ident = unique("sgc")
    rds.create_db_cluster(DBClusterIdentifier=ident, Engine="aurora-postgresql", MasterUsername="master",
                          MasterUserPassword="Sg-Pass-123", VpcSecurityGroupIds=[gid])
    assert rds.describe_db_clusters(DBClusterIdentifier=ident)["DBClusters"][0]["VpcSecurityGroups"] == [
        {"VpcSecurityGroupId": gid, "Status": "active"}]
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        ec2.delete_security_group(GroupId=gid)
    assert error_of(exc)[0] == "DependencyViolation"
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        rds.modify_db_cluster(DBClusterIdentifier=ident, VpcSecurityGroupIds=["sg-00000000000000000"])
    assert error_of(exc)[0] == "InvalidParameterValue"
