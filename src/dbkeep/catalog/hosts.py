"""The hosts sharing a PostgreSQL catalog: who they are and whether they are alive.

Each ``dbkeep up`` on a shared catalog registers a row (its node name, the host name written
into its clusters' endpoints, its API address, the availability zone it stands for) and
refreshes its heartbeat every :data:`HEARTBEAT_SECONDS`. Heartbeats are written and judged with
the catalog's clock (``now()`` / ``CURRENT_TIMESTAMP``), so the hosts' own clocks never need to
agree. A host is alive while its last heartbeat is younger than :data:`DEAD_AFTER_SECONDS`; one
that stops cleanly clears its heartbeat, so the others know at once.

A node name is held by one state dir (``state_id``, kept in ``DIR/node-id``): a second state
dir that claims a live host's name is refused; the same state dir restarted (after a crash)
takes its row back at once.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, insert, select, update

from dbkeep.catalog import schema
from dbkeep.catalog.secrets import write_private_file
from dbkeep.catalog.store import Catalog, _utc
from dbkeep.errors import ConfigError

HEARTBEAT_SECONDS = 2.0
DEAD_AFTER_SECONDS = 10.0


@dataclass(frozen=True)
class Host:
    node_name: str
    hostname: str
    api_address: str
    zone: str
    started: dt.datetime
    heartbeat: dt.datetime | None
    alive: bool


def state_id(state_dir: Path) -> str:
    """This state dir's identity among hosts (made once, 0600)."""
    path = state_dir / "node-id"
    if not path.exists():
        write_private_file(path, secrets.token_hex(16).encode())
    return path.read_text().strip()


class HostDirectory:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.engine = catalog.engine

    def _now(self, conn) -> dt.datetime:  # noqa: ANN001 - a SQLAlchemy Connection
        return _utc(conn.execute(select(func.now())).scalar_one())

    def register(self, node_name: str, *, hostname: str, api_address: str, zone: str, state: str) -> None:
        t = schema.hosts
        with self.catalog.tx() as conn:
            now = self._now(conn)
            row = conn.execute(select(t).where(t.c.node_name == node_name).with_for_update()).first()
            values = dict(hostname=hostname, api_address=api_address, zone=zone, state_id=state, started=now, heartbeat=now)
            if row is None:
                conn.execute(insert(t).values(node_name=node_name, **values))
                return
            if row.state_id != state and self._alive(row.heartbeat, now):
                raise ConfigError(f"--node-name {node_name} is in use by a live dbkeep host (API {row.api_address}, "
                                  "another state dir); give this host another --node-name")
            conn.execute(update(t).where(t.c.node_name == node_name).values(**values))

    def set_api_address(self, node_name: str, api_address: str) -> None:
        t = schema.hosts
        with self.catalog.tx() as conn:
            conn.execute(update(t).where(t.c.node_name == node_name).values(api_address=api_address, heartbeat=func.now()))

    def beat(self, node_name: str) -> None:
        t = schema.hosts
        with self.catalog.tx() as conn:
            conn.execute(update(t).where(t.c.node_name == node_name).values(heartbeat=func.now()))

    def leave(self, node_name: str) -> None:
        """A clean stop: the others see this host gone at once."""
        t = schema.hosts
        with self.catalog.tx() as conn:
            conn.execute(update(t).where(t.c.node_name == node_name).values(heartbeat=None))

    @staticmethod
    def _alive(heartbeat: dt.datetime | None, now: dt.datetime) -> bool:
        return heartbeat is not None and (now - _utc(heartbeat)).total_seconds() < DEAD_AFTER_SECONDS

    def list(self) -> list[Host]:
        t = schema.hosts
        with self.engine.connect() as conn:
            now = self._now(conn)
            rows = conn.execute(select(t).order_by(t.c.zone, t.c.node_name)).all()
        return [Host(r.node_name, r.hostname, r.api_address, r.zone, _utc(r.started), _utc(r.heartbeat),
                     self._alive(r.heartbeat, now)) for r in rows]

    def get(self, node_name: str) -> Host | None:
        return next((h for h in self.list() if h.node_name == node_name), None)

    def cluster_counts(self) -> dict[str, int]:
        c = schema.clusters.c
        with self.engine.connect() as conn:
            return {owner: n for owner, n in conn.execute(select(c.owner, func.count()).group_by(c.owner)) if owner}


def change_counter(catalog: Catalog, name: str) -> Callable[[], int]:
    """A reader of a catalog change counter (``catalog_changes``: "iam"), one primary-key read."""
    t = schema.catalog_changes

    def read() -> int:
        with catalog.engine.connect() as conn:
            return conn.execute(select(t.c.version).where(t.c.name == name)).scalar() or 0

    return read
