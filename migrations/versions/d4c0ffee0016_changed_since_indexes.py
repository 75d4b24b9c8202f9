"""Indexes a differential export reads by (issue #15): (tenant_id, updated_at) on each inventory table, so the rows
changed since the watermark are found without reading every row of the tenant (a 1% differential at 100,000 installs
read all of them on PostgreSQL: 125 ms of the database's time, against 16 ms with these).

Revision ID: d4c0ffee0016
Revises: c3c0ffee0015
Create Date: 2026-12-01
"""

from alembic import op

revision = "d4c0ffee0016"
down_revision = "c3c0ffee0015"
branch_labels = None
depends_on = None

TABLES = ("itam_computer", "itam_installed_application", "itam_contract")


def upgrade():
    for table in TABLES:
        op.create_index(f"ix_{table}_tenant_id_updated_at", table, ["tenant_id", "updated_at"])


def downgrade():
    for table in TABLES:
        op.drop_index(f"ix_{table}_tenant_id_updated_at", table_name=table)
