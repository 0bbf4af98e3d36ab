"""MySQL state machines: client <-> gateway <-> engine pairs over an in-memory link.

Both legs of the gateway are exercised in both roles: the fake engine is a ClientFacing (the
server role) checking mysql_native_password like MariaDB, the fake client an EngineFacing (the
client role). The Relay sits between them. A real pymysql client is also driven against a
ClientFacing over a socketpair (no port, no server).
"""

from __future__ import annotations

import datetime
import re
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import pymysql
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbkeep.errors import LocalProtocolError, RemoteProtocolError
from dbkeep.gateway.mysql import (
    NEED_DATA,
    AuthData,
    AuthMoreData,
    AuthSwitchRequest,
    Capability,
    ChangeUser,
    ClientFacing,
    ClientState,
    ComChangeUser,
    Command,
    ConnectionClosed,
    Continuation,
    EngineFacing,
    EngineState,
    ErrPacket,
    HandshakeResponse41,
    InitialHandshake,
    LoginRequested,
    OkPacket,
    Passthrough,
    Prepare,
    ProcessKill,
    Query,
    Quit,
    Relay,
    ResetConnection,
    SSLRequest,
    SslRequested,
    client_greeting,
)
from dbkeep.gateway.mysql.auth import native_password_check, native_password_hash
from dbkeep.gateway.mysql.auth import native_password_response as native
from dbkeep.gateway.mysql.wire import MAX_PAYLOAD, PacketBuffer, frame

C = Capability
# Capabilities of MariaDB 10.11's greeting (captured)
MARIADB_CAPS = Capability(0x1D_81FF_FFFE)
SCRAMBLE = b"0123456789abcdefghij"
INSECURE = ("Connections using insecure transport are prohibited while "
            "--require_secure_transport=ON.")
SYSTEM_USER = ("Access denied; you need (at least one of) the SYSTEM_USER privilege(s) for "
               "this operation")
CLIENT_CAPS = (C.CLIENT_LONG_FLAG | C.CLIENT_PROTOCOL_41 | C.CLIENT_TRANSACTIONS
               | C.CLIENT_SECURE_CONNECTION | C.CLIENT_MULTI_RESULTS | C.CLIENT_PLUGIN_AUTH
               | C.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA | C.CLIENT_CONNECT_ATTRS
               | C.CLIENT_LOCAL_FILES | C.CLIENT_SESSION_TRACK | C.MARIADB_CLIENT_PROGRESS)


def engine_greeting(*, tls: bool = True) -> InitialHandshake:
    caps = MARIADB_CAPS if tls else MARIADB_CAPS & ~C.CLIENT_SSL
    return InitialHandshake("5.5.5-10.11.19-MariaDB-fake", 42, SCRAMBLE, Capability(caps), 8,
                            2, "mysql_native_password")


def packets(data: bytes) -> list[tuple[int, bytes]]:
    reader = PacketBuffer()
    reader.feed(data)
    out = []
    while (p := reader.next_packet()) is not None:
        out.append((p.seq, bytes(p.payload)))
    assert reader.buffered == 0
    return out


def query_event(sql: str | bytes, code: int = 0x03) -> Query:
    body = sql.encode() if isinstance(sql, str) else sql
    return Query(memoryview(frame(bytes([code]) + body, 0)), body.decode("latin-1"))


# --- fakes ------------------------------------------------------------------------------------


class FakeEngine:
    """A MariaDB imitation built on ClientFacing (the server role)."""

    PASSWORDS: ClassVar[dict[str, bytes]] = {
        "alice": b"alicepw", "carol": b"carolpw", "rdsadmin": b"secret",
    }

    def __init__(self, *, tls: bool = True) -> None:
        self.conn = ClientFacing()
        self.outbox: list[bytes] = [self.conn.send(engine_greeting(tls=tls))]
        self.user: str | None = None
        self.pending_user: str | None = None
        self.statements: list[str] = []
        self.continuations: list[bytes] = []
        self.logins: list[LoginRequested] = []
        self.tls_done = False

    def _check(self, user: str, response: bytes) -> bool:
        password = self.PASSWORDS.get(user)
        return password is not None and native_password_check(
            response, SCRAMBLE, native_password_hash(password))

    def feed(self, data: bytes) -> None:
        self.conn.receive_data(data)
        while (event := self.conn.next_event()) is not NEED_DATA:
            if isinstance(event, SslRequested):
                self.conn.tls_established()
                self.tls_done = True
            elif isinstance(event, LoginRequested):
                self.logins.append(event)
                if event.response.auth_plugin_name != "mysql_native_password":
                    self.pending_user = event.user
                    self.outbox.append(self.conn.send(
                        AuthSwitchRequest("mysql_native_password", SCRAMBLE + b"\x00")))
                else:
                    self._finish(event.user, event.response.auth_response)
            elif isinstance(event, ChangeUser):
                self.pending_user = event.user  # MariaDB always restarts authentication
                self.outbox.append(self.conn.send(
                    AuthSwitchRequest("mysql_native_password", SCRAMBLE + b"\x00")))
            elif isinstance(event, AuthData):
                assert self.pending_user is not None
                self._finish(self.pending_user, event.payload)
            elif isinstance(event, Query):
                self.statements.append(event.sql)
                signal = re.match(r"SIGNAL SQLSTATE '(\w{5})' SET MYSQL_ERRNO = (\d+), "
                                  r"MESSAGE_TEXT = _utf8mb4 X'([0-9a-f]*)'", event.sql)
                if signal:
                    self.outbox.append(self.conn.send(ErrPacket(
                        int(signal.group(2)), bytes.fromhex(signal.group(3)).decode(),
                        signal.group(1))))
                elif event.sql.startswith("LOAD DATA LOCAL"):
                    self.outbox.append(frame(b"\xfbdata.csv", 1))  # raw: LOCAL INFILE request
                else:
                    self.outbox.append(self.conn.send(OkPacket()))
            elif isinstance(event, Continuation):
                self.continuations.append(bytes(event.payload))
            elif isinstance(event, (Command, ProcessKill, ResetConnection, Prepare)):
                self.outbox.append(self.conn.send(OkPacket()))
            elif isinstance(event, (Quit, ConnectionClosed)):
                return

    def _finish(self, user: str, response: bytes) -> None:
        if self._check(user, response):
            self.user = user
            self.outbox.append(self.conn.send(OkPacket()))
        else:
            self.outbox.append(self.conn.send(ErrPacket(
                1045, f"Access denied for user '{user}'@'localhost' (using password: YES)",
                "28000")))
        self.pending_user = None


