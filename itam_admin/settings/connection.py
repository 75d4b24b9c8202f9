"""The connection to ServiceNow as last observed per tenant (SPEC 7): `unchecked` until a Test connection of the stored
settings or a run tries it (and again after the settings change), then `ok` or `failed` with the reason and when; and
"needs a new token" after ServiceNow refused the grant, until the settings are saved again.

Never stores or shows a secret: messages are the classified ones made for tenant admins (servicenow/errors.py).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from itam_admin.crypto import SecretUnreadable
from itam_admin.db import db, utcnow
from itam_admin.servicenow.errors import NEEDS_NEW_TOKEN_KINDS, ErrorKind, ServiceNowError
from itam_admin.settings.models import ConnectionState
from itam_admin.settings.store import load_secrets, load_settings
from itam_admin.settings.values import SettingsChange

UNCHECKED, OK, FAILED = "unchecked", "ok", "failed"
BY_TEST, BY_RUN = "test", "run"
REFUSED_KINDS = frozenset(kind.value for kind in NEEDS_NEW_TOKEN_KINDS)
APP_NOT_READY = ErrorKind.APP_NOT_INSTALLED.value

log = logging.getLogger("itam_admin.settings")


@dataclass(frozen=True)
class Connection:
    """What the tab, the status JSON and the weekly schedule know of a tenant's connection."""

    state: str = UNCHECKED
    checked_at: datetime | None = None
    checked_by: str | None = None
    message: str | None = None
    error_kind: str | None = None
    needs_new_token: bool = False

    def as_json(self) -> dict:
        return {
            "state": self.state,
            "checked_at": self.checked_at.strftime("%Y-%m-%dT%H:%M:%SZ") if self.checked_at else None,
            "message": self.message,
            "needs_new_token": self.needs_new_token,
        }

    @property
    def weekly_skip_reason(self) -> str | None:
        """Why the weekly export does not run, or None when it may."""
        if not self.needs_new_token:
            return None
        when = f" on {self.checked_at.strftime('%Y-%m-%d %H:%M')} UTC" if self.checked_at else ""
        return (
            f"ServiceNow refused the token{when}, and the settings were not saved since. Generate a new token in "
            "ServiceNow, paste it in Token and save; weekly exports run again after that save."
        )


@dataclass(frozen=True)
class Badge:
    """The badge of the ServiceNow section: its words, its style and the full reason for its title."""

    text: str
    css: str  # ok, failed, muted (itam.css)
    title: str | None = None


def connection_of(tenant_id: str) -> Connection:
    row = _row(tenant_id)
    if row is None:
        return Connection()
    return Connection(
        state=row.state or UNCHECKED,
        checked_at=row.checked_at,
        checked_by=row.checked_by,
        message=row.message,
        error_kind=row.error_kind,
        needs_new_token=bool(row.needs_new_token),
    )


def record_ok(tenant_id: str, message: str, *, by: str, seen_from: datetime) -> bool:
    """The stored settings worked (token granted and one read answered). Clears "needs a new token": ServiceNow
    accepts them again. False when the settings changed after `seen_from` (then nothing is recorded)."""
    return _record(tenant_id, OK, message, None, by, seen_from)


def record_failure(tenant_id: str, error: ServiceNowError, *, by: str, seen_from: datetime, said: str = "") -> bool:
    """The stored settings failed with `error` (its message, then `said`: ServiceNow's words); a refused grant (token
    or OAuth client) also marks the tenant as needing a new token. False when the settings changed after
    `seen_from`."""
    return _record(tenant_id, FAILED, error.message + said, error.kind.value, by, seen_from)


def record_test(tenant_id: str, change: SettingsChange, result, started_at: datetime) -> bool:
    """Record a Test connection's outcome (`result`: connection_check.TestResult) when it tried exactly the stored
    settings; a test of values not saved says nothing of the stored ones, so it records nothing (returns False)."""
    if not _is_stored(tenant_id, change):
        return False
    kind = getattr(result, "error_kind", None)
    if result.ok:
        return _record(tenant_id, OK, result.message, None, BY_TEST, started_at)
    message = result.message
    if getattr(result, "connected", False) and getattr(result, "app_summary", None):
        # Connected, but what the chosen data types need in ServiceNow is missing (the app check, issue #13).
        message, kind = f"{result.message} {result.app_summary}", kind or APP_NOT_READY
    return _record(tenant_id, FAILED, message, kind, BY_TEST, started_at)


