"""RDS: clusters, instances and tags (a subset of the RDS API); parameter groups are in
``rds_parameters.py``.

Thin handlers: parse and validate what the model does not (names, passwords, engine families,
state transitions), authorise against the real ARNs (``cluster:ID``, ``db:ID``,
``cluster-pg:NAME``) before saying whether they exist (``rds_common.authorized``), call the
:class:`ClusterManager`, and shape ``DBCluster``/``DBInstance`` as RDS does so that boto3's
waiters and the CLI work unmodified. Tags on create need ``rds:AddTagsToResource`` too.
"""

from __future__ import annotations

from typing import Any

from dbkeep.api.context import CallContext, request_tag_keys, tag_keys_only
from dbkeep.api.services import rds_common as common
from dbkeep.api.services import rds_events, rds_parameters
from dbkeep.catalog.models import Cluster, Instance
from dbkeep.catalog.store import Conflict
from dbkeep.errors import ApiError
from dbkeep.rds import capacity, names
from dbkeep.rds.clusters import cluster_state_error

HOSTED_ZONE = "Z2R2ITUGPM61AM"


# --- shapes ------------------------------------------------------------------------------------


def _endpoint(ctx: CallContext, c: Cluster) -> tuple[str, str]:
    """(host name, availability zone) of the host that runs the cluster (rds/fleet.py)."""
    return common.mgr(ctx).endpoint(c, common.hostname(ctx), ctx.services.config.zone)


def instance_status(ctx: CallContext, cluster: Cluster | None, inst: Instance) -> str:
    reported = common.mgr(ctx).reported_status(cluster)[0] if cluster is not None else None
    if cluster is not None and reported != cluster.status:
        return reported  # its host is gone (rds/fleet.py)
    if cluster is None or inst.status != "available" or cluster.status != "available":
        return inst.status
    state, _ = common.mgr(ctx).engine_state(cluster)
    if state in ("restarting", "starting"):
        return "rebooting"
    if state == "failed":
        return "failed"
    return inst.status


def cluster_out(ctx: CallContext, c: Cluster) -> dict[str, Any]:
    mgr = common.mgr(ctx)
    pending = mgr.pending_reboot(c)
    members = [
        {"DBInstanceIdentifier": i.identifier, "IsClusterWriter": i.is_writer,
         "DBClusterParameterGroupStatus": "pending-reboot" if pending else "in-sync", "PromotionTier": 1}
        for i in mgr.store.list_instances(c.identifier)
    ]
    host, zone = _endpoint(ctx, c)
    status, message = mgr.reported_status(c)
    out: dict[str, Any] = {
        "AllocatedStorage": 1,
        "AvailabilityZones": [zone],
        "BackupRetentionPeriod": 1,
        "DBClusterIdentifier": c.identifier,
        "DBClusterParameterGroup": c.parameter_group,
        "Status": status,
        "Endpoint": host,
        "ReaderEndpoint": host,
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
        "DBClusterArn": common.carn(ctx, c.identifier),
        "AssociatedRoles": [],
        "IAMDatabaseAuthenticationEnabled": c.iam_auth,
        "ClusterCreateTime": c.created,
        "EngineMode": "provisioned",
        "DeletionProtection": c.deletion_protection,
        "HttpEndpointEnabled": False,
        "CopyTagsToSnapshot": False,
        "CrossAccountClone": False,
        "TagList": common.tags_out(c.tags),
        "AutoMinorVersionUpgrade": True,
        "NetworkType": "IPV4",
        "StorageType": "aurora",
    }
    if c.database_name:
        out["DatabaseName"] = c.database_name
    if message:
        out["StatusInfos"] = [{"StatusType": "read replication", "Normal": False, "Status": status, "Message": message}]
    return out


def instance_out(ctx: CallContext, i: Instance, cluster: Cluster | None = None) -> dict[str, Any]:
    cluster = cluster or common.store(ctx).get_cluster(i.cluster_identifier)
    pending = cluster is not None and common.mgr(ctx).pending_reboot(cluster)
    host, zone = _endpoint(ctx, cluster) if cluster is not None else (common.hostname(ctx), ctx.services.config.zone)
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
        "AvailabilityZone": zone,
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
        "DBInstanceArn": common.iarn(ctx, i.identifier),
        "PerformanceInsightsEnabled": False,
        "DeletionProtection": False,
        "TagList": common.tags_out(i.tags),
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
            out["Endpoint"] = {"Address": host, "Port": cluster.port, "HostedZoneId": HOSTED_ZONE}
    return out


