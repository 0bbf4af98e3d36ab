"""The engine driver interface: what the control plane needs from "something that runs engines".

The local-process driver (:class:`dbkeep.engines.local.LocalDriver`) is the first implementation;
a Kubernetes driver over an existing operator (CloudNativePG, the MariaDB operator) can follow
without touching the API or the gateway, as long as it keeps this contract:

- ``provision`` makes a new, bootstrapped engine (rdsadmin, the master user with Aurora's default
  privileges, the rds_* roles, ``mysql.rds_kill``) and leaves it stopped;
- ``start`` runs it and returns once it answers rdsadmin queries, or raises :class:`EngineError`
  carrying the engine's own log line;
- ``reset_master`` returns the master user to a working login with its default privileges
  whatever was done to it (DESIGN.md, "No lockouts").
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

MYSQL = "mysql"
POSTGRES = "postgres"
ENGINES = (MYSQL, POSTGRES)

_ENGINE_ALIASES = {
    "mysql": MYSQL,
    "mariadb": MYSQL,
    "aurora-mysql": MYSQL,
    "postgres": POSTGRES,
    "postgresql": POSTGRES,
    "aurora-postgresql": POSTGRES,
}


def normalize_engine(engine: str) -> str:
    """``"aurora-mysql"``/``"mariadb"`` → ``"mysql"``; ``"aurora-postgresql"`` → ``"postgres"``."""
    try:
        return _ENGINE_ALIASES[engine.lower()]
    except KeyError:
        raise ValueError(f"unknown engine {engine!r}: expected one of {', '.join(ENGINES)}") from None


@dataclass(frozen=True)
class EngineSpec:
    cluster_id: str                    # DbClusterResourceId, e.g. "cluster-ABC..." (used for paths)
    engine: str                        # "mysql" | "postgres"
    master_username: str
    database_name: str | None = None
    settings: Mapping[str, str] = field(default_factory=dict)   # validated engine settings
    iam_auth: bool = False             # IAM database authentication (engines/iam.py)

    def __post_init__(self) -> None:
        object.__setattr__(self, "engine", normalize_engine(self.engine))
        object.__setattr__(self, "settings", dict(self.settings))


class EngineState(str, enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"


@dataclass(frozen=True)
class EngineStatus:
    state: EngineState
    last_log_line: str | None = None   # the engine's most telling recent log line (errors first)
    restart_count: int = 0             # restarts after a crash since the engine was started
    pid: int | None = None


@runtime_checkable
class EngineDriver(Protocol):
    async def provision(self, spec: EngineSpec, master_password: str) -> None:
        """Initialise the data directory and bootstrap it; leaves the engine stopped.

        Idempotent-ish: an already bootstrapped cluster is left as it is; a half-made one is
        wiped and made again. Raises EngineError with the engine's log line on failure."""

    async def start(self, spec: EngineSpec) -> None:
        """Start with ``spec.settings`` and wait until rdsadmin queries succeed (bounded)."""

    async def stop(self, cluster_id: str) -> None:
        """Graceful stop: the engine's shutdown signal, a grace period, then SIGKILL."""

    async def destroy(self, cluster_id: str) -> None:
        """Stop, then remove every file of the cluster."""

    def socket_path(self, cluster_id: str) -> str:
        """The engine's unix socket (the gateway's only way in)."""

    def status(self, cluster_id: str) -> EngineStatus: ...

    async def run_as_rdsadmin(self, cluster_id: str, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement as rdsadmin; rows as tuples (empty for statements without rows).

        An SQL error raises DbError with the engine's codes; an unreachable engine EngineError."""

    async def apply_dynamic_settings(self, spec: EngineSpec, settings: Mapping[str, str]) -> None:
        """Apply dynamic settings without a restart (SET GLOBAL / config reload) and persist them."""

    async def reset_master(self, spec: EngineSpec, password: str) -> None:
        """Restore the master user's login and default privileges ("No lockouts")."""

    async def set_iam_auth(self, spec: EngineSpec) -> None:
        """Make the engine accept (or refuse) IAM logins as ``spec.iam_auth`` says, live when it
        runs and at every later start (engines/iam.py)."""
