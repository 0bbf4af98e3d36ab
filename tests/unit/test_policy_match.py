"""Globs, ARN matching and policy variables (dbkeep.policy.match)."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbkeep.policy.match import (
    arn_like,
    compile_pattern,
    glob_match,
    match_action,
    match_resource,
    resolver_for,
    substitute_literal,
)


VARS = resolver_for({
    "aws:username": "alice",
    "aws:userid": "AIDAEXAMPLE",
    "aws:principaltag/team": "blue",
    "aws:principaltag/star": "a*b",
    "aws:multi": ["x", "y"],
    "aws:single-list": ["only"],
})


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        # plain text and the two wildcards
        ("abc", "abc", True),
        ("abc", "abcd", False),
        ("abc", "xabc", False),  # a full match, never a search
        ("", "", True),
        ("", "a", False),
        ("*", "", True),
        ("*", "anything at all", True),
        ("a*", "a", True),
        ("*a", "ba", True),
        ("*a", "ab", False),
        ("a*c", "abbbc", True),
        ("a*c", "ab", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),  # ? is exactly one character
        ("a?c", "abbc", False),
        ("??", "ab", True),
        ("??", "a", False),
        ("*?", "", False),
        ("*?", "x", True),
        ("a**b", "ab", True),
        ("*a*a*a*b", "aaab", True),
        ("*a*a*a*b", "aab", False),
        ("*ab*ab*", "abab", True),
        ("*ab*ab*", "aba", False),
        # * spans : and /
        ("arn:aws:s3:::*", "arn:aws:s3:::bucket/key/with/slashes", True),
        ("arn:*", "arn:aws:rds:us-east-1:123456789012:cluster:c1", True),
        ("arn:aws:rds:*:123456789012:cluster:*", "arn:aws:rds:us-east-1:123456789012:cluster:c1", True),
        ("arn:aws:s3:::*log*", "arn:aws:s3:::carlossalazar-logs", True),
        # regex metacharacters are literal
        (".", "a", False),
        ("a.c", "abc", False),
        ("a.c", "a.c", True),
        ("a+", "aa", False),
        ("a+", "a+", True),
        ("(a)", "a", False),
        ("(a)", "(a)", True),
        ("[ab]", "a", False),
        ("[ab]", "[ab]", True),
        ("a$", "a", False),
        ("a$", "a$", True),
        ("^a", "^a", True),
        ("a|b", "a", False),
        ("a{2}", "aa", False),
        ("\\d", "1", False),
        ("\\d", "\\d", True),
        ("a\\*", "a\\xyz", True),  # backslash is literal, the star still a wildcard
        # case-sensitive by default; * crosses newlines
        ("ABC", "abc", False),
        ("a*b", "a\nb", True),
    ],
)
def test_glob(pattern: str, value: str, expected: bool) -> None:
    assert glob_match(pattern, value) is expected


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("rds:CreateDBCluster", "rds:CreateDBCluster", True),
        ("RDS:createdbcluster", "rds:CreateDBCluster", True),  # prefix and name are case-insensitive
        ("iam:ListAccessKeys", "IAM:listaccesskeys", True),
        ("rds:*", "rds:DescribeDBClusters", True),
        ("rds:Describe*", "rds:describedbclusters", True),
        ("rds:Describe*", "rds:DeleteDBCluster", False),
        ("iam:*AccessKey*", "iam:CreateAccessKey", True),
        ("iam:*AccessKey*", "iam:ListAccessKeys", True),
        ("iam:*AccessKey*", "iam:GetUser", False),
        ("*", "sts:AssumeRole", True),
        ("rds:*", "rds-db:connect", False),
        ("rds*:*", "rds-db:connect", True),
        ("rds:Create?BCluster", "rds:CreateDBCluster", True),
        ("s3:Get*", "s3:GetObject", True),
        ("s3:Get*", "s3:PutObject", False),
    ],
)
def test_action_matching_is_case_insensitive(pattern: str, action: str, expected: bool) -> None:
    assert match_action(pattern, action) is expected


@pytest.mark.parametrize(
    ("pattern", "resource", "expected"),
    [
        ("arn:aws:rds:us-east-1:123456789012:cluster:c1", "arn:aws:rds:us-east-1:123456789012:cluster:c1", True),
        ("arn:aws:rds:us-east-1:123456789012:cluster:C1", "arn:aws:rds:us-east-1:123456789012:cluster:c1", False),
        ("ARN:AWS:RDS:us-east-1:123456789012:cluster:c1", "arn:aws:rds:us-east-1:123456789012:cluster:c1", False),
        ("arn:aws:rds:*:*:cluster:*", "arn:aws:rds:eu-west-1:111122223333:cluster:prod", True),
        ("arn:aws:rds:*:*:cluster:*", "arn:aws:rds:eu-west-1:111122223333:db:prod", False),
        ("arn:aws:rds-db:us-east-2:1234567890:dbuser:cluster-ABCDEFGHIJKL01234/*",
         "arn:aws:rds-db:us-east-2:1234567890:dbuser:cluster-ABCDEFGHIJKL01234/db_user", True),
        ("arn:aws:rds-db:us-east-2:1234567890:dbuser:cluster-ABCDEFGHIJKL01234/db_user",
         "arn:aws:rds-db:us-east-2:1234567890:dbuser:cluster-ABCDEFGHIJKL01234/DB_USER", False),
        ("arn:aws:rds-db:*:*:dbuser:*/jane_doe",
         "arn:aws:rds-db:us-east-2:1234567890:dbuser:cluster-ABCDEFGHIJKL01234/jane_doe", True),
        ("*", "", True),
    ],
)
def test_resource_matching_is_case_sensitive(pattern: str, resource: str, expected: bool) -> None:
    assert match_resource(pattern, resource) is expected


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/alice", True),
        ("arn:aws:iam::*:user/*", "arn:aws:iam::123456789012:user/alice", True),
        ("arn:aws:iam::123456789012:user/*", "arn:aws:iam::123456789012:user/Alice/x", True),
        ("arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:user/Alice", False),
        # the IAM guide's example: StringLike matches, ArnLike does not (parts are separate)
        ("arn:aws:someservice:*:111122223333:finance/*",
         "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt", False),
        # the sixth part keeps its colons
        ("arn:aws:rds:*:123456789012:cluster:*", "arn:aws:rds:us-east-1:123456789012:cluster:c1", True),
        ("arn:aws:rds:*:123456789012:*", "arn:aws:rds:us-east-1:123456789012:cluster:c1", True),
        ("arn:aws:s?:::bucket", "arn:aws:s3:::bucket", True),
        ("arn:aws:s3:::bucket", "not-an-arn", False),
        ("arn:aws", "arn:aws:s3:::bucket", False),
        ("*", "anything", True),
        ("arn:*:*:*:*:*", "arn:aws:s3:::b", True),
    ],
)
def test_arn_like(pattern: str, value: str, expected: bool) -> None:
    assert arn_like(pattern, value) is expected


def test_string_like_and_arn_like_differ_as_documented() -> None:
    pattern = "arn:aws:someservice:*:111122223333:finance/*"
    value = "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt"
    assert glob_match(pattern, value)
    assert not arn_like(pattern, value)


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("arn:aws:s3:::bucket/${aws:username}/*", "arn:aws:s3:::bucket/alice/x", True),
        ("arn:aws:s3:::bucket/${aws:username}/*", "arn:aws:s3:::bucket/bob/x", False),
        ("arn:aws:s3:::bucket/${AWS:UserName}", "arn:aws:s3:::bucket/alice", True),  # keys are case-insensitive
        ("arn:aws:iam::123456789012:user/${aws:username}", "arn:aws:iam::123456789012:user/alice", True),
        ("home/${aws:userid}/", "home/AIDAEXAMPLE/", True),
        ("bucket-${aws:PrincipalTag/team}", "bucket-blue", True),
        ("bucket-${aws:PrincipalTag/team, 'company-wide'}", "bucket-blue", True),
        ("bucket-${aws:PrincipalTag/missing, 'company-wide'}", "bucket-company-wide", True),
        ("bucket-${aws:PrincipalTag/missing,'company-wide'}", "bucket-company-wide", True),
        # an absent key with no default matches nothing, not even the empty string
        ("bucket-${aws:PrincipalTag/missing}", "bucket-", False),
        ("*${aws:PrincipalTag/missing}*", "anything", False),
        # substituted values are literal: a * in a tag is not a wildcard
        ("x-${aws:PrincipalTag/star}", "x-a*b", True),
        ("x-${aws:PrincipalTag/star}", "x-aXXb", False),
        # special characters
        ("a${*}b", "a*b", True),
        ("a${*}b", "aXb", False),
        ("a${?}b", "a?b", True),
        ("a${?}b", "aXb", False),
        ("price${$}", "price$", True),
        # multivalued keys cannot be variables; a one-element list is a single value
        ("${aws:multi}", "x", False),
        ("${aws:single-list}", "only", True),
        # not a well-formed variable: literal text
        ("${", "${", True),
        ("${not closed", "${not closed", True),
    ],
)
def test_policy_variables(pattern: str, value: str, expected: bool) -> None:
    assert glob_match(pattern, value, resolve=VARS) is expected


def test_variables_are_literal_text_without_a_resolver() -> None:
    # Version 2008-10-17: "${aws:username}" is the literal string.
    assert glob_match("home/${aws:username}", "home/${aws:username}")
    assert not glob_match("home/${aws:username}", "home/alice")


def test_arn_like_with_variable_containing_colons() -> None:
    assert arn_like("arn:aws:ec2:${aws:RequestedRegion}:*:instance/*",
                    "arn:aws:ec2:eu-west-1:123456789012:instance/i-1",
                    resolver_for({"aws:requestedregion": "eu-west-1"}))
    assert not arn_like("arn:aws:ec2:${aws:RequestedRegion}:*:instance/*",
                        "arn:aws:ec2:us-east-1:123456789012:instance/i-1",
                        resolver_for({"aws:requestedregion": "eu-west-1"}))


def test_substitute_literal() -> None:
    assert substitute_literal("${aws:username}-${*}", VARS) == "alice-*"
    assert substitute_literal("${aws:nothing}", VARS) is None
    assert substitute_literal("${aws:username}", None) == "${aws:username}"


def test_compiled_patterns_are_cached() -> None:
    assert compile_pattern("arn:aws:rds:*:*:cluster:*") is compile_pattern("arn:aws:rds:*:*:cluster:*")
    assert compile_pattern("x-${aws:username}-*", VARS) is compile_pattern("x-${aws:username}-*", VARS)
    assert compile_pattern("x-${aws:gone}", VARS) is None


def test_many_stars_do_not_backtrack() -> None:
    # A naive .*a.*a… translation takes minutes on this; the atomic-group form is linear.
    pattern = "*a" * 30 + "*b"
    assert not glob_match(pattern, "a" * 5000)
    assert glob_match(pattern, "a" * 5000 + "b")


# --- properties --------------------------------------------------------------------------------

def reference_glob(pattern: str, value: str) -> bool:
    """Textbook dynamic-programming wildcard match, for comparison."""

    @functools.lru_cache(maxsize=None)
    def m(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(value)
        if pattern[i] == "*":
            return m(i + 1, j) or (j < len(value) and m(i, j + 1))
        if j == len(value):
            return False
        return (pattern[i] == "?" or pattern[i] == value[j]) and m(i + 1, j + 1)

    return m(0, 0)


ALPHABET = st.sampled_from(list("ab*?.:/$()[]+\\{}^|\n"))


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_matching_never_raises(pattern: str, value: str) -> None:
    glob_match(pattern, value)
    glob_match(pattern, value, resolve=VARS)
    match_action(pattern, value)
    match_resource(pattern, value, VARS)
    arn_like(pattern, value)
    arn_like(pattern, value, VARS)


@settings(max_examples=1000, deadline=None)
@given(st.text(ALPHABET, max_size=12), st.text(ALPHABET, max_size=12))
def test_glob_agrees_with_reference(pattern: str, value: str) -> None:
    assert glob_match(pattern, value) == reference_glob(pattern, value)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_pattern_without_wildcards_matches_only_itself(text: str) -> None:
    literal = text.replace("*", "").replace("?", "")
    assert glob_match(literal, literal)
    assert not glob_match(literal, literal + "x")
