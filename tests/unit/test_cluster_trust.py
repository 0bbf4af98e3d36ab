"""The shared trust root of hosts on one catalog (catalog/trust.py), on a real (SQLite) catalog
file: the first host publishes, the others load, a missing or wrong cluster key is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dbkeep.catalog import migrations, trust
from dbkeep.catalog.store import make_engine
from dbkeep.config import CLUSTER_KEY_ENV, Config
from dbkeep.errors import ConfigError


def _key_file(path: Path, text: bytes, mode: int = 0o600) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, mode)
    os.write(fd, text)
    os.close(fd)
    os.chmod(path, mode)
    return path


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    migrations.migrate(engine)
    yield engine
    engine.dispose()


def test_cluster_key_sources(tmp_path):
    assert trust.load_cluster_key(None, {}) is None
    with pytest.raises(ConfigError, match="chmod 600"):
        trust.load_cluster_key(_key_file(tmp_path / "open.key", b"k" * 40, 0o644), {})
    with pytest.raises(ConfigError, match="at least 32"):
        trust.load_cluster_key(_key_file(tmp_path / "short.key", b"short"), {})
    with pytest.raises(ConfigError, match="No such file"):
        trust.load_cluster_key(tmp_path / "absent.key", {})
    from_env = trust.load_cluster_key(None, {CLUSTER_KEY_ENV: "e" * 40})
    from_file = trust.load_cluster_key(_key_file(tmp_path / "good.key", b"e" * 40 + b"\n"), {})
    assert from_file.open(from_env.seal(b"same key, same seal")) == b"same key, same seal"


def test_first_host_publishes_the_others_load(engine, tmp_path):
    key = trust.load_cluster_key(None, {CLUSTER_KEY_ENV: "c" * 44})
    (tmp_path / "a").mkdir(mode=0o700)
    (tmp_path / "b").mkdir(mode=0o700)
    first = trust.catalog_box(engine, tmp_path / "a", key)
    assert (tmp_path / "a" / "catalog.key").read_bytes() == first.key  # the first host's own key is the shared one
    second = trust.catalog_box(engine, tmp_path / "b", key)
    assert second.key == first.key and not (tmp_path / "b" / "catalog.key").exists()
    assert second.open(first.seal("a secret access key")) == "a secret access key"
    sealed = trust._meta(engine, trust.CATALOG_KEY)
    assert first.key.decode() not in sealed  # only ever sealed in the catalog

    ca = (b"-----CERT-----", b"-----KEY-----")
    assert trust.shared_ca(engine, key, ca) is None  # published: this host's CA is the shared one
    assert trust.shared_ca(engine, key, (b"other", b"other")) == ca
    assert trust.shared_ca(engine, key, None) == ca
    assert b"-----KEY-----".decode() not in trust._meta(engine, trust.CA_KEY)


def test_missing_or_wrong_key_is_refused(engine, tmp_path):
    key = trust.load_cluster_key(None, {CLUSTER_KEY_ENV: "c" * 44})
    (tmp_path / "a").mkdir(mode=0o700)
    (tmp_path / "b").mkdir(mode=0o700)
    trust.catalog_box(engine, tmp_path / "a", key)
    with pytest.raises(ConfigError, match="--cluster-key-file FILE or the DBKEEP_CLUSTER_KEY"):
        trust.catalog_box(engine, tmp_path / "b", None)
    wrong = trust.load_cluster_key(None, {CLUSTER_KEY_ENV: "w" * 44})
    with pytest.raises(ConfigError, match="does not open this catalog's trust root"):
        trust.catalog_box(engine, tmp_path / "b", wrong)


def test_node_name_and_zone_are_checked(tmp_path):
    assert Config(tmp_path).zone == "us-east-1a"
    assert Config(tmp_path, region="eu-west-3", availability_zone="eu-west-3c").zone == "eu-west-3c"
    with pytest.raises(ConfigError, match="not a zone of region us-east-1"):
        Config(tmp_path, availability_zone="eu-west-3a")
    with pytest.raises(ConfigError, match="not a zone of region"):
        Config(tmp_path, availability_zone="us-east-1ab")
    with pytest.raises(ConfigError, match="--node-name"):
        Config(tmp_path, node_name="bad name")
    assert not Config(tmp_path).shared_catalog
    assert Config(tmp_path, catalog_url="postgresql://u@/db").shared_catalog
