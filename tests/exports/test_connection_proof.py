"""Every run proves the connection first, whatever it has to send; what it saw becomes the tenant's connection state
(status JSON, the badge, the "needs a new token" notice), and weekly runs skip while the token is refused."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import select

from itam_admin.db import db
from itam_admin.exports.models import ExportRun
from itam_admin.exports.schedule import scheduler_tick
from itam_admin.identity import Identity
from itam_admin.plugin import current_plugin
from itam_admin.settings.models import ComplianceTenantSetting
from itam_admin.settings.store import save_settings
from itam_admin.settings.values import CONFIGURED_AT, SettingsChange
from tests.conftest import INTEGRATIONS, csrf_token_from
from tests.exports.wire import TOKEN, Tap

STATUS = f"{INTEGRATIONS}/servicenow/status"
SATURDAY = datetime(2026, 12, 5, 12, 0)
SUNDAY_LATE = datetime(2026, 12, 6, 6, 0)
BADGE = re.compile(r'<span class="badge [^"]*" id="connection-badge"[^>]*>([^<]*)</span>')


def badge(page: str) -> str:
    match = BADGE.search(page)
    assert match, "the ServiceNow section has no connection badge"
    return match.group(1).strip()


def weekly_tick(app, now: datetime) -> list[str]:
    with app.app_context():
        return scheduler_tick(current_plugin().config, current_plugin().redis, now=now)


def weekly_runs(app) -> list[ExportRun]:
    with app.app_context():
        found = list(db.session.scalars(select(ExportRun).where(ExportRun.trigger == "weekly").order_by(ExportRun.id)))
        db.session.expunge_all()
        return found


def configured_on(app, when: datetime, tenant: str = "acme") -> None:
    with app.app_context():
        row = db.session.scalar(
            select(ComplianceTenantSetting).where(
                ComplianceTenantSetting.tenant_id == tenant, ComplianceTenantSetting.name == CONFIGURED_AT
            )
        )
        row.value = when.isoformat()
        db.session.commit()


def save_through_the_form(client, sandbox, token: str, types=("hardware_inventory",)) -> None:
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    response = client.post(
        f"{INTEGRATIONS}/servicenow",
        data={
            "instance_url": sandbox.url,
            "username": "admin",
            "token": token,
            "export_data": list(types),
            "csrf_token": csrf_token_from(page),
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)


def test_a_revoked_token_fails_a_run_with_nothing_to_send_and_weekly_runs_skip_until_a_new_token_is_saved(
    app, client, auth, sandbox, configure_tenant, inventory, run_export
):
    """Issue #14: after the refresh token was revoked in ServiceNow, a differential export with nothing changed said
    "Succeeded: nothing to send" without contacting ServiceNow. SPEC 5: every run proves the connection (a token
    refresh and one read) before it decides what to send. ServiceNow answers the refused refresh with 401
    access_denied (SERVICENOW-FACTS, OAuth)."""
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    configured_on(app, SATURDAY)
    assert run_export().status == "succeeded"
    sandbox.revoke_tokens(everything=True)

    run = run_export()  # nothing changed since: nothing to send

    assert run.status == "failed", run.message
    assert "refused the token or this portal's default OAuth application" in run.message
    auth.login()
    connection = client.get(STATUS).get_json()["connection"]
    assert connection["state"] == "failed" and connection["needs_new_token"] is True
    assert connection["checked_at"] and "refused the token" in connection["message"]
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    assert badge(page).startswith("Token refused on ")
    # At the top of the tab, with what to do; the token-age line stays.
    assert page.index('id="needs-new-token"') < page.index('id="servicenow-section"')
    assert "generate a new token in ServiceNow, paste it in" in page and 'id="token-age"' in page

    weekly_tick(app, SUNDAY_LATE)
    (skipped,) = weekly_runs(app)
    assert skipped.status == "skipped"
    assert "ServiceNow refused the token" in skipped.message and "save" in skipped.message

    save_through_the_form(client, sandbox, sandbox.generate_refresh_token("admin", "admin"))

    connection = client.get(STATUS).get_json()["connection"]
    assert connection == {"state": "unchecked", "checked_at": None, "message": None, "needs_new_token": False}
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    assert 'id="needs-new-token"' not in page and badge(page) == "Not checked yet"
    weekly_tick(app, SUNDAY_LATE + timedelta(weeks=1))
    assert [run.status for run in weekly_runs(app)] == ["skipped", "queued"]


def test_a_refresh_token_that_expired_is_found_even_while_an_access_token_is_cached(
    app, sandbox, configure_tenant, inventory, run_export
):
    """ServiceNow refresh tokens expire (100 days by default) while access tokens issued before stay valid for their
    30 minutes (SERVICENOW-FACTS, OAuth): a run must ask for a new access token, not reuse the cached one."""
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    assert run_export().status == "succeeded"  # caches an access token
    sandbox.expire_tokens(kind="refresh")
    tap = Tap.on(sandbox)

    run = run_export()

    assert run.status == "failed" and run.error_kind == "token_refused", run.message
    assert tap.paths(TOKEN) == [TOKEN]


def test_a_manual_export_still_runs_after_a_refusal_and_a_proven_connection_ends_it(
    app, client, auth, sandbox, configure_tenant, inventory, run_export
):
    """Weekly runs skip while the token is refused; a manual export runs, proves the connection, and when ServiceNow
    accepts the grant again the tab says so (SPEC 7)."""
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    configured_on(app, SATURDAY)
    sandbox.faults.fail_next(1, 401, scope="token")  # one refused grant

    assert run_export().status == "failed"
    weekly_tick(app, SUNDAY_LATE)
    assert [run.status for run in weekly_runs(app)] == ["skipped"]

    run = run_export()

    assert run.status == "succeeded", run.message
    auth.login()
    connection = client.get(STATUS).get_json()["connection"]
    assert connection["state"] == "ok" and connection["needs_new_token"] is False
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    assert badge(page) == "Connected, checked just now" and 'id="needs-new-token"' not in page


def test_a_refused_grant_with_custom_credentials_names_the_custom_application_and_never_its_id(
    app, sandbox, inventory, run_export
):
    """ServiceNow answers 401 access_denied alike for a bad token and for an unknown or wrong OAuth client
    (SERVICENOW-FACTS, OAuth): the message says the token or the custom OAuth application was refused, and what to
    check for each, without the Client ID or Client Secret."""
    sandbox.add_client("tenant-own-client-7f3a", "tenant-own-secret-91c2")
    token = sandbox.generate_refresh_token("admin", "admin", client_id="tenant-own-client-7f3a")
    inventory(computers=5, installs=0, contracts=0)
    with app.app_context():
        change = SettingsChange(
            instance_url=sandbox.url,
            username="admin",
            use_custom_credentials=True,
            export_data_types=("hardware_inventory",),
            token=token,
            client_id="tenant-own-client-7f3a",
            client_secret="tenant-own-secret-91c2",
        )
        save_settings("acme", change, Identity("1", "Alice Admin", "acme", frozenset({"integrations.manage"})))
    sandbox.revoke_tokens(everything=True)

    run = run_export()

    assert run.status == "failed"
    assert "refused the token or your own OAuth application" in run.message
    assert "Application Registry" in run.message and "Client ID and Client Secret" in run.message
    assert "tenant-own-client-7f3a" not in run.message and "tenant-own-secret-91c2" not in run.message


def test_a_refused_grant_with_the_default_client_names_its_registry_entry_and_never_its_id(
    sandbox, configure_tenant, inventory, run_export
):
    """As above, for the portal's default client: its Application Registry entry from the connector's update set is
    named (SPEC 5a), its client id is not."""
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    sandbox.revoke_tokens(everything=True)

    run = run_export()

    assert "ITAM Connector default client" in run.message and "Generate a new token in ServiceNow" in run.message
    assert "default-client" not in run.message


def test_servicenows_words_in_the_connection_state_are_escaped_on_the_tab(
    client, auth, sandbox, configure_tenant, inventory, run_export
):
    """ServiceNow's error bodies carry its own text ({"error": {"message", "detail"}}, SERVICENOW-FACTS); when a run's
    connection check fails, that text reaches the top of the tab and the badge's title as text, never as markup."""
    inventory(computers=5, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    # The first API request: the user read or the staging-table probe beside it, whichever arrives first (both are
    # the run's connection check and fail the run with ServiceNow's text).
    sandbox.faults.fail_next(1, 400, markup=True)

    run = run_export()

    assert run.status == "failed" and "<script>" in run.message  # kept as ServiceNow wrote it
    auth.login()
    page = client.get(INTEGRATIONS).get_data(as_text=True)
    assert 'id="connection-failed"' in page and badge(page).startswith("Connection failed, checked")
    assert "&lt;script&gt;alert(" in page and "<script>alert(" not in page
