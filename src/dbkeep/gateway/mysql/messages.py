"""MySQL/MariaDB connection-phase messages and command constants (sans-I/O).

Theory of operation
-------------------
Each class is a frozen dataclass named after the message in the protocol documentation, with
``parse(payload, ...)`` (payload = one logical packet without its header) and ``build(...) ->
bytes`` (payload only; :mod:`.client` and :mod:`.engine` frame it with the right sequence id). Sources:

- MariaDB KB "Connection" (Initial Handshake Packet, SSLRequest, Handshake Response Packet),
  "OK_Packet", "ERR_Packet", "COM_CHANGE_USER", "Authentication Switch Request",
  "LOCAL INFILE Packet"; MySQL dev docs "Protocol::HandshakeV10",
  "Protocol::HandshakeResponse41", "Protocol::SSLRequest", "Protocol::AuthSwitchRequest",
  "Protocol::AuthMoreData", "page_protocol_com_change_user".
- Byte vectors captured from MariaDB 10.11 and from pymysql, mysql-connector-python and the
  ``mariadb`` CLI (tests/protocol/test_mysql_messages.py).

Layouts depend on capability flags. The 64-bit :class:`Capability` holds MySQL's 32 bits and,
above them, MariaDB's extended capabilities, which travel in the last 4 of the 23 "reserved"
bytes of the greeting and of the client's response when bit 0 (``CLIENT_MYSQL``, historically
``CLIENT_LONG_PASSWORD``) is clear: MariaDB servers clear it to announce the extension and
MariaDB clients clear it to use it; a client that sets it (pymysql, Connector/Python) is a
MySQL client and its extended bytes are ignored, as the server ignores them.

Facts checked against MariaDB 10.11 (see the tests):
- an ERR sent before the client's handshake response is known to speak protocol 4.1 has no
  ``#`` SQL-state marker (the "Host ... is blocked" greeting ERR, "Bad handshake");
- after an SSLRequest the server keeps the SSLRequest's capabilities and does not re-read
  them from the handshake response that follows over TLS, so the gateway requires the two to
  agree (:meth:`HandshakeResponse41.matches`);
- a user name wrapped in single quotes (``'alice'``) logs in as ``alice`` at connect time but
  not in COM_CHANGE_USER (:func:`.auth.effective_user_name`);
- every engine auth packet after the first is wrapped in ``0x01`` (AuthMoreData), so an auth
  packet starting with anything but 0x00/0x01/0xFE/0xFF is a protocol error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dbkeep.errors import DbError, LocalProtocolError, RemoteProtocolError

from . import charsets
from .codes import GENERAL_ERROR
from .flags import (
    AUTH_MORE_DATA_HEADER,
    AUTH_SWITCH_HEADER,
    EOF_HEADER,
    ERR_HEADER,
    LOCAL_INFILE_HEADER,
    OK_HEADER,
    UNSUPPORTED_CAPABILITIES,
    Capability,
    CommandCode,
    ServerStatus,
)
from .wire import Buffer, Reader, int_bytes, lenenc_bytes, lenenc_int, cstring

__all__ = [
    "UNSUPPORTED_CAPABILITIES",
    "Attributes",
    "AuthMoreData",
    "AuthSwitchRequest",
    "Capability",
    "ComChangeUser",
    "CommandCode",
    "ErrPacket",
    "HandshakeResponse41",
    "InitialHandshake",
    "LocalInfileRequest",
    "OkPacket",
    "SSLRequest",
    "ServerStatus",
    "client_greeting",
]



# One connection attribute list: (key, value) pairs in the order sent, duplicates kept.
Attributes = tuple[tuple[bytes, bytes], ...]


def _ascii(data: bytes) -> str:
    # protocol identifiers (plugin names, versions): byte-preserving
    return data.decode("latin-1")


def _unascii(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{text!r} cannot be sent as a protocol identifier") from None


def _split_caps(caps: int) -> tuple[int, int]:
    return caps & 0xFFFFFFFF, (caps >> 32) & 0xFFFFFFFF


def _read_attributes(r: Reader) -> Attributes:
    total = r.lenenc_int()
    if total > r.remaining:
        raise RemoteProtocolError("connection attributes longer than the packet")
    block = Reader(r.take(total), "connection attributes")
    pairs: list[tuple[bytes, bytes]] = []
    while not block.at_end():
        key = block.lenenc_bytes()
        value = block.lenenc_bytes()
        pairs.append((key, value))
    return tuple(pairs)


def _write_attributes(attrs: Attributes) -> bytes:
    block = b"".join(lenenc_bytes(k) + lenenc_bytes(v) for k, v in attrs)
    return lenenc_bytes(block)


# --- greeting --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InitialHandshake:
    """Protocol::HandshakeV10, the server's greeting.

    ``auth_plugin_data`` is the whole scramble (both parts, without the trailing NUL that
    servers append to the second part); ``capabilities`` includes MariaDB's extended ones.
    """

    server_version: str
    connection_id: int
    auth_plugin_data: bytes
    capabilities: Capability
    charset: int
    status_flags: int
    auth_plugin_name: str | None
    protocol_version: int = 10

    @classmethod
    def parse(cls, payload: Buffer) -> InitialHandshake:
        r = Reader(payload, "initial handshake")
        version = r.int1()
        if version != 10:
            raise RemoteProtocolError(f"unsupported protocol version {version}")
        server_version = _ascii(r.cstring())
        connection_id = r.int4()
        part1 = r.take(8)
        r.skip(1)  # filler
        caps_low = r.int2()
        charset = r.int1()
        status = r.int2()
        caps = caps_low | r.int2() << 16
        data_len = r.int1()
        r.skip(6)
        ext = r.int4()
        if not caps & Capability.CLIENT_MYSQL:
            caps |= ext << 32
        part2 = b""
        if caps & Capability.CLIENT_SECURE_CONNECTION:
            part2 = r.take(max(13, data_len - 8))
            if part2.endswith(b"\x00"):
                part2 = part2[:-1]
        plugin = None
        if caps & Capability.CLIENT_PLUGIN_AUTH:
            plugin = _ascii(r.cstring())
        r.finish()
        return cls(
            server_version=server_version,
            connection_id=connection_id,
            auth_plugin_data=part1 + part2,
            capabilities=Capability(caps),
            charset=charset,
            status_flags=status,
            auth_plugin_name=plugin,
            protocol_version=version,
        )

    def build(self) -> bytes:
        caps = int(self.capabilities)
        low, ext = _split_caps(caps)
        if caps & Capability.CLIENT_MYSQL:
            ext = 0
        data = self.auth_plugin_data
        if len(data) < 8:
            raise LocalProtocolError("auth plugin data needs at least 8 bytes")
        part2 = data[8:] + b"\x00"
        if len(part2) < 13:
            part2 = part2.ljust(13, b"\x00")
        secure = bool(caps & Capability.CLIENT_SECURE_CONNECTION)
        plugin_auth = bool(caps & Capability.CLIENT_PLUGIN_AUTH)
        out = [
            bytes((self.protocol_version,)),
            cstring(_unascii(self.server_version)),
            int_bytes(self.connection_id, 4),
            data[:8],
            b"\x00",
            int_bytes(low & 0xFFFF, 2),
            int_bytes(self.charset, 1),
            int_bytes(self.status_flags, 2),
            int_bytes(low >> 16, 2),
            int_bytes(len(data) + 1 if plugin_auth else 0, 1),
            b"\x00" * 6,
            int_bytes(ext, 4),
        ]
        if secure:
            out.append(part2)
        if plugin_auth:
            out.append(cstring(_unascii(self.auth_plugin_name or "")))
        return b"".join(out)

    @property
    def scramble(self) -> bytes:
        """The 20-byte scramble that mysql_native_password hashes with."""
        return self.auth_plugin_data[:20]


def client_greeting(engine: InitialHandshake, *, tls: bool) -> InitialHandshake:
    """The greeting the gateway shows a client, derived from the engine's.

    Same version, connection id, scramble and plugin (password logins are relayed, so the
    client must answer the engine's own challenge); CLIENT_SSL set exactly when the gateway
    can do TLS; :data:`UNSUPPORTED_CAPABILITIES` cleared; the rest passed through.
    """
    caps = engine.capabilities & ~UNSUPPORTED_CAPABILITIES & ~Capability.CLIENT_SSL
    if tls:
        caps |= Capability.CLIENT_SSL
    return replace(engine, capabilities=Capability(caps))


# --- client's response -----------------------------------------------------------------------


def _read_caps_block(r: Reader) -> tuple[Capability, int, int]:
    low = r.int4()
    max_packet = r.int4()
    charset = r.int1()
    r.skip(19)
    ext = r.int4()
    caps = low if low & Capability.CLIENT_MYSQL else low | ext << 32
    return Capability(caps), max_packet, charset


def _write_caps_block(caps: int, max_packet: int, charset: int) -> bytes:
    low, ext = _split_caps(caps)
    if low & Capability.CLIENT_MYSQL:
        ext = 0
    return int_bytes(low, 4) + int_bytes(max_packet, 4) + int_bytes(charset, 1) + (
        b"\x00" * 19
    ) + int_bytes(ext, 4)


@dataclass(frozen=True, slots=True)
class SSLRequest:
    """Protocol::SSLRequest: the first 32 bytes of a handshake response, with CLIENT_SSL."""

    capabilities: Capability
    max_packet_size: int
    charset: int

    SIZE = 32

    @classmethod
    def parse(cls, payload: Buffer) -> SSLRequest:
        if len(payload) != cls.SIZE:
            raise RemoteProtocolError(f"SSLRequest of {len(payload)} bytes, expected 32")
        r = Reader(payload, "SSLRequest")
        caps, max_packet, charset = _read_caps_block(r)
        if not caps & Capability.CLIENT_SSL:
            raise RemoteProtocolError("32-byte handshake response without CLIENT_SSL")
        if not caps & Capability.CLIENT_PROTOCOL_41:
            raise RemoteProtocolError("pre-4.1 clients are not supported")
        return cls(caps, max_packet, charset)

    def build(self) -> bytes:
        return _write_caps_block(
            self.capabilities | Capability.CLIENT_SSL, self.max_packet_size, self.charset
        )


@dataclass(frozen=True, slots=True)
class HandshakeResponse41:
    """Protocol::HandshakeResponse41.

    Optional trailing fields are ``None`` when absent (so ``build`` reproduces the packet).
    ``username`` and ``database`` are raw bytes in the client's character set ``charset``;
    :attr:`user` decodes the name, :func:`.auth.effective_user_name` gives the account the
    server will look up.
    """

    capabilities: Capability
    max_packet_size: int
    charset: int
    username: bytes
    auth_response: bytes
    database: bytes | None = None
    auth_plugin_name: str | None = None
    attributes: Attributes | None = None
    zstd_level: int | None = None

    @classmethod
    def parse(cls, payload: Buffer, *, after: SSLRequest | None = None) -> HandshakeResponse41:
        """``after``: the SSLRequest this response follows over TLS. The server then keeps the
        SSLRequest's capabilities and ignores the field here (MySQL's sql_connect.cc: "the
        client_capabilites field will be ignored"; MariaDB's sql_acl.cc reads it from the first
        packet only), so the rest is laid out by those. MariaDB Connector/J 2.7 drops
        CLIENT_SSL from its second packet; the engine lets it in, so must the gateway."""
        r = Reader(payload, "HandshakeResponse41")
        caps, max_packet, charset = _read_caps_block(r)
        if after is not None:
            caps = after.capabilities
        if not caps & Capability.CLIENT_PROTOCOL_41:
            raise RemoteProtocolError("pre-4.1 clients are not supported")
        username = r.cstring()
        if caps & Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
            if not caps & Capability.CLIENT_SECURE_CONNECTION:
                raise RemoteProtocolError(
                    "CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA without CLIENT_SECURE_CONNECTION"
                )
            auth = r.lenenc_bytes()
        elif caps & Capability.CLIENT_SECURE_CONNECTION:
            auth = r.take(r.int1())
        else:
            auth = r.cstring()
        database = r.cstring() if caps & Capability.CLIENT_CONNECT_WITH_DB else None
        plugin = None
        if caps & Capability.CLIENT_PLUGIN_AUTH and not r.at_end():
            plugin = _ascii(r.cstring())
        attributes = None
        if caps & Capability.CLIENT_CONNECT_ATTRS and not r.at_end():
            if not caps & Capability.CLIENT_PLUGIN_AUTH:
                # servers disagree on whether a plugin name precedes the attributes then
                raise RemoteProtocolError("connection attributes without CLIENT_PLUGIN_AUTH")
            if plugin is None:
                raise RemoteProtocolError("connection attributes without a plugin name")
            attributes = _read_attributes(r)
        zstd = None
        if caps & Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM and not r.at_end():
            zstd = r.int1()
        r.finish()
        return cls(
            capabilities=caps,
            max_packet_size=max_packet,
            charset=charset,
            username=username,
            auth_response=auth,
            database=database,
            auth_plugin_name=plugin,
            attributes=attributes,
            zstd_level=zstd,
        )

    def build(self) -> bytes:
        caps = self.capabilities
        out = [
            _write_caps_block(caps, self.max_packet_size, self.charset),
            cstring(self.username),
        ]
        if caps & Capability.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA:
            out.append(lenenc_bytes(self.auth_response))
        elif caps & Capability.CLIENT_SECURE_CONNECTION:
            if len(self.auth_response) > 255:
                raise LocalProtocolError("auth response over 255 bytes needs LENENC_CLIENT_DATA")
            out.append(int_bytes(len(self.auth_response), 1) + self.auth_response)
        else:
            out.append(cstring(self.auth_response))
        if caps & Capability.CLIENT_CONNECT_WITH_DB:
            out.append(cstring(self.database or b""))
        trailing_plugin = caps & Capability.CLIENT_PLUGIN_AUTH and (
            self.auth_plugin_name is not None
            or (caps & Capability.CLIENT_CONNECT_ATTRS and self.attributes is not None)
        )
        if trailing_plugin:
            out.append(cstring(_unascii(self.auth_plugin_name or "")))
            if caps & Capability.CLIENT_CONNECT_ATTRS and self.attributes is not None:
                out.append(_write_attributes(self.attributes))
        if caps & Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM and self.zstd_level is not None:
            out.append(int_bytes(self.zstd_level, 1))
        return b"".join(out)

    @property
    def user(self) -> str:
        """The user name as sent, decoded in the client's character set."""
        return charsets.decode(self.username, self.charset)

    @property
    def db(self) -> str | None:
        return None if self.database is None else charsets.decode(self.database, self.charset)

    def ssl_request(self) -> SSLRequest:
        return SSLRequest(self.capabilities, self.max_packet_size, self.charset)

    def matches(self, request: SSLRequest) -> bool:
        """Whether this response announces the SSLRequest's capabilities, the ones the server
        keeps (see :meth:`parse`)."""
        return self.capabilities == request.capabilities

    def with_capabilities(self, caps: int) -> HandshakeResponse41:
        """A copy with other capabilities, dropping the fields they no longer announce."""
        caps = Capability(caps)
        return replace(
            self,
            capabilities=caps,
            database=self.database if caps & Capability.CLIENT_CONNECT_WITH_DB else None,
            attributes=self.attributes if caps & Capability.CLIENT_CONNECT_ATTRS else None,
            zstd_level=(
                self.zstd_level if caps & Capability.CLIENT_ZSTD_COMPRESSION_ALGORITHM else None
            ),
        )


