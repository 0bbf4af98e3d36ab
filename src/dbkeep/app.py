"""Composition root: builds every component of ``dbkeep up`` and owns their lifetimes.

One process, one event loop (uvloop): the management API, the gateway listeners and the engine
supervisor run as tasks of one TaskGroup; SIGINT/SIGTERM end it and every component is closed in
reverse order of creation. Nothing imports this module.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbkeep.api.dispatch import Dispatcher
from dbkeep.api.http import ApiServer
from dbkeep.api.services import ec2, iam, rds, sts
from dbkeep.catalog.models import ParameterGroup
from dbkeep.catalog.rds import RdsStore
from dbkeep.engines import confine
from dbkeep.engines.driver import EngineState
from dbkeep.engines.local import LocalDriver
from dbkeep.engines.supervisor import Supervisor
from dbkeep.gateway.iam import IamLogin
from dbkeep.metrics import Metrics
from dbkeep.gateway.listener import Gateway, GatewayContext, Limits
from dbkeep.gateway.offload import Offload
from dbkeep.gateway.offload import available as offload_available
from dbkeep.gateway.drivers import SESSIONS, postgres_inspect
from dbkeep.gateway.target import TargetResolver
from dbkeep.pki.store import PkiStore
from dbkeep.rds import names
from dbkeep.rds.clusters import ClusterManager
from dbkeep.audit.log import AuditLog
from dbkeep.catalog.secrets import SecretBox
from dbkeep.catalog.store import Catalog
from dbkeep.clock import Clock, default_clock
from dbkeep.config import Config
from dbkeep.identity.credentials import Authenticator, new_access_key_id, new_account_id, new_secret_access_key
from dbkeep.identity.dbauth import TokenVerifier
from dbkeep.statedir import StateLock, ensure_state_dir, export_lines, prepare_catalog_file, private_umask, write_aws_files

log = logging.getLogger("dbkeep")


@dataclass
class Services:
    """What API handlers may reach beyond the catalog (filled as components start)."""

    config: Config
    clock: Clock
    clusters: ClusterManager | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def ensure_defaults(store: RdsStore) -> None:
    """The default parameter groups and the default VPC's security group exist from first start."""
    for family in names.FAMILIES:
        name = f"default.{family}"
        if store.get_parameter_group(name) is None:
            store.add_parameter_group(ParameterGroup(name, family, f"Default cluster parameter group for {family}", True))
    ec2.ensure_default_group(store)


def open_catalog(config: Config) -> Catalog:
    box = SecretBox.load_or_create(config.state_dir / "catalog.key")
    if config.catalog_url is None:  # the SQLite file in the state dir: 0600 before SQLite makes it
        prepare_catalog_file(Path(config.resolved_catalog_url.removeprefix("sqlite:///")))
    return Catalog.open(config.resolved_catalog_url, box)


def ensure_account(catalog: Catalog, clock: Clock) -> tuple[str, str, str]:
    """The account id and its root access key, created on first start."""
    account_id = catalog.get_meta("account_id")
    if account_id is None:
        account_id = new_account_id()
        catalog.set_meta("account_id", account_id)
    root_keys = catalog.list_access_keys("root", "root")
    if root_keys:
        key = root_keys[0]
        return account_id, key.access_key_id, key.secret
    key_id, secret = new_access_key_id(), new_secret_access_key()
    catalog.add_access_key(None, access_key_id=key_id, secret=secret, owner_kind="root", owner_name="root", created=clock.now())
    return account_id, key_id, secret


