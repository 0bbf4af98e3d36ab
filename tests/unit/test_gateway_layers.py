"""The gateway's layers: the sans-I/O packages import no asyncio and no socket code.

DESIGN.md, house style: ``gateway/mysql`` and ``gateway/postgres`` (and the contract they share,
``gateway/sansio.py``) are pure protocol code, driven by the asyncio drivers in
``gateway/drivers/``. This is checked on the source (every ``import`` of every module, not
only the ones executed) and in a fresh interpreter (what importing them loads).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import dbkeep.gateway

GATEWAY = Path(dbkeep.gateway.__file__).parent
PURE = [GATEWAY / "sansio.py", *sorted((GATEWAY / "mysql").glob("*.py")), *sorted((GATEWAY / "postgres").glob("*.py"))]
# what a protocol module may not reach: the event loop, sockets, the drivers, the listener
FORBIDDEN = ("asyncio", "uvloop", "socket", "selectors", "ssl", "dbkeep.gateway.drivers", "dbkeep.gateway.listener",
             "dbkeep.gateway.offload")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(GATEWAY)))
def test_protocol_modules_import_no_io(path: Path) -> None:
    assert not {name for name in _imports(path) if _forbidden(name)}


def test_importing_the_protocol_packages_loads_no_io() -> None:
    code = (
        "import json, sys\n"
        "import dbkeep.gateway.sansio, dbkeep.gateway.mysql, dbkeep.gateway.postgres\n"
        "import dbkeep.gateway.mysql.errors, dbkeep.gateway.postgres.errors\n"
        "import dbkeep.gateway.postgres.login, dbkeep.gateway.postgres.cancel, dbkeep.gateway.postgres.startup\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    assert [name for name in loaded if _forbidden(name)] == []


def test_the_drivers_are_the_ones_with_sockets() -> None:
    drivers = sorted((GATEWAY / "drivers").glob("*.py"))
    assert {p.name for p in drivers} >= {"leg.py", "session.py", "mysql.py", "postgres.py"}
    assert any("asyncio" in _imports(p) for p in drivers)


@pytest.mark.parametrize("path", sorted(GATEWAY.rglob("*.py")), ids=lambda p: str(p.relative_to(GATEWAY)))
def test_gateway_modules_stay_small(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= 700


def test_both_protocols_spell_the_contract_alike() -> None:
    """The same names for the same ideas (gateway/sansio.py): signals, tables, machines."""
    from dbkeep.gateway import mysql, postgres, sansio

    for package in (mysql, postgres):
        assert package.NEED_DATA is sansio.NEED_DATA and package.PAUSED is sansio.PAUSED
        assert isinstance(package.CLIENT_TRANSITIONS, sansio.Transitions)
        assert isinstance(package.ENGINE_TRANSITIONS, sansio.Transitions)
        assert {d for (_, d, _) in package.CLIENT_TRANSITIONS} == {sansio.RECV, sansio.SEND}
        for machine in (package.ClientFacing, package.EngineFacing):
            for name in ("receive_data", "next_event", "send", "trailing_data"):
                assert hasattr(machine, name), (machine, name)
        assert hasattr(package.ClientFacing, "tls") and hasattr(package.ClientFacing, "tls_established")
