"""The seed's workflow end to end against the ServiceNow sandbox: generate a refresh token on the sandbox's
Generate OAuth Token page, paste it in the portal, Test connection works; once ServiceNow revokes the token, Test
connection says the token was refused."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import assert_accessible, log_in, screenshot

pytestmark = pytest.mark.browser


def generate_token_in_servicenow(page, instance_url: str, username: str = "admin", password: str = "admin") -> str:
    """Steps 1-6 of the seed: the Generate OAuth Token page, Username, Password, the button, copy the token."""
    page.goto(instance_url + "/")
    page.get_by_role("link", name="Generate OAuth Token").first.click()
    expect(page.get_by_role("heading", name="Generate OAuth Token")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Generate OAuth Token").click()
    token_box = page.get_by_role("textbox", name="Refresh Token")
    expect(token_box).to_be_visible()
    # "A long Refresh Token appears at the top of the page": above the form.
    assert token_box.bounding_box()["y"] < page.get_by_role("button", name="Generate OAuth Token").bounding_box()["y"]
    token = token_box.input_value()
    assert len(token) >= 32, f"the refresh token looks too short: {len(token)} characters"
    screenshot(page, "test-connection-01-servicenow-token")
    return token


def test_connection_with_a_token_generated_in_servicenow(live_portal, sandbox, page, page_log, app):
    token = generate_token_in_servicenow(page, sandbox.url)

    log_in(page, live_portal, "admin@acme.example")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    page.get_by_role("navigation", name="Settings > General").get_by_role("link", name="Integrations").click()
    expect(page.locator("details#servicenow-section")).to_have_attribute("open", "")
    test_button = page.locator("#test-button")
    expect(test_button).to_have_text("Test connection")

    page.get_by_label("Instance URL").fill(sandbox.url)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Token", exact=True).fill(token)
    page.get_by_label("Hardware inventory").check()

    with page.expect_navigation():
        test_button.click()
    result = page.locator("#test-result")
    expect(result).to_contain_text("Connection works.")
    expect(result).to_contain_text(re.compile(r"\badmin\b"))
    expect(result).to_contain_text("Nothing was saved")
    expect(page.get_by_text("ServiceNow settings saved.")).to_have_count(0)
    # SPEC 3 and 10: secrets are never sent back to the browser (checked at the end, so the rest still runs).
    leaks = ["the page after Test connection"] if token in page.content() else []
    with app.app_context():
        from itam_admin.settings.store import load_settings

        assert load_settings("acme").instance_url == "", "Test connection saved the settings"
    screenshot(page, "test-connection-02-works")
    assert_accessible(page, "the Integrations tab with a successful connection test")

    # Keep the settings (pasting the token again if the page did not keep it), then ServiceNow revokes the token.
    if page.locator("input[name=token]").input_value() != token:
        page.get_by_label("Token", exact=True).fill(token)
    with page.expect_navigation():
        page.locator("#save-button").click()
    expect(page.get_by_text("ServiceNow settings saved.")).to_be_visible()
    expect(page.locator("input[name=token]")).to_have_value("********")
    assert sandbox.revoke_tokens(token=token) >= 1

    with page.expect_navigation():
        page.locator("#test-button").click()
    result = page.locator("#test-result")
    expect(result).to_contain_text("Connection failed.")
    expect(result).to_contain_text(re.compile(r"refused the token", re.I))
    expect(result).to_contain_text("Generate a new token")
    expect(result.get_by_role("alert")).to_be_visible()
    screenshot(page, "test-connection-03-token-refused")
    assert_accessible(page, "the Integrations tab with a failed connection test")

    if token in page.content():
        leaks.append("the page after the failed Test connection")

    page_log.assert_no_csp_violations()
    page_log.assert_no_page_errors()
    assert not leaks, f"the refresh token typed in Token came back in the HTML of: {', '.join(leaks)}"
