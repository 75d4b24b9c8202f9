"""A tenant admin exports to the ServiceNow sandbox from the browser: the button queues the export, the page shows
its progress and updates itself, and Last completed export shows the outcome with the counts that arrived."""

from __future__ import annotations

import re
import threading

import pytest
from playwright.sync_api import expect

from tests.browser.helpers import INTEGRATIONS, assert_accessible, log_in, screenshot
from tests.exports.wire import INSERT_MULTIPLE, Tap

pytestmark = pytest.mark.browser

COMPUTERS, INSTALLS, CONTRACTS = 30, 90, 5
TARGET_TABLES = {
    "hardware_inventory": "cmdb_ci_computer",
    "contracts": "ast_contract",
    "installed_applications": "cmdb_sam_sw_install",
}


def test_export_to_servicenow_from_the_browser(live_portal, sandbox, worker, page, page_log, app):
    with app.app_context():
        from demo_portal.demo_data import generate_inventory

        created = generate_inventory("acme", computers=COMPUTERS, installs=INSTALLS, contracts=CONTRACTS)
    assert created["hardware_inventory"] == COMPUTERS and created["contracts"] == CONTRACTS
    token = sandbox.generate_refresh_token()

    log_in(page, live_portal, "admin@acme.example")
    page.goto(live_portal + INTEGRATIONS)
    export_button = page.locator("#export-button")
    expect(export_button).to_have_text("Export data to ServiceNow")
    expect(export_button).to_be_disabled()

    page.get_by_label("Instance URL").fill(sandbox.url)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Token", exact=True).fill(token)
    for label in ("Hardware inventory", "Installed applications", "Contracts"):
        page.get_by_label(label).check()
    with page.expect_navigation():
        page.locator("#save-button").click()
    expect(page.get_by_text("ServiceNow settings saved.")).to_be_visible()
    expect(export_button).to_be_enabled()
    expect(page.locator("#last-completed-export")).to_contain_text("No export has completed yet.")

    # The run's first batch waits at the instance until the page has been checked while the run is going (on a
    # busy machine the checks below can take longer than the whole export); then a little latency per request.
    going = threading.Event()
    Tap.on(sandbox).aim(INSERT_MULTIPLE, arm=lambda: going.wait(20))  # below the 30 s read timeout
    sandbox.faults.set_latency(400)
    with page.expect_navigation():
        export_button.click()
    expect(page.get_by_text("Export queued.")).to_be_visible()
    current = page.locator("#current-run")
    expect(current).to_be_visible()
    expect(current.locator(".run-status")).to_have_text(re.compile(r"queued|running"))
    for data_type in TARGET_TABLES:
        expect(current.locator(f'tr[data-type="{data_type}"] progress')).to_have_count(1)
    expect(export_button).to_be_disabled()  # one export at a time
    expect(page.locator("#export-disabled-reason")).to_contain_text("already")
    screenshot(page, "export-01-in-progress")
    assert_accessible(page, "the Integrations tab while an export runs")
    going.set()

    # The page follows the run by itself (status polling, then one reload) until it shows the outcome.
    outcome = page.locator("#last-completed-export .run-outcome")
    expect(outcome).to_have_text("Succeeded", timeout=60_000)
    expect(page.locator("#current-run")).to_have_count(0)
    expect(export_button).to_be_enabled()
    screenshot(page, "export-02-succeeded")

    assert sandbox.wait_idle(20), "the sandbox did not finish transforming the import sets"
    counts = page.locator("#last-completed-export table.run-counts")
    for data_type, table in TARGET_TABLES.items():
        arrived = len(sandbox.records(table))
        row = counts.locator(f'tr[data-type="{data_type}"]')
        expect(row.locator("td.sent")).to_have_text(str(arrived))
        expect(row.locator("td.failed")).to_have_text("0")
    assert len(sandbox.records("cmdb_ci_computer")) == COMPUTERS
    assert len(sandbox.records("ast_contract")) == CONTRACTS
    assert len(sandbox.records("cmdb_sam_sw_install")) == created["installed_applications"]
    expect(page.locator("#last-completed-export")).to_contain_text("manually by Alice Admin")
    assert_accessible(page, "the Integrations tab after an export")

    page_log.assert_no_csp_violations()
    page_log.assert_no_page_errors()
