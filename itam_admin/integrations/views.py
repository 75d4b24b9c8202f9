"""Request handlers of the Integrations tab; they call the domain modules and never talk to ServiceNow directly."""

from __future__ import annotations

from datetime import timedelta

from flask import (
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    render_template_string,
    request,
    session,
    url_for,
)
from markupsafe import Markup

from itam_admin.crypto import SecretUnreadable
from itam_admin.datatypes import DATA_TYPES
from itam_admin.db import db, utcnow
from itam_admin.exports import chart, history, runs
from itam_admin.exports.failures import failed_records_csv_lines
from itam_admin.exports.planner import preview_export
from itam_admin.exports.schedule import next_due_at
from itam_admin.identity import Identity
from itam_admin.integrations.access import manager_required, visible_to
from itam_admin.integrations.connection_check import refuse_stored_secrets_elsewhere, test_connection
from itam_admin.integrations.forms import ExportForm, ServiceNowSettingsForm
from itam_admin.plugin import current_plugin
from itam_admin.servicenow_app import build_update_set
from itam_admin.settings.connection import badge as connection_badge
from itam_admin.settings.connection import connection_of
from itam_admin.settings.store import SettingsNotSaved, load_secrets, load_settings, save_settings
from itam_admin.settings.values import ServiceNowSettings

DATA_TYPE_LABELS = {data_type.name: data_type.label for data_type in DATA_TYPES}

OUTCOME_LABELS = {
    "succeeded": "Succeeded",
    "partially_succeeded": "Partially succeeded",
    "failed": "Failed",
    "skipped": "Skipped",
    "queued": "Queued",
    "running": "Running",
}
TOKEN_LIFETIME_DAYS = 100
TOKEN_WARN_AFTER_DAYS = 80


def settings_tabs() -> list[dict]:
    """The plugin's tabs for the host's Settings > General page, as the current user may see them."""
    plugin = current_plugin()
    if not visible_to(plugin.current_identity()):
        return []
    return [
        {
            "id": "integrations",
            "label": "Integrations",
            "url": url_for("itam_integrations.integrations"),
        }
    ]


def _form_options() -> dict:
    config = current_plugin().config
    return {"allowed_hosts": config.allowed_hosts, "allow_insecure": config.allow_insecure}


def token_age(settings: ServiceNowSettings) -> dict | None:
    if settings.token_saved_at is None:
        return None
    age = utcnow() - settings.token_saved_at
    expires = settings.token_saved_at + timedelta(days=TOKEN_LIFETIME_DAYS)
    return {
        "saved_at": settings.token_saved_at,
        "days": age.days,
        "expires_at": expires,
        "warn": age >= timedelta(days=TOKEN_WARN_AFTER_DAYS),
        "expired": utcnow() >= expires,
    }


def connection_context(tenant_id: str, settings: ServiceNowSettings) -> dict:
    """The connection state for _connection.html: the badge of the ServiceNow section and, after a refused token,
    the notice at the top of the tab (SPEC 7)."""
    state = connection_of(tenant_id)
    return {"connection": state, "connection_badge": connection_badge(state, settings.export_enabled)}


def render_page(
    identity: Identity, settings: ServiceNowSettings, form: ServiceNowSettingsForm, status: int = 200, **extra
):
    context = {
        "layout_template": current_plugin().layout_template,
        "export_form": ExportForm(),
        "current_run": history.active_run(identity.tenant_id),
        "last_run": history.last_completed_run(identity.tenant_id),
        "next_scheduled_at": next_weekly_export(identity.tenant_id, settings),
        "data_type_labels": DATA_TYPE_LABELS,
        "outcome_labels": OUTCOME_LABELS,
        "identity": identity,
        "settings": settings,
        "form": form,
        "token_age": token_age(settings),
        "active_tab": "integrations",
    }
    context.update(connection_context(identity.tenant_id, settings))
    context.update(extra)
    return render_template("itam_admin/integrations.html", **context), status


# What a POST left for the page it redirects to (Post/Redirect/Get), in the host's session: one slot each, so the
# latest click wins and two tabs never add up messages. Never a secret: typed secrets are not kept.
TEST_SLOT, EXPORT_SLOT = "itam_test_connection", "itam_export_notice"
EXPORT_QUEUED = "Export queued. Its progress shows below."


