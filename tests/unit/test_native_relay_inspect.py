"""The native relay's inspection (``add(..., inspect=)``, ``verdict()``) and its PostgreSQL
framing (``postgres=``), driven through the raw API over real sockets and real TLS; nothing is
mocked. The harness (``World``, ``Peer``, ``pump`` ...) is test_native_relay_mysql.py's.

Covered:
- MySQL: an inspected command is reported whole (``collect()`` -> ``(handle, "inspect",
  command)``) and reaches the engine only after ``verdict(handle, True)``; commands outside the
  set (COM_STMT_EXECUTE ...) and continuations pass unreported; pipelined commands are reported
  one at a time, in order; the engine's bytes keep reaching the client while a command waits;
  ``verdict(handle, False)`` hands the session back with that command first and Python carries
  on with the same SSL objects; a command larger than the relay's buffer, and one of 16 MiB or
  more, go back without a report; a client that half-closes behind a waiting command still gets
  it forwarded and its end of stream passed on; ``close()`` of a waiting session; a hypothesis
  property test against the reference model (random streams, inspect sets, verdicts, chunking,
  all four TLS combinations);
- PostgreSQL: messages (type byte + int32 length) framed the same way: inspected types ('Q',
  'P') reported, the others (Bind, Execute, Sync, CopyData ...) pass unreported, stop types and
  impossible lengths hand back, Terminate passes; a property test against a model; a hand-back
  while the engine streams rows says where the engine's message in progress ends;
- argument checks of ``postgres=`` and ``inspect=``.
"""

from __future__ import annotations

import os
import random
import socket
import ssl
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_native_relay_mysql import (  # noqa: F401 - contexts, pki, world: fixtures used here
    CLOSED, COM_CHANGE_USER, COM_QUERY, HANDED_BACK, LEGS, MAX_PAYLOAD, Collector, Peer, Session, World, command,
    contexts, continue_in_python, expect_end, expect_handed_back, packet, pki, pump, query, reference, settle, world,
)

_relay = pytest.importorskip("dbkeep.gateway._relay", reason="the native relay is not built (pip install -e .)")

from dbkeep.gateway.offload import stop_set  # noqa: E402 - after the skip: needs the extension

pytestmark = pytest.mark.timeout(120)

INSPECT = "inspect"
COM_INIT_DB, COM_STMT_PREPARE, COM_STMT_EXECUTE = 0x02, 0x16, 0x17
MYSQL_INSPECT = stop_set({COM_QUERY, COM_STMT_PREPARE, COM_INIT_DB})


def new_session(w: World, client_tls: bool = False, engine_tls: bool = False, *, version=ssl.TLSVersion.TLSv1_3,
                **framing: Any) -> Session:
    """World.session with the framing keywords passed as they are (mysql=, postgres=, inspect=)."""
    relay = w.relay()
    gw_client, client_sock = w.pair()
    gw_engine, engine_sock = w.pair()
    gw_client_tls = client_side = gw_engine_tls = engine_side = None
    if client_tls:
        gw_client_tls, client_side = w.tls(version)
    if engine_tls:
        engine_side, gw_engine_tls = w.tls(version)
    handle = relay.add(gw_client.fileno(), gw_engine.fileno(), gw_client_tls.obj._sslobj if gw_client_tls else None,
                       engine_ssl=gw_engine_tls.obj._sslobj if gw_engine_tls else None, **framing)
    return Session(relay, handle, Collector(relay), Peer(client_sock, client_side, "client"),
                   Peer(engine_sock, engine_side, "engine"), gw_client, gw_engine, gw_client_tls, gw_engine_tls)


def inspected_mysql(w: World, client_tls: bool = False, engine_tls: bool = False, *, inspect: bytes = MYSQL_INSPECT,
                    stop: set[int] | None = None, **kw: Any) -> Session:
    stop = {COM_CHANGE_USER} if stop is None else stop
    return new_session(w, client_tls, engine_tls, mysql=(stop_set(stop), False, False), inspect=inspect, **kw)


def next_report(s: Session, *peers: Peer) -> bytes:
    """The next command the session reports (and nothing else reported meanwhile)."""
    pump(*(peers or (s.client, s.engine)), until=lambda: bool(s.collector.results), collector=s.collector,
         what="a report")
    handle, reason, command_ = s.collector.results.pop(0)
    assert (handle, reason) == (s.handle, INSPECT), (handle, reason, command_)
    assert isinstance(command_, bytes)
    return command_


