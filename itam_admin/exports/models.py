"""Export runs, their per-data-type counts and failed batches, the ledger of what ServiceNow holds (for differential
exports) and the weekly slots. Tables only: a run's life is in runs.py, the ledger's reads and writes in ledger.py.

Nothing here holds a secret: runs carry ids, counts and the classified messages made for tenant admins.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from itam_admin.db import db, utcnow


class ExportRun(db.Model):
    """One export run of one tenant: who or what started it, how it went, and why."""

    __tablename__ = "itam_export_run"
    __table_args__ = (
        Index("ix_itam_export_run_tenant_status", "tenant_id", "status"),
        # At most one queued or running run per tenant, whatever clicks, schedulers or workers race (the statuses
        # are runs.ACTIVE_STATUSES; a test checks the two agree).
        Index(
            "uq_itam_export_run_one_active",
            "tenant_id",
            unique=True,
            sqlite_where=text("status IN ('queued', 'running')"),
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64), index=True)
    trigger: Mapped[str] = mapped_column(String(16))
    triggered_by_id: Mapped[str | None] = mapped_column(String(128))
    triggered_by_name: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(24))  # one of the statuses in runs.py
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    instance_url: Mapped[str] = mapped_column(String(300), default="")
    data_types_requested: Mapped[list] = mapped_column(JSON, default=list)
    queued_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    message: Mapped[str | None] = mapped_column(Text)
    error_kind: Mapped[str | None] = mapped_column(String(40))
    job_id: Mapped[str | None] = mapped_column(String(64))
    week: Mapped[str | None] = mapped_column(String(16))
    # A queued run paused by ServiceNow's rate limit: no worker starts it before this time (runs.py).
    resume_at: Mapped[datetime | None] = mapped_column(DateTime)

    data_types: Mapped[list[ExportRunDataType]] = relationship(
        back_populates="run", order_by="ExportRunDataType.position", cascade="all, delete-orphan"
    )
    failed_batches: Mapped[list[ExportBatchFailure]] = relationship(
        back_populates="run", order_by="ExportBatchFailure.id", cascade="all, delete-orphan"
    )

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class ExportRunDataType(db.Model):
    """Counts of one data type within a run, ours and (when read back) ServiceNow's."""

    __tablename__ = "itam_export_run_data_type"
    __table_args__ = (UniqueConstraint("run_id", "data_type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("itam_export_run.id", ondelete="CASCADE"), index=True)
    data_type: Mapped[str] = mapped_column(String(40))
    position: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    new: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    retired: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    import_set_ids: Mapped[list] = mapped_column(JSON, default=list)
    sn_import_sets: Mapped[int | None] = mapped_column(Integer)
    sn_import_sets_read: Mapped[int | None] = mapped_column(Integer)
    sn_import_sets_complete: Mapped[int | None] = mapped_column(Integer)
    sn_inserts: Mapped[int | None] = mapped_column(Integer)
    sn_updates: Mapped[int | None] = mapped_column(Integer)
    sn_ignored: Mapped[int | None] = mapped_column(Integer)
    sn_skipped: Mapped[int | None] = mapped_column(Integer)
    sn_errors: Mapped[int | None] = mapped_column(Integer)
    # What ServiceNow's transform did with this run's records (`failed` above includes `rejected`): written
    # (confirmed), not written (rejected: state error, skipped, or ignored without a target record), or not known
    # yet (unconfirmed: the import set was still transforming when the run ended, or its results could not be read).
    confirmed: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    unconfirmed: Mapped[int] = mapped_column(Integer, default=0)
    # Records of earlier runs' import sets that this run found written, rejected, or still not confirmed.
    earlier_confirmed: Mapped[int] = mapped_column(Integer, default=0)
    earlier_rejected: Mapped[int] = mapped_column(Integer, default=0)
    earlier_unconfirmed: Mapped[int] = mapped_column(Integer, default=0)
    # Of earlier_rejected, those found after this run had planned the data type: the next export sends them.
    earlier_due: Mapped[int] = mapped_column(Integer, default=0)
    # Why unconfirmed records could not be confirmed when it was not just time (e.g. 403 on sys_import_set_run).
    read_back_error: Mapped[str | None] = mapped_column(Text)

    run: Mapped[ExportRun] = relationship(back_populates="data_types")


class ExportBatchFailure(db.Model):
    """A batch that ServiceNow did not accept after retries: its message and the records, for the CSV."""

    __tablename__ = "itam_export_batch_failure"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("itam_export_run.id", ondelete="CASCADE"), index=True)
    data_type: Mapped[str] = mapped_column(String(40))
    batch_number: Mapped[int] = mapped_column(Integer)
    record_count: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error_kind: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    records_json: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    run: Mapped[ExportRun] = relationship(back_populates="failed_batches")


class ExportLedger(db.Model):
    """One ledger: a tenant's records of one data type on one instance (ledger.py). Its id is what every row of
    itam_sent_record names, so those rows need not repeat the tenant, instance and data type. Created by the first
    write of the ledger, never by a read."""

    __tablename__ = "itam_ledger"
    __table_args__ = (UniqueConstraint("tenant_id", "instance_key", "data_type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    instance_key: Mapped[str] = mapped_column(String(64))
    data_type: Mapped[str] = mapped_column(String(40))


class SentRecord(db.Model):
    """What was last sent for one record of one ledger (differential exports): held by ServiceNow once
    `import_set_id` is null (its transform wrote it), awaiting that confirmation while it names the import set it
    went in. See ledger.py for the special hashes.

    Narrow, because a row is written for every record exported (issue #15): the primary key (ledger, source id) is
    the only b-tree besides a partial index of the rows awaiting confirmation, and on SQLite the table is that key
    (WITHOUT ROWID)."""

    __tablename__ = "itam_sent_record"
    __table_args__ = (
        # Confirmation finds the rows of one import set; null (confirmed) for almost every row, so not indexed.
        Index(
            "ix_itam_sent_record_import_set_id",
            "import_set_id",
            sqlite_where=text("import_set_id IS NOT NULL"),
            postgresql_where=text("import_set_id IS NOT NULL"),
        ),
        {"sqlite_with_rowid": False},
    )

    # No foreign key: PostgreSQL would check it for every row written, which cost as much as the narrower key saved
    # (issue #15); ledger rows are never deleted, and only ledger.py writes either table.
    ledger_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # Code-point collation on PostgreSQL, so the primary key serves the planner's ordered range reads.
    source_id: Mapped[str] = mapped_column(
        String(200).with_variant(String(200, collation="C"), "postgresql"), primary_key=True
    )
    content_hash: Mapped[str] = mapped_column(String(32))
    import_set_id: Mapped[str | None] = mapped_column(String(64))


class PendingImportSet(db.Model):
    """An import set ServiceNow accepted whose transform results are not read yet: the run that sent it, or a later
    one, reads them and confirms or rejects its records (ledger.py)."""

    __tablename__ = "itam_pending_import_set"
    __table_args__ = (Index("ix_itam_pending_import_set_ledger", "tenant_id", "instance_key", "data_type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    instance_key: Mapped[str] = mapped_column(String(64))
    data_type: Mapped[str] = mapped_column(String(40))
    import_set_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[int] = mapped_column(Integer)  # no foreign key: the records stay to confirm if the run is deleted
    batch_number: Mapped[int] = mapped_column(Integer)
    record_count: Mapped[int] = mapped_column(Integer)
    sent_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ExportWatermark(db.Model):
    """A time before which every record of a data type is known to be in one instance as it is now: the last export
    of that data type there was complete (every batch accepted). Differential exports read only rows changed since."""

    __tablename__ = "itam_export_watermark"
    __table_args__ = (UniqueConstraint("tenant_id", "instance_key", "data_type"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    instance_key: Mapped[str] = mapped_column(String(64))
    data_type: Mapped[str] = mapped_column(String(40))
    complete_since: Mapped[datetime] = mapped_column(DateTime)


class WeeklySlot(db.Model):
    """One tenant's weekly export of one ISO week: the unique row that makes it run at most once."""

    __tablename__ = "itam_weekly_slot"
    __table_args__ = (UniqueConstraint("tenant_id", "week"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    week: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[datetime] = mapped_column(DateTime)
    claimed_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    run_id: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(String(24))
