"""The native relay (dbkeep.gateway._relay) with a TLS engine leg and MySQL command framing,
driven through its raw API over real sockets and real TLS; nothing is mocked.

Covered:
- ``engine_ssl=``: all four combinations of client TLS/cleartext x engine TLS/cleartext move
  several MB both ways at once byte-exact (raw and MySQL-framed) and many small round trips;
  the engine's close ends the session ("engine closed the connection", the client gets all
  and a close_notify under TLS); the client's close (close_notify / FIN) reaches the engine
  (close_notify then EOF on a TLS engine leg) and the engine may still answer;
- ``mysql=(stop, wrap, quiet)``: a hypothesis property test against a small reference model of
  ClientFacing's command-phase rules (random commands, stop sets, continuations, LOAD DATA
  sequence-id wraps, the initial wrap flag, random chunking and timing, cleartext and TLS on
  both legs): the engine gets exactly the bytes before the first stop command and the session
  is handed back with exactly the rest; max-length (0xFFFFFF) packets with a real 16 MiB + 10
  payload; a hand-back while the engine streams a big response to a client that does not read
  (every engine byte reaches the client once Python continues both TLS objects); ``quiet``;
  COM_QUIT; the empty command; a client that ends its stream inside a packet;
- after a hand-back Python continues the very same SSL objects (client and engine legs) from
  the memory BIOs the relay left behind;
- argument checks of ``mysql=``, ``ssl=`` and ``engine_ssl=``.

Harness: every leg is a socket.socketpair(); the relay gets the gateway's ends (non-blocking)
and, for TLS, the ``_sslobj`` of ``ssl.SSLObject``s whose handshake was done over memory BIOs
here. The test's ends (the client and the engine, and Python's gateway after a hand-back) are
``Peer``s: non-blocking sockets, optionally with an SSLObject, all driven by one select loop
with a deadline, so that a bug ends in a failure rather than a hang.
"""

from __future__ import annotations

import os
import random
import select
import socket
import ssl
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from background import background
from memory_tls import shuttle_handshake
from test_pki_tls import HOST, pki  # noqa: F401 - the module-scoped CA + RSA/ECDSA server certificates

from dbkeep.pki.tls import server_context

_relay = pytest.importorskip("dbkeep.gateway._relay", reason="the native relay is not built (pip install -e .)")

from dbkeep.gateway.offload import stop_set  # noqa: E402 - after the skip: needs the extension

pytestmark = pytest.mark.timeout(120)  # a safety net only: every wait has its own deadline

TIMEOUT = 10.0
MB = 1024 * 1024
MAX_PAYLOAD = 0xFFFFFF
HEADER = 4
COM_SLEEP, COM_QUIT, COM_QUERY, COM_PING, COM_CHANGE_USER = 0x00, 0x01, 0x03, 0x0E, 0x11
TLS_OK, TLS_WHY = _relay.tls_handover()
needs_tls = pytest.mark.skipif(not TLS_OK, reason=f"TLS hand-over unavailable in this build: {TLS_WHY}")

CLOSED = "engine closed the connection"
HANDED_BACK = "handed back"
INSIDE_A_PACKET = "client closed the connection inside a packet"
QUIET_ERROR = "engine protocol error: data before any command"

# (client TLS, engine TLS)
LEGS = [
    pytest.param(False, False, id="clear-clear"),
    pytest.param(True, False, id="tls-clear", marks=needs_tls),
    pytest.param(False, True, id="clear-tls", marks=needs_tls),
    pytest.param(True, True, id="tls-tls", marks=needs_tls),
]


# --- MySQL framing -----------------------------------------------------------------------------

def packet(seq: int, payload: bytes) -> bytes:
    """One physical packet: 3-byte little-endian length, sequence id, payload (< 0xFFFFFF)."""
    assert len(payload) <= MAX_PAYLOAD
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def command(code: int, body: bytes = b"") -> bytes:
    return packet(0, bytes([code]) + body)


def query(text: bytes) -> bytes:
    return command(COM_QUERY, text)


def mysql(stop: Iterable[int] = (COM_CHANGE_USER,), *, wrap: bool = False, quiet: bool = False) -> tuple[bytes, bool, bool]:
    return stop_set(set(stop)), wrap, quiet


def reference(packets: list[tuple[int, bytes]], stop: set[int], wrap: bool) -> tuple[str, int, bool]:
    """Where the relay must stop in a stream of packets shorter than 0xFFFFFF (so a logical
    packet is one physical packet), by ClientFacing._command's rules (connection.py, "Command
    phase") plus the relay's own: ("hand back" | "quit" | "none", byte offset, whether a command
    was forwarded before). "hand back": the offset of the packet that goes back to Python;
    "quit": the offset just after the forwarded COM_QUIT; "none": the length of the stream."""
    offset, forwarded = 0, False
    for seq, payload in packets:
        continues = wrap
        wrap = len(payload) > 0 and seq == 255  # LOAD DATA's id wrap: the next id 0 continues
        if seq == 0 and not continues:  # a command
            if not payload or payload[0] in stop or (payload[0] == COM_QUIT and len(payload) != 1):
                return "hand back", offset, forwarded
            forwarded = True
            if payload[0] == COM_QUIT:
                return "quit", offset + HEADER + 1, forwarded
        offset += HEADER + len(payload)
    return "none", offset, forwarded


def test_the_reference_model_itself():
    """The model on hand-made streams, so that the property test compares against something
    known to be right."""
    stop = {COM_CHANGE_USER}
    assert reference([(0, b"\x03q"), (0, b"\x11u")], stop, False) == ("hand back", 6, True)
    assert reference([(0, b"\x11u")], stop, False) == ("hand back", 0, False)
    assert reference([(0, b"\x11u")], stop, True) == ("none", 6, False)  # initial wrap: a continuation
    assert reference([(1, b"\x11u"), (0, b"")], stop, False) == ("hand back", 6, False)  # empty command
    assert reference([(255, b"x"), (0, b"\x11"), (0, b"\x11")], stop, False) == ("hand back", 10, False)
    assert reference([(255, b""), (0, b"\x11")], stop, False) == ("hand back", 4, False)  # empty 255: no wrap
    assert reference([(0, b"\x01"), (0, b"\x11")], stop, False) == ("quit", 5, True)
    assert reference([(0, b"\x01x")], stop, False) == ("hand back", 0, False)
    assert reference([(3, b"\x01"), (0, b"\x03")], stop, False) == ("none", 10, True)


# --- TLS over memory BIOs ----------------------------------------------------------------------

@dataclass
class Tls:
    obj: ssl.SSLObject
    incoming: ssl.MemoryBIO
    outgoing: ssl.MemoryBIO


