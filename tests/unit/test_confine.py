"""The Landlock launcher (engines/confine.py) on this machine's kernel."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dbkeep.engines import confine

kernel = confine.probe(kernel_only=True)
needs_landlock = pytest.mark.skipif(not kernel.available, reason=f"no usable Landlock: {kernel.reason}")


def _run(rules, script: str) -> subprocess.CompletedProcess:
    return subprocess.run([*confine.command(rules), "/bin/sh", "-c", script], capture_output=True, text=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin"})


@needs_landlock
def test_writes_only_beneath_rw_and_reads_only_what_is_listed(tmp_path):
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("s3cret")
    rules = [*confine.SYSTEM_RULES, ("--rw", str(inside))]
    out = _run(rules, f"echo ok > {inside}/a && mv {inside}/a {inside}/b && cat {inside}/b; "
                      f"echo no > {outside}/x; cat {outside}/secret; ls /root /tmp; echo done")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "done"], out
    assert not (outside / "x").exists() and (inside / "b").exists()
    assert out.stderr.count("Permission denied") >= 3


@needs_landlock
def test_no_tcp_and_no_exec_from_writable_dirs(tmp_path):
    import shutil

    shutil.copy("/bin/true", tmp_path / "mytrue")
    rules = [*confine.SYSTEM_RULES, ("--rw", str(tmp_path))]
    out = _run(rules, f"{tmp_path}/mytrue && echo exec-ok; /usr/bin/true && echo system-ok")
    assert "exec-ok" not in out.stdout and "system-ok" in out.stdout
    if kernel.abi >= 4:
        code = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print('bound')"
        out = subprocess.run([*confine.command(confine.SYSTEM_RULES), "/usr/bin/python3", "-I", "-S", "-c", code],
                             capture_output=True, text=True, timeout=30)
        assert "bound" not in out.stdout and "PermissionError" in out.stderr


def test_forced_unavailable_and_bad_usage(monkeypatch):
    monkeypatch.setenv(confine.FORCE_OFF_ENV, "1")
    support = confine.probe()
    assert not support.available and confine.FORCE_OFF_ENV in support.reason
    assert support.describe().startswith("NOT confined: ")
    # the launcher never runs a command unconfined
    out = subprocess.run([sys.executable, confine.__file__, "--rw", "/tmp", "--", "/bin/true"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 126 and "dbkeep confine:" in out.stderr
    for argv in (["--rw", "relative", "--", "true"], ["--bogus", "/x", "--", "true"], ["--rw", "/x", "--"]):
        with pytest.raises(confine.ConfineError):
            confine.parse(argv)


def test_unconfined_engine_command_has_no_launcher(tmp_path):
    from dbkeep.engines.local import LocalDriver
    from dbkeep.engines.osuser import engine_user

    user = engine_user()
    off = LocalDriver(tmp_path, supervisor=None, user=user, confinement=confine.Support(0, "test"))
    on = LocalDriver(tmp_path, supervisor=None, user=user, confinement=confine.Support(7))
    layout = off.postgres.layout("cluster-UNIT")
    layout.ensure_root()
    assert off.postgres.command(layout, ["postgres"], switch_user=False) == ["postgres"]
    argv = on.mariadb.command(layout, ["mariadbd"], switch_user=False)
    assert argv[-2:] == ["--", "mariadbd"] and argv[argv.index("--rw") + 1] == str(layout.data)
    assert ("--ro", str(layout.root / "plugins")) in zip(argv, argv[1:])
    assert str(layout.root) not in argv          # not the cluster directory itself (its secret)
