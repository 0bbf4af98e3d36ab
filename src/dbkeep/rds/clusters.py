"""The cluster lifecycle: RDS semantics on top of the catalog and the engine driver.

API handlers call :class:`ClusterManager`; it validates state transitions as RDS does, records
the desired state in the catalog first, then drives the engine in a background task that
belongs to the app's TaskGroup (statuses move ``creating → available``, ``rebooting``,
``resetting-master-credentials``, ``stopping → stopped``, ``starting``, ``deleting`` as on RDS).
One lock per cluster serialises engine operations, so two API calls never drive one engine at
once. On start, :meth:`recover` brings every cluster back to the state the catalog records.

On a catalog shared by several hosts (rds/fleet.py) the manager acts only on the clusters its
host owns: recovery, engine work and engine state skip the others. A call for a cluster owned
elsewhere writes the call's own status transition, as on one host, and hands the engine work to
the owner through the catalog (:meth:`_run`); the owner runs the very same coroutine
(:meth:`run_work`), so every status after the call's first comes from the owner.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from typing import Any

from dbkeep.audit.log import AuditLog
from dbkeep.catalog.models import Cluster, Instance
from dbkeep.catalog.events import EventStore
from dbkeep.catalog.rds import RdsStore
from dbkeep.clock import Clock
from dbkeep.engines.driver import EngineSpec
from dbkeep.errors import ApiError, EngineError
from dbkeep.rds import capacity, names, parameters
from dbkeep.rds.fleet import UNREACHABLE, Fleet, unreachable_error, unreachable_message

log = logging.getLogger("dbkeep.rds")

ENGINE_TIMEOUT = 180  # seconds for provisioning or starting an engine


IAM_APPLY_WAIT = 15.0  # seconds ModifyDBCluster waits for the engine to take an IAM switch


def cluster_state_error(ident: str, status: str) -> ApiError:
    return ApiError("InvalidDBClusterStateFault", f"DbCluster {ident} is not in available state (current status: {status}).", 400)


def _ownerless(cluster: Cluster) -> ApiError:
    return ApiError("InvalidDBClusterStateFault", f"DbCluster {cluster.identifier} has no host: it was created before "
                    "the catalog was shared and no host has found its data yet. Start dbkeep on the state dir that "
                    "holds it (with this catalog); that host takes it over.", 400)


class ClusterManager:
    def __init__(self, store: RdsStore, driver: Any, audit: AuditLog, clock: Clock, spawn: Callable[[Coroutine[Any, Any, None]], None], host: str,
                 *, max_connections: int = 1000, fleet: Fleet | None = None) -> None:
        self.store = store
        self.fleet = fleet  # None: one host, which owns every cluster
        self.max_connections = max_connections  # the gateway's --max-connections (rds/capacity.py)
        self.driver = driver
        self.audit = audit
        self.clock = clock
        self._spawn = spawn
        self._host = host
        self._locks: dict[str, asyncio.Lock] = {}
        # Awaited when a cluster's endpoints may change (the gateway reconciles its listeners).
        # Before a cluster or instance turns ``available`` they are awaited first, so that an
        # ``available`` endpoint is always already listening.
        self.listeners: list[Callable[[str], Awaitable[None]]] = []
        self.events = EventStore(store.catalog)

    def event(self, source_type: str, ident: str, message: str, *categories: str) -> None:
        """An RDS event (DescribeEvents); never breaks the lifecycle it reports on."""
        try:
            self.events.record(self.clock.now(), source_type, ident, message, categories)
        except Exception:
            log.exception("cannot record the event %r of %s %s", message, source_type, ident)

    def engine_restarted(self, resource_id: str, last_log_line: str | None) -> None:
        """The supervisor restarted a crashed engine."""
        cluster = self.store.cluster_by_resource_id(resource_id)
        if cluster is None:
            return
        why = f": {last_log_line}" if last_log_line else ""
        self.event("db-cluster", cluster.identifier, f"The database engine stopped unexpectedly and was restarted{why}",
                   "failure")
        for inst in self.store.list_instances(cluster.identifier):
            self.event("db-instance", inst.identifier, "DB instance restarted", "availability")

    def engine_repaired(self, resource_id: str, what: str) -> None:
        cluster = self.store.cluster_by_resource_id(resource_id)
        if cluster is not None:
            self.event("db-cluster", cluster.identifier, f"dbkeep repaired the database engine: {what}", "recovery")

    # --- ownership (several hosts) --------------------------------------------------------------

    def owns(self, cluster: Cluster) -> bool:
        return self.fleet is None or self.fleet.owns(cluster)

    def require_reachable(self, cluster: Cluster) -> None:
        """A call that needs the engine fails at once while the cluster's host is gone."""
        if self.fleet is not None and cluster.owner is None:
            raise _ownerless(cluster)
        if self.fleet is not None and (host := self.fleet.unreachable(cluster)) is not None:
            raise unreachable_error(cluster, host)

    def reported_status(self, cluster: Cluster) -> tuple[str, str | None]:
        """(status, message) as DescribeDBClusters shows them: computed, never written, while
        the owner is gone (rds/fleet.py)."""
        if self.fleet is not None and (host := self.fleet.unreachable(cluster)) is not None:
            return UNREACHABLE, unreachable_message(cluster, host)
        return cluster.status, cluster.status_message

    def endpoint(self, cluster: Cluster, hostname: str, zone: str) -> tuple[str, str]:
        """(host name, availability zone) of the host that serves the cluster."""
        return self.fleet.endpoint(cluster) if self.fleet is not None else (hostname, zone)

    def place(self, zones: list[str] | None, own_zone: str) -> str | None:
        """The owner of a new cluster (None on one host, where a zone other than its own is unknown)."""
        if self.fleet is not None:
            return self.fleet.place(zones)
        unknown = [z for z in zones or () if z != own_zone]
        if unknown:
            raise ApiError("InvalidParameterValue", f"Invalid availability zone: {unknown[0]}. This dbkeep host "
                           f"stands for {own_zone}.", 400)
        return None

    # engine work by name: the coroutine the owner runs, with the arguments as keywords
    _WORK = {
        "provision": "_provision", "instance_ready": "_instance_ready", "modified_instance": "_modified_instance",
        "reset_master": "_reset_master", "iam_auth": "_apply_iam_auth", "restart": "_restart", "stop": "_stop",
        "delete": "_delete", "delete_instance": "_delete_instance", "apply_dynamic": "_apply_dynamic",
    }

    def _run(self, cluster: Cluster, kind: str, **args: Any) -> None:
        """Run engine work here when this host owns the cluster, else queue it for the owner."""
        if self.owns(cluster):
            self._spawn(getattr(self, self._WORK[kind])(**args))
            return
        assert self.fleet is not None
        if cluster.owner is None:
            raise _ownerless(cluster)
        self.fleet.work.submit(cluster.owner, cluster.identifier, kind, args, asked_by=self.fleet.node, now=self.clock.now())
        log.info("cluster %s: %s handed to its host %s", cluster.identifier, kind, cluster.owner)

    def run_work(self, cluster_identifier: str, kind: str, args: dict[str, Any], asked_by: str) -> None:
        """Work another host queued for a cluster of this host's (rds/remote.py)."""
        cluster = self.store.get_cluster(cluster_identifier)
        method = self._WORK.get(kind)
        if method is None or (cluster is not None and not self.owns(cluster)):
            log.error("work %s for cluster %s from %s is not this host's to do; dropped", kind, cluster_identifier, asked_by)
            return
        log.info("cluster %s: %s asked by host %s", cluster_identifier, kind, asked_by)
        self._spawn(getattr(self, method)(**args))

    def _lock(self, ident: str) -> asyncio.Lock:
        return self._locks.setdefault(ident, asyncio.Lock())

    async def _notify(self, ident: str) -> None:
        for listener in self.listeners:
            try:
                await listener(ident)
            except Exception:  # a listener must never break the lifecycle
                log.exception("cluster listener failed for %s", ident)

    # --- specs and parameters ----------------------------------------------------------------

    def effective_parameters(self, cluster: Cluster) -> dict[str, str | None]:
        """The cluster's parameter values, with ``max_connections`` the number its engine gets:
        Aurora's value for the largest instance class (or the group's own), bounded by the
        gateway's limit plus the reserve (rds/capacity.py)."""
        values = parameters.effective(cluster.engine, self.store.parameter_values(cluster.parameter_group))
        values["max_connections"] = str(self.connection_limits(cluster, values.get("max_connections")).engine)
        return values

    def connection_limits(self, cluster: Cluster, parameter: str | None = None) -> capacity.ConnectionLimits:
        if parameter is None:
            parameter = self.store.parameter_values(cluster.parameter_group).get("max_connections")
        classes = [i.instance_class for i in self.store.list_instances(cluster.identifier)]
        value = capacity.cluster_max_connections(cluster.engine, classes, parameter)
        return capacity.connection_limits(value, self.max_connections)

    async def _follow_instances(self, ident: str, *, restart: bool, applied: dict[str, str | None] | None = None
                                ) -> dict[str, str | None] | None:
        """After a change of instances (added, resized, removed; called under the cluster's
        lock): the engine's max_connections follows the classes. MySQL's is dynamic and is set
        at once; PostgreSQL's is static: with ``restart`` (no client can be connected yet: the
        first instance) the engine restarts with it, otherwise it shows ``pending-reboot``. The
        gateway's limit meanwhile is the smaller of the old and the new value, less the reserve.
        ``applied``: what the engine was just started with (while the cluster is created).
        Returns the applied values when they changed."""
        cluster = self.store.get_cluster(ident)
        if cluster is None:
            return None
        if applied is None:
            if cluster.status != "available":
                return None
            applied = cluster.applied_parameters
        values = self.effective_parameters(cluster)
        wanted = values["max_connections"]
        if wanted == applied.get("max_connections"):
            return None
        try:
            async with asyncio.timeout(ENGINE_TIMEOUT):
                if cluster.engine == "aurora-mysql":
                    await self.driver.apply_dynamic_settings(self.spec(cluster, values), {"max_connections": wanted})
                elif restart:
                    await self.driver.stop(cluster.resource_id)
                    await self.driver.start(self.spec(cluster, values))
                else:
                    return None  # pending-reboot
        except Exception as exc:  # noqa: BLE001 - the lifecycle goes on; the gateway keeps the smaller limit
            message = getattr(exc, "log_line", None) or getattr(exc, "message", None) or str(exc) or "timeout"
            log.error("cluster %s: max_connections %s not applied: %s", ident, wanted, message)
            if restart and cluster.engine != "aurora-mysql":  # stopped and not started again: say so, as a reboot does
                self.store.update_cluster(ident, status="incompatible-parameters", status_message=str(message)[:1000])
                self.store.set_instances_status(ident, "incompatible-parameters")
            return None
        applied = {**applied, "max_connections": wanted}
        self.store.update_cluster(ident, applied_parameters=applied)
        return applied

    def spec(self, cluster: Cluster, values: dict[str, str | None] | None = None) -> EngineSpec:
        values = values if values is not None else self.effective_parameters(cluster)
        return EngineSpec(
            cluster_id=cluster.resource_id,
            engine=names.ENGINES[cluster.engine],
            master_username=cluster.master_username,
            database_name=cluster.database_name,
            settings=parameters.engine_settings_of(cluster.engine, values),
            iam_auth=cluster.iam_auth,
        )

    def pending_reboot(self, cluster: Cluster) -> bool:
        """Whether a static parameter differs from what the engine was started with
        (PostgreSQL's max_connections included, which follows the instance classes)."""
        current = self.effective_parameters(cluster)
        applied = cluster.applied_parameters
        return any(current.get(n) != applied.get(n) for n in parameters.static_names(cluster.engine))

    def allocate_port(self, requested: int | None) -> int:
        used = self.store.used_ports()
        if requested is not None:
            if requested in used:
                raise ApiError("InvalidParameterValue", f"Port {requested} is already used by another DB cluster.", 400)
            return requested
        for _ in range(100):
            with socket.socket() as s:
                s.bind((self._host, 0))
                candidate = s.getsockname()[1]
            if candidate not in used and candidate >= 1150:
                return candidate
        raise ApiError("InsufficientDBClusterCapacityFault", "No free port for a new cluster endpoint.", 400)

    # --- lifecycle --------------------------------------------------------------------------

    def create(self, cluster: Cluster, master_password: str) -> None:
        self.store.add_cluster(cluster)
        self._run(cluster, "provision", ident=cluster.identifier, master_password=master_password)

    async def _provision(self, ident: str, master_password: str) -> None:
        async with self._lock(ident):
            cluster = self.store.get_cluster(ident)
            if cluster is None:
                return
            values = self.effective_parameters(cluster)
            try:
                async with asyncio.timeout(ENGINE_TIMEOUT):
                    await self.driver.provision(self.spec(cluster, values), master_password)
                    await self.driver.start(self.spec(cluster, values))
            except (EngineError, TimeoutError) as exc:
                message = getattr(exc, "log_line", None) or getattr(exc, "message", None) or "engine did not become ready in time"
                log.error("cluster %s failed to provision: %s", ident, message)
                self.store.update_cluster(ident, status="failed", status_message=str(message)[:1000])
                self.store.set_instances_status(ident, "failed")
                self.event("db-cluster", ident, f"DB cluster could not be created: {str(message)[:500]}", "failure")
                return
            values = await self._follow_instances(ident, restart=True, applied=values) or values  # an instance added meanwhile
            await self._notify(ident)
            self.store.update_cluster(ident, status="available", status_message=None, applied_parameters=values)
            self.event("db-cluster", ident, "DB cluster created", "creation")
            for inst in self.store.list_instances(ident):
                if inst.status in ("creating", "failed"):
                    self.store.update_instance(inst.identifier, status="available")
                    self.event("db-instance", inst.identifier, "DB instance created", "creation")

    def add_instance(self, instance: Instance) -> None:
        self.store.add_instance(instance)
        cluster = self.store.get_cluster(instance.cluster_identifier)
        if cluster is not None and cluster.status == "available":
            self._run(cluster, "instance_ready", ident=instance.identifier)

    async def _instance_ready(self, ident: str) -> None:
        inst = self.store.get_instance(ident)
        if inst is None:
            return
        async with self._lock(inst.cluster_identifier):
            first = len(self.store.list_instances(inst.cluster_identifier)) == 1
            await self._follow_instances(inst.cluster_identifier, restart=first)
            await self._notify(inst.cluster_identifier)
            self.store.update_instance(ident, status="available")
            self.event("db-instance", ident, "DB instance created", "creation")

    def modify_instance(self, instance: Instance, instance_class: str) -> None:
        """A new instance class: the engine's max_connections follows (``_follow_instances``)."""
        self.store.update_instance(instance.identifier, instance_class=instance_class)
        cluster = self.store.get_cluster(instance.cluster_identifier)
        if cluster is not None:
            self._run(cluster, "modified_instance", cluster_ident=instance.cluster_identifier, ident=instance.identifier,
                      instance_class=instance_class)

    async def _modified_instance(self, cluster_ident: str, ident: str, instance_class: str) -> None:
        async with self._lock(cluster_ident):
            await self._follow_instances(cluster_ident, restart=False)
        self.event("db-instance", ident, f"Finished applying modification to DB instance class: {instance_class}",
                   "configuration change")

    def reset_master(self, cluster: Cluster, password: str, caller: str, request_id: str) -> Cluster:
        self.store.update_cluster(cluster.identifier, status="resetting-master-credentials")
        self._run(cluster, "reset_master", ident=cluster.identifier, password=password, caller=caller, request_id=request_id)
        return replace(cluster, status="resetting-master-credentials")

    async def _reset_master(self, ident: str, password: str, caller: str, request_id: str) -> None:
        async with self._lock(ident):
            cluster = self.store.get_cluster(ident)
            if cluster is None:
                return
            try:
                async with asyncio.timeout(ENGINE_TIMEOUT):
                    await self.driver.reset_master(self.spec(cluster), password)
            except (EngineError, TimeoutError) as exc:
                self.audit.event("rds.master_reset", verdict="error", principal=caller, cluster=ident, request_id=request_id,
                                 reason=getattr(exc, "message", "timeout"))
                self.store.update_cluster(ident, status="available", status_message="master credentials reset failed; retry ModifyDBCluster")
                self.event("db-cluster", ident, "Resetting the master credentials failed; retry ModifyDBCluster", "failure")
                return
            self.audit.event("rds.master_reset", verdict="allow", principal=caller, cluster=ident, request_id=request_id,
                             master_user=cluster.master_username)
            self.store.update_cluster(ident, status="available", status_message=None)
            self.event("db-cluster", ident, "Reset master credentials.", "configuration change")

    async def apply_dynamic(self, cluster: Cluster, changed: dict[str, str | None]) -> None:
        """Push changed dynamic engine settings to a running engine (gateway ones are read live).
        max_connections goes as the number the engine gets (``effective_parameters``)."""
        if not self.owns(cluster):
            if parameters.engine_settings_of(cluster.engine, changed):
                self._run(cluster, "apply_dynamic", ident=cluster.identifier, changed=changed)
            return
        if "max_connections" in changed:
            changed = {**changed, "max_connections": self.effective_parameters(cluster)["max_connections"]}
        settings = parameters.engine_settings_of(cluster.engine, changed)
        if not settings or cluster.status != "available":
            return
        async with self._lock(cluster.identifier):
            await self.driver.apply_dynamic_settings(self.spec(cluster), settings)
        applied = dict(cluster.applied_parameters)
        applied.update(changed)
        self.store.update_cluster(cluster.identifier, applied_parameters=applied)

    async def _apply_dynamic(self, ident: str, changed: dict[str, str | None]) -> None:
        """Queued by another host: the owner applies the change to its engine."""
        cluster = self.store.get_cluster(ident)
        if cluster is not None:
            await self.apply_dynamic(cluster, changed)

    async def apply_iam_auth(self, ident: str, *, wait: float = IAM_APPLY_WAIT) -> None:
        """``EnableIAMDatabaseAuthentication`` changed in the catalog: apply it to the engine now.
        The gateway reads the flag from the catalog for each new connection, so on the owner the
        call waits (up to ``wait`` seconds) until the engine agrees: the next login sees the new
        state on both sides. A cluster busy with a longer operation (a restart) gets it after that
        operation; a cluster of another host gets it queued to its owner."""
        cluster = self.store.get_cluster(ident)
        if cluster is None:
            return
        if not self.owns(cluster):
            self._run(cluster, "iam_auth", ident=ident)
            return
        applied = asyncio.get_running_loop().create_future()

        async def apply() -> None:
            try:
                await self._apply_iam_auth(ident)
            finally:
                if not applied.done():
                    applied.set_result(None)

        self._spawn(apply())
        try:
            await asyncio.wait_for(asyncio.shield(applied), wait)
        except TimeoutError:
            log.info("cluster %s: IAM database authentication is applied after the operation under way", ident)

    async def _apply_iam_auth(self, ident: str) -> None:
        async with self._lock(ident):
            cluster = self.store.get_cluster(ident)
            if cluster is None or cluster.status not in ("available", "resetting-master-credentials"):
                return  # a stopped or starting engine takes it from the spec at its next start
            try:
                async with asyncio.timeout(ENGINE_TIMEOUT):
                    await self.driver.set_iam_auth(self.spec(cluster))
            except (EngineError, TimeoutError) as exc:
                reason = getattr(exc, "message", None) or "timeout"
                log.error("cluster %s: applying IAM database authentication failed: %s", ident, reason)
                self.audit.event("rds.iam_auth_applied", verdict="error", cluster=ident, enabled=cluster.iam_auth,
                                 reason=reason)
                return
            self.audit.event("rds.iam_auth_applied", verdict="allow", cluster=ident, enabled=cluster.iam_auth)
            self.event("db-cluster", ident, f"IAM database authentication {'enabled' if cluster.iam_auth else 'disabled'}",
                       "configuration change")

    def reboot(self, instance: Instance) -> None:
        self.store.update_instance(instance.identifier, status="rebooting")
        cluster = self.store.get_cluster(instance.cluster_identifier)
        if cluster is not None:
            self._run(cluster, "restart", ident=instance.cluster_identifier, final_status="available",
                      rebooted=instance.identifier)

    async def _restart(self, ident: str, final_status: str, *, rebooted: str | None = None) -> None:
        async with self._lock(ident):
            cluster = self.store.get_cluster(ident)
            if cluster is None:
                return
            values = self.effective_parameters(cluster)
            try:
                async with asyncio.timeout(ENGINE_TIMEOUT):
                    await self.driver.stop(cluster.resource_id)
                    await self.driver.start(self.spec(cluster, values))
            except (EngineError, TimeoutError) as exc:
                message = getattr(exc, "log_line", None) or getattr(exc, "message", None) or "engine did not become ready in time"
                self.store.update_cluster(ident, status="incompatible-parameters", status_message=str(message)[:1000])
                self.store.set_instances_status(ident, "incompatible-parameters")
                self.event("db-cluster", ident, "The database engine could not start with the cluster's parameters: "
                           f"{str(message)[:500]}", "failure")
                return
            await self._notify(ident)
            pending = cluster.applied_parameters != values
            self.store.update_cluster(ident, status=final_status, status_message=None, applied_parameters=values)
            self.store.set_instances_status(ident, final_status)
            if rebooted is None:
                self.event("db-cluster", ident, "DB cluster started", "notification")
            else:
                self.event("db-instance", rebooted, "DB instance restarted", "availability")
            if pending:
                self.event("db-cluster", ident, f"Finished applying the parameter group {cluster.parameter_group} "
                           "(pending-reboot changes)", "configuration change")

    def stop(self, cluster: Cluster) -> None:
        self.store.update_cluster(cluster.identifier, status="stopping")
        self.store.set_instances_status(cluster.identifier, "stopping")
        self._run(cluster, "stop", ident=cluster.identifier)

    async def _stop(self, ident: str) -> None:
        async with self._lock(ident):
            cluster = self.store.get_cluster(ident)
            if cluster is None:
                return
            await self.driver.stop(cluster.resource_id)
            self.store.update_cluster(ident, status="stopped")
            self.store.set_instances_status(ident, "stopped")
            self.event("db-cluster", ident, "DB cluster stopped", "notification")
        await self._notify(ident)

    def start(self, cluster: Cluster) -> None:
        self.store.update_cluster(cluster.identifier, status="starting")
        self.store.set_instances_status(cluster.identifier, "starting")
        self._run(cluster, "restart", ident=cluster.identifier, final_status="available")

    def delete(self, cluster: Cluster) -> None:
        self.store.update_cluster(cluster.identifier, status="deleting")
        self._run(cluster, "delete", ident=cluster.identifier)

    async def _delete(self, ident: str) -> None:
        async with self._lock(ident):
            cluster = self.store.get_cluster(ident)
            if cluster is None:
                return
            try:
                await self.driver.destroy(cluster.resource_id)
            except EngineError as exc:
                log.error("cluster %s: engine removal failed: %s", ident, exc.message)
            self.store.delete_cluster(ident)
            self.event("db-cluster", ident, "DB cluster deleted", "deletion")
        self._locks.pop(ident, None)
        await self._notify(ident)

    def delete_instance(self, instance: Instance) -> None:
        self.store.update_instance(instance.identifier, status="deleting")
        cluster = self.store.get_cluster(instance.cluster_identifier)
        if cluster is not None:
            self._run(cluster, "delete_instance", ident=instance.identifier, cluster_ident=instance.cluster_identifier)

    async def _delete_instance(self, ident: str, cluster_ident: str) -> None:
        async with self._lock(cluster_ident):
            self.store.delete_instance(ident)
            self.event("db-instance", ident, "DB instance deleted", "deletion")
            remaining = self.store.list_instances(cluster_ident)
            if remaining and not any(i.is_writer for i in remaining):
                self.store.update_instance(remaining[0].identifier, is_writer=True)
            if remaining:
                await self._follow_instances(cluster_ident, restart=False)
        await self._notify(cluster_ident)

    def engine_state(self, cluster: Cluster) -> tuple[str | None, str | None]:
        """(state, last log line) of the cluster's engine as the supervisor sees it now."""
        if not self.owns(cluster):
            return None, None  # its engine runs on its own host
        try:
            status = self.driver.status(cluster.resource_id)
        except Exception:
            return None, None
        return getattr(status, "state", None), getattr(status, "last_log_line", None)

    async def recover(self, has_local_data: Callable[[str], bool] | None = None) -> None:
        """Bring every cluster this host owns back as the catalog records it (called once at
        start). On a shared catalog, a cluster without an owner (made before it was shared)
        becomes this host's when its data is here (``has_local_data(resource_id)``)."""
        for cluster in self.store.list_clusters():
            if self.fleet is not None and cluster.owner is None and has_local_data and has_local_data(cluster.resource_id):
                self.store.update_cluster(cluster.identifier, owner=self.fleet.node)
                cluster = replace(cluster, owner=self.fleet.node)
            if not self.owns(cluster):
                continue  # another host's: its data, its engine, its status
            if cluster.status == "deleting":
                self._spawn(self._delete(cluster.identifier))
            elif cluster.status in ("stopped", "stopping"):
                self.store.update_cluster(cluster.identifier, status="stopped")
                self.store.set_instances_status(cluster.identifier, "stopped")
            elif cluster.status == "creating" and self.fleet is not None and self.fleet.work.pending(cluster.identifier):
                continue  # asked of another host while this one was away: its work row provisions it now
            elif cluster.status == "creating":
                # Provisioning was interrupted: the master password is not kept, so the cluster
                # cannot be bootstrapped again. Report it instead of guessing.
                self.store.update_cluster(cluster.identifier, status="failed",
                                          status_message="dbkeep stopped while the cluster was being created; delete it and create it again")
                self.store.set_instances_status(cluster.identifier, "failed")
            elif cluster.status != "failed":
                self.store.update_cluster(cluster.identifier, status="starting")
                self._spawn(self._restart(cluster.identifier, "available"))
