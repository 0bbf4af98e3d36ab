"""What a StartupMessage asks of the server besides a login: run-time settings (pure).

PostgreSQL documentation, "Start-up" and the ``options`` connection parameter: parameters
named after settings, and ``-c name=value`` / ``--name=value`` switches in ``options`` split as
the server splits them (``pg_split_opts``), are applied by the engine with the user's own
privileges, exactly as a ``SET`` would be. A statement guard sees each of them as such a
``SET`` statement (:func:`as_set_statement`).
"""

from __future__ import annotations

from .messages import StartupMessage

__all__ = ["FALSEY", "as_set_statement", "startup_settings"]

FALSEY = frozenset(("", "0", "false", "off", "no", "f", "n"))  # a boolean parameter's "off" spellings
# StartupMessage parameters that are not run-time settings
_NOT_SETTINGS = frozenset(("user", "database", "replication", "options"))


def _split_options(options: str) -> list[str]:
    """``options`` split as the server splits it (``pg_split_opts``): on whitespace, with a
    backslash taking the next character literally."""
    out: list[str] = []
    current: list[str] = []
    pending = False
    escaped = False
    for ch in options:
        if escaped:
            current.append(ch)
            escaped = False
            pending = True
        elif ch == "\\":
            escaped = True
            pending = True
        elif ch.isspace():
            if pending:
                out.append("".join(current))
                current, pending = [], False
        else:
            current.append(ch)
            pending = True
    if pending:
        out.append("".join(current))
    return out


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def startup_settings(startup: StartupMessage) -> list[tuple[str, str]] | None:
    """The run-time settings a StartupMessage asks for, as (name, value) pairs: parameters
    named after settings, then ``-c name=value`` / ``--name=value`` in ``options``. None
    when ``options`` holds any other server switch (``-d 5``, ``-e`` ...)."""
    settings = [(n, v) for n, v in startup.parameters if n not in _NOT_SETTINGS and not n.startswith("_pq_.")]
    words = _split_options(startup.options or "")
    i = 0
    while i < len(words):
        word = words[i]
        if word == "-c" and i + 1 < len(words):
            item, i = words[i + 1], i + 2
        elif word.startswith("-c") and len(word) > 2:
            item, i = word[2:], i + 1
        elif word.startswith("--") and len(word) > 2:
            item, i = word[2:], i + 1
        else:
            return None
        name, sep, value = item.partition("=")
        if not sep or not name:
            return None
        settings.append((name.replace("-", "_"), value))
    return settings



def as_set_statement(name: str, value: str) -> str:
    """The ``SET`` statement a start-up setting amounts to."""
    return f"SET {_quote_ident(name)} TO {_quote_literal(value)}"
