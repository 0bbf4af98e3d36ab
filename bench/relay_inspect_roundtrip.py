"""Benchmark: what a statement's trip up to Python and back costs on the native relay (issue 12).

A MySQL session is added to the native relay (``_relay`` through ``gateway/offload.py``, as the
gateway does) over socket pairs; a second process plays client and engine: the client sends a
COM_QUERY and waits for the engine's 11-byte answer, the engine answers each query it receives.
Three ways, each ``--seconds`` long with ``--sessions`` sessions at once:

- ``relayed``: no inspect set (an application account's session);
- ``inspected``: COM_QUERY inspected, the event loop answering every report with "forward" at
  once (the relay's own round trip: report, eventfd, collect, verdict, wake-up);
- ``handed back``: the same, but every query handed back and the session handed over again after
  it, as a relay without the verdict channel would have to (measured in its simplest form: the
  hand-back, resume, the query written to the engine by Python, a new hand-over).

Prints round trips per second and the gateway process's CPU per round trip. The statement
guard's own judging is not included (it is the same whichever way the statement gets to it).

    .venv/bin/python bench/relay_inspect_roundtrip.py [--seconds 5] [--sessions 8]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dbkeep.gateway.offload import Offload, stop_set  # noqa: E402

COM_QUERY, COM_CHANGE_USER = 0x03, 0x11
_SQL = b"SELECT c FROM sbtest1 WHERE id=1"
QUERY = struct.pack("<I", 1 + len(_SQL))[:3] + b"\x00" + bytes([COM_QUERY]) + _SQL
ANSWER = b"\x07\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00"


def peers(client_socks: list[socket.socket], engine_socks: list[socket.socket], seconds: float, out) -> None:
    """Client and engine ends of every session, in one process: ping-pong until the deadline."""
    import selectors

    sel = selectors.DefaultSelector()
    for c, e in zip(client_socks, engine_socks):
        c.setblocking(False)
        e.setblocking(False)
        sel.register(c, selectors.EVENT_READ, ("client", c))
        sel.register(e, selectors.EVENT_READ, ("engine", e))
        c.sendall(QUERY)
    done = 0
    pending = {id(s): b"" for s in client_socks + engine_socks}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for key, _ in sel.select(0.1):
            role, sock = key.data
            data = pending[id(sock)] + sock.recv(65536)
            if role == "engine":
                n, rest = divmod(len(data), len(QUERY))
                pending[id(sock)] = data[n * len(QUERY):]
                if n:
                    sock.sendall(ANSWER * n)
            else:
                n = len(data) // len(ANSWER)
                pending[id(sock)] = data[n * len(ANSWER):]
                done += n
                if n:
                    sock.sendall(QUERY * n)
    out.put(done)


def cpu() -> float:
    t = os.times()
    return t.user + t.system


async def run(way: str, sessions: int, seconds: float) -> tuple[float, float]:
    loop = asyncio.get_running_loop()
    offload = Offload(threads=min(2, os.cpu_count() or 1))
    offload.start(loop)
    client_ends, engine_ends, gateway = [], [], []
    inspect = stop_set({COM_QUERY}) if way != "relayed" else None
    mysql = (stop_set({COM_CHANGE_USER}), False, False)

    class Session:
        def __init__(self) -> None:
            gw_c, c = socket.socketpair()
            gw_e, e = socket.socketpair()
            client_ends.append(c)
            engine_ends.append(e)
            gateway.extend((gw_c, gw_e))
            self.gw_c, self.gw_e = gw_c, gw_e
            self.handle: int | None = None

        def hand_over(self) -> None:
            self.gw_c.setblocking(False)
            self.gw_e.setblocking(False)
            self.handle = offload._relay.add(self.gw_c.fileno(), self.gw_e.fileno(), mysql=mysql, inspect=inspect)
            offload._done[self.handle] = self.done
            offload._inspect[self.handle] = self.inspect

        def inspect(self, command: bytes) -> None:
            offload.verdict(self.handle, way == "inspected")  # type: ignore[arg-type]

        def done(self, reason: str, left) -> None:  # handed back: Python forwards the query, then hands over again
            if left is None:
                return
            self.gw_c.setblocking(True)
            self.gw_e.setblocking(True)
            self.gw_c.sendall(left.engine)
            self.gw_e.sendall(left.client)
            self.hand_over()

    all_sessions = [Session() for _ in range(sessions)]
    for s in all_sessions:
        s.hand_over()
    queue: multiprocessing.Queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=peers, args=(client_ends, engine_ends, seconds, queue))
    before = cpu()
    proc.start()
    while proc.is_alive():
        await asyncio.sleep(0.05)
    used = cpu() - before
    trips = queue.get()
    offload.stop()
    for sock in client_ends + engine_ends + gateway:
        sock.close()
    return trips / seconds, used / max(trips, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ways = ["relayed", "inspected", "handed back"]
    results: dict[str, list[tuple[float, float]]] = {w: [] for w in ways}
    for round_ in range(args.rounds):
        for way in ways if round_ % 2 == 0 else ways[::-1]:
            results[way].append(asyncio.run(run(way, args.sessions, args.seconds)))
    print(f"{args.sessions} sessions, {args.seconds:.0f} s per run, {args.rounds} mirrored rounds, {os.cpu_count()} CPUs")
    base = sum(r for r, _ in results["relayed"]) / args.rounds
    for way in ways:
        rate = sum(r for r, _ in results[way]) / args.rounds
        cost = sum(c for _, c in results[way]) / args.rounds
        print(f"  {way:12} {rate:9.0f} round trips/s ({rate / base:.2f}x relayed)  gateway CPU {cost * 1e6:6.1f} us/trip"
              f"  runs {' '.join(f'{r:.0f}' for r, _ in results[way])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
