"""The session life cycle and both protocol drivers, with fake transports: no socket anywhere.

``gateway/drivers/session.py`` owns admission, the phase table, timers, audit once, internal
errors, close and the hand-over; ``drivers/leg.py`` owns one transport's flow control, TLS
hold and close. These tests drive :class:`MySQLSession` and :class:`PostgresSession` through a
:class:`FakeTransport` on the client leg and, where the engine is reached, another on the
engine leg (``Session._open_engine`` is the one place a driver opens a socket).
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import pytest

from dbkeep.catalog.models import IngressRule
from dbkeep.clock import default_clock
from dbkeep.errors import RemoteProtocolError, SessionStateError
from dbkeep.gateway.drivers.leg import CLOSE_GRACE, LIMIT, PEER, WRITE_HIGH, WRITE_LOW, Leg
from dbkeep.gateway.drivers.mysql import MySQLSession
from dbkeep.gateway.drivers.postgres import PostgresSession
from dbkeep.gateway.drivers.session import TRANSITIONS, Phase, Session
from dbkeep.gateway.listener import GatewayContext, Limits
from dbkeep.gateway.mysql import Capability, ErrPacket, HandshakeResponse41, InitialHandshake
from dbkeep.gateway.mysql import codes as mysql_codes
from dbkeep.gateway.mysql import errors as mysql_errors
from dbkeep.gateway.mysql.wire import PacketBuffer, frame
from dbkeep.gateway.postgres import (
    AuthenticationOk,
    BackendKeyData,
    ErrorResponse,
    ParameterStatus,
    ReadyForQuery,

)
from dbkeep.gateway.postgres import errcodes
from dbkeep.gateway.postgres import errors as pg_errors
from dbkeep.gateway.target import ClusterTarget

PEER_ADDR = ("192.0.2.7", 50000)
LOCAL_ADDR = ("192.0.2.1", 3306)  # the address the client connected to
# what a MySQL session writes on the engine socket before anything else (gateway/proxy_header.py)
PROXY_HEADER = b"PROXY TCP4 192.0.2.7 192.0.2.1 50000 3306\r\n"
OPEN = IngressRule("sgr-1", "sg-1", "-1", None, None, "0.0.0.0/0")


class FakeTransport:
    """What a session asks of an asyncio transport, recorded."""

    def __init__(self, *, peer: tuple[str, int] | None = PEER_ADDR, buffered: int = 0) -> None:
        self.written: list[bytes] = []
        self.reading = True
        self.closing = False
        self.aborted = False
        self.eof_written = False
        self.limits: tuple[int, int] | None = None
        self.protocol: Any = None
        self.peer = peer
        self.buffered = buffered
        self.pauses = 0

    # asyncio.Transport
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self.peer, "sockname": LOCAL_ADDR if self.peer else None}.get(name, default)

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def write(self, data: bytes) -> None:
        assert not self.aborted
        self.written.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        self.limits = (high, low)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def pause_reading(self) -> None:
        self.reading = False
        self.pauses += 1

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closing or self.aborted

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.aborted = True

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    @property
    def data(self) -> bytes:
        return b"".join(self.written)


class FakeAudit:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def event(self, kind: str, *, verdict: str, **fields: Any) -> None:
        self.events.append({"event": kind, "verdict": verdict, **fields})

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == kind]


class FakeResolver:
    def __init__(self, target: ClusterTarget | None) -> None:
        self.target = target

    def resolve(self, identifier: str) -> ClusterTarget | None:
        return self.target


def target(engine: str, *, require_tls: bool = False, rules: tuple[IngressRule, ...] = (OPEN,)) -> ClusterTarget:
    return ClusterTarget(identifier="app", resource_id="cluster-X", engine=engine, port=3306, status="available",
                         socket_path="/nonexistent/engine.sock", hostname="localhost", master_username="admin", tls=None,
                         require_tls=require_tls, iam_auth=False, rules=rules)


def context(engine: str, **kw: Any) -> GatewayContext:
    return GatewayContext(resolver=FakeResolver(target(engine, **kw)), audit=FakeAudit(), clock=default_clock(),  # type: ignore[arg-type]
                          limits=Limits(handshake_timeout=5.0, max_connections=10))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class FakeEngineSocket:
    """``_open_engine`` without a socket: the engine leg's protocol gets a FakeTransport."""

    def __init__(self) -> None:
        self.transport = FakeTransport(peer=None)
        self.protocol: Any = None

    def install(self, session: Session) -> None:
        async def open_engine(factory: Any) -> tuple[FakeTransport, Any]:
            self.protocol = factory()
            self.transport.protocol = self.protocol
            self.protocol.connection_made(self.transport)
            return self.transport, self.protocol

        session._open_engine = open_engine  # type: ignore[method-assign]


