"""Reading a user variable on an inspected MySQL session before its ``PREPARE s FROM @v``
(``EXECUTE IMMEDIATE @v``) is forwarded: the driver side of
:mod:`dbkeep.gateway.mysql.private_query`.

Theory of operation. The inspector (``mysql_inspect.py``) answers such a statement with HOLD
and names the variable (``Inspector.read_request``). Once the relay holds it (the client's
reading paused, nothing of the client's after it forwarded),
:meth:`PrivateReads._start_variable_read` writes the private query to the engine leg -- the
last thing the engine gets before the held statement -- and from then on every engine byte
goes through the scanner first (``_engine_scan``, one attribute test on the hot path
otherwise), which passes on what belongs to the client and keeps the private answer. The
value is decoded as the engine will read it (:func:`statement_texts`) and given to the
inspector, which judges the statement as ``PREPARE s FROM '<value>'`` when the relay asks
again (``Relay.release``). Fail closed: an answer that does not frame, or no engine byte for
:data:`READ_TIMEOUT` seconds (the engine refused the query: an ERR carries no alias; or a
command pipelined before it runs that long without output), ends the session with an error
and a ``gateway.variable_read_failed`` event; the held statement never runs unread. A session
on the native relay threads comes back to this path first (the inspector's HOLD is replayed
by ``_decide``, as for a hygiene).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from dbkeep.errors import ProtocolError
from dbkeep.gateway.mysql import charsets
from dbkeep.gateway.mysql.codes import ER_UNKNOWN_ERROR, GENERAL_ERROR
from dbkeep.gateway.mysql.flags import Capability
from dbkeep.gateway.mysql.messages import ErrPacket
from dbkeep.gateway.mysql.private_query import VariableRead, decode_value
from dbkeep.gateway.mysql.states import EngineState

from .mysql_inspect import READINGS
from .session import Phase

__all__ = ["PrivateReads", "READ_TIMEOUT", "statement_texts"]

log = logging.getLogger("dbkeep.gateway.mysql")

# seconds without an engine byte, while the private read is outstanding, before the session
# ends: the answers to commands pipelined before it come first, the read's own at once
READ_TIMEOUT = 5.0
READ_FAILED = ErrPacket(
    ER_UNKNOWN_ERROR,
    "dbkeep could not read the variable of PREPARE … FROM @variable on this session: the statement "
    "was not run and the session ends",
    GENERAL_ERROR,
)


def statement_texts(value: str | None, client_collation: int, charset_unknown: bool,
                    readings: tuple[int, ...]) -> tuple[list[str] | None, str | None]:
    """(the texts the engine may prepare, the first its likely reading; why none can be read)
    from the private read's row; ``None`` texts for NULL.

    The engine converts a string variable to the connection's character set and parses the
    result in the client's; a binary one (``UNHEX``, ``0x…``, ``CHAR()``, ``CONCAT`` with a
    binary argument) is parsed as its bytes are, in the client's. Once the session may have
    changed its character set (``mysql_inspect``'s ``charset_unknown``; ``readings``: the
    candidate collations), non-ASCII bytes are read in every candidate, as statements are (a
    multi-byte character whose second byte is a quote or backslash in one reading)."""
    decoded = decode_value(value)
    if decoded is None:
        return None, None  # NULL: the engine refuses to prepare it
    charset, raw = decoded
    if charset == "binary":
        text = charsets.decode(raw, client_collation)
    else:
        text = charsets.decode_charset(raw, charset)
        if text is None:
            return None, f"a variable in the character set {charset}"
    texts = [text]
    if charset_unknown and not raw.isascii():
        candidates = [raw] if charset == "binary" else [_encoded(text, c) for c in readings]
        for data in candidates:
            texts += [charsets.decode(data, c) for c in readings]
    return list(dict.fromkeys(texts)), None


def _encoded(text: str, collation: int) -> bytes:
    """``text`` as the engine converts it to a connection character set (``?`` for what it lacks)."""
    codec = charsets.codec_for(collation).codec
    return text.encode("cp1252" if codec == "mysql-latin1" else codec, errors="replace")


class PrivateReads:
    """Mixed into MySQLSession, whose attributes these methods use."""

    id: str
    identifier: str
    peer_host: str
    user: str | None
    ctx: Any
    phase: Any
    relay: Any
    engine_leg: Any
    _inspector: Any
    _write_client: Any
    _close: Any
    _internal_error: Any
    _variable_read: VariableRead | None = None
    _read_timer: asyncio.TimerHandle | None = None

    def _start_variable_read(self) -> None:
        """The inspector asked for a variable and the relay holds the statement: send the query."""
        inspector, relay = self._inspector, self.relay
        request = inspector.read_request if inspector is not None else None
        if request is None or self._variable_read is not None or relay is None or not relay.held:
            return
        raw, name = request
        if relay.engine.state is not EngineState.COMMAND:
            self._variable_read_failed(name, "the engine leg is not in the command phase")
            return
        try:
            read = VariableRead(name, deprecate_eof=bool((relay.engine.capabilities or 0)
                                                         & Capability.CLIENT_DEPRECATE_EOF))
        except ValueError:
            inspector.variable_read(raw, name, None, unreadable="a variable whose name is not ASCII")
            return
        self._variable_read = read
        self.engine_leg.transport.write(read.packet)
        self._read_timer = asyncio.get_running_loop().call_later(READ_TIMEOUT, self._variable_read_timed_out)

    def _engine_scan(self, data: bytes) -> bytes:
        """Engine bytes while a read is outstanding: the client's, which go on as usual; the
        private answer is kept, and handed to the inspector once the bytes before it are
        relayed (next loop turn). An answer that does not frame ends the session."""
        read = self._variable_read
        assert read is not None
        if data and self._read_timer is not None:  # the engine is busy with what came before: wait on
            self._read_timer.cancel()
            self._read_timer = asyncio.get_running_loop().call_later(READ_TIMEOUT, self._variable_read_timed_out)
        try:
            data = read.feed(data)
        except ProtocolError as exc:
            request = self._inspector.read_request if self._inspector is not None else None
            self._variable_read_failed(request[1] if request else "?", str(exc))
            return b""
        except Exception as exc:  # noqa: BLE001 - one session ends, the gateway goes on
            self._internal_error(exc)
            return b""
        if read.done:
            asyncio.get_running_loop().call_soon(self._variable_read_finished)
        return data

    def _variable_read_finished(self) -> None:
        """After the scanner's output was relayed: hand a complete read to the inspector."""
        try:
            self._hand_over_read()
        except Exception as exc:  # noqa: BLE001 - one session ends, the gateway goes on
            self._internal_error(exc)

    def _hand_over_read(self) -> None:
        read, inspector, relay = self._variable_read, self._inspector, self.relay
        if read is None or not read.done or self.phase is Phase.CLOSED:
            return
        self._variable_read = None
        self._cancel_read_timer()
        if inspector is None or inspector.read_request is None or relay is None:
            return
        raw, name = inspector.read_request
        try:
            texts, unreadable = statement_texts(read.value, relay.client.charset, inspector.charset_unknown, READINGS)
        except ValueError:  # not the row dbkeep asked for
            self._variable_read_failed(name, "the engine's answer is not a variable's value")
            return
        inspector.variable_read(raw, name, texts, unreadable=unreadable)

    def _variable_read_timed_out(self) -> None:
        self._read_timer = None
        read, inspector = self._variable_read, self._inspector
        if read is None or read.done:
            return
        request = inspector.read_request if inspector is not None else None
        self._variable_read_failed(request[1] if request else "?", f"no engine byte for {READ_TIMEOUT:g} s")

    def _variable_read_failed(self, name: str, reason: str) -> None:
        log.warning("mysql session %s (cluster %s): cannot read @%s before its PREPARE: %s; session ended",
                    self.id, self.identifier, name, reason)
        self.ctx.audit.event("gateway.variable_read_failed", verdict="deny", cluster=self.identifier,
                             session=self.id, source_ip=self.peer_host, user=self.user,
                             iam_principal=getattr(self, "iam_principal", None), variable=name, reason=reason)
        self._variable_read = None
        relay = self.relay
        if relay is not None:
            self._write_client(relay.client_error(READ_FAILED))
        self._close()

    def _cancel_read_timer(self) -> None:
        timer, self._read_timer = self._read_timer, None
        if timer is not None:
            timer.cancel()

    def _variable_read_closed(self) -> None:
        """The session ends: no read is awaited any more."""
        self._variable_read = None
        self._cancel_read_timer()
