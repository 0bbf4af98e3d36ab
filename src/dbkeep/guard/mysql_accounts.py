"""The accounts dbkeep owns inside MariaDB are untouchable (pure).

Theory of operation (Aurora: "Attempting to drop, rename, change the password, or change
privileges for the rdsadmin account results in an error"; SPEC.md, "rdsadmin"). The account
statements are read for the *account positions* MariaDB's grammar has (``sql/sql_yacc.yy``:
``user`` is ``ident_or_text ['@' ident_or_text]`` or ``CURRENT_USER[()]``):

- ``DROP USER|ROLE [IF EXISTS] a, b``; ``CREATE [OR REPLACE] USER|ROLE [IF NOT EXISTS] a …, b …``
  (and ``WITH ADMIN a`` of a role); ``ALTER USER [IF EXISTS] a …, b …``; ``RENAME USER a TO b, …``
  (both sides);
- ``GRANT … TO a …, b …`` and ``REVOKE … FROM a, b`` (the grantees), ``GRANT PROXY ON a``;
- ``SET PASSWORD FOR a``, ``SET DEFAULT ROLE … FOR a``;
- ``DEFINER = a`` of a view, trigger, event or routine (a body running as rdsadmin).

A protected name in an account position is refused with Aurora MySQL 3's own answer, ``ERROR
1227 (42000)`` naming ``SYSTEM_USER``. Names compare case-insensitively and without trailing
spaces (MariaDB pads them away), which is stricter than the server. ``rds_superuser_role`` is
protected the same way, except as the *granted* role (``GRANT rds_superuser_role TO app``
and its REVOKE stay allowed, as on RDS). Anything in an account position that is not a plain
name or string (``_latin1'…'``, ``x'…'``, an expression) is refused as unreadable: the engine
would refuse it too, and the guard never passes what it cannot read.

Writes to the grant tables are allowed only where their rows are visible (:func:`grant_table_rows`):
``INSERT``/``REPLACE … VALUES`` of literals, ``UPDATE``/``DELETE`` of one table whose ``WHERE`` has a
top-level conjunct ``User = 'x'`` / ``User IN ('x', …)``, and no literal anywhere naming a
protected account; everything else on a grant table (``INSERT … SELECT``, ``ON DUPLICATE KEY
UPDATE``, ``LOAD DATA``, a join, a computed key column) is refused.
"""

from __future__ import annotations

from .mysql_classify import Classified, Kind
from .mysql_lexer import NAME, QNAME, SEMI, STRING, VAR, Token

__all__ = ["PROTECTED_ACCOUNTS", "PROTECTED_THREAD_USERS", "RDSADMIN", "PROTECTED_ROLE", "account_refusal_rule", "grant_table_rows",
           "normal_name", "named_accounts", "account_at", "UNREADABLE"]

RDSADMIN = "rdsadmin"
PROTECTED_ROLE = "rds_superuser_role"
PROTECTED_ACCOUNTS = frozenset({RDSADMIN, PROTECTED_ROLE})
# engine threads nobody may KILL: dbkeep's own and the server's (as mysql.rds_kill refuses them)
PROTECTED_THREAD_USERS = frozenset({RDSADMIN, "system user", "event_scheduler"})
UNREADABLE = "\0unreadable"  # an account position holding something that is not a name


def normal_name(value: str) -> str:
    return value.rstrip(" ").lower()


def _plain_string(tok: Token) -> bool:
    return tok.kind == STRING and tok.text[:1] in ("'", '"') and not tok.bad


