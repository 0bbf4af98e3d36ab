"""Byte vectors captured from real clients against a real PostgreSQL 15.18 server, replayed
through the sans-I/O PostgreSQL state machines of the gateway.

How they were captured: a throw-away ``initdb`` cluster (``password_encryption=scram-sha-256``;
pg_hba: md5 for ``md5user``, ``password`` for ``clearuser``, scram-sha-256 for the rest; no
server TLS, so ``sslmode=prefer`` clients got ``N`` and went on in cleartext) behind a small
recording TCP proxy, driven by psql 15, psycopg 3.3 (libpq 18) and asyncpg 0.32. Each
conversation is the list of chunks as read from the sockets: ``"C"`` client to server, ``"S"``
server to client. Passwords: alice/pencil, md5user/secret, clearuser/clear. The refusal replies
were captured by sending the refusal sentinel to the same server over its unix socket.
"""

from __future__ import annotations

import pytest

from dbkeep.errors import DbError, RemoteProtocolError
from dbkeep.gateway.postgres.cancel import CancelKeyRegistry
from dbkeep.gateway.postgres import (
    NEED_DATA,
    PAUSED,
    ClientFacing,
    ClientState,
    EngineFacing,
    EngineState,
)
from dbkeep.gateway.postgres import (
    AuthenticationMD5Password,
    AuthenticationSASL,
    AuthenticationSASLContinue,
    AuthenticationSASLFinal,
    BackendData,
    BackendKeyData,
    CancelRequest,
    ConnectionClosed,
    DirectTlsHello,
    ErrorResponse,
    FrontendMessage,
    GSSENCRequest,
    GSSENCResponse,
    NegotiateProtocolVersion,
    Parse,
    PasswordMessage,
    Query,
    ReadyForQuery,
    SASLInitialResponse,
    SASLResponse,
    SSLRequest,
    SSLResponse,
    StartupMessage,
    Sync,
    Terminate,
    error_response_v2,
    parse_authentication,
)
from dbkeep.gateway.postgres.scram import ScramSecret, ScramSha256Client, ScramSha256Server, md5_password

Conversation = tuple[tuple[str, bytes], ...]

# psql 15, sslmode=prefer (server said N), SCRAM login as alice/pencil, simple queries,
# COPY FROM STDIN, an error, Terminate
PSQL_SCRAM: Conversation = (
    ("C", b'\x00\x00\x00\x08\x04\xd2\x16/'),
    ("S", b'N'),
    (
        "C",
        b'\x00\x00\x007\x00\x03\x00\x00user\x00alice\x00database\x00app\x00application_name\x00'
        b'psql\x00\x00'
    ),
    ("S", b'R\x00\x00\x00\x17\x00\x00\x00\nSCRAM-SHA-256\x00\x00'),
    ("C", b'p\x00\x00\x006SCRAM-SHA-256\x00\x00\x00\x00 n,,n=,r=YY5guPy6ILF3aX6dB3ftqDyi'),
    (
        "S",
        b'R\x00\x00\x00\\\x00\x00\x00\x0br=YY5guPy6ILF3aX6dB3ftqDyig2aX93mxysK/8EKfD8IRMmg8,s=0'
        b'reO9X2i86XStKZTsz0ksg==,i=4096'
    ),
    (
        "C",
        b'p\x00\x00\x00lc=biws,r=YY5guPy6ILF3aX6dB3ftqDyig2aX93mxysK/8EKfD8IRMmg8,p=4cJn6HE+M1n'
        b'M7FX1sF9bYDIk88rJQNUKLug/7PIIMJI='
    ),
    (
        "S",
        b'R\x00\x00\x006\x00\x00\x00\x0cv=I2EvehidAzihRmWLqFjDdpEAgmY1FBoAPtsprj6pcNU=R\x00\x00'
        b'\x00\x08\x00\x00\x00\x00S\x00\x00\x00\x1aapplication_name\x00psql\x00S\x00\x00\x00'
        b'\x19client_encoding\x00UTF8\x00S\x00\x00\x00\x17DateStyle\x00ISO, MDY\x00S\x00\x00'
        b'\x00&default_transaction_read_only\x00off\x00S\x00\x00\x00\x17in_hot_standby\x00off'
        b'\x00S\x00\x00\x00\x19integer_datetimes\x00on\x00S\x00\x00\x00\x1bIntervalStyle\x00pos'
        b'tgres\x00S\x00\x00\x00\x15is_superuser\x00off\x00S\x00\x00\x00\x19server_encoding\x00'
        b'UTF8\x00S\x00\x00\x002server_version\x0015.18 (Debian 15.18-0+deb12u1)\x00S\x00\x00'
        b'\x00 session_authorization\x00alice\x00S\x00\x00\x00#standard_conforming_strings\x00o'
        b'n\x00S\x00\x00\x00\x15TimeZone\x00Etc/UTC\x00K\x00\x00\x00\x0c\x00\x00\x1d\x8c\x88'
        b'\xbe\x99[Z\x00\x00\x00\x05I'
    ),
    ("C", b'Q\x00\x00\x00\x15select 1 as one;\x00'),
    (
        "S",
        b'T\x00\x00\x00\x1c\x00\x01one\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff'
        b'\xff\xff\xff\x00\x00D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x011C\x00\x00\x00\rSELECT 1'
        b'\x00Z\x00\x00\x00\x05I'
    ),
    ("C", b'Q\x00\x00\x00(create temp table t(a int, b text);\x00'),
    ("S", b'C\x00\x00\x00\x11CREATE TABLE\x00Z\x00\x00\x00\x05I'),
    ("C", b'Q\x00\x00\x00\x17copy t from stdin;\x00'),
    ("S", b'G\x00\x00\x00\x0b\x00\x00\x02\x00\x00\x00\x00'),
    ("C", b'd\x00\x00\x00\x131\tone\n2\ttwo\n\\.\nc\x00\x00\x00\x04'),
    ("S", b'C\x00\x00\x00\x0bCOPY 2\x00Z\x00\x00\x00\x05I'),
    ("C", b'Q\x00\x00\x00\x15select * from t;\x00'),
    (
        "S",
        b'T\x00\x00\x00.\x00\x02a\x00\x00\x00@\t\x00\x01\x00\x00\x00\x17\x00\x04\xff\xff\xff'
        b'\xff\x00\x00b\x00\x00\x00@\t\x00\x02\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00D'
        b'\x00\x00\x00\x12\x00\x02\x00\x00\x00\x011\x00\x00\x00\x03oneD\x00\x00\x00\x12\x00\x02'
        b'\x00\x00\x00\x012\x00\x00\x00\x03twoC\x00\x00\x00\rSELECT 2\x00Z\x00\x00\x00\x05I'
    ),
    ("C", b'Q\x00\x00\x00\x10select 1/0;\x00'),
    (
        "S",
        b'E\x00\x00\x00ASERROR\x00VERROR\x00C22012\x00Mdivision by zero\x00Fint.c\x00L869\x00Ri'
        b'nt4div\x00\x00Z\x00\x00\x00\x05I'
    ),
    ("C", b'X\x00\x00\x00\x04'),
)

