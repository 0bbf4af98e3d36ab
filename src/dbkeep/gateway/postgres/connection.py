"""Sans-I/O PostgreSQL v3 connections for the gateway: one state machine per side.

Theory of operation (PostgreSQL documentation, chapter "Frontend/Backend Protocol"):

* :class:`ClientFacing` is the gateway in the *server* role towards a client (psql, psycopg,
  asyncpg, JDBC); :class:`EngineFacing` is the gateway in the *client* role towards the
  engine on its private unix socket. Both follow h11: ``receive_data(bytes)`` (``b""`` means
  end of stream), ``next_event()`` returning an event, :data:`NEED_DATA` (read more) or
  :data:`PAUSED` (your move: send something first), ``send(event) -> bytes``, ``state``,
  ``trailing_data``. Each has exactly one transition table, keyed by
  ``(state, direction, event kind)``; a pair not in the table raises
  :class:`~dbkeep.errors.RemoteProtocolError` (peer) or
  :class:`~dbkeep.errors.LocalProtocolError` (us), never an assert.
* "SSL Session Encryption": SSLRequest is answered with one byte, ``S`` or ``N``; GSSENCRequest
  with ``N`` (GSSAPI encryption is not offered); after either the client may try the other or
  send its StartupMessage. Bytes buffered behind an SSLRequest/GSSENCRequest when it is
  answered were sent in cleartext before encryption and are refused ("received unencrypted
  data after SSL request", the class of CVE-2021-23214/CVE-2021-23222); so are bytes fed
  while the TLS handshake is pending. A connection opening with 0x16 is direct TLS
  (PostgreSQL 17, ``sslnegotiation=direct``): the buffered bytes are handed over whole in
  :class:`DirectTlsHello` (none stay here), the driver feeds them to its TLS object first —
  its first handshake step must consume them all (with a ``MemoryBIO``: nothing pending),
  as the server checks — and ALPN ``postgresql`` is then mandatory; a later SSLRequest is
  answered ``N``.
* "Start-up": the StartupMessage (at most 10000 bytes) must be protocol 3.x; 2.0 and other
  majors get PostgreSQL's FATAL "unsupported frontend protocol" (0A000). The gateway speaks
  3.0 and negotiates itself: for 3.x with x > 0 or ``_pq_.`` options it prefixes its first
  reply with NegotiateProtocolVersion and forwards the request to the engine as plain 3.0
  (:meth:`~dbkeep.gateway.postgres.messages.StartupMessage.for_engine`).
* "SASL Authentication" and the other methods: authentication is relayed message by message;
  which ``'p'`` message the client sends (PasswordMessage, SASLInitialResponse, SASLResponse)
  follows from the request the gateway relayed last.
* "Simple Query", "Extended Query": frontend messages are framed and bounded; Query and Parse
  (and FunctionCall, which can call any function by OID) are surfaced for the statement
  guard, other messages pass through. Backend data in the query phase is relayed in the runs
  it arrives in, without decoding or copying; with tracking on (guarded sessions) only the
  message boundaries are followed (about 0.2 µs per message) and the few small messages
  ReadyForQuery and ParameterStatus are read; :meth:`EngineFacing.stop_tracking` makes the
  relay a plain byte copy for sessions no guard watches.
* Refusing a statement keeps the exact semantics of an error in the engine: the gateway
  sends the engine, *in place of* the refused message, a statement that fails at parse time
  with a per-refusal random token (``dbkeep_refused_<hex>``), and replaces the engine's
  ErrorResponse for it with the guard's. So the client sees its replies in order, then the
  ErrorResponse, then — for the extended protocol, after the gateway discarded everything up
  to Sync, as the server itself does after an error ("Extended Query") — ReadyForQuery, and a
  transaction block is left failed exactly as a real error leaves it. The refused text never
  reaches the engine.
* "Canceling Requests in Progress": see :mod:`dbkeep.gateway.postgres.cancel`.

Driving both sides (an ``asyncio.Protocol`` per socket; TLS via ``loop.start_tls``)::

    client = ClientFacing(); engine = EngineFacing()
    # client bytes -> client.receive_data(data); then drain client.next_event():
    SSLRequest        -> write(client.send(SSLResponse(True)))   # buffer is checked empty
                         then loop.start_tls(...), then client.tls_established(alpn)
    GSSENCRequest     -> write(client.send(GSSENCResponse(False)))
    DirectTlsHello    -> feed ev.data to TLS, then client.tls_established(alpn)
    CancelRequest     -> keys.resolve(ev) -> new EngineFacing: send(CancelRequest(engine key))
    StartupMessage    -> refuse: write(client.send(ErrorResponse.create("FATAL", ...))), close
                         relay:  engine_write(engine.send(ev))          # sent as 3.0
                         IAM:    write(client.send(AuthenticationCleartextPassword()))
    PasswordMessage / SASLInitialResponse / SASLResponse -> engine_write(engine.send(ev))
    Query / Parse / FunctionCall -> guard ok: engine_write(engine.send(ev))
                         refused: engine_write(engine.send(client.refuse(ev, error)))
    Sync / FrontendMessage -> engine_write(engine.send(ev))
    Terminate         -> engine_write(engine.send(ev)); close both
    # engine bytes -> engine.receive_data(data); then drain engine.next_event():
    Authentication*, ParameterStatus, NoticeResponse, ReadyForQuery, ErrorResponse
                      -> write(client.send(ev))
    BackendKeyData    -> write(client.send(keys.issue(ev, engine_target)))
    BackendData       -> write(client.send(ev))                     # the hot path
    ConnectionClosed  -> close the other side
    # on RemoteProtocolError from the client side: write(client.error_reply) (may be b""),
    # then close. In the query phase a message of the gateway's own (a FATAL
    # ErrorResponse) may only be written while engine.at_message_boundary is true.

For the gateway's own login (IAM) see :mod:`dbkeep.gateway.postgres.login`.
"""

