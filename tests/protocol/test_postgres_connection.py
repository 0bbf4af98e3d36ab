"""The ClientFacing / EngineFacing state machines: transitions, limits, TLS rules, refusals,
cancel keys, and a client<->server pair over a fake link."""

from __future__ import annotations

import pytest

from dbkeep.errors import DbError, LocalProtocolError, RemoteProtocolError
from dbkeep.gateway.postgres.cancel import CancelKeyRegistry
from dbkeep.gateway.postgres.relay import HALF_CLOSED, TERMINATED, client_to_engine, engine_to_client
from dbkeep.gateway.postgres import (
    CLIENT_TRANSITIONS,
    ENGINE_TRANSITIONS,
    NEED_DATA,
    PAUSED,
    ClientFacing,
    ClientState,
    EngineFacing,
    EngineState,
)
from dbkeep.gateway.postgres.login import PasswordLogin
from dbkeep.gateway.postgres import (
    AuthenticationCleartextPassword,
    AuthenticationMD5Password,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    BackendData,
    BackendKeyData,
    CancelRequest,
    ConnectionClosed,
    DirectTlsHello,
    ErrorResponse,
    FrontendMessage,
    FunctionCall,
    GSSENCRequest,
    GSSENCResponse,
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
)
from dbkeep.gateway.postgres.scram import ScramSecret, ScramSha256Server
from dbkeep.gateway.postgres.wire import Limits

STARTUP = StartupMessage((("user", "alice"), ("database", "app")))
TOKEN = "dbkeep_refused_000102030405060708090a0b0c0d0e0f"


def _counting(n: int) -> bytes:
    return bytes(range(n))


def ready_client(**kwargs: object) -> ClientFacing:
    client = ClientFacing(randbytes=_counting, **kwargs)  # type: ignore[arg-type]
    client.receive_data(STARTUP.build())
    assert client.next_event() == STARTUP
    client.send(AuthenticationOk())
    client.send(ParameterStatus("client_encoding", "UTF8"))
    client.send(ReadyForQuery())
    assert client.state is ClientState.READY
    return client


def ready_engine(**kwargs: object) -> EngineFacing:
    engine = EngineFacing(**kwargs)  # type: ignore[arg-type]
    engine.send(STARTUP)
    engine.receive_data(AuthenticationOk().build() + ReadyForQuery().build())
    assert engine.next_event() == AuthenticationOk()
    assert engine.next_event() == ReadyForQuery("I")
    assert engine.state is EngineState.READY
    return engine


# --- encryption negotiation ------------------------------------------------------------------


def test_ssl_accepted_then_startup_over_tls() -> None:
    client = ClientFacing()
    client.receive_data(SSLRequest().build())
    assert client.next_event() == SSLRequest()
    assert client.next_event() is PAUSED
    assert client.send(SSLResponse(True)) == b"S"
    assert client.state is ClientState.TLS_HANDSHAKE
    assert client.next_event() is PAUSED
    client.tls_established("postgresql")
    assert client.tls_in_use and client.state is ClientState.STARTUP
    client.receive_data(STARTUP.build())
    assert client.next_event() == STARTUP
    # no second SSL negotiation once TLS is up
    client2 = ClientFacing()
    client2.receive_data(SSLRequest().build())
    client2.next_event()
    client2.send(SSLResponse(True))
    client2.tls_established(None)  # ALPN is optional after SSLRequest
    client2.receive_data(SSLRequest().build())
    with pytest.raises(RemoteProtocolError, match="unsupported frontend protocol 1234.5679"):
        client2.next_event()
    assert ErrorResponse.parse(client2.error_reply).sqlstate == "0A000"


def test_cleartext_bytes_during_tls_handshake_are_refused() -> None:
    client = ClientFacing()
    client.receive_data(SSLRequest().build())
    client.next_event()
    client.send(SSLResponse(True))
    with pytest.raises(RemoteProtocolError, match="unencrypted data after SSL request"):
        client.receive_data(b"\x00")
    assert client.state is ClientState.ERROR
    with pytest.raises(RemoteProtocolError):
        client.next_event()


def test_bytes_pipelined_behind_ssl_request_are_refused_even_when_accepted() -> None:
    client = ClientFacing()
    client.receive_data(SSLRequest().build() + b"\x16\x03\x01")
    assert client.next_event() == SSLRequest()
    with pytest.raises(RemoteProtocolError, match="unencrypted data after SSL request"):
        client.send(SSLResponse(True))
    assert client.error_reply == b""  # after 'S' there is no cleartext answer: just close