# --- authentication exchange -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthSwitchRequest:
    """Protocol::AuthSwitchRequest: 0xFE, plugin name, plugin data (rest of packet).

    MariaDB's mysql_native_password data is the 20-byte scramble plus a NUL; client_ed25519's
    is 32 bytes; mysql_clear_password's is empty.
    """

    plugin_name: str
    data: bytes = b""

    @classmethod
    def parse(cls, payload: Buffer) -> AuthSwitchRequest:
        r = Reader(payload, "AuthSwitchRequest")
        if r.int1() != AUTH_SWITCH_HEADER:
            raise RemoteProtocolError("not an AuthSwitchRequest")
        if r.at_end():
            raise RemoteProtocolError("old-style auth switch (mysql_old_password) not supported")
        name = r.cstring()
        if not name:
            raise RemoteProtocolError("AuthSwitchRequest without a plugin name")
        return cls(_ascii(name), r.rest())

    def build(self) -> bytes:
        if not self.plugin_name:
            raise LocalProtocolError("AuthSwitchRequest needs a plugin name")
        return b"\xfe" + cstring(_unascii(self.plugin_name)) + bytes(self.data)


@dataclass(frozen=True, slots=True)
class AuthMoreData:
    """Protocol::AuthMoreData: 0x01 then plugin data (e.g. caching_sha2 0x03/0x04, PEM key)."""

    data: bytes

    @classmethod
    def parse(cls, payload: Buffer) -> AuthMoreData:
        r = Reader(payload, "AuthMoreData")
        if r.int1() != AUTH_MORE_DATA_HEADER:
            raise RemoteProtocolError("not an AuthMoreData packet")
        return cls(r.rest())

    def build(self) -> bytes:
        return b"\x01" + bytes(self.data)


