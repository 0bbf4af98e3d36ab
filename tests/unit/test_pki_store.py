"""dbkeep.pki.store: files, modes, the never-overwrite rule for the CA, and reissue decisions."""

from __future__ import annotations

import datetime as dt
import ipaddress
import itertools
import os
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from dbkeep.clock import FakeClock
from dbkeep.pki import ca
from dbkeep.pki.store import PkiStore, PkiStoreError

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
NAMES = dict(
    common_name="orders.cluster-x.dbkeep.test",
    dns_names=["orders.cluster-x.dbkeep.test", "orders.cluster-ro-x.dbkeep.test"],
    ip_addresses=["127.0.0.1", "::1"],
)


@pytest.fixture(scope="module")
def key_pool():
    return [ca.generate_private_key() for _ in range(4)]


@pytest.fixture
def key_factory(key_pool):
    """Hands out pre-generated keys in turn, so consecutive certificates get different keys."""
    keys = itertools.cycle(key_pool)
    lock = threading.Lock()

    def next_key():
        with lock:
            return next(keys)

    return next_key


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def store(tmp_path, clock, key_factory) -> PkiStore:
    return PkiStore(tmp_path / "state", clock, ca_label="testhost", key_factory=key_factory)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_ensure_ca_creates_files_with_modes(store, tmp_path):
    paths = store.ensure_ca()
    assert paths.cert_path == tmp_path / "state" / "ca.pem"
    assert paths.key_path == tmp_path / "state" / "ca-key.pem"
    assert _mode(paths.cert_path) == 0o600
    assert _mode(paths.key_path) == 0o600
    assert _mode(tmp_path / "state" / "pki") == 0o700
    cert = x509.load_pem_x509_certificate(paths.cert_path.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=dbkeep CA testhost,O=dbkeep"
    assert store.ca_pem() == paths.cert_path.read_bytes()
    assert not list((tmp_path / "state").glob(".*.tmp"))


def test_ensure_ca_loads_the_existing_ca_and_never_overwrites(store, tmp_path, clock, key_factory):
    paths = store.ensure_ca()
    before = (paths.cert_path.read_bytes(), paths.key_path.read_bytes())
    clock.advance(86400)
    again = PkiStore(tmp_path / "state", clock, ca_label="another", key_factory=key_factory)
    assert again.ensure_ca() == paths
    assert again.ca_pem() == before[0]
    assert (paths.cert_path.read_bytes(), paths.key_path.read_bytes()) == before


def test_ca_pem_creates_the_ca_on_first_use(store):
    assert store.ca_pem().startswith(b"-----BEGIN CERTIFICATE-----")
    assert store.ca_paths.key_path.exists()


def test_key_mode_is_exact_whatever_the_umask(tmp_path, clock, key_factory):
    old = os.umask(0)
    try:
        store = PkiStore(tmp_path / "state", clock, key_factory=key_factory)
        paths = store.ensure_ca()
        server = store.server_certificate("c1", **NAMES)
    finally:
        os.umask(old)
    assert _mode(paths.key_path) == 0o600 and _mode(server.key_path) == 0o600
    assert _mode(paths.cert_path) == 0o600 and _mode(server.cert_path) == 0o600
    assert _mode(server.key_path.parent) == 0o700


def test_key_files_are_created_with_0600_from_the_first_instant(store, monkeypatch):
    """Every file that becomes a key is opened with mode 0600: it is never wider, even briefly."""
    real_open = os.open
    created: dict[str, int] = {}

    def recording_open(path, flags, mode=0o777, *args, **kwargs):
        if flags & os.O_CREAT:
            created[os.fspath(path)] = mode
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    store.ensure_ca()
    store.server_certificate("c1", **NAMES)
    key_temps = {path: mode for path, mode in created.items() if "key.pem" in os.path.basename(path)}
    assert len(key_temps) == 3  # the CA key and the server's RSA and ECDSA keys, each through a temp file
    assert set(key_temps.values()) == {0o600}
    assert all(os.path.basename(path).startswith(".") for path in key_temps)


def test_a_ca_certificate_without_its_key_is_an_error(store):
    paths = store.ensure_ca()
    paths.key_path.unlink()
    fresh = PkiStore(paths.cert_path.parent, FakeClock(START))
    with pytest.raises(PkiStoreError, match="key .* is missing"):
        fresh.ensure_ca()
    assert not paths.key_path.exists()


def test_a_ca_key_without_its_certificate_is_completed_with_the_same_key(store, key_factory):
    paths = store.ensure_ca()
    key_pem = paths.key_path.read_bytes()
    paths.cert_path.unlink()
    fresh = PkiStore(paths.cert_path.parent, FakeClock(START), key_factory=key_factory)
    fresh.ensure_ca()
    assert paths.key_path.read_bytes() == key_pem
    cert = x509.load_pem_x509_certificate(paths.cert_path.read_bytes())
    assert ca.key_matches_certificate(ca.load_private_key(key_pem), cert)


def test_a_ca_key_that_does_not_match_is_an_error(store, tmp_path, key_factory):
    paths = store.ensure_ca()
    other = PkiStore(tmp_path / "other", FakeClock(START), key_factory=key_factory)
    other_paths = other.ensure_ca()
    paths.cert_path.write_bytes(other_paths.cert_path.read_bytes())
    with pytest.raises(PkiStoreError, match="is not the key of"):
        PkiStore(paths.cert_path.parent, FakeClock(START)).ensure_ca()


def test_concurrent_first_starts_create_one_ca(tmp_path, clock, key_factory):
    stores = [PkiStore(tmp_path / "state", clock, key_factory=key_factory) for _ in range(4)]
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.ca_pem())) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 4 and len(set(results)) == 1