def test_gssenc_is_declined_and_ssl_may_follow() -> None:
    client = ClientFacing()
    client.receive_data(GSSENCRequest().build())
    assert client.next_event() == GSSENCRequest()
    with pytest.raises(LocalProtocolError):
        client.send(GSSENCResponse(True))
    assert client.send(GSSENCResponse(False)) == b"N"
    client.receive_data(SSLRequest().build())
    assert client.next_event() == SSLRequest()
    assert client.send(SSLResponse(False)) == b"N"
    client.receive_data(GSSENCRequest().build())  # both done: a version error, as the server says
    with pytest.raises(RemoteProtocolError, match="1234.5680"):
        client.next_event()


def test_pipelined_data_behind_gssenc_request() -> None:
    client = ClientFacing()
    client.receive_data(GSSENCRequest().build() + STARTUP.build())
    client.next_event()
    with pytest.raises(RemoteProtocolError, match="GSSAPI"):
        client.send(GSSENCResponse(False))
    assert client.error_reply.startswith(b"NE")


def test_direct_tls_requires_alpn_and_answers_later_ssl_requests_with_n() -> None:
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
    client = ClientFacing()
    client.receive_data(hello)
    assert client.next_event() == DirectTlsHello(hello)
    with pytest.raises(RemoteProtocolError, match="without ALPN"):
        client.tls_established(None)

    client = ClientFacing()
    client.receive_data(hello)
    client.next_event()
    client.tls_established("postgresql")
    assert client.direct_tls and client.tls_in_use
    client.receive_data(SSLRequest().build())
    assert client.next_event() == SSLRequest()
    with pytest.raises(LocalProtocolError, match="answer N"):
        client.send(SSLResponse(True))
    assert client.send(SSLResponse(False)) == b"N"


def test_alpn_mismatch_after_ssl_request() -> None:
    client = ClientFacing()
    client.receive_data(SSLRequest().build())
    client.next_event()
    client.send(SSLResponse(True))
    with pytest.raises(RemoteProtocolError, match="ALPN"):
        client.tls_established("http/1.1")


def test_direct_tls_only_as_the_first_packet() -> None:
    client = ClientFacing()
    client.receive_data(SSLRequest().build())
    client.next_event()
    client.send(SSLResponse(False))
    client.receive_data(b"\x16\x03\x01\x00\x05")
    with pytest.raises(RemoteProtocolError, match="invalid length of startup packet"):
        client.next_event()


# --- start-up --------------------------------------------------------------------------------


def test_cancel_request_ends_the_connection() -> None:
    client = ClientFacing()
    client.receive_data(CancelRequest(7, b"abcd").build())
    assert client.next_event() == CancelRequest(7, b"abcd")
    assert client.state is ClientState.CLOSED
    assert isinstance(client.next_event(), ConnectionClosed)


def test_startup_limits() -> None:
    big = StartupMessage((("user", "u"), ("options", "x" * 9990)))
    assert len(big.build()) > 10004
    client = ClientFacing()
    client.receive_data(big.build()[:4])  # refused from the length word alone
    with pytest.raises(RemoteProtocolError, match="invalid length of startup packet"):
        client.next_event()
    assert client.error_reply == b""  # the server closes without a word
    ok = StartupMessage((("user", "u"), ("options", "x" * 9960)))
    client = ClientFacing()
    client.receive_data(ok.build())
    assert client.next_event() == ok


@pytest.mark.parametrize(
    "version,message",
    [
        (2 << 16, "unsupported frontend protocol 2.0"),
        (4 << 16, "unsupported frontend protocol 4.0"),
        (1234 << 16 | 9999, "unsupported frontend protocol 1234.9999"),
    ],
)
def test_unsupported_protocol_versions(version: int, message: str) -> None:
    client = ClientFacing()
    client.receive_data(StartupMessage((("user", "u"),), version).build())
    with pytest.raises(RemoteProtocolError, match=message):
        client.next_event()
    assert client.error_reply


