"""The narrow ledger table (issue #15): one itam_ledger row per tenant, instance and data type, which the record rows
name by id. A database holding ledger rows of the wide table upgrades (and downgrades) with every row kept and
readable through Ledger, on SQLite and PostgreSQL; reads of a ledger that has no row create none; and the first
writes of a new ledger make exactly one row, however many Ledger objects or processes write it at once."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from flask_migrate import downgrade, upgrade

from itam_admin.db import db
from itam_admin.exports.ledger import REJECTED, RETIRING, Ledger, instance_key
from itam_admin.plugin import package_folder
from tests.conftest import new_postgres_database
from tests.exports.conftest import in_set

WIDE = "b2c0ffee0014"  # the last revision with the wide ledger table
URL = "https://acme.service-now.com"
OTHER_URL = "https://acme-test.service-now.com"
TENANTS = ("acme", "globex")
TYPES = ("contracts", "hardware_inventory")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """An empty database of each kind; PostgreSQL's is a new one of its own (the migrations start from nothing)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
        return
    request.getfixturevalue("postgres_database")  # skips, or fails on CI, without PostgreSQL
    with new_postgres_database("itam_ledger") as url:
        yield url


@pytest.fixture
def make_app(app_env, tmp_path, database_url):
    """An app on that database, its schema built by the migrations up to `revision`."""
    made = []

    def make(revision: str = "head"):
        from demo_portal import create_app

        application = create_app(env={**app_env, "DATABASE_URL": database_url}, instance_path=str(tmp_path / "inst"))
        with application.app_context():
            upgrade(directory=package_folder("migrations"), revision=revision)
        made.append(application)
        return application

    yield make
    for application in made:
        with application.app_context():
            db.session.remove()
            db.engine.dispose()


def old_rows() -> list[tuple[str, str, str, str, str, str | None]]:
    """Wide rows (tenant, instance key, data type, source id, hash, import set) of five ledgers: per ledger, records
    held, sent and awaiting their import set, a retirement in flight, and one rejected. The same source ids recur
    under both data types, and Acme has a second instance."""
    rows = []
    ledgers = [(tenant, URL, data_type) for tenant in TENANTS for data_type in TYPES] + [("acme", OTHER_URL, TYPES[0])]
    for number, (tenant, url, data_type) in enumerate(ledgers):
        key, pending = instance_key(url), f"{number:032x}"
        for n in range(1, 4):
            rows.append((tenant, key, data_type, f"{tenant}:{n}", f"{number}{n}".ljust(32, "0"), None))
        rows.append((tenant, key, data_type, f"{tenant}:4", f"{number}4".ljust(32, "0"), pending))
        rows.append((tenant, key, data_type, f"{tenant}:5", RETIRING, pending))
        rows.append((tenant, key, data_type, f"{tenant}:6", REJECTED, None))
    return rows


def wide_table(connection) -> set[tuple]:
    query = "SELECT tenant_id, instance_key, data_type, source_id, content_hash, import_set_id FROM itam_sent_record"
    return set(connection.exec_driver_sql(query).all())


def count(table: str) -> int:
    return db.session.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()


def assert_readable_through_ledger(rows) -> None:
    """Every wide row as Ledger reads it after the upgrade: hashes, import sets awaited, retirements, counts."""
    urls = {instance_key(url): url for url in (URL, OTHER_URL)}
    ledgers = sorted({(tenant, key, data_type) for tenant, key, data_type, *_ in rows})
    for tenant, key, data_type in ledgers:
        mine = [row for row in rows if row[:3] == (tenant, key, data_type)]
        ledger = Ledger(tenant, urls[key], data_type)
        assert ledger.hashes_between(None, None) == {row[3]: row[4] for row in mine}
        assert list(ledger.source_ids_after(None)) == sorted(row[3] for row in mine)
        some = [f"{tenant}:2", f"{tenant}:6"]
        assert ledger.hashes_of(some) == {row[3]: row[4] for row in mine if row[3] in some}
        (pending,) = {row[5] for row in mine if row[5] is not None}
        assert sorted(ledger.awaiting(pending)) == [f"{tenant}:4", f"{tenant}:5"]
        assert ledger.retiring(pending, [f"{tenant}:4", f"{tenant}:5"]) == {f"{tenant}:5"}
        assert ledger.count_held() == len(mine) - 1  # the retirement in flight is not held


