"""Start and stop ``dbkeep up`` as a real subprocess for end-to-end tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
from botocore.config import Config as BotoConfig

READY = re.compile(r"dbkeep ready: API (http://\S+)")


class DbkeepProcess:
    def __init__(self, state_dir: Path, *, fake_time_file: Path | None = None, extra_args: list[str] | None = None,
                 extra_env: dict[str, str] | None = None, interpreter_args: list[str] | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.extra_env = extra_env or {}
        self.fake_time_file = fake_time_file
        self.extra_args = extra_args or []
        self.interpreter_args = interpreter_args or []  # e.g. ["-m", "cProfile", "-o", FILE] (bench/iam_login.py)
        self.proc: subprocess.Popen[str] | None = None
        self.url: str | None = None
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["AWS_CONFIG_FILE"] = str(self.state_dir / "config")
        env["AWS_SHARED_CREDENTIALS_FILE"] = str(self.state_dir / "credentials")
        return env

    def start(self, timeout: float = 60) -> "DbkeepProcess":
        env = {**os.environ, **self.extra_env}
        if self.fake_time_file is not None:
            env["DBKEEP_FAKE_TIME_FILE"] = str(self.fake_time_file)
        cmd = [sys.executable, *self.interpreter_args, "-m", "dbkeep", "up", "--state-dir", str(self.state_dir), "--api-port", "0", *self.extra_args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr_lines), daemon=True).start()
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.stdout_lines.append(line)
            m = READY.search(line)
            if m:
                self.url = m.group(1)
                threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout_lines), daemon=True).start()
                return self
        self.stop()
        raise RuntimeError("dbkeep up did not become ready:\n" + "".join(self.stdout_lines + self.stderr_lines))

    @staticmethod
    def _pump(stream, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)

    def stop(self, timeout: float = 60) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def logs(self) -> str:
        return "".join(self.stdout_lines) + "".join(self.stderr_lines)

    def root_credentials(self) -> tuple[str, str]:
        text = (self.state_dir / "credentials").read_text()
        key = re.search(r"aws_access_key_id = (\S+)", text).group(1)
        secret = re.search(r"aws_secret_access_key = (\S+)", text).group(1)
        return key, secret

    def client(self, service: str, key: str | None = None, secret: str | None = None, token: str | None = None, region: str = "us-east-1"):
        if key is None:
            key, secret = self.root_credentials()
        return boto3.session.Session().client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            aws_session_token=token,
            config=BotoConfig(retries={"max_attempts": 1}),
        )