# psql 15, sslmode=disable, md5 login as md5user/secret
PSQL_MD5: Conversation = (
    (
        "C",
        b'\x00\x00\x00>\x00\x03\x00\x00user\x00md5user\x00database\x00postgres\x00application_n'
        b'ame\x00psql\x00\x00'
    ),
    ("S", b'R\x00\x00\x00\x0c\x00\x00\x00\x05\xe0.m8'),
    ("C", b'p\x00\x00\x00(md51d5d5fe0dafc5c097e8bd551b818f856\x00'),
    (
        "S",
        b'R\x00\x00\x00\x08\x00\x00\x00\x00S\x00\x00\x00\x1aapplication_name\x00psql\x00S\x00'
        b'\x00\x00\x19client_encoding\x00UTF8\x00S\x00\x00\x00\x17DateStyle\x00ISO, MDY\x00S'
        b'\x00\x00\x00&default_transaction_read_only\x00off\x00S\x00\x00\x00\x17in_hot_standby'
        b'\x00off\x00S\x00\x00\x00\x19integer_datetimes\x00on\x00S\x00\x00\x00\x1bIntervalStyle'
        b'\x00postgres\x00S\x00\x00\x00\x15is_superuser\x00off\x00S\x00\x00\x00\x19server_encod'
        b'ing\x00UTF8\x00S\x00\x00\x002server_version\x0015.18 (Debian 15.18-0+deb12u1)\x00S'
        b'\x00\x00\x00"session_authorization\x00md5user\x00S\x00\x00\x00#standard_conforming_st'
        b'rings\x00on\x00S\x00\x00\x00\x15TimeZone\x00Etc/UTC\x00K\x00\x00\x00\x0c\x00\x00\x1d'
        b'\x93\x15\xb2\xa3\x8dZ\x00\x00\x00\x05I'
    ),
    ("C", b'Q\x00\x00\x00\rselect 2\x00'),
    (
        "S",
        b'T\x00\x00\x00!\x00\x01?column?\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04'
        b'\xff\xff\xff\xff\x00\x00D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x012C\x00\x00\x00\rSELE'
        b'CT 1\x00Z\x00\x00\x00\x05I'
    ),
    ("C", b'X\x00\x00\x00\x04'),
)

# psql 15, SCRAM with a wrong password: FATAL 28P01
PSQL_BAD_PASSWORD: Conversation = (
    (
        "C",
        b'\x00\x00\x007\x00\x03\x00\x00user\x00alice\x00database\x00app\x00application_name\x00'
        b'psql\x00\x00'
    ),
    ("S", b'R\x00\x00\x00\x17\x00\x00\x00\nSCRAM-SHA-256\x00\x00'),
    ("C", b'p\x00\x00\x006SCRAM-SHA-256\x00\x00\x00\x00 n,,n=,r=fXYRnBTVpsZziLw4tVnET9Br'),
    (
        "S",
        b'R\x00\x00\x00\\\x00\x00\x00\x0br=fXYRnBTVpsZziLw4tVnET9BrXxXt+f9HiSPMxHwBMi06A5yH,s=0'
        b'reO9X2i86XStKZTsz0ksg==,i=4096'
    ),
    (
        "C",
        b'p\x00\x00\x00lc=biws,r=fXYRnBTVpsZziLw4tVnET9BrXxXt+f9HiSPMxHwBMi06A5yH,p=t0MQtc746D8'
        b'yMWKXkTFlDorp11yeR8pkrtoZsdmO2hA='
    ),
    (
        "S",
        b'E\x00\x00\x00eSFATAL\x00VFATAL\x00C28P01\x00Mpassword authentication failed for user '
        b'"alice"\x00Fauth.c\x00L334\x00Rauth_failed\x00\x00'
    ),
)

# psql 15, pg_hba method 'password': cleartext login as clearuser/clear
PSQL_CLEARTEXT: Conversation = (
    (
        "C",
        b'\x00\x00\x00@\x00\x03\x00\x00user\x00clearuser\x00database\x00postgres\x00application'
        b'_name\x00psql\x00\x00'
    ),
    ("S", b'R\x00\x00\x00\x08\x00\x00\x00\x03'),
    ("C", b'p\x00\x00\x00\nclear\x00'),
    (
        "S",
        b'R\x00\x00\x00\x08\x00\x00\x00\x00S\x00\x00\x00\x1aapplication_name\x00psql\x00S\x00'
        b'\x00\x00\x19client_encoding\x00UTF8\x00S\x00\x00\x00\x17DateStyle\x00ISO, MDY\x00S'
        b'\x00\x00\x00&default_transaction_read_only\x00off\x00S\x00\x00\x00\x17in_hot_standby'
        b'\x00off\x00S\x00\x00\x00\x19integer_datetimes\x00on\x00S\x00\x00\x00\x1bIntervalStyle'
        b'\x00postgres\x00S\x00\x00\x00\x15is_superuser\x00off\x00S\x00\x00\x00\x19server_encod'
        b'ing\x00UTF8\x00S\x00\x00\x002server_version\x0015.18 (Debian 15.18-0+deb12u1)\x00S'
        b'\x00\x00\x00$session_authorization\x00clearuser\x00S\x00\x00\x00#standard_conforming_'
        b'strings\x00on\x00S\x00\x00\x00\x15TimeZone\x00Etc/UTC\x00K\x00\x00\x00\x0c\x00\x00'
        b'\x1d\xb2\xbb\x15(HZ\x00\x00\x00\x05I'
    ),
    ("C", b'Q\x00\x00\x00\rselect 3\x00'),
    (
        "S",
        b'T\x00\x00\x00!\x00\x01?column?\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04'
        b'\xff\xff\xff\xff\x00\x00D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x013C\x00\x00\x00\rSELE'
        b'CT 1\x00Z\x00\x00\x00\x05I'
    ),
    ("C", b'X\x00\x00\x00\x04'),
)