def tls_link(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[Tls, Tls]:
    """A finished handshake between two SSLObjects over memory BIOs, records shuttled by hand;
    (server, client), both write BIOs empty (TLS 1.3 tickets wait in the client's read BIO)."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=HOST)
    shuttle_handshake(server, client, s_in, s_out, c_in, c_out)
    return Tls(server, s_in, s_out), Tls(client, c_in, c_out)


@dataclass
class Contexts:
    server: ssl.SSLContext
    client: dict[ssl.TLSVersion, ssl.SSLContext]


@pytest.fixture(scope="module")
def contexts(pki):  # noqa: F811 - pki is the fixture imported above
    """The gateway's server context (ECDSA: cheap handshakes; TLS 1.3 tickets on, so records
    already wait in a read BIO when the relay takes an SSL object) and verifying client
    contexts, one per TLS version. The engine leg uses the same two: the engine is the server."""
    server = server_context(pki["ec_cert"], pki["ec_key"], session_tickets=True)
    clients = {}
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cafile=str(pki["ca"]))
        context.minimum_version = context.maximum_version = version
        clients[version] = context
    return Contexts(server, clients)


# --- the test's endpoints ----------------------------------------------------------------------

class Peer:
    """One end of a leg as the test drives it: a non-blocking socket, optionally TLS over memory
    BIOs. ``out`` is what waits to go on the wire, ``got`` the plaintext received so far. Used
    from one thread at a time; moved by pump()."""

    def __init__(self, sock: socket.socket, tls: Tls | None = None, name: str = "peer") -> None:
        sock.setblocking(False)
        self.sock, self.tls, self.name = sock, tls, name
        self._out = bytearray()
        self._sent = 0
        self.got = bytearray()
        self.reading = True
        self.eof = False             # the TCP stream ended
        self.close_notify = False    # TLS: the peer's close_notify was read
        self.notify_before_eof = False
        self.tls_error: Exception | None = None
        self.send_error: Exception | None = None
        self.wire_in = 0             # bytes received on the socket

    def __repr__(self) -> str:
        return (f"<{self.name}: got={len(self.got)} out={self.out_len} eof={self.eof} notify={self.close_notify} "
                f"tls_error={self.tls_error!r} send_error={self.send_error!r}>")

    @property
    def out_len(self) -> int:
        return len(self._out) - self._sent

    def send_raw(self, data: bytes) -> None:
        self._out += data

    def write(self, data: bytes) -> None:
        if self.tls is None:
            self._out += data
            return
        view = memoryview(data)
        while view:
            n = self.tls.obj.write(view[:4 * MB])
            view = view[n:]
        self._out += self.tls.outgoing.read()

    def close_notify_out(self) -> None:
        """Queue a close_notify (SSL_shutdown; the peer's is not awaited)."""
        assert self.tls is not None
        try:
            self.tls.obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        self._out += self.tls.outgoing.read()

    def take(self) -> bytes:
        data = bytes(self.got)
        self.got.clear()
        return data

    def _send(self) -> None:
        try:
            n = self.sock.send(memoryview(self._out)[self._sent:self._sent + MB])
        except BlockingIOError:
            return
        except OSError as exc:
            self.send_error = exc
            self._out.clear()
            self._sent = 0
            return
        self._sent += n
        if self._sent == len(self._out):
            self._out.clear()
            self._sent = 0
        elif self._sent > 8 * MB:
            del self._out[:self._sent]
            self._sent = 0

    def _recv(self) -> None:
        try:
            data = self.sock.recv(MB)
        except BlockingIOError:
            return
        except ConnectionResetError as exc:
            self.send_error = exc
            data = b""
        if not data:
            self.eof = True
            self.notify_before_eof = self.close_notify
            if self.tls is not None:
                self.tls.incoming.write_eof()
                self._decrypt()
            return
        self.wire_in += len(data)
        if self.tls is None:
            self.got += data
        else:
            self.tls.incoming.write(data)
            self._decrypt()

    def _decrypt(self) -> None:
        while not self.close_notify and self.tls_error is None:
            try:
                chunk = self.tls.obj.read(MB)
            except ssl.SSLWantReadError:
                return
            except ssl.SSLZeroReturnError:
                self.close_notify = True
                return
            except ssl.SSLError as exc:
                self.tls_error = exc
                return
            if not chunk:  # an SSLObject's b"": the peer's close_notify
                self.close_notify = True
                return
            self.got += chunk


class Collector:
    """What relay.collect() returned so far; its eventfd joins pump()'s select."""

    def __init__(self, relay: Any) -> None:
        self.relay = relay
        self.fd = relay.fileno()
        self.results: list[tuple[int, str, Any]] = []

    def take(self) -> None:
        self.results.extend(self.relay.collect())

    def wait(self, timeout: float = TIMEOUT) -> list[tuple[int, str, Any]]:
        deadline = time.monotonic() + timeout
        while not self.results:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "collect() has nothing"
            if select.select([self.fd], [], [], remaining)[0]:
                self.take()
        return self.results

    def nothing_for(self, seconds: float) -> None:
        if select.select([self.fd], [], [], seconds)[0]:
            self.take()
        assert self.results == [], self.results


def _step(peers: tuple[Peer, ...], collector: Collector | None, wait: float) -> None:
    """One select over the peers' sockets (and the relay's eventfd), then the I/O it allows."""
    readers = [p.sock for p in peers if p.reading and not p.eof]
    writers = [p.sock for p in peers if p.out_len]
    if collector is not None:
        readers.append(collector.fd)
    r, w, _ = select.select(readers, writers, [], max(wait, 0.0))
    for p in peers:
        if p.sock in w:
            p._send()
        if p.sock in r:
            p._recv()
    if collector is not None and collector.fd in r:
        collector.take()


def pump(*peers: Peer, until: Callable[[], bool], timeout: float = TIMEOUT, collector: Collector | None = None,
         what: str = "") -> None:
    """Move bytes for all peers (and take what the relay reports) until ``until()``; fail after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not until():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out waiting for {what or 'the condition'}: {peers} "
                                 f"collected={collector.results if collector else None}")
        _step(peers, collector, min(remaining, 0.05))


def pump_until_idle(*peers: Peer, until: Callable[[], bool], idle: float = 0.1, timeout: float = TIMEOUT) -> None:
    """Like pump(), but also returns (without failing) once nothing arrived for ``idle``
    seconds: for bytes already on their way, where a wrong count should fail fast."""
    deadline = time.monotonic() + timeout
    last, seen = time.monotonic(), -1
    while not until():
        now = time.monotonic()
        received = sum(p.wire_in for p in peers)
        if received != seen:
            last, seen = now, received
        if now - last >= idle or now >= deadline:
            return
        _step(peers, None, min(idle, deadline - now))


def settle(*peers: Peer, seconds: float = 0.1, collector: Collector | None = None) -> None:
    """Move bytes for a while: whatever is still on its way arrives (no condition)."""
    end = time.monotonic() + seconds
    while (remaining := end - time.monotonic()) > 0:
        _step(peers, collector, remaining)


# --- sessions ----------------------------------------------------------------------------------

@dataclass
class Session:
    relay: Any
    handle: int
    collector: Collector
    client: Peer                  # the test's client
    engine: Peer                  # the test's engine
    gw_client: socket.socket      # the gateway's ends, the relay's until collect()
    gw_engine: socket.socket
    gw_client_tls: Tls | None     # the gateway's server side of the client's TLS
    gw_engine_tls: Tls | None     # the gateway's client side of the engine leg's TLS

    def python_client_leg(self) -> Peer:
        """After collect(): Python's gateway continuing the client leg (same socket, same SSL object)."""
        return Peer(self.gw_client, self.gw_client_tls, "gateway->client")

    def python_engine_leg(self) -> Peer:
        return Peer(self.gw_engine, self.gw_engine_tls, "gateway->engine")

    def engine_closes(self) -> None:
        """The engine ends its stream: close_notify first under TLS, then FIN (SHUT_WR, so that
        nothing it has not read turns into a reset). The client reads meanwhile."""
        if self.engine.tls is not None:
            self.engine.close_notify_out()
        pump(self.engine, self.client, until=lambda: not self.engine.out_len, what="the engine's last bytes to go")
        self.engine.sock.shutdown(socket.SHUT_WR)

    def client_closes(self) -> None:
        if self.client.tls is not None:
            self.client.close_notify_out()
        pump(self.client, self.engine, until=lambda: not self.client.out_len, what="the client's last bytes to go")
        self.client.sock.shutdown(socket.SHUT_WR)


class World:
    """Relays and sockets of one test, all stopped and closed at the end (relays first)."""

    def __init__(self, contexts: Contexts) -> None:
        self.contexts = contexts
        self.relays: list[Any] = []
        self.sockets: list[socket.socket] = []

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for relay in self.relays:
            relay.stop()
            relay.collect()
        for sock in self.sockets:
            sock.close()
        self.relays.clear()
        self.sockets.clear()

    def relay(self, **kwargs: Any) -> Any:
        relay = _relay.Relay(**kwargs)
        self.relays.append(relay)
        return relay

    def pair(self) -> tuple[socket.socket, socket.socket]:
        ours, theirs = socket.socketpair()
        self.sockets.extend((ours, theirs))
        ours.setblocking(False)
        return ours, theirs

    def tls(self, version: ssl.TLSVersion) -> tuple[Tls, Tls]:
        return tls_link(self.contexts.server, self.contexts.client[version])

    def session(self, client_tls: bool = False, engine_tls: bool = False, *, mysql: Any = None,
                version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3, relay: Any = None) -> Session:
        relay = relay if relay is not None else self.relay()
        gw_client, client_sock = self.pair()
        gw_engine, engine_sock = self.pair()
        gw_client_tls = client_side = gw_engine_tls = engine_side = None
        if client_tls:
            gw_client_tls, client_side = self.tls(version)   # the gateway is the client's server
        if engine_tls:
            engine_side, gw_engine_tls = self.tls(version)   # ... and the engine's client
        handle = relay.add(gw_client.fileno(), gw_engine.fileno(),
                           gw_client_tls.obj._sslobj if gw_client_tls else None,
                           engine_ssl=gw_engine_tls.obj._sslobj if gw_engine_tls else None, mysql=mysql)
        return Session(relay, handle, Collector(relay), Peer(client_sock, client_side, "client"),
                       Peer(engine_sock, engine_side, "engine"), gw_client, gw_engine, gw_client_tls, gw_engine_tls)


@pytest.fixture
def world(contexts):
    with World(contexts) as w:
        yield w


def expect_end(s: Session, reason: str, *peers: Peer) -> Any:
    """The session's only collect() result has this reason; its handed_back part."""
    pump(*peers, until=lambda: bool(s.collector.results), collector=s.collector, what=f"collect(): {reason}")
    [(handle, got_reason, left)] = s.collector.results
    assert (handle, got_reason) == (s.handle, reason), s.collector.results
    return left


def expect_handed_back(s: Session, *peers: Peer) -> tuple[bytes, bytes, bytes, bool, Any]:
    left = expect_end(s, HANDED_BACK, *peers)
    assert isinstance(left, tuple) and len(left) in (5, 6), left
    client, engine, records, quiet, resync = left[:5]
    assert resync is None or (isinstance(resync, tuple) and len(resync) == 2)  # (PostgreSQL's only)
    assert (len(left) == 6) == (resync is not None)  # PostgreSQL's engine counts
    assert isinstance(client, bytes) and isinstance(engine, bytes) and isinstance(records, bytes)
    assert isinstance(quiet, bool)
    return left


def continue_in_python(s: Session, left: tuple[bytes, bytes, bytes, bool, Any], client_rest: bytes) -> tuple[Peer, Peer]:
    """What Python does after a hand-back (the engine having sent nothing more), checked end to
    end on both legs with the relay's SSL objects: the client's TLS records first, then the
    engine's undelivered plaintext, then new bytes each way in both directions. ``client_rest``:
    what the client sent from the stop command on, which Python must see as ``left.client`` +
    what it reads next from the same socket and SSL object. Returns Python's two legs."""
    client_left, engine_left, records, _quiet, _resync = left[:5]
    gw_c, gw_e = s.python_client_leg(), s.python_engine_leg()
    assert client_rest.startswith(client_left)
    # client -> Python: the rest of what it sent (still in the socket, or records the relay did not take)
    pump(s.client, gw_c, until=lambda: len(client_left) + len(gw_c.got) >= len(client_rest),
         what="the client's rest to reach Python")
    assert client_left + gw_c.take() == client_rest
    before = len(s.client.got)
    gw_c.send_raw(records)
    gw_c.write(engine_left + b"python to client")
    gw_e.write(b"python to engine")
    s.client.write(b"client to python")
    s.engine.write(b"engine to python")
    want_client = before + len(engine_left) + len(b"python to client")
    pump(s.client, s.engine, gw_c, gw_e,
         until=lambda: (len(s.client.got) >= want_client and len(s.engine.got) >= 16 and len(gw_c.got) >= 16
                        and len(gw_e.got) >= 16), what="Python's bytes both ways")
    assert bytes(s.client.got[before:]) == engine_left + b"python to client"
    assert s.engine.take() == b"python to engine"
    assert gw_c.take() == b"client to python"
    assert gw_e.take() == b"engine to python"
    for peer in (s.client, s.engine, gw_c, gw_e):
        assert peer.tls_error is None and not peer.close_notify and not peer.eof, peer
    return gw_c, gw_e


# --- engine_ssl: the four leg combinations -----------------------------------------------------

def framed_stream(rng: random.Random, total: int) -> bytes:
    """About ``total`` bytes of MySQL commands that go through (COM_QUERY, continuations)."""
    out = bytearray()
    while len(out) < total:
        size = rng.choice([1, 17, 300, 5000, 70000, 400000, 1500000])
        out += query(rng.randbytes(size))
        if rng.random() < 0.3:
            out += packet(rng.randint(1, 254), rng.randbytes(rng.randint(0, 3000)))
    return bytes(out)


def exchange(peer: Peer, data: bytes, expect: int) -> None:
    """Send ``data`` and receive ``expect`` bytes at the same time (one thread per peer)."""
    peer.write(data)
    pump(peer, until=lambda: not peer.out_len and len(peer.got) >= expect, timeout=30, what=f"{peer.name}'s exchange")


@pytest.mark.parametrize("framed", [False, True], ids=["raw", "mysql"])
@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_bulk_both_ways_at_once_is_byte_exact(world, client_tls, engine_tls, framed):
    """Several MB of random bytes each way at the same time, byte-exact, whichever legs run TLS;
    with ``mysql=`` the client's side is a stream of commands that all go through."""
    rng = random.Random(0x5EED + framed)
    s = world.session(client_tls, engine_tls, mysql=mysql(quiet=False) if framed else None)
    up = framed_stream(rng, 4 * MB) if framed else rng.randbytes(4 * MB + 321)
    down = rng.randbytes(4 * MB + 123)
    jobs = [background(exchange, s.client, up, len(down)), background(exchange, s.engine, down, len(up))]
    for job in jobs:
        job.result(40)
    assert bytes(s.client.got) == down
    assert bytes(s.engine.got) == up
    s.collector.nothing_for(0.0)
    assert s.relay.stats()["live"] == 1


@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_many_small_round_trips(world, client_tls, engine_tls):
    """300 command/answer round trips of varying sizes through a framed session that starts
    quiet: each command is forwarded at once and the engine's answer comes back at once."""
    s = world.session(client_tls, engine_tls, mysql=mysql(quiet=True))
    for i in range(300):
        question = query(b"Q%d:" % i + b"q" * (i % 97))
        if i % 7 == 3:
            question += packet(1, b"c" * (i % 50))  # a continuation after the command
        s.client.write(question)
        pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(question), what=f"question {i}")
        assert s.engine.take() == question
        answer = packet(1, b"A%d:" % i + b"a" * (i % 193))
        s.engine.write(answer)
        pump(s.client, s.engine, until=lambda: len(s.client.got) >= len(answer), what=f"answer {i}")
        assert s.client.take() == answer
    s.collector.nothing_for(0.0)
    s.engine_closes()
    expect_end(s, CLOSED, s.client)


