"""Console passwords of IAM users: hashing and the account's password policy.

Hashes are argon2id PHC strings (``argon2-cffi``, its default parameters: RFC 9106's second
recommended set, about 50 ms and 64 MiB), so a leaked catalog gives no password cheaply.
Hashing and verifying cost that much CPU: callers on the event loop run them in a thread.

The policy follows IAM's ``UpdateAccountPasswordPolicy`` (IAM User Guide, "Set an account
password policy for IAM users"). Without a custom policy, IAM's default applies: at least 8
characters and three of the four character types (upper case, lower case, digits, symbols), and
not the account's name (here: its id or alias). Symbols are IAM's list ``! @ # $ % ^ & * ( ) _
+ - = [ ] { } | '``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from dbkeep.errors import ApiError

SYMBOLS = set("!@#$%^&*()_+-=[]{}|'")
_HASHER = PasswordHasher()

# The fields of IAM's PasswordPolicy (botocore shape) with UpdateAccountPasswordPolicy's defaults.
POLICY_DEFAULTS: dict[str, Any] = {
    "MinimumPasswordLength": 6,
    "RequireSymbols": False,
    "RequireNumbers": False,
    "RequireUppercaseCharacters": False,
    "RequireLowercaseCharacters": False,
    "AllowUsersToChangePassword": False,
    "MaxPasswordAge": 0,
    "PasswordReusePrevention": 0,
    "HardExpiry": False,
}
DEFAULT_MINIMUM = 8  # IAM's default policy, when the account has no custom one


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)


# A hash to verify against when there is no profile, so that an unknown user costs the same time
# as a wrong password (no user enumeration by timing).
DECOY_HASH = _HASHER.hash("dbkeep decoy password, never valid")


def violation(message: str) -> ApiError:
    return ApiError("PasswordPolicyViolation", message, 400)


def _classes(password: str) -> dict[str, bool]:
    return {
        "uppercase letter": any("A" <= c <= "Z" for c in password),
        "lowercase letter": any("a" <= c <= "z" for c in password),
        "number": any("0" <= c <= "9" for c in password),
        "symbol": any(c in SYMBOLS for c in password),
    }


def check_policy(policy: dict[str, Any] | None, password: str, account_names: tuple[str, ...]) -> None:
    """Raise ``PasswordPolicyViolation`` with every rule the password breaks."""
    broken: list[str] = []
    classes = _classes(password)
    if policy is None:
        if len(password) < DEFAULT_MINIMUM:
            broken.append(f"have a minimum length of {DEFAULT_MINIMUM}")
        if sum(classes.values()) < 3:
            broken.append("contain three of: uppercase letters, lowercase letters, numbers, symbols")
        if password in account_names:
            broken.append("differ from the account's id and alias")
    else:
        if len(password) < policy["MinimumPasswordLength"]:
            broken.append(f"have a minimum length of {policy['MinimumPasswordLength']}")
        for field_name, kind in (("RequireUppercaseCharacters", "uppercase letter"), ("RequireLowercaseCharacters", "lowercase letter"),
                                 ("RequireNumbers", "number"), ("RequireSymbols", "symbol")):
            if policy.get(field_name) and not classes[kind]:
                broken.append(f"have at least one {kind}")
    if broken:
        raise violation("Password does not conform to the account password policy: it should " + "; ".join(broken) + ".")


def check_reuse(policy: dict[str, Any] | None, password: str, hashes: tuple[str, ...]) -> None:
    """``hashes``: the current password's hash first, then older ones."""
    keep = (policy or {}).get("PasswordReusePrevention", 0)
    if keep and any(verify_password(h, password) for h in hashes[:keep]):
        raise violation(f"Password does not conform to the account password policy: it should differ from the last {keep} passwords.")


def history(policy: dict[str, Any] | None, new_hash: str, current: str | None, previous: tuple[str, ...]) -> tuple[str, ...]:
    """The hashes kept beside ``new_hash`` for PasswordReusePrevention (at most 24, IAM's limit)."""
    keep = (policy or {}).get("PasswordReusePrevention", 0)
    older = ((current,) if current else ()) + previous
    return older[: max(keep - 1, 0)]


def expired(policy: dict[str, Any] | None, password_set: dt.datetime, now: dt.datetime) -> bool:
    age = (policy or {}).get("MaxPasswordAge", 0)
    return bool(age) and now >= password_set + dt.timedelta(days=age)


def policy_out(policy: dict[str, Any]) -> dict[str, Any]:
    """The PasswordPolicy shape of GetAccountPasswordPolicy (``ExpirePasswords`` derived)."""
    out = dict(policy)
    out["ExpirePasswords"] = bool(policy.get("MaxPasswordAge"))
    if not policy.get("MaxPasswordAge"):
        out.pop("MaxPasswordAge", None)
    if not policy.get("PasswordReusePrevention"):
        out.pop("PasswordReusePrevention", None)
    return out