def test_negotiation_prefixes_the_first_reply_once() -> None:
    client = ClientFacing()
    client.receive_data(StartupMessage((("user", "u"),), 3 << 16 | 2).build())
    client.next_event()
    out = client.send(AuthenticationCleartextPassword())
    npv = NegotiateProtocolVersion(3 << 16).build()
    assert out == npv + AuthenticationCleartextPassword().build()
    client.receive_data(PasswordMessage(b"token").build())
    assert client.next_event() == PasswordMessage(b"token")
    assert client.send(AuthenticationOk()) == AuthenticationOk().build()


def test_negotiation_also_precedes_an_immediate_error() -> None:
    client = ClientFacing()
    client.receive_data(StartupMessage((("user", "u"), ("_pq_.x", "1"))).build())
    client.next_event()
    out = client.send(ErrorResponse.create("FATAL", "28000", "no"))
    assert out.startswith(NegotiateProtocolVersion(3 << 16, ("_pq_.x",)).build())
    assert client.state is ClientState.CLOSED


def test_gateway_refuses_at_startup_with_force_ssl_text() -> None:
    client = ClientFacing()
    client.receive_data(STARTUP.build())
    startup = client.next_event()
    assert isinstance(startup, StartupMessage)
    error = ErrorResponse.create(
        "FATAL", "28000",
        f'no pg_hba.conf entry for host "10.0.0.9", user "{startup.user}", database "{startup.database}", SSL off',
    )
    out = client.send(error)
    expected = 'no pg_hba.conf entry for host "10.0.0.9", user "alice", database "app", SSL off'
    assert ErrorResponse.parse(out).message == expected
    assert client.state is ClientState.CLOSED
    with pytest.raises(LocalProtocolError):
        client.send(AuthenticationOk())


def test_password_exchange_and_wrong_message_type() -> None:
    client = ClientFacing()
    client.receive_data(STARTUP.build())
    client.next_event()
    client.send(AuthenticationCleartextPassword())
    assert client.next_event() is NEED_DATA
    client.receive_data(Query(b"select 1").build())
    with pytest.raises(RemoteProtocolError, match="expected password response, got message type 81"):
        client.next_event()
    assert ErrorResponse.parse(client.error_reply).sqlstate == "08P01"


def test_auth_message_limit() -> None:
    client = ClientFacing()
    client.receive_data(STARTUP.build())
    client.next_event()
    client.send(AuthenticationCleartextPassword())
    client.receive_data(b"p\x00\x01\x00\x00")  # 65536 > PG_MAX_AUTH_TOKEN_LENGTH
    with pytest.raises(RemoteProtocolError, match="invalid message length"):
        client.next_event()


def test_sasl_relay_states() -> None:
    client = ClientFacing()
    client.receive_data(STARTUP.build())
    client.next_event()
    client.send(AuthenticationSASL(("SCRAM-SHA-256",)))
    assert client.state is ClientState.AWAIT_SASL_INITIAL
    client.receive_data(SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=x").build())
    assert isinstance(client.next_event(), SASLInitialResponse)
    with pytest.raises(LocalProtocolError):
        client.send(AuthenticationOk())  # a SASL exchange ends with SASLFinal first
    client.send(AuthenticationSASLContinue(b"r=xy,s=c2FsdA==,i=1"))
    client.receive_data(SASLResponse(b"c=biws,r=xy,p=AA==").build())
    assert client.next_event() == SASLResponse(b"c=biws,r=xy,p=AA==")
    client.send(AuthenticationSASLFinal(b"v=AA=="))
    client.send(AuthenticationOk())
    client.send(NoticeResponse.create("NOTICE", "00000", "hello"))
    client.send(BackendKeyData(1, b"abcd"))
    with pytest.raises(LocalProtocolError):
        client.send(BackendData(b"x"))
    client.send(ReadyForQuery())
    assert client.state is ClientState.READY


def test_client_speaking_out_of_turn_is_bounded() -> None:
    client = ClientFacing(limits=Limits(max_pending=16))
    client.receive_data(STARTUP.build() + b"x" * 10)
    client.next_event()
    assert client.next_event() is PAUSED
    client.receive_data(b"x" * 10)
    with pytest.raises(RemoteProtocolError, match="out of turn"):
        client.next_event()


def test_end_of_stream() -> None:
    client = ClientFacing()
    client.receive_data(b"")
    assert isinstance(client.next_event(), ConnectionClosed)
    client = ClientFacing()
    client.receive_data(STARTUP.build()[:10])
    client.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="incomplete startup packet"):
        client.next_event()
    client = ready_client()
    client.receive_data(Query(b"select 1").build()[:6])
    client.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a message"):
        client.next_event()
    client = ready_client()
    client.receive_data(b"")
    assert isinstance(client.next_event(), ConnectionClosed)
    assert client.trailing_data == (b"", True)


