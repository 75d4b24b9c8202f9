"""The Import Set API against the installed update set: insertMultiple stages and transforms in the background
through the update set's transform maps (coalesce on u_source_id), the single-record import answers its result at
once, refusals come in ServiceNow's shapes.

Where this differs from the sandbox before issue #13, it follows ServiceNow and the update set:
- computers go through the Identification and Reconciliation Engine in the map's onBefore script and the row is then
  ignored ("Applying IRE to Import Sets", ServiceNow/ServiceNowDocs markdown/servicenow-platform/
  configuration-management-database-cmdb/identification-import-sets.md): hardware rows end `ignored` with
  `Written through IRE: INSERT|UPDATE|NO_CHANGE cmdb_ci_computer <sys_id>`, the comment the update set's script
  writes (itam_admin.servicenow_app);
- an install needs its computer (the update set's require-computer script): without one the row is an `error`
  with the script's comment, never an install linked later;
- a retired contract gets u_operational_status `retired` only (the update set's field maps; nothing else);
- an unknown staging table answers 400 `Invalid table <name>` (SERVICENOW-FACTS, recorded answers);
- an oversize body answers `{"error":{"message":"Exception while reading request","detail":"Rejected large REST
  payload with content-length = N bytes. Max allowed: M bytes."},"status":"failure"}` (KB0747638); the status is not
  in the KB (400 here, as for ServiceNow's other "Exception while reading request" answers, and configurable).
"""

from __future__ import annotations

import re

import pytest

SYS_ID = re.compile(r"^[0-9a-f]{32}$")
WRITTEN = re.compile(r"^Written through IRE: (INSERT|UPDATE|NO_CHANGE) cmdb_ci_computer ([0-9a-f]{32})$")


def staged(wire, table: str, import_set_id: str) -> list[dict]:
    query = f"sys_import_set={import_set_id}^ORDERBYsys_import_row"
    return wire.get(f"/api/now/table/{table}?sysparm_query={query}").json()["result"]


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
    assert row["u_last_inventory_date"] == "2026-11-01 10:00:00"  # the update set's custom column
    assert row["install_status"] == "1" and row["operational_status"] == "1"
    assert "u_unknown_field" not in row


def test_hardware_rows_end_ignored_with_the_ire_comment_and_the_run_counts_them_ignored(sandbox, wire, make):
    import_set_id = wire.send_and_wait(make.HARDWARE, [make.computer(str(i)) for i in range(3)] + [{"u_name": "x"}])

    run = wire.run_of(import_set_id)
    assert run["state"] == "complete"
    assert (run["inserts"], run["updates"], run["ignored"], run["skipped"], run["errors"]) == ("0", "0", "3", "1", "0")
    rows = staged(wire, make.HARDWARE, import_set_id)
    computers = {r["u_source_id"]: r["sys_id"] for r in sandbox.records("cmdb_ci_computer")}
    for row, source_id in zip(rows[:3], ("0", "1", "2"), strict=True):
        assert row["sys_import_state"] == "ignored"
        assert WRITTEN.match(row["sys_import_state_comment"]).groups() == ("INSERT", computers[source_id])
        assert row["sys_target_sys_id"] == ""  # an ignored row has no target; the comment names the CI
    assert rows[3]["sys_import_state"] == "skipped"


def test_import_set_and_run_are_recorded_and_readable_through_the_table_api(wire, make):
    import_set_id = wire.send_and_wait(make.CONTRACTS, [make.contract(str(i)) for i in range(3)] + [{"u_vendor": "x"}])

    run = wire.run_of(import_set_id)
    assert run["state"] == "complete"
    assert (run["inserts"], run["updates"], run["ignored"], run["skipped"], run["errors"]) == ("3", "0", "0", "1", "0")
    import_set = wire.get(f"/api/now/table/sys_import_set/{import_set_id}").json()["result"]
    assert import_set["table_name"] == make.CONTRACTS
    assert import_set["state"] == "processed"
    assert import_set["mode"] == "asynchronous"
    assert import_set["number"].startswith("ISET")
    transform_map = wire.get(f"/api/now/table/sys_transform_map/{run['sys_transform_map']['value']}").json()
    assert transform_map["result"]["name"] == "ITAM Contracts to Contract"


def test_sending_the_same_records_again_updates_them_without_duplicates(sandbox, wire, make):
    batch = [make.contract(str(i)) for i in range(5)]
    wire.send_and_wait(make.CONTRACTS, batch)
    first_ids = {r["u_source_id"]: r["sys_id"] for r in sandbox.records("ast_contract")}

    batch[0]["u_description"] = "Renewed"
    second = wire.send_and_wait(make.CONTRACTS, batch)

    rows = sandbox.records("ast_contract")
    assert len(rows) == 5
    assert {r["u_source_id"]: r["sys_id"] for r in rows} == first_ids
    assert next(r for r in rows if r["u_source_id"] == "0")["short_description"] == "Renewed"
    run = wire.run_of(second)
    assert (run["inserts"], run["updates"], run["ignored"]) == ("0", "1", "4")
    unchanged = [row for row in staged(wire, make.CONTRACTS, second) if row["sys_import_state"] == "ignored"]
    assert {row["sys_target_sys_id"] for row in unchanged} == {first_ids[str(i)] for i in range(1, 5)}
    assert {row["sys_import_state_comment"] for row in unchanged} == {"No field values changed"}


