"""The AWS CLI plugin of DIR/config-plugin (dbkeep/awscli_endpoint.py): the profile's
endpoint_url becomes the command line's unless --endpoint-url was given; the file dbkeep writes
beside the config is this module, standalone, and the config names it."""

from __future__ import annotations

import ast
from argparse import Namespace
from pathlib import Path

from dbkeep import awscli_endpoint
from dbkeep.statedir import aws_plugin_config_path, write_aws_files


class Session:
    def __init__(self, config: dict[str, str]) -> None:
        self.config = config

    def get_scoped_config(self) -> dict[str, str]:
        return self.config


class Emitter:
    def __init__(self) -> None:
        self.handlers: list[tuple[str, object]] = []

    def register(self, event: str, handler: object) -> None:
        self.handlers.append((event, handler))


def test_the_profiles_endpoint_url_unless_one_was_given() -> None:
    emitter = Emitter()
    awscli_endpoint.awscli_initialize(emitter)
    [(event, handler)] = emitter.handlers
    assert event == "session-initialized"
    parsed = Namespace(endpoint_url=None)
    handler(session=Session({"endpoint_url": "http://127.0.0.1:8790"}), parsed_args=parsed)  # type: ignore[operator]
    assert parsed.endpoint_url == "http://127.0.0.1:8790"
    given = Namespace(endpoint_url="http://elsewhere:1")
    handler(session=Session({"endpoint_url": "http://127.0.0.1:8790"}), parsed_args=given)  # type: ignore[operator]
    assert given.endpoint_url == "http://elsewhere:1"
    none = Namespace(endpoint_url=None)
    handler(session=Session({}), parsed_args=none)  # type: ignore[operator]
    assert none.endpoint_url is None


def test_dbkeep_writes_the_plugin_and_its_config(tmp_path: Path) -> None:
    write_aws_files(tmp_path, "AKIDEXAMPLE", "secret", "us-east-1", "http://127.0.0.1:8790")
    plugin = tmp_path / "awscli-plugins" / "dbkeep_endpoint.py"
    source = plugin.read_text()
    imports = [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert imports == []  # loaded by any CLI's Python, without dbkeep
    assert (plugin.stat().st_mode & 0o777) == 0o600
    config = aws_plugin_config_path(tmp_path).read_text()
    assert config.startswith((tmp_path / "config").read_text())
    assert f"[plugins]\ncli_legacy_plugin_path = {plugin.parent}\ndbkeep_endpoint = dbkeep_endpoint\n" in config
    assert "[plugins]" not in (tmp_path / "config").read_text()  # AWS CLI v1 would stop at it
