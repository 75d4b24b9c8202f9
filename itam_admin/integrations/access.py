"""Permission and tenant checks for every route of the tab: the tenant always comes from the identity, never
from the request."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from flask import abort, redirect, request

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
            abort(403)
        return view(identity, *args, **kwargs)

    return wrapper


def visible_to(identity: Identity | None) -> bool:
    return identity is not None and identity.can_manage_integrations
