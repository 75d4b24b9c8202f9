"""The ServiceNow side from the start, in Chromium: a stock instance, on which Test connection names the missing app;
the tenant admin downloads the update set from the tab, a ServiceNow admin imports it through the instance's import
page, and the seed's workflow then exports everything: the target tables hold exactly the inventory (issue #13).

ServiceNow: a stock instance has no staging tables (the Table API answers 400 "Invalid table", SERVICENOW-FACTS);
update sets are imported through System Update Sets > Retrieved Update Sets > Import Update Set from XML, then
committed (SERVICENOW-FACTS, "Update sets"); the sandbox's import page stands in for that page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import INTEGRATIONS, assert_accessible, log_in, screenshot

pytestmark = pytest.mark.browser

COMPUTERS, INSTALLS, CONTRACTS = 20, 60, 4


@pytest.fixture
def stock_sandbox(app_env):
    from servicenow_sandbox import SandboxServer, SandboxSettings

    with SandboxServer(settings=SandboxSettings.from_env(app_env), stock=True) as server:
        yield server


def test_a_stock_instance_gets_the_downloaded_app_and_then_takes_every_record(
    live_portal, stock_sandbox, worker, page, page_log, app, tmp_path
):
    sandbox = stock_sandbox
    with app.app_context():
        from demo_portal.demo_data import generate_inventory

        created = generate_inventory("acme", computers=COMPUTERS, installs=INSTALLS, contracts=CONTRACTS)
    # A stock instance has no entry for the portal's default client yet: the admin registers the integration's own.
    sandbox.add_client("itam-integration", "itam-integration-secret")
    token = sandbox.generate_refresh_token("admin", "admin", "itam-integration")

    log_in(page, live_portal, "admin@acme.example")
    page.goto(live_portal + INTEGRATIONS)
    page.get_by_label("Instance URL").fill(sandbox.url)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Token", exact=True).fill(token)
    page.get_by_label("Use custom credentials").check()
    page.get_by_label("Client ID").fill("itam-integration")
    page.get_by_label("Client Secret").fill("itam-integration-secret")
    for label in ("Hardware inventory", "Installed applications", "Contracts"):
        page.get_by_label(label).check()
    with page.expect_navigation():
        page.locator("#save-button").click()
    expect(page.get_by_text("ServiceNow settings saved.")).to_be_visible()

    # Test connection on the stock instance names what is missing and how to fix it.
    with page.expect_navigation():
        page.locator("#test-button").click()
    result = page.locator("#test-result")
    expect(result).to_contain_text("not ready")
    expect(result).to_contain_text("update set")
    screenshot(page, "app-01-stock-instance-test")
    assert_accessible(page, "Test connection on a stock instance")

    # The tenant admin downloads the update set from the tab ...
    with page.expect_download() as download_info:
        page.locator("#servicenow-app-download").click()
    xml_file = tmp_path / "itam-servicenow-connector.xml"
    download_info.value.save_as(xml_file)
    assert xml_file.read_text().startswith("<?xml")

    # ... and the ServiceNow admin (another person, another browser) imports it through the instance's import page.
    admin_context = page.context.browser.new_context()
    try:
        servicenow = admin_context.new_page()
        servicenow.goto(sandbox.url + "/sys_remote_update_set.do")
        servicenow.locator("input[type=file]").set_input_files(str(xml_file))
        with servicenow.expect_navigation():
            servicenow.get_by_role("button", name="Upload and commit").click()
        expect(servicenow.locator("body")).to_contain_text("Committed ITAM ServiceNow Connector")
        screenshot(servicenow, "app-02-update-set-committed")
    finally:
        admin_context.close()

    page.goto(live_portal + INTEGRATIONS)
    with page.expect_navigation():
        page.locator("#test-button").click()
    expect(page.locator("#test-result")).to_contain_text("Connection works")

    with page.expect_navigation():
        page.locator("#export-button").click()
    outcome = page.locator("#last-completed-export .run-outcome")
    expect(outcome).to_have_text("Succeeded", timeout=90_000)
    screenshot(page, "app-03-exported-after-install")

    assert sandbox.wait_idle(20)
    assert len(sandbox.records("cmdb_ci_computer")) == COMPUTERS
    assert len(sandbox.records("ast_contract")) == CONTRACTS
    installs = sandbox.records("cmdb_sam_sw_install")
    assert len(installs) == created["installed_applications"] and all(row["installed_on"] for row in installs)
    page_log.assert_no_csp_violations()