def _keep(slot: str, identity: Identity, **value) -> None:
    session[slot] = {"tenant": identity.tenant_id, "user": identity.user_id, **value}


def _take(slot: str, identity: Identity) -> dict | None:
    """What a POST of this user left in the slot, once: a reload of the page shows it no more."""
    value = session.pop(slot, None)
    owner = (identity.tenant_id, identity.user_id)
    if not isinstance(value, dict) or (value.get("tenant"), value.get("user")) != owner:
        return None
    return value


@manager_required
def integrations_page(identity: Identity):
    settings = load_settings(identity.tenant_id)
    extra: dict = {"export_notice": _take(EXPORT_SLOT, identity)}
    tested = _take(TEST_SLOT, identity)
    if tested:
        # The form as it was tested (secrets masked as stored), with the outcome under it.
        form = ServiceNowSettingsForm(formdata=None, data=tested["form"], stored=settings, **_form_options())
        extra["test_result_html"] = Markup(tested["html"])  # rendered by test_servicenow; the session is signed
    else:
        form = ServiceNowSettingsForm.for_settings(settings, **_form_options())
    return render_page(identity, settings, form, **extra)


def _submitted_form(identity: Identity) -> tuple[ServiceNowSettings, ServiceNowSettingsForm, bool]:
    """The stored settings and the posted settings form (Save and Test connection read the same form)."""
    settings = load_settings(identity.tenant_id)
    form = ServiceNowSettingsForm(stored=settings, **_form_options())
    return settings, form, form.validate_on_submit()


@manager_required
def save_servicenow(identity: Identity):
    settings, form, valid = _submitted_form(identity)
    if not valid:
        return render_page(identity, settings, form, status=400, save_failed=True)
    try:
        save_settings(identity.tenant_id, form.change(), identity)
    except SettingsNotSaved as error:
        # The typed values come back in the form (secrets only as the mask); the stored settings are as they were.
        flash(str(error), "error")
        page, status = render_page(identity, settings, form, status=503)
        return page, status, {"Retry-After": "5"}
    session.pop(TEST_SLOT, None)  # a test of values from before this save would now mislead
    flash("ServiceNow settings saved.", "success")
    return redirect(url_for("itam_integrations.integrations"))


def next_weekly_export(tenant_id: str, settings: ServiceNowSettings):
    if not settings.export_enabled:
        return None
    return next_due_at(tenant_id, settings, current_plugin().config)


@manager_required
def queue_export(identity: Identity):
    form = ExportForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        run = runs.queue_run(
            current_plugin().redis_or_none, identity.tenant_id, runs.MANUAL, identity, bool(form.full.data)
        )
    except runs.ExportNotStarted as error:
        # One message for this click, whatever an earlier click or another tab left: the latest outcome replaces it.
        kind = "active" if str(error) == runs.ALREADY_ACTIVE else "error"
        _keep(EXPORT_SLOT, identity, kind=kind, message=str(error), run_id=None)
    else:
        _keep(EXPORT_SLOT, identity, kind="queued", message=EXPORT_QUEUED, run_id=run.id)
    return redirect(url_for("itam_integrations.integrations") + "#export-section")


@manager_required
def status(identity: Identity):
    settings = load_settings(identity.tenant_id)
    next_at = next_weekly_export(identity.tenant_id, settings)
    return jsonify(
        {
            "export_enabled": settings.export_enabled,
            "export_disabled_reason": settings.export_disabled_reason,
            "current": history.run_as_json(history.active_run(identity.tenant_id)),
            "last_completed": history.run_as_json(history.last_completed_run(identity.tenant_id)),
            "next_scheduled_at": next_at.strftime("%Y-%m-%dT%H:%M:%SZ") if next_at else None,
            "connection": connection_of(identity.tenant_id).as_json(),
        }
    )


def _page(identity: Identity, template: str, **context):
    return render_template(
        template,
        layout_template=current_plugin().layout_template,
        identity=identity,
        active_tab="integrations",
        data_type_labels=DATA_TYPE_LABELS,
        outcome_labels=OUTCOME_LABELS,
        **context,
    )


@manager_required
def history_page(identity: Identity):
    recent = history.recent_runs(identity.tenant_id, limit=50)
    points = chart.chart_points(recent)
    return _page(
        identity,
        "itam_admin/history.html",
        runs=recent,
        chart=chart.history_chart(points),
        chart_runs=len(points),
        duration_text=chart.duration_text,
    )


