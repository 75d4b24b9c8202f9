"""The plugin's database handle and declarative base; never holds connection state of its own."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import ColumnElement, Engine, MetaData, event
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


db = SQLAlchemy(model_class=Base)

IDS_PER_STATEMENT = 500  # bound parameters per IN (...), well under every SQLite build's and PostgreSQL's limits
Item = TypeVar("Item")


def in_chunks(items: Sequence[Item]) -> Iterator[Sequence[Item]]:
    """The items in slices of at most IDS_PER_STATEMENT, one IN (...) list a statement."""
    for start in range(0, len(items), IDS_PER_STATEMENT):
        yield items[start : start + IDS_PER_STATEMENT]


def unindexed(column: ColumnElement[Any], dialect_name: str) -> ColumnElement[Any]:
    """On SQLite, `column` as its unary + makes it: the same value in a term no index can serve ("Disqualifying WHERE
    clause terms using unary-+", SQLite's query optimizer overview); elsewhere the column itself. SQLite keeps no
    statistics unless someone runs ANALYZE, and without them it prefers an index on an equality term (a tenant, a
    ledger) to a far narrower one, walking every row of the tenant or ledger (issue #15). PostgreSQL plans by its
    statistics and has no unary + for text."""
    if dialect_name != "sqlite":
        return column
    return UnaryExpression(column, operator=operators.custom_op("+"))


def utcnow() -> datetime:
    """Naive UTC now: every timestamp in our tables is UTC without tzinfo, on SQLite and PostgreSQL alike."""
    return datetime.now(UTC).replace(tzinfo=None)


@event.listens_for(Engine, "connect")
def _sqlite_for_several_processes(dbapi_connection, _record) -> None:
    """SQLite serves the demo and the tests with a web process and workers at once: wait for locks, and let readers
    read while a worker writes (WAL)."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.close()
