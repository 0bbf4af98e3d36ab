"""What a running ``dbkeep up`` spends, read from /proc (for tests that check which thread did the work)."""

from __future__ import annotations

import os
from pathlib import Path


def thread_ticks(pid: int) -> dict[str, int]:
    """CPU time (clock ticks, user+system) of each thread of a process, by thread name."""
    ticks: dict[str, int] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        ticks[name] = ticks.get(name, 0) + int(fields[11]) + int(fields[12])
    return ticks


def relay_and_loop_ticks(pid: int, work) -> tuple[int, int]:
    """CPU ticks the native relay threads and all other threads spent while ``work()`` ran."""
    before = thread_ticks(pid)
    assert "dbkeep-relay" in before, "dbkeep up runs no native relay thread"
    # a tick is 10 ms: on a fast, quiet machine one round of work may cost the relay threads
    # only a tick or two, so the work is repeated (a few times at most) until the relay's share
    # is measurable; the loop's share is what it is, measured over the same rounds
    for _ in range(8):
        work()
        after = thread_ticks(pid)
        if after["dbkeep-relay"] - before["dbkeep-relay"] >= 5:
            break
    relay = after["dbkeep-relay"] - before["dbkeep-relay"]
    loop = sum(after.get(name, 0) - before.get(name, 0) for name in after if name != "dbkeep-relay")
    return relay, loop