def test_computers_sent_again_are_updated_through_ire_not_duplicated(sandbox, wire, make):
    batch = [make.computer(str(i)) for i in range(3)]
    wire.send_and_wait(make.HARDWARE, batch)
    first_ids = {r["u_source_id"]: r["sys_id"] for r in sandbox.records("cmdb_ci_computer")}

    batch[0]["u_name"] = "Renamed"
    second = wire.send_and_wait(make.HARDWARE, batch)

    assert {r["u_source_id"]: r["sys_id"] for r in sandbox.records("cmdb_ci_computer")} == first_ids
    operations = [WRITTEN.match(r["sys_import_state_comment"]).group(1) for r in staged(wire, make.HARDWARE, second)]
    assert operations == ["UPDATE", "NO_CHANGE", "NO_CHANGE"]


def test_computers_already_there_from_another_source_are_matched_by_serial_number_then_name(sandbox, wire, make):
    """Hardware already in ServiceNow from SCCM (no u_source_id): IRE identifies it by serial number, else name, and
    the export updates it instead of adding a second CI (issue #13, the seed's SCCM example)."""
    sccm = sandbox.add_records(
        "cmdb_ci_computer",
        [{"name": "SCCM-A", "serial_number": "SN-A"}, {"name": "PC-B", "serial_number": ""}],
    )

    import_set_id = wire.send_and_wait(
        make.HARDWARE,
        [
            make.computer("a", u_serial_number="SN-A", u_name="Renamed A"),
            make.computer("b", u_serial_number="SN-B", u_name="PC-B"),
        ],
    )

    rows = {r["sys_id"]: r for r in sandbox.records("cmdb_ci_computer")}
    assert set(rows) == {sccm[0]["sys_id"], sccm[1]["sys_id"]}
    assert (rows[sccm[0]["sys_id"]]["u_source_id"], rows[sccm[0]["sys_id"]]["name"]) == ("a", "Renamed A")
    assert rows[sccm[1]["sys_id"]]["u_source_id"] == "b"
    comments = [r["sys_import_state_comment"] for r in staged(wire, make.HARDWARE, import_set_id)]
    assert comments == [f"Written through IRE: UPDATE cmdb_ci_computer {row['sys_id']}" for row in sccm]


def test_a_serial_number_or_name_never_merges_two_of_our_computers(sandbox, wire, make):
    wire.send_and_wait(make.HARDWARE, [make.computer("a", u_name="Same", u_serial_number="SN-1")])

    wire.send_and_wait(make.HARDWARE, [make.computer("b", u_name="Same", u_serial_number="SN-1")])

    assert sorted(r["u_source_id"] for r in sandbox.records("cmdb_ci_computer")) == ["a", "b"]


def test_the_same_source_id_twice_in_one_batch_is_one_record(sandbox, wire, make):
    import_set_id = wire.send_and_wait(make.CONTRACTS, [make.contract("7"), make.contract("7", u_description="2nd")])

    (row,) = sandbox.records("ast_contract")
    assert row["short_description"] == "2nd"
    run = wire.run_of(import_set_id)
    assert (run["inserts"], run["updates"]) == ("1", "1")


def test_retired_records_retire_their_targets_as_the_update_set_says(sandbox, wire, make):
    wire.send_and_wait(make.HARDWARE, [make.computer("1")])
    wire.send_and_wait(make.CONTRACTS, [make.contract("c1")])
    wire.send_and_wait(make.INSTALLS, [make.install("i1", "1")])
    retire = {"u_operational_status": "retired"}

    wire.send_and_wait(make.HARDWARE, [{"u_source_id": "1", **retire}])  # retirement rows carry only these two
    wire.send_and_wait(make.CONTRACTS, [{"u_source_id": "c1", **retire}])
    wire.send_and_wait(make.INSTALLS, [{"u_source_id": "i1", **retire}])

    (pc,) = sandbox.records("cmdb_ci_computer")
    assert (pc["install_status"], pc["operational_status"], pc["u_operational_status"]) == ("7", "6", "retired")
    assert pc["name"] == "PC-1"  # copy_empty_fields is false: nothing is blanked
    (deal,) = sandbox.records("ast_contract")
    assert (deal["u_operational_status"], deal["state"], deal["short_description"]) == ("retired", "active", "Support")
    assert sandbox.records("cmdb_sam_sw_install") == []  # retire-install deletes it