# --- query phase -----------------------------------------------------------------------------


def test_query_phase_framing_and_events() -> None:
    client = ready_client()
    bind = b"B\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00"
    copy_data = b"d\x00\x00\x00\x07abc"
    client.receive_data(
        Query(b"select 1").build() + Parse(b"s", b"select $1", (23,)).build() + bind + Sync().build()
        + copy_data + FunctionCall(2096).build() + Terminate().build() + b"garbage after terminate"
    )
    events = []
    while not isinstance(event := client.next_event(), ConnectionClosed):
        events.append(event)
    assert events == [
        Query(b"select 1"), Parse(b"s", b"select $1", (23,)), FrontendMessage(bind), Sync(),
        FrontendMessage(copy_data), FunctionCall(2096), Terminate(),
    ]
    assert client.state is ClientState.CLOSED


@pytest.mark.parametrize(
    "data,match",
    [
        (b"p\x00\x00\x00\x08abc\x00", "invalid frontend message type 112"),
        (b"\x00\x00\x00\x00\x04", "invalid frontend message type 0"),
        (b"S\x00\x00\x00\x05x", "invalid message format"),  # Sync with a body
        (b"Q\x00\x00\x00\x05x", "invalid message format"),  # no NUL
        (b"Q\x00\x00\x00\x03", "invalid message length"),
        (b"E\x00\x00\x27\x11", "invalid message length"),  # small message over 10000
        (b"Q\x04\x00\x00\x01", "invalid message length"),  # over max_message
    ],
)
def test_query_phase_errors(data: bytes, match: str) -> None:
    client = ready_client()
    client.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=match):
        client.next_event()
    assert client.state is ClientState.ERROR


def test_large_messages_within_the_configured_limit() -> None:
    client = ready_client(limits=Limits(max_message=1 << 20))
    query = Query(b"x" * ((1 << 20) - 6))
    client.receive_data(query.build())
    assert client.next_event() == query
    client.receive_data(Query(b"x" * (1 << 20)).build()[:5])
    with pytest.raises(RemoteProtocolError):
        client.next_event()


def test_client_encoding_follows_parameter_status() -> None:
    client = ready_client()
    client.send(BackendData(b"", (ParameterStatus("client_encoding", "LATIN1"),)))
    client.receive_data(Query(b"select '\xe9'").build())
    event = client.next_event()
    assert isinstance(event, Query) and event.sql == "select 'é'"


def test_refusal_rules() -> None:
    client = ready_client()
    client.receive_data(Query(b"a").build() + Query(b"b").build())
    first = client.next_event()
    second = client.next_event()
    assert isinstance(first, Query) and isinstance(second, Query)
    with pytest.raises(LocalProtocolError):
        client.refuse(first, DbError("no", sqlstate="42501"))  # not the last event any more
    with pytest.raises(LocalProtocolError):
        client.refuse(second, DbError("no", sqlstate="28000", fatal=True))
    refusal = client.refuse(second, DbError("no", sqlstate="42501"))
    assert refusal.token == TOKEN
    assert refusal.sentinel == Query(TOKEN.encode()).build()
    assert refusal.error == ErrorResponse.create("ERROR", "42501", "no")
    with pytest.raises(LocalProtocolError):
        client.refuse(second, DbError("twice", sqlstate="42501"))
    with pytest.raises(LocalProtocolError):
        client.send(ErrorResponse.create("ERROR", "42501", "not like this"))
    with pytest.raises(LocalProtocolError):
        client.send(refusal)


def test_refused_function_call_and_discarding() -> None:
    client = ready_client()
    client.receive_data(FunctionCall(2096).build())
    call = client.next_event()
    assert isinstance(call, FunctionCall)
    refusal = client.refuse(call, ErrorResponse.create("ERROR", "42501", "no fast path"))
    assert refusal.sentinel == Query(TOKEN.encode()).build()
    assert client.state is ClientState.READY

    client.receive_data(Parse(b"x", b"bad").build() + b"B\x00\x00\x00\x04" + Terminate().build())
    parse = client.next_event()
    assert isinstance(parse, Parse)
    client.refuse(parse, ErrorResponse.create("ERROR", "42501", "no"))
    assert client.state is ClientState.DISCARDING
    assert client.next_event() == Terminate()  # Terminate is honoured while discarding
    assert client.state is ClientState.CLOSED