def account_at(tokens: list[Token], k: int) -> tuple[str | None, int]:
    """The user name of the account spelled at ``tokens[k]`` and the index after it;
    CURRENT_USER gives ``""`` (the session's own account), something else :data:`UNREADABLE`."""
    n = len(tokens)
    if k >= n:
        return None, k
    tok = tokens[k]
    if tok.upper in ("CURRENT_USER", "CURRENT_ROLE"):
        k += 1
        if k + 1 < n and tokens[k].text == "(" and tokens[k + 1].text == ")":
            k += 2
        return "", k
    if not (tok.kind in (NAME, QNAME) or _plain_string(tok)) or tok.bad:
        return UNREADABLE, k + 1
    name = tok.value
    k += 1
    if k < n and tokens[k].kind == VAR and tokens[k].text.startswith("@") and not tokens[k].text.startswith("@@"):
        if tokens[k].text == "@":  # name @ host, with spaces
            k += 1
            if not (k < n and (tokens[k].kind in (NAME, QNAME) or _plain_string(tokens[k]))):
                return UNREADABLE, k
        elif tokens[k].bad:
            return UNREADABLE, k + 1
        k += 1
    if k < n and (tokens[k].kind in (STRING, QNAME, VAR) or tokens[k].text == "@"):
        return UNREADABLE, k  # _latin1'x', 'a' 'b', a@b@c: not one account the guard can read
    return name, k


def _skip_to_comma(tokens: list[Token], k: int, stops: frozenset[str] = frozenset()) -> int:
    """Past an account's options (``IDENTIFIED BY '…'``, ``REQUIRE …``, ``WITH …``) to the next
    top-level comma (returned index is the comma's), or to a stop word."""
    depth = 0
    n = len(tokens)
    while k < n:
        tok = tokens[k]
        if tok.text == "(":
            depth += 1
        elif tok.text == ")":
            depth = max(depth - 1, 0)
        elif depth == 0 and (tok.text == "," or tok.upper in stops or tok.kind == SEMI):
            return k
        k += 1
    return k


def _account_list(tokens: list[Token], k: int, out: list[str], *, rename: bool = False,
                  stops: frozenset[str] = frozenset()) -> int:
    n = len(tokens)
    while k < n:
        name, k = account_at(tokens, k)
        if name is None:
            break
        out.append(name)
        if rename and k < n and tokens[k].upper == "TO":
            name, k = account_at(tokens, k + 1)
            if name is not None:
                out.append(name)
        k = _skip_to_comma(tokens, k, stops)
        if k < n and tokens[k].text == ",":
            k += 1
            continue
        break
    return k


def _skip_if(tokens: list[Token], k: int) -> int:
    while k < len(tokens) and tokens[k].upper in ("IF", "NOT", "EXISTS"):
        k += 1
    return k


def named_accounts(tokens: list[Token]) -> tuple[list[str], list[str]]:
    """(user names in the account positions of one statement whose change would touch those
    accounts, role names that a GRANT/REVOKE hands out or takes back). Names keep their
    spelling; CURRENT_USER is ``""``."""
    accounts: list[str] = []
    granted: list[str] = []
    n = len(tokens)
    if not tokens:
        return accounts, granted
    first = tokens[0].upper
    second = tokens[1].upper if n > 1 else ""
    # DEFINER = account (CREATE/ALTER of views, triggers, events, routines)
    for k, tok in enumerate(tokens[:-1]):
        if tok.upper == "DEFINER" and k and tokens[k - 1].upper in ("CREATE", "ALTER", "REPLACE", "ALGORITHM", "UNDEFINED",
                                                                       "MERGE", "TEMPTABLE", "OR") or (
                tok.upper == "DEFINER" and k and tokens[k - 1].text == "="):
            j = k + 1
            if j < n and tokens[j].text == "=":
                j += 1
            name, _ = account_at(tokens, j)
            if name is not None:
                accounts.append(name)
    if first in ("DROP", "CREATE", "ALTER", "RENAME"):
        k = 1
        while k < n and tokens[k].upper in ("OR", "REPLACE"):
            k += 1
        if k < n and tokens[k].upper in ("USER", "ROLE", "USERS"):
            k = _skip_if(tokens, k + 1)
            _account_list(tokens, k, accounts, rename=first == "RENAME")
            if first == "CREATE" and tokens[k - 1].upper != "USER":
                for j in range(k, n - 1):  # CREATE ROLE r WITH ADMIN a
                    if tokens[j].upper == "ADMIN" and tokens[j - 1].upper == "WITH":
                        _account_list(tokens, j + 1, accounts)
        return accounts, granted
    if first in ("GRANT", "REVOKE"):
        target = "TO" if first == "GRANT" else "FROM"
        k = next((j for j, t in enumerate(tokens) if t.upper == target), None)
        on = next((j for j, t in enumerate(tokens) if t.upper == "ON"), None)
        if on is not None and (k is None or on < k):
            if on + 1 < n and tokens[1].upper == "PROXY":  # GRANT PROXY ON account TO …
                _account_list(tokens, on + 1, accounts)
        elif k is not None:  # a role grant: GRANT r1, r2 TO …; REVOKE [ADMIN OPTION FOR] r FROM …
            j = 1
            if tokens[1].upper == "ADMIN":
                j = 4  # REVOKE ADMIN OPTION FOR
            _account_list(tokens, j, granted, stops=frozenset({target}))
        if k is None:
            accounts.append(UNREADABLE)
            return accounts, granted
        _account_list(tokens, k + 1, accounts)
        return accounts, granted
    if first == "SET" and second in ("PASSWORD", "DEFAULT"):
        k = next((j for j, t in enumerate(tokens) if t.upper == "FOR"), None)
        if k is not None:
            _account_list(tokens, k + 1, accounts)
        if second == "DEFAULT":
            _account_list(tokens, 3, granted, stops=frozenset({"FOR"}))
    return accounts, granted


