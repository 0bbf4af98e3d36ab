"""Sans-I/O MySQL/MariaDB connection state machines for the gateway, in the style of h11.

Theory of operation
-------------------
The gateway relays a classic-protocol connection between a client and the engine (MariaDB KB
"Connection", "COM_CHANGE_USER", "Authentication Switch Request"; MySQL dev docs
"page_protocol_connection_phase"). Two objects model its two legs:

- :class:`ClientFacing` plays the *server* towards the client;
- :class:`EngineFacing` plays the *client* towards the engine.

Both follow h11's shape: ``receive_data(bytes)`` (``b""`` = end of stream), ``next_event()``
returning an event or :data:`NEED_DATA`, ``send(event) -> bytes`` to write, ``state`` and
``trailing_data``. Every state change goes through one transition table per class, keyed by
(state, event type); an unknown pair raises RemoteProtocolError for something received and
LocalProtocolError for something sent. Inbound parsing errors put the machine in ``ERROR``.

Connection phase (both legs)::

    engine --> InitialHandshake (seq 0)            -> client_greeting() -> client (seq 0)
    client --> [SSLRequest (seq 1), TLS] HandshakeResponse41 (seq 1, or 2 after SSLRequest)
    engine <-- [SSLRequest (seq 1), TLS] HandshakeResponse41 (seq 1 or 2; capabilities adjusted)
    engine --> AuthSwitchRequest / AuthMoreData / OK / ERR, client <--> auth data ... OK|ERR

**Sequence ids are rewritten by construction**: each object frames what it sends with its own
leg's next sequence id and checks the id of what it receives, so a payload moved from one
leg to the other (``client.send(engine_event)``, ``engine.send(client_event)``) gets the id
that leg expects. The legs differ by one when only one of them did an SSLRequest; nobody has
to compute that. In the command phase both legs restart at 0 with every command and the
gateway forwards packets unchanged (raw bytes, no re-framing), so ids agree there too.

**Turn taking.** During authentication a client may only send after the gateway relayed an
auth request (AuthSwitchRequest / AuthMoreData) and only once per request; the engine may send
several packets in a row (AuthMoreData then OK, as caching_sha2 does) but not while it owes an
answer to nobody. Out-of-turn packets are protocol errors: this is what makes a pipelined
COM_CHANGE_USER impossible to misattribute (see below).

**Command phase.** Client -> engine is framed but not copied: a logical packet with sequence
id 0 starts a command (first payload byte: :class:`~.messages.CommandCode`), anything else is a
:class:`Continuation` (LOAD DATA LOCAL INFILE content, auth data of a change of user) that the
gateway passes on -- the engine itself rejects any packet whose id does not follow its own
count ("Got packets out of order", then it closes), so a continuation can never be run as a
command. One exception keeps LOAD DATA of more than 255 packets working: after a non-empty
packet with id 255 the next id is 0 *within the same exchange*, so a packet with id 0 that
follows a non-empty id-255 packet is a continuation, exactly as the engine counts. Statement
commands are surfaced with their SQL text decoded in the session's character set
(:class:`Query`, :class:`Prepare`); the guard may refuse them, and the gateway then answers the
client itself (``client.send(ErrPacket(...))``, sequence id 1) without forwarding -- or, when
the client may have pipelined commands, lets the engine answer in order (:mod:`.relay`).
Engine -> client in the command phase is :class:`Passthrough` of whatever bytes arrived,
unparsed. For a driver's hot path both directions have a shortcut that changes the state
exactly as the full path would: :attr:`EngineFacing.passthrough` says engine bytes would come
back unchanged (so they need not be fed), and :meth:`ClientFacing.passthrough` accepts a chunk
that is exactly one packet needing no decision (a continuation, or a command the caller names).

**COM_CHANGE_USER** is a new login inside the command phase: :class:`ChangeUser` carries the
new user, and both legs parse again (auth packets, then OK or ERR; after ERR MariaDB keeps the
old user) until the exchange ends. Because engine -> client bytes are not parsed otherwise, a
client that pipelines a command and a COM_CHANGE_USER could make the tail of the previous
command's response look like the change of user's result. Three checks close that: the client
may not send anything until the change of user is answered (turn taking), the engine's first
reply must be an AuthSwitchRequest or an ERR (MariaDB always restarts authentication on
COM_CHANGE_USER), and once the exchange has ended any engine byte that arrives before the next
client command is a protocol error. Drivers should still treat a session as privileged if any
user it logged in or changed to is privileged.

**TLS only on an empty buffer.** After an SSLRequest, ``next_event`` returns
:class:`SslRequested` only if no further byte was received in cleartext; the driver upgrades
the transport and calls :meth:`ClientFacing.tls_established` (which checks again). A MySQL
client sends its TLS ClientHello right after the SSLRequest without waiting, so a driver must
not read past the SSLRequest: :meth:`ClientFacing.receive_limit` says how many bytes it may
read (e.g. from ``asyncio.BufferedProtocol.get_buffer``) while that matters. Feeding data
between :class:`SslRequested` and ``tls_established()`` is a LocalProtocolError: asyncio hands
the first decrypted bytes to the protocol before ``loop.start_tls()`` returns, so the driver
holds them until it has called ``tls_established()``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from dbkeep.errors import LocalProtocolError, RemoteProtocolError

from . import auth as _auth
from . import charsets
from .messages import (
    AUTH_MORE_DATA_HEADER,
    AUTH_SWITCH_HEADER,
    ERR_HEADER,
    OK_HEADER,
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
from .messages import (
    CommandCode as Com,
)
from .wire import (
    DEFAULT_MAX_MESSAGE_SIZE,
    HEADER_SIZE,
    MAX_PAYLOAD,
    Packet,
    PacketReader,
    frame,
    packet_count,
)

__all__ = [
    "NEED_DATA",
    "AuthData",
    "ChangeUser",
    "ClientCommand",
    "ClientEvent",
    "ClientFacing",
    "ClientState",
    "Command",
    "ConnectionClosed",
    "Continuation",
    "EngineEvent",
    "EngineFacing",
    "EngineState",
    "LoginRequested",
    "Passthrough",
    "Prepare",
    "ProcessKill",
    "Query",
    "Quit",
    "ResetConnection",
    "SslRequested",
]


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


# --- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SslRequested:
    """The client sent an SSLRequest: upgrade the client transport, then call
    :meth:`ClientFacing.tls_established`."""

    request: SSLRequest


@dataclass(frozen=True, slots=True)
class LoginRequested:
    """The client's HandshakeResponse41.

    ``user`` is the account the engine will look up (quotes stripped as the server does);
    ``capabilities`` what client and gateway agreed on (the layout of later packets);
    ``tls`` whether it arrived over TLS. Refuse with ``client.send(ErrPacket(...))``, or relay
    with ``engine.send(event.response)`` (EngineFacing adjusts the capabilities).
    """

    response: HandshakeResponse41
    user: str
    capabilities: Capability
    tls: bool


@dataclass(frozen=True, slots=True)
class AuthData:
    """One authentication packet from the client (scramble, token + NUL, signature ...)."""

    payload: bytes


@dataclass(frozen=True, slots=True, eq=True)
class ClientCommand:
    """Base of command-phase events: ``raw`` is the packet(s) as received, headers included,
    a zero-copy read-only view -- forward it as is (``engine.send(event)`` returns it)."""

    raw: memoryview

    @property
    def payload(self) -> memoryview:
        # single packets: header + payload; multi-packet raws are re-framed canonically, and
        # commands that need the payload (Query, ChangeUser) are parsed from it directly.
        return _payload_of(self.raw)


@dataclass(frozen=True, slots=True)
class Command(ClientCommand):
    """A command not surfaced more specifically (COM_PING, COM_STMT_EXECUTE, COM_INIT_DB ...)."""

    command: int


@dataclass(frozen=True, slots=True)
class Query(ClientCommand):
    """COM_QUERY; ``sql`` decoded in the session's character set (never fails)."""

    sql: str


