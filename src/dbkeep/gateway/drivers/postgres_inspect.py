"""Inspected PostgreSQL sessions on the native relay (issue 12, item 10; docs/DESIGN-NOTES.md,
"Native relay").

Theory of operation. A session whose statements must be judged (``ctx.postgres_inspector``
returns an inspector for it) is still handed to the native relay threads after its login, with
PostgreSQL framing: the relay reports each Query, Parse and FunctionCall whole, and passes
everything else (Bind, Execute, Sync, CopyData, the engine's rows) without Python.
:meth:`PostgresSession._inspect_native` asks the inspector and answers the relay: forward the
message as it is, or hand the session back with it first; the session then continues in the
framed Python relay (``ClientFacing`` / ``EngineFacing``), which replays that verdict --
a refusal goes to the engine as ``ClientFacing.refuse``'s sentinel, so replies stay in order --
and goes back to the relay threads once both machines are between messages again.

The engine's stream at a hand-back may be in the middle of a message the client has begun to
receive: :class:`EngineResync` passes the rest of it on as it is (the relay says where it
ends), and ``EngineFacing`` frames from the next message.

The inspector is one call, "a client message arrives -> verdict": ``judge(message)`` with the
whole message (type byte, length, body) returns None to let it pass, or the DbError to refuse
it with. Which sessions are inspected and what is refused is the statement guard's
(``ctx.postgres_inspector``, set by ``dbkeep up``): until it is installed, the master user's
sessions are inspected with :class:`PassEverything`.
"""

from __future__ import annotations

from typing import Any, Protocol

from dbkeep.errors import DbError
from dbkeep.gateway.offload import HandedBack, stop_set
from dbkeep.gateway.postgres import ClientState

from .session import Phase

__all__ = ["NATIVE_INSPECT", "NATIVE_STOP", "EngineResync", "Inspector", "NativeInspection", "PassEverything",
           "inspector_for", "master_sessions"]

# Query, Parse, FunctionCall: the messages that carry what a statement guard judges.
NATIVE_INSPECT = stop_set({ord("Q"), ord("P"), ord("F")})
# Nothing else needs Python in the query phase (a message the relay cannot frame goes back anyway).
NATIVE_STOP = stop_set(set())


class Inspector(Protocol):
    def judge(self, message: bytes) -> DbError | None:
        """A whole client message (type byte, int32 length, body): None to let it pass, or the
        error to refuse it with (a statement error: the session goes on)."""


class PassEverything:
    """The inspector of a session that must be inspected while no statement guard is installed."""

    def judge(self, message: bytes) -> DbError | None:
        return None


def master_sessions(session: Any) -> Inspector | None:
    """``ctx.postgres_inspector`` until the statement guard provides its own: the master user's
    sessions are inspected (the account that can reach rdsadmin), with nothing refused yet."""
    target = session.target
    if target is not None and session.user == target.master_username:
        return PassEverything()
    return None


def inspector_for(session: Any) -> Inspector | None:
    factory = session.ctx.postgres_inspector
    return None if factory is None else factory(session)


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
    _inspector: Inspector | None
    _predecided: tuple[bytes, DbError | None] | None
    _resync: EngineResync | None
    _resuming = False

    def _go_native(self) -> None:
        """An inspected session goes to the native relay threads when both machines are between
        messages with nothing buffered and no refusal is waiting for its answer."""
        engine, client = self.engine, self.client
        if (self._guard is not None or self.ctx.offload is None or self.phase is not Phase.RELAYING or engine is None
                or client.state is not ClientState.READY or client.trailing_data[0] or not engine.at_message_boundary
                or engine.refusals_pending or self._resync is not None or self._predecided is not None
                or self._resuming):
            return
        self._hand_over(postgres=NATIVE_STOP, inspect=NATIVE_INSPECT)

    def _inspect_native(self, command: bytes) -> None:
        """A Query, Parse or FunctionCall the relay holds: forward it when the inspector lets it
        pass; otherwise the session comes back here with it first and the framed relay replays
        this verdict (``_judge_statement``)."""
        offload, handle, inspector = self.ctx.offload, self._offloaded, self._inspector
        if offload is None or handle is None or self.phase is Phase.CLOSED:
            return
        try:
            error = inspector.judge(command) if inspector is not None else None
            if error is None:
                offload.verdict(handle, True)
                return
            self._predecided = (command, error)
            offload.verdict(handle, False)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)

    def _handed_back(self, handle: int, handed_back: HandedBack) -> None:
        """The relay gave the session back before a message: the framed relay carries on, the
        engine's stream framed from its next message (the rest of the current one passes)."""
        offload = self.ctx.offload
        if offload is None or self.engine is None or handed_back.engine_resync is None:
            self._abort()
            return
        self._resuming = True  # not back to the relay before the client's bytes are read here
        try:
            if handed_back.client_records:
                self.client_leg.raw.write(handed_back.client_records)  # before any new record
            offload.resume(handle)
            resync = EngineResync(*handed_back.engine_resync)
            self._resync = None if resync.done else resync
            if handed_back.engine:
                self._engine_data(handed_back.engine)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)
            return
        finally:
            self._resuming = False
        if handed_back.client and self.phase is Phase.RELAYING:
            self.data_received(handed_back.client)
        else:
            self._go_native()

    def _resynced(self, data: bytes) -> bytes:
        resync = self._resync
        assert resync is not None
        through, data = resync.split(data)
        if through:
            self.client_leg.transport.write(through)  # type: ignore[union-attr]
        if resync.done:
            self._resync = None
        return data
