"""Catalog access for console sign-in: IAM login profiles and the account's password policy.

A login profile keeps only password hashes (``identity/passwords.py`` makes them); the password
policy is one JSON document in ``meta`` (absent: the account has no custom policy).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, insert, select, update

from dbkeep.catalog import schema
from dbkeep.catalog.store import Catalog, _utc

POLICY_KEY = "iam_password_policy"


@dataclass(frozen=True)
class LoginProfile:
    user_name: str
    password_hash: str = field(repr=False)
    previous_hashes: tuple[str, ...] = field(repr=False)
    created: dt.datetime
    password_set: dt.datetime
    reset_required: bool
    last_used: dt.datetime | None = None


def _profile(r: Any) -> LoginProfile:
    return LoginProfile(r.user_name, r.password_hash, tuple(json.loads(r.previous_hashes or "[]")), _utc(r.created),
                        _utc(r.password_set), bool(r.reset_required), _utc(r.last_used))


class LoginStore:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def get(self, user_name: str) -> LoginProfile | None:
        t = schema.iam_login_profiles
        with self.catalog.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.user_name == user_name)).first()
        return _profile(row) if row else None

    def add(self, profile: LoginProfile) -> None:
        """Raises ``Conflict`` when the user has one already."""
        with self.catalog.tx() as conn:
            conn.execute(insert(schema.iam_login_profiles).values(
                user_name=profile.user_name, password_hash=profile.password_hash,
                previous_hashes=json.dumps(list(profile.previous_hashes)), created=profile.created,
                password_set=profile.password_set, reset_required=profile.reset_required))

    def set_password(self, user_name: str, password_hash: str, previous: tuple[str, ...], when: dt.datetime,
                     reset_required: bool) -> bool:
        t = schema.iam_login_profiles
        with self.catalog.tx() as conn:
            return conn.execute(update(t).where(t.c.user_name == user_name).values(
                password_hash=password_hash, previous_hashes=json.dumps(list(previous)), password_set=when,
                reset_required=reset_required)).rowcount == 1

    def set_reset_required(self, user_name: str, required: bool) -> bool:
        t = schema.iam_login_profiles
        with self.catalog.tx() as conn:
            return conn.execute(update(t).where(t.c.user_name == user_name).values(reset_required=required)).rowcount == 1

    def set_hash(self, user_name: str, password_hash: str) -> None:
        """A rehash of the same password (stronger parameters): nothing else changes."""
        t = schema.iam_login_profiles
        with self.catalog.tx() as conn:
            conn.execute(update(t).where(t.c.user_name == user_name).values(password_hash=password_hash))

    def mark_used(self, user_name: str, when: dt.datetime) -> None:
        t = schema.iam_login_profiles
        with self.catalog.tx() as conn:
            conn.execute(update(t).where(t.c.user_name == user_name).values(last_used=when))

    def delete(self, user_name: str) -> bool:
        t = schema.iam_login_profiles
        with self.catalog.tx() as conn:
            return conn.execute(delete(t).where(t.c.user_name == user_name)).rowcount == 1

    # --- the account's password policy ---------------------------------------------------------

    def password_policy(self) -> dict[str, Any] | None:
        text = self.catalog.get_meta(POLICY_KEY)
        return json.loads(text) if text else None

    def set_password_policy(self, policy: dict[str, Any]) -> None:
        self.catalog.set_meta(POLICY_KEY, json.dumps(policy, sort_keys=True))

    def delete_password_policy(self) -> bool:
        t = schema.meta
        with self.catalog.tx() as conn:
            return conn.execute(delete(t).where(t.c.key == POLICY_KEY)).rowcount == 1