# psycopg 3.3 (libpq 18), extended protocol with parameters, COPY, an error inside a transaction, ROLLBACK
PSYCOPG_SESSION: Conversation = (
    ("C", b'\x00\x00\x00\x08\x04\xd2\x16/'),
    ("S", b'N'),
    (
        "C",
        b'\x00\x00\x00:\x00\x03\x00\x00user\x00alice\x00database\x00app\x00application_name\x00'
        b'psycopg\x00\x00'
    ),
    ("S", b'R\x00\x00\x00\x17\x00\x00\x00\nSCRAM-SHA-256\x00\x00'),
    ("C", b'p\x00\x00\x006SCRAM-SHA-256\x00\x00\x00\x00 n,,n=,r=LZqWZDwDkjTbqwIOWcYBzg7/'),
    (
        "S",
        b'R\x00\x00\x00\\\x00\x00\x00\x0br=LZqWZDwDkjTbqwIOWcYBzg7/zYu2LNyhyWj+m4p/TZ95Ty8X,s=0'
        b'reO9X2i86XStKZTsz0ksg==,i=4096'
    ),
    (
        "C",
        b'p\x00\x00\x00lc=biws,r=LZqWZDwDkjTbqwIOWcYBzg7/zYu2LNyhyWj+m4p/TZ95Ty8X,p=/CHasV1MBhb'
        b'bA2UFRMy1qzEB12k2x+C4p77ejrX/KBo='
    ),
    (
        "S",
        b'R\x00\x00\x006\x00\x00\x00\x0cv=nTEs1y0M8TbFzBBVQxSMdkt3TB9bFDq7Q3KCPGN3BWk=R\x00\x00'
        b'\x00\x08\x00\x00\x00\x00S\x00\x00\x00\x1dapplication_name\x00psycopg\x00S\x00\x00\x00'
        b'\x19client_encoding\x00UTF8\x00S\x00\x00\x00\x17DateStyle\x00ISO, MDY\x00S\x00\x00'
        b'\x00&default_transaction_read_only\x00off\x00S\x00\x00\x00\x17in_hot_standby\x00off'
        b'\x00S\x00\x00\x00\x19integer_datetimes\x00on\x00S\x00\x00\x00\x1bIntervalStyle\x00pos'
        b'tgres\x00S\x00\x00\x00\x15is_superuser\x00off\x00S\x00\x00\x00\x19server_encoding\x00'
        b'UTF8\x00S\x00\x00\x002server_version\x0015.18 (Debian 15.18-0+deb12u1)\x00S\x00\x00'
        b'\x00 session_authorization\x00alice\x00S\x00\x00\x00#standard_conforming_strings\x00o'
        b"n\x00S\x00\x00\x00\x15TimeZone\x00Etc/UTC\x00K\x00\x00\x00\x0c\x00\x00\x1e\x00'Z\x93"
        b'\x95Z\x00\x00\x00\x05I'
    ),
    ("C", b'Q\x00\x00\x00\nBEGIN\x00'),
    ("S", b'C\x00\x00\x00\nBEGIN\x00Z\x00\x00\x00\x05T'),
    (
        "C",
        b'P\x00\x00\x006\x00select $1::int + 1 as x, $2::text as t\x00\x00\x02\x00\x00\x00\x15'
        b'\x00\x00\x00\x00B\x00\x00\x00\x1f\x00\x00\x00\x02\x00\x01\x00\x00\x00\x02\x00\x00\x00'
        b'\x02\x00)\x00\x00\x00\x03h\xc3\xa9\x00\x01\x00\x00D\x00\x00\x00\x06P\x00E\x00\x00\x00'
        b'\t\x00\x00\x00\x00\x00S\x00\x00\x00\x04'
    ),
    (
        "S",
        b'1\x00\x00\x00\x042\x00\x00\x00\x04T\x00\x00\x00.\x00\x02x\x00\x00\x00\x00\x00\x00\x00'
        b'\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00t\x00\x00\x00\x00\x00\x00\x00\x00\x00'
        b'\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00D\x00\x00\x00\x13\x00\x02\x00\x00\x00\x0242'
        b'\x00\x00\x00\x03h\xc3\xa9C\x00\x00\x00\rSELECT 1\x00Z\x00\x00\x00\x05T'
    ),
    ("C", b"Q\x00\x00\x00'create temp table t(a int, b text)\x00"),
    ("S", b'C\x00\x00\x00\x11CREATE TABLE\x00Z\x00\x00\x00\x05T'),
    ("C", b'Q\x00\x00\x00\x1dcopy t (a, b) from stdin\x00'),
    ("S", b'G\x00\x00\x00\x0b\x00\x00\x02\x00\x00\x00\x00'),
    ("C", b'd\x00\x00\x00\x101\tone\n2\ttwo\nc\x00\x00\x00\x04'),
    ("S", b'C\x00\x00\x00\x0bCOPY 2\x00Z\x00\x00\x00\x05T'),
    ("C", b'Q\x00\x00\x00\x1bselect count(*) from t\x00'),
    (
        "S",
        b'T\x00\x00\x00\x1e\x00\x01count\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x14\x00\x08'
        b'\xff\xff\xff\xff\x00\x00D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x012C\x00\x00\x00\rSELE'
        b'CT 1\x00Z\x00\x00\x00\x05T'
    ),
    (
        "C",
        b'P\x00\x00\x00\x17\x00select 1/$1\x00\x00\x01\x00\x00\x00\x15B\x00\x00\x00\x16\x00\x00'
        b'\x00\x01\x00\x01\x00\x01\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00D\x00\x00\x00\x06P'
        b'\x00E\x00\x00\x00\t\x00\x00\x00\x00\x00S\x00\x00\x00\x04'
    ),
    (
        "S",
        b'1\x00\x00\x00\x04E\x00\x00\x00CSERROR\x00VERROR\x00C22012\x00Mdivision by zero\x00Fin'
        b't.c\x00L1127\x00Rint42div\x00\x00'
    ),
    ("S", b'Z\x00\x00\x00\x05E'),
    ("C", b'Q\x00\x00\x00\rROLLBACK\x00'),
    ("S", b'C\x00\x00\x00\rROLLBACK\x00Z\x00\x00\x00\x05I'),
    ("C", b'X\x00\x00\x00\x04'),
)

# psycopg 3.3, pg_sleep(5) canceled by conn.cancel()
PSYCOPG_CANCELED: Conversation = (
    ("C", b'\x00\x00\x00!\x00\x03\x00\x00user\x00alice\x00database\x00app\x00\x00'),
    ("S", b'R\x00\x00\x00\x17\x00\x00\x00\nSCRAM-SHA-256\x00\x00'),
    ("C", b'p\x00\x00\x006SCRAM-SHA-256\x00\x00\x00\x00 n,,n=,r=HodB/OiLRnbLEy2whxoUNIgN'),
    (
        "S",
        b'R\x00\x00\x00\\\x00\x00\x00\x0br=HodB/OiLRnbLEy2whxoUNIgNyEjiknT+HzbzlZZwbVNMx/ky,s=0'
        b'reO9X2i86XStKZTsz0ksg==,i=4096'
    ),
    (
        "C",
        b'p\x00\x00\x00lc=biws,r=HodB/OiLRnbLEy2whxoUNIgNyEjiknT+HzbzlZZwbVNMx/ky,p=1w3jlHac8di'
        b'nqYGJPPnw6K2ZNYDUCbp3HV5gTkdwWDY='
    ),
    (
        "S",
        b'R\x00\x00\x006\x00\x00\x00\x0cv=pmnUlDGrKzKe2MAV9tvmdqMqPU9yMmxXeLGxl3OWJdI=R\x00\x00'
        b'\x00\x08\x00\x00\x00\x00S\x00\x00\x00\x16application_name\x00\x00S\x00\x00\x00\x19cli'
        b'ent_encoding\x00UTF8\x00S\x00\x00\x00\x17DateStyle\x00ISO, MDY\x00S\x00\x00\x00&defau'
        b'lt_transaction_read_only\x00off\x00S\x00\x00\x00\x17in_hot_standby\x00off\x00S\x00'
        b'\x00\x00\x19integer_datetimes\x00on\x00S\x00\x00\x00\x1bIntervalStyle\x00postgres\x00'
        b'S\x00\x00\x00\x15is_superuser\x00off\x00S\x00\x00\x00\x19server_encoding\x00UTF8\x00S'
        b'\x00\x00\x002server_version\x0015.18 (Debian 15.18-0+deb12u1)\x00S\x00\x00\x00 sessio'
        b'n_authorization\x00alice\x00S\x00\x00\x00#standard_conforming_strings\x00on\x00S\x00'
        b'\x00\x00\x15TimeZone\x00Etc/UTC\x00K\x00\x00\x00\x0c\x00\x00\x1e\x08W\x1c\xd4]Z\x00'
        b'\x00\x00\x05I'
    ),
    ("C", b'Q\x00\x00\x00\nBEGIN\x00'),
    ("S", b'C\x00\x00\x00\nBEGIN\x00Z\x00\x00\x00\x05T'),
    ("C", b'Q\x00\x00\x00\x17select pg_sleep(5)\x00'),
    (
        "S",
        b'T\x00\x00\x00!\x00\x01pg_sleep\x00\x00\x00\x00\x00\x00\x00\x00\x00\x08\xe6\x00\x04'
        b'\xff\xff\xff\xff\x00\x00E\x00\x00\x00hSERROR\x00VERROR\x00C57014\x00Mcanceling statem'
        b'ent due to user request\x00Fpostgres.c\x00L3349\x00RProcessInterrupts\x00\x00'
    ),
    ("S", b'Z\x00\x00\x00\x05E'),
    ("C", b'X\x00\x00\x00\x04'),
)

