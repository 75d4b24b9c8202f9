"""The sandbox's SQLite database: one connection behind one lock, in memory or in a WAL file.

It never builds SQL from client text: identifiers come from the catalog's tables only, values are always bound
parameters.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from servicenow_sandbox.schema import IMPORT_SET_ROW, Table

INTERNAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS sandbox_password (user_name TEXT PRIMARY KEY, salt TEXT NOT NULL, hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sandbox_client (
    client_id TEXT PRIMARY KEY, client_secret TEXT NOT NULL, name TEXT NOT NULL, created_on TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sandbox_token (
    token_hash TEXT PRIMARY KEY, kind TEXT NOT NULL, user_name TEXT NOT NULL, client_id TEXT NOT NULL,
    expires_at REAL NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, parent_hash TEXT, created_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS sandbox_token_user ON sandbox_token (user_name);
CREATE TABLE IF NOT EXISTS sandbox_job (
    id INTEGER PRIMARY KEY AUTOINCREMENT, import_set TEXT NOT NULL, staging_table TEXT NOT NULL,
    user_name TEXT NOT NULL, run_after TEXT NOT NULL DEFAULT '', state TEXT NOT NULL DEFAULT 'pending');
CREATE TABLE IF NOT EXISTS sandbox_counter (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sandbox_update_set (
    name TEXT PRIMARY KEY, xml TEXT NOT NULL, installed_on TEXT NOT NULL, sequence INTEGER NOT NULL);
"""

INDEXED = ("u_source_id", "u_computer_source_id", "user_name", "sys_import_set", "set", "number")
# Staging rows are looked up by their import set only (the transform, the connector reading outcomes); an index on
# their source ids would cost every row of every insertMultiple an index insert and serve no query.
STAGING_INDEXED = ("sys_import_set",)


def new_sys_id() -> str:
    """32 hex digits, like ServiceNow's sys_ids."""
    return os.urandom(16).hex()


def new_sys_ids(count: int) -> list[str]:
    """count sys_ids like new_sys_id's, from one os.urandom call: a staging batch needs hundreds at once."""
    digits = os.urandom(16 * count).hex()
    return [digits[start : start + 32] for start in range(0, 32 * count, 32)]


