"""Helpers shared by the RDS handlers: the cluster manager, ARNs, errors, tags, paging, filters,
and the authorise-then-resolve step every handler that names a resource goes through.

**Canonical resource.** A cluster, instance or cluster parameter group is named by its
identifier (any case: RDS identifiers are stored lower-case) or, where RDS takes one, by its ARN.
:func:`authorized` resolves either to the resource here and authorises the action on that
resource's own ARN (this region, this account, the stored identifier), whatever the caller
spelled. An ARN of another account, another region or another resource type names nothing
here: it is authorised as spelled and then answered with the resource's "not found" fault.

**No existence oracle.** The lookup is silent; "not found" is raised only after the
authorisation passed, so a denied caller gets AccessDenied whether or not the name exists.
"""

from __future__ import annotations

from typing import Any

from dbkeep.api.context import CallContext, request_tag_keys, resource_tag_keys
from dbkeep.catalog.models import Cluster, Instance, ParameterGroup
from dbkeep.catalog.rds import RdsStore
from dbkeep.errors import ApiError
from dbkeep.rds import names
from dbkeep.rds.clusters import ClusterManager


def mgr(ctx: CallContext) -> ClusterManager:
    return ctx.services.clusters


def store(ctx: CallContext) -> RdsStore:
    return mgr(ctx).store


def hostname(ctx: CallContext) -> str:
    return ctx.services.config.hostname


def cluster_not_found(ident: str) -> ApiError:
    return ApiError("DBClusterNotFoundFault", f"DBCluster {ident} not found.", 404)


def instance_not_found(ident: str) -> ApiError:
    return ApiError("DBInstanceNotFound", f"DBInstance {ident} not found.", 404)


def group_not_found(name: str) -> ApiError:
    return ApiError("DBClusterParameterGroupNotFound", f"DBClusterParameterGroup not found: {name}", 404)


def carn(ctx: CallContext, ident: str) -> str:
    return names.cluster_arn(ctx.region, ctx.account_id, ident)


def iarn(ctx: CallContext, ident: str) -> str:
    return names.instance_arn(ctx.region, ctx.account_id, ident)


def pgarn(ctx: CallContext, name: str) -> str:
    return names.parameter_group_arn(ctx.region, ctx.account_id, name)


# resource type in an ARN -> (ARN builder, lookup, "not found" fault, service tag-key prefix)
_KINDS = {
    "cluster": (carn, "get_cluster", cluster_not_found, "rds:cluster-tag"),
    "db": (iarn, "get_instance", instance_not_found, "rds:db-tag"),
    "cluster-pg": (pgarn, "get_parameter_group", group_not_found, "rds:cluster-pg-tag"),
}


def parse_arn(value: str) -> tuple[str, str, str, str] | None:
    """(region, account, resource type, identifier) of an RDS ARN, or None if it is not one."""
    parts = value.split(":")
    if len(parts) != 7 or parts[:3] != ["arn", "aws", "rds"]:
        return None
    return parts[3], parts[4], parts[5], parts[6]


def ref(ctx: CallContext, kind: str, value: str) -> tuple[str | None, str]:
    """(the identifier ``value`` names here or None, the ARN to authorise on)."""
    make_arn = _KINDS[kind][0]
    if not value.startswith("arn:"):
        return value.lower(), make_arn(ctx, value.lower())
    parsed = parse_arn(value)
    if parsed is None:
        return None, value
    region, account, rtype, ident = parsed
    if (region, account, rtype) != (ctx.region, ctx.account_id, kind) or not ident:
        return None, value  # another account's, region's or type's: nothing here
    return ident.lower(), make_arn(ctx, ident.lower())


def authorized(ctx: CallContext, kind: str, value: str, action: str, extra: dict[str, Any] | None = None) -> Cluster | Instance | ParameterGroup:
    """The resource ``value`` (identifier or ARN) names, once ``action`` is authorised on its
    canonical ARN (with its tags as ``aws:ResourceTag/<key>`` and the ``rds:<type>-tag/<key>``
    keys); its "not found" fault only after that."""
    _, lookup, not_found, tag_prefix = _KINDS[kind]
    ident, target = ref(ctx, kind, value)
    found = getattr(store(ctx), lookup)(ident) if ident else None
    keys = resource_tag_keys(found.tags, tag_prefix) if found is not None else {}
    keys.update(extra or {})
    ctx.authorize(action, target, keys)
    if found is None:
        raise not_found(value)
    return found


def authorize_create(ctx: CallContext, action: str, target: str, tags: tuple[tuple[str, str], ...],
                     extra: dict[str, Any] | None = None) -> None:
    """A create action and, when tags come with it, ``rds:AddTagsToResource`` on the new
    resource too, both seeing ``aws:RequestTag/<key>`` and ``aws:TagKeys``."""
    keys = request_tag_keys(tags)
    ctx.authorize(action, target, {**keys, **(extra or {})})
    if tags:
        ctx.authorize("rds:AddTagsToResource", target, keys)


def tags_in(args: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    tags = tuple((t["Key"], t.get("Value", "")) for t in args.get("Tags", []) if "Key" in t)
    if len(tags) > 50:
        raise ApiError("TagQuotaPerResourceExceeded", "A resource can have at most 50 tags.", 400)
    for key, _ in tags:
        if key.lower().startswith(("aws:", "rds:")):
            raise ApiError("InvalidParameterValue", f"Tag keys cannot start with aws: or rds: ({key})", 400)
    return tags


def tags_out(tags: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags]


def page(items: list[Any], args: dict[str, Any]) -> tuple[list[Any], str | None]:
    size = args.get("MaxRecords", 100)
    if not 20 <= size <= 100:
        raise ApiError("InvalidParameterValue", "Invalid value for MaxRecords. Must be between 20 and 100", 400)
    start = 0
    if "Marker" in args:
        if not args["Marker"].isdigit():
            raise ApiError("InvalidParameterValue", "Invalid Marker", 400)
        start = int(args["Marker"])
    chunk = items[start : start + size]
    return chunk, (str(start + size) if start + size < len(items) else None)


def filters(args: dict[str, Any], allowed: dict[str, str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in args.get("Filters", []):
        name = f.get("Name")
        if name not in allowed:
            raise ApiError("InvalidParameterValue", f"Unrecognized filter name: {name}.", 400)
        out[allowed[name]] = set(f.get("Values", []))
    return out
