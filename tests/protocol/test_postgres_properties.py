"""Property tests (hypothesis) for the sans-I/O PostgreSQL protocol.

* Readers fail closed: arbitrary bytes, in arbitrary chunks, into either state machine in any
  phase produce only events, NEED_DATA/PAUSED or RemoteProtocolError — never another
  exception, and with end of stream the loop always terminates (no hang).
* Chunking does not matter: a valid conversation, each flight cut at arbitrary points, gives
  the same events and the same bytes as when every flight arrives whole.
* build/parse round trips and SCRAM client/server agreement for arbitrary values.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbkeep.errors import DbError, RemoteProtocolError
from dbkeep.gateway.postgres import (
    NEED_DATA,
    PAUSED,
    ClientFacing,
    ClientState,
    EngineFacing,
    EngineState,
    Refusal,
)
from dbkeep.gateway.postgres import (
    AuthenticationCleartextPassword,
    AuthenticationOk,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    BackendData,
    BackendKeyData,
    ConnectionClosed,
    ErrorResponse,
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
    parse_authentication,
    parse_startup_packet,
)
from dbkeep.gateway.postgres.scram import ScramSecret, ScramSha256Client, ScramSha256Server
from dbkeep.gateway.postgres.wire import typed_message

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MAX_STEPS = 100_000
GUARD_ERROR = DbError("refused by the guard", sqlstate="42501")


def _counting(n: int) -> bytes:
    return bytes(range(n))


def _chunks(data: st.DataObject, blob: bytes) -> list[bytes]:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=6)))
    pieces, start = [], 0
    for cut in cuts + [len(blob)]:
        pieces.append(blob[start:cut])
        start = cut
    return [p for p in pieces if p]


# --- a server-role driver for ClientFacing ----------------------------------------------------


class ClientDriver:
    """Answers the client deterministically (the decisions depend only on events, never on
    chunking) and records every event and every byte sent."""

    def __init__(self, auth: str) -> None:
        self.auth = auth
        self.client = ClientFacing(randbytes=_counting)
        self.events: list[object] = []
        self.sent = bytearray()
        self.refusals: list[Refusal] = []
        self._sasl_rounds = 0

    def _act(self) -> None:
        c, state = self.client, self.client.state
        if state is ClientState.SSL_REQUESTED:
            self.sent += c.send(SSLResponse(False))
        elif state is ClientState.GSS_REQUESTED:
            self.sent += c.send(GSSENCResponse(False))
        elif state is ClientState.TLS_HANDSHAKE:
            c.tls_established("postgresql")
        elif state is ClientState.STARTUP_RECEIVED:
            request = {
                "trust": AuthenticationOk(),
                "cleartext": AuthenticationCleartextPassword(),
                "sasl": AuthenticationSASL(("SCRAM-SHA-256",)),
            }[self.auth]
            self.sent += c.send(request)
        elif state in (ClientState.PASSWORD_RECEIVED, ClientState.SASL_FINAL_SENT):
            self.sent += c.send(AuthenticationOk())
        elif state is ClientState.SASL_RECEIVED:
            self._sasl_rounds += 1
            if self._sasl_rounds == 1:
                self.sent += c.send(AuthenticationSASLContinue(b"r=x,s=c2FsdA==,i=1"))
            else:
                self.sent += c.send(AuthenticationSASLFinal(b"v=AAAA"))
        elif state is ClientState.SETUP:
            self.sent += c.send(ParameterStatus("client_encoding", "UTF8"))
            self.sent += c.send(BackendKeyData(1, b"abcd"))
            self.sent += c.send(ReadyForQuery())
        else:  # pragma: no cover - a state the table does not pause in
            raise AssertionError(f"paused in {state}")

    def pump(self) -> None:
        for _ in range(MAX_STEPS):
            event = self.client.next_event()
            if event is NEED_DATA:
                return
            if event is PAUSED:
                self._act()
                continue
            if isinstance(event, ConnectionClosed):
                return
            self.events.append(event)
            if isinstance(event, (Query, Parse)) and event.query.startswith(b"!"):
                self.refusals.append(self.client.refuse(event, GUARD_ERROR))
            elif isinstance(event, FunctionCall) and event.function_oid == 2096:
                self.refusals.append(self.client.refuse(event, GUARD_ERROR))
        raise AssertionError("no progress: the state machine loops")

    def feed(self, pieces: list[bytes]) -> None:
        for piece in filter(None, pieces):
            self.client.receive_data(piece)
            self.pump()

    def finish(self) -> None:
        self.client.receive_data(b"")
        self.pump()
        # after end of stream the conversation always ends (no hang): closed, or an error
        # raised above
        assert self.client.state is ClientState.CLOSED
        assert isinstance(self.client.next_event(), ConnectionClosed)


def _run_client(auth: str, flights: list[list[bytes]]) -> tuple[list[object], bytes, list[Refusal], str | None]:
    driver = ClientDriver(auth)
    error = None
    try:
        for flight in flights:
            driver.feed(flight)
        driver.finish()
    except RemoteProtocolError as exc:
        error = str(exc)
    return driver.events, bytes(driver.sent), driver.refusals, error


# --- strategies for valid client conversations -----------------------------------------------

_no_nul = st.binary(max_size=40).map(lambda b: b.replace(b"\x00", b"."))
_name = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=12)
_value = st.text(st.characters(min_codepoint=1, max_codepoint=0x10FFFF, blacklist_categories=("Cs",)), max_size=20)


@st.composite
def _query_message(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["Q", "P", "S", "F", "other"]))
    guarded = draw(st.sampled_from([b"", b"!"])) + draw(_no_nul)
    if kind == "Q":
        return Query(guarded).build()
    if kind == "P":
        types = tuple(draw(st.lists(st.integers(0, 2**32 - 1), max_size=3)))
        return Parse(draw(_no_nul), guarded, types).build()
    if kind == "S":
        return Sync().build()
    if kind == "F":
        return FunctionCall(draw(st.sampled_from([2096, 1, 2**32 - 1])), draw(st.binary(max_size=20))).build()
    type_ = draw(st.sampled_from(b"BDECHdcf"))
    return typed_message(bytes([type_]), draw(st.binary(max_size=60)))


@st.composite
def client_conversation(draw: st.DrawFn) -> tuple[str, list[bytes]]:
    flights: list[bytes] = []
    negotiation = draw(st.lists(st.sampled_from(["ssl", "gss"]), max_size=2, unique=True))
    for request in negotiation:
        flights.append(SSLRequest().build() if request == "ssl" else GSSENCRequest().build())
    extra = draw(st.dictionaries(_name.filter(lambda n: n not in ("user",)), _value, max_size=4))
    params = (("user", draw(_name)), *extra.items())
    version = draw(st.sampled_from([3 << 16, 3 << 16 | 1, 3 << 16 | 2]))
    flights.append(StartupMessage(params, version).build())
    auth = draw(st.sampled_from(["trust", "cleartext", "sasl"]))
    if auth == "cleartext":
        flights.append(PasswordMessage(draw(_no_nul)).build())
    elif auth == "sasl":
        flights.append(SASLInitialResponse("SCRAM-SHA-256", draw(st.none() | st.binary(max_size=40))).build())
        flights.append(SASLResponse(draw(st.binary(max_size=40))).build())
    messages = draw(st.lists(_query_message(), max_size=25))
    if draw(st.booleans()):
        messages.append(Terminate().build())
    flights.append(b"".join(messages))
    return auth, flights


@SETTINGS
@given(client_conversation(), st.data())
def test_client_chunking_does_not_change_events(conversation: tuple[str, list[bytes]], data: st.DataObject) -> None:
    auth, flights = conversation
    whole = _run_client(auth, [[f] for f in flights])
    assert whole[3] is None, whole[3]  # a valid conversation is accepted
    chunked = _run_client(auth, [_chunks(data, f) for f in flights])
    bytewise = _run_client(auth, [[f[i : i + 1] for i in range(len(f))] for f in flights])
    assert chunked == whole
    assert bytewise == whole
    # every refused Parse made the machine drop what followed until Sync
    events = whole[0]
    for i, event in enumerate(events):
        if isinstance(event, Parse) and event.query.startswith(b"!"):
            assert all(isinstance(e, (Sync, Terminate)) for e in events[i + 1 : i + 2])


@SETTINGS
@given(st.sampled_from(["trust", "cleartext", "sasl"]), st.binary(max_size=300), st.data(), st.booleans())
def test_client_arbitrary_bytes_fail_closed(auth: str, blob: bytes, data: st.DataObject, prefixed: bool) -> None:
    if prefixed:  # reach the query phase first, then garbage
        blob = StartupMessage((("user", "u"),)).build() + {
            "trust": b"",
            "cleartext": PasswordMessage(b"pw").build(),
            "sasl": SASLInitialResponse("SCRAM-SHA-256", b"x").build() + SASLResponse(b"y").build(),
        }[auth] + blob
    events, sent, refusals, error = _run_client(auth, [_chunks(data, blob)])
    assert error is None or error.strip(), "a protocol error says what was wrong"


# --- engine side -----------------------------------------------------------------------------


class EngineDriver:
    def __init__(self, track: bool = True) -> None:
        self.engine = EngineFacing(track_messages=track)
        self.engine.send(StartupMessage((("user", "u"),)))
        self.events: list[object] = []
        self.relayed = bytearray()
        self.changes: list[ParameterStatus] = []

    def _act(self) -> None:
        e, state = self.engine, self.engine.state
        if state is EngineState.SEND_PASSWORD:
            e.send(PasswordMessage(b"pw"))
        elif state is EngineState.SEND_SASL_INITIAL:
            e.send(SASLInitialResponse("SCRAM-SHA-256", b"n,,n=,r=x"))
        elif state is EngineState.SEND_SASL_RESPONSE:
            e.send(SASLResponse(b"c=biws"))
        else:  # pragma: no cover
            raise AssertionError(f"paused in {state}")

    def pump(self) -> None:
        for _ in range(MAX_STEPS):
            event = self.engine.next_event()
            if event is NEED_DATA or isinstance(event, ConnectionClosed):
                return
            if event is PAUSED:
                self._act()
                continue
            if isinstance(event, BackendData):
                self.relayed += event.data
                self.changes += event.parameter_changes
            else:
                self.events.append(event)
        raise AssertionError("no progress: the state machine loops")

    def feed(self, pieces: list[bytes]) -> None:
        for piece in filter(None, pieces):
            self.engine.receive_data(piece)
            self.pump()


def _run_engine(flights: list[list[bytes]], refusals: list[Refusal], track: bool = True) -> tuple:
    driver = EngineDriver(track)
    error = None
    try:
        for index, flight in enumerate(flights):
            if index == len(flights) - 1:
                for refusal in refusals:
                    driver.engine.send(refusal)
            driver.feed(flight)
        driver.engine.receive_data(b"")
        driver.pump()
        assert driver.engine.state is EngineState.CLOSED  # end of stream always ends it
    except RemoteProtocolError as exc:
        error = str(exc)
    e = driver.engine
    return driver.events, bytes(driver.relayed), driver.changes, e.parameters, e.transaction_status, e.state, error


def _token(i: int) -> str:
    return "dbkeep_refused_" + bytes([i] * 16).hex()


@st.composite
def _backend_message(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["Z", "S", "E", "N", "sentinel", "other", "big"]))
    if kind == "Z":
        return ReadyForQuery(draw(st.sampled_from("ITE"))).build()
    if kind == "S":
        return ParameterStatus(draw(_name), draw(_value)).build()
    if kind == "E":
        return ErrorResponse.create("ERROR", draw(st.sampled_from(["42601", "22012"])), draw(_value)).build()
    if kind == "N":
        return NoticeResponse.create("NOTICE", "00000", draw(_value)).build()
    if kind == "sentinel":
        token = _token(draw(st.integers(0, 2)))
        return ErrorResponse.create("ERROR", "42601", f'syntax error at or near "{token}"').build()
    if kind == "big":
        return typed_message(b"D", b"x" * draw(st.integers(0, 20_000)))
    return typed_message(bytes([draw(st.sampled_from(b"TDC123nstAGHdcIKW"))]), draw(st.binary(max_size=60)))


@st.composite
def engine_conversation(draw: st.DrawFn) -> list[bytes]:
    flights = []
    auth = draw(st.sampled_from(["trust", "cleartext", "sasl"]))
    if auth == "cleartext":
        flights.append(AuthenticationCleartextPassword().build())
    elif auth == "sasl":
        flights.append(AuthenticationSASL(("SCRAM-SHA-256",)).build())
        flights.append(AuthenticationSASLContinue(b"r=x,s=c2FsdA==,i=1").build())
    setup = [
        AuthenticationSASLFinal(b"v=AAAA").build() if auth == "sasl" else b"",
        AuthenticationOk().build(),
        NoticeResponse.create("NOTICE", "00000", "welcome").build(),
        *(ParameterStatus(n, v).build() for n, v in draw(st.dictionaries(_name, _value, max_size=4)).items()),
        BackendKeyData(draw(st.integers(1, 2**31 - 1)), draw(st.binary(min_size=4, max_size=32))).build(),
        ReadyForQuery().build(),
    ]
    flights.append(b"".join(setup))
    flights.append(b"".join(draw(st.lists(_backend_message(), max_size=20))))
    return flights


@SETTINGS
@given(engine_conversation(), st.lists(st.integers(0, 1), max_size=2, unique=True), st.data())
def test_engine_chunking_does_not_change_the_relay(
    flights: list[bytes], tokens: list[int], data: st.DataObject
) -> None:
    refusals = [Refusal(ErrorResponse.create("ERROR", "42501", f"refused {i}"), _token(i), b"") for i in tokens]
    whole = _run_engine([[f] for f in flights], refusals)
    assert whole[-1] is None, whole[-1]
    chunked = _run_engine([_chunks(data, f) for f in flights], refusals)
    bytewise = _run_engine([[f[i : i + 1] for i in range(len(f))] for f in flights], refusals)
    assert chunked == whole
    assert bytewise == whole
    relayed = whole[1]
    query_phase = flights[-1]
    for i in tokens:  # a pending token's error is replaced, once
        sentinel = ErrorResponse.create("ERROR", "42601", f'syntax error at or near "{_token(i)}"').build()
        if sentinel in query_phase:
            assert relayed.count(f"refused {i}".encode()) == 1
    if not tokens:
        assert relayed == query_phase  # without refusals the relay is the identity
    untracked = _run_engine([_chunks(data, f) for f in flights], [], track=False)
    assert untracked[1] == query_phase


@SETTINGS
@given(st.binary(max_size=300), st.data(), st.sampled_from(["startup", "ready", "ready-refusing", "raw"]))
def test_engine_arbitrary_bytes_fail_closed(blob: bytes, data: st.DataObject, phase: str) -> None:
    prefix = b"" if phase == "startup" else AuthenticationOk().build() + ReadyForQuery().build()
    refusals = []
    if phase == "ready-refusing":
        refusals.append(Refusal(ErrorResponse.create("ERROR", "42501", "r"), _token(0), b""))
    result = _run_engine([[prefix], _chunks(data, blob)], refusals, track=phase != "raw")
    assert result[-1] is None or result[-1].strip(), "a protocol error says what was wrong"


# --- message parsers and round trips ---------------------------------------------------------

_PARSERS: list[Callable[[bytes], object]] = [
    parse_authentication,
    parse_startup_packet,
    ErrorResponse.parse,
    NoticeResponse.parse,
    ParameterStatus.parse,
    BackendKeyData.parse,
    ReadyForQuery.parse,
    NegotiateProtocolVersion.parse,
    PasswordMessage.parse,
    SASLInitialResponse.parse,
    SASLResponse.parse,
    Query.parse,
    Parse.parse,
    FunctionCall.parse,
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_PARSERS), st.binary(max_size=80), st.booleans())
def test_parsers_fail_closed(parser: Callable[[bytes], object], body: bytes, framed: bool) -> None:
    if framed and body:  # give the length word a chance to be right
        body = body[:1] + (len(body) + 3).to_bytes(4, "big") + body[1:]
    try:
        parser(body)
    except RemoteProtocolError:
        pass


_fields = st.lists(
    st.tuples(st.sampled_from("SVCMDHPpqWstcdnFLR"), _value.map(lambda v: v.replace("\x00", ""))), max_size=8
)


@SETTINGS
@given(_fields)
def test_error_response_round_trip(fields: list[tuple[str, str]]) -> None:
    message = ErrorResponse(tuple(fields))
    assert ErrorResponse.parse(message.build()) == message


@SETTINGS
@given(st.dictionaries(_name, _value.map(lambda v: v.replace("\x00", "")), max_size=6), st.integers(0, 0xFFFF))
def test_startup_round_trip(params: dict[str, str], minor: int) -> None:
    message = StartupMessage(tuple(params.items()), 3 << 16 | minor)
    assert parse_startup_packet(message.build()) == message


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=16), st.text(max_size=16), st.binary(min_size=1, max_size=16))
def test_scram_client_and_server_agree(password: str, other: str, salt: bytes) -> None:
    secret = ScramSecret.from_password(password, salt=salt, iterations=2)
    client = ScramSha256Client(password, nonce=b"cnonce")
    server = ScramSha256Server(secret, nonce=b"snonce")
    client.verify_final(server.server_final(client.final_message(server.server_first(client.first_message()))))
    assert client.done and server.authenticated
    if ScramSecret.from_password(other, salt=salt, iterations=2) != secret:
        wrong = ScramSha256Client(other, nonce=b"cnonce")
        server = ScramSha256Server(secret, nonce=b"snonce")
        try:
            server.server_final(wrong.final_message(server.server_first(wrong.first_message())))
        except RemoteProtocolError:
            pass
        else:  # pragma: no cover
            raise AssertionError("a wrong password was accepted")
