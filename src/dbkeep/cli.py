"""Command line: argument parsing only. ``dbkeep up | env | ca | status | audit``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dbkeep import __version__
from dbkeep.audit.log import DEFAULT_KEEP, DEFAULT_MAX_BYTES
from dbkeep.config import CLUSTER_KEY_ENV, DEFAULT_API_PORT, DEFAULT_HOST, DEFAULT_HOSTNAME, DEFAULT_REGION, Config, default_relay_threads, default_state_dir
from dbkeep.errors import DbkeepError

LOG_LEVELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "warn": "WARNING", "error": "ERROR", "critical": "CRITICAL"}


def log_level(value: str) -> str:
    """``--log-level`` in any case (debug, INFO, Warn …): the logging module's name for it."""
    try:
        return LOG_LEVELS[value.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown log level {value!r} (choose from debug, info, warning, error, critical)") from None


STATE_HELP = f"state directory (default: {default_state_dir()}; /var/lib/dbkeep for root, ~/.local/state/dbkeep otherwise)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dbkeep",
        description="dbkeep: a self-hosted database security plane in the Amazon Aurora mould (MariaDB, PostgreSQL).",
    )
    parser.add_argument("--version", action="version", version=f"dbkeep {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="run dbkeep in the foreground (API, web console, gateway, engines)")
    up.add_argument("--state-dir", help=STATE_HELP)
    up.add_argument("--host", default=DEFAULT_HOST, help=f"IP address to listen on (default {DEFAULT_HOST})")
    up.add_argument("--api-port", type=int, default=DEFAULT_API_PORT, help=f"management API port, also serving the web console at /console (default {DEFAULT_API_PORT}; 0 picks a free port)")
    up.add_argument("--hostname", default=DEFAULT_HOSTNAME, help=f"name written into endpoints and certificates (default {DEFAULT_HOSTNAME})")
    up.add_argument("--region", default=DEFAULT_REGION, help=f"region reported in ARNs and the AWS config file (default {DEFAULT_REGION})")
    up.add_argument("--catalog-url", help="catalog database URL (default: SQLite file in the state dir; postgresql://… to share one)")
    up.add_argument("--node-name", default=None,
                    help="this host's name among the hosts sharing a PostgreSQL catalog (default: the machine's host name)")
    up.add_argument("--availability-zone", default=None, metavar="ZONE",
                    help="the availability zone this host stands for: clusters created with AvailabilityZones=[ZONE] "
                         "run here (default: REGION + 'a')")
    up.add_argument("--cluster-key-file", metavar="FILE",
                    help=f"the key (0600) every host sharing a PostgreSQL catalog is given: it seals the CA key and the "
                         f"catalog's secrets in the catalog (default: the {CLUSTER_KEY_ENV} environment variable)")
    up.add_argument("--handshake-timeout", type=float, default=10.0,
                    help="seconds a database client has from connect to a finished login (default 10)")
    up.add_argument("--first-byte-timeout", type=float, default=3.0,
                    help="seconds a database client has to send its first byte (MySQL: its first packet after the "
                         "greeting) before it is closed (default 3; at most --handshake-timeout)")
    up.add_argument("--max-connections", type=int, default=1000,
                    help="open database connections per cluster at the gateway (default 1000; a cluster's instance "
                         "class may allow fewer: Aurora's max_connections less 10 kept for rdsadmin)")
    up.add_argument("--max-pending-logins", type=int, default=64,
                    help="connections per source address (IPv6: per /64) and cluster that have not finished logging in; "
                         "more are refused at accept (default 64; at most half a cluster's limit)")
    up.add_argument("--refusal-log-interval", type=float, default=60.0,
                    help="seconds between audit summaries of refused, timed-out and failed connections (protocol "
                         "errors, failed TLS handshakes, hang-ups before a login), per source and reason "
                         "(the first one is logged at once; default 60)")
    up.add_argument("--relay-threads", type=int, default=default_relay_threads(),
                    help="native threads relaying logged-in MySQL and PostgreSQL sessions (default: one per CPU, "
                         f"here {default_relay_threads()}; 0 relays them in the event loop)")
    up.add_argument("--log-level", default="INFO", type=log_level, metavar="LEVEL",
                    help="debug, info, warning, error or critical, in any case (default info)")

    up.add_argument("--audit-max-bytes", type=int, default=DEFAULT_MAX_BYTES, metavar="BYTES",
                    help=f"size at which DIR/audit.log is rotated to audit.log.1 (default {DEFAULT_MAX_BYTES // 2**20} MiB)")
    up.add_argument("--audit-keep", type=int, default=DEFAULT_KEEP, metavar="N",
                    help=f"rotated audit files kept (audit.log.1 … .N; the oldest beyond is deleted; default {DEFAULT_KEEP})")

    up.add_argument("--metrics-token-file", metavar="FILE",
                    help="GET /metrics on the API port asks for 'Authorization: Bearer <the file's token>' "
                         "(default: no credentials, loopback scrapers only)")

    audit = sub.add_parser("audit", help="search the audit trail (DIR/audit.log and its rotated files)",
                           description="Print the audit events that match every filter given, oldest first.")
    audit.add_argument("--state-dir", help=STATE_HELP)
    audit.add_argument("--since", help="only events since then: a duration before now (15m, 1h, 2d) or an ISO 8601 time")
    audit.add_argument("--until", help="only events until then (same forms as --since)")
    audit.add_argument("--cluster", help="a DBClusterIdentifier or DbClusterResourceId")
    audit.add_argument("--principal", help="an IAM principal's ARN, or its user or role name, or an account id")
    audit.add_argument("--user", help="a database user name (gateway logins)")
    audit.add_argument("--verdict", choices=["allow", "deny", "error"], help="the decision")
    audit.add_argument("--event", help="an event name or glob: gateway.login, api.*, engine.repaired …")
    audit.add_argument("--source-ip", help="the client's address")
    audit.add_argument("--limit", type=int, help="only the last N matching events")
    audit.add_argument("--format", choices=["table", "json"], default="table", help="table (default) or JSON lines")

    env = sub.add_parser("env", help="print the export lines for the AWS CLI and SDKs")
    env.add_argument("--state-dir", help=STATE_HELP)

    ca = sub.add_parser("ca", help="print dbkeep's CA certificate (PEM)")
    ca.add_argument("--state-dir", help=STATE_HELP)

    status = sub.add_parser("status", help="say whether dbkeep runs on a state dir, and list its clusters and instances")
    status.add_argument("--state-dir", help=STATE_HELP)
    status.add_argument("--catalog-url", help="the shared PostgreSQL catalog to list hosts from (default: the one "
                                              "`dbkeep up` last used on this state dir)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from dbkeep.app import run_foreground, state_dir_of
    from dbkeep.statedir import export_lines

    state_dir = state_dir_of(getattr(args, "state_dir", None))
    try:
        if args.command == "up":
            logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
            config = Config(
                state_dir=state_dir,
                host=args.host,
                api_port=args.api_port,
                hostname=args.hostname,
                region=args.region,
                catalog_url=args.catalog_url,
                handshake_timeout=args.handshake_timeout,
                first_byte_timeout=args.first_byte_timeout,
                max_connections=args.max_connections,
                max_pending_logins=args.max_pending_logins,
                refusal_log_interval=args.refusal_log_interval,
                relay_threads=args.relay_threads,
                audit_max_bytes=args.audit_max_bytes,
                audit_keep=args.audit_keep,
                metrics_token_file=Path(args.metrics_token_file) if args.metrics_token_file else None,
                availability_zone=args.availability_zone,
                cluster_key_file=Path(args.cluster_key_file).expanduser().absolute() if args.cluster_key_file else None,
                **({"node_name": args.node_name} if args.node_name else {}),
            )
            return run_foreground(config)
        if args.command == "env":
            if not (state_dir / "credentials").exists():
                print(f"dbkeep: no dbkeep state in {state_dir}; run `dbkeep up` first", file=sys.stderr)
                return 1
            print("\n".join(export_lines(state_dir)))
            return 0
        if args.command == "audit":
            return _audit(args, state_dir)
        if args.command == "status":
            from dbkeep.status import describe

            text, running = describe(state_dir, args.catalog_url)
            print(text)
            return 0 if running else 3
        if args.command == "ca":
            ca = state_dir / "ca.pem"
            if not ca.exists():
                print(f"dbkeep: no CA in {state_dir}; run `dbkeep up` first", file=sys.stderr)
                return 1
            sys.stdout.write(ca.read_text())
            return 0
    except DbkeepError as exc:
        print(f"dbkeep: {exc.message}", file=sys.stderr)
        return 2
    return 2


def _audit(args: argparse.Namespace, state_dir) -> int:
    import datetime as dt

    from dbkeep.audit import query

    path = state_dir / "audit.log"
    if not query.log_files(path):
        print(f"dbkeep: no audit log in {state_dir}; run `dbkeep up` first", file=sys.stderr)
        return 1
    if args.limit is not None and args.limit < 1:
        raise DbkeepError("--limit must be a positive number")
    now = dt.datetime.now(dt.timezone.utc)
    filters = query.Filters(
        since=query.parse_time(args.since, now) if args.since else None,
        until=query.parse_time(args.until, now) if args.until else None,
        cluster=args.cluster, principal=args.principal, user=args.user, verdict=args.verdict, event=args.event,
        source_ip=args.source_ip)
    stats = query.ReadStats()
    events = query.select(query.read_events(path, stats), filters, args.limit)
    text = query.format_json(events) if args.format == "json" else query.format_table(events)
    if text:
        print(text)
    if stats.unreadable_lines:
        print(f"dbkeep: {stats.unreadable_lines} line(s) of the audit log are not events (a write cut short?)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
