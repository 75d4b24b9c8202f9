"""The demo portal's own tenants and users (a real host has its own tables; the plugin never reads these)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from itam_admin.db import db, utcnow


class Tenant(db.Model):
    __tablename__ = "portal_tenant"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))


class User(db.Model):
    __tablename__ = "portal_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    tenant_id: Mapped[int] = mapped_column(ForeignKey("portal_tenant.id"))
    permissions: Mapped[str] = mapped_column(Text, default="")

    tenant: Mapped[Tenant] = relationship()

    @property
    def permission_set(self) -> frozenset[str]:
        return frozenset(p for p in self.permissions.split() if p)


class PortalSession(db.Model):
    """One signed-in browser. Its cookie carries a random token whose SHA-256 is `id`: logging out deletes the row,
    so a cookie copied before stops working, and the table alone gives no usable cookie."""

    __tablename__ = "portal_session"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("portal_user.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    user: Mapped[User] = relationship()
