"""The protocol sessions the gateway offers, by engine ("mysql", "postgres")."""

from __future__ import annotations

from dbkeep.gateway.listener import SessionFactory
from dbkeep.gateway.mysql.session import MySQLSession
from dbkeep.gateway.postgres.session import PostgresSession

SESSIONS: dict[str, SessionFactory] = {"mysql": MySQLSession, "postgres": PostgresSession}
