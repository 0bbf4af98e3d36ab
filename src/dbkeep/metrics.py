"""Prometheus metrics of one ``dbkeep up`` (``GET /metrics`` on the API's port).

What the gateway and the control plane decide is already an audit event, so the counters are fed
by the audit log (:meth:`Metrics.observe`), not by code on the relay's path: a login, a refusal,
a guard refusal, a master reset, a repair each move one counter as their event is written. The
refusals the gateway only counts (a flood's, see ``gateway/refusals.py``) arrive through
:meth:`Metrics.tally`. What is a state rather than an event (connections open, engine up,
engine restarts) is read when scraped, by a collector over the live objects: nothing is
computed between scrapes. The official ``prometheus_client`` library renders the text format,
with a registry of this process's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.api_requests = Counter("dbkeep_api_requests", "Management API calls by service, action and HTTP status",
                                    ["service", "action", "status"], registry=r)
        self.api_seconds = Histogram("dbkeep_api_request_duration_seconds", "Management API call latency",
                                     ["service"], registry=r,
                                     buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.logins = Counter("dbkeep_gateway_logins", "Database logins at the gateway by cluster, method and verdict",
                              ["cluster", "method", "verdict"], registry=r)
        self.refused = Counter("dbkeep_gateway_connections_refused",
                               "Connections refused before a login (security group, TLS policy, limits, timeouts)",
                               ["cluster", "reason"], registry=r)
        self.guard = Counter("dbkeep_guard_refusals", "Statements refused by the gateway's statement guard",
                             ["cluster", "rule"], registry=r)
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
            self.logins.labels(cluster, str(fields.get("method") or "password"), verdict).inc()
        elif kind == "gateway.connection_refused":
            self.refused.labels(cluster, str(fields.get("reason") or "")).inc()
        elif kind == "gateway.statement_refused":
            self.guard.labels(cluster, str(fields.get("rule") or "")).inc()
        elif kind == "rds.master_reset":
            self.resets.labels(cluster, verdict).inc()
        elif kind == "engine.repaired":
            self.repairs.labels(cluster).inc()

    def tally(self, kind: str, fields: Mapping[str, Any]) -> None:
        """A counted refusal without an audit line of its own (it is in a later summary)."""
        self.observe(kind, "deny", fields)

    # --- read when scraped ------------------------------------------------------------------
    def watch(self, state: Callable[[], Iterable[Any]]) -> None:
        """``state()`` yields (cluster, engine up: bool, engine restarts: int, connections open: int)."""
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
        state = self._metrics._state
        for cluster, is_up, restart_count, connections in (state() if state else ()):
            up.add_metric([cluster], 1.0 if is_up else 0.0)
            restarts.add_metric([cluster], float(restart_count))
            open_.add_metric([cluster], float(connections))
        return [up, restarts, open_]
