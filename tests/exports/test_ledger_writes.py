"""The exporter's ledger writes (issue #15): the rows of many import sets go in one statement, and what is committed
always agrees with the import sets recorded as pending."""

from __future__ import annotations

import pytest


@pytest.fixture
def app_env(app_env):
    app_env["ITAM_EXPORT_BATCH_SIZE"] = "25"
    app_env["ITAM_EXPORT_READ_BACK_WAIT_SECONDS"] = "0"
    return app_env


def test_every_commit_of_an_export_holds_the_ledger_rows_of_every_import_set_it_records_as_pending(
    app, app_env, sandbox, configure_tenant, inventory, run_export, monkeypatch
):
    """The exporter writes the ledger rows of many import sets at once (issue #15), some when enough are waiting and
    the rest just before its commits. Whatever a crash interrupts, what is committed must agree: every record of an
    import set committed as awaiting its transform has its ledger row awaiting that import set, and no more."""
    from sqlalchemy import create_engine, event
    from sqlalchemy.orm import Session

    from itam_admin.exports import exporter

    monkeypatch.setattr(exporter, "LEDGER_ROWS_PER_WRITE", 60)  # batches of 25 (below): some writes before a commit
    monkeypatch.setattr(exporter, "PROGRESS_EVERY_SECONDS", 0.0)  # a commit after almost every batch
    inventory(computers=30, installs=400, contracts=0)
    configure_tenant(types=("installed_applications",))
    watcher = create_engine(app_env["DATABASE_URL"])
    seen: list[tuple[int, int]] = []

    def check(session):  # what another connection sees after each commit
        with watcher.connect() as connection:
            awaiting = connection.exec_driver_sql(
                "SELECT count(*) FROM itam_sent_record WHERE import_set_id IS NOT NULL"
            ).scalar()
            pending = connection.exec_driver_sql(
                "SELECT coalesce(sum(record_count), 0) FROM itam_pending_import_set"
            ).scalar()
        seen.append((awaiting, pending))

    event.listen(Session, "after_commit", check)
    try:
        sandbox.hold_transforms()  # nothing confirmed while the export runs, so every sent record awaits
        run = run_export(full=True)
    finally:
        event.remove(Session, "after_commit", check)
        sandbox.release_transforms()
        watcher.dispose()

    assert sum(dt.sent for dt in run.data_types) == 400
    assert all(awaiting == pending for awaiting, pending in seen), [pair for pair in seen if pair[0] != pair[1]]
    in_between = {pending for _, pending in seen if 0 < pending < 400}
    assert len(in_between) >= 3  # commits in the middle of the export were checked, not only the first and last
