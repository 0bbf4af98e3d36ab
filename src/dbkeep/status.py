"""``dbkeep status``: is a dbkeep running on this state dir, where is its API, what clusters does it hold.

Reads only: the lock file (held by a running ``dbkeep up``), ``DIR/config`` and the catalog's
cluster rows and meta (whether ``dbkeep up`` could confine its engines: a WARNING line when it
could not). It never opens secrets.
"""

from __future__ import annotations

import configparser
import fcntl
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, select

from dbkeep.catalog import schema
from dbkeep.engines import confine


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


def describe(state_dir: Path) -> tuple[str, bool]:
    if not (state_dir / "credentials").exists():
        return f"no dbkeep state in {state_dir}", False
    pid = _running_pid(state_dir)
    config = configparser.ConfigParser()
    config.read(state_dir / "config")
    endpoint = config.get("default", "endpoint_url", fallback="?")
    lines = [f"dbkeep {'running (pid ' + str(pid) + ')' if pid else 'stopped'}; API {endpoint}; state dir {state_dir}"]
    catalog = state_dir / "catalog.sqlite3"
    if catalog.exists():
        uri = f"file:{quote(str(catalog))}?mode=ro"   # read-only: status never writes the catalog
        engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))
        try:
            with engine.connect() as conn:
                rows = conn.execute(select(schema.clusters.c.identifier, schema.clusters.c.engine, schema.clusters.c.status,
                                           schema.clusters.c.port).order_by(schema.clusters.c.identifier)).all()
                confinement = conn.execute(select(schema.meta.c.value).where(
                    schema.meta.c.key == confine.META_KEY)).scalar()
        finally:
            engine.dispose()
        if confinement:
            when = "" if pid else " (when it last ran)"
            if confinement.startswith("NOT"):
                lines.append(f"WARNING: engine processes are {confinement}{when}")
            else:
                lines.append(f"engine processes are {confinement}{when}")
        for ident, engine_name, status, port in rows:
            lines.append(f"  {ident:30} {engine_name:18} {status:28} port {port}")
        if not rows:
            lines.append("  no clusters")
    return "\n".join(lines), pid is not None