# the CancelRequest connection psycopg opened for PSYCOPG_CANCELED
PSYCOPG_CANCEL_REQUEST: Conversation = (
    ("C", b'\x00\x00\x00\x10\x04\xd2\x16.\x00\x00\x1e\x08W\x1c\xd4]'),
)

# asyncpg 0.32, named statements (Parse/Describe/Flush, Bind/Execute/Sync), binary COPY
# pipelined after its Query, a canceled statement
ASYNCPG_SESSION: Conversation = (
    ("C", b'\x00\x00\x00\x08\x04\xd2\x16/'),
    ("S", b'N'),
    (
        "C",
        b"\x00\x00\x009\x00\x03\x00\x00client_encoding\x00'utf-8'\x00user\x00alice\x00database"
        b'\x00app\x00\x00'
    ),
    ("S", b'R\x00\x00\x00\x17\x00\x00\x00\nSCRAM-SHA-256\x00\x00'),
    (
        "C",
        b'p\x00\x00\x00CSCRAM-SHA-256\x00\x00\x00\x00-n,,n=alice,r=sChFMr4xbMOA29dNNSvc1t66DthF'
        b'toYR'
    ),
    (
        "S",
        b'R\x00\x00\x00d\x00\x00\x00\x0br=sChFMr4xbMOA29dNNSvc1t66DthFtoYRFAucrTwYM2jZJZc/zgPPQ'
        b'nuA,s=0reO9X2i86XStKZTsz0ksg==,i=4096'
    ),
    (
        "C",
        b'p\x00\x00\x00tc=biws,r=sChFMr4xbMOA29dNNSvc1t66DthFtoYRFAucrTwYM2jZJZc/zgPPQnuA,p=aJX'
        b'3iCMQBsy7oxMVFlL6GH1YfdIZTdsUWMiRV1TzhUw='
    ),
    (
        "S",
        b'R\x00\x00\x006\x00\x00\x00\x0cv=iJ0L1YUeMITxFE/Ra5CcNXN9zpI304ouQcS+V5J4AEM=R\x00\x00'
        b'\x00\x08\x00\x00\x00\x00S\x00\x00\x00\x16application_name\x00\x00S\x00\x00\x00\x19cli'
        b'ent_encoding\x00UTF8\x00S\x00\x00\x00\x17DateStyle\x00ISO, MDY\x00S\x00\x00\x00&defau'
        b'lt_transaction_read_only\x00off\x00S\x00\x00\x00\x17in_hot_standby\x00off\x00S\x00'
        b'\x00\x00\x19integer_datetimes\x00on\x00S\x00\x00\x00\x1bIntervalStyle\x00postgres\x00'
        b'S\x00\x00\x00\x15is_superuser\x00off\x00S\x00\x00\x00\x19server_encoding\x00UTF8\x00S'
        b'\x00\x00\x002server_version\x0015.18 (Debian 15.18-0+deb12u1)\x00S\x00\x00\x00 sessio'
        b'n_authorization\x00alice\x00S\x00\x00\x00#standard_conforming_strings\x00on\x00S\x00'
        b'\x00\x00\x15TimeZone\x00Etc/UTC\x00K\x00\x00\x00\x0c\x00\x00\x1e\x14V\xc1z\xb4Z\x00'
        b'\x00\x00\x05I'
    ),
    (
        "C",
        b'P\x00\x00\x00,__asyncpg_stmt_1__\x00select $1::int * 2\x00\x00\x00D\x00\x00\x00\x18S_'
        b'_asyncpg_stmt_1__\x00H\x00\x00\x00\x04'
    ),
    (
        "S",
        b'1\x00\x00\x00\x04t\x00\x00\x00\n\x00\x01\x00\x00\x00\x17T\x00\x00\x00!\x00\x01?column'
        b'?\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00'
    ),
    (
        "C",
        b'B\x00\x00\x00*\x00__asyncpg_stmt_1__\x00\x00\x01\x00\x01\x00\x01\x00\x00\x00\x04\x00'
        b'\x00\x00\x15\x00\x01\x00\x01E\x00\x00\x00\t\x00\x00\x00\x00\x01S\x00\x00\x00\x04'
    ),
    (
        "S",
        b'2\x00\x00\x00\x04D\x00\x00\x00\x0e\x00\x01\x00\x00\x00\x04\x00\x00\x00*s\x00\x00\x00'
        b'\x04Z\x00\x00\x00\x05I'
    ),
    ("C", b"Q\x00\x00\x00'create temp table t(a int, b text)\x00"),
    ("S", b'C\x00\x00\x00\x11CREATE TABLE\x00Z\x00\x00\x00\x05I'),
    (
        "C",
        b'P\x00\x00\x003__asyncpg_stmt_2__\x00SELECT * FROM "t" LIMIT 1\x00\x00\x00D\x00\x00'
        b'\x00\x18S__asyncpg_stmt_2__\x00H\x00\x00\x00\x04'
    ),
    (
        "S",
        b'1\x00\x00\x00\x04t\x00\x00\x00\x06\x00\x00T\x00\x00\x00.\x00\x02a\x00\x00\x00@\x13'
        b'\x00\x01\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00b\x00\x00\x00@\x13\x00\x02'
        b'\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00'
    ),
    ("C", b'Q\x00\x00\x00)COPY "t" FROM STDIN (FORMAT binary) \x00'),
    (
        "C",
        b'd\x00\x00\x00;PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00'
        b'\x00\x04\x00\x00\x00\x01\x00\x00\x00\x03one\x00\x02\x00\x00\x00\x04\x00\x00\x00\x02'
        b'\x00\x00\x00\x03two\xff\xffc\x00\x00\x00\x04'
    ),
    ("S", b'G\x00\x00\x00\x0b\x01\x00\x02\x00\x01\x00\x01'),
    ("S", b'C\x00\x00\x00\x0bCOPY 2\x00Z\x00\x00\x00\x05I'),
    (
        "C",
        b'P\x00\x00\x004__asyncpg_stmt_3__\x00select * from t order by a\x00\x00\x00D\x00\x00'
        b'\x00\x18S__asyncpg_stmt_3__\x00H\x00\x00\x00\x04'
    ),
    (
        "S",
        b'1\x00\x00\x00\x04t\x00\x00\x00\x06\x00\x00T\x00\x00\x00.\x00\x02a\x00\x00\x00@\x13'
        b'\x00\x01\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00b\x00\x00\x00@\x13\x00\x02'
        b'\x00\x00\x00\x19\xff\xff\xff\xff\xff\xff\x00\x00'
    ),
    (
        "C",
        b'B\x00\x00\x00"\x00__asyncpg_stmt_3__\x00\x00\x01\x00\x01\x00\x00\x00\x01\x00\x01E\x00'
        b'\x00\x00\t\x00\x00\x00\x00\x00S\x00\x00\x00\x04'
    ),
    (
        "S",
        b'2\x00\x00\x00\x04D\x00\x00\x00\x15\x00\x02\x00\x00\x00\x04\x00\x00\x00\x01\x00\x00'
        b'\x00\x03oneD\x00\x00\x00\x15\x00\x02\x00\x00\x00\x04\x00\x00\x00\x02\x00\x00\x00\x03t'
        b'woC\x00\x00\x00\rSELECT 2\x00Z\x00\x00\x00\x05I'
    ),
    ("C", b'Q\x00\x00\x00\x17select pg_sleep(5)\x00'),
    (
        "S",
        b'T\x00\x00\x00!\x00\x01pg_sleep\x00\x00\x00\x00\x00\x00\x00\x00\x00\x08\xe6\x00\x04'
        b'\xff\xff\xff\xff\x00\x00E\x00\x00\x00hSERROR\x00VERROR\x00C57014\x00Mcanceling statem'
        b'ent due to user request\x00Fpostgres.c\x00L3349\x00RProcessInterrupts\x00\x00Z\x00'
        b'\x00\x00\x05I'
    ),
    (
        "C",
        b'P\x00\x00\x00"__asyncpg_stmt_4__\x00select 7\x00\x00\x00D\x00\x00\x00\x18S__asyncpg_s'
        b'tmt_4__\x00H\x00\x00\x00\x04'
    ),
    (
        "S",
        b'1\x00\x00\x00\x04t\x00\x00\x00\x06\x00\x00T\x00\x00\x00!\x00\x01?column?\x00\x00\x00'
        b'\x00\x00\x00\x00\x00\x00\x00\x17\x00\x04\xff\xff\xff\xff\x00\x00'
    ),
    (
        "C",
        b'B\x00\x00\x00"\x00__asyncpg_stmt_4__\x00\x00\x01\x00\x01\x00\x00\x00\x01\x00\x01E\x00'
        b'\x00\x00\t\x00\x00\x00\x00\x01S\x00\x00\x00\x04'
    ),
    (
        "S",
        b'2\x00\x00\x00\x04D\x00\x00\x00\x0e\x00\x01\x00\x00\x00\x04\x00\x00\x00\x07s\x00\x00'
        b'\x00\x04Z\x00\x00\x00\x05I'
    ),
    ("C", b'X\x00\x00\x00\x04'),
)

