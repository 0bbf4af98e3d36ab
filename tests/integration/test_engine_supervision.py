"""Supervision of real engines (crash → restart, stop/start, broken settings, live settings) and
of stand-in processes (SIGTERM ignored → SIGKILL, never ready → failed, backoff)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from dbkeep.engines.driver import EngineState
from dbkeep.engines.supervisor import ProcessPlan, Supervisor
from dbkeep.errors import ConfigError, EngineError
from engine_clients import closing_all, my_connect, my_rows, pg_connect, pg_rows


def _wait_for(predicate, timeout=60.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def _with_settings(spec, **settings):
    return dataclasses.replace(spec, settings={**spec.settings, **settings})


def _my_write(c, value):
    with closing_all(my_connect(c, database="appdb")) as (m,):
        my_rows(m, "CREATE TABLE IF NOT EXISTS crash_t (id INT PRIMARY KEY, v VARCHAR(20))")
        my_rows(m, "REPLACE INTO crash_t VALUES (1, %s)", (value,))


def _my_read(c):
    with closing_all(my_connect(c, database="appdb")) as (m,):
        return my_rows(m, "SELECT v FROM crash_t WHERE id = 1")


def _pg_write(c, value):
    with pg_connect(c) as m:
        pg_rows(m, "CREATE TABLE IF NOT EXISTS crash_t (id int PRIMARY KEY, v text)")
        pg_rows(m, "INSERT INTO crash_t VALUES (1, %s) ON CONFLICT (id) DO UPDATE SET v = excluded.v", (value,))


def _pg_read(c):
    with pg_connect(c) as m:
        return pg_rows(m, "SELECT v FROM crash_t WHERE id = 1")


ENGINES = {"mysql": ("mysql_cluster", _my_write, _my_read), "postgres": ("pg_cluster", _pg_write, _pg_read)}


@pytest.fixture(params=list(ENGINES))
def engine_case(request):
    fixture, write, read = ENGINES[request.param]
    return request.getfixturevalue(fixture), write, read


# --- real engines -----------------------------------------------------------------------------------

@pytest.mark.engines
def test_engines_run_unprivileged_and_private(engine_case, engines):
    c, _w, _r = engine_case
    st = c.status()
    assert st.state is EngineState.RUNNING and st.pid
    assert os.stat(f"/proc/{st.pid}").st_uid == c.user.uid
    if os.geteuid() == 0:
        assert c.user.uid != 0 and c.user.uid != engines.driver.user.uid  # a user of its own
    inodes = {os.stat(f"/proc/{st.pid}/fd/{fd}").st_ino for fd in os.listdir(f"/proc/{st.pid}/fd")
              if os.readlink(f"/proc/{st.pid}/fd/{fd}").startswith("socket:")}
    assert inodes, "no sockets seen: the check proves nothing"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            assert not (int(fields[9]) in inodes and fields[3] == "0A"), "the engine listens on TCP"


@pytest.mark.engines
def test_crash_is_restarted_with_data(engine_case):
    c, write, read = engine_case
    write(c, "committed")
    before = c.status()
    os.kill(before.pid, signal.SIGKILL)
    _wait_for(lambda: c.status().restart_count > before.restart_count and c.status().state is EngineState.RUNNING
              and c.status().pid != before.pid)
    after = c.status()
    assert after.restart_count == before.restart_count + 1
    assert f"engine process {before.pid} killed by SIGKILL" in after.last_log_line
    assert read(c) == [("committed",)]


@pytest.mark.engines
def test_stop_start_keeps_data_and_applies_static_settings(engine_case):
    c, write, read = engine_case
    write(c, "before stop")
    static = ({"innodb_buffer_pool_size": "67108864"} if c.spec.engine == "mysql" else {"max_connections": "42"})
    with pytest.raises(ConfigError):     # a static setting cannot be applied live
        c.run(c.engines.driver.apply_dynamic_settings(c.spec, static))
    c.run(c.engines.driver.stop(c.spec.cluster_id))
    assert c.status().state is EngineState.STOPPED and not os.path.exists(c.socket)
    try:
        c.run(c.engines.driver.start(_with_settings(c.spec, **static)))
        assert read(c) == [("before stop",)]
        if c.spec.engine == "mysql":
            assert c.rdsadmin("SELECT @@GLOBAL.innodb_buffer_pool_size") == [(67108864,)]
        else:
            assert c.rdsadmin("SHOW max_connections") == [("42",)]
    finally:
        c.run(c.engines.driver.stop(c.spec.cluster_id))
        c.run(c.engines.driver.start(c.spec))
    assert c.status().state is EngineState.RUNNING


@pytest.mark.engines
def test_broken_setting_fails_with_log_line(engine_case):
    c, _write, read = engine_case
    if c.spec.engine == "mysql":     # each value valid, the combination refused by the engine
        bad = {"character_set_server": "latin1", "collation_server": "utf8mb4_general_ci"}
        expected = "COLLATION 'utf8mb4_general_ci' is not valid for CHARACTER SET 'latin1'"
    else:                             # valid, but no host can map 8 TB of shared memory
        bad = {"shared_buffers": "1073741823"}
        expected = "could not map anonymous shared memory"
    c.run(c.engines.driver.stop(c.spec.cluster_id))
    try:
        with pytest.raises(EngineError) as ei:  # c.run's timeout turns a hang into a failure
            c.run(c.engines.driver.start(_with_settings(c.spec, **bad)), timeout=60)
        assert expected in (ei.value.log_line or "")
        st = c.status()
        assert st.state is EngineState.FAILED and expected in st.last_log_line
    finally:
        c.run(c.engines.driver.start(c.spec))
    assert c.status().state is EngineState.RUNNING
    assert read(c)


@pytest.mark.engines
def test_dynamic_settings_apply_without_restart(engine_case):
    c, _write, _read = engine_case
    drv = c.engines.driver
    pid = c.status().pid
    if c.spec.engine == "mysql":
        live = {"wait_timeout": "1234", "max_connections": "77", "time_zone": "Europe/Paris",
                "sql_mode": "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION", "long_query_time": "2.5"}
        c.run(drv.apply_dynamic_settings(c.spec, live))
        assert c.rdsadmin("SELECT @@GLOBAL.wait_timeout, @@GLOBAL.max_connections, @@GLOBAL.time_zone, "
                          "@@GLOBAL.sql_mode, @@GLOBAL.long_query_time") == \
            [(1234, 77, "Europe/Paris", "STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION", 2.5)]
        with closing_all(my_connect(c)) as (m,):
            assert my_rows(m, "SELECT @@SESSION.wait_timeout, @@SESSION.time_zone") == [(1234, "Europe/Paris")]
    else:
        live = {"work_mem": "8192", "statement_timeout": "60000", "timezone": "Europe/Paris",
                "log_statement": "ddl"}
        c.run(drv.apply_dynamic_settings(c.spec, live))
        with pg_connect(c) as m:
            assert pg_rows(m, "SELECT current_setting('work_mem'), current_setting('statement_timeout'), "
                              "current_setting('TimeZone'), current_setting('log_statement')") == \
                [("8MB", "1min", "Europe/Paris", "ddl")]
    assert c.status().pid == pid                              # no restart
    with pytest.raises(ConfigError):
        name = "max_connections" if c.spec.engine == "mysql" else "work_mem"
        c.run(drv.apply_dynamic_settings(c.spec, {name: "lots"}))
    with pytest.raises(ConfigError):
        c.run(drv.apply_dynamic_settings(c.spec, {"no_such_setting": "1"}))
    # a clean start rewrites the configuration from the spec: back to the defaults (a crash
    # restart keeps the live values: test_dynamic_settings_survive_a_crash)
    c.run(drv.stop(c.spec.cluster_id))
    c.run(drv.start(c.spec))
    if c.spec.engine == "mysql":
        assert c.rdsadmin("SELECT @@GLOBAL.wait_timeout, @@GLOBAL.time_zone") == [(28800, "UTC")]
    else:
        assert c.rdsadmin("SHOW work_mem") == [("4MB",)]


@pytest.mark.engines
def test_engine_left_running_by_a_previous_dbkeep_is_replaced(engine_case):
    """dbkeep itself died (kill -9) and left its engine running: the next start stops that
    orphan cleanly before starting a supervised engine on the same data."""
    import subprocess

    c, write, read = engine_case
    drv = c.engines.driver
    write(c, "orphaned")
    c.run(drv.stop(c.spec.cluster_id))
    plan = drv.for_engine(c.spec.engine)._process(c.layout, bootstrap=False).plan()
    with open(plan.log_path, "ab") as log:
        orphan = subprocess.Popen(list(plan.argv), stdout=log, stderr=log, cwd=plan.cwd, env=plan.env,
                                  start_new_session=True)
    try:
        _wait_for(lambda: _answers(c), timeout=60, interval=0.2)
        c.run(drv.start(c.spec))
        # stopped, not killed: SIGTERM's clean shutdown (MariaDB and PostgreSQL both exit 0)
        assert orphan.wait(timeout=30) == 0
        assert c.status().state is EngineState.RUNNING and c.status().pid != orphan.pid
        assert read(c) == [("orphaned",)]
    finally:
        if orphan.poll() is None:
            os.killpg(orphan.pid, signal.SIGKILL)
            orphan.wait()


def _answers(c) -> bool:
    try:
        return c.rdsadmin("SELECT 1") == [(1,)]
    except Exception:
        return False


# engine: (setting, live value, query, what it shows live, what it shows by default)
CRASH_SETTINGS = {"mysql": ("wait_timeout", "4321", "SELECT @@GLOBAL.wait_timeout", [(4321,)], [(28800,)]),
                  "postgres": ("work_mem", "8192", "SHOW work_mem", [("8MB",)], [("4MB",)])}


@pytest.mark.engines
def test_dynamic_settings_survive_a_crash(engine_case):
    c, _write, _read = engine_case
    name, value, query, live, default = CRASH_SETTINGS[c.spec.engine]
    c.run(c.engines.driver.apply_dynamic_settings(c.spec, {name: value}))
    before = c.status()
    os.kill(before.pid, signal.SIGKILL)
    _wait_for(lambda: c.status().state is EngineState.RUNNING and c.status().pid != before.pid)
    assert c.rdsadmin(query) == live
    c.run(c.engines.driver.stop(c.spec.cluster_id))
    c.run(c.engines.driver.start(c.spec))
    assert c.rdsadmin(query) == default


# --- stand-in processes (no engine needed) --------------------------------------------------------------

class FakeEngine:
    def __init__(self, tmp: Path, script: str, *, ready: bool = True, name: str = "fake") -> None:
        self.name = name
        self.tmp = tmp
        self.script = script
        self.ready = ready
        self.spawns = 0

    def plan(self) -> ProcessPlan:
        return ProcessPlan(argv=[sys.executable, "-c", self.script], log_path=self.tmp / "fake.log")

    async def before_spawn(self) -> None:
        self.spawns += 1

    async def probe(self) -> None:
        if not self.ready:
            raise ConnectionRefusedError("not listening")


IGNORES_SIGTERM = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                   "print('up', flush=True)\ntime.sleep(120)\n")


def test_stop_escalates_to_sigkill(tmp_path):
    async def main():
        async with Supervisor(stop_grace=0.5) as sup:
            eng = FakeEngine(tmp_path, IGNORES_SIGTERM)
            await sup.start("c1", eng)
            pid = sup.status("c1").pid
            async with asyncio.timeout(10):  # a stop that waits forever on SIGTERM fails here
                await sup.stop("c1")
            assert sup.status("c1").state is EngineState.STOPPED
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    asyncio.run(main())


def test_never_ready_fails_without_hanging(tmp_path):
    async def main():
        async with Supervisor(ready_timeout=1.0) as sup:
            eng = FakeEngine(tmp_path, "import time\nprint('ERROR: cannot bind, giving up', flush=True)\n"
                                       "time.sleep(60)\n", ready=False)
            with pytest.raises(EngineError) as ei:
                async with asyncio.timeout(10):  # bounded: a hang fails as TimeoutError
                    await sup.start("c2", eng)
            assert "did not answer" in ei.value.message
            assert ei.value.log_line == "ERROR: cannot bind, giving up"
            assert sup.status("c2").state is EngineState.FAILED
    asyncio.run(main())


def test_crash_loop_backs_off_then_fails(tmp_path):
    async def main():
        async with Supervisor(backoff_initial=0.05, backoff_max=0.2, max_failed_restarts=3,
                              ready_timeout=2.0) as sup:
            marker = tmp_path / "first"
            # Up the first time; afterwards it dies at once with a log line.
            script = (f"import os, sys, time\np = {str(marker)!r}\n"
                      "if not os.path.exists(p):\n    open(p, 'w').close(); time.sleep(60)\n"
                      "print('FATAL: data directory is gone', flush=True); sys.exit(3)\n")

            class FlakyEngine(FakeEngine):
                async def probe(self):
                    if not marker.exists() or self.spawns > 1:
                        raise ConnectionRefusedError

            eng = FlakyEngine(tmp_path, script)
            await sup.start("c3", eng)
            assert sup.status("c3").state is EngineState.RUNNING
            os.kill(sup.status("c3").pid, signal.SIGKILL)
            async with asyncio.timeout(20):
                while sup.status("c3").state is not EngineState.FAILED:
                    await asyncio.sleep(0.05)
            st = sup.status("c3")
            assert st.restart_count == 4 and eng.spawns == 5
            assert st.last_log_line == "FATAL: data directory is gone"
    asyncio.run(main())


def test_leaving_the_supervisor_stops_everything(tmp_path):
    pids = []

    async def main():
        async with asyncio.TaskGroup() as tg:
            sup = Supervisor(stop_grace=0.5)
            task = tg.create_task(sup.run())
            await sup.wait_started()
            for key in ("a", "b"):
                await sup.start(key, FakeEngine(tmp_path, IGNORES_SIGTERM, name=key))
                pids.append(sup.status(key).pid)
            task.cancel()
    asyncio.run(main())
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
