"""dbkeep.pki.ca: certificates read back with `cryptography` and verified as a client would."""

from __future__ import annotations

import datetime as dt
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dbkeep.pki import ca

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="module")
def keys() -> list[rsa.RSAPrivateKey]:
    return [ca.generate_private_key() for _ in range(3)]


@pytest.fixture(scope="module")
def authority(keys):
    cert_pem, key_pem = ca.create_ca("acct-123456789012", now=NOW, private_key=keys[0])
    return ca.load_certificate(cert_pem), ca.load_private_key(key_pem)


@pytest.fixture(scope="module")
def server(authority, keys):
    ca_cert, ca_key = authority
    cert_pem, key_pem = ca.issue_server_certificate(
        ca_cert,
        ca_key,
        common_name="orders.cluster-abc.us-east-1.dbkeep.test",
        dns_names=["orders.cluster-abc.us-east-1.dbkeep.test", "Orders.Cluster-RO-abc.us-east-1.dbkeep.test."],
        ip_addresses=["127.0.0.1", "::1"],
        now=NOW,
        private_key=keys[1],
    )
    return ca.load_certificate(cert_pem), key_pem


def _verifier(ca_cert: x509.Certificate, subject, at: dt.datetime = NOW):
    store = verification.Store([ca_cert])
    return verification.PolicyBuilder().store(store).time(at).build_server_verifier(subject)


def test_ca_certificate_profile(authority, keys):
    cert, key = authority
    assert cert.subject.rfc4514_string() == "CN=dbkeep CA acct-123456789012,O=dbkeep"
    assert cert.issuer == cert.subject
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    assert cert.not_valid_after_utc - NOW == dt.timedelta(days=3650)
    assert cert.not_valid_before_utc <= NOW
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    cert.verify_directly_issued_by(cert)  # self-signed signature holds


def test_ca_label_is_cut_to_the_common_name_bound(keys):
    cert_pem, _ = ca.create_ca("h" * 100, now=NOW, private_key=keys[0])
    cn = ca.load_certificate(cert_pem).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert len(cn) == 64 and cn.startswith("dbkeep CA hhh")


def test_server_certificate_profile(server, authority):
    cert, key_pem = server
    ca_cert, _ = authority
    assert cert.subject.rfc4514_string() == "CN=orders.cluster-abc.us-east-1.dbkeep.test,O=dbkeep"
    assert cert.issuer == ca_cert.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [
        "orders.cluster-abc.us-east-1.dbkeep.test",
        "orders.cluster-ro-abc.us-east-1.dbkeep.test",  # normalised: lower case, no final dot
    ]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.key_encipherment and not usage.key_cert_sign
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    assert cert.not_valid_after_utc - NOW == dt.timedelta(days=397)
    assert isinstance(cert.public_key(), rsa.RSAPublicKey) and cert.public_key().key_size == 2048
    assert ca.key_matches_certificate(ca.load_private_key(key_pem), cert)
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted


@pytest.mark.parametrize(
    "subject",
    [
        verification.DNSName("orders.cluster-abc.us-east-1.dbkeep.test"),
        verification.DNSName("orders.cluster-ro-abc.us-east-1.dbkeep.test"),
        verification.IPAddress(ipaddress.ip_address("127.0.0.1")),
        verification.IPAddress(ipaddress.ip_address("::1")),
    ],
    ids=["dns", "dns-ro", "ipv4", "ipv6"],
)
def test_server_certificate_chain_verifies(server, authority, subject):
    cert, _ = server
    ca_cert, _ = authority
    chain = _verifier(ca_cert, subject, NOW + dt.timedelta(days=1)).verify(cert, [])
    assert chain == [cert, ca_cert]


@pytest.mark.parametrize(
    "subject",
    [
        verification.DNSName("other.dbkeep.test"),
        verification.IPAddress(ipaddress.ip_address("127.0.0.2")),
    ],
)
def test_server_certificate_does_not_verify_for_other_names(server, authority, subject):
    cert, _ = server
    ca_cert, _ = authority
    with pytest.raises(verification.VerificationError):
        _verifier(ca_cert, subject).verify(cert, [])


def test_server_certificate_does_not_verify_against_another_ca(server, keys):
    cert, _ = server
    other_pem, _ = ca.create_ca("other", now=NOW, private_key=keys[2])
    with pytest.raises(verification.VerificationError):
        subject = verification.DNSName("orders.cluster-abc.us-east-1.dbkeep.test")
        _verifier(ca.load_certificate(other_pem), subject).verify(cert, [])


