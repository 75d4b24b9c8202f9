"""The update set a ServiceNow admin imports (SPEC 5a), read the way ServiceNow reads it: as an XML unload.

Format sources: a real unload exported by ServiceNow in a public repository
(gowtham-144/STREAMLINING-TICKET-ASSIGNMENT-FOR-EFFICIENT-SUPPORT-OPERATIONS, Ticket_Assignment_Automation.xml:
`<unload>`, one `sys_remote_update_set`, `sys_update_xml` records whose escaped `payload` is a `<record_update>`;
tables as `sys_db_object` + `sys_dictionary_<table>_null`, columns as `sys_dictionary_<table>_<column>` with
`sys_documentation` labels, those two without a `table` attribute on `<record_update>`), and ServiceNow's docs
(ServiceNow/ServiceNowDocs): Import Set API (`c_ImportSetAPI.md`: insertMultiple maps keys by column label unless a
Rest Insert Multiples [sys_rest_insert_multiple] entry says Column name; `run_after`), Applying IRE to Import Sets
(`identification-import-sets.md`: IRE in the onBefore script, then `ignore = true`), IdentificationEngineScriptableApi
(`c_IdentEngineScriptAPI.md`: `createOrUpdateCI(source, input)`, source must be a cmdb_ci.discovery_source choice)
and Transformation script variables (`r_TransformationScriptVariables.md`: `error`, `error_message`, `ignore`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

from itam_admin import datatypes
from itam_admin.servicenow_app import build_update_set
from servicenow_sandbox.settings import DEMO_CLIENT_SECRET

# SPEC section 5, copied here on purpose: the registry must match the contract, not itself.
SPEC_FIELDS = {
    "u_itam_hardware_inventory": (
        "u_source_id u_name u_serial_number u_manufacturer u_model u_os u_os_version u_cpu_type u_cpu_count "
        "u_cpu_core_count u_ram_mb u_disk_space_gb u_ip_address u_mac_address u_is_virtual u_last_inventory_date "
        "u_operational_status"
    ).split(),
    "u_itam_contracts": (
        "u_source_id u_contract_number u_vendor u_description u_contract_type u_starts u_ends u_total_cost u_currency "
        "u_state u_renewable u_operational_status"
    ).split(),
    "u_itam_installed_applications": (
        "u_source_id u_computer_source_id u_computer_name u_computer_serial_number u_display_name u_publisher "
        "u_version u_edition u_install_date u_install_location u_operational_status"
    ).split(),
}
TARGETS = {
    "u_itam_hardware_inventory": "cmdb_ci_computer",
    "u_itam_contracts": "ast_contract",
    "u_itam_installed_applications": "cmdb_sam_sw_install",
}
CLIENT_ID = "3f1c9e0a5b7d4c2e8a6f0b1d2c3e4f5a"


@pytest.fixture(scope="module")
def xml_text() -> str:
    return build_update_set(CLIENT_ID)


@pytest.fixture(scope="module")
def unload(xml_text) -> ET.Element:
    return ET.fromstring(xml_text)


def records(unload: ET.Element, table: str) -> list[ET.Element]:
    """The records of ``table`` the update set installs (the INSERT_OR_UPDATE element of each payload)."""
    found = []
    for update in unload.iter("sys_update_xml"):
        payload = ET.fromstring(update.findtext("payload"))
        for element in payload.iter(table):
            if element.get("action") == "INSERT_OR_UPDATE":
                found.append(element)
    return found


def by_name(unload: ET.Element, table: str, field: str = "name") -> dict[str, ET.Element]:
    return {element.findtext(field): element for element in records(unload, table)}


def test_the_update_set_is_an_unload_with_one_loaded_remote_update_set(unload):
    """ServiceNow's Import Update Set from XML takes an `<unload>` holding one sys_remote_update_set (state
    loaded) and its sys_update_xml records, each pointing back at it."""
    assert unload.tag == "unload"
    assert unload.get("unload_date")
    headers = unload.findall("sys_remote_update_set")
    assert len(headers) == 1
    header = headers[0]
    assert header.findtext("state") == "loaded"
    assert header.findtext("name").startswith("ITAM ServiceNow Connector")
    updates = unload.findall("sys_update_xml")
    assert len(updates) > 100
    for update in updates:
        assert update.findtext("remote_update_set") == header.findtext("sys_id")
        assert update.findtext("action") == "INSERT_OR_UPDATE"
    names = [update.findtext("name") for update in updates]
    assert len(names) == len(set(names)), "two updates with one name overwrite each other on commit"


def test_every_payload_is_a_well_formed_record_of_the_table_it_names(unload):
    """Each payload is escaped XML of one `<record_update>`; ordinary records carry `table=X` and hold
    `<X action="INSERT_OR_UPDATE">`; dictionary entries and field labels, as ServiceNow unloads them, carry the
    table as the record element instead. The update's name starts with the table (sys_dictionary_..., ...)."""
    for update in unload.iter("sys_update_xml"):
        name = update.findtext("name")
        payload = ET.fromstring(update.findtext("payload"))  # raises on a malformed payload
        assert payload.tag == "record_update", name
        if payload.get("table") is not None:
            table = payload.get("table")
            assert payload[0].tag == table and payload[0].get("action") == "INSERT_OR_UPDATE", name
        else:
            table = payload[0].tag
            assert table in {"sys_dictionary", "sys_documentation"}, name
            record = next(e for e in payload.iter(table) if e.get("action") == "INSERT_OR_UPDATE")
            assert record.findtext("name") == payload[0].get("table"), name
            assert record.findtext("element") == payload[0].get("element"), name
        assert name.startswith(table), name
        sys_ids = [e.text for e in payload.iter("sys_id")]
        assert sys_ids and all(len(value) == 32 and int(value, 16) >= 0 for value in sys_ids), name


