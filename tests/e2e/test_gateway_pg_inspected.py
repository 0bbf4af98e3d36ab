"""Inspected PostgreSQL sessions on the native relay (issue 12, item 10), end to end with real
PostgreSQL and real clients (psycopg, asyncpg) through an in-process gateway (tests/e2e/inprocess.py)
that has native relay threads and the PostgreSQL statement guard (``ctx.postgres_checks``), its
probes answering that the master's sessions are inspected (the real probes go through rdsadmin,
which ``dbkeep up`` wires; tests/e2e/test_guard_postgres_*.py run those). The refused statement is
``set_config('role', 'rdsadmin', …)``, which the guard refuses in every session it inspects.

- The session stays on the relay threads: its statements are judged there (the relay reports
  them), its rows and COPY data never pass through Python;
- a refused statement (simple and extended protocol, cleartext and TLS) is answered with the
  inspector's error in order, the session goes on -- through the framed Python relay after the
  hand-back, even while the engine was in the middle of a big result for the client -- and goes
  back to the relay threads afterwards;
- pipelined extended-protocol batches with a refused Parse in the middle keep the engine's
  semantics (the rest of the batch is skipped until Sync, the next batch runs).
"""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg
import pytest

import inprocess
from clusters import create_cluster, unique
from test_gateway_postgres import BIG_BYTES, BIG_SQL, PASSWORD, connect

pytestmark = pytest.mark.engines


FORBIDDEN = "SELECT set_config('role', 'rdsadmin', false)"
REFUSED = 'permission denied to set role "rdsadmin"'


def inspected_checks(protect_calls: list[str] | None = None):
    """The statement guard's probes: every role inspected, the routines named here the only
    built-in ones (any other call is opaque: checked after), the protected roles intact
    (each check appended to ``protect_calls``)."""
    from dbkeep.gateway.drivers.postgres_inspect import PgChecks

    async def facts(_cluster, _role):
        return True, True

    async def role_graph(_cluster):
        return []

    async def routines(_cluster, _database):
        return frozenset({"set_config", "pg_sleep", "repeat", "generate_series", "count", "md5"}), frozenset()

    async def protect(cluster):
        if protect_calls is not None:
            protect_calls.append(cluster)
        return []

    return PgChecks(facts=facts, role_graph=role_graph, routines=routines, protect=protect)


@pytest.fixture(scope="module")
def pg(dbkeep):
    return create_cluster(dbkeep, "aurora-postgresql", unique("pgi"), PASSWORD)


@pytest.fixture(scope="module")
def gateway(dbkeep, pg):
    from dbkeep.gateway.drivers.postgres import PostgresSession
    from dbkeep.gateway.offload import Offload, available

    if not available()[0]:
        pytest.skip(available()[1])
    gw = inprocess.InProcessGateway(dbkeep, pg, PostgresSession, None, guarded=False)
    gw.protect_calls = []
    gw.ctx.postgres_checks = inspected_checks(gw.protect_calls)
    offload = Offload(threads=1)
    gw.loop.call_soon_threadsafe(offload.start, gw.loop)
    gw.ctx.offload = offload
    gw.cluster = {**pg, "Port": gw.port}
    yield gw
    gw.loop.call_soon_threadsafe(offload.stop)
    gw.close()


def inspections(gw) -> int:
    return gw.ctx.offload.stats()["inspections"]


def plain_queries(gw) -> int:
    return gw.ctx.offload.stats()["plain_queries"]


