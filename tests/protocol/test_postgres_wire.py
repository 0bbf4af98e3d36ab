"""Wire primitives and message (de)serialisation of the sans-I/O PostgreSQL protocol."""

from __future__ import annotations

import pytest

from dbkeep.errors import DbError, LocalProtocolError, RemoteProtocolError
from dbkeep.gateway.postgres import (
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    BackendKeyData,
    CancelRequest,
    ErrorResponse,
    FunctionCall,
    GSSENCRequest,
    NegotiateProtocolVersion,
    NoticeResponse,
    ParameterStatus,
    Parse,
    PasswordMessage,
    Query,
    ReadyForQuery,
    SASLInitialResponse,
    SASLResponse,
    SSLRequest,
    SSLResponse,
    StartupMessage,
    Sync,
    Terminate,
    decode_client_text,
    parse_authentication,
    parse_startup_packet,
    python_codec,
)
from dbkeep.gateway.postgres.wire import Limits, Reader, MessageBuffer, cstring, int16, int32, typed_message


# --- wire ------------------------------------------------------------------------------------


def test_reader_reads_and_fails_closed() -> None:
    data = int16(-2) + int32(70000) + b"abc\x00" + b"\xff\xfe"
    reader = Reader(data)
    assert reader.int16() == -2
    assert reader.int32() == 70000
    assert reader.cstring() == b"abc"
    assert reader.remaining == 2
    with pytest.raises(RemoteProtocolError, match="truncated"):
        reader.int32()
    assert reader.uint16() == 0xFFFE
    reader.finish()
    with pytest.raises(RemoteProtocolError, match="unterminated"):
        Reader(b"abc").cstring()
    with pytest.raises(RemoteProtocolError, match="unexpected bytes"):
        Reader(b"ab").finish()
    with pytest.raises(RemoteProtocolError):
        Reader(b"abc", 0, 2).take(3)  # the end bound is honoured
    with pytest.raises(RemoteProtocolError):
        Reader(b"abc", 4)


def test_builders_refuse_what_cannot_be_represented() -> None:
    assert cstring("é") == b"\xc3\xa9\x00"
    assert cstring("\udcff") == b"\xff\x00"  # surrogateescape round trip
    with pytest.raises(LocalProtocolError):
        cstring(b"a\x00b")
    with pytest.raises(LocalProtocolError):
        int16(40000)
    with pytest.raises(LocalProtocolError):
        int32(2**31)
    with pytest.raises(LocalProtocolError):
        typed_message(b"QQ", b"")
    assert typed_message(b"Q", b"x\x00") == b"Q\x00\x00\x00\x06x\x00"


def test_message_buffer_frames_and_bounds() -> None:
    buf = MessageBuffer()
    assert buf.typed_frame(100) is None
    buf.feed(b"Q\x00\x00")
    assert buf.typed_frame(100) is None
    buf.feed(b"\x00\x06x\x00S\x00\x00\x00\x04")
    assert buf.typed_frame(100) == b"Q\x00\x00\x00\x06x\x00"
    assert buf.typed_frame(100) == b"S\x00\x00\x00\x04"
    assert not buf
    # an oversized declaration is refused before its body arrives
    buf.feed(b"Q\x7f\xff\xff\xff")
    with pytest.raises(RemoteProtocolError, match="invalid message length"):
        buf.typed_frame(1000)
    buf = MessageBuffer()
    buf.feed(b"Q\x00\x00\x00\x03")
    with pytest.raises(RemoteProtocolError):
        buf.typed_frame(1000)
    buf = MessageBuffer()
    buf.feed(b"\x00\x00\x00\x07\x00\x00\x00")
    with pytest.raises(RemoteProtocolError, match="invalid length of startup packet"):
        buf.untyped_frame(10000)
    buf = MessageBuffer()
    buf.feed(b"\x00\x00\x27\x15")  # 10005: one byte over the server's limit
    with pytest.raises(RemoteProtocolError, match="invalid length of startup packet"):
        buf.untyped_frame(10000)


