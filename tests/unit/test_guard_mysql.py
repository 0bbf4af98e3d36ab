"""The MariaDB lexer, classifier and grant-table rules of ``dbkeep.guard`` (pure, fast)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dbkeep.guard.mysql_classify import UNKNOWN_DB, Kind, TableRef, classify
from dbkeep.guard.mysql_grants import (
    ADMIN_ONLY_MASK,
    SessionFacts,
    judge,
    mask_literals,
    privilege_names,
    routine_refusal,
    use_database,
)
from dbkeep.guard.mysql_lexer import NAME, QNAME, STRING, SqlMode, lex, split

APP = SessionFacts(database="appdb")
ADD = "JSON_SET(Priv,'$.access',CAST(JSON_VALUE(Priv,'$.access') AS UNSIGNED)|2|512|32768)"
REPRO = f"UPDATE mysql.global_priv SET Priv={ADD} WHERE User='admin'"


# --- lexer ---------------------------------------------------------------------------------------


def texts(sql: str, mode: SqlMode = SqlMode()) -> list[str]:
    return [s.text for s in split(sql, mode)]


def test_strings_comments_and_splitting():
    assert texts("select 1; select 'a;b'; select \"c;d\"") == ["select 1", "select 'a;b'", 'select "c;d"']
    assert texts("select 'it''s;' ; select 'x\\';y'") == ["select 'it''s;'", "select 'x\\';y'"]
    assert texts("select 1 -- ; drop\n; select # ;\n 2") == ["select 1", "select # ;\n 2"]
    assert texts("select 1 --; x") == ["select 1 --", "x"]  # "--" without a space is two minus signs
    assert texts("select /* ; */ 1; select `a;``b`") == ["select /* ; */ 1", "select `a;``b`"]
    assert texts(";;  ; select 1;") == ["select 1"]


def test_no_backslash_escapes_changes_where_a_string_ends():
    sql = "select 'a\\'; update t set x=1; -- '"
    assert len(texts(sql)) == 1
    assert texts(sql, SqlMode(no_backslash_escapes=True)) == ["select 'a\\'", "update t set x=1"]


def test_ansi_quotes_makes_double_quotes_identifiers():
    kinds = [t.kind for t in lex('"mysql"."global_priv"', SqlMode(ansi_quotes=True))]
    assert kinds == [QNAME, "op", QNAME]
    assert [t.kind for t in lex('"mysql"')] == [STRING]


def test_executable_comments_are_code():
    for sql in ("/*!UPDATE*/ mysql.global_priv SET a=1", "/*!50000 UPDATE mysql.global_priv */ SET a=1",
                "/*M!100000 UPDATE */ mysql.global_priv SET a=1"):
        words = [t.value for t in lex(sql) if t.kind == NAME]
        assert words[:3] == ["UPDATE", "mysql", "global_priv"], sql


def test_names_numbers_variables():
    toks = lex("1a 12 0x1F .5 1e3 x'41' @v @'q' @@global.sql_mode ? `x``y`")
    assert [(t.kind, t.value) for t in toks] == [
        (NAME, "1a"), ("number", "12"), ("number", "0x1F"), ("number", ".5"), ("number", "1e3"), (STRING, "41"),
        ("var", "@v"), ("var", "@q"), ("var", "@@global.sql_mode"), ("param", "?"), (QNAME, "x`y")]


def test_unterminated_input_is_marked_bad():
    assert lex("select 'abc")[-1].bad
    assert lex("select `abc")[-1].bad
    assert lex("select /* abc")[-1].bad


def test_compound_bodies_are_one_statement():
    body = "CREATE PROCEDURE p() BEGIN IF a THEN UPDATE t SET x=1; END IF; SELECT IF(1,2,3); END"
    assert texts(body + "; CALL p()") == [body, "CALL p()"]
    block = "BEGIN NOT ATOMIC SELECT 1; SELECT 2; END"
    assert texts(block + "; SELECT 3") == [block, "SELECT 3"]
    assert texts("BEGIN; SELECT 1") == ["BEGIN", "SELECT 1"]  # a transaction, not a block
    loop = "l: LOOP SELECT 1; LEAVE l; END LOOP l"
    assert texts(loop + "; SELECT 2") == [loop, "SELECT 2"]


def test_delimiter_is_only_a_name():
    assert texts("DELIMITER //") == ["DELIMITER //"]


# --- classifier ----------------------------------------------------------------------------------


def one(sql: str, db: str | None = "appdb"):
    [stmt] = split(sql)
    return classify(stmt, db)


def test_tables_written():
    assert one("INSERT INTO mysql.global_priv VALUES (1)").dml_writes == {TableRef("mysql", "global_priv")}
    assert one("REPLACE global_priv SELECT 1", "mysql").dml_writes == {TableRef("mysql", "global_priv")}
    assert TableRef("mysql", "global_priv") in one("UPDATE t JOIN mysql.global_priv g ON 1 SET t.a=1").dml_writes
    assert one("DELETE g FROM mysql.global_priv g").deletes >= {TableRef("mysql", "global_priv")}
    assert one("LOAD DATA INFILE 'f' INTO TABLE mysql.db").dml_writes == {TableRef("mysql", "db")}
    assert one("UPDATE user SET x=1", UNKNOWN_DB).dml_writes == {TableRef(UNKNOWN_DB, "user")}
    assert one("UPDATE user SET x=1", None).dml_writes == set()  # no database: the server refuses it
    assert one("SELECT * FROM mysql.global_priv").dml_writes == set()
    assert TableRef("mysql", "global_priv") in one("ANALYZE UPDATE mysql.global_priv SET a=1").dml_writes


def test_ddl_targets():
    assert one("RENAME TABLE mysql.global_priv TO mysql.gp_x").ddl_tables >= {TableRef("mysql", "global_priv")}
    assert TableRef("mysql", "proc") in one("ALTER TABLE appdb.a RENAME TO mysql.proc").ddl_tables
    assert one("DROP TABLE IF EXISTS mysql.db").ddl_tables == {TableRef("mysql", "db")}
    assert one("TRUNCATE mysql.global_priv").ddl_tables == {TableRef("mysql", "global_priv")}
    assert one("DROP DATABASE mysql").ddl_databases == {"mysql"}
    assert one("CREATE TABLE t2 (id INT)").ddl_tables == {TableRef("appdb", "t2")}


def test_kinds_and_opacity():
    assert one("CALL p()").kind is Kind.CALL and one("CALL p()").opaque
    assert one("EXECUTE IMMEDIATE @s").opaque
    assert one("EXECUTE IMMEDIATE 'SELECT 1'").dynamic == "SELECT 1"
    assert one("PREPARE s FROM @v").opaque
    assert one("PREPARE s FROM 'SELECT 1'").dynamic == "SELECT 1"
    assert one("EXECUTE s").execute_name == "s"
    assert one("FLUSH PRIVILEGES").flush_privileges and one("FLUSH LOCAL PRIVILEGES, HOSTS").flush_privileges
    assert not one("FLUSH TABLES").flush_privileges
    assert one("CREATE ROLE r").kind is Kind.CREATE_ROLE
    assert one("CREATE USER u").kind is Kind.ACCOUNT and not one("CREATE USER u").refresh
    assert one("GRANT SELECT ON *.* TO u").refresh and one("ALTER USER u ACCOUNT LOCK").refresh
    assert one("SET ROLE NONE").kind is Kind.SET_ROLE
    assert one("USE mysql").use_db == "mysql"
    assert one("SET sql_mode = 'ANSI_QUOTES'").sql_mode == "ANSI_QUOTES"
    assert one("SET @@session.sql_mode = CONCAT(@@sql_mode, ',ANSI')").sql_mode == ""
    assert one("SET GLOBAL sql_mode = 'ANSI'").sql_mode is None
    assert one("FROBNICATE everything").opaque
    assert one("SELECT 'abc").opaque


# --- verdicts --------------------------------------------------------------------------------------


def refused(sql: str, facts: SessionFacts = APP):
    verdict = judge(sql, facts)
    return verdict.refusal


@pytest.mark.parametrize("sql", [
    REPRO,
    "/*!UPDATE*/ mysql.global_priv SET Priv='{}'",
    "/*!50000 UPDATE mysql.global_priv */ SET Priv='{}'",
    "USE mysql; UPDATE global_priv SET Priv='{}'",
    "UPDATE `mysql`.`global_priv` SET Priv='{}'",
    "update MYSQL.GLOBAL_PRIV set priv='{}'",
    "UPDATE mysql . /* c */ global_priv SET Priv='{}'",
    "INSERT INTO mysql.global_priv VALUES ('%','x','{\"access\":32768}')",
    "REPLACE mysql.global_priv SELECT * FROM t",
    "INSERT INTO mysql.user SELECT * FROM t",
    "LOAD XML INFILE 'x' INTO TABLE mysql.global_priv",
    "PREPARE s FROM 'UPDATE mysql.global_priv SET Priv=1'",
    "EXECUTE IMMEDIATE 'UPDATE mysql.global_priv SET Priv=1'",
    "SET sql_mode='ANSI_QUOTES'; UPDATE \"mysql\".global_priv SET Priv=1",
    "INSERT INTO mysql.proc SELECT * FROM t",
    "DELETE FROM mysql.event",
    "RENAME TABLE mysql.global_priv TO mysql.gp_x",
    "DROP TABLE mysql.roles_mapping",
    "TRUNCATE TABLE mysql.global_priv",
    "CREATE OR REPLACE TABLE mysql.global_priv (a INT)",
    "DROP DATABASE mysql",
    "CREATE PROCEDURE p() BEGIN UPDATE mysql.global_priv SET Priv=1; FLUSH PRIVILEGES; END",
    "CREATE PROCEDURE p() BEGIN DECLARE CONTINUE HANDLER FOR SQLEXCEPTION UPDATE mysql.global_priv SET a=1; END",
    "CREATE PROCEDURE p() BEGIN EXECUTE IMMEDIATE @s; END",
    "CREATE PROCEDURE p() BEGIN PREPARE x FROM @s; EXECUTE x; END",
    "CREATE DEFINER=CURRENT_USER EVENT e ON SCHEDULE EVERY 1 DAY DO DELETE FROM mysql.global_priv",
    "CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW UPDATE mysql.global_priv SET Priv=1",
    "BEGIN NOT ATOMIC UPDATE mysql.global_priv SET Priv=1; END",
])
def test_refused(sql):
    refusal = refused(sql)
    assert refusal is not None and refusal.errno == 1227, sql
    assert refusal.message.startswith("Access denied; you need (at least one of) the ")


def test_the_refusal_names_the_privileges_the_literals_give():
    assert refused(REPRO).message == ("Access denied; you need (at least one of) the FILE, SUPER privilege(s) for "
                                      "this operation")
    assert "SUPER privilege(s)" in refused("UPDATE mysql.global_priv SET Priv='{}'").message
    assert privilege_names(ADMIN_ONLY_MASK)[:3] == ["SHUTDOWN", "FILE", "SUPER"]


def test_unknown_mode_judges_every_reading():
    facts = SessionFacts(database="appdb", sql_mode=None)
    assert refused('UPDATE "mysql"."global_priv" SET Priv=1', facts) is not None
    assert refused('UPDATE "mysql"."global_priv" SET Priv=1', APP) is None  # strings: a syntax error there


@pytest.mark.parametrize("sql, before", [
    ("FLUSH PRIVILEGES", True), ("GRANT SELECT ON appdb.* TO u", True), ("REVOKE ALL ON *.* FROM u", True),
    ("ALTER USER u ACCOUNT LOCK", True), ("CREATE ROLE r", False), ("CALL appdb.p()", False),
    ("EXECUTE IMMEDIATE @s", False), ("PREPARE s FROM @s", False), ("DELETE FROM mysql.global_priv WHERE User='x'", False),
    ("UPDATE mysql.db SET Select_priv='Y' WHERE User = 'app'", False), ("INSERT INTO mysql.roles_mapping VALUES ('a','b','c','N')", False),
    ("BEGIN NOT ATOMIC CALL p(); END", False),
])
def test_hygiene_triggers(sql, before):
    verdict = judge(sql, APP)
    assert verdict.allowed and verdict.hygiene_after, sql
    assert verdict.hygiene_before is before


@pytest.mark.parametrize("sql", [
    "SELECT 1", "SELECT * FROM mysql.global_priv", "SHOW GRANTS", "CREATE USER 'u'@'%' IDENTIFIED BY 'p'",
    "DROP USER u", "CREATE DATABASE d", "INSERT INTO t VALUES (1) ON DUPLICATE KEY UPDATE a=1",
    "CREATE TABLE t (id INT PRIMARY KEY, note VARCHAR(40))", "SET ROLE rds_superuser_role", "SELECT 1; SELECT 2",
    "CREATE PROCEDURE p() BEGIN DECLARE x INT; IF x THEN SELECT 1; END IF; INSERT INTO t VALUES (1); END",
    "SELECT 'UPDATE mysql.global_priv SET a=1'", "SELECT 1 -- ; UPDATE mysql.global_priv SET a=1",
    "PREPARE s FROM 'SELECT ?'", "EXECUTE s", "SET DEFAULT ROLE r FOR u", "SET PASSWORD FOR u = PASSWORD('x')",
])
def test_ordinary_statements_pass_without_hygiene(sql):
    verdict = judge(sql, APP)
    assert verdict.allowed and not verdict.hygiene_after and not verdict.hygiene_before, sql


def test_statements_after_a_trigger_in_one_packet():
    assert refused("FLUSH PRIVILEGES; SET ROLE NONE").errno == 1235
    assert refused("CALL p(); FLUSH PRIVILEGES").errno == 1235  # nothing at all after an opaque statement
    assert refused("DELETE FROM mysql.db WHERE User = 'app'; SELECT 1").errno == 1235
    verdict = judge("GRANT SELECT ON appdb.* TO u; FLUSH PRIVILEGES", APP)
    assert verdict.allowed and verdict.hygiene_before and verdict.hygiene_after


def test_prepared_statements_carry_their_verdict_to_execute():
    facts = judge("PREPARE s FROM @v", APP).facts
    assert "s" in facts.triggers
    assert judge("EXECUTE s", facts).hygiene_after
    facts = judge("DEALLOCATE PREPARE s", facts).facts
    assert not judge("EXECUTE s", facts).hygiene_after
    facts = judge("PREPARE t FROM 'FLUSH PRIVILEGES'", APP).facts
    assert judge("EXECUTE t", facts).hygiene_after


def test_the_current_database_is_tracked_conservatively():
    facts = judge("USE mysql", APP).facts
    assert facts.database == "mysql"
    assert refused("UPDATE global_priv SET Priv=1", facts) is not None
    # leaving mysql may fail (the server keeps it): unknown from then on
    left = judge("USE appdb", facts).facts
    assert left.database == UNKNOWN_DB and refused("UPDATE global_priv SET Priv=1", left) is not None
    assert use_database(APP, "other").database == "other"


def test_mask_literals_hides_every_string():
    masked = mask_literals("CREATE USER 'u'@'%' IDENTIFIED BY 'Secret-1' /* x */")
    assert "Secret-1" not in masked and masked.startswith("CREATE USER '?'@'?' IDENTIFIED BY '?'")
    assert "pw" not in mask_literals("SET PASSWORD = PASSWORD(\"pw\")")
    assert "hidden" not in mask_literals("SELECT 'unterminated hidden")


# --- properties ------------------------------------------------------------------------------------

_SQLISH = st.text(alphabet=st.sampled_from(list("abcUPDATEmysql.global_priv ;'\"`\\#-/*!M0123456789()=@\n")), max_size=200)


@settings(max_examples=400, deadline=None)
@given(_SQLISH, st.booleans(), st.booleans())
def test_lexer_and_judge_never_fail_on_any_input(text, ansi, nobs):
    mode = SqlMode(ansi, nobs)
    tokens = lex(text, mode)
    for a, b in zip(tokens, tokens[1:]):
        assert a.end <= b.start  # tokens in order, never overlapping
    split(text, mode)
    judge(text, SessionFacts(database="appdb", sql_mode=mode))
    judge(text, SessionFacts(database=UNKNOWN_DB, sql_mode=None))
    mask_literals(text)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet=st.sampled_from(list("abc ;'\"`#-*/\\\n")), max_size=20), min_size=1, max_size=5))
def test_semicolons_inside_quotes_and_comments_never_split(parts):
    """A statement made of quoted and commented pieces that hide ';' stays one statement."""
    pieces = []
    for part in parts:
        # no '*' at all: removing "*/" alone could make a new one ("*\n/", "**//")
        clean = part.replace("'", "").replace("\\", "").replace("\n", "").replace("*", "")
        pieces.append(f"'{clean}' /* {clean} */ `{clean.replace('`', '``')}`")
    sql = "SELECT " + " , ".join(pieces)
    assert len(split(sql)) == 1


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["", "/*!", "/*!50000 ", "/*M!100000 "]), st.sampled_from(["UPDATE", "update", "UpDaTe"]),
       st.sampled_from(["mysql.global_priv", "`mysql`.`global_priv`", "mysql . global_priv", "`mysql`.global_priv"]),
       st.sampled_from(["", "SELECT 1; ", "SET @a = 'x;y'; "]))
def test_every_spelling_of_the_write_is_refused(opener, verb, table, prefix):
    closer = " */" if opener else ""
    sql = f"{prefix}{opener}{verb}{closer} {table} SET Priv = '{{}}'"
    assert refused(sql) is not None, sql


# --- stored routines -------------------------------------------------------------------------------


def test_statements_that_may_run_unread_routines_ask_for_a_routine_check():
    for sql in ("CALL appdb.p()", "EXECUTE IMMEDIATE @s", "BEGIN NOT ATOMIC CALL p(); END"):
        assert judge(sql, APP).check_routines, sql
    facts = judge("PREPARE c FROM 'CALL appdb.p()'", APP).facts
    assert judge("EXECUTE c", facts).check_routines
    for sql in ("SELECT 1", "FLUSH PRIVILEGES", "GRANT SELECT ON appdb.* TO u", "CREATE PROCEDURE p() SELECT 1"):
        assert not judge(sql, APP).check_routines, sql


def test_call_parsing():
    c = one("CALL mysql.rds_kill(12)")
    assert c.call == TableRef("mysql", "rds_kill") and c.call_args == [None]
    c = one("CALL p('a', CONCAT('b'), 'c')")
    assert c.call == TableRef("appdb", "p") and c.call_args == ["a", None, "c"]


@pytest.mark.parametrize("sql", [
    "CALL sys.execute_prepared_stmt('UPDATE mysql.global_priv SET Priv = 1')",
    "CALL sys.execute_prepared_stmt(@s)",
    "CALL sys.execute_prepared_stmt('FLUSH PRIVILEGES')",
    "CALL mysql.DropGeometryColumn('', 'mysql', 'global_priv', 'Priv')",
    "CALL mysql.AddGeometryColumn('', @db, 't', 'g', 0)",
])
def test_mariadbs_own_sql_running_routines_are_judged_by_their_arguments(sql):
    assert refused(sql).errno == 1227


def test_routine_refusal():
    dangerous = "BEGIN EXECUTE IMMEDIATE @s; FLUSH PRIVILEGES; SET ROLE NONE; END"
    refusal = routine_refusal("appdb", "sneaky", "PROCEDURE", "devel@%", dangerous)
    assert refusal is not None and refusal.rule.startswith("procedure appdb.sneaky: ")
    assert routine_refusal("appdb", "w", "FUNCTION", "devel@%", "BEGIN UPDATE mysql.global_priv SET Priv=1; RETURN 1; END")
    assert routine_refusal("appdb", "ok", "PROCEDURE", "devel@%", "BEGIN SELECT 1; INSERT INTO t VALUES (1); END") is None
    assert routine_refusal("appdb", "forged", "PROCEDURE", "rdsadmin@localhost", "SELECT 1") is not None
    assert routine_refusal("mysql", "rds_kill", "PROCEDURE", "rdsadmin@localhost", "BEGIN KILL CONNECTION 1; END") is None
    # MariaDB's own (mariadb.sys) are judged at CALL by their arguments
    assert routine_refusal("sys", "execute_prepared_stmt", "PROCEDURE", "mariadb.sys@localhost", dangerous) is None
    # a body in an ANSI_QUOTES routine is read in every mode
    assert routine_refusal("appdb", "q", "PROCEDURE", "devel@%", 'UPDATE "mysql"."global_priv" SET Priv = 1')


@pytest.mark.parametrize("sql", [
    "CREATE SQL SECURITY INVOKER VIEW appdb.v AS SELECT * FROM mysql.global_priv",
    "CREATE OR REPLACE ALGORITHM=MERGE SQL SECURITY INVOKER VIEW v AS SELECT * FROM mysql.db",
    "ALTER VIEW v AS SELECT * FROM `mysql`.`roles_mapping`",
    "ALTER EVENT e DO BEGIN EXECUTE IMMEDIATE @s; END",
    # a body may not load stored privileges either: a write through a view, GRANT, SET ROLE in one CALL
    "CREATE PROCEDURE p() BEGIN UPDATE appdb.v SET x=1; GRANT SELECT ON appdb.* TO admin; SET ROLE NONE; END",
    "CREATE PROCEDURE p() ALTER USER admin ACCOUNT UNLOCK",
])
def test_views_over_grant_tables_and_bodies_that_load_privileges_are_refused(sql):
    assert refused(sql).errno == 1227, sql


# --- PREPARE … FROM @var / EXECUTE IMMEDIATE @var (read on the session first) ----------------------


@pytest.mark.parametrize("sql, name", [
    ("PREPARE s FROM @v", "v"), ("PREPARE s FROM @V;", "v"), ("prepare s from @'My Var'", "my var"),
    ('PREPARE s FROM @"x"', "x"), ("PREPARE s FROM @`a``b`", "a`b"), ("EXECUTE IMMEDIATE @Stmt", "stmt"),
    ("PREPARE s FROM @@v", None), ("PREPARE s FROM CONCAT(@v)", None), ("PREPARE s FROM @v || 'x'", None),
    ("EXECUTE IMMEDIATE @v USING 1", None), ("PREPARE s FROM 'SELECT 1'", None),
])
def test_classify_names_the_variable(sql, name):
    [stmt] = split(sql, SqlMode())
    c = classify(stmt, "appdb")
    assert c.variable == name
    assert c.opaque or c.dynamic is not None  # unread, it is what the guard cannot see into


def test_an_unread_variable_is_asked_for_and_stays_opaque_for_other_callers():
    verdict = judge("PREPARE s FROM @v", APP)
    assert verdict.allowed and verdict.read_variable == "v"
    assert verdict.hygiene_after and verdict.opaque and verdict.check_routines  # as before, if forwarded unread
    assert verdict.facts.triggers == {"s"}
    multi = judge("PREPARE s FROM @v; EXECUTE s", APP)  # first of a multi-statement: read too
    assert multi.allowed and multi.read_variable == "v"


@pytest.mark.parametrize("value", [
    "DROP USER rdsadmin@localhost", "ALTER USER 'RDSADMIN'@'localhost' ACCOUNT LOCK",
    "REVOKE ALL PRIVILEGES, GRANT OPTION FROM rds_superuser_role", "SELECT 1; DROP USER rdsadmin",
    "UPDATE mysql.global_priv SET Priv = '{}' WHERE User = 'x'", "PREPARE t FROM 'DROP USER rdsadmin'",
])
def test_a_read_value_is_judged_as_a_literal(value):
    for sql in ("PREPARE s FROM @v", "EXECUTE IMMEDIATE @V", "PREPARE s FROM @`v`; SELECT 1"):
        literal = judge(sql.replace("@`v`", "@v").replace("@V", "@v").replace("@v", "'" + value.replace("'", "''") + "'"),
                        APP)
        verdict = judge(sql, APP, {"v": value})
        assert verdict.refusal is not None and verdict.refusal == literal.refusal, (sql, value)


def test_a_harmless_read_value_passes_and_its_execute_is_judged_by_it():
    verdict = judge("PREPARE s FROM @v", APP, {"v": "SELECT 1"})
    assert verdict.allowed and not verdict.hygiene_after and not verdict.opaque and verdict.read_variable is None
    assert judge("EXECUTE s", verdict.facts).hygiene_after is False
    trigger = judge("PREPARE d FROM @v", APP, {"v": "DELETE FROM mysql.db WHERE User = 'x'"})
    assert trigger.allowed and trigger.facts.triggers == {"d"}
    assert judge("EXECUTE d", trigger.facts).hygiene_after
    null = judge("EXECUTE IMMEDIATE @v", APP, {"v": None})  # NULL: the engine refuses it
    assert null.allowed and not null.hygiene_after and not null.opaque
    assert judge("PREPARE s FROM @v; EXECUTE s", APP, {"v": "SELECT 1"}).allowed


@pytest.mark.parametrize("sql", [
    "SELECT 1; PREPARE s FROM @v", "SET @v = 'SELECT 1'; EXECUTE IMMEDIATE @v",
    "SET sql_mode = ''; PREPARE s FROM @v", "PREPARE s FROM @v; PREPARE t FROM @v",
])
def test_a_variable_after_another_statement_is_refused(sql):
    for variables in (None, {"v": "SELECT 1"}):
        verdict = judge(sql, APP, variables)
        assert verdict.refusal is not None and verdict.refusal.errno == 1227
        assert "send it as a statement of its own" in verdict.refusal.message


def test_variable_reads_under_an_unknown_sql_mode():
    facts = SessionFacts(database="appdb", sql_mode=None)
    assert judge('PREPARE s FROM @"v"', facts).read_variable == "v"
    assert not judge('PREPARE s FROM @"v"', facts, {"v": "DROP USER rdsadmin"}).allowed


def test_nested_and_body_forms_stay_what_the_guard_cannot_read():
    assert not judge("CREATE PROCEDURE p() BEGIN PREPARE s FROM @v; END", APP).allowed
    nested = judge("EXECUTE IMMEDIATE 'PREPARE s FROM @v'", APP)
    assert nested.allowed and nested.read_variable is None and nested.hygiene_after