# --- clusters ----------------------------------------------------------------------------------


def _require_cluster(ctx: CallContext, ident: str) -> Cluster:
    """Re-read a cluster the call has already been authorised on."""
    cluster = common.store(ctx).get_cluster(ident.lower())
    if cluster is None:
        raise common.cluster_not_found(ident)
    return cluster


def _cluster(ctx: CallContext, value: str, action: str) -> Cluster:
    return common.authorized(ctx, "cluster", value, action)  # type: ignore[return-value]


def _security_groups(ctx: CallContext, ids: list[str] | None) -> tuple[str, ...]:
    store = common.store(ctx)
    if not ids:
        default = store.security_group_by_name("default")
        return (default.group_id,) if default else ()
    for gid in ids:
        if store.get_security_group(gid) is None:
            raise ApiError("InvalidParameterValue", f"Invalid security group , groupId= {gid}, groupName=.", 400)
    return tuple(dict.fromkeys(ids))


def _parameter_group_for(ctx: CallContext, name: str | None, engine: str, action: str) -> str:
    if name is None:
        return "default." + names.DEFAULT_FAMILY[engine]
    # The group is a resource of the call too (as on RDS): authorised before it is looked up.
    group = common.authorized(ctx, "cluster-pg", name, action)
    if names.FAMILIES[group.family] != engine:
        raise ApiError("InvalidParameterCombination", f"The parameter group {name} with DBParameterGroupFamily {group.family} can't be used for this instance. Use a parameter group with DBParameterGroupFamily {names.DEFAULT_FAMILY[engine]}.", 400)
    return group.name


