"""Differential exports against the sandbox: only what changed, retirements once, full exports, Preview's counts."""

from __future__ import annotations

from tests.exports.conftest import counts


def sent_by_type(run) -> dict[str, int]:
    return {dt.data_type: dt.sent for dt in run.data_types}


def test_second_export_sends_nothing_then_only_changes_and_retirements(
    app, sandbox, configure_tenant, inventory, run_export
):
    from itam_admin.inventory.demo_data import mutate_inventory

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

    # The sandbox's table ends equal to ITAM's data: every record there, deleted ones retired.
    assert sandbox.wait_idle(20)
    rows = sandbox.records("cmdb_sam_sw_install")
    assert len(rows) == 300
    deleted = set(changed["installed_applications"]["deleted"])
    retired = {
        row["u_source_id"]
        for row in rows
        if row.get("install_status") == "retired" or row.get("u_operational_status") == "retired"
    }
    assert retired == deleted

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
    from itam_admin.sandbox import SandboxServer

    inventory(computers=25, installs=0, contracts=0)
    configure_tenant(types=("hardware_inventory",))
    run_export()
    with SandboxServer(default_client_id="default-client", default_client_secret="default-client-secret") as other:
        from itam_admin import current_plugin
        from itam_admin.identity import Identity
        from itam_admin.tenant_settings import SettingsChange, save_settings

        with app.app_context():
            save_settings(
                "acme",
                SettingsChange(
                    other.url, "admin", False, ("hardware_inventory",), token=other.generate_refresh_token()
                ),
                Identity("1", "A", "acme", frozenset()),
                current_plugin().crypto,
            )
        run = run_export()
        assert counts(run)["hardware_inventory"] == (25, 0)
        assert other.wait_idle(20)
        assert len(other.records("cmdb_ci_computer")) == 25


def test_preview_counts_equal_what_the_next_export_sends(
    app, client, auth, sandbox, configure_tenant, inventory, run_export
):
    from itam_admin.inventory.demo_data import mutate_inventory

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
