"""Security-group enforcement at accept: may this peer open a connection to this port at all?

EC2 semantics for ingress rules with CIDR sources: a connection is allowed when any rule of any
of the cluster's groups matches — protocol ``tcp`` or ``-1`` (all), a port range covering the
endpoint port (``-1`` has none), and a CIDR containing the peer address. IPv4-mapped IPv6 peers
(``::ffff:a.b.c.d`` on a dual-stack socket) are matched as the IPv4 address they are. Pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

from dbkeep.catalog.models import IngressRule


@lru_cache(maxsize=4096)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None


def peer_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def rule_allows(rule: IngressRule, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
    if rule.ip_protocol not in ("tcp", "-1"):
        return False
    if rule.ip_protocol == "tcp":
        if rule.from_port is None or rule.to_port is None or not rule.from_port <= port <= rule.to_port:
            return False
    network = _network(rule.cidr)
    return network is not None and network.version == address.version and address in network


def allowed(rules: Iterable[IngressRule], peer_host: str, port: int) -> bool:
    address = peer_address(peer_host)
    if address is None:
        return False
    return any(rule_allows(rule, address, port) for rule in rules)
