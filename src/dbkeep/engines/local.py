"""The local-process engine driver: MariaDB and PostgreSQL processes on this host.

:class:`LocalDriver` implements :class:`~dbkeep.engines.driver.EngineDriver` by routing each
cluster to :class:`~dbkeep.engines.mariadb.MariaDB` or :class:`~dbkeep.engines.postgres.Postgres`
(by ``spec.engine``, or, for calls that only name a cluster, by its ``cluster.json``). The
processes run under the caller's :class:`~dbkeep.engines.supervisor.Supervisor`::

    async with Supervisor() as sup:
        driver = LocalDriver(state_dir, sup)
        await driver.provision(spec, password)
        await driver.start(spec)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dbkeep.engines import confine
from dbkeep.engines.base import LocalEngine
from dbkeep.engines.driver import MYSQL, POSTGRES, EngineSpec, EngineState, EngineStatus
from dbkeep.engines.layout import ClusterLayout, check_cluster_id
from dbkeep.engines.mariadb import MariaDB, MariaDBBinaries
from dbkeep.engines.osuser import EngineUser, engine_user
from dbkeep.engines.postgres import Postgres, PostgresBinaries
from dbkeep.engines.supervisor import Supervisor
from dbkeep.errors import EngineError


class LocalDriver:
    def __init__(self, state_dir: Path | str, supervisor: Supervisor, *, user: EngineUser | None = None,
                 mariadb: MariaDBBinaries | None = None, postgres: PostgresBinaries | None = None,
                 ready_timeout: float = 60.0, tool_timeout: float = 300.0, query_timeout: float = 60.0,
                 on_repair: Callable[[str, str], None] | None = None,
                 confinement: confine.Support | None = None) -> None:
        self.state_dir = Path(state_dir).absolute()
        self.supervisor = supervisor
        self.user = user or engine_user()
        # whether engine processes run under Landlock (confine.py); probed once
        self.confinement = confinement or confine.probe()
        common = dict(user=self.user, ready_timeout=ready_timeout, tool_timeout=tool_timeout,
                      query_timeout=query_timeout, on_repair=on_repair, confinement=self.confinement)
        self.mariadb = MariaDB(self.state_dir, supervisor, binaries=mariadb, **common)
        self.postgres = Postgres(self.state_dir, supervisor, binaries=postgres, **common)
        self._engines: dict[str, LocalEngine] = {MYSQL: self.mariadb, POSTGRES: self.postgres}
        self._known: dict[str, str] = {}

    def for_engine(self, engine: str) -> LocalEngine:
        return self._engines[engine]

    def _for_spec(self, spec: EngineSpec) -> LocalEngine:
        self._known[spec.cluster_id] = spec.engine
        return self._engines[spec.engine]

    def _for_cluster(self, cluster_id: str) -> LocalEngine | None:
        engine = self._known.get(cluster_id)
        if engine is None:
            engine = ClusterLayout(self.state_dir, check_cluster_id(cluster_id)).read_meta().get("engine")
            if engine not in self._engines:
                return None
            self._known[cluster_id] = engine
        return self._engines[engine]

    def _need(self, cluster_id: str) -> LocalEngine:
        engine = self._for_cluster(cluster_id)
        if engine is None:
            raise EngineError(f"no engine for cluster {cluster_id}")
        return engine

    # --- EngineDriver -------------------------------------------------------------------------
    async def provision(self, spec: EngineSpec, master_password: str) -> None:
        await self._for_spec(spec).provision(spec, master_password)

    async def start(self, spec: EngineSpec) -> None:
        await self._for_spec(spec).start(spec)

    async def stop(self, cluster_id: str) -> None:
        engine = self._for_cluster(cluster_id)
        if engine is not None:
            await engine.stop(cluster_id)
        else:
            await self.supervisor.stop(cluster_id)

    async def destroy(self, cluster_id: str) -> None:
        engine = self._for_cluster(cluster_id)
        if engine is not None:
            await engine.destroy(cluster_id)
        else:
            await self.supervisor.stop(cluster_id)
            self.supervisor.forget(cluster_id)
            ClusterLayout(self.state_dir, check_cluster_id(cluster_id)).remove()
        self._known.pop(cluster_id, None)

    def socket_path(self, cluster_id: str) -> str:
        return self._need(cluster_id).socket_path(cluster_id)

    def status(self, cluster_id: str) -> EngineStatus:
        engine = self._for_cluster(cluster_id)
        return engine.status(cluster_id) if engine else EngineStatus(EngineState.STOPPED)

    async def run_as_rdsadmin(self, cluster_id: str, sql: str, params: Sequence[Any] = (), *,
                              database: str | None = None) -> list[tuple]:
        """``database``: the PostgreSQL database to connect to (default ``postgres``) / the
        MariaDB default schema."""
        return await self._need(cluster_id).run_as_rdsadmin(cluster_id, sql, params, database=database)

    async def apply_dynamic_settings(self, spec: EngineSpec, settings: Mapping[str, str]) -> None:
        await self._for_spec(spec).apply_dynamic_settings(spec, settings)

    async def reset_master(self, spec: EngineSpec, password: str) -> None:
        await self._for_spec(spec).reset_master(spec, password)

    async def set_iam_auth(self, spec: EngineSpec) -> None:
        await self._for_spec(spec).set_iam_auth(spec)
