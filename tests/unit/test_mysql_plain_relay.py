"""The native relay's ordinary MariaDB statements (``_relay.mysql_plain``, relay/mysql_plain.h)
held to the statement guard's fast path (``guard.mysql_grants.plain``).

The relay passes a COM_QUERY of an inspected session unreported when mysql_plain says so (and
Python turned it on for the session: its database is known and not ``mysql``). That is safe
only if the guard's own fast path, whose verdict tests/unit/test_guard_mysql_fastpath.py holds
to the full judgement, passes the same text; so every text here checks that direction, over
the fast-path test's token alphabet and random printable bytes, and that the two agree exactly
on ASCII texts without the words after which the guard forgets cached account facts.
"""

from __future__ import annotations

import random
import string
from dataclasses import replace

import pytest

from dbkeep.guard.mysql_grants import SessionFacts, plain

relay = pytest.importorskip("dbkeep.gateway._relay")

FACTS = replace(SessionFacts(), database="appdb")
FORGETTING = ("grant", "revoke", "role", "user", "mysql", "call", "execute")


def relay_plain(text: str) -> bool:
    return relay.mysql_plain(text.encode("utf-8"))


def check(text: str) -> None:
    ours = relay_plain(text)
    guards = plain(text, FACTS)
    if ours:
        assert guards, f"the relay would pass {text!r} unreported; the guard's fast path does not"
    if text.isascii() and not any(w in text.lower() for w in FORGETTING):
        assert ours == guards, text


@pytest.mark.parametrize("text", [
    "SELECT c FROM sbtest1 WHERE id=5017", "select 1", "  INSERT INTO t (a, b) VALUES (1, 'x y')",
    "UPDATE t SET a = a + 1 WHERE id IN (1, 2)", "DELETE FROM t WHERE a <> 'b'", "REPLACE INTO t VALUES (1)",
])
def test_ordinary_statements_pass(text):
    assert relay_plain(text) and plain(text, FACTS)


@pytest.mark.parametrize("text", [
    "SELECT 1; DROP USER rdsadmin", "SELECT 1 -- x", "SELECT /* x */ 1", "SELECT 1 # x", "SELECT @v",
    "SELECT `a` FROM t", 'SELECT "a"', "SELECT '\\'", "SELECT * FROM mysql.user",
    "SELECT * FROM users", "INSERT INTO grants VALUES (1)", "CALL p()", "SELECT 'caf\u00e9'", "USE mysql",
    "SET @a = 1", "SELECT 'unterminated", "DELETE FROM t WHERE definer = 1", "SELECT1", "",
])
def test_everything_else_is_reported(text):
    assert not relay_plain(text)


TOKENS = ["SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "FROM", "INTO", "WHERE", "SET", "VALUES", "user",
          "global_priv", "db", "rdsadmin", "GRANT", "DROP", "USER", "mysql", "t", "id", "1", "0x41", "(", ")", ",",
          ".", "=", "*", "/", "-", "'a b'", "'x;y'", ";", "#", "--", "/*", "*/", "/*!", "`", '"', "@", "\\", "'",
          "CALL", "KILL", "PREPARE", "EXECUTE", "IMMEDIATE", "FLUSH", "PRIVILEGES", "ROLE", "DEFINER", "LOAD",
          "DATA", "\n", "\t", "\v", "é", "''", "<>", "!=", "users", "Role", "granted"]


def test_token_strings():
    rng = random.Random(7)
    for _ in range(40_000):
        sep = rng.choice([" ", "", "\n"])
        check(sep.join(rng.choice(TOKENS) for _ in range(rng.randint(1, 12))))


def test_random_printable_texts():
    rng = random.Random(11)
    alphabet = string.printable + "é\x00"
    for _ in range(40_000):
        head = rng.choice(["SELECT ", "INSERT ", "UPDATE ", "DELETE ", "REPLACE ", " select\t", ""])
        check(head + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))))
