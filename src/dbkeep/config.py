"""Configuration of one ``dbkeep up`` process, validated once at start.

Every value that reaches the rest of the program has been checked here, so a bad option fails
at start with a clear message instead of deep inside a component.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

from dbkeep.errors import ConfigError

DEFAULT_API_PORT = 8790
DEFAULT_HOST = "127.0.0.1"
DEFAULT_HOSTNAME = "localhost"
DEFAULT_REGION = "us-east-1"

_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
_NODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
CLUSTER_KEY_ENV = "DBKEEP_CLUSTER_KEY"


def default_node_name() -> str:
    """The machine's host name, up to its first dot (as ``hostname -s``)."""
    return socket.gethostname().split(".")[0] or "dbkeep"


def default_relay_threads() -> int:
    """One per CPU (at most 64), as HAProxy's nbthread: with fewer, every session waits whenever
    the one relay thread is descheduled (measured: 10 % of 2 CPUs idle at 32 pgbench clients
    with one thread, 2-3 % with two); a thread without traffic costs nothing."""
    return max(1, min(64, os.cpu_count() or 1))


def default_state_dir() -> Path:
    """``/var/lib/dbkeep`` for root, else ``$XDG_STATE_HOME/dbkeep`` (``~/.local/state/dbkeep``)."""
    if os.geteuid() == 0:
        return Path("/var/lib/dbkeep")
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(Path.home(), ".local", "state")
    return Path(base) / "dbkeep"


@dataclass(frozen=True)
class Config:
    state_dir: Path
    host: str = DEFAULT_HOST
    api_port: int = DEFAULT_API_PORT
    hostname: str = DEFAULT_HOSTNAME
    region: str = DEFAULT_REGION
    catalog_url: str | None = None
    handshake_timeout: float = 10.0  # gateway: seconds from connect to a finished login
    first_byte_timeout: float = 3.0  # gateway: seconds for a client's first byte (MySQL: after the greeting)
    max_connections: int = 1000  # gateway: open client connections per cluster
    max_pending_logins: int = 64  # gateway: per source and cluster, connections not yet logged in
    refusal_log_interval: float = 60.0  # gateway: seconds between audit summaries of refused connections
    relay_threads: int = field(default_factory=default_relay_threads)  # gateway: native relay threads (0: in the event loop)
    audit_max_bytes: int = 64 * 1024 * 1024  # audit.log is rotated at this size
    audit_keep: int = 10  # rotated audit files kept
    metrics_token_file: Path | None = None  # /metrics asks for this bearer token (else: loopback only)
    # several hosts on one PostgreSQL catalog (catalog/hosts.py, docs/DESIGN-NOTES.md)
    node_name: str = field(default_factory=default_node_name)
    availability_zone: str | None = None  # None: REGION + "a"
    cluster_key_file: Path | None = None  # seals the shared trust root (else the DBKEEP_CLUSTER_KEY variable)

    def __post_init__(self) -> None:
        if not 1 <= self.handshake_timeout <= 600:
            raise ConfigError(f"--handshake-timeout must be between 1 and 600 seconds, not {self.handshake_timeout:g}")
        if not 0.5 <= self.first_byte_timeout <= 600:
            raise ConfigError(f"--first-byte-timeout must be between 0.5 and 600 seconds, not {self.first_byte_timeout:g}")
        if not 1 <= self.max_connections <= 100_000:
            raise ConfigError(f"--max-connections must be between 1 and 100000, not {self.max_connections}")
        if not 1 <= self.max_pending_logins <= 100_000:
            raise ConfigError(f"--max-pending-logins must be between 1 and 100000, not {self.max_pending_logins}")
        if not 1 <= self.refusal_log_interval <= 3600:
            raise ConfigError(f"--refusal-log-interval must be between 1 and 3600 seconds, not {self.refusal_log_interval:g}")
        if not 0 <= self.relay_threads <= 64:
            raise ConfigError(f"--relay-threads must be between 0 and 64, not {self.relay_threads}")
        if not 1024 <= self.audit_max_bytes <= 2**40:
            raise ConfigError(f"--audit-max-bytes must be between 1024 and 2**40, not {self.audit_max_bytes}")
        if not 1 <= self.audit_keep <= 10_000:
            raise ConfigError(f"--audit-keep must be between 1 and 10000, not {self.audit_keep}")
        if self.metrics_token_file is not None:
            try:
                token = self.metrics_token_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(f"--metrics-token-file {self.metrics_token_file}: {exc.strerror}") from None
            if len(token) < 16 or not token.isprintable() or " " in token:
                raise ConfigError("--metrics-token-file must hold one token of at least 16 printable characters")
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            raise ConfigError(f"--host must be an IP address to listen on, not {self.host!r}") from None
        if not 0 <= self.api_port <= 65535:
            raise ConfigError(f"--api-port must be between 0 and 65535, not {self.api_port}")
        if not _HOSTNAME_RE.match(self.hostname):
            try:
                ipaddress.ip_address(self.hostname)
            except ValueError:
                raise ConfigError(f"--hostname {self.hostname!r} is not a valid DNS name or IP address") from None
        if not _REGION_RE.match(self.region):
            raise ConfigError(f"--region {self.region!r} is not a region name such as us-east-1")
        if not _NODE_RE.match(self.node_name):
            raise ConfigError(f"--node-name {self.node_name!r} must be 1 to 63 letters, digits, '.', '_' or '-'")
        zone = self.zone
        if not (zone.startswith(self.region) and re.fullmatch(r"[a-z]", zone[len(self.region):])):
            raise ConfigError(f"--availability-zone {zone!r} is not a zone of region {self.region} "
                              f"(one letter after the region: {self.region}a, {self.region}b …)")
        if self.catalog_url is not None and not re.match(r"^(sqlite|postgresql)(\+\w+)?://", self.catalog_url):
            raise ConfigError("--catalog-url must be a sqlite:// or postgresql:// URL")

    @property
    def zone(self) -> str:
        return self.availability_zone or self.region + "a"

    @property
    def shared_catalog(self) -> bool:
        """A PostgreSQL catalog may be shared by several hosts: they register, own clusters and
        pass work to each other through it. SQLite is one host's alone."""
        return self.catalog_url is not None and self.catalog_url.startswith("postgresql")

    @property
    def resolved_catalog_url(self) -> str:
        return self.catalog_url or f"sqlite:///{self.state_dir / 'catalog.sqlite3'}"
