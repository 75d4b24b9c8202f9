"""A tenant's ServiceNow settings in the ComplianceTenantSetting table, and their audit trail.

Secrets (Token, Client ID, Client Secret) are stored encrypted and only decrypted by `load_secrets`;
nothing here logs them or writes them to the audit trail. A save is all or nothing and one save of a tenant runs at
a time, so parallel saves never mix two forms' values.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, String, Text, UniqueConstraint, select, text
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Mapped, mapped_column

from itam_admin.crypto import Crypto
from itam_admin.db import db, utcnow
from itam_admin.identity import Identity

DATA_TYPE_CHOICES = (
    ("hardware_inventory", "Hardware inventory"),
    ("installed_applications", "Installed applications"),
    ("contracts", "Contracts"),
)
DATA_TYPE_NAMES = tuple(value for value, _ in DATA_TYPE_CHOICES)

INSTANCE_URL = "InstanceUrl"
USER_NAME = "UserName"
TOKEN = "Token"
USE_CUSTOM_CREDENTIALS = "UseCustomCredentials"
CLIENT_ID = "ClientId"
CLIENT_SECRET = "ClientSecret"
EXPORT_DATA_TYPES = "ExportDataTypes"
CONFIGURED_AT = "ConfiguredAt"  # first save, never changed: the weekly schedule starts the Sunday after it
SECRET_NAMES = frozenset({TOKEN, CLIENT_ID, CLIENT_SECRET})
# How long a save waits for another save of the same tenant, or for a database another process is writing to.
SAVE_LOCK_WAIT_SECONDS = 10.0

log = logging.getLogger("itam_admin.settings")


class SettingsNotSaved(Exception):
    """The database was locked or unreachable: nothing of the save was stored; trying again later may work."""

    def __init__(self) -> None:
        super().__init__("Could not save the settings right now; try again. Nothing was changed.")


class ComplianceTenantSetting(db.Model):
    """One setting of one tenant; `value` holds ciphertext when `encrypted` is set."""

    __tablename__ = "compliance_tenant_setting"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(Text)
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(128))


class SettingAudit(db.Model):
    """Who changed which setting when; `value` only for settings that are not secret."""

    __tablename__ = "setting_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(16))  # set, changed, cleared
    value: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str] = mapped_column(String(128))
    user_name: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


@dataclass(frozen=True)
class ServiceNowSettings:
    """What the page and the exporter need to know of a tenant's settings, secrets left out."""

    instance_url: str = ""
    username: str = ""
    has_token: bool = False
    use_custom_credentials: bool = False
    has_client_id: bool = False
    has_client_secret: bool = False
    export_data_types: tuple[str, ...] = ()
    token_saved_at: datetime | None = None
    saved_at: datetime | None = None
    configured_at: datetime | None = None

    @property
    def export_disabled_reason(self) -> str | None:
        missing = [
            label
            for label, present in (
                ("Instance URL", self.instance_url),
                ("Username", self.username),
                ("Token", self.has_token),
            )
            if not present
        ]
        if missing:
            return f"Save {', '.join(missing)} to enable exports."
        if not self.export_data_types:
            return "Choose at least one data type to export, then save."
        return None

    @property
    def export_enabled(self) -> bool:
        return self.export_disabled_reason is None

    @property
    def uses_custom_credentials(self) -> bool:
        return self.use_custom_credentials and self.has_client_id and self.has_client_secret


@dataclass(frozen=True)
class Secrets:
    token: str = field(default="", repr=False)
    client_id: str = field(default="", repr=False)
    client_secret: str = field(default="", repr=False)


def _rows(tenant_id: str, fresh: bool = False) -> dict[str, ComplianceTenantSetting]:
    query = select(ComplianceTenantSetting).where(ComplianceTenantSetting.tenant_id == tenant_id)
    if fresh:  # read what is committed now, not what this session loaded before it took the tenant's lock
        query = query.execution_options(populate_existing=True)
    return {row.name: row for row in db.session.scalars(query)}


def load_settings(tenant_id: str) -> ServiceNowSettings:
    rows = _rows(tenant_id)
    if not rows:
        return ServiceNowSettings()

    def text(name: str) -> str:
        row = rows.get(name)
        return row.value if row is not None else ""

    types = json.loads(text(EXPORT_DATA_TYPES) or "[]")
    token_row = rows.get(TOKEN)
    return ServiceNowSettings(
        instance_url=text(INSTANCE_URL),
        username=text(USER_NAME),
        has_token=token_row is not None,
        use_custom_credentials=text(USE_CUSTOM_CREDENTIALS) == "true",
        has_client_id=CLIENT_ID in rows,
        has_client_secret=CLIENT_SECRET in rows,
        export_data_types=tuple(t for t in DATA_TYPE_NAMES if t in types),
        token_saved_at=token_row.updated_at if token_row is not None else None,
        saved_at=max(row.updated_at for row in rows.values()),
        configured_at=datetime.fromisoformat(text(CONFIGURED_AT)) if text(CONFIGURED_AT) else None,
    )