def create_db_cluster(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    ident = names.identifier(args["DBClusterIdentifier"])
    tags = common.tags_in(args)
    common.authorize_create(ctx, "rds:CreateDBCluster", common.carn(ctx, ident), tags, {"rds:DatabaseEngine": args["Engine"]})
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
    store = common.store(ctx)
    if store.get_cluster(ident):
        raise ApiError("DBClusterAlreadyExistsFault", "DB Cluster already exists", 400)
    group = _parameter_group_for(ctx, args.get("DBClusterParameterGroupName"), engine, "rds:CreateDBCluster")
    owner = common.mgr(ctx).place(args.get("AvailabilityZones"), ctx.services.config.zone)
    port = common.mgr(ctx).allocate_port(names.port(args["Port"]) if "Port" in args else None)
    cluster = Cluster(
        identifier=ident,
        resource_id=names.new_resource_id("cluster-"),
        engine=engine,
        engine_version=args.get("EngineVersion") or names.DEFAULT_VERSION[engine],
        status="creating",
        port=port,
        master_username=username,
        database_name=database,
        parameter_group=group,
        security_group_ids=_security_groups(ctx, args.get("VpcSecurityGroupIds")),
        iam_auth=bool(args.get("EnableIAMDatabaseAuthentication", False)),
        deletion_protection=bool(args.get("DeletionProtection", False)),
        applied_parameters={},
        status_message=None,
        created=ctx.now,
        tags=tags,
        owner=owner,
    )
    try:
        common.mgr(ctx).create(cluster, password)
    except Conflict:
        raise ApiError("DBClusterAlreadyExistsFault", "DB Cluster already exists", 400) from None
    ctx.audit.event("rds.cluster_created", verdict="allow", principal=ctx.principal.arn, cluster=ident, engine=engine, request_id=ctx.request_id)
    return {"DBCluster": cluster_out(ctx, cluster)}


def describe_db_clusters(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    store = common.store(ctx)
    if "DBClusterIdentifier" in args:
        clusters = [_cluster(ctx, args["DBClusterIdentifier"], "rds:DescribeDBClusters")]
    else:
        ctx.authorize("rds:DescribeDBClusters", common.carn(ctx, "*"))
        clusters = store.list_clusters()
    wanted = common.filters(args, {"db-cluster-id": "id", "engine": "engine", "db-cluster-resource-id": "rid"})
    if "id" in wanted:
        clusters = [c for c in clusters if c.identifier in wanted["id"] or common.carn(ctx, c.identifier) in wanted["id"]]
    if "engine" in wanted:
        clusters = [c for c in clusters if c.engine in wanted["engine"]]
    if "rid" in wanted:
        clusters = [c for c in clusters if c.resource_id in wanted["rid"]]
    page, marker = common.page(clusters, args)
    out: dict[str, Any] = {"DBClusters": [cluster_out(ctx, c) for c in page]}
    if marker:
        out["Marker"] = marker
    return out


async def modify_db_cluster(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    cluster = _cluster(ctx, args["DBClusterIdentifier"], "rds:ModifyDBCluster")
    mgr, store = common.mgr(ctx), common.store(ctx)
    mgr.require_reachable(cluster)
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
        changes["parameter_group"] = _parameter_group_for(ctx, args["DBClusterParameterGroupName"], cluster.engine, "rds:ModifyDBCluster")
    if "VpcSecurityGroupIds" in args:
        changes["security_group_ids"] = _security_groups(ctx, args["VpcSecurityGroupIds"])
    if "EnableIAMDatabaseAuthentication" in args:
        changes["iam_auth"] = bool(args["EnableIAMDatabaseAuthentication"])
    if "DeletionProtection" in args:
        changes["deletion_protection"] = bool(args["DeletionProtection"])
    if changes:
        store.update_cluster(cluster.identifier, **changes)
        if "iam_auth" in changes and changes["iam_auth"] != cluster.iam_auth:
            await mgr.apply_iam_auth(cluster.identifier)
        cluster = _require_cluster(ctx, cluster.identifier)
    if password is not None:
        cluster = mgr.reset_master(cluster, password, ctx.principal.arn, ctx.request_id)
    return {"DBCluster": cluster_out(ctx, cluster)}


def delete_db_cluster(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    cluster = _cluster(ctx, args["DBClusterIdentifier"], "rds:DeleteDBCluster")
    common.mgr(ctx).require_reachable(cluster)
    if cluster.deletion_protection:
        raise ApiError("InvalidParameterCombination", "Cannot delete protected Cluster, please disable deletion protection and try again.", 400)
    if not args.get("SkipFinalSnapshot", False):
        raise ApiError("InvalidParameterCombination", "FinalDBSnapshotIdentifier is required unless SkipFinalSnapshot is true; dbkeep takes no snapshots, so set SkipFinalSnapshot.", 400)
    if common.store(ctx).list_instances(cluster.identifier):
        raise ApiError("InvalidDBClusterStateFault", "Cluster cannot be deleted, it still contains DB instances in non-deleting state.", 400)
    if cluster.status in ("deleting", "creating"):
        raise cluster_state_error(cluster.identifier, cluster.status)
    common.mgr(ctx).delete(cluster)
    ctx.audit.event("rds.cluster_deleted", verdict="allow", principal=ctx.principal.arn, cluster=cluster.identifier, request_id=ctx.request_id)
    return {"DBCluster": cluster_out(ctx, _require_cluster(ctx, cluster.identifier))}


def stop_db_cluster(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    cluster = _cluster(ctx, args["DBClusterIdentifier"], "rds:StopDBCluster")
    common.mgr(ctx).require_reachable(cluster)
    if cluster.status != "available":
        raise cluster_state_error(cluster.identifier, cluster.status)
    common.mgr(ctx).stop(cluster)
    return {"DBCluster": cluster_out(ctx, _require_cluster(ctx, cluster.identifier))}


def start_db_cluster(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    cluster = _cluster(ctx, args["DBClusterIdentifier"], "rds:StartDBCluster")
    common.mgr(ctx).require_reachable(cluster)
    if cluster.status != "stopped":
        raise ApiError("InvalidDBClusterStateFault", f"DbCluster {cluster.identifier} is in {cluster.status} state but expected it to be stopped.", 400)
    common.mgr(ctx).start(cluster)
    return {"DBCluster": cluster_out(ctx, _require_cluster(ctx, cluster.identifier))}


# --- instances ---------------------------------------------------------------------------------


def _require_instance(ctx: CallContext, ident: str) -> Instance:
    """Re-read an instance the call has already been authorised on."""
    inst = common.store(ctx).get_instance(ident.lower())
    if inst is None:
        raise common.instance_not_found(ident)
    return inst


def _require_reachable_instance(ctx: CallContext, inst: Instance) -> None:
    cluster = common.store(ctx).get_cluster(inst.cluster_identifier)
    if cluster is not None:
        common.mgr(ctx).require_reachable(cluster)


def _instance(ctx: CallContext, value: str, action: str) -> Instance:
    return common.authorized(ctx, "db", value, action)  # type: ignore[return-value]


def _instance_class(value: str, cluster: Cluster, verb: str) -> str:
    """A class dbkeep knows (its memory gives max_connections: rds/capacity.py), in RDS's words otherwise."""
    try:
        capacity.memory_gib(value)
    except ValueError:
        license_model = "general-public-license" if cluster.engine == "aurora-mysql" else "postgresql-license"
        raise ApiError("InvalidParameterCombination", f"RDS does not support {verb} a DB instance with the following combination: "
                       f"DBInstanceClass={value}, Engine={cluster.engine}, EngineVersion={cluster.engine_version}, "
                       f"LicenseModel={license_model}. For supported combinations of instance class and database engine "
                       "version, see the documentation.", 400) from None
    return value


def create_db_instance(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    ident = names.identifier(args["DBInstanceIdentifier"], "DBInstanceIdentifier")
    tags = common.tags_in(args)
    common.authorize_create(ctx, "rds:CreateDBInstance", common.iarn(ctx, ident), tags)
    if "DBClusterIdentifier" not in args:
        raise ApiError("InvalidParameterCombination", "dbkeep runs Aurora-style clusters: DBClusterIdentifier is required.", 400)
    # the cluster the instance joins is a resource of the call too (as on RDS)
    cluster = _cluster(ctx, args["DBClusterIdentifier"], "rds:CreateDBInstance")
    common.mgr(ctx).require_reachable(cluster)
    if args["Engine"] != cluster.engine:
        raise ApiError("InvalidParameterCombination", f"The engine name requested for your DB instance ({args['Engine']}) doesn't match the engine name of your DB cluster ({cluster.engine}).", 400)
    if cluster.status not in ("available", "creating"):
        raise cluster_state_error(cluster.identifier, cluster.status)
    store = common.store(ctx)
    if store.get_instance(ident):
        raise ApiError("DBInstanceAlreadyExists", "DB instance already exists", 400)
    writer = not any(i.is_writer for i in store.list_instances(cluster.identifier))
    instance_class = _instance_class(args["DBInstanceClass"], cluster, "creating")
    inst = Instance(ident, names.new_resource_id("db-"), cluster.identifier, instance_class, "creating", writer, ctx.now, tags)
    try:
        common.mgr(ctx).add_instance(inst)
    except Conflict:
        raise ApiError("DBInstanceAlreadyExists", "DB instance already exists", 400) from None
    return {"DBInstance": instance_out(ctx, inst, cluster)}


def describe_db_instances(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    store = common.store(ctx)
    if "DBInstanceIdentifier" in args:
        instances = [_instance(ctx, args["DBInstanceIdentifier"], "rds:DescribeDBInstances")]
    else:
        ctx.authorize("rds:DescribeDBInstances", common.iarn(ctx, "*"))
        instances = store.list_instances()
    wanted = common.filters(args, {"db-cluster-id": "cluster", "db-instance-id": "id", "engine": "engine", "dbi-resource-id": "rid"})
    if "cluster" in wanted:
        instances = [i for i in instances if i.cluster_identifier in wanted["cluster"] or common.carn(ctx, i.cluster_identifier) in wanted["cluster"]]
    if "id" in wanted:
        instances = [i for i in instances if i.identifier in wanted["id"] or common.iarn(ctx, i.identifier) in wanted["id"]]
    if "rid" in wanted:
        instances = [i for i in instances if i.resource_id in wanted["rid"]]
    if "engine" in wanted:
        instances = [i for i in instances if (c := store.get_cluster(i.cluster_identifier)) and c.engine in wanted["engine"]]
    page, marker = common.page(instances, args)
    out: dict[str, Any] = {"DBInstances": [instance_out(ctx, i) for i in page]}
    if marker:
        out["Marker"] = marker
    return out


def delete_db_instance(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    inst = _instance(ctx, args["DBInstanceIdentifier"], "rds:DeleteDBInstance")
    _require_reachable_instance(ctx, inst)
    if inst.status in ("deleting", "creating", "rebooting"):
        raise ApiError("InvalidDBInstanceState", f"Instance {inst.identifier} is in {inst.status} state.", 400)
    common.mgr(ctx).delete_instance(inst)
    return {"DBInstance": instance_out(ctx, _require_instance(ctx, inst.identifier))}


def modify_db_instance(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    """ModifyDBInstance: the instance class (other settings of an Aurora instance live on the
    cluster). The engine's max_connections follows the new class: at once on MySQL, at the next
    reboot on PostgreSQL (static, ``pending-reboot``); ApplyImmediately makes no difference."""
    inst = _instance(ctx, args["DBInstanceIdentifier"], "rds:ModifyDBInstance")
    cluster = common.store(ctx).get_cluster(inst.cluster_identifier)
    _require_reachable_instance(ctx, inst)
    if cluster is None or inst.status != "available" or cluster.status != "available":
        raise ApiError("InvalidDBInstanceState", f"Instance {inst.identifier} is in {inst.status} state.", 400)
    if args.get("DBInstanceClass") and args["DBInstanceClass"] != inst.instance_class:
        common.mgr(ctx).modify_instance(inst, _instance_class(args["DBInstanceClass"], cluster, "modifying"))
    return {"DBInstance": instance_out(ctx, _require_instance(ctx, inst.identifier))}


def reboot_db_instance(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    inst = _instance(ctx, args["DBInstanceIdentifier"], "rds:RebootDBInstance")
    cluster = common.store(ctx).get_cluster(inst.cluster_identifier)
    _require_reachable_instance(ctx, inst)
    if inst.status not in ("available", "incompatible-parameters") or cluster is None or cluster.status not in ("available", "incompatible-parameters"):
        raise ApiError("InvalidDBInstanceState", "Instance cannot currently reboot due to an in-progress management operation.", 400)
    common.mgr(ctx).reboot(inst)
    return {"DBInstance": instance_out(ctx, _require_instance(ctx, inst.identifier))}


# --- tags --------------------------------------------------------------------------------------


def _tag_target(ctx: CallContext, resource_name: str, action: str, extra: dict[str, Any]) -> tuple[str, str]:
    """The (type, identifier) a tag call's ``ResourceName`` names here, authorised on its
    canonical ARN; an ARN of another account or region is that type's "not found"."""
    parsed = common.parse_arn(resource_name)
    if parsed is None:
        raise ApiError("InvalidParameterValue", f"Invalid resource name: {resource_name}", 400)
    kind = parsed[2]
    if kind not in ("cluster", "db", "cluster-pg"):
        raise ApiError("InvalidParameterValue", f"Unsupported resource type in {resource_name}", 400)
    found = common.authorized(ctx, kind, resource_name, action, extra)
    return kind, getattr(found, "name", None) or found.identifier  # type: ignore[union-attr]


def _get_tags(ctx: CallContext, kind: str, ident: str) -> tuple[tuple[str, str], ...]:
    store = common.store(ctx)
    obj = {"cluster": store.get_cluster, "db": store.get_instance, "cluster-pg": store.get_parameter_group}[kind](ident)
    return obj.tags if obj else ()


def _set_tags(ctx: CallContext, kind: str, ident: str, tags: tuple[tuple[str, str], ...]) -> None:
    store = common.store(ctx)
    if kind == "cluster":
        store.update_cluster(ident, tags=tags)
    elif kind == "db":
        store.update_instance(ident, tags=tags)
    else:
        store.set_parameter_group_tags(ident, tags)


def add_tags_to_resource(ctx: CallContext, args: dict[str, Any]) -> None:
    new = common.tags_in(args)
    kind, ident = _tag_target(ctx, args["ResourceName"], "rds:AddTagsToResource", request_tag_keys(new))
    tags = dict(_get_tags(ctx, kind, ident))
    tags.update(dict(new))
    if len(tags) > 50:
        raise ApiError("TagQuotaPerResourceExceeded", "A resource can have at most 50 tags.", 400)
    _set_tags(ctx, kind, ident, tuple(tags.items()))


def list_tags_for_resource(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    kind, ident = _tag_target(ctx, args["ResourceName"], "rds:ListTagsForResource", {})
    return {"TagList": common.tags_out(_get_tags(ctx, kind, ident))}


def remove_tags_from_resource(ctx: CallContext, args: dict[str, Any]) -> None:
    drop = set(args["TagKeys"])
    kind, ident = _tag_target(ctx, args["ResourceName"], "rds:RemoveTagsFromResource", tag_keys_only(sorted(drop)))
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
    "ModifyDBInstance": modify_db_instance,
    "RebootDBInstance": reboot_db_instance,
    "AddTagsToResource": add_tags_to_resource,
    "ListTagsForResource": list_tags_for_resource,
    "RemoveTagsFromResource": remove_tags_from_resource,
}
HANDLERS.update(rds_parameters.HANDLERS)
HANDLERS.update(rds_events.HANDLERS)