# asyncpg's cancel connection: SSLRequest, N, CancelRequest
ASYNCPG_CANCEL_REQUEST: Conversation = (
    ("C", b'\x00\x00\x00\x08\x04\xd2\x16/'),
    ("S", b'N'),
    ("C", b'\x00\x00\x00\x10\x04\xd2\x16.\x00\x00\x1e\x14V\xc1z\xb4'),
)

# the first 200 bytes of the TLS ClientHello psycopg 3.3 (libpq 18) sends with
# sslnegotiation=direct: no SSLRequest, ALPN "postgresql" in the extensions
DIRECT_TLS_CLIENT_HELLO = (
    b'\x16\x03\x01\x06\x07\x01\x00\x06\x03\x03\x03\xaf\x13!\xc7\xfa\xf0\xcf7\xec\x02\x06'
    b'\xbe\x19g\x0f\x9a(\x93\x80\xfd|j-p\xc3\xfel\xfcj\xe0<\x8f \x1f\x8c\x84\xb7\x1b\x08'
    b'\xe4Y\xd0\x02\xf1\xff\xcaDB\xb3\xedX\x1a\xc7K\xb0=\xd4\xb9\xb1\xfe \xbab\xc2\xeb\x00<'
    b'\x13\x02\x13\x03\x13\x01\xc0,\xc00\x00\x9f\xcc\xa9\xcc\xa8\xcc\xaa\xc0+\xc0/\x00\x9e'
    b"\xc0$\xc0(\x00k\xc0#\xc0'\x00g\xc0\n\xc0\x14\x009\xc0\t\xc0\x13\x003\x00\x9d\x00\x9c"
    b'\x00=\x00<\x005\x00/\x01\x00\x05~\xff\x01\x00\x01\x00\x00\x0b\x00\x04\x03\x00\x01\x02'
    b'\x00\n\x00\x12\x00\x10\x11\xec\x00\x1d\x00\x17\x00\x1e\x00\x18\x00\x19\x01\x00\x01'
    b'\x01\x00#\x00\x00\x00\x10\x00\r\x00\x0b\npostgresql\x00\x16'
)

# What PostgreSQL 15 answered to hand-made start-up packets (raw socket, no proxy).
# StartupMessage 3.1 with _pq_.foo and _pq_.bar: NegotiateProtocolVersion, then SASL.
SERVER_NEGOTIATE_3_1 = b"v\x00\x00\x00\x1e\x00\x03\x00\x00\x00\x00\x00\x02_pq_.foo\x00_pq_.bar\x00"
# StartupMessage 2.0: the error comes in the protocol 2.0 format.
SERVER_REJECTS_2_0 = b"EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n\x00"
# A second SSLRequest after N.
SERVER_REJECTS_SECOND_SSLREQUEST = (
    b"E\x00\x00\x00\x89SFATAL\x00VFATAL\x00C0A000\x00Munsupported frontend protocol 1234.5679: "
    b"server supports 3.0 to 3.0\x00Fpostmaster.c\x00L2222\x00RProcessStartupPacket\x00\x00"
)
# SSLRequest and StartupMessage in one write.
SERVER_REJECTS_PIPELINED_SSLREQUEST = (
    b"NE\x00\x00\x00\xd3SFATAL\x00VFATAL\x00C08P01\x00Mreceived unencrypted data after SSL request\x00"
    b"DThis could be either a client-software bug or evidence of an attempted man-in-the-middle "
    b"attack.\x00Fpostmaster.c\x00L2136\x00RProcessStartupPacket\x00\x00"
)
# StartupMessage without "user".
SERVER_REJECTS_NO_USER = (
    b"E\x00\x00\x00ySFATAL\x00VFATAL\x00C28000\x00Mno PostgreSQL user name specified in startup "
    b"packet\x00Fpostmaster.c\x00L2351\x00RProcessStartupPacket\x00\x00"
)
# StartupMessage whose parameter list lacks its terminator.
SERVER_REJECTS_BAD_LAYOUT = (
    b"E\x00\x00\x00\x85SFATAL\x00VFATAL\x00C08P01\x00Minvalid startup packet layout: expected "
    b"terminator as last byte\x00Fpostmaster.c\x00L2334\x00RProcessStartupPacket\x00\x00"
)

