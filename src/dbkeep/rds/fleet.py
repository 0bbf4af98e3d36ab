"""This host among the dbkeep hosts sharing a PostgreSQL catalog: placement, ownership, reach.

Each host stands for one availability zone. ``CreateDBCluster`` places a cluster on a live host
in the zone asked for (``AvailabilityZones``), otherwise on the live host with the fewest
clusters; the cluster's ``owner`` column names it for good, since its data lives there. Only the
owner runs the cluster's engine, gateway listener and engine work; other hosts pass work to it
through the catalog (catalog/work.py, rds/remote.py).

**A host that goes away.** When the owner's heartbeat stops (catalog/hosts.py), its clusters
and instances are *reported* as ``incompatible-network`` -- RDS's status for a resource that
cannot be reached through its network, the nearest there is to "its host is gone" (RDS has no
"unreachable" status; ``inaccessible-encryption-credentials`` would send people to KMS and
``failed`` says the data is lost, which it is not). The status is computed when read and never
written, so no host writes another's cluster status and nothing needs undoing when the owner
comes back: it reports ``available`` again as soon as its heartbeat does. Calls that need the
engine fail with ``InvalidDBClusterStateFault`` naming the host; no host takes the cluster over.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from dbkeep.catalog.hosts import Host, HostDirectory
from dbkeep.catalog.models import Cluster
from dbkeep.catalog.work import WorkQueue
from dbkeep.errors import ApiError

UNREACHABLE = "incompatible-network"
HOSTS_CACHE_SECONDS = 1.0


class Fleet:
    def __init__(self, node: str, zone: str, hostname: str, hosts: HostDirectory, work: WorkQueue) -> None:
        self.node = node
        self.zone = zone
        self.hostname = hostname
        self.hosts = hosts
        self.work = work
        self._cache: tuple[float, dict[str, Host]] | None = None

    def _hosts(self) -> dict[str, Host]:
        now = time.monotonic()
        if self._cache is None or now - self._cache[0] >= HOSTS_CACHE_SECONDS:
            self._cache = (now, {h.node_name: h for h in self.hosts.list()})
        return self._cache[1]

    def owns(self, cluster: Cluster) -> bool:
        return cluster.owner == self.node

    def owner_host(self, cluster: Cluster) -> Host | None:
        return self._hosts().get(cluster.owner) if cluster.owner else None

    def unreachable(self, cluster: Cluster) -> Host | None:
        """The owner, when it is another host whose heartbeat has stopped."""
        if cluster.owner is None or cluster.owner == self.node:
            return None
        host = self.owner_host(cluster)
        if host is None or not host.alive:
            return host or Host(cluster.owner, "?", "?", "?", None, None, False)  # type: ignore[arg-type]
        return None

    def endpoint(self, cluster: Cluster) -> tuple[str, str]:
        """(host name, zone) of the cluster's owner."""
        host = self.owner_host(cluster)
        if host is None or cluster.owner == self.node:
            return self.hostname, self.zone
        return host.hostname, host.zone

    def place(self, zones: Sequence[str] | None) -> str:
        """The node name of the host a new cluster goes to."""
        hosts = list(self._fresh_hosts().values())
        if zones:
            known = sorted({h.zone for h in hosts})
            unknown = [z for z in zones if z not in known]
            if unknown:
                raise ApiError("InvalidParameterValue", f"Invalid availability zone: {unknown[0]}. The dbkeep hosts "
                               f"on this catalog stand for: {', '.join(known)}.", 400)
            hosts = [h for h in hosts if h.zone in zones]
        alive = [h for h in hosts if h.alive or h.node_name == self.node]
        if not alive:
            where = f" in {', '.join(zones)}" if zones else ""
            raise ApiError("InsufficientDBClusterCapacityFault", f"No dbkeep host{where} is reachable now: its "
                           "heartbeat has stopped. Start it again or choose another availability zone.", 400)
        counts = self.hosts.cluster_counts()
        # the fewest clusters; this host first among equals (no hop through the catalog)
        return min(alive, key=lambda h: (counts.get(h.node_name, 0), h.node_name != self.node, h.node_name)).node_name

    def _fresh_hosts(self) -> dict[str, Host]:
        self._cache = None
        return self._hosts()


def unreachable_message(cluster: Cluster, host: Host) -> str:
    since = f" since {host.heartbeat:%Y-%m-%d %H:%M:%S} UTC" if host.heartbeat else ""
    return (f"the dbkeep host {host.node_name} that runs this cluster (zone {host.zone}) has not been heard "
            f"from{since}; its engine cannot be reached until that host runs again")


def unreachable_error(cluster: Cluster, host: Host) -> ApiError:
    return ApiError("InvalidDBClusterStateFault", f"DbCluster {cluster.identifier} is not in available state "
                    f"(current status: {UNREACHABLE}): {unreachable_message(cluster, host)}.", 400)