def test_fatal_error_in_query_phase_closes() -> None:
    client = ready_client()
    out = client.send(ErrorResponse.create("FATAL", "57P01", "terminating connection due to administrator command"))
    assert out.startswith(b"E")
    assert client.state is ClientState.CLOSED


# --- engine side -----------------------------------------------------------------------------


def test_engine_auth_sequences_are_strict() -> None:
    engine = EngineFacing()
    with pytest.raises(LocalProtocolError):
        engine.send(Query(b"select 1"))
    engine.send(STARTUP)
    engine.receive_data(AuthenticationSASL(("SCRAM-SHA-256",)).build())
    assert engine.next_event() == AuthenticationSASL(("SCRAM-SHA-256",))
    assert engine.next_event() is PAUSED
    with pytest.raises(LocalProtocolError):
        engine.send(PasswordMessage(b"x"))
    engine.send(SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=x"))
    engine.receive_data(AuthenticationOk().build())  # skipping SASLContinue/SASLFinal
    with pytest.raises(RemoteProtocolError, match="unexpected AuthenticationOk"):
        engine.next_event()


@pytest.mark.parametrize(
    "data,match",
    [
        (b"R\x00\x00\x00\x08\x00\x00\x00\x07", "GSS"),
        (NegotiateProtocolVersion(3 << 16).build(), "unexpected message type 'v'"),
        (b"D\x00\x00\x00\x04", "unexpected message type 'D'"),
        (b"R\x00\x10\x00\x08", "invalid message length"),  # over max_backend_setup_message
        (BackendKeyData(1, b"abcd").build(), "unexpected BackendKeyData"),
    ],
)
def test_engine_startup_errors(data: bytes, match: str) -> None:
    engine = EngineFacing()
    engine.send(STARTUP)
    engine.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=match):
        engine.next_event()


def test_engine_error_during_startup_and_key_data() -> None:
    engine = EngineFacing()
    engine.send(STARTUP)
    engine.receive_data(ErrorResponse.create("FATAL", "28P01", "password authentication failed").build())
    assert isinstance(engine.next_event(), ErrorResponse)
    assert engine.state is EngineState.CLOSED

    engine = EngineFacing()
    engine.send(STARTUP)
    key = BackendKeyData(99, b"wxyz")
    engine.receive_data(AuthenticationOk().build() + key.build() + key.build())
    engine.next_event()
    assert engine.next_event() == key and engine.backend_key == key
    with pytest.raises(RemoteProtocolError, match="twice"):
        engine.next_event()


def test_engine_query_phase_tracks_status_and_parameters() -> None:
    engine = ready_engine()
    assert engine.at_message_boundary
    stream = (
        b"T\x00\x00\x00\x06\x00\x00" + b"D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x011"
        + ParameterStatus("client_encoding", "LATIN1").build() + b"C\x00\x00\x00\x0dSELECT 1\x00"
        + ReadyForQuery("T").build()
    )
    out = b""
    changes = []
    for i in range(len(stream)):
        engine.receive_data(stream[i : i + 1])
        event = engine.next_event()
        if event is NEED_DATA:
            continue
        assert isinstance(event, BackendData)
        out += event.data
        changes += event.parameter_changes
    assert out == stream
    assert changes == [ParameterStatus("client_encoding", "LATIN1")]
    assert engine.parameters["client_encoding"] == "LATIN1"
    assert engine.transaction_status == "T"
    assert engine.at_message_boundary


def test_engine_streams_large_messages_without_holding_them() -> None:
    engine = ready_engine()
    row = b"D" + (4 + 100_000).to_bytes(4, "big") + b"x" * 100_000
    engine.receive_data(row[:50_000])
    event = engine.next_event()
    assert isinstance(event, BackendData) and event.data == row[:50_000]
    assert not engine.at_message_boundary
    engine.receive_data(row[50_000:])
    event = engine.next_event()
    assert isinstance(event, BackendData) and event.data == row[50_000:]
    assert engine.at_message_boundary


