"""EngineResync (gateway/drivers/postgres_native.py): after a hand-back, the rest of the engine's
message the client had begun to receive passes on as it is, whatever the chunking, and what
follows is the next message."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from dbkeep.gateway.drivers.postgres_native import EngineResync


def message(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!I", 4 + len(body)) + body


@given(bodies=st.lists(st.binary(max_size=40), min_size=1, max_size=6), cut=st.integers(0, 400),
       chunks=st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_the_rest_of_the_message_passes_and_the_next_one_is_framed(bodies, cut, chunks):
    stream = b"".join(message(b"D", body) for body in bodies)
    cut = min(cut, len(stream) - 1)
    # where `cut` falls: in a header (its delivered bytes) or in a body (the bytes left of it)
    pos = 0
    while True:
        length = int.from_bytes(stream[pos + 1:pos + 5], "big") if cut - pos >= 5 else None
        if length is None:
            header, left, end = stream[pos:cut], 0, None
            break
        if pos + 1 + length > cut:
            header, left, end = b"", pos + 1 + length - cut, pos + 1 + length
            break
        pos += 1 + length
    if end is None:  # at a boundary, or inside a header
        end = cut if not header else pos + 1 + int.from_bytes(stream[pos + 1:pos + 5], "big")
    resync = EngineResync(header, left)
    through, rest = bytearray(), bytearray()
    data, i = stream[cut:], 0
    while data:
        size = chunks[i % len(chunks)]
        i += 1
        piece, data = data[:size], data[size:]
        if resync.done:
            rest += piece
            continue
        passed, framed = resync.split(piece)
        through += passed
        rest += framed
    assert resync.done
    assert bytes(through) == stream[cut:end]
    assert bytes(rest) == stream[end:]


def test_at_a_boundary_nothing_passes():
    resync = EngineResync(b"", 0)
    assert resync.done
