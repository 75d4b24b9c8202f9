"""Differential exports against the sandbox: only what changed, retirements once, full exports, Preview's counts."""

from __future__ import annotations

from tests.exports.conftest import counts
from tests.exports.wire import on_first_batch


def sent_by_type(run) -> dict[str, int]:
    return {dt.data_type: dt.sent for dt in run.data_types}


def test_second_export_sends_nothing_then_only_changes_and_retirements(
    app, sandbox, configure_tenant, inventory, run_export
):
    from demo_portal.demo_data import mutate_inventory

    inventory(computers=100, installs=300, contracts=20)
    configure_tenant()
    first = run_export()
    assert sent_by_type(first) == {"hardware_inventory": 100, "contracts": 20, "installed_applications": 300}

    second = run_export()
    assert second.status == "succeeded"
    assert sent_by_type(second) == {"hardware_inventory": 0, "contracts": 0, "installed_applications": 0}
    assert "Nothing to send" in second.message

    with app.app_context():
        changed = mutate_inventory(
            "acme", change_fraction=0.01, delete=2, add=0, data_types=("installed_applications",)
        )
    third = run_export()
    installs = next(dt for dt in third.data_types if dt.data_type == "installed_applications")
    assert installs.changed == 3 and installs.retired == 2 and installs.new == 0
    assert installs.sent == 5 and installs.unchanged == 295
    assert sent_by_type(third)["hardware_inventory"] == 0

    # The sandbox's table ends equal to ITAM's data: every record there, the deleted installs gone (the update set's
    # retire-install script deletes an install a discovery source no longer reports, as ServiceNow's own sources do).
    assert sandbox.wait_idle(20)
    rows = sandbox.records("cmdb_sam_sw_install")
    deleted = {f"acme:{record_id}" for record_id in changed["installed_applications"]["deleted"]}
    assert len(rows) == 298 and len(deleted) == 2
    assert not deleted & {row["u_source_id"] for row in rows}

    # Retirements are sent once.
    fourth = run_export()
    assert sent_by_type(fourth)["installed_applications"] == 0


