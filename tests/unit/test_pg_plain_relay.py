"""The native relay's ordinary queries (``_relay.pg_plain``, relay/pg_plain.h) held to the
statement guard's own test (``guard.pg_statements.plain``, pglast).

The relay forwards a Query of an inspected session without reporting it when pg_plain says
so. That is safe only if pglast would have called the same text plain, so every test here
checks the one direction that matters -- relay plain and pglast parses => pglast plain -- over
the grammar's every keyword in the places a keyword can call a function, a corpus of ordinary
and hostile statements, and many thousands of their mutations; plus the ordinary statements the
relay must recognise for the fast path to be worth having.
"""

from __future__ import annotations

import random

import pytest
from pglast import keywords
from pglast import parser as pg_parser

from dbkeep.guard.pg_statements import plain as guard_plain

relay = pytest.importorskip("dbkeep.gateway._relay")

ALL_KEYWORDS = sorted(keywords.RESERVED_KEYWORDS | keywords.UNRESERVED_KEYWORDS | keywords.COL_NAME_KEYWORDS
                      | keywords.TYPE_FUNC_NAME_KEYWORDS)


def relay_plain(sql: str | bytes) -> bool:
    body = sql.encode("utf-8") if isinstance(sql, str) else sql
    return relay.pg_plain(body + b"\x00")


def parses(sql: str) -> bool:
    try:
        pg_parser.parse_sql_json(sql)
    except Exception:  # noqa: BLE001
        return False
    return True


def assert_sound(sql: str) -> None:
    """The relay never calls plain what pglast reads and does not call plain."""
    if relay_plain(sql) and parses(sql):
        assert guard_plain(sql), f"the relay would pass {sql!r} unreported; the guard reads it"


ORDINARY = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
    "select 1",
    "SELECT a, b FROM t WHERE c IN (1, 2, 3) AND d = 'x' ORDER BY a LIMIT 10 OFFSET 5",
    "SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)",
    "SELECT a FROM t WHERE b = ANY ('{1,2}'::int[])",
    "SELECT DISTINCT ON (a) a, b FROM s.t AS x JOIN u ON (x.a = u.a)",
    "INSERT INTO t (a, b) VALUES (1, 'it''s'), (2, E'no escapes')",
    "INSERT INTO public.t (a) SELECT a FROM u RETURNING (a)",
    'INSERT INTO "Odd Table" ("A") VALUES (1)',
    "UPDATE pgbench_accounts SET abalance = abalance + -42 WHERE aid = 7",
    "DELETE FROM t USING u WHERE t.id = u.id AND u.flag",
    "SELECT 1.5e3, .5, 0x1F, B'0101', X'ff', N'text', 3::numeric",
    "SELECT a FROM t UNION SELECT b FROM u EXCEPT (SELECT c FROM v)",
    "SELECT a FROM t WHERE b > 2 FOR UPDATE",
    "  SELECT 1 ;; ",
]

NOT_FOR_THE_RELAY = [
    "SELECT set_config('role', 'rdsadmin', false)",
    "SELECT pg_catalog.set_config('role', 'rdsadmin', false)",
    "SELECT set(1)", "SELECT join(1)", "SELECT by(1)", "SELECT x.select(1)", "SELECT x.values(1)",
    'SELECT "f"(1)', 'SELECT "select"(1)', "SELECT f (1)", "SELECT a FROM t WHERE b = f(1)",
    "SELECT a FROM f(1)", "SELECT now()", "SELECT CAST(1 AS text)", "SELECT COALESCE(a, 1) FROM t",
    "SELECT a AT TIME ZONE 'UTC' FROM t", "SELECT 'a' SIMILAR TO 'b'", "SELECT SYSTEM_USER",
    "SELECT 'x' IS NORMALIZED", "SELECT (1, 2) OVERLAPS (3, 4)", "SELECT COLLATION FOR ('x')",
    "SELECT 1; ALTER ROLE rdsadmin PASSWORD 'x'", "SELECT 1; SELECT 2",
    "SELECT 1 -- comment", "SELECT /* c */ 1", "SELECT $$x$$", "SELECT $1", "SELECT E'\\x41'", "SELECT '\\'",
    "SELECT 'é'", "SELECT 1\x0b", "SET ROLE rdsadmin", "ALTER ROLE rdsadmin NOLOGIN", "DO $$BEGIN END$$",
    "CALL p()", "EXECUTE s", "WITH x AS (SELECT 1) SELECT * FROM x", "TABLE t", "VALUES (1)", "(SELECT 1)",
    "EXPLAIN SELECT 1", "SELECT 'unterminated", 'SELECT "unterminated', "", ";", " ",
    "INSERT INTO t SELECT f(a) FROM u", "SELECT a INTO TEMP t (b) FROM u", "SELECT U&'\\0072'",
]


