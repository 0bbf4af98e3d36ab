"""The MySQL/MariaDB session driver: one client connection relayed to its cluster's engine.

Theory of operation (MariaDB KB "Connection" and "0 - Packet"; DESIGN.md, house style).
:class:`MySQLSession` is what the listener creates for an accepted socket. Its life cycle
(admission by security group, phases, timers, audit once, internal errors, close, TLS of the
client leg, hand-over to the native relay) is :class:`~.session.Session`'s; its two sides are
:class:`~.leg.Leg` objects. This module keeps what MySQL's events mean: the session hands the
socket to two small protocols of its own and drives a sans-I/O
:class:`~dbkeep.gateway.mysql.relay.Relay` with every byte. Every reply of the gateway's own
comes from :mod:`dbkeep.gateway.mysql.errors`.

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
   connections not yet logged in (checked at accept, :mod:`.session`), the client gets MariaDB's
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
   **IAM accounts** are the exception: the engine's AuthSwitchRequest to
   ``mysql_clear_password`` stops here, the client's token is verified at the gateway and the
   engine gets a proof instead (:mod:`.mysql_iam`, ``Relay``'s ``iam`` hook).
   **The client's address** reaches the engine in a PROXY protocol header written on the
   engine socket before anything else (:mod:`dbkeep.gateway.proxy_header`), so host-based
   accounts, ``SHOW PROCESSLIST`` and the engine's 1045 texts name the real client.
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
   held while dbkeep checks the engine (:mod:`.mysql_inspect`), or reads the variable of a
   ``PREPARE … FROM @v`` on the session's own engine leg (:mod:`.mysql_private`).
   **Native relay.** With ``ctx.offload`` (``dbkeep up``, ``--relay-threads`` > 0) and no
   guard, a logged-in session at a command boundary with nothing buffered is handed to the
   native relay threads (``gateway/relay/``; :mod:`.mysql_native`), both legs' TLS included.
   An inspected session goes too, with an inspect set (COM_QUERY, COM_STMT_PREPARE,
   COM_INIT_DB, and COM_STMT_EXECUTE once a prepared statement is a hygiene trigger): the
   relay reports each such command whole and waits; ``_inspect_native`` asks the inspector
   and lets it pass when it may go as it is with nothing to do after it, else has the session
   handed back with it first and replays the inspector's verdict to the full path (a
   refusal, a hold for the hygiene, a trigger whose answer must be seen). Prepared
   executions, result sets and LOAD DATA never leave the relay's threads. They frame the
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
from typing import ClassVar

from dbkeep.errors import ProtocolError, RemoteProtocolError
from dbkeep.gateway import refusals
from dbkeep.gateway.listener import GatewayContext
from dbkeep.gateway.mysql import charsets
from dbkeep.gateway.mysql import errors as wire_errors
from dbkeep.gateway.mysql.events import ChangeUser, LoginRequested, Prepare, Query
from dbkeep.gateway.mysql.states import ClientState
from dbkeep.gateway.mysql.wire import frame
from dbkeep.gateway.mysql.messages import CommandCode, ErrPacket, OkPacket
from dbkeep.gateway.mysql.relay import HOLD, Decidable, Output, Relay
from dbkeep.gateway.proxy_header import proxy_v1

from .leg import LIMIT
from .mysql_iam import MySQLIam
from .mysql_inspect import Inspector
from .mysql_native import NativeRelay
from .mysql_private import PrivateReads
from .mysql_protocols import _ClientLeg, _ClientStream, _EngineLeg
from .mysql_tls import EngineTlsContext, engine_tls_context
from .session import RDSADMIN, Phase, Session

log = logging.getLogger("dbkeep.gateway.mysql")

__all__ = ["EngineTlsContext", "MySQLSession"]

LOGIN_MAX_BYTES = 1024 * 1024  # what a client may send before its login is answered

_CLOSED = Phase.CLOSED
_RELAYING = Phase.RELAYING
_LOGIN_STATES = frozenset({
    ClientState.SEND_GREETING, ClientState.AWAIT_LOGIN, ClientState.AWAIT_LOGIN_TLS,
    ClientState.AUTH, ClientState.CHANGE_USER,
})

# Commands the hot path forwards without a decision: with a statement guard, every command but
# the statements; without one, every command (the sans-I/O layer keeps the ones that change the
# session -- COM_CHANGE_USER, COM_QUIT ... -- on the slow path in any case).
_ALL_COMMANDS = frozenset(range(256))
_GUARDED_COMMANDS = _ALL_COMMANDS - {CommandCode.COM_QUERY, CommandCode.COM_STMT_PREPARE}
# Inspected sessions (drivers/mysql_inspect.py) also decide on these; while a hygiene is due,
# on every command.
_INSPECTED_COMMANDS = _GUARDED_COMMANDS - {CommandCode.COM_STMT_EXECUTE, CommandCode.COM_INIT_DB,
                                           CommandCode.COM_RESET_CONNECTION, CommandCode.COM_PROCESS_KILL}
_NO_COMMANDS: frozenset[int] = frozenset()
_HELD = "hold"  # the client leg's pause reason while a command is held


class MySQLSession(PrivateReads, NativeRelay, Session):
    """One MySQL client connection at a cluster endpoint (see the module docstring).

    What a statement guard may read: ``user`` (the current account), ``users`` (every account
    the session logged in or changed to: the session is privileged if any of them is),
    ``database``, ``tls`` (whether the client leg runs TLS), ``statement`` (the Query or
    Prepare being judged; the guard is called with its ``sql``).
    """

    PROTOCOL: ClassVar[str] = "mysql"
    log: ClassVar[logging.Logger] = log
    FIRST_BYTE_SILENCE: ClassVar[str] = "no packet within %.1f s of the greeting"

    def __init__(self, ctx: GatewayContext, identifier: str, port: int) -> None:
        super().__init__(ctx, identifier, port)
        self.relay: Relay | None = None
        self.user: str | None = None
        self.users: list[str] = []
        self.database: str | None = None
        self.statement: Query | Prepare | None = None
        self._guard = ctx.guard
        self._unseen = _ALL_COMMANDS if ctx.guard is None else _GUARDED_COMMANDS
        self._inspector: Inspector | None = None  # grant-table checks (ctx.mysql_hygiene)
        self._offload_wanted = False  # try to hand the session to the native relay when quiescent
        self._offload_attempts = 0
        # an inspected command the native relay handed back: (its bytes, the inspector's
        # verdict, the trigger to watch for) -- the full path uses that verdict, not a second one
        self._predecided: tuple[bytes, ErrPacket | object | None, tuple[str, str] | None] | None = None
        self._engine_protocol: _EngineLeg | None = None
        self._client_protocol: _ClientLeg | None = None
        self._login_bytes = 0
        self._first_byte_due = True  # the first-byte deadline starts with the greeting
        iam_login = ctx.extra.get("iam")
        self._iam = MySQLIam(self, iam_login) if iam_login is not None else None  # IAM logins (mysql_iam.py)

    @property
    def tls(self) -> bool:
        return self.relay is not None and self.relay.client.tls

    # --- lifecycle --------------------------------------------------------------------------

    def admitted(self) -> None:
        target, raw = self.target, self.client_leg.transport
        assert target is not None and raw is not None
        limits = self.ctx.limits
        self._client_protocol = _ClientLeg(self)
        raw.set_protocol(self._client_protocol)  # reading starts after connection_made, with this protocol
        self.relay = Relay(self._decide, client_tls=target.tls is not None, engine_tls="as-client",
                           max_message_size=limits.max_packet, iam=self._iam.answer if self._iam is not None else None,
                           iam_accounts=self._iam.accounts() if self._iam is not None else None)
        if self.over_cluster_limit():
            log.debug("mysql session %s (cluster %s, %s): too many connections", self.id, self.identifier, self.peer_host)
            self.refuse(refusals.CLUSTER_LIMIT)
            self._refuse_before_greeting(wire_errors.TOO_MANY_CONNECTIONS)
            return
        self._enter(Phase.CONNECTING)
        self._spawn(self._connect_engine())

    def refusal_bytes(self) -> bytes:
        return frame(wire_errors.TOO_MANY_CONNECTIONS.build(None), 0)

    def _internal_error_reply(self, error_id: str) -> None:
        self._client_error(wire_errors.internal_error(error_id), any_state=False)

    def _login_timed_out(self) -> None:
        relay = self.relay
        if relay is not None and relay.client.state is ClientState.SEND_GREETING:
            # the engine never greeted
            self._write_client(relay.client_error(wire_errors.engine_unavailable(self.identifier)))
        self._close()

    def _finish(self) -> None:
        if self._inspector is not None and self.phase is not _CLOSED:
            self._inspector.session_closed()
        self._variable_read_closed()
        super()._finish()

    def _release(self) -> None:
        self._offload_wanted = False
        self._first_byte_due = False

    # --- audit ------------------------------------------------------------------------------

    def _observe(self, events: list[object]) -> None:
        """The engine's verdict on a relayed login or change of user."""
        for event in events:
            kind = type(event)
            if self._iam is not None and (kind is OkPacket or kind is ErrPacket):
                self._iam.engine_answered(kind is OkPacket, self._engine_thread(), getattr(event, "message", ""))
            if kind is OkPacket and self._pending is not None:
                what, user, database = self._pending
                self.user = user
                self.users.append(user)  # type: ignore[arg-type]
                if self.ctx.mysql_hygiene is not None and self.ctx.mysql_account_facts is not None:
                    if self._inspector is None:
                        self._inspector = Inspector(self)
                    self._inspector.logged_in(user, database, change=what != "login")  # type: ignore[arg-type]
                if what == "login":
                    self.database = database
                    self._enter(Phase.RELAYING)
                    self.login_finished()
                    if self._timer is not None:
                        self._timer.cancel()
                        self._timer = None
                    # reads no longer need a limit: plain data_received from the next callback on
                    asyncio.get_running_loop().call_soon(self._stream_client)
                else:
                    self.database = database or self.database
                self._audit_allowed()
            elif kind is ErrPacket and self._pending is not None:
                err: ErrPacket = event  # type: ignore[assignment]
                self._audit_failed_login(f"engine error {err.errno}: {err.message}")

    # --- decisions --------------------------------------------------------------------------

    def _decide(self, event: Decidable) -> ErrPacket | object | None:
        kind = type(event)
        inspector = self._inspector
        predecided, self._predecided = self._predecided, None
        if predecided is not None and (kind is LoginRequested or bytes(event.raw) != predecided[0]):  # type: ignore[union-attr]
            predecided = None
        if predecided is not None and predecided[1] is HOLD and inspector is not None and not inspector.busy:
            # the work that HOLD waited for (a hygiene before the command) ended before the
            # hand-back was read here: nothing would release a hold now, so judge it again
            predecided = None
        if predecided is not None:
            verdict, post = predecided[1], predecided[2]
            if post is not None and inspector is not None:
                inspector.post = post  # forwarded now: the engine's answer starts the hygiene
            if verdict is not None:
                return verdict
        elif inspector is not None and inspector.active and kind is not LoginRequested:
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
            return wire_errors.access_denied(user, self.peer_host, bool(response.auth_response))
        if target.require_tls and not event.tls:
            self.audit_login(user, "deny", reason="require_secure_transport: cleartext connection", database=database)
            return wire_errors.INSECURE_TRANSPORT
        self._login_pending("login", user, database)
        return None

    def _decide_change_user(self, event: ChangeUser) -> ErrPacket | None:
        user = event.user
        request = event.request
        charset = request.charset or (self.relay.client.charset if self.relay else 0)
        database = charsets.decode(request.database, charset) if request.database else None
        if user == RDSADMIN:
            self.audit_login(user, "deny", reason="change of user: rdsadmin is reserved", database=database)
            return wire_errors.access_denied(user, self.peer_host, bool(request.auth_response))
        self._login_pending("change_user", user, database)
        return None

    def _judge(self, event: Query | Prepare) -> ErrPacket | None:
        error, failed = self._consult_guard(event, event.sql)
        if failed is not None:
            error = wire_errors.guard_internal_error(failed)
        if error is None:
            return None
        self._audit_refused(error, mysql_errno=error.mysql_errno)
        return wire_errors.refusal(error)

    # --- output -----------------------------------------------------------------------------

    def _write_client(self, data: bytes) -> None:
        self.client_leg.write_if_open(data)

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
            engine = self.engine_leg.transport
            assert engine is not None
            engine.writelines(out.to_engine)
        if out.to_client:
            client = self.client_leg.transport
            assert client is not None
            client.writelines(out.to_client)
            if self._first_byte_due:  # the greeting: the client's turn
                self._first_byte_due = False
                self._arm_first_byte()
        if out.close:
            self._close()
            return
        if out.held:
            self.client_leg.pause(_HELD)  # nothing more is read until the hygiene has run
            if self._inspector is not None and self._inspector.read_request is not None:
                self._start_variable_read()  # PREPARE … FROM @v: read @v first (mysql_private.py)
        if out.start_client_tls:
            self._start_client_tls()
        if out.start_engine_tls:
            self._start_engine_tls()

    # --- client -> gateway ------------------------------------------------------------------

    def _receive_limit(self) -> int | None:
        relay = self.relay
        if relay is None or self.logged_in:
            return None
        return relay.client.receive_limit()

    def _stream_client(self) -> None:
        client = self.client_leg.transport
        if self.phase is not _CLOSED and client is not None and not client.is_closing():
            client.set_protocol(_ClientStream(self))
            self._want_offload()
            self._try_offload()

    # --- grant-table checks (mysql_inspect.py) -------------------------------------------------

    def _inspection_changed(self) -> None:
        """Which commands the hot path may forward unseen, and whether the native relay may
        take the session, after the inspector changed its mind."""
        inspector = self._inspector
        if inspector is not None and inspector.active:
            self._unseen = _NO_COMMANDS if inspector.busy else _INSPECTED_COMMANDS
            if inspector.busy:
                self._offload_wanted = False
                return
        else:
            self._unseen = _ALL_COMMANDS if self._guard is None else _GUARDED_COMMANDS
        if self.phase is _RELAYING:
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
        if self.phase is _CLOSED or relay is None:
            return
        try:
            if relay.held:
                self._apply(relay.release())
            if self.phase is not _CLOSED and not relay.held:
                self.client_leg.resume(_HELD)
        except ProtocolError as exc:
            self._client_protocol_error(exc)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)

    def _end_for_inspection(self) -> None:
        """End this (uninspected) session: its account now needs inspection. A session in the
        native relay is ended there (its on_done closes the transports)."""
        if self.phase is _CLOSED:
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
        if self.phase is _CLOSED or relay is None:
            return
        if relay.held:
            self._write_client(relay.client_error(wire_errors.HYGIENE_FAILED))
        self._close()

    def _client_stream(self, data: bytes) -> None:
        """Client data after the login: one whole packet that needs no decision goes to the
        engine as it came (the hot path); anything else through the relay."""
        self.traffic[0] += len(data)
        try:
            if self.phase is not _CLOSED and self.relay.client_passthrough(data, self._unseen):  # type: ignore[union-attr]
                self.engine_leg.transport.write(data)  # type: ignore[union-attr]
                return
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)
            return
        self._client_data(data)

    def _client_data(self, data: bytes) -> None:
        if self.phase is _CLOSED:
            return
        hold = self.client_leg.hold
        if hold is not None:
            hold.append(data)
            return
        relay = self.relay
        assert relay is not None
        try:
            if not self.logged_in:
                if self._first_byte_due or self._first_byte is not None:
                    self._first_byte_due = False
                    self._cancel_first_byte()
                self._login_bytes += len(data)
                if self._login_bytes > LOGIN_MAX_BYTES:
                    raise RemoteProtocolError(f"more than {LOGIN_MAX_BYTES} bytes before the login was answered")
            self._apply(relay.client_data(data))
            if not self.logged_in and self.phase is not _CLOSED:
                limit = relay.client.receive_limit()
                if limit == 0:
                    self.client_leg.pause(LIMIT)  # an SSLRequest was read: not a byte more in cleartext
                elif limit is not None and self._login_bytes + limit > LOGIN_MAX_BYTES:
                    raise RemoteProtocolError(f"a login packet of more than {LOGIN_MAX_BYTES} bytes")
        except ProtocolError as exc:
            self._client_protocol_error(exc)
        except Exception as exc:  # noqa: BLE001 - one session ends, the gateway goes on
            self._internal_error(exc)

    def _client_eof(self) -> bool:
        if self.phase is _CLOSED:
            return False
        if not self.logged_in:
            self._failing(refusals.CLIENT_CLOSED)
        relay = self.relay
        assert relay is not None
        try:
            engine = self.engine_leg.transport
            if (self.logged_in and relay.client.state is ClientState.COMMAND and not relay.client.trailing_data[0]
                    and not relay.client.tls and self.client_leg.hold is None
                    and engine is not None and engine.can_write_eof() and not engine.is_closing()):
                # a half-close: the engine sees EOF and closes once it has answered, which
                # the client still receives
                engine.write_eof()
                return True
            if self.client_leg.hold is not None:  # EOF inside the TLS upgrade
                self._close()
                return False
            self._apply(relay.client_data(b""))
            if self.phase is not _CLOSED:
                self._close()
        except ProtocolError as exc:
            self._client_protocol_error(exc)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)
        return False

    def _client_protocol_error(self, exc: ProtocolError) -> None:
        log.info("mysql session %s (cluster %s, %s): client protocol error: %s", self.id, self.identifier,
                 self.peer_host, exc)
        relay = self.relay
        if relay is not None:
            self._write_client(relay.client_error(wire_errors.protocol_error(exc, logged_in=self.logged_in)))
        if not self.logged_in:
            self._failing(refusals.PROTOCOL_ERROR, detail=str(exc)[:200])
        self._audit_failed_login(f"protocol error: {exc}")
        self._close()

    # --- TLS --------------------------------------------------------------------------------

    def _start_client_tls(self) -> None:
        target = self.target
        assert target is not None and target.tls is not None
        self.client_leg.pause(LIMIT)  # the ClientHello stays in the kernel until TLS reads it
        self.client_leg.hold = []
        self._spawn(self._client_tls(self._client_protocol, target.tls))

    def _client_tls_established(self, held: list[bytes]) -> None:
        relay = self.relay
        assert relay is not None
        try:
            self._apply(relay.client_tls_established())
        except ProtocolError as exc:
            self._client_protocol_error(exc)
            return
        for data in held:
            self._client_data(data)

    def _start_engine_tls(self) -> None:
        self.engine_leg.hold = []
        self._spawn(self._engine_tls())

    async def _engine_tls(self) -> None:
        protocol, relay, target = self._engine_protocol, self.relay, self.target
        assert protocol is not None and relay is not None and target is not None
        context = engine_tls_context(self.ctx, target.socket_path)
        try:
            transport = await self.engine_leg.start_tls(protocol, context, server_side=False, timeout=self._remaining())
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            log.warning("mysql session %s (cluster %s): TLS to the engine failed: %s", self.id, self.identifier, exc)
            self._failing(refusals.ENGINE_UNAVAILABLE, detail=f"TLS to the engine failed: {exc}"[:200])
            self._audit_failed_login("TLS to the engine failed")
            self._client_error(wire_errors.engine_tls_failed(), any_state=False)
            self._close()
            return
        if self.phase is _CLOSED:
            transport.abort()
            return
        context.established(transport.get_extra_info("ssl_object"))
        held = self.engine_leg.established(transport)
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
        try:
            await self._open_engine(lambda: _EngineLeg(self))
        except (OSError, TimeoutError) as exc:
            log.info("mysql session %s (cluster %s): engine unreachable at %s: %s", self.id, self.identifier,
                     target.socket_path, exc)
            self._failing(refusals.ENGINE_UNAVAILABLE, detail=str(exc)[:200] or type(exc).__name__)
            if self.phase is not _CLOSED:
                self._refuse_before_greeting(wire_errors.engine_unavailable(self.identifier))
            return

    def _engine_made(self, transport: asyncio.Transport) -> None:
        if self.phase is _CLOSED:
            transport.close()
            return
        self.engine_leg.attach(transport)
        self._engine_protocol = transport.get_protocol()  # type: ignore[assignment]
        # before any MySQL byte: the engine takes the client's real address from it
        raw = self.client_leg.raw
        transport.write(proxy_v1(self.peer, raw.get_extra_info("sockname") if raw is not None else None))
        self._enter(Phase.LOGIN)

    def _engine_data(self, data: bytes) -> None:
        # a private read is outstanding (mysql_private.py): its answer is taken out
        if self._variable_read is not None and not (data := self._engine_scan(data)):
            return
        self.traffic[1] += len(data)
        relay = self.relay
        assert relay is not None  # set before the engine is connected
        inspector = self._inspector
        if inspector is not None and inspector.post is not None:
            inspector.engine_answered()
        try:
            if relay.engine.passthrough and self.phase is not _CLOSED:
                self.client_leg.transport.write(data)  # type: ignore[union-attr]  # the hot path
                if self._offload_wanted:
                    self._try_offload()
                return
            if self.phase is _CLOSED:
                return
            hold = self.engine_leg.hold
            if hold is not None:
                hold.append(data)
                self.traffic[1] -= len(data)  # counted when it is replayed here
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
        if self.phase is _CLOSED or relay is None or relay.closed:
            return
        try:
            if relay.client.state in _LOGIN_STATES:
                self._failing(refusals.ENGINE_UNAVAILABLE, detail="the engine closed the connection")
                self._audit_failed_login("the engine closed the connection")
                greeted = relay.client.state is not ClientState.SEND_GREETING
                self._client_error(wire_errors.engine_lost(self.identifier) if greeted
                                   else wire_errors.engine_unavailable(self.identifier), any_state=False)
            self._apply(relay.engine_data(b""))
            if self.phase is not _CLOSED:
                self._close()
        except ProtocolError as exc:
            self._engine_failed(exc)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)

    def _engine_lost(self, exc: Exception | None) -> None:
        if self.phase is _CLOSED:
            return
        relay = self.relay
        if relay is not None and not relay.engine.trailing_data[1]:
            self._engine_eof()  # a reset without EOF is the end of the stream too
        if self.phase is not _CLOSED:
            self._close()

    def _engine_failed(self, exc: ProtocolError) -> None:
        log.warning("mysql session %s (cluster %s): engine protocol error: %s", self.id, self.identifier, exc)
        self._failing(refusals.ENGINE_UNAVAILABLE, detail="engine protocol error")
        self._audit_failed_login("engine protocol error")
        self._client_error(wire_errors.engine_lost(self.identifier), any_state=False)
        self._close()
