"""Security groups: the list, one group's ingress rules with add and remove, create a group.

A rule admits database clients by CIDR to the cluster endpoints whose ports it covers; the
gateway applies changes to new connections at once.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dbkeep.console.web import Console, api_error_text, form_value
from dbkeep.errors import ApiError


def _rules(group: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (protocol, ports, CIDR), as a person reads a group."""
    rows = []
    for perm in group.get("IpPermissions", []):
        for r in perm.get("IpRanges", []) + [{"CidrIp": r["CidrIpv6"], **r} for r in perm.get("Ipv6Ranges", [])]:
            rows.append({"protocol": perm["IpProtocol"], "from": perm.get("FromPort"), "to": perm.get("ToPort"),
                         "cidr": r["CidrIp"], "description": r.get("Description", "")})
    return rows


def _permission(protocol: str, from_port: str, to_port: str, cidr: str, description: str = "") -> dict[str, Any]:
    perm: dict[str, Any] = {"IpProtocol": protocol}
    if protocol != "-1":
        perm["FromPort"], perm["ToPort"] = int(from_port), int(to_port or from_port)
    entry: dict[str, Any] = {"CidrIpv6" if ":" in cidr else "CidrIp": cidr}
    if description:
        entry["Description"] = description
    perm["Ipv6Ranges" if ":" in cidr else "IpRanges"] = [entry]
    return perm


def routes(router: web.UrlDispatcher, console: Console) -> None:
    async def groups_page(request: web.Request, *, status: int = 200, error: str | None = None) -> web.Response:
        found, read_error = await request["caller"].try_read("ec2", "DescribeSecurityGroups")
        return console.render(request, "security_groups.html", status=status, groups=(found or {}).get("SecurityGroups", []),
                              error=error or (read_error and api_error_text(read_error)))

    async def groups(request: web.Request) -> web.Response:
        return await groups_page(request)

    async def create(request: web.Request) -> web.StreamResponse:
        name = form_value(request, "name")
        try:
            made = await request["caller"].change("ec2", "CreateSecurityGroup", name, GroupName=name,
                                                  Description=form_value(request, "description") or name)
        except ApiError as exc:
            return await groups_page(request, status=exc.status, error=api_error_text(exc))
        console.flash(request, f"Security group {name} created.")
        raise web.HTTPSeeOther(f"/console/security-groups/{made['GroupId']}")

    async def group_page(request: web.Request, *, status: int = 200, error: str | None = None) -> web.Response:
        gid = request.match_info["gid"]
        found, read_error = await request["caller"].try_read("ec2", "DescribeSecurityGroups", GroupIds=[gid])
        if found is None or not found.get("SecurityGroups"):
            return console.render(request, "error.html", status=read_error.status if read_error else 404,
                                  title=f"Security group {gid}", error=api_error_text(read_error) if read_error else "not found")
        group = found["SecurityGroups"][0]
        return console.render(request, "security_group.html", status=status, group=group, rules=_rules(group), error=error)

    async def group(request: web.Request) -> web.Response:
        return await group_page(request)

    async def change_rule(request: web.Request, action: str, done: str) -> web.StreamResponse:
        gid = request.match_info["gid"]
        try:
            perm = _permission(form_value(request, "protocol", "tcp"), form_value(request, "from"), form_value(request, "to"),
                               form_value(request, "cidr"), form_value(request, "description"))
        except ValueError:
            return await group_page(request, status=400, error="Ports are numbers from 0 to 65535.")
        try:
            await request["caller"].change("ec2", action, gid, GroupId=gid, IpPermissions=[perm])
        except ApiError as exc:
            return await group_page(request, status=exc.status, error=api_error_text(exc))
        console.flash(request, done)
        raise web.HTTPSeeOther(f"/console/security-groups/{gid}")

    async def add_rule(request: web.Request) -> web.StreamResponse:
        return await change_rule(request, "AuthorizeSecurityGroupIngress", "Rule added: new connections follow it at once.")

    async def remove_rule(request: web.Request) -> web.StreamResponse:
        return await change_rule(request, "RevokeSecurityGroupIngress", "Rule removed: new connections follow it at once.")

    async def delete(request: web.Request) -> web.StreamResponse:
        gid = request.match_info["gid"]
        try:
            await request["caller"].change("ec2", "DeleteSecurityGroup", gid, GroupId=gid)
        except ApiError as exc:
            return await group_page(request, status=exc.status, error=api_error_text(exc))
        console.flash(request, f"Security group {gid} deleted.")
        raise web.HTTPSeeOther("/console/security-groups")

    router.add_get("/security-groups", groups)
    router.add_post("/security-groups", create)
    router.add_get("/security-groups/{gid}", group)
    router.add_post("/security-groups/{gid}/rules", add_rule)
    router.add_post("/security-groups/{gid}/rules/remove", remove_rule)
    router.add_post("/security-groups/{gid}/delete", delete)
