"""IAM console passwords through boto3: login profiles, ChangePassword, the account password
policy and the account alias, with IAM's error codes, against a real ``dbkeep up``."""

from __future__ import annotations

import json
import uuid

import boto3
import botocore.exceptions
from botocore.config import Config as BotoConfig
import pytest

from test_api_iam import error_of, new_user

GOOD = "Console-Pass-1"


@pytest.fixture
def iam(dbkeep):
    return dbkeep.client("iam")


@pytest.fixture
def no_policy(iam):
    """The account has no custom password policy before and after the test."""
    try:
        iam.delete_account_password_policy()
    except iam.exceptions.NoSuchEntityException:
        pass
    yield
    try:
        iam.delete_account_password_policy()
    except iam.exceptions.NoSuchEntityException:
        pass


def iam_without_client_checks(dbkeep):
    key, secret = dbkeep.root_credentials()
    return boto3.session.Session().client("iam", endpoint_url=dbkeep.url, region_name="us-east-1", aws_access_key_id=key,
                                          aws_secret_access_key=secret, config=BotoConfig(parameter_validation=False))


def audit_lines(dbkeep) -> str:
    return (dbkeep.state_dir / "audit.log").read_text()


def test_login_profile_life_cycle(dbkeep, iam, no_policy):
    name = f"lp{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    with pytest.raises(iam.exceptions.NoSuchEntityException) as exc:
        iam.get_login_profile(UserName=name)
    assert error_of(exc) == ("NoSuchEntity", f"Login Profile for User {name} cannot be found.")
    made = iam.create_login_profile(UserName=name, Password=GOOD, PasswordResetRequired=True)["LoginProfile"]
    assert made["UserName"] == name and made["PasswordResetRequired"] is True
    assert "Password" not in made
    got = iam.get_login_profile(UserName=name)["LoginProfile"]
    assert got["PasswordResetRequired"] is True and got["CreateDate"] == made["CreateDate"]
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException) as exc:
        iam.create_login_profile(UserName=name, Password=GOOD)
    assert error_of(exc) == ("EntityAlreadyExists", f"Login Profile for user {name} already exists.")
    iam.update_login_profile(UserName=name, Password="Another-Pass-2", PasswordResetRequired=False)
    assert iam.get_login_profile(UserName=name)["LoginProfile"]["PasswordResetRequired"] is False
    # a user with a login profile cannot be deleted before it
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iam.delete_user(UserName=name)
    assert error_of(exc)[0] == "DeleteConflict" and "login profile" in error_of(exc)[1]
    iam.delete_login_profile(UserName=name)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.delete_login_profile(UserName=name)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.update_login_profile(UserName=name, Password=GOOD)
    iam.delete_user(UserName=name)
    # no password in the audit trail, and the changes are there
    text = audit_lines(dbkeep)
    assert GOOD not in text and "Another-Pass-2" not in text
    events = [json.loads(line) for line in text.splitlines() if f'"{name}"' in line]
    kinds = [e["event"] for e in events]
    assert "iam.login_profile_created" in kinds and "iam.login_profile_updated" in kinds and "iam.login_profile_deleted" in kinds


def test_missing_user(iam):
    with pytest.raises(iam.exceptions.NoSuchEntityException) as exc:
        iam.create_login_profile(UserName="nobody-here", Password=GOOD)
    assert error_of(exc) == ("NoSuchEntity", "The user with name nobody-here cannot be found.")


def test_default_policy_applies_without_a_custom_one(dbkeep, iam, no_policy):
    name = f"lp{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    with pytest.raises(iam.exceptions.PasswordPolicyViolationException) as exc:
        iam.create_login_profile(UserName=name, Password="short1A")
    assert "minimum length of 8" in error_of(exc)[1]
    with pytest.raises(iam.exceptions.PasswordPolicyViolationException) as exc:
        iam.create_login_profile(UserName=name, Password="alllowercase")
    assert "three of" in error_of(exc)[1]
    # a password is never echoed, not even in a validation error
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iam_without_client_checks(dbkeep).create_login_profile(UserName=name, Password="x" * 129)
    assert error_of(exc)[0] == "ValidationError" and "xxxx" not in error_of(exc)[1]
    iam.create_login_profile(UserName=name, Password="lower-and-1")
    iam.delete_login_profile(UserName=name)
    iam.delete_user(UserName=name)