def mysql_packets(data: bytes) -> list[tuple[int, bytes]]:
    buf = PacketBuffer()
    buf.feed(data)
    out = []
    while (p := buf.next_packet()) is not None:
        out.append((p.seq, bytes(p.payload)))
    return out


def pg_messages(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos + 1 : pos + 5], "big")
        out.append(data[pos : pos + 1 + length])
        pos += 1 + length
    return out


# --- the phase table ----------------------------------------------------------------------------


def test_phases_move_only_along_the_table() -> None:
    assert set(TRANSITIONS) == set(Phase)
    assert TRANSITIONS[Phase.CLOSED] == {Phase.CLOSED}  # the end is the end (and may be reached twice)
    for phase in Phase:
        assert Phase.CLOSED in TRANSITIONS[phase]  # any phase can end
    assert TRANSITIONS[Phase.OFFLOADED] >= {Phase.RELAYING}  # a hand-back
    ctx = context("postgres")
    session = PostgresSession(ctx, "app", 5432)
    with pytest.raises(SessionStateError):
        session._enter(Phase.RELAYING)  # ACCEPTED -> RELAYING skips the login
    session._enter(Phase.CLOSED)
    with pytest.raises(SessionStateError):
        session._enter(Phase.LOGIN)


# --- the leg ------------------------------------------------------------------------------------


def test_leg_pauses_for_each_reason_and_reads_when_none_is_left() -> None:
    transport = FakeTransport()
    leg = Leg(transport)  # type: ignore[arg-type]
    assert transport.limits == (WRITE_HIGH, WRITE_LOW)
    leg.pause(LIMIT)
    leg.pause(PEER)
    assert not transport.reading and transport.pauses == 1 and leg.paused
    leg.resume(PEER)
    assert not transport.reading  # the protocol's reason still holds
    leg.resume(PEER)  # a reason not held changes nothing
    leg.resume(LIMIT)
    assert transport.reading and not leg.paused
    leg.pause(PEER)
    transport.closing = True
    leg.resume(PEER)
    assert not transport.reading  # a closing transport is not read again


def test_leg_hold_tls_and_close_with_grace() -> None:
    async def main() -> None:
        raw, tls = FakeTransport(), FakeTransport()
        leg = Leg(raw)  # type: ignore[arg-type]
        assert not leg.tls and leg.under is None
        leg.pause(LIMIT)
        leg.hold = [b"early"]
        assert leg.established(tls) == [b"early"]  # type: ignore[arg-type]
        assert leg.hold is None and not leg.paused and tls.limits == (WRITE_HIGH, WRITE_LOW)
        assert leg.tls and leg.under is raw and leg.transport is tls
        leg.write(b"")
        leg.write(b"x")
        tls.closing = True
        leg.write_if_open(b"y")
        assert tls.written == [b"x"]
        slow = FakeTransport(buffered=10)
        leg = Leg(slow)  # type: ignore[arg-type]
        leg.close()
        assert slow.closing and not slow.aborted
        handles = asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]
        assert any(abs(h.when() - asyncio.get_running_loop().time() - CLOSE_GRACE) < 1 for h in handles)
        leg.abort()
        assert slow.aborted

    run(main())


# --- admission, common to both ------------------------------------------------------------------


@pytest.mark.parametrize("cls", [MySQLSession, PostgresSession])
def test_security_group_refuses_before_a_byte(cls: type[Session]) -> None:
    async def main() -> None:
        ctx = context("mysql", rules=())
        session = cls(ctx, "app", 3306)
        transport = FakeTransport()
        session.connection_made(transport)  # type: ignore[arg-type]
        assert transport.aborted and transport.written == []
        assert session.phase is Phase.CLOSED and ctx.connections.get("app", 0) == 0
        (event,) = ctx.audit.of("gateway.connection_refused")  # type: ignore[attr-defined]
        assert event["reason"] == "security group" and event["source_ip"] == PEER_ADDR[0]
        session.connection_lost(None)
        assert ctx.connections.get("app", 0) == 0

    run(main())


