"""The settings tables: one ComplianceTenantSetting row per tenant and setting name, and the audit trail.

Secrets live only in the `secret` column, whose type encrypts on the way in and decrypts on the way out; plain
settings live in `value`. Nothing here logs a value.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from itam_admin.crypto import EncryptedText
from itam_admin.db import db, utcnow


class ComplianceTenantSetting(db.Model):
    """One setting of one tenant: `value` for plain settings, `secret` (encrypted at rest) for secrets."""

    __tablename__ = "compliance_tenant_setting"
    __table_args__ = (UniqueConstraint("tenant_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[str | None] = mapped_column(Text)
    # Deferred: pages read settings without decrypting (or failing to decrypt) a secret they do not show.
    secret: Mapped[str | None] = mapped_column(EncryptedText, deferred=True)
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


class ConnectionState(db.Model):
    """The connection to ServiceNow as last observed for one tenant (settings/connection.py reads and writes it; a
    save of the settings resets it in the save's transaction). Messages are the ones made for tenant admins."""

    __tablename__ = "itam_connection_state"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="unchecked")  # unchecked, ok, failed
    checked_at: Mapped[datetime | None] = mapped_column(DateTime)
    checked_by: Mapped[str | None] = mapped_column(String(16))  # test, run
    message: Mapped[str | None] = mapped_column(Text)
    error_kind: Mapped[str | None] = mapped_column(String(40))
    needs_new_token: Mapped[bool] = mapped_column(Boolean, default=False)
    # When a save last changed the settings: what a test or run saw of older settings is not recorded after it.
    settings_changed_at: Mapped[datetime | None] = mapped_column(DateTime)
