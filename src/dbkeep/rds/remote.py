"""The owner's side of the work queue, and the catalog's notifications, on a shared catalog.

One psycopg connection per host ``LISTEN``s on ``dbkeep_work`` (catalog/work.py: the payload
names the owner) and ``dbkeep_iam`` (a trigger in the catalog sends it when access keys, users,
groups, roles or policies change: catalog/migrations.py). A work notification for this host,
and every :data:`POLL_SECONDS` regardless (a notification is lost while the connection is
down), claims this host's rows and runs them (``ClusterManager.run_work``). An IAM notification
drops the IAM caches at once; the token verifier checks the change counter as well before it
trusts its cache, so a login never waits for the notification (identity/dbauth.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

from dbkeep.catalog.hosts import HEARTBEAT_SECONDS, HostDirectory
from dbkeep.catalog.work import CHANNEL as WORK_CHANNEL
from dbkeep.catalog.work import WorkQueue
from dbkeep.rds.clusters import ClusterManager

log = logging.getLogger("dbkeep.rds")

IAM_CHANNEL = "dbkeep_iam"
POLL_SECONDS = 5.0


def libpq_url(catalog_url: str) -> str:
    """The catalog URL as libpq takes it (without SQLAlchemy's ``+driver``)."""
    scheme, rest = catalog_url.split("://", 1)
    return "postgresql://" + rest


class WorkListener:
    def __init__(self, catalog_url: str, node: str, work: WorkQueue, clusters: "ClusterManager",
                 on_iam_change: Callable[[], None], *, poll: float = POLL_SECONDS) -> None:
        self._poll = poll
        self._url = libpq_url(catalog_url)
        self._node = node
        self._work = work
        self._clusters = clusters
        self._on_iam_change = on_iam_change

    def claim(self) -> None:
        try:
            for item in self._work.claim(self._node):
                self._clusters.run_work(item.cluster_identifier, item.kind, item.args, item.asked_by)
        except Exception:
            log.exception("cannot claim this host's work from the catalog; retrying at the next poll")

    async def run(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {WORK_CHANNEL}")
                    await conn.execute(f"LISTEN {IAM_CHANNEL}")
                    self._on_iam_change()  # anything may have changed while not listening
                    self.claim()
                    while True:
                        async for note in conn.notifies(timeout=self._poll):
                            if note.channel == IAM_CHANNEL:
                                self._on_iam_change()
                            elif note.payload == self._node:
                                self.claim()
                        self.claim()  # the safety net
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                log.warning("lost the catalog's notifications (%s); polling until they are back", exc)
                await asyncio.sleep(self._poll)
                self.claim()


async def heartbeat(hosts: HostDirectory, node: str) -> None:
    """Tell the other hosts this one is alive, every few seconds, for the life of the process."""
    while True:
        await asyncio.sleep(HEARTBEAT_SECONDS)
        try:
            await asyncio.to_thread(hosts.beat, node)
        except Exception as exc:  # noqa: BLE001 - the catalog may be away for a moment
            log.warning("heartbeat not written: %s", exc)
