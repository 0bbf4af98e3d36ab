"""MySQL wire primitives and packet framing: exact vectors, limits, and hypothesis properties."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbkeep.errors import LocalProtocolError, RemoteProtocolError
from dbkeep.gateway.mysql.wire import (
    MAX_PAYLOAD,
    PacketBuffer,
    Reader,
    frame,
    int_bytes,
    lenenc_bytes,
    lenenc_int,
    cstring,
    packet_count,
)

# --- integers and strings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (250, "fa"),
        (251, "fcfb00"),
        (0xFFFF, "fcffff"),
        (0x10000, "fd000001"),
        (0xFFFFFF, "fdffffff"),
        (0x1000000, "fe0000000100000000"),
        (2**64 - 1, "feffffffffffffffff"),
    ],
)
def test_lenenc_int_vectors(value: int, encoded: str) -> None:
    assert lenenc_int(value).hex() == encoded
    r = Reader(bytes.fromhex(encoded))
    assert r.lenenc_int() == value
    r.finish()


@pytest.mark.parametrize("first", [0xFB, 0xFF])
def test_lenenc_int_rejects_null_and_error_markers(first: int) -> None:
    with pytest.raises(RemoteProtocolError):
        Reader(bytes([first, 0, 0])).lenenc_int()


def test_lenenc_int_out_of_range() -> None:
    with pytest.raises(LocalProtocolError):
        lenenc_int(2**64)
    with pytest.raises(LocalProtocolError):
        lenenc_int(-1)


def test_fixed_integers() -> None:
    r = Reader(bytes.fromhex("01" "0201" "030201" "04030201" "0807060504030201"))
    assert r.int1() == 1
    assert r.int2() == 0x0102
    assert r.int3() == 0x010203
    assert r.int4() == 0x01020304
    assert r.int8() == 0x0102030405060708
    assert r.at_end()
    assert int_bytes(0x0102, 2) == b"\x02\x01"
    with pytest.raises(LocalProtocolError):
        int_bytes(256, 1)


def test_strings() -> None:
    r = Reader(b"root\x00" + lenenc_bytes(b"xyz") + b"tail")
    assert r.cstring() == b"root"
    assert r.lenenc_bytes() == b"xyz"
    assert r.rest() == b"tail"
    r.finish()
    assert cstring(b"abc") == b"abc\x00"
    with pytest.raises(LocalProtocolError):
        cstring(b"a\x00b")


@pytest.mark.parametrize(
    "data",
    [b"", b"\x01", b"abc", b"\xfc\x01", b"\xfd\x01\x02", b"\xfe\x01\x02\x03", b"\x05ab"],
)
def test_truncation_raises_remote_protocol_error(data: bytes) -> None:
    readers = [
        lambda r: r.int2(),
        lambda r: r.int4(),
        lambda r: r.int8(),
        lambda r: r.lenenc_int(),
        lambda r: r.lenenc_bytes(),
        lambda r: r.cstring(),
        lambda r: r.take(len(data) + 1),
    ]
    for read in readers:
        r = Reader(data)
        with pytest.raises(RemoteProtocolError):
            for _ in range(len(data) + 2):  # every successful read consumes a byte
                read(r)


def test_lenenc_string_longer_than_payload_is_refused_before_allocation() -> None:
    # 0xFE + 2**63: must fail on the bound check, not try to allocate
    with pytest.raises(RemoteProtocolError):
        Reader(b"\xfe" + (2**63).to_bytes(8, "little") + b"x").lenenc_bytes()


def test_finish_reports_trailing_garbage() -> None:
    r = Reader(b"\x01\x02")
    r.int1()
    with pytest.raises(RemoteProtocolError, match="trailing"):
        r.finish()


# --- framing ----------------------------------------------------------------------------------


def test_frame_small_packet() -> None:
    assert frame(b"\x03SELECT 1", 0).hex() == "09000000" + b"\x03SELECT 1".hex()
    assert frame(b"", 7) == b"\x00\x00\x00\x07"


def test_frame_splits_at_16mib_and_terminates_exact_multiples() -> None:
    payload = b"x" * MAX_PAYLOAD
    wire = frame(payload, 255)
    assert packet_count(len(payload)) == 2
    assert wire[:4] == b"\xff\xff\xff\xff"
    assert wire[4 + MAX_PAYLOAD :] == b"\x00\x00\x00\x00"  # empty tail, seq wrapped to 0
    reader = PacketBuffer()
    reader.feed(wire)
    packet = reader.next_packet()
    assert packet is not None
    assert (packet.seq, packet.last_seq, packet.next_seq) == (255, 0, 1)
    assert bytes(packet.payload) == payload
    assert bytes(packet.raw) == wire
    assert reader.next_packet() is None


def test_multi_packet_payload_across_chunks() -> None:
    payload = bytes(range(256)) * (MAX_PAYLOAD // 256 + 10)
    wire = frame(payload, 0)
    reader = PacketBuffer()
    for i in range(0, len(wire), 1 << 20):
        reader.feed(wire[i : i + (1 << 20)])
        if i + (1 << 20) < len(wire):
            assert reader.next_packet() is None
    packet = reader.next_packet()
    assert packet is not None and bytes(packet.payload) == payload
    assert (packet.seq, packet.last_seq) == (0, 1)


def test_single_packet_payload_is_a_zero_copy_view() -> None:
    chunk = frame(b"\x03SELECT 1", 0) + frame(b"\x0e", 0)
    reader = PacketBuffer()
    reader.feed(chunk)
    first = reader.next_packet()
    assert first is not None
    assert first.raw.obj is chunk  # a view of the received bytes, not a copy
    second = reader.next_packet()
    assert second is not None and bytes(second.payload) == b"\x0e"


def test_sequence_gap_inside_multi_packet_is_refused() -> None:
    wire = b"\xff\xff\xff\x00" + b"a" * MAX_PAYLOAD + b"\x01\x00\x00\x05" + b"b"
    reader = PacketBuffer()
    reader.feed(wire)
    with pytest.raises(RemoteProtocolError, match="sequence"):
        reader.next_packet()


def test_oversized_message_refused_on_header() -> None:
    reader = PacketBuffer(max_message_size=1000)
    reader.feed(b"\xe9\x03\x00\x00")  # announces 1001 bytes; none of them sent
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        reader.next_packet()
    reader = PacketBuffer(max_message_size=MAX_PAYLOAD + 10)
    reader.feed(b"\xff\xff\xff\x00" + b"a" * MAX_PAYLOAD + b"\x0b\x00\x00\x01")
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        reader.next_packet()


def test_eof_inside_packet() -> None:
    reader = PacketBuffer()
    reader.feed(b"\x05\x00\x00\x00ab")
    assert reader.next_packet() is None
    reader.feed_eof()
    with pytest.raises(RemoteProtocolError, match="closed"):
        reader.next_packet()


def test_bytes_needed_and_take_all() -> None:
    reader = PacketBuffer()
    assert reader.bytes_needed() == 4
    reader.feed(b"\x20\x00")
    assert reader.bytes_needed() == 2
    reader.feed(b"\x00\x01")
    assert reader.bytes_needed() == 32
    reader.feed(b"x" * 32)
    assert reader.bytes_needed() == 0
    reader.feed(b"more")
    assert reader.peek_all() == b"\x20\x00\x00\x01" + b"x" * 32 + b"more"
    assert reader.take_all() == b"\x20\x00\x00\x01" + b"x" * 32 + b"more"
    assert reader.buffered == 0


# --- properties -------------------------------------------------------------------------------


@st.composite
def chunkings(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    pieces, last = [], 0
    for cut in cuts:
        pieces.append(data[last:cut])
        last = cut
    pieces.append(data[last:])
    return pieces


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**64 - 1))
def test_lenenc_round_trip(value: int) -> None:
    r = Reader(lenenc_int(value))
    assert r.lenenc_int() == value
    r.finish()


@settings(max_examples=100, deadline=None)
@given(payloads=st.lists(st.binary(max_size=300), max_size=8), data=st.data())
def test_framing_is_independent_of_chunking(payloads: list[bytes], data: st.DataObject) -> None:
    wire = b"".join(frame(p, i % 256) for i, p in enumerate(payloads))
    reader = PacketBuffer()
    got = []
    for piece in data.draw(chunkings(wire)):
        reader.feed(piece)
        while (packet := reader.next_packet()) is not None:
            got.append((packet.seq, bytes(packet.payload), bytes(packet.raw)))
    assert got == [(i % 256, p, frame(p, i % 256)) for i, p in enumerate(payloads)]
    assert reader.buffered == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 4096))
def test_reader_on_arbitrary_bytes_fails_closed(data: bytes, limit: int) -> None:
    reader = PacketBuffer(max_message_size=limit)
    reader.feed(data)
    reader.feed_eof()
    for _ in range(len(data) + 2):  # bounded: every packet consumes at least its header
        try:
            packet = reader.next_packet()
        except RemoteProtocolError:
            return
        if packet is None:
            assert reader.buffered == 0
            return
    pytest.fail("reader did not terminate")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_reader_primitives_on_arbitrary_bytes(data: bytes) -> None:
    r = Reader(data)
    ops = [r.int1, r.int2, r.lenenc_int, r.lenenc_bytes, r.cstring, r.int4, r.int8]
    for i in range(40):
        try:
            ops[i % len(ops)]()
        except RemoteProtocolError:
            return
    assert r.pos <= len(data)