# --- generic responses -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OkPacket:
    """OK_Packet. ``session_state_info`` is present only with SERVER_SESSION_STATE_CHANGED."""

    affected_rows: int = 0
    last_insert_id: int = 0
    status_flags: int = ServerStatus.SERVER_STATUS_AUTOCOMMIT
    warnings: int = 0
    info: bytes = b""
    session_state_info: bytes | None = None
    header: int = OK_HEADER

    @classmethod
    def parse(
        cls, payload: Buffer, capabilities: int = Capability.CLIENT_PROTOCOL_41
    ) -> OkPacket:
        r = Reader(payload, "OK packet")
        header = r.int1()
        if header not in (OK_HEADER, EOF_HEADER):
            raise RemoteProtocolError(f"not an OK packet (0x{header:02x})")
        affected = r.lenenc_int()
        insert_id = r.lenenc_int()
        status = warnings = 0
        if capabilities & Capability.CLIENT_PROTOCOL_41:
            status = r.int2()
            warnings = r.int2()
        elif capabilities & Capability.CLIENT_TRANSACTIONS:
            status = r.int2()
        info = b""
        session = None
        if capabilities & Capability.CLIENT_SESSION_TRACK:
            if not r.at_end():
                info = r.lenenc_bytes()
            if status & ServerStatus.SERVER_SESSION_STATE_CHANGED:
                session = r.lenenc_bytes()
        else:
            info = r.rest()
        r.finish()
        return cls(affected, insert_id, status, warnings, info, session, header)

    def build(self, capabilities: int = Capability.CLIENT_PROTOCOL_41) -> bytes:
        out = [
            bytes((self.header,)),
            lenenc_int(self.affected_rows),
            lenenc_int(self.last_insert_id),
        ]
        if capabilities & Capability.CLIENT_PROTOCOL_41:
            out += [int_bytes(self.status_flags, 2), int_bytes(self.warnings, 2)]
        elif capabilities & Capability.CLIENT_TRANSACTIONS:
            out.append(int_bytes(self.status_flags, 2))
        if capabilities & Capability.CLIENT_SESSION_TRACK:
            changed = self.status_flags & ServerStatus.SERVER_SESSION_STATE_CHANGED
            if self.info or changed:
                out.append(lenenc_bytes(self.info))
            if changed:
                out.append(lenenc_bytes(self.session_state_info or b""))
        else:
            out.append(bytes(self.info))
        return b"".join(out)