def now_text() -> str:
    """ServiceNow's date-time format, in UTC."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")


def quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


# Keyed by the table's columns too: an update set may add columns to a table that already has rows.
_BLANK_ROWS: dict[tuple[str, tuple[str, ...]], dict[str, object]] = {}


def _blank_row(table: Table) -> dict[str, object]:
    key = (table.name, table.all_columns)
    blank = _BLANK_ROWS.get(key)
    if blank is None:
        blank = _BLANK_ROWS[key] = {c: (0 if table.is_integer(c) else "") for c in table.all_columns}
    return blank


def _stamped_row(table: Table, user_name: str, stamp: str | None) -> dict[str, object]:
    """A new row of table with its system columns filled in, all but sys_id."""
    stamp = stamp or now_text()
    row = _blank_row(table).copy()
    row.update(
        sys_class_name=table.name,
        sys_created_on=stamp,
        sys_created_by=user_name,
        sys_updated_on=stamp,
        sys_updated_by=user_name,
    )
    return row


def _insert_sql(table: Table, verb: str = "INSERT", rows: int = 1) -> str:
    columns = table.all_columns
    row = "(" + ", ".join("?" for _ in columns) + ")"
    return (
        f"{verb} INTO {quoted(table.name)} ({', '.join(quoted(c) for c in columns)}) VALUES {', '.join([row] * rows)}"
    )


class Store:
    """Every read and write of sandbox data goes through here, serialised by `lock`."""

    def __init__(self, path: str | None = None, tables: Iterable[Table] = ()) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._conn = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        if path:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        with self.lock:
            self._conn.executescript(INTERNAL_SCHEMA)
        for table in tables:
            self.ensure_table(table)

    @staticmethod
    def _column_sql(table: Table, column: str) -> str:
        if column == "sys_id":
            return '"sys_id" TEXT PRIMARY KEY'
        kind, default = ("INTEGER", "0") if table.is_integer(column) else ("TEXT", "''")
        return f"{quoted(column)} {kind} NOT NULL DEFAULT {default}"

    def ensure_table(self, table: Table) -> None:
        """Create the table, or add the columns it lacks (an update set adding custom columns), and its indexes."""
        with self.lock:
            present = {row[1] for row in self._conn.execute(f"PRAGMA table_info({quoted(table.name)})")}
            if not present:
                columns = ", ".join(self._column_sql(table, c) for c in table.all_columns)
                self._conn.execute(f"CREATE TABLE {quoted(table.name)} ({columns})")
            else:
                for column in table.all_columns:
                    if column not in present:
                        self._conn.execute(
                            f"ALTER TABLE {quoted(table.name)} ADD COLUMN {self._column_sql(table, column)}"
                        )
            for column in STAGING_INDEXED if table.extends == IMPORT_SET_ROW else INDEXED:
                if table.has(column):
                    index = quoted(f"{table.name}__{column}")
                    self._conn.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {quoted(table.name)} ({quoted(column)})")

    def close(self) -> None:
        with self.lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and one transaction; commit on success, roll back on any error."""
        with self.lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self.lock:
            return self._conn.execute(sql, params).fetchall()

    def scalar(self, sql: str, params: Sequence[object] = ()) -> object:
        rows = self.execute(sql, params)
        return rows[0][0] if rows else None

    # -- records of schema tables -------------------------------------------------------------

    @staticmethod
    def complete_row(
        table: Table, values: dict[str, object], user_name: str, stamp: str | None = None
    ) -> dict[str, object]:
        """A full row for table: system columns filled in, unknown keys dropped, missing ones empty."""
        row = _stamped_row(table, user_name, stamp)
        row["sys_id"] = new_sys_id()
        row.update({k: v for k, v in values.items() if table.has(k)})
        return row

    @staticmethod
    def row_template(table: Table, user_name: str, stamp: str | None = None) -> list[object]:
        """complete_row's row without values or sys_id, as a list in table.all_columns order: for callers that fill
        many rows by column position (a staging batch), which costs far less than a dict and complete_row a row."""
        return list(_stamped_row(table, user_name, stamp).values())

    @staticmethod
    def insert_rows(conn: sqlite3.Connection, table: Table, rows: Iterable[dict[str, object]]) -> None:
        columns = table.all_columns
        Store.insert_values(conn, table, [tuple(row[c] for c in columns) for row in rows])

    @staticmethod
    def insert_values(conn: sqlite3.Connection, table: Table, rows: Sequence[Sequence[object]]) -> None:
        """Insert rows given as their values in table.all_columns order (see row_template), as many a statement as
        SQLite's parameter limit allows: executemany steps once a row, and lets another request thread take the GIL
        at every step, which cost a staging batch more CPU and kept concurrent requests waiting longer."""
        per_statement = max(1, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(table.all_columns))
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            conn.execute(_insert_sql(table, rows=len(chunk)), [value for row in chunk for value in row])

    @staticmethod
    def upsert_rows(
        conn: sqlite3.Connection,
        table: Table,
        rows: Iterable[dict[str, object]],
        user_name: str,
        only_new: bool = False,
    ) -> None:
        """Insert rows that carry their own sys_id, replacing a stored row with that sys_id (or, only_new, keeping
        it): how a configuration record is committed again."""
        columns = table.all_columns
        sql = _insert_sql(table, "INSERT OR IGNORE" if only_new else "INSERT OR REPLACE")
        full = [{**Store.complete_row(table, row, user_name), "sys_id": row["sys_id"]} for row in rows]
        conn.executemany(sql, [tuple(row[c] for c in columns) for row in full])

    @staticmethod
    def update_rows(conn: sqlite3.Connection, table: Table, columns: Sequence[str], rows: Iterable[dict]) -> None:
        """Update the given columns of rows (matched by sys_id), bumping sys_mod_count."""
        assignments = ", ".join(f"{quoted(c)} = ?" for c in columns)
        sql = f'UPDATE {quoted(table.name)} SET {assignments}, "sys_mod_count" = "sys_mod_count" + 1 WHERE sys_id = ?'
        conn.executemany(sql, [tuple(row[c] for c in columns) + (row["sys_id"],) for row in rows])

    def insert(self, table: Table, values: dict[str, object], user_name: str = "system") -> dict[str, object]:
        row = self.complete_row(table, values, user_name)
        with self.transaction() as conn:
            self.insert_rows(conn, table, [row])
        return row

    @staticmethod
    def next_number(conn: sqlite3.Connection, prefix: str, start: int = 10001) -> str:
        """ServiceNow-style record numbers: ISET0010001, ISET0010002, ..."""
        row = conn.execute("SELECT value FROM sandbox_counter WHERE name = ?", (prefix,)).fetchone()
        value = row[0] + 1 if row else start
        conn.execute("INSERT OR REPLACE INTO sandbox_counter (name, value) VALUES (?, ?)", (prefix, value))
        return f"{prefix}{value:07d}"

    def select(
        self,
        table: Table,
        where: str = "",
        params: Sequence[object] = (),
        order: str = "",
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, object]]:
        sql = f"SELECT * FROM {quoted(table.name)}"
        if where:
            sql += f" WHERE {where}"
        sql += f" ORDER BY {order}" if order else " ORDER BY rowid"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params = (*params, limit, offset)
        return [dict(row) for row in self.execute(sql, params)]

    def count(self, table: Table, where: str = "", params: Sequence[object] = ()) -> int:
        sql = f"SELECT COUNT(*) FROM {quoted(table.name)}" + (f" WHERE {where}" if where else "")
        return int(self.scalar(sql, params) or 0)

    def get(self, table: Table, sys_id: str) -> dict[str, object] | None:
        rows = self.select(table, "sys_id = ?", (sys_id,))
        return rows[0] if rows else None

    def clear_records(self, tables: Iterable[Table]) -> None:
        """Forget every row of these tables, the waiting transforms and the record numbers."""
        with self.transaction() as conn:
            for table in tables:
                conn.execute(f"DELETE FROM {quoted(table.name)}")
            conn.execute("DELETE FROM sandbox_job")
            conn.execute("DELETE FROM sandbox_counter")
