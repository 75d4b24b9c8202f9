"""Username goes into a ServiceNow encoded query (Test connection looks it up in sys_user): characters that would
change that query are refused next to the field (issue #11, finding 11).

ServiceNow's "Encoded query strings" page (docs.servicenow.com, Platform user interface) joins conditions with ^,
^OR and ^NQ and has no escape for ^ inside a value, so `user_name=itil^ORuser_name=admin` finds the admin user.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from itam_admin.db import db
from itam_admin.settings.models import ComplianceTenantSetting
from tests.conftest import INTEGRATIONS, csrf_token_from
from tests.integrations.standin import StandIn
from tests.integrations.test_access import VALID
from tests.integrations.test_settings_form import field_errors

INJECTIONS = [
    ("itil^ORuser_name=admin", "must not contain ^"),
    ("itil^NQuser_name=admin", "must not contain ^"),
    ("itil\nuser_name=admin", "control characters or line breaks"),
    ("itil\u2028admin", "control characters or line breaks"),
    ("itil\u0085admin", "control characters or line breaks"),
]


@pytest.fixture
def app_env(app_env):
    app_env["ITAM_SERVICENOW_ALLOW_INSECURE"] = "1"
    return app_env


def rows(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(ComplianceTenantSetting))


@pytest.mark.parametrize(("username", "message"), INJECTIONS)
def test_save_refuses_a_username_that_changes_the_query(app, client, auth, username, message):
    auth.login()
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    response = client.post(
        f"{INTEGRATIONS}/servicenow", data={**VALID, "username": username, "csrf_token": csrf_token_from(page)}
    )
    assert response.status_code == 400
    assert message in " ".join(field_errors(response.get_data(as_text=True), "username"))
    assert rows(app) == 0


@pytest.mark.parametrize(("username", "message"), INJECTIONS[:1])
def test_test_connection_refuses_it_and_sends_nothing(app, client, auth, username, message):
    auth.login()
    with StandIn() as instance:
        page = client.get(INTEGRATIONS).get_data(as_text=True)
        response = client.post(
            f"{INTEGRATIONS}/servicenow/test",
            data={**VALID, "instance_url": instance.url, "username": username, "csrf_token": csrf_token_from(page)},
        )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert message in " ".join(field_errors(html, "username"))
    assert "Connection works." not in html and "System Administrator" not in html
    assert instance.seen == []
    assert rows(app) == 0


def test_ordinary_servicenow_user_ids_are_accepted(app, client, auth):
    """User IDs as ServiceNow's demo data has them: abel.tuter, an email address, a hyphen or an underscore."""
    auth.login()
    for username in ("abel.tuter", "first.last@example.com", "svc-itam_export"):
        page = client.get(INTEGRATIONS).get_data(as_text=True)
        response = client.post(
            f"{INTEGRATIONS}/servicenow", data={**VALID, "username": username, "csrf_token": csrf_token_from(page)}
        )
        assert response.status_code == 302, username
