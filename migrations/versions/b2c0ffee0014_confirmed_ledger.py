"""A record counts as held by ServiceNow only once its import set's transform wrote it (issue #14): ledger rows name
the import set they await, the import sets awaiting their results are kept, and runs count what ServiceNow's
transform confirmed, rejected or had not finished. Existing ledger rows stay held (as they were).

Revision ID: b2c0ffee0014
Revises: a1c0ffee0014
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "b2c0ffee0014"
down_revision = "a1c0ffee0014"
branch_labels = None
depends_on = None

RUN_COUNTS = (
    "confirmed",
    "rejected",
    "unconfirmed",
    "earlier_confirmed",
    "earlier_rejected",
    "earlier_unconfirmed",
    "earlier_due",
)


def upgrade():
    with op.batch_alter_table("itam_sent_record", schema=None) as batch_op:
        batch_op.add_column(sa.Column("import_set_id", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_itam_sent_record_import_set_id", ["import_set_id"], unique=False)
    op.create_table(
        "itam_pending_import_set",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("instance_key", sa.String(length=64), nullable=False),
        sa.Column("data_type", sa.String(length=40), nullable=False),
        sa.Column("import_set_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("batch_number", sa.Integer(), nullable=False),
        sa.Column("record_count", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_itam_pending_import_set")),
    )
    with op.batch_alter_table("itam_pending_import_set", schema=None) as batch_op:
        batch_op.create_index(
            "ix_itam_pending_import_set_ledger", ["tenant_id", "instance_key", "data_type"], unique=False
        )
    with op.batch_alter_table("itam_export_run_data_type", schema=None) as batch_op:
        for name in RUN_COUNTS:
            # Runs recorded before this revision counted "sent" as written: they read 0 here.
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("read_back_error", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("itam_export_run_data_type", schema=None) as batch_op:
        batch_op.drop_column("read_back_error")
        for name in reversed(RUN_COUNTS):
            batch_op.drop_column(name)
    with op.batch_alter_table("itam_pending_import_set", schema=None) as batch_op:
        batch_op.drop_index("ix_itam_pending_import_set_ledger")
    op.drop_table("itam_pending_import_set")
    # Records still awaiting confirmation count as held again, as they did before this revision.
    with op.batch_alter_table("itam_sent_record", schema=None) as batch_op:
        batch_op.drop_index("ix_itam_sent_record_import_set_id")
        batch_op.drop_column("import_set_id")
