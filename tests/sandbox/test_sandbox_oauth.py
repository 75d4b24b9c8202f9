"""The sandbox's token endpoint answers like ServiceNow: grants, lifetimes, refusals, revocation."""

from __future__ import annotations

import requests

from servicenow_sandbox import SandboxServer
from servicenow_sandbox.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

REFUSED = {"error": "server_error", "error_description": "access_denied"}


def test_password_grant_answers_servicenows_token_body(wire):
    response = wire.password_grant("admin", "admin")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "refresh_token", "scope", "token_type", "expires_in"}
    assert body["scope"] == "useraccount"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1799
    assert len(body["refresh_token"]) > 60 and body["access_token"] != body["refresh_token"]
    assert response.headers["Cache-Control"] == "no-store"


def test_client_credentials_may_come_by_http_basic_auth(wire):
    response = wire.session.post(
        f"{wire.url}/oauth_token.do",
        data={"grant_type": "password", "username": "admin", "password": "admin"},
        auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET),
    )

    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"


def test_refresh_grant_returns_the_same_refresh_token_and_a_new_access_token(wire):
    first = wire.password_grant().json()

    response = wire.token_request(grant_type="refresh_token", refresh_token=first["refresh_token"])

    assert response.status_code == 200
    body = response.json()
    assert body["refresh_token"] == first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    assert wire.get("/api/now/table/sys_user", headers={"Authorization": f"Bearer {body['access_token']}"}).ok


def test_refresh_grant_rotates_when_asked_to_and_the_old_token_is_then_refused(sandbox, wire):
    sandbox.set_token_lifetimes(rotate=True)
    old = wire.password_grant().json()["refresh_token"]

    rotated = wire.token_request(grant_type="refresh_token", refresh_token=old).json()["refresh_token"]

    assert rotated != old
    assert wire.token_request(grant_type="refresh_token", refresh_token=rotated).status_code == 200
    again = wire.token_request(grant_type="refresh_token", refresh_token=old)
    assert (again.status_code, again.json()) == (401, REFUSED)


def test_wrong_password_is_refused_with_servicenows_body(wire):
    response = wire.password_grant("admin", "wrong")

    assert response.status_code == 401
    assert response.json() == REFUSED


def test_unknown_refresh_token_is_refused(wire):
    response = wire.token_request(grant_type="refresh_token", refresh_token="not-a-token")

    assert (response.status_code, response.json()) == (401, REFUSED)


def test_expired_refresh_token_is_refused(sandbox, wire):
    refresh = sandbox.generate_refresh_token()
    assert sandbox.expire_tokens(kind="refresh") == 1

    response = wire.token_request(grant_type="refresh_token", refresh_token=refresh)

    assert (response.status_code, response.json()) == (401, REFUSED)


def test_refresh_token_lifetime_is_settable(sandbox, wire):
    sandbox.set_token_lifetimes(access_seconds=60, refresh_seconds=0.001)
    refresh = wire.password_grant().json()["refresh_token"]

    response = wire.token_request(grant_type="refresh_token", refresh_token=refresh)

    assert (response.status_code, response.json()) == (401, REFUSED)
    assert wire.password_grant().json()["expires_in"] == 59


def test_refresh_token_of_another_client_is_refused(sandbox, wire):
    sandbox.add_client("other-client", "other-secret")
    refresh = sandbox.generate_refresh_token(client_id="other-client")

    refused = wire.token_request(grant_type="refresh_token", refresh_token=refresh)
    accepted = wire.token_request(
        grant_type="refresh_token", refresh_token=refresh, client_id="other-client", client_secret="other-secret"
    )

    assert (refused.status_code, refused.json()) == (401, REFUSED)
    assert accepted.status_code == 200


def test_wrong_client_secret_is_refused_like_servicenow_does(wire):
    response = wire.password_grant(client_secret="wrong")

    assert (response.status_code, response.json()) == (401, REFUSED)


def test_wrong_client_can_answer_rfc_invalid_client_when_configured():
    with SandboxServer(client_error_style="rfc") as sandbox:
        response = requests.post(
            f"{sandbox.url}/oauth_token.do",
            data={"grant_type": "password", "username": "admin", "password": "admin", "client_id": "nobody"},
        )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_json_body_is_refused_with_400(wire):
    response = wire.session.post(
        f"{wire.url}/oauth_token.do",
        json={"grant_type": "password", "username": "admin", "password": "admin", "client_id": DEMO_CLIENT_ID},
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_unsupported_grant_type_is_refused_with_400(wire):
    response = wire.token_request(grant_type="client_credentials")

    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_revoke_endpoint_revokes_a_refresh_token_and_its_access_tokens(wire):
    body = wire.password_grant().json()
    bearer = {"Authorization": f"Bearer {body['access_token']}"}

    revoked = wire.session.post(f"{wire.url}/oauth_revoke_token.do", data={"token": body["refresh_token"]})

    assert revoked.status_code == 200
    refreshed = wire.token_request(grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert (refreshed.status_code, refreshed.json()) == (401, REFUSED)
    assert wire.get("/api/now/table/sys_user", user=None, headers=bearer).status_code == 401


def test_revoking_all_tokens_of_a_user_from_python(sandbox, wire):
    admin = wire.access_token("admin")
    itil = wire.access_token("itil")

    assert sandbox.revoke_tokens(user="admin") >= 2

    assert wire.get("/api/now/table/sys_user", headers={"Authorization": f"Bearer {admin}"}).status_code == 401
    assert wire.get("/api/now/table/sys_user", headers={"Authorization": f"Bearer {itil}"}).status_code == 200


def test_a_custom_client_added_from_python_gets_tokens(sandbox, wire):
    client = sandbox.add_client("tenant-own-app")

    response = wire.password_grant(client_id="tenant-own-app", client_secret=client.client_secret)

    assert response.status_code == 200


def test_default_client_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("ITAM_SERVICENOW_CLIENT_ID", "operator-client")
    monkeypatch.setenv("ITAM_SERVICENOW_CLIENT_SECRET", "operator-secret")
    with SandboxServer() as sandbox:
        form = {"grant_type": "password", "username": "itil", "password": "itil"}
        ok = requests.post(f"{sandbox.url}/oauth_token.do", data=form, auth=("operator-client", "operator-secret"))
        demo = requests.post(f"{sandbox.url}/oauth_token.do", data=form, auth=(DEMO_CLIENT_ID, DEMO_CLIENT_SECRET))

    assert ok.status_code == 200
    assert demo.status_code == 401
