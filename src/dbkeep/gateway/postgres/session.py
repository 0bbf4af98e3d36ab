"""The PostgreSQL session driver: one client connection relayed to its cluster's engine.

Theory of operation (PostgreSQL documentation, "Frontend/Backend Protocol"; DESIGN.md, house
style). :class:`PostgresSession` is the ``asyncio.Protocol`` of one accepted client socket; it
feeds every byte through a sans-I/O :class:`~.connection.ClientFacing` and, once the client has
sent its StartupMessage, opens the engine leg, a second small protocol (:class:`_EngineLeg`)
feeding an :class:`~.connection.EngineFacing`, over the engine's private unix socket. The flow
is the one the connection module's docstring draws:

1. **Encryption.** SSLRequest is answered ``S`` when the cluster has a certificate, else ``N``;
   GSSENCRequest always ``N``. TLS starts with ``loop.start_tls`` on the raw transport only
   after the sans-I/O layer checked that no cleartext byte is buffered behind the request
   ("TLS only on an empty buffer"), and reading is paused in the same callback, so the
   ClientHello stays in the kernel until the TLS object reads it. A connection opening with a
   TLS record is direct TLS (``sslnegotiation=direct``): the bytes already read are handed to
   the TLS protocol ``start_tls`` installed, before it reads from the socket, and ALPN
   ``postgresql`` is required. CancelRequest: the gateway key is looked up
   (:mod:`.cancel`) and the engine's own key is sent to the engine; then both close.
2. **Start-up checks** at the gateway, in the server's order (``ProcessStartupPacket``, then
   ``pg_hba.conf``): the per-cluster connection limit (``53300 sorry, too many clients
   already``; a source over its limit of connections not yet logged in gets the same FATAL at
   accept, before it has sent anything, listener.py; both are counted, not logged one by one:
   ``gateway/refusals.py``); the login name ``rdsadmin`` (a reject line: ``28000 pg_hba.conf rejects
   connection ...``); ``rds.force_ssl`` on a cleartext connection (``28000 no pg_hba.conf
   entry for host "ADDR", user "USER", database "DB", SSL off``, SPEC.md); replication
   connections (physical or logical walsenders: ``28000 no pg_hba.conf entry for replication
   connection ...``). Run-time settings in the StartupMessage (``options=-c name=value``, or
   a parameter named after a setting) are applied by the engine with the user's own
   privileges, exactly as a ``SET`` would be; when a statement guard is installed it sees
   each of them as a ``SET name TO 'value'`` statement and may refuse the login (FATAL with
   its error), and other ``options`` switches are refused. An engine that cannot be reached
   within ``engine_connect_timeout`` (down, restarting, socket missing) gives ``57P03 the
   database system is starting up``.
3. **Authentication is relayed**, message by message (SCRAM, MD5, cleartext as the engine
   asks); the gateway never sees a password it could use. BackendKeyData is replaced by a
   gateway key (released when the session ends). The login's outcome is one audit event:
   ``allow`` at ReadyForQuery, ``deny`` with the engine's (or the gateway's) error, or when
   the client leaves or times out before finishing.
4. **Query phase.** With a statement guard installed (``ctx.guard``), client messages are
   framed and bounded by ``ClientFacing`` (``Limits.max_packet``); Query, Parse and
   FunctionCall go to the guard (a refusal is sent through :meth:`ClientFacing.refuse`, so
   order and transaction state stay exact); everything a chunk yields is written to the
   engine in one ``write``, and engine output is relayed in the runs it arrives in, its
   message boundaries tracked. Without a guard there is nothing to inspect: the session's
   sockets (and its TLS object) are handed to the **native relay** threads
   (``ctx.offload``, ``gateway/offload.py``), which copy bytes without the GIL and report the
   session's end, after which it is released here. Without those threads, or when a
   hand-over is refused, the session becomes the event loop's **raw relay**
   (:meth:`PostgresSession._go_raw`): each transport's ``data_received`` is the other
   transport's ``write``, called by the event loop from C with the chunk it read, so the
   gateway adds no Python frame and no copy per chunk.
   Framing and message-size limits are then the engine's own (PostgreSQL checks every
   message it reads; the gateway buffers nothing it could be made to grow). Flow control,
   both ways and in both modes: when one side's write buffer passes ``WRITE_HIGH`` the
   other side stops reading until it drains below ``WRITE_LOW``, so a result or a COPY of
   any size never accumulates here; a client's half-close reaches the engine as EOF.
5. **Limits and faults.** ``first_byte_timeout`` bounds the wait for the client's first
   byte, ``handshake_timeout`` the time from accept to ReadyForQuery; on expiry (counted with
   the source's refusals) the connection is closed without a message, as the server does on
   ``authentication_timeout`` (it cannot know whether the client is able to read one). A
   protocol violation gets the sans-I/O layer's error reply (written only where a message
   boundary is known), then close. An engine that goes away closes the client connection
   after relaying what it sent (PostgreSQL's own ``57P01``/``57P02`` FATAL when it had a
   chance to send one). No exception leaves a callback: an unexpected one is logged with
   an id and ends that session only.

Hot path (the query phase, native or raw relay): no Python at all per chunk; guarded sessions: two plain
callbacks per round trip, no coroutine, no copy on the engine-to-client side. Coroutines are
used once per connection only (TLS handshake, engine connect, CancelRequest), each a task the
session owns and cancels when it ends.

Differences from a direct connection that a client can see: ``SSL`` in ``pg_stat_ssl`` and
``SHOW ssl`` describe the engine's side (a private unix socket: no TLS) — the client's TLS is
the gateway's and is recorded in the login audit event; ``inet_client_addr()`` is NULL for
the same reason.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid

from dbkeep.errors import DbError, LocalProtocolError, ProtocolError, RemoteProtocolError
from dbkeep.gateway import refusals
from dbkeep.gateway.listener import GatewayContext, GatewaySession

from .cancel import CancelKeyRegistry
from .connection import NEED_DATA, PAUSED, ClientFacing, EngineFacing
from .messages import (
    BackendData,
    BackendKeyData,
    CancelRequest,
    ConnectionClosed,
    DirectTlsHello,
    ErrorResponse,
    FrontendMessage,
    FunctionCall,
    GSSENCRequest,
    GSSENCResponse,
    Parse,
    Query,
    ReadyForQuery,
    SSLRequest,
    SSLResponse,
    StartupMessage,
    Sync,
    Terminate,
)
from .wire import Limits as WireLimits

log = logging.getLogger("dbkeep.gateway.postgres")

__all__ = ["PostgresSession", "cancel_keys", "startup_settings"]

CANCEL_KEYS = "postgres.cancel_keys"
_WIRE_LIMITS = "postgres.wire_limits"
RDSADMIN = "rdsadmin"
# Write buffers: above HIGH the other side stops reading; below LOW it reads again.
WRITE_HIGH = 256 * 1024
WRITE_LOW = 64 * 1024
_CLOSE_GRACE = 10.0  # a closing transport whose peer reads nothing is aborted after this
_FALSEY = frozenset(("", "0", "false", "off", "no", "f", "n"))
# StartupMessage parameters that are not run-time settings
_NOT_SETTINGS = frozenset(("user", "database", "replication", "options"))

TOO_MANY_CLIENTS = ErrorResponse.create("FATAL", "53300", "sorry, too many clients already")

# phases of a session
_STARTING, _CONNECTING, _LOGIN, _READY, _CLOSED = range(5)


def cancel_keys(ctx: GatewayContext) -> CancelKeyRegistry[tuple[str, str]]:
    """The gateway-wide registry of cancel keys: client key -> (engine key, (cluster, socket))."""
    registry = ctx.extra.get(CANCEL_KEYS)
    if registry is None:
        registry = ctx.extra[CANCEL_KEYS] = CancelKeyRegistry()
    return registry  # type: ignore[no-any-return]


def _wire_limits(ctx: GatewayContext) -> WireLimits:
    limits = ctx.extra.get(_WIRE_LIMITS)
    if limits is None:
        limits = ctx.extra[_WIRE_LIMITS] = WireLimits(max_message=ctx.limits.max_packet)
    return limits  # type: ignore[no-any-return]


def _split_options(options: str) -> list[str]:
    """``options`` split as the server splits it (``pg_split_opts``): on whitespace, with a
    backslash taking the next character literally."""
    out: list[str] = []
    current: list[str] = []
    pending = False
    escaped = False
    for ch in options:
        if escaped:
            current.append(ch)
            escaped = False
            pending = True
        elif ch == "\\":
            escaped = True
            pending = True
        elif ch.isspace():
            if pending:
                out.append("".join(current))
                current, pending = [], False
        else:
            current.append(ch)
            pending = True
    if pending:
        out.append("".join(current))
    return out


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def startup_settings(startup: StartupMessage) -> list[tuple[str, str]] | None:
    """The run-time settings a StartupMessage asks for, as (name, value) pairs: parameters
    named after settings, then ``-c name=value`` / ``--name=value`` in ``options``. None
    when ``options`` holds any other server switch (``-d 5``, ``-e`` ...)."""
    settings = [(n, v) for n, v in startup.parameters if n not in _NOT_SETTINGS and not n.startswith("_pq_.")]
    words = _split_options(startup.options or "")
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            item, i = words[i + 1], i + 2
        elif word.startswith("-c") and len(word) > 2:
            item, i = word[2:], i + 1
        elif word.startswith("--") and len(word) > 2:
            item, i = word[2:], i + 1
        else:
            return None
        name, sep, value = item.partition("=")
        if not sep or not name:
            return None
        settings.append((name.replace("-", "_"), value))
    return settings


def _pg_hba_host(session: GatewaySession) -> str:
    return session.peer_host or "[local]"


class _EngineLeg(asyncio.Protocol):
    """The engine socket's protocol: hands everything to its session (plain callbacks).

    In a raw relay its ``data_received`` is replaced by the client transport's ``write``.
    """

    def __init__(self, session: PostgresSession) -> None:
        self.session = session
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.session._engine_data(data)

    def eof_received(self) -> bool:
        self.session._engine_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.session._engine_lost(exc)

    def pause_writing(self) -> None:  # the engine is not keeping up with the client
        self.session._pause_client()

    def resume_writing(self) -> None:
        self.session._resume_client()


class _CancelLeg(asyncio.Protocol):
    """A CancelRequest connection to the engine: waits for the engine to close it."""

    def __init__(self) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class PostgresSession(GatewaySession):
    """One PostgreSQL client connection at a cluster endpoint (see the module docstring).

    What a statement guard may read: ``user``, ``database``, ``startup`` (the StartupMessage),
    ``client`` (its ``parameters``, ``client_encoding``, ``tls_in_use``), ``engine``
    (``transaction_status``, ``parameters``) and ``statement`` (the Query, Parse or
    FunctionCall being judged; the guard is called with its ``sql``, ``None`` when the text
    cannot be decoded or for a FunctionCall).
    """

    # Unguarded sessions relay the query phase as raw bytes (see _go_raw); False keeps the
    # framed relay through ClientFacing for every session.
    RAW_RELAY = True

    def __init__(self, ctx: GatewayContext, identifier: str, port: int) -> None:
        super().__init__(ctx, identifier, port)
        self.id = uuid.uuid4().hex[:12]
        self.client = ClientFacing(limits=_wire_limits(ctx))
        self.engine: EngineFacing | None = None
        self.startup: StartupMessage | None = None
        self.statement: Query | Parse | FunctionCall | None = None
        self._phase = _STARTING
        self._engine_transport: asyncio.Transport | None = None
        self._raw_transport: asyncio.Transport | None = None
        self._client_key: BackendKeyData | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._first_byte: asyncio.TimerHandle | None = None
        self._login_audited = False
        self._client_paused = False
        self._engine_paused = False
        self._guard = ctx.guard
        self._offloaded: int | None = None  # the native relay's handle while it relays this session

    # --- properties a guard may read --------------------------------------------------------

    @property
    def user(self) -> str | None:
        return self.startup.user if self.startup else None

    @property
    def database(self) -> str | None:
        return self.startup.database if self.startup else None

    # --- lifecycle --------------------------------------------------------------------------

    def admitted(self) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.ctx.limits.handshake_timeout, self._handshake_timeout)
        self._first_byte = loop.call_later(self.ctx.limits.first_byte_deadline, self._first_byte_timeout)
        self.transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)

    def refusal_bytes(self) -> bytes:
        return TOO_MANY_CLIENTS.build()

    def _first_byte_timeout(self) -> None:
        self._first_byte = None
        if self._phase != _STARTING:
            return
        log.debug("postgres session %s (cluster %s, %s): nothing sent within %.1f s; closed", self.id, self.identifier,
                  self.peer_host, self.ctx.limits.first_byte_deadline)
        self.refuse(refusals.FIRST_BYTE_TIMEOUT)
        self._abort()

    def _internal_error(self, exc: BaseException | None) -> None:
        error_id = uuid.uuid4().hex[:12]
        log.error("postgres session %s (cluster %s, %s): internal error %s", self.id, self.identifier, self.peer_host,
                  error_id, exc_info=exc)
        self._audit_failed_login("internal error " + error_id)
        self._abort()

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self._phase >= _READY:
            return
        log.debug("postgres session %s (cluster %s, %s): login not finished within %.0f s; closed", self.id,
                  self.identifier, self.peer_host, self.ctx.limits.handshake_timeout)
        # counted with the other refusals of its source, not one login event per connection
        self._login_audited = True
        self.refuse(refusals.HANDSHAKE_TIMEOUT, user=self.user)
        self._abort()

    def closed(self, exc: Exception | None) -> None:
        """The client connection is gone (connection_lost): release everything."""
        if self._phase != _CLOSED:
            self._audit_failed_login("client closed the connection")
        self._finish()

    def _finish(self) -> None:
        self._phase = _CLOSED
        # released here, not only in connection_lost: a transport that dies inside a TLS
        # handshake never reports connection_lost to this protocol
        self.uncount()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._first_byte is not None:
            self._first_byte.cancel()
            self._first_byte = None
        for task in list(self._tasks):
            task.cancel()
        if self._client_key is not None:
            cancel_keys(self.ctx).release(self._client_key)
            self._client_key = None
        if self._engine_transport is not None and not self._engine_transport.is_closing():
            self._engine_transport.close()

    def _close(self) -> None:
        """End the session after flushing what was written to the client."""
        if self._offloaded is not None:  # the relay owns the sockets: it ends the session
            self.ctx.offload.close(self._offloaded)  # type: ignore[union-attr]
            return
        self._finish()
        transport = self.transport  # the TLS transport closes the raw one after close_notify
        if transport is not None and not transport.is_closing():
            transport.close()
            if transport.get_write_buffer_size():
                # a client that reads nothing cannot hold the socket open forever
                asyncio.get_running_loop().call_later(_CLOSE_GRACE, transport.abort)

    def _abort(self) -> None:
        if self._offloaded is not None:
            self.ctx.offload.close(self._offloaded)  # type: ignore[union-attr]
            return
        self._finish()
        for transport in (self.transport, self._raw_transport):
            if transport is not None:
                transport.abort()
        if self._engine_transport is not None:
            self._engine_transport.abort()

    def _audit_failed_login(self, reason: str) -> None:
        if self._login_audited or self.startup is None:
            return
        self._login_audited = True
        self.audit_login(self.user, "deny", reason=reason, database=self.database)

    # --- client -> gateway ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        try:
            if self._phase == _READY:
                self.client.receive_data(data)
                self._relay_client()
            elif self._phase != _CLOSED:
                if self._first_byte is not None:
                    self._first_byte.cancel()
                    self._first_byte = None
                self.client.receive_data(data)
                self._drive_client()
        except ProtocolError as exc:
            self._client_protocol_error(exc)
        except Exception as exc:  # noqa: BLE001 - one session ends, the gateway goes on
            self._internal_error(exc)

    def eof_received(self) -> bool:
        try:
            if self._phase == _CLOSED:
                return False
            self.client.receive_data(b"")
            if self._phase == _READY:
                self._relay_client()
                # keep writing the engine's output until it closes (TCP only: a TLS
                # transport ends with the TLS session)
                return self._raw_transport is None
            self._drive_client()
        except ProtocolError as exc:
            self._client_protocol_error(exc)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)
        return False

    def pause_writing(self) -> None:  # the client is not keeping up with the engine
        if self._engine_transport is not None and not self._engine_paused:
            self._engine_paused = True
            self._engine_transport.pause_reading()

    def resume_writing(self) -> None:
        if self._engine_transport is not None and self._engine_paused:
            self._engine_paused = False
            if not self._engine_transport.is_closing():
                self._engine_transport.resume_reading()

    def _pause_client(self) -> None:
        if self.transport is not None and not self._client_paused:
            self._client_paused = True
            self.transport.pause_reading()

    def _resume_client(self) -> None:
        if self.transport is not None and self._client_paused:
            self._client_paused = False
            if not self.transport.is_closing():
                self.transport.resume_reading()

    def _client_protocol_error(self, exc: ProtocolError) -> None:
        log.info("postgres session %s (cluster %s, %s): %s", self.id, self.identifier, self.peer_host, exc)
        reply = self.client.error_reply if isinstance(exc, RemoteProtocolError) else b""
        if reply and self._phase == _READY and (self.engine is None or not self.engine.at_message_boundary):
            reply = b""  # in the middle of the engine's output: a message of ours would corrupt it
        if reply and self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)
        self._audit_failed_login(f"protocol error: {exc}")
        self._close()

    def _drive_client(self) -> None:
        """Start-up and authentication: one event at a time until NEED_DATA or PAUSED."""
        client = self.client
        while self._phase != _CLOSED:
            event = client.next_event()
            if event is NEED_DATA or event is PAUSED:
                return
            kind = type(event)
            if kind is SSLRequest:
                self._answer_ssl_request()
                return
            if kind is GSSENCRequest:
                self._write(client.send(GSSENCResponse(False)))
            elif kind is DirectTlsHello:
                self._start_tls(event.data)  # type: ignore[union-attr]
                return
            elif kind is CancelRequest:
                self._spawn(self._forward_cancel(event))  # type: ignore[arg-type]
                return
            elif kind is StartupMessage:
                self._on_startup(event)  # type: ignore[arg-type]
            elif kind is ConnectionClosed:
                self._audit_failed_login("abandoned by the client")
                self._close()
                return
            else:  # PasswordMessage, SASLInitialResponse, SASLResponse
                assert self.engine is not None
                self._engine_write(self.engine.send(event))

    def _write(self, data: bytes) -> None:
        if data and self.transport is not None:
            self.transport.write(data)

    def _engine_write(self, data: bytes) -> None:
        if data and self._engine_transport is not None:
            self._engine_transport.write(data)

    # --- encryption -------------------------------------------------------------------------

    def _answer_ssl_request(self) -> None:
        target = self.target
        assert target is not None and self.transport is not None
        if target.tls is None or self.client.tls_in_use:
            self._write(self.client.send(SSLResponse(False)))
            self._drive_client()  # nothing is buffered (checked); wait for the next packet
            return
        self._write(self.client.send(SSLResponse(True)))  # raises if cleartext bytes are buffered
        self._start_tls(None)

    def _start_tls(self, hello: bytes | None) -> None:
        """Hand the raw transport to TLS. ``hello``: bytes of a direct-TLS ClientHello
        already read, given to the TLS protocol before it reads from the socket."""
        target = self.target
        assert target is not None and self.transport is not None
        if target.tls is None:  # direct TLS to an endpoint without a certificate
            self._audit_failed_login("TLS not available")
            self._abort()
            return
        raw = self.transport
        raw.pause_reading()  # the ClientHello stays in the kernel until the TLS object reads it
        self._raw_transport = raw
        self._spawn(self._tls_handshake(raw, target.tls))
        if hello is not None:
            # runs right after the task's first step, which installs the TLS protocol and
            # schedules its connection_made and resume_reading behind this callback
            asyncio.get_running_loop().call_soon(self._feed_hello, raw, hello)

    def _feed_hello(self, raw: asyncio.Transport, hello: bytes) -> None:
        try:
            tls_protocol = raw.get_protocol()
            if tls_protocol is self or not hasattr(tls_protocol, "buffer_updated"):
                raise LocalProtocolError("TLS protocol not installed")
            view = memoryview(hello)
            while view:
                buf = tls_protocol.get_buffer(len(view))  # type: ignore[attr-defined]
                n = min(len(buf), len(view))
                buf[:n] = view[:n]
                tls_protocol.buffer_updated(n)  # type: ignore[attr-defined]
                view = view[n:]
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)

    async def _tls_handshake(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        remaining = max(0.1, self._timer.when() - loop.time()) if self._timer is not None else 10.0
        try:
            transport = await loop.start_tls(raw, self, context, server_side=True, ssl_handshake_timeout=remaining)
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            log.info("postgres session %s (cluster %s, %s): TLS handshake failed: %s", self.id, self.identifier,
                     self.peer_host, exc)
            self.ctx.audit.event("gateway.tls_failed", verdict="deny", cluster=self.identifier, source_ip=self.peer_host,
                                 reason=str(exc)[:200])
            self._abort()
            self.connection_lost(exc)  # the TLS protocol may not report it to us
            return
        if self._phase == _CLOSED:
            transport.abort()
            return
        self.transport = transport
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        try:
            self.client.tls_established(alpn)
        except ProtocolError as exc:
            self._client_protocol_error(exc)
            return
        # the first application data is delivered after this (data_received)

    # --- start-up ---------------------------------------------------------------------------

    def _fatal(self, sqlstate: str, message: str, reason: str) -> None:
        """Refuse the login with a FATAL error after the StartupMessage, audit it, close."""
        self._write(self.client.send(ErrorResponse.create("FATAL", sqlstate, message)))
        self._audit_failed_login(reason)
        self._close()

    def _on_startup(self, startup: StartupMessage) -> None:
        self.startup = startup
        target = self.target
        assert target is not None
        host, user, database = _pg_hba_host(self), startup.user, startup.database
        ssl_state = "SSL on" if self.client.tls_in_use else "SSL off"
        if self.over_cluster_limit():
            self._write(self.client.send(TOO_MANY_CLIENTS))
            self._login_audited = True  # counted with the source's refusals instead
            self.refuse(refusals.CLUSTER_LIMIT, user=user)
            return self._close()
        replication = (startup.replication or "").strip().lower()
        if startup.replication is not None and replication not in _FALSEY:
            if replication == "database":
                message = f'no pg_hba.conf entry for host "{host}", user "{user}", database "{database}", {ssl_state}'
            else:
                message = f'no pg_hba.conf entry for replication connection from host "{host}", user "{user}", {ssl_state}'
            return self._fatal("28000", message, "replication connection")
        if user == RDSADMIN:
            return self._fatal("28000", f'pg_hba.conf rejects connection for host "{host}", user "{user}", '
                                        f'database "{database}", {ssl_state}', "rdsadmin")
        if target.require_tls and not self.client.tls_in_use:
            return self._fatal("28000", f'no pg_hba.conf entry for host "{host}", user "{user}", database "{database}", SSL off',
                               "rds.force_ssl: cleartext connection")
        if self._guard is not None and not self._guard_startup(startup):
            return
        self._phase = _CONNECTING
        self._spawn(self._connect_engine(startup))

    def _guard_startup(self, startup: StartupMessage) -> bool:
        settings = startup_settings(startup)
        if settings is None:
            self._fatal("42501", "startup options other than -c name=value are not allowed", "startup options")
            return False
        for name, value in settings:
            error = self._judge(f"SET {_quote_ident(name)} TO {_quote_literal(value)}")
            if error is not None:
                response = ErrorResponse.create("FATAL", error.sqlstate if len(error.sqlstate) == 5 else "42501", error.message)
                self._write(self.client.send(response))
                self._audit_failed_login(f"guard: startup setting {name}")
                self._close()
                return False
        return True

    async def _connect_engine(self, startup: StartupMessage) -> None:
        target = self.target
        assert target is not None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.ctx.limits.engine_connect_timeout):
                transport, leg = await loop.create_unix_connection(lambda: _EngineLeg(self), target.socket_path)
        except (OSError, TimeoutError) as exc:
            log.info("postgres session %s (cluster %s): engine unreachable at %s: %s", self.id, self.identifier,
                     target.socket_path, exc)
            if self._phase != _CLOSED:
                self._fatal("57P03", "the database system is starting up", "engine unavailable")
            return
        if self._phase == _CLOSED:
            transport.close()
            return
        self._engine_transport = transport
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        self.engine = EngineFacing()
        self._phase = _LOGIN
        self._engine_write(self.engine.send(startup))
        self._drive_client()  # anything the client pipelined behind its StartupMessage

    # --- engine -> gateway ------------------------------------------------------------------

    def _engine_data(self, data: bytes) -> None:
        try:
            engine = self.engine
            if engine is None or self._phase == _CLOSED:
                return
            engine.receive_data(data)
            if self._phase == _READY:
                self._relay_engine()
            else:
                self._drive_engine()
        except ProtocolError as exc:
            self._engine_failed(exc)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)

    def _engine_eof(self) -> None:
        try:
            if self.engine is None or self._phase == _CLOSED:
                return
            self.engine.receive_data(b"")
            if self._phase == _READY:
                self._relay_engine()
            else:
                self._drive_engine()
        except ProtocolError as exc:
            self._engine_failed(exc)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)

    def _engine_lost(self, exc: Exception | None) -> None:
        if self._phase == _CLOSED:
            return
        try:
            if self.engine is not None and not self.engine.trailing_data[1]:
                self._engine_eof()  # reset without EOF: handled as an end of stream
        finally:
            if self._phase != _CLOSED:
                self._audit_failed_login("engine closed the connection")
                self._close()

    def _engine_failed(self, exc: ProtocolError) -> None:
        log.warning("postgres session %s (cluster %s): engine protocol error: %s", self.id, self.identifier, exc)
        self._audit_failed_login("engine protocol error")
        self._close()

    def _drive_engine(self) -> None:
        """Authentication and session setup, message by message, relayed to the client."""
        engine, client = self.engine, self.client
        assert engine is not None
        out: list[bytes] = []
        try:
            while self._phase != _CLOSED:
                event = engine.next_event()
                if event is NEED_DATA or event is PAUSED:
                    break
                kind = type(event)
                if kind is BackendKeyData:
                    client_key = cancel_keys(self.ctx).issue(event, (self.identifier, self.target.socket_path))  # type: ignore[arg-type, union-attr]
                    self._client_key = client_key
                    out.append(client.send(client_key))
                elif kind is ConnectionClosed:
                    self._audit_failed_login("engine closed the connection")
                    self._phase = _CLOSED
                    break
                elif kind is ErrorResponse:
                    out.append(client.send(event))
                    self._audit_failed_login(f"{event.sqlstate} {event.message}")  # type: ignore[union-attr]
                    self._phase = _CLOSED
                    break
                elif kind is ReadyForQuery:
                    out.append(client.send(event))
                    self._logged_in()
                    break
                else:  # Authentication*, ParameterStatus, NoticeResponse
                    out.append(client.send(event))
        finally:
            if out:
                self._write(b"".join(out))
        if self._phase == _CLOSED:
            self._close()
            return
        if self._phase == _READY:
            self._relay_engine()  # query-phase bytes that came with ReadyForQuery
        try:
            if self._phase == _LOGIN:
                self._drive_client()  # a response the client sent before it was asked
            elif self._phase == _READY:
                self._relay_client()  # whatever the client pipelined
                if self._phase == _READY:
                    self._go_raw()
        except ProtocolError as exc:  # the client's fault, not the engine's
            self._client_protocol_error(exc)

    def _logged_in(self) -> None:
        self._phase = _READY
        self.login_finished()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._login_audited:
            self._login_audited = True
            self.audit_login(self.user, "allow", database=self.database)
        if self._guard is None:
            assert self.engine is not None
            self.engine.stop_tracking()  # nothing to refuse: a plain byte copy

    def _go_raw(self) -> None:
        """An unguarded session whose client has nothing buffered becomes a raw relay: each
        transport hands what it reads straight to the other's ``write`` (the event loop calls
        it from C; no Python frame per chunk). End of stream, close and flow control still
        come through this session's callbacks. With the native relay (``ctx.offload``) the
        sockets go to its threads instead, when nothing is buffered in the transports."""
        client_transport, engine_transport = self.transport, self._engine_transport
        if not self.RAW_RELAY or self._guard is not None or self._phase != _READY or self.client.trailing_data[0]:
            return
        if client_transport is None or engine_transport is None or client_transport.is_closing():
            return
        offload = self.ctx.offload
        if offload is not None:
            handle = offload.hand_over(client_transport, self._raw_transport, engine_transport, self._offload_done)
            if handle is not None:
                self._offloaded = handle
                return
        leg = engine_transport.get_protocol()
        self.data_received = engine_transport.write  # type: ignore[method-assign]
        client_transport.set_protocol(self)  # the loop caches data_received: refresh it
        leg.data_received = client_transport.write  # type: ignore[method-assign]
        engine_transport.set_protocol(leg)

    def _offload_done(self, reason: str, _handed_back: object = None) -> None:
        """The native relay finished this session (PostgreSQL sessions are never handed back):
        release it and close its transports."""
        self._offloaded = None
        log.debug("postgres session %s (cluster %s): %s", self.id, self.identifier, reason)
        self._abort()

    def _relay_engine(self) -> None:
        """The query phase, engine to client: the hot path."""
        engine, client, transport = self.engine, self.client, self.transport
        assert engine is not None and transport is not None
        while True:
            event = engine.next_event()
            if type(event) is BackendData:
                data = client.send(event)
                if data:
                    transport.write(data)
                continue
            if event is NEED_DATA:
                return
            if type(event) is ConnectionClosed:
                self._close()  # flushes what was relayed (the engine's FATAL, if it sent one)
                return
            raise LocalProtocolError(f"unexpected engine event {event!r} in the query phase")  # pragma: no cover

    # --- client -> engine, query phase ------------------------------------------------------

    def _relay_client(self) -> None:
        """The query phase, client to engine: every message of the chunk in one write."""
        client, engine = self.client, self.engine
        assert engine is not None
        guard = self._guard
        out: list[bytes] = []
        try:
            while True:
                event = client.next_event()
                kind = type(event)
                if kind is FrontendMessage or kind is Sync:
                    out.append(engine.send(event))
                elif event is NEED_DATA:
                    break
                elif kind is Query or kind is Parse or kind is FunctionCall:
                    if guard is not None:
                        error = self._judge_statement(event)  # type: ignore[arg-type]
                        if error is not None:
                            out.append(engine.send(client.refuse(event, error)))  # type: ignore[arg-type]
                            continue
                    out.append(engine.send(event))
                elif kind is Terminate:
                    out.append(engine.send(event))
                    self._engine_write(b"".join(out))
                    out = []
                    self._close()
                    return
                elif kind is ConnectionClosed:  # the client half-closed: so does the engine side
                    if out:
                        self._engine_write(b"".join(out))
                        out = []
                    if self._engine_transport is not None and self._engine_transport.can_write_eof():
                        self._engine_transport.write_eof()
                    else:
                        self._close()
                    return
                else:  # pragma: no cover - the state table allows nothing else here
                    raise LocalProtocolError(f"unexpected client event {event!r} in the query phase")
        finally:
            if out:
                transport = self._engine_transport
                if transport is not None:
                    transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _judge_statement(self, event: Query | Parse | FunctionCall) -> DbError | None:
        self.statement = event
        try:
            return self._judge(None if isinstance(event, FunctionCall) else event.sql)
        finally:
            self.statement = None

    def _judge(self, sql: str | None) -> DbError | None:
        guard = self._guard
        assert guard is not None
        try:
            error = guard(self, sql)
        except Exception:  # noqa: BLE001 - a failing guard refuses (fail closed)
            error_id = uuid.uuid4().hex[:12]
            log.exception("postgres session %s: statement guard failed (%s)", self.id, error_id)
            return DbError(f"internal error {error_id}", sqlstate="XX000")
        if error is not None:
            if error.fatal or error.severity != "ERROR":  # a refusal is a statement error
                error = DbError(error.message, mysql_errno=error.mysql_errno, sqlstate=error.sqlstate)
            self.ctx.audit.event("gateway.statement_refused", verdict="deny", cluster=self.identifier,
                                 source_ip=self.peer_host, user=self.user, sqlstate=error.sqlstate, reason=error.message)
        return error

    # --- CancelRequest ----------------------------------------------------------------------

    async def _forward_cancel(self, request: CancelRequest) -> None:
        """Send the engine's own key to the engine the gateway key stands for; close."""
        try:
            found = cancel_keys(self.ctx).resolve(request)
            if found is None or found[1][0] != self.identifier:
                log.info("postgres session %s (cluster %s, %s): CancelRequest with an unknown key", self.id,
                         self.identifier, self.peer_host)
                return
            engine_key, (_, socket_path) = found
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self.ctx.limits.engine_connect_timeout):
                transport, leg = await loop.create_unix_connection(_CancelLeg, socket_path)
                try:
                    transport.write(EngineFacing().send(CancelRequest(engine_key.process_id, engine_key.secret_key)))
                    await leg.done  # the server closes once it has read the request
                finally:
                    transport.close()
        except (OSError, TimeoutError) as exc:
            log.info("postgres session %s: CancelRequest not delivered: %s", self.id, exc)
        finally:
            self._close()

