"""The PostgreSQL session driver: one client connection relayed to its cluster's engine.

Theory of operation (PostgreSQL documentation, "Frontend/Backend Protocol"; DESIGN.md, house
style). :class:`PostgresSession` is the ``asyncio.Protocol`` of one accepted client socket. Its
life cycle (admission by security group, phases, timers, audit once, internal errors, close,
TLS of the client leg, hand-over to the native relay) is :class:`~.session.Session`'s; its two
sides are :class:`~.leg.Leg` objects. This module keeps what PostgreSQL's events mean: it
feeds every byte through a sans-I/O :class:`~dbkeep.gateway.postgres.client.ClientFacing`
and, once the client has sent its StartupMessage, opens the engine leg, a second small
protocol (:class:`_EngineLeg`) feeding an
:class:`~dbkeep.gateway.postgres.engine.EngineFacing`, over the engine's private unix
socket. Every reply of the gateway's own comes from :mod:`dbkeep.gateway.postgres.errors`. The
flow is the one the connection module's docstring draws:

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
   accept, before it has sent anything, :mod:`.session`; both are counted, not logged one by one:
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
   asks); the gateway never sees a password it could use. Except for IAM accounts: the engine's
   AuthenticationCleartextPassword (only its ``+rds_iam`` line asks) makes the login an IAM
   login (:mod:`.postgres_iam`): the client's token is verified here and the engine gets a
   one-time proof instead (TLS clients only). BackendKeyData is replaced by a
   gateway key (released when the session ends). The login's outcome is one audit event:
   ``allow`` at ReadyForQuery, ``deny`` with the engine's (or the gateway's) error, or when
   the client leaves or times out before finishing.
4. **Query phase.** With a statement guard installed (``ctx.guard``), client messages are
   framed and bounded by ``ClientFacing`` (``Limits.max_packet``); Query, Parse and
   FunctionCall go to the guard, or to the statement guard's inspector (``postgres_inspect.py``;
   a refusal is sent through :meth:`ClientFacing.refuse`, so order and transaction state stay
   exact); everything a chunk yields is written to the engine in one ``write``, and engine
   output is relayed in the runs it arrives in, its message boundaries tracked. An
   *inspected* session whose inspector waits for nothing goes to the native relay threads
   with PostgreSQL framing: they report its Query, Parse and FunctionCall messages for a
   verdict, pass the rest, and hand the session back here for anything the inspector must
   do itself (``postgres_native.py``). An uninspected one (no guard, the statement guard
   found its role unprivileged) has nothing to inspect: the session's
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
from typing import ClassVar

from dbkeep.gateway import refusals
from dbkeep.errors import DbError, LocalProtocolError, ProtocolError, RemoteProtocolError
from dbkeep.gateway.listener import GatewayContext
from dbkeep.gateway.postgres import errors as wire_errors
from dbkeep.gateway.postgres import NEED_DATA, PAUSED, ClientFacing, EngineFacing
from dbkeep.gateway.postgres import (
    AuthenticationCleartextPassword,
    BackendKeyData,
    CancelRequest,
    ConnectionClosed,
    DirectTlsHello,
    ErrorResponse,
    FunctionCall,
    GSSENCRequest,
    GSSENCResponse,
    Parse,
    PasswordMessage,
    Query,
    ReadyForQuery,
    SSLRequest,
    SSLResponse,
    StartupMessage,
)
from dbkeep.gateway.postgres.relay import HALF_CLOSED, HELD, client_to_engine, engine_to_client
from dbkeep.gateway.postgres.startup import FALSEY, as_set_statement, startup_settings
from dbkeep.gateway.postgres.wire import Limits as WireLimits

from .leg import LIMIT
from .postgres_inspect import GUARD_PAUSE, InspectedSession, Inspector
from .postgres_cancel import cancel_keys, forward_cancel
from .postgres_iam import PgIamLogin
from .postgres_native import NativeInspection
from .session import RDSADMIN, Phase, Session

log = logging.getLogger("dbkeep.gateway.postgres")

__all__ = ["PostgresSession", "cancel_keys", "startup_settings"]

_WIRE_LIMITS = "postgres.wire_limits"

_CLOSED = Phase.CLOSED
_LOGIN = Phase.LOGIN
_RELAYING = Phase.RELAYING


def _wire_limits(ctx: GatewayContext) -> WireLimits:
    limits = ctx.extra.get(_WIRE_LIMITS)
    if limits is None:
        limits = ctx.extra[_WIRE_LIMITS] = WireLimits(max_message=ctx.limits.max_packet)
    return limits  # type: ignore[no-any-return]


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
        self.session._engine_pause_writing()

    def resume_writing(self) -> None:
        self.session._engine_resume_writing()


class PostgresSession(NativeInspection, InspectedSession, Session):
    """One PostgreSQL client connection at a cluster endpoint (see the module docstring).

    What a statement guard may read: ``user``, ``database``, ``startup`` (the StartupMessage),
    ``client`` (its ``parameters``, ``client_encoding``, ``tls_in_use``), ``engine``
    (``transaction_status``, ``parameters``) and ``statement`` (the Query, Parse or
    FunctionCall being judged; the guard is called with its ``sql``, ``None`` when the text
    cannot be decoded or for a FunctionCall).
    """

    PROTOCOL: ClassVar[str] = "postgres"
    log: ClassVar[logging.Logger] = log
    # Unguarded sessions relay the query phase as raw bytes (see _go_raw); False keeps the
    # framed relay through ClientFacing for every session.
    RAW_RELAY = True

    def __init__(self, ctx: GatewayContext, identifier: str, port: int) -> None:
        super().__init__(ctx, identifier, port)
        self.client = ClientFacing(limits=_wire_limits(ctx))
        self.engine: EngineFacing | None = None
        self.startup: StartupMessage | None = None
        self.statement: Query | Parse | FunctionCall | None = None
        self._client_key: BackendKeyData | None = None
        self._iam: PgIamLogin | None = None  # an IAM login: the engine asked for a cleartext password
        self._guard = ctx.guard
        self._statement_judge = self._judge_statement if ctx.guard is not None else None
        # the PostgreSQL statement guard (postgres_inspect.py): every session starts inspected
        self._inspector = Inspector(self) if ctx.postgres_checks is not None else None
        self._held: list[Query | Parse | FunctionCall] = []  # a statement waiting for its verdict
        self._ready_seen = 0  # the engine's ReadyForQuery count last told to the inspector
        self._startup_role: str | None = None  # a role the StartupMessage sets (options=-c role=…)
        if self._inspector is not None:
            self._statement_judge = self._inspect_statement

    # --- properties a guard may read --------------------------------------------------------

    @property
    def user(self) -> str | None:
        return self.startup.user if self.startup else None

    @property
    def database(self) -> str | None:
        return self.startup.database if self.startup else None

    # --- lifecycle --------------------------------------------------------------------------

    FIRST_BYTE_SILENCE: ClassVar[str] = "nothing sent within %.1f s"

    def admitted(self) -> None:
        self._arm_first_byte()

    def refusal_bytes(self) -> bytes:
        return wire_errors.TOO_MANY_CLIENTS_BYTES

    def _awaiting_first_byte(self) -> bool:
        return self.phase is Phase.ACCEPTED

    def _release(self) -> None:
        if self._inspector is not None:
            self._inspector.session_closed()
        if self._client_key is not None:
            cancel_keys(self.ctx).release(self._client_key)
            self._client_key = None

    # --- client -> gateway ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.traffic[0] += len(data)
        try:
            phase = self.phase
            if phase is _RELAYING:  # the framed relay (guarded sessions): as _relay_client, one frame less
                self.client.receive_data(data)
                if self._held:
                    return  # behind a statement that waits for its verdict
                out: list[bytes] = []
                try:
                    done = client_to_engine(self.client, self.engine, self._statement_judge, out, self._held)  # type: ignore[arg-type]
                finally:
                    if out:
                        self.engine_leg.transport.write(out[0] if len(out) == 1 else b"".join(out))  # type: ignore[union-attr]
                if done is HELD:
                    self.client_leg.pause(GUARD_PAUSE)
                elif done is not None:
                    self._client_done(done)
                elif self._inspector is not None:
                    self._go_native()
            elif phase is not _CLOSED:
                if self._first_byte is not None:
                    self._cancel_first_byte()
                self.client.receive_data(data)
                self._drive_client()
        except ProtocolError as exc:
            self._client_protocol_error(exc)
        except Exception as exc:  # noqa: BLE001 - one session ends, the gateway goes on
            self._internal_error(exc)

    def eof_received(self) -> bool:
        try:
            if self.phase is _CLOSED:
                return False
            if not self.logged_in:
                self._failing(refusals.CLIENT_CLOSED)
            self.client.receive_data(b"")
            if self.phase is _RELAYING:
                self._relay_client()
                # keep writing the engine's output until it closes (TCP only: a TLS
                # transport ends with the TLS session)
                return not self.client_leg.tls
            self._drive_client()
        except ProtocolError as exc:
            self._client_protocol_error(exc)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)
        return False

    def _client_protocol_error(self, exc: ProtocolError) -> None:
        log.info("postgres session %s (cluster %s, %s): %s", self.id, self.identifier, self.peer_host, exc)
        reply = wire_errors.protocol_error_reply(exc) if isinstance(exc, RemoteProtocolError) else b""
        if reply and self.phase is _RELAYING and (self.engine is None or not self.engine.at_message_boundary):
            reply = b""  # in the middle of the engine's output: a message of ours would corrupt it
        self.client_leg.write_if_open(reply)
        if not self.logged_in:
            self._failing(refusals.PROTOCOL_ERROR, detail=str(exc)[:200])
        self._audit_failed_login(f"protocol error: {exc}")
        self._close()

    def _drive_client(self) -> None:
        """Start-up and authentication: one event at a time until NEED_DATA or PAUSED."""
        client = self.client
        while self.phase is not _CLOSED:
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
                self._accounted = True  # not a login: nothing to report when it ends
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
                if self._iam is not None and kind is PasswordMessage:  # the token: never to the engine
                    event = self._iam.answer(event)  # type: ignore[arg-type]
                    if type(event) is ErrorResponse:
                        return self._refuse(event, self._iam.login_reason)  # type: ignore[arg-type]
                self._engine_write(self.engine.send(event))

    def _write(self, data: bytes) -> None:
        self.client_leg.write(data)

    def _engine_write(self, data: bytes) -> None:
        self.engine_leg.write(data)

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
        target, raw = self.target, self.client_leg.transport
        assert target is not None and raw is not None
        if target.tls is None:  # direct TLS to an endpoint without a certificate
            self._failing(refusals.TLS_FAILED, detail="direct TLS to an endpoint without a certificate")
            self._audit_failed_login("TLS not available")
            self._abort()
            return
        self.client_leg.pause(LIMIT)  # the ClientHello stays in the kernel until the TLS object reads it
        self._spawn(self._client_tls(self, target.tls))
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

    def _client_tls_established(self, held: list[bytes]) -> None:
        transport = self.client_leg.transport
        assert transport is not None
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        try:
            self.client.tls_established(alpn)
        except ProtocolError as exc:
            self._client_protocol_error(exc)
            return
        # the first application data is delivered after this (data_received)

    # --- start-up ---------------------------------------------------------------------------

    def _refuse(self, response: ErrorResponse, reason: str) -> None:
        """Refuse the login with a FATAL error after the StartupMessage (audited first), close."""
        data = self.client.send(response)
        self._audit_failed_login(reason)  # on record before the client can read the verdict
        self._write(data)
        self._close()

    def _on_startup(self, startup: StartupMessage) -> None:
        self.startup = startup
        self._login_pending("login", startup.user, startup.database)
        target = self.target
        assert target is not None
        host, user, database = self.peer_host or "[local]", startup.user, startup.database
        ssl_state = "SSL on" if self.client.tls_in_use else "SSL off"
        if self.over_cluster_limit():
            self._write(self.client.send(wire_errors.TOO_MANY_CLIENTS))
            self._pending = None  # counted with the source's refusals instead of a login event
            self.refuse(refusals.CLUSTER_LIMIT, user=user)
            return self._close()
        replication = (startup.replication or "").strip().lower()
        if startup.replication is not None and replication not in FALSEY:
            if replication == "database":
                return self._refuse(wire_errors.no_hba_entry(host, user, database, ssl_state), "replication connection")
            return self._refuse(wire_errors.no_hba_entry_replication(host, user, ssl_state), "replication connection")
        if user == RDSADMIN:
            return self._refuse(wire_errors.hba_rejects(host, user, database, ssl_state), "rdsadmin")
        if target.require_tls and not self.client.tls_in_use:
            return self._refuse(wire_errors.no_hba_entry(host, user, database, "SSL off"),
                                "rds.force_ssl: cleartext connection")
        if self._guard is not None and not self._guard_startup(startup):
            return
        if self._inspector is not None and not self._inspect_startup(startup):
            return
        self._enter(Phase.CONNECTING)
        self._spawn(self._connect_engine(startup))

    def _guard_startup(self, startup: StartupMessage) -> bool:
        settings = startup_settings(startup)
        if settings is None:
            self._refuse(wire_errors.startup_options_refused(), "startup options")
            return False
        for name, value in settings:
            error = self._judge(as_set_statement(name, value))
            if error is not None:
                self._refuse(wire_errors.startup_refusal(error), f"guard: startup setting {name}")
                return False
        return True

    async def _connect_engine(self, startup: StartupMessage) -> None:
        target = self.target
        assert target is not None
        try:
            transport, _ = await self._open_engine(lambda: _EngineLeg(self))
        except (OSError, TimeoutError) as exc:
            log.info("postgres session %s (cluster %s): engine unreachable at %s: %s", self.id, self.identifier,
                     target.socket_path, exc)
            if self.phase is not _CLOSED:
                self._refuse(wire_errors.cannot_connect_now(), "engine unavailable")
            return
        if self.phase is _CLOSED:
            transport.close()
            return
        self.engine_leg.attach(transport)
        self.engine = EngineFacing()
        self._enter(_LOGIN)
        self._engine_write(self.engine.send(startup))
        self._drive_client()  # anything the client pipelined behind its StartupMessage

    # --- engine -> gateway ------------------------------------------------------------------

    def _engine_data(self, data: bytes) -> None:
        self.traffic[1] += len(data)
        try:
            engine = self.engine
            if engine is None or self.phase is _CLOSED:
                return
            if self._resync is not None:  # the rest of a message begun in the native relay
                data = self._resynced(data)
                if not data:
                    return
            engine.receive_data(data)
            if self.phase is _RELAYING:  # the framed relay (guarded sessions): the hot path
                if engine_to_client(engine, self.client, self.client_leg.transport.write):  # type: ignore[union-attr]
                    self._close()  # flushes what was relayed (the engine's FATAL, if it sent one)
                elif self._inspector is not None:
                    if engine.ready_count != self._ready_seen:
                        self._ready_seen = engine.ready_count
                        self._inspector.engine_progress()
                    self._go_native()
            else:
                self._drive_engine()
        except ProtocolError as exc:
            self._engine_failed(exc)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)

    def _engine_eof(self) -> None:
        try:
            if self.engine is None or self.phase is _CLOSED:
                return
            self.engine.receive_data(b"")
            if self.phase is _RELAYING:
                self._relay_engine()
            else:
                self._drive_engine()
        except ProtocolError as exc:
            self._engine_failed(exc)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)

    def _engine_lost(self, exc: Exception | None) -> None:
        if self.phase is _CLOSED:
            return
        try:
            if self.engine is not None and not self.engine.trailing_data[1]:
                self._engine_eof()  # reset without EOF: handled as an end of stream
        finally:
            if self.phase is not _CLOSED:
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
            while self.phase is not _CLOSED:
                event = engine.next_event()
                if event is NEED_DATA or event is PAUSED:
                    break
                kind = type(event)
                if kind is BackendKeyData:
                    client_key = cancel_keys(self.ctx).issue(event, (self.identifier, self.target.socket_path))  # type: ignore[arg-type, union-attr]
                    self._client_key = client_key
                    out.append(client.send(client_key))
                    if self._iam is not None:
                        self._iam.backend_pid = event.process_id  # type: ignore[union-attr]
                elif kind is ConnectionClosed:
                    self._audit_failed_login("engine closed the connection")
                    self._enter(_CLOSED)
                    break
                elif kind is ErrorResponse:
                    out.append(client.send(event))
                    self._audit_failed_login(f"{event.sqlstate} {event.message}")  # type: ignore[union-attr]
                    self._enter(_CLOSED)
                    break
                elif kind is ReadyForQuery:
                    out.append(client.send(event))
                    self._logged_in()
                    break
                elif kind is AuthenticationCleartextPassword:  # an IAM account (the +rds_iam line)
                    self._iam = self._iam or PgIamLogin(self)
                    self.login_method = "iam"
                    refusal = self._iam.asked()
                    out.append(client.send(refusal or event))
                    if refusal is not None:
                        self._audit_failed_login(self._iam.login_reason)
                        self._enter(_CLOSED)
                        break
                else:  # Authentication*, ParameterStatus, NoticeResponse
                    out.append(client.send(event))
        finally:
            if out:
                self._write(b"".join(out))
        if self.phase is _CLOSED:
            self._close()
            return
        if self.phase is _RELAYING:
            self._relay_engine()  # query-phase bytes that came with ReadyForQuery
        try:
            if self.phase is _LOGIN:
                self._drive_client()  # a response the client sent before it was asked
            elif self.phase is _RELAYING:
                self._relay_client()  # whatever the client pipelined
                if self.phase is _RELAYING:
                    self._go_raw()
        except ProtocolError as exc:  # the client's fault, not the engine's
            self._client_protocol_error(exc)

    def _audit_failed_login(self, reason: str) -> None:
        if self._iam is not None:
            self._iam.ended(False, reason)
        super()._audit_failed_login(reason)

    def _logged_in(self) -> None:
        self._enter(_RELAYING)
        if self._iam is not None:
            self._iam.ended(True)
        self.login_finished()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._audit_allowed()
        if self._inspector is not None:
            assert self.startup is not None
            self._inspector.logged_in(self.startup.user, self.startup.database, self._startup_role)
        elif self._guard is None:
            assert self.engine is not None
            self.engine.stop_tracking()  # nothing to refuse: a plain byte copy

    def _go_raw(self) -> None:
        """An unguarded session whose client has nothing buffered becomes a raw relay: each
        transport hands what it reads straight to the other's ``write`` (the event loop calls
        it from C; no Python frame per chunk). End of stream, close and flow control still
        come through this session's callbacks. With the native relay (``ctx.offload``) the
        sockets go to its threads instead, when nothing is buffered in the transports."""
        client_transport, engine_transport = self.client_leg.transport, self.engine_leg.transport
        if self._inspector is not None and self._inspector.active:
            self._go_native()  # never a raw relay: its statements are judged (postgres_native.py)
            return
        if not self.RAW_RELAY or self._guard is not None or self.phase is not _RELAYING or self.client.trailing_data[0]:
            return
        if client_transport is None or engine_transport is None or client_transport.is_closing():
            return
        inspector, engine = self._inspector, self.engine
        if inspector is not None:
            if inspector.active or inspector.facts is None or self._held or engine is None:
                return
            if engine.tracking:
                try:
                    engine.stop_tracking()  # nothing more to refuse: a plain byte copy
                except LocalProtocolError:
                    return  # a refusal is still on its way: stay framed
        if self._hand_over():
            return
        leg = engine_transport.get_protocol()
        self.data_received = engine_transport.write  # type: ignore[method-assign]
        client_transport.set_protocol(self)  # the loop caches data_received: refresh it
        leg.data_received = client_transport.write  # type: ignore[method-assign]
        engine_transport.set_protocol(leg)

    def _relay_engine(self) -> None:
        """The query phase, engine to client: the hot path (framed relay)."""
        transport = self.client_leg.transport
        assert self.engine is not None and transport is not None
        if engine_to_client(self.engine, self.client, transport.write):
            self._close()  # flushes what was relayed (the engine's FATAL, if it sent one)
        elif self._inspector is not None:
            if self.engine.ready_count != self._ready_seen:
                self._ready_seen = self.engine.ready_count
                self._inspector.engine_progress()
            self._go_native()

    # --- client -> engine, query phase ------------------------------------------------------

    def _relay_client(self) -> None:
        """The query phase, client to engine: every message of the chunk in one write."""
        assert self.engine is not None
        if self._held:
            return  # behind a statement that waits for its verdict
        out: list[bytes] = []
        try:
            done = client_to_engine(self.client, self.engine, self._statement_judge, out, self._held)
        finally:
            if out:
                transport = self.engine_leg.transport
                if transport is not None:
                    transport.write(out[0] if len(out) == 1 else b"".join(out))
        if done is HELD:
            self.client_leg.pause(GUARD_PAUSE)
        elif done is not None:
            self._client_done(done)
        elif self._inspector is not None:
            self._go_native()

    def _client_done(self, done: str) -> None:
        """The client sent Terminate (forwarded: close) or half-closed (so does the engine side)."""
        if done is HALF_CLOSED:
            engine_transport = self.engine_leg.transport
            if engine_transport is not None and engine_transport.can_write_eof():
                engine_transport.write_eof()
                return
        self._close()

    def _judge_statement(self, event: Query | Parse | FunctionCall) -> DbError | None:
        return self._judge(None if isinstance(event, FunctionCall) else event.sql, event)

    def _judge(self, sql: str | None, statement: Query | Parse | FunctionCall | None = None) -> DbError | None:
        error, failed = self._consult_guard(statement, sql)
        if failed is not None:
            return wire_errors.guard_internal_error(failed)
        if error is not None:
            error = wire_errors.refusal(error)  # a refusal is a statement error
            self._audit_refused(error)
        return error

    async def _forward_cancel(self, request: CancelRequest) -> None:  # postgres_cancel.py
        try:
            await forward_cancel(self, request)
        finally:
            self._close()