def test_staging_tables_extend_import_set_row_and_have_every_column_of_spec_section_5(unload):
    """Import Set API staging tables extend Import Set Row (Import sets key concepts); SPEC 5 names their
    columns. Each column is a labelled string of a fitting length."""
    tables = by_name(unload, "sys_db_object")
    columns: dict[str, dict[str, ET.Element]] = {}
    for entry in records(unload, "sys_dictionary"):
        columns.setdefault(entry.findtext("name"), {})[entry.findtext("element") or ""] = entry
    labels = {
        (e.findtext("name"), e.findtext("element") or ""): e.findtext("label")
        for e in records(unload, "sys_documentation")
    }
    for table, fields in SPEC_FIELDS.items():
        assert tables[table].find("super_class").get("name") == "sys_import_set_row"
        assert "" in columns[table], f"{table} has no collection entry (sys_dictionary_{table}_null)"
        for field in fields:
            entry = columns[table].get(field)
            assert entry is not None, f"{table}.{field} is missing"
            assert entry.findtext("internal_type") == "string"
            assert int(entry.findtext("max_length")) >= 3
            assert entry.findtext("column_label") and labels[(table, field)] == entry.findtext("column_label")
        assert int(columns[table]["u_source_id"].findtext("max_length")) >= 100  # "<tenant id>:<record id>"
        assert labels[(table, "")], "the table has a label"


def test_transform_maps_coalesce_on_the_source_id_into_the_stock_targets(unload):
    """One transform map per staging table into cmdb_ci_computer, ast_contract and cmdb_sam_sw_install; each
    matches rows on u_source_id alone (SPEC 5) and never blanks a field with an empty value (retirements carry
    only the source id)."""
    maps = {m.findtext("source_table"): m for m in records(unload, "sys_transform_map")}
    entries = records(unload, "sys_transform_entry")
    assert set(maps) == set(TARGETS)
    for table, target in TARGETS.items():
        transform_map = maps[table]
        assert transform_map.findtext("target_table") == target
        assert transform_map.findtext("active") == "true"
        assert transform_map.findtext("copy_empty_fields") == "false"
        own = [e for e in entries if e.findtext("map") == transform_map.findtext("sys_id")]
        coalesce = [
            (e.findtext("source_field"), e.findtext("target_field")) for e in own if e.findtext("coalesce") == "true"
        ]
        assert coalesce == [("u_source_id", "u_source_id")]
        for entry in own:
            assert entry.findtext("target_table") == target and entry.findtext("source_table") == table


