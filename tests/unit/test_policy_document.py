"""Policy documents: accepted shapes, IAM's MalformedPolicyDocument texts, size limits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbkeep.errors import PolicyDocumentError
from dbkeep.policy.document import (
    MANAGED_POLICY_MAX,
    POLICY_DOCUMENT_CHARSET,
    ROLE_TRUST_POLICY_MAX,
    Principal,
    inline_policy_size_error,
    managed_policy_size_error,
    parse_policy,
    policy_size,
    trust_policy_size_error,
)

ALLOW_ALL = {"Effect": "Allow", "Action": "*", "Resource": "*"}
TRUST_EC2 = {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}


def doc(*statements: dict[str, Any], version: str | None = "2012-10-17", **top: Any) -> str:
    body: dict[str, Any] = {}
    if version is not None:
        body["Version"] = version
    body.update(top)
    body["Statement"] = list(statements)
    return json.dumps(body)


# --- accepted shapes -----------------------------------------------------------------------------

def test_full_statement() -> None:
    parsed = parse_policy(doc({
        "Sid": "AllowRds1",
        "Effect": "Allow",
        "Action": ["rds:Describe*", "rds:CreateDBCluster"],
        "Resource": "arn:aws:rds:*:123456789012:cluster:*",
        "Condition": {"Bool": {"aws:SecureTransport": "true"},
                      "ForAnyValue:StringLike": {"aws:TagKeys": ["env*", "team"]}},
    }))
    assert parsed.version == "2012-10-17"
    assert parsed.variables_enabled
    (s,) = parsed.statements
    assert s.sid == "AllowRds1"
    assert s.effect == "Allow"
    assert s.actions == ("rds:Describe*", "rds:CreateDBCluster")
    assert s.not_actions is None
    assert s.resources == ("arn:aws:rds:*:123456789012:cluster:*",)
    assert s.not_resources is None and s.principals is None and s.not_principals is None
    assert [(c.operator, c.key, c.values) for c in s.conditions] == [
        ("Bool", "aws:SecureTransport", ("true",)),
        ("ForAnyValue:StringLike", "aws:TagKeys", ("env*", "team")),
    ]


def test_statement_may_be_a_single_object() -> None:
    parsed = parse_policy(json.dumps({"Version": "2012-10-17", "Statement": ALLOW_ALL}))
    assert len(parsed.statements) == 1


@pytest.mark.parametrize(
    ("version", "effective", "variables"),
    [("2012-10-17", "2012-10-17", True), ("2008-10-17", "2008-10-17", False), (None, "2008-10-17", False)],
)
def test_versions(version: str | None, effective: str, variables: bool) -> None:
    parsed = parse_policy(doc(ALLOW_ALL, version=version))
    assert parsed.version == effective
    assert parsed.variables_enabled is variables


def test_not_action_and_not_resource() -> None:
    (s,) = parse_policy(doc({"Effect": "Deny", "NotAction": "iam:*", "NotResource": ["arn:aws:s3:::a"]})).statements
    assert s.actions is None and s.not_actions == ("iam:*",)
    assert s.resources is None and s.not_resources == ("arn:aws:s3:::a",)


def test_unquoted_numbers_and_booleans_as_condition_values() -> None:
    (s,) = parse_policy(doc({**ALLOW_ALL, "Condition": {
        "Bool": {"aws:MultiFactorAuthPresent": True},
        "NumericLessThanEquals": {"s3:max-keys": 10},
        "NumericGreaterThan": {"k:ratio": [0.25, "1"]},
    }})).statements
    assert [c.values for c in s.conditions] == [("true",), ("10",), ("0.25", "1")]


def test_id_is_accepted() -> None:
    assert parse_policy(doc(ALLOW_ALL, Id="cd3ad3d9-2776-4ef1-a904-4c229d1642ee")).id == \
        "cd3ad3d9-2776-4ef1-a904-4c229d1642ee"


def test_empty_sids_may_repeat() -> None:
    parse_policy(doc({**ALLOW_ALL, "Sid": ""}, {**ALLOW_ALL, "Sid": ""}))


def test_trust_policy() -> None:
    parsed = parse_policy(doc(TRUST_EC2, {
        "Effect": "Allow",
        "Principal": {"AWS": ["arn:aws:iam::123456789012:root", "111122223333",
                              "arn:aws:iam::123456789012:user/alice",
                              "arn:aws:iam::123456789012:role/path/ops",
                              "arn:aws:sts::123456789012:assumed-role/ops/session-1"]},
        "Action": ["sts:AssumeRole", "sts:TagSession"],
        "Condition": {"StringEquals": {"sts:ExternalId": "abc"}},
    }), kind="trust")
    assert parsed.statements[0].principals == (Principal("Service", "ec2.amazonaws.com"),)
    assert len(parsed.statements[1].principals or ()) == 5


def test_principal_star_is_aws_star() -> None:
    parsed = parse_policy(doc({"Effect": "Allow", "Principal": "*", "Action": "sts:AssumeRole"}), kind="trust")
    assert parsed.statements[0].principals == (Principal("AWS", "*"),)


def test_trust_policy_may_deny_with_not_principal() -> None:
    parse_policy(doc(TRUST_EC2, {"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::123456789012:root"},
                                 "Action": "sts:AssumeRole"}), kind="trust")


def test_resource_policy() -> None:
    parsed = parse_policy(doc({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:user/carlossalazar"},
                               "Action": "s3:*", "Resource": ["arn:aws:s3:::carlossalazar/*"]}), kind="resource")
    assert parsed.statements[0].principals == (Principal("AWS", "arn:aws:iam::123456789012:user/carlossalazar"),)


def test_bytes_are_decoded() -> None:
    assert parse_policy(doc(ALLOW_ALL).encode()).statements


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        parse_policy(doc(ALLOW_ALL), kind="session")


# --- MalformedPolicyDocument ---------------------------------------------------------------------

SYNTAX = "Syntax errors in policy."
LEGACY = "The policy failed legacy parsing"

MALFORMED = [
    # JSON and structure
    ("not json", "identity", SYNTAX),
    ("ec2-permissions.json", "identity", SYNTAX),
    ("", "identity", SYNTAX),
    ("null", "identity", SYNTAX),
    ("[]", "identity", SYNTAX),
    ('{"Version": "2012-10-17", "Statement": [' + json.dumps(ALLOW_ALL) + "]", "identity", SYNTAX),
    ("not json", "trust", "This policy contains invalid Json"),
    ('{"Statement": {"Effect": "Allow", "Action": "*", "Resource": "*",}}', "trust",
     "This policy contains invalid Json"),
    ('{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Effect": "Deny", "Action": "*", "Resource": "*"}}',
     "identity", SYNTAX),
    ('{"Statement": {"Effect": "Allow", "Action": "*", "Resource": NaN}}', "identity", SYNTAX),
    (doc(ALLOW_ALL, version="2019-8-17"), "identity", SYNTAX),
    (doc(ALLOW_ALL, version="2012-10-18"), "identity", SYNTAX),
    (json.dumps({"Version": 2012, "Statement": ALLOW_ALL}), "identity", SYNTAX),
    (json.dumps({"Version": "2012-10-17"}), "identity", SYNTAX),
    (json.dumps({"Version": "2012-10-17", "Statement": []}), "identity", SYNTAX),
    (json.dumps({"Version": "2012-10-17", "Statement": "Allow"}), "identity", SYNTAX),
    (json.dumps({"Version": "2012-10-17", "Statement": [ALLOW_ALL, "x"]}), "identity", SYNTAX),
    (json.dumps({"Version": "2012-10-17", "Statement": ALLOW_ALL, "Condition": {}}), "identity", SYNTAX),
    (json.dumps({"Version": "2012-10-17", "Id": 7, "Statement": ALLOW_ALL}), "identity", SYNTAX),
    (doc({**ALLOW_ALL, "Extra": 1}), "identity", SYNTAX),
    (doc({"Action": "*", "Resource": "*"}), "identity", SYNTAX),  # no Effect
    (doc({**ALLOW_ALL, "Effect": "Permit"}), "identity", SYNTAX),
    (doc({**ALLOW_ALL, "Effect": ["Allow"]}), "identity", SYNTAX),
    (doc({**ALLOW_ALL, "NotAction": "iam:*"}), "identity", SYNTAX),
    (doc({**ALLOW_ALL, "NotResource": "arn:aws:s3:::b"}), "identity", SYNTAX),
    (doc({**ALLOW_ALL, "Action": 5}), "identity", SYNTAX),
    (doc({**ALLOW_ALL, "Action": ["rds:*", 5]}), "identity", SYNTAX),
    (doc({**ALLOW_ALL, "Resource": {"arn": "x"}}), "identity", SYNTAX),
    (doc({**ALLOW_ALL, "Sid": 1}), "identity", SYNTAX),
    (doc({**ALLOW_ALL, "Condition": []}), "identity", SYNTAX),
    (doc({**ALLOW_ALL, "Condition": {"StringEquals": "x"}}), "identity", SYNTAX),
    (doc({**ALLOW_ALL, "Condition": {"StringEquals": {"aws:username": {"a": "b"}}}}), "identity", SYNTAX),
    (doc({**ALLOW_ALL, "Condition": {"StringEquals": {"aws:username": None}}}), "identity", SYNTAX),
    (doc({**ALLOW_ALL, "Condition": {"StringEquals": {"aws:username": [["x"]]}}}), "identity", SYNTAX),
    (doc({**ALLOW_ALL, "Condition": {"StringEqualsAnyCase": {"aws:username": "x"}}}), "identity", SYNTAX),
    (doc({**ALLOW_ALL, "Condition": {"NullIfExists": {"aws:username": "true"}}}), "identity", SYNTAX),
    (doc({**TRUST_EC2, "Principal": {"AWS": "*"}, "NotPrincipal": {"AWS": "*"}}), "trust", SYNTAX),
    (doc({**TRUST_EC2, "Principal": {"Users": "alice"}}), "trust", SYNTAX),
    (doc({**TRUST_EC2, "Principal": "arn:aws:iam::123456789012:root"}), "trust", SYNTAX),
    (doc({**TRUST_EC2, "Principal": ["*"]}), "trust", SYNTAX),
    # where principals and resources belong
    (doc({**ALLOW_ALL, "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}), "identity",
     "Policy document should not specify a principal."),
    (doc({**ALLOW_ALL, "NotPrincipal": {"AWS": "arn:aws:iam::123456789012:root"}}), "identity",
     "Policy document should not specify a principal."),
    (doc({**TRUST_EC2, "Resource": "*"}), "trust", "Has prohibited field Resource"),
    (doc({**TRUST_EC2, "NotResource": "*"}), "trust", "Has prohibited field NotResource"),
    (doc({"Effect": "Allow", "Action": "sts:AssumeRole"}), "trust", "Missing required field Principal"),
    (doc(ALLOW_ALL), "resource", "Missing required field Principal"),
    # legacy parsing
    (doc({**ALLOW_ALL, "Effect": "allow"}), "identity", LEGACY),
    (doc({**ALLOW_ALL, "Effect": "DENY"}), "identity", LEGACY),
    (doc({**ALLOW_ALL, "Condition": {"DateGreaterThan": {"aws:CurrentTime": "next tuesday"}}}), "identity", LEGACY),
    (doc({**ALLOW_ALL, "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/40"}}}), "identity", LEGACY),
    (doc({**ALLOW_ALL, "Condition": {"NumericEquals": {"s3:max-keys": "many"}}}), "identity", LEGACY),
    # statement ids
    (doc({**ALLOW_ALL, "Sid": "A"}, {**ALLOW_ALL, "Sid": "A"}), "identity",
     "Statement IDs (SID) in a single policy must be unique."),
    (doc({**ALLOW_ALL, "Sid": "Allow-All"}), "identity",
     "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*"),
    (doc({**TRUST_EC2, "Sid": "trust ec2"}), "trust",
     "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*"),
    # actions and resources
    (doc({"Effect": "Allow", "Resource": "*"}), "identity", "Policy statement must contain actions."),
    (doc({"Effect": "Allow", "Action": [], "Resource": "*"}), "identity", "Policy statement must contain actions."),
    (doc({"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}}), "trust",
     "Policy statement must contain actions."),
    (doc({"Effect": "Allow", "Action": "rds:*"}), "identity", "Policy statement must contain resources."),
    (doc({"Effect": "Allow", "Action": "rds:*", "Resource": []}), "identity",
     "Policy statement must contain resources."),
    (doc({"Effect": "Allow", "Principal": "*", "Action": "s3:*"}), "resource",
     "Policy statement must contain resources."),
    # formats
    (doc({**ALLOW_ALL, "Resource": "s3-bucket-ukcloud-replica"}), "identity",
     'Resource s3-bucket-ukcloud-replica must be in ARN format or "*".'),
    (doc({"Effect": "Deny", "Action": "*", "NotResource": "bucket"}), "identity",
     'Resource bucket must be in ARN format or "*".'),
    (doc({**ALLOW_ALL, "Action": "CreateDBCluster"}), "identity",
     "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."),
    (doc({**ALLOW_ALL, "Action": "arn:aws:rds:*"}), "identity", "Actions/Condition can contain only one colon."),
    (doc({**ALLOW_ALL, "Action": "r d s:Describe*"}), "identity", "Vendor r d s is not valid"),
    (doc({**ALLOW_ALL, "Condition": {"StringEquals": {"SourceIp": "1.2.3.4"}}}), "identity",
     "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."),
    (doc({**TRUST_EC2, "Principal": {"AWS": "arn:aws:iam::123456789012:user/*"}}), "trust",
     'Invalid principal in policy: "AWS":"arn:aws:iam::123456789012:user/*"'),
    (doc({**TRUST_EC2, "Principal": {"AWS": "alice"}}), "trust", 'Invalid principal in policy: "AWS":"alice"'),
    (doc({**TRUST_EC2, "Principal": {"AWS": "12345"}}), "trust", 'Invalid principal in policy: "AWS":"12345"'),
    (doc({**TRUST_EC2, "Principal": {"AWS": "arn:aws:iam::123456789012:group/admins"}}), "trust",
     'Invalid principal in policy: "AWS":"arn:aws:iam::123456789012:group/admins"'),
    (doc({**TRUST_EC2, "Principal": {"Service": "*.amazonaws.com"}}), "trust",
     'Invalid principal in policy: "Service":"*.amazonaws.com"'),
    (doc({**TRUST_EC2, "Principal": {"AWS": []}}), "trust",
     "Invalid principal in policy: com.amazon.balsa.error.InvalidPolicyException: "
     "The passed in policy has a statement with no principals!"),
    (doc({**TRUST_EC2, "Principal": {}}), "trust",
     "Invalid principal in policy: com.amazon.balsa.error.InvalidPolicyException: "
     "The passed in policy has a statement with no principals!"),
]


@pytest.mark.parametrize(("text", "kind", "message"), MALFORMED)
def test_malformed(text: str, kind: str, message: str) -> None:
    with pytest.raises(PolicyDocumentError) as info:
        parse_policy(text, kind=kind)
    assert info.value.message == message
    assert str(info.value) == message
    assert info.value.detail  # says exactly which element is at fault


def test_trust_policy_refuses_not_principal_with_allow() -> None:
    with pytest.raises(PolicyDocumentError) as info:
        parse_policy(doc({"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::123456789012:root"},
                          "Action": "sts:AssumeRole"}), kind="trust")
    assert info.value.message.startswith("Invalid principal in policy:")
    assert "NotPrincipal" in info.value.detail


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (doc(ALLOW_ALL, version="2008-10-17"), "Policy document must be version 2012-10-17 or greater."),
        (doc(ALLOW_ALL, version=None), "Policy document must be version 2012-10-17 or greater."),
    ],
)
def test_managed_policies_need_version_2012(text: str, message: str) -> None:
    parse_policy(text)  # fine inline
    with pytest.raises(PolicyDocumentError) as info:
        parse_policy(text, managed=True)
    assert info.value.message == message
    parse_policy(doc(ALLOW_ALL), managed=True)


def test_detail_names_the_element() -> None:
    with pytest.raises(PolicyDocumentError) as info:
        parse_policy(doc(ALLOW_ALL, {**ALLOW_ALL, "Actions": "rds:*"}))
    assert "Statement 1" in info.value.detail and "Actions" in info.value.detail


def test_first_fault_in_iam_order() -> None:
    # Syntax beats legacy parsing beats missing resources.
    text = doc({"Effect": "allow", "Action": "rds:*"}, {"Effect": "Bogus", "Action": "*", "Resource": "*"})
    with pytest.raises(PolicyDocumentError) as info:
        parse_policy(text)
    assert info.value.message == SYNTAX
    with pytest.raises(PolicyDocumentError) as info:
        parse_policy(doc({"Effect": "allow", "Action": "rds:*"}))
    assert info.value.message == LEGACY


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_policy_errors(text: str) -> None:
    for kind in ("identity", "trust", "resource"):
        try:
            parse_policy(text, kind=kind)
        except PolicyDocumentError:
            pass


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["Version", "Statement", "Effect", "Action", "Resource", "Principal", "AWS",
                         "Condition", "StringEquals", "aws:x", "Sid", "NotAction"]), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_arbitrary_json_raises_only_policy_errors(value: Any) -> None:
    text = json.dumps(value)
    for kind in ("identity", "trust", "resource"):
        try:
            parse_policy(text, kind=kind)
        except PolicyDocumentError:
            pass


# --- size limits ---------------------------------------------------------------------------------

def test_policy_size_ignores_white_space() -> None:
    assert policy_size('{ "a" :\n\t"b c" }') == len('{"a":"bc"}')


def test_managed_policy_size() -> None:
    assert MANAGED_POLICY_MAX == 6144
    assert managed_policy_size_error("x" * 6144) is None
    assert managed_policy_size_error("x" * 6144 + " \n ") is None
    assert managed_policy_size_error("x" * 6145) == "Cannot exceed quota for PolicySize: 6144"


def test_trust_policy_size() -> None:
    assert ROLE_TRUST_POLICY_MAX == 2048
    assert trust_policy_size_error("x" * 2048) is None
    assert trust_policy_size_error("x" * 2049) == "Cannot exceed quota for ACLSizePerRole: 2048"
    assert trust_policy_size_error("x" * 2049, limit=4096) is None


@pytest.mark.parametrize(("entity_type", "limit"), [("user", 2048), ("group", 5120), ("role", 10240)])
def test_inline_policy_size(entity_type: str, limit: int) -> None:
    half = "x" * (limit // 2)
    assert inline_policy_size_error([half, half], entity_type=entity_type, entity_name="n") is None
    assert inline_policy_size_error([half, half, "y"], entity_type=entity_type, entity_name="n") == \
        f"Maximum policy size of {limit} bytes exceeded for {entity_type} n"


def test_charset_pattern() -> None:
    import re

    assert re.fullmatch(POLICY_DOCUMENT_CHARSET, '{"a": "é\\t"}\n')
    assert not re.fullmatch(POLICY_DOCUMENT_CHARSET, '{"a": "☃"}')
