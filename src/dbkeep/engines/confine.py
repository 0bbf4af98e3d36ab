"""Landlock confinement of engine processes: a launcher that restricts itself, then execs.

Theory of operation (Linux ``Documentation/userspace-api/landlock.rst``, ``linux/landlock.h``).
Landlock lets a process give up file system and network rights for itself and everything it
execs, irrevocably, whatever its uid or capabilities. dbkeep puts this module in front of every
engine command::

    python -I -S .../confine.py --rw DIR … --ro DIR … --rx DIR … --dev FILE … -- setpriv … mariadbd …

It creates a ruleset that *handles* every file system right the kernel knows (so whatever no
rule grants is denied), TCP bind and connect (ABI 4; no rule grants them: engines have no TCP
at all), and the abstract-unix-socket and signal scopes (ABI 6: no connecting to other
programs' abstract sockets, no signals to processes outside the sandbox); adds one rule per
path; sets ``no_new_privs``; restricts itself; and execs the command (``setpriv`` then switches
to the cluster's OS user). The pid stays the same, so the supervisor's pid is the engine's.

- ``--rw DIR``: read, write, create, remove, rename and truncate beneath DIR (no exec).
- ``--ro DIR``: read files and list directories beneath DIR.
- ``--rx DIR``: as ``--ro``, and execute files beneath it (system directories).
- ``--dev FILE``: read and write one file (``/dev/null``); ``--ro`` works on single files too.

Paths that do not exist are skipped. Any failure is fatal (exit 126): dbkeep probed the kernel
before choosing to confine, so an error here must not become an unconfined engine.

What Landlock (ABI 7) does not cover, where file permissions and the per-cluster OS users still
stand alone: metadata calls (stat, chmod, chown, utimes, xattrs), connecting to unix sockets
by path, System V IPC, and files opened before the ruleset (the engine's log descriptor).

This file runs as a script under ``python -I -S`` (stdlib only, no site-packages, nothing from
the current directory): it is the first thing in the engine's process and starts in tens of
milliseconds. dbkeep imports it too, for :func:`probe` and :func:`command`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
from dataclasses import dataclass

# syscalls (the same number on every architecture) and flags from linux/landlock.h
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH, _PR_SET_NO_NEW_PRIVS = 1, 38
_RESTRICT_SELF_LOG_NEW_EXEC_ON = 1 << 1          # ABI 7: the kernel audits the engine's denials

EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15      # ABI 2, 3, 5
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1               # ABI 4
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1     # ABI 6

_FS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV   # all a rule on a file may hold
_RO = READ_FILE | READ_DIR
_RX = _RO | EXECUTE
_RW = (READ_FILE | READ_DIR | WRITE_FILE | TRUNCATE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG
       | MAKE_SOCK | MAKE_FIFO | MAKE_SYM | REFER)
_DEV = READ_FILE | WRITE_FILE | IOCTL_DEV

# Below ABI 2 every rename or link into another directory is refused (MariaDB's RENAME TABLE
# between databases moves files between directories): treated as unavailable.
MIN_ABI = 2
# Set (to anything) to act as if the kernel had no Landlock: tests of the unconfined path.
FORCE_OFF_ENV = "DBKEEP_FAKE_NO_LANDLOCK"
_RULE_FLAGS = ("--rw", "--ro", "--rx", "--dev")
# catalog meta key where `dbkeep up` records Support.describe() for `dbkeep status`
META_KEY = "engine_confinement"

# What every engine process (server and tools) may reach besides its cluster's own directories:
# programs and libraries (read and execute), /etc, /proc and the device facts in /sys (read),
# and the harmless devices. Not /tmp, not /dev/shm (PostgreSQL's dynamic shared memory is
# ``mmap`` files in its data directory), not /home, /root, /var or the state directory.
# /etc is read-only as a whole: a rule holds an inode, and /etc/passwd, /etc/group,
# ld.so.cache or resolv.conf are *replaced* when they change (dbkeep adds a user per cluster),
# so rules on those files would stop matching while engines run; its secrets (shadow, ssl
# private keys) stay behind their file permissions.
SYSTEM_RULES: tuple[tuple[str, str], ...] = (
    *(("--rx", d) for d in ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")),
    ("--ro", "/etc"),
    # /proc; the CPU and block device facts (InnoDB asks the log device's physical block size)
    ("--ro", "/proc"), ("--ro", "/sys/devices"), ("--ro", "/sys/dev"), ("--ro", "/sys/block"),
    ("--dev", "/dev/null"), ("--dev", "/dev/zero"), ("--ro", "/dev/urandom"), ("--ro", "/dev/random"),
)


class ConfineError(Exception):
    """Landlock could not be applied."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _syscall(libc: ctypes.CDLL, number: int, *args) -> int:
    rc = libc.syscall(ctypes.c_long(number), *args)
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return rc


