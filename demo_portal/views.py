"""The demo portal's pages: home and Settings > General (the plugin adds its Integrations tab beside it)."""

from __future__ import annotations

from flask import Blueprint, g, redirect, render_template, request, url_for
from sqlalchemy import func, select

from itam_admin.db import db

bp = Blueprint("portal", __name__)


def host_settings_tabs() -> list[dict]:
    return [{"id": "general", "label": "General", "url": url_for("portal.settings_general")}]


def layout_context() -> dict:
    user = g.get("current_user")
    return {
        "current_user": user,
        "current_tenant": user.tenant if user else None,
        "host_settings_tabs": host_settings_tabs,
    }


def _login_required():
    if g.get("current_user") is None:
        return redirect(url_for("portal_auth.login", next=request.path))
    return None


@bp.route("/favicon.ico", endpoint="favicon")
def favicon():
    """Browsers ask for /favicon.ico where a page names no icon (a CSV, the JSON status): the layout's icon."""
    return redirect(url_for("static", filename="favicon.svg"), 301)


@bp.route("/", endpoint="home")
def home():
    if (response := _login_required()) is not None:
        return response
    from itam_admin.inventory.models import Computer, Contract, InstalledApplication

    tenant = g.current_user.tenant.slug

    def count(model) -> int:
        return db.session.scalar(select(func.count()).select_from(model).where(model.tenant_id == tenant)) or 0

    counts = {"computers": count(Computer), "installs": count(InstalledApplication), "contracts": count(Contract)}
    return render_template("portal/home.html", counts=counts)


@bp.route("/settings/general", endpoint="settings_general")
def settings_general():
    if (response := _login_required()) is not None:
        return response
    return render_template("portal/settings_general.html", active_tab="general")
