"""RDS: clusters, instances, cluster parameter groups and tags (a subset of the RDS API).

Thin handlers: parse and validate what the model does not (names, passwords, engine families,
state transitions), authorise against the real ARNs (``cluster:ID``, ``db:ID``,
``cluster-pg:NAME``), call the :class:`ClusterManager`, and shape ``DBCluster``/``DBInstance``
as RDS does so that boto3's waiters and the CLI work unmodified.
"""

from __future__ import annotations

from typing import Any

from dbkeep.api.context import CallContext
from dbkeep.catalog.models import Cluster, Instance, ParameterGroup
from dbkeep.catalog.rds import RdsStore
from dbkeep.catalog.store import Conflict
from dbkeep.errors import ApiError
from dbkeep.rds import names, parameters
from dbkeep.rds.clusters import ClusterManager, cluster_state_error, hash_password

HOSTED_ZONE = "Z2R2ITUGPM61AM"
AZ = "us-east-1a"
MAX_PARAMETERS_PER_CALL = 20


def _mgr(ctx: CallContext) -> ClusterManager:
    return ctx.services.clusters


def _store(ctx: CallContext) -> RdsStore:
    return _mgr(ctx).store


def _hostname(ctx: CallContext) -> str:
    return ctx.services.config.hostname


def cluster_not_found(ident: str) -> ApiError:
    return ApiError("DBClusterNotFoundFault", f"DBCluster {ident} not found.", 404)


def instance_not_found(ident: str) -> ApiError:
    return ApiError("DBInstanceNotFound", f"DBInstance {ident} not found.", 404)


def group_not_found(name: str) -> ApiError:
    return ApiError("DBClusterParameterGroupNotFound", f"DBClusterParameterGroup not found: {name}", 404)


def _carn(ctx: CallContext, ident: str) -> str:
    return names.cluster_arn(ctx.region, ctx.account_id, ident)


def _iarn(ctx: CallContext, ident: str) -> str:
    return names.instance_arn(ctx.region, ctx.account_id, ident)


def _pgarn(ctx: CallContext, name: str) -> str:
    return names.parameter_group_arn(ctx.region, ctx.account_id, name)