# --- MySQL -------------------------------------------------------------------------------------

@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_an_inspected_command_waits_for_its_verdict(world, client_tls, engine_tls):
    """COM_QUERY is reported whole and reaches the engine only after verdict(True); the
    engine's answer reaches the client; COM_STMT_EXECUTE and a continuation pass unreported."""
    s = inspected_mysql(world, client_tls, engine_tls)
    q = query(b"SELECT 1")
    s.client.write(q)
    assert next_report(s) == q
    settle(s.client, s.engine, seconds=0.05, collector=s.collector)
    assert s.engine.got == b"" and s.collector.results == []
    assert s.relay.verdict(s.handle, True) is True
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(q))
    assert s.engine.take() == q
    s.engine.write(b"result set")
    pump(s.client, s.engine, until=lambda: len(s.client.got) >= 10)
    assert s.client.take() == b"result set"
    unseen = command(COM_STMT_EXECUTE, b"\x01\x00\x00\x00" + os.urandom(300)) + packet(1, os.urandom(50))
    s.client.write(unseen)
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(unseen), collector=s.collector)
    assert s.engine.take() == unseen and s.collector.results == []
    assert s.relay.stats()["inspections"] == 1
    s.engine_closes()
    assert expect_end(s, CLOSED, s.client) is None


@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_pipelined_commands_are_reported_one_at_a_time_in_order(world, client_tls, engine_tls):
    """Three commands in one write, the middle one not inspected: each inspected one is reported
    after the verdict on the one before, and the engine gets exactly what was cleared so far;
    the engine's answers reach the client while a command waits."""
    s = inspected_mysql(world, client_tls, engine_tls)
    a, b, c = query(b"SELECT a"), command(COM_STMT_EXECUTE, b"\x07\x00\x00\x00"), command(COM_STMT_PREPARE, b"SELECT ?")
    s.client.write(a + b + c)
    assert next_report(s) == a
    s.relay.verdict(s.handle, True)
    assert next_report(s) == c
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(a + b))
    settle(s.client, s.engine, seconds=0.05, collector=s.collector)
    assert s.engine.take() == a + b
    s.engine.write(b"answers to a and b")
    pump(s.client, s.engine, until=lambda: len(s.client.got) >= 18)
    assert s.client.take() == b"answers to a and b"
    s.relay.verdict(s.handle, True)
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(c))
    assert s.engine.take() == c


@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_a_refused_verdict_hands_the_session_back_with_that_command_first(world, client_tls, engine_tls):
    """verdict(False): everything before the command reached the engine; the session is handed
    back with the command and what followed it, and Python continues both SSL objects."""
    s = inspected_mysql(world, client_tls, engine_tls)
    before, judged, after = command(0x0E), query(b"DROP USER rdsadmin"), query(b"SELECT next")
    s.client.write(before + judged + after)
    assert next_report(s) == judged
    s.relay.verdict(s.handle, False)
    left = expect_handed_back(s, s.client, s.engine)
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(before))
    settle(s.client, s.engine, seconds=0.02)
    assert s.engine.take() == before
    assert left[0].startswith(judged) and left[1] == b""
    assert left[3] is False  # COM_PING was forwarded: the engine owes its answer
    continue_in_python(s, left, judged + after)
    # the handle is gone: a late verdict names nothing
    assert s.relay.verdict(s.handle, True) is False


@pytest.mark.parametrize("size", [pytest.param(200_000, id="bigger-than-the-buffer"),
                                  pytest.param(MAX_PAYLOAD, id="max-length")])
def test_a_command_too_big_to_hold_goes_back_without_a_report(world, size):
    """An inspected command larger than the relay's buffer (64 KiB here), or a 16 MiB one made
    of several packets, is not reported: the session is handed back before it, and Python reads
    the whole of it (what the relay had, then the socket)."""
    s = inspected_mysql(world)
    first = command(COM_STMT_EXECUTE, b"\x01\x00\x00\x00")
    big = packet(0, bytes([COM_QUERY]) + b"x" * (size - 1))
    if size == MAX_PAYLOAD:
        big += packet(1, b"tail")
    stream = first + big
    s.client.write(stream)
    left = expect_handed_back(s, s.client, s.engine)
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(first))
    assert s.engine.take() == first
    assert stream[len(first):].startswith(left[0])
    gw_c = s.python_client_leg()
    pump(s.client, gw_c, until=lambda: len(left[0]) + len(gw_c.got) >= len(big), timeout=30)
    assert left[0] + gw_c.take() == big