@manager_required
def run_detail(identity: Identity, run_id: int):
    run = history.tenant_run(identity.tenant_id, run_id)
    if run is None:
        abort(404)
    return _page(identity, "itam_admin/run.html", last_run=run, run=run)


@manager_required
def failed_records_csv(identity: Identity, run_id: int):
    run = history.tenant_run(identity.tenant_id, run_id)
    if run is None:
        abort(404)
    return Response(
        failed_records_csv_lines(run),
        mimetype="text/csv",
        headers={"Content-Disposition": f"attachment; filename=export-run-{run.id}-failed-records.csv"},
    )


@manager_required
def preview(identity: Identity):
    settings = load_settings(identity.tenant_id)
    if not settings.export_enabled:
        flash(settings.export_disabled_reason, "error")
        return redirect(url_for("itam_integrations.integrations"))
    full = request.args.get("full") == "1"
    return _page(
        identity, "itam_admin/preview.html", preview=preview_export(identity.tenant_id, settings, full=full), full=full
    )


@manager_required
def test_servicenow(identity: Identity):
    settings, form, valid = _submitted_form(identity)
    if not valid or refuse_stored_secrets_elsewhere(form, settings):
        return render_page(identity, settings, form, status=400, test_failed_validation=True)
    result = test_connection(identity.tenant_id, form, settings)
    # The outcome is kept as the page shows it (no secret is in it): the redirected page needs no second test.
    note = unsaved_note(identity.tenant_id, form, settings)
    shown = render_template("itam_admin/_test_result.html", test_result=result, test_unsaved=note)
    tested_form = {
        "instance_url": form.instance_url.data or "",
        "username": form.username.data or "",
        "use_custom_credentials": bool(form.use_custom_credentials.data),
        "export_data": list(form.export_data.data or []),
    }
    _keep(TEST_SLOT, identity, html=shown, form=tested_form)
    # Post/Redirect/Get: the address is the tab's again, and a reload does not run the test again.
    return redirect(url_for("itam_integrations.integrations") + "#test-result")


def unsaved_note(tenant_id: str, form: ServiceNowSettingsForm, stored: ServiceNowSettings) -> str | None:
    """What to do to keep the tested values, or None when they are the stored settings (nothing to save)."""
    change = form.change()
    typed = {"Token": change.token}
    if change.use_custom_credentials:
        typed.update({"Client ID": change.client_id, "Client Secret": change.client_secret})
    typed = {label: value for label, value in typed.items() if value is not None}
    if typed:
        try:
            secrets = load_secrets(tenant_id)
            held = {"Token": secrets.token, "Client ID": secrets.client_id, "Client Secret": secrets.client_secret}
        except SecretUnreadable:
            held = {}
        typed = {label: value for label, value in typed.items() if held.get(label) != value}
    same = (
        change.instance_url == stored.instance_url
        and change.username == stored.username
        and change.use_custom_credentials == stored.use_custom_credentials
        and set(change.export_data_types) == set(stored.export_data_types)
    )
    if same and not typed:
        return None
    if typed:
        names = " and ".join(typed)
        return (
            f"Nothing was saved. To keep these settings, paste the {names} again (what you type in a secret field is "
            "never sent back to the browser) and click Save."
        )
    return "Nothing was saved. Click Save to keep these settings."


@manager_required
def servicenow_app(identity: Identity):
    """The update set a ServiceNow admin imports once (SPEC 5a), for the operator's default OAuth client."""
    xml = build_update_set(default_client_id=current_plugin().config.default_client_id or None)
    return Response(
        xml,
        mimetype="application/xml",
        headers={"Content-Disposition": "attachment; filename=itam-servicenow-connector.xml"},
    )


def database_unavailable(_error: Exception):
    """The portal's database did not answer while a tab page was built: a plain page (the host's layout may need the
    database too) saying nothing was changed. Whatever was stored stays as it was: a save is one transaction."""
    db.session.rollback()
    page = render_template_string(DATABASE_UNAVAILABLE_PAGE, message=runs.DATABASE_UNREACHABLE)
    return page, 503, {"Retry-After": "30"}


DATABASE_UNAVAILABLE_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Settings could not be loaded</title></head>
<body><main><h1>The settings could not be loaded or saved</h1><p>{{ message }} Nothing was changed.</p>
<p><a href="">Try again</a></p></main></body></html>"""
