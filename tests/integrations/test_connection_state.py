"""The connection state on the tab (SPEC 7, 9): `unchecked` after the settings change, then what each Test connection
of the stored settings saw and when, in the badge and the status JSON; a refused token says so at the top."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from itam_admin.db import db, utcnow
from itam_admin.settings.models import ConnectionState
from tests.conftest import INTEGRATIONS, csrf_token_from

STATUS = f"{INTEGRATIONS}/servicenow/status"
MASK = "********"
BADGE = re.compile(r'<span class="badge [^"]*" id="connection-badge"[^>]*>([^<]*)</span>')


@pytest.fixture
def app_env(app_env):
    app_env["ITAM_SERVICENOW_ALLOW_INSECURE"] = "1"
    return app_env


def badge(page: str) -> str:
    match = BADGE.search(page)
    assert match, "the ServiceNow section has no connection badge"
    return match.group(1).strip()


def post_form(client, sandbox, action: str, token: str) -> str:
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    data = {
        "instance_url": sandbox.url,
        "username": "admin",
        "token": token,
        "export_data": ["contracts"],
        "csrf_token": csrf_token_from(page),
    }
    return client.post(f"{INTEGRATIONS}/servicenow{action}", data=data, follow_redirects=True).get_data(as_text=True)


def connection(client) -> dict:
    return client.get(STATUS).get_json()["connection"]


def test_saved_settings_are_not_checked_yet_until_a_test_connection_of_them(client, auth, sandbox):
    """Issue #14: saving a garbage token showed a green "Connected" badge. Saving checks nothing, so the badge and
    the status JSON say "unchecked" until a Test connection (or a run) tries the stored settings."""
    auth.login()
    post_form(client, sandbox, "", "not-a-token-at-all")

    page = client.get(INTEGRATIONS).get_data(as_text=True)
    assert badge(page) == "Not checked yet" and "Connected" not in badge(page)
    assert connection(client) == {"state": "unchecked", "checked_at": None, "message": None, "needs_new_token": False}


def test_a_test_of_the_stored_settings_sets_the_state_and_the_badge_says_when(app, client, auth, sandbox):
    auth.login()
    post_form(client, sandbox, "", sandbox.generate_refresh_token("admin", "admin"))

    post_form(client, sandbox, "/test", MASK)  # the stored token, as the form shows it

    state = connection(client)
    assert state["state"] == "ok" and state["checked_at"] and "Connected to ServiceNow" in state["message"]
    assert badge(client.get(INTEGRATIONS).get_data(as_text=True)) == "Connected, checked just now"
    with app.app_context():
        db.session.execute(update(ConnectionState).values(checked_at=utcnow() - timedelta(hours=2, minutes=5)))
        db.session.commit()
    assert badge(client.get(INTEGRATIONS).get_data(as_text=True)) == "Connected, checked 2 h ago"


def test_a_refused_stored_token_says_so_at_the_top_until_the_settings_are_saved(client, auth, sandbox):
    """ServiceNow refuses a bad refresh token with 401 access_denied (SERVICENOW-FACTS, OAuth): the tenant then needs
    a new token, and the top of the tab says what to do."""
    auth.login()
    post_form(client, sandbox, "", "garbage-token-pasted-by-mistake")

    tested = post_form(client, sandbox, "/test", MASK)

    assert "Connection failed." in tested
    state = connection(client)
    assert state["state"] == "failed" and state["needs_new_token"] is True
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    assert badge(page).startswith("Token refused on ")
    assert page.index('id="needs-new-token"') < page.index('id="servicenow-section"')
    assert "ServiceNow needs a new token." in page and "weekly exports are skipped" in page

    post_form(client, sandbox, "", sandbox.generate_refresh_token("admin", "admin"))

    page = client.get(INTEGRATIONS).get_data(as_text=True)
    assert 'id="needs-new-token"' not in page and badge(page) == "Not checked yet"
    assert connection(client)["needs_new_token"] is False


def test_a_test_of_values_not_saved_leaves_the_stored_settings_state_alone(client, auth, sandbox):
    """A test of a typed token says nothing of the stored one: the badge keeps what was seen of the saved settings."""
    auth.login()
    post_form(client, sandbox, "", sandbox.generate_refresh_token("admin", "admin"))
    post_form(client, sandbox, "/test", MASK)
    before = connection(client)

    tested = post_form(client, sandbox, "/test", "a-typed-token-that-is-wrong")

    assert "Connection failed." in tested
    assert connection(client) == before and before["state"] == "ok"
