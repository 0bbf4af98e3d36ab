"""RDS cluster parameter groups: create, describe, modify, reset, delete.

Which parameters a family offers, their metadata and validation live in ``rds/parameters.py``;
modifying a group pushes dynamic engine settings to the running clusters that use it, while
static ones leave those clusters' members ``pending-reboot``.
"""

from __future__ import annotations

from typing import Any

from dbkeep.api.context import CallContext
from dbkeep.api.services import rds_common as common
from dbkeep.catalog.models import ParameterGroup
from dbkeep.catalog.store import Conflict
from dbkeep.errors import ApiError
from dbkeep.rds import names, parameters

MAX_PARAMETERS_PER_CALL = 20


def _group(ctx: CallContext, name: str, action: str) -> ParameterGroup:
    """The group ``name`` names, once ``action`` is authorised on its canonical ARN."""
    return common.authorized(ctx, "cluster-pg", name, action)  # type: ignore[return-value]


def group_out(ctx: CallContext, g: ParameterGroup) -> dict[str, Any]:
    return {"DBClusterParameterGroupName": g.name, "DBParameterGroupFamily": g.family, "Description": g.description,
            "DBClusterParameterGroupArn": common.pgarn(ctx, g.name)}


def parameter_out(d: parameters.ParameterDef, value: str | None, source: str, method: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"ParameterName": d.name, "Description": d.description, "Source": source, "ApplyType": d.apply_type,
                           "DataType": d.data_type, "IsModifiable": d.modifiable, "ApplyMethod": method or "pending-reboot",
                           "SupportedEngineModes": ["provisioned"]}
    if value is not None:
        out["ParameterValue"] = value
    if d.allowed_values:
        out["AllowedValues"] = d.allowed_values
    return out


