"""Wiring of the two MySQL legs for a password-relay session (sans-I/O).

Theory of operation
-------------------
:class:`Relay` owns a :class:`~.client.ClientFacing` and an
:class:`~.engine.EngineFacing` and moves events between them as the gateway does for a
native-password login (DESIGN.md "Password logins are relayed"): the engine's greeting is
shown to the client with adjusted capabilities, the client's login is checked by ``decide``
and then forwarded, the authentication exchange is relayed packet by packet (each leg framing
with its own sequence ids), and in the command phase every command is offered to ``decide``
before it is forwarded while engine bytes go back untouched.

It does no I/O. Each call returns an :class:`Output`: bytes for each side (write them in
order; ``writelines`` keeps the zero-copy views), whether a transport must switch to TLS now,
and whether the session is over. An asyncio driver (an ``asyncio.Protocol`` per leg) is then
little more than::

    relay = Relay(decide, client_tls=True, engine_tls="as-client")
    # engine leg connected first; its data_received:
    out = relay.engine_data(data)
    # client leg data_received (read at most relay.client.receive_limit() bytes while it is
    # not None -- e.g. with asyncio.BufferedProtocol -- so no TLS byte is read in cleartext):
    out = relay.client_data(data)
    # for every Output:
    client_transport.writelines(out.to_client); engine_transport.writelines(out.to_engine)
    if out.start_client_tls:
        client_transport.pause_reading()   # nothing more in cleartext
        new = await loop.start_tls(client_transport, client_protocol, server_ctx, server_side=True)
        out = relay.client_tls_established()
        # bytes the protocol received while start_tls ran are TLS-decrypted: hold them until
        # here, then feed them with relay.client_data()
    if out.start_engine_tls:
        new = await loop.start_tls(engine_transport, engine_protocol, client_ctx)
        out = relay.engine_tls_established()
    if out.close: close both transports after writing.
    # on RemoteProtocolError: write relay.client_error(ErrPacket(...)) if not empty, close.
    # hot path, command phase: while relay.engine.passthrough, engine bytes may be written to
    # the client without feeding them; a client chunk for which
    # relay.client_passthrough(data, commands) is True is written to the engine as is.

``engine_tls``: False, the engine leg stays in cleartext; True, it always runs TLS (the engine
must offer it); ``"as-client"``, it runs TLS exactly when the client's login arrived over TLS
and the engine offers TLS. A cleartext client never gets a TLS engine leg that way, so an
engine account with ``REQUIRE SSL`` (which MariaDB refuses on any non-TLS connection, unix
sockets included) logs in through the gateway only when its client used TLS.

``decide(event)`` sees :class:`~.events.LoginRequested`, every statement
(:class:`~.events.Query`, :class:`~.events.Prepare`), :class:`~.events.ChangeUser`,
:class:`~.events.ProcessKill`, :class:`~.events.ResetConnection` and every other
:class:`~.events.Command`; it returns None to let it through or an
:class:`~.messages.ErrPacket` to refuse it. A refused login or change of user is answered by
the gateway. A refused command is, by default, answered *in order* by the engine: the gateway
forwards ``SIGNAL SQLSTATE ... SET MYSQL_ERRNO = ..., MESSAGE_TEXT = ...`` in its place, so a
client that pipelines commands still receives the error after the responses to the commands
before it, with the sequence id it expects (the text is sent as a ``_utf8mb4 X'..'`` literal,
immune to sql_mode and quoting). A refused COM_STMT_SEND_LONG_DATA or COM_STMT_CLOSE, which the
server never answers, is dropped. ``decide`` may also return :data:`HOLD` for a command or a
change of user: the relay keeps that event (a copy of its bytes), reads no further command, and
says so (``Output.held``); :meth:`Relay.release` asks ``decide`` again and carries on (the
gateway holds a statement while dbkeep checks the grant tables).

IAM logins (``iam``, DESIGN.md "IAM database login"): the engine marks an IAM account by
answering its login with an AuthSwitchRequest to ``mysql_clear_password`` (dbkeep's
``AWSAuthenticationPlugin``, empty plugin data). That request never reaches the client: the relay
asks the client for ``mysql_clear_password`` itself, with empty plugin data, as Aurora does --
only over TLS; a cleartext client is refused before its token is read. A client that sent the
token in its login packet already (it started with ``mysql_clear_password``) is not asked again;
the engine gets that login without the token. The token goes to ``iam(IamToken(...))``, which
returns the proof to send the engine (``bytes``, bound to the engine connection's id from its
greeting) or an ERR for the client (then the session ends). With ``iam_accounts``, an account the
engine marked so before is asked for its token before the engine sees the login, which then names
``mysql_clear_password`` with the proof as its data: no switch on the engine leg (a reply that is
not a token sends the login on as the client sent it; an engine that asks for another plugin
gets the client ``iam(IamNotIam(...))``'s ERR). An engine refusal because the plugin is not loaded
(IAM authentication off) goes to ``iam(IamPluginMissing(...))`` for the ERR the client sees.
Neither the token nor the proof ever crosses to the other side.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from dbkeep.errors import LocalProtocolError, RemoteProtocolError
from dbkeep.gateway.sansio import NEED_DATA

from .client import ClientFacing
from .codes import GENERAL_ERROR
from .engine import EngineFacing
from .events import (
    AuthData,
    ChangeUser,
    ClientCommand,
    Command,
    ConnectionClosed,
    Continuation,
    IamNotIam,
    IamPluginMissing,
    IamToken,
    LoginRequested,
    Passthrough,
    Prepare,
    ProcessKill,
    Query,
    Quit,
    ResetConnection,
    SslRequested,
)
from .messages import (
    AuthMoreData,
    AuthSwitchRequest,
    Capability,
    CommandCode,
    ErrPacket,
    HandshakeResponse41,
    InitialHandshake,
    OkPacket,
    client_greeting,
)
from .states import ClientState, EngineState
from .wire import DEFAULT_MAX_MESSAGE_SIZE, frame

# The client plugin dbkeep's AWSAuthenticationPlugin asks for (tokens travel as cleartext passwords).
IAM_CLIENT_PLUGIN = "mysql_clear_password"
# MariaDB's ER_PLUGIN_IS_NOT_LOADED: an IAM account's plugin is gone while IAM auth is off.
_PLUGIN_NOT_LOADED = 1524
_IAM_SERVER_PLUGIN = "AWSAuthenticationPlugin"

# Commands the server never answers: a refusal must not produce a reply either.
_NO_RESPONSE = frozenset({CommandCode.COM_STMT_SEND_LONG_DATA, CommandCode.COM_STMT_CLOSE})

__all__ = ["HOLD", "Decidable", "Output", "Relay", "signal_statement"]


class _Hold:
    def __repr__(self) -> str:
        return "HOLD"


HOLD = _Hold()  # what ``decide`` returns to keep a command until Relay.release()

Decidable = LoginRequested | Query | Prepare | ChangeUser | ProcessKill | ResetConnection | Command
Decide = Callable[[Decidable], "ErrPacket | _Hold | None"]
IamHook = Callable[[IamToken | IamPluginMissing | IamNotIam], "bytes | ErrPacket"]


class IamAccounts(Protocol):
    """The cluster's accounts the engine has marked as IAM ones (``drivers/mysql_iam.py``)."""

    def known(self, user: str) -> bool: ...

    def learned(self, user: str) -> None: ...

    def forget(self, user: str) -> None: ...


