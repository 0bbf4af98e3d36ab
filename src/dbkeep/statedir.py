"""The state directory: creation (0700), the single-owner lock, and the AWS CLI files in it.

Nothing in it outside a cluster's own directory may be read by anyone but dbkeep's user: the
engines' OS users share a group that may *traverse* the state directory down to ``clusters/``,
so a file there that is readable by group or others (the catalog, its WAL and shared-memory
files, ``config``) would be readable by every engine. :func:`private_umask` makes every file
dbkeep creates 0600 and every directory 0700 from then on (SQLite gives its ``-wal``,
``-shm`` and ``-journal`` files the database file's mode, made later or not), and
:func:`make_private` narrows what an earlier version left wider, at every start.

``DIR/lock`` is held with ``flock`` for the life of ``dbkeep up``, so a second process on the
same directory refuses at once instead of corrupting the catalog. ``DIR/credentials`` (0600) and
``DIR/config`` are ordinary AWS shared-credentials/config files, so the CLI and SDKs need only
``AWS_SHARED_CREDENTIALS_FILE`` and ``AWS_CONFIG_FILE``; ``DIR/config-plugin`` is the same
profile for AWS CLI v2 before 2.13, which needs a plugin to honour ``endpoint_url``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from dbkeep.catalog.secrets import write_private_file
from dbkeep.errors import ConfigError, StateDirInUse

log = logging.getLogger("dbkeep")

PRIVATE_UMASK = 0o077
# entries beneath which each cluster's files follow the cluster's own rules (engines/layout.py)
CLUSTERS = "clusters"


def ensure_state_dir(path: Path) -> Path:
    path = path.expanduser().absolute()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create state dir {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise ConfigError(f"state dir {path} is not a directory")
    st = path.stat()
    if st.st_uid != os.geteuid():
        raise ConfigError(f"state dir {path} belongs to another user (uid {st.st_uid})")
    # Group/others may at most traverse (x): engines running as their own OS user need to reach
    # their data directories through it, and nothing here may be listed or read by others.
    try:
        make_private(path)
    except OSError as exc:
        raise ConfigError(f"cannot make the state dir {path} private: {exc.strerror}") from None
    return path


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """The process's umask is 077 inside: whatever dbkeep (or a library: SQLite) creates is
    private to its user. Engines started meanwhile inherit it; they only write in their own
    cluster's directories."""
    old = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(old)


def _narrow(path: Path, st: os.stat_result, keep: int) -> bool:
    mode = stat.S_IMODE(st.st_mode)
    if mode & ~keep == 0:
        return False
    os.chmod(path, mode & keep)
    return True


def make_private(state_dir: Path) -> list[Path]:
    """Files 0600 and directories 0700 everywhere in ``state_dir`` except inside the cluster
    directories; the state directory itself and ``clusters/`` keep their traverse (x) bits, which
    carry the engines' ACL entries. Symbolic links are left alone. Returns what was narrowed."""
    changed: list[Path] = []

    def visit(path: Path, *, traversed: bool) -> None:
        try:
            st = os.lstat(path)
        except FileNotFoundError:  # a temporary file that went away meanwhile
            return
        if stat.S_ISLNK(st.st_mode):
            return
        if stat.S_ISDIR(st.st_mode):
            if path.parent == state_dir / CLUSTERS:
                return  # a cluster's own directory (and its ACL): layout.py and the engine keep it
            if _narrow(path, st, 0o711 if traversed else 0o700):
                changed.append(path)
            for entry in os.scandir(path):
                visit(Path(entry.path), traversed=False)
        elif _narrow(path, st, 0o600):
            changed.append(path)

    st = os.lstat(state_dir)
    if _narrow(state_dir, st, 0o711):
        changed.append(state_dir)
    for entry in os.scandir(state_dir):
        visit(Path(entry.path), traversed=entry.name == CLUSTERS)
    for path in changed:
        log.warning("%s was readable or writable by others: narrowed to %o", path,
                    stat.S_IMODE(os.lstat(path).st_mode))
    return changed


def prepare_catalog_file(path: Path) -> None:
    """Create the SQLite catalog file empty and 0600 before SQLite does (SQLite would make it
    0644 less the umask; its -wal and -shm files copy the database file's mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)


class StateLock:
    def __init__(self, state_dir: Path) -> None:
        self._path = state_dir / "lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                owner = os.read(fd, 32).decode().strip() or "unknown"
            finally:
                os.close(fd)
            raise StateDirInUse(
                f"state dir {self._path.parent} is in use by another dbkeep (pid {owner}); stop it first or use another --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def credentials_path(state_dir: Path) -> Path:
    return state_dir / "credentials"


def aws_config_path(state_dir: Path) -> Path:
    return state_dir / "config"


AWSCLI_PLUGIN_DIR = "awscli-plugins"


def aws_plugin_config_path(state_dir: Path) -> Path:
    """``DIR/config`` plus the endpoint plugin, for AWS CLI v2 before 2.13."""
    return state_dir / "config-plugin"


def write_aws_files(state_dir: Path, access_key_id: str, secret: str, region: str, endpoint: str) -> None:
    write_private_file(
        credentials_path(state_dir),
        f"[default]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {secret}\n".encode(),
    )
    # No [plugins] section: AWS CLI v1 imports every plugin named there and fails on one it cannot
    # import (any CLI outside dbkeep's venv); dbkeep's own CLI gets its plugin from the venv
    # (awscli_plugin.autoload), the others need --endpoint-url for `aws rds` in us-east-1 (README).
    config = f"[default]\nregion = {region}\nendpoint_url = {endpoint}\n"
    write_private_file(aws_config_path(state_dir), config.encode())
    # The same profile with a plugin that applies endpoint_url, for AWS CLI v2 before 2.13
    # (Debian 12's awscli), which ignores it (awscli_endpoint.py; README)
    plugins = state_dir / AWSCLI_PLUGIN_DIR
    plugins.mkdir(mode=0o700, exist_ok=True)
    write_private_file(plugins / "dbkeep_endpoint.py", (Path(__file__).parent / "awscli_endpoint.py").read_bytes())
    write_private_file(aws_plugin_config_path(state_dir), (
        config + f"\n[plugins]\ncli_legacy_plugin_path = {plugins}\ndbkeep_endpoint = dbkeep_endpoint\n").encode())


def export_lines(state_dir: Path) -> list[str]:
    return [
        f"export AWS_CONFIG_FILE={aws_config_path(state_dir)}",
        f"export AWS_SHARED_CREDENTIALS_FILE={credentials_path(state_dir)}",
    ]
