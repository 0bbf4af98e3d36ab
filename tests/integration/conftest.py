"""Integration fixtures: ONE MariaDB and ONE PostgreSQL cluster for the whole session.

The engines run under a :class:`Supervisor` inside an asyncio event loop of their own, on a
background thread for the session (the same shape as ``dbkeep up``: one loop owns the engines);
tests drive the driver with ``engines.run(coro)`` and talk to the engines with ordinary
synchronous clients (pymysql, psycopg) over the engines' unix sockets, as the master user would
through the gateway. The state directory is made like ``mktemp -d`` (root-owned, 0700). A failed
test gets the tail of every engine log attached to its report.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from dbkeep.engines import settings as engine_settings
from dbkeep.engines.driver import EngineSpec
from dbkeep.engines.local import LocalDriver
from dbkeep.engines.supervisor import Supervisor

T = TypeVar("T")

MYSQL_BIN = "/usr/sbin/mariadbd"
PG_BIN = "/usr/lib/postgresql/15/bin/postgres"
MASTER_PASSWORD = "Initial-Pa55word!"

_STATE: dict[str, Path] = {}


def pytest_collection_modifyitems(config, items):
    missing = [b for b in (MYSQL_BIN, PG_BIN) if not os.path.exists(b)]
    if not missing:
        return
    skip = pytest.mark.skip(reason=f"engine binaries missing: {', '.join(missing)}")
    for item in items:
        if "engines" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    state = _STATE.get("dir")
    if rep.failed and state is not None and state.exists():
        for log in sorted(state.glob("clusters/*/log/*.log")):
            try:
                tail = log.read_text(errors="replace").splitlines()[-40:]
            except OSError:
                continue
            rep.sections.append((f"engine log {log.relative_to(state)}", "\n".join(tail)))


class EngineHarness:
    """A Supervisor + LocalDriver living in an event loop on a background thread."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.loop = asyncio.new_event_loop()
        self._ready: Future = Future()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="engines", daemon=True)
        self.driver: LocalDriver | None = None
        self.supervisor: Supervisor | None = None

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        finally:
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with Supervisor(ready_timeout=60, stop_grace=20, backoff_initial=0.2, backoff_max=2,
                                  stable_after=5) as sup:
                self.supervisor = sup
                self.driver = LocalDriver(self.state_dir, sup, ready_timeout=60, query_timeout=30)
                self._ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def start(self) -> None:
        self._thread.start()
        self._ready.result(timeout=30)

    def close(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=90)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=timeout)


@dataclass
class Cluster:
    spec: EngineSpec
    password: str
    socket: str
    run_dir: str
    engines: EngineHarness

    def run(self, coro, timeout: float = 120):
        return self.engines.run(coro, timeout)

    def rdsadmin(self, sql: str, params=()) -> list[tuple]:
        return self.run(self.engines.driver.run_as_rdsadmin(self.spec.cluster_id, sql, params))

    def reset(self, password: str) -> None:
        self.run(self.engines.driver.reset_master(self.spec, password))

    def status(self):
        return self.engines.driver.status(self.spec.cluster_id)

    @property
    def layout(self):
        return self.engines.driver.for_engine(self.spec.engine).layout(self.spec.cluster_id)

    @property
    def user(self):
        """The OS user this cluster's engine runs as."""
        return self.engines.driver.for_engine(self.spec.engine).user_of(self.layout)


@pytest.fixture(scope="session")
def engines():
    state = Path(tempfile.mkdtemp(prefix="dbk."))      # root-owned 0700, as `mktemp -d` makes
    _STATE["dir"] = state
    harness = EngineHarness(state)
    harness.start()
    try:
        yield harness
    finally:
        harness.close()
        shutil.rmtree(state, ignore_errors=True)


def _cluster(engines: EngineHarness, spec: EngineSpec) -> Cluster:
    driver = engines.driver
    engines.run(driver.provision(spec, MASTER_PASSWORD), timeout=180)
    engines.run(driver.start(spec))
    sock = driver.socket_path(spec.cluster_id)
    return Cluster(spec, MASTER_PASSWORD, sock, os.path.dirname(sock), engines)


@pytest.fixture(scope="session")
def mysql_cluster(engines):
    # Every setting at its default, as the parameter-group layer passes them.
    spec = EngineSpec("cluster-MYSQL0INTEGRATION000000000", "mysql", "admin", "appdb",
                      engine_settings.defaults("mysql"))
    cluster = _cluster(engines, spec)
    yield cluster
    engines.run(engines.driver.destroy(spec.cluster_id))


@pytest.fixture(scope="session")
def pg_cluster(engines):
    spec = EngineSpec("cluster-PGSQL0INTEGRATION000000000", "postgres", "pgadmin", "appdb",
                      engine_settings.defaults("postgres"))
    cluster = _cluster(engines, spec)
    yield cluster
    engines.run(engines.driver.destroy(spec.cluster_id))
