"""The gateway's asyncio session drivers: the only part of the gateway that touches sockets.

- :mod:`.leg` -- one side of a session: its transport, watermarks and pause reasons, TLS
  upgrade with its hold buffer, close with a grace;
- :mod:`.session` -- the life cycle both protocols share (:class:`~.session.Phase` and its
  transition table, admission, timers, audit once, internal errors, the native relay);
- :mod:`.mysql`, :mod:`.postgres` -- what each protocol's events mean, over the sans-I/O
  packages ``gateway/mysql`` and ``gateway/postgres``.
"""

from __future__ import annotations

from dbkeep.gateway.listener import SessionFactory

from .mysql import MySQLSession
from .postgres import PostgresSession

__all__ = ["SESSIONS", "MySQLSession", "PostgresSession"]

# The protocol sessions the gateway offers, by engine ("mysql", "postgres").
SESSIONS: dict[str, SessionFactory] = {"mysql": MySQLSession, "postgres": PostgresSession}
