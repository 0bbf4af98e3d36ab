"""The PROXY protocol v1 header the gateway writes on an engine socket."""

import pytest

from dbkeep.gateway.proxy_header import UNKNOWN, proxy_v1


@pytest.mark.parametrize("peer, local, header", [
    (("10.0.0.7", 51234), ("10.0.0.1", 3306), b"PROXY TCP4 10.0.0.7 10.0.0.1 51234 3306\r\n"),
    (("::1", 40000, 0, 0), ("::1", 3306, 0, 0), b"PROXY TCP6 ::1 ::1 40000 3306\r\n"),
    (("::ffff:192.0.2.5", 1, 0, 0), ("::ffff:192.0.2.1", 2, 0, 0), b"PROXY TCP4 192.0.2.5 192.0.2.1 1 2\r\n"),
    (("fe80::1%eth0", 5, 0, 2), ("fe80::2%eth0", 6, 0, 2), b"PROXY TCP6 fe80::1 fe80::2 5 6\r\n"),
    (("10.0.0.7", 1), ("::1", 3306, 0, 0), UNKNOWN),       # families differ
    (None, ("10.0.0.1", 3306), UNKNOWN),
    (("not-an-ip", 1), ("10.0.0.1", 3306), UNKNOWN),
    (("10.0.0.7", 70000), ("10.0.0.1", 3306), UNKNOWN),
    ("/run/x.sock", "/run/y.sock", UNKNOWN),
])
def test_proxy_v1(peer, local, header):
    assert proxy_v1(peer, local) == header
    assert len(header) <= 107  # the protocol's limit for v1