def test_retiring_an_install_servicenow_never_had_is_ignored(wire, make):
    import_set_id = wire.send_and_wait(make.INSTALLS, [{"u_source_id": "never", "u_operational_status": "retired"}])

    assert [r["sys_import_state"] for r in staged(wire, make.INSTALLS, import_set_id)] == ["ignored"]


def test_contracts_get_numbers_and_mapped_fields(sandbox, wire, make):
    wire.send_and_wait(make.CONTRACTS, [make.contract("c1"), make.contract("c2")])

    rows = sandbox.records("ast_contract", "ORDERBYnumber")
    assert [r["number"] for r in rows] == ["CNTR0010001", "CNTR0010002"]
    assert rows[0]["vendor_contract"] == "C-c1"
    assert rows[0]["short_description"] == "Support"
    assert rows[0]["u_currency"] == "EUR"
    assert (rows[0]["starts"], rows[0]["ends"], rows[0]["state"]) == ("2026-01-01", "2026-12-31", "active")


def test_an_unknown_contract_state_leaves_the_field_as_it_is(sandbox, wire, make):
    """The update set's state field map has choice action ignore (an unknown choice is not written)."""
    wire.send_and_wait(make.CONTRACTS, [make.contract("c1", u_state="no-such-state")])

    assert sandbox.records("ast_contract")[0]["state"] == ""


def test_installs_land_linked_to_their_computer(sandbox, wire, make):
    wire.send_and_wait(make.HARDWARE, [make.computer("pc-1"), make.computer("pc-2")])

    wire.send_and_wait(make.INSTALLS, [make.install("i1", "pc-1"), make.install("i2", "pc-2")])

    computers = {r["u_source_id"]: r["sys_id"] for r in sandbox.records("cmdb_ci_computer")}
    installs = {r["u_source_id"]: r for r in sandbox.records("cmdb_sam_sw_install")}
    assert installs["i1"]["installed_on"] == computers["pc-1"]
    assert installs["i2"]["installed_on"] == computers["pc-2"]
    assert installs["i1"]["display_name"] == "App i1"
    assert installs["i1"]["u_computer_source_id"] == "pc-1"


def test_installs_attach_to_computers_from_another_source_by_serial_number_else_name(sandbox, wire, make):
    by_serial, by_name = sandbox.add_records(
        "cmdb_ci_computer", [{"name": "SCCM-1", "serial_number": "SN-X"}, {"name": "SCCM-2", "serial_number": ""}]
    )

    wire.send_and_wait(
        make.INSTALLS,
        [
            make.install("i1", "t:1", u_computer_serial_number="SN-X", u_computer_name="other"),
            make.install("i2", "t:2", u_computer_serial_number="", u_computer_name="SCCM-2"),
        ],
    )

    installs = {r["u_source_id"]: r["installed_on"] for r in sandbox.records("cmdb_sam_sw_install")}
    assert installs == {"i1": by_serial["sys_id"], "i2": by_name["sys_id"]}
    assert len(sandbox.records("cmdb_ci_computer")) == 2


def test_an_install_without_its_computer_is_an_error_row_with_the_scripts_comment(sandbox, wire, make):
    import_set_id = wire.send_and_wait(make.INSTALLS, [make.install("i1", "pc-late", u_computer_serial_number="SN-L")])

    (row,) = staged(wire, make.INSTALLS, import_set_id)
    run = wire.run_of(import_set_id)
    assert (run["state"], run["errors"], run["inserts"]) == ("complete_with_errors", "1", "0")
    assert row["sys_import_state"] == "error"
    assert row["sys_import_state_comment"] == (
        'No computer in ServiceNow has ITAM source ID "pc-late", serial number "SN-L" or name "PC-pc-late": export '
        "the hardware inventory too, or check that the computer exists in Configuration > Computers."
    )
    assert sandbox.records("cmdb_sam_sw_install") == []


def test_staging_rows_record_each_records_import_state(wire, make):
    import_set_id = wire.send_and_wait(make.CONTRACTS, [make.contract("1"), {"u_vendor": "no source id"}])

    rows = staged(wire, make.CONTRACTS, import_set_id)
    assert [r["sys_import_state"] for r in rows] == ["inserted", "skipped"]
    assert rows[0]["sys_target_table"] == "ast_contract"
    assert rows[0]["u_vendor"] == "Contoso"
    assert rows[1]["sys_import_state_comment"] == "Coalesce field u_source_id is empty"