@dataclass(frozen=True)
class Support:
    """What the kernel offers: ``abi`` 0 when Landlock cannot be used (``reason`` says why)."""

    abi: int
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.abi >= MIN_ABI

    def describe(self) -> str:
        if self.available:
            return f"confined with Landlock (ABI {self.abi})"
        return f"NOT confined: {self.reason}"


def probe(*, kernel_only: bool = False) -> Support:
    """Ask the kernel for its Landlock ABI version (``DBKEEP_FAKE_NO_LANDLOCK`` pretends none,
    unless ``kernel_only``)."""
    if os.environ.get(FORCE_OFF_ENV) and not kernel_only:
        return Support(0, f"Landlock disabled by {FORCE_OFF_ENV}")
    if not sys.platform.startswith("linux"):
        return Support(0, "Landlock needs Linux")
    try:
        abi = _syscall(_libc(), _SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except OSError as exc:
        why = {errno.ENOSYS: "the kernel has no Landlock (ENOSYS)",
               errno.EOPNOTSUPP: "Landlock is disabled in this kernel (EOPNOTSUPP; see the lsm= boot option)"}
        return Support(0, why.get(exc.errno, f"Landlock probe failed: {exc.strerror}"))
    if abi < MIN_ABI:
        return Support(0, f"the kernel's Landlock ABI {abi} is too old (dbkeep needs {MIN_ABI})")
    return Support(abi)


def _fs_rights(abi: int) -> int:
    return _FS_BY_ABI[max(k for k in _FS_BY_ABI if k <= abi)]


def restrict(rules: list[tuple[str, str]], abi: int) -> None:
    """Restrict this process (and whatever it execs) to ``rules``: (flag, path) pairs."""
    libc = _libc()
    handled = _fs_rights(abi)
    size = 8
    attr = _RulesetAttr(handled_access_fs=handled)
    if abi >= 4:
        attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP
        size = 16
    if abi >= 6:
        attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 24
    try:
        ruleset = _syscall(libc, _SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    except OSError as exc:
        raise ConfineError(f"landlock_create_ruleset: {exc.strerror}") from None
    try:
        wanted = {"--rw": _RW, "--ro": _RO, "--rx": _RX, "--dev": _DEV}
        for flag, path in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise ConfineError(f"cannot open {path}: {exc.strerror}") from None
            try:
                access = wanted[flag] & handled
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    access &= _FILE_RIGHTS
                rule = _PathBeneathAttr(allowed_access=access, parent_fd=fd)
                _syscall(libc, _SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                         ctypes.byref(rule), ctypes.c_uint32(0))
            except OSError as exc:
                raise ConfineError(f"landlock_add_rule {flag} {path}: {exc.strerror}") from None
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise ConfineError(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")
        flags = _RESTRICT_SELF_LOG_NEW_EXEC_ON if abi >= 7 else 0
        try:
            _syscall(libc, _SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(flags))
        except OSError as exc:
            raise ConfineError(f"landlock_restrict_self: {exc.strerror}") from None
    finally:
        os.close(ruleset)


def command(rules: list[tuple[str, str]], python: str | None = None) -> list[str]:
    """The argv prefix that runs a command under ``rules`` (put it before ``setpriv``)."""
    argv = [python or sys.executable, "-I", "-S", os.path.abspath(__file__)]
    for flag, path in rules:
        if flag not in _RULE_FLAGS:
            raise ValueError(f"unknown rule {flag}")
        argv += [flag, str(path)]
    return [*argv, "--"]


def parse(argv: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    rules: list[tuple[str, str]] = []
    i = 0
    while i < len(argv) and argv[i] != "--":
        if argv[i] not in _RULE_FLAGS or i + 1 >= len(argv) or not os.path.isabs(argv[i + 1]):
            raise ConfineError(f"usage: confine.py [{'|'.join(_RULE_FLAGS)} ABSOLUTE_PATH]... -- COMMAND...")
        rules.append((argv[i], argv[i + 1]))
        i += 2
    command_argv = argv[i + 1:]
    if not command_argv:
        raise ConfineError("no command to run after --")
    return rules, command_argv


def main(argv: list[str]) -> int:
    try:
        rules, command_argv = parse(argv)
        support = probe()
        if not support.available:
            raise ConfineError(support.reason)
        restrict(rules, support.abi)
        os.execvp(command_argv[0], command_argv)
    except (ConfineError, OSError) as exc:
        print(f"dbkeep confine: {exc}", file=sys.stderr, flush=True)
        return 126
    return 126  # pragma: no cover - execvp does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