class App:
    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or default_clock()
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    def request_stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        # every file dbkeep (or SQLite) creates from here on is private to dbkeep's user: the
        # engines' OS users can traverse the state directory (statedir.py)
        with private_umask():
            await self._run()

    async def _run(self) -> None:
        config = self.config
        state_dir = ensure_state_dir(config.state_dir)
        lock = StateLock(state_dir)
        lock.acquire()
        catalog = open_catalog(config)
        audit = AuditLog(state_dir / "audit.log", self.clock, max_bytes=config.audit_max_bytes, keep=config.audit_keep)
        try:
            account_id, root_key_id, root_secret = ensure_account(catalog, self.clock)
            store = RdsStore(catalog)
            ensure_defaults(store)
            pki = PkiStore(state_dir, self.clock)
            await asyncio.to_thread(pki.ensure_ca)
            async with Supervisor() as supervisor, asyncio.TaskGroup() as tasks:
                def engine_repaired(resource_id: str, what: str) -> None:
                    cluster = store.cluster_by_resource_id(resource_id)
                    audit.event("engine.repaired", verdict="allow", cluster=cluster.identifier if cluster else None,
                                cluster_resource_id=resource_id, reason=what)
                    clusters.engine_repaired(resource_id, what)  # and an RDS event (DescribeEvents)

                driver = LocalDriver(state_dir, supervisor, on_repair=engine_repaired)
                record_confinement(driver.confinement, catalog, audit)
                services = Services(config=config, clock=self.clock)
                clusters = ClusterManager(store, driver, audit, self.clock, lambda coro: self._spawn(tasks, coro), config.host,
                                          max_connections=config.max_connections)
                services.clusters = clusters
                supervisor.on_restart = clusters.engine_restarted

                def socket_path(resource_id: str, engine: str) -> str:
                    return driver.for_engine(engine).socket_path(resource_id)

                # IAM database logins (gateway/iam.py): the sessions find it in ctx.extra["iam"]
                iam_login = IamLogin(TokenVerifier(catalog, self.clock, account_id, config.region), state_dir)

                def gateway_context(gw: Gateway) -> GatewayContext:
                    resolver = TargetResolver(store, gw.cert_paths, clusters.effective_parameters, socket_path, config.hostname)
                    limits = Limits(handshake_timeout=config.handshake_timeout, first_byte_timeout=config.first_byte_timeout,
                                    max_connections=config.max_connections, max_pending_logins=config.max_pending_logins,
                                    refusal_log_interval=config.refusal_log_interval)
                    # the grant-table checks of privileged MariaDB sessions (gateway/drivers/mysql_inspect.py)
                    mariadb = driver.mariadb
                    return GatewayContext(resolver=resolver, audit=audit, clock=self.clock, limits=limits,
                                          offload=start_offload(config.relay_threads), extra={"iam": iam_login},
                                          mysql_hygiene=mariadb.live_hygiene, mysql_account_facts=mariadb.account_facts,
                                          mysql_routines=mariadb.routines,
                                          postgres_inspector=postgres_inspect.master_sessions)

                gateway = Gateway(config.host, config.hostname, store, pki, gateway_context, SESSIONS)
                clusters.listeners.append(lambda _ident: gateway.sync())
                dispatcher = Dispatcher(
                    catalog,
                    audit,
                    self.clock,
                    Authenticator(catalog, self.clock, account_id),
                    {"iam": iam.HANDLERS, "sts": sts.HANDLERS, "rds": rds.HANDLERS, "ec2": ec2.HANDLERS},
                    services,
                )
                await clusters.recover()
                await gateway.sync()
                metrics = Metrics()
                audit.observers.append(metrics.observe)

                def live_state():  # read when /metrics is scraped
                    for cluster in store.list_clusters():
                        status = driver.status(cluster.resource_id)
                        yield (cluster.identifier, status.state is EngineState.RUNNING, status.restart_count,
                               gateway.ctx.connections.get(cluster.identifier, 0))

                metrics.watch(live_state)
                token = config.metrics_token_file.read_text().strip() if config.metrics_token_file else None
                api = ApiServer(dispatcher, config.host, config.api_port, metrics=metrics, metrics_token=token)
                port = await api.start()
                host = f"[{config.host}]" if ":" in config.host else config.host
                endpoint = f"http://{host}:{port}"
                write_aws_files(state_dir, root_key_id, root_secret, config.region, endpoint)
                # everything loaded so far (botocore models, SQLAlchemy metadata, the catalog's
                # caches) lives as long as the process: keep it out of every garbage collection
                gc.collect()
                gc.freeze()
                print(f"dbkeep ready: API {endpoint} (account {account_id}, state dir {state_dir})", flush=True)
                for line in export_lines(state_dir):
                    print(line, flush=True)
                try:
                    await self._stop.wait()
                finally:
                    log.info("shutting down")
                    await api.stop()
                    await gateway.close()
                    for task in list(self._tasks):
                        task.cancel()
        finally:
            audit.close()
            catalog.close()
            lock.release()

    def _spawn(self, tasks: asyncio.TaskGroup, coro: Any) -> None:
        """Run a background operation in the app's TaskGroup; its failure is logged, not fatal."""

        async def guarded() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background operation failed")

        task = tasks.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def record_confinement(support: confine.Support, catalog: Catalog, audit: AuditLog) -> None:
    """Say once whether engines run confined (Landlock): the log (a warning when not), an audit
    event, and the catalog's meta, where ``dbkeep status`` reads it."""
    if support.available:
        log.info("engine processes are confined to their cluster directories (Landlock ABI %d)", support.abi)
    else:
        log.warning("engine processes are NOT confined to their cluster directories: %s; an engine that "
                    "is made to write or read files reaches whatever its OS user may", support.reason)
    audit.event("engine.confinement", verdict="allow", mechanism="landlock", confined=support.available,
                abi=support.abi or None, reason=support.reason or None)
    catalog.set_meta(confine.META_KEY, support.describe())


def start_offload(threads: int) -> Offload | None:
    """The gateway's native relay threads on the running loop; None when asked for none or not built."""
    if threads == 0:
        return None
    built, why = offload_available()
    if not built:
        log.warning("logged-in sessions are relayed in the event loop: %s", why)
        return None
    offload = Offload(threads)
    offload.start(asyncio.get_running_loop())
    return offload


def run_foreground(config: Config) -> int:
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:  # pragma: no cover - uvloop is a dependency; stay usable without it
        runner = asyncio.Runner()
    app = App(config)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, app.request_stop)
        await app.run()

    with runner:
        runner.run(main())
    return 0


def state_dir_of(path: str | None) -> Path:
    from dbkeep.config import default_state_dir

    return Path(path).expanduser().absolute() if path else default_state_dir()


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use the dbkeep command")
