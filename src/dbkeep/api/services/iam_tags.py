"""IAM tag actions for users and roles: ``TagUser``, ``UntagUser``, ``ListUserTags``, ``TagRole``,
``UntagRole``, ``ListRoleTags``.

Authorised on the entity's ARN like every IAM call (``iam_common.authorized``): ``Tag*`` with
``aws:RequestTag/<key>`` and ``aws:TagKeys``, ``Untag*`` with ``aws:TagKeys``, all with the
entity's current tags as ``aws:ResourceTag/<key>``. A role's tags are its sessions'
``aws:PrincipalTag/<key>`` from their next request on.
"""

from __future__ import annotations

from typing import Any

from dbkeep.api.context import CallContext, request_tag_keys, tag_keys_only
from dbkeep.api.services.iam_common import MAX_TAGS, authorized, drop_tags, merge_tags, tags_in, tags_out, validate_tag_keys
from dbkeep.errors import ApiError

_KINDS = {"User": ("user", "UserName"), "Role": ("role", "RoleName")}


def _store(ctx: CallContext, kind: str, name: str, tags: tuple[tuple[str, str], ...]) -> None:
    (ctx.catalog.set_user_tags if kind == "user" else ctx.catalog.set_role_tags)(name, tags)


def _tag(title: str):
    kind, param = _KINDS[title]

    def handler(ctx: CallContext, args: dict[str, Any]) -> None:
        new = tags_in(args)
        entity = authorized(ctx, kind, args[param], f"iam:Tag{title}", request_tag_keys(new))
        tags = merge_tags(entity.tags, new)
        if len(tags) > MAX_TAGS:
            raise ApiError("LimitExceeded", f"Cannot exceed quota for TagsPer{title}: {MAX_TAGS}", 409)
        _store(ctx, kind, entity.name, tags)

    return handler


def _untag(title: str):
    kind, param = _KINDS[title]

    def handler(ctx: CallContext, args: dict[str, Any]) -> None:
        keys = list(args["TagKeys"])
        validate_tag_keys(keys)
        entity = authorized(ctx, kind, args[param], f"iam:Untag{title}", tag_keys_only(keys))
        _store(ctx, kind, entity.name, drop_tags(entity.tags, keys))

    return handler


def _list(title: str):
    kind, param = _KINDS[title]

    def handler(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
        entity = authorized(ctx, kind, args[param], f"iam:List{title}Tags")
        start = 0
        if "Marker" in args:
            if not args["Marker"].isdigit():
                raise ApiError("ValidationError", "Invalid Marker.")
            start = int(args["Marker"])
        size = args.get("MaxItems", 100)
        page = entity.tags[start : start + size]
        out: dict[str, Any] = {"Tags": tags_out(page), "IsTruncated": start + size < len(entity.tags)}
        if out["IsTruncated"]:
            out["Marker"] = str(start + size)
        return out

    return handler


HANDLERS = {}
for _title in _KINDS:
    HANDLERS[f"Tag{_title}"] = _tag(_title)
    HANDLERS[f"Untag{_title}"] = _untag(_title)
    HANDLERS[f"List{_title}Tags"] = _list(_title)
