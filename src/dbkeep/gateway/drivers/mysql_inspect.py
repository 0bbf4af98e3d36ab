"""Grant-table checks of privileged MySQL sessions (the driver side of ``guard/mysql_grants``).

Theory of operation. No account but rdsadmin may ever hold a privilege outside the master's
list, but the master (and any account given write access to the ``mysql`` schema, CREATE USER,
GRANT OPTION, RELOAD …) can write the grant tables. So once the engine has accepted a login
and the gateway has injected the engine driver's checks (``ctx.mysql_hygiene``):

1. **Which sessions.** Every session starts *inspected* (fail closed): it stays in the event
   loop and every COM_QUERY and COM_STMT_PREPARE goes through :func:`~dbkeep.guard.mysql_grants.judge`.
   The account's facts are asked of the engine through rdsadmin off the event loop
   (``ctx.mysql_account_facts``, cached a few seconds per cluster and account, dropped after
   any statement that may change privileges); an account without write access to ``mysql``
   and with only read-only global privileges (directly or through any role) is then no longer
   inspected and goes to the native relay. A session that ever had a privileged user (login or
   COM_CHANGE_USER) stays inspected.
2. **Refusals** are ERR packets answered in order (``mysql/relay.py``'s ``signal_statement``); the statement
   never reaches the engine. Each is a ``gateway.statement_refused`` audit event with the rule
   and the statement, string literals masked.
3. **Hygiene.** A statement after which privileges may have been written (a hygiene trigger)
   is forwarded; every command after it is *held* (:data:`~dbkeep.gateway.mysql.relay.HOLD`, the client's reading
   paused) until the engine has answered it — its thread seen idle through rdsadmin — and
   ``ctx.mysql_hygiene`` has taken back what only rdsadmin may hold and ended the sessions of
   the accounts that held it. A statement that loads stored privileges into memory (FLUSH
   PRIVILEGES, GRANT, REVOKE, ALTER USER) is held until a hygiene has run *before* it too. A
   prepared statement whose text is a trigger makes every COM_STMT_EXECUTE of the session a
   trigger. What was taken back is a ``gateway.privileges_taken_back`` event (the driver's
   own ``engine.repaired`` events name each repair). A hygiene that fails ends the session.
   Hygiene runs even when the client has gone: it is not one of the session's tasks.
4. **PREPARE … FROM @v** (and ``EXECUTE IMMEDIATE @v``) as the first statement of a packet:
   held while the session reads ``@v`` on its own engine leg (``mysql_private.py``; the
   inspector names it in ``read_request``), then judged with that value as
   ``PREPARE s FROM '<value>'`` would be (:meth:`Inspector.variable_read`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dbkeep.guard.mysql_accounts import PROTECTED_THREAD_USERS
from dbkeep.guard.mysql_grants import (SYSTEM_DB, UNKNOWN_DB, Refusal, SessionFacts, judge, mask_literals,
                                       routine_refusal, use_database)
from dbkeep.guard.mysql_lexer import SqlMode

from dbkeep.gateway.mysql import charsets
from dbkeep.gateway.mysql.events import ChangeUser, Command, Prepare, ProcessKill, Query, ResetConnection
from dbkeep.gateway.mysql.messages import CommandCode, ErrPacket
from dbkeep.gateway.mysql.relay import HOLD
from .mysql_iam import forget_iam_accounts

if TYPE_CHECKING:
    from .mysql import MySQLSession

log = logging.getLogger("dbkeep.gateway.mysql")

# A statement that may change the client character set (SET NAMES, SET CHARACTER SET,
# character_set_client): from then on the gateway no longer knows how the engine decodes the
# bytes, and a multi-byte character whose second byte is ASCII (0x5C backslash, 0x60 backtick
# … in big5/cp932/gbk/sjis) would make the guard and the engine read different statements.
_CHARSET_CHANGE = re.compile(r"\b(names|character|charset|character_set_client)\b", re.IGNORECASE)
# the collations (ids) whose character sets have such bytes, and a few common others
READINGS = (45, 28, 1, 13, 95, 8)  # utf8mb4, gbk, big5, sjis, cp932, latin1
FACTS_TTL = 5.0  # seconds an account's facts are reused for new sessions of the same cluster
_PRIVILEGE_WORDS = ("GRANT", "REVOKE", "ROLE", "USER", "MYSQL", "CALL", "EXECUTE")


def _facts_cache(ctx: Any) -> dict[tuple[str, str], tuple[float, tuple[int, int], tuple[bool, str]]]:
    return ctx.extra.setdefault("mysql.account_facts", {})


def _tasks(ctx: Any) -> set[asyncio.Task[None]]:
    return ctx.extra.setdefault("mysql.hygiene_tasks", set())


def live_sessions(ctx: Any, resource_id: str) -> set[MySQLSession]:
    """The logged-in sessions of a cluster whose grant-table checks are configured."""
    return ctx.extra.setdefault("mysql.sessions", {}).setdefault(resource_id, set())


def _generation(ctx: Any, resource_id: str) -> tuple[int, int]:
    """What cached facts were read under: privilege changes seen in this cluster's inspected
    sessions, and catalog commits (a master reset, a restart or a repair changes privileges
    through rdsadmin and ends with one)."""
    return (ctx.extra.setdefault("mysql.facts_generation", {}).get(resource_id, 0),
            getattr(ctx.resolver, "generation", 0))


def forget_facts(ctx: Any, resource_id: str) -> None:
    """Privileges may have changed on the cluster: no cached account facts are used again,
    nor stored from a probe that started before now (nor the accounts known as IAM ones)."""
    forget_iam_accounts(ctx, resource_id)
    cache = _facts_cache(ctx)
    for key in [k for k in cache if k[0] == resource_id]:
        del cache[key]
    generations = ctx.extra.setdefault("mysql.facts_generation", {})
    generations[resource_id] = generations.get(resource_id, 0) + 1


async def account_facts(ctx: Any, resource_id: str, user: str) -> tuple[bool, str] | None:
    """The account's facts from the cache, else from one probe shared by every session of that
    account that asks meanwhile. The probe is not the session's: a client that logs in and quits
    at once (connection churn) must not cancel it, or no answer is ever cached and every login
    pays for an rdsadmin round trip."""
    key = (resource_id, user)
    cached = _facts_cache(ctx).get(key)
    if cached is not None and time.monotonic() - cached[0] < FACTS_TTL and cached[1] == _generation(ctx, resource_id):
        return cached[2]
    inflight: dict[tuple[str, str], asyncio.Task[tuple[bool, str] | None]] = ctx.extra.setdefault("mysql.facts_inflight", {})
    task = inflight.get(key)
    if task is None:
        task = asyncio.get_running_loop().create_task(_probe_facts(ctx, resource_id, user))
        inflight[key] = task
        task.add_done_callback(lambda _t: inflight.pop(key, None))
    return await asyncio.shield(task)


async def _probe_facts(ctx: Any, resource_id: str, user: str) -> tuple[bool, str] | None:
    for _attempt in range(3):
        generation = _generation(ctx, resource_id)
        try:
            facts = await ctx.mysql_account_facts(resource_id, user)
        except Exception as exc:  # noqa: BLE001 - the sessions stay inspected
            log.warning("cluster %s: cannot read the account facts of %s: %s", resource_id, user, exc)
            return None
        if generation == _generation(ctx, resource_id):
            _facts_cache(ctx)[(resource_id, user)] = (time.monotonic(), generation, facts)
            return facts
    return None  # privileges kept changing meanwhile: the answer may be stale


class Inspector:
    """The grant-table checks of one session (see the module docstring)."""

    def __init__(self, session: MySQLSession) -> None:
        self.session = session
        self.ctx = session.ctx
        self.active = True  # inspected
        self.privileged = False  # a user of this session was privileged (sticky)
        self.facts = SessionFacts(database=None, sql_mode=None)
        self.judged = 0
        self.prepared_trigger = False
        self.busy = False  # a hygiene is due or running: every command is held
        self.cleared = False  # the held statement's checks before it have run
        self.held_refusal: Refusal | None = None  # what those checks found
        self.post: tuple[str, str] | None = None  # (rule, statement) forwarded, engine not answered yet
        self._user: str | None = None
        self.charset_unknown = False  # the client may have changed its character set
        # PREPARE … FROM @v held: (the statement's bytes, v) until the session has read @v
        self.read_request: tuple[bytes, str] | None = None
        # what was read for that statement: (its bytes, v, the texts it may be read as (None:
        # NULL), why it cannot be read)
        self.read_values: tuple[bytes, str, list[str] | None, str | None] | None = None

    # --- who ------------------------------------------------------------------------------

    def logged_in(self, user: str, database: str | None, *, change: bool) -> None:
        self._user = user
        if self.session.target is not None:
            live_sessions(self.ctx, self.session.target.resource_id).add(self.session)
        if change:
            self.facts = use_database(replace(self.facts, triggers=frozenset(), sql_mode=None), database)
            self.prepared_trigger = False
        else:
            self.facts = SessionFacts(database=database, sql_mode=None)
        self.active = True
        self.session._inspection_changed()
        self._spawn(self._learn(user))

    async def _learn(self, user: str) -> None:
        session = self.session
        target = session.target
        if target is None or self.ctx.mysql_account_facts is None:
            return
        facts = await account_facts(self.ctx, target.resource_id, user)
        if facts is None:
            return  # unknown (the probe failed, or privileges kept changing): the session stays inspected
        privileged, mode = facts
        if session.closed or user != self._user:
            return
        if self.judged == 0 and self.facts.sql_mode is None and not self.charset_unknown:
            self.facts = replace(self.facts, sql_mode=SqlMode.parse(mode))
        self.privileged = self.privileged or privileged
        if not self.privileged and not self.busy and self.active:
            self.active = False
            session._inspection_changed()

    def plain_on_relay(self) -> bool:
        """Whether the native relay may pass ordinary statements unreported (relay/mysql_plain.h,
        the C twin of ``mysql_grants.plain``): the session's database is known and not ``mysql``
        (``plain`` needs that), and nothing of the session's own changes what plain text means."""
        db = self.facts.database
        return (db is not None and db != UNKNOWN_DB and db.lower() != SYSTEM_DB and not self.charset_unknown
                and self.read_request is None)

    # --- decisions ------------------------------------------------------------------------

    def decide(self, event: Any) -> ErrPacket | object | None:
        if self.busy:
            return HOLD
        kind = type(event)
        if kind is Query or kind is Prepare:
            return self._statement(event, prepare=kind is Prepare)
        if kind is Command:
            code = event.command
            if code == CommandCode.COM_INIT_DB:
                name = charsets.decode(event.payload[1:], self.session.relay.client.charset)  # type: ignore[union-attr]
                self.facts = use_database(self.facts, name)
            elif code == CommandCode.COM_STMT_EXECUTE and self.prepared_trigger:
                if not self.cleared and self.ctx.mysql_routines is not None:
                    self.busy = True
                    self.held_refusal = None
                    self._spawn_hygiene("before", "COM_STMT_EXECUTE", "COM_STMT_EXECUTE", None, hygiene=False,
                                        routines=True)
                    return HOLD
                self.cleared = False
                refusal, self.held_refusal = self.held_refusal, None
                if refusal is not None:
                    self._refused(refusal, "COM_STMT_EXECUTE of a prepared statement", prepare=False)
                    return ErrPacket(refusal.errno, refusal.message, refusal.sqlstate)
                self._after("COM_STMT_EXECUTE of a checked statement", "COM_STMT_EXECUTE")
                return None
        elif kind is ProcessKill:
            return self._kill(event)
        elif kind is ResetConnection:
            self.facts = replace(self.facts, triggers=frozenset(), sql_mode=None)
            self.prepared_trigger = False
        elif kind is ChangeUser:
            self.prepared_trigger = False
        return None

    def _statement(self, event: Query | Prepare, *, prepare: bool) -> ErrPacket | object | None:
        verdict = self._statement_verdict(event, prepare=prepare)
        if verdict is not HOLD:
            self.read_values = None  # a value read is for this one decision only
        return verdict

    def _statement_verdict(self, event: Query | Prepare, *, prepare: bool) -> ErrPacket | object | None:
        session = self.session
        text = event.sql
        raw = bytes(event.raw)
        read = self.read_values if self.read_values is not None and self.read_values[0] == raw else None
        texts: list[str | None] = [None] if read is None or read[2] is None else list(read[2])
        verdict = None
        for value in texts:  # the strictest verdict over every reading of the value
            values = {read[1]: value} if read is not None else None
            other = judge(text, self.facts, values)
            if self.charset_unknown and any(b >= 0x80 for b in bytes(event.payload[1:])):
                other = self._judge_readings(bytes(event.payload[1:]), other, values)
            if verdict is None or other.refusal is not None:
                verdict = other
            else:
                verdict.hygiene_before |= other.hygiene_before
                verdict.hygiene_after |= other.hygiene_after
                verdict.check_routines |= other.check_routines
                verdict.rules += [rule for rule in other.rules if rule not in verdict.rules]
                verdict.facts = replace(verdict.facts, triggers=verdict.facts.triggers | other.facts.triggers)
            if verdict.refusal is not None:
                break
        assert verdict is not None
        if read is not None and read[3] is not None and verdict.refusal is None:
            verdict.refusal = Refusal(1227, "42000", "Access denied; dbkeep cannot read this variable's value "
                                      f"({read[3]})", f"PREPARE of {read[3]}")
        if verdict.read_variable is not None and verdict.refusal is None and not prepare:
            # (a COM_STMT_PREPARE of it, which the engine refuses, goes unread as opaque)
            self.busy = True
            self.read_request = (raw, verdict.read_variable)
            session._inspection_changed()
            return HOLD
        self.judged += 1
        refusal = verdict.refusal
        if refusal is None and self.cleared and self.held_refusal is not None and not prepare:
            refusal, self.held_refusal = self.held_refusal, None
        if refusal is not None:
            self.cleared = False
            self._refused(refusal, text, prepare=prepare)
            return ErrPacket(refusal.errno, refusal.message, refusal.sqlstate)
        if any(word in text.upper() for word in _PRIVILEGE_WORDS) and session.target is not None:
            forget_facts(self.ctx, session.target.resource_id)
        if prepare:
            self.cleared = False
            if verdict.hygiene_after:
                self.prepared_trigger = True
            return None
        routines = verdict.check_routines and self.ctx.mysql_routines is not None
        kills = verdict.kill_threads if self.ctx.mysql_thread_user is not None else []
        if (verdict.hygiene_before or routines or kills) and not self.cleared:
            self.busy = True
            self.held_refusal = None
            self._spawn_hygiene("before", "; ".join(verdict.rules) or "KILL", text, None,
                                hygiene=verdict.hygiene_before, routines=routines, kills=kills)
            return HOLD
        self.cleared = False
        self.facts = verdict.facts
        if _CHARSET_CHANGE.search(text):
            self.charset_unknown = True
            self.facts = replace(self.facts, sql_mode=None)
        if verdict.hygiene_after:
            self._after("; ".join(verdict.rules), text)
        return None

    def _judge_readings(self, raw: bytes, verdict: Any, values: dict[str, str | None] | None = None) -> Any:
        """The strictest verdict over the statement read in each candidate character set."""
        for collation in READINGS:
            other = judge(charsets.decode(raw, collation), self.facts, values)
            if other.refusal is not None:
                return other
            if other.read_variable is not None and other.read_variable != verdict.read_variable:
                return replace(verdict, refusal=Refusal(1227, "42000", "Access denied; you need (at least one of) the "
                                                        "SYSTEM_USER privilege(s) for this operation",
                                                        "PREPARE of a variable the guard cannot name"))
            verdict.hygiene_before |= other.hygiene_before
            verdict.hygiene_after |= other.hygiene_after
            verdict.check_routines |= other.check_routines
            if other.rules and not verdict.rules:
                verdict.rules = other.rules
        return verdict

    def _kill(self, event: ProcessKill) -> ErrPacket | object | None:
        """COM_PROCESS_KILL: held until the thread's owner is known; refused for rdsadmin's."""
        if self.ctx.mysql_thread_user is None:
            return None
        if not self.cleared:
            self.busy = True
            self.held_refusal = None
            self._spawn_hygiene("before", "COM_PROCESS_KILL", f"COM_PROCESS_KILL {event.thread_id}", None,
                                hygiene=False, kills=[event.thread_id])
            return HOLD
        self.cleared = False
        refusal, self.held_refusal = self.held_refusal, None
        if refusal is None:
            return None
        self._refused(refusal, f"COM_PROCESS_KILL {event.thread_id}", prepare=False)
        return ErrPacket(refusal.errno, refusal.message, refusal.sqlstate)

    async def _kill_refusal(self, resource_id: str, threads: list[int]) -> Refusal | None:
        """MariaDB's own answer for a thread one does not own, if a thread is rdsadmin's or the
        server's (SPEC.md, "KILL")."""
        lookup = self.ctx.mysql_thread_user
        assert lookup is not None
        for thread in threads:
            if thread == self.session._engine_thread():
                continue
            user = await lookup(resource_id, thread)
            if user is not None and user.lower() in PROTECTED_THREAD_USERS:
                return Refusal(1095, "HY000", f"You are not owner of thread {thread}", f"KILL of a thread of {user}")
        return None

    def variable_read(self, raw: bytes, name: str, texts: list[str] | None, *, unreadable: str | None = None) -> None:
        """The session read ``@name`` for the held statement ``raw`` (``texts``: every reading
        of its value, None for NULL; ``unreadable``: why it cannot be judged, a refusal):
        decide the statement again."""
        self.read_request = None
        self.read_values = (raw, name, texts, unreadable)
        self.busy = False
        self.session._hygiene_done()

    def _refused(self, refusal: Refusal, statement: str, *, prepare: bool) -> None:
        session = self.session
        self.ctx.audit.event("gateway.statement_refused", verdict="deny", cluster=session.identifier,
                             session=session.id, source_ip=session.peer_host,
                             iam_principal=getattr(session, "iam_principal", None), user=session.user,
                             mysql_errno=refusal.errno, sqlstate=refusal.sqlstate, reason=refusal.message,
                             rule=refusal.rule, statement=mask_literals(statement), prepare=prepare or None)

    def _after(self, rule: str, statement: str) -> None:
        """A trigger is forwarded now: hold what follows until the engine answered and the
        hygiene ran (started by :meth:`engine_answered`)."""
        self.busy = True
        self.post = (rule, statement)
        self.session._inspection_changed()

    def engine_answered(self) -> None:
        """Engine bytes arrived after a trigger was forwarded: its statement began; the hygiene
        waits (through rdsadmin) until the session's engine thread is idle, then runs."""
        post, self.post = self.post, None
        if post is not None:
            self._spawn_hygiene("after", post[0], post[1], self.session._engine_thread())

    def session_closed(self) -> None:
        """The session ends: a trigger forwarded but not yet answered still gets its hygiene."""
        if self.session.target is not None:
            live_sessions(self.ctx, self.session.target.resource_id).discard(self.session)
        post, self.post = self.post, None
        if post is not None:
            self._spawn_hygiene("after", post[0], post[1], self.session._engine_thread())

    # --- hygiene --------------------------------------------------------------------------

    def _spawn(self, coro: Any) -> None:
        self.session._spawn(coro)

    def _spawn_hygiene(self, phase: str, rule: str, statement: str, thread: int | None, *, hygiene: bool = True,
                       routines: bool = False, kills: list[int] | None = None) -> None:
        tasks = _tasks(self.ctx)
        task = asyncio.get_running_loop().create_task(
            self._hygiene(phase, rule, statement, thread, hygiene=hygiene, routines=routines, kills=kills or []))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _routines(self, resource_id: str) -> Refusal | None:
        """The first stored routine this session must not run (``routine_refusal``). A routine
        runs with the caller's privileges (SQL SECURITY INVOKER) or its definer's: one whose
        definer's sessions would not be inspected cannot use what it might write, and is
        left alone (so an application's own routines with dynamic SQL stay callable)."""
        fetch, probe = self.ctx.mysql_routines, self.ctx.mysql_account_facts
        assert fetch is not None
        definers: dict[str, bool] = {}
        for db, name, kind, definer, security, body in await fetch(resource_id):
            refusal = routine_refusal(db, name, kind, definer, body)
            if refusal is None:
                continue
            user = definer.rsplit("@", 1)[0]
            if security.upper() == "DEFINER" and user != "rdsadmin" and probe is not None:
                if user not in definers:
                    try:
                        definers[user] = (await probe(resource_id, user))[0]
                    except Exception:  # noqa: BLE001 - unknown: as privileged (fail closed)
                        definers[user] = True
                if not definers[user]:
                    continue
            return refusal
        return None

    async def _hygiene(self, phase: str, rule: str, statement: str, thread: int | None, *, hygiene: bool = True,
                       routines: bool = False, kills: list[int] | None = None) -> None:
        session = self.session
        target = session.target
        run = self.ctx.mysql_hygiene
        assert target is not None and run is not None
        report = None
        try:
            if routines:
                self.held_refusal = await self._routines(target.resource_id)
            if kills and self.held_refusal is None:
                self.held_refusal = await self._kill_refusal(target.resource_id, kills)
            if hygiene and self.held_refusal is None:
                report = await run(target.resource_id, thread)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed: the session ends
            log.error("mysql session %s (cluster %s): grant-table hygiene failed: %s", session.id, session.identifier, exc)
            self.ctx.audit.event("gateway.hygiene_failed", verdict="deny", cluster=session.identifier,
                                 source_ip=session.peer_host, user=session.user, rule=rule,
                                 statement=mask_literals(statement), reason=str(exc)[:200])
            forget_facts(self.ctx, target.resource_id)
            session._hygiene_failed()
            return
        if report is not None:
            forget_facts(self.ctx, target.resource_id)
        repairs, ended = list(getattr(report, "repairs", [])), list(getattr(report, "ended", []))
        protected = list(getattr(report, "protected", []))
        if protected and phase == "after":  # (found before a statement: not this session's doing)
            # the last line: SQL the guard could not read changed rdsadmin or rds_superuser_role;
            # dbkeep put them back, and the session that did it ends
            log.warning("mysql session %s (cluster %s): %s changed accounts dbkeep owns (%s); restored, session ended",
                        session.id, session.identifier, rule, "; ".join(protected))
            self.ctx.audit.event("gateway.protected_account_restored", verdict="deny", cluster=session.identifier,
                                 session=session.id, source_ip=session.peer_host,
                                 iam_principal=getattr(session, "iam_principal", None), user=session.user, rule=rule,
                                 phase=phase, statement=mask_literals(statement), repairs=protected)
            forget_facts(self.ctx, target.resource_id)
            self.busy = False
            session._end_for_inspection()
            return
        if repairs or ended:
            log.warning("mysql session %s (cluster %s): took back privileges after %s: %s; ended %s", session.id,
                        session.identifier, rule, "; ".join(repairs), ", ".join(ended) or "no session")
            self.ctx.audit.event("gateway.privileges_taken_back", verdict="deny", cluster=session.identifier,
                                 source_ip=session.peer_host, user=session.user, rule=rule, phase=phase,
                                 statement=mask_literals(statement), repairs=repairs, ended_sessions=ended)
        self.busy = False
        if phase == "before":
            self.cleared = True
        session._hygiene_done()
        if report is not None and phase == "after":
            await self._recheck_others(target.resource_id)

    async def _recheck_others(self, resource_id: str) -> None:
        """After a statement that may have changed privileges: the cluster's sessions that are
        not inspected (their accounts held read-only privileges at login) are asked about
        again, and ended if their account may now write the mysql schema (MariaDB applies
        database-level grants to live sessions at once, and SET ROLE recomputes the rest)."""
        probe = self.ctx.mysql_account_facts
        others = [s for s in live_sessions(self.ctx, resource_id)
                  if s is not self.session and s._inspector is not None and not s._inspector.active and not s.closed]
        if probe is None or not others:
            return
        verdicts: dict[str, bool] = {}
        for user in {u for s in others for u in s.users}:
            try:
                verdicts[user] = (await probe(resource_id, user))[0]
            except Exception as exc:  # noqa: BLE001 - unknown: treat as privileged (fail closed)
                log.warning("cannot read the account facts of %s: %s", user, exc)
                verdicts[user] = True
        for other in others:
            changed = [u for u in other.users if verdicts.get(u)]
            if changed and not other.closed:
                log.warning("mysql session %s (cluster %s): account %s now holds privileges that need inspection; "
                            "session ended", other.id, other.identifier, changed[0])
                self.ctx.audit.event("gateway.session_ended", verdict="deny", cluster=other.identifier,
                                     source_ip=other.peer_host, user=other.user,
                                     reason=f"account {changed[0]} was given privileges whose sessions dbkeep inspects; "
                                            "reconnect")
                other._end_for_inspection()
