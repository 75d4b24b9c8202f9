"""The REST API's door (bearer or basic auth, rate limits) and the Import Set API:
`POST /api/now/import/{staging_table}`, `.../insertMultiple` and `GET .../{sys_id}`. Never transforms an
asynchronous batch on the request path: insertMultiple only stages it for the scheduler.

Refusals follow ServiceNow: a staging table the instance does not have answers 400 `Invalid table <name>`; a body
over the limit is refused before it is read; loading needs import_transformer (inherited counts) and the staging
table's create ACL, or admin."""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from servicenow_sandbox import errors
from servicenow_sandbox.accounts import Caller
from servicenow_sandbox.state import SandboxState

bp = Blueprint("sandbox_api", __name__)


def state() -> SandboxState:
    return current_app.extensions["itam_sandbox"]


def _caller() -> Caller | None:
    auth = request.authorization
    if auth is None:
        return None
    accounts = state().accounts
    if auth.type == "bearer" and auth.token:
        return accounts.authenticate_bearer(auth.token)
    if auth.type == "basic":
        return accounts.check_password(auth.username or "", auth.password or "")
    return None


@bp.before_app_request
def authenticate() -> Response | None:
    """Every /api/ request acts as a user; then the rate limit (when one is set) counts it."""
    if not request.path.startswith("/api/"):
        return None
    caller = _caller()
    if caller is None:
        return errors.not_authenticated()
    g.caller = caller
    decision = state().faults.check_rate(caller.user_name)
    if decision is not None:
        g.rate_headers = decision.headers()
        if not decision.allowed:
            return errors.rate_limited(decision.limit, g.rate_headers)
    return None


@bp.after_app_request
def add_rate_headers(response: Response) -> Response:
    for name, value in getattr(g, "rate_headers", {}).items():
        response.headers.setdefault(name, value)
    return response


def api_http_error(error: HTTPException) -> Response | HTTPException:
    """Routing errors under /api/ in ServiceNow's shape; other paths keep Flask's pages."""
    if not request.path.startswith("/api/"):
        return error
    if error.code == 404:
        return errors.bad_request("Requested URI does not represent any resource", request.path)
    if error.code == 405:
        return errors.api_error(405, "Method not Supported for API", f"{request.method} {request.path}")
    if error.code == 413:
        settings = state().settings
        return errors.payload_too_large(
            request.content_length or 0, settings.max_payload_bytes, settings.oversize_status
        )
    return errors.api_error(error.code or 500, error.name, error.description)


def _check_import(staging_table: str) -> Response | None:
    sandbox = state()
    if staging_table not in sandbox.catalog.staging:
        return errors.invalid_table(staging_table)
    limit = sandbox.settings.max_payload_bytes
    if (request.content_length or 0) > limit:
        return errors.payload_too_large(request.content_length or 0, limit, sandbox.settings.oversize_status)
    if not sandbox.access.may_load(g.caller.effective, staging_table):
        return errors.insert_forbidden()
    return None


def import_body(staging_table: str) -> tuple[object, str] | Response:
    """The checked import request's JSON body and its text, or the error answer ServiceNow would give."""
    refused = _check_import(staging_table)
    if refused is not None:
        return refused
    text = request.get_data(as_text=True)
    try:
        return json.loads(text), text
    except ValueError:
        return errors.not_parsable()


def import_one(staging_table: str) -> Response:
    parsed = import_body(staging_table)
    if isinstance(parsed, Response):
        return parsed
    body, _ = parsed
    if not isinstance(body, dict):
        return errors.bad_request("Exception while reading request", "The request body must be one JSON object")
    state().metrics.batch_received(staging_table, 1)
    answer = state().imports.import_one(staging_table, body, g.caller.user_name, request.host_url.rstrip("/"))
    return errors.json_response(answer, 201)


def insert_multiple(staging_table: str) -> Response:
    parsed = import_body(staging_table)
    if isinstance(parsed, Response):
        return parsed
    body, _ = parsed
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        return errors.bad_request("Exception while reading request", 'The body must be {"records": [{...}, ...]}')
    state().metrics.batch_received(staging_table, len(records))
    answer = state().imports.accept_batch(
        staging_table,
        records,
        g.caller.user_name,
        request.args.get("multi_import_set_id"),
        request.args.get("run_after", "").strip() or None,
    )
    return errors.json_response(answer, state().settings.insert_multiple_status)


def staged_record(staging_table: str, sys_id: str) -> Response:
    sandbox = state()
    staging = sandbox.catalog.staging.get(staging_table)
    if staging is None:
        return errors.invalid_table(staging_table)
    row = sandbox.store.get(staging.table, sys_id)
    if row is None or sandbox.access.may_read(g.caller.effective, staging_table) is None:
        return errors.no_record()
    tmap = next((m for m in staging.maps if m.sys_id == row["sys_transform_map"]), None)
    tmap = tmap or sandbox.imports.transform_map(staging_table)
    import_set = sandbox.store.get(sandbox.catalog.tables["sys_import_set"], str(row["sys_import_set"])) or {}
    target_id = str(row["sys_target_sys_id"])
    target_table = tmap.target_table if tmap else ""
    result = {
        "transform_map": tmap.name if tmap else "",
        "table": target_table,
        "record_link": f"{request.host_url.rstrip('/')}/api/now/table/{target_table}/{target_id}",
        "status": row["sys_import_state"],
        "sys_id": target_id or sys_id,
    }
    if row["sys_import_state_comment"]:
        key = "error_message" if row["sys_import_state"] == "error" else "status_message"
        result[key] = row["sys_import_state_comment"]
    return errors.json_response(
        {"import_set": import_set.get("number", ""), "staging_table": staging_table, "result": [result]}
    )


bp.add_url_rule("/api/now/import/<staging_table>", "one", import_one, methods=["POST"])
bp.add_url_rule("/api/now/import/<staging_table>/insertMultiple", "multi", insert_multiple, methods=["POST"])
bp.add_url_rule("/api/now/import/<staging_table>/<sys_id>", "staged", staged_record, methods=["GET"])