def test_the_custom_columns_the_transforms_write_exist_on_the_target_tables(unload):
    entries = records(unload, "sys_transform_entry")
    dictionary = {(e.findtext("name"), e.findtext("element")) for e in records(unload, "sys_dictionary")}
    written = {(e.findtext("target_table"), e.findtext("target_field")) for e in entries}
    custom = {pair for pair in written if pair[1].startswith("u_")}
    assert ("cmdb_ci_computer", "u_source_id") in custom
    assert custom <= dictionary, f"written but never created: {sorted(custom - dictionary)}"
    for target in TARGETS.values():
        assert (target, "u_source_id") in dictionary and (target, "u_operational_status") in dictionary


def test_each_staging_table_has_a_rest_insert_multiple_entry_mapping_by_column_name(unload):
    """Without a Rest Insert Multiples [sys_rest_insert_multiple] entry set to Column name, insertMultiple
    matches our u_* keys against column labels and the rows land empty (Import Set API docs)."""
    entries = by_name(unload, "sys_rest_insert_multiple", "source_table")
    assert set(entries) == set(SPEC_FIELDS)
    for entry in entries.values():
        assert entry.findtext("column_mapping") == "column_name"
        assert entry.findtext("transform") == "asynchronous"


def test_computers_go_through_ire_with_a_registered_data_source(unload):
    """A computer already in the CMDB from SCCM is found by IRE (source key, serial number, name) and updated,
    not duplicated: the onBefore script calls createOrUpdateCI with our source, which is added as one choice of
    cmdb_ci.discovery_source (a single sys_choice record: a choice-list update would replace the others)."""
    computer_map = by_name(unload, "sys_transform_map", "source_table")["u_itam_hardware_inventory"]
    scripts = [
        s for s in records(unload, "sys_transform_script") if s.findtext("map") == computer_map.findtext("sys_id")
    ]
    assert [s.findtext("when") for s in scripts] == ["onBefore"]
    body = scripts[0].findtext("script")
    assert "ITAMConnectorUtil().upsertComputer(source)" in body and "ignore = true" in body and "error = true" in body
    (include,) = records(unload, "sys_script_include")
    code = include.findtext("script")
    assert "SNC.IdentificationEngineScriptableApi.createOrUpdateCI(" in code
    assert "source_native_key" in code and "'ITAMConnector'" in code
    assert '"u_serial_number": "serial_number"' in code and '"u_manufacturer": "manufacturer"' in code
    choices = records(unload, "sys_choice")
    assert [(c.findtext("name"), c.findtext("element"), c.findtext("value")) for c in choices] == [
        ("cmdb_ci", "discovery_source", "ITAMConnector")
    ]


def test_installs_find_their_computer_or_fail_the_row_with_a_clear_message(unload):
    """installed_on comes from a field map script (source id, else serial number, else name); an onBefore script
    sets `error = true` and `error_message` (Transformation script variables) when no computer matches."""
    install_map = by_name(unload, "sys_transform_map", "source_table")["u_itam_installed_applications"]
    own = [e for e in records(unload, "sys_transform_entry") if e.findtext("map") == install_map.findtext("sys_id")]
    (installed_on,) = [e for e in own if e.findtext("target_field") == "installed_on"]
    assert installed_on.findtext("use_source_script") == "true"
    assert "computerOf(source)" in installed_on.findtext("source_script")
    scripts = {
        s.findtext("when"): s.findtext("script")
        for s in records(unload, "sys_transform_script")
        if s.findtext("map") == install_map.findtext("sys_id")
    }
    assert (
        "error = true" in scripts["onBefore"] and "error_message = util.computerNotFound(source)" in scripts["onBefore"]
    )
    code = records(unload, "sys_script_include")[0].findtext("script")
    lookups = (
        code.index("'u_source_id', source.getValue('u_computer_source_id')"),
        code.index("'serial_number', source.getValue('u_computer_serial_number')"),
        code.index("'name', source.getValue('u_computer_name')"),
    )
    assert list(lookups) == sorted(lookups), "source id first, then serial number, then name (SPEC 5)"
    assert "No computer in ServiceNow has ITAM source ID" in code


