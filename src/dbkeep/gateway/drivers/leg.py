"""One side of a gateway session: the transport it owns, its flow control, TLS upgrade and close.

Theory of operation (as PgBouncer's ``sbuf.c`` serves both of its sides): a session has two
legs, the client's and the engine's, and every session driver does the same things to each:

- **Flow control by watermarks.** Every transport's write buffer has the limits
  :data:`WRITE_HIGH`/:data:`WRITE_LOW`; when one leg's buffer passes the high mark, the other
  leg stops reading (:meth:`Leg.pause` with a reason) until it drains (:meth:`Leg.resume`).
  A leg reads again only when no reason to pause is left: the peer's full buffer
  (:data:`PEER`) and the protocol's "not a byte more now" (:data:`LIMIT`, e.g. behind an
  SSLRequest) are independent.
- **TLS upgrade.** :meth:`Leg.start_tls` runs ``loop.start_tls`` on the current transport;
  bytes the TLS transport delivers before the driver has told its protocol object about the
  upgrade are kept in :attr:`Leg.hold` and handed back by :meth:`Leg.established`.
- **Close with a grace.** :meth:`Leg.close` flushes; a peer that reads nothing cannot hold the
  socket open longer than :data:`CLOSE_GRACE`. :meth:`Leg.abort` drops everything.

A leg holds no protocol knowledge and no session state: the per-chunk paths of the drivers
use ``leg.transport`` directly (its ``write`` is the hot path).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

__all__ = ["CLOSE_GRACE", "LIMIT", "PEER", "WRITE_HIGH", "WRITE_LOW", "Leg"]

# Write buffers: above HIGH the other side stops reading; below LOW it reads again.
WRITE_HIGH = 256 * 1024
WRITE_LOW = 64 * 1024
CLOSE_GRACE = 10.0  # a closing transport whose peer reads nothing is aborted after this

# Reasons to stop reading a leg.
PEER = "peer"  # the other leg's write buffer is above its high-water mark
LIMIT = "limit"  # the protocol allows no further byte now (an SSLRequest was read; TLS upgrade)


class Leg:
    """One transport of a session (the client's or the engine's).

    ``transport`` is the current one (the TLS transport after an upgrade), ``raw`` the socket's
    own transport under it. ``hold`` collects data delivered during a TLS upgrade (None when no
    upgrade is under way).
    """

    __slots__ = ("_pauses", "hold", "raw", "transport")

    def __init__(self, transport: asyncio.Transport | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.raw: asyncio.Transport | None = None
        self.hold: list[bytes] | None = None
        self._pauses: set[str] = set()
        if transport is not None:
            self.attach(transport)

    def attach(self, transport: asyncio.Transport) -> None:
        """The leg's socket is connected: ``transport`` is its transport."""
        self.transport = self.raw = transport
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)

    @property
    def tls(self) -> bool:
        """Whether the leg runs TLS (its transport is not the socket's own)."""
        return self.transport is not self.raw

    @property
    def under(self) -> asyncio.Transport | None:
        """The socket's transport under TLS; None in cleartext."""
        return self.raw if self.transport is not self.raw else None

    # --- output -----------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if data and self.transport is not None:
            self.transport.write(data)

    def write_if_open(self, data: bytes) -> None:
        """Write unless the transport is gone or closing (replies of the gateway's own)."""
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    # --- flow control -----------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return bool(self._pauses)

    def pause(self, reason: str) -> None:
        """Stop reading for ``reason`` (reading resumes when every reason is gone)."""
        transport = self.transport
        if transport is None:
            return
        if not self._pauses:
            transport.pause_reading()
        self._pauses.add(reason)

    def resume(self, reason: str) -> None:
        if reason not in self._pauses:
            return
        self._pauses.discard(reason)
        transport = self.transport
        if not self._pauses and transport is not None and not transport.is_closing():
            transport.resume_reading()

    # --- TLS --------------------------------------------------------------------------------

    async def start_tls(self, protocol: Any, context: ssl.SSLContext, *, server_side: bool,
                        timeout: float) -> asyncio.Transport:
        """Upgrade the current transport to TLS with ``protocol`` as the TLS transport's
        protocol. A driver that must keep data delivered before :meth:`established` sets
        :attr:`hold` to a list first (before reading could resume)."""
        raw = self.transport
        assert raw is not None
        transport = await asyncio.get_running_loop().start_tls(raw, protocol, context, server_side=server_side,
                                                              ssl_handshake_timeout=timeout)
        assert transport is not None
        return transport

    def established(self, transport: asyncio.Transport) -> list[bytes]:
        """The TLS handshake is done: ``transport`` is the leg's transport from now on (it reads:
        ``start_tls`` resumed the raw one). Returns the data held meanwhile."""
        self.transport = transport
        self._pauses.clear()
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        held, self.hold = self.hold or [], None
        return held

    # --- end --------------------------------------------------------------------------------

    def close(self, *, grace: float | None = CLOSE_GRACE) -> None:
        """Close after flushing; with ``grace``, abort if the peer has not read it all by then."""
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
            if grace is not None and transport.get_write_buffer_size():
                # a peer that reads nothing cannot hold the socket open forever
                asyncio.get_running_loop().call_later(grace, transport.abort)

    def abort(self) -> None:
        for transport in (self.transport, self.raw):
            if transport is not None:
                transport.abort()
