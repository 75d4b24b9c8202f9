"""Every rule of the ServiceNow settings form, through the same POST the browser sends."""

from __future__ import annotations

import re

import pytest

from itam_admin.settings.store import load_settings
from tests.integrations.test_access import VALID, save


def field_errors(html: str, field: str) -> list[str]:
    block = re.search(rf'<div class="field[^"]*" id="{field}-field">(.*?)</div>', html, re.S)
    assert block, f"no field block for {field}"
    return re.findall(rf'<p class="error" id="{field}-error">(.*?)</p>', block.group(1), re.S)


@pytest.fixture
def admin(client, auth, integrations_page):
    auth.login("admin@acme.example")
    return integrations_page


def test_save_stores_normalised_settings_and_masks_the_token(app, client, admin):
    _, token = admin()
    response = save(client, token, instance_url="  HTTPS://Acme.Service-Now.com/  ")
    assert response.status_code == 302
    page, _ = admin()
    html = page.get_data(as_text=True)
    assert "ServiceNow settings saved." in html
    assert 'value="https://acme.service-now.com"' in html
    assert 'name="token"' in html and 'value="********"' in html
    assert VALID["token"] not in html
    with app.app_context():
        settings = load_settings("acme")
    assert settings.instance_url == "https://acme.service-now.com"
    assert settings.export_data_types == ("hardware_inventory", "contracts")
    assert settings.export_enabled


BAD_INSTANCE_URLS = [
    ("http://acme.service-now.com", "https://"),
    ("acme.service-now.com", "https://"),
    ("https://10.0.0.5", "not an IP address"),
    ("https://[::1]", "not an IP address"),
    ("https://localhost", "not a ServiceNow instance host"),
    ("https://169.254.169.254", "not an IP address"),
    ("https://admin:pw@acme.service-now.com", "user name"),
    ("https://acme.service-now.com@evil.example", "user name"),
    ("https://evil.example", "not a ServiceNow instance host"),
    ("https://acme.service-now.com.evil.example", "not a ServiceNow instance host"),
    ("https://acme.service-now.com/login.do", "without a path"),
    ("https://acme.service-now.com?x=1", "without ? or #"),
    ("https://acme.service-now.com#top", "without ? or #"),
    ("https://" + "a" * 300 + ".service-now.com", "too long"),
    ("https://äcme.service-now.com", ""),
    ('https://"><script>alert(1)</script>.service-now.com', ""),
    ("", "Enter the URL"),
]


@pytest.mark.parametrize(("url", "message"), BAD_INSTANCE_URLS)
def test_bad_instance_urls_are_refused_next_to_the_field_and_nothing_is_lost(app, client, admin, url, message):
    _, token = admin()
    assert save(client, token).status_code == 302
    response = save(client, token, instance_url=url, username="someone-else")
    if url == "https://äcme.service-now.com":
        # An internationalised host name is valid; it is stored in its ASCII (punycode) form.
        assert response.status_code == 302
        with app.app_context():
            assert (
                load_settings("acme").instance_url == "https://" + "äcme".encode("idna").decode() + ".service-now.com"
            )
        return
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    errors = field_errors(html, "instance_url")
    assert errors and message in " ".join(errors)
    assert "<script>alert(1)</script>" not in html
    assert "The settings were not saved" in html
    with app.app_context():
        settings = load_settings("acme")
    assert settings.instance_url == "https://acme.service-now.com"
    assert settings.username == "admin"
    assert settings.has_token


def test_loopback_instance_is_accepted_only_when_insecure_is_allowed(app_env, tmp_path):
    from demo_portal import create_app
    from itam_admin.integrations.forms import ServiceNowSettingsForm
    from itam_admin.settings.values import ServiceNowSettings

    app_env["ITAM_SERVICENOW_ALLOW_INSECURE"] = "1"
    application = create_app(env=app_env, instance_path=str(tmp_path / "i2"))
    with application.test_request_context(method="POST", data={**VALID, "instance_url": "http://127.0.0.1:8765"}):
        form = ServiceNowSettingsForm(
            stored=ServiceNowSettings(), allowed_hosts=("*.service-now.com",), allow_insecure=True, meta={"csrf": False}
        )
        assert form.validate(), form.errors
        assert form.change().instance_url == "http://127.0.0.1:8765"
        form = ServiceNowSettingsForm(
            stored=ServiceNowSettings(), allowed_hosts=("*.service-now.com",), allow_insecure=True, meta={"csrf": False}
        )
        form.instance_url.data = "http://169.254.169.254"
        assert not form.validate()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("username", "", "Enter the ServiceNow username"),
        ("username", "x" * 101, "too long"),
        ("username", "<b>admin</b>", "must not contain"),
        ("username", "ad\x00min", "control characters"),
        ("token", "has spaces in it", "must not contain spaces"),
        ("token", "t" * 5000, "too long"),
        ("token", "tökén", "ASCII"),
    ],
)
def test_bad_username_and_token_are_refused_next_to_the_field(app, client, admin, field, value, message):
    _, token = admin()
    assert save(client, token).status_code == 302
    response = save(client, token, **{field: value})
    assert response.status_code == 400
    assert message in " ".join(field_errors(response.get_data(as_text=True), field))
    with app.app_context():
        assert load_settings("acme").username == "admin"


