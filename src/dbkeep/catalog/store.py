"""The catalog store: every read and write of persistent state goes through here.

SQLAlchemy Core over SQLite (WAL, the embedded default) or PostgreSQL. Writes are short
transactions; a failed API call rolls back, so the catalog never holds half an operation.
Methods return frozen dataclasses from ``catalog/models.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, and_, create_engine, delete, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from dbkeep.catalog import migrations, schema
from dbkeep.catalog.models import AccessKey, Group, ManagedPolicy, Role, User
from dbkeep.catalog.secrets import SecretBox
from dbkeep.errors import CatalogError


class Conflict(CatalogError):
    """A row with the same key exists already."""


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # SQLite returns naive datetimes; everything in dbkeep is UTC-aware.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.timezone.utc)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _tags(text: str | None) -> tuple[tuple[str, str], ...]:
    return tuple((t["Key"], t["Value"]) for t in json.loads(text or "[]"))


def tags_json(tags: Sequence[tuple[str, str]]) -> str:
    return json.dumps([{"Key": k, "Value": v} for k, v in tags])


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        # psycopg 3 is the driver dbkeep ships with; SQLAlchemy's default would be psycopg2.
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return create_engine(url, pool_pre_ping=True)


class Catalog:
    def __init__(self, engine: Engine, box: SecretBox) -> None:
        self.engine = engine
        self._box = box

    @classmethod
    def open(cls, url: str, box: SecretBox) -> "Catalog":
        engine = make_engine(url)
        migrations.migrate(engine)
        return cls(engine, box)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except IntegrityError as exc:
            raise Conflict("a record with this key exists already") from exc

    # --- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.meta.c.value).where(schema.meta.c.key == key)).first()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.tx() as conn:
            done = conn.execute(update(schema.meta).where(schema.meta.c.key == key).values(value=value))
            if done.rowcount == 0:
                conn.execute(insert(schema.meta).values(key=key, value=value))

    # --- access keys ------------------------------------------------------------------------

    def _access_key(self, row: Any) -> AccessKey:
        return AccessKey(
            access_key_id=row.access_key_id,
            secret=self._box.open(row.secret_enc),
            owner_kind=row.owner_kind,
            owner_name=row.owner_name,
            status=row.status,
            created=_utc(row.created),
            session_token_hash=row.session_token_hash,
            session_name=row.session_name,
            expires=_utc(row.expires),
        )

    def add_access_key(
        self,
        conn: Connection | None,
        *,
        access_key_id: str,
        secret: str,
        owner_kind: str,
        owner_name: str,
        created: dt.datetime,
        session_token: str | None = None,
        session_name: str | None = None,
        expires: dt.datetime | None = None,
    ) -> None:
        values = dict(
            access_key_id=access_key_id,
            secret_enc=self._box.seal(secret),
            owner_kind=owner_kind,
            owner_name=owner_name,
            status="Active",
            created=created,
            session_token_hash=token_hash(session_token) if session_token else None,
            session_name=session_name,
            expires=expires,
        )
        if conn is None:
            with self.tx() as c:
                c.execute(insert(schema.access_keys).values(**values))
        else:
            conn.execute(insert(schema.access_keys).values(**values))

    def get_access_key(self, access_key_id: str) -> AccessKey | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(schema.access_keys).where(schema.access_keys.c.access_key_id == access_key_id)
            ).first()
        return self._access_key(row) if row else None

    def list_access_keys(self, owner_kind: str, owner_name: str) -> list[AccessKey]:
        t = schema.access_keys
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t).where(and_(t.c.owner_kind == owner_kind, t.c.owner_name == owner_name)).order_by(t.c.created)
            ).all()
        return [self._access_key(r) for r in rows]

    def set_access_key_status(self, owner_name: str, access_key_id: str, status: str) -> bool:
        t = schema.access_keys
        with self.tx() as conn:
            res = conn.execute(
                update(t)
                .where(and_(t.c.access_key_id == access_key_id, t.c.owner_kind == "user", t.c.owner_name == owner_name))
                .values(status=status)
            )
        return res.rowcount == 1

    def delete_access_key(self, owner_name: str, access_key_id: str) -> bool:
        t = schema.access_keys
        with self.tx() as conn:
            res = conn.execute(
                delete(t).where(
                    and_(t.c.access_key_id == access_key_id, t.c.owner_kind == "user", t.c.owner_name == owner_name)
                )
            )
        return res.rowcount == 1

    def delete_expired_sessions(self, now: dt.datetime) -> int:
        t = schema.access_keys
        with self.tx() as conn:
            res = conn.execute(delete(t).where(and_(t.c.owner_kind == "session", t.c.expires < now)))
        return res.rowcount

    # --- users, groups, roles ---------------------------------------------------------------

    def add_user(self, user: User) -> None:
        with self.tx() as conn:
            conn.execute(
                insert(schema.iam_users).values(
                    name=user.name, user_id=user.user_id, path=user.path, created=user.created, tags=tags_json(user.tags)
                )
            )

    def get_user(self, name: str) -> User | None:
        t = schema.iam_users
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.name == name)).first()
        return User(row.name, row.user_id, row.path, _utc(row.created), _tags(row.tags)) if row else None

    def list_users(self, path_prefix: str = "/") -> list[User]:
        t = schema.iam_users
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.name)).all()
        return [User(r.name, r.user_id, r.path, _utc(r.created), _tags(r.tags)) for r in rows if r.path.startswith(path_prefix)]

    def user_dependents(self, name: str) -> list[str]:
        """What still hangs off a user (AWS refuses DeleteUser with DeleteConflict then)."""
        found = []
        with self.engine.connect() as conn:
            checks = [
                ("access keys", schema.access_keys, and_(schema.access_keys.c.owner_kind == "user", schema.access_keys.c.owner_name == name)),
                ("inline policies", schema.iam_inline_policies, and_(schema.iam_inline_policies.c.owner_kind == "user", schema.iam_inline_policies.c.owner_name == name)),
                ("attached policies", schema.iam_policy_attachments, and_(schema.iam_policy_attachments.c.owner_kind == "user", schema.iam_policy_attachments.c.owner_name == name)),
                ("group memberships", schema.iam_group_members, schema.iam_group_members.c.user_name == name),
                ("login profile", schema.iam_login_profiles, schema.iam_login_profiles.c.user_name == name),
            ]
            for label, table, cond in checks:
                if conn.execute(select(func.count()).select_from(table).where(cond)).scalar_one():
                    found.append(label)
        return found

    def set_user_tags(self, name: str, tags: Sequence[tuple[str, str]]) -> bool:
        t = schema.iam_users
        with self.tx() as conn:
            return conn.execute(update(t).where(t.c.name == name).values(tags=tags_json(tags))).rowcount == 1

    def delete_user(self, name: str) -> bool:
        with self.tx() as conn:
            return conn.execute(delete(schema.iam_users).where(schema.iam_users.c.name == name)).rowcount == 1

    def add_group(self, group: Group) -> None:
        with self.tx() as conn:
            conn.execute(
                insert(schema.iam_groups).values(name=group.name, group_id=group.group_id, path=group.path, created=group.created)
            )

    def get_group(self, name: str) -> Group | None:
        t = schema.iam_groups
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.name == name)).first()
        return Group(row.name, row.group_id, row.path, _utc(row.created)) if row else None

    def list_groups(self) -> list[Group]:
        t = schema.iam_groups
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).order_by(t.c.name)).all()
        return [Group(r.name, r.group_id, r.path, _utc(r.created)) for r in rows]

    def group_members(self, group: str) -> list[str]:
        t = schema.iam_group_members
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(t.c.user_name).where(t.c.group_name == group).order_by(t.c.user_name))]

    def groups_for_user(self, user: str) -> list[str]:
        t = schema.iam_group_members
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(select(t.c.group_name).where(t.c.user_name == user).order_by(t.c.group_name))]

    def add_group_member(self, group: str, user: str) -> None:
        t = schema.iam_group_members
        with self.tx() as conn:
            exists = conn.execute(select(t).where(and_(t.c.group_name == group, t.c.user_name == user))).first()
            if not exists:
                conn.execute(insert(t).values(group_name=group, user_name=user))

    def remove_group_member(self, group: str, user: str) -> bool:
        t = schema.iam_group_members
        with self.tx() as conn:
            return conn.execute(delete(t).where(and_(t.c.group_name == group, t.c.user_name == user))).rowcount == 1

    def group_dependents(self, name: str) -> list[str]:
        found = []
        with self.engine.connect() as conn:
            checks = [
                ("members", schema.iam_group_members, schema.iam_group_members.c.group_name == name),
                ("inline policies", schema.iam_inline_policies, and_(schema.iam_inline_policies.c.owner_kind == "group", schema.iam_inline_policies.c.owner_name == name)),
                ("attached policies", schema.iam_policy_attachments, and_(schema.iam_policy_attachments.c.owner_kind == "group", schema.iam_policy_attachments.c.owner_name == name)),
            ]
            for label, table, cond in checks:
                if conn.execute(select(func.count()).select_from(table).where(cond)).scalar_one():
                    found.append(label)
        return found

    def delete_group(self, name: str) -> bool:
        with self.tx() as conn:
            return conn.execute(delete(schema.iam_groups).where(schema.iam_groups.c.name == name)).rowcount == 1

    def add_role(self, role: Role) -> None:
        with self.tx() as conn:
            conn.execute(
                insert(schema.iam_roles).values(
                    name=role.name,
                    role_id=role.role_id,
                    path=role.path,
                    trust_policy=role.trust_policy,
                    description=role.description,
                    max_session_duration=role.max_session_duration,
                    created=role.created,
                    tags=tags_json(role.tags),
                )
            )

    def _role(self, r: Any) -> Role:
        return Role(r.name, r.role_id, r.path, r.trust_policy, r.description, r.max_session_duration, _utc(r.created), _tags(r.tags))

    def get_role(self, name: str) -> Role | None:
        t = schema.iam_roles
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.name == name)).first()
        return self._role(row) if row else None

    def list_roles(self) -> list[Role]:
        t = schema.iam_roles
        with self.engine.connect() as conn:
            return [self._role(r) for r in conn.execute(select(t).order_by(t.c.name))]

    def role_dependents(self, name: str) -> list[str]:
        found = []
        with self.engine.connect() as conn:
            checks = [
                ("inline policies", schema.iam_inline_policies, and_(schema.iam_inline_policies.c.owner_kind == "role", schema.iam_inline_policies.c.owner_name == name)),
                ("attached policies", schema.iam_policy_attachments, and_(schema.iam_policy_attachments.c.owner_kind == "role", schema.iam_policy_attachments.c.owner_name == name)),
            ]
            for label, table, cond in checks:
                if conn.execute(select(func.count()).select_from(table).where(cond)).scalar_one():
                    found.append(label)
        return found

    def set_role_tags(self, name: str, tags: Sequence[tuple[str, str]]) -> bool:
        t = schema.iam_roles
        with self.tx() as conn:
            return conn.execute(update(t).where(t.c.name == name).values(tags=tags_json(tags))).rowcount == 1

    def delete_role(self, name: str) -> bool:
        with self.tx() as conn:
            conn.execute(
                delete(schema.access_keys).where(
                    and_(schema.access_keys.c.owner_kind == "session", schema.access_keys.c.owner_name == name)
                )
            )
            return conn.execute(delete(schema.iam_roles).where(schema.iam_roles.c.name == name)).rowcount == 1

    # --- inline policies --------------------------------------------------------------------

    def put_inline_policy(self, owner_kind: str, owner_name: str, policy_name: str, document: str) -> None:
        t = schema.iam_inline_policies
        key = and_(t.c.owner_kind == owner_kind, t.c.owner_name == owner_name, t.c.policy_name == policy_name)
        with self.tx() as conn:
            if conn.execute(update(t).where(key).values(document=document)).rowcount == 0:
                conn.execute(insert(t).values(owner_kind=owner_kind, owner_name=owner_name, policy_name=policy_name, document=document))

    def get_inline_policy(self, owner_kind: str, owner_name: str, policy_name: str) -> str | None:
        t = schema.iam_inline_policies
        with self.engine.connect() as conn:
            row = conn.execute(
                select(t.c.document).where(and_(t.c.owner_kind == owner_kind, t.c.owner_name == owner_name, t.c.policy_name == policy_name))
            ).first()
        return row[0] if row else None

    def list_inline_policies(self, owner_kind: str, owner_name: str) -> list[tuple[str, str]]:
        t = schema.iam_inline_policies
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.policy_name, t.c.document)
                .where(and_(t.c.owner_kind == owner_kind, t.c.owner_name == owner_name))
                .order_by(t.c.policy_name)
            ).all()
        return [(r[0], r[1]) for r in rows]

    def delete_inline_policy(self, owner_kind: str, owner_name: str, policy_name: str) -> bool:
        t = schema.iam_inline_policies
        with self.tx() as conn:
            return (
                conn.execute(
                    delete(t).where(and_(t.c.owner_kind == owner_kind, t.c.owner_name == owner_name, t.c.policy_name == policy_name))
                ).rowcount
                == 1
            )

    # --- managed policies -------------------------------------------------------------------

    def add_managed_policy(self, policy: ManagedPolicy) -> None:
        with self.tx() as conn:
            conn.execute(
                insert(schema.iam_managed_policies).values(
                    arn=policy.arn,
                    name=policy.name,
                    policy_id=policy.policy_id,
                    path=policy.path,
                    document=policy.document,
                    description=policy.description,
                    created=policy.created,
                    updated=policy.updated,
                )
            )

    def _policy(self, conn: Connection, r: Any) -> ManagedPolicy:
        a = schema.iam_policy_attachments
        count = conn.execute(select(func.count()).select_from(a).where(a.c.policy_arn == r.arn)).scalar_one()
        return ManagedPolicy(r.arn, r.name, r.policy_id, r.path, r.document, r.description, _utc(r.created), _utc(r.updated), count)

    def get_managed_policy(self, arn: str) -> ManagedPolicy | None:
        t = schema.iam_managed_policies
        with self.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.arn == arn)).first()
            return self._policy(conn, row) if row else None

    def list_managed_policies(self) -> list[ManagedPolicy]:
        t = schema.iam_managed_policies
        with self.engine.connect() as conn:
            return [self._policy(conn, r) for r in conn.execute(select(t).order_by(t.c.name)).all()]

    def delete_managed_policy(self, arn: str) -> bool:
        with self.tx() as conn:
            return conn.execute(delete(schema.iam_managed_policies).where(schema.iam_managed_policies.c.arn == arn)).rowcount == 1

    def attach_policy(self, owner_kind: str, owner_name: str, arn: str) -> None:
        t = schema.iam_policy_attachments
        key = and_(t.c.owner_kind == owner_kind, t.c.owner_name == owner_name, t.c.policy_arn == arn)
        with self.tx() as conn:
            if not conn.execute(select(t).where(key)).first():
                conn.execute(insert(t).values(owner_kind=owner_kind, owner_name=owner_name, policy_arn=arn))

    def detach_policy(self, owner_kind: str, owner_name: str, arn: str) -> bool:
        t = schema.iam_policy_attachments
        with self.tx() as conn:
            return (
                conn.execute(
                    delete(t).where(and_(t.c.owner_kind == owner_kind, t.c.owner_name == owner_name, t.c.policy_arn == arn))
                ).rowcount
                == 1
            )

    def attached_policies(self, owner_kind: str, owner_name: str) -> list[ManagedPolicy]:
        a, p = schema.iam_policy_attachments, schema.iam_managed_policies
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(p)
                .join(a, a.c.policy_arn == p.c.arn)
                .where(and_(a.c.owner_kind == owner_kind, a.c.owner_name == owner_name))
                .order_by(p.c.name)
            ).all()
            return [self._policy(conn, r) for r in rows]