class FakeClient:
    """A MySQL client built on EngineFacing (the client role)."""

    def __init__(self, user: bytes, password: bytes, *, tls: bool = False,
                 plugin: str = "mysql_native_password", charset: int = 45) -> None:
        self.conn = EngineFacing()
        self.user, self.password, self.tls, self.plugin = user, password, tls, plugin
        self.charset = charset
        self.outbox: list[bytes] = []
        self.events: list[object] = []
        self.responses: list[tuple[int, bytes]] = []
        self.raw_in = bytearray()
        self._response: HandshakeResponse41 | None = None
        self._responses = PacketBuffer()
        self.scramble = b""

    def feed(self, data: bytes) -> None:
        self.raw_in += data
        self.conn.receive_data(data)
        while (event := self.conn.next_event()) is not NEED_DATA:
            self.events.append(event)
            if isinstance(event, InitialHandshake):
                self.scramble = event.scramble
                caps = CLIENT_CAPS | (C.CLIENT_SSL if self.tls else 0)
                auth = native(self.password, event.scramble) if self.plugin.startswith(
                    "mysql_native") else b""
                self._response = HandshakeResponse41(
                    Capability(caps), 1 << 24, self.charset, self.user, auth, None,
                    self.plugin, ((b"_client_name", b"fake"),))
                if self.tls:
                    self.outbox.append(self.conn.send(self._response.ssl_request()))
                    self.conn.tls_established()
                self.outbox.append(self.conn.send(self._response))
            elif isinstance(event, AuthSwitchRequest):
                self.outbox.append(self.conn.send(AuthData(native(self.password, event.data))))
            elif isinstance(event, Passthrough):
                self._responses.feed(event.data)  # the gateway may pass partial packets
                while (p := self._responses.next_packet()) is not None:
                    self.responses.append((p.seq, bytes(p.payload)))

    def send(self, event: object) -> None:
        self.outbox.append(bytes(self.conn.send(event)))  # type: ignore[arg-type]

    def query(self, sql: str) -> None:
        self.send(query_event(sql))

    def change_user(self, user: bytes, password: bytes) -> None:
        self.password = password  # answers the engine's switch request too
        request = ComChangeUser(user, native(password, self.scramble), b"", 45,
                                "mysql_native_password")
        raw = memoryview(frame(request.build(CLIENT_CAPS), 0))
        self.send(ChangeUser(raw, request, user.decode()))


class Link:
    """Moves bytes between a fake client, a Relay and a fake engine until nothing moves."""

    def __init__(self, client: FakeClient, engine: FakeEngine,
                 decide: Callable[[object], ErrPacket | None] | None = None, *,
                 client_tls: bool = True, engine_tls: bool = False) -> None:
        self.client, self.engine = client, engine
        self.decisions: list[object] = []
        self._decide = decide or (lambda event: None)
        self.relay = Relay(self.decide, client_tls=client_tls, engine_tls=engine_tls)
        self.to_client = bytearray()
        self.to_engine = bytearray()
        self.closed = False

    def decide(self, event: object) -> ErrPacket | None:
        self.decisions.append(event)
        return self._decide(event)

    def _apply(self, out: object) -> None:
        for data in out.to_client:  # type: ignore[attr-defined]
            self.to_client += data
            if self.client.conn.state is not EngineState.CLOSED:
                self.client.feed(bytes(data))
        for data in out.to_engine:  # type: ignore[attr-defined]
            self.to_engine += data
            self.engine.feed(bytes(data))
        self.closed |= out.close  # type: ignore[attr-defined]
        if out.start_client_tls:  # type: ignore[attr-defined]
            self._apply(self.relay.client_tls_established())
        if out.start_engine_tls:  # type: ignore[attr-defined]
            self._apply(self.relay.engine_tls_established())

    def pump(self) -> None:
        for _ in range(1000):
            moved = False
            while self.engine.outbox:
                moved = True
                self._apply(self.relay.engine_data(self.engine.outbox.pop(0)))
            while self.client.outbox:
                moved = True
                self._apply(self.relay.client_data(self.client.outbox.pop(0)))
            if not moved:
                return
        pytest.fail("link did not settle")


