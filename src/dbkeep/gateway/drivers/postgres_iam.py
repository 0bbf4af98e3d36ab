"""The PostgreSQL session's IAM login: token in from the client, proof out to the engine.

The engine asks for a cleartext password only on its ``+rds_iam`` pg_hba line (the role is a
member of ``rds_iam``: ``engines/iam.py``), so an ``AuthenticationCleartextPassword`` from the
engine marks an IAM login. :class:`PgIamLogin` is that login's state inside one
:class:`~.postgres.PostgresSession` (contract: ``gateway/iam.py``):

1. :meth:`asked` -- the engine's request: relayed to the client over TLS only; a cleartext
   client gets the refusal at once, before it could send its token.
2. :meth:`answer` -- the client's PasswordMessage (the token) is verified
   (``identity/dbauth.py``); allowed: the engine gets ``PasswordMessage(proof)``, a one-time
   proof of the gateway's for this user; refused: the client gets the engine's own PAM text.
   The token never goes to the engine, the proof never to the client.
3. The audit event ``gateway.iam_login`` is written once, when the login's outcome is known:
   ``allow`` at ReadyForQuery with the engine's backend pid (BackendKeyData), ``deny`` with
   the gateway's reason, ``engine_refused_proof`` when the engine refused the proof (its
   ErrorResponse), or ``abandoned`` when either side went away before the outcome. Only the audit says why; the
   client sees ``FATAL: PAM authentication failed for user "USER"`` (28000) whatever the reason.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

from dbkeep.gateway.iam import IamLogin
from dbkeep.gateway.postgres import ErrorResponse, PasswordMessage
from dbkeep.gateway.postgres import errors as wire_errors
from dbkeep.identity.dbauth import TokenVerdict
from dbkeep.pki.tls import describe_session

if TYPE_CHECKING:
    from .postgres import PostgresSession

IAM_EXTRA = "iam"  # GatewayContext.extra key of the process's IamLogin (app.py)
AUDIT_EVENT = "gateway.iam_login"
CLEARTEXT = "cleartext"
NOT_CONFIGURED = "iam_not_configured"
ENGINE_REFUSED = "engine_refused_proof"  # the name the MySQL session uses too
NO_PROOF = "proof_unavailable"
ABANDONED = "abandoned"  # the client or the engine went away before the login's outcome

_SQLSTATE = re.compile(r"[0-9A-Z]{5} ")

log = logging.getLogger("dbkeep.gateway.postgres")


class PgIamLogin:
    """One session's IAM login (see the module docstring)."""

    def __init__(self, session: PostgresSession) -> None:
        self.session = session
        self.iam: IamLogin | None = session.ctx.extra.get(IAM_EXTRA)  # type: ignore[assignment]
        self.backend_pid: int | None = None
        self.verdict: TokenVerdict | None = None
        self.reason: str | None = None  # the audited reason
        self._audited = False

    @property
    def user(self) -> str:
        return self.session.user or ""

    def refusal(self) -> ErrorResponse:
        return wire_errors.pam_authentication_failed(self.user)

    def asked(self) -> ErrorResponse | None:
        """The engine asked for the token: None (relay the request) or the client's refusal."""
        if not self.session.client.tls_in_use:
            self.audit("deny", CLEARTEXT, "the client connection is not encrypted: the token was not read")
            return self.refusal()
        if self.iam is None:
            self.audit("deny", NOT_CONFIGURED, "no token verifier in this gateway")
            return self.refusal()
        return None

    def answer(self, token: PasswordMessage) -> PasswordMessage | ErrorResponse:
        """The client's token: the engine's PasswordMessage, or the client's refusal."""
        session, iam = self.session, self.iam
        target = session.target
        assert iam is not None and target is not None
        transport = session.client_leg.transport
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        verdict = self.verdict = iam.verify(target, user=self.user, token=token.password, client_ip=session.peer_host,
                                            local_host=sockname[0] if sockname else None)
        if not verdict.allowed:
            self.audit("deny")
            return self.refusal()
        try:
            proof = iam.pg_password(target, self.user)
        except (OSError, ValueError) as exc:  # the cluster's iam/ directory or key is missing or broken
            log.warning("postgres session %s (cluster %s): no IAM proof: %s", session.id, session.identifier, exc)
            self.audit("deny", NO_PROOF, f"the gateway could not make the engine's proof: {exc}")
            return self.refusal()
        session.iam_principal = verdict.principal_arn  # the guard's audit events name it
        return PasswordMessage(proof.encode("utf-8"))

    def ended(self, allowed: bool, why: str = "") -> None:
        """The login's outcome at the engine (ReadyForQuery, or anything that ended it: ``why``
        is the session's deny reason, ``SQLSTATE message`` for the engine's ErrorResponse)."""
        if allowed:
            self.audit("allow")
        elif self.verdict is not None and self.verdict.allowed and _SQLSTATE.match(why):
            self.audit("deny", ENGINE_REFUSED, why)
        else:  # a refusal of the gateway's was audited already: no-op then
            self.audit("deny", ABANDONED, why)

    def audit(self, outcome: str, reason: str | None = None, detail: str | None = None) -> None:
        if self._audited:
            return
        self._audited = True
        session = self.session
        fields: dict[str, Any] = IamLogin.audit_fields(self.verdict) if self.verdict is not None else {}
        fields["verdict"] = outcome
        if reason is not None:
            fields["reason"], fields["detail"] = reason, detail
        self.reason = fields.get("reason")
        transport = session.client_leg.transport
        tls_info = describe_session(transport.get_extra_info("ssl_object") if transport is not None else None)
        peer = session.peer
        session.ctx.audit.event(AUDIT_EVENT, cluster=session.identifier, user=self.user,
                                source_ip=session.peer_host, source_port=peer[1] if peer and len(peer) > 1 else None,
                                tls_version=tls_info["tls_version"], tls_cipher=tls_info["tls_cipher"],
                                backend_pid=self.backend_pid, **fields)

    @property
    def login_reason(self) -> str:
        """The ``gateway.login`` deny reason for a refusal of the gateway's."""
        return f"IAM: {self.reason}"
