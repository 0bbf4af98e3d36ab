"""RDS ``DescribeEvents``: what happened to clusters, instances and parameter groups.

As on RDS: without ``StartTime`` the last ``Duration`` minutes (default 60) are returned, at most
14 days back; ``SourceIdentifier`` needs ``SourceType``; ``EventCategories`` keeps the events of
any category named; oldest first, paged by ``MaxRecords``/``Marker``. The action has no resource
type in IAM (it is authorised on ``*``), as ``rds:DescribeEvents`` is on AWS.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dbkeep.api.context import CallContext
from dbkeep.api.services import rds_common as common
from dbkeep.catalog.events import CATEGORIES, RETENTION, SOURCE_TYPES
from dbkeep.errors import ApiError
from dbkeep.rds import names

# every SourceType RDS knows (botocore's enum); dbkeep records events for SOURCE_TYPES only
_RDS_SOURCE_TYPES = ("db-instance", "db-parameter-group", "db-security-group", "db-snapshot", "db-cluster",
                     "db-cluster-snapshot", "custom-engine-version", "db-proxy", "blue-green-deployment", "db-shard-group",
                     "zero-etl", "db-cluster-group", "integration-s3tables", "db-cluster-group-snapshot", "data-group")


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _source_arn(ctx: CallContext, source_type: str, ident: str) -> str:
    if source_type == "db-cluster":
        return common.carn(ctx, ident)
    if source_type == "db-instance":
        return common.iarn(ctx, ident)
    return names.parameter_group_arn(ctx.region, ctx.account_id, ident)


def describe_events(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    ctx.authorize("rds:DescribeEvents", "*")
    source_type = args.get("SourceType")
    if source_type is not None and source_type not in _RDS_SOURCE_TYPES:
        raise ApiError("InvalidParameterValue", f"Invalid source type: {source_type}", 400)
    ident = args.get("SourceIdentifier")
    if ident is not None and source_type is None:
        raise ApiError("InvalidParameterCombination", "SourceType must be specified if SourceIdentifier is specified.", 400)
    categories = list(args.get("EventCategories") or [])
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise ApiError("InvalidParameterValue", f"Invalid event category: {unknown[0]}", 400)
    if args.get("Filters"):
        raise ApiError("InvalidParameterValue", "Filters are not supported by DescribeEvents.", 400)
    now = ctx.now
    end = _utc(args["EndTime"]) if "EndTime" in args else now
    if "StartTime" in args:
        start = _utc(args["StartTime"])
    else:
        duration = args.get("Duration", 60)
        if not 0 <= duration <= RETENTION.total_seconds() // 60:
            raise ApiError("InvalidParameterValue", "Duration must be between 0 and 20160 minutes.", 400)
        start = end - dt.timedelta(minutes=duration)
    if start > end:
        raise ApiError("InvalidParameterCombination", "StartTime must be before EndTime.", 400)
    start = max(start, now - RETENTION)
    if source_type is not None and source_type not in SOURCE_TYPES:
        found = []  # no such events are recorded here (snapshots, proxies …)
    else:
        if ident is not None and source_type in ("db-cluster", "db-instance"):
            ident = ident.lower()  # RDS identifiers are stored lower-case
        found = common.mgr(ctx).events.list(start=start, end=end, source_type=source_type, source_identifier=ident,
                                            categories=categories)
    page, marker = common.page(found, args)
    out: dict[str, Any] = {"Events": [
        {"SourceIdentifier": e.source_identifier, "SourceType": e.source_type, "Message": e.message,
         "EventCategories": list(e.categories), "Date": e.time, "SourceArn": _source_arn(ctx, e.source_type, e.source_identifier)}
        for e in page]}
    if marker:
        out["Marker"] = marker
    return out


HANDLERS = {"DescribeEvents": describe_events}