# a cleartext engine only has a FIN; a TLS one may also close without close_notify
_ENGINE_CLOSES = [pytest.param(*leg.values, close, id=f"{leg.id}-{close}", marks=leg.marks)
                  for leg in LEGS for close in (["close_notify", "fin_only"] if leg.values[1] else ["close_notify"])]


@pytest.mark.parametrize("framed", [False, True], ids=["raw", "mysql"])
@pytest.mark.parametrize("client_tls, engine_tls, engine_close", _ENGINE_CLOSES)
def test_the_engines_close_ends_the_session_after_the_client_got_everything(world, client_tls, engine_tls, framed,
                                                                            engine_close):
    """The engine sends more than the relay's buffers hold and closes (TLS: close_notify then
    FIN, or a bare FIN): the session ends "engine closed the connection" once the client has
    every byte, followed by a close_notify when the client runs TLS."""
    s = world.session(client_tls, engine_tls, mysql=mysql() if framed else None)
    if framed:
        s.client.write(query(b"SELECT big"))  # the engine answers a command
        pump(s.client, s.engine, until=lambda: len(s.engine.got) >= 14)
    down = os.urandom(1 * MB + 777)
    s.engine.write(down)
    if engine_close == "close_notify":
        s.engine_closes()
    else:
        pump(s.engine, s.client, until=lambda: not s.engine.out_len)
        s.engine.sock.shutdown(socket.SHUT_WR)
    pump(s.client, until=lambda: len(s.client.got) >= len(down) and (s.client.close_notify or not client_tls),
         collector=s.collector, what="every engine byte at the client")
    assert bytes(s.client.got) == down
    assert s.client.tls_error is None
    expect_end(s, CLOSED, s.client)
    assert s.collector.results[0][2] is None
    if client_tls:
        assert s.client.close_notify
    else:
        settle(s.client, seconds=0.05)
        assert not s.client.eof  # the relay never closes Python's sockets


