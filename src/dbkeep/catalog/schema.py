"""The catalog schema, SQLAlchemy Core, portable between SQLite and PostgreSQL.

Tables are grouped by the migration that introduced them (``catalog/migrations.py`` creates them
in order). No SQLite-only SQL: every statement goes through SQLAlchemy Core so a shared
PostgreSQL catalog (``--catalog-url``) works with the same schema.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# --- IAM (migration 1) ----------------------------------------------------------------------

iam_users = Table(
    "iam_users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("user_id", String(32), nullable=False, unique=True),
    Column("path", String(512), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("tags", Text, nullable=False, default="[]"),
)

iam_groups = Table(
    "iam_groups",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("group_id", String(32), nullable=False, unique=True),
    Column("path", String(512), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
)

iam_group_members = Table(
    "iam_group_members",
    metadata,
    Column("group_name", String(128), ForeignKey("iam_groups.name"), primary_key=True),
    Column("user_name", String(64), ForeignKey("iam_users.name"), primary_key=True),
)

iam_roles = Table(
    "iam_roles",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role_id", String(32), nullable=False, unique=True),
    Column("path", String(512), nullable=False),
    Column("trust_policy", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("max_session_duration", Integer, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("tags", Text, nullable=False, default="[]"),
)

# owner_kind is "user", "group" or "role".
iam_inline_policies = Table(
    "iam_inline_policies",
    metadata,
    Column("owner_kind", String(8), primary_key=True),
    Column("owner_name", String(128), primary_key=True),
    Column("policy_name", String(128), primary_key=True),
    Column("document", Text, nullable=False),
)

iam_managed_policies = Table(
    "iam_managed_policies",
    metadata,
    Column("arn", String(2048), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("policy_id", String(32), nullable=False, unique=True),
    Column("path", String(512), nullable=False),
    Column("document", Text, nullable=False),
    Column("description", Text, nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

iam_policy_attachments = Table(
    "iam_policy_attachments",
    metadata,
    Column("owner_kind", String(8), primary_key=True),
    Column("owner_name", String(128), primary_key=True),
    Column("policy_arn", String(2048), ForeignKey("iam_managed_policies.arn"), primary_key=True),
)

# Access keys of the root account ("root"), IAM users ("user") and role sessions ("session").
# The secret is encrypted at rest (catalog/secrets.py); a session's token is kept as a hash.
access_keys = Table(
    "access_keys",
    metadata,
    Column("access_key_id", String(32), primary_key=True),
    Column("secret_enc", LargeBinary, nullable=False),
    Column("owner_kind", String(8), nullable=False),
    Column("owner_name", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("session_token_hash", String(64), nullable=True),
    Column("session_name", String(64), nullable=True),
    Column("expires", DateTime(timezone=True), nullable=True),
    Column("last_used", DateTime(timezone=True), nullable=True),
)

# --- RDS and EC2 (migration 2) ---------------------------------------------------------------

security_groups = Table(
    "security_groups",
    metadata,
    Column("group_id", String(32), primary_key=True),
    Column("group_name", String(255), nullable=False),
    Column("vpc_id", String(32), nullable=False),
    Column("description", String(255), nullable=False),
    Column("tags", Text, nullable=False, default="[]"),
    UniqueConstraint("vpc_id", "group_name"),
)

security_group_rules = Table(
    "security_group_rules",
    metadata,
    Column("rule_id", String(32), primary_key=True),
    Column("group_id", String(32), ForeignKey("security_groups.group_id"), nullable=False),
    Column("ip_protocol", String(8), nullable=False),
    Column("from_port", Integer, nullable=True),
    Column("to_port", Integer, nullable=True),
    Column("cidr", String(64), nullable=False),
    Column("description", String(255), nullable=True),
    UniqueConstraint("group_id", "ip_protocol", "from_port", "to_port", "cidr"),
)

parameter_groups = Table(
    "parameter_groups",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("family", String(64), nullable=False),
    Column("description", String(255), nullable=False),
    Column("is_default", Boolean, nullable=False, default=False),
    Column("tags", Text, nullable=False, default="[]"),
)

# Only values that differ from the engine default are stored ("Source: user").
parameter_values = Table(
    "parameter_values",
    metadata,
    Column("group_name", String(255), ForeignKey("parameter_groups.name"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("value", Text, nullable=False),
    Column("apply_method", String(16), nullable=False),
)

clusters = Table(
    "clusters",
    metadata,
    Column("identifier", String(63), primary_key=True),
    Column("resource_id", String(40), nullable=False, unique=True),
    Column("engine", String(32), nullable=False),
    Column("engine_version", String(32), nullable=False),
    Column("status", String(40), nullable=False),
    Column("port", Integer, nullable=False),
    Column("master_username", String(63), nullable=False),
    Column("database_name", String(64), nullable=True),
    Column("parameter_group", String(255), nullable=False),
    Column("security_group_ids", Text, nullable=False, default="[]"),
    Column("iam_auth", Boolean, nullable=False, default=False),
    Column("deletion_protection", Boolean, nullable=False, default=False),
    # The parameter values the running engine was started with (JSON), to tell in-sync from
    # pending-reboot.
    Column("applied_parameters", Text, nullable=False, default="{}"),
    Column("status_message", Text, nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("tags", Text, nullable=False, default="[]"),
    # the node name of the host that runs the cluster's engine (migration 5; None: one host)
    Column("owner", String(63), nullable=True),
)

instances = Table(
    "instances",
    metadata,
    Column("identifier", String(63), primary_key=True),
    Column("resource_id", String(40), nullable=False, unique=True),
    Column("cluster_identifier", String(63), ForeignKey("clusters.identifier"), nullable=False),
    Column("instance_class", String(32), nullable=False),
    Column("status", String(40), nullable=False),
    Column("is_writer", Boolean, nullable=False),
    Column("parameter_status", String(32), nullable=False, default="in-sync"),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("tags", Text, nullable=False, default="[]"),
)

# RDS events (DescribeEvents): what happened to a cluster, an instance or a parameter group, kept
# for 14 days as on RDS. The source's ARN is made when read (account and region are the API's).
events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False, index=True),
    Column("source_type", String(40), nullable=False),
    Column("source_identifier", String(255), nullable=False),
    Column("message", Text, nullable=False),
    Column("categories", Text, nullable=False, default="[]"),
)

# --- console sign-in (migration 4) ----------------------------------------------------------------

# An IAM user's console password (IAM "login profile"): only its hash (argon2id, PHC string), the
# hashes of the passwords before it for the account's PasswordReusePrevention, and when it was set
# for MaxPasswordAge. The account's password policy is a JSON document in ``meta``.
iam_login_profiles = Table(
    "iam_login_profiles",
    metadata,
    Column("user_name", String(64), ForeignKey("iam_users.name"), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("previous_hashes", Text, nullable=False, default="[]"),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("password_set", DateTime(timezone=True), nullable=False),
    Column("reset_required", Boolean, nullable=False, default=False),
    Column("last_used", DateTime(timezone=True), nullable=True),
)

# --- several hosts on one PostgreSQL catalog (migration 5) --------------------------------------

# Every ``dbkeep up`` on a shared catalog: what it stands for and its heartbeat, written with the
# catalog's own clock (``now()``) so that hosts' clocks never need to agree.
hosts = Table(
    "hosts",
    metadata,
    Column("node_name", String(63), primary_key=True),
    Column("hostname", String(253), nullable=False),  # written into its clusters' endpoints
    Column("api_address", String(300), nullable=False),
    Column("zone", String(40), nullable=False),
    Column("state_id", String(64), nullable=False),  # the state dir it runs on (DIR/node-id)
    Column("started", DateTime(timezone=True), nullable=False),
    Column("heartbeat", DateTime(timezone=True), nullable=True),  # None: stopped cleanly
)

# Engine work for a cluster asked of one host and done by its owner (rds/remote.py). The
# arguments are sealed (they may hold a master password).
work = Table(
    "work",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("owner", String(63), nullable=False, index=True),
    Column("cluster_identifier", String(63), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("args_enc", LargeBinary, nullable=False),
    Column("asked_by", String(63), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
)

# Counters bumped by triggers (PostgreSQL) when what a cache holds changes on any host: "iam"
# (access keys, users, groups, roles, policies).
catalog_changes = Table(
    "catalog_changes",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("version", Integer, nullable=False),
)
