"""Refusals are counted per source without one audit event per connection (gateway/refusals.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from dbkeep.gateway import refusals
from dbkeep.gateway.refusals import RefusalLog, source_key


class _Audit:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def event(self, kind: str, *, verdict: str, **fields) -> None:
        self.events.append({"event": kind, "verdict": verdict, **fields})


class _Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def now(self) -> datetime:
        self.t += timedelta(milliseconds=1)
        return self.t


class _Timers:
    """A fake scheduler: records armed timers; the test fires them."""

    def __init__(self) -> None:
        self.armed: list = []

    def __call__(self, delay, callback):
        timer = _Timer(delay, callback)
        self.armed.append(timer)
        return timer

    def fire(self) -> None:
        timers, self.armed = [t for t in self.armed if not t.cancelled], []
        for timer in timers:
            timer.callback()


class _Timer:
    def __init__(self, delay, callback) -> None:
        self.delay, self.callback, self.cancelled = delay, callback, False

    def cancel(self) -> None:
        self.cancelled = True


def _log():
    audit, timers = _Audit(), _Timers()
    return audit, timers, RefusalLog(audit, _Clock(), 60, schedule=timers)


def test_a_flood_from_one_source_is_one_event_then_one_summary_per_interval():
    audit, timers, log = _log()
    for _ in range(1000):
        log.refused("c1", "127.0.0.2", refusals.PENDING_LIMIT, port=3306)
    assert [e["event"] for e in audit.events] == ["gateway.connection_refused"]
    first = audit.events[0]
    assert (first["verdict"], first["cluster"], first["source_ip"], first["reason"], first["port"]) == \
        ("deny", "c1", "127.0.0.2", refusals.PENDING_LIMIT, 3306)
    assert len(timers.armed) == 1 and timers.armed[0].delay == 60  # one timer, however many refusals
    timers.fire()
    summary = audit.events[1]
    assert summary["event"] == "gateway.connection_refused_summary" and summary["count"] == 999
    assert summary["first"] < summary["last"] and summary["interval"] == 60
    # the next interval: counted again, one more summary
    for _ in range(10):
        log.refused("c1", "127.0.0.2", refusals.PENDING_LIMIT)
    timers.fire()
    assert [e.get("count") for e in audit.events] == [None, 999, 10]
    # a quiet interval forgets the source: its next refusal is reported at once
    timers.fire()
    assert timers.armed == []
    log.refused("c1", "127.0.0.2", refusals.PENDING_LIMIT)
    assert audit.events[-1]["event"] == "gateway.connection_refused" and len(audit.events) == 4


def test_sources_clusters_and_reasons_are_counted_apart():
    audit, timers, log = _log()
    for source in ("127.0.0.2", "127.0.0.3"):
        for reason in (refusals.FIRST_BYTE_TIMEOUT, refusals.HANDSHAKE_TIMEOUT):
            for cluster in ("c1", "c2"):
                for _ in range(3):
                    log.refused(cluster, source, reason)
    assert len(audit.events) == 8
    log.close()  # summaries of what was counted when the gateway closes
    assert len(audit.events) == 16 and all(e["count"] == 2 for e in audit.events[8:])
    assert all(t.cancelled for t in timers.armed)


def test_the_table_is_bounded_whatever_the_number_of_sources(monkeypatch):
    monkeypatch.setattr(refusals, "MAX_KEYS", 10)
    audit, timers, log = _log()
    for i in range(1000):
        log.refused("c1", f"10.0.{i // 256}.{i % 256}", refusals.FIRST_BYTE_TIMEOUT)
    assert len(log._counts) == 10
    assert len(audit.events) == 10  # nine sources, then "*" (many sources) once
    assert audit.events[-1]["source_ip"] == "10.0.0.9"
    log.flush()
    summary = audit.events[-1]
    assert summary["source_ip"] == refusals.MANY_SOURCES and summary["count"] == 990


def test_source_keys():
    assert source_key("192.0.2.7") == "192.0.2.7"
    assert source_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert source_key("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert source_key("2001:db8:1:2::9") == source_key("2001:db8:1:2:ffff::1")
    assert source_key("fe80::1%eth0") == "fe80::/64"
    assert source_key("") == ""