@dataclass(frozen=True, slots=True)
class ErrPacket:
    """ERR_Packet. ``sqlstate`` None means no ``#`` marker (peer not known to speak 4.1)."""

    errno: int
    message: str
    sqlstate: str | None = GENERAL_ERROR

    @classmethod
    def parse(cls, payload: Buffer) -> ErrPacket:
        r = Reader(payload, "ERR packet")
        if r.int1() != ERR_HEADER:
            raise RemoteProtocolError("not an ERR packet")
        errno = r.int2()
        if errno == 0xFFFF:
            raise RemoteProtocolError("progress report where an ERR packet was expected")
        sqlstate = None
        if not r.at_end() and r.peek() == ord("#"):
            r.skip(1)
            sqlstate = _ascii(r.take(5))
        message = r.rest().decode("utf-8", errors="surrogateescape")
        return cls(errno, message, sqlstate)

    def build(self, capabilities: int | None = Capability.CLIENT_PROTOCOL_41) -> bytes:
        """The payload; without the SQL-state marker if ``capabilities`` lacks PROTOCOL_41
        (or is None: nothing is known of the peer yet)."""
        out = b"\xff" + int_bytes(self.errno, 2)
        marker = capabilities is not None and capabilities & Capability.CLIENT_PROTOCOL_41
        if marker and self.sqlstate is not None:
            state = _unascii(self.sqlstate)
            if len(state) != 5:
                raise LocalProtocolError(f"SQLSTATE {self.sqlstate!r} is not 5 characters")
            out += b"#" + state
        return out + self.message.encode("utf-8", errors="surrogateescape")

    @classmethod
    def from_error(cls, error: DbError) -> ErrPacket:
        return cls(error.mysql_errno, error.message, error.sqlstate)


