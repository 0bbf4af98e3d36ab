"""The private variable read on a MySQL session's engine leg (``gateway/mysql/private_query.py``,
sans-I/O): the answer is taken out of the engine's byte stream whatever came before it and
however the bytes are cut."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbkeep.errors import RemoteProtocolError
from dbkeep.gateway.mysql.private_query import VariableRead, decode_value
from dbkeep.gateway.mysql.wire import frame

ALIAS = "dbkeep_" + "ab" * 16


def lenenc(data: bytes) -> bytes:
    n = len(data)
    if n < 0xFB:
        return bytes([n]) + data
    if n < 1 << 16:
        return b"\xfc" + n.to_bytes(2, "little") + data
    if n < 1 << 24:
        return b"\xfd" + n.to_bytes(3, "little") + data
    return b"\xfe" + n.to_bytes(8, "little") + data


def column(name: bytes, seq: int) -> bytes:
    payload = (lenenc(b"def") + lenenc(b"") + lenenc(b"") + lenenc(b"") + lenenc(name) + lenenc(b"")
               + b"\x0c" + b"\x2d\x00" + b"\x00\x00\x00\x00" + b"\xfd" + b"\x00\x00" + b"\x27" + b"\x00\x00")
    return frame(payload, seq)


EOF = b"\xfe\x00\x00\x02\x00"
OK_EOF = b"\xfe\x00\x00\x02\x00\x00\x00"


def result_set(name: bytes, rows: list[bytes | None], *, deprecate_eof: bool, columns: int = 1,
               cache_metadata: bool = False) -> bytes:
    """A text result set as MariaDB sends it (``cache_metadata``: MARIADB_CLIENT_CACHE_METADATA
    was negotiated, as MariaDB's Connector/C does: a "metadata follows" byte after the count)."""
    out = [frame(bytes([columns]) + (b"\x01" if cache_metadata else b""), 1)]
    seq = 2
    for k in range(columns):
        out.append(column(name if k == 0 else b"c%d" % k, seq))
        seq += 1
    if not deprecate_eof:
        out.append(frame(EOF, seq))
        seq += 1
    for row in rows:
        cell = b"\xfb" if row is None else lenenc(row)
        out.append(frame(cell * columns, seq & 0xFF))
        seq += 1
    out.append(frame(OK_EOF if deprecate_eof else EOF, seq & 0xFF))
    return b"".join(out)


def private_answer(value: bytes | None, *, deprecate_eof: bool, cache_metadata: bool = False) -> bytes:
    return result_set(ALIAS.encode(), [value], deprecate_eof=deprecate_eof, cache_metadata=cache_metadata)


def encoded(charset: str, raw: bytes) -> bytes:
    return f"{charset}:{raw.hex().upper()}".encode()


def run(stream: bytes, sizes: list[int], *, deprecate_eof: bool) -> tuple[bytes, VariableRead]:
    read = VariableRead("v", deprecate_eof=deprecate_eof, alias=ALIAS)
    out, at, k = bytearray(), 0, 0
    while at < len(stream):
        size = sizes[k % len(sizes)] if sizes else len(stream)
        out += read.feed(stream[at:at + size])
        at += size
        k += 1
    return bytes(out), read


def test_the_query_quotes_the_name():
    read = VariableRead("a`b", deprecate_eof=True)
    sql = read.packet[5:].decode()
    assert read.packet[3] == 0 and read.packet[4] == 3
    assert "@`a``b`" in sql and read.alias in sql and len(read.alias) == len("dbkeep_") + 32
    assert VariableRead("v", deprecate_eof=True).alias != read.alias
    with pytest.raises(ValueError):
        VariableRead("é", deprecate_eof=True)


@pytest.mark.parametrize("cache_metadata", [False, True])
@pytest.mark.parametrize("deprecate_eof", [False, True])
@pytest.mark.parametrize("value", [None, encoded("utf8mb4", "SELECT 'é€𝄞'".encode()), encoded("binary", b"\xff\x00")])
def test_every_chunk_size(deprecate_eof, cache_metadata, value):
    earlier = (result_set(b"x", [b"1", b"2", None], deprecate_eof=deprecate_eof, cache_metadata=cache_metadata)
               + frame(b"\x00\x00\x00\x02\x00\x00\x00", 1)  # an OK
               + frame(b"\xff\x28\x04#42000oops", 1))  # an ERR
    stream = earlier + private_answer(value, deprecate_eof=deprecate_eof, cache_metadata=cache_metadata)
    for size in range(1, len(stream) + 1):
        out, read = run(stream, [size], deprecate_eof=deprecate_eof)
        assert out == earlier, size
        assert read.done and read.value == (None if value is None else value.decode())


@settings(max_examples=200, deadline=None)
@given(sizes=st.lists(st.integers(1, 300), min_size=1, max_size=20), deprecate_eof=st.booleans(),
       cache_metadata=st.booleans(), rows=st.integers(0, 3000))
def test_large_earlier_results_any_cuts(sizes, deprecate_eof, cache_metadata, rows):
    earlier = result_set(b"n", [str(k).encode() * 40 for k in range(rows)], deprecate_eof=deprecate_eof, columns=3,
                         cache_metadata=cache_metadata)
    value = encoded("utf8mb4", b"SELECT 1")
    answer = private_answer(value, deprecate_eof=deprecate_eof, cache_metadata=cache_metadata)
    out, read = run(earlier + answer, sizes, deprecate_eof=deprecate_eof)
    assert out == earlier and read.done and read.value == value.decode()


def test_a_long_value_and_nothing_before():
    value = encoded("utf8mb4", b"SELECT '" + b"x" * 70000 + b"'")
    out, read = run(private_answer(value, deprecate_eof=True), [4096], deprecate_eof=True)
    assert out == b"" and read.value == value.decode()
    assert decode_value(read.value) == ("utf8mb4", b"SELECT '" + b"x" * 70000 + b"'")
    assert decode_value(None) is None


def test_bytes_after_the_answer_are_passed_on():
    read = VariableRead("v", deprecate_eof=True, alias=ALIAS)
    out = read.feed(private_answer(b"binary:41", deprecate_eof=True) + b"tail")
    assert out == b"tail" and read.done
    assert read.feed(b"more") == b"more"


@pytest.mark.parametrize("mangle", [
    lambda s: s.replace(b"\x01\x00\x00\x01\x01", b"\x01\x00\x00\x01\x02", 1),  # two columns
    lambda s: s[:8] + b"\x03" + s[9:],  # the definition's sequence id
    lambda s: s.replace(b"\xfe\x00\x00\x02\x00", b"\xff\x00\x00\x02\x00", 1),  # an ERR for the EOF
])
def test_a_strange_answer_fails_closed(mangle):
    read = VariableRead("v", deprecate_eof=False, alias=ALIAS)
    with pytest.raises(RemoteProtocolError):
        read.feed(mangle(private_answer(b"binary:41", deprecate_eof=False)))


def test_two_rows_fail_closed():
    read = VariableRead("v", deprecate_eof=True, alias=ALIAS)
    with pytest.raises(RemoteProtocolError):
        read.feed(result_set(ALIAS.encode(), [b"binary:41", b"binary:42"], deprecate_eof=True))


def test_an_error_answer_is_not_recognised():
    # an ERR carries no alias: its bytes reach the client, the read never completes (the
    # driver's timer ends the session)
    read = VariableRead("v", deprecate_eof=True, alias=ALIAS)
    err = frame(b"\xff\x8e\x05#XAE07XAER_RMFAIL", 1)
    out = read.feed(err) + read.feed(b"")
    assert not read.done and len(out) <= len(err)


# --- what the value reads as (drivers/mysql_private.statement_texts) -------------------------------

from dbkeep.gateway.drivers.mysql_inspect import READINGS  # noqa: E402
from dbkeep.gateway.drivers.mysql_private import statement_texts  # noqa: E402

UTF8MB4 = 45


def test_value_texts():
    assert statement_texts(None, UTF8MB4, False, READINGS) == (None, None)
    assert statement_texts(encoded("utf8mb4", "SELECT 'é'".encode()).decode(), UTF8MB4, False, READINGS) == (
        ["SELECT 'é'"], None)
    assert statement_texts(encoded("latin1", "SELECT 'é'".encode("latin-1")).decode(), UTF8MB4, False, READINGS)[0] == [
        "SELECT 'é'"]
    assert statement_texts(encoded("binary", b"SELECT 1").decode(), UTF8MB4, True, READINGS) == (["SELECT 1"], None)
    texts, why = statement_texts(encoded("ucs2", b"\x00S").decode(), UTF8MB4, False, READINGS)
    assert texts is None and "ucs2" in why


def test_after_a_change_of_character_set_every_reading_is_judged():
    # 0x81 0x60 is one gbk character; read as UTF-8 the 0x60 is a backtick that hides the rest
    # inside a quoted name
    from dbkeep.guard.mysql_grants import SessionFacts, judge

    raw = b"SELECT \x81` , 1; DROP USER rdsadmin@localhost -- `"
    texts, _ = statement_texts(encoded("binary", raw).decode(), UTF8MB4, True, READINGS)
    facts = SessionFacts(database="appdb")
    assert judge(texts[0], facts).refusal is None  # the naive reading
    assert any(judge(t, facts).refusal is not None for t in texts[1:])
    once, _ = statement_texts(encoded("binary", raw).decode(), UTF8MB4, False, READINGS)
    assert once == texts[:1]  # the client's character set known: one reading
