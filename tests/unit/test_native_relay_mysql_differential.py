"""The native relay's MySQL framing (``_relay.c``, ``frame_mysql``) against the gateway's own
sans-I/O relay (``gateway/mysql``), on the same random command-phase byte streams after a
captured real login.

For each stream the Python relay says which bytes go to the engine and at which command the
session must be in Python (a change of user, a reset, a kill, COM_MULTI, an empty command).
The C relay, fed the same stream in random chunks over real sockets, must forward exactly the
bytes the Python relay forwards before that command, hand the session back with exactly the
rest, and report whether the engine still owes nothing (no command forwarded). Streams with
no such command must pass whole. This is what lets a session move between the two relays
with neither side seeing a difference."""

from __future__ import annotations

import select
import socket
import struct
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "protocol"))

from test_mysql_conversations import CONVERSATIONS, Replay  # noqa: E402

from dbkeep.errors import ProtocolError  # noqa: E402
from dbkeep.gateway.mysql.states import ClientState  # noqa: E402
from dbkeep.gateway.mysql.messages import CommandCode  # noqa: E402

_relay = pytest.importorskip("dbkeep.gateway._relay")
from dbkeep.gateway.offload import stop_set  # noqa: E402

STOP_CODES = {CommandCode.COM_CHANGE_USER, CommandCode.COM_RESET_CONNECTION, CommandCode.COM_PROCESS_KILL,
              CommandCode.COM_MULTI}
STOP = stop_set(STOP_CODES)
TIMEOUT = 10.0

_LOGIN = CONVERSATIONS["pymysql_cleartext"]
_LOGIN_END = next(i for i, (d, data) in enumerate(_LOGIN) if d == "s2c" and data[4:5] == b"\x00" and i > 1)
_PREFIX = _LOGIN[: _LOGIN_END + 1]


def _packet(payload: bytes, seq: int) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def _load_data(rows: int, body: bytes) -> bytes:
    """A command, then content packets with ids 1..255, 0, 1 ... (LOAD DATA's wrap), then the
    empty packet that ends the file."""
    out = [_packet(b"\x03LOAD DATA LOCAL INFILE 'x' INTO TABLE t", 0)]
    out += [_packet(body or b"r", (n + 1) & 0xFF) for n in range(rows)]
    out.append(_packet(b"", (rows + 1) & 0xFF))
    return b"".join(out)


_COMMANDS = st.sampled_from([0x03, 0x16, 0x17, 0x0E, 0x19, 0x18, 0x0C, 0x02, 0x1A, 0x11, 0x1F, 0xFE, 0x01])
_PACKETS = st.one_of(
    st.builds(lambda code, body: _packet(bytes([code]) + body, 0), _COMMANDS, st.binary(max_size=40)),
    st.builds(_packet, st.binary(min_size=1, max_size=40), st.sampled_from([1, 2, 3, 254, 255])),  # continuations
    st.builds(_load_data, st.integers(min_value=250, max_value=270), st.binary(max_size=3)),
    st.just(_packet(b"", 0)),  # an empty command: the Python relay reports it
)


def python_reference(stream_packets: list[bytes]) -> tuple[bytes, int | None, bool, bool]:
    """What the Python relay does with the stream after a real login: (the bytes it sends the
    engine before the first packet the native relay must leave to it, that packet's offset in
    the stream or None, whether no command went to the engine before it, whether a COM_QUIT
    ended the stream). The native relay leaves to Python the stop commands, an empty command
    and a COM_QUIT that is not one byte long (the Python relay raises on or forwards those)."""
    replay = Replay(_PREFIX).run()
    assert replay.relay.client.state is ClientState.COMMAND
    sent = len(replay.to_engine)
    offset, quiet = 0, True
    for data in stream_packets:
        seen = len(replay.events)
        try:
            replay._take(replay.relay.client_data(data))
        except ProtocolError:  # an empty command, a malformed change of user or kill, COM_MULTI
            return bytes(replay.to_engine[sent:]), offset, quiet, False
        events = replay.events[seen:]
        quit_command = replay.closed and events == ["Quit"]
        if any(name.startswith(("ChangeUser", "ResetConnection", "ProcessKill")) for name in events) or (
                quit_command and len(data) != 5):
            return bytes(replay.to_engine[sent:len(replay.to_engine) - len(data)]), offset, quiet, False
        if any(not name.startswith("Continuation") for name in events):
            quiet = False
        if quit_command:  # forwarded; nothing after it goes anywhere
            return bytes(replay.to_engine[sent:]), None, False, True
        offset += len(data)
    return bytes(replay.to_engine[sent:]), None, quiet, False


@pytest.fixture(scope="module")
def relay():
    relay = _relay.Relay(threads=1)
    yield relay
    relay.stop()


def _wait_collect(relay) -> list:
    assert select.select([relay.fileno()], [], [], TIMEOUT)[0], "the relay reported nothing"
    return relay.collect()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(packets=st.lists(_PACKETS, min_size=1, max_size=10), cuts=st.lists(st.integers(1, 700), max_size=40))
