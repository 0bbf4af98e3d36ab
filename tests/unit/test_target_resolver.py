"""The gateway's view of a cluster (``TargetResolver``) on a real SQLite catalog: lookups are
served from the cache until the catalog is written, and a write is seen by the next lookup."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import event

from dbkeep.catalog.models import Cluster, IngressRule, SecurityGroup
from dbkeep.catalog.rds import RdsStore
from dbkeep.catalog.secrets import SecretBox
from dbkeep.catalog.store import Catalog
from dbkeep.gateway.target import TargetResolver


@pytest.fixture
def store(tmp_path: Path) -> RdsStore:
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}", SecretBox.load_or_create(tmp_path / "catalog.key"))
    store = RdsStore(catalog)
    store.add_security_group(SecurityGroup("sg-1", "default", "vpc-1", "default group"))
    store.add_cluster(Cluster(
        identifier="c1", resource_id="cluster-ABC", engine="aurora-mysql", engine_version="8.0.mysql_aurora.3.05.2",
        status="available", port=40001, master_username="admin", database_name=None, parameter_group="default",
        security_group_ids=("sg-1",), iam_auth=False, deletion_protection=False, applied_parameters={},
        status_message=None, created=dt.datetime.now(dt.UTC)))
    return store


def _resolver(store: RdsStore, ttl: float = 60.0) -> TargetResolver:
    return TargetResolver(store, lambda _rid: None, lambda _c: {"require_secure_transport": "OFF"},
                          lambda rid, engine: f"/run/{rid}/{engine}.sock", "localhost", cache_ttl=ttl)


def _count_statements(store: RdsStore) -> list[str]:
    seen: list[str] = []
    event.listen(store.catalog.engine, "before_cursor_execute", lambda _c, _cur, sql, *_: seen.append(sql))
    return seen


def test_repeated_lookups_do_not_touch_the_catalog(store: RdsStore) -> None:
    resolver = _resolver(store)
    first = resolver.resolve("c1")
    assert first is not None and first.port == 40001 and first.socket_path == "/run/cluster-ABC/mysql.sock"
    seen = _count_statements(store)
    for _ in range(50):
        assert resolver.resolve("c1") is first
    assert seen == []  # the resolver's own read transactions must not invalidate its cache


def test_a_catalog_write_is_seen_by_the_next_lookup(store: RdsStore) -> None:
    resolver = _resolver(store)
    assert resolver.resolve("c1").rules == ()  # type: ignore[union-attr]
    store.add_rules([IngressRule("r1", "sg-1", "tcp", 40001, 40001, "127.0.0.1/32")])
    target = resolver.resolve("c1")
    assert target is not None and [r.cidr for r in target.rules] == ["127.0.0.1/32"]
    store.update_cluster("c1", status="stopped")
    assert resolver.resolve("c1").status == "stopped"  # type: ignore[union-attr]
    store.delete_cluster("c1")
    assert resolver.resolve("c1") is None


def test_a_read_only_transaction_keeps_the_cache(store: RdsStore) -> None:
    resolver = _resolver(store)
    first = resolver.resolve("c1")
    store.list_clusters()  # another reader (the API) commits a read transaction
    store.get_cluster("c1")
    assert resolver.resolve("c1") is first


def test_entries_expire_after_the_ttl(store: RdsStore) -> None:
    resolver = _resolver(store, ttl=0.0)
    first = resolver.resolve("c1")
    assert resolver.resolve("c1") is not first  # TTL 0: every lookup reads the catalog
