"""The Table API for reading: `GET /api/now/table/{table}` and `.../{sys_id}` with sysparm_query, sysparm_fields,
sysparm_limit, sysparm_offset, sysparm_display_value, `Link` and `X-Total-Count`. Read-only: it never writes."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, request

from servicenow_sandbox import errors
from servicenow_sandbox.query import compile_query
from servicenow_sandbox.schema import TABLES, Table
from servicenow_sandbox.state import SandboxState
from servicenow_sandbox.store import Store

bp = Blueprint("sandbox_tables", __name__)


def state() -> SandboxState:
    return current_app.extensions["itam_sandbox"]


def _flag(name: str, default: str = "false") -> str:
    return request.args.get(name, default).strip().lower()


def _reference_displays(store: Store, table: Table, rows: list[dict]) -> dict[tuple[str, str], str]:
    displays: dict[tuple[str, str], str] = {}
    for column, target_name in table.references.items():
        target = TABLES[target_name]
        ids = sorted({str(r[column]) for r in rows if r.get(column)})
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            placeholders = ", ".join("?" for _ in chunk)
            for ref in store.select(target, f"sys_id IN ({placeholders})", chunk):
                displays[(column, str(ref["sys_id"]))] = str(ref[target.display])
    return displays


def render_rows(table: Table, rows: list[dict], fields: list[str] | None) -> list[dict[str, object]]:
    """Rows as ServiceNow serialises them: every value a string; references as {link, value} unless excluded;
    {display_value, value} pairs with sysparm_display_value=all."""
    display_mode = _flag("sysparm_display_value")
    exclude_links = _flag("sysparm_exclude_reference_link") == "true"
    columns = [c for c in (fields or table.all_columns) if table.has(c)]
    displays = _reference_displays(state().store, table, rows) if display_mode in ("true", "all") else {}
    base = request.host_url.rstrip("/")
    rendered = []
    for row in rows:
        out: dict[str, object] = {}
        for column in columns:
            value = str(row.get(column, ""))
            if column in table.choices:
                display = table.choices[column].get(value, value)
            elif column in table.references:
                display = displays.get((column, value), value)
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


def list_records(table_name: str) -> Response:
    table = TABLES.get(table_name)
    if table is None:
        return errors.invalid_table(table_name)
    limit = _int_arg("sysparm_limit", state().settings.default_page_size)
    offset = _int_arg("sysparm_offset", 0)
    if limit is None or offset is None:
        return errors.bad_request("Invalid sysparm_limit or sysparm_offset", "Both must be non-negative integers")
    compiled = compile_query(table, request.args.get("sysparm_query"))
    store = state().store
    total = store.count(table, compiled.where, compiled.params)
    rows = store.select(table, compiled.where, compiled.params, compiled.order, limit, offset) if limit else []
    headers = {"X-Total-Count": str(total)}
    if _flag("sysparm_suppress_pagination_header") != "true" and limit:
        headers["Link"] = _link_header(offset, limit, total)
    return errors.json_response({"result": render_rows(table, rows, _fields())}, 200, headers)


def get_record(table_name: str, sys_id: str) -> Response:
    table = TABLES.get(table_name)
    if table is None:
        return errors.invalid_table(table_name)
    row = state().store.get(table, sys_id)
    if row is None:
        return errors.no_record()
    return errors.json_response({"result": render_rows(table, [row], _fields())[0]})


bp.add_url_rule("/api/now/table/<table_name>", "list", list_records, methods=["GET"])
bp.add_url_rule("/api/now/table/<table_name>/<sys_id>", "get", get_record, methods=["GET"])