def load_secrets(tenant_id: str, crypto: Crypto) -> Secrets:
    rows = _rows(tenant_id)

    def secret(name: str) -> str:
        row = rows.get(name)
        return crypto.decrypt(row.value) if row is not None else ""

    return Secrets(token=secret(TOKEN), client_id=secret(CLIENT_ID), client_secret=secret(CLIENT_SECRET))


@dataclass
class SettingsChange:
    """What a Save asks for; a secret of None keeps the stored one, an empty string clears it."""

    instance_url: str
    username: str
    use_custom_credentials: bool
    export_data_types: tuple[str, ...]
    token: str | None = field(default=None, repr=False)
    client_id: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)


def save_settings(tenant_id: str, change: SettingsChange, actor: Identity, crypto: Crypto) -> list[str]:
    """Store the change and its audit records in one transaction, holding the tenant's lock from the read of the
    stored values to the commit; return the names of settings that changed. Raise SettingsNotSaved when the database
    is locked or unreachable (then nothing was stored)."""
    try:
        try:
            return _save_once(tenant_id, change, actor, crypto)
        except IntegrityError:
            # Another writer inserted a row of this tenant without taking the lock: read again, once.
            _rollback()
            return _save_once(tenant_id, change, actor, crypto)
    except (IntegrityError, OperationalError, InterfaceError, PoolTimeoutError) as error:
        _rollback()
        log.warning(
            "settings of tenant %s not saved: %s", tenant_id, type(getattr(error, "orig", None) or error).__name__
        )
        raise SettingsNotSaved() from None


def _save_once(tenant_id: str, change: SettingsChange, actor: Identity, crypto: Crypto) -> list[str]:
    _lock_tenant(tenant_id)
    changed = _apply_change(tenant_id, change, actor, crypto)
    db.session.commit()
    return changed


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


def _apply_change(tenant_id: str, change: SettingsChange, actor: Identity, crypto: Crypto) -> list[str]:
    rows = _rows(tenant_id, fresh=True)
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
    if not change.use_custom_credentials:
        secrets[CLIENT_ID] = secrets[CLIENT_SECRET] = ""
    changed: list[str] = []

    def audit(name: str, action: str, value: str | None) -> None:
        changed.append(name)
        db.session.add(
            SettingAudit(
                tenant_id=tenant_id,
                name=name,
                action=action,
                value=value,
                user_id=actor.user_id,
                user_name=actor.display_name,
                at=now,
            )
        )

    def put(name: str, stored: str, encrypted: bool, audit_value: str | None) -> None:
        row = rows.get(name)
        if row is None:
            db.session.add(
                ComplianceTenantSetting(
                    tenant_id=tenant_id,
                    name=name,
                    value=stored,
                    encrypted=encrypted,
                    updated_at=now,
                    updated_by=actor.user_id,
                )
            )
            audit(name, "set", audit_value)
        else:
            row.value, row.updated_at, row.updated_by = stored, now, actor.user_id
            audit(name, "changed", audit_value)

    for name, value in plain.items():
        if name not in rows or rows[name].value != value:
            put(name, value, False, value)

    for name, value in secrets.items():
        row = rows.get(name)
        if value is None or (row is not None and value and crypto.decrypt(row.value) == value):
            continue  # kept as stored
        if value:
            put(name, crypto.encrypt(value), True, None)  # never the secret's value in the audit trail
        elif row is not None:
            db.session.delete(row)
            audit(name, "cleared", None)
    return changed


def replace_token(tenant_id: str, token: str, crypto: Crypto) -> None:
    """Store a refresh token that ServiceNow rotated at once; a new token starts a new lifetime."""
    row = db.session.scalar(
        select(ComplianceTenantSetting).where(
            ComplianceTenantSetting.tenant_id == tenant_id, ComplianceTenantSetting.name == TOKEN
        )
    )
    if row is None:
        return
    row.value = crypto.encrypt(token)
    row.updated_at = utcnow()
    row.updated_by = "servicenow"
    db.session.add(
        SettingAudit(tenant_id=tenant_id, name=TOKEN, action="changed", user_id="servicenow", user_name="ServiceNow")
    )
    db.session.commit()


def rotate_encryption(crypto: Crypto) -> int:
    """Re-encrypt every stored secret with the first key, in one transaction; return how many were rewritten."""
    count = 0
    for row in db.session.scalars(select(ComplianceTenantSetting).where(ComplianceTenantSetting.encrypted)):
        row.value = crypto.rotate(row.value)
        count += 1
    db.session.commit()
    return count


def configured_tenants() -> list[str]:
    """Tenants that have saved ServiceNow settings (the weekly schedule's candidates)."""
    return list(
        db.session.scalars(
            select(ComplianceTenantSetting.tenant_id)
            .where(ComplianceTenantSetting.name == INSTANCE_URL)
            .order_by(ComplianceTenantSetting.tenant_id)
        )
    )