def _looks_like_token(data: bytes) -> bool:
    """An IAM token (a presigned URL), not a password: what the fast path may verify."""
    return b"X-Amz-Signature=" in data and b"Action=connect" in data


@dataclass
class Output:
    to_client: list[bytes | memoryview] = field(default_factory=list)
    to_engine: list[bytes | memoryview] = field(default_factory=list)
    events: list[object] = field(default_factory=list)  # what happened, in order (audit)
    start_client_tls: bool = False
    start_engine_tls: bool = False
    close: bool = False
    held: bool = False  # decide said HOLD: nothing more is read until release()


def signal_statement(err: ErrPacket) -> bytes:
    """A COM_QUERY payload that makes the engine answer with ``err``."""
    state = (err.sqlstate or GENERAL_ERROR).encode("ascii")
    if len(state) != 5 or not state.isalnum():
        raise LocalProtocolError(f"invalid SQLSTATE {err.sqlstate!r}")
    if not 1 <= err.errno <= 65534:
        raise LocalProtocolError(f"error number {err.errno} cannot be signalled")
    text = err.message.encode("utf-8", errors="replace").hex()
    sql = (
        f"SIGNAL SQLSTATE '{state.decode()}' SET MYSQL_ERRNO = {err.errno}, "
        f"MESSAGE_TEXT = _utf8mb4 X'{text}'"
    )
    return b"\x03" + sql.encode("ascii")