def test_message_buffer_hands_out_whole_chunks_without_copying() -> None:
    chunk = Query(b"select 1").build()
    buf = MessageBuffer()
    buf.feed(chunk)
    assert buf.typed_frame(1000) is chunk
    many = chunk * 1000
    buf.feed(many[:7])
    buf.feed(many[7:])
    frames = []
    while (frame := buf.typed_frame(1000)) is not None:
        frames.append(frame)
    assert frames == [chunk] * 1000
    assert not buf


def test_limits_validate() -> None:
    with pytest.raises(ValueError):
        Limits(max_message=4)
    assert Limits().max_startup_packet == 10000


# --- messages --------------------------------------------------------------------------------

BACKEND_ROUND_TRIPS = [
    (AuthenticationOk(), b"R\x00\x00\x00\x08\x00\x00\x00\x00"),
    (AuthenticationCleartextPassword(), b"R\x00\x00\x00\x08\x00\x00\x00\x03"),
    (AuthenticationMD5Password(b"\x01\x02\x03\x04"), b"R\x00\x00\x00\x0c\x00\x00\x00\x05\x01\x02\x03\x04"),
    (
        AuthenticationSASL(("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")),
        b"R\x00\x00\x00\x2a\x00\x00\x00\x0aSCRAM-SHA-256-PLUS\x00SCRAM-SHA-256\x00\x00",
    ),
    (AuthenticationSASLContinue(b"r=abc,s=c2FsdA==,i=4096"), None),
    (AuthenticationSASLFinal(b"v=abc"), None),
]


@pytest.mark.parametrize("message,expected", BACKEND_ROUND_TRIPS, ids=lambda m: type(m).__name__)
def test_authentication_round_trip(message: object, expected: bytes | None) -> None:
    raw = message.build()  # type: ignore[attr-defined]
    if expected is not None:
        assert raw == expected
    assert parse_authentication(raw) == message


