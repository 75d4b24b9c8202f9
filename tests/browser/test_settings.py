"""A tenant admin sets up the ServiceNow connection in the browser: tab navigation, the accordion by keyboard, custom
credentials switching the client fields on and off, saving, masked secrets, a bad Instance URL, axe-core and CSP."""

from __future__ import annotations

import re
import secrets

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import INTEGRATIONS, assert_accessible, log_in, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.https_only]

INSTANCE_URL = "https://acme.service-now.com"
EXPECTED_TAB_ORDER = [
    "instance_url",
    "username",
    "token",
    "use_custom_credentials",
    "client_id",
    "client_secret",
    "export_data:hardware_inventory",  # the data-type registry's order, the order exports send them in
    "export_data:contracts",
    "export_data:installed_applications",
    "save-button",
]


def focused(page) -> str:
    """The focused element as `name` (inputs; `name:value` for checkbox groups) or its id."""
    return page.evaluate(
        """() => {
             const el = document.activeElement;
             if (!el) return '';
             if (el.name === 'export_data') return 'export_data:' + el.value;
             return el.name || el.id || el.tagName.toLowerCase();
           }"""
    )


def tab_order(page, start_selector: str, stop: str, limit: int = 40) -> list[str]:
    """Focus start_selector, then press Tab until `stop` has focus; the names focused on the way."""
    page.focus(start_selector)
    seen = [focused(page)]
    for _ in range(limit):
        if seen[-1] == stop:
            break
        page.keyboard.press("Tab")
        seen.append(focused(page))
    return seen


