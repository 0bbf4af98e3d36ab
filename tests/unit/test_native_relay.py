"""The native relay (dbkeep.gateway._relay) and its event-loop binding (dbkeep.gateway.offload),
over real sockets, real TLS and a real uvloop loop; nothing is mocked.

Covered:
- cleartext: several MB each way at once, byte-exact; 2,000 small round trips; the relay thread
  (not the event loop) moves the bytes, and stats() counts them;
- client half-close (SHUT_WR reaches the engine, the engine still answers) and a TLS client's
  close_notify;
- TLS 1.3 and 1.2 continued from uvloop's start_tls: byte-exact both ways beyond one record, a
  clean close_notify when the engine closes, a client that breaks the TLS stream;
- back-pressure, cleartext and TLS: a client that reads nothing stalls the engine at a bounded
  amount, without the relay thread spinning, and then gets every byte;
- a client reset, Offload.close(), Offload.stop() with live sessions;
- the drain timeout, both when the relay has read the engine's end of stream and when the
  engine closed with bytes the relay could not read yet;
- hand_over() refusing a session that still has bytes in a transport (nothing changes);
- the Relay used directly: argument checks, which TLS objects it takes (and TLS over memory
  BIOs without asyncio), handles, close(), collect(), stop(); a close() of a finished,
  not yet collected session must not reach a later session.

Harness: a uvloop loop in its own thread (as tests/e2e/inprocess.py) accepts TCP clients,
optionally runs start_tls, pairs each client with one end of an AF_UNIX socketpair (the
"engine"; the test keeps the other end) and hands both to Offload. The test thread drives
blocking sockets with timeouts, so a bug ends in a failure rather than a hang.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import queue
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from background import background
from memory_tls import shuttle_handshake
from test_pki_tls import HOST, pki  # noqa: F401 - the module-scoped CA + RSA/ECDSA server certificates

from dbkeep.pki.tls import server_context

_relay = pytest.importorskip("dbkeep.gateway._relay", reason="the native relay is not built (pip install -e .)")
uvloop = pytest.importorskip("uvloop")

from dbkeep.gateway.offload import Offload  # noqa: E402 - after the skip: needs the extension

pytestmark = pytest.mark.timeout(60)  # a safety net only: every blocking call has its own timeout

TIMEOUT = 10.0
MB = 1024 * 1024
TLS_OK, TLS_WHY = _relay.tls_handover()
needs_tls = pytest.mark.skipif(not TLS_OK, reason=f"TLS hand-over unavailable in this build: {TLS_WHY}")
TLS_VERSIONS = [pytest.param(ssl.TLSVersion.TLSv1_3, id="tls1.3"), pytest.param(ssl.TLSVersion.TLSv1_2, id="tls1.2")]


# --- helpers -----------------------------------------------------------------------------------

def recv_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError(f"end of stream after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def recv_digest(sock: socket.socket, n: int) -> str:
    """Read exactly n bytes (no more: the stream must then be at a message boundary) and hash them."""
    digest, buf, got = hashlib.sha256(), bytearray(256 * 1024), 0
    view = memoryview(buf)
    while got < n:
        k = sock.recv_into(view, min(len(buf), n - got))
        if k == 0:
            raise EOFError(f"end of stream after {got} of {n} bytes")
        digest.update(view[:k])
        got += k
    return digest.hexdigest()


def read_to_eof(sock: socket.socket) -> bytes:
    out = bytearray()
    while chunk := sock.recv(65536):
        out += chunk
    return bytes(out)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def push_until_stalled(sock: socket.socket, data: bytes, quiet: float = 0.5) -> int:
    """Send data on a non-blocking socket until nothing more goes out for `quiet` seconds (or
    all is sent); the number of bytes the peer side accepted."""
    sock.setblocking(False)
    view, sent, last = memoryview(data), 0, time.monotonic()
    try:
        while sent < len(data):
            try:
                sent += sock.send(view[sent:sent + MB])
                last = time.monotonic()
                continue
            except BlockingIOError:
                pass
            if time.monotonic() - last >= quiet:
                break
            select.select([], [sock], [], 0.05)
    finally:
        sock.settimeout(TIMEOUT)
    return sent


def relay_threads() -> set[int]:
    """Thread ids of this process's relay threads (pthread_setname_np "dbkeep-relay")."""
    tids = set()
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip() == "dbkeep-relay":
                    tids.add(int(tid))
        except OSError:
            continue
    return tids


def cpu_seconds(tid: int) -> float:
    """CPU time of one thread of this process, in ns resolution: Linux's per-thread CPU clock,
    encoded as glibc's pthread_getcpuclockid() does (MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED))."""
    return time.clock_gettime((~tid << 3) | 6)


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER {on, 0}: the kernel sends an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# --- the gateway side: uvloop + Offload --------------------------------------------------------

