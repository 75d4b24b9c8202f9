"""The one interface the exporter reads inventory through, and its default implementation over our own tables.
A source only ever returns the asking tenant's rows, and never holds more than one chunk of them in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import ColumnElement, CompoundSelect, Connection, Engine, Select, and_, exists, func, select, union
from sqlalchemy.orm import Session, scoped_session

from itam_admin.db import db, in_chunks, unindexed
from itam_admin.inventory.models import TABLES_BY_DATA_TYPE
from itam_admin.records import ROW_COLUMNS, check_data_type, record_builder, source_id_prefix

# A differential read holds at most this many changed rows' ids (integers: well under a megabyte).
CHANGED_IDS_IN_MEMORY = 20_000


@runtime_checkable
class InventorySource(Protocol):
    """Where an export reads a tenant's records; a host portal may implement it over its own tables."""

    def count(self, tenant_id: str, data_type: str) -> int:
        """How many records ``iter_records`` yields for this tenant and data type."""
        ...

    def iter_records(self, tenant_id: str, data_type: str) -> Iterator[dict[str, str]]:
        """The tenant's records exactly as sent, ordered by ``u_source_id`` in code-point order (so a caller can
        merge-join them with another stream ordered the same way), streamed: memory does not grow with their
        number. Source ids are scoped to the tenant, ``<tenant id>:<record id>``: build records with
        ``itam_admin.records.record_builder(data_type, tenant_id)``."""
        ...


# Plain Core tables, not ORM entities: the queries skip the ORM's compile and result layers.
_COMPUTER = TABLES_BY_DATA_TYPE["hardware_inventory"]
_INSTALL = TABLES_BY_DATA_TYPE["installed_applications"]


def _columns(data_type: str) -> list[ColumnElement[Any]]:
    table = TABLES_BY_DATA_TYPE[data_type]
    joined = {
        "computer_source_id": _COMPUTER.c.source_id,
        "computer_name": _COMPUTER.c.name,
        "computer_serial_number": _COMPUTER.c.serial_number,
    }
    return [joined[name] if name in joined else table.c[name] for name in ROW_COLUMNS[data_type]]


def _base_query(
    data_type: str, tenant_id: str, *columns: ColumnElement[Any], by_id_on: str | None = None
) -> Select[Any]:
    """The tenant's rows of a data type (installs joined to their computers). `by_id_on` (a dialect name): for a
    query that finds its rows by id, so the tenant condition must not lead SQLite to walk the tenant's index instead
    (280 ms a chunk of 500 ids at 1,000,000 installs, 3 ms by id; db.unindexed)."""
    table = TABLES_BY_DATA_TYPE[data_type]
    if table is _INSTALL:
        # Matching the computer's tenant too means a stray cross-tenant link can never leak another tenant's name.
        table = table.join(
            _COMPUTER, and_(_COMPUTER.c.id == _INSTALL.c.computer_id, _COMPUTER.c.tenant_id == _INSTALL.c.tenant_id)
        )
    tenant: ColumnElement[Any] = TABLES_BY_DATA_TYPE[data_type].c.tenant_id
    if by_id_on is not None:
        tenant = unindexed(tenant, by_id_on)
    return select(*columns).select_from(table).where(tenant == tenant_id)


