"""The PostgreSQL statement guard leaves ordinary work alone (issue 12, no collateral damage).

Through ``dbkeep up``'s gateway as the master user (an inspected session): ordinary statements,
statements that merely mention rdsadmin (strings, comments, identifiers of other kinds),
managing other roles, a real Alembic migration (upgrade and downgrade) and a pg_dump of an
application database restored with psql and with pg_restore all pass untouched, and rdsadmin
and the protected roles stay as they were.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from clusters import create_cluster, unique
from gateway_checks import assert_no_exception_escaped_a_session, audit_events, audit_mark
from pg_guard_helpers import PASSWORD, login, master, snapshot


@pytest.fixture(scope="module", autouse=True)
def no_exception_escaped_a_session(dbkeep):
    yield
    assert_no_exception_escaped_a_session(dbkeep, "postgres")


@pytest.fixture(scope="module")
def pg(dbkeep):
    return create_cluster(dbkeep, "aurora-postgresql", unique("pgfp"), PASSWORD)


@pytest.fixture(scope="module")
def baseline(dbkeep, pg):
    return snapshot(dbkeep, pg)


ORDINARY = [
    "CREATE TABLE rdsadmin_notes (id serial PRIMARY KEY, note text DEFAULT 'ALTER ROLE rdsadmin NOLOGIN')",
    "INSERT INTO rdsadmin_notes (note) VALUES ('DROP ROLE rdsadmin'), ($$GRANT x TO rdsadmin$$)",
    "SELECT note FROM rdsadmin_notes WHERE note LIKE '%rdsadmin%' -- DROP ROLE rdsadmin",
    "/* ALTER ROLE rdsadmin NOLOGIN */ SELECT count(*) FROM rdsadmin_notes",
    "CREATE SCHEMA rdsadmin_stuff",
    'CREATE TABLE rdsadmin_stuff."rdsadmin" (rdsadmin int)',
    "COMMENT ON TABLE rdsadmin_notes IS 'notes about rdsadmin'",
    "SELECT rolname FROM pg_roles WHERE rolname IN ('rdsadmin', 'rds_superuser')",
    "SELECT now(), lower('X'), length(note), coalesce(NULL, 1) FROM rdsadmin_notes",
    "SELECT pg_catalog.set_config('search_path', 'public', false)",
    "SET search_path = public",
    "SET ROLE rds_superuser",
    "RESET ROLE",
    "SHOW search_path",
    "BEGIN; UPDATE rdsadmin_notes SET note = 'x' WHERE id = 1; COMMIT",
    "CREATE ROLE app_owner LOGIN PASSWORD 'Owner-Pass-1' VALID UNTIL 'infinity'",
    "CREATE ROLE app_reader NOLOGIN",
    "ALTER ROLE app_owner CONNECTION LIMIT 10",
    "ALTER ROLE app_owner SET statement_timeout = '5s'",
    "ALTER ROLE app_owner RENAME TO app_owner2",
    "GRANT app_reader TO app_owner2",
    "GRANT rds_superuser TO app_owner2",
    "REVOKE rds_superuser FROM app_owner2",
    "GRANT SELECT ON rdsadmin_notes TO app_reader",
    "GRANT SELECT ON rdsadmin_notes TO rdsadmin",
    "ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO app_reader",
    "COMMENT ON ROLE app_reader IS 'readers (not rdsadmin)'",
    "REVOKE app_reader FROM app_owner2",
    "DROP ROLE app_owner2",
    "EXPLAIN SELECT * FROM rdsadmin_notes",
    "VACUUM rdsadmin_notes",
    "SELECT pg_terminate_backend(-1)",
]


def test_ordinary_statements_pass_untouched(dbkeep, pg, baseline):
    mark = audit_mark(dbkeep)
    with master(dbkeep, pg) as conn:
        for sql in ORDINARY:
            conn.execute(sql)
        assert conn.execute("SELECT note FROM rdsadmin_notes ORDER BY id").fetchall()[1] == ("GRANT x TO rdsadmin",)
        assert conn.execute("SELECT %s::text", ("ALTER ROLE rdsadmin NOLOGIN",), prepare=True).fetchone()[0]
    ident = pg["DBClusterIdentifier"]
    assert audit_events(dbkeep, "gateway.statement_refused", ident, since=mark) == []
    assert audit_events(dbkeep, "gateway.protected_roles_restored", ident, since=mark) == []
    assert snapshot(dbkeep, pg) == baseline


MIGRATION = '''
"""create the shop schema"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade():
    op.create_table("customer", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("name", sa.String(80), nullable=False, comment="not rdsadmin"))
    op.create_table("orders", sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
                    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customer.id", ondelete="CASCADE")),
                    sa.Column("total", sa.Numeric(10, 2), server_default="0"),
                    sa.Column("created", sa.DateTime(timezone=True), server_default=sa.func.now()))
    op.create_index("ix_orders_customer", "orders", ["customer_id"])
    op.add_column("customer", sa.Column("email", sa.Text))
    op.alter_column("customer", "name", type_=sa.String(200))
    op.execute("CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 100")
    op.execute("CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.created := now(); RETURN NEW; END $$")
    op.execute("CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION touch()")
    op.bulk_insert(sa.table("customer", sa.column("name"), sa.column("email")),
                   [{"name": "rdsadmin's friend", "email": "a@example.com"}])


