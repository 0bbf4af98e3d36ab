"""The life cycle every gateway session shares, whatever its protocol.

Theory of operation. The listener (``gateway/listener.py``) creates one :class:`Session` per
accepted socket; a protocol driver (``drivers/mysql.py``, ``drivers/postgres.py``) subclasses it
and keeps only what its protocol's events mean. The base owns:

- **admission**: the security groups decide before a single byte is sent
  (:meth:`GatewayContext.admit`), then the source's limit of connections that have not
  finished logging in (``Limits.max_pending_logins``, at most half the cluster's limit),
  before any engine connection is opened; the session is counted per cluster until it ends
  and per source until its login is done. Refusals and timeouts before a login are counted by
  ``gateway/refusals.py`` (a few audit events per source, whatever the number of connections);
- **the phase**, a :class:`Phase` that only moves along :data:`TRANSITIONS`::

      ACCEPTED --> CONNECTING --> LOGIN --> RELAYING <--> OFFLOADED
          \\___________\\____________\\__________\\_____________\\____--> CLOSED

  ``ACCEPTED``: admitted, the client has not yet said enough to reach the engine (encryption
  and start-up negotiation); ``CONNECTING``: the engine socket is being opened; ``LOGIN``: the
  login is relayed; ``RELAYING``: logged in, relayed by the event loop; ``OFFLOADED``: in the
  native relay threads (``gateway/offload.py``), which may hand a session back;
- **timers**: the first-byte deadline (armed by the protocol when it is the client's turn),
  the handshake deadline (accept to login) and what is left of it for a TLS handshake;
- **audit once**: a login (or change of user) relayed to the engine is pending until the
  engine answers; it is audited exactly once, allowed or denied, whatever ends it. A
  connection that ends before any login verdict -- a protocol error, a failed TLS handshake,
  a client that hangs up, a timeout, an engine that cannot be reached -- is a refusal with
  its reason (:meth:`_failing` records the first reason; :meth:`_finish` reports it through
  ``gateway/refusals.py``, so a flood of them stays a few events per source);
- **internal errors**: an unexpected exception is logged with an id, audited, and ends this
  session only (never the gateway);
- **the end**: :meth:`_close` (flush, with a grace for a peer that reads nothing),
  :meth:`_abort`, and the release of everything the session holds, once;
- **TLS on the client leg** and **the hand-over** to the native relay and back.

The two sides are :class:`~.leg.Leg` objects (``client_leg``, ``engine_leg``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

from dbkeep.errors import DbError, SessionStateError
from dbkeep.gateway import refusals
from dbkeep.gateway.listener import GatewayContext
from dbkeep.gateway.offload import HandedBack
from dbkeep.gateway.target import ClusterTarget
from dbkeep.pki.tls import describe_session

from .leg import PEER, Leg

__all__ = ["RDSADMIN", "TRANSITIONS", "Phase", "Session"]

# dbkeep's own account in every engine: nobody logs in as it through the gateway (both drivers
# refuse the name with their engine's own words)
RDSADMIN = "rdsadmin"


class Phase(enum.Enum):
    ACCEPTED = "accepted"
    CONNECTING = "connecting to the engine"
    LOGIN = "login"
    RELAYING = "relaying"
    OFFLOADED = "in the native relay"
    CLOSED = "closed"


_P = Phase
TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    _P.ACCEPTED: frozenset({_P.CONNECTING, _P.CLOSED}),
    _P.CONNECTING: frozenset({_P.LOGIN, _P.CLOSED}),
    _P.LOGIN: frozenset({_P.RELAYING, _P.CLOSED}),
    _P.RELAYING: frozenset({_P.OFFLOADED, _P.CLOSED}),
    _P.OFFLOADED: frozenset({_P.RELAYING, _P.CLOSED}),
    _P.CLOSED: frozenset({_P.CLOSED}),
}
LOGGED_IN = frozenset({_P.RELAYING, _P.OFFLOADED})


class Session(asyncio.Protocol):
    """Base of protocol sessions (see the module docstring). Subclasses set ``PROTOCOL`` and
    ``log`` and implement the hooks marked "(subclasses)"."""

    PROTOCOL: ClassVar[str] = "gateway"
    log: ClassVar[logging.Logger] = logging.getLogger("dbkeep.gateway")

    def __init__(self, ctx: GatewayContext, identifier: str, port: int) -> None:
        self.ctx = ctx
        self.identifier = identifier
        self.port = port
        self.id = uuid.uuid4().hex[:12]
        self.target: ClusterTarget | None = None
        self.peer: tuple[str, int] | None = None
        self.phase = Phase.ACCEPTED
        self.statement: object | None = None  # what the statement guard is judging
        self.client_leg = Leg()
        self.engine_leg = Leg()
        self._counted = False
        self._pending_key: tuple[str, str] | None = None  # counted in ctx.pending until the login is done
        self._tasks: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._first_byte: asyncio.TimerHandle | None = None
        self._pending: tuple[str, str | None, str | None] | None = None  # (kind, user, database) awaiting the engine
        self._offloaded: int | None = None  # the native relay's handle while it relays this session
        self._accounted = False  # a login verdict or a refusal of this connection is in the audit trail
        self._accepted_at = 0.0  # the loop's time at accept (the login latency starts here)
        # the cluster's [from clients, from engines] byte counters (ctx.traffic), moved by the
        # Python paths per chunk they already handle; the native relay counts its own
        self.traffic: list[int] = [0, 0]
        self._failure: tuple[str, dict[str, Any]] | None = None  # why it is ending before a verdict (the first reason)

    # --- phase ------------------------------------------------------------------------------

    def _enter(self, phase: Phase) -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise SessionStateError(f"session {self.id}: {self.phase.name} -> {phase.name} is not a transition")
        self.phase = phase

    @property
    def closed(self) -> bool:  # noqa: D401 - a state, not an action
        return self.phase is Phase.CLOSED

    @property
    def logged_in(self) -> bool:
        return self.phase in LOGGED_IN

    @property
    def transport(self) -> asyncio.Transport | None:
        """The client's current transport (TLS once upgraded)."""
        return self.client_leg.transport

    @property
    def peer_host(self) -> str:
        return self.peer[0] if self.peer else ""

    # --- admission --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.peer = transport.get_extra_info("peername")
        target = self.ctx.admit(self.identifier, self.port, self.peer)
        if target is None:
            transport.abort()  # closed before a single byte is sent
            self._enter(Phase.CLOSED)
            return
        self.target = target
        ctx = self.ctx
        key = (self.identifier, refusals.source_key(self.peer_host))
        pending = ctx.pending.get(key, 0)
        if pending >= ctx.pending_limit(target):
            # before any engine connection: the flood costs an accept and a close
            self.refuse(refusals.PENDING_LIMIT)
            refusal = self.refusal_bytes()
            if refusal:
                transport.write(refusal)  # type: ignore[attr-defined]
            transport.close()
            self._enter(Phase.CLOSED)
            return
        ctx.pending[key] = pending + 1
        self._pending_key = key
        # uvloop's transports implement asyncio.Transport without subclassing it
        self.client_leg.attach(transport)  # type: ignore[arg-type]
        ctx.connections[self.identifier] = ctx.connections.get(self.identifier, 0) + 1
        ctx.accepted[self.identifier] = ctx.accepted.get(self.identifier, 0) + 1
        traffic = ctx.traffic.get(self.identifier)
        if traffic is None:
            traffic = ctx.traffic[self.identifier] = [0, 0]
        self.traffic = traffic
        self._counted = True
        loop = asyncio.get_running_loop()
        self._accepted_at = loop.time()
        self._timer = loop.call_later(ctx.limits.handshake_timeout, self._handshake_timeout)
        self.admitted()

    def admitted(self) -> None:
        """Start the protocol (subclasses)."""

    def refusal_bytes(self) -> bytes:
        """What a connection refused at accept is sent before it is closed (subclasses)."""
        return b""

    def refuse(self, reason: str, **fields: Any) -> None:
        """Count a refusal or a timeout before the login (aggregated audit: gateway/refusals.py)."""
        self._accounted = True
        self.ctx.refusals.refused(self.identifier, self.peer_host, reason, port=self.port, **fields)

    def _failing(self, reason: str, **fields: Any) -> None:
        """The connection is ending before a login verdict, for ``reason`` (one of
        ``refusals``' reasons; ``fields`` such as ``detail`` go into its audit event). The
        first reason given is the one reported, by :meth:`_finish`; a session with a verdict
        already audited reports nothing more."""
        if self._failure is None:
            self._failure = (reason, fields)

    def over_cluster_limit(self) -> bool:
        return self.ctx.connections.get(self.identifier, 0) > self.ctx.cluster_limit(self.target)

    def login_finished(self) -> None:
        """The login is done (or the session ends): the source's pending slot is free again."""
        key, self._pending_key = self._pending_key, None
        if key is not None:
            left = self.ctx.pending.get(key, 1) - 1
            if left > 0:
                self.ctx.pending[key] = left
            else:
                self.ctx.pending.pop(key, None)

    def uncount(self) -> None:
        """Release the session's connection slot and pending slot (idempotent)."""
        if self._counted:
            self._counted = False
            self.ctx.connections[self.identifier] -= 1
        self.login_finished()

    def connection_lost(self, exc: Exception | None) -> None:
        self.uncount()
        if not self.closed:
            self._failing(refusals.CLIENT_CLOSED)
            self._audit_failed_login("client closed the connection")
        self._finish()
        self.engine_leg.close(grace=None)

    # --- tasks and timers -------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """A session-owned task (TLS handshake, engine connect, cancel): cancelled when the
        session ends; its failure ends the session, never the gateway."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._internal_error(task.exception())

    def _remaining(self) -> float:
        """What is left of the handshake deadline (for a TLS handshake)."""
        timer = self._timer
        if timer is None:
            return self.ctx.limits.handshake_timeout
        return max(0.1, timer.when() - asyncio.get_running_loop().time())

    def _handshake_timeout(self) -> None:
        self._timer = None
        if self.logged_in or self.closed:
            return
        self.log.debug("%s session %s (cluster %s, %s): login not finished within %.0f s; closed", self.PROTOCOL, self.id,
                       self.identifier, self.peer_host, self.ctx.limits.handshake_timeout)
        # counted with the other refusals of its source, not one login event per connection
        pending, self._pending = self._pending, None
        self.refuse(refusals.HANDSHAKE_TIMEOUT, user=pending[1] if pending else None)
        self._login_timed_out()

    def _login_timed_out(self) -> None:
        """End a session whose login missed the deadline (subclasses may say why first)."""
        self._abort()

    # what the first-byte timeout logs: the protocol's words for "the client said nothing"
    FIRST_BYTE_SILENCE: ClassVar[str] = "nothing sent within %.1f s"

    def _arm_first_byte(self) -> None:
        """The client's turn: it must send something within ``first_byte_deadline``."""
        self._first_byte = asyncio.get_running_loop().call_later(self.ctx.limits.first_byte_deadline,
                                                                 self._first_byte_timeout)

    def _cancel_first_byte(self) -> None:
        timer, self._first_byte = self._first_byte, None
        if timer is not None:
            timer.cancel()

    def _awaiting_first_byte(self) -> bool:
        """Whether the first-byte deadline still applies when it expires (subclasses)."""
        return not self.logged_in and not self.closed

    def _first_byte_timeout(self) -> None:
        self._first_byte = None
        if not self._awaiting_first_byte():
            return
        self.log.debug("%s session %s (cluster %s, %s): " + self.FIRST_BYTE_SILENCE + "; closed", self.PROTOCOL, self.id,
                       self.identifier, self.peer_host, self.ctx.limits.first_byte_deadline)
        self.refuse(refusals.FIRST_BYTE_TIMEOUT)
        self._abort()

    async def _open_engine(self, protocol_factory: Callable[[], asyncio.Protocol]) -> tuple[asyncio.Transport, Any]:
        """Connect to the engine's socket within ``engine_connect_timeout``."""
        target = self.target
        assert target is not None
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.ctx.limits.engine_connect_timeout):
            return await loop.create_unix_connection(protocol_factory, target.socket_path)  # type: ignore[return-value]

    # --- audit ------------------------------------------------------------------------------

    # how the pending login authenticates: "password" (relayed to the engine) or "iam" (a token
    # the gateway verifies; set by the IAM login path): the ``method`` of its gateway.login event
    login_method: str = "password"
    # the IAM principal of an IAM login (set once its token is verified): the guard's audit events name it
    iam_principal: str | None = None

    def audit_login(self, user: str | None, verdict: str, *, reason: str | None = None, database: str | None = None) -> None:
        """Every login's outcome is an audit event: time, cluster, source, user, TLS, method,
        verdict, and (first login only) ``login_ms``, accept to verdict."""
        first = not self._accounted
        self._accounted = True
        transport = self.client_leg.transport
        tls_info = describe_session(transport.get_extra_info("ssl_object") if transport else None)
        elapsed = None
        if first and self._accepted_at:
            elapsed = round((asyncio.get_running_loop().time() - self._accepted_at) * 1000, 1)
        self.ctx.audit.event("gateway.login", verdict=verdict, cluster=self.identifier, source_ip=self.peer_host, user=user,
                             database=database, tls_version=tls_info.get("tls_version"), tls_cipher=tls_info.get("tls_cipher"),
                             method=self.login_method, reason=reason, login_ms=elapsed)

    def _login_pending(self, kind: str, user: str | None, database: str | None) -> None:
        """A login (``kind`` "login") or change of user ("change_user") goes to the engine:
        its outcome is audited once, by :meth:`_audit_allowed` or :meth:`_audit_failed_login`."""
        self._pending = (kind, user, database)

    def _audit_allowed(self) -> tuple[str, str | None, str | None] | None:
        """The engine accepted the pending login: audit it; returns it (None if none)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            kind, user, database = pending
            self.audit_login(user, "allow", reason=None if kind == "login" else "change of user", database=database)
        return pending

    def _audit_failed_login(self, reason: str) -> None:
        """A pending login ended without the engine's OK: audit it as denied (once)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            kind, user, database = pending
            self.audit_login(user, "deny", reason=reason if kind == "login" else f"change of user: {reason}",
                             database=database)

    # --- the statement guard ------------------------------------------------------------------

    def _consult_guard(self, statement: object, sql: str | None) -> tuple[DbError | None, str | None]:
        """Ask ``ctx.guard`` about ``statement`` (readable as ``self.statement`` meanwhile):
        (its refusal or None, None), or (None, an error id) when the guard failed -- logged
        here; the protocol refuses then (fail closed)."""
        guard = self.ctx.guard
        assert guard is not None
        self.statement = statement
        try:
            return guard(self, sql), None
        except Exception:  # noqa: BLE001 - a failing guard refuses (fail closed)
            error_id = uuid.uuid4().hex[:12]
            self.log.exception("%s session %s: statement guard failed (%s)", self.PROTOCOL, self.id, error_id)
            return None, error_id
        finally:
            self.statement = None

    def _audit_refused(self, error: DbError, **fields: Any) -> None:
        """A statement the guard refused is an audit event (``fields``: the protocol's codes)."""
        self.ctx.audit.event("gateway.statement_refused", verdict="deny", cluster=self.identifier,
                             source_ip=self.peer_host, user=getattr(self, "user", None), **fields,
                             sqlstate=error.sqlstate, reason=error.message)

    # --- errors -----------------------------------------------------------------------------

    def _internal_error(self, exc: BaseException | None) -> None:
        """Log an unexpected error with an id and end this session only."""
        error_id = uuid.uuid4().hex[:12]
        self.log.error("%s session %s (cluster %s, %s): internal error %s", self.PROTOCOL, self.id, self.identifier,
                       self.peer_host, error_id, exc_info=exc)
        if not self.closed:
            self._failing(refusals.INTERNAL_ERROR, error_id=error_id)
            self._audit_failed_login(f"internal error {error_id}")
            self._internal_error_reply(error_id)
        self._abort()

    def _internal_error_reply(self, error_id: str) -> None:
        """Tell the client, where the protocol allows it (subclasses)."""

    # --- the end ----------------------------------------------------------------------------

    def _finish(self) -> None:
        """Release what the session holds (once enough; idempotent)."""
        self._audit_failed_login("the connection closed before the engine answered")
        if not self._accounted and self.target is not None:
            # ended before any verdict: a refusal with its reason, counted per source
            reason, fields = self._failure or (refusals.CLOSED_BEFORE_LOGIN, {})
            self.refuse(reason, **fields)
        self._enter(Phase.CLOSED)
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
        self._release()

    def _release(self) -> None:
        """Give back what the protocol holds (subclasses: e.g. a cancel key)."""

    def _close(self) -> None:
        """End the session after flushing what was written to both sides."""
        if self._offloaded is not None:  # the relay owns the sockets: it ends the session
            self.ctx.offload.close(self._offloaded)  # type: ignore[union-attr]
            return
        self._finish()
        self.engine_leg.close()
        self.client_leg.close()  # the TLS transport closes the raw one after close_notify

    def _abort(self) -> None:
        if self._offloaded is not None:
            self.ctx.offload.close(self._offloaded)  # type: ignore[union-attr]
            return
        self._finish()
        self.client_leg.abort()
        self.engine_leg.abort()

    # --- flow control -----------------------------------------------------------------------
    # Called by the legs' protocols: one side's write buffer is above its high-water mark.

    def pause_writing(self) -> None:  # the client is not keeping up with the engine
        self.engine_leg.pause(PEER)

    def resume_writing(self) -> None:
        self.engine_leg.resume(PEER)

    def _engine_pause_writing(self) -> None:  # the engine is not keeping up with the client
        self.client_leg.pause(PEER)

    def _engine_resume_writing(self) -> None:
        self.client_leg.resume(PEER)

    # --- TLS on the client leg --------------------------------------------------------------

    async def _client_tls(self, protocol: Any, context: ssl.SSLContext) -> None:
        """Upgrade the client leg; on success :meth:`_client_tls_established` continues."""
        try:
            transport = await self.client_leg.start_tls(protocol, context, server_side=True, timeout=self._remaining())
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            self.log.info("%s session %s (cluster %s, %s): TLS handshake failed: %s", self.PROTOCOL, self.id,
                          self.identifier, self.peer_host, exc)
            self._failing(refusals.TLS_FAILED, detail=str(exc)[:200] or type(exc).__name__)
            self._abort()
            self.connection_lost(exc)  # the TLS protocol may not report it to this session
            return
        if self.closed:
            transport.abort()
            return
        self._client_tls_established(self.client_leg.established(transport))

    def _client_tls_established(self, held: list[bytes]) -> None:
        """The client leg runs TLS; ``held``: data it delivered meanwhile (subclasses)."""

    # --- the native relay -------------------------------------------------------------------

    def _hand_over(self, *, mysql: tuple[bytes, bool, bool] | None = None, postgres: bytes | None = None,
                   inspect: bytes | None = None, plain: bool = False) -> bool:
        """Give the logged-in session's sockets to the native relay (``ctx.offload``); False
        when it stays here (nothing has changed then). With ``inspect``, the commands in it
        come to :meth:`_inspect_native` for a verdict while the relay keeps the session; with
        ``plain`` (MySQL) ordinary COM_QUERY statements pass without one (relay/mysql_plain.h)."""
        offload, client, engine = self.ctx.offload, self.client_leg, self.engine_leg
        if offload is None or client.transport is None or engine.transport is None:
            return False
        handle = offload.hand_over(client.transport, client.under, engine.transport, self._offload_done,
                                   engine_raw=engine.under, mysql=mysql, postgres=postgres, inspect=inspect,
                                   plain=plain, cluster=self.identifier,
                                   on_inspect=self._inspect_native if inspect is not None else None)
        if handle is None:
            return False
        self._offloaded = handle
        self._enter(Phase.OFFLOADED)
        return True

    def _offload_done(self, reason: str, handed_back: HandedBack | None = None) -> None:
        """The native relay is done with this session: it ended (close the transports, as it
        flushed what there was), or it stopped before a command Python must see -- then the
        session carries on here with what the relay had not delivered."""
        handle, self._offloaded = self._offloaded, None
        if handed_back is None or self.closed or handle is None:
            self.log.debug("%s session %s (cluster %s): %s", self.PROTOCOL, self.id, self.identifier, reason)
            self._abort()
            return
        self._enter(Phase.RELAYING)
        self._handed_back(handle, handed_back)

    def _handed_back(self, handle: int, handed_back: HandedBack) -> None:
        """Carry on in Python after a hand-back (subclasses whose relay hands back)."""
        self._abort()

    def _inspect_native(self, command: bytes) -> None:
        """A command the native relay reported (``inspect``): answer ``ctx.offload.verdict``
        (subclasses that hand over with an inspect set)."""
        if self._offloaded is not None:
            self.ctx.offload.verdict(self._offloaded, False)  # type: ignore[union-attr]