# Engine replies to what the gateway sends for refusals, token bytes(range(16)).hex():
# simple protocol: BEGIN; <sentinel>; select 1; ROLLBACK (one write)
ENGINE_REPLY_SIMPLE_REFUSAL = (
    b'C\x00\x00\x00\nBEGIN\x00Z\x00\x00\x00\x05TE\x00\x00\x00\x87SERROR\x00VERROR\x00C42601'
    b'\x00Msyntax error at or near "dbkeep_refused_000102030405060708090a0b0c0d0e0f"\x00P1'
    b'\x00Fscan.l\x00L1188\x00Rscanner_yyerror\x00\x00Z\x00\x00\x00\x05EE\x00\x00\x00\x90SE'
    b'RROR\x00VERROR\x00C25P02\x00Mcurrent transaction is aborted, commands ignored until e'
    b'nd of transaction block\x00Fpostgres.c\x00L1081\x00Rexec_simple_query\x00\x00Z\x00'
    b'\x00\x00\x05EC\x00\x00\x00\rROLLBACK\x00Z\x00\x00\x00\x05I'
)
# extended protocol: Parse/Bind/Execute "select 1", Parse "s2" <sentinel>, Sync
ENGINE_REPLY_EXTENDED_REFUSAL = (
    b'1\x00\x00\x00\x042\x00\x00\x00\x04D\x00\x00\x00\x0b\x00\x01\x00\x00\x00\x011C\x00\x00'
    b'\x00\rSELECT 1\x00E\x00\x00\x00\x87SERROR\x00VERROR\x00C42601\x00Msyntax error at or '
    b'near "dbkeep_refused_000102030405060708090a0b0c0d0e0f"\x00P1\x00Fscan.l\x00L1188\x00R'
    b'scanner_yyerror\x00\x00Z\x00\x00\x00\x05I'
)

# pg_authid.rolpassword of alice on the capture server
ALICE_SECRET = (
    "SCRAM-SHA-256$4096:0reO9X2i86XStKZTsz0ksg==$jZutOK+sHfB2pENT/G+TbsSk3IctvVSvMbSe8Nm5PQM="
    ":ebjYBfNLNiKXQRjSirHlF/1vU/Oao6JDZjEzurgSxfI="
)

CONVERSATIONS = {
    "psql_scram": PSQL_SCRAM,
    "psql_md5": PSQL_MD5,
    "psql_bad_password": PSQL_BAD_PASSWORD,
    "psql_cleartext": PSQL_CLEARTEXT,
    "psycopg_session": PSYCOPG_SESSION,
    "psycopg_canceled": PSYCOPG_CANCELED,
    "asyncpg_session": ASYNCPG_SESSION,
}


def _stream(conversation: Conversation, side: str) -> bytes:
    return b"".join(data for s, data in conversation if s == side)


def _fixed(n: int) -> bytes:
    return b"\xa5" * n


class Relay:
    """The gateway's relay loop, minus sockets: the driver a later asyncio layer will be."""

    def __init__(self) -> None:
        self.client = ClientFacing(randbytes=lambda n: bytes(range(n)))
        self.engine = EngineFacing()
        self.keys: CancelKeyRegistry[str] = CancelKeyRegistry(randbytes=_fixed)
        self.to_client = bytearray()
        self.to_engine = bytearray()
        self.client_events: list[object] = []
        self.engine_events: list[object] = []
        self.cancel: CancelRequest | None = None

    def from_client(self, data: bytes) -> None:
        self.client.receive_data(data)
        while True:
            event = self.client.next_event()
            if event is NEED_DATA or event is PAUSED or isinstance(event, ConnectionClosed):
                return
            self.client_events.append(event)
            if isinstance(event, SSLRequest):
                self.to_client += self.client.send(SSLResponse(False))
            elif isinstance(event, GSSENCRequest):
                self.to_client += self.client.send(GSSENCResponse(False))
            elif isinstance(event, CancelRequest):
                self.cancel = event
            else:
                self.to_engine += self.engine.send(event)

    def from_engine(self, data: bytes) -> None:
        self.engine.receive_data(data)
        while True:
            event = self.engine.next_event()
            if event is NEED_DATA or event is PAUSED or isinstance(event, ConnectionClosed):
                return
            self.engine_events.append(event)
            if isinstance(event, BackendKeyData):
                event = self.keys.issue(event, "engine-socket")
            self.to_client += self.client.send(event)

    def play(self, conversation: Conversation, chunk: int = 0) -> None:
        previous = b""
        for side, data in conversation:
            if side == "S" and data == b"N" and previous == SSLRequest().build():
                previous = data
                continue  # the server's answer to SSLRequest: the gateway gives its own
            previous = data
            pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] if chunk else [data]
            for piece in pieces:
                (self.from_client if side == "C" else self.from_engine)(piece)


def _expected_to_client(conversation: Conversation) -> bytes:
    """The server's bytes with BackendKeyData carrying the gateway's secret (0xa5...)."""
    out = _stream(conversation, "S")
    at = out.find(b"K\x00\x00\x00\x0c")
    if at >= 0:
        out = out[: at + 9] + _fixed(4) + out[at + 13 :]
    return out


def _expected_to_engine(conversation: Conversation) -> bytes:
    out = _stream(conversation, "C")
    ssl_request = SSLRequest().build()
    return out[len(ssl_request) :] if out.startswith(ssl_request) else out


@pytest.mark.parametrize("chunk", [0, 1, 7], ids=["as-captured", "bytewise", "7-byte"])
@pytest.mark.parametrize("name", sorted(CONVERSATIONS))
def test_relay_reproduces_the_conversation(name: str, chunk: int) -> None:
    conversation = CONVERSATIONS[name]
    relay = Relay()
    relay.play(conversation, chunk)
    assert bytes(relay.to_engine) == _expected_to_engine(conversation)
    assert bytes(relay.to_client) == _expected_to_client(conversation)


def test_psql_scram_events() -> None:
    relay = Relay()
    relay.play(PSQL_SCRAM)
    kinds = [type(e).__name__ for e in relay.client_events]
    assert kinds == [
        "SSLRequest", "StartupMessage", "SASLInitialResponse", "SASLResponse",
        "Query", "Query", "Query", "FrontendMessage", "FrontendMessage", "Query", "Query", "Terminate",
    ]
    startup = relay.client_events[1]
    assert isinstance(startup, StartupMessage)
    assert (startup.user, startup.database, startup.application_name) == ("alice", "app", "psql")
    assert startup.protocol == 3 << 16
    initial = relay.client_events[2]
    assert isinstance(initial, SASLInitialResponse)
    assert initial.mechanism == "SCRAM-SHA-256" and initial.data == b"n,,n=,r=YY5guPy6ILF3aX6dB3ftqDyi"
    assert [e.sql for e in relay.client_events if isinstance(e, Query)] == [
        "select 1 as one;", "create temp table t(a int, b text);", "copy t from stdin;",
        "select * from t;", "select 1/0;",
    ]
    copy_data, copy_done = relay.client_events[7], relay.client_events[8]
    assert isinstance(copy_data, FrontendMessage) and copy_data.type == "d"
    assert isinstance(copy_done, FrontendMessage) and copy_done.type == "c"
    assert relay.client.state is ClientState.CLOSED
    assert relay.engine.state is EngineState.CLOSED
    assert relay.engine.parameters["server_version"].startswith("15.")
    assert relay.client.parameters["client_encoding"] == "UTF8"
    assert relay.engine.backend_key is not None
    assert relay.engine.transaction_status == "I"
    errors = [e for e in relay.engine_events if isinstance(e, BackendData) and b"C22012" in e.data]
    assert errors, "the division by zero error is relayed"