def test_a_big_command_that_fits_is_reported_whole(world):
    """A 60 KB COM_QUERY sent in small pieces behind other traffic: reported once, whole."""
    s = inspected_mysql(world)
    filler = command(COM_STMT_EXECUTE, os.urandom(30_000))
    q = query(os.urandom(60_000))
    data = filler + q
    for i in range(0, len(data), 7_000):
        s.client.write(data[i:i + 7_000])
        settle(s.client, s.engine, seconds=0.002, collector=s.collector)
    assert next_report(s) == q
    s.relay.verdict(s.handle, True)
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(data))
    assert s.engine.take() == data


def test_a_half_close_behind_a_waiting_command(world):
    """The client sends a query and ends its stream: the query waits for its verdict (it is not
    a packet cut short), then reaches the engine followed by the end of stream; the engine's
    answer still reaches the client."""
    s = inspected_mysql(world)
    q = query(b"SELECT last")
    s.client.write(q)
    pump(s.client, s.engine, until=lambda: not s.client.out_len)
    s.client.sock.shutdown(socket.SHUT_WR)
    assert next_report(s) == q
    settle(s.client, s.engine, seconds=0.05, collector=s.collector)
    assert s.collector.results == [] and s.engine.got == b"" and not s.engine.eof
    s.relay.verdict(s.handle, True)
    pump(s.client, s.engine, until=lambda: s.engine.eof)
    assert s.engine.take() == q
    s.engine.write(b"answer")
    s.engine_closes()
    pump(s.client, until=lambda: len(s.client.got) >= 6, collector=s.collector)
    assert s.client.take() == b"answer"
    expect_end(s, CLOSED, s.client)


def test_close_while_a_command_waits(world):
    s = inspected_mysql(world)
    s.client.write(query(b"SELECT 1"))
    next_report(s)
    assert s.relay.close(s.handle) is True
    assert expect_end(s, "closed by the gateway", s.client, s.engine) is None
    assert s.engine.got == b""


def test_a_stop_command_wins_over_inspection(world):
    """A code in both sets goes back to Python at once (no report)."""
    s = inspected_mysql(world, inspect=stop_set({COM_QUERY, COM_CHANGE_USER}))
    change = command(COM_CHANGE_USER, b"u\x00")
    s.client.write(change)
    left = expect_handed_back(s, s.client, s.engine)
    assert left[0] == change


@st.composite
def inspect_scenarios(draw: Any) -> dict[str, Any]:
    codes = st.sampled_from([COM_QUERY, COM_STMT_PREPARE, COM_STMT_EXECUTE, COM_INIT_DB, 0x0E, COM_CHANGE_USER])
    inspect = draw(st.sets(st.sampled_from([COM_QUERY, COM_STMT_PREPARE, COM_INIT_DB, COM_STMT_EXECUTE]), min_size=1))
    packets = []
    for _ in range(draw(st.integers(1, 10))):
        if draw(st.integers(0, 4)) == 0:  # a continuation
            packets.append((draw(st.integers(1, 254)), os.urandom(draw(st.integers(0, 3000)))))
        else:
            size = draw(st.sampled_from([0, 1, 20, 5000, 40_000]))
            packets.append((0, bytes([draw(codes)]) + os.urandom(size)))
    refuse = draw(st.integers(0, 12))  # the report (by position) answered with False, if any
    chunks = draw(st.lists(st.integers(1, 70_000), min_size=1, max_size=5))
    return {"packets": packets, "inspect": inspect, "refuse": refuse, "chunks": chunks}


