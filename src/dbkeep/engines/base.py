"""What the two local-process engines share: layout, locking, the supervisor, settings checks.

Each subclass supplies the engine-specific parts: making a data directory, writing its config
files, the supervised process (command line and readiness probe), the bootstrap, rdsadmin
queries, live settings and the master reset.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dbkeep.engines import confine, iam
from dbkeep.engines import settings as engine_settings
from dbkeep.engines.driver import EngineSpec, EngineStatus
from dbkeep.engines.layout import ClusterLayout, check_cluster_id
from dbkeep.engines.osuser import EngineUser, cluster_user, engine_user, remove_cluster_user
from dbkeep.engines.supervisor import Supervisable, Supervisor
from dbkeep.errors import ConfigError, EngineError

log = logging.getLogger("dbkeep.engines")

_SUN_PATH_MAX = 107
# Accounts and roles dbkeep or the engines own: a master of that name would be dbkeep's hand.
_RESERVED_MASTER_NAMES = frozenset({
    "rdsadmin", "mariadb.sys", "public", "none", "current_user", "session_user", "current_role",
    "rds_superuser_role", "rds_superuser", "rds_password", "rds_replication", "rds_iam", "rds_ad",
})
_CONF_VALUE_RE = re.compile(r"^[A-Za-z0-9_+\-:./, ]*$")


class LocalEngine:
    engine: str = ""
    label: str = ""

    def __init__(self, state_dir: Path | str, supervisor: Supervisor, *, user: EngineUser | None = None,
                 ready_timeout: float = 60.0, tool_timeout: float = 300.0,
                 query_timeout: float = 60.0, on_repair: Callable[[str, str], None] | None = None,
                 confinement: confine.Support | None = None) -> None:
        self.state_dir = Path(state_dir).absolute()
        # Landlock, when the kernel has it: every engine process is confined to its cluster
        self.confinement = confinement or confine.probe()
        self.supervisor = supervisor
        self.user = user or engine_user()  # the engines' shared identity; each cluster has its own user_of()
        self._users: dict[str, EngineUser] = {}
        # (cluster id, what) for each repair dbkeep makes on its own: an audit event in `dbkeep up`
        self.on_repair = on_repair
        self.ready_timeout = ready_timeout
        self.tool_timeout = tool_timeout
        self.query_timeout = query_timeout
        self._locks: dict[str, asyncio.Lock] = {}

    # --- helpers ----------------------------------------------------------------------------
    def layout(self, cluster_id: str) -> ClusterLayout:
        return ClusterLayout(self.state_dir, check_cluster_id(cluster_id))

    def user_of(self, layout: ClusterLayout) -> EngineUser:
        """The cluster's engine user, made the first time (blocking: call it off the loop first)."""
        user = self._users.get(layout.cluster_id)
        if user is None:
            user = cluster_user(self.user, layout.root)
            assert user is not None
            self._users[layout.cluster_id] = user
        return user

    def confine_rules(self, layout: ClusterLayout) -> list[tuple[str, str]]:
        """What an engine process of this cluster may reach (confine.py): the system's programs,
        libraries and a few files, its data, run (socket, pid file, temporary files) and log
        directories read-write, its configuration read-only. Not the cluster directory itself
        (rdsadmin.secret, cluster.json), not the rest of the state directory."""
        d = iam.iam_dir(layout)  # IAM logins: the proof key, the PAM module, one-time nonces
        return [*confine.SYSTEM_RULES, ("--rw", str(layout.data)), ("--rw", str(layout.run)),
                ("--rw", str(layout.log)), ("--ro", str(layout.conf)), ("--ro", str(d / "proof.key")),
                ("--ro", str(d / iam.PAM_MODULE)), ("--rw", str(d / "nonces"))]

    def command(self, layout: ClusterLayout, argv: Sequence[str], *, switch_user: bool = True) -> list[str]:
        """``argv`` as an engine process of this cluster: confined (when the kernel allows), then
        as the cluster's OS user (unless ``switch_user`` is false: tools dbkeep runs as itself)."""
        prefix = confine.command(self.confine_rules(layout)) if self.confinement.available else []
        user = self.user_of(layout).command_prefix() if switch_user else []
        return [*prefix, *user, *argv]

    def _lock(self, cluster_id: str) -> asyncio.Lock:
        return self._locks.setdefault(cluster_id, asyncio.Lock())

    def _name(self, cluster_id: str) -> str:
        return f"{self.label} {cluster_id}"

    def _check_spec(self, spec: EngineSpec) -> None:
        if spec.engine != self.engine:
            raise EngineError(f"cluster {spec.cluster_id} is a {spec.engine} cluster, not {self.engine}")
        name = spec.master_username
        if not name or name.lower() in _RESERVED_MASTER_NAMES or name.lower().startswith("pg_"):
            raise ConfigError(f"{name!r} cannot be the master user name: it is reserved by the engine or dbkeep")
        self._checked_settings(spec.settings)

    def _checked_settings(self, values: Mapping[str, str]) -> dict[str, tuple[engine_settings.EngineSetting, str]]:
        """name → (setting, normalised value). Values were validated upstream; they are checked
        again here because a value never reaches a config file or a SET unless it is plain."""
        out = {}
        for name, value in values.items():
            try:
                setting = engine_settings.lookup(self.engine, name)
                value = setting.validate(str(value))
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            if not _CONF_VALUE_RE.match(value):
                raise ConfigError(f"value of {setting.name} contains characters not allowed in a config file")
            out[setting.name] = (setting, value)
        return out

    def _check_socket_len(self, cluster_id: str) -> None:
        path = self.socket_path(cluster_id)
        if len(os.fsencode(path)) > _SUN_PATH_MAX:
            raise EngineError(f"unix socket path {path} is longer than {_SUN_PATH_MAX} bytes: "
                              "use a shorter state directory")

    def _bootstrapped(self, layout: ClusterLayout) -> dict[str, Any]:
        meta = layout.read_meta()
        if not meta.get("bootstrapped"):
            raise EngineError(f"cluster {layout.cluster_id} has not been provisioned")
        if meta.get("engine") != self.engine:
            raise EngineError(f"cluster {layout.cluster_id} holds a {meta.get('engine')} engine, not {self.engine}")
        return meta

    # --- EngineDriver -----------------------------------------------------------------------
    async def provision(self, spec: EngineSpec, master_password: str) -> None:
        self._check_spec(spec)
        layout = self.layout(spec.cluster_id)
        async with self._lock(spec.cluster_id):
            meta = layout.read_meta() if layout.exists() else {}
            if meta.get("bootstrapped"):
                if meta.get("engine") != self.engine:
                    raise EngineError(f"cluster {spec.cluster_id} already holds a {meta.get('engine')} engine")
                return
            await self.supervisor.stop(spec.cluster_id)
            self.supervisor.forget(spec.cluster_id)
            layout.ensure_root()
            user = await asyncio.to_thread(self.user_of, layout)
            layout.create(user, self.user)
            self._check_socket_len(spec.cluster_id)
            if any(layout.data.iterdir()):
                log.warning("%s: removing a half-made data directory", self._name(spec.cluster_id))
                layout.wipe_data(user)
            layout.update_meta(engine=self.engine, master_username=spec.master_username,
                               database_name=spec.database_name, bootstrapped=False)
            log.info("%s: initialising the data directory", self._name(spec.cluster_id))
            await self._init_data(layout, spec)
            self._write_config(layout, {}, bootstrap=True)
            await self.supervisor.start(spec.cluster_id, self._process(layout, bootstrap=True),
                                        ready_timeout=self.ready_timeout)
            try:
                extra = await self._bootstrap(layout, spec, master_password)
            finally:
                await self.supervisor.stop(spec.cluster_id)
                self.supervisor.forget(spec.cluster_id)
            layout.update_meta(bootstrapped=True, **(extra or {}))
            log.info("%s: provisioned", self._name(spec.cluster_id))

    async def start(self, spec: EngineSpec) -> None:
        self._check_spec(spec)
        layout = self.layout(spec.cluster_id)
        async with self._lock(spec.cluster_id):
            self._bootstrapped(layout)
            layout.ensure_root()
            user = await asyncio.to_thread(self.user_of, layout)
            layout.create(user, self.user)     # directories and traversal may have been changed by hand
            self._check_socket_len(spec.cluster_id)
            iam.record(layout, spec.iam_auth)
            running = self.supervisor.is_active(spec.cluster_id)
            # a new MariaDB key at every start: connection ids start again (native/aws_iam_auth.c)
            iam.ensure_files(layout, user, new_key=self.rotates_iam_key and not running)
            if running:
                return
            self._write_config(layout, spec.settings)
            await self.supervisor.start(spec.cluster_id, self._process(layout, bootstrap=False),
                                        ready_timeout=self.ready_timeout)
            try:
                await self._after_start(layout, spec)
            except BaseException:
                await self.supervisor.stop(spec.cluster_id)  # fail closed: not up unchecked
                raise

    async def stop(self, cluster_id: str) -> None:
        async with self._lock(cluster_id):
            await self.supervisor.stop(cluster_id)

    async def destroy(self, cluster_id: str) -> None:
        layout = self.layout(cluster_id)
        async with self._lock(cluster_id):
            await self.supervisor.stop(cluster_id)
            self.supervisor.forget(cluster_id)
            iam.remove_pam_service(layout)
            await asyncio.to_thread(layout.remove)
            self._users.pop(cluster_id, None)
            user = await asyncio.to_thread(cluster_user, self.user, layout.root, create=False)
            if user is not None and user.uid != self.user.uid:
                await asyncio.to_thread(remove_cluster_user, user)
        self._locks.pop(cluster_id, None)

    def status(self, cluster_id: str) -> EngineStatus:
        return self.supervisor.status(cluster_id)

    async def apply_dynamic_settings(self, spec: EngineSpec, settings: Mapping[str, str]) -> None:
        self._check_spec(spec)
        checked = self._checked_settings(settings)
        static = [n for n, (s, _v) in checked.items() if not s.is_dynamic]
        if static:
            raise ConfigError(f"static setting(s) {', '.join(static)} apply at the next start, not now")
        layout = self.layout(spec.cluster_id)
        self._bootstrapped(layout)
        merged = {**spec.settings, **{n: v for n, (_s, v) in checked.items()}}
        self._write_config(layout, merged)       # persists them for restarts
        await self._apply_live(layout, checked)

    async def set_iam_auth(self, spec: EngineSpec) -> None:
        """Record the IAM state for every later start and apply it now if the engine runs."""
        self._check_spec(spec)
        layout = self.layout(spec.cluster_id)
        async with self._lock(spec.cluster_id):
            self._bootstrapped(layout)
            user = await asyncio.to_thread(self.user_of, layout)
            iam.record(layout, spec.iam_auth)
            iam.ensure_files(layout, user)
            await self._apply_iam(layout, spec, running=self.supervisor.is_active(spec.cluster_id))
        log.info("%s: IAM database authentication %s", self._name(spec.cluster_id),
                 "enabled" if spec.iam_auth else "disabled")

    # a proof bound to a connection id that the engine counts again from 1 after a restart
    rotates_iam_key = False

    # --- engine-specific --------------------------------------------------------------------
    def socket_path(self, cluster_id: str) -> str:
        raise NotImplementedError

    async def _apply_iam(self, layout: ClusterLayout, spec: EngineSpec, *, running: bool) -> None:
        raise NotImplementedError

    async def _init_data(self, layout: ClusterLayout, spec: EngineSpec) -> None:
        raise NotImplementedError

    def _repaired(self, cluster_id: str, what: str) -> None:
        log.warning("%s: repaired: %s", self._name(cluster_id), what)
        if self.on_repair is not None:
            self.on_repair(cluster_id, what)

    async def _after_start(self, layout: ClusterLayout, spec: EngineSpec) -> None:
        """Checks and repairs through rdsadmin once the engine is up (a failure stops it again)."""

    def _write_config(self, layout: ClusterLayout, values: Mapping[str, str], *, bootstrap: bool = False) -> None:
        raise NotImplementedError

    def _process(self, layout: ClusterLayout, *, bootstrap: bool) -> Supervisable:
        raise NotImplementedError

    async def _bootstrap(self, layout: ClusterLayout, spec: EngineSpec, master_password: str) -> dict | None:
        raise NotImplementedError

    async def _apply_live(self, layout: ClusterLayout,
                          checked: Mapping[str, tuple[engine_settings.EngineSetting, str]]) -> None:
        raise NotImplementedError

    async def run_as_rdsadmin(self, cluster_id: str, sql: str, params: Sequence[Any] = (), *,
                              database: str | None = None) -> list[tuple]:
        raise NotImplementedError

    async def reset_master(self, spec: EngineSpec, password: str) -> None:
        raise NotImplementedError
