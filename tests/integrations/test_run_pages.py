"""Finished exports as the tab, the history and the run page tell them (issue #16): plain words for a full export of
unchanged records, ServiceNow's own message and the failed records' CSV beside a failure, a history chart drawn on
the server, and the plugin's own 403 page inside the host's layout."""

from __future__ import annotations

import re

import pytest

from itam_admin.db import db
from itam_admin.exports.exporter import export_run
from itam_admin.exports.models import ExportRun
from itam_admin.exports.runs import create_run
from itam_admin.identity import Identity
from itam_admin.settings.store import save_settings
from itam_admin.settings.values import SettingsChange
from tests.conftest import INTEGRATIONS
from tests.exports.wire import on_first_batch

ADMIN = Identity("1", "Alice Admin", "acme", frozenset({"integrations.manage"}))
HISTORY = f"{INTEGRATIONS}/servicenow/runs"


@pytest.fixture
def app_env(app_env):
    app_env["ITAM_SERVICENOW_ALLOW_INSECURE"] = "1"
    app_env["ITAM_EXPORT_MAX_RETRIES"] = "0"
    app_env["ITAM_EXPORT_READ_BACK_WAIT_SECONDS"] = "10"
    return app_env


@pytest.fixture
def exporting(app, sandbox):
    """Acme with 6 computers, set up for the sandbox; returns a function that runs one export to its end."""
    from demo_portal.demo_data import generate_inventory

    with app.app_context():
        generate_inventory("acme", computers=6, installs=0, contracts=0)
        change = SettingsChange(
            instance_url=sandbox.url,
            username="admin",
            use_custom_credentials=False,
            export_data_types=("hardware_inventory",),
            token=sandbox.generate_refresh_token("admin", "admin"),
        )
        save_settings("acme", change, ADMIN)

    def run(full: bool = False) -> int:
        with app.app_context():
            run_id = create_run("acme", "manual", ADMIN, full).id
            export_run(run_id)
            assert sandbox.wait_idle(20)
            return run_id

    return run


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


def test_a_full_export_of_unchanged_records_says_what_changed_and_ignored_mean(app, client, auth, exporting):
    """ServiceNow's transform counts a coalesced row whose values are already in the target record as `ignored`
    (ServiceNow docs, "Import set run" / sys_import_set_run: inserts, updates, ignored, skipped, errors); the sandbox
    does the same."""
    exporting()
    exporting(full=True)
    auth.login()
    page = text_of(client.get(INTEGRATIONS).get_data(as_text=True))
    assert "This was a full export: every record was sent again" in page
    assert "Changed here also counts records ServiceNow already had as they are" in page
    with app.app_context():
        last = db.session.query(ExportRun).order_by(ExportRun.id.desc()).first().data_types[0]
        assert (last.changed, last.sn_ignored) == (6, 6)
    assert "Ignored in ServiceNow's counts means ServiceNow already had those records" in page


def test_a_failure_shows_servicenows_message_and_links_the_failed_records(app, client, auth, sandbox, exporting):
    """ServiceNow answers a refused request with {"error": {"message", "detail"}, "status": "failure"}
    (SERVICENOW-FACTS; ServiceNow REST API docs, "REST API error messages")."""
    on_first_batch(
        sandbox, lambda: sandbox.faults.fail_next(1, 400, detail="Invalid field u_serial_number: value too long")
    )
    run_id = exporting()
    auth.login()

    page = client.get(INTEGRATIONS).get_data(as_text=True)
    words = text_of(page)
    assert "ServiceNow's message for the first batch it did not accept" in words
    assert "Invalid field u_serial_number: value too long" in words
    assert f'href="{INTEGRATIONS}/servicenow/runs/{run_id}/failed-records.csv"' in page
    assert "Download the 6 failed records (CSV)" in words
    assert f'href="{INTEGRATIONS}/servicenow/runs/{run_id}"' in page

    history = text_of(client.get(HISTORY).get_data(as_text=True))
    assert "See the export history" not in history
    assert "ServiceNow said: Bad Request: Invalid field u_serial_number: value too long" in history
    assert f"CSV of run #{run_id}" in history

    run_page = client.get(f"{HISTORY}/{run_id}").get_data(as_text=True)
    words = text_of(run_page)
    assert words.index("Failed") < words.index("Failed batches")  # the outcome leads
    assert "Invalid field u_serial_number: value too long" in words
    assert 'id="failed-csv"' in run_page


def test_the_history_has_a_chart_drawn_on_the_server_beside_its_table(client, auth, exporting):
    first, second = exporting(), exporting(full=True)
    auth.login()
    page = client.get(HISTORY).get_data(as_text=True)
    svg = re.search(r"<svg[^>]*>.*?</svg>", page, re.S).group(0)
    assert 'role="img"' in svg and 'aria-labelledby="history-chart-title history-chart-desc"' in svg
    assert '<title id="history-chart-title">' in svg and '<desc id="history-chart-desc">' in svg
    assert f'data-run="{first}"' in svg and f'data-run="{second}"' in svg
    assert "<script" not in page.split("<main", 1)[1]
    assert 'style="' not in svg  # the strict CSP refuses inline styles
    assert '<table id="history">' in page
    assert re.search(r'<td class="when"><time datetime="[^"]+">\d{4}-\d\d-\d\d \d\d:\d\d</time></td>', page)


def test_the_viewers_403_is_a_page_inside_the_portal_layout_with_a_way_back(client, auth):
    auth.login("viewer@acme.example")
    response = client.get(INTEGRATIONS, headers={"Referer": "http://localhost/settings/general"})
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert '<nav aria-label="Main">' in page and "Log out" in page  # the host's layout
    assert "You do not have access to Integrations" in page
    assert "integrations.manage" in page
    assert 'href="http://localhost/settings/general"' in page and "Go back to the page you came from" in page
    assert 'id="servicenow-form"' not in page

    other = client.get(f"{INTEGRATIONS}/servicenow/runs", headers={"Referer": "https://elsewhere.example/"})
    assert other.status_code == 403 and "Go to the portal&#39;s start page" in other.get_data(as_text=True)
    status = client.get(f"{INTEGRATIONS}/servicenow/status", headers={"Accept": "application/json"})
    assert status.status_code == 403 and "Log out" not in status.get_data(as_text=True)
