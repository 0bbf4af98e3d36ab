"""Engines: real MariaDB and PostgreSQL processes, supervised by dbkeep.

- :mod:`.driver` — the EngineDriver protocol, EngineSpec, EngineStatus;
- :mod:`.local` — the local-process driver (MariaDB in :mod:`.mariadb`, PostgreSQL in :mod:`.postgres`);
- :mod:`.supervisor` — one task per engine process, readiness, restarts with backoff, shutdown;
- :mod:`.confine` — the Landlock launcher that confines every engine process to its cluster;
- :mod:`.bootstrap` — the Aurora-style accounts, roles and procedures, as data;
- :mod:`.reset` — the master-user reset ("No lockouts");
- :mod:`.settings` — the curated engine settings and their validation.
"""

from dbkeep.engines.driver import EngineDriver, EngineSpec, EngineState, EngineStatus

__all__ = ["EngineDriver", "EngineSpec", "EngineState", "EngineStatus"]