def test_server_certificate_expires(server, authority):
    cert, _ = server
    ca_cert, _ = authority
    late = NOW + dt.timedelta(days=398)
    with pytest.raises(verification.VerificationError):
        _verifier(ca_cert, verification.IPAddress(ipaddress.ip_address("::1")), late).verify(cert, [])


def test_serials_are_random_and_fresh_keys_are_generated(authority):
    ca_cert, ca_key = authority
    issued = [
        ca.issue_server_certificate(
            ca_cert, ca_key, common_name="a.test", dns_names=["a.test"], ip_addresses=[], now=NOW
        )
        for _ in range(2)
    ]
    certs = [ca.load_certificate(cert_pem) for cert_pem, _ in issued]
    assert certs[0].serial_number != certs[1].serial_number
    assert certs[0].serial_number.bit_length() > 64
    assert issued[0][1] != issued[1][1]


def test_server_certificate_never_outlives_the_ca(keys):
    ca_pem, ca_key_pem = ca.create_ca("short", now=NOW, days=100, private_key=keys[0])
    ca_cert, ca_key = ca.load_certificate(ca_pem), ca.load_private_key(ca_key_pem)
    cert_pem, _ = ca.issue_server_certificate(
        ca_cert, ca_key, common_name="a.test", dns_names=["a.test"], ip_addresses=[], now=NOW, private_key=keys[1]
    )
    assert ca.load_certificate(cert_pem).not_valid_after_utc == ca_cert.not_valid_after_utc


def test_overlong_common_name_is_left_out_of_the_subject(authority, keys):
    ca_cert, ca_key = authority
    long_name = "a-cluster-with-a-very-long-identifier-indeed.cluster-ro-abcdef.dbkeep.test"
    assert len(long_name) > 64
    cert_pem, _ = ca.issue_server_certificate(
        ca_cert, ca_key, common_name=long_name, dns_names=[long_name], ip_addresses=[], now=NOW, private_key=keys[1]
    )
    cert = ca.load_certificate(cert_pem)
    assert cert.subject.rfc4514_string() == "O=dbkeep"
    _verifier(ca_cert, verification.DNSName(long_name)).verify(cert, [])


@pytest.mark.parametrize(
    ("dns_names", "ip_addresses", "message"),
    [
        ([], [], "at least one"),
        (["bad_name.test"], [], "not a valid DNS name"),
        (["-bad.test"], [], "not a valid DNS name"),
        (["a..test"], [], "not a valid DNS name"),
        (["x" * 64 + ".test"], [], "not a valid DNS name"),
        (["127.0.0.1"], [], "is an IP address"),
        ([], ["localhost"], "not a valid IP address"),
        ([], ["300.1.1.1"], "not a valid IP address"),
    ],
)
def test_invalid_names_are_refused(authority, keys, dns_names, ip_addresses, message):
    ca_cert, ca_key = authority
    with pytest.raises(ValueError, match=message):
        ca.issue_server_certificate(
            ca_cert,
            ca_key,
            common_name="x",
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            now=NOW,
            private_key=keys[1],
        )


def test_naive_time_and_foreign_ca_key_are_refused(authority, keys):
    ca_cert, ca_key = authority
    naive = NOW.replace(tzinfo=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        ca.issue_server_certificate(
            ca_cert, ca_key, common_name="a", dns_names=["a"], ip_addresses=[], now=naive, private_key=keys[1]
        )
    with pytest.raises(ValueError, match="does not belong"):
        ca.issue_server_certificate(
            ca_cert, keys[2], common_name="a", dns_names=["a"], ip_addresses=[], now=NOW, private_key=keys[1]
        )


def test_server_names_compare_as_normalised_sets():
    a = ca.ServerNames.of(["B.test", "a.test", "a.test."], ["::1", "0:0::1", "10.0.0.1"])
    b = ca.ServerNames.of(["a.test", "b.test"], ["10.0.0.1", "::1"])
    assert a.same_set(b)
    assert a.dns_names == ("b.test", "a.test") and len(a.ip_addresses) == 2
    assert not a.same_set(ca.ServerNames.of(["a.test"], ["10.0.0.1", "::1"]))