def test_the_c_framing_forwards_and_hands_back_what_the_python_relay_would(relay, packets, cuts):
    expected, stop_offset, quiet, quit_sent = python_reference(packets)
    stream = b"".join(packets)
    client, client_gw = socket.socketpair()
    engine_gw, engine = socket.socketpair()
    for sock in (client_gw, engine_gw):
        sock.setblocking(False)
    try:
        handle = relay.add(client_gw.fileno(), engine_gw.fileno(), mysql=(STOP, False, True))
        pieces, rest = [], stream
        for n in cuts:
            if not rest:
                break
            pieces.append(rest[:n])
            rest = rest[n:]
        if rest:
            pieces.append(rest)
        engine.settimeout(TIMEOUT)
        for piece in pieces:
            client.sendall(piece)
            time.sleep(0.0005 * (len(piece) % 3))
        got = bytearray()
        deadline = time.monotonic() + TIMEOUT
        while len(got) < len(expected) and time.monotonic() < deadline:
            chunk = engine.recv(65536)
            if not chunk:
                break
            got += chunk
        assert bytes(got) == expected
        if stop_offset is not None:
            [(h, reason, left)] = _wait_collect(relay)
            assert (h, reason) == (handle, "handed back")
            client_left, engine_left, records, quiet_left, _resync = left
            unread = bytearray()  # the relay stopped reading at the stop command: the rest waits in the socket
            while True:
                try:
                    chunk = client_gw.recv(65536)
                except BlockingIOError:
                    break
                if not chunk:
                    break
                unread += chunk
            assert client_left + bytes(unread) == stream[stop_offset:]
            assert client_left.startswith(stream[stop_offset:stop_offset + 4])  # it read the stop command's header
            assert (engine_left, records, quiet_left) == (b"", b"", quiet)
        else:
            if quit_sent:  # after COM_QUIT the engine sees its end of stream
                engine.settimeout(2)
                assert engine.recv(1) == b""
            else:  # nothing more arrives, and the session goes on
                assert not select.select([engine], [], [], 0.05)[0]
                assert relay.collect() == []
            engine.shutdown(socket.SHUT_WR)
            [(h, reason, left)] = _wait_collect(relay)
            assert (h, reason, left) == (handle, "engine closed the connection", None)
    finally:
        for sock in (client, client_gw, engine_gw, engine):
            sock.close()


# --- inspect=: the commands an inspected session's Python side judges --------------------------

_INSPECT_CODES = {CommandCode.COM_QUERY, CommandCode.COM_STMT_PREPARE, CommandCode.COM_INIT_DB}
INSPECT = stop_set(_INSPECT_CODES)


def python_decided(stream_packets: list[bytes]) -> list[bytes]:
    """The raw packets of the commands in _INSPECT_CODES that the Python relay offers to
    ``decide`` (COM_QUERY, COM_STMT_PREPARE, COM_INIT_DB), in order, up to where the native relay
    must leave the session to Python (python_reference)."""
    replay = Replay(_PREFIX).run()
    decided: list[bytes] = []

    def decide(event: object) -> None:
        raw = bytes(getattr(event, "raw", b""))
        if len(raw) > 4 and raw[4] in _INSPECT_CODES and type(event).__name__ in ("Query", "Prepare", "Command"):
            decided.append(raw)
        return None

    replay.relay._decide = decide  # the command phase from here on
    for data in stream_packets:
        seen = len(replay.events)
        try:
            replay._take(replay.relay.client_data(data))
        except ProtocolError:
            break
        events = replay.events[seen:]
        if any(name.startswith(("ChangeUser", "ResetConnection", "ProcessKill")) for name in events) or (
                replay.closed and events == ["Quit"]):
            break
    return decided


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(packets=st.lists(_PACKETS, min_size=1, max_size=10), cuts=st.lists(st.integers(1, 700), max_size=40))
def test_the_c_relay_reports_the_commands_the_python_relay_decides_on(relay, packets, cuts):
    """With inspect= and every verdict "forward", the C relay forwards what the Python relay
    would (as without inspection) and reports, whole and in order, exactly the COM_QUERY,
    COM_STMT_PREPARE and COM_INIT_DB packets the Python relay offers to ``decide``: an inspected
    session judged on the relay threads sees what it would see in Python."""
    expected, stop_offset, _quiet, _quit_sent = python_reference(packets)
    decided = python_decided(packets)
    stream = b"".join(packets)
    client, client_gw = socket.socketpair()
    engine_gw, engine = socket.socketpair()
    for sock in (client_gw, engine_gw):
        sock.setblocking(False)
    try:
        handle = relay.add(client_gw.fileno(), engine_gw.fileno(), mysql=(STOP, False, True), inspect=INSPECT)
        pos = 0
        for n in [*cuts, len(stream)]:
            if pos >= len(stream):
                break
            client.sendall(stream[pos:pos + n])
            pos += n
        reports: list[bytes] = []
        got = bytearray()
        engine.setblocking(False)
        deadline = time.monotonic() + TIMEOUT
        finished = False
        while time.monotonic() < deadline and not finished:
            ready = select.select([relay.fileno(), engine], [], [], 0.05)[0]
            if engine in ready:
                try:
                    chunk = engine.recv(65536)
                except BlockingIOError:
                    chunk = None
                if chunk == b"":
                    break
                if chunk:
                    got += chunk
            if relay.fileno() in ready:
                for h, reason, left in relay.collect():
                    assert h == handle
                    if reason == "inspect":
                        reports.append(left)
                        relay.verdict(handle, True)
                    else:
                        assert stop_offset is not None and reason == "handed back", (reason, stop_offset)
                        finished = True
            if not ready and len(got) >= len(expected) and len(reports) == len(decided):
                break
        assert reports == decided
        assert bytes(got) == expected
        if not finished:  # the session ends here, before the next example's
            relay.close(handle)
            while not finished:
                finished = any(reason != "inspect" for _h, reason, _left in _wait_collect(relay))
    finally:
        for sock in (client, client_gw, engine_gw, engine):
            sock.close()
