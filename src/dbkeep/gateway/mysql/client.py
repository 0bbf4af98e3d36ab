"""The client-facing MySQL/MariaDB machine: the gateway in the *server* role towards a client.

Sans-I/O, in the style of h11 (:mod:`dbkeep.gateway.sansio`): ``receive_data``,
``next_event``, ``send``, ``state``, ``trailing_data``; its transitions are
:data:`~.states.CLIENT_TRANSITIONS`. The theory of operation -- sequence ids, turn taking, the
command phase, COM_CHANGE_USER, TLS only on an empty buffer -- is the package's
(``gateway/mysql/__init__.py``).
"""

from __future__ import annotations

from dbkeep.errors import LocalProtocolError, RemoteProtocolError
from dbkeep.gateway.sansio import NEED_DATA, RECV, SEND, Signal

from . import auth as _auth
from . import charsets
from .events import (
    AuthData,
    ChangeUser,
    ClientEvent,
    Command,
    ConnectionClosed,
    Continuation,
    LoginRequested,
    ProcessKill,
    Prepare,
    Query,
    Quit,
    ResetConnection,
    SslRequested,
    TlsEstablished,
)
from .messages import (
    UNSUPPORTED_CAPABILITIES,
    AuthMoreData,
    AuthSwitchRequest,
    Capability,
    ComChangeUser,
    ErrPacket,
    HandshakeResponse41,
    InitialHandshake,
    OkPacket,
    SSLRequest,
)
from .messages import CommandCode as Com
from .states import CLIENT_TRANSITIONS, ClientState
from .wire import DEFAULT_MAX_MESSAGE_SIZE, HEADER_SIZE, MAX_PAYLOAD, Packet, PacketBuffer, frame, packet_count

__all__ = ["ClientFacing"]

_C = ClientState
# States in which every packet from the client must carry the next sequence id of this leg.
_SEQUENCED = frozenset({_C.AWAIT_LOGIN, _C.AWAIT_LOGIN_TLS})
_NOT_PASSED_THROUGH = frozenset({
    Com.COM_QUIT, Com.COM_CHANGE_USER, Com.COM_RESET_CONNECTION, Com.COM_PROCESS_KILL, Com.COM_MULTI,
})


