"""The PostgreSQL statement guard's session side (gateway/drivers/postgres_inspect.py), over fake
transports: statements wait for the role's facts and keep their order, refusals are answered in
place, an uninspected role leaves for the raw relay, and opaque code is checked once the engine
has answered and no transaction is open."""

from __future__ import annotations

import asyncio
from typing import Any

from dbkeep.gateway.drivers.postgres_inspect import PgChecks
from dbkeep.gateway.postgres import AuthenticationOk, BackendKeyData, ErrorResponse, Query, ReadyForQuery
from dbkeep.gateway.postgres.client import REFUSAL_TOKEN_PREFIX

from test_session_drivers import FakeEngineSocket, _startup, context, pg_messages, pg_session, run


async def settle() -> None:
    for _ in range(50):  # probes are shared tasks behind a shield: a few loop turns each
        await asyncio.sleep(0)


class FakeChecks:
    def __init__(self, privileged: bool = True, problems: list[str] | None = None) -> None:
        self.privileged = privileged
        self.problems = problems or []
        self.facts_ready = asyncio.Event()
        self.protect_calls = 0

    def checks(self) -> PgChecks:
        async def facts(_rid: str, _user: str) -> tuple[bool, bool]:
            await self.facts_ready.wait()
            return self.privileged, False

        async def graph(_rid: str) -> list[tuple[str, str]]:
            return [("rds_iam", "alice")]

        async def routines(_rid: str, _db: str) -> tuple[frozenset[str], frozenset[str]]:
            return frozenset({"now"}), frozenset({"myfunc"})

        async def protect(_rid: str) -> list[str]:
            self.protect_calls += 1
            return list(self.problems)

        return PgChecks(facts=facts, role_graph=graph, routines=routines, protect=protect)


async def logged_in(fake: FakeChecks) -> tuple[Any, Any, FakeEngineSocket, Any]:
    ctx = context("postgres")
    ctx.postgres_checks = fake.checks()
    engine = FakeEngineSocket()
    session, client = await pg_session(ctx, engine)
    session.data_received(_startup("master"))
    await settle()
    engine.protocol.data_received(AuthenticationOk().build() + BackendKeyData(1, b"\x00\x00\x00\x01").build()
                                  + ReadyForQuery("I").build())
    return ctx, session, engine, client


def sent_queries(engine: FakeEngineSocket) -> list[str]:
    out = []
    data = engine.transport.data
    startup = int.from_bytes(data[:4], "big")  # the StartupMessage has no type byte
    for message in pg_messages(data[startup:]):
        if message[:1] == b"Q":
            out.append(Query.parse(message).sql)
    return out


def test_statements_wait_for_the_facts_and_keep_their_order() -> None:
    async def main() -> None:
        fake = FakeChecks()
        ctx, session, engine, client = await logged_in(fake)
        before = len(sent_queries(engine))
        session.data_received(Query.from_sql("ALTER ROLE rdsadmin NOLOGIN").build() + Query.from_sql("SELECT 1").build())
        await settle()
        assert len(sent_queries(engine)) == before  # held: the role's facts are not known yet
        assert not client.reading
        fake.facts_ready.set()
        await settle()
        queries = sent_queries(engine)[before:]
        assert queries[0].startswith(REFUSAL_TOKEN_PREFIX.decode()) and queries[1] == "SELECT 1"
        assert client.reading
        (event,) = ctx.audit.of("gateway.statement_refused")
        assert event["rule"] == "rdsadmin is untouchable" and event["statement"] == "ALTER ROLE rdsadmin NOLOGIN"

    run(main())


def test_an_uninspected_role_leaves_for_the_raw_relay() -> None:
    async def main() -> None:
        fake = FakeChecks(privileged=False)
        fake.facts_ready.set()
        ctx, session, engine, client = await logged_in(fake)
        await settle()
        assert session._inspector.active is False
        assert session.data_received == engine.transport.write

    run(main())


def test_grants_wait_for_the_role_graph() -> None:
    async def main() -> None:
        fake = FakeChecks()
        fake.facts_ready.set()
        ctx, session, engine, client = await logged_in(fake)
        await settle()
        before = len(sent_queries(engine))
        session.data_received(Query.from_sql("GRANT rds_ad TO alice").build())
        await settle()
        (refused,) = sent_queries(engine)[before:]
        assert refused.startswith(REFUSAL_TOKEN_PREFIX.decode())
        assert "rds_iam and rds_ad" in ctx.audit.of("gateway.statement_refused")[0]["reason"]

    run(main())


def test_opaque_code_is_checked_when_its_transaction_has_ended() -> None:
    async def main() -> None:
        fake = FakeChecks(problems=["rds_iam: has an expiry (VALID UNTIL)"])
        fake.facts_ready.set()
        ctx, session, engine, client = await logged_in(fake)
        await settle()
        session.data_received(Query.from_sql("BEGIN").build())
        engine.protocol.data_received(b"C\x00\x00\x00\x0aBEGIN\x00" + ReadyForQuery("T").build())
        session.data_received(Query.from_sql("DO $$ BEGIN NULL; END $$").build())
        engine.protocol.data_received(b"C\x00\x00\x00\x07DO\x00" + ReadyForQuery("T").build())
        await settle()
        assert fake.protect_calls == 0  # the transaction is still open
        session.data_received(Query.from_sql("COMMIT").build())
        engine.protocol.data_received(b"C\x00\x00\x00\x0bCOMMIT\x00" + ReadyForQuery("I").build())
        session.data_received(Query.from_sql("SELECT 2").build())  # waits for the check
        await settle()
        assert fake.protect_calls == 1
        assert "SELECT 2" not in sent_queries(engine)
        error = ErrorResponse.parse(pg_messages(client.data)[-1])
        assert (error.severity, error.sqlstate) == ("FATAL", "42501") and "undone" in error.message
        (event,) = ctx.audit.of("gateway.protected_roles_restored")
        assert event["repairs"] == fake.problems and event["rule"] == "opaque: DoStmt"
        assert session.closed

    run(main())


def test_harmless_opaque_code_keeps_the_session() -> None:
    async def main() -> None:
        fake = FakeChecks()
        fake.facts_ready.set()
        ctx, session, engine, client = await logged_in(fake)
        await settle()
        session.data_received(Query.from_sql("SELECT myfunc()").build())
        engine.protocol.data_received(b"C\x00\x00\x00\x0dSELECT 1\x00" + ReadyForQuery("I").build())
        session.data_received(Query.from_sql("SELECT now()").build())
        await settle()
        assert fake.protect_calls == 1 and sent_queries(engine)[-1] == "SELECT now()" and not session.closed

    run(main())
