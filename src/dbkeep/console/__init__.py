"""The web console: server-rendered pages under ``/console`` on the API's port.

Theory of operation. A person signs in with an IAM user's console password (its login profile,
``api/services/iam_logins.py``) or with the account root's access key pair; the console keeps a
server-side session (``sessions.py``) named by a random id in a cookie that is HttpOnly,
SameSite=Strict, scoped to ``/console``, and Secure with the ``__Host-`` prefix whenever the
request came over TLS. Every page is rendered for the signed-in principal, and every change is
a call of the API's own handler through :meth:`Dispatcher.call` (``calls.py``): the same
parsing, IAM authorisation, validation, errors and audit events as a signed API request. A
button is shown only when the principal's policies allow its action on that resource
(``CallContext.allows``). Every POST carries the session's synchronizer token (``csrf.py``);
sign-in failures, sign-outs, refused forgeries and every change are audit events.

Layout: ``web.py`` (the aiohttp sub-application, middlewares, security headers, rendering),
``sessions.py``, ``csrf.py``, ``signin.py``, ``calls.py``, and one module of views per area:
``views_rds.py`` (clusters, instances), ``views_params.py`` (parameter groups),
``views_ec2.py`` (security groups), ``views_iam.py`` (users, roles, policies),
``views_audit.py`` (the audit log, the CA certificate); ``templates/`` and ``static/``.
"""