@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario=inspect_scenarios())
def test_inspection_matches_the_reference_model(contexts, client_tls, engine_tls, scenario):
    """For any stream, inspect set and verdicts: the relay reports exactly the inspected commands
    (whole, in order) up to the first stop command or refused one, the engine gets exactly the
    bytes before that point, and the session is handed back with the rest -- the reference
    model of test_native_relay_mysql.py with the refused command as a stop command."""
    packets, inspect, refuse = scenario["packets"], scenario["inspect"], scenario["refuse"]
    stream = b"".join(packet(seq, payload) for seq, payload in packets)
    stop = {COM_CHANGE_USER}
    # where the model stops, with the refused report counted as a stop
    expected_reports, offset, stopped = [], 0, False
    for i, (seq, payload) in enumerate(packets):
        raw = packet(seq, payload)
        if seq == 0:
            if not payload or payload[0] in stop:
                stopped = True
                break
            if payload[0] in inspect:
                expected_reports.append(raw)
                if len(expected_reports) - 1 == refuse:
                    stopped = True
                    break
        offset += len(raw)
    with World(contexts) as w:
        s = inspected_mysql(w, client_tls, engine_tls, inspect=stop_set(inspect), stop=stop)
        pos = 0
        for size in scenario["chunks"] * 10:
            if pos >= len(stream):
                break
            s.client.write(stream[pos:pos + size])
            pos += size
        if pos < len(stream):
            s.client.write(stream[pos:])
        reports = []
        while True:
            pump(s.client, s.engine, collector=s.collector, timeout=10, what="a report, a hand-back or the stream",
                 until=lambda: bool(s.collector.results) or len(s.engine.got) >= len(stream))
            if not s.collector.results:
                break
            handle, reason, left = s.collector.results.pop(0)
            if reason != INSPECT:
                assert reason == HANDED_BACK and stopped, (reason, reports)
                break
            reports.append(left)
            s.relay.verdict(s.handle, len(reports) - 1 != refuse)
        assert reports == expected_reports
        pump(s.client, s.engine, until=lambda: len(s.engine.got) >= offset)
        settle(s.client, s.engine, seconds=0.01)
        assert bytes(s.engine.got) == stream[:offset]
        if stopped:
            assert left[0] == stream[offset:offset + len(left[0])]
        else:
            assert offset == len(stream)


def test_reference_is_the_mysql_files_model():
    """The model above agrees with the MySQL file's where no command is inspected."""
    assert reference([(0, b"\x03q"), (0, b"\x11u")], {COM_CHANGE_USER}, False) == ("hand back", 6, True)


# --- PostgreSQL --------------------------------------------------------------------------------

def message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!I", 4 + len(body)) + body


PG_INSPECT = stop_set({ord("Q"), ord("P")})


def inspected_pg(w: World, client_tls: bool = False, engine_tls: bool = False, *, stop: bytes = b"",
                 inspect: bytes = PG_INSPECT) -> Session:
    return new_session(w, client_tls, engine_tls, postgres=stop_set(set(stop)), inspect=inspect)


@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_postgres_query_and_parse_wait_for_their_verdict(world, client_tls, engine_tls):
    """'Q' and 'P' are reported whole; Bind, Describe, Execute, Sync and CopyData pass unreported;
    the engine gets everything in order once the verdicts are given."""
    s = inspected_pg(world, client_tls, engine_tls)
    q = message(b"Q", b"SELECT now()\x00")  # a function call: not an ordinary query (pg_plain.h)
    p = message(b"P", b"s1\x00SELECT $1\x00\x00\x00")
    extended = (message(b"B", b"\x00s1\x00" + os.urandom(40)) + message(b"D", b"P\x00") + message(b"E", b"\x00\x00\x00\x00\x00")
                + message(b"S"))
    copy = message(b"d", os.urandom(100_000)) + message(b"c")
    s.client.write(q + p + extended + copy)
    assert next_report(s) == q
    s.relay.verdict(s.handle, True)
    assert next_report(s) == p
    s.relay.verdict(s.handle, True)
    total = len(q + p + extended + copy)
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= total, collector=s.collector)
    assert s.engine.take() == q + p + extended + copy and s.collector.results == []
    s.engine.write(b"Z\x00\x00\x00\x05I")
    pump(s.client, s.engine, until=lambda: len(s.client.got) >= 6)
    terminate = message(b"X")
    s.client.write(terminate)
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= 5)
    assert s.engine.take() == terminate
    s.engine_closes()
    assert expect_end(s, CLOSED, s.client) is None