# --- MySQL ----------------------------------------------------------------------------------------


MARIADB_CAPS = Capability(0x1D_81FF_FFFE) & ~Capability.CLIENT_SSL
CLIENT_CAPS = (Capability.CLIENT_LONG_FLAG | Capability.CLIENT_PROTOCOL_41 | Capability.CLIENT_SECURE_CONNECTION
               | Capability.CLIENT_PLUGIN_AUTH | Capability.CLIENT_TRANSACTIONS)


def greeting() -> bytes:
    return frame(InitialHandshake("5.5.5-10.11.19-MariaDB-fake", 42, b"0123456789abcdefghij", MARIADB_CAPS, 8, 2,
                                  "mysql_native_password").build(), 0)


def login(user: bytes) -> bytes:
    return frame(HandshakeResponse41(CLIENT_CAPS, 1 << 24, 8, user, b"x" * 20, None, "mysql_native_password").build(), 1)


async def mysql_session(ctx: GatewayContext, engine: FakeEngineSocket | None = None) -> tuple[MySQLSession, FakeTransport]:
    session = MySQLSession(ctx, "app", 3306)
    if engine is not None:
        engine.install(session)
    client = FakeTransport()
    session.connection_made(client)  # type: ignore[arg-type]
    await settle()
    return session, client


def test_mysql_over_the_connection_limit_gets_the_servers_error() -> None:
    async def main() -> None:
        ctx = context("mysql")
        ctx.connections["app"] = ctx.limits.max_connections
        session, client = await mysql_session(ctx)
        ((seq, payload),) = mysql_packets(client.data)
        assert seq == 0 and payload == mysql_errors.TOO_MANY_CONNECTIONS.build(None)
        assert payload[1:3] == mysql_codes.ER_CON_COUNT_ERROR.to_bytes(2, "little")
        assert session.phase is Phase.CLOSED and client.closing
        assert ctx.audit.of("gateway.connection_refused")[0]["reason"] == "too many connections"  # type: ignore[attr-defined]
        assert ctx.connections["app"] == ctx.limits.max_connections  # released

    run(main())


def test_mysql_engine_unreachable_is_error_2013_in_place_of_the_greeting() -> None:
    async def main() -> None:
        ctx = context("mysql")
        session = MySQLSession(ctx, "app", 3306)

        async def unreachable(factory: Any) -> Any:
            raise FileNotFoundError("no socket")

        session._open_engine = unreachable  # type: ignore[method-assign]
        client = FakeTransport()
        session.connection_made(client)  # type: ignore[arg-type]
        await settle()
        ((_, payload),) = mysql_packets(client.data)
        err = ErrPacket.parse(payload)
        expected = mysql_errors.engine_unavailable("app")
        assert (err.errno, err.message, err.sqlstate) == (expected.errno, expected.message, None)  # before any greeting: no SQLSTATE
        assert err.errno == mysql_codes.CR_SERVER_LOST and "is not available" in err.message
        assert session.phase is Phase.CLOSED and ctx.connections["app"] == 0

    run(main())


def test_mysql_reserved_login_is_refused_with_the_engines_text_and_audited_once() -> None:
    async def main() -> None:
        ctx = context("mysql")
        engine = FakeEngineSocket()
        session, client = await mysql_session(ctx, engine)
        assert session.phase is Phase.LOGIN
        engine.protocol.data_received(greeting())
        ((seq, _),) = mysql_packets(client.data)  # the engine's greeting, shown to the client
        assert seq == 0
        client.written.clear()
        session._client_data(login(b"rdsadmin"))
        ((_, payload),) = mysql_packets(client.data)
        err = ErrPacket.parse(payload)
        assert (err.errno, err.sqlstate) == (mysql_codes.ER_ACCESS_DENIED_ERROR, mysql_codes.INVALID_AUTHORIZATION)
        assert err.message == f"Access denied for user 'rdsadmin'@'{PEER_ADDR[0]}' (using password: YES)"
        (event,) = ctx.audit.of("gateway.login")  # type: ignore[attr-defined]
        assert (event["verdict"], event["user"], event["reason"]) == ("deny", "rdsadmin", "rdsadmin is reserved")
        assert engine.transport.written == [PROXY_HEADER]  # the engine never saw the login
        session.connection_lost(None)
        assert len(ctx.audit.of("gateway.login")) == 1  # type: ignore[attr-defined]

    run(main())


