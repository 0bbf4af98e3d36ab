"""The engine-facing PostgreSQL machine: the gateway in the *client* role towards the engine.

Sans-I/O, in the style of h11 (:mod:`dbkeep.gateway.sansio`); its transitions are
:data:`~.states.ENGINE_TRANSITIONS`. In the query phase it relays the engine's output in the
runs it arrives in, following message boundaries only while tracking is on (guarded sessions),
and puts a guard's error in place of the engine's answer to a refusal's sentinel. The theory
of operation is the package's (``gateway/postgres/__init__.py``).
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from typing import cast

from dbkeep.errors import LocalProtocolError, RemoteProtocolError
from dbkeep.gateway.sansio import NEED_DATA, PAUSED, RECV, SEND, Signal

from .errcodes import (
    SYNTAX_ERROR,
)
from .messages import (
    BACKEND_STARTUP_PARSERS,
    BackendKeyData,
    ErrorResponse,
    ParameterStatus,
    ReadyForQuery,
    StartupMessage,
)
from .events import (
    BackendData,
    ConnectionClosed,
    EngineEvent,
    Refusal,
    kind_of,
)
from .states import ENGINE_TRANSITIONS, ENGINE_WAITING, EngineState
from .wire import Limits, MessageBuffer

__all__ = ["EngineFacing"]

_HEADER = struct.Struct("!BI")

_INSPECT_LIMIT = 64 * 1024  # ParameterStatus larger than this is relayed unread
_REFUSAL_ERROR_LIMIT = 8192  # the engine's error for a refusal token is far shorter
_MAX_PENDING_REFUSALS = 64


_SYNC_POINTS = frozenset({"Query", "Sync", "FunctionCall"})


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
        # query phase, while tracking: messages sent that the engine answers with a ReadyForQuery
        # (Query, Sync, FunctionCall), and ReadyForQuery messages received -- equal when the
        # engine has answered everything (the statement guard's checks wait for that)
        self.sync_points = 0
        self.ready_count = 0

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

    @property
    def refusals_pending(self) -> bool:
        """A refused statement's sentinel went to the engine and its answer has not come yet."""
        return bool(self._refusals)

    def note_relayed(self, syncs: int, readies: int, status: str | None) -> None:
        """What another relay (the native one) sent and delivered meanwhile: ``syncs``
        Query/Sync/FunctionCall messages, ``readies`` ReadyForQuery messages, the last of them
        with ``status`` (None: none)."""
        self.sync_points += syncs
        self.ready_count += readies
        if status is not None:
            self.transaction_status = status

    def stop_tracking(self) -> None:
        if self._refusals:
            raise LocalProtocolError("refusals are pending")
        self._track = False

    def _transition(self, direction: str, kind: str) -> None:
        new = ENGINE_TRANSITIONS.get((self.state, direction, kind))
        if new is None:
            raise ENGINE_TRANSITIONS.error(self.state, direction, kind)
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
        self._transition(RECV, "ConnectionClosed")
        return ConnectionClosed()

    def _next_event(self) -> EngineEvent | Signal:
        state = self.state
        if state is EngineState.CLOSED:
            return ConnectionClosed()
        if state not in ENGINE_WAITING:
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
        self._transition(RECV, type(event).__name__)
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
            self._transition(RECV, "BackendData")
            return BackendData(data)
        out, held, changes = self._scan(data)
        if held:
            buf.feed(held)
        if not out:
            return self._end_of_stream() if self._eof else NEED_DATA
        self._transition(RECV, "BackendData")
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
                        self.ready_count += 1
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
        kind = kind_of(event)
        if isinstance(event, Refusal):
            if not self._track:
                raise LocalProtocolError("refusing statements needs message tracking")
            self._transition(SEND, kind)
            self._refusals[event.token.encode("ascii")] = event.error
            while len(self._refusals) > _MAX_PENDING_REFUSALS:
                self._refusals.popitem(last=False)  # long skipped by an earlier error
            if event.sentinel[:1] == b"Q":
                self.sync_points += 1
            return event.sentinel
        if isinstance(event, StartupMessage):
            self._transition(SEND, kind)
            return event.for_engine().build()
        build = getattr(event, "build", None)
        if build is None:
            raise LocalProtocolError(f"cannot send {kind} to the engine")
        self._transition(SEND, kind)
        if kind in _SYNC_POINTS:
            self.sync_points += 1
        return cast(bytes, build())
