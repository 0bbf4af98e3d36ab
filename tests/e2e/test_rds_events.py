"""RDS events (DescribeEvents) through boto3: what happened to a cluster, its instance and its
parameter group, with RDS's messages and categories, filtered by source, time and category."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from botocore.exceptions import ClientError
from clusters import create_cluster, unique, wait_cluster

PASSWORD = "Events-Pass-1"


def events(rds, **kw) -> list[dict]:
    return rds.describe_events(**kw)["Events"]


def messages(found: list[dict]) -> list[str]:
    return [e["Message"] for e in found]


def wait_for(rds, message: str, **kw) -> list[dict]:
    deadline = time.monotonic() + 60
    while True:
        found = events(rds, **kw)
        if message in messages(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def test_cluster_life_is_in_describe_events(dbkeep):
    rds = dbkeep.client("rds")
    ident, group = unique("ev"), unique("evpg")
    before = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=5)
    rds.create_db_cluster_parameter_group(DBClusterParameterGroupName=group, DBParameterGroupFamily="aurora-mysql8.0",
                                          Description="events")
    cluster = create_cluster(dbkeep, "aurora-mysql", ident, PASSWORD, DBClusterParameterGroupName=group)
    mine = dict(SourceType="db-cluster", SourceIdentifier=ident, StartTime=before)
    created = events(rds, **mine)
    assert messages(created) == ["DB cluster created"]
    assert created[0]["EventCategories"] == ["creation"] and created[0]["SourceArn"] == cluster["DBClusterArn"]
    assert created[0]["Date"] >= before
    [inst] = events(rds, SourceType="db-instance", SourceIdentifier=f"{ident}-1", StartTime=before)
    assert inst["Message"] == "DB instance created" and inst["SourceArn"].endswith(f":db:{ident}-1")

    # a master password reset, the lockout fix, is an event of its own
    after_create = dt.datetime.now(dt.timezone.utc)
    rds.modify_db_cluster(DBClusterIdentifier=ident, MasterUserPassword="Events-Pass-2", ApplyImmediately=True)
    wait_cluster(dbkeep, ident)
    found = wait_for(rds, "Reset master credentials.", SourceType="db-cluster", SourceIdentifier=ident, StartTime=after_create)
    assert messages(found) == ["Reset master credentials."]
    assert found[0]["EventCategories"] == ["configuration change"]

    # a parameter change and the reboot that applies it
    rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=group, Parameters=[
        {"ParameterName": "tls_version", "ParameterValue": "TLSv1.2", "ApplyMethod": "pending-reboot"}])
    [changed] = events(rds, SourceType="db-parameter-group", SourceIdentifier=group, StartTime=after_create)
    assert changed["Message"] == "Updated parameter tls_version to TLSv1.2 with apply method pending-reboot"
    rds.reboot_db_instance(DBInstanceIdentifier=f"{ident}-1")
    wait_cluster(dbkeep, ident)
    found = wait_for(rds, "DB instance restarted", SourceType="db-instance", SourceIdentifier=f"{ident}-1",
                     StartTime=after_create)
    assert messages(found) == ["DB instance restarted"] and found[0]["EventCategories"] == ["availability"]
    applied = wait_for(rds, f"Finished applying the parameter group {group} (pending-reboot changes)",
                       SourceType="db-cluster", SourceIdentifier=ident, StartTime=after_create)
    assert f"Finished applying the parameter group {group} (pending-reboot changes)" in messages(applied)

    # filters: category, time window, everything at once
    assert messages(events(rds, SourceType="db-cluster", SourceIdentifier=ident, StartTime=before,
                           EventCategories=["creation"])) == ["DB cluster created"]
    assert events(rds, SourceType="db-cluster", SourceIdentifier=ident, StartTime=before,
                  EndTime=before + dt.timedelta(seconds=1)) == []
    everything = events(rds, Duration=60)
    assert {"DB cluster created", "Reset master credentials.", "DB instance restarted"} <= set(messages(everything))
    dates = [e["Date"] for e in everything]
    assert dates == sorted(dates)  # oldest first, as RDS lists them
    assert events(rds, SourceType="db-snapshot") == []

    rds.delete_db_instance(DBInstanceIdentifier=f"{ident}-1", SkipFinalSnapshot=True)
    rds.delete_db_cluster(DBClusterIdentifier=ident, SkipFinalSnapshot=True)
    found = wait_for(rds, "DB cluster deleted", SourceType="db-cluster", SourceIdentifier=ident, StartTime=before)
    assert messages(found)[-1] == "DB cluster deleted" and found[-1]["EventCategories"] == ["deletion"]


@pytest.mark.parametrize("kwargs, code", [
    ({"SourceIdentifier": "x"}, "InvalidParameterCombination"),
    ({"SourceType": "db-cluster", "EventCategories": ["nonsense"]}, "InvalidParameterValue"),
    ({"Duration": 99999}, "InvalidParameterValue"),
    ({"MaxRecords": 5}, "InvalidParameterValue"),
])
def test_bad_describe_events_requests(dbkeep, kwargs, code):
    with pytest.raises(ClientError) as exc:
        dbkeep.client("rds").describe_events(**kwargs)
    assert exc.value.response["Error"]["Code"] == code


def test_describe_events_needs_its_permission(dbkeep):
    iam = dbkeep.client("iam")
    name = unique("evuser")
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    with pytest.raises(ClientError) as exc:
        dbkeep.client("rds", key["AccessKeyId"], key["SecretAccessKey"]).describe_events()
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    assert "rds:DescribeEvents" in exc.value.response["Error"]["Message"]


def test_an_engine_that_crashed_and_was_restarted_is_an_event(dbkeep):
    import os
    import signal

    from dbkeep.engines.layout import ClusterLayout

    rds = dbkeep.client("rds")
    ident = unique("evcrash")
    cluster = create_cluster(dbkeep, "aurora-postgresql", ident, PASSWORD)
    since = dt.datetime.now(dt.timezone.utc)
    pid_file = ClusterLayout(dbkeep.state_dir, cluster["DbClusterResourceId"]).data / "postmaster.pid"
    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
    found = wait_for(rds, "DB instance restarted", SourceType="db-instance", SourceIdentifier=f"{ident}-1", StartTime=since)
    assert messages(found) == ["DB instance restarted"]
    [crash] = events(rds, SourceType="db-cluster", SourceIdentifier=ident, StartTime=since)
    assert crash["Message"].startswith("The database engine stopped unexpectedly and was restarted")
    assert crash["EventCategories"] == ["failure"]
    wait_cluster(dbkeep, ident)
