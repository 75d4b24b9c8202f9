"""A narrower ledger (issue #15, CPU per record exported): the tenant, instance and data type of a ledger move to a
row of their own (itam_ledger), which every row of itam_sent_record names by id. A record row is then
(ledger_id, source_id, content_hash, import_set_id) with the primary key (ledger_id, source_id), a WITHOUT ROWID table
on SQLite, and only the rows awaiting confirmation are in the import set index (a partial index). Every existing row
is kept as it was: its hash, and the import set it awaits or none.

The table is rebuilt on SQLite and PostgreSQL alike: the old one is renamed aside, the new one created under the
final names, the rows copied with their ledger's id, and the old one dropped.

Revision ID: c3c0ffee0015
Revises: b2c0ffee0014
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "c3c0ffee0015"
down_revision = "b2c0ffee0014"
branch_labels = None
depends_on = None

AWAITING = sa.text("import_set_id IS NOT NULL")
SOURCE_ID = sa.String(length=200).with_variant(sa.String(length=200, collation="C"), "postgresql")


def _set_aside(table: str, aside: str) -> None:
    """Rename a ledger table out of the way of its replacement. Index and constraint names are per schema: its
    import set index goes (the replacement gets its own), and on PostgreSQL its primary key is renamed too."""
    op.drop_index("ix_itam_sent_record_import_set_id", table_name=table)
    op.rename_table(table, aside)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE {aside} RENAME CONSTRAINT pk_itam_sent_record TO pk_{aside}")


def upgrade():
    op.create_table(
        "itam_ledger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("instance_key", sa.String(length=64), nullable=False),
        sa.Column("data_type", sa.String(length=40), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_itam_ledger")),
        sa.UniqueConstraint("tenant_id", "instance_key", "data_type", name=op.f("uq_itam_ledger_tenant_id")),
    )
    op.execute(
        "INSERT INTO itam_ledger (tenant_id, instance_key, data_type) "
        "SELECT DISTINCT tenant_id, instance_key, data_type FROM itam_sent_record "
        "ORDER BY tenant_id, instance_key, data_type"
    )
    _set_aside("itam_sent_record", "itam_sent_record_wide")
    op.create_table(
        "itam_sent_record",
        sa.Column("ledger_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("source_id", SOURCE_ID, nullable=False),
        sa.Column("content_hash", sa.String(length=32), nullable=False),
        sa.Column("import_set_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("ledger_id", "source_id", name=op.f("pk_itam_sent_record")),
        sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO itam_sent_record (ledger_id, source_id, content_hash, import_set_id) "
        "SELECT itam_ledger.id, wide.source_id, wide.content_hash, wide.import_set_id "
        "FROM itam_sent_record_wide AS wide JOIN itam_ledger ON itam_ledger.tenant_id = wide.tenant_id "
        "AND itam_ledger.instance_key = wide.instance_key AND itam_ledger.data_type = wide.data_type"
    )
    op.create_index(
        "ix_itam_sent_record_import_set_id",
        "itam_sent_record",
        ["import_set_id"],
        unique=False,
        sqlite_where=AWAITING,
        postgresql_where=AWAITING,
    )
    op.drop_table("itam_sent_record_wide")


def downgrade():
    _set_aside("itam_sent_record", "itam_sent_record_narrow")
    op.create_table(
        "itam_sent_record",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("instance_key", sa.String(length=64), nullable=False),
        sa.Column("data_type", sa.String(length=40), nullable=False),
        sa.Column("source_id", SOURCE_ID, nullable=False),
        sa.Column("content_hash", sa.String(length=32), nullable=False),
        sa.Column("import_set_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_itam_sent_record")),
        sa.UniqueConstraint(
            "tenant_id", "instance_key", "data_type", "source_id", name=op.f("uq_itam_sent_record_tenant_id")
        ),
    )
    op.execute(
        "INSERT INTO itam_sent_record (tenant_id, instance_key, data_type, source_id, content_hash, import_set_id) "
        "SELECT itam_ledger.tenant_id, itam_ledger.instance_key, itam_ledger.data_type, narrow.source_id, "
        "narrow.content_hash, narrow.import_set_id "
        "FROM itam_sent_record_narrow AS narrow JOIN itam_ledger ON itam_ledger.id = narrow.ledger_id "
        "ORDER BY narrow.ledger_id, narrow.source_id"
    )
    op.create_index("ix_itam_sent_record_import_set_id", "itam_sent_record", ["import_set_id"], unique=False)
    op.drop_table("itam_sent_record_narrow")
    op.drop_table("itam_ledger")
