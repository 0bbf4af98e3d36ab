"""RDS events in the catalog: recorded by the cluster manager, read by DescribeEvents.

RDS keeps events for 14 days; so does dbkeep (older ones are removed as new ones are written).
The categories and messages are RDS's own ("Reset master credentials.", ``configuration change``),
so scripts written against RDS find what they look for.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, insert, select

from dbkeep.catalog import schema
from dbkeep.catalog.store import Catalog, _utc

RETENTION = dt.timedelta(days=14)
SOURCE_TYPES = ("db-cluster", "db-instance", "db-parameter-group")
# RDS's categories for the sources above (DescribeEventCategories)
CATEGORIES = ("availability", "configuration change", "creation", "deletion", "failover", "failure", "maintenance",
              "notification", "recovery", "restoration")


@dataclass(frozen=True)
class Event:
    id: int
    time: dt.datetime
    source_type: str
    source_identifier: str
    message: str
    categories: tuple[str, ...]


class EventStore:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def record(self, when: dt.datetime, source_type: str, source_identifier: str, message: str,
               categories: Sequence[str]) -> None:
        assert source_type in SOURCE_TYPES and all(c in CATEGORIES for c in categories), (source_type, categories)
        with self.catalog.tx() as conn:
            conn.execute(insert(schema.events).values(time=when, source_type=source_type, source_identifier=source_identifier,
                                                      message=message, categories=json.dumps(list(categories))))
            conn.execute(delete(schema.events).where(schema.events.c.time < when - RETENTION))

    def list(self, *, start: dt.datetime, end: dt.datetime, source_type: str | None = None,
             source_identifier: str | None = None, categories: Sequence[str] = ()) -> list[Event]:
        """Oldest first; ``categories``: an event with any of them."""
        e = schema.events.c
        query = select(schema.events).where(e.time >= start, e.time <= end)
        if source_type is not None:
            query = query.where(e.source_type == source_type)
        if source_identifier is not None:
            query = query.where(e.source_identifier == source_identifier)
        with self.catalog.engine.connect() as conn:
            rows = conn.execute(query.order_by(e.time, e.id)).all()
        out = [Event(r.id, _utc(r.time), r.source_type, r.source_identifier, r.message, tuple(json.loads(r.categories)))
               for r in rows]
        if categories:
            wanted = set(categories)
            out = [ev for ev in out if wanted.intersection(ev.categories)]
        return out
