"""What an export reads: only the tenant's records, exactly as sent (source ids scoped to the tenant), in code-point
order of their source ids, streamed in chunks."""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.orm import sessionmaker

import itam_admin.db as db_module
from demo_portal.demo_data import generate_inventory
from itam_admin.datatypes import DATA_TYPE_NAMES
from itam_admin.db import db
from itam_admin.inventory import source as source_module
from itam_admin.inventory.models import TABLES_BY_DATA_TYPE, Computer, Contract, InstalledApplication
from itam_admin.inventory.source import InventorySource, SqlInventorySource, _base_query, _columns
from itam_admin.records import FIELDS, record_builder

# Where a linguistic collation and code-point order disagree: case, digits against letters, punctuation, accents.
AWKWARD_SOURCE_IDS = ["b", "B", "a", "A", "10", "9", "a-1", "a_1", "a1", "Z", "z", "é", "e", "ä", "~", " x", "ÿ"]


def add_computer(tenant_id, source_id, **fields):
    computer = Computer(tenant_id=tenant_id, source_id=source_id, name=fields.pop("name", f"PC-{source_id}"), **fields)
    db.session.add(computer)
    db.session.flush()
    return computer


def add_install(computer, source_id, **fields):
    install = InstalledApplication(
        tenant_id=computer.tenant_id,
        source_id=source_id,
        computer=computer,
        display_name=fields.pop("display_name", "Google Chrome"),
        **fields,
    )
    db.session.add(install)
    return install


def add_contract(tenant_id, source_id, **fields):
    contract = Contract(tenant_id=tenant_id, source_id=source_id, contract_number=f"N-{source_id}", **fields)
    db.session.add(contract)
    return contract


@pytest.fixture
def two_tenants(engine):
    """acme and globex with the same source ids, and different names, in every data type."""
    for tenant_id in ("acme", "globex"):
        for number in range(3):
            computer = add_computer(
                tenant_id, f"HW-{number}", name=f"{tenant_id}-pc-{number}", serial_number=f"SN-{tenant_id}-{number}"
            )
            add_install(computer, f"SW-{number}")
            add_contract(tenant_id, f"CT-{number}", vendor=f"{tenant_id} vendor")
    add_computer("globex", "HW-only-globex")
    db.session.commit()


def test_the_default_source_is_an_inventory_source():
    assert isinstance(SqlInventorySource(), InventorySource)


@pytest.mark.parametrize("data_type", DATA_TYPE_NAMES)
def test_a_tenant_sees_only_its_own_records(two_tenants, data_type):
    source = SqlInventorySource()
    records = list(source.iter_records("acme", data_type))
    assert source.count("acme", data_type) == len(records) == 3
    assert "globex" not in repr(records)
    assert source.count("globex", data_type) == (4 if data_type == "hardware_inventory" else 3)
    assert source.count("initech", data_type) == 0
    assert list(source.iter_records("initech", data_type)) == []


def test_installs_carry_their_computers_source_id_name_and_serial_number(two_tenants):
    records = list(SqlInventorySource().iter_records("globex", "installed_applications"))
    fields = ("u_source_id", "u_computer_source_id", "u_computer_name", "u_computer_serial_number")
    assert [tuple(r[f] for f in fields) for r in records] == [
        ("globex:SW-0", "globex:HW-0", "globex-pc-0", "SN-globex-0"),
        ("globex:SW-1", "globex:HW-1", "globex-pc-1", "SN-globex-1"),
        ("globex:SW-2", "globex:HW-2", "globex-pc-2", "SN-globex-2"),
    ]


def test_two_tenants_with_the_same_record_ids_get_different_source_ids(two_tenants):
    source = SqlInventorySource()
    for data_type in DATA_TYPE_NAMES:
        acme = [r["u_source_id"] for r in source.iter_records("acme", data_type)]
        globex = [r["u_source_id"] for r in source.iter_records("globex", data_type)]
        assert all(s.startswith("acme:") for s in acme) and all(s.startswith("globex:") for s in globex)
        assert not set(acme) & set(globex)
        assert {s.removeprefix("acme:") for s in acme} <= {s.removeprefix("globex:") for s in globex}


def test_an_install_linked_to_another_tenants_computer_is_never_read(engine, two_tenants):
    with engine.begin() as connection:
        globex_computer = connection.scalar(text("SELECT id FROM itam_computer WHERE tenant_id = 'globex' LIMIT 1"))
        connection.execute(
            insert(InstalledApplication.__table__).values(
                tenant_id="acme", source_id="SW-stray", computer_id=globex_computer, display_name="Stray"
            )
        )
    source = SqlInventorySource()
    records = list(source.iter_records("acme", "installed_applications"))
    assert "acme:SW-stray" not in [r["u_source_id"] for r in records]
    assert "globex" not in repr(records)
    assert source.count("acme", "installed_applications") == len(records)


