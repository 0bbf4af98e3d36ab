"""The audit log: rotation by size that loses no event (concurrent writers, restarts), and the
filters of ``dbkeep audit``."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dbkeep.audit import query
from dbkeep.audit.log import AuditLog, rotated_path
from dbkeep.clock import FakeClock
from dbkeep.errors import ConfigError

T0 = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.timezone.utc)


def all_events(path: Path) -> list[dict]:
    stats = query.ReadStats()
    events = list(query.read_events(path, stats))
    assert stats.unreadable_lines == 0
    return events


def test_rotation_under_concurrent_writers_loses_and_splits_no_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path, FakeClock(T0), max_bytes=16384, keep=10_000)
    writers, each = 8, 1500

    def write(w: int) -> None:
        for i in range(each):
            log.event("gateway.login", verdict="allow", cluster="c1", user=f"u{w}", seq=i, pad="x" * (i % 97))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    files = query.log_files(path)
    assert len(files) > 20  # it really rotated, many times
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    events = all_events(path)
    assert len(events) == writers * each
    for w in range(writers):  # every writer's events, each once and in its order
        assert [e["seq"] for e in events if e["user"] == f"u{w}"] == list(range(each))


def test_retention_keeps_the_newest_files_and_a_restart_appends(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path, FakeClock(T0), max_bytes=1024, keep=3)
    for i in range(200):
        log.event("api.call", verdict="allow", seq=i)
    log.close()
    assert [f.name for f in query.log_files(path)] == ["audit.log.3", "audit.log.2", "audit.log.1", "audit.log"]
    seqs = [e["seq"] for e in all_events(path)]
    assert seqs == list(range(seqs[0], 200)) and seqs[0] > 0  # the oldest went, in order, nothing in between
    before = path.stat().st_size
    log = AuditLog(path, FakeClock(T0), max_bytes=1024, keep=3)  # a restart
    log.event("api.call", verdict="allow", seq=200)
    log.close()
    assert path.stat().st_size > before or rotated_path(path, 1).exists()
    assert [e["seq"] for e in all_events(path)][-2:] == [199, 200]


def test_a_line_cut_short_is_counted_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    path.write_text('{"event": "a", "verdict": "allow"}\n{"event": "b", "ver')
    stats = query.ReadStats()
    assert [e["event"] for e in query.read_events(path, stats)] == ["a"]
    assert stats.unreadable_lines == 1


EVENTS = [
    {"time": "2026-12-05T10:00:00.000+00:00", "event": "api.access_denied", "verdict": "deny",
     "principal": "arn:aws:iam::123456789012:user/alice", "source_ip": "127.0.0.1", "action": "rds:DeleteDBCluster"},
    {"time": "2026-12-05T11:30:00.000+00:00", "event": "gateway.login", "verdict": "allow", "cluster": "app",
     "user": "admin", "source_ip": "127.0.0.2"},
    {"time": "2026-12-05T11:45:00.000+00:00", "event": "gateway.login", "verdict": "deny", "cluster": "app",
     "user": "bob", "source_ip": "127.0.0.1", "reason": "engine: 1045"},
    {"time": "2026-12-05T11:50:00.000+00:00", "event": "rds.master_reset", "verdict": "allow", "cluster": "other",
     "cluster_resource_id": "cluster-ABC", "principal": "arn:aws:sts::123456789012:assumed-role/ops/s1"},
]


@pytest.mark.parametrize("filters, expected", [
    (query.Filters(), [0, 1, 2, 3]),
    (query.Filters(since=T0 - dt.timedelta(hours=1)), [1, 2, 3]),
    (query.Filters(until=dt.datetime(2026, 12, 5, 11, 40, tzinfo=dt.timezone.utc)), [0, 1]),
    (query.Filters(cluster="app"), [1, 2]),
    (query.Filters(cluster="cluster-ABC"), [3]),
    (query.Filters(principal="alice"), [0]),
    (query.Filters(principal="ops"), []),  # a role session is named by its session, or by its whole ARN
    (query.Filters(principal="s1"), [3]),
    (query.Filters(principal="123456789012"), [0, 3]),
    (query.Filters(user="bob"), [2]),
    (query.Filters(verdict="deny"), [0, 2]),
    (query.Filters(event="gateway.*"), [1, 2]),
    (query.Filters(event="gateway.login", verdict="allow", source_ip="127.0.0.2"), [1]),
])
def test_filters(filters: query.Filters, expected: list[int]) -> None:
    assert query.select(EVENTS, filters) == [EVENTS[i] for i in expected]


def test_limit_keeps_the_last_matches() -> None:
    assert query.select(EVENTS, query.Filters(), limit=2) == EVENTS[2:]


def test_times() -> None:
    assert query.parse_time("90m", T0) == T0 - dt.timedelta(minutes=90)
    assert query.parse_time("2d", T0) == T0 - dt.timedelta(days=2)
    assert query.parse_time("2026-12-05T11:00:00Z", T0) == dt.datetime(2026, 12, 5, 11, tzinfo=dt.timezone.utc)
    assert query.parse_time("2026-12-05 11:00", T0) == dt.datetime(2026, 12, 5, 11, tzinfo=dt.timezone.utc)
    with pytest.raises(ConfigError, match="neither a duration"):
        query.parse_time("yesterday", T0)


def test_dbkeep_audit_command(tmp_path: Path) -> None:
    (tmp_path / "audit.log.1").write_text("".join(json.dumps(e) + "\n" for e in EVENTS[:2]))
    (tmp_path / "audit.log").write_text("".join(json.dumps(e) + "\n" for e in EVENTS[2:]))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dbkeep", "audit", "--state-dir", str(tmp_path), *args],
                              capture_output=True, text=True, timeout=60)

    out = run("--format", "json", "--event", "gateway.login")
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["user"] for line in out.stdout.splitlines()] == ["admin", "bob"]
    table = run("--verdict", "deny").stdout.splitlines()
    assert table[0].split()[:3] == ["TIME", "EVENT", "VERDICT"]
    assert len(table) == 3 and "alice" in table[1] and "db:bob" in table[2] and "engine: 1045" in table[2]
    bad = run("--since", "yesterday")
    assert bad.returncode == 2 and "neither a duration" in bad.stderr
    assert run("--state-dir", str(tmp_path / "none")).returncode == 1