def test_engine_query_phase_errors_and_end() -> None:
    engine = ready_engine()
    engine.receive_data(b"Z\x00\x00\x00\x06II")
    with pytest.raises(RemoteProtocolError, match="ReadyForQuery"):
        engine.next_event()
    engine = ready_engine()
    engine.receive_data(b"D\x00\x00\x00\x02")
    with pytest.raises(RemoteProtocolError, match="invalid message length"):
        engine.next_event()
    engine = ready_engine()
    engine.receive_data(b"D\x00\x00\x00\x10abc")
    assert isinstance(engine.next_event(), BackendData)
    engine.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a message"):
        engine.next_event()
    engine = ready_engine()
    engine.receive_data(b"")
    assert isinstance(engine.next_event(), ConnectionClosed)


def test_engine_refusal_substitution_only_matches_its_token() -> None:
    client = ready_client()
    engine = ready_engine()
    client.receive_data(Query(b"drop role rdsadmin").build())
    event = client.next_event()
    assert isinstance(event, Query)
    refusal = client.refuse(event, DbError('permission denied to drop role "rdsadmin"', sqlstate="42501"))
    assert engine.send(refusal) == Query(TOKEN.encode()).build()
    other = ErrorResponse.create("ERROR", "42601", 'syntax error at or near "dbkeep_refused_ffff"').build()
    sentinel = ErrorResponse.create("ERROR", "42601", f'syntax error at or near "{TOKEN}"').build()
    engine.receive_data(other + sentinel + ReadyForQuery("I").build())
    event = engine.next_event()
    assert isinstance(event, BackendData)
    assert event.data == other + refusal.error.build() + ReadyForQuery("I").build()
    # used up: the same token is not replaced twice
    engine.receive_data(sentinel)
    event = engine.next_event()
    assert isinstance(event, BackendData) and event.data == sentinel


def test_stop_tracking_makes_a_plain_relay() -> None:
    engine = ready_engine()
    engine.stop_tracking()
    engine.receive_data(b"garbage that is not even framed")
    event = engine.next_event()
    assert event == BackendData(b"garbage that is not even framed")
    assert not engine.at_message_boundary
    client = ready_client()
    client.receive_data(Query(b"x").build())
    query = client.next_event()
    assert isinstance(query, Query)
    with pytest.raises(LocalProtocolError, match="tracking"):
        engine.send(client.refuse(query, DbError("no", sqlstate="42501")))


def test_engine_cancel_connection() -> None:
    engine = EngineFacing()
    assert engine.send(CancelRequest(5, b"abcd")) == CancelRequest(5, b"abcd").build()
    assert engine.state is EngineState.CLOSED
    engine.receive_data(b"whatever")
    assert isinstance(engine.next_event(), ConnectionClosed)


def test_engine_terminate() -> None:
    engine = ready_engine()
    assert engine.send(Terminate()) == Terminate().build()
    assert engine.state is EngineState.CLOSED
    with pytest.raises(LocalProtocolError):
        engine.send(Query(b"select 1"))


# --- cancel keys -----------------------------------------------------------------------------


def test_cancel_key_registry() -> None:
    counter = iter(range(1, 1000))
    keys: CancelKeyRegistry[str] = CancelKeyRegistry(randbytes=lambda n: bytes([next(counter)]) * n)
    engine_a = BackendKeyData(100, b"AAAA")
    engine_b = BackendKeyData(100, b"BBBB")  # same pid on another engine
    given_a = keys.issue(engine_a, "a.sock")
    given_b = keys.issue(engine_b, "b.sock")
    assert given_a.process_id == given_b.process_id == 100
    assert given_a.secret_key != engine_a.secret_key
    assert keys.resolve(CancelRequest(100, given_a.secret_key)) == (engine_a, "a.sock")
    assert keys.resolve(CancelRequest(100, given_b.secret_key)) == (engine_b, "b.sock")
    assert keys.resolve(CancelRequest(100, engine_a.secret_key)) is None
    assert keys.resolve(CancelRequest(101, given_a.secret_key)) is None
    keys.release(given_a)
    assert keys.resolve(CancelRequest(100, given_a.secret_key)) is None
    assert len(keys) == 1
    random_pids: CancelKeyRegistry[str] = CancelKeyRegistry(keep_process_id=False)
    issued = random_pids.issue(BackendKeyData(7, bytes(32)), "c")
    assert len(issued.secret_key) == 32 and issued.process_id > 0


