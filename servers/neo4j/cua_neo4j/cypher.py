"""Cypher text: which clauses of a query write, and safe names for labels and types."""

from __future__ import annotations

import re

# Clauses that change the graph or the database; a read-only query contains none of them.
WRITE_CLAUSES = frozenset(
    {
        "CREATE",
        "MERGE",
        "SET",
        "DELETE",
        "DETACH",
        "REMOVE",
        "DROP",
        "FOREACH",  # only useful for its updating clauses
        "LOAD",  # LOAD CSV imports rows to write
        "ALTER",
        "GRANT",
        "DENY",
        "REVOKE",
        "RENAME",
        "TERMINATE",
    }
)

# A keyword, unless it is a property (`n.set`), a parameter (`$set`), a label or type (`:Set`,
# `[:A|SET]`), part of a longer word, or a map key (`{set: 1}`).
_WORD = re.compile(r"(?<![.$:|\w])([A-Za-z_]+)(?!\w)(?!\s*:)")
_IN_TRANSACTIONS = re.compile(r"\bIN\s+(?:\d+\s+)?(?:CONCURRENT\s+)?TRANSACTIONS\b", re.IGNORECASE)


def write_clauses(query: str) -> list[str]:
    """The writing clauses of `query`, in order of appearance (strings and comments ignored)."""
    code = _strip_literals(query)
    found = [
        m.group(1).upper() for m in _WORD.finditer(code) if m.group(1).upper() in WRITE_CLAUSES
    ]
    if _IN_TRANSACTIONS.search(code):
        found.append("CALL … IN TRANSACTIONS")
    return list(dict.fromkeys(found))


def _strip_literals(query: str) -> str:
    """`query` with string literals, quoted names and comments blanked out."""
    out: list[str] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c in "'\"`":
            end = _closing(query, i, c)
            out.append(" ")
            i = end
        elif query.startswith("//", i):
            end = query.find("\n", i)
            i = n if end < 0 else end
        elif query.startswith("/*", i):
            end = query.find("*/", i + 2)
            out.append(" ")
            i = n if end < 0 else end + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _closing(query: str, start: int, quote: str) -> int:
    """The index just past the literal that opens at `start`."""
    i = start + 1
    while i < len(query):
        c = query[i]
        if c == "\\" and quote != "`":
            i += 2
        elif c == quote:
            if query.startswith(quote * 2, i) and quote == "`":  # `` inside a quoted name
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return len(query)


def name(value: str, what: str) -> str:
    """`value` as a quoted Cypher label, relationship type or property key."""
    if not value or not value.strip():
        raise ValueError(f"{what} must not be empty")
    return "`" + value.replace("`", "``") + "`"
