"""PostgreSQL v3 wire primitives: bounded readers, builders and message framing.

Theory of operation (PostgreSQL documentation, chapter "Frontend/Backend Protocol"):

* "Messaging Overview": after the start-up phase every message is ``Byte1`` type, ``Int32``
  length (counting itself but not the type byte), then ``length - 4`` bytes of payload. The
  first packets of a connection (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest)
  have no type byte: ``Int32`` length (counting itself), then the payload, whose first
  ``Int32`` is a protocol version or a request code.
* "Message Data Types": integers are big-endian (``Int8/16/32``); ``String`` is a C string
  terminated by a NUL byte (and so contains none); ``Byten`` is a run of exactly n bytes.

Readers fail closed: every length is checked against a limit *before* anything is allocated
or waited for, a read past the end, a string without its NUL or bytes left over raise
:class:`~dbkeep.errors.RemoteProtocolError`. Builders refuse what cannot be represented
(NUL inside a string, lengths beyond ``Int32``) with :class:`~dbkeep.errors.LocalProtocolError`.

The limits mirror the server's own (``src/include/libpq/pqcomm.h`` and ``postgres.c``):
startup packets at most 10000 bytes (``MAX_STARTUP_PACKET_LENGTH``), "small" frontend
messages (Sync, Execute, Describe, Close, Flush, CopyDone, CopyFail, Terminate) at most
10000 bytes (``PQ_SMALL_MESSAGE_LIMIT``), authentication responses at most 65535 bytes
(``PG_MAX_AUTH_TOKEN_LENGTH``); the "large" messages (Query, Parse, Bind, FunctionCall,
CopyData), which the server allows up to 1 GB, are bounded by a configurable limit.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from dbkeep.errors import LocalProtocolError, RemoteProtocolError
from dbkeep.gateway.sansio import ReceiveBuffer

__all__ = [
    "Limits",
    "Reader",
    "MessageBuffer",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "cstring",
    "typed_message",
    "untyped_message",
    "typed_reader",
    "remember_raw",
    "raw_of",
    "MAX_INT32",
]

MAX_INT32 = 0x7FFFFFFF

_INT16 = struct.Struct("!h")
_UINT16 = struct.Struct("!H")
_INT32 = struct.Struct("!i")
_UINT32 = struct.Struct("!I")
_HEADER = struct.Struct("!BI")  # type byte + length, as read from a typed message

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Size limits, in bytes, applied before any buffering.

    ``max_message`` bounds "large" frontend messages (the length word included) and any
    backend message the gateway has to hold whole; ``max_startup_packet`` is the server's
    ``MAX_STARTUP_PACKET_LENGTH`` (the payload after the length word); ``max_small_message``
    is ``PQ_SMALL_MESSAGE_LIMIT``; ``max_auth_message`` is ``PG_MAX_AUTH_TOKEN_LENGTH``;
    ``max_backend_setup_message`` bounds what the engine sends before ReadyForQuery;
    ``max_pending`` bounds bytes a peer may send while it is not its turn to speak.
    """

    max_message: int = 64 * MiB
    max_startup_packet: int = 10000
    max_small_message: int = 10000
    max_auth_message: int = 65535
    max_backend_setup_message: int = 1 * MiB
    max_pending: int = 1 * MiB

    def __post_init__(self) -> None:
        for name in (
            "max_message",
            "max_startup_packet",
            "max_small_message",
            "max_auth_message",
            "max_backend_setup_message",
            "max_pending",
        ):
            value = getattr(self, name)
            if not 8 <= value <= MAX_INT32:
                raise ValueError(f"{name} must be between 8 and {MAX_INT32}, not {value}")


# --- builders --------------------------------------------------------------------------------


def int16(value: int) -> bytes:
    try:
        return _INT16.pack(value)
    except struct.error:
        raise LocalProtocolError(f"{value} does not fit in an Int16") from None


def uint16(value: int) -> bytes:
    try:
        return _UINT16.pack(value)
    except struct.error:
        raise LocalProtocolError(f"{value} does not fit in an unsigned Int16") from None


def int32(value: int) -> bytes:
    try:
        return _INT32.pack(value)
    except struct.error:
        raise LocalProtocolError(f"{value} does not fit in an Int32") from None


def uint32(value: int) -> bytes:
    try:
        return _UINT32.pack(value)
    except struct.error:
        raise LocalProtocolError(f"{value} does not fit in an unsigned Int32") from None


def cstring(value: bytes | str) -> bytes:
    """A protocol ``String``: the bytes and a NUL terminator (str is encoded as UTF-8).

    Text that came off the wire is held as UTF-8 with ``surrogateescape`` so that arbitrary
    bytes survive a parse/build round trip unchanged.
    """
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
    if b"\x00" in data:
        raise LocalProtocolError("a protocol string cannot contain a NUL byte")
    return data + b"\x00"


def typed_message(type_: bytes, *parts: bytes) -> bytes:
    """``Byte1`` type, ``Int32`` length (counting itself), payload."""
    if len(type_) != 1:
        raise LocalProtocolError("a message type is exactly one byte")
    length = 4 + sum(len(p) for p in parts)
    if length > MAX_INT32:
        raise LocalProtocolError("message too long for the protocol")
    return b"".join((type_, _UINT32.pack(length), *parts))


