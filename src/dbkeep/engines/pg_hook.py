"""The PostgreSQL engine's own refusal of changes to the roles dbkeep owns (``native/dbkeep_protect.c``).

Theory of operation. The gateway's statement guard reads what privileged sessions send; SQL run
inside the engine (EXECUTE in a DO block, a function, a procedure, a trigger fired by any
session) it cannot read, and for that the gateway checks and restores the roles afterwards.
``dbkeep_protect.so``, a ProcessUtility hook built at install against Debian's
postgresql-server-dev, makes the engine itself refuse those changes (SQLSTATE 42501, the
guard's texts) unless the current user is a superuser (rdsadmin). It is copied into the
cluster's ``conf/`` (the engine may read there, never write: engines/confine.py) and named in
``shared_preload_libraries``; a change of the file takes effect at the next engine start.

Without the build (no server headers) the engines run without it and dbkeep says so at each
start; the guard and the check after opaque code still protect the roles.
``DBKEEP_TEST_NO_PG_HOOK`` (tests only) leaves it out, so the layer behind it can be tested.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from dbkeep.engines.layout import ClusterLayout

log = logging.getLogger("dbkeep.engines.postgres")

HOOK_FILE = "dbkeep_protect.so"
NATIVE = Path(__file__).resolve().parent / "native"
TEST_OFF_ENV = "DBKEEP_TEST_NO_PG_HOOK"


def hook_source() -> Path:
    return NATIVE / HOOK_FILE


def sync_hook(layout: ClusterLayout) -> Path | None:
    """Put the hook in the cluster's ``conf/`` (only when it changed); its path for
    ``shared_preload_libraries``, or None when it is not built or turned off for a test."""
    target = layout.conf / HOOK_FILE
    source = hook_source()
    if os.environ.get(TEST_OFF_ENV) or not source.is_file():
        if not os.environ.get(TEST_OFF_ENV):
            log.warning("%s was not built (apt-get install postgresql-server-dev-15, then make setup): the engine "
                        "does not refuse changes to the roles dbkeep owns by itself", source)
        target.unlink(missing_ok=True)
        return None
    data = source.read_bytes()
    if not (target.is_file() and not target.is_symlink() and target.read_bytes() == data):
        tmp = layout.conf / f".{HOOK_FILE}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    return target
