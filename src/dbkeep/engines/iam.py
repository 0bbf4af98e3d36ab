"""IAM database authentication on the engine side: the proof key, the MariaDB plugin, the
PostgreSQL PAM service.

The engine decides who is an IAM account and refuses anything but dbkeep's per-login proof
(``identity/engine_proof.py``) for it:

- **MariaDB**: accounts ``IDENTIFIED WITH AWSAuthenticationPlugin``. The plugin
  (``native/aws_iam_auth.c``, built at install) is *copied* into the cluster's ``plugins/``
  directory (so the engine reads nothing outside its cluster directory and system directories)
  only while IAM authentication is enabled, loaded at start by ``plugin-load-add`` and installed
  or uninstalled live through rdsadmin when it is toggled (``mysql.plugin`` is not used, so the
  catalog alone decides at the next start). Off: ``CREATE USER … IDENTIFIED WITH
  AWSAuthenticationPlugin`` is the engine's ``1524 Plugin 'AWSAuthenticationPlugin' is not
  loaded`` and such accounts cannot log in; they stay mapped and work again when it is on.
- **PostgreSQL**: members of ``rds_iam`` (directly or through other roles: pg_hba's ``+role``
  matches membership, nested included) get ``local all +rds_iam pam pamservice=dbkeep-iam-<h>``
  before the SCRAM line, so the engine itself asks for a cleartext password and refuses
  anything else with RDS's ``FATAL: PAM authentication failed for user "…"``. Revoking
  ``rds_iam`` makes the account a SCRAM account again at its next login. The PAM service
  ``/etc/pam.d/dbkeep-iam-<16 hex of the cluster directory's SHA-256>`` is the cluster's own: it
  loads dbkeep's PAM module ``iam/pam_dbkeep_iam.so`` (a copy of ``native/pam_dbkeep_iam.c``) by
  its path, which checks the proof inside the backend (``pam_exec`` forking a checker cost more
  than the rest of the login: ``bench/iam_login_pg_probe.py``); disabled, the module is given
  ``off``: it still asks for the password (so the gateway reads the token and audits why it
  refused) and lets nothing pass. Toggling rewrites that one file: the next login sees it, no
  reload. Writing ``/etc/pam.d`` needs root: without it (or with a
  state directory whose path PAM cannot quote) the line is ``reject`` and IAM logins on
  PostgreSQL are unavailable, logged once per start — never a fallback to a password.

Files, under ``DIR/clusters/<id>/``: ``iam/`` (0700, the engine's OS user) holding
``proof.key`` (0600, the engine user; made once, 32 random bytes as hex), ``nonces/`` (0700, the
engine user: the gateway's one-time PostgreSQL nonces, unlinked by the PAM module) and
``pam_dbkeep_iam.so`` (0644); ``plugins/aws_iam_auth.so`` (0644) while enabled on MariaDB. The
enabled state is recorded in ``cluster.json`` (``iam_auth``) so that every rewrite of the
configuration keeps it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from pathlib import Path

from dbkeep.engines.layout import ClusterLayout, write_private
from dbkeep.engines.osuser import EngineUser
from dbkeep.errors import EngineError
from dbkeep.identity import engine_proof

log = logging.getLogger("dbkeep.engines")

NATIVE = Path(__file__).resolve().parent / "native"
PLUGIN_NAME = "AWSAuthenticationPlugin"
PLUGIN_SONAME = "aws_iam_auth"
PLUGIN_FILE = f"{PLUGIN_SONAME}.so"
CHECKER = "dbkeep-iam-check"  # the PAM module's check as a program (tests, diagnosis)
PAM_MODULE = "pam_dbkeep_iam.so"
PAM_DIR = Path("/etc/pam.d")
PAM_PREFIX = "dbkeep-iam-"
_PAM_SAFE = re.compile(r"^[A-Za-z0-9_./+-]+$")


def iam_dir(layout: ClusterLayout) -> Path:
    return layout.root / "iam"


def enabled(layout: ClusterLayout) -> bool:
    return bool(layout.read_meta().get("iam_auth"))


def record(layout: ClusterLayout, on: bool) -> None:
    if enabled(layout) != on:
        layout.update_meta(iam_auth=on)


def ensure_files(layout: ClusterLayout, user: EngineUser, *, new_key: bool = False) -> Path:
    """``iam/``, its proof key (made once, or anew with ``new_key``) and ``nonces/``, owned by
    the engine user."""
    d = iam_dir(layout)
    for sub in (d, d / engine_proof.NONCES_DIR):
        sub.mkdir(mode=0o700, exist_ok=True)
        user.chown(sub)
        os.chmod(sub, 0o700)
    engine_proof.sweep_pg_nonces(d)  # one-time nonces of logins that never reached the PAM module
    key = d / engine_proof.KEY_NAME
    try:
        if new_key:
            raise ValueError("a new key")
        engine_proof.parse_key(key.read_bytes())
    except (FileNotFoundError, ValueError):
        write_private(key, engine_proof.new_key_text(), owner=user)
    else:
        user.chown(key)
        os.chmod(key, 0o600)
    return d


# --- MariaDB --------------------------------------------------------------------------------

def plugin_source() -> Path:
    return NATIVE / PLUGIN_FILE


def sync_mysql_plugin(plugin_dir: Path, layout: ClusterLayout) -> set[str]:
    """Copy the plugin into ``plugin_dir`` while IAM authentication is enabled, remove it
    otherwise; returns the file names that belong there."""
    target = plugin_dir / PLUGIN_FILE
    if not enabled(layout):
        return set()
    source = plugin_source()
    if not source.is_file():
        raise EngineError(f"dbkeep's MariaDB IAM plugin {source} was not built "
                          "(apt-get install libmariadbd-dev, then make setup)")
    data = source.read_bytes()
    if not (target.is_file() and not target.is_symlink() and target.read_bytes() == data):
        tmp = plugin_dir / f".{PLUGIN_FILE}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    return {PLUGIN_FILE}


def mysql_config_lines(layout: ClusterLayout) -> list[str]:
    return [f"plugin-load-add = {PLUGIN_FILE}"] if enabled(layout) else []


def mysql_toggle(cur, on: bool) -> None:
    """Live, as rdsadmin (the plugin file is already in place when turning on)."""
    cur.execute("SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = %s", (PLUGIN_NAME,))
    loaded = cur.fetchone()[0] > 0
    if on and not loaded:
        cur.execute(f"INSTALL SONAME '{PLUGIN_SONAME}'")
    elif not on and loaded:
        cur.execute(f"UNINSTALL SONAME '{PLUGIN_SONAME}'")
    # the catalog decides at the next start (plugin-load-add), not mysql.plugin
    cur.execute("DELETE FROM mysql.plugin WHERE name = %s", (PLUGIN_NAME,))


# --- PostgreSQL -----------------------------------------------------------------------------

def pam_service_name(layout: ClusterLayout) -> str:
    return PAM_PREFIX + hashlib.sha256(str(layout.root.absolute()).encode()).hexdigest()[:16]


def _pam_text(layout: ClusterLayout, on: bool) -> str:
    head = f"# Written by dbkeep for the engine in {layout.root.absolute()}; removed with that cluster.\n"
    d = iam_dir(layout).absolute()
    if not on:
        # the module still asks for the password (the engine sends AuthenticationCleartextPassword),
        # so the gateway reads the token and audits the refusal's reason
        return head + "# IAM database authentication is disabled: every IAM login fails.\n" \
                      f"auth     requisite  {d / PAM_MODULE} off\nauth     requisite  pam_deny.so\n" \
                      "account  requisite  pam_deny.so\n"
    return head + (f"auth     required   {d / PAM_MODULE} {d}\n"
                   "account  required   pam_permit.so\n")


def pam_available(layout: ClusterLayout, pam_dir: Path = PAM_DIR) -> bool:
    """Whether this cluster can have its PAM service (root, a quotable path)."""
    return os.geteuid() == 0 and pam_dir.is_dir() and bool(_PAM_SAFE.match(str(iam_dir(layout).absolute())))


def sync_pg_pam(layout: ClusterLayout, user: EngineUser, pam_dir: Path = PAM_DIR) -> str | None:
    """Write the cluster's PAM service for its IAM state (and the PAM module beside the key);
    returns the service name, or None when this host cannot have one (pg_hba then rejects)."""
    if not pam_available(layout, pam_dir):
        if enabled(layout):
            log.warning("%s: IAM database authentication on PostgreSQL needs root (a PAM service in %s) "
                        "and a state directory path of plain characters; rds_iam members cannot log in",
                        layout.cluster_id, pam_dir)
        return None
    d = ensure_files(layout, user)
    source = NATIVE / PAM_MODULE
    if not source.is_file():
        raise EngineError(f"dbkeep's PAM module {source} was not built (apt-get install libpam0g-dev, then make setup)")
    target = d / PAM_MODULE
    if not (target.is_file() and target.read_bytes() == source.read_bytes()):
        tmp = d / f".{PAM_MODULE}.tmp"
        tmp.unlink(missing_ok=True)
        shutil.copyfile(source, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)  # backends that loaded the old file keep their mapping
    (d / CHECKER).unlink(missing_ok=True)  # the pam_exec checker of earlier versions
    name = pam_service_name(layout)
    path = pam_dir / name
    text = _pam_text(layout, enabled(layout))
    try:
        current = path.read_text()
    except FileNotFoundError:
        current = None
        remove_stale_pam_services(pam_dir)
    if current != text:
        tmp = pam_dir / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    return name


def pg_hba_line(service: str | None) -> str:
    if service is None:
        return "local   all       +rds_iam  reject"
    return f"local   all       +rds_iam  pam pamservice={service}"


def remove_pam_service(layout: ClusterLayout, pam_dir: Path = PAM_DIR) -> None:
    if os.geteuid() == 0:
        (pam_dir / pam_service_name(layout)).unlink(missing_ok=True)


def remove_stale_pam_services(pam_dir: Path = PAM_DIR) -> None:
    """PAM services of dbkeep's whose cluster directory is gone (a state dir deleted by hand)."""
    if os.geteuid() != 0 or not pam_dir.is_dir():
        return
    for entry in pam_dir.glob(PAM_PREFIX + "*"):
        try:
            first = entry.read_text().splitlines()[0]
        except (OSError, IndexError):
            continue
        m = re.match(r"# Written by dbkeep for the engine in (\S+);", first)
        if m and not Path(m.group(1)).is_dir():
            entry.unlink(missing_ok=True)