from __future__ import annotations

import enum
import os
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union, cast

from dbkeep.errors import DbError, LocalProtocolError, RemoteProtocolError

from .errcodes import (
    FATAL,
    FEATURE_NOT_SUPPORTED,
    INVALID_AUTHORIZATION_SPECIFICATION,
    PROTOCOL_VIOLATION,
    SYNTAX_ERROR,
)
from .messages import (
    ALPN_PROTOCOL,
    BACKEND_STARTUP_PARSERS,
    CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE,
    PROTOCOL_3_0,
    SSL_REQUEST_CODE,
    TLS_HANDSHAKE_BYTE,
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
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
    NegotiateProtocolVersion,
    NoticeResponse,
    ParameterStatus,
    Parse,
    PasswordMessage,
    Query,
    ReadyForQuery,
    SASLInitialResponse,
    SASLResponse,
    SSLRequest,
    SSLResponse,
    StartupMessage,
    Sync,
    Terminate,
    error_response_v2,
    parse_startup_packet,
)
from .wire import Limits, MessageBuffer

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "Signal",
    "ClientState",
    "EngineState",
    "ClientFacing",
    "EngineFacing",
    "Refusal",
    "CLIENT_TRANSITIONS",
    "ENGINE_TRANSITIONS",
    "REFUSAL_TOKEN_PREFIX",
]


class Signal(enum.Enum):
    NEED_DATA = "NEED_DATA"
    PAUSED = "PAUSED"

    def __repr__(self) -> str:
        return self.value


NEED_DATA = Signal.NEED_DATA
PAUSED = Signal.PAUSED

REFUSAL_TOKEN_PREFIX = b"dbkeep_refused_"


@dataclass(frozen=True)
class Refusal:
    """A refused statement: ``error`` is what the client will see; ``sentinel`` is the
    message the engine gets instead (it fails at parse time, naming ``token``)."""

    error: ErrorResponse
    token: str = field(repr=False)
    sentinel: bytes = field(repr=False)

    def build(self) -> bytes:
        return self.sentinel


ClientEvent = Union[
    SSLRequest, GSSENCRequest, CancelRequest, StartupMessage, DirectTlsHello, PasswordMessage,
    SASLInitialResponse, SASLResponse, Query, Parse, FunctionCall, Sync, Terminate,
    FrontendMessage, ConnectionClosed,
]
EngineEvent = Union[
    AuthenticationOk, AuthenticationCleartextPassword, AuthenticationMD5Password, AuthenticationSASL,
    AuthenticationSASLContinue, AuthenticationSASLFinal, ParameterStatus, BackendKeyData,
    ReadyForQuery, ErrorResponse, NoticeResponse, NegotiateProtocolVersion, BackendData, ConnectionClosed,
]

_RECV, _SEND = "recv", "send"
_NOTHING: dict[str, Any] = {}
_HEADER = struct.Struct("!BI")


def _kind(event: object) -> str:
    if isinstance(event, SSLResponse):
        return "SSLResponse(S)" if event.accepted else "SSLResponse(N)"
    if isinstance(event, Refusal):
        return "Refusal"
    return type(event).__name__


# === client side ============================================================================


class ClientState(enum.Enum):
    STARTUP = "awaiting a start-up packet"
    SSL_REQUESTED = "SSLRequest received: send SSLResponse"
    GSS_REQUESTED = "GSSENCRequest received: send GSSENCResponse"
    TLS_HANDSHAKE = "TLS handshake in progress: call tls_established()"
    STARTUP_RECEIVED = "StartupMessage received: send an authentication request or an error"
    AWAIT_PASSWORD = "waiting for PasswordMessage"
    AWAIT_SASL_INITIAL = "waiting for SASLInitialResponse"
    AWAIT_SASL_RESPONSE = "waiting for SASLResponse"
    PASSWORD_RECEIVED = "password received: send AuthenticationOk or an error"
    SASL_RECEIVED = "SASL response received: send SASLContinue, SASLFinal or an error"
    SASL_FINAL_SENT = "SASLFinal sent: send AuthenticationOk or an error"
    SETUP = "authenticated: send ParameterStatus, BackendKeyData, then ReadyForQuery"
    READY = "query phase"
    DISCARDING = "query phase: discarding until Sync after a refused message"
    CLOSED = "closed"
    ERROR = "protocol error"

    __hash__ = object.__hash__  # identity, at C speed: states key the transition tables


_C = ClientState
_CLIENT_OUR_TURN = (_C.STARTUP_RECEIVED, _C.PASSWORD_RECEIVED, _C.SASL_RECEIVED, _C.SASL_FINAL_SENT, _C.SETUP)

