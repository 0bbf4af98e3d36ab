"""On-disk layout of one cluster's engine, under the state directory.

    STATE/clusters/<cluster_resource_id>/      0700, dbkeep's user (+ ACL u:<cluster's engine user>:x)
        cluster.json                           engine, bootstrap state, master role oid (0600)
        rdsadmin.secret                        MariaDB only: rdsadmin's password (0600, dbkeep's user)
        data/                                  0700, the cluster's engine user: the engine's data directory
        run/                                   0700, the cluster's engine user: unix socket, pid file, tmpdir
        log/                                   0700, the cluster's engine user: the engine's log
        conf/                                  0700, the cluster's engine user: config files written by dbkeep
        plugins/                               0755, dbkeep's user: MariaDB only, links to the plugins
                                               the engine may load (mariadb.py)

Every engine process (servers and their tools) is confined with Landlock (confine.py) to
``data/``, ``run/`` and ``log/`` read-write and ``conf/`` and ``plugins/`` read-only, besides
the system's programs and libraries: nothing else of the state directory, the cluster's own
``cluster.json`` and ``rdsadmin.secret`` included. So the engines' temporary files live in
``run/`` (MariaDB ``tmpdir`` and ``secure_file_priv``) or ``data/`` (PostgreSQL's
``pgsql_tmp`` and its dynamic shared memory, ``dynamic_shared_memory_type = mmap``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbkeep.engines.osuser import EngineUser, grant_traverse
from dbkeep.errors import EngineError

_CLUSTER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


def check_cluster_id(cluster_id: str) -> str:
    if not _CLUSTER_ID_RE.match(cluster_id):
        raise EngineError(f"invalid cluster id {cluster_id!r} for an engine directory")
    return cluster_id


def write_private(path: Path, text: str, *, owner: EngineUser | None = None, mode: int = 0o600) -> None:
    """Atomically replace ``path`` with ``text`` (mode 0600, optionally owned by the engine user)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if owner is not None:
            owner.chown(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _chown_tree(top: Path, user: EngineUser) -> None:
    for path, dirs, files in os.walk(top):
        for name in (*dirs, *files):
            user.chown(Path(path) / name)


@dataclass(frozen=True)
class ClusterLayout:
    state_dir: Path
    cluster_id: str

    @property
    def root(self) -> Path:
        return self.state_dir / "clusters" / self.cluster_id

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def meta_path(self) -> Path:
        return self.root / "cluster.json"

    @property
    def secret_path(self) -> Path:
        return self.root / "rdsadmin.secret"

    def exists(self) -> bool:
        return self.root.is_dir()

    def create(self, user: EngineUser, shared: EngineUser | None = None) -> None:
        """Make the directories (idempotent) and let the engine user traverse down to them:
        ``shared``'s group (every cluster's engine user is in it) as far as ``clusters/``,
        ``user`` alone into this cluster's directory. Directories another user owns (a cluster
        from before it had a user of its own) are handed over with everything in them."""
        clusters = self.state_dir / "clusters"
        self.ensure_root()
        for d in (self.data, self.run, self.log, self.conf):
            d.mkdir(mode=0o700, exist_ok=True)
            if os.geteuid() == 0 and os.lstat(d).st_uid != user.uid:
                _chown_tree(d, user)
            user.chown(d)
            os.chmod(d, 0o700)
        if shared is not None and shared.uid != user.uid:
            grant_traverse(clusters, shared, group_only=True)
        grant_traverse(self.root, user)

    def ensure_root(self) -> None:
        """The cluster's own directory (0700, dbkeep's user). It exists before the cluster's OS
        user does: a user whose directory is missing counts as stale (osuser.py)."""
        for d in (self.state_dir, self.state_dir / "clusters", self.root):
            if not d.exists():
                d.mkdir(mode=0o700, exist_ok=True)

    def wipe_data(self, user: EngineUser) -> None:
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir(mode=0o700)
        user.chown(self.data)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # --- cluster.json ---------------------------------------------------------------------
    def read_meta(self) -> dict[str, Any]:
        try:
            return json.loads(self.meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise EngineError(f"cannot read {self.meta_path}: {exc}") from None

    def update_meta(self, **values: Any) -> dict[str, Any]:
        meta = self.read_meta()
        meta.update(values)
        write_private(self.meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return meta

    # --- rdsadmin secret (MariaDB) -----------------------------------------------------------
    def read_secret(self) -> str:
        try:
            return self.secret_path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            raise EngineError(f"rdsadmin secret missing for cluster {self.cluster_id}") from None

    def ensure_secret(self) -> str:
        if self.secret_path.exists():
            return self.read_secret()
        secret = secrets.token_urlsafe(32)
        write_private(self.secret_path, secret + "\n")
        return secret
