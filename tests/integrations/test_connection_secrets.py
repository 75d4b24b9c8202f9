"""Test connection keeps the stored secrets to the stored instance and writes nothing, against loopback stand-ins.

Issue #11, findings 2 and 3: with Token left masked and another Instance URL typed in, the stored refresh token and
client secret went to the typed host; a typed host answering with a new refresh_token replaced the stored one.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from itam_admin.db import db
from itam_admin.integrations.forms import MASK
from itam_admin.settings.models import SettingAudit
from itam_admin.settings.store import load_secrets
from tests.conftest import INTEGRATIONS, csrf_token_from
from tests.integrations.standin import StandIn
from tests.integrations.test_settings_form import field_errors

STORED_TOKEN = "stored-refresh-token-of-acme-42"
STORED_CLIENT_ID = "stored-custom-client-id"
STORED_CLIENT_SECRET = "stored-custom-client-secret"
SECRETS = (STORED_TOKEN, STORED_CLIENT_ID, STORED_CLIENT_SECRET, "default-client-secret")


@pytest.fixture
def app_env(app_env):
    app_env["ITAM_SERVICENOW_ALLOW_INSECURE"] = "1"  # loopback stand-ins over http
    return app_env


@pytest.fixture
def saved_instance():
    with StandIn() as server:
        yield server


@pytest.fixture
def typed_instance():
    with StandIn(rotate_to="rotated-by-the-typed-host") as server:
        yield server


def post(client, path: str, **fields):
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    data = {"username": "admin", "export_data": ["contracts"], "csrf_token": csrf_token_from(page), **fields}
    return client.post(f"{INTEGRATIONS}/servicenow{path}", data=data)


def save(client, url: str, **fields):
    response = post(client, "", instance_url=url, token=STORED_TOKEN, **fields)
    assert response.status_code == 302, response.get_data(as_text=True)


def test_connection(client, url: str, **fields):
    """Test connection as the browser does it: the result shows on the tab the POST redirects to."""
    response = post(client, "/test", instance_url=url, **fields)
    return client.get(response.location) if response.status_code == 302 else response


test_connection.__test__ = False  # a helper, not a test


def stored_state(app) -> tuple[str, int]:
    with app.app_context():
        token = load_secrets("acme").token
        audits = db.session.scalar(select(func.count()).select_from(SettingAudit))
    return token, audits


def test_masked_token_is_not_sent_to_an_unsaved_instance_url(client, auth, saved_instance, typed_instance):
    auth.login()
    save(client, saved_instance.url)

    for masked in (MASK, ""):
        response = test_connection(client, typed_instance.url, token=masked)
        assert response.status_code == 400
        html = response.get_data(as_text=True)
        assert "Paste the token again to test a different instance" in " ".join(field_errors(html, "token"))
        assert "Connection works." not in html
    assert typed_instance.seen == [] and saved_instance.seen == []


def test_masked_custom_client_is_not_sent_to_an_unsaved_instance_url(client, auth, saved_instance, typed_instance):
    auth.login()
    save(
        client,
        saved_instance.url,
        use_custom_credentials="y",
        client_id=STORED_CLIENT_ID,
        client_secret=STORED_CLIENT_SECRET,
    )

    response = test_connection(
        client,
        typed_instance.url,
        token="a-token-typed-for-the-other-instance",
        use_custom_credentials="y",
        client_id=MASK,
        client_secret=MASK,
    )

    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Enter the Client ID again" in " ".join(field_errors(html, "client_id"))
    assert "Enter the Client Secret again" in " ".join(field_errors(html, "client_secret"))
    assert typed_instance.seen == [] and saved_instance.seen == []


def test_typed_secrets_go_to_the_typed_url_and_stored_ones_only_to_the_stored_url(client, auth, saved_instance):
    """The operator's default client goes to any host that passed the allowed-host rule of Instance URL (here a
    loopback host, allowed because ITAM_SERVICENOW_ALLOW_INSECURE=1); the tenant's stored secrets do not."""
    auth.login()
    save(client, saved_instance.url)

    with StandIn() as typed_instance:
        html = test_connection(client, typed_instance.url, token="typed-refresh-token").get_data(as_text=True)
    assert "Connection works." in html
    assert typed_instance.received("typed-refresh-token") and typed_instance.received("default-client")
    assert not typed_instance.received(STORED_TOKEN)

    html = test_connection(client, saved_instance.url, token=MASK).get_data(as_text=True)
    assert "Connection works." in html
    assert saved_instance.received(STORED_TOKEN)


@pytest.mark.parametrize("where", ["typed", "saved"])
def test_a_refresh_token_rotated_during_a_test_is_discarded(app, client, auth, saved_instance, typed_instance, where):
    """ServiceNow may answer a refresh_token grant with a new refresh_token (RFC 6749 section 6: "The authorization
    server MAY issue a new refresh token"); Test connection saves nothing, so it must not store it either."""
    auth.login()
    save(client, saved_instance.url)
    before = stored_state(app)
    assert before[0] == STORED_TOKEN

    if where == "typed":
        html = test_connection(client, typed_instance.url, token="typed-refresh-token").get_data(as_text=True)
    else:
        saved_instance._server.rotate_to = "rotated-by-the-saved-host"
        html = test_connection(client, saved_instance.url, token=MASK).get_data(as_text=True)

    assert stored_state(app) == before  # same token, no audit record
    assert "Connection works." in html
    assert "new refresh token" in html and "not saved" in html
    for secret in (*SECRETS, "rotated-by-the-typed-host", "rotated-by-the-saved-host"):
        assert secret not in html


def test_a_server_that_never_answers_gives_an_answer_within_the_tests_deadline(client, auth, monkeypatch):
    """Issue #11, finding 6: a Test connection against a server that never answered held a web worker for minutes."""
    import time

    from itam_admin.integrations import connection_check

    monkeypatch.setattr(connection_check, "TEST_DEADLINE_SECONDS", 2.0)
    auth.login()
    with StandIn(silent=True) as silent:
        start = time.monotonic()
        html = test_connection(client, silent.url, token="typed-refresh-token").get_data(as_text=True)
        elapsed = time.monotonic() - start
    assert elapsed < 6
    assert "Connection failed." in html and "did not answer in time" in html
