"""The demo portal's login: hashed passwords, a session cookie, and the identity handed to the plugin."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, current_app, g, redirect, render_template, request, session, url_for
from sqlalchemy import select
from werkzeug.security import check_password_hash

from itam_admin.db import db
from itam_admin.identity import Identity
from itam_admin.portal.models import User

bp = Blueprint("portal_auth", __name__)
# A hash to check against when the email is unknown, so both cases take the same time.
_NO_USER_HASH = "scrypt:32768:8:1$ZtLcBv1yKz8pE0qN$" + "0" * 128


def load_user() -> None:
    user_id = session.get("user_id")
    g.current_user = db.session.get(User, user_id) if user_id else None


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


@bp.route("/login", methods=["GET", "POST"], endpoint="login")
def login():
    next_url = request.args.get("next")
    if request.method == "GET":
        return render_template("portal/login.html", next=next_url, demo=current_app.config["ITAM_DEMO"])
    email = (request.form.get("email") or "").strip().lower()
    password = request.form.get("password") or ""
    user = db.session.scalar(select(User).where(User.email == email)) if email else None
    valid = check_password_hash(user.password_hash if user else _NO_USER_HASH, password)
    if user is None or not valid:
        return (
            render_template(
                "portal/login.html",
                next=next_url,
                email=email,
                error="The email or password is not right.",
                demo=current_app.config["ITAM_DEMO"],
            ),
            401,
        )
    session.clear()
    session["user_id"] = user.id
    return redirect(_safe_next(next_url))


@bp.route("/logout", methods=["POST"], endpoint="logout")
def logout():
    session.clear()
    return redirect(url_for("portal_auth.login"))
