"""``PREPARE s FROM @var`` and ``EXECUTE IMMEDIATE @var`` are read before they run (issue 12, item 4).

Through ``dbkeep up``'s gateway as the master (an inspected session, on the native relay threads
between statements): the gateway reads the variable on the session's own engine leg with a
private query, judges its value as it judges ``PREPARE s FROM '…'``, and refuses at the PREPARE
what would touch rdsadmin or rds_superuser_role -- however the value was built (CONCAT, UNHEX,
CHAR(), a hex literal) and however the variable is spelt (quoted, other case); rdsadmin is
unchanged after each. The same forms after another statement of a multi-statement query are
refused (an earlier statement may set the variable). Harmless values run as without the
gateway: the result stream the client reads is the engine's, with the private answer taken out,
also when the client pipelines a large result before the PREPARE; a NULL variable gets the
engine's own error.
"""

from __future__ import annotations

import struct

import pymysql
import pytest
from pymysql.constants import CLIENT

from clusters import create_cluster, mysql, unique
from gateway_checks import assert_no_exception_escaped_a_session, audit_events, audit_mark
from mysql_sessions import error_of, run
from test_guard_mysql_bypass import SYSTEM_USER, protected_state

PASSWORD = "Prepvar-Pass-1"
NOT_FIRST = ("Access denied; PREPARE … FROM @variable and EXECUTE IMMEDIATE @variable must be the first statement "
             "of a query: send it as a statement of its own")


@pytest.fixture(scope="module", autouse=True)
def no_exception_escaped_a_session(dbkeep):
    yield
    assert_no_exception_escaped_a_session(dbkeep, "mysql")


@pytest.fixture(scope="module")
def pv(dbkeep):
    return create_cluster(dbkeep, "aurora-mysql", unique("pvar"), PASSWORD)


def master(dbkeep, cluster, **kw):
    return mysql(dbkeep, cluster, "admin", PASSWORD, "appdb", client_flag=CLIENT.MULTI_STATEMENTS, **kw)


@pytest.fixture(scope="module")
def baseline(dbkeep, pv):
    return protected_state(dbkeep, pv)