@pytest.mark.parametrize(
    "raw,match",
    [
        (b"R\x00\x00\x00\x08\x00\x00\x00\x07", "GSS"),
        (b"R\x00\x00\x00\x08\x00\x00\x00\x09", "SSPI"),
        (b"R\x00\x00\x00\x08\x00\x00\x00\x2a", "code 42"),
        (b"R\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00", "unexpected bytes"),
        (b"R\x00\x00\x00\x0b\x00\x00\x00\x05\x01\x02\x03", "truncated"),
        (b"R\x00\x00\x00\x09\x00\x00\x00\x0a\x00", "without mechanisms"),
        (b"R\x00\x00\x00\x0d\x00\x00\x00\x0aSCRAM", "unterminated"),
        (b"R\x00\x00\x00\x09\x00\x00\x00\x00", "length does not match"),
    ],
)
def test_authentication_parse_fails_closed(raw: bytes, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        parse_authentication(raw)


@pytest.mark.parametrize(
    "message",
    [
        ParameterStatus("client_encoding", "UTF8"),
        ParameterStatus("application_name", "é\udcff"),
        BackendKeyData(1234, b"\x01\x02\x03\x04"),
        BackendKeyData(1234, bytes(32)),  # protocol 3.2 keys
        ReadyForQuery("T"),
        NegotiateProtocolVersion(3 << 16, ("_pq_.a", "_pq_.b")),
        NegotiateProtocolVersion(3 << 16),
        ErrorResponse.create("FATAL", "28000", 'no pg_hba.conf entry for host "1.2.3.4"', detail="d", hint="h"),
        NoticeResponse.create("NOTICE", "00000", "hello"),
    ],
    ids=lambda m: type(m).__name__,
)
def test_backend_round_trip(message: object) -> None:
    raw = message.build()  # type: ignore[attr-defined]
    assert type(message).parse(raw) == message  # type: ignore[attr-defined]
    assert type(message).parse(raw).build() == raw  # type: ignore[attr-defined]


def test_error_response_fields() -> None:
    error = ErrorResponse.create("FATAL", "28000", "m", detail="d")
    assert error.build() == b"E\x00\x00\x00\x20SFATAL\x00VFATAL\x00C28000\x00Mm\x00Dd\x00\x00"
    assert (error.severity, error.sqlstate, error.message) == ("FATAL", "28000", "m")
    assert (error.detail, error.hint) == ("d", None)
    assert error.fatal
    with pytest.raises(LocalProtocolError):
        ErrorResponse.create("ERROR", "4250", "short sqlstate")
    db = ErrorResponse.from_db_error(DbError("denied", sqlstate="42501"))
    assert (db.severity, db.sqlstate, db.message, db.fatal) == ("ERROR", "42501", "denied", False)
    assert ErrorResponse.from_db_error(DbError("bye", sqlstate="28000", fatal=True)).severity == "FATAL"
    with pytest.raises(RemoteProtocolError):
        ErrorResponse.parse(b"E\x00\x00\x00\x08SERR")  # value without NUL, no terminator
    with pytest.raises(RemoteProtocolError):
        ErrorResponse.parse(b"E\x00\x00\x00\x0aSE\x00\x00x")  # bytes after the terminator


def test_frontend_round_trips() -> None:
    for message in (
        PasswordMessage(b"md5" + b"0" * 32),
        SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=abc"),
        SASLInitialResponse("SCRAM-SHA-256", None),
        SASLResponse(b"c=biws,r=abc,p=xyz"),
    ):
        assert type(message).parse(message.build()) == message  # type: ignore[attr-defined]
    assert SASLInitialResponse("M", None).build() == b"p\x00\x00\x00\x0aM\x00\xff\xff\xff\xff"
    with pytest.raises(RemoteProtocolError):
        SASLInitialResponse.parse(b"p\x00\x00\x00\x0aM\x00\x00\x00\x00\x05")  # data shorter than said
    with pytest.raises(RemoteProtocolError):
        SASLInitialResponse.parse(b"p\x00\x00\x00\x0aM\x00\xff\xff\xff\xfe")
    with pytest.raises(RemoteProtocolError):
        PasswordMessage.parse(b"p\x00\x00\x00\x06ab")
    assert "secret" not in repr(PasswordMessage(b"secret"))


def test_query_and_parse_keep_bytes_and_decode_in_the_client_encoding() -> None:
    raw = b"Q\x00\x00\x00\x10select 'h\xe9'\x00"
    query = Query.parse(raw, "LATIN1")
    assert query.query == b"select 'h\xe9'"
    assert query.sql == "select 'hé'"
    assert query.build() is raw  # forwarded as received
    assert Query.parse(raw, "UTF8").sql is None  # not UTF-8: a guard must refuse
    assert Query.from_sql("select 'é'").build() == b"Q\x00\x00\x00\x10select '\xc3\xa9'\x00"
    parse = Parse(b"s1", b"select $1", (23,))
    assert Parse.parse(parse.build()) == parse
    assert parse.sql == "select $1"
    with pytest.raises(RemoteProtocolError):
        Parse.parse(b"P\x00\x00\x00\x0es\x00q\x00\x00\x02\x00\x00\x00\x17")  # 2 types said, 1 sent
    with pytest.raises(RemoteProtocolError):
        Query.parse(b"Q\x00\x00\x00\x06ab")
    with pytest.raises(RemoteProtocolError):
        Query.parse(b"Q\x00\x00\x00\x07a\x00b")
    import dataclasses

    changed = dataclasses.replace(Query.parse(raw, "LATIN1"), query=b"select 2")
    assert changed.build() == Query(b"select 2").build()  # never the stale frame


def test_function_call_sync_terminate() -> None:
    raw = b"F\x00\x00\x00\x10\x00\x00\x08\x30\x00\x00\x00\x00\x00\x00\x00\x00"
    call = FunctionCall.parse(raw)
    assert call.function_oid == 2096 and call.build() is raw
    assert Sync().build() == b"S\x00\x00\x00\x04"
    assert Terminate().build() == b"X\x00\x00\x00\x04"


def test_client_encodings() -> None:
    assert python_codec("UTF8") == python_codec("utf-8") == "utf-8"
    assert python_codec("'utf-8'") == "utf-8"
    assert python_codec("SJIS") == "cp932"
    assert python_codec("EUC_TW") is None and python_codec("MULE_INTERNAL") is None
    # in SJIS 0x5c can be the second byte of a character: decoding as UTF-8 would differ
    sjis = "表".encode("cp932")
    assert sjis[1:] == b"\\"
    assert decode_client_text(b"E'" + sjis + b"'", "SJIS") == "E'表'"
    assert decode_client_text(b"\xff", "UTF8") is None
    assert decode_client_text(b"x", "EUC_TW") is None


# --- start-up packets ------------------------------------------------------------------------


def test_startup_packets() -> None:
    assert SSLRequest().build() == b"\x00\x00\x00\x08\x04\xd2\x16\x2f"
    assert GSSENCRequest().build() == b"\x00\x00\x00\x08\x04\xd2\x16\x30"
    assert parse_startup_packet(SSLRequest().build()) == SSLRequest()
    assert parse_startup_packet(GSSENCRequest().build()) == GSSENCRequest()
    cancel = CancelRequest(42, b"\x00\x01\x02\x03")
    assert cancel.build() == b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x00\x2a\x00\x01\x02\x03"
    assert parse_startup_packet(cancel.build()) == cancel
    assert parse_startup_packet(CancelRequest(42, bytes(32)).build()) == CancelRequest(42, bytes(32))
    assert "\\x01" not in repr(cancel)
    with pytest.raises(RemoteProtocolError):
        parse_startup_packet(b"\x00\x00\x00\x0c\x04\xd2\x16\x2e\x00\x00\x00\x2a")  # no key
    with pytest.raises(RemoteProtocolError):
        parse_startup_packet(b"\x00\x00\x00\x0c\x04\xd2\x16\x2f\x00\x00\x00\x00")  # SSLRequest + junk

    startup = StartupMessage((("user", "alice"), ("options", "-c search_path=x"), ("replication", "database")))
    raw = startup.build()
    parsed = parse_startup_packet(raw)
    assert parsed == startup
    assert isinstance(parsed, StartupMessage)
    assert (parsed.user, parsed.database, parsed.options, parsed.replication) == (
        "alice", "alice", "-c search_path=x", "database",
    )
    assert StartupMessage(()).build() == b"\x00\x00\x00\x09\x00\x03\x00\x00\x00"


@pytest.mark.parametrize(
    "payload",
    [
        b"user\x00alice\x00",  # no terminator
        b"user\x00alice",  # value without NUL
        b"user\x00",  # name without value
        b"",  # nothing after the version
        b"user\x00alice\x00\x00x",  # bytes after the terminator
    ],
)
def test_startup_layout_errors(payload: bytes) -> None:
    raw = int32(8 + len(payload)) + int32(3 << 16) + payload
    with pytest.raises(RemoteProtocolError, match="invalid startup packet layout"):
        parse_startup_packet(raw)


def test_duplicate_startup_parameters_are_refused() -> None:
    raw = StartupMessage((("user", "alice"), ("user", "rdsadmin"))).build()
    with pytest.raises(RemoteProtocolError, match="appears twice"):
        parse_startup_packet(raw)


def test_for_engine_drops_protocol_options() -> None:
    startup = StartupMessage((("user", "u"), ("_pq_.x", "1")), 3 << 16 | 2)
    assert startup.protocol_options == ("_pq_.x",)
    assert (startup.major, startup.minor) == (3, 2)
    assert startup.for_engine() == StartupMessage((("user", "u"),))
    plain = StartupMessage((("user", "u"),))
    assert plain.for_engine() is plain


def test_ssl_response_bytes() -> None:
    assert SSLResponse(True).build() == b"S" and SSLResponse(False).build() == b"N"


def test_value_checks() -> None:
    with pytest.raises(LocalProtocolError):
        ReadyForQuery("X")
    with pytest.raises(RemoteProtocolError):
        ReadyForQuery.parse(b"Z\x00\x00\x00\x05X")
    with pytest.raises(LocalProtocolError):
        AuthenticationMD5Password(b"abc")
    with pytest.raises(LocalProtocolError):
        BackendKeyData(1, b"abc")
    with pytest.raises(RemoteProtocolError):
        BackendKeyData.parse(b"K\x00\x00\x00\x0a\x00\x00\x00\x01\x00\x00")
    with pytest.raises(RemoteProtocolError):
        NegotiateProtocolVersion.parse(b"v\x00\x00\x00\x0c\x00\x03\x00\x00\x00\x00\x00\x05")
