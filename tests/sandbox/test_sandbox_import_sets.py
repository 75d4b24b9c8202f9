"""The Import Set API: insertMultiple stores and transforms in the background, coalescing on u_source_id; the
single-record import answers its result at once; refusals in ServiceNow's shapes."""

from __future__ import annotations

import re

import pytest

from servicenow_sandbox import SandboxServer

SYS_ID = re.compile(r"^[0-9a-f]{32}$")


def test_insert_multiple_answers_201_with_import_set_ids(wire, make):
    response = wire.insert_multiple(make.HARDWARE, [make.computer("1")])

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"import_set_id", "multi_import_set_id"}
    assert SYS_ID.match(body["import_set_id"]) and SYS_ID.match(body["multi_import_set_id"])


def test_hardware_lands_in_cmdb_ci_computer_with_mapped_fields(sandbox, wire, make):
    wire.send_and_wait(make.HARDWARE, [make.computer("42", u_name="Reception PC", u_unknown_field="dropped")])

    (row,) = sandbox.records("cmdb_ci_computer")
    assert row["u_source_id"] == "42"
    assert row["name"] == "Reception PC"
    assert row["serial_number"] == "SN-42"
    assert row["manufacturer"] == "Dell"
    assert row["ram"] == 16384
    assert row["install_status"] == "1" and row["operational_status"] == "1"
    assert "u_unknown_field" not in row


def test_import_set_and_run_are_recorded_and_readable_through_the_table_api(wire, make):
    import_set_id = wire.send_and_wait(make.HARDWARE, [make.computer(str(i)) for i in range(3)] + [{"u_name": "x"}])

    run = wire.run_of(import_set_id)
    assert run["state"] == "complete"
    assert (run["inserts"], run["updates"], run["ignored"], run["skipped"], run["errors"]) == ("3", "0", "0", "1", "0")
    import_set = wire.get(f"/api/now/table/sys_import_set/{import_set_id}").json()["result"]
    assert import_set["table_name"] == make.HARDWARE
    assert import_set["state"] == "processed"
    assert import_set["mode"] == "asynchronous"
    assert import_set["number"].startswith("ISET")


def test_sending_the_same_records_again_updates_them_without_duplicates(sandbox, wire, make):
    batch = [make.computer(str(i)) for i in range(5)]
    wire.send_and_wait(make.HARDWARE, batch)
    first_ids = {r["u_source_id"]: r["sys_id"] for r in sandbox.records("cmdb_ci_computer")}

    batch[0]["u_name"] = "Renamed"
    second = wire.send_and_wait(make.HARDWARE, batch)

    rows = sandbox.records("cmdb_ci_computer")
    assert len(rows) == 5
    assert {r["u_source_id"]: r["sys_id"] for r in rows} == first_ids
    assert next(r for r in rows if r["u_source_id"] == "0")["name"] == "Renamed"
    run = wire.run_of(second)
    assert (run["inserts"], run["updates"], run["ignored"]) == ("0", "1", "4")


def test_the_same_source_id_twice_in_one_batch_is_one_record(sandbox, wire, make):
    import_set_id = wire.send_and_wait(make.HARDWARE, [make.computer("7"), make.computer("7", u_name="Second")])

    (row,) = sandbox.records("cmdb_ci_computer")
    assert row["name"] == "Second"
    run = wire.run_of(import_set_id)
    assert (run["inserts"], run["updates"]) == ("1", "1")


def test_retired_record_sets_the_target_retired(sandbox, wire, make):
    wire.send_and_wait(make.HARDWARE, [make.computer("1")])
    wire.send_and_wait(make.CONTRACTS, [make.contract("c1")])

    wire.send_and_wait(make.HARDWARE, [make.computer("1", u_operational_status="retired")])
    wire.send_and_wait(make.CONTRACTS, [make.contract("c1", u_operational_status="retired")])

    (pc,) = sandbox.records("cmdb_ci_computer")
    assert (pc["install_status"], pc["operational_status"], pc["u_operational_status"]) == ("7", "6", "retired")
    (deal,) = sandbox.records("ast_contract")
    assert (deal["active"], deal["state"]) == ("false", "cancelled")


