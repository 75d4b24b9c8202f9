"""The Test connection action: the form's values (unsaved ones win, masks use the stored secret) are tried against
the instance without saving or exporting. Rate-limited per tenant; never shows or logs a secret."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from itam_admin import current_plugin
from itam_admin.connection import client_for, credentials, token_manager
from itam_admin.integrations.forms import ServiceNowSettingsForm
from itam_admin.servicenow.errors import ServiceNowError
from itam_admin.tenant_settings import Secrets, ServiceNowSettings, load_secrets

TESTS_PER_MINUTE = 6
_local_hits: dict[str, list[float]] = {}
_local_guard = threading.Lock()


@dataclass(frozen=True)
class TestResult:
    ok: bool
    message: str
    detail: str | None = None
    expires_at: str | None = None


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


def test_connection(tenant_id: str, form: ServiceNowSettingsForm, stored: ServiceNowSettings) -> TestResult:
    if not _allowed(tenant_id):
        return TestResult(False, "Too many connection tests in the last minute; wait a minute and try again.")
    change = form.change()
    stored_secrets = load_secrets(tenant_id, current_plugin().crypto)
    custom = change.use_custom_credentials
    secrets = Secrets(
        token=change.token or stored_secrets.token,
        client_id=(form.client_id.new_value or stored_secrets.client_id) if custom else "",
        client_secret=(form.client_secret.new_value or stored_secrets.client_secret) if custom else "",
    )
    trial = ServiceNowSettings(
        instance_url=change.instance_url,
        username=change.username,
        has_token=bool(secrets.token),
        use_custom_credentials=custom,
        export_data_types=change.export_data_types,
    )
    creds = credentials(trial, secrets)
    # A private token cache: a test must not replace the tokens that exports of the stored settings use.
    client = client_for(tenant_id, creds, tokens=token_manager(use_redis=False))
    try:
        check = client.check_connection()
    except ServiceNowError as error:
        return TestResult(False, error.message, error.detail)
    finally:
        client.close()
    return TestResult(check.ok, check.message, None, check.token_expires_at.strftime("%Y-%m-%d %H:%M UTC"))
