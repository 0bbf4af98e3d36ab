"""The grant tables themselves renamed, emptied or dropped (issue 12, item 4; "No lockouts").

The guard refuses this to the master, so the damage is done here on the engine's private socket
as rdsadmin (bypassing the guard), as a bug or an operator could. Then the engine is restarted
(the start repairs what it finds) or the master password is reset (the reset repairs first): the
cluster always comes back, rdsadmin logs in, and the master logs in with its default privileges.
A renamed table is put back under its name with its rows.
"""

from __future__ import annotations

import dataclasses

import pytest

from engine_clients import SPEC_V2_MARIADB, closing_all, global_privileges, my_connect, my_rows

from dbkeep.engines import settings as engine_settings
from dbkeep.engines.driver import EngineSpec

pytestmark = pytest.mark.engines

MASTER_PASSWORD = "Grant-Tables-Pa55!"


@dataclasses.dataclass
class _Cluster:  # what engine_clients and these tests use of conftest's Cluster
    spec: EngineSpec
    password: str
    socket: str
    engines: object

    def run(self, coro, timeout: float = 120):
        return self.engines.run(coro, timeout)

    def rdsadmin(self, sql: str, params=()) -> list[tuple]:
        return self.run(self.engines.driver.run_as_rdsadmin(self.spec.cluster_id, sql, params))

    def reset(self, password: str) -> None:
        self.run(self.engines.driver.reset_master(self.spec, password), timeout=300)


@pytest.fixture(scope="module")
def gt(engines):
    spec = EngineSpec("cluster-MYSQL0GRANTTABLES00000000", "mysql", "admin", "appdb", engine_settings.defaults("mysql"))
    driver = engines.driver
    engines.run(driver.provision(spec, MASTER_PASSWORD), timeout=180)
    engines.run(driver.start(spec))
    yield _Cluster(spec, MASTER_PASSWORD, driver.socket_path(spec.cluster_id), engines)
    engines.run(driver.destroy(spec.cluster_id))


def _master_works(c, password: str) -> None:
    with closing_all(my_connect(c, password=password, database="appdb")) as (conn,):
        assert my_rows(conn, "SELECT CURRENT_USER(), CURRENT_ROLE()") == [("admin@%", "rds_superuser_role")]
        privs, _ = global_privileges(my_rows(conn, "SHOW GRANTS FOR 'admin'@'%'"))
        assert privs == SPEC_V2_MARIADB
        my_rows(conn, "CREATE TABLE IF NOT EXISTS still_here (i INT)")
    assert c.rdsadmin("SELECT CURRENT_USER()") == [("rdsadmin@localhost",)]
    tables = c.rdsadmin("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'mysql' AND TABLE_NAME IN "
                        "('global_priv', 'db', 'tables_priv', 'columns_priv', 'procs_priv', 'proxies_priv', "
                        "'roles_mapping', 'user')")
    assert tables == [(8,)]


def _restart(c) -> None:
    driver = c.engines.driver
    c.run(driver.stop(c.spec.cluster_id))
    c.run(driver.start(c.spec), timeout=300)


DAMAGE = {
    "global_priv_renamed": ["RENAME TABLE mysql.global_priv TO mysql.gp_x"],
    "global_priv_renamed_away": ["CREATE DATABASE IF NOT EXISTS elsewhere",
                                 "RENAME TABLE mysql.global_priv TO elsewhere.gp_y"],
    "global_priv_emptied": ["TRUNCATE TABLE mysql.global_priv"],
    "global_priv_dropped": ["DROP TABLE mysql.global_priv"],
    "roles_mapping_dropped": ["DROP TABLE mysql.roles_mapping"],
    "db_and_tables_priv_dropped": ["DROP TABLE mysql.db", "DROP TABLE mysql.tables_priv"],
    "every_grant_table_dropped": ["DROP TABLE mysql.global_priv, mysql.db, mysql.tables_priv, mysql.columns_priv, "
                                  "mysql.procs_priv, mysql.proxies_priv, mysql.roles_mapping"],
    "user_view_dropped": ["DROP VIEW mysql.user"],
}


@pytest.mark.parametrize("how", ["restart", "reset"])
@pytest.mark.parametrize("case", list(DAMAGE))
def test_the_cluster_comes_back_after_its_grant_tables_are_damaged(gt, case, how):
    c = gt
    for sql in DAMAGE[case]:
        c.rdsadmin(sql)
    password = MASTER_PASSWORD
    if how == "restart":
        _restart(c)
        assert c.rdsadmin("SELECT CURRENT_USER()") == [("rdsadmin@localhost",)]  # up, dbkeep's hand works
        if case in ("global_priv_emptied", "global_priv_dropped", "every_grant_table_dropped", "roles_mapping_dropped"):
            c.reset(password)  # the master's account or role grant went with the rows: the reset makes them again
    else:
        password = f"Reset-{case[:16]}-1"
        c.reset(password)
    _master_works(c, password)
    if case == "global_priv_renamed" or case == "global_priv_renamed_away":  # put back with its rows
        assert c.rdsadmin("SELECT COUNT(*) FROM mysql.global_priv WHERE User = 'mariadb.sys'") == [(1,)]
    c.reset(MASTER_PASSWORD)
    _restart(c)  # and it starts cleanly again
    _master_works(c, MASTER_PASSWORD)
    c.rdsadmin("DROP DATABASE IF EXISTS elsewhere")