@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_postgres_ordinary_queries_pass_without_a_report(world, client_tls, engine_tls):
    """A Query the relay can tell is an ordinary one (relay/pg_plain.h; held to the guard's
    own test in test_pg_plain_relay.py) goes to the engine at once, in order with the reported
    ones around it, and is counted in stats()["plain_queries"]."""
    s = inspected_pg(world, client_tls, engine_tls)
    stats = s.relay.stats()
    ordinary = message(b"Q", b"SELECT abalance FROM pgbench_accounts WHERE aid = 7;\x00")
    reported = message(b"Q", b"SELECT set_config('role', 'rdsadmin', false)\x00")
    s.client.write(ordinary * 3)
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= 3 * len(ordinary), collector=s.collector)
    assert s.engine.take() == ordinary * 3 and s.collector.results == []
    s.client.write(ordinary + reported + ordinary)
    assert next_report(s) == reported
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(ordinary))
    settle(s.client, s.engine, seconds=0.05)
    assert s.engine.take() == ordinary  # the one behind the report waits for its verdict
    s.relay.verdict(s.handle, True)
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(reported + ordinary), collector=s.collector)
    assert s.engine.take() == reported + ordinary
    after = s.relay.stats()
    assert after["plain_queries"] - stats["plain_queries"] == 5
    assert after["inspections"] - stats["inspections"] == 1


def test_postgres_refused_verdict_and_stop_types_hand_back(world):
    s = inspected_pg(world, stop=b"F")
    sync, q = message(b"S"), message(b"Q", b"DROP ROLE rdsadmin\x00")
    s.client.write(sync + q)
    assert next_report(s) == q
    s.relay.verdict(s.handle, False)
    left = expect_handed_back(s, s.client, s.engine)
    assert left[0] == q
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(sync))
    assert s.engine.take() == sync
    continue_in_python(s, left, q)

    s = inspected_pg(world, stop=b"F")
    call = message(b"F", b"\x00\x00\x04\xd2")
    s.client.write(message(b"H") + call)
    left = expect_handed_back(s, s.client, s.engine)
    assert left[0] == call


@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_postgres_hand_back_counts_the_engines_answers(world, client_tls, engine_tls):
    """The hand-back says how many Query/Sync/FunctionCall messages went to the engine and how
    many ReadyForQuery messages began to reach the client while the relay had the session, and
    the last transaction status: what the statement guard's check after opaque code waits by."""
    s = inspected_pg(world, client_tls, engine_tls)
    q = message(b"Q", b"BEGIN\x00")
    s.client.write(q)
    assert next_report(s) == q
    s.relay.verdict(s.handle, True)
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(q))
    assert s.engine.take() == q
    extended = message(b"B", b"\x00\x00\x00\x00\x00\x00\x00\x00") + message(b"E", b"\x00\x00\x00\x00\x00") + message(b"S")
    s.client.write(extended)
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(extended))
    ready = message(b"C", b"BEGIN\x00") + message(b"Z", b"T")
    s.engine.write(ready + message(b"Z", b"T") + message(b"D", b"\x00\x00") + message(b"Z", b"E")[:3])
    pump(s.client, s.engine, until=lambda: len(s.client.got) >= len(ready) + 6 + 7 + 3)
    refused = message(b"Q", b"DROP ROLE rdsadmin\x00")
    s.client.write(refused)
    assert next_report(s, s.client, s.engine) == refused
    s.relay.verdict(s.handle, False)
    left = expect_handed_back(s, s.client, s.engine)
    assert left[0] == refused
    # Query + Sync sent; three ReadyForQuery begun (the last one's status not delivered yet)
    assert left[5] == (2, 3, b"T")
    assert left[4] == (b"Z\x00\x00", 0)


@pytest.mark.parametrize("header", [b"Q\x00\x00\x00\x03", b"Q\xff\xff\xff\xff", b"B\x00\x00\x00\x00"])
def test_postgres_impossible_lengths_go_back_to_python(world, header):
    s = inspected_pg(world)
    s.client.write(header + b"rest")
    left = expect_handed_back(s, s.client, s.engine)
    assert left[0] == header + b"rest"
    assert s.engine.got == b""


def test_postgres_without_inspection_is_only_framed(world):
    s = new_session(world, postgres=stop_set(set()))
    data = message(b"Q", b"SELECT 1\x00") * 1000
    s.client.write(data)
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(data), collector=s.collector)
    assert s.engine.take() == data and s.collector.results == []


@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(kinds=st.lists(st.tuples(st.sampled_from(b"QPBEDSHdcCX"), st.sampled_from([0, 1, 30, 9000, 50_000])),
                      min_size=1, max_size=12),
       refuse=st.integers(0, 8), seed=st.integers(0, 2**32 - 1), chunk=st.integers(1, 70_000))
