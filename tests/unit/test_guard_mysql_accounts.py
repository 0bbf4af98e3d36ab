"""rdsadmin and rds_superuser_role untouchable, grant-table rows, KILL and unreadable statements
(``guard/mysql_accounts.py`` through ``mysql_grants.judge``; pure, fast)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbkeep.guard.mysql_accounts import named_accounts
from dbkeep.guard.mysql_grants import SessionFacts, judge, mask_literals
from dbkeep.guard.mysql_lexer import SqlMode, lex

APP = SessionFacts(database="appdb")
UNKNOWN_MODE = SessionFacts(database="appdb", sql_mode=None)
SYSTEM_USER = "Access denied; you need (at least one of) the SYSTEM_USER privilege(s) for this operation"


def refusal(sql, facts=APP):
    return judge(sql, facts).refusal


REFUSED = [
    "DROP USER rdsadmin@localhost", "DROP USER 'rdsadmin'@'LOCALHOST'", "drop user `rdsadmin`@`localhost`",
    "DROP USER rdsadmin", "DROP USER RDSADMIN", "DROP USER 'rdsadmin '@'localhost'", "DROP USER rdsadmin @ localhost",
    "DROP USER IF EXISTS bob, rdsadmin@localhost", "/*!DROP USER rdsadmin@localhost*/",
    "/*!50000 DROP */ USER /* x */ rdsadmin@localhost", "/*M!100000 DROP USER*/ rdsadmin", "SELECT 1; DROP USER rdsadmin",
    "RENAME USER rdsadmin@localhost TO x", "RENAME USER bob TO rdsadmin", "RENAME USER a TO b, rdsadmin TO c",
    "ALTER USER rdsadmin@localhost ACCOUNT LOCK", "ALTER USER IF EXISTS rdsadmin@localhost PASSWORD EXPIRE",
    "ALTER USER bob IDENTIFIED BY 'x', rdsadmin@localhost ACCOUNT LOCK",
    "SET PASSWORD FOR rdsadmin@localhost = PASSWORD('x')", "SET PASSWORD FOR 'rdsadmin'@'localhost' = 'hash'",
    "GRANT SELECT ON *.* TO rdsadmin@localhost", "GRANT SELECT ON a.* TO bob IDENTIFIED BY 'p', rdsadmin",
    "GRANT r TO rdsadmin", "GRANT PROXY ON rdsadmin@localhost TO bob", "REVOKE ALL PRIVILEGES, GRANT OPTION FROM rdsadmin",
    "REVOKE rds_superuser_role FROM rdsadmin@localhost", "REVOKE ADMIN OPTION FOR rds_superuser_role FROM rdsadmin",
    "CREATE OR REPLACE USER rdsadmin@localhost", "CREATE USER 'rdsadmin'@'%'", "CREATE USER a WITH MAX_QUERIES_PER_HOUR 1, rdsadmin",
    "SET DEFAULT ROLE NONE FOR rdsadmin@localhost", "CREATE ROLE r WITH ADMIN rdsadmin@localhost",
    "CREATE DEFINER = rdsadmin@localhost PROCEDURE p() SELECT 1", "CREATE DEFINER=`rdsadmin`@`localhost` VIEW v AS SELECT 1",
    "DROP ROLE rds_superuser_role", "DROP ROLE IF EXISTS `RDS_SUPERUSER_ROLE`", "CREATE OR REPLACE ROLE rds_superuser_role",
    "GRANT SUPER ON *.* TO rds_superuser_role", "REVOKE SELECT ON *.* FROM rds_superuser_role", "GRANT x TO rds_superuser_role",
    "RENAME USER rds_superuser_role TO x", "EXECUTE IMMEDIATE 'DROP USER rdsadmin@localhost'",
    "PREPARE s FROM 'ALTER USER rdsadmin@localhost ACCOUNT LOCK'", "CREATE PROCEDURE p() BEGIN DROP USER rdsadmin; END",
    "CREATE EVENT e ON SCHEDULE EVERY 1 SECOND DO ALTER USER rdsadmin@localhost ACCOUNT LOCK",
    "CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW SET PASSWORD FOR rdsadmin@localhost = PASSWORD('x')",
    "BEGIN NOT ATOMIC DROP USER rdsadmin@localhost; END", "KILL USER rdsadmin", "KILL USER 'rdsadmin'@'localhost'",
    "DROP USER _latin1'rdsadmin'",  # not an account spelling the guard reads
]


@pytest.mark.parametrize("sql", REFUSED)
def test_protected_accounts_are_untouchable(sql):
    refused = refusal(sql)
    assert refused is not None and refused.errno == 1227 and refused.message == SYSTEM_USER, sql
    assert refused.rule


PASSES = [
    "SELECT 'DROP USER rdsadmin@localhost'", "SELECT 1 -- DROP USER rdsadmin", "SELECT 1 /* DROP USER rdsadmin */",
    "CREATE TABLE rdsadmin (rdsadmin INT)", "SELECT * FROM mysql.global_priv WHERE User = 'rdsadmin'",
    "SHOW GRANTS FOR rdsadmin@localhost", "SHOW GRANTS", "ALTER USER bob IDENTIFIED BY 'rdsadmin'",
    "CREATE USER bob@'%' IDENTIFIED BY 'x'", "DROP USER bob@'%'", "RENAME USER bob TO carol",
    "GRANT rds_superuser_role TO bob", "REVOKE rds_superuser_role FROM bob", "SET DEFAULT ROLE rds_superuser_role FOR bob",
    "GRANT SELECT ON appdb.* TO 'bob'@'%' WITH GRANT OPTION", "ALTER USER CURRENT_USER() IDENTIFIED BY 'x'",
    "SET PASSWORD = PASSWORD('x')", "SET ROLE rds_superuser_role", "KILL 12", "KILL QUERY 7", "KILL USER bob",
    "/*M!999999\\- enable the sandbox mode */", "DELETE FROM mysql.db WHERE User = 'bob' AND Db = 'x'",
    "DELETE FROM mysql.global_priv WHERE User IN ('a', 'b')", "UPDATE mysql.db SET Select_priv = 'Y' WHERE User = 'bob'",
    "INSERT INTO mysql.db VALUES ('%', 'x', 'bob', 'Y')", "CREATE ROLE r WITH ADMIN bob",
]


@pytest.mark.parametrize("sql", PASSES)
def test_what_merely_mentions_them_passes(sql):
    assert refusal(sql) is None, sql


@pytest.mark.parametrize("sql", [
    "DELETE FROM mysql.global_priv WHERE User = 'rdsadmin'", "DELETE FROM mysql.global_priv",
    "DELETE FROM mysql.db WHERE Db = 'x'", "DELETE FROM mysql.db WHERE User = 'b' OR 1",
    "DELETE FROM mysql.db WHERE User = 'b' XOR 1", "DELETE FROM mysql.db WHERE x BETWEEN 1 AND User = 'b'",
    "DELETE FROM mysql.global_priv WHERE User = x'72647361646d696e'", "DELETE FROM mysql.global_priv WHERE User = 'rds' 'admin'",
    "DELETE FROM mysql.global_priv WHERE User = _latin1'rdsadmin'", "UPDATE mysql.db SET User = CONCAT('rds','admin') WHERE User = 'b'",
    "UPDATE mysql.db d JOIN mysql.user u SET d.Db = 'x' WHERE d.User = 'b'",
    "UPDATE mysql.roles_mapping SET Admin_option = 'N' WHERE User = 'rdsadmin'",
    "INSERT INTO mysql.roles_mapping VALUES ('localhost', 'rdsadmin', 'x', 'N')", "INSERT INTO mysql.db SELECT * FROM mysql.db",
    "INSERT INTO mysql.db VALUES ('%', 'x', 'b', 'Y') ON DUPLICATE KEY UPDATE User = 'rdsadmin'",
    "INSERT INTO mysql.roles_mapping VALUES ('', 'rds_superuser_role', 'x', 'N')",
    "DELETE FROM mysql.roles_mapping WHERE Role = 'rds_superuser_role'", "LOAD DATA INFILE '/x' INTO TABLE mysql.db",
])
def test_grant_table_writes_must_show_their_rows_are_another_accounts(sql):
    refused = refusal(sql)
    assert refused is not None and refused.errno == 1227, sql


def test_kill_of_a_literal_thread_is_looked_up_and_kill_of_an_expression_refused():
    assert judge("KILL 5", APP).kill_threads == [5]
    assert judge("KILL HARD CONNECTION 6; SELECT 1", APP).kill_threads == [6]
    assert judge("/*!KILL*/ QUERY ID 7", APP).kill_threads == [7]
    assert refusal("KILL @t").errno == 1227
    assert refusal("KILL (SELECT 1)").errno == 1227
    # the session's own thread: no owner to check (never rdsadmin's through the gateway)
    for own in ("KILL QUERY CONNECTION_ID()", "kill connection_id ( )", "KILL SOFT QUERY CONNECTION_ID()"):
        verdict = judge(own, APP)
        assert verdict.refusal is None and verdict.kill_threads == [], own
    assert refusal("KILL QUERY CONNECTION_ID() + 1").errno == 1227
    assert refusal("KILL appdb.CONNECTION_ID()").errno == 1227  # a stored function of that name


def test_unreadable_and_unknown_statements_are_refused():
    assert refusal("SELECT 'abc").errno == 1064
    assert refusal("FROBNICATE everything").errno == 1227
    # with the sql_mode unknown, one malformed reading is the engine's own syntax error
    assert refusal("INSERT INTO t VALUES ('it\\'s', 1)", UNKNOWN_MODE) is None
    assert refusal("SELECT 'a\\'; DROP USER rdsadmin; -- '", UNKNOWN_MODE).errno == 1227


def test_opaque_statements_ask_for_the_last_line():
    for sql in ("CALL p()", "EXECUTE IMMEDIATE @s", "EXECUTE IMMEDIATE CONCAT('a', 'b')"):
        assert judge(sql, APP).opaque, sql
    assert not judge("SELECT 1", APP).opaque


def test_refusals_are_audited_without_passwords():
    assert "Stolen" not in mask_literals("ALTER USER rdsadmin@localhost IDENTIFIED BY 'Stolen-1'")


# --- properties ---------------------------------------------------------------------------------

_name = st.sampled_from(["rdsadmin", "RDSADMIN", "RdsAdmin", "rdsadmin ", "rds_superuser_role"])
_gap = st.sampled_from([" ", "  ", "\n", "\t", " /* c */ ", "/**/", " -- c\n ", " #c\n "])


@st.composite
def _spelling(draw):
    name = draw(_name)
    quote = draw(st.sampled_from(["", "'", "`", '"']))
    if quote == "" and name.endswith(" "):
        name = name.strip()
    spelled = f"{quote}{name}{quote}"
    if draw(st.booleans()):
        hq = draw(st.sampled_from(["", "'", "`", '"']))
        spelled += f"@{hq}{draw(st.sampled_from(['localhost', 'LOCALHOST']))}{hq}"
    return spelled


_TEMPLATES = ["DROP USER{g}{a}", "RENAME USER{g}{a}{g}TO{g}x", "ALTER USER{g}{a}{g}ACCOUNT LOCK",
              "SET PASSWORD FOR{g}{a} = 'x'", "REVOKE ALL PRIVILEGES, GRANT OPTION FROM{g}{a}",
              "GRANT SELECT ON *.* TO{g}{a}", "SET DEFAULT ROLE NONE FOR{g}{a}", "CREATE OR REPLACE USER{g}{a}"]


@settings(max_examples=300, deadline=None)
@given(template=st.sampled_from(_TEMPLATES), spelled=_spelling(), gap=_gap, wrap=st.booleans(),
       ansi=st.booleans())
def test_every_spelling_of_a_protected_account_is_refused(template, spelled, gap, wrap, ansi):
    sql = template.format(g=gap, a=spelled)
    if wrap:
        sql = f"/*!{sql}*/"
    facts = SessionFacts(database="appdb", sql_mode=SqlMode(ansi_quotes=ansi))
    refused = judge(sql, facts).refusal
    assert refused is not None and refused.errno == 1227, sql


@settings(max_examples=300, deadline=None)
@given(spelled=_spelling(), where=st.sampled_from(["SELECT '{a}'", "SELECT 1 /* DROP USER {a} */",
                                                   "SELECT 1 -- DROP USER {a}\n", "SELECT `{a}` FROM t",
                                                   "CREATE TABLE t{a} (i INT)"]))
def test_mentions_in_strings_comments_and_other_identifiers_pass(spelled, where):
    sql = where.format(a=spelled.replace("'", "").replace("`", "").replace('"', "").replace(" ", "").replace("@", "_"))
    assert judge(sql, APP).refusal is None, sql


def test_named_accounts_reads_each_account_position():
    assert named_accounts(lex("RENAME USER a@h TO b, c TO d"))[0] == ["a", "b", "c", "d"]
    assert named_accounts(lex("GRANT r1, r2 TO u1, u2 WITH ADMIN OPTION")) == (["u1", "u2"], ["r1", "r2"])
    assert named_accounts(lex("SET PASSWORD FOR 'x'@'%' = PASSWORD('p')"))[0] == ["x"]
    assert named_accounts(lex("ALTER USER CURRENT_USER() IDENTIFIED BY 'p'"))[0] == [""]
