"""Test connection against the sandbox over HTTP: success with a token from its page, and each clear failure."""

from __future__ import annotations

import pytest

from itam_admin.settings.store import load_settings
from tests.conftest import INTEGRATIONS, csrf_token_from, password_grant_refresh_token


@pytest.fixture
def app_env(app_env):
    app_env["ITAM_SERVICENOW_ALLOW_INSECURE"] = "1"
    return app_env


@pytest.fixture
def sandbox(sandbox):
    sandbox.add_client("tenant-own-client", "tenant-own-secret")
    return sandbox


def try_connection(client, sandbox, token, **extra):
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    data = {
        "instance_url": sandbox.url,
        "username": "admin",
        "token": token,
        "export_data": ["contracts"],
        "csrf_token": csrf_token_from(page),
        **extra,
    }
    response = client.post(f"{INTEGRATIONS}/servicenow/test", data=data, follow_redirects=True)
    return response.get_data(as_text=True)


def test_succeeds_with_a_token_from_the_sandbox_and_saves_nothing(app, client, auth, sandbox):
    auth.login()
    token = sandbox.generate_refresh_token("admin", "admin")
    html = try_connection(client, sandbox, token)
    assert "Connection works." in html and "as admin" in html and "valid until" in html
    assert token not in html
    with app.app_context():
        assert load_settings("acme").instance_url == ""


def test_fails_clearly_after_the_token_is_revoked(client, auth, sandbox):
    auth.login()
    token = sandbox.generate_refresh_token("admin", "admin")
    sandbox.revoke_tokens(everything=True)
    html = try_connection(client, sandbox, token)
    assert "Connection failed." in html and "Generate a new token in ServiceNow and paste it in Token" in html


def test_fails_clearly_with_a_wrong_client_secret(client, auth, sandbox):
    auth.login()
    token = sandbox.generate_refresh_token("admin", "admin", client_id="tenant-own-client")
    html = try_connection(
        client, sandbox, token, use_custom_credentials="y", client_id="tenant-own-client", client_secret="wrong"
    )
    assert "Connection failed." in html and "Client ID and Client Secret" in html
    html = try_connection(
        client,
        sandbox,
        token,
        use_custom_credentials="y",
        client_id="tenant-own-client",
        client_secret="tenant-own-secret",
    )
    assert "Connection works." in html


def test_a_least_privileged_user_with_the_integration_role_needs_no_admin_role(client, auth, sandbox):
    """The update set's role u_itam_integration (containing import_transformer, the least role that loads through
    the Import Set API: practitioner and Harness docs in the research notes) is enough; the admin role is not needed.
    Whether the roles suffice is the app check's finding now (tests/integrations/test_app_check_action.py), not a
    refusal of the connection."""
    sandbox.state.accounts.add_user("itam.export", "integration-pw", roles=["u_itam_integration"], name="ITAM Export")
    auth.login()
    token = password_grant_refresh_token(sandbox.url, "itam.export", "integration-pw")
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    html = client.post(
        f"{INTEGRATIONS}/servicenow/test",
        data={
            "instance_url": sandbox.url,
            "username": "itam.export",
            "token": token,
            "export_data": ["contracts"],
            "csrf_token": csrf_token_from(page),
        },
        follow_redirects=True,
    ).get_data(as_text=True)
    assert "Connection works." in html and "as itam.export (ITAM Export)" in html
    assert "The ServiceNow app is installed for Contracts." in html
    assert "admin role" not in html.split('id="test-result"')[1]