class Session:
    """One accepted client as the test sees it."""

    def __init__(self) -> None:
        self.raw: asyncio.Transport | None = None              # the TCP transport
        self.client_transport: asyncio.Transport | None = None  # TLS transport, or raw
        self.engine_transport: asyncio.Transport | None = None
        self.client: socket.socket | None = None  # the test's client (ssl.SSLSocket under TLS)
        self.engine: socket.socket | None = None  # the test's end of the engine socketpair
        self.handle: int | None = None
        self.ready: Future = Future()  # hand_over's result
        self.done: Future = Future()   # on_done's reason
        self.reasons: list[str] = []
        self.done_thread: int | None = None
        self.from_client = bytearray()  # what Python (not the relay) read from the client
        self.from_engine = bytearray()
        self.got_client_data = threading.Event()
        self.tls_started = threading.Event()

    def on_done(self, reason: str, handed_back: object = None) -> None:
        """As drivers/session.py's _offload_done: release the session and close its transports."""
        self.reasons.append(reason)
        self.done_thread = threading.get_ident()
        for transport in (self.client_transport, self.raw, self.engine_transport):
            if transport is not None:
                transport.abort()
        if not self.done.done():
            self.done.set_result(reason)

    def reason(self, timeout: float = TIMEOUT) -> str:
        return self.done.result(timeout)


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.session = Session()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.session.raw = transport  # type: ignore[assignment]
        self.gateway.sessions.append(self.session)
        self.gateway.accepted.put(self.session)
        asyncio.get_running_loop().create_task(self.gateway.set_up(self.session, self))

    def data_received(self, data: bytes) -> None:
        self.session.from_client += data
        self.session.got_client_data.set()

    def eof_received(self) -> bool:
        return True  # keep the transport: the test decides when it closes


class _EngineProtocol(asyncio.Protocol):
    def __init__(self, session: Session) -> None:
        self.session = session

    def data_received(self, data: bytes) -> None:
        self.session.from_engine += data

    def eof_received(self) -> bool:
        return True


class Gateway:
    """A uvloop loop in its own thread, a TCP listener on 127.0.0.1 and an Offload."""

    def __init__(self, *, tls_context: ssl.SSLContext | None = None, threads: int = 1,
                 drain_timeout: float = 10.0, auto_hand_over: bool = True) -> None:
        self.tls_context = tls_context
        self.auto_hand_over = auto_hand_over
        self.sessions: list[Session] = []
        self.accepted: queue.Queue[Session] = queue.Queue()
        self._sockets: list[socket.socket] = []
        before = relay_threads()
        self.offload = Offload(threads, drain_timeout=drain_timeout)
        self.relay_tids = relay_threads() - before
        self.loop = uvloop.new_event_loop()
        self.loop_thread_id: int | None = None
        ready: Future = Future()

        async def serve() -> None:
            self.loop_thread_id = threading.get_ident()
            self.offload.start(self.loop)
            self.server = await self.loop.create_server(lambda: _ClientProtocol(self), "127.0.0.1", 0)
            self.port = self.server.sockets[0].getsockname()[1]

        def run() -> None:
            try:
                self.loop.run_until_complete(serve())
            except BaseException as exc:  # noqa: BLE001
                ready.set_exception(exc)
                return
            ready.set_result(None)
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="uvloop", daemon=True)
        self.thread.start()
        ready.result(TIMEOUT)

    async def set_up(self, s: Session, protocol: _ClientProtocol) -> None:
        try:
            loop = asyncio.get_running_loop()
            if self.tls_context is not None:  # as drivers/session.py's _client_tls
                # start_tls swaps the protocol before its first await: the client may start its
                # handshake after that (as after a Postgres SSLRequest's "S"); uvloop starts reading
                # right after connection_made, so an earlier ClientHello would reach this protocol
                loop.call_soon(s.tls_started.set)
                s.client_transport = await loop.start_tls(s.raw, protocol, self.tls_context, server_side=True,
                                                          ssl_handshake_timeout=TIMEOUT)
            else:
                s.client_transport = s.raw
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            theirs.settimeout(TIMEOUT)
            s.engine = theirs
            s.engine_transport, _ = await loop.create_unix_connection(lambda: _EngineProtocol(s), sock=ours)
            if self.auto_hand_over:
                raw = s.raw if self.tls_context is not None else None
                s.handle = self.offload.hand_over(s.client_transport, raw, s.engine_transport, s.on_done)
            s.ready.set_result(s.handle)
        except BaseException as exc:  # noqa: BLE001 - reported to the test thread
            s.ready.set_exception(exc)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) in the event loop's thread; its result."""
        future: Future = Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001
                future.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        return future.result(TIMEOUT)

    def connect(self, client_context: ssl.SSLContext | None = None) -> Session:
        """A client, accepted, (TLS-handshaken,) paired with an engine and handed over."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sockets.append(sock)
        sock.settimeout(TIMEOUT)
        sock.connect(("127.0.0.1", self.port))
        s = self.accepted.get(timeout=TIMEOUT)
        if client_context is not None:
            assert s.tls_started.wait(TIMEOUT)
            # suppress_ragged_eofs=False: a TCP end without close_notify raises instead of b""
            sock = client_context.wrap_socket(sock, server_hostname=HOST, suppress_ragged_eofs=False)
            self._sockets.append(sock)
        s.client = sock
        s.ready.result(TIMEOUT)
        assert s.engine is not None
        self._sockets.append(s.engine)
        return s

    def relay_cpu(self) -> float:
        return sum(cpu_seconds(tid) for tid in self.relay_tids)

    def close(self) -> None:
        if self.thread.is_alive():
            def shut() -> None:
                self.offload.stop()
                self.server.close()
                for s in self.sessions:
                    for transport in (s.client_transport, s.raw, s.engine_transport):
                        if transport is not None:
                            transport.abort()

            try:
                self.call(shut)
            finally:
                self.loop.call_soon_threadsafe(self.loop.stop)
                self.thread.join(TIMEOUT)
        for sock in self._sockets:
            sock.close()
        if not self.thread.is_alive():
            self.loop.close()


@pytest.fixture
def gateway():
    """A factory of Gateways, all closed after the test."""
    made: list[Gateway] = []

    def make(**kwargs: Any) -> Gateway:
        made.append(Gateway(**kwargs))
        return made[-1]

    yield make
    for g in made:
        g.close()


@pytest.fixture(scope="module")
def tls_server(pki):  # noqa: F811 - pki is the fixture imported above
    """The gateway's server context (dbkeep.pki.tls), RSA and ECDSA chains."""
    return server_context(pki["cert"], pki["key"], extra_chains=[(pki["ec_cert"], pki["ec_key"])])