def test_the_integration_role_is_least_privileged(unload):
    """The integration user gets u_itam_integration, which contains import_transformer (enough to load through
    the Import Set API) and is what the staging tables' ACLs require; never admin, and no ACL on a stock table."""
    (role,) = records(unload, "sys_user_role")
    assert role.findtext("name") == "u_itam_integration"
    contains = [c.find("contains").get("name") for c in records(unload, "sys_user_role_contains")]
    assert contains == ["import_transformer"]
    assert "admin" not in role.findtext("includes_roles").split(",")
    acls = records(unload, "sys_security_acl")
    assert {(a.findtext("name"), a.findtext("operation")) for a in acls} == {
        (table, operation) for table in SPEC_FIELDS for operation in ("create", "read", "write")
    }
    links = records(unload, "sys_security_acl_role")
    assert {link.find("sys_user_role").get("name") for link in links} == {"u_itam_integration"}


def test_the_generate_oauth_token_page_asks_for_username_and_password_and_shows_the_refresh_token(unload):
    (page,) = records(unload, "sys_ui_page")
    assert page.findtext("name") == "itam_generate_oauth_token"
    jelly = ET.fromstring(page.findtext("html"))  # a UI page's HTML is Jelly XML: it must be well-formed
    names = {element.get("name") for element in jelly.iter("input")}
    assert {"itam_username", "itam_password"} <= names
    assert [b.text for b in jelly.iter("button")] == ["Generate OAuth Token"]
    html = page.findtext("html")
    assert html.index("Refresh Token") < html.index("itam_username"), "the token shows at the top of the page"
    processing = page.findtext("processing_script")
    assert "grant_type: 'password'" in processing and "oauth_token.do" in processing
    assert "client_secret.getDecryptedValue()" in processing, (
        "the secret is read server-side, never sent to the browser"
    )


def test_the_default_client_entry_has_the_operators_client_id_and_no_secret(xml_text, unload):
    (entity,) = records(unload, "oauth_entity")
    assert entity.findtext("client_id") == CLIENT_ID
    assert entity.findtext("type") == "client"
    assert not entity.findtext("client_secret")
    assert DEMO_CLIENT_SECRET not in xml_text
    for element in unload.iter():
        if element.tag == "payload":
            for inner in ET.fromstring(element.text).iter():
                if inner.tag in {"client_secret", "password", "refresh_token", "access_token"}:
                    assert not (inner.text or "").strip(), inner.tag


def test_without_a_default_client_the_registry_entry_is_left_out():
    unload = ET.fromstring(build_update_set())
    assert records(unload, "oauth_entity") == []
    assert records(unload, "sys_ui_page"), "the token page still serves custom clients"


def test_the_output_is_deterministic():
    """Two downloads with the same operator settings are byte-identical, so a ServiceNow admin can compare them."""
    assert build_update_set(CLIENT_ID) == build_update_set(CLIENT_ID)
    assert build_update_set(CLIENT_ID) != build_update_set("another-client")
    assert 'unload_date="2027-01-02 03:04:05"' in build_update_set(CLIENT_ID, unload_date="2027-01-02 03:04:05")


def test_a_blank_default_client_id_is_refused():
    with pytest.raises(ValueError, match="client id"):
        build_update_set("   ")


def test_the_registry_lists_the_data_types_in_export_order_with_the_columns_of_spec_section_5():
    assert datatypes.DATA_TYPE_NAMES == ("hardware_inventory", "contracts", "installed_applications")
    for data_type in datatypes.DATA_TYPES:
        assert list(data_type.field_names) == SPEC_FIELDS[data_type.staging_table]
        assert data_type.target_table == TARGETS[data_type.staging_table]
        assert all(column.label and column.max_length > 0 for column in data_type.columns)
    assert datatypes.data_type("contracts").column("u_vendor").target_field == "vendor"
    with pytest.raises(ValueError, match="unknown data type 'licenses'"):
        datatypes.data_type("licenses")