class Relay:
    """Password-relay wiring of a client leg and an engine leg."""

    def __init__(
        self,
        decide: Decide,
        *,
        client_tls: bool,
        engine_tls: bool | Literal["as-client"] = False,
        refuse_in_order: bool = True,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        iam: IamHook | None = None,
        iam_accounts: IamAccounts | None = None,
    ) -> None:
        self.client = ClientFacing(max_message_size=max_message_size)
        self.engine = EngineFacing(max_message_size=max_message_size)
        self._decide = decide
        self._client_tls = client_tls
        if engine_tls not in (True, False, "as-client"):
            raise ValueError(f"engine_tls must be True, False or 'as-client', not {engine_tls!r}")
        self._engine_tls = engine_tls
        self._refuse_in_order = refuse_in_order
        self._pending_login: HandshakeResponse41 | None = None
        self._held: ClientCommand | None = None
        self.closed = False  # once an Output said close, the relay ignores further input
        self._iam = iam
        self._auth_user: str | None = None  # the login or change of user under way
        self._change_user = False
        self._early_token: bytes | None = None  # a token sent in the login packet itself
        self._iam_waiting = False  # a switch to mysql_clear_password went to the client: its token is next
        self._iam_accounts = iam_accounts
        # a login held for an account known as an IAM one: the client is asked for its token
        # before the engine sees the login, which then carries the proof (no switch on that leg)
        self._fast: LoginRequested | None = None
        self._fast_login: HandshakeResponse41 | None = None
        self._fast_sent = False  # the engine has that login: its answer decides

    def _finish(self, out: Output) -> Output:
        if out.close:
            self.closed = True
        return out

    # -- engine leg --

    def engine_data(self, data: bytes | bytearray | memoryview) -> Output:
        """Feed bytes from the engine (``b""`` when it closed)."""
        if self.closed:
            return Output(close=True)
        out = Output()
        self.engine.receive_data(data)
        self._drain_engine(out)
        return self._finish(out)

    def engine_tls_established(self) -> Output:
        if self.closed:
            return Output(close=True)
        out = Output()
        self.engine.tls_established()
        assert self._pending_login is not None
        out.to_engine.append(self.engine.send(self._pending_login))
        self._pending_login = None
        return out

    def _drain_engine(self, out: Output) -> None:
        while True:
            event = self.engine.next_event()
            if event is NEED_DATA:
                return
            out.events.append(event)
            if isinstance(event, Passthrough):
                out.to_client.append(event.data)
            elif isinstance(event, InitialHandshake):
                if self._engine_tls is True and not event.capabilities & Capability.CLIENT_SSL:
                    raise RemoteProtocolError("the engine does not offer TLS")
                out.to_client.append(
                    self.client.send(client_greeting(event, tls=self._client_tls))
                )
            elif self._iam is not None and self._iam_event(event, out):
                pass
            elif isinstance(event, (AuthSwitchRequest, AuthMoreData, OkPacket, ErrPacket)):
                out.to_client.append(self.client.send(event))
                if isinstance(event, ErrPacket) and self.client.state is ClientState.CLOSED:
                    out.close = True
            elif isinstance(event, ConnectionClosed):
                out.close = True
                return
            if out.close:
                return

    # -- IAM logins --

    def _iam_event(self, event: object, out: Output) -> bool:
        """An engine packet of an IAM login, handled here (True) instead of relayed."""
        if self._auth_user is None:
            return False
        if self._fast_sent:
            if isinstance(event, AuthSwitchRequest):  # not an IAM account (any more)
                self._fast_sent = False
                if self._iam_accounts is not None:
                    self._iam_accounts.forget(self._auth_user)
                reply = self._iam(IamNotIam(self._auth_user))  # type: ignore[misc]
                out.to_client.append(self.client.send(reply))  # type: ignore[arg-type]
                out.close = True
                return True
            if isinstance(event, ErrPacket) and self._iam_accounts is not None:
                self._iam_accounts.forget(self._auth_user)
        if isinstance(event, AuthSwitchRequest) and event.plugin_name == IAM_CLIENT_PLUGIN:
            if self._iam_accounts is not None and not self._change_user:
                self._iam_accounts.learned(self._auth_user)  # the engine says it is an IAM account
            token, self._early_token = self._early_token, None
            if token is not None and self.client.tls:
                self._iam_answer(IamToken(self._auth_user, token, self._thread_id(), self._change_user), out)
            elif not self.client.tls:
                self._iam_answer(IamToken(self._auth_user, None, self._thread_id(), self._change_user), out)
            else:
                self._iam_waiting = True
                out.to_client.append(self.client.send(AuthSwitchRequest(IAM_CLIENT_PLUGIN, b"")))
            return True
        if isinstance(event, ErrPacket) and event.errno == _PLUGIN_NOT_LOADED and _IAM_SERVER_PLUGIN in event.message:
            reply = self._iam(IamPluginMissing(self._auth_user, event))  # type: ignore[misc]
            out.to_client.append(self.client.send(reply))  # type: ignore[arg-type]
            out.close = True
            return True
        if isinstance(event, (OkPacket, ErrPacket)):
            self._auth_user = self._early_token = None  # the exchange is over
            self._iam_waiting = self._fast_sent = False
        return False

    def _thread_id(self) -> int:
        greeting = self.engine.greeting
        assert greeting is not None
        return greeting.connection_id

    def _fast_eligible(self, event: LoginRequested) -> bool:
        """Ask the client for its token before the engine sees the login: an account the engine
        marked as an IAM one before, a TLS client that can switch plugins."""
        accounts = self._iam_accounts
        return (accounts is not None and event.tls and self.engine.greeting is not None
                and bool((self.client.capabilities or 0) & Capability.CLIENT_PLUGIN_AUTH)
                and accounts.known(event.user))

    def _fast_answer(self, token: bytes, out: Output) -> None:
        """The token of a held login: the engine gets the login with the proof in it, or (when
        the client sent no token, a password perhaps: the account may have changed) the login
        as it came, and the engine decides as it always does."""
        event, login = self._fast, self._fast_login
        self._fast = self._fast_login = None
        assert event is not None and login is not None and self._auth_user is not None
        if not _looks_like_token(token):
            if self._iam_accounts is not None:
                self._iam_accounts.forget(self._auth_user)
            self._early_token = token  # what the client said, should the engine ask for it
            self._send_login(event, login, out)
            return
        reply = self._iam(IamToken(self._auth_user, token, self._thread_id(), False))  # type: ignore[misc]
        if isinstance(reply, ErrPacket):
            out.to_client.append(self.client.send(reply))
            out.close = True
            return
        self._fast_sent = True
        self._send_login(event, dataclasses.replace(login, auth_plugin_name=IAM_CLIENT_PLUGIN, auth_response=reply),
                         out)

    def _send_login(self, event: LoginRequested, login: HandshakeResponse41, out: Output) -> bool:
        """The login to the engine, through TLS first when that leg runs it (then True: the
        rest waits for ``engine_tls_established``)."""
        if self._engine_leg_tls(event):
            out.to_engine.append(self.engine.send(login.ssl_request()))
            self._pending_login = login
            out.start_engine_tls = True
            return True
        out.to_engine.append(self.engine.send(login))
        return False

    def _iam_change_user(self, event: ChangeUser) -> ChangeUser:
        """A change of user may be to an IAM account: the relay watches its exchange, and a
        cleartext password in the command itself (``mysql_clear_password``) stays here, as in
        a login packet (its one-byte length cannot hold a real token anyway)."""
        self._auth_user, self._change_user = event.user, True
        request = event.request
        if request.auth_plugin_name != IAM_CLIENT_PLUGIN or not request.auth_response:
            return event
        self._early_token = bytes(request.auth_response).rstrip(b"\0")
        request = dataclasses.replace(request, auth_response=b"")
        assert self.client.capabilities is not None
        raw = memoryview(frame(request.build(self.client.capabilities), 0))
        return dataclasses.replace(event, raw=raw, request=request)

    def _iam_answer(self, event: IamToken, out: Output) -> None:
        reply = self._iam(event)  # type: ignore[misc]
        if isinstance(reply, ErrPacket):
            out.to_client.append(self.client.send(reply))
            out.close = True  # the engine leg waits for an answer it will never get
        else:
            out.to_engine.append(self.engine.send(AuthData(reply)))

    def _engine_leg_tls(self, login: LoginRequested) -> bool:
        if self._engine_tls == "as-client":
            greeting = self.engine.greeting
            offered = greeting is not None and bool(greeting.capabilities & Capability.CLIENT_SSL)
            return login.tls and offered
        return bool(self._engine_tls)

    # -- client leg --

    def client_data(self, data: bytes | bytearray | memoryview) -> Output:
        """Feed bytes from the client (``b""`` when it closed)."""
        if self.closed:
            return Output(close=True)
        out = Output()
        self.client.receive_data(data)
        self._drain_client(out)
        return self._finish(out)

    def client_passthrough(self, data: bytes, commands: frozenset[int]) -> bool:
        """The hot path, client to engine: True when ``data`` is one whole packet of the command
        phase that goes to the engine unchanged without a decision -- a continuation, or a
        command whose code is in ``commands`` (those ``decide`` lets through unseen) -- and
        both legs advanced as :meth:`client_data` would have; the caller writes ``data`` to
        the engine. False: nothing changed, feed ``data`` to :meth:`client_data`."""
        if self.closed or self._held is not None or self.engine.state is not EngineState.COMMAND:
            return False
        kind = self.client.passthrough(data, commands)
        if kind is None:
            return False
        self.engine.passed_through(kind)
        return True

    @property
    def held(self) -> bool:
        return self._held is not None

    def release(self) -> Output:
        """Decide the held command again (forward it, refuse it, or keep holding it) and go on
        with what the client sent after it."""
        out = Output()
        event, self._held = self._held, None
        if self.closed or event is None:
            return out
        self._handle_command(event, out)
        if not out.held and not out.close:
            self._drain_client(out)
        return self._finish(out)

    def native_state(self) -> tuple[bool, bool] | None:
        """(LOAD DATA wrap flag, engine owes nothing) when a native relay may take the session
        over now -- both legs in the command phase with nothing buffered -- else None."""
        if self.closed or self._held is not None:
            return None
        wrap, quiet = self.client.native_state(), self.engine.native_state()
        if wrap is None or quiet is None:
            return None
        return wrap, quiet

    def native_handed_back(self, quiet: bool) -> None:
        """The native relay gave the session back before a command: both legs as if each
        command it forwarded had been passed through here."""
        self.client.native_handed_back()
        self.engine.native_handed_back(quiet)

    def client_tls_established(self) -> Output:
        if self.closed:
            return Output(close=True)
        out = Output()
        self.client.tls_established()
        self._drain_client(out)
        return self._finish(out)

    def client_error(self, err: ErrPacket) -> bytes:
        """An ERR for the client after a failure, if the protocol still allows one."""
        try:
            return self.client.send(err)
        except LocalProtocolError:
            return b""

    def _drain_client(self, out: Output) -> None:
        while self._held is None:
            event = self.client.next_event()
            if event is NEED_DATA:
                return
            out.events.append(event)
            if isinstance(event, SslRequested):
                out.start_client_tls = True
                return
            if isinstance(event, ConnectionClosed):
                if self._fast is not None and self._iam_accounts is not None and self._auth_user is not None:
                    # asked for its token, the client left: one that cannot send cleartext (the
                    # account may have become a password one): the engine is asked next time
                    self._iam_accounts.forget(self._auth_user)
                out.close = True
                return
            if isinstance(event, LoginRequested):
                refusal = self._decide(event)
                if refusal is not None:
                    out.to_client.append(self.client.send(refusal))
                    out.close = True
                    return
                response = event.response
                early = None
                if self._iam is not None:
                    self._auth_user, self._change_user = event.user, False
                    if response.auth_plugin_name == IAM_CLIENT_PLUGIN and response.auth_response:
                        # a token (or a cleartext password) in the login packet: the engine
                        # never sees a token
                        early = bytes(response.auth_response).rstrip(b"\0")
                        response = dataclasses.replace(response, auth_response=b"")
                    if self._fast_eligible(event):
                        self._fast, self._fast_login = event, response
                        if early is not None:
                            self._fast_answer(early, out)
                            if out.close or out.start_engine_tls:
                                return
                            continue
                        self._iam_waiting = True
                        out.to_client.append(self.client.send(AuthSwitchRequest(IAM_CLIENT_PLUGIN, b"")))
                        continue
                    self._early_token = early
                if self._send_login(event, response, out):
                    return
            elif isinstance(event, AuthData) and self._iam_waiting:
                self._iam_waiting = False
                token = bytes(event.payload).rstrip(b"\0")
                assert self._auth_user is not None
                if self._fast is not None:
                    self._fast_answer(token, out)
                    if out.start_engine_tls:
                        return
                else:
                    self._iam_answer(IamToken(self._auth_user, token, self._thread_id(), self._change_user), out)
                if out.close:
                    return
            elif isinstance(event, (AuthData, Continuation)):
                out.to_engine.append(self.engine.send(event))
            elif isinstance(event, Quit):
                out.to_engine.append(self.engine.send(event))
                out.close = True
                return
            elif isinstance(event, ClientCommand):
                self._handle_command(event, out)
                if out.held:
                    return

    def _handle_command(self, event: ClientCommand, out: Output) -> None:
        if isinstance(event, ChangeUser):
            refusal = self._decide(event)
            if refusal is HOLD:
                self._hold(event, out)
            elif refusal is not None:
                out.to_client.append(self.client.send(refusal))  # type: ignore[arg-type]
            else:
                if self._iam is not None:
                    event = self._iam_change_user(event)
                out.to_engine.append(self.engine.send(event))
            return
        assert isinstance(
            event, (Query, Prepare, ProcessKill, ResetConnection, Command)
        )
        refusal = self._decide(event)
        if refusal is HOLD:
            self._hold(event, out)
        elif refusal is None:
            out.to_engine.append(self.engine.send(event))
        elif isinstance(event, Command) and event.command in _NO_RESPONSE:
            pass  # the client expects no answer: dropping it is the refusal
        elif self._refuse_in_order:
            payload = signal_statement(refusal)  # type: ignore[arg-type]
            substitute = Query(memoryview(frame(payload, 0)), payload[1:].decode())
            out.to_engine.append(self.engine.send(substitute))
        else:
            out.to_client.append(self.client.send(refusal))  # type: ignore[arg-type]

    def _hold(self, event: ClientCommand, out: Output) -> None:
        # a copy: the view may point into the reader's buffer, which later input reuses
        self._held = dataclasses.replace(event, raw=memoryview(bytes(event.raw)))
        out.held = True