def connect(user: bytes = b"alice", password: bytes = b"alicepw", *, client_tls: bool = False,
            engine_tls: bool = False, decide: Callable[[object], ErrPacket | None] | None = None,
            plugin: str = "mysql_native_password") -> Link:
    link = Link(FakeClient(user, password, tls=client_tls, plugin=plugin), FakeEngine(),
                decide, engine_tls=engine_tls)
    link.pump()
    return link


# --- logins -----------------------------------------------------------------------------------


@pytest.mark.parametrize("client_tls", [False, True])
@pytest.mark.parametrize("engine_tls", [False, True])
def test_native_password_login_is_relayed(client_tls: bool, engine_tls: bool) -> None:
    link = connect(client_tls=client_tls, engine_tls=engine_tls)
    assert link.engine.user == "alice"
    assert link.engine.tls_done is engine_tls
    assert link.relay.client.tls is client_tls and link.relay.engine.tls is engine_tls
    assert link.client.conn.state is EngineState.COMMAND
    assert link.relay.client.state is ClientState.COMMAND
    # each leg numbers its own packets: the SSLRequest shifts only its own leg by one
    client_ok_seq = packets(bytes(link.to_client))[-1][0]
    engine_login_seq = packets(bytes(link.to_engine))[-1][0]
    assert client_ok_seq == (3 if client_tls else 2)
    assert engine_login_seq == (2 if engine_tls else 1)
    login = link.decisions[0]
    assert isinstance(login, LoginRequested) and login.tls is client_tls
    # the engine sees the client's response with only the leg's capabilities adjusted
    seen = link.engine.logins[0].response
    assert bool(seen.capabilities & C.CLIENT_SSL) is engine_tls
    assert seen.auth_response == link.client._response.auth_response  # type: ignore[union-attr]
    assert seen.attributes == ((b"_client_name", b"fake"),)


def test_auth_switch_is_relayed() -> None:
    # a client starting with another plugin is switched by the engine, through the gateway
    link = connect(plugin="client_ed25519")
    assert link.engine.user == "alice"
    assert any(isinstance(e, AuthSwitchRequest) for e in link.client.events)
    assert [s for s, _ in packets(bytes(link.to_client))] == [0, 2, 4]


def test_wrong_password_closes_the_session() -> None:
    link = connect(password=b"nope")
    assert link.engine.user is None
    assert link.closed
    err = link.client.events[-1]
    assert isinstance(err, ErrPacket) and (err.errno, err.sqlstate) == (1045, "28000")
    assert link.relay.client.state is ClientState.CLOSED
    assert link.client.conn.state is EngineState.CLOSED


def test_rdsadmin_is_refused_before_the_engine_sees_it() -> None:
    def decide(event: object) -> ErrPacket | None:
        if isinstance(event, LoginRequested) and event.user == "rdsadmin":
            return ErrPacket(1045, "Access denied for user 'rdsadmin'", "28000")
        return None

    for name in (b"rdsadmin", b"'rdsadmin'"):  # the server strips the quotes: so do we
        link = connect(name, b"secret", decide=decide)
        assert link.closed and link.engine.user is None
        assert link.engine.logins == []
        assert packets(bytes(link.to_client))[-1] == (2, ErrPacket(
            1045, "Access denied for user 'rdsadmin'", "28000").build())


def test_require_secure_transport_answer() -> None:
    def decide(event: object) -> ErrPacket | None:
        if isinstance(event, LoginRequested) and not event.tls:
            return ErrPacket(3159, INSECURE, "HY000")
        return None

    link = connect(decide=decide)
    seq, payload = packets(bytes(link.to_client))[-1]
    assert seq == 2
    assert payload == b"\xff\x57\x0c#HY000" + INSECURE.encode()
    assert connect(client_tls=True, decide=decide).engine.user == "alice"


def test_engine_refusing_the_connection_is_passed_on() -> None:
    blocked = ErrPacket(1129, "Host '10.0.0.1' is blocked because of many connection errors",
                        None)
    relay = Relay(lambda e: None, client_tls=True)
    out = relay.engine_data(frame(blocked.build(None), 0))
    assert out.close
    assert b"".join(out.to_client) == frame(blocked.build(None), 0)  # seq 0, no marker


# --- command phase ----------------------------------------------------------------------------


def test_queries_pass_and_responses_come_back_untouched() -> None:
    link = connect()
    link.client.query("DO 1")
    link.client.send(query_event("SELECT ?", code=0x16))
    link.client.send(query_event(b"", code=0x0E))
    link.pump()
    assert link.engine.statements == ["DO 1"]
    assert [type(d).__name__ for d in link.decisions] == [
        "LoginRequested", "Query", "Prepare", "Command"]
    assert link.client.responses == [(1, OkPacket().build(link.relay.client.capabilities))] * 3