@pytest.mark.parametrize("framed", [False, True], ids=["raw", "mysql"])
@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_the_clients_close_reaches_the_engine_which_can_still_answer(world, client_tls, engine_tls, framed):
    """The client's end of stream (close_notify then FIN under TLS, a FIN in cleartext) after its
    last bytes: the engine gets the bytes, then close_notify (TLS engine leg) and EOF; the session
    lives on, the engine still answers, and its close ends the session."""
    s = world.session(client_tls, engine_tls, mysql=mysql() if framed else None)
    last = query(b"last words") if framed else b"last words"
    s.client.write(last)
    s.client_closes()
    pump(s.engine, until=lambda: s.engine.eof, what="the engine's EOF")
    assert bytes(s.engine.got) == last
    if engine_tls:
        assert s.engine.close_notify and s.engine.notify_before_eof and s.engine.tls_error is None
    s.collector.nothing_for(0.05)
    reply = os.urandom(200 * 1024)
    s.engine.write(reply)
    s.engine_closes()
    pump(s.client, until=lambda: len(s.client.got) >= len(reply), collector=s.collector, what="the late answer")
    assert bytes(s.client.got) == reply
    expect_end(s, CLOSED, s.client)
    assert s.collector.results[0][2] is None
    if client_tls:
        pump(s.client, until=lambda: s.client.close_notify, what="the client's close_notify")


# --- mysql=: the property test -----------------------------------------------------------------

CODES = st.one_of(st.sampled_from([COM_SLEEP, COM_QUIT, COM_QUERY, COM_PING, COM_CHANGE_USER, 0x16, 0x1F, 0xFF]),
                  st.integers(0, 255))
