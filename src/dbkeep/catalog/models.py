"""Catalog records as frozen dataclasses: what the rest of dbkeep reads from the catalog."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass(frozen=True)
class AccessKey:
    access_key_id: str
    secret: str = field(repr=False)
    owner_kind: str  # "root" | "user" | "session"
    owner_name: str  # user name, role name for sessions, "root"
    status: str  # "Active" | "Inactive"
    created: dt.datetime
    session_token_hash: str | None = None
    session_name: str | None = None
    expires: dt.datetime | None = None


@dataclass(frozen=True)
class User:
    name: str
    user_id: str
    path: str
    created: dt.datetime
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Group:
    name: str
    group_id: str
    path: str
    created: dt.datetime


@dataclass(frozen=True)
class Role:
    name: str
    role_id: str
    path: str
    trust_policy: str
    description: str | None
    max_session_duration: int
    created: dt.datetime
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ManagedPolicy:
    arn: str
    name: str
    policy_id: str
    path: str
    document: str
    description: str | None
    created: dt.datetime
    updated: dt.datetime
    attachment_count: int = 0
