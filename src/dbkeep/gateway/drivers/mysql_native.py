"""The MySQL session's side of the native relay (``gateway/offload.py``, C in ``relay/``): when a
session goes to the relay threads, what they hand up for a verdict, and how it carries on in
Python after a hand-back (``drivers/mysql.py``, "Native relay", has the whole story;
docs/DESIGN-NOTES.md, "Native relay", the design).

An uninspected session goes with the stop set only. An inspected one (``mysql_inspect.py``)
goes too, with an inspect set: the commands its inspector reads. :meth:`NativeRelay._inspect_native`
builds the event the sans-I/O relay would and asks the inspector; a pass with nothing to do
after it is forwarded by the relay, anything else comes back here with that command first,
and ``MySQLSession._decide`` replays the verdict instead of asking again.
"""

from __future__ import annotations

from typing import Any

from dbkeep.gateway.mysql import charsets
from dbkeep.gateway.mysql.events import Command, Prepare, Query
from dbkeep.gateway.mysql.messages import CommandCode, ErrPacket
from dbkeep.gateway.offload import HandedBack, stop_set

from .session import Phase

_UNTRACKED = object()  # an uninspected session: the relay reports nothing

__all__ = ["NativeRelay"]

# The native relay gives an unguarded session back before these (COM_CHANGE_USER is a new
# login; the others change what the sans-I/O layer tracks); it forwards COM_QUIT itself.
_NATIVE_STOP = stop_set({CommandCode.COM_CHANGE_USER, CommandCode.COM_RESET_CONNECTION,
                         CommandCode.COM_PROCESS_KILL, CommandCode.COM_MULTI})
# What the native relay reports of an inspected session for a verdict: the commands the
# inspector reads (mysql_inspect.Inspector.decide); COM_STMT_EXECUTE too once a prepared
# statement is a hygiene trigger.
_NATIVE_INSPECT_CODES = frozenset({CommandCode.COM_QUERY, CommandCode.COM_STMT_PREPARE, CommandCode.COM_INIT_DB})
_NATIVE_INSPECT = stop_set(_NATIVE_INSPECT_CODES)
_NATIVE_INSPECT_EXECUTE = stop_set(_NATIVE_INSPECT_CODES | {CommandCode.COM_STMT_EXECUTE})
# Hand-over attempts after a login or a hand-back: one fails only while bytes are buffered (a
# busy session), so a few suffice; a session that is never quiescent, or a TLS object the
# relay refuses, then stays in Python without a check on every engine chunk.
_OFFLOAD_ATTEMPTS = 16


class NativeRelay:
    """Mixed into MySQLSession, whose attributes these methods use."""

    ctx: Any
    phase: Any
    relay: Any
    client_leg: Any
    engine_leg: Any
    _guard: Any
    _inspector: Any
    _pending: Any
    _offloaded: int | None
    _offload_wanted: bool
    _offload_attempts: int
    _predecided: tuple[bytes, ErrPacket | object | None, tuple[str, str] | None] | None

    def _want_offload(self) -> None:
        self._offload_wanted = (self.ctx.offload is not None and self._guard is None and self._inspection_idle()
                                and self.phase is not Phase.CLOSED)
        self._offload_attempts = _OFFLOAD_ATTEMPTS

    # the inspected session's database when it went to the relay: its plain statements were
    # allowed (or not) for that one, so a change of database brings the session back first
    _relay_database: object = _UNTRACKED

    def _inspection_idle(self) -> bool:
        """No hygiene due or running and no verdict waiting to be replayed: the native relay
        may carry the session (inspected or not)."""
        inspector = self._inspector
        if inspector is None or not inspector.active:
            return True
        return not inspector.busy and inspector.post is None and self._predecided is None

    def _try_offload(self) -> None:
        """Hand the session to the native relay (``ctx.offload``) if it is at a command
        boundary with nothing buffered anywhere; otherwise it is tried again after the next
        engine bytes. Unguarded sessions only (a guard must see every statement); an inspected
        one goes with the commands its inspector reads in the inspect set."""
        relay, client, engine = self.relay, self.client_leg, self.engine_leg
        if not self._inspection_idle():
            return
        inspector = self._inspector
        inspect = None
        plain = False
        if inspector is not None and inspector.active:
            inspect = _NATIVE_INSPECT_EXECUTE if inspector.prepared_trigger else _NATIVE_INSPECT
            plain = inspector.plain_on_relay()
        if (self.phase is not Phase.RELAYING or self.ctx.offload is None or relay is None or self._pending is not None
                or client.hold is not None or engine.hold is not None or client.paused or engine.paused):
            return
        state = relay.native_state()
        if state is None:
            return
        self._offload_attempts -= 1
        if self._offload_attempts <= 0:
            self._offload_wanted = False
        wrap, quiet = state
        database = inspector.facts.database if inspect is not None and inspector is not None else _UNTRACKED
        if self._hand_over(mysql=(_NATIVE_STOP, wrap, quiet), inspect=inspect, plain=plain):
            self._relay_database = database
            self._offload_wanted = False

    def _inspect_native(self, command: bytes) -> None:
        """An inspected command the native relay holds (one whole packet): forward it when the
        inspector lets it go as it is and has nothing to do after it; otherwise the session
        comes back here with it first, and the full path replays this verdict (``_decide``)."""
        offload, handle, relay, inspector = self.ctx.offload, self._offloaded, self.relay, self._inspector
        if offload is None or handle is None or self.phase is Phase.CLOSED:
            return
        try:
            verdict: ErrPacket | object | None = None
            post = None
            if inspector is not None and inspector.active and relay is not None:
                code = command[4]
                raw = memoryview(command)
                if code == CommandCode.COM_QUERY:
                    event: Query | Prepare | Command = Query(raw, charsets.decode(command[5:], relay.client.charset))
                elif code == CommandCode.COM_STMT_PREPARE:
                    event = Prepare(raw, charsets.decode(command[5:], relay.client.charset))
                else:
                    event = Command(raw, code)
                trigger = inspector.prepared_trigger
                verdict = inspector.decide(event)
                # the relay's plain statements were allowed for the database at the hand-over:
                # another one (USE, COM_INIT_DB, a multi-statement) sends the session back first
                same_database = self._relay_database is _UNTRACKED or inspector.facts.database == self._relay_database
                if verdict is None and not inspector.busy and inspector.post is None and (
                        inspector.prepared_trigger == trigger) and same_database:
                    offload.verdict(handle, True)
                    return
                post, inspector.post = inspector.post, None  # restored when the command is forwarded
            self._predecided = (command, verdict, post)
            offload.verdict(handle, False)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)

    def _handed_back(self, handle: int, handed_back: HandedBack) -> None:
        """The native relay stopped before a command Python must see: the transports carry on
        from the same TLS objects with what the relay had not delivered."""
        offload, relay = self.ctx.offload, self.relay
        assert offload is not None and relay is not None
        try:
            relay.native_handed_back(handed_back.quiet)
            if handed_back.client_records:
                self.client_leg.raw.write(handed_back.client_records)  # type: ignore[union-attr]  # before any new record
            offload.resume(handle)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)
            return
        if handed_back.engine:
            self._engine_data(handed_back.engine)
        if handed_back.client:
            self._client_data(handed_back.client)
        self._want_offload()