SIZES = st.one_of(st.integers(0, 40), st.integers(0, 3000), st.integers(60_000, 140_000))


@st.composite
def packet_runs(draw: Any, codes: st.SearchStrategy[int]) -> list[tuple[int, int, int]]:
    """Some packets as (seq, first payload byte, payload size)."""
    kind = draw(st.sampled_from(["command", "command", "continuation", "load", "empty"]))
    if kind == "command":
        return [(0, draw(codes), draw(SIZES))]
    if kind == "empty":
        return [(0, 0, 0)]
    if kind == "continuation":  # whatever its first byte, not a command
        return [(draw(st.integers(1, 255)), draw(codes), draw(SIZES))]
    # LOAD DATA LOCAL INFILE's content: ids counting up, through 255 and 0 when they wrap (an
    # empty packet with id 255 does not make the next id 0 a continuation)
    start = draw(st.one_of(st.integers(251, 255), st.integers(1, 255)))
    sizes = draw(st.lists(st.one_of(st.integers(0, 30), st.just(0), st.integers(1, 2000)), min_size=1, max_size=12))
    run = [((start + i) % 256, draw(codes), size) for i, size in enumerate(sizes)]
    if draw(st.booleans()):  # the wrap itself, then whatever comes as id 0
        run += [(255, draw(codes), draw(st.sampled_from([0, 1, 7]))), (0, draw(codes), draw(st.sampled_from([0, 1, 2, 9])))]
    return run


@st.composite
def scenarios(draw: Any) -> dict[str, Any]:
    stop = draw(st.sets(CODES, max_size=5))
    # first payload bytes: often a stop code or COM_QUIT, where a wrong decision shows
    codes = st.one_of(st.sampled_from(sorted(stop | {COM_QUIT})), CODES)
    runs = draw(st.lists(packet_runs(codes), min_size=1, max_size=12))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    packets = []
    for seq, first, size in (p for run in runs for p in run):
        payload = b"" if size == 0 else bytes([first]) + rng.randbytes(size - 1)
        packets.append((seq, payload))
    return {
        "packets": packets,
        "stop": stop,
        "wrap": draw(st.booleans()),
        "quiet": draw(st.booleans()),
        "chunks": draw(st.lists(st.one_of(st.integers(1, 8), st.integers(1, 5000), st.integers(1, 200_000)),
                                min_size=1, max_size=8)),
        "delays": draw(st.lists(st.sampled_from([0.0, 0.0, 0.0, 0.0005, 0.002]), min_size=1, max_size=6)),
    }


def send_scheduled(s: Session, stream: bytes, chunks: list[int], delays: list[float]) -> None:
    """Send ``stream`` in the given chunk sizes (cycled; after 48 chunks the rest at once), each
    write pushed to the socket at once, with small pauses; the engine reads meanwhile."""
    offset, i = 0, 0
    while offset < len(stream):
        size = chunks[i % len(chunks)] if i < 48 else len(stream)
        s.client.write(stream[offset:offset + size])
        offset += size
        delay = delays[i % len(delays)]
        i += 1
        if delay:
            settle(s.client, s.engine, seconds=delay, collector=s.collector)
        elif s.client.out_len:
            s.client._send()


@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario=scenarios())
def test_framing_matches_the_reference_model(contexts, client_tls, engine_tls, scenario):
    """For any stream of packets, chunking and timing: the engine receives exactly the bytes
    before the first packet the model says goes back to Python (nothing more, even after a
    while), and the session is handed back with exactly the rest (what the relay decrypted, then
    what Python reads from the same socket and SSL object), ``quiet`` as the model says and
    nothing of the engine's; after a forwarded COM_QUIT the engine gets exactly the bytes up to
    it, then its end of stream; a stream without either goes through whole and the session
    lives until the engine closes."""
    packets, stop, wrap, quiet = scenario["packets"], scenario["stop"], scenario["wrap"], scenario["quiet"]
    stream = b"".join(packet(seq, payload) for seq, payload in packets)
    outcome, offset, forwarded = reference(packets, stop, wrap)
    with World(contexts) as w:
        s = w.session(client_tls, engine_tls, mysql=(stop_set(stop), wrap, quiet))
        send_scheduled(s, stream, scenario["chunks"], scenario["delays"])
        # whichever comes first -- a hand-back, the engine's EOF, the whole stream at the engine --
        # so that a relay that disagrees with the model fails at once rather than after a timeout
        pump(s.client, s.engine, collector=s.collector, timeout=5, what="the relay to act",
             until=lambda: bool(s.collector.results) or s.engine.eof or len(s.engine.got) >= len(stream))
        settle(s.client, s.engine, seconds=0.01, collector=s.collector)
        results = [(reason, left is None) for _, reason, left in s.collector.results]
        if outcome == "hand back":
            assert results == [(HANDED_BACK, False)], (outcome, offset)
            left = s.collector.results[0][2]
            # already in the engine's socket when the relay handed back
            pump_until_idle(s.client, s.engine, until=lambda: len(s.engine.got) >= offset)
            settle(s.client, s.engine, seconds=0.01)
            assert len(s.engine.got) == offset and bytes(s.engine.got) == stream[:offset]
            assert not s.engine.eof and not s.engine.close_notify and s.engine.tls_error is None
            client_left, engine_left, records, left_quiet, _resync = left
            assert engine_left == b""
            assert left_quiet == (quiet and not forwarded)
            assert stream[offset:].startswith(client_left)
            s.engine.take()
            continue_in_python(s, left, stream[offset:])
            assert s.client.got == b"python to client"
        elif outcome == "quit":
            assert results == [] and s.engine.eof, (outcome, offset, results)
            assert bytes(s.engine.got) == stream[:offset]
            assert s.engine.notify_before_eof == engine_tls and s.engine.tls_error is None
            s.engine_closes()
            expect_end(s, CLOSED, s.client)
            assert s.collector.results[0][2] is None
        else:
            assert results == [] and not s.engine.eof, (outcome, offset, results)
            assert bytes(s.engine.got) == stream
            s.engine_closes()
            expect_end(s, CLOSED, s.client)
            assert s.collector.results[0][2] is None
            if client_tls:
                pump(s.client, until=lambda: s.client.close_notify, what="close_notify")
            assert s.client.got == b""


# --- max-length packets ------------------------------------------------------------------------

