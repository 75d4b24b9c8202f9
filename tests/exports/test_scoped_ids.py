"""Tenant-scoped source ids on the wire (SPEC section 5: `<tenant id>:<record id>`): two tenants with the same record
ids exporting to one instance keep their own records, retirements name the tenant's record only, installs find their
computer by the scoped id, and a database upgraded from bare ids sends everything again under the new ids.

The sandbox coalesces on u_source_id as the connector's transform maps do in ServiceNow (SPEC section 5a)."""

from __future__ import annotations

import pytest
from flask_migrate import downgrade, stamp, upgrade
from sqlalchemy import text

from itam_admin.db import db
from itam_admin.exports.models import ExportLedger, ExportWatermark, SentRecord
from itam_admin.exports.planner import content_hash
from itam_admin.inventory.source import SqlInventorySource
from itam_admin.plugin import package_folder
from tests.exports.conftest import counts

SCOPED_IDS = "5d2f8a1c9e47"  # the migration to tenant-scoped source ids


def test_two_tenants_with_the_same_record_ids_keep_separate_records_on_one_instance(
    app, sandbox, configure_tenant, inventory, run_export
):
    inventory("acme", computers=0, installs=0, contracts=3, seed=1)
    inventory("globex", computers=0, installs=0, contracts=3, seed=2)
    configure_tenant("acme", types=("contracts",))
    configure_tenant("globex", types=("contracts",))
    assert counts(run_export("acme"))["contracts"] == (3, 0)
    assert counts(run_export("globex"))["contracts"] == (3, 0)
    assert sandbox.wait_idle(20)

    contracts = {row["u_source_id"]: row for row in sandbox.records("ast_contract")}
    assert len(contracts) == 6
    assert {"acme:CT-00000001", "globex:CT-00000001"} <= set(contracts)
    assert contracts["acme:CT-00000001"]["sys_id"] != contracts["globex:CT-00000001"]["sys_id"]

    # A contract Acme deletes is retired for Acme only; Globex's contract with the same record id stays active.
    with app.app_context():
        from itam_admin.inventory.models import Contract

        db.session.query(Contract).filter_by(tenant_id="acme", source_id="CT-00000001").delete()
        db.session.commit()
        sent = {
            row.source_id
            for row in db.session.query(SentRecord)
            .join(ExportLedger, SentRecord.ledger_id == ExportLedger.id)
            .filter(ExportLedger.tenant_id == "acme")
        }
        assert sent == {"acme:CT-00000001", "acme:CT-00000002", "acme:CT-00000003"}
    third = run_export("acme")
    assert next(dt for dt in third.data_types if dt.data_type == "contracts").retired == 1
    assert sandbox.wait_idle(20)
    contracts = {row["u_source_id"]: row for row in sandbox.records("ast_contract")}
    assert len(contracts) == 6
    assert contracts["acme:CT-00000001"]["u_operational_status"] == "retired"
    assert contracts["globex:CT-00000001"]["u_operational_status"] == "operational"


def test_installs_reach_their_own_tenants_computer_by_the_scoped_id(
    app, sandbox, configure_tenant, inventory, run_export
):
    inventory("acme", computers=4, installs=10, contracts=0, seed=1)
    inventory("globex", computers=4, installs=10, contracts=0, seed=2)
    for tenant in ("acme", "globex"):
        configure_tenant(tenant, types=("hardware_inventory", "installed_applications"))
        run = run_export(tenant)
        assert run.status == "succeeded", run.message
    assert sandbox.wait_idle(20)
    computers = {row["sys_id"]: row for row in sandbox.records("cmdb_ci_computer")}
    installs = sandbox.records("cmdb_sam_sw_install")
    assert len(computers) == 8 and len(installs) == 20
    for install in installs:
        tenant = str(install["u_source_id"]).split(":", 1)[0]
        assert install["u_computer_source_id"].startswith(f"{tenant}:")
        assert computers[install["installed_on"]]["u_source_id"] == install["u_computer_source_id"]


@pytest.mark.parametrize("admin_renamed", [False, True])
def test_after_the_upgrade_every_record_goes_again_under_its_new_id_and_nothing_old_is_retired(
    app, sandbox, configure_tenant, inventory, run_export, admin_renamed
):
    """The instance and the record of what was sent as the connector left them before tenant-scoped ids: the
    migration rewrites that record, and the next (differential) export sends each record again, under its new id.
    Where the ServiceNow admin first prefixed the old ids (the README's script), those records are updated in
    place; otherwise the old records stay beside the new ones."""
    inventory("acme", computers=0, installs=0, contracts=5)
    configure_tenant("acme", types=("contracts",))
    run_export("acme")
    assert sandbox.wait_idle(20)
    migrations = package_folder("migrations")
    with app.app_context():
        stamp(directory=migrations)  # the schema the app made is the head's
        downgrade(directory=migrations, revision=f"{SCOPED_IDS}-1")  # back to bare ids in the record of what was sent
        # The ledger table as it was then (one row per record, naming its tenant): plain SQL, not today's model.
        sent = set(db.session.execute(text("SELECT source_id FROM itam_sent_record")).scalars())
        assert sent == {f"CT-0000000{n}" for n in range(1, 6)}
        for record in SqlInventorySource().iter_records("acme", "contracts"):  # hashes of the records then sent
            bare = {**record, "u_source_id": record["u_source_id"].removeprefix("acme:")}
            db.session.execute(
                text("UPDATE itam_sent_record SET content_hash = :digest WHERE source_id = :source_id"),
                {"digest": content_hash(bare), "source_id": bare["u_source_id"]},
            )
        db.session.commit()
    sandbox.state.store.execute("UPDATE ast_contract SET u_source_id = substr(u_source_id, 6)")  # the old ids there

    if admin_renamed:
        sandbox.state.store.execute("UPDATE ast_contract SET u_source_id = 'acme:' || u_source_id")

    with app.app_context():
        upgrade(directory=migrations)  # through the tenant-scoped ids, and every revision after, to the head
        assert {row.source_id for row in db.session.query(SentRecord)} == {f"acme:CT-0000000{n}" for n in range(1, 6)}
        assert db.session.query(ExportWatermark).count() == 0
    run = run_export("acme")
    contracts = next(dt for dt in run.data_types if dt.data_type == "contracts")
    assert (contracts.sent, contracts.changed, contracts.retired, contracts.failed) == (5, 5, 0, 0)
    assert sandbox.wait_idle(20)
    ids = sorted(row["u_source_id"] for row in sandbox.records("ast_contract"))
    new_ids = [f"acme:CT-0000000{n}" for n in range(1, 6)]
    assert ids == (new_ids if admin_renamed else [f"CT-0000000{n}" for n in range(1, 6)] + new_ids)