DROP = "DROP USER rdsadmin@localhost"
REFUSED = {
    "concat": ["SET @v = CONCAT('DROP USER ', 'rdsadmin@localhost')", "PREPARE s FROM @v"],
    "single_quoted_name": ["SET @'my var' = CONCAT('DROP USER ', 'rdsadmin@localhost')", "PREPARE s FROM @'my var'"],
    "double_quoted_name": ["SET @\"v2\" = CONCAT('ALTER USER rds', 'admin@localhost ACCOUNT LOCK')",
                           'PREPARE s FROM @"v2"'],
    "backticked_name": ["SET @`v-3` = CONCAT('DROP USER ', 'rdsadmin@localhost')", "PREPARE s FROM @`v-3`"],
    "other_case": ["SET @Stmt = CONCAT('DROP USER ', 'rdsadmin@localhost')", "PREPARE s FROM @STMT"],
    "execute_immediate": ["SET @v = CONCAT('ALTER USER rds', 'admin@localhost ACCOUNT LOCK')", "EXECUTE IMMEDIATE @v"],
    "execute_immediate_quoted": ["SET @v = CONCAT('SET PASSWORD FOR rdsadmin@localhost', ' = PASSWORD(''x'')')",
                                 "EXECUTE IMMEDIATE @`V`"],
    "unhex": [f"SET @v = UNHEX('{DROP.encode().hex()}')", "PREPARE s FROM @v"],
    "hex_literal": [f"SET @v = X'{DROP.encode().hex()}'", "EXECUTE IMMEDIATE @v"],
    "char": [f"SET @v = CHAR({', '.join(str(b) for b in DROP.encode())})", "PREPARE s FROM @v"],
    "multibyte": ["SET @v = CONCAT('DROP /* é€𝄞 */ USER ', 'rdsadmin@localhost')", "PREPARE s FROM @v"],
    "role": ["SET @v = CONCAT('REVOKE ALL PRIVILEGES, GRANT OPTION FROM ', 'rds_superuser_role')",
             "PREPARE s FROM @v"],
    "first_of_a_multi_statement": ["SET @v = CONCAT('DROP USER ', 'rdsadmin@localhost')", "PREPARE s FROM @v; SELECT 1"],
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_variable_that_would_touch_rdsadmin_is_refused_at_the_prepare(dbkeep, pv, baseline, case):
    statements = REFUSED[case]
    mark = audit_mark(dbkeep)
    with master(dbkeep, pv) as conn:
        for sql in statements[:-1]:
            run(conn, sql)
        assert error_of(conn, statements[-1]) == (1227, SYSTEM_USER)
        if "PREPARE" in statements[-1]:  # nothing was prepared
            assert error_of(conn, "EXECUTE s")[0] == 1243  # ER_UNKNOWN_STMT_HANDLER
        assert run(conn, "SELECT 1") == ((1,),)  # the session goes on
    events = audit_events(dbkeep, "gateway.statement_refused", pv["DBClusterIdentifier"], since=mark)
    assert len(events) == 1, events
    assert events[0]["user"] == "admin" and events[0]["mysql_errno"] == 1227 and events[0]["rule"]
    assert protected_state(dbkeep, pv) == baseline


@pytest.mark.parametrize("statement", [
    "SET @v = CONCAT('DROP USER ', 'rdsadmin@localhost'); PREPARE s FROM @v",
    "SET @v = 'SELECT 1'; EXECUTE IMMEDIATE @v",  # harmless, but it cannot be read before it runs
    "SELECT 1; PREPARE s FROM @`v`",
])
def test_after_another_statement_of_the_query_it_is_refused(dbkeep, pv, baseline, statement):
    mark = audit_mark(dbkeep)
    with master(dbkeep, pv) as conn:
        run(conn, "SET @v = 'SELECT 2'")
        assert error_of(conn, statement) == (1227, NOT_FIRST)
        assert run(conn, "SELECT @v") == (("SELECT 2",),)  # nothing of the query ran
    events = audit_events(dbkeep, "gateway.statement_refused", pv["DBClusterIdentifier"], since=mark)
    assert len(events) == 1 and events[0]["reason"] == NOT_FIRST, events
    assert protected_state(dbkeep, pv) == baseline


def last_rows(conn, sql):
    """The rows of the last result of a multi-statement query."""
    with conn.cursor() as cur:
        cur.execute(sql)
        rows = cur.fetchall()
        while cur.nextset():
            rows = cur.fetchall()
        return rows


def no_refusals(dbkeep, cluster, mark) -> None:
    for kind in ("gateway.statement_refused", "gateway.variable_read_failed", "gateway.protected_account_restored"):
        assert audit_events(dbkeep, kind, cluster["DBClusterIdentifier"], since=mark) == [], kind


def test_a_harmless_variable_runs_as_without_the_gateway(dbkeep, pv):
    mark = audit_mark(dbkeep)
    with master(dbkeep, pv) as conn:
        run(conn, "SET @s = 'SELECT 1'")
        run(conn, "PREPARE s FROM @s")
        assert run(conn, "EXECUTE s") == ((1,),)
        assert run(conn, "EXECUTE IMMEDIATE @S") == ((1,),)
        run(conn, "SET @`m` = CONCAT('SELECT ''é€𝄞'', ', 40 + 2)")
        assert last_rows(conn, "PREPARE m FROM @m; EXECUTE m") == (("é€𝄞", 42),)  # first of a multi-statement
        run(conn, "SET @w = 'SELECT ''rdsadmin'' AS who'")  # only a string that names it
        assert run(conn, "EXECUTE IMMEDIATE @w") == (("rdsadmin",),)
        run(conn, f"SET @b = X'{b'SELECT 7'.hex()}'")
        assert run(conn, "EXECUTE IMMEDIATE @b") == ((7,),)
        assert run(conn, "SELECT 3") == ((3,),)
    no_refusals(dbkeep, pv, mark)


def test_a_null_variable_gets_the_engines_own_error(dbkeep, pv):
    mark = audit_mark(dbkeep)
    with master(dbkeep, pv) as conn, mysql(dbkeep, pv, "admin", PASSWORD, "appdb", via="socket") as direct:
        expected = error_of(direct, "PREPARE s FROM @never_set")
        assert error_of(conn, "PREPARE s FROM @never_set") == expected
        assert error_of(conn, "EXECUTE IMMEDIATE @never_set") == error_of(direct, "EXECUTE IMMEDIATE @never_set")
        assert run(conn, "SELECT 4") == ((4,),)
    no_refusals(dbkeep, pv, mark)


def _packet(sql: str) -> bytes:
    payload = b"\x03" + sql.encode()
    return struct.pack("<I", len(payload))[:3] + b"\x00" + payload


def _pipelined(conn, statements: list[str]) -> list[tuple]:
    """Send every statement before reading any answer (PyMySQL reads one result at a time)."""
    conn._write_bytes(b"".join(_packet(sql) for sql in statements))
    results = []
    for _ in statements:
        conn._next_seq_id = 1
        conn._read_query_result()
        results.append(conn._result.rows)
    return results


LARGE = "SELECT seq, REPEAT('x', 200) FROM seq_1_to_20000"


def test_a_result_pipelined_before_the_prepare_reaches_the_client_unchanged(dbkeep, pv):
    mark = audit_mark(dbkeep)
    with mysql(dbkeep, pv, "admin", PASSWORD, "appdb", via="socket") as direct:
        expected = run(direct, LARGE)
    with master(dbkeep, pv) as conn:
        run(conn, "SET @s = 'SELECT 5'")
        large, prepared = _pipelined(conn, [LARGE, "PREPARE s FROM @s"])
        assert large == expected and prepared is None
        assert run(conn, "EXECUTE s") == ((5,),)
        # three deep, the PREPARE last, then the session goes on in step
        results = _pipelined(conn, ["SELECT 'a'", LARGE, "PREPARE t FROM @s"])
        assert results == [(("a",),), expected, None]
        assert run(conn, "EXECUTE t") == ((5,),)
        assert run(conn, "SELECT 6") == ((6,),)
    no_refusals(dbkeep, pv, mark)


def test_a_pipelined_dangerous_prepare_is_refused_in_order(dbkeep, pv, baseline):
    mark = audit_mark(dbkeep)
    with master(dbkeep, pv) as conn:
        run(conn, f"SET @v = '{DROP}'")
        conn._write_bytes(_packet(LARGE) + _packet("PREPARE s FROM @v") + _packet("SELECT 8"))
        conn._next_seq_id = 1
        conn._read_query_result()
        assert len(conn._result.rows) == 20000
        conn._next_seq_id = 1
        with pytest.raises(pymysql.err.MySQLError) as exc:
            conn._read_query_result()
        assert exc.value.args[:2] == (1227, SYSTEM_USER)
        conn._next_seq_id = 1
        conn._read_query_result()
        assert conn._result.rows == ((8,),)
    assert len(audit_events(dbkeep, "gateway.statement_refused", pv["DBClusterIdentifier"], since=mark)) == 1
    assert protected_state(dbkeep, pv) == baseline


def test_execute_of_a_statement_read_from_a_variable_is_judged_by_what_was_read(dbkeep, pv, baseline):
    """A prepared statement read from a variable is not opaque: EXECUTE of a harmless one needs
    no check afterwards (no restore, the session goes on); one that writes a grant table is a
    hygiene trigger as a literal PREPARE would be."""
    mark = audit_mark(dbkeep)
    with master(dbkeep, pv) as conn:
        run(conn, "SET @s = 'SELECT 9'")
        run(conn, "PREPARE s FROM @s")
        run(conn, "SET @s = CONCAT('DROP USER ', 'rdsadmin@localhost')")  # changing it afterwards changes nothing
        assert run(conn, "EXECUTE s") == ((9,),)
        run(conn, "SET @d = 'DELETE FROM mysql.db WHERE User = ''nobody_here'''")
        run(conn, "PREPARE d FROM @d")
        run(conn, "EXECUTE d")
        assert run(conn, "SELECT 10") == ((10,),)
    no_refusals(dbkeep, pv, mark)
    assert protected_state(dbkeep, pv) == baseline


def test_no_answer_to_the_read_ends_the_session_and_nothing_runs(dbkeep, pv, baseline):
    """Fail closed: while the engine sends nothing for longer than the read may wait (here a
    SLEEP pipelined before the PREPARE), the session ends with an error and an audit event;
    the held PREPARE never reaches the engine. (An ERR answer to the private read -- a KILL
    QUERY from another session -- carries no alias and ends the same way.)"""
    mark = audit_mark(dbkeep)
    conn = master(dbkeep, pv)
    try:
        run(conn, f"SET @v = '{DROP}'")
        conn._write_bytes(_packet("SELECT SLEEP(8)") + _packet("PREPARE s FROM @v"))
        conn._next_seq_id = 1
        with pytest.raises(pymysql.err.MySQLError) as exc:
            conn._read_query_result()
        assert exc.value.args[0] in (1105, 2013), exc.value.args
        if exc.value.args[0] == 1105:
            assert "could not read the variable" in exc.value.args[1]
    finally:
        conn.close()
    [event] = audit_events(dbkeep, "gateway.variable_read_failed", pv["DBClusterIdentifier"], since=mark)
    assert event["user"] == "admin" and event["variable"] == "v" and event["verdict"] == "deny"
    assert protected_state(dbkeep, pv) == baseline


def _raw_answers(conn, statements: list[str], marker: str) -> bytes:
    """The bytes the client reads for pipelined ``statements`` (the last selects ``marker``)."""
    conn._write_bytes(b"".join(_packet(sql) for sql in statements))
    sock, buf = conn._sock, bytearray()
    while (at := buf.find(marker.encode())) < 0 or len(buf) < at + len(marker) + 9:  # the row, then its EOF
        chunk = sock.recv(65536)
        assert chunk, bytes(buf[-200:])
        buf += chunk
    return bytes(buf)


def test_the_client_reads_exactly_the_engines_bytes(dbkeep, pv):
    """Pipelined behind a large result, the PREPARE's private read leaves no byte in the
    client's stream: the bytes match a direct connection's to the engine, byte for byte."""
    mark = audit_mark(dbkeep)
    statements = ["SELECT 'a'", LARGE, "PREPARE s FROM @s", "EXECUTE s", "SELECT 'dbkeep-end-marker'"]
    answers = []
    for conn in (mysql(dbkeep, pv, "admin", PASSWORD, "appdb", via="socket"), master(dbkeep, pv)):
        with conn:
            run(conn, "SET @s = 'SELECT 11'")
            answers.append(_raw_answers(conn, statements, "dbkeep-end-marker"))
    assert len(answers[0]) > 20000 * 200
    assert answers[1] == answers[0]
    no_refusals(dbkeep, pv, mark)


def test_the_mariadb_client(dbkeep, pv, baseline):
    """MariaDB's own client (Connector/C, which negotiates MARIADB_CLIENT_CACHE_METADATA: a byte
    more in every column count packet): a harmless variable runs, a dangerous one is refused at
    its PREPARE and the script goes on."""
    import subprocess

    script = "\n".join([
        "SET @s = 'SELECT 12 AS twelve';", "PREPARE s FROM @s;", "EXECUTE s;",
        "SET @d = CONCAT('DROP USER ', 'rdsadmin@localhost');", "PREPARE d FROM @d;", "EXECUTE IMMEDIATE @d;",
        "SELECT 'still here' AS after;",
    ])
    tls = [f"--ssl-ca={dbkeep.state_dir / 'ca.pem'}", "--ssl-verify-server-cert"]
    done = subprocess.run(["mariadb", "--protocol=tcp", "-h", "localhost", "-P", str(pv["Port"]), "-u", "admin",
                           f"-p{PASSWORD}", *tls, "--force", "--batch", "appdb"], input=script.encode(),
                          capture_output=True, timeout=60, check=False)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert "twelve\n12\n" in out and "still here" in out, (out, err)
    assert err.count("ERROR 1227 (42000)") == 2 and SYSTEM_USER in err, err
    assert protected_state(dbkeep, pv) == baseline


def test_a_variable_whose_name_dbkeep_cannot_send_is_refused(dbkeep, pv, baseline):
    """The private query names the variable in the client's character set, which may change:
    only ASCII names are read; any other is refused (audited), never forwarded unread."""
    mark = audit_mark(dbkeep)
    with master(dbkeep, pv) as conn:
        run(conn, "SET @`prüfung` = 'SELECT 1'")
        # (after PyMySQL's SET NAMES its bytes also read as other names in other character sets)
        assert error_of(conn, "PREPARE s FROM @`prüfung`")[0] == 1227
        assert error_of(conn, "EXECUTE s")[0] == 1243  # nothing was prepared
        assert run(conn, "SELECT 1") == ((1,),)
    assert len(audit_events(dbkeep, "gateway.statement_refused", pv["DBClusterIdentifier"], since=mark)) == 1
    assert protected_state(dbkeep, pv) == baseline