def test_refused_statement_answered_in_order_by_the_engine() -> None:
    def decide(event: object) -> ErrPacket | None:
        if isinstance(event, Query) and "rdsadmin" in event.sql:
            return ErrPacket(1227, SYSTEM_USER, "42000")
        return None

    link = connect(decide=decide)
    for sql in ("DO 1", "DROP USER rdsadmin", "DO 2"):  # pipelined
        link.client.query(sql)
    link.pump()
    assert link.engine.statements[0] == "DO 1" and link.engine.statements[2] == "DO 2"
    assert link.engine.statements[1].startswith("SIGNAL SQLSTATE '42000' SET MYSQL_ERRNO = 1227")
    ok = OkPacket().build(link.relay.client.capabilities)
    err = ErrPacket(1227, SYSTEM_USER, "42000").build()
    assert link.client.responses == [(1, ok), (1, err), (1, ok)]


def test_refused_command_without_response_is_dropped() -> None:
    link = connect(decide=lambda e: ErrPacket(1, "no") if isinstance(e, Command) else None)
    before = len(link.to_engine), len(link.to_client)
    out = link.relay.client_data(frame(b"\x19\x01\x00\x00\x00", 0))  # COM_STMT_CLOSE
    assert out.to_engine == [] and out.to_client == []
    assert (len(link.to_engine), len(link.to_client)) == before


def test_refused_statement_answered_by_the_gateway() -> None:
    link = Link(FakeClient(b"alice", b"alicepw"), FakeEngine(),
                lambda e: ErrPacket(1227, SYSTEM_USER, "42000") if isinstance(e, Query) else None)
    link.relay = Relay(link.decide, client_tls=True, refuse_in_order=False)
    link.pump()
    link.client.query("DROP USER rdsadmin")
    link.pump()
    assert link.engine.statements == []
    assert packets(bytes(link.to_client))[-1] == (1, ErrPacket(1227, SYSTEM_USER, "42000").build())


def test_change_user_relayed_and_refused() -> None:
    def decide(event: object) -> ErrPacket | None:
        if isinstance(event, ChangeUser) and event.user == "rdsadmin":
            return ErrPacket(1227, SYSTEM_USER, "42000")
        return None

    link = connect(decide=decide)
    link.client.change_user(b"carol", b"carolpw")
    link.pump()
    assert link.engine.user == "carol"
    assert link.client.conn.state is EngineState.COMMAND
    assert link.relay.client.state is ClientState.COMMAND
    # refused: answered by the gateway at sequence id 1, the engine never sees it
    link.client.change_user(b"rdsadmin", b"secret")
    link.pump()
    assert link.engine.user == "carol"
    assert isinstance(link.client.events[-1], ErrPacket)
    link.client.query("DO 3")
    link.pump()
    assert link.engine.statements[-1] == "DO 3"
    # a failed change of user leaves the session usable (MariaDB keeps the old user)
    link.client.change_user(b"alice", b"wrong")
    link.pump()
    assert link.engine.user == "carol"
    assert link.relay.client.state is ClientState.COMMAND


def test_pipelined_change_user_cannot_be_misattributed() -> None:
    # 1. the client may not send its auth answer (or anything) before the switch request
    link = connect()
    link.client.query("DO 1")
    link.client.change_user(b"carol", b"carolpw")
    pipelined = b"".join(link.client.outbox) + frame(b"\x00" * 20, 2)
    link.client.outbox.clear()
    with pytest.raises(RemoteProtocolError, match="out of turn"):
        link.relay.client_data(pipelined)

    # 2. the engine's answer to an earlier command cannot pass for the change of user's result
    relay = connect().relay
    relay.client_data(frame(b"\x03DO 1", 0) + frame(ComChangeUser(b"carol", b"x" * 20)
                                                      .build(CLIENT_CAPS), 0))
    leftover_err = frame(ErrPacket(1064, "syntax").build(), 1)
    switch = frame(AuthSwitchRequest("mysql_native_password", SCRAMBLE + b"\x00").build(), 1)
    with pytest.raises(RemoteProtocolError, match="after a change of user"):
        relay.engine_data(leftover_err + switch)
    relay = connect().relay
    relay.client_data(frame(b"\x03DO 1", 0) + frame(ComChangeUser(b"carol", b"x" * 20)
                                                      .build(CLIENT_CAPS), 0))
    with pytest.raises(RemoteProtocolError, match="other than AuthSwitchRequest"):
        relay.engine_data(frame(OkPacket().build(), 1))


def test_load_data_local_infile_with_sequence_wrap() -> None:
    link = connect()
    link.client.query("LOAD DATA LOCAL INFILE 'data.csv' INTO TABLE t")
    link.pump()
    assert link.client.responses[-1] == (1, b"\xfbdata.csv")
    # 300 content packets from sequence id 2: ids wrap to 0 after 255 -- still content,
    # even when the content looks like a command
    content = b"".join(
        frame(b"\x03DROP USER rdsadmin" if (2 + i) % 256 == 0 else b"row %d\n" % i,
              (2 + i) % 256) for i in range(300))
    content += frame(b"", (2 + 300) % 256)
    out = link.relay.client_data(content)
    assert b"".join(bytes(b) for b in out.to_engine) == content
    assert all(isinstance(e, Continuation) for e in out.events)
    assert [type(d).__name__ for d in link.decisions] == ["LoginRequested", "Query"]
    # after the empty terminator, sequence id 0 starts a command again
    out = link.relay.client_data(frame(b"\x03DO 1", 0))
    assert isinstance(out.events[0], Query)


