"""An inspected MariaDB session on the native relay whose statement needs work first (a CALL:
the stored routines are read before it runs, the grant tables after), end to end with real
MariaDB and pymysql through an in-process gateway (tests/e2e/inprocess.py) with native relay
threads and instant probes.

The relay reports the CALL; the inspector holds it and starts the work; the session comes back
to Python with the CALL first. When the work ends before Python has read that hand-back, nothing
is held yet when it ends, so the replayed verdict must not be "hold" again: the CALL then waited
for a release that never came (a full run of the suite once hung on it for 300 s). With probes
that answer at once, that order is the usual one here.
"""

from __future__ import annotations

import time

import pymysql
import pytest

import inprocess
from clusters import create_cluster, unique

pytestmark = pytest.mark.engines

PASSWORD = "Holds-Pass-1"


@pytest.fixture(scope="module")
def my(dbkeep):
    return create_cluster(dbkeep, "aurora-mysql", unique("myhold"), PASSWORD)


@pytest.fixture(scope="module")
def gateway(dbkeep, my):
    from dbkeep.engines.reset import LiveHygiene
    from dbkeep.gateway.drivers.mysql import MySQLSession
    from dbkeep.gateway.offload import Offload, available

    if not available()[0]:
        pytest.skip(available()[1])
    gw = inprocess.InProcessGateway(dbkeep, my, MySQLSession, None, guarded=False)
    gw.hygienes = 0

    async def facts(_rid, _user):
        return True, "STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_AUTO_CREATE_USER,NO_ENGINE_SUBSTITUTION"

    async def routines(_rid):
        return []  # nothing to refuse

    async def hygiene(_rid, _thread=None):
        gw.hygienes += 1
        return LiveHygiene([], [], [])

    async def thread_user(_rid, _thread):
        return None

    gw.ctx.mysql_account_facts, gw.ctx.mysql_routines = facts, routines
    gw.ctx.mysql_hygiene, gw.ctx.mysql_thread_user = hygiene, thread_user
    offload = Offload(threads=1)
    gw.loop.call_soon_threadsafe(offload.start, gw.loop)
    gw.ctx.offload = offload
    yield gw
    gw.loop.call_soon_threadsafe(offload.stop)
    gw.close()


def _connect(gateway) -> pymysql.Connection:
    return pymysql.connect(host="127.0.0.1", port=gateway.port, user="admin", password=PASSWORD, database="appdb",
                           autocommit=True, read_timeout=20, write_timeout=20)


def _on_the_relay(conn, gateway) -> None:
    deadline = time.monotonic() + 15
    while True:  # its statements are reported by the relay threads (a comment: never an ordinary one)
        before = gateway.ctx.offload.stats()["inspections"]
        with conn.cursor() as cur:
            cur.execute("SELECT 1 /* on the relay? */")
        if gateway.ctx.offload.stats()["inspections"] > before:
            return
        assert time.monotonic() < deadline, "the session never went to the relay threads"
        time.sleep(0.05)


def test_a_call_held_for_work_that_ended_before_the_hand_back_runs(dbkeep, my, gateway):
    conn = _connect(gateway)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE PROCEDURE IF NOT EXISTS count_one() BEGIN SELECT 1; END")
        _on_the_relay(conn, gateway)
        hygienes = gateway.hygienes
        for _ in range(20):
            with conn.cursor() as cur:
                cur.execute("CALL count_one()")
                assert cur.fetchall() == ((1,),)
            with conn.cursor() as cur:
                cur.execute("SELECT 2")
                assert cur.fetchall() == ((2,),)
        assert gateway.hygienes >= hygienes + 20  # each CALL had its grant-table check after it
    finally:
        conn.close()


def test_ordinary_statements_pass_on_the_relay_and_a_change_of_database_is_seen(dbkeep, my, gateway):
    """relay/mysql_plain.h: in a known database other than mysql, ordinary statements pass without
    Python; after USE mysql the same kind of text is judged again (a grant-table write refused)."""
    conn = _connect(gateway)
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS plain_rows (id INT PRIMARY KEY, v VARCHAR(20))")
        _on_the_relay(conn, gateway)
        stats = gateway.ctx.offload.stats()
        with conn.cursor() as cur:
            for n in range(40):
                cur.execute(f"REPLACE INTO plain_rows (id, v) VALUES ({n}, 'row {n}')")
            cur.execute("UPDATE plain_rows SET v = 'x' WHERE id < 10")
            cur.execute("SELECT COUNT(*) FROM plain_rows WHERE v = 'x'")
            assert cur.fetchall() == ((10,),)
        after = gateway.ctx.offload.stats()
        assert after["plain_queries"] - stats["plain_queries"] >= 42
        assert after["inspections"] - stats["inspections"] <= 1
        with conn.cursor() as cur:
            cur.execute("USE mysql")
            with pytest.raises(pymysql.err.OperationalError) as refused:
                cur.execute("DELETE FROM global_priv WHERE 1 = 1")
            assert refused.value.args[0] == 1227
            cur.execute("SELECT COUNT(*) FROM global_priv WHERE User = 'rdsadmin'")
            assert cur.fetchall() == ((1,),)
            cur.execute("USE appdb")
            cur.execute("SELECT v FROM plain_rows WHERE id = 20")
            assert cur.fetchall() == (("row 20",),)
    finally:
        conn.close()