@pytest.mark.parametrize("sql", ORDINARY)
def test_ordinary_queries_pass_on_the_relay(sql):
    assert relay_plain(sql)
    assert guard_plain(sql)


@pytest.mark.parametrize("sql", NOT_FOR_THE_RELAY)
def test_everything_else_is_reported(sql):
    assert not relay_plain(sql)


def test_the_body_must_be_one_nul_terminated_text():
    assert not relay.pg_plain(b"SELECT 1")  # no terminator
    assert not relay.pg_plain(b"SELECT 1\x00SELECT 2\x00")
    assert not relay.pg_plain(b"\x00")
    assert not relay.pg_plain(b"")
    with pytest.raises(TypeError):
        relay.pg_plain("SELECT 1\x00")


# Every keyword where it could name a function or be turned into one by the grammar.
KEYWORD_FORMS = [
    "SELECT {k}(1)", "SELECT {k} (1)", "SELECT {k}", "SELECT a {k} b", "SELECT a {k} b FROM t",
    "SELECT 1 FROM t WHERE a = {k}(1)", "SELECT 1 FROM t WHERE a {k} (1)", "SELECT x.{k}(1)",
    "SELECT * FROM {k}(1)", "SELECT * FROM t {k} (SELECT 1)", "INSERT INTO t {k} (1)", "SELECT a FROM t {k}",
    "UPDATE t SET a = {k}(1)", "DELETE FROM t WHERE {k}", "SELECT 1 {k} ZONE 'UTC'", "SELECT {k} FOR (1)",
    "SELECT a IS {k}", "SELECT a {k} TIME ZONE 'UTC'", "SELECT ({k})", "SELECT a::{k}",
]


@pytest.mark.parametrize("form", KEYWORD_FORMS)
def test_every_keyword_of_the_grammar(form):
    for keyword in ALL_KEYWORDS:
        for spelling in (keyword, keyword.upper()):
            assert_sound(form.format(k=spelling))


def test_the_words_allowed_before_a_parenthesis_can_never_name_a_function():
    for word in ("select", "from", "where", "and", "or", "not", "in", "values", "exists", "any", "all", "some",
                 "on", "as", "when", "then", "else", "returning", "having", "limit", "offset", "using", "union",
                 "intersect", "except", "distinct", "lateral"):
        assert word in keywords.RESERVED_KEYWORDS or word in keywords.COL_NAME_KEYWORDS, word


TOKENS = [
    "SELECT", "INSERT", "UPDATE", "DELETE", "INTO", "FROM", "WHERE", "VALUES", "SET", "AT", "TIME", "ZONE", "AND",
    "IN", "EXISTS", "(", ")", ".", ",", ";", "=", "::", "'x'", "''", "'a''b'", "E'\\''", '"q"', '"a""b"', "f", "t",
    "set_config", "now", "1", ".5", "1e5", "--", "/*", "*/", "$$", "$1", "\\", "ALTER", "ROLE", "rdsadmin", "DO",
    "U&'x'", "U&\"x\"", "B'1'", "\n", "  ", "-", "/", "*", "SIMILAR", "TO", "OVERLAPS", "COLLATION", "FOR",
    "SYSTEM_USER", "NORMALIZED", "IS", "ANY", "ALL", "AS", "x", "select", "join", "by", "lateral", "using",
]


def test_mutations_of_the_corpus():
    rng = random.Random(12)
    corpus = ORDINARY + NOT_FOR_THE_RELAY
    passed = 0
    for _ in range(30_000):
        words = rng.choice(corpus).split(" ")
        for _ in range(rng.randint(1, 4)):
            op = rng.random()
            at = rng.randrange(len(words) + 1)
            if op < 0.5:
                words.insert(at, rng.choice(TOKENS))
            elif op < 0.75 and words:
                words.pop(min(at, len(words) - 1))
            elif words:
                words[min(at, len(words) - 1)] = rng.choice(TOKENS)
        sep = rng.choice([" ", "", "\n"])
        sql = sep.join(words) if rng.random() < 0.8 else " ".join(words)
        if relay_plain(sql):
            passed += 1
        assert_sound(sql)
    assert passed > 1000  # the mutations did reach the relay's fast path


def test_random_token_strings():
    rng = random.Random(34)
    for _ in range(30_000):
        sql = rng.choice(["SELECT ", "INSERT ", "UPDATE ", "DELETE "]) + rng.choice(["", " ", "\n"]).join(
            rng.choice(TOKENS) for _ in range(rng.randint(1, 10)))
        assert_sound(sql)
