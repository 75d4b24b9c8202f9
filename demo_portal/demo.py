"""Demo tenants and users for ITAM_DEMO=1 (idempotent); never used outside demo mode."""

from __future__ import annotations

from sqlalchemy import select
from werkzeug.security import generate_password_hash

from demo_portal.models import Tenant, User
from itam_admin.db import db
from itam_admin.identity import MANAGE_PERMISSION

DEMO_PASSWORD = "demo"
DEMO_TENANTS = (("acme", "Acme Corporation"), ("globex", "Globex Corporation"))
DEMO_USERS = (
    ("admin@acme.example", "Alice Admin", "acme", f"{MANAGE_PERMISSION} inventory.view"),
    ("viewer@acme.example", "Victor Viewer", "acme", "inventory.view"),
    ("admin@globex.example", "Grace Globex", "globex", f"{MANAGE_PERMISSION} inventory.view"),
)


def seed_demo_portal(hash_method: str = "scrypt") -> dict[str, int]:
    """Create the demo tenants and users that do not exist yet; return how many of each were created."""
    created = {"tenants": 0, "users": 0}
    tenants = {t.slug: t for t in db.session.scalars(select(Tenant))}
    for slug, name in DEMO_TENANTS:
        if slug not in tenants:
            tenants[slug] = Tenant(slug=slug, name=name)
            db.session.add(tenants[slug])
            created["tenants"] += 1
    db.session.flush()
    existing = set(db.session.scalars(select(User.email)))
    for email, name, slug, permissions in DEMO_USERS:
        if email not in existing:
            db.session.add(
                User(
                    email=email,
                    name=name,
                    tenant_id=tenants[slug].id,
                    permissions=permissions,
                    password_hash=generate_password_hash(DEMO_PASSWORD, method=hash_method),
                )
            )
            created["users"] += 1
    db.session.commit()
    return created