def test_account_password_policy(dbkeep, iam, no_policy):
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_account_password_policy()
    iam.update_account_password_policy(MinimumPasswordLength=12, RequireSymbols=True, RequireNumbers=True,
                                       RequireUppercaseCharacters=True, PasswordReusePrevention=2, MaxPasswordAge=90)
    policy = iam.get_account_password_policy()["PasswordPolicy"]
    assert policy["MinimumPasswordLength"] == 12 and policy["RequireSymbols"] and policy["ExpirePasswords"]
    assert policy["MaxPasswordAge"] == 90 and policy["PasswordReusePrevention"] == 2
    assert policy["RequireLowercaseCharacters"] is False and policy["AllowUsersToChangePassword"] is False
    unchecked = iam_without_client_checks(dbkeep)  # boto3 would refuse 5 itself
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        unchecked.update_account_password_policy(MinimumPasswordLength=5)
    assert error_of(exc)[0] == "ValidationError"
    name = f"lp{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=name)
    for bad, why in (("Short-1", "minimum length of 12"), ("NoSymbolsHere12", "at least one symbol"),
                     ("no-upper-case-12", "at least one uppercase letter")):
        with pytest.raises(iam.exceptions.PasswordPolicyViolationException) as exc:
            iam.create_login_profile(UserName=name, Password=bad)
        assert why in error_of(exc)[1], error_of(exc)
    iam.create_login_profile(UserName=name, Password="Policy-Pass-12")
    iam.update_login_profile(UserName=name, Password="Policy-Pass-13")
    # PasswordReusePrevention=2: neither the current nor the one before may come back
    for reused in ("Policy-Pass-13", "Policy-Pass-12"):
        with pytest.raises(iam.exceptions.PasswordPolicyViolationException) as exc:
            iam.update_login_profile(UserName=name, Password=reused)
        assert "last 2 passwords" in error_of(exc)[1]
    iam.update_login_profile(UserName=name, Password="Policy-Pass-14")
    iam.update_login_profile(UserName=name, Password="Policy-Pass-12")  # three back: allowed
    iam.delete_account_password_policy()
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.delete_account_password_policy()
    iam.delete_login_profile(UserName=name)
    iam.delete_user(UserName=name)


def test_change_password_and_authorisation(dbkeep, iam, no_policy):
    # a user allowed only to read its own profile
    own = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "iam:GetLoginProfile", "Resource": "*"}]}
    name, key, secret = new_user(dbkeep, iam, own)
    iam.create_login_profile(UserName=name, Password=GOOD)
    user_iam = dbkeep.client("iam", key, secret)
    assert user_iam.get_login_profile()["LoginProfile"]["UserName"] == name  # UserName defaults to the caller
    for call in (lambda: user_iam.update_login_profile(UserName=name, Password="Other-Pass-9"),
                 lambda: user_iam.delete_login_profile(UserName=name),
                 lambda: user_iam.create_login_profile(UserName="nobody-here", Password=GOOD),
                 lambda: user_iam.update_account_password_policy(MinimumPasswordLength=20)):
        with pytest.raises(botocore.exceptions.ClientError) as exc:
            call()
        assert error_of(exc)[0] == "AccessDenied"
    # ChangePassword: refused without iam:ChangePassword or AllowUsersToChangePassword
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        user_iam.change_password(OldPassword=GOOD, NewPassword="Changed-Pass-1")
    assert error_of(exc)[0] == "AccessDenied"
    iam.update_account_password_policy(AllowUsersToChangePassword=True, MinimumPasswordLength=8)
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        user_iam.change_password(OldPassword="Wrong-Pass-1", NewPassword="Changed-Pass-1")
    assert error_of(exc)[0] == "AccessDenied"
    with pytest.raises(user_iam.exceptions.PasswordPolicyViolationException):
        user_iam.change_password(OldPassword=GOOD, NewPassword="short")
    user_iam.change_password(OldPassword=GOOD, NewPassword="Changed-Pass-1")
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iam.change_password(OldPassword=GOOD, NewPassword="Changed-Pass-2")  # the root is no IAM user
    assert error_of(exc)[0] == "InvalidUserType"


def test_account_alias(iam):
    assert iam.list_account_aliases()["AccountAliases"] in ([], ["dbkeep-test"])
    iam.create_account_alias(AccountAlias="dbkeep-test")
    assert iam.list_account_aliases()["AccountAliases"] == ["dbkeep-test"]
    with pytest.raises(botocore.exceptions.ClientError) as exc:
        iam.create_account_alias(AccountAlias="Bad--Alias")
    assert error_of(exc)[0] == "ValidationError"
    iam.delete_account_alias(AccountAlias="dbkeep-test")
    assert iam.list_account_aliases()["AccountAliases"] == []
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.delete_account_alias(AccountAlias="dbkeep-test")
