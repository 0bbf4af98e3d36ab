"""Test stand-in for the gateway's side of an IAM login on an engine's private socket: answers
the MariaDB plugin's switch with the proof for the connection's id, or mints a PostgreSQL nonce,
with the proof made from the cluster's key (identity/engine_proof.py)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pymysql

from dbkeep.identity import engine_proof


def proof_key(iam_dir: Path) -> bytes:
    return engine_proof.ProofKeys().key(iam_dir)


class _ProofAnswer:
    answer = None  # (connection id: int) -> bytes
    seen: list = []

    def __init__(self, con):
        self.con = con

    def authenticate(self, pkt):
        type(self).seen.append(pkt.read_all())  # the switch's plugin data (empty)
        self.con.write_packet(type(self).answer(self.con.server_thread_id[0]))
        return self.con._read_packet()


def mysql_iam_login(socket: str, user: str, answer, **kw) -> pymysql.Connection:
    """Log in on the engine's socket, answering its AuthSwitchRequest with ``answer(connection
    id)`` (``conn.seen`` holds the switches' plugin data)."""
    handler = type("Handler", (_ProofAnswer,), {"answer": staticmethod(answer), "seen": []})
    conn = pymysql.connect(unix_socket=socket, user=user, password="", autocommit=True, connect_timeout=5,
                           auth_plugin_map={"mysql_clear_password": handler}, **{"ssl_disabled": True, **kw})
    conn.seen = handler.seen
    return conn


def mysql_proof_login(socket: str, iam_dir: Path, user: str) -> pymysql.Connection:
    key = proof_key(iam_dir)
    return mysql_iam_login(socket, user, lambda thread: engine_proof.mysql_proof(key, thread, user))


def pg_proof(iam_dir: Path, user: str) -> str:
    return engine_proof.pg_proof(proof_key(iam_dir), engine_proof.mint_pg_nonce(iam_dir), user)


def pg_proof_login(run_dir: str, iam_dir: Path, user: str, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(host=run_dir, port=5432, user=user, password=pg_proof(iam_dir, user), dbname=dbname,
                           autocommit=True, connect_timeout=5)
