"""A query of the gateway's own on a session's engine leg, and the scan that takes its answer
out of the engine's byte stream before the client sees it (sans-I/O).

Theory of operation. User variables live in the session: only its own engine connection can
read them, so the statement guard reads ``@v`` of ``PREPARE s FROM @v`` by sending, while the
client's statement is held, one COM_QUERY of its own (:class:`VariableRead`)::

    SELECT CONCAT(CHARSET(@`v`), ':', HEX(CAST(@`v` AS BINARY))) AS `dbkeep_<128-bit random hex>` LIMIT 1

(``LIMIT 1``: the session's ``sql_select_limit`` would otherwise apply, and 0 gives no row).

The engine leg is relayed unparsed and the client may have pipelined commands whose answers
are still on their way, so "the next response" cannot be parsed. Instead every engine byte is
scanned for the random alias, which nobody else can know before the engine sends it: the
private answer starts a fixed distance before it (a column count packet ``01 00 00 01 01``,
or ``02 00 00 01 01 01`` when MARIADB_CLIENT_CACHE_METADATA was negotiated, then the column
definition with sequence id 2 whose catalog is ``def``, schema, table and original table
empty, and name the alias). Bytes before that start are the client's;
from it on the answer is framed packet by packet -- the column definition, an EOF unless
CLIENT_DEPRECATE_EOF was negotiated, one row (a length-encoded string or 0xFB for NULL), the
terminating EOF/OK -- and consumed. Until the alias is found, the last bytes that could be the
start of the answer are kept back. Anything that does not frame as expected raises
:class:`~dbkeep.errors.RemoteProtocolError` (the session ends: fail closed).

The value is ``<charset of @v>:<hex of its bytes>`` (NULL for NULL): :func:`decode_value`
gives the charset name and the bytes. ``CAST(… AS BINARY)`` keeps the variable's own bytes
(``CONVERT(… USING utf8mb4)`` of a binary string that is not valid UTF-8 gives NULL or ``?``,
while the engine prepares the bytes as they are) and a number's decimal text, as PREPARE
reads it.
"""

from __future__ import annotations

import secrets

from dbkeep.errors import RemoteProtocolError

from .wire import frame

__all__ = ["VariableRead", "decode_value"]

# one column, sequence id 1; with MARIADB_CLIENT_CACHE_METADATA (MariaDB's Connector/C) a
# "metadata follows" byte after the count
_COLUMN_COUNTS = (b"\x01\x00\x00\x01\x01", b"\x02\x00\x00\x01\x01\x01")
_DEFINITION_PREFIX = b"\x03def\x00\x00\x00"  # catalog "def", empty schema, table, original table
# the alias's first byte, counted from the column definition's first byte: its header (4), the
# prefix, the alias's length byte
_ALIAS_IN_DEFINITION = 4 + len(_DEFINITION_PREFIX) + 1
_LEAD = max(map(len, _COLUMN_COUNTS)) + _ALIAS_IN_DEFINITION  # at most this far before the alias
_MAX_PAYLOAD = 0xFFFFFF  # a longer row spans packets: not read (fail closed)
_EOF = 0xFE
_NULL = 0xFB
_ERR = 0xFF


def _quoted_variable(name: str) -> str:
    return "@`" + name.replace("`", "``") + "`"


