"""Reading the audit trail back: ``dbkeep audit`` and its filters.

The events of ``audit.log`` and its rotated files (oldest first: ``audit.log.N`` … ``.1``, then
``audit.log``) are read line by line and filtered; a line that is not a JSON object (a crash in
the middle of a write) is counted, never fatal.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from dbkeep.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time(text: str, now: dt.datetime) -> dt.datetime:
    """``1h``, ``30m``, ``2d`` (that long before ``now``) or an ISO 8601 time (UTC if no zone)."""
    m = _DURATION.match(text)
    if m:
        return now - dt.timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{text!r} is neither a duration such as 15m, 1h or 2d nor an ISO 8601 time") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def log_files(path: Path) -> list[Path]:
    """The audit log's files, oldest first."""
    rotated = []
    for candidate in path.parent.glob(f"{path.name}.*"):
        suffix = candidate.name[len(path.name) + 1:]
        if suffix.isdigit():
            rotated.append((int(suffix), candidate))
    return [p for _, p in sorted(rotated, reverse=True)] + ([path] if path.exists() else [])


@dataclass
class ReadStats:
    unreadable_lines: int = 0


def read_events(path: Path, stats: ReadStats | None = None) -> Iterator[dict]:
    for file in log_files(path):
        try:
            handle = file.open(encoding="utf-8", errors="replace")
        except FileNotFoundError:  # rotated away while we read
            continue
        with handle:
            for line in handle:
                try:
                    event = json.loads(line)
                except ValueError:
                    event = None
                if isinstance(event, dict):
                    yield event
                elif line.strip() and stats is not None:
                    stats.unreadable_lines += 1


@dataclass(frozen=True)
class Filters:
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    cluster: str | None = None
    principal: str | None = None  # an ARN, or its last part (a user or role name, or an account id)
    user: str | None = None  # the database user
    verdict: str | None = None
    event: str | None = None  # a name or a glob: gateway.*, api.access_denied
    source_ip: str | None = None

    def match(self, event: dict) -> bool:
        if self.since is not None or self.until is not None:
            try:
                when = dt.datetime.fromisoformat(str(event.get("time")))
            except ValueError:
                return False
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
            if (self.since is not None and when < self.since) or (self.until is not None and when > self.until):
                return False
        if self.cluster is not None and self.cluster not in (event.get("cluster"), event.get("cluster_resource_id")):
            return False
        if self.principal is not None and not _principal_matches(str(event.get("principal", "")), self.principal):
            return False
        if self.user is not None and event.get("user") != self.user:
            return False
        if self.verdict is not None and event.get("verdict") != self.verdict:
            return False
        if self.event is not None and not fnmatch.fnmatchcase(str(event.get("event", "")), self.event):
            return False
        if self.source_ip is not None and event.get("source_ip") != self.source_ip:
            return False
        return True


def _principal_matches(arn: str, wanted: str) -> bool:
    if not arn:
        return False
    return arn == wanted or arn.endswith((f"/{wanted}", f":{wanted}")) or arn.split(":")[4:5] == [wanted]


def select(events: Iterable[dict], filters: Filters, limit: int | None = None) -> list[dict]:
    """The matching events in order; with ``limit``, the last ``limit`` of them."""
    chosen = [e for e in events if filters.match(e)]
    return chosen[-limit:] if limit else chosen


_COLUMNS = (("time", 23), ("event", 24), ("verdict", 7), ("cluster", 16), ("who", 34), ("source_ip", 15), ("reason", 0))


def format_table(events: list[dict]) -> str:
    def who(e: dict) -> str:
        principal = str(e.get("principal", ""))
        user = e.get("user")
        short = principal.rsplit("/", 1)[-1] if "/" in principal else principal.rsplit(":", 1)[-1]
        return " ".join(x for x in (short, f"db:{user}" if user else "") if x)

    rows = [[e.get("time", "")[:23], e.get("event", ""), e.get("verdict", ""), e.get("cluster", ""), who(e),
             e.get("source_ip", ""), e.get("reason", "") or e.get("action", "")] for e in events]
    header = [name.upper() for name, _ in _COLUMNS]
    lines = []
    for row in [header, *rows]:
        cells = [str(v) if width == 0 else str(v)[:width].ljust(width) for v, (_, width) in zip(row, _COLUMNS)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def format_json(events: list[dict]) -> str:
    return "\n".join(json.dumps(e, sort_keys=False) for e in events)
