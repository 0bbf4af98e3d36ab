"""Instance classes and connection limits: Aurora's max_connections, dbkeep's gateway limit.

Aurora derives each instance's default ``max_connections`` from its class's memory
(``DBInstanceClassMemory``; AWS Aurora User Guide, "Maximum connections to an Aurora MySQL DB
instance" and "... Aurora PostgreSQL DB instance"):

- Aurora MySQL: ``GREATEST({log(DBInstanceClassMemory/805306368)*45},
  {log(DBInstanceClassMemory/8187281408)*1000})``, log base 2. AWS's published table (45 for
  2 GiB classes, 90 for 4 GiB, 135 for 8 GiB, 1000 for ``*.large`` with 16 GiB, 2000 for 32 GiB
  … 6000 for 384 and 512 GiB, 7000 for 768 GiB) is reproduced exactly by the class's memory in
  bytes with each log rounded to the nearest integer, which is what :func:`aurora_max_connections`
  does.
- Aurora PostgreSQL: ``LEAST({DBInstanceClassMemory/9531392},5000)``, with the memory taken as
  GiB x 10^9 bytes as in AWS's worked example (db.r4.large, 15.25 GiB: 1600).

Here a cluster's instances share one engine, so the cluster's value is that of its **largest**
instance class (a cluster without instances counts as :data:`DEFAULT_CLASS`). A
``max_connections`` set in the cluster parameter group replaces the class's value, as on Aurora.

dbkeep then keeps every engine connection the gateway can open below the engine's limit, so
that the engine itself never answers "too many connections" to dbkeep's own rdsadmin sessions
(readiness probes, resets, hygiene) — :func:`connection_limits`:

- the engine's ``max_connections`` is the cluster's value, but no more than the gateway's
  ``--max-connections`` plus :data:`ENGINE_RESERVE` (PostgreSQL sets aside memory for every
  slot: an engine is not given slots the gateway can never fill), and no less than
  ``1 + ENGINE_RESERVE``;
- the gateway's per-cluster limit is that value minus :data:`ENGINE_RESERVE`: the reserve holds
  :data:`RDSADMIN_RESERVE` connections for rdsadmin (PostgreSQL's
  ``superuser_reserved_connections``; AWS likewise asks for "at least 3 more connections to
  support AWS automation") and the rest for sessions whose client has gone while the engine's
  backend is still exiting;
- connections that have not finished logging in are limited per source address
  (``--max-pending-logins``), to at most half the cluster's gateway limit, so that one source
  cannot take a cluster's every slot without logging in.

Pure: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

MYSQL = "aurora-mysql"
POSTGRES = "aurora-postgresql"

RDSADMIN_RESERVE = 3  # connections kept for rdsadmin (PostgreSQL: superuser_reserved_connections)
ENGINE_RESERVE = 10  # engine slots beyond the gateway's limit: rdsadmin's, then exiting backends
DEFAULT_CLASS = "db.r6g.large"  # what a cluster without instances counts as


_GIB = 1 << 30
# memory in GiB by size, for the general memory-optimised (r) families
_R_SIZES = {"large": 16, "xlarge": 32, "2xlarge": 64, "4xlarge": 128, "8xlarge": 256, "12xlarge": 384,
            "16xlarge": 512, "24xlarge": 768, "32xlarge": 1024, "48xlarge": 1536}
_R_FAMILIES = {  # family -> its largest size (Aurora's "Supported DB engines for DB instance classes")
    "r5": "24xlarge", "r6g": "16xlarge", "r6i": "32xlarge", "r7g": "16xlarge", "r7i": "48xlarge", "r8g": "48xlarge",
}
_X2G_SIZES = {"xlarge": 64, "2xlarge": 128, "4xlarge": 256, "8xlarge": 512, "12xlarge": 768, "16xlarge": 1024}
_T_SIZES = {"t3": {"small": 2, "medium": 4, "large": 8}, "t4g": {"medium": 4, "large": 8}}
_ORDER = list(_R_SIZES)


def _table() -> dict[str, float]:
    out: dict[str, float] = {}
    for family, largest in _R_FAMILIES.items():
        for size in _ORDER[: _ORDER.index(largest) + 1]:
            out[f"db.{family}.{size}"] = _R_SIZES[size]
    for size, gib in _X2G_SIZES.items():
        out[f"db.x2g.{size}"] = gib
    for family, sizes in _T_SIZES.items():
        for size, gib in sizes.items():
            out[f"db.{family}.{size}"] = gib
    return out


#: Instance classes dbkeep accepts, with their memory in GiB.
INSTANCE_CLASSES: dict[str, float] = _table()


def memory_gib(instance_class: str) -> float:
    """The class's memory; ValueError for a class dbkeep does not know."""
    gib = INSTANCE_CLASSES.get(instance_class)
    if gib is None:
        raise ValueError(f"unknown DB instance class {instance_class!r}")
    return gib


def aurora_max_connections(engine: str, instance_class: str) -> int:
    """Aurora's default ``max_connections`` for one instance of ``instance_class``."""
    gib = memory_gib(instance_class)
    if engine == MYSQL:
        memory = gib * _GIB
        return max(round(math.log2(memory / 805306368)) * 45, round(math.log2(memory / 8187281408)) * 1000, 1)
    if engine == POSTGRES:
        return max(min(int(gib * 1e9 / 9531392), 5000), 1)
    raise ValueError(f"unknown engine {engine!r}")


def cluster_max_connections(engine: str, classes: Iterable[str], parameter: str | None = None) -> int:
    """The cluster's ``max_connections`` as Aurora would have it: the parameter group's value
    when it holds a number, else the largest of its instances' class values."""
    if parameter is not None and parameter.strip().lstrip("+").isdigit():
        return max(int(parameter), 1)
    values = [aurora_max_connections(engine, c) for c in classes if c in INSTANCE_CLASSES]
    return max(values) if values else aurora_max_connections(engine, DEFAULT_CLASS)


@dataclass(frozen=True)
class ConnectionLimits:
    engine: int  # the engine's max_connections
    gateway: int  # client connections the gateway admits to the cluster at once
    pending_per_source: int  # of those, not yet logged in, per source address

    @property
    def reserve(self) -> int:
        return self.engine - self.gateway


def connection_limits(cluster_value: int, gateway_max: int, pending_max: int = 64) -> ConnectionLimits:
    """The limits for a cluster whose Aurora ``max_connections`` is ``cluster_value``, under
    ``--max-connections`` ``gateway_max`` and ``--max-pending-logins`` ``pending_max``."""
    if gateway_max < 1 or pending_max < 1:
        raise ValueError("limits must be positive")
    engine = max(min(cluster_value, gateway_max + ENGINE_RESERVE), 1 + ENGINE_RESERVE)
    gateway = engine - ENGINE_RESERVE
    return ConnectionLimits(engine=engine, gateway=gateway, pending_per_source=max(1, min(pending_max, gateway // 2)))


def gateway_limit(engine_values: Iterable[str | int | None]) -> int | None:
    """The gateway's limit from the engine values in force: the smallest of the value the
    engine was started with (or last set to) and the one it should have now, minus the reserve;
    None when none is a number."""
    numbers = []
    for value in engine_values:
        try:
            numbers.append(int(value))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
    if not numbers:
        return None
    return max(1, min(numbers) - ENGINE_RESERVE)
