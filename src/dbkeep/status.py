"""``dbkeep status``: is a dbkeep running on this state dir, where is its API, what clusters does it hold.

Reads only: the lock file (held by a running ``dbkeep up``), ``DIR/config`` and the catalog's
cluster rows and meta (whether ``dbkeep up`` could confine its engines: a WARNING line when it
could not). It never opens secrets. On a shared PostgreSQL catalog (``DIR/catalog-url``, written
by ``dbkeep up``, or ``--catalog-url``) it lists the hosts too: zone, endpoint host name, API,
alive or not (catalog/hosts.py), and which host runs each cluster.
"""

from __future__ import annotations

import configparser
import fcntl
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from dbkeep.catalog import schema
from dbkeep.catalog.hosts import DEAD_AFTER_SECONDS
from dbkeep.catalog.store import _utc
from dbkeep.engines import confine
from dbkeep.errors import DbkeepError


def _running_pid(state_dir: Path) -> int | None:
    lock = state_dir / "lock"
    if not lock.exists():
        return None
    fd = os.open(lock, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.read(fd, 32).decode().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# what a person does next about a cluster in each state that needs them
_NEXT_STEP = {
    "failed": "delete it (aws rds delete-db-cluster --db-cluster-identifier {id} --skip-final-snapshot) and create it again",
    "incompatible-parameters": "fix its parameter group (aws rds describe-db-cluster-parameters), then "
                               "aws rds reboot-db-instance --db-instance-identifier INSTANCE",
}


def _catalog_engine(state_dir: Path, catalog_url: str | None) -> Engine | None:
    """A read-only connection to the catalog ``dbkeep up`` uses on this state dir."""
    if catalog_url is None and (state_dir / "catalog-url").exists():
        catalog_url = (state_dir / "catalog-url").read_text().strip()
    if catalog_url and catalog_url.startswith("postgresql"):
        url = "postgresql+psycopg://" + catalog_url.split("://", 1)[1]
        return create_engine(url, connect_args={"options": "-c default_transaction_read_only=on", "connect_timeout": 10})
    catalog = state_dir / "catalog.sqlite3"
    if not catalog.exists():
        return None
    uri = f"file:{quote(str(catalog))}?mode=ro"   # read-only: status never writes the catalog
    return create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))


def _hosts(conn) -> tuple[list[str], set[str]]:  # noqa: ANN001 - a SQLAlchemy Connection
    """Lines listing the hosts of a shared catalog, and the node names that are alive."""
    h = schema.hosts.c
    now = _utc(conn.execute(select(func.now())).scalar_one())
    rows = conn.execute(select(h.node_name, h.zone, h.hostname, h.api_address, h.heartbeat)
                        .order_by(h.zone, h.node_name)).all()
    alive = {r.node_name for r in rows if r.heartbeat is not None
             and (now - _utc(r.heartbeat)).total_seconds() < DEAD_AFTER_SECONDS}
    lines = [f"  {'HOST':20} {'ZONE':14} {'ALIVE':6} {'ENDPOINT HOST':24} {'API':28} LAST HEARTBEAT"]
    for r in rows:
        beat = f"{_utc(r.heartbeat):%Y-%m-%d %H:%M:%S} UTC" if r.heartbeat else "stopped"
        lines.append(f"  {r.node_name:20} {r.zone:14} {'yes' if r.node_name in alive else 'NO':6} {r.hostname:24} "
                     f"{r.api_address:28} {beat}")
    return lines, alive


def describe(state_dir: Path, catalog_url: str | None = None) -> tuple[str, bool]:
    if not (state_dir / "credentials").exists():
        return f"no dbkeep state in {state_dir}; start one with: dbkeep up --state-dir {state_dir}", False
    pid = _running_pid(state_dir)
    config = configparser.ConfigParser()
    config.read(state_dir / "config")
    endpoint = config.get("default", "endpoint_url", fallback="?")
    lines = [f"dbkeep {'running (pid ' + str(pid) + ')' if pid else 'stopped'}; API {endpoint}; state dir {state_dir}"]
    if not pid:
        lines.append(f"  start it with: dbkeep up --state-dir {state_dir}  (clusters start with it)")
    engine = _catalog_engine(state_dir, catalog_url)
    if engine is not None:
        c, i = schema.clusters.c, schema.instances.c
        shared = engine.dialect.name == "postgresql"
        hosts: list[str] = []
        alive: set[str] = set()
        try:
            with engine.connect() as conn:
                if shared:
                    hosts, alive = _hosts(conn)
                rows = conn.execute(select(c.identifier, c.engine, c.status, c.port, c.iam_auth, c.status_message,
                                           c.owner if shared else c.identifier)
                                    .order_by(c.identifier)).all()
                members = conn.execute(select(i.cluster_identifier, i.identifier, i.instance_class, i.status,
                                              i.parameter_status).order_by(i.identifier)).all()
                confinement = conn.execute(select(schema.meta.c.value).where(
                    schema.meta.c.key == confine.META_KEY)).scalar()
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "unreachable"
            raise DbkeepError(f"cannot read the catalog: {reason}") from None
        finally:
            engine.dispose()
        if confinement:
            when = "" if pid else " (when it last ran)"
            if confinement.startswith("NOT"):
                lines.append(f"WARNING: engine processes are {confinement}{when}")
            else:
                lines.append(f"engine processes are {confinement}{when}")
        if hosts:
            lines.append("hosts sharing the catalog:")
            lines.extend(hosts)
        if rows:
            lines.append(f"  {'CLUSTER':30} {'ENGINE':18} {'STATUS':28} {'PORT':>5}  {'IAM DB AUTH':11}  "
                         + ("HOST  " if shared else "") + "INSTANCES")
        for ident, engine_name, status, port, iam_auth, message, owner in rows:
            host = ""
            if shared:
                host = f"{owner or '-'}  "
                if owner and owner not in alive:
                    status, message = "incompatible-network", f"its host {owner} is not running"  # rds/fleet.py
            own = [m for m in members if m[0] == ident]
            listed = ", ".join(f"{m[1]} ({m[2]}, {m[3]}{', pending-reboot' if m[4] == 'pending-reboot' else ''})"
                               for m in own) or "none (no endpoint until one is created)"
            lines.append(f"  {ident:30} {engine_name:18} {status:28} {port:>5}  {'on' if iam_auth else 'off':11}  {host}{listed}")
            if message and status in _NEXT_STEP:
                lines.append(f"      last error: {message}")
            if status in _NEXT_STEP:
                lines.append("      what to do: " + _NEXT_STEP[status].format(id=ident))
        if not rows:
            lines.append("  no clusters; create one with: aws rds create-db-cluster … (see README)")
    return "\n".join(lines), pid is not None
