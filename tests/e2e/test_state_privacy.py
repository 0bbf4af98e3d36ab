"""Nothing in the state directory is readable by an engine's OS user beyond its own cluster, and
a kernel without Landlock is reported, not fatal.

The engines run as per-cluster OS users in the group ``dbkeep``, which may traverse the state
directory down to ``clusters/``. After a real ``dbkeep up`` has made clusters on both engines,
every path in the state directory is tried as each engine's user (``setpriv`` with the same
uid, gid and supplementary group as the engine): none outside that engine's own data, run, log,
conf and plugins directories may be read or listed — the catalog and its -wal/-shm files,
config, credentials, keys, the audit log, the PKI, other clusters, and the cluster's own
``cluster.json`` and ``rdsadmin.secret``.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from clusters import create_cluster, unique, wait_cluster
from dbkeep.engines import confine
from dbkeep.engines.layout import ClusterLayout
from dbkeep.engines.osuser import _cluster_user_name
from dbkeep_process import DbkeepProcess

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="engines run as OS users of their own only under root")

# Run as the engine's user: the system's Python (dbkeep's may live under /root), stdlib only.
_PROBE = r"""
import os, sys
for path in sys.stdin.read().split("\0"):
    if not path:
        continue
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            os.listdir(path)
        else:
            with open(path, "rb") as f:
                f.read(1)
    except OSError:
        continue
    print(path)
"""


def _readable_as(user: pwd.struct_passwd, paths: list[Path]) -> list[str]:
    group = grp.getgrnam("dbkeep").gr_gid
    out = subprocess.run(
        ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", f"--groups={group}", "--",
         "/usr/bin/python3", "-I", "-S", "-c", _PROBE],
        input="\0".join(map(str, paths)), capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.split("\n")[:-1]


def _own(layout: ClusterLayout) -> list[Path]:
    # iam/: the engine's own IAM proof key and nonces (engines/iam.py), its user's by design
    return [layout.data, layout.run, layout.log, layout.conf, layout.root / "plugins", layout.root / "iam"]


def test_engine_users_read_nothing_outside_their_cluster(dbkeep):
    password = "Privacy-Pass-1"
    made = [create_cluster(dbkeep, engine, unique("privacy"), password, instance=False)
            for engine in ("aurora-mysql", "aurora-postgresql")]
    state = dbkeep.state_dir
    for name in ("catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm", "config", "credentials",
                 "catalog.key", "audit.log", "lock", "ca.pem", "ca-key.pem", "pki"):
        assert (state / name).exists(), name      # what the walk must cover
    everything = [state, *sorted(Path(p) / n for p, dirs, files in os.walk(state) for n in (*dirs, *files))]
    for cluster in made:
        layout = ClusterLayout(state, cluster["DbClusterResourceId"])
        user = pwd.getpwnam(_cluster_user_name(layout.root))
        own = _own(layout)
        outside = [p for p in everything if not any(p == d or d in p.parents for d in own)]
        readable = _readable_as(user, outside)
        assert readable == [], f"{cluster['Engine']}'s OS user {user.pw_name} reads {readable}"
        # the probe can see what it should: its own directories
        assert _readable_as(user, [layout.data, layout.conf]) == [str(layout.data), str(layout.conf)]


def test_state_files_are_private(dbkeep):
    for path in [dbkeep.state_dir / n for n in ("config", "ca.pem", "catalog.sqlite3", "catalog.sqlite3-wal",
                                               "catalog.sqlite3-shm", "pki")]:
        assert os.stat(path).st_mode & 0o077 == 0, path


# --- a kernel without Landlock ------------------------------------------------------------------

def _status(state: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "dbkeep", "status", "--state-dir", str(state)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode in (0, 3) and not out.stderr, out.stderr   # 3: not running
    return out.stdout


def test_status_says_engines_are_confined(dbkeep):
    if not confine.probe().available:
        pytest.skip("the kernel has no usable Landlock")
    assert f"engine processes are confined with Landlock (ABI {confine.probe().abi})" in _status(dbkeep.state_dir)


def test_without_landlock_dbkeep_warns_and_runs_engines():
    base = Path(tempfile.mkdtemp(prefix="dbkeep-noll-"))
    state = base / "state"
    # an existing state dir as older versions left it: catalog and config readable by all
    state.mkdir(mode=0o700)
    proc = DbkeepProcess(state, extra_env={confine.FORCE_OFF_ENV: "1"}).start()
    try:
        assert "engine processes are NOT confined to their cluster directories: Landlock disabled by " \
            f"{confine.FORCE_OFF_ENV}" in proc.logs()
        status = _status(state)
        assert f"WARNING: engine processes are NOT confined: Landlock disabled by {confine.FORCE_OFF_ENV}" in status
        events = [json.loads(line) for line in (state / "audit.log").read_text().splitlines()]
        assert any(e["event"] == "engine.confinement" and e["confined"] is False for e in events)
        ident = unique("noll")
        create_cluster(proc, "aurora-postgresql", ident, "NoLandlock-Pass-1", instance=False)
        assert wait_cluster(proc, ident)["Status"] == "available"   # its engine runs, unconfined
    finally:
        assert proc.stop() == 0, proc.logs()
    # the next start on a kernel with Landlock says so, and narrows files left readable
    for name in ("catalog.sqlite3", "config", "ca.pem"):
        os.chmod(state / name, 0o644)
    os.chmod(state / "pki", 0o755)
    if confine.probe().available:
        assert "WARNING" in _status(state)  # stopped: what the last run found
        proc = DbkeepProcess(state).start()
        try:
            assert "WARNING" not in _status(state)
            for name in ("catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm", "config", "ca.pem", "pki"):
                assert os.stat(state / name).st_mode & 0o077 == 0, name
        finally:
            assert proc.stop() == 0, proc.logs()
    shutil.rmtree(base, ignore_errors=True)