@pytest.fixture(scope="module")
def tls_client(pki):  # noqa: F811
    """A verifying client context limited to one TLS version."""
    def make(version: ssl.TLSVersion) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cafile=str(pki["ca"]))
        context.minimum_version = context.maximum_version = version
        return context

    return make


def assert_relayed_natively(g: Gateway, s: Session) -> None:
    """The session is the relay's: handed over, live, its transports paused, and Python never
    read a byte of it."""
    assert s.handle is not None
    assert g.call(lambda: g.offload.live) >= 1
    assert not s.done.done(), s.reasons
    reading = g.call(lambda: [t.is_reading() for t in (s.client_transport, s.raw, s.engine_transport)])
    assert reading == [False, False, False]
    assert not s.from_client and not s.from_engine


def engine_closes_and_client_sees_eof(s: Session) -> None:
    s.engine.close()
    assert read_to_eof(s.client) == b""
    assert s.reason() == "engine closed the connection"


# --- cleartext ---------------------------------------------------------------------------------

def test_cleartext_bulk_both_ways_at_once_is_byte_exact_and_moved_by_the_relay_thread(gateway):
    g = gateway()
    assert len(g.relay_tids) == 1  # Offload(1) started one named relay thread
    added = g.offload.stats()["added"]
    s = g.connect()
    assert g.offload.stats()["added"] == added + 1
    assert_relayed_natively(g, s)

    up, down = os.urandom(8 * MB), os.urandom(8 * MB)
    cpu_before = g.relay_cpu()
    # four threads: each direction is written and read at the same time as the other
    jobs = [background(s.client.sendall, up), background(recv_digest, s.engine, len(up)),
            background(s.engine.sendall, down), background(recv_digest, s.client, len(down))]
    results = [job.result(20) for job in jobs]
    assert results[1] == sha(up)
    assert results[3] == sha(down)
    # still the relay's session, and it was the relay thread that worked
    assert_relayed_natively(g, s)
    assert g.relay_cpu() - cpu_before > 0.001  # copying 16 MB took the relay thread's time

    engine_closes_and_client_sees_eof(s)
    assert s.reasons == ["engine closed the connection"]
    assert s.done_thread == g.loop_thread_id  # on_done runs in the event loop
    stats = g.offload.stats()
    assert stats["bytes_up"] == len(up) and stats["bytes_down"] == len(down)
    assert stats["live"] == 0 and g.call(lambda: g.offload.live) == 0
    assert not s.from_client and not s.from_engine


