"""The protocol sessions the gateway offers, by engine ("mysql", "postgres")."""

from __future__ import annotations

from dbkeep.gateway.listener import SessionFactory

SESSIONS: dict[str, SessionFactory] = {}
