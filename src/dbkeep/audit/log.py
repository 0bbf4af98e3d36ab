"""Security audit events: one JSON object per line in ``DIR/audit.log`` (0600).

Every security decision is an event: API authentication failures and access denials, database
logins allowed or denied, guard refusals, master resets. Events carry who, what, where and the
verdict — never a secret (fields are passed explicitly; nothing is taken from request bodies).

Retention: when ``audit.log`` reaches ``max_bytes`` it becomes ``audit.log.1`` (``.1`` becomes
``.2`` …) and a new ``audit.log`` is opened; ``keep`` rotated files are kept and the oldest
beyond them is deleted. Writing and rotating share one lock, and a line is written whole before
a rotation can start, so no event is lost or split across a rotation; a restart appends to the
file it finds (``audit/query.py`` reads them back in order).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbkeep.clock import Clock

log = logging.getLogger("dbkeep.audit")

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_KEEP = 10


def rotated_path(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


class AuditLog:
    def __init__(self, path: Path, clock: Clock, *, max_bytes: int = DEFAULT_MAX_BYTES, keep: int = DEFAULT_KEEP) -> None:
        if max_bytes < 1024 or keep < 1:
            raise ValueError("an audit log rotates at 1 KiB or more and keeps at least one rotated file")
        self._path = path
        self._clock = clock
        self._max_bytes = max_bytes
        self._keep = keep
        self._lock = threading.Lock()
        self._file, self._size = self._open()
        # told (kind, verdict, fields) of every event once it is written (metrics.py counts them)
        self.observers: list[Callable[[str, str, dict[str, Any]], None]] = []

    def _open(self) -> tuple[Any, int]:
        fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.fchmod(fd, 0o600)
        size = os.fstat(fd).st_size
        return os.fdopen(fd, "a", encoding="utf-8", buffering=1), size

    def event(self, kind: str, *, verdict: str, **fields: Any) -> None:
        record = {"time": self._clock.now().isoformat(timespec="milliseconds"), "event": kind, "verdict": verdict}
        record.update({k: v for k, v in fields.items() if v is not None})
        line = json.dumps(record, sort_keys=False, default=str) + "\n"
        with self._lock:
            self._file.write(line)
            self._size += len(line.encode("utf-8"))
            if self._size >= self._max_bytes:
                self._rotate()
        # The file is the record; echoing every login into the process log at INFO doubled the
        # cost of an event on the gateway's hot login path. --log-level debug shows them.
        log.debug("audit %s", line.rstrip("\n"))
        for observe in self.observers:
            observe(kind, verdict, record)

    def tally(self, kind: str, **fields: Any) -> None:
        """An occurrence of ``kind`` that gets no line of its own (a later summary counts it,
        as ``gateway/refusals.py`` does in a flood): the observers only."""
        record = {k: v for k, v in fields.items() if v is not None}
        for observe in self.observers:
            observe(kind, "deny", record)

    def _rotate(self) -> None:
        """Under the lock: the full file moves to ``.1`` and a new one is opened."""
        self._file.flush()
        os.fsync(self._file.fileno())  # what was written is on disk before it is renamed
        self._file.close()
        rotated_path(self._path, self._keep).unlink(missing_ok=True)  # beyond the retention
        held = 0  # the rotated files are .1 … .held, without gaps
        while held < self._keep - 1 and rotated_path(self._path, held + 1).exists():
            held += 1
        for n in range(held, 0, -1):
            rotated_path(self._path, n).rename(rotated_path(self._path, n + 1))
        self._path.rename(rotated_path(self._path, 1))
        self._file, self._size = self._open()

    def close(self) -> None:
        with self._lock:
            self._file.close()
