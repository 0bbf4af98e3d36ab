"""The PROXY protocol header (version 1, the text form) the gateway writes on an engine socket.

Theory of operation (HAProxy's "The PROXY protocol", section 2.1; MariaDB KB "Proxy Protocol
Support"): every engine connection of the gateway starts on the engine's private unix socket,
so without help the engine sees every client as ``localhost``. MariaDB accepts a PROXY header
from the networks in ``proxy_protocol_networks`` (``localhost``: unix-socket connections) and
then treats the connection as coming from the address and port in it -- account host
matching, ``SHOW PROCESSLIST``, ``USER()`` and its 1045 texts. Connections without a header are
still accepted as ``localhost`` (dbkeep's own rdsadmin sessions).

Pure: addresses in, bytes out. ``PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n``; an IPv4-mapped
IPv6 address (a dual-stack listener) is written as IPv4, as the client really is; anything
else (no address known) is ``PROXY UNKNOWN\\r\\n``, which leaves the connection as it is.
"""

from __future__ import annotations

import ipaddress

__all__ = ["UNKNOWN", "proxy_v1"]

UNKNOWN = b"PROXY UNKNOWN\r\n"


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])  # a scope id is not part of the address
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def proxy_v1(peer: tuple | None, local: tuple | None) -> bytes:
    """The header for a client at ``peer`` that connected to ``local`` (socket address tuples)."""
    if not peer or not local:
        return UNKNOWN
    src, dst = _address(str(peer[0])), _address(str(local[0]))
    if src is None or dst is None or src.version != dst.version:
        return UNKNOWN
    try:
        sport, dport = int(peer[1]), int(local[1])
    except (TypeError, ValueError, IndexError):
        return UNKNOWN
    if not (0 <= sport <= 65535 and 0 <= dport <= 65535):
        return UNKNOWN
    family = "TCP4" if src.version == 4 else "TCP6"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode("ascii")
