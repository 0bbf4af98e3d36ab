"""The statement guard of privileged PostgreSQL sessions (the driver side of ``guard/pg_rules``).

Theory of operation.

1. **Which sessions.** Every session starts *inspected* (fail closed): it stays in Python and
   its statements are held until the role's facts are known (a statement with nothing any rule
   reads passes at once: its verdict does not depend on them). The facts are asked of the
   engine through rdsadmin (``PgChecks.facts``; cached :data:`FACTS_TTL` seconds per cluster
   and role, dropped after any statement that may change roles): a role with CREATEROLE, a
   member of rds_superuser, or a role that can SET ROLE to such a role (every role it is a
   member of counts: on PostgreSQL 15 membership is what SET ROLE needs) stays inspected, and
   with ``rds.restrict_password_commands`` = 1 so does every role outside rds_password (any
   role may change its own password); any other goes to the native relay, as unguarded
   sessions always did. An inspected session stays
   inspected (a SET ROLE to a lesser role can be undone). When an inspected session changes
   roles or runs code the guard cannot see into, the cluster's uninspected sessions are asked
   about again once the engine has answered, and those whose role has become privileged are
   ended (they cannot be inspected from the middle of their stream).
2. **Verdicts.** :meth:`Inspector.decide` is the one entry point: a Query or Parse of an
   inspected session in, one of :data:`FORWARD`, :data:`FORWARD_THEN_CHECK`, :class:`Refuse`
   (with the DbError the client sees, as an ErrorResponse in order) or :data:`HOLD` (the
   verdict needs the engine: facts at login, the role graph for a GRANT, a check running).
   After HOLD the caller keeps the message and everything behind it, and asks again when the
   inspector calls the session's ``_guard_resume()``. An inspected session waits on the native
   relay threads whenever nothing is held or due (``postgres_native.py``): they report each
   Query/Parse/FunctionCall to :meth:`Inspector.decide_native`, which lets through what passes
   whatever the engine's position, and hand the session back to this path for the rest.
3. **Check after opaque code.** After ``DO``, ``CALL``, ``EXECUTE`` or a call of a function
   that is not a built-in, the inspector waits until the engine has answered everything sent
   so far with ReadyForQuery and no transaction is open (:meth:`engine_progress`: the change is
   committed or gone), holds the next statement, and checks rdsadmin and the protected roles
   through rdsadmin (``PgChecks.protect``, which also restores them). Damage found: the
   session is ended with a FATAL, and ``gateway.protected_roles_restored`` is audited.
4. **Audit.** Every refusal is ``gateway.statement_refused`` with the cluster, session, IAM
   principal (when the login was an IAM one), database user, rule and the statement with every
   literal masked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from dbkeep.errors import DbError
from dbkeep.guard.pg_roles import RoleGraph
from dbkeep.guard.pg_rules import UNKNOWN_ROLE, PgFacts, Verdict, judge
from dbkeep.guard.pg_rules import judge as judge_statement
from dbkeep.guard.pg_statements import backslash_in_standard_string, mask, native_settings_safe, plain

from dbkeep.gateway.postgres import FunctionCall, Parse, Query, StartupMessage
from dbkeep.gateway.postgres import errors as wire_errors
from dbkeep.gateway.postgres.errcodes import CANNOT_CONNECT_NOW, INSUFFICIENT_PRIVILEGE
from dbkeep.gateway.postgres.relay import HELD, client_to_engine, release
from dbkeep.gateway.postgres.relay import HOLD as RELAY_HOLD
from dbkeep.gateway.postgres.startup import as_set_statement, startup_settings
from dbkeep.errors import ProtocolError

from .session import Phase

if TYPE_CHECKING:
    from .postgres import PostgresSession

log = logging.getLogger("dbkeep.gateway.postgres")

FACTS_TTL = 5.0  # seconds a role's facts are reused for new sessions of the same cluster
ROUTINES_TTL = 2.0  # seconds a database's routine names are reused
GUARD_PAUSE = "guard"
# what in a statement that changes settings may change standard_conforming_strings
_MAY_SET_STRINGS = ("standard_conforming_strings", "reset", "discard", "set_config")
_MAY_SET_ENCODING = ("client_encoding", "names", "reset", "discard", "set_config")
ENCODING_UNSURE = ("dbkeep's statement guard does not read a statement with non-ASCII characters sent before the "
                   "engine has answered a change of client_encoding: send it after that answer")
STRINGS_UNREADABLE = ("dbkeep's statement guard does not read a backslash in an ordinary string literal while "
                      "standard_conforming_strings is off or changing: write the literal as an E'' string, or turn "
                      "standard_conforming_strings on")  # a pause reason of the client leg: a statement waits for its verdict


@dataclass(frozen=True)
class PgChecks:
    """What the inspector asks of the engine through rdsadmin (``app.py`` injects the driver's)."""

    facts: Callable[[str, str], Awaitable[tuple[bool, bool]]]  # (cluster, role) -> (inspect, rds_password member)
    role_graph: Callable[[str], Awaitable[list[tuple[str, str]]]]
    routines: Callable[[str, str], Awaitable[tuple[frozenset[str], frozenset[str]]]]  # (cluster, database)
    protect: Callable[[str], Awaitable[list[str]]]  # check and restore; what was wrong


@dataclass(frozen=True)
class Refuse:
    error: DbError


FORWARD = "forward"
FORWARD_THEN_CHECK = "forward, then check"
HOLD = "hold"
Decision = Refuse | str


def _cache(ctx: Any, name: str) -> dict[Any, Any]:
    return ctx.extra.setdefault(f"postgres.{name}", {})


def live_sessions(ctx: Any, resource_id: str) -> set[PostgresSession]:
    return _cache(ctx, "sessions").setdefault(resource_id, set())


def forget_facts(ctx: Any, resource_id: str) -> None:
    """Roles may have changed on the cluster: cached facts are not used again."""
    facts = _cache(ctx, "facts")
    for key in [k for k in facts if k[0] == resource_id]:
        del facts[key]
    generations = _cache(ctx, "generation")
    generations[resource_id] = generations.get(resource_id, 0) + 1


async def _cached(ctx: Any, name: str, key: Any, ttl: float, probe: Callable[[], Awaitable[Any]]) -> Any:
    """One probe shared by every session that asks meanwhile; its answer reused for ``ttl``
    seconds unless the cluster's roles changed while it ran. Not the session's task: a client
    that quits at once must not cancel it for the others."""
    cache = _cache(ctx, name)
    resource_id = key[0]
    generation = _generation(ctx, resource_id)
    hit = cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < ttl and hit[1] == generation:
        return hit[2]
    inflight = _cache(ctx, name + ".inflight")
    task = inflight.get(key)
    if task is None:
        task = asyncio.get_running_loop().create_task(probe())
        inflight[key] = task
        task.add_done_callback(lambda _t: inflight.pop(key, None))
    value = await asyncio.shield(task)
    if _generation(ctx, resource_id) == generation:
        cache[key] = (time.monotonic(), generation, value)
    return value


def _generation(ctx: Any, resource_id: str) -> tuple[int, int]:
    """What cached facts were read under: role changes seen in this cluster's inspected sessions,
    and catalog commits (a master reset or a repair changes roles through rdsadmin and ends with one)."""
    return _cache(ctx, "generation").get(resource_id, 0), getattr(ctx.resolver, "generation", 0)


class Inspector:
    """The statement guard of one PostgreSQL session (see the module docstring)."""

    def __init__(self, session: PostgresSession) -> None:
        self.session = session
        self.ctx = session.ctx
        self.checks: PgChecks = session.ctx.postgres_checks
        self.active = True  # inspected
        self.facts: PgFacts | None = None  # None: still learning (statements are held)
        self.checking = False  # a check after opaque code runs (statements are held)
        self.check_due_at: int | None = None  # engine ReadyForQuery count that makes the check due
        self.sticky = False  # a named prepared statement runs opaque code: check at every transaction end
        self.recheck_due_at: int | None = None  # role changes: re-ask about uninspected sessions then
        self.graph_wanted = False
        # a setting may have changed (SET, RESET, DISCARD, set_config): the session stays in
        # Python, which reads the engine's ParameterStatus (client_encoding decodes what follows),
        # until the engine has answered everything and no transaction that could undo it is open
        self.settings_pending = False
        # ... and that change may be to standard_conforming_strings: until the engine's
        # ParameterStatus is read, a statement is read as if it were off (``_strings_unreadable``)
        self.strings_unsure = False
        # ... or to client_encoding: until then a statement with a non-ASCII byte may be decoded
        # here otherwise than by the engine (ASCII reads alike in every encoding)
        self.encoding_unsure = False
        self._graph: RoleGraph | None = None  # read for the statement being held
        self._opaque_statement = ""
        self._rule = ""
        self._database: str | None = None

    # --- login ------------------------------------------------------------------------------

    def logged_in(self, user: str, database: str | None, startup_role: str | None) -> None:
        target = self.session.target
        assert target is not None
        self._database = database
        live_sessions(self.ctx, target.resource_id).add(self.session)
        self._spawn(self._learn(user, database, startup_role))

    def session_closed(self) -> None:
        """The session ends: opaque code forwarded but not yet checked still gets its check."""
        target = self.session.target
        if target is not None:
            live_sessions(self.ctx, target.resource_id).discard(self.session)
        if not self.checking and (self.check_due_at is not None or self.sticky):
            self.check_due_at = None
            self.sticky = False
            self.checking = True
            _spawn_detached(self.ctx, self._check())

    async def _learn(self, user: str, database: str | None, startup_role: str | None) -> None:
        session, checks = self.session, self.checks
        target = session.target
        assert target is not None
        rid = target.resource_id
        try:
            privileged, member = await _cached(self.ctx, "facts", (rid, user), FACTS_TTL,
                                               lambda: checks.facts(rid, user))
            builtins, routines = await self._routines()
        except Exception as exc:  # noqa: BLE001 - unknown: the session cannot be judged
            log.warning("postgres session %s (cluster %s): cannot read the facts of role %s: %s", session.id,
                        session.identifier, user, exc)
            session._end_unjudgeable("the gateway cannot read this role's privileges now; try again")
            return
        if session.closed:
            return
        # with rds.restrict_password_commands, a non-member of rds_password is inspected too: a
        # plain role may change its own password (ALTER USER CURRENT_USER PASSWORD …, \password)
        if not privileged and (member or not target.restrict_password_commands):
            self.active = False
        self.facts = PgFacts(session_user=user, current_role=startup_role,
                             restrict_password_commands=target.restrict_password_commands,
                             password_member=member, builtins=builtins, routines=routines)
        session._guard_resume()

    async def _routines(self) -> tuple[frozenset[str] | None, frozenset[str] | None]:
        target = self.session.target
        assert target is not None
        rid, database = target.resource_id, self._database or self.session.user or "postgres"
        try:
            return await _cached(self.ctx, "routines", (rid, database), ROUTINES_TTL,
                                 lambda: self.checks.routines(rid, database))
        except Exception as exc:  # noqa: BLE001 - unknown: every function call is checked after
            log.info("cluster %s: cannot read the routines of %s: %s", self.session.identifier, database, exc)
            return None, None

    # --- the entry points -------------------------------------------------------------------

    @property
    def may_go_native(self) -> bool:
        """Nothing waits for the engine's answers: the session may leave for the native relay
        threads, which report only Query, Parse and FunctionCall (``postgres_native.py``)."""
        return (self.active and self.facts is not None and not self.checking and not self.graph_wanted
                and self.check_due_at is None and not self.sticky and self.recheck_due_at is None
                and not self.settings_pending)

    def decide_native(self, event: Query | Parse | FunctionCall) -> bool:
        """A statement the native relay reported: True when it passes whatever the engine's
        transaction status and answers so far (the relay forwards it); False for the rest,
        which :meth:`decide` judges once the session is back in Python with those known: a
        refusal, a hold, a check after it, a change of the current role, of roles or routines
        (``_passed`` acts on those), or of a setting the engine reports (``client_encoding``
        decodes the next statements; ParameterStatus reaches Python only in its relay)."""
        if not self.may_go_native or type(event) is FunctionCall:
            return False
        sql = event.sql  # type: ignore[union-attr]
        if sql is None or self._strings_unreadable(sql):
            return False
        if plain(sql):
            return True
        if not native_settings_safe(sql):
            return False
        verdict = judge(sql, self.facts)  # type: ignore[arg-type]
        return (verdict.refusal is None and not verdict.needs_graph and not verdict.check_after
                and not verdict.roles_changed and not verdict.routines_changed and verdict.role is None)


    def decide(self, event: Query | Parse | FunctionCall) -> Decision:
        if self.checking or self.graph_wanted:
            return HOLD
        if not self.active:
            return FORWARD
        sql = None if type(event) is FunctionCall else event.sql  # type: ignore[union-attr]
        if sql is not None and self._strings_unreadable(sql):
            return self._refused(Refuse(DbError(STRINGS_UNREADABLE, sqlstate=INSUFFICIENT_PRIVILEGE)),
                                 "standard_conforming_strings off", sql)
        if sql is not None and self.encoding_unsure and not sql.isascii():
            return self._refused(Refuse(DbError(ENCODING_UNSURE, sqlstate=INSUFFICIENT_PRIVILEGE)),
                                 "client_encoding changing", sql)
        if sql is not None and plain(sql):
            return FORWARD  # nothing any rule reads: passes whatever the facts (the hot path)
        facts = self.facts
        if facts is None:
            return HOLD
        if isinstance(event, FunctionCall):  # the fast-path function call: opaque
            self._opaque("FunctionCall message", parse=False)
            return FORWARD_THEN_CHECK
        if sql is None:
            return self._refused(Refuse(DbError("invalid byte sequence in the statement's encoding", sqlstate="22021")),
                                 "undecodable statement", "")
        engine = self.session.engine
        status = engine.transaction_status if engine is not None else "I"
        facts = replace(facts, in_transaction=status in ("T", "E"), graph=self._graph)
        verdict = judge(sql, facts)
        if verdict.needs_graph:
            self.graph_wanted = True
            self._spawn(self._read_graph())
            return HOLD
        self._graph = None
        if verdict.refusal is not None:
            r = verdict.refusal
            return self._refused(Refuse(DbError(r.message, sqlstate=r.sqlstate)), r.rule, r.statement)
        return self._passed(verdict, sql, parse=isinstance(event, Parse) and bool(event.name))

    def _strings_unreadable(self, sql: str) -> bool:
        """An ordinary string literal holds a backslash while standard_conforming_strings is off
        (as the engine last reported it) or may have just changed: the engine would read it
        differently from the guard (``pg_statements.backslash_in_standard_string``)."""
        if self.session.client.parameters.get("standard_conforming_strings", "on") == "on" and not self.strings_unsure:
            return False
        return backslash_in_standard_string(sql)

    def _passed(self, verdict: Verdict, sql: str, *, parse: bool) -> str:
        assert self.facts is not None
        target = self.session.target
        if not native_settings_safe(sql):
            self.settings_pending = True
            lowered = sql.lower()
            if any(word in lowered for word in _MAY_SET_STRINGS):
                self.strings_unsure = True
            if any(word in lowered for word in _MAY_SET_ENCODING):
                self.encoding_unsure = True
        if verdict.role is not None:
            self.facts = replace(self.facts, current_role=verdict.role or None)
        if verdict.roles_changed and target is not None:
            forget_facts(self.ctx, target.resource_id)
            self.recheck_due_at = self._next_ready()
        if verdict.routines_changed and target is not None:
            _cache(self.ctx, "routines").pop((target.resource_id, self._database), None)
            self.facts = replace(self.facts, routines=None)  # every call checked until read again
            self._spawn(self._refresh_routines())
        if verdict.check_after:
            self._opaque_statement = sql
            self._opaque(verdict.rules[0] if verdict.rules else "opaque", parse=parse)
            return FORWARD_THEN_CHECK
        return FORWARD

    def _refused(self, refuse: Refuse, rule: str, statement: str) -> Refuse:
        session = self.session
        iam = getattr(session, "iam_principal", None)
        self.ctx.audit.event("gateway.statement_refused", verdict="deny", cluster=session.identifier,
                             session=session.id, source_ip=session.peer_host, user=session.user,
                             iam_principal=iam, sqlstate=refuse.error.sqlstate, reason=refuse.error.message,
                             rule=rule, statement=mask(statement) if statement else None)
        return refuse

    def _opaque(self, rule: str, *, parse: bool) -> None:
        self.check_due_at = self._next_ready()  # a Parse: the Sync after it
        if parse:
            self.sticky = True  # a named statement can be executed again without a new Parse
        self._rule = rule

    def _next_ready(self) -> int:
        """The ReadyForQuery count at which what is being forwarded now has been answered."""
        engine = self.session.engine
        return (engine.sync_points + 1) if engine is not None else 0

    async def _read_graph(self) -> None:
        target = self.session.target
        assert target is not None
        try:
            self._graph = RoleGraph.of(await self.checks.role_graph(target.resource_id))
        except Exception as exc:  # noqa: BLE001 - fail closed
            log.warning("postgres session %s: cannot read the role graph: %s", self.session.id, exc)
            self.session._end_unjudgeable("the gateway cannot read role memberships now; try again")
            return
        self.graph_wanted = False
        self.session._guard_resume()

    async def _refresh_routines(self) -> None:
        builtins, routines = await self._routines()
        if self.facts is not None and routines is not None:
            self.facts = replace(self.facts, builtins=builtins, routines=routines)

    # --- after the engine answered ----------------------------------------------------------

    def engine_progress(self) -> None:
        """The engine sent a ReadyForQuery (the session calls this when ``ready_count`` moved)."""
        engine = self.session.engine
        if engine is None or engine.transaction_status != "I":
            return
        ready = engine.ready_count
        if self.settings_pending and ready >= engine.sync_points:
            self.settings_pending = False  # the engine's ParameterStatus has been read here
            self.strings_unsure = self.encoding_unsure = False
        if self.checking:
            return
        if self.recheck_due_at is not None and ready >= self.recheck_due_at:
            self.recheck_due_at = None
            _spawn_detached(self.ctx, recheck_uninspected(self.ctx, self.session))
        due = self.check_due_at
        if (due is not None and ready >= due) or (self.sticky and ready >= engine.sync_points):
            self.check_due_at = None
            self.checking = True
            _spawn_detached(self.ctx, self._check())  # not the session's: it runs even if the client leaves

    async def _check(self) -> None:
        session = self.session
        target = session.target
        assert target is not None
        try:
            problems = await self.checks.protect(target.resource_id)
        except Exception as exc:  # noqa: BLE001 - fail closed
            log.error("postgres session %s (cluster %s): the check of the protected roles failed: %s", session.id,
                      session.identifier, exc)
            problems = [f"check failed: {exc}"]
            repaired = False
        else:
            repaired = True
        if problems:
            forget_facts(self.ctx, target.resource_id)
            log.warning("postgres session %s (cluster %s): protected roles changed by %s: %s; %s; session ended",
                        session.id, session.identifier, self._rule, "; ".join(problems),
                        "restored" if repaired else "NOT restored")
            self.ctx.audit.event("gateway.protected_roles_restored", verdict="deny", cluster=session.identifier,
                                 session=session.id, source_ip=session.peer_host, user=session.user,
                                 iam_principal=getattr(session, "iam_principal", None), rule=self._rule,
                                 statement=mask(self._opaque_statement) if self._opaque_statement else None,
                                 repairs=problems, restored=repaired)
            _spawn_detached(self.ctx, recheck_uninspected(self.ctx, session))
            if not session.closed:
                session._end_after_check()
            return
        self.checking = False
        if not session.closed:
            session._guard_resume()

    def _spawn(self, coro: Any) -> None:
        self.session._spawn(coro)


def _spawn_detached(ctx: Any, coro: Any) -> None:
    tasks: set[asyncio.Task[None]] = _cache(ctx, "tasks").setdefault("all", set())
    task = asyncio.get_running_loop().create_task(coro)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def recheck_uninspected(ctx: Any, session: PostgresSession) -> None:
    """Roles may have changed: the cluster's uninspected sessions are asked about again, and
    those whose role now needs inspection are ended (they are in the native relay)."""
    target = session.target
    if target is None:
        return
    others = [s for s in live_sessions(ctx, target.resource_id)
              if s is not session and s._inspector is not None and not s._inspector.active and not s.closed]
    if not others:
        return
    checks: PgChecks = ctx.postgres_checks
    verdicts: dict[str, bool] = {}
    for user in {s.user for s in others if s.user}:
        try:
            verdicts[user] = (await checks.facts(target.resource_id, user))[0]
        except Exception as exc:  # noqa: BLE001 - unknown: as privileged (fail closed)
            log.warning("cannot read the facts of role %s: %s", user, exc)
            verdicts[user] = True
    for other in others:
        if other.user and verdicts.get(other.user) and not other.closed:
            log.warning("postgres session %s (cluster %s): role %s now needs inspection; session ended", other.id,
                        other.identifier, other.user)
            ctx.audit.event("gateway.session_ended", verdict="deny", cluster=other.identifier, session=other.id,
                            source_ip=other.peer_host, user=other.user,
                            reason=f"role {other.user} was given privileges whose sessions dbkeep inspects; reconnect")
            other._close()


class InspectedSession:
    """The PostgreSQL session's side of the statement guard (mixed into ``PostgresSession``):
    start-up settings, the judge the framed relay calls, holding and resuming, ending."""

    _inspector: Inspector | None
    _held: list[Query | Parse | FunctionCall]
    _startup_role: str | None

    def _inspect_statement(self, event: Query | Parse | FunctionCall) -> DbError | None | object:
        decision = self._inspector.decide(event)  # type: ignore[union-attr]
        if decision is HOLD:
            return RELAY_HOLD
        if type(decision) is Refuse:
            return decision.error  # type: ignore[union-attr]
        return None  # forward (the inspector tracks a check after)

    def _guard_resume(self) -> None:
        """The inspector has what it waited for: judge the held statement again, then go on
        with what the client sent behind it (and leave for the native relay when the session
        is no longer inspected)."""
        try:
            if self.phase is not Phase.RELAYING or self.engine is None:
                return
            out: list[bytes] = []
            done = None
            try:
                if self._held:
                    event = self._held[0]
                    verdict = self._inspect_statement(event)
                    if verdict is RELAY_HOLD:
                        return
                    self._held.clear()
                    release(self.client, self.engine, event, verdict, out)  # type: ignore[arg-type]
                done = client_to_engine(self.client, self.engine, self._statement_judge, out, self._held)  # type: ignore[arg-type]
            finally:
                transport = self.engine_leg.transport
                if out and transport is not None:
                    transport.write(b"".join(out))
            if done is HELD:
                self.client_leg.pause(GUARD_PAUSE)
                return
            self.client_leg.resume(GUARD_PAUSE)
            if done is not None:
                self._client_done(done)
            elif self._inspector is not None:
                self._go_raw()  # the native relay: inspected or not (see _go_raw)
        except ProtocolError as exc:
            self._client_protocol_error(exc)
        except Exception as exc:  # noqa: BLE001
            self._internal_error(exc)

    def _end_with(self, sqlstate: str, message: str) -> None:
        if self.closed:
            return
        if self.engine is not None and self.engine.at_message_boundary and self._offloaded is None:
            self.client_leg.write_if_open(wire_errors.fatal(sqlstate, message).build())
        self._close()

    def _end_unjudgeable(self, reason: str) -> None:
        """The inspector cannot judge this session (an rdsadmin probe failed): fail closed."""
        self._end_with(CANNOT_CONNECT_NOW, reason)

    def _end_after_check(self) -> None:
        """Opaque code of this session changed rdsadmin or a protected role (now restored)."""
        self._end_with(INSUFFICIENT_PRIVILEGE, "terminating connection because it changed rdsadmin or a role managed by the database "
                       "service; the change was undone")

    def _inspect_startup(self, startup: StartupMessage) -> bool:
        """Start-up settings are SET statements run as the user: ``role`` and
        ``session_authorization`` are judged like SET ROLE (the rest cannot touch roles)."""
        settings = startup_settings(startup)
        if settings is None:  # switches the gateway does not read: the current role is unknown
            self._startup_role = UNKNOWN_ROLE
            return True
        for name, value in settings:
            if name.lower() not in ("role", "session_authorization"):
                continue
            verdict = judge_statement(as_set_statement(name.lower(), value), PgFacts(session_user=startup.user))
            if verdict.refusal is not None:
                self._refuse(wire_errors.fatal(verdict.refusal.sqlstate, verdict.refusal.message),
                             f"guard: startup setting {name}")
                return False
            self._startup_role = UNKNOWN_ROLE if name.lower() == "session_authorization" else (verdict.role or None)
        return True


__all__ = ["PgChecks", "Inspector", "Refuse", "FORWARD", "FORWARD_THEN_CHECK", "HOLD", "forget_facts",
           "recheck_uninspected", "UNKNOWN_ROLE", "InspectedSession", "GUARD_PAUSE"]
