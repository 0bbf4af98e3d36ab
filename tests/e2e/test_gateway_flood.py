"""Logins cannot be blocked without logging in (issue 15, item 3), against a real ``dbkeep up``.

A flood of idle and half-open connections from one source (127.0.0.2) -- many more than the
cluster's limit, reconnecting after they are closed -- leaves a real client's login from
127.0.0.1 working on both engines (TLS verified): the per-source limit on connections that have
not logged in refuses the flood at accept, before any engine connection; the first-byte timeout
closes the idle ones early. The refusals are counted in the audit log without one event per
refused connection.
"""

from __future__ import annotations

import json
import select
import shutil
import socket
import struct
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from clusters import create_cluster, mysql, postgres
from dbkeep_process import DbkeepProcess

PASSWORD = "Flood-Pass-1"
FLOOD = 300  # connections per round from the flooding source
PENDING = 8  # --max-pending-logins
LIMIT = 60  # --max-connections: the flood alone is five times the cluster's limit
ATTACKER = "127.0.0.2"


@pytest.fixture(scope="module")
def flooded():
    base = Path(tempfile.mkdtemp(prefix="dbkeep-flood-"))
    proc = DbkeepProcess(base / "state", extra_args=[
        "--max-connections", str(LIMIT), "--max-pending-logins", str(PENDING), "--first-byte-timeout", "1",
        "--handshake-timeout", "4", "--refusal-log-interval", "2"]).start()
    yield proc
    assert proc.stop() == 0
    shutil.rmtree(base, ignore_errors=True)


def _mysql_half_login() -> bytes:
    """The first bytes of a HandshakeResponse41: the header and a few bytes of its body."""
    body = struct.pack("<IIB", 0x0200 | 0x8000 | 0x80000 | 0x0001, 1 << 24, 45) + b"\0" * 23 + b"admin\0"
    return struct.pack("<I", len(body) + 40)[:3] + b"\x01" + body


def _pg_startup(user: str = "master") -> bytes:
    body = struct.pack("!I", 3 << 16) + f"user\0{user}\0database\0appdb\0\0".encode()
    return struct.pack("!I", len(body) + 4) + body


def flood(port: int, engine: str, count: int = FLOOD) -> list[socket.socket]:
    """``count`` connections from ATTACKER: every other one says nothing at all; the others
    start a login and stop (MySQL: half a login packet after the greeting; PostgreSQL: a
    StartupMessage only, which makes the gateway open an engine connection)."""
    socks = []
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((ATTACKER, 0))
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        socks.append(sock)
        if i % 2 and engine == "aurora-postgresql":
            _send(sock, _pg_startup())
    if engine == "aurora-mysql":
        half = [s for i, s in enumerate(socks) if i % 2]
        deadline = time.monotonic() + 5
        waiting = set(half)
        while waiting and time.monotonic() < deadline:
            readable, _, _ = select.select(list(waiting), [], [], 0.2)
            for sock in readable:
                waiting.discard(sock)
                try:
                    data = sock.recv(65536)
                except OSError:
                    continue
                if data[4:5] == b"\x0a":  # the greeting (protocol 10): admitted
                    _send(sock, _mysql_half_login())
    return socks


def _send(sock: socket.socket, data: bytes) -> None:
    try:
        sock.send(data)
    except OSError:
        pass  # refused and closed already


def drain(socks: list[socket.socket]) -> list[bytes]:
    """What each socket received until now (non-blocking), then close them all."""
    out = []
    for sock in socks:
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except OSError:
            pass
        out.append(data)
        sock.close()
    return out


def refusal_counts(proc, cluster: str, source: str) -> tuple[int, Counter, int]:
    """(audit events about the source's refused connections, refusals counted by reason, events in total)."""
    events = 0
    counted: Counter = Counter()
    lines = (proc.state_dir / "audit.log").read_text().splitlines()
    for event in map(json.loads, lines):
        if event.get("cluster") != cluster or event.get("source_ip") != source or \
                not event["event"].startswith("gateway.connection_refused"):
            continue
        events += 1
        if event["event"] == "gateway.connection_refused":
            counted[event["reason"]] += 1
        elif event["event"] == "gateway.connection_refused_summary":
            counted[event["reason"]] += event["count"]
    return events, counted, len(lines)


def real_login(proc, cluster: dict) -> None:
    if cluster["Engine"] == "aurora-mysql":
        with mysql(proc, cluster, "admin", PASSWORD) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
    else:
        with postgres(proc, cluster, "master", PASSWORD) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def engine_connections(proc, cluster: dict) -> int:
    """Connections the engine has open now (its own count, seen by the master)."""
    if cluster["Engine"] == "aurora-mysql":
        with mysql(proc, cluster, "admin", PASSWORD) as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM information_schema.PROCESSLIST")
            return cur.fetchone()[0]
    with postgres(proc, cluster, "master", PASSWORD) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'").fetchone()[0]


@pytest.mark.parametrize("engine", ["aurora-mysql", "aurora-postgresql"])
def test_a_flood_without_logins_does_not_block_real_logins(flooded, engine):
    cluster = create_cluster(flooded, engine, f"flood-{engine.split('-')[1]}", PASSWORD)
    ident, port = cluster["DBClusterIdentifier"], cluster["Port"]
    started = time.monotonic()
    refused_bytes = b"Too many connections" if engine == "aurora-mysql" else b"53300"
    for _round in range(2):  # the attacker reconnects once its connections were closed
        socks = flood(port, engine)
        try:
            for _ in range(3):
                real_login(flooded, cluster)
            # the flood holds no more engine connections than its source may have pending (plus
            # this query's, and the previous logins' while they are still exiting)
            assert engine_connections(flooded, cluster) <= PENDING + 4
            time.sleep(1.5)  # past the first-byte timeout: the idle ones that were admitted are closed
            real_login(flooded, cluster)
        finally:
            received = drain(socks)
        # the idle ones that were refused got the engine's own error first (the others may
        # have lost it to the reset their own bytes caused)
        assert sum(refused_bytes in data for data in received[::2]) >= FLOOD // 2 - PENDING
    assert time.monotonic() - started < 60
    # counted, not logged one by one: a few events per reason and interval, whatever the flood
    deadline = time.monotonic() + 20
    while True:
        events, counted, _ = refusal_counts(flooded, ident, ATTACKER)
        if counted["too many pending logins from this source"] >= 2 * (FLOOD - 2 * PENDING) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert counted["too many pending logins from this source"] >= 2 * (FLOOD - 2 * PENDING), counted
    assert counted["first byte timeout"] >= 1, counted
    assert events <= 30, (events, counted)
    # the real client's source was never refused
    assert refusal_counts(flooded, ident, "127.0.0.1")[0] == 0
