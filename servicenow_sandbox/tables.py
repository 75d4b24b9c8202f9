"""The Table API for reading: `GET /api/now/table/{table}` and `.../{sys_id}` with sysparm_query, sysparm_fields
(dot-walked ones too, e.g. `role.name`), sysparm_limit, sysparm_offset, sysparm_display_value, `Link` and
`X-Total-Count`. It writes only into import set (staging) tables, `POST /api/now/table/{staging table}`, as a web
service insert: the row is transformed at once (imports.insert_row); any other table answers 405.

What a caller sees follows ServiceNow: a table the instance does not have answers 400 `Invalid table <name>`; a table
the caller may not read answers an empty list (rows are filtered by ACL, not refused) and 404 for one record.
"""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, request

from servicenow_sandbox import errors
from servicenow_sandbox.access import OWN_ROWS
from servicenow_sandbox.query import compile_query
from servicenow_sandbox.schema import Table
from servicenow_sandbox.state import SandboxState
from servicenow_sandbox.store import Store

bp = Blueprint("sandbox_tables", __name__)


def state() -> SandboxState:
    return current_app.extensions["itam_sandbox"]


def _flag(name: str, default: str = "false") -> str:
    return request.args.get(name, default).strip().lower()


def _referenced(store: Store, target: Table, ids: set[str]) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), 500):
        chunk = ordered[start : start + 500]
        for ref in store.select(target, f"sys_id IN ({', '.join('?' for _ in chunk)})", chunk):
            rows[str(ref["sys_id"])] = ref
    return rows


def _reference_rows(table: Table, rows: list[dict], columns: set[str]) -> dict[str, dict[str, dict]]:
    """For each reference column in ``columns``: the referenced rows by sys_id."""
    sandbox = state()
    found: dict[str, dict[str, dict]] = {}
    for column in columns:
        target = sandbox.catalog.table(table.references.get(column, ""))
        if target is not None:
            found[column] = _referenced(sandbox.store, target, {str(r[column]) for r in rows if r.get(column)})
    return found


def render_rows(table: Table, rows: list[dict], fields: list[str] | None) -> list[dict[str, object]]:
    """Rows as ServiceNow serialises them: every value a string; references as {link, value} unless excluded;
    {display_value, value} pairs with sysparm_display_value=all; `ref.field` follows a reference."""
    display_mode = _flag("sysparm_display_value")
    exclude_links = _flag("sysparm_exclude_reference_link") == "true"
    catalog = state().catalog
    wanted = fields or list(table.all_columns)
    columns = [c for c in wanted if table.has(c) or _walks(table, c)]
    walked = {c.partition(".")[0] for c in columns if "." in c}
    shown = {c for c in columns if c in table.references} if display_mode in ("true", "all") else set()
    referenced = _reference_rows(table, rows, walked | shown)
    base = request.host_url.rstrip("/")
    rendered = []
    for row in rows:
        out: dict[str, object] = {}
        for column in columns:
            if "." in column:
                reference, _, inner = column.partition(".")
                target_row = referenced.get(reference, {}).get(str(row.get(reference, "")), {})
                out[column] = str(target_row.get(inner, ""))
                continue
            value = str(row.get(column, ""))
            if column in table.choices:
                display = table.choices[column].get(value, value)
            elif column in table.references:
                target = catalog.table(table.references[column])
                ref = referenced.get(column, {}).get(value)
                display = str(ref[target.display]) if ref is not None and target is not None else value
            else:
                display = value
            if display_mode == "true":
                item: object = display
            elif display_mode == "all":
                item = {"display_value": display, "value": value}
            else:
                item = value
            if column in table.references and value and not exclude_links:
                link = f"{base}/api/now/table/{table.references[column]}/{value}"
                item = {**item, "link": link} if isinstance(item, dict) else {"link": link, "value": item}
            out[column] = item
        rendered.append(out)
    return rendered


def _walks(table: Table, column: str) -> bool:
    """A one-level dot-walk through a reference column to a column the referenced table has."""
    reference, dot, inner = column.partition(".")
    target = state().catalog.table(table.references.get(reference, "")) if dot else None
    return target is not None and target.has(inner)


def _page_link(offset: int, limit: int, rel: str) -> str:
    args = request.args.to_dict()
    args.update(sysparm_offset=str(offset), sysparm_limit=str(limit))
    return f'<{request.base_url}?{urlencode(args)}>;rel="{rel}"'