@pytest.mark.parametrize("tls_version", [None, pytest.param(ssl.TLSVersion.TLSv1_3, marks=needs_tls, id="tls1.3")])
def test_two_thousand_small_round_trips(gateway, tls_server, tls_client, tls_version):
    g = gateway(tls_context=tls_server if tls_version else None)
    s = g.connect(tls_client(tls_version) if tls_version else None)
    assert_relayed_natively(g, s)
    for i in range(2000):
        question = b"Q%d:" % i + b"q" * (i % 97)  # sizes vary: framing bugs show
        s.client.sendall(question)
        assert recv_exact(s.engine, len(question)) == question
        answer = b"A%d:" % i + b"a" * (i % 193)
        s.engine.sendall(answer)
        assert recv_exact(s.client, len(answer)) == answer
    assert_relayed_natively(g, s)
    engine_closes_and_client_sees_eof(s)


def test_client_half_close_reaches_the_engine_which_can_still_answer(gateway):
    g = gateway()
    s = g.connect()
    s.client.sendall(b"last words")
    s.client.shutdown(socket.SHUT_WR)
    # the relay forwards the bytes, then the end of stream (shutdown(SHUT_WR) on the engine)
    assert read_to_eof(s.engine) == b"last words"
    # half-closed is not closed: the engine still answers and the client still reads
    reply = os.urandom(300 * 1024)
    send = background(s.engine.sendall, reply)
    assert recv_exact(s.client, len(reply)) == reply
    send.result(TIMEOUT)
    assert not s.done.done() and g.call(lambda: g.offload.live) == 1
    engine_closes_and_client_sees_eof(s)


@pytest.mark.parametrize("tls", [False, pytest.param(True, marks=needs_tls)], ids=["cleartext", "tls"])
def test_client_reset_ends_the_session_and_the_engine_sees_eof(gateway, tls_server, tls_client, tls):
    g = gateway(tls_context=tls_server if tls else None)
    s = g.connect(tls_client(ssl.TLSVersion.TLSv1_3) if tls else None)
    s.client.sendall(b"hello")
    assert recv_exact(s.engine, 5) == b"hello"
    reset(s.client)
    reason = s.reason()
    assert reason.startswith("client connection failed") or reason == "client closed the connection", reason
    # Python aborted the engine transport in on_done: the engine's end of the pair ends
    assert read_to_eof(s.engine) == b""
    assert g.call(lambda: g.offload.live) == 0


# --- TLS ---------------------------------------------------------------------------------------

@needs_tls
@pytest.mark.parametrize("version", TLS_VERSIONS)
def test_tls_both_ways_byte_exact_and_close_notify_when_the_engine_closes(gateway, tls_server, tls_client, version):
    g = gateway(tls_context=tls_server)
    s = g.connect(tls_client(version))
    assert s.client.version() == {ssl.TLSVersion.TLSv1_3: "TLSv1.3", ssl.TLSVersion.TLSv1_2: "TLSv1.2"}[version]
    assert_relayed_natively(g, s)

    # one byte, then far more than one 16 KiB record, each way; the engine side runs in a
    # thread (one SSL socket is not used from two threads at once)
    for size in (1, 1 * MB + 12345):
        up = os.urandom(size)
        reader = background(recv_digest, s.engine, size)
        s.client.sendall(up)
        assert reader.result(TIMEOUT) == sha(up)
        down = os.urandom(size)
        writer = background(s.engine.sendall, down)
        assert recv_digest(s.client, size) == sha(down)
        writer.result(TIMEOUT)
    assert_relayed_natively(g, s)

    # the engine's last bytes and its close: the client gets both, then close_notify (its recv
    # returns b"" rather than raising SSLEOFError)
    s.engine.sendall(b"goodbye")
    s.engine.close()
    assert read_to_eof(s.client) == b"goodbye"
    assert s.reason() == "engine closed the connection"
    assert s.reasons == ["engine closed the connection"] and s.done_thread == g.loop_thread_id
    assert g.offload.stats()["bytes_down"] == 1 + 1 * MB + 12345 + len(b"goodbye")
    assert g.offload.stats()["bytes_up"] == 1 + 1 * MB + 12345


@needs_tls
def test_tls_client_close_notify_reaches_the_engine_as_end_of_stream(gateway, tls_server, tls_client):
    g = gateway(tls_context=tls_server)
    s = g.connect(tls_client(ssl.TLSVersion.TLSv1_3))
    s.client.sendall(b"bye")
    # unwrap() sends close_notify and waits for the server's, which the relay sends when the
    # engine closes
    unwrapped = background(s.client.unwrap)
    assert read_to_eof(s.engine) == b"bye"
    assert not s.done.done()
    s.engine.close()
    unwrapped.result(TIMEOUT).close()
    assert s.reason() == "engine closed the connection"


