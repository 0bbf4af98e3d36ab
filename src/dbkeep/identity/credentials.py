"""Who is calling: access keys, temporary credentials and the principal they stand for.

Identifiers follow AWS's shapes so that tools which look at them (the CLI, SDK credential
chains) see what they expect: long-term keys ``AKIA…``, temporary keys ``ASIA…``, unique ids
``AIDA…`` (users), ``AROA…`` (roles), ``AGPA…`` (groups), ``ANPA…`` (managed policies), secrets of
40 characters. Randomness comes from ``secrets``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import secrets
from dataclasses import dataclass, field

from dbkeep.catalog.store import Catalog, token_hash
from dbkeep.clock import Clock
from dbkeep.errors import ApiError
from dbkeep.identity import sigv4

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _random_chars(n: int, alphabet: str = _B32) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def new_access_key_id(temporary: bool = False) -> str:
    return ("ASIA" if temporary else "AKIA") + _random_chars(16)


def new_secret_access_key() -> str:
    return base64.b64encode(secrets.token_bytes(30)).decode()


def new_session_token() -> str:
    return base64.b64encode(secrets.token_bytes(96)).decode()


def new_unique_id(prefix: str) -> str:
    return prefix + _random_chars(17)


def new_account_id() -> str:
    return str(secrets.randbelow(9 * 10**11) + 10**11)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    kind: str  # "root" | "user" | "assumed-role"
    arn: str
    account_id: str
    name: str  # user name, role name, or "root"
    user_id: str  # aws:userid — account id (root), AIDA… (user), AROA…:session (role session)
    access_key_id: str = field(repr=False)
    session_name: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    path: str = "/"  # the IAM path of the user or of the session's role (in aws:PrincipalArn)

    @property
    def is_root(self) -> bool:
        return self.kind == "root"


def identity_policy_texts(catalog: Catalog, principal: Principal) -> list[str]:
    """The stored documents of every identity-based policy that applies to the principal: a
    user's inline and attached ones and its groups'; an assumed role's; none for the root."""
    texts: list[str] = []
    if principal.kind == "user":
        texts += [doc for _, doc in catalog.list_inline_policies("user", principal.name)]
        texts += [p.document for p in catalog.attached_policies("user", principal.name)]
        for group in catalog.groups_for_user(principal.name):
            texts += [doc for _, doc in catalog.list_inline_policies("group", group)]
            texts += [p.document for p in catalog.attached_policies("group", group)]
    elif principal.kind == "assumed-role":
        texts += [doc for _, doc in catalog.list_inline_policies("role", principal.name)]
        texts += [p.document for p in catalog.attached_policies("role", principal.name)]
    return texts


def expired_token() -> ApiError:
    return ApiError("ExpiredToken", "The security token included in the request is expired", 403)


class Authenticator:
    """Verifies a request's SigV4 signature against the catalog and names the principal."""

    def __init__(self, catalog: Catalog, clock: Clock, account_id: str) -> None:
        self._catalog = catalog
        self._clock = clock
        self._account_id = account_id

    def authenticate(self, request: sigv4.HttpRequest) -> tuple[Principal, sigv4.Signature]:
        sig = sigv4.parse_authorization(request)
        now = self._clock.now()
        key = self._catalog.get_access_key(sig.access_key_id)
        if key is None or key.status != "Active":
            raise sigv4.invalid_key()
        if key.owner_kind == "session":
            if sig.security_token is None or key.session_token_hash is None:
                raise sigv4.invalid_key()
            if not hmac.compare_digest(token_hash(sig.security_token), key.session_token_hash):
                raise sigv4.invalid_key()
            if key.expires is None or now >= key.expires:
                raise expired_token()
        elif sig.security_token is not None:
            raise sigv4.invalid_key()
        sigv4.verify(request, sig, key.secret, now)
        return self.principal_for(key.owner_kind, key.owner_name, key.access_key_id, key.session_name), sig

    def principal_for(self, kind: str, name: str, access_key_id: str, session_name: str | None = None) -> Principal:
        acct = self._account_id
        if kind == "root":
            return Principal("root", f"arn:aws:iam::{acct}:root", acct, "root", acct, access_key_id)
        if kind == "user":
            user = self._catalog.get_user(name)
            if user is None:
                raise sigv4.invalid_key()
            return Principal(
                "user", f"arn:aws:iam::{acct}:user{user.path}{user.name}", acct, user.name, user.user_id, access_key_id, tags=user.tags,
                path=user.path,
            )
        role = self._catalog.get_role(name)
        if role is None:
            raise sigv4.invalid_key()
        return Principal(
            "assumed-role",
            f"arn:aws:sts::{acct}:assumed-role/{role.name}/{session_name}",
            acct,
            role.name,
            f"{role.role_id}:{session_name}",
            access_key_id,
            session_name=session_name,
            tags=role.tags,
            path=role.path,
        )


def now_utc(clock: Clock) -> dt.datetime:
    return clock.now().astimezone(dt.timezone.utc)