def test_multi_packet_query_is_reassembled() -> None:
    link = connect()
    sql = "SELECT '" + "x" * (MAX_PAYLOAD + 100) + "'"
    wire = frame(b"\x03" + sql.encode(), 0)
    out = link.relay.client_data(wire)
    (query,) = out.events
    assert isinstance(query, Query) and query.sql == sql
    assert b"".join(bytes(b) for b in out.to_engine) == wire


def test_oversized_command_is_refused() -> None:
    relay = Relay(lambda e: None, client_tls=False, max_message_size=1000)
    link = Link(FakeClient(b"alice", b"alicepw"), FakeEngine(), engine_tls=False)
    link.relay = relay
    relay._decide = link.decide  # type: ignore[attr-defined]
    link.pump()
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        relay.client_data(b"\xe9\x03\x00\x00\x03")
    assert relay.client_error(ErrPacket(1153, "Got a packet bigger than 'max_allowed_packet' "
                                              "bytes", "08S01"))[3] == 1


def test_kill_reset_quit_and_refused_commands() -> None:
    conn = logged_in_client_facing()
    conn.receive_data(frame(b"\x0c" + (1234).to_bytes(4, "little"), 0) + frame(b"\x1f", 0))
    kill = conn.next_event()
    assert isinstance(kill, ProcessKill) and kill.thread_id == 1234
    assert isinstance(conn.next_event(), ResetConnection)
    for bad, match in ((b"", "empty"), (b"\xfe\x05\x03DO 1", "COM_MULTI"), (b"\x0c\x01", "4-byte")):
        conn = logged_in_client_facing()
        conn.receive_data(frame(bad, 0))
        with pytest.raises(RemoteProtocolError, match=match):
            conn.next_event()
    conn = logged_in_client_facing()
    conn.receive_data(frame(b"\x01", 0) + b"junk after quit")
    assert isinstance(conn.next_event(), Quit)
    assert conn.state is ClientState.CLOSED
    assert conn.next_event() is NEED_DATA
    assert conn.trailing_data == (frame(b"\x01", 0)[5:] + b"junk after quit", False) or (
        conn.trailing_data[0].endswith(b"junk after quit"))


# --- ClientFacing unit behaviour --------------------------------------------------------------


def logged_in_client_facing(charset: int = 45) -> ClientFacing:
    conn = ClientFacing()
    conn.send(client_greeting(engine_greeting(), tls=True))
    resp = HandshakeResponse41(CLIENT_CAPS, 1 << 24, charset, b"alice", b"x" * 20, None,
                               "mysql_native_password")
    conn.receive_data(frame(resp.build(), 1))
    assert isinstance(conn.next_event(), LoginRequested)
    conn.send(OkPacket())
    assert conn.state is ClientState.COMMAND
    return conn


def test_no_cleartext_after_ssl_request() -> None:
    ssl_request = SSLRequest(CLIENT_CAPS | C.CLIENT_SSL, 1 << 24, 45).build()
    # bytes pipelined behind the SSLRequest would be read in cleartext: refused
    conn = ClientFacing()
    conn.send(client_greeting(engine_greeting(), tls=True))
    conn.receive_data(frame(ssl_request, 1) + b"\x16\x03\x01")
    with pytest.raises(RemoteProtocolError, match="cleartext"):
        conn.next_event()
    assert conn.state is ClientState.ERROR
    # the driver is told how much it may read so that never happens
    conn = ClientFacing()
    conn.send(client_greeting(engine_greeting(), tls=True))
    assert conn.receive_limit() == 4
    conn.receive_data(frame(ssl_request, 1)[:4])
    assert conn.receive_limit() == 32
    conn.receive_data(frame(ssl_request, 1)[4:])
    assert conn.receive_limit() == 0
    assert isinstance(conn.next_event(), SslRequested)
    assert conn.receive_limit() == 0
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"early")
    conn.tls_established()
    assert conn.receive_limit() is None or conn.receive_limit() == 4
    # the response after TLS is read with the SSLRequest's capabilities, as the server reads it:
    # a database the SSLRequest did not announce is not one (the server reads those bytes as the
    # plugin name, since CLIENT_PLUGIN_AUTH was announced)
    other = HandshakeResponse41(CLIENT_CAPS | C.CLIENT_SSL | C.CLIENT_CONNECT_WITH_DB,
                                1 << 24, 45, b"alice", b"", b"db")
    conn.receive_data(frame(other.build(), 2))
    login = conn.next_event()
    assert isinstance(login, LoginRequested)
    assert login.response.capabilities == CLIENT_CAPS | C.CLIENT_SSL
    assert login.response.database is None and login.response.auth_plugin_name == "db"


# MariaDB Connector/J 2.7.6 with useSsl=true, captured: its response after TLS drops CLIENT_SSL
CONNECTOR_J_SSL_REQUEST = bytes.fromhex("8aabbe0100000040e0" + "00" * 23)
CONNECTOR_J_TLS_RESPONSE = bytes.fromhex(
    "8aa3be0100000040e0" + "00" * 23 + "61646d696e0014333dcfff21f48f4723027b9a33ef7223dbdff3d9617070"
    "6462006d7973716c5f6e61746976655f70617373776f726400970c5f636c69656e745f6e616d65134d61726961444220436f"
    "6e6e6563746f722f4a0f5f636c69656e745f76657273696f6e05322e372e360c5f7365727665725f686f7374093132372e30"
    "2e302e31035f6f73054c696e7578045f706964053133373038075f74687265616401310c5f6a6176615f76656e646f720644"
    "656269616e0d5f6a6176615f76657273696f6e0731372e302e3135")


