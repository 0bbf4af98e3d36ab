"""PostgreSQL v3 protocol messages as frozen dataclasses, each with ``parse`` and ``build``.

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
(:func:`decode_client_text`), so a statement guard never sees text the engine would read
differently.
"""

from __future__ import annotations

import codecs
import struct
from dataclasses import dataclass, field
from functools import cached_property
from collections.abc import Callable
from typing import ClassVar, Self, Union

from dbkeep.errors import DbError, LocalProtocolError, RemoteProtocolError

from .wire import Reader, cstring, int32, typed_message, uint16, uint32, untyped_message

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


# --- client encodings ------------------------------------------------------------------------

# PostgreSQL encoding names ("Character Set Support") to Python codecs. Only encodings with a
# faithful Python codec are listed; anything else decodes to None (callers fail closed).
_PG_CODECS = {
    "utf8": "utf-8",
    "unicode": "utf-8",
    "sqlascii": "latin-1",  # the server does not interpret high bytes; keep them 1:1
    "latin1": "latin-1",
    "latin2": "iso8859-2",
    "latin3": "iso8859-3",
    "latin4": "iso8859-4",
    "latin5": "iso8859-9",
    "latin6": "iso8859-10",
    "latin7": "iso8859-13",
    "latin8": "iso8859-14",
    "latin9": "iso8859-15",
    "latin10": "iso8859-16",
    "iso88595": "iso8859-5",
    "iso88596": "iso8859-6",
    "iso88597": "iso8859-7",
    "iso88598": "iso8859-8",
    "win1250": "cp1250",
    "win1251": "cp1251",
    "win1252": "cp1252",
    "win1253": "cp1253",
    "win1254": "cp1254",
    "win1255": "cp1255",
    "win1256": "cp1256",
    "win1257": "cp1257",
    "win1258": "cp1258",
    "win866": "cp866",
    "win874": "cp874",
    "koi8r": "koi8-r",
    "koi8u": "koi8-u",
    "eucjp": "euc_jp",
    "euccn": "gb2312",
    "euckr": "euc_kr",
    "eucjis2004": "euc_jis_2004",
    "sjis": "cp932",
    "shiftjis2004": "shift_jis_2004",
    "big5": "cp950",
    "gbk": "gbk",
    "gb18030": "gb18030",
    "uhc": "cp949",
    "johab": "johab",
}


def python_codec(pg_encoding: str) -> str | None:
    """The Python codec for a PostgreSQL encoding name (aliases and case as the server
    accepts them, e.g. ``utf-8``, ``UTF8``), or None when there is no faithful one."""
    key = "".join(ch for ch in pg_encoding.lower() if ch.isalnum())
    name = _PG_CODECS.get(key)
    if name is None:
        return None
    codecs.lookup(name)
    return name


def decode_client_text(data: bytes, pg_encoding: str) -> str | None:
    """``data`` decoded in the session's client encoding, or None if that is impossible
    (unknown encoding, invalid bytes): callers that guard statements must then refuse."""
    codec = python_codec(pg_encoding)
    if codec is None:
        return None
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        return None


# --- helpers ---------------------------------------------------------------------------------


_UINT32 = struct.Struct("!I")


def _typed(raw: bytes, type_: bytes, what: str) -> Reader:
    if len(raw) < 5 or raw[0] != type_[0]:
        raise RemoteProtocolError(f"not a {what} message")
    length = _UINT32.unpack_from(raw, 1)[0]
    if length + 1 != len(raw):
        raise RemoteProtocolError(f"{what} length does not match its frame")
    return Reader(raw, 5, what=what)


def _remember_raw(obj: object, raw: bytes) -> None:
    # The frame a message was parsed from is reused by build() to forward it without
    # re-encoding. It is not a dataclass field, so dataclasses.replace() (or any other new
    # instance) drops it and build() encodes the new field values.
    object.__setattr__(obj, "_raw", raw)


def _raw_of(obj: object) -> bytes | None:
    return obj.__dict__.get("_raw")


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
    reader = _typed(raw, b"R", "authentication request")
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
        reader = _typed(raw, b"p", "password message")
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
        reader = _typed(raw, b"p", "SASL initial response")
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
        return cls(_typed(raw, b"p", "SASL response").rest())


# --- start-up and status messages from the backend -------------------------------------------


@dataclass(frozen=True)
class ParameterStatus:
    name: str
    value: str

    def build(self) -> bytes:
        return _raw_of(self) or typed_message(b"S", cstring(self.name), cstring(self.value))

    @classmethod
    def parse(cls, raw: bytes) -> ParameterStatus:
        reader = _typed(raw, b"S", "parameter status")
        name, value = reader.text(), reader.text()
        reader.finish()
        message = cls(name, value)
        _remember_raw(message, raw)  # relayed as the engine sent it
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
        reader = _typed(raw, b"K", "backend key data")
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
        reader = _typed(raw, b"Z", "ready for query")
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
        reader = _typed(raw, b"v", "protocol negotiation")
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
        raw = _raw_of(self)
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
        reader = _typed(raw, cls.TYPE, cls.__name__)
        fields: list[tuple[str, str]] = []
        while True:
            code = reader.byte()
            if code == 0:
                break
            fields.append((chr(code), reader.text()))
        reader.finish()
        message = cls(tuple(fields))
        _remember_raw(message, raw)
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
        return _raw_of(self) or typed_message(b"Q", cstring(self.query))

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
        raw = _raw_of(self)
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
        reader = _typed(raw, b"P", "parse")
        name = reader.cstring()
        query = reader.cstring()
        count = reader.uint16()
        if count * 4 != reader.remaining:
            raise RemoteProtocolError("invalid parameter type count in Parse")
        types = tuple(reader.uint32() for _ in range(count))
        message = cls(name, query, types, encoding)
        _remember_raw(message, raw)
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
        return _raw_of(self) or typed_message(b"F", uint32(self.function_oid), self.arguments)

    @classmethod
    def parse(cls, raw: bytes) -> FunctionCall:
        reader = _typed(raw, b"F", "function call")
        message = cls(reader.uint32(), reader.rest())
        _remember_raw(message, raw)
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
    "python_codec",
    "decode_client_text",
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
    "Query",
    "Parse",
    "FunctionCall",
    "Sync",
    "Terminate",
    "FrontendMessage",
    "BackendData",
    "ConnectionClosed",
    "BACKEND_STARTUP_PARSERS",
    "BackendStartupMessage",
    "error_response_v2",
]