def create_db_cluster_parameter_group(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    name = names.parameter_group_name(args["DBClusterParameterGroupName"])
    tags = common.tags_in(args)
    common.authorize_create(ctx, "rds:CreateDBClusterParameterGroup", common.pgarn(ctx, name), tags)
    family = args["DBParameterGroupFamily"]
    if family not in names.FAMILIES:
        raise ApiError("InvalidParameterValue", f"ParameterGroupFamily {family} is not supported; use one of {', '.join(sorted(names.FAMILIES))}.", 400)
    if name.startswith("default."):
        raise ApiError("InvalidParameterValue", "Parameter group names starting with 'default.' are reserved.", 400)
    if common.store(ctx).get_parameter_group(name):
        raise ApiError("DBParameterGroupAlreadyExists", f"Parameter group {name} already exists", 400)
    group = ParameterGroup(name, family, args["Description"], False, tags)
    try:
        common.store(ctx).add_parameter_group(group)
    except Conflict:
        raise ApiError("DBParameterGroupAlreadyExists", f"Parameter group {name} already exists", 400) from None
    return {"DBClusterParameterGroup": group_out(ctx, group)}


def describe_db_cluster_parameter_groups(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    if "DBClusterParameterGroupName" in args:
        group = _group(ctx, args["DBClusterParameterGroupName"], "rds:DescribeDBClusterParameterGroups")
        groups = [group]
    else:
        ctx.authorize("rds:DescribeDBClusterParameterGroups", common.pgarn(ctx, "*"))
        groups = common.store(ctx).list_parameter_groups()
    page, marker = common.page(groups, args)
    out: dict[str, Any] = {"DBClusterParameterGroups": [group_out(ctx, g) for g in page]}
    if marker:
        out["Marker"] = marker
    return out


def _parameter_list(engine: str, user_values: dict[str, str], source_filter: str | None) -> list[dict[str, Any]]:
    out = []
    for name, d in parameters.definitions(engine).items():
        if name in user_values:
            item = parameter_out(d, user_values[name], "user", "immediate" if d.apply_type == "dynamic" else "pending-reboot")
        else:
            item = parameter_out(d, d.default, "engine-default")
        if source_filter is None or item["Source"] == source_filter:
            out.append(item)
    return out


def describe_db_cluster_parameters(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    group = _group(ctx, args["DBClusterParameterGroupName"], "rds:DescribeDBClusterParameters")
    source = args.get("Source")
    if source is not None and source not in ("user", "engine-default", "system"):
        raise ApiError("InvalidParameterValue", f"Invalid value for Source: {source}. Valid values: user, engine-default, system", 400)
    items = _parameter_list(names.FAMILIES[group.family], common.store(ctx).parameter_values(group.name), source)
    page, marker = common.page(items, args)
    out: dict[str, Any] = {"Parameters": page}
    if marker:
        out["Marker"] = marker
    return out


def describe_engine_default_cluster_parameters(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    family = args["DBParameterGroupFamily"]
    ctx.authorize("rds:DescribeEngineDefaultClusterParameters", common.pgarn(ctx, "default." + family))
    if family not in names.FAMILIES:
        raise ApiError("InvalidParameterValue", f"ParameterGroupFamily {family} is not supported.", 400)
    items = _parameter_list(names.FAMILIES[family], {}, None)
    return {"EngineDefaults": {"DBParameterGroupFamily": family, "Parameters": items}}


async def modify_db_cluster_parameter_group(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    group = _group(ctx, args["DBClusterParameterGroupName"], "rds:ModifyDBClusterParameterGroup")
    if group.is_default:
        raise ApiError("InvalidParameterValue", f"The parameter group {group.name} is a default parameter group and cannot be modified.", 400)
    params = args.get("Parameters") or []
    if not params:
        raise ApiError("InvalidParameterValue", "At least one parameter must be specified.", 400)
    if len(params) > MAX_PARAMETERS_PER_CALL:
        raise ApiError("InvalidParameterValue", f"At most {MAX_PARAMETERS_PER_CALL} parameters can be modified in one request.", 400)
    engine = names.FAMILIES[group.family]
    defs = parameters.definitions(engine)
    changes: dict[str, tuple[str, str]] = {}
    for p in params:
        name = p.get("ParameterName")
        if not name:
            raise ApiError("InvalidParameterValue", "ParameterName must be provided.", 400)
        if name not in defs:
            raise ApiError("InvalidParameterValue", f"Could not find parameter with name: {name}", 400)
        d = defs[name]
        if not d.modifiable:
            raise ApiError("InvalidParameterValue", f"The parameter {name} cannot be modified.", 400)
        if "ParameterValue" not in p:
            raise ApiError("InvalidParameterValue", f"A value must be given for parameter {name}.", 400)
        method = p.get("ApplyMethod", "pending-reboot" if d.apply_type == "static" else "immediate")
        if method == "immediate" and d.apply_type == "static":
            raise ApiError("InvalidParameterCombination", f"cannot use immediate apply method for static parameter {name}", 400)
        try:
            value = d.validator(p["ParameterValue"])
        except ValueError as exc:
            raise ApiError("InvalidParameterValue", f"Value: {p['ParameterValue']} is not a valid value for parameter {name}: {exc}", 400) from None
        changes[name] = (value, method)
    common.store(ctx).set_parameter_values(group.name, changes)
    for name, (value, method) in changes.items():  # RDS-EVENT-0037
        common.mgr(ctx).event("db-parameter-group", group.name, f"Updated parameter {name} to {value} with apply method {method}",
                              "configuration change")
    immediate = {n: v for n, (v, m) in changes.items() if m == "immediate" and defs[n].apply_type == "dynamic"}
    for cluster in common.store(ctx).clusters_using_group(group.name):
        await common.mgr(ctx).apply_dynamic(cluster, immediate)
    return {"DBClusterParameterGroupName": group.name}


async def reset_db_cluster_parameter_group(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    group = _group(ctx, args["DBClusterParameterGroupName"], "rds:ResetDBClusterParameterGroup")
    if group.is_default:
        raise ApiError("InvalidParameterValue", f"The parameter group {group.name} is a default parameter group and cannot be modified.", 400)
    engine = names.FAMILIES[group.family]
    defs = parameters.definitions(engine)
    if args.get("ResetAllParameters"):
        if args.get("Parameters"):
            raise ApiError("InvalidParameterCombination", "Specify either ResetAllParameters or Parameters, not both.", 400)
        names_to_reset = None
        reset = list(common.store(ctx).parameter_values(group.name))
    else:
        reset = [p.get("ParameterName") for p in args.get("Parameters") or []]
        if not reset:
            raise ApiError("InvalidParameterCombination", "Specify ResetAllParameters or at least one parameter.", 400)
        for name in reset:
            if name not in defs:
                raise ApiError("InvalidParameterValue", f"Could not find parameter with name: {name}", 400)
        names_to_reset = reset
    common.store(ctx).reset_parameter_values(group.name, names_to_reset)
    for name in reset:
        common.mgr(ctx).event("db-parameter-group", group.name, f"Reset parameter {name} to its default", "configuration change")
    dynamic_defaults = {n: defs[n].default for n in reset if n in defs and defs[n].apply_type == "dynamic"}
    for cluster in common.store(ctx).clusters_using_group(group.name):
        await common.mgr(ctx).apply_dynamic(cluster, dynamic_defaults)
    return {"DBClusterParameterGroupName": group.name}


def delete_db_cluster_parameter_group(ctx: CallContext, args: dict[str, Any]) -> None:
    group = _group(ctx, args["DBClusterParameterGroupName"], "rds:DeleteDBClusterParameterGroup")
    if group.is_default:
        raise ApiError("InvalidDBParameterGroupState", f"Default parameter group {group.name} cannot be deleted.", 400)
    if common.store(ctx).clusters_using_group(group.name):
        raise ApiError("InvalidDBParameterGroupState", f"One or more database clusters are still members of this parameter group {group.name}, so the group cannot be deleted", 400)
    common.store(ctx).delete_parameter_group(group.name)


HANDLERS = {
    "CreateDBClusterParameterGroup": create_db_cluster_parameter_group,
    "DescribeDBClusterParameterGroups": describe_db_cluster_parameter_groups,
    "DescribeDBClusterParameters": describe_db_cluster_parameters,
    "DescribeEngineDefaultClusterParameters": describe_engine_default_cluster_parameters,
    "ModifyDBClusterParameterGroup": modify_db_cluster_parameter_group,
    "ResetDBClusterParameterGroup": reset_db_cluster_parameter_group,
    "DeleteDBClusterParameterGroup": delete_db_cluster_parameter_group,
}
