"""Prometheus metrics of one ``dbkeep up`` (``GET /metrics`` on the API's port).

What the gateway and the control plane decide is already an audit event, so the counters are fed
by the audit log (:meth:`Metrics.observe`), not by code on the relay's path: a login, a refusal,
a guard refusal, a master reset, a repair each move one counter as their event is written. The
refusals the gateway only counts (a flood's, see ``gateway/refusals.py``) arrive through
:meth:`Metrics.tally`; a login event's ``login_ms`` (accept to verdict) feeds the login latency
histogram. What is a state rather than an event (connections open and accepted, bytes relayed,
engine up, engine restarts) is read when scraped, by a collector over the live objects: the
gateway only moves plain integers (the native relay its C counters) and nothing is computed
between scrapes. The official ``prometheus_client`` library renders the text format,
with a registry of this process's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST
# statement-guard refusals, whatever the guard names its event
GUARD_EVENTS = frozenset({"gateway.statement_refused", "gateway.guard_refused"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ClusterState(NamedTuple):
    """What the collector reads of one cluster when scraped (``Metrics.watch``)."""

    cluster: str
    engine_up: bool
    engine_restarts: int
    connections_open: int
    connections_accepted: int
    bytes_to_engine: int  # from clients, relayed to the engine
    bytes_to_client: int  # from the engine, relayed to clients


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.api_requests = Counter("dbkeep_api_requests", "Management API calls by service, action and HTTP status",
                                    ["service", "action", "status"], registry=r)
        self.api_seconds = Histogram("dbkeep_api_request_duration_seconds", "Management API call latency",
                                     ["service"], registry=r, buckets=LATENCY_BUCKETS)
        self.login_seconds = Histogram("dbkeep_gateway_login_duration_seconds",
                                       "Database login latency at the gateway, from accept to the login's verdict",
                                       ["cluster", "method"], registry=r, buckets=LATENCY_BUCKETS)
        self.logins = Counter("dbkeep_gateway_logins", "Database logins at the gateway by cluster, method and verdict",
                              ["cluster", "method", "verdict"], registry=r)
        self.refused = Counter("dbkeep_gateway_connections_refused",
                               "Connections refused before a login (security group, TLS policy, limits, timeouts)",
                               ["cluster", "reason"], registry=r)
        self.guard = Counter("dbkeep_guard_refusals", "Statements refused by the gateway's statement guard "
                             "(rule: the guard's rule, else the SQLSTATE it answered)", ["cluster", "rule"], registry=r)
        self.resets = Counter("dbkeep_master_resets", "Master password resets by cluster and verdict",
                              ["cluster", "verdict"], registry=r)
        self.repairs = Counter("dbkeep_engine_repairs", "Repairs dbkeep made to an engine (rdsadmin, privileges)",
                               ["cluster"], registry=r)
        self._state: Callable[[], Iterable[Any]] | None = None
        r.register(_StateCollector(self))

    # --- fed by the audit log ---------------------------------------------------------------
    def observe(self, kind: str, verdict: str, fields: Mapping[str, Any]) -> None:
        cluster = str(fields.get("cluster") or "")
        if kind == "gateway.login":
            method = str(fields.get("method") or "password")
            self.logins.labels(cluster, method, verdict).inc()
            elapsed = fields.get("login_ms")
            if elapsed is not None:
                self.login_seconds.labels(cluster, method).observe(float(elapsed) / 1000)
        elif kind == "gateway.connection_refused":
            self.refused.labels(cluster, str(fields.get("reason") or "")).inc()
        elif kind in GUARD_EVENTS:
            self.guard.labels(cluster, str(fields.get("rule") or fields.get("sqlstate") or "")).inc()
        elif kind == "rds.master_reset":
            self.resets.labels(cluster, verdict).inc()
        elif kind == "engine.repaired":
            self.repairs.labels(cluster).inc()

    def tally(self, kind: str, fields: Mapping[str, Any]) -> None:
        """A counted refusal without an audit line of its own (it is in a later summary)."""
        self.observe(kind, "deny", fields)

    # --- read when scraped ------------------------------------------------------------------
    def watch(self, state: Callable[[], Iterable[ClusterState]]) -> None:
        """``state()`` yields a :class:`ClusterState` per cluster, when scraped."""
        self._state = state

    def api_call(self, service: str, action: str, status: int, started: float) -> None:
        self.api_requests.labels(service, action, str(status)).inc()
        self.api_seconds.labels(service).observe(time.perf_counter() - started)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> list:
        return []  # its families depend on what runs: collected only

    def collect(self) -> Iterable[Any]:
        up = GaugeMetricFamily("dbkeep_engine_up", "1 while the cluster's engine answers, else 0", labels=["cluster"])
        restarts = CounterMetricFamily("dbkeep_engine_restarts", "Restarts of the cluster's engine after it stopped",
                                       labels=["cluster"])
        open_ = GaugeMetricFamily("dbkeep_gateway_connections_open", "Client connections open at the gateway",
                                  labels=["cluster"])
        accepted = CounterMetricFamily("dbkeep_gateway_connections_accepted",
                                       "Client connections the security groups and limits admitted", labels=["cluster"])
        relayed = CounterMetricFamily("dbkeep_gateway_bytes_relayed", "Bytes relayed between clients and the engine "
                                      "(direction client_to_engine or engine_to_client)", labels=["cluster", "direction"])
        state = self._metrics._state
        for s in (state() if state else ()):
            up.add_metric([s.cluster], 1.0 if s.engine_up else 0.0)
            restarts.add_metric([s.cluster], float(s.engine_restarts))
            open_.add_metric([s.cluster], float(s.connections_open))
            accepted.add_metric([s.cluster], float(s.connections_accepted))
            relayed.add_metric([s.cluster, "client_to_engine"], float(s.bytes_to_engine))
            relayed.add_metric([s.cluster, "engine_to_client"], float(s.bytes_to_client))
        return [up, restarts, open_, accepted, relayed]
