"""Role trust policies: who may call sts:AssumeRole (dbkeep.policy.evaluate.trust_allows)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dbkeep.policy import Decision, RequestContext, parse_policy, trust_allows

ACCOUNT = "111122223333"
OTHER = "444455556666"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/target"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
OPS_ROLE = f"arn:aws:iam::{ACCOUNT}:role/teams/ops"
OPS_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/ops/alice-session"
OTHER_USER = f"arn:aws:iam::{OTHER}:user/eve"
OTHER_ROOT = f"arn:aws:iam::{OTHER}:root"
FEDERATED = f"arn:aws:sts::{ACCOUNT}:federated-user/carol"


def trust(*statements: dict[str, Any], version: str = "2012-10-17") -> Any:
    return parse_policy(json.dumps({"Version": version, "Statement": list(statements)}), kind="trust")


def allow(principal: Any, **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole", **extra}


def account_of(arn: str) -> str:
    return arn.split(":")[4] if arn.startswith("arn:") else ""


CASES: list[tuple[str, list[dict[str, Any]], str, dict[str, Any], Decision]] = [
    # (id, statements, caller, keys, expected)
    ("star", [allow("*")], OTHER_USER, {}, Decision(True, "allow")),
    ("aws-star", [allow({"AWS": "*"})], ALICE, {}, Decision(True, "allow")),
    ("account-id-user", [allow({"AWS": ACCOUNT})], ALICE, {}, Decision(True, "allow")),
    ("account-id-session", [allow({"AWS": ACCOUNT})], OPS_SESSION, {}, Decision(True, "allow")),
    ("account-id-root", [allow({"AWS": ACCOUNT})], ROOT, {}, Decision(True, "allow")),
    ("account-id-other-account", [allow({"AWS": ACCOUNT})], OTHER_USER, {}, Decision(False, "implicit_deny")),
    ("account-arn", [allow({"AWS": ROOT})], BOB, {}, Decision(True, "allow")),
    ("account-arn-not-only-root", [allow({"AWS": OTHER_ROOT})], OTHER_USER, {}, Decision(True, "allow")),
    ("account-arn-other", [allow({"AWS": OTHER_ROOT})], ALICE, {}, Decision(False, "implicit_deny")),
    ("user", [allow({"AWS": ALICE})], ALICE, {}, Decision(True, "allow")),
    ("user-other", [allow({"AWS": ALICE})], BOB, {}, Decision(False, "implicit_deny")),
    ("user-case", [allow({"AWS": f"arn:aws:iam::{ACCOUNT}:user/Alice"})], ALICE, {}, Decision(False, "implicit_deny")),
    ("user-list", [allow({"AWS": [BOB, ALICE]})], ALICE, {}, Decision(True, "allow")),
    ("role-itself", [allow({"AWS": OPS_ROLE})], OPS_ROLE, {}, Decision(True, "allow")),
    ("role-session", [allow({"AWS": OPS_ROLE})], OPS_SESSION, {}, Decision(True, "allow")),
    ("role-other-session", [allow({"AWS": OPS_ROLE})],
     f"arn:aws:sts::{ACCOUNT}:assumed-role/dev/alice-session", {}, Decision(False, "implicit_deny")),
    ("role-session-other-account", [allow({"AWS": OPS_ROLE})],
     f"arn:aws:sts::{OTHER}:assumed-role/ops/s", {}, Decision(False, "implicit_deny")),
    ("exact-session", [allow({"AWS": OPS_SESSION})], OPS_SESSION, {}, Decision(True, "allow")),
    ("exact-session-other", [allow({"AWS": OPS_SESSION})],
     f"arn:aws:sts::{ACCOUNT}:assumed-role/ops/bob-session", {}, Decision(False, "implicit_deny")),
    ("federated-user", [allow({"AWS": FEDERATED})], FEDERATED, {}, Decision(True, "allow")),
    ("service", [allow({"Service": "ec2.amazonaws.com"})], "ec2.amazonaws.com", {}, Decision(True, "allow")),
    ("service-list", [allow({"Service": ["ecs.amazonaws.com", "rds.amazonaws.com"]})], "rds.amazonaws.com", {},
     Decision(True, "allow")),
    ("service-other", [allow({"Service": "ec2.amazonaws.com"})], "lambda.amazonaws.com", {},
     Decision(False, "implicit_deny")),
    ("service-not-a-user", [allow({"Service": "ec2.amazonaws.com"})], ALICE, {}, Decision(False, "implicit_deny")),
    ("federated-provider", [allow({"Federated": "accounts.google.com"},
                                  Action="sts:AssumeRoleWithWebIdentity")],
     "accounts.google.com", {}, Decision(False, "implicit_deny")),  # the action asked is sts:AssumeRole
    ("mixed", [allow({"Service": "ec2.amazonaws.com", "AWS": ROOT})], BOB, {}, Decision(True, "allow")),
    # Deny statements
    ("deny-user", [allow({"AWS": ROOT}), {"Effect": "Deny", "Principal": {"AWS": BOB}, "Action": "sts:AssumeRole"}],
     BOB, {}, Decision(False, "explicit_deny")),
    ("deny-other-user", [allow({"AWS": ROOT}), {"Effect": "Deny", "Principal": {"AWS": BOB},
                                                "Action": "sts:AssumeRole"}],
     ALICE, {}, Decision(True, "allow")),
    ("deny-star", [allow({"AWS": ALICE}), {"Effect": "Deny", "Principal": "*", "Action": "sts:*"}],
     ALICE, {}, Decision(False, "explicit_deny")),
    ("deny-not-principal", [allow({"AWS": ROOT}), {"Effect": "Deny", "NotPrincipal": {"AWS": [ALICE, ROOT]},
                                                   "Action": "sts:AssumeRole"}],
     ALICE, {}, Decision(True, "allow")),
    ("deny-not-principal-hits", [allow("*"), {"Effect": "Deny", "NotPrincipal": {"AWS": ALICE},
                                              "Action": "sts:AssumeRole"}],
     OTHER_USER, {}, Decision(False, "explicit_deny")),
    ("deny-not-principal-account", [allow("*"), {"Effect": "Deny", "NotPrincipal": {"AWS": ACCOUNT},
                                                 "Action": "sts:AssumeRole"}],
     OPS_SESSION, {}, Decision(True, "allow")),
    # conditions
    ("external-id", [allow({"AWS": OTHER_ROOT}, Condition={"StringEquals": {"sts:ExternalId": "s3cr3t"}})],
     OTHER_USER, {"sts:ExternalId": "s3cr3t"}, Decision(True, "allow")),
    ("external-id-wrong", [allow({"AWS": OTHER_ROOT}, Condition={"StringEquals": {"sts:ExternalId": "s3cr3t"}})],
     OTHER_USER, {"sts:ExternalId": "guess"}, Decision(False, "implicit_deny")),
    ("external-id-missing", [allow({"AWS": OTHER_ROOT}, Condition={"StringEquals": {"sts:ExternalId": "s3cr3t"}})],
     OTHER_USER, {}, Decision(False, "implicit_deny")),
    ("mfa", [allow({"AWS": ROOT}, Condition={"Bool": {"aws:MultiFactorAuthPresent": "true"}})],
     ALICE, {"aws:MultiFactorAuthPresent": "true"}, Decision(True, "allow")),
    ("source-ip", [allow("*", Condition={"IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "fd00::/8"]}})],
     OTHER_USER, {"aws:SourceIp": "fd12::1"}, Decision(True, "allow")),
    ("source-ip-outside", [allow("*", Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})],
     OTHER_USER, {"aws:SourceIp": "192.168.0.1"}, Decision(False, "implicit_deny")),
    ("principal-arn-condition", [allow("*", Condition={"ArnLike": {"aws:PrincipalArn": f"arn:aws:iam::{ACCOUNT}:role/*"}})],
     OPS_SESSION, {"aws:PrincipalArn": OPS_ROLE}, Decision(True, "allow")),
    ("principal-arn-condition-user", [allow("*", Condition={"ArnLike": {"aws:PrincipalArn":
                                                                       f"arn:aws:iam::{ACCOUNT}:role/*"}})],
     ALICE, {"aws:PrincipalArn": ALICE}, Decision(False, "implicit_deny")),
    ("deny-with-condition", [allow({"AWS": ROOT}), {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole",
                                                    "Condition": {"Bool": {"aws:SecureTransport": "false"}}}],
     ALICE, {"aws:SecureTransport": "false"}, Decision(False, "explicit_deny")),
    ("deny-condition-fails", [allow({"AWS": ROOT}), {"Effect": "Deny", "Principal": "*", "Action": "sts:AssumeRole",
                                                     "Condition": {"Bool": {"aws:SecureTransport": "false"}}}],
     ALICE, {"aws:SecureTransport": "true"}, Decision(True, "allow")),
    ("session-name-variable", [allow({"AWS": ROOT}, Condition={"StringLike": {"sts:RoleSessionName":
                                                                            "${aws:username}-*"}})],
     ALICE, {"aws:username": "alice", "sts:RoleSessionName": "alice-laptop"}, Decision(True, "allow")),
    ("session-name-variable-other", [allow({"AWS": ROOT}, Condition={"StringLike": {"sts:RoleSessionName":
                                                                                  "${aws:username}-*"}})],
     ALICE, {"aws:username": "alice", "sts:RoleSessionName": "bob-laptop"}, Decision(False, "implicit_deny")),
    # actions
    ("action-case", [allow({"AWS": ALICE}, Action="STS:assumerole")], ALICE, {}, Decision(True, "allow")),
    ("action-wildcard", [allow({"AWS": ALICE}, Action="sts:Assume*")], ALICE, {}, Decision(True, "allow")),
    ("action-other", [allow({"AWS": ALICE}, Action="sts:TagSession")], ALICE, {}, Decision(False, "implicit_deny")),
    ("action-not-action", [{"Effect": "Allow", "Principal": {"AWS": ALICE}, "NotAction": "sts:TagSession"}],
     ALICE, {}, Decision(True, "allow")),
]


@pytest.mark.parametrize(("statements", "caller", "keys", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_trust(statements: list[dict[str, Any]], caller: str, keys: dict[str, Any], expected: Decision) -> None:
    ctx = RequestContext("sts:AssumeRole", ROLE, caller, keys)
    assert trust_allows(trust(*statements), caller_arn=caller, caller_account=account_of(caller),
                        ctx=ctx) == expected


def test_no_root_exception_in_trust_policies() -> None:
    doc = trust(allow({"AWS": ALICE}))
    ctx = RequestContext("sts:AssumeRole", ROLE, ROOT, {})
    assert trust_allows(doc, caller_arn=ROOT, caller_account=ACCOUNT, ctx=ctx) == Decision(False, "implicit_deny")


def test_other_assume_actions() -> None:
    doc = trust(allow({"Federated": "accounts.google.com"}, Action="sts:AssumeRoleWithWebIdentity",
                      Condition={"StringEquals": {"accounts.google.com:aud": "my-app"}}))
    ctx = RequestContext("sts:AssumeRoleWithWebIdentity", ROLE, "accounts.google.com",
                         {"accounts.google.com:aud": "my-app"})
    assert trust_allows(doc, caller_arn="accounts.google.com", caller_account="", ctx=ctx).allowed


def test_allow_without_principal_grants_nothing() -> None:
    # An identity policy handed to trust_allows by mistake must not let everyone in.
    identity = parse_policy(json.dumps({"Version": "2012-10-17", "Statement": {
        "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}}))
    ctx = RequestContext("sts:AssumeRole", ROLE, ALICE, {})
    assert trust_allows(identity, caller_arn=ALICE, caller_account=ACCOUNT, ctx=ctx) == \
        Decision(False, "implicit_deny")


def test_caller_identity_comes_from_the_arguments() -> None:
    doc = trust(allow({"AWS": ALICE}))
    ctx = RequestContext("sts:AssumeRole", ROLE, BOB, {})  # ctx.principal_arn is not used
    assert trust_allows(doc, caller_arn=ALICE, caller_account=ACCOUNT, ctx=ctx).allowed