def test_mysql_login_is_audited_before_the_client_sees_the_engines_verdict() -> None:
    async def main() -> None:
        ctx = context("mysql")
        engine = FakeEngineSocket()
        session, client = await mysql_session(ctx, engine)
        engine.protocol.data_received(greeting())
        session._client_data(login(b"alice"))
        sent = engine.transport.data
        assert sent.startswith(PROXY_HEADER)  # the client's real address first
        assert [seq for seq, _ in mysql_packets(sent[len(PROXY_HEADER):])] == [1]  # relayed
        seen: list[int] = []
        real_write = client.writelines

        def writelines(chunks: Any) -> None:
            seen.append(len(ctx.audit.of("gateway.login")))  # type: ignore[attr-defined]
            real_write(chunks)

        client.writelines = writelines  # type: ignore[method-assign]
        engine.protocol.data_received(frame(b"\x00\x00\x00\x02\x00\x00\x00", 2))  # OK
        assert seen == [1]
        (event,) = ctx.audit.of("gateway.login")  # type: ignore[attr-defined]
        assert (event["verdict"], event["user"]) == ("allow", "alice")
        assert session.phase is Phase.RELAYING and session.logged_in and session.users == ["alice"]
        await settle()  # the client leg becomes a plain stream
        assert client.protocol.data_received == session._client_stream
        session.connection_lost(None)
        assert session.phase is Phase.CLOSED and ctx.connections["app"] == 0
        assert engine.transport.closing
        assert len(ctx.audit.of("gateway.login")) == 1  # type: ignore[attr-defined]

    run(main())


def test_mysql_protocol_errors_carry_their_reply() -> None:
    too_big = RemoteProtocolError("packet of 9 bytes exceeds the limit of 8 bytes")
    assert mysql_errors.protocol_error(too_big, logged_in=True).errno == mysql_codes.ER_MALFORMED_PACKET
    assert mysql_errors.protocol_error(too_big, logged_in=False).errno == mysql_codes.ER_HANDSHAKE_ERROR  # text is not read
    buf = PacketBuffer(max_message_size=8)
    buf.feed(b"\x09\x00\x00\x00")
    with pytest.raises(RemoteProtocolError) as caught:
        buf.next_packet()
    err = mysql_errors.protocol_error(caught.value, logged_in=True)
    assert (err.errno, err.sqlstate) == (mysql_codes.ER_NET_PACKET_TOO_LARGE, mysql_codes.COMMUNICATION_LINK_FAILURE)


def test_mysql_internal_error_has_an_id_and_ends_only_that_session() -> None:
    async def main() -> None:
        ctx = context("mysql")
        engine = FakeEngineSocket()
        session, client = await mysql_session(ctx, engine)
        engine.protocol.data_received(greeting())
        session._client_data(login(b"alice"))
        client.written.clear()
        session.relay.client_data = None  # type: ignore[assignment, union-attr]  # the next chunk fails unexpectedly
        session._client_data(b"\x01\x00\x00\x03\x0e")
        ((_, payload),) = mysql_packets(client.data)
        err = ErrPacket.parse(payload)
        assert err.errno == mysql_codes.ER_UNKNOWN_ERROR and err.message.startswith("internal error ")
        (event,) = ctx.audit.of("gateway.login")  # type: ignore[attr-defined]
        assert event["verdict"] == "deny" and event["reason"] == err.message
        assert client.aborted and engine.transport.aborted and session.phase is Phase.CLOSED

    run(main())


# --- PostgreSQL -----------------------------------------------------------------------------------


def _startup(user: str) -> bytes:
    body = b"\x00\x03\x00\x00" + b"user\x00" + user.encode() + b"\x00database\x00appdb\x00\x00"
    return (len(body) + 4).to_bytes(4, "big") + body


async def pg_session(ctx: GatewayContext, engine: FakeEngineSocket | None = None) -> tuple[PostgresSession, FakeTransport]:
    session = PostgresSession(ctx, "app", 5432)
    if engine is not None:
        engine.install(session)
    client = FakeTransport()
    session.connection_made(client)  # type: ignore[arg-type]
    return session, client


