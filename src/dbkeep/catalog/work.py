"""The durable work queue between hosts sharing a PostgreSQL catalog.

A host that serves an API call for a cluster another host owns writes the cluster's new status
(the call's own transition, as on one host) and a work row for the owner; the owner claims its
rows with ``SELECT … FOR UPDATE SKIP LOCKED`` and deletes them in the same transaction, then
runs the work (rds/remote.py). The insert sends ``NOTIFY dbkeep_work, '<owner>'`` in its
transaction, so the owner hears of it when it commits; a slow poll is the safety net for a lost
notification. A row waits for an owner that is down until it is back. Arguments are sealed with
the catalog's key: they may hold a master password.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, text

from dbkeep.catalog import schema
from dbkeep.catalog.store import Catalog, _utc

CHANNEL = "dbkeep_work"


@dataclass(frozen=True)
class Work:
    id: int
    cluster_identifier: str
    kind: str
    args: dict[str, Any]
    asked_by: str
    created: dt.datetime


class WorkQueue:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def submit(self, owner: str, cluster_identifier: str, kind: str, args: dict[str, Any], *, asked_by: str,
               now: dt.datetime) -> None:
        with self.catalog.tx() as conn:
            conn.execute(insert(schema.work).values(
                owner=owner, cluster_identifier=cluster_identifier, kind=kind,
                args_enc=self.catalog._box.seal(json.dumps(args)), asked_by=asked_by, created=now))
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_notify(:channel, :owner)"), {"channel": CHANNEL, "owner": owner})

    def claim(self, owner: str, limit: int = 20) -> list[Work]:
        """Take (and remove) up to ``limit`` of ``owner``'s rows, oldest first."""
        t = schema.work
        query = select(t).where(t.c.owner == owner).order_by(t.c.id).limit(limit)
        with self.catalog.tx() as conn:
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).all()
            if rows:
                conn.execute(delete(t).where(t.c.id.in_([r.id for r in rows])))
        return [Work(r.id, r.cluster_identifier, r.kind, json.loads(self.catalog._box.open(r.args_enc)), r.asked_by,
                     _utc(r.created)) for r in rows]

    def pending(self, cluster_identifier: str) -> int:
        t = schema.work
        with self.catalog.engine.connect() as conn:
            return len(conn.execute(select(t.c.id).where(t.c.cluster_identifier == cluster_identifier)).all())
