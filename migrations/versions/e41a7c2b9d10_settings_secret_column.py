"""Settings secrets move to their own encrypted column: `secret` holds the ciphertext (the same Fernet text that
`value` held), `value` only plain settings, and the `encrypted` flag goes.

Revision ID: e41a7c2b9d10
Revises: b7e3c0d4a912
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "e41a7c2b9d10"
down_revision = "b7e3c0d4a912"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("compliance_tenant_setting", schema=None) as batch_op:
        batch_op.add_column(sa.Column("secret", sa.Text(), nullable=True))
        batch_op.alter_column("value", existing_type=sa.Text(), nullable=True)
    op.execute("UPDATE compliance_tenant_setting SET secret = value, value = NULL WHERE encrypted")
    with op.batch_alter_table("compliance_tenant_setting", schema=None) as batch_op:
        batch_op.drop_column("encrypted")


def downgrade():
    with op.batch_alter_table("compliance_tenant_setting", schema=None) as batch_op:
        batch_op.add_column(sa.Column("encrypted", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE compliance_tenant_setting SET value = secret, encrypted = TRUE WHERE secret IS NOT NULL")
    with op.batch_alter_table("compliance_tenant_setting", schema=None) as batch_op:
        batch_op.drop_column("secret")
        batch_op.alter_column("value", existing_type=sa.Text(), nullable=False)
