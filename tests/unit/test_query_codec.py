"""The Query/EC2 codec against botocore itself: what botocore serialises we parse back to the same
values, and what we serialise botocore parses back to the same values."""

from __future__ import annotations

import datetime as dt

import pytest
from botocore.parsers import create_parser
from botocore.serialize import create_serializer

from dbkeep.api import query
from dbkeep.errors import ApiError

REQUESTS = [
    ("iam", "CreateUser", {"UserName": "alice", "Path": "/ops/", "Tags": [{"Key": "team", "Value": "db"}, {"Key": "k2", "Value": ""}]}),
    ("iam", "PutUserPolicy", {"UserName": "a", "PolicyName": "p", "PolicyDocument": '{"Version": "2012-10-17"}'}),
    ("sts", "AssumeRole", {"RoleArn": "arn:aws:iam::123456789012:role/r", "RoleSessionName": "s1", "DurationSeconds": 900}),
    ("rds", "CreateDBCluster", {"DBClusterIdentifier": "c1", "Engine": "aurora-mysql", "MasterUsername": "admin",
                                "MasterUserPassword": "p&ss=w0rd+", "VpcSecurityGroupIds": ["sg-1", "sg-2"], "Port": 3306,
                                "EnableIAMDatabaseAuthentication": True, "DeletionProtection": False,
                                "Tags": [{"Key": "k", "Value": "v"}]}),
    ("rds", "ModifyDBClusterParameterGroup", {"DBClusterParameterGroupName": "pg", "Parameters": [
        {"ParameterName": "require_secure_transport", "ParameterValue": "ON", "ApplyMethod": "immediate"},
        {"ParameterName": "tls_version", "ParameterValue": "TLSv1.2,TLSv1.3", "ApplyMethod": "pending-reboot"}]}),
    ("rds", "DescribeDBClusters", {"Filters": [{"Name": "engine", "Values": ["aurora-mysql", "aurora-postgresql"]}], "MaxRecords": 20}),
    ("ec2", "AuthorizeSecurityGroupIngress", {"GroupId": "sg-1", "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 3306, "ToPort": 3306, "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "x"}],
         "Ipv6Ranges": [{"CidrIpv6": "::1/128"}]}]}),
    ("ec2", "DescribeSecurityGroups", {"GroupIds": ["sg-1"], "Filters": [{"Name": "group-name", "Values": ["db"]}]}),
    ("ec2", "CreateSecurityGroup", {"GroupName": "db", "Description": "d", "TagSpecifications": [
        {"ResourceType": "security-group", "Tags": [{"Key": "k", "Value": "v"}]}]}),
]


@pytest.mark.parametrize("service,operation,params", REQUESTS, ids=[f"{r[0]}-{r[1]}" for r in REQUESTS])
def test_botocore_request_parses_back(service, operation, params):
    model = query.service_model(service)
    op = model.operation_model(operation)
    serialized = create_serializer(model.protocol).serialize_to_request(params, op)
    flat = {k: str(v) for k, v in serialized["body"].items()}
    parsed = query.parse_request(op, flat, "parameter")
    assert parsed == params


RESPONSES = [
    ("iam", "CreateUser", {"User": {"Path": "/", "UserName": "alice", "UserId": "AIDAX", "Arn": "arn:aws:iam::1:user/alice",
                                    "CreateDate": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
                                    "Tags": [{"Key": "a<b", "Value": "&"}]}}),
    ("iam", "ListUsers", {"Users": [], "IsTruncated": False}),
    ("sts", "GetCallerIdentity", {"UserId": "1", "Account": "123456789012", "Arn": "arn:aws:iam::123456789012:root"}),
    ("rds", "DescribeDBClusters", {"DBClusters": [{"DBClusterIdentifier": "c1", "Port": 3306, "IAMDatabaseAuthenticationEnabled": True,
                                                   "VpcSecurityGroups": [{"VpcSecurityGroupId": "sg-1", "Status": "active"}],
                                                   "DBClusterMembers": [{"DBInstanceIdentifier": "i1", "IsClusterWriter": True}],
                                                   "AvailabilityZones": ["us-east-1a"]}], "Marker": "20"}),
    ("ec2", "DescribeSecurityGroups", {"SecurityGroups": [{"GroupId": "sg-1", "GroupName": "db", "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 1, "ToPort": 2, "IpRanges": [{"CidrIp": "10.0.0.0/8"}], "Ipv6Ranges": [], "UserIdGroupPairs": [],
         "PrefixListIds": []}]}]}),
]


@pytest.mark.parametrize("service,operation,result", RESPONSES, ids=[f"{r[0]}-{r[1]}" for r in RESPONSES])
def test_response_parses_in_botocore(service, operation, result):
    model = query.service_model(service)
    op = model.operation_model(operation)
    body = query.serialize_response(op, result, "req-1")
    parsed = create_parser(model.protocol).parse({"body": body.encode(), "headers": {}, "status_code": 200}, op.output_shape)
    metadata = parsed.pop("ResponseMetadata")
    assert metadata["RequestId"] == "req-1"
    assert parsed == result


@pytest.mark.parametrize("service", ["iam", "rds", "ec2"])
def test_error_envelope_parses_in_botocore(service):
    model = query.service_model(service)
    body = query.serialize_error(model, ApiError("NoSuchEntity", "The user with name <x> cannot be found.", 404), "req-2")
    parsed = create_parser(model.protocol).parse({"body": body.encode(), "headers": {}, "status_code": 404}, None)
    assert parsed["Error"]["Code"] == "NoSuchEntity"
    assert parsed["Error"]["Message"] == "The user with name <x> cannot be found."
    assert parsed["ResponseMetadata"]["RequestId"] == "req-2"


@pytest.mark.parametrize("flat,code", [
    ({"UserName": "x" * 65}, "ValidationError"),
    ({}, "ValidationError"),
    ({"UserName": "ok", "Tags.member.0.Key": "k"}, "ValidationError"),
    ({"UserName": "ok", "Tags.member.x.Key": "k"}, "ValidationError"),
    ({"UserName": "bad name"}, "ValidationError"),
])
def test_bad_iam_input(flat, code):
    op = query.service_model("iam").operation_model("CreateUser")
    with pytest.raises(ApiError) as exc:
        query.parse_request(op, flat, "validation")
    assert exc.value.code == code


@pytest.mark.parametrize("flat", [{"DBClusterIdentifier": "c", "Port": "abc"}, {"DBClusterIdentifier": "c", "DeletionProtection": "maybe"}])
def test_bad_rds_scalars(flat):
    op = query.service_model("rds").operation_model("ModifyDBCluster")
    with pytest.raises(ApiError) as exc:
        query.parse_request(op, flat, "parameter")
    assert exc.value.code == "InvalidParameterValue"
