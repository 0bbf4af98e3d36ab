"""Condition operators (dbkeep.policy.conditions), driven through parse_condition_block."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbkeep.errors import PolicyDocumentError
from dbkeep.policy.conditions import (
    OPERATORS,
    conditions_hold,
    parse_condition_block,
    parse_date,
    split_operator,
)
from dbkeep.policy.match import resolver_for

ABSENT = object()


def holds(operator: str, values: Any, request: Any = ABSENT, *, key: str = "k:key",
          extra: dict[str, Any] | None = None, variables: bool = True) -> bool:
    """One condition ``{operator: {key: values}}`` against a request where ``key`` = ``request``."""
    block = {operator: {key: values if isinstance(values, list) else [values]}}
    conds = parse_condition_block(block)
    keys: dict[str, Any] = {k.lower(): v for k, v in (extra or {}).items()}
    if request is not ABSENT:
        keys[key.lower()] = request
    return conditions_hold(conds, keys, resolver_for(keys) if variables else None)


# (operator, policy values, request value or ABSENT, expected)
CASES = [
    # --- String -----------------------------------------------------------------------------
    ("StringEquals", "alpha", "alpha", True),
    ("StringEquals", "alpha", "Alpha", False),  # case-sensitive
    ("StringEquals", ["a", "b"], "b", True),  # values ORed
    ("StringEquals", "alpha", ABSENT, False),  # missing key: false
    ("StringEquals", "a*", "abc", False),  # no wildcards
    ("StringEquals", "a*", "a*", True),
    ("StringNotEquals", "alpha", "beta", True),
    ("StringNotEquals", "alpha", "alpha", False),
    ("StringNotEquals", ["a", "b"], "b", False),  # negated: NOR over the values
    ("StringNotEquals", ["a", "b"], "c", True),
    ("StringNotEquals", "alpha", ABSENT, True),  # negated + missing key: true
    ("StringEqualsIgnoreCase", "Finance", "fINANCE", True),
    ("StringEqualsIgnoreCase", "Finance", "HR", False),
    ("StringEqualsIgnoreCase", "x", ABSENT, False),
    ("StringNotEqualsIgnoreCase", "Finance", "FINANCE", False),
    ("StringNotEqualsIgnoreCase", "Finance", "hr", True),
    ("StringNotEqualsIgnoreCase", "Finance", ABSENT, True),
    ("StringLike", "t2.*", "t2.micro", True),
    ("StringLike", "t2.*", "T2.micro", False),
    ("StringLike", ["t1.*", "t2.*", "m3.*"], "m3.large", True),
    ("StringLike", "home/?", "home/a", True),
    ("StringLike", "home/?", "home/ab", False),
    ("StringLike", "a.c", "abc", False),
    ("StringLike", "", "", True),
    ("StringLike", "x", ABSENT, False),
    ("StringNotLike", "t2.*", "m5.large", True),
    ("StringNotLike", ["t2.*", "m5.*"], "m5.large", False),
    ("StringNotLike", "t2.*", ABSENT, True),
    # --- Numeric ----------------------------------------------------------------------------
    ("NumericEquals", "10", "10", True),
    ("NumericEquals", "10", "10.0", True),
    ("NumericEquals", "10", "11", False),
    ("NumericEquals", "10", "ten", False),
    ("NumericEquals", "10", ABSENT, False),
    ("NumericNotEquals", "10", "11", True),
    ("NumericNotEquals", ["10", "11"], "11", False),
    ("NumericNotEquals", "10", ABSENT, True),
    ("NumericLessThan", "10", "9", True),
    ("NumericLessThan", "10", "10", False),
    ("NumericLessThan", "10", "-5.5", True),
    ("NumericLessThanEquals", "10", "10", True),
    ("NumericLessThanEquals", "10", "10.01", False),
    ("NumericGreaterThan", "10", "11", True),
    ("NumericGreaterThan", "10", "10", False),
    ("NumericGreaterThanEquals", "10", "10", True),
    ("NumericGreaterThanEquals", "10", "9.999", False),
    ("NumericGreaterThanEquals", "0.5", "1e3", True),
    ("NumericLessThanEquals", "10", ABSENT, False),
    # --- Date -------------------------------------------------------------------------------
    ("DateEquals", "2020-01-01T00:00:00Z", "2020-01-01T00:00:00Z", True),
    ("DateEquals", "2020-01-01T00:00:00Z", "1577836800", True),  # epoch seconds
    ("DateEquals", "1577836800", "2020-01-01T01:00:00+01:00", True),  # zones compared as instants
    ("DateEquals", "2020-01-01", "2020-01-01T00:00:00Z", True),
    ("DateEquals", "2020-01-01T00:00:00Z", "2020-01-01T00:00:01Z", False),
    ("DateNotEquals", "2020-01-01T00:00:00Z", "2020-01-01T00:00:01Z", True),
    ("DateNotEquals", "2020-01-01T00:00:00Z", ABSENT, True),
    ("DateLessThan", "2017-12-31T23:59:59Z", "2017-12-31T23:59:58Z", True),
    ("DateLessThan", "2017-12-31T23:59:59Z", "2017-12-31T23:59:59Z", False),
    ("DateLessThanEquals", "2017-12-31T23:59:59Z", "2017-12-31T23:59:59Z", True),
    ("DateGreaterThan", "2020-01-01T00:00:01Z", "2021-06-01T12:00:00Z", True),
    ("DateGreaterThan", "2020-01-01T00:00:01Z", "2019-06-01T12:00:00Z", False),
    ("DateGreaterThanEquals", "2020-01", "2020-01-01T00:00:00Z", True),
    ("DateGreaterThanEquals", "2020-06", "2020-05-31T23:59:59Z", False),
    ("DateGreaterThan", "2020-01-01T00:00:00Z", "not a date", False),
    ("DateGreaterThan", "2020-01-01T00:00:00Z", ABSENT, False),
    ("DateLessThan", "2020-01-01T00:00:00.500Z", "2020-01-01T00:00:00.499Z", True),
    # --- Bool -------------------------------------------------------------------------------
    ("Bool", "true", "true", True),
    ("Bool", "true", "false", False),
    ("Bool", "false", "false", True),
    ("Bool", "true", "True", True),
    ("Bool", "true", ABSENT, False),
    # --- Binary -----------------------------------------------------------------------------
    ("BinaryEquals", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", True),
    ("BinaryEquals", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", b"BinaryValueInBase64", True),
    ("BinaryEquals", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", "QUJD", False),
    ("BinaryEquals", "QUJD", "not base64!", False),
    ("BinaryEquals", "QUJD", ABSENT, False),
    # --- IP address -------------------------------------------------------------------------
    ("IpAddress", "203.0.113.0/24", "203.0.113.5", True),
    ("IpAddress", "203.0.113.0/24", "203.0.114.5", False),
    ("IpAddress", "203.0.113.7", "203.0.113.7", True),  # bare address = /32
    ("IpAddress", "203.0.113.7", "203.0.113.8", False),
    ("IpAddress", "203.0.113.9/24", "203.0.113.200", True),  # host bits ignored
    ("IpAddress", "2001:DB8:1234:5678::/64", "2001:db8:1234:5678::1", True),  # IPv6, any case
    ("IpAddress", "2001:DB8:1234:5678::/64", "2001:db8:1234:5679::1", False),
    ("IpAddress", "2001:db8::1", "2001:db8::1", True),  # bare v6 = /128
    ("IpAddress", ["203.0.113.0/24", "2001:DB8:1234:5678::/64"], "2001:db8:1234:5678:ffff::2", True),
    ("IpAddress", "203.0.113.0/24", "::ffff:203.0.113.5", True),  # IPv4-mapped IPv6
    ("IpAddress", "0.0.0.0/0", "2001:db8::1", False),  # families never mix
    ("IpAddress", "::/0", "203.0.113.5", False),
    ("IpAddress", "203.0.113.0/24", "not-an-ip", False),
    ("IpAddress", "203.0.113.0/24", ABSENT, False),
    ("NotIpAddress", ["192.0.2.0/24", "203.0.113.0/24"], "198.51.100.1", True),
    ("NotIpAddress", ["192.0.2.0/24", "203.0.113.0/24"], "203.0.113.1", False),
    ("NotIpAddress", "2001:db8::/32", "2001:db9::1", True),
    ("NotIpAddress", "2001:db8::/32", ABSENT, True),
    # --- ARN --------------------------------------------------------------------------------
    ("ArnEquals", "arn:aws:sns:us-east-1:123456789012:topic", "arn:aws:sns:us-east-1:123456789012:topic", True),
    ("ArnEquals", "arn:aws:sns:*:123456789012:*", "arn:aws:sns:us-east-1:123456789012:topic", True),
    ("ArnLike", "arn:aws:sns:*:123456789012:*", "arn:aws:sns:us-east-1:999999999999:topic", False),
    ("ArnLike", "arn:aws:iam::123456789012:role/*", "arn:aws:iam::123456789012:role/Admin", True),
    ("ArnLike", "arn:aws:iam::123456789012:role/admin", "arn:aws:iam::123456789012:role/Admin", False),
    ("ArnLike", "arn:aws:iam::*", "arn:aws:iam::123456789012:role/x", False),  # six parts needed
    ("ArnLike", "arn:aws:s3:::b", ABSENT, False),
    ("ArnNotEquals", "arn:aws:iam::444455556666:user/user-name", "arn:aws:iam::444455556666:user/other", True),
    ("ArnNotEquals", "arn:aws:iam::444455556666:user/user-name", "arn:aws:iam::444455556666:user/user-name", False),
    ("ArnNotLike", "arn:aws:iam::*:role/ops-*", "arn:aws:iam::1:role/dev-x", True),
    ("ArnNotLike", "arn:aws:iam::*:role/ops-*", ABSENT, True),
    # --- Null -------------------------------------------------------------------------------
    ("Null", "true", ABSENT, True),
    ("Null", "true", "2020-01-01T00:00:00Z", False),
    ("Null", "false", "x", True),
    ("Null", "false", ABSENT, False),
    ("Null", "false", "", True),  # present, even if empty text
    ("Null", "true", [], True),  # an empty set is null
    ("Null", ["true", "false"], ABSENT, True),
    ("Null", "TRUE", ABSENT, True),
    # --- IfExists ---------------------------------------------------------------------------
    ("StringLikeIfExists", ["t1.*", "t2.*", "m3.*"], ABSENT, True),
    ("StringLikeIfExists", ["t1.*", "t2.*", "m3.*"], "t2.micro", True),
    ("StringLikeIfExists", ["t1.*", "t2.*", "m3.*"], "c5.large", False),
    ("StringEqualsIfExists", "x", ABSENT, True),
    ("StringNotEqualsIfExists", "x", ABSENT, True),
    ("StringNotEqualsIfExists", "x", "x", False),
    ("StringEqualsIgnoreCaseIfExists", "X", "x", True),
    ("StringNotEqualsIgnoreCaseIfExists", "X", "x", False),
    ("StringNotLikeIfExists", "a*", "abc", False),
    ("NumericLessThanIfExists", "10", ABSENT, True),
    ("NumericLessThanIfExists", "10", "11", False),
    ("NumericEqualsIfExists", "10", "10", True),
    ("NumericNotEqualsIfExists", "10", "10", False),
    ("NumericLessThanEqualsIfExists", "10", "10", True),
    ("NumericGreaterThanIfExists", "10", "9", False),
    ("NumericGreaterThanEqualsIfExists", "10", ABSENT, True),
    ("DateLessThanIfExists", "2020-01-01T00:00:00Z", ABSENT, True),
    ("DateGreaterThanIfExists", "2020-01-01T00:00:00Z", "2019-01-01T00:00:00Z", False),
    ("DateEqualsIfExists", "2020-01-01T00:00:00Z", "1577836800", True),
    ("DateNotEqualsIfExists", "2020-01-01T00:00:00Z", "1577836800", False),
    ("DateLessThanEqualsIfExists", "2020-01-01T00:00:00Z", "1577836800", True),
    ("DateGreaterThanEqualsIfExists", "2020-01-01T00:00:00Z", "1577836799", False),
    ("BoolIfExists", "false", ABSENT, True),
    ("BoolIfExists", "false", "true", False),
    ("BinaryEqualsIfExists", "QUJD", ABSENT, True),
    ("IpAddressIfExists", "10.0.0.0/8", ABSENT, True),
    ("IpAddressIfExists", "10.0.0.0/8", "11.0.0.1", False),
    ("NotIpAddressIfExists", "10.0.0.0/8", "10.0.0.1", False),
    ("ArnLikeIfExists", "arn:aws:iam::*:role/*", ABSENT, True),
    ("ArnEqualsIfExists", "arn:aws:iam::1:role/a", "arn:aws:iam::1:role/b", False),
    ("ArnNotLikeIfExists", "arn:aws:iam::1:role/a", "arn:aws:iam::1:role/a", False),
    ("ArnNotEqualsIfExists", "arn:aws:iam::1:role/a", "arn:aws:iam::1:role/b", True),
]


@pytest.mark.parametrize(("operator", "values", "request_value", "expected"), CASES)
def test_operator(operator: str, values: Any, request_value: Any, expected: bool) -> None:
    assert holds(operator, values, request_value) is expected


def test_every_operator_and_its_if_exists_form_is_covered() -> None:
    covered = {op for op, *_ in CASES}
    for base in OPERATORS:
        assert base in covered, base
        if base != "Null":
            assert base + "IfExists" in covered, base + "IfExists"


# --- set qualifiers ------------------------------------------------------------------------------

# The DynamoDB examples of "Creating a condition with multiple keys or values".
SET_CASES = [
    # ForAllValues: every request value must match some policy value
    ("ForAllValues:StringEquals", ["ID", "Message", "Tags"], ["Message", "Tags"], True),
    ("ForAllValues:StringEquals", ["ID", "Message", "Tags"], ["Message", "UserName"], False),
    ("ForAllValues:StringEquals", ["PostDateTime", "Message", "Tags"], ["PostDateTime", "UserName"], False),
    ("ForAllValues:StringLike", ["PostDateTime", "Message", "Tags"], ["PostDateTime", "Message"], True),
    ("ForAllValues:StringEquals", ["a"], ABSENT, True),  # absent key: true
    ("ForAllValues:StringEquals", ["a"], [], True),  # empty set: true
    ("ForAllValues:StringLike", ["key1*"], ["key1-a", "key1-b"], True),
    ("ForAllValues:StringLike", ["key1*"], ["key1-a", "key2"], False),
    # ForAnyValue: at least one request value matches
    ("ForAnyValue:StringEquals", ["ID", "PostDateTime"], ["PostDateTime", "Message"], True),
    ("ForAnyValue:StringEquals", ["ID", "PostDateTime"], ["UserName"], False),
    ("ForAnyValue:StringEquals", ["ID", "PostDateTime"], ["UserName", "Message", "PostDateTime"], True),
    ("ForAnyValue:StringEquals", ["a"], ABSENT, False),  # absent key: false
    ("ForAnyValue:StringEquals", ["a"], [], False),  # empty set: false
    ("ForAnyValue:StringLike", ["*admin*"], ["user", "superadmin"], True),
    # with negated operators the per-value test is "matches none of the policy values"
    ("ForAllValues:StringNotEquals", ["a", "b"], ["c", "d"], True),
    ("ForAllValues:StringNotEquals", ["a", "b"], ["c", "a"], False),
    ("ForAnyValue:StringNotEquals", ["a", "b"], ["c", "a"], True),
    ("ForAnyValue:StringNotEquals", ["a", "b"], ["a", "b"], False),
    ("ForAnyValue:StringNotEquals", ["a"], ABSENT, False),
    ("ForAllValues:StringNotLike", ["a*"], ABSENT, True),
    # IfExists with a qualifier: a missing key is true
    ("ForAnyValue:StringEqualsIfExists", ["a"], ABSENT, True),
    ("ForAnyValue:StringEqualsIfExists", ["a"], ["b"], False),
    # other families
    ("ForAnyValue:NumericGreaterThan", ["10"], ["1", "20"], True),
    ("ForAllValues:NumericGreaterThan", ["10"], ["1", "20"], False),
    ("ForAllValues:IpAddress", ["10.0.0.0/8"], ["10.1.1.1", "10.2.2.2"], True),
    ("ForAnyValue:IpAddress", ["2001:db8::/32"], ["10.0.0.1", "2001:db8::5"], True),
    ("ForAnyValue:ArnLike", ["arn:aws:iam::*:role/a*"], ["arn:aws:iam::1:role/b", "arn:aws:iam::1:role/ab"], True),
    ("ForAllValues:DateLessThan", ["2021-01-01"], ["2020-01-01", "2020-06-01"], True),
    ("ForAnyValue:Bool", ["true"], ["false", "true"], True),
    # no qualifier on a multivalued key: positive = any matches, negated = none matches
    ("StringEquals", ["a"], ["b", "a"], True),
    ("StringNotEquals", ["a"], ["b", "a"], False),
    ("StringNotEquals", ["a"], ["b", "c"], True),
]


@pytest.mark.parametrize(("operator", "values", "request_value", "expected"), SET_CASES)
def test_set_qualifiers(operator: str, values: list[str], request_value: Any, expected: bool) -> None:
    assert holds(operator, values, request_value) is expected


# --- blocks: AND across operators and keys -------------------------------------------------------

def test_keys_and_operators_are_anded() -> None:
    block = {
        "StringEqualsIgnoreCase": {
            "aws:PrincipalTag/department": ["finance", "hr", "legal"],
            "aws:PrincipalTag/role": ["audit", "security"],
        },
        "StringEquals": {"aws:PrincipalAccount": ["123456789012"]},
    }
    conds = parse_condition_block(block)
    assert len(conds) == 3
    good = {"aws:principaltag/department": "HR", "aws:principaltag/role": "audit",
            "aws:principalaccount": "123456789012"}
    assert conditions_hold(conds, good, None)
    for missing in good:
        assert not conditions_hold(conds, {k: v for k, v in good.items() if k != missing}, None)
    assert not conditions_hold(conds, {**good, "aws:principalaccount": "999999999999"}, None)


def test_empty_block_holds() -> None:
    assert conditions_hold(parse_condition_block({}), {}, None)
    assert conditions_hold(parse_condition_block({"StringEquals": {}}), {}, None)


def test_condition_keys_are_case_insensitive() -> None:
    assert holds("StringEquals", "x", "x", key="AWS:PrincipalTag/Team")
    conds = parse_condition_block({"StringEquals": {"aws:principaltag/team": ["x"]}})
    assert conditions_hold(conds, {"aws:principaltag/team": "x"}, None)


# --- policy variables in condition values --------------------------------------------------------

@pytest.mark.parametrize(
    ("operator", "value", "request_value", "expected"),
    [
        ("StringEquals", "${aws:username}", "alice", True),
        ("StringEquals", "${aws:username}", "bob", False),
        ("StringLike", "home/${aws:username}/*", "home/alice/docs", True),
        ("StringLike", "home/${aws:username}/*", "home/bob/docs", False),
        ("StringEqualsIgnoreCase", "${aws:username}", "ALICE", True),
        ("StringEquals", "${aws:PrincipalTag/team, 'none'}", "none", True),
        ("StringEquals", "a${*}b", "a*b", True),
        ("StringLike", "a${*}b", "aXb", False),
        ("ArnLike", "arn:aws:iam::*:user/${aws:username}", "arn:aws:iam::1:user/alice", True),
        ("ArnEquals", "arn:aws:iam::*:user/${aws:username}", "arn:aws:iam::1:user/bob", False),
        ("Bool", "${aws:flag}", "true", True),
        # a variable with no value matches nothing; negated operators then hold
        ("StringEquals", "${aws:PrincipalTag/team}", "", False),
        ("StringNotEquals", "${aws:PrincipalTag/team}", "blue", True),
        ("StringLike", "*${aws:PrincipalTag/team}*", "blue", False),
        ("StringNotLike", "*${aws:PrincipalTag/team}*", "blue", True),
    ],
)
def test_variables_in_condition_values(operator: str, value: str, request_value: str,
                                       expected: bool) -> None:
    extra = {"aws:username": "alice", "aws:flag": "true"}
    assert holds(operator, value, request_value, extra=extra) is expected


def test_variables_are_literal_in_version_2008() -> None:
    assert not holds("StringEquals", "${aws:username}", "alice", extra={"aws:username": "alice"},
                     variables=False)
    assert holds("StringEquals", "${aws:username}", "${aws:username}",
                 extra={"aws:username": "alice"}, variables=False)


# --- parsing -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("StringEquals", ("StringEquals", None, False)),
        ("StringLikeIfExists", ("StringLike", None, True)),
        ("ForAnyValue:StringLike", ("StringLike", "ForAnyValue", False)),
        ("ForAllValues:ArnNotLikeIfExists", ("ArnNotLike", "ForAllValues", True)),
        ("Null", ("Null", None, False)),
        ("NullIfExists", None),  # IfExists is not allowed on Null
        ("StringEqual", None),
        ("stringequals", None),
        ("ForSomeValues:StringEquals", None),
        ("ForAnyValue:", None),
        ("IfExists", None),
    ],
)
def test_split_operator(name: str, expected: object) -> None:
    assert split_operator(name) == expected


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"StringEqualz": {"aws:username": ["x"]}}, "Syntax errors in policy."),
        ({"NullIfExists": {"aws:username": ["true"]}}, "Syntax errors in policy."),
        ({"DateLessThan": {"aws:CurrentTime": ["yesterday"]}}, "The policy failed legacy parsing"),
        ({"DateLessThan": {"aws:CurrentTime": ["${aws:EpochTime}"]}}, "The policy failed legacy parsing"),
        ({"DateEquals": {"aws:CurrentTime": ["2020-13-01"]}}, "The policy failed legacy parsing"),
        ({"NumericLessThan": {"s3:max-keys": ["ten"]}}, "The policy failed legacy parsing"),
        ({"NumericLessThan": {"s3:max-keys": ["NaN"]}}, "The policy failed legacy parsing"),
        ({"IpAddress": {"aws:SourceIp": ["300.1.2.3/8"]}}, "The policy failed legacy parsing"),
        ({"NotIpAddress": {"aws:SourceIp": ["10.0.0.0/33"]}}, "The policy failed legacy parsing"),
        ({"BinaryEquals": {"k:bin": ["***"]}}, "The policy failed legacy parsing"),
        ({"Null": {"aws:TokenIssueTime": ["maybe"]}}, "The policy failed legacy parsing"),
    ],
)
def test_malformed_blocks(block: dict[str, Any], message: str) -> None:
    with pytest.raises(PolicyDocumentError) as info:
        parse_condition_block(block)
    assert info.value.message == message
    assert info.value.detail  # names the operator or value at fault


def test_detail_names_the_operator() -> None:
    with pytest.raises(PolicyDocumentError) as info:
        parse_condition_block({"StringEqualz": {"aws:username": ["x"]}})
    assert "StringEqualz" in info.value.detail


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("0", 0),
        ("1.5", 1_500_000),
        ("2020-01-01T00:00:00Z", 1_577_836_800_000_000),
        ("2020-01-01T00:00:00z", 1_577_836_800_000_000),
        ("2020-01-01t00:00:00Z", 1_577_836_800_000_000),
        ("2020-01-01T01:00:00+01:00", 1_577_836_800_000_000),
        ("2020-01-01T00:00", 1_577_836_800_000_000),
        ("2020-01-01", 1_577_836_800_000_000),
        ("2020-01", 1_577_836_800_000_000),
        ("2020", 2_020_000_000),  # digits alone are epoch seconds, as IAM's legacy parser reads them
        ("20200101T000000Z", 1_577_836_800_000_000),
        ("2020-01-01T00:00:00.25Z", 1_577_836_800_250_000),
        ("", None),
        ("soon", None),
        ("2020-02-30", None),
        ("1" * 100, None),
    ],
)
def test_parse_date(text: str, micros: int | None) -> None:
    assert parse_date(text) == micros


# Values each operator family parses, and arbitrary text: with text alone the typed operators
# (Numeric*, Date*, IpAddress, Bool, Binary, Null) would almost never get past parsing.
def _ipv4(n: int) -> str:
    return f"{n >> 24}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


_TYPED_VALUES = {
    "Numeric": st.one_of(st.integers(-10**12, 10**12).map(str),
                         st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr)),
    "Date": st.one_of(st.datetimes().map(lambda d: d.isoformat() + "Z"), st.integers(0, 2**33).map(str)),
    "IpAddress": st.one_of(st.integers(0, 2**32 - 1).map(_ipv4),
                           st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)).map(lambda t: f"{_ipv4(t[0])}/{t[1]}"),
                           st.ip_addresses(v=6).map(str)),
    "Bool": st.sampled_from(["true", "false", "True", "FALSE"]),
    "Binary": st.binary(max_size=12).map(lambda b: base64.b64encode(b).decode()),
}
_ANY_VALUE = st.one_of(st.text(max_size=20), *_TYPED_VALUES.values())


def _family_values(operator: str) -> st.SearchStrategy[str]:
    """Mostly values of the operator's own type, sometimes anything."""
    for prefix, values in (("NotIpAddress", _TYPED_VALUES["IpAddress"]), ("Null", _TYPED_VALUES["Bool"]),
                           *_TYPED_VALUES.items()):
        if operator.startswith(prefix):
            return st.one_of(values, values, values, _ANY_VALUE)
    return _ANY_VALUE


@st.composite
def _condition(draw: st.DrawFn) -> tuple[str, list[str], Any]:
    base = draw(st.sampled_from(sorted(OPERATORS)))
    name = draw(st.sampled_from(["", "ForAnyValue:", "ForAllValues:"])) + base + draw(st.sampled_from(["", "IfExists"]))
    values = _family_values(base)
    request = draw(st.one_of(st.none(), values, st.lists(values, max_size=3)))
    return name, draw(st.lists(values, min_size=1, max_size=3)), request


# qualifiers and IfExists are drawn too; the combinations IAM refuses (Null with either) fail
# parsing, as they should, which leaves each typed operator a few dozen valid examples
@settings(max_examples=1500, deadline=None)
@given(_condition())
def test_evaluation_never_raises(condition: tuple[str, list[str], Any]) -> None:
    operator, policy_values, request_value = condition
    try:
        conds = parse_condition_block({operator: {"k:key": policy_values}})
    except PolicyDocumentError:
        return
    keys = {} if request_value is None else {"k:key": request_value}
    assert conditions_hold(conds, keys, resolver_for(keys)) in (True, False)