class SqlInventorySource:
    """Reads our own inventory tables (``itam_admin.inventory.models``) through an Engine or a Session factory.

    Streaming is keyset pagination: each chunk is its own short query, ``WHERE tenant_id = :t AND source_id > :last
    ORDER BY source_id LIMIT :n``, an index range scan on the unique (tenant_id, source_id) index. Unlike a
    server-side cursor it holds no transaction, snapshot or connection while the exporter waits on ServiceNow for
    minutes or hours (no blocked VACUUM or migrations on PostgreSQL, no pinned WAL on SQLite, nothing lost if a
    pooled connection drops), behaves the same on both databases, and resumes naturally after any source id.
    The trade-off is that a long export sees rows as they are when each chunk is read, not one snapshot: a row
    changed mid-run is sent in either state and a row inserted behind the cursor waits for the next export, which
    the differential export then picks up.
    """

    def __init__(
        self,
        engine_or_session_factory: Engine | Callable[[], Session] | None = None,
        chunk_size: int = 2000,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        self._target = engine_or_session_factory  # None: Flask-SQLAlchemy's engine, looked up when reading
        self.chunk_size = chunk_size

    def count(self, tenant_id: str, data_type: str) -> int:
        check_data_type(data_type)
        return self._fetch(_base_query(data_type, tenant_id, func.count()))[0][0]

    def iter_records(self, tenant_id: str, data_type: str) -> Iterator[dict[str, str]]:
        build = record_builder(data_type, tenant_id)  # an unknown data type fails here, not at the first record
        key: ColumnElement[str] = TABLES_BY_DATA_TYPE[data_type].c.source_id
        if self._dialect_name() == "postgresql":
            # The column is declared COLLATE "C" already; saying so again keeps the order right on a database
            # migrated by hand without it (the index then no longer serves the sort, but the order stays correct).
            key = key.collate("C")
        query = _base_query(data_type, tenant_id, *_columns(data_type)).order_by(key).limit(self.chunk_size)
        return self._stream(query, key, build)

    def iter_records_changed_since(self, tenant_id: str, data_type: str, since: datetime) -> Iterator[dict[str, str]]:
        """Like iter_records, but only records whose row changed at or after `since` (for installs also those whose
        computer changed: they carry its name and serial number). Differential exports use it to skip unchanged rows
        in SQL."""
        build = record_builder(data_type, tenant_id)
        table = TABLES_BY_DATA_TYPE[data_type]
        key: ColumnElement[str] = table.c.source_id
        if self._dialect_name() == "postgresql":
            key = key.collate("C")
        # The ids of the changed rows first, each found on a (tenant_id, updated_at) index, rather than a condition
        # on every row of the tenant: the read costs in proportion to what changed (issue #15). Each comes with its
        # source id, so they are put in order without joining every row of the table to them.
        changed: Select[Any] | CompoundSelect = select(table.c.id, table.c.source_id).where(
            table.c.tenant_id == tenant_id, table.c.updated_at >= since
        )
        if table is _INSTALL:
            computer_changed = (
                select(_INSTALL.c.id, _INSTALL.c.source_id)
                .join(_COMPUTER, _COMPUTER.c.id == _INSTALL.c.computer_id)
                .where(
                    _COMPUTER.c.tenant_id == tenant_id,
                    _COMPUTER.c.updated_at >= since,
                    _INSTALL.c.tenant_id == tenant_id,
                )
            )
            changed = union(changed, computer_changed)
        changed_set = changed.subquery("changed")
        changed_key: ColumnElement[str] = changed_set.c.source_id
        if self._dialect_name() == "postgresql":
            changed_key = changed_key.collate("C")
        ids_in_order = select(changed_set.c.id).order_by(changed_key)
        rows = _base_query(data_type, tenant_id, *_columns(data_type), by_id_on=self._dialect_name())  # by id
        # Rows streamed in source-id order (many changed): that walk of the tenant's index is the point.
        changed_rows = (
            _base_query(data_type, tenant_id, *_columns(data_type))
            .where(table.c.id.in_(select(changed_set.c.id)))
            .order_by(key)
        )
        return self._stream_changed(ids_in_order, rows, changed_rows, table.c.id, key, build)

    def _stream_changed(
        self,
        ids_query: Select[Any],
        rows: Select[Any],
        changed_rows: Select[Any],
        id_column: ColumnElement[int],
        key: ColumnElement[str],
        build: Callable[[Any], dict[str, str]],
    ) -> Iterator[dict[str, str]]:
        """The changed rows' ids in source-id order in one statement (`ids_query`), then their rows by id: the search
        for changed rows runs once, not once a chunk (issue #15). When more rows changed than CHANGED_IDS_IN_MEMORY,
        they stream like iter_records' instead (`changed_rows`), so memory stays flat however much changed. An id
        whose row the rows query does not give (an install of this tenant on another tenant's computer) is left out
        there."""
        ids = [row[0] for row in self._fetch_values(ids_query.limit(CHANGED_IDS_IN_MEMORY + 1))]
        if len(ids) > CHANGED_IDS_IN_MEMORY:
            yield from self._stream(changed_rows.limit(self.chunk_size), key, build)
            return
        for chunk in in_chunks(ids):
            yield from map(build, self._fetch_values(rows.where(id_column.in_(chunk)).order_by(key)))

    def still_exists(self, tenant_id: str, data_type: str, source_id: ColumnElement[str]) -> ColumnElement[bool] | None:
        """An EXISTS clause, true where `source_id` (a source id as sent, scoped to the tenant) names a record the
        tenant still has, so a caller in the same database can find deleted records with one anti-join; None when
        this source reads another database."""
        if self._target is not None:
            return None
        table = TABLES_BY_DATA_TYPE[data_type]
        # The prefix comes off the sent id, not onto the table's: the lookup stays on the (tenant_id, source_id) index.
        record_id = func.substr(source_id, len(source_id_prefix(tenant_id)) + 1)
        return exists().where(table.c.tenant_id == tenant_id, table.c.source_id == record_id)

    def _stream(
        self, query: Select[Any], key: ColumnElement[str], build: Callable[[Any], dict[str, str]]
    ) -> Iterator[dict[str, str]]:
        last: str | None = None
        while True:
            rows = self._fetch_values(query if last is None else query.where(key > last))
            yield from map(build, rows)
            if len(rows) < self.chunk_size:
                return
            last = rows[-1][0]  # every row starts with its source id

    def _dialect_name(self) -> str:
        target = self._target
        if target is None:
            return db.engine.dialect.name
        if isinstance(target, Engine):
            return target.dialect.name
        session = target()
        try:
            return session.get_bind().dialect.name
        finally:
            if not isinstance(target, scoped_session):
                session.close()

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        target = self._target if self._target is not None else db.engine
        if isinstance(target, Engine):
            with target.connect() as connection:
                yield connection
        elif isinstance(target, scoped_session):
            # The caller's own session (e.g. db.session): its transaction is the caller's to end.
            yield target.connection()
        else:
            with target() as session:
                yield session.connection()

    def _fetch(self, query: Select[Any]) -> list[Any]:
        with self._connection() as connection:
            return list(connection.execute(query).all())

    def _fetch_values(self, query: Select[Any]) -> list[tuple[Any, ...]]:
        """The rows of a chunk as plain tuples of the values `_fetch` gives. SQLAlchemy compiles the query and binds
        its parameters; the rows are taken from the driver's cursor as they come, and only a column whose type
        converts the driver's value on this dialect (SQLite keeps dates as text) goes through that type's own
        result processor. Building SQLAlchemy rows cost as much as the database's read (issue #15: the export reads
        every record)."""
        with self._connection() as connection:
            result = connection.execute(query)
            try:
                cursor = result.cursor
                rows = cursor.fetchall()
                described = cursor.description
            finally:
                result.close()
            dialect = connection.dialect
        converting = [
            (position, processor)
            for position, (column, description) in enumerate(zip(query.selected_columns, described, strict=True))
            if (processor := column.type.dialect_impl(dialect).result_processor(dialect, description[1])) is not None
        ]
        if not converting or not rows:
            return rows
        # Column by column: one C-level transpose each way costs less than rebuilding every row once a column.
        columns = list(zip(*rows, strict=True))
        for position, processor in converting:
            columns[position] = tuple(map(processor, columns[position]))
        return list(zip(*columns, strict=True))
