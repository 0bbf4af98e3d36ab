"""Versioned catalog migrations.

``meta.schema_version`` records the last migration applied. Each migration runs in its own
transaction; a catalog newer than this code is refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Table, inspect, insert, select, text, update
from sqlalchemy.engine import Engine

from dbkeep.catalog import schema
from dbkeep.errors import CatalogError


def _create(*tables: Table) -> Callable[[Connection], None]:
    def run(conn: Connection) -> None:
        for table in tables:
            table.create(conn, checkfirst=True)

    return run


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (
        1,
        "IAM users, groups, roles, policies and access keys",
        _create(
            schema.iam_users,
            schema.iam_groups,
            schema.iam_group_members,
            schema.iam_roles,
            schema.iam_inline_policies,
            schema.iam_managed_policies,
            schema.iam_policy_attachments,
            schema.access_keys,
        ),
    ),
    (
        2,
        "RDS clusters, instances, parameter groups; EC2 security groups",
        _create(
            schema.security_groups,
            schema.security_group_rules,
            schema.parameter_groups,
            schema.parameter_values,
            schema.clusters,
            schema.instances,
        ),
    ),
    (3, "RDS events", _create(schema.events)),
    (4, "IAM login profiles (console passwords)", _create(schema.iam_login_profiles)),
]


# the tables whose changes invalidate IAM caches on every host (identity/dbauth.py)
IAM_TABLES = ("access_keys", "iam_users", "iam_groups", "iam_group_members", "iam_roles", "iam_inline_policies",
              "iam_managed_policies", "iam_policy_attachments")


def _several_hosts(conn: Connection) -> None:
    for table in (schema.hosts, schema.work, schema.catalog_changes):
        table.create(conn, checkfirst=True)
    if "owner" not in {c["name"] for c in inspect(conn).get_columns("clusters")}:
        conn.execute(text("ALTER TABLE clusters ADD COLUMN owner VARCHAR(63)"))
    conn.execute(insert(schema.catalog_changes).values(name="iam", version=0))
    if conn.dialect.name != "postgresql":
        return  # one host: a commit event in the process invalidates its caches
    conn.execute(text(
        "CREATE OR REPLACE FUNCTION dbkeep_iam_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "UPDATE catalog_changes SET version = version + 1 WHERE name = 'iam'; "
        "PERFORM pg_notify('dbkeep_iam', ''); RETURN NULL; END $$"))
    for table in IAM_TABLES:
        conn.execute(text(f"CREATE TRIGGER dbkeep_iam_changed AFTER INSERT OR UPDATE OR DELETE ON {table} "
                          "FOR EACH STATEMENT EXECUTE FUNCTION dbkeep_iam_changed()"))


MIGRATIONS.append((5, "Several hosts: hosts, cluster owners, the work queue, IAM change counters", _several_hosts))

LATEST = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int:
    row = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == "schema_version")).first()
    return int(row[0]) if row else 0


def migrate(engine: Engine) -> int:
    """Bring the catalog to :data:`LATEST`; returns the version it had before. On PostgreSQL
    an advisory lock makes hosts that start together migrate one after the other."""
    if engine.dialect.name != "postgresql":
        return _migrate(engine)
    with engine.connect() as lock:
        lock.execute(text("SELECT pg_advisory_lock(4242016)"))
        try:
            return _migrate(engine)
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(4242016)"))
            lock.commit()


def _migrate(engine: Engine) -> int:
    with engine.begin() as conn:
        schema.meta.create(conn, checkfirst=True)
        before = current_version(conn)
    if before > LATEST:
        raise CatalogError(f"catalog schema version {before} is newer than this dbkeep ({LATEST})")
    for version, _title, step in MIGRATIONS:
        if version <= before:
            continue
        with engine.begin() as conn:
            step(conn)
            if current_version(conn) == 0:
                conn.execute(insert(schema.meta).values(key="schema_version", value=str(version)))
            else:
                conn.execute(
                    update(schema.meta).where(schema.meta.c.key == "schema_version").values(value=str(version))
                )
    return before