def test_staged_rows_hold_each_records_fields_as_text_numbered_in_order(sandbox, wire, make):
    sandbox.hold_transforms()
    records = [
        {**make.install("a", "pc-1"), "u_version": 7, "u_edition": None, "u_publisher": True, "u_unknown_field": "x"},
        {"u_source_id": "b", "u_install_location": {"path": ["C:", "Apps"]}, "u_operational_status": False},
        {},
    ]
    import_set_id = wire.insert_multiple(make.INSTALLS, records).json()["import_set_id"]

    rows = staged(wire, make.INSTALLS, import_set_id)
    assert [r["sys_import_row"] for r in rows] == ["1", "2", "3"]
    assert {r["sys_import_state"] for r in rows} == {"pending"}
    assert {r["sys_created_by"] for r in rows} == {"admin"}
    assert all(SYS_ID.match(r["sys_id"]) for r in rows) and len({r["sys_id"] for r in rows}) == 3
    assert (rows[0]["u_source_id"], rows[0]["u_computer_source_id"]) == ("a", "pc-1")
    assert (rows[0]["u_version"], rows[0]["u_edition"], rows[0]["u_publisher"]) == ("7", "", "true")
    assert "u_unknown_field" not in rows[0]
    assert rows[1]["u_install_location"] == '{"path": ["C:", "Apps"]}'
    assert rows[1]["u_operational_status"] == "false"
    assert rows[2]["u_source_id"] == "" and rows[2]["u_display_name"] == ""


def test_single_record_import_transforms_at_once_and_answers_the_result(sandbox, wire, make):
    response = wire.call("POST", f"/api/now/import/{make.CONTRACTS}", json=make.contract("9", u_description="Solo"))

    assert response.status_code == 201
    body = response.json()
    assert body["staging_table"] == make.CONTRACTS
    assert body["import_set"].startswith("ISET")
    (result,) = body["result"]
    assert result["status"] == "inserted"
    assert result["table"] == "ast_contract"
    (row,) = sandbox.records("ast_contract")
    assert (result["display_name"], result["display_value"]) == ("number", row["number"])
    assert result["transform_map"] == "ITAM Contracts to Contract"
    assert result["sys_id"] == row["sys_id"]
    assert result["record_link"].endswith(f"/api/now/table/ast_contract/{row['sys_id']}")
    again = wire.call("POST", f"/api/now/import/{make.CONTRACTS}", json=make.contract("9", u_description="Solo 2"))
    assert again.json()["result"][0]["status"] == "updated"


def test_a_single_computer_import_answers_the_ire_status_message(sandbox, wire, make):
    """The update set's script sets status_message, which a synchronous import answers (Import Set API docs)."""
    response = wire.call("POST", f"/api/now/import/{make.HARDWARE}", json=make.computer("9", u_name="Solo"))

    (result,) = response.json()["result"]
    (pc,) = sandbox.records("cmdb_ci_computer")
    assert result["status"] == "ignored"
    assert result["status_message"] == f"Written through IRE: INSERT cmdb_ci_computer {pc['sys_id']}"


def test_a_staged_record_can_be_read_back_with_its_result(wire, make):
    import_set_id = wire.send_and_wait(make.CONTRACTS, [make.contract("1")])
    (row,) = staged(wire, make.CONTRACTS, import_set_id)

    response = wire.get(f"/api/now/import/{make.CONTRACTS}/{row['sys_id']}")

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


def test_a_user_without_import_roles_gets_403(wire, make):
    response = wire.insert_multiple(make.HARDWARE, [make.computer("1")], user="itil")

    assert response.status_code == 403
    assert response.json() == {
        "error": {"message": "Operation Failed", "detail": "ACL Exception Insert Failed due to security constraints"},
        "status": "failure",
    }


def test_unknown_staging_table_gets_400_invalid_table(wire, make):
    response = wire.insert_multiple("u_no_such_table", [make.computer("1")])

    assert response.status_code == 400
    assert response.json() == {
        "error": {"message": "Invalid table u_no_such_table", "detail": None},
        "status": "failure",
    }


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
    assert response.json()["error"]["message"] == "Exception while reading request"


def test_a_batch_over_the_default_10_mb_limit_is_rejected_as_servicenow_does(sandbox, wire, make):
    big = [make.computer(str(i), u_os="x" * 10_000) for i in range(1100)]

    response = wire.insert_multiple(make.HARDWARE, big)

    assert response.status_code == 400
    length = len(response.request.body)
    assert response.json() == {
        "error": {
            "message": "Exception while reading request",
            "detail": f"Rejected large REST payload with content-length = {length} bytes. Max allowed: 10485760 bytes.",
        },
        "status": "failure",
    }
    assert sandbox.state.snapshot()["import_sets"] == 0
    assert wire.insert_multiple(make.HARDWARE, [make.computer("1")]).status_code == 201  # same connection still works


def test_the_payload_limit_and_its_status_are_settable(sandbox, wire, make):
    sandbox.state.set_max_payload_bytes(2000)
    sandbox.state.settings.oversize_status = 413

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
