"""When a sent record counts as written by ServiceNow (confirm.settle and the ledger), for the answers the sandbox
does not give yet: hardware written through IRE, rows ignored without a target, rows hidden by ACLs, import sets that
never report, and retirements in flight.

ServiceNow behaviour relied on: with IRE in an onBefore script the transform sets `ignore = true`, so the staging
row ends `ignored` although the CI was written ("Applying IRE to Import Sets", ServiceNow docs; our update set writes
"Written through IRE: <operation> cmdb_ci_computer <sys_id>" in the row's comment); the Import Set Deleter removes
import sets "created more than seven days ago" (ServiceNow docs, "Delete import sets").
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import event, select

from itam_admin.db import db, utcnow
from itam_admin.exports import confirm, planner
from itam_admin.exports.ledger import REJECTED, RETIRING, Ledger
from itam_admin.exports.models import SentRecord
from itam_admin.servicenow.client import ImportSetRunCounts, StagingRow
from tests.exports.conftest import in_set

URL = "https://acme.service-now.com"
SET = "a" * 32
STAGING = "u_itam_hardware_inventory"


class FakeReadBack:
    """Answers the exporter's two read-back calls as ServiceNow would after the transform."""

    def __init__(self, counts: dict[str, ImportSetRunCounts], rows: list[StagingRow]) -> None:
        self.counts, self.rows, self.calls = counts, rows, []

    def import_set_results(self, ids):
        self.calls.append(("results", tuple(ids)))
        return {set_id: self.counts[set_id] for set_id in ids if set_id in self.counts}

    def staging_rows(self, table, ids, states_not_in=("inserted", "updated"), *, fields=(), sys_ids=()):
        self.calls.append(("rows", tuple(ids)))
        for row in self.rows:
            if row.import_set_id in ids and row.state not in states_not_in and (not sys_ids or row.sys_id in sys_ids):
                yield StagingRow(**{**row.__dict__, "values": {name: f"{name} of {row.source_id}" for name in fields}})


def row(source_id: str, state: str, comment: str = "", target: str = "") -> StagingRow:
    return StagingRow(f"s{source_id}".ljust(32, "0"), SET, source_id, state, comment, target)


@pytest.fixture
def ledger(app):
    with app.app_context():
        yield Ledger("acme", URL, "hardware_inventory")


def send(ledger: Ledger, hashes: dict[str, str], set_id: str = SET, sent_at=None) -> None:
    ledger.sent(in_set(set_id, list(hashes.items())))
    ledger.add_pending_sets([(set_id, 1, 1, len(hashes), sent_at or utcnow())])


def state(ledger: Ledger) -> dict[str, tuple[str, str | None]]:
    rows = db.session.execute(select(SentRecord.source_id, SentRecord.content_hash, SentRecord.import_set_id))
    return {source_id: (digest, set_id) for source_id, digest, set_id in rows}


def settle(ledger: Ledger, client: FakeReadBack, now=None):
    return confirm.settle(client, ledger, STAGING, ("u_name",), now or utcnow())


def test_hardware_written_through_ire_counts_as_written_and_ignored_without_target_does_not(ledger):
    send(ledger, {"acme:1": "h1", "acme:2": "h2", "acme:3": "h3", "acme:4": "h4"})
    client = FakeReadBack(
        {SET: ImportSetRunCounts(ignored=4, state="complete")},
        [
            row("acme:1", "ignored", "Written through IRE: INSERT cmdb_ci_computer 0123456789abcdef0123456789abcdef"),
            row("acme:2", "ignored", "Written through IRE: NO_CHANGE cmdb_ci_computer 0123456789abcdef0123456789ab"),
            row("acme:3", "ignored", "No field values changed", target="f" * 32),  # coalesce found it unchanged
            row("acme:4", "ignored", "Computer identification failed"),
        ],
    )

    reading = settle(ledger, client)

    (settled,) = reading.settled
    assert [r.source_id for r in settled.rejected] == ["acme:4"]
    assert settled.values[settled.rejected[0].sys_id] == {"u_name": "u_name of acme:4"}
    assert state(ledger) == {
        "acme:1": ("h1", None),
        "acme:2": ("h2", None),
        "acme:3": ("h3", None),
        "acme:4": (REJECTED, None),
    }
    assert ledger.pending() == []


def test_ignored_as_unchanged_and_an_ignored_retirement_count_as_written(ledger):
    """ServiceNow's comment on a row coalesce found as sent is "No field values changed" (docs, "Web service import
    set mode"); the update set ignores the retirement of an install ServiceNow never had (nothing to retire)."""
    send(ledger, {"acme:1": "h1", "acme:2": RETIRING, "acme:3": "h3"})
    client = FakeReadBack(
        {SET: ImportSetRunCounts(ignored=3, state="complete")},
        [row("acme:1", "ignored", "No field values changed"), row("acme:2", "ignored"), row("acme:3", "ignored")],
    )

    (settled,) = settle(ledger, client).settled

    assert [r.source_id for r in settled.rejected] == ["acme:3"]  # ignored for no reason we know: not written
    assert state(ledger) == {"acme:1": ("h1", None), "acme:3": (REJECTED, None)}  # the retirement is done


def test_an_import_set_whose_counts_show_only_inserts_and_updates_is_confirmed_without_reading_rows(ledger):
    send(ledger, {"acme:1": "h1", "acme:2": "h2"})
    client = FakeReadBack({SET: ImportSetRunCounts(inserts=1, updates=1, state="complete")}, [])

    settle(ledger, client)

    assert client.calls == [("results", (SET,))]
    assert state(ledger) == {"acme:1": ("h1", None), "acme:2": ("h2", None)}