@dataclass(frozen=True, slots=True)
class LocalInfileRequest:
    """LOCAL INFILE request (0xFB + file name) sent by the server in reply to LOAD DATA LOCAL."""

    filename: bytes

    @classmethod
    def parse(cls, payload: Buffer) -> LocalInfileRequest:
        r = Reader(payload, "LOCAL INFILE request")
        if r.int1() != LOCAL_INFILE_HEADER:
            raise RemoteProtocolError("not a LOCAL INFILE request")
        return cls(r.rest())

    def build(self) -> bytes:
        return b"\xfb" + bytes(self.filename)


# --- commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ComChangeUser:
    """COM_CHANGE_USER. Layout follows the capabilities negotiated at login.

    The server reads the auth response with a one-byte length (CLIENT_SECURE_CONNECTION)
    whatever CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA says; ``charset`` is int<2> here.
    """

    username: bytes
    auth_response: bytes
    database: bytes = b""
    charset: int | None = None
    auth_plugin_name: str | None = None
    attributes: Attributes | None = None

    @classmethod
    def parse(cls, payload: Buffer, capabilities: int) -> ComChangeUser:
        r = Reader(payload, "COM_CHANGE_USER")
        if r.int1() != CommandCode.COM_CHANGE_USER:
            raise RemoteProtocolError("not a COM_CHANGE_USER packet")
        username = r.cstring()
        if capabilities & Capability.CLIENT_SECURE_CONNECTION:
            auth = r.take(r.int1())
        else:
            auth = r.cstring()
        database = r.cstring()
        charset = plugin = attributes = None
        if not r.at_end():
            charset = r.int2()
        if capabilities & Capability.CLIENT_PLUGIN_AUTH and not r.at_end():
            plugin = _ascii(r.cstring())
        if capabilities & Capability.CLIENT_CONNECT_ATTRS and not r.at_end():
            if plugin is None:
                raise RemoteProtocolError("connection attributes without a plugin name")
            attributes = _read_attributes(r)
        r.finish()
        return cls(username, auth, database, charset, plugin, attributes)

    def build(self, capabilities: int) -> bytes:
        out = [b"\x11", cstring(self.username)]
        if capabilities & Capability.CLIENT_SECURE_CONNECTION:
            if len(self.auth_response) > 255:
                raise LocalProtocolError("COM_CHANGE_USER auth response over 255 bytes")
            out.append(int_bytes(len(self.auth_response), 1) + self.auth_response)
        else:
            out.append(cstring(self.auth_response))
        out.append(cstring(self.database))
        more = self.auth_plugin_name is not None or self.attributes is not None
        if self.charset is not None or more:
            out.append(int_bytes(self.charset or 0, 2))
        if capabilities & Capability.CLIENT_PLUGIN_AUTH and more:
            out.append(cstring(_unascii(self.auth_plugin_name or "")))
            if capabilities & Capability.CLIENT_CONNECT_ATTRS and self.attributes is not None:
                out.append(_write_attributes(self.attributes))
        return b"".join(out)

    def user(self, default_charset: int) -> str:
        """The new user name decoded in the charset it was sent in."""
        return charsets.decode(self.username, self._charset(default_charset))

    def _charset(self, default_charset: int) -> int:
        # The server switches to the new collation before converting the name; an unusable
        # one (0) leaves the old setting in place.
        return self.charset if self.charset else default_charset