def on_the_relay(conn, gw, timeout: float = 15) -> None:
    """Wait until the session's statements are judged on the relay threads: its first ones
    are held in Python while the role's facts are read, and it is handed over after that."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        before = inspections(gw)
        conn.execute("SELECT 1 -- a comment: reported, not one of the relay's ordinary queries")
        if inspections(gw) > before:
            return
        assert time.monotonic() < deadline, "the session never went to the relay threads"
        time.sleep(0.05)


@pytest.mark.parametrize("sslmode", ["verify-full", "disable"])
def test_an_inspected_session_stays_on_the_relay_threads(dbkeep, gateway, sslmode):
    with connect(dbkeep, gateway.cluster, sslmode=sslmode) as conn:
        on_the_relay(conn, gateway)
        before = inspections(gateway)
        with conn.cursor() as cur:
            cur.execute(BIG_SQL)
            assert sum(len(row[0]) for row in cur) == BIG_BYTES
        table = f"insp_{sslmode.replace('-', '_')}"
        conn.execute(f"CREATE TABLE {table} (n int)")
        with conn.cursor().copy(f"COPY {table} FROM STDIN") as copy:
            for n in range(20000):
                copy.write_row((n,))
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (20000,)
        assert inspections(gateway) >= before + 4  # each statement was judged on the relay's report
        assert gateway.ctx.offload.live >= 1


@pytest.mark.parametrize("sslmode", ["verify-full", "disable"])
def test_ordinary_queries_pass_on_the_relay_threads_without_a_report(dbkeep, gateway, sslmode):
    """SELECT/INSERT/UPDATE/DELETE without a function call (relay/pg_plain.h) pass without
    Python; the refused statement between them is still reported and refused."""
    with connect(dbkeep, gateway.cluster, sslmode=sslmode) as conn:
        on_the_relay(conn, gateway)
        table = f"plain_{sslmode.replace('-', '_')}"
        conn.execute(f"CREATE TABLE {table} (n int, s text)")
        reported, passed = inspections(gateway), plain_queries(gateway)
        for n in range(50):
            conn.execute(f"INSERT INTO {table} (n, s) VALUES ({n}, 'row ''{n}''')")
        conn.execute(f"UPDATE {table} SET s = 'x' WHERE n < 10")
        conn.execute(f"DELETE FROM {table} WHERE n >= 40")
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=REFUSED):
            conn.execute(FORBIDDEN)
        on_the_relay(conn, gateway)
        assert conn.execute(f"SELECT n, s FROM {table} WHERE n IN (0, 39) ORDER BY n").fetchall() == [
            (0, "x"), (39, "row '39'")]
        assert plain_queries(gateway) - passed >= 53  # shared relay: other sessions may add to it
        assert inspections(gateway) - reported <= 3  # the refused statement and on_the_relay's probes


@pytest.mark.parametrize("sslmode", ["verify-full", "disable"])
def test_a_refused_statement_is_answered_in_order_and_the_session_goes_on(dbkeep, gateway, sslmode):
    with connect(dbkeep, gateway.cluster, sslmode=sslmode) as conn:
        for _ in range(3):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=REFUSED):
                conn.execute(FORBIDDEN)
            assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
        conn.autocommit = False
        conn.execute("SELECT 1")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(FORBIDDEN)
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        conn.autocommit = True
        on_the_relay(conn, gateway)  # back on the relay threads
        with conn.cursor() as cur:
            cur.execute(BIG_SQL)
            assert sum(len(row[0]) for row in cur) == BIG_BYTES
        assert conn.execute("SELECT 2").fetchone() == (2,)


def test_a_refusal_while_the_engine_streams_a_big_result(dbkeep, gateway):
    """psycopg's pipeline mode: a big result, a refused statement and a small one are sent
    before any reply is read; the hand-back comes while the engine's rows are still on their way,
    and the client gets every row, then the refusal, then the last answer."""
    with connect(dbkeep, gateway.cluster) as conn:
        with conn.pipeline() as pipeline:
            big = conn.execute(BIG_SQL)
            bad = conn.cursor()
            bad.execute(FORBIDDEN)
            last = conn.execute("SELECT 7")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                pipeline.sync()
            assert sum(len(row[0]) for row in big) == BIG_BYTES
        assert last is not None
        assert conn.execute("SELECT 8").fetchone() == (8,)


def test_asyncpg_prepared_statements_and_refusals(dbkeep, gateway):
    async def run() -> None:
        conn = await asyncpg.connect(host="localhost", port=gateway.cluster["Port"], user="master", password=PASSWORD,
                                     database="appdb", ssl=False)
        try:
            stmt = await conn.prepare("SELECT $1::int * 2")
            for n in range(200):
                assert await stmt.fetchval(n) == 2 * n  # Bind/Execute only: no report
            with pytest.raises(asyncpg.exceptions.InsufficientPrivilegeError):
                await conn.fetchval(FORBIDDEN)
            assert await conn.fetchval("SELECT $1::text", "ok") == "ok"
            assert await stmt.fetchval(21) == 42
        finally:
            await conn.close()

    before = inspections(gateway)
    asyncio.run(run())
    assert inspections(gateway) - before < 10  # the 200 executions were not judged one by one


def test_a_setting_undone_by_a_rollback_is_read_before_the_relay_judges_again(dbkeep, gateway):
    """client_encoding decodes what the guard reads. A SET of it in a transaction is undone by
    the ROLLBACK, whose ParameterStatus the relay threads would carry unread; the session stays in
    Python until that transaction is over (and until a SET's answer), so the statement below is
    read in SJIS, as the engine reads it: a call of ``upper``, which these probes do not count
    as a built-in, is opaque code and gets its check after. Read in UTF-8 the statement is one
    string literal."""
    import time

    hidden = b"SELECT E'\xc4\x81\\', upper($$x$$) -- '"
    with connect(dbkeep, gateway.cluster) as conn:
        conn.execute("SET client_encoding TO 'SJIS'")
        conn.autocommit = False
        conn.execute("SET client_encoding TO 'UTF8'")
        conn.rollback()  # the engine is back to SJIS
        conn.autocommit = True
        assert conn.execute("SHOW client_encoding").fetchone() == ("SJIS",)
        before = len(gateway.protect_calls)
        assert conn.execute(hidden).fetchone()[1] == "X"
        deadline = time.monotonic() + 10
        while len(gateway.protect_calls) == before:
            assert time.monotonic() < deadline, "the statement was read in the wrong encoding: no check after it"
            time.sleep(0.05)