def test_tenant_admin_saves_servicenow_settings(live_portal, page, page_log, app):
    token = "rt-" + secrets.token_urlsafe(40)
    client_id = "cid-" + secrets.token_hex(12)
    client_secret = "csec-" + secrets.token_urlsafe(24)

    log_in(page, live_portal, "admin@acme.example")

    # Settings > General, then the Integrations tab, both by clicking links.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(page).to_have_url(re.compile(r"/settings/general$"))
    tabs = page.get_by_role("navigation", name="Settings > General")
    expect(tabs.get_by_role("link", name="Integrations")).to_be_visible()
    screenshot(page, "settings-01-general")
    tabs.get_by_role("link", name="Integrations").click()
    expect(page).to_have_url(re.compile(re.escape(INTEGRATIONS) + "$"))
    expect(tabs.get_by_role("link", name="Integrations")).to_have_attribute("aria-current", "page")

    # The ServiceNow accordion opens (and closes) with the keyboard.
    section = page.locator("details#servicenow-section")
    summary = section.locator("summary")
    expect(summary).to_contain_text("ServiceNow")
    if section.evaluate("el => el.open"):
        summary.focus()
        page.keyboard.press("Enter")
        expect(section).not_to_have_attribute("open", "")
        expect(page.locator("#servicenow-form")).to_be_hidden()
    summary.focus()
    page.keyboard.press("Enter")
    expect(section).to_have_attribute("open", "")
    form = page.locator("#servicenow-form")
    expect(form).to_be_visible()
    # Nothing saved yet: exporting is not possible, and the page says why.
    expect(page.locator("#export-button")).to_be_disabled()
    expect(page.locator("#export-disabled-reason")).not_to_be_empty()
    screenshot(page, "settings-02-integrations-empty")
    assert_accessible(page, "the empty Integrations tab")

    # Connection fields.
    page.get_by_label("Instance URL").fill(INSTANCE_URL)
    page.get_by_label("Username").fill("itam.integration")
    page.get_by_label("Token", exact=True).fill(token)

    # Custom credentials switch the Client ID / Client Secret fields on and off.
    custom = page.get_by_label("Use custom credentials")
    client_id_input = form.locator("input[name=client_id]")
    client_secret_input = form.locator("input[name=client_secret]")
    expect(custom).not_to_be_checked()
    expect(client_id_input).to_be_disabled()
    expect(client_secret_input).to_be_disabled()
    custom.check()
    expect(client_id_input).to_be_enabled()
    expect(client_secret_input).to_be_enabled()
    custom.uncheck()
    expect(client_id_input).to_be_disabled()
    expect(client_secret_input).to_be_disabled()
    custom.focus()
    page.keyboard.press("Space")  # the keyboard works too
    expect(custom).to_be_checked()
    expect(client_id_input).to_be_enabled()
    expect(client_secret_input).to_be_enabled()
    client_id_input.fill(client_id)
    client_secret_input.fill(client_secret)

    # Data to export: hardware inventory and contracts, not installed applications.
    page.get_by_label("Hardware inventory").check()
    page.get_by_label("Installed applications").uncheck()
    page.get_by_label("Contracts").check()

    # Keyboard alone reaches every field and Save, in reading order.
    order = tab_order(page, "input[name=instance_url]", "save-button")
    positions = [order.index(name) if name in order else -1 for name in EXPECTED_TAB_ORDER]
    missing = [name for name in EXPECTED_TAB_ORDER if name not in order]
    assert not missing, f"Tab never reaches {missing}: {order}"
    assert positions == sorted(positions), f"Tab order is not the reading order: {order}"
    screenshot(page, "settings-03-filled")

    with page.expect_navigation():
        page.locator("#save-button").click()

    # Saved: the flash, the values, the secrets masked and never in the page.
    expect(page.get_by_role("status").filter(has_text="ServiceNow settings saved.")).to_be_visible()
    expect(page.locator("input[name=instance_url]")).to_have_value(INSTANCE_URL)
    expect(page.locator("input[name=username]")).to_have_value("itam.integration")
    for name in ("token", "client_id", "client_secret"):
        expect(page.locator(f"input[name={name}]")).to_have_value("********")
        expect(page.locator(f"input[name={name}]")).to_have_attribute("type", "password")
    expect(custom).to_be_checked()
    expect(client_id_input).to_be_enabled()
    expect(page.get_by_label("Hardware inventory")).to_be_checked()
    expect(page.get_by_label("Installed applications")).not_to_be_checked()
    expect(page.get_by_label("Contracts")).to_be_checked()
    expect(page.locator("#export-button")).to_be_enabled()
    html = page.content()
    for typed in (token, client_id, client_secret):
        assert typed not in html, "a secret came back to the browser"
    screenshot(page, "settings-04-saved")
    assert_accessible(page, "the Integrations tab after saving")

    with app.app_context():
        from sqlalchemy import text

        from itam_admin.db import db
        from itam_admin.settings.store import load_settings

        stored = load_settings("acme")
        assert stored.instance_url == INSTANCE_URL
        assert stored.username == "itam.integration"
        assert stored.use_custom_credentials
        assert set(stored.export_data_types) == {"hardware_inventory", "contracts"}
        rows = db.session.execute(
            text("SELECT coalesce(value, '') || ' ' || coalesce(secret, '') FROM compliance_tenant_setting")
        ).scalars()
        raw = " ".join(rows)  # what the database holds, read past the column type that decrypts
        for typed in (token, client_id, client_secret):
            assert typed not in raw, "a secret is stored in clear text"

    # A bad Instance URL (with a new token typed too): the error shows next to the field and nothing stored is lost.
    new_token = "rt-" + secrets.token_urlsafe(40)
    page.get_by_label("Instance URL").fill("http://acme.service-now.com")
    page.get_by_label("Token", exact=True).fill(new_token)
    page.locator("#save-button").click()
    error = page.locator("#instance_url-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("https://")
    field = page.locator("#instance_url-field")
    expect(field.locator("#instance_url-error")).to_have_count(1)  # beside its input, not somewhere else
    expect(page.locator("input[name=instance_url]")).to_have_attribute("aria-invalid", "true")
    described_by = page.locator("input[name=instance_url]").get_attribute("aria-describedby") or ""
    assert "instance_url-error" in described_by.split()
    expect(page.get_by_text("ServiceNow settings saved.")).to_have_count(0)
    html = page.content()
    for typed in (token, client_id, client_secret):
        assert typed not in html
    # SPEC 3 and 10: the newly typed token must not come back either (checked at the end, so the rest still runs).
    new_token_echoed = new_token in html
    screenshot(page, "settings-05-bad-url")
    assert_accessible(page, "the Integrations tab showing a validation error")

    page.goto(live_portal + INTEGRATIONS)
    expect(page.locator("input[name=instance_url]")).to_have_value(INSTANCE_URL)
    expect(page.locator("input[name=token]")).to_have_value("********")
    expect(page.locator("#instance_url-error")).to_have_count(0)
    with app.app_context():
        from itam_admin.db import db
        from itam_admin.settings.store import load_secrets, load_settings

        db.session.remove()
        assert load_settings("acme").instance_url == INSTANCE_URL
        assert load_secrets("acme").token == token, "a failed save replaced the token"
    screenshot(page, "settings-06-reloaded")

    page_log.assert_no_csp_violations()
    page_log.assert_no_page_errors()
    assert not new_token_echoed, "the token typed before a failed save came back in the page's HTML"