@pytest.mark.parametrize("data_type", DATA_TYPE_NAMES)
def test_records_come_in_code_point_order_of_source_ids(engine, data_type):
    computer = add_computer("acme", "host")
    for source_id in AWKWARD_SOURCE_IDS:
        if data_type == "hardware_inventory":
            add_computer("acme", source_id)
        elif data_type == "installed_applications":
            add_install(computer, source_id)
        else:
            add_contract("acme", source_id)
    db.session.commit()
    expected = sorted(AWKWARD_SOURCE_IDS + (["host"] if data_type == "hardware_inventory" else []))
    for chunk_size in (3, 2000):  # ordered within a chunk, and across chunks by the keyset
        source = SqlInventorySource(chunk_size=chunk_size)
        assert [r["u_source_id"] for r in source.iter_records("acme", data_type)] == [f"acme:{s}" for s in expected]


def test_records_are_mapped_exactly_as_sent_after_a_round_trip_through_the_database(engine):
    computer = add_computer(
        "acme",
        "HW-1",
        name="NYC-NB-000001",
        serial_number="5CG1234XYZ",
        manufacturer="HP",
        cpu_count=2,
        ram_mb=16384,
        is_virtual=True,
        last_inventory_date=datetime(2026, 10, 5, 7, 8, 9, 123456),
    )
    add_install(computer, "SW-1", version="1.2.3", install_date=date(2024, 2, 29))
    add_contract("acme", "CT-1", starts=date(2025, 1, 1), total_cost=Decimal("1234.50"), renewable=False)
    db.session.commit()
    source = SqlInventorySource()
    [hardware] = source.iter_records("acme", "hardware_inventory")
    [install] = source.iter_records("acme", "installed_applications")
    [contract] = source.iter_records("acme", "contracts")
    assert hardware == dict.fromkeys(FIELDS["hardware_inventory"], "") | {
        "u_source_id": "acme:HW-1",
        "u_name": "NYC-NB-000001",
        "u_serial_number": "5CG1234XYZ",
        "u_manufacturer": "HP",
        "u_cpu_count": "2",
        "u_ram_mb": "16384",
        "u_is_virtual": "true",
        "u_last_inventory_date": "2026-10-05 07:08:09",
        "u_operational_status": "operational",
    }
    assert install == dict.fromkeys(FIELDS["installed_applications"], "") | {
        "u_source_id": "acme:SW-1",
        "u_computer_source_id": "acme:HW-1",
        "u_computer_name": "NYC-NB-000001",
        "u_computer_serial_number": "5CG1234XYZ",
        "u_display_name": "Google Chrome",
        "u_version": "1.2.3",
        "u_install_date": "2024-02-29",
        "u_operational_status": "operational",
    }
    assert contract == dict.fromkeys(FIELDS["contracts"], "") | {
        "u_source_id": "acme:CT-1",
        "u_contract_number": "N-CT-1",
        "u_starts": "2025-01-01",
        "u_total_cost": "1234.50",
        "u_renewable": "false",
        "u_operational_status": "operational",
    }


@pytest.fixture
def fifty_installs(engine):
    computers = [add_computer("acme", f"HW-{n:02d}") for n in range(5)]
    for n in range(50):
        add_install(computers[n % 5], f"SW-{n:02d}")
    db.session.commit()


@pytest.fixture
def queries(engine):
    """The SQL statements run on the engine during the test, with their parameters."""
    seen: list[tuple[str, object]] = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", remember)
    yield seen
    event.remove(engine, "before_cursor_execute", remember)


def test_streaming_over_many_chunks_returns_every_record_exactly_once(fifty_installs, queries):
    records = list(SqlInventorySource(chunk_size=7).iter_records("acme", "installed_applications"))
    assert [r["u_source_id"] for r in records] == [f"acme:SW-{n:02d}" for n in range(50)]
    selects = [q for q, _ in queries if q.lstrip().upper().startswith("SELECT")]
    assert len(selects) == math.ceil(50 / 7)  # one bounded query per chunk, never all rows at once
    assert all("LIMIT" in q.upper() for q in selects)


def test_records_are_read_lazily_one_chunk_at_a_time(fifty_installs, queries):
    records = SqlInventorySource(chunk_size=10).iter_records("acme", "installed_applications")
    assert queries == []
    first = next(records)
    assert first["u_source_id"] == "acme:SW-00"
    assert len(queries) == 1
    rest = list(records)
    assert len(rest) == 49 and len(queries) == 6  # the last, empty chunk ends the stream


def test_an_exact_multiple_of_the_chunk_size_is_read_completely(fifty_installs):
    source = SqlInventorySource(chunk_size=10)
    assert len(list(source.iter_records("acme", "installed_applications"))) == 50