def test_psycopg_extended_protocol_events() -> None:
    relay = Relay()
    relay.play(PSYCOPG_SESSION)
    events = relay.client_events
    parses = [e for e in events if isinstance(e, Parse)]
    assert [(p.name, p.sql, p.param_types) for p in parses] == [
        (b"", "select $1::int + 1 as x, $2::text as t", (21, 0)),
        (b"", "select 1/$1", (21,)),
    ]
    i = events.index(parses[0])
    following = events[i + 1 : i + 5]
    assert [type(e).__name__ for e in following] == ["FrontendMessage"] * 3 + ["Sync"]
    assert [e.type for e in following[:3]] == ["B", "D", "E"]
    assert "hé".encode() in following[0].raw
    assert isinstance(events[-1], Terminate)
    assert relay.engine.transaction_status == "I"  # after ROLLBACK


def test_asyncpg_named_statements_and_pipelined_copy() -> None:
    relay = Relay()
    relay.play(ASYNCPG_SESSION)
    startup = relay.client_events[1]
    assert isinstance(startup, StartupMessage)
    assert startup.parameters[0] == ("client_encoding", "'utf-8'")
    parses = [e for e in relay.client_events if isinstance(e, Parse)]
    assert [p.name for p in parses] == [b"__asyncpg_stmt_%d__" % i for i in range(1, 5)]
    flushes = [e for e in relay.client_events if isinstance(e, FrontendMessage) and e.type == "H"]
    assert len(flushes) == 4
    copy_query = next(e for e in relay.client_events if isinstance(e, Query) and b"COPY" in e.query)
    assert copy_query.sql == 'COPY "t" FROM STDIN (FORMAT binary) '
    canceled = [e for e in relay.engine_events if isinstance(e, BackendData) and b"57014" in e.data]
    assert canceled


def test_scram_against_the_real_server_exchange() -> None:
    """The client computes psql's proof and accepts the server's signature; the server helper
    recomputes the server's messages from alice's stored secret."""
    client_first = PSQL_SCRAM[4][1]
    server_first = parse_authentication(PSQL_SCRAM[5][1])
    client_final = PSQL_SCRAM[6][1]
    server_final = parse_authentication(PSQL_SCRAM[7][1][:55])
    assert isinstance(server_first, AuthenticationSASLContinue)
    assert isinstance(server_final, AuthenticationSASLFinal)
    initial = SASLInitialResponse.parse(client_first)
    assert initial.data is not None
    nonce = initial.data.split(b",r=")[1]

    client = ScramSha256Client("pencil", nonce=nonce)
    assert client.first_message() == initial.data
    assert client.final_message(server_first.data) == SASLResponse.parse(client_final).data
    client.verify_final(server_final.data)
    assert client.done

    secret = ScramSecret.from_pg(ALICE_SECRET)
    assert secret == ScramSecret.from_password("pencil", salt=secret.salt, iterations=4096)
    server_nonce = server_first.data.split(b",")[0][2 + len(nonce) :]
    server = ScramSha256Server(secret, nonce=server_nonce)
    assert server.server_first(initial.data) == server_first.data
    assert server.server_final(SASLResponse.parse(client_final).data) == server_final.data
    assert server.authenticated


def test_scram_wrong_password_is_refused_by_the_server_helper() -> None:
    initial = SASLInitialResponse.parse(PSQL_BAD_PASSWORD[2][1])
    server_first = parse_authentication(PSQL_BAD_PASSWORD[3][1])
    assert initial.data is not None and isinstance(server_first, AuthenticationSASLContinue)
    nonce = initial.data.split(b",r=")[1]
    server_nonce = server_first.data.split(b",")[0][2 + len(nonce) :]
    server = ScramSha256Server(ScramSecret.from_pg(ALICE_SECRET), nonce=server_nonce)
    assert server.server_first(initial.data) == server_first.data
    with pytest.raises(RemoteProtocolError):
        server.server_final(SASLResponse.parse(PSQL_BAD_PASSWORD[4][1]).data)
    error = ErrorResponse.parse(PSQL_BAD_PASSWORD[5][1])
    assert (error.severity, error.sqlstate) == ("FATAL", "28P01")
    assert error.message == 'password authentication failed for user "alice"'
    assert ErrorResponse.parse(PSQL_BAD_PASSWORD[5][1]).build() == PSQL_BAD_PASSWORD[5][1]


def test_md5_against_the_real_server_exchange() -> None:
    request = parse_authentication(PSQL_MD5[1][1])
    assert isinstance(request, AuthenticationMD5Password)
    answer = PasswordMessage.parse(PSQL_MD5[2][1])
    assert md5_password("md5user", "secret", request.salt) == answer.password
    assert PasswordMessage(answer.password).build() == PSQL_MD5[2][1]


def test_cleartext_password_message() -> None:
    assert PasswordMessage.parse(PSQL_CLEARTEXT[2][1]).password == b"clear"


@pytest.mark.parametrize("conversation", [PSYCOPG_CANCEL_REQUEST, ASYNCPG_CANCEL_REQUEST], ids=["psycopg", "asyncpg"])
def test_cancel_request_is_routed_to_the_engine(conversation: Conversation) -> None:
    session = PSYCOPG_CANCELED if conversation is PSYCOPG_CANCEL_REQUEST else ASYNCPG_SESSION
    relay = Relay()
    relay.play(session)
    engine_key = relay.engine.backend_key
    assert engine_key is not None
    # what the client was given, as the client quotes it back
    client_key = BackendKeyData(engine_key.process_id, _fixed(4))
    assert client_key.build() in relay.to_client

    recorded = _stream(conversation, "C")
    cancel_relay = Relay()
    for side, data in conversation[:-1]:
        if side == "C":
            cancel_relay.from_client(data)
    assert conversation[-1][0] == "C"
    cancel_relay.from_client(conversation[-1][1][:-4] + _fixed(4))  # the capture quotes the engine key
    assert cancel_relay.cancel is not None
    assert cancel_relay.client.state is ClientState.CLOSED
    found = relay.keys.resolve(cancel_relay.cancel)
    assert found is not None and found == (engine_key, "engine-socket")

    engine = EngineFacing()
    assert engine.send(CancelRequest(found[0].process_id, found[0].secret_key)) == recorded[-16:]
    assert engine.state is EngineState.CLOSED
    # the engine's own key, quoted by a client, cancels nothing
    assert relay.keys.resolve(CancelRequest(engine_key.process_id, engine_key.secret_key)) is None


def _ready_pair() -> Relay:
    relay = Relay()
    relay.from_client(StartupMessage((("user", "rdsadmin"), ("database", "postgres"))).build())
    relay.from_engine(
        bytes.fromhex("520000000800000000")  # AuthenticationOk
        + b"S\x00\x00\x00\x19client_encoding\x00UTF8\x00"
        + BackendKeyData(4242, b"\x01\x02\x03\x04").build()
        + ReadyForQuery("I").build()
    )
    assert relay.client.state is ClientState.READY and relay.engine.state is EngineState.READY
    relay.to_client.clear()
    relay.to_engine.clear()
    return relay


GUARD_ERROR = DbError("permission denied to alter role \"rdsadmin\"", sqlstate="42501")