@dataclass(frozen=True, slots=True)
class Prepare(ClientCommand):
    """COM_STMT_PREPARE; ``sql`` as for :class:`Query`."""

    sql: str


@dataclass(frozen=True, slots=True)
class ChangeUser(ClientCommand):
    """COM_CHANGE_USER: a new login. ``user`` is the new account name (no quote stripping:
    the server does none here)."""

    request: ComChangeUser
    user: str


@dataclass(frozen=True, slots=True)
class ResetConnection(ClientCommand):
    """COM_RESET_CONNECTION."""


@dataclass(frozen=True, slots=True)
class Quit(ClientCommand):
    """COM_QUIT: forward it, then close both legs."""


@dataclass(frozen=True, slots=True)
class ProcessKill(ClientCommand):
    """COM_PROCESS_KILL (the protocol form of KILL CONNECTION)."""

    thread_id: int


@dataclass(frozen=True, slots=True)
class Continuation(ClientCommand):
    """A packet continuing the current exchange (sequence id != 0): pass it on."""


@dataclass(frozen=True, slots=True)
class Passthrough:
    """Engine bytes in the command phase, unparsed: write them to the client."""

    data: bytes


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side."""


@dataclass(frozen=True, slots=True)
class _TlsEstablished:
    """Internal transition marker for ``tls_established()``."""


ClientEvent = (
    SslRequested | LoginRequested | AuthData | Command | Query | Prepare | ChangeUser
    | ResetConnection | Quit | ProcessKill | Continuation | ConnectionClosed
)
EngineEvent = (
    InitialHandshake | AuthSwitchRequest | AuthMoreData | OkPacket | ErrPacket | Passthrough
    | ConnectionClosed
)


def _payload_of(raw: memoryview) -> memoryview:
    length = raw[0] | raw[1] << 8 | raw[2] << 16
    if len(raw) == 4 + length:
        return raw[4:]
    parts = []
    pos = 0
    while pos < len(raw):
        n = raw[pos] | raw[pos + 1] << 8 | raw[pos + 2] << 16
        parts.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return memoryview(b"".join(parts))


# --- client-facing leg -----------------------------------------------------------------------


class ClientState(enum.Enum):
    SEND_GREETING = "SEND_GREETING"
    AWAIT_LOGIN = "AWAIT_LOGIN"
    TLS_UPGRADE = "TLS_UPGRADE"
    AWAIT_LOGIN_TLS = "AWAIT_LOGIN_TLS"
    AUTH = "AUTH"
    COMMAND = "COMMAND"
    CHANGE_USER = "CHANGE_USER"
    CLOSED = "CLOSED"
    ERROR = "ERROR"


_C = ClientState
# States in which every packet from the client must carry the next sequence id of this leg.
_SEQUENCED = frozenset({_C.AWAIT_LOGIN, _C.AWAIT_LOGIN_TLS})
_NOT_PASSED_THROUGH = frozenset({
    Com.COM_QUIT, Com.COM_CHANGE_USER, Com.COM_RESET_CONNECTION, Com.COM_PROCESS_KILL, Com.COM_MULTI,
})
_COMMAND_EVENTS = (Command, Query, Prepare, ProcessKill, ResetConnection, Continuation)

_CLIENT_TRANSITIONS: dict[tuple[ClientState, type], ClientState] = {
    (_C.SEND_GREETING, InitialHandshake): _C.AWAIT_LOGIN,
    (_C.SEND_GREETING, ErrPacket): _C.CLOSED,
    (_C.AWAIT_LOGIN, SslRequested): _C.TLS_UPGRADE,
    (_C.AWAIT_LOGIN, LoginRequested): _C.AUTH,
    (_C.AWAIT_LOGIN, ErrPacket): _C.CLOSED,
    (_C.TLS_UPGRADE, _TlsEstablished): _C.AWAIT_LOGIN_TLS,
    (_C.AWAIT_LOGIN_TLS, LoginRequested): _C.AUTH,
    (_C.AWAIT_LOGIN_TLS, ErrPacket): _C.CLOSED,
    (_C.AUTH, AuthData): _C.AUTH,
    (_C.AUTH, AuthSwitchRequest): _C.AUTH,
    (_C.AUTH, AuthMoreData): _C.AUTH,
    (_C.AUTH, OkPacket): _C.COMMAND,
    (_C.AUTH, ErrPacket): _C.CLOSED,
    **{(_C.COMMAND, t): _C.COMMAND for t in _COMMAND_EVENTS},
    (_C.COMMAND, ChangeUser): _C.CHANGE_USER,
    (_C.COMMAND, Quit): _C.CLOSED,
    (_C.COMMAND, ErrPacket): _C.COMMAND,
    (_C.COMMAND, OkPacket): _C.COMMAND,
    (_C.CHANGE_USER, AuthData): _C.CHANGE_USER,
    (_C.CHANGE_USER, AuthSwitchRequest): _C.CHANGE_USER,
    (_C.CHANGE_USER, AuthMoreData): _C.CHANGE_USER,
    (_C.CHANGE_USER, OkPacket): _C.COMMAND,
    (_C.CHANGE_USER, ErrPacket): _C.COMMAND,
    (_C.ERROR, ErrPacket): _C.CLOSED,
    **{(s, ConnectionClosed): _C.CLOSED for s in ClientState if s is not _C.CLOSED},
}


class ClientFacing:
    """The gateway in the server role, towards one client.

    Typical use: ``client.send(client_greeting(engine_greeting, tls=...))``, then feed client
    bytes and act on events (see :mod:`.relay` for the whole wiring).
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._reader = PacketReader(max_message_size)
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
        return self._reader.peek_all(), self._closed_by_peer

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
                return self._reader.bytes_needed()
            except RemoteProtocolError:
                return 0  # next_event() reports it
        return None

    def native_state(self) -> bool | None:
        """For a native relay that takes the command phase over (``gateway/_relay.c``, which
        frames packets with these same rules): the LOAD DATA wrap flag to start from, or None
        when the connection is not at a packet boundary of the command phase."""
        if self._state is not ClientState.COMMAND or self._reader.buffered or self._reader.eof:
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
        if self._state is not ClientState.COMMAND or self._reader.buffered or self._reader.eof:
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
        if self._reader.eof:
            raise LocalProtocolError("receive_data() after end of stream")
        if self._state is ClientState.TLS_UPGRADE and data:
            raise LocalProtocolError(
                "data fed during the TLS upgrade; call tls_established() first"
            )
        if not data:
            self._closed_by_peer = True
            self._reader.feed_eof()
            return
        self._reader.feed(data)

    def next_event(self) -> ClientEvent | _NeedData:
        state = self._state
        if state is ClientState.ERROR:
            raise RemoteProtocolError("connection is in the error state")
        if state is ClientState.CLOSED:
            # nothing more is parsed; later bytes stay in trailing_data
            return ConnectionClosed() if self._reader.eof else NEED_DATA
        try:
            if state in (ClientState.SEND_GREETING, ClientState.TLS_UPGRADE):
                if self._reader.buffered:
                    raise RemoteProtocolError(
                        "client sent data before the greeting"
                        if state is ClientState.SEND_GREETING
                        else "client sent cleartext data after its SSLRequest"
                    )
                return self._closed() if self._reader.eof else NEED_DATA
            if state in _SEQUENCED:
                # as the server does, judge a packet by its header's sequence id before
                # waiting for its body (garbage is refused at once, not at the timeout)
                header = self._reader.peek_header()
                if header is not None and header[1] != self._seq:
                    raise RemoteProtocolError(
                        f"packet out of order: sequence id {header[1]}, expected {self._seq}"
                    )
            packet = self._reader.next_packet()
            if packet is None:
                return self._closed() if self._reader.eof else NEED_DATA
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
        new = _CLIENT_TRANSITIONS.get((self._state, type(event)))
        if new is None:
            name = type(event).__name__
            if sending:
                raise LocalProtocolError(f"cannot send {name} in state {self._state.value}")
            self._fail()
            raise RemoteProtocolError(f"unexpected {name} in state {self._state.value}")
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
                if self._reader.buffered:
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
        if self._state is ClientState.TLS_UPGRADE and self._reader.buffered:
            self._fail()
            raise RemoteProtocolError("client sent cleartext data after its SSLRequest")
        self._transition(_TlsEstablished(), sending=True)
        self._tls = True

    def send(self, event: InitialHandshake | AuthSwitchRequest | AuthMoreData | OkPacket
             | ErrPacket) -> bytes:
        """Bytes to write to the client for ``event`` (framed with this leg's sequence id)."""
        state = self._state
        if (state, type(event)) not in _CLIENT_TRANSITIONS or isinstance(event, _CLIENT_EVENTS):
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