def test_cancel_key_registry_avoids_collisions() -> None:
    values = iter([b"\x01" * 4, b"\x01" * 4, b"\x02" * 4])
    keys: CancelKeyRegistry[int] = CancelKeyRegistry(randbytes=lambda n: next(values))
    assert keys.issue(BackendKeyData(1, b"xxxx"), 1).secret_key == b"\x01" * 4
    assert keys.issue(BackendKeyData(1, b"yyyy"), 2).secret_key == b"\x02" * 4


# --- transition tables -----------------------------------------------------------------------


def test_every_state_is_reachable_in_the_tables() -> None:
    reached = {ClientState.STARTUP} | set(CLIENT_TRANSITIONS.values())
    assert reached == set(ClientState) - {ClientState.ERROR}
    reached_e = {EngineState.STARTUP} | set(ENGINE_TRANSITIONS.values())
    assert reached_e == set(EngineState) - {EngineState.ERROR}


# --- a client and a server over a fake link ---------------------------------------------------


class FakeLink:
    """Moves bytes between an EngineFacing (client role) and a ClientFacing (server role),
    ``chunk`` bytes at a time, playing a tiny PostgreSQL server with one SCRAM user."""

    def __init__(self, chunk: int, secret: ScramSecret) -> None:
        self.chunk = chunk
        self.server = ClientFacing(randbytes=_counting)
        self.scram = ScramSha256Server(secret, nonce=b"server-nonce")
        self.engine = EngineFacing()
        self.engine_events: list[object] = []
        self.server_events: list[object] = []

    def to_server(self, data: bytes) -> None:
        for i in range(0, len(data), self.chunk):
            self.server.receive_data(data[i : i + self.chunk])
            self._serve()

    def to_client(self, data: bytes) -> None:
        for i in range(0, len(data), self.chunk):
            self.engine.receive_data(data[i : i + self.chunk])

    def _serve(self) -> None:
        while True:
            event = self.server.next_event()
            if event is NEED_DATA or event is PAUSED or isinstance(event, ConnectionClosed):
                return
            self.server_events.append(event)
            if isinstance(event, StartupMessage):
                self.to_client(self.server.send(AuthenticationSASL(("SCRAM-SHA-256",))))
            elif isinstance(event, SASLInitialResponse):
                assert event.data is not None
                self.to_client(self.server.send(AuthenticationSASLContinue(self.scram.server_first(event.data))))
            elif isinstance(event, SASLResponse):
                try:
                    final = self.scram.server_final(event.data)
                except RemoteProtocolError:
                    error = ErrorResponse.create("FATAL", "28P01", "password authentication failed")
                    self.to_client(self.server.send(error))
                    return
                self.to_client(self.server.send(AuthenticationSASLFinal(final)))
                self.to_client(self.server.send(AuthenticationOk()))
                self.to_client(self.server.send(ParameterStatus("server_version", "15.18")))
                self.to_client(self.server.send(BackendKeyData(321, b"kkkk")))
                self.to_client(self.server.send(ReadyForQuery()))
            elif isinstance(event, Query):
                if event.query.startswith(b"dbkeep_refused_"):
                    reply = ErrorResponse.create("ERROR", "42601", f'syntax error at or near "{event.sql}"').build()
                else:
                    reply = b"C\x00\x00\x00\x0dSELECT 1\x00"
                self.to_client(self.server.send(BackendData(reply + ReadyForQuery().build())))

    def drain_engine(self, login: PasswordLogin) -> None:
        while True:
            event = self.engine.next_event()
            if event is NEED_DATA or event is PAUSED or isinstance(event, ConnectionClosed):
                return
            self.engine_events.append(event)
            if isinstance(
                event, (AuthenticationSASL, AuthenticationSASLContinue, AuthenticationSASLFinal, AuthenticationOk)
            ):
                answer = login.respond(event)
                if answer is not None:
                    self.to_server(self.engine.send(answer))