def test_postgres_reserved_login_is_a_pg_hba_reject() -> None:
    async def main() -> None:
        ctx = context("postgres")
        session, client = await pg_session(ctx)
        session.data_received(_startup("rdsadmin"))
        (message,) = pg_messages(client.data)
        error = ErrorResponse.parse(message)
        assert (error.severity, error.sqlstate) == ("FATAL", errcodes.INVALID_AUTHORIZATION_SPECIFICATION)
        assert error.message == f'pg_hba.conf rejects connection for host "{PEER_ADDR[0]}", user "rdsadmin", database "appdb", SSL off'
        (event,) = ctx.audit.of("gateway.login")  # type: ignore[attr-defined]
        assert (event["verdict"], event["reason"]) == ("deny", "rdsadmin")
        assert session.phase is Phase.CLOSED and client.closing and ctx.connections["app"] == 0
        session.connection_lost(None)
        assert len(ctx.audit.of("gateway.login")) == 1  # type: ignore[attr-defined]

    run(main())


def test_postgres_force_ssl_and_connection_limit() -> None:
    async def main() -> None:
        ctx = context("postgres", require_tls=True)
        session, client = await pg_session(ctx)
        session.data_received(_startup("alice"))
        error = ErrorResponse.parse(pg_messages(client.data)[0])
        assert error == pg_errors.no_hba_entry(PEER_ADDR[0], "alice", "appdb", "SSL off")
        ctx = context("postgres")
        ctx.connections["app"] = ctx.limits.max_connections
        session, client = await pg_session(ctx)
        session.data_received(_startup("alice"))
        error = ErrorResponse.parse(pg_messages(client.data)[0])
        assert (error.sqlstate, error.message) == (errcodes.TOO_MANY_CONNECTIONS, "sorry, too many clients already")
        # counted with the source's refusals (gateway/refusals.py), not a login event
        assert ctx.audit.of("gateway.login") == []  # type: ignore[attr-defined]
        (event,) = ctx.audit.of("gateway.connection_refused")  # type: ignore[attr-defined]
        assert (event["reason"], event["user"]) == ("too many connections", "alice")
        assert session.phase is Phase.CLOSED and ctx.pending == {}

    run(main())


def test_postgres_login_relayed_then_raw_relay_without_python_per_chunk() -> None:
    async def main() -> None:
        ctx = context("postgres")
        engine = FakeEngineSocket()
        session, client = await pg_session(ctx, engine)
        session.data_received(_startup("alice"))
        assert session.phase is Phase.CONNECTING
        await settle()
        assert session.phase is Phase.LOGIN
        assert engine.transport.data.endswith(b"user\x00alice\x00database\x00appdb\x00\x00")
        engine.protocol.data_received(AuthenticationOk().build() + ParameterStatus("server_version", "15").build()
                                      + BackendKeyData(4242, b"\x00\x00\x00\x07").build() + ReadyForQuery("I").build())
        sent = pg_messages(client.data)
        assert [m[:1] for m in sent] == [b"R", b"S", b"K", b"Z"]
        assert BackendKeyData.parse(sent[2]).process_id != 4242 or BackendKeyData.parse(sent[2]).secret_key != b"\x00\x00\x00\x07"
        (event,) = ctx.audit.of("gateway.login")  # type: ignore[attr-defined]
        assert (event["verdict"], event["user"], event["database"]) == ("allow", "alice", "appdb")
        assert session.phase is Phase.RELAYING
        # no native relay here: each transport's data_received is the other's write
        assert session.data_received == engine.transport.write
        assert engine.protocol.data_received == client.write
        session.pause_writing()  # the client is slow: the engine is not read
        assert not engine.transport.reading
        session.resume_writing()
        assert engine.transport.reading
        session.connection_lost(None)
        assert session.phase is Phase.CLOSED and engine.transport.closing and ctx.connections["app"] == 0
        assert len(ctx.audit.of("gateway.login")) == 1  # type: ignore[attr-defined]

    run(main())