def downgrade():
    op.execute("DROP VIEW big_orders")
    op.drop_table("orders")
    op.execute("DROP FUNCTION touch()")
    op.drop_table("customer")
'''


def test_a_real_alembic_migration_passes(dbkeep, pg, baseline, tmp_path: Path):
    from alembic import command
    from alembic.config import Config

    with master(dbkeep, pg) as conn:
        conn.execute("CREATE DATABASE shop")
    url = (f"postgresql+psycopg://master:{PASSWORD}@localhost:{pg['Port']}/shop"
           f"?sslmode=verify-full&sslrootcert={dbkeep.state_dir / 'ca.pem'}")
    scripts = tmp_path / "migrations"
    config = Config(str(tmp_path / "alembic.ini"))
    command.init(config, str(scripts))
    config.set_main_option("script_location", str(scripts))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    (scripts / "versions" / "0001_shop.py").write_text(textwrap.dedent(MIGRATION))
    mark = audit_mark(dbkeep)
    command.upgrade(config, "head")
    with login(dbkeep, pg, "master", PASSWORD, "shop") as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0001",)
        assert conn.execute("SELECT name FROM customer").fetchone() == ("rdsadmin's friend",)
    command.downgrade(config, "base")
    command.upgrade(config, "head")
    assert audit_events(dbkeep, "gateway.statement_refused", pg["DBClusterIdentifier"], since=mark) == []
    assert snapshot(dbkeep, pg) == baseline


def _run(args: list[str], pg, dbkeep, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PGPASSWORD": PASSWORD, "PGSSLMODE": "verify-full",
           "PGSSLROOTCERT": str(dbkeep.state_dir / "ca.pem"), "PGHOST": "localhost", "PGPORT": str(pg["Port"]),
           "PGUSER": "master"}
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, **kw)
    assert done.returncode == 0, done.stderr
    assert "ERROR" not in done.stderr, done.stderr
    return done


def test_pg_dump_restores_through_the_gateway(dbkeep, pg, baseline, tmp_path: Path):
    with master(dbkeep, pg) as conn:
        conn.execute("CREATE DATABASE shopdump")
    with login(dbkeep, pg, "master", PASSWORD, "shopdump") as conn:
        conn.execute("CREATE TABLE item (id serial PRIMARY KEY, name text NOT NULL, price numeric CHECK (price >= 0))")
        conn.execute("CREATE INDEX item_name ON item (lower(name))")
        conn.execute("INSERT INTO item (name, price) SELECT 'item ' || i, i FROM generate_series(1, 500) i")
        conn.execute("CREATE FUNCTION item_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM item $$")
        conn.execute("CREATE VIEW cheap AS SELECT * FROM item WHERE price < 10")
        conn.execute("COMMENT ON TABLE item IS 'sold by rdsadmin''s shop'")
        conn.execute("CREATE ROLE shop_reader NOLOGIN")
        conn.execute("GRANT SELECT ON item TO shop_reader")
    plain = tmp_path / "shop.sql"
    custom = tmp_path / "shop.dump"
    _run(["pg_dump", "-d", "shopdump", "-f", str(plain)], pg, dbkeep)
    _run(["pg_dump", "-d", "shopdump", "-Fc", "-f", str(custom)], pg, dbkeep)
    mark = audit_mark(dbkeep)
    with master(dbkeep, pg) as conn:
        conn.execute("CREATE DATABASE restored_plain")
        conn.execute("CREATE DATABASE restored_custom")
    _run(["psql", "-v", "ON_ERROR_STOP=1", "-d", "restored_plain", "-f", str(plain)], pg, dbkeep)
    _run(["pg_restore", "--exit-on-error", "-d", "restored_custom", str(custom)], pg, dbkeep)
    for database in ("restored_plain", "restored_custom"):
        with login(dbkeep, pg, "master", PASSWORD, database) as conn:
            assert conn.execute("SELECT item_count(), (SELECT count(*) FROM cheap)").fetchone() == (500, 9)
    ident = pg["DBClusterIdentifier"]
    assert audit_events(dbkeep, "gateway.statement_refused", ident, since=mark) == []
    assert audit_events(dbkeep, "gateway.protected_roles_restored", ident, since=mark) == []
    assert snapshot(dbkeep, pg) == baseline


def test_an_application_role_is_not_inspected(dbkeep, pg):
    with master(dbkeep, pg) as conn:
        conn.execute("CREATE ROLE shop_app LOGIN PASSWORD 'Shop-App-1'")
        conn.execute("GRANT CONNECT ON DATABASE appdb TO shop_app")
    # the engine refuses what the guard would have refused (no CREATEROLE): its own texts
    with login(dbkeep, pg, "shop_app", "Shop-App-1") as app:
        from pg_guard_helpers import error_of
        error = error_of(app, "ALTER ROLE rdsadmin NOLOGIN")
        assert error is not None and error.diag.message_primary.startswith("must be superuser")
        error = error_of(app, "SELEC 1")  # the engine's syntax error, not the gateway's
        assert error is not None and error.sqlstate == "42601"
        assert app.execute("SELECT 'ALTER ROLE rdsadmin'").fetchone() == ("ALTER ROLE rdsadmin",)
