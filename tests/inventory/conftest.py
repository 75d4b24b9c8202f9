"""Fixtures for the inventory tests: a tiny Flask app holding only the inventory tables, once on SQLite and once on a
throwaway PostgreSQL database (skipped only when PostgreSQL is unreachable outside CI)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from flask import Flask
from sqlalchemy import Engine, event

from itam_admin.db import db
from itam_admin.inventory.models import TABLES_BY_DATA_TYPE

POSTGRES_ADMIN_URL = os.environ.get("ITAM_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
INVENTORY_TABLES = list(TABLES_BY_DATA_TYPE.values())


def _create_postgres_database() -> tuple[str, str]:
    """A new, uniquely named database; returns its SQLAlchemy URL and name."""
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is unreachable at {POSTGRES_ADMIN_URL} and CI is set: {error}")
        pytest.skip(f"PostgreSQL is unreachable at {POSTGRES_ADMIN_URL}: {error}")
    name = f"itam_test_inventory_{uuid.uuid4().hex[:12]}"
    with admin:
        try:
            # A linguistic default collation (ICU English), so only the columns' own "C" collation can give the
            # code-point order the tests expect.
            admin.execute(
                f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LOCALE 'C.UTF-8'"
                " LOCALE_PROVIDER icu ICU_LOCALE 'en-US'"
            )
        except psycopg.Error:
            admin.execute(f"CREATE DATABASE {name}")  # a server without ICU (or older than 15)
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{name}", name


def _drop_postgres_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('inventory') / 'inventory.db'}"
        return
    url, name = _create_postgres_database()
    try:
        yield url
    finally:
        _drop_postgres_database(name)


@pytest.fixture(scope="session")
def app(database_url: str) -> Iterator[Flask]:
    app = Flask(__name__)
    app.config.update(TESTING=True, SQLALCHEMY_DATABASE_URI=database_url)
    db.init_app(app)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            # SQLite enforces foreign keys (and so ON DELETE CASCADE) only when asked, per connection.
            event.listen(db.engine, "connect", lambda connection, _: connection.execute("PRAGMA foreign_keys=ON"))
        db.metadata.create_all(db.engine, tables=INVENTORY_TABLES)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def engine(app: Flask) -> Iterator[Engine]:
    """The app's engine inside an app context; every inventory row is gone again after the test."""
    with app.app_context():
        yield db.engine
        db.session.remove()
        with db.engine.begin() as connection:
            for table in reversed(db.metadata.sorted_tables):
                if table in INVENTORY_TABLES:
                    connection.execute(table.delete())


@pytest.fixture
def dialect(engine: Engine) -> str:
    return engine.dialect.name
