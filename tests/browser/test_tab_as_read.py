"""The Integrations tab as a tenant admin reads it, in Chromium (issue #16): Export from two tabs, a queued and then
running export, Test connection that comes back to the tab, a failure with ServiceNow's message and its CSV, the
history chart, the run page and the viewer's 403 page; axe-core clean, no CSP violation and no 404 on any of them."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from itam_admin.identity import Identity
from tests.browser.helpers import INTEGRATIONS, assert_accessible, log_in, screenshot

pytestmark = pytest.mark.browser
ADMIN = Identity("1", "Alice Admin", "acme", frozenset({"integrations.manage"}))


@pytest.fixture
def app_env(app_env):
    app_env["ITAM_EXPORT_MAX_RETRIES"] = "0"  # a refused batch is recorded at once
    app_env["ITAM_EXPORT_READ_BACK_WAIT_SECONDS"] = "10"
    return app_env


@pytest.fixture
def not_found(page) -> list[str]:
    """Every address of the portal that answered 404 while the test ran (the favicon was one of them)."""
    missing: list[str] = []
    page.context.on("response", lambda response: response.status == 404 and missing.append(response.url))
    return missing


def configure(app, instance_url: str, token: str = "a-refresh-token-0123456789", types=("hardware_inventory",)):
    from itam_admin.settings.store import save_settings
    from itam_admin.settings.values import SettingsChange

    change = SettingsChange(
        instance_url=instance_url, username="admin", use_custom_credentials=False, export_data_types=types, token=token
    )
    with app.app_context():
        save_settings("acme", change, ADMIN)


def record_refused_batch(app, detail: str, records: int = 6) -> int:
    """A finished run whose one batch ServiceNow refused with HTTP 400 and `detail`, recorded as the exporter records
    one (the message from servicenow/errors.py, the outcome from exporter.outcome_of), so what the pages show does
    not hang on which request of a run a sandbox fault would hit."""
    import json

    from itam_admin.db import db
    from itam_admin.exports import runs
    from itam_admin.exports.exporter import outcome_of
    from itam_admin.exports.models import ExportBatchFailure
    from itam_admin.servicenow.errors import ErrorKind, make_error

    with app.app_context():
        run = runs.claim(runs.create_run("acme", "manual", ADMIN, False).id)
        host = run.instance_url.split("//", 1)[-1]
        error = make_error(ErrorKind.BAD_REQUEST, host, what="the staging table u_itam_hardware_inventory", status=400)
        rows = [{"u_source_id": f"acme:{n}", "u_name": f"PC-{n}"} for n in range(records)]
        run.failed_batches.append(
            ExportBatchFailure(
                data_type="hardware_inventory",
                batch_number=1,
                record_count=records,
                status_code=400,
                error_kind=str(error.kind),
                message=error.message,
                detail=detail,
                records_json=json.dumps({"records": rows}),
            )
        )
        run.data_types[0].failed = records
        db.session.commit()
        runs.finish(run, *outcome_of(run))
        return run.id


def inventory(app, computers: int, contracts: int = 0) -> None:
    from demo_portal.demo_data import generate_inventory

    with app.app_context():
        generate_inventory("acme", computers=computers, installs=0, contracts=contracts)


def test_export_from_two_tabs_then_queued_and_running_read_right(live_portal, page, page_log, app, not_found):
    inventory(app, computers=7, contracts=3)
    configure(app, "http://127.0.0.1:9", types=("hardware_inventory", "contracts"))  # no worker: the run waits
    log_in(page, live_portal, "admin@acme.example")
    tab_a = page
    tab_b = page.context.new_page()
    tab_a.goto(live_portal + INTEGRATIONS)
    tab_b.goto(live_portal + INTEGRATIONS)

    with tab_a.expect_navigation():
        tab_a.locator("#export-button").click()
    expect(tab_a).to_have_url(re.compile(re.escape(INTEGRATIONS) + "#export-section$"))
    expect(tab_a.locator("#export-notice")).to_have_text("Export queued. Its progress shows below.")
    current = tab_a.locator("#current-run")
    expect(current.locator(".run-state")).to_have_text("Queued, waiting for a worker")
    expect(current.locator('tr[data-type="hardware_inventory"] .progress-text')).to_have_text(
        "7 records, waiting for a worker"
    )
    expect(current.locator('tr[data-type="contracts"] .progress-text')).to_have_text("3 records, waiting for a worker")
    expect(tab_a.get_by_text("0 sent, 0 unchanged of 0")).to_have_count(0)
    screenshot(tab_a, "tab-01-export-queued")
    assert_accessible(tab_a, "the tab with a queued export")

    # Tab B still shows an enabled button from before A's click.
    with tab_b.expect_navigation():
        tab_b.locator("#export-button").click()
    expect(tab_b.get_by_text("An export is already queued or running")).to_have_count(1)
    expect(tab_b.get_by_text("Export queued")).to_have_count(0)
    expect(tab_b.locator("#export-disabled-reason")).to_have_attribute("role", "alert")
    screenshot(tab_b, "tab-02-second-tab-refused")
    assert_accessible(tab_b, "the second tab after its refused Export")

    # A worker takes the run: tab A follows by itself (status polling) and says "running" everywhere.
    from itam_admin.db import db
    from itam_admin.exports import runs
    from itam_admin.exports.models import ExportRun

    with app.app_context():
        assert runs.claim(db.session.query(ExportRun.id).scalar()) is not None
    expect(current.locator(".run-state")).to_have_text("Running", timeout=15_000)
    expect(tab_a.locator("#export-disabled-reason")).to_have_text(
        "An export is already running; wait for it to finish."
    )
    expect(current.locator('tr[data-type="contracts"] .progress-text')).to_have_text("3 records, not started yet")
    screenshot(tab_a, "tab-03-export-running")
    assert_accessible(tab_a, "the tab with a running export")

    assert not_found == []
    page_log.assert_no_csp_violations()
    page_log.assert_no_page_errors()


def test_test_connection_comes_back_to_the_tab_and_a_reload_does_not_test_again(
    live_portal, sandbox, page, page_log, not_found
):
    token = sandbox.generate_refresh_token()
    tests_posted: list[str] = []
    page.on("request", lambda r: r.method == "POST" and r.url.endswith("/test") and tests_posted.append(r.url))
    log_in(page, live_portal, "admin@acme.example")
    page.goto(live_portal + INTEGRATIONS)
    page.get_by_label("Instance URL").fill(sandbox.url)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Token", exact=True).fill(token)

    with page.expect_navigation():
        page.locator("#test-button").click()
    expect(page).to_have_url(re.compile(re.escape(INTEGRATIONS) + "#test-result$"))
    result = page.locator("#test-result")
    expect(result).to_contain_text("Connection works.")
    expect(page.locator("#test-unsaved")).to_contain_text("Nothing was saved. To keep these settings, paste the Token")
    expect(page.get_by_label("Instance URL")).to_have_value(sandbox.url)  # the tested values stay in the form
    screenshot(page, "tab-04-test-connection-unsaved")
    assert_accessible(page, "the tab after testing unsaved settings")

    page.reload()
    expect(page.locator("#test-result")).not_to_contain_text("Connection works.")
    assert len(tests_posted) == 1, "the reload posted Test connection again"
    expect(page.get_by_label("Instance URL")).to_have_value("")  # a reload shows what is stored: nothing yet

    page.get_by_label("Instance URL").fill(sandbox.url)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Token", exact=True).fill(token)
    with page.expect_navigation():
        page.locator("#save-button").click()
    expect(page.get_by_text("ServiceNow settings saved.")).to_be_visible()
    with page.expect_navigation():
        page.locator("#test-button").click()
    expect(page.locator("#test-result")).to_contain_text("Connection works.")
    expect(page.locator("#test-unsaved")).to_have_count(0)
    expect(page.get_by_text("Nothing was saved")).to_have_count(0)
    screenshot(page, "tab-05-test-connection-saved")
    assert_accessible(page, "the tab after testing the saved settings")

    assert not_found == []
    page_log.assert_no_csp_violations()
    page_log.assert_no_page_errors()


def test_failure_panel_history_chart_and_run_page(live_portal, sandbox, page, page_log, app, not_found):
    """ServiceNow refuses a request with {"error": {"message", "detail"}, "status": "failure"} (SERVICENOW-FACTS;
    ServiceNow REST API docs, "REST API error messages"); its transform counts an unchanged coalesced row as
    `ignored` (sys_import_set_run)."""
    from itam_admin.exports.exporter import export_run
    from itam_admin.exports.runs import create_run

    inventory(app, computers=6)
    configure(app, sandbox.url, token=sandbox.generate_refresh_token())

    def export(full: bool = False) -> int:
        with app.app_context():
            run_id = create_run("acme", "manual", ADMIN, full).id
            export_run(run_id)
        assert sandbox.wait_idle(20)
        return run_id

    export()
    export(full=True)
    log_in(page, live_portal, "admin@acme.example")
    page.goto(live_portal + INTEGRATIONS)
    last = page.locator("#last-completed-export")
    expect(last.locator("#full-export-note")).to_contain_text("every record was sent again")
    expect(last.locator("#ignored-note")).to_contain_text("ServiceNow already had those records")
    screenshot(page, "tab-06-full-export-words")

    failed = record_refused_batch(app, "Bad Request: Invalid field u_serial_number: value too long")
    page.goto(live_portal + INTEGRATIONS)
    panel = last.locator(f"#run-{failed}-failures")
    expect(panel).to_contain_text("ServiceNow's message for the first batch it did not accept")
    expect(panel.locator("blockquote.sn-detail")).to_contain_text("Invalid field u_serial_number: value too long")
    csv_link = panel.get_by_role("link", name="Download the 6 failed records (CSV)")
    expect(csv_link).to_be_visible()
    screenshot(page, "tab-07-failure-panel")
    assert_accessible(page, "the tab after a failed export")
    with page.expect_download() as download:
        csv_link.click()
    assert download.value.suggested_filename == f"export-run-{failed}-failed-records.csv"

    page.set_viewport_size({"width": 1024, "height": 900})
    page.get_by_role("link", name="Export history").click()
    chart = page.get_by_role("img", name=re.compile("Recent exports: records sent and failed"))
    expect(chart).to_be_visible()
    expect(page.locator("svg.history-chart g.run")).to_have_count(3)
    expect(page.locator("table#history tbody tr")).to_have_count(3)
    expect(page.get_by_text("See the export history")).to_have_count(0)
    for cell in page.locator("table#history td.when time").all():
        lines = cell.evaluate("node => node.getClientRects().length")
        assert lines == 1, f"the queued date {cell.inner_text()!r} wraps over {lines} lines"
    screenshot(page, "history-01-chart-and-table")
    assert_accessible(page, "the export history")

    page.locator("table#history").get_by_role("link", name=f"Run #{failed}", exact=True).click()
    outcome = page.locator(f"#run-{failed}-summary .run-outcome")
    expect(outcome).to_have_text(re.compile("Failed|Partially succeeded"))
    batches = page.locator("#failed-batches")
    expect(batches).to_contain_text("Invalid field u_serial_number: value too long")
    assert outcome.bounding_box()["y"] < batches.bounding_box()["y"]  # the outcome leads
    expect(page.locator("#failed-csv")).to_be_visible()
    screenshot(page, "run-01-failed-batches")
    assert_accessible(page, "the run page of a failed export")

    assert not_found == []
    page_log.assert_no_csp_violations()
    page_log.assert_no_page_errors()


def test_the_viewers_403_is_a_portal_page_with_a_way_back(live_portal, page, page_log, not_found):
    log_in(page, live_portal, "viewer@acme.example")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    # As a bookmark would take them there: the page offers the portal's start page.
    response = page.goto(live_portal + INTEGRATIONS)
    assert response is not None and response.status == 403
    expect(page.get_by_role("link", name="Go to the portal's start page")).to_have_attribute("href", "/")
    # As a link on Settings > General would (the browser sends that page as the referrer).
    response = page.goto(live_portal + INTEGRATIONS, referer=live_portal + "/settings/general")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="You do not have access to Integrations")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()  # inside the portal's layout
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    screenshot(page, "access-03-viewer-403-page")
    assert_accessible(page, "the viewer's 403 page")
    page.get_by_role("link", name="Go back to the page you came from").click()
    expect(page).to_have_url(re.compile(r"/settings/general$"))

    assert [url for url in not_found if not url.endswith(INTEGRATIONS)] == []
    page_log.assert_no_csp_violations()
