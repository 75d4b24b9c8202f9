"""The demo portal's login: hashed passwords, a session kept on the server behind a signed cookie, throttled failed
logins, and the identity handed to the plugin. Never logs an email, a password or a session token."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Flask,
    current_app,
    g,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from sqlalchemy import delete, select
from werkzeug.security import check_password_hash

from demo_portal.models import PortalSession, User
from demo_portal.throttle import LoginThrottle, wait_message
from itam_admin.db import db, utcnow
from itam_admin.identity import Identity

bp = Blueprint("portal_auth", __name__)
# A hash to check against when the email is unknown, so both cases take the same time.
_NO_USER_HASH = "scrypt:32768:8:1$ZtLcBv1yKz8pE0qN$" + "0" * 128
# A session ends at logout, or this long after login at the latest.
SESSION_LIFETIME = timedelta(hours=12)
THROTTLE = "portal_login_throttle"


class SessionCookie(SecureCookieSessionInterface):
    """Flask's signed session cookie (HttpOnly, SameSite=Lax), marked Secure whenever the request came over https,
    so a portal behind TLS never lets the browser send it over plain http."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return super().get_cookie_secure(app) or (has_request_context() and request.is_secure)


def init_app(app: Flask) -> None:
    from itam_admin.plugin import current_plugin

    app.session_interface = SessionCookie()
    app.extensions[THROTTLE] = LoginThrottle(lambda: current_plugin().redis)
    app.register_blueprint(bp)
    app.before_request(load_user)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_user() -> None:
    g.current_user = None
    token = session.get("sid")
    if not isinstance(token, str):
        return
    row = db.session.get(PortalSession, _digest(token))
    if row is None or row.created_at < utcnow() - SESSION_LIFETIME:
        return
    g.current_user = row.user


def current_identity() -> Identity | None:
    user = g.get("current_user")
    if user is None:
        return None
    return Identity(
        user_id=str(user.id),
        display_name=user.name,
        tenant_id=user.tenant.slug,
        permissions=user.permission_set,
    )


def _safe_next(target: str | None) -> str:
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("portal.home")


def _start_session(user: User) -> None:
    """A new session token for a fresh cookie (never the one the browser came with); the user's expired sessions go."""
    now = utcnow()
    db.session.execute(
        delete(PortalSession).where(PortalSession.user_id == user.id, PortalSession.created_at < now - SESSION_LIFETIME)
    )
    token = secrets.token_urlsafe(32)
    db.session.add(PortalSession(id=_digest(token), user_id=user.id, created_at=now))
    db.session.commit()
    session.clear()
    session["sid"] = token


def _login_page(status: int, next_url: str | None, email: str = "", error: str | None = None, headers=None):
    page = render_template(
        "portal/login.html", next=next_url, email=email, error=error, demo=current_app.config["ITAM_DEMO"]
    )
    return page, status, headers or {}


@bp.route("/login", methods=["GET", "POST"], endpoint="login")
def login():
    next_url = request.args.get("next")
    if request.method == "GET":
        return _login_page(200, next_url)
    email = (request.form.get("email") or "").strip().lower()
    password = request.form.get("password") or ""
    address = request.remote_addr or "unknown"
    throttle: LoginThrottle = current_app.extensions[THROTTLE]
    wait = throttle.wait_seconds(email, address)
    if wait:
        return _login_page(429, next_url, email, wait_message(wait), {"Retry-After": str(wait)})
    user = db.session.scalar(select(User).where(User.email == email)) if email else None
    valid = check_password_hash(user.password_hash if user else _NO_USER_HASH, password)
    if user is None or not valid:
        throttle.failed(email, address)
        return _login_page(401, next_url, email, "The email or password is not right.")
    throttle.succeeded(email, address)
    _start_session(user)
    return redirect(_safe_next(next_url))


@bp.route("/logout", methods=["POST"], endpoint="logout")
def logout():
    token = session.get("sid")
    if isinstance(token, str):
        db.session.execute(delete(PortalSession).where(PortalSession.id == _digest(token)))
        db.session.commit()
    session.clear()
    return redirect(url_for("portal_auth.login"))
