"""Security audit events: one JSON object per line in ``DIR/audit.log`` (0600).

Every security decision is an event: API authentication failures and access denials, database
logins allowed or denied, guard refusals, master resets. Events carry who, what, where and the
verdict — never a secret (fields are passed explicitly; nothing is taken from request bodies).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from dbkeep.clock import Clock

log = logging.getLogger("dbkeep.audit")


class AuditLog:
    def __init__(self, path: Path, clock: Clock) -> None:
        self._path = path
        self._clock = clock
        self._lock = threading.Lock()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def event(self, kind: str, *, verdict: str, **fields: Any) -> None:
        record = {"time": self._clock.now().isoformat(timespec="milliseconds"), "event": kind, "verdict": verdict}
        record.update({k: v for k, v in fields.items() if v is not None})
        line = json.dumps(record, sort_keys=False, default=str)
        with self._lock:
            self._file.write(line + "\n")
        # The file is the record; echoing every login into the process log at INFO doubled the
        # cost of an event on the gateway's hot login path. --log-level debug shows them.
        log.debug("audit %s", line)

    def close(self) -> None:
        with self._lock:
            self._file.close()