@pytest.mark.parametrize("factory", ["engine", "sessionmaker", "db.session"])
def test_a_source_reads_through_an_engine_or_a_session_factory(two_tenants, engine, factory):
    target = {"engine": engine, "sessionmaker": sessionmaker(bind=engine), "db.session": db.session}[factory]
    source = SqlInventorySource(target, chunk_size=2)
    assert source.count("acme", "contracts") == 3
    assert [r["u_source_id"] for r in source.iter_records("acme", "contracts")] == [
        "acme:CT-0",
        "acme:CT-1",
        "acme:CT-2",
    ]


def test_an_unknown_data_type_is_refused(engine):
    with pytest.raises(ValueError, match="unknown data type"):
        SqlInventorySource().count("acme", "printers")
    with pytest.raises(ValueError, match="unknown data type"):
        SqlInventorySource().iter_records("acme", "printers")


def test_chunk_size_must_be_positive():
    with pytest.raises(ValueError):
        SqlInventorySource(chunk_size=0)


def test_on_postgresql_the_index_serves_the_ordered_chunks(engine, dialect, queries):
    if dialect != "postgresql":
        pytest.skip("PostgreSQL query plans only")
    generate_inventory("acme", computers=300, installs=3000, contracts=10)
    for data_type in ("hardware_inventory", "installed_applications"):
        queries.clear()
        list(SqlInventorySource(chunk_size=100).iter_records("acme", data_type))
        statement, parameters = queries[1]  # a chunk after the first: with its keyset condition
        with engine.connect() as connection:
            cursor = connection.connection.driver_connection.cursor()
            # On a table this small a full scan is cheaper; forbid it to see whether the index gives the order.
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
            plan = "\n".join(row[0] for row in cursor.execute("EXPLAIN " + statement, parameters))
        assert "Index Scan" in plan and "Sort" not in plan, plan


@pytest.mark.parametrize("data_type", DATA_TYPE_NAMES)
def test_records_read_from_the_drivers_rows_are_those_sqlalchemys_rows_make(engine, data_type):
    """Exports take each chunk's values from the driver's cursor, converting only what the column's type converts
    on this database (dates kept as text on SQLite, Numeric): every field of every generated record, blanks and
    all, must be what mapping SQLAlchemy's own rows gives."""
    generate_inventory("acme", computers=40, installs=300, contracts=120, seed=3)
    source = SqlInventorySource(chunk_size=64)
    build = record_builder(data_type, "acme")
    key = TABLES_BY_DATA_TYPE[data_type].c.source_id
    query = _base_query(data_type, "acme", *_columns(data_type)).order_by(
        key.collate("C") if engine.dialect.name == "postgresql" else key
    )
    expected = [build(row) for row in source._fetch(query)]
    records = list(source.iter_records("acme", data_type))
    assert records == expected
    assert len(records) == {"hardware_inventory": 40, "installed_applications": 300, "contracts": 120}[data_type]
    assert any(value == "" for record in records for value in record.values())  # blanks came through too


@pytest.mark.parametrize("cap", [1000, 3])
def test_records_changed_since_are_the_changed_rows_and_their_computers_installs_in_order(
    engine, cap, monkeypatch, queries
):
    """A differential export reads only rows changed since its watermark, and for installs also those whose computer
    changed (they carry its name), in code-point order, whether the changed rows' ids fit in memory (read once,
    then rows by id, a few ids a statement) or are more than CHANGED_IDS_IN_MEMORY (streamed in keyset chunks)."""
    monkeypatch.setattr(source_module, "CHANGED_IDS_IN_MEMORY", cap)
    monkeypatch.setattr(db_module, "IDS_PER_STATEMENT", 2)
    computers = [add_computer("acme", f"HW-{n}") for n in range(3)]
    for n, source_id in enumerate(AWKWARD_SOURCE_IDS):
        add_install(computers[n % 3], source_id)
    globex_computer = add_computer("globex", "HW-0")
    add_install(globex_computer, "b")  # another tenant's change is never read
    # Strays both ways: acme's install on globex's computer, globex's on acme's changed computer; neither is read.
    stray = InstalledApplication(tenant_id="acme", source_id="stray", computer=globex_computer, display_name="s")
    db.session.add(stray)
    db.session.add(InstalledApplication(tenant_id="globex", source_id="c", computer=computers[1], display_name="y"))
    db.session.commit()
    week_ago, since = datetime(2026, 11, 24), datetime(2026, 11, 30)
    for table in (TABLES_BY_DATA_TYPE["installed_applications"], TABLES_BY_DATA_TYPE["hardware_inventory"]):
        db.session.execute(table.update().values(updated_at=week_ago))
    installs = TABLES_BY_DATA_TYPE["installed_applications"]
    changed_installs = {"B", "10", "é", "~"}
    db.session.execute(installs.update().where(installs.c.source_id == "stray").values(updated_at=since))
    db.session.execute(installs.update().where(installs.c.source_id.in_(changed_installs)).values(updated_at=since))
    computer_table = TABLES_BY_DATA_TYPE["hardware_inventory"]
    db.session.execute(computer_table.update().where(computer_table.c.id == computers[1].id).values(updated_at=since))
    db.session.commit()
    source = SqlInventorySource(chunk_size=2)

    queries.clear()
    records = list(source.iter_records_changed_since("acme", "installed_applications", since))
    searches = [statement for statement, _ in queries if "updated_at >=" in statement]
    if cap > len(records):
        assert len(searches) == 1  # the changed rows are searched for once, then read by id
    else:
        assert len(searches) > 1  # past the cap: a search in every keyset chunk, as before

    of_changed_computer = {s for n, s in enumerate(AWKWARD_SOURCE_IDS) if n % 3 == 1}
    expected = sorted(changed_installs | of_changed_computer)  # Python sorts str by code point
    assert [r["u_source_id"] for r in records] == [f"acme:{s}" for s in expected]
    every = {r["u_source_id"]: r for r in source.iter_records("acme", "installed_applications")}
    assert records == [every[r["u_source_id"]] for r in records]  # each exactly as a full read maps it
    changed_computers = list(source.iter_records_changed_since("acme", "hardware_inventory", since))
    assert [r["u_source_id"] for r in changed_computers] == ["acme:HW-1"]


