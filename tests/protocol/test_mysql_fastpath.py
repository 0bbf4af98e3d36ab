"""The relay's hot paths (``Relay.client_passthrough`` and ``EngineFacing.passthrough``) are
equivalent to the full path: on every captured conversation, and on random command-phase
packets after a real login, both produce the same bytes to each side and leave both legs in
the same state."""

from __future__ import annotations

import struct

from hypothesis import example, given, settings
from hypothesis import strategies as st

from dbkeep.errors import ProtocolError
from dbkeep.gateway.mysql.states import ClientState
from test_mysql_conversations import CONVERSATIONS, Replay

ALL_COMMANDS = frozenset(range(256))


class FastReplay(Replay):
    """Like Replay, but takes the hot path whenever it says it can."""

    def run(self) -> "FastReplay":
        self.fast = 0
        for direction, data in self.conversation:
            if direction == "tls":
                continue
            if direction == "s2c":
                self.recorded_client += data
                if self.relay.engine.passthrough and data:
                    self.to_client += data
                    self.fast += 1
                else:
                    self._take(self.relay.engine_data(data))
            else:
                self.recorded_engine += data
                if data and self.relay.client_passthrough(data, ALL_COMMANDS):
                    self.to_engine += data
                    self.fast += 1
                else:
                    self._take(self.relay.client_data(data))
            if not data:
                break
        return self


def state(replay: Replay) -> tuple:
    c, e = replay.relay.client, replay.relay.engine
    return (c.state, c.charset, e.state, e.passthrough)


def test_captured_conversations_take_the_fast_path_with_identical_results():
    fast_total = 0
    for name, conversation in sorted(CONVERSATIONS.items()):
        slow, fast = Replay(conversation).run(), FastReplay(conversation).run()
        assert bytes(slow.to_client) == bytes(fast.to_client), name
        assert bytes(slow.to_engine) == bytes(fast.to_engine), name
        assert state(slow) == state(fast), name
        fast_total += fast.fast
    assert fast_total > 0, "no conversation used the fast path: this test would prove nothing"


def _packet(payload: bytes, seq: int) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


_LOGIN = CONVERSATIONS["pymysql_cleartext"]
_LOGIN_END = next(i for i, (d, data) in enumerate(_LOGIN) if d == "s2c" and data[4:5] == b"\x00" and i > 1)
_PREFIX = _LOGIN[: _LOGIN_END + 1]

_PACKETS = st.one_of(
    st.builds(lambda cmd, body: _packet(bytes([cmd]) + body, 0),
              st.sampled_from([0x03, 0x16, 0x17, 0x0E, 0x19, 0x18, 0x1F, 0x0C, 0x02, 0xFA, 0x1A]), st.binary(max_size=30)),
    st.builds(_packet, st.binary(max_size=40), st.sampled_from([0, 1, 2, 254, 255])),
    st.binary(min_size=1, max_size=12),
)


_PLAIN_COMMANDS = [_packet(b"\x03SELECT 1", 0), _packet(b"\x0e", 0), _packet(b"\x03SELECT 2", 0)]


def test_whole_command_packets_after_login_take_the_client_fast_path():
    """Without this the differential test below could compare the full path with itself."""
    replay = Replay(_PREFIX).run()
    assert replay.relay.client_passthrough(_PLAIN_COMMANDS[0], ALL_COMMANDS)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PACKETS, max_size=12))
@example(_PLAIN_COMMANDS)  # the fast path taken, and then again after the engine's answer state
def test_random_client_packets_after_login(packets):
    slow, fast = Replay(_PREFIX).run(), Replay(_PREFIX).run()
    assert slow.relay.client.state is ClientState.COMMAND
    for data in packets:
        slow_error = fast_error = None
        try:
            slow._take(slow.relay.client_data(data))
        except ProtocolError as exc:
            slow_error = type(exc)
        try:
            if fast.relay.client_passthrough(data, ALL_COMMANDS):
                fast.to_engine += data
            else:
                fast._take(fast.relay.client_data(data))
        except ProtocolError as exc:
            fast_error = type(exc)
        assert slow_error == fast_error
        if slow_error is not None:
            break
        assert bytes(slow.to_engine) == bytes(fast.to_engine)
        assert bytes(slow.to_client) == bytes(fast.to_client)
        assert state(slow) == state(fast)
