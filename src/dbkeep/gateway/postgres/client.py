"""The client-facing PostgreSQL machine: the gateway in the *server* role towards a client.

Sans-I/O, in the style of h11 (:mod:`dbkeep.gateway.sansio`): ``receive_data``,
``next_event`` (an event, ``NEED_DATA`` or ``PAUSED``), ``send``, ``state``,
``trailing_data``; its transitions are :data:`~.states.CLIENT_TRANSITIONS`. The theory of
operation -- encryption requests, start-up, relayed authentication, the query phase and
refusals -- is the package's (``gateway/postgres/__init__.py``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Union, cast

from dbkeep.errors import DbError, LocalProtocolError, RemoteProtocolError
from dbkeep.gateway.sansio import NEED_DATA, PAUSED, RECV, SEND, Signal

from .errcodes import (
    FATAL,
    FEATURE_NOT_SUPPORTED,
    INVALID_AUTHORIZATION_SPECIFICATION,
    PROTOCOL_VIOLATION,
)
from .messages import (
    ALPN_PROTOCOL,
    CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE,
    PROTOCOL_3_0,
    SSL_REQUEST_CODE,
    TLS_HANDSHAKE_BYTE,
    DirectTlsHello,
    ErrorResponse,
    GSSENCResponse,
    NegotiateProtocolVersion,
    ParameterStatus,
    PasswordMessage,
    SASLInitialResponse,
    SASLResponse,
    SSLResponse,
    StartupMessage,
    error_response_v2,
    parse_startup_packet,
)
from .events import (
    REFUSAL_TOKEN_PREFIX,
    BackendData,
    ClientEvent,
    ConnectionClosed,
    FrontendMessage,
    FunctionCall,
    Parse,
    Query,
    Refusal,
    Sync,
    Terminate,
    kind_of,
)
from .states import CLIENT_TRANSITIONS, ClientState
from .wire import Limits, MessageBuffer

__all__ = ["ClientFacing"]

_C = ClientState

_HEADER = struct.Struct("!BI")

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
    def tls(self) -> bool:
        """Whether the client's connection runs TLS (MySQL's ``ClientFacing.tls``; also
        ``tls_in_use``, the name a statement guard reads)."""
        return self.tls_in_use

    @property
    def client_encoding(self) -> str:
        """The encoding the client's SQL is in, as last reported by the engine."""
        return self.parameters.get("client_encoding", "UTF8")

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Bytes received and not consumed, and whether the peer closed."""
        return self._buf.peek(len(self._buf)) or b"", self._eof

    def _transition(self, direction: str, kind: str) -> None:
        new = CLIENT_TRANSITIONS.get((self.state, direction, kind))
        if new is None:
            raise CLIENT_TRANSITIONS.error(self.state, direction, kind)
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
        self._transition(RECV, "ConnectionClosed")
        return ConnectionClosed()

    def _next_startup_packet(self) -> ClientEvent | Signal:
        buf = self._buf
        if not buf:
            return self._end_of_stream() if self._eof else NEED_DATA
        if self._first_packet and buf.first_byte() == TLS_HANDSHAKE_BYTE:
            self._first_packet = False
            self.direct_tls = True
            self._transition(RECV, "DirectTlsHello")
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
        self._transition(RECV, type(event).__name__)
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
        self._transition(RECV, type(event).__name__)
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
                self._transition(RECV, "Discarded")
                continue  # dropped, as the server drops it after an error
            if type_ in _PASS_TYPES:
                self._transition(RECV, "FrontendMessage")
                return FrontendMessage(raw)
            return self._query_event(type_, raw)

    def _need_more(self) -> Signal:
        if self._eof:
            raise self._fail("client closed the connection in the middle of a message")
        return NEED_DATA

    def _simple(self, raw: bytes, event: Sync | Terminate) -> Sync | Terminate:
        if len(raw) != 5:
            raise self._fatal(PROTOCOL_VIOLATION, "invalid message format")
        self._transition(RECV, type(event).__name__)
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
        self._transition(RECV, type(event).__name__)
        self._last_guarded = event
        return event

    # --- output ---------------------------------------------------------------------------

    def send(self, event: object) -> bytes:
        """Bytes to write to the client for ``event``, after checking the state allows it."""
        state = self.state
        if state is ClientState.ERROR:
            raise LocalProtocolError("connection already failed")
        if isinstance(event, BackendData):
            self._transition(SEND, "BackendData")
            if state is ClientState.CLOSED:
                return b""
            for change in event.parameter_changes:
                self.parameters[change.name] = change.value
            return event.data
        kind = kind_of(event)
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
        self._transition(SEND, kind)
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
        self._transition(SEND, kind)
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
        self._transition(SEND, "TlsEstablished")
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
        self._transition(SEND, f"Refusal({type(event).__name__})")
        self._last_guarded = None
        token = REFUSAL_TOKEN_PREFIX + self._randbytes(16).hex().encode("ascii")
        if isinstance(event, Parse):
            sentinel = Parse(event.name, token).build()
        else:  # a FunctionCall is answered like a query: ErrorResponse, ReadyForQuery
            sentinel = Query(token).build()
        return Refusal(response, token.decode("ascii"), sentinel)
