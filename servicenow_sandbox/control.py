"""The sandbox's control endpoints under /sandbox/api/ for tests and the `sandbox-fault` command. No auth: the
sandbox listens on loopback only; requests must be JSON, so a web page elsewhere cannot drive them with a form.

POST /sandbox/api/faults, every key optional, applied in this order::

    {"clear": true,                                   # remove every fault first
     "latency_ms": 100,
     "fail_next": {"count": 3, "status": 503, "message": null, "detail": null,
                   "markup": false, "retry_after": null, "scope": "api"},   # scope: api | token | all
     "drop_next": {"count": 2, "when": "before", "scope": "api"},           # when: before | after handling
     "rate_limit": {"limit": 100, "window_seconds": 3600},                  # or null to remove
     "capacity": {"concurrent": 8, "queue": 50, "service_ms": 300},        # API_INT semaphores; null removes;
                  # queue null: endless; a request finding the queue full gets 429 (KB0635398)
     "quota_cancel_next": {"count": 1, "malformed": false, "status": 200, "scope": "api"},  # KB1297438
     "hibernate_next": {"count": 1, "scope": "all"},                        # HTML page, HTTP 200
     "login_redirect_next": {"count": 1, "scope": "all"},                   # 302 to /login.do
     "too_many_requests_next": {"count": 1, "scope": "api"},                # 429 without Retry-After
     "reject_rows": {"every": 15, "source_ids": ["acme:7"], "comment": "...", "staging_table": null},  # or null
     "hold_transforms": true,                                               # false releases them
     "transform_seconds": 2.0 | {"seconds": 2.0, "table": "u_itam_hardware_inventory", "jitter": 0.5},
     "revoke_tokens": {"user": "admin"} | {"token": "..."} | {"all": true},
     "expire_tokens": {"user": "admin", "kind": "access"},                  # kind: access | refresh | all
     "token_lifetimes": {"access_seconds": 1800, "refresh_seconds": 8640000, "rotate_refresh_tokens": false},
     "max_payload_bytes": 10485760}
    -> {"faults": {"latency_ms", "fail_next", "drop_next", "rate_limit", "capacity", "answers", "reject_rows"},
        "revoked": N, "expired": N}

GET /sandbox/api/faults -> the "faults" object above. GET /sandbox/api/state[?wait_idle=SECONDS] -> counters
(see SandboxState.snapshot). POST /sandbox/api/clients {"client_id", "client_secret", "name"}; POST
/sandbox/api/refresh_tokens {"username", "password", "client_id"} -> {"refresh_token"}; POST /sandbox/api/records
{"table": "cmdb_ci_computer", "records": [{"name": ..., "serial_number": ...}]} -> {"records": [{"sys_id", ...}]}
(records another source wrote); POST /sandbox/api/update_sets {"xml": "<unload>..."} -> {"installed": NAME}
(import and commit an update set); POST /sandbox/api/users {"user_name", "password", "roles": [...]};
POST /sandbox/api/config {"column_mapping": {"table": T, "mapping": "column_name"|"label"|null},
"transform_map_active": {"table": T, "active": false}, "read_roles": {"table": T, "roles": [...]|null}};
POST /sandbox/api/reset. Errors: 400/415 {"error": "..."}.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Blueprint, Response, current_app, request

from servicenow_sandbox.accounts import ClientRefused, GrantRefused
from servicenow_sandbox.errors import json_response
from servicenow_sandbox.state import SandboxState
from servicenow_sandbox.update_sets import UpdateSetError

bp = Blueprint("sandbox_control", __name__, url_prefix="/sandbox/api")


def state() -> SandboxState:
    return current_app.extensions["itam_sandbox"]


def _problem(status: int, message: str) -> Response:
    return json_response({"error": message}, status)


def _body() -> Mapping[str, object] | Response:
    if not request.is_json:
        return _problem(415, "Send a JSON object with Content-Type: application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, Mapping):
        return _problem(400, "The body must be a JSON object")
    return body


@bp.get("/state")
def get_state() -> Response:
    wait = request.args.get("wait_idle", type=float)
    if wait:
        state().wait_idle(min(wait, 120.0))
    return json_response(state().snapshot())


@bp.get("/faults")
def get_faults() -> Response:
    return json_response(state().faults.snapshot())


def _apply_tokens(sandbox: SandboxState, body: Mapping[str, object]) -> dict[str, int]:
    done: dict[str, int] = {}
    revoke = body.get("revoke_tokens")
    if isinstance(revoke, Mapping):
        done["revoked"] = sandbox.revoke_tokens(
            user=revoke.get("user"), token=revoke.get("token"), everything=bool(revoke.get("all"))
        )
    elif revoke is not None:
        raise ValueError("revoke_tokens must be {'user': NAME} or {'token': TOKEN} or {'all': true}")
    expire = body.get("expire_tokens")
    if isinstance(expire, Mapping):
        done["expired"] = sandbox.expire_tokens(user=expire.get("user"), kind=str(expire.get("kind", "access")))
    elif expire is not None:
        raise ValueError("expire_tokens must be {'user': NAME, 'kind': 'access'|'refresh'|'all'}")
    lifetimes = body.get("token_lifetimes")
    if isinstance(lifetimes, Mapping):
        sandbox.set_token_lifetimes(
            lifetimes.get("access_seconds"), lifetimes.get("refresh_seconds"), lifetimes.get("rotate_refresh_tokens")
        )
    if "max_payload_bytes" in body:
        sandbox.set_max_payload_bytes(int(body["max_payload_bytes"]))
    if "hold_transforms" in body:
        if body["hold_transforms"]:
            sandbox.hold_transforms()
        else:
            sandbox.release_transforms()
    timing = body.get("transform_seconds")
    if isinstance(timing, Mapping):
        seconds, jitter = timing.get("seconds"), timing.get("jitter")
        sandbox.set_transform_seconds(
            float(seconds) if seconds is not None else None,
            table=timing.get("table"),
            jitter=float(jitter) if jitter is not None else None,
        )
    elif timing is not None:
        sandbox.set_transform_seconds(float(timing))
    return done


@bp.post("/faults")
def set_faults() -> Response:
    """Apply faults and token changes (the body is described in this module's docstring)."""
    body = _body()
    if isinstance(body, Response):
        return body
    sandbox = state()
    try:
        sandbox.faults.configure(body)
        done = _apply_tokens(sandbox, body)
    except (ValueError, TypeError) as error:
        return _problem(400, str(error))
    return json_response({"faults": sandbox.faults.snapshot(), **done})


@bp.post("/clients")
def add_client() -> Response:
    body = _body()
    if isinstance(body, Response):
        return body
    try:
        client = state().add_client(str(body.get("client_id", "")), body.get("client_secret"), body.get("name"))
    except ValueError as error:
        return _problem(400, str(error))
    return json_response({"client_id": client.client_id, "client_secret": client.client_secret, "name": client.name})


@bp.post("/refresh_tokens")
def refresh_token() -> Response:
    """What the Generate OAuth Token page does, for tests in another process: {username, password, client_id}."""
    body = _body()
    if isinstance(body, Response):
        return body
    try:
        token = state().generate_refresh_token(
            str(body.get("username", "admin")), str(body.get("password", "admin")), body.get("client_id")
        )
    except GrantRefused:
        return _problem(401, "Wrong user name or password")
    except ClientRefused:
        return _problem(404, "No such OAuth client (or it has no secret)")
    return json_response({"refresh_token": token})


@bp.post("/records")
def add_records() -> Response:
    """Records another source put straight into a table: {"table": NAME, "records": [{column: value}, ...]}."""
    body = _body()
    if isinstance(body, Response):
        return body
    records = body.get("records")
    if not isinstance(records, list) or not all(isinstance(record, Mapping) for record in records):
        return _problem(400, "records must be a list of objects")
    try:
        rows = state().add_records(str(body.get("table", "")), [dict(record) for record in records])
    except (KeyError, ValueError) as error:
        return _problem(400, str(error).strip("'\""))
    return json_response({"records": rows})


@bp.post("/update_sets")
def install_update_set() -> Response:
    """Import and commit an update set: {"xml": "<?xml ...><unload>...</unload>"}."""
    body = _body()
    if isinstance(body, Response):
        return body
    try:
        app = state().install_update_set(str(body.get("xml", "")))
    except UpdateSetError as error:
        return _problem(400, f"Not installed: {error}")
    return json_response({"installed": app.name, "staging_tables": list(app.staging_tables)})


@bp.post("/users")
def add_user() -> Response:
    """A local user: {"user_name", "password", "roles": ["u_itam_integration"], "name"}."""
    body = _body()
    if isinstance(body, Response):
        return body
    roles = body.get("roles") or []
    if not isinstance(roles, list):
        return _problem(400, "roles must be a list of role names")
    try:
        row = state().add_user(
            str(body.get("user_name", "")),
            str(body.get("password", "")),
            [str(r) for r in roles],
            str(body.get("name", "")),
        )
    except ValueError as error:
        return _problem(400, str(error))
    return json_response({"sys_id": row["sys_id"], "user_name": row["user_name"]})


@bp.post("/config")
def configure() -> Response:
    """Instance configuration an admin would change by hand (see the module docstring)."""
    body = _body()
    if isinstance(body, Response):
        return body
    sandbox = state()
    try:
        mapping = body.get("column_mapping")
        if isinstance(mapping, Mapping):
            sandbox.set_column_mapping(str(mapping.get("table", "")), mapping.get("mapping"))
        active = body.get("transform_map_active")
        if isinstance(active, Mapping):
            sandbox.set_transform_map_active(str(active.get("table", "")), bool(active.get("active")))
        readers = body.get("read_roles")
        if isinstance(readers, Mapping):
            roles = readers.get("roles")
            sandbox.set_read_roles(str(readers.get("table", "")), None if roles is None else [str(r) for r in roles])
    except (KeyError, ValueError) as error:
        return _problem(400, str(error).strip("'\""))
    return json_response({"configured": True})


@bp.post("/reset")
def reset() -> Response:
    """Forget imported records and import sets and clear the faults (users, clients and tokens stay)."""
    sandbox = state()
    sandbox.faults.clear()
    sandbox.reset_data()
    return json_response({"reset": True})