def test_the_upgrade_keeps_every_wide_row_readable_through_ledger_and_the_downgrade_gives_them_back(make_app):
    application = make_app(WIDE)
    rows = old_rows()
    with application.app_context(), db.engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO itam_sent_record (tenant_id, instance_key, data_type, source_id, content_hash, "
                "import_set_id) VALUES (:tenant, :key, :data_type, :source_id, :digest, :import_set)"
            ),
            [
                dict(zip(("tenant", "key", "data_type", "source_id", "digest", "import_set"), row, strict=True))
                for row in rows
            ],
        )
    migrations = package_folder("migrations")

    with application.app_context():
        upgrade(directory=migrations)
        assert count("itam_ledger") == 5
        assert count("itam_sent_record") == len(rows)
        assert_readable_through_ledger(rows)
        assert Ledger("initech", URL, "contracts").hashes_between(None, None) == {}
        db.session.rollback()

        downgrade(directory=migrations, revision=WIDE)
        with db.engine.connect() as connection:
            assert wide_table(connection) == set(rows)
            assert not sa.inspect(connection).has_table("itam_ledger")

        upgrade(directory=migrations)
        assert_readable_through_ledger(rows)
        # The upgraded ledgers go on as before: a confirmation forgets the retirement and holds the rest.
        acme = Ledger("acme", URL, "contracts")
        (pending,) = {row[5] for row in rows if row[:3] == ("acme", instance_key(URL), "contracts") and row[5]}
        acme.confirm([pending])
        acme.sent(in_set("f" * 32, [("acme:7", "7" * 32), ("acme:1", "1" * 32)]))
        db.session.commit()
        assert acme.awaiting(pending) == [] and sorted(acme.awaiting("f" * 32)) == ["acme:1", "acme:7"]
        assert acme.hashes_of(["acme:1", "acme:5", "acme:7"]) == {"acme:1": "1" * 32, "acme:7": "7" * 32}
        assert count("itam_ledger") == 5 and count("itam_sent_record") == len(rows)  # one gone, one new
        # The other ledgers' rows, same source ids included, are untouched.
        assert_readable_through_ledger([row for row in rows if row[:3] != ("acme", instance_key(URL), "contracts")])


def test_reads_of_a_new_ledger_find_nothing_and_create_nothing(make_app):
    application = make_app()
    with application.app_context():
        ledger = Ledger("acme", URL, "contracts")
        assert ledger.hashes_between(None, None) == {} and ledger.hashes_of(["acme:1"]) == {}
        assert list(ledger.source_ids_after(None, Ledger.not_retiring)) == []
        assert ledger.awaiting("a" * 32) == [] and ledger.retiring("a" * 32, ["acme:1"]) == set()
        assert ledger.count_held() == 0
        ledger.confirm(["a" * 32])
        ledger.reject("a" * 32, [])
        assert ledger.reject_all(["a" * 32]) == 0
        ledger.sent(in_set("a" * 32, []))  # nothing sent: nothing to write
        db.session.commit()
        assert count("itam_ledger") == 0


def test_two_ledger_objects_writing_a_new_ledger_make_one_ledger_row(make_app):
    application = make_app()
    with application.app_context():
        first, second = Ledger("acme", URL, "contracts"), Ledger("acme", URL, "contracts")
        first.sent(in_set("a" * 32, [("acme:1", "1" * 32)]))
        second.sent(in_set("b" * 32, [("acme:2", "2" * 32)]))
        first.sent(in_set("c" * 32, [("acme:3", "3" * 32)]))
        db.session.commit()
        second.sent(in_set("d" * 32, [("acme:2", "4" * 32)]))  # a new transaction: the ledger is found again
        Ledger("acme", URL, "hardware_inventory").sent(in_set("e" * 32, [("acme:1", "5" * 32)]))
        db.session.commit()

        assert count("itam_ledger") == 2
        assert Ledger("acme", URL, "contracts").hashes_between(None, None) == {
            "acme:1": "1" * 32,
            "acme:2": "4" * 32,
            "acme:3": "3" * 32,
        }
        assert Ledger("acme", URL, "hardware_inventory").hashes_between(None, None) == {"acme:1": "5" * 32}


