"""The ledger of what ServiceNow holds, per tenant, instance and data type: the hash of every record as we last sent
it, which of those its transform has not confirmed yet (and the import sets they went in), and the watermark before
which every record is known to be there. Differential exports read it (planner) and the exporter writes it; nothing
else touches these tables. Never holds a secret.

A ledger is a row of itam_ledger (tenant, instance key, data type), created by its first write; the record rows name
it by id. A read of a ledger that has no row yet finds nothing and creates nothing.

A record counts as held only after its import set's transform wrote it: sending marks the row with the import set
(so the planner does not send it again while ServiceNow transforms it), confirmation clears the mark, a rejection
gives the row the hash REJECTED (so the next export sends it again) and drops the watermark.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from datetime import datetime

from sqlalchemy import ColumnElement, Row, ScalarSelect, delete, func, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from itam_admin.db import db, in_chunks, unindexed
from itam_admin.exports.models import ExportLedger, ExportWatermark, PendingImportSet, SentRecord

log = logging.getLogger("itam_admin.exports")
CHUNK = 2000
# After a data type's export wrote at least this many ledger rows, PostgreSQL's statistics of the ledger table are
# checked (keep_statistics).
ANALYZE_AFTER_ROWS = 10_000
ANALYZE_LOCK_TIMEOUT = "2s"
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock timeout
# Hashes with a meaning (a real one is 32 hex digits): a retirement sent and awaiting confirmation (the row goes when
# it is confirmed), and a record ServiceNow's transform did not write (it differs from every real hash, so the
# planner sends the record again, or its retirement when it is gone from ITAM).
RETIRING = ""
REJECTED = "rejected"

# A ledger's id, and its creation by the first write: insert-or-ignore then select again, so two processes (or two
# Ledger objects) writing a new ledger at once end with one row and the same id.
FIND_LEDGER = "SELECT id FROM itam_ledger WHERE tenant_id = {p} AND instance_key = {p} AND data_type = {p}"
CREATE_LEDGER = (
    "INSERT INTO itam_ledger (tenant_id, instance_key, data_type) VALUES ({p}, {p}, {p}) "
    "ON CONFLICT (tenant_id, instance_key, data_type) DO NOTHING"
)
UPSERT_SENT = (
    "INSERT INTO itam_sent_record (ledger_id, source_id, content_hash, import_set_id) VALUES ({p}, {p}, {p}, {p}) "
    "ON CONFLICT (ledger_id, source_id) DO UPDATE SET content_hash = excluded.content_hash, "
    "import_set_id = excluded.import_set_id"
)

# PostgreSQL's path for the same upsert (Ledger.sent): COPY into a temporary table, then one upsert from it.
INCOMING = "itam_sent_incoming"
CREATE_INCOMING = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {INCOMING} "
    "(source_id text NOT NULL, content_hash text NOT NULL, import_set_id text NOT NULL) ON COMMIT DELETE ROWS"
)
UPSERT_FROM_INCOMING = (
    "INSERT INTO itam_sent_record (ledger_id, source_id, content_hash, import_set_id) "
    f"SELECT %s, source_id, content_hash, import_set_id FROM {INCOMING} "
    "ON CONFLICT (ledger_id, source_id) DO UPDATE SET content_hash = excluded.content_hash, "
    "import_set_id = excluded.import_set_id"
)


def instance_key(instance_url: str) -> str:
    """The instance a ledger row is about: a hash of its normalised URL (a new URL starts a new ledger)."""
    return hashlib.sha256(instance_url.encode()).hexdigest()[:32]


class Ledger:
    """One tenant's ledger of one data type on one instance. Cheap to make: it touches the database only when used,
    and only a write creates the ledger's row."""

    source_id = SentRecord.source_id  # the column a caller's anti-join (deleted records) compares with
    not_retiring = SentRecord.content_hash != RETIRING  # rows whose retirement is not already in flight

    def __init__(self, tenant_id: str, instance_url: str, data_type: str) -> None:
        self.tenant_id, self.data_type = tenant_id, data_type
        self.key = instance_key(instance_url)
        self._written_in: tuple[object, int] | None = None  # (transaction, ledger id) of the last write

    def _of(self, table=SentRecord) -> tuple[ColumnElement[bool], ...]:
        """The filter every query of this ledger starts with: its record rows by the ledger's id (none when the
        ledger has no row yet: the subquery is null), the per-ledger tables by tenant, instance and data type."""
        if table is SentRecord:
            return (SentRecord.ledger_id == self._id(),)
        return (table.tenant_id == self.tenant_id, table.instance_key == self.key, table.data_type == self.data_type)

    def _id(self) -> ScalarSelect[int]:
        """The ledger's id, as a subquery of the statement that needs it (one round trip, nothing created)."""
        row = ExportLedger
        return (
            select(row.id)
            .where(row.tenant_id == self.tenant_id, row.instance_key == self.key, row.data_type == self.data_type)
            .scalar_subquery()
        )

    def _id_for_writing(self, connection) -> int:
        """The ledger's id, its row created when this is the ledger's first write (plain DBAPI statements: this runs
        for every batch sent). Kept for the rest of the transaction only, since a rollback may take a new row with
        it; not kept from inside a savepoint, whose rollback may do the same."""
        transaction = connection.get_transaction()
        if self._written_in is not None and self._written_in[0] is transaction and transaction.is_active:
            return self._written_in[1]
        placeholder = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        key = (self.tenant_id, self.key, self.data_type)
        found = connection.exec_driver_sql(FIND_LEDGER.format(p=placeholder), key).scalar()
        if found is None:
            connection.exec_driver_sql(CREATE_LEDGER.format(p=placeholder), key)
            found = connection.exec_driver_sql(FIND_LEDGER.format(p=placeholder), key).scalar_one()
        self._written_in = None if connection.in_nested_transaction() else (transaction, found)
        return found

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

    def watermark(self) -> datetime | None:
        query = select(ExportWatermark.complete_since).where(*self._of(ExportWatermark))
        return db.session.connection().execute(query).scalar()

    def awaiting(self, import_set_id: str) -> list[str]:
        """Source ids of the records still awaiting this import set's confirmation."""
        query = select(SentRecord.source_id).where(*self._of(), SentRecord.import_set_id == import_set_id)
        return list(db.session.connection().execute(query).scalars())

    def retiring(self, import_set_id: str, source_ids: list[str]) -> set[str]:
        """Which of these source ids went in this import set as retirements."""
        found: set[str] = set()
        for chunk in in_chunks(source_ids):
            query = select(SentRecord.source_id).where(
                *self._of(),
                SentRecord.import_set_id == import_set_id,
                SentRecord.content_hash == RETIRING,
                SentRecord.source_id.in_(chunk),
            )
            found.update(db.session.connection().execute(query).scalars())
        return found

    def count_held(self) -> int:
        """Rows of records ServiceNow has or is being sent (retirements in flight excluded), for the planner's test for
        deleted records: every row of the ledger less its retirements awaiting an import set, which the partial index
        of rows awaiting confirmation finds without reading the rest (a condition on every row's hash cost 220 ms,
        this 120-190 ms, at 1,000,000 rows on SQLite; issue #15). A retirement always awaits an import set (confirmed,
        its row goes; rejected, it gets the hash REJECTED), so the figure is exact; were one not, the figure would be
        higher, which only sends the planner to its anti-join: never a deleted record missed."""
        connection = db.session.connection()
        ledger = unindexed(SentRecord.ledger_id, connection.dialect.name) == self._id()  # on the partial index
        every = select(func.count()).where(*self._of()).scalar_subquery()
        retiring = (
            select(func.count())
            .where(ledger, SentRecord.import_set_id.is_not(None), SentRecord.content_hash == RETIRING)
            .scalar_subquery()
        )
        return connection.execute(select(every - retiring)).scalar_one()

    # ---- writes (exporter) -------------------------------------------------------------------------------------

    def sent(self, rows: list[tuple[str, str, str]]) -> None:
        """Record that these records (source id, content hash, import set id; the hash RETIRING for a retirement)
        went in import sets that ServiceNow accepted and has not confirmed yet; a source id given twice keeps its
        last row. In plain DBAPI: it runs for every record exported, and SQLAlchemy's per-row parameter handling
        cost more than the database's work. The exporter writes the rows of many import sets in one call (issue
        #15: on PostgreSQL, 5,000 rows a call rather than 200 halved the client's CPU for the write and cut the
        server's by about a fifth)."""
        if not rows:
            return
        connection = db.session.connection()
        ledger_id = self._id_for_writing(connection)
        if connection.dialect.name == "postgresql":
            self._sent_by_copy(connection, ledger_id, rows)
            return
        placeholder = "?" if connection.dialect.paramstyle == "qmark" else "%s"
        connection.exec_driver_sql(
            UPSERT_SENT.format(p=placeholder), [(ledger_id, sid, digest, set_id) for sid, digest, set_id in rows]
        )

    def _sent_by_copy(self, connection, ledger_id: int, rows: list[tuple[str, str, str]]) -> None:
        """PostgreSQL: COPY the rows into a temporary table, then one INSERT ... ON CONFLICT from it (the client's
        work per record is a COPY row instead of a bound statement). A source id given twice keeps its last row: one
        upsert may not touch a row twice."""
        if len({source_id for source_id, _, _ in rows}) < len(rows):
            rows = [(source_id, *rest) for source_id, rest in {row[0]: row[1:] for row in rows}.items()]
        cursor = connection.connection.driver_connection.cursor()
        try:
            # Every time, not once per connection: a rolled-back transaction takes the table's creation with it.
            cursor.execute(CREATE_INCOMING)
            with cursor.copy(f"COPY {INCOMING} (source_id, content_hash, import_set_id) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(UPSERT_FROM_INCOMING, (ledger_id,))
            cursor.execute(f"DELETE FROM {INCOMING}")
        finally:
            cursor.close()

    @staticmethod
    def keep_statistics(rows_written: int) -> None:
        """PostgreSQL plans the ledger's reads on the statistics it has of itam_sent_record. When an export wrote over
        twice as many rows as those statistics count (a first full export of a big inventory: the table was empty
        when last analyzed), the table is analyzed now rather than by autovacuum a minute or more later: a
        differential export planned on an empty table's statistics read the whole ledger for each lookup (issue #15,
        measured on 1,000,000 rows: 199 ms a statement, 2.8 ms after ANALYZE). On a connection of its own, so the
        caller's transaction is untouched; it waits at most ANALYZE_LOCK_TIMEOUT behind someone's VACUUM or ANALYZE
        of the table, and a failure is logged, never the export's. A database user who does not own the table gets
        PostgreSQL's warning and nothing else."""
        if rows_written < ANALYZE_AFTER_ROWS or db.engine.dialect.name != "postgresql":
            return
        table = SentRecord.__tablename__
        try:
            with db.engine.connect() as connection, connection.begin():
                counted = connection.execute(
                    text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:table)"), {"table": table}
                ).scalar()
                if counted is not None and 2 * counted >= rows_written:
                    return
                connection.execute(text(f"SET LOCAL lock_timeout = '{ANALYZE_LOCK_TIMEOUT}'"))
                connection.execute(text(f"ANALYZE {table}"))
        except DBAPIError as error:
            code = getattr(error.orig, "sqlstate", None)
            level = logging.INFO if code == LOCK_NOT_AVAILABLE else logging.WARNING
            log.log(level, "could not analyze %s (SQLSTATE %s); autovacuum will", table, code)

    def confirm(self, import_set_ids: list[str]) -> None:
        """ServiceNow's transform finished these import sets and wrote every record still marked with them (the
        rejected ones were marked REJECTED first): retirements are forgotten, the rest is held."""
        for chunk in in_chunks(import_set_ids):
            in_sets = SentRecord.import_set_id.in_(chunk)
            db.session.execute(delete(SentRecord).where(*self._of(), in_sets, SentRecord.content_hash == RETIRING))
            db.session.execute(update(SentRecord).where(*self._of(), in_sets).values(import_set_id=None))

    def reject(self, import_set_id: str, source_ids: list[str]) -> None:
        """ServiceNow's transform did not write these records of an import set: the next export sends them again.
        A row sent again since (in a later import set) is left alone. The watermark goes, because a rejected record
        that has not changed would otherwise not be read by the next differential export."""
        for chunk in in_chunks(source_ids):
            db.session.execute(
                update(SentRecord)
                .where(*self._of(), SentRecord.import_set_id == import_set_id, SentRecord.source_id.in_(chunk))
                .values(content_hash=REJECTED, import_set_id=None)
            )
        if source_ids:
            self.clear_watermark()

    def reject_all(self, import_set_ids: list[str]) -> int:
        """Every record still awaiting one of these import sets is sent again (their results can never be read)."""
        rejected = 0
        for chunk in in_chunks(import_set_ids):
            result = db.session.execute(
                update(SentRecord)
                .where(*self._of(), SentRecord.import_set_id.in_(chunk))
                .values(content_hash=REJECTED, import_set_id=None)
            )
            rejected += result.rowcount
        if rejected:
            self.clear_watermark()
        return rejected

    # ---- import sets awaiting their results --------------------------------------------------------------------

    def add_pending_sets(self, import_sets: list[tuple[str, int, int, int, datetime]]) -> None:
        """Record these import sets (import set id, run id, batch number, record count, sent at) as awaiting their
        results, in the order given (pending() lists them so). One Core statement for many rather than a mapped object
        each: the exporter writes the import sets of many batches with their ledger rows (issue #15)."""
        if not import_sets:
            return
        owner = {"tenant_id": self.tenant_id, "instance_key": self.key, "data_type": self.data_type}
        db.session.connection().execute(
            insert(PendingImportSet.__table__),
            [
                {
                    **owner,
                    "import_set_id": import_set_id,
                    "run_id": run_id,
                    "batch_number": batch_number,
                    "record_count": record_count,
                    "sent_at": sent_at,
                }
                for import_set_id, run_id, batch_number, record_count, sent_at in import_sets
            ],
        )

    def pending(self) -> list[Row]:
        """This ledger's import sets whose results are not read yet, oldest first: rows of import_set_id, run_id,
        batch_number, record_count and sent_at (plain rows, so reading them after a commit costs no query)."""
        table = PendingImportSet
        query = (
            select(table.import_set_id, table.run_id, table.batch_number, table.record_count, table.sent_at)
            .where(*self._of(table))
            .order_by(table.id)
        )
        # Import sets an exporter holds are not here until its write_ledger, which runs before any read back.
        return list(db.session.execute(query).all())

    def settled(self, import_set_ids: list[str]) -> None:
        """These import sets' results are read and applied (or given up): they are no longer awaited."""
        for chunk in in_chunks(import_set_ids):
            db.session.execute(
                delete(PendingImportSet).where(*self._of(PendingImportSet), PendingImportSet.import_set_id.in_(chunk))
            )

    # ---- the watermark -----------------------------------------------------------------------------------------

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

    def clear_watermark(self) -> None:
        """Nothing is known to be complete any more: the next differential export reads every record once."""
        db.session.execute(delete(ExportWatermark).where(*self._of(ExportWatermark)))


def _source_id_column():
    column = SentRecord.source_id
    if db.engine.dialect.name == "postgresql":
        return column.collate("C")
    return column
