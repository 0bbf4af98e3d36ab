"""The console's cookie over TLS, in a real browser: Secure, ``__Host-`` prefixed, ``Path=/``.

``dbkeep up`` serves plain HTTP, so this test serves the console itself over HTTPS, in process
(its own event loop in a thread), over a real catalog, audit log and API dispatcher in a
temporary state directory, as a TLS-terminating proxy would present it to the browser. Chromium
accepts a ``__Host-`` cookie only when it is Secure, has ``Path=/`` and no Domain, so a session
that works at all proves the attributes right.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import ssl
import threading
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (make setup)")


class TlsConsole:
    def __init__(self, state_dir: Path) -> None:
        from aiohttp import web

        from dbkeep.api.dispatch import Dispatcher
        from dbkeep.api.services import ec2, iam, rds, sts
        from dbkeep.app import ensure_account, open_catalog
        from dbkeep.audit.log import AuditLog
        from dbkeep.clock import default_clock
        from dbkeep.config import Config
        from dbkeep.console.web import Console, ConsoleConfig
        from dbkeep.identity.credentials import Authenticator
        from dbkeep.pki.ca import self_signed_engine_certificate

        state_dir.mkdir(mode=0o700)
        clock = default_clock()
        self.catalog = open_catalog(Config(state_dir=state_dir))
        self.audit = AuditLog(state_dir / "audit.log", clock)
        account, self.key_id, self.secret = ensure_account(self.catalog, clock)
        dispatcher = Dispatcher(self.catalog, self.audit, clock, Authenticator(self.catalog, clock, account),
                                {"iam": iam.HANDLERS, "sts": sts.HANDLERS, "rds": rds.HANDLERS, "ec2": ec2.HANDLERS})
        cert, key = self_signed_engine_certificate("localhost", now=dt.datetime.now(dt.timezone.utc))
        (state_dir / "cert.pem").write_bytes(cert)
        (state_dir / "key.pem").write_bytes(key)
        (state_dir / "ca.pem").write_bytes(cert)
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(state_dir / "cert.pem", state_dir / "key.pem")
        console = Console(ConsoleConfig(dispatcher, self.catalog, self.audit, clock, account, state_dir, state_dir / "ca.pem"))
        self.app = web.Application()
        self.app.add_subapp("/console", console.build())
        self.port: int | None = None
        self._ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from aiohttp import web

        async def serve() -> None:
            self._runner = web.AppRunner(self.app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.tls)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(serve())
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())

    def __enter__(self) -> "TlsConsole":
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self.audit.close()
        self.catalog.close()


def test_session_cookie_over_tls_is_secure_with_host_prefix(tmp_path):
    with TlsConsole(tmp_path / "state") as served, playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(ignore_https_errors=True)  # a self-signed certificate
            page = context.new_page()
            base = f"https://localhost:{served.port}"
            page.goto(f"{base}/console/signin")
            page.get_by_label("Access key ID").fill(served.key_id)
            page.get_by_label("Secret access key").fill(served.secret)
            page.get_by_role("button", name="Sign in as root").click()
            assert page.url == f"{base}/console/clusters"
            cookies = {c["name"]: c for c in context.cookies()}
            session = cookies["__Host-dbkeep_console"]
            assert session["secure"] is True and session["httpOnly"] is True and session["sameSite"] == "Strict"
            assert session["path"] == "/" and "dbkeep_console" not in cookies
            # the browser sends it back: the next page is signed in
            page.goto(f"{base}/console/iam/users")
            assert page.url == f"{base}/console/iam/users"
            assert page.get_by_role("heading", name="IAM users").is_visible()
        finally:
            browser.close()