class VariableRead:
    """The private query that reads one user variable, and the scan for its answer.

    ``packet`` is what to write to the engine (a COM_QUERY, sequence id 0). Feed every engine
    byte to :meth:`feed` from then on: it returns the bytes that go on to the client as usual;
    once ``done``, ``value`` is the row's text (``None`` for NULL). ``deprecate_eof``: whether
    the engine leg negotiated CLIENT_DEPRECATE_EOF (no EOF after the column definitions).
    """

    def __init__(self, variable: str, *, deprecate_eof: bool, alias: str | None = None) -> None:
        if not variable.isascii():
            raise ValueError("only ASCII variable names are read (the engine decodes the query in the client's charset)")
        self.alias = alias or "dbkeep_" + secrets.token_hex(16)
        var = _quoted_variable(variable)
        sql = f"SELECT CONCAT(CHARSET({var}), ':', HEX(CAST({var} AS BINARY))) AS `{self.alias}` LIMIT 1"
        self.packet = frame(b"\x03" + sql.encode("ascii"), 0)
        self._alias = self.alias.encode("ascii")
        self._deprecate_eof = deprecate_eof
        self._buf = bytearray()
        self._scanned = 0  # where the next search for the alias starts
        self._found = False
        self._consumed = 0
        self.done = False
        self.value: str | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        """Engine bytes in; the bytes the client gets (everything but the private answer)."""
        if self.done:
            return bytes(data)
        self._buf += data
        if not self._found:
            at = self._buf.find(self._alias, self._scanned)
            if at < 0:
                keep = _LEAD + len(self._alias) - 1  # the answer may have begun in these
                cut = max(0, len(self._buf) - keep)
                self._scanned = max(0, len(self._buf) - len(self._alias) + 1) - cut
                out = bytes(self._buf[:cut])
                del self._buf[:cut]
                return out
            start = self._answer_start(at - _ALIAS_IN_DEFINITION)
            self._found = True
            out = bytes(self._buf[:start])
            del self._buf[:start]
        else:
            out = b""
        rest = self._frame_answer()
        if rest is not None:
            self.done = True
            return out + rest
        return out

    def _answer_start(self, definition: int) -> int:
        """Where the answer starts, given where its column definition does; checks the frame."""
        buf = self._buf
        if (definition >= 0 and buf[definition + 3] == 2
                and bytes(buf[definition + 4:definition + 4 + len(_DEFINITION_PREFIX)]) == _DEFINITION_PREFIX
                and buf[definition + _ALIAS_IN_DEFINITION - 1] == len(self._alias)):
            for count in _COLUMN_COUNTS:
                start = definition - len(count)
                if start >= 0 and bytes(buf[start:definition]) == count:
                    return start
        raise RemoteProtocolError("the engine's answer to dbkeep's variable read is not framed as expected")

    def _packets(self) -> list[tuple[int, bytes]]:
        """The whole packets buffered, as (sequence id, payload)."""
        out, at, buf = [], 0, self._buf
        while len(buf) - at >= 4:
            length = int.from_bytes(buf[at:at + 3], "little")
            if length >= _MAX_PAYLOAD:
                raise RemoteProtocolError("dbkeep's variable read: the value is too large to read")
            if len(buf) - at - 4 < length:
                break
            out.append((buf[at + 3], bytes(buf[at + 4:at + 4 + length])))
            at += 4 + length
        self._consumed = at
        return out

    def _frame_answer(self) -> bytes | None:
        """The bytes after the answer once it is complete (value set), else None."""
        packets = self._packets()
        expected = 3 if self._deprecate_eof else 4  # packets before the row: count, definition [, EOF]
        for seq, (got, payload) in enumerate(packets, start=1):
            if got != seq:
                raise RemoteProtocolError("dbkeep's variable read: sequence ids out of order")
            if payload[:1] == bytes([_ERR]):
                raise RemoteProtocolError("dbkeep's variable read: the engine answered with an error")
            if not self._deprecate_eof and seq == 3 and (payload[:1] != bytes([_EOF]) or len(payload) >= 9):
                raise RemoteProtocolError("dbkeep's variable read: no EOF after the column definition")
            if seq == expected:
                self.value = _row_value(payload)
            elif seq == expected + 1:
                if payload[:1] != bytes([_EOF]):
                    raise RemoteProtocolError("dbkeep's variable read: more than one row")
                rest = bytes(self._buf[self._consumed:])
                self._buf.clear()
                return rest
        return None


def _row_value(payload: bytes) -> str | None:
    """A text row of one column: a length-encoded string, or 0xFB (NULL)."""
    if payload == bytes([_NULL]):
        return None
    if payload[:1] == bytes([_EOF]) and len(payload) < 9:
        raise RemoteProtocolError("dbkeep's variable read: no row")
    first = payload[0] if payload else _ERR
    if first < 0xFB:
        length, at = first, 1
    elif first in (0xFC, 0xFD, 0xFE):
        size = {0xFC: 2, 0xFD: 3, 0xFE: 8}[first]
        length, at = int.from_bytes(payload[1:1 + size], "little"), 1 + size
    else:
        raise RemoteProtocolError("dbkeep's variable read: not a text row")
    if at + length != len(payload):
        raise RemoteProtocolError("dbkeep's variable read: the row is not one string")
    return payload[at:].decode("ascii", errors="strict")


def decode_value(value: str | None) -> tuple[str, bytes] | None:
    """``(charset name, the variable's bytes)`` from the row's text; None for NULL."""
    if value is None:
        return None
    charset, sep, hexed = value.partition(":")
    if not sep:
        raise ValueError("not a variable read")
    return charset.lower(), bytes.fromhex(hexed)
