"""The sandbox's HTML pages: home, the installed Generate OAuth Token page, the update set import page, the OAuth
application registry and record lists.

Plain server-rendered HTML: Jinja autoescape, no inline script or style (a strict CSP is sent), a CSRF token on
every form. Never shows a refresh token except to the person who just generated it, and never a client secret
except the one just registered.
"""

from __future__ import annotations

import hmac
import math
import secrets

from flask import Blueprint, Response, abort, current_app, render_template, request, session

from servicenow_sandbox.accounts import ClientRefused, GrantRefused
from servicenow_sandbox.schema import IMPORT_TABLES, TARGET_TABLES
from servicenow_sandbox.state import SandboxState
from servicenow_sandbox.update_sets import UpdateSetError

bp = Blueprint("sandbox_pages", __name__)
PAGE_SIZE = 200
MAX_UPDATE_SET_BYTES = 5 * 1024 * 1024
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
CONFIGURATION_TABLES = ("sys_db_object", "sys_rest_insert_multiple", "sys_transform_map", "sys_user_has_role")
# The path the demo's README used before the token page came from the update set; it serves the installed page.
OLD_TOKEN_PATH = "/oauth_token_generator.do"


def state() -> SandboxState:
    return current_app.extensions["itam_sandbox"]


def listed_tables() -> tuple[str, ...]:
    staging = state().catalog.staging_tables
    return (*TARGET_TABLES, *IMPORT_TABLES[:2], *staging, "sys_user", *CONFIGURATION_TABLES)


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def _check_csrf() -> None:
    sent = request.form.get("csrf_token", "")
    if not sent or not hmac.compare_digest(sent, session.get("csrf", "")):
        abort(400, "The form expired; reload the page and try again.")


@bp.app_context_processor
def layout_values() -> dict[str, object]:
    sandbox = state()
    found = sandbox.catalog.token_page()
    return {
        "csrf_token": csrf_token,
        "nav_tables": [sandbox.catalog.tables[name] for name in listed_tables()[:5]],
        "token_page_path": found[1].path if found else None,
    }


@bp.after_app_request
def security_headers(response: Response) -> Response:
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/")
def home() -> str:
    sandbox = state()
    names = listed_tables()
    return render_template(
        "home.html",
        tables=[sandbox.catalog.tables[name] for name in names],
        counts={name: sandbox.count(name) for name in names},
        clients=sandbox.accounts.clients(),
        update_sets=sandbox.installed_update_sets(),
        snapshot=sandbox.metrics.snapshot(sandbox.catalog.staging_tables),
    )


def token_page(path: str) -> tuple[str, int]:
    """The installed Generate OAuth Token page: Username, Password, optional Client ID (empty: the update set's
    own OAuth entry); the instance makes the password grant itself and shows the refresh token once, at the top."""
    sandbox = state()
    found = sandbox.catalog.page(path) if path != OLD_TOKEN_PATH else sandbox.catalog.token_page()
    if found is None or not found[1].generates_tokens:
        abort(404)
    app, page = found
    default_client = next((c for c in app.oauth_clients if c.active), None)
    values = {"username": "", "client_id": ""}
    token = error = None
    status = 200
    if request.method == "POST":
        _check_csrf()
        values = {"username": request.form.get("username", "").strip(), "client_id": request.form.get("client_id", "")}
        client_id = values["client_id"].strip() or (default_client.client_id if default_client else "")
        try:
            if not client_id:
                raise ClientRefused("")
            token = sandbox.generate_refresh_token(values["username"], request.form.get("password", ""), client_id)
            values["client_id"] = client_id
        except GrantRefused:
            error, status = (
                (
                    "ServiceNow refused the username or password (HTTP 401). Use the user's local ServiceNow password; "
                    "single sign-on passwords do not work here."
                ),
                401,
            )
        except ClientRefused:
            if values["client_id"].strip():
                error = (
                    f"No active Application Registry entry with client ID {values['client_id'].strip()} has a secret."
                )
            elif default_client is None:
                error = f"The update set {app.name} brought no OAuth entry: enter a Client ID."
            else:
                error = (
                    f'The Application Registry entry "{default_client.name}" has no client secret yet: your '
                    "ServiceNow admin sets it after importing the update set."
                )
            status = 400
    days = math.floor(sandbox.settings.refresh_token_seconds / 86400)
    html = render_template(
        "token_generator.html", page=page, values=values, token=token, error=error, days=days, action=request.path
    )
    return html, status