def untyped_message(*parts: bytes) -> bytes:
    """A start-up packet: ``Int32`` length (counting itself), payload."""
    length = 4 + sum(len(p) for p in parts)
    if length > MAX_INT32:
        raise LocalProtocolError("message too long for the protocol")
    return b"".join((_UINT32.pack(length), *parts))


# --- reader ----------------------------------------------------------------------------------


class Reader:
    """Bounds-checked cursor over ``data[start:end]``; every read fails closed.

    ``what`` names the message in error texts.
    """

    __slots__ = ("_data", "_pos", "_end", "_what")

    def __init__(self, data: bytes, start: int = 0, end: int | None = None, *, what: str = "message") -> None:
        self._data = data
        self._pos = start
        self._end = len(data) if end is None else end
        self._what = what
        if not 0 <= start <= self._end <= len(data):
            raise RemoteProtocolError(f"invalid {what} bounds")

    @property
    def remaining(self) -> int:
        return self._end - self._pos

    def _need(self, n: int) -> int:
        pos = self._pos
        if n < 0 or self._end - pos < n:
            raise RemoteProtocolError(f"truncated {self._what}")
        self._pos = pos + n
        return pos

    def byte(self) -> int:
        return self._data[self._need(1)]

    def int16(self) -> int:
        value: int = _INT16.unpack_from(self._data, self._need(2))[0]
        return value

    def uint16(self) -> int:
        value: int = _UINT16.unpack_from(self._data, self._need(2))[0]
        return value

    def int32(self) -> int:
        value: int = _INT32.unpack_from(self._data, self._need(4))[0]
        return value

    def uint32(self) -> int:
        value: int = _UINT32.unpack_from(self._data, self._need(4))[0]
        return value

    def take(self, n: int) -> bytes:
        pos = self._need(n)
        return self._data[pos : pos + n]

    def cstring(self) -> bytes:
        pos = self._pos
        nul = self._data.find(b"\x00", pos, self._end)
        if nul < 0:
            raise RemoteProtocolError(f"unterminated string in {self._what}")
        self._pos = nul + 1
        return self._data[pos:nul]

    def text(self) -> str:
        """A ``String`` decoded as UTF-8, undecodable bytes kept (``surrogateescape``)."""
        return self.cstring().decode("utf-8", "surrogateescape")

    def rest(self) -> bytes:
        pos = self._pos
        self._pos = self._end
        return self._data[pos : self._end]

    def finish(self) -> None:
        if self._pos != self._end:
            raise RemoteProtocolError(f"{self._end - self._pos} unexpected bytes at the end of {self._what}")


# --- receive buffer --------------------------------------------------------------------------


class MessageBuffer(ReceiveBuffer):
    """The receive buffer with PostgreSQL's framing: typed messages and start-up packets,
    each length bounded as soon as it is buffered."""

    __slots__ = ()

    def header(self) -> tuple[int, int] | None:
        """``(type, length)`` of the next typed message, or None if fewer than 5 bytes."""
        if len(self._buf) - self._pos < 5:
            return None
        header: tuple[int, int] = _HEADER.unpack_from(self._buf, self._pos)
        return header

    def typed_frame(self, max_length: int) -> bytes | None:
        """Take the next whole typed message (type byte included) or return None.

        The length word is checked against ``max_length`` as soon as it is buffered, so an
        oversized declaration is refused before its body is awaited.
        """
        header = self.header()
        if header is None:
            return None
        _, length = header
        if length < 4 or length > max_length:
            raise RemoteProtocolError("invalid message length")
        if len(self) < length + 1:
            return None
        return self.take(length + 1)

    def untyped_frame(self, max_payload: int, min_payload: int = 4) -> bytes | None:
        """Take the next start-up packet (length word included) or return None."""
        if len(self) < 4:
            return None
        (length,) = _UINT32.unpack_from(self._buf, self._pos)
        payload = length - 4
        if payload < min_payload or payload > max_payload:
            raise RemoteProtocolError("invalid length of startup packet")
        if len(self) < length:
            return None
        return self.take(length)


# --- parsed messages ----------------------------------------------------------------------




def typed_reader(raw: bytes, type_: bytes, what: str) -> Reader:
    """A reader over the payload of a whole typed message of type ``type_`` (checked)."""
    if len(raw) < 5 or raw[0] != type_[0]:
        raise RemoteProtocolError(f"not a {what} message")
    length = _UINT32.unpack_from(raw, 1)[0]
    if length + 1 != len(raw):
        raise RemoteProtocolError(f"{what} length does not match its frame")
    return Reader(raw, 5, what=what)


def remember_raw(obj: object, raw: bytes) -> None:
    # The frame a message was parsed from is reused by build() to forward it without
    # re-encoding. It is not a dataclass field, so dataclasses.replace() (or any other new
    # instance) drops it and build() encodes the new field values.
    object.__setattr__(obj, "_raw", raw)


def raw_of(obj: object) -> bytes | None:
    return obj.__dict__.get("_raw")