@needs_tls
def test_tls_garbage_from_the_client_ends_the_session_with_a_tls_error(gateway, tls_server, tls_client):
    g = gateway(tls_context=tls_server)
    s = g.connect(tls_client(ssl.TLSVersion.TLSv1_3))
    # an application-data record that does not decrypt, written under the TLS layer
    with socket.socket(fileno=os.dup(s.client.fileno())) as under:
        under.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))
    assert s.reason().startswith("client TLS error"), s.reasons
    assert read_to_eof(s.engine) == b""


# --- back-pressure and drain -------------------------------------------------------------------

@pytest.mark.parametrize("tls", [False, pytest.param(True, marks=needs_tls)], ids=["cleartext", "tls"])
def test_a_client_that_reads_nothing_stalls_the_engine_then_gets_every_byte(gateway, tls_server, tls_client, tls):
    g = gateway(tls_context=tls_server if tls else None)
    s = g.connect(tls_client(ssl.TLSVersion.TLSv1_3) if tls else None)
    total = 64 * MB
    data = os.urandom(total)

    pushed = push_until_stalled(s.engine, data)
    # what the engine got rid of is what the kernel buffers and the relay's bounded buffers
    # hold, not the 64 MB: the relay stopped reading the engine
    assert 0 < pushed < 16 * MB, pushed
    # stalled, not spinning: the relay thread waits in epoll while nothing can move
    cpu = g.relay_cpu()
    time.sleep(0.5)
    assert g.relay_cpu() - cpu < 0.1  # a spinning thread would have used about 0.5 s
    assert_relayed_natively(g, s)

    # now the client reads: the rest flows and every byte arrives, in order
    sent_rest = background(s.engine.sendall, memoryview(data)[pushed:])
    assert recv_digest(s.client, total) == sha(data)
    sent_rest.result(TIMEOUT)
    engine_closes_and_client_sees_eof(s)


def test_an_engine_that_reads_nothing_stalls_the_client_then_gets_every_byte(gateway):
    g = gateway()
    s = g.connect()
    total = 64 * MB
    data = os.urandom(total)
    pushed = push_until_stalled(s.client, data)
    assert 0 < pushed < 16 * MB, pushed  # the relay stopped reading the client
    cpu = g.relay_cpu()
    time.sleep(0.5)
    assert g.relay_cpu() - cpu < 0.1  # a spinning thread would have used about 0.5 s
    sent_rest = background(s.client.sendall, memoryview(data)[pushed:])
    assert recv_digest(s.engine, total) == sha(data)
    sent_rest.result(TIMEOUT)
    engine_closes_and_client_sees_eof(s)


def test_drain_timeout_ends_a_session_whose_client_does_not_read_what_the_engine_left(gateway):
    """The engine filled every buffer on the way (some of its bytes are still in its socket
    when it closes) and the client reads nothing: drain_timeout still ends the session."""
    g = gateway(drain_timeout=0.5)
    s = g.connect()
    # more than the kernel and relay buffers hold, then the engine closes
    pushed = push_until_stalled(s.engine, os.urandom(64 * MB))
    assert pushed < 16 * MB
    s.engine.close()
    # drain_timeout (0.5 s) plus the relay's 250 ms check: well within 3 s
    reason = s.reason(timeout=3.0)
    assert "did not read the rest in time" in reason, reason


def test_drain_timeout_with_the_engines_end_of_stream_read():
    """The same rule on a bare Relay whose buffer holds all the engine sent (its end of stream
    is read): the session ends drain_timeout after, although the relay still holds bytes."""
    relay = _relay.Relay(threads=1, buffer_size=16 * MB, drain_timeout=0.5)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        client.settimeout(TIMEOUT)
        client.connect(listener.getsockname())
        gw_client, _ = listener.accept()
    gw_client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)  # no autotuning
    gw_engine, engine = socket.socketpair()
    try:
        gw_client.setblocking(False)
        gw_engine.setblocking(False)
        engine.settimeout(TIMEOUT)
        handle = relay.add(gw_client.fileno(), gw_engine.fileno())
        engine.sendall(os.urandom(4 * MB))  # fits the relay's 16 MiB, not the kernel's buffers
        engine.close()
        started = time.monotonic()
        assert select.select([relay.fileno()], [], [], 5.0)[0], "the session did not end"
        assert relay.collect() == [(handle, "engine closed the connection; the client did not read the rest in time", None)]
        assert 0.4 < time.monotonic() - started < 3.0
    finally:
        relay.stop()
        for sock in (client, gw_client, gw_engine, engine):
            sock.close()


# --- ending sessions from Python ---------------------------------------------------------------

