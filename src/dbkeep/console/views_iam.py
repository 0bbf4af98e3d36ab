"""IAM: users (policies, access keys, console password), roles and managed policies.

A new access key's secret is shown once, in the answer to the POST that created it (never
stored by the console, never in a redirect or the session); the page says to copy it now.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from dbkeep.console.web import Console, api_error_text, form_value
from dbkeep.errors import ApiError


def _pretty(document: str) -> str:
    try:
        return json.dumps(json.loads(document), indent=2)
    except ValueError:
        return document


def routes(router: web.UrlDispatcher, console: Console) -> None:
    # --- users -----------------------------------------------------------------------------------

    async def users_page(request: web.Request, *, status: int = 200, error: str | None = None) -> web.Response:
        found, read_error = await request["caller"].try_read("iam", "ListUsers")
        return console.render(request, "iam_users.html", status=status, users=(found or {}).get("Users", []),
                              error=error or (read_error and api_error_text(read_error)))

    async def users(request: web.Request) -> web.Response:
        return await users_page(request)

    async def create_user(request: web.Request) -> web.StreamResponse:
        name = form_value(request, "name")
        try:
            await request["caller"].change("iam", "CreateUser", name, UserName=name)
        except ApiError as exc:
            return await users_page(request, status=exc.status, error=api_error_text(exc))
        console.flash(request, f"User {name} created.")
        raise web.HTTPSeeOther(f"/console/iam/users/{name}")

    async def user_page(request: web.Request, *, status: int = 200, error: str | None = None, new_key: dict | None = None) -> web.Response:
        caller, name = request["caller"], request.match_info["name"]
        found, read_error = await caller.try_read("iam", "GetUser", UserName=name)
        if found is None:
            return console.render(request, "error.html", status=read_error.status if read_error else 404, title=f"User {name}",
                                  error=api_error_text(read_error) if read_error else "not found")
        attached, attached_error = await caller.try_read("iam", "ListAttachedUserPolicies", UserName=name)
        inline, _ = await caller.try_read("iam", "ListUserPolicies", UserName=name)
        keys, keys_error = await caller.try_read("iam", "ListAccessKeys", UserName=name)
        groups, _ = await caller.try_read("iam", "ListGroupsForUser", UserName=name)
        profile, profile_error = await caller.try_read("iam", "GetLoginProfile", UserName=name)
        policies, _ = await caller.try_read("iam", "ListPolicies", Scope="Local")
        return console.render(
            request, "iam_user.html", status=status, user=found["User"], error=error, new_key=new_key,
            attached=(attached or {}).get("AttachedPolicies", []), attached_error=attached_error and api_error_text(attached_error),
            inline=(inline or {}).get("PolicyNames", []), keys=(keys or {}).get("AccessKeyMetadata", []),
            keys_error=keys_error and api_error_text(keys_error), groups=(groups or {}).get("Groups", []),
            profile=(profile or {}).get("LoginProfile"),
            profile_unknown=profile_error is not None and profile_error.code != "NoSuchEntity",
            policies=(policies or {}).get("Policies", []),
        )

    async def user(request: web.Request) -> web.Response:
        return await user_page(request)

    async def user_action(request: web.Request) -> web.StreamResponse:
        caller, name, what = request["caller"], request.match_info["name"], request.match_info["what"]
        form = request["form"]
        try:
            if what == "attach":
                await caller.change("iam", "AttachUserPolicy", name, UserName=name, PolicyArn=form_value(request, "policy"))
                done = "Policy attached."
            elif what == "detach":
                await caller.change("iam", "DetachUserPolicy", name, UserName=name, PolicyArn=form_value(request, "policy"))
                done = "Policy detached."
            elif what == "keys":
                made = await caller.change("iam", "CreateAccessKey", name, UserName=name)
                return await user_page(request, new_key=made["AccessKey"])
            elif what == "delete-key":
                await caller.change("iam", "DeleteAccessKey", name, UserName=name, AccessKeyId=form_value(request, "key"))
                done = "Access key deleted."
            elif what == "password":
                password = form.get("password", "")
                if password != form.get("again", ""):
                    return await user_page(request, status=400, error="The two passwords differ.")
                reset = form.get("reset_required") == "on"
                action = "UpdateLoginProfile" if form_value(request, "exists") == "yes" else "CreateLoginProfile"
                await caller.change("iam", action, name, UserName=name, Password=password, PasswordResetRequired=reset)
                done = "Console password set."
            elif what == "delete-password":
                await caller.change("iam", "DeleteLoginProfile", name, UserName=name)
                done = "Console password removed: the user can no longer sign in to the console."
            elif what == "delete":
                await caller.change("iam", "DeleteUser", name, UserName=name)
                console.flash(request, f"User {name} deleted.")
                raise web.HTTPSeeOther("/console/iam/users")
            else:
                raise web.HTTPNotFound()
        except ApiError as exc:
            return await user_page(request, status=exc.status, error=api_error_text(exc))
        console.flash(request, done)
        raise web.HTTPSeeOther(f"/console/iam/users/{name}")

    # --- roles -----------------------------------------------------------------------------------

    async def roles(request: web.Request) -> web.Response:
        found, read_error = await request["caller"].try_read("iam", "ListRoles")
        return console.render(request, "iam_roles.html", roles=(found or {}).get("Roles", []),
                              error=read_error and api_error_text(read_error))

    async def role_page(request: web.Request, *, status: int = 200, error: str | None = None) -> web.Response:
        caller, name = request["caller"], request.match_info["name"]
        found, read_error = await caller.try_read("iam", "GetRole", RoleName=name)
        if found is None:
            return console.render(request, "error.html", status=read_error.status if read_error else 404, title=f"Role {name}",
                                  error=api_error_text(read_error) if read_error else "not found")
        attached, _ = await caller.try_read("iam", "ListAttachedRolePolicies", RoleName=name)
        policies, _ = await caller.try_read("iam", "ListPolicies", Scope="Local")
        role = found["Role"]
        return console.render(request, "iam_role.html", status=status, role=role, trust=_pretty(role["AssumeRolePolicyDocument"]),
                              attached=(attached or {}).get("AttachedPolicies", []), policies=(policies or {}).get("Policies", []),
                              error=error)

    async def role(request: web.Request) -> web.Response:
        return await role_page(request)

    async def role_action(request: web.Request) -> web.StreamResponse:
        name, what = request.match_info["name"], request.match_info["what"]
        action = {"attach": "AttachRolePolicy", "detach": "DetachRolePolicy"}.get(what)
        if action is None:
            raise web.HTTPNotFound()
        try:
            await request["caller"].change("iam", action, name, RoleName=name, PolicyArn=form_value(request, "policy"))
        except ApiError as exc:
            return await role_page(request, status=exc.status, error=api_error_text(exc))
        console.flash(request, "Policy attached." if what == "attach" else "Policy detached.")
        raise web.HTTPSeeOther(f"/console/iam/roles/{name}")

    # --- managed policies ----------------------------------------------------------------------------

    async def policies_page(request: web.Request, *, status: int = 200, error: str | None = None) -> web.Response:
        found, read_error = await request["caller"].try_read("iam", "ListPolicies", Scope="Local")
        values = {k: v for k, v in (request.get("form") or {}).items() if k in ("name", "document", "description")}
        return console.render(request, "iam_policies.html", status=status, policies=(found or {}).get("Policies", []),
                              error=error or (read_error and api_error_text(read_error)), values=values)

    async def policies(request: web.Request) -> web.Response:
        return await policies_page(request)

    async def create_policy(request: web.Request) -> web.StreamResponse:
        name = form_value(request, "name")
        params: dict[str, Any] = {"PolicyName": name, "PolicyDocument": form_value(request, "document")}
        if form_value(request, "description"):
            params["Description"] = form_value(request, "description")
        try:
            made = await request["caller"].change("iam", "CreatePolicy", name, **params)
        except ApiError as exc:
            return await policies_page(request, status=exc.status, error=api_error_text(exc))
        console.flash(request, f"Policy {name} created.")
        raise web.HTTPSeeOther(f"/console/iam/policy?arn={made['Policy']['Arn']}")

    async def policy(request: web.Request) -> web.Response:
        caller, policy_arn = request["caller"], request.query.get("arn", "")
        found, read_error = await caller.try_read("iam", "GetPolicy", PolicyArn=policy_arn)
        if found is None:
            return console.render(request, "error.html", status=read_error.status if read_error else 404, title="Policy",
                                  error=api_error_text(read_error) if read_error else "not found")
        version, version_error = await caller.try_read("iam", "GetPolicyVersion", PolicyArn=policy_arn, VersionId="v1")
        document = _pretty(version["PolicyVersion"]["Document"]) if version else None
        return console.render(request, "iam_policy.html", policy=found["Policy"], document=document,
                              error=version_error and api_error_text(version_error))

    async def iam_home(request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/console/iam/users")

    router.add_get("/iam", iam_home)
    router.add_get("/iam/users", users)
    router.add_post("/iam/users", create_user)
    router.add_get("/iam/users/{name}", user)
    router.add_post("/iam/users/{name}/{what}", user_action)
    router.add_get("/iam/roles", roles)
    router.add_get("/iam/roles/{name}", role)
    router.add_post("/iam/roles/{name}/{what}", role_action)
    router.add_get("/iam/policies", policies)
    router.add_post("/iam/policies", create_policy)
    router.add_get("/iam/policy", policy)