def badge(connection: Connection, configured: bool, now: datetime | None = None) -> Badge:
    """The badge's words: Not set up, Not checked yet, Connected, checked 2 h ago, Token refused on <date>, Not ready
    to export (the app check), Connection failed, checked 5 min ago; the reason goes in its title."""
    now = now or utcnow()
    if not configured:
        return Badge("Not set up", "muted")
    if connection.state == OK and connection.checked_at:
        return Badge(f"Connected, checked {ago(now - connection.checked_at)}", "ok", connection.message)
    if connection.state == FAILED and connection.checked_at:
        if connection.needs_new_token or connection.error_kind in REFUSED_KINDS:
            return Badge(f"Token refused on {_date(connection.checked_at)}", "failed", connection.message)
        if connection.error_kind == APP_NOT_READY:
            return Badge(
                f"Not ready to export, checked {ago(now - connection.checked_at)}", "failed", connection.message
            )
        return Badge(f"Connection failed, checked {ago(now - connection.checked_at)}", "failed", connection.message)
    return Badge("Not checked yet", "muted", "Use Test connection, or export, to check the saved settings.")


def ago(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} days ago"


def _date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _row(tenant_id: str) -> ConnectionState | None:
    return db.session.scalar(select(ConnectionState).where(ConnectionState.tenant_id == tenant_id))


def _record(tenant_id: str, state: str, message: str, kind: str | None, by: str, seen_from: datetime) -> bool:
    for _attempt in range(2):  # a first row written by a save or another observer at the same moment: once more
        row = _row(tenant_id)
        if row is None:
            row = ConnectionState(tenant_id=tenant_id)
            db.session.add(row)
        elif row.settings_changed_at is not None and row.settings_changed_at > seen_from:
            return False  # the settings changed while this was tried: what it saw is of the old ones
        row.state, row.message, row.error_kind, row.checked_by = state, message, kind, by
        row.checked_at = utcnow()
        row.needs_new_token = kind in REFUSED_KINDS
        try:
            db.session.commit()
            return True
        except IntegrityError:
            db.session.rollback()
    log.warning("could not record the connection state of tenant %s", tenant_id)
    return False


def _is_stored(tenant_id: str, change: SettingsChange) -> bool:
    """Whether a test of `change` tries the stored settings: same instance, user, OAuth client and data types, and
    no secret typed other than the stored one."""
    stored = load_settings(tenant_id)
    same = (
        stored.has_token
        and change.instance_url == stored.instance_url
        and change.username == stored.username
        and change.use_custom_credentials == stored.use_custom_credentials
        and set(change.export_data_types) == set(stored.export_data_types)
    )
    if not same:
        return False
    typed = [change.token]
    if change.use_custom_credentials:
        typed += [change.client_id, change.client_secret]
    if all(value is None for value in typed):
        return True
    try:
        secrets = load_secrets(tenant_id)
    except SecretUnreadable:
        return False
    held = [secrets.token, secrets.client_id, secrets.client_secret][: len(typed)]
    return all(value is None or value == kept for value, kept in zip(typed, held, strict=True))


def records_test(test: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps Test connection (`test(tenant_id, form, stored) -> TestResult`) so each test that reached ServiceNow
    records its outcome through record_test; a test refused before sending anything (too many tests) records
    nothing."""

    @functools.wraps(test)
    def recorded(tenant_id: str, form, stored, *args, **kwargs):
        started_at = utcnow()
        result = test(tenant_id, form, stored, *args, **kwargs)
        # expires_at: ServiceNow granted a token; error_kind: it answered with a fault. Neither: nothing was asked.
        if getattr(result, "expires_at", None) or getattr(result, "error_kind", None):
            record_test(tenant_id, form.change(), result, started_at)
        return result

    return recorded