NODE_HARNESS = """
var Class = {create: function() { return function() { this.initialize.apply(this, arguments); }; }};
var COMPUTERS = [
    {sys_id: 'sccm1', u_source_id: '', serial_number: 'SN-1', name: 'PC-1'},
    {sys_id: 'ours2', u_source_id: 't1:c2', serial_number: 'SN-2', name: 'PC-2'},
    {sys_id: 'name3', u_source_id: '', serial_number: '', name: 'PC-3'}
];
function GlideRecord(table) { this.table = table; this.queries = []; this.found = null; }
GlideRecord.prototype.addQuery = function(field, value) { this.queries.push([field, value]); };
GlideRecord.prototype.setLimit = function() {};
GlideRecord.prototype.query = function() {
    var queries = this.queries;
    this.found = COMPUTERS.filter(function(c) {
        return queries.every(function(q) { return c[q[0]] === q[1]; });
    })[0] || null;
};
GlideRecord.prototype.next = function() { return this.found !== null; };
GlideRecord.prototype.getUniqueValue = function() { return this.found.sys_id; };
var CALLS = [];
var SNC = {IdentificationEngineScriptableApi: {createOrUpdateCI: function(source, input) {
    CALLS.push({source: source, input: JSON.parse(input)});
    return JSON.stringify({items: [{className: 'cmdb_ci_computer', operation: 'UPDATE', sysId: 'sccm1', errors: []}]});
}}};
function row(values) { return {getValue: function(name) { return values[name] === undefined ? null : values[name]; }}; }
function install(sourceId, serial, name) {
    return row({u_computer_source_id: sourceId, u_computer_serial_number: serial, u_computer_name: name});
}
/*SCRIPT*/
var util = new ITAMConnectorUtil();
var out = {
    full: util.upsertComputer(row(/*COMPUTER*/)),
    retired: util.upsertComputer(row({u_source_id: 't1:c9', u_operational_status: 'retired', u_name: ''})),
    bySourceId: util.computerOf(row({u_computer_source_id: 't1:c2', u_computer_serial_number: 'SN-1'})),
    bySerial: util.computerOf(install('t1:zz', 'SN-1', 'PC-3')),
    byName: util.computerOf(install('', 'nope', 'PC-3')),
    none: util.computerOf(install('x', 'y', 'z')),
    message: util.computerNotFound(install('x', 'y', 'z')),
    calls: CALLS
};
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the update set's JavaScript")
def test_the_script_include_sends_computers_to_ire_and_finds_install_computers_in_spec_order(unload, tmp_path):
    """The JavaScript the update set installs, run against stand-ins for GlideRecord and IRE: a computer goes to
    createOrUpdateCI with our discovery source and source key, references by display value, no empty field (a
    retirement blanks nothing and retires the CI: install_status 7, operational_status 6); an install's computer
    is found by source id, else serial number, else name (SPEC 5)."""
    code = records(unload, "sys_script_include")[0].findtext("script")
    computer = {
        "u_source_id": "t1:c1",
        "u_name": "PC-1",
        "u_serial_number": "SN-1",
        "u_manufacturer": "Dell",
        "u_ram_mb": "16384",
        "u_os": "",
        "u_operational_status": "operational",
    }
    script = tmp_path / "harness.js"
    script.write_text(NODE_HARNESS.replace("/*SCRIPT*/", code).replace("/*COMPUTER*/", json.dumps(computer)))
    out = json.loads(subprocess.run(["node", str(script)], capture_output=True, text=True, check=True).stdout)
    assert out["full"] == {"sysId": "sccm1", "operation": "UPDATE"}
    first, retired = out["calls"]
    assert first["source"] == "ITAMConnector"
    (item,) = first["input"]["items"]
    assert item["className"] == "cmdb_ci_computer"
    assert item["values"] == {
        "u_source_id": "t1:c1",
        "name": "PC-1",
        "serial_number": "SN-1",
        "ram": "16384",
        "u_operational_status": "operational",
    }
    assert item["display_values"] == {"manufacturer": "Dell"}
    assert item["sys_object_source_info"] == {"source_name": "ITAMConnector", "source_native_key": "t1:c1"}
    assert retired["input"]["items"][0]["values"] == {
        "u_source_id": "t1:c9",
        "u_operational_status": "retired",
        "install_status": "7",
        "operational_status": "6",
    }
    assert (out["bySourceId"], out["bySerial"], out["byName"], out["none"]) == ("ours2", "sccm1", "name3", "")
    assert 'ITAM source ID "x", serial number "y" or name "z"' in out["message"]
