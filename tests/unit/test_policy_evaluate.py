"""Policy evaluation and AccessDenied texts (dbkeep.policy.evaluate).

The policies are the examples of the IAM User Guide ("Policy evaluation logic", the element
and condition-operator pages, "Example IAM identity-based policies") plus dbkeep's own RDS
cases.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from dbkeep.policy import Decision, RequestContext, access_denied_message, evaluate, parse_policy

ACCOUNT = "123456789012"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
CLUSTER = f"arn:aws:rds:us-east-1:{ACCOUNT}:cluster:c1"


def policy(*statements: dict[str, Any], version: str | None = "2012-10-17", kind: str = "identity") -> Any:
    body: dict[str, Any] = {"Statement": list(statements)}
    if version:
        body["Version"] = version
    return parse_policy(json.dumps(body), kind=kind)


# --- "Policy evaluation logic": Carlos and his buckets -------------------------------------------

CARLOS_IDENTITY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "AllowS3ListRead", "Effect": "Allow",
         "Action": ["s3:GetBucketLocation", "s3:GetAccountPublicAccessBlock", "s3:ListAccessPoints",
                    "s3:ListAllMyBuckets"],
         "Resource": "arn:aws:s3:::*"},
        {"Sid": "AllowS3Self", "Effect": "Allow", "Action": "s3:*",
         "Resource": ["arn:aws:s3:::carlossalazar/*", "arn:aws:s3:::carlossalazar"]},
        {"Sid": "DenyS3Logs", "Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::*log*"},
    ],
}
CARLOS_BUCKET = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:user/carlossalazar"},
                   "Action": "s3:*",
                   "Resource": ["arn:aws:s3:::carlossalazar/*", "arn:aws:s3:::carlossalazar"]}],
}

# --- "The difference between explicit and implicit denies" ---------------------------------------

GET_LIST_NO_REPORTS = {
    "Version": "2012-10-17",
    "Statement": [
        {"Sid": "AllowGetList", "Effect": "Allow", "Action": ["iam:Get*", "iam:List*"], "Resource": "*"},
        {"Sid": "DenyReports", "Effect": "Deny", "Action": "iam:*Report", "Resource": "*"},
    ],
}

# --- element pages ---------------------------------------------------------------------------------

NOT_ACTION_S3 = {"Version": "2012-10-17",
                 "Statement": {"Effect": "Allow", "NotAction": "s3:DeleteBucket", "Resource": "arn:aws:s3:::*"}}
NOT_ACTION_IAM = {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}}
DENY_WITHOUT_MFA = {"Version": "2012-10-17", "Statement": [
    {"Sid": "DenyAllUsersNotUsingMFA", "Effect": "Deny", "NotAction": "iam:*", "Resource": "*",
     "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}},
    {"Effect": "Allow", "Action": "*", "Resource": "*"},
]}
HR_PAYROLL = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Deny", "Action": "s3:*",
     "NotResource": ["arn:aws:s3:::HRBucket/Payroll", "arn:aws:s3:::HRBucket/Payroll/*"]},
    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
]}
HOME_DIRECTORY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["s3:ListAllMyBuckets", "s3:GetBucketLocation"], "Resource": "arn:aws:s3:::*"},
    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::BUCKET-NAME",
     "Condition": {"StringLike": {"s3:prefix": ["", "home/", "home/${aws:username}/"]}}},
    {"Effect": "Allow", "Action": "s3:*",
     "Resource": ["arn:aws:s3:::BUCKET-NAME/home/${aws:username}", "arn:aws:s3:::BUCKET-NAME/home/${aws:username}/*"]},
]}
HOME_DIRECTORY_2008 = {**HOME_DIRECTORY, "Version": "2008-10-17"}
OWN_ACCESS_KEYS = {"Version": "2012-10-17", "Statement": [
    {"Action": ["iam:*AccessKey*"], "Effect": "Allow", "Resource": ["arn:aws:iam::account-id:user/${aws:username}"]}]}
TEAM_BUCKET = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:*",
     "Resource": "arn:aws:s3:::DOC-EXAMPLE-BUCKET-${aws:PrincipalTag/team, 'company-wide'}"}]}
INSTANCE_TYPES = {"Version": "2012-10-17", "Statement": [
    {"Sid": "RunInstance", "Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "*",
     "Condition": {"StringLikeIfExists": {"ec2:InstanceType": ["t1.*", "t2.*", "m3.*"]}}}]}
INSTANCE_TYPES_BROKEN = {"Version": "2012-10-17", "Statement": {
    "Sid": "THISPOLICYDOESNOTWORK", "Effect": "Allow", "Action": "ec2:RunInstances", "Resource": "*",
    "Condition": {"StringLike": {"ec2:InstanceType": ["t1.*", "t2.*", "m3.*"]}}}}
NO_TEMPORARY_CREDENTIALS = {"Version": "2012-10-17", "Statement": {
    "Action": "ec2:*", "Effect": "Allow", "Resource": "*", "Condition": {"Null": {"aws:TokenIssueTime": "true"}}}}
DENY_INSECURE = {"Version": "2012-10-17", "Statement": [
    {"Sid": "BooleanExample", "Action": "s3:*", "Effect": "Deny",
     "Resource": ["arn:aws:s3:::DOC-EXAMPLE-BUCKET", "arn:aws:s3:::DOC-EXAMPLE-BUCKET/*"],
     "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
]}
SOURCE_IP = {"Version": "2012-10-17", "Statement": {
    "Effect": "Allow", "Action": "someservice:*", "Resource": "*",
    "Condition": {"IpAddress": {"aws:SourceIp": ["203.0.113.0/24", "2001:DB8:1234:5678::/64"]}}}}
DENY_IP = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Deny", "Action": "*", "Resource": "*",
     "Condition": {"NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "203.0.113.0/24"]},
                   "Bool": {"aws:ViaAWSService": "false"}}},
    {"Effect": "Allow", "Action": "*", "Resource": "*"},
]}
DENY_REGIONS = {"Version": "2012-10-17", "Statement": [
    {"Sid": "DenyAllOutsideRequestedRegions", "Effect": "Deny",
     "NotAction": ["cloudfront:*", "iam:*", "route53:*", "support:*"], "Resource": "*",
     "Condition": {"StringNotEquals": {"aws:RequestedRegion": ["eu-central-1", "eu-west-1", "eu-west-2",
                                                              "eu-west-3"]}}},
    {"Effect": "Allow", "Action": "*", "Resource": "*"},
]}
MFA_DATES = {"Version": "2012-10-17", "Statement": {
    "Effect": "Allow",
    "Action": ["service-prefix-1:*", "service-prefix-2:action-name-a", "service-prefix-2:action-name-b"],
    "Resource": "*",
    "Condition": {"Bool": {"aws:MultiFactorAuthPresent": True},
                  "DateGreaterThan": {"aws:CurrentTime": "2017-07-01T00:00:00Z"},
                  "DateLessThan": {"aws:CurrentTime": "2017-12-31T23:59:59Z"}}}}
ACCESS_KEYS_BY_TAG = {"Version": "2012-10-17", "Statement": {
    "Effect": "Allow", "Action": "iam:*AccessKey*", "Resource": "arn:aws:iam::account-id:user/*",
    "Condition": {"StringEquals": {"aws:PrincipalTag/job-category": "iamuser-admin"}}}}
DYNAMO_ALL_VALUES = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "arn:aws:dynamodb:*:*:table/Thread",
    "Condition": {"ForAllValues:StringEquals": {"dynamodb:Attributes": ["ID", "Message", "Tags"]}}}]}
DYNAMO_ANY_VALUE = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Deny", "Action": "dynamodb:PutItem", "Resource": "arn:aws:dynamodb:*:*:table/Thread",
     "Condition": {"ForAnyValue:StringEquals": {"dynamodb:Attributes": ["ID", "PostDateTime"]}}},
    {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},
]}
RDS_TAG_OWNER = {"Version": "2012-10-17", "Statement": [
    {"Action": ["rds:Describe*", "rds:List*"], "Effect": "Allow", "Resource": "*"},
    {"Action": ["rds:DeleteDBInstance", "rds:RebootDBInstance", "rds:ModifyDBInstance"], "Effect": "Allow",
     "Resource": "*", "Condition": {"StringEqualsIgnoreCase": {"rds:db-tag/Owner": "${aws:username}"}}},
]}
RDS_REGION = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "rds:*", "Resource": ["arn:aws:rds:us-east-1:*:*"]},
    {"Effect": "Allow", "Action": ["rds:Describe*"], "Resource": ["*"]},
]}
RDS_DB_CONNECT = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": ["rds-db:connect"],
    "Resource": ["arn:aws:rds-db:us-east-2:1234567890:dbuser:cluster-ABCDEFGHIJKL01234/db_user"]}]}
RDS_DB_CONNECT_ANY_USER = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": "rds-db:connect",
    "Resource": "arn:aws:rds-db:us-east-2:1234567890:dbuser:cluster-ABCDEFGHIJKL01234/*",
    "Condition": {"Bool": {"aws:SecureTransport": "true"}, "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}]}
RDS_SELF_CLUSTERS = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "rds:*", "Resource": f"arn:aws:rds:*:{ACCOUNT}:cluster:${{aws:username}}-*"},
    {"Effect": "Deny", "Action": "rds:DeleteDBCluster", "Resource": "*",
     "Condition": {"StringEquals": {"aws:PrincipalTag/Team": "interns"}}},
]}
ENGINE_ONLY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "rds:CreateDBCluster", "Resource": "*",
     "Condition": {"StringEquals": {"rds:DatabaseEngine": "aurora-postgresql"}}}]}
EMPTY_ALLOW = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "rds:Describe*", "Resource": "*"}]}

A = True
D = False
CASES: list[tuple[str, list[dict[str, Any]], str, str, dict[str, Any], Decision]] = [
    # (id, policies, action, resource, keys, expected)
    ("carlos-logs-denied", [CARLOS_IDENTITY], "s3:PutObject", "arn:aws:s3:::carlossalazar-logs/f.txt", {},
     Decision(D, "explicit_deny")),
    ("carlos-own-bucket", [CARLOS_IDENTITY], "s3:PutObject", "arn:aws:s3:::carlossalazar/f.txt", {},
     Decision(A, "allow")),
    ("carlos-list-buckets", [CARLOS_IDENTITY], "s3:ListAllMyBuckets", "arn:aws:s3:::anything", {},
     Decision(A, "allow")),
    ("carlos-other-bucket", [CARLOS_IDENTITY], "s3:PutObject", "arn:aws:s3:::someone-else/f.txt", {},
     Decision(D, "implicit_deny")),
    ("carlos-both-policies", [CARLOS_IDENTITY, CARLOS_BUCKET], "s3:GetObject", "arn:aws:s3:::carlossalazar/f",
     {}, Decision(A, "allow")),
    ("get-list-allowed", [GET_LIST_NO_REPORTS], "iam:GetUser", "*", {}, Decision(A, "allow")),
    ("get-list-case", [GET_LIST_NO_REPORTS], "IAM:listusers", "*", {}, Decision(A, "allow")),
    ("create-policy-implicit", [GET_LIST_NO_REPORTS], "iam:CreatePolicy", "*", {}, Decision(D, "implicit_deny")),
    ("reports-explicit", [GET_LIST_NO_REPORTS], "iam:GetOrganizationsAccessReport", "*", {},
     Decision(D, "explicit_deny")),
    ("reports-beat-other-allow", [GET_LIST_NO_REPORTS, {"Statement": {"Effect": "Allow", "Action":
                                                                   "iam:GenerateCredentialReport", "Resource": "*"}}],
     "iam:GenerateCredentialReport", "*", {}, Decision(D, "explicit_deny")),
    ("not-action-allows-others", [NOT_ACTION_S3], "s3:GetObject", "arn:aws:s3:::b/k", {}, Decision(A, "allow")),
    ("not-action-excludes", [NOT_ACTION_S3], "s3:DeleteBucket", "arn:aws:s3:::b", {}, Decision(D, "implicit_deny")),
    ("not-action-resource-scope", [NOT_ACTION_S3], "rds:CreateDBCluster", CLUSTER, {}, Decision(D, "implicit_deny")),
    ("not-action-iam-allows-rds", [NOT_ACTION_IAM], "rds:CreateDBCluster", CLUSTER, {}, Decision(A, "allow")),
    ("not-action-iam-blocks-iam", [NOT_ACTION_IAM], "iam:CreateUser", "*", {}, Decision(D, "implicit_deny")),
    ("mfa-missing-denied", [DENY_WITHOUT_MFA], "rds:CreateDBCluster", CLUSTER,
     {"aws:MultiFactorAuthPresent": "false"}, Decision(D, "explicit_deny")),
    ("mfa-key-absent-denied", [DENY_WITHOUT_MFA], "rds:CreateDBCluster", CLUSTER, {}, Decision(D, "explicit_deny")),
    ("mfa-present", [DENY_WITHOUT_MFA], "rds:CreateDBCluster", CLUSTER, {"aws:MultiFactorAuthPresent": "true"},
     Decision(A, "allow")),
    ("mfa-iam-exempt", [DENY_WITHOUT_MFA], "iam:ChangePassword", "*", {}, Decision(A, "allow")),
    ("hr-payroll-allowed", [HR_PAYROLL], "s3:GetObject", "arn:aws:s3:::HRBucket/Payroll/jan.csv", {},
     Decision(A, "allow")),
    ("hr-other-denied", [HR_PAYROLL], "s3:GetObject", "arn:aws:s3:::HRBucket/Board/minutes", {},
     Decision(D, "explicit_deny")),
    ("hr-ec2-untouched", [HR_PAYROLL], "ec2:RunInstances", "*", {}, Decision(D, "implicit_deny")),
    ("home-own", [HOME_DIRECTORY], "s3:GetObject", "arn:aws:s3:::BUCKET-NAME/home/alice/notes.txt",
     {"aws:username": "alice"}, Decision(A, "allow")),
    ("home-other", [HOME_DIRECTORY], "s3:GetObject", "arn:aws:s3:::BUCKET-NAME/home/bob/notes.txt",
     {"aws:username": "alice"}, Decision(D, "implicit_deny")),
    ("home-list-prefix", [HOME_DIRECTORY], "s3:ListBucket", "arn:aws:s3:::BUCKET-NAME",
     {"aws:username": "alice", "s3:prefix": "home/alice/"}, Decision(A, "allow")),
    ("home-list-other-prefix", [HOME_DIRECTORY], "s3:ListBucket", "arn:aws:s3:::BUCKET-NAME",
     {"aws:username": "alice", "s3:prefix": "home/bob/"}, Decision(D, "implicit_deny")),
    ("home-list-root", [HOME_DIRECTORY], "s3:ListBucket", "arn:aws:s3:::BUCKET-NAME",
     {"aws:username": "alice", "s3:prefix": ""}, Decision(A, "allow")),
    ("home-no-username", [HOME_DIRECTORY], "s3:GetObject", "arn:aws:s3:::BUCKET-NAME/home/alice/notes.txt",
     {}, Decision(D, "implicit_deny")),
    ("home-2008-literal", [HOME_DIRECTORY_2008], "s3:GetObject", "arn:aws:s3:::BUCKET-NAME/home/alice/x",
     {"aws:username": "alice"}, Decision(D, "implicit_deny")),
    ("home-2008-literal-match", [HOME_DIRECTORY_2008], "s3:GetObject",
     "arn:aws:s3:::BUCKET-NAME/home/${aws:username}/x", {"aws:username": "alice"}, Decision(A, "allow")),
    ("own-access-key", [OWN_ACCESS_KEYS], "iam:CreateAccessKey", "arn:aws:iam::account-id:user/David",
     {"aws:username": "David"}, Decision(A, "allow")),
    ("other-access-key", [OWN_ACCESS_KEYS], "iam:CreateAccessKey", "arn:aws:iam::account-id:user/David",
     {"aws:username": "Adele"}, Decision(D, "implicit_deny")),
    ("team-bucket", [TEAM_BUCKET], "s3:GetObject", "arn:aws:s3:::DOC-EXAMPLE-BUCKET-yellow",
     {"aws:PrincipalTag/team": "yellow"}, Decision(A, "allow")),
    ("team-bucket-default", [TEAM_BUCKET], "s3:GetObject", "arn:aws:s3:::DOC-EXAMPLE-BUCKET-company-wide", {},
     Decision(A, "allow")),
    ("team-bucket-not-default-when-tagged", [TEAM_BUCKET], "s3:GetObject",
     "arn:aws:s3:::DOC-EXAMPLE-BUCKET-company-wide", {"aws:PrincipalTag/team": "yellow"},
     Decision(D, "implicit_deny")),
    ("if-exists-key-absent", [INSTANCE_TYPES], "ec2:RunInstances", "arn:aws:ec2:us-east-1::image/ami-1", {},
     Decision(A, "allow")),
    ("if-exists-good-type", [INSTANCE_TYPES], "ec2:RunInstances", "arn:aws:ec2:us-east-1:1:instance/*",
     {"ec2:InstanceType": "t2.micro"}, Decision(A, "allow")),
    ("if-exists-bad-type", [INSTANCE_TYPES], "ec2:RunInstances", "arn:aws:ec2:us-east-1:1:instance/*",
     {"ec2:InstanceType": "p4d.24xlarge"}, Decision(D, "implicit_deny")),
    ("without-if-exists-fails", [INSTANCE_TYPES_BROKEN], "ec2:RunInstances", "arn:aws:ec2:us-east-1::image/ami-1",
     {}, Decision(D, "implicit_deny")),
    ("null-long-term-keys", [NO_TEMPORARY_CREDENTIALS], "ec2:DescribeInstances", "*", {}, Decision(A, "allow")),
    ("null-temporary", [NO_TEMPORARY_CREDENTIALS], "ec2:DescribeInstances", "*",
     {"aws:TokenIssueTime": "2020-01-01T00:00:00Z"}, Decision(D, "implicit_deny")),
    ("insecure-denied", [DENY_INSECURE], "s3:GetObject", "arn:aws:s3:::DOC-EXAMPLE-BUCKET/k",
     {"aws:SecureTransport": "false"}, Decision(D, "explicit_deny")),
    ("secure-allowed", [DENY_INSECURE], "s3:GetObject", "arn:aws:s3:::DOC-EXAMPLE-BUCKET/k",
     {"aws:SecureTransport": "true"}, Decision(A, "allow")),
    ("source-ip-v4", [SOURCE_IP], "someservice:Do", "*", {"aws:SourceIp": "203.0.113.7"}, Decision(A, "allow")),
    ("source-ip-v6", [SOURCE_IP], "someservice:Do", "*", {"aws:SourceIp": "2001:db8:1234:5678::abcd"},
     Decision(A, "allow")),
    ("source-ip-outside", [SOURCE_IP], "someservice:Do", "*", {"aws:SourceIp": "198.51.100.1"},
     Decision(D, "implicit_deny")),
    ("source-ip-absent", [SOURCE_IP], "someservice:Do", "*", {}, Decision(D, "implicit_deny")),
    ("deny-ip-outside", [DENY_IP], "rds:CreateDBCluster", CLUSTER,
     {"aws:SourceIp": "198.51.100.1", "aws:ViaAWSService": "false"}, Decision(D, "explicit_deny")),
    ("deny-ip-inside", [DENY_IP], "rds:CreateDBCluster", CLUSTER,
     {"aws:SourceIp": "192.0.2.10", "aws:ViaAWSService": "false"}, Decision(A, "allow")),
    ("deny-ip-via-service", [DENY_IP], "rds:CreateDBCluster", CLUSTER,
     {"aws:SourceIp": "198.51.100.1", "aws:ViaAWSService": "true"}, Decision(A, "allow")),
    ("region-outside", [DENY_REGIONS], "rds:CreateDBCluster", CLUSTER, {"aws:RequestedRegion": "us-east-1"},
     Decision(D, "explicit_deny")),
    ("region-inside", [DENY_REGIONS], "rds:CreateDBCluster", CLUSTER, {"aws:RequestedRegion": "eu-west-1"},
     Decision(A, "allow")),
    ("region-global-service", [DENY_REGIONS], "iam:CreateUser", "*", {"aws:RequestedRegion": "us-east-1"},
     Decision(A, "allow")),
    ("mfa-dates-in-window", [MFA_DATES], "service-prefix-1:Anything", "*",
     {"aws:MultiFactorAuthPresent": "true", "aws:CurrentTime": "2017-09-01T00:00:00Z"}, Decision(A, "allow")),
    ("mfa-dates-after", [MFA_DATES], "service-prefix-1:Anything", "*",
     {"aws:MultiFactorAuthPresent": "true", "aws:CurrentTime": "2018-01-01T00:00:00Z"}, Decision(D, "implicit_deny")),
    ("mfa-dates-no-mfa", [MFA_DATES], "service-prefix-2:action-name-a", "*",
     {"aws:MultiFactorAuthPresent": "false", "aws:CurrentTime": "2017-09-01T00:00:00Z"},
     Decision(D, "implicit_deny")),
    ("mfa-dates-other-action", [MFA_DATES], "service-prefix-2:action-name-c", "*",
     {"aws:MultiFactorAuthPresent": "true", "aws:CurrentTime": "2017-09-01T00:00:00Z"},
     Decision(D, "implicit_deny")),
    ("principal-tag", [ACCESS_KEYS_BY_TAG], "iam:UpdateAccessKey", "arn:aws:iam::account-id:user/x",
     {"aws:PrincipalTag/job-category": "iamuser-admin"}, Decision(A, "allow")),
    ("principal-tag-missing", [ACCESS_KEYS_BY_TAG], "iam:UpdateAccessKey", "arn:aws:iam::account-id:user/x", {},
     Decision(D, "implicit_deny")),
    ("dynamo-all-values-ok", [DYNAMO_ALL_VALUES], "dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:1:table/Thread",
     {"dynamodb:Attributes": ["ID", "Message", "Tags"]}, Decision(A, "allow")),
    ("dynamo-all-values-extra", [DYNAMO_ALL_VALUES], "dynamodb:GetItem",
     "arn:aws:dynamodb:us-east-1:1:table/Thread", {"dynamodb:Attributes": ["ID", "UserName"]},
     Decision(D, "implicit_deny")),
    ("dynamo-any-value-denied", [DYNAMO_ANY_VALUE], "dynamodb:PutItem",
     "arn:aws:dynamodb:us-east-1:1:table/Thread", {"dynamodb:Attributes": ["PostDateTime", "Message"]},
     Decision(D, "explicit_deny")),
    ("dynamo-any-value-other", [DYNAMO_ANY_VALUE], "dynamodb:PutItem",
     "arn:aws:dynamodb:us-east-1:1:table/Thread", {"dynamodb:Attributes": ["UserName"]}, Decision(A, "allow")),
    # RDS
    ("rds-owner-tag", [RDS_TAG_OWNER], "rds:RebootDBInstance", f"arn:aws:rds:us-east-1:{ACCOUNT}:db:d1",
     {"aws:username": "Alice", "rds:db-tag/Owner": "alice"}, Decision(A, "allow")),
    ("rds-owner-tag-other", [RDS_TAG_OWNER], "rds:RebootDBInstance", f"arn:aws:rds:us-east-1:{ACCOUNT}:db:d1",
     {"aws:username": "alice", "rds:db-tag/Owner": "bob"}, Decision(D, "implicit_deny")),
    ("rds-describe", [RDS_TAG_OWNER], "rds:DescribeDBClusters", "*", {}, Decision(A, "allow")),
    ("rds-region", [RDS_REGION], "rds:CreateDBCluster", CLUSTER, {}, Decision(A, "allow")),
    ("rds-other-region", [RDS_REGION], "rds:CreateDBCluster", "arn:aws:rds:eu-west-1:1:cluster:c1", {},
     Decision(D, "implicit_deny")),
    ("db-connect", [RDS_DB_CONNECT], "rds-db:connect",
     "arn:aws:rds-db:us-east-2:1234567890:dbuser:cluster-ABCDEFGHIJKL01234/db_user", {}, Decision(A, "allow")),
    ("db-connect-user-case", [RDS_DB_CONNECT], "rds-db:connect",
     "arn:aws:rds-db:us-east-2:1234567890:dbuser:cluster-ABCDEFGHIJKL01234/DB_USER", {},
     Decision(D, "implicit_deny")),
    ("db-connect-any-user", [RDS_DB_CONNECT_ANY_USER], "rds-db:connect",
     "arn:aws:rds-db:us-east-2:1234567890:dbuser:cluster-ABCDEFGHIJKL01234/jane",
     {"aws:SecureTransport": "true", "aws:SourceIp": "10.1.2.3"}, Decision(A, "allow")),
    ("db-connect-wrong-network", [RDS_DB_CONNECT_ANY_USER], "rds-db:connect",
     "arn:aws:rds-db:us-east-2:1234567890:dbuser:cluster-ABCDEFGHIJKL01234/jane",
     {"aws:SecureTransport": "true", "aws:SourceIp": "192.168.1.1"}, Decision(D, "implicit_deny")),
    ("db-connect-other-cluster", [RDS_DB_CONNECT_ANY_USER], "rds-db:connect",
     "arn:aws:rds-db:us-east-2:1234567890:dbuser:cluster-ZZZ/jane",
     {"aws:SecureTransport": "true", "aws:SourceIp": "10.1.2.3"}, Decision(D, "implicit_deny")),
    ("self-clusters", [RDS_SELF_CLUSTERS], "rds:ModifyDBCluster", f"arn:aws:rds:us-east-1:{ACCOUNT}:cluster:alice-db",
     {"aws:username": "alice"}, Decision(A, "allow")),
    ("self-clusters-other", [RDS_SELF_CLUSTERS], "rds:ModifyDBCluster",
     f"arn:aws:rds:us-east-1:{ACCOUNT}:cluster:bob-db", {"aws:username": "alice"}, Decision(D, "implicit_deny")),
    ("self-clusters-intern-delete", [RDS_SELF_CLUSTERS], "rds:DeleteDBCluster",
     f"arn:aws:rds:us-east-1:{ACCOUNT}:cluster:alice-db", {"aws:username": "alice", "aws:PrincipalTag/Team": "interns"},
     Decision(D, "explicit_deny")),
    ("engine-key", [ENGINE_ONLY], "rds:CreateDBCluster", CLUSTER, {"rds:DatabaseEngine": "aurora-postgresql"},
     Decision(A, "allow")),
    ("engine-key-other", [ENGINE_ONLY], "rds:CreateDBCluster", CLUSTER, {"rds:DatabaseEngine": "aurora-mysql"},
     Decision(D, "implicit_deny")),
    ("no-policies", [], "rds:DescribeDBClusters", "*", {}, Decision(D, "implicit_deny")),
    ("action-not-listed", [EMPTY_ALLOW], "rds:CreateDBCluster", CLUSTER, {}, Decision(D, "implicit_deny")),
    ("keys-case-insensitive", [DENY_INSECURE], "s3:GetObject", "arn:aws:s3:::DOC-EXAMPLE-BUCKET",
     {"AWS:SECURETRANSPORT": "false"}, Decision(D, "explicit_deny")),
]


@pytest.mark.parametrize(("policies", "action", "resource", "keys", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_evaluate(policies: list[dict[str, Any]], action: str, resource: str, keys: dict[str, Any],
                  expected: Decision) -> None:
    docs = [parse_policy(json.dumps(p), kind="resource" if _has_principal(p) else "identity") for p in policies]
    ctx = RequestContext(action, resource, "arn:aws:iam::123456789012:user/carlossalazar", keys)
    assert evaluate(docs, ctx) == expected


def _has_principal(p: dict[str, Any]) -> bool:
    statements = p["Statement"] if isinstance(p["Statement"], list) else [p["Statement"]]
    return any("Principal" in s for s in statements)


def test_root_may_do_everything() -> None:
    deny_all = policy({"Effect": "Deny", "Action": "*", "Resource": "*"})
    ctx = RequestContext("rds:DeleteDBCluster", CLUSTER, f"arn:aws:iam::{ACCOUNT}:root", {})
    assert evaluate([], ctx, is_root=True) == Decision(True, "root")
    assert evaluate([deny_all], ctx, is_root=True) == Decision(True, "root")
    assert evaluate([], ctx) == Decision(False, "implicit_deny")


def test_decision_carries_the_deciding_sid() -> None:
    doc = parse_policy(json.dumps(GET_LIST_NO_REPORTS))
    assert evaluate([doc], RequestContext("iam:GetUser", "*", ALICE, {})).sid == "AllowGetList"
    assert evaluate([doc], RequestContext("iam:GetCredentialReport", "*", ALICE, {})).sid == "DenyReports"


def test_deny_after_allow_in_a_later_policy_wins() -> None:
    allow = policy({"Effect": "Allow", "Action": "rds:*", "Resource": "*"})
    deny = policy({"Effect": "Deny", "Action": "rds:DeleteDBCluster", "Resource": CLUSTER})
    ctx = RequestContext("rds:DeleteDBCluster", CLUSTER, ALICE, {})
    assert evaluate([allow, deny], ctx) == Decision(False, "explicit_deny")
    assert evaluate([deny, allow], ctx) == Decision(False, "explicit_deny")


def test_failed_condition_on_deny_does_not_deny() -> None:
    allow = policy({"Effect": "Allow", "Action": "rds:*", "Resource": "*"})
    deny = policy({"Effect": "Deny", "Action": "rds:*", "Resource": "*",
                   "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}})
    ctx = RequestContext("rds:CreateDBCluster", CLUSTER, ALICE, {"aws:RequestedRegion": "us-east-1"})
    assert evaluate([allow, deny], ctx) == Decision(True, "allow")


def test_resource_policy_principal_is_matched() -> None:
    bucket = parse_policy(json.dumps(CARLOS_BUCKET), kind="resource")
    own = RequestContext("s3:GetObject", "arn:aws:s3:::carlossalazar/f", "arn:aws:iam::123456789012:user/carlossalazar")
    other = RequestContext("s3:GetObject", "arn:aws:s3:::carlossalazar/f", "arn:aws:iam::123456789012:user/mallory")
    assert evaluate([bucket], own) == Decision(True, "allow")
    assert evaluate([bucket], other) == Decision(False, "implicit_deny")


def test_variables_in_resource_with_absent_key_in_not_resource() -> None:
    # "the resource that includes a policy variable with no value will not match any resource"
    doc = policy({"Effect": "Deny", "Action": "s3:*", "NotResource": "arn:aws:s3:::home/${aws:username}/*"},
                 {"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    assert evaluate([doc], RequestContext("s3:GetObject", "arn:aws:s3:::home/alice/x", ALICE,
                                          {"aws:username": "alice"})) == Decision(True, "allow")
    assert evaluate([doc], RequestContext("s3:GetObject", "arn:aws:s3:::home/alice/x", ALICE,
                                          {})) == Decision(False, "explicit_deny")


def time_keys(now: dt.datetime) -> dict[str, str]:
    # What the API layer puts in every request context (dbkeep.api.context).
    return {"aws:CurrentTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "aws:EpochTime": str(int(now.timestamp()))}


def test_current_time_and_epoch_time_drive_date_conditions() -> None:
    doc = policy({"Effect": "Allow", "Action": "rds:*", "Resource": "*",
                  "Condition": {"DateLessThan": {"aws:EpochTime": "2026-06-01T00:00:00Z"},
                                "DateGreaterThanEquals": {"aws:CurrentTime": "2026-01-01"}}})
    before = dt.datetime(2025, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc)
    during = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    after = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)
    results = [evaluate([doc], RequestContext("rds:X", "*", ALICE, time_keys(t))).allowed
               for t in (before, during, after)]
    assert results == [False, True, False]


# --- AccessDenied texts ----------------------------------------------------------------------------

SESSION = "arn:aws:sts::966509639900:assumed-role/ansible-core-ci-test-dev/dev=remote=zuul-cloud"


@pytest.mark.parametrize(
    ("principal", "action", "resource", "decision", "kwargs", "text"),
    [
        (ALICE, "rds:CreateDBCluster", CLUSTER, Decision(False, "implicit_deny"), {},
         "User: arn:aws:iam::123456789012:user/alice is not authorized to perform: rds:CreateDBCluster on resource: "
         "arn:aws:rds:us-east-1:123456789012:cluster:c1 because no identity-based policy allows the "
         "rds:CreateDBCluster action"),
        (ALICE, "rds:CreateDBCluster", CLUSTER, Decision(False, "explicit_deny"), {},
         "User: arn:aws:iam::123456789012:user/alice is not authorized to perform: rds:CreateDBCluster on resource: "
         "arn:aws:rds:us-east-1:123456789012:cluster:c1 with an explicit deny in an identity-based policy"),
        (SESSION, "rds:CreateDBCluster", "arn:aws:rds:us-east-1:966509639900:subgrp:runner-testing-wisdom-pg",
         Decision(False, "implicit_deny"), {},
         "User: arn:aws:sts::966509639900:assumed-role/ansible-core-ci-test-dev/dev=remote=zuul-cloud is not "
         "authorized to perform: rds:CreateDBCluster on resource: "
         "arn:aws:rds:us-east-1:966509639900:subgrp:runner-testing-wisdom-pg because no identity-based policy "
         "allows the rds:CreateDBCluster action"),
        ("arn:aws:iam::777788889999:user/JohnDoe", "codecommit:ListRepositories", "",
         Decision(False, "implicit_deny"), {"policy_type": "VPC endpoint policy"},
         "User: arn:aws:iam::777788889999:user/JohnDoe is not authorized to perform: codecommit:ListRepositories "
         "because no VPC endpoint policy allows the codecommit:ListRepositories action"),
        ("arn:aws:iam::123456789012:user/JohnDoe", "codedeploy:ListDeployments",
         "arn:aws:codedeploy:us-east-1:123456789012:deploymentgroup:*", Decision(False, "implicit_deny"),
         {"policy_type": "permissions boundary"},
         "User: arn:aws:iam::123456789012:user/JohnDoe is not authorized to perform: codedeploy:ListDeployments on "
         "resource: arn:aws:codedeploy:us-east-1:123456789012:deploymentgroup:* because no permissions boundary "
         "allows the codedeploy:ListDeployments action"),
        ("arn:aws:iam::777788889999:user/JohnDoe", "sagemaker:ListModels", "", Decision(False, "explicit_deny"),
         {"policy_type": "permissions boundary"},
         "User: arn:aws:iam::777788889999:user/JohnDoe is not authorized to perform: sagemaker:ListModels with an "
         "explicit deny in a permissions boundary"),
        (ALICE, "s3:GetObject", "arn:aws:s3:::b/k", Decision(False, "explicit_deny"),
         {"policy_type": "resource-based policy"},
         "User: arn:aws:iam::123456789012:user/alice is not authorized to perform: s3:GetObject on resource: "
         "arn:aws:s3:::b/k with an explicit deny in a resource-based policy"),
        ("arn:aws:iam::999999999999:user/kaveh", "sts:AssumeRole", "arn:aws:iam::999999999999:role/amputate",
         Decision(False, "implicit_deny"), {"policy_type": None},
         "User: arn:aws:iam::999999999999:user/kaveh is not authorized to perform: sts:AssumeRole on resource: "
         "arn:aws:iam::999999999999:role/amputate"),
    ],
)
def test_access_denied_message(principal: str, action: str, resource: str, decision: Decision,
                               kwargs: dict[str, Any], text: str) -> None:
    assert access_denied_message(principal, action, resource, decision, **kwargs) == text


def test_access_denied_message_from_an_evaluation() -> None:
    deny = policy({"Effect": "Deny", "Action": "rds:*", "Resource": "*"})
    ctx = RequestContext("rds:CreateDBCluster", CLUSTER, ALICE, {})
    decision = evaluate([deny], ctx)
    assert access_denied_message(ctx.principal_arn, ctx.action, ctx.resource, decision).endswith(
        "with an explicit deny in an identity-based policy")


def test_access_denied_message_refuses_an_allow() -> None:
    with pytest.raises(ValueError):
        access_denied_message(ALICE, "rds:X", CLUSTER, Decision(True, "allow"))
