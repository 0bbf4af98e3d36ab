"""The engine supervisor: one task per engine process, under a TaskGroup.

Each supervised engine runs in a loop owned by a task of the supervisor's TaskGroup:

    spawn ─► starting ──probe ok──► running ──exits──► restarting ─(backoff)─► spawn …
               │                        │
               └─exits / no answer──────┴──► failed (first start: start() raises EngineError)
                 within ready_timeout

- Readiness is "the socket accepts and a rdsadmin query succeeds" (the engine's ``probe``),
  under ``asyncio.timeout``; an engine that exits or never answers is ``failed`` with its own log
  line — no hang.
- A crashed engine (it exited while running) is restarted with exponential backoff
  (``backoff_initial`` doubling up to ``backoff_max``; reset after ``stable_after`` seconds up);
  the status carries the restart count and the engine's last log line. After
  ``max_failed_restarts`` consecutive restarts that never became ready it is ``failed``.
- Stopping is the engine's shutdown signal (SIGTERM for MariaDB, SIGINT = "fast shutdown" for
  PostgreSQL, whose SIGTERM waits for every client), ``stop_grace`` seconds, then SIGKILL to the
  process group. Leaving the supervisor (``async with``'s exit or cancelling ``run()``) stops
  every engine that way.

Use either ``async with Supervisor() as sup: …`` or ``tg.create_task(sup.run())`` followed by
``await sup.wait_started()`` inside a TaskGroup of the caller's.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dbkeep.engines.driver import EngineState, EngineStatus
from dbkeep.engines.process import ERROR_LINE, log_size, pick_log_line, read_log_lines, signal_group, spawn, terminate
from dbkeep.errors import EngineError

log = logging.getLogger("dbkeep.engines")


@dataclass(frozen=True)
class ProcessPlan:
    argv: Sequence[str]
    log_path: Path
    cwd: Path | None = None
    env: dict[str, str] | None = None
    owner: object | None = None          # EngineUser owning the log file
    stop_signal: int = signal.SIGTERM


class Supervisable(Protocol):
    """What the supervisor needs from an engine to run one cluster's process."""

    name: str

    def plan(self) -> ProcessPlan: ...

    async def before_spawn(self) -> None:
        """Clean up after a previous run (stale pid files, engines left running)."""

    async def probe(self) -> None:
        """Return when the engine answers a rdsadmin query; raise otherwise."""


@dataclass
class _Slot:
    key: str
    engine: Supervisable
    ready_timeout: float
    state: EngineState = EngineState.STARTING
    restart_count: int = 0
    last_log_line: str | None = None
    pid: int | None = None
    stopping: bool = False
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    first_ready: asyncio.Future | None = None
    task: asyncio.Task | None = None

    def status(self) -> EngineStatus:
        return EngineStatus(self.state, self.last_log_line, self.restart_count,
                            self.pid if self.state in (EngineState.RUNNING, EngineState.STARTING,
                                                       EngineState.RESTARTING) else None)


def _crash_line(proc: asyncio.subprocess.Process, lines: list[str]) -> str:
    """Why a running engine ended. Killed by a signal: its log cannot say (a recent error line
    there would be some client's), so we say how it ended and quote its last line. Exited on its
    own: its last error line, else how it ended."""
    line = pick_log_line(lines)
    rc = proc.returncode
    if rc is not None and rc < 0:
        try:
            how = f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            how = f"killed by signal {-rc}"
    else:
        if line and ERROR_LINE.search(line):
            return line
        how = f"exited with status {rc}"
    return f"engine process {proc.pid} {how}" + (f"; last log line: {line}" if line else "")


async def _first_of(*aws: Awaitable) -> int:
    """Index of the first awaitable to finish; the others are cancelled (all in a TaskGroup)."""
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(a) for a in aws]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
    return next(i for i, t in enumerate(tasks) if t in done)


