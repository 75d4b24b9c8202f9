"""The schema comes from Alembic migrations: one head, upgrade from nothing on SQLite and PostgreSQL, models agree."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import upgrade

from itam_admin.db import db
from itam_admin.plugin import package_folder


def migrated_app(app_env, tmp_path, database_url):
    from demo_portal import create_app

    application = create_app(env={**app_env, "DATABASE_URL": database_url}, instance_path=str(tmp_path / "inst"))
    with application.app_context():
        upgrade(directory=package_folder("migrations"))
    return application


def test_migrations_have_one_head(app):
    with app.app_context():
        config = app.extensions["migrate"].migrate.get_config(package_folder("migrations"))
        assert len(ScriptDirectory.from_config(config).get_heads()) == 1


def _assert_models_match(application):
    import demo_portal.models  # noqa: F401
    import itam_admin.models  # noqa: F401

    with application.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, db.metadata)
    assert differences == [], f"models and migrations disagree: {differences}"


def test_upgrade_from_empty_on_sqlite_matches_the_models(app_env, tmp_path):
    application = migrated_app(app_env, tmp_path, f"sqlite:///{tmp_path / 'migrated.sqlite3'}")
    _assert_models_match(application)


@pytest.mark.postgres
def test_upgrade_from_empty_on_postgresql_matches_the_models(app_env, tmp_path, postgres_database):
    application = migrated_app(app_env, tmp_path, postgres_database)
    _assert_models_match(application)
    with application.app_context():
        db.engine.dispose()


def test_flask_db_upgrade_command_builds_the_schema(app_env, tmp_path):
    import subprocess
    import sys

    env = {**app_env, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}", "ITAM_INSTANCE_PATH": str(tmp_path)}
    import os

    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    import sqlite3

    tables = {row[0] for row in sqlite3.connect(tmp_path / "cli.sqlite3").execute("select name from sqlite_master")}
    assert {"compliance_tenant_setting", "itam_export_run", "itam_computer"} <= tables


def test_an_upgrade_in_the_hosts_own_process_leaves_the_connectors_logging_on(app_env, tmp_path):
    """A host may upgrade the schema in its own process (flask_migrate.upgrade at start-up); Alembic's env.py reads
    alembic.ini's logging with logging.config.fileConfig, whose default disables every logger that exists already
    (Python docs, logging.config.fileConfig: disable_existing_loggers defaults to True). The connector's loggers
    (outage lines, failed exports) must still write afterwards."""
    import logging

    exports = logging.getLogger("itam_admin.exports")
    migrated_app(app_env, tmp_path, f"sqlite:///{tmp_path / 'migrated.sqlite3'}")

    assert not exports.disabled and not logging.getLogger("itam_admin").disabled