def test_connector_j_response_without_client_ssl_after_tls_logs_in_as_on_the_engine() -> None:
    # the engine keeps the SSLRequest's capabilities and ignores the second packet's field
    assert int.from_bytes(CONNECTOR_J_SSL_REQUEST[:4], "little") ^ int.from_bytes(CONNECTOR_J_TLS_RESPONSE[:4], "little") == C.CLIENT_SSL
    conn = ClientFacing()
    conn.send(client_greeting(engine_greeting(), tls=True))
    conn.receive_data(frame(CONNECTOR_J_SSL_REQUEST, 1))
    request = conn.next_event()
    assert isinstance(request, SslRequested)
    conn.tls_established()
    conn.receive_data(frame(CONNECTOR_J_TLS_RESPONSE, 2))
    login = conn.next_event()
    assert isinstance(login, LoginRequested)
    assert login.user == "admin" and login.tls
    assert login.response.database == b"appdb" and login.response.auth_plugin_name == "mysql_native_password"
    assert login.response.capabilities == request.request.capabilities
    assert login.capabilities & C.CLIENT_SSL
    assert dict(login.response.attributes)[b"_client_name"] == b"MariaDB Connector/J"


def test_ssl_request_needs_tls_offered_and_login_needs_4_1() -> None:
    conn = ClientFacing()
    conn.send(client_greeting(engine_greeting(), tls=False))
    conn.receive_data(frame(SSLRequest(CLIENT_CAPS, 0, 45).build(), 1))
    with pytest.raises(RemoteProtocolError, match="not offered"):
        conn.next_event()
    conn = ClientFacing()
    conn.send(client_greeting(engine_greeting(), tls=True))
    conn.receive_data(frame(HandshakeResponse41(CLIENT_CAPS | C.CLIENT_COMPRESS, 0, 45, b"a",
                                                b"").build(), 1))
    with pytest.raises(RemoteProtocolError, match="compression"):
        conn.next_event()
    # after a failed login the gateway can still say why, as MariaDB does ("Bad handshake")
    bad = ErrPacket(1043, "Bad handshake", "08S01")
    assert conn.send(bad) == frame(bad.build(None), 2)
    assert conn.state is ClientState.CLOSED


def test_sequence_and_turn_checks() -> None:
    conn = ClientFacing()
    conn.send(client_greeting(engine_greeting(), tls=True))
    resp = HandshakeResponse41(CLIENT_CAPS, 0, 45, b"alice", b"x" * 20, None,
                               "mysql_native_password")
    conn.receive_data(frame(resp.build(), 3))
    with pytest.raises(RemoteProtocolError, match="out of order"):
        conn.next_event()
    conn = ClientFacing()
    conn.send(client_greeting(engine_greeting(), tls=True))
    conn.receive_data(frame(resp.build(), 1) + frame(b"early", 2))
    assert isinstance(conn.next_event(), LoginRequested)
    with pytest.raises(RemoteProtocolError, match="out of turn"):
        conn.next_event()
    conn = ClientFacing()
    with pytest.raises(RemoteProtocolError, match="before the greeting"):
        conn.receive_data(b"hello")
        conn.next_event()


def test_send_checks_the_transition_table() -> None:
    conn = ClientFacing()
    with pytest.raises(LocalProtocolError):
        conn.send(OkPacket())
    with pytest.raises(LocalProtocolError):
        conn.tls_established()
    conn.send(client_greeting(engine_greeting(), tls=True))
    with pytest.raises(LocalProtocolError):
        conn.send(client_greeting(engine_greeting(), tls=True))
    conn = logged_in_client_facing()
    with pytest.raises(LocalProtocolError, match="no command"):
        conn.send(ErrPacket(1, "x"))
    conn.receive_data(frame(b"\x03DO 1", 0))
    conn.next_event()
    conn.send(ErrPacket(1227, SYSTEM_USER, "42000"))
    with pytest.raises(LocalProtocolError, match="no command"):
        conn.send(ErrPacket(1227, SYSTEM_USER, "42000"))  # one answer per command
    engine = EngineFacing()
    with pytest.raises(LocalProtocolError):
        engine.send(query_event("DO 1"))
    with pytest.raises(LocalProtocolError):
        engine.tls_established()


def test_charset_follows_login_change_user_and_reset() -> None:
    conn = logged_in_client_facing(charset=8)  # latin1
    conn.receive_data(frame(b"\x03SELECT '\xe9'", 0))
    assert conn.next_event().sql == "SELECT '\u00e9'"  # type: ignore[union-attr]
    change = ComChangeUser(b"carol", b"x" * 20, b"", 45, "mysql_native_password")
    conn.receive_data(frame(change.build(CLIENT_CAPS), 0))
    assert isinstance(conn.next_event(), ChangeUser)
    conn.send(AuthSwitchRequest("mysql_native_password", SCRAMBLE + b"\x00"))
    conn.receive_data(frame(b"y" * 20, 2))
    assert isinstance(conn.next_event(), AuthData)
    conn.send(OkPacket())
    assert conn.charset == 45  # the requested one
    conn.receive_data(frame(change.build(CLIENT_CAPS), 0))
    conn.next_event()
    conn.send(AuthSwitchRequest("mysql_native_password", SCRAMBLE + b"\x00"))
    conn.receive_data(frame(b"y" * 20, 2))
    conn.next_event()
    conn.send(ErrPacket(1045, "denied", "28000"))
    assert conn.charset == 8  # failed: MariaDB falls back to the server default (greeting)
    conn.charset = 33
    conn.receive_data(frame(b"\x1f", 0))
    conn.next_event()
    assert conn.charset == 8  # COM_RESET_CONNECTION: back to the session's login charset


