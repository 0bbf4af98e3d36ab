"""Counting refused connections without flooding the audit log.

A flood of connections that are refused (too many pending logins from one source, too many
connections to a cluster), closed for saying nothing in time (first-byte timeout, handshake
timeout) or that end before any login verdict (a protocol error, a failed TLS handshake, a
client that hangs up, an engine that cannot be reached) would otherwise write one audit event per connection: an attacker could fill the disk
or drown the events that matter. :class:`RefusalLog` writes, per (cluster, source, reason):

- ``gateway.connection_refused`` at once for the first refusal (verdict ``deny``; fields
  ``cluster``, ``source_ip``, ``reason``, ``port`` and whatever the caller knows, such as ``user``);
- then counts; at most every ``interval`` seconds, for each key that refused more since its
  last event, one ``gateway.connection_refused_summary`` (verdict ``deny``; ``cluster``,
  ``source_ip``, ``reason``, ``count`` (refusals not reported before), ``first`` and ``last``
  (times of the first and last of them), ``interval``);
- a key quiet for a whole interval is forgotten, so its next refusal is again reported at once.

At most :data:`MAX_KEYS` keys are tracked; beyond that, refusals are counted under the source
``*`` (many sources), so the table stays bounded whatever the number of sources. Summaries of
what is counted are written when the gateway closes (:meth:`flush`).

Sources are addresses; IPv6 addresses count per /64 (:func:`source_key`), since one IPv6 host
usually holds a whole /64.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

MAX_KEYS = 4096
MANY_SOURCES = "*"

# reasons (the ``reason`` field)
PENDING_LIMIT = "too many pending logins from this source"
CLUSTER_LIMIT = "too many connections"
FIRST_BYTE_TIMEOUT = "first byte timeout"
HANDSHAKE_TIMEOUT = "handshake timeout"
# a connection that ended before any login verdict (``detail`` says more where known)
PROTOCOL_ERROR = "protocol error"
TLS_FAILED = "TLS handshake failed"
CLIENT_CLOSED = "client closed the connection"
ENGINE_UNAVAILABLE = "engine unavailable"
INTERNAL_ERROR = "internal error"
CLOSED_BEFORE_LOGIN = "closed before the login"


class _Audit(Protocol):
    def event(self, kind: str, *, verdict: str, **fields: Any) -> None: ...


class _Clock(Protocol):
    def now(self) -> datetime: ...


def source_key(host: str) -> str:
    """The unit a source is counted in: an IPv4 address (IPv4-mapped IPv6 included), an IPv6
    /64, or the text itself when it is not an address."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass
class _Count:
    count: int = 0  # refusals since the last event
    first: datetime | None = None
    last: datetime | None = None


class RefusalLog:
    """See the module docstring. ``schedule`` (default: the running loop's ``call_later``)
    arms the periodic summary; tests pass their own and call :meth:`flush`."""

    def __init__(self, audit: _Audit, clock: _Clock, interval: float, *, schedule: Any = None) -> None:
        self._audit = audit
        self._clock = clock
        self.interval = interval
        self._schedule = schedule
        self._counts: dict[tuple[str, str, str], _Count] = {}
        self._timer: Any = None

    def refused(self, cluster: str, source: str, reason: str, **fields: Any) -> None:
        key_source = source_key(source)
        key = (cluster, key_source, reason)
        entry = self._counts.get(key)
        if entry is None:
            if len(self._counts) >= MAX_KEYS - 1:  # the last key is "*"
                key = (cluster, MANY_SOURCES, reason)
                entry = self._counts.get(key)
            if entry is None:
                self._counts[key] = _Count()
                self._audit.event("gateway.connection_refused", verdict="deny", cluster=cluster, source_ip=source,
                                  reason=reason, **fields)
                self._arm()
                return
        now = self._clock.now()
        if entry.count == 0:
            entry.first = now
        entry.count += 1
        entry.last = now
        tally = getattr(self._audit, "tally", None)  # counted now (metrics), written in the summary
        if tally is not None:
            tally("gateway.connection_refused", cluster=cluster, source_ip=source, reason=reason)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            return
        schedule = self._schedule
        if schedule is None:
            try:
                schedule = asyncio.get_running_loop().call_later
            except RuntimeError:
                return  # no loop (a unit test): summaries only on flush()
        self._timer = schedule(self.interval, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.flush(forget_quiet=True)
        if self._counts:
            self._arm()

    def flush(self, *, forget_quiet: bool = False) -> None:
        """One summary per key that counted refusals since its last event. With
        ``forget_quiet`` (the periodic tick), keys with nothing to report are forgotten."""
        for key, entry in list(self._counts.items()):
            if entry.count:
                cluster, source, reason = key
                self._audit.event("gateway.connection_refused_summary", verdict="deny", cluster=cluster, source_ip=source,
                                  reason=reason, count=entry.count, first=entry.first.isoformat(timespec="milliseconds") if entry.first else None,
                                  last=entry.last.isoformat(timespec="milliseconds") if entry.last else None, interval=self.interval)
                entry.count, entry.first, entry.last = 0, None, None
            elif forget_quiet:
                del self._counts[key]

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.flush()
