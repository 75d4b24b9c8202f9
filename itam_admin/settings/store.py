"""Reading and saving a tenant's settings rows. A save is all or nothing and one save of a tenant runs at a time, so
parallel saves never mix two forms' values; secrets are only decrypted by `load_secrets` and never logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import undefer
from sqlalchemy.orm.attributes import flag_modified

from itam_admin.datatypes import DATA_TYPE_NAMES
from itam_admin.db import db, utcnow
from itam_admin.identity import Identity
from itam_admin.settings import audit
from itam_admin.settings.models import ComplianceTenantSetting, ConnectionState
from itam_admin.settings.values import (
    CLIENT_ID,
    CLIENT_SECRET,
    CONFIGURED_AT,
    EXPORT_DATA_TYPES,
    INSTANCE_URL,
    TOKEN,
    USE_CUSTOM_CREDENTIALS,
    USER_NAME,
    Secrets,
    ServiceNowSettings,
    SettingsChange,
)

# How long a save waits for another save of the same tenant, or for a database another process is writing to.
SAVE_LOCK_WAIT_SECONDS = 10.0

log = logging.getLogger("itam_admin.settings")


class SettingsNotSaved(Exception):
    """The database was locked or unreachable: nothing of the save was stored; trying again later may work."""

    def __init__(self) -> None:
        super().__init__("Could not save the settings right now; try again. Nothing was changed.")


def _rows(tenant_id: str, fresh: bool = False, secrets: bool = False) -> dict[str, ComplianceTenantSetting]:
    query = select(ComplianceTenantSetting).where(ComplianceTenantSetting.tenant_id == tenant_id)
    if secrets:
        query = query.options(undefer(ComplianceTenantSetting.secret))
    if fresh:  # read what is committed now, not what this session loaded before it took the tenant's lock
        query = query.execution_options(populate_existing=True)
    return {row.name: row for row in db.session.scalars(query)}


def load_settings(tenant_id: str) -> ServiceNowSettings:
    return _settings_from(_rows(tenant_id))


def configured_settings() -> dict[str, ServiceNowSettings]:
    """Every tenant with saved ServiceNow settings and its settings, in tenant order, read in one query (the weekly
    scheduler looks at every tenant on every pass; one query per tenant made a pass cost ~1 ms per tenant)."""
    configured = select(ComplianceTenantSetting.tenant_id).where(ComplianceTenantSetting.name == INSTANCE_URL)
    query = (
        select(ComplianceTenantSetting)
        .where(ComplianceTenantSetting.tenant_id.in_(configured.scalar_subquery()))
        .order_by(ComplianceTenantSetting.tenant_id)
    )
    by_tenant: dict[str, dict[str, ComplianceTenantSetting]] = {}
    for row in db.session.scalars(query):
        by_tenant.setdefault(row.tenant_id, {})[row.name] = row
    return {tenant_id: _settings_from(rows) for tenant_id, rows in by_tenant.items()}


def _settings_from(rows: dict[str, ComplianceTenantSetting]) -> ServiceNowSettings:
    if not rows:
        return ServiceNowSettings()

    def plain(name: str) -> str:
        row = rows.get(name)
        return row.value or "" if row is not None else ""

    types = json.loads(plain(EXPORT_DATA_TYPES) or "[]")
    token_row = rows.get(TOKEN)
    return ServiceNowSettings(
        instance_url=plain(INSTANCE_URL),
        username=plain(USER_NAME),
        has_token=token_row is not None,
        use_custom_credentials=plain(USE_CUSTOM_CREDENTIALS) == "true",
        has_client_id=CLIENT_ID in rows,
        has_client_secret=CLIENT_SECRET in rows,
        export_data_types=tuple(t for t in DATA_TYPE_NAMES if t in types),
        token_saved_at=token_row.updated_at if token_row is not None else None,
        saved_at=max(row.updated_at for row in rows.values()),
        configured_at=datetime.fromisoformat(plain(CONFIGURED_AT)) if plain(CONFIGURED_AT) else None,
    )


def load_secrets(tenant_id: str) -> Secrets:
    """The tenant's secrets in clear (crypto.SecretUnreadable when no configured key opens one)."""
    rows = _rows(tenant_id, secrets=True)

    def secret(name: str) -> str:
        row = rows.get(name)
        return row.secret or "" if row is not None else ""

    return Secrets(token=secret(TOKEN), client_id=secret(CLIENT_ID), client_secret=secret(CLIENT_SECRET))


def save_settings(tenant_id: str, change: SettingsChange, actor: Identity) -> list[str]:
    """Store the change and its audit records in one transaction, holding the tenant's lock from the read of the
    stored values to the commit; return the names of settings that changed. Raise SettingsNotSaved when the database
    is locked or unreachable (then nothing was stored)."""
    try:
        try:
            return _save_once(tenant_id, change, actor)
        except IntegrityError:
            # Another writer inserted a row of this tenant without taking the lock: read again, once.
            _rollback()
            return _save_once(tenant_id, change, actor)
    except (IntegrityError, OperationalError, InterfaceError, PoolTimeoutError) as error:
        _rollback()
        log.warning(
            "settings of tenant %s not saved: %s", tenant_id, type(getattr(error, "orig", None) or error).__name__
        )
        raise SettingsNotSaved() from None


