"""Instance classes and connection limits (rds/capacity.py): Aurora's max_connections per class,
the engine's value and the gateway's limit derived from it, and their options."""

from __future__ import annotations

import pytest

from dbkeep.cli import build_parser
from dbkeep.config import Config
from dbkeep.errors import ConfigError
from dbkeep.gateway.listener import GatewayContext, Limits
from dbkeep.rds import capacity
from dbkeep.rds.capacity import ENGINE_RESERVE, MYSQL, POSTGRES, RDSADMIN_RESERVE

# AWS Aurora User Guide, "Maximum connections to an Aurora MySQL DB instance" (default values)
AURORA_MYSQL_TABLE = {
    "db.t3.small": 45, "db.t3.medium": 90, "db.t3.large": 135, "db.t4g.medium": 90, "db.t4g.large": 135,
    "db.r5.large": 1000, "db.r5.xlarge": 2000, "db.r5.2xlarge": 3000, "db.r5.4xlarge": 4000, "db.r5.8xlarge": 5000,
    "db.r5.12xlarge": 6000, "db.r5.16xlarge": 6000, "db.r5.24xlarge": 7000,
    "db.r6g.large": 1000, "db.r6g.xlarge": 2000, "db.r6g.2xlarge": 3000, "db.r6g.4xlarge": 4000,
    "db.r6g.8xlarge": 5000, "db.r6g.12xlarge": 6000, "db.r6g.16xlarge": 6000,
}


@pytest.mark.parametrize(("instance_class", "expected"), sorted(AURORA_MYSQL_TABLE.items()))
def test_aurora_mysql_max_connections_match_aws_table(instance_class, expected):
    assert capacity.aurora_max_connections(MYSQL, instance_class) == expected


def test_aurora_postgresql_max_connections_follow_memory():
    # LEAST({DBInstanceClassMemory/9531392},5000), memory as GiB x 10^9 (AWS's worked example)
    assert capacity.aurora_max_connections(POSTGRES, "db.t3.medium") == 419
    assert capacity.aurora_max_connections(POSTGRES, "db.r6g.large") == 1678
    assert capacity.aurora_max_connections(POSTGRES, "db.r6g.xlarge") == 3357
    assert capacity.aurora_max_connections(POSTGRES, "db.r6g.2xlarge") == 5000
    assert capacity.aurora_max_connections(POSTGRES, "db.r7i.48xlarge") == 5000


def test_unknown_classes_are_refused():
    for bad in ("db.r6g.huge", "r6g.large", "", "db.serverless", "db.r6g.48xlarge"):
        with pytest.raises(ValueError):
            capacity.memory_gib(bad)


def test_the_cluster_counts_its_largest_class_or_the_parameter_group():
    assert capacity.cluster_max_connections(MYSQL, ["db.t3.medium", "db.r6g.xlarge", "db.r6g.large"]) == 2000
    assert capacity.cluster_max_connections(POSTGRES, ["db.t3.medium"]) == 419
    assert capacity.cluster_max_connections(MYSQL, []) == 1000  # no instance: the default class
    assert capacity.cluster_max_connections(MYSQL, ["db.t3.medium"], "77") == 77  # the group's value wins
    # Aurora's formula as the group's (default) value: the class decides
    assert capacity.cluster_max_connections(POSTGRES, ["db.t3.medium"], "LEAST({DBInstanceClassMemory/9531392},5000)") == 419


