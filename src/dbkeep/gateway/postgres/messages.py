"""PostgreSQL v3 protocol messages of the start-up and login as frozen dataclasses, each with
``parse`` and ``build`` (the query-phase messages are in :mod:`.events`).

Theory of operation (PostgreSQL documentation, chapter "Frontend/Backend Protocol"):

* "Message Formats" gives the layout of every message modelled here; the class names are the
  documentation's. ``parse`` takes a whole framed message (type byte and length word
  included, as :class:`~dbkeep.gateway.postgres.wire.MessageBuffer` hands them out) and
  fails closed with :class:`~dbkeep.errors.RemoteProtocolError` on anything malformed,
  truncated or followed by stray bytes; ``build`` returns the bytes to send.
* "Message Flow", "Start-up": the untyped start-up packets (StartupMessage, SSLRequest,
  GSSENCRequest, CancelRequest) are told apart by the code in their first ``Int32``
  (:func:`parse_startup_packet`). A connection whose first byte is 0x16 is a TLS ClientHello
  sent without SSLRequest ("direct SSL", PostgreSQL 17, "SSL Session Encryption"):
  :class:`DirectTlsHello` carries the bytes so the driver can hand them to TLS.
* "Error and Notice Message Fields": ErrorResponse/NoticeResponse are lists of
  ``(code, value)`` fields; S (localized severity), V (severity), C (SQLSTATE), M (message),
  D (detail), H (hint), P (position) and the rest are kept in order so that a relayed message
  is rebuilt byte for byte.
* Protocol 3.2 (PostgreSQL 18) makes the cancel secret key variable-length (up to 256
  bytes); BackendKeyData and CancelRequest carry it as ``bytes`` so both 3.0 and 3.2 parse.

Text fields are ``str`` decoded as UTF-8 with ``surrogateescape`` (byte-exact round trips);
SQL text is kept as ``bytes`` and decoded on demand in the session's ``client_encoding``
(:func:`~.encodings.decode_client_text`; the query-phase events are in :mod:`.events`), so a statement guard never sees text the engine would read
differently.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from collections.abc import Callable
from typing import ClassVar, Self, Union

from dbkeep.errors import DbError, LocalProtocolError, RemoteProtocolError

from .wire import Reader, cstring, int32, raw_of, remember_raw, typed_message, typed_reader, untyped_message

# --- request codes and constants -------------------------------------------------------------

SSL_REQUEST_CODE = 80877103  # 1234 << 16 | 5679
GSSENC_REQUEST_CODE = 80877104  # 1234 << 16 | 5680
CANCEL_REQUEST_CODE = 80877102  # 1234 << 16 | 5678
PROTOCOL_3_0 = 3 << 16
TLS_HANDSHAKE_BYTE = 0x16  # TLS record type "handshake": a ClientHello starts with it
ALPN_PROTOCOL = "postgresql"
MAX_CANCEL_KEY_LENGTH = 256  # protocol 3.2 ("Message Formats", BackendKeyData)

_AUTH_OK = 0
_AUTH_CLEARTEXT = 3
_AUTH_MD5 = 5
_AUTH_SASL = 10
_AUTH_SASL_CONTINUE = 11
_AUTH_SASL_FINAL = 12
_AUTH_NAMES = {2: "KerberosV5", 6: "SCMCredential", 7: "GSS", 8: "GSSContinue", 9: "SSPI"}


def protocol_version(major: int, minor: int) -> int:
    return (major << 16) | minor


# --- start-up packets (untyped) --------------------------------------------------------------


@dataclass(frozen=True)
class SSLRequest:
    def build(self) -> bytes:
        return untyped_message(int32(SSL_REQUEST_CODE))


@dataclass(frozen=True)
class GSSENCRequest:
    def build(self) -> bytes:
        return untyped_message(int32(GSSENC_REQUEST_CODE))


@dataclass(frozen=True)
class CancelRequest:
    """CancelRequest: the target backend's process id and its secret key (4 bytes in
    protocol 3.0, up to 256 in 3.2)."""

    process_id: int
    secret_key: bytes

    def __post_init__(self) -> None:
        if not 4 <= len(self.secret_key) <= MAX_CANCEL_KEY_LENGTH:
            raise LocalProtocolError("a cancel secret key is 4 to 256 bytes")

    def build(self) -> bytes:
        return untyped_message(int32(CANCEL_REQUEST_CODE), int32(self.process_id), self.secret_key)

    def __repr__(self) -> str:  # the secret stays out of logs
        return f"CancelRequest(process_id={self.process_id}, secret_key=<{len(self.secret_key)} bytes>)"


@dataclass(frozen=True)
class StartupMessage:
    """StartupMessage: protocol version and the ``(name, value)`` parameters in order.

    Names starting with ``_pq_.`` are protocol options, not run-time parameters ("Message
    Flow", "Protocol versions"). Duplicated names are refused when parsing: the server keeps
    the last one while a check on the first would be fooled.
    """

    parameters: tuple[tuple[str, str], ...]
    protocol: int = PROTOCOL_3_0

    @property
    def major(self) -> int:
        return self.protocol >> 16

    @property
    def minor(self) -> int:
        return self.protocol & 0xFFFF

    @cached_property
    def params(self) -> dict[str, str]:
        return dict(self.parameters)

    @property
    def user(self) -> str:
        return self.params.get("user", "")

    @property
    def database(self) -> str:
        """The database, defaulting to the user name as the server does."""
        return self.params.get("database") or self.user

    @property
    def options(self) -> str | None:
        return self.params.get("options")

    @property
    def application_name(self) -> str | None:
        return self.params.get("application_name")

    @property
    def replication(self) -> str | None:
        return self.params.get("replication")

    @property
    def protocol_options(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.parameters if name.startswith("_pq_."))

    def for_engine(self) -> StartupMessage:
        """This request as protocol 3.0 without ``_pq_.`` options: what the gateway, which
        negotiates the protocol with the client itself, sends the engine."""
        params = tuple((n, v) for n, v in self.parameters if not n.startswith("_pq_."))
        if params == self.parameters and self.protocol == PROTOCOL_3_0:
            return self
        return StartupMessage(params, PROTOCOL_3_0)

    def build(self) -> bytes:
        parts = [int32(self.protocol)]
        for name, value in self.parameters:
            if not name:
                raise LocalProtocolError("a startup parameter name cannot be empty")
            parts.append(cstring(name))
            parts.append(cstring(value))
        parts.append(b"\x00")
        return untyped_message(*parts)

    @classmethod
    def parse_payload(cls, packet: bytes, protocol: int) -> StartupMessage:
        """Parameters of a start-up packet (length word and version already checked).

        Layout as the server checks it (``ProcessStartupPacket``): name/value strings, then
        a single NUL exactly at the end.
        """
        reader = Reader(packet, 8, what="startup packet")
        params: list[tuple[str, str]] = []
        seen: set[str] = set()
        layout = "invalid startup packet layout: expected terminator as last byte"
        while True:
            try:
                name = reader.cstring()
                if not name:
                    break
                value = reader.cstring()
            except RemoteProtocolError:
                raise RemoteProtocolError(layout) from None
            text = name.decode("utf-8", "surrogateescape")
            if text in seen:
                raise RemoteProtocolError(f'invalid startup packet layout: parameter "{text}" appears twice')
            seen.add(text)
            params.append((text, value.decode("utf-8", "surrogateescape")))
        if reader.remaining:
            raise RemoteProtocolError(layout)
        return cls(tuple(params), protocol)


@dataclass(frozen=True)
class DirectTlsHello:
    """The connection opened with a TLS record instead of a start-up packet ("direct SSL").

    ``data`` is everything received so far (the start of the ClientHello); the driver feeds
    it to its TLS object and must require ALPN ``postgresql``.
    """

    data: bytes

    def __repr__(self) -> str:
        return f"DirectTlsHello(<{len(self.data)} bytes>)"


StartupPacket = Union[SSLRequest, GSSENCRequest, CancelRequest, StartupMessage]


def parse_startup_packet(packet: bytes) -> StartupPacket:
    """Classify a whole start-up packet (length word included) by its first ``Int32``.

    Version checks that answer with an ErrorResponse (unsupported protocol) are the
    connection's business; here only the layout is checked.
    """
    reader = Reader(packet, 4, what="startup packet")
    code = reader.uint32()
    if code == SSL_REQUEST_CODE or code == GSSENC_REQUEST_CODE:
        reader.finish()
        return SSLRequest() if code == SSL_REQUEST_CODE else GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        pid = reader.int32()
        if not 4 <= reader.remaining <= MAX_CANCEL_KEY_LENGTH:
            raise RemoteProtocolError("invalid length of startup packet")
        return CancelRequest(pid, reader.rest())
    return StartupMessage.parse_payload(packet, code)


@dataclass(frozen=True)
class SSLResponse:
    """The single unframed byte answering SSLRequest: ``S`` (TLS follows) or ``N``."""

    accepted: bool

    def build(self) -> bytes:
        return b"S" if self.accepted else b"N"


@dataclass(frozen=True)
class GSSENCResponse:
    """The single unframed byte answering GSSENCRequest: ``G`` or ``N``."""

    accepted: bool = False

    def build(self) -> bytes:
        return b"G" if self.accepted else b"N"


# --- authentication (backend 'R', frontend 'p') ----------------------------------------------


@dataclass(frozen=True)
class AuthenticationOk:
    def build(self) -> bytes:
        return typed_message(b"R", int32(_AUTH_OK))


@dataclass(frozen=True)
class AuthenticationCleartextPassword:
    def build(self) -> bytes:
        return typed_message(b"R", int32(_AUTH_CLEARTEXT))


@dataclass(frozen=True)
class AuthenticationMD5Password:
    salt: bytes

    def __post_init__(self) -> None:
        if len(self.salt) != 4:
            raise LocalProtocolError("an MD5 salt is 4 bytes")

    def build(self) -> bytes:
        return typed_message(b"R", int32(_AUTH_MD5), self.salt)


@dataclass(frozen=True)
class AuthenticationSASL:
    mechanisms: tuple[str, ...]

    def build(self) -> bytes:
        if not self.mechanisms:
            raise LocalProtocolError("AuthenticationSASL needs at least one mechanism")
        return typed_message(b"R", int32(_AUTH_SASL), *(cstring(m) for m in self.mechanisms), b"\x00")


@dataclass(frozen=True)
class AuthenticationSASLContinue:
    data: bytes

    def build(self) -> bytes:
        return typed_message(b"R", int32(_AUTH_SASL_CONTINUE), self.data)


@dataclass(frozen=True)
class AuthenticationSASLFinal:
    data: bytes

    def build(self) -> bytes:
        return typed_message(b"R", int32(_AUTH_SASL_FINAL), self.data)


AuthenticationRequest = Union[
    AuthenticationOk,
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
]


def parse_authentication(raw: bytes) -> AuthenticationRequest:
    reader = typed_reader(raw, b"R", "authentication request")
    code = reader.int32()
    if code == _AUTH_OK:
        reader.finish()
        return AuthenticationOk()
    if code == _AUTH_CLEARTEXT:
        reader.finish()
        return AuthenticationCleartextPassword()
    if code == _AUTH_MD5:
        salt = reader.take(4)
        reader.finish()
        return AuthenticationMD5Password(salt)
    if code == _AUTH_SASL:
        mechanisms: list[str] = []
        while True:
            name = reader.cstring()
            if not name:
                break
            mechanisms.append(name.decode("utf-8", "surrogateescape"))
        reader.finish()
        if not mechanisms:
            raise RemoteProtocolError("AuthenticationSASL without mechanisms")
        return AuthenticationSASL(tuple(mechanisms))
    if code == _AUTH_SASL_CONTINUE:
        return AuthenticationSASLContinue(reader.rest())
    if code == _AUTH_SASL_FINAL:
        return AuthenticationSASLFinal(reader.rest())
    method = _AUTH_NAMES.get(code, f"code {code}")
    raise RemoteProtocolError(f"unsupported authentication request: {method}")


@dataclass(frozen=True)
class PasswordMessage:
    """PasswordMessage ('p'): a cleartext password or ``md5`` + 32 hex digits."""

    password: bytes

    def build(self) -> bytes:
        return typed_message(b"p", cstring(self.password))

    @classmethod
    def parse(cls, raw: bytes) -> PasswordMessage:
        reader = typed_reader(raw, b"p", "password message")
        password = reader.cstring()
        reader.finish()
        return cls(password)

    def __repr__(self) -> str:
        return f"PasswordMessage(<{len(self.password)} bytes>)"


@dataclass(frozen=True)
class SASLInitialResponse:
    """SASLInitialResponse ('p'): mechanism and the initial client response (None = absent,
    sent as length -1)."""

    mechanism: str
    data: bytes | None

    def build(self) -> bytes:
        if self.data is None:
            return typed_message(b"p", cstring(self.mechanism), int32(-1))
        return typed_message(b"p", cstring(self.mechanism), int32(len(self.data)), self.data)

    @classmethod
    def parse(cls, raw: bytes) -> SASLInitialResponse:
        reader = typed_reader(raw, b"p", "SASL initial response")
        mechanism = reader.text()
        length = reader.int32()
        if length == -1:
            data = None
        elif length < 0:
            raise RemoteProtocolError("invalid SASL initial response length")
        else:
            data = reader.take(length)
        reader.finish()
        return cls(mechanism, data)


@dataclass(frozen=True)
class SASLResponse:
    data: bytes

    def build(self) -> bytes:
        return typed_message(b"p", self.data)

    @classmethod
    def parse(cls, raw: bytes) -> SASLResponse:
        return cls(typed_reader(raw, b"p", "SASL response").rest())


# --- start-up and status messages from the backend -------------------------------------------


@dataclass(frozen=True)
class ParameterStatus:
    name: str
    value: str

    def build(self) -> bytes:
        return raw_of(self) or typed_message(b"S", cstring(self.name), cstring(self.value))

    @classmethod
    def parse(cls, raw: bytes) -> ParameterStatus:
        reader = typed_reader(raw, b"S", "parameter status")
        name, value = reader.text(), reader.text()
        reader.finish()
        message = cls(name, value)
        remember_raw(message, raw)  # relayed as the engine sent it
        return message


@dataclass(frozen=True)
class BackendKeyData:
    """BackendKeyData ('K'): process id and secret key a CancelRequest must quote."""

    process_id: int
    secret_key: bytes

    def __post_init__(self) -> None:
        if not 4 <= len(self.secret_key) <= MAX_CANCEL_KEY_LENGTH:
            raise LocalProtocolError("a cancel secret key is 4 to 256 bytes")

    def build(self) -> bytes:
        return typed_message(b"K", int32(self.process_id), self.secret_key)

    @classmethod
    def parse(cls, raw: bytes) -> BackendKeyData:
        reader = typed_reader(raw, b"K", "backend key data")
        pid = reader.int32()
        if not 4 <= reader.remaining <= MAX_CANCEL_KEY_LENGTH:
            raise RemoteProtocolError("invalid secret key length in BackendKeyData")
        return cls(pid, reader.rest())

    def __repr__(self) -> str:
        return f"BackendKeyData(process_id={self.process_id}, secret_key=<{len(self.secret_key)} bytes>)"


@dataclass(frozen=True)
class ReadyForQuery:
    """ReadyForQuery ('Z'): transaction status ``I`` (idle), ``T`` (in a transaction block)
    or ``E`` (in a failed transaction block)."""

    status: str = "I"

    def __post_init__(self) -> None:
        if self.status not in ("I", "T", "E"):
            raise LocalProtocolError(f"invalid transaction status {self.status!r}")

    def build(self) -> bytes:
        return typed_message(b"Z", self.status.encode("ascii"))

    @classmethod
    def parse(cls, raw: bytes) -> ReadyForQuery:
        reader = typed_reader(raw, b"Z", "ready for query")
        status = chr(reader.byte())
        reader.finish()
        if status not in ("I", "T", "E"):
            raise RemoteProtocolError(f"invalid transaction status {status!r}")
        return cls(status)


@dataclass(frozen=True)
class NegotiateProtocolVersion:
    """NegotiateProtocolVersion ('v'): the newest protocol the server speaks for the major
    version asked (the server sends the whole version number, ``3 << 16 | minor``) and the
    ``_pq_.`` options it did not recognise."""

    newest_version: int
    unrecognized_options: tuple[str, ...] = ()

    @property
    def newest_minor(self) -> int:
        return self.newest_version & 0xFFFF

    def build(self) -> bytes:
        return typed_message(
            b"v",
            int32(self.newest_version),
            int32(len(self.unrecognized_options)),
            *(cstring(o) for o in self.unrecognized_options),
        )

    @classmethod
    def parse(cls, raw: bytes) -> NegotiateProtocolVersion:
        reader = typed_reader(raw, b"v", "protocol negotiation")
        version = reader.int32()
        count = reader.int32()
        if count < 0 or count > reader.remaining:  # each option needs at least its NUL
            raise RemoteProtocolError("invalid option count in NegotiateProtocolVersion")
        options = tuple(reader.text() for _ in range(count))
        reader.finish()
        return cls(version, options)


# --- ErrorResponse / NoticeResponse ----------------------------------------------------------


@dataclass(frozen=True)
class _Fields:
    """A list of ``(code, value)`` fields ("Error and Notice Message Fields")."""

    TYPE: ClassVar[bytes] = b""
    fields: tuple[tuple[str, str], ...]

    def __post_init__(self) -> None:
        for code, _ in self.fields:
            if len(code) != 1 or code == "\x00":
                raise LocalProtocolError(f"invalid error field code {code!r}")

    @classmethod
    def create(
        cls,
        severity: str,
        sqlstate: str,
        message: str,
        *,
        detail: str | None = None,
        hint: str | None = None,
    ) -> Self:
        """S and V (the server sends both since 9.6), C, M, then D and H when given."""
        if len(sqlstate) != 5 or not sqlstate.isascii() or not sqlstate.isalnum():
            raise LocalProtocolError(f"invalid SQLSTATE {sqlstate!r}")
        fields = [("S", severity), ("V", severity), ("C", sqlstate), ("M", message)]
        if detail is not None:
            fields.append(("D", detail))
        if hint is not None:
            fields.append(("H", hint))
        return cls(tuple(fields))

    def get(self, code: str) -> str | None:
        for c, value in self.fields:
            if c == code:
                return value
        return None

    @property
    def severity(self) -> str:
        """The non-localized severity (V), else S."""
        return self.get("V") or self.get("S") or ""

    @property
    def sqlstate(self) -> str:
        return self.get("C") or ""

    @property
    def message(self) -> str:
        return self.get("M") or ""

    @property
    def detail(self) -> str | None:
        return self.get("D")

    @property
    def hint(self) -> str | None:
        return self.get("H")

    @property
    def fatal(self) -> bool:
        return self.severity in ("FATAL", "PANIC")

    def build(self) -> bytes:
        raw = raw_of(self)
        if raw is not None:
            return raw  # relayed as the engine sent it
        parts: list[bytes] = []
        for code, value in self.fields:
            parts.append(code.encode("ascii", "surrogateescape"))
            parts.append(cstring(value))
        parts.append(b"\x00")
        return typed_message(self.TYPE, *parts)

    @classmethod
    def parse(cls, raw: bytes) -> Self:
        reader = typed_reader(raw, cls.TYPE, cls.__name__)
        fields: list[tuple[str, str]] = []
        while True:
            code = reader.byte()
            if code == 0:
                break
            fields.append((chr(code), reader.text()))
        reader.finish()
        message = cls(tuple(fields))
        remember_raw(message, raw)
        return message


@dataclass(frozen=True)
class ErrorResponse(_Fields):
    TYPE: ClassVar[bytes] = b"E"

    @classmethod
    def from_db_error(cls, error: DbError) -> ErrorResponse:
        """The ErrorResponse for a :class:`DbError` (its public fields only)."""
        severity = "FATAL" if error.fatal and error.severity == "ERROR" else error.severity
        return cls.create(severity, error.sqlstate, error.message)


@dataclass(frozen=True)
class NoticeResponse(_Fields):
    TYPE: ClassVar[bytes] = b"N"


BackendStartupMessage = Union[
    AuthenticationRequest, ParameterStatus, BackendKeyData, ReadyForQuery, ErrorResponse, NoticeResponse,
    NegotiateProtocolVersion,
]

BACKEND_STARTUP_PARSERS: dict[int, Callable[[bytes], BackendStartupMessage]] = {
    ord("R"): parse_authentication,
    ord("S"): ParameterStatus.parse,
    ord("K"): BackendKeyData.parse,
    ord("Z"): ReadyForQuery.parse,
    ord("E"): ErrorResponse.parse,
    ord("N"): NoticeResponse.parse,
    ord("v"): NegotiateProtocolVersion.parse,
}


def error_response_v2(message: str) -> bytes:
    """An error in the protocol 2.0 format ('E', text, NUL): how the server answers a client
    that asked for protocol 2 (or older) before closing."""
    return b"E" + cstring("FATAL:  " + message + "\n")


__all__ = [
    "SSL_REQUEST_CODE",
    "GSSENC_REQUEST_CODE",
    "CANCEL_REQUEST_CODE",
    "PROTOCOL_3_0",
    "ALPN_PROTOCOL",
    "TLS_HANDSHAKE_BYTE",
    "protocol_version",
    "SSLRequest",
    "GSSENCRequest",
    "CancelRequest",
    "StartupMessage",
    "DirectTlsHello",
    "StartupPacket",
    "parse_startup_packet",
    "SSLResponse",
    "GSSENCResponse",
    "AuthenticationOk",
    "AuthenticationCleartextPassword",
    "AuthenticationMD5Password",
    "AuthenticationSASL",
    "AuthenticationSASLContinue",
    "AuthenticationSASLFinal",
    "AuthenticationRequest",
    "parse_authentication",
    "PasswordMessage",
    "SASLInitialResponse",
    "SASLResponse",
    "ParameterStatus",
    "BackendKeyData",
    "ReadyForQuery",
    "NegotiateProtocolVersion",
    "ErrorResponse",
    "NoticeResponse",
    "BACKEND_STARTUP_PARSERS",
    "BackendStartupMessage",
    "error_response_v2",
]