CLIENT_TRANSITIONS: dict[tuple[ClientState, str, str], ClientState] = {
    # start-up packets ("Start-up", "SSL Session Encryption")
    (_C.STARTUP, _RECV, "SSLRequest"): _C.SSL_REQUESTED,
    (_C.STARTUP, _RECV, "GSSENCRequest"): _C.GSS_REQUESTED,
    (_C.STARTUP, _RECV, "DirectTlsHello"): _C.TLS_HANDSHAKE,
    (_C.STARTUP, _RECV, "CancelRequest"): _C.CLOSED,
    (_C.STARTUP, _RECV, "StartupMessage"): _C.STARTUP_RECEIVED,
    (_C.SSL_REQUESTED, _SEND, "SSLResponse(S)"): _C.TLS_HANDSHAKE,
    (_C.SSL_REQUESTED, _SEND, "SSLResponse(N)"): _C.STARTUP,
    (_C.GSS_REQUESTED, _SEND, "GSSENCResponse"): _C.STARTUP,
    (_C.TLS_HANDSHAKE, _SEND, "TlsEstablished"): _C.STARTUP,
    # authentication, relayed or the gateway's own
    (_C.STARTUP_RECEIVED, _SEND, "AuthenticationOk"): _C.SETUP,
    (_C.STARTUP_RECEIVED, _SEND, "AuthenticationCleartextPassword"): _C.AWAIT_PASSWORD,
    (_C.STARTUP_RECEIVED, _SEND, "AuthenticationMD5Password"): _C.AWAIT_PASSWORD,
    (_C.STARTUP_RECEIVED, _SEND, "AuthenticationSASL"): _C.AWAIT_SASL_INITIAL,
    (_C.AWAIT_PASSWORD, _RECV, "PasswordMessage"): _C.PASSWORD_RECEIVED,
    (_C.AWAIT_SASL_INITIAL, _RECV, "SASLInitialResponse"): _C.SASL_RECEIVED,
    (_C.AWAIT_SASL_RESPONSE, _RECV, "SASLResponse"): _C.SASL_RECEIVED,
    (_C.PASSWORD_RECEIVED, _SEND, "AuthenticationOk"): _C.SETUP,
    (_C.SASL_RECEIVED, _SEND, "AuthenticationSASLContinue"): _C.AWAIT_SASL_RESPONSE,
    (_C.SASL_RECEIVED, _SEND, "AuthenticationSASLFinal"): _C.SASL_FINAL_SENT,
    (_C.SASL_FINAL_SENT, _SEND, "AuthenticationOk"): _C.SETUP,
    (_C.SETUP, _SEND, "ParameterStatus"): _C.SETUP,
    (_C.SETUP, _SEND, "BackendKeyData"): _C.SETUP,
    (_C.SETUP, _SEND, "ReadyForQuery"): _C.READY,
    # query phase ("Simple Query", "Extended Query", "Function Call", "COPY Operations")
    (_C.READY, _RECV, "Query"): _C.READY,
    (_C.READY, _RECV, "Parse"): _C.READY,
    (_C.READY, _RECV, "FunctionCall"): _C.READY,
    (_C.READY, _RECV, "Sync"): _C.READY,
    (_C.READY, _RECV, "FrontendMessage"): _C.READY,
    (_C.READY, _RECV, "Terminate"): _C.CLOSED,
    (_C.READY, _SEND, "BackendData"): _C.READY,
    (_C.READY, _SEND, "Refusal(Query)"): _C.READY,
    (_C.READY, _SEND, "Refusal(FunctionCall)"): _C.READY,
    (_C.READY, _SEND, "Refusal(Parse)"): _C.DISCARDING,
    (_C.DISCARDING, _RECV, "Discarded"): _C.DISCARDING,
    (_C.DISCARDING, _RECV, "Sync"): _C.READY,
    (_C.DISCARDING, _RECV, "Terminate"): _C.CLOSED,
    (_C.DISCARDING, _SEND, "BackendData"): _C.DISCARDING,
    (_C.CLOSED, _SEND, "BackendData"): _C.CLOSED,  # engine output racing a Terminate: dropped
}
# errors end the session from every state where the gateway may speak; notices do not
for _cs in _CLIENT_OUR_TURN:
    CLIENT_TRANSITIONS[(_cs, _SEND, "ErrorResponse")] = _C.CLOSED
    CLIENT_TRANSITIONS[(_cs, _SEND, "NoticeResponse")] = _cs
for _cs in (_C.READY, _C.DISCARDING):
    CLIENT_TRANSITIONS[(_cs, _SEND, "ErrorResponse(FATAL)")] = _C.CLOSED
for _cs in (_C.STARTUP, _C.AWAIT_PASSWORD, _C.AWAIT_SASL_INITIAL, _C.AWAIT_SASL_RESPONSE, _C.READY, _C.DISCARDING):
    CLIENT_TRANSITIONS[(_cs, _RECV, "ConnectionClosed")] = _C.CLOSED


def _compile(table: dict[tuple[enum.Enum, str, str], enum.Enum]) -> dict[str, dict[enum.Enum, dict[str, enum.Enum]]]:
    """The table indexed by direction, then state, then event kind (same content)."""
    out: dict[str, dict[enum.Enum, dict[str, enum.Enum]]] = {_RECV: {}, _SEND: {}}
    for (state, direction, kind), new_state in table.items():
        out[direction].setdefault(state, {})[kind] = new_state
    return out


_CLIENT_LOOKUP = _compile(CLIENT_TRANSITIONS)  # type: ignore[arg-type]