class Supervisor:
    def __init__(self, *, ready_timeout: float = 60.0, stop_grace: float = 30.0,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0, stable_after: float = 60.0,
                 max_failed_restarts: int = 8, probe_interval: float = 0.1, probe_timeout: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic,
                 on_restart: Callable[[str, str | None], None] | None = None) -> None:
        self.ready_timeout = ready_timeout
        self.stop_grace = stop_grace
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stable_after = stable_after
        self.max_failed_restarts = max_failed_restarts
        self.probe_interval = probe_interval
        self.probe_timeout = probe_timeout
        self._monotonic = monotonic
        # told (key, the engine's last log line) when a crashed engine is started again
        self.on_restart = on_restart
        self._slots: dict[str, _Slot] = {}
        self._tg: asyncio.TaskGroup | None = None
        self._started = asyncio.Event()

    # --- lifecycle --------------------------------------------------------------------------
    async def __aenter__(self) -> Supervisor:
        tg = asyncio.TaskGroup()
        await tg.__aenter__()
        self._tg = tg
        self._started.set()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool | None:
        tg = self._tg
        cancelled = False
        try:
            await asyncio.shield(self.stop_all())
        except asyncio.CancelledError:   # cancelled again while stopping: no more grace
            cancelled = True
            for slot in self._slots.values():
                if slot.pid:
                    signal_group(slot.pid, signal.SIGKILL)
        finally:
            self._tg = None
            self._started.clear()
        if cancelled and exc_type is None:
            exc_type, exc, tb = asyncio.CancelledError, asyncio.CancelledError(), None
        if exc_type is not None and not issubclass(exc_type, asyncio.CancelledError):
            # The body failed: every engine is stopped; let its exception through unwrapped
            # (TaskGroup would wrap it in an ExceptionGroup).
            await tg.__aexit__(None, None, None)
            return False
        result = await tg.__aexit__(exc_type, exc, tb)
        if cancelled:
            raise asyncio.CancelledError
        return result

    async def run(self) -> None:
        """Serve until cancelled, then stop every engine (for ``tg.create_task(sup.run())``)."""
        async with self:
            await asyncio.Event().wait()

    async def wait_started(self) -> None:
        await self._started.wait()

    async def stop_all(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for key in list(self._slots):
                tg.create_task(self.stop(key))

    # --- per engine ---------------------------------------------------------------------------
    def status(self, key: str) -> EngineStatus:
        slot = self._slots.get(key)
        return slot.status() if slot else EngineStatus(EngineState.STOPPED)

    def is_active(self, key: str) -> bool:
        slot = self._slots.get(key)
        return bool(slot and slot.task and not slot.task.done())

    async def start(self, key: str, engine: Supervisable, *, ready_timeout: float | None = None) -> None:
        """Run ``engine`` under supervision; return once it is ready, or raise EngineError."""
        if self._tg is None:
            raise EngineError("the engine supervisor is not running")
        if self.is_active(key):
            slot = self._slots[key]
            if slot.first_ready is not None:
                await asyncio.shield(slot.first_ready)
            async with asyncio.timeout(ready_timeout or self.ready_timeout):   # e.g. mid-restart
                while slot.state is EngineState.RESTARTING:
                    await asyncio.sleep(self.probe_interval)
            if slot.state is not EngineState.RUNNING:
                raise EngineError(f"{slot.engine.name} is {slot.state.value}: {slot.last_log_line or ''}".rstrip(": "),
                                  log_line=slot.last_log_line)
            return
        loop = asyncio.get_running_loop()
        slot = _Slot(key=key, engine=engine, ready_timeout=ready_timeout or self.ready_timeout,
                     first_ready=loop.create_future())
        self._slots[key] = slot
        slot.task = self._tg.create_task(self._supervise(slot), name=f"engine {engine.name}")
        await asyncio.shield(slot.first_ready)

    async def stop(self, key: str) -> None:
        slot = self._slots.get(key)
        if slot is None:
            return
        slot.stopping = True
        slot.stop_event.set()
        if slot.task is not None and not slot.task.done():
            async with asyncio.timeout(self.stop_grace + 30):
                await asyncio.wait([slot.task])

    def forget(self, key: str) -> None:
        slot = self._slots.get(key)
        if slot is not None and (slot.task is None or slot.task.done()):
            del self._slots[key]

    # --- the loop -------------------------------------------------------------------------------
    async def _supervise(self, slot: _Slot) -> None:
        """Never raises (but CancelledError): one engine's trouble must not end the others'."""
        try:
            await self._supervise_loop(slot)
        except Exception as exc:
            line = getattr(exc, "log_line", None) or getattr(exc, "message", None) or type(exc).__name__
            log.exception("%s: supervision failed", slot.engine.name)
            slot.state = EngineState.FAILED
            slot.last_log_line = line
            if slot.first_ready is not None and not slot.first_ready.done():
                slot.first_ready.set_exception(EngineError(f"{slot.engine.name} could not be started: {line}",
                                                           log_line=line))

    async def _supervise_loop(self, slot: _Slot) -> None:
        engine = slot.engine
        backoff = self.backoff_initial
        failures = 0
        ever_ready = False
        proc: asyncio.subprocess.Process | None = None
        plan: ProcessPlan | None = None
        try:
            while not slot.stopping:
                plan = engine.plan()
                await engine.before_spawn()
                offset = log_size(plan.log_path)
                proc = await spawn(plan.argv, log_path=plan.log_path, cwd=plan.cwd, env=plan.env,
                                   owner=plan.owner)
                slot.pid = proc.pid
                slot.state = EngineState.RESTARTING if ever_ready or failures else EngineState.STARTING
                log.info("%s: started pid %s", engine.name, proc.pid)
                outcome = await self._wait_ready(slot, proc)
                if outcome == "ready":
                    ever_ready = True
                    failures = 0
                    slot.state = EngineState.RUNNING
                    if not slot.first_ready.done():
                        slot.first_ready.set_result(None)
                    up_since = self._monotonic()
                    which = await _first_of(proc.wait(), slot.stop_event.wait())
                    if which == 1 or slot.stopping:
                        break
                    if self._monotonic() - up_since >= self.stable_after:
                        backoff = self.backoff_initial
                    slot.last_log_line = _crash_line(proc, read_log_lines(plan.log_path, offset))
                    log.warning("%s: pid %s exited with status %s: %s", engine.name, proc.pid,
                                proc.returncode, slot.last_log_line)
                else:
                    if outcome == "stopping":
                        break
                    await terminate(proc, stop_signal=plan.stop_signal, grace=min(self.stop_grace, 5))
                    slot.last_log_line = pick_log_line(read_log_lines(plan.log_path, offset), first_error=True)
                    why = ("did not answer within %.0fs" % slot.ready_timeout if outcome == "timeout"
                           else f"exited with status {proc.returncode}")
                    if not ever_ready:
                        slot.state = EngineState.FAILED
                        log.error("%s: %s: %s", engine.name, why, slot.last_log_line)
                        if not slot.first_ready.done():
                            slot.first_ready.set_exception(EngineError(
                                f"{engine.name} {why}: {slot.last_log_line or 'no log output'}",
                                log_line=slot.last_log_line))
                        return
                    failures += 1
                    log.warning("%s: restart %s %s: %s", engine.name, failures, why, slot.last_log_line)
                    if failures > self.max_failed_restarts:
                        slot.state = EngineState.FAILED
                        log.error("%s: giving up after %s failed restarts", engine.name, failures)
                        return
                # Crashed: kill what is left of its process group (e.g. PostgreSQL backends that
                # outlived their postmaster), then back off and start again.
                signal_group(proc.pid, signal.SIGKILL)
                proc = None
                slot.state = EngineState.RESTARTING
                slot.restart_count += 1
                if self.on_restart is not None:
                    try:
                        self.on_restart(slot.key, slot.last_log_line)
                    except Exception:  # a listener must never stop the supervision
                        log.exception("%s: restart listener failed", engine.name)
                if await _first_of(asyncio.sleep(backoff), slot.stop_event.wait()) == 1:
                    break
                backoff = min(backoff * 2, self.backoff_max)
        finally:
            if proc is not None and plan is not None:
                await terminate(proc, stop_signal=plan.stop_signal, grace=self.stop_grace)
            if slot.state is not EngineState.FAILED:
                slot.state = EngineState.STOPPED
            if not slot.first_ready.done():
                slot.first_ready.set_exception(EngineError(f"{engine.name} was stopped before it was ready",
                                                           log_line=slot.last_log_line))
                slot.first_ready.exception()   # retrieved: nobody may be waiting any more

    async def _wait_ready(self, slot: _Slot, proc: asyncio.subprocess.Process) -> str:
        try:
            async with asyncio.timeout(slot.ready_timeout):
                while True:
                    if slot.stopping:
                        return "stopping"
                    if proc.returncode is not None:
                        return "exited"
                    try:
                        async with asyncio.timeout(self.probe_timeout):
                            await slot.engine.probe()
                        return "ready"
                    except TimeoutError:
                        pass
                    except Exception as exc:  # not ready yet: the socket or login is refused
                        log.debug("%s: not ready: %s", slot.engine.name, exc)
                    if await _first_of(asyncio.sleep(self.probe_interval), proc.wait(),
                                       slot.stop_event.wait()) == 2:
                        return "stopping"
        except TimeoutError:
            return "timeout"
