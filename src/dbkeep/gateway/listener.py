"""Gateway listeners: one TCP listener per cluster endpoint, reconciled with the catalog.

:meth:`Gateway.sync` opens a listener for every cluster that has an instance and is not stopped
or being deleted, issues (or reissues) the cluster's server certificate first, and closes the
listeners of clusters that went away. Each accepted connection gets a protocol-specific session
(``gateway/drivers/mysql.py``, ``gateway/drivers/postgres.py``) built on
``gateway/drivers/session.py``'s ``Session``, which enforces the security groups
(:meth:`GatewayContext.admit`) before a single byte is sent, then the per-source limit on
connections that have not finished logging in (``Limits.max_pending_logins``, at most half the
cluster's limit), before any engine connection is opened. Refusals and timeouts before a login
are counted by :class:`~dbkeep.gateway.refusals.RefusalLog` (a few audit events per source,
whatever the number of connections).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from dbkeep.audit.log import AuditLog
from dbkeep.catalog.rds import RdsStore
from dbkeep.clock import Clock
from dbkeep.gateway import netacl
from dbkeep.gateway.offload import Offload
from dbkeep.gateway.refusals import RefusalLog
from dbkeep.gateway.target import ClusterTarget, TargetResolver, certificate_names
from dbkeep.errors import DbError
from dbkeep.pki.store import CertPaths, PkiStore

log = logging.getLogger("dbkeep.gateway")

# Statuses in which a cluster with an instance has an open endpoint. "creating" and "starting"
# are included because the listener is opened just before the cluster turns "available".
SERVING = ("creating", "available", "modifying", "resetting-master-credentials", "rebooting", "starting", "incompatible-parameters", "backing-up")


@dataclass
class Limits:
    handshake_timeout: float = 10.0  # seconds from accept to a finished login
    # seconds for the client's first byte (MySQL: its first packet after the greeting); at most
    # handshake_timeout
    first_byte_timeout: float = 3.0
    max_packet: int = 64 * 1024 * 1024  # largest logical packet/message accepted from a client
    # per cluster, counted at the gateway; a cluster's own limit (ClusterTarget.max_connections:
    # its instance class, rds/capacity.py) may be lower
    max_connections: int = 1000
    # connections per source (IPv6: per /64) and cluster that have not finished logging in; at
    # most half the cluster's limit
    max_pending_logins: int = 64
    refusal_log_interval: float = 60.0  # seconds between summaries of refusals (gateway/refusals.py)
    engine_connect_timeout: float = 5.0

    @property
    def first_byte_deadline(self) -> float:
        return min(self.first_byte_timeout, self.handshake_timeout)


@dataclass
class GatewayContext:
    """What every session reaches: policy resolution, audit, limits, shared registries."""

    resolver: TargetResolver
    audit: AuditLog
    clock: Clock
    limits: Limits = field(default_factory=Limits)
    connections: dict[str, int] = field(default_factory=dict)  # live sessions per cluster
    # The statement guard (a later issue): called with (session, statement text); returns a
    # DbError to refuse the statement, None to let it pass. None here: every statement passes.
    guard: Callable[[Any, str], DbError | None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # protocol-specific shared state (e.g. cancel keys)
    # The native relay for logged-in, unguarded sessions (gateway/offload.py); None: Python relays all.
    offload: Offload | None = None
    pending: dict[tuple[str, str], int] = field(default_factory=dict)  # (cluster, source) -> not yet logged in
    _refusals: RefusalLog | None = None
    # MariaDB grant-table checks (app.py injects the engine driver's; None: MySQL sessions are
    # not inspected). ``mysql_hygiene(resource_id, engine_thread_or_None)`` takes back every
    # privilege only rdsadmin may hold, once that engine thread is idle; it returns a report with
    # ``repairs`` and ``ended`` (lists of str). ``mysql_account_facts(resource_id, user)`` says
    # whether the account's sessions must be inspected, and the server's global sql_mode.
    mysql_hygiene: Callable[[str, int | None], Awaitable[Any]] | None = None
    mysql_account_facts: Callable[[str, str], Awaitable[tuple[bool, str]]] | None = None
    # ``mysql_routines(resource_id)``: every stored routine as (db, name, type, definer, security, body)
    mysql_routines: Callable[[str], Awaitable[list[tuple[str, str, str, str, str, str]]]] | None = None
    # ``postgres_inspector(session)`` at a PostgreSQL login: the inspector of a session whose
    # statements must be judged (gateway/drivers/postgres_inspect.py), or None; None here: none is.
    postgres_inspector: Callable[[Any], Any] | None = None

    @property
    def refusals(self) -> RefusalLog:
        if self._refusals is None:
            self._refusals = RefusalLog(self.audit, self.clock, self.limits.refusal_log_interval)
        return self._refusals

    def cluster_limit(self, target: ClusterTarget | None) -> int:
        """Client connections the gateway admits to the cluster at once."""
        limit = self.limits.max_connections
        if target is not None and target.max_connections is not None:
            limit = min(limit, target.max_connections)
        return limit

    def pending_limit(self, target: ClusterTarget | None) -> int:
        """Connections per source that have not finished logging in: at most half the cluster's limit."""
        return max(1, min(self.limits.max_pending_logins, self.cluster_limit(target) // 2))

    def admit(self, identifier: str, port: int, peer: tuple[str, int] | None) -> ClusterTarget | None:
        """The cluster target when the security groups admit the peer; None (and an audit event) otherwise."""
        peer_host = peer[0] if peer else ""
        target = self.resolver.resolve(identifier)
        if target is None or not netacl.allowed(target.rules, peer_host, port):
            self.audit.event("gateway.connection_refused", verdict="deny", cluster=identifier, source_ip=peer_host,
                             port=port, reason="security group" if target is not None else "no such cluster")
            return None
        return target


SessionFactory = Callable[[GatewayContext, str, int], asyncio.Protocol]


class Gateway:
    def __init__(self, host: str, hostname: str, store: RdsStore, pki: PkiStore, ctx_factory: Callable[["Gateway"], GatewayContext],
                 sessions: dict[str, SessionFactory]) -> None:
        self._host = host
        self._hostname = hostname
        self._store = store
        self._pki = pki
        self._sessions = sessions
        self._servers: dict[str, tuple[int, asyncio.AbstractServer]] = {}
        self._certs: dict[str, CertPaths] = {}
        self._lock = asyncio.Lock()
        self.ctx = ctx_factory(self)

    def cert_paths(self, resource_id: str) -> CertPaths | None:
        return self._certs.get(resource_id)

    def port_of(self, identifier: str) -> int | None:
        entry = self._servers.get(identifier)
        return entry[0] if entry else None

    async def sync(self) -> None:
        async with self._lock:
            wanted: dict[str, Any] = {}
            for cluster in self._store.list_clusters():
                if cluster.status in SERVING and self._store.list_instances(cluster.identifier):
                    wanted[cluster.identifier] = cluster
            for identifier in list(self._servers):
                if identifier not in wanted or self._servers[identifier][0] != wanted[identifier].port:
                    await self._close(identifier)
            for identifier, cluster in wanted.items():
                if identifier in self._servers:
                    continue
                engine = "mysql" if cluster.engine == "aurora-mysql" else "postgres"
                factory = self._sessions.get(engine)
                if factory is None:
                    continue
                cn, dns, ips = certificate_names(cluster, self._hostname, self._host)
                try:
                    self._certs[cluster.resource_id] = await asyncio.to_thread(
                        self._pki.server_certificate, cluster.resource_id, common_name=cn, dns_names=dns, ip_addresses=ips)
                except Exception:
                    log.exception("cannot issue the certificate of cluster %s; its endpoint offers no TLS", identifier)
                loop = asyncio.get_running_loop()
                try:
                    server = await loop.create_server(lambda f=factory, i=identifier, p=cluster.port: f(self.ctx, i, p),
                                                      self._host, cluster.port, reuse_address=True, backlog=1024)
                except OSError as exc:
                    log.error("cannot listen on %s:%s for cluster %s: %s", self._host, cluster.port, identifier, exc.strerror)
                    continue
                self._servers[identifier] = (cluster.port, server)
                log.info("cluster %s: endpoint %s:%s (%s)", identifier, self._host, cluster.port, engine)

    async def _close(self, identifier: str) -> None:
        _, server = self._servers.pop(identifier)
        server.close()
        try:
            async with asyncio.timeout(5):
                await server.wait_closed()
        except TimeoutError:
            pass

    async def close(self) -> None:
        async with self._lock:
            for identifier in list(self._servers):
                await self._close(identifier)
            if self.ctx.offload is not None:
                self.ctx.offload.stop()  # sessions in the native relay end with the gateway
            if self.ctx._refusals is not None:
                self.ctx._refusals.close()  # the summaries of what was counted
