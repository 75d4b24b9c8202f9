"""The Test connection action: the form's values (unsaved ones win, masks use the stored secret) are tried against
the instance without saving or exporting: the token, the user, then what the instance has of the connector's
ServiceNow app for the chosen data types. Rate-limited per tenant; never shows or logs a secret, never sends a stored
secret to a host other than the stored Instance URL, and never changes the settings (not even with a rotated token);
a test of exactly the stored settings records what it saw as the tenant's connection state."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from itam_admin.integrations.forms import ServiceNowSettingsForm
from itam_admin.plugin import current_plugin
from itam_admin.servicenow.app_check import Finding, check_app
from itam_admin.servicenow.errors import ServiceNowError
from itam_admin.settings import connection
from itam_admin.settings.store import load_secrets
from itam_admin.settings.values import Secrets, ServiceNowSettings
from itam_admin.tenant_client import client_for, credentials, trial_token_manager

TESTS_PER_MINUTE = 6
# The whole test (token grant, user lookup, retries) ends within this, whatever the server does, so the page answers
# within ~30 s and a few slow clicks cannot hold every web worker.
TEST_DEADLINE_SECONDS = 25.0
_local_hits: dict[str, list[float]] = {}
_local_guard = threading.Lock()


@dataclass(frozen=True)
class TestResult:
    """`ok` when the connection works and nothing the chosen data types need is missing in ServiceNow; `connected`
    when the token and the user worked. The app check's findings are plain text, so the result can be kept for the
    page a POST redirects to and rebuilt with TestResult(**asdict(result)): `app_gaps` and `app_unverified` are
    (problems, fix) pairs, problems sharing one fix grouped."""

    ok: bool
    message: str
    detail: str | None = None
    expires_at: str | None = None
    connected: bool = False
    app_summary: str | None = None
    app_gaps: tuple[tuple[tuple[str, ...], str], ...] = ()
    app_unverified: tuple[tuple[tuple[str, ...], str], ...] = ()
    error_kind: str | None = None  # the ServiceNowError's kind when the test failed with one


def _allowed(tenant_id: str) -> bool:
    """At most TESTS_PER_MINUTE tests per tenant and minute (in Redis when it answers, else in this process)."""
    try:
        redis = current_plugin().redis
        key = f"itam:test-connection:{tenant_id}:{int(time.time() // 60)}"
        count = redis.incr(key)
        redis.expire(key, 120)
        return count <= TESTS_PER_MINUTE
    except Exception:
        now = time.monotonic()
        with _local_guard:
            hits = [t for t in _local_hits.get(tenant_id, []) if now - t < 60]
            hits.append(now)
            _local_hits[tenant_id] = hits
            return len(hits) <= TESTS_PER_MINUTE


def _same_instance(form: ServiceNowSettingsForm, stored: ServiceNowSettings) -> bool:
    return bool(stored.instance_url) and form.normalised_instance_url == stored.instance_url


def refuse_stored_secrets_elsewhere(form: ServiceNowSettingsForm, stored: ServiceNowSettings) -> bool:
    """Mark each masked field whose stored secret the test would send to an Instance URL other than the stored one;
    True when one was marked (the test must then send nothing). Typed secrets may go to the typed host."""
    if _same_instance(form, stored):
        return False
    wanted = [(form.token, stored.has_token, "Paste the token again")]
    if form.use_custom_credentials.data:
        wanted += [
            (form.client_id, stored.has_client_id, "Enter the Client ID again"),
            (form.client_secret, stored.has_client_secret, "Enter the Client Secret again"),
        ]
    marked = False
    for field, has_stored, ask in wanted:
        if field.new_value is None and has_stored:
            field.errors = [
                *field.errors,
                f"{ask} to test a different instance: the stored one is only sent to the saved Instance URL.",
            ]
            marked = True
    return marked


@connection.records_test  # the outcome of a test of the stored settings becomes the tenant's connection state
def test_connection(tenant_id: str, form: ServiceNowSettingsForm, stored: ServiceNowSettings) -> TestResult:
    if not _allowed(tenant_id):
        return TestResult(False, "Too many connection tests in the last minute; wait a minute and try again.")
    change = form.change()
    # The stored secrets belong to the stored instance: for any other host only what was typed is sent (the view
    # already asked for the missing ones; this keeps them home should a caller forget). The operator's default client
    # may go to the typed host: the form accepted it only if it passed the allowed-host rule.
    if _same_instance(form, stored):
        stored_secrets = load_secrets(tenant_id)
    else:
        stored_secrets = Secrets()
    # SettingsChange already cleared the Client ID and Secret when custom credentials are unticked; None means "use
    # the stored one".
    secrets = Secrets(
        token=change.token or stored_secrets.token,
        client_id=stored_secrets.client_id if change.client_id is None else change.client_id,
        client_secret=stored_secrets.client_secret if change.client_secret is None else change.client_secret,
    )
    trial = ServiceNowSettings(
        instance_url=change.instance_url,
        username=change.username,
        has_token=bool(secrets.token),
        use_custom_credentials=change.use_custom_credentials,
        export_data_types=change.export_data_types,
    )
    creds = credentials(trial, secrets)
    rotated: list[bool] = []
    # A private token cache that saves nothing: a refresh token rotated by the tested host is only noted.
    client = None
    try:
        client = client_for(
            tenant_id,
            creds,
            tokens=trial_token_manager(lambda _tenant, _token: rotated.append(True)),
            deadline_seconds=TEST_DEADLINE_SECONDS,
        )
        # One budget for the whole test (token, user, app check), so the page answers in time whatever the server.
        with client.budget(TEST_DEADLINE_SECONDS):
            check = client.check_connection()
            app = None
            if check.ok and trial.export_data_types:
                app = check_app(client, trial.export_data_types, user_sys_id=check.sys_id or None)
    except ServiceNowError as error:
        return TestResult(False, error.message + _rotation_note(rotated), error.detail, error_kind=error.kind.value)
    finally:
        if client is not None:
            client.close()
    return TestResult(
        ok=check.ok and (app is None or app.installed),
        message=check.message + _rotation_note(rotated),
        expires_at=check.token_expires_at.strftime("%Y-%m-%d %H:%M UTC"),
        connected=check.ok,
        app_summary=app.summary if app else None,
        app_gaps=_grouped(app.gaps) if app else (),
        app_unverified=_grouped(app.unverified) if app else (),
    )


def _grouped(findings: tuple[Finding, ...]) -> tuple[tuple[tuple[str, ...], str], ...]:
    """(problems, fix) pairs in the order first seen: three missing staging tables need one fix, said once."""
    by_fix: dict[str, list[str]] = {}
    for finding in findings:
        by_fix.setdefault(finding.fix, []).append(finding.problem)
    return tuple((tuple(problems), fix) for fix, problems in by_fix.items())


def _rotation_note(rotated: list[bool]) -> str:
    if not rotated:
        return ""
    return (
        " ServiceNow also sent a new refresh token, which was not saved (Test connection saves nothing). If exports"
        " later say the token was refused, generate a new token in ServiceNow, paste it in Token and save."
    )
