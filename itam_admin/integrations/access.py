"""Permission and tenant checks for every route of the tab: the tenant always comes from the identity, never
from the request."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from urllib.parse import urlsplit

from flask import abort, redirect, render_template, request

from itam_admin.identity import Identity
from itam_admin.plugin import current_plugin


def manager_required(view: Callable) -> Callable:
    """Call view(identity, ...) for a user with integrations.manage; 401/redirect for nobody, 403 for others."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        plugin = current_plugin()
        identity = plugin.current_identity()
        if identity is None:
            if plugin.login_url and request.method == "GET" and request.accept_mimetypes.best != "application/json":
                return redirect(f"{plugin.login_url}?next={request.path}")
            abort(401)
        if not identity.can_manage_integrations:
            return forbidden(identity)
        return view(identity, *args, **kwargs)

    return wrapper


def forbidden(identity: Identity):
    """403: for a browser, the plugin's own page inside the host's layout, saying why and with a way back; for a
    script (JSON), the plain 403."""
    if request.accept_mimetypes.best == "application/json" or request.path.endswith("/status"):
        abort(403)
    back_url, back_label = request.script_root + "/", "Go to the portal's start page"
    referrer = urlsplit(request.referrer or "")
    same_site = referrer.scheme in ("http", "https") and referrer.netloc == request.host
    if same_site and referrer.path and not referrer.path.startswith(request.path):
        back_url, back_label = request.referrer, "Go back to the page you came from"
    page = render_template(
        "itam_admin/forbidden.html",
        layout_template=current_plugin().layout_template,
        identity=identity,
        active_tab="integrations",
        back_url=back_url,
        back_label=back_label,
    )
    return page, 403


def visible_to(identity: Identity | None) -> bool:
    return identity is not None and identity.can_manage_integrations