_CLIENT_EVENTS = (
    SslRequested, LoginRequested, AuthData, ClientCommand, ConnectionClosed, Passthrough,
)


# --- engine-facing leg -----------------------------------------------------------------------


class EngineState(enum.Enum):
    AWAIT_GREETING = "AWAIT_GREETING"
    SEND_LOGIN = "SEND_LOGIN"
    TLS_UPGRADE = "TLS_UPGRADE"
    SEND_LOGIN_TLS = "SEND_LOGIN_TLS"
    AUTH = "AUTH"
    COMMAND = "COMMAND"
    CHANGE_USER = "CHANGE_USER"
    CLOSED = "CLOSED"
    ERROR = "ERROR"


_E = EngineState
_FORWARDED = (Command, Query, Prepare, ProcessKill, ResetConnection, Continuation)

_ENGINE_TRANSITIONS: dict[tuple[EngineState, type], EngineState] = {
    (_E.AWAIT_GREETING, InitialHandshake): _E.SEND_LOGIN,
    (_E.AWAIT_GREETING, ErrPacket): _E.CLOSED,
    (_E.SEND_LOGIN, SSLRequest): _E.TLS_UPGRADE,
    (_E.SEND_LOGIN, HandshakeResponse41): _E.AUTH,
    (_E.TLS_UPGRADE, _TlsEstablished): _E.SEND_LOGIN_TLS,
    (_E.SEND_LOGIN_TLS, HandshakeResponse41): _E.AUTH,
    (_E.AUTH, AuthSwitchRequest): _E.AUTH,
    (_E.AUTH, AuthMoreData): _E.AUTH,
    (_E.AUTH, AuthData): _E.AUTH,
    (_E.AUTH, OkPacket): _E.COMMAND,
    (_E.AUTH, ErrPacket): _E.CLOSED,
    **{(_E.COMMAND, t): _E.COMMAND for t in _FORWARDED},
    (_E.COMMAND, Passthrough): _E.COMMAND,
    (_E.COMMAND, ChangeUser): _E.CHANGE_USER,
    (_E.COMMAND, Quit): _E.CLOSED,
    (_E.CHANGE_USER, AuthSwitchRequest): _E.CHANGE_USER,
    (_E.CHANGE_USER, AuthMoreData): _E.CHANGE_USER,
    (_E.CHANGE_USER, AuthData): _E.CHANGE_USER,
    (_E.CHANGE_USER, OkPacket): _E.COMMAND,
    (_E.CHANGE_USER, ErrPacket): _E.COMMAND,
    **{(s, ConnectionClosed): _E.CLOSED for s in EngineState if s is not _E.CLOSED},
}