@pytest.mark.parametrize("tls", [pytest.param(False, id="cleartext"), pytest.param(True, id="tls-tls", marks=needs_tls)])
def test_max_length_packets_continue_the_same_logical_packet(world, tls):
    """Real 0xFFFFFF-byte packets: a COM_QUERY of 16 MiB + 10 bytes (a max-length packet, then
    11 bytes with id 1 that start with COM_CHANGE_USER's code); LOAD DATA content whose logical
    packet is a max-length packet with id 254 and an empty one with id 255 -- non-empty as a whole
    and ending on id 255, so the next id-0 packet continues it even though it starts with a stop
    code; then COM_CHANGE_USER, which goes back to Python. The engine gets exactly all before."""
    body = os.urandom(16 * MB + 10)
    big_query = bytes([COM_QUERY]) + body[1:]
    before = (packet(0, big_query[:MAX_PAYLOAD]) + packet(1, bytes([COM_CHANGE_USER]) + big_query[MAX_PAYLOAD + 1:])
              + packet(254, bytes([COM_CHANGE_USER]) + body[:MAX_PAYLOAD - 1]) + packet(255, b"")
              + packet(0, bytes([COM_CHANGE_USER]) + b"wrapped") + packet(1, b"")
              + query(b"SELECT 1"))
    assert len(big_query) == 16 * MB + 10
    stop_cmd = command(COM_CHANGE_USER, b"root\x00")
    after = query(b"SELECT 2")
    s = world.session(tls, tls, mysql=mysql({COM_CHANGE_USER}))
    s.client.write(before + stop_cmd + after)
    left = expect_handed_back(s, s.client, s.engine)
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(before), timeout=30, what="the 32 MiB")
    settle(s.engine, seconds=0.02)
    assert len(s.engine.got) == len(before) and bytes(s.engine.got) == before
    s.engine.take()
    continue_in_python(s, left, stop_cmd + after)


@pytest.mark.parametrize("wrap", [False, True])
def test_the_initial_wrap_flag_makes_the_first_id_0_packet_a_continuation(world, wrap):
    """mysql=(stop, wrap, quiet): with wrap=True (ClientFacing._wrap_continues after a LOAD DATA
    packet with id 255) the first packet with id 0 continues LOAD DATA even when it starts with a
    stop code; the one after it is a command again."""
    s = world.session(mysql=mysql({COM_CHANGE_USER}, wrap=wrap))
    first, second = command(COM_CHANGE_USER, b"data"), command(COM_CHANGE_USER, b"user")
    s.client.write(first + second)
    left = expect_handed_back(s, s.client, s.engine)
    expected = first if wrap else b""
    settle(s.engine, seconds=0.05)
    assert bytes(s.engine.got) == expected
    s.engine.take()
    continue_in_python(s, left, (second if wrap else first + second))


# --- a hand-back while the engine streams to a client that does not read -----------------------

# the TLS version matters only where a leg runs TLS
_STALLED = [pytest.param(*leg.values, version, id=f"{leg.id}-{name}" if any(leg.values) else leg.id, marks=leg.marks)
            for leg in LEGS for name, version in (("tls1.3", ssl.TLSVersion.TLSv1_3), ("tls1.2", ssl.TLSVersion.TLSv1_2))
            if any(leg.values) or name == "tls1.3"]


@pytest.mark.parametrize("client_tls, engine_tls, version", _STALLED)
def test_hand_back_while_the_engine_streams_to_a_stalled_client(world, client_tls, engine_tls, version):
    """The engine sends a big response (8 MB) to a client that reads nothing, so the relay's
    buffers, its TLS objects and the kernel's fill up; meanwhile the client sends COM_CHANGE_USER
    and a query after it. The session is handed back once the bytes before the stop command
    reached the engine; Python then sends the client's TLS records and the engine's undelivered
    plaintext and relays the rest of the engine's stream with the same SSL objects: the client
    receives every engine byte exactly once, in order, and Python reads exactly the client's
    bytes from the stop command on."""
    s = world.session(client_tls, engine_tls, mysql=mysql({COM_CHANGE_USER}), version=version)
    first = query(b"SELECT * FROM big")
    s.client.write(first)
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(first))
    assert s.engine.take() == first

    response = os.urandom(8 * MB)
    s.client.reading = False
    s.engine.write(response)
    # until the engine cannot get rid of anything more: every buffer on the way is full
    last = [s.engine.out_len, time.monotonic()]

    def stalled() -> bool:
        if s.engine.out_len != last[0]:
            last[:] = [s.engine.out_len, time.monotonic()]
        return time.monotonic() - last[1] > 0.3

    pump(s.client, s.engine, until=stalled, what="the engine to stall")
    assert s.engine.out_len > 0
    rest = command(COM_CHANGE_USER, b"admin\x00" + os.urandom(40)) + query(b"SELECT after")
    s.client.write(rest)
    left = expect_handed_back(s, s.client, s.engine)
    client_left, engine_left, records, quiet, _resync = left
    assert not quiet
    assert engine_left or records  # some of the response was in the relay's hands
    if not client_tls:
        assert records == b""
    settle(s.engine, seconds=0.02)
    assert s.engine.got == b""  # nothing more reached the engine

    # Python carries on: the client's records, the engine's plaintext, then a relay of the rest
    gw_c, gw_e = s.python_client_leg(), s.python_engine_leg()
    gw_c.send_raw(records)
    gw_c.write(engine_left)
    s.client.reading = True
    peers = (s.client, s.engine, gw_c, gw_e)
    tail = os.urandom(100_000)
    tail_sent = False

    def relayed() -> bool:
        nonlocal tail_sent
        if gw_e.got:
            gw_c.write(gw_e.take())
        if not tail_sent and not s.engine.out_len:
            s.engine.write(tail)  # what the engine writes after the hand-back
            tail_sent = True
        return len(s.client.got) >= len(response) + len(tail) and len(client_left) + len(gw_c.got) >= len(rest)

    pump(*peers, until=relayed, timeout=30, what="the whole response at the client")
    assert len(s.client.got) == len(response) + len(tail)
    assert bytes(s.client.got) == response + tail
    assert client_left + gw_c.take() == rest
    # the legs still work both ways with Python's objects
    gw_e.write(b"change user")
    s.engine.write(b"auth switch")
    pump(*peers, until=lambda: len(s.engine.got) >= 11 and len(gw_e.got) >= 11)
    assert s.engine.take() == b"change user" and gw_e.take() == b"auth switch"
    for peer in peers:
        assert peer.tls_error is None and not peer.eof, peer


# --- quiet -------------------------------------------------------------------------------------