# Query-phase frontend message types and their size class (postgres.c, SocketBackend)
_LARGE_TYPES = frozenset(b"QFPBd")
_SMALL_TYPES = frozenset(b"XCDEHScf")
_PASS_TYPES = frozenset(b"BDECHdcf")  # relayed unread: Bind, Describe, Execute, Close, Flush, COPY
_AuthParser = Callable[[bytes], Union[PasswordMessage, SASLInitialResponse, SASLResponse]]
_EXPECTED_AUTH: dict[ClientState, tuple[str, _AuthParser]] = {
    _C.AWAIT_PASSWORD: ("password", PasswordMessage.parse),
    _C.AWAIT_SASL_INITIAL: ("SASL", SASLInitialResponse.parse),
    _C.AWAIT_SASL_RESPONSE: ("SASL", SASLResponse.parse),
}


class ClientFacing:
    """The gateway as a PostgreSQL server towards one client connection.

    ``randbytes`` (injected) makes refusal tokens. ``error_reply`` holds, after a
    :class:`RemoteProtocolError`, the bytes PostgreSQL would send before closing (often
    ``b""``: the server closes silently on framing errors). ``parameters`` is what the
    client has been told in ParameterStatus; Query/Parse text is decoded in its
    ``client_encoding``. A client that pipelines ``SET client_encoding`` with further
    statements sends them before the engine reports the change, so they are decoded in the
    previous encoding: a guard should refuse such changes in the sessions it watches.
    """

    def __init__(self, *, limits: Limits | None = None, randbytes: Callable[[int], bytes] = os.urandom) -> None:
        self.limits = limits or Limits()
        self._randbytes = randbytes
        self._buf = MessageBuffer()
        self._eof = False
        self.state = ClientState.STARTUP
        self.startup: StartupMessage | None = None
        self.parameters: dict[str, str] = {}
        self.tls_in_use = False
        self.direct_tls = False
        self.error_reply = b""
        self._ssl_done = False
        self._gss_done = False
        self._first_packet = True
        self._negotiation: NegotiateProtocolVersion | None = None
        self._last_guarded: Query | Parse | FunctionCall | None = None

    # --- state helpers --------------------------------------------------------------------

    @property
    def client_encoding(self) -> str:
        """The encoding the client's SQL is in, as last reported by the engine."""
        return self.parameters.get("client_encoding", "UTF8")

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Bytes received and not consumed, and whether the peer closed."""
        return self._buf.peek(len(self._buf)) or b"", self._eof

    def _transition(self, direction: str, kind: str) -> None:
        new = _CLIENT_LOOKUP[direction].get(self.state, _NOTHING).get(kind)
        if new is None:
            if direction == _RECV:
                raise RemoteProtocolError(f"unexpected {kind} from the client in state {self.state.name}")
            raise LocalProtocolError(f"cannot send {kind} to the client in state {self.state.name}")
        self.state = new

    def _fail(self, message: str, *, reply: bytes = b"") -> RemoteProtocolError:
        self.error_reply = reply
        return RemoteProtocolError(message, error_hint=reply)

    def _fatal(self, sqlstate: str, message: str, detail: str | None = None) -> RemoteProtocolError:
        reply = ErrorResponse.create(FATAL, sqlstate, message, detail=detail).build()
        return self._fail(message, reply=reply)

    # --- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the client; ``b""`` signals end of stream."""
        if self.state is ClientState.ERROR:
            raise RemoteProtocolError("connection already failed")
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("data after end of stream")
        if self.state is ClientState.CLOSED:
            return  # the protocol is over; whatever follows is dropped
        if self.state is ClientState.TLS_HANDSHAKE:
            self.state = ClientState.ERROR
            raise self._fail("received unencrypted data after SSL request")
        self._buf.feed(data)

    def next_event(self) -> ClientEvent | Signal:
        if self.state is ClientState.ERROR:
            raise RemoteProtocolError("connection already failed")
        try:
            return self._next_event()
        except RemoteProtocolError:
            self.state = ClientState.ERROR
            raise

    def _next_event(self) -> ClientEvent | Signal:
        state = self.state
        if state is ClientState.CLOSED:
            return ConnectionClosed()
        if state is ClientState.READY or state is ClientState.DISCARDING:
            return self._next_query_message()
        if state is ClientState.STARTUP:
            return self._next_startup_packet()
        if state in _EXPECTED_AUTH:
            return self._next_auth_response()
        # the gateway's move
        if len(self._buf) > self.limits.max_pending:
            raise self._fail("client sent too much data out of turn")
        return PAUSED

    def _end_of_stream(self) -> ConnectionClosed:
        if self._buf:
            raise self._fail("client closed the connection in the middle of a message")
        self._transition(_RECV, "ConnectionClosed")
        return ConnectionClosed()

    def _next_startup_packet(self) -> ClientEvent | Signal:
        buf = self._buf
        if not buf:
            return self._end_of_stream() if self._eof else NEED_DATA
        if self._first_packet and buf.first_byte() == TLS_HANDSHAKE_BYTE:
            self._first_packet = False
            self.direct_tls = True
            self._transition(_RECV, "DirectTlsHello")
            return DirectTlsHello(buf.take_all())
        frame = buf.untyped_frame(self.limits.max_startup_packet)
        if frame is None:
            if self._eof:
                raise self._fail("incomplete startup packet")
            return NEED_DATA
        self._first_packet = False
        code = struct.unpack_from("!I", frame, 4)[0]
        if code == SSL_REQUEST_CODE and not self._ssl_done or code == GSSENC_REQUEST_CODE and not self._gss_done:
            event = parse_startup_packet(frame)
        elif code == CANCEL_REQUEST_CODE:
            event = parse_startup_packet(frame)
        else:
            event = self._parse_startup_message(frame, code)
        self._transition(_RECV, type(event).__name__)
        return event

    def _parse_startup_message(self, frame: bytes, version: int) -> StartupMessage:
        major, minor = version >> 16, version & 0xFFFF
        if major != 3:
            message = f"unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0"
            if major < 3:  # the server answers old clients in their own (2.0) error format
                raise self._fail(message, reply=error_response_v2(message))
            raise self._fatal(FEATURE_NOT_SUPPORTED, message)
        try:
            startup = StartupMessage.parse_payload(frame, version)
        except RemoteProtocolError as exc:
            raise self._fatal(PROTOCOL_VIOLATION, str(exc)) from None
        if not startup.user:
            raise self._fatal(INVALID_AUTHORIZATION_SPECIFICATION, "no PostgreSQL user name specified in startup packet")
        if minor > 0 or startup.protocol_options:
            self._negotiation = NegotiateProtocolVersion(PROTOCOL_3_0, startup.protocol_options)
        self.startup = startup
        return startup

    def _next_auth_response(self) -> ClientEvent | Signal:
        buf = self._buf
        header = buf.header()
        if header is None:
            if self._eof:
                if buf:
                    raise self._fail("client closed the connection in the middle of a message")
                return self._end_of_stream()
            return NEED_DATA
        what, parse = _EXPECTED_AUTH[self.state]
        event: PasswordMessage | SASLInitialResponse | SASLResponse
        if header[0] != ord("p"):
            raise self._fatal(PROTOCOL_VIOLATION, f"expected {what} response, got message type {header[0]}")
        frame = buf.typed_frame(self.limits.max_auth_message)
        if frame is None:
            if self._eof:
                raise self._fail("client closed the connection in the middle of a message")
            return NEED_DATA
        try:
            event = parse(frame)
        except RemoteProtocolError as exc:
            raise self._fatal(PROTOCOL_VIOLATION, str(exc)) from None
        self._transition(_RECV, type(event).__name__)
        return event

    def _next_query_message(self) -> ClientEvent | Signal:
        # The hot path of the client side: frame, bound, classify. Reads the buffer's
        # storage directly to spare a few calls per message.
        buf = self._buf
        self._last_guarded = None  # refuse() applies only to the event just returned
        large, small = self.limits.max_message, self.limits.max_small_message
        while True:
            data, pos = buf._buf, buf._pos
            available = len(data) - pos
            if available < 5:
                return self._end_of_stream() if self._eof and not available else self._need_more()
            type_, length = _HEADER.unpack_from(data, pos)
            if type_ in _LARGE_TYPES:
                limit = large
            elif type_ in _SMALL_TYPES:
                limit = small
            else:
                raise self._fatal(PROTOCOL_VIOLATION, f"invalid frontend message type {type_}")
            if length < 4 or length > limit:
                raise self._fail("invalid message length")
            if available <= length:
                return self._need_more()
            raw = buf.take(length + 1)
            if self.state is ClientState.DISCARDING:
                if type_ == 0x53:  # 'S'
                    return self._simple(raw, Sync())
                if type_ == 0x58:  # 'X'
                    return self._simple(raw, Terminate())
                self._transition(_RECV, "Discarded")
                continue  # dropped, as the server drops it after an error
            if type_ in _PASS_TYPES:
                self._transition(_RECV, "FrontendMessage")
                return FrontendMessage(raw)
            return self._query_event(type_, raw)

    def _need_more(self) -> Signal:
        if self._eof:
            raise self._fail("client closed the connection in the middle of a message")
        return NEED_DATA

    def _simple(self, raw: bytes, event: Sync | Terminate) -> Sync | Terminate:
        if len(raw) != 5:
            raise self._fatal(PROTOCOL_VIOLATION, "invalid message format")
        self._transition(_RECV, type(event).__name__)
        return event

    def _query_event(self, type_: int, raw: bytes) -> ClientEvent:
        event: Query | Parse | FunctionCall
        try:
            if type_ == 0x51:  # 'Q'
                event = Query.parse(raw, self.client_encoding)
            elif type_ == 0x50:  # 'P'
                event = Parse.parse(raw, self.client_encoding)
            elif type_ == 0x46:  # 'F'
                event = FunctionCall.parse(raw)
            else:  # 'S', 'X'
                return self._simple(raw, Sync() if type_ == 0x53 else Terminate())
        except RemoteProtocolError:
            raise self._fatal(PROTOCOL_VIOLATION, "invalid message format") from None
        self._transition(_RECV, type(event).__name__)
        self._last_guarded = event
        return event

    # --- output ---------------------------------------------------------------------------

    def send(self, event: object) -> bytes:
        """Bytes to write to the client for ``event``, after checking the state allows it."""
        state = self.state
        if state is ClientState.ERROR:
            raise LocalProtocolError("connection already failed")
        if isinstance(event, BackendData):
            self._transition(_SEND, "BackendData")
            if state is ClientState.CLOSED:
                return b""
            for change in event.parameter_changes:
                self.parameters[change.name] = change.value
            return event.data
        kind = _kind(event)
        if isinstance(event, ErrorResponse) and state in (ClientState.READY, ClientState.DISCARDING):
            if not event.fatal:
                raise LocalProtocolError("statement errors in the query phase go through refuse()")
            kind = "ErrorResponse(FATAL)"
        if isinstance(event, SSLResponse):
            return self._answer_encryption_request(event, kind)
        if isinstance(event, GSSENCResponse):
            if event.accepted:
                raise LocalProtocolError("GSSAPI encryption is not supported")
            return self._answer_encryption_request(event, kind)
        build = getattr(event, "build", None)
        if build is None or isinstance(event, Refusal):
            raise LocalProtocolError(f"cannot send {kind} to the client")
        self._transition(_SEND, kind)
        out = cast(bytes, build())
        if isinstance(event, ParameterStatus):
            self.parameters[event.name] = event.value
        if self._negotiation is not None:
            out = self._negotiation.build() + out
            self._negotiation = None
        return out

    def _answer_encryption_request(self, event: SSLResponse | GSSENCResponse, kind: str) -> bytes:
        ssl = isinstance(event, SSLResponse)
        if ssl and event.accepted and self.tls_in_use:
            raise LocalProtocolError("TLS is already in use (direct SSL): answer N")
        self._transition(_SEND, kind)
        out = event.build()
        if ssl:
            self._ssl_done = True
            self._gss_done = self._gss_done or event.accepted
        else:
            self._gss_done = True
        if self._buf:
            # Bytes that arrived with the request were sent before encryption was settled.
            what = "SSL request" if ssl else "GSSAPI encryption request"
            message = f"received unencrypted data after {what}"
            reply = b""
            if not event.accepted:  # after 'S' the server would say it over TLS; just close
                reply = out + ErrorResponse.create(
                    FATAL, PROTOCOL_VIOLATION, message,
                    detail="This could be either a client-software bug or evidence of an attempted "
                    "man-in-the-middle attack.",
                ).build()
            self.state = ClientState.ERROR
            raise self._fail(message, reply=reply)
        return out

    def tls_established(self, alpn_protocol: str | None) -> None:
        """The driver finished the TLS handshake; ``alpn_protocol`` is what was negotiated.

        Direct TLS requires ALPN ``postgresql``; after SSLRequest, ALPN is optional but must
        be ``postgresql`` when present (PostgreSQL 17, "SSL Session Encryption").
        """
        self._transition(_SEND, "TlsEstablished")
        if alpn_protocol != ALPN_PROTOCOL and (self.direct_tls or alpn_protocol is not None):
            self.state = ClientState.ERROR
            if self.direct_tls:
                raise self._fail("received direct SSL connection request without ALPN protocol negotiation extension")
            raise self._fail(f"unexpected ALPN protocol {alpn_protocol!r}")
        self.tls_in_use = True
        if self.direct_tls:
            # as ProcessStartupPacket(port, false, false): a later SSLRequest is answered N
            self._ssl_done = self._gss_done = False
        if self._buf:
            self.state = ClientState.ERROR
            raise self._fail("received unencrypted data after SSL request")

    def refuse(self, event: Query | Parse | FunctionCall, error: ErrorResponse | DbError) -> Refusal:
        """Refuse the statement just returned by :meth:`next_event`; pass the result to
        :meth:`EngineFacing.send`. Must be called before the next ``next_event()``."""
        if event is not self._last_guarded or self.state is not ClientState.READY:
            raise LocalProtocolError("refuse() applies to the Query/Parse/FunctionCall just received")
        response = error if isinstance(error, ErrorResponse) else ErrorResponse.from_db_error(error)
        if response.fatal:
            raise LocalProtocolError("a refusal is a statement error, not FATAL")
        self._transition(_SEND, f"Refusal({type(event).__name__})")
        self._last_guarded = None
        token = REFUSAL_TOKEN_PREFIX + self._randbytes(16).hex().encode("ascii")
        if isinstance(event, Parse):
            sentinel = Parse(event.name, token).build()
        else:  # a FunctionCall is answered like a query: ErrorResponse, ReadyForQuery
            sentinel = Query(token).build()
        return Refusal(response, token.decode("ascii"), sentinel)


