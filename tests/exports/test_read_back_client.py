"""The client's read-back calls against the sandbox over HTTP: the staging rows the transform did not insert or update,
page by page, with ServiceNow's comment; the import set results, telling "not readable" from "not finished"; and
run_after on insertMultiple.

ServiceNow behaviour relied on: staging rows carry `sys_import_set`, `sys_import_state`, `sys_import_state_comment`
and `sys_target_sys_id` (SERVICENOW-FACTS "Transform results"); the Table API pages with sysparm_limit and
sysparm_offset; insertMultiple takes `run_after=<import set sys_id>` (Import Set API docs).
"""

from __future__ import annotations

import json

import pytest

from itam_admin.servicenow import client as client_module
from itam_admin.servicenow.concurrency import AdaptiveConcurrency
from itam_admin.servicenow.errors import ErrorKind, ServiceNowError
from itam_admin.tenant_client import client_for

HARDWARE = "u_itam_hardware_inventory"
INSTALLS = "u_itam_installed_applications"


def body(records: list[dict]) -> bytes:
    return json.dumps({"records": records}).encode()


def computer(n: int) -> dict[str, str]:
    return {"u_source_id": f"acme:{n}", "u_name": f"pc-{n}", "u_serial_number": f"SN-{n}"}


@pytest.fixture
def servicenow(app, sandbox, configure_tenant):
    configure_tenant(types=("hardware_inventory", "installed_applications"))
    with app.app_context():
        client = client_for("acme")
        yield client
        client.close()


def test_staging_rows_not_inserted_or_updated_come_page_by_page_with_servicenows_comment(
    monkeypatch, servicenow, sandbox
):
    """Computers go through IRE, so their rows end `ignored` with the update set's comment; rejected ones `error`."""
    monkeypatch.setattr(client_module, "STAGING_PAGE", 4)  # 30 rows: eight pages and an empty one
    sandbox.faults.reject_rows(every=3, comment="Model is not known")
    ids = [servicenow.insert_multiple(HARDWARE, body([computer(n) for n in range(s, s + 15)])) for s in (0, 15)]
    assert sandbox.wait_idle(20)
    set_ids = [i.import_set_id for i in ids]

    rows = list(servicenow.staging_rows(HARDWARE, set_ids))

    assert len(rows) == 30 and len({row.sys_id for row in rows}) == 30
    assert {row.import_set_id for row in rows} == set(set_ids)
    rejected = [row for row in rows if row.state == "error"]
    assert len(rejected) == 10 and {(row.comment, row.target_sys_id) for row in rejected} == {
        ("Model is not known", "")
    }
    written = [row for row in rows if row.state == "ignored"]
    assert len(written) == 20 and all(row.comment.startswith("Written through IRE: INSERT ") for row in written)
    assert list(servicenow.staging_rows(HARDWARE, set_ids, ("ignored", "error"))) == []
    (one,) = servicenow.staging_rows(HARDWARE, set_ids, (), fields=("u_name",), sys_ids=[rejected[0].sys_id])
    assert one.values == {"u_name": f"pc-{one.source_id.split(':')[1]}"}


def test_import_set_results_say_not_readable_where_import_set_runs_said_nothing(monkeypatch, servicenow, sandbox):
    ids = servicenow.insert_multiple(HARDWARE, body([computer(1)]))
    assert sandbox.wait_idle(20)
    assert servicenow.import_set_results([ids.import_set_id])[ids.import_set_id].ignored == 1  # through IRE
    sandbox.faults.fail_next(2, 403)

    with pytest.raises(ServiceNowError) as raised:
        servicenow.import_set_results([ids.import_set_id])
    assert raised.value.kind is ErrorKind.FORBIDDEN
    assert servicenow.import_set_runs([ids.import_set_id]) == {}  # the older call still tolerates it


def test_an_import_set_sent_with_run_after_is_transformed_after_that_one(servicenow, sandbox):
    """An install whose computer is not there is an `error` row (the update set's require-computer script)."""
    sandbox.set_transform_seconds(1.0, table=HARDWARE)
    computers = servicenow.insert_multiple(HARDWARE, body([computer(1)]))
    install = {"u_source_id": "acme:i1", "u_computer_source_id": "acme:1", "u_display_name": "Editor"}

    installs = servicenow.insert_multiple(INSTALLS, body([install]), run_after=computers.import_set_id)

    assert sandbox.wait_idle(20)
    (row,) = servicenow.staging_rows(INSTALLS, [installs.import_set_id], ())
    assert row.state == "inserted", row.comment


def test_run_after_and_ids_are_checked_before_they_reach_a_query(servicenow):
    with pytest.raises(ValueError):
        servicenow.insert_multiple(HARDWARE, body([computer(1)]), run_after="abc^ORsys_id!=x")
    with pytest.raises(ValueError):
        list(servicenow.staging_rows(HARDWARE, ["a,b"]))
    with pytest.raises(ValueError):
        list(servicenow.staging_rows(HARDWARE, ["a" * 32], fields=("u_name^x",)))


def test_import_set_results_of_many_import_sets_are_read_several_at_once_and_add_up(monkeypatch, servicenow, sandbox):
    """A big export's read-back spans many sys_import_set_run reads (SETS_PER_RESULTS_READ ids each); they go a few at
    once over the client's reader threads, and every import set's counts arrive whichever read brought them."""
    monkeypatch.setattr(servicenow, "_sets_per_results_read", 2)
    ids = [servicenow.insert_multiple(HARDWARE, body([computer(n), computer(n + 100)])) for n in range(9)]
    assert sandbox.wait_idle(20)
    sandbox.faults.set_capacity(concurrent=8, service_ms=600)  # long enough for reads to overlap on a busy machine
    set_ids = [i.import_set_id for i in ids]

    results = servicenow.import_set_results(set_ids)

    assert set(results) == set(set_ids)
    assert all(r.inserts + r.updates + r.ignored == 2 for r in results.values()), results
    peak = sandbox.faults.capacity.snapshot()["peak_inside"]
    assert peak > 1, "the five reads went one after another"


def test_with_an_exports_pacer_the_reads_go_as_many_at_once_as_its_limit(monkeypatch, servicenow, sandbox):
    """An export's read-back reads go through its pacer, which holds them to the requests in flight the instance
    takes; more reader threads than READS_AT_ONCE then save round trips (issue #15: at 300 ms a request, five reads
    were two rounds)."""
    monkeypatch.setattr(servicenow, "_sets_per_results_read", 1)
    ids = [servicenow.insert_multiple(HARDWARE, body([computer(n)])) for n in range(9)]
    assert sandbox.wait_idle(20)
    # A read before the pacer is set makes READS_AT_ONCE reader threads, as proving a run's connection does.
    assert len(servicenow.import_set_results([i.import_set_id for i in ids])) == 9
    pacer = AdaptiveConcurrency(8)
    pacer.limit = 8.0
    servicenow.pacer = pacer
    sandbox.faults.set_capacity(concurrent=16, service_ms=600)

    results = servicenow.import_set_results([i.import_set_id for i in ids])

    assert len(results) == 9
    peak = sandbox.faults.capacity.snapshot()["peak_inside"]
    assert client_module.READS_AT_ONCE < peak <= 8, peak