class EngineFacing:
    """The gateway in the client role, towards the engine.

    ``send(SSLRequest | HandshakeResponse41)`` adjusts capabilities for the engine leg: masked
    with what the engine offered, :data:`~.messages.UNSUPPORTED_CAPABILITIES` removed,
    CLIENT_SSL set exactly when this leg runs TLS. In the command phase ``send`` takes the
    client's events and returns their raw bytes.
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._reader = PacketReader(max_message_size)
        self._state = EngineState.AWAIT_GREETING
        self._seq = 0
        self._engine_turn = False  # the engine may send an auth-phase packet now
        self._may_answer = False  # we may send an auth packet now
        self._first_reply = False  # COM_CHANGE_USER sent, no reply seen yet
        self._expect_silence = False  # change of user ended, no command since
        self._closed_by_peer = False
        self._ssl_request: SSLRequest | None = None
        self._tls = False
        self.greeting: InitialHandshake | None = None
        self.capabilities: Capability | None = None

    @property
    def state(self) -> EngineState:
        return self._state

    @property
    def tls(self) -> bool:
        return self._tls

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        return self._reader.peek_all(), self._closed_by_peer

    def native_state(self) -> bool | None:
        """For a native relay that takes the command phase over: whether the engine owes
        nothing until the next command (any byte from it before that is a protocol error), or
        None when engine bytes could not pass unparsed now (not the command phase, something
        buffered, end of stream)."""
        if self._state is not EngineState.COMMAND or self._reader.buffered or self._reader.eof:
            return None
        return self._expect_silence

    def native_handed_back(self, quiet: bool) -> None:
        """The native relay gave the connection back: ``quiet`` is its view of whether the
        engine owes nothing (no command forwarded since the last exchange ended)."""
        if self._state is not EngineState.COMMAND:
            raise LocalProtocolError(f"handed back in state {self._state.value}")
        self._expect_silence = quiet

    def passed_through(self, kind: type[Command] | type[Continuation]) -> None:
        """The client leg let a packet through on its hot path (:meth:`ClientFacing.passthrough`):
        the same state change as ``send()`` of that packet."""
        if self._state is not EngineState.COMMAND:
            raise LocalProtocolError(f"cannot forward a command in state {self._state.value}")
        if kind is not Continuation:
            self._expect_silence = False

    @property
    def passthrough(self) -> bool:
        """Whether engine bytes received now would come back unparsed, as one
        :class:`Passthrough` of exactly those bytes: command phase, nothing buffered, not at
        the end of the stream, and no change of user has just ended (then the engine owes
        nothing and any byte is an error). A driver may then write engine bytes straight to
        the client instead of feeding them here -- the relay's hot path."""
        return (
            self._state is EngineState.COMMAND
            and not self._expect_silence
            and not self._reader.buffered
            and not self._reader.eof
        )

    # -- input --

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self._reader.eof:
            raise LocalProtocolError("receive_data() after end of stream")
        if not data:
            self._closed_by_peer = True
            self._reader.feed_eof()
            return
        self._reader.feed(data)

    def next_event(self) -> EngineEvent | _NeedData:
        state = self._state
        if state is EngineState.ERROR:
            raise RemoteProtocolError("connection is in the error state")
        if state is EngineState.CLOSED:
            return ConnectionClosed() if self._reader.eof else NEED_DATA
        try:
            if state is EngineState.COMMAND:
                if self._reader.buffered:
                    if self._expect_silence:
                        raise RemoteProtocolError(
                            "engine sent data after a change of user, before any command"
                        )
                    event: EngineEvent = Passthrough(self._reader.take_all())
                else:
                    return self._closed() if self._reader.eof else NEED_DATA
            elif state in (EngineState.SEND_LOGIN, EngineState.TLS_UPGRADE,
                           EngineState.SEND_LOGIN_TLS):
                if self._reader.buffered:
                    raise RemoteProtocolError("engine sent data while it was our turn")
                return self._closed() if self._reader.eof else NEED_DATA
            else:
                packet = self._reader.next_packet()
                if packet is None:
                    return self._closed() if self._reader.eof else NEED_DATA
                event = self._dispatch(packet)
        except RemoteProtocolError:
            self._state = EngineState.ERROR
            raise
        self._transition(event)
        if state in (EngineState.AUTH, EngineState.CHANGE_USER) and self._state in (
            EngineState.COMMAND, EngineState.CLOSED
        ):
            # The exchange is over: the engine owes nothing until the next command.
            self._expect_silence = True
            self._engine_turn = False
            self._may_answer = False
        return event

    def _closed(self) -> ConnectionClosed:
        event = ConnectionClosed()
        self._transition(event)
        return event

    def _transition(self, event: object, *, sending: bool = False) -> None:
        new = _ENGINE_TRANSITIONS.get((self._state, type(event)))
        if new is None:
            name = type(event).__name__
            if sending:
                raise LocalProtocolError(f"cannot send {name} in state {self._state.value}")
            self._state = EngineState.ERROR
            raise RemoteProtocolError(f"unexpected {name} in state {self._state.value}")
        self._state = new

    def _expect_seq(self, packet: Packet) -> None:
        if packet.seq != self._seq:
            raise RemoteProtocolError(
                f"engine packet out of order: sequence id {packet.seq}, expected {self._seq}"
            )
        self._seq = packet.next_seq

    def _dispatch(self, packet: Packet) -> EngineEvent:
        payload = packet.payload
        if self._state is EngineState.AWAIT_GREETING:
            self._expect_seq(packet)
            if len(payload) and payload[0] == ERR_HEADER:
                return ErrPacket.parse(payload)
            greeting = InitialHandshake.parse(payload)
            if not greeting.capabilities & Capability.CLIENT_PROTOCOL_41:
                raise RemoteProtocolError("engine does not speak protocol 4.1")
            self.greeting = greeting
            return greeting
        # AUTH or CHANGE_USER
        if not self._engine_turn:
            raise RemoteProtocolError("engine sent an auth packet out of turn")
        self._expect_seq(packet)
        if not len(payload):
            raise RemoteProtocolError("empty packet during authentication")
        first_reply, self._first_reply = self._first_reply, False
        header = payload[0]
        assert self.capabilities is not None
        if header == ERR_HEADER:
            return ErrPacket.parse(payload)
        if header == AUTH_SWITCH_HEADER:
            self._engine_turn = False
            self._may_answer = True
            return AuthSwitchRequest.parse(payload)
        if first_reply:
            raise RemoteProtocolError(
                "COM_CHANGE_USER answered by something other than AuthSwitchRequest or ERR"
            )
        if header == OK_HEADER:
            return OkPacket.parse(payload, self.capabilities)
        if header == AUTH_MORE_DATA_HEADER:
            self._may_answer = True
            return AuthMoreData.parse(payload)
        raise RemoteProtocolError(f"unexpected packet 0x{header:02x} during authentication")

    # -- output --

    def tls_established(self) -> None:
        """The engine transport now runs TLS."""
        if self._state is EngineState.TLS_UPGRADE and self._reader.buffered:
            self._state = EngineState.ERROR
            raise RemoteProtocolError("engine sent cleartext data after our SSLRequest")
        self._transition(_TlsEstablished(), sending=True)
        self._tls = True

    def _engine_caps(self, declared: int, *, tls: bool) -> Capability:
        assert self.greeting is not None
        caps = declared & self.greeting.capabilities & ~UNSUPPORTED_CAPABILITIES
        caps &= ~Capability.CLIENT_SSL
        if tls:
            caps |= Capability.CLIENT_SSL
        return Capability(caps)

    def send(
        self, event: SSLRequest | HandshakeResponse41 | AuthData | ClientCommand
    ) -> bytes | memoryview:
        """Bytes to write to the engine for ``event``.

        Client commands come back as their zero-copy ``raw`` view (bytes-like: write it as is,
        ``bytes()`` it to keep it).
        """
        state = self._state
        if (state, type(event)) not in _ENGINE_TRANSITIONS or isinstance(
            event, (Passthrough, ConnectionClosed)
        ):
            raise LocalProtocolError(f"cannot send {type(event).__name__} in state {state.value}")

        data: bytes | memoryview
        if isinstance(event, SSLRequest):
            assert self.greeting is not None
            if not self.greeting.capabilities & Capability.CLIENT_SSL:
                raise LocalProtocolError("the engine does not offer TLS")
            request = SSLRequest(
                self._engine_caps(event.capabilities, tls=True),
                event.max_packet_size,
                event.charset,
            )
            self._ssl_request = request
            data = self._frame(request.build())
        elif isinstance(event, HandshakeResponse41):
            response = event.with_capabilities(self._engine_caps(event.capabilities, tls=self._tls))
            if self._tls:
                assert self._ssl_request is not None
                if not response.matches(self._ssl_request):
                    raise LocalProtocolError("handshake response differs from the SSLRequest")
            self.capabilities = response.capabilities
            data = self._frame(response.build())
            self._engine_turn = True
            self._may_answer = False
        elif isinstance(event, AuthData):  # the table allows it in AUTH and CHANGE_USER only
            if not self._may_answer:
                raise LocalProtocolError("the engine has not asked for auth data")
            data = self._frame(event.payload)
            self._engine_turn = True
            self._may_answer = False
        else:
            data = event.raw
            if not isinstance(event, Continuation):
                self._expect_silence = False
            if isinstance(event, ChangeUser):
                self._seq = packet_count(len(event.payload)) & 0xFF
                self._engine_turn = True
                self._may_answer = False
                self._first_reply = True

        self._transition(event, sending=True)
        return data

    def _frame(self, payload: bytes) -> bytes:
        data = frame(payload, self._seq)
        self._seq = (self._seq + packet_count(len(payload))) & 0xFF
        return data
