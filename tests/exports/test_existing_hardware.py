"""Hardware already in ServiceNow from another source (the seed's SCCM example): installs attach to those computers,
and computers we send are matched to them through IRE instead of being duplicated (issue #13).

ServiceNow: the Identification and Reconciliation Engine identifies a computer by its identification rules (serial
number, then name, for hardware) before inserting one (ServiceNowDocs, `c_IdentEngineScriptAPI.md`, example output
"Hardware Rule"); coalescing a transform map on a new field would bypass IRE and duplicate SCCM's CIs
(SERVICENOW-FACTS, "CMDB and identity"). The update set's transforms do the first (`servicenow_app.py`), the sandbox
emulates them from the scripts' markers."""

from __future__ import annotations

from sqlalchemy import select

from itam_admin.db import db
from itam_admin.inventory.models import Computer


def computers_from_sccm(app, sandbox, tenant: str = "acme") -> dict[str, str]:
    """Put the tenant's computers into the sandbox as SCCM would (name and serial number, no u_source_id); return the
    sys_id of each by serial number."""
    with app.app_context():
        ours = db.session.execute(
            select(Computer.name, Computer.serial_number).where(Computer.tenant_id == tenant)
        ).all()
    rows = sandbox.add_records("cmdb_ci_computer", [{"name": name, "serial_number": serial} for name, serial in ours])
    return {str(row["serial_number"]): str(row["sys_id"]) for row in rows}


def test_installs_alone_attach_to_computers_another_source_put_in_servicenow(
    app, sandbox, configure_tenant, inventory, run_export
):
    inventory(computers=12, installs=60, contracts=0)
    sccm = computers_from_sccm(app, sandbox)
    configure_tenant(types=("installed_applications",))
    run = run_export()
    assert run.status == "succeeded", run.message
    assert sandbox.wait_idle(20)
    installs = sandbox.records("cmdb_sam_sw_install")
    assert len(installs) == 60
    assert {install["installed_on"] for install in installs} <= set(sccm.values())
    assert all(install["installed_on"] for install in installs)
    assert len(sandbox.records("cmdb_ci_computer")) == 12  # nothing added beside SCCM's


def test_computers_we_send_update_the_ones_another_source_has_and_add_none(
    app, sandbox, configure_tenant, inventory, run_export
):
    inventory(computers=12, installs=60, contracts=0)
    sccm = computers_from_sccm(app, sandbox)
    configure_tenant(types=("hardware_inventory", "installed_applications"))
    run = run_export()
    assert run.status == "succeeded", run.message
    assert sandbox.wait_idle(20)
    computers = sandbox.records("cmdb_ci_computer")
    assert len(computers) == 12
    assert {str(c["sys_id"]) for c in computers} == set(sccm.values())  # the same CIs, updated
    assert all(str(c["u_source_id"]).startswith("acme:") for c in computers)
    installs = sandbox.records("cmdb_sam_sw_install")
    assert len(installs) == 60 and {i["installed_on"] for i in installs} <= set(sccm.values())


def test_an_export_to_an_instance_without_the_connectors_app_fails_at_once_saying_what_to_install(
    app, inventory, run_export
):
    """A stock instance answers the staging table's Table API read with 400 "Invalid table" (recorded answers,
    SERVICENOW-FACTS); the run stops before sending anything, with the fix."""
    from itam_admin.identity import Identity
    from itam_admin.settings.store import save_settings
    from itam_admin.settings.values import SettingsChange
    from servicenow_sandbox import SandboxServer

    inventory(computers=5, installs=10, contracts=2)
    with SandboxServer(
        stock=True, default_client_id="default-client", default_client_secret="default-client-secret"
    ) as stock:
        with app.app_context():
            # A stock instance has no entry for the portal's default client: the admin registered their own.
            stock.add_client("own-client", "own-client-secret")
            change = SettingsChange(
                stock.url,
                "admin",
                True,
                ("hardware_inventory", "contracts", "installed_applications"),
                token=stock.generate_refresh_token(client_id="own-client"),
                client_id="own-client",
                client_secret="own-client-secret",
            )
            save_settings("acme", change, Identity("1", "A", "acme", frozenset()))
        run = run_export()
        assert run.status == "failed"
        assert "update set" in run.message and "Set up ServiceNow" in run.message
        assert stock.state.metrics.batches_received["u_itam_hardware_inventory"] == 0
        assert sum(stock.state.metrics.records_received.values()) == 0


def test_the_cli_writes_the_update_set_the_tab_offers(app, runner, client, auth, tmp_path):
    """`flask itam servicenow-app -o FILE` writes the same XML as the tab's download (SPEC 5a)."""
    import xml.etree.ElementTree as ElementTree

    target = tmp_path / "itam-servicenow-connector.xml"
    result = runner.invoke(args=["itam", "servicenow-app", "-o", str(target)])
    assert result.exit_code == 0 and str(target) in result.output
    root = ElementTree.fromstring(target.read_text())
    assert root.tag == "unload" and root.find("sys_remote_update_set") is not None
    assert "default-client" in target.read_text() and "default-client-secret" not in target.read_text()
    auth.login()
    download = client.get("/settings/general/integrations/servicenow/servicenow-app.xml")
    assert download.get_data(as_text=True) == target.read_text()
