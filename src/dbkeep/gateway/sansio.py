"""The sans-I/O contract both gateway protocols follow (``gateway/mysql``, ``gateway/postgres``).

Theory of operation (DESIGN.md, house style; the model is h11). A protocol object owns no
socket, task or clock; a driver feeds it bytes and acts on what it says:

- ``receive_data(bytes)`` (``b""``: the peer closed its side), then ``next_event()`` until it
  returns a :class:`Signal`: :data:`NEED_DATA` (read more) or :data:`PAUSED` (your move: send
  something first); ``send(event) -> bytes`` to write; ``state``; ``trailing_data`` (bytes
  received and not consumed, whether the peer closed).
- Every state change goes through one :class:`Transitions` table per machine, keyed
  ``(state, direction, kind)``: :data:`RECV` for what the peer sent, :data:`SEND` for what we
  send. A pair not in the table raises :class:`~dbkeep.errors.RemoteProtocolError` (the peer's
  fault) or :class:`~dbkeep.errors.LocalProtocolError` (ours), never an assert.
- Received bytes wait in a bounded :class:`ReceiveBuffer` (or a protocol's framing buffer with
  the same interface: ``feed``, ``feed_eof``, ``eof``, ``buffered``, ``peek_all``,
  ``take_all``); every length is checked before anything is allocated or awaited.
- A protocol error carries the reply the peer should get (``ProtocolError.error_hint``);
  each protocol's ``errors`` module maps exceptions to its wire errors.

Nothing here, nor in the protocol packages, imports asyncio or socket: the drivers live in
``gateway/drivers/``.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Mapping
from typing import Final, Generic, TypeVar

from dbkeep.errors import LocalProtocolError, ProtocolError, RemoteProtocolError

__all__ = ["NEED_DATA", "PAUSED", "RECV", "SEND", "ReceiveBuffer", "Signal", "Transitions"]


class Signal(enum.Enum):
    """What ``next_event()`` returns when it has no event."""

    NEED_DATA = "NEED_DATA"
    PAUSED = "PAUSED"

    def __repr__(self) -> str:
        return self.value


NEED_DATA: Final = Signal.NEED_DATA
PAUSED: Final = Signal.PAUSED

RECV: Final = "recv"  # an event the peer sent
SEND: Final = "send"  # an event we send

S = TypeVar("S", bound=enum.Enum)


class Transitions(dict[tuple[S, str, Hashable], S], Generic[S]):
    """One machine's transition table: a dict ``(state, direction, kind) -> next state``.

    ``kind`` is whatever names an event in that protocol (its type, or a string where one
    type has several meanings). ``remote`` and ``local`` are the texts of the errors for a
    pair not in the table, formatted with ``state`` and ``kind`` (attributes allowed, e.g.
    ``{state.name}``, ``{kind.__name__}``). A machine looks a pair up with the dict's own
    ``get`` (no Python frame on its per-event path) and raises :meth:`error` on a miss, or
    calls :meth:`next`, which does both.
    """

    __slots__ = ("_local", "_remote")

    def __init__(self, table: Mapping[tuple[S, str, Hashable], S], *, remote: str, local: str) -> None:
        super().__init__(table)
        self._remote = remote
        self._local = local

    def allows(self, state: S, direction: str, kind: Hashable) -> bool:
        return (state, direction, kind) in self

    def next(self, state: S, direction: str, kind: Hashable) -> S:
        """The state after ``kind`` in ``state``; raises the remote or local protocol error."""
        new = self.get((state, direction, kind))
        if new is None:
            raise self.error(state, direction, kind)
        return new

    def error(self, state: S, direction: str, kind: Hashable) -> ProtocolError:
        """The error for a pair not in the table: the peer's (RECV) or ours (SEND)."""
        if direction == RECV:
            return RemoteProtocolError(self._remote.format(state=state, kind=kind))
        return LocalProtocolError(self._local.format(state=state, kind=kind))


class ReceiveBuffer:
    """Bytes received and not yet consumed, and whether the peer closed its side.

    Consumption moves an offset; the storage is compacted lazily, so taking many small
    messages out of one large chunk is linear. When the buffer is empty and a chunk arrives
    that is consumed whole, the chunk object itself is handed out (no copy). Protocols add
    their framing in a subclass (``postgres.wire.MessageBuffer``) or keep a buffer of their
    own with the same interface (``mysql.wire.PacketBuffer``, which hands out packets as
    zero-copy views).
    """

    __slots__ = ("_buf", "_eof", "_pos")

    _COMPACT_AT = 256 * 1024

    def __init__(self) -> None:
        self._buf: bytes | bytearray = b""
        self._pos = 0
        self._eof = False

    def __len__(self) -> int:
        return len(self._buf) - self._pos

    def __bool__(self) -> bool:
        return len(self._buf) > self._pos

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    @property
    def eof(self) -> bool:
        return self._eof

    def feed_eof(self) -> None:
        self._eof = True

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if self._pos >= len(self._buf):
            self._buf = data if isinstance(data, bytes) else bytes(data)
            self._pos = 0
            return
        buf = self._buf
        if isinstance(buf, bytes):
            buf = bytearray(buf[self._pos :]) if self._pos else bytearray(buf)
            self._pos = 0
        elif self._pos >= self._COMPACT_AT:
            del buf[: self._pos]
            self._pos = 0
        buf += data
        self._buf = buf

    def peek(self, n: int) -> bytes | None:
        """The first ``n`` bytes, or None when fewer are buffered (nothing consumed)."""
        if len(self) < n:
            return None
        return bytes(self._buf[self._pos : self._pos + n])

    def peek_all(self) -> bytes:
        return bytes(self._buf[self._pos :])

    def first_byte(self) -> int | None:
        return self._buf[self._pos] if self else None

    def take(self, n: int) -> bytes:
        buf, pos = self._buf, self._pos
        if n > len(buf) - pos:
            raise RemoteProtocolError("internal framing error: take beyond buffer")  # pragma: no cover
        if pos == 0 and n == len(buf) and isinstance(buf, bytes):
            out = buf
        elif isinstance(buf, bytes):
            out = buf[pos : pos + n]
        else:
            with memoryview(buf) as view:
                out = view[pos : pos + n].tobytes()
        pos += n
        if pos >= len(buf):
            self._buf, self._pos = b"", 0
        else:
            self._pos = pos
        return out

    def take_all(self) -> bytes:
        return self.take(len(self))
