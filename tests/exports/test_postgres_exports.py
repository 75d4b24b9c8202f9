"""Exports on PostgreSQL, where production runs (issue #15): the ledger's PostgreSQL path (the rows of many import sets
copied into a temporary table, then one upsert) records exactly what was sent, a differential export then sends only
what changed, and a record sent again replaces its ledger row instead of adding one."""

from __future__ import annotations

import pytest
from sqlalchemy import event, func, select, text

from itam_admin.db import db
from itam_admin.exports.models import SentRecord

pytestmark = pytest.mark.postgres


@pytest.fixture
def app_env(app_env, postgres_database):
    app_env["DATABASE_URL"] = postgres_database
    app_env["ITAM_EXPORT_BATCH_SIZE"] = "25"
    return app_env


def ledger_rows(app) -> list[tuple[str, str, str | None]]:
    with app.app_context():
        assert db.engine.dialect.name == "postgresql"
        query = select(SentRecord.source_id, SentRecord.content_hash, SentRecord.import_set_id)
        return sorted(db.session.execute(query).all())


def ledger_statistics(app) -> float:
    """How many rows PostgreSQL's statistics say the ledger table holds (-1: never analyzed)."""
    with app.app_context():
        counted = db.session.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'itam_sent_record'"))
        db.session.rollback()
        return counted


@pytest.fixture
def analyzes(app):
    """The ANALYZE statements of the ledger table the app's engine runs while the test does."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("ANALYZE") and "itam_sent_record" in statement:
            seen.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def test_a_full_then_a_differential_export_on_postgresql_keeps_one_ledger_row_per_record(
    app, sandbox, configure_tenant, inventory, run_export
):
    from demo_portal.demo_data import mutate_inventory

    inventory(computers=30, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    first = run_export(full=True)
    (hardware,) = first.data_types
    assert (first.status, hardware.sent, hardware.failed) == ("succeeded", 30, 0), first.message
    rows = ledger_rows(app)
    assert len(rows) == 30 and len({row[0] for row in rows}) == 30
    assert all(import_set is None for _, _, import_set in rows)  # confirmed: ServiceNow's transform wrote each

    with app.app_context():
        changes = mutate_inventory("acme", change_fraction=0.1, delete=0, data_types=("hardware_inventory",))
    changed = set(changes["hardware_inventory"]["changed"])
    second = run_export()
    (hardware,) = second.data_types
    assert (second.status, hardware.sent, hardware.changed) == ("succeeded", len(changed), len(changed))
    after = ledger_rows(app)
    assert len(after) == 30
    moved = {source_id for (source_id, digest, _), (_, before, _) in zip(after, rows, strict=True) if digest != before}
    assert len(moved) == len(changed)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SentRecord)) == 30


def test_an_export_that_writes_many_ledger_rows_leaves_postgresql_statistics_that_count_them(
    app, sandbox, configure_tenant, inventory, run_export, monkeypatch, analyzes
):
    """PostgreSQL plans the ledger's lookups on the table's statistics; planned on an empty table's, a differential
    export read the whole ledger for every lookup (issue #15: 199 ms a statement on 1,000,000 rows, 2.8 ms after
    ANALYZE). An export that wrote many more rows than the statistics count analyzes the table itself, rather than
    leaving it to autovacuum a minute or more later (PostgreSQL docs, "The Autovacuum Daemon": a table is analyzed
    once its changed tuples pass autovacuum_analyze_threshold + autovacuum_analyze_scale_factor x reltuples)."""
    from itam_admin.exports import ledger

    monkeypatch.setattr(ledger, "ANALYZE_AFTER_ROWS", 100)
    inventory(computers=300, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))

    run = run_export(full=True)
    assert sum(dt.sent for dt in run.data_types) == 300
    assert len(analyzes) == 1
    assert ledger_statistics(app) == 300  # what the planner now assumes of the ledger

    run_export(full=True)  # the statistics count these rows already: no second ANALYZE
    assert len(analyzes) == 1


@pytest.mark.timeout(60)  # without the lock timeout ANALYZE would wait for the lock this test holds
def test_an_export_whose_analyze_cannot_get_its_lock_still_succeeds_and_keeps_its_ledger(
    app, app_env, sandbox, configure_tenant, inventory, run_export, monkeypatch, analyzes
):
    """ANALYZE takes a SHARE UPDATE EXCLUSIVE lock, which someone's VACUUM or ANALYZE of the ledger table holds too
    (PostgreSQL docs, "Explicit Locking"). The export does not wait behind it beyond a short lock timeout, and a
    statistics refresh that failed fails nothing: the run succeeds with its ledger rows written."""
    from sqlalchemy import create_engine

    from itam_admin.exports import ledger

    monkeypatch.setattr(ledger, "ANALYZE_AFTER_ROWS", 10)
    monkeypatch.setattr(ledger, "ANALYZE_LOCK_TIMEOUT", "200ms")
    inventory(computers=40, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    before = ledger_statistics(app)
    holder = create_engine(app_env["DATABASE_URL"])
    try:
        with holder.begin() as connection:
            connection.exec_driver_sql("LOCK TABLE itam_sent_record IN SHARE UPDATE EXCLUSIVE MODE")  # until commit
            run = run_export(full=True)
            rows = ledger_rows(app)
    finally:
        holder.dispose()

    assert run.status == "succeeded", run.message
    assert len(rows) == 40 and all(import_set is None for _, _, import_set in rows)
    assert len(analyzes) == 1  # it was tried, and gave up behind the lock:
    assert ledger_statistics(app) == before