def test_token_is_required_on_first_save_only(app, client, admin):
    _, token = admin()
    response = save(client, token, token="")
    assert response.status_code == 400
    assert "Paste the refresh token" in " ".join(field_errors(response.get_data(as_text=True), "token"))
    assert save(client, token).status_code == 302
    # Afterwards the mask (or an empty field) keeps the stored token.
    assert save(client, token, token="********", username="admin2").status_code == 302
    assert save(client, token, token="", username="admin2").status_code == 302
    with app.app_context():
        from itam_admin.settings.store import load_secrets

        assert load_secrets("acme").token == VALID["token"]
        assert load_settings("acme").username == "admin2"


def test_typing_a_new_token_replaces_the_stored_one(app, client, admin):
    _, token = admin()
    save(client, token)
    save(client, token, token="a-brand-new-refresh-token")
    with app.app_context():
        from itam_admin.settings.store import load_secrets

        assert load_secrets("acme").token == "a-brand-new-refresh-token"


def test_custom_credentials_are_required_when_ticked_then_masked_then_cleared_when_unticked(app, client, admin):
    _, token = admin()
    response = save(client, token, use_custom_credentials="y")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Enter the Client ID" in " ".join(field_errors(html, "client_id"))
    assert "Enter the Client Secret" in " ".join(field_errors(html, "client_secret"))

    response = save(
        client, token, use_custom_credentials="y", client_id="my-client-id", client_secret="my-client-secret"
    )
    assert response.status_code == 302
    html = admin()[0].get_data(as_text=True)
    assert "my-client-id" not in html and "my-client-secret" not in html
    assert html.count('value="********"') == 3
    with app.app_context():
        assert load_settings("acme").uses_custom_credentials

    # The masks coming back keep them.
    assert (
        save(client, token, use_custom_credentials="y", client_id="********", client_secret="********").status_code
        == 302
    )
    with app.app_context():
        assert load_settings("acme").uses_custom_credentials

    # Unticked on save: cleared, and they must be typed again to use them.
    assert save(client, token).status_code == 302
    with app.app_context():
        settings = load_settings("acme")
    assert not settings.use_custom_credentials and not settings.has_client_id and not settings.has_client_secret
    response = save(client, token, use_custom_credentials="y", client_id="********", client_secret="********")
    assert response.status_code == 400


def test_client_fields_are_ignored_when_the_box_is_unticked(app, client, admin):
    _, token = admin()
    response = save(client, token, client_id="x y z", client_secret="")
    assert response.status_code == 302
    with app.app_context():
        assert not load_settings("acme").has_client_id


def test_unknown_data_types_are_refused(app, client, admin):
    _, token = admin()
    response = save(client, token, export_data=["hardware_inventory", "passwords"])
    assert response.status_code == 400
    assert 'id="export_data-error"' in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"export_data": []}, "Choose at least one data type"),
    ],
)
def test_export_button_is_disabled_with_its_reason(client, admin, overrides, reason):
    _, token = admin()
    html = admin()[0].get_data(as_text=True)
    assert re.search(r'<button[^>]*id="export-button"[^>]*disabled', html)
    assert "Save Instance URL, Username, Token to enable exports." in html
    save(client, token, **overrides)
    html = admin()[0].get_data(as_text=True)
    assert re.search(r'<button[^>]*id="export-button"[^>]*disabled', html)
    assert reason in html
    save(client, token)
    html = admin()[0].get_data(as_text=True)
    assert not re.search(r'<button[^>]*id="export-button"[^>]*disabled', html)


def test_audit_trail_records_who_changed_what_but_never_a_secret_value(app, client, admin):
    from sqlalchemy import select

    from itam_admin.db import db
    from itam_admin.settings.models import SettingAudit

    _, token = admin()
    save(client, token, use_custom_credentials="y", client_id="audit-client-id", client_secret="audit-client-secret")
    save(client, token, token="second-token-value")
    with app.app_context():
        rows = db.session.scalars(select(SettingAudit).order_by(SettingAudit.id)).all()
    names = [(row.name, row.action) for row in rows]
    assert ("Token", "set") in names and ("Token", "changed") in names and ("ClientSecret", "set") in names
    assert ("ClientId", "cleared") in names and ("ClientSecret", "cleared") in names
    assert all(row.user_name == "Alice Admin" for row in rows)
    dumped = " ".join(str(row.value) for row in rows)
    for secret in (VALID["token"], "second-token-value", "audit-client-id", "audit-client-secret"):
        assert secret not in dumped


def test_a_typed_secret_is_never_echoed_back_after_a_failed_save(client, admin):
    _, token = admin()
    response = save(
        client,
        token,
        instance_url="http://bad.example",
        token="typed-refresh-token-value",
        use_custom_credentials="y",
        client_id="typed-client-id",
        client_secret="typed-client-secret",
    )
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    for secret in ("typed-refresh-token-value", "typed-client-id", "typed-client-secret"):
        assert secret not in html