# --- EngineFacing unit behaviour --------------------------------------------------------------


def test_engine_leg_turns_and_silence() -> None:
    engine = EngineFacing()
    engine.receive_data(frame(engine_greeting().build(), 0))
    assert isinstance(engine.next_event(), InitialHandshake)
    resp = HandshakeResponse41(CLIENT_CAPS | C.CLIENT_COMPRESS | C.CLIENT_SSL, 0, 45, b"alice",
                               b"x" * 20, None, "mysql_native_password")
    wire = engine.send(resp)
    sent = HandshakeResponse41.parse(packets(bytes(wire))[0][1])
    assert not sent.capabilities & (C.CLIENT_COMPRESS | C.CLIENT_SSL)  # adjusted for the leg
    with pytest.raises(LocalProtocolError, match="not asked"):
        engine.send(AuthData(b"unasked"))
    engine.receive_data(frame(b"\x01\x03", 2) + frame(OkPacket().build(), 3))
    assert isinstance(engine.next_event(), AuthMoreData)  # caching_sha2-style fast path
    assert isinstance(engine.next_event(), OkPacket)
    assert engine.state is EngineState.COMMAND
    # the engine owes nothing now: bytes before any command are a protocol error
    engine.receive_data(frame(b"\x00\x00\x00\x02\x00\x00\x00", 1))
    with pytest.raises(RemoteProtocolError, match="before any command"):
        engine.next_event()

    engine = EngineFacing()
    engine.receive_data(frame(engine_greeting().build(), 0))
    engine.next_event()
    engine.send(resp)
    engine.receive_data(frame(b"\x07garbage", 2))
    with pytest.raises(RemoteProtocolError, match="0x07"):
        engine.next_event()


def test_engine_tls_leg() -> None:
    engine = EngineFacing()
    engine.receive_data(frame(engine_greeting(tls=False).build(), 0))
    engine.next_event()
    with pytest.raises(LocalProtocolError, match="TLS"):
        engine.send(SSLRequest(CLIENT_CAPS, 0, 45))
    engine = EngineFacing()
    engine.receive_data(frame(engine_greeting().build(), 0))
    engine.next_event()
    assert packets(bytes(engine.send(SSLRequest(CLIENT_CAPS, 0, 45))))[0][0] == 1
    engine.tls_established()
    resp = HandshakeResponse41(CLIENT_CAPS, 0, 45, b"alice", b"", None, "mysql_native_password")
    assert packets(bytes(engine.send(resp)))[0][0] == 2
    # the engine keeps the SSLRequest's capabilities: a response announcing others is ours to refuse
    other = HandshakeResponse41(CLIENT_CAPS | C.CLIENT_CONNECT_WITH_DB, 0, 45, b"alice", b"", b"db")
    engine2 = EngineFacing()
    engine2.receive_data(frame(engine_greeting().build(), 0))
    engine2.next_event()
    engine2.send(SSLRequest(CLIENT_CAPS, 0, 45))
    engine2.tls_established()
    with pytest.raises(LocalProtocolError, match="differs"):
        engine2.send(other)


# --- a real client: pymysql over a socketpair -------------------------------------------------