def _tags_in(args: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    tags = tuple((t["Key"], t.get("Value", "")) for t in args.get("Tags", []) if "Key" in t)
    for key, _ in tags:
        if key.lower().startswith(("aws:", "rds:")):
            raise ApiError("InvalidParameterValue", f"Tag keys cannot start with aws: or rds: ({key})", 400)
    return tags


def _tags_out(tags: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags]


def _page(items: list[Any], args: dict[str, Any]) -> tuple[list[Any], str | None]:
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


def _filters(args: dict[str, Any], allowed: dict[str, str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in args.get("Filters", []):
        name = f.get("Name")
        if name not in allowed:
            raise ApiError("InvalidParameterValue", f"Unrecognized filter name: {name}.", 400)
        out[allowed[name]] = set(f.get("Values", []))
    return out


# --- shapes ------------------------------------------------------------------------------------


def instance_status(ctx: CallContext, cluster: Cluster | None, inst: Instance) -> str:
    if cluster is None or inst.status != "available" or cluster.status != "available":
        return inst.status
    state, _ = _mgr(ctx).engine_state(cluster)
    if state in ("restarting", "starting"):
        return "rebooting"
    if state == "failed":
        return "failed"
    return inst.status


def cluster_out(ctx: CallContext, c: Cluster) -> dict[str, Any]:
    mgr = _mgr(ctx)
    pending = mgr.pending_reboot(c)
    members = [
        {"DBInstanceIdentifier": i.identifier, "IsClusterWriter": i.is_writer,
         "DBClusterParameterGroupStatus": "pending-reboot" if pending else "in-sync", "PromotionTier": 1}
        for i in mgr.store.list_instances(c.identifier)
    ]
    out: dict[str, Any] = {
        "AllocatedStorage": 1,
        "AvailabilityZones": [AZ],
        "BackupRetentionPeriod": 1,
        "DBClusterIdentifier": c.identifier,
        "DBClusterParameterGroup": c.parameter_group,
        "Status": c.status,
        "Endpoint": _hostname(ctx),
        "ReaderEndpoint": _hostname(ctx),
        "MultiAZ": False,
        "Engine": c.engine,
        "EngineVersion": c.engine_version,
        "Port": c.port,
        "MasterUsername": c.master_username,
        "PreferredBackupWindow": "07:00-07:30",
        "PreferredMaintenanceWindow": "sun:05:00-sun:05:30",
        "ReadReplicaIdentifiers": [],
        "DBClusterMembers": members,
        "VpcSecurityGroups": [{"VpcSecurityGroupId": g, "Status": "active"} for g in c.security_group_ids],
        "HostedZoneId": HOSTED_ZONE,
        "StorageEncrypted": False,
        "DbClusterResourceId": c.resource_id,
        "DBClusterArn": _carn(ctx, c.identifier),
        "AssociatedRoles": [],
        "IAMDatabaseAuthenticationEnabled": c.iam_auth,
        "ClusterCreateTime": c.created,
        "EngineMode": "provisioned",
        "DeletionProtection": c.deletion_protection,
        "HttpEndpointEnabled": False,
        "CopyTagsToSnapshot": False,
        "CrossAccountClone": False,
        "TagList": _tags_out(c.tags),
        "AutoMinorVersionUpgrade": True,
        "NetworkType": "IPV4",
        "StorageType": "aurora",
    }
    if c.database_name:
        out["DatabaseName"] = c.database_name
    if c.status_message:
        out["StatusInfos"] = [{"StatusType": "read replication", "Normal": False, "Status": c.status, "Message": c.status_message}]
    return out


def instance_out(ctx: CallContext, i: Instance, cluster: Cluster | None = None) -> dict[str, Any]:
    cluster = cluster or _store(ctx).get_cluster(i.cluster_identifier)
    pending = cluster is not None and _mgr(ctx).pending_reboot(cluster)
    out: dict[str, Any] = {
        "DBInstanceIdentifier": i.identifier,
        "DBInstanceClass": i.instance_class,
        "DBInstanceStatus": instance_status(ctx, cluster, i),
        "AllocatedStorage": 1,
        "InstanceCreateTime": i.created,
        "PreferredBackupWindow": "07:00-07:30",
        "BackupRetentionPeriod": 1,
        "DBSecurityGroups": [],
        "DBParameterGroups": [{"DBParameterGroupName": "default." + (cluster.engine if cluster else "aurora"), "ParameterApplyStatus": "in-sync"}],
        "AvailabilityZone": AZ,
        "PreferredMaintenanceWindow": "sun:05:00-sun:05:30",
        "PendingModifiedValues": {},
        "MultiAZ": False,
        "AutoMinorVersionUpgrade": True,
        "ReadReplicaDBInstanceIdentifiers": [],
        "LicenseModel": "general-public-license" if cluster and cluster.engine == "aurora-mysql" else "postgresql-license",
        "OptionGroupMemberships": [],
        "PubliclyAccessible": False,
        "StorageType": "aurora",
        "DbInstancePort": 0,
        "DBClusterIdentifier": i.cluster_identifier,
        "StorageEncrypted": False,
        "DbiResourceId": i.resource_id,
        "CACertificateIdentifier": "dbkeep-ca",
        "CopyTagsToSnapshot": False,
        "MonitoringInterval": 0,
        "PromotionTier": 1,
        "DBInstanceArn": _iarn(ctx, i.identifier),
        "PerformanceInsightsEnabled": False,
        "DeletionProtection": False,
        "TagList": _tags_out(i.tags),
        "NetworkType": "IPV4",
    }
    if cluster is not None:
        out.update(
            Engine=cluster.engine,
            EngineVersion=cluster.engine_version,
            MasterUsername=cluster.master_username,
            IAMDatabaseAuthenticationEnabled=cluster.iam_auth,
            VpcSecurityGroups=[{"VpcSecurityGroupId": g, "Status": "active"} for g in cluster.security_group_ids],
        )
        out["DBParameterGroups"][0]["ParameterApplyStatus"] = "pending-reboot" if pending else "in-sync"
        if cluster.database_name:
            out["DBName"] = cluster.database_name
        if out["DBInstanceStatus"] not in ("creating",):
            out["Endpoint"] = {"Address": _hostname(ctx), "Port": cluster.port, "HostedZoneId": HOSTED_ZONE}
    return out


# --- clusters ----------------------------------------------------------------------------------


def _require_cluster(ctx: CallContext, ident: str) -> Cluster:
    cluster = _store(ctx).get_cluster(ident.lower())
    if cluster is None:
        raise cluster_not_found(ident)
    return cluster


def _security_groups(ctx: CallContext, ids: list[str] | None) -> tuple[str, ...]:
    store = _store(ctx)
    if not ids:
        default = store.security_group_by_name("default")
        return (default.group_id,) if default else ()
    for gid in ids:
        if store.get_security_group(gid) is None:
            raise ApiError("InvalidParameterValue", f"Invalid security group , groupId= {gid}, groupName=.", 400)
    return tuple(dict.fromkeys(ids))


def _parameter_group_for(ctx: CallContext, name: str | None, engine: str) -> str:
    if name is None:
        return "default." + names.DEFAULT_FAMILY[engine]
    group = _store(ctx).get_parameter_group(name.lower())
    if group is None:
        raise group_not_found(name)
    if names.FAMILIES[group.family] != engine:
        raise ApiError("InvalidParameterCombination", f"The parameter group {name} with DBParameterGroupFamily {group.family} can't be used for this instance. Use a parameter group with DBParameterGroupFamily {names.DEFAULT_FAMILY[engine]}.", 400)
    return group.name


def create_db_cluster(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    ident = names.identifier(args["DBClusterIdentifier"])
    ctx.authorize("rds:CreateDBCluster", _carn(ctx, ident), {"rds:DatabaseEngine": args["Engine"]})
    engine = args["Engine"]
    if engine not in names.ENGINES:
        raise ApiError("InvalidParameterValue", f"Invalid DB engine: {engine}. dbkeep offers aurora-mysql and aurora-postgresql.", 400)
    for absent in ("MasterUsername", "MasterUserPassword"):
        if absent not in args:
            raise ApiError("InvalidParameterValue", f"The parameter {absent} must be provided and must not be blank.", 400)
    if args.get("ManageMasterUserPassword"):
        raise ApiError("InvalidParameterCombination", "ManageMasterUserPassword (Secrets Manager) is not offered by dbkeep; give MasterUserPassword.", 400)
    username = names.master_username(engine, args["MasterUsername"])
    password = names.master_password(engine, args["MasterUserPassword"])
    database = names.database_name(engine, args["DatabaseName"]) if args.get("DatabaseName") else None
    store = _store(ctx)
    if store.get_cluster(ident):
        raise ApiError("DBClusterAlreadyExistsFault", "DB Cluster already exists", 400)
    group = _parameter_group_for(ctx, args.get("DBClusterParameterGroupName"), engine)
    port = _mgr(ctx).allocate_port(names.port(args["Port"]) if "Port" in args else None)
    cluster = Cluster(
        identifier=ident,
        resource_id=names.new_resource_id("cluster-"),
        engine=engine,
        engine_version=args.get("EngineVersion") or names.DEFAULT_VERSION[engine],
        status="creating",
        port=port,
        master_username=username,
        master_password_hash=hash_password(password),
        database_name=database,
        parameter_group=group,
        security_group_ids=_security_groups(ctx, args.get("VpcSecurityGroupIds")),
        iam_auth=bool(args.get("EnableIAMDatabaseAuthentication", False)),
        deletion_protection=bool(args.get("DeletionProtection", False)),
        applied_parameters={},
        status_message=None,
        created=ctx.now,
        tags=_tags_in(args),
    )
    try:
        _mgr(ctx).create(cluster, password)
    except Conflict:
        raise ApiError("DBClusterAlreadyExistsFault", "DB Cluster already exists", 400) from None
    ctx.audit.event("rds.cluster_created", verdict="allow", principal=ctx.principal.arn, cluster=ident, engine=engine, request_id=ctx.request_id)
    return {"DBCluster": cluster_out(ctx, cluster)}


def describe_db_clusters(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    store = _store(ctx)
    if "DBClusterIdentifier" in args:
        ident = args["DBClusterIdentifier"]
        if ident.startswith("arn:"):
            ident = ident.rsplit(":", 1)[-1]
        ctx.authorize("rds:DescribeDBClusters", _carn(ctx, ident.lower()))
        clusters = [_require_cluster(ctx, ident)]
    else:
        ctx.authorize("rds:DescribeDBClusters", _carn(ctx, "*"))
        clusters = store.list_clusters()
    wanted = _filters(args, {"db-cluster-id": "id", "engine": "engine", "db-cluster-resource-id": "rid"})
    if "id" in wanted:
        clusters = [c for c in clusters if c.identifier in wanted["id"] or _carn(ctx, c.identifier) in wanted["id"]]
    if "engine" in wanted:
        clusters = [c for c in clusters if c.engine in wanted["engine"]]
    if "rid" in wanted:
        clusters = [c for c in clusters if c.resource_id in wanted["rid"]]
    page, marker = _page(clusters, args)
    out: dict[str, Any] = {"DBClusters": [cluster_out(ctx, c) for c in page]}
    if marker:
        out["Marker"] = marker
    return out


def modify_db_cluster(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    cluster = _require_cluster(ctx, args["DBClusterIdentifier"])
    ctx.authorize("rds:ModifyDBCluster", _carn(ctx, cluster.identifier))
    mgr, store = _mgr(ctx), _store(ctx)
    if "NewDBClusterIdentifier" in args and args["NewDBClusterIdentifier"].lower() != cluster.identifier:
        raise ApiError("InvalidParameterCombination", "Renaming a DB cluster is not supported by dbkeep.", 400)
    if "Port" in args and args["Port"] != cluster.port:
        raise ApiError("InvalidParameterCombination", "Changing the port of a DB cluster is not supported by dbkeep yet.", 400)
    password = None
    if "MasterUserPassword" in args:
        password = names.master_password(cluster.engine, args["MasterUserPassword"])
    if cluster.status not in ("available",) and (password is not None or "DBClusterParameterGroupName" in args):
        raise cluster_state_error(cluster.identifier, cluster.status)
    changes: dict[str, Any] = {}
    if "DBClusterParameterGroupName" in args:
        changes["parameter_group"] = _parameter_group_for(ctx, args["DBClusterParameterGroupName"], cluster.engine)
    if "VpcSecurityGroupIds" in args:
        changes["security_group_ids"] = _security_groups(ctx, args["VpcSecurityGroupIds"])
    if "EnableIAMDatabaseAuthentication" in args:
        changes["iam_auth"] = bool(args["EnableIAMDatabaseAuthentication"])
    if "DeletionProtection" in args:
        changes["deletion_protection"] = bool(args["DeletionProtection"])
    if changes:
        store.update_cluster(cluster.identifier, **changes)
        cluster = _require_cluster(ctx, cluster.identifier)
    if password is not None:
        cluster = mgr.reset_master(cluster, password, ctx.principal.arn, ctx.request_id)
    return {"DBCluster": cluster_out(ctx, cluster)}


def delete_db_cluster(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    cluster = _require_cluster(ctx, args["DBClusterIdentifier"])
    ctx.authorize("rds:DeleteDBCluster", _carn(ctx, cluster.identifier))
    if cluster.deletion_protection:
        raise ApiError("InvalidParameterCombination", "Cannot delete protected Cluster, please disable deletion protection and try again.", 400)
    if not args.get("SkipFinalSnapshot", False):
        raise ApiError("InvalidParameterCombination", "FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is true; dbkeep takes no snapshots, so set SkipFinalSnapshot.", 400)
    if _store(ctx).list_instances(cluster.identifier):
        raise ApiError("InvalidDBClusterStateFault", "Cluster cannot be deleted, it still contains DB instances in non-deleting state.", 400)
    if cluster.status in ("deleting", "creating"):
        raise cluster_state_error(cluster.identifier, cluster.status)
    _mgr(ctx).delete(cluster)
    ctx.audit.event("rds.cluster_deleted", verdict="allow", principal=ctx.principal.arn, cluster=cluster.identifier, request_id=ctx.request_id)
    return {"DBCluster": cluster_out(ctx, _require_cluster(ctx, cluster.identifier))}


def stop_db_cluster(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    cluster = _require_cluster(ctx, args["DBClusterIdentifier"])
    ctx.authorize("rds:StopDBCluster", _carn(ctx, cluster.identifier))
    if cluster.status != "available":
        raise cluster_state_error(cluster.identifier, cluster.status)
    _mgr(ctx).stop(cluster)
    return {"DBCluster": cluster_out(ctx, _require_cluster(ctx, cluster.identifier))}


def start_db_cluster(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    cluster = _require_cluster(ctx, args["DBClusterIdentifier"])
    ctx.authorize("rds:StartDBCluster", _carn(ctx, cluster.identifier))
    if cluster.status != "stopped":
        raise ApiError("InvalidDBClusterStateFault", f"DbCluster {cluster.identifier} is in {cluster.status} state but expected it to be stopped.", 400)
    _mgr(ctx).start(cluster)
    return {"DBCluster": cluster_out(ctx, _require_cluster(ctx, cluster.identifier))}


# --- instances ---------------------------------------------------------------------------------


def _require_instance(ctx: CallContext, ident: str) -> Instance:
    inst = _store(ctx).get_instance(ident.lower())
    if inst is None:
        raise instance_not_found(ident)
    return inst


def create_db_instance(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    ident = names.identifier(args["DBInstanceIdentifier"], "DBInstanceIdentifier")
    ctx.authorize("rds:CreateDBInstance", _iarn(ctx, ident))
    if "DBClusterIdentifier" not in args:
        raise ApiError("InvalidParameterCombination", "dbkeep runs Aurora-style clusters: DBClusterIdentifier is required.", 400)
    cluster = _require_cluster(ctx, args["DBClusterIdentifier"])
    if args["Engine"] != cluster.engine:
        raise ApiError("InvalidParameterCombination", f"The engine name requested for your DB instance ({args['Engine']}) doesn't match the engine name of your DB cluster ({cluster.engine}).", 400)
    if cluster.status not in ("available", "creating"):
        raise cluster_state_error(cluster.identifier, cluster.status)
    store = _store(ctx)
    if store.get_instance(ident):
        raise ApiError("DBInstanceAlreadyExists", "DB instance already exists", 400)
    writer = not any(i.is_writer for i in store.list_instances(cluster.identifier))
    inst = Instance(ident, names.new_resource_id("db-"), cluster.identifier, args["DBInstanceClass"], "creating", writer, ctx.now, _tags_in(args))
    try:
        _mgr(ctx).add_instance(inst)
    except Conflict:
        raise ApiError("DBInstanceAlreadyExists", "DB instance already exists", 400) from None
    return {"DBInstance": instance_out(ctx, inst, cluster)}


def describe_db_instances(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    store = _store(ctx)
    if "DBInstanceIdentifier" in args:
        ident = args["DBInstanceIdentifier"]
        if ident.startswith("arn:"):
            ident = ident.rsplit(":", 1)[-1]
        ctx.authorize("rds:DescribeDBInstances", _iarn(ctx, ident.lower()))
        instances = [_require_instance(ctx, ident)]
    else:
        ctx.authorize("rds:DescribeDBInstances", _iarn(ctx, "*"))
        instances = store.list_instances()
    wanted = _filters(args, {"db-cluster-id": "cluster", "db-instance-id": "id", "engine": "engine", "dbi-resource-id": "rid"})
    if "cluster" in wanted:
        instances = [i for i in instances if i.cluster_identifier in wanted["cluster"] or _carn(ctx, i.cluster_identifier) in wanted["cluster"]]
    if "id" in wanted:
        instances = [i for i in instances if i.identifier in wanted["id"] or _iarn(ctx, i.identifier) in wanted["id"]]
    if "rid" in wanted:
        instances = [i for i in instances if i.resource_id in wanted["rid"]]
    if "engine" in wanted:
        instances = [i for i in instances if (c := store.get_cluster(i.cluster_identifier)) and c.engine in wanted["engine"]]
    page, marker = _page(instances, args)
    out: dict[str, Any] = {"DBInstances": [instance_out(ctx, i) for i in page]}
    if marker:
        out["Marker"] = marker
    return out


def delete_db_instance(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    inst = _require_instance(ctx, args["DBInstanceIdentifier"])
    ctx.authorize("rds:DeleteDBInstance", _iarn(ctx, inst.identifier))
    if inst.status in ("deleting", "creating", "rebooting"):
        raise ApiError("InvalidDBInstanceState", f"Instance {inst.identifier} is in {inst.status} state.", 400)
    _mgr(ctx).delete_instance(inst)
    return {"DBInstance": instance_out(ctx, _require_instance(ctx, inst.identifier))}


def reboot_db_instance(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    inst = _require_instance(ctx, args["DBInstanceIdentifier"])
    ctx.authorize("rds:RebootDBInstance", _iarn(ctx, inst.identifier))
    cluster = _store(ctx).get_cluster(inst.cluster_identifier)
    if inst.status not in ("available", "incompatible-parameters") or cluster is None or cluster.status not in ("available", "incompatible-parameters"):
        raise ApiError("InvalidDBInstanceState", "Instance cannot currently reboot due to an in-progress management operation.", 400)
    _mgr(ctx).reboot(inst)
    return {"DBInstance": instance_out(ctx, _require_instance(ctx, inst.identifier))}


# --- parameter groups --------------------------------------------------------------------------


def _require_group(ctx: CallContext, name: str) -> ParameterGroup:
    group = _store(ctx).get_parameter_group(name.lower())
    if group is None:
        raise group_not_found(name)
    return group


def group_out(ctx: CallContext, g: ParameterGroup) -> dict[str, Any]:
    return {"DBClusterParameterGroupName": g.name, "DBParameterGroupFamily": g.family, "Description": g.description,
            "DBClusterParameterGroupArn": _pgarn(ctx, g.name)}


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
    ctx.authorize("rds:CreateDBClusterParameterGroup", _pgarn(ctx, name))
    family = args["DBParameterGroupFamily"]
    if family not in names.FAMILIES:
        raise ApiError("InvalidParameterValue", f"ParameterGroupFamily {family} is not supported; use one of {', '.join(sorted(names.FAMILIES))}.", 400)
    if name.startswith("default."):
        raise ApiError("InvalidParameterValue", "Parameter group names starting with 'default.' are reserved.", 400)
    if _store(ctx).get_parameter_group(name):
        raise ApiError("DBParameterGroupAlreadyExists", f"Parameter group {name} already exists", 400)
    group = ParameterGroup(name, family, args["Description"], False, _tags_in(args))
    try:
        _store(ctx).add_parameter_group(group)
    except Conflict:
        raise ApiError("DBParameterGroupAlreadyExists", f"Parameter group {name} already exists", 400) from None
    return {"DBClusterParameterGroup": group_out(ctx, group)}


def describe_db_cluster_parameter_groups(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    if "DBClusterParameterGroupName" in args:
        group = _require_group(ctx, args["DBClusterParameterGroupName"])
        ctx.authorize("rds:DescribeDBClusterParameterGroups", _pgarn(ctx, group.name))
        groups = [group]
    else:
        ctx.authorize("rds:DescribeDBClusterParameterGroups", _pgarn(ctx, "*"))
        groups = _store(ctx).list_parameter_groups()
    page, marker = _page(groups, args)
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
    group = _require_group(ctx, args["DBClusterParameterGroupName"])
    ctx.authorize("rds:DescribeDBClusterParameters", _pgarn(ctx, group.name))
    source = args.get("Source")
    if source is not None and source not in ("user", "engine-default", "system"):
        raise ApiError("InvalidParameterValue", f"Invalid value for Source: {source}. Valid values: user, engine-default, system", 400)
    items = _parameter_list(names.FAMILIES[group.family], _store(ctx).parameter_values(group.name), source)
    page, marker = _page(items, args)
    out: dict[str, Any] = {"Parameters": page}
    if marker:
        out["Marker"] = marker
    return out


def describe_engine_default_cluster_parameters(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    family = args["DBParameterGroupFamily"]
    ctx.authorize("rds:DescribeEngineDefaultClusterParameters", _pgarn(ctx, "default." + family))
    if family not in names.FAMILIES:
        raise ApiError("InvalidParameterValue", f"ParameterGroupFamily {family} is not supported.", 400)
    items = _parameter_list(names.FAMILIES[family], {}, None)
    return {"EngineDefaults": {"DBParameterGroupFamily": family, "Parameters": items}}


async def modify_db_cluster_parameter_group(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    group = _require_group(ctx, args["DBClusterParameterGroupName"])
    ctx.authorize("rds:ModifyDBClusterParameterGroup", _pgarn(ctx, group.name))
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
    _store(ctx).set_parameter_values(group.name, changes)
    immediate = {n: v for n, (v, m) in changes.items() if m == "immediate" and defs[n].apply_type == "dynamic"}
    for cluster in _store(ctx).clusters_using_group(group.name):
        await _mgr(ctx).apply_dynamic(cluster, immediate)
    return {"DBClusterParameterGroupName": group.name}


async def reset_db_cluster_parameter_group(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    group = _require_group(ctx, args["DBClusterParameterGroupName"])
    ctx.authorize("rds:ResetDBClusterParameterGroup", _pgarn(ctx, group.name))
    if group.is_default:
        raise ApiError("InvalidParameterValue", f"The parameter group {group.name} is a default parameter group and cannot be modified.", 400)
    engine = names.FAMILIES[group.family]
    defs = parameters.definitions(engine)
    if args.get("ResetAllParameters"):
        if args.get("Parameters"):
            raise ApiError("InvalidParameterCombination", "Specify either ResetAllParameters or Parameters, not both.", 400)
        names_to_reset = None
        reset = list(_store(ctx).parameter_values(group.name))
    else:
        reset = [p.get("ParameterName") for p in args.get("Parameters") or []]
        if not reset:
            raise ApiError("InvalidParameterCombination", "Specify ResetAllParameters or at least one parameter.", 400)
        for name in reset:
            if name not in defs:
                raise ApiError("InvalidParameterValue", f"Could not find parameter with name: {name}", 400)
        names_to_reset = reset
    _store(ctx).reset_parameter_values(group.name, names_to_reset)
    dynamic_defaults = {n: defs[n].default for n in reset if n in defs and defs[n].apply_type == "dynamic"}
    for cluster in _store(ctx).clusters_using_group(group.name):
        await _mgr(ctx).apply_dynamic(cluster, dynamic_defaults)
    return {"DBClusterParameterGroupName": group.name}


def delete_db_cluster_parameter_group(ctx: CallContext, args: dict[str, Any]) -> None:
    group = _require_group(ctx, args["DBClusterParameterGroupName"])
    ctx.authorize("rds:DeleteDBClusterParameterGroup", _pgarn(ctx, group.name))
    if group.is_default:
        raise ApiError("InvalidDBParameterGroupState", f"Default parameter group {group.name} cannot be deleted.", 400)
    if _store(ctx).clusters_using_group(group.name):
        raise ApiError("InvalidDBParameterGroupState", f"One or more database clusters are still members of this parameter group {group.name}, so the group cannot be deleted", 400)
    _store(ctx).delete_parameter_group(group.name)


# --- tags --------------------------------------------------------------------------------------


def _tag_target(ctx: CallContext, arn: str) -> tuple[str, str]:
    parts = arn.split(":")
    if len(parts) != 7 or parts[:3] != ["arn", "aws", "rds"]:
        raise ApiError("InvalidParameterValue", f"Invalid resource name: {arn}", 400)
    kind, ident = parts[5], parts[6]
    store = _store(ctx)
    if kind == "cluster" and store.get_cluster(ident):
        return kind, ident
    if kind == "db" and store.get_instance(ident):
        return kind, ident
    if kind == "cluster-pg" and store.get_parameter_group(ident):
        return kind, ident
    if kind == "cluster":
        raise cluster_not_found(ident)
    if kind == "db":
        raise instance_not_found(ident)
    if kind == "cluster-pg":
        raise group_not_found(ident)
    raise ApiError("InvalidParameterValue", f"Unsupported resource type in {arn}", 400)


def _get_tags(ctx: CallContext, kind: str, ident: str) -> tuple[tuple[str, str], ...]:
    store = _store(ctx)
    obj = {"cluster": store.get_cluster, "db": store.get_instance, "cluster-pg": store.get_parameter_group}[kind](ident)
    return obj.tags if obj else ()


def _set_tags(ctx: CallContext, kind: str, ident: str, tags: tuple[tuple[str, str], ...]) -> None:
    store = _store(ctx)
    if kind == "cluster":
        store.update_cluster(ident, tags=tags)
    elif kind == "db":
        store.update_instance(ident, tags=tags)
    else:
        store.set_parameter_group_tags(ident, tags)


def add_tags_to_resource(ctx: CallContext, args: dict[str, Any]) -> None:
    kind, ident = _tag_target(ctx, args["ResourceName"])
    ctx.authorize("rds:AddTagsToResource", args["ResourceName"])
    tags = dict(_get_tags(ctx, kind, ident))
    tags.update(dict(_tags_in(args)))
    if len(tags) > 50:
        raise ApiError("TagQuotaPerResourceExceeded", "A resource can have at most 50 tags.", 400)
    _set_tags(ctx, kind, ident, tuple(tags.items()))


def list_tags_for_resource(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    kind, ident = _tag_target(ctx, args["ResourceName"])
    ctx.authorize("rds:ListTagsForResource", args["ResourceName"])
    return {"TagList": _tags_out(_get_tags(ctx, kind, ident))}


def remove_tags_from_resource(ctx: CallContext, args: dict[str, Any]) -> None:
    kind, ident = _tag_target(ctx, args["ResourceName"])
    ctx.authorize("rds:RemoveTagsFromResource", args["ResourceName"])
    drop = set(args["TagKeys"])
    _set_tags(ctx, kind, ident, tuple((k, v) for k, v in _get_tags(ctx, kind, ident) if k not in drop))


HANDLERS = {
    "CreateDBCluster": create_db_cluster,
    "DescribeDBClusters": describe_db_clusters,
    "ModifyDBCluster": modify_db_cluster,
    "DeleteDBCluster": delete_db_cluster,
    "StopDBCluster": stop_db_cluster,
    "StartDBCluster": start_db_cluster,
    "CreateDBInstance": create_db_instance,
    "DescribeDBInstances": describe_db_instances,
    "DeleteDBInstance": delete_db_instance,
    "RebootDBInstance": reboot_db_instance,
    "CreateDBClusterParameterGroup": create_db_cluster_parameter_group,
    "DescribeDBClusterParameterGroups": describe_db_cluster_parameter_groups,
    "DescribeDBClusterParameters": describe_db_cluster_parameters,
    "DescribeEngineDefaultClusterParameters": describe_engine_default_cluster_parameters,
    "ModifyDBClusterParameterGroup": modify_db_cluster_parameter_group,
    "ResetDBClusterParameterGroup": reset_db_cluster_parameter_group,
    "DeleteDBClusterParameterGroup": delete_db_cluster_parameter_group,
    "AddTagsToResource": add_tags_to_resource,
    "ListTagsForResource": list_tags_for_resource,
    "RemoveTagsFromResource": remove_tags_from_resource,
}