@pytest.mark.parametrize(
    "counts, rows",
    [
        pytest.param(ImportSetRunCounts(inserts=1, state="running"), [], id="counts-short-of-the-rows-sent"),
        pytest.param(ImportSetRunCounts(inserts=1, errors=1), [row("acme:2", "pending")], id="a-row-still-pending"),
        pytest.param(ImportSetRunCounts(inserts=0, errors=2), [row("acme:2", "error")], id="a-row-hidden-by-acls"),
    ],
)
def test_an_import_set_not_known_to_be_finished_stays_unconfirmed(ledger, counts, rows):
    send(ledger, {"acme:1": "h1", "acme:2": "h2"})

    reading = settle(ledger, FakeReadBack({SET: counts}, rows))

    assert reading.settled == [] and len(reading.still_pending) == 1
    assert state(ledger) == {"acme:1": ("h1", SET), "acme:2": ("h2", SET)}
    assert reading.hidden_rows == (counts.errors == 2)


def test_an_import_set_without_results_after_seven_days_is_sent_again(ledger):
    send(ledger, {"acme:1": "h1", "acme:2": "h2"}, sent_at=utcnow() - timedelta(days=8))

    reading = settle(ledger, FakeReadBack({}, []))

    (settled,) = reading.settled
    assert sorted(settled.gave_up) == ["acme:1", "acme:2"]
    assert state(ledger) == {"acme:1": (REJECTED, None), "acme:2": (REJECTED, None)}
    assert ledger.pending() == []


def test_a_later_send_of_the_same_record_is_not_undone_by_the_older_import_set(ledger):
    older, newer = "a" * 32, "b" * 32
    send(ledger, {"acme:1": "old"}, older)
    send(ledger, {"acme:1": "new"}, newer)
    client = FakeReadBack(
        {older: ImportSetRunCounts(errors=1)}, [StagingRow("s" * 32, older, "acme:1", "error", "x", "")]
    )

    settle(ledger, client)

    assert state(ledger) == {"acme:1": ("new", newer)}  # still awaiting the newer import set


class ListSource:
    """An inventory source of plain records (no SQL), so the plan merges every record with the ledger."""

    def __init__(self, records):
        self.records = records

    def count(self, tenant_id, data_type):
        return len(self.records)

    def iter_records(self, tenant_id, data_type):
        return iter(self.records)


def test_the_held_count_leaves_out_only_this_ledgers_retirements_in_flight(ledger):
    """The planner's test for deleted records compares the ledger's held rows with the source's count: held are the
    rows confirmed, in flight or rejected, not a retirement still in flight (nor another ledger's rows); counted
    without reading every row of the ledger (issue #15)."""
    ledger.sent(in_set(SET, [("acme:1", "h1"), ("acme:9", RETIRING)]))  # in flight: a record and a retirement
    ledger.sent(in_set("b" * 32, [("acme:2", "h2"), ("acme:8", "h8")]))
    ledger.sent(in_set("c" * 32, [("acme:3", "h3"), ("acme:7", RETIRING)]))
    ledger.sent(in_set("d" * 32, [("acme:4", "h4")]))
    db.session.flush()
    ledger.reject("b" * 32, ["acme:2", "acme:8"])  # rejected: held, to be sent again
    ledger.confirm(["c" * 32])  # acme:3 held; the retirement of acme:7 done, its row gone
    other = Ledger("acme", "https://other.service-now.com", "hardware_inventory")
    other.sent(in_set("e" * 32, [("acme:1", "h1"), ("acme:5", RETIRING)]))
    db.session.flush()

    statements: list[tuple[str, object]] = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", remember)
    try:
        assert ledger.count_held() == 5  # acme:1, 2, 3, 4, 8
    finally:
        event.remove(db.engine, "before_cursor_execute", remember)
    assert other.count_held() == 1
    assert Ledger("acme", URL, "contracts").count_held() == 0  # a ledger with no row yet

    # On SQLite (this suite's database), with no statistics: the retirements in flight are found on the partial index
    # of rows awaiting confirmation, not by walking the ledger's rows (its primary key).
    ((statement, parameters),) = statements
    plan = [row[3] for row in db.session.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
    assert any("ix_itam_sent_record_import_set_id" in step for step in plan), plan


def test_the_plan_sends_rejected_records_again_but_not_records_or_retirements_in_flight(ledger):
    records = [{"u_source_id": f"acme:{n}", "u_name": f"pc-{n}"} for n in (1, 2)]
    digest = {r["u_source_id"]: planner.content_hash(r) for r in records}
    # In flight: a record and a retirement.
    ledger.sent(in_set(SET, [("acme:1", digest["acme:1"]), ("acme:9", RETIRING)]))
    ledger.sent(in_set("b" * 32, [("acme:2", digest["acme:2"]), ("acme:8", "h8")]))
    db.session.flush()
    ledger.reject("b" * 32, ["acme:2", "acme:8"])  # rejected: acme:2 changed or not, acme:8 gone from ITAM

    actions = {p.source_id: p.action for p in planner.Plan("acme", URL, "hardware_inventory", ListSource(records))}

    assert actions == {"acme:1": "unchanged", "acme:2": "changed", "acme:8": "retired"}
