"""The sandbox's HTML pages: home, Generate OAuth Token, the OAuth application registry and record lists.

Plain server-rendered HTML: Jinja autoescape, no inline script or style (a strict CSP is sent), a CSRF token on
every form. Never shows a refresh token except to the person who just generated it.
"""

from __future__ import annotations

import hmac
import math
import secrets

from flask import Blueprint, Response, abort, current_app, render_template, request, session

from servicenow_sandbox.accounts import ClientRefused, GrantRefused, NotAdmin
from servicenow_sandbox.schema import STAGING_TABLES, TABLES, TARGET_TABLES
from servicenow_sandbox.state import SandboxState

bp = Blueprint("sandbox_pages", __name__)
PAGE_SIZE = 200
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
LISTED_TABLES = TARGET_TABLES + ("sys_import_set", "sys_import_set_run") + STAGING_TABLES + ("sys_user",)


def state() -> SandboxState:
    return current_app.extensions["itam_sandbox"]


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
    return {"csrf_token": csrf_token, "nav_tables": [TABLES[name] for name in LISTED_TABLES[:5]]}


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
    counts = {name: sandbox.count(name) for name in LISTED_TABLES}
    return render_template(
        "home.html",
        tables=[TABLES[name] for name in LISTED_TABLES],
        counts=counts,
        default_client_id=sandbox.settings.default_client_id,
        snapshot=sandbox.metrics.snapshot(),
    )


@bp.route("/oauth_token_generator.do", methods=["GET", "POST"])
def token_generator() -> tuple[str, int] | str:
    sandbox = state()
    clients = sandbox.accounts.clients()
    values = {"username": "", "client_id": sandbox.settings.default_client_id}
    token = error = None
    status = 200
    if request.method == "POST":
        _check_csrf()
        values = {"username": request.form.get("username", "").strip(), "client_id": request.form.get("client_id", "")}
        try:
            token = sandbox.generate_refresh_token(
                values["username"], request.form.get("password", ""), values["client_id"] or None
            )
        except GrantRefused:
            error, status = "Invalid user name or password.", 401
        except NotAdmin:
            error = (
                f"User {values['username']} does not have the admin role. Only users with the admin role can "
                "generate an OAuth token."
            )
            status = 403
        except ClientRefused:
            error, status = "That OAuth client is not registered.", 400
    days = math.floor(sandbox.settings.refresh_token_seconds / 86400)
    return render_template(
        "token_generator.html", clients=clients, values=values, token=token, error=error, days=days
    ), status


@bp.get("/login.do")
def login() -> str:
    """Where the login_redirect fault points: an HTML page where a REST client expected JSON."""
    return render_template("login.html")


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


@bp.get("/<table_name>_list.do")
def record_list(table_name: str) -> str:
    table = TABLES.get(table_name)
    if table is None or table_name not in LISTED_TABLES:
        abort(404)
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    store = state().store
    total = store.count(table)
    pages = max(math.ceil(total / PAGE_SIZE), 1)
    page = min(page, pages)
    rows = store.select(table, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE)
    return render_template(
        "records.html", table=table, rows=rows, total=total, page=page, pages=pages, page_size=PAGE_SIZE
    )
