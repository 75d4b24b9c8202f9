"""The sandbox learns its staging tables, transform maps and OAuth client from the update set a ServiceNow admin
would import, not from a second description: parse_update_set(build_update_set()) must say what the registry says.

The unload format follows a real ServiceNow export in a public repository
(gowtham-144/STREAMLINING-TICKET-ASSIGNMENT-FOR-EFFICIENT-SUPPORT-OPERATIONS, Ticket_Assignment_Automation.xml);
the label-mapping default without a Rest Insert Multiples entry is ServiceNow's Import Set API docs
(ServiceNow/ServiceNowDocs, markdown/api-reference/rest-apis/c_ImportSetAPI.md).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from itam_admin.datatypes import DATA_TYPES
from itam_admin.servicenow_app import build_update_set
from servicenow_sandbox.update_sets import UpdateSetError, parse_update_set

CLIENT_ID = "sandbox-default-client"


@pytest.fixture(scope="module")
def xml_text() -> str:
    return build_update_set(CLIENT_ID)


@pytest.fixture(scope="module")
def app(xml_text):
    return parse_update_set(xml_text)


def without_updates(xml_text: str, prefix: str) -> str:
    """The update set with every update whose name starts with ``prefix`` removed (an admin who deleted them)."""
    unload = ET.fromstring(xml_text)
    for update in list(unload.findall("sys_update_xml")):
        if update.findtext("name").startswith(prefix):
            unload.remove(update)
    return ET.tostring(unload, encoding="unicode")


def test_staging_tables_and_their_columns_are_the_registrys(app):
    assert app.name.startswith("ITAM ServiceNow Connector")
    assert list(app.staging_tables) == [data_type.staging_table for data_type in DATA_TYPES]
    for data_type in DATA_TYPES:
        table = app.staging_tables[data_type.staging_table]
        assert table.extends == "sys_import_set_row"
        assert table.label == data_type.staging_label
        assert [(c.name, c.label, c.max_length) for c in table.columns] == [
            (c.name, c.label, c.max_length) for c in data_type.columns
        ]
        assert {c.internal_type for c in table.columns} == {"string"}


def test_custom_target_columns_are_the_registrys(app):
    for data_type in DATA_TYPES:
        assert [(c.name, c.max_length) for c in app.custom_columns[data_type.target_table]] == [
            (c.name, c.max_length) for c in data_type.custom_target_columns
        ]


def test_transform_maps_target_the_registrys_tables_and_coalesce_on_the_source_id(app):
    for data_type in DATA_TYPES:
        (transform_map,) = app.transform_maps[data_type.staging_table]
        assert transform_map.active and transform_map.target_table == data_type.target_table
        assert transform_map.coalesce_fields == ("u_source_id",)
        assert not transform_map.copy_empty_fields
        mapped = {(entry.source_field, entry.target_field) for entry in transform_map.field_maps if not entry.scripted}
        assert mapped == {(c.name, c.target_field) for c in data_type.columns if c.target_field is not None}
    hardware, _, installs = (app.transform_maps[d.staging_table][0] for d in DATA_TYPES)
    assert hardware.purposes("onBefore") == ("identify-computer",)
    assert installs.purposes("onBefore") == ("require-computer",)
    assert installs.purposes("onAfter") == ("retire-install",)
    assert [e.target_field for e in installs.field_maps if e.scripted] == ["installed_on"]


def test_installs_are_transformed_after_the_hardware(app):
    assert app.run_after == {"u_itam_installed_applications": "u_itam_hardware_inventory"}


def test_mapping_mode_is_by_column_name_and_falls_back_to_label_without_the_entry(app, xml_text):
    """ServiceNow maps insertMultiple keys by label unless a Rest Insert Multiples entry says Column name."""
    for data_type in DATA_TYPES:
        assert app.mapping_mode(data_type.staging_table) == "column_name"
        assert app.insert_multiple[data_type.staging_table].transform == "asynchronous"
    stripped = parse_update_set(without_updates(xml_text, "sys_rest_insert_multiple_"))
    assert {stripped.mapping_mode(d.staging_table) for d in DATA_TYPES} == {"label"}


def test_oauth_client_token_page_roles_and_acls(app):
    (client,) = app.oauth_clients
    assert (client.name, client.client_id, client.type, client.active) == (
        "ITAM Connector default client",
        CLIENT_ID,
        "client",
        True,
    )
    assert not client.has_secret
    assert client.refresh_token_lifespan == 100 * 24 * 3600
    assert [page.path for page in app.ui_pages] == ["/itam_generate_oauth_token.do"]
    assert app.effective_roles("u_itam_integration") == {"u_itam_integration", "import_transformer"}
    for data_type in DATA_TYPES:
        for operation in ("create", "read", "write"):
            assert app.roles_granting(data_type.staging_table, operation) == {"u_itam_integration"}
    assert app.roles_granting("cmdb_ci_computer", "read") == frozenset()
    assert [(c.table, c.element, c.value) for c in app.choices] == [("cmdb_ci", "discovery_source", "ITAMConnector")]


def test_without_a_default_client_there_is_no_oauth_client():
    assert parse_update_set(build_update_set()).oauth_clients == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("this is not xml", "not well-formed XML"),
        ("<update_set><record/></update_set>", "starts with <unload>"),
        ("<unload></unload>", "exactly one <sys_remote_update_set>"),
    ],
)
def test_what_is_not_an_update_set_is_refused(text, message):
    with pytest.raises(UpdateSetError, match=message):
        parse_update_set(text)


def test_a_malformed_payload_is_refused_naming_the_update(xml_text):
    broken = xml_text.replace("&lt;/sys_db_object&gt;", "&lt;/sys_db_objec&gt;", 1)
    with pytest.raises(
        UpdateSetError, match=r"payload of update \d+ \(sys_db_object_[0-9a-f]{32}\) is not well-formed"
    ):
        parse_update_set(broken)


def test_a_payload_without_its_record_is_refused(xml_text):
    broken = re.sub(r'&lt;sys_user_role action="INSERT_OR_UPDATE"&gt;', "&lt;sys_user_role&gt;", xml_text, count=1)
    with pytest.raises(UpdateSetError, match=r'no <sys_user_role action="INSERT_OR_UPDATE"> record'):
        parse_update_set(broken)


def test_a_staging_table_without_its_dictionary_entry_is_refused(xml_text):
    with pytest.raises(UpdateSetError, match="u_itam_contracts has no dictionary entry of its own"):
        parse_update_set(without_updates(xml_text, "sys_dictionary_u_itam_contracts_null"))


def test_field_maps_of_a_missing_transform_map_are_refused(xml_text):
    with pytest.raises(UpdateSetError, match="refer to transform maps the update set lacks"):
        parse_update_set(without_updates(xml_text, "sys_transform_map_"))