@pytest.mark.parametrize("tls", [False, pytest.param(True, marks=needs_tls)], ids=["cleartext", "tls"])
def test_offload_close_ends_the_session(gateway, tls_server, tls_client, tls):
    g = gateway(tls_context=tls_server if tls else None)
    s = g.connect(tls_client(ssl.TLSVersion.TLSv1_3) if tls else None)
    g.call(g.offload.close, s.handle)
    assert s.reason() == "closed by the gateway"
    assert read_to_eof(s.engine) == b""
    try:
        tail = read_to_eof(s.client)
    except (ConnectionResetError, ssl.SSLEOFError):
        tail = b""  # abort() may end the client's stream with an RST or without close_notify
    assert tail == b""
    assert g.call(lambda: g.offload.live) == 0
    g.call(g.offload.close, s.handle)  # a finished handle: nothing more happens
    time.sleep(0.1)
    g.call(lambda: None)  # the loop ran whatever the relay reported meanwhile
    assert s.reasons == ["closed by the gateway"]


def test_offload_stop_ends_every_live_session(gateway):
    g = gateway(threads=2)
    sessions = [g.connect() for _ in range(3)]
    for s in sessions:
        s.client.sendall(b"x")
        assert recv_exact(s.engine, 1) == b"x"
    assert g.call(lambda: g.offload.live) == 3
    g.call(g.offload.stop)  # on_done runs inside stop()
    for s in sessions:
        assert s.done.done() and s.reasons == ["gateway stopping"]
        assert read_to_eof(s.engine) == b""
    assert g.call(lambda: g.offload.live) == 0
    assert g.offload.stats()["live"] == 0
    # a stopped Offload hands nothing over: the next session stays with Python, which reads it
    late = g.connect()
    assert late.handle is None
    late.client.sendall(b"still python")
    assert late.got_client_data.wait(TIMEOUT) and bytes(late.from_client) == b"still python"


# --- hand_over refusals ------------------------------------------------------------------------

@pytest.mark.parametrize("buffered", ["engine", "client"])
def test_hand_over_refuses_while_a_transport_still_buffers_and_changes_nothing(gateway, buffered):
    g = gateway(auto_hand_over=False)
    s = g.connect()
    transport = s.engine_transport if buffered == "engine" else s.client_transport
    added = g.offload.stats()["added"]

    def fill_and_hand_over() -> tuple[int, int | None, list[bool]]:
        transport.write(b"z" * (16 * MB))  # the peer reads nothing: most stays in the transport
        size = transport.get_write_buffer_size()
        handle = g.offload.hand_over(s.client_transport, None, s.engine_transport, s.on_done)
        return size, handle, [s.client_transport.is_reading(), s.engine_transport.is_reading()]

    size, handle, reading = g.call(fill_and_hand_over)
    assert size > 0
    assert handle is None
    assert reading == [True, True]  # still Python's: nothing paused
    assert g.offload.stats()["added"] == added and g.call(lambda: g.offload.live) == 0
    s.client.sendall(b"ping")
    assert s.got_client_data.wait(TIMEOUT) and bytes(s.from_client) == b"ping"


# --- the Relay object directly -----------------------------------------------------------------

@pytest.fixture
def pairs():
    """Factory of (gateway-side, peer-side) connected socket pairs; gateway sides non-blocking."""
    made: list[socket.socket] = []

    def make() -> tuple[socket.socket, socket.socket]:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.settimeout(TIMEOUT)
        made.extend((ours, theirs))
        return ours, theirs

    yield make
    for sock in made:
        sock.close()


def wait_collect(relay: Any) -> list[tuple[int, str, Any]]:
    assert select.select([relay.fileno()], [], [], TIMEOUT)[0], "collect() has nothing"
    return relay.collect()


@pytest.mark.parametrize("kwargs", [{"threads": 0}, {"threads": 65}, {"buffer_size": 4096},
                                    {"buffer_size": 17 * MB}, {"drain_timeout": 0.0}, {"drain_timeout": -1.0}])
def test_relay_refuses_bad_settings(kwargs):
    with pytest.raises(ValueError):
        _relay.Relay(**kwargs)


def test_relay_refuses_what_is_not_two_non_blocking_stream_sockets(pairs, tmp_path):
    relay = _relay.Relay()
    try:
        (c, _), (e, _) = pairs(), pairs()
        read_end, write_end = os.pipe()
        blocking, _peer = socket.socketpair()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.setblocking(False)
        with open(tmp_path / "f", "w") as f, blocking, _peer, udp:
            try:
                for cfd, efd in [(c.fileno(), c.fileno()), (-1, e.fileno()), (c.fileno(), -5),
                                 (read_end, e.fileno()), (c.fileno(), f.fileno()),
                                 (blocking.fileno(), e.fileno()), (c.fileno(), udp.fileno()),
                                 (c.fileno(), 999_999)]:
                    with pytest.raises(ValueError):
                        relay.add(cfd, efd)
            finally:
                os.close(read_end)
                os.close(write_end)
        with pytest.raises(TypeError):
            relay.add(c.fileno(), e.fileno(), object())
        with pytest.raises(TypeError):
            relay.add(c.fileno(), e.fileno(), ssl=b"not an ssl object")
        assert relay.stats()["added"] == 0 and relay.stats()["live"] == 0
    finally:
        relay.stop()


