"""The guard's reading of account statements against MariaDB's own (issue 12, property tests).

For generated statements naming accounts of a throwaway set with varied quoting, case, host
spelling, comments, executable comments and sql_mode, the accounts the guard says a statement
names (``mysql_accounts.named_accounts``) are compared with what the engine then did: every
account the engine dropped, renamed or locked is one the guard named, and when the statement
succeeded the guard named nothing else. Run as the master on the engine's socket (the engine
is the oracle here, not the gateway), never on rdsadmin.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine_clients import closing_all, my_connect, my_rows

from dbkeep.guard.mysql_accounts import named_accounts, normal_name
from dbkeep.guard.mysql_classify import classify
from dbkeep.guard.mysql_lexer import SqlMode, split

pytestmark = pytest.mark.engines

NAMES = ("tp_alpha", "TP_Beta", "tp gamma")  # a name with a space needs quotes
HOSTS = ("localhost", "%")

comment = st.sampled_from(["", " ", "  ", "\n", " /* c */ ", " /*!*/ ", "/**/", " -- c\n", " #c\n",
                           " /*M!999999 rdsadmin */ "])
# inside an executable comment the engine allows no other /* */ comment
inner_comment = st.sampled_from(["", " ", "\n", " -- c\n", " #c\n"])


@st.composite
def account(draw, ansi: bool):
    name = draw(st.sampled_from(NAMES))
    quotes = ["'", "`"] + (['"'] if not ansi else ['"'])
    quote = draw(st.sampled_from(quotes if " " in name else ["", *quotes]))
    spelled = f"{quote}{name}{quote}"
    if draw(st.booleans()):
        host = draw(st.sampled_from(HOSTS))
        host_case = draw(st.sampled_from([host, host.upper()]))
        hq = draw(st.sampled_from(["'", "`", '"'] + ([""] if host != "%" else [])))
        spelled += f"@{hq}{host_case}{hq}"
    return name, spelled


@st.composite
def statement(draw):
    ansi = draw(st.booleans())
    verb = draw(st.sampled_from(["DROP USER IF EXISTS", "ALTER USER IF EXISTS", "RENAME USER"]))
    count = draw(st.integers(1, 2))
    accounts = [draw(account(ansi)) for _ in range(count)]
    wrap = draw(st.booleans())
    gap = inner_comment if wrap else comment
    parts = []
    renamed = []
    for k, (_name, spelled) in enumerate(accounts):
        piece = spelled
        if verb == "RENAME USER":
            target = f"tp_new{k}"
            piece += f"{draw(gap)} TO {draw(gap)}{target}@'%'"
            renamed.append(target)
        parts.append(piece)
    body = f",{draw(gap)}".join(parts)
    if verb == "ALTER USER IF EXISTS":
        body += f"{draw(gap)} ACCOUNT LOCK"
    if wrap:
        body = draw(st.sampled_from(["/*!", "/*M!100000 ", "/*!50000 "])) + body + " */"
    first, second = verb.split(" ", 1)
    sql = f"{draw(comment)}{draw(st.sampled_from([first, first.lower()]))}{draw(comment)} {second}{draw(comment)} {body}"
    return ansi, verb, [name for name, _ in accounts], renamed, sql


def _accounts(conn) -> dict[tuple[str, str], bool]:
    rows = my_rows(conn, "SELECT User, Host, JSON_VALUE(Priv, '$.account_locked') FROM mysql.global_priv "
                         "WHERE User LIKE 'tp%' OR User LIKE 'TP%'")
    return {(user, host): locked == "true" for user, host, locked in rows}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=statement())
def test_the_guard_names_every_account_the_engine_touches(mysql_cluster, case):
    ansi, verb, names, renamed, sql = case
    with closing_all(my_connect(mysql_cluster)) as (conn,):
        for user, host in _accounts(conn):
            my_rows(conn, "DROP USER IF EXISTS %s@%s", (user, host))
        for name in NAMES:
            for host in HOSTS:
                my_rows(conn, "CREATE USER %s@%s", (name, host))
        before = _accounts(conn)
        my_rows(conn, "SET SESSION sql_mode = %s", ("ANSI_QUOTES" if ansi else "",))
        try:
            my_rows(conn, sql)
            ok = True
        except Exception as exc:  # noqa: BLE001 - a statement the engine refuses touches nothing
            ok = False
        my_rows(conn, "SET SESSION sql_mode = DEFAULT")
        after = _accounts(conn)
    event(f"{verb}: {'the engine ran it' if ok else 'the engine refused it'}")
    touched = {user for key, locked in before.items() for user in [key[0]]
               if key not in after or after[key] != locked}
    statements = split(sql, SqlMode(ansi_quotes=ansi))
    assert len(statements) == 1, (sql, [s.text for s in statements])
    guard_named, _ = named_accounts(statements[0].tokens)
    seen = {normal_name(n) for n in guard_named}
    assert {normal_name(u) for u in touched} <= seen, (sql, touched, guard_named)
    assert classify(statements[0], "appdb").kind.value == "ACCOUNT"
    if ok:
        expected = {normal_name(n) for n in names} | {normal_name(n) for n in renamed}
        assert seen == expected, (sql, guard_named, names)
    with closing_all(my_connect(mysql_cluster)) as (conn,):
        for user, host in _accounts(conn):
            my_rows(conn, "DROP USER IF EXISTS %s@%s", (user, host))
