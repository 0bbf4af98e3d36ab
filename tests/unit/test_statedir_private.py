"""The state directory keeps everything outside the cluster directories private (statedir.py)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from dbkeep.statedir import ensure_state_dir, make_private, prepare_catalog_file, private_umask, write_aws_files


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_catalog_wal_and_shm_are_private_even_when_made_later(tmp_path):
    catalog = tmp_path / "catalog.sqlite3"
    with private_umask():
        prepare_catalog_file(catalog)
        conn = sqlite3.connect(catalog)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (a)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        assert {_mode(tmp_path / n) for n in ("catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm")} == {0o600}
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    # SQLite makes the WAL and SHM again with the database's mode, whatever the umask then
    old = os.umask(0o022)
    try:
        conn = sqlite3.connect(catalog)
        conn.execute("INSERT INTO t VALUES (2)")
        conn.commit()
        assert _mode(tmp_path / "catalog.sqlite3-wal") == 0o600 and _mode(tmp_path / "catalog.sqlite3-shm") == 0o600
        conn.close()
    finally:
        os.umask(old)


def test_private_umask_covers_later_files_and_is_restored(tmp_path):
    old = os.umask(0o022)
    try:
        with private_umask():
            (tmp_path / "later.log").write_text("x")
            (tmp_path / "dir").mkdir()
        assert _mode(tmp_path / "later.log") == 0o600 and _mode(tmp_path / "dir") == 0o700
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(old)


def test_aws_config_is_private(tmp_path):
    write_aws_files(tmp_path, "AKIDEXAMPLE", "secret", "us-east-1", "http://127.0.0.1:1")
    assert _mode(tmp_path / "config") == 0o600 and _mode(tmp_path / "credentials") == 0o600


def test_existing_state_dir_is_narrowed_but_clusters_keep_their_own_rules(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    files = {n: state / n for n in ("catalog.sqlite3", "catalog.sqlite3-wal", "catalog.sqlite3-shm", "config",
                                    "audit.log", "ca.pem")}
    for f in files.values():
        f.write_text("x")
        os.chmod(f, 0o644)
    pki = state / "pki" / "cluster-X"
    pki.mkdir(parents=True)
    os.chmod(state / "pki", 0o755)
    (pki / "cert.pem").write_text("x")
    os.chmod(pki / "cert.pem", 0o644)
    clusters = state / "clusters"
    clusters.mkdir()
    os.chmod(clusters, 0o751)
    own = clusters / "cluster-X" / "plugins"
    own.mkdir(parents=True)
    os.chmod(own, 0o755)
    os.chmod(own.parent, 0o710)   # what an ACL entry u:<engine user>:x shows as (the mask)
    (clusters / "stray.txt").write_text("x")
    os.chmod(clusters / "stray.txt", 0o644)
    (state / "link").symlink_to("/etc/hostname")

    ensure_state_dir(state)

    assert _mode(state) == 0o711 and _mode(clusters) == 0o711   # traverse kept: the engines' way in
    assert all(_mode(f) == 0o600 for f in files.values())
    assert _mode(state / "pki") == 0o700 and _mode(pki) == 0o700 and _mode(pki / "cert.pem") == 0o600
    assert _mode(clusters / "stray.txt") == 0o600
    assert _mode(own) == 0o755 and _mode(own.parent) == 0o710   # a cluster's own directory: untouched
    assert make_private(state) == []                             # idempotent