@pytest.mark.parametrize("data_type", ["installed_applications", "hardware_inventory"])
def test_on_sqlite_changed_rows_are_looked_up_by_id_not_by_walking_the_tenant(engine, dialect, queries, data_type):
    """SQLite keeps no statistics unless someone runs ANALYZE. Without them, asked for `tenant_id = ? AND id IN
    (...) ORDER BY source_id`, it walked the (tenant_id, source_id) index over every row of the tenant to find a few
    hundred (issue #15: 280 ms a chunk of 500 ids at 1,000,000 installs, a 1% differential export 6 s instead of
    1.3 s). The rows of a differential read must be looked up by their ids (SQLite's EXPLAIN QUERY PLAN: "SEARCH
    ... USING INTEGER PRIMARY KEY"; the unary + that disqualifies the tenant term is SQLite's documented way, "The
    SQLite Query Optimizer Overview"), and still be only the tenant's."""
    if dialect != "sqlite":
        pytest.skip("SQLite query plans only")
    generate_inventory("acme", computers=30, installs=300, contracts=5, seed=4)
    generate_inventory("globex", computers=30, installs=300, contracts=5, seed=5)
    table = TABLES_BY_DATA_TYPE[data_type]
    since = datetime(2030, 1, 1)
    db.session.execute(table.update().where(table.c.id % 7 == 0).values(updated_at=since))
    db.session.commit()
    queries.clear()
    records = list(SqlInventorySource().iter_records_changed_since("acme", data_type, since))
    assert records and all(r["u_source_id"].startswith("acme:") for r in records)
    by_id = [(s, p) for s, p in queries if " IN (" in s and "updated_at" not in s and "count(" not in s.lower()]
    assert by_id, queries
    statement, parameters = by_id[0]
    with engine.connect() as connection:
        plan = [row[3] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
    name = table.name
    assert any(step.startswith(f"SEARCH {name} USING INTEGER PRIMARY KEY") for step in plan), plan
    assert not any(step.startswith(f"SEARCH {name} USING INDEX") for step in plan), plan


def test_on_sqlite_the_count_of_installs_reads_an_index_only(engine, dialect, queries):
    """Every export counts the tenant's installs on the tenant's computers. On SQLite that count must read the
    (tenant_id, computer_id) index alone (EXPLAIN QUERY PLAN: "COVERING INDEX"), not every install's row (issue #15:
    500 -> 230 ms at 1,000,000 installs); and still count only the tenant's installs on its own computers."""
    if dialect != "sqlite":
        pytest.skip("SQLite query plans only")
    generate_inventory("acme", computers=20, installs=200, contracts=1, seed=6)
    globex = add_computer("globex", "HW-0")
    add_install(globex, "SW-G")
    db.session.add(InstalledApplication(tenant_id="acme", source_id="stray", computer=globex, display_name="s"))
    db.session.commit()
    queries.clear()
    assert SqlInventorySource().count("acme", "installed_applications") == 200
    statement, parameters = queries[-1]
    with engine.connect() as connection:
        plan = [row[3] for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
    install = TABLES_BY_DATA_TYPE["installed_applications"].name
    assert any(step.startswith(f"SEARCH {install} USING COVERING INDEX") for step in plan), plan
