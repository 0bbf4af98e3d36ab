"""IAM console passwords: login profiles, ChangePassword, the account password policy and the
account alias (the name users may sign in to the console with instead of the account id).

Semantics and errors as IAM's API reference gives them: ``EntityAlreadyExists`` for a second
profile, ``NoSuchEntity`` for a missing user, profile or policy, ``PasswordPolicyViolation``
when a password breaks the account's policy (IAM's default policy when there is none,
``identity/passwords.py``). Passwords are hashed (argon2id, in a worker thread: the event loop
also runs the gateway) and are never returned, logged or audited; every change is an audit event.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from dbkeep.api.context import CallContext
from dbkeep.api.services.iam_common import arn, authorized
from dbkeep.catalog.logins import LoginProfile, LoginStore
from dbkeep.catalog.store import Conflict
from dbkeep.errors import ApiError
from dbkeep.identity import passwords

ALIAS_KEY = "account_alias"
_ALIAS = re.compile(r"[a-z0-9]([a-z0-9]|-(?!-)){1,61}[a-z0-9]")


def store(ctx: CallContext) -> LoginStore:
    return LoginStore(ctx.catalog)


def account_names(ctx: CallContext) -> tuple[str, ...]:
    alias = ctx.catalog.get_meta(ALIAS_KEY)
    return (ctx.account_id, alias) if alias else (ctx.account_id,)


def no_profile(name: str) -> ApiError:
    return ApiError("NoSuchEntity", f"Login Profile for User {name} cannot be found.", 404)


def _user_name(ctx: CallContext, args: dict[str, Any]) -> str:
    """``UserName`` or the calling IAM user (IAM's rule); the root has no login profile here."""
    if args.get("UserName"):
        return args["UserName"]
    if ctx.principal.kind == "user":
        return ctx.principal.name
    raise ApiError("ValidationError", "Must specify userName when calling with non-User credentials")


def _profile_out(p: LoginProfile) -> dict[str, Any]:
    return {"UserName": p.user_name, "CreateDate": p.created, "PasswordResetRequired": p.reset_required}


def _audit(ctx: CallContext, kind: str, user: str, **fields: Any) -> None:
    ctx.audit.event(kind, verdict="allow", principal=ctx.principal.arn, source_ip=ctx.source_ip, iam_user=user,
                    request_id=ctx.request_id, **fields)


async def _new_hash(ctx: CallContext, password: str, current: LoginProfile | None) -> tuple[str, tuple[str, ...]]:
    """The new password's hash and the history kept beside it, once the policy allows it."""
    policy = store(ctx).password_policy()
    passwords.check_policy(policy, password, account_names(ctx))
    if current is not None:
        await asyncio.to_thread(passwords.check_reuse, policy, password, (current.password_hash, *current.previous_hashes))
    new_hash = await asyncio.to_thread(passwords.hash_password, password)
    previous = passwords.history(policy, new_hash, current.password_hash if current else None,
                                 current.previous_hashes if current else ())
    return new_hash, previous


async def create_login_profile(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    user = authorized(ctx, "user", _user_name(ctx, args), "iam:CreateLoginProfile")
    if "Password" not in args:
        raise ApiError("ValidationError", "Password is required to create a login profile.")
    if store(ctx).get(user.name) is not None:
        raise ApiError("EntityAlreadyExists", f"Login Profile for user {user.name} already exists.", 409)
    password_hash, _ = await _new_hash(ctx, args["Password"], None)
    profile = LoginProfile(user.name, password_hash, (), ctx.now, ctx.now, bool(args.get("PasswordResetRequired", False)))
    try:
        store(ctx).add(profile)
    except Conflict:
        raise ApiError("EntityAlreadyExists", f"Login Profile for user {user.name} already exists.", 409) from None
    _audit(ctx, "iam.login_profile_created", user.name, reset_required=profile.reset_required)
    return {"LoginProfile": _profile_out(profile)}


def get_login_profile(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    user = authorized(ctx, "user", _user_name(ctx, args), "iam:GetLoginProfile")
    profile = store(ctx).get(user.name)
    if profile is None:
        raise no_profile(user.name)
    return {"LoginProfile": _profile_out(profile)}


async def update_login_profile(ctx: CallContext, args: dict[str, Any]) -> None:
    user = authorized(ctx, "user", _user_name(ctx, args), "iam:UpdateLoginProfile")
    profile = store(ctx).get(user.name)
    if profile is None:
        raise no_profile(user.name)
    reset = bool(args["PasswordResetRequired"]) if "PasswordResetRequired" in args else profile.reset_required
    if "Password" in args:
        password_hash, previous = await _new_hash(ctx, args["Password"], profile)
        store(ctx).set_password(user.name, password_hash, previous, ctx.now, reset)
    else:
        store(ctx).set_reset_required(user.name, reset)
    _audit(ctx, "iam.login_profile_updated", user.name, password_changed="Password" in args, reset_required=reset)


def delete_login_profile(ctx: CallContext, args: dict[str, Any]) -> None:
    user = authorized(ctx, "user", _user_name(ctx, args), "iam:DeleteLoginProfile")
    if not store(ctx).delete(user.name):
        raise no_profile(user.name)
    _audit(ctx, "iam.login_profile_deleted", user.name)


async def change_password(ctx: CallContext, args: dict[str, Any]) -> None:
    """An IAM user's own password: allowed by the account's ``AllowUsersToChangePassword`` or by
    ``iam:ChangePassword`` on the user itself (IAM User Guide, "Permitting IAM users to change
    their own passwords")."""
    if ctx.principal.kind != "user":
        raise ApiError("InvalidUserType", "Only IAM users can change their own password.", 400)
    policy = store(ctx).password_policy()
    if not (policy or {}).get("AllowUsersToChangePassword"):
        authorized(ctx, "user", ctx.principal.name, "iam:ChangePassword")
    profile = store(ctx).get(ctx.principal.name)
    if profile is None:
        raise no_profile(ctx.principal.name)
    if not await asyncio.to_thread(passwords.verify_password, profile.password_hash, args["OldPassword"]):
        ctx.audit.event("iam.password_change_refused", verdict="deny", principal=ctx.principal.arn, source_ip=ctx.source_ip,
                        reason="the old password is wrong", request_id=ctx.request_id)
        raise ApiError("AccessDenied", "The old password is incorrect.", 403)
    password_hash, previous = await _new_hash(ctx, args["NewPassword"], profile)
    store(ctx).set_password(profile.user_name, password_hash, previous, ctx.now, False)
    _audit(ctx, "iam.password_changed", profile.user_name)


# --- the account's password policy -----------------------------------------------------------------


def update_account_password_policy(ctx: CallContext, args: dict[str, Any]) -> None:
    ctx.authorize("iam:UpdateAccountPasswordPolicy", "*")
    policy = {k: args.get(k, default) for k, default in passwords.POLICY_DEFAULTS.items()}
    store(ctx).set_password_policy(policy)
    _audit(ctx, "iam.password_policy_updated", None, **{k: v for k, v in policy.items()})


def get_account_password_policy(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    ctx.authorize("iam:GetAccountPasswordPolicy", "*")
    policy = store(ctx).password_policy()
    if policy is None:
        raise ApiError("NoSuchEntity", f"The Password Policy with domain name {ctx.account_id} cannot be found.", 404)
    return {"PasswordPolicy": passwords.policy_out(policy)}


def delete_account_password_policy(ctx: CallContext, args: dict[str, Any]) -> None:
    ctx.authorize("iam:DeleteAccountPasswordPolicy", "*")
    if not store(ctx).delete_password_policy():
        raise ApiError("NoSuchEntity", f"The account policy with name {ctx.account_id} cannot be found.", 404)
    _audit(ctx, "iam.password_policy_deleted", None)


# --- the account alias -------------------------------------------------------------------------------


def create_account_alias(ctx: CallContext, args: dict[str, Any]) -> None:
    ctx.authorize("iam:CreateAccountAlias", "*")
    alias = args["AccountAlias"]
    if not _ALIAS.fullmatch(alias) or alias.isdigit():
        raise ApiError("ValidationError", f"1 validation error detected: Value '{alias}' at 'accountAlias' failed to satisfy constraint: "
                       "Member must satisfy regular expression pattern: ^[a-z0-9]([a-z0-9]|-(?!-)){1,61}[a-z0-9]$")
    ctx.catalog.set_meta(ALIAS_KEY, alias)  # an account has one alias: a new one replaces it
    _audit(ctx, "iam.account_alias_set", None, alias=alias)


def list_account_aliases(ctx: CallContext, args: dict[str, Any]) -> dict[str, Any]:
    ctx.authorize("iam:ListAccountAliases", "*")
    alias = ctx.catalog.get_meta(ALIAS_KEY)
    return {"AccountAliases": [alias] if alias else [], "IsTruncated": False}


def delete_account_alias(ctx: CallContext, args: dict[str, Any]) -> None:
    ctx.authorize("iam:DeleteAccountAlias", "*")
    if ctx.catalog.get_meta(ALIAS_KEY) != args["AccountAlias"]:
        raise ApiError("NoSuchEntity", f"The account alias {args['AccountAlias']} cannot be found.", 404)
    ctx.catalog.set_meta(ALIAS_KEY, "")  # empty: no alias
    _audit(ctx, "iam.account_alias_deleted", None, alias=args["AccountAlias"])


HANDLERS = {
    "CreateLoginProfile": create_login_profile,
    "GetLoginProfile": get_login_profile,
    "UpdateLoginProfile": update_login_profile,
    "DeleteLoginProfile": delete_login_profile,
    "ChangePassword": change_password,
    "UpdateAccountPasswordPolicy": update_account_password_policy,
    "GetAccountPasswordPolicy": get_account_password_policy,
    "DeleteAccountPasswordPolicy": delete_account_password_policy,
    "CreateAccountAlias": create_account_alias,
    "ListAccountAliases": list_account_aliases,
    "DeleteAccountAlias": delete_account_alias,
}
