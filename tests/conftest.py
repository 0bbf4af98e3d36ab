import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def _hypothesis_profile() -> None:
    """Property tests explore new examples at every run (they have found real bugs that way);
    CI (.ci/run sets DBKEEP_HYPOTHESIS=ci) runs a fixed sequence, so a red CI is a change's doing."""
    import os

    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("DBKEEP_HYPOTHESIS") == "ci":
        settings.load_profile("ci")


_hypothesis_profile()


def pytest_sessionfinish(session, exitstatus):
    """The tests delete their state directories, clusters and all: the engine OS users those
    clusters had are stale now, and would otherwise wait for the next cluster dbkeep makes."""
    import os

    if os.geteuid() == 0:
        from dbkeep.engines.osuser import remove_stale_cluster_users

        remove_stale_cluster_users()
