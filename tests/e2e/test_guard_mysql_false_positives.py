"""The MariaDB statement guard does no collateral damage (issue 12, item 9).

Through ``dbkeep up``'s gateway as the master (an inspected session): ordinary statements,
``SHOW GRANTS``, managing application accounts, routines that do not touch dbkeep's accounts,
statements that merely mention rdsadmin in a string, an identifier of another kind or a
comment, a real Alembic migration (SQLAlchemy over PyMySQL) and a ``mariadb-dump`` of an
application database restored with the ``mariadb`` client all pass, with no refusal in the
audit log.
"""

from __future__ import annotations

import subprocess
import textwrap

import pymysql
import pytest
from pymysql.constants import CLIENT

from clusters import create_cluster, mysql, unique
from gateway_checks import assert_no_exception_escaped_a_session, audit_events, audit_mark
from mysql_sessions import run

PASSWORD = "Ordinary-Pass-1"


@pytest.fixture(scope="module", autouse=True)
def no_exception_escaped_a_session(dbkeep):
    yield
    assert_no_exception_escaped_a_session(dbkeep, "mysql")


@pytest.fixture(scope="module")
def fp(dbkeep):
    return create_cluster(dbkeep, "aurora-mysql", unique("fpos"), PASSWORD)


def master(dbkeep, cluster, database="appdb", **kw):
    return mysql(dbkeep, cluster, "admin", PASSWORD, database, client_flag=CLIENT.MULTI_STATEMENTS, **kw)


def no_refusals(dbkeep, cluster, mark) -> None:
    events = audit_events(dbkeep, "gateway.statement_refused", cluster["DBClusterIdentifier"], since=mark)
    assert events == [], events


ORDINARY = [
    "CREATE TABLE IF NOT EXISTS appdb.rdsadmin (rdsadmin INT PRIMARY KEY, note VARCHAR(80))",
    "INSERT INTO appdb.rdsadmin VALUES (1, 'DROP USER rdsadmin@localhost'), (2, 'rds_superuser_role')",
    "UPDATE appdb.rdsadmin SET note = 'ALTER USER rdsadmin@localhost ACCOUNT LOCK' WHERE rdsadmin = 1",
    "SELECT 'DROP USER rdsadmin@localhost', \"REVOKE ALL ON *.* FROM rdsadmin\" /* DROP USER rdsadmin */ -- x",
    "SELECT 1 # GRANT SUPER ON *.* TO rdsadmin",
    "SELECT User, Host FROM mysql.global_priv WHERE User IN ('rdsadmin', 'rds_superuser_role')",
    "SELECT * FROM information_schema.USER_PRIVILEGES WHERE GRANTEE LIKE '%rdsadmin%'",
    "SHOW GRANTS",
    "SHOW GRANTS FOR rdsadmin@localhost",
    "SHOW GRANTS FOR rds_superuser_role",
    "SHOW CREATE USER 'admin'@'%'",
    "SHOW PROCESSLIST",
    "SELECT CURRENT_USER(), CURRENT_ROLE(), USER()",
    "CREATE USER 'app'@'%' IDENTIFIED BY 'rdsadmin-looks-alike-1'",
    "ALTER USER 'app'@'%' IDENTIFIED BY 'App-Pass-2' PASSWORD EXPIRE NEVER",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON appdb.* TO 'app'@'%'",
    "GRANT rds_superuser_role TO 'app'@'%'",
    "SET DEFAULT ROLE rds_superuser_role FOR 'app'@'%'",
    "SET DEFAULT ROLE NONE FOR 'app'@'%'",
    "REVOKE rds_superuser_role FROM 'app'@'%'",
    "CREATE ROLE IF NOT EXISTS app_reader",
    "GRANT SELECT ON appdb.* TO app_reader",
    "GRANT app_reader TO 'app'@'%'",
    "SET PASSWORD FOR 'app'@'%' = PASSWORD('App-Pass-3')",
    "RENAME USER 'app'@'%' TO 'app2'@'%'",
    "DELETE FROM mysql.roles_mapping WHERE User = 'app2' AND Role = 'app_reader'",
    "FLUSH PRIVILEGES",
    "SHOW GRANTS FOR 'app2'@'%'",
    "REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'app2'@'%'",
    "DROP USER 'app2'@'%'",
    "DROP ROLE app_reader",
    "CREATE OR REPLACE PROCEDURE appdb.add_note(IN n VARCHAR(80)) BEGIN "
    "INSERT INTO appdb.rdsadmin (rdsadmin, note) SELECT COALESCE(MAX(rdsadmin), 0) + 1, n FROM appdb.rdsadmin; END",
    "CALL appdb.add_note('rdsadmin mentioned in an argument')",
    "CREATE OR REPLACE FUNCTION appdb.twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2",
    "SELECT appdb.twice(21)",
    "CREATE OR REPLACE VIEW appdb.notes AS SELECT note AS rdsadmin FROM appdb.rdsadmin",
    "CREATE TRIGGER appdb.rds_bi BEFORE INSERT ON appdb.rdsadmin FOR EACH ROW SET NEW.note = IFNULL(NEW.note, 'x')",
    "PREPARE q FROM 'SELECT note FROM appdb.rdsadmin WHERE rdsadmin = ?'",
    "SET @id = 1",
    "EXECUTE q USING @id",
    "DEALLOCATE PREPARE q",
    "EXECUTE IMMEDIATE 'SELECT COUNT(*) FROM appdb.rdsadmin'",
    "SET SESSION sql_mode = 'ANSI_QUOTES,STRICT_TRANS_TABLES'",
    'SELECT "rdsadmin" FROM appdb.rdsadmin LIMIT 1',
    "SET SESSION sql_mode = DEFAULT",
    "START TRANSACTION; SELECT 1; COMMIT",
    "DO SLEEP(0)",
    "ANALYZE TABLE appdb.rdsadmin",
    "DROP TRIGGER appdb.rds_bi",
    "DROP VIEW appdb.notes",
    "DROP FUNCTION appdb.twice",
    "DROP PROCEDURE appdb.add_note",
    "DROP TABLE appdb.rdsadmin",
]


