"""The state directory: creation (0700), the single-owner lock, and the AWS CLI files in it.

``DIR/lock`` is held with ``flock`` for the life of ``dbkeep up``, so a second process on the
same directory refuses at once instead of corrupting the catalog. ``DIR/credentials`` (0600) and
``DIR/config`` are ordinary AWS shared-credentials/config files, so the CLI and SDKs need only
``AWS_SHARED_CREDENTIALS_FILE`` and ``AWS_CONFIG_FILE``.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from dbkeep.catalog.secrets import write_private_file
from dbkeep.errors import ConfigError, StateDirInUse


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
    if st.st_mode & 0o066:
        os.chmod(path, st.st_mode & ~0o066 & 0o7777)
    return path


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


def write_aws_files(state_dir: Path, access_key_id: str, secret: str, region: str, endpoint: str) -> None:
    write_private_file(
        credentials_path(state_dir),
        f"[default]\naws_access_key_id = {access_key_id}\naws_secret_access_key = {secret}\n".encode(),
    )
    config = f"[default]\nregion = {region}\nendpoint_url = {endpoint}\n\n[plugins]\ndbkeep = dbkeep.awscli_plugin\n"
    path = aws_config_path(state_dir)
    path.write_text(config)
    os.chmod(path, 0o644)


def export_lines(state_dir: Path) -> list[str]:
    return [
        f"export AWS_CONFIG_FILE={aws_config_path(state_dir)}",
        f"export AWS_SHARED_CREDENTIALS_FILE={credentials_path(state_dir)}",
    ]
