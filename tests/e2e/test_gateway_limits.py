"""``--max-connections`` and ``--handshake-timeout`` reach the gateway of a real ``dbkeep up``."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from clusters import create_cluster
from dbkeep_process import DbkeepProcess


@pytest.fixture(scope="module")
def limited():
    base = Path(tempfile.mkdtemp(prefix="dbkeep-limits-"))
    proc = DbkeepProcess(base / "state", extra_args=["--max-connections", "1", "--handshake-timeout", "2"]).start()
    yield proc
    assert proc.stop() == 0
    shutil.rmtree(base, ignore_errors=True)


def connect(proc, cluster):
    return psycopg.connect(host="localhost", port=cluster["Port"], user="master", password="Limit-Pass-1", dbname="appdb",
                           sslmode="verify-full", sslrootcert=str(proc.state_dir / "ca.pem"), connect_timeout=10)


def test_limits(limited):
    cluster = create_cluster(limited, "aurora-postgresql", "limits", "Limit-Pass-1")
    with connect(limited, cluster) as first:
        assert first.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError) as exc:
            connect(limited, cluster).close()
        assert "sorry, too many clients already" in str(exc.value)
    # the slot is free once the first session has ended at both ends: as with PostgreSQL's own
    # max_connections, a backend still exiting after the client left counts for a moment
    deadline = time.monotonic() + 5
    while True:
        try:
            again = connect(limited, cluster)
            break
        except psycopg.OperationalError as error:
            if "too many clients" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    with again:
        assert again.execute("SELECT 1").fetchone() == (1,)
    # a client that says nothing is closed by the gateway after --handshake-timeout (2 s), well
    # before the built-in default (10 s) would have closed it
    with socket.create_connection(("127.0.0.1", cluster["Port"]), timeout=20) as silent:
        silent.settimeout(20)
        opened = time.monotonic()
        assert silent.recv(1) == b""
        waited = time.monotonic() - opened
    assert 1.5 <= waited < 8, f"the silent client was closed after {waited:.1f} s, not after about 2 s"