def test_ordinary_statements_pass(dbkeep, fp):
    mark = audit_mark(dbkeep)
    with master(dbkeep, fp) as conn:
        for sql in ORDINARY:
            try:
                run(conn, sql)
            except pymysql.err.MySQLError as exc:
                raise AssertionError(f"{sql}: {exc}") from None
    no_refusals(dbkeep, fp, mark)


def test_an_alembic_migration_runs_for_real(dbkeep, fp, tmp_path):
    from alembic import command
    from alembic.config import Config

    with master(dbkeep, fp) as conn:
        run(conn, "CREATE DATABASE IF NOT EXISTS shop")
    scripts = tmp_path / "migrations"
    (scripts / "versions").mkdir(parents=True)
    (scripts / "env.py").write_text(textwrap.dedent("""
        from alembic import context
        from sqlalchemy import create_engine

        engine = create_engine(context.config.get_main_option("sqlalchemy.url"),
                               connect_args=context.config.attributes["connect_args"])
        with engine.connect() as connection:
            context.configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    """))
    (scripts / "script.py.mako").write_text("")
    (scripts / "versions" / "0001_first.py").write_text(textwrap.dedent("""
        import sqlalchemy as sa
        from alembic import op

        revision, down_revision = "0001", None

        def upgrade():
            op.create_table("customers", sa.Column("id", sa.Integer, primary_key=True),
                            sa.Column("name", sa.String(80), nullable=False),
                            sa.Column("created", sa.DateTime, server_default=sa.func.now()))
            op.create_index("ix_customers_name", "customers", ["name"])
            op.create_table("orders", sa.Column("id", sa.Integer, primary_key=True),
                            sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id", ondelete="CASCADE")),
                            sa.Column("total", sa.Numeric(10, 2)))
            op.bulk_insert(sa.table("customers", sa.column("id"), sa.column("name")),
                           [{"id": 1, "name": "rdsadmin"}, {"id": 2, "name": "ada"}])

        def downgrade():
            op.drop_table("orders")
            op.drop_table("customers")
    """))
    (scripts / "versions" / "0002_second.py").write_text(textwrap.dedent("""
        import sqlalchemy as sa
        from alembic import op

        revision, down_revision = "0002", "0001"

        def upgrade():
            op.add_column("customers", sa.Column("email", sa.String(120)))
            op.alter_column("orders", "total", existing_type=sa.Numeric(10, 2), type_=sa.Numeric(12, 2))
            op.execute("UPDATE customers SET email = CONCAT(name, '@example.com')")

        def downgrade():
            op.drop_column("customers", "email")
    """))
    config = Config()
    config.set_main_option("script_location", str(scripts))
    config.set_main_option("sqlalchemy.url", f"mysql+pymysql://admin:{PASSWORD}@localhost:{fp['Port']}/shop")
    config.attributes["connect_args"] = {"ssl": {"ca": str(dbkeep.state_dir / "ca.pem"), "check_hostname": True}}
    mark = audit_mark(dbkeep)
    command.upgrade(config, "head")
    command.downgrade(config, "0001")
    command.upgrade(config, "head")
    no_refusals(dbkeep, fp, mark)
    with master(dbkeep, fp, database="shop") as conn:
        assert run(conn, "SELECT version_num FROM alembic_version") == (("0002",),)
        assert run(conn, "SELECT email FROM customers ORDER BY id") == (("rdsadmin@example.com",), ("ada@example.com",))