def test_full_export_sends_everything(sandbox, configure_tenant, inventory, run_export):
    inventory(computers=30, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    run_export()
    full = run_export(full=True)
    assert counts(full)["hardware_inventory"] == (30, 0)
    assert sandbox.wait_idle(20)
    assert len(sandbox.records("cmdb_ci_computer")) == 30


def test_a_new_instance_url_makes_the_next_export_full(app, sandbox, configure_tenant, inventory, run_export):
    from servicenow_sandbox import SandboxServer

    inventory(computers=25, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    run_export()
    with SandboxServer(default_client_id="default-client", default_client_secret="default-client-secret") as other:
        from itam_admin.identity import Identity
        from itam_admin.settings.store import save_settings
        from itam_admin.settings.values import SettingsChange

        with app.app_context():
            save_settings(
                "acme",
                SettingsChange(
                    other.url, "admin", False, ("hardware_inventory",), token=other.generate_refresh_token()
                ),
                Identity("1", "A", "acme", frozenset()),
            )
        run = run_export()
        assert counts(run)["hardware_inventory"] == (25, 0)
        assert other.wait_idle(20)
        assert len(other.records("cmdb_ci_computer")) == 25


def test_preview_counts_equal_what_the_next_export_sends(
    app, client, auth, sandbox, configure_tenant, inventory, run_export
):
    from demo_portal.demo_data import mutate_inventory

    inventory(computers=50, installs=100, contracts=10)
    configure_tenant()
    run_export()
    with app.app_context():
        mutate_inventory("acme", change_fraction=0.04, delete=1, add=2)
    auth.login("admin@acme.example")
    page = client.get("/settings/general/integrations/servicenow/preview").get_data(as_text=True)
    assert "Nothing has been sent" in page
    import re

    preview = {}
    for data_type, new, changed, retired in re.findall(
        r'data-type="(\w+)">.*?class="num new">(\d+)<.*?class="num changed">(\d+)<.*?class="num retired">(\d+)<',
        page,
        re.S,
    ):
        preview[data_type] = int(new) + int(changed) + int(retired)
    before = len(sandbox.records("sys_import_set"))
    run = run_export()
    assert preview == {dt.data_type: dt.sent for dt in run.data_types}
    assert sum(preview.values()) > 0
    assert before < len(sandbox.records("sys_import_set")) or sum(preview.values()) == 0


def backdate_inventory(app, tenant: str = "acme") -> None:
    from demo_portal.demo_data import age_inventory

    with app.app_context():
        age_inventory(tenant)


def test_after_a_complete_export_only_changed_rows_are_read(app, sandbox, configure_tenant, inventory, run_export):
    from demo_portal.demo_data import mutate_inventory
    from itam_admin.exports.planner import Plan
    from itam_admin.inventory.source import SqlInventorySource

    class CountingSource(SqlInventorySource):
        read = counted = 0

        def iter_records_changed_since(self, *args):
            for record in super().iter_records_changed_since(*args):
                CountingSource.read += 1
                yield record

        def count(self, *args):
            CountingSource.counted += 1
            return super().count(*args)

    inventory(computers=100, installs=300, contracts=20)
    backdate_inventory(app)
    configure_tenant()
    run_export()
    with app.app_context():
        changed = mutate_inventory("acme", change_fraction=0.01, delete=2, data_types=("installed_applications",))
        plan = Plan("acme", sandbox.url, "installed_applications", CountingSource())
        actions = [planned.action for planned in plan]
        total = plan.count()  # the count the plan's deletion test used, asked again: not counted again
    assert plan.since is not None
    assert CountingSource.read == len(changed["installed_applications"]["changed"]) == 3
    assert (total, CountingSource.counted) == (298, 1)  # the source is counted once (a full count costs 0.2 s at 1M)
    assert sorted(actions) == ["changed"] * 3 + ["retired"] * 2
    assert plan.skipped_unchanged == 295

    run = run_export()
    installs = next(dt for dt in run.data_types if dt.data_type == "installed_applications")
    assert (installs.changed, installs.retired, installs.unchanged, installs.sent) == (3, 2, 295, 5)
    assert sent_by_type(run)["hardware_inventory"] == 0


def test_a_failed_batch_keeps_the_records_due_for_the_next_export(
    app, sandbox, configure_tenant, inventory, run_export
):
    config = app.extensions["itam_admin"].config
    app.extensions["itam_admin"].config = config.__class__(
        **{**config.__dict__, "batch_size": 20, "max_retries": 0, "requests_in_flight": 1}
    )
    inventory(computers=60, installs=0, contracts=0)
    backdate_inventory(app)
    configure_tenant(types=("hardware_inventory",))
    on_first_batch(sandbox, lambda: sandbox.faults.fail_next(1, 500))
    first = run_export()
    assert first.status == "partially_succeeded" and counts(first)["hardware_inventory"] == (40, 20)
    second = run_export()
    assert counts(second)["hardware_inventory"] == (20, 0)
    third = run_export()
    assert counts(third)["hardware_inventory"] == (0, 0)
    assert sandbox.wait_idle(20)
    assert len(sandbox.records("cmdb_ci_computer")) == 60


def test_renaming_a_computer_resends_the_installs_that_carry_its_name(
    app, sandbox, configure_tenant, inventory, run_export
):
    from sqlalchemy import func, select, update

    from itam_admin.db import db, utcnow
    from itam_admin.inventory.models import Computer, InstalledApplication

    inventory(computers=20, installs=100, contracts=0)
    backdate_inventory(app)
    configure_tenant(types=("hardware_inventory", "installed_applications"))
    run_export()
    with app.app_context():
        computer_id = db.session.scalar(
            select(InstalledApplication.computer_id).group_by(InstalledApplication.computer_id).limit(1)
        )
        on_it = db.session.scalar(
            select(func.count())
            .select_from(InstalledApplication)
            .where(InstalledApplication.computer_id == computer_id)
        )
        db.session.execute(
            update(Computer).where(Computer.id == computer_id).values(name="renamed-host", updated_at=utcnow())
        )
        db.session.commit()
    run = run_export()
    by_type = {dt.data_type: (dt.changed, dt.sent) for dt in run.data_types}
    assert by_type == {"hardware_inventory": (1, 1), "installed_applications": (on_it, on_it)}
