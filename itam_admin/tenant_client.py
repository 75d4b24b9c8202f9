"""Builds a tenant's ServiceNow client from its stored settings and the operator's configuration.

The one place where decrypted secrets meet the client; it never logs them or passes them anywhere else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from flask import Flask, current_app

from itam_admin.plugin import current_plugin
from itam_admin.servicenow.client import ServiceNowClient
from itam_admin.servicenow.oauth import Credentials, TokenManager
from itam_admin.settings.store import load_secrets, load_settings, replace_token
from itam_admin.settings.values import Secrets, ServiceNowSettings, oauth_client

_managers: dict[int, TokenManager] = {}
_managers_guard = threading.Lock()


def _save_rotated_token(app: Flask):
    def save(tenant_id: str, new_token: str) -> None:
        # May be called from an exporter thread: give it its own app context and session.
        with app.app_context():
            replace_token(tenant_id, new_token)

    return save


def _new_token_manager(redis, on_rotated: Callable[[str, str], None] | None) -> TokenManager:
    plugin = current_plugin()
    return TokenManager(
        redis,
        plugin.crypto,
        timeout=plugin.config.request_timeout,
        allow_insecure=plugin.config.allow_insecure,
        on_refresh_token_rotated=on_rotated,
        request_deadline=plugin.config.request_deadline,
        max_response_bytes=plugin.config.max_response_bytes,
    )


def token_manager() -> TokenManager:
    """The app's shared TokenManager (Redis-backed, so workers share tokens and refresh one at a time); a refresh
    token ServiceNow rotates is saved at once."""
    app = current_app._get_current_object()
    with _managers_guard:
        if id(app) not in _managers:
            _managers[id(app)] = _new_token_manager(current_plugin().redis, _save_rotated_token(app))
        return _managers[id(app)]


def trial_token_manager(on_rotated: Callable[[str, str], None] | None = None) -> TokenManager:
    """A TokenManager for one Test connection: its tokens live in memory for that test only and a refresh token
    ServiceNow rotates is never saved (`on_rotated` may only take note), so a test writes nothing and never replaces
    the tokens that exports of the stored settings use."""
    return _new_token_manager(None, on_rotated)


def credentials(settings: ServiceNowSettings, secrets: Secrets) -> Credentials:
    config = current_plugin().config
    client_id, client_secret, custom = oauth_client(
        settings.use_custom_credentials,
        secrets.client_id,
        secrets.client_secret,
        config.default_client_id,
        config.default_client_secret,
    )
    return Credentials(
        instance_url=settings.instance_url,
        username=settings.username,
        refresh_token=secrets.token,
        client_id=client_id,
        client_secret=client_secret,
        custom=custom,
    )


def client_for(
    tenant_id: str,
    creds: Credentials | None = None,
    tokens: TokenManager | None = None,
    *,
    deadline_seconds: float | None = None,
) -> ServiceNowClient:
    """A client for the tenant's stored settings (or the given credentials, for Test connection). The client checks
    the Instance URL again against the operator's host rule (ServiceNowError INVALID_INSTANCE_URL, nothing sent);
    `deadline_seconds` bounds each of its calls, retries included (Test connection passes a short one)."""
    config = current_plugin().config
    if creds is None:
        creds = credentials(load_settings(tenant_id), load_secrets(tenant_id))
    return ServiceNowClient(
        tenant_id,
        creds,
        tokens or token_manager(),
        timeout=config.request_timeout,
        allow_insecure=config.allow_insecure,
        max_retries=config.max_retries,
        max_wait_seconds=config.max_wait_seconds,
        request_deadline=config.request_deadline,
        deadline_seconds=deadline_seconds,
        max_response_bytes=config.max_response_bytes,
        allowed_hosts=config.allowed_hosts,
    )
