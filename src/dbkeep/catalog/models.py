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


@dataclass(frozen=True)
class Cluster:
    identifier: str
    resource_id: str
    engine: str  # "aurora-mysql" | "aurora-postgresql"
    engine_version: str
    status: str
    port: int
    master_username: str
    database_name: str | None
    parameter_group: str
    security_group_ids: tuple[str, ...]
    iam_auth: bool
    deletion_protection: bool
    applied_parameters: dict = field(compare=False)
    status_message: str | None
    created: dt.datetime
    tags: tuple[tuple[str, str], ...] = ()
    owner: str | None = None  # the node name of the host that runs it (a shared catalog); None: one host


@dataclass(frozen=True)
class Instance:
    identifier: str
    resource_id: str
    cluster_identifier: str
    instance_class: str
    status: str
    is_writer: bool
    created: dt.datetime
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ParameterGroup:
    name: str
    family: str
    description: str
    is_default: bool
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SecurityGroup:
    group_id: str
    group_name: str
    vpc_id: str
    description: str
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class IngressRule:
    rule_id: str
    group_id: str
    ip_protocol: str  # "tcp" | "-1" | ...
    from_port: int | None
    to_port: int | None
    cidr: str
    description: str | None = None