@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_quiet_engine_bytes_before_any_command_are_a_protocol_error(world, client_tls, engine_tls):
    """quiet=True: the engine owes nothing; a byte from it before the client's first command ends
    the session with the protocol-error reason, and the client gets none of it."""
    s = world.session(client_tls, engine_tls, mysql=mysql(quiet=True))
    s.engine.write(packet(1, b"\x00stale ok packet"))
    left = expect_end(s, QUIET_ERROR, s.client, s.engine)
    assert left is None
    settle(s.client, seconds=0.05)
    assert s.client.got == b"" and s.client.wire_in == 0


@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_without_quiet_engine_bytes_before_a_command_pass(world, client_tls, engine_tls):
    """quiet=False (the engine may still be answering): its bytes go to the client."""
    s = world.session(client_tls, engine_tls, mysql=mysql(quiet=False))
    s.engine.write(packet(1, b"\x00late ok packet"))
    pump(s.client, s.engine, until=lambda: len(s.client.got) >= 19)
    assert s.client.take() == packet(1, b"\x00late ok packet")
    s.collector.nothing_for(0.05)


@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_quiet_a_forwarded_command_lets_the_engine_answer_and_is_reported(world, client_tls, engine_tls):
    """quiet=True, then a command: it is forwarded, the engine's answer flows, and the hand-back
    at a later stop command reports quiet=False (the engine may still be answering)."""
    s = world.session(client_tls, engine_tls, mysql=mysql({COM_CHANGE_USER}, quiet=True))
    ping = command(COM_PING)
    s.client.write(ping)
    pump(s.client, s.engine, until=lambda: len(s.engine.got) >= len(ping))
    assert s.engine.take() == ping
    ok = packet(1, b"\x00\x00\x00\x02\x00\x00\x00")
    s.engine.write(ok)
    pump(s.client, s.engine, until=lambda: len(s.client.got) >= len(ok))
    assert s.client.take() == ok
    change = command(COM_CHANGE_USER, b"bob\x00")
    s.client.write(change)
    left = expect_handed_back(s, s.client, s.engine)
    assert left[3] is False
    continue_in_python(s, left, change)


@pytest.mark.parametrize("quiet", [True, False])
@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_a_stop_command_first_reports_the_initial_quiet(world, client_tls, engine_tls, quiet):
    """A stop command as the first command: nothing reaches the engine, and handed_back's quiet
    is the value the session started with."""
    s = world.session(client_tls, engine_tls, mysql=mysql({COM_CHANGE_USER}, quiet=quiet))
    change = command(COM_CHANGE_USER, b"bob\x00")
    s.client.write(change)
    left = expect_handed_back(s, s.client, s.engine)
    assert left[3] is quiet
    settle(s.engine, seconds=0.02)
    assert s.engine.got == b""
    continue_in_python(s, left, change)


# --- COM_QUIT ----------------------------------------------------------------------------------

@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_com_quit_is_forwarded_and_nothing_after_it(world, client_tls, engine_tls):
    """COM_QUIT (one byte) is forwarded; then the engine sees its end of stream (close_notify
    first on a TLS leg) while the session lives on; what the client sends afterwards is neither
    read nor forwarded (it waits in the socket for Python); the engine's close ends the session
    "engine closed the connection"."""
    s = world.session(client_tls, engine_tls, mysql=mysql({COM_CHANGE_USER}, quiet=True))
    forwarded = query(b"SELECT 1") + command(COM_QUIT)
    s.client.write(forwarded)
    pump(s.client, s.engine, until=lambda: s.engine.eof, what="the engine's EOF")
    assert bytes(s.engine.got) == forwarded
    assert s.engine.notify_before_eof == engine_tls and s.engine.tls_error is None
    s.collector.nothing_for(0.05)
    late = query(b"SELECT 'late'") + command(COM_CHANGE_USER, b"x\x00")
    s.client.write(late)
    settle(s.client, s.engine, seconds=0.05)
    assert not s.client.out_len
    s.engine.write(b"bye")  # the engine may still say something
    s.engine_closes()
    pump(s.client, until=lambda: len(s.client.got) >= 3, collector=s.collector)
    assert s.client.take() == b"bye"
    left = expect_end(s, CLOSED, s.client)
    assert left is None
    if client_tls:
        pump(s.client, until=lambda: s.client.close_notify)
    assert bytes(s.engine.got) == forwarded
    # the late bytes are still Python's to read, from the same socket (and TLS object)
    gw_c = s.python_client_leg()
    pump(gw_c, until=lambda: len(gw_c.got) >= len(late), what="the late bytes in the socket")
    settle(gw_c, seconds=0.02)
    assert gw_c.take() == late


@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_com_quit_of_two_bytes_is_handed_back(world, client_tls, engine_tls):
    """A COM_QUIT whose length is not 1 is not forwarded: the session goes back to Python."""
    s = world.session(client_tls, engine_tls, mysql=mysql(set()))
    before = query(b"SELECT 1")
    odd_quit = command(COM_QUIT, b"x")
    after = query(b"SELECT 2")
    s.client.write(before + odd_quit + after)
    left = expect_handed_back(s, s.client, s.engine)
    pump(s.engine, until=lambda: len(s.engine.got) >= len(before))
    settle(s.engine, seconds=0.02)
    assert s.engine.take() == before and not s.engine.eof
    continue_in_python(s, left, odd_quit + after)


@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_the_empty_command_packet_is_handed_back(world, client_tls, engine_tls):
    """A command packet of length 0 (Python answers it with an error) goes back to Python."""
    s = world.session(client_tls, engine_tls, mysql=mysql(set()))
    before = query(b"SELECT 1") + packet(1, b"continuation")
    rest = packet(0, b"") + query(b"SELECT 2")
    s.client.write(before + rest)
    left = expect_handed_back(s, s.client, s.engine)
    pump(s.engine, until=lambda: len(s.engine.got) >= len(before))
    settle(s.engine, seconds=0.02)
    assert s.engine.take() == before
    continue_in_python(s, left, rest)


# --- a client that ends inside a packet --------------------------------------------------------

@pytest.mark.parametrize("cut", [pytest.param(2, id="in-the-header"), pytest.param(4, id="command-without-code")])
@pytest.mark.parametrize("client_tls, engine_tls", LEGS)
def test_a_client_ending_its_stream_inside_a_packet_header(world, client_tls, engine_tls, cut):
    """The client's stream ends (close_notify + FIN, or FIN) after part of a packet's header, or
    after the header of a command but before its code: "client closed the connection inside a
    packet"; the engine got exactly the whole packets before and no end of stream."""
    s = world.session(client_tls, engine_tls, mysql=mysql())
    whole = query(b"SELECT 1")
    s.client.write(whole + query(b"SELECT 2")[:cut])
    s.client_closes()
    expect_end(s, INSIDE_A_PACKET, s.client, s.engine)
    settle(s.engine, seconds=0.02)
    assert bytes(s.engine.got) == whole and not s.engine.eof