@pytest.mark.parametrize("chunk", [1, 3, 1000])
def test_scram_login_and_queries_over_a_fake_link(chunk: int) -> None:
    secret = ScramSecret.from_password("derived", salt=b"0123456789abcdef", iterations=32)
    link = FakeLink(chunk, secret)
    login = PasswordLogin("iam_user", "derived", randbytes=lambda n: b"\x05" * n)
    link.to_server(link.engine.send(StartupMessage((("user", "iam_user"), ("database", "app")))))
    for _ in range(10):
        link.drain_engine(login)
    assert login.done
    assert link.engine.state is EngineState.READY
    assert link.engine.backend_key == BackendKeyData(321, b"kkkk")
    assert link.engine.parameters == {"server_version": "15.18"}
    assert link.scram.authenticated

    link.to_server(link.engine.send(Query(b"select 1")))
    link.drain_engine(login)
    data = b"".join(e.data for e in link.engine_events if isinstance(e, BackendData))
    assert data == b"C\x00\x00\x00\x0dSELECT 1\x00" + ReadyForQuery().build()

    # a statement refused by a guard on this side of the link
    gateway = ready_client()
    gateway.receive_data(Query(b"alter role rdsadmin nologin").build())
    refused = gateway.next_event()
    assert isinstance(refused, Query)
    refusal = gateway.refuse(refused, DbError('permission denied to alter role "rdsadmin"', sqlstate="42501"))
    link.engine_events.clear()
    link.to_server(link.engine.send(refusal))
    link.drain_engine(login)
    data = b"".join(e.data for e in link.engine_events if isinstance(e, BackendData))
    assert data == refusal.error.build() + ReadyForQuery().build()
    assert "rdsadmin" not in str(link.server_events[-1])

    link.to_server(link.engine.send(Terminate()))
    assert link.server.state is ClientState.CLOSED
    assert link.engine.state is EngineState.CLOSED


def test_wrong_password_over_a_fake_link() -> None:
    link = FakeLink(7, ScramSecret.from_password("right", salt=b"s" * 16, iterations=8))
    login = PasswordLogin("u", "wrong")
    link.to_server(link.engine.send(StartupMessage((("user", "u"),))))
    for _ in range(5):
        link.drain_engine(login)
    assert isinstance(link.engine_events[-1], ErrorResponse)
    assert link.engine.state is EngineState.CLOSED
    assert link.server.state is ClientState.CLOSED
    assert not login.done


def test_md5_request_relayed_to_client() -> None:
    client = ClientFacing()
    client.receive_data(STARTUP.build())
    client.next_event()
    client.send(AuthenticationMD5Password(b"salt"))
    client.receive_data(PasswordMessage(b"md5" + b"a" * 32).build())
    assert client.next_event() == PasswordMessage(b"md5" + b"a" * 32)
    assert client.state is ClientState.PASSWORD_RECEIVED


# --- the query-phase relay (postgres/relay.py) ------------------------------------------------


def test_relay_forwards_judges_and_refuses_in_order() -> None:
    client, engine = ready_client(), ready_engine()
    judged: list[bytes] = []

    def judge(event: Query | Parse | FunctionCall) -> DbError | None:
        judged.append(event.query if isinstance(event, Query) else b"")
        return DbError("refused", sqlstate="42501") if isinstance(event, Query) and b"no" in event.query else None

    client.receive_data(Query(b"yes").build() + Query(b"no").build() + Sync().build() + Query(b"half").build()[:6])
    out: list[bytes] = []
    assert client_to_engine(client, engine, judge, out) is None  # the rest of the last Query is awaited
    assert out == [Query(b"yes").build(), Query(TOKEN.encode()).build(), Sync().build()]
    assert judged == [b"yes", b"no"]
    out.clear()
    client.receive_data(b"")
    with pytest.raises(RemoteProtocolError):
        client_to_engine(client, engine, judge, out)  # the client left inside a message

    client, engine = ready_client(), ready_engine()
    client.receive_data(Query(b"select").build() + Terminate().build())
    out = []
    assert client_to_engine(client, engine, None, out) == TERMINATED
    assert out == [Query(b"select").build(), Terminate().build()]
    client, engine = ready_client(), ready_engine()
    client.receive_data(b"")
    assert client_to_engine(client, engine, None, []) == HALF_CLOSED


def test_relay_writes_engine_runs_as_they_come() -> None:
    client, engine = ready_client(), ready_engine(track_messages=False)
    written: list[bytes] = []
    engine.receive_data(b"T\x00\x00\x00\x06\x00\x00")
    assert engine_to_client(engine, client, written.append) is False
    engine.receive_data(b"")
    assert engine_to_client(engine, client, written.append) is True
    assert b"".join(written) == b"T\x00\x00\x00\x06\x00\x00"
