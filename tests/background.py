"""Run a blocking call in a daemon thread and wait for it with a timeout (tests only)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


def background(fn: Callable[..., Any], *args: Any) -> Future:
    """Run fn in a daemon thread; its result or exception in a Future (wait with a timeout)."""
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future
