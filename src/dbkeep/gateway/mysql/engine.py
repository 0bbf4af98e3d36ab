"""The engine-facing MySQL/MariaDB machine: the gateway in the *client* role towards the engine.

Sans-I/O, in the style of h11 (:mod:`dbkeep.gateway.sansio`): ``receive_data``,
``next_event``, ``send``, ``state``, ``trailing_data``; its transitions are
:data:`~.states.ENGINE_TRANSITIONS`. The theory of operation is the package's
(``gateway/mysql/__init__.py``).
"""

from __future__ import annotations

from dbkeep.errors import LocalProtocolError, RemoteProtocolError
from dbkeep.gateway.sansio import NEED_DATA, RECV, SEND, Signal

from .events import AuthData, ChangeUser, ClientCommand, Command, ConnectionClosed, Continuation, EngineEvent, Passthrough, TlsEstablished
from .messages import (
    AUTH_MORE_DATA_HEADER,
    AUTH_SWITCH_HEADER,
    ERR_HEADER,
    OK_HEADER,
    UNSUPPORTED_CAPABILITIES,
    AuthMoreData,
    AuthSwitchRequest,
    Capability,
    ErrPacket,
    HandshakeResponse41,
    InitialHandshake,
    OkPacket,
    SSLRequest,
)
from .states import ENGINE_TRANSITIONS, EngineState
from .wire import DEFAULT_MAX_MESSAGE_SIZE, Packet, PacketBuffer, frame, packet_count

__all__ = ["EngineFacing"]


class EngineFacing:
    """The gateway in the client role, towards the engine.

    ``send(SSLRequest | HandshakeResponse41)`` adjusts capabilities for the engine leg: masked
    with what the engine offered, :data:`~.messages.UNSUPPORTED_CAPABILITIES` removed,
    CLIENT_SSL set exactly when this leg runs TLS. In the command phase ``send`` takes the
    client's events and returns their raw bytes.
    """

    def __init__(self, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        self._buf = PacketBuffer(max_message_size)
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
        return self._buf.peek_all(), self._closed_by_peer

    def native_state(self) -> bool | None:
        """For a native relay that takes the command phase over: whether the engine owes
        nothing until the next command (any byte from it before that is a protocol error), or
        None when engine bytes could not pass unparsed now (not the command phase, something
        buffered, end of stream)."""
        if self._state is not EngineState.COMMAND or self._buf.buffered or self._buf.eof:
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
            and not self._buf.buffered
            and not self._buf.eof
        )

    # -- input --

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        if self._buf.eof:
            raise LocalProtocolError("receive_data() after end of stream")
        if not data:
            self._closed_by_peer = True
            self._buf.feed_eof()
            return
        self._buf.feed(data)

    def next_event(self) -> EngineEvent | Signal:
        state = self._state
        if state is EngineState.ERROR:
            raise RemoteProtocolError("connection is in the error state")
        if state is EngineState.CLOSED:
            return ConnectionClosed() if self._buf.eof else NEED_DATA
        try:
            if state is EngineState.COMMAND:
                if self._buf.buffered:
                    if self._expect_silence:
                        raise RemoteProtocolError(
                            "engine sent data after a change of user, before any command"
                        )
                    event: EngineEvent = Passthrough(self._buf.take_all())
                else:
                    return self._closed() if self._buf.eof else NEED_DATA
            elif state in (EngineState.SEND_LOGIN, EngineState.TLS_UPGRADE,
                           EngineState.SEND_LOGIN_TLS):
                if self._buf.buffered:
                    raise RemoteProtocolError("engine sent data while it was our turn")
                return self._closed() if self._buf.eof else NEED_DATA
            else:
                packet = self._buf.next_packet()
                if packet is None:
                    return self._closed() if self._buf.eof else NEED_DATA
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
        direction = SEND if sending else RECV
        new = ENGINE_TRANSITIONS.get((self._state, direction, type(event)))
        if new is None:
            if not sending:
                self._state = EngineState.ERROR
            raise ENGINE_TRANSITIONS.error(self._state, direction, type(event))
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
        if self._state is EngineState.TLS_UPGRADE and self._buf.buffered:
            self._state = EngineState.ERROR
            raise RemoteProtocolError("engine sent cleartext data after our SSLRequest")
        self._transition(TlsEstablished(), sending=True)
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
        if (state, SEND, type(event)) not in ENGINE_TRANSITIONS:
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
