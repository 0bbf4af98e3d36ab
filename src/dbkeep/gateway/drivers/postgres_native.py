"""Inspected PostgreSQL sessions on the native relay threads (issue 12, item 10;
docs/DESIGN-NOTES.md, "Native relay" and "Statement guard (PostgreSQL)").

Theory of operation. A session the statement guard inspects (``postgres_inspect.Inspector``,
``active``) goes to the native relay threads once its role's facts are known and nothing waits
in Python: nothing held, no check due or running, no role change whose answer the guard waits
for, both machines between messages. The relay frames the client's messages and reports each
Query, Parse and FunctionCall whole; everything else (Bind, Execute, Sync, CopyData, the
engine's rows) passes without Python. :meth:`NativeInspection._inspect_native` asks
:meth:`Inspector.decide_native`: a statement that passes whatever the engine's position is
(no refusal, no check after it, no role, routine or parameter change) is forwarded as it is.
Anything else is handed back with that message first, and the framed Python relay
(``ClientFacing`` / ``EngineFacing``) asks :meth:`Inspector.decide` once, exactly as for a
session that never left Python: a refusal goes to the engine as ``ClientFacing.refuse``'s
sentinel, a HOLD keeps the message and what follows, FORWARD_THEN_CHECK counts the engine's
answers to run the check. The relay's verdict is not taken for those because it would be made
without the engine's position: the transaction status (which decides whether a SET ROLE is
known) and the ReadyForQuery count (when a check is due) reach Python only with the hand-back
(``HandedBack.engine_counts``: Query/Sync/FunctionCall messages the relay sent, ReadyForQuery
messages it began to deliver, the last status), which brings ``EngineFacing``'s counts up to
date. The session goes back to the relay threads when the conditions above hold again.

The engine's stream at a hand-back may be in the middle of a message the client has begun to
receive: :class:`EngineResync` passes the rest of it on as it is (the relay says where it
ends), and ``EngineFacing`` frames from the next message.
"""

from __future__ import annotations

from typing import Any

from dbkeep.gateway.offload import HandedBack, stop_set
from dbkeep.gateway.postgres import ClientState, FunctionCall, Parse, Query

from .session import Phase

__all__ = ["NATIVE_INSPECT", "NATIVE_STOP", "EngineResync", "NativeInspection"]

# Query, Parse, FunctionCall: the messages that carry what the statement guard judges.
NATIVE_INSPECT = stop_set({ord("Q"), ord("P"), ord("F")})
# Nothing else needs Python in the query phase (a message the relay cannot frame goes back anyway).
NATIVE_STOP = stop_set(set())


class EngineResync:
    """The rest of the engine's message the client had begun to receive when the relay handed
    the session back: ``header`` the bytes of its header already delivered (0-4), else
    ``body_left`` the bytes of its body still to come. :meth:`split` takes those off the
    engine's next bytes, to be written to the client as they are."""

    __slots__ = ("header", "left")

    def __init__(self, header: bytes, body_left: int) -> None:
        self.header = bytearray(header)
        self.left = 0 if header else body_left

    @property
    def done(self) -> bool:
        return not self.header and self.left == 0

    def split(self, data: bytes) -> tuple[bytes, bytes]:
        """(what passes on as it is, what EngineFacing frames)."""
        view = memoryview(data)
        taken = 0
        if self.header:
            need = min(5 - len(self.header), len(view))
            self.header += view[:need]
            taken = need
            if len(self.header) < 5:
                return bytes(view[:taken]), b""
            length = int.from_bytes(self.header[1:5], "big")
            self.header.clear()
            self.left = max(length - 4, 0)
        body = min(self.left, len(view) - taken)
        self.left -= body
        taken += body
        return bytes(view[:taken]), bytes(view[taken:])


def _event(command: bytes, encoding: str) -> Query | Parse | FunctionCall:
    kind = command[:1]
    if kind == b"Q":
        return Query.parse(command, encoding)
    if kind == b"P":
        return Parse.parse(command, encoding)
    return FunctionCall.parse(command)


class NativeInspection:
    """PostgresSession's side of an inspected session on the native relay (see the module
    docstring); mixed into the session, whose attributes these methods use."""

    ctx: Any
    phase: Any
    engine: Any
    client: Any
    client_leg: Any
    _guard: Any
    _offloaded: int | None
    _inspector: Any
    _held: list[Any]
    _ready_seen: int
    _resync: EngineResync | None = None  # the rest of an engine message begun in the relay
    _resuming = False  # a hand-back is being taken in: not back to the relay before it is

    def _go_native(self) -> None:
        """An inspected session goes to the native relay threads when the inspector waits for
        nothing and both machines are between messages with nothing buffered."""
        engine, client, inspector = self.engine, self.client, self._inspector
        if (inspector is None or not inspector.may_go_native or self._held or self._guard is not None
                or self.ctx.offload is None or self.phase is not Phase.RELAYING or engine is None
                or client.state is not ClientState.READY or client.trailing_data[0] or not engine.at_message_boundary
                or engine.refusals_pending or self._resync is not None or self._resuming):
            return
        self._hand_over(postgres=NATIVE_STOP, inspect=NATIVE_INSPECT)  # type: ignore[attr-defined]

    def _inspect_native(self, command: bytes) -> None:
        """A Query, Parse or FunctionCall the relay holds: forward it when it passes whatever
        the engine's position; otherwise the session comes back here with it first and the
        framed relay asks the inspector (``_inspect_statement``)."""
        offload, handle, inspector = self.ctx.offload, self._offloaded, self._inspector
        if offload is None or handle is None or self.phase is Phase.CLOSED:
            return
        try:
            forward = inspector is not None and inspector.decide_native(_event(command, self.client.client_encoding))
        except Exception:  # noqa: BLE001 - a message the relay framed but Python cannot read: Python's path says why
            forward = False
        offload.verdict(handle, bool(forward))

    def _handed_back(self, handle: int, handed_back: HandedBack) -> None:
        """The relay gave the session back before a message: the framed relay carries on, the
        engine's counts brought up to date, its stream framed from its next message (the rest
        of the current one passes)."""
        offload, engine = self.ctx.offload, self.engine
        if offload is None or engine is None or handed_back.engine_resync is None or handed_back.engine_counts is None:
            self._abort()  # type: ignore[attr-defined]
            return
        self._resuming = True
        try:
            if handed_back.client_records:
                self.client_leg.raw.write(handed_back.client_records)  # before any new record
            offload.resume(handle)
            syncs, readies, status = handed_back.engine_counts
            engine.note_relayed(syncs, readies, status.decode("ascii") if status else None)
            self._ready_seen = engine.ready_count  # what the relay delivered needed no check
            resync = EngineResync(*handed_back.engine_resync)
            self._resync = None if resync.done else resync
            if handed_back.engine:
                self._engine_data(handed_back.engine)  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)  # type: ignore[attr-defined]
            return
        finally:
            self._resuming = False
        if handed_back.client and self.phase is Phase.RELAYING:
            self.data_received(handed_back.client)  # type: ignore[attr-defined]
        else:
            self._go_native()

    def _resynced(self, data: bytes) -> bytes:
        resync = self._resync
        assert resync is not None
        through, data = resync.split(data)
        if through:
            self.client_leg.transport.write(through)
        if resync.done:
            self._resync = None
        return data
