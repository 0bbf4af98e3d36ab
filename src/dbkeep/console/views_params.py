"""Cluster parameter groups: the list, one group's parameters with the edit form, create, delete.

The page says the rules a user needs: dynamic parameters apply at once to every running
cluster of the group (``ApplyMethod=immediate``), static ones wait for the next reboot of
each cluster's writer (``pending-reboot``, shown on the clusters); default groups cannot be
changed (create your own and assign it to a cluster).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dbkeep.console.web import Console, api_error_text, form_value
from dbkeep.errors import ApiError

FAMILIES = ("aurora-mysql8.0", "aurora-postgresql15")


async def all_parameters(caller, name: str) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    marker = None
    while True:
        page = await caller.read("rds", "DescribeDBClusterParameters", DBClusterParameterGroupName=name, MaxRecords=100,
                                 **({"Marker": marker} if marker else {}))
        params += page.get("Parameters", [])
        marker = page.get("Marker")
        if not marker:
            return params


def routes(router: web.UrlDispatcher, console: Console) -> None:
    async def groups_page(request: web.Request, *, status: int = 200, error: str | None = None) -> web.Response:
        found, read_error = await request["caller"].try_read("rds", "DescribeDBClusterParameterGroups")
        return console.render(request, "parameter_groups.html", status=status, groups=(found or {}).get("DBClusterParameterGroups", []),
                              error=error or (read_error and api_error_text(read_error)), families=FAMILIES)

    async def groups(request: web.Request) -> web.Response:
        return await groups_page(request)

    async def create(request: web.Request) -> web.StreamResponse:
        name = form_value(request, "name")
        try:
            await request["caller"].change("rds", "CreateDBClusterParameterGroup", name, DBClusterParameterGroupName=name,
                                           DBParameterGroupFamily=form_value(request, "family"),
                                           Description=form_value(request, "description") or name)
        except ApiError as exc:
            return await groups_page(request, status=exc.status, error=api_error_text(exc))
        console.flash(request, f"Parameter group {name} created.")
        raise web.HTTPSeeOther(f"/console/parameter-groups/{name}")

    async def group_page(request: web.Request, *, status: int = 200, error: str | None = None) -> web.Response:
        caller, name = request["caller"], request.match_info["name"]
        found, read_error = await caller.try_read("rds", "DescribeDBClusterParameterGroups", DBClusterParameterGroupName=name)
        if found is None:
            return console.render(request, "error.html", status=read_error.status if read_error else 404,
                                  title=f"Parameter group {name}", error=api_error_text(read_error) if read_error else "not found")
        try:
            params = await all_parameters(caller, name)
        except ApiError as exc:
            params, error = [], error or api_error_text(exc)
        group = found["DBClusterParameterGroups"][0]
        return console.render(request, "parameter_group.html", status=status, group=group, params=params, error=error,
                              is_default=group["DBClusterParameterGroupName"].startswith("default."))

    async def group(request: web.Request) -> web.Response:
        return await group_page(request)

    async def modify(request: web.Request) -> web.StreamResponse:
        caller, name, form = request["caller"], request.match_info["name"], request["form"]
        try:
            current = {p["ParameterName"]: p for p in await all_parameters(caller, name)}
        except ApiError as exc:
            return await group_page(request, status=exc.status, error=api_error_text(exc))
        changes, resets = [], []
        for pname, p in current.items():
            if form.get(f"reset:{pname}") == "on":
                resets.append({"ParameterName": pname})
                continue
            value = form.get(f"p:{pname}")
            if isinstance(value, str) and p["IsModifiable"] and value.strip() != p.get("ParameterValue", "") and value.strip():
                changes.append({"ParameterName": pname, "ParameterValue": value.strip(),
                                "ApplyMethod": "immediate" if p["ApplyType"] == "dynamic" else "pending-reboot"})
        if not changes and not resets:
            return await group_page(request, status=400, error="Nothing changed.")
        try:
            for i in range(0, len(changes), 20):  # RDS takes at most 20 parameters a call
                await caller.change("rds", "ModifyDBClusterParameterGroup", name, DBClusterParameterGroupName=name, Parameters=changes[i:i + 20])
            if resets:
                await caller.change("rds", "ResetDBClusterParameterGroup", name, DBClusterParameterGroupName=name, Parameters=resets)
        except ApiError as exc:
            return await group_page(request, status=exc.status, error=api_error_text(exc))
        static = [c["ParameterName"] for c in changes if c["ApplyMethod"] == "pending-reboot"]
        note = f" Static ones ({', '.join(static)}) apply after each cluster's writer reboots." if static else ""
        console.flash(request, f"{len(changes) + len(resets)} parameter(s) of {name} changed.{note}")
        raise web.HTTPSeeOther(f"/console/parameter-groups/{name}")

    async def delete(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        try:
            await request["caller"].change("rds", "DeleteDBClusterParameterGroup", name, DBClusterParameterGroupName=name)
        except ApiError as exc:
            return await group_page(request, status=exc.status, error=api_error_text(exc))
        console.flash(request, f"Parameter group {name} deleted.")
        raise web.HTTPSeeOther("/console/parameter-groups")

    router.add_get("/parameter-groups", groups)
    router.add_post("/parameter-groups", create)
    router.add_get("/parameter-groups/{name}", group)
    router.add_post("/parameter-groups/{name}", modify)
    router.add_post("/parameter-groups/{name}/delete", delete)
