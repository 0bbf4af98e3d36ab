import os
import shutil
import tempfile
from pathlib import Path

import pytest

from dbkeep_process import DbkeepProcess


@pytest.fixture(scope="session")
def dbkeep(tmp_path_factory):
    """One ``dbkeep up`` for the session, with a clock the tests can move."""
    base = Path(tempfile.mkdtemp(prefix="dbkeep-e2e-"))
    clock_file = base / "clock-offset"
    clock_file.write_text("0")
    # --max-connections 200: PostgreSQL sets aside shared memory for every connection slot, and an
    # engine gets slots for the gateway's limit (db.r6g.large: 1678 by class, 1010 under the default
    # 1000); 210 keep the many test clusters light
    proc = DbkeepProcess(base / "state", fake_time_file=clock_file, extra_args=["--max-connections", "200"]).start()
    proc.clock_file = clock_file
    yield proc
    code = proc.stop()
    if os.environ.get("DBKEEP_TEST_LOG_DIR"):  # keep dbkeep up's log of every run (debugging a flaky test)
        Path(os.environ["DBKEEP_TEST_LOG_DIR"], f"{base.name}.log").write_text(proc.logs())
    if code not in (0, None):
        print(proc.logs())
    assert code == 0, f"dbkeep up exited with {code}"
    shutil.rmtree(base, ignore_errors=True)  # engines' data: hundreds of MB; kept when the stop failed


@pytest.fixture
def move_clock(dbkeep):
    """Move the server's clock by N seconds for one test; put it back afterwards."""

    def move(seconds: float) -> None:
        dbkeep.clock_file.write_text(str(seconds))

    yield move
    dbkeep.clock_file.write_text("0")
