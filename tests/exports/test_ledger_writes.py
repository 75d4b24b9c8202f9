"""The exporter's ledger writes (issue #15): the rows of many import sets go in one statement, and what is committed
always agrees with the import sets recorded as pending."""

from __future__ import annotations

import pytest


@pytest.fixture
def app_env(app_env):
    app_env["ITAM_EXPORT_BATCH_SIZE"] = "25"
    app_env["ITAM_EXPORT_READ_BACK_WAIT_SECONDS"] = "0"
    # One request in flight: batches finish one by one, so where the commits fall does not depend on the machine's
    # speed (with eight, all 16 batches of the test below can be on the wire at once and finish together).
    app_env["ITAM_EXPORT_REQUESTS_IN_FLIGHT"] = "1"
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

    # Batches of 25 (above) and a progress commit once three batches are recorded since the last one (below): 50
    # records reach LEDGER_ROWS_PER_WRITE and are written before the commit, the third batch's 25 at the commit.
    monkeypatch.setattr(exporter, "LEDGER_ROWS_PER_WRITE", 40)
    monkeypatch.setattr(exporter, "PROGRESS_EVERY_SECONDS", 0.0)
    recorded = {"batches": 0, "at_last_commit": 0}
    record, save_progress = exporter.Exporter.record, exporter.Exporter.save_progress

    def counting_record(self, outcome):
        recorded["batches"] += 1
        return record(self, outcome)

    def every_third_batch(self, force=False):  # the exporter's own commit points, by count rather than by clock
        if force or recorded["batches"] - recorded["at_last_commit"] >= 3:
            recorded["at_last_commit"] = recorded["batches"]
            return save_progress(self, force=True)

    monkeypatch.setattr(exporter.Exporter, "record", counting_record)
    monkeypatch.setattr(exporter.Exporter, "save_progress", every_third_batch)
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


def test_a_read_back_finds_the_import_sets_accepted_since_the_last_ledger_write(
    app, sandbox, configure_tenant, inventory
):
    """The exporter holds the import sets of accepted batches, like their ledger rows, until its next write (one
    statement for many; issue #15). A read back in between must still find every one of them: an import set it
    missed would leave its records unconfirmed although ServiceNow wrote them."""
    from itam_admin.datatypes import data_type as registry_entry
    from itam_admin.exports import planner
    from itam_admin.exports.exporter import Batch, Exporter, send_batch
    from itam_admin.exports.runs import create_run
    from itam_admin.inventory.source import SqlInventorySource
    from itam_admin.plugin import current_plugin
    from itam_admin.tenant_client import client_for
    from tests.exports.conftest import ACME_ADMIN

    inventory(computers=6, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    data_type = "hardware_inventory"
    with app.app_context():
        run = create_run("acme", "manual", ACME_ADMIN, True)
        client = client_for("acme")
        try:
            exporter = Exporter(run, client, SqlInventorySource(), current_plugin().config)
            items = list(planner.Plan("acme", run.instance_url, data_type, SqlInventorySource(), True))
            staging_table = registry_entry(data_type).staging_table
            for number, part in enumerate((items[:3], items[3:]), start=1):
                exporter.record(send_batch(client, staging_table, Batch(data_type, number, part), 10**6))
            assert len(exporter.unwritten_sets[data_type]) == 2  # held, not written yet: what this test is about
            assert sandbox.wait_idle(), "the sandbox did not transform the two import sets"
            exporter.settle(data_type)
        finally:
            client.close()
        tally = exporter.tally[data_type]
        assert (tally["sent"], tally["confirmed"], tally["unconfirmed"]) == (6, 6, 0)
        assert exporter.ledgers[data_type].pending() == []
