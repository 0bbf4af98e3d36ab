"""Injected time. Production uses :class:`SystemClock`; tests freeze or move a :class:`FakeClock`.

``DBKEEP_FAKE_TIME_FILE`` lets an end-to-end test move a ``dbkeep up`` subprocess's clock: the
file holds an offset in seconds added to the system time (used to expire temporary credentials
without waiting). It is read only when that variable is set.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """Current time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin, never going back."""


class SystemClock:
    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()


class OffsetFileClock(SystemClock):
    """System time plus an offset read from a file on every call (tests only)."""

    def __init__(self, path: str) -> None:
        self._path = path

    def _offset(self) -> float:
        try:
            with open(self._path, encoding="ascii") as f:
                return float(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0.0

    def now(self) -> dt.datetime:
        return super().now() + dt.timedelta(seconds=self._offset())


class FakeClock:
    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
        self._mono = 1000.0

    def now(self) -> dt.datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)
        self._mono += seconds


def default_clock() -> Clock:
    path = os.environ.get("DBKEEP_FAKE_TIME_FILE")
    return OffsetFileClock(path) if path else SystemClock()
