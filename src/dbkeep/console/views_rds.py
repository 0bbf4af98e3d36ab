"""Clusters and instances: the list, a cluster's page with its actions (modify, reset the
master password, reboot, stop/start, delete with confirmation), create cluster and instance.

Every action is the RDS API call a CLI user would make, as the signed-in principal; a page
in a transitional status refreshes itself every few seconds (``static/console.js``) until the
status settles (``resetting-master-credentials`` → ``available`` after a reset).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dbkeep.console.web import Console, api_error_text, form_value
from dbkeep.errors import ApiError

SETTLED = {"available", "stopped", "failed", "incompatible-parameters", "inaccessible-encryption-credentials"}
INSTANCE_CLASSES = ("db.t3.medium", "db.t4g.medium", "db.r6g.large", "db.r6g.xlarge", "db.r6g.2xlarge")
ENGINES = (("aurora-mysql", "Aurora MySQL (MariaDB 10.11)"), ("aurora-postgresql", "Aurora PostgreSQL (PostgreSQL 15)"))


def _pending_reboot(cluster: dict[str, Any]) -> bool:
    return any(m.get("DBClusterParameterGroupStatus") == "pending-reboot" for m in cluster.get("DBClusterMembers", []))


def routes(router: web.UrlDispatcher, console: Console) -> None:
    async def home(request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/console/clusters")

    async def clusters(request: web.Request) -> web.Response:
        caller = request["caller"]
        found, error = await caller.try_read("rds", "DescribeDBClusters")
        items = (found or {}).get("DBClusters", [])
        for c in items:
            c["pending_reboot"] = _pending_reboot(c)
        refresh = any(c["Status"] not in SETTLED for c in items)
        return console.render(request, "clusters.html", clusters=items, error=error and api_error_text(error), refresh=refresh)

    async def cluster_page(request: web.Request, *, status: int = 200, error: str | None = None, form: str | None = None) -> web.Response:
        caller, ident = request["caller"], request.match_info["ident"]
        found, read_error = await caller.try_read("rds", "DescribeDBClusters", DBClusterIdentifier=ident)
        if found is None:
            return console.render(request, "error.html", status=read_error.status if read_error else 404,
                                  title=f"Cluster {ident}", error=api_error_text(read_error) if read_error else "not found")
        cluster = found["DBClusters"][0]
        cluster["pending_reboot"] = _pending_reboot(cluster)
        instances, _ = await caller.try_read("rds", "DescribeDBInstances", Filters=[{"Name": "db-cluster-id", "Values": [cluster["DBClusterIdentifier"]]}])
        groups, _ = await caller.try_read("rds", "DescribeDBClusterParameterGroups")
        security, _ = await caller.try_read("ec2", "DescribeSecurityGroups")
        events, _ = await caller.try_read("rds", "DescribeEvents", SourceType="db-cluster", SourceIdentifier=cluster["DBClusterIdentifier"], Duration=1440)
        instance_list = (instances or {}).get("DBInstances", [])
        family_of = {"aurora-mysql": "aurora-mysql", "aurora-postgresql": "aurora-postgresql"}[cluster["Engine"]]
        refresh = cluster["Status"] not in SETTLED or any(i["DBInstanceStatus"] not in SETTLED for i in instance_list)
        return console.render(
            request, "cluster.html", status=status, cluster=cluster, instances=instance_list,
            parameter_groups=[g for g in (groups or {}).get("DBClusterParameterGroups", []) if g["DBParameterGroupFamily"].startswith(family_of)],
            security_groups=(security or {}).get("SecurityGroups", []),
            events=list(reversed((events or {}).get("Events", [])))[:20],
            error=error, open_form=form, refresh=refresh, instance_classes=INSTANCE_CLASSES,
        )

    async def show_cluster(request: web.Request) -> web.Response:
        return await cluster_page(request)

    async def act(request: web.Request, form_name: str, action: str, success: str, **params: Any) -> web.StreamResponse:
        """One RDS change for the cluster page: back to it with a message, or the page again
        with the API's error at the form that caused it."""
        ident = request.match_info["ident"]
        try:
            await request["caller"].change("rds", action, params.get("DBInstanceIdentifier", ident), cluster=ident, **params)
        except ApiError as exc:
            return await cluster_page(request, status=exc.status, error=api_error_text(exc), form=form_name)
        console.flash(request, success)
        raise web.HTTPSeeOther(f"/console/clusters/{ident}")

    async def modify(request: web.Request) -> web.StreamResponse:
        ident = request.match_info["ident"]
        form = request["form"]
        params: dict[str, Any] = {"DBClusterIdentifier": ident, "ApplyImmediately": True}
        if form_value(request, "parameter_group"):
            params["DBClusterParameterGroupName"] = form_value(request, "parameter_group")
        groups = [g for g in form.getall("security_group", []) if isinstance(g, str)]
        if groups:
            params["VpcSecurityGroupIds"] = groups
        params["EnableIAMDatabaseAuthentication"] = form.get("iam_auth") == "on"
        params["DeletionProtection"] = form.get("deletion_protection") == "on"
        return await act(request, "modify", "ModifyDBCluster", f"Cluster {ident} modified.", **params)

    async def reset_password(request: web.Request) -> web.StreamResponse:
        ident = request.match_info["ident"]
        password, again = request["form"].get("password", ""), request["form"].get("again", "")
        if password != again:
            return await cluster_page(request, status=400, error="The two passwords differ.", form="reset")
        return await act(request, "reset", "ModifyDBCluster",
                         f"The master password of {ident} is being reset: the master user gets back a working login with its default privileges.",
                         DBClusterIdentifier=ident, MasterUserPassword=password, ApplyImmediately=True)

    async def stop(request: web.Request) -> web.StreamResponse:
        ident = request.match_info["ident"]
        return await act(request, "stop", "StopDBCluster", f"Cluster {ident} is stopping.", DBClusterIdentifier=ident)

    async def start(request: web.Request) -> web.StreamResponse:
        ident = request.match_info["ident"]
        return await act(request, "stop", "StartDBCluster", f"Cluster {ident} is starting.", DBClusterIdentifier=ident)

    async def delete(request: web.Request) -> web.StreamResponse:
        ident = request.match_info["ident"]
        if form_value(request, "confirm") != ident:
            return await cluster_page(request, status=400, error=f"Type the cluster's identifier, {ident}, to confirm the deletion.", form="delete")
        try:
            await request["caller"].change("rds", "DeleteDBCluster", ident, cluster=ident, DBClusterIdentifier=ident, SkipFinalSnapshot=True)
        except ApiError as exc:
            return await cluster_page(request, status=exc.status, error=api_error_text(exc), form="delete")
        console.flash(request, f"Cluster {ident} is being deleted.")
        raise web.HTTPSeeOther("/console/clusters")

    async def create_instance(request: web.Request) -> web.StreamResponse:
        ident = request.match_info["ident"]
        found, _ = await request["caller"].try_read("rds", "DescribeDBClusters", DBClusterIdentifier=ident)
        engine = found["DBClusters"][0]["Engine"] if found else ""
        name = form_value(request, "instance")
        return await act(request, "instance", "CreateDBInstance", f"Instance {name} is being created.", DBInstanceIdentifier=name,
                         DBClusterIdentifier=ident, Engine=engine, DBInstanceClass=form_value(request, "instance_class", "db.r6g.large"))

    async def instance_action(request: web.Request) -> web.StreamResponse:
        ident, inst, what = request.match_info["ident"], request.match_info["inst"], request.match_info["what"]
        if what == "reboot":
            return await act(request, "instances", "RebootDBInstance", f"Instance {inst} is rebooting.", DBInstanceIdentifier=inst)
        if what == "delete":
            return await act(request, "instances", "DeleteDBInstance", f"Instance {inst} is being deleted.", DBInstanceIdentifier=inst)
        raise web.HTTPNotFound()

    # --- create a cluster --------------------------------------------------------------------------

    async def new_cluster_page(request: web.Request, *, status: int = 200, error: str | None = None) -> web.Response:
        caller = request["caller"]
        groups, _ = await caller.try_read("rds", "DescribeDBClusterParameterGroups")
        security, _ = await caller.try_read("ec2", "DescribeSecurityGroups")
        form = request.get("form")
        values = {k: v for k, v in (form or {}).items() if isinstance(v, str) and k not in ("password", "again", "csrf_token")}
        return console.render(request, "cluster_new.html", status=status, error=error, engines=ENGINES,
                              parameter_groups=(groups or {}).get("DBClusterParameterGroups", []),
                              security_groups=(security or {}).get("SecurityGroups", []),
                              instance_classes=INSTANCE_CLASSES, values=values)

    async def new_cluster(request: web.Request) -> web.Response:
        return await new_cluster_page(request)

    async def create_cluster(request: web.Request) -> web.StreamResponse:
        caller, form = request["caller"], request["form"]
        ident, engine = form_value(request, "ident"), form_value(request, "engine")
        password, again = form.get("password", ""), form.get("again", "")
        if password != again:
            return await new_cluster_page(request, status=400, error="The two passwords differ.")
        params: dict[str, Any] = {"DBClusterIdentifier": ident, "Engine": engine, "MasterUsername": form_value(request, "master"),
                                  "MasterUserPassword": password,
                                  "EnableIAMDatabaseAuthentication": form.get("iam_auth") == "on"}
        for field, key in (("database", "DatabaseName"), ("parameter_group", "DBClusterParameterGroupName")):
            if form_value(request, field):
                params[key] = form_value(request, field)
        groups = [g for g in form.getall("security_group", []) if isinstance(g, str)]
        if groups:
            params["VpcSecurityGroupIds"] = groups
        try:
            created = await caller.change("rds", "CreateDBCluster", ident, cluster=ident, **params)
            ident = created["DBCluster"]["DBClusterIdentifier"]
            if form_value(request, "instance"):
                await caller.change("rds", "CreateDBInstance", form_value(request, "instance"), cluster=ident, DBInstanceIdentifier=form_value(request, "instance"),
                                    DBClusterIdentifier=ident, Engine=engine, DBInstanceClass=form_value(request, "instance_class", "db.r6g.large"))
        except ApiError as exc:
            return await new_cluster_page(request, status=exc.status, error=api_error_text(exc))
        console.flash(request, f"Cluster {ident} is being created.")
        raise web.HTTPSeeOther(f"/console/clusters/{ident}")

    router.add_get("/", home)
    router.add_get("/clusters", clusters)
    router.add_get("/clusters/new", new_cluster)
    router.add_post("/clusters/new", create_cluster)
    router.add_get("/clusters/{ident}", show_cluster)
    router.add_post("/clusters/{ident}/modify", modify)
    router.add_post("/clusters/{ident}/reset-password", reset_password)
    router.add_post("/clusters/{ident}/stop", stop)
    router.add_post("/clusters/{ident}/start", start)
    router.add_post("/clusters/{ident}/delete", delete)
    router.add_post("/clusters/{ident}/instances", create_instance)
    router.add_post("/clusters/{ident}/instances/{inst}/{what}", instance_action)
