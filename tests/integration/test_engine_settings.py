"""The curated engine settings table and its validation, and the password verifiers (no engine
needed; the verifiers are proved against real engines by every login in the other files)."""

from __future__ import annotations

import hashlib

import pytest

from dbkeep.engines import settings as es
from dbkeep.engines.passwords import mysql_native_hash, scram_sha256_verifier


def test_table_is_complete_and_consistent():
    for engine in ("mysql", "postgres"):
        rows = es.settings_for(engine)
        assert len(rows) >= 12
        assert len({s.name for s in rows}) == len(rows)
        for s in rows:
            assert s.apply_type in (es.DYNAMIC, es.STATIC) and s.description and s.allowed_values
            assert s.data_type in ("integer", "float", "boolean", "string", "list")
            if s.default is not None:
                assert s.validate(s.default) == s.default, s.name
    names = {(s.engine, s.name) for s in es.SETTINGS}
    for n in ("max_connections", "time_zone", "general_log", "slow_query_log", "long_query_time", "wait_timeout",
              "innodb_lock_wait_timeout", "sql_mode"):
        assert ("mysql", n) in names
    for n in ("max_connections", "timezone", "log_min_duration_statement", "log_statement", "statement_timeout",
              "idle_in_transaction_session_timeout", "work_mem"):
        assert ("postgres", n) in names
    assert es.lookup("aurora-postgresql", "max_connections").apply_type == es.STATIC
    assert es.lookup("aurora-mysql", "max_connections").apply_type == es.DYNAMIC


@pytest.mark.parametrize("engine,name,value,expected", [
    ("mysql", "max_connections", " 500 ", "500"),
    ("mysql", "general_log", "ON", "1"),
    ("mysql", "general_log", "0", "0"),
    ("mysql", "long_query_time", "0.5", "0.5"),
    ("mysql", "sql_mode", "strict_trans_tables, ansi_quotes", "STRICT_TRANS_TABLES,ANSI_QUOTES"),
    ("mysql", "sql_mode", "", ""),
    ("mysql", "time_zone", "+2:00", "+02:00"),
    ("mysql", "time_zone", "Europe/Paris", "Europe/Paris"),
    ("mysql", "time_zone", "utc", "UTC"),
    ("mysql", "time_zone", "system", "SYSTEM"),
    ("mysql", "event_scheduler", "on", "ON"),
    ("postgres", "log_statement", "ALL", "all"),
    ("postgres", "timezone", "America/New_York", "America/New_York"),
    ("postgres", "log_min_duration_statement", "-1", "-1"),
    ("postgres", "default_transaction_isolation", "Repeatable Read", "repeatable read"),
])
def test_validate_normalises(engine, name, value, expected):
    assert es.validate(engine, name, value) == expected


@pytest.mark.parametrize("engine,name,value,words", [
    ("mysql", "max_connections", "0", "outside the allowed range 10-100000"),
    ("mysql", "max_connections", "lots", "not an integer"),
    ("mysql", "general_log", "maybe", "0,1"),
    ("mysql", "sql_mode", "STRICT_TRANS_TABLES,NOPE", "unknown item(s) NOPE"),
    ("mysql", "time_zone", "Mars/Olympus", "time_zone"),
    ("mysql", "time_zone", "+15:00", "time_zone"),
    ("postgres", "work_mem", "4MB", "not an integer"),
    ("postgres", "log_statement", "everything", "none,ddl,mod,all"),
    ("postgres", "timezone", "Europe/Paris'; DROP", "timezone"),
    ("postgres", "work_mem", "64\n", "control characters"),
    ("postgres", "shared_preload_libraries", "x", "not a modifiable"),
    ("oracle", "x", "1", "unknown engine"),
])
def test_validate_refuses(engine, name, value, words):
    with pytest.raises(ValueError) as ei:
        es.validate(engine, name, value)
    assert words in str(ei.value)


def test_mysql_native_hash_matches_password_function():
    # SELECT PASSWORD('secret') on MariaDB
    assert mysql_native_hash("secret") == "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
    assert mysql_native_hash("x") == "*" + hashlib.sha1(hashlib.sha1(b"x").digest()).hexdigest().upper()


def test_scram_verifier_against_rfc7677_exchange():
    """RFC 7677 section 3: user "user", password "pencil". The client proof and server signature
    of that exchange must check out against our StoredKey and ServerKey."""
    import base64
    import hmac

    salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    v = scram_sha256_verifier("pencil", salt=salt, iterations=4096)
    prefix, rest = v.split("$", 1)
    iters_salt, keys = rest.split("$")
    assert prefix == "SCRAM-SHA-256" and iters_salt == "4096:W22ZaJ0SNY7soEsUEjb6gQ=="
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    auth_message = (f"n=user,r=rOprNGfwEbeRWgbNEkqO,r={nonce},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
                    f"c=biws,r={nonce}").encode()
    proof = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client_signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(proof, client_signature))
    assert hashlib.sha256(client_key).digest() == stored_key
    assert base64.b64encode(hmac.new(server_key, auth_message, hashlib.sha256).digest()).decode() == \
        "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert scram_sha256_verifier("pencil") != scram_sha256_verifier("pencil")     # random salt
