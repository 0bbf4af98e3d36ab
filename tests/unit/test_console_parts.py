"""The console's pure parts: password policy, sessions, sign-in throttle, redirects, CSRF tokens,
and the Query form the console builds with botocore's serializer."""

from __future__ import annotations

import datetime as dt

import pytest

from dbkeep.api import query
from dbkeep.console import csrf
from dbkeep.console.calls import flat_params
from dbkeep.console.sessions import IDLE, LIFETIME, SessionStore, cookie_attributes, cookie_name
from dbkeep.console.signin import Throttle, _safe_next
from dbkeep.errors import ApiError
from dbkeep.identity import passwords

T0 = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.timezone.utc)


def violation(policy, password, names=("123456789012",)) -> str:
    with pytest.raises(ApiError) as exc:
        passwords.check_policy(policy, password, names)
    assert exc.value.code == "PasswordPolicyViolation" and exc.value.status == 400
    return exc.value.message


def test_default_policy_is_iams():
    assert "minimum length of 8" in violation(None, "Ab1-")
    assert "three of" in violation(None, "onlylowercase")
    assert "differ from the account" in violation(None, "acme-Corp-1", ("123456789012", "acme-Corp-1"))
    passwords.check_policy(None, "lower-and-1", ("123456789012",))  # lower, digit, symbol: three kinds


def test_custom_policy_rules():
    policy = dict(passwords.POLICY_DEFAULTS, MinimumPasswordLength=10, RequireSymbols=True, RequireUppercaseCharacters=True)
    message = violation(policy, "short")
    assert "minimum length of 10" in message and "at least one symbol" in message and "uppercase" in message
    passwords.check_policy(policy, "Long-enough-pw", ())
    passwords.check_policy(dict(passwords.POLICY_DEFAULTS), "sixchr", ())  # UpdateAccountPasswordPolicy's own defaults


def test_reuse_history_and_expiry():
    policy = dict(passwords.POLICY_DEFAULTS, PasswordReusePrevention=2, MaxPasswordAge=30)
    first = passwords.hash_password("First-pass-1")
    second = passwords.hash_password("Second-pass-2")
    kept = passwords.history(policy, second, first, ())
    assert kept == (first,)
    with pytest.raises(ApiError):
        passwords.check_reuse(policy, "First-pass-1", (second, *kept))
    passwords.check_reuse(dict(policy, PasswordReusePrevention=1), "First-pass-1", (second, *kept))
    assert not passwords.expired(policy, T0, T0 + dt.timedelta(days=29))
    assert passwords.expired(policy, T0, T0 + dt.timedelta(days=30))
    assert not passwords.expired(None, T0, T0 + dt.timedelta(days=3000))
    assert passwords.verify_password(second, "Second-pass-2") and not passwords.verify_password(second, "second-pass-2")
    assert not passwords.verify_password("not a hash", "x")


def test_policy_out_derives_expire_passwords():
    out = passwords.policy_out(dict(passwords.POLICY_DEFAULTS, MaxPasswordAge=90))
    assert out["ExpirePasswords"] is True and out["MaxPasswordAge"] == 90 and "PasswordReusePrevention" not in out
    assert passwords.policy_out(dict(passwords.POLICY_DEFAULTS))["ExpirePasswords"] is False


def test_sessions_expire_when_idle_or_old():
    store = SessionStore()
    sid, session = store.create("user", "alice", "stamp", T0)
    assert store.get(sid, T0 + IDLE - dt.timedelta(seconds=1)) is session
    assert store.get("another id", T0) is None and store.get(None, T0) is None and store.get("x" * 200, T0) is None
    assert store.get(sid, T0 + 2 * IDLE) is None  # idle too long: gone for good
    assert store.get(sid, T0) is None
    sid, session = store.create("root", "AKIA", "stamp", T0)
    now = T0
    while now < T0 + LIFETIME - IDLE:  # active all the time ...
        now += IDLE / 2
        assert store.get(sid, now) is session
    assert store.get(sid, T0 + LIFETIME + dt.timedelta(seconds=1)) is None  # ... but not for longer than LIFETIME
    sid, session = store.create("user", "bob", "stamp", T0)
    store.end_all_of("user", "bob")
    assert store.get(sid, T0) is None
    assert session.csrf and sid not in repr(session)


def test_cookie_attributes():
    assert cookie_name(True) == "__Host-dbkeep_console" and cookie_name(False) == "dbkeep_console"
    assert cookie_attributes(True) == {"path": "/", "secure": True, "httponly": True, "samesite": "Strict"}
    assert cookie_attributes(False) == {"path": "/console", "httponly": True, "samesite": "Strict"}


def test_throttle_per_source():
    throttle = Throttle(limit=3, window=dt.timedelta(minutes=5), max_sources=2)
    for i in range(3):
        assert not throttle.blocked("10.0.0.1", T0)
        throttle.failed("10.0.0.1", T0)
    assert throttle.blocked("10.0.0.1", T0) and not throttle.blocked("10.0.0.2", T0)
    assert not throttle.blocked("10.0.0.1", T0 + dt.timedelta(minutes=5))
    for source in ("a", "b", "c"):  # bounded: the table never holds more than max_sources
        throttle.failed(source, T0)
    assert len(throttle._failures) <= 2


def test_redirects_stay_in_the_console_and_tokens_compare():
    assert _safe_next("/console/clusters/x?y=1") == "/console/clusters/x?y=1"
    for bad in ("//evil.example/console/", "https://evil.example/", "/metrics", None, "/console/\\\\evil"):
        assert _safe_next(bad) == "/console/"
    assert csrf.token_matches("abc", "abc") and not csrf.token_matches("abc", "abd")
    assert not csrf.token_matches(None, None) and not csrf.token_matches("", "")


def test_flat_params_parse_back_to_the_same_structure():
    params = {"DBClusterIdentifier": "app", "Engine": "aurora-mysql", "VpcSecurityGroupIds": ["sg-1", "sg-2"],
              "EnableIAMDatabaseAuthentication": True, "Port": 3306}
    flat = flat_params("rds", "CreateDBCluster", params)
    assert all(isinstance(v, str) for v in flat.values())
    operation = query.service_model("rds").operation_model("CreateDBCluster")
    assert query.parse_request(operation, flat, "parameter") == params
    flat = flat_params("ec2", "AuthorizeSecurityGroupIngress",
                       {"GroupId": "sg-1", "IpPermissions": [{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]}]})
    assert flat["IpPermissions.1.IpRanges.1.CidrIp"] == "10.0.0.0/8"
