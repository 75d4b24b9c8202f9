"""The OAuth wire endpoints: `POST /oauth_token.do` (password and refresh_token grants) and
`POST /oauth_revoke_token.do`; form-encoded only. Never echoes a secret or a token it was sent back in an error."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from servicenow_sandbox import errors
from servicenow_sandbox.accounts import ClientRefused, Grant, GrantRefused
from servicenow_sandbox.state import SandboxState

bp = Blueprint("sandbox_oauth", __name__)
FORM_TYPE = "application/x-www-form-urlencoded"


def state() -> SandboxState:
    return current_app.extensions["itam_sandbox"]


def _client_credentials() -> tuple[str, str]:
    """From the form body, or from HTTP Basic auth as RFC 6749 clients (e.g. requests-oauthlib) send them."""
    client_id = request.form.get("client_id", "")
    client_secret = request.form.get("client_secret", "")
    auth = request.authorization
    if auth is not None and auth.type == "basic" and not client_secret:
        client_id, client_secret = auth.username or "", auth.password or ""
    return client_id, client_secret


def _grant_body(grant: Grant) -> Response:
    return errors.json_response(
        {
            "access_token": grant.access_token,
            "refresh_token": grant.refresh_token,
            "scope": "useraccount",
            "token_type": "Bearer",
            "expires_in": grant.expires_in,
        },
        200,
        {"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


@bp.post("/oauth_token.do")
def token() -> Response:
    if request.mimetype != FORM_TYPE:
        return errors.oauth_error(400, "invalid_request", f"The token request must be {FORM_TYPE}")
    grant_type = request.form.get("grant_type", "")
    client_id, client_secret = _client_credentials()
    accounts = state().accounts
    try:
        if grant_type == "password":
            grant = accounts.grant_password(
                client_id, client_secret, request.form.get("username", ""), request.form.get("password", "")
            )
        elif grant_type == "refresh_token":
            grant = accounts.grant_refresh(client_id, client_secret, request.form.get("refresh_token", ""))
        else:
            return errors.oauth_error(400, "unsupported_grant_type", "Only password and refresh_token are supported")
    except ClientRefused:
        return errors.client_refused(state().settings.client_error_style)
    except GrantRefused:
        return errors.grant_refused()
    return _grant_body(grant)


@bp.post("/oauth_revoke_token.do")
def revoke() -> Response:
    if request.mimetype != FORM_TYPE:
        return errors.oauth_error(400, "invalid_request", f"The revoke request must be {FORM_TYPE}")
    token_value = request.form.get("token", "")
    if not token_value:
        return errors.oauth_error(400, "invalid_request", "token is required")
    state().accounts.revoke(token=token_value)
    return errors.json_response({}, 200)