@needs_tls
def test_relay_takes_only_a_finished_server_side_memory_bio_tls_object(pairs, tls_server, tls_client):
    relay = _relay.Relay()
    (c, client_sock), (e, engine) = pairs(), pairs()
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = tls_server.wrap_bio(s_in, s_out, server_side=True)
    client = tls_client(ssl.TLSVersion.TLSv1_3).wrap_bio(c_in, c_out, server_hostname=HOST)
    try:
        with pytest.raises(ValueError, match="finished server-side handshake"):
            relay.add(c.fileno(), e.fileno(), server._sslobj)  # no handshake yet
        shuttle_handshake(server, client, s_in, s_out, c_in, c_out)
        with pytest.raises(ValueError, match="finished server-side handshake"):
            relay.add(c.fileno(), e.fileno(), client._sslobj)  # the client's side
        server.write(b"unsent")
        with pytest.raises(ValueError, match="unsent records"):
            relay.add(c.fileno(), e.fileno(), server._sslobj)
        c_in.write(s_out.read())
        assert client.read(6) == b"unsent"
        a, b = socket.socketpair()
        with b, tls_client(ssl.TLSVersion.TLSv1_3).wrap_socket(a, server_hostname=HOST,
                                                                  do_handshake_on_connect=False) as over_socket:
            with pytest.raises(ValueError, match="layout"):
                relay.add(c.fileno(), e.fileno(), over_socket._sslobj)  # TLS over a socket, not memory BIOs
        assert relay.stats()["added"] == 0

        # accepted: the relay continues the server's TLS on the socket
        handle = relay.add(c.fileno(), e.fileno(), server._sslobj)
        client.write(b"hello engine")
        client_sock.sendall(c_out.read())
        assert recv_exact(engine, 12) == b"hello engine"
        engine.sendall(b"hello client")
        engine.close()
        assert wait_collect(relay) == [(handle, "engine closed the connection", None)]
    finally:
        relay.stop()
    c.close()  # Python's to close once collected; then the client's socket ends
    c_in.write(read_to_eof(client_sock))
    assert client.read(100) == b"hello client"
    # b"" from an SSLObject is a close_notify (a missing one raises SSLWantReadError here)
    assert client.read(100) == b""


def test_relay_handles_close_collect_and_stop(pairs):
    relay = _relay.Relay(threads=2)
    assert relay.close(12345) is False  # unknown handle
    assert relay.close(0) is False
    (c1, client1), (e1, engine1) = pairs(), pairs()
    h1 = relay.add(c1.fileno(), e1.fileno())
    # it relays: proof the session is live before it is closed
    client1.sendall(b"abc")
    assert recv_exact(engine1, 3) == b"abc"
    assert relay.stats()["live"] == 1 and relay.stats()["added"] == 1
    assert relay.close(h1) is True
    assert wait_collect(relay) == [(h1, "closed by the gateway", None)]
    assert relay.close(h1) is False  # collected: the handle is dead
    assert relay.collect() == []

    # the slot is reused under another handle: the old one still names nothing
    (c2, client2), (e2, engine2) = pairs(), pairs()
    (c3, _), (e3, _) = pairs(), pairs()
    h2 = relay.add(c2.fileno(), e2.fileno())
    h3 = relay.add(c3.fileno(), e3.fileno())
    assert len({h1, h2, h3}) == 3
    assert relay.close(h1) is False
    engine2.sendall(b"xyz")
    assert recv_exact(client2, 3) == b"xyz"

    relay.stop()
    assert relay.close(h2) is False
    with pytest.raises(RuntimeError):
        relay.add(c1.fileno(), e1.fileno())
    assert sorted(relay.collect()) == sorted([(h2, "gateway stopping", None), (h3, "gateway stopping", None)])
    assert relay.collect() == []
    assert relay.stats()["live"] == 0 and relay.stats()["added"] == 3
    relay.stop()  # idempotent
    # the relay never closed the sockets: they are still usable
    assert c2.fileno() >= 0 and e2.fileno() >= 0
    c2.setblocking(True)
    c2.sendall(b"back to python")
    assert recv_exact(client2, 14) == b"back to python"


