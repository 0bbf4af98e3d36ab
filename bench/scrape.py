"""What the gateway benchmarks share: ``/metrics`` scraped every second while a run lasts (a
Prometheus server's load), for the ``gateway+metrics`` rows."""

from __future__ import annotations

import contextlib
import threading
import urllib.request


@contextlib.contextmanager
def scraping(url: str | None):
    """Scrape ``url``/metrics every second meanwhile, if a url is given."""
    if url is None:
        yield
        return
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(1.0):
            urllib.request.urlopen(f"{url}/metrics", timeout=5).read()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
