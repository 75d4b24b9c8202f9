"""The connection state per tenant (issue #14, SPEC 7): what the last Test connection or run saw of the stored
settings, and whether the tenant needs a new token; and the time a run paused by ServiceNow's rate limit resumes.

Revision ID: a1c0ffee0014
Revises: e41a7c2b9d10
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "a1c0ffee0014"
down_revision = "e41a7c2b9d10"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "itam_connection_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("checked_at", sa.DateTime(), nullable=True),
        sa.Column("checked_by", sa.String(length=16), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("error_kind", sa.String(length=40), nullable=True),
        sa.Column("needs_new_token", sa.Boolean(), nullable=False),
        sa.Column("settings_changed_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_itam_connection_state")),
        sa.UniqueConstraint("tenant_id", name=op.f("uq_itam_connection_state_tenant_id")),
    )
    with op.batch_alter_table("itam_export_run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resume_at", sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("itam_export_run", schema=None) as batch_op:
        batch_op.drop_column("resume_at")
    op.drop_table("itam_connection_state")