# === engine side ============================================================================


class EngineState(enum.Enum):
    STARTUP = "nothing sent: send StartupMessage or CancelRequest"
    AUTHENTICATING = "StartupMessage sent: waiting for an authentication request"
    SEND_PASSWORD = "engine asked for a password: send PasswordMessage"
    SEND_SASL_INITIAL = "engine offered SASL: send SASLInitialResponse"
    SEND_SASL_RESPONSE = "engine continued SASL: send SASLResponse"
    PASSWORD_SENT = "password sent: waiting for AuthenticationOk"
    SASL_WAIT = "SASL response sent: waiting for SASLContinue or SASLFinal"
    SASL_FINAL = "SASLFinal received: waiting for AuthenticationOk"
    SETUP = "authenticated: ParameterStatus and BackendKeyData until ReadyForQuery"
    READY = "query phase"
    CLOSED = "closed"
    ERROR = "protocol error"

    __hash__ = object.__hash__  # identity, at C speed: states key the transition tables


_E = EngineState
_ENGINE_WAITING = (_E.AUTHENTICATING, _E.PASSWORD_SENT, _E.SASL_WAIT, _E.SASL_FINAL, _E.SETUP)

ENGINE_TRANSITIONS: dict[tuple[EngineState, str, str], EngineState] = {
    (_E.STARTUP, _SEND, "StartupMessage"): _E.AUTHENTICATING,
    (_E.STARTUP, _SEND, "CancelRequest"): _E.CLOSED,
    (_E.AUTHENTICATING, _RECV, "AuthenticationOk"): _E.SETUP,
    (_E.AUTHENTICATING, _RECV, "AuthenticationCleartextPassword"): _E.SEND_PASSWORD,
    (_E.AUTHENTICATING, _RECV, "AuthenticationMD5Password"): _E.SEND_PASSWORD,
    (_E.AUTHENTICATING, _RECV, "AuthenticationSASL"): _E.SEND_SASL_INITIAL,
    (_E.SEND_PASSWORD, _SEND, "PasswordMessage"): _E.PASSWORD_SENT,
    (_E.SEND_SASL_INITIAL, _SEND, "SASLInitialResponse"): _E.SASL_WAIT,
    (_E.SEND_SASL_RESPONSE, _SEND, "SASLResponse"): _E.SASL_WAIT,
    (_E.PASSWORD_SENT, _RECV, "AuthenticationOk"): _E.SETUP,
    (_E.SASL_WAIT, _RECV, "AuthenticationSASLContinue"): _E.SEND_SASL_RESPONSE,
    (_E.SASL_WAIT, _RECV, "AuthenticationSASLFinal"): _E.SASL_FINAL,
    (_E.SASL_FINAL, _RECV, "AuthenticationOk"): _E.SETUP,
    (_E.SETUP, _RECV, "ParameterStatus"): _E.SETUP,
    (_E.SETUP, _RECV, "BackendKeyData"): _E.SETUP,
    (_E.SETUP, _RECV, "ReadyForQuery"): _E.READY,
    (_E.READY, _RECV, "BackendData"): _E.READY,
    (_E.READY, _SEND, "Query"): _E.READY,
    (_E.READY, _SEND, "Parse"): _E.READY,
    (_E.READY, _SEND, "FunctionCall"): _E.READY,
    (_E.READY, _SEND, "Sync"): _E.READY,
    (_E.READY, _SEND, "FrontendMessage"): _E.READY,
    (_E.READY, _SEND, "Refusal"): _E.READY,
    (_E.READY, _SEND, "Terminate"): _E.CLOSED,
}
for _es in _ENGINE_WAITING:
    ENGINE_TRANSITIONS[(_es, _RECV, "ErrorResponse")] = _E.CLOSED
    ENGINE_TRANSITIONS[(_es, _RECV, "NoticeResponse")] = _es
