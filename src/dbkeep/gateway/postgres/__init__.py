"""Sans-I/O PostgreSQL v3 wire protocol for the gateway (no sockets here).

``wire`` (bounded readers, framing), ``messages`` (frozen dataclasses named after the
protocol's messages), ``connection`` (``ClientFacing`` / ``EngineFacing`` state machines),
``scram`` (SCRAM-SHA-256, MD5), ``login`` (the gateway's own engine login), ``cancel``
(BackendKeyData rewriting and CancelRequest routing).
"""