class ClientFacing:
    """The gateway in the server role, towards one client.

    Typical use: ``client.send(client_greeting(engine_greeting, tls=...))``, then feed client
    bytes and act on events (see :mod:`.relay` for the whole wiring).
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._buf = PacketBuffer(max_message_size)
        self._max_message_size = max_message_size
        self._state = ClientState.SEND_GREETING
        self._seq = 0  # next sequence id on the wire (connection phase, change of user)
        self._peer_turn = False  # the client may send an auth packet now
        self._greeting: InitialHandshake | None = None
        self._ssl_request: SSLRequest | None = None
        self._tls = False
        self._closed_by_peer = False
        self.login: HandshakeResponse41 | None = None
        self.capabilities: Capability | None = None  # agreed at login
        # Collation id used to decode statements. Follows the login, COM_CHANGE_USER (the
        # requested one on success, the server default -- the greeting's -- on failure, as
        # MariaDB 10.11 does) and COM_RESET_CONNECTION (back to the session's login one);
        # SET NAMES inside statements is not seen here: callers that track it assign this.
        self.charset: int = 0
        self._session_charset = 0
        self._reply_seq: int | None = None  # COMMAND: id for the gateway's own answer
        self._wrap_continues = False  # LOAD DATA sequence-id wrap (see module doc)
        self._change_user: ComChangeUser | None = None
        self._auth_started = False

    # -- introspection --

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def tls(self) -> bool:
        return self._tls

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """(bytes received but not consumed, whether the client closed its side)."""
        return self._buf.peek_all(), self._closed_by_peer

    def receive_limit(self) -> int | None:
        """How many bytes the driver may read now: None for no limit, 0 for none.

        Until the login packet has arrived the connection may switch to TLS right after the
        next packet, so reading past that packet would swallow the client's TLS bytes in
        cleartext: the limit is then the rest of the packet, 0 once it is complete (process
        events first) and 0 during the upgrade (pause reading, start TLS).
        """
        state = self._state
        if state is ClientState.TLS_UPGRADE:
            return 0
        if state in (ClientState.SEND_GREETING, ClientState.AWAIT_LOGIN):
            try:
                return self._buf.bytes_needed()
            except RemoteProtocolError:
                return 0  # next_event() reports it
        return None

    def native_state(self) -> bool | None:
        """For a native relay that takes the command phase over (``gateway/relay/``, which
        frames packets with these same rules): the LOAD DATA wrap flag to start from, or None
        when the connection is not at a packet boundary of the command phase."""
        if self._state is not ClientState.COMMAND or self._buf.buffered or self._buf.eof:
            return None
        return self._wrap_continues

    def native_handed_back(self) -> None:
        """The native relay gave the connection back before a command (the next bytes fed):
        the commands it forwarded leave the state a passed-through command leaves, and it
        stops only at a command, so no LOAD DATA wrap is pending."""
        if self._state is not ClientState.COMMAND:
            raise LocalProtocolError(f"handed back in state {self._state.value}")
        self._wrap_continues = False
        self._reply_seq = 1

    def passthrough(self, data: bytes, commands: frozenset[int]) -> type[Command] | type[Continuation] | None:
        """The hot path of the command phase: whether ``data`` -- exactly one whole packet,
        nothing else buffered -- is a continuation or a command whose code is in
        ``commands`` (the ones the caller lets through without looking at them). If so the
        state advances exactly as ``receive_data(data)`` plus ``next_event()`` would have
        advanced it, the result says which (:class:`Continuation`, or :class:`Command` for
        any command) and the caller forwards ``data`` unchanged; None: nothing changed, the
        caller feeds ``data`` as usual. Commands that change the session's state here
        (COM_QUIT, COM_CHANGE_USER, COM_RESET_CONNECTION, COM_PROCESS_KILL, COM_MULTI) never
        take this path, whatever ``commands`` says."""
        if self._state is not ClientState.COMMAND or self._buf.buffered or self._buf.eof:
            return None
        size = len(data)
        if size < HEADER_SIZE + 1:
            return None
        length = data[0] | data[1] << 8 | data[2] << 16
        if length + HEADER_SIZE != size or length >= MAX_PAYLOAD or length > self._max_message_size:
            return None
        seq = data[3]
        if seq != 0 or self._wrap_continues:
            self._wrap_continues = seq == 255  # the payload is not empty
            return Continuation
        code = data[4]
        if code not in commands or code in _NOT_PASSED_THROUGH:
            return None
        self._wrap_continues = False
        self._reply_seq = 1
        return Command

    # -- input --

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes from the client; ``b""`` means it closed its side.

        Between :class:`SslRequested` and :meth:`tls_established` nothing may be fed: bytes the
        TLS layer decrypts before the driver has called ``tls_established()`` (asyncio delivers
        them before ``start_tls`` returns) must be held by the driver until then.
        """
        if self._buf.eof:
            raise LocalProtocolError("receive_data() after end of stream")
        if self._state is ClientState.TLS_UPGRADE and data:
            raise LocalProtocolError(
                "data fed during the TLS upgrade; call tls_established() first"
            )
        if not data:
            self._closed_by_peer = True
            self._buf.feed_eof()
            return
        self._buf.feed(data)

    def next_event(self) -> ClientEvent | Signal:
        state = self._state
        if state is ClientState.ERROR:
            raise RemoteProtocolError("connection is in the error state")
        if state is ClientState.CLOSED:
            # nothing more is parsed; later bytes stay in trailing_data
            return ConnectionClosed() if self._buf.eof else NEED_DATA
        try:
            if state in (ClientState.SEND_GREETING, ClientState.TLS_UPGRADE):
                if self._buf.buffered:
                    raise RemoteProtocolError(
                        "client sent data before the greeting"
                        if state is ClientState.SEND_GREETING
                        else "client sent cleartext data after its SSLRequest"
                    )
                return self._closed() if self._buf.eof else NEED_DATA
            if state in _SEQUENCED:
                # as the server does, judge a packet by its header's sequence id before
                # waiting for its body (garbage is refused at once, not at the timeout)
                header = self._buf.peek_header()
                if header is not None and header[1] != self._seq:
                    raise RemoteProtocolError(
                        f"packet out of order: sequence id {header[1]}, expected {self._seq}"
                    )
            packet = self._buf.next_packet()
            if packet is None:
                return self._closed() if self._buf.eof else NEED_DATA
            event = self._dispatch(packet)
        except RemoteProtocolError:
            self._fail()
            raise
        self._transition(event)
        return event

    def _fail(self) -> None:
        # An ERR sent after this goes out with the id the client expects next.
        if self._state is ClientState.COMMAND:
            self._seq = self._reply_seq if self._reply_seq is not None else 1
        self._state = ClientState.ERROR

    def _closed(self) -> ConnectionClosed:
        event = ConnectionClosed()
        self._transition(event)
        return event

    def _transition(self, event: object, *, sending: bool = False) -> None:
        direction = SEND if sending else RECV
        new = CLIENT_TRANSITIONS.get((self._state, direction, type(event)))
        if new is None:
            if not sending:
                self._fail()
            raise CLIENT_TRANSITIONS.error(self._state, direction, type(event))
        self._state = new

    def _expect_seq(self, packet: Packet) -> None:
        if packet.seq != self._seq:
            raise RemoteProtocolError(
                f"packet out of order: sequence id {packet.seq}, expected {self._seq}"
            )
        self._seq = packet.next_seq

    def _dispatch(self, packet: Packet) -> ClientEvent:
        state = self._state
        if state is ClientState.AWAIT_LOGIN:
            self._expect_seq(packet)
            if len(packet.payload) == SSLRequest.SIZE:
                request = SSLRequest.parse(packet.payload)
                assert self._greeting is not None  # AWAIT_LOGIN follows the greeting
                if not self._greeting.capabilities & Capability.CLIENT_SSL:
                    raise RemoteProtocolError("SSLRequest although TLS was not offered")
                if self._buf.buffered:
                    raise RemoteProtocolError("client sent cleartext data after its SSLRequest")
                self._ssl_request = request
                return SslRequested(request)
            return self._login(HandshakeResponse41.parse(packet.payload))
        if state is ClientState.AWAIT_LOGIN_TLS:
            self._expect_seq(packet)
            if len(packet.payload) == SSLRequest.SIZE:
                raise RemoteProtocolError("second SSLRequest")
            assert self._ssl_request is not None
            # read as the engine reads it: with the SSLRequest's capabilities (see parse)
            return self._login(HandshakeResponse41.parse(packet.payload, after=self._ssl_request))
        if state in (ClientState.AUTH, ClientState.CHANGE_USER):
            if not self._peer_turn:
                raise RemoteProtocolError("client sent an auth packet out of turn")
            self._expect_seq(packet)
            self._peer_turn = False
            return AuthData(bytes(packet.payload))
        if state is ClientState.COMMAND:
            return self._command(packet)
        raise RemoteProtocolError(f"unexpected packet in state {state.value}")

    def _login(self, response: HandshakeResponse41) -> LoginRequested:
        assert self._greeting is not None
        offered = self._greeting.capabilities
        declared = response.capabilities
        unoffered = declared & UNSUPPORTED_CAPABILITIES & ~offered
        if unoffered & (Capability.CLIENT_COMPRESS | Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM):
            raise RemoteProtocolError("client asked for compression, which was not offered")
        if declared & Capability.CLIENT_SSL and not self._tls:
            raise RemoteProtocolError("CLIENT_SSL in a handshake response sent in cleartext")
        agreed = Capability(declared & offered)
        if not agreed & Capability.CLIENT_PROTOCOL_41:
            raise RemoteProtocolError("pre-4.1 clients are not supported")
        self.login = response
        self.capabilities = agreed
        self.charset = self._session_charset = response.charset
        return LoginRequested(
            response=response,
            user=_auth.effective_user_name(response.username, response.charset),
            capabilities=agreed,
            tls=self._tls,
        )

    def _command(self, packet: Packet) -> ClientEvent:
        raw = packet.raw
        payload = packet.payload
        continues = self._wrap_continues
        self._wrap_continues = bool(len(payload)) and packet.last_seq == 255
        if packet.seq != 0 or continues:
            return Continuation(raw)
        self._reply_seq = packet.next_seq
        if not len(payload):
            raise RemoteProtocolError("empty command packet")
        code = payload[0]
        if code == Com.COM_QUERY:
            return Query(raw, charsets.decode(payload[1:], self.charset))
        if code == Com.COM_STMT_PREPARE:
            return Prepare(raw, charsets.decode(payload[1:], self.charset))
        if code == Com.COM_CHANGE_USER:
            assert self.capabilities is not None
            request = ComChangeUser.parse(payload, self.capabilities)
            self._change_user = request
            self._auth_started = False
            self._seq = packet.next_seq
            self._peer_turn = False
            return ChangeUser(raw, request, request.user(self.charset))
        if code == Com.COM_RESET_CONNECTION:
            self.charset = self._session_charset
            return ResetConnection(raw)
        if code == Com.COM_QUIT:
            return Quit(raw)
        if code == Com.COM_PROCESS_KILL:
            if len(payload) != 5:
                raise RemoteProtocolError("COM_PROCESS_KILL needs a 4-byte thread id")
            return ProcessKill(raw, int.from_bytes(payload[1:5], "little"))
        if code == Com.COM_MULTI:
            # bundles several commands in one packet; never offered, never forwarded
            raise RemoteProtocolError("COM_MULTI is not supported")
        return Command(raw, code)

    # -- output --

    def tls_established(self) -> None:
        """The client transport now runs TLS; no cleartext byte may be pending."""
        if self._state is ClientState.TLS_UPGRADE and self._buf.buffered:
            self._fail()
            raise RemoteProtocolError("client sent cleartext data after its SSLRequest")
        self._transition(TlsEstablished(), sending=True)
        self._tls = True

    def send(self, event: InitialHandshake | AuthSwitchRequest | AuthMoreData | OkPacket
             | ErrPacket) -> bytes:
        """Bytes to write to the client for ``event`` (framed with this leg's sequence id)."""
        state = self._state
        if (state, SEND, type(event)) not in CLIENT_TRANSITIONS:
            raise LocalProtocolError(f"cannot send {type(event).__name__} in state {state.value}")
        if isinstance(event, InitialHandshake):
            payload = event.build()
            self._greeting = event
        elif isinstance(event, ErrPacket):
            payload = event.build(self.capabilities)
        elif isinstance(event, OkPacket):
            assert self.capabilities is not None
            payload = event.build(self.capabilities)
        else:
            payload = event.build()

        if state is ClientState.COMMAND:
            if self._reply_seq is None:
                raise LocalProtocolError("no command to answer")
            seq, self._reply_seq = self._reply_seq, None
        else:
            seq = self._seq
            self._seq = (seq + packet_count(len(payload))) & 0xFF
        data = frame(payload, seq)

        self._transition(event, sending=True)
        if isinstance(event, (AuthSwitchRequest, AuthMoreData)):
            self._peer_turn = True
            self._auth_started = True
        elif state is ClientState.CHANGE_USER and isinstance(event, (OkPacket, ErrPacket)):
            self._peer_turn = False
            assert self._greeting is not None
            requested = self._change_user.charset if self._change_user else None
            if isinstance(event, OkPacket):
                self.charset = self._session_charset = requested or self._greeting.charset
            elif self._auth_started:
                # authentication failed: MariaDB leaves the server's default character set
                self.charset = self._session_charset = self._greeting.charset
            # an ERR before any auth request: refused up front, the session is unchanged
            self._change_user = None
            self._reply_seq = None
        return data


