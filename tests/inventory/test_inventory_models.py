"""The inventory tables: one source id per tenant and data type, installs go with their computer."""

from __future__ import annotations

import pytest
from sqlalchemy import UniqueConstraint, delete, func, select
from sqlalchemy.exc import IntegrityError

from itam_admin.db import db
from itam_admin.inventory.models import Computer, Contract, InstalledApplication


def test_tables_have_the_agreed_names():
    assert Computer.__tablename__ == "itam_computer"
    assert InstalledApplication.__tablename__ == "itam_installed_application"
    assert Contract.__tablename__ == "itam_contract"


@pytest.mark.parametrize("model", [Computer, Contract, InstalledApplication])
def test_tenant_id_leads_an_index(model):
    # The unique (tenant_id, source_id) constraint's index serves lookups by tenant and ordered streaming.
    unique = [
        [column.name for column in constraint.columns]
        for constraint in model.__table__.constraints
        if isinstance(constraint, UniqueConstraint)
    ]
    assert ["tenant_id", "source_id"] in unique


def test_a_source_id_is_unique_per_tenant_not_across_tenants(engine):
    db.session.add_all([Contract(tenant_id="acme", source_id="CT-1", contract_number="1")])
    db.session.add_all([Contract(tenant_id="globex", source_id="CT-1", contract_number="1")])
    db.session.commit()
    db.session.add(Contract(tenant_id="acme", source_id="CT-1", contract_number="2"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_deleting_a_computer_deletes_its_installs_in_the_database(engine):
    computer = Computer(tenant_id="acme", source_id="HW-1", name="PC-1")
    other = Computer(tenant_id="acme", source_id="HW-2", name="PC-2")
    db.session.add_all([computer, other])
    db.session.flush()
    for number, host in enumerate([computer, computer, other]):
        db.session.add(
            InstalledApplication(tenant_id="acme", source_id=f"SW-{number}", computer=host, display_name="X")
        )
    db.session.commit()
    db.session.execute(delete(Computer).where(Computer.source_id == "HW-1"))  # ON DELETE CASCADE, not the ORM
    db.session.commit()
    assert db.session.scalars(select(InstalledApplication.source_id)).all() == ["SW-2"]


def test_updated_at_is_set_on_insert_and_on_change(engine):
    computer = Computer(tenant_id="acme", source_id="HW-1", name="PC-1")
    db.session.add(computer)
    db.session.commit()
    created = computer.updated_at
    assert created is not None and created.tzinfo is None
    computer.ram_mb = 8192
    db.session.commit()
    assert computer.updated_at >= created
    assert db.session.scalar(select(func.count()).select_from(Computer)) == 1
