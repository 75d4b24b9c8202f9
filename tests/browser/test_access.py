"""A portal user without `integrations.manage` neither sees nor reaches the Integrations tab."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import INTEGRATIONS, assert_accessible, log_in, screenshot

pytestmark = pytest.mark.browser


def test_viewer_sees_no_integrations_tab_and_gets_403(live_portal, page, page_log):
    log_in(page, live_portal, "viewer@acme.example")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(page).to_have_url(re.compile(r"/settings/general$"))
    expect(page.get_by_role("heading", name="General")).to_be_visible()
    tabs = page.get_by_role("navigation", name="Settings > General")
    expect(tabs).to_be_visible()
    expect(tabs.get_by_role("link", name="Integrations")).to_have_count(0)
    expect(page.get_by_role("link", name="Integrations")).to_have_count(0)
    assert "/integrations" not in page.content()
    screenshot(page, "access-01-viewer-settings")
    assert_accessible(page, "Settings > General as a viewer")

    response = page.goto(live_portal + INTEGRATIONS)
    assert response is not None and response.status == 403
    expect(page.get_by_text(re.compile(r"Forbidden|permission", re.I)).first).to_be_visible()
    expect(page.locator("#servicenow-form")).to_have_count(0)
    expect(page.locator("input[name=instance_url]")).to_have_count(0)
    screenshot(page, "access-02-viewer-403")

    page_log.assert_no_csp_violations()
