"""Every login that fails before the engine's verdict is an audit event with its reason, on both
engines: a protocol error, a TLS handshake that fails (garbage in place of a ClientHello, a
TLS version the endpoint does not allow), a client that hangs up in the middle of its login,
and a client that says nothing. They are refusals (``gateway.connection_refused``), counted per
cluster, source and reason (``gateway/refusals.py``): a flood of them is one event at once and
summaries later, never one line per connection."""

from __future__ import annotations

import json
import socket
import ssl
import struct
import time
import warnings
from collections.abc import Callable

import pytest
from clusters import create_cluster, unique

PASSWORD = "Failing-Pass-1"
MYSQL_SSL_REQUEST = struct.pack("<I", 32)[:3] + b"\x01" + struct.pack("<IIB", 0x0200 | 0x8000 | 0x80000 | 0x0001 | 0x0800,
                                                                    1 << 24, 45) + b"\0" * 23
PG_SSL_REQUEST = struct.pack("!II", 8, 80877103)


@pytest.fixture(scope="module")
def clusters(dbkeep) -> dict[str, dict]:
    return {"mysql": create_cluster(dbkeep, "aurora-mysql", unique("fail-my"), PASSWORD),
            "postgres": create_cluster(dbkeep, "aurora-postgresql", unique("fail-pg"), PASSWORD)}


def read_some(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    return sock.recv(65536)


def read_until_closed(sock: socket.socket, timeout: float = 15) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def greeted(engine: str, sock: socket.socket) -> None:
    """The MySQL server speaks first (the greeting); a PostgreSQL client does."""
    if engine == "mysql":
        assert read_some(sock)[4:5] == b"\x0a"  # protocol version 10


def start_tls(engine: str, sock: socket.socket) -> None:
    greeted(engine, sock)
    sock.sendall(MYSQL_SSL_REQUEST if engine == "mysql" else PG_SSL_REQUEST)
    if engine == "postgres":
        assert read_some(sock) == b"S"


def protocol_error(engine: str, sock: socket.socket) -> None:
    greeted(engine, sock)
    if engine == "mysql":
        sock.sendall(b"\x01\x00\x00\x01\xff")  # a one-byte handshake response
    else:
        sock.sendall(struct.pack("!II", 8, 0x00090000))  # a protocol version that does not exist
    read_until_closed(sock)


def garbage_instead_of_tls(engine: str, sock: socket.socket) -> None:
    start_tls(engine, sock)
    sock.sendall(b"\x16\x03\x01\x00\x05not a ClientHello" + b"\0" * 64)
    read_until_closed(sock)


def legacy_tls_version(engine: str, sock: socket.socket) -> None:
    """A client that offers TLS 1.0 and 1.1 only (allowed on this side at security level 0)."""
    start_tls(engine, sock)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # deprecated versions: the point of this client
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version, context.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionError)):
        context.wrap_socket(sock, server_hostname="localhost")


def hang_up_mid_login(engine: str, sock: socket.socket) -> None:
    greeted(engine, sock)
    if engine == "mysql":
        sock.sendall(struct.pack("<I", 120)[:3] + b"\x01" + b"\x0d\xa2" * 5)  # 10 of 120 bytes
    else:
        sock.sendall(struct.pack("!II", 40, 3 << 16) + b"user\0mas")  # 16 of 40 bytes
    sock.close()


def silence(engine: str, sock: socket.socket) -> None:
    read_until_closed(sock)  # the gateway closes after --first-byte-timeout


CASES: list[tuple[Callable[[str, socket.socket], None], str, str]] = [
    # (provocation, source address, the audit event's reason)
    (protocol_error, "127.0.0.1", "protocol error"),
    (garbage_instead_of_tls, "127.0.0.1", "TLS handshake failed"),
    (legacy_tls_version, "127.0.0.21", "TLS handshake failed"),  # a source of its own: the same reason
    (hang_up_mid_login, "127.0.0.1", "client closed the connection"),
    (silence, "127.0.0.1", "first byte timeout"),
]


def refusals_of(dbkeep, cluster: dict, source: str, reason: str, since: int = 0) -> list[dict]:
    lines = (dbkeep.state_dir / "audit.log").read_text().splitlines()[since:]
    return [e for e in map(json.loads, lines) if e.get("event") == "gateway.connection_refused"
            and e.get("cluster") == cluster["DBClusterIdentifier"] and e.get("source_ip") == source and e.get("reason") == reason]


def wait_for(find: Callable[[], list[dict]], timeout: float = 20) -> list[dict]:
    deadline = time.monotonic() + timeout
    while not (found := find()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


@pytest.mark.parametrize("engine", ["mysql", "postgres"])
@pytest.mark.parametrize("provoke, source, reason", CASES, ids=[c[0].__name__ for c in CASES])
def test_a_login_that_fails_before_the_engine_is_audited(dbkeep, clusters, engine, provoke, source, reason) -> None:
    cluster = clusters[engine]
    with socket.create_connection(("127.0.0.1", cluster["Port"]), timeout=10, source_address=(source, 0)) as sock:
        provoke(engine, sock)
    [event] = wait_for(lambda: refusals_of(dbkeep, cluster, source, reason))
    assert event["verdict"] == "deny" and event["port"] == cluster["Port"]
    if provoke is legacy_tls_version:
        assert "version" in event["detail"] or "protocol" in event["detail"], event
    elif provoke is protocol_error:
        assert event["detail"], event


@pytest.mark.parametrize("engine", ["mysql", "postgres"])
def test_a_flood_of_failing_logins_is_one_event_and_a_count(dbkeep, clusters, engine) -> None:
    cluster, source = clusters[engine], "127.0.0.22"
    since = len((dbkeep.state_dir / "audit.log").read_text().splitlines())
    for _ in range(25):
        with socket.create_connection(("127.0.0.1", cluster["Port"]), timeout=10, source_address=(source, 0)) as sock:
            protocol_error(engine, sock)
    assert len(wait_for(lambda: refusals_of(dbkeep, cluster, source, "protocol error", since))) == 1
    time.sleep(1)  # the later ones are counted, not written (a summary follows within --refusal-log-interval)
    assert len(refusals_of(dbkeep, cluster, source, "protocol error", since)) == 1
