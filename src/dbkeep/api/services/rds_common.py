"""Helpers shared by the RDS handlers: the cluster manager, ARNs, errors, tags, paging, filters."""

from __future__ import annotations

from typing import Any

from dbkeep.api.context import CallContext
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


def tags_in(args: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    tags = tuple((t["Key"], t.get("Value", "")) for t in args.get("Tags", []) if "Key" in t)
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
