"""Who may see and change the Integrations tab: permission, tenant and CSRF checks through HTTP."""

from __future__ import annotations

from sqlalchemy import select

from itam_admin.db import db
from itam_admin.settings.models import ComplianceTenantSetting
from itam_admin.settings.store import load_settings
from tests.conftest import INTEGRATIONS, csrf_token_from

VALID = {
    "instance_url": "https://acme.service-now.com",
    "username": "admin",
    "token": "refresh-token-of-acme-0123456789",
    "export_data": ["hardware_inventory", "contracts"],
}


def save(client, csrf, **overrides):
    data = {**VALID, **overrides, "csrf_token": csrf}
    return client.post(f"{INTEGRATIONS}/servicenow", data=data)


def test_tenant_admin_sees_the_integrations_tab(client, auth):
    auth.login("admin@acme.example")
    page = client.get("/settings/general").get_data(as_text=True)
    assert f'href="{INTEGRATIONS}"' in page
    response = client.get(INTEGRATIONS)
    assert response.status_code == 200
    assert "ServiceNow" in response.get_data(as_text=True)


def test_user_without_permission_sees_no_tab_and_gets_403(client, auth):
    auth.login("viewer@acme.example")
    page = client.get("/settings/general").get_data(as_text=True)
    assert "Integrations" not in page
    assert client.get(INTEGRATIONS).status_code == 403
    general_token = csrf_token_from(page)
    assert save(client, general_token).status_code == 403
    assert client.get(f"{INTEGRATIONS}/servicenow/status").status_code == 403


def test_anonymous_visitor_is_sent_to_login(client):
    response = client.get(INTEGRATIONS)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
    assert client.post(f"{INTEGRATIONS}/servicenow", data=VALID).status_code in (400, 401)


def test_post_without_csrf_token_is_refused_and_nothing_is_stored(app, client, auth):
    auth.login("admin@acme.example")
    response = client.post(f"{INTEGRATIONS}/servicenow", data=VALID)
    assert response.status_code == 400
    with app.app_context():
        assert load_settings("acme").instance_url == ""


def test_another_tenants_admin_never_reads_or_changes_acme_settings(app, client, auth, integrations_page):
    auth.login("admin@acme.example")
    _, token = integrations_page()
    assert save(client, token).status_code == 302
    auth.logout()

    auth.login("admin@globex.example")
    response, token = integrations_page()
    html = response.get_data(as_text=True)
    assert "acme.service-now.com" not in html
    # Ids an attacker might add to the request are ignored: the tenant comes from the login.
    for extra in ({"tenant_id": "acme"}, {"tenant": "acme"}):
        response = client.post(
            f"{INTEGRATIONS}/servicenow?tenant_id=acme",
            data={**VALID, **extra, "instance_url": "https://globex.service-now.com", "csrf_token": token},
        )
        assert response.status_code == 302
    with app.app_context():
        assert load_settings("acme").instance_url == "https://acme.service-now.com"
        assert load_settings("globex").instance_url == "https://globex.service-now.com"
        tenants = set(db.session.scalars(select(ComplianceTenantSetting.tenant_id)))
    assert tenants == {"acme", "globex"}


def test_pages_send_a_strict_content_security_policy(client, auth):
    auth.login()
    response = client.get(INTEGRATIONS)
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    html = response.get_data(as_text=True)
    assert "<script>" not in html and " style=" not in html and "<style" not in html