@bp.route(OLD_TOKEN_PATH, methods=["GET", "POST"])
def token_generator() -> tuple[str, int]:
    return token_page(OLD_TOKEN_PATH)


@bp.route("/<page_name>.do", methods=["GET", "POST"])
def ui_page(page_name: str) -> tuple[str, int]:
    """Pages an installed update set brings (sys_ui_page), at /<name>.do as ServiceNow serves them."""
    if page_name in ("oauth_token", "oauth_revoke_token"):
        abort(405)
    return token_page(f"/{page_name}.do")


@bp.route("/sys_remote_update_set.do", methods=["GET", "POST"])
def import_update_set() -> tuple[str, int]:
    """Retrieved Update Sets > Import Update Set from XML, then Preview and Commit, in one step: upload (or paste)
    the XML and the sandbox installs it; anything that is not a well-formed update set is refused whole."""
    sandbox = state()
    message = error = None
    status = 200
    if request.method == "POST":
        _check_csrf()
        upload = request.files.get("update_set")
        data = upload.read(MAX_UPDATE_SET_BYTES + 1) if upload and upload.filename else b""
        text = data.decode("utf-8", errors="replace") if data else request.form.get("xml", "")
        if len(data) > MAX_UPDATE_SET_BYTES or len(text) > MAX_UPDATE_SET_BYTES:
            error, status = "That file is too big to be an update set.", 400
        elif not text.strip():
            error, status = "Choose an update set XML file (or paste its XML).", 400
        else:
            try:
                app = sandbox.install_update_set(text)
            except UpdateSetError as problem:
                error, status = f"Not installed: {problem}.", 400
            else:
                message = (
                    f"Committed {app.name}: {len(app.staging_tables)} staging tables, "
                    f"{sum(len(maps) for maps in app.transform_maps.values())} transform maps, "
                    f"{len(app.insert_multiple)} REST Insert Multiple entries, {len(app.roles)} roles, "
                    f"{len(app.ui_pages)} UI pages, {len(app.oauth_clients)} OAuth entries."
                )
    return render_template(
        "update_sets.html", update_sets=sandbox.installed_update_sets(), message=message, error=error
    ), status


@bp.route("/oauth_entity.do", methods=["GET", "POST"])
def clients() -> tuple[str, int] | str:
    sandbox = state()
    message = error = None
    status = 200
    if request.method == "POST":
        _check_csrf()
        try:
            client = sandbox.add_client(
                request.form.get("client_id", "").strip(),
                request.form.get("client_secret", "").strip() or None,
                request.form.get("name", "").strip() or None,
            )
            message = f"OAuth client {client.client_id} registered. Its secret: {client.client_secret}"
        except ValueError as problem:
            error, status = str(problem), 400
    return render_template(
        "clients.html", clients=sandbox.accounts.clients(), message=message, error=error, settings=sandbox.settings
    ), status


@bp.get("/login.do")
def login() -> str:
    """Where the login_redirect fault points: an HTML page where a REST client expected JSON."""
    return render_template("login.html")


@bp.get("/<table_name>_list.do")
def record_list(table_name: str) -> str:
    sandbox = state()
    table = sandbox.catalog.table(table_name)
    if table is None or table_name not in listed_tables():
        abort(404)
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    total = sandbox.store.count(table)
    pages = max(math.ceil(total / PAGE_SIZE), 1)
    page = min(page, pages)
    rows = sandbox.store.select(table, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    for column, target_name in table.references.items():  # lists show a reference by its display value
        target = sandbox.catalog.table(target_name)
        ids = sorted({str(row[column]) for row in rows if row.get(column)})
        if target is None or not ids:
            continue
        shown = {
            str(ref["sys_id"]): str(ref[target.display])
            for start in range(0, len(ids), 500)
            for ref in sandbox.store.select(
                target, f"sys_id IN ({', '.join('?' for _ in ids[start : start + 500])})", ids[start : start + 500]
            )
        }
        for row in rows:
            row[column] = shown.get(str(row[column]), row[column])
    return render_template(
        "records.html", table=table, rows=rows, total=total, page=page, pages=pages, page_size=PAGE_SIZE
    )