def test_contracts_get_numbers_and_mapped_fields(sandbox, wire, make):
    wire.send_and_wait(make.CONTRACTS, [make.contract("c1"), make.contract("c2")])

    rows = sandbox.records("ast_contract", "ORDERBYnumber")
    assert [r["number"] for r in rows] == ["CNTR0010001", "CNTR0010002"]
    assert rows[0]["vendor_contract"] == "C-c1"
    assert rows[0]["short_description"] == "Support"
    assert (rows[0]["starts"], rows[0]["ends"], rows[0]["state"]) == ("2026-01-01", "2026-12-31", "active")


def test_installs_land_linked_to_their_computer(sandbox, wire, make):
    wire.send_and_wait(make.HARDWARE, [make.computer("pc-1"), make.computer("pc-2")])

    wire.send_and_wait(make.INSTALLS, [make.install("i1", "pc-1"), make.install("i2", "pc-2")])

    computers = {r["u_source_id"]: r["sys_id"] for r in sandbox.records("cmdb_ci_computer")}
    installs = {r["u_source_id"]: r for r in sandbox.records("cmdb_sam_sw_install")}
    assert installs["i1"]["installed_on"] == computers["pc-1"]
    assert installs["i2"]["installed_on"] == computers["pc-2"]
    assert installs["i1"]["display_name"] == "App i1"


def test_an_install_that_arrives_before_its_computer_is_linked_when_the_computer_comes(sandbox, wire, make):
    early = wire.send_and_wait(make.INSTALLS, [make.install("i1", "pc-late")])
    assert sandbox.records("cmdb_sam_sw_install")[0]["installed_on"] == ""
    staged = wire.get(f"/api/now/table/{make.INSTALLS}?sysparm_query=sys_import_set={early}").json()["result"][0]
    assert "not found" in staged["sys_import_state_comment"]

    wire.send_and_wait(make.HARDWARE, [make.computer("pc-late")])

    (pc,) = sandbox.records("cmdb_ci_computer")
    assert sandbox.records("cmdb_sam_sw_install")[0]["installed_on"] == pc["sys_id"]


def test_orphan_installs_can_be_errors_instead(wire_for, make):
    with SandboxServer(orphan_installs="error") as sandbox:
        wire = wire_for(sandbox)
        import_set_id = wire.send_and_wait(make.INSTALLS, [make.install("i1", "missing")])
        run = wire.run_of(import_set_id)
        assert sandbox.records("cmdb_sam_sw_install") == []

    assert (run["state"], run["errors"], run["inserts"]) == ("complete_with_errors", "1", "0")


def test_staging_rows_record_each_records_import_state(wire, make):
    import_set_id = wire.send_and_wait(make.HARDWARE, [make.computer("1"), {"u_name": "no source id"}])

    rows = wire.get(
        f"/api/now/table/{make.HARDWARE}?sysparm_query=sys_import_set={import_set_id}^ORDERBYsys_import_row"
    ).json()["result"]
    assert [r["sys_import_state"] for r in rows] == ["inserted", "skipped"]
    assert rows[0]["sys_target_table"] == "cmdb_ci_computer"
    assert rows[0]["u_name"] == "PC-1"


def test_single_record_import_transforms_at_once_and_answers_the_result(sandbox, wire, make):
    response = wire.call("POST", f"/api/now/import/{make.HARDWARE}", json=make.computer("9", u_name="Solo"))

    assert response.status_code == 201
    body = response.json()
    assert body["staging_table"] == make.HARDWARE
    assert body["import_set"].startswith("ISET")
    (result,) = body["result"]
    assert result["status"] == "inserted"
    assert result["table"] == "cmdb_ci_computer"
    assert (result["display_name"], result["display_value"]) == ("name", "Solo")
    assert result["transform_map"] == "ITAM Hardware Inventory to Computer"
    (row,) = sandbox.records("cmdb_ci_computer")
    assert result["sys_id"] == row["sys_id"]
    assert result["record_link"].endswith(f"/api/now/table/cmdb_ci_computer/{row['sys_id']}")
    again = wire.call("POST", f"/api/now/import/{make.HARDWARE}", json=make.computer("9", u_name="Solo 2"))
    assert again.json()["result"][0]["status"] == "updated"


