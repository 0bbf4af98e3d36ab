"""The query-phase events of the sans-I/O PostgreSQL machines (:mod:`.client`, :mod:`.engine`).

Frozen dataclasses named after the protocol's messages ("Message Formats"): what the client
sends in the query phase (Query, Parse, FunctionCall, Sync, Terminate, and every other message
as :class:`FrontendMessage`), the engine's output as :class:`BackendData` runs, the end of a
stream, and a guard's :class:`Refusal`. The messages of the start-up and the login are in
:mod:`.messages`; the theory of operation is the package's (``gateway/postgres/__init__.py``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import cached_property
from typing import Union

from dbkeep.errors import LocalProtocolError, RemoteProtocolError

from .encodings import decode_client_text, python_codec
from .messages import (
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    BackendKeyData,
    CancelRequest,
    DirectTlsHello,
    ErrorResponse,
    GSSENCRequest,
    NegotiateProtocolVersion,
    NoticeResponse,
    ParameterStatus,
    PasswordMessage,
    ReadyForQuery,
    SASLInitialResponse,
    SASLResponse,
    SSLRequest,
    SSLResponse,
    StartupMessage,
)
from .wire import cstring, raw_of, remember_raw, typed_message, typed_reader, uint16, uint32

_UINT32 = struct.Struct("!I")

__all__ = [
    "REFUSAL_TOKEN_PREFIX",
    "BackendData",
    "ClientEvent",
    "ConnectionClosed",
    "EngineEvent",
    "FrontendMessage",
    "FunctionCall",
    "Parse",
    "Query",
    "Refusal",
    "Sync",
    "Terminate",
    "kind_of",
]


# --- query-phase frontend messages -----------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """Query ('Q'): a simple-protocol query string.

    ``query`` holds the bytes as sent; ``sql`` is that text decoded in ``encoding`` (the
    session's client encoding when parsed by a connection), or None when it cannot be
    decoded faithfully — a guard must then refuse.
    """

    query: bytes
    encoding: str = "UTF8"

    @classmethod
    def from_sql(cls, sql: str, encoding: str = "UTF8") -> Query:
        codec = python_codec(encoding)
        if codec is None:
            raise LocalProtocolError(f"unsupported client encoding {encoding!r}")
        return cls(sql.encode(codec), encoding)

    @cached_property
    def sql(self) -> str | None:
        return decode_client_text(self.query, self.encoding)

    def build(self) -> bytes:
        return raw_of(self) or typed_message(b"Q", cstring(self.query))

    @classmethod
    def parse(cls, raw: bytes, encoding: str = "UTF8") -> Query:
        # hot path: the checks of _typed/Reader, inlined
        end = len(raw) - 1
        if end < 5 or raw[0] != 0x51 or _UINT32.unpack_from(raw, 1)[0] != end or raw.find(b"\x00", 5) != end:
            raise RemoteProtocolError("malformed query message")
        message = cls(raw[5:end], encoding)
        object.__setattr__(message, "_raw", raw)
        return message

    def __repr__(self) -> str:
        return f"Query({self.query[:200]!r}{'...' if len(self.query) > 200 else ''})"


@dataclass(frozen=True)
class Parse:
    """Parse ('P'): prepared-statement name (empty = unnamed), query string, parameter
    type OIDs (0 = unspecified)."""

    name: bytes
    query: bytes
    param_types: tuple[int, ...] = ()
    encoding: str = "UTF8"

    @cached_property
    def sql(self) -> str | None:
        return decode_client_text(self.query, self.encoding)

    def build(self) -> bytes:
        raw = raw_of(self)
        if raw is not None:
            return raw
        return typed_message(
            b"P",
            cstring(self.name),
            cstring(self.query),
            uint16(len(self.param_types)),
            *(uint32(oid) for oid in self.param_types),
        )

    @classmethod
    def parse(cls, raw: bytes, encoding: str = "UTF8") -> Parse:
        reader = typed_reader(raw, b"P", "parse")
        name = reader.cstring()
        query = reader.cstring()
        count = reader.uint16()
        if count * 4 != reader.remaining:
            raise RemoteProtocolError("invalid parameter type count in Parse")
        types = tuple(reader.uint32() for _ in range(count))
        message = cls(name, query, types, encoding)
        remember_raw(message, raw)
        return message

    def __repr__(self) -> str:
        return f"Parse(name={self.name!r}, query={self.query[:200]!r}, param_types={self.param_types})"


@dataclass(frozen=True)
class FunctionCall:
    """FunctionCall ('F'): the fast-path call of a function by OID. ``arguments`` is the
    rest of the message (formats, values, result format), forwarded as is."""

    function_oid: int
    arguments: bytes = field(repr=False, default=b"\x00\x00\x00\x00\x00\x00")

    def build(self) -> bytes:
        return raw_of(self) or typed_message(b"F", uint32(self.function_oid), self.arguments)

    @classmethod
    def parse(cls, raw: bytes) -> FunctionCall:
        reader = typed_reader(raw, b"F", "function call")
        message = cls(reader.uint32(), reader.rest())
        remember_raw(message, raw)
        return message


@dataclass(frozen=True)
class Sync:
    def build(self) -> bytes:
        return b"S\x00\x00\x00\x04"


@dataclass(frozen=True)
class Terminate:
    def build(self) -> bytes:
        return b"X\x00\x00\x00\x04"


@dataclass(frozen=True, slots=True)
class FrontendMessage:
    """Any other query-phase frontend message (Bind, Execute, Describe, Close, Flush,
    CopyData, CopyDone, CopyFail), forwarded as received."""

    raw: bytes = field(repr=False)

    @property
    def type(self) -> str:
        return chr(self.raw[0])

    def build(self) -> bytes:
        return self.raw

    def __repr__(self) -> str:
        return f"FrontendMessage({self.type!r}, <{len(self.raw)} bytes>)"


@dataclass(frozen=True)
class BackendData:
    """Backend bytes in the query phase, relayed without parsing.

    ``data`` is a run of the engine's stream (it may end inside a message). When the engine
    side tracks message boundaries, ``parameter_changes`` lists the ParameterStatus
    messages inside this run (e.g. a new ``client_encoding``).
    """

    data: bytes = field(repr=False)
    parameter_changes: tuple[ParameterStatus, ...] = ()

    def build(self) -> bytes:
        return self.data

    def __repr__(self) -> str:
        return f"BackendData(<{len(self.data)} bytes>, parameter_changes={self.parameter_changes!r})"


@dataclass(frozen=True)
class ConnectionClosed:
    """The peer closed the connection at a message boundary (or the protocol is over)."""


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


def kind_of(event: object) -> str:
    """The name an event has in the transition tables (:mod:`.states`)."""
    if isinstance(event, SSLResponse):
        return "SSLResponse(S)" if event.accepted else "SSLResponse(N)"
    if isinstance(event, Refusal):
        return "Refusal"
    return type(event).__name__
