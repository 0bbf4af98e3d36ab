"""IAM logins of one MySQL session: the relay's ``iam`` hook and their audit trail.

Theory of operation (DESIGN.md "IAM database login"; ``gateway/iam.py`` has the contract). The
sans-I/O relay (``gateway/mysql/relay.py``) recognises an IAM account by the engine's
AuthSwitchRequest to ``mysql_clear_password`` -- or, for an account the engine marked so before
(:class:`ClusterIamAccounts`), asks the client first -- reads the client's token over TLS and
calls :meth:`MySQLIam.answer` with it. Here the token is verified (``IamLogin.verify``: signature,
expiry, host and port, user, key, policy with ``aws:SourceIp`` the client's address) and the
engine gets the proof bound to its connection id; or the client gets MariaDB's own
``1045 (28000) Access denied for user 'USER'@'ADDR' (using password: YES)`` -- the same text
whatever the reason, which goes to the audit log only.

Audit: one ``gateway.iam_login`` event per IAM login with the principal's ARN, the access key
id, the database user, the cluster, the client's address and port, TLS version and cipher, the
verdict and its reason, and the engine's connection id (its thread id, what ``CONNECTION_ID()``
and ``SHOW PROCESSLIST`` show), so the processlist leads to the IAM principal. An allowed token
is audited when the engine's verdict on the proof arrives; a refusal at once. The session's
``gateway.login`` event is written as for any login.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from dbkeep.gateway.iam import IamLogin
from dbkeep.gateway.mysql import errors as wire_errors
from dbkeep.gateway.mysql.events import IamNotIam, IamPluginMissing, IamToken
from dbkeep.gateway.mysql.messages import ErrPacket
from dbkeep.identity import dbauth
from dbkeep.pki.tls import describe_session

if TYPE_CHECKING:
    from .mysql import MySQLSession

log = logging.getLogger("dbkeep.gateway.mysql")

CLEARTEXT = "cleartext"  # the client leg is not TLS: its token is not read
NOT_IAM = "not_an_iam_account"  # an account known as an IAM one took the login as another kind
KNOWN_FOR = 300.0  # seconds an account the engine marked as an IAM one is asked for its token first


def _known(ctx: Any, resource_id: str) -> dict[str, float]:
    """A cluster's accounts its engine marked as IAM ones, with when that stops counting."""
    return ctx.extra.setdefault("mysql.iam_accounts", {}).setdefault(resource_id, {})


def forget_iam_accounts(ctx: Any, resource_id: str) -> None:
    """Accounts may have changed (account DDL seen by the statement guard): ask the engine again."""
    ctx.extra.get("mysql.iam_accounts", {}).pop(resource_id, None)


class ClusterIamAccounts:
    """The relay's view of :func:`_known` for one session's cluster (``mysql/relay.py``
    ``IamAccounts``): a login as one of these accounts asks the client for its token before the
    engine sees it, and the engine gets the proof in the login packet itself."""

    __slots__ = ("_accounts",)

    def __init__(self, accounts: dict[str, float]) -> None:
        self._accounts = accounts

    def known(self, user: str) -> bool:
        until = self._accounts.get(user)
        return until is not None and until > time.monotonic()

    def learned(self, user: str) -> None:
        if len(self._accounts) >= 10_000:
            self._accounts.clear()
        self._accounts[user] = time.monotonic() + KNOWN_FOR

    def forget(self, user: str) -> None:
        self._accounts.pop(user, None)
PROOF_UNAVAILABLE = "proof_unavailable"  # the cluster's proof key cannot be read
ENGINE_REFUSED = "engine_refused_proof"


class MySQLIam:
    """The IAM side of one :class:`~.mysql.MySQLSession`."""

    __slots__ = ("_allowed", "login", "session")

    def __init__(self, session: MySQLSession, login: IamLogin) -> None:
        self.session = session
        self.login = login
        self._allowed: dict[str, Any] | None = None  # an allowed token awaiting the engine's verdict

    def accounts(self) -> ClusterIamAccounts | None:
        target = self.session.target
        return ClusterIamAccounts(_known(self.session.ctx, target.resource_id)) if target is not None else None

    def answer(self, event: IamToken | IamPluginMissing | IamNotIam) -> bytes | ErrPacket:
        """The relay's ``iam`` hook: the proof for the engine, or the client's 1045."""
        session = self.session
        session.login_method = "iam"  # the login event's and the logins metric's method
        target = session.target
        assert target is not None
        if type(event) is IamNotIam:
            self._audit(event.user, "deny", NOT_IAM, detail="the engine asked for another plugin: not an IAM account")
            return self._denied(event.user)
        if type(event) is IamPluginMissing:
            self._audit(event.user, "deny", dbauth.IAM_DISABLED,
                        detail=f"the engine refused the account: {event.error.message}")
            return self._denied(event.user)
        assert isinstance(event, IamToken)
        if event.token is None:
            self._audit(event.user, "deny", CLEARTEXT, detail="IAM token over a cleartext connection, not read")
            return self._denied(event.user)
        verdict = self.login.verify(target, user=event.user, token=event.token, client_ip=session.peer_host,
                                    local_host=self._local_host())
        fields = self.login.audit_fields(verdict)
        if not verdict.allowed:
            self._audit(event.user, **fields)
            return self._denied(event.user)
        try:
            proof = self.login.mysql_answer(target, event.thread_id, event.user)
        except (OSError, ValueError) as exc:
            log.warning("mysql session %s (cluster %s): no IAM proof for the engine: %s", session.id,
                        session.identifier, exc)
            fields.update(verdict="deny", reason=PROOF_UNAVAILABLE, detail=str(exc)[:200])
            self._audit(event.user, **fields)
            return self._denied(event.user)
        self._allowed = {"user": event.user, **fields}
        session.iam_principal = verdict.principal_arn  # the guard's audit events name it
        return proof

    def _denied(self, user: str) -> ErrPacket:
        return wire_errors.access_denied(user, self.session.peer_host, True)

    def engine_answered(self, ok: bool, thread_id: int | None, message: str = "") -> None:
        """The engine's OK or ERR after a proof: the allowed token's audit event."""
        allowed, self._allowed = self._allowed, None
        if allowed is None:
            return
        if not ok:
            allowed.update(verdict="deny", reason=ENGINE_REFUSED, detail=message[:200])
        self._audit(thread_id=thread_id, **allowed)

    def _local_host(self) -> str | None:
        raw = self.session.client_leg.raw
        sockname = raw.get_extra_info("sockname") if raw is not None else None
        return sockname[0] if sockname else None

    def _audit(self, user: str, verdict: str, reason: str, *, thread_id: int | None = None, **fields: Any) -> None:
        session = self.session
        transport = session.client_leg.transport
        tls = describe_session(transport.get_extra_info("ssl_object") if transport else None)
        if verdict != "allow":
            session._audit_failed_login(f"IAM login refused: {reason}")
        if thread_id is None and verdict != "allow":
            thread_id = session._engine_thread()
        session.ctx.audit.event(
            "gateway.iam_login", verdict=verdict, reason=reason, cluster=session.identifier, user=user,
            source_ip=session.peer_host, source_port=session.peer[1] if session.peer else None,
            tls_version=tls.get("tls_version"), tls_cipher=tls.get("tls_cipher"), thread_id=thread_id, **fields)