def _protected(names: list[str]) -> str | None:
    for name in names:
        if name == UNREADABLE:
            return UNREADABLE
        if normal_name(name) in PROTECTED_ACCOUNTS:
            return normal_name(name)
    return None


def account_refusal_rule(c: Classified, tokens: list[Token]) -> str | None:
    """Why this statement must not run (it changes an account dbkeep owns, or names one in a
    way the guard cannot read), or None."""
    if c.kind not in (Kind.ACCOUNT, Kind.CREATE_ROLE) and not any(t.upper == "DEFINER" for t in tokens):
        return None
    accounts, granted = named_accounts(tokens)
    hit = _protected(accounts)
    if hit == UNREADABLE:
        return "an account statement the guard cannot read"
    if hit is not None:
        verb = " ".join(t.upper for t in tokens[:3]) if c.verb == "SET" else c.verb
        return f"{verb} of {hit}"
    if any(normal_name(g) == RDSADMIN for g in granted if g != UNREADABLE):
        return f"{c.verb} naming {RDSADMIN}"
    if UNREADABLE in granted:
        return "an account statement the guard cannot read"
    return None


# --- grant-table rows -----------------------------------------------------------------------------

_KEY_COLUMNS = frozenset({"user", "host", "role", "proxied_user", "proxied_host", "grantor"})
_WHERE_END = frozenset({"ORDER", "LIMIT", "RETURNING"})


def _literals_name_protected(tokens: list[Token]) -> bool:
    return any(t.kind in (STRING, NAME, QNAME) and normal_name(t.value) in PROTECTED_ACCOUNTS for t in tokens)


def _values_are_literals(tokens: list[Token], k: int) -> bool:
    """``VALUES (lit, …), (lit, …)`` from ``tokens[k]`` to the end, nothing else."""
    n = len(tokens)
    if k >= n or tokens[k].upper not in ("VALUES", "VALUE"):
        return False
    k += 1
    while k < n:
        if tokens[k].text != "(":
            return False
        k += 1
        while k < n and tokens[k].text != ")":
            tok = tokens[k]
            literal = _plain_string(tok) or tok.kind == "number" or tok.upper in ("NULL", "DEFAULT")
            if not (literal or tok.text in (",", "-")):
                return False
            k += 1
        k += 1
        if k < n and tokens[k].text == ",":
            k += 1
            continue
        return k >= n
    return False