def test_a_staged_record_can_be_read_back_with_its_result(wire, make):
    import_set_id = wire.send_and_wait(make.HARDWARE, [make.computer("1")])
    staged = wire.get(f"/api/now/table/{make.HARDWARE}?sysparm_query=sys_import_set={import_set_id}").json()

    response = wire.get(f"/api/now/import/{make.HARDWARE}/{staged['result'][0]['sys_id']}")

    assert response.status_code == 200
    assert response.json()["result"][0]["status"] == "inserted"


def test_multi_import_set_id_groups_batches(wire, make):
    first = wire.insert_multiple(make.HARDWARE, [make.computer("1")]).json()

    second = wire.call(
        "POST",
        f"/api/now/import/{make.HARDWARE}/insertMultiple?multi_import_set_id={first['multi_import_set_id']}",
        json={"records": [make.computer("2")]},
    ).json()

    assert second["multi_import_set_id"] == first["multi_import_set_id"]
    assert second["import_set_id"] != first["import_set_id"]


def test_non_admin_user_gets_403(wire, make):
    response = wire.insert_multiple(make.HARDWARE, [make.computer("1")], user="itil")

    assert response.status_code == 403
    assert response.json() == {
        "error": {"message": "Operation Failed", "detail": "ACL Exception Insert Failed due to security constraints"},
        "status": "failure",
    }


def test_unknown_staging_table_gets_404(wire, make):
    response = wire.insert_multiple("u_no_such_table", [make.computer("1")])

    assert response.status_code == 404
    assert response.json()["status"] == "failure"
    assert response.json()["error"]["message"] == "Invalid table u_no_such_table"


def test_missing_token_gets_401(wire, make):
    response = wire.insert_multiple(make.HARDWARE, [make.computer("1")], user=None)

    assert response.status_code == 401
    assert response.json() == {
        "error": {"message": "User Not Authenticated", "detail": "Required to provide Auth information"},
        "status": "failure",
    }


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"records": "nope"}', b'{"records": [1, 2]}', b"[]"],
    ids=["invalid-json", "records-not-a-list", "records-not-objects", "not-an-object"],
)
def test_malformed_bodies_get_400(wire, make, body):
    response = wire.call(
        "POST",
        f"/api/now/import/{make.HARDWARE}/insertMultiple",
        data=body,
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["status"] == "failure"


def test_a_batch_over_the_default_10_mb_limit_gets_413(sandbox, wire, make):
    big = [make.computer(str(i), u_os="x" * 10_000) for i in range(1100)]

    response = wire.insert_multiple(make.HARDWARE, big)

    assert response.status_code == 413
    assert response.json()["error"]["message"] == "Request entity too large"
    assert sandbox.state.snapshot()["import_sets"] == 0
    assert wire.insert_multiple(make.HARDWARE, [make.computer("1")]).status_code == 201  # same connection still works


def test_the_payload_limit_is_settable(sandbox, wire, make):
    sandbox.state.set_max_payload_bytes(2000)

    assert wire.insert_multiple(make.HARDWARE, [make.computer("1")]).status_code == 201
    assert wire.insert_multiple(make.HARDWARE, [make.computer(str(i)) for i in range(10)]).status_code == 413


def test_state_counts_records_received_per_staging_table(wire, make):
    wire.send_and_wait(make.HARDWARE, [make.computer(str(i)) for i in range(4)])
    wire.send_and_wait(make.INSTALLS, [make.install("i", "0")])

    state = wire.control("state").json()

    assert state["records_received"] == {make.HARDWARE: 4, make.CONTRACTS: 0, make.INSTALLS: 1}
    assert state["batches_received"][make.HARDWARE] == 1
    assert state["import_sets"] == 2
    assert state["idle"] is True and state["pending_batches"] == 0
    assert state["tables"]["cmdb_ci_computer"] == 4
