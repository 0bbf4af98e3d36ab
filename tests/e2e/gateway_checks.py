"""What the MySQL and PostgreSQL gateway e2e tests read back from a running ``dbkeep up``: its
audit log, and its process log for exceptions that escaped a session."""

from __future__ import annotations

import json


def audit_mark(dbkeep) -> int:
    """Where the audit log ends now: ``audit_events(..., since=mark)`` sees only later events."""
    return len((dbkeep.state_dir / "audit.log").read_text().splitlines())


def audit_events(dbkeep, kind: str, cluster: str, *, since: int = 0) -> list[dict]:
    lines = (dbkeep.state_dir / "audit.log").read_text().splitlines()[since:]
    return [e for e in map(json.loads, lines) if e.get("event") == kind and e.get("cluster") == cluster]


def assert_no_exception_escaped_a_session(dbkeep, protocol: str) -> None:
    """Every fault ended one session cleanly: no internal error, no callback traceback from the
    ``protocol`` gateway (``mysql`` or ``postgres``) or the listener in the process log."""
    log = dbkeep.logs()
    assert "internal error" not in "\n".join(line for line in log.splitlines() if f"gateway.{protocol}" in line)
    for block in log.split("Traceback (most recent call last):")[1:]:
        assert f"gateway/{protocol}" not in block and "gateway/listener" not in block, block[:2000]