def test_server_certificate_files_and_contents(store, tmp_path):
    paths = store.server_certificate("c1", **NAMES)
    assert paths.cert_path == tmp_path / "state" / "pki" / "c1" / "cert.pem"
    assert paths.key_path == tmp_path / "state" / "pki" / "c1" / "key.pem"
    assert _mode(paths.cert_path.parent) == 0o700
    assert _mode(paths.key_path) == 0o600
    assert _mode(paths.cert_path) == 0o600
    cert = x509.load_pem_x509_certificate(paths.cert_path.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(store.ca_pem())
    cert.verify_directly_issued_by(ca_cert)
    names = ca.ServerNames.from_certificate(cert)
    assert set(names.dns_names) == set(NAMES["dns_names"])
    assert set(names.ip_addresses) == {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    assert ca.key_matches_certificate(ca.load_private_key(paths.key_path.read_bytes()), cert)
    assert cert.not_valid_after_utc - START == dt.timedelta(days=397)
    assert sorted(p.name for p in paths.cert_path.parent.iterdir()) == ["cert.pem", "ec-cert.pem", "ec-key.pem", "key.pem"]
    # the ECDSA twin: same names and subject, a P-256 key, signed by the same CA, key 0600
    assert paths.ec_cert_path is not None and paths.ec_key_path is not None
    assert _mode(paths.ec_key_path) == 0o600 and _mode(paths.ec_cert_path) == 0o600
    ec_cert = x509.load_pem_x509_certificate(paths.ec_cert_path.read_bytes())
    ec_cert.verify_directly_issued_by(ca_cert)
    ec_key = ca.load_private_key(paths.ec_key_path.read_bytes())
    assert isinstance(ec_key, ec.EllipticCurvePrivateKey) and ec_key.curve.name == "secp256r1"
    assert ca.key_matches_certificate(ec_key, ec_cert)
    assert ec_cert.subject == cert.subject and ca.ServerNames.from_certificate(ec_cert).same_set(names)
    assert paths.chains() == [(paths.cert_path, paths.key_path), (paths.ec_cert_path, paths.ec_key_path)]


def test_a_missing_ecdsa_pair_is_issued_with_a_fresh_rsa_pair(store):
    """A state dir from before the ECDSA twin (or a lost ec-key.pem) gets both pairs anew."""
    first = store.server_certificate("c1", **NAMES)
    serial = _serial(first.cert_path)
    assert first.ec_key_path is not None
    first.ec_key_path.unlink()
    second = store.server_certificate("c1", **NAMES)
    assert second.ec_key_path is not None and second.ec_key_path.exists()
    assert _serial(second.cert_path) != serial


def test_same_request_keeps_the_certificate(store, clock):
    first = store.server_certificate("c1", **NAMES)
    serial, key = _serial(first.cert_path), first.key_path.read_bytes()
    clock.advance(86400 * 300)
    reordered = dict(
        NAMES, dns_names=[n.upper() for n in reversed(NAMES["dns_names"])], ip_addresses=["::1", "127.0.0.1"]
    )
    second = store.server_certificate("c1", **reordered)
    assert second == first
    assert _serial(second.cert_path) == serial and second.key_path.read_bytes() == key


@pytest.mark.parametrize(
    "change",
    [
        dict(dns_names=["orders.cluster-x.dbkeep.test"]),
        dict(dns_names=NAMES["dns_names"] + ["custom.cluster-custom-x.dbkeep.test"]),
        dict(ip_addresses=["127.0.0.1"]),
        dict(ip_addresses=["127.0.0.1", "::1", "192.0.2.10"]),
        dict(common_name="orders.cluster-ro-x.dbkeep.test"),
    ],
    ids=["dns-removed", "dns-added", "ip-removed", "ip-added", "cn-changed"],
)
def test_changed_names_reissue(store, change):
    first = store.server_certificate("c1", **NAMES)
    serial = _serial(first.cert_path)
    key = first.key_path.read_bytes()
    second = store.server_certificate("c1", **dict(NAMES, **change))
    cert = x509.load_pem_x509_certificate(second.cert_path.read_bytes())
    assert cert.serial_number != serial
    assert second.key_path.read_bytes() != key
    wanted = ca.ServerNames.of(dict(NAMES, **change)["dns_names"], dict(NAMES, **change)["ip_addresses"])
    assert ca.ServerNames.from_certificate(cert).same_set(wanted)
    assert ca.key_matches_certificate(ca.load_private_key(second.key_path.read_bytes()), cert)


def test_reissue_thirty_days_before_expiry(store, clock):
    first = store.server_certificate("c1", **NAMES)
    serial = _serial(first.cert_path)
    clock.advance(86400 * (397 - 31))
    assert _serial(store.server_certificate("c1", **NAMES).cert_path) == serial
    clock.advance(86400 * 2)  # now 29 days before the end
    renewed = store.server_certificate("c1", **NAMES)
    cert = x509.load_pem_x509_certificate(renewed.cert_path.read_bytes())
    assert cert.serial_number != serial
    assert cert.not_valid_after_utc - clock.now() == dt.timedelta(days=397)


def test_reissue_when_the_stored_files_are_damaged(store):
    paths = store.server_certificate("c1", **NAMES)
    serial = _serial(paths.cert_path)
    paths.key_path.unlink()
    assert _serial(store.server_certificate("c1", **NAMES).cert_path) != serial
    paths.cert_path.write_bytes(b"not a certificate")
    store.server_certificate("c1", **NAMES)
    x509.load_pem_x509_certificate(paths.cert_path.read_bytes())


def test_reissue_when_signed_by_another_ca(store, tmp_path, key_factory):
    paths = store.server_certificate("c1", **NAMES)
    other = PkiStore(tmp_path / "other", FakeClock(START), key_factory=key_factory)
    foreign = other.server_certificate("c1", **NAMES)
    paths.cert_path.write_bytes(foreign.cert_path.read_bytes())
    paths.key_path.write_bytes(foreign.key_path.read_bytes())
    store.server_certificate("c1", **NAMES)
    cert = x509.load_pem_x509_certificate(paths.cert_path.read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(store.ca_pem()))


def test_a_widened_key_mode_is_narrowed(store):
    paths = store.server_certificate("c1", **NAMES)
    os.chmod(paths.key_path, 0o644)
    store.server_certificate("c1", **NAMES)
    assert _mode(paths.key_path) == 0o600


def test_remove_server_certificate(store):
    paths = store.server_certificate("c1", **NAMES)
    other = store.server_certificate("c2", **NAMES)
    store.remove_server_certificate("c1")
    assert not paths.cert_path.parent.exists()
    assert other.cert_path.exists()
    store.remove_server_certificate("c1")  # removing again is fine
    store.remove_server_certificate("never-issued")


@pytest.mark.parametrize("name", ["", ".", "..", "../escape", "a/b", ".hidden", "x" * 129, "a b"])
def test_invalid_certificate_names_are_refused(store, name):
    with pytest.raises(ValueError, match="certificate name"):
        store.server_certificate(name, **NAMES)
    with pytest.raises(ValueError, match="certificate name"):
        store.remove_server_certificate(name)


def test_invalid_san_values_are_refused_before_anything_is_written(store):
    with pytest.raises(ValueError, match="not a valid IP address"):
        store.server_certificate("c1", **dict(NAMES, ip_addresses=["not-an-ip"]))
    assert not (store.ca_paths.cert_path.parent / "pki" / "c1").exists()
