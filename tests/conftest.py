import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def pytest_sessionfinish(session, exitstatus):
    """The tests delete their state directories, clusters and all: the engine OS users those
    clusters had are stale now, and would otherwise wait for the next cluster dbkeep makes."""
    import os

    if os.geteuid() == 0:
        from dbkeep.engines.osuser import remove_stale_cluster_users

        remove_stale_cluster_users()
