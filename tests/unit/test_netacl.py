import pytest

from dbkeep.catalog.models import IngressRule
from dbkeep.gateway.netacl import allowed


def rule(proto="tcp", lo=3306, hi=3306, cidr="10.0.0.0/8"):
    return IngressRule("sgr-1", "sg-1", proto, lo, hi, cidr)


@pytest.mark.parametrize(
    "rules,peer,port,ok",
    [
        ([rule()], "10.1.2.3", 3306, True),
        ([rule()], "10.1.2.3", 3307, False),
        ([rule()], "11.0.0.1", 3306, False),
        ([rule(lo=3000, hi=4000)], "10.0.0.1", 3999, True),
        ([rule(proto="-1", lo=None, hi=None)], "10.0.0.1", 5432, True),
        ([rule(proto="udp")], "10.0.0.1", 3306, False),
        ([rule(cidr="127.0.0.1/32")], "127.0.0.1", 3306, True),
        ([rule(cidr="127.0.0.1/32")], "127.0.0.2", 3306, False),
        ([rule(cidr="127.0.0.0/8")], "::ffff:127.0.0.1", 3306, True),
        ([rule(cidr="::1/128")], "::1", 3306, True),
        ([rule(cidr="::1/128")], "127.0.0.1", 3306, False),
        ([rule(cidr="2001:db8::/32")], "2001:db8::5", 3306, True),
        ([rule(cidr="0.0.0.0/0")], "::1", 3306, False),
        ([], "127.0.0.1", 3306, False),
        ([rule(cidr="0.0.0.0/0")], "not-an-ip", 3306, False),
        ([rule(cidr="0.0.0.0/0")], "fe80::1%eth0", 3306, False),
    ],
)
def test_allowed(rules, peer, port, ok):
    assert allowed(rules, peer, port) is ok
