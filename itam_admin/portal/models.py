"""The demo portal's own tenants and users (a real host has its own tables; the plugin never reads these)."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from itam_admin.db import db


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
