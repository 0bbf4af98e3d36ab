"""Nothing a client sends yields a 500: random parameters for every operation, through the real
dispatcher, catalog and SigV4 verification (in process, no engines: engine work is not started)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from urllib.parse import urlencode

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbkeep.api import query
from dbkeep.api.dispatch import Dispatcher
from dbkeep.api.services import ec2, iam, rds, sts
from dbkeep.app import Services, ensure_account, ensure_defaults
from dbkeep.audit.log import AuditLog
from dbkeep.catalog.rds import RdsStore
from dbkeep.catalog.secrets import SecretBox
from dbkeep.catalog.store import Catalog
from dbkeep.clock import SystemClock
from dbkeep.config import Config
from dbkeep.identity.credentials import Authenticator
from dbkeep.identity.sigv4 import HttpRequest
from dbkeep.rds.clusters import ClusterManager

HANDLERS = {"iam": iam.HANDLERS, "sts": sts.HANDLERS, "rds": rds.HANDLERS, "ec2": ec2.HANDLERS}


class _NoEngine:
    """Engine calls are never made: background work is dropped by the spawn below."""

    def status(self, cluster_id):
        raise RuntimeError("no engine in this test")


@pytest.fixture(scope="module")
def api():
    d = Path(tempfile.mkdtemp())
    clock = SystemClock()
    catalog = Catalog.open(f"sqlite:///{d / 'c.db'}", SecretBox.load_or_create(d / "k"))
    audit = AuditLog(d / "audit.log", clock)
    account, key, secret = ensure_account(catalog, clock)
    store = RdsStore(catalog)
    ensure_defaults(store)
    services = Services(config=Config(state_dir=d), clock=clock)
    services.clusters = ClusterManager(store, _NoEngine(), audit, clock, lambda coro: coro.close(), "127.0.0.1")
    dispatcher = Dispatcher(catalog, audit, clock, Authenticator(catalog, clock, account), HANDLERS, services)
    return dispatcher, key, secret


def call(api, service: str, params: dict[str, str]):
    dispatcher, key, secret = api
    body = urlencode(params).encode()
    req = AWSRequest(method="POST", url="http://127.0.0.1:1/", data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(Credentials(key, secret), service, "us-east-1").add_auth(req)
    headers = {k.lower(): v for k, v in req.headers.items()}
    headers["host"] = "127.0.0.1:1"
    return asyncio.run(dispatcher.handle(HttpRequest("POST", "/", "", headers, body), params, "127.0.0.1"))


OPERATIONS = [(svc, op) for svc, handlers in HANDLERS.items() for op in sorted(handlers)]
VALUES = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "0", "-1", "99999999999999999999", "true", "maybe", "aurora-mysql", "aurora-postgresql",
                     "default.aurora-mysql8.0", "arn:aws:rds:us-east-1:1:cluster:x", "sg-1", "{}", '{"Version":"2012-10-17"}',
                     "TLSv1.2", "*", "a" * 300]),
)


def _param_names(service: str, operation: str) -> list[str]:
    shape = query.service_model(service).operation_model(operation).input_shape
    names = []
    for name, member in (shape.members.items() if shape else []):
        names.append(member.serialization.get("name", name) if service != "ec2" else name)
        names += [f"{name}.member.1", f"{name}.1", f"{name}.member.1.Key", f"{name}.1.Name"]
    return names or ["Nothing"]


@st.composite
def requests(draw):
    service, operation = draw(st.sampled_from(OPERATIONS))
    names = _param_names(service, operation)
    params = draw(st.dictionaries(st.sampled_from(names), VALUES, max_size=6))
    params = {k: v for k, v in params.items() if "\x00" not in v}
    params.update(Action=operation, Version=query.service_model(service).api_version)
    return service, params


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(requests())
def test_no_input_yields_a_500(api, request_):
    service, params = request_
    response = call(api, service, params)
    assert response.status < 500, (params, response.body)
    assert "Traceback" not in response.body


def test_unknown_action_and_version(api):
    assert call(api, "iam", {"Action": "Nope", "Version": "2010-05-08"}).status == 400
    assert call(api, "iam", {"Action": "ListUsers", "Version": "1999-01-01"}).status == 400
    assert call(api, "iam", {"Action": "ListUsers"}).status == 400