def test_simple_query_refusal_with_the_real_engine_reply() -> None:
    relay = _ready_pair()
    refused = b"ALTER ROLE rdsadmin PASSWORD 'x'"
    client_bytes = b"".join(
        Query(q).build() for q in (b"BEGIN", refused, b"select 1", b"ROLLBACK")
    )
    relay.client.receive_data(client_bytes)
    while (event := relay.client.next_event()) is not NEED_DATA:
        if isinstance(event, Query) and event.query == refused:
            relay.to_engine += relay.engine.send(relay.client.refuse(event, GUARD_ERROR))
        else:
            relay.to_engine += relay.engine.send(event)
    assert refused not in relay.to_engine
    assert bytes(relay.to_engine) == b"".join(
        Query(q).build()
        for q in (b"BEGIN", b"dbkeep_refused_000102030405060708090a0b0c0d0e0f", b"select 1", b"ROLLBACK")
    )
    for i in range(0, len(ENGINE_REPLY_SIMPLE_REFUSAL), 5):  # in pieces: the error straddles them
        relay.from_engine(ENGINE_REPLY_SIMPLE_REFUSAL[i : i + 5])
    guard = ErrorResponse.create("ERROR", "42501", 'permission denied to alter role "rdsadmin"').build()
    start = ENGINE_REPLY_SIMPLE_REFUSAL.index(b"E\x00\x00\x00\x87")
    expected = ENGINE_REPLY_SIMPLE_REFUSAL[:start] + guard + ENGINE_REPLY_SIMPLE_REFUSAL[start + 0x88 :]
    assert bytes(relay.to_client) == expected
    assert b"dbkeep_refused" not in relay.to_client
    assert relay.engine.transaction_status == "I"


def test_extended_query_refusal_discards_until_sync() -> None:
    relay = _ready_pair()
    client_bytes = (
        Parse(b"", b"select 1").build()
        + FrontendMessage(b"B\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00").build()
        + FrontendMessage(b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00").build()
        + Parse(b"s2", b"DROP ROLE rdsadmin").build()
        + FrontendMessage(b"B\x00\x00\x00\x0ds2\x00\x00\x00\x00\x00\x00\x00").build()
        + FrontendMessage(b"D\x00\x00\x00\x06P\x00").build()
        + FrontendMessage(b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00").build()
        + FrontendMessage(b"H\x00\x00\x00\x04").build()
        + Query(b"DROP ROLE rdsadmin").build()  # discarded too, as the server would
        + Sync().build()
    )
    relay.client.receive_data(client_bytes)
    seen = []
    while (event := relay.client.next_event()) is not NEED_DATA:
        seen.append(type(event).__name__)
        if isinstance(event, Parse) and event.name == b"s2":
            relay.to_engine += relay.engine.send(relay.client.refuse(event, GUARD_ERROR))
            assert relay.client.state is ClientState.DISCARDING
        else:
            relay.to_engine += relay.engine.send(event)
    assert seen == ["Parse", "FrontendMessage", "FrontendMessage", "Parse", "Sync"]
    assert relay.client.state is ClientState.READY
    assert bytes(relay.to_engine) == (
        Parse(b"", b"select 1").build()
        + b"B\x00\x00\x00\x0c\x00\x00\x00\x00\x00\x00\x00\x00"
        + b"E\x00\x00\x00\x09\x00\x00\x00\x00\x00"
        + Parse(b"s2", b"dbkeep_refused_000102030405060708090a0b0c0d0e0f").build()
        + Sync().build()
    )
    relay.from_engine(ENGINE_REPLY_EXTENDED_REFUSAL)
    start = ENGINE_REPLY_EXTENDED_REFUSAL.index(b"E\x00\x00\x00\x87")
    guard = ErrorResponse.from_db_error(GUARD_ERROR).build()
    assert bytes(relay.to_client) == (
        ENGINE_REPLY_EXTENDED_REFUSAL[:start] + guard + ENGINE_REPLY_EXTENDED_REFUSAL[start + 0x88 :]
    )


def test_startup_errors_match_the_server() -> None:
    def reply_to(packets: bytes) -> tuple[ClientFacing, bytes]:
        client = ClientFacing()
        client.receive_data(packets)
        out = b""
        with pytest.raises(RemoteProtocolError):
            while True:
                event = client.next_event()
                assert event is not NEED_DATA
                if isinstance(event, SSLRequest):
                    out += client.send(SSLResponse(False))
        return client, out + client.error_reply

    def fields(data: bytes) -> tuple[str, str, str, str | None]:
        e = ErrorResponse.parse(data)
        return e.severity, e.sqlstate, e.message, e.detail

    v2 = b"\x00\x00\x00\x11\x00\x02\x00\x00user\x00rdsadmin\x00\x00"
    assert reply_to(v2)[1] == SERVER_REJECTS_2_0 == error_response_v2(
        "unsupported frontend protocol 2.0: server supports 3.0 to 3.0"
    )
    ssl = SSLRequest().build()
    client = ClientFacing()
    client.receive_data(ssl)
    assert isinstance(client.next_event(), SSLRequest)
    assert client.send(SSLResponse(False)) == b"N"
    client.receive_data(ssl)
    with pytest.raises(RemoteProtocolError):
        client.next_event()
    assert fields(client.error_reply) == fields(SERVER_REJECTS_SECOND_SSLREQUEST)

    pipelined = ssl + StartupMessage((("user", "rdsadmin"),)).build()
    client = ClientFacing()
    client.receive_data(pipelined)
    assert isinstance(client.next_event(), SSLRequest)
    with pytest.raises(RemoteProtocolError, match="unencrypted data after SSL request"):
        client.send(SSLResponse(False))
    assert client.error_reply[:1] == b"N"
    assert fields(client.error_reply[1:]) == fields(SERVER_REJECTS_PIPELINED_SSLREQUEST[1:])

    no_user = StartupMessage((("database", "postgres"),)).build()
    assert fields(reply_to(no_user)[1]) == fields(SERVER_REJECTS_NO_USER)
    bad_layout = b"\x00\x00\x00\x0d\x00\x03\x00\x00user\x00"
    assert fields(reply_to(bad_layout)[1]) == fields(SERVER_REJECTS_BAD_LAYOUT)


def test_negotiate_protocol_version_matches_the_server() -> None:
    client = ClientFacing()
    startup = StartupMessage(
        (("user", "rdsadmin"), ("database", "postgres"), ("_pq_.foo", "1"), ("_pq_.bar", "x")), 3 << 16 | 1
    )
    client.receive_data(startup.build())
    event = client.next_event()
    assert event == startup
    out = client.send(AuthenticationSASL(("SCRAM-SHA-256",)))
    assert out.startswith(SERVER_NEGOTIATE_3_1)
    assert NegotiateProtocolVersion.parse(SERVER_NEGOTIATE_3_1) == NegotiateProtocolVersion(
        3 << 16, ("_pq_.foo", "_pq_.bar")
    )
    engine = EngineFacing()
    assert engine.send(startup) == StartupMessage((("user", "rdsadmin"), ("database", "postgres"))).build()


def test_direct_tls_client_hello() -> None:
    client = ClientFacing()
    client.receive_data(DIRECT_TLS_CLIENT_HELLO[:100])
    event = client.next_event()
    assert event == DirectTlsHello(DIRECT_TLS_CLIENT_HELLO[:100])
    assert client.state is ClientState.TLS_HANDSHAKE
    assert client.trailing_data == (b"", False)
    assert b"postgresql" in DIRECT_TLS_CLIENT_HELLO  # libpq offers ALPN "postgresql"
    with pytest.raises(RemoteProtocolError, match="unencrypted data"):
        client.receive_data(DIRECT_TLS_CLIENT_HELLO[100:])
