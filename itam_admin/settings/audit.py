"""The settings' audit trail: who set, changed or cleared which setting and when. A secret's value is never
written here, only that it changed."""

from __future__ import annotations

from datetime import datetime

from itam_admin.db import db
from itam_admin.identity import Identity
from itam_admin.settings.models import SettingAudit

SERVICENOW = Identity(user_id="servicenow", display_name="ServiceNow", tenant_id="")


def record(tenant_id: str, name: str, action: str, actor: Identity, at: datetime, value: str | None = None) -> None:
    """Add an audit record to the caller's transaction (action: set, changed or cleared)."""
    db.session.add(
        SettingAudit(
            tenant_id=tenant_id,
            name=name,
            action=action,
            value=value,
            user_id=actor.user_id,
            user_name=actor.display_name,
            at=at,
        )
    )
