"""The MySQL/MariaDB session driver: one client connection relayed to its cluster's engine.

Theory of operation (MariaDB KB "Connection" and "0 - Packet"; DESIGN.md, house style).
:class:`MySQLSession` is what the listener creates for an accepted socket. Once
:class:`~dbkeep.gateway.listener.GatewaySession` has admitted the peer (security groups), the
session hands the socket to two small protocols of its own and drives a sans-I/O
:class:`~.relay.Relay` with every byte:

- :class:`_ClientLeg`, an ``asyncio.BufferedProtocol`` on the client socket (then on its TLS
  transport). MySQL clients send the TLS ClientHello right behind their SSLRequest without
  waiting for an answer, so until the login packet has arrived the leg reads at most
  :meth:`ClientFacing.receive_limit` bytes -- never a byte past the SSLRequest -- and reading
  is paused in the same callback that sees the request. The ClientHello stays in the kernel
  until ``loop.start_tls`` reads it: "TLS only on an empty buffer" holds by construction, and
  the sans-I/O layer checks it again. Bytes decrypted before ``start_tls`` has returned are
  held until ``tls_established()``.
- :class:`_EngineLeg`, an ``asyncio.Protocol`` on the engine's private unix socket.

1. **Admission.** Over the per-cluster connection limit, or over its source's limit of
   connections not yet logged in (checked at accept, listener.py), the client gets MariaDB's
   own ``ERROR 1040 Too many connections`` in place of the greeting, as the server sends it,
   and no engine connection is spent; such refusals are counted, not logged one by one
   (``gateway/refusals.py``). Otherwise the engine socket is opened (bounded by
   ``engine_connect_timeout``); an engine that is down or restarting gives ``ERROR 2013`` in
   place of the greeting, never a hang. The engine's greeting is shown to the client with
   CLIENT_SSL offered exactly when the cluster has a certificate (``target.tls``).
2. **Login checks** (``decide``): the login name ``rdsadmin`` is refused with the engine's
   ``1045 (28000) Access denied`` text; ``require_secure_transport=ON`` refuses a cleartext
   login with ``3159`` and SPEC.md's text. COM_CHANGE_USER is a new login: the same name is
   refused. Every outcome -- the gateway's refusal, the engine's OK or ERR, a timeout, a
   failed TLS handshake -- is one audit event.
3. **Authentication is relayed**: the engine's scramble, auth switch requests
   (``mysql_native_password``, ``client_ed25519`` ...) and results pass between the legs
   untouched (each leg frames with its own sequence ids), so the gateway never learns a
   password. The engine leg runs TLS exactly when the client's did (``engine_tls="as-client"``)
   and the engine offers it: MariaDB refuses a ``REQUIRE SSL`` account on any connection
   that is not TLS, unix sockets included, so such an account can never log in over
   cleartext through the gateway, and logs in over TLS when the engine has a certificate
   (an engine without one refuses it either way: fail closed). Engine-leg TLS is TLS 1.2
   resuming the previous session (:class:`EngineTlsContext`), so it costs no signature.
4. **Command phase.** Statements (COM_QUERY, COM_STMT_PREPARE) go to ``ctx.guard`` when one
   is installed and a refusal is answered in order by the engine (a SIGNAL in its place).
   The hot path has no parsing, copy or coroutine: after the login the client leg becomes a
   plain ``Protocol`` (:class:`_ClientStream`), and a chunk that is exactly one packet needing
   no decision -- any command without a guard, any but the statements with one, a
   continuation such as LOAD DATA's file packets -- goes to the engine as it came, the
   sans-I/O state advanced as if it had been parsed (``Relay.client_passthrough``); anything
   else (pipelined or split packets, COM_CHANGE_USER, COM_QUIT ...) takes the full path.
   Engine bytes are written to the client as they arrive whenever the sans-I/O engine leg
   says they would pass through unparsed (``EngineFacing.passthrough``).
   **Inspection.** With ``ctx.mysql_hygiene`` (``dbkeep up``), every session starts
   *inspected* and stays here until its account's facts show it cannot reach the grant
   tables; an inspected session's statements are judged by the grant-table rules and may be
   held while dbkeep checks the engine (:mod:`.inspect`).
   **Native relay.** With ``ctx.offload`` (``dbkeep up``, ``--relay-threads`` > 0) and no
   guard, a logged-in session at a command boundary with nothing buffered is handed to the
   native relay threads (``gateway/_relay.c``), both legs' TLS included. They frame the
   client's packets with the same rules as :class:`ClientFacing` and give the session back
   before COM_CHANGE_USER, COM_RESET_CONNECTION, COM_PROCESS_KILL, COM_MULTI or an empty
   command, with the bytes neither side has received yet (:class:`~dbkeep.gateway.offload.HandedBack`):
   the session's transports carry on from the same TLS objects, the command takes the full
   path here (a change of user is a new login with the same checks and audit), and the
   session goes back to the relay after the next engine bytes. COM_QUIT is forwarded by the
   relay, which ends the session when the engine closes. Differences from the Python path:
   the message-size limit is the engine's own ``max_allowed_packet`` (as for PostgreSQL's raw
   relay), and the connection slot is released when the engine has closed.
5. **Flow control.** When one side's write buffer passes its high-water mark the other side
   stops reading until it drains, so a result or a LOAD DATA LOCAL INFILE of any size never
   accumulates here. A cleartext client's half-close reaches the engine as EOF and the
   engine's answer still reaches the client; TLS has no half-close (close_notify ends it).
6. **Limits and faults.** ``first_byte_timeout`` bounds the wait for the client's first
   packet after the greeting, ``handshake_timeout`` accept-to-login (TLS included); a
   client may send at most :data:`LOGIN_MAX_BYTES` before its login is answered; packets are
   bounded by ``max_packet``. A protocol violation gets an ERR where the protocol allows one,
   then close. An engine that goes away closes the client after relaying what it sent (an
   ERR first when the client is still logging in). No exception leaves a callback: an
   unexpected one is logged with an id and ends that session only.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid

from dbkeep.errors import DbError, ProtocolError
from dbkeep.gateway import refusals
from dbkeep.gateway.listener import GatewayContext, GatewaySession
from dbkeep.gateway.offload import HandedBack, resume_tls_session, stop_set

from . import charsets
from .connection import ChangeUser, ClientState, LoginRequested, Prepare, Query
from .inspect import Inspector
from .messages import CommandCode, ErrPacket, OkPacket
from .relay import HOLD, Decidable, Output, Relay
from .wire import frame

log = logging.getLogger("dbkeep.gateway.mysql")

__all__ = ["INSECURE_TRANSPORT", "MySQLSession"]

RDSADMIN = "rdsadmin"
LOGIN_READ_SIZE = 16 * 1024  # the client leg's read buffer until the login is done
# Write buffers: above HIGH the other side stops reading; below LOW it reads again.
WRITE_HIGH = 256 * 1024
WRITE_LOW = 64 * 1024
LOGIN_MAX_BYTES = 1024 * 1024  # what a client may send before its login is answered
_CLOSE_GRACE = 10.0  # a closing transport whose peer reads nothing is aborted after this

INSECURE_TRANSPORT = ErrPacket(
    3159,
    "Connections using insecure transport are prohibited while --require_secure_transport=ON.",
    "HY000",
)
_LOGIN_STATES = frozenset({
    ClientState.SEND_GREETING, ClientState.AWAIT_LOGIN, ClientState.AWAIT_LOGIN_TLS,
    ClientState.AUTH, ClientState.CHANGE_USER,
})

# Commands the hot path forwards without a decision: with a statement guard, every command but
# the statements; without one, every command (the sans-I/O layer keeps the ones that change the
# session -- COM_CHANGE_USER, COM_QUIT ... -- on the slow path in any case).
_ALL_COMMANDS = frozenset(range(256))
_GUARDED_COMMANDS = _ALL_COMMANDS - {CommandCode.COM_QUERY, CommandCode.COM_STMT_PREPARE}
# Inspected sessions (gateway/mysql/inspect.py) also decide on these; while a hygiene is due,
# on every command.
_INSPECTED_COMMANDS = _GUARDED_COMMANDS - {CommandCode.COM_STMT_EXECUTE, CommandCode.COM_INIT_DB,
                                           CommandCode.COM_RESET_CONNECTION, CommandCode.COM_PROCESS_KILL}
_NO_COMMANDS: frozenset[int] = frozenset()
# The native relay gives an unguarded session back before these (COM_CHANGE_USER is a new
# login; the others change what the sans-I/O layer tracks); it forwards COM_QUIT itself.
_NATIVE_STOP = stop_set({CommandCode.COM_CHANGE_USER, CommandCode.COM_RESET_CONNECTION,
                         CommandCode.COM_PROCESS_KILL, CommandCode.COM_MULTI})
# Hand-over attempts after a login or a hand-back: one fails only while bytes are buffered (a
# busy session), so a few suffice; a session that is never quiescent, or a TLS object the
# relay refuses, then stays in Python without a check on every engine chunk.
_OFFLOAD_ATTEMPTS = 16


class EngineTlsContext(ssl.SSLContext):
    """The TLS context of engine legs to one engine: TLS 1.2 with session resumption.

    The engine is reached over a unix socket in a 0700 directory, which authenticates it; TLS
    runs there only so that the engine sees a TLS connection (``REQUIRE SSL``), so the
    certificate is not verified. A full handshake costs both processes an asymmetric signature
    and key exchange (about 1.5 ms of CPU per login together); resuming the last session (a
    TLS 1.2 abbreviated handshake, which MariaDB's session cache grants) costs neither. The
    session is shared by the legs that resume it (``resume_tls_session``, without the copy
    CPython's ``SSLObject.session`` setter makes on every leg).
    ``asyncio``'s ``start_tls`` cannot pass a session, so :meth:`wrap_bio` adds it; a session
    the engine no longer knows (it restarted, the session expired) just gives a full handshake.
    """

    session: ssl.SSLSession | None

    def __new__(cls) -> EngineTlsContext:  # noqa: PYI034
        context = super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.options |= ssl.OP_NO_COMPRESSION
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.session = None
        return context

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: str | bytes | None = None, session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        session = session or self.session
        ssl_object = super().wrap_bio(incoming, outgoing, server_side, server_hostname)
        if session is not None and not resume_tls_session(ssl_object, session):
            ssl_object.session = session  # CPython's way: a private copy of the session
        return ssl_object

    def established(self, ssl_object: ssl.SSLObject | None) -> None:
        """Keep the session of a finished handshake for the next engine leg."""
        if ssl_object is not None and not ssl_object.session_reused and ssl_object.session is not None:
            self.session = ssl_object.session


def engine_tls_context(ctx: GatewayContext, socket_path: str) -> EngineTlsContext:
    """The engine TLS context of one engine socket (shared by that engine's sessions)."""
    contexts: dict[str, EngineTlsContext] = ctx.extra.setdefault("mysql.engine_tls", {})
    context = contexts.get(socket_path)
    if context is None:
        context = contexts[socket_path] = EngineTlsContext()
    return context


def _unavailable(identifier: str) -> ErrPacket:
    return ErrPacket(
        2013,
        "Lost connection to server at 'handshake: reading initial communication packet': the database engine "
        f"of cluster '{identifier}' is not available (it may be starting or restarting); try again",
        "HY000",
    )


# what the server sends in place of its greeting when it has no room (no SQL state: nothing is
# known of the client yet)
TOO_MANY_CONNECTIONS = ErrPacket(1040, "Too many connections", None)


def _access_denied(user: str, host: str, password: bool) -> ErrPacket:
    return ErrPacket(1045, f"Access denied for user '{user}'@'{host}' (using password: {'YES' if password else 'NO'})",
                     "28000")


class _ClientCallbacks:
    """What both client protocols hand to their session besides data."""

    session: MySQLSession

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # pragma: no cover - set_protocol/start_tls
        pass

    def eof_received(self) -> bool:
        return self.session._client_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.connection_lost(exc)

    def pause_writing(self) -> None:  # the client is not keeping up with the engine
        self.session._pause_engine()

    def resume_writing(self) -> None:
        self.session._resume_engine()


class _ClientLeg(_ClientCallbacks, asyncio.BufferedProtocol):
    """The client socket's protocol until the login is done (raw, then TLS): reads into one
    buffer, at most what the sans-I/O layer allows (never past an SSLRequest)."""

    def __init__(self, session: MySQLSession) -> None:
        self.session = session
        self._view = memoryview(bytearray(LOGIN_READ_SIZE))

    def get_buffer(self, sizehint: int) -> memoryview:
        limit = self.session._receive_limit()
        if limit is None or limit >= LOGIN_READ_SIZE:
            return self._view
        # 0 never happens while reading runs (reading pauses at the SSLRequest); an empty
        # buffer would make the transport fail, which ends only this session
        return self._view[:limit]

    def buffer_updated(self, nbytes: int) -> None:
        self.session._client_data(bytes(self._view[:nbytes]))


class _ClientStream(_ClientCallbacks, asyncio.Protocol):
    """The client socket's protocol after the login: plain ``data_received`` (the hot path)."""

    def __init__(self, session: MySQLSession) -> None:
        self.session = session
        self.data_received = session._client_stream  # type: ignore[method-assign]  # one frame less per chunk

    def data_received(self, data: bytes) -> None:  # pragma: no cover - replaced per instance
        self.session._client_stream(data)


class _EngineLeg(asyncio.Protocol):
    """The engine socket's protocol: hands everything to its session (plain callbacks)."""

    def __init__(self, session: MySQLSession) -> None:
        self.session = session
        self.data_received = session._engine_data  # type: ignore[method-assign]  # one frame less per chunk

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.session._engine_made(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:  # pragma: no cover - replaced per instance
        self.session._engine_data(data)

    def eof_received(self) -> bool:
        self.session._engine_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.session._engine_lost(exc)

    def pause_writing(self) -> None:  # the engine is not keeping up with the client
        self.session._pause_client("engine")

    def resume_writing(self) -> None:
        self.session._resume_client("engine")


class MySQLSession(GatewaySession):
    """One MySQL client connection at a cluster endpoint (see the module docstring).

    What a statement guard may read: ``user`` (the current account), ``users`` (every account
    the session logged in or changed to: the session is privileged if any of them is),
    ``database``, ``tls`` (whether the client leg runs TLS), ``statement`` (the Query or
    Prepare being judged; the guard is called with its ``sql``).
    """

    def __init__(self, ctx: GatewayContext, identifier: str, port: int) -> None:
        super().__init__(ctx, identifier, port)
        self.id = uuid.uuid4().hex[:12]
        self.relay: Relay | None = None
        self.user: str | None = None
        self.users: list[str] = []
        self.database: str | None = None
        self.statement: Query | Prepare | None = None
        self._guard = ctx.guard
        self._unseen = _ALL_COMMANDS if ctx.guard is None else _GUARDED_COMMANDS
        self._inspector: Inspector | None = None  # grant-table checks (ctx.mysql_hygiene)
        self._client: asyncio.Transport | None = None  # the raw transport, then the TLS one
        self._client_raw: asyncio.Transport | None = None  # the TCP transport (under TLS)
        self._engine: asyncio.Transport | None = None
        self._engine_raw: asyncio.Transport | None = None  # the unix socket's transport (under TLS)
        self._offloaded: int | None = None  # the native relay's handle while it relays this session
        self._offload_wanted = False  # try to hand the session to the native relay when quiescent
        self._offload_attempts = 0
        self._engine_leg: _EngineLeg | None = None
        self._leg: _ClientLeg | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._first_byte: asyncio.TimerHandle | bool | None = True  # True: armed at the greeting; None: not needed
        self._closed = False
        self._logged_in = False
        self._login_bytes = 0
        self._pending: tuple[str, str, str | None] | None = None  # (kind, user, database) awaiting the engine
        self._client_pauses: set[str] = set()
        self._engine_paused = False
        self._client_hold: list[bytes] | None = None  # decrypted during the client TLS upgrade
        self._engine_hold: list[bytes] | None = None  # received during the engine TLS upgrade

    @property
    def tls(self) -> bool:
        return self.relay is not None and self.relay.client.tls

    # --- lifecycle --------------------------------------------------------------------------

    def admitted(self) -> None:
        target, raw = self.target, self.transport
        assert target is not None and raw is not None
        limits = self.ctx.limits
        self._client = self._client_raw = raw
        self._leg = _ClientLeg(self)
        raw.set_protocol(self._leg)  # reading starts after connection_made, with this protocol
        raw.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        self.relay = Relay(self._decide, client_tls=target.tls is not None, engine_tls="as-client",
                           max_message_size=limits.max_packet)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(limits.handshake_timeout, self._handshake_timeout)
        if self.over_cluster_limit():
            log.debug("mysql session %s (cluster %s, %s): too many connections", self.id, self.identifier, self.peer_host)
            self.refuse(refusals.CLUSTER_LIMIT)
            self._refuse_before_greeting(TOO_MANY_CONNECTIONS)
            return
        self._spawn(self._connect_engine())

    def refusal_bytes(self) -> bytes:
        return frame(TOO_MANY_CONNECTIONS.build(None), 0)

    def _first_byte_timeout(self) -> None:
        self._first_byte = None
        if self._logged_in or self._closed:
            return
        log.debug("mysql session %s (cluster %s, %s): no packet within %.1f s of the greeting; closed", self.id,
                  self.identifier, self.peer_host, self.ctx.limits.first_byte_deadline)
        self.refuse(refusals.FIRST_BYTE_TIMEOUT)
        self._abort()

    def _internal_error(self, exc: BaseException | None) -> None:
        error_id = uuid.uuid4().hex[:12]
        log.error("mysql session %s (cluster %s, %s): internal error %s", self.id, self.identifier, self.peer_host,
                  error_id, exc_info=exc)
        if not self._closed:
            self._audit_failed_login(f"internal error {error_id}")
            self._client_error(ErrPacket(1105, f"internal error {error_id}", "HY000"), any_state=False)
        self._abort()

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self._logged_in or self._closed:
            return
        log.debug("mysql session %s (cluster %s, %s): login not finished within %.0f s; closed", self.id,
                  self.identifier, self.peer_host, self.ctx.limits.handshake_timeout)
        # counted with the other refusals of its source, not one login event per connection
        pending, self._pending = self._pending, None
        self.refuse(refusals.HANDSHAKE_TIMEOUT, user=pending[1] if pending else None)
        relay = self.relay
        if relay is not None and relay.client.state is ClientState.SEND_GREETING:
            self._write_client(relay.client_error(_unavailable(self.identifier)))  # the engine never greeted
        self._close()

    def closed(self, exc: Exception | None) -> None:
        """The client connection is gone (connection_lost): release everything."""
        if not self._closed:
            self._audit_failed_login("client closed the connection")
        self._finish()
        engine = self._engine
        if engine is not None and not engine.is_closing():
            engine.close()

    def _finish(self) -> None:
        self._audit_failed_login("the connection closed before the engine answered")
        if self._inspector is not None and not self._closed:
            self._inspector.session_closed()
        self._closed = True
        self._offload_wanted = False
        if self._offloaded is not None:  # the relay owns the sockets: it ends the session
            self.ctx.offload.close(self._offloaded)  # type: ignore[union-attr]
        # released here, not only in connection_lost: a transport that dies inside a TLS
        # handshake may never report connection_lost to this session
        self.uncount()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._cancel_first_byte()
        for task in list(self._tasks):
            task.cancel()

    def _close(self) -> None:
        """End the session after flushing what was written to both sides."""
        self._finish()
        loop = asyncio.get_running_loop()
        for transport in (self._client, self._engine):
            if transport is not None and not transport.is_closing():
                transport.close()
                if transport.get_write_buffer_size():
                    # a peer that reads nothing cannot hold the socket open forever
                    loop.call_later(_CLOSE_GRACE, transport.abort)

    def _abort(self) -> None:
        self._finish()
        for transport in (self._client, self.transport, self._engine):
            if transport is not None:
                transport.abort()

    # --- audit ------------------------------------------------------------------------------

    def _audit_failed_login(self, reason: str) -> None:
        """A login (or change of user) relayed to the engine and never answered, as denied."""
        pending, self._pending = self._pending, None
        if pending is not None:
            what, user, database = pending
            self.audit_login(user, "deny", reason=reason if what == "login" else f"change of user: {reason}",
                             database=database)

    def _observe(self, events: list[object]) -> None:
        """The engine's verdict on a relayed login or change of user."""
        for event in events:
            kind = type(event)
            if kind is OkPacket and self._pending is not None:
                what, user, database = self._pending
                self._pending = None
                self.user = user
                self.users.append(user)
                if self.ctx.mysql_hygiene is not None and self.ctx.mysql_account_facts is not None:
                    if self._inspector is None:
                        self._inspector = Inspector(self)
                    self._inspector.logged_in(user, database, change=what != "login")
                if what == "login":
                    self.database = database
                    self._logged_in = True
                    self.login_finished()
                    if self._timer is not None:
                        self._timer.cancel()
                        self._timer = None
                    # reads no longer need a limit: plain data_received from the next callback on
                    asyncio.get_running_loop().call_soon(self._stream_client)
                    self.audit_login(user, "allow", database=database)
                else:
                    self.database = database or self.database
                    self.audit_login(user, "allow", reason="change of user", database=database)
            elif kind is ErrPacket and self._pending is not None:
                what, user, database = self._pending
                self._pending = None
                err: ErrPacket = event  # type: ignore[assignment]
                reason = f"engine error {err.errno}: {err.message}"
                self.audit_login(user, "deny", reason=reason if what == "login" else f"change of user: {reason}",
                                 database=database)

    # --- decisions --------------------------------------------------------------------------

    def _decide(self, event: Decidable) -> ErrPacket | object | None:
        kind = type(event)
        inspector = self._inspector
        if inspector is not None and inspector.active and kind is not LoginRequested:
            verdict = inspector.decide(event)
            if verdict is not None:
                return verdict
        if kind is Query or kind is Prepare:
            return None if self._guard is None else self._judge(event)  # type: ignore[arg-type]
        if kind is LoginRequested:
            return self._decide_login(event)  # type: ignore[arg-type]
        if kind is ChangeUser:
            return self._decide_change_user(event)  # type: ignore[arg-type]
        return None

    def _decide_login(self, event: LoginRequested) -> ErrPacket | None:
        target = self.target
        assert target is not None
        response = event.response
        user = event.user
        database = charsets.decode(response.database, response.charset) if response.database else None
        if user == RDSADMIN:
            self.audit_login(user, "deny", reason="rdsadmin is reserved", database=database)
            return _access_denied(user, self.peer_host, bool(response.auth_response))
        if target.require_tls and not event.tls:
            self.audit_login(user, "deny", reason="require_secure_transport: cleartext connection", database=database)
            return INSECURE_TRANSPORT
        self._pending = ("login", user, database)
        return None

    def _decide_change_user(self, event: ChangeUser) -> ErrPacket | None:
        user = event.user
        request = event.request
        charset = request.charset or (self.relay.client.charset if self.relay else 0)
        database = charsets.decode(request.database, charset) if request.database else None
        if user == RDSADMIN:
            self.audit_login(user, "deny", reason="change of user: rdsadmin is reserved", database=database)
            return _access_denied(user, self.peer_host, bool(request.auth_response))
        self._pending = ("change_user", user, database)
        return None

    def _judge(self, event: Query | Prepare) -> ErrPacket | None:
        guard = self._guard
        assert guard is not None
        self.statement = event
        try:
            error = guard(self, event.sql)
        except Exception:  # a failing guard refuses (fail closed)
            error_id = uuid.uuid4().hex[:12]
            log.exception("mysql session %s: statement guard failed (%s)", self.id, error_id)
            error = DbError(f"internal error {error_id}", mysql_errno=1105, sqlstate="HY000")
        finally:
            self.statement = None
        if error is None:
            return None
        self.ctx.audit.event("gateway.statement_refused", verdict="deny", cluster=self.identifier,
                             source_ip=self.peer_host, user=self.user, mysql_errno=error.mysql_errno,
                             sqlstate=error.sqlstate, reason=error.message)
        errno = error.mysql_errno if 1 <= error.mysql_errno <= 65534 else 1105
        sqlstate = error.sqlstate if len(error.sqlstate) == 5 and error.sqlstate.isalnum() else "HY000"
        return ErrPacket(errno, error.message, sqlstate)

    # --- output -----------------------------------------------------------------------------

    def _write_client(self, data: bytes) -> None:
        if data and self._client is not None and not self._client.is_closing():
            self._client.write(data)

    def _client_error(self, err: ErrPacket, *, any_state: bool = True) -> None:
        """An ERR to the client if the protocol allows one here (``any_state``: also in the
        command phase, where it answers the pending command)."""
        relay = self.relay
        if relay is None or (not any_state and relay.client.state not in _LOGIN_STATES):
            return
        self._write_client(relay.client_error(err))

    def _refuse_before_greeting(self, err: ErrPacket) -> None:
        self._client_error(err)
        self._close()

    def _apply(self, out: Output) -> None:
        if self._pending is not None:
            # The engine's verdict on a login is audited before the client can learn it: a
            # client that has seen its OK finds the allow event already in the log.
            self._observe(out.events)
        if out.to_engine:
            engine = self._engine
            assert engine is not None
            engine.writelines(out.to_engine)
        if out.to_client:
            client = self._client
            assert client is not None
            client.writelines(out.to_client)
            if self._first_byte is True:  # the greeting: the client's turn
                self._first_byte = asyncio.get_running_loop().call_later(self.ctx.limits.first_byte_deadline,
                                                                         self._first_byte_timeout)
        if out.close:
            self._close()
            return
        if out.held:
            self._pause_client("hold")  # nothing more is read until the hygiene has run
        if out.start_client_tls:
            self._start_client_tls()
        if out.start_engine_tls:
            self._start_engine_tls()

    # --- client -> gateway ------------------------------------------------------------------

    def _receive_limit(self) -> int | None:
        relay = self.relay
        if relay is None or self._logged_in:
            return None
        return relay.client.receive_limit()

    def _stream_client(self) -> None:
        client = self._client
        if not self._closed and client is not None and not client.is_closing():
            client.set_protocol(_ClientStream(self))
            self._want_offload()
            self._try_offload()

    # --- grant-table checks (inspect.py) -------------------------------------------------------

    def _inspection_changed(self) -> None:
        """Which commands the hot path may forward unseen, and whether the native relay may
        take the session, after the inspector changed its mind."""
        inspector = self._inspector
        if inspector is not None and inspector.active:
            self._unseen = _NO_COMMANDS if inspector.busy else _INSPECTED_COMMANDS
            self._offload_wanted = False
            return
        self._unseen = _ALL_COMMANDS if self._guard is None else _GUARDED_COMMANDS
        if self._logged_in and not self._closed and self._offloaded is None:
            self._want_offload()
            self._try_offload()

    def _engine_thread(self) -> int | None:
        relay = self.relay
        greeting = relay.engine.greeting if relay is not None else None
        return greeting.connection_id if greeting is not None else None

    def _hygiene_done(self) -> None:
        """The hygiene ran: forward what was held, read the client again."""
        self._inspection_changed()
        relay = self.relay
        if self._closed or relay is None:
            return
        try:
            if relay.held:
                self._apply(relay.release())
            if not self._closed and not relay.held:
                self._resume_client("hold")
        except ProtocolError as exc:
            self._client_protocol_error(str(exc))
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)

    def _end_for_inspection(self) -> None:
        """End this (uninspected) session: its account now needs inspection. A session in the
        native relay is ended there (its on_done closes the transports)."""
        if self._closed:
            return
        if self._offloaded is not None:
            self._finish()  # closes the relay's handle
            return
        self._close()

    def _hygiene_failed(self) -> None:
        """dbkeep could not check the grant tables around this session's statement (rdsadmin
        cannot log in, the engine went away): fail closed. A held statement is answered with an
        error and never runs; then the session ends."""
        relay = self.relay
        if self._closed or relay is None:
            return
        if relay.held:
            self._write_client(relay.client_error(ErrPacket(
                1105, "dbkeep could not check the grant tables (rdsadmin is unavailable): the statement was not run "
                "and the session ends; resetting the master password repairs rdsadmin", "HY000")))
        self._close()

    # --- native relay -----------------------------------------------------------------------

    def _want_offload(self) -> None:
        inspected = self._inspector is not None and self._inspector.active
        self._offload_wanted = self.ctx.offload is not None and self._guard is None and not inspected and not self._closed
        self._offload_attempts = _OFFLOAD_ATTEMPTS

    def _try_offload(self) -> None:
        """Hand the session to the native relay (``ctx.offload``) if it is at a command
        boundary with nothing buffered anywhere; otherwise it is tried again after the next
        engine bytes. Only unguarded, uninspected sessions go: a guard must see every statement."""
        relay, offload = self.relay, self.ctx.offload
        if self._inspector is not None and self._inspector.active:
            return  # inspected: every statement is read here
        if (self._closed or offload is None or relay is None or self._offloaded is not None or not self._logged_in
                or self._pending is not None or self._client_hold is not None or self._engine_hold is not None
                or self._client_pauses or self._engine_paused):
            return
        state = relay.native_state()
        if state is None:
            return
        self._offload_attempts -= 1
        if self._offload_attempts <= 0:
            self._offload_wanted = False
        wrap, quiet = state
        client_raw = self._client_raw if relay.client.tls else None
        engine_raw = self._engine_raw if relay.engine.tls else None
        handle = offload.hand_over(self._client, client_raw, self._engine, self._offload_done, engine_raw=engine_raw,
                                   mysql=(_NATIVE_STOP, wrap, quiet))
        if handle is not None:
            self._offloaded = handle
            self._offload_wanted = False

    def _offload_done(self, reason: str, handed_back: HandedBack | None) -> None:
        """The native relay is done with this session: it ended (close the transports, as it
        flushed what there was), or it stopped before a command Python must see -- then the
        transports carry on from the same TLS objects with what the relay had not delivered."""
        handle, self._offloaded = self._offloaded, None
        if handed_back is None or self._closed or handle is None:
            log.debug("mysql session %s (cluster %s): %s", self.id, self.identifier, reason)
            self._abort()
            return
        offload, relay = self.ctx.offload, self.relay
        assert offload is not None and relay is not None
        try:
            relay.native_handed_back(handed_back.quiet)
            if handed_back.client_records:
                self._client_raw.write(handed_back.client_records)  # type: ignore[union-attr]  # before any new record
            offload.resume(handle)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)
            return
        if handed_back.engine:
            self._engine_data(handed_back.engine)
        if handed_back.client:
            self._client_data(handed_back.client)
        self._want_offload()

    def _client_stream(self, data: bytes) -> None:
        """Client data after the login: one whole packet that needs no decision goes to the
        engine as it came (the hot path); anything else through the relay."""
        try:
            if not self._closed and self.relay.client_passthrough(data, self._unseen):  # type: ignore[union-attr]
                self._engine.write(data)  # type: ignore[union-attr]
                return
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)
            return
        self._client_data(data)

    def _client_data(self, data: bytes) -> None:
        if self._closed:
            return
        if self._client_hold is not None:
            self._client_hold.append(data)
            return
        relay = self.relay
        assert relay is not None
        try:
            if not self._logged_in:
                if self._first_byte is not None:
                    self._cancel_first_byte()
                self._login_bytes += len(data)
                if self._login_bytes > LOGIN_MAX_BYTES:
                    self._client_protocol_error(f"more than {LOGIN_MAX_BYTES} bytes before the login was answered")
                    return
            self._apply(relay.client_data(data))
            if not self._logged_in and not self._closed:
                limit = relay.client.receive_limit()
                if limit == 0:
                    self._pause_client("limit")  # an SSLRequest was read: not a byte more in cleartext
                elif limit is not None and self._login_bytes + limit > LOGIN_MAX_BYTES:
                    self._client_protocol_error(f"a login packet of more than {LOGIN_MAX_BYTES} bytes")
        except ProtocolError as exc:
            self._client_protocol_error(str(exc))
        except Exception as exc:  # noqa: BLE001 - one session ends, the gateway goes on
            self._internal_error(exc)

    def _cancel_first_byte(self) -> None:
        timer, self._first_byte = self._first_byte, None
        if timer is not None and timer is not True:
            timer.cancel()  # type: ignore[union-attr]

    def _client_eof(self) -> bool:
        if self._closed:
            return False
        relay = self.relay
        assert relay is not None
        try:
            engine = self._engine
            if (self._logged_in and relay.client.state is ClientState.COMMAND and not relay.client.trailing_data[0]
                    and not relay.client.tls and self._client_hold is None
                    and engine is not None and engine.can_write_eof() and not engine.is_closing()):
                # a half-close: the engine sees EOF and closes once it has answered, which
                # the client still receives
                engine.write_eof()
                return True
            if self._client_hold is not None:  # EOF inside the TLS upgrade
                self._close()
                return False
            self._apply(relay.client_data(b""))
            if not self._closed:
                self._close()
        except ProtocolError as exc:
            self._client_protocol_error(str(exc))
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)
        return False

    def _client_protocol_error(self, message: str) -> None:
        log.info("mysql session %s (cluster %s, %s): client protocol error: %s", self.id, self.identifier,
                 self.peer_host, message)
        relay = self.relay
        if relay is not None:
            if "exceeds the limit" in message:
                err = ErrPacket(1153, "Got a packet bigger than 'max_allowed_packet' bytes", "08S01")
            elif not self._logged_in:
                err = ErrPacket(1043, "Bad handshake", "08S01")
            else:
                err = ErrPacket(1835, "Malformed communication packet", "HY000")
            self._write_client(relay.client_error(err))
        self._audit_failed_login(f"protocol error: {message}")
        self._close()

    def _pause_client(self, reason: str) -> None:
        if not self._client_pauses and self._client is not None:
            self._client.pause_reading()
        self._client_pauses.add(reason)

    def _resume_client(self, reason: str) -> None:
        if reason not in self._client_pauses:
            return
        self._client_pauses.discard(reason)
        client = self._client
        if not self._client_pauses and client is not None and not client.is_closing():
            client.resume_reading()

    def _pause_engine(self) -> None:
        if self._engine is not None and not self._engine_paused:
            self._engine_paused = True
            self._engine.pause_reading()

    def _resume_engine(self) -> None:
        if self._engine is not None and self._engine_paused:
            self._engine_paused = False
            if not self._engine.is_closing():
                self._engine.resume_reading()

    # --- TLS --------------------------------------------------------------------------------

    def _start_client_tls(self) -> None:
        raw = self._client
        assert raw is not None
        self._pause_client("limit")  # the ClientHello stays in the kernel until TLS reads it
        self._client_hold = []
        self._spawn(self._client_tls(raw))

    def _remaining(self) -> float:
        timer = self._timer
        if timer is None:
            return self.ctx.limits.handshake_timeout
        return max(0.1, timer.when() - asyncio.get_running_loop().time())

    async def _client_tls(self, raw: asyncio.Transport) -> None:
        target, leg, relay = self.target, self._leg, self.relay
        assert target is not None and target.tls is not None and leg is not None and relay is not None
        loop = asyncio.get_running_loop()
        try:
            transport = await loop.start_tls(raw, leg, target.tls, server_side=True,
                                             ssl_handshake_timeout=self._remaining())
            assert transport is not None
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            log.info("mysql session %s (cluster %s, %s): TLS handshake failed: %s", self.id, self.identifier,
                     self.peer_host, exc)
            self.ctx.audit.event("gateway.tls_failed", verdict="deny", cluster=self.identifier, source_ip=self.peer_host,
                                 reason=str(exc)[:200])
            self._abort()
            self.connection_lost(exc)  # the TLS protocol may not report it to this session
            return
        if self._closed:
            transport.abort()
            return
        self._client = self.transport = transport
        self._client_pauses.clear()  # start_tls resumed the raw transport; the TLS one reads
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        held, self._client_hold = self._client_hold or [], None
        try:
            self._apply(relay.client_tls_established())
        except ProtocolError as exc:
            self._client_protocol_error(str(exc))
            return
        for data in held:
            self._client_data(data)

    def _start_engine_tls(self) -> None:
        engine = self._engine
        assert engine is not None
        self._engine_hold = []
        self._spawn(self._engine_tls(engine))

    async def _engine_tls(self, engine: asyncio.Transport) -> None:
        leg, relay, target = self._engine_leg, self.relay, self.target
        assert leg is not None and relay is not None and target is not None
        loop = asyncio.get_running_loop()
        context = engine_tls_context(self.ctx, target.socket_path)
        try:
            transport = await loop.start_tls(engine, leg, context, server_side=False,
                                             ssl_handshake_timeout=self._remaining())
            assert transport is not None
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            log.warning("mysql session %s (cluster %s): TLS to the engine failed: %s", self.id, self.identifier, exc)
            self._audit_failed_login("TLS to the engine failed")
            self._client_error(ErrPacket(2026, "SSL connection error: TLS to the database engine failed", "HY000"),
                               any_state=False)
            self._close()
            return
        if self._closed:
            transport.abort()
            return
        context.established(transport.get_extra_info("ssl_object"))
        self._engine = transport
        self._engine_paused = False
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        held, self._engine_hold = self._engine_hold or [], None
        try:
            self._apply(relay.engine_tls_established())
        except ProtocolError as exc:
            self._engine_failed(exc)
            return
        for data in held:
            self._engine_data(data)

    # --- engine -> gateway ------------------------------------------------------------------

    async def _connect_engine(self) -> None:
        target = self.target
        assert target is not None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.ctx.limits.engine_connect_timeout):
                await loop.create_unix_connection(lambda: _EngineLeg(self), target.socket_path)
        except (OSError, TimeoutError) as exc:
            log.info("mysql session %s (cluster %s): engine unreachable at %s: %s", self.id, self.identifier,
                     target.socket_path, exc)
            if not self._closed:
                self._refuse_before_greeting(_unavailable(self.identifier))
            return

    def _engine_made(self, transport: asyncio.Transport) -> None:
        if self._closed:
            transport.close()
            return
        self._engine = self._engine_raw = transport
        self._engine_leg = transport.get_protocol()  # type: ignore[assignment]
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)

    def _engine_data(self, data: bytes) -> None:
        relay = self.relay
        assert relay is not None  # set before the engine is connected
        inspector = self._inspector
        if inspector is not None and inspector.post is not None:
            inspector.engine_answered()
        try:
            if relay.engine.passthrough and not self._closed:
                self._client.write(data)  # type: ignore[union-attr]  # the hot path
                if self._offload_wanted:
                    self._try_offload()
                return
            if self._closed:
                return
            if self._engine_hold is not None:
                self._engine_hold.append(data)
                return
            self._apply(relay.engine_data(data))
            if self._offload_wanted:
                self._try_offload()
        except ProtocolError as exc:
            self._engine_failed(exc)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)

    def _engine_eof(self) -> None:
        relay = self.relay
        if self._closed or relay is None or relay.closed:
            return
        try:
            if relay.client.state in _LOGIN_STATES:
                self._audit_failed_login("the engine closed the connection")
                greeted = relay.client.state is not ClientState.SEND_GREETING
                self._client_error(_lost(self.identifier) if greeted else _unavailable(self.identifier), any_state=False)
            self._apply(relay.engine_data(b""))
            if not self._closed:
                self._close()
        except ProtocolError as exc:
            self._engine_failed(exc)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)

    def _engine_lost(self, exc: Exception | None) -> None:
        if self._closed:
            return
        relay = self.relay
        if relay is not None and not relay.engine.trailing_data[1]:
            self._engine_eof()  # a reset without EOF is the end of the stream too
        if not self._closed:
            self._close()

    def _engine_failed(self, exc: ProtocolError) -> None:
        log.warning("mysql session %s (cluster %s): engine protocol error: %s", self.id, self.identifier, exc)
        self._audit_failed_login("engine protocol error")
        self._client_error(_lost(self.identifier), any_state=False)
        self._close()


def _lost(identifier: str) -> ErrPacket:
    return ErrPacket(2013, f"Lost connection to the database engine of cluster '{identifier}'", "HY000")
