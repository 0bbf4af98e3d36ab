"""What a new connection to a cluster endpoint needs to know, read fresh at accept.

Dynamic policy (``require_secure_transport``, ``rds.force_ssl``, PostgreSQL's TLS bounds and
ciphers, security-group rules) is read from the catalog for every new connection, so a change
applies to new connections at once. Static policy (MySQL ``tls_version``, ``ssl_cipher``) is taken
from the values the cluster was last started with (``applied_parameters``): it changes only at a
reboot, as on RDS (PostgreSQL's ``rds.restrict_password_commands`` too). SSLContexts are cached by their inputs; building one loads the key (~40 ms).

Resolving reads the catalog (about 1 ms), which would bound the rate of new connections, so
resolved targets are cached per cluster until the next catalog commit in this process (an
SQLAlchemy ``commit`` event bumps a generation: a change still applies to the next connection)
or for at most ``cache_ttl`` seconds (writes by another process sharing the catalog).
"""

from __future__ import annotations

import ipaddress
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import event

from dbkeep.catalog.models import Cluster, IngressRule
from dbkeep.catalog.rds import RdsStore
from dbkeep.pki import tls
from dbkeep.pki.store import CertPaths
from dbkeep.rds import capacity, names


@dataclass(frozen=True)
class ClusterTarget:
    identifier: str
    resource_id: str
    engine: str  # "mysql" | "postgres"
    port: int
    status: str
    socket_path: str
    hostname: str
    master_username: str
    tls: ssl.SSLContext | None  # None: this endpoint offers no TLS (certificate missing)
    require_tls: bool  # require_secure_transport=ON / rds.force_ssl=1
    iam_auth: bool
    rules: tuple[IngressRule, ...]
    # client connections the gateway admits to the cluster: the engine's max_connections less
    # the reserve (rds/capacity.py), the smaller of the value it runs with and the one it should
    # have now (PostgreSQL's changes at a reboot); None: only Limits.max_connections
    max_connections: int | None = None
    # rds.restrict_password_commands (PostgreSQL, static: the value the cluster was last started with)
    restrict_password_commands: bool = False


@lru_cache(maxsize=256)
def _context(chains: tuple[tuple[str, str], ...], stamp: float, minimum: int, maximum: int, ciphers: str | None,
             alpn: tuple[str, ...]) -> ssl.SSLContext:
    versions = tls.TlsVersions(ssl.TLSVersion(minimum), ssl.TLSVersion(maximum))
    (cert, key), *extra = chains
    return tls.server_context(cert, key, versions=versions, ciphers=ciphers, alpn=alpn or None, extra_chains=extra)


def certificate_names(cluster: Cluster, hostname: str, host: str) -> tuple[str, list[str], list[str]]:
    """(CN, DNS SANs, IP SANs) for a cluster's server certificate: every endpoint name and IP."""
    dns = [hostname] if not _is_ip(hostname) else []
    if "localhost" not in dns:
        dns.append("localhost")
    ips = [host] if host not in ("0.0.0.0", "::") else ["127.0.0.1", "::1"]
    if _is_ip(hostname) and hostname not in ips:
        ips.append(hostname)
    for extra in ("127.0.0.1", "::1"):
        if extra not in ips and host in ("127.0.0.1", "::1", "0.0.0.0", "::"):
            ips.append(extra)
    return hostname, dns, ips


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


class TargetResolver:
    def __init__(self, store: RdsStore, cert_paths: Callable[[str], CertPaths | None], effective: Callable[[Cluster], dict],
                 socket_path: Callable[[str, str], str], hostname: str, *, cache_ttl: float = 1.0) -> None:
        self._store = store
        self._ttl = cache_ttl
        self._generation = 0
        self._cache: dict[str, tuple[int, float, CertPaths | None, ClusterTarget]] = {}
        engine = getattr(store, "engine", None)
        if engine is not None:
            event.listen(engine, "commit", self._catalog_committed)
        self._cert_paths = cert_paths  # resource_id -> the cluster's certificate, once issued
        self._effective = effective  # Cluster -> dict of current parameter values
        self._socket_path = socket_path  # (resource_id, engine) -> str
        self._hostname = hostname

    def _catalog_committed(self, *_: Any) -> None:
        self._generation += 1

    @property
    def generation(self) -> int:
        """Catalog commits seen in this process: what was read before one may be stale."""
        return self._generation

    def resolve(self, identifier: str) -> ClusterTarget | None:
        now = time.monotonic()
        hit = self._cache.get(identifier)
        if hit is not None:
            generation, stamp, paths, cached = hit
            if generation == self._generation and now - stamp < self._ttl and self._cert_paths(cached.resource_id) is paths:
                return cached
        generation = self._generation
        target = self._resolve(identifier)
        if target is None:
            self._cache.pop(identifier, None)
        else:
            self._cache[identifier] = (generation, now, self._cert_paths(target.resource_id), target)
        return target

    def _resolve(self, identifier: str) -> ClusterTarget | None:
        cluster = self._store.get_cluster(identifier)
        if cluster is None:
            return None
        engine = names.ENGINES[cluster.engine]
        current = self._effective(cluster)
        applied = cluster.applied_parameters or current
        context = None
        paths = self._cert_paths(cluster.resource_id)
        if paths is not None:
            chains = tuple((str(c), str(k)) for c, k in paths.chains() if c.exists())
            if engine == "mysql":
                versions = tls.parse_mysql_tls_version(applied.get("tls_version"))
                ciphers = tls.validate_mysql_ssl_cipher(applied["ssl_cipher"]) if applied.get("ssl_cipher") else None
                alpn: tuple[str, ...] = ()
            else:
                versions = tls.parse_pg_protocol_bounds(current.get("ssl_min_protocol_version"), current.get("ssl_max_protocol_version") or None)
                ciphers = tls.validate_pg_ssl_ciphers(current["ssl_ciphers"]) if current.get("ssl_ciphers") else None
                alpn = ("postgresql",)
            context = _context(chains, paths.cert_path.stat().st_mtime, int(versions.minimum), int(versions.maximum), ciphers, alpn)
        if engine == "mysql":
            require = str(current.get("require_secure_transport") or "OFF").upper() in ("ON", "1")
        else:
            require = str(current.get("rds.force_ssl") or "0") == "1"
        return ClusterTarget(
            identifier=cluster.identifier,
            resource_id=cluster.resource_id,
            engine=engine,
            port=cluster.port,
            status=cluster.status,
            socket_path=self._socket_path(cluster.resource_id, engine),
            hostname=self._hostname,
            master_username=cluster.master_username,
            tls=context,
            require_tls=require,
            iam_auth=cluster.iam_auth,
            rules=tuple(self._store.rules(cluster.security_group_ids)),
            max_connections=capacity.gateway_limit((current.get("max_connections"), applied.get("max_connections"))),
            restrict_password_commands=engine == "postgres" and str(applied.get("rds.restrict_password_commands") or "0") == "1",
        )
