"""What the IAM handlers share: ARNs, errors, tag validation and the authorise-then-resolve step.

**Which ARN a call is authorised on.** IAM ARNs carry the entity's path
(``arn:aws:iam::ACCOUNT:user/division/alice``). A handler that takes a name looks the entity up
*silently*, authorises the action on the entity's own ARN (its stored path), and only then says
``NoSuchEntity`` when nothing answers to the name; for such a name the ARN is the one it would
have with the default path ``/``, as on AWS. So a caller without the permission gets the same
``AccessDenied`` whether or not the name exists. (A caller whose policy allows some paths and
not others, or tests ``aws:ResourceTag``, can of course tell the two cases apart, as on AWS:
the policy decides on the real entity.)

**Tags** (IAM User Guide, "Tagging IAM resources"; ``TagUser``/``TagRole`` API reference):
at most 50 per entity; keys 1–128 and values 0–256 characters of letters, digits, spaces and
``_.:/=+-@``; keys are case-insensitive (one key per spelling, the last spelling kept) but
stored as given; ``aws:`` keys are reserved. Errors as IAM reports them: ``ValidationError``
with the constraint text, ``InvalidInput`` for duplicate keys.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from dbkeep.api.context import CallContext, resource_tag_keys
from dbkeep.catalog.models import Group, ManagedPolicy, Role, User
from dbkeep.errors import ApiError

MAX_TAGS = 50
TAG_KEY_PATTERN = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]+"
TAG_VALUE_PATTERN = r"[\p{L}\p{Z}\p{N}_.:/=+\-@]*"
_POLICY_ARN = re.compile(r"arn:aws:iam::(\d{12}|aws):policy(/(?:[\x21-\x7e]*/)?)([\w+=,.@-]{1,128})")

Tags = tuple[tuple[str, str], ...]


def no_such(kind: str, name: str) -> ApiError:
    return ApiError("NoSuchEntity", f"The {kind} with name {name} cannot be found.", 404)


def arn(ctx: CallContext, kind: str, path: str, name: str) -> str:
    return f"arn:aws:iam::{ctx.account_id}:{kind}{path}{name}"


# --- tags --------------------------------------------------------------------------------------


def _tag_chars_ok(text: str) -> bool:
    return all(unicodedata.category(ch)[0] in "LZN" or ch in "_.:/=+-@" for ch in text)


def _invalid(value: str, where: str, constraint: str) -> ApiError:
    return ApiError("ValidationError", f"1 validation error detected: Value '{value}' at '{where}' failed to satisfy constraint: {constraint}")


def validate_tag_keys(keys: Sequence[str], where: str = "tagKeys") -> None:
    if len(keys) > MAX_TAGS:
        raise _invalid(f"[{', '.join(keys)}]", where, f"Member must have length less than or equal to {MAX_TAGS}")
    for key in keys:
        if not 1 <= len(key) <= 128:
            raise _invalid(key, where, "Member must have length less than or equal to 128" if key else "Member must have length greater than or equal to 1")
        if not _tag_chars_ok(key):
            raise _invalid(key, where, f"Member must satisfy regular expression pattern: {TAG_KEY_PATTERN}")


def tags_in(args: dict[str, Any]) -> Tags:
    """The request's ``Tags``, validated as IAM validates them (before any authorisation)."""
    tags = tuple((t["Key"], t.get("Value", "")) for t in args.get("Tags") or [])
    if len(tags) > MAX_TAGS:
        raise _invalid(f"[{', '.join(k for k, _ in tags)}]", "tags", f"Member must have length less than or equal to {MAX_TAGS}")
    seen: set[str] = set()
    for i, (key, value) in enumerate(tags, 1):
        validate_tag_keys([key], f"tags.{i}.member.key")
        if len(value) > 256:
            raise _invalid(value[:256] + "...", f"tags.{i}.member.value", "Member must have length less than or equal to 256")
        if not _tag_chars_ok(value):
            raise _invalid(value, f"tags.{i}.member.value", f"Member must satisfy regular expression pattern: {TAG_VALUE_PATTERN}")
        if key.lower().startswith("aws:"):
            raise ApiError("InvalidInput", f"Tag keys starting with 'aws:' are reserved for internal use ({key}).", 400)
        if key.lower() in seen:
            raise ApiError("InvalidInput", "Duplicate tag keys found. Please note that Tag keys are case insensitive.", 400)
        seen.add(key.lower())
    return tags


def merge_tags(current: Tags, new: Tags) -> Tags:
    """``current`` with ``new`` written over it; keys compare case-insensitively."""
    replaced = {k.lower() for k, _ in new}
    return tuple((k, v) for k, v in current if k.lower() not in replaced) + tuple(new)


def drop_tags(current: Tags, keys: Sequence[str]) -> Tags:
    doomed = {k.lower() for k in keys}
    return tuple((k, v) for k, v in current if k.lower() not in doomed)


def tags_out(tags: Tags) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags]


# --- authorise, then resolve ---------------------------------------------------------------------

_LOOKUP = {"user": "get_user", "group": "get_group", "role": "get_role"}


def authorized(ctx: CallContext, kind: str, name: str, action: str, extra: dict[str, Any] | None = None) -> User | Group | Role:
    """The user, group or role ``name`` once ``action`` is authorised on its canonical ARN.

    The ARN is the entity's own (its path) or, when no entity has that name, the one it would
    have with the default path; ``NoSuchEntity`` is raised only after the authorisation passed.
    Users and roles also give their tags as ``aws:ResourceTag/<key>`` and ``iam:ResourceTag/<key>``.
    """
    entity = getattr(ctx.catalog, _LOOKUP[kind])(name)
    keys: dict[str, Any] = {}
    if entity is not None and kind in ("user", "role"):
        keys.update(resource_tag_keys(entity.tags, "iam:ResourceTag"))
    keys.update(extra or {})
    ctx.authorize(action, arn(ctx, kind, entity.path if entity is not None else "/", name), keys)
    if entity is None:
        raise no_such(kind, name)
    return entity


def policy_not_found(policy_arn: str) -> ApiError:
    return ApiError("NoSuchEntity", f"Policy {policy_arn} does not exist or is not attachable.", 404)


def resolve_policy(ctx: CallContext, policy_arn: str) -> tuple[ManagedPolicy | None, str]:
    """(the managed policy ``policy_arn`` names here or None, the ARN to authorise on).

    Only this account's policies exist here: an ARN of another account or an AWS managed policy
    (``arn:aws:iam::aws:policy/…``, which dbkeep does not offer) names nothing; it is authorised
    as spelled, since it is no resource of ours to canonicalise. A malformed ARN is
    ``InvalidInput``, as on AWS, before any authorisation.
    """
    match = _POLICY_ARN.fullmatch(policy_arn)
    if not match:
        raise ApiError("InvalidInput", f"ARN {policy_arn} is not valid.", 400)
    account, path, name = match.groups()
    if account != ctx.account_id:
        return None, policy_arn
    policy = ctx.catalog.get_managed_policy(arn(ctx, "policy", path, name))
    return policy, (policy.arn if policy is not None else policy_arn)


def authorized_policy(ctx: CallContext, policy_arn: str, action: str) -> ManagedPolicy:
    policy, target = resolve_policy(ctx, policy_arn)
    ctx.authorize(action, target)
    if policy is None:
        raise policy_not_found(policy_arn)
    return policy