def test_postgres_engine_unavailable_and_engine_refusal_are_audited_once() -> None:
    async def main() -> None:
        ctx = context("postgres")
        session, client = await pg_session(ctx)

        async def unreachable(factory: Any) -> Any:
            raise TimeoutError

        session._open_engine = unreachable  # type: ignore[method-assign]
        session.data_received(_startup("alice"))
        await settle()
        error = ErrorResponse.parse(pg_messages(client.data)[0])
        assert error == pg_errors.cannot_connect_now()
        assert [e["reason"] for e in ctx.audit.of("gateway.login")] == ["engine unavailable"]  # type: ignore[attr-defined]

        ctx = context("postgres")
        engine = FakeEngineSocket()
        session, client = await pg_session(ctx, engine)
        session.data_received(_startup("alice"))
        await settle()
        refusal = ErrorResponse.create("FATAL", "28P01", 'password authentication failed for user "alice"')
        engine.protocol.data_received(refusal.build())
        assert ErrorResponse.parse(pg_messages(client.data)[0]) == refusal
        (event,) = ctx.audit.of("gateway.login")  # type: ignore[attr-defined]
        assert event["reason"] == '28P01 password authentication failed for user "alice"'
        assert session.phase is Phase.CLOSED
        engine.protocol.connection_lost(None)
        session.connection_lost(None)
        assert len(ctx.audit.of("gateway.login")) == 1  # type: ignore[attr-defined]

    run(main())


def test_postgres_handshake_timeout_closes_without_a_word() -> None:
    async def main() -> None:
        ctx = context("postgres")
        ctx.limits = Limits(handshake_timeout=0.01)
        session, client = await pg_session(ctx)
        session.data_received(_startup("alice")[:5])  # half a StartupMessage
        await asyncio.sleep(0.05)
        assert client.aborted and client.written == [] and session.phase is Phase.CLOSED
        assert ctx.connections["app"] == 0 and ctx.pending == {}
        (event,) = ctx.audit.of("gateway.connection_refused")  # type: ignore[attr-defined]
        assert event["reason"] == "handshake timeout" and ctx.audit.of("gateway.login") == []  # type: ignore[attr-defined]

    run(main())


def test_postgres_protocol_error_reply_travels_on_the_exception() -> None:
    async def main() -> None:
        ctx = context("postgres")
        session, client = await pg_session(ctx)
        session.data_received(b"\x00\x00\x00\x08\x00\x02\x00\x00")  # protocol 2.0
        assert client.data.startswith(b"E") and b"unsupported frontend protocol 2.0" in client.data
        assert session.phase is Phase.CLOSED

    run(main())


@pytest.mark.parametrize("cls", [MySQLSession, PostgresSession])
def test_a_source_over_its_pending_logins_is_refused_at_accept(cls: type[Session]) -> None:
    async def main() -> None:
        ctx = context("mysql")  # cluster limit 10: at most 5 pending logins per source
        sessions = [cls(ctx, "app", 3306) for _ in range(6)]
        transports = [FakeTransport() for _ in sessions]
        for session, transport in zip(sessions[:5], transports[:5]):
            session._open_engine = _never  # type: ignore[method-assign]
            session.connection_made(transport)  # type: ignore[arg-type]
        assert ctx.pending == {("app", PEER_ADDR[0]): 5} and ctx.connections["app"] == 5
        sessions[5].connection_made(transports[5])  # type: ignore[arg-type]
        refused = transports[5]
        assert refused.closing and sessions[5].phase is Phase.CLOSED
        assert refused.data == sessions[5].refusal_bytes() and refused.data  # the protocol's "too many"
        (event,) = ctx.audit.of("gateway.connection_refused")  # type: ignore[attr-defined]
        assert event["reason"] == "too many pending logins from this source"
        assert ctx.connections["app"] == 5
        sessions[5].connection_lost(None)
        sessions[0].connection_lost(None)  # a slot is free again
        assert ctx.pending == {("app", PEER_ADDR[0]): 4} and ctx.connections["app"] == 4
        for session in sessions[1:5]:
            session._abort()
        assert ctx.pending == {} and ctx.connections["app"] == 0
        await settle()

    run(main())


def test_postgres_first_byte_deadline() -> None:
    async def main() -> None:
        ctx = context("postgres")
        ctx.limits = Limits(first_byte_timeout=0.01)
        session, client = await pg_session(ctx)
        await asyncio.sleep(0.05)
        assert client.aborted and client.written == [] and session.phase is Phase.CLOSED
        (event,) = ctx.audit.of("gateway.connection_refused")  # type: ignore[attr-defined]
        assert event["reason"] == "first byte timeout"

    run(main())


