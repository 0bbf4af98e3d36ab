"""`dbkeep` argument parsing: the spellings people type are accepted, others get a clear error."""

from __future__ import annotations

import pytest

from dbkeep.cli import build_parser


@pytest.mark.parametrize("spelling, level", [
    ("debug", "DEBUG"), ("DEBUG", "DEBUG"), ("Info", "INFO"), ("warning", "WARNING"), ("warn", "WARNING"),
    ("WARN", "WARNING"), ("error", "ERROR"), ("critical", "CRITICAL"),
])
def test_log_level_accepts_the_usual_spellings(spelling: str, level: str) -> None:
    assert build_parser().parse_args(["up", "--log-level", spelling]).log_level == level


def test_log_level_default_is_info() -> None:
    assert build_parser().parse_args(["up"]).log_level == "INFO"


def test_an_unknown_log_level_is_refused_with_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["up", "--log-level", "verbose"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown log level 'verbose'" in err and "debug, info, warning, error, critical" in err
