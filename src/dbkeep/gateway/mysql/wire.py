"""MySQL/MariaDB wire primitives and packet framing (sans-I/O).

Theory of operation
-------------------
Everything on a classic-protocol connection travels in *packets* (MariaDB KB "Protocol
Data Types" and "0 - Packet"; MySQL dev docs "page_protocol_basic_packets")::

    int<3>  payload_length      little-endian, at most 0xFFFFFF (16 MiB - 1)
    int<1>  sequence_id         0 at the start of every command, +1 per packet, wraps at 256
    string<payload_length> payload

A payload of 0xFFFFFF bytes or more is split into physical packets of exactly 0xFFFFFF bytes
followed by one shorter packet (possibly empty); their sequence ids are consecutive. Both
servers reassemble such a *logical packet* before interpreting it, so :class:`PacketBuffer`
does the same: it yields one :class:`Packet` per logical packet.

Inside payloads the protocol uses fixed-width little-endian integers ``int<1|2|3|4|6|8>``,
length-encoded integers ``int<lenenc>`` (``< 0xFB`` one byte, ``0xFC`` + int<2>, ``0xFD`` +
int<3>, ``0xFE`` + int<8>; ``0xFB`` is NULL in rows and ``0xFF`` an error marker, both invalid
as a length), length-encoded strings, NUL-terminated strings and "rest of packet" strings.

Readers fail closed (DESIGN.md): every length is checked against the bytes actually present
before anything is sliced, every declared packet length against ``max_message_size`` before
bytes are buffered for it, and any truncation or malformation raises
:class:`~dbkeep.errors.RemoteProtocolError` -- never ``IndexError``, ``struct.error`` or a
hang. Writers raise :class:`~dbkeep.errors.LocalProtocolError` for values that cannot be
encoded.

Copies are avoided on the hot path: the reader keeps the chunks it was fed (``bytes``,
immutable, so ``memoryview`` slices of them stay valid) and a packet that lies inside one chunk
is returned as a zero-copy ``memoryview``. Only packets that straddle chunks, and multi-packet
messages, are joined -- each byte is copied at most once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from dbkeep.errors import LocalProtocolError, RemoteProtocolError

from .codes import PACKET_TOO_LARGE

__all__ = [
    "DEFAULT_MAX_MESSAGE_SIZE",
    "HEADER_SIZE",
    "MAX_PAYLOAD",
    "Buffer",
    "Packet",
    "PacketBuffer",
    "Reader",
    "frame",
    "int_bytes",
    "lenenc_bytes",
    "lenenc_int",
    "cstring",
    "packet_count",
]

HEADER_SIZE = 4
MAX_PAYLOAD = 0xFFFFFF
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024

Buffer = bytes | bytearray | memoryview


# --- reading ---------------------------------------------------------------------------------


class Reader:
    """A bounds-checked cursor over one payload.

    ``what`` names the message in error texts ("truncated HandshakeResponse41").
    """

    __slots__ = ("_pos", "_view", "_what")

    def __init__(self, data: Buffer, what: str = "packet") -> None:
        view = memoryview(data)
        self._view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
        self._pos = 0
        self._what = what

    # -- state --

    @property
    def pos(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._view) - self._pos

    def at_end(self) -> bool:
        return self._pos >= len(self._view)

    def finish(self) -> None:
        if self._pos != len(self._view):
            raise RemoteProtocolError(
                f"{self.remaining} unexpected trailing byte(s) in {self._what}"
            )

    def _need(self, n: int) -> None:
        if n < 0 or self._pos + n > len(self._view):
            raise RemoteProtocolError(f"truncated {self._what}")

    # -- fixed-width integers --

    def peek(self) -> int:
        self._need(1)
        return self._view[self._pos]

    def uint(self, size: int) -> int:
        self._need(size)
        value = int.from_bytes(self._view[self._pos : self._pos + size], "little")
        self._pos += size
        return value

    def int1(self) -> int:
        self._need(1)
        value = self._view[self._pos]
        self._pos += 1
        return value

    def int2(self) -> int:
        return self.uint(2)

    def int3(self) -> int:
        return self.uint(3)

    def int4(self) -> int:
        return self.uint(4)

    def int8(self) -> int:
        return self.uint(8)

    # -- length-encoded --

    def lenenc_int(self) -> int:
        first = self.int1()
        if first < 0xFB:
            return first
        if first == 0xFC:
            return self.uint(2)
        if first == 0xFD:
            return self.uint(3)
        if first == 0xFE:
            return self.uint(8)
        raise RemoteProtocolError(f"invalid length-encoded integer 0x{first:02x} in {self._what}")

    def lenenc_bytes(self) -> bytes:
        length = self.lenenc_int()
        return self.take(length)

    # -- strings --

    def take(self, n: int) -> bytes:
        self._need(n)
        out = bytes(self._view[self._pos : self._pos + n])
        self._pos += n
        return out

    def skip(self, n: int) -> None:
        self._need(n)
        self._pos += n

    def cstring(self) -> bytes:
        """A NUL-terminated string; the terminator is consumed, not returned."""
        view = self._view
        end = len(view)
        # memoryview has no .index(); scan the underlying object through bytes() of the tail
        # only up to the first NUL, which is bounded by the payload length.
        tail = view[self._pos : end]
        idx = bytes(tail).find(b"\x00") if len(tail) else -1
        if idx < 0:
            raise RemoteProtocolError(f"unterminated string in {self._what}")
        out = bytes(tail[:idx])
        self._pos += idx + 1
        return out

    def rest(self) -> bytes:
        out = bytes(self._view[self._pos :])
        self._pos = len(self._view)
        return out


# --- writing ---------------------------------------------------------------------------------


def int_bytes(value: int, size: int) -> bytes:
    """``int<size>`` little-endian; LocalProtocolError if it does not fit."""
    if value < 0 or value >= 1 << (8 * size):
        raise LocalProtocolError(f"value {value} does not fit in int<{size}>")
    return value.to_bytes(size, "little")


def lenenc_int(value: int) -> bytes:
    if value < 0:
        raise LocalProtocolError("length-encoded integers are unsigned")
    if value < 0xFB:
        return bytes((value,))
    if value < 1 << 16:
        return b"\xfc" + value.to_bytes(2, "little")
    if value < 1 << 24:
        return b"\xfd" + value.to_bytes(3, "little")
    if value < 1 << 64:
        return b"\xfe" + value.to_bytes(8, "little")
    raise LocalProtocolError(f"value {value} does not fit in int<lenenc>")


def lenenc_bytes(data: Buffer) -> bytes:
    return lenenc_int(len(data)) + bytes(data)


def cstring(data: Buffer) -> bytes:
    raw = bytes(data)
    if b"\x00" in raw:
        raise LocalProtocolError("a NUL-terminated string cannot contain NUL")
    return raw + b"\x00"


def packet_count(payload_length: int) -> int:
    """Physical packets needed for a logical payload (an exact multiple needs an empty tail)."""
    return payload_length // MAX_PAYLOAD + 1


def frame(payload: Buffer, seq: int) -> bytes:
    """Frame ``payload`` as packet(s) starting at sequence id ``seq`` (mod 256).

    The next free sequence id is ``(seq + packet_count(len(payload))) % 256``.
    """
    if not 0 <= seq <= 255:
        raise LocalProtocolError(f"sequence id {seq} out of range")
    view = memoryview(payload).cast("B") if not isinstance(payload, bytes) else payload
    length = len(view)
    if length < MAX_PAYLOAD:
        return length.to_bytes(3, "little") + bytes((seq,)) + bytes(view)
    parts: list[bytes] = []
    offset = 0
    while True:
        chunk = view[offset : offset + MAX_PAYLOAD]
        parts.append(len(chunk).to_bytes(3, "little") + bytes((seq,)))
        parts.append(bytes(chunk))
        seq = (seq + 1) & 0xFF
        offset += len(chunk)
        if len(chunk) < MAX_PAYLOAD:
            break
    return b"".join(parts)


# --- framing ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Packet:
    """One logical packet as received.

    ``seq`` is the sequence id of its first physical packet, ``last_seq`` of its last (they
    differ only for payloads of 16 MiB - 1 or more). ``payload`` and ``raw`` (headers included,
    exactly as received) are read-only buffers; ``bytes(p.raw)`` copies.
    """

    seq: int
    last_seq: int
    payload: memoryview
    _raw: memoryview | None = None

    @property
    def raw(self) -> memoryview:
        if self._raw is not None:
            return self._raw
        # Multi-packet framing is canonical, so re-framing reproduces the received bytes.
        return memoryview(frame(self.payload, self.seq))

    @property
    def next_seq(self) -> int:
        return (self.last_seq + 1) & 0xFF


class PacketBuffer:
    """Incremental framer: :meth:`feed` bytes, take :meth:`next_packet` until ``None``.

    ``max_message_size`` bounds a logical packet (the sum of its physical payloads); a header
    announcing more raises RemoteProtocolError before any of it is buffered.
    """

    __slots__ = ("_chunks", "_eof", "_max", "_offset", "_size")

    def __init__(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> None:
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # consumed bytes of _chunks[0]
        self._size = 0  # unconsumed bytes in total
        self._max = max_message_size
        self._eof = False

    # -- input --

    def feed(self, data: Buffer) -> None:
        if self._eof:
            raise LocalProtocolError("data fed after end of stream")
        if not data:
            return
        chunk = data if isinstance(data, bytes) else bytes(data)
        self._chunks.append(chunk)
        self._size += len(chunk)

    def feed_eof(self) -> None:
        self._eof = True

    @property
    def eof(self) -> bool:
        return self._eof

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned."""
        return self._size

    # -- buffered access (no mutation, no joining) --

    def _slices(self, start: int, n: int) -> list[memoryview]:
        """Views of the ``n`` unconsumed bytes starting ``start`` bytes ahead (all buffered)."""
        out: list[memoryview] = []
        pos = start + self._offset
        for chunk in self._chunks:
            if pos >= len(chunk):
                pos -= len(chunk)
                continue
            take = min(len(chunk) - pos, n)
            out.append(memoryview(chunk)[pos : pos + take])
            n -= take
            pos = 0
            if not n:
                break
        return out

    def _join(self, start: int, n: int) -> memoryview:
        parts = self._slices(start, n)
        if len(parts) == 1:
            return parts[0]  # zero-copy: lies inside one received chunk
        return memoryview(b"".join(parts))

    def _consume(self, n: int) -> None:
        self._offset += n
        self._size -= n
        while self._chunks and self._offset >= len(self._chunks[0]):
            self._offset -= len(self._chunks[0])
            self._chunks.popleft()

    def _header_at(self, skip: int) -> tuple[int, int] | None:
        """(length, seq) of the physical header ``skip`` bytes ahead, if buffered."""
        if self._size < skip + HEADER_SIZE:
            return None
        head = bytes(self._join(skip, HEADER_SIZE))
        return head[0] | head[1] << 8 | head[2] << 16, head[3]

    def _scan(self) -> tuple[list[tuple[int, int]], int, bool]:
        """Walk the physical headers of the next logical packet.

        Returns (headers as (length, seq), bytes spanned, complete?). Raises on an oversized
        or mis-sequenced message as soon as the offending header is buffered.
        """
        skip = 0
        total = 0
        headers: list[tuple[int, int]] = []
        while True:
            header = self._header_at(skip)
            if header is None:
                return headers, skip + HEADER_SIZE, False
            length, seq = header
            if headers and seq != (headers[-1][1] + 1) & 0xFF:
                raise RemoteProtocolError("sequence id skipped inside a multi-packet payload")
            total += length
            self._check_size(total)
            end = skip + HEADER_SIZE + length
            headers.append((length, seq))
            if self._size < end:
                return headers, end, False
            skip = end
            if length < MAX_PAYLOAD:
                return headers, skip, True

    def _check_size(self, total: int) -> None:
        if total > self._max:
            raise RemoteProtocolError(
                f"packet of {total} bytes exceeds the limit of {self._max} bytes", error_hint=PACKET_TOO_LARGE
            )

    # -- packets --

    def peek_header(self) -> tuple[int, int] | None:
        """(payload length, sequence id) of the next physical packet once its header is
        buffered, without consuming anything: lets a reader refuse a packet by its header
        (an unexpected sequence id) before waiting for its body."""
        return self._header_at(0)

    def bytes_needed(self) -> int:
        """How many more bytes complete the next logical packet (0 if one is complete).

        A driver that must not read past a packet boundary (the TLS upgrade point after an
        SSLRequest) reads at most this many bytes.
        """
        _, span, complete = self._scan()
        return 0 if complete else span - self._size

    def next_packet(self) -> Packet | None:
        """The next complete logical packet, or None when more bytes are needed.

        At end of stream (after :meth:`feed_eof`) a partial packet raises RemoteProtocolError.
        """
        headers, span, complete = self._scan()
        if not complete:
            if self._eof and self._size:
                raise RemoteProtocolError("connection closed in the middle of a packet")
            return None
        if len(headers) == 1:
            raw = self._join(0, span)
            seq = headers[0][1]
            self._consume(span)
            return Packet(seq=seq, last_seq=seq, payload=raw[HEADER_SIZE:], _raw=raw)
        parts: list[memoryview] = []
        pos = 0
        for length, _ in headers:
            parts.extend(self._slices(pos + HEADER_SIZE, length))
            pos += HEADER_SIZE + length
        payload = memoryview(b"".join(parts))
        self._consume(span)
        return Packet(seq=headers[0][1], last_seq=headers[-1][1], payload=payload)

    def peek_all(self) -> bytes:
        """A copy of everything buffered, leaving it in place."""
        return b"".join(self._slices(0, self._size)) if self._size else b""

    def take_all(self) -> bytes:
        """Everything buffered, unparsed (for raw passthrough); the buffer is emptied."""
        if not self._size:
            return b""
        if len(self._chunks) == 1 and self._offset == 0:
            out = self._chunks[0]
        else:
            first = memoryview(self._chunks[0])[self._offset :]
            out = b"".join([first, *list(self._chunks)[1:]])
        self._chunks.clear()
        self._offset = 0
        self._size = 0
        return out