def test_mysql_first_byte_deadline_starts_with_the_greeting() -> None:
    async def main() -> None:
        ctx = context("mysql")
        ctx.limits = Limits(first_byte_timeout=0.01)
        engine = FakeEngineSocket()
        session, client = await mysql_session(ctx, engine)
        await asyncio.sleep(0.05)
        assert not client.aborted  # no greeting yet: not the client's turn
        engine.protocol.data_received(greeting())
        await asyncio.sleep(0.05)
        assert client.aborted and session.phase is Phase.CLOSED
        assert ctx.audit.of("gateway.connection_refused")[0]["reason"] == "first byte timeout"  # type: ignore[attr-defined]

    run(main())


async def _never(factory: Any) -> Any:
    await asyncio.Event().wait()


def test_postgres_guard_refuses_in_order_and_fails_closed() -> None:
    from dbkeep.errors import DbError
    from dbkeep.gateway.postgres import Query

    seen: list[tuple[str | None, object]] = []

    def guard(session: Any, sql: str | None) -> DbError | None:
        seen.append((sql, session.statement))
        if sql == "boom":
            raise RuntimeError("a broken guard")
        return DbError("not here", sqlstate="42501") if sql and "forbidden" in sql else None

    async def main() -> None:
        ctx = context("postgres")
        ctx.guard = guard
        engine = FakeEngineSocket()
        session, client = await pg_session(ctx, engine)
        session.data_received(_startup("alice"))
        await settle()
        engine.protocol.data_received(AuthenticationOk().build() + ReadyForQuery("I").build())
        assert session.phase is Phase.RELAYING and session.statement is None
        engine.transport.written.clear()
        session.data_received(Query(b"select 1").build() + Query(b"select forbidden").build() + Query(b"boom").build())
        sent = pg_messages(engine.transport.data)
        assert sent[0] == Query(b"select 1").build()
        assert all(Query.parse(m, "UTF8").query.startswith(b"dbkeep_refused_") for m in sent[1:]) and len(sent) == 3
        assert [sql for sql, _ in seen] == ["select 1", "select forbidden", "boom"]
        assert all(isinstance(statement, Query) for _, statement in seen)  # the guard may read session.statement
        (event,) = ctx.audit.of("gateway.statement_refused")  # type: ignore[attr-defined]
        assert (event["user"], event["sqlstate"], event["reason"]) == ("alice", "42501", "not here")
        assert session.phase is Phase.RELAYING  # a refusal ends the statement, not the session

    run(main())


# --- connections that end before a login verdict: one refusal each, with the first reason ------


@pytest.mark.parametrize("provoke, reason", [
    (lambda s: s.data_received(struct.pack("!II", 8, 0x00090000)), "protocol error"),  # no such protocol version
    (lambda s: s.eof_received(), "client closed the connection"),
    (lambda s: s.connection_lost(ConnectionResetError()), "client closed the connection"),
    (lambda s: s._abort(), "closed before the login"),
])
def test_postgres_ending_before_a_verdict_is_one_refusal_with_its_reason(provoke: Any, reason: str) -> None:
    async def main() -> None:
        ctx = context("postgres")
        session, client = await pg_session(ctx)
        provoke(session)
        session.connection_lost(None)  # whatever follows adds nothing
        await settle()
        (event,) = ctx.audit.of("gateway.connection_refused")  # type: ignore[attr-defined]
        assert event["reason"] == reason and event["port"] == 5432
        if reason == "protocol error":
            assert event["detail"]
        assert ctx.audit.of("gateway.login") == []  # type: ignore[attr-defined]

    run(main())


def test_a_login_with_a_verdict_reports_no_refusal_when_it_ends() -> None:
    async def main() -> None:
        ctx = context("postgres")
        session, client = await pg_session(ctx)
        session.data_received(_startup("rdsadmin"))  # the gateway's own verdict: refused
        session.connection_lost(None)
        await settle()
        (event,) = ctx.audit.of("gateway.login")  # type: ignore[attr-defined]
        assert event["verdict"] == "deny" and event["method"] == "password" and event["login_ms"] >= 0
        assert ctx.audit.of("gateway.connection_refused") == []  # type: ignore[attr-defined]

    run(main())