def test_postgres_framing_matches_a_model(contexts, client_tls, engine_tls, kinds, refuse, seed, chunk):
    """Random message streams in random chunks: reports are the 'Q'/'P' messages in order up to
    the refused one, the engine gets exactly the bytes before it, the rest goes back."""
    rng = random.Random(seed)
    messages = [message(bytes([kind]), rng.randbytes(size)) for kind, size in kinds]
    stream = b"".join(messages)
    expected, offset, stopped = [], 0, False
    for m in messages:
        if m[:1] in (b"Q", b"P"):
            expected.append(m)
            if len(expected) - 1 == refuse:
                stopped = True
                break
        offset += len(m)
    with World(contexts) as w:
        s = inspected_pg(w, client_tls, engine_tls)
        for i in range(0, len(stream), chunk):
            s.client.write(stream[i:i + chunk])
        reports, left = [], None
        while True:
            pump(s.client, s.engine, collector=s.collector, timeout=10, what="a report, a hand-back or the stream",
                 until=lambda: bool(s.collector.results) or len(s.engine.got) >= len(stream))
            if not s.collector.results:
                break
            handle, reason, left = s.collector.results.pop(0)
            if reason != INSPECT:
                assert reason == HANDED_BACK and stopped
                break
            reports.append(left)
            s.relay.verdict(s.handle, len(reports) - 1 != refuse)
        assert reports == expected
        pump(s.client, s.engine, until=lambda: len(s.engine.got) >= offset)
        settle(s.client, s.engine, seconds=0.01)
        assert bytes(s.engine.got) == stream[:offset]
        if stopped:
            assert left[0] == stream[offset:offset + len(left[0])]


# --- argument checks ---------------------------------------------------------------------------

def test_framing_and_inspect_argument_checks(world):
    relay = world.relay()
    a, _ = world.pair()
    b, _ = world.pair()
    mysql = (stop_set(set()), False, False)
    with pytest.raises(ValueError, match="not both"):
        relay.add(a.fileno(), b.fileno(), mysql=mysql, postgres=stop_set(set()))
    with pytest.raises(ValueError, match="needs a framed session"):
        relay.add(a.fileno(), b.fileno(), inspect=MYSQL_INSPECT)
    with pytest.raises(ValueError, match="32 bytes"):
        relay.add(a.fileno(), b.fileno(), mysql=mysql, inspect=b"\x08")
    with pytest.raises(ValueError, match="32 bytes"):
        relay.add(a.fileno(), b.fileno(), postgres=b"Q")
    with pytest.raises(ValueError, match="32 bytes"):
        relay.add(a.fileno(), b.fileno(), postgres=None, mysql=mysql, inspect="x" * 32)
    assert relay.stats()["live"] == 0
    assert relay.verdict(12345, True) is False


def where_in_message(stream: bytes, delivered: int) -> tuple[bytes, int]:
    """(header bytes delivered of the message in progress, its body bytes not yet delivered)
    after the first ``delivered`` bytes of a stream of PostgreSQL messages."""
    pos = 0
    while True:
        if delivered - pos < 5:
            return stream[pos:delivered], 0
        length = int.from_bytes(stream[pos + 1:pos + 5], "big")
        end = pos + 1 + length
        if end > delivered:
            return b"", end - delivered
        pos = end


@pytest.mark.parametrize("row", [pytest.param(1_000_003, id="big-rows"), pytest.param(3, id="small-rows")])
def test_postgres_hand_back_says_where_the_engines_message_ends(world, row):
    """The engine streams rows to a client that reads nothing until every buffer is full; then
    the client's Query is refused. The hand-back's engine_resync says exactly where the message
    the client has begun to receive ends: the client's bytes so far plus the relay's undelivered
    ones cut the engine's stream at that point."""
    s = inspected_pg(world)
    rows = message(b"D", os.urandom(row)) * (4_000_000 // (row + 5) + 1)
    s.client.reading = False
    s.engine.write(rows)
    settle(s.client, s.engine, seconds=0.3)
    q = message(b"Q", b"SELECT 'refused', now()\x00")
    s.client.write(q)
    assert next_report(s, s.client, s.engine) == q
    s.relay.verdict(s.handle, False)
    left = expect_handed_back(s, s.client, s.engine)
    s.client.reading = True
    settle(s.client, seconds=0.3)  # what the relay sent before it handed back
    delivered = len(s.client.got)
    header, body_left = left[4]
    assert isinstance(header, bytes) and len(header) < 5
    expected = where_in_message(rows, delivered)
    assert (header, body_left) == expected
    assert rows[delivered:].startswith(left[1])