def _where_users(tokens: list[Token], k: int, alias: set[str]) -> list[str] | None:
    """The user names a top-level ``User = 'x'`` / ``User IN ('x', …)`` conjunct of the WHERE
    at ``tokens[k]`` limits the rows to, or None when there is none the guard can trust."""
    n = len(tokens)
    end = next((j for j in range(k, n) if tokens[j].upper in _WHERE_END), n)
    body = tokens[k:end]
    depth = 0
    conjuncts: list[list[Token]] = [[]]
    for tok in body:
        if tok.text == "(":
            depth += 1
        elif tok.text == ")":
            depth -= 1
        if depth == 0 and (tok.upper in ("OR", "XOR", "BETWEEN") or tok.text == "||"):
            return None
        if depth == 0 and (tok.upper == "AND" or tok.text == "&&"):
            conjuncts.append([])
            continue
        conjuncts[-1].append(tok)
    for part in conjuncts:
        if len(part) >= 3 and part[1].text == "." and part[0].is_name and part[0].value.lower() in alias:
            part = part[2:]
        if len(part) < 3 or not part[0].is_name or part[0].value.lower() != "user":
            continue
        if part[1].text == "=" and len(part) == 3 and _plain_string(part[2]):
            return [part[2].value]
        if part[1].upper == "IN" and len(part) >= 5 and part[2].text == "(" and part[-1].text == ")":
            inner = part[3:-1]
            values = inner[0::2]
            if all(_plain_string(v) for v in values) and all(c.text == "," for c in inner[1::2]):
                return [v.value for v in values]
    return None


def grant_table_rows(tokens: list[Token], verb: str) -> str | None:
    """Why a DML statement on a grant table may touch rows of a protected account (or rows the
    guard cannot see), or None when its rows are visibly another account's."""
    if _literals_name_protected(tokens):
        return "names a protected account"
    n = len(tokens)
    k = 1
    while k < n and tokens[k].upper in ("LOW_PRIORITY", "DELAYED", "HIGH_PRIORITY", "IGNORE", "QUICK", "INTO", "FROM"):
        k += 1
    if verb == "LOAD":
        return "rows the guard cannot see (LOAD DATA)"
    if k + 2 < n and tokens[k + 1].text == ".":
        table, k = tokens[k + 2].value.lower(), k + 3
    elif k < n:
        table, k = tokens[k].value.lower(), k + 1
    else:
        return "unreadable"
    alias = {table}
    if k < n and tokens[k].upper == "AS":
        k += 1
    if k < n and tokens[k].is_name and tokens[k].upper not in ("SET", "WHERE", "VALUES", "VALUE", "PARTITION", "SELECT"):
        alias.add(tokens[k].value.lower())
        k += 1
    if verb in ("INSERT", "REPLACE"):
        if k < n and tokens[k].text == "(":  # a column list
            while k < n and tokens[k].text != ")":
                k += 1
            k += 1
        if not _values_are_literals(tokens, k):
            return "rows the guard cannot see (not VALUES of literals)"
        return None
    if verb == "UPDATE":
        if k >= n or tokens[k].upper != "SET":
            return "several tables"
        where = next((j for j in range(k, n) if tokens[j].upper == "WHERE"), None)
        # key columns may only get literals
        j = k + 1
        end = where if where is not None else n
        while j < end:
            column = j
            if j + 2 < end and tokens[j + 1].text == ".":
                column = j + 2
            col_end = _skip_to_comma(tokens, column + 1, frozenset({"WHERE"}))
            if tokens[column].is_name and tokens[column].value.lower() in _KEY_COLUMNS:
                value = tokens[column + 2:col_end]
                if not (len(value) == 1 and _plain_string(value[0])):
                    return "a key column set to something the guard cannot read"
            j = col_end + 1
        if where is None:
            return "every row"
        users = _where_users(tokens, where + 1, alias)
    else:  # DELETE
        if k >= n or tokens[k].upper != "WHERE":
            return "every row" if k >= n or tokens[k].upper in _WHERE_END else "several tables"
        users = _where_users(tokens, k + 1, alias)
    if users is None:
        return "rows the guard cannot limit to other accounts"
    return None if not any(normal_name(u) in PROTECTED_ACCOUNTS for u in users) else "names a protected account"
