"""The MariaDB guard's fast path (guard/mysql_grants.plain): every text it lets through without
lexing gets exactly the verdict the full judgement gives -- pass, facts unchanged -- and the
texts the rules do read never take it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from dbkeep.guard.mysql_classify import UNKNOWN_DB
from dbkeep.guard.mysql_grants import SessionFacts, _judge_packet, judge, plain
from dbkeep.guard.mysql_lexer import SqlMode

FACTS = SessionFacts(database="appdb")
MODES = [None, SqlMode(), SqlMode(True, False), SqlMode(False, True), SqlMode(True, True)]


def _full(text: str, facts: SessionFacts):
    return _judge_packet(text, facts)


@pytest.mark.parametrize("text", [
    "SELECT c FROM sbtest1 WHERE id=5012",
    "select c from t where id in (select id from t2) order by c limit 10",
    "INSERT INTO t (a, b) VALUES (1, 'x y'), (2, 'z')",
    "UPDATE t SET k=k+1 WHERE id=4",
    "DELETE FROM t WHERE id BETWEEN 1 AND 100",
    "REPLACE INTO t VALUES (1, 'a')",
    "SELECT COUNT(*) FROM t",
])
def test_ordinary_dml_takes_the_fast_path_and_agrees(text):
    assert plain(text, FACTS)
    for mode in MODES:
        facts = replace(FACTS, sql_mode=mode)
        full = _full(text, facts)
        assert full.refusal is None and not (full.hygiene_before or full.hygiene_after or full.check_routines
                                             or full.opaque or full.kill_threads or full.malformed)
        assert full.facts == facts and judge(text, facts).facts == facts


@pytest.mark.parametrize("text", [
    "DELETE FROM mysql.global_priv WHERE User='rdsadmin'",
    "UPDATE MySQL.user SET plugin='x'",
    "INSERT INTO `mysql`.db VALUES (1)",
    "SELECT 1; DROP USER rdsadmin@localhost",
    "SELECT 1 /*!50000 ; DROP USER rdsadmin */",
    "SELECT 1 -- x\n",
    "SELECT 1 # x",
    "SELECT 'it\\'s'",
    "SELECT \"a\"",
    "SELECT @x := 1",
    "SELECT `a` FROM t",
    "SET PASSWORD FOR rdsadmin@localhost = PASSWORD('x')",
    "DROP USER rdsadmin",
    "KILL 5",
    "CALL p()",
    "SELECT 'é'",
    "USE mysql",
])
def test_what_the_rules_read_never_takes_the_fast_path(text):
    assert not plain(text, FACTS)


@pytest.mark.parametrize("database", [None, UNKNOWN_DB, "mysql", "MYSQL"])
def test_the_fast_path_needs_a_known_database_other_than_mysql(database):
    assert not plain("DELETE FROM user WHERE id=1", replace(FACTS, database=database))


_WORDS = st.sampled_from(["SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "FROM", "INTO", "WHERE", "SET",
                          "VALUES", "user", "global_priv", "db", "rdsadmin", "GRANT", "DROP", "USER", "mysql",
                          "t", "id", "1", "0x41", "(", ")", ",", ".", "=", "*", "/", "-", "'a b'", "'x;y'",
                          ";", "#", "--", "/*", "*/", "/*!", "`", '"', "@", "\\", "'", "CALL", "KILL", "PREPARE",
                          "EXECUTE", "IMMEDIATE", "FLUSH", "PRIVILEGES", "ROLE", "DEFINER", "LOAD", "DATA", "\n"])


@settings(max_examples=3000, deadline=None)
@given(st.lists(_WORDS, min_size=1, max_size=14), st.sampled_from(MODES))
@example(["REPLACE", "DEFINER", "1"], MODES[0])  # DEFINER names an account: judged in full (found by this test)
def test_the_fast_path_agrees_with_the_full_judgement(words, mode):
    text = " ".join(words)
    facts = replace(FACTS, sql_mode=mode)
    if not plain(text, facts):
        return
    full = _full(text, facts)
    assert full.refusal is None, text
    assert not (full.hygiene_before or full.hygiene_after or full.check_routines or full.opaque
                or full.kill_threads), text
    assert full.facts == facts, text
