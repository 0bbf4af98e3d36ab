"""IAM database login, the gateway's part: what a session calls (DESIGN.md, "IAM database login
(how the pieces meet)").

The contract the sessions follow (MySQL: ``drivers/mysql_iam.py`` and the relay's ``iam`` hook):

MySQL session (``gateway/mysql``): relay the login as for any account. When the *engine* sends an
AuthSwitchRequest naming ``mysql_clear_password`` (only dbkeep's ``AWSAuthenticationPlugin``
does: it marks an IAM account; its plugin data is empty), send the
client an AuthSwitchRequest to ``mysql_clear_password`` *with empty plugin data* (as Aurora does;
refuse unless the client leg is TLS), read the client's reply (the token and a NUL; tokens are
1-2 KB: no buffer may truncate them), then::

    verdict = iam.verify(target, user=login_name, token=reply, client_ip=peer_ip, local_host=sockname_ip)
    if verdict.allowed:  send the engine   iam.mysql_answer(target, engine_connection_id, login_name)
    else:                answer the client ``ERROR 1045 (28000): Access denied for user
                         'USER'@'ADDR' (using password: YES)`` and close the engine leg

and write the audit event ``gateway.iam_login`` (``iam.audit_fields(verdict)``, plus the engine's
connection id once the engine's OK arrives). A token never goes to the engine; the proof never
goes to the client. An AuthSwitchRequest to ``mysql_clear_password`` when the account is not
dbkeep's plugin cannot happen (the engine offers no other cleartext plugin). For an account the
engine marked so before, the session may ask the client first and send the engine a login packet
naming ``mysql_clear_password`` with ``mysql_answer``'s proof as its data (the plugin reads the
login packet's data first): no switch on the engine leg.

PostgreSQL session (``gateway/postgres``): relay as for any role. When the engine sends
``AuthenticationCleartextPassword`` (only the ``+rds_iam`` pg_hba line asks for it: the role is
a member of rds_iam), forward it to the client (over TLS only), read its PasswordMessage (the
token), ``iam.verify(...)`` as above, and send the engine ``PasswordMessage(iam.pg_password(target,
login_name))`` when allowed; otherwise the client gets ``FATAL: PAM authentication failed for user
"USER"`` (SQLSTATE 28000), the engine's own text for a refused proof. ``pg_password`` mints a
one-time nonce file in the cluster's ``iam/nonces/`` (a few syscalls).

IAM authentication disabled on the cluster: ``verify`` refuses (reason ``iam_auth_disabled``),
and the engine refuses the accounts by itself too (MariaDB: the plugin is not loaded; PostgreSQL:
the PAM service denies).
"""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path
from typing import Any

from dbkeep.gateway.target import ClusterTarget
from dbkeep.identity import engine_proof
from dbkeep.identity.dbauth import TokenVerdict, TokenVerifier

_SWEEP_EVERY = 256


@functools.lru_cache(maxsize=256)
def _loopback(address: str) -> bool:
    """Whether the gateway's own address of a connection is a loopback one (a handful of
    addresses, asked at every IAM login)."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class IamLogin:
    def __init__(self, verifier: TokenVerifier, state_dir: Path | str) -> None:
        self.verifier = verifier
        self.state_dir = Path(state_dir)
        self._keys = engine_proof.ProofKeys()
        self._dirs: dict[str, Path] = {}
        self._mints = 0

    def iam_dir(self, target: ClusterTarget) -> Path:
        """``DIR/clusters/<resource id>/iam`` (engines/iam.py), made once per cluster (asked at
        every IAM login)."""
        d = self._dirs.get(target.resource_id)
        if d is None:
            d = self._dirs[target.resource_id] = self.state_dir / "clusters" / target.resource_id / "iam"
        return d

    def endpoint_hosts(self, target: ClusterTarget, local_host: str | None) -> set[str]:
        """The names a token may be signed for: the cluster's endpoint name (every endpoint of a
        cluster is ``--hostname``), the address the client connected to, and ``localhost``
        for a loopback connection."""
        hosts = {target.hostname}
        if local_host:
            address = local_host.split("%", 1)[0]
            hosts.add(address)
            if _loopback(address):
                hosts.add("localhost")
        return hosts

    def verify(self, target: ClusterTarget, *, user: str, token: str | bytes, client_ip: str,
               local_host: str | None, secure_transport: bool = True) -> TokenVerdict:
        return self.verifier.verify(token, cluster_resource_id=target.resource_id, port=target.port,
                                    iam_enabled=target.iam_auth, db_user=user,
                                    hosts=self.endpoint_hosts(target, local_host), source_ip=client_ip,
                                    secure_transport=secure_transport)

    def mysql_answer(self, target: ClusterTarget, thread_id: int, user: str) -> bytes:
        """The proof for the engine connection ``thread_id`` (NUL included): the data of a login
        packet naming ``mysql_clear_password``, or the reply to the plugin's switch."""
        return engine_proof.mysql_proof(self._keys.key(self.iam_dir(target)), thread_id, user)

    def pg_password(self, target: ClusterTarget, user: str) -> str:
        """The PasswordMessage text for the engine's AuthenticationCleartextPassword."""
        d = self.iam_dir(target)
        self._mints += 1
        if self._mints % _SWEEP_EVERY == 0:
            engine_proof.sweep_pg_nonces(d)
        return engine_proof.pg_proof(self._keys.key(d), engine_proof.mint_pg_nonce(d), user)

    @staticmethod
    def audit_fields(verdict: TokenVerdict) -> dict[str, Any]:
        """Fields of the ``gateway.iam_login`` audit event (with ``verdict`` allow/deny)."""
        return {"verdict": "allow" if verdict.allowed else "deny", "reason": verdict.reason, "detail": verdict.detail,
                "principal": verdict.principal_arn, "access_key_id": verdict.access_key_id,
                "resource": verdict.resource}