@pytest.mark.parametrize(("cluster_value", "gateway_max", "pending_max", "engine", "gateway", "pending"), [
    (1000, 1000, 64, 1000, 990, 64),  # db.r6g.large MySQL: SHOW max_connections says 1000, as on Aurora
    (1678, 100, 64, 110, 100, 50),  # --max-connections below the class: no engine slots the gateway cannot fill
    (90, 1000, 64, 90, 80, 40),  # db.t3.medium MySQL: the class decides
    (77, 1000, 64, 77, 67, 33),  # the parameter group's value
    (10, 1, 64, 11, 1, 1),  # never below one client
    (5, 1000, 64, 11, 1, 1),
])
def test_connection_limits(cluster_value, gateway_max, pending_max, engine, gateway, pending):
    limits = capacity.connection_limits(cluster_value, gateway_max, pending_max)
    assert (limits.engine, limits.gateway, limits.pending_per_source) == (engine, gateway, pending)
    # the invariant: the engine always has room for every gateway connection plus the reserve
    assert limits.engine >= limits.gateway + ENGINE_RESERVE and limits.reserve == ENGINE_RESERVE
    assert ENGINE_RESERVE > RDSADMIN_RESERVE  # rdsadmin's slots and room for exiting backends
    assert limits.pending_per_source <= max(1, limits.gateway // 2)


def test_the_gateway_takes_the_smaller_of_the_engine_values_in_force():
    assert capacity.gateway_limit(("1000", "110")) == 100  # e.g. PostgreSQL before the reboot that raises it
    assert capacity.gateway_limit(("110", 1000)) == 100
    assert capacity.gateway_limit(("LEAST({DBInstanceClassMemory/9531392},5000)", "90")) == 80
    assert capacity.gateway_limit((None, "formula")) is None
    assert capacity.gateway_limit(("5",)) == 1


def test_the_context_applies_cluster_and_pending_limits():
    from types import SimpleNamespace

    ctx = GatewayContext(resolver=None, audit=None, clock=None, limits=Limits(max_connections=1000, max_pending_logins=64))  # type: ignore[arg-type]
    assert ctx.cluster_limit(None) == 1000 and ctx.pending_limit(None) == 64
    small = SimpleNamespace(max_connections=80)
    assert ctx.cluster_limit(small) == 80 and ctx.pending_limit(small) == 40  # type: ignore[arg-type]
    ctx.limits = Limits(max_connections=1, max_pending_logins=64)
    assert ctx.cluster_limit(small) == 1 and ctx.pending_limit(small) == 1  # type: ignore[arg-type]
    assert Limits(handshake_timeout=2, first_byte_timeout=3).first_byte_deadline == 2


# --- options ------------------------------------------------------------------------------------


def test_option_defaults(tmp_path):
    args = build_parser().parse_args(["up"])
    assert (args.first_byte_timeout, args.max_pending_logins, args.refusal_log_interval) == (3.0, 64, 60.0)
    config = Config(state_dir=tmp_path)
    assert (config.first_byte_timeout, config.max_pending_logins, config.refusal_log_interval) == (3.0, 64, 60.0)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("first_byte_timeout", 0.1, "--first-byte-timeout must be between 0.5 and 600 seconds, not 0.1"),
    ("first_byte_timeout", 601, "--first-byte-timeout must be between 0.5 and 600 seconds"),
    ("max_pending_logins", 0, "--max-pending-logins must be between 1 and 100000, not 0"),
    ("max_pending_logins", 100_001, "--max-pending-logins must be between 1 and 100000"),
    ("refusal_log_interval", 0.5, "--refusal-log-interval must be between 1 and 3600 seconds, not 0.5"),
    ("refusal_log_interval", 4000, "--refusal-log-interval must be between 1 and 3600 seconds"),
])
def test_options_are_validated(tmp_path, field, value, message):
    with pytest.raises(ConfigError) as exc:
        Config(state_dir=tmp_path, **{field: value})
    assert message in exc.value.message


def test_options_reach_dbkeep_up(tmp_path, monkeypatch):
    import dbkeep.app
    from dbkeep import cli

    seen = {}
    monkeypatch.setattr(dbkeep.app, "run_foreground", lambda config: seen.setdefault("config", config) and 0)
    cli.main(["up", "--state-dir", str(tmp_path), "--first-byte-timeout", "1.5", "--max-pending-logins", "7",
              "--refusal-log-interval", "5"])
    config = seen["config"]
    assert (config.first_byte_timeout, config.max_pending_logins, config.refusal_log_interval) == (1.5, 7, 5.0)
    assert cli.main(["up", "--state-dir", str(tmp_path), "--max-pending-logins", "0"]) == 2


def test_the_parameter_accepts_aurora_formula_as_its_default():
    from dbkeep.engines import settings as es

    for engine, formula in (("aurora-mysql", es.MYSQL_MAX_CONNECTIONS), ("aurora-postgresql", es.POSTGRES_MAX_CONNECTIONS)):
        assert es.validate(engine, "max_connections", formula) == formula
        assert es.validate(engine, "max_connections", " 500 ") == "500"
        with pytest.raises(ValueError, match="not an integer"):
            es.validate(engine, "max_connections", "LEAST({DBInstanceClassMemory/1},5000)")
    assert "max_connections" not in es.defaults("mysql")  # a formula is no literal default