def _link_header(offset: int, limit: int, total: int) -> str:
    last = max((total - 1) // limit * limit, 0) if limit else 0
    links = [_page_link(0, limit, "first")]
    if offset > 0:
        links.append(_page_link(max(offset - limit, 0), limit, "prev"))
    if offset + limit < total:
        links.append(_page_link(offset + limit, limit, "next"))
    links.append(_page_link(last, limit, "last"))
    return ",".join(links)


def _int_arg(name: str, default: int) -> int | None:
    text = request.args.get(name, "").strip()
    if not text:
        return default
    return int(text) if text.isdigit() else None


def _fields() -> list[str] | None:
    text = request.args.get("sysparm_fields", "").strip()
    return [f.strip() for f in text.split(",") if f.strip()] or None


def _visible(table: Table) -> tuple[str, list[object]] | None:
    """The SQL condition limiting what the caller may read of ``table`` ("" for all), or None for nothing."""
    sandbox = state()
    allowed = sandbox.access.may_read(g.caller.effective, table.name)
    if allowed == "all":
        return "", []
    if allowed == "own":
        return f'"{OWN_ROWS[table.name]}" = ?', [g.caller.sys_id]
    return None


def list_records(table_name: str) -> Response:
    sandbox = state()
    table = sandbox.catalog.table(table_name)
    if table is None:
        return errors.invalid_table(table_name)
    limit = _int_arg("sysparm_limit", sandbox.settings.default_page_size)
    offset = _int_arg("sysparm_offset", 0)
    if limit is None or offset is None:
        return errors.bad_request("Invalid sysparm_limit or sysparm_offset", "Both must be non-negative integers")
    visible = _visible(table)
    headers: dict[str, str] = {}
    if visible is None:
        rows, total = [], 0
    else:
        compiled = compile_query(table, request.args.get("sysparm_query"), sandbox.catalog.table)
        where = " AND ".join(f"({part})" for part in (compiled.where, visible[0]) if part)
        params = [*compiled.params, *visible[1]]
        total = sandbox.store.count(table, where, params)
        rows = sandbox.store.select(table, where, params, compiled.order, limit, offset) if limit else []
    headers["X-Total-Count"] = str(total)
    if _flag("sysparm_suppress_pagination_header") != "true" and limit:
        headers["Link"] = _link_header(offset, limit, total)
    return errors.json_response({"result": render_rows(table, rows, _fields())}, 200, headers)


def get_record(table_name: str, sys_id: str) -> Response:
    sandbox = state()
    table = sandbox.catalog.table(table_name)
    if table is None:
        return errors.invalid_table(table_name)
    visible = _visible(table)
    row = sandbox.store.get(table, sys_id) if visible is not None else None
    if row is not None and visible and visible[0] and str(row.get(OWN_ROWS[table.name], "")) != g.caller.sys_id:
        row = None
    if row is None:
        return errors.no_record()
    return errors.json_response({"result": render_rows(table, [row], _fields())[0]})


def insert_record(table_name: str) -> Response:
    from servicenow_sandbox import api  # the import checks (payload size, who may load the table) are the API's

    sandbox = state()
    if table_name not in sandbox.catalog.staging:
        if sandbox.catalog.table(table_name) is None:
            return errors.invalid_table(table_name)
        return errors.api_error(405, "Method not Supported", "The sandbox's Table API inserts only into staging tables")
    parsed = api.import_body(table_name)
    if isinstance(parsed, Response):
        return parsed
    body, _ = parsed
    if not isinstance(body, dict):
        return errors.bad_request("Exception while reading request", "The request body must be one JSON object")
    sandbox.metrics.batch_received(table_name, 1)
    row = sandbox.imports.insert_row(table_name, body, g.caller.user_name)
    staging = sandbox.catalog.staging[table_name]
    return errors.json_response({"result": render_rows(staging.table, [row], _fields())[0]}, 201)


bp.add_url_rule("/api/now/table/<table_name>", "list", list_records, methods=["GET"])
bp.add_url_rule("/api/now/table/<table_name>", "insert", insert_record, methods=["POST"])
bp.add_url_rule("/api/now/table/<table_name>/<sys_id>", "get", get_record, methods=["GET"])