def test_one_write_of_several_import_sets_records_each_records_import_set_and_its_last_hash(make_app):
    """The exporter writes the rows of many import sets in one statement (issue #15). Each record awaits the import
    set it went in, and a record given twice keeps its last row (on PostgreSQL one upsert may not touch a row
    twice, so this would fail there if the rows were not made unique first)."""
    application = make_app()
    with application.app_context():
        ledger = Ledger("acme", URL, "contracts")
        ledger.sent(in_set("a" * 32, [("acme:1", "0" * 32)]))  # held from an earlier write
        ledger.confirm(["a" * 32])
        ledger.sent(
            [("acme:1", "1" * 32, "b" * 32), ("acme:2", "2" * 32, "b" * 32), ("acme:3", RETIRING, "c" * 32)]
            + [("acme:2", "9" * 32, "c" * 32)]
        )
        db.session.commit()
        assert ledger.hashes_between(None, None) == {"acme:1": "1" * 32, "acme:2": "9" * 32, "acme:3": RETIRING}
        assert ledger.awaiting("b" * 32) == ["acme:1"]
        assert sorted(ledger.awaiting("c" * 32)) == ["acme:2", "acme:3"]
        assert ledger.retiring("c" * 32, ["acme:2", "acme:3"]) == {"acme:3"}
        assert count("itam_sent_record") == 3


def test_a_write_rolled_back_with_its_new_ledger_row_does_not_leave_the_next_one_without_it(make_app):
    application = make_app()
    with application.app_context():
        ledger = Ledger("acme", URL, "contracts")
        ledger.sent(in_set("a" * 32, [("acme:1", "1" * 32)]))
        db.session.rollback()  # takes the new ledger row with it
        assert count("itam_ledger") == 0
        ledger.sent(in_set("b" * 32, [("acme:2", "2" * 32)]))
        db.session.commit()
        assert count("itam_ledger") == 1
        assert Ledger("acme", URL, "contracts").hashes_between(None, None) == {"acme:2": "2" * 32}


def test_two_processes_writing_a_new_ledger_at_once_make_one_ledger_row(make_app):
    """The second writer looks for the ledger while the first one's new row is not committed: both insert it (one
    insert does nothing, waiting for the other's commit), and both find the one row."""
    application = make_app()
    inserts: list[str] = []
    first_wrote, second_inserting = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def count_inserts(_connection, _cursor, statement, *_args):
        if statement.startswith("INSERT INTO itam_ledger"):
            inserts.append(statement)
            if len(inserts) == 2:
                second_inserting.set()

    def write(source_id: str, first: bool) -> None:
        try:
            with application.app_context():
                if not first:
                    assert first_wrote.wait(10)
                Ledger("globex", URL, "contracts").sent(in_set(source_id.ljust(32, "0"), [(source_id, "1" * 32)]))
                if first:
                    first_wrote.set()
                    second_inserting.wait(10)  # the other writer found no ledger row; its insert waits for this commit
                db.session.commit()
                db.session.remove()
        except BaseException as error:  # reported by the test below
            errors.append(error)
            first_wrote.set()

    with application.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", count_inserts)
    try:
        writers = [threading.Thread(target=write, args=(f"globex:{n}", n == 1)) for n in (1, 2)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(60)
    finally:
        sa.event.remove(engine, "before_cursor_execute", count_inserts)
    assert errors == []
    assert len(inserts) == 2  # each found no ledger row, so each inserted one
    with application.app_context():
        assert count("itam_ledger") == 1
        assert Ledger("globex", URL, "contracts").hashes_between(None, None) == {
            "globex:1": "1" * 32,
            "globex:2": "1" * 32,
        }