# Runs in its own interpreter: the stale close below reads (and may write) freed memory, which
# can crash the process. Sixteen sessions at a time, so that the allocator hands some of the
# freed sessions' memory to the new ones whatever state it is in.
_CLOSE_RACE = r"""
import os, select, socket, sys
from dbkeep.gateway import _relay

def relay_threads():
    tids = set()
    for tid in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{tid}/comm") as f:
            if f.read().strip() == "dbkeep-relay":
                tids.add(int(tid))
    return tids

def wait_published():
    assert select.select([relay.fileno()], [], [], 10)[0], "the relay reported nothing"
    os.read(relay.fileno(), 8)  # consumed, not collected: the sessions stay Python's

def pair():
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.settimeout(10)
    sockets.extend((ours, theirs))
    return ours, theirs

before = relay_threads()
relay = _relay.Relay(threads=1)
(tid,) = relay_threads() - before
try:  # the relay thread runs only while this one blocks: it sees the closes after collect()
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(tid, {cpu})
    os.sched_setscheduler(tid, os.SCHED_IDLE, os.sched_param(0))
    os.sched_setaffinity(0, {cpu})
except OSError:
    pass  # still a race, only a less certain one
sockets = []
K = 16
for attempt in range(3):
    first = []
    for _ in range(K):
        (c, _), (e, engine) = pair(), pair()
        first.append(relay.add(c.fileno(), e.fileno()))
        engine.close()  # it ends by itself...
        wait_published()
    for handle in first:
        assert relay.close(handle) is True  # ...and Python closes it before collecting it
    assert sorted(relay.collect()) == sorted((h, "engine closed the connection", None) for h in first)
    second = {}
    for _ in range(K):
        (c, client), (e, engine) = pair(), pair()
        second[relay.add(c.fileno(), e.fileno())] = (client, engine)
    last_client, last_engine = second[max(second)]
    last_client.sendall(b"x")
    last_engine.settimeout(2)
    try:  # blocks: the relay takes its commands (the new sessions, the closes) meanwhile
        last_engine.recv(1)
    except TimeoutError:
        pass
    if select.select([relay.fileno()], [], [], 0)[0]:
        ended = relay.collect()
        print(f"attempt {attempt}: the closes of collected sessions ended {len(ended)} of the {K} new ones: {ended[:2]}")
        sys.exit(1)
    for handle, (client, engine) in second.items():
        if handle != max(second):
            client.sendall(b"x")
            assert engine.recv(1) == b"x"
    for handle in second:
        assert relay.close(handle) is True
    ended = []
    while len(ended) < K:
        assert select.select([relay.fileno()], [], [], 10)[0]
        ended += relay.collect()
    assert sorted(ended) == sorted((h, "closed by the gateway", None) for h in second)
    for sock in sockets:
        sock.close()
    sockets.clear()
relay.stop()
print("ok")
"""


def test_a_close_racing_the_end_of_a_session_never_reaches_a_later_session():
    """close(handle) of a session that finished but is not collected yet is valid (the handle is
    still Python's). Once collect() has freed that session the relay must not act on the close:
    the sessions added right after stay live, none is "closed by the gateway"."""
    child = subprocess.run([sys.executable, "-c", _CLOSE_RACE], capture_output=True, text=True, timeout=40)
    assert child.returncode == 0 and child.stdout.strip() == "ok", (child.returncode, child.stdout + child.stderr)


def test_traffic_counts_bytes_per_tag_while_sessions_run_and_after(pairs):
    """traffic(): per tag, the bytes sent to the engine and to the client, running sessions
    included (what a /metrics scrape reads), and kept once the sessions are collected."""
    relay = _relay.Relay(threads=2)
    try:
        with pytest.raises(ValueError):
            relay.add(*[p.fileno() for p in (pairs()[0], pairs()[0])], tag=70_000)
        sessions = []
        for tag in (3, 3, 7):
            (client, client_peer), (engine, engine_peer) = pairs(), pairs()
            sessions.append((relay.add(client.fileno(), engine.fileno(), tag=tag), client_peer, engine_peer))
        for _handle, client_peer, engine_peer in sessions:
            client_peer.sendall(b"q" * 1000)
            assert recv_exact(engine_peer, 1000) == b"q" * 1000
            engine_peer.sendall(b"r" * 250_000)
            assert recv_exact(client_peer, 250_000) == b"r" * 250_000
        # all three still running (a worker counts a send just after it returned: the peer may
        # have read the bytes a moment before)
        expected = {3: (2000, 500_000), 7: (1000, 250_000)}
        deadline = time.monotonic() + TIMEOUT
        while relay.traffic() != expected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert relay.traffic() == expected
        assert relay.stats()["bytes_up"] == 0  # stats() counts finished sessions only
        for _handle, _client_peer, engine_peer in sessions[:2]:
            engine_peer.close()  # the engine ends the session
        collected: list = []
        while len(collected) < 2:
            collected += wait_collect(relay)
        assert relay.traffic() == expected  # tag 3's sessions were collected: their counts stay
        assert relay.add.__doc__ and "tag" in relay.add.__doc__
    finally:
        relay.stop()
