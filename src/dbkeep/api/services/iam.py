"""IAM: users, groups, roles, access keys, inline and managed policies (a subset of AWS IAM).

Thin handlers: validate beyond the model (policy documents, quotas, tags), authorise against the
real ARN of the entity before saying whether it exists (``iam_common.authorized``), call the
catalog, shape the answer. Tags given on create need the tag action too (``iam:TagUser``,
``iam:TagRole``), both actions seeing ``aws:RequestTag/<key>`` and ``aws:TagKeys``; the tag
actions themselves are in ``iam_tags.py``. Quotas and error texts follow AWS IAM
("IAM and AWS STS quotas": 2 access keys per user, 10 managed policies per entity, inline policy
size 2048/5120/10240 characters for users/groups/roles, managed policy 6144).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from dbkeep.api.context import CallContext, request_tag_keys
from dbkeep.api.services import iam_logins, iam_tags
from dbkeep.api.services.iam_common import (
    arn,
    authorized,
    authorized_policy,
    no_such,
    policy_not_found,
    resolve_policy,
    tags_in,
)
from dbkeep.catalog.models import Group, ManagedPolicy, Role, User
from dbkeep.catalog.store import Conflict
from dbkeep.errors import ApiError, PolicyDocumentError
from dbkeep.identity.credentials import new_access_key_id, new_secret_access_key, new_unique_id
from dbkeep.policy.document import (
    inline_policy_size_error,
    managed_policy_size_error,
    parse_policy,
    trust_policy_size_error,
)

MAX_ACCESS_KEYS = 2
MAX_ATTACHED = 10


def already(kind: str, name: str) -> ApiError:
    return ApiError("EntityAlreadyExists", f"{kind} with name {name} already exists.", 409)


def limit(quota: str, value: int) -> ApiError:
    return ApiError("LimitExceeded", f"Cannot exceed quota for {quota}: {value}", 409)


def _path(args: dict[str, Any]) -> str:
    path = args.get("Path", "/")
    if not (path.startswith("/") and path.endswith("/")):
        raise ApiError("ValidationError", "The specified value for path is invalid. It must begin and end with / and contain only alphanumeric characters and/or / characters.")
    return path


def _document(text: str, *, kind: str = "identity", size_error: str | None = None, managed: bool = False) -> str:
    """Validate a policy document (and its size quota, whose AWS text the caller computed)."""
    # boto3 sends documents as JSON text; the CLI may send them URL-encoded.
    if text.lstrip()[:3].upper() == "%7B":
        text = unquote(text)
    if size_error is not None:
        raise ApiError("LimitExceeded", size_error, 409)
    try:
        parse_policy(text, kind=kind, managed=managed)
    except PolicyDocumentError as exc:
        raise ApiError("MalformedPolicyDocument", exc.message or "Syntax errors in policy.", 400) from None
    return text


def _user_out(ctx: CallContext, u: User) -> dict[str, Any]:
    out: dict[str, Any] = {"Path": u.path, "UserName": u.name, "UserId": u.user_id, "Arn": arn(ctx, "user", u.path, u.name), "CreateDate": u.created}
    if u.tags:
        out["Tags"] = [{"Key": k, "Value": v} for k, v in u.tags]
    return out


def _group_out(ctx: CallContext, g: Group) -> dict[str, Any]:
    return {"Path": g.path, "GroupName": g.name, "GroupId": g.group_id, "Arn": arn(ctx, "group", g.path, g.name), "CreateDate": g.created}


def _role_out(ctx: CallContext, r: Role) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Path": r.path,
        "RoleName": r.name,
        "RoleId": r.role_id,
        "Arn": arn(ctx, "role", r.path, r.name),
        "CreateDate": r.created,
        "AssumeRolePolicyDocument": r.trust_policy,
        "MaxSessionDuration": r.max_session_duration,
    }
    if r.description:
        out["Description"] = r.description
    if r.tags:
        out["Tags"] = [{"Key": k, "Value": v} for k, v in r.tags]
    return out


def _policy_out(p: ManagedPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {
        "PolicyName": p.name,
        "PolicyId": p.policy_id,
        "Arn": p.arn,
        "Path": p.path,
        "DefaultVersionId": "v1",
        "AttachmentCount": p.attachment_count,
        "PermissionsBoundaryUsageCount": 0,
        "IsAttachable": True,
        "CreateDate": p.created,
        "UpdateDate": p.updated,
    }
    if p.description:
        out["Description"] = p.description
    return out


def _caller_user_name(ctx: CallContext, args: dict[str, Any]) -> str | None:
    """``UserName`` or, when omitted, the calling user (AWS's rule for key and GetUser calls)."""
    if "UserName" in args:
        return args["UserName"]
    if ctx.principal.kind == "user":
        return ctx.principal.name
    if ctx.principal.kind == "root":
        return None
    raise ApiError("ValidationError", "Must specify userName when calling with non-User credentials")


def _authorize_create(ctx: CallContext, title: str, target: str, tags: tuple[tuple[str, str], ...]) -> None:
    """``iam:Create<title>`` and, when tags come with it, ``iam:Tag<title>`` too (as on AWS)."""
    keys = request_tag_keys(tags)
    ctx.authorize(f"iam:Create{title}", target, keys)
    if tags:
        ctx.authorize(f"iam:Tag{title}", target, keys)


# --- users -------------------------------------------------------------------------------------


def create_user(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    name, path, tags = args["UserName"], _path(args), tags_in(args)
    _authorize_create(ctx, "User", arn(ctx, "user", path, name), tags)
    if ctx.catalog.get_user(name):
        raise already("User", name)
    user = User(name=name, user_id=new_unique_id("AIDA"), path=path, created=ctx.now, tags=tags)
    try:
        ctx.catalog.add_user(user)
    except Conflict:
        raise already("User", name) from None
    return {"User": _user_out(ctx, user)}


def get_user(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    name = _caller_user_name(ctx, args)
    if name is None:  # the root user describes itself
        return {"User": {"Path": "/", "UserName": ctx.account_id, "UserId": ctx.account_id, "Arn": ctx.principal.arn, "CreateDate": ctx.now}}
    user = authorized(ctx, "user", name, "iam:GetUser")
    return {"User": _user_out(ctx, user)}


def list_users(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    prefix = args.get("PathPrefix", "/")
    ctx.authorize("iam:ListUsers", arn(ctx, "user", prefix, ""))
    users = ctx.catalog.list_users(prefix)
    return {"Users": [_user_out(ctx, u) for u in users], "IsTruncated": False}


def delete_user(ctx: CallContext, args: dict[str, Any]) -> None:
    user = authorized(ctx, "user", args["UserName"], "iam:DeleteUser")
    dependents = ctx.catalog.user_dependents(user.name)
    if dependents:
        raise ApiError("DeleteConflict", f"Cannot delete entity, must remove {dependents[0]} first.", 409)
    ctx.catalog.delete_user(user.name)


# --- access keys ---------------------------------------------------------------------------------


def create_access_key(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    name = _caller_user_name(ctx, args)
    if name is None:
        raise ApiError("ValidationError", "Creating root access keys through the API is not supported; use the state dir's credentials")
    authorized(ctx, "user", name, "iam:CreateAccessKey")
    if len(ctx.catalog.list_access_keys("user", name)) >= MAX_ACCESS_KEYS:
        raise limit("AccessKeysPerUser", MAX_ACCESS_KEYS)
    key_id, secret = new_access_key_id(), new_secret_access_key()
    ctx.catalog.add_access_key(None, access_key_id=key_id, secret=secret, owner_kind="user", owner_name=name, created=ctx.now)
    ctx.audit.event("iam.access_key_created", verdict="allow", principal=ctx.principal.arn, user=name, access_key_id=key_id, request_id=ctx.request_id)
    return {"AccessKey": {"UserName": name, "AccessKeyId": key_id, "Status": "Active", "SecretAccessKey": secret, "CreateDate": ctx.now}}


def list_access_keys(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    name = _caller_user_name(ctx, args)
    if name is None:
        keys = ctx.catalog.list_access_keys("root", "root")
        return {"AccessKeyMetadata": [{"UserName": ctx.account_id, "AccessKeyId": k.access_key_id, "Status": k.status, "CreateDate": k.created} for k in keys], "IsTruncated": False}
    authorized(ctx, "user", name, "iam:ListAccessKeys")
    keys = ctx.catalog.list_access_keys("user", name)
    return {"AccessKeyMetadata": [{"UserName": name, "AccessKeyId": k.access_key_id, "Status": k.status, "CreateDate": k.created} for k in keys], "IsTruncated": False}


def update_access_key(ctx: CallContext, args: dict[str, Any]) -> None:
    name = _caller_user_name(ctx, args)
    if name is None:
        raise ApiError("ValidationError", "Root access keys are managed in the state dir")
    authorized(ctx, "user", name, "iam:UpdateAccessKey")
    if not ctx.catalog.set_access_key_status(name, args["AccessKeyId"], args["Status"]):
        raise ApiError("NoSuchEntity", f"The Access Key with id {args['AccessKeyId']} cannot be found.", 404)
    ctx.audit.event("iam.access_key_status", verdict="allow", principal=ctx.principal.arn, user=name, access_key_id=args["AccessKeyId"], status=args["Status"], request_id=ctx.request_id)


def delete_access_key(ctx: CallContext, args: dict[str, Any]) -> None:
    name = _caller_user_name(ctx, args)
    if name is None:
        raise ApiError("ValidationError", "Root access keys are managed in the state dir")
    authorized(ctx, "user", name, "iam:DeleteAccessKey")
    if not ctx.catalog.delete_access_key(name, args["AccessKeyId"]):
        raise ApiError("NoSuchEntity", f"The Access Key with id {args['AccessKeyId']} cannot be found.", 404)
    ctx.audit.event("iam.access_key_deleted", verdict="allow", principal=ctx.principal.arn, user=name, access_key_id=args["AccessKeyId"], request_id=ctx.request_id)


# --- groups ------------------------------------------------------------------------------------


def create_group(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    name, path = args["GroupName"], _path(args)
    ctx.authorize("iam:CreateGroup", arn(ctx, "group", path, name))
    if ctx.catalog.get_group(name):
        raise already("Group", name)
    group = Group(name=name, group_id=new_unique_id("AGPA"), path=path, created=ctx.now)
    try:
        ctx.catalog.add_group(group)
    except Conflict:
        raise already("Group", name) from None
    return {"Group": _group_out(ctx, group)}


def get_group(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    group = authorized(ctx, "group", args["GroupName"], "iam:GetGroup")
    users = [ctx.catalog.get_user(n) for n in ctx.catalog.group_members(group.name)]
    return {"Group": _group_out(ctx, group), "Users": [_user_out(ctx, u) for u in users if u], "IsTruncated": False}


def list_groups(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    prefix = args.get("PathPrefix", "/")
    ctx.authorize("iam:ListGroups", arn(ctx, "group", prefix, ""))
    return {"Groups": [_group_out(ctx, g) for g in ctx.catalog.list_groups() if g.path.startswith(prefix)], "IsTruncated": False}


def add_user_to_group(ctx: CallContext, args: dict[str, Any]) -> None:
    group = authorized(ctx, "group", args["GroupName"], "iam:AddUserToGroup")
    if ctx.catalog.get_user(args["UserName"]) is None:
        raise no_such("user", args["UserName"])
    ctx.catalog.add_group_member(group.name, args["UserName"])


def remove_user_from_group(ctx: CallContext, args: dict[str, Any]) -> None:
    group = authorized(ctx, "group", args["GroupName"], "iam:RemoveUserFromGroup")
    if ctx.catalog.get_user(args["UserName"]) is None:
        raise no_such("user", args["UserName"])
    if not ctx.catalog.remove_group_member(group.name, args["UserName"]):
        raise ApiError("NoSuchEntity", f"The user with name {args['UserName']} cannot be found in group {group.name}.", 404)


def list_groups_for_user(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    user = authorized(ctx, "user", args["UserName"], "iam:ListGroupsForUser")
    groups = [ctx.catalog.get_group(n) for n in ctx.catalog.groups_for_user(user.name)]
    return {"Groups": [_group_out(ctx, g) for g in groups if g], "IsTruncated": False}


def delete_group(ctx: CallContext, args: dict[str, Any]) -> None:
    group = authorized(ctx, "group", args["GroupName"], "iam:DeleteGroup")
    dependents = ctx.catalog.group_dependents(group.name)
    if dependents:
        raise ApiError("DeleteConflict", f"Cannot delete entity, must remove {dependents[0]} first.", 409)
    ctx.catalog.delete_group(group.name)


# --- roles -------------------------------------------------------------------------------------


def create_role(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    name, path, tags = args["RoleName"], _path(args), tags_in(args)
    _authorize_create(ctx, "Role", arn(ctx, "role", path, name), tags)
    trust = _document(args["AssumeRolePolicyDocument"], kind="trust",
                      size_error=trust_policy_size_error(args["AssumeRolePolicyDocument"]))
    duration = args.get("MaxSessionDuration", 3600)
    if not 3600 <= duration <= 43200:
        raise ApiError("ValidationError", f"1 validation error detected: Value '{duration}' at 'maxSessionDuration' failed to satisfy constraint: Member must have value between 3600 and 43200")
    if ctx.catalog.get_role(name):
        raise already("Role", name)
    role = Role(name=name, role_id=new_unique_id("AROA"), path=path, trust_policy=trust, description=args.get("Description"), max_session_duration=duration, created=ctx.now, tags=tags)
    try:
        ctx.catalog.add_role(role)
    except Conflict:
        raise already("Role", name) from None
    return {"Role": _role_out(ctx, role)}


def get_role(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    role = authorized(ctx, "role", args["RoleName"], "iam:GetRole")
    return {"Role": _role_out(ctx, role)}


def list_roles(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    prefix = args.get("PathPrefix", "/")
    ctx.authorize("iam:ListRoles", arn(ctx, "role", prefix, ""))
    return {"Roles": [_role_out(ctx, r) for r in ctx.catalog.list_roles() if r.path.startswith(prefix)], "IsTruncated": False}


def delete_role(ctx: CallContext, args: dict[str, Any]) -> None:
    role = authorized(ctx, "role", args["RoleName"], "iam:DeleteRole")
    dependents = ctx.catalog.role_dependents(role.name)
    if dependents:
        raise ApiError("DeleteConflict", f"Cannot delete entity, must delete {dependents[0]} first.", 409)
    ctx.catalog.delete_role(role.name)


# --- inline policies (user, group, role share one implementation) ---------------------------------

_OWNER = {"user": ("UserName", "User"), "group": ("GroupName", "Group"), "role": ("RoleName", "Role")}


def _inline(kind: str, verb: str):
    param, title = _OWNER[kind]

    def handler(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any] | None:
        owner = authorized(ctx, kind, args[param], f"iam:{verb}{title}Polic{'ies' if verb == 'List' else 'y'}")
        if verb == "Put":
            others = [d for n, d in ctx.catalog.list_inline_policies(kind, owner.name) if n != args["PolicyName"]]
            doc = _document(args["PolicyDocument"], size_error=inline_policy_size_error(
                [*others, args["PolicyDocument"]], entity_type=kind, entity_name=owner.name))
            ctx.catalog.put_inline_policy(kind, owner.name, args["PolicyName"], doc)
            return None
        if verb == "List":
            return {"PolicyNames": [n for n, _ in ctx.catalog.list_inline_policies(kind, owner.name)], "IsTruncated": False}
        if verb == "Get":
            doc = ctx.catalog.get_inline_policy(kind, owner.name, args["PolicyName"])
            if doc is None:
                raise ApiError("NoSuchEntity", f"The {kind} policy with name {args['PolicyName']} cannot be found.", 404)
            return {param: owner.name, "PolicyName": args["PolicyName"], "PolicyDocument": doc}
        if not ctx.catalog.delete_inline_policy(kind, owner.name, args["PolicyName"]):
            raise ApiError("NoSuchEntity", f"The {kind} policy with name {args['PolicyName']} cannot be found.", 404)
        return None

    return handler


# --- managed policies ----------------------------------------------------------------------------


def create_policy(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    name, path = args["PolicyName"], _path(args)
    policy_arn = arn(ctx, "policy", path, name)
    tags = tags_in(args)
    _authorize_create(ctx, "Policy", policy_arn, tags)
    if tags:  # authorised like AWS, but dbkeep keeps no tags on managed policies (yet): say so
        raise ApiError("InvalidInput", "dbkeep does not keep tags on managed policies; create the policy without Tags.", 400)
    doc = _document(args["PolicyDocument"], size_error=managed_policy_size_error(args["PolicyDocument"]), managed=True)
    if ctx.catalog.get_managed_policy(policy_arn):
        raise ApiError("EntityAlreadyExists", f"A policy called {name} already exists. Duplicate names are not allowed.", 409)
    policy = ManagedPolicy(policy_arn, name, new_unique_id("ANPA"), path, doc, args.get("Description"), ctx.now, ctx.now)
    try:
        ctx.catalog.add_managed_policy(policy)
    except Conflict:
        raise ApiError("EntityAlreadyExists", f"A policy called {name} already exists. Duplicate names are not allowed.", 409) from None
    return {"Policy": _policy_out(policy)}


def get_policy(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    policy = authorized_policy(ctx, args["PolicyArn"], "iam:GetPolicy")
    return {"Policy": _policy_out(policy)}


def get_policy_version(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    policy = authorized_policy(ctx, args["PolicyArn"], "iam:GetPolicyVersion")
    if args["VersionId"] != "v1":
        raise ApiError("NoSuchEntity", f"Policy {policy.arn} version {args['VersionId']} does not exist or is not attachable.", 404)
    return {"PolicyVersion": {"Document": policy.document, "VersionId": "v1", "IsDefaultVersion": True, "CreateDate": policy.created}}


def list_policies(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    ctx.authorize("iam:ListPolicies", arn(ctx, "policy", args.get("PathPrefix", "/"), ""))
    policies = [p for p in ctx.catalog.list_managed_policies() if p.path.startswith(args.get("PathPrefix", "/"))]
    if args.get("OnlyAttached"):
        policies = [p for p in policies if p.attachment_count]
    if args.get("Scope") == "AWS":
        policies = []
    return {"Policies": [_policy_out(p) for p in policies], "IsTruncated": False}


def delete_policy(ctx: CallContext, args: dict[str, Any]) -> None:
    policy = authorized_policy(ctx, args["PolicyArn"], "iam:DeletePolicy")
    if policy.attachment_count:
        raise ApiError("DeleteConflict", "Cannot delete a policy attached to entities.", 409)
    ctx.catalog.delete_managed_policy(policy.arn)


def _attach(kind: str, verb: str):
    param, title = _OWNER[kind]

    def handler(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any] | None:
        if verb == "ListAttached":
            owner = authorized(ctx, kind, args[param], f"iam:ListAttached{title}Policies")
            attached = ctx.catalog.attached_policies(kind, owner.name)
            return {"AttachedPolicies": [{"PolicyName": p.name, "PolicyArn": p.arn} for p in attached], "IsTruncated": False}
        policy, policy_arn = resolve_policy(ctx, args["PolicyArn"])
        owner = authorized(ctx, kind, args[param], f"iam:{verb}{title}Policy", {"iam:PolicyARN": policy_arn})
        if policy is None:
            raise policy_not_found(args["PolicyArn"])
        if verb == "Attach":
            attached = ctx.catalog.attached_policies(kind, owner.name)
            if policy.arn not in {p.arn for p in attached} and len(attached) >= MAX_ATTACHED:
                raise limit(f"PoliciesPer{title}", MAX_ATTACHED)
            ctx.catalog.attach_policy(kind, owner.name, policy.arn)
        elif not ctx.catalog.detach_policy(kind, owner.name, policy.arn):
            raise ApiError("NoSuchEntity", f"Policy {policy.arn} was not found.", 404)
        return None

    return handler


HANDLERS = {
    "CreateUser": create_user,
    "GetUser": get_user,
    "ListUsers": list_users,
    "DeleteUser": delete_user,
    "CreateAccessKey": create_access_key,
    "ListAccessKeys": list_access_keys,
    "UpdateAccessKey": update_access_key,
    "DeleteAccessKey": delete_access_key,
    "CreateGroup": create_group,
    "GetGroup": get_group,
    "ListGroups": list_groups,
    "ListGroupsForUser": list_groups_for_user,
    "AddUserToGroup": add_user_to_group,
    "RemoveUserFromGroup": remove_user_from_group,
    "DeleteGroup": delete_group,
    "CreateRole": create_role,
    "GetRole": get_role,
    "ListRoles": list_roles,
    "DeleteRole": delete_role,
    "CreatePolicy": create_policy,
    "GetPolicy": get_policy,
    "GetPolicyVersion": get_policy_version,
    "ListPolicies": list_policies,
    "DeletePolicy": delete_policy,
}
for _kind, (_param, _title) in _OWNER.items():
    for _verb in ("Put", "Get", "List", "Delete"):
        HANDLERS[f"{_verb}{_title}Polic{'ies' if _verb == 'List' else 'y'}"] = _inline(_kind, _verb)
    for _verb in ("Attach", "Detach", "ListAttached"):
        HANDLERS[f"{_verb}{_title}Polic{'ies' if _verb == 'ListAttached' else 'y'}"] = _attach(_kind, _verb)
HANDLERS.update(iam_tags.HANDLERS)
HANDLERS.update(iam_logins.HANDLERS)