for _es in (*_ENGINE_WAITING, _E.READY):
    ENGINE_TRANSITIONS[(_es, _RECV, "ConnectionClosed")] = _E.CLOSED

_ENGINE_LOOKUP = _compile(ENGINE_TRANSITIONS)  # type: ignore[arg-type]

_INSPECT_LIMIT = 64 * 1024  # ParameterStatus larger than this is relayed unread
_REFUSAL_ERROR_LIMIT = 8192  # the engine's error for a refusal token is far shorter
_MAX_PENDING_REFUSALS = 64


class EngineFacing:
    """The gateway as a PostgreSQL client towards the engine.

    With ``track_messages`` (the default) the query phase follows message boundaries so that
    refusals can be answered in order, ``transaction_status`` and ``parameters`` stay current
    and ``at_message_boundary`` is known; :meth:`stop_tracking` turns that off for good for
    sessions that are not guarded, making the relay a plain byte copy.
    """

    def __init__(self, *, limits: Limits | None = None, track_messages: bool = True) -> None:
        self.limits = limits or Limits()
        self._buf = MessageBuffer()
        self._eof = False
        self.state = EngineState.STARTUP
        self.parameters: dict[str, str] = {}
        self.backend_key: BackendKeyData | None = None
        self.transaction_status: str | None = None
        self._track = track_messages
        self._skip = 0  # bytes of the current message already relayed without inspection
        self._refusals: OrderedDict[bytes, ErrorResponse] = OrderedDict()

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        return self._buf.peek(len(self._buf)) or b"", self._eof

    @property
    def tracking(self) -> bool:
        return self._track

    @property
    def at_message_boundary(self) -> bool:
        """True when everything relayed so far ends at a message boundary (so the gateway
        may write a message of its own to the client)."""
        if self.state is not EngineState.READY:
            return self.state is not EngineState.ERROR
        return self._track and self._skip == 0 and not self._buf

    def stop_tracking(self) -> None:
        if self._refusals:
            raise LocalProtocolError("refusals are pending")
        self._track = False

    def _transition(self, direction: str, kind: str) -> None:
        new = _ENGINE_LOOKUP[direction].get(self.state, _NOTHING).get(kind)
        if new is None:
            if direction == _RECV:
                raise RemoteProtocolError(f"unexpected {kind} from the engine in state {self.state.name}")
            raise LocalProtocolError(f"cannot send {kind} to the engine in state {self.state.name}")
        self.state = new

    # --- input ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if self.state is EngineState.ERROR:
            raise RemoteProtocolError("connection already failed")
        if not data:
            self._eof = True
            return
        if self._eof:
            raise LocalProtocolError("data after end of stream")
        if self.state is EngineState.CLOSED:
            return
        self._buf.feed(data)

    def next_event(self) -> EngineEvent | Signal:
        if self.state is EngineState.ERROR:
            raise RemoteProtocolError("connection already failed")
        try:
            if self.state is EngineState.READY:
                return self._next_query_data()
            return self._next_event()
        except RemoteProtocolError:
            self.state = EngineState.ERROR
            raise

    def _end_of_stream(self) -> ConnectionClosed:
        if self._buf or self._skip:
            raise RemoteProtocolError("engine closed the connection in the middle of a message")
        self._transition(_RECV, "ConnectionClosed")
        return ConnectionClosed()

    def _next_event(self) -> EngineEvent | Signal:
        state = self.state
        if state is EngineState.CLOSED:
            return ConnectionClosed()
        if state not in _ENGINE_WAITING:
            if len(self._buf) > self.limits.max_pending:
                raise RemoteProtocolError("engine sent too much data out of turn")
            return PAUSED
        buf = self._buf
        header = buf.header()
        if header is None:
            if self._eof:
                return self._end_of_stream()
            return NEED_DATA
        parse = BACKEND_STARTUP_PARSERS.get(header[0])
        if parse is None or header[0] == ord("v"):
            raise RemoteProtocolError(f"unexpected message type {chr(header[0])!r} from the engine during start-up")
        frame = buf.typed_frame(self.limits.max_backend_setup_message)
        if frame is None:
            if self._eof:
                raise RemoteProtocolError("engine closed the connection in the middle of a message")
            return NEED_DATA
        event = parse(frame)
        self._transition(_RECV, type(event).__name__)
        if isinstance(event, ParameterStatus):
            self.parameters[event.name] = event.value
        elif isinstance(event, BackendKeyData):
            if self.backend_key is not None:
                raise RemoteProtocolError("engine sent BackendKeyData twice")
            self.backend_key = event
        elif isinstance(event, ReadyForQuery):
            self.transaction_status = event.status
        return event

    def _next_query_data(self) -> EngineEvent | Signal:
        buf = self._buf
        if not buf:
            return self._end_of_stream() if self._eof else NEED_DATA
        data = buf.take_all()
        if not self._track:
            self._transition(_RECV, "BackendData")
            return BackendData(data)
        out, held, changes = self._scan(data)
        if held:
            buf.feed(held)
        if not out:
            return self._end_of_stream() if self._eof else NEED_DATA
        self._transition(_RECV, "BackendData")
        return BackendData(out, changes)

    def _scan(self, data: bytes) -> tuple[bytes, bytes, tuple[ParameterStatus, ...]]:
        """Follow message boundaries through ``data``: returns (bytes to relay now, bytes to
        hold until more arrive, ParameterStatus messages seen). Only a partial header or an
        incomplete message that must be read whole is held back."""
        n = len(data)
        skip = self._skip
        if skip >= n:
            self._skip = skip - n
            return data, b"", ()
        pos = skip
        self._skip = 0
        unpack = _HEADER.unpack_from
        pieces: list[bytes] | None = None
        emit_from = 0
        changes: list[ParameterStatus] = []
        refusals = self._refusals
        while n - pos >= 5:
            type_, length = unpack(data, pos)
            if length < 4:
                raise RemoteProtocolError("invalid message length from the engine")
            end = pos + 1 + length
            if type_ == 0x5A or type_ == 0x53 or (type_ == 0x45 and refusals):  # 'Z', 'S', 'E'
                if type_ == 0x5A and length != 5:
                    raise RemoteProtocolError("invalid ReadyForQuery from the engine")
                if length <= (_REFUSAL_ERROR_LIMIT if type_ == 0x45 else _INSPECT_LIMIT):
                    if end > n:
                        break  # hold the message back until it is whole
                    raw = data[pos:end]
                    if type_ == 0x5A:
                        self.transaction_status = ReadyForQuery.parse(raw).status
                    elif type_ == 0x53:
                        change = ParameterStatus.parse(raw)
                        self.parameters[change.name] = change.value
                        changes.append(change)
                    else:
                        replacement = self._substitute(raw)
                        if replacement is not None:
                            if pieces is None:
                                pieces = []
                            pieces.append(data[emit_from:pos])
                            pieces.append(replacement)
                            emit_from = end
                    pos = end
                    continue
            if end > n:
                self._skip = end - n
                pos = n
                break
            pos = end
        if pieces is None:
            out = data if pos == n and emit_from == 0 else data[emit_from:pos]
        else:
            pieces.append(data[emit_from:pos])
            out = b"".join(pieces)
        return out, data[pos:] if pos < n else b"", tuple(changes)

    def _substitute(self, raw: bytes) -> bytes | None:
        error = ErrorResponse.parse(raw)
        if error.sqlstate != SYNTAX_ERROR:
            return None
        message = error.message
        for token in self._refusals:
            if token.decode("ascii") in message:
                return self._refusals.pop(token).build()
        return None

    # --- output ---------------------------------------------------------------------------

    def send(self, event: object) -> bytes:
        if self.state is EngineState.ERROR:
            raise LocalProtocolError("connection already failed")
        kind = _kind(event)
        if isinstance(event, Refusal):
            if not self._track:
                raise LocalProtocolError("refusing statements needs message tracking")
            self._transition(_SEND, kind)
            self._refusals[event.token.encode("ascii")] = event.error
            while len(self._refusals) > _MAX_PENDING_REFUSALS:
                self._refusals.popitem(last=False)  # long skipped by an earlier error
            return event.sentinel
        if isinstance(event, StartupMessage):
            self._transition(_SEND, kind)
            return event.for_engine().build()
        build = getattr(event, "build", None)
        if build is None:
            raise LocalProtocolError(f"cannot send {kind} to the engine")
        self._transition(_SEND, kind)
        return cast(bytes, build())