def _self_signed(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return ctx


def _serve_one(sock: socket.socket, server_ctx: ssl.SSLContext | None,
               seen: list[object]) -> None:
    """A tiny server on ClientFacing, reading no further than receive_limit() allows."""
    conn = ClientFacing()
    sock.sendall(conn.send(client_greeting(engine_greeting(), tls=server_ctx is not None)))
    stored = native_password_hash(b"alicepw")
    while True:
        limit = conn.receive_limit()
        if limit == 0:
            event = conn.next_event()
        else:
            data = sock.recv(limit or 65536)
            conn.receive_data(data)
            event = conn.next_event()
        while event is not NEED_DATA:
            seen.append(event)
            if isinstance(event, SslRequested):
                assert server_ctx is not None
                sock = server_ctx.wrap_socket(sock, server_side=True)  # nothing read past it
                conn.tls_established()
            elif isinstance(event, LoginRequested):
                ok = native_password_check(event.response.auth_response, SCRAMBLE, stored)
                sock.sendall(conn.send(OkPacket() if ok else ErrPacket(1045, "denied", "28000")))
            elif isinstance(event, Query):
                if "rdsadmin" in event.sql:
                    sock.sendall(conn.send(ErrPacket(1227, SYSTEM_USER, "42000")))
                else:
                    sock.sendall(conn.send(OkPacket()))
            elif isinstance(event, (Quit, ConnectionClosed)):
                sock.close()
                return
            event = conn.next_event()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("use_tls", [False, True])
def test_pymysql_against_client_facing(use_tls: bool, tmp_path: Path) -> None:
    server_ctx = _self_signed(tmp_path) if use_tls else None
    ours, theirs = socket.socketpair()
    ours.settimeout(20)
    seen: list[object] = []
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            _serve_one(ours, server_ctx, seen)
        except BaseException as exc:  # reported below
            errors.append(exc)
            ours.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    kwargs: dict[str, object] = {}
    if use_tls:
        client_ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        client_ctx.check_hostname = False
        kwargs["ssl"] = client_ctx
    else:
        kwargs["ssl_disabled"] = True
    conn = pymysql.connect(user="alice", password="alicepw", database="app", defer_connect=True,
                           connect_timeout=10, read_timeout=20, **kwargs)  # type: ignore[arg-type]
    conn.connect(sock=theirs)
    with conn.cursor() as cur:
        cur.execute("DO 1")
        with pytest.raises(pymysql.err.OperationalError) as info:
            cur.execute("DROP USER rdsadmin")
    assert info.value.args == (1227, SYSTEM_USER)
    conn.close()
    thread.join(20)
    assert not errors, errors
    kinds = [type(e).__name__ for e in seen]
    assert kinds[:2] == (["SslRequested", "LoginRequested"] if use_tls else
                         ["LoginRequested", "Query"])
    login = next(e for e in seen if isinstance(e, LoginRequested))
    assert login.user == "alice" and login.tls is use_tls
    assert login.response.db == "app"
    assert [e.sql for e in seen if isinstance(e, Query)][-2:] == ["DO 1", "DROP USER rdsadmin"]
    assert kinds[-1] == "Quit"


# --- properties -------------------------------------------------------------------------------


def _drain(conn: ClientFacing | EngineFacing, data: bytes) -> None:
    """Feed bytes and pull events: only events or RemoteProtocolError may come out."""
    conn.receive_data(data)
    for _ in range(len(data) + 5):  # bounded: each event consumes at least a header
        try:
            event = conn.next_event()
        except RemoteProtocolError:
            return
        if event is NEED_DATA or isinstance(event, ConnectionClosed):
            return
        if isinstance(event, SslRequested):
            conn.tls_established()  # type: ignore[union-attr]
    pytest.fail("no progress")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_client_facing_arbitrary_login_bytes(data: bytes) -> None:
    conn = ClientFacing()
    conn.send(client_greeting(engine_greeting(), tls=True))
    _drain(conn, data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=60))
def test_client_facing_arbitrary_command_bytes(data: bytes, prefix: bytes) -> None:
    conn = logged_in_client_facing()
    _drain(conn, frame(prefix, 0) + data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_engine_facing_arbitrary_bytes(data: bytes) -> None:
    engine = EngineFacing()
    _drain(engine, data)
    engine = EngineFacing()
    engine.receive_data(frame(engine_greeting().build(), 0))
    engine.next_event()
    engine.send(HandshakeResponse41(CLIENT_CAPS, 0, 45, b"alice", b"x" * 20, None,
                                    "mysql_native_password"))
    _drain(engine, data)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(min_size=1, max_size=80), min_size=1, max_size=6), st.booleans(),
       st.booleans())
def test_relay_arbitrary_client_bytes_after_login(chunks: list[bytes], tls: bool,
                                                  eof: bool) -> None:
    link = connect(client_tls=tls)
    try:
        for chunk in chunks + ([b""] if eof else []):
            link._apply(link.relay.client_data(chunk))
            link.pump()
    except RemoteProtocolError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, 40), min_size=1, max_size=100))
def test_pair_is_independent_of_chunking(split: list[int]) -> None:
    """The same session, delivered in arbitrary pieces, gives the same events and bytes."""

    def session(chunked: bool) -> tuple[bytes, bytes, list[str]]:
        link = Link(FakeClient(b"alice", b"alicepw", tls=True), FakeEngine(), engine_tls=True)
        cuts = iter(split)
        original_client_data = link.relay.client_data
        original_engine_data = link.relay.engine_data

        def pieces(data: bytes) -> list[bytes]:
            if not chunked:
                return [data]
            out = []
            while data:
                n = next(cuts, len(data))
                out.append(data[:n])
                data = data[n:]
            return out

        def merged(feed: Callable[[bytes], object], data: bytes) -> object:
            result = None
            for piece in pieces(bytes(data)):
                out = feed(piece)
                if result is None:
                    result = out
                else:
                    result.to_client += out.to_client  # type: ignore[attr-defined]
                    result.to_engine += out.to_engine  # type: ignore[attr-defined]
                    result.events += out.events  # type: ignore[attr-defined]
                    result.close |= out.close  # type: ignore[attr-defined]
                    for flag in ("start_client_tls", "start_engine_tls"):
                        setattr(result, flag, getattr(result, flag) or getattr(out, flag))
            return result

        link.relay.client_data = lambda d: merged(original_client_data, d)  # type: ignore
        link.relay.engine_data = lambda d: merged(original_engine_data, d)  # type: ignore
        link.pump()
        link.client.query("DO 1")
        link.pump()
        link.client.change_user(b"carol", b"carolpw")
        link.pump()
        link.client.query("DO 2")
        link.pump()
        names = [type(d).__name__ for d in link.decisions]
        return bytes(link.to_client), bytes(link.to_engine), names

    assert session(True) == session(False)
