"""The statement guard: pure functions from (statement text, session facts) to a verdict.

Nothing here does I/O: the gateway asks, the guard answers, the gateway acts (DESIGN.md).

- :mod:`.mysql_lexer`: MariaDB's lexical rules (quotes, escapes, comments, executable
  comments, statement splitting, compound-statement bodies).
- :mod:`.mysql_classify`: what a MariaDB statement does (kind, tables written, opacity).
- :mod:`.mysql_accounts`: the accounts dbkeep owns (rdsadmin, rds_superuser_role) in account
  statements, and whether a grant-table write shows its rows are another account's.
- :mod:`.mysql_grants`: the grant-table rules (privileges only rdsadmin may hold) and the
  hygiene triggers.
- :mod:`.pg_statements`: PostgreSQL statements through pglast (PostgreSQL's own parser), masking.
- :mod:`.pg_rules`: the PostgreSQL rules (rdsadmin and the rds_* roles, restricted password
  commands, rds_iam/rds_ad, opaque code); :mod:`.pg_roles`: the membership graph.
"""
