"""Pure helpers behind the API's authorisation: which resource an RDS name or ARN names here, and
IAM's tag rules (issue 15)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from dbkeep.api.services import iam_common, rds_common
from dbkeep.errors import ApiError

CTX = SimpleNamespace(region="us-east-1", account_id="123456789012")


@pytest.mark.parametrize(("kind", "value", "expected"), [
    ("cluster", "My-Cluster", ("my-cluster", "arn:aws:rds:us-east-1:123456789012:cluster:my-cluster")),
    ("cluster", "arn:aws:rds:us-east-1:123456789012:cluster:My-Cluster",
     ("my-cluster", "arn:aws:rds:us-east-1:123456789012:cluster:my-cluster")),
    ("cluster-pg", "arn:aws:rds:us-east-1:123456789012:cluster-pg:Grp",
     ("grp", "arn:aws:rds:us-east-1:123456789012:cluster-pg:grp")),
    # another account, region or type names nothing here; authorised as spelled
    ("cluster", "arn:aws:rds:us-east-1:000000000000:cluster:c1", (None, "arn:aws:rds:us-east-1:000000000000:cluster:c1")),
    ("cluster", "arn:aws:rds:eu-west-9:123456789012:cluster:c1", (None, "arn:aws:rds:eu-west-9:123456789012:cluster:c1")),
    ("cluster", "arn:aws:rds:us-east-1:123456789012:db:c1", (None, "arn:aws:rds:us-east-1:123456789012:db:c1")),
    ("db", "arn:aws:rds:us-east-1:123456789012:db:", (None, "arn:aws:rds:us-east-1:123456789012:db:")),
    ("db", "arn:aws-cn:rds:us-east-1:123456789012:db:i1", (None, "arn:aws-cn:rds:us-east-1:123456789012:db:i1")),
    ("db", "arn:aws:rds:us-east-1:123456789012:db:i1:extra", (None, "arn:aws:rds:us-east-1:123456789012:db:i1:extra")),
])
def test_rds_ref(kind, value, expected):
    assert rds_common.ref(CTX, kind, value) == expected


def test_iam_tags_are_validated_as_iam_does():
    assert iam_common.tags_in({"Tags": [{"Key": "Team Name", "Value": "db-1 ü"}]}) == (("Team Name", "db-1 ü"),)
    cases = [
        ({"Tags": [{"Key": f"k{i}", "Value": ""} for i in range(51)]}, "ValidationError", "at 'tags' failed"),
        ({"Tags": [{"Key": "a" * 129, "Value": ""}]}, "ValidationError", "less than or equal to 128"),
        ({"Tags": [{"Key": "a", "Value": "v" * 257}]}, "ValidationError", "less than or equal to 256"),
        ({"Tags": [{"Key": "a;b", "Value": ""}]}, "ValidationError", "regular expression pattern"),
        ({"Tags": [{"Key": "a", "Value": "<x>"}]}, "ValidationError", "tags.1.member.value"),
        ({"Tags": [{"Key": "aws:x", "Value": ""}]}, "InvalidInput", "reserved"),
        ({"Tags": [{"Key": "k", "Value": ""}, {"Key": "K", "Value": ""}]}, "InvalidInput", "case insensitive"),
    ]
    for args, code, text in cases:
        with pytest.raises(ApiError) as exc:
            iam_common.tags_in(args)
        assert exc.value.code == code and text in exc.value.message, args


def test_iam_tag_keys_compare_case_insensitively():
    current = (("Team", "db"), ("env", "prod"))
    assert iam_common.merge_tags(current, (("team", "web"),)) == (("env", "prod"), ("team", "web"))
    assert iam_common.drop_tags(current, ["TEAM", "missing"]) == (("env", "prod"),)


def test_policy_arns():
    ctx = SimpleNamespace(account_id="123456789012", catalog=SimpleNamespace(get_managed_policy=lambda arn: None))
    assert iam_common.resolve_policy(ctx, "arn:aws:iam::000000000000:policy/x") == (None, "arn:aws:iam::000000000000:policy/x")
    assert iam_common.resolve_policy(ctx, "arn:aws:iam::aws:policy/ReadOnlyAccess") == (None, "arn:aws:iam::aws:policy/ReadOnlyAccess")
    assert iam_common.resolve_policy(ctx, "arn:aws:iam::123456789012:policy/a/b/x") == (None, "arn:aws:iam::123456789012:policy/a/b/x")
    for bad in ("arn:aws:iam::123456789012:role/x", "x", "arn:aws:iam::1234:policy/x"):
        with pytest.raises(ApiError) as exc:
            iam_common.resolve_policy(ctx, bad)
        assert exc.value.code == "InvalidInput"
