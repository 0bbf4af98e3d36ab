"""How a driver wires the two PostgreSQL machines in the query phase (sans-I/O).

Theory of operation (PostgreSQL documentation, "Simple Query", "Extended Query", "COPY
Operations"; the MySQL counterpart is ``gateway/mysql/relay.py``). After ReadyForQuery a
session is a relay: what the client sends goes to the engine, what the engine sends goes to
the client. Both directions are drained here, event by event, from machines that already
hold the received bytes:

- :func:`client_to_engine`: frontend messages are framed and bounded by
  :class:`~.client.ClientFacing`; Query, Parse and FunctionCall go to ``judge`` (the statement
  guard, None when no guard watches the session), and a refusal goes to the engine as its
  sentinel (:meth:`~.client.ClientFacing.refuse`), so the client gets its replies in order
  and the transaction state stays exact. A judge may also answer :data:`HOLD` (it must ask the
  engine first): the statement is kept in ``held`` and draining stops (:data:`HELD`) until the
  driver calls :func:`release` with the verdict. Everything a chunk yields is appended to the
  caller's ``out`` list (the caller writes it to the engine in one ``write``, also when an
  error ends the chunk); Terminate and the client's end of stream are reported.
- :func:`engine_to_client`: the engine's output is relayed in the runs it arrives in
  (:class:`~.events.BackendData`), each handed to ``write`` as it comes; the engine's end of
  stream is reported.

No copy and no coroutine per chunk: the driver calls these from its ``data_received``.
Unguarded sessions do not come here at all once they are logged in (raw or native relay).
"""

from __future__ import annotations

from collections.abc import Callable

from dbkeep.errors import DbError, LocalProtocolError
from dbkeep.gateway.sansio import NEED_DATA

from .client import ClientFacing
from .engine import EngineFacing
from .events import BackendData, ConnectionClosed, FrontendMessage, FunctionCall, Parse, Query, Sync, Terminate

__all__ = ["HALF_CLOSED", "HELD", "HOLD", "TERMINATED", "client_to_engine", "engine_to_client", "release"]

TERMINATED = "terminated"  # the client sent Terminate: forward it, then close
HALF_CLOSED = "half-closed"  # the client's end of stream at a message boundary: so does the engine side
HELD = "held"  # a statement waits for its verdict (see release)


class _Hold:
    def __repr__(self) -> str:
        return "HOLD"


HOLD = _Hold()  # a judge's answer: no verdict yet

Judge = Callable[[Query | Parse | FunctionCall], "DbError | None | _Hold"]


def release(client: ClientFacing, engine: EngineFacing, event: Query | Parse | FunctionCall, error: DbError | None,
            out: list[bytes]) -> None:
    """The verdict on a held statement: forward it (``error`` None) or refuse it."""
    if error is not None:
        out.append(engine.send(client.refuse(event, error)))
    else:
        out.append(engine.send(event))


def client_to_engine(client: ClientFacing, engine: EngineFacing, judge: Judge | None, out: list[bytes],
                     held: list[Query | Parse | FunctionCall] | None = None) -> str | None:
    """Drain the client machine into ``out`` (bytes for the engine): None when it needs more
    data, :data:`TERMINATED` or :data:`HALF_CLOSED` when the client is done, :data:`HELD` when
    the judge held a statement (appended to ``held``; nothing after it is read)."""
    while True:
        event = client.next_event()
        kind = type(event)
        if kind is FrontendMessage or kind is Sync:
            out.append(engine.send(event))
        elif event is NEED_DATA:
            return None
        elif kind is Query or kind is Parse or kind is FunctionCall:
            if judge is not None:
                error = judge(event)  # type: ignore[arg-type]
                if error is HOLD:
                    if held is None:
                        raise LocalProtocolError("a judge held a statement the caller cannot hold")
                    held.append(event)  # type: ignore[arg-type]
                    return HELD
                if error is not None:
                    out.append(engine.send(client.refuse(event, error)))  # type: ignore[arg-type]
                    continue
            out.append(engine.send(event))
        elif kind is Terminate:
            out.append(engine.send(event))
            return TERMINATED
        elif kind is ConnectionClosed:
            return HALF_CLOSED
        else:  # pragma: no cover - the state table allows nothing else here
            raise LocalProtocolError(f"unexpected client event {event!r} in the query phase")


def engine_to_client(engine: EngineFacing, client: ClientFacing, write: Callable[[bytes], object]) -> bool:
    """Drain the engine machine, each run of output to ``write`` (the client's); True when the
    engine closed (what it sent before, its FATAL included, has been written)."""
    while True:
        event = engine.next_event()
        if type(event) is BackendData:
            data = client.send(event)
            if data:
                write(data)
            continue
        if event is NEED_DATA:
            return False
        if type(event) is ConnectionClosed:
            return True
        raise LocalProtocolError(f"unexpected engine event {event!r} in the query phase")  # pragma: no cover
