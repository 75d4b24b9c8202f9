"""What a tenant admin reads on the Integrations tab after each click (issue #16): Test connection and Export
answer with Post/Redirect/Get, one message per situation, a queued run that shows its totals, and the "Nothing was
saved" line only when the tested values differ from the stored ones."""

from __future__ import annotations

import re

import pytest

from itam_admin.db import db
from itam_admin.exports import runs
from itam_admin.exports.models import ExportRun
from itam_admin.identity import Identity
from itam_admin.settings.store import save_settings
from itam_admin.settings.values import SettingsChange
from tests.conftest import INTEGRATIONS, csrf_token_from
from tests.integrations.standin import StandIn

ADMIN = Identity("1", "Alice Admin", "acme", frozenset({"integrations.manage"}))
STORED_TOKEN = "stored-refresh-token-0123456789"


@pytest.fixture
def app_env(app_env):
    app_env["ITAM_SERVICENOW_ALLOW_INSECURE"] = "1"
    return app_env


@pytest.fixture
def instance():
    with StandIn() as server:
        yield server


def store(app, url: str, types: tuple[str, ...] = ()) -> None:
    change = SettingsChange(
        instance_url=url, username="admin", use_custom_credentials=False, export_data_types=types, token=STORED_TOKEN
    )
    with app.app_context():
        save_settings("acme", change, ADMIN)


def post_test(client, **fields):
    csrf = csrf_token_from(client.get(INTEGRATIONS).get_data(as_text=True))
    data = {"username": "admin", "csrf_token": csrf, **fields}
    return client.post(f"{INTEGRATIONS}/servicenow/test", data=data)


def token_requests(server) -> int:
    return sum(1 for seen in server.seen if seen.path == "/oauth_token.do")


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


def test_test_connection_redirects_to_the_tab_and_a_reload_does_not_test_again(client, auth, instance):
    auth.login()
    response = post_test(client, instance_url=instance.url, token="typed-refresh-token")
    assert response.status_code == 302
    assert response.location.endswith(f"{INTEGRATIONS}#test-result")

    page = client.get(INTEGRATIONS).get_data(as_text=True)
    assert "Connection works." in page
    assert f'value="{instance.url}"' in page  # the tested (unsaved) values stay in the form
    assert "typed-refresh-token" not in page
    assert token_requests(instance) == 1

    reloaded = client.get(INTEGRATIONS).get_data(as_text=True)
    assert "Connection works." not in reloaded
    assert token_requests(instance) == 1


def test_nothing_was_saved_shows_only_when_the_tested_values_differ_from_the_stored_ones(app, client, auth, instance):
    store(app, instance.url)
    auth.login()

    post_test(client, instance_url=instance.url, token="********")
    page = text_of(client.get(INTEGRATIONS).get_data(as_text=True))
    assert "Connection works." in page
    assert "Nothing was saved" not in page

    post_test(client, instance_url=instance.url, token="********", username="admin2")
    page = text_of(client.get(INTEGRATIONS).get_data(as_text=True))
    assert "Nothing was saved. Click Save to keep these settings." in page

    post_test(client, instance_url=instance.url, token="a-new-refresh-token")
    page = text_of(client.get(INTEGRATIONS).get_data(as_text=True))
    assert "Nothing was saved. To keep these settings, paste the Token again" in page
    assert "a-new-refresh-token" not in page


def click_export(client, csrf: str):
    return client.post(f"{INTEGRATIONS}/servicenow/export", data={"csrf_token": csrf})


@pytest.fixture
def ready_to_export(app, instance):
    from demo_portal.demo_data import generate_inventory

    with app.app_context():
        generate_inventory("acme", computers=7, installs=0, contracts=3)
    store(app, instance.url, types=("hardware_inventory", "contracts"))


def test_two_tabs_clicking_export_give_tab_b_one_message(client, auth, ready_to_export):
    """Both tabs loaded the page (and its CSRF token) before either clicked; B's click is refused."""
    auth.login()
    csrf = csrf_token_from(client.get(INTEGRATIONS).get_data(as_text=True))
    assert click_export(client, csrf).status_code == 302  # tab A
    response = click_export(client, csrf)  # tab B, before A's page came back
    assert response.status_code == 302 and response.location.endswith("#export-section")

    page = text_of(client.get(INTEGRATIONS).get_data(as_text=True))
    assert page.count("An export is already queued or running") == 1
    assert "Export queued" not in page
    assert "An export is already queued;" not in page  # not said a second time under the button


def test_a_queued_run_shows_its_totals_and_that_it_waits_for_a_worker(client, auth, ready_to_export):
    auth.login()
    csrf = csrf_token_from(client.get(INTEGRATIONS).get_data(as_text=True))
    click_export(client, csrf)
    page = text_of(client.get(INTEGRATIONS).get_data(as_text=True))
    assert "Export queued. Its progress shows below." in page
    assert "Queued, waiting for a worker" in page
    assert "7 records, waiting for a worker" in page and "3 records, waiting for a worker" in page
    assert "0 sent, 0 unchanged of 0" not in page
    assert "Export queued" not in text_of(client.get(INTEGRATIONS).get_data(as_text=True))  # said once


def test_a_running_run_is_called_running(app, client, auth, ready_to_export):
    auth.login()
    csrf = csrf_token_from(client.get(INTEGRATIONS).get_data(as_text=True))
    click_export(client, csrf)
    with app.app_context():
        run_id = db.session.query(ExportRun.id).scalar()
        assert runs.claim(run_id) is not None
    page = text_of(client.get(INTEGRATIONS).get_data(as_text=True))
    assert "An export is already running; wait for it to finish." in page
    assert "Running" in page and "Queued, waiting for a worker" not in page
    assert "An export is already queued" not in page
