"""Turns a ServiceNow encoded query (`sysparm_query`) into a SQL WHERE and ORDER BY for one table.

Like ServiceNow, a condition on a field the table does not have is ignored rather than refused. A dot-walked field
(`user.user_name=admin`) follows a reference column into the table it names. It never puts client text into SQL:
fields are checked against the catalog's tables, values are bound parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from servicenow_sandbox.schema import Table
from servicenow_sandbox.store import quoted

_CONDITION = re.compile(
    r"^(?P<field>[a-z0-9_]+(?:\.[a-z0-9_]+)*)"
    r"(?P<op>!=|>=|<=|=|>|<|NOT IN|NOTIN|IN|STARTSWITH|ENDSWITH|NOT LIKE|NOTLIKE|LIKE|ISNOTEMPTY|ISEMPTY|ANYTHING)"
    r"(?P<value>.*)$",
    re.DOTALL,
)


@dataclass
class CompiledQuery:
    where: str = ""
    params: list[object] = field(default_factory=list)
    order: str = ""
    ignored: list[str] = field(default_factory=list)  # conditions dropped because the field is unknown


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


Resolve = Callable[[str], Table | None]


def _condition(
    table: Table, text: str, params: list[object], ignored: list[str], resolve: Resolve | None
) -> str | None:
    match = _CONDITION.match(text)
    if match and "." in match["field"] and resolve is not None:
        reference, _, rest = match["field"].partition(".")
        referenced = resolve(table.references.get(reference, ""))
        if referenced is not None:
            inner = _condition(referenced, rest + text[len(match["field"]) :], params, ignored, resolve)
            if inner is None:
                return None
            return f"{quoted(reference)} IN (SELECT sys_id FROM {quoted(referenced.name)} WHERE {inner})"
    if not match or not table.has(match["field"]):
        ignored.append(text)
        return None
    column, op, value = quoted(match["field"]), match["op"], match["value"]
    numeric = table.is_integer(match["field"])
    subject = f"CAST({column} AS INTEGER)" if numeric and op in (">", ">=", "<", "<=") else column
    if op in ("=", "!=", ">", ">=", "<", "<="):
        params.append(int(value) if numeric and value.lstrip("-").isdigit() else value)
        return f"{subject} {'<>' if op == '!=' else op} ?"
    if op in ("IN", "NOT IN", "NOTIN"):
        items = value.split(",")
        params.extend(items)
        return f"{column} {'IN' if op == 'IN' else 'NOT IN'} ({', '.join('?' for _ in items)})"
    if op in ("STARTSWITH", "ENDSWITH", "LIKE", "NOT LIKE", "NOTLIKE"):
        pattern = _like_escape(value)
        pattern = {"STARTSWITH": f"{pattern}%", "ENDSWITH": f"%{pattern}"}.get(op, f"%{pattern}%")
        params.append(pattern)
        negate = "NOT " if op in ("NOT LIKE", "NOTLIKE") else ""
        return f"{column} {negate}LIKE ? ESCAPE '\\'"
    if op == "ISEMPTY":
        return f"({column} IS NULL OR {column} = '')"
    if op == "ISNOTEMPTY":
        return f"({column} IS NOT NULL AND {column} <> '')"
    return "1 = 1"  # ANYTHING


def compile_query(table: Table, encoded: str | None, resolve: Resolve | None = None) -> CompiledQuery:
    """SQL for an encoded query: `^` is AND, `^OR` is OR with the previous term, `^NQ` starts a new OR'ed query,
    `ORDERBYfield` / `ORDERBYDESCfield` sort (first one wins). ``resolve`` finds a referenced table by name, for
    dot-walked conditions."""
    result = CompiledQuery()
    if not encoded:
        return result
    orders: list[str] = []
    groups: list[str] = []
    for part in encoded.split("^NQ"):
        clauses: list[list[str]] = []  # AND of ORs
        for term in part.split("^"):
            term = term.strip()
            if not term or term == "EQ":
                continue
            if term.startswith("ORDERBYDESC") or term.startswith("ORDERBY"):
                desc = term.startswith("ORDERBYDESC")
                name = term[len("ORDERBYDESC") :] if desc else term[len("ORDERBY") :]
                if table.has(name):
                    subject = f"CAST({quoted(name)} AS INTEGER)" if table.is_integer(name) else quoted(name)
                    orders.append(f"{subject} {'DESC' if desc else 'ASC'}")
                continue
            is_or = term.startswith("OR")
            sql = _condition(table, term[2:] if is_or else term, result.params, result.ignored, resolve)
            if sql is None:
                continue
            if is_or and clauses:
                clauses[-1].append(sql)
            else:
                clauses.append([sql])
        if clauses:
            groups.append(" AND ".join("(" + " OR ".join(ors) + ")" for ors in clauses))
    if groups:
        result.where = " OR ".join(f"({g})" for g in groups)
    if orders:
        result.order = ", ".join(orders + ["rowid"])
    return result
