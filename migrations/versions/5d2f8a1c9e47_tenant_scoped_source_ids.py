"""tenant-scoped source ids in the record of what was sent

Source ids now go to ServiceNow as `<tenant id>:<record id>` (SPEC section 5). The record of what each instance
accepted is rewritten the same way, so retirements carry the new ids; its content hashes no longer match (they cover
the id), so the next export of every tenant sends each record again under its new id. The watermarks go too: that
export must read every row, not only those changed since the last one.

Revision ID: 5d2f8a1c9e47
Revises: cc2ae0533318
Create Date: 2026-12-07 09:00:00.000000

"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "5d2f8a1c9e47"
down_revision = "cc2ae0533318"
branch_labels = None
depends_on = None


def upgrade():
    # Every row, unconditionally: a record id that happens to start with "<tenant>:" is still a bare id here.
    op.execute("UPDATE itam_sent_record SET source_id = tenant_id || ':' || source_id")
    op.execute("DELETE FROM itam_export_watermark")


def downgrade():
    op.execute(
        "UPDATE itam_sent_record SET source_id = substr(source_id, length(tenant_id) + 2) "
        "WHERE substr(source_id, 1, length(tenant_id) + 1) = tenant_id || ':'"
    )
    op.execute("DELETE FROM itam_export_watermark")
