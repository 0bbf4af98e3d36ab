"""Placement and reach on a catalog shared by hosts (rds/fleet.py, catalog/hosts.py), on a real
SQLite catalog file: the zone asked for, else the live host with the fewest clusters; an unknown
zone or a zone whose host is gone is refused; a gone owner's clusters are unreachable."""

from __future__ import annotations

import datetime as dt

import pytest

from dbkeep.catalog.hosts import HostDirectory
from dbkeep.catalog.models import Cluster
from dbkeep.catalog.rds import RdsStore
from dbkeep.catalog.secrets import SecretBox
from dbkeep.catalog.store import Catalog
from dbkeep.catalog.work import WorkQueue
from dbkeep.errors import ApiError, ConfigError
from dbkeep.rds.fleet import Fleet

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture
def catalog(tmp_path):
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.sqlite3'}", SecretBox.load_or_create(tmp_path / "catalog.key"))
    yield catalog
    catalog.close()


def _cluster(ident: str, owner: str) -> Cluster:
    return Cluster(ident, "cluster-" + ident.upper(), "aurora-postgresql", "15.4", "available", 5432, "master", None,
                   "default.aurora-postgresql15", (), False, False, {}, None, NOW, (), owner)


def _fleet(catalog: Catalog, node: str, zone: str) -> Fleet:
    hosts = HostDirectory(catalog)
    hosts.register(node, hostname=f"{node}.example", api_address=f"http://{node}:8790", zone=zone, state=f"state-{node}")
    return Fleet(node, zone, f"{node}.example", hosts, WorkQueue(catalog))


def test_placement_by_zone_then_fewest_clusters(catalog):
    a = _fleet(catalog, "a", "us-east-1a")
    _fleet(catalog, "b", "us-east-1b")
    _fleet(catalog, "c", "us-east-1c")
    assert a.place(["us-east-1b"]) == "b"
    assert a.place(None) == "a"  # all empty: this host first among equals
    store = RdsStore(catalog)
    store.add_cluster(_cluster("one", "a"))
    store.add_cluster(_cluster("two", "b"))
    assert a.place(None) == "c"
    with pytest.raises(ApiError) as exc:
        a.place(["us-east-1z"])
    assert exc.value.code == "InvalidParameterValue" and "us-east-1z" in exc.value.message

    HostDirectory(catalog).leave("c")  # stopped cleanly: gone at once
    assert a.place(None) in ("a", "b")
    with pytest.raises(ApiError) as exc:
        a.place(["us-east-1c"])
    assert exc.value.code == "InsufficientDBClusterCapacityFault"


def test_reach_and_endpoints(catalog):
    a = _fleet(catalog, "a", "us-east-1a")
    _fleet(catalog, "b", "us-east-1b")
    on_b = _cluster("x", "b")
    assert a.endpoint(on_b) == ("b.example", "us-east-1b") and a.unreachable(on_b) is None
    assert not a.owns(on_b) and a.owns(_cluster("y", "a"))
    HostDirectory(catalog).leave("b")
    a._cache = None
    gone = a.unreachable(on_b)
    assert gone is not None and gone.node_name == "b" and not gone.alive
    assert a.unreachable(_cluster("y", "a")) is None  # this host's own is never "gone"


def test_a_live_node_name_belongs_to_one_state_dir(catalog):
    hosts = HostDirectory(catalog)
    hosts.register("a", hostname="h", api_address="x", zone="us-east-1a", state="first")
    with pytest.raises(ConfigError, match="in use by a live dbkeep host"):
        hosts.register("a", hostname="h", api_address="y", zone="us-east-1a", state="second")
    hosts.register("a", hostname="h", api_address="z", zone="us-east-1a", state="first")  # the same state dir, restarted
    hosts.leave("a")
    hosts.register("a", hostname="h", api_address="y", zone="us-east-1a", state="second")  # stopped: free
    assert [h.api_address for h in hosts.list()] == ["y"]
