"""The ledger of what ServiceNow holds, per tenant, instance and data type: the hash of every record it holds as we
last sent it, and the watermark before which every record is known to be there. Differential exports read it
(planner) and the exporter writes it; nothing else touches these tables. Never holds a secret.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, select

from itam_admin.db import db
from itam_admin.exports.models import ExportWatermark, SentRecord

CHUNK = 2000

UPSERT_SENT = (
    "INSERT INTO itam_sent_record (tenant_id, instance_key, data_type, source_id, content_hash) "
    "VALUES ({p}, {p}, {p}, {p}, {p}) "
    "ON CONFLICT (tenant_id, instance_key, data_type, source_id) DO UPDATE SET content_hash = excluded.content_hash"
)


def instance_key(instance_url: str) -> str:
    """The instance a ledger row is about: a hash of its normalised URL (a new URL starts a new ledger)."""
    return hashlib.sha256(instance_url.encode()).hexdigest()[:32]


class Ledger:
    """One tenant's ledger of one data type on one instance."""

    source_id = SentRecord.source_id  # the column a caller's anti-join (deleted records) compares with

    def __init__(self, tenant_id: str, instance_url: str, data_type: str) -> None:
        self.tenant_id, self.data_type = tenant_id, data_type
        self.key = instance_key(instance_url)

    def _of(self, table=SentRecord) -> tuple[ColumnElement[bool], ...]:
        """The filter every query of this ledger starts with."""
        return (table.tenant_id == self.tenant_id, table.instance_key == self.key, table.data_type == self.data_type)

    # ---- reads (planner) ---------------------------------------------------------------------------------------

    def hashes_between(self, low: str | None, high: str | None) -> dict[str, str]:
        """Hashes of held records with low < source_id <= high (None: unbounded), in code-point order."""
        column = _source_id_column()
        query = select(SentRecord.source_id, SentRecord.content_hash).where(*self._of())
        if low is not None:
            query = query.where(column > low)
        if high is not None:
            query = query.where(column <= high)
        return dict(db.session.connection().execute(query.order_by(column)).all())

    def hashes_of(self, source_ids: list[str]) -> dict[str, str]:
        query = select(SentRecord.source_id, SentRecord.content_hash).where(
            *self._of(), SentRecord.source_id.in_(source_ids)
        )
        return dict(db.session.connection().execute(query).all())

    def source_ids_after(self, low: str | None, *conditions: ColumnElement[bool]) -> Iterator[str]:
        """Held source ids after `low` (and meeting the extra conditions), read in chunks, in code-point order."""
        column = _source_id_column()
        while True:
            query = select(SentRecord.source_id).where(*self._of(), *conditions).order_by(column).limit(CHUNK)
            if low is not None:
                query = query.where(column > low)
            ids = list(db.session.connection().execute(query).scalars())
            yield from ids
            if len(ids) < CHUNK:
                return
            low = ids[-1]

    def count(self) -> int:
        return db.session.connection().execute(select(func.count()).where(*self._of())).scalar_one()

    def watermark(self) -> datetime | None:
        query = select(ExportWatermark.complete_since).where(*self._of(ExportWatermark))
        return db.session.connection().execute(query).scalar()

    # ---- writes (exporter) -------------------------------------------------------------------------------------

    def hold(self, rows: list[tuple[str, str]]) -> None:
        """Record that ServiceNow holds these records (source id, content hash) as sent. A plain DBAPI executemany:
        it runs for every record exported, and SQLAlchemy's per-row parameter handling cost more than the
        database's work (same SQL on SQLite and PostgreSQL)."""
        if not rows:
            return
        connection = db.session.connection()
        placeholder = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        tenant, key, data_type = self.tenant_id, self.key, self.data_type
        connection.exec_driver_sql(
            UPSERT_SENT.format(p=placeholder), [(tenant, key, data_type, sid, digest) for sid, digest in rows]
        )

    def release(self, source_ids: list[str]) -> None:
        """Forget records ServiceNow retired (they were deleted from ITAM)."""
        if source_ids:
            db.session.execute(delete(SentRecord).where(*self._of(), SentRecord.source_id.in_(source_ids)))

    def set_watermark(self, complete_since: datetime) -> None:
        """Every record of the data type changed before `complete_since` is now in the instance as it is in ITAM."""
        row = db.session.scalar(select(ExportWatermark).where(*self._of(ExportWatermark)))
        if row is None:
            db.session.add(
                ExportWatermark(
                    tenant_id=self.tenant_id,
                    instance_key=self.key,
                    data_type=self.data_type,
                    complete_since=complete_since,
                )
            )
        else:
            row.complete_since = complete_since


def _source_id_column():
    column = SentRecord.source_id
    if db.engine.dialect.name == "postgresql":
        return column.collate("C")
    return column