@pytest.mark.parametrize("client_tls, engine_tls, where", [
    pytest.param(False, False, "command-payload", id="clear-clear-command-payload"),
    pytest.param(False, False, "continuation-header", id="clear-clear-continuation-header"),
    pytest.param(False, False, "continuation-payload", id="clear-clear-continuation-payload"),
    pytest.param(True, True, "command-payload", id="tls-tls-command-payload", marks=needs_tls),
])
def test_a_client_ending_its_stream_inside_a_packets_payload(world, client_tls, engine_tls, where):
    """The same inside a packet's payload (a command's, after its code byte; a continuation's,
    right after its header or in its payload): the session ends "client closed the connection
    inside a packet", and the engine gets no end of stream that would look like the client's
    clean half-close at a packet boundary. Unlike the Python relay, which holds a packet until
    it is whole, the native relay streams a payload as it arrives (a packet may be 16 MiB), so
    the engine may have the truncated packet's first bytes; the session's end then aborts its
    connection, and an engine never runs a packet it did not get whole."""
    s = world.session(client_tls, engine_tls, mysql=mysql())
    whole = query(b"SELECT 1")
    partial = {"command-payload": query(b"SELECT 2")[:9], "continuation-header": packet(1, b"abcdef")[:4],
               "continuation-payload": packet(1, b"abcdef")[:7]}[where]
    s.client.write(whole + partial)
    s.client_closes()
    pump(s.engine, until=lambda: s.engine.eof or bool(s.collector.results), collector=s.collector, timeout=2,
         what="the session's end or the engine's EOF")
    settle(s.engine, seconds=0.05, collector=s.collector)
    got = bytes(s.engine.got)
    assert got.startswith(whole) and (whole + partial).startswith(got)
    assert (s.engine.eof, s.collector.results) == (False, [(s.handle, INSIDE_A_PACKET, None)])


# --- argument checks ---------------------------------------------------------------------------

def test_mysql_argument_checks(world):
    """mysql= must be a 3-tuple (stop: exactly 32 bytes, wrap, quiet): a tuple of another length
    is a TypeError, a stop set that is not 32 bytes a ValueError, both before a session exists;
    wrap and quiet take any truth value; mysql= is keyword-only."""
    relay = world.relay()
    (c, _), (e, _) = world.pair(), world.pair()
    good = stop_set({COM_CHANGE_USER})
    for bad in [(good,), (good, False), (good, False, False, False), ()]:
        with pytest.raises(TypeError):
            relay.add(c.fileno(), e.fileno(), mysql=bad)
    for bad in [(b"\x00" * 31, False, False), (b"\x00" * 33, False, False), (b"", False, False),
                (bytearray(32), False, False), ("\x00" * 32, False, False), (None, False, False)]:
        with pytest.raises(ValueError, match="32 bytes"):
            relay.add(c.fileno(), e.fileno(), mysql=bad)
    with pytest.raises(TypeError):
        relay.add(c.fileno(), e.fileno(), None, None, (good, False, False))  # keyword-only
    assert relay.stats()["added"] == 0 and relay.stats()["live"] == 0
    handle = relay.add(c.fileno(), e.fileno(), mysql=(good, 0, 1))  # any truth values
    assert relay.close(handle)
    assert Collector(relay).wait() == [(handle, "closed by the gateway", None)]


@pytest.mark.parametrize("bad", [pytest.param(b"\x00" * 32, id="bytes"), pytest.param([bytes(32), False, False], id="list"),
                                 pytest.param(5, id="int"), pytest.param("abc", id="str")])
def test_mysql_that_is_not_a_tuple_is_a_type_error(world, bad):
    """mysql= that is not a tuple at all must be refused with TypeError, as a tuple of the wrong
    shape is ("mysql must be (stop: bytes, wrap: bool, quiet: bool)"): Offload.hand_over only
    catches ValueError, TypeError, OSError, RuntimeError and MemoryError (PyArg_ParseTuple alone
    would raise SystemError for a non-tuple)."""
    relay = world.relay()
    (c, _), (e, _) = world.pair(), world.pair()
    with pytest.raises(TypeError):
        relay.add(c.fileno(), e.fileno(), mysql=bad)
    assert relay.stats()["added"] == 0


@needs_tls
def test_ssl_and_engine_ssl_argument_checks(world):
    """ssl= takes only a finished server-side SSL object, engine_ssl= only a finished client-side
    one (both over memory BIOs with nothing unsent); anything else is refused with nothing
    changed, and the right pair is accepted."""
    relay = world.relay()
    (c, _), (e, _) = world.pair(), world.pair()
    server, client = world.tls(ssl.TLSVersion.TLSv1_3)
    with pytest.raises(ValueError, match="finished client-side handshake"):
        relay.add(c.fileno(), e.fileno(), engine_ssl=server.obj._sslobj)
    with pytest.raises(ValueError, match="finished server-side handshake"):
        relay.add(c.fileno(), e.fileno(), client.obj._sslobj)
    with pytest.raises(ValueError, match="finished client-side handshake"):
        relay.add(c.fileno(), e.fileno(), server.obj._sslobj, engine_ssl=server.obj._sslobj, mysql=mysql())
    fresh = world.contexts.client[ssl.TLSVersion.TLSv1_3].wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(),
                                                                   server_hostname=HOST)
    with pytest.raises(ValueError, match="finished client-side handshake"):
        relay.add(c.fileno(), e.fileno(), engine_ssl=fresh._sslobj)  # no handshake yet
    with pytest.raises(TypeError):
        relay.add(c.fileno(), e.fileno(), engine_ssl=b"not an ssl object")
    with pytest.raises(TypeError):
        relay.add(c.fileno(), e.fileno(), engine_ssl=client.obj)  # the SSLObject, not its _sslobj
    client.obj.write(b"unsent")
    with pytest.raises(ValueError, match="unsent records"):
        relay.add(c.fileno(), e.fileno(), engine_ssl=client.obj._sslobj)
    server.incoming.write(client.outgoing.read())
    assert server.obj.read(6) == b"unsent"
    assert relay.stats()["added"] == 0 and relay.stats()["live"] == 0
    # the same objects, each on its own side: accepted
    other_server, _other_client = world.tls(ssl.TLSVersion.TLSv1_3)
    handle = relay.add(c.fileno(), e.fileno(), other_server.obj._sslobj, engine_ssl=client.obj._sslobj,
                       mysql=mysql())
    assert relay.close(handle)
    assert Collector(relay).wait() == [(handle, "closed by the gateway", None)]
