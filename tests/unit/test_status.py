"""`dbkeep status` on a state dir: clusters with their engine state, port, IAM DB auth,
instances (class, status, pending reboot), a failed cluster's last error and what to do next."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from sqlalchemy import create_engine, insert

from dbkeep.catalog import schema
from dbkeep.status import describe

NOW = dt.datetime(2026, 12, 5, 12, tzinfo=dt.timezone.utc)


def cluster(ident: str, engine: str, status: str, port: int, *, iam_auth: bool = False, status_message: str | None = None) -> dict:
    return dict(identifier=ident, resource_id=f"cluster-{ident.upper():0<26}"[:34], engine=engine, engine_version="x",
                status=status, port=port, master_username="admin", parameter_group="default", created=NOW,
                iam_auth=iam_auth, status_message=status_message)


def state_dir(tmp_path: Path) -> Path:
    (tmp_path / "credentials").write_text("[default]\n")
    (tmp_path / "config").write_text("[default]\nendpoint_url = http://127.0.0.1:8790\n")
    engine = create_engine(f"sqlite:///{tmp_path / 'catalog.sqlite3'}")
    schema.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(schema.clusters), [
            cluster("app", "aurora-mysql", "available", 40001, iam_auth=True),
            cluster("broken", "aurora-postgresql", "failed", 40002, status_message="initdb: could not create directory"),
            cluster("lonely", "aurora-postgresql", "available", 40003),
        ])
        conn.execute(insert(schema.instances), [
            dict(identifier="app-1", resource_id="db-1", cluster_identifier="app", instance_class="db.r6g.large",
                 status="available", is_writer=True, parameter_status="pending-reboot", created=NOW),
            dict(identifier="broken-1", resource_id="db-2", cluster_identifier="broken", instance_class="db.t3.medium",
                 status="failed", is_writer=True, parameter_status="in-sync", created=NOW),
        ])
    engine.dispose()
    return tmp_path


def test_status_lists_clusters_instances_and_what_to_do(tmp_path: Path) -> None:
    text, running = describe(state_dir(tmp_path))
    assert not running
    lines = text.splitlines()
    assert lines[0].startswith("dbkeep stopped; API http://127.0.0.1:8790")
    assert f"start it with: dbkeep up --state-dir {tmp_path}" in lines[1]
    [app] = [line for line in lines if line.strip().startswith("app ")]
    assert "aurora-mysql" in app and "available" in app and "40001" in app
    assert " on " in app and "app-1 (db.r6g.large, available, pending-reboot)" in app
    [lonely] = [line for line in lines if line.strip().startswith("lonely ")]
    assert " off " in lonely and "none (no endpoint until one is created)" in lonely
    broken = lines.index(next(line for line in lines if line.strip().startswith("broken ")))
    assert lines[broken + 1].strip() == "last error: initdb: could not create directory"
    assert lines[broken + 2].strip().startswith("what to do: delete it (aws rds delete-db-cluster --db-cluster-identifier broken")


def test_status_without_state_says_how_to_start(tmp_path: Path) -> None:
    text, running = describe(tmp_path / "none")
    assert not running and "dbkeep up --state-dir" in text