def test_a_dump_of_an_application_database_restores_through_the_gateway(dbkeep, fp, tmp_path):
    with master(dbkeep, fp) as conn:
        run(conn, "CREATE DATABASE IF NOT EXISTS dumpsrc")
        run(conn, "CREATE DATABASE IF NOT EXISTS dumpdst")
        run(conn, "USE dumpsrc")  # unqualified names, as an application writes them: the dump restores elsewhere
        run(conn, "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(8,2))")
        run(conn, "INSERT INTO items VALUES (1, 'rdsadmin''s tea', 1.50), (2, 'semi;colon', 2.00)")
        run(conn, "CREATE VIEW cheap AS SELECT * FROM items WHERE price < 2")
        run(conn, "CREATE TRIGGER items_bi BEFORE INSERT ON items FOR EACH ROW SET NEW.name = TRIM(NEW.name)")
        run(conn, "CREATE PROCEDURE count_items() BEGIN SELECT COUNT(*) FROM items; END")
    tls = [f"--ssl-ca={dbkeep.state_dir / 'ca.pem'}", "--ssl-verify-server-cert"]
    common = ["--protocol=tcp", "-h", "localhost", "-P", str(fp["Port"]), "-u", "admin", f"-p{PASSWORD}", *tls]
    dump = tmp_path / "dump.sql"
    mark = audit_mark(dbkeep)
    with dump.open("wb") as sink:
        done = subprocess.run(["mariadb-dump", *common, "--routines", "--triggers", "--single-transaction", "dumpsrc"],
                              stdout=sink, stderr=subprocess.PIPE, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    text = dump.read_text()
    assert "CREATE TABLE `items`" in text and "DELIMITER ;;" in text and "/*!50003 CREATE*/" in text
    with dump.open("rb") as source:
        done = subprocess.run(["mariadb", *common, "dumpdst"], stdin=source, capture_output=True, timeout=120,
                              check=False)
    assert done.returncode == 0, done.stderr
    no_refusals(dbkeep, fp, mark)
    with master(dbkeep, fp, database="dumpdst") as conn:
        assert run(conn, "SELECT id, name FROM items ORDER BY id") == ((1, "rdsadmin's tea"), (2, "semi;colon"))
        assert run(conn, "SELECT COUNT(*) FROM cheap") == ((1,),)
        assert run(conn, "CALL count_items()") == ((2,),)


def test_kill_query_of_the_session_itself(dbkeep, fp):
    """KILL of CONNECTION_ID() names the session's own thread, never rdsadmin's: the engine
    answers it, not the guard."""
    mark = audit_mark(dbkeep)
    with master(dbkeep, fp) as conn:
        try:
            run(conn, "KILL QUERY CONNECTION_ID()")
        except pymysql.err.MySQLError as exc:
            assert exc.args[0] == 1317, exc  # the engine's "Query execution was interrupted"
        assert run(conn, "SELECT 1") == ((1,),)
    no_refusals(dbkeep, fp, mark)
