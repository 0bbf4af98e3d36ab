"""Subprocess helpers shared by the engines: tools run to completion, logs, shutdown.

Every child is started with ``asyncio.create_subprocess_exec`` in a session of its own (so its
whole process group can be killed), with a small fixed environment, and with stdout/stderr
appended to a log file under the cluster's ``log/`` directory. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
from collections.abc import Sequence
from pathlib import Path

from dbkeep.errors import EngineError

log = logging.getLogger("dbkeep.engines")

_TAIL_BYTES = 64 * 1024

# Lines that tell why an engine stopped, and generic lines that only say *that* it stopped.
ERROR_LINE = re.compile(r"\[ERROR\]|\bFATAL:|\bPANIC:|\bERROR:|^initdb: error|invalid value for parameter"
                        r"|unrecognized configuration parameter", re.IGNORECASE)
GENERIC_LINE = re.compile(
    r"\[ERROR\] Aborting|Aborting$|configuration file .* contains errors|database system is shut down"
    r"|Installation of system tables failed|the MariaDB discuss|Examine the logs|mariadb.org|shell>"
    r"|submitting a bug report", re.IGNORECASE)


def engine_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    if extra:
        env.update(extra)
    return env


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_log_lines(path: Path, offset: int = 0) -> list[str]:
    """Lines written to ``path`` after ``offset`` (at most the last 64 KiB of them)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            end = f.tell()
            start = max(offset, end - _TAIL_BYTES) if offset <= end else max(0, end - _TAIL_BYTES)
            f.seek(start)
            data = f.read(end - start)
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    if start > offset and lines:
        lines = lines[1:]   # first line is probably cut
    return [ln.rstrip() for ln in lines if ln.strip()]


def pick_log_line(lines: Sequence[str], *, first_error: bool = False) -> str | None:
    """The most telling line. For an engine that failed to start (``first_error``) that is the
    first specific error of the attempt (the cause; later errors cascade from it); for one that
    died while running, the last specific error among its final lines; else its last line."""
    candidates = lines if first_error else lines[-20:]
    ordered = candidates if first_error else list(reversed(candidates))
    for line in ordered:
        if ERROR_LINE.search(line) and not GENERIC_LINE.search(line):
            return line.strip()
    for line in reversed(lines):
        if not GENERIC_LINE.search(line):
            return line.strip()
    return lines[-1].strip() if lines else None


def open_log(path: Path, owner=None) -> int:
    """An append-only fd on ``path``, the file created 0600 and owned by the engine user."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    if owner is not None:
        with contextlib.suppress(OSError):
            owner.chown(path)
    return fd


async def spawn(argv: Sequence[str], *, log_path: Path, cwd: Path | None = None,
                env: dict[str, str] | None = None, owner=None,
                stdin: int | None = asyncio.subprocess.DEVNULL) -> asyncio.subprocess.Process:
    fd = open_log(log_path, owner)
    try:
        return await asyncio.create_subprocess_exec(
            *argv, stdin=stdin, stdout=fd, stderr=fd, cwd=str(cwd) if cwd else None,
            env=env if env is not None else engine_env(), start_new_session=True, close_fds=True)
    except OSError as exc:
        raise EngineError(f"cannot run {argv[0]}: {exc.strerror}") from None
    finally:
        os.close(fd)


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid`` (our children lead their own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def terminate(proc: asyncio.subprocess.Process, *, stop_signal: int = signal.SIGTERM,
                    grace: float = 30.0) -> None:
    """Shutdown signal, up to ``grace`` seconds, then SIGKILL to the whole process group."""
    try:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(stop_signal)
            try:
                async with asyncio.timeout(grace):
                    await proc.wait()
            except TimeoutError:
                log.warning("pid %s ignored %s for %.0fs: SIGKILL", proc.pid, signal.Signals(stop_signal).name, grace)
        signal_group(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            async with asyncio.timeout(10):
                await proc.wait()
    except asyncio.CancelledError:
        signal_group(proc.pid, signal.SIGKILL)
        raise


async def run_tool(argv: Sequence[str], *, log_path: Path, timeout: float, what: str,
                   cwd: Path | None = None, owner=None, input_bytes: bytes | None = None) -> None:
    """Run a tool to completion (bounded); EngineError with its most telling log line on failure."""
    offset = log_size(log_path)
    proc = await spawn(argv, log_path=log_path, cwd=cwd, owner=owner,
                       stdin=asyncio.subprocess.PIPE if input_bytes is not None else asyncio.subprocess.DEVNULL)
    try:
        async with asyncio.timeout(timeout):
            if input_bytes is not None:
                await proc.communicate(input_bytes)
            else:
                await proc.wait()
    except TimeoutError:
        await terminate(proc, grace=2)
        line = pick_log_line(read_log_lines(log_path, offset))
        raise EngineError(f"{what} did not finish within {timeout:.0f}s", log_line=line) from None
    except BaseException:
        await asyncio.shield(terminate(proc, grace=2))
        raise
    if proc.returncode != 0:
        line = pick_log_line(read_log_lines(log_path, offset), first_error=True)
        raise EngineError(f"{what} failed (exit status {proc.returncode}): {line or 'no output'}", log_line=line)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


async def kill_stale(pidfile: Path, marker: str, *, stop_signal: int, grace: float, what: str) -> None:
    """If ``pidfile`` names a live process whose command line contains ``marker`` (our data or
    config path) — an engine left behind by a previous dbkeep — stop it before starting anew."""
    try:
        pid = int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if pid <= 1 or not pid_alive(pid) or not any(marker in a for a in cmdline(pid)):
        return
    log.warning("%s: stopping engine left running by a previous dbkeep (pid %s)", what, pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, stop_signal)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    while pid_alive(pid) and loop.time() < deadline and any(marker in a for a in cmdline(pid)):
        await asyncio.sleep(0.1)
    if pid_alive(pid) and any(marker in a for a in cmdline(pid)):
        signal_group(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        for _ in range(50):
            if not pid_alive(pid) or not cmdline(pid):
                break
            await asyncio.sleep(0.1)