def _save_once(tenant_id: str, change: SettingsChange, actor: Identity) -> list[str]:
    _lock_tenant(tenant_id)
    changed = _apply_change(tenant_id, change, actor)
    _note_saved(tenant_id, bool(changed))
    db.session.commit()
    return changed


def _note_saved(tenant_id: str, changed: bool) -> None:
    """In the save's transaction: changed settings are not checked yet (what was seen of the old ones says nothing
    of the new), and any save ends "needs a new token", so weekly exports run again (SPEC 7)."""
    row = db.session.scalar(select(ConnectionState).where(ConnectionState.tenant_id == tenant_id))
    if row is None:
        if not changed:
            return
        row = ConnectionState(tenant_id=tenant_id)
        db.session.add(row)
    if changed:
        row.state, row.checked_at, row.checked_by, row.message, row.error_kind = "unchecked", None, None, None, None
        row.settings_changed_at = utcnow()
    row.needs_new_token = False


def _rollback() -> None:
    try:
        db.session.rollback()
    except (OperationalError, InterfaceError):  # the connection is gone already; the pool drops it
        log.info("rollback after a failed settings save failed too", exc_info=True)


def _lock_tenant(tenant_id: str) -> None:
    """Take the tenant's write lock for the rest of the transaction, waiting at most SAVE_LOCK_WAIT_SECONDS.

    PostgreSQL: a transaction-scoped advisory lock per tenant (it exists before the tenant's first row does).
    SQLite: BEGIN IMMEDIATE, the database's write lock, taken before the read instead of at the first write."""
    connection = db.session.connection()
    wait_ms = max(1, int(SAVE_LOCK_WAIT_SECONDS * 1000))
    if connection.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"itam-settings:{tenant_id}".encode()).digest()[:8], "big", signed=True)
        connection.execute(text("SELECT set_config('lock_timeout', :wait, true)"), {"wait": f"{wait_ms}ms"})
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif connection.dialect.name == "sqlite":
        driver = connection.connection.driver_connection
        if driver.in_transaction:
            return  # this transaction has written already, so it holds the write lock
        previous = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
        connection.exec_driver_sql(f"PRAGMA busy_timeout = {wait_ms}")
        try:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        finally:
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {int(previous)}")


def _apply_change(tenant_id: str, change: SettingsChange, actor: Identity) -> list[str]:
    rows = _rows(tenant_id, fresh=True, secrets=True)
    now = utcnow()
    plain = {
        INSTANCE_URL: change.instance_url,
        USER_NAME: change.username,
        USE_CUSTOM_CREDENTIALS: "true" if change.use_custom_credentials else "false",
        EXPORT_DATA_TYPES: json.dumps([t for t in DATA_TYPE_NAMES if t in change.export_data_types]),
    }
    if CONFIGURED_AT not in rows:
        plain[CONFIGURED_AT] = now.isoformat(timespec="seconds")
    secrets = {TOKEN: change.token, CLIENT_ID: change.client_id, CLIENT_SECRET: change.client_secret}
    changed: list[str] = []

    def put(name: str, value: str | None, secret: str | None) -> None:
        row = rows.get(name)
        if row is None:
            db.session.add(
                ComplianceTenantSetting(
                    tenant_id=tenant_id, name=name, value=value, secret=secret, updated_at=now, updated_by=actor.user_id
                )
            )
            action = "set"
        else:
            row.value, row.secret, row.updated_at, row.updated_by = value, secret, now, actor.user_id
            action = "changed"
        changed.append(name)
        audit.record(tenant_id, name, action, actor, now, value)  # never a secret's value in the audit trail

    for name, value in plain.items():
        if name not in rows or rows[name].value != value:
            put(name, value, None)

    for name, value in secrets.items():
        row = rows.get(name)
        if value is None or (row is not None and value and row.secret == value):
            continue  # kept as stored
        if value:
            put(name, None, value)
        elif row is not None:
            db.session.delete(row)
            changed.append(name)
            audit.record(tenant_id, name, "cleared", actor, now)
    return changed


def replace_token(tenant_id: str, token: str) -> None:
    """Store a refresh token that ServiceNow rotated at once; a new token starts a new lifetime."""
    row = db.session.scalar(
        select(ComplianceTenantSetting).where(
            ComplianceTenantSetting.tenant_id == tenant_id, ComplianceTenantSetting.name == TOKEN
        )
    )
    if row is None:
        return
    now = utcnow()
    row.secret, row.updated_at, row.updated_by = token, now, audit.SERVICENOW.user_id
    audit.record(tenant_id, TOKEN, "changed", audit.SERVICENOW, now)
    db.session.commit()


def rotate_secrets() -> int:
    """Re-encrypt every stored secret with the first key, in one transaction; return how many were rewritten
    (crypto.SecretUnreadable, and nothing changed, when one cannot be read)."""
    count = 0
    query = (
        select(ComplianceTenantSetting)
        .where(ComplianceTenantSetting.value.is_(None))
        .options(undefer(ComplianceTenantSetting.secret))
    )
    for row in db.session.scalars(query):
        flag_modified(row, "secret")  # written again, so the column type encrypts it with the first key
        count += 1
    db.session.commit()
    return count
